/*
 * test_prefork.c: evapi_app_serve (src/prefork.c) with two worker
 * processes on one port: both get requests, a killed worker is replaced
 * while the other keeps serving (also under load from keep-alive
 * connections: only those on the killed worker fail), a worker stopped
 * on purpose (exit 0) is not, and SIGTERM to the supervisor drains a
 * request in flight before everything exits 0. The supervisor runs in a
 * child process of the test (it must own its signals).
 */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void whoami(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:i}", "pid", (int)getpid()));
}

static void die(evapi_req *req, void *arg)
{
	kill(getpid(), SIGKILL); /* a crash, without sanitizer noise */
}

static void slept(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:i}", "pid", (int)getpid()));
}

static void slow(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 600, slept, NULL);
}

static int setup(evapi_app *app, void *arg)
{
	int rc = evapi_app_route(app, EVAPI_GET, "/pid", EVAPI_INLINE, whoami,
	                         NULL);
	if (rc == 0)
		rc = evapi_app_route(app, EVAPI_GET, "/die", EVAPI_INLINE, die,
		                     NULL);
	if (rc == 0)
		rc = evapi_app_route(app, EVAPI_GET, "/slow", EVAPI_INLINE, slow,
		                     NULL);
	return rc;
}

static pid_t start_supervisor(int port)
{
	return th_start_prefork(port, 2, setup, "/pid");
}

static int distinct_pids(int port, int n, int *pids, int cap, int *errors)
{
	return th_distinct_pids(port, "/pid", n, pids, cap, errors);
}

static int stop_supervisor(pid_t pid)
{
	return th_stop_child(pid, 10);
}

static void test_two_workers_share_the_port(void)
{
	int port = th_free_port(), pids[8], errors = 0, status;
	pid_t sup = start_supervisor(port);

	CHECK_INT(distinct_pids(port, 200, pids, 8, &errors), ==, 2);
	CHECK_INT(errors, ==, 0);
	CHECK(pids[0] != sup && pids[1] != sup);
	status = stop_supervisor(sup);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_crashed_worker_is_restarted(void)
{
	int port = th_free_port(), before[8], after[8], errors = 0, status, n, i, k;
	int fresh = 0;
	pid_t sup = start_supervisor(port);
	th_resp r;

	n = distinct_pids(port, 100, before, 8, &errors);
	CHECK_INT(n, ==, 2);
	/* The worker that takes this request dies without replying. */
	CHECK_INT(th_http(port, "GET", "/die", NULL, &r), ==, 0);
	/* Connections the kernel queued on the dying worker's socket before
	 * it closed are reset (SO_REUSEPORT gives each socket its own
	 * queue): give the kill a moment to complete. After that the other
	 * worker serves everything, and the replacement joins it. */
	th_sleep_ms(200);
	for (i = 0; i < 30; i++) {
		errors = 0;
		n = distinct_pids(port, 50, after, 8, &errors);
		CHECK_INT(errors, ==, 0);
		if (n == 2)
			break;
		th_sleep_ms(100);
	}
	CHECK_INT(n, ==, 2);
	for (i = 0; i < n; i++) {
		for (k = 0; k < 2 && before[k] != after[i]; k++)
			;
		fresh += k == 2;
	}
	CHECK_INT(fresh, ==, 1); /* exactly one new worker */
	status = stop_supervisor(sup);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_sigterm_drains(void)
{
	int port = th_free_port(), status;
	pid_t sup = start_supervisor(port);
	th_async b;
	th_resp r;

	th_http_start(&b, port, "/slow");
	th_sleep_ms(200); /* the request is being served */
	status = stop_supervisor(sup);
	CHECK_INT(th_http_join(&b), ==, 200); /* drained, not cut */
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(th_http(port, "GET", "/pid", NULL, &r), ==, 0); /* closed */
}

/* Waits until process `pid` (not our child) is gone. */
static int wait_gone(pid_t pid, double secs)
{
	double end = th_now() + secs;
	while (th_now() < end) {
		if (kill(pid, 0) != 0 && errno == ESRCH)
			return 1;
		th_sleep_ms(20);
	}
	return 0;
}

/* A worker that exits 0 (here: its own SIGTERM, a graceful stop) was
 * stopped on purpose and is not restarted; once every worker stopped
 * so, the supervisor exits 0 by itself. */
static void test_stopped_worker_stays_stopped(void)
{
	int port = th_free_port(), before[8], after[8], errors = 0, status = -1;
	int n, i;
	pid_t sup = start_supervisor(port);

	CHECK_INT(distinct_pids(port, 100, before, 8, &errors), ==, 2);
	kill(before[0], SIGTERM);
	CHECK(wait_gone(before[0], 5));
	th_sleep_ms(600); /* the supervisor ticks every 250 ms */
	errors = 0;
	n = distinct_pids(port, 50, after, 8, &errors);
	CHECK_INT(errors, ==, 0);
	CHECK_INT(n, ==, 1);
	CHECK_INT(after[0], ==, before[1]);
	kill(before[1], SIGTERM);
	for (i = 0; i < 100 && waitpid(sup, &status, WNOHANG) != sup; i++)
		th_sleep_ms(50);
	if (i == 100) {
		TH_FAIL_AT("the supervisor kept running without workers");
		status = stop_supervisor(sup);
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- kill -9 under load ------------------------------------------------ */

#define LOAD_CONNS 8
#define MAX_SEEN 16

struct load {
	int port;
	int stop;            /* atomic */
	pthread_mutex_t mu;  /* the rest */
	int want[LOAD_CONNS]; /* pid each connection should start on */
	double kill_at;
	int ok_before, ok_after;
	int seen[MAX_SEEN], seen_after[MAX_SEEN], nseen; /* pids answering */
	int fail_pid[64];    /* the connection's worker at each failure */
	double fail_at[64];
	int nfail;
};

static struct load L;

static int raw_connect(int port)
{
	struct sockaddr_in sa;
	struct timeval tv = {2, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One GET /pid on a keep-alive connection: the worker's pid, or 0.
 * *closing is set when the server ends the connection after it (its
 * keep-alive request limit). */
static int ask_pid(int fd, int *closing)
{
	static const char req[] = "GET /pid HTTP/1.1\r\nHost: t\r\n\r\n";
	char buf[1024], *eoh, *cl;
	size_t got = 0;

	if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)sizeof req - 1)
		return 0;
	for (;;) {
		ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
		if (n <= 0)
			return 0;
		got += (size_t)n;
		buf[got] = '\0';
		if ((eoh = strstr(buf, "\r\n\r\n")) &&
		    (cl = strstr(buf, "Content-Length: ")) &&
		    got >= (size_t)(eoh + 4 - buf) + (size_t)atoi(cl + 16))
			break;
		if (got == sizeof buf - 1)
			return 0;
	}
	if (strncmp(buf, "HTTP/1.1 200", 12) != 0 || !(cl = strstr(eoh, "\"pid\":")))
		return 0;
	*eoh = '\0';
	*closing = strstr(buf, "Connection: close") != NULL;
	return atoi(cl + 6);
}

static void note_ok(int pid)
{
	int k;
	pthread_mutex_lock(&L.mu);
	for (k = 0; k < L.nseen && L.seen[k] != pid; k++)
		;
	if (k == L.nseen && k < MAX_SEEN)
		L.seen[L.nseen++] = pid;
	if (L.kill_at > 0) {
		L.ok_after++;
		if (k < MAX_SEEN)
			L.seen_after[k]++;
	} else {
		L.ok_before++;
	}
	pthread_mutex_unlock(&L.mu);
}

static void *load_conn(void *arg)
{
	int me = (int)(long)arg, fd = -1, pid = 0, got, tries, closing = 0;

	/* Start on the wanted worker (SO_REUSEPORT spreads connections by
	 * their addresses), so both workers have connections to lose. */
	for (tries = 0; tries < 100 && pid != L.want[me]; tries++) {
		if (fd >= 0)
			close(fd);
		fd = raw_connect(L.port);
		pid = fd >= 0 ? ask_pid(fd, &closing) : 0;
	}
	while (!__atomic_load_n(&L.stop, __ATOMIC_SEQ_CST)) {
		if (fd < 0) {
			fd = raw_connect(L.port);
			pid = 0; /* a new connection: no worker known yet */
		}
		got = fd >= 0 ? ask_pid(fd, &closing) : 0;
		if (got) {
			pid = got;
			note_ok(got);
			/* A bounded load, well under the keep-alive request
			 * limit before the kill, so the connections stay on
			 * the workers they were placed on. */
			th_sleep_ms(2);
			if (closing) {
				close(fd);
				fd = -1;
			}
			continue;
		}
		pthread_mutex_lock(&L.mu);
		if (L.nfail < 64) {
			L.fail_pid[L.nfail] = pid;
			L.fail_at[L.nfail++] = th_now();
		}
		pthread_mutex_unlock(&L.mu);
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void test_kill9_under_load(void)
{
	int port = th_free_port(), pids[8], errors = 0, status, i, k;
	int a, b, fresh = 0, on_a = 0, b_after = 0;
	pid_t sup = start_supervisor(port);
	pthread_t t[LOAD_CONNS];
	double killed;

	CHECK_INT(distinct_pids(port, 100, pids, 8, &errors), ==, 2);
	a = pids[0];
	b = pids[1];
	memset(&L, 0, sizeof L);
	pthread_mutex_init(&L.mu, NULL);
	L.port = port;
	for (i = 0; i < LOAD_CONNS; i++)
		L.want[i] = i % 2 ? b : a;
	for (i = 0; i < LOAD_CONNS; i++)
		pthread_create(&t[i], NULL, load_conn, (void *)(long)i);
	th_sleep_ms(1000);
	pthread_mutex_lock(&L.mu);
	killed = L.kill_at = th_now();
	pthread_mutex_unlock(&L.mu);
	kill(a, SIGKILL);
	th_sleep_ms(2000);
	__atomic_store_n(&L.stop, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < LOAD_CONNS; i++)
		pthread_join(t[i], NULL);

	CHECK_INT(L.ok_before, >, 100);
	for (i = 0; i < L.nfail; i++) {
		if (L.fail_pid[i] == a) {
			on_a++;
		} else if (L.fail_pid[i] != 0 || L.fail_at[i] > killed + 1.0) {
			/* A connection on the other worker (or a new one
			 * well after the kill) failed. */
			TH_FAIL_AT("failure %d on pid %d, %.3f s after the kill", i,
			           L.fail_pid[i], L.fail_at[i] - killed);
		}
	}
	/* Each connection on the killed worker failed once, then moved. */
	CHECK_INT(on_a, >=, 1);
	CHECK_INT(on_a, <=, LOAD_CONNS);
	for (k = 0; k < L.nseen; k++)
		if (L.seen[k] == b)
			b_after = L.seen_after[k];
	CHECK_INT(b_after, >, 50); /* the other worker kept serving */
	/* The replacement takes new connections (the load's stayed where
	 * they were, mostly on the survivor). */
	for (i = 0; i < 50 && !fresh; i++) {
		int now[8], n = distinct_pids(port, 20, now, 8, &errors);
		for (k = 0; k < n; k++)
			fresh += now[k] != a && now[k] != b;
		if (!fresh)
			th_sleep_ms(100);
	}
	CHECK_INT(fresh, ==, 1);
	fprintf(stderr, "  note: %d ok before, %d after the kill; %d failed "
	        "(%d on the killed worker)\n", L.ok_before, L.ok_after, L.nfail,
	        on_a);
	pthread_mutex_destroy(&L.mu);
	status = stop_supervisor(sup);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"prefork.two_workers_share_the_port",
		 test_two_workers_share_the_port},
		{"prefork.crashed_worker_is_restarted",
		 test_crashed_worker_is_restarted},
		{"prefork.sigterm_drains", test_sigterm_drains},
		{"prefork.stopped_worker_stays_stopped",
		 test_stopped_worker_stays_stopped},
		{"prefork.kill9_under_load", test_kill9_under_load},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
