/*
 * demo_outbound.c: outbound calls, both ways.
 *
 *   GET /upstream?name=&delay_ms=  -> a slow upstream (inline sleep)
 *   GET /external-api       -> one call, non-blocking       inline
 *                              (httpx.AsyncClient().get in async def)
 *   GET /multi-fetch        -> two calls at once             inline
 *                              (asyncio.gather): one delay in all
 *   GET /fan-out?n=50       -> n calls at once               inline
 *   GET /sync-external-api  -> one blocking call             pool
 *                              (requests.get in a def route)
 *   GET /sync-multi-fetch   -> two blocking calls, one after
 *                              the other: two delays         pool
 *
 * The inline routes hold no thread while they wait; the pool routes hold
 * a worker for the whole call, which is fine for a few and the reason the
 * pool is bounded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

static char url_a[512], url_b[512];
static const char *custom;
static unsigned up_delay = 1000;

void demo_outbound_set_port(const char *host, int port)
{
	if (custom) {
		snprintf(url_a, sizeof url_a, "%s", custom);
		snprintf(url_b, sizeof url_b, "%s", custom);
		return;
	}
	/* a wildcard bind is reached through loopback */
	if (!host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
		host = "127.0.0.1";
	snprintf(url_a, sizeof url_a, "http://%s:%d/upstream?name=a&delay_ms=%u",
	         host, port, up_delay);
	snprintf(url_b, sizeof url_b, "http://%s:%d/upstream?name=b&delay_ms=%u",
	         host, port, up_delay);
}

/* ---- the upstream ---------------------------------------------------------- */

static long long delay_of(evapi_req *req)
{
	long long ms;
	if (evapi_req_query_int(req, "delay_ms", &ms) != 0 || ms < 0 ||
	    ms > 60000)
		ms = 0;
	return ms;
}

static void upstream_done(evapi_req *req, int status, void *arg)
{
	const char *name = evapi_req_query(req, "name");
	if (status == 0)
		evapi_reply_json(req, 200,
		                 json_pack("{s:s,s:s,s:I}", "source", "upstream",
		                           "name", name ? name : "",
		                           "delay_ms", (json_int_t)delay_of(req)));
}

static void upstream(evapi_req *req, void *arg)
{
	if (evapi_req_sleep(req, (unsigned)delay_of(req), upstream_done,
	                    NULL) != 0)
		evapi_reply_error(req, 500, "cannot schedule the sleep");
}

/* ---- inline: non-blocking calls -------------------------------------------- */

/* The upstream's JSON, or its text when it is not JSON. */
static json_t *data_of(const evapi_fetch_res *res)
{
	json_t *j = evapi_fetch_res_json(res, NULL);
	return j ? j : json_string(evapi_fetch_res_body(res, NULL));
}

static json_int_t ms_of(const evapi_fetch_res *res)
{
	return (json_int_t)(evapi_fetch_res_ms(res) + 0.5);
}

static void external_done(evapi_req *req, int status,
                          const evapi_fetch_res *res, void *arg)
{
	if (status != 0)
		return; /* the client left; nothing to answer */
	if (!evapi_fetch_res_ok(res)) {
		evapi_reply_upstream_error(req, res);
		return;
	}
	evapi_reply_json(req, 200,
	                 json_pack("{s:o,s:I}", "data", data_of(res),
	                           "elapsed_ms", ms_of(res)));
}

static void external_api(evapi_req *req, void *arg)
{
	evapi_fetch_opts o = { .url = url_a };
	if (evapi_req_fetch(req, &o, external_done, NULL) != 0)
		evapi_reply_error(req, 500, "cannot start the call");
}

static void multi_done(evapi_req *req, int status, size_t n,
                       const evapi_fetch_res *const *res, void *arg)
{
	size_t i;
	if (status == EVAPI_ECANCELED)
		return;
	/* Report the call that failed, not the one fail-fast then aborted;
	 * an upstream error status fails the route as well. */
	for (i = 0; i < n; i++)
		if (status ? evapi_fetch_res_error(res[i]) == status
		           : !evapi_fetch_res_ok(res[i])) {
			evapi_reply_upstream_error(req, res[i]);
			return;
		}
	evapi_reply_json(req, 200,
	                 json_pack("{s:o,s:o}", "data_a", data_of(res[0]),
	                           "data_b", data_of(res[1])));
}

static void multi_fetch(evapi_req *req, void *arg)
{
	evapi_fetch_opts calls[2] = { { .url = url_a }, { .url = url_b } };
	if (evapi_req_gather(req, calls, 2, EVAPI_GATHER_FAIL_FAST, multi_done,
	                     NULL) != 0)
		evapi_reply_error(req, 500, "cannot start the calls");
}

static void fan_out_done(evapi_req *req, int status, size_t n,
                         const evapi_fetch_res *const *res, void *arg)
{
	size_t i, ok = 0;
	double slowest = 0;
	if (status == EVAPI_ECANCELED)
		return;
	for (i = 0; i < n; i++) {
		ok += evapi_fetch_res_ok(res[i]) ? 1 : 0;
		if (evapi_fetch_res_ms(res[i]) > slowest)
			slowest = evapi_fetch_res_ms(res[i]);
	}
	evapi_reply_json(req, ok == n ? 200 : 502,
	                 json_pack("{s:I,s:I,s:I}", "calls", (json_int_t)n,
	                           "ok", (json_int_t)ok, "slowest_ms",
	                           (json_int_t)(slowest + 0.5)));
}

static void fan_out(evapi_req *req, void *arg)
{
	evapi_fetch_opts calls[500];
	long long n = 50;
	int i;
	const char *q = evapi_req_query(req, "n");
	/* FastAPI: n: int = Query(50, ge=1, le=500) */
	if (q && evapi_req_query_int(req, "n", &n) != 0) {
		evapi_reply_validation_error(
			req, "int_parsing", "query", "n",
			"Input should be a valid integer, unable to parse "
			"string as an integer", q);
		return;
	}
	if (n < 1 || n > 500) {
		evapi_reply_validation_error(
			req, n < 1 ? "greater_than_equal" : "less_than_equal",
			"query", "n",
			n < 1 ? "Input should be greater than or equal to 1"
			      : "Input should be less than or equal to 500", q);
		return;
	}
	for (i = 0; i < n; i++)
		calls[i] = (evapi_fetch_opts){ .url = url_a };
	if (evapi_req_gather(req, calls, (size_t)n, 0, fan_out_done, NULL) != 0)
		evapi_reply_error(req, 500, "cannot start the calls");
}

/* ---- pool: blocking calls -------------------------------------------------- */

static void sync_external_api(evapi_req *req, void *arg)
{
	evapi_fetch_opts o = { .url = url_a };
	evapi_fetch_res *res = evapi_fetch_sync(&o);
	if (!res) {
		evapi_reply_error(req, 500, "out of memory");
		return;
	}
	if (evapi_fetch_res_ok(res))
		evapi_reply_json(req, 200,
		                 json_pack("{s:o,s:I}", "data", data_of(res),
		                           "elapsed_ms", ms_of(res)));
	else
		evapi_reply_upstream_error(req, res);
	evapi_fetch_res_free(res);
}

static void sync_multi_fetch(evapi_req *req, void *arg)
{
	evapi_fetch_opts a = { .url = url_a }, b = { .url = url_b };
	evapi_fetch_res *ra = evapi_fetch_sync(&a);
	evapi_fetch_res *rb = ra && evapi_fetch_res_ok(ra) ? evapi_fetch_sync(&b)
	                                                   : NULL;
	if (!ra)
		evapi_reply_error(req, 500, "out of memory");
	else if (!evapi_fetch_res_ok(ra) || !evapi_fetch_res_ok(rb))
		evapi_reply_upstream_error(req, evapi_fetch_res_ok(ra) ? rb : ra);
	else
		evapi_reply_json(req, 200,
		                 json_pack("{s:o,s:o}", "data_a", data_of(ra),
		                           "data_b", data_of(rb)));
	evapi_fetch_res_free(ra);
	evapi_fetch_res_free(rb);
}

void demo_outbound_routes(evapi_app *app, const char *upstream_url,
                          unsigned upstream_delay_ms)
{
	custom = upstream_url;
	up_delay = upstream_delay_ms;
	evapi_app_route(app, EVAPI_GET, "/upstream", EVAPI_INLINE, upstream,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/external-api", EVAPI_INLINE,
	                external_api, NULL);
	evapi_app_route(app, EVAPI_GET, "/multi-fetch", EVAPI_INLINE,
	                multi_fetch, NULL);
	evapi_app_route(app, EVAPI_GET, "/fan-out", EVAPI_INLINE, fan_out,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/sync-external-api", EVAPI_POOL,
	                sync_external_api, NULL);
	evapi_app_route(app, EVAPI_GET, "/sync-multi-fetch", EVAPI_POOL,
	                sync_multi_fetch, NULL);
}
