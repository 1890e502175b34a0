/*
 * debug.c: the answers evapi/debug.h gives a debugging tool: whether the
 * calling thread runs a loop, and which user callback it runs.
 *
 * Threads: two thread-locals, each written only by its own thread: the
 * loop flag by evapi_app_run around the run, the callback name by the
 * stall watchdog (evapi__req_enter/leave in reactor.c, and the one call
 * of a before hook in middleware.c), which already brackets every user
 * callback it times. No locks: a reader on another thread sees nothing.
 */
#include "internal.h"

__thread int evapi__dbg_loop;
__thread const char *evapi__dbg_cb;

int evapi_debug_is_loop_thread(void)
{
	return evapi__dbg_loop;
}

const char *evapi_debug_current_callback(void)
{
	return evapi__dbg_cb;
}
