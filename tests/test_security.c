/*
 * test_security.c: the security dependencies of evapi/security.h against
 * FastAPI 0.92's answers (the statuses, details and WWW-Authenticate
 * values below are what fastapi.security answers for the same requests):
 * an API key in a header, the query and a cookie, HTTP Bearer, HTTP
 * Basic (with and without a realm), each present, missing and wrong;
 * optional schemes; a verify that waits (inline) or blocks (pool); the
 * OpenAPI document (components.securitySchemes, per-operation security
 * from the app, a router and a route, checked by the OpenAPI validator
 * when it is installed); and the constant-time comparison.
 */
#include "harness.h"

#include <evapi/testing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif
#define VALIDATOR TOP_SRCDIR "/tests/openapi/validate.mjs"
#define VALIDATOR_MODULE                                                     \
	TOP_SRCDIR "/tests/openapi/node_modules/@seriousme/"                 \
	           "openapi-schema-validator/package.json"

/* ---- the app ---------------------------------------------------------------- */

/* Valid: the key "k1", the token "t1", alice/wonderland. */
static int verify(evapi_req *req, const evapi_credentials *c, void *arg)
{
	if (c->kind == EVAPI_SECURITY_HTTP_BASIC)
		return evapi_secure_streq(c->username, "alice") &
		               evapi_secure_streq(c->password, "wonderland")
		       ? 0 : -1;
	return evapi_secure_streq(c->credentials, arg) ? 0 : -1;
}

/* Echoes the credential the route's scheme read. */
static void whoami(evapi_req *req, void *arg)
{
	const evapi_credentials *c = evapi_req_credentials(req, arg);
	if (!c) {
		evapi_reply_json(req, 200, json_pack("{s:n}", "credentials"));
		return;
	}
	evapi_reply_json(req, 200, json_pack("{s:s, s:s*, s:s*, s:s*, s:s*}",
	                                     "scheme_name", c->scheme_name,
	                                     "credentials", c->credentials,
	                                     "scheme", c->scheme, "username",
	                                     c->username, "password",
	                                     c->password));
}

/* Async verify: the key is checked after a sleep on the loop. */
static void key_slept(evapi_req *req, int status, void *arg)
{
	const evapi_credentials *c = evapi_req_credentials(req, "SlowKey");
	if (status != 0)
		return;
	if (c && evapi_secure_streq(c->credentials, "k1"))
		evapi_dep_resume(req);
	else
		evapi_reply_error(req, 403, "Could not validate credentials");
}

static int verify_later(evapi_req *req, const evapi_credentials *c,
                        void *arg)
{
	if (evapi_req_sleep(req, 20, key_slept, NULL) != 0)
		return -1;
	return EVAPI_DEP_WAIT;
}

/* A pool verify may block. */
static int verify_blocking(evapi_req *req, const evapi_credentials *c,
                           void *arg)
{
	th_sleep_ms(10);
	if (evapi_worker_index() < 0)
		return -1;
	return evapi_secure_streq(c->credentials, "t1") ? 0 : -1;
}

static const evapi_dep *sec(evapi_app *app, evapi_security_config c)
{
	const evapi_dep *d = evapi_app_security(app, &c);
	CHECK(d != NULL);
	return d;
}

static void route(evapi_app *app, const char *path, const evapi_dep *d,
                  const char *scheme)
{
	CHECK_INT(evapi_app_route(app, EVAPI_GET, path, EVAPI_INLINE, whoami,
	                          (void *)scheme), ==, 0);
	if (d)
		CHECK_INT(evapi_route_dep(app, EVAPI_GET, path, d), ==, 0);
}

static evapi_app *make_app(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_router *r;

	th_config(&cfg);
	cfg.openapi = 1;
	app = evapi_app_new(&cfg);
	route(app, "/header", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_API_KEY_HEADER, .param = "X-API-Key",
		.verify = verify, .arg = "k1"}), "APIKeyHeader");
	route(app, "/query", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_API_KEY_QUERY, .param = "api_key",
		.verify = verify, .arg = "k1"}), "APIKeyQuery");
	route(app, "/cookie", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_API_KEY_COOKIE, .param = "session",
		.verify = verify, .arg = "k1"}), "APIKeyCookie");
	route(app, "/bearer", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BEARER, .param = "JWT",
		.verify = verify, .arg = "t1"}), "HTTPBearer");
	route(app, "/basic", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BASIC, .verify = verify}),
	      "HTTPBasic");
	route(app, "/realm", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BASIC, .name = "RealmBasic",
		.realm = "evapi", .verify = verify}), "RealmBasic");
	route(app, "/optional", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BEARER, .name = "OptionalBearer",
		.optional = 1}), "OptionalBearer");
	route(app, "/optional/basic", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BASIC, .name = "OptionalBasic",
		.optional = 1}), "OptionalBasic");
	route(app, "/slow", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_API_KEY_HEADER, .name = "SlowKey",
		.param = "X-API-Key", .verify = verify_later}), "SlowKey");
	route(app, "/pool", sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BEARER, .name = "PoolBearer",
		.verify = verify_blocking, .lane = EVAPI_POOL}), "PoolBearer");
	route(app, "/open", NULL, NULL);
	/* a router's scheme guards its routes */
	r = evapi_router_new(app, "/admin");
	CHECK_INT(evapi_router_dep(r, sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BEARER, .name = "AdminBearer",
		.verify = verify, .arg = "t1"})), ==, 0);
	CHECK_INT(evapi_router_route(r, EVAPI_GET, "/stats", whoami,
	                             "AdminBearer"), ==, 0);
	CHECK_INT(evapi_app_include_router(app, r), ==, 0);
	evapi_router_free(r);
	return app;
}

/* GET path with one header line (or none); checks status, body and
 * WWW-Authenticate (NULL: none). */
static void expect(evapi_test *tc, const char *path, const char *header,
                   int status, const char *body, const char *www)
{
	const char *h[] = {header, NULL};
	evapi_test_response *r = evapi_test_request(tc, &(evapi_test_req){
		.path = path, .headers = header ? h : NULL});
	CHECK_INT(evapi_test_status(r), ==, status);
	CHECK_STR(evapi_test_body(r, NULL), body);
	if (www)
		CHECK_STR(evapi_test_header(r, "WWW-Authenticate"), www);
	else
		CHECK(evapi_test_header(r, "WWW-Authenticate") == NULL);
	evapi_test_response_free(r);
}

#define NOT_AUTH "{\"detail\":\"Not authenticated\"}"
#define INVALID "{\"detail\":\"Invalid authentication credentials\"}"

static void test_api_keys(void)
{
	evapi_test *tc = evapi_test_start(make_app());

	expect(tc, "/header", NULL, 403, NOT_AUTH, NULL);
	expect(tc, "/header", "X-API-Key:", 403, NOT_AUTH, NULL);
	expect(tc, "/header", "X-API-Key: nope", 403, INVALID, NULL);
	expect(tc, "/header", "x-api-key: k1", 200,
	       "{\"scheme_name\":\"APIKeyHeader\",\"credentials\":\"k1\"}",
	       NULL);
	expect(tc, "/query", NULL, 403, NOT_AUTH, NULL);
	expect(tc, "/query?api_key=", NULL, 403, NOT_AUTH, NULL);
	expect(tc, "/query?api_key=k2", NULL, 403, INVALID, NULL);
	expect(tc, "/query?api_key=k1", NULL, 200,
	       "{\"scheme_name\":\"APIKeyQuery\",\"credentials\":\"k1\"}",
	       NULL);
	expect(tc, "/cookie", NULL, 403, NOT_AUTH, NULL);
	expect(tc, "/cookie", "Cookie: other=k1", 403, NOT_AUTH, NULL);
	expect(tc, "/cookie", "Cookie: session=", 403, NOT_AUTH, NULL);
	expect(tc, "/cookie", "Cookie: session=k2", 403, INVALID, NULL);
	/* Starlette's parser: spaces and quotes stripped, the last wins */
	expect(tc, "/cookie", "Cookie: a=1; session = \"k1\" ; b=3", 200,
	       "{\"scheme_name\":\"APIKeyCookie\",\"credentials\":\"k1\"}",
	       NULL);
	expect(tc, "/cookie", "Cookie: session=k2; session=k1", 200,
	       "{\"scheme_name\":\"APIKeyCookie\",\"credentials\":\"k1\"}",
	       NULL);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_http_bearer(void)
{
	evapi_test *tc = evapi_test_start(make_app());

	expect(tc, "/bearer", NULL, 403, NOT_AUTH, NULL);
	expect(tc, "/bearer", "Authorization: Bearer", 403, NOT_AUTH, NULL);
	expect(tc, "/bearer", "Authorization: Bearer ", 403, NOT_AUTH, NULL);
	expect(tc, "/bearer", "Authorization: Basic abc", 403, INVALID, NULL);
	expect(tc, "/bearer", "Authorization: Bearer t2", 403, INVALID, NULL);
	expect(tc, "/bearer", "Authorization: bearer t1", 200,
	       "{\"scheme_name\":\"HTTPBearer\",\"credentials\":\"t1\","
	       "\"scheme\":\"bearer\"}", NULL);
	/* from a router */
	expect(tc, "/admin/stats", NULL, 403, NOT_AUTH, NULL);
	expect(tc, "/admin/stats", "Authorization: Bearer t1", 200,
	       "{\"scheme_name\":\"AdminBearer\",\"credentials\":\"t1\","
	       "\"scheme\":\"Bearer\"}", NULL);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_http_basic(void)
{
	evapi_test *tc = evapi_test_start(make_app());

	expect(tc, "/basic", NULL, 401, NOT_AUTH, "Basic");
	expect(tc, "/basic", "Authorization: Bearer x", 401, NOT_AUTH, "Basic");
	expect(tc, "/realm", NULL, 401, NOT_AUTH, "Basic realm=\"evapi\"");
	/* not base64, no ':', unpadded, not ASCII, empty: as Python reads it */
	expect(tc, "/basic", "Authorization: Basic !!!", 401, INVALID, "Basic");
	expect(tc, "/basic", "Authorization: Basic YWxpY2U=", 401, INVALID,
	       "Basic");
	expect(tc, "/basic", "Authorization: Basic YWxpY2U6d29uZGVybGFuZA",
	       401, INVALID, "Basic");
	expect(tc, "/basic", "Authorization: Basic w6k6eA==", 401, INVALID,
	       "Basic");
	expect(tc, "/basic", "Authorization: Basic", 401, INVALID, "Basic");
	/* wrong password (alice:wrong): verify refuses, 401 and the header */
	expect(tc, "/basic", "Authorization: Basic YWxpY2U6d3Jvbmc=", 401,
	       INVALID, "Basic");
	expect(tc, "/realm", "Authorization: Basic YWxpY2U6d3Jvbmc=", 401,
	       INVALID, "Basic realm=\"evapi\"");
	expect(tc, "/basic", "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==",
	       200, "{\"scheme_name\":\"HTTPBasic\",\"scheme\":\"Basic\","
	            "\"username\":\"alice\",\"password\":\"wonderland\"}",
	       NULL);
	/* non-alphabet bytes skipped, data after the padding ignored */
	expect(tc, "/basic",
	       "Authorization: basic YW xp*Y2U6d29uZGVybGFuZA==YQ==", 200,
	       "{\"scheme_name\":\"HTTPBasic\",\"scheme\":\"basic\","
	       "\"username\":\"alice\",\"password\":\"wonderland\"}", NULL);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_optional_and_lanes(void)
{
	evapi_test *tc = evapi_test_start(make_app());

	/* optional: nothing sent, or the wrong scheme, is no error ... */
	expect(tc, "/optional", NULL, 200, "{\"credentials\":null}", NULL);
	expect(tc, "/optional", "Authorization: Basic x", 200,
	       "{\"credentials\":null}", NULL);
	expect(tc, "/optional", "Authorization: Bearer z", 200,
	       "{\"scheme_name\":\"OptionalBearer\",\"credentials\":\"z\","
	       "\"scheme\":\"Bearer\"}", NULL);
	expect(tc, "/optional/basic", NULL, 200, "{\"credentials\":null}",
	       NULL);
	/* ... but FastAPI's HTTPBasic refuses bad base64 all the same */
	expect(tc, "/optional/basic", "Authorization: Basic !!", 401, INVALID,
	       "Basic");
	/* a verify that waits on the loop, then resumes or answers */
	expect(tc, "/slow", "X-API-Key: k1", 200,
	       "{\"scheme_name\":\"SlowKey\",\"credentials\":\"k1\"}", NULL);
	expect(tc, "/slow", "X-API-Key: k2", 403,
	       "{\"detail\":\"Could not validate credentials\"}", NULL);
	/* a verify on a worker */
	expect(tc, "/pool", "Authorization: Bearer t1", 200,
	       "{\"scheme_name\":\"PoolBearer\",\"credentials\":\"t1\","
	       "\"scheme\":\"Bearer\"}", NULL);
	expect(tc, "/pool", "Authorization: Bearer t2", 403, INVALID, NULL);
	expect(tc, "/open", NULL, 200, "{\"credentials\":null}", NULL);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

/* ---- OpenAPI ------------------------------------------------------------------ */

static json_t *at(json_t *j, const char *a, const char *b, const char *c)
{
	j = json_object_get(j, a);
	if (b)
		j = json_object_get(j, b);
	if (c)
		j = json_object_get(j, c);
	return j;
}

static void test_openapi_schemes(void)
{
	evapi_app *app = make_app();
	json_t *doc, *schemes, *op;
	char *text;
	char path[] = "/tmp/evapi-security-XXXXXX";
	int fd;

	/* an app-wide scheme is listed on every operation, after the
	 * route's own */
	CHECK_INT(evapi_app_dep(app, sec(app, (evapi_security_config){
		.kind = EVAPI_SECURITY_API_KEY_COOKIE, .name = "AppCookie",
		.param = "sid", .optional = 1})), ==, 0);
	doc = evapi_app_openapi(app);
	schemes = at(doc, "components", "securitySchemes", NULL);
	CHECK_INT(json_object_size(schemes), ==, 12);
	text = json_dumps(json_object_get(schemes, "APIKeyHeader"),
	                  JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(text, "{\"in\":\"header\",\"name\":\"X-API-Key\","
	                "\"type\":\"apiKey\"}");
	free(text);
	text = json_dumps(json_object_get(schemes, "APIKeyCookie"),
	                  JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(text, "{\"in\":\"cookie\",\"name\":\"session\","
	                "\"type\":\"apiKey\"}");
	free(text);
	text = json_dumps(json_object_get(schemes, "HTTPBearer"),
	                  JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(text, "{\"bearerFormat\":\"JWT\",\"scheme\":\"bearer\","
	                "\"type\":\"http\"}");
	free(text);
	text = json_dumps(json_object_get(schemes, "HTTPBasic"),
	                  JSON_SORT_KEYS | JSON_COMPACT);
	CHECK_STR(text, "{\"scheme\":\"basic\",\"type\":\"http\"}");
	free(text);
	op = at(doc, "paths", "/bearer", "get");
	text = json_dumps(json_object_get(op, "security"), JSON_COMPACT);
	CHECK_STR(text, "[{\"AppCookie\":[]},{\"HTTPBearer\":[]}]");
	free(text);
	text = json_dumps(json_object_get(at(doc, "paths", "/admin/stats",
	                                     "get"), "security"),
	                  JSON_COMPACT);
	CHECK_STR(text, "[{\"AppCookie\":[]},{\"AdminBearer\":[]}]");
	free(text);
	text = json_dumps(json_object_get(at(doc, "paths", "/open", "get"),
	                                  "security"), JSON_COMPACT);
	CHECK_STR(text, "[{\"AppCookie\":[]}]");
	free(text);
	/* a valid OpenAPI 3.1 document */
	if (access(VALIDATOR_MODULE, R_OK) == 0 &&
	    system("node -v >/dev/null 2>&1") == 0) {
		char cmd[512], out[4096], want[128];
		CHECK((fd = mkstemp(path)) >= 0);
		CHECK_INT(json_dumpfd(doc, fd, 0), ==, 0);
		close(fd);
		snprintf(cmd, sizeof cmd, "node '%s' '%s' 2>&1", VALIDATOR, path);
		CHECK_INT(th_run_capture(cmd, out, sizeof out), ==, 0);
		snprintf(want, sizeof want, "%s: valid\n", path);
		CHECK_CONTAINS(out, want);
		unlink(path);
	}
	json_decref(doc);
	evapi_app_free(app);
}

static void test_bad_config(void)
{
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK(evapi_app_security(app, NULL) == NULL);
	/* an API key needs its parameter's name */
	CHECK(evapi_app_security(app, &(evapi_security_config){
		.kind = EVAPI_SECURITY_API_KEY_HEADER}) == NULL);
	CHECK(evapi_app_security(app, &(evapi_security_config){
		.kind = 99, .name = "x"}) == NULL);
	CHECK(evapi_app_security(app, &(evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BASIC, .realm = "a\"b"}) == NULL);
	CHECK(evapi_app_security(app, &(evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BASIC, .name = "bad name"}) == NULL);
	CHECK(evapi_app_security(app, &(evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BASIC}) != NULL);
	/* the name is taken now */
	CHECK(evapi_app_security(app, &(evapi_security_config){
		.kind = EVAPI_SECURITY_HTTP_BASIC}) == NULL);
	CHECK_CONTAINS(th_log(), "evapi_app_security HTTPBasic: already "
	                         "registered");
	evapi_app_free(app);
}

static void test_secure_equals(void)
{
	CHECK_INT(evapi_secure_streq("secret", "secret"), ==, 1);
	CHECK_INT(evapi_secure_streq("secreT", "secret"), ==, 0);
	CHECK_INT(evapi_secure_streq("secre", "secret"), ==, 0);
	CHECK_INT(evapi_secure_streq("secrets", "secret"), ==, 0);
	CHECK_INT(evapi_secure_streq("", "secret"), ==, 0);
	CHECK_INT(evapi_secure_streq("", ""), ==, 1);
	CHECK_INT(evapi_secure_streq(NULL, "x"), ==, 0);
	CHECK_INT(evapi_secure_equals("a\0b", 3, "a\0b", 3), ==, 1);
	CHECK_INT(evapi_secure_equals("a\0b", 3, "a\0c", 3), ==, 0);
	CHECK_INT(evapi_secure_equals("x", 1, NULL, 0), ==, 0);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"security.api_keys", test_api_keys},
		{"security.http_bearer", test_http_bearer},
		{"security.http_basic", test_http_basic},
		{"security.optional_and_lanes", test_optional_and_lanes},
		{"security.openapi_schemes", test_openapi_schemes},
		{"security.bad_config", test_bad_config},
		{"security.secure_equals", test_secure_equals},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
