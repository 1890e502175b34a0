/*
 * test_stream.c: streamed replies and server-sent events on a real app:
 * chunked bodies from the loop and from pool jobs (run under TSan too),
 * bounded buffering against a client that does not read, the SSE wire
 * format, keep-alive comments, streams outliving the idle timeout, and
 * producers told when the client leaves or the app stops.
 */
#include "harness.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_SEQ_CST)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)

/* ---- handlers ------------------------------------------------------------ */

static void loop_chunks(evapi_req *req, void *arg)
{
	evapi_stream *s;
	evapi_reply_add_header(req, "X-Kind", "loop");
	s = evapi_reply_stream(req, 200, "text/plain");
	CHECK(s != NULL);
	CHECK_INT(evapi_reply_text(req, 200, "again"), ==, EVAPI_EALREADY);
	CHECK_INT(evapi_stream_write(s, "one,", 4), ==, 0);
	CHECK_INT(evapi_stream_write(s, "", 0), ==, 0); /* never ends the body */
	CHECK_INT(evapi_stream_printf(s, "%s,%d", "two", 3), ==, 0);
	CHECK_INT(evapi_stream_close(s), ==, 0);
}

#define POOL_LINES 300
static void pool_lines(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_stream(req, 200, "text/plain");
	int head = evapi_req_method(req) == EVAPI_HEAD, i, rc = 0;
	CHECK(s != NULL);
	/* HEAD: the response is done once the headers are out, and the
	 * producer is told (EVAPI_EGONE) within its next writes */
	for (i = 0; rc == 0 && i < (head ? 2000 : POOL_LINES); i++) {
		rc = evapi_stream_printf(s, "line %d\n", i);
		if (head || i % 50 == 0)
			th_sleep_ms(head ? 1 : 5);
	}
	CHECK_INT(rc, ==, head ? EVAPI_EGONE : 0);
	CHECK_INT(evapi_stream_close(s), ==, head ? EVAPI_EGONE : 0);
}

/* A pool producer writing 8 MiB in 64 KiB pieces; counts what it wrote. */
#define FLOOD (8L << 20)
static long long flood_written;
static int flood_done;
static void pool_flood(evapi_req *req, void *arg)
{
	static char piece[65536];
	evapi_stream *s = evapi_reply_stream(req, 200, "application/octet-stream");
	long i;
	memset(piece, 'f', sizeof piece);
	for (i = 0; i < FLOOD / (long)sizeof piece; i++) {
		if (evapi_stream_write(s, piece, sizeof piece) != 0)
			break;
		__atomic_add_fetch(&flood_written, (long long)sizeof piece,
		                   __ATOMIC_SEQ_CST);
	}
	evapi_stream_close(s);
	SET(flood_done, 1);
}

/* A pool producer ticking until the client leaves. */
static int pool_ticker_rc, pool_ticker_done;
static void pool_ticker(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	int i, rc = 0;
	char id[16];
	for (i = 0; i < 500 && rc == 0; i++) {
		snprintf(id, sizeof id, "%d", i);
		rc = evapi_sse_send(s, "tick", id, "pool");
		th_sleep_ms(10);
	}
	SET(pool_ticker_rc, rc);
	CHECK(evapi_stream_cancelled(s));
	CHECK_INT(evapi_stream_close(s), ==, EVAPI_EGONE);
	SET(pool_ticker_done, 1);
}

static int sse_rc_bad_id = 1, sse_rc_bad_event = 1;
static void sse_format(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	CHECK(s != NULL);
	CHECK_INT(evapi_sse_send(s, "tick", "1", "a\nb\r\nc\rd"), ==, 0);
	CHECK_INT(evapi_sse_send(s, NULL, NULL, "tail\n"), ==, 0);
	CHECK_INT(evapi_sse_send(s, NULL, "2", ""), ==, 0);
	SET(sse_rc_bad_id, evapi_sse_send(s, NULL, "x\ny", "d"));
	SET(sse_rc_bad_event, evapi_sse_send(s, "a\rb", NULL, "d"));
	evapi_stream_close(s);
}

/* The loop ticker: an SSE stream fed by evapi_req_sleep continuations. */
typedef struct ticker {
	evapi_stream *s;
	int n, max;
	unsigned every_ms;
} ticker;

static int ticker_cancelled, stream_cb_cancelled;

static void tick(evapi_req *req, int status, void *arg)
{
	ticker *t = arg;
	char id[16];
	if (status != 0 || t->n >= t->max) {
		if (status != 0)
			SET(ticker_cancelled, 1);
		evapi_stream_close(t->s);
		free(t);
		return;
	}
	snprintf(id, sizeof id, "%d", t->n++);
	evapi_sse_send(t->s, "tick", id, "hello");
	if (t->n >= t->max || evapi_req_sleep(req, t->every_ms, tick, t) != 0) {
		evapi_stream_close(t->s);
		free(t);
	}
}

static void on_stream(evapi_stream *s, int status, void *arg)
{
	if (status == EVAPI_ECANCELED)
		__atomic_add_fetch(&stream_cb_cancelled, 1, __ATOMIC_SEQ_CST);
}

/* /ticker?every=MS&n=N&ka=MS */
static void loop_ticker(evapi_req *req, void *arg)
{
	ticker *t = calloc(1, sizeof *t);
	long long every = 50, n = 1000, ka = 0;
	evapi_req_query_int(req, "every", &every);
	evapi_req_query_int(req, "n", &n);
	evapi_req_query_int(req, "ka", &ka);
	t->every_ms = (unsigned)every;
	t->max = (int)n;
	t->s = evapi_reply_sse(req, (unsigned)ka);
	evapi_stream_set_cb(t->s, on_stream, NULL);
	tick(req, 0, t);
}

static th_server *start_app(th_server *s, evapi_config *cfg)
{
	evapi_config c;
	evapi_app *app;
	if (!cfg) {
		th_config(&c);
		cfg = &c;
	}
	app = evapi_app_new(cfg);
	evapi_app_route(app, EVAPI_GET, "/loop", EVAPI_INLINE, loop_chunks, NULL);
	evapi_app_route(app, EVAPI_GET, "/pool", EVAPI_POOL, pool_lines, NULL);
	evapi_app_route(app, EVAPI_GET, "/flood", EVAPI_POOL, pool_flood, NULL);
	evapi_app_route(app, EVAPI_GET, "/pticker", EVAPI_POOL, pool_ticker, NULL);
	evapi_app_route(app, EVAPI_GET, "/sse", EVAPI_INLINE, sse_format, NULL);
	evapi_app_route(app, EVAPI_GET, "/ticker", EVAPI_INLINE, loop_ticker, NULL);
	SET(ticker_cancelled, 0);
	SET(stream_cb_cancelled, 0);
	th_server_start(s, app);
	return s;
}

static void wait_flag(int *flag, double secs)
{
	double end = th_now() + secs;
	while (!GET(*flag) && th_now() < end)
		th_sleep_ms(10);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_chunked_from_loop(void)
{
	th_server s;
	th_resp r;
	start_app(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/loop", NULL, &r), ==, 200);
	CHECK_STR(r.body, "one,two,3");
	CHECK_CONTAINS(r.headers, "Transfer-Encoding: chunked");
	CHECK_CONTAINS(r.headers, "Content-Type: text/plain");
	CHECK_CONTAINS(r.headers, "X-Kind: loop");
	/* the access log line is written when the stream ends */
	CHECK_CONTAINS(th_log(), "GET /loop 200");
	th_server_stop(&s);
}

static void test_from_pool_job(void)
{
	th_server s;
	th_resp r;
	char want[8192];
	int i, o = 0;
	start_app(&s, NULL);
	for (i = 0; i < POOL_LINES; i++)
		o += snprintf(want + o, sizeof want - (size_t)o, "line %d\n", i);
	CHECK_INT(th_http(s.port, "GET", "/pool", NULL, &r), ==, 200);
	CHECK_STR(r.body, want);
	CHECK_CONTAINS(r.headers, "Transfer-Encoding: chunked");
	/* HEAD: headers only, the producer's bytes are dropped */
	CHECK_INT(th_http(s.port, "HEAD", "/pool", NULL, &r), ==, 200);
	CHECK_STR(r.body, "");
	th_server_stop(&s);
}

static void test_backpressure_bounds_memory(void)
{
	th_server s;
	static char buf[65536];
	long long got = 0, at_pause;
	int fd;
	evapi_config cfg;
	th_config(&cfg);
	/* Streams are exempt from the whole-reply write deadline: this one
	 * takes far longer than it and is not cut. */
	cfg.reply_write_timeout_ms = 200;
	start_app(&s, &cfg);
	SET(flood_written, 0);
	SET(flood_done, 0);
	fd = th_connect_rcvbuf(s.port, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n", 65536);
	th_sleep_ms(600); /* the client reads nothing */
	at_pause = GET(flood_written);
	/* The producer is held: at most the stream's bound plus what the
	 * kernel's socket buffers took (a few MiB), never the whole 8 MiB. */
	CHECK_INT(GET(flood_done), ==, 0);
	CHECK_INT(at_pause, <, FLOOD - (1 << 20));
	CHECK_INT(at_pause, >, 0);
	/* Now read: headers, body and chunk framing are more than FLOOD
	 * bytes, so this much is surely there; then the rest, which must
	 * end with the last chunk. */
	while (got < FLOOD) {
		long want = FLOOD - got < (long)sizeof buf - 1 ? (long)(FLOOD - got)
		                                              : (long)sizeof buf - 1;
		long n = th_read_some(fd, buf, sizeof buf, want, 2);
		if (n <= 0)
			break;
		got += n;
	}
	CHECK_INT(got, ==, FLOOD);
	wait_flag(&flood_done, 5);
	CHECK_INT(GET(flood_written), ==, FLOOD);
	{
		long n = th_read_some(fd, buf, sizeof buf, sizeof buf - 1, 0.5);
		CHECK_INT(n, >, 5);
		CHECK(n > 5 && memcmp(buf + n - 5, "0\r\n\r\n", 5) == 0);
	}
	fprintf(stderr, "  note: producer held at %lld bytes of %ld\n",
	        at_pause, FLOOD);
	close(fd);
	th_wait_idle(s.app, 3);
	th_server_stop(&s);
}

static void test_sse_format(void)
{
	th_server s;
	th_resp r;
	start_app(&s, NULL);
	CHECK_INT(th_http(s.port, "GET", "/sse", NULL, &r), ==, 200);
	CHECK_STR(r.body, "event: tick\nid: 1\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
	                  "data: tail\ndata: \n\n"
	                  "id: 2\ndata: \n\n");
	CHECK_CONTAINS(r.headers, "Content-Type: text/event-stream");
	CHECK_CONTAINS(r.headers, "Cache-Control: no-cache");
	CHECK_INT(GET(sse_rc_bad_id), ==, EVAPI_EINVAL);
	CHECK_INT(GET(sse_rc_bad_event), ==, EVAPI_EINVAL);
	th_server_stop(&s);
}

static void test_sse_keepalive_and_idle_timeout(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	const char *p;
	int n = 0;
	th_config(&cfg);
	cfg.idle_timeout_ms = 1000;
	start_app(&s, &cfg);
	/* 3 ticks 600 ms apart outlive the 1 s idle timeout; 150 ms
	 * keep-alives fill the gaps */
	CHECK_INT(th_http(s.port, "GET", "/ticker?every=600&n=3&ka=150", NULL, &r),
	          ==, 200);
	CHECK_CONTAINS(r.body, "id: 2\ndata: hello\n\n");
	for (p = r.body; (p = strstr(p, ": keep-alive\n\n")) != NULL; p++)
		n++;
	CHECK_INT(n, >=, 4);
	CHECK_DBL(r.secs, >, 1.1);
	/* silence longer than the idle timeout does not end a stream */
	CHECK_INT(th_http(s.port, "GET", "/ticker?every=1400&n=2&ka=60000", NULL, &r),
	          ==, 200);
	CHECK_STR(r.body, "event: tick\nid: 0\ndata: hello\n\n"
	                  "event: tick\nid: 1\ndata: hello\n\n");
	th_server_stop(&s);
}

static void test_stops_on_disconnect_loop(void)
{
	th_server s;
	char buf[4096];
	evapi_stats st;
	int fd;
	start_app(&s, NULL);
	fd = th_connect_send(s.port, "GET /ticker?every=20 HTTP/1.1\r\nHost: t\r\n\r\n");
	CHECK_INT(th_read_some(fd, buf, sizeof buf, 300, 3), ==, 300);
	CHECK_CONTAINS(buf, "text/event-stream");
	close(fd);
	wait_flag(&ticker_cancelled, 3);
	th_wait_idle(s.app, 3);
	/* the ticker's pending sleep was cancelled, the stream callback told */
	CHECK_INT(GET(ticker_cancelled), ==, 1);
	CHECK_INT(GET(stream_cb_cancelled), ==, 1);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.in_flight, ==, 0);
	CHECK_INT(st.gone, ==, 1);
	CHECK_CONTAINS(th_log(), "GET /ticker 499");
	th_server_stop(&s);
}

static void test_quiet_stream_notices_disconnect(void)
{
	th_server s;
	char buf[4096];
	int fd;
	double t0;
	start_app(&s, NULL);
	/* one event, then 5 s of silence: the departure must be seen at
	 * once, not at the next write */
	fd = th_connect_send(s.port, "GET /ticker?every=5000 HTTP/1.1\r\nHost: t\r\n\r\n");
	th_read_some(fd, buf, sizeof buf, sizeof buf - 1, 0.3);
	CHECK_CONTAINS(buf, "id: 0\n");
	t0 = th_now();
	close(fd);
	wait_flag(&ticker_cancelled, 3);
	CHECK_INT(GET(ticker_cancelled), ==, 1);
	CHECK_DBL(th_now() - t0, <, 1.0);
	th_wait_idle(s.app, 3);
	th_server_stop(&s);
}

static void test_stops_on_disconnect_pool(void)
{
	th_server s;
	char buf[4096];
	int fd;
	start_app(&s, NULL);
	SET(pool_ticker_done, 0);
	SET(pool_ticker_rc, 0);
	fd = th_connect_send(s.port, "GET /pticker HTTP/1.1\r\nHost: t\r\n\r\n");
	CHECK_INT(th_read_some(fd, buf, sizeof buf, 300, 3), ==, 300);
	close(fd);
	wait_flag(&pool_ticker_done, 3);
	CHECK_INT(GET(pool_ticker_done), ==, 1);
	CHECK_INT(GET(pool_ticker_rc), ==, EVAPI_EGONE);
	th_wait_idle(s.app, 3);
	th_server_stop(&s);
}

static void test_shutdown_cuts_streams(void)
{
	evapi_config cfg;
	th_server s;
	char buf[4096];
	int fd;
	double t0;
	th_config(&cfg);
	cfg.shutdown_grace_ms = 200;
	start_app(&s, &cfg);
	fd = th_connect_send(s.port, "GET /ticker?every=20 HTTP/1.1\r\nHost: t\r\n\r\n");
	CHECK_INT(th_read_some(fd, buf, sizeof buf, 200, 3), ==, 200);
	t0 = th_now();
	th_server_stop(&s); /* drains for the grace, then cuts the stream */
	CHECK_DBL(th_now() - t0, <, 2.0);
	CHECK_INT(GET(ticker_cancelled), ==, 1);
	CHECK_INT(GET(stream_cb_cancelled), ==, 1);
	CHECK_CONTAINS(th_log(), "shutdown cut GET /ticker (stream still open)");
	/* the access log says what the client got: 200 and events, cut */
	CHECK(strncmp(buf, "HTTP/1.1 200", 12) == 0);
	CHECK_CONTAINS(th_log(), "GET /ticker 200 ");
	CHECK(strstr(th_log(), "GET /ticker 503") == NULL);
	close(fd);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"stream.chunked_from_loop", test_chunked_from_loop},
		{"stream.from_pool_job", test_from_pool_job},
		{"stream.backpressure_bounds_memory", test_backpressure_bounds_memory},
		{"stream.sse_format", test_sse_format},
		{"stream.sse_keepalive_and_idle_timeout", test_sse_keepalive_and_idle_timeout},
		{"stream.stops_on_disconnect_loop", test_stops_on_disconnect_loop},
		{"stream.stops_on_disconnect_pool", test_stops_on_disconnect_pool},
		{"stream.quiet_stream_notices_disconnect", test_quiet_stream_notices_disconnect},
		{"stream.shutdown_cuts_streams", test_shutdown_cuts_streams},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
