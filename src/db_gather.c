/*
 * db_gather.c: several queries of one request, one continuation
 * (asyncio.gather over asyncpg queries). Each query is an ordinary
 * evapi_req_db_query, so each takes its own connection of the pool (they
 * run at once, up to db_max_connections), sits on the request's pending
 * work and is cancelled with it. With db_pipeline they go together on one
 * connection instead, in one round trip (db.c's pipelines), each still
 * its own pending work. As each finishes, its result is moved into the
 * batch; the continuation runs from the last one's, on the loop.
 *
 * Threads: the loop thread only (as evapi_req_db_query).
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"

typedef struct gather {
	evapi_db_gather_cb cb;
	void *arg;
	int n, left, status;
	evapi_db_result *res;                /* n, in query order */
	const evapi_db_result **view;        /* n pointers into res */
} gather;

typedef struct gslot {
	gather *g;
	int i;
} gslot;

static void gather_free(gather *g)
{
	int i;
	for (i = 0; i < g->n; i++)
		evapi__db_result_clear(&g->res[i]);
	free(g);
}

/* One more query is done: the last runs the continuation. */
static void gather_step(gather *g, evapi_req *req)
{
	if (--g->left > 0)
		return;
	g->cb(req, g->status, g->n, g->view, g->arg);
	gather_free(g);
}

static void on_one(evapi_req *req, int status, const evapi_db_result *res,
                   void *arg)
{
	gslot *s = arg;
	gather *g = s->g;
	/* the query's result is freed when this returns: keep its contents
	 * (the pointers move, the query's copy is left empty) */
	evapi_db_result *from = (evapi_db_result *)res;

	g->res[s->i] = *from;
	memset(from, 0, sizeof *from);
	if (status && !g->status)
		g->status = status;
	gather_step(g, req);
}

int evapi_req_db_gather(evapi_req *req, int n, const evapi_db_query *qs,
                        evapi_db_gather_cb cb, void *arg)
{
	gather *g;
	gslot *slots;
	void **args;
	size_t size;
	int i, rc;

	if (!req || !cb || n < 1 || n > 1024 || !qs)
		return EVAPI_EINVAL;
	for (i = 0; i < n; i++)
		if (!evapi__db_args_valid(qs[i].sql, qs[i].nparams, qs[i].params))
			return EVAPI_EINVAL;
	size = sizeof *g + (size_t)n * (sizeof *g->res + sizeof *g->view +
	                                sizeof *slots + sizeof(void *));
	if (!(g = calloc(1, size)))
		return EVAPI_ENOMEM;
	g->res = (evapi_db_result *)(g + 1);
	g->view = (const evapi_db_result **)(g->res + n);
	args = (void **)(g->view + n);
	slots = (gslot *)(args + n);
	g->cb = cb;
	g->arg = arg;
	g->n = n;
	g->left = n + 1; /* held while starting */
	for (i = 0; i < n; i++) {
		g->view[i] = &g->res[i];
		slots[i].g = g;
		slots[i].i = i;
		args[i] = &slots[i];
	}
	if (n > 1 && evapi__db_pipelined(req->app)) {
		/* all or none: every continuation is still to come */
		if ((rc = evapi__db_req_pipeline(req, n, qs, on_one, args))) {
			free(g);
			return rc;
		}
		g->left--;
		return 0;
	}
	for (i = 0; i < n; i++) {
		rc = evapi_req_db_query(req, qs[i].sql, qs[i].nparams,
		                        qs[i].params, on_one, &slots[i]);
		if (rc == 0)
			continue;
		if (i == 0) { /* nothing started: the caller is told */
			free(g);
			return rc;
		}
		/* later ones: the failure is that query's result */
		g->res[i].error = rc;
		evapi__db_result_msg(&g->res[i], "query not started");
		g->left--;
	}
	/* every continuation is still to come (they run from an event, never
	 * inside evapi_req_db_query) */
	g->left--;
	return 0;
}
