/*
 * demo_pubsub.c: the articles' pub/sub consumer inside the web app, on a
 * real broker (Redis). Messages on the channel "experiment" are either
 * quick ("non-blocking 1") or slow ("blocking 1": the handler sleeps, as
 * a blocking client library or CPU work would).
 *
 *   demo --redis URL --pubsub loop  -> the consumer runs on the event
 *       loop: each blocking message holds every request (GET / waits)
 *       and the stall watchdog names it: "loop stalled 2000 ms in
 *       experiment (redis message)"
 *   demo --redis URL --pubsub pool  -> the consumer runs on the worker
 *       pool (the articles' background-thread advice): GET / stays fast
 *       and the blocking messages are handled side by side
 *
 *   GET /pubsub/log -> each message with its start and finish, in ms
 *                      since the first message arrived
 *
 * examples/pubsub/experiment.sh runs both and prints the timings.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

#define MAX_LOG 64

static struct {
	pthread_mutex_t lock;
	evapi_lane lane;
	unsigned block_ms;
	double t0;               /* first message, seconds; 0: none yet */
	int n, finished;
	struct {
		char text[40];
		double start, finish; /* since t0, seconds; finish < 0: running */
	} log[MAX_LOG];
} st = {.lock = PTHREAD_MUTEX_INITIALIZER};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs in the lane it was subscribed in: the loop or a pool worker. */
static void on_message(evapi_app *app, const char *channel,
                       const char *payload, size_t len, void *arg)
{
	double t = now();
	int i;

	pthread_mutex_lock(&st.lock);
	if (st.t0 == 0)
		st.t0 = t;
	i = st.n < MAX_LOG ? st.n++ : -1;
	if (i >= 0) {
		snprintf(st.log[i].text, sizeof st.log[i].text, "%s", payload);
		st.log[i].start = t - st.t0;
		st.log[i].finish = -1;
	}
	pthread_mutex_unlock(&st.lock);
	if (strncmp(payload, "blocking", 8) == 0)
		usleep(st.block_ms * 1000u); /* the blocking work */
	t = now();
	pthread_mutex_lock(&st.lock);
	if (i >= 0) {
		st.log[i].finish = t - st.t0;
		st.finished++;
		fprintf(stderr, "consumer (%s): \"%s\" start +%.3f s, "
		        "finish +%.3f s\n", st.lane == EVAPI_POOL ? "pool" : "loop",
		        st.log[i].text, st.log[i].start, st.log[i].finish);
	}
	pthread_mutex_unlock(&st.lock);
}

static void pubsub_log(evapi_req *req, void *arg)
{
	json_t *msgs = json_array();
	int i;

	pthread_mutex_lock(&st.lock);
	for (i = 0; i < st.n; i++)
		json_array_append_new(msgs, json_pack(
			"{s:s, s:f, s:o}", "message", st.log[i].text,
			"start_ms", st.log[i].start * 1000, "finish_ms",
			st.log[i].finish < 0 ? json_null()
			                     : json_real(st.log[i].finish * 1000)));
	evapi_reply_json(req, 200, json_pack(
		"{s:s, s:i, s:i, s:i, s:o}", "mode",
		st.lane == EVAPI_POOL ? "pool" : "loop", "block_ms",
		(int)st.block_ms, "received", st.n, "finished", st.finished,
		"messages", msgs));
	pthread_mutex_unlock(&st.lock);
}

int demo_pubsub_routes(evapi_app *app, evapi_lane lane, unsigned block_ms)
{
	int rc;

	pthread_mutex_lock(&st.lock);
	st.lane = lane;
	st.block_ms = block_ms;
	st.t0 = 0;
	st.n = st.finished = 0;
	pthread_mutex_unlock(&st.lock);
	rc = evapi_app_redis_subscribe(app, DEMO_PUBSUB_CHANNEL, lane,
	                               on_message, NULL);
	if (rc != 0) {
		fprintf(stderr, "demo: pub/sub consumer: %s\n",
		        evapi_strerror(rc));
		return -1;
	}
	return evapi_app_route(app, EVAPI_GET, "/pubsub/log", EVAPI_INLINE,
	                       pubsub_log, NULL) == 0 ? 0 : -1;
}
