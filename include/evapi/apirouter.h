/*
 * evapi/apirouter.h: routers (FastAPI's APIRouter): a group of routes
 * with a common path prefix, OpenAPI tags, a default lane and
 * dependencies, mounted on an app or on another router.
 *
 * A router records routes; nothing is served until it is mounted on an
 * app with evapi_app_include_router, which registers every route under
 * the router's prefix (and the prefixes of the routers it sits in). The
 * app copies what it needs: a router may be freed, or changed and
 * mounted again, right after it is included. Loop-thread-only, before
 * evapi_app_run, like route registration.
 */
#ifndef EVAPI_APIROUTER_H
#define EVAPI_APIROUTER_H

#include <evapi/common.h>
#include <evapi/app.h>
#include <evapi/middleware.h>
#include <evapi/schema.h>
#include <evapi/depends.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evapi_router evapi_router;

/**
 * A new, empty router. `prefix` is "" or a path starting with '/' and
 * not ending with one ("/api", "/users/{user_id}"); it is copied. `app`
 * is borrowed for the router's life: refusals are logged through it.
 * Returns new (free with evapi_router_free) or NULL (bad prefix, out of
 * memory). The router's lane is EVAPI_INLINE until evapi_router_lane.
 */
EVAPI_EXPORT evapi_router *evapi_router_new(evapi_app *app,
                                            const char *prefix);

/** Frees the router (the app keeps what was included). NULL: no-op. */
EVAPI_EXPORT void evapi_router_free(evapi_router *r);

/** Adds an OpenAPI tag to every route of the router (copied). Returns
 *  0, EVAPI_EINVAL or EVAPI_ENOMEM. */
EVAPI_EXPORT int evapi_router_tag(evapi_router *r, const char *tag);

/** Sets the lane of the router's routes that do not choose one. A
 *  router mounted in another keeps its own lane if it set one, else
 *  takes the outer router's. Returns 0 or EVAPI_EINVAL. */
EVAPI_EXPORT int evapi_router_lane(evapi_router *r, evapi_lane lane);

/**
 * Adds a dependency (evapi/depends.h) to every route of the router, and
 * of the routers it is included in later: they run after the app's
 * dependencies, outermost router first, then in the order they were
 * added, before the route's own. `dep` is copied (its strings are
 * borrowed for the app's life). Returns 0, EVAPI_EINVAL or EVAPI_ENOMEM.
 */
EVAPI_EXPORT int evapi_router_dep(evapi_router *r, const evapi_dep *dep);

/**
 * evapi_router_dep of an inline dependency `cb(req, arg)`: it runs on the
 * loop for every request routed to one of the router's routes, after
 * routing and the checks of a declared route (path parameters are
 * known) and before the handler, in either lane. Reply to answer
 * instead of the handler (a 401, say); return 0 to go on, or
 * EVAPI_DEP_WAIT after starting request-bound work whose continuation
 * calls evapi_dep_resume. Returning anything else without a reply
 * answers 500. `arg` is borrowed for the app's life. Returns 0,
 * EVAPI_EINVAL or EVAPI_ENOMEM.
 */
EVAPI_EXPORT int evapi_router_depends(evapi_router *r, evapi_mw_before_cb cb,
                                      void *arg);

/**
 * Records a route on `path` (relative to the router's prefix; "" is the
 * prefix itself), in the router's lane. Refused with EVAPI_EEXIST, and
 * logged with both routes, when a route of the router for one of the
 * same methods already matches every path this one matches (it would
 * never run): "/items/{id}" then "/items/{item_id}" or "/items/me".
 * Returns 0, EVAPI_EINVAL (bad template or method), EVAPI_EEXIST or
 * EVAPI_ENOMEM.
 */
EVAPI_EXPORT int evapi_router_route(evapi_router *r, unsigned methods,
                                    const char *path, evapi_handler_cb cb,
                                    void *arg);

/** evapi_router_route in the given lane, whatever the router's. */
EVAPI_EXPORT int evapi_router_route_lane(evapi_router *r, unsigned methods,
                                         const char *path, evapi_lane lane,
                                         evapi_handler_cb cb, void *arg);

/** A declared route (evapi/schema.h) with decl->path relative to the
 *  router. A decl->lane of EVAPI_POOL is kept; EVAPI_INLINE means the
 *  router's lane. `decl` is copied; what it points to is borrowed until
 *  evapi_app_free, as for evapi_app_route_decl, which checks it when the
 *  router is included. Returns as evapi_router_route. */
EVAPI_EXPORT int evapi_router_route_decl(evapi_router *r,
                                         const evapi_route_decl *decl);

/**
 * Mounts `child`'s routes (as they are now) in `parent`: their paths
 * get parent's prefix in front of child's, their tags and dependencies
 * parent's before child's. Refused whole, with EVAPI_EEXIST and both
 * routes logged, when a route would shadow or repeat one parent already
 * has. `child` is only read. Returns 0, EVAPI_EINVAL, EVAPI_EEXIST or
 * EVAPI_ENOMEM.
 */
EVAPI_EXPORT int evapi_router_include(evapi_router *parent,
                                      const evapi_router *child);

/**
 * Registers every route of `r` on its app (the one it was made for),
 * under r's prefix. Every template is checked first: when one is
 * invalid (EVAPI_EINVAL) or repeats or is shadowed by a route the app
 * already has (from the app, a router, or built in: EVAPI_EEXIST, and a
 * log line naming both and where each came from: "route GET
 * /api/users/me refused: GET /api/users/{id} is already registered (by
 * router /api/users) ... (the refused route is from router /api)"),
 * nothing is registered. A declared route whose declaration is refused
 * (EVAPI_EINVAL, see evapi_app_route_decl) stops the registration there,
 * the routes before it staying. Returns 0, EVAPI_EINVAL, EVAPI_EEXIST,
 * EVAPI_ENOMEM or EVAPI_ESTATE (app running).
 */
EVAPI_EXPORT int evapi_app_include_router(evapi_app *app,
                                          const evapi_router *r);

#ifdef __cplusplus
}
#endif
#endif
