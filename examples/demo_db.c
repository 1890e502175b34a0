/*
 * demo_db.c: the database in the three places a query can run.
 *
 *   GET /db/users/{user_id}          inline: PostgreSQL on the loop, or
 *                                    SQLite on the pool, continuing on
 *                                    the loop (await conn.fetch(...))
 *   GET /db/sync-users/{user_id}     pool: the blocking call on the
 *                                    worker's own connection (psycopg)
 *   GET /db/blocking-users/{user_id} inline, blocking: a query run with
 *                                    the driver's blocking API ON THE
 *                                    LOOP, the anti-pattern, kept on
 *                                    purpose; the watchdog names it
 *   GET /db/notifications            PostgreSQL only: server-sent events,
 *                                    one per NOTIFY demo_news
 *   POST /db/notify                  PostgreSQL only: NOTIFY demo_news
 *                                    with the body as payload
 *
 * A start-up hook creates and seeds `users` (100 rows). --db-slow-ms N
 * makes every lookup take N ms in the database: pg_sleep on PostgreSQL,
 * a demo_sleep_ms() function on SQLite (registered on every connection
 * of the process with sqlite3_auto_extension).
 */
#include <evapi.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo.h"

static const char *db_url;
static int lite;
static char slow_ms[16] = "0";
static const char *lookup_sql;

/* ---- SQLite's sleep, for --db-slow-ms ----------------------------------- */

static void sleep_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	long long ms = sqlite3_value_int64(argv[0]);
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	(void)argc;
	while (ms > 0 && nanosleep(&ts, &ts) != 0)
		;
	sqlite3_result_int(ctx, 0);
}

static int register_sleep(sqlite3 *db, char **err, const void *api)
{
	(void)err;
	(void)api;
	return sqlite3_create_function(db, "demo_sleep_ms", 1, SQLITE_UTF8,
	                               NULL, sleep_fn, NULL, NULL);
}

/* ---- the three routes -------------------------------------------------- */

static int user_id(evapi_req *req)
{
	long long id;
	if (evapi_req_param_int(req, "user_id", &id) == 0)
		return 0;
	evapi_reply_validation_error(req, "int_parsing", "path", "user_id",
	                             "Input should be a valid integer, unable "
	                             "to parse string as an integer",
	                             evapi_req_param(req, "user_id"));
	return -1;
}

static void reply_user(evapi_req *req, const evapi_db_result *res)
{
	if (evapi_db_result_error(res))
		evapi_reply_db_error(req, res);
	else if (evapi_db_result_ntuples(res) == 0)
		evapi_reply_error(req, 404, "User not found");
	else
		evapi_reply_json(req, 200, evapi_db_result_row_json(res, 0));
}

static void user_found(evapi_req *req, int status, const evapi_db_result *res,
                       void *arg)
{
	(void)arg;
	if (status == 0)
		reply_user(req, res);
}

/* async def: user = await conn.fetchrow(...) */
static void db_user(evapi_req *req, void *arg)
{
	const char *p[2] = { evapi_req_param(req, "user_id"), slow_ms };
	(void)arg;
	if (user_id(req) != 0)
		return;
	if (evapi_req_db_query(req, lookup_sql, 2, p, user_found, NULL) != 0)
		evapi_reply_error(req, 500, "cannot start the query");
}

/* def: cur.execute(...) on the worker's own connection */
static void db_sync_user(evapi_req *req, void *arg)
{
	const char *p[2] = { evapi_req_param(req, "user_id"), slow_ms };
	evapi_db_result *res;
	(void)arg;
	if (user_id(req) != 0)
		return;
	evapi_req_db_query_sync(req, lookup_sql, 2, p, &res);
	if (!res) {
		evapi_reply_error(req, 500, "cannot run the query");
		return;
	}
	reply_user(req, res);
	evapi_db_result_free(res);
}

/* async def with a blocking driver call: the loop waits for the
 * database, and so does every other connection. evapi's own blocking
 * call refuses to run here (EVAPI_ETHREAD), so this route uses the
 * driver directly, as a careless handler would. */
static void db_blocking_user(evapi_req *req, void *arg)
{
	static PGconn *pg;     /* the loop thread's, opened on first use */
	static sqlite3 *sq;
	const char *p[2] = { evapi_req_param(req, "user_id"), slow_ms };
	char name[128] = "", email[128] = "";
	int found = 0, ok = 0;
	(void)arg;

	if (user_id(req) != 0)
		return;
	if (lite) {
		sqlite3_stmt *st = NULL;
		if (!sq && sqlite3_open(db_url + 9, &sq) != SQLITE_OK) {
			sqlite3_close(sq);
			sq = NULL;
		}
		if (sq && sqlite3_prepare_v2(sq, lookup_sql, -1, &st, NULL) ==
		                  SQLITE_OK) {
			sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, "$1"),
			                  p[0], -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, "$2"),
			                  p[1], -1, SQLITE_TRANSIENT);
			found = sqlite3_step(st) == SQLITE_ROW;
			if (found) {
				snprintf(name, sizeof name, "%s",
				         (const char *)sqlite3_column_text(st, 1));
				snprintf(email, sizeof email, "%s",
				         (const char *)sqlite3_column_text(st, 2));
			}
			ok = 1;
		}
		sqlite3_finalize(st);
	} else {
		PGresult *r;
		if (!pg || PQstatus(pg) != CONNECTION_OK) {
			PQfinish(pg);
			pg = PQconnectdb(db_url);
		}
		r = PQexecParams(pg, lookup_sql, 2, NULL, p, NULL, NULL, 0);
		ok = PQresultStatus(r) == PGRES_TUPLES_OK;
		found = ok && PQntuples(r) > 0;
		if (found) {
			snprintf(name, sizeof name, "%s", PQgetvalue(r, 0, 1));
			snprintf(email, sizeof email, "%s", PQgetvalue(r, 0, 2));
		}
		PQclear(r);
	}
	if (!ok)
		evapi_reply_error(req, 500, "Internal Server Error");
	else if (!found)
		evapi_reply_error(req, 404, "User not found");
	else
		evapi_reply_json(req, 200,
		                 json_pack("{s:I,s:s,s:s}", "id",
		                           (json_int_t)atoll(p[0]), "name", name,
		                           "email", email));
}

/* ---- LISTEN/NOTIFY as server-sent events (PostgreSQL) --------------------- */

#define MAX_WATCHERS 64

static evapi_stream *watchers[MAX_WATCHERS]; /* loop thread only */
static long long note_id;

static void watcher_gone(evapi_stream *s, int status, void *arg)
{
	int i;
	(void)arg;
	if (status != EVAPI_ECANCELED)
		return;
	for (i = 0; i < MAX_WATCHERS; i++)
		if (watchers[i] == s)
			watchers[i] = NULL;
	evapi_stream_close(s);
}

static void on_news(evapi_app *app, const char *channel, const char *payload,
                    void *arg)
{
	char id[24];
	int i;
	(void)app;
	(void)arg;
	snprintf(id, sizeof id, "%lld", note_id++);
	for (i = 0; i < MAX_WATCHERS; i++)
		if (watchers[i])
			evapi_sse_send(watchers[i], channel, id, payload);
}

static int needs_pg(evapi_req *req)
{
	if (!lite)
		return 0;
	evapi_reply_error(req, 501, "Needs PostgreSQL: --database postgresql://...");
	return -1;
}

static void notifications(evapi_req *req, void *arg)
{
	int i;
	(void)arg;
	if (needs_pg(req) != 0)
		return;
	for (i = 0; i < MAX_WATCHERS && watchers[i]; i++)
		;
	if (i == MAX_WATCHERS) {
		evapi_reply_error(req, 503, "Too many listeners");
		return;
	}
	if (!(watchers[i] = evapi_reply_sse(req, 15000)))
		return;
	evapi_stream_set_cb(watchers[i], watcher_gone, NULL);
}

static void notify_done(evapi_req *req, int status, const evapi_db_result *res,
                        void *arg)
{
	(void)arg;
	if (status != 0)
		return;
	if (evapi_db_result_error(res))
		evapi_reply_db_error(req, res);
	else
		evapi_reply_json(req, 200, json_pack("{s:s}", "status", "sent"));
}

static void notify(evapi_req *req, void *arg)
{
	size_t len = 0;
	const char *body = evapi_req_body(req, &len);
	char payload[1024];
	const char *p[1] = { payload };
	(void)arg;
	if (needs_pg(req) != 0)
		return;
	snprintf(payload, sizeof payload, "%.*s", (int)len, body ? body : "");
	if (evapi_req_db_query(req, "SELECT pg_notify('demo_news', $1)", 1, p,
	                       notify_done, NULL) != 0)
		evapi_reply_error(req, 500, "cannot start the query");
}

/* ---- schema and seed at start-up --------------------------------------- */

static void seeded(evapi_app *app, const evapi_db_result *res, void *arg)
{
	(void)app;
	(void)arg;
	if (evapi_db_result_error(res))
		fprintf(stderr, "demo: database seed failed: %s\n",
		        evapi_db_result_errmsg(res));
}

static void created(evapi_app *app, const evapi_db_result *res, void *arg)
{
	(void)arg;
	if (evapi_db_result_error(res)) {
		seeded(app, res, NULL);
		return;
	}
	evapi_app_db_query(app,
	                   "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL "
	                   "SELECT i + 1 FROM s WHERE i < 100) "
	                   "INSERT INTO users (id, name, email) "
	                   "SELECT i, 'user ' || i, 'user' || i || '@example.com' "
	                   "FROM s WHERE true ON CONFLICT (id) DO NOTHING",
	                   0, NULL, seeded, NULL);
}

static int create_tables(evapi_app *app, void *arg)
{
	(void)arg;
	if (!lite && evapi_app_db_listen(app, "demo_news", on_news, NULL) != 0)
		return -1;
	return evapi_app_db_query(app,
	                          "CREATE TABLE IF NOT EXISTS users ("
	                          "id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
	                          "email TEXT)",
	                          0, NULL, created, NULL);
}

void demo_db_config(evapi_config *cfg, const char *url, unsigned slow)
{
	db_url = url;
	lite = strncmp(url, "sqlite://", 9) == 0;
	snprintf(slow_ms, sizeof slow_ms, "%u", slow);
	cfg->db_url = url;
	if (lite) {
		sqlite3_auto_extension((void (*)(void))register_sleep);
		lookup_sql = slow ? "SELECT u.id, u.name, u.email FROM "
		                    "(SELECT demo_sleep_ms($2) AS z) s, users u "
		                    "WHERE u.id = $1"
		                  : "SELECT id, name, email FROM users "
		                    "WHERE id = $1 AND $2 IS NOT NULL";
	} else {
		lookup_sql = slow ? "SELECT u.id, u.name, u.email FROM "
		                    "(SELECT pg_sleep($2::float8 / 1000)) s, "
		                    "users u WHERE u.id = $1::int"
		                  : "SELECT id, name, email FROM users "
		                    "WHERE id = $1::int AND $2::text IS NOT NULL";
	}
	/* a slow lookup must not hit the query timeout */
	if (cfg->db_query_timeout_ms < (int)slow + 5000)
		cfg->db_query_timeout_ms = (int)slow + 5000;
}

int demo_db_routes(evapi_app *app)
{
	int rc = 0;
	rc |= evapi_app_on_startup(app, create_tables, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/db/users/{user_id}",
	                      EVAPI_INLINE, db_user, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/db/sync-users/{user_id}",
	                      EVAPI_POOL, db_sync_user, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/db/blocking-users/{user_id}",
	                      EVAPI_INLINE, db_blocking_user, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/db/notifications", EVAPI_INLINE,
	                      notifications, NULL);
	rc |= evapi_app_route(app, EVAPI_POST, "/db/notify", EVAPI_INLINE,
	                      notify, NULL);
	return rc ? -1 : 0;
}
