/*
 * lifespan.c: startup and shutdown hooks, and evapi_app_post, the public
 * face of the app's post queue (wake.c).
 *
 * Threads: hooks are registered before the run and run on the loop
 * thread. evapi_app_post runs on any thread; the queue's rules are
 * wake.c's.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

struct evapi__hook {
	struct evapi__hook *next;
	evapi_lifespan_cb cb;
	void *arg;
};

/* The module's state (app->hooks), in registration order. */
struct evapi__hooks {
	struct evapi__hook *startup, *shutdown;
};

int evapi__lifespan_init(evapi_app *app)
{
	app->postq = evapi__postq_new(app);
	app->hooks = calloc(1, sizeof *app->hooks);
	return app->postq && app->hooks ? 0 : EVAPI_ENOMEM;
}

int evapi__post(evapi_app *app, evapi_post_cb cb, void *arg)
{
	return evapi__postq_add(app ? app->postq : NULL, cb, arg, 0);
}

int evapi_app_post(evapi_app *app, evapi_post_cb cb, void *arg)
{
	return evapi__postq_add(app ? app->postq : NULL, cb, arg, 1);
}

void evapi__lifespan_free(evapi_app *app)
{
	struct evapi__hook *h, *n;
	int i;

	evapi__postq_free(app->postq);
	app->postq = NULL;
	for (i = 0; app->hooks && i < 2; i++)
		for (h = i ? app->hooks->shutdown : app->hooks->startup; h;
		     h = n) {
			n = h->next;
			free(h);
		}
	free(app->hooks);
	app->hooks = NULL;
}

static int add_hook(evapi_app *app, struct evapi__hook **list,
                    evapi_lifespan_cb cb, void *arg)
{
	struct evapi__hook *h;

	if (!app || !list || !cb)
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
	return add_hook(app, app && app->hooks ? &app->hooks->startup : NULL, cb,
	                arg);
}

int evapi_app_on_shutdown(evapi_app *app, evapi_lifespan_cb cb, void *arg)
{
	return add_hook(app, app && app->hooks ? &app->hooks->shutdown : NULL,
	                cb, arg);
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

	for (h = app->hooks->startup; h; h = h->next, i++) {
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

	for (h = app->hooks->shutdown; h; h = h->next, i++)
		if ((rc = run_hook(app, h, "shutdown hook", i)) != 0)
			evapi__log(app, EVAPI_LOG_ERROR,
			           "shutdown hook %d failed: %s", i,
			           evapi_strerror(rc));
	/* What the hooks' threads posted before they were joined. */
	evapi__postq_run(app->postq, 0);
}
