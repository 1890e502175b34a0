/*
 * dns.h: host names looked up on the pool (dns.c), for the loop's
 * client connections that would otherwise resolve inside their connect
 * call on the loop.
 */
#ifndef EVAPI_DNS_H
#define EVAPI_DNS_H

#include "internal.h"

struct addrinfo;
typedef struct evapi__dns evapi__dns;

/* On the loop, once: the addresses found (freed when it returns), or
 * NULL with `err` saying why there are none. */
typedef void (*evapi__dns_cb)(void *arg, const struct addrinfo *res,
                              const char *err);

/* 1 when `host` is an IPv4 or IPv6 address: nothing to look up. */
EVAPI_HIDDEN int evapi__dns_is_numeric(const char *host);
/* Looks `host` (and `service`, may be NULL) up on a pool worker, for
 * sockets of `socktype` (SOCK_STREAM...); `cb` runs once on the loop
 * unless abandoned. NULL: out of memory or the pool refused the job
 * (no `cb`). Loop thread. */
EVAPI_HIDDEN evapi__dns *evapi__dns_start(evapi_app *app, const char *host,
                                          const char *service, int socktype,
                                          evapi__dns_cb cb, void *arg);
/* `cb` will not run; the lookup finishes on its worker and is dropped. */
EVAPI_HIDDEN void evapi__dns_abandon(evapi__dns *d);
/* The numeric form of one address found; 0, or -1. */
EVAPI_HIDDEN int evapi__dns_numeric(const struct addrinfo *ai, char *out,
                                    size_t cap);

#endif
