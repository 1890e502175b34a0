/*
 * test_frame.c: the request guard's framing (src/guard/frame.c) and the llhttp
 * build under it, fed bytes directly: line endings, obs-fold, Host, the
 * strictness switches of llhttp, and the bounds on chunk lines, trailers
 * and bodies. Each input is fed whole and one byte at a time, since a
 * socket may split it anywhere.
 */
#include "harness.h"

#include <stdlib.h>

#include "../src/guard/guard.h"

typedef struct fres {
	int requests;   /* whole requests framed */
	int status;     /* error status, 0 if none */
	const char *detail;
	size_t used;    /* bytes consumed in all */
	char body[64];  /* the first request's body */
} fres;

static const evapi__frame_limits default_lim = {8192, 4096, 1 << 20, 100,
                                                4096};

/* Feeds `in` in slices of `slice` bytes until an error or until nothing
 * more is consumed. */
static void feed(const evapi__frame_limits *lim, const char *in, size_t len,
                 size_t slice, fres *r)
{
	evapi__frame *f = evapi__frame_new(lim);
	size_t off = 0;

	memset(r, 0, sizeof *r);
	while (f && off < len) {
		size_t n = len - off < slice ? len - off : slice, used = 0;
		int ev = evapi__frame_feed(f, in + off, n, &used);
		off += used;
		if (ev == EVAPI__FRAME_REQUEST) {
			const char *h, *b;
			size_t hl, bl;
			evapi__frame_request(f, 0, &h, &hl, &b, &bl);
			if (r->requests++ == 0 && bl < sizeof r->body)
				memcpy(r->body, b, bl);
			if (!evapi__frame_keeps_alive(f))
				break; /* the guard parses nothing more */
		} else if (ev == EVAPI__FRAME_ERROR) {
			r->status = evapi__frame_error(f, &r->detail);
			break;
		} else if (ev == EVAPI__FRAME_MORE && used == 0) {
			break;
		}
	}
	r->used = off;
	evapi__frame_free(f);
}

/* Checks one input, whole and byte by byte: `status` 0 means it must
 * frame `requests` requests without an error. */
static void expect(const char *what, const char *in, size_t len, int status,
                   int requests)
{
	static const size_t slices[] = {(size_t)-1, 1};
	size_t i;
	fres r;

	for (i = 0; i < 2; i++) {
		int before = th_failed;
		feed(&default_lim, in, len, slices[i], &r);
		CHECK_INT(r.status, ==, status);
		CHECK_INT(r.requests, ==, requests);
		if (th_failed != before)
			fprintf(stderr, "  ^ case: %s (%s)\n", what,
			        i ? "byte by byte" : "whole");
	}
}

#define EXPECT(what, in, status, requests)                                   \
	expect(what, in, sizeof(in) - 1, status, requests)

#define POST_TE "POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define NEXT "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"

/* A bare CR is never a line ending. Those in chunk lines and after chunk
 * data only llhttp's strict parser refuses: these cases fail if
 * src/guard/llhttp/llhttp.c ever compiles the loose one (LLHTTP_STRICT_MODE 0,
 * which takes any byte after a CR as its LF). */
static void test_bare_cr(void)
{
	EXPECT("end of header section, smuggled request after it",
	       "GET / HTTP/1.1\r\nHost: a\r\n\rZGET /evil: HTTP/1.1\r\n"
	       "Host: a\r\n\r\n", 400, 0);
	EXPECT("end of request line", "GET / HTTP/1.1\rXHost: a\r\n\r\n", 400, 0);
	EXPECT("end of header line", "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n",
	       400, 0);
	EXPECT("chunk size line, 52 bytes of the next request as a chunk",
	       POST_TE "5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n"
	               "GET /x HTTP/1.1\r\nHost: a\r\nX: 12345678901\r\n\r\n"
	               "\r\n0\r\n\r\n", 400, 0);
	EXPECT("chunk size line", POST_TE "1\rXY\r\n0\r\n\r\n", 400, 0);
	EXPECT("after chunk data", POST_TE "1\r\nY\rX0\r\n\r\n", 400, 0);
	EXPECT("chunk extension", POST_TE "1;a=b\rXY\r\n0\r\n\r\n", 400, 0);
	EXPECT("after the trailer section", POST_TE "0\r\n\rX" NEXT, 400, 0);
	EXPECT("in a trailer", POST_TE "0\r\nX: a\rY: b\r\n\r\n", 400, 0);
	/* the same with CRLF: fine */
	EXPECT("chunked with CRLF", POST_TE "5;a=b\r\nhello\r\n0\r\n\r\n" NEXT, 0,
	       2);
}

/* CRLF only: llhttp 8 takes a bare LF at the end of the request line and
 * of a field section; RFC 9112 allows that, but a front end that does not
 * would frame the request differently. */
static void test_bare_lf(void)
{
	EXPECT("request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400, 0);
	EXPECT("header line", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, 0);
	EXPECT("end of header section", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400,
	       0);
	EXPECT("chunk size line", POST_TE "5\nhello\r\n0\r\n\r\n", 400, 0);
	EXPECT("after chunk data", POST_TE "5\r\nhello\n0\r\n\r\n", 400, 0);
	EXPECT("end of trailer section", POST_TE "0\r\n\n" NEXT, 400, 0);
}

/* obs-fold is refused on every field, and in trailers: llhttp 8 would
 * join it, making "Transfer-Encoding:" CRLF SP "chunked" chunked. */
static void test_obs_fold(void)
{
	EXPECT("Transfer-Encoding", "POST /e HTTP/1.1\r\nHost: a\r\n"
	       "Transfer-Encoding: \r\n chunked\r\n\r\n0\r\n\r\n", 400, 0);
	EXPECT("Transfer-Encoding, empty first line", "POST /e HTTP/1.1\r\n"
	       "Host: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400,
	       0);
	EXPECT("Host", "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400, 0);
	EXPECT("other field, tab", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n"
	       "\r\n", 400, 0);
	EXPECT("whitespace line after the request line",
	       "GET / HTTP/1.1\r\n Host: a\r\nHost: a\r\n\r\n", 400, 0);
	EXPECT("trailer", POST_TE "0\r\nX: a\r\n b\r\n\r\n" NEXT, 400, 0);
	EXPECT("first trailer line", POST_TE "0\r\n X: a\r\n\r\n", 400, 0);
	/* whitespace inside a value is not a fold */
	EXPECT("inner whitespace", "GET / HTTP/1.1\r\nHost: a\r\nX: a \t b\r\n"
	       "\r\n", 0, 1);
}

static void test_host(void)
{
	static const char *const good[] = {
		"a", "example.com", "example.com:8080", "127.0.0.1", "127.0.0.1:80",
		"[::1]", "[::1]:8000", "[2001:db8::7]", "[::ffff:1.2.3.4]",
		"[v1.fe:x]", "xn--e1afmkfd.xn--p1ai", "a%41b", "a_b-c~d", "", NULL};
	static const char *const bad[] = {
		"a b", "a/b", "a:b", "a:", "a:123456", "[::1", "[::g]", "[]",
		"[::1]x", "[::1]:x", "a@b", "a?b", "a#b", "a%4", "a%zz", "a\\b",
		"a\"b", "[v.x]", NULL};
	char req[256];
	int i;

	for (i = 0; good[i]; i++) {
		int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\n"
		                 "\r\n", good[i]);
		expect(good[i], req, (size_t)n, 0, 1);
	}
	for (i = 0; bad[i]; i++) {
		int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\n"
		                 "\r\n", bad[i]);
		expect(bad[i], req, (size_t)n, 400, 0);
	}
	EXPECT("no Host on 1.1", "GET / HTTP/1.1\r\n\r\n", 400, 0);
	EXPECT("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, 0);
	EXPECT("no Host on 1.0", "GET / HTTP/1.0\r\n\r\n", 0, 1);
}

/* What each llhttp leniency would change, all off. */
static void test_llhttp_strictness(void)
{
	/* lenient_chunked_length */
	EXPECT("Content-Length with chunked", "POST /e HTTP/1.1\r\nHost: a\r\n"
	       "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
	       "0\r\n\r\n", 400, 0);
	/* lenient_transfer_encoding */
	EXPECT("coding after chunked", "POST /e HTTP/1.1\r\nHost: a\r\n"
	       "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, 0);
	EXPECT("chunked twice", "POST /e HTTP/1.1\r\nHost: a\r\n"
	       "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
	       "0\r\n\r\n", 400, 0);
	/* lenient_headers */
	EXPECT("control byte in a value", "GET / HTTP/1.1\r\nHost: a\r\n"
	       "X: a\x01z\r\n\r\n", 400, 0);
	EXPECT("DEL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n",
	       400, 0);
	/* lenient_keep_alive: nothing is framed after Connection: close */
	EXPECT("request after Connection: close", "GET / HTTP/1.1\r\nHost: a\r\n"
	       "Connection: close\r\n\r\n" NEXT, 0, 1);
	/* strict mode: CRLF after chunk data, no spaces in chunk lines */
	EXPECT("chunk data longer than its size", POST_TE "1\r\nXY\r\n0\r\n\r\n",
	       400, 0);
	EXPECT("space after chunk size", POST_TE "5 \r\nhello\r\n0\r\n\r\n", 400,
	       0);
	/* accepted: an extension, a quoted one, a trailer */
	EXPECT("extensions and trailer", POST_TE "5;a=\"x y\";b\r\nhello\r\n"
	       "0\r\nX-T: 1\r\n\r\n" NEXT, 0, 2);
}

static char *repeat(const char *pre, int c, size_t n, const char *post,
                    size_t *len)
{
	size_t pl = strlen(pre), ql = strlen(post);
	char *s = malloc(pl + n + ql + 1);
	memcpy(s, pre, pl);
	memset(s + pl, c, n);
	memcpy(s + pl + n, post, ql + 1);
	*len = pl + n + ql;
	return s;
}

/* A chunk line (size and extensions) is cut as soon as it is longer
 * than max_chunk_line: its rest is never read. Trailers have the header
 * section's bound, and extensions count against the body limit. */
static void test_chunk_bounds(void)
{
	evapi__frame_limits lim = default_lim;
	size_t len, head = strlen(POST_TE);
	char *in;
	fres r;
	int i;

	/* 1 MiB extension: 400 after 4 KiB of it */
	in = repeat(POST_TE "1;a=", 'b', 1 << 20, "\r\nX\r\n0\r\n\r\n", &len);
	feed(&lim, in, len, (size_t)-1, &r);
	CHECK_INT(r.status, ==, 400);
	CHECK_STR(r.detail, "Chunk line too long");
	CHECK_INT(r.used, <=, head + lim.max_chunk_line + 1);
	printf("    1 MiB chunk extension: %d after %zu of its bytes\n", r.status,
	       r.used - head);
	free(in);
	/* just under the bound: fine */
	in = repeat(POST_TE "1;a=", 'b', 4000, "\r\nX\r\n0\r\n\r\n", &len);
	feed(&lim, in, len, (size_t)-1, &r);
	CHECK_INT(r.status, ==, 0);
	CHECK_INT(r.requests, ==, 1);
	CHECK_STR(r.body, "X");
	free(in);
	/* endless leading zeros are a long chunk line too */
	in = repeat(POST_TE, '0', 100000, "5\r\nhello\r\n0\r\n\r\n", &len);
	feed(&lim, in, len, 1, &r);
	CHECK_INT(r.status, ==, 400);
	CHECK_INT(r.used, <=, head + lim.max_chunk_line + 1);
	free(in);
	/* the bound is the config's */
	lim.max_chunk_line = 64;
	in = repeat(POST_TE "1;a=", 'b', 100, "\r\nX\r\n0\r\n\r\n", &len);
	feed(&lim, in, len, 7, &r);
	CHECK_INT(r.status, ==, 400);
	free(in);
	/* extensions count against the body limit */
	lim = default_lim;
	lim.max_body = 1000;
	in = malloc(64 * 120 + 256);
	len = (size_t)sprintf(in, POST_TE);
	for (i = 0; i < 64; i++)
		len += (size_t)sprintf(in + len, "1;e=%0100d\r\nX\r\n", 0);
	len += (size_t)sprintf(in + len, "0\r\n\r\n");
	feed(&lim, in, len, (size_t)-1, &r);
	CHECK_INT(r.status, ==, 413);
	free(in);
	/* endless trailers: 431 at the header section's bound */
	lim = default_lim;
	in = malloc(head + 3 + 20000 * 6 + 1);
	len = (size_t)sprintf(in, POST_TE "0\r\n");
	for (i = 0; i < 20000; i++)
		len += (size_t)sprintf(in + len, "X: a\r\n");
	feed(&lim, in, len, (size_t)-1, &r);
	CHECK_INT(r.status, ==, 431);
	CHECK_INT(r.used, <=, head + 3 + lim.max_head + 1);
	free(in);
	/* a body that is dropped (GET) is still bounded */
	lim.max_body = 100;
	in = repeat("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
	            "\r\n400\r\n", 'z', 1024, "\r\n0\r\n\r\n", &len);
	feed(&lim, in, len, (size_t)-1, &r);
	CHECK_INT(r.status, ==, 413);
	free(in);
}

/* A request that arrives whole is framed by one feed (the guard's hot
 * path: one llhttp call, one drain); its start is still reported, and
 * a request cut after its first bytes still says BEGIN first. A plain
 * GET re-frames to exactly the client's bytes (what lets the guard
 * move them to evhttp by reference); one with a Connection header or
 * extra whitespace does not. */
static void test_whole_request_one_feed(void)
{
	static const char get[] = "GET /a?b=1 HTTP/1.1\r\nHost: x:1\r\n"
	                          "Accept: */*\r\n\r\n";
	static const char two[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	                          "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char ka[] = "GET / HTTP/1.1\r\nHost: x\r\n"
	                         "Connection: keep-alive\r\n\r\n";
	static const char ws[] = "GET / HTTP/1.1\r\nHost:  x \r\n\r\n";
	static const char post[] = "POST /p HTTP/1.1\r\nHost: x\r\n"
	                           "Content-Length: 2\r\n\r\nhi";
	evapi__frame *f = evapi__frame_new(&default_lim);
	const char *h, *b;
	size_t used, hl, bl;
	int ev;

	ev = evapi__frame_feed(f, get, sizeof get - 1, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_REQUEST);
	CHECK_INT(used, ==, sizeof get - 1);
	CHECK_INT(evapi__frame_began(f), ==, 1);
	evapi__frame_request(f, 0, &h, &hl, &b, &bl);
	CHECK_INT(hl, ==, sizeof get - 1);
	CHECK(hl == sizeof get - 1 && memcmp(h, get, hl) == 0);

	/* pipelined: each request its own feed, cut at its last byte */
	evapi__frame_reset(f);
	ev = evapi__frame_feed(f, two, sizeof two - 1, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_REQUEST);
	CHECK_INT(used, ==, (sizeof two - 1) / 2);
	ev = evapi__frame_feed(f, two + used, sizeof two - 1 - used, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_REQUEST);
	CHECK_INT(evapi__frame_began(f), ==, 1);
	CHECK_STR(evapi__frame_target(f), "/2");

	/* cut short: BEGIN, then the rest without a new start */
	evapi__frame_reset(f);
	ev = evapi__frame_feed(f, get, 5, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_BEGIN);
	CHECK_INT(used, ==, 5);
	ev = evapi__frame_feed(f, get + 5, sizeof get - 1 - 5, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_REQUEST);
	CHECK_INT(evapi__frame_began(f), ==, 0);

	/* re-framed differently from what was sent */
	evapi__frame_reset(f);
	ev = evapi__frame_feed(f, ka, sizeof ka - 1, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_REQUEST);
	evapi__frame_request(f, 0, &h, &hl, &b, &bl);
	CHECK(hl != sizeof ka - 1 || memcmp(h, ka, hl) != 0);
	evapi__frame_reset(f);
	ev = evapi__frame_feed(f, ws, sizeof ws - 1, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_REQUEST);
	evapi__frame_request(f, 0, &h, &hl, &b, &bl);
	CHECK(hl != sizeof ws - 1 || memcmp(h, ws, hl) != 0);
	evapi__frame_reset(f);
	ev = evapi__frame_feed(f, post, sizeof post - 1, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_HEAD); /* a body follows: pause */
	CHECK_INT(evapi__frame_began(f), ==, 1);
	ev = evapi__frame_feed(f, post + used, sizeof post - 1 - used, &used);
	CHECK_INT(ev, ==, EVAPI__FRAME_REQUEST);
	evapi__frame_request(f, 0, &h, &hl, &b, &bl);
	CHECK_INT(bl, ==, 2);
	evapi__frame_free(f);
}

/* Feeds `in` in slices of `slice` bytes; the status of the refusal (0 if
 * none) and whether the frame then counts the request as a HEAD. */
static int refusal(const char *in, size_t len, size_t slice, int *head)
{
	evapi__frame *f = evapi__frame_new(&default_lim);
	size_t off = 0;
	int st = 0;

	while (f && off < len) {
		size_t n = len - off < slice ? len - off : slice, used = 0;
		int ev = evapi__frame_feed(f, in + off, n, &used);
		off += used;
		if (ev == EVAPI__FRAME_ERROR) {
			st = evapi__frame_error(f, NULL);
			break;
		}
		if (ev == EVAPI__FRAME_REQUEST || used == 0)
			break;
	}
	*head = evapi__frame_is_head(f);
	evapi__frame_free(f);
	return st;
}

/* A refused request is a HEAD (answered without a body) exactly when
 * strict llhttp, reading the whole input at once as fuzz_server's judge
 * does, reports the end of its target with the HEAD method, however the
 * input is sliced. After a bare LF that ends the target, llhttp reports
 * it only at the next byte. */
static void test_head_refused_any_slicing(void)
{
	static const char lf[] = "\r\n\r\nHEAD /h\nHo`st: a\r\n\r\n";
	static const char cr[] = "HEAD /x\rHEAD : a";
	/* CR and LF before the request line are skipped, a lone CR too */
	static const char lead[] = "\n\rHEAD /h\nHo`st: a\r\n\r\n";
	size_t slice;
	int head;

	for (slice = 1; slice <= sizeof lf; slice++) {
		int before = th_failed;
		CHECK_INT(refusal(lf, sizeof lf - 1, slice, &head), ==, 400);
		CHECK_INT(head, ==, 1);
		CHECK_INT(refusal(lead, sizeof lead - 1, slice, &head), ==, 400);
		CHECK_INT(head, ==, 1);
		CHECK_INT(refusal(cr, sizeof cr - 1, slice, &head), ==, 400);
		CHECK_INT(head, ==, 0);
		if (th_failed != before)
			fprintf(stderr, "  ^ slices of %zu\n", slice);
	}
	/* nothing after the LF yet: no refusal, and no HEAD either */
	CHECK_INT(refusal("HEAD /h\n", 8, 8, &head), ==, 0);
	CHECK_INT(head, ==, 0);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"frame.head_refused_any_slicing", test_head_refused_any_slicing},
		{"frame.bare_cr", test_bare_cr},
		{"frame.bare_lf", test_bare_lf},
		{"frame.obs_fold", test_obs_fold},
		{"frame.host", test_host},
		{"frame.llhttp_strictness", test_llhttp_strictness},
		{"frame.chunk_bounds", test_chunk_bounds},
		{"frame.whole_request_one_feed", test_whole_request_one_feed},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
