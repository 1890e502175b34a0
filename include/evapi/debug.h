/*
 * evapi/debug.h: what a debugging tool loaded into the process may ask
 * evapi, such as the blocking-call checker libevapi_blockcheck.so
 * (README.md, "Catching blocking calls"). Both functions read the
 * calling thread's own state: they are cheap, never block and may be
 * called from inside any interposed libc function.
 */
#ifndef EVAPI_DEBUG_H
#define EVAPI_DEBUG_H

#include <evapi/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** 1 when the calling thread is running an app's loop (inside
 *  evapi_app_run), else 0. Thread-safe: yes. */
EVAPI_EXPORT int evapi_debug_is_loop_thread(void);

/** The name of the user callback the calling thread's loop is running
 *  now, as the stall watchdog names it: a route's label ("GET /slow")
 *  for its handler and continuations, "middleware N" for a middleware's
 *  hooks, "dependency N of GET /x (router /x)" for a router's
 *  dependency, a background task's or a stream's name, or the kind of
 *  callback ("query callback") when it has no name. NULL when evapi's
 *  own code runs, or the thread is no loop. Borrowed: valid while that
 *  callback runs. Thread-safe: yes. */
EVAPI_EXPORT const char *evapi_debug_current_callback(void);

#ifdef __cplusplus
}
#endif
#endif
