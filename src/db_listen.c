/*
 * db_listen.c: PostgreSQL LISTEN/NOTIFY delivered on the loop.
 *
 * Threads: the loop thread only. One dedicated libpq connection per app
 * (not one of the query pool's), opened by the first evapi_app_db_listen
 * with libpq's asynchronous API and driven by one libevent event on its
 * socket, as db.c drives the pool's.
 *
 * States: DOWN (no connection; a timer retries with a backoff of 100 ms
 * doubling to 2 s), CONNECTING (PQconnectPoll), UP (a LISTEN command for
 * every channel in flight or done; notifications are read whenever the
 * socket is readable). Every (re)connection sends LISTEN for the whole
 * channel list, so subscriptions survive a server restart; a channel
 * added while UP sends the list again (LISTEN is idempotent).
 * Notifications sent while the connection was down are lost, as they are
 * for any PostgreSQL listener.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

enum { L_DOWN = 0, L_CONNECTING, L_UP };

typedef struct sub {
	char *channel;
	evapi_db_notify_cb cb;
	void *arg;
} sub;

struct evapi__listen {
	evapi_app *app;
	char *url;
	int state;
	PGconn *pg;
	struct event *ev;        /* the socket */
	struct event *retry;     /* reconnect after a backoff */
	int backoff_ms;
	int busy;                /* a LISTEN command's results still come */
	int resend;              /* the channel list changed meanwhile */
	sub *subs;
	int nsubs;
	char *dns_host, *dns_port; /* the URL's hosts, when they need DNS */
	evapi__db_dns *dns;      /* being looked up (db_dns.c) */
};

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Deleted and added again each time: libpq may reopen its socket with
 * the same number (see db.c's conn_watch). */
static void watch(evapi__listen *l, short what)
{
	event_del(l->ev);
	if (!l->pg || PQsocket(l->pg) < 0)
		return;
	event_assign(l->ev, l->app->base, PQsocket(l->pg),
	             what | EV_PERSIST, on_io, l);
	event_add(l->ev, NULL);
}

static void drop(evapi__listen *l, const char *why)
{
	struct timeval tv;

	if (l->pg)
		evapi__log(l->app, EVAPI_LOG_WARN,
		           "database listener down: %s", why);
	event_del(l->ev);
	PQfinish(l->pg);
	l->pg = NULL;
	l->state = L_DOWN;
	l->busy = 0;
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (l->backoff_ms > BACKOFF_MAX_MS)
		l->backoff_ms = BACKOFF_MAX_MS;
	tv.tv_sec = l->backoff_ms / 1000;
	tv.tv_usec = (l->backoff_ms % 1000) * 1000;
	evtimer_add(l->retry, &tv);
}

/* LISTEN "a"; LISTEN "b"; ... for every channel. */
static void send_listens(evapi__listen *l)
{
	size_t len = 1;
	char *sql, *o;
	int i;

	if (l->busy) {
		l->resend = 1;
		return;
	}
	for (i = 0; i < l->nsubs; i++)
		len += strlen(l->subs[i].channel) + 12;
	if (!(sql = malloc(len)))
		return;
	o = sql;
	*o = '\0';
	for (i = 0; i < l->nsubs; i++)
		o += sprintf(o, "LISTEN \"%s\";", l->subs[i].channel);
	l->resend = 0;
	if (!PQsendQuery(l->pg, sql)) {
		free(sql);
		drop(l, PQerrorMessage(l->pg));
		return;
	}
	free(sql);
	l->busy = 1;
	PQflush(l->pg); /* a few bytes: the socket takes them */
}

static void deliver(evapi__listen *l)
{
	PGnotify *n;
	int i;

	while (l->pg && (n = PQnotifies(l->pg))) {
		for (i = 0; i < l->nsubs; i++) {
			evapi__user u;
			if (strcmp(l->subs[i].channel, n->relname) != 0)
				continue;
			evapi__user_begin(l->app, &u, "notification callback",
			                  l->subs[i].channel, NULL);
			l->subs[i].cb(l->app, n->relname,
			              n->extra ? n->extra : "", l->subs[i].arg);
			evapi__user_end(l->app, &u);
		}
		PQfreemem(n);
	}
}

static void read_input(evapi__listen *l)
{
	PGresult *r;

	if (!PQconsumeInput(l->pg)) {
		drop(l, PQerrorMessage(l->pg));
		return;
	}
	while (l->busy && !PQisBusy(l->pg)) {
		if (!(r = PQgetResult(l->pg))) {
			l->busy = 0;
			if (l->resend)
				send_listens(l);
			break;
		}
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			evapi__log(l->app, EVAPI_LOG_ERROR,
			           "database listener: %s",
			           PQresultErrorMessage(r));
		PQclear(r);
	}
	if (l->pg && PQstatus(l->pg) == CONNECTION_BAD) {
		drop(l, PQerrorMessage(l->pg));
		return;
	}
	deliver(l);
}

static void connect_poll(evapi__listen *l)
{
	switch (PQconnectPoll(l->pg)) {
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(l->pg, 1) != 0) {
			drop(l, PQerrorMessage(l->pg));
			return;
		}
		l->state = L_UP;
		l->backoff_ms = 0;
		watch(l, EV_READ);
		send_listens(l);
		break;
	case PGRES_POLLING_READING:
		watch(l, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		watch(l, EV_WRITE);
		break;
	default:
		drop(l, PQerrorMessage(l->pg));
	}
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	evapi__listen *l = arg;

	if (l->state == L_CONNECTING)
		connect_poll(l);
	else if (l->state == L_UP)
		read_input(l);
}

/* The server's notices (its shutdown message among them) go to the log,
 * not to libpq's default of stderr. */
static void on_notice(void *arg, const char *msg)
{
	evapi__listen *l = arg;
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		n--;
	evapi__log(l->app, EVAPI_LOG_DEBUG, "database listener: %.*s", (int)n,
	           msg);
}

/* Starts libpq on the URL, `xkeys`/`xvals` (resolved hosts, or NULL)
 * overriding its fields. */
static void start_pq(evapi__listen *l, const char *const *xkeys,
                     const char *const *xvals)
{
	l->pg = evapi__db_connect_start(l->url, "evapi-listen", xkeys, xvals);
	if (!l->pg || PQstatus(l->pg) == CONNECTION_BAD) {
		drop(l, l->pg ? PQerrorMessage(l->pg) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(l->pg, on_notice, l);
	l->state = L_CONNECTING;
	watch(l, EV_WRITE); /* libpq's documented start */
}

static void on_dns(void *arg, const char *const *keys,
                   const char *const *vals, const char *err)
{
	evapi__listen *l = arg;

	l->dns = NULL;
	if (err) {
		evapi__log(l->app, EVAPI_LOG_WARN,
		           "database listener down: %s", err);
		drop(l, err);
	} else {
		start_pq(l, keys, vals);
	}
}

/* A host name is looked up on the pool first, as db.c's conn_open does. */
static void start(evapi__listen *l)
{
	if (!l->dns_host) {
		start_pq(l, NULL, NULL);
		return;
	}
	l->state = L_CONNECTING;
	l->dns = evapi__db_dns_start(l->app, l->dns_host, l->dns_port, on_dns,
	                             l);
	if (!l->dns)
		drop(l, "cannot look the host name up now");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	start(arg);
}

static int channel_ok(const char *c)
{
	size_t n = c ? strlen(c) : 0;
	size_t i;

	if (n == 0 || n > 63)
		return 0;
	for (i = 0; i < n; i++)
		if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z') ||
		      (c[i] >= '0' && c[i] <= '9') || c[i] == '_'))
			return 0;
	return 1;
}

int evapi_app_db_listen(evapi_app *app, const char *channel,
                        evapi_db_notify_cb cb, void *arg)
{
	evapi__db_conf conf;
	evapi__listen **slot, *l;
	sub *subs;

	if (!app || !cb || !channel_ok(channel))
		return EVAPI_EINVAL;
	if (!pthread_equal(pthread_self(), app->loop_thread))
		return EVAPI_ETHREAD;
	if (evapi__db_conf_of(app, &conf) != 0 || conf.lite_path ||
	    !(slot = evapi__db_listen_slot(app)))
		return EVAPI_ESTATE;
	if (!(l = *slot)) {
		if (!(l = calloc(1, sizeof *l)))
			return EVAPI_ENOMEM;
		l->app = app;
		l->url = strdup(conf.url);
		l->ev = event_new(app->base, -1, 0, on_io, l);
		l->retry = evtimer_new(app->base, on_retry, l);
		if (!l->url || !l->ev || !l->retry ||
		    evapi__db_url_dns(l->url, &l->dns_host, &l->dns_port) < 0) {
			evapi__listen_free(l);
			return EVAPI_ENOMEM;
		}
		*slot = l;
	}
	subs = realloc(l->subs, (size_t)(l->nsubs + 1) * sizeof *subs);
	if (!subs)
		return EVAPI_ENOMEM;
	l->subs = subs;
	if (!(subs[l->nsubs].channel = strdup(channel)))
		return EVAPI_ENOMEM;
	subs[l->nsubs].cb = cb;
	subs[l->nsubs].arg = arg;
	l->nsubs++;
	if (l->state == L_UP)
		send_listens(l);
	else if (l->state == L_DOWN && !evtimer_pending(l->retry, NULL))
		start(l);
	return 0;
}

void evapi__listen_free(evapi__listen *l)
{
	int i;

	if (!l)
		return;
	if (l->ev)
		event_free(l->ev);
	if (l->retry)
		event_free(l->retry);
	if (l->dns)
		evapi__db_dns_abandon(l->dns);
	free(l->dns_host);
	free(l->dns_port);
	PQfinish(l->pg);
	for (i = 0; i < l->nsubs; i++)
		free(l->subs[i].channel);
	free(l->subs);
	free(l->url);
	free(l);
}
