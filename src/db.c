/*
 * db.c: PostgreSQL on the loop. One pool of libpq connections per app,
 * each driven by libpq's asynchronous API (PQconnectStart/PQconnectPoll,
 * PQsendQueryParams, PQsendPrepare + PQsendQueryPrepared, PQconsumeInput)
 * from one persistent libevent event on its socket.
 *
 * Threads: the loop thread owns every connection, query and event here.
 * The one exception is PQcancel, which blocks (it opens a connection to
 * the server): it runs on a pool worker with a PGcancel object made on
 * the loop, which shares nothing with the PGconn; its completion comes
 * back to the loop through the pool's done queue.
 *
 * A query is in one of three places: the wait queue (no connection free),
 * on a connection (running), or on the ready list (its result is final).
 * Every query not yet delivered is on db->queries, so that the app
 * stopping can find it; a request's query is also on the request's
 * pending work (q->pend), whose cancel (q_req_gone) ends it. Its
 * continuation runs from the ready list's event (ready.c), never from inside a libpq
 * event or a cancellation walk, so user code may start new queries.
 *
 * A connection runs one command at a time (a "step"): SET (setup),
 * DEALLOCATE (statement cache eviction), PREPARE, EXECUTE, ROLLBACK. A
 * step ends when PQgetResult returns NULL; only then is the next sent.
 * Cancelling a running query detaches it from its connection at once
 * (the continuation is told now) while the connection keeps draining the
 * step's results and waits for the server-side cancel to complete. Only
 * then, with any open transaction rolled back, is it idle again: a cancel
 * that arrived late could otherwise hit the next query.
 *
 * What a query returns (accessors, JSON, error classes, the reply) is
 * db_result.c's.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

/* Between failed connection attempts: doubling from MIN to MAX. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

/* Q_PIPED: a query of a pipeline waiting behind its first (the one on
 * db->wait) */
enum { Q_WAITING = 1, Q_PIPED, Q_RUNNING, Q_READY };
enum {
	C_EMPTY = 0,    /* slot unused */
	C_CONNECTING,   /* PQconnectPoll in progress */
	C_IDLE,         /* on db->idle, ready for a query */
	C_BUSY          /* a step in flight, or a cancel completing */
};
enum { S_NONE = 0, S_SETUP, S_DEALLOC, S_PREPARE, S_EXEC, S_ROLLBACK,
       S_PIPE };
/* What a pipeline's reader expects next of its current query. */
enum { P_PREP = 1, P_EXEC, P_SYNC };

typedef struct dbq dbq;
typedef struct dbconn dbconn;
typedef struct evapi__db evapi__db;
typedef struct dbpipe dbpipe;


struct dbq {
	TAILQ_ENTRY(dbq) all;    /* db->queries until delivered */
	TAILQ_ENTRY(dbq) link;   /* db->wait */
	evapi__ready_item ready; /* db->ready, its result final */
	evapi__db *db;
	evapi_req *req;          /* NULL for an app-level query */
	evapi__pending pend;     /* on req's pending work */
	int state;
	evapi_db_cb cb;
	evapi_app_db_cb app_cb;
	void *arg;
	char *sql;
	int nparams;
	char **params;           /* in the same block as sql */
	dbconn *conn;            /* while running */
	struct event *timer;     /* acquire timeout, then query timeout */
	evapi_db_tx *tx;         /* the transaction it runs in, until it ends */
	int ends_tx;             /* COMMIT or ROLLBACK of tx */
	dbpipe *pipe;            /* the pipeline it is part of, or NULL */
	int pipe_i;              /* its place in pipe->m */
	evapi_db_result res;
};

/* Several queries of one request sent on one connection in libpq's
 * pipeline mode, each followed by its own Sync: one round trip, and each
 * query its own implicit transaction, so one failing aborts no other.
 * Held by each of its queries and by the connection running it. */
struct dbpipe {
	int n, refs;
	unsigned *prep;          /* n: the statement each query prepares in
	                            the pipeline, else 0 */
	dbq *m[];                /* in the order sent; NULL once freed */
};

typedef struct stmt {
	char *sql;
	unsigned long long hash; /* of sql */
	unsigned id;             /* named "evapi_<id>" on the server */
	unsigned long long used; /* LRU tick */
} stmt;

typedef struct cancel_job {
	evapi__job job;
	PGcancel *pc;
	dbconn *conn;            /* NULL once the connection was closed */
	int pi;                  /* conn->pi when it started */
	int ok;
	char err[256];
} cancel_job;

struct dbconn {
	evapi__db *db;
	evapi_db_tx *tx;         /* pinned to this transaction, or NULL */
	int state;
	PGconn *pg;
	struct event *ev;        /* the socket */
	struct event *timer;     /* connect timeout */
	evutil_socket_t fd;
	short what;              /* what ev waits for */
	int step;
	PGresult *res;           /* results of the step so far */
	size_t bytes;            /* of the rows gathered into res */
	int gathered;            /* res holds rows gathered one by one */
	dbq *q;                  /* the query this step serves, or NULL */
	cancel_job *cancel;      /* a server-side cancel in flight */
	dbconn *idle_next;
	stmt *cache;
	int ncache;
	unsigned next_id;
	unsigned long long tick;
	stmt pending;            /* statement being prepared */
	dbpipe *pipe;            /* the pipeline it runs (step S_PIPE) */
	int pi;                  /* the pipeline's query being read */
	int pitem;               /* and what of it comes next (P_*) */
	int pcut;                /* the pipeline was cut: cancel each of
	                            its queries the server still starts */
	struct event *recancel;  /* the next of those cancels */
	evapi__db_dns *dns;      /* its host name being looked up */
};

TAILQ_HEAD(dbq_list, dbq);

/* A transaction pinned to one connection: from its BEGIN getting a
 * connection until its COMMIT or ROLLBACK ends (or its request goes
 * away), the connection serves its queries only, one at a time. */
struct evapi_db_tx {
	TAILQ_ENTRY(evapi_db_tx) link; /* db->txs */
	evapi__db *db;
	evapi_req *req;          /* holds a reference and a pending count */
	evapi__pending pend;     /* on req's pending work until it ends */
	dbconn *conn;            /* once BEGIN has one; NULL if it broke */
	dbq *q;                  /* the statement in flight, or NULL */
	int began;               /* BEGIN succeeded */
};
TAILQ_HEAD(tx_list, evapi_db_tx);

struct evapi__db {
	evapi_app *app;
	char *url;
	int max, queue_max, cache_size, pipeline;
	unsigned acquire_ms, query_ms;
	size_t max_result;       /* db_max_result_bytes */
	dbconn *conns;           /* max slots */
	dbconn *idle;
	struct dbq_list queries, wait;
	struct tx_list txs;
	int nwait;
	evapi__ready ready;      /* final results, for their continuations */
	int closing;
	int down;                /* the last connection attempt failed */
	int backoff_ms;
	int64_t retry_at_us;     /* no connection attempt before this */
	char last_error[256];
	evapi__lite *lite;       /* a sqlite:// URL (db_sqlite.c): no conns */
	evapi__listen *listen;   /* LISTEN/NOTIFY (db_listen.c), or NULL */
	char *lite_path;
	char *dns_host, *dns_port; /* db_url's hosts, when they need DNS */
};

/* ---- queries: delivery -------------------------------------------------- */

static void conn_after(dbconn *c);
static void conn_close(dbconn *c);
static void pump(evapi__db *db);
static void pipe_fail(dbpipe *p, int err, const char *msg);

/* The transaction is over: its connection goes back to the pool (through
 * conn_after, which rolls back what is still open), the request's
 * pending count and reference are dropped. The request stays alive: the
 * caller's query still holds it, or the caller is req_gone. */
static void tx_end(evapi_db_tx *tx);

/* The request's pending-work walk: the transaction ends (its connection
 * is rolled back before reuse); a statement in flight is cancelled by its
 * own entry. */
static void tx_req_gone(evapi__pending *p)
{
	tx_end(EVAPI__CONTAINER_OF(p, evapi_db_tx, pend));
}

static void tx_end(evapi_db_tx *tx)
{
	evapi__db *db = tx->db;
	dbconn *c = tx->conn;

	TAILQ_REMOVE(&db->txs, tx, link);
	if (tx->q)
		tx->q->tx = NULL;
	if (c) {
		c->tx = NULL;
		/* parked between statements: release it now */
		if (c->step == S_NONE && !c->cancel && !c->q)
			conn_after(c);
	}
	evapi__req_pending_done(tx->req, &tx->pend);
	evapi__req_unref(tx->req);
	free(tx);
}

/* The query's result is final: it goes to the ready list; the
 * continuation runs from its event. `pg` is stolen. */
static void q_finish(dbq *q, int error, PGresult *pg, const char *msg)
{
	evapi__db *db = q->db;
	evapi_db_tx *tx = q->tx;
	/* not yet running: new, waiting, or behind its pipeline's first */
	int waited = q->state != Q_RUNNING && q->state != Q_READY;

	if (q->state == Q_READY) {
		PQclear(pg);
		return;
	}
	if (tx) {
		tx->q = NULL;
		q->tx = NULL;
		if (!tx->began && !error && !(pg && evapi__db_failed(pg)))
			tx->began = 1;
		else if (!tx->began || q->ends_tx)
			tx_end(tx); /* BEGIN failed, or COMMIT/ROLLBACK done */
	}
	if (q->state == Q_WAITING) {
		TAILQ_REMOVE(&db->wait, q, link);
		db->nwait--;
	}
	if (q->conn) {
		if (q->conn->q == q)
			q->conn->q = NULL;
		q->conn = NULL;
	}
	q->state = Q_READY;
	if (q->timer)
		evtimer_del(q->timer);
	q->res.end_us = evapi__now_us();
	evapi__db_result_set(&q->res, error, pg, msg);
	evapi__ready_add(&db->ready, &q->ready);
	/* A pipeline waits for a connection as one: what ends one of its
	 * queries before it runs (no connection, the acquire timeout, the
	 * request gone, the app stopping) ends all. */
	if (waited && q->pipe) {
		int i;
		for (i = 0; i < q->pipe->n; i++)
			if (q->pipe->m[i])
				q_finish(q->pipe->m[i], error, NULL, msg);
	}
}

static void pipe_unref(dbpipe *p)
{
	if (--p->refs == 0)
		free(p);
}

/* Ends every query of `p` still running with `err`. */
static void pipe_fail(dbpipe *p, int err, const char *msg)
{
	int i;
	for (i = 0; i < p->n; i++)
		if (p->m[i] && p->m[i]->state == Q_RUNNING)
			q_finish(p->m[i], err, NULL, msg);
}

static void q_free(dbq *q)
{
	if (q->pipe) {
		q->pipe->m[q->pipe_i] = NULL; /* the pipeline may run on */
		pipe_unref(q->pipe);
	}
	if (q->timer)
		event_free(q->timer);
	evapi__db_result_clear(&q->res);
	free(q->sql);
	free(q);
}

/* The ready list's delivery (ready.c): the continuation runs. */
static void deliver_one(evapi__ready_item *it, void *arg)
{
	dbq *q = EVAPI__CONTAINER_OF(it, dbq, ready);
	evapi__db *db = arg;
	evapi_req *req = q->req;

	TAILQ_REMOVE(&db->queries, q, all);
	if (req) {
		evapi__user u;
		evapi__req_pending_done(req, &q->pend);
		evapi__req_enter(req, &u, "query continuation");
		q->cb(req, req->gone ? EVAPI_ECANCELED : 0, &q->res, q->arg);
		evapi__req_leave(req, &u);
	} else {
		evapi__user u;
		evapi__user_begin(db->app, &u, "query callback", NULL, NULL);
		q->app_cb(db->app, &q->res, q->arg);
		evapi__user_end(db->app, &u);
	}
	q_free(q);
	if (req)
		evapi__req_unref(req);
}

/* ---- connections: wiring ------------------------------------------------ */

static void on_io(evutil_socket_t fd, short what, void *arg);

/* Waits on the connection's current socket for `what`. While connecting,
 * libpq may close its socket and open another (next address, SSL or GSS
 * fallback) that gets the same number: libevent would still think it
 * registered, so then the event is always deleted and added again, which
 * makes epoll see the new socket. */
static void conn_watch(dbconn *c, short what)
{
	evutil_socket_t fd = PQsocket(c->pg);

	if (fd == c->fd && what == c->what && c->state != C_CONNECTING)
		return;
	event_del(c->ev);
	event_assign(c->ev, c->db->app->base, fd, (short)(what | EV_PERSIST),
	             on_io, c);
	c->fd = fd;
	c->what = what;
	if (fd >= 0)
		event_add(c->ev, NULL);
}

static void idle_remove(dbconn *c)
{
	dbconn **p;
	for (p = &c->db->idle; *p; p = &(*p)->idle_next)
		if (*p == c) {
			*p = c->idle_next;
			break;
		}
	c->idle_next = NULL;
}

static void cache_clear(dbconn *c)
{
	int i;
	for (i = 0; i < c->ncache; i++)
		free(c->cache[i].sql);
	c->ncache = 0;
	free(c->pending.sql);
	c->pending.sql = NULL;
}

static int live_conns(const evapi__db *db)
{
	int i, n = 0;
	for (i = 0; i < db->max; i++)
		if (db->conns[i].state != C_EMPTY)
			n++;
	return n;
}

static void conn_close(dbconn *c)
{
	if (c->state == C_EMPTY)
		return;
	if (c->state == C_IDLE)
		idle_remove(c);
	if (c->q)
		q_finish(c->q, EVAPI_EUNAVAIL, NULL,
		         "the database connection was closed");
	if (c->pipe) {
		pipe_fail(c->pipe, EVAPI_EUNAVAIL,
		          "the database connection was closed");
		pipe_unref(c->pipe);
		c->pipe = NULL;
	}
	evtimer_del(c->recancel);
	if (c->dns) {
		evapi__db_dns_abandon(c->dns);
		c->dns = NULL;
	}
	if (c->tx) {
		c->tx->conn = NULL; /* its next statement fails */
		c->tx = NULL;
	}
	if (c->cancel)
		c->cancel->conn = NULL; /* its completion finds no connection */
	c->cancel = NULL;
	event_del(c->ev);
	evtimer_del(c->timer);
	c->fd = -1;
	c->what = 0;
	PQclear(c->res);
	c->res = NULL;
	PQfinish(c->pg);
	c->pg = NULL;
	cache_clear(c);
	c->step = S_NONE;
	c->state = C_EMPTY;
}

/* The connection failed under a query or between queries. */
static void conn_broken(dbconn *c, PGresult *r)
{
	evapi__db *db = c->db;
	const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg);

	evapi__log(db->app, EVAPI_LOG_WARN, "database connection lost: %s",
	           msg && *msg ? msg : "(no message)");
	if (c->q) {
		int err = EVAPI_EUNAVAIL;
		if (r && evapi__db_failed(r))
			err = evapi__db_classify(r, 1);
		if (err == EVAPI_EDB)
			err = EVAPI_EUNAVAIL;
		q_finish(c->q, err, r, msg);
		r = NULL;
	}
	if (c->pipe)
		pipe_fail(c->pipe, EVAPI_EUNAVAIL, msg);
	PQclear(r);
	conn_close(c);
	pump(db);
}

/* Sends what the last PQsend* queued; waits for writability while libpq
 * still holds output. */
static int conn_flush(dbconn *c)
{
	int rc = PQflush(c->pg);
	if (rc < 0)
		return -1;
	conn_watch(c, rc ? (EV_READ | EV_WRITE) : EV_READ);
	return 0;
}

static int conn_send(dbconn *c, int step, int ok)
{
	c->step = step;
	c->bytes = 0;
	c->gathered = 0;
	if (!ok || conn_flush(c) != 0) {
		conn_broken(c, NULL);
		return -1;
	}
	return 0;
}

/* ---- connections: connecting -------------------------------------------- */

static void fail_waiting(evapi__db *db, int err, const char *msg)
{
	dbq *q;
	while ((q = TAILQ_FIRST(&db->wait)))
		q_finish(q, err, NULL, msg);
}

static void connect_failed(dbconn *c, const char *why)
{
	evapi__db *db = c->db;
	size_t n;

	snprintf(db->last_error, sizeof db->last_error, "%s",
	         why && *why ? why : "connection failed");
	n = strlen(db->last_error);
	while (n && db->last_error[n - 1] == '\n')
		db->last_error[--n] = '\0';
	if (!db->down)
		evapi__log(db->app, EVAPI_LOG_WARN,
		           "database unavailable: %s", db->last_error);
	db->down = 1;
	db->backoff_ms = db->backoff_ms ? db->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (db->backoff_ms > BACKOFF_MAX_MS)
		db->backoff_ms = BACKOFF_MAX_MS;
	db->retry_at_us = evapi__now_us() + (int64_t)db->backoff_ms * 1000;
	conn_close(c);
	/* With no connection left to serve them, the waiting queries would
	 * only time out: tell them now. */
	if (live_conns(db) == 0)
		fail_waiting(db, EVAPI_EUNAVAIL, db->last_error);
}

static void conn_idle(dbconn *c)
{
	evapi__db *db = c->db;

	c->state = C_IDLE;
	c->step = S_NONE;
	c->idle_next = db->idle;
	db->idle = c;
	/* watch for the server closing an idle connection */
	conn_watch(c, EV_READ);
	pump(db);
}

static void connected(dbconn *c)
{
	evapi__db *db = c->db;
	const char *ds = PQparameterStatus(c->pg, "DateStyle");

	evtimer_del(c->timer);
	if (db->down)
		evapi__log(db->app, EVAPI_LOG_INFO, "database reachable again");
	db->down = 0;
	db->backoff_ms = 0;
	db->retry_at_us = 0;
	c->state = C_BUSY;
	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_broken(c, NULL);
		return;
	}
	/* The JSON mapping reads dates in the ISO style. */
	if (!ds || strncmp(ds, "ISO", 3) != 0) {
		conn_send(c, S_SETUP, PQsendQuery(c->pg, "SET DateStyle = ISO"));
		return;
	}
	conn_idle(c);
}

static void connect_poll(dbconn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_OK:
		connected(c);
		break;
	case PGRES_POLLING_READING:
		conn_watch(c, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		conn_watch(c, EV_WRITE);
		break;
	default:
		connect_failed(c, PQerrorMessage(c->pg));
	}
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	dbconn *c = arg;
	char msg[96];
	snprintf(msg, sizeof msg, "no connection within %u ms",
	         c->db->acquire_ms);
	connect_failed(c, msg);
}

/* Server notices (NOTICE, WARNING) go to the app's log, not stderr. */
static void on_notice(void *arg, const char *msg)
{
	evapi__db *db = arg;
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		n--;
	evapi__log(db->app, EVAPI_LOG_DEBUG, "database: %.*s", (int)n, msg);
}

/* Starts libpq on the URL, with `xkeys`/`xvals` (the resolved hosts, or
 * NULL) overriding its fields. */
static void conn_start(dbconn *c, const char *const *xkeys,
                       const char *const *xvals)
{
	evapi__db *db = c->db;

	c->pg = evapi__db_connect_start(db->url, "evapi", xkeys, xvals);
	if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
		connect_failed(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(c->pg, on_notice, db);
	/* libpq's documented start: as if PQconnectPoll said WRITING */
	conn_watch(c, EV_WRITE);
}

static void on_dns(void *arg, const char *const *keys,
                   const char *const *vals, const char *err)
{
	dbconn *c = arg;

	c->dns = NULL;
	if (err)
		connect_failed(c, err);
	else
		conn_start(c, keys, vals);
}

/* A host name is looked up on the pool first (db_dns.c): libpq would do
 * it with a blocking getaddrinfo inside PQconnectStartParams. The
 * connect timeout covers the lookup too. */
static void conn_open(dbconn *c)
{
	evapi__db *db = c->db;
	struct timeval tv;

	c->state = C_CONNECTING;
	c->fd = -1;
	c->what = 0;
	tv.tv_sec = db->acquire_ms / 1000;
	tv.tv_usec = (db->acquire_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	if (!db->dns_host) {
		conn_start(c, NULL, NULL);
		return;
	}
	c->dns = evapi__db_dns_start(db->app, db->dns_host, db->dns_port,
	                             on_dns, c);
	if (!c->dns)
		connect_failed(c, "cannot look the host name up now (out of "
		                  "memory, or the worker pool queue is full)");
}

/* ---- connections: running queries --------------------------------------- */

static unsigned long long hash_sql(const char *s)
{
	unsigned long long h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static stmt *cache_find(dbconn *c, const char *sql)
{
	unsigned long long h = hash_sql(sql);
	int i;
	for (i = 0; i < c->ncache; i++)
		if (c->cache[i].hash == h && strcmp(c->cache[i].sql, sql) == 0)
			return &c->cache[i];
	return NULL;
}

static void cache_drop(dbconn *c, stmt *s)
{
	free(s->sql);
	*s = c->cache[--c->ncache];
}

/* The statement just prepared joins the cache (conn_run made room). */
static void cache_add(dbconn *c)
{
	if (!c->pending.sql || c->ncache >= c->db->cache_size)
		return;
	c->pending.used = ++c->tick;
	c->cache[c->ncache++] = c->pending;
	c->pending.sql = NULL;
}

static int send_exec(dbconn *c, const char *name)
{
	dbq *q = c->q;
	int ok = name ? PQsendQueryPrepared(c->pg, name, q->nparams,
	                                    (const char *const *)q->params,
	                                    NULL, NULL, 0)
	              : PQsendQueryParams(c->pg, q->sql, q->nparams, NULL,
	                                  (const char *const *)q->params,
	                                  NULL, NULL, 0);
	/* rows arrive one by one, so a result over db_max_result_bytes is
	 * stopped before libpq holds all of it */
	if (ok)
		PQsetSingleRowMode(c->pg);
	return conn_send(c, S_EXEC, ok);
}

static void stmt_name(char *buf, size_t len, unsigned id)
{
	snprintf(buf, len, "evapi_%u", id);
}

static void send_prepare(dbconn *c)
{
	char name[32];

	c->pending.sql = strdup(c->q->sql);
	c->pending.hash = hash_sql(c->q->sql);
	c->pending.id = ++c->next_id;
	if (!c->pending.sql) { /* out of memory: run it unprepared */
		send_exec(c, NULL);
		return;
	}
	stmt_name(name, sizeof name, c->pending.id);
	conn_send(c, S_PREPARE, PQsendPrepare(c->pg, name, c->q->sql,
	                                      c->q->nparams, NULL));
}

static void on_query_timeout(evutil_socket_t fd, short what, void *arg);

static void pipe_run(dbconn *c, dbpipe *p);
static void cancel_start(dbconn *c);

static void conn_run(dbconn *c, dbq *q)
{
	evapi__db *db = c->db;
	struct timeval tv;
	char name[48];
	stmt *s;

	if (q->pipe) {
		pipe_run(c, q->pipe);
		return;
	}
	idle_remove(c);
	c->state = C_BUSY;
	c->q = q;
	q->conn = c;
	if (q->tx && !q->tx->conn) {
		q->tx->conn = c; /* BEGIN: pinned from now on */
		c->tx = q->tx;
	}
	q->state = Q_RUNNING;
	tv.tv_sec = db->query_ms / 1000;
	tv.tv_usec = (db->query_ms % 1000) * 1000;
	evtimer_add(q->timer, &tv);
	if (db->cache_size == 0) {
		send_exec(c, NULL);
		return;
	}
	if ((s = cache_find(c, q->sql))) {
		s->used = ++c->tick;
		stmt_name(name, sizeof name, s->id);
		send_exec(c, name);
		return;
	}
	if (c->ncache >= db->cache_size) {
		stmt *lru = &c->cache[0];
		int i;
		for (i = 1; i < c->ncache; i++)
			if (c->cache[i].used < lru->used)
				lru = &c->cache[i];
		snprintf(name, sizeof name, "DEALLOCATE evapi_%u", lru->id);
		cache_drop(c, lru);
		conn_send(c, S_DEALLOC, PQsendQuery(c->pg, name));
		return;
	}
	send_prepare(c);
}

/* Query `q`'s results are all in: `r` (stolen) is its outcome. */
static void exec_done(dbconn *c, dbq *q, PGresult *r)
{
	if (r && evapi__db_failed(r) && c->db->cache_size) {
		const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		/* a cached plan the schema outdated: prepare it anew next
		 * time */
		stmt *s = cache_find(c, q->sql);
		if (s && st && (strcmp(st, "0A000") == 0 ||
		                strcmp(st, "26000") == 0))
			cache_drop(c, s);
	}
	if (!r)
		q_finish(q, EVAPI_EDB, NULL, "no result");
	else if (evapi__db_failed(r))
		q_finish(q, evapi__db_classify(r, 0), r, NULL);
	else
		q_finish(q, 0, r, NULL);
}

/* A step's results are all in (PQgetResult gave NULL): the next step. */
static void step_done(dbconn *c)
{
	PGresult *r = c->res;
	int step = c->step;
	dbq *q = c->q;
	char name[32];

	c->res = NULL;
	c->step = S_NONE;
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_broken(c, r);
		return;
	}
	if (!q) {
		/* setup, rollback, or the drain of a cancelled query */
		if (step == S_SETUP && r && evapi__db_failed(r)) {
			conn_broken(c, r);
			return;
		}
		if (step == S_PREPARE && r && !evapi__db_failed(r))
			cache_add(c); /* prepared on the server: keep it */
		free(c->pending.sql);
		c->pending.sql = NULL;
		PQclear(r);
		if (step == S_SETUP)
			conn_idle(c);
		else
			conn_after(c);
		return;
	}
	switch (step) {
	case S_DEALLOC:
		PQclear(r);
		send_prepare(c);
		return;
	case S_PREPARE:
		if (r && evapi__db_failed(r)) {
			free(c->pending.sql);
			c->pending.sql = NULL;
			break;
		}
		PQclear(r);
		cache_add(c);
		stmt_name(name, sizeof name, c->pending.id);
		send_exec(c, name);
		return;
	}
	exec_done(c, q, r);
	conn_after(c);
}

/* Between queries: idle again only with no cancel in flight and no
 * transaction left open. */
static void conn_after(dbconn *c)
{
	if (c->step != S_NONE || c->cancel)
		return; /* the step's end or the cancel's completion calls us */
	if (c->tx && PQtransactionStatus(c->pg) != PQTRANS_UNKNOWN) {
		/* between a pinned transaction's statements: wait for the
		 * next, watching for the server closing the connection */
		conn_watch(c, EV_READ);
		return;
	}
	switch (PQtransactionStatus(c->pg)) {
	case PQTRANS_IDLE:
		conn_idle(c);
		break;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR:
		conn_send(c, S_ROLLBACK, PQsendQuery(c->pg, "ROLLBACK"));
		break;
	default:
		conn_broken(c, NULL);
	}
}

static int is_copy(const PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	return st == PGRES_COPY_IN || st == PGRES_COPY_OUT ||
	       st == PGRES_COPY_BOTH;
}

static void q_cancel(dbq *q, int err, const char *msg);

/* One row of a query in single-row mode: added to c->res. Rows over
 * db_max_result_bytes end the query (EVAPI_ETOOBIG) and cancel it on the
 * server; the rest of them are read and dropped, and the connection is
 * reused as after any cancel. */
static void gather_row(dbconn *c, dbq *q, PGresult *r)
{
	char msg[96];

	if (!q || (c->res && !c->gathered)) {
		PQclear(r); /* cancelled, or after an error: drained */
		return;
	}
	c->gathered = 1;
	if (evapi__db_row_add(&c->res, r, &c->bytes, c->db->max_result) == 0)
		return;
	c->gathered = 0;
	if (c->bytes > c->db->max_result)
		q_cancel(q, EVAPI_ETOOBIG,
		         evapi__db_too_big(msg, sizeof msg, c->db->max_result));
	else
		q_cancel(q, EVAPI_ENOMEM, "out of memory");
}

/* A result of the step (not a row of single-row mode): the first error
 * is kept, else the last result; the end of rows gathered one by one
 * only says that they are all in. `r` is stolen. */
static void keep_result(dbconn *c, PGresult *r)
{
	if (c->res && (evapi__db_failed(c->res) ||
	               (c->gathered && !evapi__db_failed(r)))) {
		PQclear(r);
	} else {
		PQclear(c->res);
		c->res = r;
	}
}

/* ---- pipelines ------------------------------------------------------------ */

/* A new cache entry for `sql` (the caller checked there is room), or NULL
 * when out of memory. */
static stmt *cache_put(dbconn *c, const char *sql)
{
	stmt *s = &c->cache[c->ncache];

	if (!(s->sql = strdup(sql)))
		return NULL;
	s->hash = hash_sql(sql);
	s->id = ++c->next_id;
	s->used = ++c->tick;
	c->ncache++;
	return s;
}

static void cache_drop_id(dbconn *c, unsigned id)
{
	int i;
	for (i = 0; i < c->ncache; i++)
		if (c->cache[i].id == id) {
			cache_drop(c, &c->cache[i]);
			return;
		}
}

/* Queues query `q` and its Sync. A statement not cached is prepared in
 * the same pipeline and cached at once (so a later query of the pipeline
 * with the same text uses it); with the cache full it runs unnamed, as
 * evicting one the pipeline may still use would break that query.
 * Returns what the PQsend* calls return. */
static int pipe_send(dbconn *c, dbpipe *p, int i)
{
	dbq *q = p->m[i];
	char name[32];
	stmt *s = NULL;
	int ok;

	p->prep[i] = 0;
	if (c->db->cache_size) {
		if ((s = cache_find(c, q->sql))) {
			s->used = ++c->tick;
		} else if (c->ncache < c->db->cache_size &&
		           (s = cache_put(c, q->sql))) {
			p->prep[i] = s->id;
			stmt_name(name, sizeof name, s->id);
			if (!PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL))
				return 0;
		}
	}
	if (s) {
		stmt_name(name, sizeof name, s->id);
		ok = PQsendQueryPrepared(c->pg, name, q->nparams,
		                         (const char *const *)q->params, NULL,
		                         NULL, 0);
	} else {
		ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL,
		                       (const char *const *)q->params, NULL,
		                       NULL, 0);
	}
	return ok && PQpipelineSync(c->pg);
}

/* The reader moves on to query c->pi: its PREPARE's result first, if it
 * sent one. Rows come one by one (single-row mode applies to the command
 * whose results libpq reads next, so it is asked for each EXECUTE). */
static void pipe_expect(dbconn *c)
{
	c->bytes = 0;
	c->gathered = 0;
	c->pitem = c->pipe->prep[c->pi] ? P_PREP : P_EXEC;
	if (c->pitem == P_EXEC)
		PQsetSingleRowMode(c->pg);
}

/* Sends every query of `p` on `c` at once, then reads their results as
 * they come back (pipe_read). */
static void pipe_run(dbconn *c, dbpipe *p)
{
	evapi__db *db = c->db;
	struct timeval tv;
	int i, ok;

	idle_remove(c);
	c->state = C_BUSY;
	c->pipe = p;
	p->refs++;
	tv.tv_sec = db->query_ms / 1000;
	tv.tv_usec = (db->query_ms % 1000) * 1000;
	for (i = 0; i < p->n; i++) {
		p->m[i]->state = Q_RUNNING;
		p->m[i]->conn = c;
		evtimer_add(p->m[i]->timer, &tv);
	}
	c->step = S_PIPE;
	c->pi = 0;
	c->pcut = 0;
	ok = PQenterPipelineMode(c->pg);
	for (i = 0; ok && i < p->n; i++)
		ok = pipe_send(c, p, i);
	if (!ok || conn_flush(c) != 0) {
		conn_broken(c, NULL);
		return;
	}
	pipe_expect(c);
}

/* Every Sync is back: the connection leaves pipeline mode and takes the
 * ordinary path (idle, or a rollback first, or waiting for a cancel). */
static void pipe_end(dbconn *c)
{
	PGresult *r = NULL;

	pipe_unref(c->pipe);
	c->pipe = NULL;
	c->step = S_NONE;
	evtimer_del(c->recancel);
	if (!PQexitPipelineMode(c->pg)) {
		/* a NULL libpq still owes us after the last Sync */
		if (PQisBusy(c->pg) || (r = PQgetResult(c->pg))) {
			PQclear(r);
			conn_broken(c, NULL);
			return;
		}
		if (!PQexitPipelineMode(c->pg)) {
			conn_broken(c, NULL);
			return;
		}
	}
	conn_after(c);
}

/* Reads a pipeline's results as far as they have arrived. For each query
 * in turn: its PREPARE's result and NULL (if it sent one), its
 * EXECUTE's results and NULL, then the PGRES_PIPELINE_SYNC of its own
 * Sync. A query ended early (cancelled, timed out) has its results read
 * and dropped. A failed PREPARE makes the EXECUTE after it
 * PGRES_PIPELINE_ABORTED; the PREPARE's error is the query's. */
static void pipe_read(dbconn *c)
{
	PGresult *r;
	dbq *q;

	while (c->pipe && !PQisBusy(c->pg)) {
		q = c->pipe->m[c->pi];
		if (q && q->state != Q_RUNNING)
			q = NULL;
		if (!(r = PQgetResult(c->pg))) {
			if (c->pitem == P_PREP) {
				/* the statement is not on the server: forget it */
				if (c->res && evapi__db_failed(c->res))
					cache_drop_id(c, c->pipe->prep[c->pi]);
				c->pitem = P_EXEC;
				PQsetSingleRowMode(c->pg);
			} else if (c->pitem == P_EXEC) {
				c->pitem = P_SYNC;
			} else {
				conn_broken(c, NULL); /* out of step with libpq */
				return;
			}
			continue;
		}
		switch (PQresultStatus(r)) {
		case PGRES_PIPELINE_SYNC:
			PQclear(r);
			r = c->res;
			c->res = NULL;
			if (q)
				exec_done(c, q, r);
			else
				PQclear(r);
			if (++c->pi == c->pipe->n) {
				pipe_end(c);
				return;
			}
			pipe_expect(c);
			/* a cut pipeline: the server starts the next query now;
			 * a cancel still in flight sends another when done */
			if (c->pcut && !c->cancel)
				cancel_start(c);
			break;
		case PGRES_SINGLE_TUPLE:
			gather_row(c, q, r);
			break;
		default:
			if (c->pitem == P_PREP && !evapi__db_failed(r))
				PQclear(r); /* prepared: the EXECUTE's result is next */
			else
				keep_result(c, r);
		}
	}
}

/* Collects a step's results as far as they have arrived. */
static void conn_read(dbconn *c)
{
	PGresult *r;
	PGnotify *n;

	if (!PQconsumeInput(c->pg)) {
		if (c->step != S_NONE) {
			/* libpq turns the loss into a result: collect it */
			while (!PQisBusy(c->pg) && (r = PQgetResult(c->pg))) {
				PQclear(c->res);
				c->res = r;
			}
		}
		r = c->res;
		c->res = NULL;
		conn_broken(c, r);
		return;
	}
	while ((n = PQnotifies(c->pg)))
		PQfreemem(n);
	if (c->pipe) {
		pipe_read(c);
		return;
	}
	if (c->step == S_NONE) {
		if (PQstatus(c->pg) == CONNECTION_BAD)
			conn_broken(c, NULL);
		return;
	}
	while (!PQisBusy(c->pg)) {
		if (!(r = PQgetResult(c->pg))) {
			step_done(c);
			return;
		}
		if (is_copy(r)) {
			/* COPY speaks its own sub-protocol, and PQgetResult
			 * would return this result for ever: refuse it and drop
			 * the connection, which is mid-copy */
			PQclear(r);
			if (c->q)
				q_finish(c->q, EVAPI_EDB, NULL,
				         "COPY is not supported on the loop");
			conn_close(c);
			pump(c->db);
			return;
		}
		if (PQresultStatus(r) == PGRES_SINGLE_TUPLE)
			gather_row(c, c->q, r);
		else
			keep_result(c, r);
	}
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	dbconn *c = arg;

	if (c->state == C_CONNECTING) {
		connect_poll(c);
		return;
	}
	if ((what & EV_WRITE) && conn_flush(c) != 0) {
		conn_broken(c, NULL);
		return;
	}
	if (what & EV_READ)
		conn_read(c);
}

/* ---- cancelling --------------------------------------------------------- */

static void cancel_work(evapi__job *job)
{
	cancel_job *cj = (cancel_job *)job;
	cj->ok = PQcancel(cj->pc, cj->err, sizeof cj->err);
}

static void cancel_done(evapi__job *job, int status)
{
	cancel_job *cj = (cancel_job *)job;
	dbconn *c = cj->conn;
	int ok, pi = cj->pi;

	/* The pool is being torn down and never ran it: the app is being
	 * freed, so blocking here stalls nobody. */
	if (status != 0)
		cancel_work(job);
	ok = cj->ok;
	if (!ok && c)
		evapi__log(c->db->app, EVAPI_LOG_WARN,
		           "database cancel failed: %s", cj->err);
	PQfreeCancel(cj->pc);
	free(cj);
	if (!c)
		return;
	c->cancel = NULL;
	if (!ok) {
		conn_close(c); /* it may still run the query: never reuse */
		pump(c->db);
		return;
	}
	if (c->pipe) {
		/* A cut pipeline is still being read: the server may start
		 * its next query after this cancel, and a cancel that arrives
		 * between two queries is ignored. Cancel again, at once if it
		 * moved on meanwhile, else shortly, until its last Sync. */
		struct timeval tv = { 0, 50 * 1000 };
		if (c->pi != pi)
			cancel_start(c);
		else
			evtimer_add(c->recancel, &tv);
		return;
	}
	conn_after(c);
}

static void on_recancel(evutil_socket_t fd, short what, void *arg)
{
	dbconn *c = arg;
	if (c->pipe && c->pcut && !c->cancel)
		cancel_start(c);
}

/* Cancels on the server what connection `c` runs. */
static void cancel_start(dbconn *c)
{
	evapi__db *db = c->db;
	cancel_job *cj = calloc(1, sizeof *cj);

	if (cj && (cj->pc = PQgetCancel(c->pg))) {
		cj->job.work = cancel_work;
		cj->job.done = cancel_done;
		cj->conn = c;
		cj->pi = c->pi;
		if (db->closing) {
			cancel_work(&cj->job);
			PQfreeCancel(cj->pc);
			free(cj);
			conn_close(c);
			return;
		}
		if (evapi__pool_submit(db->app->pool, &cj->job) == 0) {
			c->cancel = cj;
			return;
		}
		PQfreeCancel(cj->pc);
	}
	free(cj);
	/* No worker to cancel with: closing the connection is the only
	 * way to be sure the query never meets the next one. */
	evapi__log(db->app, EVAPI_LOG_WARN,
	           "database cancel not possible now: closing the connection");
	conn_close(c);
	pump(db);
}

/* Ends query `q` now with `err`; a running query is cancelled on the
 * server and its connection drained before reuse. */
static void q_cancel(dbq *q, int err, const char *msg)
{
	dbconn *c = q->conn;

	if (q->state == Q_READY)
		return;
	q_finish(q, err, NULL, msg); /* detaches q from c */
	if (c && c->pipe && q->pipe == c->pipe) {
		/* The server runs the pipeline's queries in turn, and the
		 * cancel may reach any of those after this one: the rest end
		 * too (the timeout and the request are theirs as well), with
		 * its error unless that was this query's own. */
		int own = err == EVAPI_ETOOBIG || err == EVAPI_ENOMEM;
		pipe_fail(c->pipe, own ? EVAPI_ECANCELED : err,
		          own ? "another query of its pipeline failed" : msg);
		c->pcut = 1;
		if (c->cancel)
			return;
	}
	if (c && c->step != S_NONE)
		cancel_start(c);
}

static void on_query_timeout(evutil_socket_t fd, short what, void *arg)
{
	dbq *q = arg;
	evapi__db *db = q->db;
	char msg[96];

	if (q->state == Q_WAITING) {
		snprintf(msg, sizeof msg,
		         "no database connection free within %u ms",
		         db->acquire_ms);
		q_finish(q, EVAPI_EBUSY, NULL, msg);
	} else {
		snprintf(msg, sizeof msg, "query over its %u ms timeout",
		         db->query_ms);
		q_cancel(q, EVAPI_ETIMEDOUT, msg);
	}
}

/* ---- the pool ----------------------------------------------------------- */

/* Hands waiting queries to idle connections, and opens connections for
 * the queries still waiting (one each, up to max) unless the last
 * attempt failed too recently. */
static void pump(evapi__db *db)
{
	int i, connecting = 0, want;
	dbq *q;

	if (db->closing)
		return;
	while ((q = TAILQ_FIRST(&db->wait)) && db->idle) {
		TAILQ_REMOVE(&db->wait, q, link);
		db->nwait--;
		conn_run(db->idle, q);
	}
	if (!db->nwait || evapi__now_us() < db->retry_at_us)
		return;
	for (i = 0; i < db->max; i++)
		if (db->conns[i].state == C_CONNECTING)
			connecting++;
	want = db->nwait - connecting;
	for (i = 0; i < db->max && want > 0; i++)
		if (db->conns[i].state == C_EMPTY) {
			want--;
			conn_open(&db->conns[i]);
			if (db->retry_at_us > evapi__now_us())
				break; /* it failed at once */
		}
}

static void submit(evapi__db *db, dbq *q)
{
	struct timeval tv;

	TAILQ_INSERT_TAIL(&db->queries, q, all);
	q->res.start_us = evapi__now_us();
	if (db->idle) {
		conn_run(db->idle, q);
		return;
	}
	if (db->nwait >= db->queue_max) {
		q_finish(q, EVAPI_EBUSY, NULL,
		         "the database wait queue is full");
		return;
	}
	if (live_conns(db) == 0 && evapi__now_us() < db->retry_at_us) {
		q_finish(q, EVAPI_EUNAVAIL, NULL, db->last_error);
		return;
	}
	q->state = Q_WAITING;
	TAILQ_INSERT_TAIL(&db->wait, q, link);
	db->nwait++;
	tv.tv_sec = db->acquire_ms / 1000;
	tv.tv_usec = (db->acquire_ms % 1000) * 1000;
	evtimer_add(q->timer, &tv);
	pump(db);
}

/* The SQL and parameters copied into one block: the strings, then
 * (aligned) the parameter pointers, returned in *pparams. */
char *evapi__db_args_copy(const char *sql, int nparams,
                          const char *const *params, char ***pparams)
{
	size_t len = strlen(sql) + 1, off, n;
	char *block, **p;
	int i;

	for (i = 0; i < nparams; i++)
		if (params[i])
			len += strlen(params[i]) + 1;
	off = (len + sizeof(char *) - 1) & ~(sizeof(char *) - 1);
	if (!(block = malloc(off + (size_t)(nparams + 1) * sizeof(char *))))
		return NULL;
	p = (char **)(void *)(block + off);
	len = strlen(sql) + 1;
	memcpy(block, sql, len);
	for (i = 0; i < nparams; i++) {
		p[i] = NULL;
		if (!params[i])
			continue;
		n = strlen(params[i]) + 1;
		p[i] = block + len;
		memcpy(p[i], params[i], n);
		len += n;
	}
	*pparams = p;
	return block;
}

static dbq *q_new(evapi__db *db, const char *sql, int nparams,
                  const char *const *params)
{
	dbq *q;

	if (!(q = calloc(1, sizeof *q)))
		return NULL;
	q->sql = evapi__db_args_copy(sql, nparams, params, &q->params);
	q->timer = evtimer_new(db->app->base, on_query_timeout, q);
	if (!q->sql || !q->timer) {
		q_free(q);
		return NULL;
	}
	q->nparams = nparams;
	q->db = db;
	return q;
}

/* `q` answers `cb` on behalf of `req`, which it keeps alive and
 * pending until delivered. */
/* The request's pending-work walk: the client left, the deadline passed
 * or the app cut the request. */
static void q_req_gone(evapi__pending *p)
{
	q_cancel(EVAPI__CONTAINER_OF(p, dbq, pend), EVAPI_ECANCELED,
	         "the request went away");
}

static void q_for_req(dbq *q, evapi_req *req, evapi_db_cb cb, void *arg)
{
	q->req = req;
	q->cb = cb;
	q->arg = arg;
	evapi__req_pending_add(req, &q->pend, q_req_gone, "query");
}

int evapi__db_args_valid(const char *sql, int nparams,
                         const char *const *params)
{
	return sql && nparams >= 0 && nparams <= 65535 &&
	       (nparams == 0 || params);
}


int evapi_req_db_query(evapi_req *req, const char *sql, int nparams,
                       const char *const *params, evapi_db_cb cb, void *arg)
{
	evapi__db *db;
	dbq *q;
	int rc;

	if (!req || !cb || !evapi__db_args_valid(sql, nparams, params))
		return EVAPI_EINVAL;
	if ((rc = evapi__req_can_wait(req)) != 0)
		return rc;
	db = req->app->db;
	if (!db || db->closing)
		return EVAPI_ESTATE;
	if (db->lite) {
		evapi__db_conf conf;
		evapi__db_conf_of(req->app, &conf);
		return evapi__lite_req_query(req, &conf, sql, nparams, params,
		                             cb, arg);
	}
	if (!(q = q_new(db, sql, nparams, params)))
		return EVAPI_ENOMEM;
	q_for_req(q, req, cb, arg);
	submit(db, q);
	return 0;
}

int evapi_app_db_query(evapi_app *app, const char *sql, int nparams,
                       const char *const *params, evapi_app_db_cb cb,
                       void *arg)
{
	evapi__db *db;
	dbq *q;

	if (!app || !cb || !evapi__db_args_valid(sql, nparams, params))
		return EVAPI_EINVAL;
	if (!evapi__on_loop(app))
		return EVAPI_ETHREAD;
	db = app->db;
	if (!db || db->closing || app->stopping)
		return EVAPI_ESTATE;
	if (db->lite) {
		evapi__db_conf conf;
		evapi__db_conf_of(app, &conf);
		return evapi__lite_app_query(app, &conf, sql, nparams, params,
		                             cb, arg);
	}
	if (!(q = q_new(db, sql, nparams, params)))
		return EVAPI_ENOMEM;
	q->app_cb = cb;
	q->arg = arg;
	submit(db, q);
	return 0;
}

int evapi__db_pipelined(const evapi_app *app)
{
	return app->db && !app->db->lite && app->db->pipeline;
}

int evapi__db_req_pipeline(evapi_req *req, int n, const evapi_db_query *qs,
                           evapi_db_cb cb, void *const *args)
{
	evapi__db *db;
	dbpipe *p;
	int i, rc;

	if ((rc = evapi__req_can_wait(req)) != 0)
		return rc;
	db = req->app->db;
	if (!db || db->closing || db->lite)
		return EVAPI_ESTATE;
	if (!(p = calloc(1, sizeof *p + (size_t)n * (sizeof *p->m +
	                                             sizeof *p->prep))))
		return EVAPI_ENOMEM;
	p->prep = (unsigned *)(void *)(p->m + n);
	for (i = 0; i < n; i++)
		if (!(p->m[i] = q_new(db, qs[i].sql, qs[i].nparams,
		                      qs[i].params))) {
			while (i-- > 0)
				q_free(p->m[i]);
			free(p);
			return EVAPI_ENOMEM;
		}
	p->n = n;
	p->refs = n;
	for (i = 0; i < n; i++) {
		dbq *q = p->m[i];
		q->pipe = p;
		q->pipe_i = i;
		q_for_req(q, req, cb, args[i]);
		if (i == 0)
			continue;
		/* behind the first, which waits for a connection for all */
		q->state = Q_PIPED;
		q->res.start_us = evapi__now_us();
		TAILQ_INSERT_TAIL(&db->queries, q, all);
	}
	submit(db, p->m[0]);
	return 0;
}

/* ---- transactions --------------------------------------------------------- */

int evapi_req_db_begin(evapi_req *req, evapi_db_tx **out, evapi_db_cb cb,
                       void *arg)
{
	evapi__db *db;
	evapi_db_tx *tx;
	dbq *q;
	int rc;

	if (out)
		*out = NULL;
	if (!req || !out || !cb)
		return EVAPI_EINVAL;
	if ((rc = evapi__req_can_wait(req)) != 0)
		return rc;
	db = req->app->db;
	if (!db || db->closing || db->lite)
		return EVAPI_ESTATE;
	if (!(tx = calloc(1, sizeof *tx)))
		return EVAPI_ENOMEM;
	if (!(q = q_new(db, "BEGIN", 0, NULL))) {
		free(tx);
		return EVAPI_ENOMEM;
	}
	tx->db = db;
	tx->req = req;
	tx->q = q;
	TAILQ_INSERT_TAIL(&db->txs, tx, link);
	/* the transaction's own, until it ends */
	evapi__req_pending_add(req, &tx->pend, tx_req_gone, "transaction");
	q->tx = tx;
	q_for_req(q, req, cb, arg);
	*out = tx;
	submit(db, q);
	return 0;
}

/* A statement of transaction `tx` on its pinned connection. */
static int tx_send(evapi_db_tx *tx, const char *sql, int nparams,
                   const char *const *params, int ends, evapi_db_cb cb,
                   void *arg)
{
	evapi_req *req;
	dbq *q;
	int rc;

	if (!tx || !cb || !evapi__db_args_valid(sql, nparams, params))
		return EVAPI_EINVAL;
	req = tx->req;
	if ((rc = evapi__req_can_wait(req)) != 0)
		return rc;
	if (tx->q)
		return EVAPI_EBUSY; /* one statement at a time */
	if (tx->began && !tx->conn && ends) {
		tx_end(tx); /* its connection broke: nothing to end there */
		return EVAPI_ESTATE;
	}
	if (!tx->conn || tx->db->closing)
		return EVAPI_ESTATE; /* not begun, or its connection broke */
	if (!(q = q_new(tx->db, sql, nparams, params)))
		return EVAPI_ENOMEM;
	q->tx = tx;
	q->ends_tx = ends;
	q_for_req(q, req, cb, arg);
	tx->q = q;
	TAILQ_INSERT_TAIL(&tx->db->queries, q, all);
	q->res.start_us = evapi__now_us();
	conn_run(tx->conn, q);
	return 0;
}

int evapi_db_tx_query(evapi_db_tx *tx, const char *sql, int nparams,
                      const char *const *params, evapi_db_cb cb, void *arg)
{
	return tx_send(tx, sql, nparams, params, 0, cb, arg);
}

int evapi_db_tx_commit(evapi_db_tx *tx, evapi_db_cb cb, void *arg)
{
	return tx_send(tx, "COMMIT", 0, NULL, 1, cb, arg);
}

int evapi_db_tx_rollback(evapi_db_tx *tx, evapi_db_cb cb, void *arg)
{
	return tx_send(tx, "ROLLBACK", 0, NULL, 1, cb, arg);
}

/* ---- the app's side ----------------------------------------------------- */

evapi__listen **evapi__db_listen_slot(evapi_app *app)
{
	return app->db ? &app->db->listen : NULL;
}

int evapi__db_conf_of(const evapi_app *app, evapi__db_conf *conf)
{
	const evapi__db *db = app->db;

	if (!db)
		return EVAPI_ESTATE;
	conf->url = db->url;
	conf->lite_path = db->lite_path;
	conf->acquire_ms = db->acquire_ms;
	conf->query_ms = db->query_ms;
	conf->cache_size = db->cache_size;
	conf->max_result = db->max_result;
	return 0;
}

int evapi__db_new(evapi_app *app)
{
	const evapi_config *cfg = &app->cfg;
	PQconninfoOption *opts = NULL;
	char *err = NULL;
	evapi__db *db;
	int i, lite;

	if (!cfg->db_url)
		return 0;
	lite = evapi__lite_url(cfg->db_url);
	if (!lite && !(opts = PQconninfoParse(cfg->db_url, &err))) {
		evapi__log(app, EVAPI_LOG_ERROR, "db_url: %s",
		           err ? err : "out of memory");
		PQfreemem(err);
		return err ? EVAPI_EINVAL : EVAPI_ENOMEM;
	}
	if (!lite)
		PQconninfoFree(opts);
	if (!(db = calloc(1, sizeof *db)))
		return EVAPI_ENOMEM;
	app->db = db;
	db->app = app;
	db->max = cfg->db_max_connections;
	db->queue_max = cfg->db_queue_max;
	db->cache_size = cfg->db_statement_cache;
	db->pipeline = cfg->db_pipeline;
	db->acquire_ms = (unsigned)cfg->db_acquire_timeout_ms;
	db->query_ms = (unsigned)cfg->db_query_timeout_ms;
	db->max_result = cfg->db_max_result_bytes;
	TAILQ_INIT(&db->queries);
	TAILQ_INIT(&db->wait);
	TAILQ_INIT(&db->txs);
	if (!(db->url = strdup(cfg->db_url)))
		return EVAPI_ENOMEM;
	if (lite)
		return evapi__lite_new(app, db->url, &db->lite, &db->lite_path);
	if (evapi__db_url_dns(db->url, &db->dns_host, &db->dns_port) < 0)
		return EVAPI_ENOMEM;
	db->conns = calloc((size_t)db->max, sizeof *db->conns);
	if (!db->conns ||
	    evapi__ready_init(&db->ready, app->base, deliver_one, db) != 0)
		return EVAPI_ENOMEM;
	for (i = 0; i < db->max; i++) {
		dbconn *c = &db->conns[i];
		c->db = db;
		c->fd = -1;
		c->ev = event_new(app->base, -1, 0, on_io, c);
		c->timer = evtimer_new(app->base, on_connect_timeout, c);
		c->recancel = evtimer_new(app->base, on_recancel, c);
		c->cache = calloc((size_t)(db->cache_size ? db->cache_size : 1),
		                  sizeof *c->cache);
		if (!c->ev || !c->timer || !c->recancel || !c->cache)
			return EVAPI_ENOMEM;
	}
	return 0;
}

/* Loop thread, the loop no longer running and the worker pool gone:
 * cancels what is left (blocking cancels are fine now), runs the
 * continuations and closes every connection. */
void evapi__db_free(evapi_app *app)
{
	evapi__db *db = app->db;
	dbq *q, *next;
	int i;

	if (!db)
		return;
	db->closing = 1;
	for (q = TAILQ_FIRST(&db->queries); q; q = next) {
		next = TAILQ_NEXT(q, all);
		q_cancel(q, EVAPI_ECANCELED, "the app stopped");
	}
	/* requests were cut before (their transactions ended then) */
	while (!TAILQ_EMPTY(&db->txs))
		tx_end(TAILQ_FIRST(&db->txs));
	evapi__ready_run(&db->ready);
	for (i = 0; db->conns && i < db->max; i++) {
		dbconn *c = &db->conns[i];
		conn_close(c);
		if (c->ev)
			event_free(c->ev);
		if (c->timer)
			event_free(c->timer);
		if (c->recancel)
			event_free(c->recancel);
		free(c->cache);
	}
	evapi__ready_free(&db->ready);
	free(db->conns);
	evapi__listen_free(db->listen);
	evapi__lite_free(db->lite);
	free(db->lite_path);
	free(db->dns_host);
	free(db->dns_port);
	free(db->url);
	free(db);
	app->db = NULL;
}
