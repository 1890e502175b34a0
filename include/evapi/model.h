/*
 * evapi/model.h: JSON bodies as typed C values (a Pydantic model and
 * FastAPI's response_model, in C).
 *
 * A model describes a C struct once: each member's JSON name, C type,
 * offset and the constraints of schema.h. The same description
 *   - validates a declared route's body (evapi_route_decl.body_model):
 *     evapi derives the route's evapi_field list from it, so the 422
 *     items are exactly those of the equivalent untyped declaration;
 *   - fills the struct from the validated body (evapi_req_model), defaults
 *     included;
 *   - documents the body, and a route's response (response_model), under
 *     components/schemas by the model's name;
 *   - serialises a struct as a reply (evapi_reply_model): only the
 *     declared members go out.
 *
 *   typedef struct note { char *title; int64_t priority; bool done; } note;
 *   static const evapi_member note_members[] = {
 *       {EVAPI_MEMBER(note, title, EVAPI_C_STRING), .required = 1,
 *        .bounds = EVAPI_MIN_LEN, .min_len = 1},
 *       {EVAPI_MEMBER(note, priority, EVAPI_C_INT64), .dflt = "0",
 *        .bounds = EVAPI_GE | EVAPI_LE, .ge = 0, .le = 5},
 *       {EVAPI_MEMBER(note, done, EVAPI_C_BOOL), .dflt = "false"},
 *       {0}};
 *   static const evapi_model note_model = {
 *       .name = "Note", .size = sizeof(note), .members = note_members};
 *
 *   static void create(evapi_req *req, void *arg)
 *   {
 *       note n;
 *       if (evapi_req_model(req, &note_model, &n) != 0) {
 *           evapi_reply_error(req, 500, "Internal Server Error");
 *           return;
 *       }
 *       ...
 *       evapi_reply_model(req, 201, &note_model, &n);
 *       evapi_model_free(&note_model, &n);
 *   }
 *
 * Models are static data, borrowed until every app using them is freed.
 * Threads: every function here is thread-safe (a model is read-only
 * data); evapi_req_model and evapi_reply_model follow the request's rules
 * (any lane, as evapi_req_json and evapi_reply_json).
 */
#ifndef EVAPI_MODEL_H
#define EVAPI_MODEL_H

#include <stddef.h>
#include <jansson.h>
#include <evapi/common.h>
#include <evapi/request.h>
#include <evapi/schema.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The C type of a member, and the JSON type it reads and writes. */
typedef enum evapi_ctype {
	EVAPI_C_INT64 = 1, /* int64_t (long long): JSON integer */
	EVAPI_C_INT32,     /* int32_t: JSON integer; unless narrower bounds
	                      are declared, ge/le are its range, so an
	                      out-of-range value is a 422 like any bound */
	EVAPI_C_DOUBLE,    /* double: JSON number */
	EVAPI_C_BOOL,      /* bool or int (by the member's size): boolean */
	EVAPI_C_STRING,    /* char *: owned, NUL-terminated; filled with a
	                      new copy (evapi_model_free frees it); NULL for
	                      an absent optional member, written as null */
	EVAPI_C_CHARS,     /* char[N], a fixed buffer in the struct. Every
	                      value must fit: max_len (characters) defaults to
	                      (N - 1) / 4, and a declared one must satisfy
	                      4 * max_len + 1 <= N (a UTF-8 character is at
	                      most 4 bytes) */
	EVAPI_C_STRUCT,    /* a nested struct, embedded (not a pointer), of
	                      `model`: a JSON object */
	EVAPI_C_ARRAY      /* T *, a new array (evapi_model_free frees it)
	                      of `items` elements, with its length in the
	                      size_t at `count_offset`: a JSON array. min_len /
	                      max_len count items. Elements of any type but
	                      another array; NULL and 0 when absent */
} evapi_ctype;

/**
 * One member of a model. The constraint members mean what they mean in
 * evapi_field (required, dflt as JSON text, bounds, ge/le, min_len/max_len,
 * description, example). An optional member without a default that is
 * absent or null is left zero (0, false, NULL, ""). Use EVAPI_MEMBER for
 * the first four members, then designated initialisers. An array of
 * members ends with an entry whose name is NULL.
 */
typedef struct evapi_member {
	const char *name;   /* JSON name; NULL ends the array */
	evapi_ctype ctype;
	size_t offset;      /* offsetof(struct, member) */
	size_t size;        /* sizeof the member (checked at registration) */
	int required;
	const char *dflt;
	unsigned bounds;    /* evapi_bound bits */
	double ge, le;
	size_t min_len, max_len;
	const struct evapi_model *model; /* EVAPI_C_STRUCT: its model */
	const char *description;
	const char *example;
	/* EVAPI_C_ARRAY: one element (name unused, offset 0, size: the
	 * element's, e.g. sizeof(char *) for strings), and where the count
	 * is: offsetof(struct, count member), a size_t. */
	const struct evapi_member *items;
	size_t count_offset;
} evapi_member;

/** name, ctype, offset and size of `member` of `type`, named as in C. */
#define EVAPI_MEMBER(type, member, ctype_)                                 \
	.name = #member, .ctype = ctype_, .offset = offsetof(type, member),  \
	.size = sizeof(((type *)0)->member)

/** A C struct described for JSON. */
typedef struct evapi_model {
	const char *name;  /* OpenAPI components/schemas name
	                      ([A-Za-z0-9._-]), e.g. "Note" */
	size_t size;       /* sizeof the struct */
	const evapi_member *members; /* {NULL}-ended */
	/* 1: a member the model does not declare is refused with 422
	 * extra_forbidden (Pydantic's extra="forbid"); 0: ignored, as
	 * Pydantic's default. Also for a nested model. */
	int forbid_extra;
} evapi_model;

/**
 * Fills `*out` (model->size bytes, overwritten) from the validated body
 * of a route declared with body_model = `m`, defaults included. Strings
 * and arrays are new: release them with evapi_model_free. Returns 0,
 * EVAPI_EINVAL (the route's body_model is not `m`, or the body is absent:
 * body_optional) or EVAPI_ENOMEM; on error `*out` holds nothing to free.
 */
EVAPI_EXPORT int evapi_req_model(const evapi_req *req, const evapi_model *m,
                                 void *out);

/**
 * Validates `v` against `m` as a declared body is validated, without a
 * route: on success fills `*out` as evapi_req_model does and returns 0;
 * on invalid input returns EVAPI_EINVAL and, when `errors` is not NULL,
 * sets it to a new array of the 422 detail items (loc starting with
 * "body"); EVAPI_EINVAL with *errors NULL for a bad model; EVAPI_ENOMEM.
 * Borrows `v`.
 */
EVAPI_EXPORT int evapi_model_parse(const evapi_model *m, json_t *v, void *out,
                                   json_t **errors);

/**
 * The declared members of `obj` as a JSON object (FastAPI's
 * response_model: members not in the model never go out). A NULL string
 * is null. Returns new, or NULL when out of memory, or a string is not
 * valid UTF-8 or a double is not finite.
 */
EVAPI_EXPORT json_t *evapi_model_to_json(const evapi_model *m,
                                         const void *obj);

/**
 * Replies evapi_model_to_json(m, obj) with `status`. When it cannot be
 * serialised, logs it with the route and answers 500 (returning
 * EVAPI_EINVAL). Borrows `obj`. Returns as evapi_reply_json.
 */
EVAPI_EXPORT int evapi_reply_model(evapi_req *req, int status,
                                   const evapi_model *m, const void *obj);

/** Frees the EVAPI_C_STRING and EVAPI_C_ARRAY members of `obj` (nested
 *  structs and elements included) and sets them to NULL (counts to 0);
 *  not `obj` itself. NULL is a no-op. */
EVAPI_EXPORT void evapi_model_free(const evapi_model *m, void *obj);

#ifdef __cplusplus
}
#endif
#endif
