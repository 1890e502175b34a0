/*
 * client.c: outbound HTTP on the loop. One libcurl multi handle per app,
 * driven by the app's event_base: curl's socket callback becomes one
 * persistent libevent event per socket (curl_multi_assign keeps it with
 * the socket), its timer callback one libevent timer, and every wake-up
 * ends by draining curl_multi_info_read.
 *
 * Threads: loop thread only. The multi handle, every easy handle it
 * drives and every batch below belong to the loop; no worker touches them.
 *
 * A batch is what a caller started: one call (evapi_req_fetch,
 * evapi_app_fetch) or n calls (evapi_req_gather). It sits on its request's
 * pending work (or the app's, when bound to no request) until its
 * continuation runs, so that a client leaving, the request's deadline or
 * the app stopping can abort its transfers. A batch whose calls are all over moves to the ready list;
 * its continuation runs from the `deliver` event, never from inside a curl
 * callback or a cancellation walk, so user code may start new calls.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"

typedef struct evapi__batch evapi__batch;

typedef struct call {
	CURL *easy;
	struct curl_slist *hdrs;
	evapi__batch *batch;
	int running;                  /* added to the multi handle */
	int64_t deadline_us;          /* start + timeout, queueing included */
	evapi_fetch_res res;
} call;

enum { B_REQ = 1, B_GATHER, B_APP };

struct evapi__batch {
	evapi__pending pend;          /* req->pending_ops or app->pending */
	evapi__batch *ready_next;
	evapi__client *client;
	evapi_req *req;               /* NULL for an app-level call */
	int kind;
	int fail_fast;
	int status;                   /* first error (fail-fast) or cancel */
	size_t n, remaining;
	int ready;
	void *arg;
	union {
		evapi_fetch_cb one;
		evapi_gather_cb gather;
		evapi_app_fetch_cb app;
	} cb;
	call *calls;
	const evapi_fetch_res **results;
	/* curl 7.88 checks no timeout while a transfer waits for a free
	 * connection (outbound_max_connections); this timer enforces each
	 * call's timeout from its start, queueing included */
	struct event *timer;
};

struct evapi__client {
	evapi_app *app;
	CURLM *multi;
	struct event *timer;
	struct event *deliver;
	evapi__batch *ready, **ready_tail;
	evapi__fetch_defaults defaults;
	int closing;
	/* sockets curl is done with, closed on the next loop turn (see
	 * close_cb) */
	curl_socket_t *to_close;
	size_t nclose, capclose;
	struct event *closer;
	/* idle easy handles kept for reuse (curl_easy_reset keeps the DNS
	 * and connection caches, which live in the multi handle anyway) */
	CURL *spare[32];
	int nspare;
};

typedef struct sock {
	struct event *ev;
	evapi__client *c;
} sock;

/* ---- curl's callbacks: wiring only, never user code ---------------------- */

static void drain(evapi__client *c);

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
	evapi__client *c = arg;
	int flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(c->multi, fd, flags, &running);
	drain(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	evapi__client *c = arg;
	int running;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain(c);
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp,
                     void *socketp)
{
	evapi__client *c = userp;
	sock *sk = socketp;
	short kind;

	if (what == CURL_POLL_REMOVE) {
		if (sk) {
			event_free(sk->ev);
			free(sk);
			curl_multi_assign(c->multi, s, NULL);
		}
		return 0;
	}
	kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
	               ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	if (!sk) {
		if (!(sk = calloc(1, sizeof *sk)))
			return -1;
		sk->c = c;
		sk->ev = event_new(c->app->base, s, kind, on_sock_event, c);
		if (!sk->ev) {
			free(sk);
			return -1;
		}
		curl_multi_assign(c->multi, s, sk);
	} else {
		event_del(sk->ev);
		event_assign(sk->ev, c->app->base, s, kind, on_sock_event, c);
	}
	event_add(sk->ev, NULL);
	return 0;
}

static int timer_cb(CURLM *m, long ms, void *userp)
{
	evapi__client *c = userp;
	struct timeval tv;

	if (ms < 0) {
		evtimer_del(c->timer);
		return 0;
	}
	/* ms == 0 fires on the next loop turn: curl must not be re-entered
	 * from inside its own callback. */
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	return 0;
}

/* Counting our own sockets makes leaks visible (evapi_app_stats). */
static curl_socket_t open_cb(void *arg, curlsocktype purpose,
                             struct curl_sockaddr *a)
{
	evapi__client *c = arg;
	curl_socket_t s = socket(a->family, a->socktype, a->protocol);
	if (s != CURL_SOCKET_BAD) {
		EVAPI__ADD(&c->app->stats.outbound_sockets, 1);
		EVAPI__ADD(&c->app->stats.outbound_connects, 1);
	}
	return s;
}

static void close_now(evapi__client *c, curl_socket_t s)
{
	EVAPI__ADD(&c->app->stats.outbound_sockets, -1ULL);
	close(s);
}

static void on_closer(evutil_socket_t fd, short what, void *arg)
{
	evapi__client *c = arg;
	size_t i;
	for (i = 0; i < c->nclose; i++)
		close_now(c, c->to_close[i]);
	c->nclose = 0;
}

/* With EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST, the event_del of the socket's
 * event reaches epoll only at the next loop turn. Closing at once would let
 * that epoll_ctl land on whatever the descriptor number means by then
 * (another thread may have reused it). So the close waits for a zero
 * timer, which runs after the next turn has applied its changes. */
static int close_cb(void *arg, curl_socket_t s)
{
	evapi__client *c = arg;
	static const struct timeval now = { 0, 0 };

	if (c->closing || !c->closer) {
		close_now(c, s);
		return 0;
	}
	if (c->nclose == c->capclose) {
		size_t cap = c->capclose ? 2 * c->capclose : 64;
		curl_socket_t *p = realloc(c->to_close, cap * sizeof *p);
		if (!p) {
			close_now(c, s);
			return 0;
		}
		c->to_close = p;
		c->capclose = cap;
	}
	c->to_close[c->nclose++] = s;
	if (c->nclose == 1)
		evtimer_add(c->closer, &now);
	return 0;
}

/* ---- batches -------------------------------------------------------------- */

static void batch_ready(evapi__batch *b)
{
	evapi__client *c = b->client;
	if (b->ready)
		return;
	b->ready = 1;
	if (b->timer)
		evtimer_del(b->timer);
	b->ready_next = NULL;
	*c->ready_tail = b;
	c->ready_tail = &b->ready_next;
	event_active(c->deliver, EV_READ, 0);
}

/* Takes a call out of the multi handle. Safe outside curl's callbacks. */
static void call_stop(evapi__client *c, call *k)
{
	if (!k->running)
		return;
	curl_multi_remove_handle(c->multi, k->easy);
	k->running = 0;
	EVAPI__ADD(&c->app->stats.outbound_in_flight, -1ULL);
	EVAPI__ADD(&c->app->stats.outbound_calls, 1);
	if (k->res.error)
		EVAPI__ADD(&c->app->stats.outbound_errors, 1);
}

/* Aborts every call still running; the batch becomes ready. */
static void batch_abort(evapi__batch *b, int why)
{
	size_t i;

	if (b->ready)
		return;
	if (!b->status)
		b->status = why;
	for (i = 0; i < b->n; i++) {
		call *k = &b->calls[i];
		if (k->running) {
			evapi__fetch_res_fail(&k->res, EVAPI_ECANCELED);
			call_stop(b->client, k);
		}
	}
	b->remaining = 0;
	batch_ready(b);
}

/* A call is over (its result filled in): count it in its batch. */
static void call_ended(evapi__client *c, call *k)
{
	evapi__batch *b = k->batch;

	call_stop(c, k);
	if (b->remaining)
		b->remaining--;
	if (k->res.error && b->fail_fast && !b->status) {
		batch_abort(b, k->res.error);
		return;
	}
	if (b->remaining == 0)
		batch_ready(b);
}

static void call_done(evapi__client *c, call *k, CURLcode rc)
{
	evapi__fetch_complete(k->easy, rc, &k->res);
	call_ended(c, k);
}

/* Arms the batch timer for its earliest running deadline. A few ms of
 * slack let curl's own timeout, with its own message, usually win. */
static void batch_arm(evapi__batch *b)
{
	int64_t first = 0, wait;
	struct timeval tv;
	size_t i;

	for (i = 0; i < b->n; i++)
		if (b->calls[i].running &&
		    (!first || b->calls[i].deadline_us < first))
			first = b->calls[i].deadline_us;
	if (!first || b->ready)
		return;
	wait = first - evapi__now_us() + 5000;
	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t)(wait / 1000000);
	tv.tv_usec = (suseconds_t)(wait % 1000000);
	evtimer_add(b->timer, &tv);
}

static void on_batch_timer(evutil_socket_t fd, short what, void *arg)
{
	evapi__batch *b = arg;
	int64_t now = evapi__now_us();
	size_t i;

	for (i = 0; i < b->n && !b->ready; i++) {
		call *k = &b->calls[i];
		if (k->running && k->deadline_us <= now) {
			evapi__fetch_res_fail(&k->res, EVAPI_ETIMEDOUT);
			call_ended(b->client, k);
		}
	}
	batch_arm(b);
}

static void drain(evapi__client *c)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(c->multi, &left))) {
		call *k = NULL;
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&k);
		if (k && k->running)
			call_done(c, k, msg->data.result);
	}
}

/* The pending-work walk (request gone, shutdown cut): the transfers
 * stop now, the continuation runs from the deliver event. */
static void batch_cancel(evapi__pending *p)
{
	batch_abort(EVAPI__CONTAINER_OF(p, evapi__batch, pend), EVAPI_ECANCELED);
}

static void batch_free(evapi__batch *b)
{
	evapi__client *c = b->client;
	size_t i;

	for (i = 0; i < b->n; i++) {
		call *k = &b->calls[i];
		call_stop(c, k);
		if (k->easy) {
			if (c->nspare < (int)(sizeof c->spare / sizeof *c->spare) &&
			    !c->closing) {
				curl_easy_reset(k->easy);
				c->spare[c->nspare++] = k->easy;
			} else {
				curl_easy_cleanup(k->easy);
			}
		}
		curl_slist_free_all(k->hdrs);
		evapi__fetch_res_clear(&k->res);
	}
	if (b->timer)
		event_free(b->timer);
	free(b->calls);
	free(b->results);
	free(b);
}

/* Runs one finished batch's continuation, then frees it. */
static void deliver_one(evapi__batch *b)
{
	evapi_req *req = b->req;
	int status = b->status;
	evapi__user u;

	if (req) {
		evapi__req_pending_done(req, &b->pend);
		if (req->gone)
			status = EVAPI_ECANCELED;
		else if (!b->fail_fast && b->kind == B_GATHER) {
			size_t i;
			for (i = 0; i < b->n && !status; i++)
				status = b->calls[i].res.error;
		}
		evapi__req_enter(req, &u, b->kind == B_REQ
		                                  ? "fetch continuation"
		                                  : "gather continuation");
		if (b->kind == B_REQ)
			b->cb.one(req, status == EVAPI_ECANCELED ? status : 0,
			          &b->calls[0].res, b->arg);
		else
			b->cb.gather(req, status, b->n, b->results, b->arg);
		evapi__req_leave(req, &u);
	} else {
		evapi_app *app = b->client->app;
		evapi__pending_unlink(&b->pend);
		evapi__user_begin(app, &u, "fetch callback", "evapi_app_fetch",
		                  NULL);
		b->cb.app(app, &b->calls[0].res, b->arg);
		evapi__user_end(app, &u);
	}
	batch_free(b);
	if (req)
		evapi__req_unref(req);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	evapi__client *c = arg;
	evapi__batch *list, *b;

	/* Swap the list out: continuations may finish more batches. */
	list = c->ready;
	c->ready = NULL;
	c->ready_tail = &c->ready;
	while ((b = list)) {
		list = b->ready_next;
		deliver_one(b);
	}
}

/* ---- starting ------------------------------------------------------------- */

static CURL *easy_get(evapi__client *c)
{
	if (c->nspare)
		return c->spare[--c->nspare];
	return curl_easy_init();
}

static int batch_start(evapi__client *c, evapi__batch *b,
                       const evapi_fetch_opts *opts)
{
	size_t i;
	int rc;

	b->calls = calloc(b->n, sizeof *b->calls);
	b->results = calloc(b->n, sizeof *b->results);
	b->timer = evtimer_new(c->app->base, on_batch_timer, b);
	if (!b->calls || !b->results || !b->timer)
		return EVAPI_ENOMEM;
	/* Prepare everything before adding anything: a bad call fails the
	 * whole batch before a single transfer starts. */
	for (i = 0; i < b->n; i++) {
		call *k = &b->calls[i];
		k->batch = b;
		b->results[i] = &k->res;
		if (!(k->easy = easy_get(c)))
			return EVAPI_ENOMEM;
		if ((rc = evapi__fetch_prepare(k->easy, &opts[i], &c->defaults,
		                               &k->res, &k->hdrs)) != 0)
			return rc;
		k->deadline_us = k->res.start_us +
		                 (int64_t)(opts[i].timeout_ms
		                                   ? opts[i].timeout_ms
		                                   : c->defaults.timeout_ms) *
		                         1000;
		curl_easy_setopt(k->easy, CURLOPT_PRIVATE, k);
		/* Ending a call whose name lookup still runs must not wait for
		 * the resolver thread: that wait would stall the loop. */
		curl_easy_setopt(k->easy, CURLOPT_QUICK_EXIT, 1L);
		curl_easy_setopt(k->easy, CURLOPT_OPENSOCKETFUNCTION, open_cb);
		curl_easy_setopt(k->easy, CURLOPT_OPENSOCKETDATA, c);
		curl_easy_setopt(k->easy, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
		curl_easy_setopt(k->easy, CURLOPT_CLOSESOCKETDATA, c);
	}
	for (i = 0; i < b->n; i++) {
		call *k = &b->calls[i];
		if (curl_multi_add_handle(c->multi, k->easy) != CURLM_OK) {
			/* only out of memory gets here: undo what was added */
			size_t j;
			for (j = 0; j < i; j++) {
				curl_multi_remove_handle(c->multi,
				                         b->calls[j].easy);
				b->calls[j].running = 0;
				EVAPI__ADD(&c->app->stats.outbound_in_flight, -1ULL);
			}
			return EVAPI_ENOMEM;
		}
		k->running = 1;
		EVAPI__ADD(&c->app->stats.outbound_in_flight, 1);
	}
	b->remaining = b->n;
	batch_arm(b);
	return 0;
}

static evapi__batch *batch_new(evapi__client *c, evapi_req *req, int kind,
                               size_t n, void *arg)
{
	evapi__batch *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->client = c;
	b->req = req;
	b->kind = kind;
	b->n = n;
	b->arg = arg;
	return b;
}

static int req_start(evapi_req *req, int kind, const evapi_fetch_opts *opts,
                     size_t n, unsigned flags, void *cb, void *arg)
{
	evapi__client *c;
	evapi__batch *b;
	int rc;

	if ((rc = evapi__req_can_wait(req)) != 0)
		return rc;
	if (!opts || !cb || n == 0)
		return EVAPI_EINVAL;
	c = req->app->client;
	if (!c || c->closing)
		return EVAPI_ESTATE;
	if (!(b = batch_new(c, req, kind, n, arg)))
		return EVAPI_ENOMEM;
	b->fail_fast = (flags & EVAPI_GATHER_FAIL_FAST) != 0;
	if (kind == B_REQ)
		b->cb.one = (evapi_fetch_cb)cb;
	else
		b->cb.gather = (evapi_gather_cb)cb;
	if ((rc = batch_start(c, b, opts)) != 0) {
		batch_free(b);
		return rc;
	}
	evapi__req_pending_add(req, &b->pend, batch_cancel, "outbound call");
	return 0;
}

int evapi_req_fetch(evapi_req *req, const evapi_fetch_opts *opts,
                    evapi_fetch_cb cb, void *arg)
{
	return req_start(req, B_REQ, opts, 1, 0, (void *)cb, arg);
}

int evapi_req_gather(evapi_req *req, const evapi_fetch_opts *calls, size_t n,
                     unsigned flags, evapi_gather_cb cb, void *arg)
{
	if (n > 100000)
		return EVAPI_EINVAL;
	return req_start(req, B_GATHER, calls, n, flags, (void *)cb, arg);
}

int evapi_app_fetch(evapi_app *app, const evapi_fetch_opts *opts,
                    evapi_app_fetch_cb cb, void *arg)
{
	evapi__client *c;
	evapi__batch *b;
	int rc;

	if (!app || !opts || !cb)
		return EVAPI_EINVAL;
	if (!evapi__on_loop(app))
		return EVAPI_ETHREAD;
	c = app->client;
	if (!c || c->closing || app->stopping || app->freeing)
		return EVAPI_ESTATE;
	if (!(b = batch_new(c, NULL, B_APP, 1, arg)))
		return EVAPI_ENOMEM;
	b->cb.app = cb;
	if ((rc = batch_start(c, b, opts)) != 0) {
		batch_free(b);
		return rc;
	}
	evapi__pending_link(&app->pending, &b->pend, batch_cancel,
	                    "outbound call");
	return 0;
}

/* ---- the app's side ------------------------------------------------------ */

const evapi__fetch_defaults *evapi__client_defaults(const evapi__client *c)
{
	return c ? &c->defaults : NULL;
}

evapi__client *evapi__client_new(evapi_app *app)
{
	evapi__client *c;
	long maxconn = app->cfg.outbound_max_connections;

	if (evapi__curl_init() != 0 || !(c = calloc(1, sizeof *c)))
		return NULL;
	c->app = app;
	c->ready_tail = &c->ready;
	c->defaults.timeout_ms = (unsigned)app->cfg.outbound_timeout_ms;
	c->defaults.connect_timeout_ms =
		(unsigned)app->cfg.outbound_connect_timeout_ms;
	c->defaults.max_response_bytes = app->cfg.outbound_max_response_bytes;
	c->multi = curl_multi_init();
	c->timer = evtimer_new(app->base, on_timer, c);
	c->deliver = event_new(app->base, -1, 0, on_deliver, c);
	c->closer = evtimer_new(app->base, on_closer, c);
	if (!c->multi || !c->timer || !c->deliver || !c->closer) {
		evapi__client_free(c);
		return NULL;
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	/* The bound on open connections; transfers beyond it wait in curl's
	 * queue. The idle cache is as large, so a burst reuses them. */
	curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxconn);
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, maxconn);
	return c;
}

/* Loop thread, with the loop no longer running: aborts what is left and
 * runs its continuations (as cancelled) before the multi handle goes. */
void evapi__client_free(evapi__client *c)
{
	int i;

	if (!c)
		return;
	/* closing first: a cancelled continuation may not start new calls */
	c->closing = 1;
	/* what is left of the app's own work: calls bound to no request
	 * (background runs have ended by now) */
	evapi__pending_cancel_all(&c->app->pending);
	if (c->deliver)
		on_deliver(-1, 0, c);
	for (i = 0; i < c->nspare; i++)
		curl_easy_cleanup(c->spare[i]);
	c->nspare = 0;
	/* closes the cached connections, calling socket_cb and close_cb, which
	 * closes at once now that `closing` is set; then what still waited */
	if (c->multi)
		curl_multi_cleanup(c->multi);
	on_closer(-1, 0, c);
	free(c->to_close);
	if (c->closer)
		event_free(c->closer);
	if (c->timer)
		event_free(c->timer);
	if (c->deliver)
		event_free(c->deliver);
	free(c);
}
