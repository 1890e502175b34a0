/*
 * evapi/stream.h: streamed responses (StreamingResponse) and server-sent
 * events (text/event-stream).
 *
 * A stream is a reply whose body is written in pieces with HTTP/1.1
 * chunked encoding. It can be produced on the loop or, thread-safely,
 * from any other thread (a pool handler, a run_in_pool job, an
 * application thread): writes are copied and posted to the loop, which
 * alone touches the connection. Buffering is bounded: at most
 * EVAPI_STREAM_BUFFER_MAX bytes may wait for a slow client; past that a
 * loop writer gets EVAPI_EBUSY and a writer on another thread waits.
 *
 * When the client leaves (or the app's shutdown grace ends, or a HEAD
 * request's headers have gone out) the stream is cancelled: queued bytes
 * are dropped, writes return EVAPI_EGONE, a waiting writer wakes up, the stream callback (if set) runs with
 * EVAPI_ECANCELED, and the request's pending operations are cancelled.
 */
#ifndef EVAPI_STREAM_H
#define EVAPI_STREAM_H

#include <stddef.h>
#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evapi_stream evapi_stream;

/** Bytes a stream may hold for a slow client before writers are held. */
#define EVAPI_STREAM_BUFFER_MAX (256 * 1024)

/**
 * Starts a streamed reply (`status`, `content_type` may be NULL) with the
 * headers added so far. Like the other reply functions it answers the
 * request once (a second reply returns EVAPI_EALREADY) and may be called
 * only on the thread running the handler, inline or pool; the status line
 * and headers go out at once from the loop, or as soon as the loop sees
 * the post from a pool handler. Returns a new handle that the producer
 * must release with evapi_stream_close exactly once, on any thread, even
 * after a cancellation; NULL when the request cannot be answered (already
 * answered, client gone, bad status, no memory).
 */
EVAPI_EXPORT evapi_stream *evapi_reply_stream(evapi_req *req, int status,
                                              const char *content_type);

/**
 * Appends `len` bytes (copied) to the body; empty writes are ignored.
 * Returns 0, EVAPI_EGONE once the stream is cancelled, EVAPI_EALREADY
 * after evapi_stream_close, or (loop thread only) EVAPI_EBUSY when
 * EVAPI_STREAM_BUFFER_MAX bytes already wait: nothing was written; the
 * stream callback runs with 0 once the client has caught up. On another
 * thread a full buffer makes the call wait until there is room or the
 * stream is cancelled (a client that stops reading is dropped by the
 * connection's write timeout, idle_timeout_ms). Thread-safe: yes.
 */
EVAPI_EXPORT int evapi_stream_write(evapi_stream *s, const void *data,
                                    size_t len);

/** evapi_stream_write of a printf-formatted string. Thread-safe: yes. */
EVAPI_EXPORT int evapi_stream_printf(evapi_stream *s, const char *fmt, ...)
	EVAPI_PRINTF(2, 3);

/** 1 once the stream is cancelled (client gone or shutdown cut), else 0.
 *  Thread-safe: yes. */
EVAPI_EXPORT int evapi_stream_cancelled(evapi_stream *s);

/**
 * Ends the body (after everything written so far) and releases the
 * handle: `s` must not be used afterwards. Returns 0, or EVAPI_EGONE if
 * the stream had been cancelled (the handle is released all the same).
 * Thread-safe: yes.
 */
EVAPI_EXPORT int evapi_stream_close(evapi_stream *s);

/** Stream events for loop-thread producers: status 0 after an EVAPI_EBUSY
 *  once the buffer has drained below half; EVAPI_ECANCELED once, when the
 *  stream is cancelled (never after evapi_stream_close). Runs on the loop. */
typedef void (*evapi_stream_cb)(evapi_stream *s, int status, void *arg);

/** Sets the stream callback. `arg` is borrowed. Loop thread only. */
EVAPI_EXPORT int evapi_stream_set_cb(evapi_stream *s, evapi_stream_cb cb,
                                     void *arg);

/* ---- server-sent events ------------------------------------------------ */

/**
 * Starts an event stream: status 200, Content-Type text/event-stream,
 * Cache-Control: no-cache and X-Accel-Buffering: no, and a keep-alive
 * comment line (": keep-alive") whenever nothing was sent for
 * `keepalive_ms` (0: 15000). Same rules and ownership as
 * evapi_reply_stream.
 */
EVAPI_EXPORT evapi_stream *evapi_reply_sse(evapi_req *req,
                                           unsigned keepalive_ms);

/**
 * Sends one event: "event: <event>" and "id: <id>" lines when not NULL,
 * then one "data: " line per line of `data` (split at CRLF, CR or LF),
 * then a blank line. `event` and `id` containing CR or LF (or `id` a
 * NUL) are refused with EVAPI_EINVAL. Returns as evapi_stream_write.
 * Thread-safe: yes.
 */
EVAPI_EXPORT int evapi_sse_send(evapi_stream *s, const char *event,
                                const char *id, const char *data);

#ifdef __cplusplus
}
#endif
#endif
