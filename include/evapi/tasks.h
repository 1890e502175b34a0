/*
 * evapi/tasks.h: background tasks (FastAPI's BackgroundTasks): work a
 * handler queues that starts only after its response has been completely
 * written to the client.
 */
#ifndef EVAPI_TASKS_H
#define EVAPI_TASKS_H

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A background task. Called exactly once: with status 0 to run it, on the
 * loop thread or on a pool worker as declared; or, on the loop, with
 * EVAPI_ECANCELED when it is skipped (the reply was not delivered, an
 * earlier task of the same request failed, or the app stopped first),
 * so it can free `arg`. Return 0 on success or a negative code: a failure
 * is logged with the route and the task's name, and the request's
 * remaining tasks are skipped (and logged), as Starlette does. A task on
 * the loop must not block. The return value of a skipped call is ignored.
 */
typedef int (*evapi_task_cb)(evapi_app *app, int status, void *arg);

/**
 * Queues `cb(app, 0, arg)` to run after the reply to `req` has been
 * completely written (libevent's request-complete callback). Tasks of one
 * request run in the order they were added, one after the other, each in
 * `lane` (EVAPI_INLINE: on the loop; EVAPI_POOL: on a worker). `name` (for
 * logs; may be NULL) is copied. Add tasks before replying: after the reply
 * this returns EVAPI_EALREADY. A graceful stop waits for queued tasks
 * within shutdown_grace_ms; past it, tasks not started are skipped.
 * Returns 0 (then `cb` runs exactly once) or a negative code (then it
 * never runs). Thread-safe: only on the thread running the handler, as
 * the reply functions.
 */
EVAPI_EXPORT int evapi_req_add_task(evapi_req *req, evapi_lane lane,
                                    const char *name, evapi_task_cb cb,
                                    void *arg);

#ifdef __cplusplus
}
#endif
#endif
