/*
 * test_depends.c: dependencies, request state and cleanups
 * (evapi/depends.h) through the test client: the order of resolvers
 * (app, routers, route) and of cleanups, a resolver that stops the
 * request (401/403/404, the handler never runs), an inline resolver that
 * waits (a sleep) and resumes, a pool resolver on a worker, typed state,
 * cleanups after the reply of a stream, after a client that left, and
 * after a shutdown cut (each exactly once), an asynchronous middleware
 * that checks an API key against an upstream with evapi_req_fetch, and
 * the misuse answers (500, EVAPI_ESTATE).
 */
#include "harness.h"

#include <evapi/testing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GET(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)
#define INC(v) __atomic_add_fetch(&(v), 1, __ATOMIC_SEQ_CST)

static void trace(const char *what, const char *name)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s%s,", what, name);
	th_trace_add(buf);
}

/* ---- resolvers ------------------------------------------------------------ */

static void cleanup_trace(evapi_req *req, int status, void *arg)
{
	char buf[64];
	snprintf(buf, sizeof buf, "c%s=%d,", (const char *)arg, status);
	th_trace_add(buf);
}

/* Traces its name, registers a cleanup tracing it, goes on. */
static int dep_named(evapi_req *req, void *arg)
{
	trace("", arg);
	return evapi_req_on_cleanup(req, cleanup_trace, arg);
}

/* Answers with the status in ?deny=, else goes on. */
static int dep_deny(evapi_req *req, void *arg)
{
	long long st;
	if (evapi_req_query_int(req, "deny", &st) == 0) {
		if (st == 401)
			evapi_reply_add_header(req, "WWW-Authenticate", "Bearer");
		evapi_reply_error(req, (int)st, "denied");
		return 1;
	}
	return 0;
}

static void handler(evapi_req *req, void *arg)
{
	trace("H", arg ? arg : "");
	evapi_reply_json(req, 200, json_pack("{s:s}", "ok", "yes"));
}

/* ---- order, stopping, typed state ----------------------------------------- */

static evapi_app *order_app(void)
{
	static const evapi_dep a = {.cb = dep_named, .arg = "A"};
	static const evapi_dep r1 = {.cb = dep_named, .arg = "R1"};
	static const evapi_dep r2 = {.cb = dep_named, .arg = "R2"};
	static const evapi_dep r3 = {.cb = dep_named, .arg = "R3"};
	static const evapi_dep d = {.cb = dep_named, .arg = "D"};
	static const evapi_dep deny = {.cb = dep_deny};
	evapi_config cfg;
	evapi_app *app;
	evapi_router *outer, *inner;

	th_config(&cfg);
	cfg.openapi = 1;
	app = evapi_app_new(&cfg);
	outer = evapi_router_new(app, "/api");
	inner = evapi_router_new(app, "/items");
	CHECK_INT(evapi_router_dep(outer, &r1), ==, 0);
	CHECK_INT(evapi_router_dep(inner, &r2), ==, 0);
	CHECK_INT(evapi_router_dep(inner, &r3), ==, 0);
	CHECK_INT(evapi_router_route(inner, EVAPI_GET, "/{id}", handler, ""),
	          ==, 0);
	CHECK_INT(evapi_router_route_lane(inner, EVAPI_GET, "/pool/{id}",
	                                  EVAPI_POOL, handler, "p"), ==, 0);
	CHECK_INT(evapi_router_include(outer, inner), ==, 0);
	CHECK_INT(evapi_app_include_router(app, outer), ==, 0);
	evapi_router_free(inner);
	evapi_router_free(outer);
	CHECK_INT(evapi_app_route(app, EVAPI_GET, "/plain", EVAPI_INLINE,
	                          handler, ""), ==, 0);
	/* the app's dependency is added after the routes: it still applies */
	CHECK_INT(evapi_app_dep(app, &a), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/api/items/{id}", &deny),
	          ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/api/items/{id}", &d), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/nope", &d), ==,
	          EVAPI_ENOENT);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/plain", NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_app_dep(app, &(evapi_dep){.arg = "x"}), ==,
	          EVAPI_EINVAL);
	return app;
}

static void test_order_and_cleanups(void)
{
	evapi_test *tc = evapi_test_start(order_app());
	evapi_test_response *r;

	th_trace_clear();
	r = evapi_test_get(tc, "/api/items/7");
	CHECK_INT(evapi_test_status(r), ==, 200);
	evapi_test_response_free(r);
	/* resolvers app, outer router, inner router (in order), the route's,
	 * the handler; then the cleanups newest first, after the reply */
	CHECK(th_trace_wait("cA=200,", 5));
	CHECK_STR(th_trace(), "A,R1,R2,R3,D,H,cD=200,cR3=200,cR2=200,cR1=200,"
	                      "cA=200,");
	/* a pool route: the same order around a handler on a worker */
	th_trace_clear();
	r = evapi_test_get(tc, "/api/items/pool/7");
	CHECK_INT(evapi_test_status(r), ==, 200);
	evapi_test_response_free(r);
	CHECK(th_trace_wait("cA=200,", 5));
	CHECK_STR(th_trace(), "A,R1,R2,R3,Hp,cR3=200,cR2=200,cR1=200,cA=200,");
	/* a plain route has the app's only; 404 and evapi's own routes none */
	th_trace_clear();
	r = evapi_test_get(tc, "/plain");
	CHECK_INT(evapi_test_status(r), ==, 200);
	evapi_test_response_free(r);
	r = evapi_test_get(tc, "/missing");
	CHECK_INT(evapi_test_status(r), ==, 404);
	evapi_test_response_free(r);
	r = evapi_test_get(tc, "/openapi.json");
	CHECK_INT(evapi_test_status(r), ==, 200);
	evapi_test_response_free(r);
	CHECK(th_trace_wait("cA=200,", 5));
	th_sleep_ms(50);
	CHECK_STR(th_trace(), "A,H,cA=200,");
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_dependency_stops_request(void)
{
	static const int codes[] = {401, 403, 404};
	evapi_test *tc = evapi_test_start(order_app());
	evapi_test_response *r;
	char want[128];
	int i;

	for (i = 0; i < 3; i++) {
		char path[64];
		th_trace_clear();
		snprintf(path, sizeof path, "/api/items/7?deny=%d", codes[i]);
		r = evapi_test_get(tc, path);
		CHECK_INT(evapi_test_status(r), ==, codes[i]);
		CHECK_STR(evapi_test_body(r, NULL), "{\"detail\":\"denied\"}");
		if (codes[i] == 401)
			CHECK_STR(evapi_test_header(r, "WWW-Authenticate"),
			          "Bearer");
		evapi_test_response_free(r);
		/* the handler and the route's later dependency never ran; the
		 * cleanups of those that did, did, with the status sent */
		snprintf(want, sizeof want, "A,R1,R2,R3,cR3=%d,cR2=%d,cR1=%d,"
		         "cA=%d,", codes[i], codes[i], codes[i], codes[i]);
		CHECK(th_trace_wait(want, 5));
		CHECK_STR(th_trace(), want);
	}
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

/* ---- state ------------------------------------------------------------------- */

typedef struct user {
	char name[16];
} user;

static int users_freed;

static void user_free(void *p)
{
	INC(users_freed);
	free(p);
}

static int dep_user(evapi_req *req, void *arg)
{
	user *u = calloc(1, sizeof *u), *v = calloc(1, sizeof *v);
	strcpy(u->name, "first");
	strcpy(v->name, "alice");
	CHECK_INT(evapi_req_state_set(req, "user", "struct user", u, user_free),
	          ==, 0);
	/* set again: the first value is freed now */
	CHECK_INT(evapi_req_state_set(req, "user", "struct user", v, user_free),
	          ==, 0);
	CHECK_INT(GET(users_freed), ==, 1);
	CHECK_INT(evapi_req_state_set_int(req, "user_id", 42), ==, 0);
	CHECK_INT(evapi_req_state_set_str(req, "role", "admin"), ==, 0);
	CHECK_INT(evapi_req_state_set(NULL, "x", "t", NULL, NULL), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_req_state_set(req, "x", NULL, NULL, NULL), ==,
	          EVAPI_EINVAL);
	return 0;
}

static void state_handler(evapi_req *req, void *arg)
{
	const user *u = evapi_req_state(req, "user", "struct user");
	long long id = 0, x;
	evapi_req_state_int(req, "user_id", &id);
	/* wrong type, wrong tag, missing */
	CHECK(evapi_req_state(req, "user", "struct group") == NULL);
	CHECK(evapi_req_state(req, "user_id", "struct user") == NULL);
	CHECK(evapi_req_state_str(req, "user_id") == NULL);
	CHECK_INT(evapi_req_state_int(req, "role", &x), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_req_state_int(req, "nobody", &x), ==, EVAPI_ENOENT);
	evapi_reply_json(req, 200, json_pack("{s:s, s:I, s:s, s:s}", "name",
	                                     u ? u->name : "?", "id", id,
	                                     "role",
	                                     evapi_req_state_str(req, "role"),
	                                     "lane", arg ? "pool" : "inline"));
}

static void test_typed_state(void)
{
	static const evapi_dep d = {.cb = dep_user};
	evapi_config cfg;
	evapi_app *app;
	evapi_test *tc;
	evapi_test_response *r;
	int lane;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/me", EVAPI_INLINE, state_handler,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/pool/me", EVAPI_POOL, state_handler,
	                "pool");
	CHECK_INT(evapi_app_dep(app, &d), ==, 0);
	tc = evapi_test_start(app);
	for (lane = 0; lane < 2; lane++) {
		__atomic_store_n(&users_freed, 0, __ATOMIC_SEQ_CST);
		r = evapi_test_get(tc, lane ? "/pool/me" : "/me");
		CHECK_INT(evapi_test_status(r), ==, 200);
		CHECK_STR(evapi_test_body(r, NULL),
		          lane ? "{\"name\":\"alice\",\"id\":42,\"role\":\"admin\","
		                 "\"lane\":\"pool\"}"
		               : "{\"name\":\"alice\",\"id\":42,\"role\":\"admin\","
		                 "\"lane\":\"inline\"}");
		evapi_test_response_free(r);
		/* the second value goes with the request */
		th_wait_idle(evapi_test_app(tc), 5);
		CHECK_INT(GET(users_freed), ==, 2);
	}
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

/* ---- waiting: a sleep, the pool ------------------------------------------------ */

static void slept(evapi_req *req, int status, void *arg)
{
	if (status != 0)
		return; /* cancelled: nothing more runs */
	trace("slept", "");
	evapi_req_state_set_int(req, "slept_ms", 60);
	CHECK_INT(evapi_dep_resume(req), ==, 0);
	/* resumed once: a second resume has nothing to go on with */
	CHECK_INT(evapi_dep_resume(req), ==, EVAPI_ESTATE);
}

static int dep_sleep(evapi_req *req, void *arg)
{
	trace("sleep", "");
	/* nothing waits yet */
	CHECK_INT(evapi_dep_resume(req), ==, EVAPI_ESTATE);
	if (evapi_req_sleep(req, 60, slept, NULL) != 0)
		return -1;
	return EVAPI_DEP_WAIT;
}

static int dep_pool(evapi_req *req, void *arg)
{
	/* on a worker: may block */
	char buf[32];
	th_sleep_ms(20);
	snprintf(buf, sizeof buf, "pool%s,", evapi_worker_index() >= 0
	                                      ? "@worker" : "@loop");
	th_trace_add(buf);
	if (evapi_req_query(req, "deny")) {
		evapi_reply_error(req, 403, "pool says no");
		return 1;
	}
	return evapi_req_state_set_int(req, "from_pool", 7);
}

static void wait_handler(evapi_req *req, void *arg)
{
	long long a = -1, b = -1;
	evapi_req_state_int(req, "slept_ms", &a);
	evapi_req_state_int(req, "from_pool", &b);
	trace("H", "");
	evapi_reply_json(req, 200, json_pack("{s:I, s:I, s:I}", "slept", a,
	                                     "pool", b, "worker",
	                                     (json_int_t)evapi_worker_index()));
}

static evapi_app *wait_app(void)
{
	static const evapi_dep sleep_d = {.cb = dep_sleep, .name = "sleepy"};
	static const evapi_dep pool_d = {.cb = dep_pool, .lane = EVAPI_POOL};
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/wait", EVAPI_INLINE, wait_handler,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/wait/pool", EVAPI_POOL, wait_handler,
	                NULL);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/wait", &sleep_d), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/wait", &pool_d), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/wait/pool", &pool_d), ==,
	          0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/wait/pool", &sleep_d), ==,
	          0);
	return app;
}

static void test_inline_wait_and_pool_lane(void)
{
	evapi_test *tc = evapi_test_start(wait_app());
	evapi_test_response *r;
	double t0;

	/* inline route: sleep (loop, waits), pool resolver (worker), inline
	 * handler on the loop */
	th_trace_clear();
	t0 = th_now();
	r = evapi_test_get(tc, "/wait");
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK(th_now() - t0 >= 0.06);
	CHECK_STR(evapi_test_body(r, NULL),
	          "{\"slept\":60,\"pool\":7,\"worker\":-1}");
	evapi_test_response_free(r);
	CHECK_STR(th_trace(), "sleep,slept,pool@worker,H,");
	/* pool route: pool resolver, then the sleep, then the handler on a
	 * worker */
	th_trace_clear();
	r = evapi_test_get(tc, "/wait/pool");
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK(json_integer_value(json_object_get(evapi_test_json(r),
	                                         "worker")) >= 0);
	evapi_test_response_free(r);
	CHECK_STR(th_trace(), "pool@worker,sleep,slept,H,");
	/* a pool resolver that answers: the sleep and the handler never run */
	th_trace_clear();
	r = evapi_test_get(tc, "/wait/pool?deny=1");
	CHECK_INT(evapi_test_status(r), ==, 403);
	CHECK_STR(evapi_test_body(r, NULL), "{\"detail\":\"pool says no\"}");
	evapi_test_response_free(r);
	CHECK_STR(th_trace(), "pool@worker,");
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

/* ---- cleanups after the reply, a departed client, a shutdown ------------------ */

static int cleanups_run, cleanup_status;

static void count_cleanup(evapi_req *req, int status, void *arg)
{
	/* the request is over: no reply, no new wait */
	CHECK_INT(evapi_reply_error(req, 500, "late"), ==, EVAPI_EGONE);
	CHECK_INT(evapi_req_sleep(req, 1, NULL, NULL), ==, EVAPI_EGONE);
	CHECK_INT(evapi_req_on_cleanup(req, count_cleanup, NULL), ==,
	          EVAPI_EGONE);
	__atomic_store_n(&cleanup_status, status, __ATOMIC_SEQ_CST);
	INC(cleanups_run);
	th_trace_add("cleanup,");
}

static int dep_counted(evapi_req *req, void *arg)
{
	return evapi_req_on_cleanup(req, count_cleanup, NULL);
}

static void never_cb(evapi_req *req, int status, void *arg)
{
	th_trace_add(status == EVAPI_ECANCELED ? "cancelled," : "woke,");
	if (status == 0)
		evapi_reply_error(req, 200, "woke");
}

/* sleeps 10 s: only a departure, the deadline or a cut ends it */
static void long_handler(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 10000, never_cb, NULL);
}

static evapi_stream *open_stream;

static void stream_keep(evapi_req *req, void *arg)
{
	open_stream = evapi_reply_stream(req, 200, "text/plain");
	evapi_stream_write(open_stream, "first;", 6);
}

static void stream_finish(evapi_req *req, void *arg)
{
	evapi_stream_write(open_stream, "last", 4);
	evapi_stream_close(open_stream);
	open_stream = NULL;
	evapi_reply_error(req, 200, "closed");
}

static evapi_app *cleanup_app(int grace_ms)
{
	static const evapi_dep d = {.cb = dep_counted};
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.shutdown_grace_ms = grace_ms;
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/long", EVAPI_INLINE, long_handler,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/stream", EVAPI_INLINE, stream_keep,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/stream/end", EVAPI_INLINE,
	                stream_finish, NULL);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/long", &d), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/stream", &d), ==, 0);
	return app;
}

static void test_cleanup_after_stream_reply(void)
{
	evapi_test *tc;
	evapi_test_stream *s;
	evapi_test_response *r;
	char buf[64];
	long n;

	__atomic_store_n(&cleanups_run, 0, __ATOMIC_SEQ_CST);
	tc = evapi_test_start(cleanup_app(5000));
	s = evapi_test_open(tc, &(evapi_test_req){.path = "/stream"});
	CHECK_INT(evapi_test_status(evapi_test_stream_response(s)), ==, 200);
	n = evapi_test_stream_read(s, buf, sizeof buf - 1, 0);
	CHECK_INT(n, ==, 6);
	/* the handler returned long ago, the reply is not over: not yet */
	th_sleep_ms(50);
	CHECK_INT(GET(cleanups_run), ==, 0);
	r = evapi_test_get(tc, "/stream/end");
	CHECK_INT(evapi_test_status(r), ==, 200);
	evapi_test_response_free(r);
	while ((n = evapi_test_stream_read(s, buf, sizeof buf - 1, 0)) > 0)
		;
	CHECK_INT(n, ==, 0);
	evapi_test_stream_close(s);
	CHECK(th_trace_wait("cleanup,", 5));
	CHECK_INT(GET(cleanups_run), ==, 1);
	CHECK_INT(GET(cleanup_status), ==, 200);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_cleanup_after_client_left(void)
{
	evapi_test *tc;
	evapi_stats st;

	__atomic_store_n(&cleanups_run, 0, __ATOMIC_SEQ_CST);
	th_trace_clear();
	tc = evapi_test_start(cleanup_app(5000));
	th_send_and_close(evapi_test_port(tc),
	                  "GET /long HTTP/1.1\r\nHost: x\r\n\r\n", 100);
	/* the sleep is cancelled first, then the request is over */
	CHECK(th_trace_wait("cleanup,", 5));
	th_sleep_ms(100);
	CHECK_STR(th_trace(), "cancelled,cleanup,");
	CHECK_INT(GET(cleanups_run), ==, 1);
	CHECK_INT(GET(cleanup_status), ==, 499);
	evapi_app_stats(evapi_test_app(tc), &st);
	CHECK_INT(st.gone, ==, 1);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
	CHECK_INT(GET(cleanups_run), ==, 1);
}

static void test_cleanup_after_shutdown_cut(void)
{
	evapi_test *tc;
	th_async a;

	__atomic_store_n(&cleanups_run, 0, __ATOMIC_SEQ_CST);
	th_trace_clear();
	tc = evapi_test_start(cleanup_app(100));
	th_http_start(&a, evapi_test_port(tc), "/long");
	th_sleep_ms(100);
	/* the grace passes with the request asleep: cut, 503 */
	evapi_test_stop(tc);
	CHECK_INT(th_http_join(&a), ==, 503);
	CHECK_INT(GET(cleanups_run), ==, 1);
	CHECK_INT(GET(cleanup_status), ==, 503);
	CHECK_STR(th_trace(), "cancelled,cleanup,");
}

/* A resolver still waiting when the client leaves: its sleep is
 * cancelled, resuming is refused, the handler never runs, the cleanup it
 * registered runs once. */
static int resume_rc = 1;

static void dep_slept_long(evapi_req *req, int status, void *arg)
{
	th_trace_add(status == EVAPI_ECANCELED ? "dep cancelled," : "dep woke,");
	__atomic_store_n(&resume_rc, evapi_dep_resume(req), __ATOMIC_SEQ_CST);
}

static int dep_long_wait(evapi_req *req, void *arg)
{
	int rc = evapi_req_on_cleanup(req, count_cleanup, NULL);
	if (rc == 0)
		rc = evapi_req_sleep(req, 10000, dep_slept_long, NULL);
	return rc == 0 ? EVAPI_DEP_WAIT : -1;
}

static void test_waiting_dependency_client_left(void)
{
	static const evapi_dep d = {.cb = dep_long_wait};
	evapi_config cfg;
	evapi_app *app;
	evapi_test *tc;

	__atomic_store_n(&cleanups_run, 0, __ATOMIC_SEQ_CST);
	th_trace_clear();
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/guarded", EVAPI_INLINE, handler, "g");
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/guarded", &d), ==, 0);
	tc = evapi_test_start(app);
	th_send_and_close(evapi_test_port(tc),
	                  "GET /guarded HTTP/1.1\r\nHost: x\r\n\r\n", 100);
	CHECK(th_trace_wait("cleanup,", 5));
	th_sleep_ms(100);
	CHECK_STR(th_trace(), "dep cancelled,cleanup,");
	CHECK_INT(GET(resume_rc), ==, EVAPI_EGONE);
	CHECK_INT(GET(cleanups_run), ==, 1);
	CHECK_INT(GET(cleanup_status), ==, 499);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

/* ---- asynchronous middleware: an API key checked by an upstream ------------------ */

/* The upstream: 200 for key "k1", else 401. */
static void up_check(evapi_req *req, void *arg)
{
	const char *k = evapi_req_header(req, "X-API-Key");
	if (k && strcmp(k, "k1") == 0)
		evapi_reply_json(req, 200, json_pack("{s:s}", "user", "alice"));
	else
		evapi_reply_error(req, 401, "unknown key");
}

static void checked(evapi_req *req, int status, const evapi_fetch_res *res,
                    void *arg)
{
	if (status != 0)
		return; /* cancelled */
	if (evapi_fetch_res_error(res) != 0) {
		evapi_reply_upstream_error(req, res);
		return;
	}
	if (evapi_fetch_res_status(res) != 200) {
		evapi_reply_error(req, 401, "Invalid API key");
		return;
	}
	evapi_req_state_set_str(req, "user", "alice");
	evapi_dep_resume(req);
}

static int api_key_mw(evapi_req *req, void *arg)
{
	const char *key = evapi_req_header(req, "X-API-Key");
	char url[128], hdr[160];
	const char *headers[] = {hdr, NULL};
	evapi_fetch_opts o = {0};

	if (!key) {
		evapi_reply_error(req, 401, "Not authenticated");
		return 1;
	}
	snprintf(url, sizeof url, "http://127.0.0.1:%d/check", *(int *)arg);
	snprintf(hdr, sizeof hdr, "X-API-Key: %s", key);
	o.url = url;
	o.headers = headers;
	if (evapi_req_fetch(req, &o, checked, NULL) != 0)
		return -1;
	return EVAPI_DEP_WAIT;
}

static void hello_user(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s?}", "hello",
	                                     evapi_req_state_str(req, "user")));
}

static void test_async_middleware_api_key(void)
{
	static int up_port;
	static const evapi_dep mw = {.cb = api_key_mw, .arg = &up_port,
	                             .name = "api key"};
	evapi_config cfg;
	evapi_app *up, *app;
	evapi_test *tu, *tc;
	evapi_test_response *r;
	int i;

	th_config(&cfg);
	up = evapi_app_new(&cfg);
	evapi_app_route(up, EVAPI_GET, "/check", EVAPI_INLINE, up_check, NULL);
	tu = evapi_test_start(up);
	up_port = evapi_test_port(tu);
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, hello_user,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/pool/hello", EVAPI_POOL, hello_user,
	                NULL);
	CHECK_INT(evapi_app_dep(app, &mw), ==, 0);
	tc = evapi_test_start(app);
	for (i = 0; i < 2; i++) {
		const char *path = i ? "/pool/hello" : "/hello";
		r = evapi_test_request(tc, &(evapi_test_req){
			.path = path,
			.headers = (const char *[]){"X-API-Key: k1", NULL}});
		CHECK_INT(evapi_test_status(r), ==, 200);
		CHECK_STR(evapi_test_body(r, NULL), "{\"hello\":\"alice\"}");
		evapi_test_response_free(r);
		r = evapi_test_request(tc, &(evapi_test_req){
			.path = path,
			.headers = (const char *[]){"X-API-Key: k2", NULL}});
		CHECK_INT(evapi_test_status(r), ==, 401);
		CHECK_STR(evapi_test_body(r, NULL),
		          "{\"detail\":\"Invalid API key\"}");
		evapi_test_response_free(r);
		r = evapi_test_get(tc, path);
		CHECK_INT(evapi_test_status(r), ==, 401);
		evapi_test_response_free(r);
	}
	CHECK_INT(evapi_test_stop(tc), ==, 0);
	/* the upstream gone: the fetch fails, 502 from the middleware */
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, hello_user,
	                NULL);
	CHECK_INT(evapi_app_dep(app, &mw), ==, 0);
	CHECK_INT(evapi_test_stop(tu), ==, 0);
	up_port = th_free_port();
	tc = evapi_test_start(app);
	r = evapi_test_request(tc, &(evapi_test_req){
		.path = "/hello",
		.headers = (const char *[]){"X-API-Key: k1", NULL}});
	CHECK_INT(evapi_test_status(r), ==, 502);
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

/* ---- misuse ---------------------------------------------------------------------- */

static int dep_wait_nothing(evapi_req *req, void *arg)
{
	return EVAPI_DEP_WAIT; /* but started nothing */
}

static int dep_pool_wait(evapi_req *req, void *arg)
{
	return EVAPI_DEP_WAIT; /* a pool resolver cannot */
}

static int dep_silent(evapi_req *req, void *arg)
{
	return -1; /* stops without replying */
}

static void test_misuse_answers_500(void)
{
	static const evapi_dep w = {.cb = dep_wait_nothing};
	static const evapi_dep pw = {.cb = dep_pool_wait, .lane = EVAPI_POOL,
	                             .name = "pw"};
	static const evapi_dep s = {.cb = dep_silent};
	evapi_config cfg;
	evapi_app *app;
	evapi_test *tc;
	evapi_test_response *r;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/w", EVAPI_INLINE, handler, "w");
	evapi_app_route(app, EVAPI_GET, "/pw", EVAPI_INLINE, handler, "pw");
	evapi_app_route(app, EVAPI_GET, "/s", EVAPI_POOL, handler, "s");
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/w", &w), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/pw", &pw), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/s", &s), ==, 0);
	CHECK_INT(evapi_route_dep(app, EVAPI_GET, "/s",
	                          &(evapi_dep){.cb = dep_silent, .lane = 7}),
	          ==, EVAPI_EINVAL);
	tc = evapi_test_start(app);
	th_trace_clear();
	th_log_clear();
	r = evapi_test_get(tc, "/w");
	CHECK_INT(evapi_test_status(r), ==, 500);
	evapi_test_response_free(r);
	CHECK_CONTAINS(th_log(), "dependency 0 of GET /w (route) stopped the "
	                         "request without replying: 500 "
	                         "(EVAPI_DEP_WAIT with nothing pending)");
	r = evapi_test_get(tc, "/pw");
	CHECK_INT(evapi_test_status(r), ==, 500);
	evapi_test_response_free(r);
	CHECK_CONTAINS(th_log(), "dependency 0 pw of GET /pw (route) cannot "
	                         "wait on the pool: 500");
	r = evapi_test_get(tc, "/s");
	CHECK_INT(evapi_test_status(r), ==, 500);
	evapi_test_response_free(r);
	CHECK_STR(th_trace(), ""); /* no handler ran */
	CHECK_INT(evapi_test_stop(tc), ==, 0);
	/* outside a request's chain */
	CHECK_INT(evapi_dep_resume(NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_req_on_cleanup(NULL, count_cleanup, NULL), ==,
	          EVAPI_EINVAL);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"depends.order_and_cleanups", test_order_and_cleanups},
		{"depends.dependency_stops_request",
		 test_dependency_stops_request},
		{"depends.typed_state", test_typed_state},
		{"depends.inline_wait_and_pool_lane",
		 test_inline_wait_and_pool_lane},
		{"depends.cleanup_after_stream_reply",
		 test_cleanup_after_stream_reply},
		{"depends.cleanup_after_client_left",
		 test_cleanup_after_client_left},
		{"depends.cleanup_after_shutdown_cut",
		 test_cleanup_after_shutdown_cut},
		{"depends.waiting_dependency_client_left",
		 test_waiting_dependency_client_left},
		{"depends.async_middleware_api_key",
		 test_async_middleware_api_key},
		{"depends.misuse_answers_500", test_misuse_answers_500},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
