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
 *
 * The innermost frame is also what evapi/debug.h tells a debugging tool
 * (libevapi_blockcheck.so) about the loop: which callback runs now.
 * Those two functions read only the calling thread's own state (its
 * role, and on a loop the frames only that thread writes): they live
 * here, linked whenever the watchdog is, even into a static program.
 */
#include "internal.h"

/* The callback `u` held the loop for `ms` (its own time): count it and
 * say so. The fast path, evapi__user_begin/end, is inline in
 * internal.h. */
void evapi__user_stall(evapi_app *app, const evapi__user *u, int64_t ms)
{
	EVAPI__ADD(&app->stats.stalls, 1);
	if (ms > EVAPI__LOAD(&app->stats.max_stall_ms))
		EVAPI__STORE(&app->stats.max_stall_ms, ms);
	evapi__stats_stall(app, u->route);
	evapi__log(app, EVAPI_LOG_WARN,
	           "loop stalled %lld ms in %s (%s): every connection "
	           "waited; blocking work belongs on the pool lane",
	           (long long)ms, u->name ? u->name : "-", u->kind);
}

/* ---- evapi/debug.h -------------------------------------------------------- */

int evapi_debug_is_loop_thread(void)
{
	return evapi__thread_role() == EVAPI__THREAD_LOOP;
}

const char *evapi_debug_current_callback(void)
{
	const evapi_app *app = evapi__thread_app();

	if (evapi__thread_role() != EVAPI__THREAD_LOOP || !app ||
	    !app->user_top)
		return NULL;
	return app->user_top->name ? app->user_top->name : app->user_top->kind;
}
