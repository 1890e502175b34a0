/*
 * fuzz_json.c: libFuzzer target for the JSON body helper
 * (evapi_req_json: depth limit, jansson, the 422 reply it builds).
 * The request has no connection, so the reply is built and dropped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static evapi_app app;
	evapi_req *req = calloc(1, sizeof *req);
	char *body = malloc(size + 1);
	json_t *j;
	int rc;

	if (!req || !body)
		goto out;
	evapi_config_init(&app.cfg);
	app.cfg.max_json_depth = 16;
	app.loop_thread = pthread_self();
	memcpy(body, data, size);
	body[size] = '\0';
	req->app = &app;
	req->body = body;
	req->body_len = size;
	rc = evapi_req_json(req, &j);
	if (rc == 0 && !j)
		__builtin_trap();
	if (rc != 0 && (rc != EVAPI_EJSON || req->resp.status != 422))
		__builtin_trap();
	if (req->json)
		json_decref(req->json);
	evapi__resp_clear(&req->resp);
out:
	free(req);
	free(body);
	return 0;
}
