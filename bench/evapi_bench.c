/*
 * evapi_bench.c: the evapi server the bench suite drives. One route per
 * scenario, the same JSON as every peer in bench/.
 *
 *   GET /            {"Hello":"World"}                      inline
 *   GET /bytes       the same body, prebuilt (no jansson)    inline
 *   GET /pool        {"Hello":"World"}                      pool
 *   GET /pool-sleep  blocking 50 ms sleep, then the hello   pool
 *   GET /sleep       non-blocking 1 s sleep, then the hello inline
 *   GET /cpu         ~0.3-0.5 ms of arithmetic, then its     inline
 *                    result (the prefork scenario: the server,
 *                    not the client, is the bottleneck)
 *   GET /json        TechEmpower "json": {"message":"Hello, World!"}
 *                    serialised per request, with Server (and Date)
 *   GET /plaintext   TechEmpower "plaintext": Hello, World! as
 *                    text/plain, with Server (and Date)
 *
 * Runs on the thread that starts it; stops on SIGINT/SIGTERM.
 */
#include <evapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static json_t *hello_json(void)
{
	return json_pack("{s:s}", "Hello", "World");
}

static void hello(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, hello_json());
}

/* The framework's own cost: what the raw evhttp peer does, via evapi. */
static void hello_bytes(evapi_req *req, void *arg)
{
	static const char body[] = "{\"Hello\":\"World\"}";
	evapi_reply_bytes(req, 200, "application/json", body, sizeof body - 1);
}

static void pool_sleep(evapi_req *req, void *arg)
{
	struct timespec ts = {0, 50 * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
	evapi_reply_json(req, 200, hello_json());
}

static void slept(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, hello_json());
}

static void inline_sleep(evapi_req *req, void *arg)
{
	if (evapi_req_sleep(req, 1000, slept, NULL) != 0)
		evapi_reply_error(req, 500, "cannot schedule the sleep");
}

static void cpu_bound(evapi_req *req, void *arg)
{
	unsigned long long x = 88172645463325252ULL;
	long i;
	/* A dependent chain the compiler cannot fold or vectorise. */
	for (i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	evapi_reply_json(req, 200, json_pack("{s:I}", "x", (json_int_t)(x & 0xffffff)));
}

/* TechEmpower's rules: a new object serialised for every request, and
 * the Server and Date headers on both test types (evapi sends Date). */
static void tfb_json(evapi_req *req, void *arg)
{
	evapi_reply_add_header(req, "Server", "evapi");
	evapi_reply_json(req, 200,
	                 json_pack("{s:s}", "message", "Hello, World!"));
}

static void tfb_plaintext(evapi_req *req, void *arg)
{
	static const char body[] = "Hello, World!";
	evapi_reply_add_header(req, "Server", "evapi");
	evapi_reply_bytes(req, 200, "text/plain", body, sizeof body - 1);
}

static int routes(evapi_app *app, void *arg)
{
	int rc = 0;
	rc |= evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, hello, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/bytes", EVAPI_INLINE,
	                      hello_bytes, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/pool", EVAPI_POOL, hello, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/pool-sleep", EVAPI_POOL,
	                      pool_sleep, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/sleep", EVAPI_INLINE,
	                      inline_sleep, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/cpu", EVAPI_INLINE, cpu_bound,
	                      NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/json", EVAPI_INLINE, tfb_json,
	                      NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/plaintext", EVAPI_INLINE,
	                      tfb_plaintext, NULL);
	return rc ? EVAPI_EINVAL : 0;
}

/* evapi_bench PORT [POOL_THREADS [ACCESS_LOG [WORKERS]]] */
int main(int argc, char **argv)
{
	evapi_config cfg;
	long long v[4] = {18101, 40, 0, 1};
	int i;

	for (i = 1; i < argc && i <= 4; i++)
		if (evapi_parse_int(argv[i], &v[i - 1]) || v[i - 1] < 0 ||
		    v[i - 1] > 65535) {
			fprintf(stderr, "usage: evapi_bench PORT [POOL_THREADS "
			                "[ACCESS_LOG 0|1 [WORKERS]]]\n");
			return 2;
		}
	evapi_config_init(&cfg);
	cfg.port = (int)v[0];
	cfg.pool_threads = (int)v[1];
	cfg.access_log = v[2] != 0;
	cfg.workers = (int)v[3];
	cfg.request_timeout_ms = 60000;
	/* as the peers: no connection closed after N requests (nginx
	 * keepalive_requests, Kore's keep-alive), which would cut wrk's
	 * pipelines mid-flight */
	cfg.keepalive_max_requests = 1000000000;
	cfg.stats_routes = 1;
	return evapi_app_serve(&cfg, routes, NULL) == 0 ? 0 : 1;
}
