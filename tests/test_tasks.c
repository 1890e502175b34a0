/*
 * test_tasks.c: background tasks on a real app: order and lanes, start
 * only after the whole reply has been written (a large reply read slowly
 * by a client with a small window), failures logged and the rest skipped,
 * skipped when the client leaves, and a graceful stop that waits for them.
 */
#include "harness.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_SEQ_CST)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)

static pthread_t loop_thread;
static int cancelled_calls;

static void trace_clear(void)
{
	th_trace_clear();
	SET(cancelled_calls, 0);
}

/* A task that records "<tag>@<loop|pool>;" and frees its tag. */
static int record(evapi_app *app, int status, void *arg)
{
	char buf[64];
	if (status == EVAPI_ECANCELED) {
		__atomic_add_fetch(&cancelled_calls, 1, __ATOMIC_SEQ_CST);
		free(arg);
		return 0;
	}
	snprintf(buf, sizeof buf, "%s@%s;", (char *)arg,
	         pthread_equal(pthread_self(), loop_thread) ? "loop" : "pool");
	th_trace_add(buf);
	free(arg);
	return 0;
}

static int failing(evapi_app *app, int status, void *arg)
{
	if (status == EVAPI_ECANCELED)
		return 0;
	th_trace_add("fail;");
	return EVAPI_EINVAL;
}

static int slow_pool(evapi_app *app, int status, void *arg)
{
	if (status == 0) {
		th_sleep_ms(*(int *)arg);
		th_trace_add("slow;");
	} else {
		__atomic_add_fetch(&cancelled_calls, 1, __ATOMIC_SEQ_CST);
	}
	return 0;
}

static int task_ms = 300;

static void three_tasks(evapi_req *req, void *arg)
{
	CHECK_INT(evapi_req_add_task(req, EVAPI_INLINE, "a", record, strdup("a")), ==, 0);
	CHECK_INT(evapi_req_add_task(req, EVAPI_POOL, "b", record, strdup("b")), ==, 0);
	CHECK_INT(evapi_req_add_task(req, EVAPI_INLINE, "c", record, strdup("c")), ==, 0);
	evapi_reply_json(req, 200, json_pack("{s:s}", "status", "queued"));
	/* too late once replied */
	if (!arg)
		CHECK_INT(evapi_req_add_task(req, EVAPI_INLINE, "late", record, NULL),
		          ==, EVAPI_EALREADY);
}

static void fail_first(evapi_req *req, void *arg)
{
	evapi_req_add_task(req, EVAPI_INLINE, "bad", failing, NULL);
	evapi_req_add_task(req, EVAPI_POOL, "next", record, strdup("next"));
	evapi_reply_text(req, 200, "ok");
}

static long long bytes_read;      /* by the test's client */
static long long read_at_start = -1; /* bytes_read when the task started */

static int note_start(evapi_app *app, int status, void *arg)
{
	if (status == 0) {
		SET(read_at_start, GET(bytes_read));
		th_trace_add("big;");
	} else {
		__atomic_add_fetch(&cancelled_calls, 1, __ATOMIC_SEQ_CST);
	}
	return 0;
}

#define BIG (16L << 20)
static void big_then_task(evapi_req *req, void *arg)
{
	char *b = malloc(BIG);
	memset(b, 'x', BIG);
	evapi_req_add_task(req, EVAPI_INLINE, "after-big", note_start, NULL);
	evapi_reply_bytes(req, 200, "application/octet-stream", b, BIG);
	free(b);
}

static void slow_tasks(evapi_req *req, void *arg)
{
	evapi_req_add_task(req, EVAPI_POOL, "slow", slow_pool, &task_ms);
	evapi_req_add_task(req, EVAPI_INLINE, "after-slow", record, strdup("after"));
	evapi_reply_text(req, 200, "ok");
}

/* Tasks of a streamed reply start once its last chunk is out. */
static void stream_then_task(evapi_req *req, void *arg)
{
	evapi_stream *st;
	evapi_req_add_task(req, EVAPI_INLINE, "after-stream", record,
	                   strdup("after-stream"));
	st = evapi_reply_stream(req, 200, "text/plain");
	evapi_stream_write(st, "part;", 5);
	th_trace_add("streamed;");
	evapi_stream_close(st);
}

static th_server *start_app(th_server *s, int grace_ms)
{
	evapi_config cfg;
	evapi_app *app;
	th_config(&cfg);
	if (grace_ms)
		cfg.shutdown_grace_ms = grace_ms;
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/three", EVAPI_INLINE, three_tasks, NULL);
	evapi_app_route(app, EVAPI_GET, "/pthree", EVAPI_POOL, three_tasks, (void *)1);
	evapi_app_route(app, EVAPI_GET, "/fail", EVAPI_INLINE, fail_first, NULL);
	evapi_app_route(app, EVAPI_GET, "/big", EVAPI_INLINE, big_then_task, NULL);
	evapi_app_route(app, EVAPI_GET, "/slow", EVAPI_INLINE, slow_tasks, NULL);
	evapi_app_route(app, EVAPI_GET, "/stream", EVAPI_INLINE, stream_then_task, NULL);
	trace_clear();
	th_server_start(s, app);
	loop_thread = s->thread;
	return s;
}

static void test_order_and_lanes(void)
{
	th_server s;
	th_resp r;
	start_app(&s, 0);
	CHECK_INT(th_http(s.port, "GET", "/three", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"status\":\"queued\"}");
	CHECK(th_trace_wait("c@", 3));
	CHECK_STR(th_trace(), "a@loop;b@pool;c@loop;");
	/* the same from a pool handler */
	trace_clear();
	CHECK_INT(th_http(s.port, "GET", "/pthree", NULL, &r), ==, 200);
	CHECK(th_trace_wait("c@", 3));
	CHECK_STR(th_trace(), "a@loop;b@pool;c@loop;");
	/* after a streamed reply */
	trace_clear();
	CHECK_INT(th_http(s.port, "GET", "/stream", NULL, &r), ==, 200);
	CHECK_STR(r.body, "part;");
	CHECK(th_trace_wait("after-stream@", 3));
	CHECK_STR(th_trace(), "streamed;after-stream@loop;");
	th_server_stop(&s);
}

static void test_failure_logged_rest_skipped(void)
{
	th_server s;
	th_resp r;
	start_app(&s, 0);
	CHECK_INT(th_http(s.port, "GET", "/fail", NULL, &r), ==, 200);
	th_sleep_ms(300);
	CHECK_STR(th_trace(), "fail;");
	CHECK_INT(GET(cancelled_calls), ==, 1);
	CHECK_CONTAINS(th_log(), "background task 0 (bad) of GET /fail");
	CHECK_CONTAINS(th_log(), "failed: invalid argument");
	CHECK_CONTAINS(th_log(), "background task 1 (next) of GET /fail");
	CHECK_CONTAINS(th_log(), "skipped: an earlier task failed");
	th_server_stop(&s);
}

/* Reads up to n bytes, counting them into bytes_read as they arrive. */
static long slurp(int fd, long n, double secs)
{
	static char buf[65536];
	long total = 0, got;
	double end = th_now() + secs;
	while (total < n && th_now() < end) {
		long want = n - total < (long)sizeof buf - 1 ? n - total
		                                             : (long)sizeof buf - 1;
		got = th_read_some(fd, buf, sizeof buf, want, 0.2);
		if (got <= 0 && th_now() >= end)
			break;
		total += got;
		__atomic_add_fetch(&bytes_read, got, __ATOMIC_SEQ_CST);
		if (got == 0 && want > 0) {
			/* EOF or a quiet 200 ms: check for EOF */
			char c;
			if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
				break;
		}
	}
	return total;
}

static void test_starts_after_full_write(void)
{
	th_server s;
	char head[1024];
	long h, total = 0;
	int fd;
	start_app(&s, 0);
	SET(bytes_read, 0);
	SET(read_at_start, -1);
	fd = th_connect_rcvbuf(s.port, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 65536);
	/* headers first */
	h = th_read_some(fd, head, sizeof head, 200, 3);
	CHECK_CONTAINS(head, "HTTP/1.1 200");
	__atomic_add_fetch(&bytes_read, h, __ATOMIC_SEQ_CST);
	total = h;
	/* a slow reader: after 256 KiB of 16 MiB it pauses; the server
	 * cannot have written everything, so the task must not run yet */
	total += slurp(fd, 256 * 1024, 5);
	th_sleep_ms(600);
	CHECK_INT(GET(read_at_start), ==, -1);
	/* read the rest; the task runs only now */
	{
		const char *eoh = strstr(head, "\r\n\r\n");
		long hdr = eoh ? (long)(eoh + 4 - head) : 0;
		CHECK(eoh != NULL);
		total += slurp(fd, hdr + BIG - total, 30);
		CHECK_INT(total, ==, hdr + BIG);
	}
	CHECK(th_trace_wait("big;", 3));
	CHECK_INT(GET(read_at_start), >, 0);
	/* At its start at most the kernel's socket buffers (a few MiB) were
	 * still on their way: far more than half the body had been read. */
	CHECK_INT(GET(read_at_start), >, BIG / 2);
	fprintf(stderr, "  note: task started with %lld bytes read (body %ld)\n",
	        GET(read_at_start), BIG);
	close(fd);
	th_server_stop(&s);
}

static void test_skipped_when_client_leaves(void)
{
	th_server s;
	char head[1024];
	int fd;
	evapi_stats st;
	start_app(&s, 0);
	fd = th_connect_rcvbuf(s.port, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 4096);
	th_read_some(fd, head, sizeof head, 200, 3);
	th_sleep_ms(100);
	close(fd); /* leaves with most of the reply unwritten */
	{
		double end = th_now() + 3;
		while (GET(cancelled_calls) == 0 && th_now() < end)
			th_sleep_ms(10);
	}
	CHECK_INT(GET(cancelled_calls), ==, 1);
	CHECK_CONTAINS(th_log(), "skipped: the reply was not delivered");
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.in_flight, ==, 0);
	th_server_stop(&s);
}

static void test_shutdown_waits_for_tasks(void)
{
	th_server s;
	th_resp r;
	start_app(&s, 0);
	task_ms = 400;
	CHECK_INT(th_http(s.port, "GET", "/slow", NULL, &r), ==, 200);
	th_server_stop(&s); /* graceful: the 400 ms pool task and the next */
	CHECK_STR(th_trace(), "slow;after@loop;");
	CHECK(strstr(th_log(), "skipped") == NULL);
}

static void test_grace_end_skips_the_rest(void)
{
	th_server s;
	th_resp r;
	double t0;
	start_app(&s, 200);
	task_ms = 800;
	CHECK_INT(th_http(s.port, "GET", "/slow", NULL, &r), ==, 200);
	th_sleep_ms(50);
	t0 = th_now();
	evapi_app_stop(s.app);
	pthread_join(s.thread, NULL);
	CHECK_DBL(th_now() - t0, <, 0.7); /* the grace, not the task */
	evapi_app_free(s.app); /* joins the running pool task */
	CHECK_STR(th_trace(), "slow;");
	CHECK_INT(GET(cancelled_calls), ==, 1);
	CHECK_CONTAINS(th_log(), "skipped: the shutdown grace period ended");
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"tasks.order_and_lanes", test_order_and_lanes},
		{"tasks.failure_logged_rest_skipped", test_failure_logged_rest_skipped},
		{"tasks.starts_after_full_write", test_starts_after_full_write},
		{"tasks.skipped_when_client_leaves", test_skipped_when_client_leaves},
		{"tasks.shutdown_waits_for_tasks", test_shutdown_waits_for_tasks},
		{"tasks.grace_end_skips_the_rest", test_grace_end_skips_the_rest},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
