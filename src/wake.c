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
	if (w->loop && pthread_equal(pthread_self(), EVAPI__LOAD(w->loop))) {
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
