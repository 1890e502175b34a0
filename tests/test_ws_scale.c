/*
 * test_ws_scale.c: WebSocket sessions at scale and at shutdown, against
 * the demo's WebSocket routes (examples/demo_ws.c) served by
 * evapi_app_serve in a child process: its own memory (measured from
 * /proc), its own signal handling (a real SIGTERM).
 *
 *   ws_scale.idle_10k          10 000 idle sessions: RSS per session,
 *                              and the total under the 64 MiB target
 *   ws_scale.broadcast_1000    a publish to a room of 1 000 sessions:
 *                              all receive; p50/p99 publish -> receipt
 *   ws_scale.sigterm_1001      SIGTERM with sessions open: each gets a
 *                              1001 Going Away within the grace period
 *
 * The clients are plain sockets read with epoll, so the measuring side
 * costs little and never holds the server up. Bounded: each test stops
 * by itself within a minute.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../examples/demo.h"
#include "wsc.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1 /* memory is the sanitizer's: measured, not judged */
#else
#define SANITIZED 0
#endif

#define GRACE_MS 3000

/* ---- the server process --------------------------------------------------- */

static void probe(evapi_req *req, void *arg)
{
	evapi_reply_text(req, 200, "up");
}

static int setup(evapi_app *app, void *arg)
{
	int rc = demo_ws_routes(app);
	return rc ? rc
	          : evapi_app_route(app, EVAPI_GET, "/probe", EVAPI_INLINE,
	                            probe, NULL);
}

/* Forks the server on `port`; returns its pid once /probe answers. */
static pid_t start_server(int port, int max_connections)
{
	evapi_config cfg;
	th_resp r;
	pid_t pid;
	int i;

	evapi_config_init(&cfg);
	cfg.port = port;
	cfg.pool_threads = 2;
	cfg.access_log = 0;
	cfg.log_level = EVAPI_LOG_WARN;
	cfg.shutdown_grace_ms = GRACE_MS;
	cfg.max_connections = max_connections;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
		_exit(evapi_app_serve(&cfg, setup, NULL) == 0 ? 0 : 3);
	}
	CHECK(pid > 0);
	for (i = 0; i < 200 && th_http(port, "GET", "/probe", NULL, &r) != 200;
	     i++)
		th_sleep_ms(50);
	CHECK_INT(r.status, ==, 200);
	return pid;
}

static long rss_kib(pid_t pid)
{
	char path[64];
	long pages = 0, rss = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Raises the descriptor limit to the hard one; 0 when `need` do not fit
 * (the reason is in th_skip_reason). */
static int want_fds(long need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < need) {
		TH_SKIP("RLIMIT_NOFILE hard limit %ld < %ld descriptors needed "
		        "(raise it: ulimit -Hn)", (long)rl.rlim_cur, need);
		return 0;
	}
	return 1;
}

/* ---- many clients ------------------------------------------------------------ */

/* Opens n sessions on `path`, in batches so the listen backlog never
 * overflows; fds[i] is -1 for one that failed. Returns how many got 101. */
static int open_many(int port, const char *path, int *fds, int n)
{
	char req[512], buf[1024];
	int i, at, ok = 0, batch = 200;

	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
	         "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
	         "Sec-WebSocket-Version: 13\r\n\r\n",
	         path);
	for (at = 0; at < n; at += batch) {
		int end = at + batch < n ? at + batch : n;
		for (i = at; i < end; i++)
			fds[i] = th_connect_send(port, req);
		for (i = at; i < end; i++) {
			size_t have = 0;
			double until = th_now() + 10;
			if (fds[i] < 0)
				continue;
			buf[0] = 0;
			while (!strstr(buf, "\r\n\r\n") && have < sizeof buf - 1 &&
			       th_now() < until) {
				struct pollfd pf = {fds[i], POLLIN, 0};
				ssize_t k;
				if (poll(&pf, 1, 1000) <= 0)
					continue;
				k = read(fds[i], buf + have, 1); /* the head only */
				if (k <= 0)
					break;
				buf[++have] = 0;
			}
			if (strncmp(buf, "HTTP/1.1 101 ", 13) == 0) {
				ok++;
			} else {
				close(fds[i]);
				fds[i] = -1;
			}
		}
	}
	return ok;
}

static void close_many(int *fds, int n)
{
	int i;
	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A masked text frame of `s` on fd. */
static int send_text(int fd, const char *s)
{
	uint8_t f[256];
	size_t n = strlen(s), hn = evapi__ws_header(f, 1, EVAPI__WS_TEXT, n,
	                                            WSC_MASK);
	memcpy(f + hn, s, n);
	evapi__ws_mask(f + hn, n, WSC_MASK, 0);
	return write(fd, f, hn + n) == (ssize_t)(hn + n) ? 0 : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
	int i = (int)(p * (n - 1) + 0.5);
	return n ? sorted[i] : 0;
}

/* ---- 10 000 idle sessions ------------------------------------------------------- */

#define N_IDLE 10000

static void test_idle_10k(void)
{
	int *fds, port, opened;
	long rss0, rss1;
	double per, t0;
	pid_t pid;
	wsc c;
	char resp[2048];

	if (!want_fds(N_IDLE + 200))
		return;
	port = th_free_port();
	pid = start_server(port, N_IDLE + 100);
	fds = calloc(N_IDLE, sizeof *fds);
	/* a few sessions first: the baseline has every lazy allocation
	 * (the WebSocket router, the first buffers) behind it */
	opened = open_many(port, "/ws/echo", fds, 10);
	CHECK_INT(opened, ==, 10);
	close_many(fds, 10);
	th_sleep_ms(300);
	rss0 = rss_kib(pid);
	t0 = th_now();
	opened = open_many(port, "/ws/echo", fds, N_IDLE);
	printf("    %d sessions opened in %.1f s\n", opened, th_now() - t0);
	CHECK_INT(opened, ==, N_IDLE);
	th_sleep_ms(500);
	rss1 = rss_kib(pid);
	per = (double)(rss1 - rss0) / N_IDLE;
	printf("    server RSS %ld KiB before, %ld KiB with %d idle sessions: "
	       "+%.1f MiB, %.2f KiB per session%s\n",
	       rss0, rss1, opened, (double)(rss1 - rss0) / 1024, per,
	       SANITIZED ? " (sanitizer build: not judged)" : "");
	/* The target: 10 000 idle sessions in 64 MiB of the server's
	 * memory (what they add to its RSS; kernel socket buffers are not
	 * in it). Slack: none on the target itself; the baseline (the
	 * process before them, ~10 MiB) is not counted. */
	if (!SANITIZED)
		CHECK_DBL((double)(rss1 - rss0) / 1024, <=, 64.0);
	/* it still serves, with all of them open */
	CHECK_INT(wsc_open(&c, port, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	text_reply(&c, "still serving", "still serving");
	wsc_close(&c);
	close_many(fds, N_IDLE);
	free(fds);
	CHECK(WIFEXITED(th_stop_child(pid, 20)));
}

/* ---- broadcast to 1 000 sessions ---------------------------------------------------- */

#define N_ROOM 1000
#define ROUNDS 20

static void test_broadcast_1000(void)
{
	int fds[N_ROOM], port, opened, ep, i, r, got_all = 1;
	double *lat = calloc((size_t)N_ROOM * ROUNDS, sizeof *lat);
	double last[ROUNDS];
	int nlat = 0;
	pid_t pid;

	if (!want_fds(N_ROOM + 200))
		return;
	port = th_free_port();
	pid = start_server(port, N_ROOM + 100);
	opened = open_many(port, "/ws/chat/bench", fds, N_ROOM);
	CHECK_INT(opened, ==, N_ROOM);
	ep = epoll_create1(0);
	for (i = 0; i < N_ROOM; i++) {
		struct epoll_event e = {EPOLLIN, {.u32 = (uint32_t)i}};
		if (fds[i] >= 0)
			epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
	}
	th_sleep_ms(200); /* every session has joined the room */
	for (r = 0; r < ROUNDS && opened == N_ROOM; r++) {
		char msg[32], want[40];
		unsigned char *seen = calloc(N_ROOM, 1);
		int n = 0;
		double t0, until;
		size_t wl;

		snprintf(msg, sizeof msg, "round %d", r);
		/* what each receives: an unmasked text frame of msg */
		want[0] = (char)0x81;
		want[1] = (char)strlen(msg);
		memcpy(want + 2, msg, strlen(msg));
		wl = 2 + strlen(msg);
		t0 = th_now();
		CHECK_INT(send_text(fds[r % N_ROOM], msg), ==, 0);
		until = t0 + 10;
		while (n < N_ROOM && th_now() < until) {
			struct epoll_event ev[256];
			int k, j = epoll_wait(ep, ev, 256, 1000);
			double now = th_now();
			for (k = 0; k < j; k++) {
				int id = (int)ev[k].data.u32;
				char buf[64];
				ssize_t got = read(fds[id], buf, sizeof buf);
				if (got == (ssize_t)wl && memcmp(buf, want, wl) == 0 &&
				    !seen[id]) {
					seen[id] = 1;
					lat[nlat++] = (now - t0) * 1000;
					if (++n == N_ROOM)
						last[r] = (now - t0) * 1000;
				}
			}
		}
		if (n != N_ROOM) {
			TH_FAIL_AT("round %d: %d of %d received", r, n, N_ROOM);
			got_all = 0;
			free(seen);
			break;
		}
		free(seen);
		th_sleep_ms(20);
	}
	if (got_all && nlat) {
		qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
		qsort(last, ROUNDS, sizeof *last, cmp_double);
		printf("    publish -> receipt over %d receipts: p50 %.2f ms, "
		       "p99 %.2f ms; to the 1000th receipt: p50 %.2f ms, max "
		       "%.2f ms (%d rounds)\n",
		       nlat, pct(lat, nlat, 0.5), pct(lat, nlat, 0.99),
		       pct(last, ROUNDS, 0.5), last[ROUNDS - 1], ROUNDS);
		/* the 20 ms target is bench/ws's, on a quiet machine; here,
		 * with the machine shared, only a bound that catches a
		 * broadcast gone wrong (serialised, or per-session timers) */
		CHECK_DBL(pct(lat, nlat, 0.99), <, SANITIZED ? 1000.0 : 200.0);
	}
	close(ep);
	close_many(fds, N_ROOM);
	free(lat);
	CHECK(WIFEXITED(th_stop_child(pid, 20)));
}

/* ---- SIGTERM with sessions open ---------------------------------------------------- */

#define N_TERM 200

/* Reads fd until a close frame: its code, or -1 (none within `secs`, or
 * the connection dropped without one). *at: when it came. */
static int read_close(int fd, double secs, double *at)
{
	uint8_t buf[512];
	size_t have = 0;
	double until = th_now() + secs;

	while (th_now() < until) {
		struct pollfd pf = {fd, POLLIN, 0};
		ssize_t k;
		size_t off = 0;
		if (poll(&pf, 1, 100) <= 0)
			continue;
		k = read(fd, buf + have, sizeof buf - have);
		if (k <= 0)
			return -1;
		have += (size_t)k;
		/* skip whole frames (pings) up to a close */
		while (have - off >= 2) {
			size_t len = buf[off + 1] & 0x7F;
			if (have - off < 2 + len)
				break;
			if ((buf[off] & 0x0F) == EVAPI__WS_CLOSE) {
				*at = th_now();
				return len >= 2 ? (buf[off + 2] << 8) | buf[off + 3]
				                : 1005;
			}
			off += 2 + len;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	return -1;
}

static void test_sigterm_1001(void)
{
	int fds[N_TERM], port, opened, i, status, ok = 0, late = 0;
	double t0, at = 0, worst = 0;
	pid_t pid;

	port = th_free_port();
	pid = start_server(port, N_TERM + 100);
	/* echo sessions and chat sessions (subscribed to a room) */
	opened = open_many(port, "/ws/echo", fds, N_TERM / 2);
	opened += open_many(port, "/ws/chat/lobby", fds + N_TERM / 2,
	                    N_TERM / 2);
	CHECK_INT(opened, ==, N_TERM);
	/* one session is mid-message: half of a fragmented text */
	if (fds[0] >= 0) {
		uint8_t f[16];
		size_t hn = evapi__ws_header(f, 0, EVAPI__WS_TEXT, 4, WSC_MASK);
		memcpy(f + hn, "half", 4);
		evapi__ws_mask(f + hn, 4, WSC_MASK, 0);
		CHECK(write(fds[0], f, hn + 4) == (ssize_t)(hn + 4));
	}
	th_sleep_ms(100);
	t0 = th_now();
	kill(pid, SIGTERM);
	for (i = 0; i < N_TERM; i++) {
		int code;
		if (fds[i] < 0)
			continue;
		code = read_close(fds[i], GRACE_MS / 1000.0 + 2, &at);
		if (code == 1001) {
			ok++;
			if (at - t0 > worst)
				worst = at - t0;
			if (at - t0 > GRACE_MS / 1000.0)
				late++;
			/* half answer the close, half stay silent (cut by
			 * the server's linger) */
			if (i % 2 == 0) {
				uint8_t f[8];
				size_t hn = evapi__ws_header(f, 1, EVAPI__WS_CLOSE,
				                             2, WSC_MASK);
				f[hn] = 0x03;
				f[hn + 1] = 0xe9;
				evapi__ws_mask(f + hn, 2, WSC_MASK, 0);
				if (write(fds[i], f, hn + 2) < 0)
					(void)0; /* the server may be gone */
			}
		}
	}
	printf("    SIGTERM: %d of %d sessions got 1001, the last %.0f ms "
	       "after the signal (grace %d ms)\n",
	       ok, N_TERM, worst * 1000, GRACE_MS);
	CHECK_INT(ok, ==, N_TERM);
	CHECK_INT(late, ==, 0);
	/* the process drains within the grace period and exits 0 */
	for (i = 0; i < (GRACE_MS + 2000) / 50; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		th_sleep_ms(50);
	}
	if (i == (GRACE_MS + 2000) / 50) {
		TH_FAIL_AT("server still running %d ms after SIGTERM",
		           GRACE_MS + 2000);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	} else {
		printf("    server exited %.0f ms after SIGTERM, status %d\n",
		       (th_now() - t0) * 1000, WEXITSTATUS(status));
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		/* the answered sessions end at once, the silent ones after
		 * the guard's 1 s linger: the drain is over well before the
		 * grace period, not cut by it */
		CHECK_DBL(th_now() - t0, <, GRACE_MS / 1000.0 - 0.5);
	}
	close_many(fds, N_TERM);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"ws_scale.idle_10k", test_idle_10k},
		{"ws_scale.broadcast_1000", test_broadcast_1000},
		{"ws_scale.sigterm_1001", test_sigterm_1001},
		{NULL, NULL}};
	signal(SIGPIPE, SIG_IGN);
	return th_main(argc, argv, tests);
}
