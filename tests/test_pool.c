/* test_pool.c: src/pool.c: jobs run on workers, completions on the loop,
 * the queue bound, and cancellation of queued jobs. */
#define _GNU_SOURCE /* SCHED_BATCH */
#include "harness.h"
#include "../src/internal.h"

#include <event2/event.h>
#include <sched.h>
#include <stdlib.h>

typedef struct tjob {
	evapi__job job;
	pthread_t worker, completer;
	int ran, done, status, block_ms, policy;
	int *done_count;
} tjob;

static void work(evapi__job *j)
{
	tjob *t = (tjob *)j;
	struct sched_param sp;
	t->worker = pthread_self();
	pthread_getschedparam(t->worker, &t->policy, &sp);
	if (t->block_ms)
		th_sleep_ms(t->block_ms);
	t->ran = 1;
}

static void done(evapi__job *j, int status)
{
	tjob *t = (tjob *)j;
	t->completer = pthread_self();
	t->done++;
	t->status = status;
	(*t->done_count)++;
}

static void job_init(tjob *t, int *count, int block_ms)
{
	memset(t, 0, sizeof *t);
	t->job.work = work;
	t->job.done = done;
	t->done_count = count;
	t->block_ms = block_ms;
}

static struct event_base *new_base(void)
{
	/* No evthread_use_pthreads(): workers wake the loop through an
	 * eventfd and never call into libevent (TSan checks that). */
	return event_base_new();
}

static void run_until(struct event_base *b, int *count, int want)
{
	double end = th_now() + 10;
	while (*count < want && th_now() < end)
		event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK), th_sleep_ms(1);
}

static void test_runs_and_completes_on_loop(void)
{
	struct event_base *b = new_base();
	evapi__pool *p = evapi__pool_new(b, NULL, 4, 16, 0, NULL, NULL);
	tjob jobs[10];
	int count = 0, i;

	for (i = 0; i < 10; i++) {
		job_init(&jobs[i], &count, 0);
		CHECK_INT(evapi__pool_submit(p, &jobs[i].job), ==, 0);
	}
	run_until(b, &count, 10);
	CHECK_INT(count, ==, 10);
	for (i = 0; i < 10; i++) {
		CHECK_INT(jobs[i].ran, ==, 1);
		CHECK_INT(jobs[i].done, ==, 1);
		CHECK_INT(jobs[i].status, ==, 0);
		CHECK(!pthread_equal(jobs[i].worker, pthread_self()));
		CHECK(pthread_equal(jobs[i].completer, pthread_self()));
	}
	evapi__pool_free(p);
	event_base_free(b);
}

static void test_queue_bound_and_cancel(void)
{
	struct event_base *b = new_base();
	evapi__pool *p = evapi__pool_new(b, NULL, 1, 2, 0, NULL, NULL);
	tjob jobs[5];
	int count = 0, i, threads, busy, queued;

	for (i = 0; i < 5; i++)
		job_init(&jobs[i], &count, 300);
	CHECK_INT(evapi__pool_submit(p, &jobs[0].job), ==, 0);
	th_sleep_ms(100); /* the worker takes job 0 */
	evapi__pool_counts(p, &threads, &busy, &queued);
	CHECK_INT(threads, ==, 1);
	CHECK_INT(busy, ==, 1);
	CHECK_INT(evapi__pool_submit(p, &jobs[1].job), ==, 0);
	CHECK_INT(evapi__pool_submit(p, &jobs[2].job), ==, 0);
	CHECK_INT(evapi__pool_submit(p, &jobs[3].job), ==, EVAPI_EBUSY);
	evapi__pool_counts(p, &threads, &busy, &queued);
	CHECK_INT(queued, ==, 2);
	/* queued: unlinked, never runs; running: cannot be cancelled */
	CHECK_INT(evapi__pool_cancel(p, &jobs[2].job), ==, 1);
	CHECK_INT(evapi__pool_cancel(p, &jobs[0].job), ==, 0);
	CHECK_INT(evapi__pool_submit(p, &jobs[4].job), ==, 0);
	run_until(b, &count, 3);
	CHECK_INT(count, ==, 3);
	CHECK_INT(jobs[0].done + jobs[1].done + jobs[4].done, ==, 3);
	CHECK_INT(jobs[2].ran + jobs[2].done, ==, 0);
	evapi__pool_free(p);
	event_base_free(b);
}

static void test_free_cancels_waiting(void)
{
	struct event_base *b = new_base();
	evapi__pool *p = evapi__pool_new(b, NULL, 1, 8, 0, NULL, NULL);
	tjob jobs[3];
	int count = 0, i;

	for (i = 0; i < 3; i++) {
		job_init(&jobs[i], &count, 200);
		CHECK_INT(evapi__pool_submit(p, &jobs[i].job), ==, 0);
	}
	th_sleep_ms(50);
	/* job 0 runs to the end; 1 and 2 are completed as cancelled */
	evapi__pool_free(p);
	CHECK_INT(count, ==, 3);
	CHECK_INT(jobs[0].ran, ==, 1);
	CHECK_INT(jobs[0].status, ==, 0);
	CHECK_INT(jobs[1].ran, ==, 0);
	CHECK_INT(jobs[1].status, ==, EVAPI_ECANCELED);
	CHECK_INT(jobs[2].status, ==, EVAPI_ECANCELED);
	event_base_free(b);
}

/* Workers that yield to the loop run as SCHED_BATCH (no wake-up
 * preemption); the loop's own policy is left alone. */
static void test_workers_yield_to_loop(void)
{
	struct event_base *b = new_base();
	int count = 0, batch, policy;
	struct sched_param sp;
	tjob jobs[2];

	for (batch = 0; batch <= 1; batch++) {
		evapi__pool *p = evapi__pool_new(b, NULL, 2, 4, batch, NULL, NULL);
		count = 0;
		job_init(&jobs[batch], &count, 0);
		CHECK_INT(evapi__pool_submit(p, &jobs[batch].job), ==, 0);
		run_until(b, &count, 1);
		CHECK_INT(count, ==, 1);
		evapi__pool_free(p);
	}
	CHECK_INT(jobs[0].policy, ==, SCHED_OTHER);
	CHECK_INT(jobs[1].policy, ==, SCHED_BATCH);
	pthread_getschedparam(pthread_self(), &policy, &sp);
	CHECK_INT(policy, ==, SCHED_OTHER);
	event_base_free(b);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"pool.runs_and_completes_on_loop", test_runs_and_completes_on_loop},
		{"pool.queue_bound_and_cancel", test_queue_bound_and_cancel},
		{"pool.free_cancels_waiting", test_free_cancels_waiting},
		{"pool.workers_yield_to_loop", test_workers_yield_to_loop},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
