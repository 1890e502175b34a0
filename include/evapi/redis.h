/*
 * evapi/redis.h: Redis on the loop (redis-py's asyncio client, or
 * aioredis, in FastAPI's place), through hiredis and its libevent
 * adapter on the app's event base.
 *
 * With config.redis_url set ("redis://[[user]:password@]host[:port][/db]",
 * port 6379 and db 0 by default) the app keeps two connections:
 *
 * - one for commands (evapi_req_redis_command, evapi_app_redis_command),
 *   opened on the first command and reopened on demand after it is lost;
 * - one for SUBSCRIBE/PSUBSCRIBE (evapi_app_redis_subscribe), opened
 *   with the first subscription (the app's own, for the broadcast
 *   bridge of evapi/channel.h, at evapi_app_new) and kept open: when
 *   the server goes away it is reopened (100 ms doubling to 2 s between
 *   attempts) and every subscription sent again. Messages published
 *   while it is down are lost, as Redis pub/sub always loses them for a
 *   subscriber that is not connected.
 *
 * Connecting waits at most redis_connect_timeout_ms; a command runs at
 * most redis_command_timeout_ms (EVAPI_ETIMEDOUT, 504). Redis answers a
 * connection's commands in order, so a command over its timeout holds
 * every later one behind it: the command connection is then closed
 * (the commands still on it fail with EVAPI_EUNAVAIL) and reopened by
 * the next command. A command belongs to its request: if the client
 * leaves, the deadline passes or the app cuts the request, the
 * continuation is told EVAPI_ECANCELED at once (Redis has no way to
 * take a sent command back; its reply is dropped when it comes). While
 * the server is down, commands fail with EVAPI_EUNAVAIL (503) at once
 * for the backoff's duration, then the next command tries to connect.
 *
 * The host is given to connect() as it is: use an address (127.0.0.1);
 * a name is resolved by hiredis with getaddrinfo, which blocks the loop.
 *
 * Everything here is loop-thread-only unless it says otherwise.
 */
#ifndef EVAPI_REDIS_H
#define EVAPI_REDIS_H

#include <stddef.h>

#include <jansson.h>

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A Redis reply, or the failure of a command. Opaque; read it with the
 *  accessors below. Every pointer they return is borrowed, as the
 *  reply. */
typedef struct evapi_redis_reply evapi_redis_reply;

/** The kinds of reply Redis sends (RESP2). */
typedef enum evapi_redis_type {
	EVAPI_REDIS_NONE = 0,   /* the command failed: no reply */
	EVAPI_REDIS_STRING,     /* bulk string: str, len */
	EVAPI_REDIS_ARRAY,      /* elements */
	EVAPI_REDIS_INTEGER,    /* integer */
	EVAPI_REDIS_NIL,        /* a null bulk string or array */
	EVAPI_REDIS_STATUS,     /* "+OK": str */
	EVAPI_REDIS_ERROR       /* "-ERR ...": str (also the error) */
} evapi_redis_type;

/** 0 when Redis answered with anything but an error reply; else
 *  EVAPI_EUPSTREAM (an error reply: evapi_redis_reply_str says which),
 *  EVAPI_EUNAVAIL (no connection to Redis, or it went away before the
 *  reply), EVAPI_ETIMEDOUT (over redis_command_timeout_ms) or
 *  EVAPI_ECANCELED (its request went away or the app stopped). */
EVAPI_EXPORT int evapi_redis_reply_error(const evapi_redis_reply *r);
EVAPI_EXPORT evapi_redis_type evapi_redis_reply_type(const evapi_redis_reply *r);
/** The bytes of a string, status or error reply (NUL-terminated; *len,
 *  when not NULL, gets their count), or NULL for any other kind. */
EVAPI_EXPORT const char *evapi_redis_reply_str(const evapi_redis_reply *r,
                                               size_t *len);
/** An integer reply's value, else 0. */
EVAPI_EXPORT long long evapi_redis_reply_integer(const evapi_redis_reply *r);
/** Elements of an array reply (0 for any other kind). */
EVAPI_EXPORT size_t evapi_redis_reply_elements(const evapi_redis_reply *r);
/** Element `i` of an array reply, or NULL when out of range. */
EVAPI_EXPORT const evapi_redis_reply *
evapi_redis_reply_element(const evapi_redis_reply *r, size_t i);
/** What went wrong, for logs: Redis's error or ours, or "". */
EVAPI_EXPORT const char *evapi_redis_reply_errmsg(const evapi_redis_reply *r);
/** Wall time of the command in milliseconds. */
EVAPI_EXPORT double evapi_redis_reply_ms(const evapi_redis_reply *r);
/** The reply as JSON: string and status -> string (bytes that are not
 *  UTF-8: null), integer -> integer, nil -> null, array -> array, error
 *  -> {"error": text}. Returns new (json_decref), or NULL for a failed
 *  command or out of memory. */
EVAPI_EXPORT json_t *evapi_redis_reply_json(const evapi_redis_reply *r);

/** The status a route should answer for a failed command: 0 for
 *  success, 503 for EVAPI_EUNAVAIL and EVAPI_ECANCELED, 504 for
 *  EVAPI_ETIMEDOUT, 500 for an error reply. */
EVAPI_EXPORT int evapi_redis_reply_http_status(const evapi_redis_reply *r);

/** Answers a failed command FastAPI-style with
 *  evapi_redis_reply_http_status(r): 503 {"detail":"Redis unavailable"}
 *  with Retry-After: 1; 504 {"detail":"Redis timed out"}; 500
 *  {"detail":"Internal Server Error"}. Redis's message goes to the log,
 *  never into the reply. Returns what the evapi_reply_* functions
 *  return, or EVAPI_EINVAL when the command succeeded. */
EVAPI_EXPORT int evapi_reply_redis_error(evapi_req *req,
                                         const evapi_redis_reply *r);

/** Continuation of evapi_req_redis_command, on the loop, exactly once.
 *  `r` is borrowed until the callback returns. `status` is 0 (look at
 *  the reply, which may hold an error), or EVAPI_ECANCELED when the
 *  request went away first: nothing can be replied then. */
typedef void (*evapi_redis_cb)(evapi_req *req, int status,
                               const evapi_redis_reply *r, void *arg);

/** Sends one command of `argc` (1..1024) arguments on behalf of `req`,
 *  which it keeps alive: argv[i] of argvlen[i] bytes (argvlen NULL:
 *  each argv[i] is a NUL-terminated string). Arguments are copied and
 *  sent apart (never parsed from a format), so no value can change the
 *  command. Returns 0 (then `cb` runs once, on the loop; a server that
 *  is down, a timeout or an error reply arrive in the reply), or
 *  EVAPI_EINVAL, EVAPI_ENOMEM, EVAPI_EGONE, EVAPI_ETHREAD, EVAPI_ESTATE
 *  (no redis_url configured, or the app is being freed) (then `cb`
 *  never runs). Loop thread only: in an inline handler or
 *  continuation. */
EVAPI_EXPORT int evapi_req_redis_command(evapi_req *req, int argc,
                                         const char *const *argv,
                                         const size_t *argvlen,
                                         evapi_redis_cb cb, void *arg);

/** Continuation of evapi_app_redis_command, on the loop, exactly once. */
typedef void (*evapi_app_redis_cb)(evapi_app *app,
                                   const evapi_redis_reply *r, void *arg);

/** A command bound to no request (a startup hook, a timer, a message
 *  callback). Same arguments and returns as evapi_req_redis_command;
 *  `cb` may be NULL (the reply is dropped). Commands still waiting when
 *  the app stops are reported as EVAPI_ECANCELED. Loop thread only:
 *  before evapi_app_run, the thread that created the app. */
EVAPI_EXPORT int evapi_app_redis_command(evapi_app *app, int argc,
                                         const char *const *argv,
                                         const size_t *argvlen,
                                         evapi_app_redis_cb cb, void *arg);

/** A message of a subscription: `channel` (the pattern's match for a
 *  pattern subscription) and `payload` of `len` bytes (NUL-terminated)
 *  are borrowed until the callback returns. */
typedef void (*evapi_redis_message_cb)(evapi_app *app, const char *channel,
                                       const char *payload, size_t len,
                                       void *arg);

/** Subscribes `cb` to the Redis channel `channel` (copied): every
 *  message published there calls it, in the lane given: EVAPI_INLINE
 *  on the loop (it must not block: a blocking callback stalls every
 *  request, and the watchdog names it, kind "redis message", with the
 *  channel), or EVAPI_POOL on a worker of the pool, with copies of the
 *  channel and payload, several messages at once on several workers;
 *  a pool callback may call only the thread-safe functions (the app
 *  pointer is for evapi_app_post and the like). A message that finds
 *  the pool's queue full is dropped and logged. Subscriptions last
 *  until evapi_app_free and survive a Redis restart. Returns 0,
 *  EVAPI_EINVAL, EVAPI_ENOMEM, EVAPI_ETHREAD, or EVAPI_ESTATE (no
 *  redis_url, or the app is being freed). Loop thread only (before
 *  evapi_app_run: the creating thread; a startup hook, a handler). */
EVAPI_EXPORT int evapi_app_redis_subscribe(evapi_app *app,
                                           const char *channel,
                                           evapi_lane lane,
                                           evapi_redis_message_cb cb,
                                           void *arg);
/** The same for a glob-style pattern ("news.*"): PSUBSCRIBE. */
EVAPI_EXPORT int evapi_app_redis_psubscribe(evapi_app *app,
                                            const char *pattern,
                                            evapi_lane lane,
                                            evapi_redis_message_cb cb,
                                            void *arg);

/* ---- on the pool (blocking) --------------------------------------------- */

/** Runs one command like evapi_req_redis_command, but blocking, on a
 *  connection of the calling thread's own (redis-py's place): for
 *  pool-lane handlers, evapi_req_run_in_pool work and application
 *  threads. Each thread opens one connection on its first command and
 *  keeps it (a pool worker's is closed when the worker exits, as the
 *  app stops). The same limits hold: connecting waits at most
 *  redis_connect_timeout_ms, a command at most redis_command_timeout_ms
 *  (EVAPI_ETIMEDOUT; the connection is then closed, and reopened by the
 *  next call, as after any transport error).
 *
 *  On return `*out` is a new reply (evapi_redis_reply_free), read with
 *  the same accessors and evapi_reply_redis_error as on the loop, and
 *  the function returns its evapi_redis_reply_error: 0,
 *  EVAPI_EUPSTREAM, EVAPI_EUNAVAIL or EVAPI_ETIMEDOUT. It returns
 *  EVAPI_ETHREAD on a loop thread (a blocking command there stalls
 *  every connection of the app), EVAPI_EINVAL for bad arguments,
 *  EVAPI_ESTATE without redis_url and EVAPI_ENOMEM; then `*out` is
 *  NULL. Thread-safe: yes (any thread but a loop thread). */
EVAPI_EXPORT int evapi_req_redis_command_sync(evapi_req *req, int argc,
                                              const char *const *argv,
                                              const size_t *argvlen,
                                              evapi_redis_reply **out);
/** The same for a thread with no request at hand. Thread-safe: yes (not
 *  a loop thread). */
EVAPI_EXPORT int evapi_app_redis_command_sync(evapi_app *app, int argc,
                                              const char *const *argv,
                                              const size_t *argvlen,
                                              evapi_redis_reply **out);
/** Frees a reply of the blocking calls. NULL is a no-op. */
EVAPI_EXPORT void evapi_redis_reply_free(evapi_redis_reply *r);

/** 1 while the subscription connection is up and every subscription has
 *  been confirmed by the server, else 0 (also without redis_url).
 *  Thread-safe: yes. */
EVAPI_EXPORT int evapi_app_redis_subscribed(const evapi_app *app);

#ifdef __cplusplus
}
#endif
#endif
