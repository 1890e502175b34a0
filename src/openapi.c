/*
 * openapi.c: the app's OpenAPI 3.1 document, built from the router, the
 * route declarations and the app's info and security schemes, and the
 * routes that serve it when config.openapi is set: GET /openapi.json,
 * GET /docs, GET /docs/{file}, GET /redoc and GET /redoc/{file}. /docs
 * is Swagger UI when its files (npm's swagger-ui-dist,
 * config.swagger_ui_dir or configure's --with-swagger-ui) can be read;
 * else a small page, no external scripts, that fetches the document and
 * lists the operations. /redoc is ReDoc, a read-only reference, when its
 * self-contained bundle (npm's redoc, config.redoc_dir or configure's
 * --with-redoc) can be read; else a 404 saying so (redoc_dir "": no
 * /redoc route at all). Every URL in the
 * pages is relative, so they work behind a path prefix.
 *
 * Threads: the loop (the routes are inline; the document is rebuilt per
 * request from data that is read-only once the app runs, in well under a
 * millisecond for a few dozen routes). The Swagger UI and ReDoc files
 * are read once, by evapi_app_new on the creating thread, never on the
 * loop.
 * Before evapi_app_run, the creating thread may call evapi_app_openapi,
 * evapi_app_openapi_info and evapi_app_security_scheme.
 */
#ifdef HAVE_CONFIG_H
#include <config.h> /* EVAPI_SWAGGER_UI_DIR, EVAPI_REDOC_DIR */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static void openapi_json(evapi_req *req, void *arg);
static void docs_page(evapi_req *req, void *arg);
static void redoc_page(evapi_req *req, void *arg);
static void docs_file(evapi_req *req, void *arg);

/* A file served under /docs/ or /redoc/: read once at start, or built
 * in. */
struct docs_file {
	const char *name, *type;
	char *data;
	size_t len;
	char etag[24];
};

/* The files of one page; files NULL: not installed. */
struct file_set {
	struct docs_file *files;
	int nfiles;
};

struct scheme {
	char *name, *param, *description;
	evapi_security_kind kind;
};

struct evapi__openapi {
	char *title, *version, *description;
	struct scheme *schemes;
	int nschemes;
	struct file_set swagger; /* none: /docs is the plain page */
	struct file_set redoc;   /* none: /redoc answers 404, or is off */
};

static struct evapi__openapi *meta(evapi_app *app)
{
	if (!app->openapi)
		app->openapi = calloc(1, sizeof *app->openapi);
	return app->openapi;
}

/* Replaces *slot with a copy of s (NULL: keeps it). */
static int set_copy(char **slot, const char *s)
{
	char *c;
	if (!s)
		return 0;
	if (!(c = strdup(s)))
		return EVAPI_ENOMEM;
	free(*slot);
	*slot = c;
	return 0;
}

int evapi_app_openapi_info(evapi_app *app, const char *title,
                           const char *version, const char *description)
{
	struct evapi__openapi *o;
	int rc;

	if (!app || (title && !*title) || (version && !*version))
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	if (!(o = meta(app)))
		return EVAPI_ENOMEM;
	if ((rc = set_copy(&o->title, title)) == 0 &&
	    (rc = set_copy(&o->version, version)) == 0)
		rc = set_copy(&o->description, description);
	return rc;
}

int evapi_app_security_scheme(evapi_app *app, const char *name,
                              evapi_security_kind kind, const char *param,
                              const char *description)
{
	struct evapi__openapi *o;
	struct scheme *n, *s;

	if (!app || !name || !evapi__valid_component_name(name) ||
	    kind < EVAPI_SECURITY_API_KEY_HEADER ||
	    kind > EVAPI_SECURITY_HTTP_BASIC ||
	    (kind <= EVAPI_SECURITY_API_KEY_COOKIE && (!param || !*param)))
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	if (evapi__openapi_has_scheme(app, name))
		return EVAPI_EEXIST;
	if (!(o = meta(app)))
		return EVAPI_ENOMEM;
	n = realloc(o->schemes, (size_t)(o->nschemes + 1) * sizeof *n);
	if (!n)
		return EVAPI_ENOMEM;
	o->schemes = n;
	s = &n[o->nschemes];
	memset(s, 0, sizeof *s);
	s->kind = kind;
	if (set_copy(&s->name, name) || set_copy(&s->param, param) ||
	    set_copy(&s->description, description)) {
		free(s->name);
		free(s->param);
		return EVAPI_ENOMEM;
	}
	o->nschemes++;
	return 0;
}

int evapi__openapi_has_scheme(const evapi_app *app, const char *name)
{
	int i;
	for (i = 0; app->openapi && i < app->openapi->nschemes; i++)
		if (strcmp(app->openapi->schemes[i].name, name) == 0)
			return 1;
	return 0;
}

static void free_files(struct file_set *set)
{
	int i;
	for (i = 0; set->files && i < set->nfiles; i++)
		free(set->files[i].data);
	free(set->files);
	set->files = NULL;
	set->nfiles = 0;
}

void evapi__openapi_free(evapi_app *app)
{
	struct evapi__openapi *o = app->openapi;
	int i;
	if (!o)
		return;
	for (i = 0; i < o->nschemes; i++) {
		free(o->schemes[i].name);
		free(o->schemes[i].param);
		free(o->schemes[i].description);
	}
	free(o->schemes);
	free_files(&o->swagger);
	free_files(&o->redoc);
	free(o->title);
	free(o->version);
	free(o->description);
	free(o);
	app->openapi = NULL;
}

static json_t *security_schemes(const struct evapi__openapi *o)
{
	static const char *const in[] = {"header", "query", "cookie"};
	json_t *all = json_object();
	int i;

	for (i = 0; o && i < o->nschemes; i++) {
		const struct scheme *s = &o->schemes[i];
		json_t *j;
		if (s->kind <= EVAPI_SECURITY_API_KEY_COOKIE)
			j = json_pack("{s:s, s:s, s:s}", "type", "apiKey", "in",
			              in[s->kind - EVAPI_SECURITY_API_KEY_HEADER],
			              "name", s->param);
		else
			j = json_pack("{s:s, s:s}", "type", "http", "scheme",
			              s->kind == EVAPI_SECURITY_HTTP_BEARER
			                      ? "bearer" : "basic");
		if (j && s->kind == EVAPI_SECURITY_HTTP_BEARER && s->param)
			json_object_set_new(j, "bearerFormat",
			                    json_string(s->param));
		if (j && s->description)
			json_object_set_new(j, "description",
			                    json_string(s->description));
		json_object_set_new(all, s->name, j);
	}
	return all;
}

static const char *type_name(evapi_type t)
{
	switch (t) {
	case EVAPI_INT: return "integer";
	case EVAPI_NUMBER: return "number";
	case EVAPI_BOOL: return "boolean";
	case EVAPI_OBJECT: return "object";
	case EVAPI_ARRAY: return "array";
	default: return "string";
	}
}

static json_t *bound(double b)
{
	if (b == (double)(long long)b && b < 9e15 && b > -9e15)
		return json_integer((json_int_t)b);
	return json_real(b);
}

static json_t *dflt_value(const struct evapi__decl *d, const evapi_field *f,
                          int is_param, int index)
{
	int i;
	if (!f->dflt)
		return NULL;
	if (is_param) {
		const evapi__val *v = &d->dflt_vals[index];
		switch (f->type) {
		case EVAPI_INT: return json_integer((json_int_t)v->i);
		case EVAPI_NUMBER: return json_real(v->d);
		case EVAPI_BOOL: return json_boolean(v->b);
		default: return json_string(f->dflt);
		}
	}
	for (i = 0; i < d->ndflts; i++)
		if (d->dflts[i].f == f)
			return json_deep_copy(d->dflts[i].value);
	return NULL;
}

/* JSON Schema of one field (parameter or body field). */
static json_t *field_schema(const struct evapi__decl *d, const evapi_field *f,
                            int is_param, int index, int depth)
{
	json_t *s = json_pack("{s:s}", "type", type_name(f->type)), *dv;
	const evapi_field *m;

	if (!s || depth > 32)
		return s;
	if (f->bounds & EVAPI_GE)
		json_object_set_new(s, "minimum", bound(f->ge));
	if (f->bounds & EVAPI_LE)
		json_object_set_new(s, "maximum", bound(f->le));
	if (f->bounds & EVAPI_MIN_LEN)
		json_object_set_new(s, f->type == EVAPI_ARRAY ? "minItems"
		                                              : "minLength",
		                    json_integer((json_int_t)f->min_len));
	if (f->bounds & EVAPI_MAX_LEN)
		json_object_set_new(s, f->type == EVAPI_ARRAY ? "maxItems"
		                                              : "maxLength",
		                    json_integer((json_int_t)f->max_len));
	if ((dv = dflt_value(d, f, is_param, index)) != NULL)
		json_object_set_new(s, "default", dv);
	if (f->description)
		json_object_set_new(s, "description",
		                    json_string(f->description));
	if (f->example && !is_param)
		json_object_set_new(s, "examples", json_pack(
			"[o?]", json_loads(f->example, JSON_DECODE_ANY, NULL)));
	if (f->type == EVAPI_OBJECT) {
		json_t *props = json_object(), *req = json_array();
		for (m = f->fields; m && m->name; m++) {
			json_object_set_new(props, m->name,
			                    field_schema(d, m, 0, 0, depth + 1));
			if (m->required)
				json_array_append_new(req, json_string(m->name));
		}
		json_object_set_new(s, "properties", props);
		if (f->forbid_extra)
			json_object_set_new(s, "additionalProperties",
			                    json_false());
		if (json_array_size(req))
			json_object_set_new(s, "required", req);
		else
			json_decref(req);
	} else if (f->type == EVAPI_ARRAY && f->items) {
		json_object_set_new(s, "items",
		                    field_schema(d, f->items, 0, 0, depth + 1));
	}
	return s;
}

static const char *where_name(evapi_where w)
{
	return w == EVAPI_IN_PATH ? "path" : w == EVAPI_IN_HEADER ? "header"
	                                                          : "query";
}

static int declared_path_param(const struct evapi__decl *d, const char *name)
{
	int i;
	for (i = 0; d && i < d->nparams; i++)
		if (d->d.params[i].in == EVAPI_IN_PATH &&
		    strcmp(d->d.params[i].name, name) == 0)
			return 1;
	return 0;
}

/* A parameter's example text (checked at registration) as a value of
 * its type. */
static json_t *param_example(const evapi_field *f)
{
	const char *t = f->example;
	switch (f->type) {
	case EVAPI_INT: return json_integer((json_int_t)strtoll(t, NULL, 10));
	case EVAPI_NUMBER: return json_real(strtod(t, NULL));
	case EVAPI_BOOL:
		return json_boolean(strchr("1tTyY", t[0]) ||
		                    strcasecmp(t, "on") == 0);
	default: return json_string(t);
	}
}

static json_t *parameters(const evapi__route *rt)
{
	const struct evapi__decl *d = rt->decl;
	json_t *ps = json_array();
	int i;

	/* every {name} of the template must be described */
	for (i = 0; i < rt->nsegs; i++)
		if (rt->is_param[i] && !declared_path_param(d, rt->segs[i]))
			json_array_append_new(
				ps, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name",
				              rt->segs[i], "in", "path", "required",
				              1, "schema", "type", "string"));
	for (i = 0; d && i < d->nparams; i++) {
		const evapi_field *f = &d->d.params[i];
		json_t *p = json_pack("{s:s, s:s, s:b, s:o}", "name", f->name,
		                      "in", where_name(f->in), "required",
		                      f->required || f->in == EVAPI_IN_PATH,
		                      "schema", field_schema(d, f, 1, i, 0));
		if (p && f->description)
			json_object_set_new(p, "description",
			                    json_string(f->description));
		if (p && f->example)
			json_object_set_new(p, "example", param_example(f));
		json_array_append_new(ps, p);
	}
	return ps;
}

static json_t *error_response(const char *desc, const char *schema)
{
	char ref[96];
	snprintf(ref, sizeof ref, "#/components/schemas/%s", schema);
	return json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", desc,
	                 "content", "application/json", "schema", "$ref", ref);
}

/* The framework's own answers, unless the route documents that status. */
static void add_error(json_t *resp, int status, const char *desc,
                      const char *schema)
{
	char code[8];
	snprintf(code, sizeof code, "%d", status);
	if (!json_object_get(resp, code))
		json_object_set_new(resp, code, error_response(desc, schema));
}

/* A schema, under components/schemas when it is named. */
static json_t *maybe_ref(json_t *schemas, const char *name, json_t *s)
{
	char ref[300];
	if (!name || !s)
		return s;
	json_object_set_new(s, "title", json_string(name));
	json_object_set_new(schemas, name, s);
	snprintf(ref, sizeof ref, "#/components/schemas/%s", name);
	return json_pack("{s:s}", "$ref", ref);
}

/* One declared response: status, description, media type, schema and
 * example (checked at registration). */
static json_t *response(const struct evapi__decl *d, const evapi_response *x,
                        json_t *schemas)
{
	const char *ct = x->content_type;
	const char *desc = x->description ? x->description
	                                  : evapi__reason(x->status);
	json_t *r = json_pack("{s:s}", "description", desc ? desc : ""), *s,
	       *media;
	int json;

	if (!ct)
		ct = x->status == 204 || x->status == 304 ? ""
		                                          : "application/json";
	if (!*ct)
		return r;
	json = evapi__is_json_type(ct);
	if (x->schema)
		s = maybe_ref(schemas, x->schema_name,
		              field_schema(d, x->schema, 0, 0, 0));
	else if (json && x->status >= 400)
		s = json_pack("{s:s}", "$ref", "#/components/schemas/HTTPError");
	else if (json)
		s = json_object();
	else
		s = json_pack("{s:s}", "type", "string");
	media = json_pack("{s:o}", "schema", s);
	if (media && x->example)
		json_object_set_new(media, "example",
		                    json ? json_loads(x->example, JSON_DECODE_ANY,
		                                      NULL)
		                         : json_string(x->example));
	json_object_set_new(r, "content", json_pack("{s:o}", ct, media));
	return r;
}

/* FastAPI's default operationId: name (here the summary) + path, every
 * non-word character as '_', then "_" + the method: "Read an item",
 * "/items/{item_id}", GET -> "read_an_item_items__item_id__get". */
static void default_id(const evapi__route *rt, const char *lower, char *id,
                       size_t cap)
{
	const char *parts[2];
	size_t o = 0, i;
	int k;

	parts[0] = rt->decl && rt->decl->d.summary ? rt->decl->d.summary : "";
	parts[1] = *parts[0] ? rt->tmpl : rt->tmpl + 1; /* no leading '_' */
	for (k = 0; k < 2; k++)
		for (i = 0; parts[k][i] && o + 1 < cap; i++) {
			char c = parts[k][i];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c | 0x20);
			id[o++] = ((c >= 'a' && c <= 'z') ||
			           (c >= '0' && c <= '9')) ? c : '_';
		}
	snprintf(id + o, cap - o, "%s%s", o ? "_" : "", lower);
}

static json_t *operation(const evapi_app *app, const evapi__route *rt,
                         const char *lower, json_t *schemas, json_t *ids)
{
	const struct evapi__decl *d = rt->decl;
	const evapi_route_decl *r = d ? &d->d : NULL;
	json_t *op = json_object(), *resp = json_object(), *tags;
	char id[300];
	const char *const *t;
	const evapi_response *x;
	int n;

	if (r && r->operation_id) {
		snprintf(id, sizeof id, "%s", r->operation_id);
	} else {
		size_t len;
		default_id(rt, lower, id, sizeof id - 12);
		/* unique: explicit ids were reserved first */
		len = strlen(id);
		for (n = 2; json_object_get(ids, id); n++)
			snprintf(id + len, sizeof id - len, "_%d", n);
	}
	json_object_set_new(ids, id, json_true());
	json_object_set_new(op, "operationId", json_string(id));
	json_object_set_new(op, "summary",
	                    json_string(r && r->summary ? r->summary
	                                                : rt->label));
	if (r && r->description)
		json_object_set_new(op, "description",
		                    json_string(r->description));
	/* a router's tags (apirouter.c), then the route's own */
	tags = evapi__group_tags(rt->group);
	for (t = r ? r->tags : NULL; t && *t; t++) {
		if (!tags)
			tags = json_array();
		json_array_append_new(tags, json_string(*t));
	}
	if (tags)
		json_object_set_new(op, "tags", tags);
	if (r && r->deprecated)
		json_object_set_new(op, "deprecated", json_true());
	{
		/* the declaration's, then those its dependencies check */
		json_t *a = json_array();
		for (t = r ? r->security : NULL; t && *t; t++)
			json_array_append_new(a, json_pack("{s:[]}", *t));
		evapi__deps_security(app, rt, a);
		if (json_array_size(a))
			json_object_set_new(op, "security", a);
		else
			json_decref(a);
	}
	json_object_set_new(op, "x-evapi-lane",
	                    json_string(evapi_lane_name(rt->lane)));
	json_object_set_new(op, "parameters", parameters(rt));
	for (x = r ? r->responses : NULL; x && x->status; x++) {
		char code[8];
		snprintf(code, sizeof code, "%d", x->status);
		json_object_set_new(resp, code, response(d, x, schemas));
	}
	if (!json_object_size(resp))
		json_object_set_new(resp, "200", json_pack(
			"{s:s, s:{s:{s:{}}}}", "description",
			"Successful Response", "content", "application/json",
			"schema"));
	if (r && r->body) {
		evapi_field root;
		json_t *s, *media;
		memset(&root, 0, sizeof root);
		root.type = EVAPI_OBJECT;
		root.fields = r->body;
		root.forbid_extra = r->body_forbid_extra;
		s = maybe_ref(schemas, d->body_name,
		              field_schema(d, &root, 0, 0, 0));
		media = json_pack("{s:o}", "schema", s);
		if (media && r->body_example)
			json_object_set_new(media, "example",
			                    json_loads(r->body_example,
			                               JSON_DECODE_ANY, NULL));
		json_object_set_new(op, "requestBody", json_pack(
			"{s:b, s:{s:o}}", "required", !r->body_optional,
			"content", "application/json", media));
		add_error(resp, 415, "Unsupported Media Type", "HTTPError");
	}
	if (r && r->upload) {
		json_t *content = json_pack(
			"{s:{s:{s:s, s:{s:s, s:s}}}}", "multipart/form-data",
			"schema", "type", "object", "additionalProperties",
			"type", "string", "contentMediaType",
			"application/octet-stream");
		if (r->upload->raw)
			json_object_set_new(content, "application/octet-stream",
			                    json_pack("{s:{s:s, s:s}}", "schema",
			                              "type", "string",
			                              "contentMediaType",
			                              "application/octet-stream"));
		json_object_set_new(op, "requestBody", json_pack(
			"{s:b, s:o}", "required", 1, "content", content));
		add_error(resp, 400, "Malformed upload or too many parts",
		          "HTTPError");
		add_error(resp, 413, "Upload over its size limit", "HTTPError");
		add_error(resp, 415, "Unsupported Media Type", "HTTPError");
	}
	/* 422 only where something is validated: declared parameters or a
	 * JSON body (an upload's limits answer 400/413 instead) */
	if (r && (d->nparams || r->body))
		add_error(resp, 422, "Validation Error", "HTTPValidationError");
	if (rt->lane == EVAPI_POOL || (r && r->upload))
		add_error(resp, 503, "Worker pool queue full", "HTTPError");
	json_object_set_new(op, "responses", resp);
	return op;
}

static json_t *common_schemas(void)
{
	return json_pack(
		"{s:{s:s, s:s, s:{s:{s:s, s:{s:s}, s:s}}, s:[s]},"
		" s:{s:s, s:s, s:[s,s,s],"
		"    s:{s:{s:s, s:s, s:{s:[{s:s},{s:s}]}},"
		"       s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s}, s:{s:s, s:s}}},"
		" s:{s:s, s:s, s:{s:{s:s}}, s:[s]}}",
		"HTTPValidationError", "title", "HTTPValidationError", "type",
		"object", "properties", "detail", "type", "array", "items",
		"$ref", "#/components/schemas/ValidationError", "title",
		"Detail", "required", "detail",
		"ValidationError", "title", "ValidationError", "type", "object",
		"required", "loc", "msg", "type", "properties", "loc", "title",
		"Location", "type", "array", "items", "anyOf", "type", "string",
		"type", "integer", "msg", "title", "Message", "type", "string",
		"type", "title", "Error Type", "type", "string", "input",
		"title", "Input", "ctx", "title", "Context", "type", "object",
		"HTTPError", "title", "HTTPError", "type", "object",
		"properties", "detail", "title", "Detail", "required",
		"detail");
}

static int served_here(const evapi__route *rt)
{
	return rt->cb == openapi_json || rt->cb == docs_page ||
	       rt->cb == redoc_page || rt->cb == docs_file;
}

json_t *evapi_app_openapi(evapi_app *app)
{
	const struct evapi__openapi *o;
	json_t *doc, *paths, *schemas, *ids, *info;
	const struct evapi__decl *d;
	size_t i, n;

	if (!app)
		return NULL;
	o = app->openapi;
	paths = json_object();
	schemas = common_schemas();
	info = json_pack("{s:s, s:s}", "title",
	                 o && o->title ? o->title : "evapi", "version",
	                 o && o->version ? o->version : EVAPI_VERSION);
	if (info && o && o->description)
		json_object_set_new(info, "description",
		                    json_string(o->description));
	/* servers ".": relative to the document's own URL, so an app served
	 * under a path prefix (/api/openapi.json) is called there (/api/...)
	 * by /docs and by other clients that resolve it, as OpenAPI says */
	doc = json_pack("{s:s, s:o, s:[{s:s}], s:o, s:{s:o}}", "openapi",
	                "3.1.0", "info", info, "servers", "url", ".", "paths",
	                paths, "components", "schemas", schemas);
	ids = json_object();
	if (!doc || !ids) {
		json_decref(doc);
		json_decref(ids);
		return NULL;
	}
	if (o && o->nschemes)
		json_object_set_new(json_object_get(doc, "components"),
		                    "securitySchemes", security_schemes(o));
	/* explicit operation ids first: a default never takes one */
	for (d = app->decls; d; d = d->next)
		if (d->d.operation_id)
			json_object_set_new(ids, d->d.operation_id, json_true());
	n = evapi__router_count(app->router);
	for (i = 0; i < n; i++) {
		evapi__route *rt = evapi__router_at(app->router, i);
		const char *m = evapi_method_name(rt->method);
		json_t *item;
		char lower[16];
		size_t k;
		if (served_here(rt) || evapi__files_is_mount(rt))
			continue; /* not part of the API, as in FastAPI */
		item = json_object_get(paths, rt->tmpl);
		if (!item) {
			item = json_object();
			json_object_set_new(paths, rt->tmpl, item);
		}
		for (k = 0; m[k] && k + 1 < sizeof lower; k++)
			lower[k] = (char)(m[k] | 0x20);
		lower[k] = '\0';
		if (!json_object_get(item, lower)) /* first route wins */
			json_object_set_new(item, lower,
			                    operation(app, rt, lower, schemas, ids));
	}
	json_decref(ids);
	return doc;
}

static void openapi_json(evapi_req *req, void *arg)
{
	json_t *doc = evapi_app_openapi(arg);
	if (!doc)
		evapi_reply_error(req, 500, "Cannot build the OpenAPI document");
	else
		evapi_reply_json(req, 200, doc);
}

/* A page with no external resources: it fetches openapi.json and lists
 * each operation with its parameters, body and responses. Text from the
 * document is inserted with textContent, never as HTML. The document's
 * URL is relative (to /docs, so /openapi.json), which keeps the page
 * working behind a proxy that serves the app under a path prefix. */
static const char docs_html[] =
	"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	"<title>API docs</title>\n"
	"<style>body{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:"
	"60em}h1{font-size:1.4em}.op{border:1px solid #ccc;border-radius:6px;"
	"margin:.6em 0;padding:.5em .8em}.m{display:inline-block;min-width:5em;"
	"font-weight:bold;text-transform:uppercase}.get{color:#0a6}.post{color:"
	"#06c}.put{color:#c70}.delete{color:#c00}.patch{color:#939}code,pre{"
	"font:13px ui-monospace,monospace}pre{background:#f6f6f6;padding:.5em;"
	"overflow:auto}td,th{text-align:left;padding:0 .8em 0 0}</style>\n"
	"</head><body><h1 id=\"title\">API docs</h1>\n"
	"<p>From <a href=\"openapi.json\">openapi.json</a>.</p>\n"
	"<div id=\"ops\">Loading...</div>\n<script>\n"
	"function el(t,txt,cls){var e=document.createElement(t);"
	"if(txt!=null)e.textContent=txt;if(cls)e.className=cls;return e}\n"
	"fetch('openapi.json').then(function(r){return r.json()})"
	".then(function(doc){\n"
	" var ops=document.getElementById('ops');ops.textContent='';\n"
	" document.getElementById('title').textContent=doc.info.title+' '+"
	"doc.info.version;\n"
	" Object.keys(doc.paths).forEach(function(path){\n"
	"  var item=doc.paths[path];\n"
	"  Object.keys(item).forEach(function(m){\n"
	"   var op=item[m],box=el('div',null,'op'),h=el('div');\n"
	"   h.appendChild(el('span',m,'m '+m));h.appendChild(el('code',path));\n"
	"   h.appendChild(el('span',' \\u2014 '+(op.summary||'')));"
	"box.appendChild(h);\n"
	"   if(op.parameters&&op.parameters.length){var t=el('table'),"
	"hr=el('tr');\n"
	"    ['name','in','type','required'].forEach(function(c){"
	"hr.appendChild(el('th',c))});t.appendChild(hr);\n"
	"    op.parameters.forEach(function(p){var tr=el('tr');"
	"[p.name,p.in,JSON.stringify(p.schema),p.required?'yes':'no']"
	".forEach(function(c){tr.appendChild(el('td',c))});"
	"t.appendChild(tr)});box.appendChild(t)}\n"
	"   if(op.requestBody){box.appendChild(el('div','Body:'));"
	"var c=op.requestBody.content,s={};Object.keys(c).forEach(function(k){"
	"var sc=c[k].schema||{};if(sc.$ref){sc=doc.components.schemas["
	"sc.$ref.split('/').pop()]}s[k]=sc});"
	"box.appendChild(el('pre',JSON.stringify(s,null,1)))}\n"
	"   box.appendChild(el('div','Responses: '+Object.keys(op.responses)"
	".join(', ')));\n"
	"   ops.appendChild(box)})})\n"
	"}).catch(function(e){document.getElementById('ops').textContent="
	"'Cannot load openapi.json: '+e});\n"
	"</script></body></html>\n";

/* Swagger UI: the page and its initialiser load only files under
 * docs/ (relative to /docs, so /docs/...), and the document from
 * "openapi.json" (/openapi.json); no inline script, no CDN. */
/* The head of the Swagger UI and ReDoc pages, up to their title. */
#define PAGE_HEAD(title)                                                     \
	"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n" \
	"<meta name=\"viewport\" content=\"width=device-width, "             \
	"initial-scale=1\">\n<title>" title "</title>\n"

static const char swagger_html[] =
	PAGE_HEAD("API docs")
	"<link rel=\"stylesheet\" href=\"docs/swagger-ui.css\">\n"
	"<link rel=\"icon\" type=\"image/png\" href=\"docs/favicon-32x32.png\" "
	"sizes=\"32x32\">\n</head><body>\n<div id=\"swagger-ui\"></div>\n"
	"<script src=\"docs/swagger-ui-bundle.js\"></script>\n"
	"<script src=\"docs/evapi-docs.js\"></script>\n</body></html>\n";

static const char init_js[] =
	"window.ui = SwaggerUIBundle({\n"
	"\turl: \"openapi.json\",\n"
	"\tdom_id: \"#swagger-ui\",\n"
	"\tdeepLinking: true,\n"
	"\tpresets: [SwaggerUIBundle.presets.apis],\n"
	"\tlayout: \"BaseLayout\"\n"
	"});\n";

static void docs_page(evapi_req *req, void *arg)
{
	const struct evapi__openapi *o = arg;
	if (o && o->swagger.files)
		evapi_reply_bytes(req, 200, "text/html; charset=utf-8",
		                  swagger_html, sizeof swagger_html - 1);
	else
		evapi_reply_bytes(req, 200, "text/html; charset=utf-8",
		                  docs_html, sizeof docs_html - 1);
}

/* ReDoc (read-only): its custom element fetches the document from
 * "openapi.json" (/openapi.json) and the bundle, which carries React and
 * everything else it needs, is redoc/redoc.standalone.js
 * (/redoc/redoc.standalone.js); no inline script, no CDN, no web font.
 * The bundle's side menu shows a logo from ReDoc's CDN: the page's
 * Content-Security-Policy lets images come only from here (or data:
 * URLs), so that request is never made and the logo is left out. */
static const char redoc_html[] =
	PAGE_HEAD("API reference")
	"<style>body{margin:0;padding:0}</style>\n</head><body>\n"
	"<redoc spec-url=\"openapi.json\"></redoc>\n"
	"<script src=\"redoc/redoc.standalone.js\"></script>\n"
	"</body></html>\n";

static void redoc_page(evapi_req *req, void *arg)
{
	const struct file_set *set = arg;
	if (!set->files) {
		evapi_reply_error(req, 404, "ReDoc is not installed on this "
		                  "server; the API is described at /docs and "
		                  "/openapi.json");
		return;
	}
	evapi_reply_add_header(req, "Content-Security-Policy",
	                       "img-src 'self' data:");
	evapi_reply_bytes(req, 200, "text/html; charset=utf-8", redoc_html,
	                  sizeof redoc_html - 1);
}

struct wanted {
	const char *name, *type;
};

/* The files /docs/ serves; the first two are required. */
static const struct wanted swagger_files[] = {
	{"swagger-ui.css", "text/css; charset=utf-8"},
	{"swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
	{"swagger-ui-standalone-preset.js", "text/javascript; charset=utf-8"},
	{"oauth2-redirect.html", "text/html; charset=utf-8"},
	{"oauth2-redirect.js", "text/javascript; charset=utf-8"},
	{"favicon-32x32.png", "image/png"},
	{"favicon-16x16.png", "image/png"},
};

/* The one file /redoc/ serves. */
static const struct wanted redoc_files[] = {
	{"redoc.standalone.js", "text/javascript; charset=utf-8"},
};
#define COUNT(a) (sizeof a / sizeof a[0])
#define MAX_DOCS_FILE (8u << 20)

static char *read_file(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	FILE *f;
	char *buf = NULL;
	long n;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	if (!(f = fopen(path, "rb")))
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    (size_t)n <= MAX_DOCS_FILE && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL &&
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf)
		*len = (size_t)n;
	return buf;
}

/* A strong validator of the bytes: FNV-1a and the length. */
static void set_etag(struct docs_file *f)
{
	unsigned long long h = 1469598103934665603ULL;
	size_t i;
	for (i = 0; i < f->len; i++)
		h = (h ^ (unsigned char)f->data[i]) * 1099511628211ULL;
	snprintf(f->etag, sizeof f->etag, "\"%llx\"", h ^ f->len);
}

/* Reads the `n` files of `w` from `dir` into `set`, with room for
 * `extra` built-in ones (creating thread, before the loop runs). 0, or
 * -1 when one of the first `required` is missing: then `set` stays
 * empty. */
static int load_files(struct file_set *set, const char *dir,
                      const struct wanted *w, size_t n, size_t required,
                      size_t extra)
{
	size_t i;
	set->files = calloc(n + extra, sizeof *set->files);
	if (!set->files)
		return -1;
	for (i = 0; i < n; i++) {
		struct docs_file *f = &set->files[set->nfiles];
		f->data = read_file(dir, w[i].name, &f->len);
		if (!f->data && i < required) {
			free_files(set);
			return -1;
		}
		if (!f->data)
			continue;
		f->name = w[i].name;
		f->type = w[i].type;
		set_etag(f);
		set->nfiles++;
	}
	return 0;
}

/* Swagger UI's files, then our initialiser, built in. */
static int load_swagger(struct file_set *set, const char *dir)
{
	struct docs_file *f;
	if (load_files(set, dir, swagger_files, COUNT(swagger_files), 2, 1))
		return -1;
	f = &set->files[set->nfiles];
	f->name = "evapi-docs.js";
	f->type = "text/javascript; charset=utf-8";
	f->len = sizeof init_js - 1;
	if (!(f->data = strdup(init_js))) {
		free_files(set);
		return -1;
	}
	set_etag(f);
	set->nfiles++;
	return 0;
}

static void docs_file(evapi_req *req, void *arg)
{
	const struct file_set *set = arg;
	const char *name = evapi_req_param(req, "file"), *inm;
	int i;

	for (i = 0; name && i < set->nfiles; i++) {
		const struct docs_file *f = &set->files[i];
		if (strcmp(f->name, name) != 0)
			continue;
		/* the files change only with a new Swagger UI or ReDoc: a
		 * day of caching, then a revalidation answered 304 */
		evapi_reply_add_header(req, "Cache-Control",
		                       "public, max-age=86400");
		evapi_reply_add_header(req, "ETag", f->etag);
		evapi_reply_add_header(req, "X-Content-Type-Options", "nosniff");
		inm = evapi_req_header(req, "If-None-Match");
		if (inm && strstr(inm, f->etag))
			evapi_reply_bytes(req, 304, NULL, "", 0);
		else
			evapi_reply_bytes(req, 200, f->type, f->data, f->len);
		return;
	}
	evapi_reply_error(req, 404, "Not Found");
}

int evapi__openapi_routes(evapi_app *app)
{
	struct evapi__openapi *o = meta(app);
	/* the config's directories, else configure's; "": none */
	const char *swagger = app->cfg.swagger_ui_dir;
	const char *redoc = app->cfg.redoc_dir;
	int rc;

#ifdef EVAPI_SWAGGER_UI_DIR
	if (!swagger)
		swagger = EVAPI_SWAGGER_UI_DIR;
#endif
#ifdef EVAPI_REDOC_DIR
	if (!redoc)
		redoc = EVAPI_REDOC_DIR;
#endif
	if (!o)
		return EVAPI_ENOMEM;
	if (swagger && *swagger && load_swagger(&o->swagger, swagger) != 0)
		evapi__log(app, EVAPI_LOG_WARN,
		           "swagger_ui_dir %s: no swagger-ui.css and "
		           "swagger-ui-bundle.js there; /docs is the plain page",
		           swagger);
	if (redoc && *redoc &&
	    load_files(&o->redoc, redoc, redoc_files, COUNT(redoc_files), 1,
	               0) != 0)
		evapi__log(app, EVAPI_LOG_WARN,
		           "redoc_dir %s: no redoc.standalone.js there; /redoc "
		           "answers 404", redoc);
	/* borrowed until now only */
	app->cfg.swagger_ui_dir = NULL;
	app->cfg.redoc_dir = NULL;
	rc = evapi_app_route(app, EVAPI_GET, "/openapi.json", EVAPI_INLINE,
	                     openapi_json, app);
	if (rc == 0)
		rc = evapi_app_route(app, EVAPI_GET, "/docs", EVAPI_INLINE,
		                     docs_page, o);
	if (rc == 0 && o->swagger.files)
		rc = evapi_app_route(app, EVAPI_GET, "/docs/{file}",
		                     EVAPI_INLINE, docs_file, &o->swagger);
	/* "" turns /redoc off and leaves the path to the app; a bundle
	 * that cannot be found is explained by the route's 404 */
	if (rc == 0 && !(redoc && !*redoc))
		rc = evapi_app_route(app, EVAPI_GET, "/redoc", EVAPI_INLINE,
		                     redoc_page, &o->redoc);
	if (rc == 0 && o->redoc.files)
		rc = evapi_app_route(app, EVAPI_GET, "/redoc/{file}",
		                     EVAPI_INLINE, docs_file, &o->redoc);
	return rc;
}
