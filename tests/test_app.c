/*
 * test_app.c: integration tests of the two lanes on a real app at
 * 127.0.0.1:0, driven by libcurl and raw sockets. Timing assertions use
 * generous ratios (they also run under sanitizers), never tight times.
 */
#include "harness.h"
#include "../src/internal.h"

#include <stdlib.h>
#include <unistd.h>

/* ---- handlers ------------------------------------------------------------ */

static int query_ms(evapi_req *req, int dflt)
{
	long long v;
	return evapi_req_query_int(req, "ms", &v) == 0 ? (int)v : dflt;
}

static void hello(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "Hello", "World"));
}

static void sleep_done(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:s}", "slept", "inline"));
}

static void inline_sleep(evapi_req *req, void *arg)
{
	CHECK_INT(evapi_req_sleep(req, (unsigned)query_ms(req, 300), sleep_done,
	                          NULL), ==, 0);
}

static void inline_block(evapi_req *req, void *arg)
{
	th_sleep_ms(query_ms(req, 200)); /* the anti-pattern, on purpose */
	evapi_reply_json(req, 200, json_pack("{s:s}", "blocked", "loop"));
}

/* Blocks the loop, then asks for a non-blocking sleep: the sleep must be
 * measured from when it was asked for, not from the stale loop time. */
static void block_then_sleep(evapi_req *req, void *arg)
{
	th_sleep_ms(300);
	CHECK_INT(evapi_req_sleep(req, 300, sleep_done, NULL), ==, 0);
}

static int pool_started, pool_finished; /* atomics */

static void pool_sleep(evapi_req *req, void *arg)
{
	__atomic_add_fetch(&pool_started, 1, __ATOMIC_SEQ_CST);
	th_sleep_ms(query_ms(req, 300));
	evapi_reply_json(req, 200, json_pack("{s:s}", "slept", "pool"));
	__atomic_add_fetch(&pool_finished, 1, __ATOMIC_SEQ_CST);
}

static void no_reply(evapi_req *req, void *arg)
{
}

static void echo(evapi_req *req, void *arg)
{
	size_t len;
	json_t *j;

	evapi_req_body(req, &len);
	evapi_reply_add_header(req, "X-Lane", arg ? "pool" : "inline");
	if (evapi_req_json(req, &j) != 0)
		return;
	evapi_reply_json(req, 201, json_pack(
		"{s:s, s:s?, s:s?, s:s?, s:I, s:O, s:s}",
		"path", evapi_req_path(req),
		"a", evapi_req_param(req, "a"),
		"q", evapi_req_query(req, "q"),
		"hdr", evapi_req_header(req, "x-test"),
		"len", (json_int_t)len, "json", j,
		"route", evapi_req_route(req)));
}

/* Set on the loop or a worker, read by the test thread. */
#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_SEQ_CST)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)

static int twice_rc = 1, bad_header_rc = 1;
static void twice(evapi_req *req, void *arg)
{
	SET(bad_header_rc,
	    evapi_reply_add_header(req, "X-Bad", "a\r\nInjected: 1"));
	evapi_reply_text(req, 200, "first");
	SET(twice_rc, evapi_reply_text(req, 200, "second"));
}

static int cancel_status = 1;
static long long cancel_at_us;
static int after_cancel_reply_rc = 1;
static void cancel_probe_done(evapi_req *req, int status, void *arg)
{
	SET(cancel_status, status);
	SET(cancel_at_us, (long long)(th_now() * 1e6));
	SET(after_cancel_reply_rc, evapi_reply_text(req, 200, "too late"));
}

static void cancel_probe(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 2000, cancel_probe_done, NULL);
}

struct sum_job {
	long long n, sum;
	pthread_t worker;
};

static void sum_work(void *arg)
{
	struct sum_job *s = arg;
	long long i;
	s->worker = pthread_self();
	for (i = 1; i <= s->n; i++)
		s->sum += i;
}

static int offload_on_worker = -1;
static void sum_done(evapi_req *req, int status, void *arg)
{
	struct sum_job *s = arg;
	SET(offload_on_worker, !pthread_equal(s->worker, pthread_self()));
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:I}", "sum", (json_int_t)s->sum));
	free(s);
}

static void offload(evapi_req *req, void *arg)
{
	struct sum_job *s = calloc(1, sizeof *s);
	long long n = 0;
	evapi_req_query_int(req, "n", &n);
	s->n = n;
	CHECK_INT(evapi_req_run_in_pool(req, sum_work, sum_done, s), ==, 0);
}

static int framing_rc = 1, status_rc = 1;
static void no_content(evapi_req *req, void *arg)
{
	SET(framing_rc, evapi_reply_add_header(req, "content-length", "3"));
	SET(status_rc, evapi_reply_text(req, 101, "nope"));
	evapi_reply_text(req, 204, "body that must not be sent");
}

#define BIG_LEN (8u << 20)
static void big(evapi_req *req, void *arg)
{
	char *b = malloc(BIG_LEN);
	memset(b, 'x', BIG_LEN);
	evapi_reply_bytes(req, 200, "application/octet-stream", b, BIG_LEN);
	free(b);
}

static evapi_app *make_app(evapi_config *cfg)
{
	evapi_app *app = evapi_app_new(cfg);
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, hello, NULL);
	evapi_app_route(app, EVAPI_GET, "/sleep", EVAPI_INLINE, inline_sleep, NULL);
	evapi_app_route(app, EVAPI_GET, "/block", EVAPI_INLINE, inline_block, NULL);
	evapi_app_route(app, EVAPI_GET, "/block-then-sleep", EVAPI_INLINE, block_then_sleep, NULL);
	evapi_app_route(app, EVAPI_GET, "/psleep", EVAPI_POOL, pool_sleep, NULL);
	evapi_app_route(app, EVAPI_GET, "/noreply", EVAPI_INLINE, no_reply, NULL);
	evapi_app_route(app, EVAPI_GET, "/pnoreply", EVAPI_POOL, no_reply, NULL);
	evapi_app_route(app, EVAPI_POST | EVAPI_PUT, "/echo/{a}", EVAPI_POOL, echo, (void *)1);
	evapi_app_route(app, EVAPI_POST, "/iecho/{a}", EVAPI_INLINE, echo, NULL);
	evapi_app_route(app, EVAPI_GET, "/twice", EVAPI_INLINE, twice, NULL);
	evapi_app_route(app, EVAPI_GET, "/cancel-probe", EVAPI_INLINE, cancel_probe, NULL);
	evapi_app_route(app, EVAPI_GET, "/offload", EVAPI_INLINE, offload, NULL);
	evapi_app_route(app, EVAPI_GET, "/nocontent", EVAPI_INLINE, no_content, NULL);
	evapi_app_route(app, EVAPI_GET, "/big", EVAPI_POOL, big, NULL);
	return app;
}

static void start(th_server *s, evapi_config *cfg)
{
	evapi_config c;
	if (!cfg) {
		th_config(&c);
		cfg = &c;
	}
	th_server_start(s, make_app(cfg));
}

/* ---- tests ---------------------------------------------------------------- */

static void test_hello_json(void)
{
	th_server s;
	th_resp r;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"Hello\":\"World\"}");
	CHECK_CONTAINS(r.headers, "Content-Type: application/json");
	CHECK_CONTAINS(r.headers, "Content-Length: 17");
	CHECK_CONTAINS(th_log(), "GET /hello 200");
	CHECK_CONTAINS(th_log(), "inline");
	th_server_stop(&s);
}

static void test_errors_shapes(void)
{
	th_server s;
	th_resp r;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/missing", NULL, &r), ==, 404);
	CHECK_STR(r.body, "{\"detail\":\"Not Found\"}");
	CHECK_INT(th_http(s.port, "DELETE", "/hello", NULL, &r), ==, 405);
	CHECK_STR(r.body, "{\"detail\":\"Method Not Allowed\"}");
	CHECK_CONTAINS(r.headers, "Allow: GET, HEAD\r\n");
	CHECK_INT(th_http(s.port, "GET", "/echo/1", NULL, &r), ==, 405);
	CHECK_CONTAINS(r.headers, "Allow: POST, PUT\r\n");
	CHECK_INT(th_http(s.port, "HEAD", "/hello", NULL, &r), ==, 200);
	CHECK_STR(r.body, "");
	CHECK_CONTAINS(r.headers, "Content-Length: 17");
	CHECK_INT(th_http(s.port, "GET", "/hello%zz", NULL, &r), ==, 400);
	CHECK_CONTAINS(r.body, "\"detail\"");
	CHECK_INT(th_http(s.port, "GET", "/hello?q=%", NULL, &r), ==, 400);
	CHECK_INT(th_http(s.port, "TRACE", "/hello", NULL, &r), ==, 501);
	CHECK_CONTAINS(r.body, "{\"detail\":");
	th_server_stop(&s);
}

static void test_snapshot_in_pool(void)
{
	th_server s;
	th_resp r;
	json_t *j;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "POST", "/echo/caf%C3%A9%2Fx?q=a+b%26c&z=1",
	                  "{\"k\":[1,2]}", &r), ==, 201);
	CHECK_CONTAINS(r.headers, "X-Lane: pool");
	j = json_loads(r.body, 0, NULL);
	CHECK(j != NULL);
	CHECK_STR(json_string_value(json_object_get(j, "a")), "caf\xc3\xa9/x");
	CHECK_STR(json_string_value(json_object_get(j, "q")), "a b&c");
	CHECK_STR(json_string_value(json_object_get(j, "route")), "/echo/{a}");
	CHECK_INT(json_integer_value(json_object_get(j, "len")), ==, 11);
	CHECK_INT(json_integer_value(json_array_get(json_object_get(
		          json_object_get(j, "json"), "k"), 1)), ==, 2);
	json_decref(j);
	th_server_stop(&s);
}

static void test_invalid_json_422(void)
{
	th_server s;
	th_resp r;
	json_t *j, *item;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "POST", "/iecho/x", "{\"a\": 1,", &r), ==, 422);
	j = json_loads(r.body, 0, NULL);
	item = json_array_get(json_object_get(j, "detail"), 0);
	CHECK_STR(json_string_value(json_object_get(item, "type")), "json_invalid");
	CHECK_STR(json_string_value(json_array_get(json_object_get(item, "loc"), 0)), "body");
	CHECK(json_is_integer(json_array_get(json_object_get(item, "loc"), 1)));
	CHECK_STR(json_string_value(json_object_get(item, "msg")), "JSON decode error");
	CHECK(json_is_string(json_object_get(json_object_get(item, "ctx"), "error")));
	json_decref(j);
	/* the same from the pool lane */
	CHECK_INT(th_http(s.port, "POST", "/echo/x", "nope", &r), ==, 422);
	CHECK_CONTAINS(r.body, "json_invalid");
	th_server_stop(&s);
}

static void test_reply_once_and_header_injection(void)
{
	th_server s;
	th_resp r;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/twice", NULL, &r), ==, 200);
	CHECK_STR(r.body, "first");
	/* the first reply may reach us before the handler's next line ran
	 * (a whole reply goes to the socket at once) */
	for (int i = 0; i < 200 && GET(twice_rc) == 1; i++)
		th_sleep_ms(10);
	CHECK_INT(GET(twice_rc), ==, EVAPI_EALREADY);
	CHECK_INT(GET(bad_header_rc), ==, EVAPI_EINVAL);
	CHECK(strstr(r.headers, "Injected") == NULL);
	th_server_stop(&s);
}

static void test_inline_sleeps_overlap(void)
{
	th_server s;
	th_resp r[6];
	const char *p[6];
	int i;
	double maxs = 0;
	start(&s, NULL);
	for (i = 0; i < 6; i++)
		p[i] = "/sleep?ms=400";
	th_http_parallel(s.port, 6, p, r);
	for (i = 0; i < 6; i++) {
		CHECK_INT(r[i].status, ==, 200);
		if (r[i].secs > maxs)
			maxs = r[i].secs;
	}
	/* overlapping is ~0.4 s; serial would be 2.4 s: a loaded machine
	 * may be slow, but not serialise */
	CHECK_DBL(maxs, <, 6 * 0.4 * 0.75);
	CHECK_DBL(maxs, >=, 0.39);
	th_server_stop(&s);
}

static void test_blocking_inline_serialises(void)
{
	th_server s;
	th_resp r[4];
	const char *p[4] = {"/block?ms=250", "/block?ms=250", "/block?ms=250",
	                    "/hello"};
	evapi_stats st;
	int i;
	double maxs = 0;
	start(&s, NULL);
	th_http_parallel(s.port, 4, p, r);
	for (i = 0; i < 3; i++) {
		CHECK_INT(r[i].status, ==, 200);
		if (r[i].secs > maxs)
			maxs = r[i].secs;
	}
	/* three 250 ms stalls of the loop run one after another */
	CHECK_DBL(maxs, >=, 0.75 * 0.9);
	CHECK_INT(r[3].status, ==, 200);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.stalls, >=, 3);
	CHECK_INT(st.max_stall_ms, >=, 200);
	CHECK_CONTAINS(th_log(), "loop stalled");
	CHECK_CONTAINS(th_log(), "in GET /block");
	th_server_stop(&s);
}

static void test_sleep_after_stall_is_full_length(void)
{
	th_server s;
	th_resp r;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/block-then-sleep", NULL, &r), ==, 200);
	CHECK_DBL(r.secs, >=, 0.3 + 0.3 * 0.95);
	th_server_stop(&s);
}

static void test_pool_sleeps_overlap(void)
{
	th_server s;
	th_resp r[6];
	const char *p[6];
	int i;
	double maxs = 0;
	evapi_stats st;
	start(&s, NULL);
	for (i = 0; i < 6; i++)
		p[i] = "/psleep?ms=400";
	th_http_parallel(s.port, 6, p, r);
	for (i = 0; i < 6; i++) {
		CHECK_INT(r[i].status, ==, 200);
		CHECK_STR(r[i].body, "{\"slept\":\"pool\"}");
		if (r[i].secs > maxs)
			maxs = r[i].secs;
	}
	CHECK_DBL(maxs, <, 6 * 0.4 * 0.75); /* serial: 2.4 s */
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.stalls, ==, 0);
	CHECK_CONTAINS(th_log(), "GET /psleep 200");
	CHECK_CONTAINS(th_log(), "pool");
	th_server_stop(&s);
}

static void test_pool_saturation_503(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r[5], h;
	const char *p[5];
	int i, ok = 0, busy = 0;
	evapi_stats st;

	th_config(&cfg);
	cfg.pool_threads = 1;
	cfg.pool_queue_max = 1;
	start(&s, &cfg);
	for (i = 0; i < 5; i++)
		p[i] = "/psleep?ms=600";
	th_http_parallel(s.port, 5, p, r);
	for (i = 0; i < 5; i++) {
		if (r[i].status == 200)
			ok++;
		if (r[i].status == 503) {
			busy++;
			CHECK_CONTAINS(r[i].headers, "Retry-After: 1");
			CHECK_CONTAINS(r[i].body, "{\"detail\":\"Server busy");
		}
	}
	CHECK_INT(ok, ==, 2); /* one running + one queued */
	CHECK_INT(busy, ==, 3);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.rejected, ==, 3);
	CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &h), ==, 200);
	th_server_stop(&s);
}

struct bg {
	int port, n;
	const char *const *p;
	th_resp *r;
};

static void *bg_parallel(void *arg)
{
	struct bg *b = arg;
	th_http_parallel(b->port, b->n, b->p, b->r);
	return NULL;
}

static void test_inline_answers_while_pool_saturated(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r[4], h;
	const char *p[4] = {"/psleep?ms=800", "/psleep?ms=800", "/psleep?ms=800",
	                    "/psleep?ms=800"};
	struct bg b;
	pthread_t t;
	th_config(&cfg);
	cfg.pool_threads = 2;
	cfg.pool_queue_max = 0;
	start(&s, &cfg);
	b = (struct bg){s.port, 4, p, r};
	pthread_create(&t, NULL, bg_parallel, &b);
	th_sleep_ms(200); /* both workers busy, the rest answered 503 */
	CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &h), ==, 200);
	/* answered while the pool was still busy: well under 800 ms */
	CHECK_DBL(h.secs, <, 0.4);
	pthread_join(t, NULL);
	CHECK_INT((r[0].status == 503) + (r[1].status == 503) +
	          (r[2].status == 503) + (r[3].status == 503), ==, 2);
	th_server_stop(&s);
}

static void test_no_reply_500(void)
{
	th_server s;
	th_resp r;
	evapi_stats st;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/noreply", NULL, &r), ==, 500);
	CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	CHECK_CONTAINS(th_log(), "GET /noreply: handler returned without replying");
	CHECK_INT(th_http(s.port, "GET", "/pnoreply", NULL, &r), ==, 500);
	CHECK_CONTAINS(th_log(), "GET /pnoreply: pool handler returned without replying");
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.no_reply, ==, 2);
	th_server_stop(&s);
}

static void test_disconnect_during_inline_sleep(void)
{
	th_server s;
	th_resp r;
	evapi_stats st;
	double t0;
	start(&s, NULL);
	SET(cancel_status, 1);
	SET(after_cancel_reply_rc, 1);
	t0 = th_now();
	th_send_and_close(s.port, "GET /cancel-probe HTTP/1.1\r\nHost: t\r\n\r\n", 100);
	th_wait_idle(s.app, 3);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.in_flight, ==, 0);
	CHECK_INT(st.gone, ==, 1);
	/* the 2 s timer was cancelled at once, its continuation told so */
	CHECK_INT(GET(cancel_status), ==, EVAPI_ECANCELED);
	CHECK_INT(GET(after_cancel_reply_rc), ==, EVAPI_EGONE);
	CHECK_DBL(GET(cancel_at_us) / 1e6 - t0, <, 1.0);
	CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &r), ==, 200);
	th_server_stop(&s);
}

static void test_disconnect_during_pool_job(void)
{
	th_server s;
	th_resp r;
	evapi_stats st;
	start(&s, NULL);
	SET(pool_started, 0);
	SET(pool_finished, 0);
	th_send_and_close(s.port, "GET /psleep?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n", 100);
	th_sleep_ms(100);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.gone, ==, 1);
	CHECK_INT(__atomic_load_n(&pool_started, __ATOMIC_SEQ_CST), ==, 1);
	/* the running job finishes; its reply is dropped */
	th_wait_idle(s.app, 3);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.in_flight, ==, 0);
	CHECK_INT(__atomic_load_n(&pool_finished, __ATOMIC_SEQ_CST), ==, 1);
	CHECK_INT(th_http(s.port, "GET", "/psleep?ms=10", NULL, &r), ==, 200);
	th_server_stop(&s);
}

static void test_disconnect_while_queued(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r[1];
	const char *p[1] = {"/psleep?ms=400"};
	struct bg b;
	pthread_t t;
	evapi_stats st;
	th_config(&cfg);
	cfg.pool_threads = 1;
	start(&s, &cfg);
	SET(pool_started, 0);
	b = (struct bg){s.port, 1, p, r};
	pthread_create(&t, NULL, bg_parallel, &b);
	th_sleep_ms(100);
	/* queued behind the running job; leaves before it starts */
	th_send_and_close(s.port, "GET /psleep?ms=400 HTTP/1.1\r\nHost: t\r\n\r\n", 100);
	pthread_join(t, NULL);
	CHECK_INT(r[0].status, ==, 200);
	th_wait_idle(s.app, 3);
	th_sleep_ms(50);
	/* the queued job was unlinked: it never ran */
	CHECK_INT(__atomic_load_n(&pool_started, __ATOMIC_SEQ_CST), ==, 1);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.gone, ==, 1);
	th_server_stop(&s);
}

static void test_run_in_pool_continuation(void)
{
	th_server s;
	th_resp r;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/offload?n=1000000", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"sum\":500000500000}");
	CHECK_INT(GET(offload_on_worker), ==, 1);
	th_server_stop(&s);
}

static void test_deadline_504(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	evapi_stats st;
	th_config(&cfg);
	cfg.request_timeout_ms = 300;
	start(&s, &cfg);
	SET(cancel_status, 1);
	CHECK_INT(th_http(s.port, "GET", "/cancel-probe", NULL, &r), ==, 504);
	CHECK_STR(r.body, "{\"detail\":\"Request deadline exceeded\"}");
	CHECK_DBL(r.secs, <, 1.5);
	th_wait_idle(s.app, 2);
	CHECK_INT(GET(cancel_status), ==, EVAPI_ECANCELED);
	/* a pool job over the deadline: 504 now, its late reply dropped */
	CHECK_INT(th_http(s.port, "GET", "/psleep?ms=700", NULL, &r), ==, 504);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.timeouts, ==, 2);
	th_wait_idle(s.app, 3);
	CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &r), ==, 200);
	th_server_stop(&s);
}

static void test_graceful_shutdown(void)
{
	th_server s;
	th_resp r[3], late;
	const char *p[3] = {"/sleep?ms=500", "/psleep?ms=500", "/hello"};
	struct bg b;
	pthread_t t;
	start(&s, NULL);
	b = (struct bg){s.port, 3, p, r};
	pthread_create(&t, NULL, bg_parallel, &b);
	th_sleep_ms(150);
	evapi_app_stop(s.app);
	th_sleep_ms(50);
	/* no longer accepting */
	CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &late), ==, 0);
	pthread_join(t, NULL);
	pthread_join(s.thread, NULL);
	CHECK_INT(r[0].status, ==, 200);
	CHECK_INT(r[1].status, ==, 200);
	CHECK_INT(r[2].status, ==, 200);
	CHECK_CONTAINS(th_log(), "draining 2 request(s)");
	CHECK(strstr(th_log(), "shutdown cut") == NULL);
	evapi_app_free(s.app);
}

static void test_shutdown_grace_cuts(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r[2];
	const char *p[2] = {"/sleep?ms=3000", "/psleep?ms=800"};
	struct bg b;
	pthread_t t;
	double t0;
	th_config(&cfg);
	cfg.shutdown_grace_ms = 200;
	start(&s, &cfg);
	b = (struct bg){s.port, 2, p, r};
	pthread_create(&t, NULL, bg_parallel, &b);
	th_sleep_ms(100);
	t0 = th_now();
	evapi_app_stop(s.app);
	pthread_join(s.thread, NULL);
	CHECK_DBL(th_now() - t0, <, 1.5);
	CHECK_CONTAINS(th_log(), "grace period of 200 ms is over");
	CHECK_CONTAINS(th_log(), "shutdown cut GET /sleep");
	CHECK_CONTAINS(th_log(), "shutdown cut 2 request(s)");
	evapi_app_free(s.app); /* waits for the running pool job */
	pthread_join(t, NULL);
	CHECK_INT(r[0].status, ==, 503);
	CHECK_INT(r[1].status, ==, 503);
}

static void test_framing_is_evapis(void)
{
	th_server s;
	char buf[4096];
	int fd;
	start(&s, NULL);
	/* a 204 and a pipelined request: the second response must start
	 * right where the first one ends */
	fd = th_connect_send(s.port,
	                     "GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\n"
	                     "GET /hello HTTP/1.1\r\nHost: t\r\n"
	                     "Connection: close\r\n\r\n");
	th_read_all(fd, buf, sizeof buf, 5);
	close(fd);
	CHECK_CONTAINS(buf, "HTTP/1.1 204 No Content\r\n");
	CHECK(strstr(buf, "body that must not") == NULL);
	CHECK_CONTAINS(buf, "\r\n\r\nHTTP/1.1 200 OK\r\n");
	CHECK_CONTAINS(buf, "{\"Hello\":\"World\"}");
	CHECK_INT(GET(framing_rc), ==, EVAPI_EINVAL);
	CHECK_INT(GET(status_rc), ==, EVAPI_EINVAL);
	th_server_stop(&s);
}

static void test_client_gone_with_unread_bytes(void)
{
	th_server s;
	evapi_stats st;
	int fd;
	start(&s, NULL);
	SET(cancel_status, 1);
	/* the request, then one stray byte, then close: still detected */
	fd = th_connect_send(s.port, "GET /cancel-probe HTTP/1.1\r\nHost: t\r\n\r\n");
	th_sleep_ms(50);
	CHECK_INT(write(fd, "X", 1), ==, 1);
	th_sleep_ms(50);
	close(fd);
	th_wait_idle(s.app, 1.5);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.gone, ==, 1);
	CHECK_INT(GET(cancel_status), ==, EVAPI_ECANCELED);
	th_server_stop(&s);
}

static void test_log_lines_cannot_be_forged(void)
{
	th_server s;
	th_resp r;
	start(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/x%0Aevapi%20error:%20FORGED%0D", NULL, &r), ==, 404);
	CHECK(strstr(th_log(), "\nevapi error: FORGED") == NULL);
	CHECK_CONTAINS(th_log(), "GET /x\\x0aevapi error: FORGED\\x0d 404");
	th_server_stop(&s);
}

static void test_shutdown_lets_big_reply_finish(void)
{
	th_server s;
	static char head[2048];
	long n;
	int fd;
	start(&s, NULL);
	/* the reply is handed to evhttp at once but the client reads slowly:
	 * the drain must wait until every byte has been written */
	fd = th_connect_send(s.port, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
	th_sleep_ms(300);
	evapi_app_stop(s.app);
	th_sleep_ms(300);
	n = th_read_all(fd, head, sizeof head, 10);
	close(fd);
	CHECK_CONTAINS(head, "HTTP/1.1 200 OK");
	CHECK_CONTAINS(head, "Content-Length: 8388608");
	CHECK_INT(n - (long)(strstr(head, "\r\n\r\n") + 4 - head), ==, BIG_LEN);
	pthread_join(s.thread, NULL);
	CHECK(strstr(th_log(), "shutdown cut") == NULL);
	evapi_app_free(s.app);
}

static void test_config_and_errors(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_config_init(&cfg);
	CHECK_INT(cfg.pool_threads, ==, 40);
	CHECK_INT(cfg.stall_threshold_ms, ==, 100);
	CHECK_INT(cfg.port, ==, 8000);
	cfg.pool_threads = 0;
	CHECK(evapi_app_new(&cfg) == NULL);
	evapi_app_free(NULL);
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "bad", EVAPI_INLINE, hello, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_app_port(app), ==, 0);
	evapi_app_free(app);
}

/* The fuzzers' way in (evapi__reactor_connect_local): connections with
 * no network, accepted by evhttp and guarded like any other. */
static void test_connect_local(void)
{
	static const char two[] =
		"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
		"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
	static const char bad[] = "GET /hello HTTP/1.1\r\n\r\n"; /* no Host */
	evapi_config cfg;
	evapi_app *app;
	th_server s;
	char buf[4096];
	const char *second;
	int fd, fd2;

	th_config(&cfg);
	app = make_app(&cfg);
	/* before the loop runs, the creating thread is its thread */
	fd = evapi__reactor_connect_local(app);
	fd2 = evapi__reactor_connect_local(app);
	CHECK(fd >= 0);
	CHECK(fd2 >= 0);
	th_server_start(&s, app);
	if (fd >= 0 && fd2 >= 0) {
		CHECK_INT(write(fd, two, sizeof two - 1), ==, (long)sizeof two - 1);
		th_read_all(fd, buf, sizeof buf, 10);
		CHECK_CONTAINS(buf, "HTTP/1.1 200");
		second = strstr(buf, "HTTP/1.1 200");
		CHECK(second && strstr(second + 1, "HTTP/1.1 200"));
		CHECK_INT(write(fd2, bad, sizeof bad - 1), ==, (long)sizeof bad - 1);
		th_read_all(fd2, buf, sizeof buf, 10);
		CHECK_CONTAINS(buf, "HTTP/1.1 400"); /* the guard's answer */
	}
	if (fd >= 0)
		close(fd);
	if (fd2 >= 0)
		close(fd2);
	th_server_stop(&s);
}

/* ---- app user data, worker hooks and index ------------------------------ */

static int hook_started, hook_stopped; /* bit per worker index */
static int hook_bad;                   /* a hook saw something wrong */
static char hook_state[] = "state";

static void on_worker(evapi_app *app, int index, void *arg)
{
	int *mask = arg;
	if (evapi_app_user_data(app) != hook_state ||
	    evapi_worker_index() != index || index < 0 || index > 2)
		__atomic_add_fetch(&hook_bad, 1, __ATOMIC_SEQ_CST);
	/* the stop hook runs after the start hook on the same worker */
	if (mask == &hook_stopped &&
	    !(__atomic_load_n(&hook_started, __ATOMIC_SEQ_CST) & (1 << index)))
		__atomic_add_fetch(&hook_bad, 1, __ATOMIC_SEQ_CST);
	__atomic_or_fetch(mask, 1 << index, __ATOMIC_SEQ_CST);
}

static void worker_idx(evapi_req *req, void *arg)
{
	int idx = evapi_worker_index();
	(void)arg;
	/* the start hook ran on this worker before its first job */
	if (!(__atomic_load_n(&hook_started, __ATOMIC_SEQ_CST) & (1 << idx)) ||
	    evapi_app_user_data(evapi_req_app(req)) != hook_state)
		idx = -2;
	evapi_reply_json(req, 200, json_pack("{s:i}", "index", idx));
}

static void test_worker_hooks(void)
{
	evapi_config cfg;
	evapi_app *app;
	th_server s;
	th_resp r;
	int i, seen = 0;

	CHECK_INT(evapi_worker_index(), ==, -1);
	CHECK(evapi_req_app(NULL) == NULL);
	CHECK(evapi_app_user_data(NULL) == NULL);
	th_config(&cfg);
	cfg.pool_threads = 3;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	if (!app)
		return;
	CHECK(evapi_app_user_data(app) == NULL);
	CHECK_INT(evapi_app_set_user_data(app, hook_state), ==, 0);
	CHECK_INT(evapi_app_on_worker_stop(app, on_worker, &hook_stopped), ==,
	          0);
	CHECK_INT(evapi_app_on_worker_start(app, on_worker, &hook_started), ==,
	          0);
	CHECK_INT(evapi_app_on_worker_start(app, on_worker, NULL), ==,
	          EVAPI_EEXIST);
	CHECK_INT(evapi_app_on_worker_start(app, NULL, NULL), ==, EVAPI_EINVAL);
	evapi_app_route(app, EVAPI_GET, "/idx", EVAPI_POOL, worker_idx, NULL);
	th_server_start(&s, app);
	/* idle workers run the start hook at once */
	for (i = 0; i < 200 && __atomic_load_n(&hook_started,
	                                       __ATOMIC_SEQ_CST) != 7; i++)
		th_sleep_ms(10);
	CHECK_INT(__atomic_load_n(&hook_started, __ATOMIC_SEQ_CST), ==, 7);
	for (i = 0; i < 30; i++) {
		json_t *j;
		int idx;
		CHECK_INT(th_http(s.port, "GET", "/idx", NULL, &r), ==, 200);
		j = json_loads(r.body, 0, NULL);
		idx = (int)json_integer_value(json_object_get(j, "index"));
		json_decref(j);
		CHECK(idx >= 0 && idx <= 2);
		if (idx >= 0)
			seen |= 1 << idx;
	}
	CHECK(seen != 0);
	CHECK_INT(__atomic_load_n(&hook_stopped, __ATOMIC_SEQ_CST), ==, 0);
	th_server_stop(&s); /* frees the app: the workers exit */
	CHECK_INT(__atomic_load_n(&hook_stopped, __ATOMIC_SEQ_CST), ==, 7);
	CHECK_INT(__atomic_load_n(&hook_bad, __ATOMIC_SEQ_CST), ==, 0);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"app.hello_json", test_hello_json},
		{"app.errors_shapes", test_errors_shapes},
		{"app.snapshot_in_pool", test_snapshot_in_pool},
		{"app.invalid_json_422", test_invalid_json_422},
		{"app.reply_once_and_header_injection", test_reply_once_and_header_injection},
		{"app.inline_sleeps_overlap", test_inline_sleeps_overlap},
		{"app.blocking_inline_serialises", test_blocking_inline_serialises},
		{"app.sleep_after_stall_is_full_length", test_sleep_after_stall_is_full_length},
		{"app.pool_sleeps_overlap", test_pool_sleeps_overlap},
		{"app.pool_saturation_503", test_pool_saturation_503},
		{"app.inline_answers_while_pool_saturated", test_inline_answers_while_pool_saturated},
		{"app.no_reply_500", test_no_reply_500},
		{"app.disconnect_during_inline_sleep", test_disconnect_during_inline_sleep},
		{"app.disconnect_during_pool_job", test_disconnect_during_pool_job},
		{"app.disconnect_while_queued", test_disconnect_while_queued},
		{"app.run_in_pool_continuation", test_run_in_pool_continuation},
		{"app.deadline_504", test_deadline_504},
		{"app.graceful_shutdown", test_graceful_shutdown},
		{"app.shutdown_grace_cuts", test_shutdown_grace_cuts},
		{"app.framing_is_evapis", test_framing_is_evapis},
		{"app.client_gone_with_unread_bytes", test_client_gone_with_unread_bytes},
		{"app.log_lines_cannot_be_forged", test_log_lines_cannot_be_forged},
		{"app.shutdown_lets_big_reply_finish", test_shutdown_lets_big_reply_finish},
		{"app.config_and_errors", test_config_and_errors},
		{"app.connect_local", test_connect_local},
		{"app.worker_hooks", test_worker_hooks},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
