/*
 * ws.c: WebSocket routes and sessions: the handshake checks, the 101,
 * the session's frames in and out, idle pings, the slow-reader bound,
 * shutdown, and pool offload from a session.
 *
 * Threads: loop thread only; a pool job's `work` runs on a worker and
 * touches no session.
 *
 * Who owns what: the guard (guard.c) owns the connection and its bytes.
 * It calls evapi__ws_handshake on a request for a WebSocket route, then
 * evapi__ws_start once every earlier response on the connection is out,
 * then evapi__ws_input with every byte read, and evapi__ws_conn_gone when
 * the connection is freed. This file writes through the guard
 * (evapi__guard_ws_send) and asks it to end the connection
 * (evapi__guard_ws_end: after the queued bytes, with a linger).
 *
 * Lifetime: `refs` counts the connection (dropped in evapi__ws_conn_gone
 * or when cut) and each pool job. on_close runs once, when the
 * connection goes; the memory goes with the last reference.
 *
 * Shutdown: an open session is pending work on the app (app->pending,
 * since it outlives its upgrade request). Its drain hook sends 1001 Going
 * Away when the app starts draining (the connection closes after the
 * close handshake or the linger), and the drain waits for it within the
 * grace period; its cancel, at the shutdown cut, sends 1001 and closes
 * the connection now. The reactor names no session.
 *
 * Every user callback (on_open, on_message, on_close, a pool job's done)
 * runs inside evapi__user_begin/end, so the stall watchdog names it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "guard/guard.h"
#include "ws_frame.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define DEFAULT_PING_MS 20000
#define DEFAULT_QUEUED (1024 * 1024)
#define MAX_HEADERS 100

typedef struct ws_route {
	evapi_ws_opts opts;
	evapi_ws_open_cb on_open;
	evapi_ws_message_cb on_message;
	evapi_ws_close_cb on_close;
	void *arg;
} ws_route;

struct evapi__ws_app {
	evapi__router *router;
	unsigned long long next_id;
};

enum { S_OPENING = 0, S_OPEN, S_CLOSING, S_DONE };

struct evapi_ws {
	evapi_app *app;
	ws_route *route;
	evapi__gconn *conn; /* NULL once the connection is gone */
	evapi__pending pend; /* on app->pending while accepted and open */
	int refs;
	int state;
	int in_open;     /* on_open is running */
	int accepted;    /* the 101 is out */
	int close_sent;  /* our close frame's code, once sent */
	int peer_code;   /* the peer's close code, once received */
	int peer_first;  /* the peer closed first (we echoed) */
	char peer_reason[EVAPI__WS_MAX_CONTROL];
	char sent_reason[EVAPI__WS_MAX_CONTROL];
	evapi__ws_parser *parser;
	struct event *ping_ev;
	int awaiting_pong;
	int64_t last_rx_us;
	unsigned long long id;
	void *data;
	const char *subprotocol; /* the route's, or `proto` */
	char proto[64];
	const char *path;        /* in `block` */
	char *head;              /* in `block`: the head's copy, split */
	char accept_key[32];
	int nheaders, nparams;
	evapi__kv *headers;         /* in `block`: as many as the head has */
	evapi__kv params[EVAPI__MAX_PARAMS];
	struct evapi__ws_sub *subs; /* channel.c */
	/* one allocation: the headers' index, then copies of the head and
	 * of the decoded params. Sized to the head, not to the largest head
	 * allowed: 10 000 idle sessions are 10 000 of these. */
	char *block;
};

typedef struct ws_job {
	evapi__job job;
	evapi_ws *ws;
	evapi_work_cb work;
	evapi_ws_done_cb done;
	void *arg;
} ws_job;

static void ws_unref(evapi_ws *s)
{
	if (--s->refs > 0)
		return;
	evapi__ws_parser_free(s->parser);
	if (s->ping_ev)
		event_free(s->ping_ev);
	free(s->block);
	free(s);
}

/* ---- registration ---------------------------------------------------------- */

static void noop_handler(evapi_req *req, void *arg)
{
}

int evapi_app_websocket(evapi_app *app, const char *path,
                        const evapi_ws_opts *opts, evapi_ws_open_cb on_open,
                        evapi_ws_message_cb on_message,
                        evapi_ws_close_cb on_close, void *arg)
{
	struct evapi__ws_app *w;
	ws_route *rt;
	evapi__match m;
	char *scratch;
	int rc;

	if (!app || !path || path[0] != '/')
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	if (!app->ws) {
		w = calloc(1, sizeof *w);
		if (!w || !(w->router = evapi__router_new())) {
			free(w);
			return EVAPI_ENOMEM;
		}
		app->ws = w;
	}
	w = app->ws;
	scratch = malloc(strlen(path) + 1);
	if (!scratch)
		return EVAPI_ENOMEM;
	rc = evapi__router_match(w->router, EVAPI_GET, path, scratch, &m);
	free(scratch);
	if (rc == EVAPI__MATCH_OK && strcmp(m.route->tmpl, path) == 0)
		return EVAPI_EEXIST;
	rt = calloc(1, sizeof *rt);
	if (!rt)
		return EVAPI_ENOMEM;
	if (opts)
		rt->opts = *opts;
	rt->on_open = on_open;
	rt->on_message = on_message;
	rt->on_close = on_close;
	rt->arg = arg;
	rc = evapi__router_add(w->router, EVAPI_GET, path, EVAPI_INLINE,
	                       noop_handler, rt);
	if (rc) {
		free(rt);
		return rc;
	}
	return 0;
}

void evapi__ws_free(evapi_app *app)
{
	struct evapi__ws_app *w = app->ws;
	size_t i;

	if (!w)
		return;
	for (i = 0; i < evapi__router_count(w->router); i++)
		free(evapi__router_at(w->router, i)->arg);
	evapi__router_free(w->router);
	free(w);
	app->ws = NULL;
}

/* ---- the handshake --------------------------------------------------------- */

int evapi__ws_is_route(evapi_app *app, const char *target)
{
	size_t n;
	char buf[512], *path, *scratch;
	evapi__match m;
	int rc = EVAPI__MATCH_NOT_FOUND;

	/* asked for every request the guard frames: an app without
	 * WebSocket routes answers at once */
	if (!app->ws)
		return 0;
	n = strcspn(target, "?");
	path = n < sizeof buf ? buf : malloc(n + 1);
	scratch = n < sizeof buf / 2 ? buf + n + 1 : malloc(n + 1);
	if (path && scratch) {
		memcpy(path, target, n);
		path[n] = 0;
		rc = evapi__router_match(app->ws->router, EVAPI_GET, path,
		                         scratch, &m);
	}
	if (path != buf)
		free(path);
	if (scratch != buf + n + 1)
		free(scratch);
	return rc == EVAPI__MATCH_OK;
}

/* 1 when the comma-separated list `v` has `tok` (case-insensitive). */
static int has_token(const char *v, const char *tok)
{
	size_t tl = strlen(tok);
	while (v && *v) {
		size_t n;
		v += strspn(v, " \t,");
		n = strcspn(v, ",");
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(v, tok, tl) == 0)
			return 1;
		v += strcspn(v, ",");
	}
	return 0;
}

static const char *header_in(evapi__kv *h, int n, const char *name,
                             int *count)
{
	const char *first = NULL;
	int i;
	*count = 0;
	for (i = 0; i < n; i++)
		if (strcasecmp(h[i].name, name) == 0) {
			if (!first)
				first = h[i].value;
			(*count)++;
		}
	return first;
}

/* A Sec-WebSocket-Key is the base64 of 16 bytes: 22 characters and
 * "==". */
static int key_ok(const char *k)
{
	unsigned char out[32];
	if (!k || strlen(k) != 24 || k[22] != '=' || k[23] != '=')
		return 0;
	return EVP_DecodeBlock(out, (const unsigned char *)k, 24) == 18;
}

static void accept_value(const char *key, char *out)
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char buf[64];
	snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)buf, strlen(buf), md);
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/* 1 when the client offered `proto` in any Sec-WebSocket-Protocol line. */
static int offered(const evapi_ws *s, const char *proto)
{
	int i;
	for (i = 0; i < s->nheaders; i++)
		if (strcasecmp(s->headers[i].name, "Sec-WebSocket-Protocol") ==
		            0 &&
		    has_token(s->headers[i].value, proto))
			return 1;
	return 0;
}

/* Splits the re-framed head (request line, "Name: value" lines) into the
 * session's own copy. */
static int split_head(evapi_ws *s, const char *head, size_t hl,
                      const char **method, const char **target,
                      const char **version)
{
	char *line, *end;
	size_t lines = 0, at, i;

	for (i = 0; i + 1 < hl; i++)
		lines += head[i] == '\r' && head[i + 1] == '\n';
	if (lines > MAX_HEADERS)
		lines = MAX_HEADERS;
	at = lines * sizeof(evapi__kv);
	s->block = malloc(at + hl + 1 + hl + 1);
	if (!s->block)
		return -1;
	s->headers = (evapi__kv *)s->block;
	s->head = s->block + at;
	memcpy(s->head, head, hl);
	s->head[hl] = 0;
	line = s->head;
	end = strstr(line, "\r\n");
	if (!end)
		return -1;
	*end = 0;
	*method = line;
	*target = strchr(line, ' ');
	if (!*target)
		return -1;
	*(char *)(*target)++ = 0;
	*version = strchr(*target, ' ');
	if (!*version)
		return -1;
	*(char *)(*version)++ = 0;
	for (line = end + 2; *line && strncmp(line, "\r\n", 2) != 0;
	     line = end + 2) {
		char *colon;
		end = strstr(line, "\r\n");
		if (!end)
			break;
		*end = 0;
		colon = strstr(line, ": ");
		if (!colon || (size_t)s->nheaders >= lines)
			continue;
		*colon = 0;
		s->headers[s->nheaders].name = line;
		s->headers[s->nheaders++].value = colon + 2;
	}
	return 0;
}

int evapi__ws_handshake(evapi_app *app, evapi__gconn *conn, const char *head,
                        size_t hl, const char *upgrade,
                        const char *connection, evapi_ws **out,
                        const char **detail, const char **extra)
{
	struct evapi__ws_app *w = app->ws;
	const char *method, *target, *version, *v;
	char *scratch, *q;
	evapi__match m;
	evapi_ws *s;
	ws_route *rt;
	int rc, n, i, status = 400;

	*out = NULL;
	*extra = NULL;
	if (!w)
		return 0;
	s = calloc(1, sizeof *s);
	if (!s) {
		*detail = "Out of memory";
		return 500;
	}
	if (split_head(s, head, hl, &method, &target, &version) < 0) {
		s->refs = 1;
		ws_unref(s);
		*detail = "Out of memory";
		return 500;
	}
	/* the path and the decoded params live after the head's copy */
	scratch = s->head + hl + 1;
	q = strchr(target, '?');
	if (q)
		*q = 0;
	rc = evapi__router_match(w->router, EVAPI_GET, target, scratch, &m);
	if (rc == EVAPI__MATCH_NOT_FOUND || rc == EVAPI__MATCH_BAD_PATH) {
		s->refs = 1;
		ws_unref(s);
		return 0; /* not ours: served as plain HTTP */
	}
	s->refs = 1;
	s->path = target;
	*detail = NULL;
	if (strcmp(method, "GET") != 0) {
		*detail = "A WebSocket handshake is a GET request";
		*extra = "Allow: GET\r\n";
		status = 405;
		goto refuse;
	}
	rt = m.route->arg;
	s->route = rt;
	s->app = app;
	s->conn = conn;
	for (i = 0; i < m.nparams; i++)
		s->params[i] = m.params[i];
	s->nparams = m.nparams;
	if (strcmp(version, "HTTP/1.1") != 0)
		*detail = "A WebSocket handshake needs HTTP/1.1";
	else if (!has_token(upgrade, "websocket"))
		*detail = "Missing Upgrade: websocket";
	else if (!has_token(connection, "upgrade"))
		*detail = "Missing Connection: upgrade";
	if (*detail)
		goto refuse;
	v = header_in(s->headers, s->nheaders, "Sec-WebSocket-Version", &n);
	if (n != 1 || strcmp(v, "13") != 0) {
		*detail = "Unsupported WebSocket version: use 13";
		*extra = "Sec-WebSocket-Version: 13\r\n";
		status = 426;
		goto refuse;
	}
	v = header_in(s->headers, s->nheaders, "Sec-WebSocket-Key", &n);
	if (n != 1 || !key_ok(v)) {
		*detail = "Sec-WebSocket-Key must be the base64 of 16 bytes";
		goto refuse;
	}
	accept_value(v, s->accept_key);
	if (rt->opts.origins) {
		const char *const *o;
		v = header_in(s->headers, s->nheaders, "Origin", &n);
		for (o = rt->opts.origins; v && n == 1 && *o; o++)
			if (strcasecmp(*o, v) == 0)
				break;
		if (!v || n != 1 || !*o) {
			*detail = "Origin not allowed";
			status = 403;
			goto refuse;
		}
	}
	if (app->stopping) {
		*detail = "Server shutting down";
		status = 503;
		goto refuse;
	}
	if (rt->opts.subprotocols) {
		const char *const *p;
		for (p = rt->opts.subprotocols; *p; p++)
			if (offered(s, *p)) {
				s->subprotocol = *p;
				break;
			}
	}
	s->parser = evapi__ws_parser_new(1, rt->opts.max_message);
	if (!s->parser) {
		*detail = "Out of memory";
		status = 500;
		goto refuse;
	}
	s->id = ++w->next_id;
	*out = s;
	return 1;
refuse:
	ws_unref(s);
	return status;
}

/* ---- sending --------------------------------------------------------------- */

static size_t max_queued(const evapi_ws *s)
{
	return s->route->opts.max_queued ? s->route->opts.max_queued
	                                 : DEFAULT_QUEUED;
}

static int send_frame(evapi_ws *s, int opcode, const void *data, size_t len)
{
	uint8_t h[EVAPI__WS_MAX_HEADER];
	size_t hn = evapi__ws_header(h, 1, opcode, len, NULL);
	if (!s->conn)
		return EVAPI_EGONE;
	return evapi__guard_ws_send(s->conn, h, hn, data, len) ? EVAPI_EGONE
	                                                      : 0;
}

/* Sends our close frame (once) and lets the guard end the connection
 * after it. Nothing is sent after a close frame (RFC 6455 5.5.1). */
static void close_with(evapi_ws *s, int code, const char *reason)
{
	uint8_t pl[EVAPI__WS_MAX_CONTROL];
	size_t n;

	if (s->close_sent || !s->conn)
		return;
	n = evapi__ws_close_payload(pl, code == EVAPI__WS_NO_STATUS ? 0 : code,
	                            reason);
	s->close_sent = code;
	snprintf(s->sent_reason, sizeof s->sent_reason, "%.*s",
	         n > 2 ? (int)(n - 2) : 0, (const char *)pl + 2);
	send_frame(s, EVAPI__WS_CLOSE, pl, n);
	s->state = S_CLOSING;
	if (s->ping_ev)
		event_del(s->ping_ev);
	evapi__guard_ws_end(s->conn);
}

/* The slow-reader bound, for every frame we queue (messages and pongs
 * alike: a peer that pings without reading would otherwise grow its
 * queue without end). 1 when `len` more bytes fit; past the bound the
 * route's policy applies: EVAPI_WS_FULL_CLOSE closes with 1008 here,
 * EVAPI_WS_FULL_REFUSE leaves the session open for the caller. */
static int queue_room(evapi_ws *s, size_t len)
{
	if (evapi__guard_ws_queued(s->conn) + len <= max_queued(s))
		return 1;
	if (s->route->opts.on_full != EVAPI_WS_FULL_REFUSE) {
		evapi__log(s->app, EVAPI_LOG_INFO,
		           "websocket %s id=%llu: peer reads too slowly: "
		           "closing 1008", s->path, s->id);
		close_with(s, EVAPI__WS_POLICY, "Peer reads too slowly");
	}
	return 0;
}

/* 0 when a message of `len` bytes may go out now (accepting first from
 * inside on_open), else the code to return. */
static int send_ready(evapi_ws *s, size_t len)
{
	if (!s)
		return EVAPI_EINVAL;
	if (s->state == S_OPENING && s->in_open) {
		int rc = evapi_ws_accept(s, NULL, NULL);
		if (rc)
			return rc;
	}
	if (s->state != S_OPEN || !s->conn)
		return EVAPI_EGONE;
	if (!queue_room(s, len))
		return s->state == S_OPEN ? EVAPI_EBUSY : EVAPI_EGONE;
	return 0;
}

static int send_message(evapi_ws *s, int opcode, const void *data,
                        size_t len)
{
	int rc = send_ready(s, len);
	return rc ? rc : send_frame(s, opcode, data, len);
}

static int utf8_len_ok(const char *text, size_t len)
{
	evapi__ws_utf8 u = {0, 0, 0};
	return evapi__ws_utf8_feed(&u, (const uint8_t *)text, len) == 0 &&
	       evapi__ws_utf8_done(&u);
}

static int utf8_ok(const char *text)
{
	return utf8_len_ok(text, strlen(text));
}

size_t evapi__ws_text_header(uint8_t *h, const char *text, size_t len)
{
	if (!utf8_len_ok(text, len))
		return 0;
	return evapi__ws_header(h, 1, EVAPI__WS_TEXT, len, NULL);
}

int evapi__ws_send_framed(evapi_ws *s, const uint8_t *h, size_t hn,
                          const char *text, size_t len)
{
	int rc = send_ready(s, len);
	if (rc)
		return rc;
	return evapi__guard_ws_send(s->conn, h, hn, text, len) ? EVAPI_EGONE
	                                                      : 0;
}

int evapi_ws_send_text(evapi_ws *s, const char *text)
{
	if (!text || !utf8_ok(text))
		return EVAPI_EINVAL;
	return send_message(s, EVAPI__WS_TEXT, text, strlen(text));
}

int evapi_ws_send_bytes(evapi_ws *s, const void *data, size_t len)
{
	if (!data && len)
		return EVAPI_EINVAL;
	return send_message(s, EVAPI__WS_BINARY, data, len);
}

int evapi_ws_send_json(evapi_ws *s, json_t *v)
{
	size_t n;
	char *text;
	int rc;

	if (!v)
		return EVAPI_EINVAL;
	text = evapi__json_dump(v, &n);
	json_decref(v);
	if (!text)
		return EVAPI_ENOMEM;
	rc = send_message(s, EVAPI__WS_TEXT, text, n);
	free(text);
	return rc;
}

int evapi_ws_close(evapi_ws *s, int code, const char *reason)
{
	if (!s)
		return EVAPI_EINVAL;
	/* a reason that is not UTF-8 would make the peer fail us (1007) */
	if (!evapi__ws_close_code_ok(code) || (reason && !utf8_ok(reason)))
		return EVAPI_EINVAL;
	if (s->state == S_OPENING) {
		if (!s->in_open)
			return EVAPI_ESTATE;
		/* refused before the 101: Starlette's close-before-accept */
		s->state = S_DONE;
		evapi__guard_ws_refuse(s->conn, 403, "WebSocket connection "
		                                     "refused");
		return 0;
	}
	if (s->state != S_OPEN)
		return EVAPI_EGONE;
	close_with(s, code, reason);
	return 0;
}

/* ---- accepting --------------------------------------------------------------- */

static void ping_cb(evutil_socket_t fd, short what, void *arg);
static void session_drain(evapi__pending *p);
static void session_cut(evapi__pending *p);

static int ping_interval(const evapi_ws *s)
{
	int ms = s->route->opts.ping_interval_ms;
	return ms == 0 ? DEFAULT_PING_MS : ms;
}

static void ping_arm(evapi_ws *s, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (ping_interval(s) > 0 && s->ping_ev)
		evtimer_add(s->ping_ev, &tv);
}

static int header_ok(const char *s)
{
	return s && !strpbrk(s, "\r\n") && *s;
}

int evapi_ws_accept(evapi_ws *s, const char *subprotocol,
                    const char *const *headers)
{
	char buf[1024];
	int n, i;

	if (!s)
		return EVAPI_EINVAL;
	if (s->state != S_OPENING || !s->in_open || !s->conn)
		return EVAPI_ESTATE;
	if (subprotocol) {
		if (!offered(s, subprotocol) ||
		    strlen(subprotocol) >= sizeof s->proto)
			return EVAPI_EINVAL;
		/* our own copy: the app's string may not outlive on_open */
		strcpy(s->proto, subprotocol);
		s->subprotocol = s->proto;
	}
	for (i = 0; headers && headers[i]; i += 2)
		if (!header_ok(headers[i]) || !header_ok(headers[i + 1]) ||
		    strchr(headers[i], ':'))
			return EVAPI_EINVAL;
	n = snprintf(buf, sizeof buf,
	             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
	             s->accept_key);
	if (s->subprotocol)
		n += snprintf(buf + n, sizeof buf - (size_t)n,
		              "Sec-WebSocket-Protocol: %s\r\n", s->subprotocol);
	for (i = 0; headers && headers[i] && (size_t)n < sizeof buf; i += 2)
		n += snprintf(buf + n, sizeof buf - (size_t)n, "%s: %s\r\n",
		              headers[i], headers[i + 1]);
	if ((size_t)n + 3 > sizeof buf)
		return EVAPI_EINVAL;
	memcpy(buf + n, "\r\n", 3);
	if (evapi__guard_ws_send(s->conn, buf, (size_t)n + 2, NULL, 0))
		return EVAPI_EGONE;
	s->accepted = 1;
	s->state = S_OPEN;
	s->last_rx_us = evapi__now_us();
	s->ping_ev = evtimer_new(s->app->base, ping_cb, s);
	ping_arm(s, ping_interval(s));
	evapi__pending_link(&s->app->pending, &s->pend, session_cut,
	                    "websocket");
	s->pend.drain = session_drain;
	EVAPI__ADD(&s->app->stats.websocket_open, 1);
	EVAPI__ADD(&s->app->stats.websocket_total, 1);
	return 0;
}

void evapi__ws_start(evapi_ws *s)
{
	ws_route *rt = s->route;
	if (s->state != S_OPENING)
		return;
	s->in_open = 1;
	if (rt->on_open) {
		evapi__user u;
		evapi__user_begin(s->app, &u, "websocket on_open", s->path,
		                  NULL);
		rt->on_open(s, rt->arg);
		evapi__user_end(s->app, &u);
	}
	if (s->state == S_OPENING && s->conn)
		evapi_ws_accept(s, NULL, NULL);
	s->in_open = 0;
}

/* ---- receiving ----------------------------------------------------------------- */

static void on_frame(evapi_ws *s, int ev)
{
	ws_route *rt = s->route;
	const uint8_t *d;
	const char *reason;
	size_t len;
	int op, code;

	switch (ev) {
	case EVAPI__WS_EV_MESSAGE:
		op = evapi__ws_parser_payload(s->parser, &d, &len);
		if (s->state == S_OPEN && rt->on_message) {
			evapi__user u;
			evapi__user_begin(s->app, &u, "websocket on_message",
			                  s->path, NULL);
			rt->on_message(s, op == EVAPI__WS_BINARY,
			               (const char *)d, len, rt->arg);
			evapi__user_end(s->app, &u);
		}
		break;
	case EVAPI__WS_EV_PING:
		evapi__ws_parser_payload(s->parser, &d, &len);
		/* over the bound with EVAPI_WS_FULL_REFUSE the pong is
		 * dropped: RFC 6455 5.5.3 lets an endpoint answer only the
		 * latest ping, and this peer is not reading anyway */
		if (s->state == S_OPEN && queue_room(s, len + 2))
			send_frame(s, EVAPI__WS_PONG, d, len);
		break;
	case EVAPI__WS_EV_PONG:
		s->awaiting_pong = 0;
		break;
	case EVAPI__WS_EV_CLOSE:
		code = evapi__ws_parser_close(s->parser, &reason);
		s->peer_code = code;
		s->peer_first = !s->close_sent;
		snprintf(s->peer_reason, sizeof s->peer_reason, "%s", reason);
		/* echo the code (RFC 6455 5.5.1); then both sides have closed */
		close_with(s, code, NULL);
		if (s->conn)
			evapi__guard_ws_done(s->conn);
		break;
	case EVAPI__WS_EV_ERROR:
		if (s->state != S_OPEN)
			break; /* closing already: the linger ends it */
		code = evapi__ws_parser_error(s->parser, &reason);
		evapi__log(s->app, EVAPI_LOG_INFO,
		           "websocket %s id=%llu: %s: closing %d", s->path, s->id,
		           reason, code);
		close_with(s, code, reason);
		break;
	}
}

void evapi__ws_input(evapi_ws *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t used;
	int ev;

	s->last_rx_us = evapi__now_us();
	if (s->awaiting_pong) {
		/* any byte shows the peer is there; the next ping is an
		 * interval from now, not at the pong deadline (which may be
		 * longer than the interval) */
		s->awaiting_pong = 0;
		if (s->state == S_OPEN)
			ping_arm(s, ping_interval(s));
	}
	while (len > 0 && (s->state == S_OPEN || s->state == S_CLOSING)) {
		ev = evapi__ws_parser_feed(s->parser, p, len, &used);
		p += used;
		len -= used;
		if (ev == EVAPI__WS_EV_MORE)
			break;
		/* more frames in this read: their answers go out together
		 * (one frame alone is answered at once, without the copy) */
		if (len > 0 && s->conn)
			evapi__guard_ws_cork(s->conn);
		on_frame(s, ev);
		if (ev == EVAPI__WS_EV_CLOSE || ev == EVAPI__WS_EV_ERROR)
			break; /* the parser reads nothing after these */
	}
}

/* Idle pings: a session that received nothing for an interval gets a
 * ping; one that then stays silent past the timeout is closed 1011. */
static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
	evapi_ws *s = arg;
	int interval = ping_interval(s);
	int timeout = s->route->opts.ping_timeout_ms ? s->route->opts.ping_timeout_ms
	                                             : DEFAULT_PING_MS;
	int64_t idle_ms = (evapi__now_us() - s->last_rx_us) / 1000;

	if (s->state != S_OPEN)
		return;
	if (s->awaiting_pong) {
		evapi__log(s->app, EVAPI_LOG_INFO,
		           "websocket %s id=%llu: no pong in %d ms: closing 1011",
		           s->path, s->id, timeout);
		close_with(s, EVAPI__WS_INTERNAL, "Ping timeout");
		return;
	}
	if (idle_ms < interval) {
		ping_arm(s, interval - (int)idle_ms);
		return;
	}
	s->awaiting_pong = 1;
	send_frame(s, EVAPI__WS_PING, "evapi", 5);
	ping_arm(s, timeout);
}

/* ---- the end ------------------------------------------------------------------- */

void evapi__ws_conn_gone(evapi_ws *s)
{
	ws_route *rt = s->route;
	int code;
	const char *reason = "";

	s->conn = NULL;
	if (s->accepted && s->state != S_DONE) {
		if (s->peer_code && s->peer_first) {
			code = s->peer_code;
			reason = s->peer_reason;
		} else if (s->close_sent) {
			code = s->close_sent;
			reason = s->sent_reason;
		} else {
			code = 1006; /* dropped without a close frame */
		}
		s->state = S_DONE;
		if (s->ping_ev)
			event_del(s->ping_ev);
		evapi__channels_leave_ws(s);
		evapi__pending_unlink(&s->pend);
		EVAPI__ADD(&s->app->stats.websocket_open, -1ULL);
		if (rt->on_close) {
			evapi__user u;
			evapi__user_begin(s->app, &u, "websocket on_close",
			                  s->path, NULL);
			rt->on_close(s, code, reason, rt->arg);
			evapi__user_end(s->app, &u);
		}
		evapi__reactor_maybe_exit(s->app);
	}
	s->state = S_DONE;
	ws_unref(s);
}

/* The one place a session is told the server is going away. */
static void session_going_away(evapi_ws *s)
{
	close_with(s, EVAPI__WS_GOING_AWAY, "Server shutting down");
}

/* The app starts draining: 1001, then the close handshake (or the
 * linger) ends the connection; the drain waits for that. */
static void session_drain(evapi__pending *p)
{
	evapi_ws *s = EVAPI__CONTAINER_OF(p, evapi_ws, pend);
	if (s->state == S_OPEN)
		session_going_away(s);
}

/* The shutdown cut: 1001, and the connection closes now. */
static void session_cut(evapi__pending *p)
{
	evapi_ws *s = EVAPI__CONTAINER_OF(p, evapi_ws, pend);
	evapi__gconn *c = s->conn;

	session_going_away(s);
	if (c)
		evapi__guard_ws_detach(c);
	evapi__ws_conn_gone(s); /* unlinks it */
	if (c)
		evapi__guard_ws_cut(c);
}

/* ---- pool offload -------------------------------------------------------------- */

static void job_work(evapi__job *job)
{
	ws_job *j = (ws_job *)job;
	j->work(j->arg);
}

static void job_done(evapi__job *job, int status)
{
	ws_job *j = (ws_job *)job;
	evapi_ws *s = j->ws;
	evapi__user u;

	if (status == 0 && s->state != S_OPEN)
		status = EVAPI_ECANCELED;
	evapi__user_begin(s->app, &u, "websocket pool callback", s->path,
	                  NULL);
	j->done(s, status, j->arg);
	evapi__user_end(s->app, &u);
	ws_unref(s);
	free(j);
}

int evapi_ws_run_in_pool(evapi_ws *s, evapi_work_cb work,
                         evapi_ws_done_cb done, void *arg)
{
	ws_job *j;
	int rc;

	if (!s || !work || !done)
		return EVAPI_EINVAL;
	if (s->state != S_OPEN)
		return EVAPI_EGONE;
	j = calloc(1, sizeof *j);
	if (!j)
		return EVAPI_ENOMEM;
	j->ws = s;
	j->work = work;
	j->done = done;
	j->arg = arg;
	j->job.work = job_work;
	j->job.done = job_done;
	if ((rc = evapi__pool_submit(s->app->pool, &j->job)) != 0) {
		free(j);
		return rc;
	}
	s->refs++;
	return 0;
}

/* ---- accessors ------------------------------------------------------------------ */

static const char *kv_find(const evapi__kv *kv, int n, const char *name)
{
	int i;
	for (i = 0; name && i < n; i++)
		if (strcasecmp(kv[i].name, name) == 0)
			return kv[i].value;
	return NULL;
}

const char *evapi_ws_param(const evapi_ws *s, const char *name)
{
	return s ? kv_find(s->params, s->nparams, name) : NULL;
}

const char *evapi_ws_header(const evapi_ws *s, const char *name)
{
	return s ? kv_find(s->headers, s->nheaders, name) : NULL;
}

const char *evapi_ws_path(const evapi_ws *s)
{
	return s ? s->path : NULL;
}

const char *evapi_ws_subprotocol(const evapi_ws *s)
{
	return s ? s->subprotocol : NULL;
}

void evapi_ws_set_data(evapi_ws *s, void *data)
{
	if (s)
		s->data = data;
}

void *evapi_ws_data(const evapi_ws *s)
{
	return s ? s->data : NULL;
}

evapi_app *evapi_ws_app(const evapi_ws *s)
{
	return s ? s->app : NULL;
}

size_t evapi_ws_buffered(const evapi_ws *s)
{
	return s && s->conn ? evapi__guard_ws_queued(s->conn) : 0;
}

struct evapi__ws_sub **evapi__ws_subs(evapi_ws *s)
{
	return &s->subs;
}

int evapi__ws_is_open(const evapi_ws *s)
{
	return s->state == S_OPEN;
}
