/*
 * test_sqlite.c: SQLite behind the database handle (src/db_sqlite.c),
 * through real HTTP requests to an in-process app: inline routes whose
 * queries run on the pool and continue on the loop, pool routes with the
 * blocking call and its transaction helper, a start-up migration from
 * the lifespan hook. Files live in a fresh temporary directory.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

static int migrated; /* 1 done, -1 failed */

static void migration_done(evapi_app *app, const evapi_db_result *res,
                           void *arg)
{
	(void)app;
	(void)arg;
	if (evapi_db_result_error(res))
		fprintf(stderr, "  migration: %s\n", evapi_db_result_errmsg(res));
	__atomic_store_n(&migrated, evapi_db_result_error(res) ? -1 : 1,
	                 __ATOMIC_SEQ_CST);
}

static int startup(evapi_app *app, void *arg)
{
	(void)arg;
	return evapi_app_db_query(app,
	                          "CREATE TABLE IF NOT EXISTS users ("
	                          "id INTEGER PRIMARY KEY, name TEXT UNIQUE "
	                          "NOT NULL, score REAL, avatar BLOB)",
	                          0, NULL, migration_done, NULL);
}

/* ---- the app under test ------------------------------------------------- */

static void reply_rows(evapi_req *req, const evapi_db_result *res)
{
	if (evapi_db_result_error(res))
		evapi_reply_db_error(req, res);
	else
		evapi_reply_json(req, 200,
		                 json_pack("{s:o,s:I}", "rows",
		                           evapi_db_result_json(res), "affected",
		                           (json_int_t)evapi_db_result_affected(res)));
}

/* valgrind preloads its vgpreload_*.so into the program it runs */
static int under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");
	return p && strstr(p, "vgpreload") != NULL;
}

static int cancelled; /* continuations told EVAPI_ECANCELED */
static int q_started; /* POST /q queries started */

static void q_done(evapi_req *req, int status, const evapi_db_result *res,
                   void *arg)
{
	(void)arg;
	if (status == EVAPI_ECANCELED)
		__atomic_add_fetch(&cancelled, 1, __ATOMIC_SEQ_CST);
	else
		reply_rows(req, res);
}

/* GET /gather: three queries, one continuation, results in order */
static void gather_done(evapi_req *req, int status, int n,
                        const evapi_db_result *const *res, void *arg)
{
	json_t *out = json_array();
	int i;
	(void)arg;

	CHECK_INT(status, ==, 0);
	for (i = 0; i < n; i++)
		json_array_append_new(out, evapi_db_result_error(res[i])
		                                   ? json_string("error")
		                                   : evapi_db_result_json(res[i]));
	evapi_reply_json(req, 200, out);
}

static void route_gather(evapi_req *req, void *arg)
{
	static const char *p[] = { "7" };
	const evapi_db_query qs[] = {
		{ "SELECT $1 + 1 AS a", 1, p },
		{ "SELECT * FROM no_such_table", 0, NULL },
		{ "SELECT 'z' AS c", 0, NULL },
	};
	int rc;
	(void)arg;

	if ((rc = evapi_req_db_gather(req, 3, qs, gather_done, NULL)) != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

/* The body {"sql": "...", "params": [...]}; 0 or a reply was sent. */
static int body_query(evapi_req *req, const char **sql, const char **params,
                      int *n)
{
	json_t *body, *p;
	size_t i;

	if (evapi_req_json(req, &body) != 0)
		return -1;
	p = json_object_get(body, "params");
	*sql = json_string_value(json_object_get(body, "sql"));
	if (json_array_size(p) > 8 || !*sql) {
		evapi_reply_error(req, 400, "bad test request");
		return -1;
	}
	for (i = 0; i < json_array_size(p); i++)
		params[i] = json_string_value(json_array_get(p, i));
	*n = (int)json_array_size(p);
	return 0;
}

/* POST /q, inline: the query runs on the pool, the reply from the loop */
static void route_q(evapi_req *req, void *arg)
{
	const char *sql, *params[8];
	int n, rc;
	(void)arg;

	if (body_query(req, &sql, params, &n) != 0)
		return;
	if ((rc = evapi_req_db_query(req, sql, n, params, q_done, NULL)) != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
	else
		__atomic_add_fetch(&q_started, 1, __ATOMIC_SEQ_CST);
}

/* POST /sq, pool: the blocking call */
static void route_sq(evapi_req *req, void *arg)
{
	const char *sql, *params[8];
	evapi_db_result *res;
	int n;
	(void)arg;

	if (body_query(req, &sql, params, &n) != 0)
		return;
	evapi_req_db_query_sync(req, sql, n, params, &res);
	if (!res) {
		evapi_reply_error(req, 500, "no result");
		return;
	}
	reply_rows(req, res);
	evapi_db_result_free(res);
}

/* POST /tx, pool: {"names": [...]} inserted in one transaction */
typedef struct tx_arg {
	json_t *names;
	int fail;
} tx_arg;

static int insert_all(evapi_app *app, void *arg)
{
	tx_arg *t = arg;
	evapi_db_result *res;
	size_t i;
	int rc = 0;

	for (i = 0; rc == 0 && i < json_array_size(t->names); i++) {
		const char *p[1] = { json_string_value(json_array_get(t->names, i)) };
		rc = evapi_app_db_query_sync(app,
		                             "INSERT INTO users (name) VALUES ($1)",
		                             1, p, &res);
		evapi_db_result_free(res);
	}
	return t->fail ? 1 : 0;
}

static void route_tx(evapi_req *req, void *arg)
{
	tx_arg t;
	json_t *body;
	int rc;
	(void)arg;

	if (evapi_req_json(req, &body) != 0)
		return;
	t.names = json_object_get(body, "names");
	t.fail = json_is_true(json_object_get(body, "fail"));
	rc = evapi_req_db_transaction_sync(req, insert_all, &t);
	evapi_reply_json(req, 200, json_pack("{s:i}", "rc", rc));
}

/* POST /inc, pool: read-modify-write of one counter in a transaction */
static int increment(evapi_app *app, void *arg)
{
	evapi_db_result *res;
	char next[32];
	const char *p[1] = { next };
	int rc;
	(void)arg;

	if ((rc = evapi_app_db_query_sync(app, "SELECT n FROM counter", 0, NULL,
	                                  &res)) == 0)
		snprintf(next, sizeof next, "%lld",
		         atoll(evapi_db_result_value(res, 0, 0)) + 1);
	evapi_db_result_free(res);
	if (rc != 0)
		return rc;
	usleep(2000); /* widen the window a lost update would need */
	rc = evapi_app_db_query_sync(app, "UPDATE counter SET n = $1", 1, p, &res);
	evapi_db_result_free(res);
	return rc;
}

static void route_inc(evapi_req *req, void *arg)
{
	int rc = evapi_req_db_transaction_sync(req, increment,
	                                       NULL);
	(void)arg;
	evapi_reply_json(req, rc == 0 ? 200 : 503, json_pack("{s:i}", "rc", rc));
}

/* POST /hold, pool: holds the write lock for 600 ms */
static int hold(evapi_app *app, void *arg)
{
	evapi_db_result *res;
	int rc = evapi_app_db_query_sync(app, "INSERT INTO users (name) "
	                                      "VALUES ('holder')", 0, NULL, &res);
	(void)arg;
	evapi_db_result_free(res);
	usleep(600 * 1000);
	return rc;
}

static void route_hold(evapi_req *req, void *arg)
{
	int rc = evapi_req_db_transaction_sync(req, hold, NULL);
	(void)arg;
	evapi_reply_json(req, 200, json_pack("{s:i}", "rc", rc));
}

static void route_fast(evapi_req *req, void *arg)
{
	(void)arg;
	evapi_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static char dir[64];

static void start_app(th_server *s, const char *url, evapi_config *cfg)
{
	evapi_config def;
	evapi_app *app;
	double until = th_now() + 5;

	if (!cfg) {
		th_config(&def);
		cfg = &def;
	}
	cfg->db_url = url;
	__atomic_store_n(&migrated, 0, __ATOMIC_SEQ_CST);
	app = evapi_app_new(cfg);
	CHECK(app != NULL);
	if (!app)
		return;
	evapi_app_on_startup(app, startup, NULL);
	evapi_app_route(app, EVAPI_POST, "/q", EVAPI_INLINE, route_q, NULL);
	evapi_app_route(app, EVAPI_POST, "/sq", EVAPI_POOL, route_sq, NULL);
	evapi_app_route(app, EVAPI_POST, "/tx", EVAPI_POOL, route_tx, NULL);
	evapi_app_route(app, EVAPI_POST, "/inc", EVAPI_POOL, route_inc, NULL);
	evapi_app_route(app, EVAPI_POST, "/hold", EVAPI_POOL, route_hold, NULL);
	evapi_app_route(app, EVAPI_GET, "/fast", EVAPI_INLINE, route_fast, NULL);
	evapi_app_route(app, EVAPI_GET, "/gather", EVAPI_INLINE, route_gather,
	                NULL);
	th_server_start(s, app);
	while (!__atomic_load_n(&migrated, __ATOMIC_SEQ_CST) && th_now() < until)
		th_sleep_ms(10);
	CHECK_INT(__atomic_load_n(&migrated, __ATOMIC_SEQ_CST), ==, 1);
}

/* POSTs {"sql": sql, "params": params} (params a JSON array text) */
static long post(int port, const char *path, const char *sql,
                 const char *params, th_resp *r)
{
	json_t *b = json_pack("{s:s}", "sql", sql);
	char *text;
	long st;

	json_object_set_new(b, "params", json_loads(params ? params : "[]", 0,
	                                             NULL));
	text = json_dumps(b, JSON_COMPACT);
	st = th_http_body(port, "POST", path, "application/json", text,
	                  strlen(text), r);
	free(text);
	json_decref(b);
	return st;
}

static long post_json(int port, const char *path, const char *text,
                      th_resp *r)
{
	return th_http_body(port, "POST", path, "application/json", text,
	                    strlen(text), r);
}

/* A POST of /q-style SQL (or an empty JSON object) from a thread. */
typedef struct bg_post {
	pthread_t th;
	int port;
	const char *path, *sql;
	th_resp r;
} bg_post;

static void *bg_post_main(void *arg)
{
	bg_post *b = arg;
	if (b->sql)
		post(b->port, b->path, b->sql, NULL, &b->r);
	else
		post_json(b->port, b->path, "{}", &b->r);
	return NULL;
}

static void bg_post_start(bg_post *b, int port, const char *path,
                          const char *sql)
{
	memset(b, 0, sizeof *b);
	b->port = port;
	b->path = path;
	b->sql = sql;
	CHECK_INT(pthread_create(&b->th, NULL, bg_post_main, b), ==, 0);
}

static void bg_post_wait(bg_post *b, th_resp *out)
{
	pthread_join(b->th, NULL);
	*out = b->r;
}

static const char *file_url(const char *name)
{
	static char url[160];
	snprintf(url, sizeof url, "sqlite://%s/%s", dir, name);
	return url;
}

/* ---- tests --------------------------------------------------------------- */

static void test_types(void)
{
	th_server s;
	th_resp r;
	const char *paths[] = { "/q", "/sq" };
	int i;

	start_app(&s, "sqlite://:memory:", NULL);
	for (i = 0; i < 2; i++) {
		CHECK_INT(post(s.port, paths[i],
		               "SELECT 42 AS i, -1.5 AS r, 'x\"y' AS t, "
		               "x'00fffe' AS b, NULL AS n, 9007199254740993 AS big",
		               NULL, &r), ==, 200);
		CHECK_STR(r.body, "{\"rows\":[{\"i\":42,\"r\":-1.5,\"t\":\"x\\\"y\","
		                  "\"b\":\"AP/+\",\"n\":null,"
		                  "\"big\":9007199254740993}],\"affected\":1}");
	}
	/* a column's storage class is per value: a parameter bound as text
	 * into an INTEGER column is stored as an integer */
	CHECK_INT(post(s.port, "/q", "INSERT INTO users (id, name, score) "
	                             "VALUES ($1, $2, $3)",
	               "[\"7\", \"ann\", \"2.25\"]", &r), ==, 200);
	CHECK_STR(r.body, "{\"rows\":[],\"affected\":1}");
	CHECK_INT(post(s.port, "/sq", "SELECT id, name, score, avatar FROM users "
	                              "WHERE id = $1", "[\"7\"]", &r), ==, 200);
	CHECK_STR(r.body, "{\"rows\":[{\"id\":7,\"name\":\"ann\",\"score\":2.25,"
	                  "\"avatar\":null}],\"affected\":1}");
	/* $2 before $1: bound by name, not by position */
	CHECK_INT(post(s.port, "/q", "SELECT $2 || '-' || $1 AS v",
	               "[\"a\", \"b\"]", &r), ==, 200);
	CHECK_STR(r.body, "{\"rows\":[{\"v\":\"b-a\"}],\"affected\":1}");
	th_server_stop(&s);
}

static void test_injection(void)
{
	th_server s;
	th_resp r;

	start_app(&s, "sqlite://:memory:", NULL);
	CHECK_INT(post(s.port, "/q", "INSERT INTO users (name) VALUES ($1)",
	               "[\"x'); DROP TABLE users; --\"]", &r), ==, 200);
	CHECK_INT(post(s.port, "/q", "SELECT name FROM users WHERE name = $1",
	               "[\"x'); DROP TABLE users; --\"]", &r), ==, 200);
	CHECK_STR(r.body, "{\"rows\":[{\"name\":\"x'); DROP TABLE users; --\"}],"
	                  "\"affected\":1}");
	/* a second statement in the SQL text is refused, not run */
	CHECK_INT(post(s.port, "/q", "SELECT 1; DROP TABLE users", NULL, &r), ==,
	          500);
	CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	CHECK_INT(post(s.port, "/q", "SELECT count(*) AS n FROM users", NULL, &r),
	          ==, 200);
	CHECK_STR(r.body, "{\"rows\":[{\"n\":1}],\"affected\":1}");
	/* parameter count must match */
	CHECK_INT(post(s.port, "/q", "SELECT $1", NULL, &r), ==, 500);
	/* a unique violation is a 409, a syntax error a 500 */
	CHECK_INT(post(s.port, "/sq", "INSERT INTO users (name) VALUES ($1)",
	               "[\"x'); DROP TABLE users; --\"]", &r), ==, 409);
	CHECK_STR(r.body, "{\"detail\":\"Conflict\"}");
	CHECK_INT(post(s.port, "/q", "SELEC 1", NULL, &r), ==, 500);
	th_server_stop(&s);
}

/* 24 read-modify-write transactions from 4 workers on one file: each
 * waits for the write lock (BEGIN IMMEDIATE, busy_timeout), none is
 * lost; the file is in WAL mode. */
static void test_concurrent_writers(void)
{
	bg_post bg[24];
	th_resp *r = calloc(24, sizeof *r), one;
	evapi_config cfg;
	th_server s;
	int i, ok = 0;

	if (!r)
		return;
	th_config(&cfg);
	cfg.pool_threads = 4;
	start_app(&s, file_url("writers.db"), &cfg);
	CHECK_INT(post(s.port, "/sq", "CREATE TABLE counter (n INTEGER)", NULL,
	               &one), ==, 200);
	CHECK_INT(post(s.port, "/sq", "INSERT INTO counter VALUES (0)", NULL,
	               &one), ==, 200);
	for (i = 0; i < 24; i++)
		bg_post_start(&bg[i], s.port, "/inc", NULL);
	for (i = 0; i < 24; i++)
		bg_post_wait(&bg[i], &r[i]);
	for (i = 0; i < 24; i++)
		ok += r[i].status == 200;
	CHECK_INT(ok, ==, 24);
	CHECK_INT(post(s.port, "/sq", "SELECT n FROM counter", NULL, &one), ==,
	          200);
	CHECK_STR(one.body, "{\"rows\":[{\"n\":24}],\"affected\":1}");
	CHECK_INT(post(s.port, "/sq", "PRAGMA journal_mode", NULL, &one), ==,
	          200);
	CHECK_STR(one.body, "{\"rows\":[{\"journal_mode\":\"wal\"}],"
	                    "\"affected\":1}");
	/* DDL changes no row, whatever the last write changed */
	CHECK_INT(post(s.port, "/sq", "CREATE TABLE t2 (x INTEGER)", NULL,
	               &one), ==, 200);
	CHECK_STR(one.body, "{\"rows\":[],\"affected\":0}");
	th_server_stop(&s);
	free(r);
}

/* A writer that cannot get the lock within busy_timeout
 * (db_acquire_timeout_ms) gets 503 "Database busy"; readers are not
 * blocked by a writer (WAL). */
static void test_busy(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	bg_post bg;

	th_config(&cfg);
	cfg.db_acquire_timeout_ms = 100;
	start_app(&s, file_url("busy.db"), &cfg);
	bg_post_start(&bg, s.port, "/hold", NULL);
	th_sleep_ms(250);
	CHECK_INT(post(s.port, "/q", "INSERT INTO users (name) VALUES ('late')",
	               NULL, &r), ==, 503);
	CHECK_STR(r.body, "{\"detail\":\"Database busy\"}");
	CHECK_CONTAINS(r.headers, "Retry-After: 1");
	CHECK_INT(post(s.port, "/q", "SELECT count(*) AS n FROM users", NULL, &r),
	          ==, 200);
	bg_post_wait(&bg, &r);
	CHECK_STR(r.body, "{\"rc\":0}");
	th_server_stop(&s);
}

/* An inline route's query runs on a worker: while a long one runs, the
 * loop keeps answering; past db_query_timeout_ms it is interrupted. */
static void test_inline_via_pool(void)
{
	static const char *slow =
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
		"WHERE x < 100000000) SELECT count(*) FROM c";
	evapi_config cfg;
	th_server s;
	th_resp r;
	bg_post bg;
	double t0;

	th_config(&cfg);
	cfg.db_query_timeout_ms = 1500;
	cfg.stall_threshold_ms = 100;
	start_app(&s, "sqlite://:memory:", &cfg);
	th_log_clear();
	t0 = th_now();
	bg_post_start(&bg, s.port, "/q", slow);
	th_sleep_ms(200);
	CHECK_INT(th_http(s.port, "GET", "/fast", NULL, &r), ==, 200);
	/* A blocked loop would hold it for the query's 1.5 s. Not under
	 * valgrind, which runs one thread at a time: there the worker's busy
	 * query starves the loop whatever evapi does (the other suites check
	 * it). */
	if (!under_valgrind())
		CHECK_DBL(r.secs, <, 1.0);
	bg_post_wait(&bg, &r);
	CHECK_INT(r.status, ==, 504);
	CHECK_STR(r.body, "{\"detail\":\"Database timed out\"}");
	CHECK_DBL(th_now() - t0, <, 5.0);
	CHECK(strstr(th_log(), "loop stalled") == NULL);
	th_server_stop(&s);
}

/* The client leaves while its query runs on a worker: the loop tells
 * the running query to stop (SQLite's progress handler interrupts it),
 * long before its timeout; the continuation is told EVAPI_ECANCELED,
 * nothing is left in flight (th_server_stop checks) or leaked. */
static void test_client_gone(void)
{
	static const char body[] =
		"{\"sql\":\"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT "
		"x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c\"}";
	char raw[512];
	evapi_config cfg;
	th_server s;
	double until, left;
	int fd;

	th_config(&cfg);
	/* the close, not the timeout, must end the query */
	cfg.db_query_timeout_ms = 60000;
	start_app(&s, "sqlite://:memory:", &cfg);
	__atomic_store_n(&cancelled, 0, __ATOMIC_SEQ_CST);
	snprintf(raw, sizeof raw,
	         "POST /q HTTP/1.1\r\nHost: x\r\nContent-Type: "
	         "application/json\r\nContent-Length: %zu\r\n\r\n%s",
	         strlen(body), body);
	__atomic_store_n(&q_started, 0, __ATOMIC_SEQ_CST);
	fd = th_connect_send(s.port, raw);
	CHECK(fd >= 0);
	/* leave once the query runs (however slow the machine) */
	until = th_now() + 10;
	while (!__atomic_load_n(&q_started, __ATOMIC_SEQ_CST) && th_now() < until)
		th_sleep_ms(10);
	th_sleep_ms(100); /* let it get going on the worker */
	if (fd >= 0)
		close(fd);
	left = th_now();
	until = left + 30;
	while (!__atomic_load_n(&cancelled, __ATOMIC_SEQ_CST) && th_now() < until)
		th_sleep_ms(20);
	CHECK_INT(__atomic_load_n(&cancelled, __ATOMIC_SEQ_CST), ==, 1);
	/* far inside the 60 s timeout, even under valgrind */
	CHECK_DBL(th_now() - left, <, 20.0);
	th_server_stop(&s);
}

static void test_tx_rollback(void)
{
	th_server s;
	th_resp r;
	char want[32];

	start_app(&s, file_url("tx.db"), NULL);
	CHECK_INT(post_json(s.port, "/tx", "{\"names\":[\"a\",\"b\"]}", &r),
	          ==, 200);
	CHECK_STR(r.body, "{\"rc\":0}");
	/* the second insert violates UNIQUE: the first is rolled back too */
	CHECK_INT(post_json(s.port, "/tx", "{\"names\":[\"c\",\"a\"]}", &r),
	          ==, 200);
	snprintf(want, sizeof want, "{\"rc\":%d}", EVAPI_EDB);
	CHECK_STR(r.body, want);
	/* the body asks for a rollback */
	CHECK_INT(post_json(s.port, "/tx",
	                    "{\"names\":[\"d\"],\"fail\":true}", &r), ==, 200);
	CHECK_STR(r.body, "{\"rc\":1}");
	CHECK_INT(post(s.port, "/q", "SELECT name FROM users ORDER BY name", NULL,
	               &r), ==, 200);
	CHECK_STR(r.body, "{\"rows\":[{\"name\":\"a\"},{\"name\":\"b\"}],"
	                  "\"affected\":2}");
	th_server_stop(&s);
}

static void test_bad_url(void)
{
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.db_url = "sqlite://relative.db";
	app = evapi_app_new(&cfg);
	CHECK(app == NULL);
	evapi_app_free(app);
	CHECK_CONTAINS(th_log(), "sqlite:///absolute/path");
}

/* Over db_max_result_bytes, on the loop's path and the blocking one: 500
 * with the reason in the log; the statement is reset, and the next
 * query on the same thread's connection runs. */
static void test_result_cap(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	const char *paths[] = { "/q", "/sq" };
	int i;

	th_config(&cfg);
	cfg.pool_threads = 1;
	cfg.db_max_result_bytes = 1000;
	start_app(&s, "sqlite://:memory:", &cfg);
	for (i = 0; i < 2; i++) {
		CHECK_INT(post(s.port, paths[i],
		               "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL "
		               "SELECT n + 1 FROM c WHERE n < 200000) "
		               "SELECT n, printf('%100d', n) AS v FROM c",
		               NULL, &r), ==, 500);
		CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
		CHECK_INT(post(s.port, paths[i],
		               "SELECT 1 AS a UNION ALL SELECT 2", NULL, &r),
		          ==, 200);
		CHECK_STR(r.body, "{\"rows\":[{\"a\":1},{\"a\":2}],"
		                  "\"affected\":2}");
	}
	CHECK_CONTAINS(th_log(), "db_max_result_bytes (1000 bytes)");
	th_server_stop(&s);
}

/* evapi_req_db_gather over SQLite: each query a pool job, the results in
 * query order, a failed one with its own error. */
static void test_gather(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;

	th_config(&cfg);
	cfg.pool_threads = 2;
	start_app(&s, "sqlite://:memory:", &cfg);
	CHECK_INT(th_http(s.port, "GET", "/gather", NULL, &r), ==, 200);
	CHECK_STR(r.body, "[[{\"a\":8}],\"error\",[{\"c\":\"z\"}]]");
	th_server_stop(&s);
}

static const th_test tests[] = {
	{ "sqlite.types", test_types },
	{ "sqlite.injection", test_injection },
	{ "sqlite.concurrent_writers", test_concurrent_writers },
	{ "sqlite.inline_via_pool", test_inline_via_pool },
	{ "sqlite.client_gone", test_client_gone },
	{ "sqlite.busy", test_busy },
	{ "sqlite.tx_rollback", test_tx_rollback },
	{ "sqlite.bad_url", test_bad_url },
	{ "sqlite.result_cap", test_result_cap },
	{ "sqlite.gather", test_gather },
	{ NULL, NULL }
};

int main(int argc, char **argv)
{
	char cmd[128];
	int rc;

	snprintf(dir, sizeof dir, "/tmp/evapi-sqlite-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	rc = th_main(argc, argv, tests);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return rc;
}
