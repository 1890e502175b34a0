/*
 * health.c: the optional liveness and readiness routes (config
 * health_routes), for load balancers and orchestrators:
 *   GET /_/health  200 {"status":"ok"} whenever the loop answers;
 *   GET /_/ready   200 {"status":"ready"}, or 503 {"status":"starting"}
 *                  while the app says it is not ready yet
 *                  (evapi_app_set_ready) and 503 {"status":"draining"}
 *                  from the moment a graceful stop begins.
 *
 * Threads: both are inline routes, so they run on the loop: an answer
 * from /_/health is itself the proof that the loop turns. app->stopping
 * is the loop's own; app->not_ready is an atomic, because
 * evapi_app_set_ready may be called from any thread.
 */
#include "internal.h"

static void reply_status(evapi_req *req, int status, const char *what)
{
	/* A probe must see the state now, never a cached answer. */
	evapi_reply_add_header(req, "Cache-Control", "no-store");
	evapi_reply_json(req, status, json_pack("{s:s}", "status", what));
}

static void health_route(evapi_req *req, void *arg)
{
	reply_status(req, 200, "ok");
}

static void ready_route(evapi_req *req, void *arg)
{
	evapi_app *app = req->app;
	if (app->stopping)
		reply_status(req, 503, "draining");
	else if (EVAPI__LOAD(&app->not_ready))
		reply_status(req, 503, "starting");
	else
		reply_status(req, 200, "ready");
}

int evapi__health_routes(evapi_app *app)
{
	int rc = evapi__router_add(app->router, EVAPI_GET, "/_/health",
	                           EVAPI_INLINE, health_route, NULL);
	if (rc == 0)
		rc = evapi__router_add(app->router, EVAPI_GET, "/_/ready",
		                       EVAPI_INLINE, ready_route, NULL);
	return rc;
}

int evapi_app_set_ready(evapi_app *app, int ready)
{
	if (!app)
		return EVAPI_EINVAL;
	EVAPI__STORE(&app->not_ready, !ready);
	return 0;
}
