/*
 * test_api.c: the public API's promises a new user leans on (src/app.c,
 * src/request.c, src/json.c, src/openapi.c): evapi_app_new says which
 * config member is wrong, a route that could never run is refused, a
 * NULL JSON reply is named in the log, reals are printed in their
 * shortest round-trip form, a repeated query parameter or header reads
 * as its last value everywhere, and /docs finds its document by a
 * relative URL.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

static void ok(evapi_req *req, void *arg)
{
	evapi_reply_text(req, 200, "ok");
}

static void test_app_new_names_the_field(void)
{
	evapi_config cfg;
	evapi_error err;
	evapi_app *app;

	th_config(&cfg);
	cfg.pool_threads = 0;
	th_log_clear();
	memset(&err, 0, sizeof err);
	app = evapi_app_new_ex(&cfg, &err);
	CHECK(app == NULL);
	CHECK_INT(err.code, ==, EVAPI_EINVAL);
	CHECK_CONTAINS(err.text, "pool_threads = 0");
	/* the plain constructor logs the same through the config's sink */
	CHECK(evapi_app_new(&cfg) == NULL);
	CHECK_CONTAINS(th_log(), "evapi_app_new: config.pool_threads = 0: "
	                         "must be 1..4096");

	th_config(&cfg);
	cfg.idle_timeout_ms = -5;
	app = evapi_app_new_ex(&cfg, &err);
	CHECK(app == NULL);
	CHECK_CONTAINS(err.text, "idle_timeout_ms = -5");

	th_config(&cfg);
	cfg.host = NULL;
	CHECK(evapi_app_new_ex(&cfg, &err) == NULL);
	CHECK_CONTAINS(err.text, "config.host");

	/* a good config: no error, and NULL is accepted for err */
	th_config(&cfg);
	app = evapi_app_new_ex(&cfg, NULL);
	CHECK(app != NULL);
	evapi_app_free(app);
}

static void test_route_conflicts_refused(void)
{
	static const evapi_field p[] = {
		{.name = "id", .in = EVAPI_IN_PATH, .type = EVAPI_INT},
		{0}};
	evapi_route_decl d = {0};
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.openapi = 1;
	cfg.stats_routes = 1;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	th_log_clear();
	/* built-in routes */
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/openapi.json", EVAPI_INLINE,
	                          ok, NULL), ==, EVAPI_EEXIST);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/docs", EVAPI_INLINE, ok,
	                          NULL), ==, EVAPI_EEXIST);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/_/stats", EVAPI_POOL, ok,
	                          NULL), ==, EVAPI_EEXIST);
	CHECK_INT(evapi_app_route(app, EVAPI_GET | EVAPI_POST, "/_/metrics",
	                          EVAPI_INLINE, ok, NULL), ==, EVAPI_EEXIST);
	CHECK_CONTAINS(th_log(), "route GET /docs refused");
	/* another method on the same path is fine */
	CHECK_INT(evapi_app_route(app, EVAPI_POST, "/docs", EVAPI_INLINE, ok,
	                          NULL), ==, 0);
	/* the same method and template twice, also with other names */
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/x", EVAPI_INLINE, ok, NULL),
	          ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_PUT | EVAPI_GET, "/x", EVAPI_POOL,
	                          ok, NULL), ==, EVAPI_EEXIST);
	CHECK_INT(evapi_app_route(app, EVAPI_PUT, "/x", EVAPI_POOL, ok, NULL),
	          ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/u/{id}", EVAPI_INLINE, ok,
	                          NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/u/{name}", EVAPI_INLINE, ok,
	                          NULL), ==, EVAPI_EEXIST);
	CHECK_CONTAINS(th_log(), "route GET /u/{name} refused: GET /u/{id} is "
	                         "already registered");
	/* shadowed: {id} already matches "me", so it would never run */
	th_log_clear();
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/u/me", EVAPI_INLINE, ok,
	                          NULL), ==, EVAPI_EEXIST);
	CHECK_CONTAINS(th_log(), "route GET /u/me refused: GET /u/{id} is "
	                         "already registered (by the app");
	/* the specific one first is fine; so is another method */
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/v/me", EVAPI_INLINE, ok,
	                          NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/v/{id}", EVAPI_INLINE, ok,
	                          NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_POST, "/u/me", EVAPI_INLINE, ok,
	                          NULL), ==, 0);
	/* not the same shape: one segment more */
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/u/{id}/x", EVAPI_INLINE, ok,
	                          NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/x/", EVAPI_INLINE, ok, NULL),
	          ==, 0);
	/* declared routes follow the same rule */
	d.methods = EVAPI_GET;
	d.path = "/u/{id}";
	d.cb = ok;
	d.params = p;
	CHECK_INT(evapi_app_route_decl(app, &d), ==, EVAPI_EEXIST);
	d.path = "/d/{id}";
	CHECK_INT(evapi_app_route_decl(app, &d), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &d), ==, EVAPI_EEXIST);
	evapi_app_free(app);
}

static void null_json(evapi_req *req, void *arg)
{
	/* "s" with a NULL string: json_pack fails and returns NULL */
	evapi_reply_json(req, 200, json_pack("{s:s}", "a", (const char *)NULL));
}

static void test_null_json_is_named(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	evapi_app_route(s.app, EVAPI_GET, "/x", EVAPI_INLINE, null_json, NULL);
	evapi_app_route(s.app, EVAPI_GET, "/p", EVAPI_POOL, null_json, NULL);
	th_server_start(&s, s.app);
	th_log_clear();
	CHECK_INT(th_http(s.port, "GET", "/x", NULL, &r), ==, 500);
	CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	CHECK_INT(th_http(s.port, "GET", "/p", NULL, &r), ==, 500);
	CHECK_CONTAINS(th_log(), "evapi_reply_json: NULL JSON (a failed "
	                         "json_pack?) on GET /x");
	CHECK_CONTAINS(th_log(), "evapi_reply_json: NULL JSON (a failed "
	                         "json_pack?) on GET /p");
	CHECK(strstr(th_log(), "without replying") == NULL);
	th_server_stop(&s);
}

static void reals(evapi_req *req, void *arg)
{
	json_t *v = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:[f,i,b,n], s:s}",
	                      "a", 9.571, "b", 0.1 + 0.2, "c", 1.0, "d", 1e20,
	                      "e", -1.5e-7, "f", 1.0 / 3.0, "g", 2.5, 7,
	                      1, "h", "q\"\\\n\x01/\xc3\xa9");
	evapi_reply_json(req, 200, v);
}

static void no_reals(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:i, s:s}", "n", 42, "s", "x\ty"));
}

static void test_json_reals_shortest(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	json_t *back;
	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	evapi_app_route(s.app, EVAPI_GET, "/reals", EVAPI_INLINE, reals, NULL);
	evapi_app_route(s.app, EVAPI_GET, "/preals", EVAPI_POOL, reals, NULL);
	evapi_app_route(s.app, EVAPI_GET, "/plain", EVAPI_INLINE, no_reals, NULL);
	th_server_start(&s, s.app);
	CHECK_INT(th_http(s.port, "GET", "/reals", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"a\":9.571,\"b\":0.30000000000000004,\"c\":1.0,"
	                  "\"d\":1e20,\"e\":-1.5e-7,\"f\":0.3333333333333333,"
	                  "\"g\":[2.5,7,true,null],"
	                  "\"h\":\"q\\\"\\\\\\n\\u0001/\xc3\xa9\"}");
	/* and every value reads back as the same double */
	back = json_loads(r.body, 0, NULL);
	CHECK(back != NULL);
	if (back) {
		CHECK(json_real_value(json_object_get(back, "b")) == 0.1 + 0.2);
		CHECK(json_real_value(json_object_get(back, "f")) == 1.0 / 3.0);
		json_decref(back);
	}
	CHECK_INT(th_http(s.port, "GET", "/preals", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "{\"a\":9.571,");
	CHECK_INT(th_http(s.port, "GET", "/plain", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"n\":42,\"s\":\"x\\ty\"}");
	th_server_stop(&s);
}

static void dup_route(evapi_req *req, void *arg)
{
	long long q = 0, g = 0;
	evapi_req_query_int(req, "n", &q);
	evapi_req_get_int(req, "n", &g);
	evapi_reply_json(req, 200, json_pack("{s:I, s:I, s:s?, s:s?}", "query",
	                                     (json_int_t)q, "get", (json_int_t)g,
	                                     "raw", evapi_req_query(req, "n"),
	                                     "hdr", evapi_req_header(req, "X-N")));
}

static void test_repeats_last_wins(void)
{
	static const evapi_field p[] = {{.name = "n", .type = EVAPI_INT}, {0}};
	evapi_route_decl d = {0};
	evapi_config cfg;
	th_server s;
	th_resp r;
	char buf[2048];
	int fd;
	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	d.methods = EVAPI_GET;
	d.path = "/dup";
	d.cb = dup_route;
	d.params = p;
	CHECK_INT(evapi_app_route_decl(s.app, &d), ==, 0);
	evapi_app_route(s.app, EVAPI_GET, "/raw", EVAPI_INLINE, dup_route, NULL);
	th_server_start(&s, s.app);
	CHECK_INT(th_http(s.port, "GET", "/dup?n=1&n=2", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"query\":2,\"get\":2,\"raw\":\"2\",\"hdr\":null}");
	/* the last one is also the one validated */
	CHECK_INT(th_http(s.port, "GET", "/dup?n=x&n=3", NULL, &r), ==, 200);
	CHECK_INT(th_http(s.port, "GET", "/dup?n=3&n=x", NULL, &r), ==, 422);
	fd = th_connect_send(s.port, "GET /raw?n=1&n=5 HTTP/1.1\r\nHost: t\r\n"
	                             "X-N: a\r\nX-N: b\r\nConnection: close\r\n\r\n");
	th_read_all(fd, buf, sizeof buf, 3);
	close(fd);
	CHECK_CONTAINS(buf, "{\"query\":5,\"get\":0,\"raw\":\"5\",\"hdr\":\"b\"}");
	th_server_stop(&s);
}

static void test_docs_relative_url(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	th_config(&cfg);
	cfg.openapi = 1;
	cfg.swagger_ui_dir = ""; /* the plain page (test_openapi: Swagger UI's) */
	th_server_start(&s, evapi_app_new(&cfg));
	CHECK_INT(th_http(s.port, "GET", "/docs", NULL, &r), ==, 200);
	/* relative to /docs: behind a prefix (/api/docs) it loads
	 * /api/openapi.json */
	CHECK_CONTAINS(r.body, "fetch('openapi.json')");
	CHECK_CONTAINS(r.body, "href=\"openapi.json\"");
	CHECK(strstr(r.body, "/openapi.json") == NULL);
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"api.app_new_names_the_field", test_app_new_names_the_field},
		{"api.route_conflicts_refused", test_route_conflicts_refused},
		{"api.null_json_is_named", test_null_json_is_named},
		{"api.json_reals_shortest", test_json_reals_shortest},
		{"api.repeats_last_wins", test_repeats_last_wins},
		{"api.docs_relative_url", test_docs_relative_url},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
