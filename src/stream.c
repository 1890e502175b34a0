/*
 * stream.c: streamed replies (chunked transfer encoding) and server-sent
 * events.
 *
 * Threads: a stream is written by its producer on any thread; only the
 * loop touches the connection. Writers copy their bytes into a chunk list
 * under the stream's mutex; the loop "pumps" the list into evhttp. A
 * writer on the loop pumps at once; any other thread wakes the loop
 * through the app's post queue (one post per batch). The status line goes
 * out the same way: at once from an inline handler, through a post from a
 * pool handler (and at the latest when its job completes, so the request
 * is never used after the job's reference is gone).
 *
 * Backpressure: `buffered` counts bytes queued here plus bytes handed to
 * evhttp and not yet written to the socket (each chunk is added to the
 * output by reference; its cleanup runs when the kernel has taken it).
 * Past EVAPI_STREAM_BUFFER_MAX a loop writer gets EVAPI_EBUSY and a
 * writer elsewhere waits on the condition variable. A client that stops
 * reading trips the connection's write timeout, which cancels the stream.
 *
 * Lifetime: `refs` (under the mutex) counts the producer's handle (until
 * evapi_stream_close), the loop's side (until the response ended or was
 * cancelled), each pending post and each chunk inside evhttp. Loop-only
 * resources (the keep-alive timer, the scratch evbuffer) are freed when
 * the loop's side is done, so the last release, wherever it happens, only
 * frees memory. While the response is being written the stream holds a
 * reference on the request, which finishes (access log, in-flight count)
 * when the stream ends or is cancelled.
 *
 * Client gone: libevent reads the connection while a reply is written and
 * frees it on EOF or error, calling the close callback the stream set:
 * the stream is cancelled, queued bytes are dropped, a waiting writer
 * wakes with EVAPI_EGONE, the request's pending ops are cancelled and the
 * stream callback is told (from the loop's next turn).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"

typedef struct chunk {
	struct chunk *next;
	evapi_stream *s;
	size_t len;
	char data[];
} chunk;

struct evapi_stream {
	evapi_app *app;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	chunk *head, **tail;
	size_t buffered;
	int refs;
	int closed;      /* the producer called evapi_stream_close */
	int cancelled;   /* client gone or shutdown cut */
	int posted;      /* a pump post is pending */
	int want_drain;  /* a loop writer got EVAPI_EBUSY */
	int drained;     /* ... and the buffer has drained since */
	/* loop only */
	evapi_req *req;  /* until started, then while the stream holds it */
	evapi__pending pend; /* on req->pending_ops while it holds it */
	struct evhttp_request *ev;
	struct evhttp_connection *evcon;
	struct evbuffer *out;
	struct event *ka;
	unsigned ka_ms;
	int64_t last_write_us;
	int started, loop_done, notified, pumping, repump;
	evapi_stream_cb cb;
	void *cb_arg;
	const evapi__route *route; /* the request's, for the watchdog */
	const char *label;
	evapi__resp start; /* status and headers of the response */
};

static void release(evapi_stream *s)
{
	int n;
	pthread_mutex_lock(&s->mu);
	n = --s->refs;
	pthread_mutex_unlock(&s->mu);
	if (n)
		return;
	evapi__resp_clear(&s->start);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Drops queued chunks; under mu. */
static void drop_queue(evapi_stream *s)
{
	chunk *c, *n;
	for (c = s->head; c; c = n) {
		n = c->next;
		s->buffered -= c->len;
		free(c);
	}
	s->head = NULL;
	s->tail = &s->head;
}

static void pump(evapi_stream *s);

static void pump_posted(evapi_app *app, int status, void *arg)
{
	evapi_stream *s = arg;
	pthread_mutex_lock(&s->mu);
	s->posted = 0;
	pthread_mutex_unlock(&s->mu);
	if (status == 0 && !s->started)
		evapi__stream_start(s); /* a pool handler's stream */
	else if (status == 0)
		pump(s);
	release(s);
}

/* Asks the loop to pump soon; under mu. Returns 0 or the post's error. */
static int wake_locked(evapi_stream *s)
{
	int rc;
	if (s->posted)
		return 0;
	s->posted = 1;
	s->refs++;
	if ((rc = evapi__post(s->app, pump_posted, s)) != 0) {
		s->posted = 0;
		s->refs--;
		evapi__log(s->app, EVAPI_LOG_ERROR,
		           "stream: cannot wake the loop: %s", evapi_strerror(rc));
	}
	return rc;
}

/* ---- the loop side ------------------------------------------------------- */

static void loop_side_done(evapi_stream *s)
{
	s->loop_done = 1;
	if (s->ka) {
		event_free(s->ka);
		s->ka = NULL;
	}
	if (s->out) {
		evbuffer_free(s->out);
		s->out = NULL;
	}
}

/* Marks the stream cancelled and lets its request go; the caller has
 * already dealt with s->ev. */
static void cancel(evapi_stream *s, int client_left)
{
	evapi_req *req = s->req;

	pthread_mutex_lock(&s->mu);
	s->cancelled = 1;
	drop_queue(s);
	pthread_cond_broadcast(&s->cv);
	wake_locked(s); /* tells the stream callback from the next turn */
	pthread_mutex_unlock(&s->mu);
	loop_side_done(s);
	s->req = NULL;
	if (req) {
		/* off the list before the request's own walk runs */
		evapi__req_pending_done(req, &s->pend);
		if (client_left)
			evapi__req_client_gone(req);
		evapi__req_unref(req); /* the stream's reference */
	}
	release(s); /* the loop's side */
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
	evapi_stream *s = arg;
	struct evhttp_request *ev = s->ev;

	s->ev = NULL;
	s->evcon = NULL;
	/* libevent detaches a request whose reply is still being written
	 * before it frees the connection: then it is ours to free. If it is
	 * still attached, libevent frees it with the connection. */
	if (ev && evhttp_request_get_connection(ev) == NULL)
		evhttp_request_free(ev);
	EVAPI__ADD(&s->app->stats.gone, 1);
	evapi__log(s->app, EVAPI_LOG_DEBUG, "stream: client left: id=%llu",
	           s->req ? s->req->id : 0ULL);
	cancel(s, 1);
}

/* The request's pending-work walk (deadline, shutdown cut). */
static void stream_cut(evapi__pending *p)
{
	evapi_stream *s = EVAPI__CONTAINER_OF(p, evapi_stream, pend);
	struct evhttp_request *ev = s->ev;

	if (s->loop_done)
		return;
	s->ev = NULL;
	if (s->evcon) {
		evhttp_connection_set_closecb(s->evcon, NULL, NULL);
		/* Frees ev with the connection: the client sees the body end
		 * without its last chunk, i.e. truncated. */
		evhttp_connection_free(s->evcon);
		s->evcon = NULL;
	} else if (ev) {
		evhttp_request_free(ev);
	}
	cancel(s, 0);
}

static void chunk_written(const void *data, size_t len, void *arg)
{
	chunk *c = arg;
	evapi_stream *s = c->s;
	evapi_app *app = s->app;

	pthread_mutex_lock(&s->mu);
	s->buffered -= c->len;
	if (s->want_drain && s->buffered <= EVAPI_STREAM_BUFFER_MAX / 2) {
		s->want_drain = 0;
		s->drained = 1;
		wake_locked(s); /* not from inside libevent's write path */
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	free(c);
	app->bodies_writing--;
	release(s);
	evapi__reactor_maybe_exit(app);
}

static void keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi_stream *s = arg;
	if (evapi__now_us() - s->last_write_us >= (int64_t)s->ka_ms * 900)
		evapi_stream_write(s, ": keep-alive\n\n", 14);
}

static struct timeval ms_tv(long ms)
{
	struct timeval tv;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

void evapi__stream_start(evapi_stream *s)
{
	evapi_req *req = s->req;

	if (s->started)
		return;
	s->started = 1;
	if (req->gone || !req->ev) {
		s->req = NULL; /* the stream never held it */
		cancel(s, 0);
		return;
	}
	/* the stream's reference, until it ends or is cancelled */
	evapi__req_pending_add(req, &s->pend, stream_cut, "stream");
	s->pend.is_reply = 1;
	if (!req->on_worker)
		req->state = EVAPI__REQ_SENT;
	s->ev = evapi__req_stream_begin(req, &s->start);
	s->evcon = evhttp_request_get_connection(s->ev);
	s->out = evbuffer_new();
	s->last_write_us = evapi__now_us();
	if (s->ka_ms) {
		struct timeval tv = ms_tv((long)s->ka_ms);
		s->ka = event_new(s->app->base, -1, EV_PERSIST, keepalive_cb, s);
		if (s->ka)
			event_add(s->ka, &tv);
	}
	/* No bufferevent timeouts here: the request guard owns the
	 * connection's deadlines (none run while a response is being
	 * written, and a client that stops reading is cut by its write
	 * deadline); libevent 2.1 mishandles timeouts on its filter. */
	evhttp_connection_set_closecb(s->evcon, conn_closed, s);
	evhttp_send_reply_start(s->ev, s->start.status,
	                        evapi__reason(s->start.status));
	pump(s);
}

void evapi__stream_job_done(evapi_stream *s)
{
	evapi__stream_start(s); /* no-op if the post came first */
	release(s);
}

static void loop_end(evapi_stream *s)
{
	evapi_req *req = s->req;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);

	/* the stream is over: the guard may write and time again */
	evapi__guard_replied(s->app, bev);
	evhttp_connection_set_closecb(s->evcon, NULL, NULL);
	evapi__tasks_attach(req, s->ev); /* they run once the end is out */
	evhttp_send_reply_end(s->ev);
	s->ev = NULL;
	s->evcon = NULL;
	s->req = NULL;
	evapi__req_pending_done(req, &s->pend);
	loop_side_done(s);
	if (req->head_only) {
		/* The HEAD response is complete: tell the producer to stop
		 * (writes return EVAPI_EGONE) rather than feed nothing. */
		pthread_mutex_lock(&s->mu);
		if (!s->closed) {
			s->cancelled = 1;
			drop_queue(s);
			pthread_cond_broadcast(&s->cv);
			wake_locked(s);
		}
		pthread_mutex_unlock(&s->mu);
	}
	evapi__req_finish(req, s->start.status);
	evapi__req_unref(req);
	release(s); /* the loop's side */
}

static void pump_once(evapi_stream *s)
{
	chunk *list, *c, *n;
	int closed, cancelled, drained, sent = 0;

	pthread_mutex_lock(&s->mu);
	list = s->head;
	s->head = NULL;
	s->tail = &s->head;
	closed = s->closed;
	cancelled = s->cancelled;
	drained = s->drained;
	s->drained = 0;
	pthread_mutex_unlock(&s->mu);

	for (c = list; c; c = n) {
		n = c->next;
		if (s->loop_done || !s->ev || s->req->head_only) {
			pthread_mutex_lock(&s->mu);
			s->buffered -= c->len;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->mu);
			free(c);
			continue;
		}
		if (evbuffer_add_reference(s->out, c->data, c->len,
		                           chunk_written, c) != 0) {
			pthread_mutex_lock(&s->mu);
			s->buffered -= c->len;
			pthread_mutex_unlock(&s->mu);
			free(c);
			continue;
		}
		pthread_mutex_lock(&s->mu);
		s->refs++; /* the chunk's, until written */
		pthread_mutex_unlock(&s->mu);
		s->app->bodies_writing++;
		sent = 1;
	}
	if (sent) {
		/* One HTTP chunk per batch; evhttp moves the references. */
		evhttp_send_reply_chunk(s->ev, s->out);
		s->last_write_us = evapi__now_us();
	}
	/* A HEAD response is over once its headers are out. */
	if (!s->loop_done && s->ev &&
	    ((closed && !cancelled) || s->req->head_only))
		loop_end(s);
	/* Stream callbacks: never after the producer closed the stream. */
	if (s->cb && !closed && ((cancelled && !s->notified) ||
	                         (drained && !cancelled))) {
		evapi__user u;
		evapi__user_begin(s->app, &u, "stream callback", s->label,
		                  s->route);
		if (cancelled) {
			s->notified = 1;
			s->cb(s, EVAPI_ECANCELED, s->cb_arg);
		} else {
			s->cb(s, 0, s->cb_arg);
		}
		evapi__user_end(s->app, &u);
	}
}

/* Moves what producers wrote into evhttp, ends the response once the
 * producer closed it, and runs the stream callback. Loop thread; the
 * caller holds a reference. Re-entry (a callback writing) just asks the
 * running pump for another round. */
static void pump(evapi_stream *s)
{
	if (s->pumping) {
		s->repump = 1;
		return;
	}
	if (!s->started)
		return; /* evapi__stream_start pumps */
	s->pumping = 1;
	do {
		s->repump = 0;
		pump_once(s);
	} while (s->repump);
	s->pumping = 0;
}

/* ---- the producer's side -------------------------------------------------- */

static evapi_stream *stream_new(evapi_req *req, int status,
                                const char *content_type, unsigned ka_ms)
{
	evapi_stream *s;

	if (!req || status < 200 || status > 999 || status == 204 ||
	    status == 304 || evapi__reply_check(req) != 0)
		return NULL;
	s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	if (content_type &&
	    evapi__resp_add_header(&s->start, "Content-Type", content_type)) {
		free(s);
		return NULL;
	}
	s->app = req->app;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->tail = &s->head;
	s->refs = 2; /* the producer's handle and the loop's side */
	s->req = req;
	s->route = req->route;
	s->label = req->route ? req->route->label : "-";
	s->ka_ms = ka_ms;
	s->start.status = status;
	/* The headers the handler added so far go with the stream. */
	if (req->resp.headers) {
		if (s->start.headers_tail)
			s->start.headers_tail->next = req->resp.headers;
		else
			s->start.headers = req->resp.headers;
		s->start.headers_tail = req->resp.headers_tail;
		req->resp.headers = req->resp.headers_tail = NULL;
	}
	req->resp.status = status;
	req->state = EVAPI__REQ_REPLIED;
	if (!req->on_worker) {
		evapi__stream_start(s);
	} else {
		/* The pool job's completion looks at the stream: one more
		 * reference, dropped by evapi__stream_job_done. */
		req->resp.stream = s;
		pthread_mutex_lock(&s->mu);
		s->refs++;
		wake_locked(s); /* the start: posted, pumped from there */
		pthread_mutex_unlock(&s->mu);
	}
	return s;
}

evapi_stream *evapi_reply_stream(evapi_req *req, int status,
                                 const char *content_type)
{
	return stream_new(req, status, content_type, 0);
}

int evapi_stream_write(evapi_stream *s, const void *data, size_t len)
{
	chunk *c;
	int loop;

	if (!s || (!data && len))
		return EVAPI_EINVAL;
	if (len == 0)
		return 0; /* an empty chunk would end the body */
	loop = evapi__on_loop(s->app);
	c = malloc(sizeof *c + len);
	if (!c)
		return EVAPI_ENOMEM;
	c->next = NULL;
	c->s = s;
	c->len = len;
	memcpy(c->data, data, len);
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->closed || s->cancelled) {
			int rc = s->closed ? EVAPI_EALREADY : EVAPI_EGONE;
			pthread_mutex_unlock(&s->mu);
			free(c);
			return rc;
		}
		/* One write larger than the limit goes through on its own. */
		if (s->buffered == 0 ||
		    s->buffered + len <= EVAPI_STREAM_BUFFER_MAX)
			break;
		if (loop) {
			s->want_drain = 1;
			pthread_mutex_unlock(&s->mu);
			free(c);
			return EVAPI_EBUSY;
		}
		pthread_cond_wait(&s->cv, &s->mu);
	}
	*s->tail = c;
	s->tail = &c->next;
	s->buffered += len;
	if (!loop)
		wake_locked(s);
	pthread_mutex_unlock(&s->mu);
	if (loop)
		pump(s);
	return 0;
}

int evapi_stream_printf(evapi_stream *s, const char *fmt, ...)
{
	va_list ap;
	char small[512], *buf = small;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return EVAPI_EINVAL;
	if ((size_t)n >= sizeof small) {
		buf = malloc((size_t)n + 1);
		if (!buf)
			return EVAPI_ENOMEM;
		va_start(ap, fmt);
		vsnprintf(buf, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	rc = evapi_stream_write(s, buf, (size_t)n);
	if (buf != small)
		free(buf);
	return rc;
}

int evapi_stream_cancelled(evapi_stream *s)
{
	int c;
	if (!s)
		return 1;
	pthread_mutex_lock(&s->mu);
	c = s->cancelled;
	pthread_mutex_unlock(&s->mu);
	return c;
}

int evapi_stream_close(evapi_stream *s)
{
	int rc, loop;

	if (!s)
		return EVAPI_EINVAL;
	loop = evapi__on_loop(s->app);
	pthread_mutex_lock(&s->mu);
	if (s->closed) {
		pthread_mutex_unlock(&s->mu);
		return EVAPI_EALREADY;
	}
	s->closed = 1;
	rc = s->cancelled ? EVAPI_EGONE : 0;
	if (!loop && !s->cancelled)
		wake_locked(s);
	pthread_mutex_unlock(&s->mu);
	if (loop && !rc)
		pump(s);
	release(s); /* the producer's handle */
	return rc;
}

int evapi_stream_set_cb(evapi_stream *s, evapi_stream_cb cb, void *arg)
{
	if (!s)
		return EVAPI_EINVAL;
	if (!evapi__on_loop(s->app))
		return EVAPI_ETHREAD;
	s->cb = cb;
	s->cb_arg = arg;
	return 0;
}

/* ---- server-sent events --------------------------------------------------- */

evapi_stream *evapi_reply_sse(evapi_req *req, unsigned keepalive_ms)
{
	if (!req || evapi__reply_check(req) != 0 ||
	    evapi_reply_add_header(req, "Cache-Control", "no-cache") != 0 ||
	    evapi_reply_add_header(req, "X-Accel-Buffering", "no") != 0)
		return NULL;
	return stream_new(req, 200, "text/event-stream",
	                  keepalive_ms ? keepalive_ms : 15000);
}

static int has_crlf(const char *s)
{
	return s && strpbrk(s, "\r\n") != NULL;
}

int evapi_sse_send(evapi_stream *s, const char *event, const char *id,
                   const char *data)
{
	size_t dlen, cap, o = 0;
	const char *p;
	char *msg;
	int rc;

	if (!s || has_crlf(event) || has_crlf(id))
		return EVAPI_EINVAL;
	if (!data)
		data = "";
	dlen = strlen(data);
	/* Every byte of data may start a line: "data: " + "\n" each. */
	cap = 32 + (event ? strlen(event) : 0) + (id ? strlen(id) : 0) +
	      dlen * 8 + 8;
	msg = malloc(cap);
	if (!msg)
		return EVAPI_ENOMEM;
	if (event)
		o += (size_t)snprintf(msg + o, cap - o, "event: %s\n", event);
	if (id)
		o += (size_t)snprintf(msg + o, cap - o, "id: %s\n", id);
	/* One data line per line of `data`; CRLF, CR and LF all end a line
	 * (the receiver joins them back with LF). */
	for (p = data;;) {
		size_t n = strcspn(p, "\r\n");
		memcpy(msg + o, "data: ", 6);
		o += 6;
		memcpy(msg + o, p, n);
		o += n;
		msg[o++] = '\n';
		p += n;
		if (!*p)
			break;
		p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
	}
	msg[o++] = '\n';
	rc = evapi_stream_write(s, msg, o);
	free(msg);
	return rc;
}
