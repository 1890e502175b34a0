/*
 * redis.c: Redis on the loop through hiredis (0.14's asynchronous API)
 * and its libevent adapter on the app's event base: the command
 * connection, the subscription connection, and the bridge that carries
 * channel.c's broadcasts between processes.
 *
 * Threads: the loop thread owns both connections, every command and
 * every subscription. A pool-lane message callback runs on a pool
 * worker with copies of the message (one job each): nothing it gets
 * points into hiredis.
 *
 * hiredis 0.14 has no timeouts and no way to take back a sent command:
 * the connect timer and a timer per command are ours. A command (rcom)
 * has two holders: hiredis, until it calls on_reply (with the reply, or
 * NULL when the connection goes), and us, until its continuation ran.
 * Its outcome is fixed once (finish): by the reply, its timeout, its
 * request's cancel or the app stopping; the continuation runs later
 * from the ready list's event (ready.c), never from inside hiredis or a cancellation
 * walk. It is freed when both holders let go. Its timer stays armed
 * while hiredis holds it, whatever its outcome: Redis answers in order,
 * so a command that never answers (a cancelled BLPOP) would hold every
 * later one; past the timeout the connection is closed instead.
 *
 * hiredis frees a context itself after a failed connect, after its
 * disconnect callback, and in redisAsyncFree: every path that lets a
 * context go clears rconn.ac first (the callbacks find their rconn in
 * ac->data, NULL once we dropped it), so nothing touches a freed one.
 *
 * The bridge: channel.c delivers a publish to this process's
 * subscribers at once and hands it here; it is PUBLISHed on
 * "evapi:channel:<name>" with the app's origin tag in front of the
 * text. Every app PSUBSCRIBEs "evapi:channel:*" and delivers what
 * arrives to its own subscribers, skipping what carries its own tag
 * (delivered already). A message without a tag (redis-cli PUBLISH) is
 * delivered as it is.
 */
#define _GNU_SOURCE /* strndup */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"
#include "redis.h"

/* Between failed connection attempts: doubling from MIN to MAX. */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define MAX_ARGS 1024
#define BRIDGE_PREFIX "evapi:channel:"
#define TAG_MARK '\x1e'
#define TAG_LEN 18 /* mark, 16 hex digits, mark */

typedef struct evapi__redis rstate;
typedef struct rcom rcom;
typedef struct rconn rconn;
typedef struct topic topic;
typedef struct tsub tsub;

enum { Q_RUNNING = 0, Q_READY, Q_DELIVERED };

struct rcom {
	TAILQ_ENTRY(rcom) all;   /* r->cmds until delivered */
	evapi__ready_item ready; /* r->ready, its outcome final */
	rstate *r;
	evapi_req *req;          /* NULL for an app-level command */
	evapi__pending pend;     /* on the request's or the app's work */
	int state;
	int in_hiredis;          /* on_reply still to come */
	evapi_redis_cb cb;
	evapi_app_redis_cb app_cb;
	void *arg;
	struct event *timer;
	evapi_redis_reply res;
	/* while the connection's host name is looked up: the command,
	 * formatted, on rconn.waiting (hiredis takes it once connected) */
	TAILQ_ENTRY(rcom) wait;
	int waiting;
	char *fmt;
	int fmtlen;
};

TAILQ_HEAD(rcom_list, rcom);

struct rconn {
	rstate *r;
	const char *what;        /* "commands", "subscriptions" */
	redisAsyncContext *ac;   /* NULL when closed */
	int up;                  /* connected */
	int sub;                 /* the subscription connection */
	struct event *timer;     /* connect timeout; sub: the next attempt */
	int backoff_ms;
	int64_t retry_at_us;     /* commands: no attempt before */
	int failures;            /* in a row, for the log */
	char last_error[128];
	evapi__dns *dns;         /* the host name's lookup, while it runs */
	unsigned addr_turn;      /* which address found to try: the next
	                          * one after a failed attempt */
	struct rcom_list waiting; /* commands sent during the lookup */
};

struct tsub {
	tsub *next;
	evapi_lane lane;
	evapi_redis_message_cb cb;
	void *arg;
};

struct topic {
	topic *next;
	rstate *r;
	int pattern;
	int confirmed;           /* on the current connection */
	tsub *subs;
	char name[];
};

struct evapi__redis {
	evapi_app *app;
	evapi__redis_conf conf;  /* fixed after evapi_app_new */
	rconn cmd, sub;
	struct rcom_list cmds;
	evapi__ready ready;      /* final outcomes, for their continuations */
	topic *topics;
	int ntopics, nconfirmed;
	int subscribed;          /* atomic: evapi_app_redis_subscribed */
	int closing;
	char tag[TAG_LEN + 1];
};

/* ---- replies ----------------------------------------------------------- */

void evapi__redis_reply_clear(evapi_redis_reply *res)
{
	size_t i;

	for (i = 0; i < res->n; i++)
		evapi__redis_reply_clear(&res->el[i]);
	free(res->el);
	free(res->str);
	free(res->errmsg);
	res->el = NULL;
	res->str = res->errmsg = NULL;
	res->n = 0;
}

int evapi__redis_reply_copy(evapi_redis_reply *dst, const redisReply *src)
{
	size_t i;

	switch (src->type) {
	case REDIS_REPLY_STRING: dst->type = EVAPI_REDIS_STRING; break;
	case REDIS_REPLY_ARRAY: dst->type = EVAPI_REDIS_ARRAY; break;
	case REDIS_REPLY_INTEGER: dst->type = EVAPI_REDIS_INTEGER; break;
	case REDIS_REPLY_STATUS: dst->type = EVAPI_REDIS_STATUS; break;
	case REDIS_REPLY_ERROR: dst->type = EVAPI_REDIS_ERROR; break;
	default: dst->type = EVAPI_REDIS_NIL; break;
	}
	dst->integer = src->integer;
	if (dst->type == EVAPI_REDIS_STRING || dst->type == EVAPI_REDIS_STATUS ||
	    dst->type == EVAPI_REDIS_ERROR) {
		if (!(dst->str = malloc(src->len + 1)))
			return -1;
		memcpy(dst->str, src->str, src->len);
		dst->str[src->len] = '\0';
		dst->len = src->len;
	}
	if (dst->type == EVAPI_REDIS_ARRAY && src->elements) {
		if (!(dst->el = calloc(src->elements, sizeof *dst->el)))
			return -1;
		dst->n = src->elements;
		for (i = 0; i < src->elements; i++)
			if (evapi__redis_reply_copy(&dst->el[i], src->element[i]) != 0)
				return -1;
	}
	return 0;
}

void evapi__redis_reply_msg(evapi_redis_reply *res, const char *msg)
{
	free(res->errmsg);
	res->errmsg = msg ? strdup(msg) : NULL;
}

int evapi_redis_reply_error(const evapi_redis_reply *r)
{
	return r ? r->error : EVAPI_EINVAL;
}

evapi_redis_type evapi_redis_reply_type(const evapi_redis_reply *r)
{
	return r ? r->type : EVAPI_REDIS_NONE;
}

const char *evapi_redis_reply_str(const evapi_redis_reply *r, size_t *len)
{
	if (len)
		*len = r && r->str ? r->len : 0;
	return r ? r->str : NULL;
}

long long evapi_redis_reply_integer(const evapi_redis_reply *r)
{
	return r && r->type == EVAPI_REDIS_INTEGER ? r->integer : 0;
}

size_t evapi_redis_reply_elements(const evapi_redis_reply *r)
{
	return r ? r->n : 0;
}

const evapi_redis_reply *evapi_redis_reply_element(const evapi_redis_reply *r,
                                                   size_t i)
{
	return r && i < r->n ? &r->el[i] : NULL;
}

const char *evapi_redis_reply_errmsg(const evapi_redis_reply *r)
{
	if (!r)
		return "";
	if (r->errmsg)
		return r->errmsg;
	return r->type == EVAPI_REDIS_ERROR && r->str ? r->str : "";
}

double evapi_redis_reply_ms(const evapi_redis_reply *r)
{
	return r ? (double)(r->end_us - r->start_us) / 1000.0 : 0;
}

json_t *evapi_redis_reply_json(const evapi_redis_reply *r)
{
	json_t *a, *v;
	size_t i;

	if (!r || r->error == EVAPI_EUNAVAIL || r->error == EVAPI_ETIMEDOUT ||
	    r->error == EVAPI_ECANCELED || r->type == EVAPI_REDIS_NONE)
		return NULL;
	switch (r->type) {
	case EVAPI_REDIS_STRING:
	case EVAPI_REDIS_STATUS:
		v = json_stringn(r->str, r->len);
		return v ? v : json_null(); /* not UTF-8 */
	case EVAPI_REDIS_INTEGER:
		return json_integer(r->integer);
	case EVAPI_REDIS_ERROR:
		return json_pack("{s:s%}", "error", r->str, r->len);
	case EVAPI_REDIS_ARRAY:
		if (!(a = json_array()))
			return NULL;
		for (i = 0; i < r->n; i++) {
			v = evapi_redis_reply_json(&r->el[i]);
			if (!v || json_array_append_new(a, v) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	default:
		return json_null();
	}
}

int evapi_redis_reply_http_status(const evapi_redis_reply *r)
{
	switch (r ? r->error : EVAPI_EINVAL) {
	case 0:
		return 0;
	case EVAPI_EUNAVAIL:
	case EVAPI_ECANCELED:
		return 503;
	case EVAPI_ETIMEDOUT:
		return 504;
	default:
		return 500;
	}
}

int evapi_reply_redis_error(evapi_req *req, const evapi_redis_reply *r)
{
	int status = evapi_redis_reply_http_status(r);
	const char *detail = "Internal Server Error";

	if (status == 0)
		return EVAPI_EINVAL;
	if (req)
		evapi__log(req->app, status == 500 ? EVAPI_LOG_ERROR
		                                   : EVAPI_LOG_WARN,
		           "%s: redis: %s: %s: %d id=%llu",
		           req->route ? req->route->label : "-",
		           evapi_strerror(r ? r->error : EVAPI_EINVAL),
		           evapi_redis_reply_errmsg(r), status, req->id);
	if (status == 503) {
		evapi_reply_add_header(req, "Retry-After", "1");
		detail = "Redis unavailable";
	} else if (status == 504) {
		detail = "Redis timed out";
	}
	return evapi_reply_error(req, status, detail);
}

/* ---- commands: outcome and delivery ------------------------------------ */

static void ms_tv(unsigned ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

static void q_free(rcom *q)
{
	if (q->timer)
		event_free(q->timer);
	evapi__redis_reply_clear(&q->res);
	if (q->fmt)
		redisFreeCommand(q->fmt);
	free(q);
}

/* The outcome is final: to the ready list; the continuation runs from
 * its event. `msg` (copied) says what went wrong. */
static void finish(rcom *q, int error, const char *msg)
{
	if (q->state != Q_RUNNING)
		return;
	q->state = Q_READY;
	q->res.error = error;
	q->res.end_us = evapi__now_us();
	if (msg)
		evapi__redis_reply_msg(&q->res, msg);
	evapi__ready_add(&q->r->ready, &q->ready);
}

/* The ready list's delivery (ready.c): the continuation runs. */
static void deliver_one(evapi__ready_item *it, void *arg)
{
	rcom *q = EVAPI__CONTAINER_OF(it, rcom, ready);
	rstate *r = arg;
	evapi_req *req = q->req;
	evapi__user u;

	TAILQ_REMOVE(&r->cmds, q, all);
	q->state = Q_DELIVERED;
	if (req) {
		evapi__req_pending_done(req, &q->pend);
		evapi__req_enter(req, &u, "redis continuation");
		q->cb(req, req->gone ? EVAPI_ECANCELED : 0, &q->res, q->arg);
		evapi__req_leave(req, &u);
	} else {
		evapi__pending_unlink(&q->pend);
		if (q->app_cb) {
			evapi__user_begin(r->app, &u, "redis callback", NULL,
			                  NULL);
			q->app_cb(r->app, &q->res, q->arg);
			evapi__user_end(r->app, &u);
		} else if (q->res.error && q->res.error != EVAPI_ECANCELED) {
			evapi__log(r->app, EVAPI_LOG_WARN, "redis: %s: %s",
			           evapi_strerror(q->res.error),
			           evapi_redis_reply_errmsg(&q->res));
		}
	}
	if (!q->in_hiredis)
		q_free(q);
	if (req)
		evapi__req_unref(req);
}

/* ---- connections ------------------------------------------------------- */

static void conn_open(rconn *c);
static void sub_send(rconn *c, topic *t);
static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Commands sent while the host name was looked up go to hiredis now
 * (c->ac set), or fail with `why` (c->ac NULL). One finished meanwhile
 * (its timeout, its request gone) is only let go. */
static void wait_flush(rconn *c, const char *why)
{
	rcom *q;

	while ((q = TAILQ_FIRST(&c->waiting))) {
		TAILQ_REMOVE(&c->waiting, q, wait);
		q->waiting = 0;
		if (q->state == Q_RUNNING && c->ac &&
		    redisAsyncFormattedCommand(c->ac, on_reply, q, q->fmt,
		                               (size_t)q->fmtlen) == REDIS_OK)
			continue; /* hiredis holds it now */
		finish(q, EVAPI_EUNAVAIL, why ? why : "the connection to Redis "
		                                      "is closing");
		q->in_hiredis = 0;
		if (q->state == Q_DELIVERED)
			q_free(q);
	}
}

static void set_subscribed(rstate *r)
{
	EVAPI__STORE(&r->subscribed,
	             r->sub.up && r->ntopics > 0 && r->nconfirmed == r->ntopics);
}

/* The subscription connection is closed: nothing is confirmed. */
static void sub_reset(rstate *r)
{
	topic *t;

	for (t = r->topics; t; t = t->next)
		t->confirmed = 0;
	r->nconfirmed = 0;
	set_subscribed(r);
}

/* The connection is closed (hiredis freed it or will): back off. The
 * subscription connection tries again from its timer; the command
 * connection from the next command after retry_at_us. */
static void conn_closed(rconn *c, const char *why, int failed)
{
	rstate *r = c->r;
	struct timeval tv;
	int delay;

	c->ac = NULL;
	c->up = 0;
	if (c->dns) {
		evapi__dns_abandon(c->dns);
		c->dns = NULL;
	}
	wait_flush(c, why);
	if (c->sub)
		sub_reset(r);
	if (r->closing)
		return;
	snprintf(c->last_error, sizeof c->last_error, "%s",
	         why && *why ? why : "connection closed");
	if (failed) {
		c->addr_turn++; /* another address of the name next time */
		delay = c->backoff_ms;
		c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS
		                        ? BACKOFF_MAX_MS : c->backoff_ms * 2;
		/* the first failure in a row is news; the rest are not */
		evapi__log(r->app, c->failures++ ? EVAPI_LOG_DEBUG
		                                 : EVAPI_LOG_WARN,
		           "redis: cannot connect (%s) to %s:%d: %s", c->what,
		           r->conf.host, r->conf.port, c->last_error);
	} else {
		delay = 0;
		evapi__log(r->app, EVAPI_LOG_WARN,
		           "redis: connection (%s) to %s:%d lost: %s", c->what,
		           r->conf.host, r->conf.port, c->last_error);
	}
	c->retry_at_us = evapi__now_us() + (int64_t)delay * 1000;
	if (c->sub && r->ntopics) {
		ms_tv((unsigned)delay, &tv);
		evtimer_add(c->timer, &tv);
	}
}

/* Closes the connection now; hiredis calls every callback still
 * waiting with no reply (their commands fail as unavailable). */
static void conn_drop(rconn *c, const char *why, int failed)
{
	redisAsyncContext *ac = c->ac;

	if (!ac && !c->dns) {
		wait_flush(c, why); /* none wait without a lookup; in case */
		return;
	}
	if (ac)
		ac->data = NULL; /* its callbacks now find no connection */
	evtimer_del(c->timer);
	conn_closed(c, why, failed);
	if (ac)
		redisAsyncFree(ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	rconn *c = ac->data;

	if (!c)
		return;
	evtimer_del(c->timer);
	if (status != REDIS_OK) {
		/* hiredis frees the context when this returns */
		conn_closed(c, ac->errstr, 1);
		return;
	}
	c->up = 1;
	c->backoff_ms = BACKOFF_MIN_MS;
	if (c->failures)
		evapi__log(c->r->app, EVAPI_LOG_INFO,
		           "redis: connected (%s) to %s:%d", c->what,
		           c->r->conf.host, c->r->conf.port);
	c->failures = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	rconn *c = ac->data;

	if (!c)
		return; /* we dropped it */
	conn_closed(c, ac->errstr, 0);
}

/* The connect timeout of a connection still connecting, or (the
 * subscription connection) the next attempt. */
static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	rconn *c = arg;
	char msg[64];

	if (c->ac || c->dns) {
		snprintf(msg, sizeof msg, "not connected within %u ms",
		         c->r->conf.connect_ms);
		conn_drop(c, msg, 1);
	} else if (!c->r->closing) {
		conn_open(c);
	}
}

/* AUTH and SELECT replies: only a failure is of interest. */
static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rr = reply;
	rconn *c = ac->data;

	if (c && rr && rr->type == REDIS_REPLY_ERROR)
		evapi__log(c->r->app, EVAPI_LOG_ERROR, "redis: %s (%s): %s",
		           (const char *)priv, c->what, rr->str);
}

/* Connects to `addr` (numeric, or the URL's host when it is one); the
 * connect timer runs from the attempt's start (the lookup's, if any). */
static void conn_connect(rconn *c, const char *addr)
{
	rstate *r = c->r;
	redisAsyncContext *ac;
	struct timeval tv;
	char db[16];
	topic *t;

	ac = redisAsyncConnect(addr, r->conf.port);
	if (!ac || ac->err) {
		char why[128];
		snprintf(why, sizeof why, "%s", ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		conn_closed(c, why, 1);
		return;
	}
	if (redisLibeventAttach(ac, r->app->base) != REDIS_OK) {
		redisAsyncFree(ac);
		conn_closed(c, "cannot watch the socket", 1);
		return;
	}
	ac->data = c;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->ac = ac;
	if (!evtimer_pending(c->timer, NULL)) {
		ms_tv(r->conf.connect_ms, &tv);
		evtimer_add(c->timer, &tv);
	}
	/* sent once connected, before anything else */
	if (r->conf.pass) {
		const evapi__redis_conf *k = &r->conf;
		const char *argv[3] = {"AUTH", k->user ? k->user : k->pass,
		                       k->pass};
		redisAsyncCommandArgv(ac, on_setup, (char *)"AUTH",
		                      k->user ? 3 : 2, argv, NULL);
	}
	if (!c->sub && r->conf.db) {
		const char *argv[] = {"SELECT", db};
		snprintf(db, sizeof db, "%d", r->conf.db);
		redisAsyncCommandArgv(ac, on_setup, (char *)"SELECT", 2, argv,
		                      NULL);
	}
	for (t = c->sub ? r->topics : NULL; t; t = t->next)
		sub_send(c, t);
	wait_flush(c, NULL); /* after AUTH and SELECT */
}

/* The host name's addresses, found on a worker: connect to one of them,
 * a different one after each failed attempt. */
static void on_resolved(void *arg, const struct addrinfo *res,
                        const char *err)
{
	rconn *c = arg;
	const struct addrinfo *ai;
	char addr[64];
	unsigned n = 0;

	c->dns = NULL;
	if (c->r->closing) {
		wait_flush(c, "the app stopped");
		return;
	}
	for (ai = res; ai; ai = ai->ai_next)
		n++;
	ai = res;
	for (n = n ? c->addr_turn % n : 0; n > 0; n--)
		ai = ai->ai_next;
	if (!ai || evapi__dns_numeric(ai, addr, sizeof addr) != 0) {
		evtimer_del(c->timer);
		conn_closed(c, err ? err : "cannot use the address found", 1);
		return;
	}
	conn_connect(c, addr);
}

/* One connection attempt. A host name is looked up on the pool first
 * (hiredis would resolve it with a blocking getaddrinfo on the loop);
 * commands sent meanwhile wait on c->waiting. */
static void conn_open(rconn *c)
{
	rstate *r = c->r;
	struct timeval tv;
	char port[16];

	if (c->ac || c->dns)
		return;
	if (evapi__dns_is_numeric(r->conf.host)) {
		conn_connect(c, r->conf.host);
		return;
	}
	snprintf(port, sizeof port, "%d", r->conf.port);
	c->dns = evapi__dns_start(r->app, r->conf.host, port, SOCK_STREAM,
	                          on_resolved, c);
	if (!c->dns) {
		conn_closed(c, "cannot start the host name lookup", 1);
		return;
	}
	ms_tv(r->conf.connect_ms, &tv);
	evtimer_add(c->timer, &tv);
}

/* ---- commands ---------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	rcom *q = priv;
	redisReply *rr = reply;

	q->in_hiredis = 0;
	evtimer_del(q->timer);
	if (q->state == Q_RUNNING) {
		if (!rr) {
			finish(q, EVAPI_EUNAVAIL,
			       ac->errstr[0] ? ac->errstr
			                     : "the connection to Redis closed");
		} else if (evapi__redis_reply_copy(&q->res, rr) != 0) {
			evapi__redis_reply_clear(&q->res);
			q->res.type = EVAPI_REDIS_NONE;
			finish(q, EVAPI_EUNAVAIL, "out of memory");
		} else {
			finish(q, rr->type == REDIS_REPLY_ERROR ? EVAPI_EUPSTREAM
			                                        : 0, NULL);
		}
	} else if (q->state == Q_DELIVERED) {
		q_free(q);
	}
}

/* Over the timeout: the command fails, and a connection that still
 * owes its reply is closed (every later reply waits behind it). */
static void on_cmd_timer(evutil_socket_t fd, short what, void *arg)
{
	rcom *q = arg;
	rstate *r = q->r;
	char msg[64];

	snprintf(msg, sizeof msg, "command over its %u ms timeout",
	         r->conf.command_ms);
	finish(q, EVAPI_ETIMEDOUT, msg);
	if (q->in_hiredis && !q->waiting)
		conn_drop(&r->cmd, msg, 0);
}

/* The request's pending-work walk (client gone, deadline, cut), or the
 * app's at shutdown. */
static void q_gone(evapi__pending *p)
{
	rcom *q = EVAPI__CONTAINER_OF(p, rcom, pend);
	finish(q, EVAPI_ECANCELED,
	       q->req ? "the request went away" : "the app stopped");
}

int evapi__redis_args_valid(int argc, const char *const *argv)
{
	static const char *const refused[] = {"subscribe", "psubscribe",
	                                      "unsubscribe", "punsubscribe",
	                                      "monitor"};
	size_t i;
	int k;

	if (argc < 1 || argc > MAX_ARGS || !argv)
		return 0;
	for (k = 0; k < argc; k++)
		if (!argv[k])
			return 0;
	/* they would turn the command connection into something else */
	for (i = 0; i < sizeof refused / sizeof refused[0]; i++)
		if (strcasecmp(argv[0], refused[i]) == 0)
			return 0;
	return 1;
}

/* The app's Redis for app-level work: loop thread, redis_url set, not
 * stopping; else NULL with the code in *rc. */
static rstate *app_redis(evapi_app *app, int *rc)
{
	rstate *r = app->redis;

	*rc = 0;
	if (!evapi__on_loop(app))
		*rc = EVAPI_ETHREAD;
	else if (!r || r->closing || app->freeing)
		*rc = EVAPI_ESTATE;
	return *rc ? NULL : r;
}

static rcom *q_new(rstate *r)
{
	rcom *q = calloc(1, sizeof *q);

	if (!q)
		return NULL;
	if (!(q->timer = evtimer_new(r->app->base, on_cmd_timer, q))) {
		free(q);
		return NULL;
	}
	q->r = r;
	return q;
}

static void submit(rstate *r, rcom *q, int argc, const char *const *argv,
                   const size_t *lens)
{
	rconn *c = &r->cmd;
	struct timeval tv;

	TAILQ_INSERT_TAIL(&r->cmds, q, all);
	q->res.start_us = evapi__now_us();
	if (!c->ac && q->res.start_us >= c->retry_at_us)
		conn_open(c);
	if (c->dns) {
		/* hiredis takes it once connected (wait_flush) */
		q->fmtlen = redisFormatCommandArgv(&q->fmt, argc,
		                                   (const char **)argv, lens);
		if (q->fmtlen < 0) {
			q->fmt = NULL;
			finish(q, EVAPI_EUNAVAIL, "out of memory");
			return;
		}
		q->waiting = 1;
		TAILQ_INSERT_TAIL(&c->waiting, q, wait);
		goto timed;
	}
	if (!c->ac) {
		finish(q, EVAPI_EUNAVAIL, c->last_error);
		return;
	}
	if (redisAsyncCommandArgv(c->ac, on_reply, q, argc,
	                          (const char **)argv, lens) != REDIS_OK) {
		finish(q, EVAPI_EUNAVAIL, "the connection to Redis is closing");
		return;
	}
timed:
	q->in_hiredis = 1;
	ms_tv(r->conf.command_ms, &tv);
	evtimer_add(q->timer, &tv);
}

int evapi_req_redis_command(evapi_req *req, int argc, const char *const *argv,
                            const size_t *argvlen, evapi_redis_cb cb,
                            void *arg)
{
	rstate *r;
	rcom *q;
	int rc;

	if (!req || !cb || !evapi__redis_args_valid(argc, argv))
		return EVAPI_EINVAL;
	if ((rc = evapi__req_can_wait(req)) != 0)
		return rc;
	r = req->app->redis;
	if (!r || r->closing)
		return EVAPI_ESTATE;
	if (!(q = q_new(r)))
		return EVAPI_ENOMEM;
	q->req = req;
	q->cb = cb;
	q->arg = arg;
	evapi__req_pending_add(req, &q->pend, q_gone, "redis command");
	submit(r, q, argc, argv, argvlen);
	return 0;
}

int evapi_app_redis_command(evapi_app *app, int argc, const char *const *argv,
                            const size_t *argvlen, evapi_app_redis_cb cb,
                            void *arg)
{
	rstate *r;
	rcom *q;
	int rc;

	if (!app || !evapi__redis_args_valid(argc, argv))
		return EVAPI_EINVAL;
	if (!(r = app_redis(app, &rc)))
		return rc;
	if (!(q = q_new(r)))
		return EVAPI_ENOMEM;
	q->app_cb = cb;
	q->arg = arg;
	evapi__pending_link(&app->pending, &q->pend, q_gone, "redis command");
	submit(r, q, argc, argv, argvlen);
	return 0;
}

/* ---- subscriptions ----------------------------------------------------- */

typedef struct msg_job {
	evapi__job job;
	evapi_app *app;
	const tsub *s;
	char *channel;           /* in the same block */
	size_t len;
	char payload[];
} msg_job;

static void msg_work(evapi__job *job)
{
	msg_job *m = EVAPI__CONTAINER_OF(job, msg_job, job);
	m->s->cb(m->app, m->channel, m->payload, m->len, m->s->arg);
}

static void msg_done(evapi__job *job, int status)
{
	free(EVAPI__CONTAINER_OF(job, msg_job, job));
}

static void to_pool(rstate *r, const tsub *s, const char *channel,
                    const char *payload, size_t len)
{
	size_t clen = strlen(channel);
	msg_job *m = malloc(sizeof *m + len + 1 + clen + 1);

	if (!m) {
		evapi__log(r->app, EVAPI_LOG_WARN,
		           "redis: message on %s dropped: out of memory", channel);
		return;
	}
	memset(&m->job, 0, sizeof m->job);
	m->job.work = msg_work;
	m->job.done = msg_done;
	m->app = r->app;
	m->s = s;
	m->len = len;
	memcpy(m->payload, payload, len);
	m->payload[len] = '\0';
	m->channel = m->payload + len + 1;
	memcpy(m->channel, channel, clen + 1);
	if (evapi__pool_submit(r->app->pool, &m->job) != 0) {
		evapi__log(r->app, EVAPI_LOG_WARN,
		           "redis: message on %s dropped: the pool queue is full",
		           channel);
		free(m);
	}
}

/* A message of topic `t`: to each of its subscribers, in its lane. */
static void dispatch(topic *t, const char *channel, const char *payload,
                     size_t len)
{
	rstate *r = t->r;
	evapi__user u;
	tsub *s;

	if (r->app->freeing)
		return; /* the pool may be gone already */
	for (s = t->subs; s; s = s->next) {
		if (s->lane == EVAPI_POOL) {
			to_pool(r, s, channel, payload, len);
			continue;
		}
		evapi__user_begin(r->app, &u, "redis message", channel, NULL);
		s->cb(r->app, channel, payload, len, s->arg);
		evapi__user_end(r->app, &u);
	}
}

static int is_str(const redisReply *e)
{
	return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS;
}

/* Every reply of a (P)SUBSCRIBE: its confirmation, then its messages;
 * NULL when the connection goes. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *rr = reply, *kind;
	topic *t = priv;
	rstate *r = t->r;
	size_t i;

	if (!rr || !ac->data || rr->type != REDIS_REPLY_ARRAY ||
	    rr->elements < 3)
		return;
	for (i = 0; i < rr->elements; i++)
		if (!is_str(rr->element[i]) &&
		    rr->element[i]->type != REDIS_REPLY_INTEGER)
			return;
	kind = rr->element[0];
	if (strcmp(kind->str, "subscribe") == 0 ||
	    strcmp(kind->str, "psubscribe") == 0) {
		if (!t->confirmed) {
			t->confirmed = 1;
			r->nconfirmed++;
			set_subscribed(r);
		}
	} else if (strcmp(kind->str, "message") == 0 && is_str(rr->element[2])) {
		dispatch(t, rr->element[1]->str, rr->element[2]->str,
		         rr->element[2]->len);
	} else if (strcmp(kind->str, "pmessage") == 0 && rr->elements >= 4 &&
	           is_str(rr->element[2]) && is_str(rr->element[3])) {
		dispatch(t, rr->element[2]->str, rr->element[3]->str,
		         rr->element[3]->len);
	}
}

static void sub_send(rconn *c, topic *t)
{
	const char *argv[2];

	argv[0] = t->pattern ? "PSUBSCRIBE" : "SUBSCRIBE";
	argv[1] = t->name;
	if (redisAsyncCommandArgv(c->ac, on_sub_reply, t, 2, argv, NULL) !=
	    REDIS_OK)
		evapi__log(c->r->app, EVAPI_LOG_WARN,
		           "redis: cannot send %s %s", argv[0], t->name);
}

static int subscribe(evapi_app *app, const char *name, int pattern,
                     evapi_lane lane, evapi_redis_message_cb cb, void *arg)
{
	topic *t, **tail;
	rstate *r;
	tsub *s, **st;
	size_t n;
	int rc;

	if (!app || !name || !*name || !cb ||
	    (lane != EVAPI_INLINE && lane != EVAPI_POOL))
		return EVAPI_EINVAL;
	if (!(r = app_redis(app, &rc)))
		return rc;
	for (tail = &r->topics; (t = *tail); tail = &t->next)
		if (t->pattern == pattern && strcmp(t->name, name) == 0)
			break;
	if (!(s = calloc(1, sizeof *s)))
		return EVAPI_ENOMEM;
	s->lane = lane;
	s->cb = cb;
	s->arg = arg;
	if (!t) {
		n = strlen(name);
		if (!(t = calloc(1, sizeof *t + n + 1))) {
			free(s);
			return EVAPI_ENOMEM;
		}
		memcpy(t->name, name, n + 1);
		t->pattern = pattern;
		t->r = r;
		*tail = t;
		r->ntopics++;
		set_subscribed(r);
		if (r->sub.ac)
			sub_send(&r->sub, t);
		else if (!evtimer_pending(r->sub.timer, NULL))
			conn_open(&r->sub);
	}
	for (st = &t->subs; *st; st = &(*st)->next)
		;
	*st = s;
	return 0;
}

int evapi_app_redis_subscribe(evapi_app *app, const char *channel,
                              evapi_lane lane, evapi_redis_message_cb cb,
                              void *arg)
{
	return subscribe(app, channel, 0, lane, cb, arg);
}

int evapi_app_redis_psubscribe(evapi_app *app, const char *pattern,
                               evapi_lane lane, evapi_redis_message_cb cb,
                               void *arg)
{
	return subscribe(app, pattern, 1, lane, cb, arg);
}

int evapi_app_redis_subscribed(const evapi_app *app)
{
	return app && app->redis ? EVAPI__LOAD(&app->redis->subscribed) : 0;
}

/* ---- the broadcast bridge ---------------------------------------------- */

static void bridge_message(evapi_app *app, const char *channel,
                           const char *payload, size_t len, void *arg)
{
	rstate *r = arg;
	const char *name = channel + strlen(BRIDGE_PREFIX);

	if (len >= TAG_LEN && payload[0] == TAG_MARK &&
	    payload[TAG_LEN - 1] == TAG_MARK) {
		if (memcmp(payload, r->tag, TAG_LEN) == 0)
			return; /* ours: delivered when it was published */
		payload += TAG_LEN;
	}
	evapi__channels_deliver(app, name, payload);
}

/* A bridge PUBLISH's outcome: only a failure is news. `arg` is the
 * channel's name (ours to free). */
static void published(evapi_app *app, const evapi_redis_reply *res,
                      void *arg)
{
	if (res->error && res->error != EVAPI_ECANCELED)
		evapi__log(app, EVAPI_LOG_WARN, "redis: broadcast on %s not "
		           "sent to other processes: %s: %s", (char *)arg,
		           evapi_strerror(res->error),
		           evapi_redis_reply_errmsg(res));
	free(arg);
}

void evapi__redis_publish(evapi_app *app, const char *name, const char *text)
{
	rstate *r = app->redis;
	size_t nlen = strlen(name), tlen = strlen(text);
	const char *argv[3];
	size_t lens[3];
	char *buf;
	rcom *q;

	if (!r || r->closing || app->freeing)
		return;
	if (!evapi__on_loop(app)) {
		evapi__log(app, EVAPI_LOG_ERROR, "redis: broadcast on %s not sent "
		           "to other processes: evapi_app_publish off the loop",
		           name);
		return;
	}
	/* the channel, then the tagged text, in one block */
	q = NULL;
	if (!(buf = malloc(sizeof BRIDGE_PREFIX + nlen + TAG_LEN + tlen)) ||
	    !(q = q_new(r)) || !(q->arg = strdup(name))) {
		if (q)
			q_free(q);
		free(buf);
		evapi__log(app, EVAPI_LOG_WARN, "redis: broadcast on %s not "
		           "sent to other processes: out of memory", name);
		return;
	}
	memcpy(buf, BRIDGE_PREFIX, sizeof BRIDGE_PREFIX - 1);
	memcpy(buf + sizeof BRIDGE_PREFIX - 1, name, nlen + 1);
	argv[0] = "PUBLISH";
	lens[0] = 7;
	argv[1] = buf;
	lens[1] = sizeof BRIDGE_PREFIX - 1 + nlen;
	argv[2] = buf + lens[1] + 1;
	memcpy(buf + lens[1] + 1, r->tag, TAG_LEN);
	memcpy(buf + lens[1] + 1 + TAG_LEN, text, tlen);
	lens[2] = TAG_LEN + tlen;
	q->app_cb = published;
	evapi__pending_link(&app->pending, &q->pend, q_gone, "redis command");
	submit(r, q, 3, argv, lens);
	free(buf); /* hiredis formatted the command already */
}

const evapi__redis_conf *evapi__redis_conf_of(const evapi_app *app)
{
	return app->redis ? &app->redis->conf : NULL;
}

/* ---- the app's Redis --------------------------------------------------- */

/* redis://[[user]:password@]host[:port][/db]. Returns 0 or EVAPI_EINVAL
 * (EVAPI_ENOMEM). */
static int parse_url(rstate *r, const char *url)
{
	const char *p, *at, *end, *colon, *slash;
	long long v;
	char num[24];

	if (strncmp(url, "redis://", 8) != 0)
		return EVAPI_EINVAL;
	p = url + 8;
	end = p + strcspn(p, "/");
	slash = *end == '/' ? end : NULL;
	at = NULL;
	for (colon = p; colon < end; colon++)
		if (*colon == '@')
			at = colon;
	if (at) {
		const char *c = memchr(p, ':', (size_t)(at - p));
		if (c) {
			if (c > p && !(r->conf.user = strndup(p, (size_t)(c - p))))
				return EVAPI_ENOMEM;
			if (!(r->conf.pass = strndup(c + 1, (size_t)(at - c - 1))))
				return EVAPI_ENOMEM;
		} else if (at > p &&
		           !(r->conf.pass = strndup(p, (size_t)(at - p)))) {
			return EVAPI_ENOMEM;
		}
		p = at + 1;
	}
	colon = memchr(p, ':', (size_t)(end - p));
	if (!(r->conf.host = strndup(p, (size_t)((colon ? colon : end) - p))))
		return EVAPI_ENOMEM;
	if (!*r->conf.host)
		return EVAPI_EINVAL;
	r->conf.port = 6379;
	if (colon) {
		if ((size_t)(end - colon - 1) >= sizeof num)
			return EVAPI_EINVAL;
		memcpy(num, colon + 1, (size_t)(end - colon - 1));
		num[end - colon - 1] = '\0';
		if (evapi_parse_int(num, &v) != 0 || v < 1 || v > 65535)
			return EVAPI_EINVAL;
		r->conf.port = (int)v;
	}
	if (slash && slash[1]) {
		if (evapi_parse_int(slash + 1, &v) != 0 || v < 0 || v > 1000000)
			return EVAPI_EINVAL;
		r->conf.db = (int)v;
	}
	return 0;
}

/* The origin tag: random, so that processes and hosts differ. */
static void make_tag(rstate *r)
{
	unsigned long long v = 0;

	if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
		v = (unsigned long long)evapi__now_us() * 6364136223846793005ULL ^
		    (unsigned long long)getpid() ^ (unsigned long long)(size_t)r;
	snprintf(r->tag, sizeof r->tag, "%c%016llx%c", TAG_MARK, v, TAG_MARK);
}

static void conn_init(rstate *r, rconn *c, int sub)
{
	c->r = r;
	c->sub = sub;
	c->what = sub ? "subscriptions" : "commands";
	c->backoff_ms = BACKOFF_MIN_MS;
	TAILQ_INIT(&c->waiting);
	c->timer = evtimer_new(r->app->base, on_conn_timer, c);
	snprintf(c->last_error, sizeof c->last_error, "not connected yet");
}

int evapi__redis_new(evapi_app *app)
{
	rstate *r;
	int rc;

	if (!app->cfg.redis_url)
		return 0;
	if (!(r = calloc(1, sizeof *r)))
		return EVAPI_ENOMEM;
	app->redis = r;
	r->app = app;
	r->conf.connect_ms = (unsigned)app->cfg.redis_connect_timeout_ms;
	r->conf.command_ms = (unsigned)app->cfg.redis_command_timeout_ms;
	TAILQ_INIT(&r->cmds);
	if ((rc = parse_url(r, app->cfg.redis_url)) != 0)
		return rc;
	make_tag(r);
	conn_init(r, &r->cmd, 0);
	conn_init(r, &r->sub, 1);
	if (!r->cmd.timer || !r->sub.timer ||
	    evapi__ready_init(&r->ready, app->base, deliver_one, r) != 0)
		return EVAPI_ENOMEM;
	return evapi_app_redis_psubscribe(app, BRIDGE_PREFIX "*", EVAPI_INLINE,
	                                  bridge_message, r);
}

/* Loop thread, the loop no longer running and the pool gone: what is
 * left is cancelled, its continuations run, both connections closed. */
void evapi__redis_free(evapi_app *app)
{
	rstate *r = app->redis;
	topic *t;
	tsub *s;
	rcom *q;

	if (!r)
		return;
	r->closing = 1;
	TAILQ_FOREACH(q, &r->cmds, all)
		finish(q, EVAPI_ECANCELED, "the app stopped");
	evapi__ready_run(&r->ready);
	conn_drop(&r->cmd, "the app stopped", 0);
	conn_drop(&r->sub, "the app stopped", 0);
	evapi__ready_free(&r->ready);
	if (r->cmd.timer)
		event_free(r->cmd.timer);
	if (r->sub.timer)
		event_free(r->sub.timer);
	while ((t = r->topics)) {
		r->topics = t->next;
		while ((s = t->subs)) {
			t->subs = s->next;
			free(s);
		}
		free(t);
	}
	free(r->conf.host);
	free(r->conf.user);
	free(r->conf.pass);
	free(r);
	app->redis = NULL;
}
