/*
 * evapi/common.h: symbols shared by every evapi header: export marker,
 * error codes and log levels.
 */
#ifndef EVAPI_COMMON_H
#define EVAPI_COMMON_H

#ifdef __cplusplus
extern "C" {
#endif

/* Compiler attributes, only where the compiler is known to take them:
 * the headers stay plain C99 / C++ elsewhere. */
#if defined(__GNUC__) && defined(EVAPI_BUILDING)
#define EVAPI_EXPORT __attribute__((visibility("default")))
#else
#define EVAPI_EXPORT
#endif
#if defined(__GNUC__)
#define EVAPI_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define EVAPI_DEPRECATED(why) __attribute__((deprecated(why)))
#else
#define EVAPI_PRINTF(fmt, args)
#define EVAPI_DEPRECATED(why)
#endif

/*
 * ABI policy: there is no ABI promise before 1.0. The structs evapi
 * asks you to fill in (evapi_config, evapi_fetch_opts, evapi_cors_config,
 * evapi_route_decl, evapi_field, evapi_upload) and the ones it fills in
 * (evapi_stats, evapi_error) may gain, lose or reorder members between
 * minor versions. Always start from the documented defaults (for
 * evapi_config: evapi_config_init; for the others: a zero-initialised
 * struct such as `evapi_fetch_opts o = {0};` or designated
 * initialisers), set members by name, and rebuild against the headers
 * of the library you link.
 */

/*
 * Error codes. Every int-returning evapi function returns 0 on success or
 * one of these (all negative). evapi_strerror() names them.
 */
#define EVAPI_ERRNO_MAP(X)                                                   \
	X(EINVAL, -1, "invalid argument")                                    \
	X(ENOMEM, -2, "out of memory")                                       \
	X(ENOENT, -3, "no such item")                                        \
	X(EBUSY, -4, "queue full")                                           \
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
	X(EUPSTREAM, -19, "upstream call failed")                           \
	X(EEXIST, -20, "already registered")                                \
	X(EUNAVAIL, -21, "database unavailable")                            \
	X(EDB, -22, "database reported an error")

enum evapi_errno {
#define EVAPI_ERR_ENUM(name, val, msg) EVAPI_##name = (val),
	EVAPI_ERRNO_MAP(EVAPI_ERR_ENUM)
#undef EVAPI_ERR_ENUM
};

/** Describes an evapi error code. Returns a static string (never NULL).
 *  Thread-safe: yes. */
EVAPI_EXPORT const char *evapi_strerror(int err);

/** Detail of a failure, filled in by the functions that take one (e.g.
 *  evapi_app_new_ex): `code` is the EVAPI_E* code, `text` says what was
 *  wrong (for a config: the member and its value). Lives on the caller's
 *  stack; every function taking one accepts NULL. */
typedef struct evapi_error {
	int code;
	char text[160];
} evapi_error;

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
