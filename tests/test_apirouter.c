/*
 * test_apirouter.c: routers (src/apirouter.c): prefixes and nesting,
 * the default lane, dependencies, tags in OpenAPI, and shadowed or
 * repeated routes refused with both named. A real app on 127.0.0.1:0.
 */
#include "harness.h"

#include <stdlib.h>

static pthread_t seen_thread; /* the thread the last handler ran on */
static char order[128];       /* dependencies and handlers, in order */

static void note(const char *what)
{
	size_t n = strlen(order);
	snprintf(order + n, sizeof order - n, "%s%s", n ? "," : "", what);
}

static void named(evapi_req *req, void *arg)
{
	seen_thread = pthread_self();
	note("handler");
	evapi_reply_json(req, 200, json_pack("{s:s,s:s?}", "route", (char *)arg,
	                                     "id",
	                                     evapi_req_param(req, "id")));
}

static int dep_outer(evapi_req *req, void *arg)
{
	note("outer");
	return 0;
}

/* 401 without X-Token: the handler does not run */
static int dep_token(evapi_req *req, void *arg)
{
	seen_thread = pthread_self();
	note("token");
	if (!evapi_req_header(req, "X-Token")) {
		evapi_reply_error(req, 401, "Not authenticated");
		return 1;
	}
	return 0;
}

static int dep_broken(evapi_req *req, void *arg)
{
	return 1; /* stops without replying */
}

static void apirouter_prefix_nesting_and_lane(void)
{
	evapi_config cfg;
	evapi_router *api, *users;
	th_server s;
	th_resp r;

	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	api = evapi_router_new(s.app, "/api");
	users = evapi_router_new(s.app, "/users");
	CHECK(api && users);
	CHECK_INT(evapi_router_lane(users, EVAPI_POOL), ==, 0);
	CHECK_INT(evapi_router_route(users, EVAPI_GET, "", named, "list"), ==, 0);
	CHECK_INT(evapi_router_route(users, EVAPI_GET, "/{id}", named, "one"),
	          ==, 0);
	CHECK_INT(evapi_router_route_lane(users, EVAPI_GET, "/{id}/inline",
	                                  EVAPI_INLINE, named, "inl"), ==, 0);
	CHECK_INT(evapi_router_route(api, EVAPI_GET, "/ping", named, "ping"),
	          ==, 0);
	CHECK_INT(evapi_router_include(api, users), ==, 0);
	CHECK_INT(evapi_app_include_router(s.app, api), ==, 0);
	evapi_router_free(users); /* the app keeps its copy */
	evapi_router_free(api);
	th_server_start(&s, s.app);

	CHECK_INT(th_http(s.port, "GET", "/api/users", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"list\"");
	CHECK(!pthread_equal(seen_thread, s.thread)); /* the router's lane */
	CHECK_INT(th_http(s.port, "GET", "/api/users/7", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"id\":\"7\"");
	CHECK_INT(th_http(s.port, "GET", "/api/users/7/inline", NULL, &r), ==,
	          200);
	CHECK(pthread_equal(seen_thread, s.thread)); /* its own lane */
	CHECK_INT(th_http(s.port, "GET", "/api/ping", NULL, &r), ==, 200);
	CHECK(pthread_equal(seen_thread, s.thread)); /* api's: inline */
	CHECK_INT(th_http(s.port, "GET", "/users/7", NULL, &r), ==, 404);
	CHECK_INT(th_http(s.port, "POST", "/api/users", NULL, &r), ==, 405);
	th_server_stop(&s);
}

static void apirouter_dependencies(void)
{
	evapi_config cfg;
	evapi_router *api, *admin;
	th_server s;
	th_resp r;

	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	api = evapi_router_new(s.app, "/api");
	admin = evapi_router_new(s.app, "/admin");
	CHECK_INT(evapi_router_depends(api, dep_outer, NULL), ==, 0);
	CHECK_INT(evapi_router_depends(admin, dep_token, NULL), ==, 0);
	CHECK_INT(evapi_router_depends(admin, NULL, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_router_route_lane(admin, EVAPI_GET, "/stats",
	                                  EVAPI_POOL, named, "stats"), ==, 0);
	CHECK_INT(evapi_router_route(api, EVAPI_GET, "/open", named, "open"),
	          ==, 0);
	CHECK_INT(evapi_router_include(api, admin), ==, 0);
	CHECK_INT(evapi_app_include_router(s.app, api), ==, 0);
	evapi_router_free(admin);
	evapi_router_free(api);
	/* a dependency that stops without replying: 500, logged */
	api = evapi_router_new(s.app, "/broken");
	CHECK_INT(evapi_router_depends(api, dep_broken, NULL), ==, 0);
	CHECK_INT(evapi_router_route(api, EVAPI_GET, "/x", named, "x"), ==, 0);
	CHECK_INT(evapi_app_include_router(s.app, api), ==, 0);
	evapi_router_free(api);
	/* a plain app route has none */
	CHECK_INT(evapi_app_route(s.app, EVAPI_GET, "/plain", EVAPI_INLINE,
	                          named, "plain"), ==, 0);
	th_server_start(&s, s.app);

	order[0] = '\0';
	CHECK_INT(th_http(s.port, "GET", "/api/admin/stats", NULL, &r), ==, 401);
	CHECK_CONTAINS(r.body, "{\"detail\":\"Not authenticated\"}");
	CHECK_STR(order, "outer,token");
	/* a pool route's dependency runs on the loop, before the worker */
	CHECK(pthread_equal(seen_thread, s.thread));
	order[0] = '\0';
	{
		/* with the header: outer, token, then the handler */
		char buf[2048];
		CHECK_INT(th_exchange(s.port, "GET /api/admin/stats HTTP/1.1\r\n"
		                      "Host: x\r\nX-Token: t\r\nConnection: "
		                      "close\r\n\r\n", buf, sizeof buf, 5.0, NULL),
		          ==, 200);
	}
	CHECK_STR(order, "outer,token,handler");
	order[0] = '\0';
	CHECK_INT(th_http(s.port, "GET", "/api/open", NULL, &r), ==, 200);
	CHECK_STR(order, "outer,handler");
	order[0] = '\0';
	th_log_clear();
	CHECK_INT(th_http(s.port, "GET", "/broken/x", NULL, &r), ==, 500);
	CHECK_STR(order, "");
	CHECK_CONTAINS(th_log(), "dependency 0 of GET /broken/x (router "
	                         "/broken) stopped the request without "
	                         "replying: 500");
	order[0] = '\0';
	CHECK_INT(th_http(s.port, "GET", "/plain", NULL, &r), ==, 200);
	CHECK_STR(order, "handler");
	th_server_stop(&s);
}

static void apirouter_conflicts_name_both(void)
{
	evapi_config cfg;
	evapi_router *a, *b, *c;
	evapi_app *app;
	th_server s;
	th_resp r;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	a = evapi_router_new(app, "/items");
	CHECK_INT(evapi_router_route(a, EVAPI_GET, "/{id}", named, "id"), ==, 0);
	/* in one router: repeated, and shadowed */
	th_log_clear();
	CHECK_INT(evapi_router_route(a, EVAPI_GET, "/{item_id}", named, "x"), ==,
	          EVAPI_EEXIST);
	CHECK_INT(evapi_router_route(a, EVAPI_GET | EVAPI_PUT, "/me", named,
	                             "me"), ==, EVAPI_EEXIST);
	CHECK_CONTAINS(th_log(), "route /items/me (router /items) refused: "
	                         "/items/{id} (router /items) is already "
	                         "registered and matches every path it "
	                         "matches");
	CHECK_INT(evapi_router_route(a, EVAPI_PUT, "/me", named, "me"), ==, 0);
	/* two routers mounted in one: the second repeats the first's */
	b = evapi_router_new(app, "/v1");
	c = evapi_router_new(app, "/items");
	CHECK_INT(evapi_router_route(c, EVAPI_GET, "/{n}/extra", named, "e"), ==, 0);
	CHECK_INT(evapi_router_route(c, EVAPI_GET, "/{n}", named, "n"), ==, 0);
	CHECK_INT(evapi_router_include(b, a), ==, 0);
	th_log_clear();
	CHECK_INT(evapi_router_include(b, c), ==, EVAPI_EEXIST);
	CHECK_CONTAINS(th_log(), "route /v1/items/{n} (router /v1/items) "
	                         "refused: /v1/items/{id} (router /v1/items)");
	/* refused whole: /{n}/extra, before the clash, is not kept either */
	{
		evapi_router *c2 = evapi_router_new(app, "/items");
		CHECK_INT(evapi_router_route(c2, EVAPI_GET, "/{m}/extra", named,
		                             "e2"), ==, 0);
		CHECK_INT(evapi_router_include(b, c2), ==, 0);
		evapi_router_free(c2);
	}
	/* on the app: a route of its own clashes with a router's */
	CHECK_INT(evapi_app_route(app, EVAPI_PUT, "/v1/items/{x}", EVAPI_INLINE,
	                          named, "app"), ==, 0);
	th_log_clear();
	CHECK_INT(evapi_app_include_router(app, b), ==, EVAPI_EEXIST);
	CHECK_CONTAINS(th_log(), "route PUT /v1/items/me refused: PUT "
	                         "/v1/items/{x} is already registered (by the "
	                         "app");
	CHECK_CONTAINS(th_log(), "(the refused route is from router /v1/items)");
	/* nothing of b was registered; without the clash it goes in whole */
	CHECK_INT(evapi_app_route(app, EVAPI_PUT, "/other", EVAPI_INLINE, named,
	                          "o"), ==, 0);
	evapi_router_free(b);
	b = evapi_router_new(app, "/v1");
	CHECK_INT(evapi_router_include(b, c), ==, 0);
	CHECK_INT(evapi_app_include_router(app, b), ==, 0);
	/* and the other way round: the app's route comes after a router's */
	th_log_clear();
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/v1/items/{k}", EVAPI_INLINE,
	                          named, "late"), ==, EVAPI_EEXIST);
	CHECK_CONTAINS(th_log(), "route GET /v1/items/{k} refused: GET "
	                         "/v1/items/{n} is already registered (by "
	                         "router /v1/items)");
	CHECK_INT(evapi_app_include_router(app, b), ==, EVAPI_EEXIST);
	evapi_router_free(a);
	evapi_router_free(b);
	evapi_router_free(c);
	th_server_start(&s, app);
	CHECK_INT(th_http(s.port, "GET", "/v1/items/5/extra", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"e\"");
	CHECK_INT(th_http(s.port, "GET", "/v1/items/5", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"n\"");
	CHECK_INT(th_http(s.port, "GET", "/items/5", NULL, &r), ==, 404);
	th_server_stop(&s);
}

static void apirouter_bad_arguments(void)
{
	evapi_config cfg;
	evapi_router *r;
	evapi_app *app;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK(evapi_router_new(app, "/x/") == NULL);
	CHECK(evapi_router_new(app, "x") == NULL);
	CHECK(evapi_router_new(app, NULL) == NULL);
	CHECK(evapi_router_new(NULL, "/x") == NULL);
	evapi_router_free(NULL);
	r = evapi_router_new(app, "");
	CHECK_INT(evapi_router_route(r, EVAPI_GET, "", named, NULL), ==,
	          EVAPI_EINVAL); /* no path at all */
	CHECK_INT(evapi_router_route(r, EVAPI_GET, "x", named, NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_router_route(r, 0, "/x", named, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_router_route(r, 1u << 9, "/x", named, NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_router_route(r, EVAPI_GET, "/x", NULL, NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_router_lane(r, (evapi_lane)5), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_router_tag(r, ""), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_router_include(r, r), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_router_route(r, EVAPI_GET, "/ok", named, NULL), ==, 0);
	/* a bad template is refused when included, before anything is */
	CHECK_INT(evapi_router_route(r, EVAPI_GET, "/{bad", named, NULL), ==, 0);
	CHECK_INT(evapi_app_include_router(app, r), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/ok", EVAPI_INLINE, named,
	                          NULL), ==, 0);
	evapi_router_free(r);
	evapi_app_free(app);
}

static const evapi_field item_params[] = {
	{.name = "id", .in = EVAPI_IN_PATH, .type = EVAPI_INT},
	{0}};

static void apirouter_declared_routes_and_tags(void)
{
	evapi_config cfg;
	evapi_router *api, *items;
	evapi_route_decl d = {0};
	json_t *doc, *tags;
	th_server s;
	th_resp r;

	th_config(&cfg);
	cfg.openapi = 1;
	s.app = evapi_app_new(&cfg);
	api = evapi_router_new(s.app, "/api");
	items = evapi_router_new(s.app, "/items");
	CHECK_INT(evapi_router_tag(api, "api"), ==, 0);
	CHECK_INT(evapi_router_tag(items, "items"), ==, 0);
	CHECK_INT(evapi_router_depends(items, dep_outer, NULL), ==, 0);
	d.methods = EVAPI_GET;
	d.path = "/{id}";
	d.cb = named;
	d.arg = "decl";
	d.params = item_params;
	CHECK_INT(evapi_router_route_decl(items, &d), ==, 0);
	CHECK_INT(evapi_router_include(api, items), ==, 0);
	CHECK_INT(evapi_app_include_router(s.app, api), ==, 0);
	evapi_router_free(items);
	evapi_router_free(api);
	CHECK_INT(evapi_app_route(s.app, EVAPI_GET, "/untagged", EVAPI_INLINE,
	                          named, NULL), ==, 0);
	doc = evapi_app_openapi(s.app);
	tags = json_object_get(json_object_get(json_object_get(json_object_get(
	                       doc, "paths"), "/api/items/{id}"), "get"), "tags");
	CHECK_INT(json_array_size(tags), ==, 2);
	CHECK_STR(json_string_value(json_array_get(tags, 0)), "api");
	CHECK_STR(json_string_value(json_array_get(tags, 1)), "items");
	CHECK(json_object_get(json_object_get(json_object_get(json_object_get(
	      doc, "paths"), "/untagged"), "get"), "tags") == NULL);
	CHECK(json_object_get(json_object_get(json_object_get(json_object_get(
	      doc, "paths"), "/api/items/{id}"), "get"), "parameters") != NULL);
	json_decref(doc);
	th_server_start(&s, s.app);
	order[0] = '\0';
	CHECK_INT(th_http(s.port, "GET", "/api/items/abc", NULL, &r), ==, 422);
	CHECK_STR(order, ""); /* validation answers before the dependency */
	CHECK_INT(th_http(s.port, "GET", "/api/items/12", NULL, &r), ==, 200);
	CHECK_STR(order, "outer,handler");
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"apirouter.prefix_nesting_and_lane",
		 apirouter_prefix_nesting_and_lane},
		{"apirouter.dependencies", apirouter_dependencies},
		{"apirouter.conflicts_name_both", apirouter_conflicts_name_both},
		{"apirouter.bad_arguments", apirouter_bad_arguments},
		{"apirouter.declared_routes_and_tags",
		 apirouter_declared_routes_and_tags},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
