/*
 * test_log.c: the log sink (src/log.c): with the default stderr sink the
 * access log is buffered off the per-request path, yet flushed within
 * moments, before any other line the loop logs, and when the app stops.
 * stderr is pointed at a temporary file for the duration of each test.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static void ok(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "Hello", "World"));
}

static void block(evapi_req *req, void *arg)
{
	th_sleep_ms(80); /* over the 30 ms stall threshold */
	evapi_reply_json(req, 200, json_pack("{s:s}", "blocked", "loop"));
}

static char path[] = "/tmp/evapi-test-log-XXXXXX";
static int saved_stderr = -1;

static void capture_stderr(void)
{
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/* Restores stderr and returns what was written (a static buffer). */
static char *release_stderr(void)
{
	static char buf[65536];
	int fd;
	ssize_t n;
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	fd = open(path, O_RDONLY);
	n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
	unlink(path);
	memcpy(path + strlen(path) - 6, "XXXXXX", 6);
	return buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (; (hay = strstr(hay, needle)); hay += strlen(needle))
		n++;
	return n;
}

static evapi_app *make_app(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_config_init(&cfg);
	cfg.port = 0;
	cfg.handle_signals = 0;
	cfg.pool_threads = 2;
	cfg.stall_threshold_ms = 30;
	app = evapi_app_new(&cfg); /* default sink: stderr */
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/ok", EVAPI_INLINE, ok, NULL);
	evapi_app_route(app, EVAPI_GET, "/block", EVAPI_INLINE, block, NULL);
	return app;
}

static void test_access_log_flushed_soon(void)
{
	th_server s;
	th_resp r;
	char *out, copy[4096];
	int i;

	capture_stderr();
	th_server_start(&s, make_app());
	for (i = 0; i < 3; i++)
		th_http(s.port, "GET", "/ok", NULL, &r);
	th_sleep_ms(400); /* the buffer is written 50 ms after its first line */
	out = release_stderr();
	snprintf(copy, sizeof copy, "%s", out);
	capture_stderr();
	th_server_stop(&s);
	out = release_stderr();
	CHECK_INT(count(copy, "evapi info: GET /ok 200 "), ==, 3);
	CHECK_INT(count(out, "GET /ok 200"), ==, 0); /* nothing written twice */
}

static void test_access_log_keeps_order_and_flushes_at_stop(void)
{
	th_server s;
	th_resp r;
	const char *out, *acc, *warn;

	capture_stderr();
	th_server_start(&s, make_app());
	th_http(s.port, "GET", "/block", NULL, &r);
	th_http(s.port, "GET", "/ok", NULL, &r);
	th_server_stop(&s); /* stops well within 50 ms of the last line */
	out = release_stderr();
	/* The access line of /block was buffered before the watchdog's
	 * warning about it: it must still come first. */
	acc = strstr(out, "GET /block 200");
	warn = strstr(out, "loop stalled");
	CHECK(acc != NULL);
	CHECK(warn != NULL);
	CHECK(acc && warn && acc < warn);
	CHECK_INT(count(out, "GET /ok 200"), ==, 1);
	CHECK_CONTAINS(out, "evapi info: stopped");
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"log.access_log_flushed_soon", test_access_log_flushed_soon},
		{"log.access_log_keeps_order_and_flushes_at_stop",
		 test_access_log_keeps_order_and_flushes_at_stop},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
