/*
 * test_shutdown.c: SIGTERM with inline, pool and outbound work in flight
 * (src/reactor.c shutdown with the outbound client of src/client/client.c), on a
 * real app that handles signals, with a second app as the upstream.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int up_port;
static int sleep_ms = 400;

static void slept(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_text(req, 200, "slept");
}

static void up_sleep(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, (unsigned)sleep_ms, slept, NULL);
}

static void inline_sleep(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, (unsigned)sleep_ms, slept, NULL);
}

static void pool_sleep(evapi_req *req, void *arg)
{
	th_sleep_ms(sleep_ms);
	evapi_reply_text(req, 200, "pool");
}

static void fetched(evapi_req *req, int status, const evapi_fetch_res *res,
                    void *arg)
{
	if (status != 0)
		return;
	if (evapi_fetch_res_ok(res))
		evapi_reply_text(req, 200, "outbound");
	else
		evapi_reply_upstream_error(req, res);
}

static void outbound(evapi_req *req, void *arg)
{
	char url[64];
	evapi_fetch_opts o;
	memset(&o, 0, sizeof o);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/sleep", up_port);
	o.url = url;
	if (evapi_req_fetch(req, &o, fetched, NULL) != 0)
		evapi_reply_error(req, 500, "fetch failed");
}

typedef struct batch {
	int port;
	th_resp r[3];
	pthread_t t;
} batch;

static void *run_batch(void *arg)
{
	static const char *const paths[] = {"/inline", "/pool", "/outbound"};
	batch *b = arg;
	th_http_parallel(b->port, 3, paths, b->r);
	return NULL;
}

static int connect_refused(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(0x7f000001);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
	close(fd);
	return rc != 0 && errno == ECONNREFUSED;
}

/* Runs the three kinds of work, sends SIGTERM `signals` times while they
 * are in flight, checks all three got `want`, and returns the batch's
 * answers in `b` and how long the app took to stop. */
static double sigterm_run(int grace_ms, int work_ms, int signals, int want,
                          batch *b)
{
	double stop_secs;
	evapi_config cfg, ucfg;
	th_server s, up;
	double t0;
	int i;

	th_config(&ucfg);
	th_config(&cfg);
	cfg.handle_signals = 1;
	cfg.shutdown_grace_ms = grace_ms;
	sleep_ms = work_ms;

	/* upstream: an app whose /sleep answers after work_ms */
	{
		evapi_app *ua = evapi_app_new(&ucfg);
		evapi_app_route(ua, EVAPI_GET, "/sleep", EVAPI_INLINE, up_sleep,
		                NULL);
		th_server_start(&up, ua);
		up_port = up.port;
	}
	{
		evapi_app *app = evapi_app_new(&cfg);
		evapi_app_route(app, EVAPI_GET, "/inline", EVAPI_INLINE,
		                inline_sleep, NULL);
		evapi_app_route(app, EVAPI_GET, "/pool", EVAPI_POOL, pool_sleep,
		                NULL);
		evapi_app_route(app, EVAPI_GET, "/outbound", EVAPI_INLINE,
		                outbound, NULL);
		th_server_start(&s, app);
	}
	b->port = s.port;
	pthread_create(&b->t, NULL, run_batch, b);
	/* wait (bounded) until all three are in flight: a fixed pause is
	 * too short under valgrind */
	{
		evapi_stats st;
		double end = th_now() + 5.0;
		do {
			th_sleep_ms(20);
			evapi_app_stats(s.app, &st);
		} while (st.in_flight < 3 && th_now() < end);
		CHECK_INT(st.in_flight, ==, 3);
	}
	t0 = th_now();
	kill(getpid(), SIGTERM);
	th_sleep_ms(50);
	CHECK(connect_refused(s.port)); /* stopped accepting at once */
	for (i = 1; i < signals; i++) {
		th_sleep_ms(50); /* separate signals: pending ones merge */
		kill(getpid(), SIGTERM);
	}
	pthread_join(s.thread, NULL); /* evapi_app_run returned */
	stop_secs = th_now() - t0;
	CHECK_INT(s.run_rc, ==, 0);
	pthread_join(b->t, NULL);
	for (i = 0; i < 3; i++)
		CHECK_INT(b->r[i].status, ==, want);
	/* A pool handler still running after a cut is waited for here and
	 * its reply dropped; the sanitizer builds check nothing leaks. */
	evapi_app_free(s.app);
	th_server_stop(&up);
	return stop_secs;
}

static void test_sigterm_finishes_within_grace(void)
{
	batch b;
	double secs = sigterm_run(3000, 400, 1, 200, &b);

	CHECK_STR(b.r[0].body, "slept");
	CHECK_STR(b.r[1].body, "pool");
	CHECK_STR(b.r[2].body, "outbound");
	CHECK_DBL(secs, <, 2.0); /* left as soon as the work was done */
	CHECK_CONTAINS(th_log(), "SIGTERM: not accepting; draining 3 request(s)");
	CHECK(strstr(th_log(), "shutdown cut") == NULL);
}

static void test_sigterm_cuts_after_grace(void)
{
	batch b;
	double secs = sigterm_run(300, 1500, 1, 503, &b);

	CHECK_DBL(secs, >=, 0.25);
	CHECK_DBL(secs, <, 2.0);
	CHECK_CONTAINS(th_log(), "grace period of 300 ms is over");
	CHECK_CONTAINS(th_log(), "shutdown cut GET /inline");
	CHECK_CONTAINS(th_log(), "shutdown cut GET /outbound");
	CHECK_CONTAINS(th_log(), "shutdown cut GET /pool");
	CHECK_CONTAINS(th_log(), "shutdown cut 3 request(s) still in flight");
}

static void test_second_sigterm_cuts_at_once(void)
{
	batch b;
	double secs = sigterm_run(10000, 1500, 2, 503, &b);

	CHECK_DBL(secs, <, 2.0); /* not the 10 s grace */
	CHECK_CONTAINS(th_log(), "SIGTERM again: stopping now");
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"shutdown.sigterm_finishes_within_grace",
		 test_sigterm_finishes_within_grace},
		{"shutdown.sigterm_cuts_after_grace", test_sigterm_cuts_after_grace},
		{"shutdown.second_sigterm_cuts_at_once",
		 test_second_sigterm_cuts_at_once},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
