/*
 * notes.c: a notes service on SQLite, in pool routes; examples/notes_test.c
 * tests it, examples/notes_fastapi.py is the same in FastAPI. Settings:
 * EVAPI_* (evapi_config_from_env), NOTES_API_KEY, NOTES_ANALYSER (the base
 * URL of a service that analyses a note: POST /analyse).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notes.h"

static struct { char api_key[128], analyse_url[256]; } settings;

typedef struct note { int64_t id; char *title, *text; } note;
#define NOTE_BODY                                                            \
	{EVAPI_MEMBER(note, title, EVAPI_C_STRING), .required = 1,           \
	 .bounds = EVAPI_MIN_LEN | EVAPI_MAX_LEN, .min_len = 1, .max_len = 200}, \
	{EVAPI_MEMBER(note, text, EVAPI_C_STRING), .dflt = "\"\""}
static const evapi_member note_in_m[] = {NOTE_BODY, {0}};
static const evapi_member note_m[] = {{EVAPI_MEMBER(note, id, EVAPI_C_INT64)}, NOTE_BODY, {0}};
static const evapi_model note_in = {.name = "NoteIn", .size = sizeof(note), .members = note_in_m};
static const evapi_model note_out = {.name = "Note", .size = sizeof(note), .members = note_m};

typedef struct page { note *items; size_t count; } page; /* GET /notes */
static const evapi_member page_m[] = {{EVAPI_MEMBER(page, items, EVAPI_C_ARRAY),
	.count_offset = offsetof(page, count), .items = &(const evapi_member){
	.ctype = EVAPI_C_STRUCT, .size = sizeof(note), .model = &note_out}}, {0}};
static const evapi_model page_out = {.name = "Page", .size = sizeof(page), .members = page_m};

/* One row of `sql` on this pool thread, or NULL when it replied 404/5xx. */
static json_t *query_row(evapi_req *req, const char *sql, int n, const char **p)
{
	evapi_db_result *res;
	json_t *row = NULL;
	if (evapi_req_db_query_sync(req, sql, n, p, &res) != 0)
		evapi_reply_db_error(req, res);
	else if (!(row = evapi_db_result_row_json(res, 0)))
		evapi_reply_error(req, 404, "Note not found");
	evapi_db_result_free(res);
	return row;
}

static json_t *find(evapi_req *req)
{
	const char *id = evapi_req_param(req, "id");
	return query_row(req, "SELECT id, title, text FROM notes WHERE id = $1", 1, &id);
}

static evapi_fetch_opts analyse(const char *json)
{
	static const char *const hdr[] = {"Content-Type: application/json", NULL};
	return (evapi_fetch_opts){.url = settings.analyse_url, .headers = hdr,
	                          .body = json, .body_len = strlen(json)};
}

static int publish(evapi_app *app, int status, void *text) /* after the reply */
{
	if (status == 0)
		evapi_app_publish(app, "notes", text);
	free(text);
	return 0;
}

static void create(evapi_req *req, void *arg)
{
	note n;
	json_t *row;
	char *text;
	if (evapi_req_model(req, &note_in, &n) != 0) /* validated: ENOMEM */
		return;
	row = query_row(req, "INSERT INTO notes (title, text) VALUES ($1, $2) "
	                     "RETURNING id, title, text",
	                2, (const char *[]){n.title, n.text});
	evapi_model_free(&note_in, &n);
	if (row && (text = json_dumps(row, 0)) &&
	    evapi_req_add_task(req, EVAPI_INLINE, "publish", publish, text) != 0)
		free(text); /* stored all the same: the feed misses it */
	if (row)
		evapi_reply_json(req, 201, row);
}

static void list(evapi_req *req, void *arg)
{
	evapi_db_result *res;
	if (evapi_req_db_query_sync(req, "SELECT id, title, text FROM notes ORDER BY id",
	                            0, NULL, &res) != 0)
		evapi_reply_db_error(req, res);
	else /* the columns are page_out's members */
		evapi_reply_json(req, 200, json_pack("{s:o}", "items", evapi_db_result_json(res)));
	evapi_db_result_free(res);
}

static void get_one(evapi_req *req, void *arg)
{
	json_t *row = find(req);
	if (row)
		evapi_reply_json(req, 200, row);
}

static void enriched(evapi_req *req, void *arg) /* pool: may block */
{
	json_t *row = find(req);
	char *body = row ? json_dumps(row, 0) : NULL;
	evapi_fetch_opts o = analyse(body ? body : "");
	evapi_fetch_res *res = body ? evapi_fetch_sync(&o) : NULL;

	if (evapi_fetch_res_ok(res)) {
		json_object_set_new(row, "analysis", evapi_fetch_res_json(res, NULL));
		evapi_reply_json(req, 200, json_incref(row));
	} else if (res)
		evapi_reply_upstream_error(req, res);
	evapi_fetch_res_free(res);
	json_decref(row);
	free(body);
}

static void analysed(evapi_req *req, int status, const evapi_fetch_res *res,
                     void *arg)
{
	if (status == 0 && evapi_fetch_res_ok(res))
		evapi_reply_json(req, 200, json_pack("{s:o*}", "analysis",
		                                     evapi_fetch_res_json(res, NULL)));
	else if (status == 0)
		evapi_reply_upstream_error(req, res);
}

static void preview(evapi_req *req, void *arg) /* inline: waits, never blocks */
{
	evapi_fetch_opts o = analyse(evapi_req_body(req, NULL));
	if (evapi_req_fetch(req, &o, analysed, NULL) != 0)
		evapi_reply_error(req, 503, "Service Unavailable");
}

static void feed(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	if (s && evapi_stream_subscribe(evapi_req_app(req), s, "notes") != 0)
		evapi_stream_close(s);
}

static int check_key(evapi_req *req, const evapi_credentials *c, void *arg)
{
	return evapi_secure_streq(c->credentials, settings.api_key) ? 0 : -1;
}

static const evapi_field id_param[] = {
	{.name = "id", .in = EVAPI_IN_PATH, .type = EVAPI_INT, .bounds = EVAPI_GE, .ge = 1},
	{0}};
static const evapi_route_decl routes[] = {
	{EVAPI_POST, "/notes", EVAPI_POOL, create, .body_model = &note_in,
	 .response_model = &note_out,
	 .responses = (const evapi_response[]){{.status = 201}, {0}}},
	{EVAPI_GET, "/notes", EVAPI_POOL, list, .response_model = &page_out},
	{EVAPI_GET, "/notes/{id}", EVAPI_POOL, get_one, .params = id_param,
	 .response_model = &note_out},
	{EVAPI_GET, "/notes/{id}/enriched", EVAPI_POOL, enriched, .params = id_param},
	{EVAPI_POST, "/notes/preview", EVAPI_INLINE, preview, .body_model = &note_in}};

static const evapi_security_config key_header = {.kind = EVAPI_SECURITY_API_KEY_HEADER,
	.name = "APIKeyHeader", .param = "X-API-Key", .verify = check_key};

int notes_setup(evapi_app *app, void *arg)
{
	const char *key = getenv("NOTES_API_KEY"), *up = getenv("NOTES_ANALYSER");
	const evapi_dep *api_key = evapi_app_security(app, &key_header);
	evapi_db_result *res = NULL;
	int rc = !api_key || evapi_app_db_query_sync(app, "CREATE TABLE IF NOT EXISTS "
		"notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL)",
		0, NULL, &res);

	evapi_db_result_free(res);
	snprintf(settings.api_key, sizeof settings.api_key, "%s", key ? key : "dev-key");
	snprintf(settings.analyse_url, sizeof settings.analyse_url, "%s/analyse",
	         up ? up : "http://127.0.0.1:8001");
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
		rc |= evapi_app_route_decl(app, &routes[i]);
	rc |= evapi_route_dep(app, EVAPI_POST, "/notes", api_key);
	rc |= evapi_app_route(app, EVAPI_GET, "/feed", EVAPI_INLINE, feed, NULL);
	return rc ? EVAPI_EINVAL : 0;
}

#ifndef NOTES_NO_MAIN
int main(void)
{
	evapi_config cfg;
	evapi_error err;

	evapi_config_init(&cfg);
	cfg.db_url = "sqlite://:memory:"; /* EVAPI_DB_URL overrides it */
	if (evapi_config_from_env(&cfg, &err) != 0) {
		fprintf(stderr, "notes: %s\n", err.text);
		return 2;
	}
	return evapi_app_serve(&cfg, notes_setup, NULL) == 0 ? 0 : 1;
}
#endif
