/*
 * test_lifespan.c: startup and shutdown hooks (order, failure) and
 * evapi_app_post: a producer thread posting to the loop while requests
 * are served, order kept, callbacks on the loop, the queue bounded, and
 * posts still queued at free run as cancelled.
 */
#include "harness.h"

#include <stdlib.h>

#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_SEQ_CST)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)

static int hook(evapi_app *app, void *arg)
{
	th_trace_add(arg);
	return strstr(arg, "fail") ? EVAPI_EINVAL : 0;
}

static void handler(evapi_req *req, void *arg)
{
	th_trace_add("req;");
	evapi_reply_text(req, 200, "ok");
}

static void test_hooks_order(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	evapi_app *app;
	th_config(&cfg);
	th_trace_clear();
	app = evapi_app_new(&cfg);
	evapi_app_on_startup(app, hook, "s1;");
	evapi_app_on_startup(app, hook, "s2;");
	evapi_app_on_shutdown(app, hook, "h1;");
	evapi_app_on_shutdown(app, hook, "h2;");
	evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, handler, NULL);
	th_server_start(&s, app);
	CHECK_INT(th_http(s.port, "GET", "/", NULL, &r), ==, 200);
	th_server_stop(&s);
	CHECK_STR(th_trace(), "s1;s2;req;h1;h2;");
}

static void test_startup_failure(void)
{
	evapi_config cfg;
	evapi_app *app;
	th_config(&cfg);
	th_trace_clear();
	app = evapi_app_new(&cfg);
	evapi_app_on_startup(app, hook, "s1;");
	evapi_app_on_startup(app, hook, "s2-fail;");
	evapi_app_on_startup(app, hook, "s3;");
	evapi_app_on_shutdown(app, hook, "h1;");
	CHECK_INT(evapi_app_run(app), ==, EVAPI_EINVAL);
	CHECK_STR(th_trace(), "s1;s2-fail;h1;");
	CHECK_CONTAINS(th_log(), "startup hook 1 failed: invalid argument; not serving");
	CHECK_INT(evapi_app_on_startup(NULL, hook, NULL), ==, EVAPI_EINVAL);
	evapi_app_free(app);
}

/* ---- a producer thread (a message consumer stand-in) -------------------- */

#define MSGS 200
typedef struct feed {
	pthread_t thread;
	evapi_app *app;
	int stop;             /* atomic */
	/* loop thread only */
	int received, out_of_order, off_loop;
	pthread_t loop;
} feed;

typedef struct msg {
	feed *f;
	int seq;
} msg;

static void deliver(evapi_app *app, int status, void *arg)
{
	msg *m = arg;
	feed *f = m->f;
	if (status == 0) {
		if (m->seq != f->received)
			f->out_of_order++;
		if (!pthread_equal(pthread_self(), f->loop))
			f->off_loop++;
		f->received++;
	}
	free(m);
}

static void *producer(void *arg)
{
	feed *f = arg;
	int i;
	for (i = 0; i < MSGS && !GET(f->stop); i++) {
		msg *m = malloc(sizeof *m);
		m->f = f;
		m->seq = i;
		if (evapi_app_post(f->app, deliver, m) != 0)
			free(m);
		if (i % 20 == 0)
			th_sleep_ms(2);
	}
	return NULL;
}

static int feed_start(evapi_app *app, void *arg)
{
	feed *f = arg;
	f->loop = pthread_self();
	f->app = app;
	return pthread_create(&f->thread, NULL, producer, f) == 0 ? 0 : EVAPI_ESYS;
}

static int feed_stop(evapi_app *app, void *arg)
{
	feed *f = arg;
	SET(f->stop, 1);
	pthread_join(f->thread, NULL);
	return 0;
}

static void count(evapi_req *req, void *arg)
{
	feed *f = arg;
	evapi_reply_json(req, 200, json_pack("{s:i, s:i, s:i}", "received",
	                                     f->received, "out_of_order",
	                                     f->out_of_order, "off_loop",
	                                     f->off_loop));
}

static void test_post_from_thread(void)
{
	evapi_config cfg;
	th_server s;
	th_resp r;
	feed f;
	double end;
	evapi_app *app;
	memset(&f, 0, sizeof f);
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_on_startup(app, feed_start, &f), ==, 0);
	CHECK_INT(evapi_app_on_shutdown(app, feed_stop, &f), ==, 0);
	evapi_app_route(app, EVAPI_GET, "/messages", EVAPI_INLINE, count, &f);
	th_server_start(&s, app);
	end = th_now() + 5;
	do {
		CHECK_INT(th_http(s.port, "GET", "/messages", NULL, &r), ==, 200);
		CHECK_DBL(r.secs, <, 0.5); /* the loop keeps answering */
		if (strstr(r.body, "\"received\":200"))
			break;
		th_sleep_ms(20);
	} while (th_now() < end);
	CHECK_STR(r.body, "{\"received\":200,\"out_of_order\":0,\"off_loop\":0}");
	th_server_stop(&s);
}

static int cancelled_posts;
static void note(evapi_app *app, int status, void *arg)
{
	if (status == EVAPI_ECANCELED)
		cancelled_posts++;
}

static void test_post_bounded_and_cancelled_at_free(void)
{
	evapi_config cfg;
	evapi_app *app;
	int i, rc = 0;
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	cancelled_posts = 0;
	/* the loop never runs: the queue fills up and says so */
	for (i = 0; i < EVAPI_POST_QUEUE_MAX && rc == 0; i++)
		rc = evapi_app_post(app, note, NULL);
	CHECK_INT(rc, ==, 0);
	CHECK_INT(evapi_app_post(app, note, NULL), ==, EVAPI_EBUSY);
	CHECK_INT(evapi_app_post(app, NULL, NULL), ==, EVAPI_EINVAL);
	evapi_app_free(app);
	CHECK_INT(cancelled_posts, ==, EVAPI_POST_QUEUE_MAX);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"lifespan.hooks_order", test_hooks_order},
		{"lifespan.startup_failure", test_startup_failure},
		{"lifespan.post_from_thread", test_post_from_thread},
		{"lifespan.post_bounded_and_cancelled_at_free", test_post_bounded_and_cancelled_at_free},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
