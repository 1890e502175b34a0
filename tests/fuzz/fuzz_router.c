/*
 * fuzz_router.c: libFuzzer target for route matching and strict
 * percent-decoding of paths (src/router.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void h(evapi_req *req, void *arg)
{
	(void)req;
	(void)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static evapi__router *r;
	evapi__match m;
	char *path, *scratch, *dec;
	long n;

	if (!r) {
		r = evapi__router_new();
		evapi__router_add(r, EVAPI_GET, "/", EVAPI_INLINE, h, NULL);
		evapi__router_add(r, EVAPI_GET | EVAPI_POST, "/users/{id}",
		                  EVAPI_INLINE, h, NULL);
		evapi__router_add(r, EVAPI_PUT, "/a/{x}/b/{y}", EVAPI_POOL, h,
		                  NULL);
		evapi__router_add(r, EVAPI_DELETE, "/files/{name}/raw",
		                  EVAPI_INLINE, h, NULL);
	}
	path = malloc(size + 1);
	scratch = malloc(size + 1);
	dec = malloc(size + 1);
	if (!path || !scratch || !dec)
		goto out;
	memcpy(path, data, size);
	path[size] = '\0';
	evapi__router_match(r, size ? (1u << (data[0] % 8)) : EVAPI_GET, path,
	                    scratch, &m);
	n = evapi__pct_decode((const char *)data, size, dec, (int)(size & 1));
	if (n > (long)size)
		__builtin_trap();
out:
	free(path);
	free(scratch);
	free(dec);
	return 0;
}
