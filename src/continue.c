/*
 * continue.c: inline-lane continuations: the non-blocking sleep
 * (asyncio.sleep) and "run on the pool, continue on the loop"
 * (anyio.to_thread.run_sync).
 *
 * Threads: everything here runs on the loop, except the user's work
 * function, which a worker runs with nothing but its `arg`.
 *
 * Each op holds a reference on its request and sits on the request's
 * pending work (req->pending_ops) until its callback runs, so that a
 * client leaving, the deadline or a shutdown cut can cancel it: a timer
 * is fired early as cancelled; a queued pool job is unlinked and
 * completed as cancelled (from the op's own timer); a running pool job
 * finishes and its continuation is told it was cancelled.
 */
#include <event2/event.h>
#include <stdlib.h>

#include "internal.h"

enum { OP_SLEEP = 1, OP_POOL };

typedef struct op {
	evapi__pending pend;    /* on req->pending_ops until finished */
	evapi_req *req;
	int kind;
	int cancelled;
	void *arg;
	evapi_sleep_cb sleep_cb;
	evapi_work_cb work;
	evapi_done_cb done;
	void (*interrupt)(void *arg); /* a running job told to stop early */
	struct event *timer;    /* the sleep; a pool op's cancelled completion */
	evapi__job job;
} op_t;

static int op_begin(evapi_req *req)
{
	return evapi__req_can_wait(req);
}

/* Runs the user's continuation as an inline callback, then drops the op's
 * reference (which may free the request). */
static void op_finish(op_t *op, int status)
{
	evapi_req *req = op->req;
	evapi__user u;

	evapi__req_pending_done(req, &op->pend);
	if (req->gone)
		status = EVAPI_ECANCELED;
	evapi__req_enter(req, &u, op->kind == OP_SLEEP ? "sleep continuation"
	                                               : "pool continuation");
	if (op->kind == OP_SLEEP)
		op->sleep_cb(req, status, op->arg);
	else
		op->done(req, status, op->arg);
	evapi__req_leave(req, &u);
	if (op->timer)
		event_free(op->timer);
	free(op);
	evapi__req_unref(req);
}

static void op_fired(evutil_socket_t fd, short what, void *arg)
{
	op_t *op = arg;
	op_finish(op, op->cancelled ? EVAPI_ECANCELED : 0);
}

/* The request's pending-work walk: a sleep fires now as cancelled; a
 * queued pool job is unlinked and completes as cancelled; a running one
 * completes later and sees `cancelled`. Either way the continuation runs
 * from the op's timer on the loop's next turn, never inside the walk. */
static void op_cancel(evapi__pending *p)
{
	op_t *op = EVAPI__CONTAINER_OF(p, op_t, pend);

	op->cancelled = 1;
	if (op->kind == OP_SLEEP) {
		event_del(op->timer);
		event_active(op->timer, EV_TIMEOUT, 0);
	} else if (evapi__pool_cancel(op->req->app->pool, &op->job)) {
		event_active(op->timer, EV_TIMEOUT, 0);
	} else if (op->interrupt) {
		op->interrupt(op->arg); /* running: ask it to end sooner */
	}
}

static op_t *op_new(evapi_req *req, int kind, void *arg)
{
	op_t *op = calloc(1, sizeof *op);
	if (!op)
		return NULL;
	op->req = req;
	op->kind = kind;
	op->arg = arg;
	op->timer = evtimer_new(req->app->base, op_fired, op);
	if (!op->timer) {
		free(op);
		return NULL;
	}
	return op;
}

static void op_free(op_t *op)
{
	event_free(op->timer);
	free(op);
}

int evapi_req_sleep(evapi_req *req, unsigned ms, evapi_sleep_cb cb, void *arg)
{
	op_t *op;
	struct timeval tv;
	int rc;

	if ((rc = op_begin(req)) != 0)
		return rc;
	if (!cb)
		return EVAPI_EINVAL;
	if (!(op = op_new(req, OP_SLEEP, arg)))
		return EVAPI_ENOMEM;
	op->sleep_cb = cb;
	/* libevent measures timers from the time cached at the start of this
	 * loop turn; after a stall that is stale and the sleep would be cut
	 * short. Sleep from now, as asyncio does. */
	event_base_update_cache_time(req->app->base);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (evtimer_add(op->timer, &tv) < 0) {
		op_free(op);
		return EVAPI_ENOMEM;
	}
	evapi__req_pending_add(req, &op->pend, op_cancel, "sleep");
	return 0;
}

static void pool_work(evapi__job *job)
{
	op_t *op = EVAPI__CONTAINER_OF(job, op_t, job);
	op->work(op->arg);
}

static void pool_done(evapi__job *job, int status)
{
	op_t *op = EVAPI__CONTAINER_OF(job, op_t, job);
	op_finish(op, op->cancelled ? EVAPI_ECANCELED : status);
}

int evapi_req_run_in_pool(evapi_req *req, evapi_work_cb work,
                          evapi_done_cb done, void *arg)
{
	return evapi__req_run_in_pool_ex(req, work, done, NULL, arg);
}

int evapi__req_run_in_pool_ex(evapi_req *req, evapi_work_cb work,
                              evapi_done_cb done,
                              void (*interrupt)(void *arg), void *arg)
{
	op_t *op;
	int rc;

	if ((rc = op_begin(req)) != 0)
		return rc;
	if (!work || !done)
		return EVAPI_EINVAL;
	if (!(op = op_new(req, OP_POOL, arg)))
		return EVAPI_ENOMEM;
	op->work = work;
	op->done = done;
	op->interrupt = interrupt;
	op->job.work = pool_work;
	op->job.done = pool_done;
	if ((rc = evapi__pool_submit(req->app->pool, &op->job)) != 0) {
		op_free(op);
		return rc;
	}
	evapi__req_pending_add(req, &op->pend, op_cancel, "pool continuation");
	return 0;
}
