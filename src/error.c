/*
 * error.c: names for evapi's error codes, and filling an evapi_error.
 * Pure data; any thread.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

int evapi__error_set(evapi_error *err, int code, const char *fmt, ...)
{
	va_list ap;
	if (err) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return code;
}

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
