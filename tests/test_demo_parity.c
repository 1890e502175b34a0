/*
 * test_demo_parity.c: the demo's parity routes (examples/demo_parity.c)
 * on a test app: /log answers at once and its background task holds the
 * graceful stop for its second; /events ticks; /stream streams from the
 * pool; /messages shows what the consumer thread posted; every reply
 * carries the middleware headers, and CORS answers a preflight.
 */
#include "harness.h"

#include <unistd.h>

#include "../examples/demo.h"

static void test_demo_routes(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r[2], one;
	const char *paths[2] = {"/events?n=2", "/stream"};
	double t0, end;
	int fd;
	char buf[4096];

	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	demo_parity_setup(s.app);
	th_server_start(&s, s.app);

	th_http_parallel(s.port, 2, paths, r);
	CHECK_INT(r[0].status, ==, 200);
	CHECK_CONTAINS(r[0].headers, "Content-Type: text/event-stream");
	CHECK_CONTAINS(r[0].body, "event: tick\nid: 0\ndata: {\"tick\":0,");
	CHECK_CONTAINS(r[0].body, "event: tick\nid: 1\ndata: {\"tick\":1,");
	CHECK_DBL(r[0].secs, >, 0.9); /* one second between ticks */
	CHECK_INT(r[1].status, ==, 200);
	CHECK_STR(r[1].body, "chunk 1 of 5\nchunk 2 of 5\nchunk 3 of 5\n"
	                     "chunk 4 of 5\nchunk 5 of 5\n");
	CHECK_CONTAINS(r[1].headers, "X-Process-Time: ");
	CHECK_CONTAINS(r[1].headers, "X-Request-ID: ");

	/* the consumer thread posts every 2 s */
	end = th_now() + 5;
	do {
		CHECK_INT(th_http(s.port, "GET", "/messages", NULL, &one), ==, 200);
		if (strstr(one.body, "\"seq\":0"))
			break;
		th_sleep_ms(100);
	} while (th_now() < end);
	CHECK_CONTAINS(one.body, "{\"seq\":0,\"topic\":\"news\",");

	/* CORS preflight */
	fd = th_connect_send(s.port, "OPTIONS /log HTTP/1.1\r\nHost: t\r\n"
	                     "Origin: http://localhost:3000\r\n"
	                     "Access-Control-Request-Method: POST\r\n"
	                     "Connection: close\r\n\r\n");
	th_read_all(fd, buf, sizeof buf, 3);
	close(fd);
	CHECK_CONTAINS(buf, "HTTP/1.1 200");
	CHECK_CONTAINS(buf, "Access-Control-Allow-Origin: http://localhost:3000");

	/* /log answers at once; the stop waits for its 1 s task */
	CHECK_INT(th_http(s.port, "POST", "/log", "{\"event\":\"signup\"}", &one),
	          ==, 200);
	CHECK_STR(one.body, "{\"status\":\"queued\"}");
	CHECK_DBL(one.secs, <, 1.0 * 0.8); /* not after the 1 s task */
	t0 = th_now();
	th_server_stop(&s);
	CHECK_DBL(th_now() - t0, >, 0.8);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"demo.parity_routes", test_demo_routes},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
