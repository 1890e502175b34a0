/*
 * test_guard.c: the request guard (src/guard/guard.c, src/guard/frame.c) on a real
 * app at 127.0.0.1:0, driven with raw sockets: one test per row of the
 * bad-input and fault table (framing, slow clients, limits, bodies).
 * Deadlines are configured short so the timing tests stay fast; their
 * assertions allow for sanitizer builds and a busy machine.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define HEADER_MS 600
#define BODY_MS 1200

/* ---- handlers ----------------------------------------------------------- */

static void hello(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "Hello", "World"));
}

static void echo(evapi_req *req, void *arg)
{
	size_t len;
	const char *b = evapi_req_body(req, &len);
	const char *t = evapi_req_header(req, "X-Trailer");
	evapi_reply_add_header(req, "X-Saw-Trailer", t ? "yes" : "no");
	evapi_reply_bytes(req, 200, "text/plain", b, len);
}

static void pool_slow(evapi_req *req, void *arg)
{
	th_sleep_ms(300);
	evapi_reply_json(req, 200, json_pack("{s:s}", "lane", "pool"));
}

static void sleep_done(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_text(req, 200, "slept");
}

static void inline_sleep(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 400, sleep_done, NULL);
}

static void json_route(evapi_req *req, void *arg)
{
	json_t *j;
	if (evapi_req_json(req, &j) != 0)
		return;
	evapi_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

#define BIG_REPLY (8 << 20)

static void big_reply(evapi_req *req, void *arg)
{
	char *b = malloc(BIG_REPLY);
	if (!b) {
		evapi_reply_error(req, 500, "Out of memory");
		return;
	}
	memset(b, 'b', BIG_REPLY);
	evapi_reply_bytes(req, 200, "application/octet-stream", b, BIG_REPLY);
	free(b);
}

/* guard.replies_after_the_turn: the clients' sockets, and the bytes
 * they held when the second /peek request was handled. */
static int peek_fds[2] = {-1, -1};
static int peek_calls;
static int peek_seen = -1;
static int stalling;

/* Holds the loop: requests sent meanwhile are read in one turn. */
static void stall(evapi_req *req, void *arg)
{
	__atomic_store_n(&stalling, 1, __ATOMIC_SEQ_CST);
	th_sleep_ms(300);
	evapi_reply_text(req, 200, "stalled");
}

static void peek(evapi_req *req, void *arg)
{
	if (__atomic_add_fetch(&peek_calls, 1, __ATOMIC_SEQ_CST) == 2) {
		int i, n, sum = 0;
		for (i = 0; i < 2; i++) {
			int fd = __atomic_load_n(&peek_fds[i], __ATOMIC_SEQ_CST);
			if (fd >= 0 && ioctl(fd, FIONREAD, &n) == 0)
				sum += n;
		}
		__atomic_store_n(&peek_seen, sum, __ATOMIC_SEQ_CST);
	}
	evapi_reply_text(req, 200, "peeked");
}

static const evapi_field decl_body[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1}, {0}};

static evapi_app *make_app(evapi_config *cfg)
{
	evapi_route_decl decl = {.methods = EVAPI_POST, .path = "/decl",
	                         .lane = EVAPI_INLINE, .cb = json_route,
	                         .body = decl_body};
	evapi_app *app = evapi_app_new(cfg);
	if (!app)
		return NULL;
	evapi_app_route_decl(app, &decl);
	evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, hello, NULL);
	evapi_app_route(app, EVAPI_POST, "/hello", EVAPI_INLINE, hello, NULL);
	evapi_app_route(app, EVAPI_POST, "/echo", EVAPI_INLINE, echo, NULL);
	evapi_app_route(app, EVAPI_GET, "/pool", EVAPI_POOL, pool_slow, NULL);
	evapi_app_route(app, EVAPI_GET, "/sleep", EVAPI_INLINE, inline_sleep,
	                NULL);
	evapi_app_route(app, EVAPI_POST, "/json", EVAPI_INLINE, json_route,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/big", EVAPI_INLINE, big_reply, NULL);
	evapi_app_route(app, EVAPI_GET, "/stall", EVAPI_INLINE, stall, NULL);
	evapi_app_route(app, EVAPI_GET, "/peek", EVAPI_INLINE, peek, NULL);
	return app;
}

static void guard_config(evapi_config *cfg)
{
	th_config(cfg);
	cfg->header_timeout_ms = HEADER_MS;
	cfg->body_timeout_ms = BODY_MS;
	cfg->idle_timeout_ms = 1000;
	cfg->max_body_bytes = 4096;
	cfg->access_log = 0;
}

static void start(th_server *s)
{
	evapi_config cfg;
	guard_config(&cfg);
	th_server_start(s, make_app(&cfg));
}

/* ---- raw client helpers ------------------------------------------------- */

static int connect_raw(int port)
{
	return th_connect_send(port, "");
}

static void send_bytes(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return; /* the server may have closed: that is tested */
		p += w;
		n -= (size_t)w;
	}
}

static void send_str(int fd, const char *s)
{
	send_bytes(fd, s, strlen(s));
}

#define KEEPALIVE_GET "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"

/* Sends `len` bytes, reads until the server closes (or `secs`), returns
 * the first status and whether the connection was closed. */
typedef struct exch {
	int status;
	int closed;
	long n;
	double secs;
	char buf[16384];
} exch;

static int first_status(const char *buf)
{
	int st = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &st) != 1)
		return 0;
	return st;
}

static int read_to_close(int fd, exch *e, double secs)
{
	double t0 = th_now();
	e->n = th_read_all(fd, e->buf, sizeof e->buf, secs);
	e->secs = th_now() - t0;
	e->closed = e->secs < secs - 0.05;
	e->status = first_status(e->buf);
	return e->status;
}

static int exchange(int port, const char *req, size_t len, exch *e)
{
	int fd = connect_raw(port);
	memset(e, 0, sizeof *e);
	if (fd < 0)
		return 0;
	send_bytes(fd, req, len);
	read_to_close(fd, e, 4);
	close(fd);
	return e->status;
}

static int exchange_str(int port, const char *req, exch *e)
{
	return exchange(port, req, strlen(req), e);
}

/* An error from the guard or the app: status, JSON detail, closed. */
#define CHECK_REJECT(e, want)                                                \
	do {                                                                 \
		CHECK_INT((e)->status, ==, (want));                          \
		CHECK_CONTAINS((e)->buf, "{\"detail\":");                    \
		CHECK_CONTAINS((e)->buf, "Connection: close");               \
		CHECK((e)->closed);                                          \
	} while (0)

/* ---- framing and syntax ------------------------------------------------- */

typedef struct bad_case {
	const char *what;
	const char *req;
	size_t len; /* 0: strlen */
	int status;
} bad_case;

#define POST_TE "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
#define POST_CL(v) "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " v "\r\n\r\n"

static const bad_case bad_cases[] = {
	{"CL and TE", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
	              "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400},
	{"two CLs", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
	            "Content-Length: 6\r\n\r\nhello!", 0, 400},
	{"CL -1", POST_CL("-1"), 0, 400},
	{"CL +5", POST_CL("+5") "hello", 0, 400},
	{"CL 0x10", POST_CL("0x10"), 0, 400},
	{"CL abc", POST_CL("abc"), 0, 400},
	{"CL 20 digits", POST_CL("99999999999999999999"), 0, 400},
	{"TE gzip", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip"
	            "\r\n\r\nhello", 0, 400},
	{"TE unknown coding", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-"
	                      "Encoding: foo, chunked\r\n\r\n0\r\n\r\n", 0, 501},
	{"TE on 1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "0\r\n\r\n", 0, 400},
	{"chunk 0x5", POST_TE "0x5\r\nhello\r\n0\r\n\r\n", 0, 400},
	{"chunk +5", POST_TE "+5\r\nhello\r\n0\r\n\r\n", 0, 400},
	{"chunk ' 5'", POST_TE " 5\r\nhello\r\n0\r\n\r\n", 0, 400},
	{"chunk '5 junk'", POST_TE "5 junk\r\nhello\r\n0\r\n\r\n", 0, 400},
	{"chunk empty", POST_TE "\r\nhello\r\n0\r\n\r\n", 0, 400},
	{"chunk overflow", POST_TE "FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", 0,
	 400},
	{"chunk data too long", POST_TE "5\r\nhelloXX\r\n0\r\n\r\n", 0, 400},
	{"space before colon", "GET /hello HTTP/1.1\r\nHost : t\r\n\r\n", 0, 400},
	{"empty header name", "GET /hello HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n", 0,
	 400},
	{"non-token name", "GET /hello HTTP/1.1\r\nHost: t\r\nX(y): 1\r\n\r\n", 0,
	 400},
	{"NUL in value", "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n", 36,
	 400},
	{"bare CR in value", "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 0,
	 400},
	{"control byte in value", "GET /hello HTTP/1.1\r\nHost: t\r\nX: a\x01"
	                          "b\r\n\r\n", 0, 400},
	{"no Host on 1.1", "GET /hello HTTP/1.1\r\n\r\n", 0, 400},
	{"two Hosts", "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, 400},
	{"HTTP/2.0", "GET /hello HTTP/2.0\r\nHost: t\r\n\r\n", 0, 505},
	{"HTTP/3.0", "GET /hello HTTP/3.0\r\nHost: t\r\n\r\n", 0, 505},
	{"garbage version", "GET /hello HTTP/x.y\r\nHost: t\r\n\r\n", 0, 400},
	{"unknown method", "FOO /hello HTTP/1.1\r\nHost: t\r\n\r\n", 0, 501},
	{"lowercase method", "get /hello HTTP/1.1\r\nHost: t\r\n\r\n", 0, 501},
	{"raw space in target", "GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 0, 400},
	{"control byte in target", "GET /a\x01 HTTP/1.1\r\nHost: t\r\n\r\n", 0,
	 400},
	{"garbage line", "GARBAGE\r\n\r\n", 0, 400},
	/* a bare CR is never a line ending (llhttp's strict parser) */
	{"bare CR ends the head", "GET /hello HTTP/1.1\r\nHost: a\r\n\rZGET "
	                          "/evil: HTTP/1.1\r\nHost: a\r\n\r\n", 0, 400},
	{"bare CR in chunk size", POST_TE "5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n"
	                          "GET /x HTTP/1.1\r\nHost: a\r\nX: 12345678901"
	                          "\r\n\r\n\r\n0\r\n\r\n", 0, 400},
	{"bare CR after chunk size", POST_TE "1\rXY\r\n0\r\n\r\n", 0, 400},
	{"bare CR after chunk data", POST_TE "1\r\nY\rX0\r\n\r\n", 0, 400},
	{"bare CR in chunk extension", POST_TE "1;a=b\rXY\r\n0\r\n\r\n", 0,
	 400},
	{"bare CR after trailers", POST_TE "0\r\n\rX", 0, 400},
	{"bare LF ends the request line", "GET /hello HTTP/1.1\nHost: t\r\n\r\n",
	 0, 400},
	/* obs-fold, on any field */
	{"obs-fold Transfer-Encoding", "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                               "Transfer-Encoding: \r\n chunked\r\n\r\n"
	                               "5\r\nhello\r\n0\r\n\r\n", 0, 400},
	{"obs-fold Host", "GET /hello HTTP/1.1\r\nHost: t\r\n x\r\n\r\n", 0, 400},
	{"obs-fold in a trailer", POST_TE "0\r\nX: a\r\n\tb\r\n\r\n", 0, 400},
	/* Host is host[:port] */
	{"Host a b", "GET /hello HTTP/1.1\r\nHost: a b\r\n\r\n", 0, 400},
	{"Host a/b", "GET /hello HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, 400},
	{"Host port not digits", "GET /hello HTTP/1.1\r\nHost: a:b\r\n\r\n", 0,
	 400},
	/* framing headers */
	{"CL ' 5'", POST_CL("5 5") "hello", 0, 400},
	{"CL list", POST_CL("5, 5") "hello", 0, 400},
	{"TE chunked, gzip", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-"
	                     "Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 0, 400},
	{"two TE chunked", "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-"
	                   "Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
	                   "\r\n0\r\n\r\n", 0, 400},
};

static void test_bad_framing_rejected(void)
{
	th_server s;
	size_t i;
	exch e;
	const char *only = getenv("EVAPI_TEST_CASE"); /* to bisect */

	start(&s);
	for (i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const bad_case *c = &bad_cases[i];
		int before = th_failed;
		if (only && (size_t)atoi(only) != i)
			continue;
		exchange(s.port, c->req, c->len ? c->len : strlen(c->req), &e);
		CHECK_REJECT(&e, c->status);
		if (th_failed != before)
			fprintf(stderr, "  ^ case: %s\n", c->what);
	}
	/* the server keeps serving */
	CHECK_INT(exchange_str(s.port, "GET /hello HTTP/1.1\r\nHost: t\r\n"
	                               "Connection: close\r\n\r\n", &e), ==, 200);
	th_server_stop(&s);
}

/* Sends `raw` in pieces of `piece` bytes, 20 ms apart, then reads the
 * answer into `buf` until the server closes; its status, or -1. */
static int send_in_pieces(int port, const char *raw, size_t len,
                          size_t piece, char *buf, size_t cap)
{
	int fd = th_connect_send(port, "");
	size_t off;
	for (off = 0; fd >= 0 && off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		if (off)
			th_sleep_ms(20);
		if (send(fd, raw + off, n, MSG_NOSIGNAL) < 0)
			break;
	}
	buf[0] = '\0';
	if (fd < 0)
		return -1;
	th_read_all(fd, buf, cap, 3.0);
	close(fd);
	return strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
}

/* The guard's own answer to a HEAD has its headers but no body: a body
 * there would be read by the client as the start of the next reply. */
static void test_head_rejected_without_body(void)
{
	th_server s;
	char buf[2048];
	const char *end;
	int closed = 0;

	start(&s);
	CHECK_INT(th_exchange(s.port, "HEAD /hello HTTP/1.1\r\nHost: a\r\n"
	                              "Host: b\r\n\r\n",
	                      buf, sizeof buf, 3.0, &closed), ==, 400);
	CHECK(closed);
	CHECK(strstr(buf, "Connection: close\r\n") != NULL);
	CHECK(strstr(buf, "Content-Length: ") != NULL);
	end = strstr(buf, "\r\n\r\n");
	CHECK(end != NULL);
	if (end)
		CHECK_INT((int)strlen(end + 4), ==, 0);
	/* A bare LF after the target ends an HTTP/0.9 line, refused; llhttp
	 * (strict, as a client reading the whole stream would parse it)
	 * completes the target only at the byte after that LF. Sent three
	 * bytes at a time, the LF ends a piece: the answer is still a
	 * HEAD's (found by fuzz_server) */
	{
		static const char raw[] = "\r\n\r\nHEAD /h\nHo`st: a\r\n\r\n";
		CHECK_INT(send_in_pieces(s.port, raw, sizeof raw - 1, 3, buf,
		                         sizeof buf), ==, 400);
		end = strstr(buf, "\r\n\r\n");
		CHECK(end != NULL);
		if (end)
			CHECK_INT((int)strlen(end + 4), ==, 0);
	}
	/* ... while a bare CR there is refused before the target is
	 * complete, however the bytes come: the answer has its body */
	{
		static const char raw[] = "HEAD /x\rHEAD : a";
		size_t piece;
		for (piece = 1; piece <= sizeof raw - 1; piece += 7) {
			CHECK_INT(send_in_pieces(s.port, raw, sizeof raw - 1,
			                         piece, buf, sizeof buf), ==, 400);
			CHECK(strstr(buf, "{\"detail\":") != NULL);
		}
	}
	/* a GET still gets the JSON body */
	CHECK_INT(th_exchange(s.port, "GET /hello HTTP/1.1\r\nHost: a\r\n"
	                              "Host: b\r\n\r\n",
	                      buf, sizeof buf, 3.0, &closed), ==, 400);
	CHECK(strstr(buf, "{\"detail\":") != NULL);
	th_server_stop(&s);
}

static void test_target_escapes(void)
{
	static const char *const targets[] = {"/hello%00", "/a%", "/a%1",
	                                      "/hello?q=%zz"};
	th_server s;
	char req[256];
	size_t i;
	exch e;

	start(&s);
	for (i = 0; i < sizeof targets / sizeof targets[0]; i++) {
		snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n"
		         "Connection: close\r\n\r\n", targets[i]);
		CHECK_INT(exchange_str(s.port, req, &e), ==, 400);
		CHECK_CONTAINS(e.buf, "{\"detail\":");
	}
	/* dot segments are never resolved into another route */
	CHECK_INT(exchange_str(s.port, "GET /x/../hello HTTP/1.1\r\nHost: t\r\n"
	                               "Connection: close\r\n\r\n", &e), ==, 404);
	CHECK_INT(exchange_str(s.port, "GET /%2e%2e%2fhello HTTP/1.1\r\nHost: t"
	                               "\r\nConnection: close\r\n\r\n", &e), ==,
	          404);
	th_server_stop(&s);
}

static void test_header_limits_431(void)
{
	th_server s;
	size_t n, i;
	char *req;
	exch e;

	start(&s);
	/* one 64 KiB header line */
	n = 65536 + 256;
	req = malloc(n);
	i = (size_t)snprintf(req, n, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
	memset(req + i, 'a', 65536);
	memcpy(req + i + 65536, "\r\n\r\n", 5);
	exchange(s.port, req, strlen(req), &e);
	CHECK_REJECT(&e, 431);
	free(req);
	/* 10 000 headers */
	n = 10000 * 12 + 64;
	req = malloc(n);
	i = (size_t)snprintf(req, n, "GET /hello HTTP/1.1\r\nHost: t\r\n");
	while (i + 16 < n - 8)
		i += (size_t)snprintf(req + i, n - i, "X-%05zu: 1\r\n", i % 100000);
	memcpy(req + i, "\r\n", 3);
	exchange(s.port, req, strlen(req), &e);
	CHECK_REJECT(&e, 431);
	free(req);
	/* a header section just over 8 KiB in 60 fields */
	n = 9000;
	req = malloc(n + 256);
	i = (size_t)snprintf(req, n, "GET /hello HTTP/1.1\r\nHost: t\r\n");
	while (i < n - 200)
		i += (size_t)snprintf(req + i, n + 256 - i, "X-Pad: %0140d\r\n", 0);
	memcpy(req + i, "\r\n", 3);
	exchange(s.port, req, strlen(req), &e);
	CHECK_REJECT(&e, 431);
	free(req);
	th_server_stop(&s);
}

static void test_target_limit_414(void)
{
	th_server s;
	char req[6000];
	exch e;
	int n;

	start(&s);
	n = snprintf(req, sizeof req, "GET /");
	memset(req + n, 'a', 5000);
	snprintf(req + n + 5000, sizeof req - (size_t)n - 5000,
	         " HTTP/1.1\r\nHost: t\r\n\r\n");
	exchange_str(s.port, req, &e);
	CHECK_REJECT(&e, 414);
	th_server_stop(&s);
}

static void test_chunk_extension_and_trailer(void)
{
	th_server s;
	exch e;

	start(&s);
	CHECK_INT(exchange_str(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                               "Transfer-Encoding: chunked\r\n"
	                               "Connection: close\r\n\r\n"
	                               "5;a=b\r\nhello\r\n6\r\n world\r\n"
	                               "0\r\nX-Trailer: 1\r\n\r\n", &e), ==, 200);
	CHECK_CONTAINS(e.buf, "\r\n\r\nhello world");
	CHECK_CONTAINS(e.buf, "X-Saw-Trailer: no");
	th_server_stop(&s);
}

static void test_method_405_allow(void)
{
	th_server s;
	exch e;

	start(&s);
	CHECK_INT(exchange_str(s.port, "DELETE /hello HTTP/1.1\r\nHost: t\r\n"
	                               "Connection: close\r\n\r\n", &e), ==, 405);
	CHECK_CONTAINS(e.buf, "Allow: GET, HEAD, POST");
	CHECK_CONTAINS(e.buf, "{\"detail\":");
	th_server_stop(&s);
}

static void test_expect_continue(void)
{
	th_server s;
	exch e;
	int fd;
	char buf[512];
	long n;

	start(&s);
	/* within the limit: 100 Continue before the body is sent */
	fd = th_connect_send(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                             "Content-Length: 5\r\nExpect: 100-continue\r\n"
	                             "Connection: close\r\n\r\n");
	n = recv(fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	CHECK_CONTAINS(buf, "HTTP/1.1 100 Continue\r\n\r\n");
	send_bytes(fd, "hello", 5);
	read_to_close(fd, &e, 3);
	close(fd);
	CHECK_INT(e.status, ==, 200);
	CHECK_CONTAINS(e.buf, "hello");
	/* over the limit: 413 and no 100 */
	exchange_str(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                     "Content-Length: 999999\r\nExpect: 100-continue\r\n\r\n",
	             &e);
	CHECK_REJECT(&e, 413);
	CHECK(strstr(e.buf, "100 Continue") == NULL);
	/* an expectation we do not know */
	exchange_str(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                     "Content-Length: 5\r\nExpect: foo\r\n\r\nhello", &e);
	CHECK_REJECT(&e, 417);
	th_server_stop(&s);
}

static long read_until(int fd, char *buf, size_t cap, const char *what,
                       double secs);

/* The final status is known from the head: it is sent instead of 100,
 * and the body is never asked for (the connection closes after it). */
static void test_expect_known_status(void)
{
	static const struct {
		const char *req;
		int status;
		const char *has;
	} cases[] = {
		{"POST /nowhere HTTP/1.1\r\n", 404, "Not Found"},
		{"PUT /hello HTTP/1.1\r\n", 405, "Allow: GET, HEAD, POST\r\n"},
		{"POST /decl HTTP/1.1\r\nContent-Type: text/plain\r\n", 415,
		 "expected application/json"},
		{"POST /echo HTTP/1.1\r\nContent-Type: text/plain\r\n", 200,
		 "100 Continue"},
	};
	th_server s;
	char req[512];
	size_t i;
	exch e;
	int fd;

	start(&s);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(req, sizeof req, "%sHost: t\r\nContent-Length: 5\r\n"
		         "Expect: 100-continue\r\nConnection: close\r\n\r\n",
		         cases[i].req);
		fd = th_connect_send(s.port, req);
		memset(&e, 0, sizeof e);
		if (cases[i].status == 200) {
			/* a route that takes the body: 100, then the answer */
			read_until(fd, e.buf, sizeof e.buf, "\r\n\r\n", 3);
			CHECK_STR(e.buf, "HTTP/1.1 100 Continue\r\n\r\n");
			send_bytes(fd, "hello", 5);
			read_to_close(fd, &e, 3);
			CHECK_INT(e.status, ==, 200);
			CHECK_CONTAINS(e.buf, "hello");
		} else {
			read_to_close(fd, &e, 3); /* no body sent */
			CHECK_REJECT(&e, cases[i].status);
			CHECK_CONTAINS(e.buf, cases[i].has);
			CHECK(strstr(e.buf, "100 Continue") == NULL);
		}
		close(fd);
	}
	th_server_stop(&s);
}

/* A before hook may answer a path no route has: with one registered,
 * nothing is known from the head, so the client is asked for its body. */
static int answer_mw(evapi_req *req, void *arg)
{
	if (strcmp(evapi_req_path(req), "/mw") != 0)
		return 0;
	evapi_reply_text(req, 200, "from middleware");
	return 1;
}

static void test_expect_with_middleware(void)
{
	evapi_config cfg;
	evapi_app *app;
	th_server s;
	exch e;
	int fd;

	guard_config(&cfg);
	app = make_app(&cfg);
	evapi_app_middleware(app, answer_mw, NULL, NULL);
	th_server_start(&s, app);
	fd = th_connect_send(s.port, "POST /mw HTTP/1.1\r\nHost: t\r\n"
	                             "Content-Length: 5\r\nExpect: 100-continue"
	                             "\r\nConnection: close\r\n\r\n");
	memset(&e, 0, sizeof e);
	read_until(fd, e.buf, sizeof e.buf, "\r\n\r\n", 3);
	CHECK_STR(e.buf, "HTTP/1.1 100 Continue\r\n\r\n");
	send_bytes(fd, "hello", 5);
	read_to_close(fd, &e, 3);
	close(fd);
	CHECK_INT(e.status, ==, 200);
	CHECK_CONTAINS(e.buf, "from middleware");
	th_server_stop(&s);
}

/* A chunk line longer than max_chunk_line_bytes: 400 once the bound is
 * crossed (tests/test_frame.c shows the rest is never parsed). */
static void test_chunk_line_bound(void)
{
	const size_t ext = 64 * 1024;
	size_t hl = strlen(POST_TE), n;
	th_server s;
	char *req;
	exch e;

	start(&s);
	req = malloc(hl + ext + 64);
	memcpy(req, POST_TE "1;a=", hl + 4);
	memset(req + hl + 4, 'b', ext);
	n = hl + 4 + ext;
	n += (size_t)sprintf(req + n, "\r\nX\r\n0\r\n\r\n");
	exchange(s.port, req, n, &e);
	CHECK_REJECT(&e, 400);
	CHECK_CONTAINS(e.buf, "Chunk line too long");
	free(req);
	th_server_stop(&s);
}

static void test_pipelining_in_order(void)
{
	th_server s;
	exch e;
	const char *a, *b, *c;

	start(&s);
	exchange_str(s.port,
	             "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
	             "GET /pool HTTP/1.1\r\nHost: t\r\n\r\n"
	             "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nlast"
	             "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
	             &e);
	a = strstr(e.buf, "{\"Hello\":\"World\"}");
	b = strstr(e.buf, "{\"lane\":\"pool\"}");
	c = strstr(e.buf, "last");
	CHECK(a && b && c);
	CHECK(a < b && b < c);
	CHECK(c && strstr(c, "{\"Hello\":\"World\"}") != NULL);
	th_server_stop(&s);
}

static void test_valid_then_garbage(void)
{
	th_server s;
	exch e;
	const char *second;

	start(&s);
	exchange_str(s.port, "GET /pool HTTP/1.1\r\nHost: t\r\n\r\n"
	                     "\x01\x02garbage\r\n\r\n", &e);
	CHECK_INT(e.status, ==, 200);
	second = strstr(e.buf, "{\"lane\":\"pool\"}");
	CHECK(second != NULL);
	if (second) {
		CHECK_INT(first_status(strstr(second, "HTTP/1.1")), ==, 400);
		CHECK_CONTAINS(second, "Connection: close");
	}
	CHECK(e.closed);
	th_server_stop(&s);
}

/* Reads until `what` arrived (or EOF, or `secs` pass). */
static long read_until(int fd, char *buf, size_t cap, const char *what,
                       double secs)
{
	double end = th_now() + secs;
	long total = 0;

	buf[0] = '\0';
	while (!strstr(buf, what) && th_now() < end &&
	       (size_t)total < cap - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = read(fd, buf + total, cap - 1 - (size_t)total);
		if (n <= 0)
			break;
		total += n;
		buf[total] = '\0';
	}
	return total;
}

/* A keep-alive connection drops its parser while its request waits on
 * a handler and makes a new one, with the same rules, for the next
 * request; a request partly read meanwhile keeps its parser. After
 * "Connection: close" nothing more is parsed. */
static void test_parser_freed_while_waiting(void)
{
	th_server s;
	char buf[8192];
	const char *a, *b;
	exch e;
	int fd;

	start(&s);
	fd = th_connect_send(s.port, "GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n"
	                             "GET /hello HTTP/1.1\r\nHo");
	CHECK(fd >= 0);
	if (fd >= 0) {
		th_sleep_ms(100);
		send_str(fd, "st: t\r\n\r\n");
		read_until(fd, buf, sizeof buf, "{\"Hello\":\"World\"}", 4);
		a = strstr(buf, "slept");
		b = strstr(buf, "{\"Hello\":\"World\"}");
		CHECK(a && b && a < b);
		send_str(fd, "GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n");
		read_until(fd, buf, sizeof buf, "slept", 4);
		CHECK_INT(first_status(buf), ==, 200);
		CHECK_CONTAINS(buf, "slept");
		send_str(fd, "GET /hello HTTP/1.1\r\n\r\n"); /* no Host */
		memset(&e, 0, sizeof e);
		read_to_close(fd, &e, 4);
		CHECK_REJECT(&e, 400);
		close(fd);
	}
	exchange_str(s.port, "GET /sleep HTTP/1.1\r\nHost: t\r\n"
	                     "Connection: close\r\n\r\nGARBAGE\r\n\r\n", &e);
	CHECK_INT(e.status, ==, 200);
	CHECK(e.closed);
	CHECK(strstr(e.buf, "HTTP/1.1 400") == NULL);
	th_server_stop(&s);
}

/* ---- slow and silent clients -------------------------------------------- */

static void test_silent_close_at_header_deadline(void)
{
	th_server s;
	exch e;
	int fd, i;

	start(&s);
	for (i = 0; i < 2; i++) {
		fd = connect_raw(s.port);
		if (i == 1)
			send_bytes(fd, "\r\n\r\n", 4);
		read_to_close(fd, &e, 5);
		close(fd);
		CHECK_INT(e.n, ==, 0); /* closed without a byte */
		CHECK(e.closed);
		CHECK_DBL(e.secs, >=, HEADER_MS / 1000.0 - 0.05);
		CHECK_DBL(e.secs, <, HEADER_MS / 1000.0 + 0.5);
		printf("    silent close after %.3f s (header deadline %.3f s)\n",
		       e.secs, HEADER_MS / 1000.0);
	}
	th_server_stop(&s);
}

static void test_slowloris_header_deadline(void)
{
	const char *req = "GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaa"
	                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	th_server s;
	exch e;
	double t0, closed_at = 0;
	size_t i;
	int fd;

	start(&s);
	fd = connect_raw(s.port);
	t0 = th_now();
	/* one byte every 50 ms, steadily: a per-byte timeout never fires */
	for (i = 0; i < strlen(req) && th_now() - t0 < 3; i++) {
		struct pollfd p = {fd, POLLIN, 0};
		send_bytes(fd, req + i, 1);
		if (poll(&p, 1, 50) > 0) {
			closed_at = th_now() - t0;
			break;
		}
	}
	read_to_close(fd, &e, 3);
	close(fd);
	CHECK(closed_at > 0);
	CHECK_INT(e.status, ==, 408);
	CHECK_DBL(closed_at, >=, HEADER_MS / 1000.0 - 0.05);
	CHECK_DBL(closed_at, <, HEADER_MS / 1000.0 + 0.5);
	printf("    slowloris cut after %.3f s (header deadline %.3f s)\n",
	       closed_at, HEADER_MS / 1000.0);
	th_server_stop(&s);
}

static void test_slow_body_request_deadline(void)
{
	th_server s;
	th_resp r;
	exch e;
	double t0, closed_at = 0, other = 0;
	int fd, i;

	start(&s);
	fd = th_connect_send(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                             "Content-Length: 1000\r\n\r\n");
	t0 = th_now();
	for (i = 0; i < 1000 && th_now() - t0 < 4; i++) {
		struct pollfd p = {fd, POLLIN, 0};
		send_bytes(fd, "x", 1);
		if (i == 5) { /* another client meanwhile: unaffected */
			double t1 = th_now();
			CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &r), ==, 200);
			other = th_now() - t1;
		}
		if (poll(&p, 1, 50) > 0) {
			closed_at = th_now() - t0;
			break;
		}
	}
	read_to_close(fd, &e, 3);
	close(fd);
	CHECK_INT(e.status, ==, 408);
	CHECK_DBL(closed_at, >=, BODY_MS / 1000.0 - 0.05);
	CHECK_DBL(closed_at, <, BODY_MS / 1000.0 + 0.5);
	CHECK_DBL(other, <, 0.5);
	printf("    slow body cut after %.3f s (request deadline %.3f s); "
	       "other client answered in %.3f s\n",
	       closed_at, BODY_MS / 1000.0, other);
	th_server_stop(&s);
}

static void test_keepalive_idle_and_max_requests(void)
{
	evapi_config cfg;
	th_server s;
	exch e;
	int fd;
	const char *p;

	guard_config(&cfg);
	cfg.keepalive_max_requests = 2;
	th_server_start(&s, make_app(&cfg));
	/* idle keep-alive connection: closed at the idle timeout */
	fd = th_connect_send(s.port, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
	read_to_close(fd, &e, 4);
	close(fd);
	CHECK_INT(e.status, ==, 200);
	CHECK(e.closed);
	CHECK_DBL(e.secs, >=, 0.95);
	CHECK_DBL(e.secs, <, 1.6);
	printf("    idle keep-alive closed after %.3f s (timeout 1 s)\n", e.secs);
	/* the second request is the last: Connection: close, third dropped */
	exchange_str(s.port, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
	                     "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
	                     "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", &e);
	p = strstr(e.buf, "HTTP/1.1 200");
	p = p ? strstr(p + 1, "HTTP/1.1 200") : NULL;
	CHECK(p != NULL);
	CHECK(p && strstr(p + 1, "HTTP/1.1") == NULL);
	CHECK(p && strstr(p, "Connection: close") != NULL);
	CHECK(e.closed);
	th_server_stop(&s);
}

/* A reader taking an 8 MiB reply at 1 KiB/s: however steady, it is cut
 * at the whole-reply write deadline (the write-idle cut alone would wait
 * for body_timeout_ms, 30 s here); a normal reader gets the same reply
 * whole, and other clients are served meanwhile. */
static void test_slow_reader_reply_deadline(void)
{
	static char buf[65536];
	evapi_config cfg;
	th_server s;
	th_resp r;
	evapi_stats st;
	double start, cut = -1;
	long total = 0, n;
	int fd, other_ok = 0;

	guard_config(&cfg);
	cfg.body_timeout_ms = 30000;
	cfg.reply_write_timeout_ms = 1000;
	th_server_start(&s, make_app(&cfg));

	fd = th_connect_send(s.port, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
	n = th_read_all(fd, buf, sizeof buf, 10);
	CHECK_INT(n, >, BIG_REPLY);
	CHECK_INT(n, <, BIG_REPLY + 300);
	CHECK_CONTAINS(buf, "HTTP/1.1 200");
	close(fd);

	fd = th_connect_rcvbuf(s.port, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n",
	                       4096);
	start = th_now();
	{
		struct timeval tv = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	}
	/* 1 KiB a second; the connection's TCP state, polled meanwhile,
	 * tells when the server let go (the bytes already received would
	 * hide a reset from recv for several seconds more). */
	while (th_now() - start < 6 && cut < 0) {
		double t0 = th_now();
		n = recv(fd, buf, 1024, MSG_DONTWAIT);
		if (n > 0)
			total += n;
		if (!other_ok && th_now() - start > 0.2) {
			CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &r), ==, 200);
			CHECK_DBL(r.secs, <, 1.0); /* busy machines, valgrind */
			other_ok = 1;
		}
		while (th_now() - t0 < 1.0) {
			struct tcp_info ti;
			socklen_t tl = sizeof ti;
			if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
			    ti.tcpi_state != TCP_ESTABLISHED) {
				cut = th_now() - start;
				break;
			}
			th_sleep_ms(20);
		}
	}
	close(fd);
	CHECK(other_ok);
	CHECK_DBL(cut, >=, 0.9);
	CHECK_DBL(cut, <, 4.0);
	CHECK_INT(total, <, 64 * 1024);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.reply_write_timeouts, ==, 1);
	CHECK_CONTAINS(th_log(), "did not read its reply within 1000 ms");
	fprintf(stderr, "  note: cut after %.2f s having read %ld bytes\n", cut,
	        total);
	th_wait_idle(s.app, 3);
	th_server_stop(&s);
}

static void test_connection_cap(void)
{
	evapi_config cfg;
	th_server s;
	exch e;
	int fds[4], i, fd;
	double t0;

	guard_config(&cfg);
	cfg.max_connections = 4;
	cfg.header_timeout_ms = 5000;
	th_server_start(&s, make_app(&cfg));
	for (i = 0; i < 4; i++)
		fds[i] = connect_raw(s.port);
	th_sleep_ms(100);
	t0 = th_now();
	fd = connect_raw(s.port);
	read_to_close(fd, &e, 3);
	close(fd);
	CHECK_REJECT(&e, 503);
	CHECK_DBL(th_now() - t0, <, 1.5);
	/* the existing ones still work */
	send_str(fds[0], "GET /hello HTTP/1.1\r\nHost: t\r\n"
	                 "Connection: close\r\n\r\n");
	read_to_close(fds[0], &e, 3);
	CHECK_INT(e.status, ==, 200);
	for (i = 0; i < 4; i++)
		close(fds[i]);
	th_server_stop(&s);
}

/* ---- bodies ------------------------------------------------------------------ */

static void test_body_limit_413(void)
{
	th_server s;
	exch e;
	char chunk[1100];
	int fd, i;

	start(&s);
	exchange_str(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                     "Content-Length: 5000\r\n\r\n", &e);
	CHECK_REJECT(&e, 413);
	/* chunked: noticed as the bytes arrive, before the body ends */
	fd = th_connect_send(s.port, "POST /echo HTTP/1.1\r\nHost: t\r\n"
	                             "Transfer-Encoding: chunked\r\n\r\n");
	memset(chunk, 'z', sizeof chunk);
	memcpy(chunk, "400\r\n", 5);
	memcpy(chunk + 5 + 1024, "\r\n", 2);
	for (i = 0; i < 5; i++)
		send_bytes(fd, chunk, 5 + 1024 + 2);
	read_to_close(fd, &e, 3);
	close(fd);
	CHECK_REJECT(&e, 413);
	th_server_stop(&s);
}

static void test_json_bodies_422(void)
{
	static const char *const bodies[] = {
		"{\"a\":", "{\"a\":\"\xff\"}", "{\"a\":\"\\ud800\"}", "{} x",
		"{\"a\":NaN}", NULL};
	th_server s;
	th_resp r;
	char deep[300];
	int i;

	start(&s);
	for (i = 0; bodies[i]; i++) {
		CHECK_INT(th_http(s.port, "POST", "/json", bodies[i], &r), ==, 422);
		CHECK_CONTAINS(r.body, "\"type\":\"json_invalid\"");
	}
	for (i = 0; i < 65; i++)
		deep[i] = '[';
	for (; i < 130; i++)
		deep[i] = ']';
	deep[i] = '\0';
	CHECK_INT(th_http(s.port, "POST", "/json", deep, &r), ==, 422);
	CHECK_CONTAINS(r.body, "nesting deeper than 64");
	deep[64] = ']'; /* 64 levels: fine */
	deep[129] = '\0';
	memmove(deep + 64, deep + 65, 65);
	CHECK_INT(th_http(s.port, "POST", "/json", deep, &r), ==, 200);
	th_server_stop(&s);
}

/* ---- disconnects ------------------------------------------------------------- */

static void test_disconnect_every_stage(void)
{
	static const char *const stages[] = {
		"GET /hel",                                              /* mid-line */
		"GET /hello HTTP/1.1\r\nHost: t\r\nX-A",                  /* mid-head */
		"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab",
		POST_TE "5\r\nhel",                                      /* mid-chunk */
		"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n",                /* inline wait */
		"GET /pool HTTP/1.1\r\nHost: t\r\n\r\n",                 /* pool job */
		"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
		"Content-Length: 3\r\n\r\n",                             /* after 100 */
		NULL};
	th_server s;
	evapi_stats st;
	th_resp r;
	int i;
	double t0;

	start(&s);
	for (i = 0; stages[i]; i++)
		th_send_and_close(s.port, stages[i], 50);
	/* everything settles: nothing in flight, the server still answers */
	t0 = th_now();
	do {
		th_sleep_ms(50);
		evapi_app_stats(s.app, &st);
	} while ((st.in_flight || st.pool_busy) && th_now() - t0 < 3);
	CHECK_INT(st.in_flight, ==, 0);
	CHECK_INT(st.pool_busy, ==, 0);
	CHECK_INT(th_http(s.port, "GET", "/hello", NULL, &r), ==, 200);
	th_server_stop(&s);
}

/* ---- descriptors --------------------------------------------------------------- */

static double cpu_secs(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* A request waits (400 ms on the loop) while the client's next one is
 * already in the socket: the bufferevent does not read it, and the
 * guard's second read event on the socket (the read pin, which saves an
 * epoll_ctl per request) must not wake the loop over and over for it. */
static void test_no_spin_while_request_waits(void)
{
	th_server s;
	char buf[4096];
	double cpu0, cpu1;
	const char *a, *b;
	int fd;

	start(&s);
	fd = th_connect_send(s.port, KEEPALIVE_GET); /* the pin is set */
	CHECK(fd >= 0);
	if (fd >= 0) {
		read_until(fd, buf, sizeof buf, "{\"Hello\":\"World\"}", 3);
		send_str(fd, "GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n");
		th_sleep_ms(50);
		send_str(fd, KEEPALIVE_GET);
		th_sleep_ms(20);
		cpu0 = cpu_secs();
		th_sleep_ms(250);
		cpu1 = cpu_secs();
		CHECK_DBL(cpu1 - cpu0, <, 0.1); /* a spinning loop takes 0.25 */
		printf("    %.3f s CPU in 250 ms with a request waiting and "
		       "the next one unread\n", cpu1 - cpu0);
		read_until(fd, buf, sizeof buf, "{\"Hello\":\"World\"}", 3);
		a = strstr(buf, "slept");
		b = strstr(buf, "{\"Hello\":\"World\"}");
		CHECK(a && b && a < b);
		close(fd);
	}
	th_server_stop(&s);
}

/* Two requests on two connections, read in one loop turn (the loop was
 * held while they arrived): both are handled before either reply is
 * written, so a client that sent both wakes once for the two replies.
 * When the second is handled, the first one's client has nothing yet;
 * a reply written as soon as its handler returned would be there. */
static void test_replies_after_the_turn(void)
{
	th_server s;
	char buf[4096];
	int fd[2], hold, i;

	start(&s);
	for (i = 0; i < 2; i++) {
		fd[i] = th_connect_send(s.port, KEEPALIVE_GET);
		CHECK(fd[i] >= 0);
		if (fd[i] >= 0)
			read_until(fd[i], buf, sizeof buf, "{\"Hello\":\"World\"}",
			           3);
		__atomic_store_n(&peek_fds[i], fd[i], __ATOMIC_SEQ_CST);
	}
	hold = th_connect_send(s.port, "GET /stall HTTP/1.1\r\nHost: t\r\n\r\n");
	CHECK(hold >= 0);
	for (i = 0; i < 500 && !__atomic_load_n(&stalling, __ATOMIC_SEQ_CST);
	     i++)
		th_sleep_ms(10); /* until the loop is in /stall */
	CHECK(__atomic_load_n(&stalling, __ATOMIC_SEQ_CST));
	for (i = 0; i < 2; i++)
		if (fd[i] >= 0)
			send_str(fd[i], "GET /peek HTTP/1.1\r\nHost: t\r\n\r\n");
	for (i = 0; i < 2; i++) {
		memset(buf, 0, sizeof buf);
		if (fd[i] >= 0)
			read_until(fd[i], buf, sizeof buf, "peeked", 5);
		CHECK(strstr(buf, "peeked") != NULL);
	}
	CHECK_INT(__atomic_load_n(&peek_calls, __ATOMIC_SEQ_CST), ==, 2);
	CHECK_INT(__atomic_load_n(&peek_seen, __ATOMIC_SEQ_CST), ==, 0);
	printf("    bytes at the clients when the second request was "
	       "handled: %d\n", __atomic_load_n(&peek_seen, __ATOMIC_SEQ_CST));
	for (i = 0; i < 2; i++) {
		__atomic_store_n(&peek_fds[i], -1, __ATOMIC_SEQ_CST);
		if (fd[i] >= 0)
			close(fd[i]);
	}
	if (hold >= 0)
		close(hold);
	th_server_stop(&s);
}

/* Out of descriptors: the server pauses accepting (no busy loop), keeps
 * serving what it has, and accepts again once a descriptor is free. */
static void test_emfile_pauses_accept(void)
{
	enum { N = 12, HIGH = 900 };
	th_server s;
	struct rlimit old, lim;
	struct sockaddr_in sa;
	int fds[N], i, served = 0, waiting = -1, lowest;
	double cpu0, cpu1;
	exch e;

	start(&s);
	getrlimit(RLIMIT_NOFILE, &old);
	if (old.rlim_cur < HIGH + N + 10) {
		printf("    SKIP: RLIMIT_NOFILE %lu too low for this test\n",
		       (unsigned long)old.rlim_cur);
		th_server_stop(&s);
		return;
	}
	/* Client sockets live above the limit we are about to set, so
	 * only the server's accept() runs out. */
	for (i = 0; i < N; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		fds[i] = dup2(fd, HIGH + i);
		close(fd);
	}
	lowest = dup(0); /* the lowest free descriptor */
	close(lowest);
	lim = old;
	lim.rlim_cur = (rlim_t)lowest + 3; /* about three accepts left */
	setrlimit(RLIMIT_NOFILE, &lim);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)s.port);
	sa.sin_addr.s_addr = htonl(0x7f000001);
	for (i = 0; i < N; i++) {
		CHECK_INT(connect(fds[i], (struct sockaddr *)&sa, sizeof sa), ==, 0);
		send_str(fds[i], KEEPALIVE_GET);
	}
	th_sleep_ms(300);
	cpu0 = cpu_secs();
	th_sleep_ms(1000);
	cpu1 = cpu_secs();
	for (i = 0; i < N; i++) {
		char b[512];
		ssize_t n = recv(fds[i], b, sizeof b, MSG_DONTWAIT);
		if (n > 0)
			served++;
		else if (waiting < 0)
			waiting = i;
	}
	CHECK_INT(served, >=, 1);
	CHECK(waiting >= 0);
	CHECK_DBL(cpu1 - cpu0, <, 0.3); /* no busy accept loop */
	CHECK_CONTAINS(th_log(), "pausing accept");
	printf("    %d served, the rest waiting; %.3f s CPU in 1 s paused\n",
	       served, cpu1 - cpu0);
	/* free descriptors: the waiting connection is accepted and served */
	for (i = 0; i < N; i++)
		if (i != waiting)
			close(fds[i]);
	if (waiting >= 0) {
		read_to_close(fds[waiting], &e, 3);
		CHECK_INT(e.status, ==, 200);
		close(fds[waiting]);
	}
	setrlimit(RLIMIT_NOFILE, &old);
	th_server_stop(&s);
}

/* 10 000 idle keep-alive connections from a child process (the server
 * and the clients would not fit one process's descriptor limit). Memory
 * stays bounded and the idle timeout closes them all. */
static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static int open_fds(void)
{
	int fd, n = 0;
	for (fd = 0; fd < 65536; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static int idle_client_run(struct pollfd *p, int port, int n, int wfd);

static int idle_client(int port, int n, int wfd)
{
	struct pollfd *p = calloc((size_t)n, sizeof *p);
	int i, rc = p ? idle_client_run(p, port, n, wfd) : 1;
	for (i = 0; p && i < n; i++) {
		int fd = p[i].fd < 0 ? -p[i].fd - 1 : p[i].fd;
		if (fd > 0)
			close(fd);
	}
	free(p);
	return rc;
}

static int idle_client_run(struct pollfd *p, int port, int n, int wfd)
{
	struct sockaddr_in sa;
	int i, ok = 0, closed = 0;
	char b[1024];
	double t0, t_ok = 0, first = -1, last = -1;

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(0x7f000001);
	/* In batches, each answered before the next: the listen backlog
	 * stays short and every connection ends up an idle keep-alive. */
	t0 = th_now();
	for (int b0 = 0; b0 < n && th_now() - t0 < 60; b0 += 100) {
		int b1 = b0 + 100 < n ? b0 + 100 : n, got = 0;
		for (i = b0; i < b1; i++) {
			p[i].fd = socket(AF_INET, SOCK_STREAM, 0);
			if (p[i].fd < 0 || connect(p[i].fd, (struct sockaddr *)&sa,
			                           sizeof sa) != 0)
				return 2;
			if (send(p[i].fd, KEEPALIVE_GET, strlen(KEEPALIVE_GET),
			         MSG_NOSIGNAL) != (ssize_t)strlen(KEEPALIVE_GET))
				return 3;
			p[i].events = POLLIN;
		}
		while (got < b1 - b0 && th_now() - t0 < 60) {
			poll(p + b0, (nfds_t)(b1 - b0), 100);
			for (i = b0; i < b1; i++)
				if (p[i].events && (p[i].revents & POLLIN)) {
					if (recv(p[i].fd, b, sizeof b, 0) > 0)
						ok++;
					p[i].events = 0;
					got++;
				}
		}
	}
	if (write(wfd, &ok, sizeof ok) != sizeof ok)
		return 4;
	t_ok = th_now();
	for (i = 0; i < n; i++)
		p[i].events = POLLIN;
	while (closed < n && th_now() - t0 < 90) {
		poll(p, (nfds_t)n, 100);
		for (i = 0; i < n; i++)
			if (p[i].revents) {
				if (recv(p[i].fd, b, sizeof b, 0) <= 0) {
					if (closed++ == 0)
						first = th_now() - t_ok;
					last = th_now() - t_ok;
					p[i].events = 0;
					p[i].fd = -p[i].fd - 1;
				}
			}
	}
	if (write(wfd, &closed, sizeof closed) != sizeof closed ||
	    write(wfd, &first, sizeof first) != sizeof first ||
	    write(wfd, &last, sizeof last) != sizeof last)
		return 5;
	return 0;
}

static void test_10k_idle_keepalive(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* sanitizers multiply memory and time per connection */
	const int dflt = 2000, per_conn_kb = 64;
#else
	const int dflt = 10000, per_conn_kb = 16;
#endif
	const int n = getenv("EVAPI_TEST_IDLE_CONNS")
	                      ? atoi(getenv("EVAPI_TEST_IDLE_CONNS")) : dflt;
	evapi_config cfg;
	th_server s;
	struct rlimit lim;
	int pfd[2], ok = 0, closed = 0, status = 0, fds0;
	long rss0, rss1;
	double t0, t1, first = 0, last = 0;
	pid_t pid;

	getrlimit(RLIMIT_NOFILE, &lim);
	if (lim.rlim_max < (rlim_t)n + 200) {
		printf("    SKIP: hard RLIMIT_NOFILE %lu < %d: cannot hold %d "
		       "connections\n", (unsigned long)lim.rlim_max, n + 200, n);
		return;
	}
	lim.rlim_cur = lim.rlim_max;
	setrlimit(RLIMIT_NOFILE, &lim);
	fds0 = open_fds();
	guard_config(&cfg);
	cfg.idle_timeout_ms = 4000;
	cfg.max_connections = n + 100;
	th_server_start(&s, make_app(&cfg));
	rss0 = rss_kb();
	if (pipe(pfd) != 0)
		return;
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		_exit(idle_client(s.port, n, pfd[1]));
	}
	close(pfd[1]);
	t0 = th_now();
	CHECK_INT(read(pfd[0], &ok, sizeof ok), ==, sizeof ok);
	t1 = th_now();
	rss1 = rss_kb();
	CHECK_INT(ok, ==, n);
	CHECK_INT(read(pfd[0], &closed, sizeof closed), ==, sizeof closed);
	CHECK_INT(read(pfd[0], &first, sizeof first), ==, sizeof first);
	CHECK_INT(read(pfd[0], &last, sizeof last), ==, sizeof last);
	CHECK_INT(closed, ==, n);
	/* closed by the idle timeout (4 s after each one's answer), not
	 * before; the last ones were answered when setup ended */
	CHECK_DBL(first, >=, 4.0 - (t1 - t0) - 0.3);
	CHECK_DBL(last, >=, 3.7);
	CHECK_DBL(last, <, 5.5);
	close(pfd[0]);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* bounded: a few KiB per idle connection */
	CHECK_INT(rss1 - rss0, <, (long)n * per_conn_kb);
	printf("    %d idle keep-alive connections: RSS %ld -> %ld KiB "
	       "(+%.1f KiB each), set up in %.2f s; idle timeout 4 s: first "
	       "closed %.2f s, last %.2f s after setup ended\n", n, rss0, rss1,
	       (double)(rss1 - rss0) / n, t1 - t0, first, last);
	th_server_stop(&s);
	CHECK_INT(open_fds(), <=, fds0); /* every socket closed */
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"guard.bad_framing_rejected", test_bad_framing_rejected},
		{"guard.head_rejected_without_body",
		 test_head_rejected_without_body},
		{"guard.target_escapes", test_target_escapes},
		{"guard.header_limits_431", test_header_limits_431},
		{"guard.target_limit_414", test_target_limit_414},
		{"guard.chunk_extension_and_trailer",
		 test_chunk_extension_and_trailer},
		{"guard.method_405_allow", test_method_405_allow},
		{"guard.expect_continue", test_expect_continue},
		{"guard.expect_known_status", test_expect_known_status},
		{"guard.expect_with_middleware", test_expect_with_middleware},
		{"guard.chunk_line_bound", test_chunk_line_bound},
		{"guard.pipelining_in_order", test_pipelining_in_order},
		{"guard.valid_then_garbage", test_valid_then_garbage},
		{"guard.parser_freed_while_waiting",
		 test_parser_freed_while_waiting},
		{"guard.silent_close_at_header_deadline",
		 test_silent_close_at_header_deadline},
		{"guard.slowloris_header_deadline", test_slowloris_header_deadline},
		{"guard.slow_body_request_deadline", test_slow_body_request_deadline},
		{"guard.keepalive_idle_and_max_requests",
		 test_keepalive_idle_and_max_requests},
		{"guard.slow_reader_reply_deadline",
		 test_slow_reader_reply_deadline},
		{"guard.connection_cap", test_connection_cap},
		{"guard.body_limit_413", test_body_limit_413},
		{"guard.json_bodies_422", test_json_bodies_422},
		{"guard.disconnect_every_stage", test_disconnect_every_stage},
		{"guard.emfile_pauses_accept", test_emfile_pauses_accept},
		{"guard.no_spin_while_request_waits",
		 test_no_spin_while_request_waits},
		{"guard.replies_after_the_turn", test_replies_after_the_turn},
		{"guard.10k_idle_keepalive", test_10k_idle_keepalive},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
