/*
 * test_db_sync.c: the blocking database calls (src/db_sync.c) on the
 * pool lane against a private PostgreSQL 15 cluster (tests/pg.c): the
 * same results and replies as on the loop, refused on the loop thread,
 * one connection per worker reused and closed when the app stops, the
 * query timeout, a transaction left open, a server that is not there.
 */
#include "harness.h"
#include "pg.h"

#include <stdlib.h>
#include <unistd.h>


/* ---- the app under test ------------------------------------------------- */

static void reply_rows(evapi_req *req, evapi_db_result *res)
{
	if (evapi_db_result_error(res))
		evapi_reply_db_error(req, res);
	else
		evapi_reply_json(req, 200, evapi_db_result_json(res));
	evapi_db_result_free(res);
}

/* GET /q?sql=...&p=...: one query, with at most one parameter */
static void route_q(evapi_req *req, void *arg)
{
	const char *p = evapi_req_query(req, "p");
	evapi_db_result *res;
	int rc;
	(void)arg;

	rc = evapi_req_db_query_sync(req, evapi_req_query(req, "sql"), p ? 1 : 0,
	                             &p, &res);
	if (!res) {
		evapi_reply_error(req, 500, evapi_strerror(rc));
		return;
	}
	CHECK_INT(rc, ==, evapi_db_result_error(res));
	reply_rows(req, res);
}

/* GET /loop: the blocking call from an inline route is refused */
static void route_loop(evapi_req *req, void *arg)
{
	evapi_db_result *res = (evapi_db_result *)&res; /* must be reset */
	int rc = evapi_req_db_query_sync(req, "SELECT 1", 0, NULL, &res);
	(void)arg;
	evapi_reply_json(req, 200, json_pack("{s:i,s:b}", "rc", rc, "null",
	                                     res == NULL));
}

/* GET /left-open: a serializable transaction begun in one call; the
 * next call on the same worker must run in a transaction of its own, at
 * the default level. */
static void route_left_open(evapi_req *req, void *arg)
{
	evapi_db_result *res;
	(void)arg;

	CHECK_INT(evapi_req_db_query_sync(req,
	                                  "BEGIN ISOLATION LEVEL SERIALIZABLE",
	                                  0, NULL, &res), ==, 0);
	evapi_db_result_free(res);
	evapi_req_db_query_sync(req,
	                        "SELECT current_setting('transaction_isolation') "
	                        "AS iso",
	                        0, NULL, &res);
	reply_rows(req, res);
}

/* GET /tx?a=..&b=..: inserts a and b into tx_t in one transaction */
static int insert_two(evapi_app *app, void *arg)
{
	evapi_req *req = arg;
	const char *names[2] = { evapi_req_query(req, "a"),
	                         evapi_req_query(req, "b") };
	evapi_db_result *res;
	int i;

	for (i = 0; i < 2; i++) {
		evapi_app_db_query_sync(app, "INSERT INTO tx_t VALUES ($1)", 1,
		                        &names[i], &res);
		evapi_db_result_free(res);
	}
	return 0;
}

static void route_tx(evapi_req *req, void *arg)
{
	int rc = evapi_req_db_transaction_sync(req, insert_two, req);
	(void)arg;
	evapi_reply_json(req, 200, json_pack("{s:i}", "rc", rc));
}

static size_t max_result; /* db_max_result_bytes when not 0 */

static void start_app(th_server *s, const char *url, int threads,
                      int query_ms)
{
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.db_url = url;
	cfg.pool_threads = threads;
	if (query_ms)
		cfg.db_query_timeout_ms = query_ms;
	if (max_result)
		cfg.db_max_result_bytes = max_result;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	if (!app)
		return;
	evapi_app_route(app, EVAPI_GET, "/q", EVAPI_POOL, route_q, NULL);
	evapi_app_route(app, EVAPI_GET, "/loop", EVAPI_INLINE, route_loop,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/left-open", EVAPI_POOL,
	                route_left_open, NULL);
	evapi_app_route(app, EVAPI_GET, "/tx", EVAPI_POOL, route_tx, NULL);
	th_server_start(s, app);
}

/* Percent-encodes everything but unreserved characters; new (free). */
static char *urlencode(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	for (; out && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c))
			*o++ = (char)c;
		else
			o += sprintf(o, "%%%02X", c);
	}
	if (out)
		*o = '\0';
	return out;
}

/* GET /q?sql=...&p=... */
static long q(int port, const char *sql, const char *p, th_resp *r)
{
	char path[1024], *esql = urlencode(sql), *ep = p ? urlencode(p)
	                                                   : NULL;
	snprintf(path, sizeof path, "/q?sql=%s%s%s", esql, ep ? "&p=" : "",
	         ep ? ep : "");
	free(esql);
	free(ep);
	return th_http(port, "GET", path, NULL, r);
}

static long evapi_conns(const th_pg *pg)
{
	return th_pg_int(pg, "SELECT count(*) FROM pg_stat_activity "
	                     "WHERE application_name = 'evapi'");
}

/* ---- tests --------------------------------------------------------------- */

static void test_query(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;

	if (!pg)
		return;
	start_app(&s, pg->url, 2, 0);
	CHECK_INT(q(s.port, "SELECT $1::int AS n, 'a''b' AS s, NULL AS z, "
	                    "1.5::float8 AS f, true AS b, '\\x0102'::bytea AS y",
	            "42", &r), ==, 200);
	CHECK_STR(r.body, "[{\"n\":42,\"s\":\"a'b\",\"z\":null,"
	                  "\"f\":1.5,\"b\":true,\"y\":\"AQI=\"}]");
	/* a parameter is a value, never SQL */
	CHECK_INT(q(s.port, "SELECT $1::text AS v", "x'; DROP TABLE t; --", &r),
	          ==, 200);
	CHECK_STR(r.body, "[{\"v\":\"x'; DROP TABLE t; --\"}]");
	/* errors answer as on the loop, the server's text kept out */
	CHECK_INT(q(s.port, "SELEC 1", NULL, &r), ==, 500);
	CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	CHECK_INT(q(s.port, "SELECT 1/0", NULL, &r), ==, 500);
	/* the worker's connection is fine after an error */
	CHECK_INT(q(s.port, "SELECT 2 AS two", NULL, &r), ==, 200);
	CHECK_STR(r.body, "[{\"two\":2}]");
	th_server_stop(&s);
}

static void test_loop_refused(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;
	char want[64];

	if (!pg)
		return;
	start_app(&s, pg->url, 1, 0);
	snprintf(want, sizeof want, "{\"rc\":%d,\"null\":true}",
	         EVAPI_ETHREAD);
	CHECK_INT(th_http(s.port, "GET", "/loop", NULL, &r), ==, 200);
	CHECK_STR(r.body, want);
	th_server_stop(&s);
}

/* Two workers, twenty queries: at most two connections (one per worker),
 * each reused; all closed once the app has stopped. */
static void test_reuse(void)
{
	const th_pg *pg = th_pg_shared();
	const char *paths[20];
	th_resp *r = calloc(20, sizeof *r);
	char *pids[20];
	th_server s;
	int i, j, distinct = 0;

	if (!pg || !r) {
		free(r);
		return;
	}
	start_app(&s, pg->url, 2, 0);
	for (i = 0; i < 20; i++)
		paths[i] = "/q?sql=SELECT%20pg_backend_pid()%20AS%20pid,"
		           "%20pg_sleep(0.02)";
	th_http_parallel(s.port, 20, paths, r);
	for (i = 0; i < 20; i++) {
		CHECK_INT(r[i].status, ==, 200);
		pids[i] = r[i].body;
		for (j = 0; j < i; j++)
			if (strcmp(pids[j], pids[i]) == 0)
				break;
		distinct += j == i;
	}
	CHECK_INT(distinct, >=, 1);
	CHECK_INT(distinct, <=, 2);
	CHECK_INT(evapi_conns(pg), <=, 2);
	th_server_stop(&s);
	/* the workers exited: their connections are closed */
	for (i = 0; i < 100 && evapi_conns(pg) != 0; i++)
		th_sleep_ms(30);
	CHECK_INT(evapi_conns(pg), ==, 0);
	free(r);
}

static void test_timeout(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;
	double t0;

	if (!pg)
		return;
	start_app(&s, pg->url, 1, 300);
	t0 = th_now();
	CHECK_INT(q(s.port, "SELECT pg_sleep(20)", NULL, &r), ==, 504);
	CHECK_DBL(th_now() - t0, <, 3.0);
	CHECK_STR(r.body, "{\"detail\":\"Database timed out\"}");
	/* the one worker's connection is usable again at once */
	CHECK_INT(q(s.port, "SELECT 1 AS one", NULL, &r), ==, 200);
	th_server_stop(&s);
}

static void test_left_open(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;

	if (!pg)
		return;
	start_app(&s, pg->url, 1, 0);
	CHECK_INT(th_http(s.port, "GET", "/left-open", NULL, &r), ==, 200);
	CHECK_STR(r.body, "[{\"iso\":\"read committed\"}]");
	th_server_stop(&s);
}

/* Both rows or neither: a unique violation in the second insert rolls
 * back the first. */
static void test_transaction(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;
	char want[32];

	if (!pg || th_pg_exec(pg, "DROP TABLE IF EXISTS tx_t; "
	                          "CREATE TABLE tx_t (name text UNIQUE)") != 0)
		return;
	start_app(&s, pg->url, 1, 0);
	CHECK_INT(th_http(s.port, "GET", "/tx?a=x&b=y", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"rc\":0}");
	CHECK_INT(th_http(s.port, "GET", "/tx?a=z&b=x", NULL, &r), ==, 200);
	snprintf(want, sizeof want, "{\"rc\":%d}", EVAPI_EDB);
	CHECK_STR(r.body, want);
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM tx_t"), ==, 2);
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM tx_t WHERE name = 'z'"),
	          ==, 0);
	/* the worker's connection is usable, outside any transaction */
	CHECK_INT(q(s.port, "SELECT 1 AS one", NULL, &r), ==, 200);
	th_server_stop(&s);
}

static void test_unavailable(void)
{
	char url[128];
	th_server s;
	th_resp r;

	snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres",
	         th_free_port());
	start_app(&s, url, 1, 0);
	CHECK_INT(q(s.port, "SELECT 1", NULL, &r), ==, 503);
	CHECK_STR(r.body, "{\"detail\":\"Database unavailable\"}");
	th_server_stop(&s);
}

typedef struct app_thread {
	evapi_app *app;
	int rc;
	char one[16];
} app_thread;

static void *app_thread_main(void *arg)
{
	app_thread *t = arg;
	evapi_db_result *res;

	t->rc = evapi_app_db_query_sync(t->app, "SELECT 1 AS one", 0, NULL,
	                                &res);
	snprintf(t->one, sizeof t->one, "%s",
	         evapi_db_result_value(res, 0, 0) ? evapi_db_result_value(res, 0, 0)
	                                          : "");
	evapi_db_result_free(res);
	return NULL;
}

/* An application thread of its own (not a worker) may query too; its
 * connection goes when the thread exits. */
static void test_app_thread(void)
{
	const th_pg *pg = th_pg_shared();
	app_thread t = {0};
	pthread_t th;
	th_server s;

	if (!pg)
		return;
	start_app(&s, pg->url, 1, 0);
	t.app = s.app;
	CHECK_INT(pthread_create(&th, NULL, app_thread_main, &t), ==, 0);
	pthread_join(th, NULL);
	CHECK_INT(t.rc, ==, 0);
	CHECK_STR(t.one, "1");
	th_server_stop(&s);
}

/* Over db_max_result_bytes: 500, stopped on the server, and the
 * worker's connection serves the next query. */
static void test_result_cap(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;
	char *pid;
	int i;

	if (!pg)
		return;
	max_result = 1000;
	start_app(&s, pg->url, 1, 0);
	max_result = 0;
	CHECK_INT(q(s.port, "SELECT pg_backend_pid() AS p", NULL, &r), ==, 200);
	pid = strdup(r.body);
	for (i = 0; i < 2; i++) {
		CHECK_INT(q(s.port, "SELECT repeat('x', 100) AS v FROM "
		                    "generate_series(1, 200000)",
		            NULL, &r), ==, 500);
		CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	}
	CHECK_CONTAINS(th_log(), "db_max_result_bytes (1000 bytes)");
	CHECK_INT(q(s.port, "SELECT n FROM generate_series(1, 3) n", NULL, &r),
	          ==, 200);
	CHECK_STR(r.body, "[{\"n\":1},{\"n\":2},{\"n\":3}]");
	CHECK_INT(q(s.port, "SELECT pg_backend_pid() AS p", NULL, &r), ==, 200);
	CHECK_STR(r.body, pid ? pid : "");
	free(pid);
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM pg_stat_activity "
	                        "WHERE application_name = 'evapi' AND "
	                        "state <> 'idle'"), ==, 0);
	th_server_stop(&s);
}

static const th_test tests[] = {
	{ "db_sync.query", test_query },
	{ "db_sync.loop_refused", test_loop_refused },
	{ "db_sync.reuse", test_reuse },
	{ "db_sync.timeout", test_timeout },
	{ "db_sync.left_open", test_left_open },
	{ "db_sync.transaction", test_transaction },
	{ "db_sync.unavailable", test_unavailable },
	{ "db_sync.app_thread", test_app_thread },
	{ "db_sync.result_cap", test_result_cap },
	{ NULL, NULL }
};

int main(int argc, char **argv)
{
	int rc = th_main(argc, argv, tests);
	th_pg_shared_free();
	return rc;
}
