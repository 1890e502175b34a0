/*
 * guard.c: the request guard in front of evhttp: a bufferevent filter on
 * every accepted connection (installed with evhttp_set_bevcb), its
 * deadlines, the connection cap and the accept-loop pause on EMFILE.
 *
 * Threads: loop thread only.
 *
 * Every byte a client sends passes through filter_in, which frames it
 * with frame.c and hands evhttp only whole, validated, re-framed
 * requests. evhttp therefore never sits in the middle of a request, so
 * the guard can close a connection (header deadline, body deadline, bad
 * input) without ever pulling a request out from under a handler.
 *
 * Ordering on a keep-alive connection: evhttp answers requests one at a
 * time, in order. `queued` counts requests handed to evhttp and not yet
 * answered (the reactor reports each reply through evapi__guard_replied).
 * Anything the guard writes itself (100 Continue, an error, a 408, the
 * final answer to an Expect: 100-continue it can already give) waits
 * until queued is 0 and evhttp's output has left the filter, so it can
 * never overtake an earlier response. Guard deadlines only run while
 * queued is 0: a client is not blamed for a slow handler.
 *
 * Closing: the guard writes its answer, waits until it has reached the
 * socket, shuts down the write side, keeps reading and discarding for a
 * short linger (so the client sees the answer rather than a reset), then
 * reports EOF to evhttp, which frees the connection (and this state, via
 * the filter's free callback).
 *
 * Invariant: filter_in always drains its whole source buffer, because
 * libevent's filter does not run it again for bytes left behind.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "guard.h"

#define LINGER_MS 1000
#define RESUME_ACCEPT_MS 250
#define PIPELINE_MAX 32
/* Whole replies written together at most (evapi__guard_sent_whole):
 * their requests' memory is freed together, and glibc's per-thread cache
 * keeps 7 blocks of a size; more replies held back make the next
 * requests' allocations take the slow path (bench/NOTES.md, step 16). */
#define FLUSH_BATCH 4
/* One read of the socket takes at most this much (sock_read_cb). */
#define READ_MAX 16384
/* A file body sends at most this much per loop turn (file_step): a fast
 * reader of a large file cannot keep the loop from the others. */
#define FILE_TURN (1024 * 1024)
/* Parsers kept for reuse (see frame_put); none under the sanitizers so
 * a stale pointer still reports. */
#define SPARE_FRAMES_CAP 64
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SPARE_FRAMES 0
#else
#define SPARE_FRAMES SPARE_FRAMES_CAP
#endif

typedef struct gconn gconn;
TAILQ_HEAD(gconn_list, gconn);

typedef struct evapi__guard {
	evapi_app *app;
	struct evapi__guard *next_guard; /* in `guards` */
	evapi__frame_limits lim;
	gconn **byfd; /* connections by socket, for evapi__guard_replied */
	int nfd;
	int nconns;
	int accept_paused;
	int dead;     /* the app let go; freed with the last connection */
	struct event *resume_ev;
	struct event *kick_ev;   /* runs the connections on `kicked` */
	struct gconn_list kicked;
	/* Whole replies written once the requests read in this loop turn
	 * have been handled: see evapi__guard_sent_whole. */
	struct event *flush_ev;
	struct gconn_list flushq;
	int nflush;              /* on flushq */
	evapi__frame *spare[SPARE_FRAMES_CAP]; /* parsers to reuse */
	int nspare;
	/* What an open session sends while a read that carried several
	 * frames is handled (ws_feed, evapi__guard_ws_cork): gathered here
	 * and written with one sendmsg when the read is done, so the read
	 * costs one write for all their answers, not one each. */
	gconn *cork_conn;        /* the session being read, or NULL */
	size_t cork_len;
	char cork[4096];
} evapi__guard;

struct gconn {
	evapi__guard *g;
	struct bufferevent *fbev, *ubev;
	struct evbuffer_cb_entry *fout_cb;
	struct evbuffer *own; /* the guard's own answers, before the socket;
	                       * created by the first one */
	evapi__frame *frame;  /* NULL after the last request, and while a
	                       * request waits (see evapi__guard_waiting) */
	struct event *timer; /* the connection's deadline */
	TAILQ_ENTRY(gconn) kick_link; /* on g->kicked while `kicked` */
	TAILQ_ENTRY(gconn) flush_link; /* on g->flushq while `flush_due` */
	int fd;
	int queued;          /* requests evhttp has not answered yet */
	int served;          /* requests handed to evhttp */
	int reject_status;   /* an answer of ours is owed, then close */
	int ws_state;        /* WS_* below */
	int taken;           /* requests the reactor has taken (uploads) */
	const char *reject_detail;
	const char *reject_extra; /* a header line for the answer, or NULL */
	evapi_ws *ws;        /* a WebSocket route's session (ws.c) */
	struct event *ws_rev; /* an open session's reads (ws_take_reads) */
	struct event *rpin;  /* a second reader of the socket (rpin_keep) */
	int rpin_idle;       /* rpin's wakeups since filter_in last ran */
	unsigned reject_allow; /* methods for an Allow header, with 405 */
	struct event *writable; /* evhttp output waiting for the socket */
	int64_t req_start_us, idle_since_us, linger_until_us;
	int64_t timer_at_us; /* when `timer` fires, if pending */
	int64_t reply_by_us; /* the reply being written must be out by then
	                      * (0: none, or a stream) */
	/* Upload bodies streamed to disk (upload_stream.c): the one
	 * arriving, and those handed to evhttp that the reactor has not
	 * taken yet, each with the number of its request (`served`). */
	evapi__ustream *upload;
	struct uphand *handed;
	/* A file body sent with sendfile(2) once evhttp's output (the
	 * reply's headers) is out: see evapi__guard_send_file. */
	evapi__guard_file_cb file_cb; /* NULL: none */
	void *file_arg;
	off_t file_off, file_end;
	int file_fd;         /* borrowed until file_cb runs */
	/* Flags, one bit each: thousands of waiting connections stay small. */
	unsigned kicked : 1;         /* "look again now": see conn_kick */
	unsigned flush_due : 1;      /* a whole reply waits for flush_cb */
	unsigned got_head : 1;       /* the partial request has its head */
	unsigned continue_owed : 1;  /* 100 Continue to send once queued is 0 */
	unsigned ws_closed : 1;      /* both close frames seen: no linger */
	unsigned rpin_on : 1;        /* rpin is added */
	unsigned reject_head : 1;    /* the rejected request is a HEAD */
	unsigned silent_close : 1;   /* close without an answer */
	unsigned answer_written : 1;
	unsigned write_shut : 1;     /* shutdown(SHUT_WR) done: lingering */
	unsigned reading_paused : 1; /* too many pipelined requests queued */
	unsigned last : 1;           /* no request after the one handed over */
	unsigned write_failed : 1;   /* the socket refused evhttp's output */
	unsigned finished : 1;       /* conn_finish ran: only conn_free follows */
	unsigned flushing : 1;       /* inside our own bufferevent_flush */
	unsigned handing_over : 1;   /* from evapi__guard_replied_whole to
	                              * evapi__guard_sent_whole: fout_cb off */
	unsigned upload_paused : 1;  /* reading stopped: writes are behind */
};

struct uphand {
	struct uphand *next;
	int seq;
	evapi__ustream *us;
};

/* A WebSocket connection: the upgrade request waits for the responses
 * ahead of it (PENDING), then its bytes go to ws.c (OPEN) until ws.c
 * ends it (ENDING: our queued bytes out, shutdown, linger, close). */
enum { WS_NONE = 0, WS_PENDING, WS_OPEN, WS_ENDING };

static void conn_kick(gconn *c);
static gconn *conn_of(evapi_app *app, struct bufferevent *bev);
static void ws_take_reads(gconn *c);
static void reads_take(gconn *c);
static void rpin_free(gconn *c);
static void writable_cb(evutil_socket_t fd, short what, void *arg);
static void flush_evhttp(gconn *c);
static long send_some(gconn *c, struct evbuffer *b);
static void wait_writable(gconn *c);
static int file_step(gconn *c);

/* False once the filter is being freed: by us (conn_finish) or by
 * evhttp, which clears its callbacks first. libevent finalizes the filter
 * (and runs conn_free) only later, and touching it in between would
 * re-arm its timeouts on memory about to be freed. */
static int alive(const gconn *c)
{
	bufferevent_event_cb ecb = NULL;
	if (c->finished)
		return 0;
	bufferevent_getcb(c->fbev, NULL, NULL, &ecb, NULL);
	return ecb != NULL;
}

/* libevent calls a listener's error callback with the listener's own
 * argument, which evhttp has taken (its struct evhttp): find our guard
 * by it. Apps may live on several threads, hence the lock. */
static pthread_mutex_t guards_mu = PTHREAD_MUTEX_INITIALIZER;
static evapi__guard *guards;

static evapi__guard *guard_of(const void *http)
{
	evapi__guard *g;
	pthread_mutex_lock(&guards_mu);
	for (g = guards; g && (const void *)g->app->http != http;
	     g = g->next_guard)
		;
	pthread_mutex_unlock(&guards_mu);
	return g;
}

/* ---- fd table ------------------------------------------------------------ */

static void conn_register(gconn *c)
{
	evapi__guard *g = c->g;
	int fd;

	if (c->fd >= 0)
		return;
	fd = (int)bufferevent_getfd(c->fbev);
	if (fd < 0)
		return;
	if (fd >= g->nfd) {
		int n = g->nfd ? g->nfd : 256;
		gconn **t;
		while (n <= fd)
			n *= 2;
		t = realloc(g->byfd, (size_t)n * sizeof *t);
		if (!t)
			return;
		memset(t + g->nfd, 0, (size_t)(n - g->nfd) * sizeof *t);
		g->byfd = t;
		g->nfd = n;
	}
	g->byfd[fd] = c;
	c->fd = fd;
	reads_take(c);
}

/* ---- parsers ------------------------------------------------------------- */

/* A connection drops its parser while its request waits and after its
 * last request; the next one it (or another connection) needs comes from
 * the spares, so a keep-alive client of a pool route does not pay for a
 * new parser and its buffers on every request. */
static void upload_head(void *arg, evapi__frame *f);

static evapi__frame *frame_get(gconn *c)
{
	evapi__guard *g = c->g;
	evapi__frame *f;
	if (g->nspare == 0) {
		f = evapi__frame_new(&g->lim);
	} else {
		f = g->spare[--g->nspare];
		evapi__frame_reset(f);
	}
	if (f)
		evapi__frame_on_head(f, upload_head, c);
	return f;
}

static void frame_put(evapi__guard *g, evapi__frame *f)
{
	if (SPARE_FRAMES > 0 && f && !g->dead && g->nspare < SPARE_FRAMES)
		g->spare[g->nspare++] = f;
	else
		evapi__frame_free(f);
}

/* ---- timing ---------------------------------------------------------------- */

/* When the connection's current deadline falls: the header deadline
 * for a new connection or a request without its header section yet, the
 * whole-request deadline once the headers are in, the keep-alive idle
 * timeout between requests. */
static int64_t deadline_at(const gconn *c)
{
	const evapi_config *cfg = &c->g->app->cfg;
	if (evapi__frame_in_request(c->frame))
		return c->req_start_us +
		       (int64_t)(c->got_head ? cfg->body_timeout_ms
		                             : cfg->header_timeout_ms) * 1000;
	if (c->served == 0)
		return c->idle_since_us + (int64_t)cfg->header_timeout_ms * 1000;
	return c->idle_since_us + (int64_t)cfg->idle_timeout_ms * 1000;
}

static void timer_in(gconn *c, int64_t us)
{
	struct timeval tv;
	if (us < 0)
		us = 0;
	c->timer_at_us = evapi__now_us() + us;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	evtimer_add(c->timer, &tv);
}

/* Arms the one timer of the connection. No guard deadline runs while
 * evhttp owns a request (the reactor's request deadline covers that
 * time): a timer still pending then fires, finds the request queued and
 * does nothing. A timer that fires before the deadline only looks again
 * and re-arms, so a later deadline needs no re-arming: on a keep-alive
 * connection the timer is touched once per deadline period, not three
 * times per request. */
static void conn_arm(gconn *c)
{
	int64_t at;
	if (c->reject_status || c->silent_close || c->queued > 0 || c->ws)
		return;
	at = deadline_at(c);
	if (evtimer_pending(c->timer, NULL) && c->timer_at_us <= at)
		return;
	timer_in(c, at - evapi__now_us());
}

/* ---- answers the guard writes itself ----------------------------------- */

static const char *reason(int status)
{
	return evapi__reason(status);
}

static size_t own_len(const gconn *c)
{
	return c->own ? evbuffer_get_length(c->own) : 0;
}

/* Queues bytes of our own; most connections never need the buffer. */
static int own_add(gconn *c, const char *s, size_t n)
{
	if (!c->own && !(c->own = evbuffer_new()))
		return -1;
	return evbuffer_add(c->own, s, n);
}

static void write_answer(gconn *c)
{
	char head[352], allow[80] = "";
	size_t bl = 0;
	int hl;
	evapi_app *app = c->g->app;
	/* the app's error shape (no request object here), or {"detail":...} */
	char *body = evapi__error_dump(app, NULL, c->reject_status,
	                               c->reject_detail, &bl);

	if (c->reject_allow)
		evapi__allow_string(c->reject_allow, allow, sizeof allow);
	hl = snprintf(head, sizeof head,
	              "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
	              "Content-Length: %zu\r\n%s%s%s%sConnection: close\r\n\r\n",
	              c->reject_status, reason(c->reject_status), bl,
	              allow[0] ? "Allow: " : "", allow, allow[0] ? "\r\n" : "",
	              c->reject_extra ? c->reject_extra : "");
	/* A HEAD is answered with the headers a GET would get, no body
	 * (RFC 9110 §9.3.2): a body here would be read as the next reply. */
	if (!body || own_add(c, head, (size_t)hl) ||
	    (!c->reject_head && own_add(c, body, bl)) ||
	    send_some(c, c->own) < 0)
		c->write_failed = 1;
	free(body);
	/* Every answer of the guard's own is counted here, whatever the
	 * rule that rejected the request: as a request that matched no
	 * route (with no duration), by status, and as a guard rejection. */
	EVAPI__ADD(&app->stats.guard_rejected, 1);
	evapi__stats_request(app, NULL, c->reject_status, -1);
}

/* Rejects whatever the connection is doing: the answer goes out after the
 * responses evhttp still owes, then the connection closes. */
static void conn_reject(gconn *c, int status, const char *detail)
{
	evapi_app *app = c->g->app;
	if (c->reject_status || c->silent_close)
		return;
	c->reject_status = status;
	c->reject_detail = detail;
	c->reject_head = evapi__frame_is_head(c->frame);
	c->continue_owed = 0;
	evapi__log(app, app->cfg.access_log ? EVAPI_LOG_INFO : EVAPI_LOG_DEBUG,
	           "guard: %d %s (fd %d, after %d request(s)); closing", status,
	           detail, c->fd, c->served);
	conn_kick(c);
}

/* Tells evhttp the client is gone: it frees the connection and, through
 * the filter's free callback, `c`. Nothing may touch `c` afterwards. */
static void conn_finish(gconn *c)
{
	c->finished = 1;
	bufferevent_trigger_event(c->fbev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
}

static size_t out_pending(gconn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->fbev)) +
	       own_len(c);
}

/* The one place where owed writes happen and connections end. Runs from
 * the connection's timer event (deadline or kick), never from inside a
 * libevent buffer callback. */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	gconn *c = arg;
	int64_t now = evapi__now_us();
	int idle;

	if (!alive(c))
		return;
	conn_register(c);
	if (c->write_failed) {
		c->finished = 1;
		bufferevent_trigger_event(c->fbev,
		                          BEV_EVENT_ERROR | BEV_EVENT_WRITING, 0);
		return;
	}
	/* libevent's filter moves output only when its own output callback
	 * runs with writing enabled, and evhttp enables writing after adding
	 * the response: push it through now. */
	if (evbuffer_get_length(bufferevent_get_output(c->fbev)) &&
	    (bufferevent_get_enabled(c->fbev) & EV_WRITE)) {
		flush_evhttp(c);
		if (!alive(c))
			return; /* evhttp closed it after the response */
	}
	if (c->file_cb && file_step(c) && !alive(c))
		return; /* evhttp closed it after the file reply */
	idle = c->queued == 0 &&
	       evbuffer_get_length(bufferevent_get_output(c->fbev)) == 0;
	if (idle && c->ws_state == WS_PENDING && !c->reject_status) {
		/* every earlier response is out: the session's turn */
		c->ws_state = WS_OPEN;
		ws_take_reads(c);
		evapi__ws_start(c->ws);
		if (!alive(c))
			return;
	}
	if (!c->reject_status && !c->silent_close && c->queued == 0 &&
	    !c->ws && now >= deadline_at(c)) {
		if (evapi__frame_in_request(c->frame)) {
			conn_reject(c, 408, c->got_head
			                        ? "Request body not received in time"
			                        : "Request header not received in time");
		} else {
			evapi__log(c->g->app, EVAPI_LOG_DEBUG,
			           "guard: fd %d idle: closing", c->fd);
			c->silent_close = 1;
		}
	}
	if (idle && c->continue_owed) {
		c->continue_owed = 0;
		if (own_add(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) ||
		    send_some(c, c->own) < 0)
			c->write_failed = 1;
	}
	if (c->reject_status || c->silent_close || c->ws_state == WS_ENDING) {
		if (!idle)
			return; /* replied hook or drained output kicks again */
		if (c->reject_status && !c->answer_written) {
			c->answer_written = 1;
			write_answer(c);
		}
		if (out_pending(c))
			return; /* writable_cb kicks when the socket took it */
		if (!c->write_shut) {
			c->write_shut = 1;
			if (c->fd >= 0)
				shutdown(c->fd, SHUT_WR);
			if (c->silent_close || c->ws_closed) {
				conn_finish(c);
				return;
			}
			/* Linger: read and drop what the client still sends
			 * so the answer is not lost to a reset. */
			c->linger_until_us = now + (int64_t)LINGER_MS * 1000;
			timer_in(c, (int64_t)LINGER_MS * 1000);
			return;
		}
		if (now >= c->linger_until_us || c->ws_closed)
			conn_finish(c);
		else if (!evtimer_pending(c->timer, NULL))
			/* libevent's timers run on the coarse monotonic clock
			 * and may fire a few ms before `now` reaches the end:
			 * without this the linger would never end */
			timer_in(c, c->linger_until_us - now);
		return;
	}
	conn_arm(c);
}

/* A separate event from the timer: re-arming a timer drops a pending
 * activation of it, which would lose the kick. One event for all
 * connections, not one each (every connection is a few hundred bytes
 * less), with the kicked ones in a list. */
static void conn_kick(gconn *c)
{
	evapi__guard *g = c->g;
	if (c->finished || c->kicked || !g->kick_ev)
		return;
	c->kicked = 1;
	TAILQ_INSERT_TAIL(&g->kicked, c, kick_link);
	event_active(g->kick_ev, EV_TIMEOUT, 0);
}

/* Runs the connections kicked before this call, in order; a kick made
 * meanwhile activates the event again. A connection freed meanwhile has
 * left the list (conn_free). */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi__guard *g = arg;
	gconn *c, *last = TAILQ_LAST(&g->kicked, gconn_list);

	while (last && (c = TAILQ_FIRST(&g->kicked))) {
		TAILQ_REMOVE(&g->kicked, c, kick_link);
		c->kicked = 0;
		if (c == last)
			last = NULL;
		timer_cb(fd, what, c);
	}
}

static void fout_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                    void *arg)
{
	gconn *c = arg;
	if (info->n_added ||
	    (info->n_deleted && evbuffer_get_length(buf) == 0 &&
	     (c->continue_owed || c->reject_status || c->silent_close ||
	      c->ws_state == WS_PENDING)))
		conn_kick(c);
}

/* ---- the filter ------------------------------------------------------------ */

/* Expect: 100-continue. When the head alone settles the app's answer
 * (no route, wrong method, a media type the route refuses) that answer
 * goes out instead of 100 and the body is never read, so the connection
 * closes after it, like any answer of ours. */
static void expect_continue(gconn *c)
{
	const char *detail;
	unsigned allow;
	int status = evapi__reactor_known_status(
		c->g->app, evapi__frame_method(c->frame),
		evapi__frame_target(c->frame),
		evapi__frame_content_type(c->frame), &allow, &detail);

	if (status) {
		c->reject_allow = allow;
		conn_reject(c, status, detail);
		return;
	}
	c->continue_owed = 1;
	conn_kick(c);
}

/* ---- upload bodies streamed to disk ---------------------------------------- */

/* Reading stops while an upload's writes are behind, and for too many
 * pipelined requests; it goes on when neither holds. */
static void reading_update(gconn *c)
{
	if (c->upload_paused || c->reading_paused)
		bufferevent_disable(c->ubev, EV_READ);
	else
		bufferevent_enable(c->ubev, EV_READ);
}

static int upload_sink(void *arg, const char *data, size_t len, int *status,
                       const char **detail)
{
	gconn *c = arg;

	if (evapi__ustream_feed(c->upload, data, len, status, detail) != 0)
		return -1;
	if (!c->upload_paused && evapi__ustream_backlogged(c->upload)) {
		c->upload_paused = 1;
		reading_update(c);
	}
	return 0;
}

/* A write job ended: read again, or answer the stream's failure. */
static void upload_kick(void *arg)
{
	gconn *c = arg;
	const char *detail;
	int status;

	if (!alive(c))
		return;
	if (evapi__ustream_failed(c->upload, &status, &detail)) {
		conn_reject(c, status, detail);
		return;
	}
	if (c->upload_paused && !evapi__ustream_backlogged(c->upload)) {
		c->upload_paused = 0;
		reading_update(c);
	}
}

/* The header section of a request with a body is in: a body for an
 * upload route is streamed to disk rather than buffered. */
static void upload_head(void *arg, evapi__frame *f)
{
	gconn *c = arg;
	char boundary[80];
	const evapi_upload *up = evapi__reactor_upload(
		c->g->app, evapi__frame_method(f), evapi__frame_target(f),
		evapi__frame_content_type(f), boundary, sizeof boundary);

	evapi__ustream_unref(c->upload);
	c->upload = NULL;
	if (!up || !(c->upload = evapi__ustream_new(c->g->app, up,
	                                            boundary[0] ? boundary
	                                                        : NULL)))
		return; /* buffered as any body (bounded by max_body_bytes) */
	evapi__ustream_on_kick(c->upload, upload_kick, c);
	evapi__frame_set_sink(f, upload_sink, c,
	                      evapi__ustream_body_limit(c->upload));
}

/* The whole body arrived: the stream waits for the reactor to take it
 * with its request. 0, or -1 when the body is refused. */
static int upload_hand(gconn *c)
{
	evapi__ustream *us = c->upload;
	struct uphand *h = NULL, **pp;
	const char *detail = NULL;
	int status = 0;

	if (!us)
		return 0;
	c->upload = NULL;
	evapi__ustream_on_kick(us, NULL, NULL);
	if (c->upload_paused) {
		c->upload_paused = 0;
		reading_update(c);
	}
	if (evapi__ustream_finish(us, &status, &detail) != 0 ||
	    !(h = malloc(sizeof *h))) {
		/* the answer's detail lives in the stream: keep it */
		c->upload = us;
		if (!status) {
			status = 500;
			detail = "Out of memory";
		}
		conn_reject(c, status, detail);
		return -1;
	}
	h->next = NULL;
	h->seq = c->served + 1; /* on_request counts it next */
	h->us = us;
	for (pp = &c->handed; *pp; pp = &(*pp)->next)
		;
	*pp = h;
	return 0;
}

evapi__ustream *evapi__guard_take_upload(evapi_app *app,
                                         struct bufferevent *bev)
{
	gconn *c = conn_of(app, bev);
	struct uphand *h;
	evapi__ustream *us = NULL;

	if (!c)
		return NULL;
	c->taken++;
	while ((h = c->handed) && h->seq <= c->taken) {
		c->handed = h->next;
		if (h->seq == c->taken)
			us = h->us;
		else
			evapi__ustream_unref(h->us);
		free(h);
	}
	return us;
}

static void upload_free_all(gconn *c)
{
	struct uphand *h;

	if (c->upload)
		evapi__ustream_on_kick(c->upload, NULL, NULL);
	evapi__ustream_unref(c->upload);
	c->upload = NULL;
	while ((h = c->handed)) {
		c->handed = h->next;
		evapi__ustream_unref(h->us);
		free(h);
	}
}

/* A whole request: the `used` bytes at the front of src (`raw` when they
 * are all this request's, else NULL) leave src, and what evhttp is to
 * parse goes to dst: the client's bytes themselves, moved by reference,
 * when the re-framed request is byte for byte what the client sent (a
 * plain GET with nothing to drop: evhttp parses nothing the guard did
 * not accept either way), else the re-framed copy. */
static void on_request(gconn *c, struct evbuffer *src, struct evbuffer *dst,
                       const char *raw, size_t used)
{
	const evapi_config *cfg = &c->g->app->cfg;
	const char *head, *body;
	size_t hl, bl;
	int close;

	c->served++;
	close = c->served >= cfg->keepalive_max_requests ||
	        !evapi__frame_keeps_alive(c->frame);
	evapi__frame_request(c->frame, close, &head, &hl, &body, &bl);
	if (!(raw && bl == 0 && hl == used && memcmp(head, raw, hl) == 0 &&
	      evbuffer_remove_buffer(src, dst, used) == (int)used)) {
		evbuffer_drain(src, used);
		evbuffer_add(dst, head, hl);
		if (bl)
			evbuffer_add(dst, body, bl);
	}
	/* After the last request (ours, or the client's "Connection:
	 * close" or HTTP/1.0, after which RFC 9112 serves nothing more) the
	 * connection needs no parser: thousands of connections waiting on
	 * slow handlers stay small. Keep-alive ones drop theirs once
	 * their request waits (evapi__guard_waiting). */
	if (close) {
		c->last = 1;
		frame_put(c->g, c->frame);
		c->frame = NULL;
		rpin_free(c); /* no next request to keep epoll quiet for */
	}
	c->queued++;
	c->got_head = 0;
	c->continue_owed = 0;
	if (c->queued >= PIPELINE_MAX && !c->reading_paused) {
		/* Bounds what a pipelining client can make us hold. */
		c->reading_paused = 1;
		bufferevent_disable(c->ubev, EV_READ);
	}
}

/* ---- WebSocket connections -------------------------------------------------- */

static void ws_refuse_pending(gconn *c, const char *detail)
{
	evapi_ws *ws = c->ws;
	c->ws = NULL;
	c->ws_state = WS_NONE;
	evapi__ws_conn_gone(ws);
	conn_reject(c, 400, detail);
}

/* A whole request: when its path is a WebSocket route, the guard keeps
 * it (returns 1): refused with its status, or a session that starts once
 * the responses ahead of it are out. Either way it is the connection's
 * last HTTP request. */
static int ws_upgrade(gconn *c)
{
	evapi_app *app = c->g->app;
	const char *head, *body, *up, *conn, *detail = NULL, *extra = NULL;
	size_t hl, bl;
	evapi_ws *ws = NULL;
	int rc;

	if (!evapi__ws_is_route(app, evapi__frame_target(c->frame)))
		return 0;
	evapi__frame_upgrade(c->frame, &up, &conn);
	evapi__frame_request(c->frame, 1, &head, &hl, &body, &bl);
	rc = evapi__ws_handshake(app, c, head, hl, up, conn, &ws, &detail,
	                         &extra);
	if (rc == 0)
		return 0;
	c->last = 1;
	frame_put(c->g, c->frame);
	c->frame = NULL;
	if (rc != 1) {
		c->reject_extra = extra;
		conn_reject(c, rc, detail);
		return 1;
	}
	c->ws = ws;
	c->ws_state = WS_PENDING;
	conn_kick(c); /* bytes behind it: filter_in refuses it next */
	return 1;
}

static void cork_flush(evapi__guard *g);

/* One read's bytes to the session; what it sent meanwhile, if ws.c
 * corked it (several frames in the read), goes out once they are
 * handled. */
static void ws_feed(gconn *c, const void *data, size_t len)
{
	evapi__guard *g = c->g;

	evapi__ws_input(c->ws, data, len);
	/* c may be gone: conn_free cleared the cork then */
	if (g->cork_conn) {
		cork_flush(g);
		g->cork_conn = NULL;
	}
}

/* Everything read goes to the session; none of it to evhttp. While
 * ENDING the session still reads, for the peer's close frame. */
static void ws_read(gconn *c, struct evbuffer *src)
{
	while (evbuffer_get_length(src) > 0 && c->ws && !c->ws_closed &&
	       (c->ws_state == WS_OPEN || c->ws_state == WS_ENDING)) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(src, -1, NULL, &v, 1) < 1)
			break;
		ws_feed(c, v.iov_base, v.iov_len);
		evbuffer_drain(src, v.iov_len);
	}
	evbuffer_drain(src, evbuffer_get_length(src));
}

/* ---- the read pin ---------------------------------------------------------
 *
 * evhttp turns the bufferevent's reading off when it takes a request and
 * on again once the reply is written. A reply written in the loop turn
 * that read its request (evapi__guard_sent_whole) does both in one
 * turn, and libevent's changelist still makes of that delete and add one
 * epoll_ctl(EPOLL_CTL_MOD) per request, to the interest the socket
 * already has. A second read event on the socket, kept added, makes
 * libevent count two readers of it: the bufferevent's delete and add then
 * move the count between two and one, and epoll is not called. The pin's
 * callback does nothing while the bufferevent reads as well (filter_in
 * runs at each wakeup); when the socket is readable and the bufferevent's
 * reading is off (a request waiting on the pool, reading paused), the
 * level-triggered pin would wake the loop for nothing, so at its second
 * wakeup without filter_in it removes itself, and filter_in adds it
 * again. */
static void rpin_drop(gconn *c)
{
	if (c->rpin_on)
		event_del(c->rpin);
	c->rpin_on = 0;
}

static void rpin_cb(evutil_socket_t fd, short what, void *arg)
{
	gconn *c = arg;
	if (++c->rpin_idle >= 2 || !alive(c))
		rpin_drop(c);
}

/* After the connection's last request: the pin saves nothing more, and
 * thousands of connections waiting on slow handlers stay smaller. */
static void rpin_free(gconn *c)
{
	rpin_drop(c);
	if (c->rpin)
		event_free(c->rpin);
	c->rpin = NULL;
}

static void rpin_keep(gconn *c)
{
	c->rpin_idle = 0;
	if (c->rpin_on || c->fd < 0 || c->ws_state != WS_NONE || c->last)
		return;
	if (!c->rpin)
		c->rpin = event_new(bufferevent_get_base(c->fbev), c->fd,
		                    EV_READ | EV_PERSIST, rpin_cb, c);
	if (c->rpin && event_add(c->rpin, NULL) == 0)
		c->rpin_on = 1;
}

/* ---- reading the socket ----------------------------------------------------
 *
 * libevent's socket bufferevent reads with evbuffer_read, which asks the
 * kernel how much is waiting (ioctl FIONREAD) before each readv: one
 * system call per request more than the read needs. Once the socket is
 * known (conn_register), the guard gives that bufferevent's read event a
 * callback of its own. The event stays libevent's to add and remove, so
 * everything that decides whether the socket is read still does:
 * evhttp turning the filter's reading off and on (libevent suspends the
 * socket bufferevent's), reading_update, ws_take_reads, the read pin.
 * Only the wakeup changes: one recv of up to READ_MAX, whose bytes join
 * the input buffer, then what libevent's reader would run: the filter's
 * read callback (filter_in), or on end of file or an error the event
 * callback with BEV_EVENT_READING, reading off. The recv goes to the
 * stack and the bytes are copied: space reserved in the input buffer for
 * a whole READ_MAX is a 32 KiB allocation per read, where libevent's,
 * sized by FIONREAD, fits the request (bench/NOTES.md, step 15). Nothing
 * sets a timeout or a read watermark on the socket bufferevent (evhttp's
 * timeouts are the filter's own), so the event is added without one. A
 * later bufferevent_setfd would give libevent its reader back. */
static void sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
	gconn *c = arg;
	struct bufferevent *u = c->ubev;
	struct evbuffer *in = bufferevent_get_input(u);
	char buf[READ_MAX];
	ssize_t n;
	int added;

	(void)what;
	if (!alive(c)) {
		event_del(&u->ev_read);
		return;
	}
	n = recv(fd, buf, sizeof buf, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n > 0) {
		/* the socket bufferevent keeps its input's end frozen but
		 * while it reads; so do we */
		evbuffer_unfreeze(in, 0);
		added = evbuffer_add(in, buf, (size_t)n);
		evbuffer_freeze(in, 0);
		if (added == 0) {
			bufferevent_trigger(u, EV_READ, 0);
			return;
		}
	}
	/* the peer closed or reset (or the bytes found no room): as
	 * libevent's reader reports it */
	bufferevent_disable(u, EV_READ);
	bufferevent_trigger_event(u,
	                          (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) |
	                                  BEV_EVENT_READING,
	                          0);
}

static void reads_take(gconn *c)
{
	struct bufferevent *u = c->ubev;
	int on;

	if (event_get_callback(&u->ev_read) == sock_read_cb ||
	    event_get_fd(&u->ev_read) != c->fd)
		return;
	/* added or not, as libevent left it; from inside its own callback
	 * too (the first read), which libevent allows */
	on = event_pending(&u->ev_read, EV_READ, NULL) != 0;
	event_del(&u->ev_read);
	if (event_assign(&u->ev_read, bufferevent_get_base(u), c->fd,
	                 EV_READ | EV_PERSIST | EV_FINALIZE, sock_read_cb,
	                 c) == 0 &&
	    on)
		event_add(&u->ev_read, NULL);
}

static void sock_read_gone(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* c goes before the socket bufferevent, which libevent then finalizes
 * through its read event, with that event's argument as the
 * bufferevent: the argument must be the bufferevent again, and the
 * event must not call us. */
static void reads_stop(gconn *c)
{
	struct bufferevent *u = c->ubev;

	if (event_get_callback(&u->ev_read) != sock_read_cb)
		return;
	event_del(&u->ev_read);
	event_assign(&u->ev_read, bufferevent_get_base(u),
	             event_get_fd(&u->ev_read),
	             EV_READ | EV_PERSIST | EV_FINALIZE, sock_read_gone, u);
}

/* An open session's bytes, read straight from the socket (see
 * ws_take_reads). One recv per wakeup: the event is level-triggered, so
 * what is left wakes it again, and no recv is spent to see EAGAIN. */
static void ws_read_cb(evutil_socket_t fd, short what, void *arg)
{
	gconn *c = arg;
	char buf[16384];
	ssize_t n;

	if (!alive(c)) {
		event_del(c->ws_rev);
		return;
	}
	n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n > 0) {
		/* while ENDING the session still reads, for the peer's close
		 * frame; then the linger drops what comes */
		if (c->ws && !c->ws_closed &&
		    (c->ws_state == WS_OPEN || c->ws_state == WS_ENDING))
			ws_feed(c, buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	/* the peer is gone: evhttp frees the connection, as it would on
	 * the bufferevent's own EOF or error */
	event_del(c->ws_rev);
	c->finished = 1;
	bufferevent_trigger_event(c->fbev,
	                          (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) |
	                                  BEV_EVENT_READING,
	                          0);
}

/* The session starts: from now on its bytes are read by an event of the
 * guard's own, not by the bufferevent, whose read path costs an
 * ioctl(FIONREAD), a buffer and the filter's pass per message. Nothing
 * waits in the bufferevent (bytes before the 101 refuse the session),
 * and nothing enables its reading again (evhttp enables only the
 * filter's, which does not reach the socket's). Without the event (no
 * memory) the filter goes on reading (ws_read). */
static void ws_take_reads(gconn *c)
{
	if (c->fd < 0 || c->ws_rev)
		return;
	c->ws_rev = event_new(bufferevent_get_base(c->fbev), c->fd,
	                      EV_READ | EV_PERSIST, ws_read_cb, c);
	if (!c->ws_rev)
		return;
	rpin_drop(c);
	bufferevent_disable(c->ubev, EV_READ);
	event_add(c->ws_rev, NULL);
}

/* A frame's two parts: straight to the socket while nothing is queued
 * ahead of them (no copy, no buffer); what the socket does not take is
 * queued in `own`, and send_some arms the writable event for it. */
static int ws_write(gconn *c, const void *a, size_t al, const void *b,
                    size_t bl)
{
	conn_register(c);
	if (own_len(c) == 0 && c->fd >= 0) {
		struct iovec v[2] = {{(void *)a, al}, {(void *)b, bl}};
		struct msghdr m;
		ssize_t n;

		memset(&m, 0, sizeof m);
		m.msg_iov = v;
		m.msg_iovlen = 2;
		n = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			c->write_failed = 1;
			conn_kick(c);
			return -1;
		}
		if (n < 0)
			n = 0;
		if ((size_t)n >= al) {
			n -= (ssize_t)al;
			al = 0;
			if (n > 0) {
				b = (const char *)b + n;
				bl -= (size_t)n;
			}
		} else {
			a = (const char *)a + n;
			al -= (size_t)n;
		}
		if (al + bl == 0)
			return 0;
	}
	if ((al && own_add(c, (const char *)a, al)) ||
	    (bl && own_add(c, (const char *)b, bl)))
		return -1;
	if (send_some(c, c->own) < 0) {
		c->write_failed = 1;
		conn_kick(c);
		return -1;
	}
	return 0;
}

int evapi__guard_ws_send(gconn *c, const void *a, size_t al, const void *b,
                         size_t bl)
{
	evapi__guard *g = c->g;

	if (c->write_failed || c->ws_state == WS_ENDING || !alive(c))
		return -1;
	/* While the cork holds bytes, `own` is empty: the cork takes bytes
	 * only then, and only ws_write (after the cork is flushed, or with
	 * `own` already holding bytes, so the cork empty) fills `own`. */
	if (g->cork_conn == c) {
		if (g->cork_len + al + bl > sizeof g->cork)
			cork_flush(g); /* what it held goes first */
		if (own_len(c) == 0 && g->cork_len + al + bl <= sizeof g->cork) {
			memcpy(g->cork + g->cork_len, a, al);
			g->cork_len += al;
			if (bl)
				memcpy(g->cork + g->cork_len, b, bl);
			g->cork_len += bl;
			return 0;
		}
		if (c->write_failed)
			return -1;
	}
	return ws_write(c, a, al, b, bl);
}

/* Writes what the session being read sent meanwhile (before anything
 * it sends next, and before its kick runs: ws_end's shutdown waits for
 * `own`, which these bytes join if the socket refuses them). */
static void cork_flush(evapi__guard *g)
{
	gconn *c = g->cork_conn;
	size_t n = g->cork_len;

	g->cork_len = 0;
	if (!c || !n || c->write_failed || !alive(c))
		return;
	/* the sends were answered 0 already: a failure (no memory for the
	 * queue) ends the connection, as a failed write does */
	if (ws_write(c, g->cork, n, NULL, 0) < 0 && !c->write_failed) {
		c->write_failed = 1;
		conn_kick(c);
	}
}

void evapi__guard_ws_cork(gconn *c)
{
	c->g->cork_conn = c;
}

size_t evapi__guard_ws_queued(const gconn *c)
{
	return own_len(c) + (c->g->cork_conn == c ? c->g->cork_len : 0);
}

void evapi__guard_ws_end(gconn *c)
{
	if (c->ws_state == WS_ENDING)
		return;
	c->ws_state = WS_ENDING;
	conn_kick(c);
}

void evapi__guard_ws_done(gconn *c)
{
	c->ws_closed = 1;
	evapi__guard_ws_end(c);
	conn_kick(c);
}

void evapi__guard_ws_refuse(gconn *c, int status, const char *detail)
{
	/* the session stays attached: conn_free releases it */
	c->ws_state = WS_NONE;
	conn_reject(c, status, detail);
}

void evapi__guard_ws_detach(gconn *c)
{
	c->ws = NULL;
}

void evapi__guard_ws_cut(gconn *c)
{
	if (c->g->cork_conn == c)
		c->g->cork_len = 0;
	if (c->own)
		evbuffer_drain(c->own, own_len(c));
	if (alive(c))
		conn_finish(c);
}

static enum bufferevent_filter_result
filter_in(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
          enum bufferevent_flush_mode mode, void *arg)
{
	gconn *c = arg;
	int produced = 0;

	if (!alive(c)) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_NEED_MORE;
	}
	conn_register(c);
	rpin_keep(c);
	while (evbuffer_get_length(src) > 0) {
		struct evbuffer_iovec v;
		size_t used;
		int ev, began;

		if (c->ws_state == WS_OPEN ||
		    (c->ws_state == WS_ENDING && c->ws && !c->ws_closed)) {
			ws_read(c, src);
			break;
		}
		if (c->ws_state == WS_PENDING && !c->reject_status) {
			/* RFC 6455 4.1: a client waits for the 101 before
			 * sending anything; bytes now cannot be framed. */
			ws_refuse_pending(c, "Data sent before the WebSocket "
			                     "handshake completed");
		}
		if (c->last || c->reject_status || c->silent_close ||
		    c->ws_state == WS_ENDING) {
			evbuffer_drain(src, evbuffer_get_length(src));
			break;
		}
		if (!c->frame && !(c->frame = frame_get(c))) {
			conn_reject(c, 500, "Out of memory");
			continue;
		}
		if (evbuffer_peek(src, -1, NULL, &v, 1) < 1 || v.iov_len == 0) {
			v.iov_base = evbuffer_pullup(src, -1);
			v.iov_len = evbuffer_get_length(src);
		}
		ev = evapi__frame_feed(c->frame, v.iov_base, v.iov_len, &used);
		began = evapi__frame_began(c->frame);
		if (began) {
			c->req_start_us = evapi__now_us();
			c->got_head = 0;
		}
		/* a whole request leaves src in on_request */
		if (ev != EVAPI__FRAME_REQUEST)
			evbuffer_drain(src, used);
		switch (ev) {
		case EVAPI__FRAME_BEGIN:
			conn_arm(c);
			break;
		case EVAPI__FRAME_HEAD:
			c->got_head = 1;
			if (evapi__frame_expects_continue(c->frame))
				expect_continue(c);
			conn_arm(c);
			break;
		case EVAPI__FRAME_REQUEST:
			if (ws_upgrade(c) || upload_hand(c)) {
				evbuffer_drain(src, used);
				break;
			}
			/* the raw bytes are this request's alone when it
			 * began in this feed (src starts where the last
			 * request ended) */
			on_request(c, src, dst, began ? v.iov_base : NULL, used);
			produced = 1;
			break;
		case EVAPI__FRAME_ERROR: {
			const char *detail;
			int status = evapi__frame_error(c->frame, &detail);
			conn_reject(c, status, detail);
			break;
		}
		default:
			if (used == 0)
				return produced ? BEV_OK : BEV_NEED_MORE;
			break;
		}
	}
	return produced ? BEV_OK : BEV_NEED_MORE;
}

/* Sends what `b` holds without blocking and without SIGPIPE (a client
 * that resets must not kill the process). Returns bytes sent, or -1 when
 * the socket is dead. Arms the writable event for any rest. */
static long send_some(gconn *c, struct evbuffer *b)
{
	struct evbuffer_iovec v[16];
	struct msghdr m;
	ssize_t n;
	int nv;

	conn_register(c);
	if (c->fd < 0 || evbuffer_get_length(b) == 0)
		return 0;
	nv = evbuffer_peek(b, -1, NULL, v, 16);
	if (nv > 16)
		nv = 16;
	memset(&m, 0, sizeof m);
	m.msg_iov = (struct iovec *)v;
	m.msg_iovlen = (size_t)nv;
	/* headers with a file body behind them: held for its first bytes
	 * (the sendfile without MSG_MORE pushes both) */
	n = sendmsg(c->fd, &m,
	            MSG_NOSIGNAL | MSG_DONTWAIT | (c->file_cb ? MSG_MORE : 0));
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return -1;
	if (n > 0)
		evbuffer_drain(b, (size_t)n);
	if (evbuffer_get_length(b) > 0)
		wait_writable(c);
	return n > 0 ? (long)n : 0;
}

/* Arms the writable event for output the socket did not take. */
static void wait_writable(gconn *c)
{
	/* a client that stops reading is cut after this, and one that
	 * reads too slowly at its reply deadline */
	const evapi_config *cfg = &c->g->app->cfg;
	int64_t us = (int64_t)(cfg->body_timeout_ms > cfg->header_timeout_ms
	                               ? cfg->body_timeout_ms
	                               : cfg->header_timeout_ms) * 1000;
	struct timeval tv;

	if (!c->writable)
		c->writable = event_new(bufferevent_get_base(c->fbev), c->fd,
		                        EV_WRITE, writable_cb, c);
	if (!c->writable)
		return;
	if (c->reply_by_us) {
		int64_t left = c->reply_by_us - evapi__now_us();
		if (left < us)
			us = left > 0 ? left : 0;
	}
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	event_add(c->writable, &tv);
}

/* ---- file bodies: sendfile(2) -------------------------------------------- */

/* The file body's owner learns how it ended; `c` forgets it first. */
static void file_done(gconn *c, int sent)
{
	evapi__guard_file_cb cb = c->file_cb;

	c->file_cb = NULL;
	cb(c->file_arg, sent);
}

/* sendfile(2) has no MSG_NOSIGNAL: a client that reset would raise
 * SIGPIPE, which kills a process that has not ignored it, and a library
 * does not set the process's dispositions. The signal is thread-directed,
 * so it is blocked on this thread for the call, and one the call raised
 * is taken (sigtimedwait, not waiting) before the mask is restored. */
static ssize_t sendfile_nosig(int out, int in, off_t *off, size_t n)
{
	static const struct timespec zero = {0, 0};
	sigset_t pipe, old;
	ssize_t r;
	int err;

	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, &old);
	r = sendfile(out, in, off, n);
	err = errno;
	/* Raised with EPIPE, with a reset's ECONNRESET too, and also by a
	 * short count (the kernel's splice returns the bytes it moved
	 * before the socket failed): anything but a whole write or a full
	 * socket may have raised it. */
	if (!sigismember(&old, SIGPIPE) &&
	    (r < 0 ? err != EAGAIN && err != EWOULDBLOCK : (size_t)r < n))
		while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR)
			;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return r;
}

/* Sends the file body as far as the socket takes it, once evhttp's
 * output (the headers) has gone: from the page cache to the socket in
 * the kernel, nothing buffered here, so a slow reader holds back only
 * its own socket. When the last byte is out the owner ends the reply
 * (evhttp may free the connection in there, or start on the next
 * request): returns 1 then, and the caller checks alive(c). A socket
 * that fails, or a file that shrank under its Content-Length, cuts the
 * connection through the timer, like a failed write of evhttp's. */
static int file_step(gconn *c)
{
	off_t budget = FILE_TURN;
	ssize_t n;

	if (c->write_failed || c->fd < 0 || own_len(c) > 0 ||
	    evbuffer_get_length(bufferevent_get_output(c->fbev)) > 0)
		return 0;
	while (c->file_off < c->file_end && budget > 0) {
		off_t want = c->file_end - c->file_off;
		if (want > budget)
			want = budget;
		n = sendfile_nosig(c->fd, c->file_fd, &c->file_off,
		                   (size_t)want);
		if (n > 0) {
			budget -= n;
			EVAPI__ADD(&c->g->app->stats.file_sendfile_bytes,
			           (unsigned long long)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			wait_writable(c);
			return 0;
		}
		evapi__log(c->g->app, n == 0 ? EVAPI_LOG_WARN : EVAPI_LOG_DEBUG,
		           "guard: fd %d: file body cut: %s", c->fd,
		           n == 0 ? "the file shrank" : strerror(errno));
		c->write_failed = 1;
		conn_kick(c);
		return 0;
	}
	if (c->file_off < c->file_end) {
		wait_writable(c); /* still writable: the next turn goes on */
		return 0;
	}
	file_done(c, 1);
	return 1;
}

int evapi__guard_send_file(evapi_app *app, struct bufferevent *bev, int fd,
                           off_t off, off_t len, evapi__guard_file_cb done,
                           void *arg)
{
	gconn *c = conn_of(app, bev);

	if (!c || c->file_cb || !alive(c) || c->write_failed || len <= 0)
		return -1;
	c->file_cb = done;
	c->file_arg = arg;
	c->file_fd = fd;
	c->file_off = off;
	c->file_end = off + len;
	conn_kick(c);
	return 0;
}

/* evhttp's output is sent only from here, never from the buffer
 * callback: sent from there, a last chunk would be written before evhttp
 * had set up its "response done" callback, and evhttp would never learn
 * the response was complete. So it goes from the connection's kick, a
 * loop turn later, or for a whole reply from evapi__guard_sent_whole,
 * once evhttp_send_reply has returned. */
static void flush_evhttp(gconn *c)
{
	c->flushing = 1;
	bufferevent_flush(c->fbev, EV_WRITE, BEV_NORMAL);
	c->flushing = 0;
}

static void writable_cb(evutil_socket_t fd, short what, void *arg)
{
	gconn *c = arg;
	if (!alive(c))
		return;
	if (what & EV_TIMEOUT) {
		evapi_app *app = c->g->app;
		/* Reset, not close: what the kernel still holds for this
		 * reader would otherwise trickle out (and stay allocated)
		 * after the socket is closed. */
		struct linger lg = {1, 0};
		if (c->reply_by_us && evapi__now_us() >= c->reply_by_us) {
			EVAPI__ADD(&app->stats.reply_write_timeouts, 1);
			evapi__log(app, EVAPI_LOG_WARN,
			           "guard: fd %d did not read its reply within "
			           "%d ms (%zu bytes left): closing", c->fd,
			           app->cfg.reply_write_timeout_ms,
			           evbuffer_get_length(
				           bufferevent_get_output(c->fbev)));
		} else {
			evapi__log(app, EVAPI_LOG_INFO,
			           "guard: fd %d stopped reading its response: "
			           "closing", c->fd);
		}
		if (c->fd >= 0)
			setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		c->write_failed = 1;
		conn_kick(c);
		return;
	}
	if (own_len(c) > 0) {
		if (send_some(c, c->own) < 0)
			c->write_failed = 1;
		if (c->write_failed || own_len(c) == 0)
			conn_kick(c);
		return; /* evhttp's output waits behind ours */
	}
	flush_evhttp(c);
	if (c->file_cb && alive(c))
		file_step(c);
}

/* evhttp's output goes straight to the socket. Handing it to the
 * underlying bufferevent instead would let evhttp believe a response was
 * written while it still sat in a buffer, and evhttp frees (and shuts
 * down) a "Connection: close" connection the moment it believes that.
 * So bytes leave this buffer only once the kernel has them. */
static enum bufferevent_filter_result
filter_out(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit,
           enum bufferevent_flush_mode mode, void *arg)
{
	gconn *c = arg;
	long n;

	if (!c->flushing || !alive(c) || c->write_failed ||
	    own_len(c) > 0)
		return BEV_NEED_MORE;
	n = send_some(c, src);
	if (n < 0) {
		c->write_failed = 1; /* the timer reports it to evhttp */
		conn_kick(c);
		return BEV_ERROR;
	}
	if (evbuffer_get_length(src) == 0)
		c->reply_by_us = 0; /* evhttp writes one reply at a time */
	return n > 0 ? BEV_OK : BEV_NEED_MORE;
}

/* ---- connection lifetime --------------------------------------------------- */

static void conn_free(void *arg)
{
	gconn *c = arg;
	evapi__guard *g = c->g;

	if (!g->dead && c->fd >= 0 && c->fd < g->nfd && g->byfd[c->fd] == c)
		g->byfd[c->fd] = NULL;
	if (c->fout_cb)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->fbev),
		                         c->fout_cb);
	if (g->cork_conn == c) {
		g->cork_conn = NULL;
		g->cork_len = 0;
	}
	if (c->own)
		evbuffer_free(c->own);
	if (c->timer)
		event_free(c->timer);
	if (c->kicked)
		TAILQ_REMOVE(&g->kicked, c, kick_link);
	if (c->flush_due) {
		TAILQ_REMOVE(&g->flushq, c, flush_link);
		g->nflush--;
	}
	if (c->writable)
		event_free(c->writable);
	if (c->ws_rev)
		event_free(c->ws_rev);
	if (c->rpin)
		event_free(c->rpin); /* before the socket closes */
	reads_stop(c);
	if (c->ws)
		evapi__ws_conn_gone(c->ws);
	upload_free_all(c); /* their temporary files go */
	if (c->file_cb)
		file_done(c, 0);
	frame_put(g, c->frame);
	free(c);
	g->nconns--;
	if (g->dead) {
		/* libevent finalizes filters after evhttp_free returned */
		if (g->nconns == 0)
			free(g);
		return;
	}
	if (g->accept_paused)
		event_active(g->resume_ev, EV_TIMEOUT, 0);
}

static struct bufferevent *bevcb(struct event_base *base, void *arg)
{
	evapi__guard *g = arg;
	gconn *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->g = g;
	c->fd = -1;
	c->idle_since_us = evapi__now_us();
	c->timer = evtimer_new(base, timer_cb, c);
	c->frame = frame_get(c);
	c->ubev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->frame || !c->timer || !c->ubev)
		goto err;
	c->fbev = bufferevent_filter_new(c->ubev, filter_in, filter_out,
	                                 BEV_OPT_CLOSE_ON_FREE, conn_free, c);
	if (!c->fbev)
		goto err;
	g->nconns++; /* conn_free undoes this from here on */
	c->fout_cb = evbuffer_add_cb(bufferevent_get_output(c->fbev), fout_cb, c);
	if (g->nconns > g->app->cfg.max_connections)
		conn_reject(c, 503, "Too many connections");
	else
		conn_arm(c);
	return c->fbev;
err:
	/* evhttp falls back to a plain bufferevent: log it loudly. */
	evapi__log(g->app, EVAPI_LOG_ERROR,
	           "guard: out of memory setting up a connection");
	if (c->ubev)
		bufferevent_free(c->ubev);
	if (c->timer)
		event_free(c->timer);
	evapi__frame_free(c->frame);
	free(c);
	return NULL;
}

/* The guard's connection behind evhttp's bufferevent, or NULL. */
static gconn *conn_of(evapi_app *app, struct bufferevent *bev)
{
	evapi__guard *g = app->guard;
	int fd = bev ? (int)bufferevent_getfd(bev) : -1;
	gconn *c;

	if (!g || fd < 0 || fd >= g->nfd || !(c = g->byfd[fd]) || c->fbev != bev)
		return NULL;
	return c;
}

void evapi__guard_waiting(evapi_app *app, struct bufferevent *bev)
{
	gconn *c = conn_of(app, bev);
	/* Between requests a new parser is the same as the old one, and
	 * the next byte creates it. */
	if (c && c->frame && !evapi__frame_in_request(c->frame)) {
		frame_put(c->g, c->frame);
		c->frame = NULL;
	}
}

static void replied(gconn *c, int64_t now, int kick)
{
	if (c->queued > 0)
		c->queued--;
	if (c->reading_paused && c->queued < PIPELINE_MAX / 2) {
		c->reading_paused = 0;
		reading_update(c);
	}
	if (c->queued == 0) {
		c->idle_since_us = now;
		if (evapi__frame_in_request(c->frame))
			c->req_start_us = now; /* it waited on us */
		if (kick)
			conn_kick(c);
	}
}

void evapi__guard_replied(evapi_app *app, struct bufferevent *bev)
{
	gconn *c = conn_of(app, bev);

	if (c)
		replied(c, evapi__now_us(), 1);
}

gconn *evapi__guard_replied_whole(evapi_app *app, struct bufferevent *bev)
{
	gconn *c = conn_of(app, bev);
	int ms = app->cfg.reply_write_timeout_ms;
	int64_t now;

	if (!c)
		return NULL;
	now = evapi__now_us();
	/* evapi__guard_sent_whole sends it or kicks */
	replied(c, now, 0);
	if (ms > 0)
		c->reply_by_us = now + (int64_t)ms * 1000;
	/* evhttp is about to add the reply in six or more pieces, and
	 * fout_cb would kick the connection at each: it stays off until
	 * evapi__guard_sent_whole, which sends or kicks itself. */
	if (c->fout_cb && !c->handing_over) {
		c->handing_over = 1;
		evbuffer_cb_clear_flags(bufferevent_get_output(c->fbev),
		                        c->fout_cb, EVBUFFER_CB_ENABLED);
	}
	return c;
}

/* Nothing owed on the connection but evhttp's output: what timer_cb
 * would do for it is flush and re-arm. */
static int plain(gconn *c)
{
	return !c->write_failed && !c->reject_status && !c->silent_close &&
	       !c->ws && !c->continue_owed && !c->kicked && own_len(c) == 0 &&
	       alive(c);
}

/* Writes a whole reply queued by evapi__guard_sent_whole, when nothing
 * came between (then the kick does it). Sending from here is safe where
 * the buffer callback was not: evhttp set its "response done" callback
 * before evhttp_send_reply returned. When the kernel takes the whole
 * reply, evhttp completes it inside this call (it frees its request,
 * and the connection after a "Connection: close"); nothing here touches
 * either afterwards. */
static void flush_whole(gconn *c)
{
	if (plain(c) && (bufferevent_get_enabled(c->fbev) & EV_WRITE)) {
		flush_evhttp(c);
		if (!alive(c))
			return; /* evhttp closed it after the reply */
		if (plain(c) && evbuffer_get_length(
		                        bufferevent_get_output(c->fbev)) == 0) {
			conn_arm(c);
			return;
		}
	}
	conn_kick(c);
}

/* Runs the queued replies, those queued meanwhile too (a pipelined
 * request's, read once the reply before it was out): each connection
 * holds at most PIPELINE_MAX, so this ends. A connection freed
 * meanwhile has left the queue (conn_free). */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi__guard *g = arg;
	gconn *c;

	while ((c = TAILQ_FIRST(&g->flushq))) {
		TAILQ_REMOVE(&g->flushq, c, flush_link);
		g->nflush--;
		c->flush_due = 0;
		flush_whole(c);
	}
}

/* A whole reply is written a moment later, not here: once the loop has
 * handled the other requests read in the same turn (flush_ev is made
 * active, so it runs in this turn, after the callbacks already due), or
 * with FLUSH_BATCH replies queued, at once with the others. A client
 * that sent several requests on several connections then gets their
 * replies back to back and wakes once for them, as it does from raw
 * evhttp, which writes on the socket's next writable event; written one
 * by one between the reads, each reply could wake it on its own. */
void evapi__guard_sent_whole(gconn *c, int now)
{
	evapi__guard *g;

	if (!c)
		return;
	if (c->handing_over) {
		c->handing_over = 0;
		if (alive(c))
			evbuffer_cb_set_flags(bufferevent_get_output(c->fbev),
			                      c->fout_cb, EVBUFFER_CB_ENABLED);
	}
	g = c->g;
	if (now && !c->flush_due && g->flush_ev && plain(c)) {
		if (c->queued > 0) {
			/* pipelined: evhttp takes the next request once
			 * this reply is out, and the client waits for both */
			flush_whole(c);
			return;
		}
		c->flush_due = 1;
		TAILQ_INSERT_TAIL(&g->flushq, c, flush_link);
		if (++g->nflush >= FLUSH_BATCH) {
			flush_cb(-1, 0, g);
			return;
		}
		event_active(g->flush_ev, EV_TIMEOUT, 0);
		return;
	}
	conn_kick(c);
}

/* ---- accept-loop safety ----------------------------------------------------- */

static struct evconnlistener *listener(evapi_app *app)
{
	return app->bound ? evhttp_bound_socket_get_listener(app->bound) : NULL;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi__guard *g = arg;
	struct evconnlistener *lev = listener(g->app);
	if (!g->accept_paused)
		return;
	g->accept_paused = 0;
	evtimer_del(g->resume_ev);
	if (lev && !g->app->stopping) {
		evapi__log(g->app, EVAPI_LOG_INFO, "guard: accepting again");
		evconnlistener_enable(lev);
	}
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
	evapi__guard *g = guard_of(arg);
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, RESUME_ACCEPT_MS * 1000};

	if (!g)
		return;

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* The listening socket stays readable: without a pause the
		 * loop would spin on accept(). Resume when a connection
		 * closes, or after a short wait for descriptors freed
		 * elsewhere. */
		evconnlistener_disable(lev);
		if (!g->accept_paused)
			evapi__log(g->app, EVAPI_LOG_WARN,
			           "guard: accept failed (%s) with %d connection(s) "
			           "open: pausing accept", strerror(err),
			           g->nconns);
		g->accept_paused = 1;
		evtimer_add(g->resume_ev, &tv);
		return;
	}
	evapi__log(g->app, EVAPI_LOG_WARN, "guard: accept failed: %s",
	           strerror(err));
}

void evapi__guard_listening(evapi_app *app)
{
	struct evconnlistener *lev = listener(app);
	if (lev && app->guard)
		evconnlistener_set_error_cb(lev, accept_error_cb);
}

/* ---- setup ------------------------------------------------------------------ */

int evapi__guard_init(evapi_app *app)
{
	const evapi_config *cfg = &app->cfg;
	evapi__guard *g = calloc(1, sizeof *g);

	if (!g)
		return EVAPI_ENOMEM;
	g->app = app;
	g->lim.max_head = cfg->max_header_bytes;
	g->lim.max_target = cfg->max_target_bytes;
	g->lim.max_body = cfg->max_body_bytes;
	g->lim.max_fields = cfg->max_header_fields;
	g->lim.max_chunk_line = cfg->max_chunk_line_bytes;
	TAILQ_INIT(&g->kicked);
	TAILQ_INIT(&g->flushq);
	g->resume_ev = evtimer_new(app->base, resume_cb, g);
	g->kick_ev = event_new(app->base, -1, 0, kick_cb, g);
	g->flush_ev = event_new(app->base, -1, 0, flush_cb, g);
	if (!g->resume_ev || !g->kick_ev || !g->flush_ev) {
		if (g->resume_ev)
			event_free(g->resume_ev);
		if (g->kick_ev)
			event_free(g->kick_ev);
		if (g->flush_ev)
			event_free(g->flush_ev);
		free(g);
		return EVAPI_ENOMEM;
	}
	app->guard = g;
	pthread_mutex_lock(&guards_mu);
	g->next_guard = guards;
	guards = g;
	pthread_mutex_unlock(&guards_mu);
	evhttp_set_bevcb(app->http, bevcb, g);
	/* evhttp only sees re-framed requests: give it room for the
	 * re-framing. Its own timeout restarts on every byte, and with a
	 * filter libevent 2.1 re-arms it on a bufferevent being freed (a
	 * use-after-free valgrind shows after every "Connection: close"),
	 * so it is switched off: the guard's deadlines, and a write deadline
	 * for clients that stop reading (send_some), replace it. */
	evhttp_set_max_headers_size(app->http,
	                            (ev_ssize_t)(2 * cfg->max_header_bytes + 1024));
	evhttp_set_timeout_tv(app->http, NULL);
	return 0;
}

void evapi__guard_free(evapi_app *app)
{
	evapi__guard *g = app->guard, **pp;
	if (!g)
		return;
	pthread_mutex_lock(&guards_mu);
	for (pp = &guards; *pp; pp = &(*pp)->next_guard)
		if (*pp == g) {
			*pp = g->next_guard;
			break;
		}
	pthread_mutex_unlock(&guards_mu);
	if (g->resume_ev)
		event_free(g->resume_ev);
	if (g->kick_ev)
		event_free(g->kick_ev);
	g->kick_ev = NULL;
	if (g->flush_ev)
		event_free(g->flush_ev);
	g->flush_ev = NULL;
	while (g->nspare > 0)
		evapi__frame_free(g->spare[--g->nspare]);
	free(g->byfd);
	g->byfd = NULL;
	g->nfd = 0;
	app->guard = NULL;
	/* Filters freed by evhttp_free are finalized later by libevent and
	 * still call conn_free: the last one frees `g`. */
	g->dead = 1;
	if (g->nconns == 0)
		free(g);
}
