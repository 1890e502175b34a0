/*
 * kore_hello.c: the Kore peer: a Kore module answering the hello JSON.
 * Built by bench/run as a shared object loaded by bench/kore.conf.
 */
#include <kore/kore.h>
#include <kore/http.h>

int hello(struct http_request *);

static const char body[] = "{\"Hello\":\"World\"}";

int hello(struct http_request *req)
{
	http_response_header(req, "content-type", "application/json");
	http_response(req, 200, body, sizeof body - 1);
	return KORE_RESULT_OK;
}
