/*
 * test_schema.c: declared parameters and bodies (src/schema.c): the
 * registration checks, typed accessors, and the 422/415 answers compared
 * field by field with the bodies FastAPI (Pydantic v2) gives for the same
 * declarations, on a real app at 127.0.0.1:0.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

/* Compares a response body with the expected JSON, field by field
 * (json_equal: same keys, same values, same array order). */
#define CHECK_JSON(got, expected)                                            \
	do {                                                                 \
		json_error_t e_;                                             \
		json_t *g_ = json_loads((got), JSON_DECODE_ANY, &e_);        \
		json_t *x_ = json_loads((expected), JSON_DECODE_ANY, &e_);   \
		if (!x_)                                                     \
			TH_FAIL_AT("bad expected JSON: %s", e_.text);        \
		else if (!g_ || !json_equal(g_, x_))                         \
			TH_FAIL_AT("JSON differs:\n    got      %s\n    "     \
			           "expected %s", (got), (expected));        \
		json_decref(g_);                                             \
		json_decref(x_);                                             \
	} while (0)

/* ---- declarations ----------------------------------------------------- */

/* FastAPI:
 *   @app.get("/items/{item_id}")
 *   def read_item(item_id: int = Path(ge=1), q: str | None =
 *                 Query(None, max_length=5, min_length=2),
 *                 limit: int = Query(10, ge=1, le=100),
 *                 ratio: float = 0.5, flag: bool = False,
 *                 x_token: str = Header()) */
static const evapi_field item_params[] = {
	{.name = "item_id", .in = EVAPI_IN_PATH, .type = EVAPI_INT,
	 .required = 1, .bounds = EVAPI_GE, .ge = 1},
	{.name = "q", .type = EVAPI_STRING,
	 .bounds = EVAPI_MIN_LEN | EVAPI_MAX_LEN, .min_len = 2, .max_len = 5},
	{.name = "limit", .type = EVAPI_INT, .dflt = "10",
	 .bounds = EVAPI_GE | EVAPI_LE, .ge = 1, .le = 100},
	{.name = "ratio", .type = EVAPI_NUMBER, .dflt = "0.5",
	 .bounds = EVAPI_LE, .le = 2.5},
	{.name = "flag", .type = EVAPI_BOOL, .dflt = "false"},
	{.name = "x-token", .in = EVAPI_IN_HEADER, .type = EVAPI_STRING,
	 .required = 1},
	{0}};

/* class Owner(BaseModel): name: str; age: int | None = None
 * class Item(BaseModel): name: str = Field(max_length=10); price: float
 *   = Field(ge=0); count: int = 1; tags: list[str] = Field([],
 *   max_length=3); owner: Owner | None = None; ok: bool = True */
static const evapi_field owner_fields[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1},
	{.name = "age", .type = EVAPI_INT},
	{0}};
static const evapi_field tag_item = {.type = EVAPI_STRING};
static const evapi_field item_body[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1,
	 .bounds = EVAPI_MAX_LEN, .max_len = 10},
	{.name = "price", .type = EVAPI_NUMBER, .required = 1,
	 .bounds = EVAPI_GE, .ge = 0},
	{.name = "count", .type = EVAPI_INT, .dflt = "1"},
	{.name = "tags", .type = EVAPI_ARRAY, .items = &tag_item, .dflt = "[]",
	 .bounds = EVAPI_MAX_LEN, .max_len = 3},
	{.name = "owner", .type = EVAPI_OBJECT, .fields = owner_fields},
	{.name = "ok", .type = EVAPI_BOOL, .dflt = "true"},
	{0}};

static const evapi_field pool_params[] = {
	{.name = "n", .type = EVAPI_INT, .required = 1},
	{0}};

/* ---- handlers ----------------------------------------------------------- */

static int pool_runs; /* atomic: pool handler invocations */

static void read_item(evapi_req *req, void *arg)
{
	long long id = 0, limit = 0;
	double ratio = 0;
	int flag = -1;

	CHECK_INT(evapi_req_get_int(req, "item_id", &id), ==, 0);
	CHECK_INT(evapi_req_get_int(req, "limit", &limit), ==, 0);
	CHECK_INT(evapi_req_get_number(req, "ratio", &ratio), ==, 0);
	CHECK_INT(evapi_req_get_bool(req, "flag", &flag), ==, 0);
	/* wrong type and undeclared names are refused */
	CHECK_INT(evapi_req_get_int(req, "q", &limit), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_req_get_int(req, "nope", &limit), ==, EVAPI_ENOENT);
	evapi_reply_json(req, 200, json_pack(
		"{s:I, s:s?, s:I, s:f, s:b, s:s?}", "item_id", (json_int_t)id,
		"q", evapi_req_get_string(req, "q"), "limit", (json_int_t)limit,
		"ratio", ratio, "flag", flag, "token",
		evapi_req_get_string(req, "x-token")));
}

static void create_item(evapi_req *req, void *arg)
{
	json_t *body;
	if (arg)
		__atomic_add_fetch(&pool_runs, 1, __ATOMIC_SEQ_CST);
	if (evapi_req_json(req, &body) != 0)
		return;
	evapi_reply_json(req, 201, json_incref(body));
}

static void pool_count(evapi_req *req, void *arg)
{
	long long n = 0;
	__atomic_add_fetch(&pool_runs, 1, __ATOMIC_SEQ_CST);
	evapi_req_get_int(req, "n", &n);
	evapi_reply_json(req, 200, json_pack("{s:I}", "n", (json_int_t)n));
}

static evapi_app *make_app(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_route_decl get = {
		.methods = EVAPI_GET, .path = "/items/{item_id}",
		.lane = EVAPI_INLINE, .cb = read_item, .params = item_params};
	evapi_route_decl post = {
		.methods = EVAPI_POST, .path = "/items", .lane = EVAPI_INLINE,
		.cb = create_item, .body = item_body, .body_name = "Item"};
	evapi_route_decl post_pool = {
		.methods = EVAPI_POST, .path = "/pool/items", .lane = EVAPI_POOL,
		.cb = create_item, .arg = (void *)1, .body = item_body,
		.body_name = "Item"};
	evapi_route_decl optional = {
		.methods = EVAPI_POST, .path = "/optional", .lane = EVAPI_POOL,
		.cb = create_item, .body = item_body, .body_optional = 1};
	evapi_route_decl count = {
		.methods = EVAPI_GET, .path = "/pool/count", .lane = EVAPI_POOL,
		.cb = pool_count, .params = pool_params};

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	CHECK_INT(evapi_app_route_decl(app, &get), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &post), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &post_pool), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &count), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &optional), ==, 0);
	return app;
}

/* GET with an X-Token header (raw socket, so any header can be sent). */
static long get_with_token(int port, const char *path, const char *token,
                           char *body, size_t cap)
{
	char req[1024], buf[16384];
	const char *b;
	long status = 0;
	int fd;

	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: x\r\n%s%s%sConnection: close\r\n\r\n",
	         path, token ? "X-Token: " : "", token ? token : "",
	         token ? "\r\n" : "");
	fd = th_connect_send(port, req);
	if (fd < 0)
		return 0;
	th_read_all(fd, buf, sizeof buf, 5.0);
	close(fd);
	sscanf(buf, "HTTP/1.1 %ld", &status);
	b = strstr(buf, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
	return status;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_registration_checks(void)
{
	evapi_config cfg;
	evapi_app *app;
	static const evapi_field not_in_path[] = {
		{.name = "id", .in = EVAPI_IN_PATH, .type = EVAPI_INT}, {0}};
	static const evapi_field dup[] = {
		{.name = "a", .type = EVAPI_INT},
		{.name = "a", .in = EVAPI_IN_HEADER, .type = EVAPI_STRING},
		{0}};
	static const evapi_field bad_default[] = {
		{.name = "a", .type = EVAPI_INT, .dflt = "0",
		 .bounds = EVAPI_GE, .ge = 1},
		{0}};
	static const evapi_field unparsable_default[] = {
		{.name = "a", .type = EVAPI_BOOL, .dflt = "maybe"}, {0}};
	static const evapi_field object_param[] = {
		{.name = "a", .type = EVAPI_OBJECT}, {0}};
	static const evapi_field body_bad_default[] = {
		{.name = "a", .type = EVAPI_STRING, .dflt = "12"}, {0}};
	static const evapi_field array_no_items[] = {
		{.name = "a", .type = EVAPI_ARRAY}, {0}};
	static const evapi_upload up = {.dir = "/tmp"};
	evapi_route_decl r = {.methods = EVAPI_GET, .path = "/x/{id}",
	                      .cb = read_item};

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	r.params = not_in_path;
	r.path = "/x";
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.path = "/x/{id}";
	CHECK_INT(evapi_app_route_decl(app, &r), ==, 0);
	r.path = "/y";
	r.params = dup;
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.params = bad_default;
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.params = unparsable_default;
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.params = object_param;
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.params = NULL;
	r.body = body_bad_default; /* "12" is a JSON number, not a string */
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.body = array_no_items;
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.body = item_body;
	r.upload = &up;
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.upload = NULL;
	r.body_name = "bad name";
	CHECK_INT(evapi_app_route_decl(app, &r), ==, EVAPI_EINVAL);
	r.body_name = NULL;
	CHECK_INT(evapi_app_route_decl(app, &r), ==, 0);
	evapi_app_free(app);
}

static void test_params_valid_and_defaults(void)
{
	th_server s;
	char body[8192];

	th_server_start(&s, make_app());
	CHECK_INT(get_with_token(s.port, "/items/42?q=abc", "t0k", body,
	                         sizeof body), ==, 200);
	CHECK_JSON(body, "{\"item_id\":42,\"q\":\"abc\",\"limit\":10,"
	                 "\"ratio\":0.5,\"flag\":false,\"token\":\"t0k\"}");
	/* lax coercions: spaces, a zero fraction, bool words; the last of
	 * repeated query parameters wins */
	CHECK_INT(get_with_token(s.port,
	                         "/items/%2042?limit=1&limit=7.0&ratio=2&flag=YES",
	                         "x", body, sizeof body), ==, 200);
	CHECK_JSON(body, "{\"item_id\":42,\"q\":null,\"limit\":7,\"ratio\":2.0,"
	                 "\"flag\":true,\"token\":\"x\"}");
	th_server_stop(&s);
}

static void test_params_422_shapes(void)
{
	th_server s;
	char body[8192];

	th_server_start(&s, make_app());
	/* FastAPI: GET /items/abc -> int_parsing on the path parameter */
	CHECK_INT(get_with_token(s.port, "/items/abc", "t", body, sizeof body),
	          ==, 422);
	CHECK_JSON(body, "{\"detail\":[{\"type\":\"int_parsing\",\"loc\":"
	                 "[\"path\",\"item_id\"],\"msg\":\"Input should be a "
	                 "valid integer, unable to parse string as an "
	                 "integer\",\"input\":\"abc\"}]}");
	/* every problem at once, path then query then header */
	CHECK_INT(get_with_token(s.port,
	                         "/items/0?q=toolong&limit=101&ratio=x&flag=2",
	                         NULL, body, sizeof body), ==, 422);
	CHECK_JSON(body,
	           "{\"detail\":["
	           "{\"type\":\"greater_than_equal\",\"loc\":[\"path\","
	           "\"item_id\"],\"msg\":\"Input should be greater than or "
	           "equal to 1\",\"input\":\"0\",\"ctx\":{\"ge\":1}},"
	           "{\"type\":\"string_too_long\",\"loc\":[\"query\",\"q\"],"
	           "\"msg\":\"String should have at most 5 characters\","
	           "\"input\":\"toolong\",\"ctx\":{\"max_length\":5}},"
	           "{\"type\":\"less_than_equal\",\"loc\":[\"query\","
	           "\"limit\"],\"msg\":\"Input should be less than or equal "
	           "to 100\",\"input\":\"101\",\"ctx\":{\"le\":100}},"
	           "{\"type\":\"float_parsing\",\"loc\":[\"query\",\"ratio\"],"
	           "\"msg\":\"Input should be a valid number, unable to parse "
	           "string as a number\",\"input\":\"x\"},"
	           "{\"type\":\"bool_parsing\",\"loc\":[\"query\",\"flag\"],"
	           "\"msg\":\"Input should be a valid boolean, unable to "
	           "interpret input\",\"input\":\"2\"},"
	           "{\"type\":\"missing\",\"loc\":[\"header\",\"x-token\"],"
	           "\"msg\":\"Field required\",\"input\":null}]}");
	/* min_length is counted in characters: "é" is one */
	CHECK_INT(get_with_token(s.port, "/items/1?q=%C3%A9&ratio=2.75", "t",
	                         body, sizeof body), ==, 422);
	CHECK_JSON(body,
	           "{\"detail\":[{\"type\":\"string_too_short\",\"loc\":"
	           "[\"query\",\"q\"],\"msg\":\"String should have at least 2 "
	           "characters\",\"input\":\"\\u00e9\",\"ctx\":{\"min_length\""
	           ":2}},{\"type\":\"less_than_equal\",\"loc\":[\"query\","
	           "\"ratio\"],\"msg\":\"Input should be less than or equal to "
	           "2.5\",\"input\":\"2.75\",\"ctx\":{\"le\":2.5}}]}");
	/* 1.5 is not an integer; 20 digits do not fit */
	CHECK_INT(get_with_token(s.port,
	                         "/items/99999999999999999999?limit=1.5", "t",
	                         body, sizeof body), ==, 422);
	CHECK_JSON(body,
	           "{\"detail\":[{\"type\":\"int_parsing_size\",\"loc\":"
	           "[\"path\",\"item_id\"],\"msg\":\"Unable to parse input "
	           "string as an integer, exceeded maximum size\",\"input\":"
	           "\"99999999999999999999\"},{\"type\":\"int_parsing\","
	           "\"loc\":[\"query\",\"limit\"],\"msg\":\"Input should be a "
	           "valid integer, unable to parse string as an integer\","
	           "\"input\":\"1.5\"}]}");
	th_server_stop(&s);
}

static void test_body_valid_with_defaults(void)
{
	th_server s;
	th_resp r;

	th_server_start(&s, make_app());
	/* lax: "3.5" is a number; 2.0 an integer; extra fields dropped */
	CHECK_INT(th_http(s.port, "POST", "/items",
	                  "{\"name\":\"pen\",\"price\":\"3.5\",\"count\":2.0,"
	                  "\"extra\":1,\"owner\":{\"name\":\"ann\"}}", &r),
	          ==, 201);
	CHECK_JSON(r.body, "{\"name\":\"pen\",\"price\":3.5,\"count\":2,"
	                   "\"tags\":[],\"owner\":{\"name\":\"ann\"},"
	                   "\"ok\":true}");
	th_server_stop(&s);
}

static void test_body_422_shapes(void)
{
	th_server s;
	th_resp r;

	th_server_start(&s, make_app());
	/* missing fields: input is the object they are missing from */
	CHECK_INT(th_http(s.port, "POST", "/items", "{\"count\":1}", &r), ==,
	          422);
	CHECK_JSON(r.body,
	           "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\","
	           "\"name\"],\"msg\":\"Field required\",\"input\":{\"count\":"
	           "1}},{\"type\":\"missing\",\"loc\":[\"body\",\"price\"],"
	           "\"msg\":\"Field required\",\"input\":{\"count\":1}}]}");
	/* wrong types, nested locations with list indexes */
	CHECK_INT(th_http(s.port, "POST", "/items",
	                  "{\"name\":5,\"price\":-1,\"count\":1.5,\"tags\":"
	                  "[\"a\",7],\"owner\":{\"age\":\"x\"},\"ok\":[]}", &r),
	          ==, 422);
	CHECK_JSON(r.body,
	           "{\"detail\":["
	           "{\"type\":\"string_type\",\"loc\":[\"body\",\"name\"],"
	           "\"msg\":\"Input should be a valid string\",\"input\":5},"
	           "{\"type\":\"greater_than_equal\",\"loc\":[\"body\","
	           "\"price\"],\"msg\":\"Input should be greater than or "
	           "equal to 0\",\"input\":-1,\"ctx\":{\"ge\":0}},"
	           "{\"type\":\"int_from_float\",\"loc\":[\"body\",\"count\"],"
	           "\"msg\":\"Input should be a valid integer, got a number "
	           "with a fractional part\",\"input\":1.5},"
	           "{\"type\":\"string_type\",\"loc\":[\"body\",\"tags\",1],"
	           "\"msg\":\"Input should be a valid string\",\"input\":7},"
	           "{\"type\":\"missing\",\"loc\":[\"body\",\"owner\","
	           "\"name\"],\"msg\":\"Field required\",\"input\":{\"age\":"
	           "\"x\"}},"
	           "{\"type\":\"int_parsing\",\"loc\":[\"body\",\"owner\","
	           "\"age\"],\"msg\":\"Input should be a valid integer, unable "
	           "to parse string as an integer\",\"input\":\"x\"},"
	           "{\"type\":\"bool_type\",\"loc\":[\"body\",\"ok\"],\"msg\":"
	           "\"Input should be a valid boolean\",\"input\":[]}]}");
	/* too many tags, owner not an object, name too long */
	CHECK_INT(th_http(s.port, "POST", "/items",
	                  "{\"name\":\"abcdefghijk\",\"price\":1,\"tags\":"
	                  "[\"a\",\"b\",\"c\",\"d\"],\"owner\":3}", &r), ==, 422);
	CHECK_JSON(r.body,
	           "{\"detail\":["
	           "{\"type\":\"string_too_long\",\"loc\":[\"body\",\"name\"],"
	           "\"msg\":\"String should have at most 10 characters\","
	           "\"input\":\"abcdefghijk\",\"ctx\":{\"max_length\":10}},"
	           "{\"type\":\"too_long\",\"loc\":[\"body\",\"tags\"],\"msg\":"
	           "\"List should have at most 3 items after validation, not "
	           "4\",\"input\":[\"a\",\"b\",\"c\",\"d\"],\"ctx\":{"
	           "\"field_type\":\"List\",\"max_length\":3,"
	           "\"actual_length\":4}},"
	           "{\"type\":\"model_attributes_type\",\"loc\":[\"body\","
	           "\"owner\"],\"msg\":\"Input should be a valid dictionary or "
	           "object to extract fields from\",\"input\":3}]}");
	/* an optional body may be absent: the handler sees null */
	CHECK_INT(th_http_body(s.port, "POST", "/optional", NULL, "", 0, &r),
	          ==, 201);
	CHECK_STR(r.body, "null");
	CHECK_INT(th_http(s.port, "POST", "/optional", "{}", &r), ==, 422);
	/* not an object at all */
	CHECK_INT(th_http(s.port, "POST", "/items", "[1,2]", &r), ==, 422);
	CHECK_JSON(r.body,
	           "{\"detail\":[{\"type\":\"model_attributes_type\",\"loc\":"
	           "[\"body\"],\"msg\":\"Input should be a valid dictionary or "
	           "object to extract fields from\",\"input\":[1,2]}]}");
	/* no body */
	CHECK_INT(th_http_body(s.port, "POST", "/items", "application/json", "",
	                       0, &r), ==, 422);
	CHECK_JSON(r.body, "{\"detail\":[{\"type\":\"missing\",\"loc\":"
	                   "[\"body\"],\"msg\":\"Field required\","
	                   "\"input\":null}]}");
	/* invalid JSON: json_invalid alone, loc carries the offset */
	CHECK_INT(th_http(s.port, "POST", "/items", "{\"name\": ", &r), ==,
	          422);
	{
		json_t *j = json_loads(r.body, 0, NULL), *item;
		item = json_array_get(json_object_get(j, "detail"), 0);
		CHECK_STR(json_string_value(json_object_get(item, "type")),
		          "json_invalid");
		CHECK_STR(json_string_value(json_object_get(item, "msg")),
		          "JSON decode error");
		CHECK_STR(json_string_value(json_array_get(
				  json_object_get(item, "loc"), 0)), "body");
		CHECK(json_is_integer(json_array_get(
			json_object_get(item, "loc"), 1)));
		CHECK_INT(json_array_size(json_object_get(j, "detail")), ==, 1);
		json_decref(j);
	}
	th_server_stop(&s);
}

static void test_415(void)
{
	th_server s;
	th_resp r;
	const char *b = "{\"name\":\"pen\",\"price\":1}";

	th_server_start(&s, make_app());
	CHECK_INT(th_http_body(s.port, "POST", "/items", "text/plain", b,
	                       strlen(b), &r), ==, 415);
	CHECK_JSON(r.body, "{\"detail\":\"Unsupported Media Type: expected "
	                   "application/json\"}");
	/* curl -d's default */
	CHECK_INT(th_http_body(s.port, "POST", "/items",
	                       "application/x-www-form-urlencoded", b,
	                       strlen(b), &r), ==, 415);
	/* accepted: parameters, +json, no Content-Type (read as JSON) */
	CHECK_INT(th_http_body(s.port, "POST", "/items",
	                       "application/json; charset=utf-8", b, strlen(b),
	                       &r), ==, 201);
	CHECK_INT(th_http_body(s.port, "POST", "/items",
	                       "application/merge-patch+json", b, strlen(b), &r),
	          ==, 201);
	CHECK_INT(th_http_body(s.port, "POST", "/items", NULL, b, strlen(b), &r),
	          ==, 201);
	th_server_stop(&s);
}

/* Bad input to a pool route is answered on the loop: no worker runs. */
static void test_pool_route_rejects_on_loop(void)
{
	th_server s;
	th_resp r;
	const char *b = "{\"name\":\"pen\",\"price\":2}";

	__atomic_store_n(&pool_runs, 0, __ATOMIC_SEQ_CST);
	th_server_start(&s, make_app());
	CHECK_INT(th_http(s.port, "GET", "/pool/count?n=x", NULL, &r), ==, 422);
	CHECK_INT(th_http(s.port, "GET", "/pool/count", NULL, &r), ==, 422);
	CHECK_INT(th_http(s.port, "POST", "/pool/items", "{\"price\":1}", &r),
	          ==, 422);
	CHECK_INT(th_http(s.port, "POST", "/pool/items", "{", &r), ==, 422);
	CHECK_INT(th_http_body(s.port, "POST", "/pool/items", "text/plain", b,
	                       strlen(b), &r), ==, 415);
	CHECK_INT(__atomic_load_n(&pool_runs, __ATOMIC_SEQ_CST), ==, 0);
	CHECK_INT(th_http(s.port, "GET", "/pool/count?n=5", NULL, &r), ==, 200);
	CHECK_JSON(r.body, "{\"n\":5}");
	CHECK_INT(th_http(s.port, "POST", "/pool/items", b, &r), ==, 201);
	CHECK_INT(__atomic_load_n(&pool_runs, __ATOMIC_SEQ_CST), ==, 2);
	th_server_stop(&s);
}

static const th_test tests[] = {
	{"registration_checks", test_registration_checks},
	{"params_valid_and_defaults", test_params_valid_and_defaults},
	{"params_422_shapes", test_params_422_shapes},
	{"body_valid_with_defaults", test_body_valid_with_defaults},
	{"body_422_shapes", test_body_422_shapes},
	{"unsupported_media_type_415", test_415},
	{"pool_route_rejects_on_loop", test_pool_route_rejects_on_loop},
	{NULL, NULL}};

int main(int argc, char **argv)
{
	return th_main(argc, argv, tests);
}
