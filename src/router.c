/*
 * router.c: route templates, matching and percent-decoding.
 *
 * Pure data structure: no I/O, no libevent, any thread may match once
 * registration is over (registration happens before the loop runs).
 *
 * Matching splits the raw path on '/' first and decodes each segment
 * afterwards, so an encoded slash (%2F) stays inside its segment and can
 * never create a path level the template did not have. A last segment
 * `{name:path}` takes the rest of the path (possibly empty), rejoined
 * with '/'; a rest whose decoded segment holds a '/' does not match, so
 * an encoded slash never becomes a separator there either. Routes are tried
 * in registration order; the first whose template and method both match
 * wins. When templates match but no method does, the answer is 405 with
 * the union of the methods of every matching template.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct evapi__router {
	evapi__route **routes;
	size_t n, cap;
};

#define ALL_METHODS 0x7fu

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long evapi__pct_decode(const char *s, size_t len, char *out, int plus_is_space)
{
	size_t i, o = 0;
	for (i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			int hi, lo;
			if (len - i < 3)
				return -1;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			if (c == 0)
				return -1;
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		} else if (c == 0) {
			return -1;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (long)o;
}

evapi__router *evapi__router_new(void)
{
	return calloc(1, sizeof(evapi__router));
}

static void route_free(evapi__route *rt)
{
	int i;
	if (!rt)
		return;
	for (i = 0; i < rt->nsegs; i++)
		free(rt->segs[i]);
	free(rt->segs);
	free(rt->is_param);
	free(rt->tmpl);
	free(rt->label);
	free(rt->deps);
	free(rt);
}

void evapi__router_free(evapi__router *r)
{
	size_t i;
	if (!r)
		return;
	for (i = 0; i < r->n; i++)
		route_free(r->routes[i]);
	free(r->routes);
	free(r);
}

static int valid_param_name(const char *s, size_t len)
{
	size_t i;
	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

/* Splits a template into segments. "/" has none; "/a/{b}" has two. */
static int compile(evapi__route *rt, const char *tmpl)
{
	const char *p = tmpl + 1, *slash;
	int n = 0, cap = 0, nparams = 0;

	if (tmpl[0] != '/')
		return -1;
	if (tmpl[1] == '\0')
		return 0;
	for (;;) {
		size_t len;
		char **segs;
		unsigned char *isp;
		slash = strchr(p, '/');
		len = slash ? (size_t)(slash - p) : strlen(p);
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			segs = realloc(rt->segs, cap * sizeof *segs);
			if (!segs)
				return -1;
			rt->segs = segs;
			isp = realloc(rt->is_param, cap);
			if (!isp)
				return -1;
			rt->is_param = isp;
		}
		if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
			size_t nl = len - 2;
			int tail = nl > 5 && memcmp(p + 1 + nl - 5, ":path", 5) == 0;
			if (tail) {
				if (slash)
					return -1; /* only as the last segment */
				nl -= 5;
			}
			if (!valid_param_name(p + 1, nl) ||
			    ++nparams > EVAPI__MAX_PARAMS)
				return -1;
			rt->segs[n] = strndup(p + 1, nl);
			rt->is_param[n] = tail ? 2 : 1;
		} else {
			char *dec;
			if (memchr(p, '{', len) || memchr(p, '}', len))
				return -1;
			dec = malloc(len + 1);
			if (!dec || evapi__pct_decode(p, len, dec, 0) < 0) {
				free(dec);
				return -1;
			}
			rt->segs[n] = dec;
			rt->is_param[n] = 0;
		}
		if (!rt->segs[n])
			return -1;
		rt->nsegs = ++n;
		if (!slash)
			break;
		p = slash + 1;
	}
	return 0;
}

int evapi__router_add(evapi__router *r, unsigned mset, const char *tmpl,
                      evapi_lane lane, evapi_handler_cb cb, void *arg)
{
	size_t i;
	unsigned bit;
	if (!r || !tmpl || !cb || mset == 0 || (mset & ~ALL_METHODS) ||
	    (lane != EVAPI_INLINE && lane != EVAPI_POOL))
		return EVAPI_EINVAL;
	/* One route object per method keeps matching and stats simple. */
	for (i = 0; (bit = evapi__method_at(i)) != 0; i++) {
		const char *name = evapi_method_name((evapi_method)bit);
		evapi__route *rt;
		size_t llen;
		if (!(mset & bit))
			continue;
		rt = calloc(1, sizeof *rt);
		if (!rt)
			return EVAPI_ENOMEM;
		rt->method = bit;
		rt->lane = lane;
		rt->cb = cb;
		rt->arg = arg;
		rt->tmpl = strdup(tmpl);
		llen = strlen(tmpl) + strlen(name) + 2;
		rt->label = malloc(llen);
		if (!rt->tmpl || !rt->label) {
			route_free(rt);
			return EVAPI_ENOMEM;
		}
		snprintf(rt->label, llen, "%s %s", name, tmpl);
		if (compile(rt, tmpl) < 0) {
			route_free(rt);
			return EVAPI_EINVAL;
		}
		if (r->n == r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 16;
			evapi__route **nr = realloc(r->routes, cap * sizeof *nr);
			if (!nr) {
				route_free(rt);
				return EVAPI_ENOMEM;
			}
			r->routes = nr;
			r->cap = cap;
		}
		rt->idx = (unsigned)r->n;
		r->routes[r->n++] = rt;
	}
	return 0;
}

size_t evapi__router_count(const evapi__router *r)
{
	return r->n;
}

evapi__route *evapi__router_at(const evapi__router *r, size_t i)
{
	return i < r->n ? r->routes[i] : NULL;
}

/* A path split into decoded segments, reused across all routes. */
typedef struct {
	int n;
	const char *seg[64];
} split_path;

static int split_decode(const char *raw, char *scratch, split_path *sp)
{
	const char *p = raw + 1;
	char *out = scratch;
	sp->n = 0;
	if (raw[0] != '/')
		return -1;
	if (raw[1] == '\0')
		return 0;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		long dl;
		if (sp->n == (int)(sizeof sp->seg / sizeof sp->seg[0]))
			return 1; /* deeper than any template can be */
		dl = evapi__pct_decode(p, len, out, 0);
		if (dl < 0)
			return -1;
		sp->seg[sp->n++] = out;
		out += dl + 1;
		if (!slash)
			break;
		p = slash + 1;
	}
	return 0;
}

/* The rest of the path from segment `from` for a {name:path} segment:
 * NULL when a decoded segment holds a '/'. With `join` the segments
 * (contiguous in the scratch buffer) are joined in place: only for the
 * route that won, as the scratch is shared by every attempt. */
static const char *tail_of(const split_path *sp, int from, int join)
{
	int i;
	for (i = from; i < sp->n; i++)
		if (strchr(sp->seg[i], '/'))
			return NULL;
	if (join)
		for (i = from; i + 1 < sp->n; i++)
			((char *)sp->seg[i])[strlen(sp->seg[i])] = '/';
	return from < sp->n ? sp->seg[from] : "";
}

static int route_matches(const evapi__route *rt, const split_path *sp,
                         evapi__match *m)
{
	int i, np = 0;
	int tail = rt->nsegs && rt->is_param[rt->nsegs - 1] == 2;
	if (tail ? sp->n < rt->nsegs - 1 : rt->nsegs != sp->n)
		return 0;
	for (i = 0; i < rt->nsegs; i++) {
		if (rt->is_param[i] == 2) {
			const char *rest = tail_of(sp, i, m != NULL);
			if (!rest)
				return 0;
			if (m) {
				m->params[np].name = rt->segs[i];
				m->params[np].value = rest;
			}
			np++;
		} else if (rt->is_param[i]) {
			if (sp->seg[i][0] == '\0')
				return 0;
			if (m) {
				m->params[np].name = rt->segs[i];
				m->params[np].value = sp->seg[i];
			}
			np++;
		} else if (rt->segs[i][0] != sp->seg[i][0] ||
		           strcmp(rt->segs[i], sp->seg[i]) != 0) {
			/* the first byte inline: most routes of the same
			 * depth differ there, and the call costs more */
			return 0;
		}
	}
	if (m)
		m->nparams = np;
	return 1;
}

int evapi__router_match(const evapi__router *r, unsigned method,
                        const char *raw_path, char *scratch, evapi__match *m)
{
	split_path sp;
	size_t i;
	unsigned allow = 0;
	int rc;
	evapi__route *get_route = NULL;

	memset(m, 0, sizeof *m);
	rc = split_decode(raw_path, scratch, &sp);
	if (rc < 0)
		return EVAPI__MATCH_BAD_PATH;
	if (rc > 0)
		return EVAPI__MATCH_NOT_FOUND;
	for (i = 0; i < r->n; i++) {
		evapi__route *rt = r->routes[i];
		if (!route_matches(rt, &sp, NULL))
			continue;
		allow |= rt->method;
		if (rt->method == method) {
			route_matches(rt, &sp, m);
			m->route = rt;
			return EVAPI__MATCH_OK;
		}
		if (rt->method == EVAPI_GET && !get_route)
			get_route = rt;
	}
	if (allow & EVAPI_GET)
		allow |= EVAPI_HEAD;
	if (method == EVAPI_HEAD && get_route) {
		route_matches(get_route, &sp, m);
		m->route = get_route;
		return EVAPI__MATCH_OK;
	}
	if (allow) {
		m->allow = allow;
		return EVAPI__MATCH_METHOD;
	}
	return EVAPI__MATCH_NOT_FOUND;
}
