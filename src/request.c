/*
 * request.c: the request snapshot as handlers see it, and the reply
 * builders.
 *
 * Threads: a handler's thread (the loop for inline routes, a worker for
 * pool routes) calls these. Accessors only read the snapshot, which the
 * loop filled before the handler ran and never changes afterwards.
 * Replies write `req->resp` and `req->state`; from a worker that is all
 * they do, and the loop sends the reply after the pool's completion.
 * Nothing here touches libevent.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

evapi_method evapi_req_method(const evapi_req *req)
{
	return req->method;
}

const char *evapi_req_path(const evapi_req *req)
{
	return req->path;
}

const char *evapi_req_route(const evapi_req *req)
{
	return req->route ? req->route->tmpl : NULL;
}

unsigned long long evapi_req_id(const evapi_req *req)
{
	return req->id;
}

long long evapi_req_start_us(const evapi_req *req)
{
	return req ? (long long)req->start_us : 0;
}

/* The last pair named `name`: a repeated query parameter or header is
 * read as its last value, as FastAPI reads a scalar query parameter. */
static const char *kv_find(const evapi__kv *kv, int n, const char *name,
                           int nocase)
{
	int i;
	if (!name)
		return NULL;
	for (i = n - 1; i >= 0; i--)
		if ((nocase ? strcasecmp(kv[i].name, name)
		            : strcmp(kv[i].name, name)) == 0)
			return kv[i].value;
	return NULL;
}

const char *evapi_req_param(const evapi_req *req, const char *name)
{
	return kv_find(req->params, req->nparams, name, 0);
}

const char *evapi_req_query(const evapi_req *req, const char *name)
{
	return kv_find(req->query, req->nquery, name, 0);
}

const char *evapi_req_header(const evapi_req *req, const char *name)
{
	return kv_find(req->headers, req->nheaders, name, 1);
}

int evapi_parse_int(const char *text, long long *out)
{
	const char *p = text;
	char *end;
	long long v;

	if (!text)
		return EVAPI_ENOENT;
	if (*p == '+' || *p == '-')
		p++;
	if (*p < '0' || *p > '9')
		return EVAPI_EINVAL;
	for (; *p; p++)
		if (*p < '0' || *p > '9')
			return EVAPI_EINVAL;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno == ERANGE)
		return EVAPI_ERANGE;
	if (out)
		*out = v;
	return 0;
}

int evapi_req_param_int(const evapi_req *req, const char *name,
                        long long *out)
{
	return evapi_parse_int(evapi_req_param(req, name), out);
}

int evapi_req_query_int(const evapi_req *req, const char *name,
                        long long *out)
{
	return evapi_parse_int(evapi_req_query(req, name), out);
}

const char *evapi_req_body(const evapi_req *req, size_t *len)
{
	if (len)
		*len = req->body_len;
	return req->body;
}

/* Parses "a=1&b=x+y" into the snapshot. A pair with a malformed escape is
 * an error (the caller answers 400) rather than silently skipped. */
int evapi__parse_query(evapi_req *req, const char *q)
{
	const char *p;
	int n = 1, i = 0;

	req->nquery = 0;
	if (!q || !*q)
		return 0;
	for (p = q; *p; p++)
		if (*p == '&')
			n++;
	req->query = evapi__arena_alloc(&req->arena, (size_t)n * sizeof(evapi__kv));
	if (!req->query)
		return EVAPI_ENOMEM;
	for (p = q;;) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t klen = eq ? (size_t)(eq - p) : len;
		if (len > 0) {
			char *k = evapi__arena_alloc(&req->arena, klen + 1);
			char *v = evapi__arena_alloc(&req->arena, len - klen + 1);
			if (!k || !v)
				return EVAPI_ENOMEM;
			if (evapi__pct_decode(p, klen, k, 1) < 0)
				return EVAPI_EINVAL;
			if (eq) {
				if (evapi__pct_decode(eq + 1, len - klen - 1, v, 1) < 0)
					return EVAPI_EINVAL;
			} else {
				v[0] = '\0';
			}
			req->query[i].name = k;
			req->query[i].value = v;
			i++;
		}
		if (!amp)
			break;
		p = amp + 1;
	}
	req->nquery = i;
	return 0;
}

/* ---- replies ---------------------------------------------------------- */

int evapi__req_can_wait(const evapi_req *req)
{
	if (!req)
		return EVAPI_EINVAL;
	if (!evapi__on_loop(req->app))
		return EVAPI_ETHREAD;
	/* A before hook's caller goes on routing as soon as it returns:
	 * work that finished later would have no request to continue. */
	if (req->in_before)
		return EVAPI_ESTATE;
	if (req->gone || req->cleaning)
		return EVAPI_EGONE;
	return 0;
}

int evapi__reply_check(evapi_req *req)
{
	/* Only the handler's own thread may reply: a run_in_pool work
	 * function must hand its result to the continuation instead. */
	if (!req->on_worker && !evapi__on_loop(req->app))
		return EVAPI_ETHREAD;
	if (req->cleaning)
		return EVAPI_EGONE;
	if (req->state != EVAPI__REQ_RUNNING)
		return req->state == EVAPI__REQ_GONE ? EVAPI_EGONE : EVAPI_EALREADY;
	return 0;
}

void evapi__resp_clear(evapi__resp *resp)
{
	evapi__header *h = resp->headers, *n;
	for (; h; h = n) {
		n = h->next;
		free(h);
	}
	free(resp->body);
	evapi__files_body_free(resp->file);
	memset(resp, 0, sizeof *resp);
}

static int has_ctl(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return 1;
	return 0;
}

/* 0, or EVAPI_EINVAL for a header evapi must not send; *nl receives
 * the name's length. */
static int header_check(const char *name, const char *value, size_t *nl)
{
	if (!name || !value || !*name || has_ctl(name) || has_ctl(value) ||
	    strchr(name, ':') || strchr(name, ' '))
		return EVAPI_EINVAL;
	*nl = strlen(name);
	/* Message framing is evapi's: a wrong length would make the client
	 * read the rest of the body as the next response. By length
	 * first: most names are neither. */
	if ((*nl == 14 && strcasecmp(name, "Content-Length") == 0) ||
	    (*nl == 17 && strcasecmp(name, "Transfer-Encoding") == 0))
		return EVAPI_EINVAL;
	return 0;
}

/* A checked header, appended. */
static int header_add(evapi__resp *resp, const char *name, size_t nl,
                      const char *value)
{
	evapi__header *h;
	size_t vl;

	vl = strlen(value);
	/* One allocation holds the node and both strings. */
	h = malloc(sizeof *h + nl + vl + 2);
	if (!h)
		return EVAPI_ENOMEM;
	h->name = (char *)(h + 1);
	h->value = h->name + nl + 1;
	memcpy(h->name, name, nl + 1);
	memcpy(h->value, value, vl + 1);
	h->next = NULL;
	if (resp->headers_tail)
		resp->headers_tail->next = h;
	else
		resp->headers = h;
	resp->headers_tail = h;
	return 0;
}

int evapi_reply_add_header(evapi_req *req, const char *name,
                           const char *value)
{
	size_t nl;
	int rc;

	if (!req)
		return EVAPI_EINVAL;
	/* In a middleware's after hook: the reply being sent. */
	if (req->after_resp && evapi__on_loop(req->app))
		return evapi__resp_add_header(req->after_resp, name, value);
	if ((rc = header_check(name, value, &nl)) != 0)
		return rc;
	if ((rc = evapi__reply_check(req)) != 0)
		return rc;
	return header_add(&req->resp, name, nl, value);
}

int evapi_response_add_header(evapi_req *req, const char *name,
                              const char *value)
{
	return evapi_reply_add_header(req, name, value);
}

int evapi__resp_add_header(evapi__resp *resp, const char *name,
                           const char *value)
{
	size_t nl;
	int rc = header_check(name, value, &nl);

	if (rc != 0 || !resp)
		return rc; /* without resp: just checking */
	return header_add(resp, name, nl, value);
}

/* Takes ownership of `body` (malloc'd) in every case. */
static int reply_take(evapi_req *req, int status, const char *ctype,
                      char *body, size_t len)
{
	int rc;
	/* 1xx are interim responses, not replies. */
	if (!req || status < 200 || status > 999) {
		free(body);
		return EVAPI_EINVAL;
	}
	if ((rc = evapi__reply_check(req)) != 0) {
		free(body);
		return rc;
	}
	if (status == 204 || status == 304) {
		/* These never carry a body (RFC 9110 6.4.1). */
		free(body);
		body = NULL;
		len = 0;
		ctype = NULL;
	}
	req->resp.status = status;
	req->resp.content_type = ctype;
	req->resp.body = body;
	req->resp.len = len;
	req->state = EVAPI__REQ_REPLIED;
	/* A pool handler's reply is sent by the loop when the job completes;
	 * on_worker was set by the loop before the job was queued. */
	if (!req->on_worker)
		evapi__req_send(req);
	return 0;
}

/* A NULL JSON value where a reply was meant: almost always a json_pack
 * that failed (a wrong format, a NULL string). Say so, and answer. */
static int null_json(evapi_req *req, const char *fn)
{
	if (!req)
		return EVAPI_EINVAL;
	if (req->route)
		evapi__log(req->app, EVAPI_LOG_ERROR,
		           "%s: NULL JSON (a failed json_pack?) on %s: 500 "
		           "id=%llu", fn, req->route->label, req->id);
	else
		evapi__log(req->app, EVAPI_LOG_ERROR,
		           "%s: NULL JSON (a failed json_pack?) on %s %s: 500 "
		           "id=%llu", fn, evapi_method_name(req->method),
		           req->path ? req->path : "-", req->id);
	evapi_reply_error(req, 500, "Internal Server Error");
	return EVAPI_EINVAL;
}

int evapi_reply_json(evapi_req *req, int status, json_t *body)
{
	char *s;
	size_t n = 0;

	if (!body)
		return null_json(req, "evapi_reply_json");
	s = evapi__json_dump(body, &n);
	json_decref(body);
	if (!s)
		return EVAPI_ENOMEM;
	return reply_take(req, status, "application/json", s, n);
}

int evapi_reply_bytes(evapi_req *req, int status, const char *content_type,
                      const void *data, size_t len)
{
	/* One block: the body, then the content type, which lives as long
	 * as the body does (it is sent with the headers, before the body
	 * leaves the reply); no header node per reply. */
	size_t cl = content_type ? strlen(content_type) + 1 : 0;
	char *copy;

	if (content_type && has_ctl(content_type))
		return EVAPI_EINVAL;
	if (!(copy = malloc(len + cl + 1)))
		return EVAPI_ENOMEM;
	if (len)
		memcpy(copy, data, len);
	if (cl)
		memcpy(copy + len, content_type, cl);
	return reply_take(req, status, cl ? copy + len : NULL, copy, len);
}

int evapi_reply_text(evapi_req *req, int status, const char *text)
{
	char *copy = strdup(text ? text : "");
	if (!copy)
		return EVAPI_ENOMEM;
	return reply_take(req, status, "text/plain; charset=utf-8", copy,
	                  strlen(copy));
}

int evapi_reply_error_json(evapi_req *req, int status, json_t *detail)
{
	json_t *body;
	if (!detail)
		return null_json(req, "evapi_reply_error_json");
	/* the app's shape for this status, or {"detail": ...} */
	if (!(body = evapi__error_body(req ? req->app : NULL, req, status,
	                               detail)))
		return EVAPI_ENOMEM;
	return evapi_reply_json(req, status, body);
}

int evapi_reply_error(evapi_req *req, int status, const char *detail)
{
	json_t *d = json_string(detail ? detail : evapi__reason(status));
	if (!d) /* not UTF-8 */
		d = json_string("error");
	return evapi_reply_error_json(req, status, d);
}

static json_t *str_or_null(const char *s)
{
	json_t *j = s ? json_string(s) : NULL;
	return j ? j : json_null();
}

int evapi_reply_validation_error(evapi_req *req, const char *type,
                                 const char *where, const char *name,
                                 const char *msg, const char *input)
{
	json_t *item = json_pack("{s:s, s:[s,s], s:s, s:o}",
	                         "type", type ? type : "value_error",
	                         "loc", where ? where : "body",
	                         name ? name : "", "msg", msg ? msg : "",
	                         "input", str_or_null(input));
	if (!item)
		return EVAPI_EINVAL;
	return evapi_reply_error_json(req, 422, json_pack("[o]", item));
}

/* Offset of the first bracket nested deeper than `max`, or -1. jansson
 * recurses per level up to its own compile-time bound (2048); the
 * configured limit is checked before it parses anything. */
static long too_deep(const char *s, size_t len, int max)
{
	size_t i;
	int depth = 0, in_str = 0;

	for (i = 0; i < len; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == '"') {
			in_str = 1;
		} else if (c == '[' || c == '{') {
			if (++depth > max)
				return (long)i;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return -1;
}

int evapi_req_json(evapi_req *req, json_t **out)
{
	json_error_t err;
	json_t *detail;
	long deep;

	if (!req || !out)
		return EVAPI_EINVAL;
	if (!req->json) {
		deep = too_deep(req->body, req->body_len,
		                req->app->cfg.max_json_depth);
		if (deep >= 0) {
			snprintf(err.text, sizeof err.text,
			         "nesting deeper than %d levels",
			         req->app->cfg.max_json_depth);
			err.position = (int)deep;
		} else {
			req->json = json_loadb(req->body, req->body_len,
			                       JSON_DECODE_ANY, &err);
		}
		if (!req->json) {
			/* FastAPI's shape: loc is ["body", <char offset>]. */
			detail = json_pack("[{s:s, s:[s,I], s:s, s:{}, s:{s:s}}]",
			                   "type", "json_invalid", "loc", "body",
			                   (json_int_t)err.position, "msg",
			                   "JSON decode error", "input", "ctx",
			                   "error", err.text);
			if (detail)
				evapi_reply_error_json(req, 422, detail);
			else
				evapi_reply_error(req, 422, "JSON decode error");
			*out = NULL;
			return EVAPI_EJSON;
		}
	}
	*out = req->json;
	return 0;
}
