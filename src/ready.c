/*
 * ready.c: outcomes that are final but delivered later. A loop-side
 * client (db.c's queries, redis.c's commands) learns an operation's
 * outcome in places where running its continuation is unsafe: inside a
 * libpq or hiredis callback, or inside a cancellation walk over a
 * request's pending work, where the continuation could start new work
 * or free what the walk holds. The outcome goes on a ready list instead,
 * and one event on the loop delivers the list later.
 *
 * Threads: the loop thread only, for every call here; no lock. Work that
 * finishes on another thread comes back to the loop first (wake.c's post
 * queue, the pool's done list) and is added here from there.
 *
 * Protocol: evapi__ready_add appends and activates the event; the event
 * swaps the whole list out and delivers it in order, so a continuation
 * that makes more outcomes ready (a query finishing the next one) has
 * them delivered by the next activation, never by the walk in progress.
 */
#include <event2/event.h>

#include "internal.h"

static void on_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evapi__ready_run(arg);
}

int evapi__ready_init(evapi__ready *r, struct event_base *base,
                      evapi__ready_cb cb, void *arg)
{
	TAILQ_INIT(&r->list);
	r->cb = cb;
	r->arg = arg;
	r->ev = event_new(base, -1, 0, on_event, r);
	return r->ev ? 0 : EVAPI_ENOMEM;
}

void evapi__ready_add(evapi__ready *r, evapi__ready_item *it)
{
	TAILQ_INSERT_TAIL(&r->list, it, link);
	event_active(r->ev, EV_READ, 0);
}

void evapi__ready_run(evapi__ready *r)
{
	struct evapi__ready_list list;
	evapi__ready_item *it;

	if (!r->ev)
		return; /* never initialised: nothing was added */
	TAILQ_INIT(&list);
	TAILQ_CONCAT(&list, &r->list, link);
	while ((it = TAILQ_FIRST(&list))) {
		TAILQ_REMOVE(&list, it, link);
		r->cb(it, r->arg);
	}
}

void evapi__ready_free(evapi__ready *r)
{
	if (r->ev)
		event_free(r->ev);
	r->ev = NULL;
}
