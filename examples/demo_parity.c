/*
 * demo_parity.c: the demo's FastAPI-parity routes, one idea each.
 *
 *   POST /log      -> {"status":"queued"} at once; a background task on
 *                     the pool logs the payload a second later
 *   GET  /events   -> server-sent events: a tick every second (?n=N stops
 *                     after N), fed from the loop by non-blocking sleeps
 *   GET  /stream   -> a chunked body written line by line from a pool job
 *   GET  /messages -> what the background "consumer" thread posted to the
 *                     loop (a pub/sub consumer stand-in, started and
 *                     joined by the lifespan hooks)
 *   every request  -> X-Request-ID and X-Process-Time headers, and CORS
 *                     for http://localhost:3000 (preflight included)
 */
#include <evapi.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo.h"

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- POST /log: a background task ---------------------------------------- */

static int log_later(evapi_app *app, int status, void *arg)
{
	char *payload = arg;
	if (status == 0) {
		sleep_ms(1000); /* a slow sink: fine on the pool */
		fprintf(stderr, "demo: background log: %s\n", payload);
	}
	free(payload);
	return 0;
}

static void post_log(evapi_req *req, void *arg)
{
	size_t len;
	const char *body = evapi_req_body(req, &len);
	char *copy = strndup(body, len > 4000 ? 4000 : len);

	if (!copy || evapi_req_add_task(req, EVAPI_POOL, "log", log_later,
	                                copy) != 0) {
		free(copy);
		evapi_reply_error(req, 500, "cannot queue the task");
		return;
	}
	evapi_reply_json(req, 200, json_pack("{s:s}", "status", "queued"));
}

/* ---- GET /events: SSE from the loop --------------------------------------- */

typedef struct ticker {
	evapi_stream *s;
	long long n, max;
} ticker;

static void tick(evapi_req *req, int status, void *arg)
{
	ticker *t = arg;
	char id[24], data[96];

	if (status != 0 || (t->max > 0 && t->n >= t->max)) {
		evapi_stream_close(t->s); /* client gone, or done */
		free(t);
		return;
	}
	snprintf(id, sizeof id, "%lld", t->n);
	snprintf(data, sizeof data, "{\"tick\":%lld,\"time\":%lld}", t->n,
	         (long long)time(NULL));
	t->n++;
	if (evapi_sse_send(t->s, "tick", id, data) != 0 ||
	    evapi_req_sleep(req, 1000, tick, t) != 0) {
		evapi_stream_close(t->s);
		free(t);
	}
}

static void events(evapi_req *req, void *arg)
{
	ticker *t = calloc(1, sizeof *t);
	if (!t) {
		evapi_reply_error(req, 500, "out of memory");
		return;
	}
	evapi_req_query_int(req, "n", &t->max);
	t->s = evapi_reply_sse(req, 15000);
	if (!t->s) {
		free(t);
		evapi_reply_error(req, 500, "cannot start the stream");
		return;
	}
	tick(req, 0, t);
}

/* ---- GET /stream: a chunked body from a pool job --------------------------- */

static void stream(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_stream(req, 200, "text/plain");
	int i;

	for (i = 1; s && i <= 5; i++) {
		/* blocking work between pieces: this is a pool handler */
		sleep_ms(200);
		if (evapi_stream_printf(s, "chunk %d of 5\n", i) != 0)
			break; /* the client left */
	}
	if (s)
		evapi_stream_close(s);
}

/* ---- lifespan: a consumer thread posting to the loop ------------------------ */

#define KEEP 20
static struct consumer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop, started;        /* under mu */
	/* loop thread only */
	json_t *recent;           /* the last KEEP messages */
	long long received;
} consumer = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void on_message(evapi_app *app, int status, void *arg)
{
	json_t *msg = arg; /* runs on the loop: no lock needed here */
	if (status == 0) {
		consumer.received++;
		json_array_append_new(consumer.recent, msg);
		if (json_array_size(consumer.recent) > KEEP)
			json_array_remove(consumer.recent, 0);
	} else {
		json_decref(msg);
	}
}

static void *consume(void *arg)
{
	evapi_app *app = arg;
	struct timespec until;
	long long seq = 0;

	pthread_mutex_lock(&consumer.mu);
	while (!consumer.stop) {
		json_t *msg;
		/* Stands in for a blocking broker read: wait up to 2 s. */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 2;
		pthread_cond_timedwait(&consumer.cv, &consumer.mu, &until);
		if (consumer.stop)
			break;
		msg = json_pack("{s:I, s:s, s:I}", "seq", (json_int_t)seq++,
		                "topic", "news", "at", (json_int_t)time(NULL));
		if (msg && evapi_app_post(app, on_message, msg) != 0)
			json_decref(msg); /* the loop is far behind: drop */
	}
	pthread_mutex_unlock(&consumer.mu);
	return NULL;
}

static int consumer_start(evapi_app *app, void *arg)
{
	consumer.recent = json_array();
	if (!consumer.recent ||
	    pthread_create(&consumer.thread, NULL, consume, app) != 0)
		return EVAPI_ESYS;
	consumer.started = 1;
	return 0;
}

static int consumer_stop(evapi_app *app, void *arg)
{
	if (consumer.started) {
		pthread_mutex_lock(&consumer.mu);
		consumer.stop = 1;
		pthread_cond_signal(&consumer.cv);
		pthread_mutex_unlock(&consumer.mu);
		pthread_join(consumer.thread, NULL);
		consumer.started = 0;
	}
	return 0;
}

static void messages(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200,
	                 json_pack("{s:I, s:O}", "received",
	                           (json_int_t)consumer.received, "messages",
	                           consumer.recent));
}

/* ---- middleware ---------------------------------------------------------- */

static int request_id(evapi_req *req, void *arg)
{
	char id[32];
	const char *given = evapi_req_header(req, "X-Request-ID");
	snprintf(id, sizeof id, "%llu", evapi_req_id(req));
	/* echo a well-formed id from the client, else ours */
	evapi_reply_add_header(req, "X-Request-ID",
	                       given && strlen(given) <= 64 ? given : id);
	return 0;
}

static void process_time(evapi_req *req, int status, void *arg)
{
	struct timespec ts;
	long long now_us;
	char v[32];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now_us = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	snprintf(v, sizeof v, "%.6f", (now_us - evapi_req_start_us(req)) / 1e6);
	evapi_reply_add_header(req, "X-Process-Time", v);
}

void demo_parity_setup(evapi_app *app)
{
	evapi_cors_config cors = {0};

	cors.allow_origins = "http://localhost:3000, http://127.0.0.1:3000";
	cors.expose_headers = "X-Process-Time, X-Request-ID";
	evapi_app_cors(app, &cors);
	evapi_app_middleware(app, request_id, process_time, NULL);
	evapi_app_on_startup(app, consumer_start, NULL);
	evapi_app_on_shutdown(app, consumer_stop, NULL);
	evapi_app_route(app, EVAPI_POST, "/log", EVAPI_INLINE, post_log, NULL);
	evapi_app_route(app, EVAPI_GET, "/events", EVAPI_INLINE, events, NULL);
	evapi_app_route(app, EVAPI_GET, "/stream", EVAPI_POOL, stream, NULL);
	evapi_app_route(app, EVAPI_GET, "/messages", EVAPI_INLINE, messages,
	                NULL);
}
