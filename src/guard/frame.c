/*
 * frame.c: strict framing of HTTP/1.x requests with llhttp, for the
 * request guard. Pure: no I/O, no libevent; the guard (guard.c) and the
 * fuzzer feed it bytes.
 *
 * Threads: one frame belongs to one connection on the loop thread.
 *
 * llhttp (its strict parser, src/guard/llhttp/llhttp.c, with every lenient
 * flag off) does the RFC 9112 grammar: request line, header syntax,
 * Content-Length and chunked framing, CRLF after every line. On top of
 * it this file enforces what llhttp leaves to the server: CRLF only
 * (llhttp 8 takes a bare LF at the end of the request line and of a
 * field section), no obs-fold (llhttp 8 joins folded lines, even on
 * Transfer-Encoding), limits (field sections, chunk lines, body),
 * header-name tokens, one valid Host (required on HTTP/1.1),
 * Transfer-Encoding only as "chunked" and never on HTTP/1.0 nor with
 * Content-Length, Expect, the methods evapi serves, and a clean
 * origin-form request-target (or "*" for OPTIONS). A request that passes
 * is re-framed for evhttp: the request line, the validated headers minus
 * the framing and connection ones, a Content-Length for the decoded
 * body, and a Connection header saying what the guard decided, so
 * evhttp never parses anything the guard did not accept (no chunked
 * bodies, trailers or obs-folds reach it) and never decides alone to
 * close.
 *
 * The parser pauses at header end (when a body follows) and message end
 * so the caller sees each event at its exact byte offset, which is what
 * keeps pipelined requests in order and in their own deadlines; the start
 * of a message is only noted (`began`), so a request that arrives whole
 * is one llhttp_execute call. It also pauses
 * at each end of a chunk line and of chunk data, so every llhttp_execute
 * call covers bytes of one phase only (a field section, a chunk line, or
 * body data): that is how the raw bytes of a phase are counted against
 * its bound before more are read, and how the field sections are
 * scanned for line endings and folds without touching the body.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "guard.h"

typedef evapi__sbuf sbuf;

enum { ST_IDLE = 0, ST_HEAD, ST_BODY, ST_DONE, ST_ERROR, ST_CLOSED };

/* What the bytes of the next llhttp_execute call are (see the header). */
enum { PH_FIELDS = 0, PH_CHUNK_LINE, PH_DATA, PH_TRAILERS };

struct evapi__frame {
	llhttp_t p;
	evapi__frame_limits lim;
	int st;
	int is_head;           /* this message's method is HEAD */
	int target_done;       /* llhttp reported the end of the target */
	int lf_held;           /* a bare LF ended the target: refused once
	                        * the next byte comes (see evapi__frame_feed) */
	int phase;
	size_t phase_raw;      /* raw bytes of the current phase so far */
	char prev;             /* last byte of the field section scanned */
	size_t body_raw;       /* decoded body bytes, kept or not */
	size_t ext_raw;        /* chunk extension bytes, counted as body */
	sbuf url, name, value; /* spans being assembled */
	sbuf head;             /* re-framed request line + headers */
	sbuf body;
	sbuf version;
	sbuf upgrade, connection; /* the client's values, for the guard */
	sbuf ctype;            /* the Content-Type value, for the guard */
	size_t line_len;       /* the request line at the start of head */
	int began;             /* the last feed started a message */
	int nfields;
	int hosts, te, cl, expect_continue, keep_body;
	size_t max_body;       /* this request's bound: lim.max_body, or the
	                        * sink's */
	evapi__frame_sink sink; /* takes the body instead of `body` */
	void *sink_arg;
	evapi__frame_head_cb on_head;
	void *head_arg;
	int status;
	const char *detail;
	char clbuf[48];
};

static llhttp_settings_t settings;
static int settings_ready; /* set once; written before any frame exists */

static int sb_add(sbuf *b, const char *s, size_t n)
{
	return evapi__sbuf_add(b, s, n);
}

static int sb_str(sbuf *b, const char *s)
{
	return sb_add(b, s, strlen(s));
}

/* Keeps small buffers between requests; gives big ones back so an idle
 * keep-alive connection holds little memory. */
static void sb_reset(sbuf *b)
{
	b->len = 0;
	if (b->cap > 4096) {
		free(b->p);
		b->p = NULL;
		b->cap = 0;
	} else if (b->p) {
		b->p[0] = '\0';
	}
}

static int fail(evapi__frame *f, int status, const char *detail)
{
	if (!f->status) {
		f->status = status;
		f->detail = detail;
	}
	return -1;
}

/* An error found after llhttp ran on the same bytes: it comes first in
 * the byte stream, so it replaces what a callback may have chosen. */
static int fail_now(evapi__frame *f, int status, const char *detail)
{
	f->status = 0;
	return fail(f, status, detail);
}

#define FRAME(p) ((evapi__frame *)(p)->data)

/* No pause here: a request that arrives whole is framed by one
 * llhttp_execute call; the caller learns of the start from `began`. */
static int on_message_begin(llhttp_t *p)
{
	evapi__frame *f = FRAME(p);
	f->st = ST_HEAD;
	f->is_head = 0;
	f->target_done = 0;
	f->began = 1;
	return 0;
}

/* Appends a span to `b`, failing with `status` past `limit` bytes. */
static int span(evapi__frame *f, sbuf *b, const char *at, size_t len,
                size_t limit, int status, const char *detail)
{
	if (b->len + len > limit)
		return fail(f, status, detail);
	return sb_add(b, at, len) ? fail(f, 500, "Out of memory") : 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	evapi__frame *f = FRAME(p);
	return span(f, &f->url, at, len, f->lim.max_target, 414,
	            "Request-target too long");
}

static int on_version(llhttp_t *p, const char *at, size_t len)
{
	evapi__frame *f = FRAME(p);
	/* Kept only to tell "HTTP/2.0" (505) from garbage (400). */
	if (f->version.len + len > 16)
		return 0;
	return span(f, &f->version, at, len, 16, 400, "Invalid HTTP version");
}

static const char *method_name(int m);

/* The request line's target was read (llhttp tells this at the same
 * byte however the input is sliced, unlike a header name's span): a
 * refusal from here on answers this method (a HEAD gets no body; after a
 * target that a bare LF ends, llhttp says so only at the next byte: see
 * lf_held in evapi__frame_feed). The
 * re-framed request line goes first in head (nothing is there yet: the
 * fields come after the line), as HTTP/1.1; on_headers_complete turns
 * the minor version to 0 where it is. An unknown method writes no line:
 * on_headers_complete refuses it. */
static int on_url_complete(llhttp_t *p)
{
	evapi__frame *f = FRAME(p);
	const char *m = method_name(p->method);
	size_t ml;
	char *o;

	f->is_head = p->method == HTTP_HEAD;
	f->target_done = 1;
	if (!m)
		return 0;
	ml = strlen(m);
	if (evapi__sbuf_reserve(&f->head, ml + f->url.len + 12))
		return fail(f, 500, "Out of memory");
	o = f->head.p + f->head.len;
	memcpy(o, m, ml);
	o[ml] = ' ';
	memcpy(o + ml + 1, f->url.p ? f->url.p : "", f->url.len);
	memcpy(o + ml + 1 + f->url.len, " HTTP/1.1\r\n", 12); /* with NUL */
	f->head.len += ml + f->url.len + 12;
	f->line_len = f->head.len;
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	evapi__frame *f = FRAME(p);
	return span(f, &f->name, at, len, f->lim.max_head, 431,
	            "Request header fields too large");
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	evapi__frame *f = FRAME(p);
	return span(f, &f->value, at, len, f->lim.max_head, 431,
	            "Request header fields too large");
}

/* Switches, not strchr: these run for every byte of every header name
 * and Host value, and a switch compiles to a bit test. */
static int is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return 1;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'':
	case '*': case '+': case '-': case '.': case '^': case '_':
	case '`': case '|': case '~':
		return 1;
	default:
		return 0;
	}
}

/* Trims OWS, lower-cases into `out` (at most `cap`-1 bytes). */
static void lower_trim(const char *s, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;
	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	for (i = 0; i < n && o + 1 < cap; i++) {
		char c = s[i];
		out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	out[o] = '\0';
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 unreserved / sub-delims. */
static int is_host_char(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c))
		return 1;
	switch (c) {
	case '-': case '.': case '_': case '~': case '!': case '$':
	case '&': case '\'': case '(': case ')': case '*': case '+':
	case ',': case ';': case '=':
		return 1;
	default:
		return 0;
	}
}

/* IPvFuture without its brackets: "v" 1*HEXDIG "." 1*(unreserved /
 * sub-delims / ":"). */
static int valid_ipvfuture(const char *s, size_t n)
{
	size_t i = 1;
	while (i < n && is_hex((unsigned char)s[i]))
		i++;
	if (i == 1 || i >= n - 1 || s[i] != '.')
		return 0;
	for (i++; i < n; i++)
		if (!is_host_char((unsigned char)s[i]) && s[i] != ':')
			return 0;
	return 1;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2), uri-host as RFC 3986 has
 * it: an IP-literal in brackets (IPv6, checked by inet_pton, or
 * IPvFuture), or a reg-name (which covers IPv4). Empty is valid: a
 * client sends that for a target without an authority. The port, when
 * the colon is there, is 1 to 5 digits. */
static int valid_host(const char *v, size_t n)
{
	size_t i = 0;

	if (n > 0 && v[0] == '[') {
		const char *end = memchr(v, ']', n);
		char lit[64];
		size_t ll = end ? (size_t)(end - v) - 1 : 0;
		struct in6_addr a;
		if (ll == 0 || ll >= sizeof lit)
			return 0;
		memcpy(lit, v + 1, ll);
		lit[ll] = '\0';
		if (lit[0] == 'v' || lit[0] == 'V') {
			if (!valid_ipvfuture(lit, ll))
				return 0;
		} else if (inet_pton(AF_INET6, lit, &a) != 1) {
			return 0;
		}
		i = ll + 2;
	} else {
		while (i < n && v[i] != ':') {
			if (v[i] == '%') {
				if (i + 2 >= n || !is_hex((unsigned char)v[i + 1]) ||
				    !is_hex((unsigned char)v[i + 2]))
					return 0;
				i += 3;
			} else if (is_host_char((unsigned char)v[i])) {
				i++;
			} else {
				return 0;
			}
		}
	}
	if (i == n)
		return 1;
	if (v[i] != ':' || n - i - 1 < 1 || n - i - 1 > 5)
		return 0;
	for (i++; i < n; i++)
		if (!is_digit((unsigned char)v[i]))
			return 0;
	return 1;
}

/* The header names the guard reads or drops. */
enum { H_OTHER = 0, H_HOST, H_CTYPE, H_CLEN, H_TE, H_EXPECT, H_UPGRADE,
       H_CONNECTION };

/* By length first: most fields are none of these, and most then cost
 * no string comparison at all. */
static int header_kind(const char *n, size_t len)
{
	switch (len) {
	case 4: return strcasecmp(n, "host") == 0 ? H_HOST : H_OTHER;
	case 6: return strcasecmp(n, "expect") == 0 ? H_EXPECT : H_OTHER;
	case 7: return strcasecmp(n, "upgrade") == 0 ? H_UPGRADE : H_OTHER;
	case 10:
		return strcasecmp(n, "connection") == 0 ? H_CONNECTION : H_OTHER;
	case 12:
		return strcasecmp(n, "content-type") == 0 ? H_CTYPE : H_OTHER;
	case 14:
		return strcasecmp(n, "content-length") == 0 ? H_CLEN : H_OTHER;
	case 17:
		return strcasecmp(n, "transfer-encoding") == 0 ? H_TE : H_OTHER;
	default: return H_OTHER;
	}
}

/* Appends "name: value" CRLF to head with one capacity check. */
static int head_field(evapi__frame *f, const char *n, size_t nl,
                      const char *v, size_t vl)
{
	sbuf *h = &f->head;
	size_t need = nl + vl + 4;
	char *o;

	if (evapi__sbuf_reserve(h, need))
		return -1;
	o = h->p + h->len;
	memcpy(o, n, nl);
	o[nl] = ':';
	o[nl + 1] = ' ';
	memcpy(o + nl + 2, v, vl);
	o[nl + 2 + vl] = '\r';
	o[nl + 3 + vl] = '\n';
	h->len += need;
	h->p[h->len] = '\0';
	return 0;
}

/* One complete header line: validate, classify, keep or drop. */
static int on_header_value_complete(llhttp_t *p)
{
	evapi__frame *f = FRAME(p);
	const char *n = f->name.p ? f->name.p : "";
	char *v = f->value.p ? f->value.p : "";
	size_t vl = f->value.len, i;
	int keep = 1, rc = 0, kind;
	char low[64];

	if (f->st != ST_HEAD)
		goto out; /* a trailer field: never merged into the headers */
	if (++f->nfields > f->lim.max_fields) {
		rc = fail(f, 431, "Too many header fields");
		goto out;
	}
	if (f->name.len == 0) {
		rc = fail(f, 400, "Empty header name");
		goto out;
	}
	for (i = 0; i < f->name.len; i++)
		if (!is_tchar((unsigned char)n[i])) {
			rc = fail(f, 400, "Invalid header name");
			goto out;
		}
	while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		v[--vl] = '\0';
	for (i = 0; i < vl; i++) {
		unsigned char c = (unsigned char)v[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			rc = fail(f, 400, "Invalid character in header value");
			goto out;
		}
	}
	kind = header_kind(n, f->name.len);
	if (kind == H_HOST) {
		f->hosts++;
		if (!valid_host(v, vl)) {
			rc = fail(f, 400, "Invalid Host header");
			goto out;
		}
	} else if (kind == H_CTYPE) {
		if (f->ctype.len == 0 && sb_add(&f->ctype, v, vl))
			rc = fail(f, 500, "Out of memory");
	} else if (kind == H_CLEN) {
		f->cl = 1; /* llhttp checked the value and duplicates */
		keep = 0;
	} else if (kind == H_TE) {
		lower_trim(v, vl, low, sizeof low);
		if (f->te || strcmp(low, "chunked") != 0) {
			/* A coding we do not implement, or a list of them. */
			size_t ll = strlen(low);
			int ends_chunked = ll >= 7 &&
			                   strcmp(low + ll - 7, "chunked") == 0;
			rc = ends_chunked ? fail(f, 501, "Transfer-Encoding not "
			                                 "implemented")
			                  : fail(f, 400, "Invalid Transfer-Encoding");
			goto out;
		}
		f->te = 1;
		keep = 0;
	} else if (kind == H_EXPECT) {
		lower_trim(v, vl, low, sizeof low);
		if (strcmp(low, "100-continue") != 0) {
			rc = fail(f, 417, "Unsupported expectation");
			goto out;
		}
		f->expect_continue = 1;
		keep = 0; /* the guard answers it; evhttp must not */
	} else if (kind == H_UPGRADE || kind == H_CONNECTION) {
		/* Never passed on: served as plain HTTP/1.1 unless the
		 * guard takes the request for a WebSocket route (it reads
		 * them with evapi__frame_upgrade). llhttp read Connection's
		 * tokens; evhttp gets one it reads the same way (see
		 * evapi__frame_request). */
		sbuf *b = kind == H_UPGRADE ? &f->upgrade : &f->connection;
		keep = 0;
		if ((b->len && sb_add(b, ",", 1)) || sb_add(b, v, vl))
			rc = fail(f, 500, "Out of memory");
	}
	if (keep && head_field(f, n, f->name.len, v, vl))
		rc = fail(f, 500, "Out of memory");
out:
	/* the next field starts empty: no on_header_field_complete needed
	 * (every use of name and value is bounded by these lengths) */
	f->name.len = f->value.len = 0;
	return rc;
}


/* The methods evapi serves; others are 501. */
static const struct {
	int llhttp;
	evapi_method bit;
	const char *name;
} methods[] = {
	{HTTP_GET, EVAPI_GET, "GET"},
	{HTTP_HEAD, EVAPI_HEAD, "HEAD"},
	{HTTP_POST, EVAPI_POST, "POST"},
	{HTTP_PUT, EVAPI_PUT, "PUT"},
	{HTTP_DELETE, EVAPI_DELETE, "DELETE"},
	{HTTP_OPTIONS, EVAPI_OPTIONS, "OPTIONS"},
	{HTTP_PATCH, EVAPI_PATCH, "PATCH"},
};

static int method_index(int m)
{
	int i;
	for (i = 0; i < (int)(sizeof methods / sizeof methods[0]); i++)
		if (methods[i].llhttp == m)
			return i;
	return -1;
}

static const char *method_name(int m)
{
	int i = method_index(m);
	return i < 0 ? NULL : methods[i].name;
}

/* evhttp 2.1 reads a body only for these; for the others it would parse
 * the body as the next request, so the guard drops it. */
static int body_method(int m)
{
	return m == HTTP_POST || m == HTTP_PUT || m == HTTP_PATCH;
}

static int check_target(evapi__frame *f, int method)
{
	const char *u = f->url.p ? f->url.p : "";
	size_t i;

	for (i = 0; i < f->url.len; i++) {
		unsigned char c = (unsigned char)u[i];
		if (c <= 0x20 || c >= 0x7f)
			return fail(f, 400, "Invalid character in request-target");
	}
	if (u[0] == '/')
		return 0;
	if (strcmp(u, "*") == 0 && method == HTTP_OPTIONS)
		return 0;
	/* Absolute-form is what a client sends a proxy. Served, it would
	 * carry a second authority beside Host, and evhttp would close the
	 * connection after it without saying so. */
	if (strstr(u, "://"))
		return fail(f, 400, "Absolute-form request-target is not "
		                    "served: send the path and a Host header");
	return fail(f, 400, "Invalid request-target");
}

static int on_headers_complete(llhttp_t *p)
{
	evapi__frame *f = FRAME(p);
	f->is_head = p->method == HTTP_HEAD;
	const char *m = method_name(p->method);

	if (p->http_major != 1)
		return fail(f, 505, "HTTP version not supported");
	if (p->method == HTTP_CONNECT)
		return fail(f, 400, "CONNECT (authority-form) is not served: "
		                    "this is not a proxy");
	if (!m)
		return fail(f, 501, "Method not implemented");
	if (check_target(f, p->method))
		return -1;
	if (f->hosts > 1)
		return fail(f, 400, "More than one Host header");
	if (f->hosts == 0 && p->http_minor >= 1)
		return fail(f, 400, "Missing Host header");
	if (f->te && p->http_minor == 0)
		return fail(f, 400, "Transfer-Encoding on HTTP/1.0");
	if (f->te && f->cl) /* llhttp refuses it too: lenient_chunked_length */
		return fail(f, 400, "Content-Length with Transfer-Encoding");
	f->keep_body = body_method(p->method);
	/* The owner may take this body as it arrives (an upload streamed
	 * to disk), with a bound of its own. */
	if (f->keep_body && f->on_head)
		f->on_head(f->head_arg, f);
	if (f->cl && p->content_length > f->max_body)
		return fail(f, 413, "Request body too large");
	/* "Upgrade" with "Connection: upgrade" is ignored (RFC 9110 7.8 lets
	 * a server): the request is plain HTTP/1.1, and so is what follows
	 * it. Cleared here, llhttp neither skips the body nor stops at the
	 * message end as it would for a protocol switch. */
	p->upgrade = 0;
	/* The request line on_url_complete wrote says HTTP/1.1. */
	if (f->line_len < 3 || !f->head.p)
		return fail(f, 500, "Out of memory");
	if (p->http_minor == 0)
		f->head.p[f->line_len - 3] = '0';
	f->st = ST_BODY;
	/* Pause only when a body follows: with none, llhttp completes the
	 * message without reading another byte, and an execute call with no
	 * bytes would not get it there. */
	if (p->flags & F_CHUNKED) {
		f->phase = PH_CHUNK_LINE;
		return HPE_PAUSED;
	}
	if (f->cl && p->content_length > 0) {
		f->phase = PH_DATA;
		return HPE_PAUSED;
	}
	return 0;
}

/* Chunk extensions count against the body limit: they are bytes the
 * client makes us read for the body, even though they are dropped. */
static int body_bytes(evapi__frame *f, size_t body, size_t ext)
{
	f->body_raw += body;
	f->ext_raw += ext;
	if (f->body_raw + f->ext_raw > f->max_body)
		return fail(f, 413, "Request body too large");
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	evapi__frame *f = FRAME(p);
	if (body_bytes(f, len, 0))
		return -1;
	if (!f->keep_body)
		return 0;
	if (f->sink) {
		int status = 0;
		const char *detail = NULL;
		if (f->sink(f->sink_arg, at, len, &status, &detail) != 0)
			return fail(f, status ? status : 500,
			            detail ? detail : "Internal Server Error");
		return 0;
	}
	return sb_add(&f->body, at, len) ? fail(f, 500, "Out of memory") : 0;
}

static int on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
	return body_bytes(FRAME(p), 0, len);
}

/* A chunk line ended: chunk data follows, or the trailer section after
 * the last chunk (which starts on a new line: a leading SP there is a
 * fold too). */
static int on_chunk_header(llhttp_t *p)
{
	evapi__frame *f = FRAME(p);
	if (p->content_length == 0) {
		f->phase = PH_TRAILERS;
		f->prev = '\n';
	} else {
		f->phase = PH_DATA;
	}
	return HPE_PAUSED;
}

/* Chunk data and its CRLF ended: the next chunk line follows. After the
 * trailers llhttp calls this too, and the message ends at once. */
static int on_chunk_complete(llhttp_t *p)
{
	evapi__frame *f = FRAME(p);
	if (f->phase == PH_TRAILERS)
		return 0;
	f->phase = PH_CHUNK_LINE;
	return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
	evapi__frame *f = FRAME(p);
	f->st = ST_DONE;
	return HPE_PAUSED;
}

static void settings_init(void)
{
	if (settings_ready)
		return;
	llhttp_settings_init(&settings);
	settings.on_message_begin = on_message_begin;
	settings.on_url = on_url;
	settings.on_version = on_version;
	settings.on_url_complete = on_url_complete;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_header_value_complete = on_header_value_complete;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_chunk_extension_name = on_chunk_extension;
	settings.on_chunk_extension_value = on_chunk_extension;
	settings.on_chunk_header = on_chunk_header;
	settings.on_chunk_complete = on_chunk_complete;
	settings.on_message_complete = on_message_complete;
	settings_ready = 1;
}

/* Every leniency llhttp 8 has stays off (llhttp_init clears them all;
 * said here so that turning one on is a visible change, and tested in
 * tests/test_frame.c): lenient headers would let control bytes into
 * values, chunked_length would take Content-Length with chunked,
 * transfer_encoding would take codings after "chunked", keep_alive would
 * parse requests after "Connection: close". */
static void parser_init(evapi__frame *f)
{
	llhttp_init(&f->p, HTTP_REQUEST, &settings);
	llhttp_set_lenient_headers(&f->p, 0);
	llhttp_set_lenient_chunked_length(&f->p, 0);
	llhttp_set_lenient_transfer_encoding(&f->p, 0);
	llhttp_set_lenient_keep_alive(&f->p, 0);
	f->p.data = f;
}

evapi__frame *evapi__frame_new(const evapi__frame_limits *lim)
{
	evapi__frame *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	settings_init();
	f->lim = *lim;
	f->max_body = lim->max_body;
	parser_init(f);
	return f;
}

static void next_request(evapi__frame *f);

void evapi__frame_reset(evapi__frame *f)
{
	parser_init(f);
	next_request(f);
	f->status = 0;
	f->detail = NULL;
}

void evapi__frame_free(evapi__frame *f)
{
	if (!f)
		return;
	free(f->url.p);
	free(f->name.p);
	free(f->value.p);
	free(f->head.p);
	free(f->body.p);
	free(f->version.p);
	free(f->upgrade.p);
	free(f->connection.p);
	free(f->ctype.p);
	free(f);
}

/* Forgets the previous request before the next one starts. */
static void next_request(evapi__frame *f)
{
	f->st = ST_IDLE;
	f->phase = PH_FIELDS;
	f->phase_raw = 0;
	f->prev = 0;
	f->body_raw = f->ext_raw = 0;
	sb_reset(&f->url);
	sb_reset(&f->name);
	sb_reset(&f->value);
	sb_reset(&f->head);
	sb_reset(&f->body);
	sb_reset(&f->version);
	sb_reset(&f->upgrade);
	sb_reset(&f->connection);
	sb_reset(&f->ctype);
	f->line_len = 0;
	f->lf_held = 0;
	f->nfields = f->hosts = f->te = f->cl = 0;
	f->expect_continue = f->keep_body = 0;
	f->max_body = f->lim.max_body;
	f->sink = NULL;
	f->sink_arg = NULL;
}

void evapi__frame_on_head(evapi__frame *f, evapi__frame_head_cb cb, void *arg)
{
	f->on_head = cb;
	f->head_arg = arg;
}

void evapi__frame_set_sink(evapi__frame *f, evapi__frame_sink sink, void *arg,
                           size_t max_body)
{
	f->sink = sink;
	f->sink_arg = arg;
	f->max_body = max_body;
}

/* Maps an llhttp error to a status, unless a callback chose one. */
static void map_error(evapi__frame *f, llhttp_errno_t e)
{
	const char *v = f->version.p ? f->version.p : "";

	if (f->status)
		return;
	switch (e) {
	case HPE_INVALID_METHOD:
		/* "get", "FOO": a method we do not implement. Garbage that is
		 * no request line at all is left to the generic 400 below by
		 * the caller's line check; llhttp stops at the first byte so
		 * it cannot tell the two apart. */
		fail(f, 501, "Method not implemented");
		break;
	case HPE_INVALID_VERSION:
		if (strlen(v) == 3 && v[0] >= '0' && v[0] <= '9' && v[1] == '.' &&
		    v[2] >= '0' && v[2] <= '9' && v[0] != '1')
			fail(f, 505, "HTTP version not supported");
		else
			fail(f, 400, "Invalid HTTP version");
		break;
	case HPE_INVALID_CONTENT_LENGTH:
	case HPE_UNEXPECTED_CONTENT_LENGTH:
		fail(f, 400, "Invalid Content-Length");
		break;
	case HPE_INVALID_TRANSFER_ENCODING:
		fail(f, 400, "Invalid Transfer-Encoding");
		break;
	case HPE_INVALID_CHUNK_SIZE:
		fail(f, 400, "Invalid chunked body");
		break;
	case HPE_INVALID_HEADER_TOKEN:
	case HPE_LF_EXPECTED:
	case HPE_CR_EXPECTED:
		fail(f, 400, "Invalid header");
		break;
	case HPE_INVALID_URL:
		fail(f, 400, "Invalid request-target");
		break;
	default:
		fail(f, 400, "Malformed request");
		break;
	}
}

/* Is [s, s+n) a plausible request line "TOKEN SP target SP HTTP/d.d"
 * (or its beginning)? Decides 501 (unknown method) against 400. */
static int looks_like_request_line(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ' ')
		return 0;
	for (i++; i < n && s[i] != ' '; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return i < n;
}

/* The bound on the raw bytes of a phase; 0: none. */
static size_t phase_bound(const evapi__frame *f, int ph)
{
	switch (ph) {
	case PH_FIELDS:
	case PH_TRAILERS: return f->lim.max_head;
	case PH_CHUNK_LINE: return f->lim.max_chunk_line;
	default: return 0;
	}
}

/* Scans bytes of a field section for what llhttp 8 lets through: a bare
 * LF as a line ending, and obs-fold (a line that starts with SP or HTAB,
 * which llhttp joins to the line before, so "Transfer-Encoding:" CRLF
 * SP "chunked" is chunked to it and not to every other parser). A bare
 * CR is llhttp's strict parser's to refuse, and refused here as well. */
static int scan_fields(evapi__frame *f, const char *s, size_t n)
{
	const char *p = s, *end = s + n;
	char prev = f->prev; /* the byte before p */

	/* From line ending to line ending with memchr, not byte by byte:
	 * between two CRs there must be no LF, a CR must be followed by
	 * LF, and a line after CRLF must not start with SP or HTAB. The
	 * first fault in byte order is the one reported. */
	while (p < end) {
		const char *cr, *lf;
		if (prev == '\r') {
			if (*p != '\n')
				return fail_now(f, 400, "Bare CR in the header section");
			prev = '\n';
			p++;
			continue;
		}
		if (prev == '\n' && (*p == ' ' || *p == '\t'))
			return fail_now(f, 400, "Obsolete line folding in the "
			                        "header section");
		cr = memchr(p, '\r', (size_t)(end - p));
		lf = memchr(p, '\n', (size_t)((cr ? cr : end) - p));
		if (lf)
			return fail_now(f, 400, "Bare LF in the header section");
		if (!cr) {
			prev = end[-1];
			break;
		}
		prev = '\r';
		p = cr + 1;
	}
	f->prev = prev;
	return 0;
}

/* Accounts for `n` bytes llhttp consumed, all of phase `ph` (every
 * change of phase pauses the parser). */
static int phase_bytes(evapi__frame *f, int ph, const char *s, size_t n)
{
	size_t bound = phase_bound(f, ph);

	if ((ph == PH_FIELDS || ph == PH_TRAILERS) && scan_fields(f, s, n))
		return -1;
	if (bound && f->phase_raw + n > bound) {
		if (ph == PH_CHUNK_LINE)
			return fail_now(f, 400, "Chunk line too long");
		return fail_now(f, 431, ph == PH_FIELDS
		                            ? "Request header fields too large"
		                            : "Request trailer fields too large");
	}
	f->phase_raw = f->phase == ph ? f->phase_raw + n : 0;
	return 0;
}

int evapi__frame_feed(evapi__frame *f, const char *data, size_t len,
                      size_t *used)
{
	size_t n = len, off, bound;
	llhttp_errno_t e;
	int st0, ph0;

	*used = 0;
	f->began = 0;
	if (f->st == ST_ERROR)
		return EVAPI__FRAME_ERROR;
	if (f->st == ST_CLOSED) {
		*used = len; /* after the last request: discarded */
		return EVAPI__FRAME_MORE;
	}
	if (f->st == ST_DONE)
		next_request(f);
	if (len == 0)
		return EVAPI__FRAME_MORE;
	if (f->st == ST_IDLE && (data[0] == '\r' || data[0] == '\n')) {
		/* CR and LF before a request line: llhttp (strict as well)
		 * skips any mix of them, so they are not a field section's
		 * line endings and the bare-CR/LF scan must not see them.
		 * They still count against the header bound. */
		size_t k = 1;
		int rc;
		while (k < len && (data[k] == '\r' || data[k] == '\n'))
			k++;
		if (f->lim.max_head && f->phase_raw + k > f->lim.max_head) {
			*used = 0;
			f->st = ST_ERROR;
			fail_now(f, 431, "Request header fields too large");
			return EVAPI__FRAME_ERROR;
		}
		f->phase_raw += k;
		rc = evapi__frame_feed(f, data + k, len - k, used);
		*used += k;
		return rc;
	}
	st0 = f->st;
	ph0 = f->phase;
	if (f->lf_held) {
		/* The byte after the LF: llhttp takes it (whatever it is) and
		 * only then reports the end of the target, so a HEAD's refusal
		 * is bodiless exactly when a parser reading the whole stream
		 * sees a complete HEAD target, however the bytes were cut. */
		llhttp_execute(&f->p, data, 1);
		f->st = ST_ERROR;
		*used = 1;
		return EVAPI__FRAME_ERROR;
	}
	/* Feed a bounded phase at most one byte past its bound, so an
	 * endless header line or chunk line stops there instead of growing
	 * buffers or being read to its end. */
	bound = phase_bound(f, ph0);
	if (bound && n > bound + 1 - f->phase_raw)
		n = bound + 1 - f->phase_raw;
	e = llhttp_execute(&f->p, data, n);
	off = e == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&f->p) - data);
	if (phase_bytes(f, ph0, data, off)) {
		*used = off;
		if (e == HPE_OK && off > 0 && f->st == ST_HEAD && !f->target_done &&
		    data[off - 1] == '\n') {
			/* A bare LF ended the target (an HTTP/0.9 line) and is
			 * the last byte here: llhttp reports the end of the
			 * target only at the byte after it, so the refusal
			 * waits for that byte (see above). */
			f->lf_held = 1;
			return EVAPI__FRAME_MORE;
		}
		f->st = ST_ERROR;
		return EVAPI__FRAME_ERROR;
	}
	if (e == HPE_PAUSED_UPGRADE) {
		f->st = ST_CLOSED;
		*used = len;
		return EVAPI__FRAME_MORE;
	} else if (e == HPE_PAUSED) {
		llhttp_resume(&f->p);
	} else if (e != HPE_OK) {
		if (e == HPE_INVALID_METHOD && !f->status &&
		    !looks_like_request_line(data, len)) {
			/* Not shaped like a request line: plain 400. When the
			 * line is not complete yet, judging on the part we
			 * have is still right for "GARBAGE" or binary noise. */
			fail(f, 400, "Malformed request line");
		}
		map_error(f, e);
		f->st = ST_ERROR;
		*used = off;
		return EVAPI__FRAME_ERROR;
	}
	*used = off;
	if (e == HPE_PAUSED) {
		if (f->st == ST_BODY && st0 != ST_BODY)
			return EVAPI__FRAME_HEAD;
		if (f->st == ST_DONE)
			return EVAPI__FRAME_REQUEST;
	}
	return f->began ? EVAPI__FRAME_BEGIN : EVAPI__FRAME_MORE;
}

void evapi__frame_request(evapi__frame *f, int close, const char **head,
                          size_t *head_len, const char **body,
                          size_t *body_len)
{
	int n;
	if (f->keep_body) {
		n = snprintf(f->clbuf, sizeof f->clbuf, "Content-Length: %zu\r\n",
		             f->body.len);
		if (n > 0)
			sb_add(&f->head, f->clbuf, (size_t)n);
	}
	/* The client's Connection header never reaches evhttp (its
	 * "keep-alive, close" or two lines would read as keep-alive there):
	 * evhttp closes after this request exactly when it is told to, and
	 * then says so. */
	if (close)
		sb_str(&f->head, "Connection: close\r\n");
	else if (f->p.http_minor == 0)
		sb_str(&f->head, "Connection: keep-alive\r\n");
	sb_add(&f->head, "\r\n", 2);
	*head = f->head.p ? f->head.p : "";
	*head_len = f->head.len;
	*body = f->body.p ? f->body.p : "";
	*body_len = f->keep_body ? f->body.len : 0;
}

void evapi__frame_upgrade(const evapi__frame *f, const char **upgrade,
                          const char **connection)
{
	*upgrade = f->upgrade.len ? f->upgrade.p : NULL;
	*connection = f->connection.len ? f->connection.p : NULL;
}

int evapi__frame_keeps_alive(const evapi__frame *f)
{
	return llhttp_should_keep_alive(&f->p) != 0;
}

int evapi__frame_expects_continue(const evapi__frame *f)
{
	return f->expect_continue;
}

evapi_method evapi__frame_method(const evapi__frame *f)
{
	int i = method_index(f->p.method);
	return i < 0 ? 0 : methods[i].bit;
}

const char *evapi__frame_target(const evapi__frame *f)
{
	return f->url.p ? f->url.p : "";
}

const char *evapi__frame_content_type(const evapi__frame *f)
{
	return f->ctype.len ? f->ctype.p : NULL;
}

int evapi__frame_began(const evapi__frame *f)
{
	return f->began;
}

int evapi__frame_is_head(const evapi__frame *f)
{
	return f && f->is_head;
}

int evapi__frame_in_request(const evapi__frame *f)
{
	return f && (f->st == ST_HEAD || f->st == ST_BODY);
}

int evapi__frame_error(const evapi__frame *f, const char **detail)
{
	if (detail)
		*detail = f->detail ? f->detail : "Bad Request";
	return f->status ? f->status : 400;
}
