/*
 * test_testing.c: the test client of evapi/testing.h against real apps:
 * one-call requests (status, headers, repeated headers, body, JSON, query,
 * request headers), FastAPI's error bodies (404, 422), the pool lane,
 * server-sent events and chunked bodies read as they arrive, a stream
 * closed early and seen by the server, lifespan hooks, a route that never
 * answers (bounded by the timeout), apps started and stopped in turn, and
 * WebSocket sessions (messages both ways, pings answered, the close
 * handshake from either side, a dropped connection, refusals).
 */
#include "harness.h"

#include <evapi/testing.h>
#include <stdlib.h>

#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_SEQ_CST)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)

/* ---- handlers ------------------------------------------------------------ */

/* GET /items/{id}?q=..: echoes what it was sent, with two Set-Cookie. */
static void get_item(evapi_req *req, void *arg)
{
	const char *a = evapi_req_header(req, "X-A");
	const char *q = evapi_req_query(req, "q");
	evapi_reply_add_header(req, "Set-Cookie", "a=1");
	evapi_reply_add_header(req, "Set-Cookie", "b=2");
	evapi_reply_json(req, 200,
	                 json_pack("{s:s, s:s?, s:s?, s:s}", "id",
	                           evapi_req_param(req, "id"), "q", q, "x_a",
	                           a, "lane", arg ? "pool" : "inline"));
}

/* POST /echo: the body and its Content-Type, as sent. */
static void echo(evapi_req *req, void *arg)
{
	size_t len;
	const char *body = evapi_req_body(req, &len);
	const char *ct = evapi_req_header(req, "Content-Type");
	evapi_reply_json(req, 201, json_pack("{s:s%, s:s?}", "body", body, len,
	                                     "ctype", ct));
}

static const evapi_field item_body[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1},
	{.name = "price", .type = EVAPI_NUMBER, .required = 1},
	{0}};

static void create_item(evapi_req *req, void *arg)
{
	json_t *body = NULL;
	evapi_req_json(req, &body);
	evapi_reply_json(req, 201, json_incref(body));
}

/* /sse: three events, then the end of the stream. */
static void sse_three(evapi_req *req, void *arg)
{
	static const char crlf[] = ": a comment\r\n\r\nevent: last\r\nid: 3\r\n"
	                           "data: bye\r\n\r\n";
	evapi_stream *s = evapi_reply_sse(req, 0);
	evapi_sse_send(s, "greet", "1", "hello");
	evapi_sse_send(s, NULL, NULL, "two\nlines");
	evapi_stream_write(s, crlf, sizeof crlf - 1);
	evapi_stream_close(s);
}

/* /chunks (pool): pieces a while apart. */
static void pool_chunks(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_stream(req, 200, "text/plain");
	int i;
	for (i = 0; i < 3; i++) {
		evapi_stream_printf(s, "piece %d;", i);
		th_sleep_ms(30);
	}
	evapi_stream_close(s);
}

/* /ticker: an event every 20 ms until the client leaves. */
static void tick(evapi_req *req, int status, void *arg)
{
	evapi_stream *s = arg;
	if (status != 0 || evapi_sse_send(s, "tick", NULL, "t") != 0 ||
	    evapi_req_sleep(req, 20, tick, s) != 0)
		evapi_stream_close(s);
}

static void on_ticker(evapi_stream *s, int status, void *arg)
{
	if (status == EVAPI_ECANCELED)
		th_trace_add("ticker gone;");
}

static void ticker(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	evapi_stream_set_cb(s, on_ticker, NULL);
	tick(req, 0, s);
}

/* /never: waits a minute before answering (client gone: cancelled). */
static void never_cb(evapi_req *req, int status, void *arg)
{
	if (status == EVAPI_ECANCELED)
		th_trace_add("never cancelled;");
	evapi_reply_text(req, 200, "late");
}

static void never(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 60000, never_cb, NULL);
}

/* /ws/{room}: echoes text as "<room>: <text>" (JSON objects and bytes
 * as they came); "kick" closes from the server with 4003; every close is
 * traced. */
static void ws_message(evapi_ws *ws, int binary, const char *data,
                       size_t len, void *arg)
{
	char t[128];
	if (binary) {
		evapi_ws_send_bytes(ws, data, len);
	} else if (data[0] == '{') {
		evapi_ws_send_text(ws, data);
	} else if (strcmp(data, "kick") == 0) {
		evapi_ws_close(ws, 4003, "kicked");
	} else {
		snprintf(t, sizeof t, "%s: %s", evapi_ws_param(ws, "room"), data);
		evapi_ws_send_text(ws, t);
	}
}

static void ws_closed(evapi_ws *ws, int code, const char *reason, void *arg)
{
	char t[160];
	snprintf(t, sizeof t, "closed %d %s;", code, reason ? reason : "");
	th_trace_add(t);
}

/* /ws-refuse: refused in on_open (the client gets 403). */
static void ws_refuse(evapi_ws *ws, void *arg)
{
	evapi_ws_close(ws, 1008, NULL);
}

static evapi_app *make_app(void)
{
	static const evapi_route_decl create = {
		.methods = EVAPI_POST, .path = "/items", .lane = EVAPI_INLINE,
		.cb = create_item, .body = item_body};
	static const char *const protos[] = {"chat", NULL};
	/* pings every 50 ms, closing after 500 ms without a pong: a
	 * session that outlives that answers pings */
	static const evapi_ws_opts ws_opts = {.subprotocols = protos,
	                                      .ping_interval_ms = 50,
	                                      .ping_timeout_ms = 500};
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.port = 8000; /* evapi_test_start picks a free port anyway */
	cfg.handle_signals = 1;
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/items/{id}", EVAPI_INLINE, get_item,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/pool/items/{id}", EVAPI_POOL,
	                get_item, (void *)1);
	evapi_app_route(app, EVAPI_POST | EVAPI_PUT, "/echo", EVAPI_INLINE,
	                echo, NULL);
	evapi_app_route_decl(app, &create);
	evapi_app_route(app, EVAPI_GET, "/sse", EVAPI_INLINE, sse_three, NULL);
	evapi_app_route(app, EVAPI_GET, "/chunks", EVAPI_POOL, pool_chunks,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/ticker", EVAPI_INLINE, ticker, NULL);
	evapi_app_route(app, EVAPI_GET, "/never", EVAPI_INLINE, never, NULL);
	evapi_app_websocket(app, "/ws/{room}", &ws_opts, NULL, ws_message,
	                    ws_closed, NULL);
	evapi_app_websocket(app, "/ws-refuse", NULL, ws_refuse, NULL, NULL,
	                    NULL);
	return app;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_round_trip(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_response *r;
	size_t len;
	json_t *j;

	CHECK(tc != NULL);
	CHECK_INT(evapi_test_port(tc), !=, 8000);
	r = evapi_test_request(tc, &(evapi_test_req){
		.path = "/items/42", .query = "q=blue",
		.headers = (const char *[]){"X-A: b", NULL}});
	CHECK_INT(evapi_test_error(r), ==, 0);
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_STR(evapi_test_header(r, "content-type"), "application/json");
	CHECK_STR(evapi_test_body(r, &len),
	          "{\"id\":\"42\",\"q\":\"blue\",\"x_a\":\"b\",\"lane\":\"inline\"}");
	CHECK_INT(len, ==, strlen(evapi_test_body(r, NULL)));
	j = evapi_test_json(r);
	CHECK_STR(json_string_value(json_object_get(j, "id")), "42");
	CHECK(evapi_test_json(r) == j); /* parsed once, borrowed */
	evapi_test_response_free(r);

	/* a JSON body, stolen by the call, with its Content-Type */
	r = evapi_test_request(tc, &(evapi_test_req){
		.method = "PUT", .path = "/echo",
		.json = json_pack("{s:i}", "n", 7)});
	CHECK_INT(evapi_test_status(r), ==, 201);
	CHECK_STR(json_string_value(json_object_get(evapi_test_json(r), "body")),
	          "{\"n\":7}");
	CHECK_STR(json_string_value(json_object_get(evapi_test_json(r), "ctype")),
	          "application/json");
	evapi_test_response_free(r);

	/* a raw body is POSTed with no Content-Type unless one is given */
	r = evapi_test_request(tc, &(evapi_test_req){.path = "/echo",
	                                              .body = "a\0b", .body_len = 3});
	CHECK_INT(evapi_test_status(r), ==, 201);
	CHECK_INT(json_string_length(json_object_get(evapi_test_json(r), "body")),
	          ==, 3);
	CHECK(json_is_null(json_object_get(evapi_test_json(r), "ctype")));
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_repeated_headers(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_response *r = evapi_test_get(tc, "/items/1");

	CHECK_STR(evapi_test_header(r, "Set-Cookie"), "a=1");
	CHECK_STR(evapi_test_header_at(r, "set-cookie", 0), "a=1");
	CHECK_STR(evapi_test_header_at(r, "SET-COOKIE", 1), "b=2");
	CHECK(evapi_test_header_at(r, "Set-Cookie", 2) == NULL);
	CHECK(evapi_test_header(r, "Set-Cook") == NULL);
	CHECK(evapi_test_header(r, "X-Nope") == NULL);
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_not_found_json(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_response *r = evapi_test_get(tc, "/nope");

	CHECK_INT(evapi_test_status(r), ==, 404);
	CHECK_STR(json_string_value(json_object_get(evapi_test_json(r), "detail")),
	          "Not Found");
	evapi_test_response_free(r);
	/* NULL-safe accessors */
	CHECK_INT(evapi_test_status(NULL), ==, 0);
	CHECK(evapi_test_json(NULL) == NULL);
	CHECK_STR(evapi_test_body(NULL, NULL), "");
	evapi_test_response_free(NULL);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_post_json_422(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_response *r;
	json_t *item;

	r = evapi_test_request(tc, &(evapi_test_req){
		.method = "POST", .path = "/items",
		.json = json_pack("{s:s}", "name", "pen")});
	CHECK_INT(evapi_test_status(r), ==, 422);
	item = json_array_get(json_object_get(evapi_test_json(r), "detail"), 0);
	CHECK_STR(json_string_value(json_object_get(item, "type")), "missing");
	CHECK_STR(json_string_value(json_array_get(json_object_get(item, "loc"), 1)),
	          "price");
	evapi_test_response_free(r);

	r = evapi_test_request(tc, &(evapi_test_req){
		.path = "/items",
		.json = json_pack("{s:s, s:f}", "name", "pen", "price", 1.5)});
	CHECK_INT(evapi_test_status(r), ==, 201);
	CHECK_DBL(json_real_value(json_object_get(evapi_test_json(r), "price")),
	          ==, 1.5);
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_pool_route(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_response *r = evapi_test_get(tc, "/pool/items/7");

	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_STR(json_string_value(json_object_get(evapi_test_json(r), "lane")),
	          "pool");
	CHECK_STR(json_string_value(json_object_get(evapi_test_json(r), "id")),
	          "7");
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_sse_events(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_stream *s = evapi_test_open(tc, &(evapi_test_req){.path = "/sse"});
	evapi_test_response *head = evapi_test_stream_response(s);
	evapi_test_sse ev;

	CHECK_INT(evapi_test_status(head), ==, 200);
	CHECK_STR(evapi_test_header(head, "Content-Type"), "text/event-stream");
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, 0);
	CHECK_STR(ev.event, "greet");
	CHECK_STR(ev.id, "1");
	CHECK_STR(ev.data, "hello");
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, 0);
	CHECK_STR(ev.event, "message");
	CHECK(ev.id == NULL);
	CHECK_STR(ev.data, "two\nlines");
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, 0); /* CRLF, a comment */
	CHECK_STR(ev.event, "last");
	CHECK_STR(ev.id, "3");
	CHECK_STR(ev.data, "bye");
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, EVAPI_ENOENT);
	CHECK_INT(evapi_test_error(head), ==, 0);
	evapi_test_stream_close(s);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_chunks_as_they_arrive(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_stream *s =
		evapi_test_open(tc, &(evapi_test_req){.path = "/chunks"});
	char buf[256], all[256] = "";
	long n;
	int reads = 0;

	CHECK_INT(evapi_test_status(evapi_test_stream_response(s)), ==, 200);
	while ((n = evapi_test_stream_read(s, buf, sizeof buf - 1, 0)) > 0) {
		buf[n] = '\0';
		strncat(all, buf, sizeof all - strlen(all) - 1);
		reads++;
	}
	CHECK_INT(n, ==, 0); /* the end of the body */
	CHECK_STR(all, "piece 0;piece 1;piece 2;");
	CHECK_INT(reads, >=, 2); /* 30 ms apart: not all in one read */
	evapi_test_stream_close(s);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_stream_close_seen_by_server(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_stream *s;
	evapi_test_sse ev;
	evapi_stats st;

	th_trace_clear();
	s = evapi_test_open(tc, &(evapi_test_req){.path = "/ticker"});
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, 0);
	CHECK_STR(ev.event, "tick");
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, 0);
	evapi_test_stream_close(s);
	CHECK(th_trace_wait("ticker gone;", 5));
	th_wait_idle(evapi_test_app(tc), 5);
	evapi_app_stats(evapi_test_app(tc), &st);
	CHECK_INT(st.in_flight, ==, 0);
	CHECK_INT(st.gone, ==, 1);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static int started, stopped;
static int on_start(evapi_app *app, void *arg)
{
	SET(started, 1);
	return GET(stopped) ? 0 : (int)(long)arg;
}
static int on_stop(evapi_app *app, void *arg)
{
	SET(stopped, GET(stopped) + 1);
	return 0;
}

static void test_lifespan_hooks(void)
{
	evapi_app *app = make_app();
	evapi_test *tc;

	SET(started, 0);
	SET(stopped, 0);
	evapi_app_on_startup(app, on_start, NULL);
	evapi_app_on_shutdown(app, on_stop, NULL);
	tc = evapi_test_start(app);
	CHECK(tc != NULL);
	CHECK_INT(GET(started), ==, 1); /* before the first request */
	CHECK_INT(GET(stopped), ==, 0);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
	CHECK_INT(GET(stopped), ==, 1);

	/* a failing startup hook: no client, the shutdown hooks ran */
	SET(stopped, 0);
	app = make_app();
	evapi_app_on_startup(app, on_start, (void *)(long)EVAPI_ESYS);
	evapi_app_on_shutdown(app, on_stop, NULL);
	CHECK(evapi_test_start(app) == NULL);
	CHECK_INT(GET(stopped), ==, 1);
	CHECK_CONTAINS(th_log(), "startup hook 0 failed");
	CHECK(evapi_test_start(NULL) == NULL);
	CHECK_INT(evapi_test_stop(NULL), ==, 0);
}

static void test_timeout_when_never_answered(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_response *r;
	evapi_test_stream *s;
	evapi_test_sse ev;
	double t0 = th_now();

	th_trace_clear();
	r = evapi_test_request(tc, &(evapi_test_req){.path = "/never",
	                                              .timeout_ms = 300});
	CHECK_INT(evapi_test_status(r), ==, 0);
	CHECK_INT(evapi_test_error(r), ==, EVAPI_ETIMEDOUT);
	CHECK_DBL(th_now() - t0, <, 3.0);
	evapi_test_response_free(r);
	/* the client went away: the server cancelled the wait */
	CHECK(th_trace_wait("never cancelled;", 5));

	/* the client-wide default, and a stream whose headers never come */
	evapi_test_set_timeout(tc, 200);
	t0 = th_now();
	s = evapi_test_open(tc, &(evapi_test_req){.path = "/never"});
	CHECK_INT(evapi_test_error(evapi_test_stream_response(s)), ==,
	          EVAPI_ETIMEDOUT);
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, EVAPI_ETIMEDOUT);
	evapi_test_stream_close(s);
	CHECK_DBL(th_now() - t0, <, 3.0);

	/* a quiet stream: the read times out, the stream stays usable */
	evapi_test_set_timeout(tc, 0);
	s = evapi_test_open(tc, &(evapi_test_req){.path = "/ticker"});
	CHECK_INT(evapi_test_sse_next(s, &ev, 0), ==, 0);
	evapi_test_stream_close(s);
	th_wait_idle(evapi_test_app(tc), 5);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_start_stop_twice(void)
{
	evapi_test *a = evapi_test_start(make_app());
	evapi_test *b = evapi_test_start(make_app());
	evapi_test_response *r;

	CHECK(a && b);
	CHECK_INT(evapi_test_port(a), !=, evapi_test_port(b));
	r = evapi_test_get(b, "/items/b");
	CHECK_INT(evapi_test_status(r), ==, 200);
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(a), ==, 0);
	CHECK_INT(evapi_test_stop(b), ==, 0);

	a = evapi_test_start(make_app());
	r = evapi_test_get(a, "/items/again");
	CHECK_INT(evapi_test_status(r), ==, 200);
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(a), ==, 0);
}

/* evapi_test_request from several threads at once (Thread-safe: yes). */
static void *requester(void *arg)
{
	evapi_test *tc = arg;
	long ok = 0;
	int i;
	for (i = 0; i < 5; i++) {
		evapi_test_response *r = evapi_test_get(tc, "/pool/items/t");
		ok += evapi_test_status(r) == 200;
		evapi_test_response_free(r);
	}
	return (void *)ok;
}

static void test_threads_share_a_client(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	pthread_t t[4];
	void *ok;
	int i;

	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, requester, tc);
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], &ok);
		CHECK_INT((long)ok, ==, 5);
	}
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_websocket(void)
{
	evapi_test *tc = evapi_test_start(make_app());
	evapi_test_ws *ws = evapi_test_ws_connect(tc, &(evapi_test_req){
		.path = "/ws/lobby",
		.headers = (const char *[]){"Sec-WebSocket-Protocol: chat", NULL}});
	evapi_test_ws_msg m;
	const char *reason;
	json_t *j;

	CHECK_INT(evapi_test_status(evapi_test_ws_response(ws)), ==, 101);
	CHECK_STR(evapi_test_header(evapi_test_ws_response(ws),
	                            "Sec-WebSocket-Protocol"), "chat");
	CHECK_INT(evapi_test_ws_close_code(ws, NULL), ==, 0);
	CHECK_INT(evapi_test_ws_send_text(ws, "hi"), ==, 0);
	CHECK_INT(evapi_test_ws_recv(ws, &m, 0), ==, 0);
	CHECK_INT(m.binary, ==, 0);
	CHECK_STR(m.data, "lobby: hi");
	CHECK_INT(evapi_test_ws_send_bytes(ws, "\0\1\2", 3), ==, 0);
	CHECK_INT(evapi_test_ws_recv(ws, &m, 0), ==, 0);
	CHECK_INT(m.binary, ==, 1);
	CHECK_INT(m.len, ==, 3);
	CHECK(memcmp(m.data, "\0\1\2", 3) == 0);
	/* a message over 64 KiB (several reads, 64-bit length) */
	{
		char *big = malloc(200000);
		memset(big, 'x', 200000);
		big[77] = 'y';
		CHECK_INT(evapi_test_ws_send_bytes(ws, big, 200000), ==, 0);
		CHECK_INT(evapi_test_ws_recv(ws, &m, 0), ==, 0);
		CHECK_INT(m.len, ==, 200000);
		CHECK(m.len == 200000 && memcmp(m.data, big, 200000) == 0);
		free(big);
	}
	CHECK_INT(evapi_test_ws_send_json(ws, json_pack("{s:i}", "n", 1)), ==, 0);
	j = evapi_test_ws_recv_json(ws, 0);
	CHECK_INT(json_integer_value(json_object_get(j, "n")), ==, 1);
	json_decref(j);
	/* quiet for longer than the ping timeout: the pings were answered */
	CHECK_INT(evapi_test_ws_recv(ws, &m, 800), ==, EVAPI_ETIMEDOUT);
	CHECK_INT(evapi_test_ws_close(ws, 4001, "bye"), ==, 0);
	CHECK_INT(evapi_test_ws_close_code(ws, &reason), ==, 4001);
	CHECK_INT(th_trace_wait("closed 4001 bye;", 5), ==, 1);
	CHECK_INT(evapi_test_ws_send_text(ws, "late"), ==, EVAPI_EGONE);
	CHECK_INT(evapi_test_ws_recv(ws, &m, 0), ==, EVAPI_EGONE);
	CHECK_INT(evapi_test_ws_close(ws, 1000, NULL), ==, EVAPI_EGONE);
	evapi_test_ws_free(ws);
	th_trace_clear();

	/* the server closes: the code and reason reach the client */
	ws = evapi_test_ws_connect(tc, &(evapi_test_req){.path = "/ws/a"});
	CHECK_INT(evapi_test_ws_send_text(ws, "kick"), ==, 0);
	CHECK_INT(evapi_test_ws_recv(ws, &m, 0), ==, EVAPI_EGONE);
	CHECK_INT(evapi_test_ws_close_code(ws, &reason), ==, 4003);
	CHECK_STR(reason, "kicked");
	CHECK_INT(th_trace_wait("closed 4003 kicked;", 5), ==, 1);
	evapi_test_ws_free(ws);

	/* dropped without a close frame: the server sees 1006 */
	ws = evapi_test_ws_connect(tc, &(evapi_test_req){.path = "/ws/b"});
	CHECK_INT(evapi_test_ws_send_text(ws, "x"), ==, 0);
	CHECK_INT(evapi_test_ws_recv(ws, &m, 0), ==, 0);
	evapi_test_ws_free(ws);
	CHECK_INT(th_trace_wait("closed 1006 ;", 5), ==, 1);

	/* refused, and no route: the HTTP answer, JSON body included */
	ws = evapi_test_ws_connect(tc, &(evapi_test_req){.path = "/ws-refuse"});
	CHECK_INT(evapi_test_status(evapi_test_ws_response(ws)), ==, 403);
	CHECK_INT(evapi_test_ws_send_text(ws, "x"), ==, EVAPI_EGONE);
	evapi_test_ws_free(ws);
	ws = evapi_test_ws_connect(tc, &(evapi_test_req){.path = "/nope"});
	CHECK_INT(evapi_test_status(evapi_test_ws_response(ws)), ==, 404);
	CHECK_STR(json_string_value(json_object_get(
		evapi_test_json(evapi_test_ws_response(ws)), "detail")),
	          "Not Found");
	CHECK_INT(evapi_test_ws_recv(ws, &m, 0), ==, EVAPI_EGONE);
	evapi_test_ws_free(ws);
	evapi_test_ws_free(NULL);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
	/* after the app stopped: no connection */
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"testing.round_trip", test_round_trip},
		{"testing.repeated_headers", test_repeated_headers},
		{"testing.not_found_json", test_not_found_json},
		{"testing.post_json_422", test_post_json_422},
		{"testing.pool_route", test_pool_route},
		{"testing.sse_events", test_sse_events},
		{"testing.chunks_as_they_arrive", test_chunks_as_they_arrive},
		{"testing.stream_close_seen_by_server",
		 test_stream_close_seen_by_server},
		{"testing.lifespan_hooks", test_lifespan_hooks},
		{"testing.timeout_when_never_answered",
		 test_timeout_when_never_answered},
		{"testing.start_stop_twice", test_start_stop_twice},
		{"testing.threads_share_a_client", test_threads_share_a_client},
		{"testing.websocket", test_websocket},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
