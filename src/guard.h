/*
 * guard.h: internals of the request guard (frame.c, guard.c). Never
 * installed. Kept apart from internal.h because only the reactor, the
 * guard and the tests need it.
 */
#ifndef EVAPI_GUARD_H
#define EVAPI_GUARD_H

#include <stddef.h>

#include "internal.h"

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
	EVAPI__FRAME_BEGIN,    /* the first byte of a request was consumed */
	EVAPI__FRAME_HEAD,     /* header section complete and valid */
	EVAPI__FRAME_REQUEST,  /* a whole request: see evapi__frame_request */
	EVAPI__FRAME_ERROR     /* see evapi__frame_error; feed no more */
};

EVAPI_HIDDEN evapi__frame *evapi__frame_new(const evapi__frame_limits *lim);
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
/* Makes `f` as new (same limits), keeping its scratch buffers. */
EVAPI_HIDDEN void evapi__frame_reset(evapi__frame *f);
/* After EVAPI__FRAME_REQUEST: 0 when the client ends the connection
 * with this request ("Connection: close", or HTTP/1.0 without
 * keep-alive). */
EVAPI_HIDDEN int evapi__frame_keeps_alive(const evapi__frame *f);
/* After EVAPI__FRAME_HEAD: 1 when the client waits for 100 Continue. */
EVAPI_HIDDEN int evapi__frame_expects_continue(const evapi__frame *f);
/* After EVAPI__FRAME_HEAD: the method (an evapi_method bit), the
 * request-target as sent, and the Content-Type value or NULL; borrowed
 * until the next feed. */
EVAPI_HIDDEN evapi_method evapi__frame_method(const evapi__frame *f);
/* 1 once the current (or failed) message's request line, read whole and
 * valid, named HEAD, even when the request was refused before its header
 * section ended. */
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
/* A whole (not streamed) reply is being sent on `bev`'s connection: it
 * must have left within reply_write_timeout_ms, or the connection is
 * closed. */
EVAPI_HIDDEN void evapi__guard_reply_deadline(evapi_app *app,
                                              struct bufferevent *bev);

/* ---- reactor.c: what the guard asks the app -------------------------- */

/* The status the app answers a request with this head without reading
 * its body, when that is already known (no route 404, wrong method 405
 * with the route's methods in *allow, path 400, media type 415), with a
 * static detail; 0 when only running the request tells. The guard asks
 * it for Expect: 100-continue. */
EVAPI_HIDDEN int evapi__reactor_known_status(evapi_app *app,
                                             evapi_method method,
                                             const char *target,
                                             const char *ctype,
                                             unsigned *allow,
                                             const char **detail);

#endif
