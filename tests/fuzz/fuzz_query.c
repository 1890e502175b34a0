/*
 * fuzz_query.c: libFuzzer target for query-string parsing into a
 * request's arena (evapi__parse_query, src/request.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	evapi_req *req = calloc(1, sizeof *req);
	char *q = malloc(size + 1);
	int i;

	if (!req || !q)
		goto out;
	memcpy(q, data, size);
	q[size] = '\0';
	evapi__arena_init(&req->arena, req->arena_buf, sizeof req->arena_buf);
	if (evapi__parse_query(req, q) == 0) {
		for (i = 0; i < req->nquery; i++)
			if (!req->query[i].name || !req->query[i].value)
				__builtin_trap();
		evapi_req_query(req, "a");
	}
	evapi__arena_release(&req->arena);
out:
	free(req);
	free(q);
	return 0;
}
