/*
 * evapi/db.h: PostgreSQL on the loop (asyncpg's place in FastAPI).
 *
 * evapi_req_db_query sends one SQL statement on a connection of the app's
 * pool, driven by libpq's asynchronous API on the app's event loop, and
 * returns at once; the continuation runs later on the loop with the
 * result. Thousands of requests can wait on queries without a thread each.
 * Inline routes (and their continuations) only: loop thread.
 *
 * - Parameters travel apart from the SQL text ($1, $2, ... as text, a NULL
 *   pointer being SQL NULL), so a value can never change the statement.
 * - Each connection keeps up to db_statement_cache prepared statements,
 *   keyed by SQL text: a statement seen before skips parsing and planning.
 *   Behind a pooler in transaction mode (pgbouncer), set it to 0.
 * - The pool opens up to db_max_connections connections on demand; a
 *   query with none free waits in a queue of at most db_queue_max, for
 *   at most db_acquire_timeout_ms (then EVAPI_EBUSY, answered as 503).
 * - Every query has a timeout (db_query_timeout_ms: EVAPI_ETIMEDOUT, 504)
 *   after which it is cancelled on the server.
 * - A query belongs to its request: if the client leaves, the deadline
 *   passes or the app cuts the request, the query is cancelled on the
 *   server and the continuation is told EVAPI_ECANCELED.
 * - The app starts even when the database is down; queries then fail
 *   with EVAPI_EUNAVAIL (503) until it is back. Broken connections are
 *   dropped and reopened on demand, with a backoff between failed
 *   connection attempts. A connection is reused only clean: results of a
 *   cancelled query drained, a transaction left open rolled back.
 *
 * Each query is its own transaction unless it leaves one open (which is
 * rolled back before the connection is reused); evapi_req_db_begin pins
 * one connection to a multi-statement transaction.
 *
 * SQLite: a db_url of sqlite:///absolute/path (or sqlite://:memory:, one
 * in-memory database shared by the app's threads) uses SQLite instead,
 * behind the same calls and results. SQLite has no socket to wait on, so
 * evapi_req_db_query and evapi_app_db_query then run the query on the
 * worker pool and continue on the loop, as evapi_req_run_in_pool does
 * (they may then also return EVAPI_EBUSY: the pool queue is full). A
 * request's query still belongs to it: when the request is cancelled
 * while the query runs, the worker's statement is interrupted (SQLite's
 * progress handler) and the continuation is told EVAPI_ECANCELED. Each
 * thread has its own connection (WAL, synchronous=NORMAL, busy_timeout
 * db_acquire_timeout_ms, a statement cache of db_statement_cache).
 * Columns map to JSON by storage class: INTEGER -> integer, REAL ->
 * real, TEXT -> string, BLOB -> base64 string, NULL -> null. Parameters
 * ($1.. or ?) are bound, never put into the SQL.
 *
 * A host name in db_url is looked up on the worker pool before each
 * connection attempt (libpq would block the loop on it), and the
 * connection then goes to the addresses found, each in turn (the name
 * still serves TLS verification and .pgpass); an address, a unix socket
 * directory (host=/path) or a hostaddr needs no lookup.
 */
#ifndef EVAPI_DB_H
#define EVAPI_DB_H

#include <jansson.h>

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The outcome of one query. Opaque; read it with the accessors below.
 *  Every pointer they return is borrowed, as the result. */
typedef struct evapi_db_result evapi_db_result;

/** 0 when the statement ran; else EVAPI_EDB (the server reported an
 *  error: see the SQLSTATE), EVAPI_ETOOBIG (the values of its rows passed
 *  db_max_result_bytes: stopped on the server; no SQLSTATE, so 500),
 *  EVAPI_EUNAVAIL (no connection to the
 *  database, or it went away mid-query), EVAPI_EBUSY (pool and wait queue
 *  full, or no connection free within db_acquire_timeout_ms),
 *  EVAPI_ETIMEDOUT (over its timeout; cancelled on the server) or
 *  EVAPI_ECANCELED (its request went away or the app stopped). */
EVAPI_EXPORT int evapi_db_result_error(const evapi_db_result *res);
/** The five-character SQLSTATE of a server error ("23505"), or "". */
EVAPI_EXPORT const char *evapi_db_result_sqlstate(const evapi_db_result *res);
/** What went wrong, for logs: the server's message or ours, or "". It may
 *  quote data or SQL: never send it to a client. */
EVAPI_EXPORT const char *evapi_db_result_errmsg(const evapi_db_result *res);
/** Rows and columns of the result (0 for a command or an error). */
EVAPI_EXPORT int evapi_db_result_ntuples(const evapi_db_result *res);
EVAPI_EXPORT int evapi_db_result_nfields(const evapi_db_result *res);
/** Name of column `col`, or NULL when out of range. */
EVAPI_EXPORT const char *evapi_db_result_fname(const evapi_db_result *res,
                                               int col);
/** The value in PostgreSQL's text form, or NULL for SQL NULL or out of
 *  range. */
EVAPI_EXPORT const char *evapi_db_result_value(const evapi_db_result *res,
                                               int row, int col);
/** 1 when the value is SQL NULL (or out of range), else 0. */
EVAPI_EXPORT int evapi_db_result_is_null(const evapi_db_result *res, int row,
                                         int col);
/** Rows affected by INSERT/UPDATE/DELETE (or returned), else 0. */
EVAPI_EXPORT long long evapi_db_result_affected(const evapi_db_result *res);
/** Wall time of the query in milliseconds, waiting for a connection
 *  included. */
EVAPI_EXPORT double evapi_db_result_ms(const evapi_db_result *res);

/** Row `row` as a JSON object, column names as keys. Types map as:
 *  int2/int4/int8/oid -> integer; float4/float8 -> real (NaN and the
 *  infinities -> their name as a string); bool -> true/false; json,
 *  jsonb -> the parsed value; numeric -> string (no precision lost);
 *  timestamp, timestamptz, date -> ISO 8601 string
 *  ("2024-05-01T12:30:00.5+00:00"); bytea -> base64 string; NULL -> null;
 *  anything else (text, varchar, uuid, ...) -> its text as a string.
 *  Returns new (json_decref), or NULL when out of range or out of memory. */
EVAPI_EXPORT json_t *evapi_db_result_row_json(const evapi_db_result *res,
                                              int row);
/** Every row, as an array of evapi_db_result_row_json objects. Returns
 *  new (json_decref); an empty array for a result without rows; NULL
 *  when out of memory. */
EVAPI_EXPORT json_t *evapi_db_result_json(const evapi_db_result *res);

/** The status a route should answer for a failed query: 0 for success,
 *  503 for EVAPI_EUNAVAIL, EVAPI_EBUSY and EVAPI_ECANCELED, 504 for
 *  EVAPI_ETIMEDOUT, 409 for a unique violation (SQLSTATE 23505), 500 for
 *  any other error. */
EVAPI_EXPORT int evapi_db_result_http_status(const evapi_db_result *res);

/** Answers a failed query FastAPI-style with
 *  evapi_db_result_http_status(res): 503 {"detail":"Database unavailable"}
 *  (or "Database busy" for EVAPI_EBUSY) with Retry-After: 1; 504
 *  {"detail":"Database timed out"}; 409 {"detail":"Conflict"}; 500
 *  {"detail":"Internal Server Error"}. The server's message and SQLSTATE
 *  go to the log, never into the reply. Returns what the evapi_reply_*
 *  functions return, or EVAPI_EINVAL when the query succeeded. */
EVAPI_EXPORT int evapi_reply_db_error(evapi_req *req,
                                      const evapi_db_result *res);

/* ---- on the loop -------------------------------------------------------- */

/** Continuation of evapi_req_db_query, on the loop, exactly once. `res`
 *  is borrowed until the callback returns. `status` is 0 (look at the
 *  result, which may hold an error), or EVAPI_ECANCELED when the request
 *  went away first (client left, deadline, app cut): nothing can be
 *  replied then. */
typedef void (*evapi_db_cb)(evapi_req *req, int status,
                            const evapi_db_result *res, void *arg);

/** Sends `sql` (one statement, parameters as $1..$n) with `nparams`
 *  parameters in text form (`params[i]` NULL is SQL NULL) on behalf of
 *  `req`, which it keeps alive. `sql` and `params` are copied. Returns 0
 *  (then `cb` runs once, on the loop; a full pool, a database that is
 *  down or a server error arrive in the result), or EVAPI_EINVAL,
 *  EVAPI_ENOMEM, EVAPI_EGONE, EVAPI_ETHREAD, EVAPI_ESTATE (no db_url
 *  configured, or the app is being freed) (then `cb` never runs). Loop
 *  thread only: in an inline handler or continuation. */
EVAPI_EXPORT int evapi_req_db_query(evapi_req *req, const char *sql,
                                    int nparams, const char *const *params,
                                    evapi_db_cb cb, void *arg);

/** One query of evapi_req_db_gather: as evapi_req_db_query's arguments. */
typedef struct evapi_db_query {
	const char *sql;
	int nparams;
	const char *const *params;
} evapi_db_query;

/** Continuation of evapi_req_db_gather, on the loop, exactly once:
 *  `res[i]` is the result of query i (each may hold its own error). The
 *  array and results are borrowed until the callback returns. `status` is
 *  0, or EVAPI_ECANCELED when the request went away first (every query
 *  was then cancelled; nothing can be replied). */
typedef void (*evapi_db_gather_cb)(evapi_req *req, int status, int n,
                                   const evapi_db_result *const *res,
                                   void *arg);

/** Sends `n` queries (1..1024) on behalf of `req` at once, each on its own
 *  connection of the pool as far as db_max_connections allows (the rest
 *  wait their turn), and continues once, when all are done (the
 *  asyncio.gather of several queries). With db_pipeline set (and
 *  PostgreSQL), they go together on one connection instead, in one round
 *  trip (libpq's pipeline mode): the server runs them one after another,
 *  each in its own transaction, so one failing spoils no other; a
 *  timeout, the result cap or the request going away ends every query of
 *  the batch still running (cancelled on the server) — the cap as
 *  EVAPI_ECANCELED for the others. Every query is the request's
 *  pending work as with evapi_req_db_query: the client leaving cancels
 *  all. Returns 0 (then `cb` runs once; a query after the first that
 *  could not be started has that error in its result), or what
 *  evapi_req_db_query returns for the first (then `cb` never runs);
 *  EVAPI_EINVAL when any query's arguments are invalid. Loop thread
 *  only. */
EVAPI_EXPORT int evapi_req_db_gather(evapi_req *req, int n,
                                     const evapi_db_query *queries,
                                     evapi_db_gather_cb cb, void *arg);

/** Continuation of evapi_app_db_query, on the loop, exactly once. */
typedef void (*evapi_app_db_cb)(evapi_app *app, const evapi_db_result *res,
                                void *arg);

/** A query bound to no request (start-up migrations from a startup hook,
 *  a timer, a background task). Same arguments and returns as
 *  evapi_req_db_query. Queries still running when the app stops are
 *  cancelled and reported as EVAPI_ECANCELED. Loop thread only: before
 *  evapi_app_run, the thread that created the app. */
EVAPI_EXPORT int evapi_app_db_query(evapi_app *app, const char *sql,
                                    int nparams, const char *const *params,
                                    evapi_app_db_cb cb, void *arg);

/** A PostgreSQL transaction pinned to one connection of the pool across
 *  continuations (asyncpg's `async with conn.transaction()`). Opaque. */
typedef struct evapi_db_tx evapi_db_tx;

/** Takes a connection for `req` and sends BEGIN on it; `*tx` is set at
 *  once. `cb` runs once, on the loop, with BEGIN's result: when it holds
 *  no error the connection now serves this transaction only, through
 *  evapi_db_tx_query, until evapi_db_tx_commit or evapi_db_tx_rollback
 *  has run; when it holds an error (or status is EVAPI_ECANCELED) the
 *  transaction is already over and `*tx` must not be used again. If the
 *  request goes away first (client left, deadline, app cut), its
 *  statement is cancelled and the transaction rolled back. Commit or
 *  roll back before replying: an open transaction keeps its connection
 *  and its request until then. Returns as evapi_req_db_query, and
 *  EVAPI_ESTATE for a SQLite database (there: the blocking
 *  evapi_req_db_transaction_sync). Loop thread only. */
EVAPI_EXPORT int evapi_req_db_begin(evapi_req *req, evapi_db_tx **tx,
                                    evapi_db_cb cb, void *arg);
/** One statement in the transaction, like evapi_req_db_query but on its
 *  connection; one at a time. A failed statement leaves the transaction
 *  failed (roll it back). Returns 0 (then `cb` runs once), EVAPI_EBUSY
 *  (a statement is still in flight), EVAPI_ESTATE (BEGIN has not
 *  succeeded, or the connection broke), EVAPI_EGONE, EVAPI_EINVAL,
 *  EVAPI_ENOMEM, EVAPI_ETHREAD. Loop thread only. */
EVAPI_EXPORT int evapi_db_tx_query(evapi_db_tx *tx, const char *sql,
                                   int nparams, const char *const *params,
                                   evapi_db_cb cb, void *arg);
/** COMMIT (a failed transaction commits as ROLLBACK: look at
 *  evapi_db_result_error of the statements) or ROLLBACK; the transaction
 *  is over when `cb` runs, and `tx` is freed. Returns as
 *  evapi_db_tx_query; EVAPI_ESTATE when the connection broke, and then
 *  the transaction is over and `tx` freed at once. Loop thread only. */
EVAPI_EXPORT int evapi_db_tx_commit(evapi_db_tx *tx, evapi_db_cb cb,
                                    void *arg);
EVAPI_EXPORT int evapi_db_tx_rollback(evapi_db_tx *tx, evapi_db_cb cb,
                                      void *arg);

/** A notification, on the loop: `channel` and `payload` ("" when none)
 *  are borrowed until the callback returns. */
typedef void (*evapi_db_notify_cb)(evapi_app *app, const char *channel,
                                   const char *payload, void *arg);

/** Subscribes `cb` to PostgreSQL NOTIFY on `channel` (letters, digits
 *  and _, at most 63; matched as written, so use lower case as NOTIFY
 *  without quotes does). The first call opens one dedicated connection
 *  (not one of the query pool's) that LISTENs to every subscribed
 *  channel; if it is lost it is reopened (100 ms doubling to 2 s between
 *  attempts) and every LISTEN sent again, so subscriptions survive a
 *  server restart; notifications sent meanwhile are lost. Each
 *  notification calls every callback of its channel, on the loop, in
 *  subscription order. Returns 0, EVAPI_EINVAL, EVAPI_ENOMEM,
 *  EVAPI_ETHREAD, or EVAPI_ESTATE (no PostgreSQL db_url). Subscriptions
 *  last until evapi_app_free. Loop thread only (a startup hook, a
 *  handler). */
EVAPI_EXPORT int evapi_app_db_listen(evapi_app *app, const char *channel,
                                     evapi_db_notify_cb cb, void *arg);

/* ---- on the pool (blocking) --------------------------------------------- */

/** Runs `sql` like evapi_req_db_query, but blocking, on a connection of
 *  the calling thread's own (psycopg's place): for pool-lane handlers,
 *  evapi_req_run_in_pool work and application threads. Each thread opens
 *  one connection to db_url on its first query and keeps it, so a
 *  worker's queries reuse it; a pool worker's connection is closed when
 *  the worker exits, as the app stops. The same limits hold: connecting
 *  waits at most db_acquire_timeout_ms, and a query runs at most
 *  db_query_timeout_ms (statement_timeout: EVAPI_ETIMEDOUT, 504). A
 *  transaction left open is rolled back, a broken connection dropped and
 *  reopened by the next call.
 *
 *  On return `*out` is a new result (evapi_db_result_free), read with the
 *  same accessors, JSON mapping and evapi_reply_db_error as on the loop,
 *  and the function returns its evapi_db_result_error: 0, EVAPI_EDB,
 *  EVAPI_EUNAVAIL or EVAPI_ETIMEDOUT. It returns EVAPI_ETHREAD on a loop
 *  thread (a blocking query there stalls every connection of the app),
 *  EVAPI_EINVAL for bad arguments, EVAPI_ESTATE without db_url and
 *  EVAPI_ENOMEM; then `*out` is NULL. Thread-safe: yes (any thread but a
 *  loop thread). */
EVAPI_EXPORT int evapi_req_db_query_sync(evapi_req *req, const char *sql,
                                         int nparams,
                                         const char *const *params,
                                         evapi_db_result **out);
/** evapi_req_db_query_sync for a thread with no request at hand (an
 *  application thread, or evapi_req_run_in_pool work given the app).
 *  Same arguments and returns. Thread-safe: yes (not a loop thread). */
EVAPI_EXPORT int evapi_app_db_query_sync(evapi_app *app, const char *sql,
                                         int nparams,
                                         const char *const *params,
                                         evapi_db_result **out);
/** A transaction's body: its evapi_app_db_query_sync /
 *  evapi_req_db_query_sync calls on this thread run inside it. Return 0
 *  to commit, anything else to roll back. */
typedef int (*evapi_db_tx_fn)(evapi_app *app, void *arg);

/** Runs `fn` in one transaction on the calling thread's connection:
 *  BEGIN IMMEDIATE on SQLite (the write lock is taken at once, so
 *  concurrent writers wait up to db_acquire_timeout_ms for it, then
 *  EVAPI_EBUSY) or BEGIN on PostgreSQL; then COMMIT when `fn` returned 0
 *  and none of its queries failed, else ROLLBACK. Returns 0 (committed),
 *  `fn`'s own nonzero value, EVAPI_EDB (a query in it failed; rolled
 *  back), the error of a failed BEGIN or COMMIT, EVAPI_ETHREAD on a loop
 *  thread, EVAPI_EINVAL, or EVAPI_ESTATE (no database, or already inside
 *  a transaction on this thread). Thread-safe: yes (not a loop
 *  thread). */
EVAPI_EXPORT int evapi_app_db_transaction_sync(evapi_app *app,
                                               evapi_db_tx_fn fn, void *arg);
/** evapi_app_db_transaction_sync for the app of `req` (a pool
 *  handler); `fn` is given that app. Same returns. */
EVAPI_EXPORT int evapi_req_db_transaction_sync(evapi_req *req,
                                               evapi_db_tx_fn fn, void *arg);

/** Frees a result of the blocking calls. NULL is a no-op. */
EVAPI_EXPORT void evapi_db_result_free(evapi_db_result *res);

#ifdef __cplusplus
}
#endif
#endif
