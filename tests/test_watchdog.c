/*
 * test_watchdog.c: the loop-stall watchdog (src/watchdog.c) times every
 * kind of user callback the loop runs. For each kind a callback blocks
 * the loop for 200 ms on a real app at 127.0.0.1:0; the stall must be
 * logged with the callback's name and kind, counted in stalls and
 * max_stall_ms, and, for a callback that belongs to a route, in that
 * route's stalls (GET /_/stats).
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#define BLOCK_MS 200

static int self_port;
static evapi_app *the_app;

static void block(void)
{
	th_sleep_ms(BLOCK_MS);
}

static void ok(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* handler */
static void handler(evapi_req *req, void *arg)
{
	block();
	ok(req, arg);
}

/* sleep continuation */
static void slept(evapi_req *req, int status, void *arg)
{
	block();
	ok(req, arg);
}

static void sleeper(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 10, slept, NULL);
}

/* pool continuation */
static void nothing(void *arg)
{
}

static void pooled(evapi_req *req, int status, void *arg)
{
	block();
	ok(req, arg);
}

static void pooler(evapi_req *req, void *arg)
{
	evapi_req_run_in_pool(req, nothing, pooled, NULL);
}

/* fetch continuation */
static void fetched(evapi_req *req, int status, const evapi_fetch_res *res,
                    void *arg)
{
	block();
	ok(req, arg);
}

static void self_opts(evapi_fetch_opts *o, char *url, size_t len)
{
	memset(o, 0, sizeof *o);
	snprintf(url, len, "http://127.0.0.1:%d/ok", self_port);
	o->url = url;
}

static void fetcher(evapi_req *req, void *arg)
{
	evapi_fetch_opts o;
	char url[64];
	self_opts(&o, url, sizeof url);
	if (evapi_req_fetch(req, &o, fetched, NULL) != 0)
		evapi_reply_error(req, 500, "cannot fetch");
}

/* app-level fetch callback */
static void app_fetched(evapi_app *app, const evapi_fetch_res *res,
                        void *arg)
{
	block();
}

static void app_fetcher(evapi_req *req, void *arg)
{
	evapi_fetch_opts o;
	char url[64];
	self_opts(&o, url, sizeof url);
	if (evapi_app_fetch(the_app, &o, app_fetched, NULL) != 0)
		evapi_reply_error(req, 500, "cannot fetch");
	else
		ok(req, arg);
}

/* stream callback: told that the client left */
static void stream_cb(evapi_stream *s, int status, void *arg)
{
	block();
	if (status != 0)
		evapi_stream_close(s);
}

static void streamer(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_stream(req, 200, "text/plain");
	if (!s)
		return;
	evapi_stream_set_cb(s, stream_cb, NULL);
	evapi_stream_write(s, "hello\n", 6);
}

/* middleware: blocks on its own paths */
static int mw_before(evapi_req *req, void *arg)
{
	if (strcmp(evapi_req_path(req), "/mwb") == 0)
		block();
	return 0;
}

static void mw_after(evapi_req *req, int status, void *arg)
{
	if (strcmp(evapi_req_path(req), "/mwa") == 0)
		block();
}

/* background task on the loop */
static int slow_task(evapi_app *app, int status, void *arg)
{
	if (status == 0)
		block();
	return 0;
}

static void tasker(evapi_req *req, void *arg)
{
	evapi_req_add_task(req, EVAPI_INLINE, "slow-task", slow_task, NULL);
	ok(req, arg);
}

/* posted callback */
static void posted(evapi_app *app, int status, void *arg)
{
	if (status == 0)
		block();
}

/* lifespan hooks */
static int slow_hook(evapi_app *app, void *arg)
{
	block();
	return 0;
}

static evapi_app *make_app(int hooks)
{
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.stats_routes = 1;
	cfg.stall_threshold_ms = 100;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	if (!app)
		return NULL;
	evapi_app_route(app, EVAPI_GET, "/ok", EVAPI_INLINE, ok, NULL);
	evapi_app_route(app, EVAPI_GET, "/handler", EVAPI_INLINE, handler,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/sleep", EVAPI_INLINE, sleeper, NULL);
	evapi_app_route(app, EVAPI_GET, "/pool", EVAPI_INLINE, pooler, NULL);
	evapi_app_route(app, EVAPI_GET, "/fetch", EVAPI_INLINE, fetcher, NULL);
	evapi_app_route(app, EVAPI_GET, "/appfetch", EVAPI_INLINE, app_fetcher,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/stream", EVAPI_INLINE, streamer,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/mwb", EVAPI_INLINE, ok, NULL);
	evapi_app_route(app, EVAPI_GET, "/mwa", EVAPI_INLINE, ok, NULL);
	evapi_app_route(app, EVAPI_GET, "/task", EVAPI_INLINE, tasker, NULL);
	evapi_app_middleware(app, mw_before, mw_after, NULL);
	if (hooks) {
		evapi_app_on_startup(app, slow_hook, NULL);
		evapi_app_on_shutdown(app, slow_hook, NULL);
	}
	return app;
}

static void start(th_server *s)
{
	th_log_clear();
	th_server_start(s, make_app(0));
	self_port = s->port;
	the_app = s->app;
}

/* Waits until the log shows `want`, then checks the counters. */
static void expect_stall(th_server *s, const char *want, const char *route)
{
	evapi_stats st;
	double t0 = th_now();

	while (!strstr(th_log(), want) && th_now() - t0 < 5)
		th_sleep_ms(20);
	CHECK_CONTAINS(th_log(), want);
	evapi_app_stats(s->app, &st);
	CHECK_INT(st.stalls, ==, 1);
	CHECK_INT(st.max_stall_ms, >=, BLOCK_MS - 10);
	if (route) {
		th_resp r;
		json_t *j, *n;
		CHECK_INT(th_http(s->port, "GET", "/_/stats", NULL, &r), ==, 200);
		j = json_loads(r.body, 0, NULL);
		n = json_object_get(json_object_get(j, "stalls_by_route"), route);
		CHECK_INT(json_integer_value(n), ==, 1);
		json_decref(j);
	}
}

static void get(th_server *s, const char *path)
{
	th_resp r;
	CHECK_INT(th_http(s->port, "GET", path, NULL, &r), ==, 200);
}

/* A stall in what GET `path` runs. */
static void stall_via(const char *path, const char *want, const char *route)
{
	th_server s;
	start(&s);
	get(&s, path);
	expect_stall(&s, want, route);
	th_server_stop(&s);
}

static void test_handler(void)
{
	stall_via("/handler", "in GET /handler (handler)", "GET /handler");
}

static void test_sleep_continuation(void)
{
	stall_via("/sleep", "in GET /sleep (sleep continuation)", "GET /sleep");
}

static void test_pool_continuation(void)
{
	stall_via("/pool", "in GET /pool (pool continuation)", "GET /pool");
}

static void test_fetch_continuation(void)
{
	stall_via("/fetch", "in GET /fetch (fetch continuation)", "GET /fetch");
}

static void test_app_fetch_callback(void)
{
	stall_via("/appfetch", "in evapi_app_fetch (fetch callback)", NULL);
}

static void test_posted_callback(void)
{
	th_server s;
	start(&s);
	CHECK_INT(evapi_app_post(s.app, posted, NULL), ==, 0);
	expect_stall(&s, "in evapi_app_post (posted callback)", NULL);
	th_server_stop(&s);
}

static void test_stream_callback(void)
{
	th_server s;
	char buf[512];
	int fd;
	start(&s);
	fd = th_connect_send(s.port, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
	CHECK_INT(th_read_some(fd, buf, sizeof buf, 20, 3), >=, 20);
	close(fd); /* the stream callback hears of it, and blocks */
	expect_stall(&s, "in GET /stream (stream callback)", "GET /stream");
	th_server_stop(&s);
}

static void test_before_hook(void)
{
	stall_via("/mwb", "in middleware 0 (before hook)", NULL);
}

static void test_after_hook(void)
{
	stall_via("/mwa", "in middleware 0 (after hook)", "GET /mwa");
}

static void test_background_task(void)
{
	stall_via("/task", "in slow-task (background task)", "GET /task");
}

static void test_lifespan_hooks(void)
{
	th_server s;
	evapi_stats st;
	evapi_app *app;

	th_log_clear();
	app = make_app(1);
	th_server_start(&s, app);
	self_port = s.port;
	get(&s, "/ok");
	expect_stall(&s, "in startup hook 0 (lifespan)", NULL);
	/* stop by hand: the shutdown hook runs after the drain */
	evapi_app_stop(app);
	pthread_join(s.thread, NULL);
	CHECK_CONTAINS(th_log(), "in shutdown hook 0 (lifespan)");
	evapi_app_stats(app, &st);
	CHECK_INT(st.stalls, ==, 2);
	evapi_app_free(app);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"watchdog.handler", test_handler},
		{"watchdog.sleep_continuation", test_sleep_continuation},
		{"watchdog.pool_continuation", test_pool_continuation},
		{"watchdog.fetch_continuation", test_fetch_continuation},
		{"watchdog.app_fetch_callback", test_app_fetch_callback},
		{"watchdog.posted_callback", test_posted_callback},
		{"watchdog.stream_callback", test_stream_callback},
		{"watchdog.before_hook", test_before_hook},
		{"watchdog.after_hook", test_after_hook},
		{"watchdog.background_task", test_background_task},
		{"watchdog.lifespan_hooks", test_lifespan_hooks},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
