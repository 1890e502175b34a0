/*
 * tasks.c: background tasks (BackgroundTasks): queued by a handler, run
 * after its reply has been completely written, in order, each on the loop
 * or on the pool as declared.
 *
 * Threads: evapi_req_add_task runs on the handler's thread and only
 * appends to req->tasks, which belongs to that thread like req->resp.
 * Everything else runs on the loop, except a pool task's callback, which
 * a worker runs with nothing but the app and its arg.
 *
 * When the handler's reply is handed to evhttp, the request's tasks move
 * into a "run" that no longer needs the request. libevent calls the
 * request-complete callback once the last byte has been written, and only
 * then; on a failed write (client gone) it never does, so the run also
 * sets the connection's close callback: whichever comes first decides
 * whether the tasks run or are skipped. A run counts in `active`
 * until its last task has finished, so a graceful stop waits for it.
 */
#include <event2/event.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct evapi__task {
	evapi__task *next;
	evapi_lane lane;
	evapi_task_cb cb;
	void *arg;
	char name[48];
};

struct evapi__bgrun {
	TAILQ_ENTRY(evapi__bgrun) link;
	evapi__pending pend; /* app->pending: a shutdown cut marks it `cut` */
	evapi_app *app;
	evapi__task *head;   /* tasks not started yet, in order */
	evapi__task *cur;    /* the task on the pool */
	int index;           /* index of cur / the next task */
	unsigned long long req_id;
	char label[96];
	const evapi__route *route; /* the request's (routes outlive runs) */
	struct evhttp_connection *evcon; /* while the reply is being written */
	int cut;             /* shutdown: skip what has not started */
	int rc;              /* pool task's result: worker, then loop */
	evapi__job job;
};

/* The module's state (app->tasks_mod), created with the first run. */
struct evapi__tasks {
	TAILQ_HEAD(, evapi__bgrun) runs;
	int active;          /* runs not finished */
};

int evapi__tasks_active(const evapi_app *app)
{
	return app->tasks_mod ? app->tasks_mod->active : 0;
}

int evapi_req_add_task(evapi_req *req, evapi_lane lane, const char *name,
                       evapi_task_cb cb, void *arg)
{
	evapi__task *t, **pp;
	int rc;

	if (!req || !cb || (lane != EVAPI_INLINE && lane != EVAPI_POOL))
		return EVAPI_EINVAL;
	if ((rc = evapi__reply_check(req)) != 0)
		return rc;
	t = calloc(1, sizeof *t);
	if (!t)
		return EVAPI_ENOMEM;
	t->lane = lane;
	t->cb = cb;
	t->arg = arg;
	snprintf(t->name, sizeof t->name, "%s", name ? name : "-");
	for (pp = &req->tasks; *pp; pp = &(*pp)->next)
		;
	*pp = t;
	return 0;
}

/* Skips every task of `list` (their callbacks free their args). */
static void skip_list(evapi_app *app, evapi__task *list, int first,
                      const char *label, unsigned long long id,
                      const char *why)
{
	evapi__task *t, *n;
	int i = first;

	for (t = list; t; t = n, i++) {
		evapi__user u;
		n = t->next;
		evapi__log(app, EVAPI_LOG_WARN,
		           "background task %d (%s) of %s id=%llu skipped: %s", i,
		           t->name, label, id, why);
		evapi__user_begin(app, &u, "background task", t->name, NULL);
		t->cb(app, EVAPI_ECANCELED, t->arg);
		evapi__user_end(app, &u);
		free(t);
	}
}

void evapi__tasks_drop(evapi_req *req, const char *why)
{
	evapi__task *list = req->tasks;
	req->tasks = NULL;
	skip_list(req->app, list, 0, req->route ? req->route->label : "-",
	          req->id, why);
}

static void run_end(struct evapi__bgrun *run, const char *why)
{
	evapi_app *app = run->app;

	skip_list(app, run->head, run->index, run->label, run->req_id, why);
	TAILQ_REMOVE(&app->tasks_mod->runs, run, link);
	evapi__pending_unlink(&run->pend);
	app->tasks_mod->active--;
	free(run);
	evapi__reactor_maybe_exit(app);
}

static void task_result(struct evapi__bgrun *run, evapi__task *t, int rc)
{
	if (rc != 0)
		evapi__log(run->app, EVAPI_LOG_ERROR,
		           "background task %d (%s) of %s id=%llu failed: %s",
		           run->index, t->name, run->label, run->req_id,
		           evapi_strerror(rc));
	else
		evapi__log(run->app, EVAPI_LOG_DEBUG,
		           "background task %d (%s) of %s id=%llu done",
		           run->index, t->name, run->label, run->req_id);
}

static void pool_work(evapi__job *job)
{
	struct evapi__bgrun *run =
		EVAPI__CONTAINER_OF(job, struct evapi__bgrun, job);
	run->rc = run->cur->cb(run->app, 0, run->cur->arg);
}

static void step(struct evapi__bgrun *run);

static void pool_done(evapi__job *job, int status)
{
	struct evapi__bgrun *run =
		EVAPI__CONTAINER_OF(job, struct evapi__bgrun, job);
	evapi__task *t = run->cur;

	run->cur = NULL;
	if (status != 0) { /* the pool was torn down before it ran */
		t->next = run->head;
		run->head = t;
		run_end(run, "the app stopped first");
		return;
	}
	task_result(run, t, run->rc);
	free(t);
	run->index++;
	if (run->rc != 0)
		run_end(run, "an earlier task failed");
	else
		step(run);
}

/* Runs loop tasks one after another until a pool task is handed off or
 * nothing is left. */
static void step(struct evapi__bgrun *run)
{
	evapi_app *app = run->app;
	evapi__task *t;
	evapi__user u;
	int rc;

	while ((t = run->head) != NULL) {
		if (run->cut || app->stopping == 2) {
			run_end(run, "the shutdown grace period ended");
			return;
		}
		run->head = t->next;
		t->next = NULL;
		if (t->lane == EVAPI_POOL) {
			run->cur = t;
			run->job.work = pool_work;
			run->job.done = pool_done;
			if (evapi__pool_submit(app->pool, &run->job) == 0)
				return;
			run->cur = NULL;
			t->next = run->head;
			run->head = t;
			run_end(run, "the pool queue is full");
			return;
		}
		evapi__user_begin(app, &u, "background task", t->name,
		                  run->route);
		rc = t->cb(app, 0, t->arg);
		evapi__user_end(app, &u);
		task_result(run, t, rc);
		free(t);
		run->index++;
		if (rc != 0) {
			run_end(run, "an earlier task failed");
			return;
		}
	}
	run_end(run, "-");
}

static void posted_step(evapi_app *app, int status, void *arg)
{
	struct evapi__bgrun *run = arg;
	if (status != 0)
		run_end(run, "the app stopped first");
	else
		step(run);
}

/* libevent: the last byte of the reply has been written. */
static void on_complete(struct evhttp_request *ev, void *arg)
{
	struct evapi__bgrun *run = arg;
	evhttp_connection_set_closecb(run->evcon, NULL, NULL);
	run->evcon = NULL;
	/* Out of libevent's callback: run the tasks from the loop's next
	 * turn, never inside evhttp's bookkeeping. */
	if (evapi__post(run->app, posted_step, run) != 0)
		run_end(run, "cannot schedule the tasks");
}

/* libevent: the connection closed before the reply was written. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
	struct evapi__bgrun *run = arg;
	run->evcon = NULL;
	run_end(run, "the reply was not delivered (connection closed)");
}

/* A shutdown cut. Runs waiting for their write end when their
 * connection closes; posted ones and running pool tasks see the flag
 * next. */
static void run_cut(evapi__pending *p)
{
	EVAPI__CONTAINER_OF(p, struct evapi__bgrun, pend)->cut = 1;
}

void evapi__tasks_attach(evapi_req *req, struct evhttp_request *ev)
{
	evapi_app *app = req->app;
	struct evapi__bgrun *run;

	if (!req->tasks)
		return;
	if (!app->tasks_mod &&
	    (app->tasks_mod = calloc(1, sizeof *app->tasks_mod)) != NULL)
		TAILQ_INIT(&app->tasks_mod->runs);
	run = app->tasks_mod ? calloc(1, sizeof *run) : NULL;
	if (!run || !evhttp_request_get_connection(ev)) {
		free(run);
		evapi__tasks_drop(req, "out of memory");
		return;
	}
	run->app = app;
	run->head = req->tasks;
	req->tasks = NULL;
	run->req_id = req->id;
	snprintf(run->label, sizeof run->label, "%s",
	         req->route ? req->route->label : "-");
	run->route = req->route;
	run->evcon = evhttp_request_get_connection(ev);
	TAILQ_INSERT_TAIL(&app->tasks_mod->runs, run, link);
	evapi__pending_link(&app->pending, &run->pend, run_cut,
	                    "background tasks");
	app->tasks_mod->active++;
	evhttp_request_set_on_complete_cb(ev, on_complete, run);
	evhttp_connection_set_closecb(run->evcon, on_close, run);
}

void evapi__tasks_free(evapi_app *app)
{
	struct evapi__bgrun *run;

	if (!app->tasks_mod)
		return;
	while ((run = TAILQ_FIRST(&app->tasks_mod->runs)) != NULL) {
		if (run->evcon)
			evhttp_connection_set_closecb(run->evcon, NULL, NULL);
		if (run->cur) { /* cannot happen once the pool is joined */
			run->cur->next = run->head;
			run->head = run->cur;
			run->cur = NULL;
		}
		run_end(run, "the app stopped first");
	}
	free(app->tasks_mod);
	app->tasks_mod = NULL;
}
