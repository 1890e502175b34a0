/*
 * pool.c: the worker pool that runs pool-lane handlers and
 * evapi_req_run_in_pool work: the C form of anyio's thread limiter.
 *
 * Threads: N workers run jobs; the loop submits, cancels and runs
 * completions. Workers touch nothing of libevent: they wake the loop
 * through `wake` (an eventfd, see wake.c).
 *
 * Invariants: a job is in exactly one of `queue` (QUEUED), a worker's
 * hands (RUNNING), `done` (DONE, under `mu`) or `ready` (DONE, taken by
 * the loop, loop-only). Workers wait in `while (empty)
 * pthread_cond_wait`. The loop moves the done list to `ready` under the
 * lock and runs completions outside it, a slice per loop turn, so a
 * completion may submit new jobs. Cancelling a QUEUED job unlinks it (its completion
 * never runs); a RUNNING job cannot be stopped, so the caller must
 * ignore its completion instead.
 */
#define _GNU_SOURCE /* SCHED_BATCH */
#include <event2/event.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>

#include "internal.h"

enum { JOB_QUEUED = 1, JOB_RUNNING, JOB_DONE, JOB_CANCELLED };

TAILQ_HEAD(job_list, evapi__job);

struct evapi__pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job_list queue, done;
	struct job_list ready; /* loop only: taken from done, not yet run */
	int queued, busy, queue_max, nthreads, stop;
	int batch; /* workers run as SCHED_BATCH */
	int64_t max_wait_us; /* longest queue wait seen (stats) */
	void (*thread_init)(void *arg); /* each worker, once, at start-up */
	void *init_arg;
	int next_index;     /* the index the next worker to start takes */
	/* evapi__pool_hooks, each run by a worker on itself; under mu */
	evapi__pool_hook on_start, on_stop;
	void *hook_arg;
	unsigned hook_gen;  /* bumped when hooks are set */
	pthread_t *threads;
	evapi__wake *wake;
	struct event *more; /* loop only: runs the rest of `ready` */
};

/* 0..nthreads-1 on a worker of a pool, -1 on any other thread. */
static __thread int worker_index = -1;

int evapi_worker_index(void)
{
	return worker_index;
}

static void *worker_main(void *arg)
{
	evapi__pool *p = arg;
	evapi__job *job;
	int64_t wait_us;
	int notify;
	unsigned seen_gen = 0;
	int started = 0;      /* ran the start hook: the stop hook may run */

	if (p->batch) {
		/* The loop answers inline routes; a worker whose sleep or
		 * read just ended must not take the CPU from it mid-turn.
		 * SCHED_BATCH keeps the worker's share of the CPU but drops
		 * wake-up preemption. Best effort: a failure changes nothing
		 * but latency. */
		struct sched_param sp = {0};
		pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
	}
	pthread_mutex_lock(&p->mu);
	worker_index = p->next_index++;
	pthread_mutex_unlock(&p->mu);
	if (p->thread_init)
		p->thread_init(p->init_arg);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (TAILQ_EMPTY(&p->queue) && !p->stop &&
		       seen_gen == p->hook_gen)
			pthread_cond_wait(&p->cv, &p->mu);
		if (seen_gen != p->hook_gen) {
			/* hooks were set: the start hook runs here, before
			 * this worker takes any job */
			evapi__pool_hook start = p->on_start;
			void *harg = p->hook_arg;
			seen_gen = p->hook_gen;
			pthread_mutex_unlock(&p->mu);
			if (start)
				start(harg, worker_index);
			pthread_mutex_lock(&p->mu);
			started = 1;
			continue;
		}
		if (p->stop)
			break;
		job = TAILQ_FIRST(&p->queue);
		TAILQ_REMOVE(&p->queue, job, link);
		p->queued--;
		p->busy++;
		job->state = JOB_RUNNING;
		wait_us = evapi__now_us() - job->queued_us;
		if (wait_us > p->max_wait_us)
			p->max_wait_us = wait_us;
		pthread_mutex_unlock(&p->mu);

		job->work(job);

		pthread_mutex_lock(&p->mu);
		p->busy--;
		job->state = JOB_DONE;
		notify = TAILQ_EMPTY(&p->done);
		TAILQ_INSERT_TAIL(&p->done, job, link);
		if (notify) {
			/* One wake-up per batch: the loop drains the list. */
			pthread_mutex_unlock(&p->mu);
			evapi__wake_signal(p->wake);
			pthread_mutex_lock(&p->mu);
		}
	}
	{
		/* the stop hook, once the start hook (if any) ran here */
		evapi__pool_hook stop = started || !p->on_start ? p->on_stop
		                                                : NULL;
		void *harg = p->hook_arg;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			stop(harg, worker_index);
	}
	return NULL;
}

/* Completions run at most COMPLETION_SLICE per loop turn: when 40
 * workers finish together, their replies (and the requests those clients
 * then send) would otherwise fill one long turn, and an inline request
 * that became ready meanwhile would wait behind all of them. The rest
 * run from a zero timer, which fires only after the loop has polled its
 * sockets again. */
#define COMPLETION_SLICE 8

static void take_done(evapi__pool *p)
{
	pthread_mutex_lock(&p->mu);
	TAILQ_CONCAT(&p->ready, &p->done, link);
	pthread_mutex_unlock(&p->mu);
}

static void run_some(evapi__pool *p, int max)
{
	evapi__job *job;
	while (max-- > 0 && (job = TAILQ_FIRST(&p->ready)) != NULL) {
		TAILQ_REMOVE(&p->ready, job, link);
		job->done(job, 0);
	}
}

static void run_slice(evapi__pool *p)
{
	static const struct timeval now = {0, 0};
	take_done(p);
	run_some(p, COMPLETION_SLICE);
	if (!TAILQ_EMPTY(&p->ready))
		evtimer_add(p->more, &now);
}

static void more_cb(evutil_socket_t fd, short what, void *arg)
{
	run_slice(arg);
}

static void wake_cb(void *arg)
{
	run_slice(arg);
}

evapi__pool *evapi__pool_new(struct event_base *base, const pthread_t *loop,
                             int threads, int queue_max, int batch,
                             void (*thread_init)(void *), void *init_arg)
{
	evapi__pool *p;
	sigset_t all, old;
	int i;

	if (threads < 1 || queue_max < 0)
		return NULL;
	p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	TAILQ_INIT(&p->queue);
	TAILQ_INIT(&p->done);
	TAILQ_INIT(&p->ready);
	p->queue_max = queue_max;
	p->batch = batch;
	p->thread_init = thread_init;
	p->init_arg = init_arg;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->wake = evapi__wake_new(base, loop, wake_cb, p);
	p->more = evtimer_new(base, more_cb, p);
	p->threads = calloc((size_t)threads, sizeof *p->threads);
	if (!p->wake || !p->more || !p->threads)
		goto err;
	/* Workers inherit a full signal mask: SIGINT/SIGTERM belong to the
	 * loop, and must not interrupt a handler's blocking call. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < threads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
			break;
		p->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->nthreads != threads)
		goto err;
	return p;
err:
	evapi__pool_free(p);
	return NULL;
}

void evapi__pool_hooks(evapi__pool *p, evapi__pool_hook on_start,
                       evapi__pool_hook on_stop, void *arg)
{
	pthread_mutex_lock(&p->mu);
	if (on_start && on_start != p->on_start) {
		p->hook_gen++; /* every worker runs it before its next job */
		pthread_cond_broadcast(&p->cv);
	}
	p->on_start = on_start;
	p->on_stop = on_stop;
	p->hook_arg = arg;
	pthread_mutex_unlock(&p->mu);
}

int evapi__pool_submit(evapi__pool *p, evapi__job *job)
{
	pthread_mutex_lock(&p->mu);
	if (p->stop || p->queued >= p->queue_max + (p->nthreads - p->busy)) {
		pthread_mutex_unlock(&p->mu);
		return EVAPI_EBUSY;
	}
	job->state = JOB_QUEUED;
	job->queued_us = evapi__now_us();
	TAILQ_INSERT_TAIL(&p->queue, job, link);
	p->queued++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int evapi__pool_cancel(evapi__pool *p, evapi__job *job)
{
	int unlinked = 0;
	pthread_mutex_lock(&p->mu);
	if (job->state == JOB_QUEUED) {
		TAILQ_REMOVE(&p->queue, job, link);
		p->queued--;
		job->state = JOB_CANCELLED;
		unlinked = 1;
	}
	pthread_mutex_unlock(&p->mu);
	return unlinked;
}

void evapi__pool_counts(evapi__pool *p, int *threads, int *busy, int *queued)
{
	pthread_mutex_lock(&p->mu);
	*threads = p->nthreads;
	*busy = p->busy;
	*queued = p->queued;
	pthread_mutex_unlock(&p->mu);
}

void evapi__pool_waits(evapi__pool *p, int64_t *oldest_us, int64_t *max_us)
{
	evapi__job *head;
	pthread_mutex_lock(&p->mu);
	head = TAILQ_FIRST(&p->queue);
	*oldest_us = head ? evapi__now_us() - head->queued_us : 0;
	*max_us = p->max_wait_us;
	pthread_mutex_unlock(&p->mu);
}

void evapi__pool_free(evapi__pool *p)
{
	evapi__job *job;
	int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	/* Workers are gone: no lock needed from here on. */
	take_done(p);
	run_some(p, INT_MAX);
	while ((job = TAILQ_FIRST(&p->queue)) != NULL) {
		TAILQ_REMOVE(&p->queue, job, link);
		job->state = JOB_CANCELLED;
		job->done(job, EVAPI_ECANCELED);
	}
	evapi__wake_free(p->wake);
	if (p->more)
		event_free(p->more);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}
