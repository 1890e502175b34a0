/*
 * test_openapi.c: the generated OpenAPI 3.1 document (src/openapi.c):
 * its content for declared and plain routes, the document served at
 * /openapi.json, the /docs page, and validation of the document by a real
 * OpenAPI validator (@seriousme/openapi-schema-validator, installed by
 * .ci/deps under tests/openapi; SKIP with the reason when it is absent).
 */
#include "harness.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif
#define VALIDATOR TOP_SRCDIR "/tests/openapi/validate.mjs"
#define VALIDATOR_MODULE                                                     \
	TOP_SRCDIR "/tests/openapi/node_modules/@seriousme/"                 \
	           "openapi-schema-validator/package.json"

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

static evapi_app *make_app(int openapi)
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
	/* the serving routes are not part of the API */
	CHECK(json_object_get(at(doc, "paths"), "/openapi.json") == NULL);
	CHECK(json_object_get(at(doc, "paths"), "/docs") == NULL);
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
	json_decref(doc);
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
	size_t n = 0;
	FILE *f;
	int rc;

	out[0] = '\0';
	snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' 2>&1", VALIDATOR, good,
	         bad);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (n + 1 < cap && fgets(out + n, (int)(cap - n), f))
		n = strlen(out);
	while (fgetc(f) != EOF)
		;
	rc = pclose(f);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_validated_by_openapi_validator(void)
{
	char good[] = "/tmp/evapi-openapi-XXXXXX";
	char bad[] = "/tmp/evapi-openapi-XXXXXX";
	char out[8192], want[128];
	evapi_app *app;
	json_t *doc, *broken;

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
	CHECK_INT(validate(good, bad, out, sizeof out), ==, 1);
	snprintf(want, sizeof want, "%s: valid\n", good);
	CHECK_CONTAINS(out, want);
	snprintf(want, sizeof want, "%s: INVALID ", bad);
	CHECK_CONTAINS(out, want);
	unlink(good);
	unlink(bad);
	json_decref(broken);
	json_decref(doc);
	evapi_app_free(app);
}

static const th_test tests[] = {
	{"document_content", test_document_content},
	{"served_document_and_docs", test_served_document_and_docs},
	{"validated_by_openapi_validator", test_validated_by_openapi_validator},
	{NULL, NULL}};

int main(int argc, char **argv)
{
	return th_main(argc, argv, tests);
}
