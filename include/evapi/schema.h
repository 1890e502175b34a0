/*
 * evapi/schema.h: declared routes: typed path/query/header parameters, a
 * JSON body schema and multipart uploads, validated on the loop before the
 * handler runs (FastAPI's typed parameters, Pydantic bodies and
 * UploadFile), and described in the app's OpenAPI document.
 *
 * A route registered with evapi_app_route_decl() never sees bad input:
 * every problem is answered by the framework, on the loop, before a pool
 * route takes a worker:
 *   - 422 {"detail":[{"type","loc","msg","input"[,"ctx"]}, ...]}, one item
 *     per problem, with Pydantic v2's type names and messages;
 *   - 415 when a JSON body route gets another Content-Type (a missing
 *     Content-Type is read as JSON, as FastAPI does), or an upload route
 *     gets something other than multipart/form-data;
 *   - 413 / 400 when an upload breaks a size or count limit or is malformed.
 *
 * Declarations are static data: arrays of evapi_field ended by an entry
 * whose name is NULL, e.g.
 *
 *   static const evapi_field item_params[] = {
 *       {.name = "item_id", .in = EVAPI_IN_PATH, .type = EVAPI_INT,
 *        .required = 1, .bounds = EVAPI_GE, .ge = 1},
 *       {.name = "q", .type = EVAPI_STRING, .bounds = EVAPI_MAX_LEN,
 *        .max_len = 50},
 *       {.name = "limit", .type = EVAPI_INT, .dflt = "10",
 *        .bounds = EVAPI_GE | EVAPI_LE, .ge = 1, .le = 100},
 *       {0}};
 */
#ifndef EVAPI_SCHEMA_H
#define EVAPI_SCHEMA_H

#include <stddef.h>
#include <jansson.h>
#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

struct evapi_model; /* evapi/model.h */

/** Value types. Parameters take the first four. */
typedef enum evapi_type {
	EVAPI_STRING = 1,
	EVAPI_INT,    /* 64-bit signed */
	EVAPI_NUMBER, /* double, finite */
	EVAPI_BOOL,   /* true/false, 1/0, yes/no, on/off, t/f, y/n */
	EVAPI_OBJECT, /* body only: members in `fields` */
	EVAPI_ARRAY   /* body only: element in `items` */
} evapi_type;

/** Where a parameter is read from. The zero value is the query string,
 *  FastAPI's default for a parameter that is not in the path. */
typedef enum evapi_where {
	EVAPI_IN_QUERY = 0,
	EVAPI_IN_PATH,  /* a {name} segment of the route template */
	EVAPI_IN_HEADER /* `name` is the header name, case-insensitive */
} evapi_where;

/** Bits of evapi_field.bounds: which bounds apply. */
enum evapi_bound {
	EVAPI_GE = 1 << 0,      /* value >= ge (INT, NUMBER) */
	EVAPI_LE = 1 << 1,      /* value <= le (INT, NUMBER) */
	EVAPI_MIN_LEN = 1 << 2, /* STRING: characters; ARRAY: items */
	EVAPI_MAX_LEN = 1 << 3
};

/**
 * One declared parameter or body field. Use designated initialisers; the
 * zero value of every member means "not set". ABI: no promise before 1.0
 * (see evapi/common.h), as for evapi_upload and evapi_route_decl.
 */
typedef struct evapi_field {
	const char *name;  /* NULL ends an array of fields */
	evapi_type type;
	evapi_where in;    /* parameters only */
	int required;      /* absent -> 422 missing (path params always are) */
	/* Default when absent: for a parameter, text as it would appear in
	 * the request ("10"); for a body field, JSON text ("10", "\"x\"",
	 * "[]"). Checked against the declaration at registration. */
	const char *dflt;
	unsigned bounds;   /* evapi_bound bits */
	double ge, le;
	size_t min_len, max_len;
	const struct evapi_field *fields; /* OBJECT: its members */
	const struct evapi_field *items;  /* ARRAY: the element (name unused) */
	const char *description;          /* OpenAPI; may be NULL */
	/* OpenAPI example: for a parameter, text as it would appear in the
	 * request ("42"); for a body or response field, JSON text. Checked
	 * at registration, never validated against requests. */
	const char *example;
	/* OBJECT: 1 refuses members not in `fields` with 422
	 * extra_forbidden (Pydantic's extra="forbid"); 0 ignores them. */
	int forbid_extra;
} evapi_field;

/**
 * Upload limits of a multipart/form-data route. The body is streamed:
 * each file is written as it arrives, on pool workers (never on the
 * loop), into a nameless temporary file in `dir`, and reading pauses
 * while the writes are behind, so memory stays bounded whatever the
 * size; a limit is answered (413, 400) as soon as the bytes break it.
 * Once the body is whole, before the handler runs, each file gets a
 * sanitised name in `dir` that cannot leave it; the handler reads them
 * with evapi_req_file(). A refused body, or a client gone before the
 * body ended, leaves nothing in `dir`. Stored files stay on disk after
 * the request (also when the client left while the handler ran): the
 * handler moves or deletes them. Text fields, part headers and
 * delimiters together are bounded by the app's max_body_bytes. Zero
 * means the default in brackets.
 */
typedef struct evapi_upload {
	const char *dir;        /* existing directory (required) */
	size_t max_file_bytes;  /* [1 MiB] one file: 413 */
	size_t max_total_bytes; /* [8 MiB] all files together: 413 */
	int max_files;          /* [10] file parts: 400 */
	int max_fields;         /* [50] text parts: 400 */
	/* 1: also take a body of any other Content-Type as one file
	 * (field "file"), named by the route's {filename} path parameter
	 * when it has one. */
	int raw;
} evapi_upload;

/**
 * One documented response of a declared route (OpenAPI only: the handler
 * still chooses what it sends). Arrays end with an entry whose status is
 * 0. Every member but `status` may be zero:
 *   - content_type: ["application/json"], except that 204 and 304 have
 *     no body; "" declares a response without a body; streams are
 *     "text/event-stream" (schema: a string) or any other media type;
 *   - schema: the body's root, of any type (an OBJECT with `fields`, an
 *     ARRAY with `items`, ...); NULL is "any JSON", or for a JSON error
 *     status (>= 400) the framework's {"detail": ...} shape;
 *   - schema_name: puts the schema under components/schemas by that name
 *     ([A-Za-z0-9._-]; one name per schema);
 *   - example: JSON text for a JSON type, plain text otherwise.
 */
typedef struct evapi_response {
	int status;               /* 100..599; 0 ends the array */
	const char *description;  /* [the reason phrase] */
	const char *content_type;
	const evapi_field *schema;
	const char *schema_name;
	const char *example;
} evapi_response;

/**
 * A declared route. `params`, `body` and `upload` (and every string and
 * nested array they point to) are borrowed until evapi_app_free: static
 * const data is the intended use.
 */
typedef struct evapi_route_decl {
	unsigned methods;          /* bitwise OR of evapi_method */
	const char *path;          /* template, as for evapi_app_route */
	evapi_lane lane;
	evapi_handler_cb cb;
	void *arg;
	const evapi_field *params; /* NULL or {NULL}-ended */
	const evapi_field *body;   /* members of a JSON object body, or NULL */
	const char *body_name;     /* OpenAPI schema name [route-derived] */
	int body_optional;         /* 1: an empty body is allowed, and
	                              evapi_req_json gives JSON null */
	const evapi_upload *upload; /* multipart route; not with `body` */
	const char *summary;       /* OpenAPI summary; may be NULL */
	/* ---- OpenAPI only (the document; never checked on requests) ---- */
	const char *description;   /* CommonMark; may be NULL */
	const char *const *tags;   /* NULL-ended; groups operations in /docs */
	const evapi_response *responses; /* {0}-ended; NULL: 200 JSON. The
	                              framework's own answers (422 when any
	                              parameter or body is declared, 415,
	                              413, 400, 503 on the pool) are added
	                              unless declared here */
	const char *operation_id;  /* unique in the app; [FastAPI's:
	                              summary + path + method, e.g.
	                              "read_item_items__item_id__get", or
	                              without a summary "items__item_id__get",
	                              a "_2" suffix keeping defaults unique] */
	int deprecated;            /* 1: marked deprecated */
	const char *body_example;  /* JSON text of a whole body example */
	/* Security schemes (evapi_app_security_scheme, declared before the
	 * route) of which any one is required: NULL-ended names. */
	const char *const *security;
	/* ---- typed bodies (evapi/model.h) ---- */
	int body_forbid_extra;     /* 1: members not in `body` are refused
	                              (422 extra_forbidden) */
	/* The body as a C struct: `body` is derived from it (not with
	 * `body` or `upload`), body_name defaults to its name, and the
	 * handler reads it with evapi_req_model. */
	const struct evapi_model *body_model;
	/* The reply's model (FastAPI's response_model), for the document:
	 * the first 2xx of `responses` without a schema gets it, or a 200
	 * response is added. The handler replies with evapi_reply_model. */
	const struct evapi_model *response_model;
} evapi_route_decl;

/**
 * Registers a declared route. Checks the declaration: every path
 * parameter is in the template and every {name} of the template is
 * declared as a path parameter when any parameter is, names are unique,
 * types fit where they are used, defaults parse and satisfy their own
 * bounds, `body` and `upload` are not both set. Returns 0, EVAPI_EINVAL
 * (bad declaration, template or method), EVAPI_ENOMEM or EVAPI_ESTATE
 * (app already running).
 */
EVAPI_EXPORT int evapi_app_route_decl(evapi_app *app,
                                      const evapi_route_decl *decl);

/* ---- reading validated values (any lane) ----------------------------- */
/*
 * By declared name. Each returns 0 and sets *out, EVAPI_ENOENT when the
 * parameter was not sent and has no default (or is not declared), or
 * EVAPI_EINVAL when it is declared with another type. A query parameter
 * or header sent more than once: the last one is validated and read, as
 * evapi_req_query reads it.
 */
EVAPI_EXPORT int evapi_req_get_int(const evapi_req *req, const char *name,
                                   long long *out);
EVAPI_EXPORT int evapi_req_get_number(const evapi_req *req, const char *name,
                                      double *out);
EVAPI_EXPORT int evapi_req_get_bool(const evapi_req *req, const char *name,
                                    int *out);
/** A declared STRING parameter (or its default), or NULL. Borrowed. */
EVAPI_EXPORT const char *evapi_req_get_string(const evapi_req *req,
                                              const char *name);
/* The validated JSON body, defaults filled in: evapi_req_json(). */

/* ---- uploads ---------------------------------------------------------- */

/** A file written by an upload route. Every string is borrowed for the
 *  request's lifetime. */
typedef struct evapi_file {
	const char *field;        /* form field name ("file") */
	const char *filename;     /* as the client sent it; may be NULL */
	const char *stored;       /* sanitised name inside the upload dir */
	const char *path;         /* dir + "/" + stored */
	const char *content_type; /* of the part; "application/octet-stream"
	                             when not given */
	size_t size;
} evapi_file;

/** Number of files of an upload route's request (0 elsewhere). */
EVAPI_EXPORT int evapi_req_file_count(const evapi_req *req);

/** The i-th file (0-based, in body order), or NULL. Borrowed. */
EVAPI_EXPORT const evapi_file *evapi_req_file(const evapi_req *req, int i);

/** First text field `name` of a multipart body, or NULL. Borrowed;
 *  NUL-terminated (a value containing NUL was answered with 400). */
EVAPI_EXPORT const char *evapi_req_form(const evapi_req *req,
                                        const char *name);

/**
 * The store name evapi gives a client's filename: its last path
 * component (after '/' or '\\'), with every byte outside [A-Za-z0-9._-]
 * replaced by '_', leading dots removed, at most 100 bytes; "upload" when
 * nothing is left. Writes at most `len` bytes including the NUL. Returns
 * the length, or EVAPI_EINVAL when `name` contains a control byte or len
 * is too small to hold "upload". Thread-safe: yes.
 */
EVAPI_EXPORT int evapi_upload_safe_name(const char *name, char *out,
                                        size_t len);

/* ---- OpenAPI ---------------------------------------------------------- */

/** The kinds of evapi_app_security_scheme. */
typedef enum evapi_security_kind {
	EVAPI_SECURITY_API_KEY_HEADER = 1, /* `param`: the header name */
	EVAPI_SECURITY_API_KEY_QUERY,      /* `param`: the query name */
	EVAPI_SECURITY_API_KEY_COOKIE,     /* `param`: the cookie name */
	EVAPI_SECURITY_HTTP_BEARER,        /* `param`: bearerFormat or NULL */
	EVAPI_SECURITY_HTTP_BASIC          /* `param` unused */
} evapi_security_kind;

/**
 * Sets the document's info: title [the framework's name], version [its
 * version] and description (CommonMark) [none]; NULL keeps a member as
 * it is. Strings are copied. Returns 0, EVAPI_EINVAL (no app, or an
 * empty title or version), EVAPI_ENOMEM or EVAPI_ESTATE (running).
 */
EVAPI_EXPORT int evapi_app_openapi_info(evapi_app *app, const char *title,
                                        const char *version,
                                        const char *description);

/**
 * Declares a security scheme under components/securitySchemes, for the
 * `security` of declared routes. This only documents it (the Authorize
 * button of /docs sends the credential); evapi_app_security
 * (evapi/security.h) declares one and returns the dependency that
 * checks it. `name` ([A-Za-z0-9._-], unique),
 * `param` and `description` (may be NULL) are copied. Returns 0,
 * EVAPI_EINVAL (bad name or kind, an API key without `param`),
 * EVAPI_EEXIST (name taken), EVAPI_ENOMEM or EVAPI_ESTATE (running).
 */
EVAPI_EXPORT int evapi_app_security_scheme(evapi_app *app, const char *name,
                                           evapi_security_kind kind,
                                           const char *param,
                                           const char *description);

/** The app's OpenAPI 3.1 document as JSON. Returns new (json_decref) or
 *  NULL. Loop thread (or before evapi_app_run). */
EVAPI_EXPORT json_t *evapi_app_openapi(evapi_app *app);

#ifdef __cplusplus
}
#endif
#endif
