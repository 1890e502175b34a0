/*
 * continue.c: inline-lane continuations: the non-blocking sleep
 * (asyncio.sleep) and "run on the pool, continue on the loop"
 * (anyio.to_thread.run_sync).
 *
 * Threads: everything here runs on the loop, except the user's work
 * function, which a worker runs with nothing but its `arg`.
 *
 * Each op holds a reference on its request and sits on req->ops until its
 * callback has run, so that a client leaving or the deadline passing can
 * cancel it: a timer is fired early as cancelled; a queued pool job is
 * unlinked and completed as cancelled; a running pool job finishes and its
 * continuation is told it was cancelled.
 */
#include <event2/event.h>
#include <stdlib.h>

#include "internal.h"

enum { OP_SLEEP = 1, OP_POOL };

struct evapi__op {
	evapi__op *next, **pprev;
	evapi__op *cancel_next; /* evapi__ops_cancel's local list */
	evapi_req *req;
	int kind;
	int cancelled;
	void *arg;
	evapi_sleep_cb sleep_cb;
	evapi_work_cb work;
	evapi_done_cb done;
	struct event *timer;
	evapi__job job;
};

static int op_begin(evapi_req *req)
{
	return evapi__req_can_wait(req);
}

static void op_link(evapi__op *op)
{
	evapi_req *req = op->req;
	op->next = req->ops;
	if (req->ops)
		req->ops->pprev = &op->next;
	op->pprev = &req->ops;
	req->ops = op;
	req->pending++;
	req->refs++;
}

static void op_unlink(evapi__op *op)
{
	if (op->next)
		op->next->pprev = op->pprev;
	*op->pprev = op->next;
	op->req->pending--;
}

/* Runs the user's continuation as an inline callback, then drops the op's
 * reference (which may free the request). */
static void op_finish(evapi__op *op, int status)
{
	evapi_req *req = op->req;

	op_unlink(op);
	if (op->req->gone)
		status = EVAPI_ECANCELED;
	evapi__req_enter(req);
	if (op->kind == OP_SLEEP)
		op->sleep_cb(req, status, op->arg);
	else
		op->done(req, status, op->arg);
	evapi__req_leave(req, op->kind == OP_SLEEP ? "sleep continuation"
	                                           : "pool continuation");
	if (op->timer)
		event_free(op->timer);
	free(op);
	evapi__req_unref(req);
}

static void sleep_fired(evutil_socket_t fd, short what, void *arg)
{
	evapi__op *op = arg;
	op_finish(op, op->cancelled ? EVAPI_ECANCELED : 0);
}

int evapi_req_sleep(evapi_req *req, unsigned ms, evapi_sleep_cb cb, void *arg)
{
	evapi__op *op;
	struct timeval tv;
	int rc;

	if ((rc = op_begin(req)) != 0)
		return rc;
	if (!cb)
		return EVAPI_EINVAL;
	op = calloc(1, sizeof *op);
	if (!op)
		return EVAPI_ENOMEM;
	op->req = req;
	op->kind = OP_SLEEP;
	op->sleep_cb = cb;
	op->arg = arg;
	op->timer = evtimer_new(req->app->base, sleep_fired, op);
	/* libevent measures timers from the time cached at the start of this
	 * loop turn; after a stall that is stale and the sleep would be cut
	 * short. Sleep from now, as asyncio does. */
	event_base_update_cache_time(req->app->base);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (!op->timer || evtimer_add(op->timer, &tv) < 0) {
		if (op->timer)
			event_free(op->timer);
		free(op);
		return EVAPI_ENOMEM;
	}
	op_link(op);
	return 0;
}

static void pool_work(evapi__job *job)
{
	evapi__op *op = (evapi__op *)((char *)job - offsetof(evapi__op, job));
	evapi__client_use_app(op->req->app);
	op->work(op->arg);
	evapi__client_use_app(NULL);
}

static void pool_done(evapi__job *job, int status)
{
	evapi__op *op = (evapi__op *)((char *)job - offsetof(evapi__op, job));
	op_finish(op, op->cancelled ? EVAPI_ECANCELED : status);
}

int evapi_req_run_in_pool(evapi_req *req, evapi_work_cb work,
                          evapi_done_cb done, void *arg)
{
	evapi__op *op;
	int rc;

	if ((rc = op_begin(req)) != 0)
		return rc;
	if (!work || !done)
		return EVAPI_EINVAL;
	op = calloc(1, sizeof *op);
	if (!op)
		return EVAPI_ENOMEM;
	op->req = req;
	op->kind = OP_POOL;
	op->work = work;
	op->done = done;
	op->arg = arg;
	op->job.work = pool_work;
	op->job.done = pool_done;
	if ((rc = evapi__pool_submit(req->app->pool, &op->job)) != 0) {
		free(op);
		return rc;
	}
	op_link(op);
	return 0;
}

void evapi__ops_cancel(evapi_req *req)
{
	evapi__op *op, *next, *unlinked = NULL;

	evapi__client_cancel_req(req);
	for (op = req->ops; op; op = next) {
		next = op->next;
		op->cancelled = 1;
		if (op->kind == OP_SLEEP) {
			/* Fire now, as cancelled, from the loop's next turn:
			 * never call user code from inside this walk. */
			event_del(op->timer);
			event_active(op->timer, EV_TIMEOUT, 0);
		} else if (evapi__pool_cancel(req->app->pool, &op->job)) {
			op->cancel_next = unlinked;
			unlinked = op;
		}
		/* a running job completes later and sees op->cancelled */
	}
	/* Queued jobs that will never run: their continuations run now, after
	 * the walk, so they may touch req->ops safely. */
	while (unlinked) {
		op = unlinked;
		unlinked = op->cancel_next;
		op_finish(op, EVAPI_ECANCELED);
	}
}
