/*
 * db_sqlite.c: SQLite behind the same handle and results as PostgreSQL,
 * chosen by the URL: sqlite:///absolute/path, or sqlite://:memory: (one
 * in-memory database shared by the app's connections, for tests).
 *
 * Threads: SQLite has no socket to wait on, so every query blocks the
 * thread that runs it. Each thread keeps one connection of its own
 * (thread-specific data, closed by the key's destructor when the thread
 * exits: a pool worker's lives as long as the app's pool), with its own
 * statement cache; no connection or statement is ever shared between
 * threads. An inline route's query (evapi_req_db_query) runs on the pool
 * through evapi_req_run_in_pool and continues on the loop; an app-level
 * one is a plain pool job. The app's own connection (`evapi__lite`),
 * opened on the thread that creates the app, only keeps a :memory:
 * database alive and sets WAL mode once; it runs no query.
 *
 * Every connection: WAL (files), synchronous=NORMAL, foreign keys on,
 * busy_timeout = db_acquire_timeout_ms (a writer waits that long for the
 * lock, then EVAPI_EBUSY), and a progress handler that interrupts a
 * statement past db_query_timeout_ms (EVAPI_ETIMEDOUT). Parameters are
 * bound ($1.. by name, else by position), never put into the SQL; one
 * statement per call, as PostgreSQL's extended protocol allows.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"

struct evapi__lite {
	sqlite3 *db;
};

typedef struct lstmt {
	char *sql;
	sqlite3_stmt *st;
	unsigned long long used; /* LRU tick */
} lstmt;

typedef struct tlite {
	char *path;              /* what db was opened for */
	sqlite3 *db;
	lstmt *cache;
	int ncache, cap;
	unsigned long long tick;
	int64_t deadline_us;     /* of the running statement */
} tlite;


int evapi__lite_url(const char *url)
{
	return url && strncmp(url, "sqlite://", 9) == 0;
}

/* Opens `path` for one thread, or for the app. `why` gets the reason of
 * a failure. */
static sqlite3 *lite_open(const char *path, unsigned busy_ms, char *why,
                          size_t len)
{
	sqlite3 *db = NULL;
	int memdb = strncmp(path, "file:", 5) == 0;
	int rc = sqlite3_open_v2(path, &db,
	                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                         SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_extended_result_codes(db, 1);
		sqlite3_busy_timeout(db, (int)busy_ms);
		rc = sqlite3_exec(db,
		                  memdb ? "PRAGMA foreign_keys = ON"
		                        : "PRAGMA journal_mode = WAL; "
		                          "PRAGMA synchronous = NORMAL; "
		                          "PRAGMA foreign_keys = ON",
		                  NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK) {
		snprintf(why, len, "%s: %s", path,
		         db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close_v2(db);
		return NULL;
	}
	return db;
}

/* ---- the app's connection ------------------------------------------------ */

int evapi__lite_new(evapi_app *app, const char *url, evapi__lite **out,
                    char **path)
{
	static unsigned long seq;
	const char *rest = url + 9;
	char why[512];
	evapi__lite *l;

	*out = NULL;
	*path = NULL;
	if (strcmp(rest, ":memory:") == 0) {
		/* the memdb VFS shares a database named "/..." between the
		 * connections of one process, with ordinary locking */
		char buf[96];
		snprintf(buf, sizeof buf, "file:/evapi-%ld-%lu?vfs=memdb",
		         (long)getpid(),
		         __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
		*path = strdup(buf);
	} else if (rest[0] == '/') {
		*path = strdup(rest);
	} else {
		evapi__log(app, EVAPI_LOG_ERROR,
		           "db_url: a SQLite URL is sqlite:///absolute/path or "
		           "sqlite://:memory:");
		return EVAPI_EINVAL;
	}
	if (!*path || !(l = calloc(1, sizeof *l))) {
		free(*path);
		*path = NULL;
		return EVAPI_ENOMEM;
	}
	l->db = lite_open(*path, (unsigned)app->cfg.db_acquire_timeout_ms, why,
	                  sizeof why);
	if (!l->db)
		evapi__log(app, EVAPI_LOG_ERROR, "database unavailable: %s", why);
	*out = l;
	return 0;
}

void evapi__lite_free(evapi__lite *l)
{
	if (!l)
		return;
	sqlite3_close_v2(l->db);
	free(l);
}

/* ---- a thread's connection ----------------------------------------------- */

static void tlite_close(tlite *t)
{
	int i;

	for (i = 0; i < t->ncache; i++) {
		sqlite3_finalize(t->cache[i].st);
		free(t->cache[i].sql);
	}
	free(t->cache);
	t->cache = NULL;
	t->ncache = t->cap = 0;
	sqlite3_close_v2(t->db);
	t->db = NULL;
	free(t->path);
	t->path = NULL;
}

static void tlite_destroy(void *p)
{
	tlite_close(p);
	free(p);
}

static evapi__thread_slot lite_slot = EVAPI__THREAD_SLOT(tlite_destroy);

/* The stop flag of the request-scoped query this thread runs, if any:
 * set by the loop when the request is cancelled while the query runs. */
static __thread const int *run_stop;

static int on_progress(void *arg)
{
	const tlite *t = arg;
	if (run_stop && __atomic_load_n(run_stop, __ATOMIC_ACQUIRE))
		return 1; /* its request was cancelled */
	return evapi__now_us() > t->deadline_us; /* nonzero: interrupt */
}

/* This thread's connection to conf->lite_path, opened if need be. */
static tlite *thread_lite(const evapi__db_conf *conf, evapi_db_result *res)
{
	char why[512];
	tlite *t;

	if (!(t = evapi__thread_record(&lite_slot, sizeof *t))) {
		evapi__db_result_set(res, EVAPI_EUNAVAIL, NULL, "out of memory");
		return NULL;
	}
	if (t->db && strcmp(t->path, conf->lite_path) == 0) {
		sqlite3_busy_timeout(t->db, (int)conf->acquire_ms);
		return t;
	}
	tlite_close(t);
	t->db = lite_open(conf->lite_path, conf->acquire_ms, why, sizeof why);
	if (!t->db || !(t->path = strdup(conf->lite_path))) {
		tlite_close(t);
		evapi__db_result_set(res, EVAPI_EUNAVAIL, NULL,
		                     t->db ? "out of memory" : why);
		return NULL;
	}
	/* checked every 1000 virtual machine instructions */
	sqlite3_progress_handler(t->db, 1000, on_progress, t);
	return t;
}

/* ---- statements ---------------------------------------------------------- */

/* The error class of a failed call, as evapi__db_classify does for
 * PostgreSQL; constraint violations get their SQLSTATE. */
static void lite_fail(sqlite3 *db, int rc, evapi_db_result *res)
{
	int err = EVAPI_EDB;
	const char *state = "";

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		err = EVAPI_EBUSY;
		break;
	case SQLITE_INTERRUPT:
		err = EVAPI_ETIMEDOUT;
		break;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		err = EVAPI_EUNAVAIL;
		break;
	}
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		state = "23505";
		break;
	case SQLITE_CONSTRAINT_NOTNULL:
		state = "23502";
		break;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		state = "23503";
		break;
	case SQLITE_CONSTRAINT_CHECK:
		state = "23514";
		break;
	}
	evapi__db_result_set(res, err, NULL, sqlite3_errmsg(db));
	snprintf(res->sqlstate, sizeof res->sqlstate, "%s", state);
}

static void stmt_drop(tlite *t, int i)
{
	sqlite3_finalize(t->cache[i].st);
	free(t->cache[i].sql);
	t->cache[i] = t->cache[--t->ncache];
}

/* A prepared statement for `sql`: from the cache, or prepared (and
 * cached when the cache is on). *cached tells which. */
static sqlite3_stmt *stmt_get(tlite *t, const evapi__db_conf *conf,
                              const char *sql, int *cached,
                              evapi_db_result *res)
{
	sqlite3_stmt *st = NULL;
	const char *tail = NULL;
	int i, rc, lru = 0;

	for (i = 0; i < t->ncache; i++)
		if (strcmp(t->cache[i].sql, sql) == 0) {
			t->cache[i].used = ++t->tick;
			*cached = 1;
			return t->cache[i].st;
		}
	rc = sqlite3_prepare_v3(t->db, sql, -1,
	                        conf->cache_size ? SQLITE_PREPARE_PERSISTENT : 0,
	                        &st, &tail);
	if (rc != SQLITE_OK) {
		lite_fail(t->db, rc, res);
		return NULL;
	}
	while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' ||
	                *tail == '\r' || *tail == ';'))
		tail++;
	if (!st || (tail && *tail)) {
		sqlite3_finalize(st);
		evapi__db_result_set(res, EVAPI_EDB, NULL,
		                     st ? "one statement per query"
		                        : "empty query");
		return NULL;
	}
	*cached = 0;
	if (conf->cache_size <= 0)
		return st;
	if (t->ncache == conf->cache_size) {
		for (i = 1; i < t->ncache; i++)
			if (t->cache[i].used < t->cache[lru].used)
				lru = i;
		stmt_drop(t, lru);
	}
	if (t->ncache == t->cap) {
		int cap = t->cap ? t->cap * 2 : 8;
		lstmt *c = realloc(t->cache, (size_t)cap * sizeof *c);
		if (!c)
			return st; /* runs uncached */
		t->cache = c;
		t->cap = cap;
	}
	if (!(t->cache[t->ncache].sql = strdup(sql)))
		return st;
	t->cache[t->ncache].st = st;
	t->cache[t->ncache].used = ++t->tick;
	t->ncache++;
	*cached = 1;
	return st;
}

/* $1..$n by name when the SQL uses them, else ?1.. / ? by position */
static int bind_all(sqlite3_stmt *st, int nparams, const char *const *params)
{
	int i, rc = SQLITE_OK;

	if (sqlite3_bind_parameter_count(st) != nparams)
		return SQLITE_RANGE;
	for (i = 0; i < nparams && rc == SQLITE_OK; i++) {
		char name[16];
		int idx;
		snprintf(name, sizeof name, "$%d", i + 1);
		if (!(idx = sqlite3_bind_parameter_index(st, name)))
			idx = i + 1;
		rc = params[i] ? sqlite3_bind_text(st, idx, params[i], -1,
		                                   SQLITE_TRANSIENT)
		               : sqlite3_bind_null(st, idx);
	}
	return rc;
}

static evapi__db_rows *rows_new(sqlite3_stmt *st)
{
	evapi__db_rows *r = calloc(1, sizeof *r);
	int c;

	if (!r)
		return NULL;
	r->ncols = sqlite3_column_count(st);
	if (r->ncols && !(r->names = calloc((size_t)r->ncols, sizeof *r->names)))
		goto err;
	for (c = 0; c < r->ncols; c++) {
		const char *n = sqlite3_column_name(st, c);
		if (!(r->names[c] = strdup(n ? n : "?column?")))
			goto err;
	}
	return r;
err:
	evapi__db_rows_free(r);
	return NULL;
}

/* Copies the current row, adding the bytes of its values to *bytes; -1
 * when out of memory. */
static int rows_add(evapi__db_rows *r, sqlite3_stmt *st, size_t *cap,
                    size_t *bytes)
{
	size_t need = (size_t)(r->nrows + 1) * (size_t)r->ncols, base;
	int c;

	if (need > *cap) {
		size_t ncap = *cap ? *cap * 2 : (size_t)r->ncols * 16;
		evapi__db_cell *cells;
		while (ncap < need)
			ncap *= 2;
		if (!(cells = realloc(r->cells, ncap * sizeof *cells)))
			return -1;
		r->cells = cells;
		*cap = ncap;
	}
	base = (size_t)r->nrows * (size_t)r->ncols;
	memset(&r->cells[base], 0, (size_t)r->ncols * sizeof *r->cells);
	r->nrows++; /* counted now, so that a failure frees what was copied */
	for (c = 0; c < r->ncols; c++) {
		evapi__db_cell *cl = &r->cells[base + (size_t)c];
		int type = sqlite3_column_type(st, c); /* before any conversion */
		const void *p;

		if (type == SQLITE_NULL)
			continue;
		cl->type = type == SQLITE_INTEGER ? EVAPI__CELL_INT
		         : type == SQLITE_FLOAT   ? EVAPI__CELL_REAL
		         : type == SQLITE_BLOB    ? EVAPI__CELL_BLOB
		                                  : EVAPI__CELL_TEXT;
		p = type == SQLITE_BLOB ? sqlite3_column_blob(st, c)
		                        : (const void *)sqlite3_column_text(st, c);
		cl->len = sqlite3_column_bytes(st, c);
		*bytes += (size_t)cl->len;
		if (!(cl->v = malloc((size_t)cl->len + 1)))
			return -1;
		if (cl->len)
			memcpy(cl->v, p, (size_t)cl->len);
		cl->v[cl->len] = '\0';
	}
	return 0;
}

void evapi__lite_query(const evapi__db_conf *conf, const char *sql,
                       int nparams, const char *const *params,
                       evapi_db_result *res)
{
	tlite *t = thread_lite(conf, res);
	evapi__db_rows *rows = NULL;
	sqlite3_stmt *st;
	sqlite3_int64 total;
	size_t cap = 0, bytes = 0;
	int rc, cached;
	char msg[96];

	if (!t || !(st = stmt_get(t, conf, sql, &cached, res)))
		return;
	if ((rc = bind_all(st, nparams, params)) != SQLITE_OK) {
		evapi__db_result_set(res, EVAPI_EDB, NULL,
		                     rc == SQLITE_RANGE
		                             ? "parameter count does not match"
		                             : sqlite3_errmsg(t->db));
		goto out;
	}
	if (!(rows = rows_new(st))) {
		evapi__db_result_set(res, EVAPI_ENOMEM, NULL, "out of memory");
		goto out;
	}
	total = sqlite3_total_changes64(t->db);
	t->deadline_us = evapi__now_us() + (int64_t)conf->query_ms * 1000;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (rows_add(rows, st, &cap, &bytes) != 0) {
			rc = SQLITE_NOMEM;
			break;
		}
		if (bytes > conf->max_result)
			break; /* the statement is reset below */
	}
	if (rc == SQLITE_ROW) {
		evapi__db_result_set(res, EVAPI_ETOOBIG, NULL,
		                     evapi__db_too_big(msg, sizeof msg,
		                                       conf->max_result));
	} else if (rc == SQLITE_DONE) {
		/* sqlite3_changes64 still counts the last write when this
		 * statement wrote nothing (a PRAGMA, DDL) */
		rows->changes = rows->nrows ? rows->nrows
		              : sqlite3_total_changes64(t->db) != total
		                      ? sqlite3_changes64(t->db)
		                      : 0;
		res->rows = rows;
		rows = NULL;
	} else {
		lite_fail(t->db, sqlite3_extended_errcode(t->db), res);
	}
out:
	evapi__db_rows_free(rows);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (!cached)
		sqlite3_finalize(st);
	/* each call is its own transaction, as on PostgreSQL */
	if (!evapi__db_in_tx() && !sqlite3_get_autocommit(t->db))
		sqlite3_exec(t->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- from the loop: run on the pool, continue on the loop ---------------- */

typedef struct lite_op {
	evapi__db_conf conf;
	evapi_app *app;
	char *sql;               /* one block with the parameters */
	char **params;
	int nparams;
	int ran;
	int stop;                /* atomic: the loop cancelled its request */
	evapi_db_cb cb;
	evapi_app_db_cb app_cb;
	void *arg;
	evapi__job job;          /* an app-level query's pool job */
	evapi_db_result res;
} lite_op;

static lite_op *op_new(const evapi__db_conf *conf, const char *sql,
                       int nparams, const char *const *params)
{
	lite_op *op = calloc(1, sizeof *op);

	if (!op)
		return NULL;
	if (!(op->sql = evapi__db_args_copy(sql, nparams, params,
	                                    &op->params))) {
		free(op);
		return NULL;
	}
	op->conf = *conf;
	op->nparams = nparams;
	op->res.start_us = evapi__now_us();
	return op;
}

static void op_free(lite_op *op)
{
	evapi__db_result_clear(&op->res);
	free(op->sql);
	free(op);
}

static void op_run(lite_op *op)
{
	evapi__lite_query(&op->conf, op->sql, op->nparams,
	                  (const char *const *)op->params, &op->res);
	op->res.end_us = evapi__now_us();
	op->ran = 1;
}

/* A query that never ran (its request left first, or the app stopped)
 * reports EVAPI_ECANCELED. */
static void op_outcome(lite_op *op, int status)
{
	if (status != 0 && !op->ran) {
		evapi__db_result_set(&op->res, EVAPI_ECANCELED, NULL,
		                     "cancelled before it ran");
		op->res.end_us = evapi__now_us();
	}
}

static void req_work(void *arg)
{
	lite_op *op = arg;

	run_stop = &op->stop;
	op_run(op);
	run_stop = NULL;
}

/* On the loop: the request left while its query runs; the progress
 * handler sees the flag within a few thousand VM steps and interrupts. */
static void req_interrupt(void *arg)
{
	lite_op *op = arg;
	__atomic_store_n(&op->stop, 1, __ATOMIC_RELEASE);
}

static void req_done(evapi_req *req, int status, void *arg)
{
	lite_op *op = arg;
	op_outcome(op, status);
	op->cb(req, status, &op->res, op->arg);
	op_free(op);
}

int evapi__lite_req_query(evapi_req *req, const evapi__db_conf *conf,
                          const char *sql, int nparams,
                          const char *const *params, evapi_db_cb cb,
                          void *arg)
{
	lite_op *op = op_new(conf, sql, nparams, params);
	int rc;

	if (!op)
		return EVAPI_ENOMEM;
	op->cb = cb;
	op->arg = arg;
	if ((rc = evapi__req_run_in_pool_ex(req, req_work, req_done,
	                                    req_interrupt, op)) != 0)
		op_free(op);
	return rc;
}

static void job_work(evapi__job *job)
{
	op_run(EVAPI__CONTAINER_OF(job, lite_op, job));
}

static void job_done(evapi__job *job, int status)
{
	lite_op *op = EVAPI__CONTAINER_OF(job, lite_op, job);
	evapi__user u;

	op_outcome(op, status);
	evapi__user_begin(op->app, &u, "query callback", NULL, NULL);
	op->app_cb(op->app, &op->res, op->arg);
	evapi__user_end(op->app, &u);
	op_free(op);
}

int evapi__lite_app_query(evapi_app *app, const evapi__db_conf *conf,
                          const char *sql, int nparams,
                          const char *const *params, evapi_app_db_cb cb,
                          void *arg)
{
	lite_op *op = op_new(conf, sql, nparams, params);
	int rc;

	if (!op)
		return EVAPI_ENOMEM;
	op->app = app;
	op->app_cb = cb;
	op->arg = arg;
	op->job.work = job_work;
	op->job.done = job_done;
	if ((rc = evapi__pool_submit(app->pool, &op->job)) != 0)
		op_free(op);
	return rc;
}
