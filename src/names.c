/*
 * names.c: the name tables: HTTP methods (in the order routes are
 * registered per method), lanes, status reasons and evapi's error codes.
 * Pure data; any thread.
 */
#include <string.h>

#include "internal.h"

/* ---- methods --------------------------------------------------------------- */

static const struct {
	unsigned bit;
	const char *name;
} methods[] = {
	{EVAPI_GET, "GET"},       {EVAPI_HEAD, "HEAD"},
	{EVAPI_POST, "POST"},     {EVAPI_PUT, "PUT"},
	{EVAPI_PATCH, "PATCH"},   {EVAPI_DELETE, "DELETE"},
	{EVAPI_OPTIONS, "OPTIONS"},
};

unsigned evapi__method_at(size_t i)
{
	return i < sizeof methods / sizeof methods[0] ? methods[i].bit : 0;
}

const char *evapi_method_name(evapi_method m)
{
	size_t i;
	for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (methods[i].bit == (unsigned)m)
			return methods[i].name;
	return NULL;
}

void evapi__allow_string(unsigned mask, char *buf, size_t len)
{
	size_t i, used = 0;
	if (len == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
		size_t n;
		if (!(mask & methods[i].bit))
			continue;
		n = strlen(methods[i].name);
		if (used + n + 3 > len)
			break;
		if (used) {
			memcpy(buf + used, ", ", 2);
			used += 2;
		}
		memcpy(buf + used, methods[i].name, n + 1);
		used += n;
	}
}

/* ---- lanes ------------------------------------------------------------------ */

const char *evapi_lane_name(evapi_lane lane)
{
	return lane == EVAPI_POOL ? "pool" : "inline";
}

/* ---- status reasons --------------------------------------------------------- */

const char *evapi__reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	return status < 300 ? "OK" : status < 400 ? "Redirect"
	       : status < 500 ? "Client Error" : "Server Error";
}

/* ---- error codes ------------------------------------------------------------ */

const char *evapi_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define EVAPI_ERR_CASE(name, val, msg)                                        \
	case val:                                                            \
		return msg;
		EVAPI_ERRNO_MAP(EVAPI_ERR_CASE)
#undef EVAPI_ERR_CASE
	}
	return "unknown error";
}
