/*
 * security.c: security dependencies in FastAPI's shapes (evapi/security.h):
 * an API key in a header, the query or a cookie, HTTP Bearer and HTTP
 * Basic, each declared as an OpenAPI security scheme; and the
 * constant-time comparison.
 *
 * Threads: evapi_app_security before the run (creator); the resolver
 * runs in its dependency's lane (the loop, or a worker for a pool
 * dependency), reading only the request snapshot and writing the
 * request's state, as a handler of that lane may. The records live on
 * app->secs until evapi_app_free.
 *
 * The statuses, details and WWW-Authenticate values are FastAPI 0.92's
 * (fastapi/security/api_key.py and http.py), so that a client written
 * against a FastAPI service sees the same answers.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define NOT_AUTH "Not authenticated"
#define INVALID "Invalid authentication credentials"
#define STATE_TYPE "evapi_credentials"

struct evapi__sec {
	struct evapi__sec *next;
	evapi_dep dep;             /* what evapi_app_security hands out */
	evapi_security_kind kind;
	char *name, *param, *www, *state_key;
	int optional;
	evapi_verify_cb verify;
	void *arg;
};

struct evapi__secs {
	struct evapi__sec *head;
};

/* ---- reading the credential ---------------------------------------------- */

static int b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Python's b64decode(s) (validate=False, CPython's a2b_base64 in its
 * non-strict mode): bytes outside the alphabet are skipped, '=' ends the
 * data once it completes a group (what follows is ignored), and a group
 * left incomplete is an error; then .decode("ascii"). Writes the text
 * into out (at least strlen(s) + 1 bytes). Returns 0, or -1 for what
 * Python refuses (incomplete padding, a byte >= 0x80) and for a NUL,
 * which a C string cannot carry. */
static int b64_ascii(const char *s, char *out)
{
	unsigned left = 0;
	int quad = 0, pads = 0;
	size_t o = 0;

	for (; *s; s++) {
		int v, c = -1;
		if (*s == '=') {
			if (quad >= 2 && quad + ++pads >= 4)
				goto done;
			continue;
		}
		if ((v = b64_value((unsigned char)*s)) < 0)
			continue;
		pads = 0;
		switch (quad) {
		case 0:
			left = (unsigned)v;
			break;
		case 1:
			c = (int)((left << 2) | ((unsigned)v >> 4));
			left = (unsigned)v & 0xf;
			break;
		case 2:
			c = (int)((left << 4) | ((unsigned)v >> 2));
			left = (unsigned)v & 0x3;
			break;
		default:
			c = (int)(((left << 6) | (unsigned)v) & 0xff);
			break;
		}
		quad = (quad + 1) % 4;
		if (c == 0 || c >= 0x80)
			return -1;
		if (c > 0)
			out[o++] = (char)c;
	}
	if (quad != 0)
		return -1;
done:
	out[o] = '\0';
	return 0;
}

/* Starlette's cookie_parser: "a=1; b=2", the last of a name winning,
 * whitespace and surrounding quotes stripped. Copies the value of
 * `name` into a malloc'd string (NULL: absent, or out of memory). */
static char *cookie_value(const char *header, const char *name)
{
	size_t nlen = strlen(name);
	const char *p = header, *best = NULL;
	size_t blen = 0;
	char *v;

	while (p && *p) {
		const char *end = strchr(p, ';'), *eq, *k, *ke, *val, *ve;
		if (!end)
			end = p + strlen(p);
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq) {
			for (k = p; k < eq && isspace((unsigned char)*k); k++)
				;
			for (ke = eq; ke > k && isspace((unsigned char)ke[-1]); ke--)
				;
			for (val = eq + 1; val < end && isspace((unsigned char)*val);
			     val++)
				;
			for (ve = end; ve > val && isspace((unsigned char)ve[-1]);
			     ve--)
				;
			if (ve - val >= 2 && *val == '"' && ve[-1] == '"') {
				val++;
				ve--;
			}
			if ((size_t)(ke - k) == nlen && memcmp(k, name, nlen) == 0) {
				best = val;
				blen = (size_t)(ve - val);
			}
		}
		p = *end ? end + 1 : NULL;
	}
	if (!best || !blen || !(v = malloc(blen + 1)))
		return NULL;
	memcpy(v, best, blen);
	v[blen] = '\0';
	return v;
}

/* The credentials record, its strings in the same block. */
static evapi_credentials *creds_new(const struct evapi__sec *s,
                                    const char *cred, size_t clen,
                                    const char *scheme, size_t slen,
                                    const char *user, const char *pass)
{
	size_t ul = user ? strlen(user) : 0, pl = pass ? strlen(pass) : 0;
	evapi_credentials *c;
	char *p;

	c = calloc(1, sizeof *c + clen + slen + ul + pl + 4);
	if (!c)
		return NULL;
	p = (char *)(c + 1);
	c->scheme_name = s->name;
	c->kind = s->kind;
	if (cred) {
		memcpy(p, cred, clen);
		c->credentials = p;
		p += clen + 1;
	}
	if (scheme) {
		memcpy(p, scheme, slen);
		c->scheme = p;
		p += slen + 1;
	}
	if (user) {
		memcpy(p, user, ul);
		c->username = p;
		p += ul + 1;
		memcpy(p, pass, pl);
		c->password = p;
	}
	return c;
}

/* Answers the scheme's refusal: 401 with WWW-Authenticate for Basic,
 * else 403. Returns 1 (the resolver's "answered"). */
static int refuse(evapi_req *req, const struct evapi__sec *s,
                  const char *detail)
{
	if (s->kind == EVAPI_SECURITY_HTTP_BASIC) {
		evapi_reply_add_header(req, "WWW-Authenticate", s->www);
		evapi_reply_error(req, 401, detail);
	} else {
		evapi_reply_error(req, 403, detail);
	}
	return 1;
}

/* Reads the credential: *out new (free), or NULL with *why set to the
 * refusal (NULL: out of memory). */
static evapi_credentials *read_creds(evapi_req *req,
                                     const struct evapi__sec *s,
                                     const char **why)
{
	const char *v, *sp;
	evapi_credentials *c = NULL;

	*why = NOT_AUTH;
	switch (s->kind) {
	case EVAPI_SECURITY_API_KEY_HEADER:
	case EVAPI_SECURITY_API_KEY_QUERY:
		v = s->kind == EVAPI_SECURITY_API_KEY_HEADER
		        ? evapi_req_header(req, s->param)
		        : evapi_req_query(req, s->param);
		if (!v || !*v)
			return NULL;
		break;
	case EVAPI_SECURITY_API_KEY_COOKIE: {
		char *cv;
		v = evapi_req_header(req, "Cookie");
		if (!v || !(cv = cookie_value(v, s->param)))
			return NULL;
		c = creds_new(s, cv, strlen(cv), NULL, 0, NULL, NULL);
		free(cv);
		*why = NULL;
		return c;
	}
	case EVAPI_SECURITY_HTTP_BEARER:
		/* scheme, _, credentials = value.partition(" ") */
		v = evapi_req_header(req, "Authorization");
		if (!v || !(sp = strchr(v, ' ')) || sp == v || !sp[1])
			return NULL;
		if ((size_t)(sp - v) != 6 || strncasecmp(v, "bearer", 6) != 0) {
			*why = INVALID;
			return NULL;
		}
		*why = NULL;
		return creds_new(s, sp + 1, strlen(sp + 1), v, (size_t)(sp - v),
		                 NULL, NULL);
	case EVAPI_SECURITY_HTTP_BASIC: {
		char *text, *colon;
		v = evapi_req_header(req, "Authorization");
		sp = v ? strchr(v, ' ') : NULL;
		if (!v || !*v || (size_t)((sp ? sp : v + strlen(v)) - v) != 5 ||
		    strncasecmp(v, "basic", 5) != 0)
			return NULL;
		*why = INVALID;
		sp = sp ? sp + 1 : "";
		if (!(text = malloc(strlen(sp) + 1)))
			return NULL;
		if (b64_ascii(sp, text) != 0 || !(colon = strchr(text, ':'))) {
			free(text);
			return NULL;
		}
		*colon = '\0';
		*why = NULL;
		c = creds_new(s, NULL, 0, v, 5, text, colon + 1);
		free(text);
		return c;
	}
	default:
		return NULL;
	}
	*why = NULL;
	return creds_new(s, v, strlen(v), NULL, 0, NULL, NULL);
}

/* The dependency's resolver. */
static int resolve(evapi_req *req, void *arg)
{
	const struct evapi__sec *s = arg;
	evapi_credentials *c;
	const char *why;
	int rc;

	if (!(c = read_creds(req, s, &why))) {
		if (!why) {
			evapi_reply_error(req, 500, "Out of memory");
			return 1;
		}
		/* FastAPI's HTTPBasic refuses bad base64 even when optional */
		if (s->optional && (s->kind != EVAPI_SECURITY_HTTP_BASIC ||
		                    strcmp(why, NOT_AUTH) == 0))
			return 0;
		return refuse(req, s, why);
	}
	if (evapi_req_state_set(req, s->state_key, STATE_TYPE, c, free) != 0) {
		free(c);
		evapi_reply_error(req, 500, "Out of memory");
		return 1;
	}
	if (!s->verify)
		return 0;
	rc = s->verify(req, c, s->arg);
	if (rc == 0 || rc == EVAPI_DEP_WAIT ||
	    req->state != EVAPI__REQ_RUNNING)
		return rc; /* valid, waiting, or it answered */
	return refuse(req, s, INVALID);
}

const evapi_credentials *evapi_req_credentials(const evapi_req *req,
                                               const char *scheme_name)
{
	const struct evapi__sec *s;
	if (!req || !scheme_name || !req->app->secs)
		return NULL;
	for (s = req->app->secs->head; s; s = s->next)
		if (strcmp(s->name, scheme_name) == 0)
			return evapi_req_state(req, s->state_key, STATE_TYPE);
	return NULL;
}

/* ---- declaring ----------------------------------------------------------- */

static const char *default_name(evapi_security_kind k)
{
	switch (k) {
	case EVAPI_SECURITY_API_KEY_HEADER: return "APIKeyHeader";
	case EVAPI_SECURITY_API_KEY_QUERY: return "APIKeyQuery";
	case EVAPI_SECURITY_API_KEY_COOKIE: return "APIKeyCookie";
	case EVAPI_SECURITY_HTTP_BEARER: return "HTTPBearer";
	case EVAPI_SECURITY_HTTP_BASIC: return "HTTPBasic";
	}
	return NULL;
}

static int realm_ok(const char *r)
{
	for (; r && *r; r++)
		if ((unsigned char)*r < 0x20 || *r == 0x7f || *r == '"' ||
		    *r == '\\')
			return 0;
	return 1;
}

static void sec_free(struct evapi__sec *s)
{
	free(s->name);
	free(s->param);
	free(s->www);
	free(s->state_key);
	free(s);
}

const evapi_dep *evapi_app_security(evapi_app *app,
                                    const evapi_security_config *cfg)
{
	struct evapi__sec *s;
	const char *name;
	size_t len;
	int rc;

	if (!app)
		return NULL;
	if (!cfg || !(name = cfg->name ? cfg->name : default_name(cfg->kind)) ||
	    !realm_ok(cfg->realm) ||
	    (cfg->lane != EVAPI_INLINE && cfg->lane != EVAPI_POOL)) {
		evapi__log(app, EVAPI_LOG_ERROR,
		           "evapi_app_security: bad kind, lane or realm");
		return NULL;
	}
	if (!app->secs && !(app->secs = calloc(1, sizeof *app->secs)))
		return NULL;
	/* declares it for OpenAPI, and checks the name and param */
	rc = evapi_app_security_scheme(app, name, cfg->kind, cfg->param,
	                               cfg->description);
	if (rc != 0) {
		evapi__log(app, EVAPI_LOG_ERROR,
		           "evapi_app_security %s: %s", name, evapi_strerror(rc));
		return NULL;
	}
	if (!(s = calloc(1, sizeof *s)))
		return NULL;
	len = cfg->realm ? strlen(cfg->realm) : 0;
	s->name = strdup(name);
	s->param = cfg->param ? strdup(cfg->param) : NULL;
	s->www = malloc(len + 16);
	s->state_key = malloc(strlen(name) + 20);
	if (!s->name || (cfg->param && !s->param) || !s->www ||
	    !s->state_key) {
		sec_free(s);
		return NULL;
	}
	if (len)
		snprintf(s->www, len + 16, "Basic realm=\"%s\"", cfg->realm);
	else
		strcpy(s->www, "Basic");
	snprintf(s->state_key, strlen(name) + 20, "evapi.security.%s", name);
	s->kind = cfg->kind;
	s->optional = cfg->optional;
	s->verify = cfg->verify;
	s->arg = cfg->arg;
	s->dep.cb = resolve;
	s->dep.arg = s;
	s->dep.lane = cfg->lane;
	s->dep.security = s->name;
	s->dep.name = s->name;
	s->next = app->secs->head;
	app->secs->head = s;
	return &s->dep;
}

void evapi__security_free(evapi_app *app)
{
	struct evapi__sec *s;
	if (!app->secs)
		return;
	while ((s = app->secs->head)) {
		app->secs->head = s->next;
		sec_free(s);
	}
	free(app->secs);
	app->secs = NULL;
}

/* ---- comparing ------------------------------------------------------------ */

int evapi_secure_equals(const void *given, size_t given_len,
                        const void *expected, size_t expected_len)
{
	const volatile unsigned char *g = given, *e = expected;
	unsigned char diff = 0;
	size_t i;

	if (!given || !expected)
		return 0;
	/* as long as the secret, whatever the input: the time tells the
	 * lengths, never where the bytes differ */
	for (i = 0; i < expected_len; i++)
		diff |= (unsigned char)((i < given_len ? g[i] : 0) ^ e[i]);
	return (diff == 0) & (given_len == expected_len);
}

int evapi_secure_streq(const char *given, const char *expected)
{
	if (!given || !expected)
		return 0;
	return evapi_secure_equals(given, strlen(given), expected,
	                           strlen(expected));
}
