/*
 * notes.c: a small notes service, and the app that examples/notes_test.c
 * tests with evapi/testing.h: a declared JSON body (422 on bad input), a
 * path parameter (404 as FastAPI says it), a store that lives from the
 * startup hook to the shutdown hook, and a feed of new notes as
 * server-sent events. Every route is inline: the store is the loop's.
 */
#include <stdlib.h>

#include "notes.h"

typedef struct notes {
	json_t *items; /* id (as text) -> note */
	long long next_id;
	evapi_stream *feed; /* one listener, for the example's sake */
} notes;

static int open_store(evapi_app *app, void *arg)
{
	notes *n = arg;
	n->items = json_object();
	n->next_id = 1;
	return n->items ? 0 : EVAPI_ENOMEM;
}

static int close_store(evapi_app *app, void *arg)
{
	notes *n = arg;
	json_decref(n->items);
	free(n);
	return 0;
}

static void create(evapi_req *req, void *arg)
{
	notes *n = arg;
	json_t *note = NULL;
	char id[24];

	evapi_req_json(req, &note); /* validated: title is a string */
	snprintf(id, sizeof id, "%lld", n->next_id++);
	json_object_set_new(note, "id", json_string(id));
	json_object_set(n->items, id, note);
	if (n->feed && evapi_sse_send(n->feed, "created", id,
	                              json_string_value(json_object_get(note, "title"))) != 0) {
		evapi_stream_close(n->feed);
		n->feed = NULL;
	}
	evapi_reply_json(req, 201, json_incref(note));
}

static void get_one(evapi_req *req, void *arg)
{
	notes *n = arg;
	json_t *note = json_object_get(n->items, evapi_req_param(req, "id"));
	if (!note)
		evapi_reply_error(req, 404, "Note not found");
	else
		evapi_reply_json(req, 200, json_incref(note));
}

static void feed_gone(evapi_stream *s, int status, void *arg)
{
	notes *n = arg;
	if (status == EVAPI_ECANCELED && n->feed == s) {
		evapi_stream_close(s);
		n->feed = NULL;
	}
}

static void feed(evapi_req *req, void *arg)
{
	notes *n = arg;
	if (n->feed) {
		evapi_reply_error(req, 409, "Someone is listening already");
		return;
	}
	n->feed = evapi_reply_sse(req, 0);
	evapi_stream_set_cb(n->feed, feed_gone, n);
}

evapi_app *notes_app(const evapi_config *cfg)
{
	static const evapi_field note_body[] = {
		{.name = "title", .type = EVAPI_STRING, .required = 1,
		 .bounds = EVAPI_MIN_LEN, .min_len = 1},
		{.name = "text", .type = EVAPI_STRING, .dflt = "\"\""},
		{0}};
	evapi_app *app = evapi_app_new(cfg);
	notes *n = calloc(1, sizeof *n);
	evapi_route_decl post = {.methods = EVAPI_POST, .path = "/notes",
	                         .cb = create, .arg = n, .body = note_body};

	if (!app || !n) {
		evapi_app_free(app);
		free(n);
		return NULL;
	}
	evapi_app_on_startup(app, open_store, n);
	evapi_app_on_shutdown(app, close_store, n);
	evapi_app_route_decl(app, &post);
	evapi_app_route(app, EVAPI_GET, "/notes/{id}", EVAPI_INLINE, get_one, n);
	evapi_app_route(app, EVAPI_GET, "/feed", EVAPI_INLINE, feed, n);
	return app;
}

#ifndef NOTES_NO_MAIN
int main(void)
{
	evapi_app *app = notes_app(NULL); /* 127.0.0.1:8000 */
	int rc = app ? evapi_app_run(app) : EVAPI_ENOMEM;
	evapi_app_free(app);
	return rc == 0 ? 0 : 1;
}
#endif
