/*
 * test_middleware.c: middleware on a real app: nesting order of before
 * and after hooks and of the headers they add, short-circuit, hooks on
 * pool replies, 404s and streams, the no-reply rule, and CORS (preflight
 * and simple requests, allowed and not).
 */
#include "harness.h"

#include <evapi/testing.h>
#include <stdlib.h>
#include <time.h>

static int before_a(evapi_req *req, void *arg)
{
	th_trace_add("A>");
	return 0;
}

static void after_a(evapi_req *req, int status, void *arg)
{
	char v[16];
	th_trace_add("<A");
	snprintf(v, sizeof v, "%d", status);
	evapi_reply_add_header(req, "X-A", v);
}

static int before_b(evapi_req *req, void *arg)
{
	th_trace_add("B>");
	if (evapi_req_header(req, "X-Block")) {
		evapi_reply_error(req, 403, "blocked by middleware");
		return 1;
	}
	if (evapi_req_header(req, "X-Forget"))
		return 1; /* stops without replying: a bug, answered 500 */
	return 0;
}

static void after_b(evapi_req *req, int status, void *arg)
{
	th_trace_add("<B");
	evapi_reply_add_header(req, "X-B", "b");
	/* framing stays evapi's, even here */
	if (evapi_reply_add_header(req, "Content-Length", "1") != EVAPI_EINVAL)
		th_trace_add("!");
}

static void timing_after(evapi_req *req, int status, void *arg)
{
	char v[32];
	long long us;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	us = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 -
	     evapi_req_start_us(req);
	snprintf(v, sizeof v, "%.6f", us / 1e6);
	evapi_reply_add_header(req, "X-Process-Time", v);
}

static int misuse_rc = 1; /* the deprecated alias, in a handler */
static void handler(evapi_req *req, void *arg)
{
	if (!arg)
		th_trace_add("H");
	/* the old name still works, as evapi_reply_add_header */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	__atomic_store_n(&misuse_rc,
	                 evapi_response_add_header(req, "X-Now", "yes"),
	                 __ATOMIC_SEQ_CST);
#pragma GCC diagnostic pop
	evapi_reply_add_header(req, "X-Handler", "h");
	evapi_reply_text(req, 200, "hi");
}

static void stream_handler(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_stream(req, 200, "text/plain");
	evapi_stream_write(s, "streamed", 8);
	evapi_stream_close(s);
}

static evapi_test *start_app(int cors)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_test *tc;
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	if (cors) {
		evapi_cors_config cc = {0};
		cc.allow_origins = "https://app.example, https://other.example";
		cc.expose_headers = "X-Process-Time";
		CHECK_INT(evapi_app_cors(app, &cc), ==, 0);
	}
	CHECK_INT(evapi_app_middleware(app, NULL, timing_after, NULL), ==, 0);
	CHECK_INT(evapi_app_middleware(app, before_a, after_a, NULL), ==, 0);
	CHECK_INT(evapi_app_middleware(app, before_b, after_b, NULL), ==, 0);
	CHECK_INT(evapi_app_middleware(app, NULL, NULL, NULL), ==, EVAPI_EINVAL);
	evapi_app_route(app, EVAPI_GET | EVAPI_POST, "/h", EVAPI_INLINE, handler, NULL);
	evapi_app_route(app, EVAPI_GET, "/p", EVAPI_POOL, handler, (void *)1);
	evapi_app_route(app, EVAPI_GET, "/s", EVAPI_INLINE, stream_handler, NULL);
	th_trace_clear();
	tc = evapi_test_start(app);
	CHECK(tc != NULL);
	return tc;
}

/* One request with extra header lines (NULL-ended); frees the last reply. */
static evapi_test_response *r_;
static evapi_test_response *call(evapi_test *tc, const char *method,
                                 const char *path, const char *const *hdrs)
{
	evapi_test_response_free(r_);
	r_ = evapi_test_request(tc, &(evapi_test_req){
		.method = method, .path = path, .headers = hdrs});
	return r_;
}

static void stop_app(evapi_test *tc)
{
	evapi_test_response_free(r_);
	r_ = NULL;
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static int before(const char *hay, const char *a, const char *b)
{
	const char *pa = strstr(hay, a), *pb = strstr(hay, b);
	return pa && pb && pa < pb;
}

static void test_order_and_header_order(void)
{
	evapi_test *tc = start_app(0);
	th_resp r;
	/* raw header text, for the order of the lines */
	CHECK_INT(th_http(evapi_test_port(tc), "GET", "/h", NULL, &r), ==, 200);
	CHECK_STR(th_trace(), "A>B>H<B<A");
	/* the handler's headers, then the after hooks', innermost first */
	CHECK(before(r.headers, "X-Handler: h", "X-B: b"));
	CHECK(before(r.headers, "X-B: b", "X-A: 200"));
	CHECK(before(r.headers, "X-A: 200", "X-Process-Time: "));
	CHECK_INT(__atomic_load_n(&misuse_rc, __ATOMIC_SEQ_CST), ==, 0);
	CHECK(before(r.headers, "X-Now: yes", "X-Handler: h"));
	stop_app(tc);
}

static void test_short_circuit(void)
{
	evapi_test *tc = start_app(0);
	evapi_test_response *r;
	const char *block[] = {"X-Block: 1", NULL};
	const char *forget[] = {"X-Forget: 1", NULL};
	r = call(tc, "GET", "/h", block);
	CHECK_INT(evapi_test_status(r), ==, 403);
	CHECK_STR(evapi_test_body(r, NULL), "{\"detail\":\"blocked by middleware\"}");
	/* the handler never ran; the outer middlewares still saw the reply */
	CHECK_STR(th_trace(), "A>B><B<A");
	CHECK_STR(evapi_test_header(r, "X-A"), "403");
	CHECK(evapi_test_header(r, "X-Process-Time") != NULL);
	th_trace_clear();
	CHECK_INT(evapi_test_status(call(tc, "GET", "/h", forget)), ==, 500);
	CHECK_STR(th_trace(), "A>B><B<A");
	CHECK_CONTAINS(th_log(), "middleware 2 stopped the request without replying");
	stop_app(tc);
}

static void test_pool_404_and_stream_replies(void)
{
	evapi_test *tc = start_app(0);
	evapi_test_response *r = call(tc, "GET", "/p", NULL);
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_STR(evapi_test_header(r, "X-A"), "200");
	CHECK_STR(evapi_test_header(r, "X-Handler"), "h");
	r = call(tc, "GET", "/nope", NULL);
	CHECK_INT(evapi_test_status(r), ==, 404);
	CHECK_STR(evapi_test_header(r, "X-A"), "404");
	CHECK(evapi_test_header(r, "X-Process-Time") != NULL);
	r = call(tc, "DELETE", "/h", NULL);
	CHECK_INT(evapi_test_status(r), ==, 405);
	CHECK_STR(evapi_test_header(r, "X-A"), "405");
	r = call(tc, "GET", "/s", NULL);
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_STR(evapi_test_body(r, NULL), "streamed");
	CHECK_STR(evapi_test_header(r, "X-B"), "b");
	CHECK_STR(evapi_test_header(r, "Transfer-Encoding"), "chunked");
	stop_app(tc);
}

static void test_cors(void)
{
	evapi_test *tc = start_app(1);
	evapi_test_response *r;
	const char *pre[] = {"Origin: https://app.example",
	                     "Access-Control-Request-Method: POST",
	                     "Access-Control-Request-Headers: content-type", NULL};
	const char *bad_origin[] = {"Origin: https://evil.example",
	                            "Access-Control-Request-Method: POST", NULL};
	const char *bad_method[] = {"Origin: https://app.example",
	                            "Access-Control-Request-Method: TRACE", NULL};
	const char *simple[] = {"Origin: https://other.example", NULL};
	const char *evil[] = {"Origin: https://evil.example", NULL};
	/* preflight: answered by the middleware, never routed */
	r = call(tc, "OPTIONS", "/h", pre);
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_STR(evapi_test_header(r, "Access-Control-Allow-Origin"), "https://app.example");
	CHECK_CONTAINS(evapi_test_header(r, "Access-Control-Allow-Methods"), "GET, POST, ");
	CHECK_STR(evapi_test_header(r, "Access-Control-Allow-Headers"), "content-type");
	CHECK_STR(evapi_test_header(r, "Access-Control-Max-Age"), "600");
	CHECK_STR(evapi_test_header(r, "Vary"), "Origin");
	CHECK(strstr(th_trace(), "H") == NULL);
	r = call(tc, "OPTIONS", "/h", bad_origin);
	CHECK_INT(evapi_test_status(r), ==, 400);
	CHECK_STR(evapi_test_body(r, NULL), "{\"detail\":\"Disallowed CORS origin\"}");
	CHECK(evapi_test_header(r, "Access-Control-Allow-Origin") == NULL);
	r = call(tc, "OPTIONS", "/h", bad_method);
	CHECK_INT(evapi_test_status(r), ==, 400);
	CHECK_STR(evapi_test_body(r, NULL), "{\"detail\":\"Disallowed CORS method\"}");
	/* simple requests */
	r = call(tc, "GET", "/h", simple);
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_STR(evapi_test_header(r, "Access-Control-Allow-Origin"), "https://other.example");
	CHECK_STR(evapi_test_header(r, "Access-Control-Expose-Headers"), "X-Process-Time");
	r = call(tc, "GET", "/h", evil);
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK(evapi_test_header(r, "Access-Control-Allow-Origin") == NULL);
	/* no Origin: not a CORS request */
	r = call(tc, "GET", "/h", NULL);
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK(evapi_test_header(r, "Access-Control-Allow-Origin") == NULL);
	stop_app(tc);
}

static void test_registration_rules(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_cors_config cc = {0};
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_cors(app, &cc), ==, EVAPI_EINVAL); /* no origins */
	CHECK_INT(evapi_app_middleware(NULL, before_a, NULL, NULL), ==, EVAPI_EINVAL);
	evapi_app_free(app);
}

/* A before hook cannot wait: every async call is refused at once with
 * EVAPI_ESTATE and its callback never runs; the request goes on. */
static int async_rc[4] = {1, 1, 1, 1};
static int async_cbs;

static void async_sleep_cb(evapi_req *req, int status, void *arg)
{
	__atomic_add_fetch(&async_cbs, 1, __ATOMIC_SEQ_CST);
}

static void async_work(void *arg)
{
}

static void async_done(evapi_req *req, int status, void *arg)
{
	__atomic_add_fetch(&async_cbs, 1, __ATOMIC_SEQ_CST);
}

static void async_fetch_cb(evapi_req *req, int status,
                           const evapi_fetch_res *res, void *arg)
{
	__atomic_add_fetch(&async_cbs, 1, __ATOMIC_SEQ_CST);
}

static void async_gather_cb(evapi_req *req, int status, size_t n,
                            const evapi_fetch_res *const *res, void *arg)
{
	__atomic_add_fetch(&async_cbs, 1, __ATOMIC_SEQ_CST);
}

static int before_async(evapi_req *req, void *arg)
{
	evapi_fetch_opts o = {0};
	o.url = "http://127.0.0.1:1/"; /* never reached */
	async_rc[0] = evapi_req_sleep(req, 10, async_sleep_cb, NULL);
	async_rc[1] = evapi_req_run_in_pool(req, async_work, async_done, NULL);
	async_rc[2] = evapi_req_fetch(req, &o, async_fetch_cb, NULL);
	async_rc[3] = evapi_req_gather(req, &o, 1, 0, async_gather_cb, NULL);
	return 0;
}

static void test_before_refuses_async(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	int i;
	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_middleware(s.app, before_async, NULL, NULL), ==, 0);
	evapi_app_route(s.app, EVAPI_GET, "/h", EVAPI_INLINE, handler, (void *)1);
	th_server_start(&s, s.app);
	CHECK_INT(th_http(s.port, "GET", "/h", NULL, &r), ==, 200);
	CHECK_STR(r.body, "hi");
	for (i = 0; i < 4; i++)
		CHECK_INT(async_rc[i], ==, EVAPI_ESTATE);
	th_sleep_ms(100);
	th_server_stop(&s);
	CHECK_INT(__atomic_load_n(&async_cbs, __ATOMIC_SEQ_CST), ==, 0);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"mw.order_and_header_order", test_order_and_header_order},
		{"mw.short_circuit", test_short_circuit},
		{"mw.pool_404_and_stream_replies", test_pool_404_and_stream_replies},
		{"mw.cors", test_cors},
		{"mw.registration_rules", test_registration_rules},
		{"mw.before_refuses_async", test_before_refuses_async},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
