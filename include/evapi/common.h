/*
 * evapi/common.h: symbols shared by every evapi header: export marker,
 * error codes and log levels.
 */
#ifndef EVAPI_COMMON_H
#define EVAPI_COMMON_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(EVAPI_BUILDING)
#define EVAPI_EXPORT __attribute__((visibility("default")))
#else
#define EVAPI_EXPORT
#endif

/*
 * Error codes. Every int-returning evapi function returns 0 on success or
 * one of these (all negative). evapi_strerror() names them.
 */
#define EVAPI_ERRNO_MAP(X)                                                   \
	X(EINVAL, -1, "invalid argument")                                    \
	X(ENOMEM, -2, "out of memory")                                       \
	X(ENOENT, -3, "no such item")                                        \
	X(EBUSY, -4, "pool queue full")                                      \
	X(EGONE, -5, "client gone or request already finished")              \
	X(EALREADY, -6, "request already answered")                          \
	X(ECANCELED, -7, "operation cancelled")                              \
	X(ETHREAD, -8, "called from the wrong thread")                       \
	X(EBIND, -9, "cannot bind the listening socket")                     \
	X(ESTATE, -10, "not allowed in the current state")                   \
	X(EJSON, -11, "invalid JSON body (already answered with 422)")       \
	X(ERANGE, -12, "value out of range")                                 \
	X(ESYS, -13, "system call failed")                                   \
	X(ETIMEDOUT, -14, "upstream timed out")                              \
	X(ECONNREFUSED, -15, "upstream refused the connection")              \
	X(ECONNRESET, -16, "upstream connection reset or closed early")      \
	X(EPROTO, -17, "upstream sent a malformed reply")                    \
	X(ETOOBIG, -18, "upstream reply over the size limit")                \
	X(EUPSTREAM, -19, "upstream call failed")                            \
	X(EUNAVAIL, -20, "database unavailable")                             \
	X(EDB, -21, "database reported an error")

enum evapi_errno {
#define EVAPI_ERR_ENUM(name, val, msg) EVAPI_##name = (val),
	EVAPI_ERRNO_MAP(EVAPI_ERR_ENUM)
#undef EVAPI_ERR_ENUM
};

/** Describes an evapi error code. Returns a static string (never NULL).
 *  Thread-safe: yes. */
EVAPI_EXPORT const char *evapi_strerror(int err);

/** Log levels, most severe first. */
typedef enum evapi_log_level {
	EVAPI_LOG_ERROR = 0,
	EVAPI_LOG_WARN = 1,
	EVAPI_LOG_INFO = 2, /* includes the access log */
	EVAPI_LOG_DEBUG = 3
} evapi_log_level;

/** Receives every log line evapi emits at or above the configured level.
 *  `msg` is borrowed for the call only and has no trailing newline.
 *  May be called from the loop thread or a worker: must be thread-safe. */
typedef void (*evapi_log_cb)(evapi_log_level level, const char *msg,
                             void *arg);

#ifdef __cplusplus
}
#endif
#endif
