/*
 * test_health.c: GET /_/health and GET /_/ready (src/health.c): off
 * unless configured, liveness and readiness answers, "starting" while
 * the app says it is not ready, and "draining" on a keep-alive
 * connection the moment SIGTERM starts the drain, while a request in
 * flight still finishes and liveness still answers.
 */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void slept(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_text(req, 200, "slept");
}

static void slow(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 1500, slept, NULL);
}

static void start(th_server *s, int health, int signals)
{
	evapi_config cfg;
	evapi_app *app;
	th_config(&cfg);
	cfg.health_routes = health;
	cfg.handle_signals = signals;
	cfg.access_log = 0;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/slow", EVAPI_INLINE, slow, NULL);
	th_server_start(s, app);
}

static void test_off_by_default(void)
{
	th_server s;
	th_resp r;
	start(&s, 0, 0);
	CHECK_INT(th_http(s.port, "GET", "/_/health", NULL, &r), ==, 404);
	CHECK_INT(th_http(s.port, "GET", "/_/ready", NULL, &r), ==, 404);
	th_server_stop(&s);
}

static void test_health_and_ready(void)
{
	th_server s;
	th_resp r;
	start(&s, 1, 0);
	CHECK_INT(th_http(s.port, "GET", "/_/health", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"status\":\"ok\"}");
	CHECK_CONTAINS(r.headers, "Cache-Control: no-store");
	CHECK_INT(th_http(s.port, "GET", "/_/ready", NULL, &r), ==, 200);
	CHECK_STR(r.body, "{\"status\":\"ready\"}");
	CHECK_INT(th_http(s.port, "HEAD", "/_/ready", NULL, &r), ==, 200);
	/* the app is warming up: not ready, but alive */
	CHECK_INT(evapi_app_set_ready(s.app, 0), ==, 0);
	CHECK_INT(th_http(s.port, "GET", "/_/ready", NULL, &r), ==, 503);
	CHECK_STR(r.body, "{\"status\":\"starting\"}");
	CHECK_INT(th_http(s.port, "GET", "/_/health", NULL, &r), ==, 200);
	CHECK_INT(evapi_app_set_ready(s.app, 1), ==, 0);
	CHECK_INT(th_http(s.port, "GET", "/_/ready", NULL, &r), ==, 200);
	CHECK_INT(evapi_app_set_ready(NULL, 1), ==, EVAPI_EINVAL);
	CHECK_INT(th_http(s.port, "POST", "/_/ready", "", &r), ==, 405);
	th_server_stop(&s);
}

/* One request on an open keep-alive connection; returns what was read. */
static long ask(int fd, const char *path, char *buf, size_t cap)
{
	char req[128];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n",
	                 path);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return -1;
	return th_read_some(fd, buf, cap, (long)cap - 1, 0.3);
}

static void test_ready_flips_when_drain_begins(void)
{
	char buf[2048];
	th_server s;
	th_async b;
	double sent;
	int ready_fd, live_fd;

	start(&s, 1, 1);
	/* A balancer's keep-alive probe connections, open before the stop. */
	ready_fd = th_connect_send(s.port, "GET /_/ready HTTP/1.1\r\nHost: t\r\n\r\n");
	live_fd = th_connect_send(s.port, "GET /_/health HTTP/1.1\r\nHost: t\r\n\r\n");
	th_read_some(ready_fd, buf, sizeof buf, sizeof buf - 1, 0.3);
	CHECK_CONTAINS(buf, "HTTP/1.1 200");
	CHECK_CONTAINS(buf, "{\"status\":\"ready\"}");
	th_read_some(live_fd, buf, sizeof buf, sizeof buf - 1, 0.3);
	CHECK_CONTAINS(buf, "HTTP/1.1 200");

	th_http_start(&b, s.port, "/slow");
	th_sleep_ms(200); /* the slow request is in flight */
	sent = th_now();
	kill(getpid(), SIGTERM);
	th_sleep_ms(50);
	CHECK_INT(ask(ready_fd, "/_/ready", buf, sizeof buf), >, 0);
	CHECK_CONTAINS(buf, "HTTP/1.1 503");
	CHECK_CONTAINS(buf, "{\"status\":\"draining\"}");
	CHECK_CONTAINS(buf, "Connection: close");
	CHECK_DBL(th_now() - sent, <, 1.0); /* long before the drain ends */
	CHECK_INT(ask(live_fd, "/_/health", buf, sizeof buf), >, 0);
	CHECK_CONTAINS(buf, "HTTP/1.1 200");
	CHECK_CONTAINS(buf, "{\"status\":\"ok\"}");
	CHECK_INT(th_http_join(&b), ==, 200); /* drained, not cut */
	close(ready_fd);
	close(live_fd);
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"health.off_by_default", test_off_by_default},
		{"health.health_and_ready", test_health_and_ready},
		{"health.ready_flips_when_drain_begins",
		 test_ready_flips_when_drain_begins},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
