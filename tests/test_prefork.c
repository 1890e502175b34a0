/*
 * test_prefork.c: evapi_app_serve (src/prefork.c) with two worker
 * processes on one port: both get requests, a killed worker is replaced
 * while the other keeps serving, and SIGTERM to the supervisor drains a
 * request in flight before everything exits 0. The supervisor runs in a
 * child process of the test (it must own its signals).
 */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
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

/* Forks the supervisor; returns its pid once the port answers. */
static pid_t start_supervisor(int port)
{
	evapi_config cfg;
	pid_t pid;
	th_resp r;
	int i;

	evapi_config_init(&cfg);
	cfg.port = port;
	cfg.workers = 2;
	cfg.pool_threads = 2;
	cfg.access_log = 0;
	cfg.shutdown_grace_ms = 5000;
	cfg.log_level = EVAPI_LOG_WARN;
	pid = fork();
	if (pid == 0)
		_exit(evapi_app_serve(&cfg, setup, NULL) == 0 ? 0 : 3);
	CHECK(pid > 0);
	for (i = 0; i < 100; i++) {
		if (th_http(port, "GET", "/pid", NULL, &r) == 200)
			break;
		th_sleep_ms(50);
	}
	return pid;
}

/* Distinct worker pids seen over n new connections. */
static int distinct_pids(int port, int n, int *pids, int cap, int *errors)
{
	th_resp r;
	int i, k, seen = 0;
	for (i = 0; i < n; i++) {
		json_t *j;
		int pid;
		if (th_http(port, "GET", "/pid", NULL, &r) != 200) {
			(*errors)++;
			continue;
		}
		j = json_loads(r.body, 0, NULL);
		pid = (int)json_integer_value(json_object_get(j, "pid"));
		json_decref(j);
		for (k = 0; k < seen && pids[k] != pid; k++)
			;
		if (k == seen && seen < cap)
			pids[seen++] = pid;
	}
	return seen;
}

static int stop_supervisor(pid_t pid)
{
	int status = -1, i;
	kill(pid, SIGTERM);
	for (i = 0; i < 200; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		th_sleep_ms(50);
	}
	TH_FAIL_AT("supervisor %d did not stop within 10 s", (int)pid);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
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

struct bg {
	int port;
	th_resp r;
	long status;
};

static void *slow_request(void *arg)
{
	struct bg *b = arg;
	b->status = th_http(b->port, "GET", "/slow", NULL, &b->r);
	return NULL;
}

static void test_sigterm_drains(void)
{
	int port = th_free_port(), status;
	pid_t sup = start_supervisor(port);
	pthread_t t;
	struct bg b = {port, {0}, 0};
	th_resp r;

	pthread_create(&t, NULL, slow_request, &b);
	th_sleep_ms(200); /* the request is being served */
	status = stop_supervisor(sup);
	pthread_join(t, NULL);
	CHECK_INT(b.status, ==, 200); /* drained, not cut */
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(th_http(port, "GET", "/pid", NULL, &r), ==, 0); /* closed */
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"prefork.two_workers_share_the_port",
		 test_two_workers_share_the_port},
		{"prefork.crashed_worker_is_restarted",
		 test_crashed_worker_is_restarted},
		{"prefork.sigterm_drains", test_sigterm_drains},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
