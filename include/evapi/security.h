/*
 * evapi/security.h: security dependencies in FastAPI's shapes (APIKeyHeader,
 * APIKeyQuery, APIKeyCookie, HTTPBearer, HTTPBasic), each documented in
 * the OpenAPI document (components.securitySchemes, and the `security`
 * of every operation it guards), and a constant-time comparison.
 *
 * evapi_app_security declares the scheme and returns a dependency
 * (evapi/depends.h) to put on the app, a router or a route. For each
 * request it reads the credential and answers as FastAPI 0.92 does when
 * there is none:
 *
 *   scheme            missing / malformed                       body detail
 *   API key (header,  403                                       "Not authenticated"
 *   query, cookie)
 *   HTTP Bearer       403 (no header, no "scheme credentials")  "Not authenticated"
 *                     403 (another scheme than Bearer)          "Invalid authentication credentials"
 *   HTTP Basic        401 + WWW-Authenticate: Basic             "Not authenticated"
 *                     (no header, another scheme)
 *                     401 + WWW-Authenticate: Basic (bad        "Invalid authentication credentials"
 *                     base64, not ASCII, no ':')
 *
 * With a realm, Basic's header is `Basic realm="<realm>"`. Then it stores
 * the credential in the request's state (evapi_req_credentials) and
 * calls `verify`, which decides whether it is valid: see
 * evapi_verify_cb. With `optional` set (FastAPI's auto_error=False), a
 * missing or malformed credential is not an error: verify is not
 * called, evapi_req_credentials gives NULL, and the request goes on.
 */
#ifndef EVAPI_SECURITY_H
#define EVAPI_SECURITY_H

#include <stddef.h>
#include <evapi/common.h>
#include <evapi/app.h>
#include <evapi/schema.h>
#include <evapi/depends.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A request's credential, as its scheme read it. Borrowed, as the
 *  request. */
typedef struct evapi_credentials {
	const char *scheme_name; /* the security scheme's name */
	evapi_security_kind kind;
	/* API key: the key; HTTP Bearer: the token (and `scheme` the word
	 * the client sent, "Bearer" or "bearer"); Basic: NULL */
	const char *credentials;
	const char *scheme;
	const char *username, *password; /* HTTP Basic only */
} evapi_credentials;

/**
 * Checks a credential, in the dependency's lane (see evapi/depends.h:
 * inline on the loop, may wait; pool on a worker, may block). Returns 0
 * when it is valid; EVAPI_DEP_WAIT when it started request-bound work
 * whose continuation calls evapi_dep_resume (valid) or replies
 * (invalid); or, having replied itself, anything. Any other non-zero
 * return without a reply answers the scheme's refusal: 403 {"detail":
 * "Invalid authentication credentials"} for an API key or Bearer token,
 * 401 with the same detail and WWW-Authenticate for Basic. `c` is
 * borrowed for the call (evapi_req_credentials gives it again).
 */
typedef int (*evapi_verify_cb)(evapi_req *req, const evapi_credentials *c,
                               void *arg);

/** A security dependency. Zero-initialise it and set members by name. */
typedef struct evapi_security_config {
	evapi_security_kind kind;  /* required */
	/* The scheme's name in components.securitySchemes [FastAPI's class
	 * name: "APIKeyHeader", "APIKeyQuery", "APIKeyCookie", "HTTPBearer",
	 * "HTTPBasic"]; unique in the app. */
	const char *name;
	const char *param;         /* API key: the header, query parameter or
	                              cookie name (required); Bearer: the
	                              bearerFormat [none] */
	const char *realm;         /* Basic: WWW-Authenticate's realm [none] */
	const char *description;   /* OpenAPI [none] */
	int optional;              /* 1: FastAPI's auto_error=False */
	evapi_verify_cb verify;    /* [NULL: any credential is accepted] */
	void *arg;                 /* verify's; borrowed for the app's life */
	evapi_lane lane;           /* [EVAPI_INLINE] where verify runs */
} evapi_security_config;

/**
 * Declares the scheme (as evapi_app_security_scheme) and returns its
 * dependency: pass it to evapi_app_dep, evapi_router_dep or
 * evapi_route_dep (its `security` member names the scheme, so every
 * route it guards lists it in the OpenAPI document). `cfg` and its
 * strings are copied. Returns the dependency (borrowed until
 * evapi_app_free), or NULL: bad config (an API key without `param`, a
 * realm with '"' or a control byte), name taken, app running, or out of
 * memory; the app's log says which.
 */
EVAPI_EXPORT const evapi_dep *evapi_app_security(
	evapi_app *app, const evapi_security_config *cfg);

/** The credential the security dependency `scheme_name` read for this
 *  request, or NULL (it did not run, or found none with `optional`).
 *  Same threads as evapi_req_state. */
EVAPI_EXPORT const evapi_credentials *evapi_req_credentials(
	const evapi_req *req, const char *scheme_name);

/**
 * Compares `given` (from the client) with `expected` (the secret) in
 * time that depends only on their lengths, never on where they differ
 * (Python's secrets.compare_digest). Returns 1 when equal, else 0 (and
 * 0 when either is NULL). Thread-safe: yes.
 */
EVAPI_EXPORT int evapi_secure_equals(const void *given, size_t given_len,
                                     const void *expected,
                                     size_t expected_len);
/** evapi_secure_equals of two strings. */
EVAPI_EXPORT int evapi_secure_streq(const char *given, const char *expected);

#ifdef __cplusplus
}
#endif
#endif
