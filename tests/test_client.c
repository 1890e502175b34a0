/*
 * test_client.c: the outbound client (src/client/client.c, src/client/client_sync.c,
 * src/client/fetch.c) against local upstreams started here: a well-behaved evapi
 * app that answers after a delay, and raw sockets that refuse, reset,
 * send garbage, never answer or send too much. Every fault must end as
 * 502/504 with a JSON body, within the timeout, with no call left in
 * flight and no outbound socket left open.
 */
#include "harness.h"
#include "upstream.h"

#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

/* Written by the test thread before requests are sent; read on the loop
 * (the request's arrival orders the two). */
static char target[256], target2[256];
static int cancelled; /* atomic: continuations told EVAPI_ECANCELED */
static int ff_first_error; /* atomic: fail-fast: error of the slow call */

/* ---- the well-behaved upstream: GET /delay?ms=N ------------------------- */

static long long query_ms(evapi_req *req)
{
	long long ms = 0;
	if (evapi_req_query_int(req, "ms", &ms) != 0 || ms < 0)
		ms = 0;
	return ms;
}

static void delay_done(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:I}", "ms", query_ms(req)));
}

static void up_delay(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, (unsigned)query_ms(req), delay_done, NULL);
}

static void start_upstream(th_server *s)
{
	evapi_config cfg;
	th_config(&cfg);
	cfg.access_log = 0;
	evapi_app *app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/delay", EVAPI_INLINE,
	                          up_delay, NULL), ==, 0);
	th_server_start(s, app);
}

/* ---- the app under test --------------------------------------------------- */

static void reply_result(evapi_req *req, const evapi_fetch_res *res)
{
	json_t *body;
	if (!evapi_fetch_res_ok(res)) {
		evapi_reply_upstream_error(req, res);
		return;
	}
	body = evapi_fetch_res_json(res, NULL);
	evapi_reply_json(req, 200,
	                 json_pack("{s:i,s:o}", "status",
	                           evapi_fetch_res_status(res), "body",
	                           body ? body : json_null()));
}

static void fetch_done(evapi_req *req, int status, const evapi_fetch_res *res,
                       void *arg)
{
	if (status == EVAPI_ECANCELED) {
		ADD(&cancelled, 1);
		CHECK_INT(evapi_fetch_res_error(res), ==, EVAPI_ECANCELED);
		return;
	}
	reply_result(req, res);
}

static void h_fetch(evapi_req *req, void *arg)
{
	evapi_fetch_opts o = { .url = target };
	int rc;
	if ((rc = evapi_req_fetch(req, &o, fetch_done, NULL)) != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

static void gather_done(evapi_req *req, int status, size_t n,
                        const evapi_fetch_res *const *res, void *arg)
{
	size_t i, ok = 0;
	if (status == EVAPI_ECANCELED) {
		ADD(&cancelled, 1);
		return;
	}
	for (i = 0; i < n; i++)
		ok += evapi_fetch_res_ok(res[i]) ? 1 : 0;
	evapi_reply_json(req, status ? 502 : 200,
	                 json_pack("{s:I,s:I,s:s}", "n", (long long)n, "ok",
	                           (long long)ok, "status",
	                           status ? evapi_strerror(status) : "ok"));
}

static void h_gather(evapi_req *req, void *arg)
{
	long long n = 0;
	evapi_fetch_opts *calls;
	size_t i;
	int rc;
	if (evapi_req_query_int(req, "n", &n) != 0 || n < 1 || n > 5000) {
		evapi_reply_error(req, 400, "n");
		return;
	}
	calls = calloc((size_t)n, sizeof *calls);
	for (i = 0; i < (size_t)n; i++)
		calls[i].url = target;
	/* the calls are copied: the array may go now */
	rc = evapi_req_gather(req, calls, (size_t)n, 0, gather_done, NULL);
	free(calls);
	if (rc != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

static void ff_done(evapi_req *req, int status, size_t n,
                    const evapi_fetch_res *const *res, void *arg)
{
	CHECK_INT(n, ==, 2);
	STORE(&ff_first_error, evapi_fetch_res_error(res[0]));
	if (status == EVAPI_ECANCELED)
		return;
	evapi_reply_upstream_error(req, status == evapi_fetch_res_error(res[1])
	                                        ? res[1] : res[0]);
}

static void h_gather_ff(evapi_req *req, void *arg)
{
	evapi_fetch_opts calls[2] = { { .url = target }, { .url = target2 } };
	if (evapi_req_gather(req, calls, 2, EVAPI_GATHER_FAIL_FAST, ff_done,
	                     NULL) != 0)
		evapi_reply_error(req, 500, "gather");
}

/* Two calls through one connection: the second waits for it, and its own
 * 300 ms timeout must count from its start, queueing included. */
static void h_queued(evapi_req *req, void *arg)
{
	evapi_fetch_opts calls[2] = { { .url = target, .timeout_ms = 5000 },
		                      { .url = target2, .timeout_ms = 300 } };
	if (evapi_req_gather(req, calls, 2, EVAPI_GATHER_FAIL_FAST, ff_done,
	                     NULL) != 0)
		evapi_reply_error(req, 500, "gather");
}

static void h_sync(evapi_req *req, void *arg)
{
	evapi_fetch_opts o = { .url = target, .timeout_ms = 500 };
	evapi_fetch_res *res = evapi_fetch_sync(&o);
	reply_result(req, res);
	evapi_fetch_res_free(res);
}

/* A pool background task's blocking fetch: its error and duration. */
static int task_err = 1, task_done;
static double task_secs;

static int t_sync(evapi_app *app, int status, void *arg)
{
	evapi_fetch_opts o = { .url = target };
	evapi_fetch_res *res;
	double t0 = th_now();
	(void)app;
	(void)arg;
	if (status != 0)
		return 0;
	res = evapi_fetch_sync(&o);
	task_secs = th_now() - t0;
	task_err = evapi_fetch_res_error(res);
	evapi_fetch_res_free(res);
	__atomic_store_n(&task_done, 1, __ATOMIC_RELEASE);
	return 0;
}

static void h_task_sync(evapi_req *req, void *arg)
{
	if (evapi_req_add_task(req, EVAPI_POOL, "sync", t_sync, NULL) != 0)
		evapi_reply_error(req, 500, "cannot add the task");
	else
		evapi_reply_json(req, 200, json_pack("{s:b}", "queued", 1));
	(void)arg;
}

static void h_bad_url(evapi_req *req, void *arg)
{
	evapi_fetch_opts o = { .url = "ftp://127.0.0.1/x" };
	int rc = evapi_req_fetch(req, &o, fetch_done, NULL);
	evapi_reply_json(req, 200, json_pack("{s:s}", "rc", evapi_strerror(rc)));
}

static evapi_app *client_app(int timeout_ms, int max_conns)
{
	evapi_config cfg;
	evapi_app *app;
	th_config(&cfg);
	cfg.outbound_timeout_ms = timeout_ms;
	cfg.outbound_max_connections = max_conns;
	cfg.outbound_max_response_bytes = 64 * 1024;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/fetch", EVAPI_INLINE, h_fetch, NULL);
	evapi_app_route(app, EVAPI_GET, "/gather", EVAPI_INLINE, h_gather, NULL);
	evapi_app_route(app, EVAPI_GET, "/gather-ff", EVAPI_INLINE, h_gather_ff,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/queued", EVAPI_INLINE, h_queued, NULL);
	evapi_app_route(app, EVAPI_GET, "/sync", EVAPI_POOL, h_sync, NULL);
	evapi_app_route(app, EVAPI_GET, "/sync-on-loop", EVAPI_INLINE, h_sync,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/bad-url", EVAPI_INLINE, h_bad_url,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/task-sync", EVAPI_INLINE, h_task_sync,
	                NULL);
	return app;
}

static evapi_stats stats_of(th_server *s)
{
	evapi_stats st;
	evapi_app_stats(s->app, &st);
	return st;
}

/* Waits (bounded) for no call in flight and at most `idle` sockets open
 * (kept-alive connections to a healthy upstream stay in curl's cache;
 * after a fault there must be none). */
static void check_outbound_left(th_server *s, unsigned idle)
{
	double end = th_now() + 2.0;
	evapi_stats st = stats_of(s);
	while ((st.outbound_in_flight || st.outbound_sockets > idle) &&
	       th_now() < end) {
		th_sleep_ms(10);
		st = stats_of(s);
	}
	CHECK_INT(st.outbound_in_flight, ==, 0);
	CHECK_INT(st.outbound_sockets, <=, idle);
}

static void check_no_outbound_left(th_server *s)
{
	check_outbound_left(s, 0);
}

/* The cancelled continuation runs on the loop soon after the cut, not
 * necessarily before the client has read its answer: wait (bounded). */
static int wait_cancelled(int want)
{
	double end = th_now() + 2.0;
	while (LOAD(&cancelled) < want && th_now() < end)
		th_sleep_ms(10);
	return LOAD(&cancelled);
}

/* ---- tests --------------------------------------------------------------- */

static void test_fetch_ok_and_reuse(void)
{
	th_server up, s;
	th_resp r;
	evapi_stats st;
	int i;

	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=10",
	         up.port);
	th_server_start(&s, client_app(2000, 16));
	for (i = 0; i < 5; i++) {
		CHECK_INT(th_http(s.port, "GET", "/fetch", NULL, &r), ==, 200);
		CHECK_STR(r.body, "{\"status\":200,\"body\":{\"ms\":10}}");
	}
	st = stats_of(&s);
	CHECK_INT(st.outbound_calls, ==, 5);
	CHECK_INT(st.outbound_errors, ==, 0);
	CHECK_INT(st.outbound_in_flight, ==, 0);
	/* keep-alive: five sequential calls, one connection */
	CHECK_INT(st.outbound_connects, ==, 1);
	CHECK_INT(st.outbound_sockets, ==, 1);
	th_server_stop(&s);
	th_server_stop(&up);
}

static void test_gather_is_concurrent(void)
{
	th_server up, s;
	th_resp r;

	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=200",
	         up.port);
	th_server_start(&s, client_app(5000, 64));
	CHECK_INT(th_http(s.port, "GET", "/gather?n=20", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"n\":20,\"ok\":20,\"status\":\"ok\"}");
	/* serialised would be 20 x 200 ms = 4 s; concurrent is ~200 ms */
	CHECK_DBL(r.secs, <, 20 * 0.2 * 0.5);
	CHECK_DBL(r.secs, >=, 0.19);
	check_outbound_left(&s, 20);
	th_server_stop(&s);
	th_server_stop(&up);
}

static void test_thousand_calls(void)
{
	th_server up, s;
	th_resp r;
	evapi_stats st;

	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=50",
	         up.port);
	th_server_start(&s, client_app(20000, 128));
	CHECK_INT(th_http(s.port, "GET", "/gather?n=1000", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"n\":1000,\"ok\":1000,\"status\":\"ok\"}");
	st = stats_of(&s);
	CHECK_INT(st.outbound_calls, ==, 1000);
	/* the bound on open connections held: calls waited for a free one */
	CHECK_INT(st.outbound_connects, <=, 128);
	CHECK_INT(st.outbound_sockets, <=, 128);
	printf("  1000 calls in %.2f s over %llu connections\n", r.secs,
	       st.outbound_connects);
	th_server_stop(&s);
	th_server_stop(&up);
}

static void fault_case(const char *name, th_up_mode mode, int expect_status,
                       const char *expect_detail, double max_secs)
{
	th_upstream u;
	th_server s;
	th_resp r;
	int port;

	if ((int)mode < 0) {
		port = th_closed_port();
	} else {
		th_upstream_start(&u, mode);
		port = u.port;
	}
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", port);
	th_server_start(&s, client_app(500, 16));
	CHECK_INT(th_http(s.port, "GET", "/fetch", NULL, &r), ==, expect_status);
	CHECK_CONTAINS(r.body, expect_detail);
	CHECK_CONTAINS(r.headers, "application/json");
	CHECK_DBL(r.secs, <, max_secs);
	check_no_outbound_left(&s);
	if ((int)mode >= 0) {
		/* the upstream saw its connection closed by us */
		CHECK_INT(th_upstream_wait_open(&u, 0, 2000), ==, 0);
		CHECK_INT(th_upstream_accepted(&u), >=, 1);
	}
	/* the server keeps serving after the fault */
	CHECK_INT(th_http(s.port, "GET", "/bad-url", NULL, &r), ==, 200);
	th_server_stop(&s);
	if ((int)mode >= 0)
		th_upstream_stop(&u);
}

static void test_upstream_refuses(void)
{
	fault_case("refused", (th_up_mode)-1, 502,
	           "{\"detail\":\"Bad gateway: upstream refused the connection\"}",
	           1.0);
}

static void test_upstream_resets(void)
{
	fault_case("reset", TH_UP_RESET, 502,
	           "Bad gateway: upstream connection reset or closed early", 1.0);
}

static void test_upstream_garbage(void)
{
	fault_case("garbage", TH_UP_GARBAGE, 502,
	           "Bad gateway: upstream sent a malformed reply", 1.0);
}

static void test_upstream_silent(void)
{
	th_upstream u;
	th_server s;
	th_resp r;

	th_upstream_start(&u, TH_UP_SILENT);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	th_server_start(&s, client_app(500, 16));
	CHECK_INT(th_http(s.port, "GET", "/fetch", NULL, &r), ==, 504);
	CHECK_STR(r.body, "{\"detail\":\"Upstream timed out\"}");
	/* the outbound timeout is 500 ms */
	CHECK_DBL(r.secs, >=, 0.45);
	CHECK_DBL(r.secs, <, 2.5);
	check_no_outbound_left(&s);
	CHECK_INT(th_upstream_wait_open(&u, 0, 2000), ==, 0);
	th_server_stop(&s);
	th_upstream_stop(&u);
}

static void test_upstream_too_big(void)
{
	fault_case("big", TH_UP_BIG, 502,
	           "Bad gateway: upstream reply over the size limit", 2.0);
}

static void test_upstream_too_big_chunked(void)
{
	fault_case("big-chunked", TH_UP_BIG_CHUNKED, 502,
	           "Bad gateway: upstream reply over the size limit", 2.0);
}

static void test_client_gone_cancels(void)
{
	th_upstream u;
	th_server s;
	int waited;

	th_upstream_start(&u, TH_UP_SILENT);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	STORE(&cancelled, 0);
	th_server_start(&s, client_app(10000, 16));
	/* the client leaves 300 ms in; the call would run for 10 s */
	th_send_and_close(s.port, "GET /fetch HTTP/1.1\r\nHost: t\r\n\r\n", 300);
	CHECK_INT(th_upstream_accepted(&u), ==, 1);
	waited = th_upstream_wait_open(&u, 0, 2000);
	CHECK_INT(waited, ==, 0);
	check_no_outbound_left(&s);
	CHECK_INT(wait_cancelled(1), ==, 1);
	CHECK_INT(stats_of(&s).gone, ==, 1);
	th_server_stop(&s);
	th_upstream_stop(&u);
}

static void test_deadline_cancels(void)
{
	th_upstream u;
	th_server s;
	th_resp r;
	evapi_config cfg;
	evapi_app *app;

	th_upstream_start(&u, TH_UP_SILENT);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	STORE(&cancelled, 0);
	th_config(&cfg);
	cfg.request_timeout_ms = 300;
	cfg.outbound_timeout_ms = 10000;
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/fetch", EVAPI_INLINE, h_fetch, NULL);
	th_server_start(&s, app);
	CHECK_INT(th_http(s.port, "GET", "/fetch", NULL, &r), ==, 504);
	CHECK_CONTAINS(r.body, "Request deadline exceeded");
	CHECK_DBL(r.secs, <, 10.0 * 0.5); /* not the 10 s outbound timeout */
	CHECK_INT(th_upstream_wait_open(&u, 0, 2000), ==, 0);
	check_no_outbound_left(&s);
	CHECK_INT(wait_cancelled(1), ==, 1);
	th_server_stop(&s);
	th_upstream_stop(&u);
}

static void test_gather_fail_fast(void)
{
	th_server up, s;
	th_resp r;

	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=3000",
	         up.port);
	snprintf(target2, sizeof target2, "http://127.0.0.1:%d/x",
	         th_closed_port());
	STORE(&ff_first_error, 0);
	th_server_start(&s, client_app(10000, 16));
	CHECK_INT(th_http(s.port, "GET", "/gather-ff", NULL, &r), ==, 502);
	CHECK_CONTAINS(r.body, "refused");
	/* the refusal ended the batch; the 3 s call was aborted */
	CHECK_DBL(r.secs, <, 3.0 * 0.75);
	CHECK_INT(LOAD(&ff_first_error), ==, EVAPI_ECANCELED);
	check_no_outbound_left(&s);
	th_server_stop(&s);
	th_server_stop(&up);
}

static void test_sync_fetch_in_pool(void)
{
	th_server up, s;
	th_resp r;
	th_upstream u;

	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=20",
	         up.port);
	th_server_start(&s, client_app(2000, 16));
	CHECK_INT(th_http(s.port, "GET", "/sync", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"status\":200,\"body\":{\"ms\":20}}");
	/* the blocking fetch is refused on the loop thread */
	CHECK_INT(th_http(s.port, "GET", "/sync-on-loop", NULL, &r), ==, 502);
	CHECK_CONTAINS(r.body, "called from the wrong thread");
	th_server_stop(&s);
	th_server_stop(&up);

	/* the blocking fetch's own timeout (500 ms in h_sync) */
	th_upstream_start(&u, TH_UP_SILENT);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	th_server_start(&s, client_app(2000, 16));
	CHECK_INT(th_http(s.port, "GET", "/sync", NULL, &r), ==, 504);
	CHECK_DBL(r.secs, <, 2.5);
	CHECK_INT(th_upstream_wait_open(&u, 0, 2000), ==, 0);
	th_server_stop(&s);
	th_upstream_stop(&u);
}

static void test_invalid_call_refused(void)
{
	th_server s;
	th_resp r;
	evapi_fetch_res *res;
	evapi_fetch_opts o = { .url = "file:///etc/passwd" };

	th_server_start(&s, client_app(2000, 16));
	CHECK_INT(th_http(s.port, "GET", "/bad-url", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"rc\":\"invalid argument\"}");
	th_server_stop(&s);
	res = evapi_fetch_sync(&o);
	CHECK_INT(evapi_fetch_res_error(res), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_fetch_res_gateway_status(res), ==, 502);
	evapi_fetch_res_free(res);
}

static int app_cb_status, app_cb_error, app_cb_calls; /* atomics */

static void app_fetch_done(evapi_app *app, const evapi_fetch_res *res,
                           void *arg)
{
	STORE(&app_cb_status, evapi_fetch_res_status(res));
	STORE(&app_cb_error, evapi_fetch_res_error(res));
	ADD(&app_cb_calls, 1);
}

static void test_app_level_calls(void)
{
	th_server up, s;
	th_upstream u;
	evapi_app *app;
	evapi_fetch_opts o = { .url = target };
	double end;

	/* started before the loop runs, as a startup hook would */
	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=10",
	         up.port);
	STORE(&app_cb_calls, 0);
	app = client_app(2000, 16);
	CHECK_INT(evapi_app_fetch(app, &o, app_fetch_done, NULL), ==, 0);
	th_server_start(&s, app);
	end = th_now() + 3.0;
	while (LOAD(&app_cb_calls) == 0 && th_now() < end)
		th_sleep_ms(10);
	CHECK_INT(LOAD(&app_cb_calls), ==, 1);
	CHECK_INT(LOAD(&app_cb_status), ==, 200);
	CHECK_INT(LOAD(&app_cb_error), ==, 0);
	th_server_stop(&s);
	th_server_stop(&up);

	/* a call still running when the app stops is cancelled, once */
	th_upstream_start(&u, TH_UP_SILENT);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	STORE(&app_cb_calls, 0);
	app = client_app(10000, 16);
	CHECK_INT(evapi_app_fetch(app, &o, app_fetch_done, NULL), ==, 0);
	th_server_start(&s, app);
	end = th_now() + 2.0;
	while (th_upstream_accepted(&u) == 0 && th_now() < end)
		th_sleep_ms(10);
	th_server_stop(&s);
	CHECK_INT(LOAD(&app_cb_calls), ==, 1);
	CHECK_INT(LOAD(&app_cb_error), ==, EVAPI_ECANCELED);
	CHECK_INT(th_upstream_wait_open(&u, 0, 2000), ==, 0);
	th_upstream_stop(&u);
}

static void *stop_soon(void *arg)
{
	th_sleep_ms(150);
	evapi_app_stop(arg);
	return NULL;
}

static void test_drain_waits_for_calls(void)
{
	th_server up, s;
	th_resp r;
	pthread_t t;

	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=400",
	         up.port);
	th_server_start(&s, client_app(5000, 16));
	/* stop while the call is in flight: the grace period lets it finish */
	pthread_create(&t, NULL, stop_soon, s.app);
	CHECK_INT(th_http(s.port, "GET", "/fetch", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"status\":200,\"body\":{\"ms\":400}}");
	pthread_join(t, NULL);
	th_server_stop(&s);
	th_server_stop(&up);
}

static void test_queued_call_times_out(void)
{
	th_server up, s;
	th_resp r;

	start_upstream(&up);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/delay?ms=1500",
	         up.port);
	snprintf(target2, sizeof target2, "http://127.0.0.1:%d/delay?ms=0",
	         up.port);
	STORE(&ff_first_error, 0);
	th_server_start(&s, client_app(10000, 1));
	CHECK_INT(th_http(s.port, "GET", "/queued", NULL, &r), ==, 504);
	CHECK_STR(r.body, "{\"detail\":\"Upstream timed out\"}");
	CHECK_DBL(r.secs, >=, 0.29);
	CHECK_DBL(r.secs, <, 1.2);
	/* fail-fast then aborted the call holding the connection */
	CHECK_INT(LOAD(&ff_first_error), ==, EVAPI_ECANCELED);
	check_no_outbound_left(&s);
	th_server_stop(&s);
	th_server_stop(&up);
}

static int sync_error(th_up_mode mode, evapi_fetch_opts o, int *status,
                      double *ms)
{
	th_upstream u;
	char url[128];
	evapi_fetch_res *res;
	int err;

	th_upstream_start(&u, mode);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/x", u.port);
	o.url = url;
	res = evapi_fetch_sync(&o);
	err = evapi_fetch_res_error(res);
	*status = evapi_fetch_res_status(res);
	*ms = evapi_fetch_res_ms(res);
	evapi_fetch_res_free(res);
	th_upstream_stop(&u);
	return err;
}

static void test_cap_counts_bytes_received(void)
{
	int status;
	double ms;

	/* a HEAD of a 100 MiB object is fine: no body arrives */
	CHECK_INT(sync_error(TH_UP_HEAD_BIG,
	                     (evapi_fetch_opts){ .method = "HEAD" }, &status,
	                     &ms), ==, 0);
	CHECK_INT(status, ==, 200);
	/* a redirect's body is dropped by curl, but still counted */
	CHECK_INT(sync_error(TH_UP_REDIRECT_FLOOD,
	                     (evapi_fetch_opts){ .follow_redirects = 1,
	                                         .max_response_bytes = 65536,
	                                         .timeout_ms = 5000 },
	                     &status, &ms), ==, EVAPI_ETOOBIG);
	CHECK_DBL(ms, <, 2000);
	/* endless 100 Continue responses cannot reset the header cap */
	CHECK_INT(sync_error(TH_UP_INTERIM_FLOOD,
	                     (evapi_fetch_opts){ .timeout_ms = 5000 }, &status,
	                     &ms), ==, EVAPI_ETOOBIG);
	CHECK_DBL(ms, <, 2000);
}

static void test_pool_uses_app_limits(void)
{
	th_upstream u;
	th_server s;
	th_resp r;

	/* client_app caps replies at 64 KiB; the upstream sends 2 MiB */
	th_upstream_start(&u, TH_UP_BIG);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	th_server_start(&s, client_app(2000, 16));
	CHECK_INT(th_http(s.port, "GET", "/sync", NULL, &r), ==, 502);
	CHECK_CONTAINS(r.body, "over the size limit");
	th_server_stop(&s);
	th_upstream_stop(&u);
}

/* Runs /task-sync against an upstream in `mode` and waits for the task. */
static void task_sync_against(th_up_mode mode, int timeout_ms)
{
	th_upstream u;
	th_server s;
	th_resp r;
	double t0;

	th_upstream_start(&u, mode);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	task_done = 0;
	task_err = 1;
	th_server_start(&s, client_app(timeout_ms, 16));
	CHECK_INT(th_http(s.port, "GET", "/task-sync", NULL, &r), ==, 200);
	t0 = th_now();
	while (!__atomic_load_n(&task_done, __ATOMIC_ACQUIRE) &&
	       th_now() - t0 < 15)
		th_sleep_ms(10);
	CHECK_INT(__atomic_load_n(&task_done, __ATOMIC_ACQUIRE), ==, 1);
	th_server_stop(&s);
	th_upstream_stop(&u);
}

static void test_pool_task_uses_app_limits(void)
{
	/* the app caps replies at 64 KiB; the upstream sends 2 MiB */
	task_sync_against(TH_UP_BIG, 2000);
	CHECK_INT(task_err, ==, EVAPI_ETOOBIG);
	/* the app's outbound timeout (400 ms), not the built-in 10 s */
	task_sync_against(TH_UP_SILENT, 400);
	CHECK_INT(task_err, ==, EVAPI_ETIMEDOUT);
	CHECK_DBL(task_secs, <, 2.0);
}

static int rearm_rc, rearm_calls;

static void rearm_done(evapi_app *app, const evapi_fetch_res *res, void *arg)
{
	evapi_fetch_opts o = { .url = target };
	rearm_calls++;
	CHECK_INT(evapi_fetch_res_error(res), ==, EVAPI_ECANCELED);
	rearm_rc = evapi_app_fetch(app, &o, rearm_done, NULL);
}

static void test_no_new_calls_while_freeing(void)
{
	th_upstream u;
	evapi_app *app;
	evapi_fetch_opts o = { .url = target };

	/* an app freed without ever running: its pending call is cancelled,
	 * and a retry from the continuation is refused, not leaked */
	th_upstream_start(&u, TH_UP_SILENT);
	snprintf(target, sizeof target, "http://127.0.0.1:%d/x", u.port);
	rearm_calls = 0;
	app = client_app(10000, 16);
	CHECK_INT(evapi_app_fetch(app, &o, rearm_done, NULL), ==, 0);
	evapi_app_free(app);
	CHECK_INT(rearm_calls, ==, 1);
	CHECK_INT(rearm_rc, ==, EVAPI_ESTATE);
	th_upstream_stop(&u);
}

/* A resolver that takes 3 s for *.slow.test: libcurl's resolver thread
 * calls this one (the executable's symbol wins), everything else goes to
 * the real getaddrinfo. */
int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
	typedef int (*gai_fn)(const char *, const char *,
	                      const struct addrinfo *, struct addrinfo **);
	static gai_fn real;
	size_t n = node ? strlen(node) : 0;

	if (!real)
		real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	if (n > 10 && strcmp(node + n - 10, ".slow.test") == 0) {
		th_sleep_ms(3000);
		return EAI_NONAME;
	}
	return real(node, service, hints, res);
}

static void h_ping(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:b}", "pong", 1));
}

static void test_cancel_during_lookup_does_not_stall(void)
{
	th_server s;
	th_resp r;
	evapi_config cfg;
	evapi_app *app;
	th_resp out[2];
	const char *paths[2] = { "/fetch", "/ping" };

	snprintf(target, sizeof target, "http://api.slow.test:%d/x", 80);
	th_config(&cfg);
	cfg.request_timeout_ms = 300;
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/fetch", EVAPI_INLINE, h_fetch, NULL);
	evapi_app_route(app, EVAPI_GET, "/ping", EVAPI_INLINE, h_ping, NULL);
	th_server_start(&s, app);
	/* the deadline cancels the call while the lookup still runs: the
	 * loop must not wait for the resolver thread */
	th_http_parallel(s.port, 1, paths, out);
	CHECK_INT(out[0].status, ==, 504);
	CHECK_DBL(out[0].secs, <, 1.5);
	CHECK_INT(th_http(s.port, "GET", "/ping", NULL, &r), ==, 200);
	CHECK_DBL(r.secs, <, 0.5);
	th_server_stop(&s);
}

static rlim_t raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur;
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{ "client.fetch_ok_and_reuse", test_fetch_ok_and_reuse },
		{ "client.gather_is_concurrent", test_gather_is_concurrent },
		{ "client.thousand_calls", test_thousand_calls },
		{ "client.upstream_refuses", test_upstream_refuses },
		{ "client.upstream_resets", test_upstream_resets },
		{ "client.upstream_garbage", test_upstream_garbage },
		{ "client.upstream_silent", test_upstream_silent },
		{ "client.upstream_too_big", test_upstream_too_big },
		{ "client.upstream_too_big_chunked",
		  test_upstream_too_big_chunked },
		{ "client.client_gone_cancels", test_client_gone_cancels },
		{ "client.deadline_cancels", test_deadline_cancels },
		{ "client.gather_fail_fast", test_gather_fail_fast },
		{ "client.sync_fetch_in_pool", test_sync_fetch_in_pool },
		{ "client.pool_task_uses_app_limits",
		  test_pool_task_uses_app_limits },
		{ "client.invalid_call_refused", test_invalid_call_refused },
		{ "client.app_level_calls", test_app_level_calls },
		{ "client.drain_waits_for_calls", test_drain_waits_for_calls },
		{ "client.queued_call_times_out", test_queued_call_times_out },
		{ "client.cap_counts_bytes_received",
		  test_cap_counts_bytes_received },
		{ "client.pool_uses_app_limits", test_pool_uses_app_limits },
		{ "client.no_new_calls_while_freeing",
		  test_no_new_calls_while_freeing },
		{ "client.cancel_during_lookup_does_not_stall",
		  test_cancel_during_lookup_does_not_stall },
		{ NULL, NULL }
	};
	raise_nofile();
	return th_main(argc, argv, tests);
}
