/*
 * fuzz_server.c: libFuzzer target for the whole server. Each input is
 * sent, cut into pieces, to a real app in this process over a local
 * stream socket (evapi__reactor_connect_local: no network); the loop runs
 * until quiet after every piece, everything the server wrote is read, and
 * the answer is judged against what llhttp in strict mode (strict_http.c,
 * a separate copy from the server's) makes of the same bytes:
 *
 *   parse     every response parses: status line, headers, and a body
 *             framed by Content-Length or chunked (or none: HEAD, 204,
 *             304); only a last response may end with the connection
 *   count     never more final responses than requests: the complete
 *             ones, plus one answer to what follows them (a rejected or
 *             unfinished request, or stray bytes such as blank lines)
 *   rejected  that answer, to a request strict llhttp rejects (or to
 *             what is no complete request), is never 2xx
 *   close     nothing follows a response that said "Connection: close"
 *   dropped   every complete request is answered, up to the first answer
 *             that closes the connection
 *   route     a 2xx answer comes from the route of the request's own path
 *             (its X-Path header is the target's path, percent-decoded)
 *
 * Input: the first byte is the piece size (0: one write), the rest the
 * bytes sent. A broken invariant prints the input and the output, then
 * aborts (FUZZ_SERVER_SHOW=1 prints them for every input). Every input gets a new app, so nothing carries over; the
 * guard's deadlines (seconds) never fire within an input, so the outcome
 * does not depend on the wall clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "internal.h"
#include "strict_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_MAX (1 << 20)

typedef struct out {
	char *p;
	size_t len;
	int eof;
} out;

/* ---- the app ----------------------------------------------------------- */

/* The decoded path with bytes outside [A-Za-z0-9/._~-] as %XX, so any
 * path fits a header; check_routes encodes the target the same way. */
static void path_text(const char *path, size_t n, char *dst, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;
	for (i = 0; i < n && o + 4 < cap; i++) {
		unsigned char c = (unsigned char)path[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || (c && strchr("/._~-", c))) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '%';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
}

static void say_path(evapi_req *req)
{
	char text[STRICT_TEXT];
	const char *p = evapi_req_path(req);
	path_text(p, strlen(p), text, sizeof text);
	evapi_reply_add_header(req, "X-Path", text);
}

static void h_json(evapi_req *req, void *arg)
{
	const char *id = evapi_req_param(req, "id");
	(void)arg;
	say_path(req);
	evapi_reply_json(req, 200, json_pack("{s:s, s:s?}", "hello", "world",
	                                     "id", id));
}

static void h_echo(evapi_req *req, void *arg)
{
	size_t len;
	const char *body = evapi_req_body(req, &len);
	(void)arg;
	say_path(req);
	evapi_reply_bytes(req, 200, "application/octet-stream", body, len);
}

static void quiet_log(evapi_log_level level, const char *line, void *arg)
{
	(void)level;
	(void)line;
	(void)arg;
}

static evapi_app *app_new(void)
{
	evapi_config cfg;
	evapi_app *app;

	evapi_config_init(&cfg);
	cfg.pool_threads = 1;
	cfg.pool_yield_to_loop = 0;
	cfg.handle_signals = 0;
	cfg.access_log = 0;
	cfg.log_cb = quiet_log;
	/* small limits, so inputs reach them */
	cfg.max_header_bytes = 1024;
	cfg.max_target_bytes = 256;
	cfg.max_body_bytes = 4096;
	cfg.max_header_fields = 20;
	cfg.keepalive_max_requests = 20;
	app = evapi_app_new(&cfg);
	if (!app ||
	    evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, h_json, NULL) ||
	    evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, h_json,
	                    NULL) ||
	    evapi_app_route(app, EVAPI_GET, "/items/{id}", EVAPI_INLINE,
	                    h_json, NULL) ||
	    evapi_app_route(app, EVAPI_POST | EVAPI_PUT, "/echo", EVAPI_INLINE,
	                    h_echo, NULL) ||
	    evapi_app_route(app, EVAPI_GET, "/pool", EVAPI_POOL, h_json,
	                    NULL) ||
	    evapi_app_route(app, EVAPI_POST, "/pool/echo", EVAPI_POOL, h_echo,
	                    NULL)) {
		fprintf(stderr, "fuzz_server: cannot set up the app\n");
		abort();
	}
	return app;
}

/* ---- driving the loop -------------------------------------------------- */

/* Reads what the server wrote; 1 if anything came. */
static int drain(int fd, out *o)
{
	int got = 0;
	while (!o->eof) {
		char buf[16384];
		ssize_t n = read(fd, buf, sizeof buf);
		if (n > 0) {
			size_t take = (size_t)n;
			if (o->len + take > OUT_MAX)
				take = OUT_MAX - o->len; /* more is a failure anyway */
			memcpy(o->p + o->len, buf, take);
			o->len += take;
			got = 1;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			o->eof = 1;
			got = 1;
		} else {
			break;
		}
	}
	return got;
}

/* Runs the loop until nothing moves: no request in flight, nothing
 * active or waiting for the next turn, and no new output, three times
 * in a row. A pool job is waited for (bounded by its wake-up). */
static void run_until_quiet(evapi_app *app, int fd, out *o)
{
	struct event_base *base = app->base;
	int idle = 0, turns = 0;

	while (idle < 3) {
		if (++turns > 100000) {
			fprintf(stderr, "fuzz_server: the loop never goes quiet\n");
			abort();
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (fd >= 0 && drain(fd, o))
			idle = 0;
		else
			idle++;
		if (EVAPI__LOAD(&app->stats.in_flight) > 0) {
			struct timeval tv = {0, 10000};
			/* waits for a pool completion's wake-up */
			event_base_loopexit(base, &tv);
			event_base_loop(base, EVLOOP_ONCE);
			idle = 0;
		} else if (event_base_get_num_events(base,
		                                     EVENT_BASE_COUNT_ACTIVE)) {
			idle = 0;
		}
	}
}

/* Sends `len` bytes, running the loop whenever the socket is full.
 * Returns 0, or -1 once the server stopped reading (closed). */
static int send_all(evapi_app *app, int fd, const uint8_t *p, size_t len,
                    out *o)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			run_until_quiet(app, fd, o);
		} else {
			return -1;
		}
	}
	return 0;
}

/* ---- judging ----------------------------------------------------------- */

static const uint8_t *cur_in;
static size_t cur_in_len;
static const out *cur_out;

static void show(const char *what, const char *p, size_t n)
{
	size_t i;
	fprintf(stderr, "---- %s (%zu bytes):\n", what, n);
	for (i = 0; i < n && i < 4096; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\n')
			fputs("\\n\n", stderr);
		else if (c == '\r')
			fputs("\\r", stderr);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fputs("\n----\n", stderr);
}

/* FUZZ_SERVER_SKIP="count,rejected" leaves invariants unchecked, to
 * look for the others while a known defect still breaks those. */
static void broken(const char *invariant, const char *fmt, int a, int b)
{
	const char *skip = getenv("FUZZ_SERVER_SKIP");
	if (skip && strstr(skip, invariant))
		return;
	fprintf(stderr, "fuzz_server: invariant \"%s\" broken: ", invariant);
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	show("input", (const char *)cur_in, cur_in_len);
	show("output", cur_out->p, cur_out->len);
	abort();
}

/* The path a request-target names, percent-decoded and encoded as
 * path_text does; "" when the target is not a path we can tell. */
static void target_path(const char *t, char *dst, size_t cap)
{
	char dec[STRICT_TEXT];
	long n;
	const char *p = t;

	dst[0] = '\0';
	if (strncasecmp(p, "http://", 7) == 0 ||
	    strncasecmp(p, "https://", 8) == 0) {
		p = strchr(p + 7, '/');
		if (!p)
			p = "/";
	}
	if (*p != '/')
		return;
	n = evapi__pct_decode(p, strcspn(p, "?#"), dec, 0);
	if (n >= 0) /* else the server answers 400 */
		path_text(dec, (size_t)n, dst, cap);
}

static void judge(const strict_requests *rq, const strict_responses *rs)
{
	int k = rq->complete < STRICT_MAX ? rq->complete : STRICT_MAX;
	int extra = rq->trailing;
	int i, expected;

	if (rq->complete > STRICT_MAX)
		return; /* more than we keep track of */
	if (rs->bad)
		broken("parse", "response %d does not parse", rs->final, 0);
	/* A body without a length ends with the connection: only the last
	 * response may do that (HTTP/1.0 answers do). */
	for (i = 0; i < rs->final && i < STRICT_MAX; i++)
		if (!rs->framed[i] && (i + 1 < rs->final || !cur_out->eof))
			broken("parse", "response %d (status %d) has neither "
			       "Content-Length nor chunked", i + 1, rs->status[i]);
	if (rs->partial)
		broken("parse", "the response after %d is cut short (%d)",
		       rs->final, 0);
	if (rs->after_close)
		broken("close", "bytes after response %d, which said "
		       "Connection: close (%d)", rs->final, 0);
	if (rs->final > k + extra)
		broken("count", "%d responses to %d request(s)", rs->final,
		       k + extra);
	if (extra && rs->final > k && rs->status[k] < 300)
		broken("rejected", "request %d, which strict llhttp rejects "
		       "(or is no whole request), was answered %d", k + 1,
		       rs->status[k]);
	/* every complete request is answered, up to a closing answer */
	expected = k;
	for (i = 0; i < rs->final && i < k; i++)
		if (rs->close[i]) {
			expected = i + 1;
			break;
		}
	if (rs->final < expected)
		broken("dropped", "%d of %d complete request(s) answered",
		       rs->final, expected);
	for (i = 0; i < rs->final && i < k; i++) {
		char want[STRICT_TEXT];
		if (rs->status[i] >= 300 || !rs->path[i][0] ||
		    !rq->target[i][0])
			continue;
		target_path(rq->target[i], want, sizeof want);
		if (want[0] && strcmp(want, rs->path[i]) != 0) {
			fprintf(stderr, "target %s routed as %s\n",
			        rq->target[i], rs->path[i]);
			broken("route", "request %d answered %d by the route "
			       "of another path", i + 1, rs->status[i]);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static strict_requests rq;
	static strict_responses rs;
	evapi_app *app;
	out o = {NULL, 0, 0};
	size_t piece, off;
	int fd;

	if (size < 2 || size > 65536)
		return 0;
	piece = data[0] ? data[0] : size;
	data++;
	size--;
	o.p = malloc(OUT_MAX);
	app = app_new();
	fd = evapi__reactor_connect_local(app);
	if (!o.p || fd < 0) {
		fprintf(stderr, "fuzz_server: no local connection\n");
		abort();
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	for (off = 0; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;
		run_until_quiet(app, fd, &o);
		if (send_all(app, fd, data + off, n, &o) != 0)
			break;
	}
	run_until_quiet(app, fd, &o);
	close(fd);
	run_until_quiet(app, -1, &o);
	evapi_app_free(app);

	cur_in = data;
	cur_in_len = size;
	cur_out = &o;
	strict_http_requests((const char *)data, size, &rq);
	strict_http_responses(o.p, o.len, o.eof, &rq, &rs);
	if (getenv("FUZZ_SERVER_SHOW")) {
		fprintf(stderr, "strict llhttp: %d complete request(s)%s%s%s\n",
		        rq.complete, rq.rejected ? ", then rejected: " : "",
		        rq.rejected ? rq.error : "",
		        rq.partial ? ", then an unfinished one" : "");
		show("input", (const char *)data, size);
		show("output", o.p, o.len);
	}
	judge(&rq, &rs);
	free(o.p);
	return 0;
}
