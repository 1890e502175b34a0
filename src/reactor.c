/*
 * reactor.c: the loop side of evapi: the evhttp server, request dispatch
 * into the two lanes, sending replies, client-close detection, request
 * deadlines, the stall watchdog and graceful shutdown.
 *
 * Threads: only the loop thread runs this file, apart from handler_work
 * (a worker running a pool-lane handler on the request snapshot). Every
 * evhttp_request, evbuffer and event here belongs to the loop.
 *
 * Request lifetime: a request starts with one reference (dropped when it
 * finishes: reply sent, client gone, deadline or shutdown cut); every
 * pending op, the pool-lane job and every running inline callback hold
 * one more. req->ev is cleared the moment libevent may free it (after
 * evhttp_send_reply, or when we free the connection), so nothing ever
 * touches a dead evhttp_request.
 *
 * libevent 2.1 stops reading a connection while its request awaits a
 * reply, so it cannot see the client leave. For every deferred request
 * (one whose reply did not go out from its handler) we watch the socket
 * ourselves: a readable socket that peeks EOF or an error means the
 * client is gone; we then cancel the request's work and free the
 * connection, which frees libevent's request with it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "guard/guard.h"

enum { GONE_CLIENT = 1, GONE_DEADLINE, GONE_CUT };

/* Freed requests kept for reuse. None under the sanitizers, so a
 * use-after-free still reports. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define REQ_CACHE_MAX 0
#else
#define REQ_CACHE_MAX 256
#endif

/* ---- finishing --------------------------------------------------------- */

/* A draining app leaves the loop once no request is live and every reply
 * body has left the process (or its connection died): leaving earlier
 * would let evhttp_free truncate a large reply to a slow reader. */
/* Whether work bound to no request still holds the drain (an entry with
 * a drain hook: a WebSocket session in its close handshake). */
static int pending_draining(const evapi_app *app)
{
	const evapi__pending *p;
	TAILQ_FOREACH(p, &app->pending, link)
		if (p->drain)
			return 1;
	return 0;
}

static int pending_count(const evapi_app *app)
{
	const evapi__pending *p;
	int n = 0;
	TAILQ_FOREACH(p, &app->pending, link)
		n += p->drain != NULL;
	return n;
}

static void maybe_exit(evapi_app *app)
{
	if (app->stopping == 1 && TAILQ_EMPTY(&app->live) &&
	    app->bodies_writing == 0 && evapi__tasks_active(app) == 0 &&
	    !pending_draining(app))
		event_base_loopexit(app->base, NULL);
}

void evapi__reactor_maybe_exit(evapi_app *app)
{
	maybe_exit(app);
}

static void req_free(evapi_req *req)
{
	evapi_app *app = req->app;

	if (req->tasks)
		evapi__tasks_drop(req, "the request ended without its reply");
	/* over: its cleanups run, then its state goes */
	if (req->cleanups || req->slots)
		evapi__deps_req_free(req);
	TAILQ_REMOVE(&app->live, req, live);
	EVAPI__ADD(&app->stats.in_flight, -1ULL);
	if (req->watch)
		event_free(req->watch);
	if (req->deadline)
		event_free(req->deadline);
	evapi__resp_clear(&req->resp);
	if (req->json)
		json_decref(req->json);
	evapi__ustream_unref(req->ustream); /* its temporary files go */
	evapi__arena_release(&req->arena);
	/* Once the server is gone (evapi_app_free: the pool delivers the
	 * last completions after the cache was emptied) nothing may be
	 * cached any more. */
	if (app->http && app->req_cached < REQ_CACHE_MAX) {
		req->live.tqe_next = app->req_cache;
		app->req_cache = req;
		app->req_cached++;
	} else {
		free(req);
	}
	maybe_exit(app);
}

/* A zeroed request, from the cache when it has one: a fresh ~2 KiB
 * calloc per request made glibc consolidate its fast bins every time.
 * The arena's inline buffer needs no zeroing. */
static evapi_req *req_alloc(evapi_app *app)
{
	evapi_req *req = app->req_cache;
	if (req) {
		app->req_cache = req->live.tqe_next;
		app->req_cached--;
	} else if (!(req = malloc(sizeof *req))) {
		return NULL;
	}
	memset(req, 0, offsetof(evapi_req, arena_buf));
	return req;
}

static void req_cache_free(evapi_app *app)
{
	evapi_req *req;
	while ((req = app->req_cache)) {
		app->req_cache = req->live.tqe_next;
		free(req);
	}
	app->req_cached = 0;
}

void evapi__req_unref(evapi_req *req)
{
	if (--req->refs == 0)
		req_free(req);
}

static void disarm(evapi_req *req)
{
	if (req->watch)
		event_del(req->watch);
	if (req->deadline)
		event_del(req->deadline);
}

/* Copies `s` for a log line with control bytes and backslashes escaped,
 * so a client cannot forge log lines through the path. */
static const char *log_safe(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	if (!s)
		return "-";
	for (; *s && o + 5 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || c == '\\') {
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* Counts and logs a finished request and drops the base reference. */
static void req_finish(evapi_req *req, int status)
{
	evapi_app *app = req->app;
	int64_t us = evapi__now_us() - req->start_us;
	char path[512];

	if (req->finished)
		return;
	req->finished = 1;
	req->final_status = status;
	disarm(req);
	evapi__stats_request(app, req->route, status, us);
	if (app->cfg.access_log)
		evapi__access_log(app, "%s %s %d %lld.%03lldms %s id=%llu",
		           req->method ? evapi_method_name(req->method) : "-",
		           log_safe(req->path, path, sizeof path), status,
		           (long long)(us / 1000), (long long)(us % 1000),
		           req->route ? evapi_lane_name(req->route->lane) : "-",
		           req->id);
	evapi__req_unref(req);
}

void evapi__req_finish(evapi_req *req, int status)
{
	req_finish(req, status);
}

/* Runs on the loop when libevent has written the body to the socket, or
 * dropped it with a dead connection: either way the reply is over. */
static void free_body(const void *data, size_t len, void *arg)
{
	evapi_app *app = arg;
	free((void *)data);
	app->bodies_writing--;
	maybe_exit(app);
}

/* The Date header, formatted once a second instead of by evhttp for
 * every reply (it adds one only when none is set). RFC 9110's
 * IMF-fixdate has English names: not strftime's %a and %b, which follow
 * whatever LC_TIME the application set. */
static const char *http_date(evapi_app *app)
{
	static const char wday[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu",
	                                "Fri", "Sat"};
	static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May",
	                                "Jun", "Jul", "Aug", "Sep", "Oct",
	                                "Nov", "Dec"};
	struct timeval tv;
	struct tm tm;

	if (event_base_gettimeofday_cached(app->base, &tv) != 0)
		gettimeofday(&tv, NULL);
	if (tv.tv_sec != app->date_sec && gmtime_r(&tv.tv_sec, &tm)) {
		snprintf(app->date, sizeof app->date,
		         "%s, %02d %s %04d %02d:%02d:%02d GMT", wday[tm.tm_wday],
		         tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900,
		         tm.tm_hour, tm.tm_min, tm.tm_sec);
		app->date_sec = tv.tv_sec;
	}
	return app->date;
}

void evapi__req_headers_out(evapi_req *req, evapi__resp *resp,
                            struct evhttp_request *ev)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
	evapi__header *h;

	evhttp_add_header(out, "Date", http_date(req->app));
	evapi__mw_after(req, resp);
	if (resp->content_type)
		evhttp_add_header(out, "Content-Type", resp->content_type);
	for (h = resp->headers; h; h = h->next)
		evhttp_add_header(out, h->name, h->value);
	if (req->app->stopping)
		evhttp_add_header(out, "Connection", "close");
}

/* Hands a reply to evhttp; `resp` may be req->resp or a loop-local one.
 * Returns the guard's connection, for evapi__guard_sent_whole. */
static evapi__gconn *send_resp(evapi_req *req, evapi__resp *resp)
{
	struct evhttp_request *ev = req->ev;
	struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	evapi__gconn *gc = NULL;

	req->ev = NULL; /* libevent frees it once written */
	disarm(req);
	/* The guard holds its own writes on this connection until evhttp
	 * has answered every request it was given (streams: stream.c). */
	if (evcon) {
		struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
		gc = evapi__guard_replied_whole(req->app, bev);
	}
	evapi__req_headers_out(req, resp, ev);
	if (req->head_only) {
		char cl[32];
		snprintf(cl, sizeof cl, "%zu", resp->len);
		evhttp_add_header(out, "Content-Length", cl);
	} else if (resp->len) {
		struct evbuffer *buf = evhttp_request_get_output_buffer(ev);
		if (evbuffer_add_reference(buf, resp->body, resp->len, free_body,
		                           req->app) == 0) {
			resp->body = NULL; /* the evbuffer frees it now */
			req->app->bodies_writing++;
		}
	}
	evhttp_send_reply(ev, resp->status, evapi__reason(resp->status), NULL);
	return gc;
}

void evapi__req_send(evapi_req *req)
{
	evapi__gconn *gc;
	int now;

	if (req->gone || !req->ev) {
		req->state = EVAPI__REQ_GONE;
		return;
	}
	req->state = EVAPI__REQ_SENT;
	if (req->resp.file) {
		evapi__files_send(req); /* files.c streams the body */
		return;
	}
	now = req->tasks == NULL;
	evapi__tasks_attach(req, req->ev);
	gc = send_resp(req, &req->resp);
	req_finish(req, req->resp.status);
	/* Counted and logged first: a client that has its reply finds it
	 * in the stats and the access log. Sent now only when no
	 * background task waits for the reply to complete (that callback
	 * runs when evhttp completes the reply), and ev is not touched
	 * after send_resp (evhttp frees it when the reply is out). */
	evapi__guard_sent_whole(gc, now);
}

/* A framework reply that must not touch req->resp (a worker may own it). */
static void send_direct(evapi_req *req, int status, const char *detail)
{
	evapi__resp r;

	memset(&r, 0, sizeof r);
	r.status = status;
	r.content_type = "application/json";
	r.body = evapi__error_dump(req->app, req, status, detail, &r.len);
	evapi__guard_sent_whole(send_resp(req, &r), 0);
	evapi__resp_clear(&r);
}

/* Whether pending work (a stream) is writing the request's reply. */
static int req_writing_reply(const evapi_req *req)
{
	const evapi__pending *p;
	TAILQ_FOREACH(p, &req->pending_ops, link)
		if (p->is_reply)
			return 1;
	return 0;
}

static void req_gone(evapi_req *req, int why)
{
	evapi_app *app = req->app;
	struct evhttp_request *ev = req->ev;
	int status = why == GONE_CLIENT ? 499 : why == GONE_DEADLINE ? 504 : 503;
	int job_unlinked = 0;

	if (req->gone)
		return;
	/* A started stream's status line is out: log what was sent. */
	if (why == GONE_CUT && req_writing_reply(req))
		status = req->resp.status;
	req->refs++; /* keep it alive through the cancellations */
	req->gone = 1;
	disarm(req);
	if (!req->on_worker)
		req->state = EVAPI__REQ_GONE;
	if (ev && !req->finished) {
		if (why == GONE_CLIENT) {
			req->ev = NULL;
			EVAPI__ADD(&app->stats.gone, 1);
			/* Frees libevent's request with the connection. */
			evhttp_connection_free(evhttp_request_get_connection(ev));
		} else if (why == GONE_DEADLINE) {
			EVAPI__ADD(&app->stats.timeouts, 1);
			send_direct(req, 504, "Request deadline exceeded");
		} else {
			evhttp_add_header(evhttp_request_get_output_headers(ev),
			                  "Connection", "close");
			send_direct(req, 503, "Server shutting down");
		}
	}
	req->ev = NULL;
	if (req->on_worker && evapi__pool_cancel(app->pool, &req->job)) {
		req->on_worker = 0;
		req->state = EVAPI__REQ_GONE;
		job_unlinked = 1;
	}
	evapi__pending_cancel_all(&req->pending_ops);
	req_finish(req, status);
	if (job_unlinked)
		evapi__req_unref(req);
	evapi__req_unref(req);
}

struct evhttp_request *evapi__req_stream_begin(evapi_req *req,
                                               evapi__resp *resp)
{
	struct evhttp_request *ev = req->ev;

	req->ev = NULL; /* the stream owns it now */
	disarm(req);
	evapi__req_headers_out(req, resp, ev);
	return ev;
}

void evapi__req_client_gone(evapi_req *req)
{
	req_gone(req, GONE_CLIENT);
}

/* ---- pending work (see internal.h) ---------------------------------------- */

void evapi__pending_link(struct evapi__pending_list *list, evapi__pending *p,
                         evapi__cancel_fn cancel, const char *what)
{
	p->cancel = cancel;
	p->what = what;
	p->list = list;
	TAILQ_INSERT_TAIL(list, p, link);
}

void evapi__pending_unlink(evapi__pending *p)
{
	if (!p->list)
		return;
	TAILQ_REMOVE(p->list, p, link);
	p->list = NULL;
}

void evapi__pending_cancel_all(struct evapi__pending_list *list)
{
	evapi__pending *p, *next;

	for (p = TAILQ_FIRST(list); p; p = next) {
		next = TAILQ_NEXT(p, link); /* cancel may unlink p */
		p->cancel(p);
	}
}

void evapi__req_pending_add(evapi_req *req, evapi__pending *p,
                            evapi__cancel_fn cancel, const char *what)
{
	evapi__pending_link(&req->pending_ops, p, cancel, what);
	req->pending++;
	req->refs++;
}

void evapi__req_pending_done(evapi_req *req, evapi__pending *p)
{
	if (!p->list)
		return;
	evapi__pending_unlink(p);
	req->pending--;
}

/* ---- deferred requests: close watch and deadline ---------------------- */

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi_req *req = arg;
	char c;
	ssize_t n;

	if (what & EV_CLOSED) {
		evapi__log(req->app, EVAPI_LOG_DEBUG,
		           "client left before the reply: id=%llu", req->id);
		req_gone(req, GONE_CLIENT);
		return;
	}
	n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	               errno != EINTR)) {
		evapi__log(req->app, EVAPI_LOG_DEBUG,
		           "client left before the reply: id=%llu", req->id);
		req_gone(req, GONE_CLIENT);
	} else if (n < 0) {
		event_add(req->watch, NULL);
	}
	/* n > 0 (only without EV_CLOSED): a pipelined request is waiting;
	 * libevent reads it after our reply. We cannot peek past it, so we
	 * stop watching. */
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi_req *req = arg;
	evapi__log(req->app, EVAPI_LOG_WARN,
	           "%s: no reply within %d ms: 504 id=%llu",
	           req->route ? req->route->label : "-",
	           req->app->cfg.request_timeout_ms, req->id);
	req_gone(req, GONE_DEADLINE);
}

static void arm_deferred(evapi_req *req)
{
	evapi_app *app = req->app;
	struct bufferevent *bev;
	int64_t left_ms;
	struct timeval tv;

	if (req->watch || req->deadline || req->gone || !req->ev)
		return;
	bev = evhttp_connection_get_bufferevent(
		evhttp_request_get_connection(req->ev));
	if (bev) {
		/* EV_CLOSED (EPOLLRDHUP) reports the peer's FIN even with
		 * unread bytes queued; without it we peek on EV_READ. */
		req->watch = event_new(app->base, bufferevent_getfd(bev),
		                       app->early_close ? EV_CLOSED : EV_READ,
		                       watch_cb, req);
		if (req->watch)
			event_add(req->watch, NULL);
		evapi__guard_waiting(app, bev);
	}
	req->deadline = evtimer_new(app->base, deadline_cb, req);
	if (req->deadline) {
		event_base_update_cache_time(app->base); /* see evapi_req_sleep */
		left_ms = app->cfg.request_timeout_ms -
		          (evapi__now_us() - req->start_us) / 1000;
		if (left_ms < 0)
			left_ms = 0;
		tv.tv_sec = (time_t)(left_ms / 1000);
		tv.tv_usec = (suseconds_t)(left_ms % 1000) * 1000;
		evtimer_add(req->deadline, &tv);
	}
}

/* ---- inline callbacks: watchdog and the reply-exactly-once rule ------- */

void evapi__req_leave(evapi_req *req, evapi__user *u)
{
	evapi_app *app = req->app;

	evapi__user_end(app, u);
	/* on_worker: a continuation resumed a dependency chain that queued
	 * the next pool job (a pool resolver, the handler), which now owns
	 * req->state and armed the watch and deadline. Read apart from
	 * state (an atomic load), so the compiler cannot fold the two into
	 * one load that reads state while the worker writes it. */
	if (!req->gone && !EVAPI__LOAD(&req->on_worker) &&
	    req->state == EVAPI__REQ_RUNNING) {
		if (req->pending == 0) {
			EVAPI__ADD(&app->stats.no_reply, 1);
			evapi__log(app, EVAPI_LOG_ERROR,
			           "%s: %s returned without replying and with "
			           "nothing pending: 500 id=%llu",
			           u->name, u->kind, req->id);
			evapi_reply_error(req, 500, "Internal Server Error");
		} else {
			arm_deferred(req);
		}
	}
	evapi__req_unref(req);
}

/* ---- pool-lane handlers ----------------------------------------------- */

static void handler_work(evapi__job *job)
{
	evapi_req *req = EVAPI__CONTAINER_OF(job, evapi_req, job);
	const evapi_dep *d = req->dep_job;

	if (d)
		req->dep_rc = d->cb(req, d->arg); /* a pool resolver */
	else
		req->route->cb(req, req->route->arg);
}

static void handler_done(evapi__job *job, int status)
{
	evapi_req *req = EVAPI__CONTAINER_OF(job, evapi_req, job);
	evapi_app *app = req->app;
	const evapi_dep *dep = req->dep_job;

	req->on_worker = 0;
	req->dep_job = NULL;
	/* A stream the handler started: make sure the loop has taken it
	 * over (or cancelled it) before the job's reference goes. */
	if (req->resp.stream)
		evapi__stream_job_done(req->resp.stream);
	if (req->gone) {
		req->state = EVAPI__REQ_GONE; /* late result: dropped */
	} else if (status != 0) {
		req_gone(req, GONE_CUT);
	} else if (req->resp.stream) {
		/* the stream answers */
	} else if (req->state == EVAPI__REQ_REPLIED) {
		evapi__req_send(req);
	} else if (dep) {
		evapi__deps_pool_done(req, dep); /* the next resolver */
	} else {
		EVAPI__ADD(&app->stats.no_reply, 1);
		evapi__log(app, EVAPI_LOG_ERROR,
		           "%s: pool handler returned without replying: 500 "
		           "id=%llu", req->route->label, req->id);
		evapi_reply_error(req, 500, "Internal Server Error");
	}
	evapi__req_unref(req);
}

/* ---- dispatch ----------------------------------------------------------- */

void evapi__req_submit(evapi_req *req)
{
	evapi_app *app = req->app;

	req->job.work = handler_work;
	req->job.done = handler_done;
	req->on_worker = 1;
	if (evapi__pool_submit(app->pool, &req->job) != 0) {
		req->on_worker = 0;
		req->dep_job = NULL;
		EVAPI__ADD(&app->stats.rejected, 1);
		evapi_reply_add_header(req, "Retry-After", "1");
		evapi_reply_error(req, 503,
		                  "Server busy: the worker pool queue is full");
	} else {
		req->refs++; /* the job's */
		arm_deferred(req);
	}
}

void evapi__req_dispatch(evapi_req *req)
{
	if (req->route->lane == EVAPI_INLINE) {
		evapi__user u;
		evapi__req_enter(req, &u, "handler");
		req->route->cb(req, req->route->arg);
		evapi__req_leave(req, &u);
	} else {
		evapi__req_submit(req);
	}
}

void evapi__req_defer(evapi_req *req)
{
	arm_deferred(req);
}

static evapi_method map_cmd(enum evhttp_cmd_type t)
{
	switch (t) {
	case EVHTTP_REQ_GET: return EVAPI_GET;
	case EVHTTP_REQ_POST: return EVAPI_POST;
	case EVHTTP_REQ_PUT: return EVAPI_PUT;
	case EVHTTP_REQ_PATCH: return EVAPI_PATCH;
	case EVHTTP_REQ_DELETE: return EVAPI_DELETE;
	case EVHTTP_REQ_HEAD: return EVAPI_HEAD;
	case EVHTTP_REQ_OPTIONS: return EVAPI_OPTIONS;
	default: return 0;
	}
}

/* Copies what a handler may read into the request's arena. */
static int snapshot(evapi_req *req, struct evhttp_request *ev,
                    const char *query)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
	struct evbuffer *body = evhttp_request_get_input_buffer(ev);
	struct evkeyval *kv;
	char *b;
	size_t len;
	int n = 0;

	TAILQ_FOREACH(kv, in, next)
		n++;
	req->headers = evapi__arena_alloc(&req->arena,
	                                  (size_t)(n ? n : 1) * sizeof(evapi__kv));
	if (!req->headers)
		return EVAPI_ENOMEM;
	n = 0;
	TAILQ_FOREACH(kv, in, next) {
		/* Copied: a continuation may read them after libevent freed
		 * ev (client gone), and a worker never touches libevent. */
		req->headers[n].name = evapi__arena_strndup(&req->arena, kv->key,
		                                            strlen(kv->key));
		req->headers[n].value = evapi__arena_strndup(
			&req->arena, kv->value, strlen(kv->value));
		if (!req->headers[n].name || !req->headers[n].value)
			return EVAPI_ENOMEM;
		n++;
	}
	req->nheaders = n;
	len = evbuffer_get_length(body);
	b = evapi__arena_alloc(&req->arena, len + 1);
	if (!b)
		return EVAPI_ENOMEM;
	evbuffer_copyout(body, b, len);
	b[len] = '\0';
	req->body = b;
	req->body_len = len;
	return evapi__parse_query(req, query);
}

/* Splits the request-target exactly as the client sent it into its path
 * and query (both still percent-encoded, NUL-terminated copies in the
 * request's arena). evhttp's parsed URI is not used: it reads a target
 * starting with "//" as an authority, so "//x/echo" would route as
 * "/echo" and slip past a proxy's rule for "/echo". The guard lets only
 * origin-form ("/...") and "*" through; a fragment is dropped. */
static int split_target(evapi_req *req, const char *target, char **path,
                        char **query)
{
	size_t plen = strcspn(target, "?#"), qlen = 0;
	const char *q = NULL;

	if (target[plen] == '?') {
		q = target + plen + 1;
		qlen = strcspn(q, "#");
	}
	*path = evapi__arena_strndup(&req->arena, target, plen);
	*query = q ? evapi__arena_strndup(&req->arena, q, qlen) : NULL;
	return *path && (!q || *query) ? 0 : EVAPI_ENOMEM;
}

/* "OPTIONS *" asks about the server, not a resource (RFC 9110 9.3.7):
 * 200, no content, Allow naming every method some route serves (HEAD
 * with GET) and OPTIONS, which this answer serves. */
static void options_server(evapi_req *req)
{
	const evapi__router *r = req->app->router;
	unsigned mask = EVAPI_OPTIONS;
	char allow[80];
	size_t i;

	for (i = 0; i < evapi__router_count(r); i++)
		mask |= evapi__router_at(r, i)->method;
	if (mask & EVAPI_GET)
		mask |= EVAPI_HEAD;
	evapi__allow_string(mask, allow, sizeof allow);
	evapi_reply_add_header(req, "Allow", allow);
	evapi_reply_bytes(req, 200, NULL, "", 0);
}

static void on_request(struct evhttp_request *ev, void *arg)
{
	evapi_app *app = arg;
	const char *target = evhttp_request_get_uri(ev);
	evapi__match m;
	evapi_req *req;
	char *raw, *query, *scratch, *path;
	size_t rawlen;
	int rc;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(
		evhttp_request_get_connection(ev));
	/* an upload body the guard streamed to disk: its files */
	evapi__ustream *us = evapi__guard_take_upload(app, bev);

	req = req_alloc(app);
	if (!req) {
		evapi__ustream_unref(us);
		evapi__guard_replied(app, bev);
		evhttp_send_error(ev, 503, NULL);
		return;
	}
	req->ustream = us;
	req->app = app;
	req->id = ++app->next_id;
	req->refs = 2; /* base + this function */
	req->ev = ev;
	req->start_us = evapi__now_us();
	evapi__arena_init(&req->arena, req->arena_buf, sizeof req->arena_buf);
	TAILQ_INIT(&req->pending_ops);
	TAILQ_INSERT_TAIL(&app->live, req, live);
	EVAPI__ADD(&app->stats.in_flight, 1);

	req->method = map_cmd(evhttp_request_get_command(ev));
	req->head_only = req->method == EVAPI_HEAD;
	if (split_target(req, target ? target : "", &raw, &query) != 0) {
		evapi_reply_error(req, 500, "Out of memory");
		goto out;
	}
	rawlen = strlen(raw);
	scratch = evapi__arena_alloc(&req->arena, rawlen + 1);
	/* Without a '%' the decoded path is the raw one (a C string holds
	 * no NUL to refuse): no second copy, nothing to decode. */
	path = memchr(raw, '%', rawlen)
	               ? evapi__arena_alloc(&req->arena, rawlen + 1)
	               : raw;
	if (!scratch || !path) {
		evapi_reply_error(req, 500, "Out of memory");
		goto out;
	}
	if (path != raw && evapi__pct_decode(raw, rawlen, path, 0) < 0) {
		evapi_reply_error(req, 400, "Invalid percent-encoding in path");
		goto out;
	}
	req->path = path;
	if (!req->method) {
		evapi_reply_error(req, 501, "Method Not Implemented");
		goto out;
	}
	rc = snapshot(req, ev, query);
	if (rc == EVAPI_EINVAL) {
		evapi_reply_error(req, 400, "Invalid percent-encoding in query");
		goto out;
	} else if (rc != 0) {
		evapi_reply_error(req, 500, "Out of memory");
		goto out;
	}
	if (evapi__mw_before(req))
		goto out; /* a middleware answered */
	if (req->method == EVAPI_OPTIONS && strcmp(raw, "*") == 0) {
		options_server(req);
		goto out;
	}
	rc = evapi__router_match(app->router, req->method, raw, scratch, &m);
	if (rc == EVAPI__MATCH_BAD_PATH) {
		evapi_reply_error(req, 400, "Invalid path");
		goto out;
	}
	if (rc == EVAPI__MATCH_NOT_FOUND) {
		evapi_reply_error(req, 404, "Not Found");
		goto out;
	}
	if (rc == EVAPI__MATCH_METHOD) {
		char allow[80];
		evapi__allow_string(m.allow, allow, sizeof allow);
		evapi_reply_add_header(req, "Allow", allow);
		evapi_reply_error(req, 405, "Method Not Allowed");
		goto out;
	}
	req->route = m.route;
	req->nparams = m.nparams;
	req->params = evapi__arena_alloc(&req->arena,
	                                 (size_t)(m.nparams ? m.nparams : 1) *
	                                         sizeof(evapi__kv));
	if (!req->params) {
		evapi_reply_error(req, 500, "Out of memory");
		goto out;
	}
	memcpy(req->params, m.params, (size_t)m.nparams * sizeof(evapi__kv));
	/* Declared routes: bad input is answered here, on the loop, before
	 * the handler runs or a worker is taken. */
	if (req->route->decl && evapi__decl_check(req) != 0)
		goto out;
	evapi__deps_run(req); /* then the handler, on its lane */
out:
	evapi__req_unref(req);
}

int evapi__reactor_known_status(evapi_app *app, evapi_method method,
                                const char *target, const char *ctype,
                                unsigned *allow, const char **detail)
{
	size_t len = strcspn(target, "?#");
	char *raw, *scratch;
	evapi__match m;
	int status = 0;

	*allow = 0;
	*detail = NULL;
	/* A before hook may answer anything. The path is split as
	 * split_target does; the guard lets only origin-form and "*" by. */
	if (evapi__mw_any_before(app) || target[0] != '/')
		return 0;
	raw = malloc(2 * (len + 1));
	if (!raw)
		return 0;
	memcpy(raw, target, len);
	raw[len] = '\0';
	scratch = raw + len + 1;
	switch (evapi__router_match(app->router, method, raw, scratch, &m)) {
	case EVAPI__MATCH_BAD_PATH:
		status = 400;
		*detail = "Invalid path";
		break;
	case EVAPI__MATCH_NOT_FOUND:
		status = 404;
		*detail = "Not Found";
		break;
	case EVAPI__MATCH_METHOD:
		status = 405;
		*detail = "Method Not Allowed";
		*allow = m.allow;
		break;
	default:
		if ((*detail = evapi__decl_refused_media(m.route, ctype)) != NULL)
			status = 415;
		break;
	}
	free(raw);
	return status;
}

const evapi_upload *evapi__reactor_upload(evapi_app *app, evapi_method method,
                                          const char *target,
                                          const char *ctype, char *boundary,
                                          size_t cap)
{
	size_t len = strcspn(target, "?#");
	const evapi_upload *up = NULL;
	char *raw;
	evapi__match m;

	if (!app->decls || target[0] != '/' || !(raw = malloc(2 * (len + 1))))
		return NULL;
	memcpy(raw, target, len);
	raw[len] = '\0';
	if (evapi__router_match(app->router, method, raw, raw + len + 1, &m) ==
	            EVAPI__MATCH_OK &&
	    m.route->decl && (up = m.route->decl->d.upload) != NULL) {
		int rc = evapi__multipart_boundary(ctype, boundary, cap);
		if (rc == -1 && up->raw)
			boundary[0] = '\0';
		else if (rc != 0)
			up = NULL; /* refused (415, 400) as any body is */
	}
	free(raw);
	return up;
}

/* ---- shutdown ----------------------------------------------------------- */

static void cut_all(evapi_app *app)
{
	evapi_req *req;
	int cut = 0;

	/* req_gone may free the request, so restart the walk each time. */
	for (;;) {
		TAILQ_FOREACH(req, &app->live, live)
			if (!req->gone)
				break;
		if (!req)
			break;
		if (!req->finished || req->pending) {
			const evapi__pending *p;
			TAILQ_FOREACH(p, &req->pending_ops, link)
				if (p->is_reply)
					break;
			evapi__log(app, EVAPI_LOG_WARN,
			           "shutdown cut %s (%s%s) id=%llu",
			           req->route ? req->route->label : "-",
			           req->finished ? "pending work after reply"
			           : p ? p->what : "no reply yet",
			           !req->finished && p ? " still open" : "",
			           req->id);
			cut++;
		}
		req_gone(req, GONE_CUT);
	}
	if (cut)
		evapi__log(app, EVAPI_LOG_WARN,
		           "shutdown cut %d request(s) still in flight", cut);
	/* work bound to no request: outbound calls, background runs */
	evapi__pending_cancel_all(&app->pending);
}

static int live_count(evapi_app *app)
{
	evapi_req *req;
	int n = 0;
	TAILQ_FOREACH(req, &app->live, live)
		n++;
	return n;
}

static void begin_stop(evapi_app *app, const char *why)
{
	struct timeval tv;

	if (app->stopping) {
		evapi__log(app, EVAPI_LOG_WARN, "%s again: stopping now", why);
		app->stopping = 2;
		cut_all(app);
		event_base_loopbreak(app->base);
		return;
	}
	app->stopping = 1;
	evapi__stats_stop(app); /* its timer would keep the loop turning */
	/* work that outlives requests winds down (WebSocket sessions: 1001
	 * Going Away) */
	{
		evapi__pending *p, *next;
		for (p = TAILQ_FIRST(&app->pending); p; p = next) {
			next = TAILQ_NEXT(p, link);
			if (p->drain)
				p->drain(p);
		}
	}
	evapi__channels_shutdown(app); /* subscribed event streams end */
	if (app->bound) {
		evhttp_del_accept_socket(app->http, app->bound);
		app->bound = NULL;
	}
	evapi__log(app, EVAPI_LOG_INFO,
	           "%s: not accepting; draining %d request(s) and %d "
	           "session(s) for up to %d ms",
	           why, live_count(app), pending_count(app),
	           app->cfg.shutdown_grace_ms);
	maybe_exit(app);
	tv.tv_sec = app->cfg.shutdown_grace_ms / 1000;
	tv.tv_usec = (app->cfg.shutdown_grace_ms % 1000) * 1000;
	evtimer_add(app->grace_ev, &tv);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi_app *app = arg;
	evapi__log(app, EVAPI_LOG_WARN, "grace period of %d ms is over",
	           app->cfg.shutdown_grace_ms);
	app->stopping = 2;
	cut_all(app);
	event_base_loopbreak(app->base);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	begin_stop(arg, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

static void stop_cb(void *arg)
{
	evapi_app *app = arg;
	/* Wake-ups coalesce: count the requests instead. */
	while (app->stops_seen < EVAPI__LOAD(&app->stop_requests)) {
		app->stops_seen++;
		begin_stop(app, "stop requested");
	}
}

void evapi__reactor_stop(evapi_app *app)
{
	EVAPI__ADD(&app->stop_requests, 1);
	evapi__wake_signal(app->stop_wake);
}

/* ---- setup -------------------------------------------------------------- */

int evapi__reactor_init(evapi_app *app)
{
	struct evhttp *http = evhttp_new(app->base);
	if (!http)
		return EVAPI_ENOMEM;
	app->http = http;
	evhttp_set_gencb(http, on_request, app);
	evhttp_set_allowed_methods(
		http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
		              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
		              EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_max_headers_size(http, (ev_ssize_t)app->cfg.max_header_bytes);
	evhttp_set_max_body_size(http, (ev_ssize_t)app->cfg.max_body_bytes);
	{
		struct timeval idle = {app->cfg.idle_timeout_ms / 1000,
		                       (app->cfg.idle_timeout_ms % 1000) * 1000};
		evhttp_set_timeout_tv(http, &idle);
	}
	evhttp_set_default_content_type(http, NULL);
	app->early_close = (event_base_get_features(app->base) &
	                    EV_FEATURE_EARLY_CLOSE) != 0;
	app->stop_wake = evapi__wake_new(app->base, &app->loop_thread, stop_cb,
	                                 app);
	app->grace_ev = evtimer_new(app->base, grace_cb, app);
	if (!app->stop_wake || !app->grace_ev)
		return EVAPI_ENOMEM;
	return evapi__guard_init(app);
}

int evapi__reactor_listen(evapi_app *app)
{
	int fd;

	if (app->bound)
		return 0;
	/* Our own socket (prefork.c): SO_REUSEPORT for workers and a full
	 * backlog, which evhttp_bind_socket (128) does not give. */
	fd = evapi__listen_socket(app, &app->port);
	if (fd < 0)
		return EVAPI_EBIND;
	app->bound = evhttp_accept_socket_with_handle(app->http, fd);
	if (!app->bound) {
		evutil_closesocket(fd);
		return EVAPI_EBIND;
	}
	evapi__guard_listening(app);
	return 0;
}

int evapi__reactor_connect_local(evapi_app *app)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof sa;
	int fd;

	if (!app->local) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            0);
		memset(&sa, 0, sizeof sa);
		sa.sun_family = AF_UNIX;
		/* an address of just the family: Linux autobinds a unique
		 * abstract name, nothing on the file system */
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa,
		                   sizeof sa.sun_family) != 0 ||
		    listen(fd, 64) != 0 ||
		    !(app->local = evhttp_accept_socket_with_handle(app->http,
		                                                    fd))) {
			if (fd >= 0)
				evutil_closesocket(fd);
			return -1;
		}
	}
	if (getsockname(evhttp_bound_socket_get_fd(app->local),
	                (struct sockaddr *)&sa, &len) != 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, len) != 0) {
		evutil_closesocket(fd);
		fd = -1;
	}
	return fd;
}

int evapi__reactor_run(evapi_app *app)
{
	int rc;

	if (!app->bound && !app->stopping &&
	    (rc = evapi__reactor_listen(app)) != 0)
		return rc;
	if (app->cfg.handle_signals) {
		app->sigint_ev = evsignal_new(app->base, SIGINT, signal_cb, app);
		app->sigterm_ev = evsignal_new(app->base, SIGTERM, signal_cb, app);
		if (app->sigint_ev)
			event_add(app->sigint_ev, NULL);
		if (app->sigterm_ev)
			event_add(app->sigterm_ev, NULL);
	}
	evapi__log(app, EVAPI_LOG_INFO,
	           "listening on http://%s:%d (pool: %d threads)", app->host,
	           app->port, app->cfg.pool_threads);
	evapi__stats_start(app);
	evapi__thread_set(app, EVAPI__THREAD_LOOP);
	event_base_dispatch(app->base);
	evapi__stats_stop(app);
	cut_all(app);
	/* Let cancelled timers deliver their continuations. */
	event_base_loop(app->base, EVLOOP_NONBLOCK);
	evapi__thread_set(NULL, EVAPI__THREAD_OTHER);
	if (app->sigint_ev)
		event_free(app->sigint_ev);
	if (app->sigterm_ev)
		event_free(app->sigterm_ev);
	app->sigint_ev = app->sigterm_ev = NULL;
	evapi__log(app, EVAPI_LOG_INFO, "stopped");
	evapi__access_flush(app);
	return 0;
}

void evapi__reactor_free(evapi_app *app)
{
	cut_all(app);
	if (app->http)
		evhttp_free(app->http);
	app->http = NULL;
	evapi__guard_free(app); /* after evhttp_free: it frees the filters */
	evapi__wake_free(app->stop_wake);
	app->stop_wake = NULL;
	if (app->grace_ev)
		event_free(app->grace_ev);
	evapi__access_free(app);
	req_cache_free(app);
}
