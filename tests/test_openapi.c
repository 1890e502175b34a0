/*
 * test_openapi.c: the generated OpenAPI 3.1 document (src/openapi.c):
 * its content for declared and plain routes, every documentation member
 * of a declared route (responses, tags, ids, examples, security), the
 * document served at /openapi.json, the /docs page (Swagger UI from
 * docs/swagger's files, or the plain page), the /redoc page (ReDoc's
 * bundle, or a 404 saying it is not installed), and validation of the
 * documents (a test app using every feature, and the demo's) by a real
 * OpenAPI validator (@seriousme/openapi-schema-validator, installed by
 * .ci/deps under tests/openapi; SKIP with the reason when it is absent).
 */
#include "harness.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../examples/demo.h"

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif
#define VALIDATOR TOP_SRCDIR "/tests/openapi/validate.mjs"
#define VALIDATOR_MODULE                                                     \
	TOP_SRCDIR "/tests/openapi/node_modules/@seriousme/"                 \
	           "openapi-schema-validator/package.json"
#define SWAGGER_DIR TOP_SRCDIR "/docs/swagger/node_modules/swagger-ui-dist"
#define REDOC_DIR TOP_SRCDIR "/docs/redoc/node_modules/redoc/bundles"

static void handler(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static const evapi_field item_params[] = {
	{.name = "item_id", .in = EVAPI_IN_PATH, .type = EVAPI_INT,
	 .required = 1, .bounds = EVAPI_GE, .ge = 1,
	 .description = "The item's id"},
	{.name = "q", .type = EVAPI_STRING, .bounds = EVAPI_MAX_LEN,
	 .max_len = 50},
	{.name = "limit", .type = EVAPI_INT, .dflt = "10",
	 .bounds = EVAPI_GE | EVAPI_LE, .ge = 1, .le = 100},
	{.name = "x-trace", .in = EVAPI_IN_HEADER, .type = EVAPI_BOOL},
	{0}};
static const evapi_field tag = {.type = EVAPI_STRING};
static const evapi_field dims[] = {
	{.name = "w", .type = EVAPI_NUMBER, .required = 1},
	{.name = "h", .type = EVAPI_NUMBER, .required = 1},
	{0}};
static const evapi_field item_body[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1,
	 .bounds = EVAPI_MIN_LEN, .min_len = 1},
	{.name = "price", .type = EVAPI_NUMBER, .required = 1,
	 .bounds = EVAPI_GE, .ge = 0},
	{.name = "tags", .type = EVAPI_ARRAY, .items = &tag, .dflt = "[]"},
	{.name = "dims", .type = EVAPI_OBJECT, .fields = dims},
	{0}};
static const evapi_upload upload = {.dir = "/tmp", .raw = 1};

static evapi_app *make_app_with(int openapi, const char *swagger_dir,
                                const char *redoc_dir)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_route_decl get = {
		.methods = EVAPI_GET, .path = "/items/{item_id}",
		.cb = handler, .params = item_params, .summary = "Read an item"};
	evapi_route_decl post = {
		.methods = EVAPI_POST | EVAPI_PUT, .path = "/items",
		.lane = EVAPI_POOL, .cb = handler, .body = item_body,
		.body_name = "Item"};
	evapi_route_decl up = {.methods = EVAPI_POST, .path = "/upload",
	                       .lane = EVAPI_POOL, .cb = handler,
	                       .upload = &upload};

	th_config(&cfg);
	cfg.openapi = openapi;
	cfg.swagger_ui_dir = swagger_dir;
	cfg.redoc_dir = redoc_dir;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	CHECK_INT(evapi_app_route_decl(app, &get), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &post), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &up), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET | EVAPI_DELETE,
	                          "/users/{user_id}/posts/{post}", EVAPI_INLINE,
	                          handler, NULL), ==, 0);
	return app;
}

/* No ReDoc: /redoc answers 404. */
static evapi_app *make_app_in(int openapi, const char *swagger_dir)
{
	return make_app_with(openapi, swagger_dir, "");
}

/* The plain /docs page: no Swagger UI files. */
static evapi_app *make_app(int openapi)
{
	return make_app_in(openapi, "");
}

/* ---- an app using every documentation feature ----------------------- */

static const char *const items_tags[] = {"items", NULL};
static const char *const admin_tags[] = {"admin", "items", NULL};
static const char *const key_or_bearer[] = {"ApiKey", "Bearer", NULL};
static const char *const basic_only[] = {"Basic", NULL};
static const evapi_field name_param[] = {
	{.name = "name", .in = EVAPI_IN_PATH, .type = EVAPI_STRING,
	 .required = 1, .example = "hammer"},
	{.name = "verbose", .type = EVAPI_BOOL, .example = "yes"},
	{.name = "n", .type = EVAPI_INT, .example = "3"},
	{0}};
static const evapi_field out_fields[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1,
	 .example = "\"hammer\""},
	{.name = "count", .type = EVAPI_INT, .dflt = "0"},
	{0}};
static const evapi_field out_schema = {.type = EVAPI_OBJECT,
                                       .fields = out_fields};
static const evapi_field out_list = {.type = EVAPI_ARRAY,
                                     .items = &out_schema};
static const evapi_field new_body[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1},
	{0}};
static const evapi_response get_responses[] = {
	{.status = 200, .schema = &out_schema, .schema_name = "Thing",
	 .example = "{\"name\": \"hammer\", \"count\": 3}"},
	{.status = 404, .description = "No such thing"},
	{0}};
static const evapi_response create_responses[] = {
	{.status = 201, .description = "Created", .schema = &out_schema,
	 .schema_name = "Thing"},
	{.status = 409, .description = "Already there"},
	{0}};
static const evapi_response delete_responses[] = {{.status = 204}, {0}};
static const evapi_response list_responses[] = {
	{.status = 200, .schema = &out_list}, {0}};
static const evapi_response events_responses[] = {
	{.status = 200, .description = "Server-sent events",
	 .content_type = "text/event-stream",
	 .example = "data: {\"n\": 1}\n\n"},
	{0}};

static evapi_app *make_full_app(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_route_decl get = {
		.methods = EVAPI_GET, .path = "/things/{name}", .cb = handler,
		.params = name_param, .summary = "Read a thing",
		.description = "Reads **one** thing by name.",
		.tags = items_tags, .responses = get_responses,
		.security = key_or_bearer};
	evapi_route_decl create = {
		.methods = EVAPI_POST, .path = "/things", .cb = handler,
		.body = new_body, .body_name = "NewThing",
		.body_example = "{\"name\": \"hammer\"}",
		.tags = items_tags, .responses = create_responses,
		.operation_id = "create_thing"};
	evapi_route_decl del = {
		.methods = EVAPI_DELETE, .path = "/things/{name}", .cb = handler,
		.params = name_param, .tags = admin_tags, .deprecated = 1,
		.responses = delete_responses, .security = basic_only};
	evapi_route_decl list = {.methods = EVAPI_GET, .path = "/things",
	                         .cb = handler, .responses = list_responses};
	evapi_route_decl events = {.methods = EVAPI_GET, .path = "/events",
	                           .cb = handler,
	                           .responses = events_responses};
	/* "/a-b" and "/a_b" give the same default id: the second is suffixed */
	evapi_route_decl twin1 = {.methods = EVAPI_GET, .path = "/a-b",
	                          .cb = handler};
	evapi_route_decl twin2 = {.methods = EVAPI_GET, .path = "/a_b",
	                          .cb = handler};

	th_config(&cfg);
	cfg.openapi = 1;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	CHECK_INT(evapi_app_openapi_info(app, "Things API", "2.1.0",
	                                 "Keeps *things*."), ==, 0);
	CHECK_INT(evapi_app_security_scheme(app, "ApiKey",
	                                    EVAPI_SECURITY_API_KEY_HEADER,
	                                    "X-API-Key", "A key"), ==, 0);
	CHECK_INT(evapi_app_security_scheme(app, "QueryKey",
	                                    EVAPI_SECURITY_API_KEY_QUERY,
	                                    "api_key", NULL), ==, 0);
	CHECK_INT(evapi_app_security_scheme(app, "Bearer",
	                                    EVAPI_SECURITY_HTTP_BEARER, "JWT",
	                                    NULL), ==, 0);
	CHECK_INT(evapi_app_security_scheme(app, "Basic",
	                                    EVAPI_SECURITY_HTTP_BASIC, NULL,
	                                    NULL), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &get), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &create), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &del), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &list), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &events), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &twin1), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &twin2), ==, 0);
	return app;
}

/* GET over a raw socket (the document is bigger than th_resp holds). */
static long get_raw(int port, const char *path, char *buf, size_t cap,
                    const char **body)
{
	char req[256];
	long status = 0;
	int fd;

	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	fd = th_connect_send(port, req);
	if (fd < 0)
		return 0;
	th_read_all(fd, buf, cap, 5.0);
	close(fd);
	sscanf(buf, "HTTP/1.1 %ld", &status);
	*body = strstr(buf, "\r\n\r\n");
	*body = *body ? *body + 4 : "";
	return status;
}

static json_t *at(json_t *j, const char *path)
{
	/* "a/b/c": object keys, or array indexes when numeric */
	char key[128];
	const char *p = path;
	while (j && *p) {
		size_t n = strcspn(p, "/");
		snprintf(key, sizeof key, "%.*s", (int)n, p);
		if (json_is_array(j))
			j = json_array_get(j, (size_t)atoi(key));
		else
			j = json_object_get(j, key);
		p += n;
		if (*p == '/')
			p++;
	}
	return j;
}

#define CHECK_AT_STR(doc, path, want)                                        \
	CHECK_STR(json_string_value(at((doc), (path))), (want))

static void test_document_content(void)
{
	evapi_app *app = make_app(1);
	json_t *doc = evapi_app_openapi(app), *p;

	CHECK(doc != NULL);
	CHECK_AT_STR(doc, "openapi", "3.1.0");
	CHECK_AT_STR(doc, "info/title", "evapi");
	CHECK_AT_STR(doc, "servers/0/url", "."); /* where it was fetched */
	/* the serving routes are not part of the API */
	CHECK(json_object_get(at(doc, "paths"), "/openapi.json") == NULL);
	CHECK(json_object_get(at(doc, "paths"), "/docs") == NULL);
	CHECK(json_object_get(at(doc, "paths"), "/redoc") == NULL);
	CHECK_INT(json_object_size(at(doc, "paths")), ==, 4);

	p = json_object_get(at(doc, "paths"), "/items/{item_id}");
	CHECK_AT_STR(p, "get/summary", "Read an item");
	CHECK(at(p, "head") == NULL);
	CHECK_AT_STR(p, "get/parameters/0/name", "item_id");
	CHECK_AT_STR(p, "get/parameters/0/in", "path");
	CHECK(json_is_true(at(p, "get/parameters/0/required")));
	CHECK_AT_STR(p, "get/parameters/0/schema/type", "integer");
	CHECK_INT(json_integer_value(at(p, "get/parameters/0/schema/minimum")),
	          ==, 1);
	CHECK_AT_STR(p, "get/parameters/0/description", "The item's id");
	CHECK_AT_STR(p, "get/parameters/1/in", "query");
	CHECK(json_is_false(at(p, "get/parameters/1/required")));
	CHECK_INT(json_integer_value(at(p, "get/parameters/1/schema/maxLength")),
	          ==, 50);
	CHECK_INT(json_integer_value(at(p, "get/parameters/2/schema/default")),
	          ==, 10);
	CHECK_INT(json_integer_value(at(p, "get/parameters/2/schema/maximum")),
	          ==, 100);
	CHECK_AT_STR(p, "get/parameters/3/in", "header");
	CHECK_AT_STR(p, "get/parameters/3/schema/type", "boolean");
	CHECK_AT_STR(json_object_get(at(p, "get/responses/422/content"),
	                             "application/json"),
	             "schema/$ref", "#/components/schemas/HTTPValidationError");

	p = json_object_get(at(doc, "paths"), "/items");
	CHECK(at(p, "post") != NULL && at(p, "put") != NULL);
	CHECK_AT_STR(p, "post/x-evapi-lane", "pool");
	CHECK(json_is_true(at(p, "post/requestBody/required")));
	CHECK_AT_STR(json_object_get(at(p, "post/requestBody/content"),
	                             "application/json"),
	             "schema/$ref", "#/components/schemas/Item");
	CHECK(at(p, "post/responses/415") != NULL);
	CHECK(at(p, "post/responses/503") != NULL);
	p = at(doc, "components/schemas/Item");
	CHECK_AT_STR(p, "type", "object");
	CHECK_AT_STR(p, "required/0", "name");
	CHECK_AT_STR(p, "required/1", "price");
	CHECK(at(p, "required/2") == NULL);
	CHECK_INT(json_integer_value(at(p, "properties/name/minLength")), ==, 1);
	CHECK_AT_STR(p, "properties/tags/items/type", "string");
	CHECK(json_array_size(at(p, "properties/tags/default")) == 0 &&
	      json_is_array(at(p, "properties/tags/default")));
	CHECK_AT_STR(p, "properties/dims/properties/w/type", "number");
	CHECK_AT_STR(doc, "components/schemas/HTTPValidationError/properties/"
	                  "detail/items/$ref",
	             "#/components/schemas/ValidationError");

	p = json_object_get(at(doc, "paths"), "/upload");
	CHECK(json_object_get(at(p, "post/requestBody/content"),
	                      "multipart/form-data") != NULL);
	CHECK(at(p, "post/responses/413") != NULL);

	/* an undeclared route still describes its path parameters */
	p = json_object_get(at(doc, "paths"), "/users/{user_id}/posts/{post}");
	CHECK_AT_STR(p, "get/parameters/0/name", "user_id");
	CHECK_AT_STR(p, "get/parameters/1/name", "post");
	CHECK_AT_STR(p, "delete/parameters/1/schema/type", "string");
	CHECK(at(p, "get/responses/422") == NULL);
	CHECK_AT_STR(p, "get/operationId", "users__user_id__posts__post__get");
	p = json_object_get(at(doc, "paths"), "/items/{item_id}");
	CHECK_AT_STR(p, "get/operationId", "read_an_item_items__item_id__get");
	/* without documented responses: 200 JSON, as before */
	CHECK(at(p, "get/responses/200/content") != NULL);
	json_decref(doc);
	evapi_app_free(app);
}

static void test_documented_responses_and_more(void)
{
	evapi_app *app = make_full_app();
	json_t *doc = evapi_app_openapi(app), *p, *r;

	CHECK_AT_STR(doc, "info/title", "Things API");
	CHECK_AT_STR(doc, "info/version", "2.1.0");
	CHECK_AT_STR(doc, "info/description", "Keeps *things*.");
	p = at(doc, "components/securitySchemes");
	CHECK_AT_STR(p, "ApiKey/type", "apiKey");
	CHECK_AT_STR(p, "ApiKey/in", "header");
	CHECK_AT_STR(p, "ApiKey/name", "X-API-Key");
	CHECK_AT_STR(p, "ApiKey/description", "A key");
	CHECK_AT_STR(p, "QueryKey/in", "query");
	CHECK_AT_STR(p, "QueryKey/name", "api_key");
	CHECK_AT_STR(p, "Bearer/type", "http");
	CHECK_AT_STR(p, "Bearer/scheme", "bearer");
	CHECK_AT_STR(p, "Bearer/bearerFormat", "JWT");
	CHECK_AT_STR(p, "Basic/scheme", "basic");

	p = json_object_get(at(doc, "paths"), "/things/{name}");
	CHECK_AT_STR(p, "get/description", "Reads **one** thing by name.");
	CHECK_AT_STR(p, "get/tags/0", "items");
	CHECK_AT_STR(p, "get/operationId", "read_a_thing_things__name__get");
	CHECK(json_object_size(at(p, "get/security/0")) == 1 &&
	      json_is_array(at(p, "get/security/0/ApiKey")));
	CHECK(json_is_array(at(p, "get/security/1/Bearer")));
	CHECK(at(p, "get/deprecated") == NULL);
	r = json_object_get(at(p, "get/responses/200/content"),
	                    "application/json");
	CHECK_AT_STR(r, "schema/$ref", "#/components/schemas/Thing");
	CHECK_INT(json_integer_value(at(r, "example/count")), ==, 3);
	CHECK_AT_STR(p, "get/responses/404/description", "No such thing");
	CHECK_AT_STR(json_object_get(at(p, "get/responses/404/content"),
	                             "application/json"),
	             "schema/$ref", "#/components/schemas/HTTPError");
	CHECK(at(p, "get/responses/422") != NULL); /* it has parameters */
	CHECK_INT(json_integer_value(at(p, "get/parameters/2/example")), ==, 3);
	CHECK(json_is_true(at(p, "get/parameters/1/example")));
	CHECK_AT_STR(p, "get/parameters/0/example", "hammer");
	p = at(doc, "components/schemas/Thing");
	CHECK_AT_STR(p, "title", "Thing");
	CHECK_AT_STR(p, "properties/name/examples/0", "hammer");
	CHECK_INT(json_integer_value(at(p, "properties/count/default")), ==, 0);

	/* 204 has no content; deprecated; two tags; basic auth */
	p = json_object_get(at(doc, "paths"), "/things/{name}");
	CHECK(json_is_true(at(p, "delete/deprecated")));
	CHECK_AT_STR(p, "delete/tags/0", "admin");
	CHECK_AT_STR(p, "delete/tags/1", "items");
	CHECK_AT_STR(p, "delete/responses/204/description", "No Content");
	CHECK(at(p, "delete/responses/204/content") == NULL);
	CHECK(at(p, "delete/responses/200") == NULL);
	CHECK(json_is_array(at(p, "delete/security/0/Basic")));

	p = json_object_get(at(doc, "paths"), "/things");
	CHECK_AT_STR(p, "post/operationId", "create_thing");
	CHECK(at(p, "post/responses/200") == NULL);
	CHECK_AT_STR(p, "post/responses/201/description", "Created");
	CHECK_AT_STR(p, "post/responses/409/description", "Already there");
	CHECK(at(p, "post/responses/422") != NULL); /* it has a body */
	CHECK(at(p, "post/responses/415") != NULL);
	CHECK_AT_STR(json_object_get(at(p, "post/requestBody/content"),
	                             "application/json"),
	             "example/name", "hammer");
	/* no parameters, no body: nothing can fail validation */
	CHECK(at(p, "get/responses/422") == NULL);
	CHECK_AT_STR(json_object_get(at(p, "get/responses/200/content"),
	                             "application/json"),
	             "schema/items/properties/name/type", "string");

	p = json_object_get(at(doc, "paths"), "/events");
	r = json_object_get(at(p, "get/responses/200/content"),
	                    "text/event-stream");
	CHECK(r != NULL);
	CHECK(json_object_get(at(p, "get/responses/200/content"),
	                      "application/json") == NULL);
	CHECK_AT_STR(r, "schema/type", "string");
	CHECK_AT_STR(r, "example", "data: {\"n\": 1}\n\n");
	CHECK(at(p, "get/responses/422") == NULL);

	CHECK_AT_STR(json_object_get(at(doc, "paths"), "/a-b"),
	             "get/operationId", "a_b_get");
	CHECK_AT_STR(json_object_get(at(doc, "paths"), "/a_b"),
	             "get/operationId", "a_b_get_2");
	json_decref(doc);
	evapi_app_free(app);
}

static void test_bad_documentation_refused(void)
{
	static const evapi_response dup[] = {{.status = 200}, {.status = 200},
	                                     {0}};
	static const evapi_response bad_status[] = {{.status = 99}, {0}};
	static const evapi_response bad_name[] = {
		{.status = 200, .schema = &out_schema, .schema_name = "a b"},
		{0}};
	static const evapi_response bad_example[] = {
		{.status = 200, .example = "{nope"}, {0}};
	static const evapi_response text_example[] = {
		{.status = 200, .content_type = "text/plain", .example = "{nope"},
		{0}};
	static const char *const unknown[] = {"Nope", NULL};
	static const char *const empty_tag[] = {"", NULL};
	static const evapi_field bad_param_example[] = {
		{.name = "n", .type = EVAPI_INT, .example = "x"}, {0}};
	static const evapi_field bad_field_example[] = {
		{.name = "n", .type = EVAPI_INT, .example = "{"}, {0}};
	evapi_app *app = evapi_app_new(NULL);
	evapi_route_decl d = {.methods = EVAPI_GET, .path = "/x",
	                      .cb = handler};
	evapi_route_decl e;

#define REFUSED(member, value, code)                                         \
	do {                                                                 \
		e = d;                                                       \
		e.member = value;                                            \
		CHECK_INT(evapi_app_route_decl(app, &e), ==, code);          \
	} while (0)
	REFUSED(responses, dup, EVAPI_EINVAL);
	REFUSED(responses, bad_status, EVAPI_EINVAL);
	REFUSED(responses, bad_name, EVAPI_EINVAL);
	REFUSED(responses, bad_example, EVAPI_EINVAL);
	REFUSED(security, unknown, EVAPI_EINVAL);
	REFUSED(tags, empty_tag, EVAPI_EINVAL);
	REFUSED(body_example, "[1,", EVAPI_EINVAL);
	REFUSED(params, bad_param_example, EVAPI_EINVAL);
	REFUSED(methods, EVAPI_POST, 0);
	e.path = "/y";
	e.body = bad_field_example;
	CHECK_INT(evapi_app_route_decl(app, &e), ==, EVAPI_EINVAL);
	/* an operation id names one operation */
	e = d;
	e.methods = EVAPI_GET | EVAPI_PUT;
	e.operation_id = "op";
	CHECK_INT(evapi_app_route_decl(app, &e), ==, EVAPI_EINVAL);
	e.methods = EVAPI_GET;
	e.responses = text_example; /* plain text: any example */
	CHECK_INT(evapi_app_route_decl(app, &e), ==, 0);
	e.methods = EVAPI_PUT;
	CHECK_INT(evapi_app_route_decl(app, &e), ==, EVAPI_EEXIST);
#undef REFUSED
	CHECK_INT(evapi_app_security_scheme(app, "K",
	                                    EVAPI_SECURITY_API_KEY_HEADER, NULL,
	                                    NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_app_security_scheme(app, "a b",
	                                    EVAPI_SECURITY_HTTP_BASIC, NULL,
	                                    NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_app_security_scheme(app, "K", 99, "x", NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_app_security_scheme(app, "K", EVAPI_SECURITY_HTTP_BASIC,
	                                    NULL, NULL), ==, 0);
	CHECK_INT(evapi_app_security_scheme(app, "K", EVAPI_SECURITY_HTTP_BASIC,
	                                    NULL, NULL), ==, EVAPI_EEXIST);
	CHECK_INT(evapi_app_openapi_info(app, "", NULL, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_app_openapi_info(NULL, "t", NULL, NULL), ==,
	          EVAPI_EINVAL);
	evapi_app_free(app);
}

static void test_served_document_and_docs(void)
{
	static char buf[1 << 17];
	evapi_app *app = make_app(1);
	json_t *want = evapi_app_openapi(app), *got;
	const char *body;
	th_server s;

	th_server_start(&s, app);
	CHECK_INT(get_raw(s.port, "/openapi.json", buf, sizeof buf, &body), ==,
	          200);
	CHECK_CONTAINS(buf, "Content-Type: application/json");
	got = json_loads(body, 0, NULL);
	CHECK(got != NULL && json_equal(got, want));
	json_decref(got);
	CHECK_INT(get_raw(s.port, "/docs", buf, sizeof buf, &body), ==, 200);
	CHECK_CONTAINS(buf, "Content-Type: text/html; charset=utf-8");
	CHECK_CONTAINS(body, "fetch('openapi.json')"); /* relative: see test_api */
	/* self-contained: no external script, style or font */
	CHECK(strstr(body, "src=") == NULL);
	CHECK(strstr(body, "http://") == NULL && strstr(body, "https://") == NULL);
	CHECK(strstr(body, "<link") == NULL);
	th_server_stop(&s);
	json_decref(want);

	/* off by default */
	th_server_start(&s, make_app(0));
	CHECK_INT(get_raw(s.port, "/openapi.json", buf, sizeof buf, &body), ==,
	          404);
	CHECK_INT(get_raw(s.port, "/docs", buf, sizeof buf, &body), ==, 404);
	CHECK_INT(get_raw(s.port, "/redoc", buf, sizeof buf, &body), ==, 404);
	CHECK(strstr(body, "ReDoc") == NULL); /* the router's own 404 */
	th_server_stop(&s);
}

/* Every src= and href= value of a page: relative (no scheme, no leading
 * '/'), so the page works behind a path prefix. Returns how many. */
static int all_relative(const char *page)
{
	const char *p = page;
	int n = 0;
	while ((p = strpbrk(p, "sh")) != NULL) {
		size_t k = strncmp(p, "src=\"", 5) == 0    ? 5
		           : strncmp(p, "href=\"", 6) == 0 ? 6
		                                           : 0;
		p++;
		if (!k)
			continue;
		p += k - 1;
		CHECK(*p != '/' && strncmp(p, "http", 4) != 0);
		n++;
	}
	return n;
}

/* A library's page: `nurls` src= and href= values, all relative; no
 * other URL (no CDN) and no inline script. */
static void local_only(const char *page, int nurls)
{
	CHECK_INT(all_relative(page), ==, nurls);
	CHECK(strstr(page, "//") == NULL);
	CHECK(strstr(page, "<script>") == NULL);
}

/* A file of a docs page at path: 200 with that Content-Type line, a day
 * of caching, nosniff and an ETag; revalidated with it: 304, no body. */
static void check_cached(int port, const char *path, const char *type)
{
	static char buf[1 << 17];
	char req[512], etag[64] = "", *e;
	const char *body;
	int fd;

	CHECK_INT(get_raw(port, path, buf, sizeof buf, &body), ==, 200);
	CHECK_CONTAINS(buf, type);
	CHECK_CONTAINS(buf, "Cache-Control: public, max-age=86400");
	CHECK_CONTAINS(buf, "X-Content-Type-Options: nosniff");
	if ((e = strstr(buf, "ETag: ")) != NULL)
		sscanf(e + 6, "%63[^\r]", etag);
	CHECK(etag[0] == '"');
	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: x\r\n"
	         "If-None-Match: %s\r\nConnection: close\r\n\r\n", path,
	         etag);
	fd = th_connect_send(port, req);
	CHECK(fd >= 0);
	th_read_all(fd, buf, sizeof buf, 5.0);
	close(fd);
	CHECK(strncmp(buf, "HTTP/1.1 304", 12) == 0);
	CHECK_CONTAINS(buf, etag);
	CHECK(strstr(buf, "\r\n\r\n") && strstr(buf, "\r\n\r\n")[4] == '\0');
}

static void test_swagger_ui_served(void)
{
	static char buf[1 << 17];
	static char big[4 << 20];
	const char *body;
	evapi_app *app;
	th_server s;
	struct stat st;

	if (stat(SWAGGER_DIR "/swagger-ui-bundle.js", &st) != 0) {
		TH_SKIP("no Swagger UI files in %s (run .ci/deps)", SWAGGER_DIR);
		return;
	}
	app = make_app_in(1, SWAGGER_DIR);
	th_server_start(&s, app);
	CHECK_INT(get_raw(s.port, "/docs", buf, sizeof buf, &body), ==, 200);
	CHECK_CONTAINS(buf, "Content-Type: text/html; charset=utf-8");
	CHECK_CONTAINS(body, "<div id=\"swagger-ui\">");
	CHECK_CONTAINS(body, "src=\"docs/swagger-ui-bundle.js\"");
	CHECK_CONTAINS(body, "href=\"docs/swagger-ui.css\"");
	local_only(body, 4);

	CHECK_INT(get_raw(s.port, "/docs/evapi-docs.js", buf, sizeof buf,
	                  &body), ==, 200);
	CHECK_CONTAINS(buf, "Content-Type: text/javascript; charset=utf-8");
	CHECK_CONTAINS(body, "SwaggerUIBundle({");
	CHECK_CONTAINS(body, "url: \"openapi.json\"");

	check_cached(s.port, "/docs/swagger-ui.css",
	             "Content-Type: text/css; charset=utf-8");

	/* the bundle, whole, as JavaScript */
	CHECK(stat(SWAGGER_DIR "/swagger-ui-bundle.js", &st) == 0 &&
	      (size_t)st.st_size < sizeof big - 4096);
	CHECK_INT(get_raw(s.port, "/docs/swagger-ui-bundle.js", big,
	                  sizeof big, &body), ==, 200);
	CHECK_CONTAINS(big, "Content-Type: text/javascript; charset=utf-8");
	CHECK_INT((long)strlen(body), ==, (long)st.st_size);
	CHECK_INT(get_raw(s.port, "/docs/favicon-32x32.png", buf, sizeof buf,
	                  &body), ==, 200);
	CHECK_CONTAINS(buf, "Content-Type: image/png");
	/* only the listed files: never a path into the directory */
	CHECK_INT(get_raw(s.port, "/docs/package.json", buf, sizeof buf, &body),
	          ==, 404);
	CHECK_INT(get_raw(s.port, "/docs/..%2Fpackage.json", buf, sizeof buf,
	                  &body), ==, 404);
	/* the document does not list the docs routes */
	CHECK_INT(get_raw(s.port, "/openapi.json", buf, sizeof buf, &body), ==,
	          200);
	CHECK(strstr(body, "/docs") == NULL);
	th_server_stop(&s);

	/* files missing: the plain page, and why in the log */
	th_log_clear();
	app = make_app_in(1, "/nonexistent");
	th_server_start(&s, app);
	CHECK_CONTAINS(th_log(), "swagger_ui_dir /nonexistent");
	CHECK_INT(get_raw(s.port, "/docs", buf, sizeof buf, &body), ==, 200);
	CHECK_CONTAINS(body, "fetch('openapi.json')");
	CHECK_INT(get_raw(s.port, "/docs/swagger-ui.css", buf, sizeof buf,
	                  &body), ==, 404);
	th_server_stop(&s);
}

/* A directory holding a small stand-in for ReDoc's bundle (new: the
 * caller removes it with th_remove_dir). */
static const char fake_bundle[] = "/* stand-in for redoc.standalone.js */\n"
                                  "window.Redoc = {version: \"test\"};\n";

static int fake_redoc_dir(char *dir)
{
	char path[300];
	FILE *f;

	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof path, "%s/redoc.standalone.js", dir);
	if (!(f = fopen(path, "w")))
		return -1;
	fputs(fake_bundle, f);
	return fclose(f);
}

static void test_redoc_served(void)
{
	static char buf[1 << 17];
	char dir[] = "/tmp/evapi-redoc-XXXXXX";
	const char *body;
	evapi_app *app;
	json_t *j;
	th_server s;

	CHECK_INT(fake_redoc_dir(dir), ==, 0);
	th_server_start(&s, make_app_with(1, "", dir));
	CHECK_INT(get_raw(s.port, "/redoc", buf, sizeof buf, &body), ==, 200);
	CHECK_CONTAINS(buf, "Content-Type: text/html; charset=utf-8");
	CHECK_CONTAINS(body, "<redoc spec-url=\"openapi.json\"></redoc>");
	CHECK_CONTAINS(body, "<script src=\"redoc/redoc.standalone.js\">");
	local_only(body, 1);
	CHECK(strstr(body, "<link") == NULL); /* no web font, no stylesheet */
	/* the bundle's CDN logo is never fetched */
	CHECK_CONTAINS(buf, "Content-Security-Policy: img-src 'self' data:");

	check_cached(s.port, "/redoc/redoc.standalone.js",
	             "Content-Type: text/javascript; charset=utf-8");
	CHECK_INT(get_raw(s.port, "/redoc/redoc.standalone.js", buf,
	                  sizeof buf, &body), ==, 200);
	CHECK_STR(body, fake_bundle);
	/* only that file: never a path into the directory */
	CHECK_INT(get_raw(s.port, "/redoc/evapi-docs.js", buf, sizeof buf,
	                  &body), ==, 404);
	CHECK_INT(get_raw(s.port, "/redoc/..%2Fredoc.standalone.js", buf,
	                  sizeof buf, &body), ==, 404);
	/* nor is it in the document */
	CHECK_INT(get_raw(s.port, "/openapi.json", buf, sizeof buf, &body), ==,
	          200);
	CHECK(strstr(body, "/redoc") == NULL);
	CHECK(strstr(body, "/items/{item_id}") != NULL);
	th_server_stop(&s);
	th_remove_dir(dir);

	/* not installed: a 404 that says so, JSON, and why in the log */
	th_log_clear();
	th_server_start(&s, make_app_with(1, "", "/nonexistent"));
	CHECK_CONTAINS(th_log(), "redoc_dir /nonexistent");
	CHECK_INT(get_raw(s.port, "/redoc", buf, sizeof buf, &body), ==, 404);
	CHECK_CONTAINS(buf, "Content-Type: application/json");
	j = json_loads(body, 0, NULL);
	CHECK_CONTAINS(json_string_value(json_object_get(j, "detail")),
	               "ReDoc is not installed");
	json_decref(j);
	CHECK_INT(get_raw(s.port, "/redoc/redoc.standalone.js", buf,
	                  sizeof buf, &body), ==, 404);
	CHECK_INT(get_raw(s.port, "/docs", buf, sizeof buf, &body), ==, 200);
	th_server_stop(&s);

	/* "" turns it off: no route, so the path is the app's */
	app = make_app_with(1, "", "");
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/redoc", EVAPI_INLINE,
	                          handler, NULL), ==, 0);
	th_server_start(&s, app);
	CHECK_INT(get_raw(s.port, "/redoc", buf, sizeof buf, &body), ==, 200);
	CHECK_STR(body, "{\"ok\":true}");
	th_server_stop(&s);
}

/* The real bundle (docs/redoc, installed by .ci/deps), served whole. */
static void test_redoc_bundle_served(void)
{
	static char big[4 << 20];
	const char *body;
	th_server s;
	struct stat st;

	if (stat(REDOC_DIR "/redoc.standalone.js", &st) != 0) {
		TH_SKIP("no ReDoc bundle in %s (run .ci/deps)", REDOC_DIR);
		return;
	}
	CHECK((size_t)st.st_size < sizeof big - 4096);
	th_server_start(&s, make_app_with(1, "", REDOC_DIR));
	CHECK_INT(get_raw(s.port, "/redoc/redoc.standalone.js", big,
	                  sizeof big, &body), ==, 200);
	CHECK_CONTAINS(big, "Content-Type: text/javascript; charset=utf-8");
	CHECK_INT((long)strlen(body), ==, (long)st.st_size);
	CHECK_CONTAINS(body, "spec-url");
	th_server_stop(&s);
}

/* Writes doc to a new temporary file; returns 0 and its name in path. */
static int dump(json_t *doc, char *path)
{
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (json_dumpfd(doc, fd, JSON_INDENT(1)) != 0) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* Runs the validator on two files in one node process (node starts in
 * about a second); returns its exit status, its output in out. */
static int validate(const char *good, const char *bad, char *out,
                    size_t cap)
{
	char cmd[1024];

	snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' 2>&1", VALIDATOR, good,
	         bad);
	return th_run_capture(cmd, out, cap);
}

/* Writes the full app's and the demo's documents (the validator checks
 * them too) to new temporary files full and demo. */
static void dump_more(char *full, char *demo)
{
	char dir[] = "/tmp/evapi-openapi-up-XXXXXX";
	evapi_app *app = make_full_app(), *d = evapi_app_new(NULL);
	json_t *doc = evapi_app_openapi(app);

	CHECK_INT(dump(doc, full), ==, 0);
	json_decref(doc);
	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT(evapi_app_openapi_info(d, "evapi demo", NULL, NULL), ==, 0);
	CHECK_INT(demo_declared_routes(d, dir), ==, 0);
	doc = evapi_app_openapi(d);
	CHECK(json_object_get(json_object_get(json_object_get(json_object_get(
		      at(doc, "paths"), "/items"), "post"), "responses"),
	                      "201") != NULL);
	CHECK_INT(dump(doc, demo), ==, 0);
	json_decref(doc);
	rmdir(dir);
	evapi_app_free(d);
	evapi_app_free(app);
}

static void test_validated_by_openapi_validator(void)
{
	char good[] = "/tmp/evapi-openapi-XXXXXX";
	char bad[] = "/tmp/evapi-openapi-XXXXXX";
	char full[] = "/tmp/evapi-openapi-XXXXXX";
	char demo[] = "/tmp/evapi-openapi-XXXXXX";
	char out[8192], want[128], files[128];
	evapi_app *app;
	json_t *doc, *broken;
	int i;

	if (access(VALIDATOR_MODULE, R_OK) != 0 ||
	    system("node -v >/dev/null 2>&1") != 0) {
		TH_SKIP("no OpenAPI validator (%s) or no node (run .ci/deps; "
		        "needs npm)", VALIDATOR_MODULE);
		return;
	}
	app = make_app(1);
	doc = evapi_app_openapi(app);
	/* the validator really checks: a parameter "in" body is not 3.1 */
	broken = json_deep_copy(doc);
	json_object_set_new(
		json_array_get(json_object_get(json_object_get(json_object_get(
				       json_object_get(broken, "paths"),
				       "/items/{item_id}"), "get"), "parameters"),
		               0),
		"in", json_string("body"));
	CHECK_INT(dump(doc, good), ==, 0);
	CHECK_INT(dump(broken, bad), ==, 0);
	dump_more(full, demo);
	snprintf(files, sizeof files, "%s' '%s' '%s", good, full, demo);
	CHECK_INT(validate(files, bad, out, sizeof out), ==, 1);
	for (i = 0; i < 3; i++) {
		snprintf(want, sizeof want, "%s: valid\n",
		         i == 0 ? good : i == 1 ? full : demo);
		CHECK_CONTAINS(out, want);
	}
	snprintf(want, sizeof want, "%s: INVALID ", bad);
	CHECK_CONTAINS(out, want);
	unlink(full);
	unlink(demo);
	unlink(good);
	unlink(bad);
	json_decref(broken);
	json_decref(doc);
	evapi_app_free(app);
}

static const th_test tests[] = {
	{"document_content", test_document_content},
	{"served_document_and_docs", test_served_document_and_docs},
	{"documented_responses_and_more", test_documented_responses_and_more},
	{"bad_documentation_refused", test_bad_documentation_refused},
	{"swagger_ui_served", test_swagger_ui_served},
	{"redoc_served", test_redoc_served},
	{"redoc_bundle_served", test_redoc_bundle_served},
	{"validated_by_openapi_validator", test_validated_by_openapi_validator},
	{NULL, NULL}};

int main(int argc, char **argv)
{
	return th_main(argc, argv, tests);
}
