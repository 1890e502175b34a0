/*
 * depends.c: request state (typed key/value slots), dependencies
 * (resolvers run before a route's handler) and cleanups (run once the
 * request is over), see evapi/depends.h.
 *
 * Threads: registration before the run (creator); the chain of
 * resolvers is driven on the loop (evapi__deps_run, from dispatch, from
 * evapi_dep_resume and from a pool resolver's completion); a pool
 * resolver itself runs on a worker through the request's own pool job
 * (reactor.c), like a pool handler, so the pending-work rules are the
 * handler's: a client leaving unlinks a queued job or drops a running
 * one's outcome. The state and the cleanup list belong, like req->resp,
 * to the thread that runs the request's code: the loop, or a worker
 * while on_worker is set; the loop reads them after the pool's
 * completion (ordered by the pool mutex).
 *
 * The chain: req->dep_next indexes the concatenation app list, router
 * group list, route list. Inline resolvers run back to back inside
 * watchdog frames; EVAPI_DEP_WAIT leaves the chain parked
 * (req->dep_waiting) with the request deferred (close watch, deadline):
 * the resolver's own pending work is what a client leaving, the
 * deadline or a shutdown cancels, and its continuation either replies
 * or calls evapi_dep_resume, which goes on from the next resolver. The
 * chain holds no reference of its own: a parked chain is only ever
 * resumed from inside a continuation that holds one.
 *
 * Cleanups run from req_free (reactor.c): the request has finished and
 * every piece of its pending work has ended, so nothing of the request
 * runs any more. req->cleaning refuses replies and new waits meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { SLOT_PTR = 1, SLOT_INT, SLOT_STR };

struct evapi__slot {
	struct evapi__slot *next;
	int type;
	char *tag;              /* SLOT_PTR: the type name */
	void *ptr;              /* SLOT_PTR; SLOT_STR: the copy */
	void (*free_fn)(void *);
	long long i;
	char key[];
};

struct evapi__cleanup {
	struct evapi__cleanup *next; /* newest first */
	evapi_cleanup_cb cb;
	void *arg;
};

/* The app's dependencies (app->deps_mod). */
struct evapi__deps {
	evapi_dep *v;
	int n;
};

/* ---- request state ------------------------------------------------------ */

/* Whether the calling thread may change req (reply_check's thread rule). */
static int owner_thread(const evapi_req *req)
{
	return req->on_worker || evapi__on_loop(req->app);
}

static struct evapi__slot *slot_find(const evapi_req *req, const char *key)
{
	struct evapi__slot *s;
	if (!req || !key)
		return NULL;
	for (s = req->slots; s; s = s->next)
		if (strcmp(s->key, key) == 0)
			return s;
	return NULL;
}

static void slot_clear(struct evapi__slot *s)
{
	if (s->type == SLOT_PTR && s->free_fn)
		s->free_fn(s->ptr);
	else if (s->type == SLOT_STR)
		free(s->ptr);
	free(s->tag);
	s->tag = NULL;
	s->ptr = NULL;
	s->free_fn = NULL;
}

/* The slot for `key`, emptied, or a new one linked: NULL when out of
 * memory or not allowed here. */
static struct evapi__slot *slot_take(evapi_req *req, const char *key,
                                     int *rc)
{
	struct evapi__slot *s;
	size_t len;

	*rc = EVAPI_EINVAL;
	if (!req || !key)
		return NULL;
	*rc = EVAPI_ETHREAD;
	if (!owner_thread(req))
		return NULL;
	if ((s = slot_find(req, key))) {
		slot_clear(s);
		return s;
	}
	*rc = EVAPI_ENOMEM;
	len = strlen(key);
	if (!(s = calloc(1, sizeof *s + len + 1)))
		return NULL;
	memcpy(s->key, key, len + 1);
	s->next = req->slots;
	req->slots = s;
	return s;
}

/* Stores a value of `type`; `owned` (the tag, or the string's copy) is
 * the slot's from now on, or freed when it cannot be stored. */
static int slot_put(evapi_req *req, const char *key, int type, char *owned,
                    void *ptr, void (*free_fn)(void *), long long i)
{
	struct evapi__slot *s;
	int rc;

	if (!owned)
		return EVAPI_ENOMEM;
	if (!(s = slot_take(req, key, &rc))) {
		free(owned);
		return rc;
	}
	s->type = type;
	if (type == SLOT_STR) {
		s->ptr = owned;
	} else {
		s->tag = owned;
		s->ptr = ptr;
		s->free_fn = free_fn;
	}
	s->i = i;
	return 0;
}

int evapi_req_state_set(evapi_req *req, const char *key, const char *type,
                        void *value, void (*free_fn)(void *))
{
	if (!type)
		return EVAPI_EINVAL;
	return slot_put(req, key, SLOT_PTR, strdup(type), value, free_fn, 0);
}

void *evapi_req_state(const evapi_req *req, const char *key, const char *type)
{
	const struct evapi__slot *s = slot_find(req, key);
	if (!s || s->type != SLOT_PTR || !type || strcmp(s->tag, type) != 0)
		return NULL;
	return s->ptr;
}

int evapi_req_state_set_int(evapi_req *req, const char *key, long long value)
{
	return slot_put(req, key, SLOT_INT, strdup("int"), NULL, NULL, value);
}

int evapi_req_state_int(const evapi_req *req, const char *key,
                        long long *out)
{
	const struct evapi__slot *s;
	if (!req || !key || !out)
		return EVAPI_EINVAL;
	if (!(s = slot_find(req, key)))
		return EVAPI_ENOENT;
	if (s->type != SLOT_INT)
		return EVAPI_EINVAL;
	*out = s->i;
	return 0;
}

int evapi_req_state_set_str(evapi_req *req, const char *key,
                            const char *value)
{
	if (!value)
		return EVAPI_EINVAL;
	return slot_put(req, key, SLOT_STR, strdup(value), NULL, NULL, 0);
}

const char *evapi_req_state_str(const evapi_req *req, const char *key)
{
	const struct evapi__slot *s = slot_find(req, key);
	return s && s->type == SLOT_STR ? s->ptr : NULL;
}

/* ---- cleanups ------------------------------------------------------------ */

int evapi_req_on_cleanup(evapi_req *req, evapi_cleanup_cb cb, void *arg)
{
	struct evapi__cleanup *c;

	if (!req || !cb)
		return EVAPI_EINVAL;
	if (!owner_thread(req))
		return EVAPI_ETHREAD;
	if (req->cleaning)
		return EVAPI_EGONE;
	if (!(c = malloc(sizeof *c)))
		return EVAPI_ENOMEM;
	c->cb = cb;
	c->arg = arg;
	c->next = req->cleanups;
	req->cleanups = c;
	return 0;
}

void evapi__deps_req_free(evapi_req *req)
{
	struct evapi__cleanup *c;
	struct evapi__slot *s;

	req->cleaning = 1;
	while ((c = req->cleanups)) {
		evapi__user u;
		req->cleanups = c->next;
		evapi__user_begin(req->app, &u, "cleanup",
		                  req->route ? req->route->label : "-",
		                  req->route);
		c->cb(req, req->final_status, c->arg);
		evapi__user_end(req->app, &u);
		free(c);
	}
	while ((s = req->slots)) {
		req->slots = s->next;
		slot_clear(s);
		free(s);
	}
}

/* ---- declaring dependencies --------------------------------------------- */

/* 0 when d can be stored, else EVAPI_EINVAL. */
int evapi__dep_valid(const evapi_dep *d)
{
	return d && d->cb && (d->lane == EVAPI_INLINE || d->lane == EVAPI_POOL)
	       ? 0 : EVAPI_EINVAL;
}

/* Appends a copy of d to *v (n entries). */
int evapi__dep_append(evapi_dep **v, int *n, const evapi_dep *d)
{
	evapi_dep *nv;
	int rc;
	if ((rc = evapi__dep_valid(d)) != 0)
		return rc;
	if (!(nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv)))
		return EVAPI_ENOMEM;
	nv[*n] = *d;
	*v = nv;
	(*n)++;
	return 0;
}

int evapi_app_dep(evapi_app *app, const evapi_dep *dep)
{
	if (!app)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	if (!app->deps_mod && !(app->deps_mod = calloc(1, sizeof *app->deps_mod)))
		return EVAPI_ENOMEM;
	return evapi__dep_append(&app->deps_mod->v, &app->deps_mod->n, dep);
}

int evapi_route_dep(evapi_app *app, unsigned methods, const char *path,
                    const evapi_dep *dep)
{
	size_t i, n;
	int rc, found = 0;

	if (!app || !path || !methods || evapi__dep_valid(dep) != 0)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	n = evapi__router_count(app->router);
	for (i = 0; i < n; i++) {
		evapi__route *rt = evapi__router_at(app->router, i);
		if (!(rt->method & methods) || rt->builtin ||
		    evapi__files_is_mount(rt) ||
		    strcmp(rt->tmpl, path) != 0)
			continue;
		if ((rc = evapi__dep_append(&rt->deps, &rt->ndeps, dep)) != 0)
			return rc;
		found = 1;
	}
	return found ? 0 : EVAPI_ENOENT;
}

void evapi__deps_free(evapi_app *app)
{
	if (!app->deps_mod)
		return;
	free(app->deps_mod->v);
	free(app->deps_mod);
	app->deps_mod = NULL;
}

/* The i-th dependency of route rt: the app's, its router groups', its
 * own; NULL past the end. evapi's own routes and mounts have none. */
static const evapi_dep *dep_at(const evapi_app *app, const evapi__route *rt,
                               int i)
{
	int n;
	if (rt->builtin || evapi__files_is_mount(rt))
		return NULL;
	n = app->deps_mod ? app->deps_mod->n : 0;
	if (i < n)
		return &app->deps_mod->v[i];
	i -= n;
	if (rt->group) {
		const evapi_dep *g = evapi__group_deps(rt->group, &n);
		if (i < n)
			return &g[i];
		i -= n;
	}
	return i < rt->ndeps ? &rt->deps[i] : NULL;
}

/* Appends {"<scheme>": []} to `a` for every dependency of rt that names
 * a security scheme not listed yet (OpenAPI operation `security`). */
void evapi__deps_security(const evapi_app *app, const evapi__route *rt,
                          json_t *a)
{
	const evapi_dep *d;
	size_t k;
	int i;

	for (i = 0; (d = dep_at(app, rt, i)); i++) {
		json_t *item;
		if (!d->security)
			continue;
		json_array_foreach(a, k, item)
			if (json_object_get(item, d->security))
				break;
		if (k == json_array_size(a))
			json_array_append_new(a, json_pack("{s:[]}", d->security));
	}
}

/* ---- running them -------------------------------------------------------- */

/* Where the i-th dependency of rt was declared, for logs. */
static const char *dep_where(const evapi_app *app, const evapi__route *rt,
                             int i)
{
	int n = app->deps_mod ? app->deps_mod->n : 0;
	if (i < n)
		return "app";
	if (rt->group) {
		int ng;
		evapi__group_deps(rt->group, &ng);
		if (i - n < ng)
			return evapi__group_origin(rt->group);
	}
	return "route";
}

static void dep_failed(evapi_req *req, const evapi_dep *d, const char *why)
{
	int i = req->dep_next - 1;
	evapi__log(req->app, EVAPI_LOG_ERROR,
	           "dependency %d%s%s of %s (%s) %s id=%llu", i,
	           d->name ? " " : "", d->name ? d->name : "",
	           req->route->label, dep_where(req->app, req->route, i), why,
	           req->id);
	evapi_reply_error(req, 500, "Internal Server Error");
}

void evapi__deps_run(evapi_req *req)
{
	const evapi_dep *d;
	evapi__user u;
	int rc;

	while ((d = dep_at(req->app, req->route, req->dep_next))) {
		req->dep_next++;
		if (d->lane == EVAPI_POOL) {
			req->dep_job = d;
			evapi__req_submit(req);
			return;
		}
		evapi__user_begin(req->app, &u, "dependency",
		                  d->name ? d->name : req->route->label,
		                  req->route);
		rc = d->cb(req, d->arg);
		evapi__user_end(req->app, &u);
		if (req->gone || req->state != EVAPI__REQ_RUNNING)
			return; /* it answered: the handler never runs */
		if (rc == 0)
			continue;
		if (rc == EVAPI_DEP_WAIT && req->pending > 0) {
			req->dep_waiting = 1;
			evapi__req_defer(req);
			return;
		}
		dep_failed(req, d, rc == EVAPI_DEP_WAIT
		                   ? "stopped the request without replying: 500 "
		                     "(EVAPI_DEP_WAIT with nothing pending)"
		                   : "stopped the request without replying: 500");
		return;
	}
	evapi__req_dispatch(req);
}

void evapi__deps_pool_done(evapi_req *req, const evapi_dep *d)
{
	if (req->dep_rc == 0)
		evapi__deps_run(req);
	else
		dep_failed(req, d, req->dep_rc == EVAPI_DEP_WAIT
		                   ? "cannot wait on the pool: 500"
		                   : "stopped the request without replying: 500");
}

int evapi_dep_resume(evapi_req *req)
{
	if (!req)
		return EVAPI_EINVAL;
	if (!evapi__on_loop(req->app))
		return EVAPI_ETHREAD;
	if (!req->dep_waiting)
		return req->gone ? EVAPI_EGONE : EVAPI_ESTATE;
	req->dep_waiting = 0;
	if (req->gone || req->cleaning)
		return EVAPI_EGONE;
	if (req->state != EVAPI__REQ_RUNNING)
		return EVAPI_EALREADY;
	req->refs++;
	evapi__deps_run(req);
	evapi__req_unref(req);
	return 0;
}
