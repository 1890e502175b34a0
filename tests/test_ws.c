/*
 * test_ws.c: WebSocket routes (src/ws.c, the upgrade in src/guard/guard.c,
 * broadcast in src/channel.c) on a real app at 127.0.0.1:0, driven by
 * raw sockets speaking RFC 6455 (frames built and parsed with
 * src/ws_frame.c), and by Python's websockets library as a strict
 * third-party peer.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../examples/demo.h"
#include "wsc.h"

/* ---- the app ------------------------------------------------------------ */

static void on_echo(evapi_ws *ws, int binary, const char *data, size_t len,
                    void *arg)
{
	char t[64];
	if (!binary && strcmp(data, "close-me") == 0) {
		evapi_ws_close(ws, 4000, "asked");
		return;
	}
	if (!binary && strcmp(data, "stall") == 0) {
		th_sleep_ms(200); /* blocks the loop: the watchdog names us */
		evapi_ws_send_text(ws, "stalled");
		return;
	}
	if (!binary && strcmp(data, "json") == 0) {
		evapi_ws_send_json(ws, json_pack("{s:i}", "n", 42));
		return;
	}
	if (!binary && strcmp(data, "flood") == 0) {
		/* a slow reader: send until the session refuses */
		static char big[16384];
		int i, rc = 0;
		memset(big, 'f', sizeof big);
		for (i = 0; i < 1000 && rc == 0; i++)
			rc = evapi_ws_send_bytes(ws, big, sizeof big);
		snprintf(t, sizeof t, "flood:%d:%s;", i, evapi_strerror(rc));
		th_trace_add(t);
		return;
	}
	wsc_app_echo(ws, binary, data, len);
}

/* on_open choosing the client's first offer and adding a header */
static void pick_open(evapi_ws *ws, void *arg)
{
	static const char *const hdrs[] = {"X-Session", "yes", NULL};
	const char *offer = evapi_ws_header(ws, "Sec-WebSocket-Protocol");
	char first[32] = "";
	if (offer)
		sscanf(offer, "%31[^, ]", first);
	if (strcmp(first, "refuse") == 0) {
		evapi_ws_close(ws, 1008, "no");
		return;
	}
	evapi_ws_accept(ws, first[0] ? first : NULL, hdrs);
	evapi_ws_send_text(ws, "hello");
}

/* chat: join the room named in the path, publish what is said */
static void chat_open(evapi_ws *ws, void *arg)
{
	char room[80];
	snprintf(room, sizeof room, "room:%s", evapi_ws_param(ws, "room"));
	evapi_ws_accept(ws, NULL, NULL);
	evapi_ws_subscribe(ws, room);
}

static void chat_message(evapi_ws *ws, int binary, const char *data,
                         size_t len, void *arg)
{
	char room[80];
	snprintf(room, sizeof room, "room:%s", evapi_ws_param(ws, "room"));
	evapi_app_publish(evapi_ws_app(ws), room, data);
}

/* GET /pub/{room}?bad=1: publishes "hello" (or, with bad, text that is
 * not UTF-8) and answers how many subscribers it reached */
static void pub_room(evapi_req *req, void *arg)
{
	char room[80];
	const char *bad = evapi_req_query(req, "bad");
	snprintf(room, sizeof room, "room:%s", evapi_req_param(req, "room"));
	evapi_reply_json(req, 200, json_pack("{s:i}", "reached",
	                 evapi_app_publish(arg, room, bad ? "caf\xc3" : "hello")));
}

static void sse_room(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	char room[80];
	snprintf(room, sizeof room, "room:%s", evapi_req_param(req, "room"));
	if (s && evapi_stream_subscribe(arg, s, room) != 0)
		evapi_stream_close(s);
}

/* pool offload: square a number on a worker, answer on the loop */
typedef struct sq {
	long n, r;
} sq;

static void sq_work(void *arg)
{
	sq *q = arg;
	usleep(20000);
	q->r = q->n * q->n;
}

static void sq_done(evapi_ws *ws, int status, void *arg)
{
	sq *q = arg;
	char t[64];
	if (status == 0) {
		snprintf(t, sizeof t, "%ld", q->r);
		evapi_ws_send_text(ws, t);
	}
	free(q);
}

static void pool_message(evapi_ws *ws, int binary, const char *data,
                         size_t len, void *arg)
{
	sq *q = calloc(1, sizeof *q);
	q->n = atol(data);
	if (evapi_ws_run_in_pool(ws, sq_work, sq_done, q) != 0)
		free(q);
}

static evapi_app *make_app(void)
{
	static const char *const protos[] = {"chat.v2", "chat.v1", NULL};
	static const char *const origins[] = {"https://ok.example", NULL};
	evapi_ws_opts small = {0}, slow = {0}, refuse = {0}, o = {0},
	              ping = {0};
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.shutdown_grace_ms = 4000;
	cfg.stall_threshold_ms = 100;
	app = evapi_app_new(&cfg);
	small.max_message = 1024;
	slow.max_queued = 64 * 1024;
	refuse.max_queued = 64 * 1024;
	refuse.on_full = EVAPI_WS_FULL_REFUSE;
	o.subprotocols = protos;
	o.origins = origins;
	ping.ping_interval_ms = 200;
	ping.ping_timeout_ms = 300;
	evapi_app_websocket(app, "/ws/echo", NULL, NULL, on_echo,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/small", &small, NULL, on_echo,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/slow", &slow, NULL, on_echo,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/refuse", &refuse, NULL, on_echo,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/proto", &o, NULL, on_echo,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/pick", NULL, pick_open, on_echo,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/ping", &ping, NULL, on_echo,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/pool", NULL, NULL, pool_message,
	                    wsc_app_closed, NULL);
	evapi_app_websocket(app, "/ws/chat/{room}", NULL, chat_open,
	                    chat_message, NULL, NULL);
	evapi_app_route(app, EVAPI_GET, "/sse/{room}", EVAPI_INLINE, sse_room,
	                app);
	evapi_app_route(app, EVAPI_GET, "/pub/{room}", EVAPI_INLINE, pub_room,
	                app);
	return app;
}

/* ---- handshake ---------------------------------------------------------------- */

static void test_handshake_ok(void)
{
	th_server s;
	wsc c;
	char resp[2048];

	th_server_start(&s, make_app());
	CHECK_INT(wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	CHECK_CONTAINS(resp, "Sec-WebSocket-Accept: " KEY_ACCEPT "\r\n");
	CHECK_CONTAINS(resp, "Upgrade: websocket\r\n");
	CHECK_CONTAINS(resp, "Connection: Upgrade\r\n");
	CHECK(strstr(resp, "Sec-WebSocket-Protocol") == NULL);
	wsc_close(&c);
	/* a query string does not change the route */
	CHECK_INT(wsc_open(&c, s.port, "/ws/echo?x=1", NULL, resp, sizeof resp),
	          ==, 101);
	wsc_close(&c);
	th_server_stop(&s);
}

static void bad_handshake(int port, const char *req, int status,
                          const char *want, int line)
{
	wsc c;
	char resp[2048];
	int got = wsc_open_raw(&c, port, req, resp, sizeof resp);
	if (got != status)
		TH_FAIL_AT("line %d: status %d, want %d: %s", line, got, status,
		           resp);
	if (!strstr(resp, "Connection: close"))
		TH_FAIL_AT("line %d: no Connection: close in %s", line, resp);
	/* the body, to the server's close */
	while (!c.eof && c.have < sizeof c.buf - 1)
		if (wsc_fill(&c, 2) == 0)
			break;
	if (!strstr((char *)c.buf, "{\"detail\":"))
		TH_FAIL_AT("line %d: no JSON detail", line);
	if (want && !strstr(resp, want) && !strstr((char *)c.buf, want))
		TH_FAIL_AT("line %d: no \"%s\" in %s", line, want, resp);
	wsc_close(&c);
}

#define REQ(path, hdrs)                                                      \
	"GET " path " HTTP/1.1\r\nHost: h\r\n" hdrs "\r\n"
#define GOOD_UP "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"

static void test_handshake_bad(void)
{
	th_server s;
	th_server_start(&s, make_app());
	bad_handshake(s.port, REQ("/ws/echo", GOOD_UP
	              "Sec-WebSocket-Key: abc\r\nSec-WebSocket-Version: 13\r\n"),
	              400, "Sec-WebSocket-Key", __LINE__);
	bad_handshake(s.port, REQ("/ws/echo", GOOD_UP
	              "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
	              "Sec-WebSocket-Version: 13\r\n"),
	              400, NULL, __LINE__);
	bad_handshake(s.port, REQ("/ws/echo", GOOD_UP "Sec-WebSocket-Version: 13\r\n"),
	              400, NULL, __LINE__);
	bad_handshake(s.port, REQ("/ws/echo", GOOD_UP "Sec-WebSocket-Key: " KEY
	              "\r\nSec-WebSocket-Version: 8\r\n"),
	              426, "Sec-WebSocket-Version: 13\r\n", __LINE__);
	bad_handshake(s.port, REQ("/ws/echo", GOOD_UP "Sec-WebSocket-Key: " KEY
	              "\r\n"),
	              426, "Sec-WebSocket-Version: 13\r\n", __LINE__);
	bad_handshake(s.port, REQ("/ws/echo", "Connection: Upgrade\r\n"
	              "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n"),
	              400, NULL, __LINE__);
	bad_handshake(s.port, REQ("/ws/echo", "Upgrade: websocket\r\n"
	              "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n"),
	              400, NULL, __LINE__);
	bad_handshake(s.port, REQ("/ws/echo", ""), 400, NULL, __LINE__);
	bad_handshake(s.port, "POST /ws/echo HTTP/1.1\r\nHost: h\r\n"
	              "Content-Length: 0\r\n" GOOD_UP "Sec-WebSocket-Key: " KEY
	              "\r\nSec-WebSocket-Version: 13\r\n\r\n",
	              405, "Allow: GET", __LINE__);
	bad_handshake(s.port, "GET /ws/echo HTTP/1.0\r\nHost: h\r\n" GOOD_UP
	              "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
	              400, NULL, __LINE__);
	/* the Origin allow-list */
	bad_handshake(s.port, REQ("/ws/proto", GOOD_UP "Sec-WebSocket-Key: " KEY
	              "\r\nSec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n"),
	              403, NULL, __LINE__);
	bad_handshake(s.port, REQ("/ws/proto", GOOD_UP "Sec-WebSocket-Key: " KEY
	              "\r\nSec-WebSocket-Version: 13\r\n"),
	              403, NULL, __LINE__);
	/* refused by on_open: 403 */
	bad_handshake(s.port, REQ("/ws/pick", GOOD_UP "Sec-WebSocket-Key: " KEY
	              "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: refuse\r\n"),
	              403, NULL, __LINE__);
	th_server_stop(&s);
}

/* Frames sent before the 101: the upgrade is refused with 400. */
static void test_pipelined_after_upgrade(void)
{
	th_server s;
	wsc c;
	char resp[2048], req[1024];
	uint8_t f[16];
	size_t n = evapi__ws_header(f, 1, EVAPI__WS_TEXT, 0, WSC_MASK);

	th_server_start(&s, make_app());
	snprintf(req, sizeof req, REQ("/ws/echo", GOOD_UP "Sec-WebSocket-Key: " KEY
	         "\r\nSec-WebSocket-Version: 13\r\n"));
	{
		size_t at = strlen(req);
		memcpy(req + at, f, n);
		req[at + n] = 0;
	}
	/* the frame header has no NUL: 0x81 0x80 then the mask */
	CHECK_INT(wsc_open_raw(&c, s.port, req, resp, sizeof resp), ==, 400);
	CHECK_CONTAINS(resp, "Connection: close");
	CHECK(wsc_eof(&c, 3));
	wsc_close(&c);
	/* a plain request ahead of the upgrade is answered first */
	snprintf(req, sizeof req,
	         "GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n"
	         REQ("/ws/echo", GOOD_UP "Sec-WebSocket-Key: " KEY
	         "\r\nSec-WebSocket-Version: 13\r\n"));
	CHECK_INT(wsc_open_raw(&c, s.port, req, resp, sizeof resp), ==, 404);
	{
		char rest[2048];
		double end = th_now() + 3;
		while (!strstr((char *)c.buf + c.off, "\r\n\r\n") && th_now() < end)
			wsc_fill(&c, 0.2);
		snprintf(rest, sizeof rest, "%s", (char *)c.buf + c.off);
		CHECK_CONTAINS(rest, "HTTP/1.1 101 ");
		if (!strstr(rest, "HTTP/1.1 101 "))
			fprintf(stderr, "%s\n", th_log());
	}
	wsc_close(&c);
	th_server_stop(&s);
}

static void test_subprotocol(void)
{
	th_server s;
	wsc c;
	char resp[2048], msg[64];
	static const char *ok_origin = "Origin: https://OK.example\r\n";
	char extra[256];

	th_server_start(&s, make_app());
	/* server preference wins among the client's offers */
	snprintf(extra, sizeof extra, "%sSec-WebSocket-Protocol: chat.v1\r\n"
	         "Sec-WebSocket-Protocol: x, chat.v2\r\n", ok_origin);
	CHECK_INT(wsc_open(&c, s.port, "/ws/proto", extra, resp, sizeof resp), ==,
	          101);
	CHECK_CONTAINS(resp, "Sec-WebSocket-Protocol: chat.v2\r\n");
	wsc_close(&c);
	/* nothing in common: no subprotocol header */
	snprintf(extra, sizeof extra, "%sSec-WebSocket-Protocol: other\r\n",
	         ok_origin);
	CHECK_INT(wsc_open(&c, s.port, "/ws/proto", extra, resp, sizeof resp), ==,
	          101);
	CHECK(strstr(resp, "Sec-WebSocket-Protocol") == NULL);
	wsc_close(&c);
	/* on_open picks one and adds a header, then sends first */
	CHECK_INT(wsc_open(&c, s.port, "/ws/pick",
	                   "Sec-WebSocket-Protocol: mine, yours\r\n", resp,
	                   sizeof resp), ==, 101);
	CHECK_CONTAINS(resp, "Sec-WebSocket-Protocol: mine\r\n");
	CHECK_CONTAINS(resp, "X-Session: yes\r\n");
	CHECK_INT(wsc_recv(&c, 3, msg, sizeof msg, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(msg, "hello");
	wsc_close(&c);
	th_server_stop(&s);
}

/* ---- messages ----------------------------------------------------------------- */

static void test_echo(void)
{
	th_server s;
	wsc c;
	char resp[2048], *msg = malloc(300000), *big = malloc(200000);
	size_t len;
	int code;
	evapi_stats st;

	memset(big, 'b', 200000);
	th_server_start(&s, make_app());
	CHECK_INT(wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	wsc_text(&c, "Hello, \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
	CHECK_INT(wsc_recv(&c, 3, msg, 300000, &len, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(msg, "Hello, \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
	wsc_send(&c, 0x82, "\0\1\2\377", 4);
	CHECK_INT(wsc_recv(&c, 3, msg, 300000, &len, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_INT(len, ==, 4);
	CHECK(memcmp(msg, "\0\1\2\377", 4) == 0);
	wsc_send(&c, 0x82, big, 200000);
	CHECK_INT(wsc_recv(&c, 5, msg, 300000, &len, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_INT(len, ==, 200000);
	wsc_text(&c, "json");
	CHECK_INT(wsc_recv(&c, 3, msg, 300000, &len, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(msg, "{\"n\":42}");
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.websocket_open, ==, 1);
	CHECK_INT(st.websocket_total, >=, 1);
	/* ping in, pong out with the same payload */
	wsc_send(&c, 0x89, "abc", 3);
	CHECK_INT(wsc_recv(&c, 3, msg, 300000, &len, NULL), ==,
	          EVAPI__WS_EV_PONG);
	CHECK_STR(msg, "abc");
	/* fragments with a ping between them */
	wsc_send(&c, 0x01, "frag", 4);
	wsc_send(&c, 0x89, "p", 1);
	wsc_send(&c, 0x00, "men", 3);
	wsc_send(&c, 0x80, "ted", 3);
	CHECK_INT(wsc_recv(&c, 3, msg, 300000, &len, NULL), ==,
	          EVAPI__WS_EV_PONG);
	CHECK_INT(wsc_recv(&c, 3, msg, 300000, &len, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(msg, "fragmented");
	/* client closes: echoed, then the server closes the TCP */
	th_trace_clear();
	wsc_send(&c, 0x88, "\x03\xe8" "bye", 5);
	CHECK_INT(wsc_recv(&c, 3, msg, 300000, &len, &code), ==,
	          EVAPI__WS_EV_CLOSE);
	CHECK_INT(code, ==, 1000);
	CHECK(wsc_eof(&c, 3));
	CHECK(th_trace_wait("close:/ws/echo:1000:bye;", 3));
	wsc_close(&c);
	th_wait_idle(s.app, 2);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.websocket_open, ==, 0);
	th_server_stop(&s);
	free(msg);
	free(big);
}

/* Messages that came in one read are answered with one write (the
 * guard's cork): sixteen echoes reach the client as one TCP segment
 * (tcp_info's data segments in), not one each. */
static void test_batched_answers(void)
{
	th_server s;
	wsc c;
	char resp[2048], want[8];
	uint8_t out[16 * 12];
	struct tcp_info a, b;
	socklen_t al = sizeof a, bl = sizeof b;
	size_t n = 0;
	int i, k, order = 1;

	th_server_start(&s, make_app());
	CHECK_INT(wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	for (i = 0; i < 16; i++) { /* "msg-00"..."msg-15", masked */
		snprintf(want, sizeof want, "msg-%02d", i);
		out[n++] = 0x81;
		out[n++] = 0x80 | 6;
		memcpy(out + n, WSC_MASK, 4);
		n += 4;
		for (k = 0; k < 6; k++)
			out[n++] = (uint8_t)want[k] ^ WSC_MASK[k & 3];
	}
	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	CHECK(getsockopt(c.fd, IPPROTO_TCP, TCP_INFO, &a, &al) == 0);
	CHECK_INT(write(c.fd, out, n), ==, (long)n);
	for (i = 0; i < 16; i++) {
		snprintf(want, sizeof want, "msg-%02d", i);
		CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
		          EVAPI__WS_EV_MESSAGE);
		order &= strcmp(resp, want) == 0;
	}
	CHECK(order); /* in the order sent */
	CHECK(getsockopt(c.fd, IPPROTO_TCP, TCP_INFO, &b, &bl) == 0);
	/* one write, one segment; sixteen writes were two or more (the
	 * kernel's autocorking merges some of them on loopback) */
	CHECK_INT(b.tcpi_data_segs_in - a.tcpi_data_segs_in, ==, 1);
	/* the session goes on as before */
	wsc_text(&c, "after");
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(resp, "after");
	wsc_close(&c);
	/* a close in the middle of a read: what came before it is
	 * answered first, then the close frame, then nothing */
	CHECK_INT(wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	n = 0;
	for (i = 0; i < 3; i++) {
		const char *m = i == 0 ? "one" : i == 1 ? "close-me" : "two";
		size_t ml = strlen(m);
		out[n++] = 0x81;
		out[n++] = (uint8_t)(0x80 | ml);
		memcpy(out + n, WSC_MASK, 4);
		n += 4;
		for (k = 0; k < (int)ml; k++)
			out[n++] = (uint8_t)m[k] ^ WSC_MASK[k & 3];
	}
	CHECK_INT(write(c.fd, out, n), ==, (long)n);
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(resp, "one");
	expect_close(&c, 4000, __LINE__);
	wsc_close(&c);
	th_server_stop(&s);
}

static void test_protocol_errors(void)
{
	th_server s;
	wsc c;
	char resp[2048], big[2000];

	memset(big, 'x', sizeof big);
	th_server_start(&s, make_app());
	th_trace_clear();
	/* invalid UTF-8 -> 1007 */
	wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp);
	wsc_send(&c, 0x81, "ok\xed\xa0\x80", 5);
	expect_close(&c, 1007, __LINE__);
	wsc_close(&c);
	/* over max_message (1024 on /ws/small), across fragments -> 1009 */
	wsc_open(&c, s.port, "/ws/small", NULL, resp, sizeof resp);
	wsc_send(&c, 0x02, big, 1000);
	wsc_send(&c, 0x80, big, 100);
	expect_close(&c, 1009, __LINE__);
	wsc_close(&c);
	/* unmasked -> 1002 */
	wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp);
	wsc_send(&c, 0x181, "hi", 2);
	expect_close(&c, 1002, __LINE__);
	wsc_close(&c);
	/* reserved bits, reserved opcode, a big control frame -> 1002 */
	wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp);
	wsc_send(&c, 0xC1, "hi", 2);
	expect_close(&c, 1002, __LINE__);
	wsc_close(&c);
	wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp);
	wsc_send(&c, 0x83, "", 0);
	expect_close(&c, 1002, __LINE__);
	wsc_close(&c);
	wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp);
	wsc_send(&c, 0x89, big, 126);
	expect_close(&c, 1002, __LINE__);
	wsc_close(&c);
	CHECK(th_trace_wait("close:/ws/echo:1002:", 3));
	th_server_stop(&s);
}

static void test_server_close(void)
{
	th_server s;
	wsc c;
	char resp[2048], r[128];
	int code = 0;

	th_server_start(&s, make_app());
	th_trace_clear();
	wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp);
	wsc_text(&c, "close-me");
	CHECK_INT(wsc_recv(&c, 3, r, sizeof r, NULL, &code), ==,
	          EVAPI__WS_EV_CLOSE);
	CHECK_INT(code, ==, 4000);
	CHECK_STR(r, "asked");
	wsc_send(&c, 0x88, "\x0f\xa0", 2); /* our answer */
	CHECK(wsc_eof(&c, 3));
	CHECK(th_trace_wait("close:/ws/echo:4000:asked;", 3));
	wsc_close(&c);
	/* a client that drops without a close frame: 1006 to the app */
	wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp);
	wsc_close(&c);
	CHECK(th_trace_wait("close:/ws/echo:1006:;", 3));
	th_server_stop(&s);
}

/* Stopping the app: every open session gets 1001 Going Away. */
static void test_shutdown_going_away(void)
{
	th_server s;
	wsc c[5];
	char resp[2048];
	int i;
	double t0;

	th_server_start(&s, make_app());
	th_trace_clear();
	for (i = 0; i < 5; i++)
		CHECK_INT(wsc_open(&c[i], s.port, "/ws/echo", NULL, resp,
		                   sizeof resp), ==, 101);
	t0 = th_now();
	th_server_stop(&s);
	CHECK_DBL(th_now() - t0, <, 4.0); /* within the grace period */
	for (i = 0; i < 5; i++) {
		expect_close(&c[i], 1001, __LINE__);
		wsc_close(&c[i]);
	}
	CHECK_CONTAINS(th_trace(), "close:/ws/echo:1001:Server shutting down;");
}

/* A reader that stops reading: its queue is bounded. */
static void test_slow_reader(void)
{
	th_server s;
	wsc c;
	char resp[2048];
	int code = 0, ev;
	double end;

	th_server_start(&s, make_app());
	th_trace_clear();
	wsc_open(&c, s.port, "/ws/slow", NULL, resp, sizeof resp);
	wsc_text(&c, "flood");
	CHECK(th_trace_wait("flood:", 5));
	CHECK_CONTAINS(th_trace(), "client gone");
	/* now read: the data, then the 1008 close */
	end = th_now() + 10;
	while ((ev = wsc_recv(&c, 2, NULL, 0, NULL, &code)) ==
	               EVAPI__WS_EV_MESSAGE &&
	       th_now() < end)
		;
	CHECK_INT(ev, ==, EVAPI__WS_EV_CLOSE);
	CHECK_INT(code, ==, 1008);
	wsc_close(&c);
	CHECK(th_trace_wait("close:/ws/slow:1008:", 5));
	/* the other policy: the producer is told */
	th_trace_clear();
	wsc_open(&c, s.port, "/ws/refuse", NULL, resp, sizeof resp);
	wsc_text(&c, "flood");
	CHECK(th_trace_wait("flood:", 5));
	CHECK_CONTAINS(th_trace(), "queue full");
	wsc_text(&c, "still open");
	end = th_now() + 10;
	while ((ev = wsc_recv(&c, 2, resp, sizeof resp, NULL, NULL)) ==
	               EVAPI__WS_EV_MESSAGE &&
	       strcmp(resp, "still open") != 0 && th_now() < end)
		;
	CHECK_STR(resp, "still open");
	wsc_close(&c);
	th_server_stop(&s);
}

/* A peer that takes nothing at all is cut at the guard's write
 * deadline, even below the queue bound. */
static void test_write_deadline(void)
{
	th_server s;
	evapi_config cfg;
	evapi_ws_opts o = {0};
	evapi_app *app;
	wsc c;
	char resp[2048];
	double t0;

	th_config(&cfg);
	cfg.header_timeout_ms = 300;
	cfg.body_timeout_ms = 300;
	app = evapi_app_new(&cfg);
	o.on_full = EVAPI_WS_FULL_REFUSE;
	o.max_queued = 64 * 1024;
	evapi_app_websocket(app, "/ws/refuse", &o, NULL, on_echo,
	                    wsc_app_closed, NULL);
	th_server_start(&s, app);
	th_trace_clear();
	CHECK_INT(wsc_open(&c, s.port, "/ws/refuse", NULL, resp, sizeof resp),
	          ==, 101);
	t0 = th_now();
	wsc_text(&c, "flood");
	CHECK(th_trace_wait("close:/ws/refuse:1006:;", 5));
	CHECK_DBL(th_now() - t0, <, 4.0);
	wsc_close(&c);
	th_server_stop(&s);
}

static void test_idle_ping(void)
{
	th_server s;
	wsc c;
	char resp[2048];
	int code = 0;

	th_server_start(&s, make_app());
	th_trace_clear();
	wsc_open(&c, s.port, "/ws/ping", NULL, resp, sizeof resp);
	/* silent client: a ping after 200 ms, then 1011 after 300 more */
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_PING);
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, &code), ==,
	          EVAPI__WS_EV_CLOSE);
	CHECK_INT(code, ==, 1011);
	wsc_close(&c);
	/* a client that answers stays */
	wsc_open(&c, s.port, "/ws/ping", NULL, resp, sizeof resp);
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_PING);
	wsc_send(&c, 0x8A, resp, strlen(resp));
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_PING);
	wsc_send(&c, 0x8A, resp, strlen(resp));
	wsc_text(&c, "alive");
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(resp, "alive");
	wsc_close(&c);
	th_server_stop(&s);
}

static void test_pool_offload(void)
{
	th_server s;
	wsc c;
	char resp[2048];

	th_server_start(&s, make_app());
	wsc_open(&c, s.port, "/ws/pool", NULL, resp, sizeof resp);
	wsc_text(&c, "12");
	wsc_text(&c, "7");
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK(strcmp(resp, "144") == 0 || strcmp(resp, "49") == 0);
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK(strcmp(resp, "144") == 0 || strcmp(resp, "49") == 0);
	/* gone while its job runs: the job's done is told, nothing leaks */
	wsc_text(&c, "3");
	wsc_close(&c);
	th_sleep_ms(100);
	th_server_stop(&s);
}

/* A 200 ms block in on_message is a loop stall, reported with the
 * route's path and the callback's kind, and counted. */
static void test_stall_named(void)
{
	th_server s;
	wsc c;
	char resp[2048];
	evapi_stats st;
	double t0;

	th_log_clear();
	th_server_start(&s, make_app());
	CHECK_INT(wsc_open(&c, s.port, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	text_reply(&c, "stall", "stalled");
	t0 = th_now();
	while (!strstr(th_log(), "(websocket on_message)") && th_now() - t0 < 5)
		th_sleep_ms(20);
	CHECK_CONTAINS(th_log(), "in /ws/echo (websocket on_message)");
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.stalls, >=, 1);
	CHECK_INT(st.max_stall_ms, >=, 190);
	wsc_close(&c);
	th_server_stop(&s);
}

/* ---- broadcast ------------------------------------------------------------------ */

/* Reads an event stream into buf until it holds `want` (3 s at most). */
static void sse_until(int fd, const char *want, char *buf, size_t cap)
{
	double end = th_now() + 3;
	buf[0] = 0;
	while (!strstr(buf, want) && th_now() < end) {
		char tmp[2048];
		size_t have = strlen(buf);
		th_read_some(fd, tmp, sizeof tmp, (long)sizeof tmp - 1, 0.3);
		snprintf(buf + have, cap - have, "%s", tmp);
	}
}

/* Starts the app with an event stream on `room`; returns its socket. */
static int start_with_stream(th_server *s, const char *room)
{
	char req[128];
	int fd;

	th_server_start(s, make_app());
	snprintf(req, sizeof req, "GET /sse/%s HTTP/1.1\r\nHost: h\r\n\r\n",
	         room);
	fd = th_connect_send(s->port, req);
	th_sleep_ms(200);
	return fd;
}

/* A publish reaches an SSE stream subscribed to the same channel. */
static void test_broadcast_sse(void)
{
	th_server s;
	wsc c;
	char resp[2048], buf[4096];
	int fd = start_with_stream(&s, "kitchen");

	wsc_open(&c, s.port, "/ws/chat/kitchen", NULL, resp, sizeof resp);
	wsc_text(&c, "soup's on");
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	sse_until(fd, "data: soup's on\n\n", buf, sizeof buf);
	CHECK_CONTAINS(buf, "data: soup's on\n\n");
	close(fd);
	wsc_close(&c);
	/* the next publish drops the cancelled stream */
	th_sleep_ms(100);
	wsc_open(&c, s.port, "/ws/chat/kitchen", NULL, resp, sizeof resp);
	wsc_text(&c, "again");
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	wsc_close(&c);
	th_server_stop(&s);
}

/* A broadcast is framed once for every session of the room: each gets
 * the whole message, text that is not UTF-8 reaches no session (it
 * would be a protocol error for the peer) but still reaches the room's
 * event streams. */
static void test_broadcast_framed(void)
{
	th_server s;
	wsc a, b;
	th_resp r;
	char resp[2048], buf[4096];
	int fd = start_with_stream(&s, "den");

	CHECK_INT(wsc_open(&a, s.port, "/ws/chat/den", NULL, resp, sizeof resp),
	          ==, 101);
	CHECK_INT(wsc_open(&b, s.port, "/ws/chat/den", NULL, resp, sizeof resp),
	          ==, 101);
	CHECK_INT(th_http(s.port, "GET", "/pub/den?bad=1", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"reached\":1}");
	sse_until(fd, "data: caf\xc3\n\n", buf, sizeof buf);
	CHECK_CONTAINS(buf, "data: caf\xc3\n\n");
	CHECK_INT(th_http(s.port, "GET", "/pub/den", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"reached\":3}");
	/* the first frame each session sees is the valid one, whole */
	CHECK_INT(wsc_recv(&a, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(resp, "hello");
	CHECK_INT(wsc_recv(&b, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(resp, "hello");
	close(fd);
	wsc_close(&a);
	wsc_close(&b);
	th_server_stop(&s);
}

/* The demo's routes (examples/demo_ws.c), as its comment says. */
static void test_demo_routes(void)
{
	th_server s;
	evapi_config cfg;
	evapi_app *app;
	wsc a, b;
	char resp[2048], buf[4096];
	int fd;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK_INT(demo_ws_routes(app), ==, 0);
	th_server_start(&s, app);
	CHECK_INT(wsc_open(&a, s.port, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	text_reply(&a, "echo?", "echo?");
	wsc_close(&a);
	fd = th_connect_send(s.port,
	                     "GET /chat/lobby/events HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_INT(wsc_open(&a, s.port, "/ws/chat/lobby", NULL, resp, sizeof resp),
	          ==, 101);
	CHECK_INT(wsc_open(&b, s.port, "/ws/chat/lobby", NULL, resp, sizeof resp),
	          ==, 101);
	th_sleep_ms(100);
	wsc_text(&a, "hello lobby");
	CHECK_INT(wsc_recv(&b, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(resp, "hello lobby");
	CHECK_INT(wsc_recv(&a, 3, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	sse_until(fd, "data: hello lobby\n\n", buf, sizeof buf);
	CHECK_CONTAINS(buf, "data: hello lobby\n\n");
	/* binary is refused with 1003 */
	wsc_send(&b, 0x82, "x", 1);
	expect_close(&b, 1003, __LINE__);
	wsc_close(&a);
	wsc_close(&b);
	th_server_stop(&s); /* the SSE stream is closed by the drain */
	close(fd);
}

/* ---- a real third-party client ------------------------------------------------------ */

static void test_python_websockets(void)
{
	th_server s;
	char cmd[4096];
	const char *py = "python3";
	int rc;

	/* Debian's python3-websockets is for Debian's python3, which may
	 * not be the first python3 on PATH */
	if (system("python3 -c 'import websockets' >/dev/null 2>&1") != 0)
		py = "/usr/bin/python3";
	if (system("/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1") != 0 &&
	    py[0] == '/') {
		TH_SKIP("python3-websockets not installed (.ci/deps installs it)");
		return;
	}
	th_server_start(&s, make_app());
	snprintf(cmd, sizeof cmd,
	         "timeout 30 %s - <<'EOF'\n"
	         "import asyncio, sys, websockets\n"
	         "async def main():\n"
	         "    uri = 'ws://127.0.0.1:%d/ws/echo'\n"
	         "    async with websockets.connect(uri, max_size=2**22,\n"
	         "                                  compression=None) as ws:\n"
	         "        await ws.send('h\\u00e9llo \\U0001f600')\n"
	         "        assert await ws.recv() == 'h\\u00e9llo \\U0001f600'\n"
	         "        await ws.send(bytes(range(256)) * 1000)\n"
	         "        assert await ws.recv() == bytes(range(256)) * 1000\n"
	         "        await ws.send(iter(['a' * 70000, 'b', 'c']))\n"
	         "        assert await ws.recv() == 'a' * 70000 + 'bc'\n"
	         "        pong = await ws.ping(b'xyz')\n"
	         "        await asyncio.wait_for(pong, 5)\n"
	         "        await ws.close(1000, 'done')\n"
	         "        assert ws.close_code == 1000, ws.close_code\n"
	         "    async with websockets.connect(uri) as ws:\n"
	         "        await ws.send('close-me')\n"
	         "        try:\n"
	         "            await ws.recv()\n"
	         "            sys.exit('no close')\n"
	         "        except websockets.ConnectionClosed as e:\n"
	         "            assert e.rcvd.code == 4000 and e.rcvd.reason == 'asked', e\n"
	         "    try:\n"
	         "        async with websockets.connect(\n"
	         "                'ws://127.0.0.1:%d/ws/nowhere') as ws:\n"
	         "            sys.exit('connected to a plain route')\n"
	         "    except websockets.InvalidStatusCode as e:\n"
	         "        assert e.status_code == 404, e\n"
	         "    print('python websockets ok')\n"
	         "asyncio.run(main())\n"
	         "EOF\n",
	         py, s.port, s.port);
	rc = system(cmd);
	CHECK_INT(rc, ==, 0);
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"ws.handshake_ok", test_handshake_ok},
		{"ws.handshake_bad", test_handshake_bad},
		{"ws.pipelined_after_upgrade", test_pipelined_after_upgrade},
		{"ws.subprotocol", test_subprotocol},
		{"ws.echo", test_echo},
		{"ws.batched_answers", test_batched_answers},
		{"ws.protocol_errors", test_protocol_errors},
		{"ws.server_close", test_server_close},
		{"ws.shutdown_going_away", test_shutdown_going_away},
		{"ws.slow_reader", test_slow_reader},
		{"ws.write_deadline", test_write_deadline},
		{"ws.idle_ping", test_idle_ping},
		{"ws.pool_offload", test_pool_offload},
		{"ws.stall_named", test_stall_named},
		{"ws.broadcast_sse", test_broadcast_sse},
		{"ws.broadcast_framed", test_broadcast_framed},
		{"ws.demo_routes", test_demo_routes},
		{"ws.python_websockets", test_python_websockets},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
