/*
 * test_redis.c: Redis on the loop (src/redis.c) against a real
 * redis-server started on a free 127.0.0.1 port (tests/redis.c): a
 * command's round trip, its timeout (504) and a server that is down
 * (503, then recovery), a request whose client leaves (ECANCELED once),
 * subscriptions restored after a Redis restart with a live WebSocket
 * session (Python's websockets, on the demo's /ws/chat/{room}) that
 * receives the next broadcast, broadcasts shared by two instances and
 * by two prefork workers (server-sent events read from raw sockets),
 * and the pub/sub experiment of examples/demo_pubsub.c: a blocking
 * consumer on the loop stalls GET /, on the pool it does not. A
 * redis_url naming its host is looked up on the pool, never on the loop
 * (the test's own getaddrinfo makes the lookup slow).
 */
#include "harness.h"
#include "redis.h"
#include "../examples/demo.h"

#include <dlfcn.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <evapi/redis.h>

/* valgrind preloads its vgpreload_*.so into the program it runs */
static int under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");
	return p && strstr(p, "vgpreload");
}

/* ---- slow and failing DNS names ------------------------------------------ */

/* Everything in this process (hiredis too) resolves names through this
 * getaddrinfo, which the executable's own definition replaces: SLOW_NAME
 * takes SLOW_DNS_MS (then is 127.0.0.1), BAD_NAME does not exist. Calls
 * for SLOW_NAME are counted, those on `dns_watch` (the loop) apart. */
#define SLOW_NAME "evapi-slow-dns.test"
#define BAD_NAME "evapi-no-such-host.test"
#define SLOW_DNS_MS 1500
static int dns_calls, dns_on_watch, dns_watching;
static pthread_t dns_watch;

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res)
{
	typedef int (*gai_fn)(const char *, const char *,
	                      const struct addrinfo *, struct addrinfo **);
	static gai_fn real_fn; /* set by whichever thread comes first */
	gai_fn real = __atomic_load_n(&real_fn, __ATOMIC_ACQUIRE);

	if (!real) {
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
		__atomic_store_n(&real_fn, real, __ATOMIC_RELEASE);
	}
	if (node && strcmp(node, BAD_NAME) == 0)
		return EAI_NONAME;
	if (node && strcmp(node, SLOW_NAME) == 0) {
		__atomic_add_fetch(&dns_calls, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&dns_watching, __ATOMIC_SEQ_CST) &&
		    pthread_equal(pthread_self(), dns_watch))
			__atomic_add_fetch(&dns_on_watch, 1, __ATOMIC_SEQ_CST);
		usleep(SLOW_DNS_MS * 1000);
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}

/* ---- routes ------------------------------------------------------------- */

static void answer(evapi_req *req, int status, const evapi_redis_reply *r,
                   void *arg)
{
	json_t *v;

	if (status != 0)
		return;
	if (evapi_redis_reply_error(r) != 0) {
		evapi_reply_redis_error(req, r);
		return;
	}
	v = evapi_redis_reply_json(r);
	evapi_reply_json(req, 200, json_pack("{s:o}", "value",
	                                     v ? v : json_null()));
}

static void cmd_route(evapi_req *req, const char *const *argv, int argc)
{
	int rc = evapi_req_redis_command(req, argc, argv, NULL, answer, NULL);
	if (rc != 0)
		evapi_reply_error(req, 500, evapi_strerror(rc));
}

static void get_key(evapi_req *req, void *arg)
{
	const char *argv[] = {"GET", evapi_req_param(req, "k")};
	cmd_route(req, argv, 2);
}

static void set_key(evapi_req *req, void *arg)
{
	const char *argv[] = {"SET", evapi_req_param(req, "k"),
	                      evapi_req_param(req, "v")};
	cmd_route(req, argv, 3);
}

static void lrange(evapi_req *req, void *arg)
{
	const char *argv[] = {"LRANGE", evapi_req_param(req, "k"), "0", "-1"};
	cmd_route(req, argv, 4);
}

/* BLPOP on a key nobody pushes to: Redis holds the reply 3 s (2 s for
 * the traced one). */
static void blpop(evapi_req *req, void *arg)
{
	const char *argv[] = {"BLPOP", "evapi:test:never", "3"};
	cmd_route(req, argv, 3);
}

static void traced(evapi_req *req, int status, const evapi_redis_reply *r,
                   void *arg)
{
	char line[64];
	snprintf(line, sizeof line, "blpop-cb:%d;", status);
	th_trace_add(line);
	if (status == 0)
		answer(req, status, r, arg);
}

static void blpop_traced(evapi_req *req, void *arg)
{
	const char *argv[] = {"BLPOP", "evapi:test:never", "2"};
	if (evapi_req_redis_command(req, 3, argv, NULL, traced, NULL) != 0)
		evapi_reply_error(req, 500, "no command");
}

/* The blocking face: a pool route (and the same call refused on the
 * loop). Path: /sync/{cmd}/{k}, cmd get or blpop. */
static void sync_cmd(evapi_req *req, void *arg)
{
	const char *blpop[] = {"BLPOP", "evapi:test:never", "3"};
	const char *get[] = {"GET", evapi_req_param(req, "k")};
	int is_get = strcmp(evapi_req_param(req, "cmd"), "get") == 0;
	evapi_redis_reply *r;
	json_t *v;
	int rc;

	rc = evapi_req_redis_command_sync(req, is_get ? 2 : 3,
	                                  is_get ? get : blpop, NULL, &r);
	if (!r) {
		evapi_reply_error(req, 500, evapi_strerror(rc));
	} else if (rc != 0) {
		evapi_reply_redis_error(req, r);
	} else {
		v = evapi_redis_reply_json(r);
		evapi_reply_json(req, 200, json_pack("{s:o?}", "value", v));
	}
	evapi_redis_reply_free(r);
}

static void whoami(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:i}", "pid", (int)getpid()));
}

/* 200 with our pid once the subscriptions are confirmed, else 503 */
static void ready(evapi_req *req, void *arg)
{
	if (!evapi_app_redis_subscribed(evapi_req_app(req)))
		evapi_reply_error(req, 503, "not subscribed yet");
	else
		whoami(req, arg);
}

/* An event stream on channel {room}, opened by an event naming the pid. */
static void sse(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	char pid[16];

	if (!s)
		return;
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	evapi_sse_send(s, "hello", NULL, pid);
	if (evapi_stream_subscribe(evapi_req_app(req), s,
	                           evapi_req_param(req, "room")) != 0)
		evapi_stream_close(s);
}

static void publish(evapi_req *req, void *arg)
{
	int n = evapi_app_publish(evapi_req_app(req),
	                          evapi_req_param(req, "room"),
	                          evapi_req_query(req, "text"));
	evapi_reply_json(req, 200, json_pack("{s:i}", "reached", n));
}

static int routes(evapi_app *app, void *arg)
{
	int rc = 0;
	rc |= evapi_app_route(app, EVAPI_GET, "/get/{k}", EVAPI_INLINE, get_key,
	                      NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/set/{k}/{v}", EVAPI_INLINE,
	                      set_key, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/lrange/{k}", EVAPI_INLINE,
	                      lrange, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/blpop", EVAPI_INLINE, blpop,
	                      NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/blpop-traced", EVAPI_INLINE,
	                      blpop_traced, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/pid", EVAPI_INLINE, whoami,
	                      NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/sync/{cmd}/{k}", EVAPI_POOL,
	                      sync_cmd, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/sync-on-loop/{cmd}/{k}",
	                      EVAPI_INLINE, sync_cmd, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/ready", EVAPI_INLINE, ready,
	                      NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/sse/{room}", EVAPI_INLINE, sse,
	                      NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/pub/{room}", EVAPI_INLINE,
	                      publish, NULL);
	return rc;
}

static evapi_app *new_app(const char *url, int command_ms)
{
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.redis_url = url;
	if (command_ms)
		cfg.redis_command_timeout_ms = command_ms;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	if (app)
		CHECK_INT(routes(app, NULL), ==, 0);
	return app;
}

/* The binary's server, started by the first test that needs one. */
static th_redis shared;

static const th_redis *redis_shared(void)
{
	char why[256];
	int rc;

	if (shared.pid)
		return &shared;
	rc = th_redis_start(&shared, why, sizeof why);
	if (rc == -1)
		TH_SKIP("%s", why);
	else if (rc != 0)
		TH_FAIL_AT("cannot start redis-server");
	return rc == 0 ? &shared : NULL;
}

static int wait_subscribed(evapi_app *app, double secs)
{
	double end = th_now() + secs;
	while (!evapi_app_redis_subscribed(app) && th_now() < end)
		th_sleep_ms(20);
	return evapi_app_redis_subscribed(app);
}

/* ---- commands ----------------------------------------------------------- */

static void app_cmd_done(evapi_app *app, const evapi_redis_reply *r,
                         void *arg)
{
	char line[64];
	snprintf(line, sizeof line, "app-cmd:%d:%s;", evapi_redis_reply_error(r),
	         evapi_redis_reply_str(r, NULL) ? evapi_redis_reply_str(r, NULL)
	                                        : "-");
	th_trace_add(line);
}

static void test_round_trip(void)
{
	const th_redis *rs = redis_shared();
	const char *argv[] = {"RPUSH", "evapi:test:list", "a", "b", "c"};
	const char *bad[] = {"SUBSCRIBE", "x"};
	th_server s;
	th_resp r;
	evapi_app *app;

	if (!rs || !(app = new_app(rs->url, 0)))
		return;
	th_trace_clear();
	/* a command bound to no request, before the loop runs */
	CHECK_INT(evapi_app_redis_command(app, 5, argv, NULL, app_cmd_done,
	                                  NULL), ==, 0);
	CHECK_INT(evapi_app_redis_command(app, 2, bad, NULL, NULL, NULL), ==,
	          EVAPI_EINVAL);
	th_server_start(&s, app);
	CHECK(th_trace_wait("app-cmd:0:-;", 5));
	CHECK_INT(th_http(s.port, "GET", "/set/greeting/hello", NULL, &r), ==,
	          200);
	CHECK_CONTAINS(r.body, "\"OK\"");
	CHECK_INT(th_http(s.port, "GET", "/get/greeting", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"value\":\"hello\"}");
	CHECK_INT(th_http(s.port, "GET", "/get/evapi:test:none", NULL, &r), ==,
	          200);
	CHECK_STR(r.body, "{\"value\":null}");
	CHECK_INT(th_http(s.port, "GET", "/lrange/evapi:test:list", NULL, &r),
	          ==, 200);
	CHECK_CONTAINS(r.body, "[\"a\",\"b\",\"c\"]");
	/* an error reply is a 500 with a generic detail */
	CHECK_INT(th_http(s.port, "GET", "/lrange/greeting", NULL, &r), ==, 500);
	CHECK_STR(r.body, "{\"detail\":\"Internal Server Error\"}");
	CHECK_CONTAINS(th_log(), "WRONGTYPE");
	th_server_stop(&s);
}

static void test_timeout_504(void)
{
	const th_redis *rs = redis_shared();
	th_server s;
	th_resp r;
	evapi_app *app;
	double t0;

	if (!rs || !(app = new_app(rs->url, 300)))
		return;
	th_server_start(&s, app);
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/blpop", NULL, &r), ==, 504);
	CHECK_DBL(th_now() - t0, <, 2.5);
	CHECK_STR(r.body, "{\"detail\":\"Redis timed out\"}");
	/* the connection behind the stuck command was replaced */
	CHECK_INT(th_http(s.port, "GET", "/set/after/timeout", NULL, &r), ==,
	          200);
	CHECK_INT(th_http(s.port, "GET", "/get/after", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"value\":\"timeout\"}");
	th_server_stop(&s);
}

static int sse_open(int port, const char *room, int *pid);
static void sse_read(int fd, char *buf, size_t cap, double secs);
static int count_of(const char *hay, const char *needle);

static void test_down_503_then_recovery(void)
{
	th_redis rs;
	char buf[2048];
	int fd, pid;
	char why[256];
	th_server s;
	th_resp r;
	evapi_app *app;
	long st = 0;
	int rc, i;

	if ((rc = th_redis_init(&rs, why, sizeof why)) != 0) {
		if (rc == -1)
			TH_SKIP("%s", why);
		else
			TH_FAIL_AT("no temporary directory");
		return;
	}
	if (!(app = new_app(rs.url, 0))) {
		th_redis_free(&rs);
		return;
	}
	th_server_start(&s, app);
	CHECK_INT(th_http(s.port, "GET", "/get/x", NULL, &r), ==, 503);
	CHECK_STR(r.body, "{\"detail\":\"Redis unavailable\"}");
	CHECK_CONTAINS(r.headers, "Retry-After: 1");
	CHECK(!evapi_app_redis_subscribed(app));
	/* a broadcast still reaches this process's subscribers */
	if ((fd = sse_open(s.port, "lobby", &pid)) >= 0) {
		CHECK_INT(th_http(s.port, "GET", "/pub/lobby?text=local", NULL,
		                  &r), ==, 200);
		CHECK_STR(r.body, "{\"reached\":1}");
		sse_read(fd, buf, sizeof buf, 0.5);
		CHECK_INT(count_of(buf, "data: local\n"), ==, 1);
		close(fd);
	} else {
		TH_FAIL_AT("no event stream");
	}
	CHECK_CONTAINS(th_log(), "not sent to other processes");
	CHECK_INT(th_redis_up(&rs), ==, 0);
	for (i = 0; i < 100 && (st = th_http(s.port, "GET", "/set/x/back", NULL,
	                                      &r)) != 200; i++)
		th_sleep_ms(50);
	CHECK_INT(st, ==, 200);
	CHECK_INT(th_http(s.port, "GET", "/get/x", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"value\":\"back\"}");
	/* the subscription connection came up by itself */
	CHECK(wait_subscribed(app, 5));
	th_server_stop(&s);
	th_redis_free(&rs);
}

static void test_sync_face(void)
{
	const th_redis *rs = redis_shared();
	th_redis down;
	char why[256];
	th_server s;
	th_resp r;
	evapi_app *app;
	double t0;

	if (!rs || !(app = new_app(rs->url, 300)))
		return;
	th_server_start(&s, app);
	CHECK_INT(th_http(s.port, "GET", "/set/sync/yes", NULL, &r), ==, 200);
	CHECK_INT(th_http(s.port, "GET", "/sync/get/sync", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"value\":\"yes\"}");
	/* refused on the loop */
	CHECK_INT(th_http(s.port, "GET", "/sync-on-loop/get/sync", NULL, &r),
	          ==, 500);
	CHECK_CONTAINS(r.body, evapi_strerror(EVAPI_ETHREAD));
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/sync/blpop/x", NULL, &r), ==, 504);
	CHECK_DBL(th_now() - t0, <, 2.5);
	CHECK_STR(r.body, "{\"detail\":\"Redis timed out\"}");
	/* the worker's connection was reopened: no late BLPOP reply */
	CHECK_INT(th_http(s.port, "GET", "/sync/get/sync", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"value\":\"yes\"}");
	th_server_stop(&s);
	/* a server that is not there: 503 */
	if (th_redis_init(&down, why, sizeof why) != 0 ||
	    !(app = new_app(down.url, 0)))
		return;
	th_server_start(&s, app);
	CHECK_INT(th_http(s.port, "GET", "/sync/get/sync", NULL, &r), ==, 503);
	CHECK_STR(r.body, "{\"detail\":\"Redis unavailable\"}");
	th_server_stop(&s);
	th_redis_free(&down);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	const char *p = hay;
	while ((p = strstr(p, needle))) {
		n++;
		p += strlen(needle);
	}
	return n;
}

static void test_cancel_once(void)
{
	const th_redis *rs = redis_shared();
	th_server s;
	th_resp r;
	evapi_app *app;

	if (!rs || !(app = new_app(rs->url, 0)))
		return;
	th_server_start(&s, app);
	th_trace_clear();
	th_send_and_close(s.port, "GET /blpop-traced HTTP/1.1\r\n"
	                          "Host: x\r\n\r\n", 200);
	/* told at once, not when BLPOP gives up (2 s) */
	CHECK(th_trace_wait("blpop-cb:-7;", 1.2));
	/* the late reply (BLPOP's nil) is dropped */
	th_sleep_ms(2000);
	CHECK_INT(count_of(th_trace(), "blpop-cb:"), ==, 1);
	CHECK_INT(th_http(s.port, "GET", "/set/c/d", NULL, &r), ==, 200);
	th_server_stop(&s);
}

/* ---- broadcasts across processes ---------------------------------------- */

/* Opens GET /sse/{room} on `port`; returns the socket once the stream's
 * first event ("hello", the pid) arrived, its pid in *pid; -1 on
 * failure. */
static int sse_open(int port, const char *room, int *pid)
{
	char req[256], buf[2048], *p;
	long got = 0;
	int fd;
	double end = th_now() + 3;

	snprintf(req, sizeof req, "GET /sse/%s HTTP/1.1\r\nHost: x\r\n\r\n",
	         room);
	if ((fd = th_connect_send(port, req)) < 0)
		return -1;
	buf[0] = '\0';
	while (th_now() < end && !strstr(buf, "event: hello\ndata: ")) {
		long n = th_read_some(fd, buf + got, sizeof buf - (size_t)got,
		                      1, 0.2);
		if (n > 0)
			got += n;
	}
	while (th_now() < end &&
	       !((p = strstr(buf, "event: hello\ndata: ")) &&
	         strchr(p + 19, '\n'))) {
		long n = th_read_some(fd, buf + got, sizeof buf - (size_t)got,
		                      1, 0.2);
		if (n > 0)
			got += n;
	}
	if (!(p = strstr(buf, "event: hello\ndata: "))) {
		close(fd);
		return -1;
	}
	*pid = atoi(p + 19);
	return fd;
}

/* What arrives on fd within `secs`. */
static void sse_read(int fd, char *buf, size_t cap, double secs)
{
	long got = 0, n;
	double end = th_now() + secs;

	buf[0] = '\0';
	while (th_now() < end && (size_t)got + 1 < cap) {
		n = th_read_some(fd, buf + got, cap - (size_t)got, 1, 0.1);
		if (n > 0)
			got += n;
	}
}

static void test_two_instances(void)
{
	const th_redis *rs = redis_shared();
	th_server a, b;
	evapi_app *aa, *ab;
	char buf[4096];
	th_resp r;
	int fa, fb, pid;

	if (!rs || !(aa = new_app(rs->url, 0)))
		return;
	if (!(ab = new_app(rs->url, 0))) {
		evapi_app_free(aa);
		return;
	}
	th_server_start(&a, aa);
	th_server_start(&b, ab);
	CHECK(wait_subscribed(aa, 5));
	CHECK(wait_subscribed(ab, 5));
	fa = sse_open(a.port, "lobby", &pid);
	fb = sse_open(b.port, "lobby", &pid);
	CHECK(fa >= 0);
	CHECK(fb >= 0);
	/* from A: A's subscriber at once, B's through Redis; once each */
	CHECK_INT(th_http(a.port, "GET", "/pub/lobby?text=from-a", NULL, &r),
	          ==, 200);
	CHECK_STR(r.body, "{\"reached\":1}");
	sse_read(fa, buf, sizeof buf, 0.8);
	CHECK_INT(count_of(buf, "data: from-a\n"), ==, 1);
	sse_read(fb, buf, sizeof buf, 0.2);
	CHECK_INT(count_of(buf, "data: from-a\n"), ==, 1);
	/* and back */
	CHECK_INT(th_http(b.port, "GET", "/pub/lobby?text=from-b", NULL, &r),
	          ==, 200);
	sse_read(fa, buf, sizeof buf, 0.8);
	CHECK_INT(count_of(buf, "data: from-b\n"), ==, 1);
	sse_read(fb, buf, sizeof buf, 0.2);
	CHECK_INT(count_of(buf, "data: from-b\n"), ==, 1);
	/* a PUBLISH by another client reaches both */
	CHECK_INT(th_redis_publish(rs, "evapi:channel:lobby", "from-cli"), ==,
	          2);
	sse_read(fa, buf, sizeof buf, 0.8);
	CHECK_INT(count_of(buf, "data: from-cli\n"), ==, 1);
	sse_read(fb, buf, sizeof buf, 0.2);
	CHECK_INT(count_of(buf, "data: from-cli\n"), ==, 1);
	/* another room hears nothing */
	CHECK_INT(th_http(a.port, "GET", "/pub/other?text=x", NULL, &r), ==,
	          200);
	CHECK_STR(r.body, "{\"reached\":0}");
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	th_server_stop(&a);
	th_server_stop(&b);
}

static const char *prefork_url;

static pid_t start_prefork(int port)
{
	evapi_config cfg;
	pid_t pid;

	evapi_config_init(&cfg);
	cfg.port = port;
	cfg.workers = 2;
	cfg.pool_threads = 2;
	cfg.access_log = 0;
	cfg.shutdown_grace_ms = 2000;
	cfg.log_level = EVAPI_LOG_WARN;
	cfg.redis_url = prefork_url;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
		_exit(evapi_app_serve(&cfg, routes, NULL) == 0 ? 0 : 3);
	}
	return pid;
}

static void test_prefork_workers(void)
{
	const th_redis *rs = redis_shared();
	int port = th_free_port(), pids[4], fds[16], fpid[16];
	int i, n = 0, npid = 0, errors = 1, other = -1, seen2 = 0;
	char buf[4096];
	double end;
	th_resp r;
	pid_t sup;

	if (!rs)
		return;
	prefork_url = rs->url;
	sup = start_prefork(port);
	CHECK(sup > 0);
	if (sup <= 0)
		return;
	/* both workers answer /ready: subscribed */
	for (end = th_now() + 10; th_now() < end;) {
		errors = 0;
		npid = th_distinct_pids(port, "/ready", 16, pids, 4, &errors);
		if (npid == 2 && errors == 0)
			break;
		th_sleep_ms(100);
	}
	CHECK_INT(npid, ==, 2);
	CHECK_INT(errors, ==, 0);
	/* streams until both workers hold at least one */
	for (i = 0; i < 16 && !seen2; i++) {
		if ((fds[n] = sse_open(port, "lobby", &fpid[n])) < 0)
			continue;
		if (fpid[n] != fpid[0])
			other = n, seen2 = 1;
		n++;
	}
	CHECK(seen2);
	CHECK_INT(th_http(port, "GET", "/pub/lobby?text=to-every-worker", NULL,
	                  &r), ==, 200);
	for (i = 0; i < n; i++) {
		sse_read(fds[i], buf, sizeof buf, i == 0 ? 1.0 : 0.2);
		if (count_of(buf, "data: to-every-worker\n") != 1)
			TH_FAIL_AT("stream %d (worker %d, %s) got \"%s\"", i,
			           fpid[i], i == other ? "second" : "first", buf);
	}
	for (i = 0; i < n; i++)
		close(fds[i]);
	CHECK_INT(th_stop_child(sup, 10), ==, 0);
}

/* ---- a session alive across a Redis restart ----------------------------- */

static void test_restart_ws_session(void)
{
	th_redis rs;
	evapi_config cfg;
	th_server s;
	evapi_app *app;
	char why[256], script[160], out[160], cmd[512], buf[512];
	const char *py = "/usr/bin/python3";
	double end;
	pid_t child;
	FILE *f;
	int st = -1, i;

	if (system("/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1")
	    != 0) {
		TH_SKIP("python3-websockets not installed (.ci/deps installs it)");
		return;
	}
	if ((i = th_redis_start(&rs, why, sizeof why)) != 0) {
		if (i == -1)
			TH_SKIP("%s", why);
		else
			TH_FAIL_AT("cannot start redis-server");
		return;
	}
	th_config(&cfg);
	cfg.redis_url = rs.url;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	if (!app || demo_ws_routes(app) != 0) {
		evapi_app_free(app);
		th_redis_free(&rs);
		return;
	}
	th_server_start(&s, app);
	CHECK(wait_subscribed(app, 5));
	snprintf(script, sizeof script, "%s/client.py", rs.dir);
	snprintf(out, sizeof out, "%s/client.out", rs.dir);
	f = fopen(script, "w");
	CHECK(f != NULL);
	if (!f)
		goto out;
	fprintf(f,
	        "import asyncio, sys, websockets\n"
	        "async def main():\n"
	        "    async with websockets.connect(sys.argv[1]) as ws:\n"
	        "        print('open', flush=True)\n"
	        "        while True:\n"
	        "            m = await asyncio.wait_for(ws.recv(), 20)\n"
	        "            print('got', m, flush=True)\n"
	        "            if m == 'after-restart':\n"
	        "                return\n"
	        "asyncio.run(main())\n");
	fclose(f);
	snprintf(cmd, sizeof cmd, "ws://127.0.0.1:%d/ws/chat/lobby", s.port);
	child = fork();
	if (child == 0) {
		char *argv[] = {(char *)py, script, cmd, NULL};
		FILE *o = freopen(out, "w", stdout);
		(void)o;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		th_child_close_fds();
		execv(py, argv);
		_exit(127);
	}
	CHECK(child > 0);
	for (end = th_now() + 10; th_now() < end; th_sleep_ms(50)) {
		snprintf(cmd, sizeof cmd, "cat %s 2>/dev/null", out);
		th_run_capture(cmd, buf, sizeof buf);
		if (strstr(buf, "open"))
			break;
	}
	CHECK_CONTAINS(buf, "open");
	/* Redis goes away and comes back on the same port */
	th_redis_down(&rs);
	th_sleep_ms(300);
	CHECK(!evapi_app_redis_subscribed(app));
	CHECK_INT(th_redis_up(&rs), ==, 0);
	CHECK(wait_subscribed(app, 10));
	/* another process's broadcast, through Redis, reaches the session */
	CHECK_INT(th_redis_publish(&rs, "evapi:channel:chat:lobby",
	                           "after-restart"), ==, 1);
	for (end = th_now() + 10; th_now() < end; th_sleep_ms(50))
		if (waitpid(child, &st, WNOHANG) == child)
			break;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		kill(child, SIGKILL);
		waitpid(child, &st, 0);
		TH_FAIL_AT("the WebSocket client did not get the message");
	}
	snprintf(cmd, sizeof cmd, "cat %s", out);
	th_run_capture(cmd, buf, sizeof buf);
	CHECK_CONTAINS(buf, "got after-restart");
	CHECK_CONTAINS(th_log(), "redis: connection (subscriptions)");
out:
	th_server_stop(&s);
	th_redis_free(&rs);
}

/* ---- a consumer on the pool whose queue is full -------------------------- */

static int slow_seen; /* atomic */

static void slow_consumer(evapi_app *app, const char *channel,
                          const char *payload, size_t len, void *arg)
{
	usleep(300 * 1000);
	__atomic_add_fetch(&slow_seen, 1, __ATOMIC_RELAXED);
}

static void test_pool_queue_full(void)
{
	const th_redis *rs = redis_shared();
	evapi_config cfg;
	th_server s;
	evapi_app *app;
	double end;
	int i;

	if (!rs)
		return;
	th_config(&cfg);
	cfg.redis_url = rs->url;
	cfg.pool_threads = 1;
	cfg.pool_queue_max = 1;
	if (!(app = evapi_app_new(&cfg)))
		return;
	__atomic_store_n(&slow_seen, 0, __ATOMIC_RELAXED);
	CHECK_INT(evapi_app_redis_subscribe(app, "evapi:test:slow", EVAPI_POOL,
	                                    slow_consumer, NULL), ==, 0);
	CHECK_INT(evapi_app_redis_subscribe(app, "evapi:test:slow", 7,
	                                    slow_consumer, NULL), ==,
	          EVAPI_EINVAL);
	th_log_clear();
	th_server_start(&s, app);
	CHECK(wait_subscribed(app, 5));
	for (i = 0; i < 5; i++)
		th_redis_publish(rs, "evapi:test:slow", "m");
	/* one runs, at most one waits, the rest find the queue full */
	for (end = th_now() + 5; th_now() < end &&
	     __atomic_load_n(&slow_seen, __ATOMIC_RELAXED) < 1;)
		th_sleep_ms(50);
	th_sleep_ms(700);
	CHECK_INT(__atomic_load_n(&slow_seen, __ATOMIC_RELAXED), >=, 1);
	CHECK_INT(__atomic_load_n(&slow_seen, __ATOMIC_RELAXED), <=, 2);
	CHECK_CONTAINS(th_log(), "message on evapi:test:slow dropped: the "
	                         "pool queue is full");
	th_server_stop(&s);
}

/* ---- the pub/sub experiment --------------------------------------------- */

typedef struct probe {
	pthread_t thread;
	int port;
	int stop; /* atomic */
	double max_s;
	int n;
} probe;

/* GET / over and over, keeping the slowest */
static void *probe_main(void *arg)
{
	probe *p = arg;
	th_resp r;
	double t;

	while (!__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
		t = th_now();
		th_http(p->port, "GET", "/", NULL, &r);
		t = th_now() - t;
		if (t > p->max_s)
			p->max_s = t;
		p->n++;
		th_sleep_ms(20);
	}
	return NULL;
}

static void root(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "message", "Hello"));
}

/* Runs the experiment in `lane`; returns 0 and fills the slowest GET /
 * and the span of the blocking messages (first start to last finish). */
static int experiment(const th_redis *rs, evapi_lane lane, unsigned block_ms,
                      double *max_get, double *span)
{
	evapi_config cfg;
	th_server s;
	evapi_app *app;
	probe p = {0};
	json_t *log, *msgs, *m;
	double first = 1e9, last = 0;
	char text[32];
	size_t i;
	th_resp r;
	double end;
	int rc = -1;

	th_config(&cfg);
	cfg.redis_url = rs->url;
	cfg.pool_threads = 8;
	if (!(app = evapi_app_new(&cfg)))
		return -1;
	if (evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, root, NULL) != 0 ||
	    demo_pubsub_routes(app, lane, block_ms) != 0) {
		evapi_app_free(app);
		return -1;
	}
	th_server_start(&s, app);
	if (!wait_subscribed(app, 5))
		goto out;
	p.port = s.port;
	pthread_create(&p.thread, NULL, probe_main, &p);
	th_sleep_ms(200);
	for (i = 1; i <= 5; i++) {
		snprintf(text, sizeof text, "non-blocking %zu", i);
		th_redis_publish(rs, DEMO_PUBSUB_CHANNEL, text);
	}
	for (i = 1; i <= 5; i++) {
		snprintf(text, sizeof text, "blocking %zu", i);
		th_redis_publish(rs, DEMO_PUBSUB_CHANNEL, text);
	}
	for (end = th_now() + 20; th_now() < end; th_sleep_ms(100)) {
		if (th_http(s.port, "GET", "/pubsub/log", NULL, &r) == 200 &&
		    strstr(r.body, "\"finished\":10"))
			break;
	}
	__atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
	pthread_join(p.thread, NULL);
	CHECK_CONTAINS(r.body, "\"finished\":10");
	log = json_loads(r.body, 0, NULL);
	msgs = json_object_get(log, "messages");
	json_array_foreach(msgs, i, m) {
		const char *name = json_string_value(json_object_get(m, "message"));
		double a = json_number_value(json_object_get(m, "start_ms"));
		double b = json_number_value(json_object_get(m, "finish_ms"));
		if (!name || strncmp(name, "blocking", 8) != 0)
			continue;
		if (a < first)
			first = a;
		if (b > last)
			last = b;
	}
	json_decref(log);
	*max_get = p.max_s;
	*span = (last - first) / 1000.0;
	rc = 0;
out:
	th_server_stop(&s);
	return rc;
}

static void test_pubsub_experiment(void)
{
	const th_redis *rs = redis_shared();
	unsigned block_ms = 400;
	double loop_get = 0, loop_span = 0, pool_get = 0, pool_span = 0;

	if (!rs)
		return;
	th_log_clear();
	CHECK_INT(experiment(rs, EVAPI_INLINE, block_ms, &loop_get, &loop_span),
	          ==, 0);
	/* on the loop: the five run one after the other, GET / waits */
	CHECK_DBL(loop_span, >=, 5 * block_ms / 1000.0 * 0.9);
	CHECK_DBL(loop_get, >=, block_ms / 1000.0 * 0.6);
	CHECK_CONTAINS(th_log(), "(redis message)");
	CHECK_CONTAINS(th_log(), "loop stalled");
	CHECK_INT(experiment(rs, EVAPI_POOL, block_ms, &pool_get, &pool_span),
	          ==, 0);
	/* on the pool: side by side, GET / unaffected */
	CHECK_DBL(pool_span, <, loop_span / 2);
	if (!under_valgrind())
		CHECK_DBL(pool_get, <, block_ms / 1000.0 / 2);
	printf("  experiment: loop: GET / max %.0f ms, blocking span %.0f ms; "
	       "pool: GET / max %.0f ms, blocking span %.0f ms\n",
	       loop_get * 1000, loop_span * 1000, pool_get * 1000,
	       pool_span * 1000);
}

typedef struct bg_get {
	int port;
	const char *path;
	th_resp r;
	long st;
} bg_get;

static void *bg_get_main(void *arg)
{
	bg_get *b = arg;
	b->st = th_http(b->port, "GET", b->path, NULL, &b->r);
	return NULL;
}

/* A redis_url naming its host: the name is looked up on a pool worker
 * while the loop keeps answering; commands sent meanwhile wait for the
 * connection and then succeed, and the subscription connection uses the
 * address found too. A name that does not resolve fails commands with
 * 503 and says why in the log. */
static void test_dns_off_loop(void)
{
	const th_redis *rs = redis_shared();
	char url[128];
	evapi_config cfg;
	evapi_app *app;
	pthread_t t;
	th_server s;
	th_resp r;
	bg_get b;
	double t0;

	if (!rs)
		return;
	snprintf(url, sizeof url, "redis://" SLOW_NAME ":%d", rs->port);
	th_config(&cfg);
	cfg.redis_url = url;
	cfg.redis_connect_timeout_ms = 10000;
	cfg.redis_command_timeout_ms = 10000;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	if (!app || routes(app, NULL) != 0)
		return;
	th_server_start(&s, app);
	dns_watch = s.thread;
	__atomic_store_n(&dns_calls, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&dns_on_watch, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&dns_watching, 1, __ATOMIC_SEQ_CST);
	memset(&b, 0, sizeof b);
	b.port = s.port;
	b.path = "/set/dns/found";
	pthread_create(&t, NULL, bg_get_main, &b);
	th_sleep_ms(300); /* its lookup has begun */
	t0 = th_now();
	CHECK(th_http(s.port, "GET", "/ready", NULL, &r) > 0);
	CHECK_DBL(th_now() - t0, <, 0.5);
	/* sent during the lookup: waits for it, then runs after the SET */
	CHECK_INT(th_http(s.port, "GET", "/get/dns", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"value\":\"found\"}");
	pthread_join(t, NULL);
	CHECK_INT(b.st, ==, 200);
	CHECK_CONTAINS(b.r.body, "\"OK\"");
	CHECK_INT(th_http(s.port, "GET", "/get/dns", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"value\":\"found\"}");
	CHECK(wait_subscribed(app, 5));
	__atomic_store_n(&dns_watching, 0, __ATOMIC_SEQ_CST);
	CHECK_INT(__atomic_load_n(&dns_calls, __ATOMIC_SEQ_CST), >=, 1);
	CHECK_INT(__atomic_load_n(&dns_on_watch, __ATOMIC_SEQ_CST), ==, 0);
	th_server_stop(&s);

	/* a command's own timeout runs while it waits for the lookup, and
	 * the app stops with the lookup still running */
	if (!(app = new_app(url, 300)))
		return;
	th_server_start(&s, app);
	t0 = th_now();
	CHECK_INT(th_http(s.port, "GET", "/get/dns", NULL, &r), ==, 504);
	CHECK_DBL(th_now() - t0, <, 1.2);
	th_server_stop(&s);

	snprintf(url, sizeof url, "redis://" BAD_NAME ":%d", rs->port);
	if (!(app = new_app(url, 0)))
		return;
	th_server_start(&s, app);
	CHECK_INT(th_http(s.port, "GET", "/get/dns", NULL, &r), ==, 503);
	CHECK_STR(r.body, "{\"detail\":\"Redis unavailable\"}");
	CHECK_CONTAINS(th_log(), "cannot resolve " BAD_NAME);
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"redis.round_trip", test_round_trip},
		{"redis.timeout_504", test_timeout_504},
		{"redis.down_503_then_recovery", test_down_503_then_recovery},
		{"redis.cancel_once", test_cancel_once},
		{"redis.sync_face", test_sync_face},
		{"redis.two_instances", test_two_instances},
		{"redis.prefork_workers", test_prefork_workers},
		{"redis.restart_ws_session", test_restart_ws_session},
		{"redis.pool_queue_full", test_pool_queue_full},
		{"redis.pubsub_experiment", test_pubsub_experiment},
		{"redis.dns_off_loop", test_dns_off_loop},
		{NULL, NULL}};
	int rc = th_main(argc, argv, tests);
	th_redis_free(&shared);
	return rc;
}
