/*
 * redis.h: what redis.c (Redis on the loop) and redis_sync.c (the
 * blocking calls) share. Never installed; only these files include
 * hiredis.
 */
#ifndef EVAPI_REDIS_PRIVATE_H
#define EVAPI_REDIS_PRIVATE_H

#include <hiredis/hiredis.h>

#include <evapi/redis.h>

#include "internal.h"

struct evapi_redis_reply {
	int error;
	evapi_redis_type type;
	long long integer;
	char *str;               /* NUL-terminated, or NULL */
	size_t len;
	size_t n;
	evapi_redis_reply *el;   /* n elements */
	char *errmsg;            /* malloc'd, or NULL */
	int64_t start_us, end_us;
};

/* What redis_url says, and the timeouts: fixed from evapi_app_new to
 * evapi_app_free, so any thread may read it. */
typedef struct evapi__redis_conf {
	char *host, *user, *pass; /* user, pass: NULL when not given */
	int port, db;
	unsigned connect_ms, command_ms;
} evapi__redis_conf;

/* The app's, or NULL without redis_url. */
EVAPI_HIDDEN const evapi__redis_conf *
evapi__redis_conf_of(const evapi_app *app);

/* Copies hiredis's reply `src` into `dst` (hiredis frees its own).
 * Returns 0, or -1 when out of memory (what was copied is kept for
 * evapi__redis_reply_clear). */
EVAPI_HIDDEN int evapi__redis_reply_copy(evapi_redis_reply *dst,
                                         const redisReply *src);
/* Frees what the reply holds (not the reply itself). */
EVAPI_HIDDEN void evapi__redis_reply_clear(evapi_redis_reply *res);
/* Sets res->errmsg to a copy of `msg` (NULL clears it). */
EVAPI_HIDDEN void evapi__redis_reply_msg(evapi_redis_reply *res,
                                         const char *msg);
/* 1 when a command's arguments are acceptable (1..1024, none NULL, not
 * one that would change what the connection is: SUBSCRIBE, MONITOR). */
EVAPI_HIDDEN int evapi__redis_args_valid(int argc, const char *const *argv);

#endif
