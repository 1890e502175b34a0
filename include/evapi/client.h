/*
 * evapi/client.h: outbound HTTP.
 *
 * Two ways to call another service, one per lane:
 *
 * - On the loop (inline routes; httpx.AsyncClient): evapi_req_fetch and
 *   evapi_req_gather start transfers on the app's shared libcurl multi
 *   handle, driven by the app's event loop, and return at once. The
 *   continuation runs later on the loop. Thousands of calls can be in
 *   flight without a thread each. The calls belong to the request: if the
 *   client leaves or the request's deadline passes, they are aborted and
 *   the continuation is told EVAPI_ECANCELED.
 * - On a worker (pool routes; `requests` in a plain `def` route):
 *   evapi_fetch_sync blocks the calling thread until the reply is in. It
 *   is refused on a loop thread, where it would stall every connection.
 *
 * Every call has a total timeout, a connect timeout, a low-speed abort and
 * a cap on the reply size, on by default. Connections are reused (per app
 * on the loop; per thread for evapi_fetch_sync), and the number of open
 * outbound connections per app is bounded (evapi_config
 * outbound_max_connections); calls beyond it wait their turn.
 *
 * A transport failure is reported in the result, not as an HTTP status:
 * evapi_fetch_res_error() is 0 when a reply arrived (whatever its status),
 * else EVAPI_ETIMEDOUT, EVAPI_ECONNREFUSED, EVAPI_ECONNRESET, EVAPI_EPROTO,
 * EVAPI_ETOOBIG, EVAPI_EUPSTREAM or EVAPI_ECANCELED.
 * evapi_reply_upstream_error() turns a failure into 502/504 with a
 * FastAPI-shaped body.
 */
#ifndef EVAPI_CLIENT_H
#define EVAPI_CLIENT_H

#include <stddef.h>

#include <jansson.h>

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What to send. Every pointer is borrowed for the duration of the call
 *  that receives it (the call copies what it keeps). Zero means "the
 *  default" for every number. ABI: no promise before 1.0 (see
 *  evapi/common.h); zero-initialise it and set members by name. */
typedef struct evapi_fetch_opts {
	const char *url;              /* http:// or https:// only */
	const char *method;           /* [GET, or POST when body is set] */
	const char *const *headers;   /* NULL-terminated "Name: value" list */
	const void *body;             /* request body, or NULL */
	size_t body_len;
	unsigned timeout_ms;          /* [app: outbound_timeout_ms, 10000]
	                                 whole call, connect included */
	unsigned connect_timeout_ms;  /* [app: outbound_connect_timeout_ms,
	                                 3000] */
	unsigned low_speed_time_ms;   /* [10000] abort if under 1 byte/s
	                                 that long (whole seconds, rounded
	                                 up) */
	size_t max_response_bytes;    /* [app: outbound_max_response_bytes,
	                                 8 MiB] headers + body */
	int follow_redirects;         /* [0] up to 5 when set */
} evapi_fetch_opts;

/** The outcome of one call. Opaque; read it with the accessors below. */
typedef struct evapi_fetch_res evapi_fetch_res;

/** 0 when a reply arrived (any status), else an EVAPI_E* transport error. */
EVAPI_EXPORT int evapi_fetch_res_error(const evapi_fetch_res *res);
/** libcurl's description of the failure, or "" (borrowed, as `res`). */
EVAPI_EXPORT const char *evapi_fetch_res_errmsg(const evapi_fetch_res *res);
/** The upstream's HTTP status, or 0 when no reply arrived. */
EVAPI_EXPORT int evapi_fetch_res_status(const evapi_fetch_res *res);
/** 1 when a reply arrived with a 2xx status. */
EVAPI_EXPORT int evapi_fetch_res_ok(const evapi_fetch_res *res);
/** The reply body, NUL-terminated (borrowed, as `res`); `len` may be NULL.
 *  Never NULL: an empty string when there is no body. */
EVAPI_EXPORT const char *evapi_fetch_res_body(const evapi_fetch_res *res,
                                              size_t *len);
/** First value of a reply header, case-insensitive (borrowed, as `res`),
 *  or NULL. */
EVAPI_EXPORT const char *evapi_fetch_res_header(const evapi_fetch_res *res,
                                                const char *name);
/** Parses the body as JSON. Returns new (json_decref) or NULL, with the
 *  reason in `err` when it is not NULL. */
EVAPI_EXPORT json_t *evapi_fetch_res_json(const evapi_fetch_res *res,
                                          json_error_t *err);
/** Wall time of the call in milliseconds, queueing included. */
EVAPI_EXPORT double evapi_fetch_res_ms(const evapi_fetch_res *res);
/** The status a gateway should answer for this result: 0 for a 2xx reply,
 *  504 for EVAPI_ETIMEDOUT, 502 for any other failure or a non-2xx
 *  upstream status. */
EVAPI_EXPORT int evapi_fetch_res_gateway_status(const evapi_fetch_res *res);

/** Replies evapi_fetch_res_gateway_status(res) with {"detail": "..."}
 *  naming the failure (never the upstream's URL or body). Returns what
 *  the evapi_reply_* functions return, or EVAPI_EINVAL for a 2xx result.
 *  Either lane. */
EVAPI_EXPORT int evapi_reply_upstream_error(evapi_req *req,
                                            const evapi_fetch_res *res);

/* ---- on the loop -------------------------------------------------------- */

/** Continuation of evapi_req_fetch, on the loop, exactly once. `res` is
 *  borrowed until the callback returns. `status` is 0 (look at the
 *  result), or EVAPI_ECANCELED when the request went away first: the
 *  client left, the deadline passed or the app cut it; nothing can be
 *  replied then, and a call that was still running reports
 *  EVAPI_ECANCELED in its result. */
typedef void (*evapi_fetch_cb)(evapi_req *req, int status,
                               const evapi_fetch_res *res, void *arg);

/** Starts one call on behalf of `req` (which it keeps alive) and returns.
 *  Returns 0 (then `cb` runs once, on the loop), or EVAPI_EINVAL,
 *  EVAPI_ENOMEM, EVAPI_EGONE, EVAPI_ETHREAD, EVAPI_ESTATE (the app is
 *  being freed) (then `cb` never runs). Loop thread only: in an inline
 *  handler or continuation. The timeout counts from this call, including
 *  any wait for a free connection. */
EVAPI_EXPORT int evapi_req_fetch(evapi_req *req, const evapi_fetch_opts *opts,
                                 evapi_fetch_cb cb, void *arg);

/** evapi_req_gather flags. */
#define EVAPI_GATHER_FAIL_FAST 1u /* first transport error ends the batch */

/** Continuation of evapi_req_gather. `res[i]` is the result of
 *  `calls[i]`; the array and results are borrowed until the callback
 *  returns. `status` is 0 when every call got a reply, EVAPI_ECANCELED
 *  when the request went away, or (with EVAPI_GATHER_FAIL_FAST) the first
 *  transport error, the calls still running then being aborted with
 *  EVAPI_ECANCELED. Without the flag every call runs to its own end and
 *  `status` is the first error in index order, or 0. */
typedef void (*evapi_gather_cb)(evapi_req *req, int status, size_t n,
                                const evapi_fetch_res *const *res,
                                void *arg);

/** Starts `n` calls at once (asyncio.gather) and continues once, when all
 *  are done. Same returns and lifetime rules as evapi_req_fetch. */
EVAPI_EXPORT int evapi_req_gather(evapi_req *req, const evapi_fetch_opts *calls,
                                  size_t n, unsigned flags,
                                  evapi_gather_cb cb, void *arg);

/** Continuation of evapi_app_fetch, on the loop, exactly once. */
typedef void (*evapi_app_fetch_cb)(evapi_app *app, const evapi_fetch_res *res,
                                   void *arg);

/** A call bound to no request (from startup code, a timer, a background
 *  task). Same returns as evapi_req_fetch. Calls still running when the
 *  app stops are aborted and reported as EVAPI_ECANCELED; a stopping app
 *  refuses new ones with EVAPI_ESTATE. Loop thread only: before
 *  evapi_app_run, the thread that created the app, and not while another
 *  thread is entering evapi_app_run. */
EVAPI_EXPORT int evapi_app_fetch(evapi_app *app, const evapi_fetch_opts *opts,
                                 evapi_app_fetch_cb cb, void *arg);

/* ---- on a worker -------------------------------------------------------- */

/** Makes the call and blocks until it is over; for pool handlers and
 *  other threads of the application. Returns new (evapi_fetch_res_free);
 *  NULL only when out of memory. An invalid call or a call from a loop
 *  thread returns a result whose error is EVAPI_EINVAL or EVAPI_ETHREAD.
 *  Connections are kept per thread and reused. Defaults: the app's
 *  outbound_* settings in a pool handler or evapi_req_run_in_pool work
 *  function, else the built-in ones listed for evapi_fetch_opts.
 *  Thread-safe: yes. */
EVAPI_EXPORT evapi_fetch_res *evapi_fetch_sync(const evapi_fetch_opts *opts);
/** Frees a result of evapi_fetch_sync. NULL is a no-op. Thread-safe: yes. */
EVAPI_EXPORT void evapi_fetch_res_free(evapi_fetch_res *res);

#ifdef __cplusplus
}
#endif
#endif
