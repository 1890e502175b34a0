/*
 * test_target.c: what the server does with the request-target and the
 * connection-level headers evhttp would otherwise decide alone: routing
 * on the origin-form path exactly as sent (src/reactor.c), absolute- and
 * authority-form refused, Upgrade ignored and "Connection: close" always
 * said before a close (src/guard/frame.c, src/guard/guard.c). Raw sockets against a
 * real app at 127.0.0.1:0; every answer is checked byte-level: status,
 * JSON detail, how many responses, and whether the server closed.
 */
#include "harness.h"

#include <stdlib.h>

/* Reads this long; the idle timeout is longer, so "closed" means the
 * server closed at once instead of leaving a dead connection open. */
#define READ_SECS 1.5

/* ---- handlers ----------------------------------------------------------- */

/* Names the route, the path and query "a" it saw, and traces the route. */
static void named(evapi_req *req, void *arg)
{
	const char *a = evapi_req_query(req, "a");
	char out[512];
	size_t len;
	const char *body = evapi_req_body(req, &len);

	th_trace_add((const char *)arg);
	th_trace_add(";");
	snprintf(out, sizeof out, "route=%s path=%s a=%s body=%.*s",
	         (const char *)arg, evapi_req_path(req), a ? a : "-",
	         (int)len, body);
	evapi_reply_text(req, 200, out);
}

static void start(th_server *s)
{
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.access_log = 0;
	cfg.stats_routes = 1;
	cfg.idle_timeout_ms = 4000;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, named, "root");
	evapi_app_route(app, EVAPI_GET | EVAPI_POST, "/echo", EVAPI_INLINE,
	                named, "echo");
	evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, named, "hello");
	/* An empty first segment is a path like any other. */
	evapi_app_route(app, EVAPI_GET, "//lit/echo", EVAPI_INLINE, named,
	                "literal");
	th_server_start(s, app);
	th_trace_clear();
}

typedef struct talk {
	int status, closed, nresp;
	char buf[16384];
} talk;

/* Sends `raw` on a new connection and checks the first status (unless
 * `want` is 0). */
static void say(int port, const char *raw, int want, talk *t)
{
	t->status = th_exchange(port, raw, t->buf, sizeof t->buf, READ_SECS,
	                        &t->closed);
	t->nresp = th_count_responses(t->buf);
	if (want && t->status != want) {
		fprintf(stderr, "  sent: %s\n  got: %s\n", raw, t->buf);
		CHECK_INT(t->status, ==, want);
	}
}

/* One error answer, JSON, "Connection: close", and the server closed. */
#define CHECK_REFUSED(t)                                                     \
	do {                                                                 \
		CHECK_INT((t)->nresp, ==, 1);                                \
		CHECK_CONTAINS((t)->buf, "{\"detail\":");                    \
		CHECK_CONTAINS((t)->buf, "Connection: close");               \
		CHECK((t)->closed);                                          \
	} while (0)

/* ---- origin-form: the path exactly as sent ------------------------------ */

static void test_double_slash_routed_literally(void)
{
	static const struct {
		const char *raw;
		int status;
	} cases[] = {
		{"POST //foo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
		 "Connection: close\r\n\r\n", 404},
		{"POST //a@b:1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
		 "Connection: close\r\n\r\n", 404},
		{"GET //echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404},
		{"GET //x/_/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		 404},
		{"GET //x/echo?a=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		 404},
		{"GET //echo?a=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		 404},
		{"GET //x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404},
		{"GET //x?a=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404},
	};
	th_server s;
	talk t;
	size_t i;

	start(&s);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		say(s.port, cases[i].raw, cases[i].status, &t);
		CHECK_CONTAINS(t.buf, "{\"detail\":\"Not Found\"}");
	}
	/* no handler ran for any of them */
	CHECK_STR(th_trace(), "");
	/* the literal path reaches its own route, query and all */
	say(s.port, "GET //lit/echo?a=x HTTP/1.1\r\nHost: t\r\n"
	            "Connection: close\r\n\r\n", 200, &t);
	CHECK_CONTAINS(t.buf, "route=literal path=//lit/echo a=x ");
	th_server_stop(&s);
}

static void test_query_and_fragment(void)
{
	static const struct {
		const char *target;
		int status;
		const char *want;
	} cases[] = {
		{"/echo?a=//x/y", 200, "route=echo path=/echo a=//x/y "},
		{"/echo?a=%2F%2Fx&b", 200, "route=echo path=/echo a=//x "},
		/* a fragment is no part of the path or the query */
		{"/echo?a=1#frag", 200, "route=echo path=/echo a=1 "},
		{"/echo#x?a=1", 200, "route=echo path=/echo a=- "},
		/* the path is percent-decoded as before */
		{"/%65cho", 200, "route=echo path=/echo "},
		{"/echo%2F", 404, "{\"detail\":\"Not Found\"}"},
	};
	th_server s;
	talk t;
	char raw[256];
	size_t i;

	start(&s);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: t\r\n"
		         "Connection: close\r\n\r\n", cases[i].target);
		say(s.port, raw, cases[i].status, &t);
		CHECK_CONTAINS(t.buf, cases[i].want);
	}
	th_server_stop(&s);
}

/* ---- forms evapi does not serve ----------------------------------------- */

static void test_absolute_form_refused(void)
{
	static const char *const raws[] = {
		"POST http://x/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
		"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET http://t/echo HTTP/1.1\r\nHost: t\r\n\r\n"
		"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET HTTP://t/echo?a=1 HTTP/1.1\r\nHost: t\r\n\r\n"
		"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET https://t/echo HTTP/1.1\r\nHost: t\r\n\r\n"
		"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET http://t HTTP/1.1\r\nHost: t\r\n\r\n"
		"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET ftp://t/echo HTTP/1.1\r\nHost: t\r\n\r\n",
		/* authority-form is for CONNECT, which a proxy serves */
		"CONNECT t:80 HTTP/1.1\r\nHost: t:80\r\n\r\n"
		"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n",
	};
	th_server s;
	talk t;
	size_t i;

	start(&s);
	for (i = 0; i < sizeof raws / sizeof raws[0]; i++) {
		say(s.port, raws[i], 400, &t);
		CHECK_REFUSED(&t);
	}
	CHECK_STR(th_trace(), "");
	th_server_stop(&s);
}

/* "OPTIONS *" asks about the server (RFC 9110 9.3.7): 200, no content,
 * Allow with every method some route serves and OPTIONS; the connection
 * stays, so what follows is served. "*" is for OPTIONS only. */
static void test_options_asterisk(void)
{
	th_server s;
	talk t;

	start(&s);
	say(s.port, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"
	            "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
	    200, &t);
	CHECK_CONTAINS(t.buf, "Allow: GET, HEAD, POST, OPTIONS\r\n");
	CHECK_CONTAINS(t.buf, "Content-Length: 0\r\n");
	CHECK_INT(t.nresp, ==, 2);
	CHECK_CONTAINS(t.buf, "route=hello");
	CHECK(t.closed);
	say(s.port, "GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, &t);
	CHECK_CONTAINS(t.buf, "{\"detail\":");
	th_server_stop(&s);
}

/* ---- connection handling ------------------------------------------------ */

/* Upgrade on an ordinary route is ignored (RFC 9110 §7.8): the request
 * is served as HTTP/1.1 and so is everything pipelined behind it. */
static void test_upgrade_ignored_pipelined(void)
{
	th_server s;
	talk t;
	const char *second;

	start(&s);
	say(s.port, "GET /hello HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
	            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	            "GET /echo?a=2 HTTP/1.1\r\nHost: t\r\n"
	            "Connection: close\r\n\r\n", 200, &t);
	CHECK_INT(t.nresp, ==, 2);
	second = strstr(t.buf, "route=hello");
	CHECK(second && strstr(second, "route=echo path=/echo a=2") != NULL);
	CHECK(strstr(t.buf, "Upgrade") == NULL);
	CHECK(t.closed);

	/* h2c with a body, then a request that keeps the connection */
	say(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n"
	            "Connection: Upgrade, HTTP2-Settings\r\n"
	            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
	            "Content-Length: 5\r\n\r\nhello"
	            "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &t);
	CHECK_INT(t.nresp, ==, 2);
	CHECK_CONTAINS(t.buf, "route=echo path=/echo a=- body=hello");
	CHECK_CONTAINS(t.buf, "route=hello");
	CHECK(strstr(t.buf, "Connection: close") == NULL);
	CHECK(!t.closed); /* kept alive, as asked */
	CHECK_STR(th_trace(), "hello;echo;echo;hello;");
	th_server_stop(&s);
}

/* A request after which the server closes gets "Connection: close",
 * however the client spelled its own Connection header, and the close
 * follows at once. */
static void test_close_is_said(void)
{
	static const char *const raws[] = {
		"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, close"
		"\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: foo\r\n"
		"Connection: close\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, close\r\n"
		"Upgrade: websocket\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET /hello HTTP/1.0\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n",
	};
	th_server s;
	talk t;
	size_t i;

	start(&s);
	for (i = 0; i < sizeof raws / sizeof raws[0]; i++) {
		say(s.port, raws[i], 200, &t);
		CHECK_INT(t.nresp, ==, 1);
		CHECK_CONTAINS(t.buf, "route=hello");
		if (strncmp(t.buf, "HTTP/1.1", 8) == 0)
			CHECK_CONTAINS(t.buf, "Connection: close");
		CHECK(t.closed);
	}
	/* HTTP/1.0 keep-alive is kept, and said */
	say(s.port, "GET /hello HTTP/1.0\r\nConnection: keep-alive, foo\r\n\r\n"
	            "GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
	    200, &t);
	CHECK_INT(t.nresp, ==, 2);
	CHECK_CONTAINS(t.buf, "Connection: keep-alive");
	CHECK_CONTAINS(t.buf, "route=echo");
	CHECK(t.closed);
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"target.double_slash_routed_literally",
		 test_double_slash_routed_literally},
		{"target.query_and_fragment", test_query_and_fragment},
		{"target.absolute_form_refused", test_absolute_form_refused},
		{"target.options_asterisk", test_options_asterisk},
		{"target.upgrade_ignored_pipelined", test_upgrade_ignored_pipelined},
		{"target.close_is_said", test_close_is_said},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
