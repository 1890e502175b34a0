/*
 * evapi/websocket.h: WebSocket routes (RFC 6455), Starlette's shape in C.
 *
 * A WebSocket route is registered with its three callbacks, all run on
 * the loop thread (so they must not block: hand blocking work to the
 * pool with evapi_ws_run_in_pool). The request guard validates the
 * handshake, answers 101 and from then on reads the connection's bytes
 * itself: evhttp never sees them.
 *
 *   on_open     the handshake is valid; not yet answered. Accept
 *               (optionally choosing a subprotocol, adding headers), or
 *               refuse with evapi_ws_close (the client gets 403). Returning
 *               without either accepts with the default subprotocol.
 *   on_message  one whole message (fragments joined, text checked as
 *               UTF-8); `data` is borrowed until the callback returns.
 *   on_close    once, when the session is over (peer's close code, ours,
 *               or 1006 when the connection dropped without one); `ws` is
 *               valid until the callback returns, except for pool jobs
 *               still pending, whose done callbacks get EVAPI_ECANCELED.
 *
 * Everything here is loop-thread-only.
 */
#ifndef EVAPI_WEBSOCKET_H
#define EVAPI_WEBSOCKET_H

#include <stddef.h>
#include <jansson.h>
#include <evapi/common.h>
#include <evapi/app.h>
#include <evapi/request.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One WebSocket session (opaque). */
typedef struct evapi_ws evapi_ws;

/** What a send does when the peer reads too slowly (its queue is over
 *  max_queued). */
typedef enum evapi_ws_full {
	EVAPI_WS_FULL_CLOSE = 0, /* close the session with 1008 (default) */
	EVAPI_WS_FULL_REFUSE = 1 /* the send returns EVAPI_EBUSY; the
	                          * producer decides (evapi_ws_buffered) */
} evapi_ws_full;

/** Options of a WebSocket route. Zero means the default; the arrays are
 *  borrowed and must outlive the app. */
typedef struct evapi_ws_opts {
	/** Subprotocols the route speaks, NULL-terminated, best first: the
	 *  first one the client also offers is chosen. NULL: none. */
	const char *const *subprotocols;
	/** Allowed Origin values (exact, case-insensitive), NULL-terminated;
	 *  another Origin gets 403. NULL: any origin, or none. */
	const char *const *origins;
	size_t max_message;   /**< bytes over all fragments; 0: 1 MiB (1009) */
	int ping_interval_ms; /**< idle ping every; 0: 20000; < 0: never */
	int ping_timeout_ms;  /**< pong wait before closing 1011; 0: 20000 */
	size_t max_queued;    /**< bytes queued to a slow reader (messages
	                       *   and pongs); 0: 1 MiB */
	evapi_ws_full on_full;
} evapi_ws_opts;

typedef void (*evapi_ws_open_cb)(evapi_ws *ws, void *arg);
typedef void (*evapi_ws_message_cb)(evapi_ws *ws, int binary,
                                    const char *data, size_t len, void *arg);
typedef void (*evapi_ws_close_cb)(evapi_ws *ws, int code, const char *reason,
                                  void *arg);

/**
 * Registers a WebSocket route (`@app.websocket(path)`); `path` may have
 * {parameters}. `opts` is copied (may be NULL); any callback may be NULL.
 * Returns 0, EVAPI_EINVAL (bad template), EVAPI_EEXIST (path already a
 * WebSocket route), EVAPI_ESTATE (app running) or EVAPI_ENOMEM.
 */
EVAPI_EXPORT int evapi_app_websocket(evapi_app *app, const char *path,
                                     const evapi_ws_opts *opts,
                                     evapi_ws_open_cb on_open,
                                     evapi_ws_message_cb on_message,
                                     evapi_ws_close_cb on_close, void *arg);

/**
 * Accepts the handshake (`await websocket.accept(subprotocol, headers)`):
 * only from on_open. `subprotocol`: one the client offered, or NULL for
 * the route's default choice. `headers`: name, value, name, value, ...,
 * NULL; copied. Returns 0, EVAPI_EINVAL (subprotocol not offered, bad
 * header) or EVAPI_ESTATE (not in on_open).
 */
EVAPI_EXPORT int evapi_ws_accept(evapi_ws *ws, const char *subprotocol,
                                 const char *const *headers);

/** Sends a text message (copied; must be UTF-8: else EVAPI_EINVAL).
 *  Returns 0, EVAPI_EGONE (closing or closed), EVAPI_EBUSY (queue full
 *  with EVAPI_WS_FULL_REFUSE). From on_open it accepts first. */
EVAPI_EXPORT int evapi_ws_send_text(evapi_ws *ws, const char *text);
/** Sends a binary message (copied). Returns as evapi_ws_send_text. */
EVAPI_EXPORT int evapi_ws_send_bytes(evapi_ws *ws, const void *data,
                                     size_t len);
/** Sends `v` as a text message; steals `v`. */
EVAPI_EXPORT int evapi_ws_send_json(evapi_ws *ws, json_t *v);
/** Starts the close handshake with `code` (1000, 1001, 1008, 1011,
 *  1012-1014, 3000-4999 ...) and a `reason` (UTF-8, cut to 123 bytes on
 *  a character boundary; may be NULL). From on_open, refuses the
 *  handshake with 403. Returns 0, EVAPI_EINVAL (a code one may not send,
 *  a reason that is not UTF-8) or EVAPI_EGONE (already closing). */
EVAPI_EXPORT int evapi_ws_close(evapi_ws *ws, int code, const char *reason);

/** The route's {name} parameter, decoded; borrowed until on_close
 *  returns. NULL when absent. */
EVAPI_EXPORT const char *evapi_ws_param(const evapi_ws *ws, const char *name);
/** A request header of the handshake (first of its name); borrowed as
 *  evapi_ws_param. */
EVAPI_EXPORT const char *evapi_ws_header(const evapi_ws *ws,
                                         const char *name);
/** The path of the handshake request (raw, without the query). */
EVAPI_EXPORT const char *evapi_ws_path(const evapi_ws *ws);
/** The chosen subprotocol, or NULL. */
EVAPI_EXPORT const char *evapi_ws_subprotocol(const evapi_ws *ws);
/** The session's user data (NULL at first); the app frees it, usually in
 *  on_close. */
EVAPI_EXPORT void evapi_ws_set_data(evapi_ws *ws, void *data);
EVAPI_EXPORT void *evapi_ws_data(const evapi_ws *ws);
EVAPI_EXPORT evapi_app *evapi_ws_app(const evapi_ws *ws);
/** Bytes queued to the peer and not yet taken by the kernel. */
EVAPI_EXPORT size_t evapi_ws_buffered(const evapi_ws *ws);

/** Continuation of evapi_ws_run_in_pool, on the loop: status 0, or
 *  EVAPI_ECANCELED when the session ended meanwhile (sends then return
 *  EVAPI_EGONE; `ws` stays valid until this returns). */
typedef void (*evapi_ws_done_cb)(evapi_ws *ws, int status, void *arg);

/**
 * Runs `work(arg)` on a pool worker, then `done(ws, status, arg)` on the
 * loop, exactly once (`await anyio.to_thread.run_sync`). `work` must not
 * touch `ws`. Returns 0, EVAPI_EBUSY (pool queue full: done never runs),
 * EVAPI_EGONE or EVAPI_EINVAL.
 */
EVAPI_EXPORT int evapi_ws_run_in_pool(evapi_ws *ws, evapi_work_cb work,
                                      evapi_ws_done_cb done, void *arg);

#ifdef __cplusplus
}
#endif
#endif
