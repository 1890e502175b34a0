/*
 * wake.c: how another thread wakes the loop. An eventfd with a
 * persistent read event on the loop's base; evapi__wake_signal() writes
 * to it from any thread, and the loop's callback drains it and runs the
 * owner's function.
 *
 * Threads: created, freed and dispatched on the loop thread. The only
 * thing a foreign thread does is write(2) to the eventfd, so libevent
 * itself never sees a second thread and runs without locks (evapi does
 * not call evthread_use_pthreads()).
 *
 * A signal from the loop thread itself (a stream telling its callback,
 * say) activates the event directly instead, so it runs in the same turn
 * of the loop, before a stop request can end the loop.
 *
 * Protocol: a producer publishes its item under its own lock, then
 * signals. The loop reads the eventfd *before* taking the items, so an
 * item published after the take has its own signal still pending.
 *
 * The post queue below (evapi_app_post, and evapi's own hand-offs to the
 * loop: stream pumps, the start of background tasks) is that protocol
 * with one locking rule, which the pool's done list follows too:
 *
 *   a producer appends under the queue's mutex and, if it found the
 *   queue empty, signals; the loop drains the eventfd, swaps the whole
 *   queue out under the mutex and runs the items outside it.
 *
 * So one signal serves a batch, an item is never run under the lock (a
 * callback may post again), and nothing but the mutex is shared. The
 * post queue signals while still holding the mutex, so the loop cannot
 * free the wake between the check and the write; the pool signals just
 * after releasing it, which is safe because its wake is freed only once
 * its workers are joined.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

struct evapi__wake {
	int fd;
	const pthread_t *loop; /* the loop thread's id, or NULL */
	struct event *ev;
	void (*fn)(void *arg);
	void *arg;
};

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi__wake *w = arg;
	uint64_t n;
	/* Drain first (see the protocol above); EAGAIN: nothing pending. */
	while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
		;
	w->fn(w->arg);
}

evapi__wake *evapi__wake_new(struct event_base *base, const pthread_t *loop,
                             void (*fn)(void *), void *arg)
{
	evapi__wake *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->loop = loop;
	w->fn = fn;
	w->arg = arg;
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0) {
		free(w);
		return NULL;
	}
	w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, wake_cb, w);
	if (!w->ev || event_add(w->ev, NULL) != 0) {
		evapi__wake_free(w);
		return NULL;
	}
	return w;
}

void evapi__wake_signal(evapi__wake *w)
{
	uint64_t one = 1;
	if (evapi__is_thread(w->loop)) {
		event_active(w->ev, EV_READ, 0);
		return;
	}
	/* EAGAIN means the counter is at its maximum: already signalled. */
	while (write(w->fd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

void evapi__wake_free(evapi__wake *w)
{
	if (!w)
		return;
	if (w->ev)
		event_free(w->ev);
	close(w->fd);
	free(w);
}

/* ---- the post queue -------------------------------------------------------- */

typedef struct post {
	struct post *next;
	evapi_post_cb cb;
	void *arg;
	int user;          /* evapi_app_post's: the watchdog times it */
} post;

struct evapi__postq {
	evapi_app *app;
	pthread_mutex_t mu;
	post *head, **tail; /* under mu */
	int n;              /* under mu */
	evapi__wake *wake;
};

static post *take_all(evapi__postq *q)
{
	post *list;
	pthread_mutex_lock(&q->mu);
	list = q->head;
	q->head = NULL;
	q->tail = &q->head;
	q->n = 0;
	pthread_mutex_unlock(&q->mu);
	return list;
}

static void run_list(evapi__postq *q, post *p, int status)
{
	post *next;
	for (; p; p = next) {
		evapi__user u;
		next = p->next;
		/* evapi's own posts run user code in frames of their own */
		if (p->user)
			evapi__user_begin(q->app, &u, "posted callback",
			                  "evapi_app_post", NULL);
		p->cb(q->app, status, p->arg);
		if (p->user)
			evapi__user_end(q->app, &u);
		free(p);
	}
}

static void postq_wake(void *arg)
{
	evapi__postq *q = arg;
	/* Outside evapi_app_run only evapi_app_free turns the loop: what
	 * was posted is cancelled then, not run on a stopped app. */
	run_list(q, take_all(q), q->app->running ? 0 : EVAPI_ECANCELED);
}

evapi__postq *evapi__postq_new(evapi_app *app)
{
	evapi__postq *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->app = app;
	pthread_mutex_init(&q->mu, NULL);
	q->tail = &q->head;
	q->wake = evapi__wake_new(app->base, &app->loop_thread, postq_wake, q);
	if (!q->wake) {
		evapi__postq_free(q);
		return NULL;
	}
	return q;
}

int evapi__postq_add(evapi__postq *q, evapi_post_cb cb, void *arg, int user)
{
	post *p;
	int first;

	if (!q || !cb)
		return EVAPI_EINVAL;
	if (!(p = malloc(sizeof *p)))
		return EVAPI_ENOMEM;
	p->next = NULL;
	p->cb = cb;
	p->arg = arg;
	p->user = user;
	pthread_mutex_lock(&q->mu);
	if (q->n >= EVAPI_POST_QUEUE_MAX) {
		pthread_mutex_unlock(&q->mu);
		free(p);
		return EVAPI_EBUSY;
	}
	first = q->head == NULL;
	*q->tail = p;
	q->tail = &p->next;
	q->n++;
	if (first)
		evapi__wake_signal(q->wake); /* under the lock: see above */
	pthread_mutex_unlock(&q->mu);
	return 0;
}

void evapi__postq_run(evapi__postq *q, int status)
{
	run_list(q, take_all(q), status);
}

void evapi__postq_free(evapi__postq *q)
{
	int i;

	if (!q)
		return;
	/* Callbacks may post again while being cancelled: repeat. */
	for (i = 0; i < 100 && q->head; i++)
		evapi__postq_run(q, EVAPI_ECANCELED);
	evapi__wake_free(q->wake);
	pthread_mutex_destroy(&q->mu);
	free(q);
}
