/*
 * db_sync.c: the blocking database calls for pool handlers and
 * application threads (psycopg's place beside asyncpg's in db.c).
 *
 * Threads: any thread but a loop thread. Each thread keeps one
 * connection of its own in thread-specific data, opened by its first
 * query and closed by the key's destructor when the thread exits: a pool
 * worker's connection lives as long as the worker, which is as long as
 * the app's pool. No connection is ever shared between threads, so
 * nothing here takes a lock. The connection remembers the URL and
 * timeout it was opened for; a thread that serves another app's query
 * (an application thread used by two apps) reopens it.
 *
 * SQLite URLs go to db_sqlite.c, which keeps its own per-thread
 * connection the same way. evapi_app_db_transaction_sync marks the
 * thread (in_tx) so the calls it makes leave their transaction open.
 *
 * Limits are the server's: statement_timeout, set on connecting to
 * db_query_timeout_ms, ends a query past it with SQLSTATE 57014, which
 * evapi__db_classify turns into EVAPI_ETIMEDOUT as on the loop.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

typedef struct tconn {
	char *url;           /* what pg was opened for */
	unsigned query_ms;
	PGconn *pg;
} tconn;

static __thread int in_tx;     /* evapi_app_db_transaction_sync runs */
static __thread int tx_failed; /* a query in it failed */

static void tconn_close(tconn *t)
{
	PQfinish(t->pg);
	t->pg = NULL;
	free(t->url);
	t->url = NULL;
}

static void tconn_destroy(void *p)
{
	tconn_close(p);
	free(p);
}

static evapi__thread_slot conn_slot = EVAPI__THREAD_SLOT(tconn_destroy);

static tconn *thread_conn(void)
{
	return evapi__thread_record(&conn_slot, sizeof(tconn));
}

/* Opens t->pg for `db` unless it is open for it already. Returns 0, or
 * EVAPI_EUNAVAIL with the reason in res. */
static int tconn_open(tconn *t, const evapi__db_conf *db, evapi_db_result *res)
{
	const char *keys[] = { "dbname", "fallback_application_name",
	                       "connect_timeout", NULL };
	const char *vals[4];
	char secs[16], setup[96];
	PGresult *r;

	if (t->pg && PQstatus(t->pg) == CONNECTION_OK && t->url &&
	    strcmp(t->url, db->url) == 0 && t->query_ms == db->query_ms)
		return 0;
	tconn_close(t);
	/* libpq counts whole seconds, two at least */
	snprintf(secs, sizeof secs, "%u",
	         db->acquire_ms < 2000 ? 2 : (db->acquire_ms + 999) / 1000);
	vals[0] = db->url;
	vals[1] = "evapi";
	vals[2] = secs;
	vals[3] = NULL;
	t->pg = PQconnectdbParams(keys, vals, 1);
	if (!t->pg || PQstatus(t->pg) != CONNECTION_OK) {
		evapi__db_result_set(res, EVAPI_EUNAVAIL, NULL,
		                     t->pg ? PQerrorMessage(t->pg)
		                           : "out of memory");
		tconn_close(t);
		return EVAPI_EUNAVAIL;
	}
	snprintf(setup, sizeof setup,
	         "SET DateStyle = ISO; SET statement_timeout = %u",
	         db->query_ms);
	r = PQexec(t->pg, setup);
	if (!r || evapi__db_failed(r)) {
		evapi__db_result_set(res, EVAPI_EUNAVAIL, r,
		                     PQerrorMessage(t->pg));
		tconn_close(t);
		return EVAPI_EUNAVAIL;
	}
	PQclear(r);
	if (!(t->url = strdup(db->url))) {
		evapi__db_result_set(res, EVAPI_EUNAVAIL, NULL, "out of memory");
		tconn_close(t);
		return EVAPI_EUNAVAIL;
	}
	t->query_ms = db->query_ms;
	return 0;
}

/* PQexecParams in single-row mode: the rows are gathered one by one, and
 * more than `max` bytes of them cancel the query (res->error is then
 * EVAPI_ETOOBIG) and drain the connection. Returns the result (NULL when
 * the connection failed, or over the cap). */
static PGresult *exec_capped(tconn *t, size_t max, const char *sql,
                             int nparams, const char *const *params,
                             evapi_db_result *res)
{
	PGconn *pg = t->pg;
	PGresult *acc = NULL, *r;
	size_t bytes = 0;
	int over = 0;
	char msg[96];

	if (!PQsendQueryParams(pg, sql, nparams, NULL, params, NULL, NULL, 0))
		return NULL;
	PQsetSingleRowMode(pg);
	while ((r = PQgetResult(pg))) {
		if (PQresultStatus(r) == PGRES_SINGLE_TUPLE && !over &&
		    !(acc && evapi__db_failed(acc))) {
			if (evapi__db_row_add(&acc, r, &bytes, max) == 0)
				continue;
			over = 1;
			if (bytes > max) {
				PGcancel *pc = PQgetCancel(pg);
				char err[256];
				int ok = pc && PQcancel(pc, err, sizeof err);
				PQfreeCancel(pc);
				if (!ok) {
					/* it may run on: never reuse it */
					tconn_close(t);
					break;
				}
			}
			continue;
		}
		/* keep the first error, else the rows gathered (or the last
		 * result) */
		if (over || (acc && (evapi__db_failed(acc) ||
		                     !evapi__db_failed(r)))) {
			PQclear(r);
		} else {
			PQclear(acc);
			acc = r;
		}
	}
	if (!over)
		return acc;
	PQclear(acc);
	evapi__db_result_set(res, bytes > max ? EVAPI_ETOOBIG : EVAPI_ENOMEM,
	                     NULL,
	                     bytes > max ? evapi__db_too_big(msg, sizeof msg, max)
	                                 : "out of memory");
	return NULL;
}

static void pg_query(const evapi__db_conf *db, const char *sql, int nparams,
                     const char *const *params, evapi_db_result *res)
{
	tconn *t = thread_conn();
	PGresult *r;
	int err = 0;

	if (!t) {
		evapi__db_result_set(res, EVAPI_EUNAVAIL, NULL, "out of memory");
		return;
	}
	if (tconn_open(t, db, res) != 0)
		return;
	r = exec_capped(t, db->max_result, sql, nparams, params, res);
	if (!res->error) { /* else over db_max_result_bytes: cancelled */
		if (!r || evapi__db_failed(r))
			err = r ? evapi__db_classify(r, PQstatus(t->pg) ==
			                                        CONNECTION_BAD)
			        : EVAPI_EUNAVAIL;
		evapi__db_result_set(res, err, r,
		                     r ? NULL : PQerrorMessage(t->pg));
	}
	if (!t->pg)
		return;
	if (PQstatus(t->pg) == CONNECTION_BAD) {
		tconn_close(t); /* the next call reconnects */
		return;
	}
	/* each call is its own transaction, as on the loop */
	if (!in_tx && PQtransactionStatus(t->pg) != PQTRANS_IDLE) {
		PQclear(PQexec(t->pg, "ROLLBACK"));
		if (PQstatus(t->pg) == CONNECTION_BAD ||
		    PQtransactionStatus(t->pg) != PQTRANS_IDLE)
			tconn_close(t);
	}
}

int evapi_app_db_query_sync(evapi_app *app, const char *sql, int nparams,
                            const char *const *params, evapi_db_result **out)
{
	evapi__db_conf db;
	evapi_db_result *res;

	if (out)
		*out = NULL;
	if (!app || !out || !evapi__db_args_valid(sql, nparams, params))
		return EVAPI_EINVAL;
	if (evapi__thread_role() == EVAPI__THREAD_LOOP)
		return EVAPI_ETHREAD;
	if (evapi__db_conf_of(app, &db) != 0)
		return EVAPI_ESTATE;
	if (!(res = calloc(1, sizeof *res)))
		return EVAPI_ENOMEM;
	res->start_us = evapi__now_us();
	if (db.lite_path)
		evapi__lite_query(&db, sql, nparams, params, res);
	else
		pg_query(&db, sql, nparams, params, res);
	res->end_us = evapi__now_us();
	if (res->error)
		tx_failed = 1;
	*out = res;
	return res->error;
}

int evapi__db_in_tx(void)
{
	return in_tx;
}

/* Runs one control statement of a transaction; its error code. */
static int tx_exec(evapi_app *app, const char *sql)
{
	evapi_db_result *res;
	int rc = evapi_app_db_query_sync(app, sql, 0, NULL, &res);
	evapi_db_result_free(res);
	return rc;
}

int evapi_app_db_transaction_sync(evapi_app *app, evapi_db_tx_fn fn,
                                  void *arg)
{
	evapi__db_conf db;
	int rc;

	if (!app || !fn)
		return EVAPI_EINVAL;
	if (evapi__thread_role() == EVAPI__THREAD_LOOP)
		return EVAPI_ETHREAD;
	if (in_tx || evapi__db_conf_of(app, &db) != 0)
		return EVAPI_ESTATE;
	in_tx = 1;
	tx_failed = 0;
	/* IMMEDIATE: SQLite takes the write lock now, so a second writer
	 * waits on busy_timeout here instead of failing at its first write
	 * (a deferred transaction cannot wait for an upgrade) */
	if ((rc = tx_exec(app, db.lite_path ? "BEGIN IMMEDIATE" : "BEGIN")) != 0)
		goto out;
	rc = fn(app, arg);
	if (rc == 0 && tx_failed)
		rc = EVAPI_EDB; /* PostgreSQL would turn COMMIT into ROLLBACK */
	if (rc == 0)
		rc = tx_exec(app, "COMMIT");
	if (rc != 0)
		tx_exec(app, "ROLLBACK");
out:
	in_tx = 0;
	return rc;
}

int evapi_req_db_query_sync(evapi_req *req, const char *sql, int nparams,
                            const char *const *params, evapi_db_result **out)
{
	if (out)
		*out = NULL;
	if (!req)
		return EVAPI_EINVAL;
	return evapi_app_db_query_sync(req->app, sql, nparams, params, out);
}

void evapi_db_result_free(evapi_db_result *res)
{
	if (!res)
		return;
	evapi__db_result_clear(res);
	free(res);
}

int evapi_req_db_transaction_sync(evapi_req *req, evapi_db_tx_fn fn,
                                  void *arg)
{
	return req ? evapi_app_db_transaction_sync(req->app, fn, arg)
	           : EVAPI_EINVAL;
}
