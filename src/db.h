/*
 * db.h: what db.c (the pool on the loop) and db_result.c (results, JSON,
 * errors) share. Never installed; only these two files include libpq.
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

#endif
