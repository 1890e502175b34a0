/*
 * openapi.c: the app's OpenAPI 3.1 document, built from the router and
 * the route declarations, and the two routes that serve it when
 * config.openapi is set: GET /openapi.json and GET /docs (a small page,
 * no external scripts, that fetches the document and lists the
 * operations).
 *
 * Threads: the loop (both routes are inline; the document is rebuilt per
 * request from data that is read-only once the app runs, in well under a
 * millisecond for a few dozen routes). Before evapi_app_run, the creating
 * thread may call evapi_app_openapi as well.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void openapi_json(evapi_req *req, void *arg);
static void docs_page(evapi_req *req, void *arg);

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
	if (f->type == EVAPI_OBJECT) {
		json_t *props = json_object(), *req = json_array();
		for (m = f->fields; m && m->name; m++) {
			json_object_set_new(props, m->name,
			                    field_schema(d, m, 0, 0, depth + 1));
			if (m->required)
				json_array_append_new(req, json_string(m->name));
		}
		json_object_set_new(s, "properties", props);
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

static json_t *operation(const evapi__route *rt, json_t *schemas)
{
	const struct evapi__decl *d = rt->decl;
	const char *m = evapi_method_name(rt->method);
	json_t *op = json_object(), *resp = json_object(), *tags;
	char id[256];
	size_t i, o = 0;

	/* operationId: "get_/items/{item_id}" -> "get__items__item_id_" */
	for (i = 0; m[i] && o + 1 < sizeof id; i++)
		id[o++] = (char)(m[i] | 0x20);
	for (i = 0; rt->tmpl[i] && o + 1 < sizeof id; i++) {
		char c = rt->tmpl[i];
		id[o++] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9')) ? c : '_';
	}
	id[o] = '\0';
	json_object_set_new(op, "operationId", json_string(id));
	json_object_set_new(op, "summary",
	                    json_string(d && d->d.summary ? d->d.summary
	                                                  : rt->label));
	json_object_set_new(op, "x-evapi-lane",
	                    json_string(evapi_lane_name(rt->lane)));
	if ((tags = evapi__group_tags(rt->group))) /* a router's */
		json_object_set_new(op, "tags", tags);
	json_object_set_new(op, "parameters", parameters(rt));
	json_object_set_new(resp, "200", json_pack(
		"{s:s, s:{s:{s:{}}}}", "description", "Successful Response",
		"content", "application/json", "schema"));
	if (d && d->d.body) {
		evapi_field root;
		char ref[300];
		memset(&root, 0, sizeof root);
		root.type = EVAPI_OBJECT;
		root.fields = d->d.body;
		json_t *s = field_schema(d, &root, 0, 0, 0);
		json_object_set_new(s, "title", json_string(d->body_name));
		json_object_set_new(schemas, d->body_name, s);
		snprintf(ref, sizeof ref, "#/components/schemas/%s",
		         d->body_name);
		json_object_set_new(op, "requestBody", json_pack(
			"{s:b, s:{s:{s:{s:s}}}}", "required", !d->d.body_optional,
			"content", "application/json", "schema", "$ref", ref));
		json_object_set_new(resp, "415", error_response(
			"Unsupported Media Type", "HTTPError"));
	}
	if (d && d->d.upload) {
		json_t *content = json_pack(
			"{s:{s:{s:s, s:{s:s, s:s}}}}", "multipart/form-data",
			"schema", "type", "object", "additionalProperties",
			"type", "string", "contentMediaType",
			"application/octet-stream");
		if (d->d.upload->raw)
			json_object_set_new(content, "application/octet-stream",
			                    json_pack("{s:{s:s, s:s}}", "schema",
			                              "type", "string",
			                              "contentMediaType",
			                              "application/octet-stream"));
		json_object_set_new(op, "requestBody", json_pack(
			"{s:b, s:o}", "required", 1, "content", content));
		json_object_set_new(resp, "400", error_response(
			"Malformed upload or too many parts", "HTTPError"));
		json_object_set_new(resp, "413", error_response(
			"Upload over its size limit", "HTTPError"));
		json_object_set_new(resp, "415", error_response(
			"Unsupported Media Type", "HTTPError"));
	}
	if (d)
		json_object_set_new(resp, "422", error_response(
			"Validation Error", "HTTPValidationError"));
	if (rt->lane == EVAPI_POOL || (d && d->d.upload))
		json_object_set_new(resp, "503", error_response(
			"Worker pool queue full", "HTTPError"));
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

json_t *evapi_app_openapi(evapi_app *app)
{
	json_t *doc, *paths, *schemas;
	size_t i, n;

	if (!app)
		return NULL;
	paths = json_object();
	schemas = common_schemas();
	doc = json_pack("{s:s, s:{s:s, s:s}, s:o, s:{s:o}}", "openapi", "3.1.0",
	                "info", "title", "evapi", "version", EVAPI_VERSION,
	                "paths", paths, "components", "schemas", schemas);
	if (!doc)
		return NULL;
	n = evapi__router_count(app->router);
	for (i = 0; i < n; i++) {
		evapi__route *rt = evapi__router_at(app->router, i);
		const char *m = evapi_method_name(rt->method);
		json_t *item;
		char lower[16];
		size_t k;
		if (rt->cb == openapi_json || rt->cb == docs_page)
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
			json_object_set_new(item, lower, operation(rt, schemas));
	}
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

static void docs_page(evapi_req *req, void *arg)
{
	evapi_reply_bytes(req, 200, "text/html; charset=utf-8", docs_html,
	                  sizeof docs_html - 1);
}

int evapi__openapi_routes(evapi_app *app)
{
	int rc = evapi_app_route(app, EVAPI_GET, "/openapi.json", EVAPI_INLINE,
	                         openapi_json, app);
	if (rc == 0)
		rc = evapi_app_route(app, EVAPI_GET, "/docs", EVAPI_INLINE,
		                     docs_page, NULL);
	return rc;
}
