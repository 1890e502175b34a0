/*
 * model.c: typed bodies (evapi/model.h): a C struct described once, from
 * which a declared route's body fields and response schema are derived,
 * and which is filled from a validated body and serialised as a reply.
 *
 * Threads: evapi__model_decl runs at registration (schema.c), before the
 * loop starts. Everything else reads only the model (static const data)
 * and its arguments, so any thread may call it; evapi_req_model reads
 * the request's validated body, written once by the loop before the
 * handler ran (schema.c).
 *
 * One validator: a model never validates anything itself. Its members
 * become evapi_field entries (C type -> JSON type, plus the bounds the C
 * type needs: an int32's range, a fixed buffer's length), owned by the
 * decl, and schema.c checks requests against those. Filling then only
 * copies values that are already valid and coerced; it still checks each
 * JSON type, so a body that was not validated against this model is
 * refused rather than misread.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <evapi/model.h>

#include "internal.h"

#define MAX_DEPTH 32

/* A block of derived declaration data, freed with its decl. */
struct evapi__mblock {
	struct evapi__mblock *next;
	void *mem;
};

static void *keep(struct evapi__decl *d, size_t n)
{
	struct evapi__mblock *b = malloc(sizeof *b);
	if (!b)
		return NULL;
	if (!(b->mem = calloc(1, n))) {
		free(b);
		return NULL;
	}
	b->next = d->derived;
	d->derived = b;
	return b->mem;
}

void evapi__model_decl_free(struct evapi__decl *d)
{
	while (d->derived) {
		struct evapi__mblock *b = d->derived;
		d->derived = b->next;
		free(b->mem);
		free(b);
	}
}

/* The JSON type of a C type, and whether `x->size` fits it. */
static int member_type(const evapi_member *x, evapi_type *t)
{
	switch (x->ctype) {
	case EVAPI_C_INT64:
		*t = EVAPI_INT;
		return x->size == sizeof(int64_t);
	case EVAPI_C_INT32:
		*t = EVAPI_INT;
		return x->size == sizeof(int32_t);
	case EVAPI_C_DOUBLE:
		*t = EVAPI_NUMBER;
		return x->size == sizeof(double);
	case EVAPI_C_BOOL:
		*t = EVAPI_BOOL;
		return x->size == sizeof(bool) || x->size == sizeof(int);
	case EVAPI_C_STRING:
		*t = EVAPI_STRING;
		return x->size == sizeof(char *);
	case EVAPI_C_CHARS:
		*t = EVAPI_STRING;
		return x->size >= 1;
	case EVAPI_C_STRUCT:
		*t = EVAPI_OBJECT;
		return x->model && x->model->size == x->size;
	case EVAPI_C_ARRAY:
		/* elements of any type but another array */
		*t = EVAPI_ARRAY;
		return x->size == sizeof(void *) && x->items &&
		       x->items->ctype != EVAPI_C_ARRAY && x->items->size;
	}
	return 0;
}

static int model_ok(const evapi_model *m)
{
	return m && m->members && m->size && m->name &&
	       evapi__valid_component_name(m->name);
}

static const evapi_field *derive(struct evapi__decl *d, const evapi_model *m,
                                 int depth, int *rc);

/* One member (or an array's element) as a field. Returns 0 or an error. */
static int derive_one(struct evapi__decl *d, const evapi_member *x,
                      evapi_field *f, int depth)
{
	evapi_field *item;
	int rc;

	if (!member_type(x, &f->type))
		return EVAPI_EINVAL;
	f->name = x->name;
	f->required = x->required;
	f->dflt = x->dflt;
	f->bounds = x->bounds;
	f->ge = x->ge;
	f->le = x->le;
	f->min_len = x->min_len;
	f->max_len = x->max_len;
	f->description = x->description;
	f->example = x->example;
	switch (x->ctype) {
	case EVAPI_C_INT32:
		/* the C type's range is a bound like any other */
		if (!(f->bounds & EVAPI_GE) || f->ge < INT32_MIN)
			f->ge = INT32_MIN;
		if (!(f->bounds & EVAPI_LE) || f->le > INT32_MAX)
			f->le = INT32_MAX;
		f->bounds |= EVAPI_GE | EVAPI_LE;
		break;
	case EVAPI_C_CHARS:
		/* any max_len characters of UTF-8 fit, with the NUL */
		if (!(f->bounds & EVAPI_MAX_LEN))
			f->max_len = (x->size - 1) / 4;
		else if (f->max_len > (x->size - 1) / 4)
			return EVAPI_EINVAL;
		f->bounds |= EVAPI_MAX_LEN;
		break;
	case EVAPI_C_STRUCT:
		if (!(f->fields = derive(d, x->model, depth + 1, &rc)))
			return rc;
		f->forbid_extra = x->model->forbid_extra;
		break;
	case EVAPI_C_ARRAY:
		if (!(item = keep(d, sizeof *item)))
			return EVAPI_ENOMEM;
		if ((rc = derive_one(d, x->items, item, depth + 1)) != 0)
			return rc;
		f->items = item;
		break;
	default:
		break;
	}
	return 0;
}

/* The evapi_field list of a model ({NULL}-ended, owned by d), or NULL
 * with *rc set. */
static const evapi_field *derive(struct evapi__decl *d, const evapi_model *m,
                                 int depth, int *rc)
{
	const evapi_member *x;
	evapi_field *fields, *f;
	size_t n = 0;

	*rc = EVAPI_EINVAL;
	if (depth > MAX_DEPTH || !model_ok(m))
		return NULL;
	for (x = m->members; x->name; x++)
		n++;
	if (!(fields = keep(d, (n + 1) * sizeof *fields))) {
		*rc = EVAPI_ENOMEM;
		return NULL;
	}
	for (x = m->members, f = fields; x->name; x++, f++) {
		if (x->offset > m->size || x->size > m->size - x->offset ||
		    (x->ctype == EVAPI_C_ARRAY &&
		     (x->count_offset > m->size ||
		      sizeof(size_t) > m->size - x->count_offset)))
			return NULL;
		if ((*rc = derive_one(d, x, f, depth)) != 0)
			return NULL;
	}
	*rc = 0;
	return fields;
}

/* response_model: the first 2xx response gets the model as its schema
 * (it must not have one), or a 200 response is added in front. */
static int derive_responses(struct evapi__decl *d, const evapi_model *m)
{
	const evapi_response *x, *user = d->d.responses;
	evapi_response *out, *ok = NULL;
	evapi_field *root;
	size_t n = 0;
	int rc;

	if (!(root = keep(d, sizeof *root)))
		return EVAPI_ENOMEM;
	if (!(root->fields = derive(d, m, 1, &rc)))
		return rc;
	root->name = "response";
	root->type = EVAPI_OBJECT;
	root->forbid_extra = m->forbid_extra;
	for (x = user; x && x->status; x++)
		n++;
	if (!(out = keep(d, (n + 2) * sizeof *out)))
		return EVAPI_ENOMEM;
	for (x = user; x && x->status && !ok; x++)
		if (x->status >= 200 && x->status < 300)
			ok = out + (x - user);
	if (ok) {
		memcpy(out, user, n * sizeof *out);
		if (ok->schema)
			return EVAPI_EINVAL;
	} else {
		if (n)
			memcpy(out + 1, user, n * sizeof *out);
		ok = out;
		ok->status = 200;
		ok->description = "Successful Response";
	}
	ok->schema = root;
	if (!ok->schema_name)
		ok->schema_name = m->name;
	d->d.responses = out;
	return 0;
}

int evapi__model_decl(struct evapi__decl *d)
{
	const evapi_model *m = d->d.body_model;
	int rc;

	if (m) {
		if (d->d.body)
			return EVAPI_EINVAL;
		if (!(d->d.body = derive(d, m, 0, &rc)))
			return rc;
		if (m->forbid_extra)
			d->d.body_forbid_extra = 1;
	}
	if (d->d.response_model)
		return derive_responses(d, d->d.response_model);
	return 0;
}

/* ---- filling a struct ------------------------------------------------- */

static int fill(const evapi_model *m, json_t *obj, char *out, int depth);

/* One value into p (zeroed memory) as `x` says. */
static int fill_value(const evapi_member *x, json_t *v, char *p, char *obj,
                      int depth)
{
	const char *s;
	size_t len, i;
	int rc;

	switch (x->ctype) {
	case EVAPI_C_INT64: {
		int64_t n = json_integer_value(v);
		if (!json_is_integer(v))
			return EVAPI_EINVAL;
		memcpy(p, &n, sizeof n);
		return 0;
	}
	case EVAPI_C_INT32: {
		json_int_t j = json_integer_value(v);
		int32_t n = (int32_t)j;
		if (!json_is_integer(v) || j < INT32_MIN || j > INT32_MAX)
			return EVAPI_EINVAL;
		memcpy(p, &n, sizeof n);
		return 0;
	}
	case EVAPI_C_DOUBLE: {
		double f = json_number_value(v);
		if (!json_is_number(v))
			return EVAPI_EINVAL;
		memcpy(p, &f, sizeof f);
		return 0;
	}
	case EVAPI_C_BOOL:
		if (!json_is_boolean(v))
			return EVAPI_EINVAL;
		if (x->size == sizeof(bool)) {
			bool b = json_is_true(v);
			memcpy(p, &b, sizeof b);
		} else {
			int b = json_is_true(v);
			memcpy(p, &b, sizeof b);
		}
		return 0;
	case EVAPI_C_STRING:
	case EVAPI_C_CHARS:
		s = json_string_value(v);
		len = json_string_length(v);
		if (!s || strlen(s) != len) /* not a string, or NULs */
			return EVAPI_EINVAL;
		if (x->ctype == EVAPI_C_CHARS) {
			if (len >= x->size)
				return EVAPI_EINVAL;
			memcpy(p, s, len + 1);
		} else {
			char *copy = strdup(s);
			if (!copy)
				return EVAPI_ENOMEM;
			memcpy(p, &copy, sizeof copy);
		}
		return 0;
	case EVAPI_C_STRUCT:
		return fill(x->model, v, p, depth + 1);
	case EVAPI_C_ARRAY: {
		char *items = NULL;
		if (!json_is_array(v))
			return EVAPI_EINVAL;
		len = json_array_size(v);
		if (len && !(items = calloc(len, x->items->size)))
			return EVAPI_ENOMEM;
		/* stored first, so a failure part-way is freed as a whole */
		memcpy(p, &items, sizeof items);
		memcpy(obj + x->count_offset, &len, sizeof len);
		for (i = 0; i < len; i++)
			if ((rc = fill_value(x->items, json_array_get(v, i),
			                     items + i * x->items->size, NULL,
			                     depth + 1)) != 0)
				return rc;
		return 0;
	}
	}
	return EVAPI_EINVAL;
}

static int fill(const evapi_model *m, json_t *obj, char *out, int depth)
{
	const evapi_member *x;
	int rc;

	if (depth > MAX_DEPTH || !json_is_object(obj))
		return EVAPI_EINVAL;
	for (x = m->members; x->name; x++) {
		json_t *v = json_object_get(obj, x->name);
		if (!v || json_is_null(v))
			continue; /* optional, no default: left zero */
		if ((rc = fill_value(x, v, out + x->offset, out, depth)) != 0)
			return rc;
	}
	return 0;
}

static int fill_all(const evapi_model *m, json_t *obj, void *out)
{
	int rc;

	memset(out, 0, m->size);
	if ((rc = fill(m, obj, out, 0)) != 0) {
		evapi_model_free(m, out);
		memset(out, 0, m->size);
	}
	return rc;
}

int evapi_req_model(const evapi_req *req, const evapi_model *m, void *out)
{
	if (!req || !m || !out || !req->route || !req->route->decl ||
	    req->route->decl->d.body_model != m || !req->json)
		return EVAPI_EINVAL;
	return fill_all(m, req->json, out);
}

int evapi_model_parse(const evapi_model *m, json_t *v, void *out,
                      json_t **errors)
{
	struct evapi__decl *d;
	json_t *errs = NULL, *ok = NULL;
	int rc;

	if (errors)
		*errors = NULL;
	if (!m || !v || !out)
		return EVAPI_EINVAL;
	if (!(d = calloc(1, sizeof *d)))
		return EVAPI_ENOMEM;
	d->d.body_model = m;
	if ((rc = evapi__model_decl(d)) != 0 ||
	    (rc = evapi__decl_fields(d, d->d.body, 0)) != 0)
		goto out;
	if (!(errs = json_array())) {
		rc = EVAPI_ENOMEM;
		goto out;
	}
	if ((ok = evapi__decl_body_value(d, v, errs)) != NULL) {
		rc = fill_all(m, ok, out);
	} else if (json_array_size(errs)) {
		rc = EVAPI_EINVAL;
		if (errors) {
			*errors = errs;
			errs = NULL;
		}
	} else {
		rc = EVAPI_ENOMEM;
	}
out:
	json_decref(ok);
	json_decref(errs);
	evapi__decl_free(d);
	return rc;
}

/* ---- serialising ------------------------------------------------------ */

static json_t *to_json(const evapi_model *m, const char *obj, int depth);

/* One value at p as `x` says (new), or NULL. */
static json_t *value_json(const evapi_member *x, const char *p,
                          const char *obj, int depth)
{
	switch (x->ctype) {
	case EVAPI_C_INT64: {
		int64_t i;
		memcpy(&i, p, sizeof i);
		return json_integer((json_int_t)i);
	}
	case EVAPI_C_INT32: {
		int32_t i;
		memcpy(&i, p, sizeof i);
		return json_integer(i);
	}
	case EVAPI_C_DOUBLE: {
		double f;
		memcpy(&f, p, sizeof f);
		return isfinite(f) ? json_real(f) : NULL;
	}
	case EVAPI_C_BOOL:
		if (x->size == sizeof(bool)) {
			bool b;
			memcpy(&b, p, sizeof b);
			return json_boolean(b);
		} else {
			int b;
			memcpy(&b, p, sizeof b);
			return json_boolean(b);
		}
	case EVAPI_C_STRING: {
		const char *s;
		memcpy(&s, p, sizeof s);
		return s ? json_string(s) : json_null();
	}
	case EVAPI_C_CHARS:
		return json_stringn(p, strnlen(p, x->size));
	case EVAPI_C_STRUCT:
		return to_json(x->model, p, depth + 1);
	case EVAPI_C_ARRAY: {
		const char *items;
		size_t n, i;
		json_t *a = json_array();
		memcpy(&items, p, sizeof items);
		memcpy(&n, obj + x->count_offset, sizeof n);
		for (i = 0; a && items && i < n; i++) {
			json_t *v = value_json(x->items,
			                       items + i * x->items->size, NULL,
			                       depth + 1);
			if (!v || json_array_append_new(a, v) != 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	}
	return NULL;
}

static json_t *to_json(const evapi_model *m, const char *obj, int depth)
{
	const evapi_member *x;
	json_t *o;

	if (depth > MAX_DEPTH || !(o = json_object()))
		return NULL;
	for (x = m->members; x->name; x++) {
		json_t *v = value_json(x, obj + x->offset, obj, depth);
		if (!v || json_object_set_new(o, x->name, v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

json_t *evapi_model_to_json(const evapi_model *m, const void *obj)
{
	if (!m || !m->members || !obj)
		return NULL;
	return to_json(m, obj, 0);
}

int evapi_reply_model(evapi_req *req, int status, const evapi_model *m,
                      const void *obj)
{
	/* a NULL body is logged with the route and answered 500 */
	return evapi_reply_json(req, status, evapi_model_to_json(m, obj));
}

static void free_members(const evapi_model *m, char *obj, int depth);

static void free_value(const evapi_member *x, char *p, char *obj, int depth)
{
	char *s;
	size_t n, i;

	if (depth > MAX_DEPTH)
		return;
	switch (x->ctype) {
	case EVAPI_C_STRING:
		memcpy(&s, p, sizeof s);
		free(s);
		s = NULL;
		memcpy(p, &s, sizeof s);
		break;
	case EVAPI_C_STRUCT:
		if (x->model)
			free_members(x->model, p, depth + 1);
		break;
	case EVAPI_C_ARRAY:
		memcpy(&s, p, sizeof s);
		memcpy(&n, obj + x->count_offset, sizeof n);
		for (i = 0; s && i < n; i++)
			free_value(x->items, s + i * x->items->size, NULL,
			           depth + 1);
		free(s);
		s = NULL;
		n = 0;
		memcpy(p, &s, sizeof s);
		memcpy(obj + x->count_offset, &n, sizeof n);
		break;
	default:
		break;
	}
}

static void free_members(const evapi_model *m, char *obj, int depth)
{
	const evapi_member *x;

	for (x = m->members; x->name; x++)
		free_value(x, obj + x->offset, obj, depth);
}

void evapi_model_free(const evapi_model *m, void *obj)
{
	if (m && m->members && obj)
		free_members(m, obj, 0);
}
