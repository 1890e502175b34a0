/*
 * stats.c: runtime statistics and the optional GET /_/stats (JSON) and
 * GET /_/metrics (Prometheus text) routes: loop lag, stalls by route,
 * pool occupancy and waits, in-flight requests and outbound calls,
 * per-route counts and latency percentiles, status counters.
 *
 * Threads: loop only. Every hook (request finished, stall) is called by
 * the reactor on the loop, the lag probe is a loop timer, and the two
 * routes are inline handlers, so nothing here needs a lock. Pool figures
 * come from the pool under its own mutex.
 *
 * Latency and lag are kept in fixed log-scale histograms (no samples are
 * stored): a percentile is reported as the upper bound of the bucket it
 * falls in, so it is exact to within one bucket (a factor of 1.25).
 */
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Latency buckets: upper bounds 50 us * 1.25^k; the last is +Inf. */
#define LAT_BUCKETS 64
/* Loop-lag histogram: Prometheus-style bounds in ms. */
static const double lag_bounds_ms[] = {1, 2, 5, 10, 25, 50, 100, 250,
                                       500, 1000, 2500};
#define LAG_BUCKETS (sizeof lag_bounds_ms / sizeof lag_bounds_ms[0] + 1)
#define LAG_PROBE_MS 100

typedef struct route_stats {
	const evapi__route *route;   /* NULL: requests that matched none */
	unsigned long long count, s2xx, s3xx, s4xx, s5xx, stalls;
	unsigned long long timed;    /* of count, those with a duration */
	int64_t sum_us, max_us;
	unsigned long long hist[LAT_BUCKETS];
} route_stats;

struct evapi__stats {
	evapi_app *app;
	int64_t started_us;
	struct event *probe;
	int64_t probe_due_us;
	int64_t lag_last_us, lag_max_us, lag_sum_us;
	unsigned long long lag_count, lag_hist[LAG_BUCKETS];
	unsigned long long s503, s504;
	int nroutes;                /* routes[0] is "unmatched" */
	route_stats *routes;
	double lat_bound_us[LAT_BUCKETS];
};

/* ---- recording -------------------------------------------------------- */

static route_stats *stats_for(evapi__stats *s, const evapi__route *r)
{
	int i;
	if (!s->routes)
		return NULL;
	if (!r)
		return &s->routes[0];
	/* Routes are few and fixed once the app runs; the index was given
	 * at registration. */
	i = (int)r->idx + 1;
	if (i < s->nroutes && s->routes[i].route == r)
		return &s->routes[i];
	return &s->routes[0];
}

static int lat_bucket(const evapi__stats *s, int64_t us)
{
	int k;
	for (k = 0; k < LAT_BUCKETS - 1; k++)
		if ((double)us <= s->lat_bound_us[k])
			return k;
	return LAT_BUCKETS - 1;
}

void evapi__stats_request(evapi_app *app, const evapi__route *route,
                          int status, int64_t us)
{
	evapi__stats *s = app->stats_mod;
	route_stats *rs;

	EVAPI__ADD(&app->stats.requests, 1);
	if (status >= 400 && status < 500)
		EVAPI__ADD(&app->stats.status_4xx, 1);
	else if (status >= 500)
		EVAPI__ADD(&app->stats.status_5xx, 1);
	if (!s || !(rs = stats_for(s, route)))
		return;
	rs->count++;
	if (status < 300)
		rs->s2xx++;
	else if (status < 400)
		rs->s3xx++;
	else if (status < 500)
		rs->s4xx++;
	else
		rs->s5xx++;
	if (status == 503)
		s->s503++;
	else if (status == 504)
		s->s504++;
	if (us < 0)
		return; /* answered by the guard: no handler was timed */
	rs->timed++;
	rs->sum_us += us;
	if (us > rs->max_us)
		rs->max_us = us;
	rs->hist[lat_bucket(s, us)]++;
}

void evapi__stats_stall(evapi_app *app, const evapi__route *route)
{
	route_stats *rs = app->stats_mod ? stats_for(app->stats_mod, route)
	                                 : NULL;
	if (rs)
		rs->stalls++;
}

/* The probe asks to run every LAG_PROBE_MS; how late it runs is the
 * loop's lag (time spent in callbacks and in the kernel before it). */
static void probe_arm(evapi__stats *s)
{
	struct timeval tv = {0, LAG_PROBE_MS * 1000};
	s->probe_due_us = evapi__now_us() + LAG_PROBE_MS * 1000;
	event_add(s->probe, &tv);
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi__stats *s = arg;
	int64_t lag = evapi__now_us() - s->probe_due_us;
	size_t k;

	if (lag < 0)
		lag = 0;
	s->lag_last_us = lag;
	if (lag > s->lag_max_us)
		s->lag_max_us = lag;
	s->lag_sum_us += lag;
	s->lag_count++;
	for (k = 0; k < LAG_BUCKETS - 1; k++)
		if ((double)lag <= lag_bounds_ms[k] * 1000)
			break;
	s->lag_hist[k]++;
	/* A draining app must be able to leave the loop: stop probing. */
	if (!s->app->stopping)
		probe_arm(s);
}

void evapi__stats_start(evapi_app *app)
{
	if (app->stats_mod && !event_pending(app->stats_mod->probe,
	                                     EV_TIMEOUT, NULL))
		probe_arm(app->stats_mod);
}

void evapi__stats_stop(evapi_app *app)
{
	if (app->stats_mod)
		event_del(app->stats_mod->probe);
}

/* ---- reading ---------------------------------------------------------- */

/* Upper bound (us) of the bucket holding quantile q, or 0 when empty. */
static double lat_quantile(const evapi__stats *s, const route_stats *rs,
                           double q)
{
	unsigned long long want, seen = 0;
	int k;
	if (rs->timed == 0)
		return 0;
	/* ceil(q * timed), at least 1 */
	want = (unsigned long long)(q * (double)rs->timed);
	if ((double)want < q * (double)rs->timed || want == 0)
		want++;
	for (k = 0; k < LAT_BUCKETS; k++) {
		seen += rs->hist[k];
		if (seen >= want)
			return k == LAT_BUCKETS - 1 ||
			               (double)rs->max_us < s->lat_bound_us[k]
			               ? (double)rs->max_us
			               : s->lat_bound_us[k];
	}
	return (double)rs->max_us;
}

static const char *route_name(const route_stats *rs)
{
	return rs->route ? rs->route->label : "unmatched";
}

typedef struct pool_view {
	int threads, busy, queued;
	int64_t oldest_us, max_wait_us;
} pool_view;

static void pool_view_get(evapi_app *app, pool_view *v)
{
	evapi__pool_counts(app->pool, &v->threads, &v->busy, &v->queued);
	evapi__pool_waits(app->pool, &v->oldest_us, &v->max_wait_us);
}

/* Sets o[group][key] (o[key] for the top level) to v. */
static void counter_json(json_t *o, const char *group, const char *key,
                         json_int_t v)
{
	json_t *g = o;
	if (*group && !(g = json_object_get(o, group))) {
		g = json_object();
		json_object_set_new(o, group, g);
	}
	json_object_set_new(g, key, json_integer(v));
}

json_t *evapi__stats_json(evapi_app *app)
{
	evapi__stats *s = app->stats_mod;
	json_t *o, *routes, *hist, *stalls;
	unsigned long long c2 = 0, c3 = 0;
	pool_view pv;
	size_t k;
	int i;

	if (!s)
		return NULL;
	pool_view_get(app, &pv);
	routes = json_array();
	stalls = json_object();
	hist = json_array();
	for (i = 0; i < s->nroutes; i++) {
		route_stats *rs = &s->routes[i];
		c2 += rs->s2xx;
		c3 += rs->s3xx;
		if (rs->stalls)
			json_object_set_new(stalls, route_name(rs),
			                    json_integer((json_int_t)rs->stalls));
		if (rs->count == 0 && rs->route == NULL)
			continue;
		json_array_append_new(
			routes,
			json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, "
			          "s:{s:f, s:f, s:f, s:f, s:f}}",
			          "route", route_name(rs), "lane",
			          rs->route ? evapi_lane_name(rs->route->lane) : "-",
			          "count", (json_int_t)rs->count,
			          "2xx", (json_int_t)rs->s2xx,
			          "3xx", (json_int_t)rs->s3xx,
			          "4xx", (json_int_t)rs->s4xx,
			          "5xx", (json_int_t)rs->s5xx,
			          "stalls", (json_int_t)rs->stalls,
			          "latency_ms",
			          "p50", lat_quantile(s, rs, 0.50) / 1000.0,
			          "p90", lat_quantile(s, rs, 0.90) / 1000.0,
			          "p99", lat_quantile(s, rs, 0.99) / 1000.0,
			          "max", (double)rs->max_us / 1000.0,
			          "mean", rs->timed ? (double)rs->sum_us /
			                                      (double)rs->timed / 1000.0
			                            : 0.0));
	}
	for (k = 0; k < LAG_BUCKETS; k++)
		json_array_append_new(
			hist, json_pack("{s:o, s:I}", "le_ms",
			                k < LAG_BUCKETS - 1
			                        ? json_real(lag_bounds_ms[k])
			                        : json_string("+Inf"),
			                "count", (json_int_t)s->lag_hist[k]));
	o = json_pack(
		"{s:f, s:{s:I, s:I, s:I, s:I}, "
		"s:{s:f, s:f, s:f, s:I, s:o}, s:o, "
		"s:{s:i, s:i, s:i, s:f, s:f}, s:o}",
		"uptime_s", (double)(evapi__now_us() - s->started_us) / 1e6,
		"status", "2xx", (json_int_t)c2, "3xx", (json_int_t)c3,
		"503", (json_int_t)s->s503, "504", (json_int_t)s->s504,
		"loop_lag_ms", "last", (double)s->lag_last_us / 1000.0, "max",
		(double)s->lag_max_us / 1000.0, "mean",
		s->lag_count ? (double)s->lag_sum_us / (double)s->lag_count / 1000.0
		             : 0.0,
		"probes", (json_int_t)s->lag_count, "histogram", hist,
		"stalls_by_route", stalls,
		"pool", "threads", pv.threads, "busy", pv.busy, "queued", pv.queued,
		"longest_wait_ms", (double)pv.oldest_us / 1000.0, "max_wait_ms",
		(double)pv.max_wait_us / 1000.0, "routes", routes);
	if (o) {
#define PUT(type, name, group, key, prom, kind, help)                   \
	counter_json(o, group, key,                                             \
	             (json_int_t)EVAPI__LOAD(&app->stats.name));
		EVAPI__COUNTERS(PUT)
#undef PUT
	}
	return o;
}

/* A growable text buffer for the metrics page. */
typedef struct text {
	char *p;
	size_t len, cap;
	int oom;
} text;

static void put(text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
	va_list ap;
	int n;
	for (;;) {
		va_start(ap, fmt);
		n = t->oom ? 0 : vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (t->oom || n < 0)
			return;
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = (t->cap + (size_t)n + 1) * 2;
			char *p = realloc(t->p, cap);
			if (!p) {
				t->oom = 1;
				return;
			}
			t->p = p;
			t->cap = cap;
		}
	}
}

/* Label values escape backslash, double quote and newline. */
static const char *label(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	for (; *s && o + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			buf[o++] = '\\';
			buf[o++] = *s;
		} else if (*s == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else {
			buf[o++] = *s;
		}
	}
	buf[o] = '\0';
	return buf;
}

char *evapi__stats_metrics(evapi_app *app, size_t *len)
{
	evapi__stats *s = app->stats_mod;
	text t = {NULL, 0, 0, 0};
	unsigned long long cum = 0;
	char lb[256];
	pool_view pv;
	size_t k;
	int i;

	if (!s)
		return NULL;
	t.cap = 4096;
	t.p = malloc(t.cap);
	if (!t.p)
		return NULL;
	pool_view_get(app, &pv);
	put(&t, "# HELP evapi_requests_total Finished requests by route and "
	        "status class.\n# TYPE evapi_requests_total counter\n");
	for (i = 0; i < s->nroutes; i++) {
		route_stats *rs = &s->routes[i];
		const char *cls[] = {"2xx", "3xx", "4xx", "5xx"};
		unsigned long long v[] = {rs->s2xx, rs->s3xx, rs->s4xx, rs->s5xx};
		int c;
		label(route_name(rs), lb, sizeof lb);
		for (c = 0; c < 4; c++)
			put(&t, "evapi_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
			    lb, cls[c], v[c]);
	}
	put(&t, "# HELP evapi_responses_total Replies with a given status sent "
	        "by the framework's limits.\n# TYPE evapi_responses_total "
	        "counter\nevapi_responses_total{code=\"503\"} %llu\n"
	        "evapi_responses_total{code=\"504\"} %llu\n", s->s503, s->s504);
	put(&t, "# HELP evapi_request_duration_seconds Request duration by "
	        "route (quantiles to within 25%%).\n"
	        "# TYPE evapi_request_duration_seconds summary\n");
	for (i = 0; i < s->nroutes; i++) {
		route_stats *rs = &s->routes[i];
		label(route_name(rs), lb, sizeof lb);
		put(&t,
		    "evapi_request_duration_seconds{route=\"%s\",quantile=\"0.5\"} %.6f\n"
		    "evapi_request_duration_seconds{route=\"%s\",quantile=\"0.9\"} %.6f\n"
		    "evapi_request_duration_seconds{route=\"%s\",quantile=\"0.99\"} %.6f\n"
		    "evapi_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
		    "evapi_request_duration_seconds_count{route=\"%s\"} %llu\n",
		    lb, lat_quantile(s, rs, 0.5) / 1e6, lb,
		    lat_quantile(s, rs, 0.9) / 1e6, lb,
		    lat_quantile(s, rs, 0.99) / 1e6, lb, (double)rs->sum_us / 1e6,
		    lb, rs->timed);
	}
	put(&t, "# HELP evapi_stalls_total Loop stalls reported by the "
	        "watchdog, by route.\n# TYPE evapi_stalls_total counter\n");
	for (i = 0; i < s->nroutes; i++) {
		if (!s->routes[i].stalls)
			continue;
		put(&t, "evapi_stalls_total{route=\"%s\"} %llu\n",
		    label(route_name(&s->routes[i]), lb, sizeof lb),
		    s->routes[i].stalls);
	}
	put(&t, "# HELP evapi_loop_lag_seconds How late a %d ms loop timer "
	        "fires.\n# TYPE evapi_loop_lag_seconds histogram\n",
	    LAG_PROBE_MS);
	for (k = 0; k < LAG_BUCKETS; k++) {
		cum += s->lag_hist[k];
		if (k < LAG_BUCKETS - 1)
			put(&t, "evapi_loop_lag_seconds_bucket{le=\"%g\"} %llu\n",
			    lag_bounds_ms[k] / 1000.0, cum);
		else
			put(&t, "evapi_loop_lag_seconds_bucket{le=\"+Inf\"} %llu\n",
			    cum);
	}
	put(&t, "evapi_loop_lag_seconds_sum %.6f\n"
	        "evapi_loop_lag_seconds_count %llu\n"
	        "# TYPE evapi_loop_lag_last_seconds gauge\n"
	        "evapi_loop_lag_last_seconds %.6f\n"
	        "# TYPE evapi_loop_lag_max_seconds gauge\n"
	        "evapi_loop_lag_max_seconds %.6f\n",
	    (double)s->lag_sum_us / 1e6, s->lag_count,
	    (double)s->lag_last_us / 1e6, (double)s->lag_max_us / 1e6);
	put(&t, "# TYPE evapi_pool_threads gauge\nevapi_pool_threads %d\n"
	        "# TYPE evapi_pool_busy gauge\nevapi_pool_busy %d\n"
	        "# TYPE evapi_pool_queued gauge\nevapi_pool_queued %d\n"
	        "# HELP evapi_pool_longest_wait_seconds Age of the oldest "
	        "queued pool job.\n"
	        "# TYPE evapi_pool_longest_wait_seconds gauge\n"
	        "evapi_pool_longest_wait_seconds %.6f\n"
	        "# TYPE evapi_pool_max_wait_seconds gauge\n"
	        "evapi_pool_max_wait_seconds %.6f\n",
	    pv.threads, pv.busy, pv.queued, (double)pv.oldest_us / 1e6,
	    (double)pv.max_wait_us / 1e6);
#define PUT(type, name, group, key, prom, kind, help)                   \
	put(&t, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", prom, help, prom,     \
	    kind, prom, (long long)EVAPI__LOAD(&app->stats.name));
	EVAPI__COUNTERS(PUT)
#undef PUT
	if (t.oom) {
		free(t.p);
		return NULL;
	}
	*len = t.len;
	return t.p;
}

/* ---- routes and lifecycle ---------------------------------------------- */

static void stats_route(evapi_req *req, void *arg)
{
	json_t *o = evapi__stats_json(req->app);
	if (!o) {
		evapi_reply_error(req, 500, "Statistics unavailable");
		return;
	}
	evapi_reply_json(req, 200, o);
}

static void metrics_route(evapi_req *req, void *arg)
{
	size_t len;
	char *m = evapi__stats_metrics(req->app, &len);
	if (!m) {
		evapi_reply_error(req, 500, "Statistics unavailable");
		return;
	}
	evapi_reply_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8",
	                  m, len);
	free(m);
}

int evapi__stats_init(evapi_app *app)
{
	evapi__stats *s;
	int k, rc;

	s = calloc(1, sizeof *s);
	if (!s)
		return EVAPI_ENOMEM;
	s->app = app;
	s->started_us = evapi__now_us();
	s->lat_bound_us[0] = 50.0;
	for (k = 1; k < LAT_BUCKETS; k++)
		s->lat_bound_us[k] = s->lat_bound_us[k - 1] * 1.25;
	s->probe = evtimer_new(app->base, probe_cb, s);
	if (!s->probe) {
		free(s);
		return EVAPI_ENOMEM;
	}
	app->stats_mod = s;
	if ((rc = evapi__router_add(app->router, EVAPI_GET, "/_/stats",
	                            EVAPI_INLINE, stats_route, NULL)) != 0 ||
	    (rc = evapi__router_add(app->router, EVAPI_GET, "/_/metrics",
	                            EVAPI_INLINE, metrics_route, NULL)) != 0)
		return rc;
	return 0;
}

/* Called when the app starts running: routes are final by then. */
int evapi__stats_bind_routes(evapi_app *app)
{
	evapi__stats *s = app->stats_mod;
	size_t n, i;
	route_stats *rs;

	if (!s || s->routes)
		return 0;
	n = evapi__router_count(app->router);
	rs = calloc(n + 1, sizeof *rs);
	if (!rs)
		return EVAPI_ENOMEM;
	for (i = 0; i < n; i++)
		rs[i + 1].route = evapi__router_at(app->router, i);
	s->routes = rs;
	s->nroutes = (int)n + 1;
	return 0;
}

void evapi__stats_free(evapi_app *app)
{
	evapi__stats *s = app->stats_mod;
	if (!s)
		return;
	if (s->probe)
		event_free(s->probe);
	free(s->routes);
	free(s);
	app->stats_mod = NULL;
}
