/*
 * middleware.c: before/after hooks around every request, and the CORS
 * middleware built on them.
 *
 * Threads: registration happens before the run; the hooks run on the loop
 * only: before hooks from on_request ahead of routing, after hooks from
 * the reactor just before a reply's headers are written. Nested in
 * registration order (the first middleware outermost); a request records
 * how many before hooks ran (req->mw_depth) so that exactly those
 * middlewares see the reply, innermost first. While after hooks run,
 * req->after_resp points at the reply being sent, which is where
 * evapi_reply_add_header appends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

struct evapi__mw {
	evapi_mw_before_cb before;
	evapi_mw_after_cb after;
	void *arg;
	void (*free_arg)(void *);
	char name[24];  /* "middleware 0", for the watchdog */
};

/* The module's state (app->mws), in registration order; NULL when the
 * app has no middleware. */
struct evapi__mws {
	int n;
	struct evapi__mw v[];
};

static int mw_add(evapi_app *app, evapi_mw_before_cb before,
                  evapi_mw_after_cb after, void *arg, void (*free_arg)(void *))
{
	struct evapi__mws *l;
	struct evapi__mw *mw;
	int n;

	if (!app || (!before && !after))
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	n = app->mws ? app->mws->n : 0;
	l = realloc(app->mws, sizeof *l + (size_t)(n + 1) * sizeof *mw);
	if (!l)
		return EVAPI_ENOMEM;
	app->mws = l;
	l->n = n + 1;
	mw = &l->v[n];
	mw->before = before;
	mw->after = after;
	mw->arg = arg;
	mw->free_arg = free_arg;
	snprintf(mw->name, sizeof mw->name, "middleware %d", n);
	return 0;
}

int evapi_app_middleware(evapi_app *app, evapi_mw_before_cb before,
                         evapi_mw_after_cb after, void *arg)
{
	return mw_add(app, before, after, arg, NULL);
}

void evapi__mw_free(evapi_app *app)
{
	int i;
	for (i = 0; app->mws && i < app->mws->n; i++)
		if (app->mws->v[i].free_arg)
			app->mws->v[i].free_arg(app->mws->v[i].arg);
	free(app->mws);
	app->mws = NULL;
}

int evapi__before_call(evapi_req *req, evapi_mw_before_cb cb, void *arg,
                       const char *kind, const char *name)
{
	evapi_app *app = req->app;
	evapi__user u;
	int rc;

	evapi__user_begin(app, &u, kind, name, req->route);
	req->in_before = 1; /* refuses async work: evapi__req_can_wait */
	rc = cb(req, arg);
	req->in_before = 0;
	evapi__user_end(app, &u);
	if (req->state != EVAPI__REQ_RUNNING)
		return 1; /* it answered: short-circuit */
	if (rc != 0) {
		evapi__log(app, EVAPI_LOG_ERROR,
		           "%s stopped the request without replying: 500 "
		           "id=%llu", name, req->id);
		evapi_reply_error(req, 500, "Internal Server Error");
		return 1;
	}
	return 0;
}

int evapi__mw_before(evapi_req *req)
{
	evapi_app *app = req->app;
	const struct evapi__mw *mw;
	int i, n;

	if (!app->mws)
		return 0;
	mw = app->mws->v;
	n = app->mws->n;
	for (i = 0; i < n; i++) {
		req->mw_depth = i + 1;
		if (mw[i].before && evapi__before_call(req, mw[i].before,
		                                       mw[i].arg, "before hook",
		                                       mw[i].name))
			return 1;
	}
	return 0;
}

int evapi__mw_any_before(const evapi_app *app)
{
	int i;
	for (i = 0; app->mws && i < app->mws->n; i++)
		if (app->mws->v[i].before)
			return 1;
	return 0;
}

void evapi__mw_after(evapi_req *req, evapi__resp *resp)
{
	evapi_app *app = req->app;
	const struct evapi__mw *mw = app->mws ? app->mws->v : NULL;
	int i = req->mw_depth;

	req->mw_depth = 0; /* a reply goes out once */
	req->after_resp = resp;
	while (i-- > 0) {
		evapi__user u;
		if (!mw[i].after)
			continue;
		evapi__user_begin(app, &u, "after hook", mw[i].name,
		                  req->route);
		mw[i].after(req, resp->status, mw[i].arg);
		evapi__user_end(app, &u);
	}
	req->after_resp = NULL;
}

/* ---- CORS ---------------------------------------------------------------- */

typedef struct cors {
	char *origins, *methods, *headers, *expose;
	int any_origin, credentials, max_age;
} cors;

static void cors_free(void *arg)
{
	cors *c = arg;
	free(c->origins);
	free(c->methods);
	free(c->headers);
	free(c->expose);
	free(c);
}

/* 1 when `item` is one of the comma-separated `list` (spaces trimmed). */
static int in_list(const char *list, const char *item, int nocase)
{
	size_t n = strlen(item);
	const char *p = list;

	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		while (len && *p == ' ') {
			p++;
			len--;
		}
		while (len && p[len - 1] == ' ')
			len--;
		if (len == n && (nocase ? strncasecmp(p, item, n)
		                        : strncmp(p, item, n)) == 0)
			return 1;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

static int origin_ok(const cors *c, const char *origin)
{
	return c->any_origin || in_list(c->origins, origin, 0);
}

/* Starlette answers "*" only when any origin is allowed and credentials
 * are not: otherwise it echoes the origin and says Vary: Origin. */
static void allow_origin(const cors *c, evapi__resp *resp, const char *origin)
{
	if (c->any_origin && !c->credentials) {
		evapi__resp_add_header(resp, "Access-Control-Allow-Origin", "*");
	} else {
		evapi__resp_add_header(resp, "Access-Control-Allow-Origin",
		                       origin);
		evapi__resp_add_header(resp, "Vary", "Origin");
	}
	if (c->credentials)
		evapi__resp_add_header(resp, "Access-Control-Allow-Credentials",
		                       "true");
}

static int cors_before(evapi_req *req, void *arg)
{
	cors *c = arg;
	const char *origin = evapi_req_header(req, "Origin");
	const char *want = evapi_req_header(req, "Access-Control-Request-Method");
	const char *hdrs;
	int ook, mok;
	char age[24];

	if (!origin || evapi_req_method(req) != EVAPI_OPTIONS || !want)
		return 0;
	/* A preflight: answered here, never routed. */
	ook = origin_ok(c, origin);
	mok = in_list(c->methods, want, 1);
	if (!ook || !mok) {
		evapi_reply_error(req, 400,
		                  !ook && !mok ? "Disallowed CORS origin, method"
		                  : !ook       ? "Disallowed CORS origin"
		                               : "Disallowed CORS method");
		return 1;
	}
	allow_origin(c, &req->resp, origin);
	evapi__resp_add_header(&req->resp, "Access-Control-Allow-Methods",
	                       c->methods);
	hdrs = c->headers ? c->headers
	                  : evapi_req_header(req,
	                                     "Access-Control-Request-Headers");
	if (hdrs && *hdrs)
		evapi__resp_add_header(&req->resp,
		                       "Access-Control-Allow-Headers", hdrs);
	snprintf(age, sizeof age, "%d", c->max_age);
	evapi__resp_add_header(&req->resp, "Access-Control-Max-Age", age);
	evapi_reply_text(req, 200, "OK");
	return 1;
}

static void cors_after(evapi_req *req, int status, void *arg)
{
	cors *c = arg;
	const char *origin = evapi_req_header(req, "Origin");

	if (!origin || !origin_ok(c, origin) || !req->after_resp)
		return;
	/* A preflight answered by cors_before already carries them. */
	if (evapi_req_method(req) == EVAPI_OPTIONS &&
	    evapi_req_header(req, "Access-Control-Request-Method"))
		return;
	allow_origin(c, req->after_resp, origin);
	if (c->expose)
		evapi__resp_add_header(req->after_resp,
		                       "Access-Control-Expose-Headers", c->expose);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int evapi_app_cors(evapi_app *app, const evapi_cors_config *cfg)
{
	cors *c;
	int rc;

	if (!app || !cfg || !cfg->allow_origins)
		return EVAPI_EINVAL;
	c = calloc(1, sizeof *c);
	if (!c)
		return EVAPI_ENOMEM;
	c->origins = strdup(cfg->allow_origins);
	c->methods = strdup(cfg->allow_methods
	                            ? cfg->allow_methods
	                            : "GET, POST, PUT, PATCH, DELETE, HEAD, "
	                              "OPTIONS");
	c->headers = dup_or_null(cfg->allow_headers);
	c->expose = dup_or_null(cfg->expose_headers);
	c->any_origin = in_list(cfg->allow_origins, "*", 0);
	c->credentials = cfg->allow_credentials != 0;
	c->max_age = cfg->max_age_s > 0 ? cfg->max_age_s : 600;
	if (!c->origins || !c->methods ||
	    (cfg->allow_headers && !c->headers) ||
	    (cfg->expose_headers && !c->expose)) {
		cors_free(c);
		return EVAPI_ENOMEM;
	}
	if ((rc = mw_add(app, cors_before, cors_after, c, cors_free)) != 0)
		cors_free(c);
	return rc;
}
