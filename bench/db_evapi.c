/*
 * db_evapi.c: TechEmpower's database tests on evapi, PostgreSQL on the
 * loop (bench/db drives it; bench/db_fastapi.py is the same in FastAPI
 * with asyncpg).
 *
 *   GET /db              one random row of world: {"id":N,"randomNumber":N}
 *   GET /queries?queries=N  N random rows (N clamped to 1..500), queried
 *                        at once, as a JSON array
 *   GET /fortunes        the fortune rows plus one added at request time,
 *                        sorted by message, as an HTML table
 *   GET /updates?queries=N  N random rows, each given a new randomNumber
 *
 *   GET /                a small JSON object, no database (its latency
 *                        while /db is loaded is one of bench/db's numbers)
 *
 * usage: db_evapi PORT DB_URL [CONNECTIONS [PIPELINE]]
 *   PIPELINE 1 (the default): the queries of one request share one
 *   connection and one round trip (db_pipeline); 0: each its own.
 */
#include <evapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORLD_ROWS 10000

static unsigned rnd_state = 1;

static int random_id(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u; /* loop thread only */
	return (int)((rnd_state >> 8) % WORLD_ROWS) + 1;
}

static int count_param(evapi_req *req)
{
	long long n;
	if (evapi_parse_int(evapi_req_query(req, "queries"), &n) != 0 || n < 1)
		return 1;
	return n > 500 ? 500 : (int)n;
}

static json_t *world_json(const evapi_db_result *res)
{
	return json_pack("{s:I,s:I}", "id",
	                 (json_int_t)atoll(evapi_db_result_value(res, 0, 0)),
	                 "randomNumber",
	                 (json_int_t)atoll(evapi_db_result_value(res, 0, 1)));
}

static const char select_world[] =
	"SELECT id, randomnumber FROM world WHERE id = $1";

/* ---- /db ---------------------------------------------------------------- */

static void db_done(evapi_req *req, int status, const evapi_db_result *res,
                    void *arg)
{
	if (status != 0)
		return;
	if (evapi_db_result_error(res) || evapi_db_result_ntuples(res) != 1)
		evapi_reply_db_error(req, res);
	else
		evapi_reply_json(req, 200, world_json(res));
}

static void db(evapi_req *req, void *arg)
{
	char id[16];
	const char *p[1] = { id };
	snprintf(id, sizeof id, "%d", random_id());
	if (evapi_req_db_query(req, select_world, 1, p, db_done, NULL) != 0)
		evapi_reply_error(req, 500, "cannot query");
}

/* /db/wait: /db's row after 20 ms on the server (pg_sleep), so that with
 * 8 connections a thousand requests spend their time waiting for the
 * database, not for the loop: what GET / must not feel. */
static void db_wait(evapi_req *req, void *arg)
{
	static const char sql[] = "SELECT w.id, w.randomnumber FROM world w, "
	                          "pg_sleep(0.02) WHERE w.id = $1";
	char id[16];
	const char *p[1] = { id };
	snprintf(id, sizeof id, "%d", random_id());
	if (evapi_req_db_query(req, sql, 1, p, db_done, NULL) != 0)
		evapi_reply_error(req, 500, "cannot query");
}

/* ---- /queries and /updates: N at once ------------------------------------ */

/* The N selects of /queries and /updates go as one evapi_req_db_gather
 * (with db_pipeline: on one connection, in one round trip); /updates
 * then writes the N new numbers with one UPDATE over two arrays (the
 * rules allow batching the updates), ids in ascending order so that
 * concurrent requests lock rows in one order. */
typedef struct many_req {
	int n;
	char ids[500][12];
	const char *params[500][1];
	evapi_db_query qs[500];
	json_t *rows;
} many_req;

static const char update_world[] =
	"UPDATE world SET randomnumber = v.r FROM "
	"(SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) v "
	"WHERE world.id = v.id";

static int by_id(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a,
	                                                  "id"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b,
	                                                  "id"));
	return (x > y) - (x < y);
}

/* "{1,2,3}" of the rows' `key`, in `order`. */
static char *int_array(json_t *const *order, int n, const char *key)
{
	char *out = malloc((size_t)n * 12 + 3), *o = out;
	int i;

	if (!out)
		return NULL;
	*o++ = '{';
	for (i = 0; i < n; i++)
		o += sprintf(o, "%s%lld", i ? "," : "",
		             (long long)json_integer_value(
		                     json_object_get(order[i], key)));
	*o++ = '}';
	*o = '\0';
	return out;
}

static void many_free(many_req *m)
{
	json_decref(m->rows);
	free(m);
}

static void updates_done(evapi_req *req, int status,
                         const evapi_db_result *res, void *arg)
{
	many_req *m = arg;

	if (status == 0) {
		if (evapi_db_result_error(res))
			evapi_reply_db_error(req, res);
		else
			evapi_reply_json(req, 200, json_incref(m->rows));
	}
	many_free(m);
}

static void selects_done(evapi_req *req, int status, int n,
                         const evapi_db_result *const *res, void *arg)
{
	many_req *m = arg;
	int i, update = m->rows != NULL;

	if (status != 0) {
		many_free(m);
		return;
	}
	for (i = 0; i < n; i++)
		if (evapi_db_result_error(res[i]) ||
		    evapi_db_result_ntuples(res[i]) != 1) {
			evapi_reply_db_error(req, res[i]);
			many_free(m);
			return;
		}
	if (!update) {
		json_t *rows = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(rows, world_json(res[i]));
		evapi_reply_json(req, 200, rows);
		many_free(m);
		return;
	}
	{
		json_t *order[500];
		const char *p[2];
		char *ids, *nums;
		int rc = EVAPI_ENOMEM;

		for (i = 0; i < n; i++) {
			json_t *row = world_json(res[i]);
			json_object_set_new(row, "randomNumber",
			                    json_integer(random_id()));
			json_array_append_new(m->rows, row);
			order[i] = row;
		}
		qsort(order, (size_t)n, sizeof *order, by_id);
		/* a row drawn twice gets one number (the UPDATE applies one) */
		for (i = 1; i < n; i++)
			if (by_id(&order[i - 1], &order[i]) == 0)
				json_object_set(order[i], "randomNumber",
				                json_object_get(order[i - 1],
				                                "randomNumber"));
		p[0] = ids = int_array(order, n, "id");
		p[1] = nums = int_array(order, n, "randomNumber");
		if (ids && nums)
			rc = evapi_req_db_query(req, update_world, 2, p,
			                        updates_done, m);
		free(ids);
		free(nums);
		if (rc != 0) {
			evapi_reply_error(req, 500, "cannot query");
			many_free(m);
		}
	}
}

static void many(evapi_req *req, int update)
{
	many_req *m = malloc(sizeof *m);
	int i;

	if (!m) {
		evapi_reply_error(req, 500, "out of memory");
		return;
	}
	m->n = count_param(req);
	m->rows = update ? json_array() : NULL;
	for (i = 0; i < m->n; i++) {
		snprintf(m->ids[i], sizeof m->ids[i], "%d", random_id());
		m->params[i][0] = m->ids[i];
		m->qs[i].sql = select_world;
		m->qs[i].nparams = 1;
		m->qs[i].params = m->params[i];
	}
	if (evapi_req_db_gather(req, m->n, m->qs, selects_done, m) != 0) {
		evapi_reply_error(req, 500, "cannot query");
		many_free(m);
	}
}

static void queries(evapi_req *req, void *arg)
{
	many(req, 0);
}

static void updates(evapi_req *req, void *arg)
{
	many(req, 1);
}

/* ---- /fortunes ------------------------------------------------------------ */

typedef struct fortune {
	long long id;
	const char *msg;
} fortune;

static int by_message(const void *a, const void *b)
{
	return strcmp(((const fortune *)a)->msg, ((const fortune *)b)->msg);
}

static void escape(char **o, size_t *left, const char *s)
{
	for (; *s && *left > 8; s++) {
		const char *e = NULL;
		switch (*s) {
		case '<': e = "&lt;"; break;
		case '>': e = "&gt;"; break;
		case '&': e = "&amp;"; break;
		case '"': e = "&quot;"; break;
		case '\'': e = "&#39;"; break;
		}
		if (e) {
			size_t n = strlen(e);
			memcpy(*o, e, n);
			*o += n;
			*left -= n;
		} else {
			*(*o)++ = *s;
			(*left)--;
		}
	}
}

static void fortunes_done(evapi_req *req, int status,
                          const evapi_db_result *res, void *arg)
{
	fortune f[64];
	char html[16384], *o = html;
	size_t left = sizeof html - 1;
	int i, n;

	if (status != 0)
		return;
	if (evapi_db_result_error(res)) {
		evapi_reply_db_error(req, res);
		return;
	}
	n = evapi_db_result_ntuples(res);
	if (n > 63)
		n = 63;
	for (i = 0; i < n; i++) {
		f[i].id = atoll(evapi_db_result_value(res, i, 0));
		f[i].msg = evapi_db_result_value(res, i, 1);
	}
	f[n].id = 0;
	f[n].msg = "Additional fortune added at request time.";
	n++;
	qsort(f, (size_t)n, sizeof *f, by_message);
	o += snprintf(o, left, "<!DOCTYPE html><html><head><title>Fortunes"
	                       "</title></head><body><table><tr><th>id</th>"
	                       "<th>message</th></tr>");
	left = sizeof html - 1 - (size_t)(o - html);
	for (i = 0; i < n && left > 256; i++) {
		int w = snprintf(o, left, "<tr><td>%lld</td><td>", f[i].id);
		o += w;
		left -= (size_t)w;
		escape(&o, &left, f[i].msg);
		w = snprintf(o, left, "</td></tr>");
		o += w;
		left -= (size_t)w;
	}
	o += snprintf(o, left, "</table></body></html>");
	evapi_reply_bytes(req, 200, "text/html; charset=utf-8", html,
	                  (size_t)(o - html));
}

static void fortunes(evapi_req *req, void *arg)
{
	if (evapi_req_db_query(req, "SELECT id, message FROM fortune", 0, NULL,
	                       fortunes_done, NULL) != 0)
		evapi_reply_error(req, 500, "cannot query");
}

static void hello(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "message", "hello"));
}

int main(int argc, char **argv)
{
	evapi_config cfg;
	evapi_app *app;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: db_evapi PORT DB_URL [CONNECTIONS "
		                "[PIPELINE]]\n");
		return 2;
	}
	evapi_config_init(&cfg);
	cfg.port = atoi(argv[1]);
	cfg.db_url = argv[2];
	cfg.db_max_connections = argc > 3 ? atoi(argv[3]) : 8;
	cfg.db_pipeline = argc > 4 ? atoi(argv[4]) != 0 : 1;
	/* 64 clients x 500 queries may wait at once: queue them all, as an
	 * asyncpg pool does, rather than answer 503 */
	cfg.db_queue_max = 64 * 500;
	cfg.access_log = 0;
	cfg.pool_threads = 2;
	cfg.log_level = EVAPI_LOG_WARN;
	app = evapi_app_new(&cfg);
	if (!app)
		return 1;
	evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, hello, NULL);
	evapi_app_route(app, EVAPI_GET, "/db", EVAPI_INLINE, db, NULL);
	evapi_app_route(app, EVAPI_GET, "/db/wait", EVAPI_INLINE, db_wait, NULL);
	evapi_app_route(app, EVAPI_GET, "/queries", EVAPI_INLINE, queries, NULL);
	evapi_app_route(app, EVAPI_GET, "/fortunes", EVAPI_INLINE, fortunes,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/updates", EVAPI_INLINE, updates, NULL);
	rc = evapi_app_run(app);
	evapi_app_free(app);
	return rc == 0 ? 0 : 1;
}
