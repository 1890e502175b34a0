/*
 * notes_test.c: tests of the notes app (notes.c) with evapi/testing.h,
 * the way FastAPI's TestClient is used: the app runs in this process,
 * each request is one call, each reply is checked, the app is stopped.
 * Run by `make check`.
 */
#include <evapi/testing.h>
#include <stdio.h>
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

static evapi_test *start(void)
{
	evapi_config cfg;
	evapi_config_init(&cfg);
	cfg.log_level = EVAPI_LOG_WARN; /* no access log */
	return evapi_test_start(notes_app(&cfg));
}

static const char *field(evapi_test_response *r, const char *name)
{
	return json_string_value(json_object_get(evapi_test_json(r), name));
}

static void test_create_and_read(void)
{
	evapi_test *tc = start();
	evapi_test_response *r = evapi_test_request(tc, &(evapi_test_req){
		.method = "POST", .path = "/notes",
		.json = json_pack("{s:s}", "title", "milk")});

	EXPECT(evapi_test_status(r) == 201);
	EXPECT(strcmp(field(r, "id"), "1") == 0);
	EXPECT(strcmp(field(r, "text"), "") == 0); /* the declared default */
	evapi_test_response_free(r);

	r = evapi_test_get(tc, "/notes/1");
	EXPECT(evapi_test_status(r) == 200);
	EXPECT(strcmp(field(r, "title"), "milk") == 0);
	evapi_test_response_free(r);
	EXPECT(evapi_test_stop(tc) == 0);
}

static void test_errors(void)
{
	evapi_test *tc = start();
	evapi_test_response *r = evapi_test_get(tc, "/notes/9");

	EXPECT(evapi_test_status(r) == 404);
	EXPECT(strcmp(field(r, "detail"), "Note not found") == 0);
	evapi_test_response_free(r);

	r = evapi_test_request(tc, &(evapi_test_req){
		.path = "/notes", .json = json_pack("{s:s}", "title", "")});
	EXPECT(evapi_test_status(r) == 422);
	EXPECT(json_array_size(json_object_get(evapi_test_json(r), "detail")) == 1);
	evapi_test_response_free(r);
	EXPECT(evapi_test_stop(tc) == 0);
}

static void test_feed(void)
{
	evapi_test *tc = start();
	evapi_test_stream *feed = evapi_test_open(tc, &(evapi_test_req){.path = "/feed"});
	evapi_test_sse ev;

	evapi_test_response_free(evapi_test_request(tc, &(evapi_test_req){
		.path = "/notes", .json = json_pack("{s:s}", "title", "eggs")}));
	EXPECT(evapi_test_sse_next(feed, &ev, 2000) == 0);
	EXPECT(strcmp(ev.event, "created") == 0 && strcmp(ev.data, "eggs") == 0);
	evapi_test_stream_close(feed); /* the app sees the listener go */
	EXPECT(evapi_test_stop(tc) == 0);
}

int main(void)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {{"notes.create_and_read", test_create_and_read},
	             {"notes.errors", test_errors},
	             {"notes.feed", test_feed}};
	int passed = 0, i, before;

	for (i = 0; i < (int)(sizeof tests / sizeof tests[0]); i++) {
		before = failed;
		tests[i].fn();
		printf("%s %s\n", failed == before ? "PASS" : "FAIL", tests[i].name);
		passed += failed == before;
	}
	printf("%d passed, %d failed\n", passed, i - passed);
	return passed == i ? 0 : 1;
}
