/*
 * notes_test.c: tests of the notes service (notes.c) with evapi/testing.h,
 * the way FastAPI's TestClient is used: the app runs in this process,
 * each request is one call, each reply is checked, the app is stopped.
 * The analyser it calls is a second evapi app, started the same way.
 * Run by `make check`.
 */
#include <evapi/testing.h>
#include <evapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notes.h"

static int failed;
#define EXPECT(cond)                                                         \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "  %s:%d: %s\n", __FILE__, __LINE__, \
			        #cond);                                      \
			failed++;                                            \
		}                                                            \
	} while (0)

static const char *const key[] = {"X-API-Key: k3y", NULL};

/* The upstream: POST /analyse {"title", "text", ...} -> {"chars": n} */
static void analyse(evapi_req *req, void *arg)
{
	json_t *note = NULL;
	evapi_req_json(req, &note);
	evapi_reply_json(req, 200, json_pack("{s:I}", "chars", (json_int_t)
	        json_string_length(json_object_get(note, "text"))));
}

static evapi_test *start_analyser(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_config_init(&cfg);
	cfg.log_level = EVAPI_LOG_ERROR;
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_POST, "/analyse", EVAPI_INLINE, analyse, NULL);
	return evapi_test_start(app);
}

/* The notes app, its analyser at `analyser` (NULL: none listening). */
static evapi_test *start(evapi_test *analyser)
{
	char url[64];
	evapi_config cfg;
	evapi_app *app;
	evapi_config_init(&cfg);
	cfg.log_level = EVAPI_LOG_ERROR; /* no access log */
	cfg.db_url = "sqlite://:memory:";
	/* port 1 on loopback: nothing listens there, the call is refused */
	snprintf(url, sizeof url, "http://127.0.0.1:%d",
	         analyser ? evapi_test_port(analyser) : 1);
	setenv("NOTES_ANALYSER", url, 1);
	setenv("NOTES_API_KEY", "k3y", 1);
	app = evapi_app_new(&cfg);
	if (notes_setup(app, NULL) != 0) {
		evapi_app_free(app);
		return NULL;
	}
	return evapi_test_start(app);
}

static evapi_test_response *post(evapi_test *tc, const char *path,
                                 const char *const *headers, json_t *body)
{
	return evapi_test_request(tc, &(evapi_test_req){
		.method = "POST", .path = path, .headers = headers, .json = body});
}

static json_t *get(evapi_test_response *r, const char *name)
{
	return json_object_get(evapi_test_json(r), name);
}

static void test_create_read_list(void)
{
	evapi_test *tc = start(NULL);
	evapi_test_response *r = post(tc, "/notes", key, json_pack("{s:s}", "title", "milk"));

	EXPECT(evapi_test_status(r) == 201);
	EXPECT(json_integer_value(get(r, "id")) == 1);
	EXPECT(strcmp(json_string_value(get(r, "text")), "") == 0); /* default */
	evapi_test_response_free(r);
	evapi_test_response_free(post(tc, "/notes", key,
	        json_pack("{s:s,s:s}", "title", "eggs", "text", "six")));

	r = evapi_test_get(tc, "/notes/2");
	EXPECT(evapi_test_status(r) == 200);
	EXPECT(strcmp(json_string_value(get(r, "title")), "eggs") == 0);
	EXPECT(strcmp(json_string_value(get(r, "text")), "six") == 0);
	evapi_test_response_free(r);

	r = evapi_test_get(tc, "/notes");
	EXPECT(evapi_test_status(r) == 200);
	EXPECT(json_array_size(get(r, "items")) == 2);
	EXPECT(strcmp(json_string_value(json_object_get(
	        json_array_get(get(r, "items"), 0), "title")), "milk") == 0);
	evapi_test_response_free(r);
	EXPECT(evapi_test_stop(tc) == 0);
}

static void test_errors(void)
{
	static const char *const bad_key[] = {"X-API-Key: nope", NULL};
	evapi_test *tc = start(NULL);
	evapi_test_response *r = post(tc, "/notes", NULL, json_pack("{s:s}", "title", "a"));

	EXPECT(evapi_test_status(r) == 403); /* no key */
	EXPECT(strcmp(json_string_value(get(r, "detail")), "Not authenticated") == 0);
	evapi_test_response_free(r);
	r = post(tc, "/notes", bad_key, json_pack("{s:s}", "title", "a"));
	EXPECT(evapi_test_status(r) == 403);
	EXPECT(strcmp(json_string_value(get(r, "detail")),
	              "Invalid authentication credentials") == 0);
	evapi_test_response_free(r);

	r = post(tc, "/notes", key, json_pack("{s:s,s:i}", "title", "", "text", 5));
	EXPECT(evapi_test_status(r) == 422); /* one item per problem */
	EXPECT(json_array_size(get(r, "detail")) == 2);
	evapi_test_response_free(r);

	r = evapi_test_get(tc, "/notes/9");
	EXPECT(evapi_test_status(r) == 404);
	EXPECT(strcmp(json_string_value(get(r, "detail")), "Note not found") == 0);
	evapi_test_response_free(r);
	r = evapi_test_get(tc, "/notes/0"); /* declared: id >= 1 */
	EXPECT(evapi_test_status(r) == 422);
	evapi_test_response_free(r);
	r = evapi_test_get(tc, "/notes");
	EXPECT(json_array_size(get(r, "items")) == 0); /* nothing was stored */
	evapi_test_response_free(r);
	EXPECT(evapi_test_stop(tc) == 0);
}

static void test_upstream(void)
{
	evapi_test *up = start_analyser(), *tc = start(up);
	evapi_test_response *r;

	evapi_test_response_free(post(tc, "/notes", key,
	        json_pack("{s:s,s:s}", "title", "eggs", "text", "twelve")));
	r = evapi_test_get(tc, "/notes/1/enriched"); /* on the pool */
	EXPECT(evapi_test_status(r) == 200);
	EXPECT(strcmp(json_string_value(get(r, "title")), "eggs") == 0);
	EXPECT(json_integer_value(json_object_get(get(r, "analysis"), "chars")) == 6);
	evapi_test_response_free(r);
	r = post(tc, "/notes/preview", NULL, json_pack("{s:s,s:s}", "title", "t", "text", "abc"));
	EXPECT(evapi_test_status(r) == 200); /* inline */
	EXPECT(json_integer_value(json_object_get(get(r, "analysis"), "chars")) == 3);
	evapi_test_response_free(r);
	r = evapi_test_get(tc, "/notes/2/enriched");
	EXPECT(evapi_test_status(r) == 404);
	evapi_test_response_free(r);
	r = post(tc, "/notes/preview", NULL, json_pack("{s:i}", "title", 1));
	EXPECT(evapi_test_status(r) == 422);
	evapi_test_response_free(r);
	EXPECT(evapi_test_stop(tc) == 0);
	EXPECT(evapi_test_stop(up) == 0);
}

static void test_upstream_down(void)
{
	evapi_test *tc = start(NULL);
	evapi_test_response *r;

	evapi_test_response_free(post(tc, "/notes", key, json_pack("{s:s}", "title", "x")));
	r = evapi_test_get(tc, "/notes/1/enriched");
	EXPECT(evapi_test_status(r) == 502);
	EXPECT(json_is_string(get(r, "detail")));
	evapi_test_response_free(r);
	r = post(tc, "/notes/preview", NULL, json_pack("{s:s}", "title", "x"));
	EXPECT(evapi_test_status(r) == 502);
	evapi_test_response_free(r);
	EXPECT(evapi_test_stop(tc) == 0);
}

static void test_feed(void)
{
	evapi_test *tc = start(NULL);
	evapi_test_stream *feed = evapi_test_open(tc, &(evapi_test_req){.path = "/feed"});
	evapi_test_sse ev;
	json_t *note;

	EXPECT(evapi_test_status(evapi_test_stream_response(feed)) == 200);
	evapi_test_response_free(post(tc, "/notes", key, json_pack("{s:s}", "title", "eggs")));
	EXPECT(evapi_test_sse_next(feed, &ev, 5000) == 0);
	note = json_loads(ev.data ? ev.data : "", 0, NULL);
	EXPECT(json_integer_value(json_object_get(note, "id")) == 1);
	EXPECT(json_is_string(json_object_get(note, "title")) &&
	       strcmp(json_string_value(json_object_get(note, "title")), "eggs") == 0);
	json_decref(note);
	/* a refused note is never published */
	evapi_test_response_free(post(tc, "/notes", NULL, json_pack("{s:s}", "title", "no")));
	EXPECT(evapi_test_sse_next(feed, &ev, 300) == EVAPI_ETIMEDOUT);
	evapi_test_stream_close(feed); /* the app sees the listener go */
	EXPECT(evapi_test_stop(tc) == 0);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {{"notes.create_read_list", test_create_read_list},
	             {"notes.errors", test_errors},
	             {"notes.upstream", test_upstream},
	             {"notes.upstream_down", test_upstream_down},
	             {"notes.feed", test_feed}};
	int passed = 0, ran = 0, i, j, before, want;

	for (i = 0; i < (int)(sizeof tests / sizeof tests[0]); i++) {
		for (want = argc == 1, j = 1; j < argc; j++)
			want |= strcmp(argv[j], tests[i].name) == 0;
		if (!want)
			continue;
		before = failed;
		tests[i].fn();
		printf("%s %s\n", failed == before ? "PASS" : "FAIL", tests[i].name);
		passed += failed == before;
		ran++;
	}
	printf("%d passed, %d failed\n", passed, ran - passed);
	return passed == ran ? 0 : 1;
}
