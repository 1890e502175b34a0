/*
 * test_ws_frame.c: the WebSocket frame layer (src/ws_frame.c), fed byte
 * strings split at every point. Sections follow the Autobahn testsuite's
 * (framing, pings/pongs, reserved bits, opcodes, fragmentation, UTF-8,
 * close handling, limits), then the writer.
 */
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>

#include "../src/ws_frame.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct wbuf {
	uint8_t *b;
	size_t n, cap;
} wbuf;

static void wb_add(wbuf *w, const void *p, size_t n)
{
	if (w->n + n > w->cap) {
		w->cap = (w->n + n) * 2 + 64;
		w->b = realloc(w->b, w->cap);
	}
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A client frame: `b0` is the raw first byte (FIN, RSV bits, opcode). */
static void cframe(wbuf *w, int b0, const void *payload, size_t len)
{
	uint8_t h[EVAPI__WS_MAX_HEADER], *m = malloc(len + 1);
	size_t hn = evapi__ws_header(h, 1, 0, len, KEY);
	h[0] = (uint8_t)b0;
	wb_add(w, h, hn);
	memcpy(m, payload, len);
	evapi__ws_mask(m, len, KEY, 0);
	wb_add(w, m, len);
	free(m);
}

static void cstr(wbuf *w, int b0, const char *s)
{
	cframe(w, b0, s, strlen(s));
}

/* Feeds w in slices of `slice` bytes (0: all at once) to a server
 * parser with `max`; returns the events as text, e.g.
 * "text:hi;ping:x;close:1000:bye;" or "...error:1002;". */
static char *run(const wbuf *w, size_t slice, size_t max)
{
	static char out[4096];
	evapi__ws_parser *p = evapi__ws_parser_new(1, max);
	size_t off = 0, o = 0;
	int stop = 0;

	out[0] = 0;
	if (!slice)
		slice = w->n ? w->n : 1;
	while (!stop && off < w->n) {
		size_t n = w->n - off < slice ? w->n - off : slice, used;
		size_t at = 0;
		while (at < n && !stop) {
			const uint8_t *d;
			const char *s;
			size_t len;
			int ev = evapi__ws_parser_feed(p, w->b + off + at, n - at,
			                               &used);
			int op;
			at += used;
			switch (ev) {
			case EVAPI__WS_EV_MESSAGE:
				op = evapi__ws_parser_payload(p, &d, &len);
				if (op == EVAPI__WS_TEXT && len < 200)
					o += (size_t)snprintf(out + o, sizeof out - o,
					                      "text:%s;", (const char *)d);
				else
					o += (size_t)snprintf(out + o, sizeof out - o,
					                      "%s%zu;",
					                      op == EVAPI__WS_TEXT ? "text#" : "bin#",
					                      len);
				break;
			case EVAPI__WS_EV_PING:
			case EVAPI__WS_EV_PONG:
				evapi__ws_parser_payload(p, &d, &len);
				o += (size_t)snprintf(out + o, sizeof out - o, "%s:%.*s;",
				                      ev == EVAPI__WS_EV_PING ? "ping" : "pong",
				                      (int)len, (const char *)d);
				break;
			case EVAPI__WS_EV_CLOSE:
				o += (size_t)snprintf(out + o, sizeof out - o, "close:%d:",
				                      evapi__ws_parser_close(p, &s));
				o += (size_t)snprintf(out + o, sizeof out - o, "%s;", s);
				stop = 1;
				break;
			case EVAPI__WS_EV_ERROR:
				o += (size_t)snprintf(out + o, sizeof out - o, "error:%d;",
				                      evapi__ws_parser_error(p, &s));
				stop = 1;
				break;
			default:
				if (at < n)
					o += (size_t)snprintf(out + o, sizeof out - o,
					                      "short;");
				at = n;
			}
		}
		off += n;
	}
	evapi__ws_parser_free(p);
	return out;
}

/* The same events whatever the split. Small inputs: every slice size;
 * large ones: a few. */
static void expect_max(wbuf *w, size_t max, const char *want, int line)
{
	size_t slice;
	for (slice = 0; slice <= w->n; slice++) {
		if (w->n > 300 && slice > 17 && slice != w->n)
			continue;
		if (strcmp(run(w, slice, max), want) != 0) {
			TH_FAIL_AT("line %d, slice %zu: \"%s\" vs \"%s\"", line,
			           slice, run(w, slice, max), want);
			break;
		}
	}
	free(w->b);
	memset(w, 0, sizeof *w);
}
#define EXPECT(w, want) expect_max(w, 0, want, __LINE__)

static const uint8_t *bytes_of(const char *s)
{
	return (const uint8_t *)s;
}

/* ---- 1 framing ------------------------------------------------------------ */

static void test_framing(void)
{
	wbuf w = {0};
	char *big = malloc(70000);
	memset(big, 'a', 70000);

	cstr(&w, 0x81, "Hello");
	EXPECT(&w, "text:Hello;");
	cstr(&w, 0x81, "");
	EXPECT(&w, "text:;");
	cframe(&w, 0x82, "\0\1\2", 3);
	EXPECT(&w, "bin#3;");
	cframe(&w, 0x82, big, 125);
	cframe(&w, 0x82, big, 126);
	cframe(&w, 0x82, big, 65535);
	cframe(&w, 0x82, big, 65536);
	cframe(&w, 0x81, big, 70000);
	EXPECT(&w, "bin#125;bin#126;bin#65535;bin#65536;text#70000;");
	cstr(&w, 0x81, "one");
	cstr(&w, 0x82, "two");
	cstr(&w, 0x81, "three");
	EXPECT(&w, "text:one;bin#3;text:three;");
	free(big);
}

static void test_length_encoding(void)
{
	wbuf w = {0};
	/* 16-bit length for 125 bytes; 64-bit for 65535 bytes */
	static const uint8_t l16[] = {0x82, 0xFE, 0x00, 0x7D, 1, 2, 3, 4};
	static const uint8_t l64[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF,
	                              1, 2, 3, 4};
	static const uint8_t msb[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1,
	                              1, 2, 3, 4};
	wb_add(&w, l16, sizeof l16);
	EXPECT(&w, "error:1002;");
	wb_add(&w, l64, sizeof l64);
	EXPECT(&w, "error:1002;");
	wb_add(&w, msb, sizeof msb);
	EXPECT(&w, "error:1002;");
}

static void test_masking(void)
{
	wbuf w = {0};
	static const uint8_t unmasked[] = {0x81, 0x02, 'h', 'i'};
	evapi__ws_parser *p;
	uint8_t f[32];
	size_t n, used;
	const uint8_t *d;

	cstr(&w, 0x81, "ok");
	wb_add(&w, unmasked, sizeof unmasked);
	EXPECT(&w, "text:ok;error:1002;");

	/* a client parser takes unmasked server frames, refuses masked */
	p = evapi__ws_parser_new(0, 0);
	n = evapi__ws_header(f, 1, EVAPI__WS_TEXT, 2, NULL);
	memcpy(f + n, "hi", 2);
	CHECK_INT(evapi__ws_parser_feed(p, f, n + 2, &used), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_INT(evapi__ws_parser_payload(p, &d, &n), ==, EVAPI__WS_TEXT);
	CHECK_STR((const char *)d, "hi");
	n = evapi__ws_header(f, 1, EVAPI__WS_TEXT, 0, KEY);
	CHECK_INT(evapi__ws_parser_feed(p, f, n, &used), ==, EVAPI__WS_EV_ERROR);
	evapi__ws_parser_free(p);
}

/* ---- 2 pings and pongs ------------------------------------------------------ */

static void test_pings_pongs(void)
{
	wbuf w = {0};
	char p125[126];
	int i;

	cstr(&w, 0x89, "");
	cstr(&w, 0x89, "Hello, world!");
	cstr(&w, 0x8A, "unsolicited");
	EXPECT(&w, "ping:;ping:Hello, world!;pong:unsolicited;");

	memset(p125, 'x', sizeof p125);
	cframe(&w, 0x89, p125, 125);
	CHECK(strstr(run(&w, 0, 0), "ping:xxxxx") != NULL);
	free(w.b);
	memset(&w, 0, sizeof w);
	cframe(&w, 0x89, p125, 126);
	EXPECT(&w, "error:1002;");
	/* a fragmented ping */
	cstr(&w, 0x09, "ab");
	EXPECT(&w, "error:1002;");
	for (i = 0; i < 10; i++)
		cstr(&w, 0x89, "p");
	EXPECT(&w, "ping:p;ping:p;ping:p;ping:p;ping:p;ping:p;ping:p;ping:p;"
	           "ping:p;ping:p;");
}

/* ---- 3 reserved bits -------------------------------------------------------- */

static void test_reserved_bits(void)
{
	wbuf w = {0};
	int rsv;
	for (rsv = 1; rsv <= 7; rsv++) {
		cstr(&w, 0x81, "before");
		cstr(&w, 0x81 | (rsv << 4), "x");
		cstr(&w, 0x81, "after");
		EXPECT(&w, "text:before;error:1002;");
		cstr(&w, 0x89 | (rsv << 4), "");
		EXPECT(&w, "error:1002;");
	}
}

/* ---- 4 opcodes ---------------------------------------------------------------- */

static void test_reserved_opcodes(void)
{
	wbuf w = {0};
	static const int ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
	size_t i;
	for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		cstr(&w, 0x81, "x");
		cstr(&w, 0x80 | ops[i], "");
		EXPECT(&w, "text:x;error:1002;");
		cstr(&w, 0x80 | ops[i], "payload");
		EXPECT(&w, "error:1002;");
	}
}

/* ---- 5 fragmentation ---------------------------------------------------------- */

static void test_fragmentation(void)
{
	wbuf w = {0};

	cstr(&w, 0x01, "frag");
	cstr(&w, 0x00, "men");
	cstr(&w, 0x80, "ted");
	EXPECT(&w, "text:fragmented;");
	/* control frames between fragments */
	cstr(&w, 0x02, "ab");
	cstr(&w, 0x89, "p1");
	cstr(&w, 0x00, "");
	cstr(&w, 0x8A, "p2");
	cstr(&w, 0x80, "cd");
	cstr(&w, 0x81, "next");
	EXPECT(&w, "ping:p1;pong:p2;bin#4;text:next;");
	/* a close between fragments ends it */
	cstr(&w, 0x01, "a");
	cstr(&w, 0x88, "\x03\xe8");
	EXPECT(&w, "close:1000:;");
	/* empty fragments */
	cstr(&w, 0x01, "");
	cstr(&w, 0x00, "");
	cstr(&w, 0x80, "");
	EXPECT(&w, "text:;");
	/* continuation with nothing to continue */
	cstr(&w, 0x80, "x");
	EXPECT(&w, "error:1002;");
	cstr(&w, 0x00, "x");
	EXPECT(&w, "error:1002;");
	cstr(&w, 0x81, "done");
	cstr(&w, 0x80, "x");
	EXPECT(&w, "text:done;error:1002;");
	/* a new data frame inside a fragmented message */
	cstr(&w, 0x01, "a");
	cstr(&w, 0x81, "b");
	EXPECT(&w, "error:1002;");
	cstr(&w, 0x01, "a");
	cstr(&w, 0x02, "b");
	EXPECT(&w, "error:1002;");
}

/* ---- 6 UTF-8 ----------------------------------------------------------------- */

static int utf8_ok(const char *s, size_t n)
{
	evapi__ws_utf8 u = {0, 0, 0};
	return evapi__ws_utf8_feed(&u, bytes_of(s), n) == 0 &&
	       evapi__ws_utf8_done(&u);
}

static void test_utf8_validator(void)
{
	static const char *good[] = {
		"", "plain", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xef\xbf\xbf",
		"\xed\x9f\xbf", "\xee\x80\x80", "\xf0\x90\x80\x80",
		"\xf4\x8f\xbf\xbf", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
	};
	static const char *bad[] = {
		"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",
		"\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80",
		"\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
		"\xfe", "\xff", "\xc2", "\xe1\x80", "\xf1\x80\x80", "a\xc2z",
	};
	size_t i;
	for (i = 0; i < sizeof good / sizeof good[0]; i++)
		if (!utf8_ok(good[i], strlen(good[i])))
			TH_FAIL_AT("good[%zu] refused", i);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (utf8_ok(bad[i], strlen(bad[i])))
			TH_FAIL_AT("bad[%zu] accepted", i);
}

/* Valid and invalid texts, as one frame and as two fragments split at
 * every byte, each fed in every slice size. */
static void test_utf8_messages(void)
{
	static const char *good[] = {
		"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
		"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
		"\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
	};
	static const char *bad[] = {
		"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited",
		"ab\xc0\xaf", "\xf4\x90\x80\x80", "\xe1\x80", "x\xff",
	};
	size_t i, k;
	char want[256];
	wbuf w = {0};

	for (i = 0; i < sizeof good / sizeof good[0]; i++) {
		size_t n = strlen(good[i]);
		snprintf(want, sizeof want, "text:%s;", good[i]);
		cstr(&w, 0x81, good[i]);
		EXPECT(&w, want);
		for (k = 0; k <= n; k++) {
			cframe(&w, 0x01, good[i], k);
			cframe(&w, 0x80, good[i] + k, n - k);
			EXPECT(&w, want);
		}
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t n = strlen(bad[i]);
		cstr(&w, 0x81, bad[i]);
		EXPECT(&w, "error:1007;");
		for (k = 0; k <= n; k++) {
			cframe(&w, 0x01, bad[i], k);
			cframe(&w, 0x80, bad[i] + k, n - k);
			EXPECT(&w, "error:1007;");
		}
	}
	/* binary messages are not checked */
	cframe(&w, 0x82, "\xff\xfe", 2);
	EXPECT(&w, "bin#2;");
}

/* An invalid prefix fails at once, before the rest of the frame (or the
 * rest of the message) has arrived. */
static void test_utf8_fail_fast(void)
{
	evapi__ws_parser *p = evapi__ws_parser_new(1, 0);
	uint8_t h[EVAPI__WS_MAX_HEADER], pre[3] = {'o', 'k', 0xC0};
	size_t hn = evapi__ws_header(h, 0, EVAPI__WS_TEXT, 1000, KEY), used;
	const char *detail;

	CHECK_INT(evapi__ws_parser_feed(p, h, hn, &used), ==, EVAPI__WS_EV_MORE);
	evapi__ws_mask(pre, 3, KEY, 0);
	CHECK_INT(evapi__ws_parser_feed(p, pre, 3, &used), ==,
	          EVAPI__WS_EV_ERROR);
	CHECK_INT(used, ==, 3);
	CHECK_INT(evapi__ws_parser_error(p, &detail), ==, 1007);
	CHECK_CONTAINS(detail, "UTF-8");
	evapi__ws_parser_free(p);
}

/* ---- 7 close handling ------------------------------------------------------------ */

static void close_with(int code, const char *reason, const char *want)
{
	wbuf w = {0};
	uint8_t pl[128];
	size_t n = 2 + strlen(reason);
	pl[0] = (uint8_t)(code >> 8);
	pl[1] = (uint8_t)code;
	memcpy(pl + 2, reason, n - 2);
	cframe(&w, 0x88, pl, n);
	expect_max(&w, 0, want, __LINE__);
}

static void test_close(void)
{
	static const int ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
	                         1010, 1011, 1012, 1013, 1014, 3000, 3999,
	                         4000, 4999};
	static const int bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100,
	                          2000, 2999, 5000, 65535};
	wbuf w = {0};
	char want[64];
	size_t i, used;
	evapi__ws_parser *p;

	cstr(&w, 0x88, "");
	EXPECT(&w, "close:1005:;");
	close_with(1000, "bye now", "close:1000:bye now;");
	close_with(1000, "\xce\xba\xe1\xbd\xb9", "close:1000:\xce\xba\xe1\xbd\xb9;");
	close_with(1000, "bad \xed\xa0\x80", "error:1007;");
	close_with(1000, "cut \xce", "error:1007;");
	cstr(&w, 0x88, "\x03");
	EXPECT(&w, "error:1002;");
	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		snprintf(want, sizeof want, "close:%d:;", ok[i]);
		close_with(ok[i], "", want);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		close_with(bad[i], "", "error:1002;");
	/* nothing after the close frame is read */
	cstr(&w, 0x88, "\x03\xe8");
	cstr(&w, 0x81, "late");
	p = evapi__ws_parser_new(1, 0);
	CHECK_INT(evapi__ws_parser_feed(p, w.b, w.n, &used), ==,
	          EVAPI__WS_EV_CLOSE);
	CHECK_INT(used, ==, 8);
	CHECK_INT(evapi__ws_parser_feed(p, w.b + used, w.n - used, &used), ==,
	          EVAPI__WS_EV_CLOSE);
	CHECK_INT(used, ==, 0);
	evapi__ws_parser_free(p);
	free(w.b);
	/* close frame over 125 bytes */
	memset(&w, 0, sizeof w);
	{
		char reason[130];
		memset(reason, 'r', sizeof reason);
		reason[0] = 0x03;
		reason[1] = (char)0xe8;
		cframe(&w, 0x88, reason, 126);
		EXPECT(&w, "error:1002;");
	}
}

/* ---- 8 limits ------------------------------------------------------------------- */

static void test_limits(void)
{
	wbuf w = {0};
	char *big = calloc(1, 5000);
	static const uint8_t huge[] = {0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF,
	                               0xFF, 0xFF, 0xFF, 1, 2, 3, 4};
	evapi__ws_parser *p;
	size_t used;

	memset(big, 'a', 4999);
	cframe(&w, 0x81, big, 1000);
	expect_max(&w, 1000, "text#1000;", __LINE__);
	cframe(&w, 0x81, big, 1001);
	expect_max(&w, 1000, "error:1009;", __LINE__);
	/* summed over fragments */
	cframe(&w, 0x01, big, 600);
	cstr(&w, 0x89, "");
	cframe(&w, 0x80, big, 401);
	expect_max(&w, 1000, "ping:;error:1009;", __LINE__);
	cframe(&w, 0x02, big, 600);
	cframe(&w, 0x80, big, 400);
	expect_max(&w, 1000, "bin#1000;", __LINE__);
	/* the default is 1 MiB; a 2^63-1 length fails on its header */
	p = evapi__ws_parser_new(1, 0);
	CHECK_INT(evapi__ws_parser_feed(p, huge, sizeof huge, &used), ==,
	          EVAPI__WS_EV_ERROR);
	CHECK_INT(used, ==, sizeof huge);
	{
		const char *d;
		CHECK_INT(evapi__ws_parser_error(p, &d), ==, 1009);
	}
	evapi__ws_parser_free(p);
	free(big);
}

/* ---- writer ------------------------------------------------------------------------ */

static void test_writer(void)
{
	static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536, 100000};
	uint8_t h[EVAPI__WS_MAX_HEADER], pl[EVAPI__WS_MAX_CONTROL];
	size_t i, n, used;
	char reason[300];
	static const size_t want_len[] = {2, 2, 2, 4, 4, 10, 10};

	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		evapi__ws_parser *p = evapi__ws_parser_new(0, 200000);
		uint8_t *f = calloc(1, (size_t)lens[i] + 16);
		const uint8_t *d;
		size_t dl;
		n = evapi__ws_header(f, 1, EVAPI__WS_BINARY, lens[i], NULL);
		CHECK_INT(n, ==, want_len[i]);
		CHECK_INT(evapi__ws_parser_feed(p, f, n + (size_t)lens[i], &used),
		          ==, EVAPI__WS_EV_MESSAGE);
		evapi__ws_parser_payload(p, &d, &dl);
		CHECK_INT(dl, ==, lens[i]);
		evapi__ws_parser_free(p);
		free(f);
	}
	n = evapi__ws_header(h, 0, EVAPI__WS_TEXT, 5, KEY);
	CHECK_INT(n, ==, 6);
	CHECK_INT(h[0], ==, 0x01);
	CHECK_INT(h[1], ==, 0x85);

	CHECK_INT(evapi__ws_close_payload(pl, 0, "x"), ==, 0);
	CHECK_INT(evapi__ws_close_payload(pl, 1001, "bye"), ==, 5);
	CHECK_INT(pl[0], ==, 0x03);
	CHECK_INT(pl[1], ==, 0xe9);
	/* a long reason is cut on a character boundary */
	memset(reason, 0, sizeof reason);
	for (i = 0; i < 100; i++)
		memcpy(reason + 2 * i, "\xc3\xa9", 2);
	n = evapi__ws_close_payload(pl, 1000, reason);
	CHECK_INT(n, ==, 124);
	CHECK(utf8_ok((const char *)pl + 2, n - 2));
	CHECK(evapi__ws_close_code_ok(1000));
	CHECK(!evapi__ws_close_code_ok(1005));
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"ws_frame.framing", test_framing},
		{"ws_frame.length_encoding", test_length_encoding},
		{"ws_frame.masking", test_masking},
		{"ws_frame.pings_pongs", test_pings_pongs},
		{"ws_frame.reserved_bits", test_reserved_bits},
		{"ws_frame.reserved_opcodes", test_reserved_opcodes},
		{"ws_frame.fragmentation", test_fragmentation},
		{"ws_frame.utf8_validator", test_utf8_validator},
		{"ws_frame.utf8_messages", test_utf8_messages},
		{"ws_frame.utf8_fail_fast", test_utf8_fail_fast},
		{"ws_frame.close", test_close},
		{"ws_frame.limits", test_limits},
		{"ws_frame.writer", test_writer},
		{NULL, NULL},
	};
	return th_main(argc, argv, tests);
}
