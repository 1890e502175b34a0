/*
 * error.c: names for evapi's error codes. Pure data; any thread.
 */
#include "internal.h"

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
