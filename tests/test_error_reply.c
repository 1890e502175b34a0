/*
 * test_error_reply.c: the application's error shapes
 * (evapi_app_error_handler, src/error_reply.c) on evapi's own errors
 * (404, 405, 422, 503, 504, the request guard's), on the application's
 * own, and the "route failed" reply (evapi_reply_failed). A real app on
 * 127.0.0.1:0.
 */
#include "harness.h"

#include <stdlib.h>

static int guard_calls; /* handler calls without a request (atomic) */

/* {"error": {"status": N, "message": <detail>, "path": "/x"}} */
static json_t *shape(evapi_req *req, int status, json_t *detail, void *arg)
{
	if (!req)
		__atomic_add_fetch(&guard_calls, 1, __ATOMIC_SEQ_CST);
	return json_pack("{s:{s:i,s:O,s:s?,s:s}}", "error", "status", status,
	                 "message", detail, "path",
	                 req ? evapi_req_path(req) : NULL, "by", (char *)arg);
}

static json_t *keep_default(evapi_req *req, int status, json_t *detail,
                            void *arg)
{
	return NULL;
}

static void conflict(evapi_req *req, void *arg)
{
	evapi_reply_error(req, 409, "Already there");
}

static void teapot(evapi_req *req, void *arg)
{
	evapi_reply_error(req, 418, "Short and stout");
}

static void slow(evapi_req *req, void *arg)
{
	th_sleep_ms(400);
	evapi_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void wait_long(evapi_req *req, void *arg);
static void waited(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}
static void wait_long(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 3000, waited, NULL);
}

static void silent_pool(evapi_req *req, void *arg)
{
	/* returns without replying: 500, shaped on the worker */
}

static void failed(evapi_req *req, void *arg)
{
	long long code = 0;
	evapi_req_query_int(req, "code", &code);
	evapi_reply_failed(req, (int)code, "render");
}

static const evapi_field int_id[] = {
	{.name = "id", .in = EVAPI_IN_PATH, .type = EVAPI_INT},
	{0}};

static evapi_app *make_app(int timeout_ms)
{
	evapi_config cfg;
	evapi_route_decl d = {0};
	evapi_app *app;

	th_config(&cfg);
	cfg.request_timeout_ms = timeout_ms;
	cfg.pool_threads = 1;
	cfg.pool_queue_max = 0;
	cfg.max_target_bytes = 64;
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/conflict", EVAPI_INLINE,
	                          conflict, NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/teapot", EVAPI_INLINE,
	                          teapot, NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/slow", EVAPI_POOL, slow,
	                          NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/wait", EVAPI_INLINE,
	                          wait_long, NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/silent", EVAPI_POOL,
	                          silent_pool, NULL), ==, 0);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/fail", EVAPI_INLINE, failed,
	                          NULL), ==, 0);
	d.methods = EVAPI_GET;
	d.path = "/items/{id}";
	d.cb = conflict;
	d.params = int_id;
	CHECK_INT(evapi_app_route_decl(app, &d), ==, 0);
	return app;
}

static void errors_shaped_by_status_and_catch_all(void)
{
	th_server s;
	th_resp r;

	s.app = make_app(30000);
	CHECK_INT(evapi_app_error_handler(s.app, 404, shape, "404"), ==, 0);
	CHECK_INT(evapi_app_error_handler(s.app, 0, shape, "any"), ==, 0);
	CHECK_INT(evapi_app_error_handler(s.app, 418, keep_default, NULL), ==, 0);
	th_server_start(&s, s.app);

	CHECK_INT(th_http(s.port, "GET", "/nowhere", NULL, &r), ==, 404);
	CHECK_STR(r.body, "{\"error\":{\"status\":404,\"message\":\"Not Found\","
	                  "\"path\":\"/nowhere\",\"by\":\"404\"}}");
	CHECK_CONTAINS(r.headers, "application/json");
	/* 405 keeps its Allow header */
	CHECK_INT(th_http(s.port, "POST", "/conflict", NULL, &r), ==, 405);
	CHECK_CONTAINS(r.body, "\"message\":\"Method Not Allowed\"");
	CHECK_CONTAINS(r.body, "\"by\":\"any\"");
	CHECK_CONTAINS(r.headers, "Allow: GET");
	/* the application's own error replies */
	CHECK_INT(th_http(s.port, "GET", "/conflict", NULL, &r), ==, 409);
	CHECK_CONTAINS(r.body, "{\"error\":{\"status\":409,\"message\":"
	                       "\"Already there\"");
	/* a handler may keep the default */
	CHECK_INT(th_http(s.port, "GET", "/teapot", NULL, &r), ==, 418);
	CHECK_STR(r.body, "{\"detail\":\"Short and stout\"}");
	/* 422: the handler gets FastAPI's list */
	CHECK_INT(th_http(s.port, "GET", "/items/abc", NULL, &r), ==, 422);
	CHECK_CONTAINS(r.body, "{\"error\":{\"status\":422,\"message\":[{");
	CHECK_CONTAINS(r.body, "\"loc\":[\"path\",\"id\"]");
	/* a pool handler that never replied: 500, shaped on the worker */
	CHECK_INT(th_http(s.port, "GET", "/silent", NULL, &r), ==, 500);
	CHECK_CONTAINS(r.body, "\"message\":\"Internal Server Error\"");
	CHECK_CONTAINS(r.body, "\"path\":\"/silent\"");
	th_server_stop(&s);
}

static void errors_deadline_and_full_pool(void)
{
	static const char *const paths[] = {"/slow", "/slow", "/slow"};
	th_server s;
	th_resp r, rs[3];
	int i, n503 = 0;

	s.app = make_app(300);
	CHECK_INT(evapi_app_error_handler(s.app, 0, shape, "any"), ==, 0);
	th_server_start(&s, s.app);
	/* the request deadline's 504 */
	CHECK_INT(th_http(s.port, "GET", "/wait", NULL, &r), ==, 504);
	CHECK_CONTAINS(r.body, "{\"error\":{\"status\":504,\"message\":"
	                       "\"Request deadline exceeded\"");
	/* one worker, no queue: the others get the full pool's 503 */
	th_http_parallel(s.port, 3, paths, rs);
	for (i = 0; i < 3; i++)
		if (rs[i].status == 503) {
			n503++;
			CHECK_CONTAINS(rs[i].body, "\"status\":503");
			CHECK_CONTAINS(rs[i].headers, "Retry-After: 1");
		}
	CHECK_INT(n503, >=, 1);
	th_server_stop(&s);
}

static void errors_guard_replies_shaped(void)
{
	char big[200], raw[512], buf[4096];
	th_server s;
	int closed = 0;

	s.app = make_app(30000);
	CHECK_INT(evapi_app_error_handler(s.app, 0, shape, "any"), ==, 0);
	th_server_start(&s, s.app);
	__atomic_store_n(&guard_calls, 0, __ATOMIC_SEQ_CST);
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	snprintf(raw, sizeof raw, "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", big);
	CHECK_INT(th_exchange(s.port, raw, buf, sizeof buf, 5.0, &closed), ==,
	          414);
	CHECK(closed);
	CHECK_CONTAINS(buf, "{\"error\":{\"status\":414,\"message\":");
	CHECK_CONTAINS(buf, "\"by\":\"any\"}}");
	{
		/* Content-Length matches the shaped body */
		const char *cl = strstr(buf, "Content-Length: ");
		const char *body = strstr(buf, "\r\n\r\n");
		CHECK(cl && body);
		if (cl && body)
			CHECK_INT(atoi(cl + 16), ==, strlen(body + 4));
	}
	CHECK_INT(__atomic_load_n(&guard_calls, __ATOMIC_SEQ_CST), ==, 1);
	CHECK_INT(th_exchange(s.port, "GET / HTTP/1.1\r\nHost: x\r\n"
	                      "Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
	                      buf, sizeof buf, 5.0, &closed), ==, 400);
	CHECK_CONTAINS(buf, "{\"error\":{\"status\":400,");
	th_server_stop(&s);
}

static void errors_route_failed_logged_with_id(void)
{
	th_server s;
	th_resp r;
	char want[64];

	s.app = make_app(30000);
	CHECK_INT(evapi_app_error_handler(s.app, 0, shape, "any"), ==, 0);
	th_server_start(&s, s.app);
	th_log_clear();
	CHECK_INT(th_http(s.port, "GET", "/fail?code=-2", NULL, &r), ==, 500);
	CHECK_CONTAINS(r.body, "\"message\":\"Internal Server Error\"");
	CHECK_CONTAINS(th_log(), "GET /fail: render failed: ");
	snprintf(want, sizeof want, "(%d): 500 id=", EVAPI_ENOMEM);
	CHECK_CONTAINS(th_log(), want);
	CHECK_INT(th_http(s.port, "GET", "/fail?code=-14", NULL, &r), ==, 504);
	CHECK_CONTAINS(r.body, "\"status\":504");
	CHECK_INT(th_http(s.port, "GET", "/fail?code=-4", NULL, &r), ==, 503);
	CHECK_CONTAINS(r.headers, "Retry-After: 1");
	th_server_stop(&s);
	CHECK_INT(evapi_reply_failed(NULL, EVAPI_ENOMEM, "x"), ==, EVAPI_EINVAL);
}

static void errors_handler_arguments(void)
{
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_error_handler(NULL, 404, shape, NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_app_error_handler(app, 399, shape, NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_app_error_handler(app, 600, shape, NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_app_error_handler(app, 404, NULL, NULL), ==, 0);
	CHECK_INT(evapi_app_error_handler(app, 404, shape, "a"), ==, 0);
	CHECK_INT(evapi_app_error_handler(app, 404, shape, "b"), ==, 0);
	evapi_app_free(app);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"errors.shaped_by_status_and_catch_all",
		 errors_shaped_by_status_and_catch_all},
		{"errors.deadline_and_full_pool", errors_deadline_and_full_pool},
		{"errors.guard_replies_shaped", errors_guard_replies_shaped},
		{"errors.route_failed_logged_with_id",
		 errors_route_failed_logged_with_id},
		{"errors.handler_arguments", errors_handler_arguments},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
