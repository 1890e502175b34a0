/*
 * error_reply.c: the shape of error replies. Every error body evapi
 * sends (evapi_reply_error and evapi_reply_error_json, so 404, 405, 413,
 * 415, 422, 500, 502, 503, 504 and the application's own; the request
 * deadline's 504 and the shutdown's 503; the request guard's 400, 408,
 * 413, 414, 431, 501, 505) is built here, by the application's handler
 * for that status (evapi_app_error_handler) when it has one, else as
 * FastAPI's {"detail": ...}. Also the "route failed" reply,
 * evapi_reply_failed. And the filling of an evapi_error, shared by the
 * config checks (app.c, env.c).
 *
 * Threads: handlers are registered before the run and only read after,
 * so the lookup takes no lock. A body is built on the thread that
 * replies: the loop, or a pool worker for a pool handler's own replies;
 * handlers must be thread-safe.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int evapi__error_set(evapi_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	if (err) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return code;
}

struct evapi__errh {
	int status; /* 0: every error status without its own */
	evapi_error_handler_cb cb;
	void *arg;
};

int evapi_app_error_handler(evapi_app *app, int status,
                            evapi_error_handler_cb cb, void *arg)
{
	struct evapi__errh *h;
	int i;

	if (!app || (status != 0 && (status < 400 || status > 599)))
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	for (i = 0; i < app->nerrh; i++)
		if (app->errh[i].status == status)
			break;
	if (i == app->nerrh) {
		if (!cb)
			return 0;
		h = realloc(app->errh, (size_t)(app->nerrh + 1) * sizeof *h);
		if (!h)
			return EVAPI_ENOMEM;
		app->errh = h;
		app->nerrh++;
	}
	if (!cb) { /* removes it */
		app->errh[i] = app->errh[--app->nerrh];
		return 0;
	}
	app->errh[i].status = status;
	app->errh[i].cb = cb;
	app->errh[i].arg = arg;
	return 0;
}

void evapi__error_handlers_free(evapi_app *app)
{
	free(app->errh);
	app->errh = NULL;
	app->nerrh = 0;
}

json_t *evapi__error_body(evapi_app *app, evapi_req *req, int status,
                          json_t *detail)
{
	const struct evapi__errh *h = NULL;
	json_t *body = NULL;
	int i;

	for (i = 0; app && i < app->nerrh; i++)
		if (app->errh[i].status == status || (!h && !app->errh[i].status))
			h = &app->errh[i];
	if (h)
		body = h->cb(req, status, detail, h->arg);
	if (!body)
		body = json_pack("{s:O}", "detail", detail);
	json_decref(detail);
	return body;
}

char *evapi__error_dump(evapi_app *app, evapi_req *req, int status,
                        const char *detail, size_t *len)
{
	json_t *d = json_string(detail), *body;
	char *s;

	if (!d)
		d = json_string("error"); /* not UTF-8 */
	body = evapi__error_body(app, req, status, d);
	s = body ? evapi__json_dump(body, len) : NULL;
	json_decref(body);
	return s;
}

/* ---- a route that failed -------------------------------------------------- */

static int failed_status(int code)
{
	switch (code) {
	case EVAPI_EBUSY:
	case EVAPI_EUNAVAIL:
		return 503;
	case EVAPI_ETIMEDOUT:
		return 504;
	default:
		return 500;
	}
}

int evapi_reply_failed(evapi_req *req, int code, const char *what)
{
	int status = failed_status(code);

	if (!req)
		return EVAPI_EINVAL;
	evapi__log(req->app, EVAPI_LOG_ERROR, "%s: %s failed: %s (%d): %d id=%llu",
	           req->route ? req->route->label : "-", what ? what : "handler",
	           evapi_strerror(code), code, status, req->id);
	if (status == 503)
		evapi_reply_add_header(req, "Retry-After", "1");
	return evapi_reply_error(req, status, evapi__reason(status));
}
