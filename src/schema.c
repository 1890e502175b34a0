/*
 * schema.c: declared routes: registering a declaration, checking a
 * request against it, and the typed accessors. Uploaded files are
 * stored by upload.c.
 *
 * Threads: registration runs on the creating thread before the loop
 * starts. evapi__decl_check runs on the loop, before the handler runs and
 * before a pool route is queued, so a bad request never takes a worker;
 * it writes the request's `parsed` and `json` (the validated body), which
 * are read-only afterwards.
 *
 * Error items follow Pydantic v2 as FastAPI reports them: type names and
 * messages are Pydantic's, `input` is what the client sent, `ctx` carries
 * the bound that was broken. Coercions are Pydantic's lax mode: query
 * text "42" is an integer, and so is "42" or 42.0 in a JSON body.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define MAX_DEPTH 32          /* nesting of declared bodies */

/* ---- text parsing (parameters, and strings in lax JSON) ----------------- */

enum perr {
	P_OK = 0,
	P_INT_PARSING,
	P_INT_SIZE,
	P_FLOAT_PARSING,
	P_FINITE,
	P_BOOL_PARSING
};

static const struct {
	const char *type, *msg;
} perr_info[] = {
	[P_INT_PARSING] = {"int_parsing", "Input should be a valid integer, "
	                                  "unable to parse string as an integer"},
	[P_INT_SIZE] = {"int_parsing_size", "Unable to parse input string as "
	                                    "an integer, exceeded maximum size"},
	[P_FLOAT_PARSING] = {"float_parsing", "Input should be a valid number, "
	                                      "unable to parse string as a number"},
	[P_FINITE] = {"finite_number", "Input should be a finite number"},
	[P_BOOL_PARSING] = {"bool_parsing", "Input should be a valid boolean, "
	                                    "unable to interpret input"},
};

static int is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
	       c == '\v';
}

/* Trims [*s, *e) of surrounding whitespace, as Pydantic does. */
static void trim(const char **s, const char **e)
{
	while (*s < *e && is_space((unsigned char)**s))
		(*s)++;
	while (*e > *s && is_space((unsigned char)(*e)[-1]))
		(*e)--;
}

/* "42", "+42", "-42", "42.000" (a zero fraction, as Pydantic allows). */
static int parse_int_text(const char *text, long long *out)
{
	const char *s = text, *e = text + strlen(text), *dot;
	unsigned long long v = 0, lim;
	int neg = 0;

	trim(&s, &e);
	if (s < e && (*s == '+' || *s == '-'))
		neg = *s++ == '-';
	if (s == e || *s < '0' || *s > '9')
		return P_INT_PARSING;
	dot = memchr(s, '.', (size_t)(e - s));
	if (dot) {
		const char *z;
		for (z = dot + 1; z < e; z++)
			if (*z != '0')
				return P_INT_PARSING;
		e = dot;
	}
	lim = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
	for (; s < e; s++) {
		if (*s < '0' || *s > '9')
			return P_INT_PARSING;
		if (v > (lim - (unsigned long long)(*s - '0')) / 10)
			return P_INT_SIZE;
		v = v * 10 + (unsigned long long)(*s - '0');
	}
	if (neg)
		*out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN
		                                               : -(long long)v;
	else
		*out = (long long)v;
	return P_OK;
}

static int parse_number_text(const char *text, double *out)
{
	const char *s = text, *e = text + strlen(text), *p;
	char buf[128], *end;
	double d;

	trim(&s, &e);
	if (s == e || (size_t)(e - s) >= sizeof buf)
		return P_FLOAT_PARSING;
	for (p = s; p < e; p++)
		if (!strchr("0123456789+-.eE", *p))
			return P_FLOAT_PARSING; /* no hex, inf, nan */
	memcpy(buf, s, (size_t)(e - s));
	buf[e - s] = '\0';
	errno = 0;
	d = strtod(buf, &end);
	if (*end || end == buf)
		return P_FLOAT_PARSING;
	if (!isfinite(d))
		return P_FINITE;
	*out = d;
	return P_OK;
}

static int parse_bool_text(const char *text, int *out)
{
	static const char *const yes[] = {"1", "on", "t", "true", "y", "yes"};
	static const char *const no[] = {"0", "off", "f", "false", "n", "no"};
	const char *s = text, *e = text + strlen(text);
	size_t i, n;

	trim(&s, &e);
	n = (size_t)(e - s);
	for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strlen(yes[i]) == n && strncasecmp(s, yes[i], n) == 0) {
			*out = 1;
			return P_OK;
		}
		if (strlen(no[i]) == n && strncasecmp(s, no[i], n) == 0) {
			*out = 0;
			return P_OK;
		}
	}
	return P_BOOL_PARSING;
}

/* Unicode code points of a UTF-8 string (what Python's len() counts). */
static size_t utf8_chars(const char *s, size_t len)
{
	size_t i, n = 0;
	for (i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* ---- error items -------------------------------------------------------- */

/* A JSON string for client text that may not be UTF-8. */
static json_t *text_json(const char *s)
{
	json_t *j;
	char *copy, *p;

	if (!s)
		return json_null();
	if ((j = json_string(s)) != NULL)
		return j;
	copy = strdup(s);
	if (!copy)
		return json_null();
	for (p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j ? j : json_null();
}

/* A bound as Python prints it: 1, 0.5, 1e+300. */
static json_t *bound_json(double b)
{
	if (b == floor(b) && fabs(b) < 9e15)
		return json_integer((json_int_t)b);
	return json_real(b);
}

static void bound_text(double b, char *buf, size_t len)
{
	int prec;
	if (b == floor(b) && fabs(b) < 9e15) {
		snprintf(buf, len, "%lld", (long long)b);
		return;
	}
	for (prec = 15; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, b);
		if (strtod(buf, NULL) == b)
			return;
	}
}

/* Appends one item; steals loc, input and ctx (each may be NULL). */
static void add_err(json_t *errs, const char *type, json_t *loc,
                    const char *msg, json_t *input, json_t *ctx)
{
	json_t *item = json_object();
	if (!item) {
		json_decref(loc);
		json_decref(input);
		json_decref(ctx);
		return;
	}
	json_object_set_new(item, "type", json_string(type));
	json_object_set_new(item, "loc", loc ? loc : json_array());
	json_object_set_new(item, "msg", json_string(msg));
	json_object_set_new(item, "input", input ? input : json_null());
	if (ctx)
		json_object_set_new(item, "ctx", ctx);
	json_array_append_new(errs, item);
}

static json_t *loc_with(json_t *loc, json_t *item)
{
	json_t *l = json_copy(loc);
	if (l)
		json_array_append_new(l, item);
	else
		json_decref(item);
	return l;
}

/* greater_than_equal / less_than_equal; steals input. */
static int bound_err(json_t *errs, json_t *loc, json_t *input, int ge,
                     double b)
{
	char t[40], msg[96];

	bound_text(b, t, sizeof t);
	snprintf(msg, sizeof msg, "Input should be %s than or equal to %s",
	         ge ? "greater" : "less", t);
	add_err(errs, ge ? "greater_than_equal" : "less_than_equal",
	        json_incref(loc), msg, input,
	        json_pack("{s:o}", ge ? "ge" : "le", bound_json(b)));
	return -1;
}

/* Bounds of a number; steals input (only used in an item). */
static int check_num_bounds(const evapi_field *f, double v, json_t *loc,
                            json_t *input, json_t *errs)
{
	if ((f->bounds & EVAPI_GE) && !(v >= f->ge))
		return bound_err(errs, loc, input, 1, f->ge);
	if ((f->bounds & EVAPI_LE) && !(v <= f->le))
		return bound_err(errs, loc, input, 0, f->le);
	json_decref(input);
	return 0;
}

/* string_too_short / string_too_long; steals input. */
static int str_len_err(json_t *errs, json_t *loc, json_t *input, int shrt,
                       size_t limit)
{
	char msg[96];

	snprintf(msg, sizeof msg, "String should have at %s %zu character%s",
	         shrt ? "least" : "most", limit, limit == 1 ? "" : "s");
	add_err(errs, shrt ? "string_too_short" : "string_too_long",
	        json_incref(loc), msg, input,
	        json_pack("{s:I}", shrt ? "min_length" : "max_length",
	                  (json_int_t)limit));
	return -1;
}

/* Length of a string in characters; steals input. */
static int check_str_len(const evapi_field *f, const char *s, size_t len,
                         json_t *loc, json_t *input, json_t *errs)
{
	size_t n = utf8_chars(s, len);

	if ((f->bounds & EVAPI_MIN_LEN) && n < f->min_len)
		return str_len_err(errs, loc, input, 1, f->min_len);
	if ((f->bounds & EVAPI_MAX_LEN) && n > f->max_len)
		return str_len_err(errs, loc, input, 0, f->max_len);
	json_decref(input);
	return 0;
}

/* ---- parameters -------------------------------------------------------- */

/* Parses and bounds-checks a parameter's text into v. Adds an item to
 * errs (when not NULL) and returns -1 on a problem. */
static int check_param_text(const evapi_field *f, const char *text,
                            json_t *loc, json_t *errs, evapi__val *v)
{
	json_t *dummy = NULL;
	int rc = P_OK;

	if (!errs)
		errs = dummy = json_array();
	v->f = f;
	v->present = 1;
	switch (f->type) {
	case EVAPI_INT:
		rc = parse_int_text(text, &v->i);
		if (rc == P_OK)
			rc = check_num_bounds(f, (double)v->i, loc, text_json(text),
			                      errs) ? -1 : P_OK;
		break;
	case EVAPI_NUMBER:
		rc = parse_number_text(text, &v->d);
		if (rc == P_OK)
			rc = check_num_bounds(f, v->d, loc, text_json(text), errs)
			             ? -1 : P_OK;
		break;
	case EVAPI_BOOL:
		rc = parse_bool_text(text, &v->b);
		break;
	default:
		v->s = text;
		rc = check_str_len(f, text, strlen(text), loc, text_json(text),
		                   errs) ? -1 : P_OK;
		break;
	}
	if (rc > 0)
		add_err(errs, perr_info[rc].type, json_incref(loc),
		        perr_info[rc].msg, text_json(text), NULL);
	json_decref(dummy);
	return rc == P_OK ? 0 : -1;
}

static const char *where_name(evapi_where w)
{
	return w == EVAPI_IN_PATH ? "path" : w == EVAPI_IN_HEADER ? "header"
	                                                          : "query";
}

/* ---- JSON bodies ------------------------------------------------------- */

static json_t *dflt_of(const struct evapi__decl *d, const evapi_field *f)
{
	int i;
	for (i = 0; d && i < d->ndflts; i++)
		if (d->dflts[i].f == f)
			return d->dflts[i].value;
	return NULL;
}

/* Adds one item about v; returns NULL, for the caller to return. */
static json_t *fail(json_t *errs, const char *type, const char *msg,
                    json_t *loc, json_t *v)
{
	add_err(errs, type, json_incref(loc), msg, json_incref(v), NULL);
	return NULL;
}

static json_t *fail_text(json_t *errs, int perr, json_t *loc, json_t *v)
{
	return fail(errs, perr_info[perr].type, perr_info[perr].msg, loc, v);
}

static json_t *check_value(const struct evapi__decl *d, const evapi_field *f,
                           json_t *v, json_t *loc, json_t *errs, int depth);

/* Pydantic's extra="forbid": one item per undeclared member, after the
 * declared members' items, in the order the client sent them. */
static void check_extra(const evapi_field *f, json_t *v, json_t *loc,
                        json_t *errs)
{
	const evapi_field *m;
	const char *key;
	json_t *child;

	json_object_foreach(v, key, child) {
		for (m = f->fields; m && m->name; m++)
			if (strcmp(m->name, key) == 0)
				break;
		if (!m || !m->name)
			add_err(errs, "extra_forbidden",
			        loc_with(loc, text_json(key)),
			        "Extra inputs are not permitted",
			        json_incref(child), NULL);
	}
}

static json_t *check_object(const struct evapi__decl *d, const evapi_field *f,
                            json_t *v, json_t *loc, json_t *errs, int depth)
{
	const evapi_field *m;
	size_t before = json_array_size(errs);
	json_t *out;

	if (!json_is_object(v))
		return fail(errs, "model_attributes_type",
		            "Input should be a valid dictionary or object to "
		            "extract fields from", loc, v);
	out = json_object();
	for (m = f->fields; m && m->name; m++) {
		json_t *child = json_object_get(v, m->name), *cv, *dv;
		if (!child) {
			if (m->required)
				add_err(errs, "missing",
				        loc_with(loc, json_string(m->name)),
				        "Field required", json_incref(v), NULL);
			else if ((dv = dflt_of(d, m)) != NULL)
				json_object_set_new(out, m->name,
				                    json_deep_copy(dv));
			continue;
		}
		if (json_is_null(child) && !m->required) {
			json_object_set_new(out, m->name, json_null());
			continue;
		}
		json_t *cloc = loc_with(loc, json_string(m->name));
		cv = check_value(d, m, child, cloc, errs, depth + 1);
		json_decref(cloc);
		if (cv)
			json_object_set_new(out, m->name, cv);
	}
	if (f->forbid_extra)
		check_extra(f, v, loc, errs);
	if (json_array_size(errs) != before) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* too_short / too_long of a list, with Pydantic's message and ctx. */
static json_t *list_len_err(json_t *errs, const char *type, size_t limit,
                            size_t n, json_t *loc, json_t *v)
{
	int shrt = type[4] == 's';
	char msg[128];

	snprintf(msg, sizeof msg,
	         "List should have at %s %zu item%s after validation, not %zu",
	         shrt ? "least" : "most", limit, limit == 1 ? "" : "s", n);
	add_err(errs, type, json_incref(loc), msg, json_incref(v),
	        json_pack("{s:s, s:I, s:I}", "field_type", "List",
	                  shrt ? "min_length" : "max_length", (json_int_t)limit,
	                  "actual_length", (json_int_t)n));
	return NULL;
}

static json_t *check_array(const struct evapi__decl *d, const evapi_field *f,
                           json_t *v, json_t *loc, json_t *errs, int depth)
{
	size_t before = json_array_size(errs), i, n;
	json_t *out, *item;

	if (!json_is_array(v))
		return fail(errs, "list_type", "Input should be a valid list",
		            loc, v);
	n = json_array_size(v);
	if ((f->bounds & EVAPI_MIN_LEN) && n < f->min_len)
		return list_len_err(errs, "too_short", f->min_len, n, loc, v);
	if ((f->bounds & EVAPI_MAX_LEN) && n > f->max_len)
		return list_len_err(errs, "too_long", f->max_len, n, loc, v);
	out = json_array();
	json_array_foreach(v, i, item) {
		json_t *iloc = loc_with(loc, json_integer((json_int_t)i));
		json_t *cv = check_value(d, f->items, item, iloc, errs, depth + 1);
		json_decref(iloc);
		if (cv)
			json_array_append_new(out, cv);
	}
	if (json_array_size(errs) != before) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* Validates v against f; returns the validated value (new) or NULL after
 * adding at least one item to errs. */
static json_t *check_value(const struct evapi__decl *d, const evapi_field *f,
                           json_t *v, json_t *loc, json_t *errs, int depth)
{
	evapi__val pv;
	double x;

	if (depth > MAX_DEPTH) {
		add_err(errs, "recursion_loop", json_incref(loc),
		        "Recursion error - cyclic reference detected", json_null(),
		        NULL);
		return NULL;
	}
	memset(&pv, 0, sizeof pv);
	switch (f->type) {
	case EVAPI_OBJECT:
		return check_object(d, f, v, loc, errs, depth);
	case EVAPI_ARRAY:
		return check_array(d, f, v, loc, errs, depth);
	case EVAPI_STRING:
		if (!json_is_string(v))
			return fail(errs, "string_type",
			            "Input should be a valid string", loc, v);
		if (check_str_len(f, json_string_value(v), json_string_length(v),
		                  loc, json_incref(v), errs))
			return NULL;
		return json_incref(v);
	case EVAPI_INT:
		if (json_is_integer(v)) {
			pv.i = json_integer_value(v);
		} else if (json_is_real(v)) {
			x = json_real_value(v);
			if (x != floor(x) || fabs(x) >= 9.2e18)
				return fail(errs, "int_from_float",
				            "Input should be a valid integer, got "
				            "a number with a fractional part", loc, v);
			pv.i = (long long)x;
		} else if (json_is_boolean(v)) {
			pv.i = json_is_true(v);
		} else if (json_is_string(v)) {
			int rc = parse_int_text(json_string_value(v), &pv.i);
			if (rc)
				return fail_text(errs, rc, loc, v);
		} else {
			return fail(errs, "int_type",
			            "Input should be a valid integer", loc, v);
		}
		if (check_num_bounds(f, (double)pv.i, loc, json_incref(v), errs))
			return NULL;
		return json_integer((json_int_t)pv.i);
	case EVAPI_NUMBER:
		if (json_is_number(v)) {
			x = json_number_value(v);
		} else if (json_is_boolean(v)) {
			x = json_is_true(v);
		} else if (json_is_string(v)) {
			int rc = parse_number_text(json_string_value(v), &x);
			if (rc)
				return fail_text(errs, rc, loc, v);
		} else {
			return fail(errs, "float_type",
			            "Input should be a valid number", loc, v);
		}
		if (check_num_bounds(f, x, loc, json_incref(v), errs))
			return NULL;
		return json_is_integer(v) ? json_incref(v) : json_real(x);
	case EVAPI_BOOL:
		if (json_is_boolean(v))
			return json_incref(v);
		if (json_is_number(v)) {
			x = json_number_value(v);
			if (x == 0 || x == 1)
				return json_boolean(x == 1);
		} else if (json_is_string(v)) {
			if (parse_bool_text(json_string_value(v), &pv.b) == P_OK)
				return json_boolean(pv.b);
		} else {
			return fail(errs, "bool_type",
			            "Input should be a valid boolean", loc, v);
		}
		return fail_text(errs, P_BOOL_PARSING, loc, v);
	}
	return NULL;
}

/* ---- registration ------------------------------------------------------ */

static int type_ok(evapi_type t, int body)
{
	return t >= EVAPI_STRING && t <= (body ? EVAPI_ARRAY : EVAPI_BOOL);
}

static int in_template(const char *tmpl, const char *name)
{
	size_t n = strlen(name);
	const char *p = tmpl;
	while ((p = strchr(p, '{')) != NULL) {
		if (strncmp(p + 1, name, n) == 0 && p[1 + n] == '}')
			return 1;
		p++;
	}
	return 0;
}

static int add_dflt(struct evapi__decl *d, const evapi_field *f, json_t *v)
{
	evapi__dflt *n = realloc(d->dflts, (size_t)(d->ndflts + 1) * sizeof *n);
	if (!n) {
		json_decref(v);
		return EVAPI_ENOMEM;
	}
	d->dflts = n;
	n[d->ndflts].f = f;
	n[d->ndflts].value = v;
	d->ndflts++;
	return 0;
}

static int valid_json(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
	json_decref(v);
	return v != NULL;
}

/* Checks a body field list (and its defaults) recursively. */
int evapi__decl_fields(struct evapi__decl *d, const evapi_field *fields,
                       int depth)
{
	const evapi_field *f, *g;
	int rc;

	if (depth > MAX_DEPTH)
		return EVAPI_EINVAL;
	for (f = fields; f->name; f++) {
		if (!*f->name || !type_ok(f->type, 1))
			return EVAPI_EINVAL;
		for (g = fields; g < f; g++)
			if (strcmp(g->name, f->name) == 0)
				return EVAPI_EINVAL;
		if (f->type == EVAPI_OBJECT && !f->fields)
			return EVAPI_EINVAL;
		if (f->type == EVAPI_OBJECT &&
		    (rc = evapi__decl_fields(d, f->fields, depth + 1)) != 0)
			return rc;
		if (f->type == EVAPI_ARRAY) {
			evapi_field one[2];
			/* no default on the element itself: an array element
			 * is never absent */
			if (!f->items || f->items->dflt)
				return EVAPI_EINVAL;
			memset(one, 0, sizeof one);
			one[0] = *f->items;
			one[0].name = "items";
			if ((rc = evapi__decl_fields(d, one, depth + 1)) != 0)
				return rc;
		}
		if (f->example && !valid_json(f->example))
			return EVAPI_EINVAL;
		if (f->dflt) {
			json_t *errs, *v, *loc, *ok;
			if (f->required)
				return EVAPI_EINVAL;
			v = json_loads(f->dflt, JSON_DECODE_ANY, NULL);
			if (!v)
				return EVAPI_EINVAL;
			errs = json_array();
			loc = json_array();
			ok = check_value(d, f, v, loc, errs, depth);
			json_decref(loc);
			json_decref(errs);
			json_decref(v);
			if (!ok)
				return EVAPI_EINVAL;
			if ((rc = add_dflt(d, f, ok)) != 0)
				return rc;
		}
	}
	return 0;
}

static int check_params(struct evapi__decl *d)
{
	const evapi_field *f, *g;
	int i;

	for (f = d->d.params; f && f->name; f++)
		d->nparams++;
	d->dflt_vals = calloc((size_t)(d->nparams ? d->nparams : 1),
	                      sizeof *d->dflt_vals);
	if (!d->dflt_vals)
		return EVAPI_ENOMEM;
	for (i = 0; i < d->nparams; i++) {
		f = &d->d.params[i];
		if (!*f->name || !type_ok(f->type, 0) ||
		    (f->in != EVAPI_IN_QUERY && f->in != EVAPI_IN_PATH &&
		     f->in != EVAPI_IN_HEADER))
			return EVAPI_EINVAL;
		if (f->in == EVAPI_IN_PATH &&
		    (!in_template(d->d.path, f->name) || f->dflt))
			return EVAPI_EINVAL;
		for (g = d->d.params; g < f; g++)
			if (strcmp(g->name, f->name) == 0)
				return EVAPI_EINVAL;
		if (f->example) {
			evapi__val v;
			json_t *loc = json_array();
			int bad = check_param_text(f, f->example, loc, NULL, &v);
			json_decref(loc);
			if (bad)
				return EVAPI_EINVAL;
		}
		if (f->dflt) {
			json_t *loc = json_array();
			int bad = f->required ||
			          check_param_text(f, f->dflt, loc, NULL,
			                           &d->dflt_vals[i]) != 0;
			json_decref(loc);
			if (bad)
				return EVAPI_EINVAL;
		}
	}
	return 0;
}

void evapi__decl_free(struct evapi__decl *d)
{
	int i;
	if (!d)
		return;
	evapi__model_decl_free(d);
	for (i = 0; i < d->ndflts; i++)
		json_decref(d->dflts[i].value);
	free(d->dflts);
	free(d->dflt_vals);
	free(d->body_name);
	free(d);
}

void evapi__decls_free(evapi_app *app)
{
	while (app->decls) {
		struct evapi__decl *d = app->decls;
		app->decls = d->next;
		evapi__decl_free(d);
	}
}

int evapi__valid_component_name(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("._-", *s)))
			return 0;
	return 1;
}

/* The OpenAPI-only members: documented responses, tags, operation id,
 * examples and security. Their schemas are checked as body fields are,
 * so their defaults parse and show in the document. */
static int check_docs(evapi_app *app, struct evapi__decl *d)
{
	const evapi_route_decl *r = &d->d;
	const evapi_response *x, *y;
	const struct evapi__decl *o;
	const char *const *t;
	int rc;

	for (x = r->responses; x && x->status; x++) {
		const char *ct = x->content_type ? x->content_type
		                                 : "application/json";
		if (x->status < 100 || x->status > 599 ||
		    (x->schema_name && !evapi__valid_component_name(x->schema_name)))
			return EVAPI_EINVAL;
		for (y = r->responses; y < x; y++)
			if (y->status == x->status)
				return EVAPI_EINVAL;
		if (x->example && evapi__is_json_type(ct) &&
		    !valid_json(x->example))
			return EVAPI_EINVAL;
		if (x->schema) {
			evapi_field one[2];
			memset(one, 0, sizeof one);
			one[0] = *x->schema;
			one[0].name = "response";
			if ((rc = evapi__decl_fields(d, one, 0)) != 0)
				return rc;
		}
	}
	for (t = r->tags; t && *t; t++)
		if (!**t)
			return EVAPI_EINVAL;
	for (t = r->security; t && *t; t++)
		if (!evapi__openapi_has_scheme(app, *t))
			return EVAPI_EINVAL;
	if (r->body_example && !valid_json(r->body_example))
		return EVAPI_EINVAL;
	if (r->operation_id) {
		/* one id names one operation: a single method */
		if (!*r->operation_id || (r->methods & (r->methods - 1)))
			return EVAPI_EINVAL;
		for (o = app->decls; o; o = o->next)
			if (o->d.operation_id &&
			    strcmp(o->d.operation_id, r->operation_id) == 0)
				return EVAPI_EEXIST;
	}
	return 0;
}

static char *derive_body_name(const evapi_route_decl *r)
{
	size_t n = strlen(r->path), i, o;
	char *s = malloc(n + 8);
	if (!s)
		return NULL;
	o = (size_t)sprintf(s, "Body");
	for (i = 0; i < n; i++)
		s[o++] = (r->path[i] >= 'a' && r->path[i] <= 'z') ||
		                         (r->path[i] >= 'A' && r->path[i] <= 'Z') ||
		                         (r->path[i] >= '0' && r->path[i] <= '9')
		                 ? r->path[i] : '_';
	s[o] = '\0';
	return s;
}

int evapi_app_route_decl(evapi_app *app, const evapi_route_decl *r)
{
	struct evapi__decl *d;
	size_t first, i;
	int rc;

	if (!app || !r || !r->cb || !r->path)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	if ((r->body || r->body_model) && r->upload)
		return EVAPI_EINVAL;
	if (r->upload && !r->upload->dir)
		return EVAPI_EINVAL;
	if (r->body_name && !evapi__valid_component_name(r->body_name))
		return EVAPI_EINVAL;
	d = calloc(1, sizeof *d);
	if (!d)
		return EVAPI_ENOMEM;
	d->d = *r;
	if ((rc = evapi__model_decl(d)) != 0)
		goto err;
	d->body_name = r->body_name ? strdup(r->body_name)
	               : r->body_model ? strdup(r->body_model->name)
	                               : derive_body_name(r);
	if (!d->body_name) {
		rc = EVAPI_ENOMEM;
		goto err;
	}
	if ((rc = check_params(d)) != 0)
		goto err;
	if (d->d.body && (rc = evapi__decl_fields(d, d->d.body, 0)) != 0)
		goto err;
	if ((rc = check_docs(app, d)) != 0)
		goto err;
	if ((rc = evapi__route_check(app, r->methods, r->path)) != 0)
		goto err;
	first = evapi__router_count(app->router);
	if (r->upload)
		rc = evapi__router_add(app->router, r->methods, r->path, r->lane,
		                       r->lane == EVAPI_POOL ? evapi__upload_pool
		                                             : evapi__upload_inline,
		                       d);
	else
		rc = evapi__router_add(app->router, r->methods, r->path, r->lane,
		                       r->cb, r->arg);
	/* A failure may leave some methods registered: they refer to d. */
	for (i = first; i < evapi__router_count(app->router); i++)
		evapi__router_at(app->router, i)->decl = d;
	if (rc != 0 && evapi__router_count(app->router) == first)
		goto err;
	d->next = app->decls;
	app->decls = d;
	return rc;
err:
	evapi__decl_free(d);
	return rc;
}

/* ---- checking a request (loop thread) --------------------------------- */

#define DETAIL_415 "Unsupported Media Type: expected "

static int reply_415(evapi_req *req, const char *detail)
{
	evapi_reply_error(req, 415, detail);
	return 1;
}

/* application/json, application/<x>+json, with or without parameters. */
int evapi__is_json_type(const char *ct)
{
	const char *e;
	size_t n;

	while (*ct == ' ' || *ct == '\t')
		ct++;
	e = strchr(ct, ';');
	n = e ? (size_t)(e - ct) : strlen(ct);
	while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
		return 1;
	return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
	       strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static int only_space(const char *s, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++)
		if (!is_space((unsigned char)s[i]))
			return 0;
	return 1;
}

static const char *param_text(evapi_req *req, const evapi_field *f)
{
	const char *v = NULL;
	int i;

	switch (f->in) {
	case EVAPI_IN_PATH: return evapi_req_param(req, f->name);
	case EVAPI_IN_HEADER: return evapi_req_header(req, f->name);
	default:
		/* ?q=a&q=b: the last one, as FastAPI (Starlette) reads it */
		for (i = 0; i < req->nquery; i++)
			if (strcmp(req->query[i].name, f->name) == 0)
				v = req->query[i].value;
		return v;
	}
}

static void check_all_params(evapi_req *req, const struct evapi__decl *d,
                             evapi__parsed *p, json_t *errs)
{
	static const evapi_where order[] = {EVAPI_IN_PATH, EVAPI_IN_QUERY,
	                                    EVAPI_IN_HEADER};
	size_t k;
	int i;

	/* FastAPI's order: path, then query, then header parameters. */
	for (k = 0; k < sizeof order / sizeof order[0]; k++) {
		for (i = 0; i < d->nparams; i++) {
			const evapi_field *f = &d->d.params[i];
			const char *text;
			json_t *loc;
			if (f->in != order[k])
				continue;
			text = param_text(req, f);
			p->vals[i].f = f;
			loc = json_pack("[s,s]", where_name(f->in), f->name);
			if (!text) {
				if (f->required || f->in == EVAPI_IN_PATH)
					add_err(errs, "missing", json_incref(loc),
					        "Field required", NULL, NULL);
				else if (f->dflt)
					p->vals[i] = d->dflt_vals[i];
			} else {
				check_param_text(f, text, loc, errs, &p->vals[i]);
			}
			json_decref(loc);
		}
	}
}

json_t *evapi__decl_body_value(const struct evapi__decl *d, json_t *v,
                               json_t *errs)
{
	evapi_field root;
	json_t *loc, *ok;

	memset(&root, 0, sizeof root);
	root.name = "body";
	root.type = EVAPI_OBJECT;
	root.fields = d->d.body;
	root.forbid_extra = d->d.body_forbid_extra;
	loc = json_pack("[s]", "body");
	ok = check_value(d, &root, v, loc, errs, 0);
	json_decref(loc);
	return ok;
}

static int check_body(evapi_req *req, const struct evapi__decl *d,
                      json_t *errs)
{
	json_t *j, *ok;

	if (only_space(req->body, req->body_len)) {
		if (!d->d.body_optional)
			add_err(errs, "missing", json_pack("[s]", "body"),
			        "Field required", NULL, NULL);
		else if (!req->json)
			req->json = json_null(); /* FastAPI's None */
		return 0;
	}
	if (evapi_req_json(req, &j) != 0)
		return 1; /* 422 json_invalid sent */
	ok = evapi__decl_body_value(d, j, errs);
	if (ok) {
		json_decref(req->json);
		req->json = ok;
	}
	return 0;
}

static int reply_413(evapi_req *req, const char *fmt, const char *field,
                     size_t limit)
{
	char msg[256];
	snprintf(msg, sizeof msg, fmt, field, limit);
	evapi_reply_error(req, 413, msg);
	return 1;
}

/* Builds the parsed file entries: names and sizes; writing comes later,
 * on the pool. */
static int add_file(evapi_req *req, evapi__parsed *p, int i, const char *field,
                    const char *filename, const char *ctype,
                    const char *data, size_t len)
{
	evapi_file *f = &p->files[i];
	size_t dl = strlen(p->upload_dir);
	char *safe = evapi__arena_alloc(&req->arena, SAFE_NAME_MAX + 1);
	char *stored = evapi__arena_alloc(&req->arena, STORED_MAX + 1);
	char *path = evapi__arena_alloc(&req->arena, dl + STORED_MAX + 2);

	if (!safe || !stored || !path)
		return EVAPI_ENOMEM;
	if (evapi_upload_safe_name(filename ? filename : "", safe,
	                           SAFE_NAME_MAX + 1) < 0)
		return EVAPI_EINVAL;
	memcpy(stored, safe, strlen(safe) + 1);
	snprintf(path, dl + STORED_MAX + 2, "%s/%s", p->upload_dir, stored);
	f->field = field;
	f->filename = filename;
	f->stored = stored;
	f->path = path;
	f->content_type = ctype ? ctype : "application/octet-stream";
	f->size = len;
	p->file_data[i] = data;
	p->safe[i] = safe;
	return 0;
}

/* A body the guard streamed (upload_stream.c): its limits were checked
 * as it arrived, its files are in temporary files. A raw body's file is
 * named by the route's {filename} and typed by the request's
 * Content-Type `ct` (may be NULL). */
static int streamed_upload(evapi_req *req, evapi__parsed *p, int raw,
                           const char *ct)
{
	const evapi__ustream *us = req->ustream;
	int i, n = evapi__ustream_nfiles(us);

	p->ustream = req->ustream;
	for (i = 0; i < n; i++) {
		const char *field, *filename, *ctype;
		size_t size;
		evapi__ustream_file(us, i, &field, &filename, &ctype, &size);
		if (raw) {
			filename = evapi_req_param(req, "filename");
			ctype = ct;
		}
		if (add_file(req, p, i, field, filename, ctype, NULL, size) != 0) {
			evapi_reply_error(req, 500, "Out of memory");
			return 1;
		}
	}
	p->nfiles = n;
	p->form = (evapi__kv *)evapi__ustream_form(us);
	p->nform = evapi__ustream_nform(us);
	return 0;
}

static int check_upload(evapi_req *req, const struct evapi__decl *d,
                        evapi__parsed *p)
{
	const evapi_upload *up = d->d.upload;
	size_t max_file = up->max_file_bytes ? up->max_file_bytes : 1 << 20;
	size_t max_total = up->max_total_bytes ? up->max_total_bytes : 8 << 20;
	int max_files = up->max_files > 0 ? up->max_files : 10;
	int max_fields = up->max_fields > 0 ? up->max_fields : 50;
	const char *ct = evapi_req_header(req, "Content-Type"), *why;
	char boundary[80], msg[160];
	evapi__part *parts;
	size_t total = 0;
	int n, i, nf = 0, nt = 0, rc;

	p->upload_dir = up->dir;
	rc = evapi__multipart_boundary(ct, boundary, sizeof boundary);
	if (rc == -2) {
		evapi_reply_error(req, 400, "Invalid multipart/form-data "
		                            "Content-Type: missing or invalid "
		                            "boundary");
		return 1;
	}
	if (rc == -1 && !up->raw)
		return reply_415(req, DETAIL_415 "multipart/form-data");
	p->files = evapi__arena_alloc(&req->arena,
	                              (size_t)max_files * sizeof *p->files);
	p->file_data = evapi__arena_alloc(&req->arena,
	                                  (size_t)max_files * sizeof(char *));
	p->safe = evapi__arena_alloc(&req->arena,
	                             (size_t)max_files * sizeof(char *));
	if (!p->files || !p->file_data || !p->safe)
		goto oom;
	if (req->ustream) /* streamed: parsed and checked as it arrived */
		return streamed_upload(req, p, rc == -1, ct);
	if (rc == -1) { /* raw body: one file */
		if (req->body_len > max_file)
			return reply_413(req, "File too large: '%s' is over %zu "
			                      "bytes", "file", max_file);
		if (add_file(req, p, 0, "file", evapi_req_param(req, "filename"),
		             ct, req->body, req->body_len) != 0)
			goto oom;
		p->nfiles = 1;
		return 0;
	}
	parts = evapi__arena_alloc(&req->arena, (size_t)(max_files + max_fields) *
	                                                sizeof *parts);
	p->form = evapi__arena_alloc(&req->arena,
	                             (size_t)max_fields * sizeof *p->form);
	if (!parts || !p->form)
		goto oom;
	n = evapi__multipart_parse(req->body, req->body_len, boundary,
	                           &req->arena, parts, max_files + max_fields,
	                           &why);
	if (n == -2) {
		snprintf(msg, sizeof msg, "Too many parts. Maximum number of "
		                          "parts is %d.", max_files + max_fields);
		evapi_reply_error(req, 400, msg);
		return 1;
	}
	if (n < 0) {
		snprintf(msg, sizeof msg, "Invalid multipart body: %s", why);
		evapi_reply_error(req, 400, msg);
		return 1;
	}
	for (i = 0; i < n; i++) {
		if (parts[i].filename ? ++nf > max_files : ++nt > max_fields) {
			snprintf(msg, sizeof msg,
			         "Too many %s. Maximum number of %s is %d.",
			         nf > max_files ? "files" : "fields",
			         nf > max_files ? "files" : "fields",
			         nf > max_files ? max_files : max_fields);
			evapi_reply_error(req, 400, msg);
			return 1;
		}
	}
	for (i = 0; i < n; i++) {
		evapi__part *pt = &parts[i];
		if (!pt->filename) {
			char *v;
			if (memchr(pt->data, '\0', pt->len)) {
				snprintf(msg, sizeof msg, "Invalid multipart body: "
				                          "NUL byte in a text field");
				evapi_reply_error(req, 400, msg);
				return 1;
			}
			v = evapi__arena_strndup(&req->arena, pt->data, pt->len);
			if (!v)
				goto oom;
			p->form[p->nform].name = pt->name;
			p->form[p->nform].value = v;
			p->nform++;
			continue;
		}
		if (pt->len > max_file)
			return reply_413(req, "File too large: '%s' is over %zu "
			                      "bytes", pt->name, max_file);
		total += pt->len;
		if (total > max_total)
			return reply_413(req, "Upload too large: the files%s are "
			                      "over %zu bytes together", "",
			                 max_total);
		if (add_file(req, p, p->nfiles, pt->name, pt->filename,
		             pt->content_type, pt->data, pt->len) != 0)
			goto oom;
		p->nfiles++;
	}
	return 0;
oom:
	evapi_reply_error(req, 500, "Out of memory");
	return 1;
}

/* Also asked by the guard for Expect: 100-continue (reactor.c), before
 * the body exists: a declared route refuses a body it cannot read. */
const char *evapi__decl_refused_media(const evapi__route *r, const char *ct)
{
	const struct evapi__decl *d = r->decl;
	char boundary[80];

	if (!d)
		return NULL;
	if (d->d.body && ct && !evapi__is_json_type(ct))
		return DETAIL_415 "application/json";
	if (d->d.upload && !d->d.upload->raw &&
	    evapi__multipart_boundary(ct, boundary, sizeof boundary) == -1)
		return DETAIL_415 "multipart/form-data";
	return NULL;
}

int evapi__decl_check(evapi_req *req)
{
	const struct evapi__decl *d = req->route->decl;
	evapi__parsed *p;
	json_t *errs;
	const char *ct, *why415;
	int rc = 0;

	p = evapi__arena_alloc(&req->arena, sizeof *p);
	if (p) {
		memset(p, 0, sizeof *p);
		p->nvals = d->nparams;
		p->vals = evapi__arena_alloc(&req->arena,
		                             (size_t)(d->nparams ? d->nparams : 1) *
		                                     sizeof *p->vals);
	}
	if (!p || !p->vals) {
		evapi_reply_error(req, 500, "Out of memory");
		return 1;
	}
	memset(p->vals, 0, (size_t)d->nparams * sizeof *p->vals);
	req->parsed = p;
	/* 415 first: the body cannot be read at all. */
	ct = evapi_req_header(req, "Content-Type");
	if (d->d.body && !only_space(req->body, req->body_len) &&
	    (why415 = evapi__decl_refused_media(req->route, ct)) != NULL)
		return reply_415(req, why415);
	errs = json_array();
	if (!errs) {
		evapi_reply_error(req, 500, "Out of memory");
		return 1;
	}
	/* Invalid JSON is answered alone, as FastAPI does. */
	if (d->d.body && check_body(req, d, errs) != 0) {
		json_decref(errs);
		return 1;
	}
	if (json_array_size(errs)) {
		/* body problems come after parameter problems */
		json_t *body_errs = errs;
		errs = json_array();
		check_all_params(req, d, p, errs);
		json_array_extend(errs, body_errs);
		json_decref(body_errs);
	} else {
		check_all_params(req, d, p, errs);
	}
	if (json_array_size(errs)) {
		evapi_reply_error_json(req, 422, errs);
		return 1;
	}
	json_decref(errs);
	if (d->d.upload)
		rc = check_upload(req, d, p);
	return rc;
}

/* ---- accessors --------------------------------------------------------- */

static const evapi__val *find_val(const evapi_req *req, const char *name,
                                  evapi_type t, int *rc)
{
	const evapi__parsed *p = req ? req->parsed : NULL;
	int i;

	*rc = EVAPI_ENOENT;
	if (!p || !name)
		return NULL;
	for (i = 0; i < p->nvals; i++) {
		const evapi__val *v = &p->vals[i];
		if (!v->f || strcmp(v->f->name, name) != 0)
			continue;
		if (v->f->type != t) {
			*rc = EVAPI_EINVAL;
			return NULL;
		}
		if (!v->present)
			return NULL;
		*rc = 0;
		return v;
	}
	return NULL;
}

int evapi_req_get_int(const evapi_req *req, const char *name, long long *out)
{
	int rc;
	const evapi__val *v = find_val(req, name, EVAPI_INT, &rc);
	if (v && out)
		*out = v->i;
	return rc;
}

int evapi_req_get_number(const evapi_req *req, const char *name, double *out)
{
	int rc;
	const evapi__val *v = find_val(req, name, EVAPI_NUMBER, &rc);
	if (v && out)
		*out = v->d;
	return rc;
}

int evapi_req_get_bool(const evapi_req *req, const char *name, int *out)
{
	int rc;
	const evapi__val *v = find_val(req, name, EVAPI_BOOL, &rc);
	if (v && out)
		*out = v->b;
	return rc;
}

const char *evapi_req_get_string(const evapi_req *req, const char *name)
{
	int rc;
	const evapi__val *v = find_val(req, name, EVAPI_STRING, &rc);
	return v ? v->s : NULL;
}

int evapi_req_file_count(const evapi_req *req)
{
	return req && req->parsed ? req->parsed->nfiles : 0;
}

const evapi_file *evapi_req_file(const evapi_req *req, int i)
{
	if (!req || !req->parsed || i < 0 || i >= req->parsed->nfiles)
		return NULL;
	return &req->parsed->files[i];
}

const char *evapi_req_form(const evapi_req *req, const char *name)
{
	int i;
	if (!req || !req->parsed || !name)
		return NULL;
	for (i = 0; i < req->parsed->nform; i++)
		if (strcmp(req->parsed->form[i].name, name) == 0)
			return req->parsed->form[i].value;
	return NULL;
}
