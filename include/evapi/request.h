/*
 * evapi/request.h: reading a request, replying to it, and continuing
 * later without blocking the loop.
 *
 * A request is owned by the framework. Accessors return borrowed strings
 * that live as long as the request. In a pool handler only the accessors
 * and the reply functions may be used (the request is an immutable
 * snapshot there); evapi_req_sleep and evapi_req_run_in_pool are
 * loop-thread-only.
 */
#ifndef EVAPI_REQUEST_H
#define EVAPI_REQUEST_H

#include <stddef.h>
#include <jansson.h>
#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- reading ---------------------------------------------------------- */

/** The method of the request (one evapi_method bit). */
EVAPI_EXPORT evapi_method evapi_req_method(const evapi_req *req);

/** The percent-decoded path, e.g. "/users/42". Borrowed. */
EVAPI_EXPORT const char *evapi_req_path(const evapi_req *req);

/** The route template that matched, e.g. "/users/{user_id}". Borrowed. */
EVAPI_EXPORT const char *evapi_req_route(const evapi_req *req);

/** A process-unique id for the request (for logs and correlation). */
EVAPI_EXPORT unsigned long long evapi_req_id(const evapi_req *req);

/** When the request arrived: CLOCK_MONOTONIC in microseconds. */
EVAPI_EXPORT long long evapi_req_start_us(const evapi_req *req);

/** Path parameter `name` (decoded), or NULL. Borrowed. */
EVAPI_EXPORT const char *evapi_req_param(const evapi_req *req,
                                         const char *name);

/** Query parameter `name` (decoded, '+' is a space), or NULL. Borrowed.
 *  Repeats: when the name is sent more than once (?n=1&n=2) the last
 *  one wins, as FastAPI reads a scalar parameter; evapi_req_query_int
 *  and a declared route's evapi_req_get_* follow the same rule. */
EVAPI_EXPORT const char *evapi_req_query(const evapi_req *req,
                                         const char *name);

/** Request header `name` (case-insensitive), or NULL. Borrowed. A
 *  header sent more than once: the last one wins, as for the query. */
EVAPI_EXPORT const char *evapi_req_header(const evapi_req *req,
                                          const char *name);

/**
 * Parses `text` (may be NULL) as a whole base-10 integer: optional sign,
 * digits only, no spaces. Returns 0 and sets *out, EVAPI_ENOENT when
 * text is NULL, EVAPI_EINVAL when it is not an integer, EVAPI_ERANGE
 * when it does not fit. Thread-safe: yes.
 */
EVAPI_EXPORT int evapi_parse_int(const char *text, long long *out);

/** evapi_parse_int of a path parameter. */
EVAPI_EXPORT int evapi_req_param_int(const evapi_req *req, const char *name,
                                     long long *out);

/** evapi_parse_int of a query parameter. */
EVAPI_EXPORT int evapi_req_query_int(const evapi_req *req, const char *name,
                                     long long *out);

/** The raw body; *len receives its size. Borrowed; never NULL (an empty
 *  body is ""), and NUL-terminated for convenience. */
EVAPI_EXPORT const char *evapi_req_body(const evapi_req *req, size_t *len);

/**
 * The body parsed as JSON. On success returns 0 and sets *out to a
 * borrowed value that lives as long as the request. On invalid JSON it
 * answers 422 in FastAPI's `json_invalid` shape itself and returns
 * EVAPI_EJSON: the handler must just return.
 */
EVAPI_EXPORT int evapi_req_json(evapi_req *req, json_t **out);

/* ---- replying --------------------------------------------------------- */
/*
 * Every reply function answers the request once. A second reply returns
 * EVAPI_EALREADY; a reply on the loop after the client left or the
 * deadline passed returns EVAPI_EGONE. Either way a stolen argument is
 * freed. From a pool handler the reply is queued and sent by the loop when
 * the handler returns (and dropped then if the client has left). Statuses
 * below 200 are refused; 204 and 304 are sent without a body. Thread-safe:
 * only on the thread running the handler or continuation that owns `req`
 * (elsewhere EVAPI_ETHREAD).
 */

/** Adds a response header. Both strings are copied. In a handler or
 *  continuation, before the reply: the header goes out with the reply.
 *  In a middleware's after hook (evapi/middleware.h): it is added to the
 *  reply being sent. CR or LF anywhere, and the framing headers
 *  Content-Length and Transfer-Encoding (evapi sets those), are refused
 *  with EVAPI_EINVAL. */
EVAPI_EXPORT int evapi_reply_add_header(evapi_req *req, const char *name,
                                        const char *value);

/** Replies with `body` serialised as compact JSON (reals in the shortest
 *  form that reads back as the same double: 9.571, not
 *  9.5709999999999997). Steals `body`. A NULL `body` (typically a failed
 *  json_pack) is a bug in the caller: it is logged with the route and
 *  answered 500, and the call returns EVAPI_EINVAL. */
EVAPI_EXPORT int evapi_reply_json(evapi_req *req, int status, json_t *body);

/** Replies with a text/plain body (copied). */
EVAPI_EXPORT int evapi_reply_text(evapi_req *req, int status,
                                  const char *text);

/** Replies with `len` bytes (copied) of `content_type` (NULL: none). */
EVAPI_EXPORT int evapi_reply_bytes(evapi_req *req, int status,
                                   const char *content_type,
                                   const void *data, size_t len);

/** Replies FastAPI's HTTPException body: {"detail": "<detail>"}. */
EVAPI_EXPORT int evapi_reply_error(evapi_req *req, int status,
                                   const char *detail);

/** Replies {"detail": <detail>} with any JSON detail. Steals `detail`. */
EVAPI_EXPORT int evapi_reply_error_json(evapi_req *req, int status,
                                        json_t *detail);

/**
 * Builds the body of an error reply for `status` (FastAPI's exception
 * handlers, for the body's shape). `detail` is what {"detail": ...}
 * would hold (a string, or the list of a 422), borrowed for the call
 * (json_incref it to keep it in the body). Returns the body to send
 * (new: evapi steals it) or NULL for the default {"detail": detail}.
 *
 * `req` is the request (read it: path, route, id; do not reply or add
 * headers from here), or NULL for the request guard's replies (400, 408,
 * 413, 414, 431, 501, 505), which are about the connection and sent
 * before any request exists. Runs on the thread that replies: the loop,
 * or a pool worker for a pool handler's own error replies; so it must be
 * thread-safe and must not block.
 */
typedef json_t *(*evapi_error_handler_cb)(evapi_req *req, int status,
                                          json_t *detail, void *arg);

/**
 * Sets the handler that shapes every error reply with `status`
 * (400..599), or with any error status that has no handler of its own
 * when `status` is 0: evapi's own (404, 405, 413, 415, 422, 500 for a
 * handler that did not reply, 502/504 for upstream errors, 503 for a
 * full pool, 504 at the request deadline, the guard's), and the
 * application's own evapi_reply_error* calls. A NULL `cb` removes the
 * handler. `arg` is borrowed for the app's life. Returns 0,
 * EVAPI_EINVAL, EVAPI_ENOMEM or EVAPI_ESTATE (app running).
 */
EVAPI_EXPORT int evapi_app_error_handler(evapi_app *app, int status,
                                         evapi_error_handler_cb cb,
                                         void *arg);

/**
 * Replies for a handler whose work failed with the evapi error code
 * `code` (what says which step: "database", "render"): logs an ERROR line
 * with the route, the step, the code's description and the request id,
 * and answers without internal details: 503 (with Retry-After: 1) for
 * EVAPI_EBUSY and EVAPI_EUNAVAIL, 504 for EVAPI_ETIMEDOUT, else 500, in
 * the app's error shape. Returns as evapi_reply_error.
 */
EVAPI_EXPORT int evapi_reply_failed(evapi_req *req, int code,
                                    const char *what);

/**
 * Replies 422 with one FastAPI validation item:
 * {"detail":[{"type":type,"loc":[where,name],"msg":msg,"input":input}]}
 * `where` is "path", "query", "header" or "body"; `input` may be NULL
 * (then JSON null). All strings are copied.
 */
EVAPI_EXPORT int evapi_reply_validation_error(evapi_req *req,
                                              const char *type,
                                              const char *where,
                                              const char *name,
                                              const char *msg,
                                              const char *input);

/* ---- continuing later (inline lane, loop thread only) ----------------- */
/*
 * Each call below holds a reference on the request until its callback
 * has run. If the call returns an error its callback never runs; if it
 * returns 0 the callback runs exactly once, on the loop thread, with
 * status 0 or EVAPI_ECANCELED (client gone, deadline passed, app
 * stopping). After a cancelled callback any reply returns EVAPI_EGONE, but
 * the callback still runs so it can free `arg`.
 */

/** Continuation of evapi_req_sleep. */
typedef void (*evapi_sleep_cb)(evapi_req *req, int status, void *arg);

/** Non-blocking sleep (`await asyncio.sleep(ms / 1000)`): returns at once;
 *  `cb` runs on the loop after `ms` milliseconds. */
EVAPI_EXPORT int evapi_req_sleep(evapi_req *req, unsigned ms,
                                 evapi_sleep_cb cb, void *arg);

/** Work run on a pool worker by evapi_req_run_in_pool. It must not touch
 *  `req` or any evapi object; it communicates through `arg`. */
typedef void (*evapi_work_cb)(void *arg);

/** Continuation of evapi_req_run_in_pool, on the loop. */
typedef void (*evapi_done_cb)(evapi_req *req, int status, void *arg);

/**
 * Runs `work(arg)` on the pool, then `done(req, status, arg)` on the loop
 * (`await anyio.to_thread.run_sync(work)`). Returns EVAPI_EBUSY when the
 * pool queue is full (the caller decides; usually a 503).
 */
EVAPI_EXPORT int evapi_req_run_in_pool(evapi_req *req, evapi_work_cb work,
                                       evapi_done_cb done, void *arg);

#ifdef __cplusplus
}
#endif
#endif
