/*
 * strict_http.c: the judge behind strict_http.h. Compiled with llhttp's
 * sources built in strict mode (tests/fuzz/run); only the two functions
 * below stay global.
 */
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "strict_http.h"

#if !LLHTTP_STRICT_MODE
#error "build with -DLLHTTP_STRICT_MODE=1"
#endif

typedef struct scan {
	strict_requests *rq;
	strict_responses *rs;
	const strict_requests *req; /* for responses: which were HEAD */
	int begun;
	int answered; /* responses: final ones seen, 1xx excluded */
	char text[STRICT_TEXT]; /* span being read: target or header */
	size_t tlen;
	int cut;                /* it did not fit */
	int is_path;            /* the header being read is X-Path */
	int folded;             /* a request header used obs-fold */
	int line_ok;            /* the request line was read whole */
	const char *base;       /* requests: the input */
} scan;

static int span(llhttp_t *p, const char *at, size_t len)
{
	scan *s = p->data;
	if (s->tlen + len >= sizeof s->text) {
		s->cut = 1;
		return 0;
	}
	memcpy(s->text + s->tlen, at, len);
	s->tlen += len;
	s->text[s->tlen] = '\0';
	return 0;
}

static void span_reset(scan *s)
{
	s->tlen = 0;
	s->cut = 0;
	s->text[0] = '\0';
}

/* Copies the span just read into `out`, or "" if it did not fit. */
static void span_take(scan *s, char *out)
{
	memcpy(out, s->cut ? "" : s->text, s->cut ? 1 : s->tlen + 1);
	span_reset(s);
}

static int rq_begin(llhttp_t *p)
{
	scan *s = p->data;
	s->begun++;
	s->line_ok = 0;
	span_reset(s);
	return 0;
}

/* A header field starts: the request line before it was valid, so a
 * refusal from here on still answers its method (HEAD: no body). */
static int rq_field(llhttp_t *p, const char *at, size_t len)
{
	scan *s = p->data;
	(void)at;
	(void)len;
	s->line_ok = 1;
	if (s->rq->complete < STRICT_MAX)
		s->rq->head[s->rq->complete] = p->method == HTTP_HEAD;
	return 0;
}

/* llhttp, even strict, accepts obs-fold (a header line that starts with
 * a space or tab, continuing the previous value); RFC 9112 lets a
 * server reject it and evapi must (docs/ARCHITECTURE.md). A value span
 * that holds a line break, or starts after one (past spaces and tabs),
 * is folded. The whole input is parsed in one call, so the bytes before
 * a span are in the buffer from `s->base` on. */
static int rq_value(llhttp_t *p, const char *at, size_t len)
{
	scan *s = p->data;
	const char *b = at;
	if (len == 0)
		return 0; /* an empty value is reported where the next line starts */
	while (b > s->base && (b[-1] == ' ' || b[-1] == '\t'))
		b--;
	if (memchr(at, '\r', len) || memchr(at, '\n', len) ||
	    (b > s->base && b[-1] == '\n')) {
		s->folded = 1;
		return -1;
	}
	return 0;
}

static int rq_url_complete(llhttp_t *p)
{
	scan *s = p->data;
	if (s->rq->complete < STRICT_MAX)
		span_take(s, s->rq->target[s->rq->complete]);
	return 0;
}

static int rq_complete(llhttp_t *p)
{
	scan *s = p->data;
	strict_requests *r = s->rq;
	int i = r->complete++;
	if (i < STRICT_MAX) {
		r->head[i] = p->method == HTTP_HEAD;
		r->upgrade[i] = p->upgrade != 0;
	}
	if (!llhttp_should_keep_alive(p))
		r->last = 1; /* nothing after it is a request */
	return HPE_PAUSED; /* the caller notes where it ends */
}

void strict_http_requests(const char *data, size_t len, strict_requests *out)
{
	llhttp_settings_t st;
	llhttp_t p;
	scan s;
	const char *at = data, *end = data + len;

	memset(&s, 0, sizeof s);
	s.rq = out;
	s.base = data;
	memset(out, 0, sizeof *out);
	llhttp_settings_init(&st);
	st.on_message_begin = rq_begin;
	st.on_message_complete = rq_complete;
	st.on_url = span;
	st.on_url_complete = rq_url_complete;
	st.on_header_value = rq_value;
	st.on_header_field = rq_field;
	llhttp_init(&p, HTTP_REQUEST, &st);
	p.data = &s;
	const char *done = data; /* the end of the last complete request */
	while (at < end) {
		llhttp_errno_t e = llhttp_execute(&p, at, (size_t)(end - at));
		if (e == HPE_OK)
			break;
		if (e == HPE_PAUSED) {
			at = done = llhttp_get_error_pos(&p);
			if (out->last)
				break;
			llhttp_resume(&p);
			continue;
		}
		if (e == HPE_PAUSED_UPGRADE) {
			/* The server has no upgrades on these routes: what
			 * follows must be served as HTTP, or the connection
			 * closed after a "Connection: close" answer. */
			at = done = llhttp_get_error_pos(&p);
			llhttp_resume_after_upgrade(&p);
			continue;
		}
		out->rejected = 1;
		out->error = s.folded ? "obs-fold" : llhttp_get_error_reason(&p);
		break;
	}
	out->partial = !out->rejected && s.begun > out->complete && !out->last;
	out->trailing = !out->last && done < end;
}

static int rs_headers(llhttp_t *p)
{
	scan *s = p->data;
	strict_responses *r = s->rs;
	int i = s->answered, nobody;

	if (p->status_code < 200)
		return 0; /* interim: llhttp expects the final one after it */
	s->answered++;
	nobody = p->status_code == 204 || p->status_code == 304 ||
	         (i <= s->req->complete && i < STRICT_MAX && s->req->head[i]);
	if (i < STRICT_MAX) {
		r->status[i] = p->status_code;
		r->close[i] = (p->flags & F_CONNECTION_CLOSE) != 0;
		r->framed[i] = nobody ||
		               (p->flags & (F_CONTENT_LENGTH | F_CHUNKED)) != 0;
	}
	r->final = s->answered;
	return nobody ? 1 : 0; /* 1: no body follows (HEAD) */
}

static int rs_begin(llhttp_t *p)
{
	scan *s = p->data;
	s->begun++;
	s->is_path = 0;
	span_reset(s);
	return 0;
}

static int rs_field_complete(llhttp_t *p)
{
	scan *s = p->data;
	s->is_path = !s->cut && strcasecmp(s->text, "x-path") == 0;
	span_reset(s);
	return 0;
}

static int rs_value_complete(llhttp_t *p)
{
	scan *s = p->data;
	/* a final response's header: it becomes number `answered` */
	if (s->is_path && p->status_code >= 200 && s->answered < STRICT_MAX)
		span_take(s, s->rs->path[s->answered]);
	span_reset(s);
	s->is_path = 0;
	return 0;
}

static int rs_complete(llhttp_t *p)
{
	scan *s = p->data;
	int i = s->answered - 1;
	s->begun = 0;
	if (p->status_code >= 200 && i >= 0 && i < STRICT_MAX &&
	    s->rs->close[i])
		return HPE_PAUSED; /* nothing may follow */
	return 0;
}

void strict_http_responses(const char *data, size_t len, int eof,
                           const strict_requests *req, strict_responses *out)
{
	llhttp_settings_t st;
	llhttp_t p;
	scan s;
	llhttp_errno_t e;

	memset(out, 0, sizeof *out);
	memset(&s, 0, sizeof s);
	s.rs = out;
	s.req = req;
	if (len == 0)
		return;
	llhttp_settings_init(&st);
	st.on_message_begin = rs_begin;
	st.on_headers_complete = rs_headers;
	st.on_message_complete = rs_complete;
	st.on_header_field = span;
	st.on_header_field_complete = rs_field_complete;
	st.on_header_value = span;
	st.on_header_value_complete = rs_value_complete;
	llhttp_init(&p, HTTP_RESPONSE, &st);
	p.data = &s;
	e = llhttp_execute(&p, data, len);
	if (e == HPE_PAUSED) {
		if (llhttp_get_error_pos(&p) != data + len)
			out->after_close = 1;
		return;
	}
	/* the server closed: that ends a body sent without a length */
	if (e == HPE_OK && eof) {
		e = llhttp_finish(&p);
		if (e == HPE_PAUSED) /* rs_complete: it said close */
			e = HPE_OK;
	}
	if (e != HPE_OK) {
		out->bad = 1;
		out->error = llhttp_get_error_reason(&p);
		return;
	}
	out->partial = s.begun > 0;
}
