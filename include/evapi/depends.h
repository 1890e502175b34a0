/*
 * evapi/depends.h: request state, dependencies and cleanups (FastAPI's
 * request.state, Depends and dependencies with yield).
 *
 * A dependency is a resolver that runs before a route's handler. It is
 * declared on the app (every route), on a router (its routes, see
 * evapi/apirouter.h) or on one route, and runs in that order: the app's,
 * the outermost router's ... the innermost router's, the route's, each
 * list in the order it was added. Only routed requests meet them (a 404
 * or 405 never does), after a declared route's checks (422, 415), and
 * never for evapi's own routes (/openapi.json, /docs, /redoc, /_/...) or
 * directory mounts.
 *
 * A resolver runs in its own lane, whatever the route's:
 *   - EVAPI_INLINE: on the loop. It must not block, but it may wait: it
 *     starts request-bound work (evapi_req_sleep, evapi_req_fetch,
 *     evapi_req_db_query, evapi_req_run_in_pool, ...) and returns
 *     EVAPI_DEP_WAIT; that work's continuation later calls
 *     evapi_dep_resume (go on) or replies (stop). This is how an
 *     asynchronous middleware is written: an app-wide inline dependency
 *     that checks an API key with an outbound call.
 *   - EVAPI_POOL: on a pool worker (the request as a pool handler sees
 *     it); it may block, and cannot wait.
 * Either way a resolver
 *   - goes on by returning 0 (EVAPI_DEP_WAIT: later, see above);
 *   - stops the request by replying (401, 403, 404...) and returning
 *     anything: later resolvers and the handler never run;
 *   - leaves values for the handler and later resolvers in the request's
 *     state (evapi_req_state_set*);
 *   - registers cleanups (evapi_req_on_cleanup), FastAPI's code after a
 *     dependency's `yield`.
 * A non-zero return other than EVAPI_DEP_WAIT without a reply answers
 * 500 (logged with the route); so does EVAPI_DEP_WAIT from a pool
 * resolver, or with no request-bound work started.
 */
#ifndef EVAPI_DEPENDS_H
#define EVAPI_DEPENDS_H

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- request state (request.state) ------------------------------------ */
/*
 * A request carries typed key/value slots that middleware, dependencies
 * and the handler share. A key is a string (copied); setting a key again
 * replaces its value (a replaced pointer's free function runs then).
 * Reading a key with another type than it was set with is refused, so a
 * typo or a mix-up is an error code, not a wrong cast. Values live until
 * the request is freed, after its cleanups ran.
 *
 * Thread-safe: only on the thread that runs the request's handler,
 * dependency, continuation or cleanup (the loop; a worker while it runs
 * a pool handler or pool dependency): the setters return EVAPI_ETHREAD
 * elsewhere, the readers do not check. The setters return 0,
 * EVAPI_EINVAL, EVAPI_ENOMEM or EVAPI_ETHREAD.
 */

/** Stores a pointer tagged with `type`, a name of your choosing
 *  ("struct user"; copied), that readers must give again. `free_fn` (may
 *  be NULL) is called on the value when it is replaced or the request
 *  is freed, on the loop. */
EVAPI_EXPORT int evapi_req_state_set(evapi_req *req, const char *key,
                                     const char *type, void *value,
                                     void (*free_fn)(void *));
/** The pointer stored under `key` with the same `type`, or NULL (no such
 *  key, or another type). Borrowed. */
EVAPI_EXPORT void *evapi_req_state(const evapi_req *req, const char *key,
                                   const char *type);
/** Stores an integer. */
EVAPI_EXPORT int evapi_req_state_set_int(evapi_req *req, const char *key,
                                         long long value);
/** Reads an integer: 0, EVAPI_ENOENT (not set) or EVAPI_EINVAL (set
 *  with another type). */
EVAPI_EXPORT int evapi_req_state_int(const evapi_req *req, const char *key,
                                     long long *out);
/** Stores a copy of a string. */
EVAPI_EXPORT int evapi_req_state_set_str(evapi_req *req, const char *key,
                                         const char *value);
/** The string stored under `key`, or NULL (not set, or another type).
 *  Borrowed, as the request. */
EVAPI_EXPORT const char *evapi_req_state_str(const evapi_req *req,
                                             const char *key);

/* ---- dependencies ----------------------------------------------------- */

/** What a resolver returns to say that it waits (see the top). */
#define EVAPI_DEP_WAIT 1

/** A resolver. `req` is borrowed for the call (and, after
 *  EVAPI_DEP_WAIT, until the continuation resumes or replies). */
typedef int (*evapi_dep_cb)(evapi_req *req, void *arg);

/** A dependency. Zero-initialise it and set members by name. */
typedef struct evapi_dep {
	evapi_dep_cb cb;     /* required */
	void *arg;           /* borrowed for the app's life */
	evapi_lane lane;     /* [EVAPI_INLINE] where cb runs */
	/* OpenAPI: the name of a security scheme (evapi/security.h,
	 * evapi_app_security_scheme) this dependency checks; the routes it
	 * guards list it in their `security`. [NULL] */
	const char *security;
	const char *name;    /* [the route] for logs and the watchdog */
} evapi_dep;

/** Adds a dependency to every route of the app (registered before or
 *  after; evapi's own routes and mounts aside). `dep` is copied; its
 *  strings are borrowed for the app's life (as for evapi_route_dep and
 *  evapi_router_dep). Before
 *  evapi_app_run. Returns 0, EVAPI_EINVAL, EVAPI_ENOMEM or
 *  EVAPI_ESTATE (running). */
EVAPI_EXPORT int evapi_app_dep(evapi_app *app, const evapi_dep *dep);

/** Adds a dependency to the route(s) registered for `methods` on the
 *  template `path` (exactly as registered, e.g. "/items/{id}"; a
 *  router's routes with the router's prefix). `dep` is copied. Returns
 *  0, EVAPI_ENOENT (no such route), EVAPI_EINVAL, EVAPI_ENOMEM or
 *  EVAPI_ESTATE. */
EVAPI_EXPORT int evapi_route_dep(evapi_app *app, unsigned methods,
                                 const char *path, const evapi_dep *dep);

/**
 * Goes on with the request's dependencies after a resolver returned
 * EVAPI_DEP_WAIT: call it from the continuation of the work that
 * resolver started. The next resolvers (and then the handler) start
 * from this call. Loop thread. Returns 0, EVAPI_EGONE (the client left,
 * the deadline passed or the app cut the request: the continuation had
 * EVAPI_ECANCELED; nothing more runs), EVAPI_EALREADY (the request was
 * answered), EVAPI_ESTATE (no resolver of this request is waiting),
 * EVAPI_ETHREAD or EVAPI_EINVAL.
 */
EVAPI_EXPORT int evapi_dep_resume(evapi_req *req);

/* ---- cleanups (code after a dependency's yield) ------------------------ */

/** A cleanup: `status` is the request's final status as logged (the
 *  reply's; 499 when the client left first, 504 at the deadline, 503
 *  when the app cut it). `req` may be read (its state too) but not
 *  answered. */
typedef void (*evapi_cleanup_cb)(evapi_req *req, int status, void *arg);

/**
 * Registers `cb(req, status, arg)` to run once the request is over: its
 * reply sent (a stream or file to its end), or the client gone, the
 * deadline passed or the app cut it, and every piece of its pending work
 * ended. Cleanups run exactly once each, in the reverse order of
 * registration, on the loop thread (in a watchdog frame; they must not
 * block), or for a request still alive when the app is freed, on the
 * thread calling evapi_app_free. Whoever may reply to the request may
 * register (a dependency, the handler, a continuation). Returns 0,
 * EVAPI_EINVAL, EVAPI_ENOMEM, EVAPI_ETHREAD or EVAPI_EGONE (the request
 * is already over: cb will not run).
 */
EVAPI_EXPORT int evapi_req_on_cleanup(evapi_req *req, evapi_cleanup_cb cb,
                                      void *arg);

#ifdef __cplusplus
}
#endif
#endif
