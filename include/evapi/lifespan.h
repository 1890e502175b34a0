/*
 * evapi/lifespan.h: startup and shutdown hooks (FastAPI's lifespan) and
 * a thread-safe "run this on the loop" for application threads.
 */
#ifndef EVAPI_LIFESPAN_H
#define EVAPI_LIFESPAN_H

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A startup or shutdown hook, run on the loop thread. Return 0 or a
 *  negative code. */
typedef int (*evapi_lifespan_cb)(evapi_app *app, void *arg);

/**
 * Registers a startup hook: evapi_app_run runs the startup hooks in
 * registration order before serving the first request. If one fails the
 * rest are skipped, the server does not serve, the shutdown hooks run
 * (each must cope with a resource its startup never made) and
 * evapi_app_run returns that code. `arg` is borrowed for the app's life.
 * Returns 0, EVAPI_EINVAL, EVAPI_ENOMEM or EVAPI_ESTATE (app running).
 */
EVAPI_EXPORT int evapi_app_on_startup(evapi_app *app, evapi_lifespan_cb cb,
                                      void *arg);

/**
 * Registers a shutdown hook: evapi_app_run runs the shutdown hooks in
 * registration order once the server has stopped serving (after the
 * graceful drain), then runs what was posted meanwhile and returns. A
 * failing hook is logged and the others still run. Same returns as
 * evapi_app_on_startup.
 */
EVAPI_EXPORT int evapi_app_on_shutdown(evapi_app *app, evapi_lifespan_cb cb,
                                       void *arg);

/** A function posted to the loop: status 0 to run it; EVAPI_ECANCELED
 *  when the app is freed before the loop got to it (free `arg` then). */
typedef void (*evapi_post_cb)(evapi_app *app, int status, void *arg);

/** Posts that may wait for the loop before evapi_app_post says EBUSY. */
#define EVAPI_POST_QUEUE_MAX 65536

/**
 * Runs `cb(app, 0, arg)` on the loop thread soon, in posting order; never
 * blocks the caller (a mutex-protected queue and a wake-up of the loop).
 * Use it from application threads (a message consumer, a timer thread) to
 * hand results to the loop. Returns 0 (then `cb` runs exactly once, with
 * 0 or EVAPI_ECANCELED), EVAPI_EBUSY when EVAPI_POST_QUEUE_MAX posts
 * already wait, or EVAPI_ENOMEM / EVAPI_EINVAL (then it never runs). The
 * app must outlive the call: join posting threads in a shutdown hook.
 * Thread-safe: yes.
 */
EVAPI_EXPORT int evapi_app_post(evapi_app *app, evapi_post_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
