/*
 * json.c: serialises a reply's JSON value, with every real in the
 * shortest form that reads back as the same double (9.571, not jansson's
 * 17-digit 9.5709999999999997).
 *
 * Threads: any (a pool handler's reply is serialised on its worker); no
 * state outside the call.
 *
 * jansson prints every real of a document with one precision (17 digits
 * by default), so a value without reals goes through json_dumpb as
 * before, and a value with reals is written here, the same compact way
 * jansson writes it (key order, string escapes, "1.0" for an integral
 * real, exponents without '+' or leading zeros), except that each real
 * gets the fewest of 15, 16 or 17 significant digits that round-trip.
 * Fifteen digits always round-trip a double that has a 15-digit form
 * (DBL_DIG), so that form is also the shortest one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_DEPTH 2048 /* jansson's own dump limit */

typedef struct out {
	char *p;
	size_t len, cap;
	int failed;
} out;

static void put(out *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 256;
		char *p;
		while (cap < o->len + n)
			cap *= 2;
		if (!(p = realloc(o->p, cap))) {
			o->failed = 1;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/* As jansson's compact dump: '"', '\\' and control bytes escaped; UTF-8
 * and '/' as they are. */
static void put_string(out *o, const char *s, size_t n)
{
	size_t i, run = 0;
	char seq[8];

	put(o, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *e = NULL;
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		put(o, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		}
		if (e) {
			put(o, e, 2);
		} else {
			snprintf(seq, sizeof seq, "\\u%04X", c);
			put(o, seq, 6);
		}
	}
	put(o, s + run, n - run);
	put(o, "\"", 1);
}

/* The shortest round-tripping text of a finite double, in jansson's
 * spelling. Returns its length. */
static int real_text(double d, char *buf, size_t cap)
{
	int prec, n = 0;
	char *e, *q;

	for (prec = 15; prec <= 17; prec++) {
		n = snprintf(buf, cap, "%.*g", prec, d);
		if (n < 0 || (size_t)n >= cap)
			return -1;
		for (q = buf; *q; q++)
			if (*q == ',') /* a locale's decimal comma */
				*q = '.';
		if (strtod(buf, NULL) == d)
			break;
	}
	if (!strpbrk(buf, ".eE") && (size_t)n + 2 < cap) {
		memcpy(buf + n, ".0", 3);
		n += 2;
	}
	if ((e = strpbrk(buf, "eE")) != NULL) {
		/* "1e+20" -> "1e20", "1e-05" -> "1e-5" */
		char *src = e + 1, *dst = e + 1;
		if (*src == '+')
			src++;
		else if (*src == '-')
			*dst++ = *src++;
		while (*src == '0' && src[1])
			src++;
		memmove(dst, src, strlen(src) + 1);
		n = (int)strlen(buf);
	}
	return n;
}

static int has_real(json_t *v, int depth)
{
	const char *key;
	json_t *m;
	size_t i;

	if (depth > MAX_DEPTH)
		return 0;
	switch (json_typeof(v)) {
	case JSON_REAL:
		return 1;
	case JSON_OBJECT:
		json_object_foreach(v, key, m)
			if (has_real(m, depth + 1))
				return 1;
		return 0;
	case JSON_ARRAY:
		json_array_foreach(v, i, m)
			if (has_real(m, depth + 1))
				return 1;
		return 0;
	default:
		return 0;
	}
}

static void dump(out *o, json_t *v, int depth)
{
	char num[40];
	const char *key;
	json_t *m;
	size_t i;
	int n;

	if (depth > MAX_DEPTH) {
		o->failed = 1;
		return;
	}
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		put(o, "{", 1);
		i = 0;
		json_object_foreach(v, key, m) {
			if (i++)
				put(o, ",", 1);
			put_string(o, key, strlen(key));
			put(o, ":", 1);
			dump(o, m, depth + 1);
		}
		put(o, "}", 1);
		break;
	case JSON_ARRAY:
		put(o, "[", 1);
		json_array_foreach(v, i, m) {
			if (i)
				put(o, ",", 1);
			dump(o, m, depth + 1);
		}
		put(o, "]", 1);
		break;
	case JSON_STRING:
		put_string(o, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
		             json_integer_value(v));
		put(o, num, (size_t)n);
		break;
	case JSON_REAL:
		n = real_text(json_real_value(v), num, sizeof num);
		if (n < 0)
			o->failed = 1;
		else
			put(o, num, (size_t)n);
		break;
	case JSON_TRUE:
		put(o, "true", 4);
		break;
	case JSON_FALSE:
		put(o, "false", 5);
		break;
	case JSON_NULL:
		put(o, "null", 4);
		break;
	}
}

char *evapi__json_dump(json_t *v, size_t *len)
{
	const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
	char small[512], *s = NULL;
	out o = {NULL, 0, 0, 0};
	size_t n;

	if (has_real(v, 0)) {
		dump(&o, v, 0);
		if (o.failed || o.len == 0) {
			free(o.p);
			return NULL;
		}
		*len = o.len;
		return o.p;
	}
	/* Into a stack buffer, then one exact allocation: json_dumps grows
	 * a buffer with several reallocs per reply. */
	n = json_dumpb(v, small, sizeof small, flags);
	if (n > 0 && (s = malloc(n)) != NULL) {
		if (n <= sizeof small)
			memcpy(s, small, n);
		else if (json_dumpb(v, s, n, flags) != n)
			n = 0;
	}
	if (!s || n == 0) {
		free(s);
		return NULL;
	}
	*len = n;
	return s;
}
