/*
 * test_db.c: PostgreSQL on the loop (src/db.c) against a private
 * PostgreSQL 15 cluster (tests/pg.c), through real HTTP requests to an
 * in-process app whose inline routes query it. Faults are real: a server
 * that is not up, one stopped and started under load, queries past their
 * timeout, clients that leave mid-query; pg_stat_activity shows what the
 * server still runs.
 */
#include "harness.h"
#include "pg.h"

#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <unistd.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

static int cancelled;    /* continuations told EVAPI_ECANCELED */
static int continuations; /* every query continuation */

/* ---- a slow DNS name ------------------------------------------------------ */

/* libpq (and anything else in this process) resolves names through this
 * getaddrinfo, which the executable's own definition replaces: SLOW_NAME
 * takes SLOW_DNS_MS to resolve (to 127.0.0.1), and the calls for it are
 * counted, those on `dns_watch` (the app's loop thread) apart; TWO_NAME
 * has two addresses, ::1 (where nothing listens) first, then 127.0.0.1
 * (glibc frees such a chain entry by entry). */
#define SLOW_NAME "evapi-slow-dns.test"
#define TWO_NAME "evapi-two-addrs.test"
#define SLOW_DNS_MS 1500
static int dns_calls, dns_on_watch;
static pthread_t dns_watch;
static int dns_watching;

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
	typedef int (*gai_fn)(const char *, const char *,
	                      const struct addrinfo *, struct addrinfo **);
	static gai_fn real;

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	if (node && strcmp(node, TWO_NAME) == 0) {
		struct addrinfo *v6 = NULL, *v4 = NULL, *last;
		int rc = real("::1", service, hints, &v6);
		if (rc != 0)
			return real("127.0.0.1", service, hints, res);
		if ((rc = real("127.0.0.1", service, hints, &v4)) != 0) {
			freeaddrinfo(v6);
			return rc;
		}
		for (last = v6; last->ai_next; last = last->ai_next)
			;
		last->ai_next = v4;
		*res = v6;
		return 0;
	}
	if (node && strcmp(node, SLOW_NAME) == 0) {
		ADD(&dns_calls, 1);
		if (LOAD(&dns_watching) &&
		    pthread_equal(pthread_self(), dns_watch))
			ADD(&dns_on_watch, 1);
		usleep(SLOW_DNS_MS * 1000);
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}

/* ---- the app under test ------------------------------------------------- */

static void reply_result(evapi_req *req, int status, const evapi_db_result *res,
                         void *arg)
{
	json_t *rows;
	(void)arg;

	ADD(&continuations, 1);
	if (status == EVAPI_ECANCELED) {
		ADD(&cancelled, 1);
		return;
	}
	if (evapi_db_result_error(res)) {
		evapi_reply_db_error(req, res);
		return;
	}
	rows = evapi_db_result_json(res);
	evapi_reply_json(req, 200,
	                 json_pack("{s:o,s:I,s:i,s:i,s:s?,s:i}", "rows", rows,
	                           "affected",
	                           (json_int_t)evapi_db_result_affected(res),
	                           "ntuples", evapi_db_result_ntuples(res),
	                           "nfields", evapi_db_result_nfields(res),
	                           "first", evapi_db_result_value(res, 0, 0),
	                           "first_null",
	                           evapi_db_result_is_null(res, 0, 0)));
}

static void gather_done(evapi_req *req, int status, int n,
                        const evapi_db_result *const *res, void *arg);

/* POST /q {"sql": ["...", ...]}: the statements (no parameters) in one
 * gather; replies as /gather. */
static void gather_sqls(evapi_req *req, json_t *a)
{
	evapi_db_query qs[32];
	size_t i, n = json_array_size(a);
	int rc;

	if (n < 1 || n > 32) {
		evapi_reply_error(req, 400, "bad test request");
		return;
	}
	for (i = 0; i < n; i++) {
		qs[i].sql = json_string_value(json_array_get(a, i));
		qs[i].nparams = 0;
		qs[i].params = NULL;
	}
	rc = evapi_req_db_gather(req, (int)n, qs, gather_done, NULL);
	if (rc != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

static void route_ping(evapi_req *req, void *arg)
{
	(void)arg;
	evapi_reply_json(req, 200, json_pack("{s:b}", "pong", 1));
}

/* POST /q {"sql": "...", "params": ["x", null, ...]} */
static void route_q(evapi_req *req, void *arg)
{
	const char *params[8];
	json_t *body, *p;
	size_t i, n;
	int rc;
	(void)arg;

	if (evapi_req_json(req, &body) != 0)
		return;
	if (json_is_array(json_object_get(body, "sql"))) {
		gather_sqls(req, json_object_get(body, "sql"));
		return;
	}
	p = json_object_get(body, "params");
	n = json_array_size(p);
	if (n > 8 || !json_is_string(json_object_get(body, "sql"))) {
		evapi_reply_error(req, 400, "bad test request");
		return;
	}
	for (i = 0; i < n; i++)
		params[i] = json_string_value(json_array_get(p, i));
	rc = evapi_req_db_query(req,
	                        json_string_value(json_object_get(body, "sql")),
	                        (int)n, params, reply_result, NULL);
	if (rc != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

/* GET /sleep?s=0.5: a query that takes s seconds on the server */
static void route_sleep(evapi_req *req, void *arg)
{
	const char *s = evapi_req_query(req, "s");
	const char *params[1] = { s ? s : "0" };
	int rc;
	(void)arg;

	rc = evapi_req_db_query(req, "SELECT pg_sleep($1::float8) /* evapi-sleep */",
	                        1, params, reply_result, NULL);
	if (rc != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

static void route_one(evapi_req *req, void *arg)
{
	int rc;
	(void)arg;
	rc = evapi_req_db_query(req, "SELECT 1 AS one", 0, NULL, reply_result,
	                        NULL);
	if (rc != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

/* GET /fan?n=N: N queries at once from one request; replies when all
 * are back with how many succeeded. */
typedef struct fan {
	int left, ok;
} fan;

static void fan_done(evapi_req *req, int status, const evapi_db_result *res,
                     void *arg)
{
	fan *f = arg;
	if (status == 0 && !evapi_db_result_error(res) &&
	    evapi_db_result_ntuples(res) == 1)
		f->ok++;
	if (--f->left)
		return;
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:i}", "ok", f->ok));
	free(f);
}

static void route_fan(evapi_req *req, void *arg)
{
	long long n = 0;
	fan *f;
	int i;
	(void)arg;

	if (evapi_req_query_int(req, "n", &n) != 0 || n < 1 || n > 10000) {
		evapi_reply_error(req, 400, "bad n");
		return;
	}
	f = calloc(1, sizeof *f);
	f->left = (int)n;
	for (i = 0; i < (int)n; i++) {
		char v[16];
		const char *p[1] = { v };
		snprintf(v, sizeof v, "%d", i);
		if (evapi_req_db_query(req, "SELECT $1::int AS i", 1, p, fan_done,
		                       f) != 0) {
			evapi_reply_error(req, 500, "query refused");
			f->left -= (int)n - i; /* those never started */
			if (!f->left)
				free(f);
			return;
		}
	}
}

/* GET /gather?n=N&s=S: N queries in one gather, query i sleeping S
 * seconds (S*(N-i) with &desc=1, so the first ends last); replies with
 * each query's i and error, in query order. */
static int gathered;     /* gather continuations */
static int gather_cancelled;

static void gather_done(evapi_req *req, int status, int n,
                        const evapi_db_result *const *res, void *arg)
{
	json_t *out;
	int i;
	(void)arg;

	ADD(&gathered, 1);
	if (status == EVAPI_ECANCELED) {
		ADD(&gather_cancelled, 1);
		for (i = 0; i < n; i++)
			CHECK_INT(evapi_db_result_error(res[i]), ==,
			          EVAPI_ECANCELED);
		return;
	}
	out = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(
		        out, evapi_db_result_error(res[i])
		                     ? json_string(evapi_strerror(
		                               evapi_db_result_error(res[i])))
		                     : evapi_db_result_json(res[i]));
	evapi_reply_json(req, 200, out);
}

static void route_gather(evapi_req *req, void *arg)
{
	static char vals[16][2][32];
	static const char *params[16][2];
	evapi_db_query qs[16];
	const char *s = evapi_req_query(req, "s");
	const char *bad = evapi_req_query(req, "bad");
	long long n = 0, desc = 0;
	int i, rc;
	(void)arg;

	evapi_req_query_int(req, "desc", &desc);
	if (evapi_req_query_int(req, "n", &n) != 0 || n < 1 || n > 16) {
		evapi_reply_error(req, 400, "bad n");
		return;
	}
	for (i = 0; i < (int)n; i++) {
		snprintf(vals[i][0], sizeof vals[i][0], "%d", i);
		snprintf(vals[i][1], sizeof vals[i][1], "%g",
		         (s ? atof(s) : 0) * (desc ? (double)(n - i) : 1.0));
		params[i][0] = vals[i][0];
		params[i][1] = vals[i][1];
		qs[i].sql = bad && i == 1
		                    ? "SELECT * FROM no_such_gather_table"
		                    : "SELECT i FROM (SELECT $1::int AS i, "
		                      "pg_sleep($2::float8) /* evapi-gather */) t";
		qs[i].nparams = bad && i == 1 ? 0 : 2;
		qs[i].params = params[i];
	}
	/* the arguments are copied: the arrays may change at once */
	rc = evapi_req_db_gather(req, (int)n, qs, gather_done, NULL);
	memset(vals, 0, sizeof vals);
	if (rc != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

/* GET /pool_q on the pool lane: the loop-only call is refused there */
static void route_pool_q(evapi_req *req, void *arg)
{
	int rc = evapi_req_db_query(req, "SELECT 1", 0, NULL, reply_result, NULL);
	(void)arg;
	evapi_reply_json(req, 200, json_pack("{s:i}", "rc", rc));
}

/* GET /tx?a=..&b=..[&sleep=S]: in one transaction pinned to a connection,
 * insert a, (sleep), insert b; commit, or roll back when b fails. Replies
 * with both statements' transaction ids. */
typedef struct txr {
	evapi_db_tx *tx;
	int step;
	json_t *ids;
} txr;

static void tx_step(evapi_req *req, int status, const evapi_db_result *res,
                    void *arg)
{
	txr *t = arg;
	const char *sql = NULL, *p[1] = { NULL };
	int rc = 0;

	if (status != 0) {
		ADD(&cancelled, 1);
		json_decref(t->ids);
		free(t);
		return;
	}
	if (t->step == 4) { /* COMMIT or ROLLBACK done */
		evapi_reply_json(req, evapi_db_result_error(res) ? 500 : 200,
		                 t->ids);
		free(t);
		return;
	}
	if (evapi_db_result_error(res)) {
		if (t->step == 0) { /* BEGIN failed: the transaction is over */
			evapi_reply_db_error(req, res);
			json_decref(t->ids);
			free(t);
			return;
		}
		t->step = 4;
		json_array_append_new(t->ids, json_string("rolled back"));
		rc = evapi_db_tx_rollback(t->tx, tx_step, t);
	} else {
		if ((t->step == 1 || t->step == 3) &&
		    evapi_db_result_ntuples(res) == 1)
			json_array_append_new(
				t->ids, json_string(evapi_db_result_value(res, 0, 0)));
		switch (t->step++) {
		case 0:
			sql = "INSERT INTO tx_t VALUES ($1) RETURNING txid_current()";
			p[0] = evapi_req_query(req, "a");
			break;
		case 1:
			sql = "SELECT pg_sleep($1::float8) /* evapi-tx-sleep */";
			p[0] = evapi_req_query(req, "sleep");
			if (!p[0])
				p[0] = "0";
			break;
		case 2:
			sql = "INSERT INTO tx_t VALUES ($1) RETURNING txid_current()";
			p[0] = evapi_req_query(req, "b");
			break;
		default:
			t->step = 4;
			rc = evapi_db_tx_commit(t->tx, tx_step, t);
		}
		if (sql)
			rc = evapi_db_tx_query(t->tx, sql, 1, p, tx_step, t);
	}
	if (rc != 0) {
		evapi_reply_error(req, 500, evapi_strerror(rc));
		json_decref(t->ids);
		free(t);
	}
}

static void route_tx(evapi_req *req, void *arg)
{
	txr *t = calloc(1, sizeof *t);
	int rc;
	(void)arg;

	t->ids = json_array();
	if ((rc = evapi_req_db_begin(req, &t->tx, tx_step, t)) != 0) {
		evapi_reply_error(req, 500, evapi_strerror(rc));
		json_decref(t->ids);
		free(t);
	}
}

/* cfg NULL: the defaults of th_config with the url */
static void start_app(th_server *s, const char *url, evapi_config *cfg)
{
	evapi_config def;
	evapi_app *app;

	if (!cfg) {
		th_config(&def);
		cfg = &def;
	}
	cfg->db_url = url;
	app = evapi_app_new(cfg);
	CHECK(app != NULL);
	if (!app)
		return;
	evapi_app_route(app, EVAPI_POST, "/q", EVAPI_INLINE, route_q, NULL);
	evapi_app_route(app, EVAPI_GET, "/sleep", EVAPI_INLINE, route_sleep,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/one", EVAPI_INLINE, route_one, NULL);
	evapi_app_route(app, EVAPI_GET, "/ping", EVAPI_INLINE, route_ping,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/fan", EVAPI_INLINE, route_fan, NULL);
	evapi_app_route(app, EVAPI_GET, "/gather", EVAPI_INLINE, route_gather,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/tx", EVAPI_INLINE, route_tx, NULL);
	th_server_start(s, app);
}

/* POSTs {"sql": sql, "params": params} (params a JSON array text). */
static long q(int port, const char *sql, const char *params, th_resp *out)
{
	json_t *b = json_pack("{s:s}", "sql", sql);
	char *text;
	long st;

	json_object_set_new(b, "params",
	                    params ? json_loads(params, 0, NULL) : json_array());
	text = json_dumps(b, JSON_COMPACT);
	st = th_http(port, "POST", "/q", text, out);
	free(text);
	json_decref(b);
	return st;
}

static json_t *body_json(const th_resp *r)
{
	json_t *j = json_loads(r->body, 0, NULL);
	if (!j)
		TH_FAIL_AT("body is not JSON: %s", r->body);
	return j;
}

/* The first row of a 200 reply to q(). New reference or NULL. */
static json_t *first_row(const th_resp *r)
{
	json_t *j = body_json(r), *row;
	if (!j)
		return NULL;
	row = json_incref(json_array_get(json_object_get(j, "rows"), 0));
	json_decref(j);
	return row;
}

/* Backends other than the asker's running a query whose text has `tag`. */
static long active_with(const th_pg *pg, const char *tag)
{
	char sql[256];
	snprintf(sql, sizeof sql,
	         "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
	         "AND pid <> pg_backend_pid() AND query LIKE '%%%s%%'", tag);
	return th_pg_int(pg, sql);
}

/* Waits until `n` queries tagged `tag` run on the server; returns how
 * many run then. */
static long wait_active(const th_pg *pg, const char *tag, long n, double secs)
{
	double until = th_now() + secs;
	long got;
	while ((got = active_with(pg, tag)) < n && th_now() < until)
		th_sleep_ms(20);
	return got;
}

static int wait_inactive(const th_pg *pg, const char *tag, double secs)
{
	double until = th_now() + secs;
	while (th_now() < until) {
		if (active_with(pg, tag) == 0)
			return 1;
		th_sleep_ms(50);
	}
	return 0;
}

/* ---- tests --------------------------------------------------------------- */

static void test_types(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;
	json_t *row;

	if (!pg)
		return;
	start_app(&s, pg->url, NULL);
	CHECK_INT(q(s.port,
	            "SELECT 32767::int2 AS i2, 2147483647::int4 AS i4, "
	            "9007199254740993::int8 AS i8, 1.5::float4 AS f4, "
	            "2.25::float8 AS f8, 'NaN'::float8 AS fnan, true AS bt, "
	            "false AS bf, 'text'::text AS t, 'vc'::varchar AS vc, "
	            "'{\"a\":[1,2]}'::json AS j, '{\"k\":true}'::jsonb AS jb, "
	            "12.345678901234567890::numeric AS n, "
	            "'2024-05-01 12:30:00.5'::timestamp AS ts, "
	            "'2024-05-01 12:30:00+00'::timestamptz AS tz, "
	            "'2024-05-01'::date AS d, '\\x00ff10'::bytea AS by, "
	            "NULL::int AS nul, $1::int4 + 1 AS p, $2::text IS NULL AS pn",
	            "[\"41\", null]", &r), ==, 200);
	row = first_row(&r);
	CHECK(row != NULL);
	if (row) {
		json_t *j = json_object_get(row, "j");
		CHECK_INT(json_integer_value(json_object_get(row, "i2")), ==, 32767);
		CHECK_INT(json_integer_value(json_object_get(row, "i4")), ==,
		          2147483647);
		CHECK(json_is_integer(json_object_get(row, "i8")));
		CHECK_INT(json_integer_value(json_object_get(row, "i8")), ==,
		          9007199254740993LL);
		CHECK(json_is_real(json_object_get(row, "f4")));
		CHECK_DBL(json_real_value(json_object_get(row, "f4")), ==, 1.5);
		CHECK_DBL(json_real_value(json_object_get(row, "f8")), ==, 2.25);
		CHECK_STR(json_string_value(json_object_get(row, "fnan")), "NaN");
		CHECK(json_is_true(json_object_get(row, "bt")));
		CHECK(json_is_false(json_object_get(row, "bf")));
		CHECK_STR(json_string_value(json_object_get(row, "t")), "text");
		CHECK_STR(json_string_value(json_object_get(row, "vc")), "vc");
		CHECK(json_is_array(json_object_get(j, "a")));
		CHECK_INT(json_integer_value(json_array_get(json_object_get(j, "a"),
		                                            1)), ==, 2);
		CHECK(json_is_true(json_object_get(json_object_get(row, "jb"),
		                                   "k")));
		CHECK_STR(json_string_value(json_object_get(row, "n")),
		          "12.345678901234567890");
		CHECK_STR(json_string_value(json_object_get(row, "ts")),
		          "2024-05-01T12:30:00.5");
		CHECK_STR(json_string_value(json_object_get(row, "tz")),
		          "2024-05-01T12:30:00+00:00");
		CHECK_STR(json_string_value(json_object_get(row, "d")),
		          "2024-05-01");
		CHECK_STR(json_string_value(json_object_get(row, "by")), "AP8Q");
		CHECK(json_is_null(json_object_get(row, "nul")));
		CHECK(json_object_get(row, "nul") != NULL);
		CHECK_INT(json_integer_value(json_object_get(row, "p")), ==, 42);
		CHECK(json_is_true(json_object_get(row, "pn")));
		json_decref(row);
	}
	/* the accessors: text, NULL, counts */
	CHECK_INT(q(s.port, "SELECT NULL::text AS a, 'x' AS b UNION ALL "
	                    "SELECT 'y', NULL", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"ntuples\":2");
	CHECK_CONTAINS(r.body, "\"nfields\":2");
	CHECK_CONTAINS(r.body, "\"first_null\":1");
	CHECK_CONTAINS(r.body, "\"first\":null");
	th_server_stop(&s);

	/* a server default DateStyle other than ISO is set to ISO on
	 * connecting, so dates still map the same */
	{
		char url[320];
		snprintf(url, sizeof url, "%s?options=-c%%20DateStyle%%3DSQL",
		         pg->url);
		start_app(&s, url, NULL);
		CHECK_INT(q(s.port, "SELECT '2024-05-01 12:30:00'::timestamp AS ts",
		            NULL, &r), ==, 200);
		CHECK_CONTAINS(r.body, "\"ts\":\"2024-05-01T12:30:00\"");
		th_server_stop(&s);
	}
}

static void test_injection(void)
{
	const th_pg *pg = th_pg_shared();
	const char *evil = "x'); DROP TABLE inj; --";
	char params[128];
	th_server s;
	th_resp r;
	json_t *row;

	if (!pg)
		return;
	CHECK_INT(th_pg_exec(pg, "DROP TABLE IF EXISTS inj; "
	                         "CREATE TABLE inj (name text)"), ==, 0);
	start_app(&s, pg->url, NULL);
	snprintf(params, sizeof params, "[\"x'); DROP TABLE inj; --\"]");
	CHECK_INT(q(s.port, "INSERT INTO inj (name) VALUES ($1)", params, &r),
	          ==, 200);
	CHECK_CONTAINS(r.body, "\"affected\":1");
	CHECK_INT(q(s.port, "SELECT name FROM inj", NULL, &r), ==, 200);
	row = first_row(&r);
	CHECK_STR(json_string_value(json_object_get(row, "name")), evil);
	json_decref(row);
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM inj"), ==, 1);
	th_server_stop(&s);
}

static void test_sql_error(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;

	if (!pg)
		return;
	start_app(&s, pg->url, NULL);
	CHECK_INT(q(s.port, "SELECT * FROM no_such_table_xyz", NULL, &r), ==,
	          500);
	CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	CHECK(!strstr(r.body, "no_such_table"));
	CHECK_CONTAINS(th_log(), "42P01");
	CHECK_CONTAINS(th_log(), "no_such_table_xyz");
	/* a syntax error, and the connection stays usable */
	CHECK_INT(q(s.port, "SELEC 1", NULL, &r), ==, 500);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 200);
	/* COPY is refused (its connection is dropped), and the next query
	 * gets another */
	CHECK_INT(q(s.port, "COPY (SELECT 1) TO STDOUT", NULL, &r), ==, 500);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 200);
	th_server_stop(&s);
}

static void test_unique(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;

	if (!pg)
		return;
	CHECK_INT(th_pg_exec(pg, "DROP TABLE IF EXISTS uniq; "
	                         "CREATE TABLE uniq (id int PRIMARY KEY)"), ==, 0);
	start_app(&s, pg->url, NULL);
	CHECK_INT(q(s.port, "INSERT INTO uniq VALUES ($1)", "[\"7\"]", &r), ==,
	          200);
	CHECK_INT(q(s.port, "INSERT INTO uniq VALUES ($1)", "[\"7\"]", &r), ==,
	          409);
	CHECK_STR(r.body, "{\"detail\":\"Conflict\"}");
	CHECK_CONTAINS(th_log(), "23505");
	th_server_stop(&s);
}

static void test_query_timeout(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_server s;
	th_resp r;
	double t0;

	if (!pg)
		return;
	th_config(&cfg);
	cfg.db_max_connections = 1;
	cfg.db_query_timeout_ms = 300;
	start_app(&s, pg->url, &cfg);
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/sleep?s=20", NULL, &r), ==, 504);
	CHECK_DBL(th_now() - t0, <, 3.0);
	CHECK_STR(r.body, "{\"detail\":\"Database timed out\"}");
	CHECK(wait_inactive(pg, "evapi-sleep", 3.0));
	/* the one connection comes back clean */
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 200);
	th_server_stop(&s);

	/* the request's deadline before the query's timeout: the request's
	 * 504, and the query is cancelled on the server all the same */
	th_config(&cfg);
	cfg.request_timeout_ms = 300;
	start_app(&s, pg->url, &cfg);
	CHECK_INT(th_http(s.port, "GET", "/sleep?s=20", NULL, &r), ==, 504);
	CHECK_STR(r.body, "{\"detail\":\"Request deadline exceeded\"}");
	CHECK(wait_inactive(pg, "evapi-sleep", 3.0));
	th_server_stop(&s);
}

static void test_client_gone(void)
{
	const th_pg *pg = th_pg_shared();
	const char *pid = "SELECT pg_backend_pid() AS pid";
	evapi_config cfg;
	th_server s;
	th_resp r;
	char before[128];
	double t0;

	if (!pg)
		return;
	th_config(&cfg);
	cfg.db_max_connections = 1;
	cfg.db_query_timeout_ms = 30000;
	start_app(&s, pg->url, &cfg);
	CHECK_INT(q(s.port, pid, NULL, &r), ==, 200);
	snprintf(before, sizeof before, "%.100s", r.body);
	__atomic_store_n(&cancelled, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&continuations, 0, __ATOMIC_SEQ_CST);
	th_send_and_close(s.port,
	                  "GET /sleep?s=20 HTTP/1.1\r\nHost: x\r\n\r\n", 500);
	CHECK(wait_inactive(pg, "evapi-sleep", 5.0));
	th_sleep_ms(100);
	CHECK_INT(LOAD(&cancelled), ==, 1);
	CHECK_INT(LOAD(&continuations), ==, 1);
	/* the same connection serves the next query at once */
	t0 = th_now();
	CHECK_INT(q(s.port, pid, NULL, &r), ==, 200);
	CHECK_DBL(th_now() - t0, <, 2.0);
	CHECK_STR(r.body, before);
	th_server_stop(&s);
	CHECK_INT(LOAD(&continuations), ==, 2);
}

static void test_shutdown_cut(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_server s;
	int fd;

	if (!pg)
		return;
	th_config(&cfg);
	cfg.shutdown_grace_ms = 200;
	start_app(&s, pg->url, &cfg);
	__atomic_store_n(&cancelled, 0, __ATOMIC_SEQ_CST);
	fd = th_connect_send(s.port, "GET /sleep?s=20 HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(fd >= 0);
	CHECK_INT(wait_active(pg, "evapi-sleep", 1, 5.0), ==, 1);
	/* the cut ends the query on the server, not only the request */
	th_server_stop(&s);
	CHECK_INT(LOAD(&cancelled), ==, 1);
	CHECK(wait_inactive(pg, "evapi-sleep", 3.0));
	if (fd >= 0)
		close(fd);
}

static void test_busy(void)
{
	const th_pg *pg = th_pg_shared();
	const char *paths[3] = { "/sleep?s=0.6", "/sleep?s=0.6", "/sleep?s=0.6" };
	evapi_config cfg;
	th_server s;
	th_resp r[3];
	int i, ok = 0, busy = 0;

	if (!pg)
		return;
	th_config(&cfg);
	cfg.db_max_connections = 1;
	cfg.db_queue_max = 1;
	start_app(&s, pg->url, &cfg);
	/* the connection exists before the burst */
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, r), ==, 200);
	th_http_parallel(s.port, 3, paths, r);
	for (i = 0; i < 3; i++) {
		if (r[i].status == 200)
			ok++;
		if (r[i].status == 503) {
			busy++;
			CHECK_STR(r[i].body, "{\"detail\":\"Database busy\"}");
			CHECK_CONTAINS(r[i].headers, "Retry-After: 1");
		}
	}
	CHECK_INT(ok, ==, 2);
	CHECK_INT(busy, ==, 1);
	th_server_stop(&s);

	/* a wait longer than the acquire timeout: 503 too */
	th_config(&cfg);
	cfg.db_max_connections = 1;
	cfg.db_acquire_timeout_ms = 200;
	start_app(&s, pg->url, &cfg);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, r), ==, 200);
	th_http_parallel(s.port, 2, paths, r);
	CHECK_INT(r[0].status + r[1].status, ==, 200 + 503);
	th_server_stop(&s);
}

static void test_parallel(void)
{
	const th_pg *pg = th_pg_shared();
	const char *paths[8];
	th_server s;
	th_resp r[8];
	double t0, took;
	int i;

	if (!pg)
		return;
	for (i = 0; i < 8; i++)
		paths[i] = "/sleep?s=0.5";
	start_app(&s, pg->url, NULL);
	t0 = th_now();
	th_http_parallel(s.port, 8, paths, r);
	took = th_now() - t0;
	for (i = 0; i < 8; i++)
		CHECK_INT(r[i].status, ==, 200);
	/* serialised would be 4 s; connecting eight included */
	CHECK_DBL(took, >=, 0.5);
	CHECK_DBL(took, <, 2.0);
	printf("  8 x pg_sleep(0.5) from inline routes: %.2f s\n", took);
	/* a thousand at once from one request: 8 connections, the rest
	 * queued, every one answered */
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/fan?n=1000", NULL, r), ==, 200);
	took = th_now() - t0;
	CHECK_STR(r[0].body, "{\"ok\":1000}");
	printf("  1000 queries fanned out over 8 connections: %.3f s\n", took);
	th_server_stop(&s);
}

static void test_rollback(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_server s;
	th_resp r;

	if (!pg)
		return;
	CHECK_INT(th_pg_exec(pg, "DROP TABLE IF EXISTS rb; "
	                         "CREATE TABLE rb (id int)"), ==, 0);
	th_config(&cfg);
	cfg.db_max_connections = 1;
	cfg.log_level = EVAPI_LOG_DEBUG;
	start_app(&s, pg->url, &cfg);
	/* server notices go to the app's log */
	CHECK_INT(q(s.port, "DO $$BEGIN RAISE NOTICE 'evapi-notice'; END$$", NULL,
	            &r), ==, 200);
	CHECK_CONTAINS(th_log(), "database: NOTICE:  evapi-notice");
	/* a query that leaves a transaction open: rolled back before the
	 * connection serves the next one, whose insert then commits */
	CHECK_INT(q(s.port, "BEGIN", NULL, &r), ==, 200);
	CHECK_INT(q(s.port, "INSERT INTO rb VALUES (1)", NULL, &r), ==, 200);
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM rb"), ==, 1);
	th_server_stop(&s);
}

static void test_statement_cache(void)
{
	const th_pg *pg = th_pg_shared();
	const char *count = "SELECT count(*)::int AS n FROM pg_prepared_statements";
	static const int sizes[3] = { 0, 2, 100 }, kept[3] = { 0, 2, 3 };
	evapi_config cfg;
	th_server s;
	th_resp r;
	char want[64];
	int i;

	if (!pg)
		return;
	for (i = 0; i < 3; i++) {
		th_config(&cfg);
		cfg.db_max_connections = 1;
		cfg.db_statement_cache = sizes[i];
		start_app(&s, pg->url, &cfg);
		CHECK_INT(q(s.port, "SELECT 1", NULL, &r), ==, 200);
		CHECK_INT(q(s.port, "SELECT 2", NULL, &r), ==, 200);
		CHECK_INT(q(s.port, "SELECT 2", NULL, &r), ==, 200);
		/* the count is prepared too; with room for 2, "SELECT 1" was
		 * evicted (DEALLOCATE) to make room for it */
		snprintf(want, sizeof want, "\"rows\":[{\"n\":%d}]", kept[i]);
		CHECK_INT(q(s.port, count, NULL, &r), ==, 200);
		CHECK_CONTAINS(r.body, want);
		CHECK_INT(q(s.port, count, NULL, &r), ==, 200);
		CHECK_CONTAINS(r.body, want);
		th_server_stop(&s);
	}
}

static int migrated;

static void migration_done(evapi_app *app, const evapi_db_result *res,
                           void *arg)
{
	(void)app;
	(void)arg;
	__atomic_store_n(&migrated, evapi_db_result_error(res) ? -1 : 1,
	                 __ATOMIC_SEQ_CST);
}

static int startup(evapi_app *app, void *arg)
{
	(void)arg;
	return evapi_app_db_query(app, "CREATE TABLE IF NOT EXISTS migrated "
	                               "(id int)", 0, NULL, migration_done, NULL);
}

static void test_app_query(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	evapi_app *app;
	th_server s;
	th_resp r;

	if (!pg)
		return;
	th_pg_exec(pg, "DROP TABLE IF EXISTS migrated");
	th_config(&cfg);
	cfg.db_url = pg->url;
	cfg.db_max_connections = 1; /* in order: the migration first */
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_POST, "/q", EVAPI_INLINE, route_q, NULL);
	evapi_app_route(app, EVAPI_GET, "/pool_q", EVAPI_POOL, route_pool_q,
	                NULL);
	evapi_app_on_startup(app, startup, NULL);
	th_server_start(&s, app);
	CHECK_INT(q(s.port, "SELECT count(*)::int AS n FROM migrated", NULL, &r),
	          ==, 200);
	CHECK_INT(LOAD(&migrated), ==, 1);
	/* refused off the loop, the continuation never runs */
	__atomic_store_n(&continuations, 0, __ATOMIC_SEQ_CST);
	CHECK_INT(th_http(s.port, "GET", "/pool_q", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"rc\":-8}"); /* EVAPI_ETHREAD */
	th_server_stop(&s);
	CHECK_INT(LOAD(&continuations), ==, 0);

	/* without a database: refused, and the callback never runs */
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_db_query(app, "SELECT 1", 0, NULL, migration_done,
	                             NULL), ==, EVAPI_ESTATE);
	evapi_app_free(app);
	/* a URL libpq cannot read: the app is not made */
	th_config(&cfg);
	cfg.db_url = "postgresql://[bad";
	CHECK(evapi_app_new(&cfg) == NULL);
}

/* Polls GET /one until it answers 200 (the pool reconnected): 1, or 0
 * after 10 s. */
static int recovers(int port, th_resp *r)
{
	double until = th_now() + 10;
	while (th_now() < until) {
		if (th_http(port, "GET", "/one", NULL, r) == 200)
			return 1;
		th_sleep_ms(100);
	}
	return 0;
}

/* A cluster of the test's own, up or not: 0, or nonzero when the test
 * ends here (skipped or failed). */
static int own_pg(th_pg *pg, int up)
{
	char why[256];
	int rc = up ? th_pg_start(pg, why, sizeof why)
	            : th_pg_init(pg, why, sizeof why);
	if (rc == -1)
		TH_SKIP("%s", why);
	else
		CHECK_INT(rc, ==, 0);
	return rc;
}

static void test_down_at_start(void)
{
	th_pg pg;
	th_server s;
	th_resp r;

	if (own_pg(&pg, 0) != 0)
		return;
	start_app(&s, pg.url, NULL);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 503);
	CHECK_STR(r.body, "{\"detail\":\"Database unavailable\"}");
	CHECK_CONTAINS(r.headers, "Retry-After: 1");
	CHECK_CONTAINS(th_log(), "database unavailable");
	CHECK_INT(th_pg_up(&pg), ==, 0);
	CHECK(recovers(s.port, &r));
	CHECK_CONTAINS(th_log(), "database reachable again");
	th_server_stop(&s);
	th_pg_free(&pg);
}

typedef struct burst {
	int port;
	th_resp r[8];
} burst;

static void *burst_main(void *arg)
{
	burst *b = arg;
	const char *paths[8];
	int i;
	for (i = 0; i < 8; i++)
		paths[i] = "/sleep?s=3";
	th_http_parallel(b->port, 8, paths, b->r);
	return NULL;
}

static void test_restart(void)
{
	th_pg pg;
	th_server s;
	th_resp r;
	burst *b;
	pthread_t t;
	double t0;
	int i;

	if (own_pg(&pg, 1) != 0)
		return;
	b = calloc(1, sizeof *b);
	start_app(&s, pg.url, NULL);
	b->port = s.port;
	pthread_create(&t, NULL, burst_main, b);
	CHECK_INT(wait_active(&pg, "evapi-sleep", 8, 5.0), ==, 8);
	t0 = th_now();
	th_pg_down(&pg);
	pthread_join(t, NULL);
	/* every in-flight query failed cleanly, at once */
	for (i = 0; i < 8; i++) {
		CHECK_INT(b->r[i].status, ==, 503);
		CHECK_STR(b->r[i].body, "{\"detail\":\"Database unavailable\"}");
	}
	CHECK_DBL(th_now() - t0, <, 2.5);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 503);
	CHECK_INT(th_pg_up(&pg), ==, 0);
	CHECK(recovers(s.port, &r));
	/* the pool refills: eight at once again */
	for (i = 0; i < 8; i++)
		memset(&b->r[i], 0, sizeof b->r[i]);
	{
		const char *paths[8];
		for (i = 0; i < 8; i++)
			paths[i] = "/sleep?s=0.2";
		th_http_parallel(s.port, 8, paths, b->r);
		for (i = 0; i < 8; i++)
			CHECK_INT(b->r[i].status, ==, 200);
	}
	th_server_stop(&s);
	th_pg_free(&pg);
	free(b);
}

/* LISTEN/NOTIFY: notifications reach the loop; after a server restart
 * the listener reconnects and listens again. */
static pthread_mutex_t note_mu = PTHREAD_MUTEX_INITIALIZER;
static int notes;
static char last_note[64];

static void on_note(evapi_app *app, const char *channel, const char *payload,
                    void *arg)
{
	(void)app;
	(void)arg;
	pthread_mutex_lock(&note_mu);
	notes++;
	snprintf(last_note, sizeof last_note, "%s:%s", channel, payload);
	pthread_mutex_unlock(&note_mu);
}

static int listen_hook(evapi_app *app, void *arg)
{
	(void)arg;
	return evapi_app_db_listen(app, "evapi_news", on_note, NULL);
}

/* NOTIFY until the listener reports `want` (the server may not have
 * seen the LISTEN yet); 1 when it did within `secs`. */
static int notified(const th_pg *pg, const char *payload, double secs)
{
	double until = th_now() + secs;
	char sql[128], want[96];
	int ok = 0;

	snprintf(sql, sizeof sql, "NOTIFY evapi_news, '%s'", payload);
	snprintf(want, sizeof want, "evapi_news:%s", payload);
	while (!ok && th_now() < until) {
		th_pg_exec(pg, sql);
		th_sleep_ms(100);
		pthread_mutex_lock(&note_mu);
		ok = strcmp(last_note, want) == 0;
		pthread_mutex_unlock(&note_mu);
	}
	return ok;
}

static void test_listen(void)
{
	evapi_config cfg;
	evapi_app *app;
	th_pg pg;
	th_server s;

	if (own_pg(&pg, 1) != 0)
		return;
	th_config(&cfg);
	cfg.db_url = pg.url;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	CHECK_INT(evapi_app_db_listen(app, "bad name", on_note, NULL), ==,
	          EVAPI_EINVAL);
	evapi_app_on_startup(app, listen_hook, NULL);
	th_server_start(&s, app);
	CHECK(notified(&pg, "one", 5.0));
	th_pg_down(&pg);
	CHECK_INT(th_pg_up(&pg), ==, 0);
	CHECK(notified(&pg, "two", 10.0));
	CHECK_CONTAINS(th_log(), "database listener down");
	th_server_stop(&s);
	th_pg_free(&pg);
}

/* Statements of one transaction share its id and its connection; a
 * failed one rolls back the rest; a client that leaves mid-transaction
 * gets it cancelled and rolled back, and the connection comes back. */
static void test_transaction(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_server s;
	th_resp r;
	json_t *ids;

	if (!pg || th_pg_exec(pg, "DROP TABLE IF EXISTS tx_t; "
	                          "CREATE TABLE tx_t (name text UNIQUE)") != 0)
		return;
	th_config(&cfg);
	cfg.db_max_connections = 2;
	start_app(&s, pg->url, &cfg);
	CHECK_INT(th_http(s.port, "GET", "/tx?a=x&b=y", NULL, &r), ==, 200);
	ids = body_json(&r);
	CHECK_INT(json_array_size(ids), ==, 2);
	CHECK_STR(json_string_value(json_array_get(ids, 0)),
	          json_string_value(json_array_get(ids, 1)));
	json_decref(ids);
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM tx_t"), ==, 2);
	/* b violates UNIQUE: a is rolled back with it */
	CHECK_INT(th_http(s.port, "GET", "/tx?a=z&b=x", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "rolled back");
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM tx_t WHERE name = 'z'"),
	          ==, 0);
	/* the client leaves while the transaction sleeps */
	cancelled = 0;
	th_send_and_close(s.port,
	                  "GET /tx?a=w&b=v&sleep=20 HTTP/1.1\r\nHost: x\r\n\r\n",
	                  300);
	CHECK(wait_inactive(pg, "evapi-tx-sleep", 3.0));
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM tx_t WHERE name = 'w'"),
	          ==, 0);
	CHECK_INT(LOAD(&cancelled), ==, 1);
	/* both connections serve again, none left in a transaction */
	CHECK_INT(th_http(s.port, "GET", "/tx?a=u&b=t", NULL, &r), ==, 200);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 200);
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM pg_stat_activity WHERE "
	                        "state LIKE 'idle in transaction%'"), ==, 0);
	th_server_stop(&s);
}

/* A result over db_max_result_bytes fails with 500 (the reason in the
 * log), is stopped on the server, and its connection serves the next
 * query; results under the cap arrive whole. */
static void test_result_cap(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_server s;
	th_resp r;
	json_t *j, *row;
	long long pid;
	int i;

	if (!pg)
		return;
	th_config(&cfg);
	cfg.db_max_connections = 1;
	cfg.db_max_result_bytes = 1000;
	start_app(&s, pg->url, &cfg);
	CHECK_INT(q(s.port, "SELECT pg_backend_pid() AS p", NULL, &r), ==, 200);
	row = first_row(&r);
	pid = json_integer_value(json_object_get(row, "p"));
	json_decref(row);
	for (i = 0; i < 2; i++) {
		CHECK_INT(q(s.port,
		            "SELECT repeat('x', 100) AS v "
		            "FROM generate_series(1, 200000)",
		            NULL, &r), ==, 500);
		CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	}
	CHECK_CONTAINS(th_log(), "db_max_result_bytes (1000 bytes)");
	/* 9 rows of 100 bytes: under the cap, all of them, with the count */
	CHECK_INT(q(s.port,
	            "SELECT repeat('y', 100) AS v, n FROM generate_series(1, 9) n",
	            NULL, &r), ==, 200);
	j = body_json(&r);
	CHECK_INT(json_array_size(json_object_get(j, "rows")), ==, 9);
	CHECK_INT(json_integer_value(json_object_get(j, "affected")), ==, 9);
	CHECK_INT(json_integer_value(json_object_get(
	                  json_array_get(json_object_get(j, "rows"), 8), "n")),
	          ==, 9);
	json_decref(j);
	/* the same connection: drained, not reopened */
	CHECK_INT(q(s.port, "SELECT pg_backend_pid() AS p", NULL, &r), ==, 200);
	row = first_row(&r);
	CHECK_INT(json_integer_value(json_object_get(row, "p")), ==, pid);
	json_decref(row);
	CHECK_INT(wait_inactive(pg, "generate_series", 5.0), ==, 1);
	th_server_stop(&s);
}

/* Four queries of one request in one gather run at once, each on its
 * own connection, and come back in query order; a failed one has its
 * own error; the client leaving cancels all four. */
static void test_gather(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_server s;
	th_resp r;
	double t0, took;

	if (!pg)
		return;
	th_config(&cfg);
	cfg.db_max_connections = 4;
	cfg.db_query_timeout_ms = 30000;
	start_app(&s, pg->url, &cfg);
	/* opens the four connections */
	CHECK_INT(th_http(s.port, "GET", "/gather?n=4&s=0.1", NULL, &r), ==,
	          200);
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/gather?n=4&s=0.3", NULL, &r), ==,
	          200);
	took = th_now() - t0;
	CHECK_STR(r.body, "[[{\"i\":0}],[{\"i\":1}],[{\"i\":2}],"
	                  "[{\"i\":3}]]");
	CHECK_DBL(took, >=, 0.3);
	CHECK_DBL(took, <, 0.9); /* one after another: 1.2 s */
	printf("  gather of 4 x pg_sleep(0.3): %.2f s\n", took);
	/* the first ends last: the order is still the queries' */
	CHECK_INT(th_http(s.port, "GET", "/gather?n=3&s=0.1&desc=1", NULL,
	                  &r), ==, 200);
	CHECK_STR(r.body, "[[{\"i\":0}],[{\"i\":1}],[{\"i\":2}]]");
	CHECK_INT(th_http(s.port, "GET", "/gather?n=3&bad=1", NULL, &r), ==,
	          200);
	CHECK_STR(r.body, "[[{\"i\":0}],\"database reported an error\","
	                  "[{\"i\":2}]]");
	/* the client leaves: all four cancelled on the server, one
	 * continuation told so */
	__atomic_store_n(&gathered, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&gather_cancelled, 0, __ATOMIC_SEQ_CST);
	th_send_and_close(s.port,
	                  "GET /gather?n=4&s=20 HTTP/1.1\r\nHost: x\r\n\r\n",
	                  500);
	CHECK(wait_inactive(pg, "evapi-gather", 5.0));
	th_sleep_ms(100);
	CHECK_INT(LOAD(&gathered), ==, 1);
	CHECK_INT(LOAD(&gather_cancelled), ==, 1);
	/* the connections are reused at once */
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/gather?n=4&s=0", NULL, &r), ==, 200);
	CHECK_DBL(th_now() - t0, <, 2.0);
	th_server_stop(&s);
}

/* POSTs the statements `sqls` (a JSON array text) to /q, gathered. */
static long gq(int port, const char *sqls, th_resp *out)
{
	char body[2048];
	snprintf(body, sizeof body, "{\"sql\": %s}", sqls);
	return th_http(port, "POST", "/q", body, out);
}

static const char pids3[] = "[\"SELECT pg_backend_pid() AS p\","
                            "\"SELECT pg_backend_pid() AS p\","
                            "\"SELECT pg_backend_pid() AS p\"]";

/* Starts an app pipelining on one connection, with a query timeout of
 * `timeout_ms`, a result cap of `cap` and a statement cache of `cache`;
 * `first` (len 128) gets what three pipelined pg_backend_pid() answer on
 * it. Returns 0 without PostgreSQL. */
static int start_pipe(th_server *s, int timeout_ms, size_t cap, int cache,
                      char *first)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_resp r;

	if (!pg)
		return 0;
	th_config(&cfg);
	cfg.db_max_connections = 1;
	cfg.db_query_timeout_ms = timeout_ms;
	cfg.db_max_result_bytes = cap;
	cfg.db_statement_cache = cache;
	cfg.db_pipeline = 1;
	start_app(s, pg->url, &cfg);
	CHECK_INT(gq(s->port, pids3, &r), ==, 200);
	snprintf(first, 128, "%.120s", r.body);
	return 1;
}

/* The one connection serves the next pipeline at once, still the same;
 * then the app stops. */
static void end_pipe(th_server *s, const char *first)
{
	th_resp r;
	double t0 = th_now();
	CHECK_INT(gq(s->port, pids3, &r), ==, 200);
	CHECK_DBL(th_now() - t0, <, 2.0);
	CHECK_STR(r.body, first);
	th_server_stop(s);
}

/* With db_pipeline a request's gathered queries share one connection and
 * one round trip, in order; one failing (at PREPARE or EXECUTE) spoils no
 * other, not even the writes before it; the connection is reused. */
static void test_pipeline(void)
{
	const th_pg *pg = th_pg_shared();
	evapi_config cfg;
	th_server s;
	th_resp r;
	json_t *j;
	char first[128];
	double t0, took;

	if (!pg)
		return;
	th_pg_exec(pg, "DROP TABLE IF EXISTS pipe_t; "
	               "CREATE TABLE pipe_t (v int PRIMARY KEY)");
	th_config(&cfg);
	cfg.db_max_connections = 4;
	cfg.db_query_timeout_ms = 30000;
	cfg.db_pipeline = 1;
	start_app(&s, pg->url, &cfg);
	/* one connection for all three: the same backend answers each */
	CHECK_INT(gq(s.port, pids3, &r), ==, 200);
	j = body_json(&r);
	CHECK_INT((long)json_array_size(j), ==, 3);
	CHECK(json_equal(json_array_get(j, 0), json_array_get(j, 1)));
	CHECK(json_equal(json_array_get(j, 0), json_array_get(j, 2)));
	json_decref(j);
	snprintf(first, sizeof first, "%.120s", r.body);
	/* in order, and one after another on the server: 4 x 0.2 s */
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/gather?n=4&s=0.2&desc=1", NULL, &r),
	          ==, 200);
	took = th_now() - t0;
	CHECK_STR(r.body, "[[{\"i\":0}],[{\"i\":1}],[{\"i\":2}],"
	                  "[{\"i\":3}]]");
	CHECK_DBL(took, >=, 0.2 * (4 + 3 + 2 + 1));
	/* a failing query (its PREPARE fails) between two good ones */
	CHECK_INT(th_http(s.port, "GET", "/gather?n=3&bad=1", NULL, &r), ==,
	          200);
	CHECK_STR(r.body, "[[{\"i\":0}],\"database reported an error\","
	                  "[{\"i\":2}]]");
	/* one failing at EXECUTE: the writes around it each commit */
	CHECK_INT(gq(s.port, "[\"INSERT INTO pipe_t VALUES (1)\","
	                     "\"INSERT INTO pipe_t VALUES (1)\","
	                     "\"INSERT INTO pipe_t VALUES (2)\","
	                     "\"SELECT count(*) AS n FROM pipe_t\"]", &r),
	          ==, 200);
	CHECK_STR(r.body, "[[],\"database reported an error\",[],"
	                  "[{\"n\":2}]]");
	CHECK_INT(th_pg_int(pg, "SELECT count(*) FROM pipe_t"), ==, 2);
	/* the same text twice is prepared once and reused in the pipeline */
	CHECK_INT(gq(s.port, "[\"SELECT 7 AS a\",\"SELECT 8 AS b\","
	                     "\"SELECT 7 AS a\"]", &r), ==, 200);
	CHECK_STR(r.body, "[[{\"a\":7}],[{\"b\":8}],[{\"a\":7}]]");
	/* the connection was reused all along */
	end_pipe(&s, first);
}

/* A timeout mid-pipeline: every query still running ends with it,
 * nothing is left on the server (each query the server starts after
 * the first cancel is cancelled in turn), the connection comes back
 * clean. With a cache of one statement, the others run unnamed. */
static void test_pipeline_timeout(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;
	char first[128];
	double t0;

	if (!start_pipe(&s, 300, (size_t)1 << 20, 1, first))
		return;
	CHECK_INT(gq(s.port, "[\"SELECT 7 AS a\",\"SELECT 8 AS b\","
	                     "\"SELECT 7 AS a\"]", &r), ==, 200);
	CHECK_STR(r.body, "[[{\"a\":7}],[{\"b\":8}],[{\"a\":7}]]");
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/gather?n=3&s=20", NULL, &r), ==,
	          200);
	CHECK_DBL(th_now() - t0, <, 3.0);
	CHECK_STR(r.body, "[\"upstream timed out\",\"upstream timed out\","
	                  "\"upstream timed out\"]");
	CHECK(wait_inactive(pg, "evapi-gather", 3.0));
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 200);
	end_pipe(&s, first);
}

/* The client leaves mid-pipeline: cancelled on the server, one
 * continuation told so, the connection reused. */
static void test_pipeline_client_gone(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	char first[128];

	if (!start_pipe(&s, 30000, (size_t)1 << 20, 100, first))
		return;
	__atomic_store_n(&gathered, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&gather_cancelled, 0, __ATOMIC_SEQ_CST);
	th_send_and_close(s.port,
	                  "GET /gather?n=4&s=20 HTTP/1.1\r\nHost: x\r\n\r\n",
	                  500);
	CHECK(wait_inactive(pg, "evapi-gather", 5.0));
	th_sleep_ms(100);
	CHECK_INT(LOAD(&gathered), ==, 1);
	CHECK_INT(LOAD(&gather_cancelled), ==, 1);
	end_pipe(&s, first);
}

/* A result over the cap in a pipeline (the statement prepared in the
 * same pipeline, its rows still read one by one): that query fails, the
 * one before keeps its rows, the connection is reused. */
static void test_pipeline_cap(void)
{
	const th_pg *pg = th_pg_shared();
	th_server s;
	th_resp r;
	char first[128];

	if (!start_pipe(&s, 30000, 4096, 100, first))
		return;
	CHECK_INT(gq(s.port, "[\"SELECT 1 AS a\","
	                     "\"SELECT repeat('x', 100) FROM "
	                     "generate_series(1, 1000000)\"]", &r), ==, 200);
	CHECK_STR(r.body,
	          "[[{\"a\":1}],\"upstream reply over the size limit\"]");
	CHECK_INT(wait_inactive(pg, "generate_series", 5.0), ==, 1);
	end_pipe(&s, first);
}

/* listen_hook, on the loop thread, which it has watched first */
static int watch_listen_hook(evapi_app *app, void *arg)
{
	dns_watch = pthread_self();
	return listen_hook(app, arg);
}

typedef struct one_req {
	int port;
	th_resp r;
	long st;
} one_req;

static void *one_main(void *arg)
{
	one_req *o = arg;
	o->st = th_http(o->port, "GET", "/one", NULL, &o->r);
	return NULL;
}

/* A db_url naming its host: the name is looked up on a worker, never on
 * the loop, which keeps answering meanwhile; the connection then uses
 * the address found (and so does the LISTEN connection). */
static void test_dns_off_loop(void)
{
	const th_pg *pg = th_pg_shared();
	char url[256];
	evapi_config cfg;
	pthread_t t;
	one_req o;
	th_server s;
	th_resp r;
	double t0;

	if (!pg)
		return;
	snprintf(url, sizeof url, "postgresql://postgres@" SLOW_NAME
	                          ":%d/postgres", pg->port);
	th_config(&cfg);
	cfg.db_acquire_timeout_ms = 10000;
	start_app(&s, url, &cfg);
	dns_watch = s.thread;
	__atomic_store_n(&dns_calls, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&dns_on_watch, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&dns_watching, 1, __ATOMIC_SEQ_CST);
	memset(&o, 0, sizeof o);
	o.port = s.port;
	pthread_create(&t, NULL, one_main, &o);
	th_sleep_ms(300); /* the lookup has begun */
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/ping", NULL, &r), ==, 200);
	CHECK_DBL(th_now() - t0, <, 0.5);
	pthread_join(t, NULL);
	CHECK_INT(o.st, ==, 200);
	CHECK_INT(LOAD(&dns_calls), >=, 1);
	CHECK_INT(LOAD(&dns_on_watch), ==, 0);
	th_server_stop(&s);
	/* every address of a name is tried in turn (localhost may be ::1
	 * first; the server listens on 127.0.0.1 only), and a host list
	 * with a unix socket that is not there keeps its order */
	snprintf(url, sizeof url, "host=/nonexistent,localhost port=%d "
	                          "user=postgres dbname=postgres", pg->port);
	start_app(&s, url, NULL);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 200);
	th_server_stop(&s);
	/* a port per host stays with its host, however many addresses the
	 * host has */
	snprintf(url, sizeof url, "host=" TWO_NAME ",/nonexistent "
	                          "port=%d,5999 user=postgres dbname=postgres",
	         pg->port);
	start_app(&s, url, NULL);
	CHECK_INT(th_http(s.port, "GET", "/one", NULL, &r), ==, 200);
	th_server_stop(&s);
	/* the listener's connection too */
	th_config(&cfg);
	cfg.db_url = url;
	s.app = evapi_app_new(&cfg);
	CHECK(s.app != NULL);
	if (!s.app)
		return;
	evapi_app_on_startup(s.app, watch_listen_hook, NULL);
	th_server_start(&s, s.app);
	CHECK(notified(pg, "dns", 10.0));
	CHECK_INT(LOAD(&dns_on_watch), ==, 0);
	__atomic_store_n(&dns_watching, 0, __ATOMIC_SEQ_CST);
	th_server_stop(&s);
}

static const th_test tests[] = {
	{ "db.types", test_types },
	{ "db.injection", test_injection },
	{ "db.sql_error", test_sql_error },
	{ "db.unique", test_unique },
	{ "db.query_timeout", test_query_timeout },
	{ "db.client_gone", test_client_gone },
	{ "db.shutdown_cut", test_shutdown_cut },
	{ "db.busy", test_busy },
	{ "db.parallel", test_parallel },
	{ "db.rollback", test_rollback },
	{ "db.statement_cache", test_statement_cache },
	{ "db.app_query", test_app_query },
	{ "db.transaction", test_transaction },
	{ "db.down_at_start", test_down_at_start },
	{ "db.restart", test_restart },
	{ "db.listen", test_listen },
	{ "db.result_cap", test_result_cap },
	{ "db.gather", test_gather },
	{ "db.pipeline", test_pipeline },
	{ "db.pipeline_timeout", test_pipeline_timeout },
	{ "db.pipeline_client_gone", test_pipeline_client_gone },
	{ "db.pipeline_cap", test_pipeline_cap },
	{ "db.dns_off_loop", test_dns_off_loop },
	{ NULL, NULL }
};

int main(int argc, char **argv)
{
	int rc = th_main(argc, argv, tests);
	th_pg_shared_free();
	return rc;
}
