/*
 * demo.c: the seed experiments as one server.
 *
 *   GET  /                -> {"Hello":"World"}                  inline
 *   GET  /users/{user_id} -> {"user_id":N}, 422 if not an int   inline
 *   GET  /async-sleep     -> non-blocking sleep, then reply     inline
 *   GET  /slow            -> blocking sleep() ON THE LOOP: the anti-pattern,
 *                            kept on purpose; the watchdog names it
 *   GET  /sync-slow       -> blocking sleep() on a pool worker  pool
 *   POST /analyze         -> sum of a JSON list, computed on the pool,
 *                            answered from the loop             inline->pool
 *   GET  /_/stats, /_/metrics -> runtime statistics (JSON, Prometheus)
 *   GET  /openapi.json, /docs, /redoc -> the API described (config.openapi)
 *   GET  /static/...      -> files under examples/static (--static-dir),
 *                            index.html for a directory    pool
 *
 * and the outbound calls of demo_outbound.c (/external-api, /multi-fetch,
 * /fan-out, /sync-external-api, /sync-multi-fetch, /upstream), and the
 * declared routes of demo_declared.c (/items/{item_id}, /items, /upload,
 * /files/{filename}).
 * demo_db.c adds /db/users/{user_id} (inline), /db/sync-users/{user_id}
 * (pool) and /db/blocking-users/{user_id} (a blocking query on the loop)
 * on --database (default: a SQLite file in a fresh temporary directory).
 * demo_parity.c adds background tasks, streaming, SSE, middleware and a
 * lifespan-managed consumer thread; demo_ws.c the WebSocket routes
 * /ws/echo and /ws/chat/{room} (with /chat/{room}/events as SSE).
 */
#include <evapi.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

static unsigned delay_ms = 4000;


static void block_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static json_t *hello_world(void)
{
	return json_pack("{s:s}", "message", "Hello World");
}

static void root(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "Hello", "World"));
}

static void user(evapi_req *req, void *arg)
{
	long long id;
	if (evapi_req_param_int(req, "user_id", &id) != 0) {
		evapi_reply_validation_error(
			req, "int_parsing", "path", "user_id",
			"Input should be a valid integer, unable to parse "
			"string as an integer",
			evapi_req_param(req, "user_id"));
		return;
	}
	evapi_reply_json(req, 200, json_pack("{s:I}", "user_id", (json_int_t)id));
}

/* async def: await asyncio.sleep(delay) */
static void async_sleep_done(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, hello_world());
}

static void async_sleep(evapi_req *req, void *arg)
{
	if (evapi_req_sleep(req, delay_ms, async_sleep_done, NULL) != 0)
		evapi_reply_error(req, 500, "cannot schedule the sleep");
}

/* async def with time.sleep(): blocks the loop; everyone waits. */
static void slow(evapi_req *req, void *arg)
{
	block_ms(delay_ms);
	evapi_reply_json(req, 200, hello_world());
}

/* def with time.sleep(): blocks one worker only. */
static void sync_slow(evapi_req *req, void *arg)
{
	block_ms(delay_ms);
	evapi_reply_json(req, 200, hello_world());
}

/* POST /analyze: parse on the loop, sum on the pool, reply on the loop. */
struct analysis {
	long long *nums;
	size_t n;
	long long sum;
	int overflow;
};

static void analyze_work(void *arg)
{
	struct analysis *a = arg;
	size_t i;
	a->sum = 0;
	for (i = 0; i < a->n; i++)
		if (__builtin_add_overflow(a->sum, a->nums[i], &a->sum)) {
			a->overflow = 1;
			return;
		}
}

static void analyze_done(evapi_req *req, int status, void *arg)
{
	struct analysis *a = arg;
	if (status == 0 && a->overflow)
		evapi_reply_validation_error(req, "value_error", "body", "data",
		                             "Value error, the sum does not "
		                             "fit in 64 bits", NULL);
	else if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:s, s:I}", "status",
		                                     "complete", "result",
		                                     (json_int_t)a->sum));
	free(a->nums);
	free(a);
}

static void analyze(evapi_req *req, void *arg)
{
	json_t *body, *list, *v;
	struct analysis *a;
	size_t i;

	if (evapi_req_json(req, &body) != 0)
		return; /* 422 json_invalid already sent */
	list = json_is_object(body) ? json_object_get(body, "data") : body;
	if (!json_is_array(list)) {
		evapi_reply_validation_error(req, "list_type", "body", "data",
		                             "Input should be a valid list",
		                             NULL);
		return;
	}
	a = calloc(1, sizeof *a);
	if (!a || !(a->nums = malloc((json_array_size(list) + 1) *
	                             sizeof *a->nums))) {
		free(a);
		evapi_reply_error(req, 500, "out of memory");
		return;
	}
	json_array_foreach(list, i, v) {
		if (!json_is_integer(v)) {
			char idx[24];
			snprintf(idx, sizeof idx, "%zu", i);
			evapi_reply_validation_error(
				req, "int_type", "body", idx,
				"Input should be a valid integer", NULL);
			free(a->nums);
			free(a);
			return;
		}
		a->nums[a->n++] = json_integer_value(v);
	}
	if (evapi_req_run_in_pool(req, analyze_work, analyze_done, a) != 0) {
		free(a->nums);
		free(a);
		evapi_reply_add_header(req, "Retry-After", "1");
		evapi_reply_error(req, 503, "Server busy");
	}
}

struct outbound_opts {
	const char *host;
	const char *upstream;
	unsigned delay_ms;
	const char *upload_dir;
	const char *static_dir;
	const char *pubsub;      /* "loop", "pool" or NULL */
	unsigned pubsub_block_ms;
};

/* Runs in each worker once its app has bound the port. */
static int routes(evapi_app *app, void *arg)
{
	const struct outbound_opts *o = arg;
	int rc = 0;
	rc |= evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, root, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/users/{user_id}", EVAPI_INLINE,
	                      user, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/async-sleep", EVAPI_INLINE,
	                      async_sleep, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/slow", EVAPI_INLINE, slow, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/sync-slow", EVAPI_POOL,
	                      sync_slow, NULL);
	rc |= evapi_app_route(app, EVAPI_POST, "/analyze", EVAPI_INLINE, analyze,
	                      NULL);
	demo_outbound_routes(app, o->upstream, o->delay_ms);
	demo_outbound_set_port(o->host, evapi_app_port(app));
	if (rc == 0)
		rc = evapi_app_openapi_info(app, "evapi demo", NULL,
		                            "Routes showing each evapi feature.");
	if (rc == 0)
		rc = demo_declared_routes(app, o->upload_dir);
	if (rc == 0) {
		evapi_files_opts fo;
		evapi_files_opts_init(&fo);
		fo.index = 1;
		if (evapi_app_mount_dir(app, "/static", o->static_dir, &fo) != 0)
			fprintf(stderr, "demo: %s: not a directory; /static is "
			        "not served\n", o->static_dir);
	}
	if (rc == 0)
		rc = demo_db_routes(app);
	if (rc == 0)
		demo_parity_setup(app);
	if (rc == 0)
		rc = demo_ws_routes(app);
	if (rc == 0 && o->pubsub)
		rc = demo_pubsub_routes(app, strcmp(o->pubsub, "pool") == 0
		                                     ? EVAPI_POOL : EVAPI_INLINE,
		                        o->pubsub_block_ms);
	return rc ? EVAPI_EINVAL : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: demo [--host H] [--port P] [--threads N] [--queue N]\n"
	        "            [--delay-ms MS]\n"
	        "            [--upstream URL] [--upstream-delay-ms MS] [--workers N]\n"
	        "            [--database URL] [--db-slow-ms N] [--quiet]\n"
	        "            [--redis URL [--pubsub loop|pool] [--pubsub-block-ms MS]]\n"
	        "  --host H       address to bind (default 127.0.0.1)\n"
	        "  --port P       port (default 8000; 0 picks one)\n"
	        "  --threads N    pool worker threads (default 40)\n"
	        "  --queue N      pool jobs that may wait before pool routes "
	        "answer 503\n                 (default 1024)\n"
	        "  --delay-ms MS  sleep of /async-sleep, /slow, /sync-slow "
	        "(default 4000)\n"
	        "  --workers N    worker processes sharing the port (default 1)\n"
	        "  --upstream URL what /external-api and friends call (default:\n"
	        "                 this server's own /upstream)\n"
	        "  --upstream-delay-ms MS  delay of the default upstream "
	        "(default: --delay-ms)\n"
	        "  --outbound-max-connections N  open outbound connections "
	        "(default 256)\n"
	        "  --upload-dir D where /upload stores files "
	        "(default /tmp/evapi-uploads)\n"
	        "  --static-dir D what /static serves (default examples/static)\n"
	        "  --database URL postgresql://... or sqlite:///path (default: a\n"
	        "                 SQLite file in a new temporary directory)\n"
	        "  --db-slow-ms N every /db/ lookup sleeps N ms in the database\n"
	        "                 (default: --delay-ms)\n"
	        "  --redis URL    redis://127.0.0.1:6379: broadcasts (/ws/chat/{room})\n"
	        "                 reach every worker and instance on that Redis\n"
	        "  --pubsub MODE  the pub/sub consumer experiment on the Redis\n"
	        "                 channel \"experiment\": loop (on the event loop)\n"
	        "                 or pool (on the worker pool); GET /pubsub/log\n"
	        "  --pubsub-block-ms MS  what a \"blocking ...\" message sleeps\n"
	        "                 (default 2000)\n"
	        "  --quiet        no access log\n"
	        "Every evapi_config member can also be set from the environment\n"
	        "(EVAPI_PORT, EVAPI_POOL_THREADS, ...: README.md); options win.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"host", required_argument, 0, 'H'},
		{"port", required_argument, 0, 'p'},
		{"threads", required_argument, 0, 't'},
		{"queue", required_argument, 0, 'Q'},
		{"delay-ms", required_argument, 0, 'd'},
		{"workers", required_argument, 0, 'w'},
		{"upstream", required_argument, 0, 'u'},
		{"upstream-delay-ms", required_argument, 0, 'U'},
		{"outbound-max-connections", required_argument, 0, 'O'},
		{"quiet", no_argument, 0, 'q'},
		{"upload-dir", required_argument, 0, 'D'},
		{"static-dir", required_argument, 0, 'A'},
		{"database", required_argument, 0, 'B'},
		{"db-slow-ms", required_argument, 0, 'S'},
		{"redis", required_argument, 0, 'R'},
		{"pubsub", required_argument, 0, 'P'},
		{"pubsub-block-ms", required_argument, 0, 'K'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0}};
	evapi_config cfg;
	evapi_error err;
	struct outbound_opts outbound;
	const char *upload_dir = "/tmp/evapi-uploads";
#ifndef DEMO_STATIC_DIR
#define DEMO_STATIC_DIR "examples/static"
#endif
	const char *static_dir = DEMO_STATIC_DIR; /* the source tree's */
	long long v;
	const char *upstream = NULL;
	long long upstream_delay = -1; /* default: --delay-ms */
	const char *database = NULL;
	char tmpdir[] = "/tmp/evapi-demo-XXXXXX", dburl[96];
	long long db_slow_ms = -1; /* default: --delay-ms */
	int c, rc;

	outbound.pubsub = NULL;
	outbound.pubsub_block_ms = 2000;
	evapi_config_init(&cfg);
	cfg.stats_routes = 1;
	cfg.health_routes = 1;
	cfg.openapi = 1;                      /* /openapi.json, /docs, /redoc */
	cfg.max_body_bytes = (8 << 20) + 65536; /* uploads: 8 MiB of files */
	/* EVAPI_PORT, EVAPI_POOL_THREADS, ...; the options below win */
	if (evapi_config_from_env(&cfg, &err) != 0) {
		fprintf(stderr, "demo: %s\n", err.text);
		return 2;
	}
	while ((c = getopt_long(argc, argv, "H:p:t:Q:d:w:u:U:O:D:A:B:S:R:P:K:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			cfg.host = optarg;
			break;
		case 'p':
			if (evapi_parse_int(optarg, &v) || v < 0 || v > 65535)
				goto bad;
			cfg.port = (int)v;
			break;
		case 't':
			if (evapi_parse_int(optarg, &v) || v < 1 || v > 4096)
				goto bad;
			cfg.pool_threads = (int)v;
			break;
		case 'Q':
			if (evapi_parse_int(optarg, &v) || v < 1 || v > 1000000)
				goto bad;
			cfg.pool_queue_max = (int)v;
			break;
		case 'd':
			if (evapi_parse_int(optarg, &v) || v < 0 || v > 600000)
				goto bad;
			delay_ms = (unsigned)v;
			break;
		case 'w':
			if (evapi_parse_int(optarg, &v) || v < 1 || v > 64)
				goto bad;
			cfg.workers = (int)v;
			break;
		case 'u':
			upstream = optarg;
			break;
		case 'U':
			if (evapi_parse_int(optarg, &v) || v < 0 || v > 60000)
				goto bad;
			upstream_delay = v;
			break;
		case 'O':
			if (evapi_parse_int(optarg, &v) || v < 1 || v > 65536)
				goto bad;
			cfg.outbound_max_connections = (int)v;
			break;
		case 'q':
			cfg.access_log = 0;
			break;
		case 'D':
			upload_dir = optarg;
			break;
		case 'A':
			static_dir = optarg;
			break;
		case 'B':
			database = optarg;
			break;
		case 'S':
			if (evapi_parse_int(optarg, &v) || v < 0 || v > 600000)
				goto bad;
			db_slow_ms = v;
			break;
		case 'R':
			cfg.redis_url = optarg;
			break;
		case 'P':
			if (strcmp(optarg, "loop") != 0 && strcmp(optarg, "pool") != 0)
				goto bad;
			outbound.pubsub = optarg;
			break;
		case 'K':
			if (evapi_parse_int(optarg, &v) || v < 0 || v > 600000)
				goto bad;
			outbound.pubsub_block_ms = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind != argc || (outbound.pubsub && !cfg.redis_url))
		goto bad;
	/* /slow stalls the loop for a whole delay, and requests queue behind
	 * it. evhttp's connection timeouts keep running during a stall and
	 * may close connections as soon as the loop is back, so the demo
	 * gives connections a few delays of idle time. A real app keeps the
	 * default and never blocks the loop. */
	if (cfg.idle_timeout_ms < (int)(3 * delay_ms) + 5000)
		cfg.idle_timeout_ms = (int)(3 * delay_ms) + 5000;
	outbound.host = cfg.host;
	outbound.upstream = upstream;
	outbound.delay_ms = upstream_delay < 0 ? delay_ms
	                                       : (unsigned)upstream_delay;
	outbound.upload_dir = upload_dir;
	outbound.static_dir = static_dir;
	if (!database) {
		/* no server needed: SQLite in a directory of our own */
		if (!mkdtemp(tmpdir)) {
			perror("demo: mkdtemp");
			return 1;
		}
		snprintf(dburl, sizeof dburl, "sqlite://%s/demo.db", tmpdir);
		database = dburl;
	}
	demo_db_config(&cfg, database,
	               db_slow_ms < 0 ? delay_ms : (unsigned)db_slow_ms);
	/* One app in this process, or --workers processes on one port. */
	rc = evapi_app_serve(&cfg, routes, &outbound);
	if (database == dburl) {
		static const char *const files[] = { "demo.db", "demo.db-wal",
		                                     "demo.db-shm" };
		char path[128];
		size_t i;
		for (i = 0; i < 3; i++) {
			snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
			unlink(path);
		}
		rmdir(tmpdir);
	}
	if (rc == EVAPI_EBIND || rc == EVAPI_ENOMEM || rc == EVAPI_EINVAL)
		fprintf(stderr, "demo: cannot serve on %s:%d: %s\n", cfg.host,
		        cfg.port, evapi_strerror(rc));
	return rc == 0 ? 0 : 1;
bad:
	usage(stderr);
	return 2;
}
