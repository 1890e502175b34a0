/*
 * test_model.c: typed bodies (src/model.c): a struct described once
 * validates a declared body with the same 422 items as the equivalent
 * untyped declaration (the same validator, compared byte for byte on the
 * same app), fills the struct (every C type, defaults, lax coercions, on
 * both lanes), serialises replies with only the declared members, and
 * shows in the OpenAPI document; the registration checks; evapi_model_parse
 * without a route. Driven with the test client (evapi/testing.h).
 */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <evapi/model.h>
#include <evapi/testing.h>

/* ---- the models --------------------------------------------------------- */

typedef struct owner {
	char *name;
	int32_t age;
} owner;

typedef struct item {
	int64_t id;
	int32_t qty;
	double price;
	bool on_sale;
	int featured; /* a bool member of int size */
	char *title;
	char code[9]; /* at most (9 - 1) / 4 = 2 characters */
	char *note;   /* optional, no default: NULL when absent */
	owner owner;
	char **tags;   /* an array of strings */
	size_t ntags;
	owner *friends; /* an array of structs */
	size_t nfriends;
	char *secret; /* described by item_in, never by item_out */
} item;

static const evapi_member owner_members[] = {
	{EVAPI_MEMBER(owner, name, EVAPI_C_STRING), .required = 1,
	 .bounds = EVAPI_MIN_LEN, .min_len = 1},
	{EVAPI_MEMBER(owner, age, EVAPI_C_INT32), .dflt = "18"},
	{0}};
static const evapi_model owner_model = {"Owner", sizeof(owner),
                                        owner_members, 0};

static const evapi_member tag_elem = {
	.ctype = EVAPI_C_STRING, .size = sizeof(char *),
	.bounds = EVAPI_MIN_LEN, .min_len = 1};
static const evapi_member friend_elem = {
	.ctype = EVAPI_C_STRUCT, .size = sizeof(owner), .model = &owner_model};

#define ITEM_COMMON                                                        \
	{EVAPI_MEMBER(item, id, EVAPI_C_INT64), .required = 1,             \
	 .bounds = EVAPI_GE, .ge = 1},                                     \
	{EVAPI_MEMBER(item, qty, EVAPI_C_INT32), .dflt = "1"},             \
	{EVAPI_MEMBER(item, price, EVAPI_C_DOUBLE), .required = 1,         \
	 .bounds = EVAPI_GE, .ge = 0},                                     \
	{EVAPI_MEMBER(item, on_sale, EVAPI_C_BOOL), .dflt = "false"},      \
	{EVAPI_MEMBER(item, featured, EVAPI_C_BOOL), .dflt = "true"},      \
	{EVAPI_MEMBER(item, title, EVAPI_C_STRING), .required = 1,        \
	 .bounds = EVAPI_MAX_LEN, .max_len = 10},                          \
	{EVAPI_MEMBER(item, code, EVAPI_C_CHARS), .dflt = "\"xy\""},       \
	{EVAPI_MEMBER(item, note, EVAPI_C_STRING)},                        \
	{EVAPI_MEMBER(item, owner, EVAPI_C_STRUCT), .model = &owner_model, \
	 .dflt = "{\"name\": \"nobody\"}"},                                \
	{EVAPI_MEMBER(item, tags, EVAPI_C_ARRAY), .dflt = "[]",            \
	 .bounds = EVAPI_MAX_LEN, .max_len = 3, .items = &tag_elem,        \
	 .count_offset = offsetof(item, ntags)},                           \
	{EVAPI_MEMBER(item, friends, EVAPI_C_ARRAY), .items = &friend_elem, \
	 .count_offset = offsetof(item, nfriends)}

static const evapi_member item_in_members[] = {
	ITEM_COMMON,
	{EVAPI_MEMBER(item, secret, EVAPI_C_STRING)},
	{0}};
static const evapi_model item_in = {"ItemIn", sizeof(item), item_in_members,
                                    0};
static const evapi_member item_out_members[] = {ITEM_COMMON, {0}};
static const evapi_model item_out = {"ItemOut", sizeof(item),
                                     item_out_members, 0};
static const evapi_model item_strict = {"ItemStrict", sizeof(item),
                                        item_in_members, 1};

/* The same body declared untyped, as an application wrote it before
 * models: the int32 range and the buffer's length written out. */
static const evapi_field owner_fields[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1,
	 .bounds = EVAPI_MIN_LEN, .min_len = 1},
	{.name = "age", .type = EVAPI_INT, .dflt = "18",
	 .bounds = EVAPI_GE | EVAPI_LE, .ge = INT32_MIN, .le = INT32_MAX},
	{0}};
static const evapi_field tag_field = {.type = EVAPI_STRING,
                                      .bounds = EVAPI_MIN_LEN, .min_len = 1};
static const evapi_field friend_field = {.type = EVAPI_OBJECT,
                                         .fields = owner_fields};
static const evapi_field item_fields[] = {
	{.name = "id", .type = EVAPI_INT, .required = 1, .bounds = EVAPI_GE,
	 .ge = 1},
	{.name = "qty", .type = EVAPI_INT, .dflt = "1",
	 .bounds = EVAPI_GE | EVAPI_LE, .ge = INT32_MIN, .le = INT32_MAX},
	{.name = "price", .type = EVAPI_NUMBER, .required = 1,
	 .bounds = EVAPI_GE, .ge = 0},
	{.name = "on_sale", .type = EVAPI_BOOL, .dflt = "false"},
	{.name = "featured", .type = EVAPI_BOOL, .dflt = "true"},
	{.name = "title", .type = EVAPI_STRING, .required = 1,
	 .bounds = EVAPI_MAX_LEN, .max_len = 10},
	{.name = "code", .type = EVAPI_STRING, .dflt = "\"xy\"",
	 .bounds = EVAPI_MAX_LEN, .max_len = 2},
	{.name = "note", .type = EVAPI_STRING},
	{.name = "owner", .type = EVAPI_OBJECT, .fields = owner_fields,
	 .dflt = "{\"name\": \"nobody\"}"},
	{.name = "tags", .type = EVAPI_ARRAY, .items = &tag_field, .dflt = "[]",
	 .bounds = EVAPI_MAX_LEN, .max_len = 3},
	{.name = "friends", .type = EVAPI_ARRAY, .items = &friend_field},
	{.name = "secret", .type = EVAPI_STRING},
	{0}};

/* ---- the app ------------------------------------------------------------ */

/* Echoes what the struct holds, built from the C values (not the JSON),
 * so a wrong fill shows. */
static void create(evapi_req *req, void *arg)
{
	const evapi_model *m = arg;
	item it;
	json_t *o, *tags, *friends;
	size_t i;

	if (evapi_req_model(req, m, &it) != 0) {
		evapi_reply_error(req, 500, "no model");
		return;
	}
	tags = json_array();
	for (i = 0; i < it.ntags; i++)
		json_array_append_new(tags, json_string(it.tags[i]));
	friends = json_array();
	for (i = 0; i < it.nfriends; i++)
		json_array_append_new(friends, json_pack(
			"{s:s, s:i}", "name", it.friends[i].name, "age",
			(int)it.friends[i].age));
	o = json_pack("{s:I, s:i, s:f, s:b, s:i, s:s, s:s, s:o, s:{s:s, s:i},"
	              " s:o}",
	              "id", (json_int_t)it.id, "qty", (int)it.qty, "price",
	              it.price, "on_sale", (int)it.on_sale, "featured",
	              it.featured, "title", it.title, "code", it.code, "note",
	              it.note ? json_string(it.note) : json_null(), "owner",
	              "name", it.owner.name, "age", (int)it.owner.age, "secret",
	              it.secret ? json_string(it.secret) : json_null());
	json_object_set_new(o, "tags", tags);
	json_object_set_new(o, "friends", friends);
	evapi_model_free(m, &it);
	CHECK(it.title == NULL && it.owner.name == NULL && it.tags == NULL &&
	      it.ntags == 0 && it.friends == NULL);
	evapi_reply_json(req, 200, o);
}

/* Replies through the response model: the secret stays in. */
static void create_out(evapi_req *req, void *arg)
{
	item it;

	if (evapi_req_model(req, &item_in, &it) != 0) {
		evapi_reply_error(req, 500, "no model");
		return;
	}
	if (!it.secret)
		it.secret = strdup("hunter2");
	evapi_reply_model(req, 201, &item_out, &it);
	evapi_model_free(&item_in, &it);
}

/* Reads the body with a model the route was not declared with. */
static void wrong_model(evapi_req *req, void *arg)
{
	item it;
	int rc = evapi_req_model(req, &item_out, &it);
	evapi_reply_json(req, 200, json_pack("{s:i}", "rc", rc));
}

static void untyped(evapi_req *req, void *arg)
{
	evapi_reply_text(req, 200, "ok");
}

static int route(evapi_app *app, const char *path, evapi_lane lane,
                 evapi_handler_cb cb, const evapi_model *m)
{
	evapi_route_decl d;
	memset(&d, 0, sizeof d);
	d.methods = EVAPI_POST;
	d.path = path;
	d.lane = lane;
	d.cb = cb;
	d.arg = (void *)m;
	d.body_model = m;
	return evapi_app_route_decl(app, &d);
}

static evapi_test *start(void)
{
	static const evapi_response created[] = {{.status = 201}, {0}};
	evapi_route_decl d;
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.openapi = 1;
	app = evapi_app_new(&cfg);
	CHECK_INT(route(app, "/items", EVAPI_INLINE, create, &item_in), ==, 0);
	CHECK_INT(route(app, "/pool/items", EVAPI_POOL, create, &item_in), ==,
	          0);
	CHECK_INT(route(app, "/strict", EVAPI_INLINE, create, &item_strict),
	          ==, 0);
	CHECK_INT(route(app, "/wrong", EVAPI_INLINE, wrong_model, &item_in),
	          ==, 0);
	memset(&d, 0, sizeof d);
	d.methods = EVAPI_POST;
	d.path = "/untyped";
	d.cb = untyped;
	d.body = item_fields;
	CHECK_INT(evapi_app_route_decl(app, &d), ==, 0);
	d.path = "/untyped/strict";
	d.body_forbid_extra = 1;
	CHECK_INT(evapi_app_route_decl(app, &d), ==, 0);
	memset(&d, 0, sizeof d);
	d.methods = EVAPI_POST;
	d.path = "/out";
	d.cb = create_out;
	d.body_model = &item_in;
	d.response_model = &item_out;
	d.responses = created;
	CHECK_INT(evapi_app_route_decl(app, &d), ==, 0);
	return evapi_test_start(app);
}

static evapi_test_response *post(evapi_test *tc, const char *path,
                                 const char *body)
{
	static const char *const json_ct[] = {
		"Content-Type: application/json", NULL};
	evapi_test_req r;
	memset(&r, 0, sizeof r);
	r.method = "POST";
	r.path = path;
	r.body = body;
	r.headers = json_ct;
	return evapi_test_request(tc, &r);
}

#define CHECK_JSON_EQ(got, want)                                             \
	do {                                                                 \
		json_t *w_ = json_loads((want), 0, NULL);                    \
		char *g_ = json_dumps((got), JSON_SORT_KEYS | JSON_COMPACT); \
		char *ws_ = json_dumps(w_, JSON_SORT_KEYS | JSON_COMPACT);   \
		if (!w_ || !(got) || !json_equal((got), w_))                 \
			TH_FAIL_AT("JSON differs:\n    got      %s\n    "     \
			           "expected %s", g_ ? g_ : "(null)",          \
			           ws_ ? ws_ : (want));                      \
		free(g_);                                                    \
		free(ws_);                                                   \
		json_decref(w_);                                             \
	} while (0)

/* ---- tests -------------------------------------------------------------- */

static void test_fill_every_type(void)
{
	static const char *const paths[] = {"/items", "/pool/items"};
	evapi_test *tc = start();
	size_t i;

	CHECK(tc != NULL);
	for (i = 0; tc && i < 2; i++) {
		/* lax mode as Pydantic: "7" is an int, 1 a bool, 3 a float */
		evapi_test_response *r = post(tc, paths[i],
			"{\"id\": \"7\", \"qty\": -2147483648, \"price\": 3,"
			" \"on_sale\": 1, \"featured\": \"no\","
			" \"title\": \"caf\u00e9\", \"code\": \"\u00e9\u00e9\","
			" \"note\": \"n\", \"owner\": {\"name\": \"ann\","
			" \"age\": 2147483647}, \"secret\": \"s\","
			" \"tags\": [\"a\", \"b\"], \"friends\": [{\"name\": \"f\"},"
			" {\"name\": \"g\", \"age\": \"3\"}], \"ignored\": [1, 2]}");
		CHECK_INT(evapi_test_status(r), ==, 200);
		CHECK_JSON_EQ(evapi_test_json(r),
			"{\"id\": 7, \"qty\": -2147483648, \"price\": 3.0,"
			" \"on_sale\": true, \"featured\": 0,"
			" \"title\": \"caf\u00e9\", \"code\": \"\u00e9\u00e9\","
			" \"note\": \"n\", \"owner\": {\"name\": \"ann\","
			" \"age\": 2147483647}, \"secret\": \"s\","
			" \"tags\": [\"a\", \"b\"], \"friends\": [{\"name\": \"f\","
			" \"age\": 18}, {\"name\": \"g\", \"age\": 3}]}");
		evapi_test_response_free(r);
	}
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_defaults(void)
{
	evapi_test *tc = start();
	evapi_test_response *r = post(tc, "/items",
		"{\"id\": 1, \"price\": 0.5, \"title\": \"t\"}");

	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_JSON_EQ(evapi_test_json(r),
		"{\"id\": 1, \"qty\": 1, \"price\": 0.5, \"on_sale\": false,"
		" \"featured\": 1, \"title\": \"t\", \"code\": \"xy\","
		" \"note\": null, \"owner\": {\"name\": \"nobody\", \"age\": 18},"
		" \"secret\": null, \"tags\": [], \"friends\": []}");
	evapi_test_response_free(r);
	/* an explicit null for an optional member: zero, as absent */
	r = post(tc, "/items",
	         "{\"id\": 1, \"price\": 1, \"title\": \"t\", \"note\": null}");
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK(json_is_null(json_object_get(evapi_test_json(r), "note")));
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

/* Bad bodies: the typed route answers exactly what the untyped
 * declaration answers, and that is Pydantic's shape. */
static void test_422_same_as_untyped(void)
{
	static const char *const bodies[] = {
		"{}",
		"[]",
		"{\"id\": 0, \"price\": -1, \"title\": 5}",
		"{\"id\": 1.5, \"price\": \"x\", \"title\": \"abcdefghijk\","
		" \"qty\": 2147483648, \"code\": \"abc\"}",
		"{\"id\": 1, \"price\": 1, \"title\": \"t\", \"on_sale\": \"maybe\","
		" \"owner\": {\"age\": -2147483649}}",
		"{\"id\": 1, \"price\": 1, \"title\": \"t\", \"owner\": 3,"
		" \"featured\": []}",
		"{\"id\": 1, \"price\": 1, \"title\": \"t\", \"owner\": {\"name\": \"\"},"
		" \"note\": 1}",
		"{\"id\": 1, \"price\": 1, \"title\": \"t\", \"tags\": [\"a\", \"\", 3],"
		" \"friends\": [{}, {\"name\": \"x\", \"age\": 1.5}, 7]}",
		"{\"id\": 1, \"price\": 1, \"title\": \"t\", \"tags\": [\"a\", \"b\","
		" \"c\", \"d\"], \"friends\": {}}",
	};
	evapi_test *tc = start();
	evapi_test_response *a, *b;
	size_t i;

	for (i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		a = post(tc, "/items", bodies[i]);
		b = post(tc, "/untyped", bodies[i]);
		CHECK_INT(evapi_test_status(a), ==, 422);
		CHECK_INT(evapi_test_status(b), ==, 422);
		CHECK_STR(evapi_test_body(a, NULL), evapi_test_body(b, NULL));
		evapi_test_response_free(a);
		evapi_test_response_free(b);
	}
	a = post(tc, "/items", "{\"id\": 1, \"price\": 1, \"title\": \"t\","
	                       " \"qty\": 2147483648, \"code\": \"abc\"}");
	CHECK_JSON_EQ(evapi_test_json(a),
		"{\"detail\": [{\"type\": \"less_than_equal\", \"loc\": [\"body\","
		" \"qty\"], \"msg\": \"Input should be less than or equal to"
		" 2147483647\", \"input\": 2147483648, \"ctx\": {\"le\":"
		" 2147483647}}, {\"type\": \"string_too_long\", \"loc\":"
		" [\"body\", \"code\"], \"msg\": \"String should have at most 2"
		" characters\", \"input\": \"abc\", \"ctx\": {\"max_length\": 2}}]}");
	evapi_test_response_free(a);
	a = post(tc, "/items", "{\"price\": 1}");
	CHECK_JSON_EQ(evapi_test_json(a),
		"{\"detail\": [{\"type\": \"missing\", \"loc\": [\"body\", \"id\"],"
		" \"msg\": \"Field required\", \"input\": {\"price\": 1}},"
		" {\"type\": \"missing\", \"loc\": [\"body\", \"title\"],"
		" \"msg\": \"Field required\", \"input\": {\"price\": 1}}]}");
	evapi_test_response_free(a);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_extra_fields(void)
{
	static const char body[] =
		"{\"zz\": 1, \"id\": 0, \"price\": 1, \"title\": \"t\","
		" \"owner\": {\"name\": \"a\", \"pet\": \"cat\"}, \"aa\": null}";
	evapi_test *tc = start();
	evapi_test_response *a = post(tc, "/strict", body);
	evapi_test_response *b = post(tc, "/untyped/strict", body);

	/* field errors first, then each extra member in the order sent; the
	 * nested model (Owner) does not forbid them */
	CHECK_INT(evapi_test_status(a), ==, 422);
	CHECK_JSON_EQ(evapi_test_json(a),
		"{\"detail\": [{\"type\": \"greater_than_equal\", \"loc\":"
		" [\"body\", \"id\"], \"msg\": \"Input should be greater than or"
		" equal to 1\", \"input\": 0, \"ctx\": {\"ge\": 1}},"
		" {\"type\": \"extra_forbidden\", \"loc\": [\"body\", \"zz\"],"
		" \"msg\": \"Extra inputs are not permitted\", \"input\": 1},"
		" {\"type\": \"extra_forbidden\", \"loc\": [\"body\", \"aa\"],"
		" \"msg\": \"Extra inputs are not permitted\", \"input\": null}]}");
	CHECK_STR(evapi_test_body(a, NULL), evapi_test_body(b, NULL));
	evapi_test_response_free(a);
	evapi_test_response_free(b);
	/* ignored by default */
	a = post(tc, "/items", "{\"zz\": 1, \"id\": 2, \"price\": 1,"
	                       " \"title\": \"t\"}");
	CHECK_INT(evapi_test_status(a), ==, 200);
	CHECK(json_object_get(evapi_test_json(a), "zz") == NULL);
	evapi_test_response_free(a);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_reply_declared_only(void)
{
	evapi_test *tc = start();
	evapi_test_response *r = post(tc, "/out",
		"{\"id\": 3, \"price\": 2.5, \"title\": \"t\","
		" \"secret\": \"pw\", \"tags\": [\"x\"]}");
	json_t *j = evapi_test_json(r);

	CHECK_INT(evapi_test_status(r), ==, 201);
	CHECK(json_object_get(j, "secret") == NULL);
	CHECK(j != NULL);
	CHECK_JSON_EQ(j,
		"{\"id\": 3, \"qty\": 1, \"price\": 2.5, \"on_sale\": false,"
		" \"featured\": true, \"title\": \"t\", \"code\": \"xy\","
		" \"note\": null, \"owner\": {\"name\": \"nobody\", \"age\": 18},"
		" \"tags\": [\"x\"], \"friends\": []}");
	evapi_test_response_free(r);
	r = post(tc, "/wrong", "{\"id\": 3, \"price\": 2.5, \"title\": \"t\"}");
	CHECK_INT(json_integer_value(json_object_get(evapi_test_json(r), "rc")),
	          ==, EVAPI_EINVAL);
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_to_json(void)
{
	item it;
	json_t *j;

	memset(&it, 0, sizeof it);
	it.id = INT64_MAX;
	it.title = (char *)"x";
	it.secret = (char *)"never";
	memcpy(it.code, "ab", 3);
	it.ntags = 2;
	it.tags = (char *[]){"p", NULL};
	j = evapi_model_to_json(&item_out, &it);
	CHECK_JSON_EQ(j,
		"{\"id\": 9223372036854775807, \"qty\": 0, \"price\": 0.0,"
		" \"on_sale\": false, \"featured\": false, \"title\": \"x\","
		" \"code\": \"ab\", \"note\": null,"
		" \"owner\": {\"name\": null, \"age\": 0},"
		" \"tags\": [\"p\", null], \"friends\": []}");
	json_decref(j);
	it.price = NAN; /* not JSON */
	CHECK(evapi_model_to_json(&item_out, &it) == NULL);
	it.price = 0;
	it.title = (char *)"\xff"; /* not UTF-8 */
	CHECK(evapi_model_to_json(&item_out, &it) == NULL);
}

/* The member reached through `keys` (NULL-ended), or NULL. */
static json_t *at(json_t *j, ...)
{
	va_list ap;
	const char *k;

	va_start(ap, j);
	while (j && (k = va_arg(ap, const char *)) != NULL)
		j = json_object_get(j, k);
	va_end(ap);
	return j;
}

static void test_openapi(void)
{
	evapi_test *tc = start();
	evapi_test_response *r = evapi_test_get(tc, "/openapi.json");
	json_t *doc = evapi_test_json(r), *schemas, *op, *s;

	schemas = at(doc, "components", "schemas", NULL);
	op = at(doc, "paths", "/out", "post", NULL);
	CHECK_STR(json_string_value(at(op, "requestBody", "content",
	                               "application/json", "schema", "$ref",
	                               NULL)),
	          "#/components/schemas/ItemIn");
	CHECK_STR(json_string_value(at(op, "responses", "201", "content",
	                               "application/json", "schema", "$ref",
	                               NULL)),
	          "#/components/schemas/ItemOut");
	CHECK(at(op, "responses", "200", NULL) == NULL);
	CHECK(at(op, "responses", "422", NULL) != NULL);
	/* the typed body's schema is the untyped declaration's */
	s = json_deep_copy(json_object_get(schemas, "ItemIn"));
	json_object_set_new(s, "title", json_string("Body_untyped"));
	CHECK(json_equal(s, json_object_get(schemas, "Body_untyped")));
	json_decref(s);
	s = json_object_get(schemas, "ItemOut");
	CHECK(at(s, "properties", "secret", NULL) == NULL);
	CHECK(at(s, "properties", "title", NULL) != NULL);
	CHECK_INT(json_integer_value(at(s, "properties", "qty", "maximum",
	                                NULL)), ==, INT32_MAX);
	CHECK_INT(json_integer_value(at(s, "properties", "code", "maxLength",
	                                NULL)), ==, 2);
	CHECK_STR(json_string_value(at(s, "properties", "owner", "type", NULL)),
	          "object");
	CHECK_STR(json_string_value(at(s, "properties", "tags", "items", "type",
	                               NULL)), "string");
	CHECK_INT(json_integer_value(at(s, "properties", "tags", "maxItems",
	                                NULL)), ==, 3);
	CHECK_STR(json_string_value(at(s, "properties", "friends", "items",
	                               "type", NULL)), "object");
	CHECK(json_object_get(s, "additionalProperties") == NULL);
	CHECK(json_is_false(at(schemas, "ItemStrict", "additionalProperties",
	                       NULL)));
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

typedef struct wrong {
	int64_t n;
	char buf[8];
	char **arr;
	size_t narr;
} wrong;

static void test_registration_refused(void)
{
	static const evapi_member int32_on_int64[] = {
		{EVAPI_MEMBER(wrong, n, EVAPI_C_INT32)}, {0}};
	static const evapi_member buf_too_small[] = {
		{EVAPI_MEMBER(wrong, buf, EVAPI_C_CHARS),
		 .bounds = EVAPI_MAX_LEN, .max_len = 2}, {0}};
	static const evapi_member bad_default[] = {
		{EVAPI_MEMBER(wrong, n, EVAPI_C_INT64), .dflt = "\"x\""}, {0}};
	static const evapi_member past_end[] = {
		{.name = "n", .ctype = EVAPI_C_INT64, .offset = sizeof(wrong),
		 .size = 8}, {0}};
	static const evapi_member str_elem = {.ctype = EVAPI_C_STRING,
	                                      .size = sizeof(char *)};
	static const evapi_member arr_elem = {
		.ctype = EVAPI_C_ARRAY, .size = sizeof(void *), .items = &str_elem};
	static const evapi_member elem_default = {
		.ctype = EVAPI_C_STRING, .size = sizeof(char *), .dflt = "\"x\""};
	static const evapi_member no_items[] = {
		{EVAPI_MEMBER(wrong, arr, EVAPI_C_ARRAY),
		 .count_offset = offsetof(wrong, narr)}, {0}};
	static const evapi_member array_of_arrays[] = {
		{EVAPI_MEMBER(wrong, arr, EVAPI_C_ARRAY), .items = &arr_elem,
		 .count_offset = offsetof(wrong, narr)}, {0}};
	static const evapi_member count_past_end[] = {
		{EVAPI_MEMBER(wrong, arr, EVAPI_C_ARRAY), .items = &str_elem,
		 .count_offset = sizeof(wrong) - 4}, {0}};
	static const evapi_member element_default[] = {
		{EVAPI_MEMBER(wrong, arr, EVAPI_C_ARRAY), .items = &elem_default,
		 .count_offset = offsetof(wrong, narr)}, {0}};
	static const evapi_member ok[] = {
		{EVAPI_MEMBER(wrong, n, EVAPI_C_INT64)},
		{EVAPI_MEMBER(wrong, buf, EVAPI_C_CHARS),
		 .bounds = EVAPI_MAX_LEN, .max_len = 1}, {0}};
	const evapi_model models[] = {
		{"A", sizeof(wrong), int32_on_int64, 0},
		{"B", sizeof(wrong), buf_too_small, 0},
		{"C", sizeof(wrong), bad_default, 0},
		{"D", sizeof(wrong), past_end, 0},
		{"E", sizeof(wrong), no_items, 0},
		{"F", sizeof(wrong), array_of_arrays, 0},
		{"G", sizeof(wrong), count_past_end, 0},
		{"H", sizeof(wrong), element_default, 0},
		{"bad name", sizeof(wrong), ok, 0},
	};
	static const evapi_model good = {"Good", sizeof(wrong), ok, 0};
	static const evapi_field f[] = {{.name = "n", .type = EVAPI_INT}, {0}};
	static const evapi_response with_schema[] = {
		{.status = 200, .schema = &f[0]}, {0}};
	evapi_config cfg;
	evapi_app *app;
	evapi_route_decl d;
	size_t i;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	for (i = 0; i < sizeof models / sizeof models[0]; i++) {
		CHECK_INT(route(app, "/a", EVAPI_INLINE, untyped, &models[i]), ==,
		          EVAPI_EINVAL);
		memset(&d, 0, sizeof d);
		d.methods = EVAPI_GET;
		d.path = "/r";
		d.cb = untyped;
		d.response_model = &models[i];
		CHECK_INT(evapi_app_route_decl(app, &d), ==, EVAPI_EINVAL);
	}
	memset(&d, 0, sizeof d);
	d.methods = EVAPI_POST;
	d.path = "/b";
	d.cb = untyped;
	d.body_model = &good;
	d.body = f; /* both */
	CHECK_INT(evapi_app_route_decl(app, &d), ==, EVAPI_EINVAL);
	d.body = NULL;
	d.response_model = &good;
	d.responses = with_schema; /* its 2xx already has a schema */
	CHECK_INT(evapi_app_route_decl(app, &d), ==, EVAPI_EINVAL);
	d.responses = NULL;
	CHECK_INT(evapi_app_route_decl(app, &d), ==, 0);
	evapi_app_free(app);
}

static void test_parse_without_route(void)
{
	json_t *v = json_loads("{\"id\": 5, \"price\": 1e3, \"title\": \"t\","
	                       " \"owner\": {\"name\": \"bo\", \"age\": \"40\"}}",
	                       0, NULL);
	json_t *errs = NULL;
	item it;

	CHECK_INT(evapi_model_parse(&item_in, v, &it, &errs), ==, 0);
	CHECK(errs == NULL);
	CHECK_INT(it.id, ==, 5);
	CHECK_DBL(it.price, ==, 1000.0);
	CHECK_STR(it.owner.name, "bo");
	CHECK_INT(it.owner.age, ==, 40);
	CHECK_STR(it.code, "xy");
	CHECK_INT(it.ntags, ==, 0);
	CHECK(it.tags == NULL);
	evapi_model_free(&item_in, &it);
	evapi_model_free(&item_in, &it); /* again: the strings are NULL */
	json_decref(v);
	v = json_loads("{\"id\": 5, \"title\": null}", 0, NULL);
	CHECK_INT(evapi_model_parse(&item_strict, v, &it, &errs), ==,
	          EVAPI_EINVAL);
	CHECK_JSON_EQ(errs,
		"[{\"type\": \"missing\", \"loc\": [\"body\", \"price\"],"
		" \"msg\": \"Field required\", \"input\": {\"id\": 5,"
		" \"title\": null}}, {\"type\": \"string_type\", \"loc\":"
		" [\"body\", \"title\"], \"msg\": \"Input should be a valid"
		" string\", \"input\": null}]");
	json_decref(errs);
	CHECK_INT(evapi_model_parse(&item_strict, v, &it, NULL), ==,
	          EVAPI_EINVAL);
	json_decref(v);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"model.fill_every_type", test_fill_every_type},
		{"model.defaults", test_defaults},
		{"model.422_same_as_untyped", test_422_same_as_untyped},
		{"model.extra_fields", test_extra_fields},
		{"model.reply_declared_only", test_reply_declared_only},
		{"model.to_json", test_to_json},
		{"model.openapi", test_openapi},
		{"model.registration_refused", test_registration_refused},
		{"model.parse_without_route", test_parse_without_route},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
