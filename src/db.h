/*
 * db.h: what db.c (the pool on the loop) and db_result.c (results, JSON,
 * errors) and db_sync.c (the blocking calls) share. Never installed;
 * only these files include libpq.
 */
#ifndef EVAPI_DB_PRIVATE_H
#define EVAPI_DB_PRIVATE_H

#include <libpq-fe.h>

#include "internal.h"

struct evapi_db_result {
	int error;
	char sqlstate[6];
	char *errmsg;            /* malloc'd, or NULL */
	PGresult *pg;            /* a successful result, or NULL */
	int64_t start_us, end_us;
};

/* Fills `res` with a query's outcome. `pg` is stolen: a failed result
 * gives its SQLSTATE and message and is freed, a successful one is kept;
 * `msg` (copied) is the message when `pg` gives none. */
EVAPI_HIDDEN void evapi__db_result_set(evapi_db_result *res, int error,
                                       PGresult *pg, const char *msg);
/* Frees what evapi__db_result_set kept. */
EVAPI_HIDDEN void evapi__db_result_clear(evapi_db_result *res);
/* 1 when `r` reports an error (anything but a command, rows or an empty
 * query). */
EVAPI_HIDDEN int evapi__db_failed(const PGresult *r);
/* The EVAPI_E* code a failed result means; `conn_bad` when the
 * connection is gone (then no SQLSTATE means unavailable). */
EVAPI_HIDDEN int evapi__db_classify(const PGresult *r, int conn_bad);

/* What the blocking calls (db_sync.c) read of the app's database
 * settings; fixed for the app's life, so any thread may read them. */
typedef struct evapi__db_conf {
	const char *url;         /* the app's copy of db_url */
	unsigned acquire_ms, query_ms;
} evapi__db_conf;

/* Fills `conf` from the app's database; 0, or EVAPI_ESTATE without one. */
EVAPI_HIDDEN int evapi__db_conf_of(const evapi_app *app, evapi__db_conf *conf);
/* 1 when a query's SQL and parameters are acceptable. */
EVAPI_HIDDEN int evapi__db_args_valid(const char *sql, int nparams,
                                      const char *const *params);

#endif
