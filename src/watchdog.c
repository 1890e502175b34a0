/*
 * watchdog.c: the loop-stall watchdog. Every place that calls user code
 * on the loop (handlers and continuations, middleware hooks, background
 * tasks, stream callbacks, app-level fetch callbacks, posted callbacks,
 * lifespan hooks) brackets the call with evapi__user_begin/end, and this
 * file alone measures it, counts a stall (stalls, max_stall_ms, stalls by
 * route) and logs it with the callback's name and kind.
 *
 * Threads: loop only. The frames live on the callers' stacks and form a
 * stack of their own (app->user_top), because user code calls back into
 * user code: a handler's reply runs the after hooks, a stream write runs
 * the stream callback. A frame is charged its own time only (its
 * children's is subtracted), so a stall names the callback that blocked,
 * and one stall is reported once.
 */
#include "internal.h"

void evapi__user_begin(evapi_app *app, evapi__user *u, const char *kind,
                       const char *name, const evapi__route *route)
{
	u->kind = kind;
	u->name = name;
	u->route = route;
	u->child_us = 0;
	u->parent = app->user_top;
	app->user_top = u;
	u->start_us = evapi__now_us();
}

void evapi__user_end(evapi_app *app, evapi__user *u)
{
	int64_t total = evapi__now_us() - u->start_us;
	int64_t ms = (total - u->child_us) / 1000;

	app->user_top = u->parent;
	if (u->parent)
		u->parent->child_us += total;
	if (ms < app->cfg.stall_threshold_ms)
		return;
	EVAPI__ADD(&app->stats.stalls, 1);
	if (ms > EVAPI__LOAD(&app->stats.max_stall_ms))
		EVAPI__STORE(&app->stats.max_stall_ms, ms);
	evapi__stats_stall(app, u->route);
	evapi__log(app, EVAPI_LOG_WARN,
	           "loop stalled %lld ms in %s (%s): every connection "
	           "waited; blocking work belongs on the pool lane",
	           (long long)ms, u->name ? u->name : "-", u->kind);
}
