/*
 * db.h: what db.c (the pool on the loop) and db_result.c (results, JSON,
 * errors), db_sync.c (the blocking calls), db_sqlite.c and db_listen.c
 * share. Never installed; only these files include libpq.
 */
#ifndef EVAPI_DB_PRIVATE_H
#define EVAPI_DB_PRIVATE_H

#include <libpq-fe.h>

#include "internal.h"

/* SQLite's rows, copied out of the statement (db_sqlite.c): the value
 * types JSON distinguishes. */
enum { EVAPI__CELL_NULL = 0, EVAPI__CELL_INT, EVAPI__CELL_REAL,
       EVAPI__CELL_TEXT, EVAPI__CELL_BLOB };

typedef struct evapi__db_cell {
	int type;
	int len;                 /* bytes of v, the NUL not counted */
	char *v;                 /* text form (a blob: its bytes), NUL-
	                            terminated; NULL for NULL */
} evapi__db_cell;

typedef struct evapi__db_rows {
	int nrows, ncols;
	char **names;            /* ncols */
	evapi__db_cell *cells;   /* nrows * ncols, row by row */
	long long changes;       /* rows changed by a write */
} evapi__db_rows;

struct evapi_db_result {
	int error;
	char sqlstate[6];
	char *errmsg;            /* malloc'd, or NULL */
	PGresult *pg;            /* a successful PostgreSQL result, or NULL */
	evapi__db_rows *rows;    /* a successful SQLite result, or NULL */
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
	const char *lite_path;   /* SQLite: the file sqlite3_open_v2 opens
	                            (a memdb URI for :memory:); NULL: libpq */
	unsigned acquire_ms, query_ms;
	int cache_size;          /* db_statement_cache */
	size_t max_result;       /* db_max_result_bytes */
} evapi__db_conf;

/* Single-row mode (PQsetSingleRowMode): adds the row `row` (stolen) to
 * the result gathered in *acc (made from the first row), counting the
 * bytes of its values in *bytes. Returns 0, or -1 when they pass `max`
 * or memory runs out (then *acc is freed and NULL). */
EVAPI_HIDDEN int evapi__db_row_add(PGresult **acc, PGresult *row,
                                   size_t *bytes, size_t max);
/* The message of a result over db_max_result_bytes, in buf. */
EVAPI_HIDDEN const char *evapi__db_too_big(char *buf, size_t len,
                                           size_t max);

/* Fills `conf` from the app's database; 0, or EVAPI_ESTATE without one. */
EVAPI_HIDDEN int evapi__db_conf_of(const evapi_app *app, evapi__db_conf *conf);
/* Sets res->errmsg to a copy of `msg` (NULL clears it). */
EVAPI_HIDDEN void evapi__db_result_msg(evapi_db_result *res, const char *msg);
/* Frees what a SQLite result holds. */
EVAPI_HIDDEN void evapi__db_rows_free(evapi__db_rows *rows);

/* ---- LISTEN/NOTIFY (db_listen.c) ---------------------------------------- */

typedef struct evapi__listen evapi__listen;
/* Where the app keeps its listener (NULL until the first listen), or
 * NULL without a database. Loop thread. */
EVAPI_HIDDEN evapi__listen **evapi__db_listen_slot(evapi_app *app);
EVAPI_HIDDEN void evapi__listen_free(evapi__listen *l);

/* ---- SQLite (db_sqlite.c) ----------------------------------------------- */

/* What evapi__db_new keeps for a sqlite:// URL: the app's connection,
 * open for the app's life (it keeps a :memory: database alive between
 * the workers' connections). */
typedef struct evapi__lite evapi__lite;

/* For a sqlite:// URL, fills conf->lite_path (malloc'd into *path) and
 * opens the app's connection (WAL for a file). Returns 0, or
 * EVAPI_EINVAL (not a sqlite URL, or a bad one), EVAPI_ENOMEM. A file
 * that cannot be opened yet is logged: queries then fail with
 * EVAPI_EUNAVAIL. */
EVAPI_HIDDEN int evapi__lite_new(evapi_app *app, const char *url,
                                 evapi__lite **out, char **path);
EVAPI_HIDDEN void evapi__lite_free(evapi__lite *l);
/* 1 when `url` names SQLite (sqlite://...). */
EVAPI_HIDDEN int evapi__lite_url(const char *url);
/* Runs one statement on the calling thread's connection for `conf`,
 * filling `res`. Any thread; blocks. */
EVAPI_HIDDEN void evapi__lite_query(const evapi__db_conf *conf,
                                    const char *sql, int nparams,
                                    const char *const *params,
                                    evapi_db_result *res);
/* evapi_req_db_query and evapi_app_db_query for SQLite: the query runs on
 * the pool, the continuation on the loop. Same returns. */
EVAPI_HIDDEN int evapi__lite_req_query(evapi_req *req,
                                       const evapi__db_conf *conf,
                                       const char *sql, int nparams,
                                       const char *const *params,
                                       evapi_db_cb cb, void *arg);
EVAPI_HIDDEN int evapi__lite_app_query(evapi_app *app,
                                       const evapi__db_conf *conf,
                                       const char *sql, int nparams,
                                       const char *const *params,
                                       evapi_app_db_cb cb, void *arg);

/* A copy of `sql` and `params` in one malloc'd block (free it), the
 * parameter array inside it in *pparams; NULL when out of memory. */
EVAPI_HIDDEN char *evapi__db_args_copy(const char *sql, int nparams,
                                       const char *const *params,
                                       char ***pparams);
/* 1 while evapi_app_db_transaction_sync runs on this thread: the blocking
 * calls then leave the transaction open. */
EVAPI_HIDDEN int evapi__db_in_tx(void);

/* ---- host names resolved off the loop (db_dns.c) ------------------------ */

/* 1 when `url` names a host that needs DNS (by name, no hostaddr, not a
 * unix socket): *host and *port (malloc'd; *port NULL when none) are its
 * host and port lists. 0: libpq will not look anything up; -1: out of
 * memory. */
EVAPI_HIDDEN int evapi__db_url_dns(const char *url, char **host,
                                   char **port);
typedef struct evapi__db_dns evapi__db_dns;
/* On the loop: `keys`/`vals` (NULL-terminated, borrowed for the call)
 * are the connection parameters that replace the URL's host (and port)
 * lists, or NULL with `err` saying why nothing was found. */
typedef void (*evapi__db_dns_cb)(void *arg, const char *const *keys,
                                 const char *const *vals, const char *err);
/* Resolves the host list on a pool worker; `cb` runs once on the loop
 * unless abandoned. NULL: out of memory or the pool queue full (no `cb`). */
EVAPI_HIDDEN evapi__db_dns *evapi__db_dns_start(evapi_app *app,
                                                const char *host,
                                                const char *port,
                                                evapi__db_dns_cb cb,
                                                void *arg);
/* `cb` will not run (the lookup itself finishes and is dropped). */
EVAPI_HIDDEN void evapi__db_dns_abandon(evapi__db_dns *d);
/* PQconnectStartParams on `url`, with `xkeys`/`xvals` (at most 5, as
 * evapi__db_dns_cb gives them; or NULL) overriding its fields. */
EVAPI_HIDDEN PGconn *evapi__db_connect_start(const char *url,
                                             const char *appname,
                                             const char *const *xkeys,
                                             const char *const *xvals);

/* 1 when the app's gathered queries go pipelined (db_pipeline, and a
 * PostgreSQL database). */
EVAPI_HIDDEN int evapi__db_pipelined(const evapi_app *app);
/* evapi_req_db_gather with db_pipeline: the `n` (valid) queries go on one
 * connection in pipeline mode; each is the request's pending work and
 * calls `cb` with args[i] once, as evapi_req_db_query's would. Returns 0,
 * or what evapi_req_db_query returns (then no `cb` runs). */
EVAPI_HIDDEN int evapi__db_req_pipeline(evapi_req *req, int n,
                                        const evapi_db_query *qs,
                                        evapi_db_cb cb, void *const *args);

/* 1 when a query's SQL and parameters are acceptable. */
EVAPI_HIDDEN int evapi__db_args_valid(const char *sql, int nparams,
                                      const char *const *params);

#endif
