/*
 * multipart.c: a strict multipart/form-data parser (RFC 7578, RFC 2046
 * section 5.1) over a body that is already in memory.
 *
 * Pure function of its input, no I/O: the loop runs it while checking an
 * upload route's request (a memmem scan per part, so it is cheap), before
 * any worker is involved. evhttp has already bounded the body's size.
 * Bodies the guard streams (upload_stream.c) are parsed there as they
 * arrive, with the part header parser below.
 *
 * Strict means: every part starts at a delimiter line, has a
 * Content-Disposition of form-data with a name, header lines are
 * "Name: value" with no control bytes but HTAB, the body ends with the
 * close delimiter, and the part count is bounded. Anything else is -1
 * with a reason; the caller answers 400. A preamble before the first
 * delimiter and an epilogue after the last are ignored, as RFC 2046 says.
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>
#include <strings.h>

#include "internal.h"

#define MAX_PART_HEADERS 2048 /* bytes of one part's header section */

static int is_tchar(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || strchr("!#$%&'*+-.^_`|~", c);
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* RFC 2046 bchars, without the trailing-space subtleties: 1..70 of
 * them. */
static int valid_boundary(const char *b, size_t n)
{
	size_t i;
	if (n < 1 || n > 70)
		return 0;
	for (i = 0; i < n; i++)
		if (!((b[i] >= '0' && b[i] <= '9') ||
		      (b[i] >= 'a' && b[i] <= 'z') ||
		      (b[i] >= 'A' && b[i] <= 'Z') || strchr("'()+_,-./:=? ", b[i])))
			return 0;
	return b[n - 1] != ' ';
}

/* Reads a parameter value (token or quoted-string) at *pp into out
 * (NUL-terminated, at most cap-1 bytes). Returns its length or -1. */
static long param_value(const char **pp, const char *end, char *out,
                        size_t cap)
{
	const char *p = *pp;
	size_t o = 0;

	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (o + 1 >= cap)
				return -1;
			out[o++] = *p;
		}
		if (p >= end)
			return -1; /* unterminated */
		p++;
	} else {
		for (; p < end && is_tchar((unsigned char)*p); p++) {
			if (o + 1 >= cap)
				return -1;
			out[o++] = *p;
		}
		if (o == 0)
			return -1;
	}
	out[o] = '\0';
	*pp = p;
	return (long)o;
}

int evapi__multipart_boundary(const char *ctype, char *out, size_t len)
{
	static const char mt[] = "multipart/form-data";
	const char *p, *end;

	if (!ctype)
		return -1;
	p = skip_ws(ctype, ctype + strlen(ctype));
	end = p + strlen(p);
	if (strncasecmp(p, mt, sizeof mt - 1) != 0)
		return -1;
	p = skip_ws(p + sizeof mt - 1, end);
	if (p < end && *p != ';')
		return -1; /* multipart/form-dataX */
	while (p < end && *p == ';') {
		const char *name;
		size_t nlen;
		long vlen;
		char val[128];
		p = skip_ws(p + 1, end);
		name = p;
		while (p < end && is_tchar((unsigned char)*p))
			p++;
		nlen = (size_t)(p - name);
		if (nlen == 0 || p >= end || *p != '=')
			return -2;
		p++;
		vlen = param_value(&p, end, val, sizeof val);
		if (vlen < 0)
			return -2;
		if (nlen == 8 && strncasecmp(name, "boundary", 8) == 0) {
			if (!valid_boundary(val, (size_t)vlen) ||
			    (size_t)vlen + 1 > len)
				return -2;
			memcpy(out, val, (size_t)vlen + 1);
			return 0;
		}
		p = skip_ws(p, end);
	}
	return -2;
}

/* Parses the Content-Disposition value of one part. */
static int disposition(const char *v, const char *end, evapi__arena *arena,
                       evapi__part *part)
{
	static const char fd[] = "form-data";
	const char *p = skip_ws(v, end);
	char val[1024];

	if ((size_t)(end - p) < sizeof fd - 1 ||
	    strncasecmp(p, fd, sizeof fd - 1) != 0)
		return -1;
	p = skip_ws(p + sizeof fd - 1, end);
	while (p < end) {
		const char *name;
		size_t nlen;
		long vlen;
		if (*p != ';')
			return -1;
		p = skip_ws(p + 1, end);
		name = p;
		while (p < end && is_tchar((unsigned char)*p))
			p++;
		nlen = (size_t)(p - name);
		p = skip_ws(p, end);
		if (nlen == 0 || p >= end || *p != '=')
			return -1;
		p = skip_ws(p + 1, end);
		vlen = param_value(&p, end, val, sizeof val);
		if (vlen < 0)
			return -1;
		p = skip_ws(p, end);
		if (nlen == 4 && strncasecmp(name, "name", 4) == 0) {
			if (part->name)
				return -1;
			part->name = evapi__arena_strndup(arena, val, (size_t)vlen);
			if (!part->name)
				return -1;
		} else if (nlen == 8 && strncasecmp(name, "filename", 8) == 0) {
			if (part->filename)
				return -1;
			part->filename = evapi__arena_strndup(arena, val,
			                                      (size_t)vlen);
			if (!part->filename)
				return -1;
		}
		/* other parameters (filename*) are ignored */
	}
	return part->name ? 0 : -1;
}

/* Parses the header section [p, end) of one part (CRLF-separated lines,
 * no final empty line); also used by upload_stream.c. */
int evapi__multipart_headers(const char *p, const char *end,
                             evapi__arena *arena, evapi__part *part,
                             const char **why)
{
	int have_cd = 0;

	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		const char *colon, *q, *v, *vend;
		if (!eol)
			eol = end;
		for (q = p; q < eol; q++) {
			unsigned char c = (unsigned char)*q;
			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				*why = "control byte in a part header";
				return -1;
			}
		}
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p) {
			*why = "malformed part header line";
			return -1;
		}
		for (q = p; q < colon; q++)
			if (!is_tchar((unsigned char)*q)) {
				*why = "malformed part header name";
				return -1;
			}
		v = skip_ws(colon + 1, eol);
		vend = eol;
		while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		if (colon - p == 19 &&
		    strncasecmp(p, "Content-Disposition", 19) == 0) {
			if (have_cd++ || disposition(v, vend, arena, part) < 0) {
				*why = "bad Content-Disposition: form-data with a "
				       "name is required";
				return -1;
			}
		} else if (colon - p == 12 &&
		           strncasecmp(p, "Content-Type", 12) == 0) {
			part->content_type = evapi__arena_strndup(
				arena, v, (size_t)(vend - v));
			if (!part->content_type) {
				*why = "out of memory";
				return -1;
			}
		}
		p = eol + 2;
	}
	if (!have_cd) {
		*why = "part without Content-Disposition";
		return -1;
	}
	return 0;
}

int evapi__multipart_parse(const char *body, size_t len, const char *boundary,
                           evapi__arena *arena, evapi__part *parts,
                           int max_parts, const char **why)
{
	char delim[80]; /* "\r\n--" + boundary */
	size_t dlen, blen = strlen(boundary);
	const char *end = body + len, *p;
	int n = 0;

	*why = "malformed multipart body";
	if (!valid_boundary(boundary, blen))
		return -1;
	memcpy(delim, "\r\n--", 4);
	memcpy(delim + 4, boundary, blen);
	dlen = blen + 4;
	/* The first delimiter may open the body (no CRLF before it). */
	if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
		p = body + dlen - 2;
	} else {
		p = memmem(body, len, delim, dlen);
		if (!p) {
			*why = "no multipart boundary in the body";
			return -1;
		}
		p += dlen;
	}
	for (;;) {
		const char *hend, *next;
		evapi__part *part;

		/* after a delimiter: "--" closes, else padding + CRLF */
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			return n; /* epilogue ignored */
		p = skip_ws(p, end);
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
			*why = "bad multipart delimiter line";
			return -1;
		}
		p += 2;
		if (n == max_parts)
			return -2;
		part = &parts[n];
		memset(part, 0, sizeof *part);
		if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
			hend = p; /* no headers: rejected below */
		} else {
			size_t room = (size_t)(end - p);
			if (room > MAX_PART_HEADERS + 4)
				room = MAX_PART_HEADERS + 4;
			hend = memmem(p, room, "\r\n\r\n", 4);
			if (!hend) {
				*why = "part headers too long or unterminated";
				return -1;
			}
		}
		if (evapi__multipart_headers(p, hend, arena, part, why) < 0)
			return -1;
		p = hend + (hend == p ? 2 : 4);
		next = memmem(p, (size_t)(end - p), delim, dlen);
		if (!next) {
			*why = "multipart body ends without its closing boundary";
			return -1;
		}
		part->data = p;
		part->len = (size_t)(next - p);
		n++;
		p = next + dlen;
	}
}
