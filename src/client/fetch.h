/*
 * fetch.h: what the outbound client's files share (fetch.c, client.c,
 * client_sync.c): the result layout, the easy-handle setup and libcurl's
 * codes mapped to evapi's. Only these files include <curl/curl.h>.
 */
#ifndef EVAPI_FETCH_H
#define EVAPI_FETCH_H

#include <curl/curl.h>

#include "../internal.h"

struct evapi_fetch_res {
	int error;                  /* 0 or EVAPI_E* */
	int status;                 /* HTTP status, 0 without a reply */
	int too_big;                /* a callback hit the cap */
	size_t hseen;               /* header bytes of every response so far */
	size_t max;                 /* cap on header + body bytes */
	char *body;                 /* NUL-terminated, malloc'd */
	size_t len, cap;
	char *hdrs;                 /* "Name: value\0" lines of the last reply */
	size_t hlen, hcap;
	int64_t start_us;
	double ms;
	char errmsg[CURL_ERROR_SIZE];
};

/* Defaults that evapi_fetch_opts zeroes fall back to. */
typedef struct evapi__fetch_defaults {
	unsigned timeout_ms;
	unsigned connect_timeout_ms;
	size_t max_response_bytes;
} evapi__fetch_defaults;

#define EVAPI__FETCH_TIMEOUT_MS 10000u
#define EVAPI__FETCH_CONNECT_MS 3000u
#define EVAPI__FETCH_LOW_SPEED_S 10u
#define EVAPI__FETCH_MAX_BYTES ((size_t)8 << 20)
/* header bytes over all responses of one call, 1xx and redirects too */
#define EVAPI__FETCH_MAX_HEADER_BYTES ((size_t)64 << 10)

/* Checks `o` (URL scheme, method token, header lines) and configures `e`
 * (freshly created or reset) to perform it, writing into `res`.
 * `*hdrs` receives the header list to free after the transfer. Returns 0
 * or EVAPI_EINVAL / EVAPI_ENOMEM. Any thread: touches only `e`. */
EVAPI_HIDDEN int evapi__fetch_prepare(CURL *e, const evapi_fetch_opts *o,
                                      const evapi__fetch_defaults *d,
                                      evapi_fetch_res *res,
                                      struct curl_slist **hdrs);
/* The header callback evapi__fetch_prepare installs (`arg`: the result),
 * for a caller that wraps it to see where the header section ends. */
EVAPI_HIDDEN size_t evapi__fetch_on_header(char *data, size_t size, size_t n,
                                           void *arg);
/* The value of the `i`-th (from 0) header line called `name`, or NULL. */
EVAPI_HIDDEN const char *evapi__fetch_res_header_at(const evapi_fetch_res *res,
                                                    const char *name, int i);
/* Fills status, error and time from a finished transfer. */
EVAPI_HIDDEN void evapi__fetch_complete(CURL *e, CURLcode rc,
                                        evapi_fetch_res *res);
/* Frees the buffers of a result (not the result itself). */
EVAPI_HIDDEN void evapi__fetch_res_clear(evapi_fetch_res *res);
/* Marks a result that never completed (cancelled or refused). */
EVAPI_HIDDEN void evapi__fetch_res_fail(evapi_fetch_res *res, int error);
/* curl_global_init, once per process. */
EVAPI_HIDDEN int evapi__curl_init(void);

#endif
