/*
 * guard.h: internals of the request guard (frame.c, guard.c). Never
 * installed. Kept apart from internal.h because only the reactor, the
 * guard and the tests need it.
 */
#ifndef EVAPI_GUARD_H
#define EVAPI_GUARD_H

#include <stddef.h>

#include "../internal.h"

struct bufferevent;

/* ---- frame.c: strict HTTP/1.x request framing (no I/O) ---------------- */

typedef struct evapi__frame_limits {
	size_t max_head;   /* request line + header section, raw bytes: 431 */
	size_t max_target; /* request-target: 414 */
	size_t max_body;   /* decoded body: 413 */
	int max_fields;    /* header fields: 431 */
	size_t max_chunk_line; /* one chunk-size line with extensions: 400 */
} evapi__frame_limits;

typedef struct evapi__frame evapi__frame;

enum evapi__frame_event {
	EVAPI__FRAME_MORE = 0, /* everything consumed; feed more */
	EVAPI__FRAME_BEGIN,    /* a request started and is not whole yet */
	EVAPI__FRAME_HEAD,     /* header section complete and valid */
	EVAPI__FRAME_REQUEST,  /* a whole request: see evapi__frame_request */
	EVAPI__FRAME_ERROR     /* see evapi__frame_error; feed no more */
};

/* Takes the decoded bytes of a body: 0, or -1 with a status and a
 * detail that lives until the request is answered. */
typedef int (*evapi__frame_sink)(void *arg, const char *data, size_t len,
                                 int *status, const char **detail);
/* Called at the end of a header section of a request that may carry a
 * body, before its Content-Length is checked: it may set a sink. */
typedef void (*evapi__frame_head_cb)(void *arg, evapi__frame *f);

EVAPI_HIDDEN evapi__frame *evapi__frame_new(const evapi__frame_limits *lim);
/* The owner's head callback (kept by evapi__frame_reset). */
EVAPI_HIDDEN void evapi__frame_on_head(evapi__frame *f,
                                       evapi__frame_head_cb cb, void *arg);
/* From the head callback: this request's body goes to `sink`, not into
 * the re-framed request (evhttp sees Content-Length: 0), bounded by
 * max_body instead of the limit. Cleared by the next request. */
EVAPI_HIDDEN void evapi__frame_set_sink(evapi__frame *f,
                                        evapi__frame_sink sink, void *arg,
                                        size_t max_body);
EVAPI_HIDDEN void evapi__frame_free(evapi__frame *f);
/* Consumes bytes from data[0, len) up to the next event; *used receives
 * how many. Call again with the rest. */
EVAPI_HIDDEN int evapi__frame_feed(evapi__frame *f, const char *data,
                                   size_t len, size_t *used);
/* After EVAPI__FRAME_REQUEST: the request re-framed for evhttp (request
 * line, validated headers, Content-Length, body). Borrowed until the next
 * feed. `close`: the last request on the connection ("Connection:
 * close"); otherwise it stays open (HTTP/1.0 gets "Connection:
 * keep-alive"). */
EVAPI_HIDDEN void evapi__frame_request(evapi__frame *f, int close,
                                       const char **head, size_t *head_len,
                                       const char **body, size_t *body_len);
/* 1 when the last feed consumed the first byte of a request, whatever
 * event it returned (a request that arrives whole is BEGIN and REQUEST
 * in one feed, returned as REQUEST). */
EVAPI_HIDDEN int evapi__frame_began(const evapi__frame *f);
/* Makes `f` as new (same limits), keeping its scratch buffers. */
EVAPI_HIDDEN void evapi__frame_reset(evapi__frame *f);
/* After EVAPI__FRAME_REQUEST: 0 when the client ends the connection
 * with this request ("Connection: close", or HTTP/1.0 without
 * keep-alive). */
EVAPI_HIDDEN int evapi__frame_keeps_alive(const evapi__frame *f);
/* After EVAPI__FRAME_REQUEST: the client's Upgrade and Connection
 * values (several lines joined with ","), or NULL; borrowed until the
 * next feed. */
EVAPI_HIDDEN void evapi__frame_upgrade(const evapi__frame *f,
                                       const char **upgrade,
                                       const char **connection);
/* After EVAPI__FRAME_HEAD: 1 when the client waits for 100 Continue. */
EVAPI_HIDDEN int evapi__frame_expects_continue(const evapi__frame *f);
/* After EVAPI__FRAME_HEAD: the method (an evapi_method bit), the
 * request-target as sent, and the Content-Type value or NULL; borrowed
 * until the next feed. */
EVAPI_HIDDEN evapi_method evapi__frame_method(const evapi__frame *f);
/* 1 once the current (or failed) message's request line, read up to
 * the end of its target, named HEAD, even when the request was refused
 * before its header section ended. */
EVAPI_HIDDEN int evapi__frame_is_head(const evapi__frame *f);
EVAPI_HIDDEN const char *evapi__frame_target(const evapi__frame *f);
EVAPI_HIDDEN const char *evapi__frame_content_type(const evapi__frame *f);
/* 1 while a request is partly received; 0 for NULL (a connection that
 * frees its frame after its last request). */
EVAPI_HIDDEN int evapi__frame_in_request(const evapi__frame *f);
/* After EVAPI__FRAME_ERROR: the status and a static detail text. */
EVAPI_HIDDEN int evapi__frame_error(const evapi__frame *f,
                                    const char **detail);

/* ---- guard.c: the bufferevent filter in front of evhttp --------------- */

/* The upload stream of the request evhttp passes on now from `bev`'s
 * connection, or NULL; the caller takes the reference. The reactor
 * calls it once per request, in order. */
EVAPI_HIDDEN evapi__ustream *evapi__guard_take_upload(evapi_app *app,
                                                      struct bufferevent *bev);

EVAPI_HIDDEN int evapi__guard_init(evapi_app *app);
EVAPI_HIDDEN void evapi__guard_free(evapi_app *app);
/* After evapi__reactor_listen: watch the listener for EMFILE/ENFILE. */
EVAPI_HIDDEN void evapi__guard_listening(evapi_app *app);
/* A request read from `bev`'s connection waits for its handler: the
 * connection drops its parser meanwhile (unless a pipelined request is
 * partly read); the next byte creates a new one. */
EVAPI_HIDDEN void evapi__guard_waiting(evapi_app *app,
                                       struct bufferevent *bev);
/* evhttp got the reply of one request read from `bev`'s connection. */
EVAPI_HIDDEN void evapi__guard_replied(evapi_app *app,
                                       struct bufferevent *bev);
/* As evapi__guard_replied, for a whole (not streamed) reply: it must
 * also have left within reply_write_timeout_ms, or the connection is
 * closed. Call it just before evhttp_send_reply, and
 * evapi__guard_sent_whole with what it returns just after. */
typedef struct gconn evapi__gconn;
EVAPI_HIDDEN evapi__gconn *evapi__guard_replied_whole(evapi_app *app,
                                                      struct bufferevent *bev);
/* evhttp_send_reply returned: with `now` (nothing runs when evhttp
 * completes the reply: no on-complete callback) the reply goes to the
 * socket at once when the connection owes nothing else; otherwise, or
 * when the socket does not take it all, the connection's kick sends it
 * on the next loop turn. `c` may be NULL. */
EVAPI_HIDDEN void evapi__guard_sent_whole(evapi__gconn *c, int now);

/* A file body for the reply evhttp writes on `bev`'s connection (its
 * headers, with a Content-Length, from evhttp_send_reply_start): once
 * evhttp's output has gone, the guard sends `len` bytes of `fd` from
 * `off` with sendfile(2), as fast as the client reads them and never
 * buffered. `done` runs exactly once, on the loop: with sent = 1 from
 * the connection's kick when the kernel has taken the last byte (end
 * the reply there: evhttp_send_reply_end); with 0 from the connection's
 * free when it went first (evhttp has reported the close already: only
 * let go of `fd` and `arg`). `fd` is borrowed until then. 0, or -1
 * (no guarded connection, or it is failing): `done` never runs. */
typedef void (*evapi__guard_file_cb)(void *arg, int sent);
EVAPI_HIDDEN int evapi__guard_send_file(evapi_app *app,
                                        struct bufferevent *bev, int fd,
                                        off_t off, off_t len,
                                        evapi__guard_file_cb done,
                                        void *arg);

/* A guarded connection, as ws.c sees it (evapi__gconn, above). */
/* Queues bytes for the socket (a then b; either may be empty), after
 * anything queued before. 0, or -1 when the connection is failing or
 * ending. */
EVAPI_HIDDEN int evapi__guard_ws_send(evapi__gconn *c, const void *a,
                                      size_t al, const void *b, size_t bl);
/* Bytes queued and not yet taken by the kernel. */
EVAPI_HIDDEN size_t evapi__guard_ws_queued(const evapi__gconn *c);
/* ws.c, inside evapi__ws_input, before a frame that more bytes of the
 * same read follow: from here until the read is handled, the session's
 * sends are gathered and then written at once (the guard's cork). */
EVAPI_HIDDEN void evapi__guard_ws_cork(evapi__gconn *c);
/* Ends the connection once the queued bytes are out: shutdown, linger,
 * close. Later input is dropped. */
EVAPI_HIDDEN void evapi__guard_ws_end(evapi__gconn *c);
/* The close handshake is complete: as evapi__guard_ws_end, then close
 * without waiting for the peer (RFC 6455 7.1.1: the server closes the
 * TCP connection first). */
EVAPI_HIDDEN void evapi__guard_ws_done(evapi__gconn *c);
/* Answers the upgrade request with `status` instead of 101, then closes. */
EVAPI_HIDDEN void evapi__guard_ws_refuse(evapi__gconn *c, int status,
                                         const char *detail);
/* Forgets the session (conn_free will not report to it). */
EVAPI_HIDDEN void evapi__guard_ws_detach(evapi__gconn *c);
/* Closes the connection now, dropping what is queued. */
EVAPI_HIDDEN void evapi__guard_ws_cut(evapi__gconn *c);

/* ---- ws.c: WebSocket sessions (loop thread) ---------------------------- */

/* For a request the guard framed: 0 when its path is no WebSocket route
 * (serve it as HTTP); 1 with *ws, a new session waiting for
 * evapi__ws_start; otherwise the status to refuse with, a static
 * *detail and a static *extra header line (or NULL). `upgrade` and
 * `connection`: the client's header values (NULL when absent). */
EVAPI_HIDDEN int evapi__ws_handshake(evapi_app *app, evapi__gconn *conn,
                                     const char *head, size_t hl,
                                     const char *upgrade,
                                     const char *connection, evapi_ws **ws,
                                     const char **detail,
                                     const char **extra);
/* 1 when `target` (a request-target, query allowed) is a WebSocket
 * route's path. */
EVAPI_HIDDEN int evapi__ws_is_route(evapi_app *app, const char *target);
/* Every earlier response is out: on_open, then the 101. */
EVAPI_HIDDEN void evapi__ws_start(evapi_ws *ws);
/* Bytes the client sent after the 101. */
EVAPI_HIDDEN void evapi__ws_input(evapi_ws *ws, const void *data,
                                  size_t len);
/* The connection was freed: on_close (if it opened), drop its reference. */
EVAPI_HIDDEN void evapi__ws_conn_gone(evapi_ws *ws);
/* Shutdown: an open session is pending work on app->pending (its drain
 * hook sends 1001 Going Away, its cancel also closes the connection). */
/* After the pool is gone: the routes. */
EVAPI_HIDDEN void evapi__ws_free(evapi_app *app);
EVAPI_HIDDEN struct evapi__ws_sub **evapi__ws_subs(evapi_ws *ws);
EVAPI_HIDDEN int evapi__ws_is_open(const evapi_ws *ws);
/* A broadcast's text frame, made once for every session it reaches:
 * writes its header (at most 14 bytes) and returns its length, or 0
 * when `text` is not UTF-8. */
EVAPI_HIDDEN size_t evapi__ws_text_header(uint8_t *h, const char *text,
                                          size_t len);
/* evapi_ws_send_text with that header: the same checks and bound, no
 * encoding, no copy while the session's queue is empty. */
EVAPI_HIDDEN int evapi__ws_send_framed(evapi_ws *ws, const uint8_t *h,
                                       size_t hn, const char *text,
                                       size_t len);

/* ---- channel.c: in-process broadcast (loop thread) ---------------------- */
EVAPI_HIDDEN void evapi__channels_leave_ws(evapi_ws *ws);
EVAPI_HIDDEN void evapi__channels_free(evapi_app *app);
/* Draining: subscribed streams end (their bodies close normally). */
EVAPI_HIDDEN void evapi__channels_shutdown(evapi_app *app);
/* ---- reactor.c: what the guard asks the app -------------------------- */

/* The status the app answers a request with this head without reading
 * its body, when that is already known (no route 404, wrong method 405
 * with the route's methods in *allow, path 400, media type 415), with a
 * static detail; 0 when only running the request tells. The guard asks
 * it for Expect: 100-continue. */
/* The upload limits of the route a request with this head goes to,
 * when the guard should stream its body (a declared upload route, and a
 * multipart/form-data body, or any body on a `raw` one): *boundary
 * holds the boundary ("" for a raw body). NULL otherwise. */
EVAPI_HIDDEN const evapi_upload *evapi__reactor_upload(evapi_app *app,
                                                       evapi_method method,
                                                       const char *target,
                                                       const char *ctype,
                                                       char *boundary,
                                                       size_t cap);
EVAPI_HIDDEN int evapi__reactor_known_status(evapi_app *app,
                                             evapi_method method,
                                             const char *target,
                                             const char *ctype,
                                             unsigned *allow,
                                             const char **detail);

#endif
