/*
 * db_dns.c: host names of a PostgreSQL URL resolved off the loop.
 *
 * libpq's PQconnectStartParams/PQconnectPoll never block, except for one
 * thing: a host given by name is looked up with a blocking getaddrinfo
 * inside them (libpq's docs: only hostaddr avoids DNS). On the loop that
 * would stall every connection of the app for as long as DNS takes. So
 * when db_url names a host (no hostaddr given, not a unix socket), each
 * connection attempt first runs getaddrinfo on a pool worker; the loop
 * then starts libpq with hostaddr set to the addresses found, and the
 * host list repeated to match (one entry per address, so libpq still
 * tries each in turn, and still checks TLS and .pgpass against the name).
 *
 * Threads: evapi__db_dns_start, the completion and evapi__db_dns_abandon
 * run on the loop; lookup() runs on a worker and touches only the job.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "db.h"

struct evapi__db_dns {
	evapi__job job;
	evapi__db_dns_cb cb;     /* NULL once abandoned */
	void *arg;
	char *host, *port;       /* the URL's lists, copied */
	char *out_host, *out_addr, *out_port; /* lists to connect with */
	char err[256];
};

static char *opt(const PQconninfoOption *o, const char *key)
{
	for (; o->keyword; o++)
		if (strcmp(o->keyword, key) == 0)
			return o->val && *o->val ? o->val : NULL;
	return NULL;
}

/* 1 when the host is a unix socket (a path, or @abstract). */
static int is_socket(const char *h, size_t n)
{
	return n == 0 || h[0] == '/' || h[0] == '@';
}

int evapi__db_url_dns(const char *url, char **host, char **port)
{
	PQconninfoOption *o = PQconninfoParse(url, NULL);
	const char *h, *p;
	int need = 0;

	*host = *port = NULL;
	if (!o)
		return 0; /* evapi__db_new already refused a bad URL */
	h = opt(o, "host");
	p = opt(o, "port");
	if (h && !opt(o, "hostaddr")) {
		const char *s = h;
		while (*s && !need) {
			size_t n = strcspn(s, ",");
			if (!is_socket(s, n))
				need = 1;
			s += n + (s[n] == ',');
		}
	}
	if (need) {
		*host = strdup(h);
		*port = p ? strdup(p) : NULL;
		if (!*host || (p && !*port)) {
			free(*host);
			free(*port);
			*host = *port = NULL;
			need = -1;
		}
	}
	PQconninfoFree(o);
	return need;
}

typedef struct list {
	char *s;
	size_t len, cap;
	int n;                   /* items, empty ones included */
} list;

/* Appends `s` (n bytes, maybe none) as the next item of `l`. */
static int append(list *l, const char *s, size_t n)
{
	if (l->len + n + 2 > l->cap) {
		size_t c = (l->cap ? l->cap * 2 : 128) + n;
		char *b = realloc(l->s, c);
		if (!b)
			return -1;
		l->s = b;
		l->cap = c;
	}
	if (l->n++)
		l->s[l->len++] = ',';
	memcpy(l->s + l->len, s, n);
	l->len += n;
	l->s[l->len] = '\0';
	return 0;
}

/* The three lists grow together: one item each per address. */
static int add(list *h, list *a, list *p, const char *hs, size_t hn,
               const char *as, const char *ps, size_t pn)
{
	return append(h, hs, hn) || append(a, as, strlen(as)) ||
	       append(p, ps, pn);
}

/* Item i of a comma list (the only one when it has one), in *n bytes. */
static const char *item(const char *l, int i, size_t *n)
{
	const char *s = l;
	int k;

	if (!strchr(l, ',')) {
		*n = strlen(l);
		return l;
	}
	for (k = 0; k < i && s; k++)
		s = (s = strchr(s, ',')) ? s + 1 : NULL;
	if (!s) {
		*n = 0;
		return "";
	}
	*n = strcspn(s, ",");
	return s;
}

static void lookup(evapi__job *job)
{
	evapi__db_dns *d = (evapi__db_dns *)job;
	list h = { 0 }, a = { 0 }, p = { 0 };
	const char *s = d->host;
	int i = 0, bad = 0;

	for (; *s && !bad; i++) {
		size_t n = strcspn(s, ","), pn = 0;
		const char *pv = d->port ? item(d->port, i, &pn) : "";
		char name[256], buf[INET6_ADDRSTRLEN];
		struct addrinfo hints, *res = NULL, *ai;
		int rc;

		if (is_socket(s, n)) {
			/* an empty hostaddr: libpq uses the socket */
			bad = add(&h, &a, &p, s, n, "", pv, pn);
			s += n + (s[n] == ',');
			continue;
		}
		snprintf(name, sizeof name, "%.*s", (int)n, s);
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		if ((rc = getaddrinfo(name, NULL, &hints, &res)) != 0) {
			snprintf(d->err, sizeof d->err,
			         "could not translate host name \"%.128s\" "
			         "to address: %.80s", name, gai_strerror(rc));
			break;
		}
		for (ai = res; ai && !bad; ai = ai->ai_next) {
			const void *in = ai->ai_family == AF_INET6
			        ? (const void *)&((struct sockaddr_in6 *)
			                          (void *)ai->ai_addr)->sin6_addr
			        : (const void *)&((struct sockaddr_in *)
			                          (void *)ai->ai_addr)->sin_addr;
			if ((ai->ai_family != AF_INET &&
			     ai->ai_family != AF_INET6) ||
			    !inet_ntop(ai->ai_family, in, buf, sizeof buf))
				continue;
			bad = add(&h, &a, &p, s, n, buf, pv, pn);
		}
		freeaddrinfo(res);
		s += n + (s[n] == ',');
	}
	if (bad)
		snprintf(d->err, sizeof d->err, "out of memory");
	if (d->err[0] || !h.s) {
		if (!d->err[0])
			snprintf(d->err, sizeof d->err, "no address for %s",
			         d->host);
		free(h.s);
		free(a.s);
		free(p.s);
		return;
	}
	d->out_host = h.s;
	d->out_addr = a.s;
	/* one port for all (or none: the default) stays as the URL says */
	if (d->port && strchr(d->port, ','))
		d->out_port = p.s;
	else
		free(p.s);
}

static void dns_free(evapi__db_dns *d)
{
	free(d->host);
	free(d->port);
	free(d->out_host);
	free(d->out_addr);
	free(d->out_port);
	free(d);
}

static void looked_up(evapi__job *job, int status)
{
	evapi__db_dns *d = (evapi__db_dns *)job;
	const char *keys[4], *vals[4];
	int n = 0;

	if (d->cb) {
		if (status != 0)
			snprintf(d->err, sizeof d->err, "the app is stopping");
		if (!d->err[0]) {
			keys[n] = "host";
			vals[n++] = d->out_host;
			keys[n] = "hostaddr";
			vals[n++] = d->out_addr;
			if (d->out_port) {
				keys[n] = "port";
				vals[n++] = d->out_port;
			}
		}
		keys[n] = vals[n] = NULL;
		d->cb(d->arg, d->err[0] ? NULL : keys, vals,
		      d->err[0] ? d->err : NULL);
	}
	dns_free(d);
}

evapi__db_dns *evapi__db_dns_start(evapi_app *app, const char *host,
                                   const char *port, evapi__db_dns_cb cb,
                                   void *arg)
{
	evapi__db_dns *d = calloc(1, sizeof *d);

	if (!d)
		return NULL;
	d->host = strdup(host);
	d->port = port ? strdup(port) : NULL;
	d->cb = cb;
	d->arg = arg;
	d->job.work = lookup;
	d->job.done = looked_up;
	if (!d->host || (port && !d->port) ||
	    evapi__pool_submit(app->pool, &d->job) != 0) {
		dns_free(d);
		return NULL;
	}
	return d;
}

PGconn *evapi__db_connect_start(const char *url, const char *appname,
                                const char *const *xkeys,
                                const char *const *xvals)
{
	const char *keys[8], *vals[8];
	int n = 0, i;

	/* later entries override what the URL (expanded from dbname) says */
	keys[n] = "dbname";
	vals[n++] = url;
	for (i = 0; xkeys && xkeys[i] && n < 6; i++) {
		keys[n] = xkeys[i];
		vals[n++] = xvals[i];
	}
	keys[n] = "fallback_application_name";
	vals[n++] = appname;
	keys[n] = vals[n] = NULL;
	return PQconnectStartParams(keys, vals, 1);
}

void evapi__db_dns_abandon(evapi__db_dns *d)
{
	d->cb = NULL; /* freed by its completion, which calls no one */
}
