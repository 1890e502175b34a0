/*
 * redis_sync.c: the blocking Redis calls for pool handlers and
 * application threads (redis-py's place beside redis.asyncio's in
 * redis.c), on hiredis's blocking API.
 *
 * Threads: any thread but a loop thread. Each thread keeps one
 * connection of its own in thread-specific data, opened by its first
 * command (connect timeout redis_connect_timeout_ms, then AUTH and
 * SELECT as redis_url says) and closed by the key's destructor when the
 * thread exits: a pool worker's lives as long as the worker. No
 * connection is shared between threads, so nothing here takes a lock.
 * The connection remembers the app it was opened for; a thread serving
 * another app reopens it. After any transport error or a timeout
 * (SO_RCVTIMEO of redis_command_timeout_ms) the connection is closed:
 * a late reply would otherwise answer the next command.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

typedef struct tconn {
	const evapi__redis_conf *conf; /* what ctx was opened for */
	redisContext *ctx;
} tconn;

static void tconn_close(tconn *t)
{
	if (t->ctx)
		redisFree(t->ctx);
	t->ctx = NULL;
	t->conf = NULL;
}

static void tconn_destroy(void *p)
{
	tconn_close(p);
	free(p);
}

static evapi__thread_slot conn_slot = EVAPI__THREAD_SLOT(tconn_destroy);

static struct timeval tv_of(unsigned ms)
{
	struct timeval tv;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/* Runs one setup command; 0, or -1 with its error in res. */
static int setup(redisContext *ctx, int argc, const char **argv,
                 evapi_redis_reply *res)
{
	redisReply *rr = redisCommandArgv(ctx, argc, argv, NULL);
	int rc = 0;

	if (!rr || rr->type == REDIS_REPLY_ERROR) {
		evapi__redis_reply_msg(res, rr ? rr->str : ctx->errstr);
		rc = -1;
	}
	if (rr)
		freeReplyObject(rr);
	return rc;
}

/* The thread's connection for `conf`, opened if needed; NULL with the
 * reason in res. */
static redisContext *connection(tconn *t, const evapi__redis_conf *conf,
                                evapi_redis_reply *res)
{
	redisContext *ctx;
	char db[16];

	if (t->ctx && t->conf == conf)
		return t->ctx;
	tconn_close(t);
	ctx = redisConnectWithTimeout(conf->host, conf->port,
	                              tv_of(conf->connect_ms));
	if (!ctx || ctx->err) {
		evapi__redis_reply_msg(res, ctx ? ctx->errstr : "out of memory");
		if (ctx)
			redisFree(ctx);
		return NULL;
	}
	redisSetTimeout(ctx, tv_of(conf->command_ms));
	if (conf->pass) {
		const char *argv[3] = {"AUTH", conf->user ? conf->user : conf->pass,
		                       conf->pass};
		if (setup(ctx, conf->user ? 3 : 2, argv, res) != 0)
			goto err;
	}
	if (conf->db) {
		const char *argv[2] = {"SELECT", db};
		snprintf(db, sizeof db, "%d", conf->db);
		if (setup(ctx, 2, argv, res) != 0)
			goto err;
	}
	t->ctx = ctx;
	t->conf = conf;
	return ctx;
err:
	redisFree(ctx);
	return NULL;
}

int evapi_app_redis_command_sync(evapi_app *app, int argc,
                                 const char *const *argv,
                                 const size_t *argvlen,
                                 evapi_redis_reply **out)
{
	const evapi__redis_conf *conf;
	evapi_redis_reply *res;
	redisContext *ctx;
	redisReply *rr;
	tconn *t;

	if (out)
		*out = NULL;
	if (!app || !out || !evapi__redis_args_valid(argc, argv))
		return EVAPI_EINVAL;
	if (evapi__thread_role() == EVAPI__THREAD_LOOP)
		return EVAPI_ETHREAD;
	if (!(conf = evapi__redis_conf_of(app)))
		return EVAPI_ESTATE;
	if (!(res = calloc(1, sizeof *res)) || !(t = evapi__thread_record(&conn_slot, sizeof *t))) {
		free(res);
		return EVAPI_ENOMEM;
	}
	res->start_us = evapi__now_us();
	if (!(ctx = connection(t, conf, res))) {
		res->error = EVAPI_EUNAVAIL;
		goto done;
	}
	rr = redisCommandArgv(ctx, argc, (const char **)argv, argvlen);
	if (!rr) {
		/* SO_RCVTIMEO ran out: hiredis says EAGAIN as an I/O error */
		int timeout = ctx->err == REDIS_ERR_IO &&
		              (errno == EAGAIN || errno == EWOULDBLOCK ||
		               strstr(ctx->errstr, "temporarily"));
		res->error = timeout ? EVAPI_ETIMEDOUT : EVAPI_EUNAVAIL;
		evapi__redis_reply_msg(res, timeout ? "command over its timeout"
		                                    : ctx->errstr);
		tconn_close(t);
		goto done;
	}
	if (evapi__redis_reply_copy(res, rr) != 0) {
		evapi__redis_reply_clear(res);
		res->type = EVAPI_REDIS_NONE;
		res->error = EVAPI_EUNAVAIL;
		evapi__redis_reply_msg(res, "out of memory");
	} else if (rr->type == REDIS_REPLY_ERROR) {
		res->error = EVAPI_EUPSTREAM;
	}
	freeReplyObject(rr);
done:
	res->end_us = evapi__now_us();
	*out = res;
	return res->error;
}

int evapi_req_redis_command_sync(evapi_req *req, int argc,
                                 const char *const *argv,
                                 const size_t *argvlen,
                                 evapi_redis_reply **out)
{
	if (out)
		*out = NULL;
	if (!req)
		return EVAPI_EINVAL;
	return evapi_app_redis_command_sync(req->app, argc, argv, argvlen, out);
}

void evapi_redis_reply_free(evapi_redis_reply *r)
{
	if (!r)
		return;
	evapi__redis_reply_clear(r);
	free(r);
}
