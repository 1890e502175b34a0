/*
 * dns.c: host names looked up on a pool worker, never on the loop.
 * getaddrinfo blocks for as long as DNS takes (seconds when a server
 * does not answer), so a client library that resolves a name inside its
 * connect call (hiredis) would stall every connection of the loop. Its
 * caller resolves here first and connects to a numeric address.
 *
 * Threads: evapi__dns_start, evapi__dns_abandon and the callback run on
 * the loop thread; getaddrinfo runs on a pool worker, which touches only
 * the lookup's own copies (name, service, hints, result).
 *
 * Lifetime: the lookup belongs to the pool until its completion runs on
 * the loop; then the callback runs (unless abandoned) and the lookup is
 * freed. An abandoned lookup still finishes on its worker and is
 * dropped: getaddrinfo cannot be interrupted.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "dns.h"

struct evapi__dns {
	evapi__job job;          /* first: the pool hands it back */
	evapi__dns_cb cb;        /* loop */
	void *arg;               /* loop */
	int abandoned;           /* loop */
	struct addrinfo hints;   /* set before the submit */
	struct addrinfo *res;    /* the worker's, read after completion */
	char err[160];           /* the worker's, read after completion */
	char *service;           /* NULL when none */
	char host[];
};

int evapi__dns_is_numeric(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return host && (inet_pton(AF_INET, host, buf) == 1 ||
	                inet_pton(AF_INET6, host, buf) == 1);
}

static void dns_work(evapi__job *job)
{
	evapi__dns *d = (evapi__dns *)job;
	int rc = getaddrinfo(d->host, d->service, &d->hints, &d->res);

	if (rc != 0) {
		d->res = NULL;
		snprintf(d->err, sizeof d->err, "cannot resolve %s: %s",
		         d->host, gai_strerror(rc));
	} else if (!d->res) {
		snprintf(d->err, sizeof d->err, "cannot resolve %s: no address",
		         d->host);
	}
}

static void dns_done(evapi__job *job, int status)
{
	evapi__dns *d = (evapi__dns *)job;

	if (!d->abandoned) {
		if (status != 0)
			d->cb(d->arg, NULL, "the host name lookup was cancelled");
		else
			d->cb(d->arg, d->res, d->res ? NULL : d->err);
	}
	if (d->res)
		freeaddrinfo(d->res);
	free(d->service);
	free(d);
}

evapi__dns *evapi__dns_start(evapi_app *app, const char *host,
                             const char *service, int socktype,
                             evapi__dns_cb cb, void *arg)
{
	size_t n = strlen(host);
	evapi__dns *d = calloc(1, sizeof *d + n + 1);

	if (!d)
		return NULL;
	memcpy(d->host, host, n + 1);
	if (service && !(d->service = strdup(service))) {
		free(d);
		return NULL;
	}
	d->hints.ai_family = AF_UNSPEC;
	d->hints.ai_socktype = socktype;
	d->hints.ai_flags = AI_ADDRCONFIG;
	d->cb = cb;
	d->arg = arg;
	d->job.work = dns_work;
	d->job.done = dns_done;
	if (!app->pool || evapi__pool_submit(app->pool, &d->job) != 0) {
		free(d->service);
		free(d);
		return NULL;
	}
	return d;
}

void evapi__dns_abandon(evapi__dns *d)
{
	if (d)
		d->abandoned = 1;
}

int evapi__dns_numeric(const struct addrinfo *ai, char *out, size_t cap)
{
	return getnameinfo(ai->ai_addr, ai->ai_addrlen, out, (socklen_t)cap,
	                   NULL, 0, NI_NUMERICHOST) == 0
	               ? 0
	               : -1;
}
