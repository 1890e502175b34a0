/*
 * testing.c: the test client of evapi/testing.h: an app run on a thread
 * of its own, one-call requests, and readers for streamed replies.
 *
 * WebSocket sessions are in testing_ws.c.
 *
 * Threads: evapi_test_start runs evapi_app_run on a new thread (the loop
 * thread); everything else here runs on the test's threads and reaches
 * the app only through loopback sockets, evapi_app_stop and
 * evapi_app_stats. A one-call request is evapi_fetch_sync (the calling
 * thread's own easy handle); a stream owns an easy handle and a multi
 * handle of its own, driven by its reader with curl_multi_poll, so no
 * curl handle is shared with the loop or another test thread.
 *
 * Startup: a startup hook registered after the app's own ones signals
 * that they all succeeded; the listening socket is bound before the
 * thread starts, so a request sent right after evapi_test_start waits in
 * the backlog until the loop serves, never gets a refusal.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <evapi/testing.h>

#include "client/fetch.h"

struct evapi_test {
	evapi_app *app;
	pthread_t thread;
	int port;
	int timeout_ms;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int started; /* under mu: the last startup hook ran */
	int ended;   /* under mu: evapi_app_run returned */
	int run_rc;  /* written by the thread before `ended` */
};

struct evapi_test_response {
	evapi_fetch_res *res;
	json_t *json;
	int json_tried;
};

/* ---- the app --------------------------------------------------------- */

static void set_flag(evapi_test *tc, int *flag)
{
	pthread_mutex_lock(&tc->mu);
	*flag = 1;
	pthread_cond_broadcast(&tc->cond);
	pthread_mutex_unlock(&tc->mu);
}

static int mark_started(evapi_app *app, void *arg)
{
	set_flag(arg, &((evapi_test *)arg)->started);
	return 0;
}

static void *run_app(void *arg)
{
	evapi_test *tc = arg;
	tc->run_rc = evapi_app_run(tc->app);
	set_flag(tc, &tc->ended);
	return NULL;
}

/* Loopback, a free port, no signal handling: the app is a guest in the
 * test's process. Only before it is bound. */
static int take_test_address(evapi_app *app)
{
	char *host;

	app->cfg.handle_signals = 0;
	if (app->bound)
		return 0;
	if (!(host = strdup("127.0.0.1")))
		return EVAPI_ENOMEM;
	free(app->host);
	app->host = host;
	app->cfg.host = host;
	app->cfg.port = 0;
	return 0;
}

evapi_test *evapi_test_start(evapi_app *app)
{
	evapi_test *tc;
	int ok;

	if (!app)
		return NULL;
	if (app->running || evapi__curl_init() != 0 ||
	    !(tc = calloc(1, sizeof *tc))) {
		evapi_app_free(app);
		return NULL;
	}
	tc->app = app;
	tc->timeout_ms = EVAPI_TEST_TIMEOUT_MS;
	pthread_mutex_init(&tc->mu, NULL);
	pthread_cond_init(&tc->cond, NULL);
	if (take_test_address(app) != 0 || evapi_app_listen(app) != 0 ||
	    evapi_app_on_startup(app, mark_started, tc) != 0 ||
	    pthread_create(&tc->thread, NULL, run_app, tc) != 0)
		goto err;
	tc->port = evapi_app_port(app);

	pthread_mutex_lock(&tc->mu);
	while (!tc->started && !tc->ended)
		pthread_cond_wait(&tc->cond, &tc->mu);
	ok = tc->started;
	pthread_mutex_unlock(&tc->mu);
	if (ok)
		return tc;
	pthread_join(tc->thread, NULL); /* a startup hook failed */
err:
	evapi_app_free(app);
	pthread_cond_destroy(&tc->cond);
	pthread_mutex_destroy(&tc->mu);
	free(tc);
	return NULL;
}

int evapi_test_stop(evapi_test *tc)
{
	evapi_stats st;
	int rc;

	if (!tc)
		return 0;
	evapi_app_stop(tc->app);
	pthread_join(tc->thread, NULL);
	rc = tc->run_rc;
	evapi_app_stats(tc->app, &st);
	if (rc == 0 && st.in_flight != 0)
		rc = EVAPI_ESTATE;
	evapi_app_free(tc->app);
	pthread_cond_destroy(&tc->cond);
	pthread_mutex_destroy(&tc->mu);
	free(tc);
	return rc;
}

evapi_app *evapi_test_app(const evapi_test *tc)
{
	return tc ? tc->app : NULL;
}

int evapi_test_port(const evapi_test *tc)
{
	return tc ? tc->port : 0;
}

int evapi__test_timeout(const evapi_test *tc)
{
	return tc->timeout_ms;
}

void evapi_test_set_timeout(evapi_test *tc, int timeout_ms)
{
	if (tc)
		tc->timeout_ms = timeout_ms > 0 ? timeout_ms
		                                : EVAPI_TEST_TIMEOUT_MS;
}

/* ---- requests -------------------------------------------------------- */

/* What a request becomes: fetch options and the storage they point to. */
typedef struct built {
	evapi_fetch_opts o;
	char *url;
	char *json_text;
	const char **headers;
} built;

static void built_clear(built *b)
{
	free(b->url);
	free(b->json_text);
	free(b->headers);
}

static int has_header(const char *const *h, const char *name)
{
	size_t n = strlen(name);
	for (; h && *h; h++)
		if (strncasecmp(*h, name, n) == 0 && (*h)[n] == ':')
			return 1;
	return 0;
}

/* Fills `b` from `req`; steals req->json. Returns 0 or EVAPI_ENOMEM. */
static int build(const evapi_test *tc, const evapi_test_req *req, built *b)
{
	const char *path = req->path ? req->path : "/";
	const char *q = req->query ? "?" : "", *query = req->query ? req->query : "";
	size_t n = 0, i = 0, len;
	int body = req->json || req->body;

	memset(b, 0, sizeof *b);
	if (req->json) {
		b->json_text = json_dumps(req->json, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(req->json);
		if (!b->json_text)
			return EVAPI_ENOMEM;
	}
	len = strlen(path) + strlen(query) + 40;
	if (!(b->url = malloc(len)))
		return EVAPI_ENOMEM;
	snprintf(b->url, len, "http://127.0.0.1:%d%s%s%s", tc->port, path, q,
	         query);
	while (req->headers && req->headers[n])
		n++;
	if (!(b->headers = calloc(n + 2, sizeof *b->headers)))
		return EVAPI_ENOMEM;
	for (; i < n; i++)
		b->headers[i] = req->headers[i];
	/* curl would label a raw body as a form; send only what was asked */
	if (body && !has_header(req->headers, "Content-Type"))
		b->headers[i++] = b->json_text ? "Content-Type: application/json"
		                               : "Content-Type:";
	b->o.url = b->url;
	b->o.method = req->method;
	b->o.headers = b->headers;
	if (b->json_text) {
		b->o.body = b->json_text;
		b->o.body_len = strlen(b->json_text);
	} else if (req->body) {
		b->o.body = req->body;
		b->o.body_len = req->body_len ? req->body_len
		                              : strlen((const char *)req->body);
	}
	b->o.timeout_ms = (unsigned)(req->timeout_ms > 0 ? req->timeout_ms
	                                                 : tc->timeout_ms);
	b->o.connect_timeout_ms = b->o.timeout_ms;
	b->o.low_speed_time_ms = b->o.timeout_ms + 1000;
	return 0;
}

evapi_test_response *evapi_test_request(evapi_test *tc,
                                        const evapi_test_req *req)
{
	evapi_test_response *r;
	built b;

	if (!tc || !req) {
		if (req)
			json_decref(req->json);
		return NULL;
	}
	if (!(r = calloc(1, sizeof *r))) {
		json_decref(req->json);
		return NULL;
	}
	if (build(tc, req, &b) == 0)
		r->res = evapi_fetch_sync(&b.o);
	built_clear(&b);
	if (!r->res) {
		free(r);
		return NULL;
	}
	return r;
}

evapi_test_response *evapi__test_response_new(void)
{
	evapi_test_response *r = calloc(1, sizeof *r);
	if (r && !(r->res = calloc(1, sizeof *r->res))) {
		free(r);
		return NULL;
	}
	if (r)
		r->res->max = EVAPI__FETCH_MAX_BYTES;
	return r;
}

evapi_fetch_res *evapi__test_response_res(evapi_test_response *r)
{
	return r->res;
}

evapi_test_response *evapi_test_get(evapi_test *tc, const char *path)
{
	evapi_test_req req = {0};
	req.path = path;
	return evapi_test_request(tc, &req);
}

int evapi_test_status(const evapi_test_response *r)
{
	return r ? evapi_fetch_res_status(r->res) : 0;
}

int evapi_test_error(const evapi_test_response *r)
{
	return r ? evapi_fetch_res_error(r->res) : EVAPI_EINVAL;
}

const char *evapi_test_header(const evapi_test_response *r, const char *name)
{
	return evapi_test_header_at(r, name, 0);
}

const char *evapi_test_header_at(const evapi_test_response *r,
                                 const char *name, int i)
{
	return evapi__fetch_res_header_at(r ? r->res : NULL, name, i);
}

const char *evapi_test_body(const evapi_test_response *r, size_t *len)
{
	return evapi_fetch_res_body(r ? r->res : NULL, len);
}

json_t *evapi_test_json(evapi_test_response *r)
{
	json_error_t err;

	if (!r)
		return NULL;
	if (!r->json_tried) {
		r->json_tried = 1;
		/* as a test reads it: any JSON value, "\u0000" included */
		if (evapi_test_error(r) == 0)
			r->json = json_loadb(r->res->body, r->res->len,
			                     JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	}
	return r->json;
}

void evapi_test_response_free(evapi_test_response *r)
{
	if (!r)
		return;
	json_decref(r->json);
	evapi_fetch_res_free(r->res);
	free(r);
}

/* ---- streams ------------------------------------------------------- */

typedef evapi__sbuf sbuf;

struct evapi_test_stream {
	evapi_test *tc;
	CURL *easy;
	CURLM *multi;
	int added;                /* easy is in multi */
	struct curl_slist *hdrs;
	evapi_fetch_res res;      /* status, headers, error */
	evapi_test_response resp; /* what evapi_test_stream_response shows */
	int last_status;          /* status line of the response being read */
	int headers_done, done;
	sbuf body;                /* received, not read yet: from `off` */
	size_t off, seen;
	/* server-sent events: the event being assembled, the one handed out */
	sbuf data;
	char *type, *id;
	char *out_type, *out_data, *out_id;
};

/* Lets the fetch code store the headers and notes where the section of
 * the final (not 1xx) response ends: the stream is open from there. */
static size_t stream_header(char *d, size_t size, size_t n, void *arg)
{
	evapi_test_stream *s = arg;
	size_t len = size * n, got = evapi__fetch_on_header(d, size, n, &s->res);
	char line[32];
	int st;

	if (got != len)
		return got;
	if (len >= 5 && memcmp(d, "HTTP/", 5) == 0) {
		snprintf(line, sizeof line, "%.*s",
		         (int)(len < sizeof line - 1 ? len : sizeof line - 1), d);
		if (sscanf(line, "HTTP/%*s %d", &st) == 1)
			s->last_status = st;
	} else if ((len == 2 && d[0] == '\r') || (len == 1 && d[0] == '\n')) {
		if (s->last_status >= 200) {
			s->headers_done = 1;
			s->res.status = s->last_status;
		}
	}
	return len;
}

static size_t stream_body(char *d, size_t size, size_t n, void *arg)
{
	evapi_test_stream *s = arg;
	return evapi__sbuf_add(&s->body, d, size * n) == 0 ? size * n : 0;
}

/* The transfer is over (`rc`), or is given up with `error`. */
static void stream_end(evapi_test_stream *s, CURLcode rc, int error)
{
	int status = s->res.status;

	if (error)
		evapi__fetch_res_fail(&s->res, error);
	else
		evapi__fetch_complete(s->easy, rc, &s->res);
	/* a body cut short still had its status */
	if (s->headers_done)
		s->res.status = status;
	if (s->added)
		curl_multi_remove_handle(s->multi, s->easy);
	s->added = 0;
	s->done = 1;
}

typedef int (*ready_fn)(const evapi_test_stream *s);

static int headers_in(const evapi_test_stream *s)
{
	return s->headers_done;
}

static int has_bytes(const evapi_test_stream *s)
{
	return s->body.len > s->off;
}

static int got_more(const evapi_test_stream *s)
{
	return s->body.len > s->seen;
}

/* Drives the transfer until `ready`, its end or `timeout_ms`: returns 0
 * (ready or ended) or EVAPI_ETIMEDOUT. */
static int pump(evapi_test_stream *s, int timeout_ms, ready_fn ready)
{
	int64_t end = evapi__now_us() + (int64_t)timeout_ms * 1000, left_us;

	for (;;) {
		CURLMsg *m;
		int running, left;

		curl_multi_perform(s->multi, &running);
		while ((m = curl_multi_info_read(s->multi, &left)) != NULL)
			if (m->msg == CURLMSG_DONE)
				stream_end(s, m->data.result, 0);
		if (s->done || ready(s))
			return 0;
		if ((left_us = end - evapi__now_us()) <= 0)
			return EVAPI_ETIMEDOUT;
		curl_multi_poll(s->multi, NULL, 0, (int)((left_us + 999) / 1000),
		                NULL);
	}
}

static int timeout_of(const evapi_test_stream *s, int timeout_ms)
{
	return timeout_ms > 0 ? timeout_ms : s->tc->timeout_ms;
}

evapi_test_stream *evapi_test_open(evapi_test *tc, const evapi_test_req *req)
{
	evapi__fetch_defaults d = {0, 0, EVAPI__FETCH_MAX_BYTES};
	evapi_test_stream *s;
	built b;
	int err;

	if (!tc || !req || !(s = calloc(1, sizeof *s))) {
		if (req)
			json_decref(req->json);
		return NULL;
	}
	s->tc = tc;
	s->resp.res = &s->res;
	err = build(tc, req, &b);
	d.timeout_ms = d.connect_timeout_ms = b.o.timeout_ms;
	if (err == 0 && (!(s->easy = curl_easy_init()) ||
	                 !(s->multi = curl_multi_init())))
		err = EVAPI_ENOMEM;
	if (err == 0)
		err = evapi__fetch_prepare(s->easy, &b.o, &d, &s->res, &s->hdrs);
	if (err != 0) {
		built_clear(&b);
		stream_end(s, CURLE_OK, err);
		return s;
	}
	/* Only the reads are timed: a stream may rightly last, and be quiet
	 * for, longer than any one of them. */
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(s->easy, CURLOPT_LOW_SPEED_TIME, 0L);
	curl_easy_setopt(s->easy, CURLOPT_NOPROGRESS, 1L);
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, stream_body);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_HEADERFUNCTION, stream_header);
	curl_easy_setopt(s->easy, CURLOPT_HEADERDATA, s);
	if (curl_multi_add_handle(s->multi, s->easy) != CURLM_OK) {
		built_clear(&b);
		stream_end(s, CURLE_OK, EVAPI_ENOMEM);
		return s;
	}
	s->added = 1;
	if (pump(s, (int)b.o.timeout_ms, headers_in) != 0)
		stream_end(s, CURLE_OK, EVAPI_ETIMEDOUT);
	built_clear(&b);
	return s;
}

evapi_test_response *evapi_test_stream_response(evapi_test_stream *s)
{
	return s ? &s->resp : NULL;
}

/* Drops what was read; moves the rest to the front once it is worth it. */
static void consumed(evapi_test_stream *s)
{
	if (s->off == s->body.len) {
		s->off = s->body.len = 0;
	} else if (s->off > 65536 && s->off > s->body.len / 2) {
		memmove(s->body.p, s->body.p + s->off, s->body.len - s->off);
		s->body.len -= s->off;
		s->off = 0;
	}
	if (s->body.p)
		s->body.p[s->body.len] = '\0';
}

long evapi_test_stream_read(evapi_test_stream *s, void *buf, size_t cap,
                            int timeout_ms)
{
	size_t n;
	int rc;

	if (!s || !buf || !cap)
		return EVAPI_EINVAL;
	if (!has_bytes(s) && !s->done &&
	    (rc = pump(s, timeout_of(s, timeout_ms), has_bytes)) != 0)
		return rc;
	if (!has_bytes(s))
		return s->res.error; /* 0: the body ended */
	n = s->body.len - s->off < cap ? s->body.len - s->off : cap;
	memcpy(buf, s->body.p + s->off, n);
	s->off += n;
	consumed(s);
	return (long)n;
}

static void replace(char **dst, char *src)
{
	free(*dst);
	*dst = src;
}

/* One "name: value" line of an event (WHATWG HTML, "Interpreting an
 * event stream"); unknown fields and comments are ignored. */
static int sse_field(evapi_test_stream *s, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len), *v;
	size_t nlen = colon ? (size_t)(colon - line) : len, vlen;
	char *copy;

	if (nlen == 0)
		return 0; /* a comment */
	v = colon ? colon + 1 : line + len;
	vlen = (size_t)(line + len - v);
	if (vlen && *v == ' ') {
		v++;
		vlen--;
	}
	if (nlen == 4 && memcmp(line, "data", 4) == 0)
		return evapi__sbuf_add(&s->data, v, vlen) == 0 &&
		               evapi__sbuf_add(&s->data, "\n", 1) == 0
		           ? 0
		           : EVAPI_ENOMEM;
	if (!(nlen == 5 && memcmp(line, "event", 5) == 0) &&
	    !(nlen == 2 && memcmp(line, "id", 2) == 0 && !memchr(v, 0, vlen)))
		return 0;
	if (!(copy = strndup(v, vlen)))
		return EVAPI_ENOMEM;
	replace(nlen == 2 ? &s->id : &s->type, copy);
	return 0;
}

/* A blank line: hands out the event assembled, if it has data. */
static int sse_dispatch(evapi_test_stream *s, evapi_test_sse *ev)
{
	int has = s->data.len > 0;

	if (has) {
		s->data.p[--s->data.len] = '\0'; /* the last "\n" */
		replace(&s->out_data, s->data.p);
		replace(&s->out_type, s->type);
		replace(&s->out_id, s->id);
		memset(&s->data, 0, sizeof s->data);
		s->type = s->id = NULL;
		ev->event = s->out_type ? s->out_type : "message";
		ev->data = s->out_data;
		ev->id = s->out_id;
	}
	replace(&s->type, NULL);
	replace(&s->id, NULL);
	s->data.len = 0;
	return has;
}

/* Consumes whole lines; returns 1 when an event is ready, 0 when more
 * bytes are needed, or EVAPI_ENOMEM. */
static int sse_parse(evapi_test_stream *s, evapi_test_sse *ev)
{
	int rc = 0;

	while (rc == 0 && s->off < s->body.len) {
		const char *line = s->body.p + s->off,
		           *end = s->body.p + s->body.len, *eol = line;
		size_t skip;

		while (eol < end && *eol != '\n' && *eol != '\r')
			eol++;
		/* a CR last may be half of a CRLF still on its way */
		if (eol == end || (*eol == '\r' && eol + 1 == end && !s->done))
			break;
		skip = (size_t)(eol - line) + 1;
		if (*eol == '\r' && eol + 1 < end && eol[1] == '\n')
			skip++;
		s->off += skip;
		if (eol == line)
			rc = sse_dispatch(s, ev);
		else
			rc = sse_field(s, line, (size_t)(eol - line));
	}
	consumed(s);
	return rc;
}

int evapi_test_sse_next(evapi_test_stream *s, evapi_test_sse *ev,
                        int timeout_ms)
{
	int64_t end;
	int rc, left_ms;

	if (!s || !ev)
		return EVAPI_EINVAL;
	end = evapi__now_us() + (int64_t)timeout_of(s, timeout_ms) * 1000;
	for (;;) {
		if ((rc = sse_parse(s, ev)) != 0)
			return rc > 0 ? 0 : rc;
		if (s->done)
			return s->res.error ? s->res.error : EVAPI_ENOENT;
		left_ms = (int)((end - evapi__now_us()) / 1000);
		if (left_ms <= 0)
			return EVAPI_ETIMEDOUT;
		s->seen = s->body.len;
		if ((rc = pump(s, left_ms, got_more)) != 0)
			return rc;
	}
}

void evapi_test_stream_close(evapi_test_stream *s)
{
	if (!s)
		return;
	/* an unfinished transfer removed from its multi handle has its
	 * connection closed: the server sees the client go */
	if (s->added)
		curl_multi_remove_handle(s->multi, s->easy);
	curl_easy_cleanup(s->easy);
	curl_multi_cleanup(s->multi);
	curl_slist_free_all(s->hdrs);
	evapi__fetch_res_clear(&s->res);
	json_decref(s->resp.json);
	free(s->body.p);
	free(s->data.p);
	free(s->type);
	free(s->id);
	free(s->out_type);
	free(s->out_data);
	free(s->out_id);
	free(s);
}
