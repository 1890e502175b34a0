/*
 * log.c: formats log lines and hands them to the configured sink.
 *
 * Any thread may log. The default sink writes each line with one write(2)
 * so lines from different threads never interleave; there is no static
 * state, so there is nothing to race on.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const char *level_name[] = {"error", "warn", "info", "debug"};

void evapi__log(const evapi_app *app, evapi_log_level lvl, const char *fmt,
                ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (app && (int)lvl > (int)app->cfg.log_level)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line)
		n = sizeof line - 1;
	if (app && app->cfg.log_cb) {
		app->cfg.log_cb(lvl, line, app->cfg.log_arg);
		return;
	}
	{
		char out[1100];
		int m = snprintf(out, sizeof out, "evapi %s: %.*s\n",
		                 level_name[lvl], n, line);
		if (m > 0) {
			ssize_t w = write(STDERR_FILENO, out,
			                  (size_t)m < sizeof out ? (size_t)m
			                                         : sizeof out - 1);
			(void)w;
		}
	}
}
