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
 * usage: db_evapi PORT DB_URL [CONNECTIONS]
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

/* ---- /queries and /updates: N at once ------------------------------------ */

typedef struct batch {
	int n, left, failed, gone, update;
	json_t *rows;            /* array, in request order */
} batch;

typedef struct slot {
	batch *b;
	int i;
} slot;

static void batch_step(evapi_req *req, batch *b)
{
	if (--b->left > 0)
		return;
	if (b->gone)
		; /* the request went away: nothing to answer */
	else if (b->failed)
		evapi_reply_error(req, 500, "a query failed");
	else
		evapi_reply_json(req, 200, json_incref(b->rows));
	json_decref(b->rows);
	free(b);
}

static void update_done(evapi_req *req, int status, const evapi_db_result *res,
                        void *arg)
{
	slot *s = arg;
	batch *b = s->b;
	if (status != 0)
		b->gone = 1;
	else if (evapi_db_result_error(res))
		b->failed = 1;
	free(s);
	batch_step(req, b);
}

static void select_done(evapi_req *req, int status, const evapi_db_result *res,
                        void *arg)
{
	slot *s = arg;
	batch *b = s->b;
	json_t *row;

	if (status != 0) {
		b->gone = 1;
	} else if (evapi_db_result_error(res) ||
	           evapi_db_result_ntuples(res) != 1) {
		b->failed = 1;
	} else {
		row = world_json(res);
		if (b->update) {
			char id[16], num[16];
			const char *p[2] = { id, num };
			int r = random_id();
			json_object_set_new(row, "randomNumber", json_integer(r));
			snprintf(id, sizeof id, "%lld",
			         (long long)json_integer_value(
			                 json_object_get(row, "id")));
			snprintf(num, sizeof num, "%d", r);
			json_array_set_new(b->rows, (size_t)s->i, row);
			b->left++; /* the update's own step */
			if (evapi_req_db_query(req,
			                       "UPDATE world SET randomnumber = $2 "
			                       "WHERE id = $1", 2, p, update_done,
			                       s) == 0) {
				batch_step(req, b);
				return;
			}
			b->left--;
			b->failed = 1;
		} else {
			json_array_set_new(b->rows, (size_t)s->i, row);
		}
	}
	free(s);
	batch_step(req, b);
}

static void many(evapi_req *req, int update)
{
	batch *b = calloc(1, sizeof *b);
	int i;

	b->n = b->left = count_param(req);
	b->update = update;
	b->rows = json_array();
	for (i = 0; i < b->n; i++)
		json_array_append_new(b->rows, json_null());
	for (i = 0; i < b->n; i++) {
		slot *s = malloc(sizeof *s);
		char id[16];
		const char *p[1] = { id };
		s->b = b;
		s->i = i;
		snprintf(id, sizeof id, "%d", random_id());
		if (evapi_req_db_query(req, select_world, 1, p, select_done, s)) {
			free(s);
			b->failed = 1;
			batch_step(req, b);
		}
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

int main(int argc, char **argv)
{
	evapi_config cfg;
	evapi_app *app;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: db_evapi PORT DB_URL [CONNECTIONS]\n");
		return 2;
	}
	evapi_config_init(&cfg);
	cfg.port = atoi(argv[1]);
	cfg.db_url = argv[2];
	cfg.db_max_connections = argc > 3 ? atoi(argv[3]) : 8;
	/* 64 clients x 500 queries may wait at once: queue them all, as an
	 * asyncpg pool does, rather than answer 503 */
	cfg.db_queue_max = 64 * 500;
	cfg.access_log = 0;
	cfg.pool_threads = 2;
	cfg.log_level = EVAPI_LOG_WARN;
	app = evapi_app_new(&cfg);
	if (!app)
		return 1;
	evapi_app_route(app, EVAPI_GET, "/db", EVAPI_INLINE, db, NULL);
	evapi_app_route(app, EVAPI_GET, "/queries", EVAPI_INLINE, queries, NULL);
	evapi_app_route(app, EVAPI_GET, "/fortunes", EVAPI_INLINE, fortunes,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/updates", EVAPI_INLINE, updates, NULL);
	rc = evapi_app_run(app);
	evapi_app_free(app);
	return rc == 0 ? 0 : 1;
}
