/*
 * evapi/middleware.h: HTTP middleware (FastAPI's @app.middleware("http")):
 * hooks that run on the loop around every request, and a CORS middleware
 * built from them.
 */
#ifndef EVAPI_MIDDLEWARE_H
#define EVAPI_MIDDLEWARE_H

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Runs on the loop before routing, for every request that reached the
 * router (404 and 405 included), so evapi_req_route and evapi_req_param
 * know nothing yet. It may read the request and add reply headers; to
 * short-circuit it replies (any evapi_reply_* function) and returns 1:
 * later before hooks and the handler are skipped. Return 0 to go on. It
 * must not block, and it cannot wait: evapi_req_sleep,
 * evapi_req_run_in_pool, evapi_req_fetch and evapi_req_gather return
 * EVAPI_ESTATE here (and their callback never runs). A check that needs
 * to wait (an outbound call, a database) belongs in a dependency
 * (evapi/depends.h): evapi_app_dep runs one for every route, after
 * routing. `req` is borrowed for the call.
 */
typedef int (*evapi_mw_before_cb)(evapi_req *req, void *arg);

/**
 * Runs on the loop just before a reply's status line and headers are
 * written (for a stream, when it starts), with the status being sent. It
 * may add headers with evapi_reply_add_header. It must not block.
 */
typedef void (*evapi_mw_after_cb)(evapi_req *req, int status, void *arg);

/**
 * Adds a middleware; either hook may be NULL. `arg` is borrowed for the
 * app's life. Middlewares nest in registration order, the first one
 * outermost: before hooks run first to last, after hooks last to first,
 * and only for middlewares whose before hook ran (a short-circuit at the
 * second middleware still runs the first one's after hook). Returns 0,
 * EVAPI_EINVAL, EVAPI_ENOMEM or EVAPI_ESTATE (app running).
 */
EVAPI_EXPORT int evapi_app_middleware(evapi_app *app,
                                      evapi_mw_before_cb before,
                                      evapi_mw_after_cb after, void *arg);

/** Deprecated: the old name of evapi_reply_add_header in an after hook;
 *  it does exactly what evapi_reply_add_header does. */
EVAPI_EXPORT int evapi_response_add_header(evapi_req *req, const char *name,
                                           const char *value)
	EVAPI_DEPRECATED("use evapi_reply_add_header");

/** CORS settings for evapi_app_cors. Lists are comma-separated; "*" in
 *  allow_origins allows any origin (then credentials are not allowed).
 *  ABI: no promise before 1.0 (see evapi/common.h); zero-initialise it
 *  and set members by name. max_age_s stays in seconds: it is the
 *  Access-Control-Max-Age header's own unit. */
typedef struct evapi_cors_config {
	const char *allow_origins; /* e.g. "https://a.example,https://b" */
	const char *allow_methods; /* [NULL: "GET, POST, PUT, PATCH, DELETE,
	                              HEAD, OPTIONS"] */
	const char *allow_headers; /* [NULL: echo the requested headers] */
	const char *expose_headers; /* [NULL: none] */
	int allow_credentials;     /* [0] */
	int max_age_s;             /* [600] preflight cache */
} evapi_cors_config;

/**
 * Adds Starlette's CORSMiddleware behaviour as a middleware: a preflight
 * (OPTIONS with Origin and Access-Control-Request-Method) is answered 200
 * with the Access-Control-Allow-* headers when the origin and method are
 * allowed, else 400 {"detail":"Disallowed CORS origin"} (or "method");
 * other requests with an allowed Origin get Access-Control-Allow-Origin
 * (and Vary: Origin). `cfg` and its strings are copied.
 */
EVAPI_EXPORT int evapi_app_cors(evapi_app *app, const evapi_cors_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
