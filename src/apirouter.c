/*
 * apirouter.c: routers (evapi/apirouter.h): routes recorded with a
 * prefix, tags, a default lane and dependencies, copied into a parent
 * router or registered on the app when included.
 *
 * Threads: the loop thread, before the run (registration); the
 * dependencies are run by depends.c's chain (evapi__group_deps).
 *
 * A router holds entries whose paths are relative to its own prefix and
 * already carry the prefixes, tags and dependencies of the routers that
 * were included in it; including it once more prepends its own. On the
 * app, each route gets one evapi__group (app-owned, freed with the app)
 * holding what dispatch and the docs need: where it came from, its tags,
 * its dependencies. Routes added with evapi_app_route have none.
 *
 * Shadowing is refused when a route is recorded: a route that an earlier
 * one of the same method matches on every path would never run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A list of strings and a list of dependencies, the two things a route
 * inherits from every router around it. */
typedef struct inherit {
	char **tags;
	int ntags;
	evapi_dep *deps;
	int ndeps;
} inherit;

typedef struct entry {
	unsigned methods;
	char *path;        /* relative to the router; "" or "/..." */
	char *via;         /* prefixes of the routers included below */
	int lane;          /* -1: the router's */
	evapi_handler_cb cb;
	void *arg;
	evapi_route_decl decl;
	int has_decl;
	inherit in;
} entry;

struct evapi_router {
	evapi_app *app;
	char *prefix;
	int lane; /* -1: not set (EVAPI_INLINE on the app) */
	inherit in;
	entry *e;
	size_t n, cap;
};

struct evapi__group {
	char *origin; /* "router /api/users" */
	char *path;   /* the full template (a declared route borrows it) */
	inherit in;
	struct evapi__group *next;
};

static void inherit_free(inherit *in)
{
	int i;
	for (i = 0; i < in->ntags; i++)
		free(in->tags[i]);
	free(in->tags);
	free(in->deps);
	memset(in, 0, sizeof *in);
}

/* out = a then b (copies). Returns 0 or EVAPI_ENOMEM (out left empty). */
static int inherit_join(inherit *out, const inherit *a, const inherit *b)
{
	int i, n = a->ntags + b->ntags, nd = a->ndeps + b->ndeps;

	memset(out, 0, sizeof *out);
	if (n && !(out->tags = calloc((size_t)n, sizeof *out->tags)))
		return EVAPI_ENOMEM;
	if (nd && !(out->deps = malloc((size_t)nd * sizeof *out->deps)))
		goto err;
	for (i = 0; i < n; i++) {
		const char *t = i < a->ntags ? a->tags[i] : b->tags[i - a->ntags];
		if (!(out->tags[i] = strdup(t)))
			goto err;
		out->ntags = i + 1;
	}
	if (a->ndeps)
		memcpy(out->deps, a->deps, (size_t)a->ndeps * sizeof *out->deps);
	if (b->ndeps)
		memcpy(out->deps + a->ndeps, b->deps,
		       (size_t)b->ndeps * sizeof *out->deps);
	out->ndeps = nd;
	return 0;
err:
	out->ntags = n; /* calloc'd: the rest are NULL */
	inherit_free(out);
	return EVAPI_ENOMEM;
}

static char *join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);
	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

/* "" or "/x..." not ending in '/' (a prefix), or any "/..." (a path). */
static int valid_prefix(const char *p)
{
	size_t n;
	if (!p)
		return 0;
	n = strlen(p);
	return n == 0 || (p[0] == '/' && p[n - 1] != '/');
}

evapi_router *evapi_router_new(evapi_app *app, const char *prefix)
{
	evapi_router *r;

	if (!app || !valid_prefix(prefix))
		return NULL;
	if (!(r = calloc(1, sizeof *r)))
		return NULL;
	r->app = app;
	r->lane = -1;
	if (!(r->prefix = strdup(prefix))) {
		free(r);
		return NULL;
	}
	return r;
}

static void entry_free(entry *e)
{
	free(e->path);
	free(e->via);
	inherit_free(&e->in);
}

void evapi_router_free(evapi_router *r)
{
	size_t i;
	if (!r)
		return;
	for (i = 0; i < r->n; i++)
		entry_free(&r->e[i]);
	free(r->e);
	inherit_free(&r->in);
	free(r->prefix);
	free(r);
}

int evapi_router_tag(evapi_router *r, const char *tag)
{
	char **t;
	if (!r || !tag || !*tag)
		return EVAPI_EINVAL;
	if (!(t = realloc(r->in.tags, (size_t)(r->in.ntags + 1) * sizeof *t)))
		return EVAPI_ENOMEM;
	r->in.tags = t;
	if (!(t[r->in.ntags] = strdup(tag)))
		return EVAPI_ENOMEM;
	r->in.ntags++;
	return 0;
}

int evapi_router_lane(evapi_router *r, evapi_lane lane)
{
	if (!r || (lane != EVAPI_INLINE && lane != EVAPI_POOL))
		return EVAPI_EINVAL;
	r->lane = (int)lane;
	return 0;
}

int evapi_router_dep(evapi_router *r, const evapi_dep *dep)
{
	if (!r)
		return EVAPI_EINVAL;
	return evapi__dep_append(&r->in.deps, &r->in.ndeps, dep);
}

int evapi_router_depends(evapi_router *r, evapi_mw_before_cb cb, void *arg)
{
	evapi_dep d = {0};
	d.cb = cb;
	d.arg = arg;
	return evapi_router_dep(r, &d);
}

/* "router /api/users", for logs: the router's prefix and those below */
static void origin(char *buf, size_t len, const char *prefix, const char *via)
{
	snprintf(buf, len, "router %s%s", *prefix || *via ? prefix : "/", via);
}

/* 0, or EVAPI_EEXIST (logged) when an entry of `r` already matches every
 * path of `path` for one of `methods`. */
static int shadow_check(evapi_router *r, unsigned methods, const char *path,
                        const char *via)
{
	char a[256], b[256];
	size_t i;

	for (i = 0; i < r->n; i++) {
		const entry *e = &r->e[i];
		if (!(e->methods & methods) || !evapi__tmpl_covers(e->path, path))
			continue;
		origin(a, sizeof a, r->prefix, via);
		origin(b, sizeof b, r->prefix, e->via);
		evapi__log(r->app, EVAPI_LOG_ERROR,
		           "route %s%s (%s) refused: %s%s (%s) is already "
		           "registered and matches every path it matches, so "
		           "it would always answer first",
		           r->prefix, path, a, r->prefix, e->path, b);
		return EVAPI_EEXIST;
	}
	return 0;
}

static int add_entry(evapi_router *r, const entry *src, const char *path,
                     const char *via, const inherit *in)
{
	entry *e;
	int rc;

	if ((rc = shadow_check(r, src->methods, path, via)) != 0)
		return rc;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		if (!(e = realloc(r->e, cap * sizeof *e)))
			return EVAPI_ENOMEM;
		r->e = e;
		r->cap = cap;
	}
	e = &r->e[r->n];
	*e = *src;
	e->path = strdup(path);
	e->via = strdup(via);
	if (!e->path || !e->via || inherit_join(&e->in, in, &src->in) != 0) {
		free(e->path);
		free(e->via);
		return EVAPI_ENOMEM;
	}
	r->n++;
	return 0;
}

static int record(evapi_router *r, const entry *src)
{
	static const inherit none;
	if (!r || !src->cb || !src->methods || (src->methods & ~0x7fu) ||
	    !src->path || (*src->path && src->path[0] != '/') ||
	    (!*src->path && !*r->prefix))
		return EVAPI_EINVAL;
	return add_entry(r, src, src->path, "", &none);
}

int evapi_router_route_lane(evapi_router *r, unsigned methods,
                            const char *path, evapi_lane lane,
                            evapi_handler_cb cb, void *arg)
{
	entry e = {0};
	if (lane != EVAPI_INLINE && lane != EVAPI_POOL)
		return EVAPI_EINVAL;
	e.methods = methods;
	e.path = (char *)path;
	e.lane = (int)lane;
	e.cb = cb;
	e.arg = arg;
	return record(r, &e);
}

int evapi_router_route(evapi_router *r, unsigned methods, const char *path,
                       evapi_handler_cb cb, void *arg)
{
	entry e = {0};
	e.methods = methods;
	e.path = (char *)path;
	e.lane = -1;
	e.cb = cb;
	e.arg = arg;
	return record(r, &e);
}

int evapi_router_route_decl(evapi_router *r, const evapi_route_decl *decl)
{
	entry e = {0};
	if (!decl)
		return EVAPI_EINVAL;
	e.methods = decl->methods;
	e.path = (char *)decl->path;
	e.lane = decl->lane == EVAPI_POOL ? EVAPI_POOL : -1;
	e.cb = decl->cb;
	e.arg = decl->arg;
	e.decl = *decl;
	e.has_decl = 1;
	return record(r, &e);
}

int evapi_router_include(evapi_router *parent, const evapi_router *child)
{
	size_t i, n0;
	int rc = 0;

	if (!parent || !child || parent == child)
		return EVAPI_EINVAL;
	n0 = parent->n;
	for (i = 0; i < child->n && rc == 0; i++) {
		entry e = child->e[i];
		char *path = join(child->prefix, e.path);
		char *via = join(child->prefix, e.via);
		if (e.lane < 0)
			e.lane = child->lane;
		rc = path && via ? add_entry(parent, &e, path, via, &child->in)
		                 : EVAPI_ENOMEM;
		free(path);
		free(via);
	}
	if (rc != 0) /* refused whole */
		while (parent->n > n0)
			entry_free(&parent->e[--parent->n]);
	return rc;
}

/* ---- on the app ---------------------------------------------------------- */

void evapi__groups_free(evapi_app *app)
{
	struct evapi__group *g;
	while ((g = app->groups)) {
		app->groups = g->next;
		inherit_free(&g->in);
		free(g->origin);
		free(g->path);
		free(g);
	}
}

/* One route of `r` on the app. */
static int register_entry(evapi_app *app, const evapi_router *r,
                          const entry *e, const char *path)
{
	struct evapi__group *g;
	evapi_lane lane;
	size_t first, i;
	char where[256];
	int rc;

	if (!(g = calloc(1, sizeof *g)))
		return EVAPI_ENOMEM;
	origin(where, sizeof where, r->prefix, e->via);
	g->origin = strdup(where);
	g->path = strdup(path);
	if (!g->origin || !g->path ||
	    inherit_join(&g->in, &r->in, &e->in) != 0) {
		inherit_free(&g->in);
		free(g->origin);
		free(g->path);
		free(g);
		return EVAPI_ENOMEM;
	}
	g->next = app->groups;
	app->groups = g;
	lane = e->lane >= 0 ? (evapi_lane)e->lane
	       : r->lane >= 0 ? (evapi_lane)r->lane : EVAPI_INLINE;
	first = evapi__router_count(app->router);
	app->reg_origin = g->origin;
	if (e->has_decl) {
		evapi_route_decl d = e->decl;
		d.path = g->path;
		d.lane = lane;
		rc = evapi_app_route_decl(app, &d);
	} else {
		rc = evapi_app_route(app, e->methods, g->path, lane, e->cb,
		                     e->arg);
	}
	app->reg_origin = NULL;
	for (i = first; i < evapi__router_count(app->router); i++)
		evapi__router_at(app->router, i)->group = g;
	return rc;
}

int evapi_app_include_router(evapi_app *app, const evapi_router *r)
{
	evapi__router *scratch;
	size_t i;
	int rc = 0;

	if (!app || !r || r->app != app)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	/* Every template valid and none taken, before any is registered. */
	if (!(scratch = evapi__router_new()))
		return EVAPI_ENOMEM;
	for (i = 0; i < r->n && rc == 0; i++) {
		char *path = join(r->prefix, r->e[i].path);
		char where[256];
		if (!path) {
			rc = EVAPI_ENOMEM;
			break;
		}
		origin(where, sizeof where, r->prefix, r->e[i].via);
		app->reg_origin = where;
		rc = evapi__router_add(scratch, r->e[i].methods, path,
		                       EVAPI_INLINE, r->e[i].cb, NULL);
		if (rc == 0)
			rc = evapi__route_check(app, r->e[i].methods, path);
		app->reg_origin = NULL;
		free(path);
	}
	evapi__router_free(scratch);
	for (i = 0; i < r->n && rc == 0; i++) {
		char *path = join(r->prefix, r->e[i].path);
		rc = path ? register_entry(app, r, &r->e[i], path)
		          : EVAPI_ENOMEM;
		free(path);
	}
	return rc;
}

/* ---- dispatch ------------------------------------------------------------ */

const evapi_dep *evapi__group_deps(const struct evapi__group *g, int *n)
{
	*n = g->in.ndeps;
	return g->in.deps;
}

const char *evapi__group_origin(const struct evapi__group *g)
{
	return g->origin;
}

json_t *evapi__group_tags(const struct evapi__group *g)
{
	json_t *a;
	int i;

	if (!g || !g->in.ntags)
		return NULL;
	a = json_array();
	for (i = 0; a && i < g->in.ntags; i++)
		json_array_append_new(a, json_string(g->in.tags[i]));
	return a;
}
