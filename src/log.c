/*
 * log.c: formats log lines and hands them to the configured sink.
 *
 * Any thread may log. The default sink writes each line with one write(2)
 * so lines from different threads never interleave; there is no static
 * state, so there is nothing to race on.
 *
 * The access log is the exception: it is written on the loop thread only,
 * one line per request, so with the default sink its lines collect in a
 * loop-owned buffer that is written when it fills, 50 ms after its first
 * line, before any other line the loop logs, and when the loop stops. That
 * keeps the write(2) off the per-request path. A log_cb still gets every
 * line at once.
 */
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const char *level_name[] = {"error", "warn", "info", "debug"};

struct evapi__access_buf {
	struct event *timer;
	size_t len;
	char buf[16384];
};

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w <= 0)
			return; /* stderr gone: drop, never block the loop */
		p += w;
		n -= (size_t)w;
	}
}

void evapi__access_flush(evapi_app *app)
{
	evapi__access_buf *b = app->access;
	if (!b || b->len == 0)
		return;
	write_all(b->buf, b->len);
	b->len = 0;
	event_del(b->timer);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi__access_flush(arg);
}

void evapi__access_free(evapi_app *app)
{
	if (!app->access)
		return;
	evapi__access_flush(app);
	event_free(app->access->timer);
	free(app->access);
	app->access = NULL;
}

/* Formats into line[1024]; returns the length kept, or -1. */
static int format(char *line, size_t cap, const char *fmt, va_list ap)
{
	int n = vsnprintf(line, cap, fmt, ap);
	if (n >= 0 && (size_t)n >= cap)
		n = (int)cap - 1;
	return n;
}

/* Hands one formatted line to the sink (the log_cb, or stderr). */
static void emit(const evapi_app *app, evapi_log_level lvl, const char *line,
                 int n)
{
	char out[1100];
	int m;

	if (app && app->cfg.log_cb) {
		app->cfg.log_cb(lvl, line, app->cfg.log_arg);
		return;
	}
	/* Keep the order the loop logged in: buffered access lines first. */
	if (app && app->access && app->access->len &&
	    evapi__on_loop(app))
		evapi__access_flush((evapi_app *)app);
	m = snprintf(out, sizeof out, "evapi %s: %.*s\n", level_name[lvl], n,
	             line);
	if (m > 0)
		write_all(out, (size_t)m < sizeof out ? (size_t)m : sizeof out - 1);
}

/* Loop thread only. */
void evapi__access_log(evapi_app *app, const char *fmt, ...)
{
	static const struct timeval delay = {0, 50000};
	evapi__access_buf *b = app->access;
	char line[1024];
	va_list ap;
	int n;

	if ((int)app->cfg.log_level < (int)EVAPI_LOG_INFO)
		return;
	va_start(ap, fmt);
	n = format(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (!b && !app->cfg.log_cb) {
		b = app->access = calloc(1, sizeof *b);
		if (b && !(b->timer = evtimer_new(app->base, flush_cb, app))) {
			free(b);
			b = app->access = NULL;
		}
	}
	if (!b || app->cfg.log_cb) {
		emit(app, EVAPI_LOG_INFO, line, n);
		return;
	}
	if (b->len + (size_t)n + 13 > sizeof b->buf)
		evapi__access_flush(app);
	if (b->len == 0)
		evtimer_add(b->timer, &delay);
	memcpy(b->buf + b->len, "evapi info: ", 12);
	memcpy(b->buf + b->len + 12, line, (size_t)n);
	b->buf[b->len + 12 + (size_t)n] = '\n';
	b->len += 13 + (size_t)n;
}

void evapi__log(const evapi_app *app, evapi_log_level lvl, const char *fmt,
                ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (app && (int)lvl > (int)app->cfg.log_level)
		return;
	va_start(ap, fmt);
	n = format(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n >= 0)
		emit(app, lvl, line, n);
}
