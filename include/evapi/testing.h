/*
 * evapi/testing.h: a test client for evapi apps (FastAPI's TestClient).
 *
 * evapi_test_start runs an app in the calling process, on its own thread,
 * on 127.0.0.1 and a free port; requests are built in one call and
 * answered as a response object; streams (chunked replies, server-sent
 * events) are read piece by piece or event by event; WebSocket routes
 * are spoken to through a client session (evapi_test_ws_connect). Every
 * call that waits has a timeout (EVAPI_TEST_TIMEOUT_MS unless told
 * otherwise), so a route that never answers fails the test instead of
 * hanging it.
 *
 *     evapi_test *tc = evapi_test_start(make_app());
 *     evapi_test_response *r = evapi_test_get(tc, "/items/1");
 *     assert(evapi_test_status(r) == 200);
 *     assert(json_integer_value(json_object_get(evapi_test_json(r), "id")) == 1);
 *     evapi_test_response_free(r);
 *     assert(evapi_test_stop(tc) == 0);
 *
 * Requests go over real loopback sockets with libcurl's easy interface
 * on the calling thread (never the app's loop thread), so what the test
 * sees is what a client sees: the request guard, framing, keep-alive.
 * A WebSocket session is a plain loopback socket of its own, its frames
 * written and parsed by evapi's own framing code in client mode.
 *
 * This header is not part of the umbrella <evapi.h>: include it in test
 * programs only. Link with -levapi as usual.
 */
#ifndef EVAPI_TESTING_H
#define EVAPI_TESTING_H

#include <stddef.h>

#include <jansson.h>

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The default timeout of every call that waits, in milliseconds. */
#define EVAPI_TEST_TIMEOUT_MS 10000

typedef struct evapi_test evapi_test;
typedef struct evapi_test_response evapi_test_response;
typedef struct evapi_test_stream evapi_test_stream;

/* ---- the app --------------------------------------------------------- */

/**
 * Runs `app` on a new thread, as evapi_app_run does, and returns once its
 * startup hooks have run and it serves (the hooks are not timed: one that
 * never returns holds this call). Unless the app is already
 * listening (evapi_app_listen), it is bound to 127.0.0.1 on a free port
 * whatever its config says, and never handles SIGINT/SIGTERM. Steals
 * `app` (freed by evapi_test_stop, or here on failure). Returns new (stop
 * with evapi_test_stop), or NULL when the app could not bind or a startup
 * hook failed (the app's log says which) or on bad arguments. Call it on
 * the thread that created the app.
 */
EVAPI_EXPORT evapi_test *evapi_test_start(evapi_app *app);

/**
 * Stops the app gracefully (evapi_app_stop), waits for its thread (the
 * shutdown hooks have run when this returns), frees the app and `tc`.
 * Close every stream first: an open one holds the drain until the app's
 * shutdown_grace_ms. Returns 0, the code evapi_app_run returned, or
 * EVAPI_ESTATE when requests were still in flight after the stop (work
 * that outlived its reply). NULL is a no-op returning 0.
 */
EVAPI_EXPORT int evapi_test_stop(evapi_test *tc);

/** The running app (borrowed until evapi_test_stop), e.g. for
 *  evapi_app_stats. Thread-safe: yes. */
EVAPI_EXPORT evapi_app *evapi_test_app(const evapi_test *tc);

/** The port the app listens on. Thread-safe: yes. */
EVAPI_EXPORT int evapi_test_port(const evapi_test *tc);

/** Sets the timeout of the calls that do not give one (0: back to
 *  EVAPI_TEST_TIMEOUT_MS). Not while another thread uses `tc`. */
EVAPI_EXPORT void evapi_test_set_timeout(evapi_test *tc, int timeout_ms);

/* ---- requests -------------------------------------------------------- */

/** A request. Zero means the default for every field. Pointers are
 *  borrowed for the call, except `json`. */
typedef struct evapi_test_req {
	const char *method;         /* [GET; POST when a body is set] */
	const char *path;           /* ["/"] sent as is: escape it yourself */
	const char *query;          /* [none] appended after "?", as is */
	const char *const *headers; /* [none] NULL-terminated "Name: value"
	                               lines */
	const void *body;           /* [none] raw body; no Content-Type unless
	                               a header line gives one */
	size_t body_len;            /* [strlen(body)] */
	json_t *json;               /* [none] body sent as compact JSON with
	                               Content-Type: application/json (unless
	                               a header line gives one). Steals it,
	                               even when the call fails. */
	int timeout_ms;             /* [the client's] whole call */
} evapi_test_req;

/**
 * Sends `req` and waits for the whole reply (at most its timeout).
 * Returns new (evapi_test_response_free), NULL only on bad arguments or
 * when out of memory. A transport failure is a response with status 0 and
 * evapi_test_error() telling why: EVAPI_ETIMEDOUT (no full reply in
 * time), EVAPI_ECONNREFUSED, EVAPI_ECONNRESET (closed without a full
 * reply), EVAPI_EPROTO, EVAPI_ETOOBIG (over 8 MiB) or EVAPI_EINVAL (a bad
 * method or header line). Thread-safe: yes.
 */
EVAPI_EXPORT evapi_test_response *evapi_test_request(evapi_test *tc,
                                                     const evapi_test_req *req);

/** evapi_test_request of a GET of `path` (which may hold a query).
 *  Thread-safe: yes. */
EVAPI_EXPORT evapi_test_response *evapi_test_get(evapi_test *tc,
                                                 const char *path);

/** The reply's status, or 0 when none arrived. NULL gives 0. */
EVAPI_EXPORT int evapi_test_status(const evapi_test_response *r);

/** 0 when a reply arrived, else the EVAPI_E* transport error (NULL gives
 *  EVAPI_EINVAL). */
EVAPI_EXPORT int evapi_test_error(const evapi_test_response *r);

/** The value of the first header line called `name` (case-insensitive),
 *  or NULL. Borrowed, as `r`. */
EVAPI_EXPORT const char *evapi_test_header(const evapi_test_response *r,
                                           const char *name);

/** The value of the `i`-th (from 0) header line called `name`, for
 *  headers sent more than once (Set-Cookie), or NULL when there are not
 *  that many. Borrowed, as `r`. */
EVAPI_EXPORT const char *evapi_test_header_at(const evapi_test_response *r,
                                              const char *name, int i);

/** The body, NUL-terminated (it may also hold NULs: use `len`, which may
 *  be NULL). Never NULL: "" when there is none. Borrowed, as `r`. */
EVAPI_EXPORT const char *evapi_test_body(const evapi_test_response *r,
                                         size_t *len);

/** The body parsed as JSON (any JSON value; "\u0000" in strings is
 *  kept), parsed on the first call. Borrowed, as `r` (do not decref
 *  it); NULL when the body is not JSON. */
EVAPI_EXPORT json_t *evapi_test_json(evapi_test_response *r);

/** Frees a response. NULL is a no-op. */
EVAPI_EXPORT void evapi_test_response_free(evapi_test_response *r);

/* ---- streams ------------------------------------------------------- */

/**
 * Sends `req` and returns once the reply's status line and headers are in
 * (or its timeout passed), leaving the body to be read as it arrives,
 * with evapi_test_stream_read or evapi_test_sse_next. The stream has no
 * total timeout: each read has its own. Returns new (close with
 * evapi_test_stream_close), NULL only on bad arguments or when out of
 * memory; a failure is in evapi_test_stream_response. A stream is used
 * by one thread at a time.
 */
EVAPI_EXPORT evapi_test_stream *evapi_test_open(evapi_test *tc,
                                                const evapi_test_req *req);

/** The reply's status, error and headers (borrowed, as `s`); its body is
 *  empty: the bytes go to the stream's readers. */
EVAPI_EXPORT evapi_test_response *evapi_test_stream_response(
	evapi_test_stream *s);

/**
 * Copies up to `cap` bytes of body that have arrived (chunked encoding
 * removed) into `buf`, waiting at most `timeout_ms` (0: the client's
 * timeout) for some. Returns the count (> 0), 0 once the body has ended
 * and everything was read, EVAPI_ETIMEDOUT when nothing came in time, or
 * the transport error that ended the body early (EVAPI_ECONNRESET...).
 */
EVAPI_EXPORT long evapi_test_stream_read(evapi_test_stream *s, void *buf,
                                         size_t cap, int timeout_ms);

/** One server-sent event. Strings borrowed until the next call on the
 *  stream or its close. */
typedef struct evapi_test_sse {
	const char *event; /* the "event:" field, or "message" */
	const char *data;  /* the "data:" lines joined with "\n" */
	const char *id;    /* this event's "id:" field, or NULL */
} evapi_test_sse;

/**
 * Reads the next event of a text/event-stream reply, as a browser's
 * EventSource would (comment lines such as ": keep-alive" and events
 * without data are skipped), waiting at most `timeout_ms` (0: the
 * client's timeout). Returns 0 with `*ev` filled, EVAPI_ETIMEDOUT,
 * EVAPI_ENOENT once the stream has ended with no further event, or the
 * transport error that ended it early.
 */
EVAPI_EXPORT int evapi_test_sse_next(evapi_test_stream *s, evapi_test_sse *ev,
                                     int timeout_ms);

/** Closes the stream: when the body has not ended, the connection is
 *  closed, and the server sees the client go. NULL is a no-op. */
EVAPI_EXPORT void evapi_test_stream_close(evapi_test_stream *s);

/* ---- WebSockets ----------------------------------------------------- */

typedef struct evapi_test_ws evapi_test_ws;

/**
 * Opens a WebSocket session to a route of the app (Starlette's
 * websocket_connect): sends the handshake for `req->path` (with
 * `req->query` and `req->headers`, e.g. "Sec-WebSocket-Protocol: chat" or
 * "Origin: ..."; method and body are not used, `json` is released) and
 * waits for the answer, at most `req->timeout_ms` (0: the client's).
 * Returns new (evapi_test_ws_free), NULL only on bad arguments or when
 * out of memory. Whether the session opened is in
 * evapi_test_ws_response: status 101, or the refusal (403, 404...) with
 * its body, or status 0 and the transport error. A session is used by
 * one thread at a time; it answers the server's pings by itself.
 */
EVAPI_EXPORT evapi_test_ws *evapi_test_ws_connect(evapi_test *tc,
                                                  const evapi_test_req *req);

/** The handshake's answer: status, headers (Sec-WebSocket-Protocol...),
 *  body of a refusal. Borrowed, as `ws`. */
EVAPI_EXPORT evapi_test_response *evapi_test_ws_response(evapi_test_ws *ws);

/** Sends a text message (`text` copied; UTF-8 is the caller's promise:
 *  the server closes with 1007 otherwise). Returns 0, EVAPI_EGONE (the
 *  session is closing or closed, or never opened), EVAPI_ETIMEDOUT (the
 *  server did not read in time) or EVAPI_ECONNRESET. */
EVAPI_EXPORT int evapi_test_ws_send_text(evapi_test_ws *ws, const char *text);

/** Sends a binary message of `len` bytes (copied). Returns as
 *  evapi_test_ws_send_text. */
EVAPI_EXPORT int evapi_test_ws_send_bytes(evapi_test_ws *ws, const void *data,
                                          size_t len);

/** Sends `v` as a compact JSON text message. Steals `v`. Returns as
 *  evapi_test_ws_send_text, or EVAPI_EINVAL when `v` is NULL. */
EVAPI_EXPORT int evapi_test_ws_send_json(evapi_test_ws *ws, json_t *v);

/** A received message; `data` is borrowed until the next call on the
 *  session, NUL-terminated for text (len excludes the NUL). */
typedef struct evapi_test_ws_msg {
	int binary;
	const char *data;
	size_t len;
} evapi_test_ws_msg;

/**
 * Waits at most `timeout_ms` (0: the client's timeout) for the next
 * message. Returns 0 with `*msg` filled; EVAPI_EGONE once the server has
 * closed the session (its code: evapi_test_ws_close_code; the close is
 * answered); EVAPI_ETIMEDOUT; EVAPI_EPROTO when the server broke the
 * protocol (the session is then closed with 1002/1007/1009);
 * EVAPI_ECONNRESET when the connection dropped (code 1006).
 */
EVAPI_EXPORT int evapi_test_ws_recv(evapi_test_ws *ws, evapi_test_ws_msg *msg,
                                    int timeout_ms);

/** evapi_test_ws_recv of a text message parsed as JSON. Returns new
 *  (json_decref), or NULL on any failure or when the message is binary
 *  or not JSON. */
EVAPI_EXPORT json_t *evapi_test_ws_recv_json(evapi_test_ws *ws,
                                             int timeout_ms);

/**
 * Closes the session from the client side with `code` (1000, 3000-4999...)
 * and `reason` (may be NULL; cut to 123 bytes), then waits (the client's
 * timeout) for the server's close, dropping messages that arrive before
 * it. Returns 0, EVAPI_EINVAL (a code a client may not send), EVAPI_EGONE
 * (already closed), EVAPI_ETIMEDOUT or EVAPI_ECONNRESET.
 */
EVAPI_EXPORT int evapi_test_ws_close(evapi_test_ws *ws, int code,
                                     const char *reason);

/** The server's close code: 0 while nothing closed the session, the code
 *  of its close frame (1005 when it had none), or 1006 when the
 *  connection dropped without one. `reason` (may be NULL) receives its
 *  reason, "" when none: borrowed, as `ws`. */
EVAPI_EXPORT int evapi_test_ws_close_code(const evapi_test_ws *ws,
                                          const char **reason);

/** Frees the session. When it is still open the connection is dropped
 *  without a close frame (the server sees 1006). NULL is a no-op. */
EVAPI_EXPORT void evapi_test_ws_free(evapi_test_ws *ws);

#ifdef __cplusplus
}
#endif
#endif
