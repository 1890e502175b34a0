/*
 * lifespan.c: startup and shutdown hooks, and the post queue through
 * which any thread hands a function to the loop (evapi_app_post).
 *
 * Threads: hooks are registered before the run and run on the loop
 * thread. evapi_app_post runs on any thread: it appends to a queue under
 * `mu` and wakes the loop through `wake` (an eventfd, see wake.c); it
 * touches nothing of libevent. The loop swaps
 * the whole queue out under the lock and runs the callbacks outside it,
 * so a callback may post again. Posts the running loop did not get to
 * (the app is being freed) run with EVAPI_ECANCELED, so every accepted
 * post runs exactly once.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

struct evapi__hook {
	struct evapi__hook *next;
	evapi_lifespan_cb cb;
	void *arg;
};

typedef struct post {
	struct post *next;
	evapi_post_cb cb;
	void *arg;
	int user;          /* evapi_app_post's: the watchdog times it */
} post;

struct evapi__postq {
	pthread_mutex_t mu;
	post *head, **tail; /* under mu */
	int n;              /* under mu */
	evapi__wake *wake;
};

static post *take_all(struct evapi__postq *q)
{
	post *list;
	pthread_mutex_lock(&q->mu);
	list = q->head;
	q->head = NULL;
	q->tail = &q->head;
	q->n = 0;
	pthread_mutex_unlock(&q->mu);
	return list;
}

static void run_list(evapi_app *app, post *p, int status)
{
	post *next;
	for (; p; p = next) {
		evapi__user u;
		next = p->next;
		/* evapi's own posts run user code in their own frames */
		if (p->user)
			evapi__user_begin(app, &u, "posted callback",
			                  "evapi_app_post", NULL);
		p->cb(app, status, p->arg);
		if (p->user)
			evapi__user_end(app, &u);
		free(p);
	}
}

static void wake_cb(void *arg)
{
	evapi_app *app = arg;
	/* Outside evapi_app_run only evapi_app_free turns the loop: what
	 * was posted is cancelled then, not run on a stopped app. */
	run_list(app, take_all(app->postq), app->running ? 0 : EVAPI_ECANCELED);
}

int evapi__lifespan_init(evapi_app *app)
{
	struct evapi__postq *q = calloc(1, sizeof *q);
	if (!q)
		return EVAPI_ENOMEM;
	pthread_mutex_init(&q->mu, NULL);
	q->tail = &q->head;
	q->wake = evapi__wake_new(app->base, &app->loop_thread, wake_cb, app);
	app->postq = q;
	return q->wake ? 0 : EVAPI_ENOMEM;
}

static int post_add(evapi_app *app, evapi_post_cb cb, void *arg, int user)
{
	struct evapi__postq *q;
	post *p;
	int first;

	if (!app || !cb || !app->postq)
		return EVAPI_EINVAL;
	q = app->postq;
	p = malloc(sizeof *p);
	if (!p)
		return EVAPI_ENOMEM;
	p->next = NULL;
	p->cb = cb;
	p->arg = arg;
	p->user = user;
	pthread_mutex_lock(&q->mu);
	if (q->n >= EVAPI_POST_QUEUE_MAX) {
		pthread_mutex_unlock(&q->mu);
		free(p);
		return EVAPI_EBUSY;
	}
	first = q->head == NULL;
	*q->tail = p;
	q->tail = &p->next;
	q->n++;
	/* One wake-up per batch: the loop takes the whole queue. Under the
	 * lock so the loop cannot free the eventfd between check and call. */
	if (first)
		evapi__wake_signal(q->wake);
	pthread_mutex_unlock(&q->mu);
	return 0;
}

int evapi__post(evapi_app *app, evapi_post_cb cb, void *arg)
{
	return post_add(app, cb, arg, 0);
}

int evapi_app_post(evapi_app *app, evapi_post_cb cb, void *arg)
{
	return post_add(app, cb, arg, 1);
}

void evapi__lifespan_free(evapi_app *app)
{
	struct evapi__postq *q = app->postq;
	struct evapi__hook *h, *n;
	int i;

	if (q) {
		/* Callbacks may post again while being cancelled: repeat. */
		for (i = 0; i < 100 && q->head; i++)
			run_list(app, take_all(q), EVAPI_ECANCELED);
		evapi__wake_free(q->wake);
		pthread_mutex_destroy(&q->mu);
		free(q);
		app->postq = NULL;
	}
	for (i = 0; i < 2; i++)
		for (h = i ? app->shutdown : app->startup; h; h = n) {
			n = h->next;
			free(h);
		}
	app->startup = app->shutdown = NULL;
}

static int add_hook(evapi_app *app, struct evapi__hook **list,
                    evapi_lifespan_cb cb, void *arg)
{
	struct evapi__hook *h;

	if (!app || !cb)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	h = calloc(1, sizeof *h);
	if (!h)
		return EVAPI_ENOMEM;
	h->cb = cb;
	h->arg = arg;
	while (*list)
		list = &(*list)->next;
	*list = h;
	return 0;
}

int evapi_app_on_startup(evapi_app *app, evapi_lifespan_cb cb, void *arg)
{
	return add_hook(app, app ? &app->startup : NULL, cb, arg);
}

int evapi_app_on_shutdown(evapi_app *app, evapi_lifespan_cb cb, void *arg)
{
	return add_hook(app, app ? &app->shutdown : NULL, cb, arg);
}

static int run_hook(evapi_app *app, struct evapi__hook *h, const char *kind,
                    int i)
{
	evapi__user u;
	char name[32];
	int rc;

	snprintf(name, sizeof name, "%s %d", kind, i);
	evapi__user_begin(app, &u, "lifespan", name, NULL);
	rc = h->cb(app, h->arg);
	evapi__user_end(app, &u);
	return rc;
}

int evapi__lifespan_startup(evapi_app *app)
{
	struct evapi__hook *h;
	int i = 0, rc;

	for (h = app->startup; h; h = h->next, i++) {
		if ((rc = run_hook(app, h, "startup hook", i)) != 0) {
			evapi__log(app, EVAPI_LOG_ERROR,
			           "startup hook %d failed: %s; not serving", i,
			           evapi_strerror(rc));
			return rc < 0 ? rc : EVAPI_ESTATE;
		}
	}
	return 0;
}

void evapi__lifespan_shutdown(evapi_app *app)
{
	struct evapi__hook *h;
	int i = 0, rc;

	for (h = app->shutdown; h; h = h->next, i++)
		if ((rc = run_hook(app, h, "shutdown hook", i)) != 0)
			evapi__log(app, EVAPI_LOG_ERROR,
			           "shutdown hook %d failed: %s", i,
			           evapi_strerror(rc));
	/* What the hooks' threads posted before they were joined. */
	run_list(app, take_all(app->postq), 0);
}
