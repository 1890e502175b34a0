/*
 * test_stats.c: the runtime statistics routes (src/stats.c) on a real app
 * at 127.0.0.1:0: off by default, per-route counts and latency, stalls by
 * route, loop lag, status counters, pool waits, outbound calls in
 * flight, and the Prometheus page.
 */
#include "harness.h"
#include "../src/internal.h"

#include <stdlib.h>
#include <unistd.h>

static void ok(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "Hello", "World"));
}

static void busy(evapi_req *req, void *arg)
{
	evapi_reply_error(req, 503, "busy on purpose");
}

/* Blocks the loop for 150 ms: a stall (threshold 50 ms) and loop lag. */
static void block(evapi_req *req, void *arg)
{
	th_sleep_ms(150);
	evapi_reply_json(req, 200, json_pack("{s:s}", "blocked", "loop"));
}

static void pool_sleep(evapi_req *req, void *arg)
{
	th_sleep_ms(400);
	evapi_reply_json(req, 200, json_pack("{s:s}", "slept", "pool"));
}

/* /call fetches this app's own /upslow (a 500 ms non-blocking sleep). */
static int self_port;

static void upslow_done(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:s}", "up", "slow"));
}

static void upslow(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 500, upslow_done, NULL);
}

static void called(evapi_req *req, int status, const evapi_fetch_res *res,
                   void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:i}", "upstream",
		                                     evapi_fetch_res_status(res)));
}

static void call(evapi_req *req, void *arg)
{
	char url[64];
	evapi_fetch_opts o;
	memset(&o, 0, sizeof o);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/upslow", self_port);
	o.url = url;
	if (evapi_req_fetch(req, &o, called, NULL) != 0)
		evapi_reply_error(req, 500, "cannot start the call");
}

static void start(th_server *s, int stats, int threads)
{
	evapi_config cfg;
	evapi_app *app;
	th_config(&cfg);
	cfg.stats_routes = stats;
	cfg.stall_threshold_ms = 50;
	cfg.pool_threads = threads;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/ok", EVAPI_INLINE, ok, NULL);
	evapi_app_route(app, EVAPI_GET, "/busy", EVAPI_INLINE, busy, NULL);
	evapi_app_route(app, EVAPI_GET, "/block", EVAPI_INLINE, block, NULL);
	evapi_app_route(app, EVAPI_GET, "/psleep", EVAPI_POOL, pool_sleep, NULL);
	evapi_app_route(app, EVAPI_GET, "/upslow", EVAPI_INLINE, upslow, NULL);
	evapi_app_route(app, EVAPI_GET, "/call", EVAPI_INLINE, call, NULL);
	th_server_start(s, app);
	self_port = s->port;
}

/* GET /_/stats parsed; NULL (and a failure) when it is not JSON. */
static json_t *get_stats(int port)
{
	th_resp r;
	json_t *j;
	CHECK_INT(th_http(port, "GET", "/_/stats", NULL, &r), ==, 200);
	j = json_loads(r.body, 0, NULL);
	CHECK(j != NULL);
	return j;
}

static json_t *route_entry(json_t *stats, const char *label)
{
	json_t *routes = json_object_get(stats, "routes"), *r;
	size_t i;
	json_array_foreach(routes, i, r)
		if (strcmp(json_string_value(json_object_get(r, "route")),
		           label) == 0)
			return r;
	TH_FAIL_AT("no route %s in /_/stats", label);
	return NULL;
}

static long long jint(json_t *o, const char *path)
{
	/* "a.b" walks one level of objects. */
	char key[64];
	const char *dot = strchr(path, '.');
	if (dot) {
		snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
		return jint(json_object_get(o, key), dot + 1);
	}
	return (long long)json_integer_value(json_object_get(o, path));
}

static double jnum(json_t *o, const char *path)
{
	char key[64];
	const char *dot = strchr(path, '.');
	if (dot) {
		snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
		return jnum(json_object_get(o, key), dot + 1);
	}
	return json_number_value(json_object_get(o, path));
}

static void test_off_by_default(void)
{
	th_server s;
	th_resp r;
	start(&s, 0, 2);
	CHECK_INT(th_http(s.port, "GET", "/_/stats", NULL, &r), ==, 404);
	CHECK_INT(th_http(s.port, "GET", "/_/metrics", NULL, &r), ==, 404);
	th_server_stop(&s);
}

static void test_counts_latency_stalls(void)
{
	th_server s;
	th_resp r;
	json_t *st, *e;
	int i;

	start(&s, 1, 2);
	for (i = 0; i < 3; i++)
		CHECK_INT(th_http(s.port, "GET", "/ok", NULL, &r), ==, 200);
	CHECK_INT(th_http(s.port, "GET", "/missing", NULL, &r), ==, 404);
	CHECK_INT(th_http(s.port, "GET", "/busy", NULL, &r), ==, 503);
	CHECK_INT(th_http(s.port, "GET", "/block", NULL, &r), ==, 200);
	st = get_stats(s.port);

	e = route_entry(st, "GET /ok");
	CHECK_INT(jint(e, "count"), ==, 3);
	CHECK_INT(jint(e, "2xx"), ==, 3);
	CHECK_STR(json_string_value(json_object_get(e, "lane")), "inline");
	CHECK_DBL(jnum(e, "latency_ms.p99"), >, 0.0);
	CHECK_DBL(jnum(e, "latency_ms.p50"), <=, jnum(e, "latency_ms.p99"));

	e = route_entry(st, "unmatched");
	CHECK_INT(jint(e, "4xx"), ==, 1);

	e = route_entry(st, "GET /block");
	CHECK_INT(jint(e, "stalls"), ==, 1);
	/* Within one bucket (25%) of the 150 ms the handler took. */
	CHECK_DBL(jnum(e, "latency_ms.p50"), >=, 140.0);
	CHECK_DBL(jnum(e, "latency_ms.p50"), <, 150.0 * 1.25 * 4);

	CHECK_INT(jint(st, "stalls"), ==, 1);
	CHECK_INT(jint(st, "stalls_by_route.GET /block"), ==, 1);
	CHECK_INT(jint(st, "status.503"), ==, 1);
	CHECK_INT(jint(st, "status.4xx"), ==, 1);
	CHECK_INT(jint(st, "status.5xx"), ==, 1);
	CHECK_INT(jint(st, "requests"), ==, 6); /* this request is not done */
	CHECK_INT(jint(st, "in_flight"), ==, 1); /* this one */
	CHECK_INT(jint(st, "pool.threads"), ==, 2);
	/* The 100 ms probe was due during the 150 ms block. */
	CHECK_DBL(jnum(st, "loop_lag_ms.max"), >=, 40.0);
	CHECK_INT(json_array_size(json_object_get(
			  json_object_get(st, "loop_lag_ms"), "histogram")), ==, 12);
	json_decref(st);

	/* /_/stats counts itself once it is done. */
	st = get_stats(s.port);
	CHECK_INT(jint(route_entry(st, "GET /_/stats"), "count"), ==, 1);
	json_decref(st);
	th_server_stop(&s);
}

struct bg {
	int port;
	th_resp r[2];
};

static void *two_pool_sleeps(void *arg)
{
	struct bg *b = arg;
	static const char *const paths[] = {"/psleep", "/psleep"};
	th_http_parallel(b->port, 2, paths, b->r);
	return NULL;
}

static void test_pool_waits(void)
{
	th_server s;
	pthread_t t;
	struct bg b;
	json_t *st;

	start(&s, 1, 1); /* one worker: the second sleep must queue */
	b.port = s.port;
	pthread_create(&t, NULL, two_pool_sleeps, &b);
	th_sleep_ms(200);
	st = get_stats(s.port);
	CHECK_INT(jint(st, "pool.busy"), ==, 1);
	CHECK_INT(jint(st, "pool.queued"), ==, 1);
	CHECK_DBL(jnum(st, "pool.longest_wait_ms"), >=, 100.0);
	CHECK_INT(jint(st, "in_flight"), ==, 3);
	json_decref(st);
	pthread_join(t, NULL);
	CHECK_INT(b.r[0].status, ==, 200);
	CHECK_INT(b.r[1].status, ==, 200);
	st = get_stats(s.port);
	CHECK_INT(jint(st, "pool.queued"), ==, 0);
	CHECK_DBL(jnum(st, "pool.longest_wait_ms"), ==, 0.0);
	CHECK_DBL(jnum(st, "pool.max_wait_ms"), >=, 300.0);
	CHECK_STR(json_string_value(json_object_get(
			  route_entry(st, "GET /psleep"), "lane")), "pool");
	json_decref(st);
	th_server_stop(&s);
}

static void *one_call(void *arg)
{
	th_resp *r = arg;
	th_http(self_port, "GET", "/call", NULL, r);
	return NULL;
}

static void test_outbound_in_flight(void)
{
	th_server s;
	pthread_t t;
	th_resp r;
	json_t *st;

	start(&s, 1, 2);
	pthread_create(&t, NULL, one_call, &r);
	th_sleep_ms(250);
	st = get_stats(s.port);
	CHECK_INT(jint(st, "outbound.in_flight"), ==, 1);
	CHECK_INT(jint(st, "outbound.calls"), ==, 0);
	json_decref(st);
	pthread_join(t, NULL);
	CHECK_INT(r.status, ==, 200);
	st = get_stats(s.port);
	CHECK_INT(jint(st, "outbound.in_flight"), ==, 0);
	CHECK_INT(jint(st, "outbound.calls"), ==, 1);
	CHECK_INT(jint(st, "outbound.errors"), ==, 0);
	json_decref(st);
	th_server_stop(&s);
}

static void test_metrics_text(void)
{
	th_server s;
	th_resp r;
	int i;

	start(&s, 1, 2);
	for (i = 0; i < 2; i++)
		CHECK_INT(th_http(s.port, "GET", "/ok", NULL, &r), ==, 200);
	CHECK_INT(th_http(s.port, "GET", "/busy", NULL, &r), ==, 503);
	CHECK_INT(th_http(s.port, "GET", "/_/metrics", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.headers, "Content-Type: text/plain; version=0.0.4");
	CHECK_CONTAINS(r.body,
	               "evapi_requests_total{route=\"GET /ok\",code=\"2xx\"} 2\n");
	CHECK_CONTAINS(r.body,
	               "evapi_requests_total{route=\"GET /busy\",code=\"5xx\"} 1\n");
	CHECK_CONTAINS(r.body, "evapi_responses_total{code=\"503\"} 1\n");
	CHECK_CONTAINS(r.body, "# TYPE evapi_loop_lag_seconds histogram\n");
	CHECK_CONTAINS(r.body, "evapi_loop_lag_seconds_bucket{le=\"+Inf\"} ");
	CHECK_CONTAINS(r.body, "evapi_request_duration_seconds_count{route=\"GET /ok\"} 2\n");
	CHECK_CONTAINS(r.body, "evapi_pool_threads 2\n");
	CHECK_CONTAINS(r.body, "evapi_in_flight_requests 1\n");
	th_server_stop(&s);
}

/* Every counter of the one list (EVAPI__COUNTERS) reaches evapi_stats,
 * /_/stats and /_/metrics: each is given a distinct value and looked for
 * in all three. */
static void test_every_counter_everywhere(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_stats st;
	json_t *j;
	char *text, line[160];
	size_t len;
	long long v = 1000;

	th_config(&cfg);
	cfg.stats_routes = 1;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	if (!app)
		return;
#define SET(type, name, group, key, prom, kind, help) \
	app->stats.name = (type)++v;
	EVAPI__COUNTERS(SET)
#undef SET
	evapi_app_stats(app, &st);
	j = evapi__stats_json(app);
	text = evapi__stats_metrics(app, &len);
	CHECK(j != NULL);
	CHECK(text != NULL);
	v = 1000;
#define LOOK(type, name, group, key, prom, kind, help)                  \
	v++;                                                                \
	CHECK_INT((long long)st.name, ==, v);                               \
	CHECK_INT(jint(*group ? json_object_get(j, group) : j, key), ==, v); \
	snprintf(line, sizeof line, "\n%s %lld\n", prom, v);               \
	CHECK_CONTAINS(text, line);                                         \
	snprintf(line, sizeof line, "# TYPE %s %s\n", prom, kind);         \
	CHECK_CONTAINS(text, line);
	if (j && text) {
		EVAPI__COUNTERS(LOOK)
	}
#undef LOOK
	json_decref(j);
	free(text);
	/* the counters are made up: nothing is really in flight */
	app->stats.in_flight = 0;
	evapi_app_free(app);
}

/* What the request guard answers itself is counted like any request. */
static void test_guard_rejections_counted(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	evapi_stats st;
	char raw[6000], buf[2048];
	json_t *j;
	int fd;

	th_config(&cfg);
	cfg.stats_routes = 1;
	cfg.header_timeout_ms = 300;
	th_server_start(&s, evapi_app_new(&cfg));
	/* a malformed header line: 400 */
	fd = th_connect_send(s.port, "GET / HTTP/1.1\r\nHost: t\r\n"
	                             "no colon here\r\n\r\n");
	CHECK(th_read_all(fd, buf, sizeof buf, 3) > 0);
	CHECK_CONTAINS(buf, "HTTP/1.1 400 ");
	close(fd);
	/* a request-target over the limit: 414 */
	memset(raw, 'a', sizeof raw);
	memcpy(raw, "GET /", 5);
	snprintf(raw + 5000, sizeof raw - 5000, " HTTP/1.1\r\nHost: t\r\n\r\n");
	fd = th_connect_send(s.port, raw);
	CHECK(th_read_all(fd, buf, sizeof buf, 3) > 0);
	CHECK_CONTAINS(buf, "HTTP/1.1 414 ");
	close(fd);
	/* headers that never end: 408 at the header deadline */
	fd = th_connect_send(s.port, "GET / HTTP/1.1\r\nHost: t\r\n");
	CHECK(th_read_all(fd, buf, sizeof buf, 3) > 0);
	CHECK_CONTAINS(buf, "HTTP/1.1 408 ");
	close(fd);

	evapi_app_stats(s.app, &st);
	CHECK_INT(st.guard_rejected, ==, 3);
	CHECK_INT(st.status_4xx, ==, 3);
	CHECK_INT(st.requests, ==, 3);
	CHECK_INT(th_http(s.port, "GET", "/_/stats", NULL, &r), ==, 200);
	j = json_loads(r.body, 0, NULL);
	CHECK_INT(jint(j, "guard_rejected"), ==, 3);
	CHECK_INT(jint(j, "status.4xx"), ==, 3);
	CHECK_INT(jint(j, "requests"), ==, 3);
	CHECK_INT(jint(route_entry(j, "unmatched"), "4xx"), ==, 3);
	json_decref(j);
	CHECK_INT(th_http(s.port, "GET", "/_/metrics", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\nevapi_guard_rejected_total 3\n");
	CHECK_CONTAINS(r.body, "evapi_requests_total{route=\"unmatched\","
	                       "code=\"4xx\"} 3\n");
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"stats.off_by_default", test_off_by_default},
		{"stats.counts_latency_stalls", test_counts_latency_stalls},
		{"stats.pool_waits", test_pool_waits},
		{"stats.outbound_in_flight", test_outbound_in_flight},
		{"stats.metrics_text", test_metrics_text},
		{"stats.every_counter_everywhere", test_every_counter_everywhere},
		{"stats.guard_rejections_counted", test_guard_rejections_counted},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
