/* test_router.c: src/router.c: templates, decoding, 404/405/Allow, HEAD. */
#include "harness.h"
#include "../src/internal.h"

#include <stdlib.h>

static void h1(evapi_req *r, void *a) { }
static void h2(evapi_req *r, void *a) { }

static int match(evapi__router *r, unsigned m, const char *path,
                 evapi__match *out, char *scratch)
{
	return evapi__router_match(r, m, path, scratch, out);
}

static void test_templates(void)
{
	evapi__router *r = evapi__router_new();
	evapi__match m;
	char s[256];

	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/", EVAPI_INLINE, h1, NULL), ==, 0);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/users/me", EVAPI_INLINE, h2, NULL), ==, 0);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/users/{user_id}", EVAPI_POOL, h1, NULL), ==, 0);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/a/{x}/b/{y}", EVAPI_INLINE, h1, NULL), ==, 0);

	CHECK_INT(match(r, EVAPI_GET, "/", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_INT(m.nparams, ==, 0);
	CHECK_STR(m.route->tmpl, "/");

	/* registration order: the literal route registered first wins */
	CHECK_INT(match(r, EVAPI_GET, "/users/me", &m, s), ==, EVAPI__MATCH_OK);
	CHECK(m.route->cb == h2);

	CHECK_INT(match(r, EVAPI_GET, "/users/42", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_STR(m.route->tmpl, "/users/{user_id}");
	CHECK_INT(m.route->lane, ==, EVAPI_POOL);
	CHECK_INT(m.nparams, ==, 1);
	CHECK_STR(m.params[0].name, "user_id");
	CHECK_STR(m.params[0].value, "42");

	CHECK_INT(match(r, EVAPI_GET, "/a/1/b/two", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_INT(m.nparams, ==, 2);
	CHECK_STR(m.params[0].value, "1");
	CHECK_STR(m.params[1].name, "y");
	CHECK_STR(m.params[1].value, "two");

	/* a parameter never matches an empty segment or extra levels */
	CHECK_INT(match(r, EVAPI_GET, "/users/", &m, s), ==, EVAPI__MATCH_NOT_FOUND);
	CHECK_INT(match(r, EVAPI_GET, "/users/1/x", &m, s), ==, EVAPI__MATCH_NOT_FOUND);
	CHECK_INT(match(r, EVAPI_GET, "/users", &m, s), ==, EVAPI__MATCH_NOT_FOUND);
	CHECK_INT(match(r, EVAPI_GET, "/nope", &m, s), ==, EVAPI__MATCH_NOT_FOUND);
	evapi__router_free(r);
}

static void test_decoding(void)
{
	evapi__router *r = evapi__router_new();
	evapi__match m;
	char s[256];

	evapi__router_add(r, EVAPI_GET, "/files/{name}", EVAPI_INLINE, h1, NULL);
	evapi__router_add(r, EVAPI_GET, "/caf%C3%A9", EVAPI_INLINE, h2, NULL);

	CHECK_INT(match(r, EVAPI_GET, "/files/a%20b", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_STR(m.params[0].value, "a b");
	/* an encoded slash stays inside its segment */
	CHECK_INT(match(r, EVAPI_GET, "/files/a%2Fb", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_STR(m.params[0].value, "a/b");
	/* '+' is literal in paths */
	CHECK_INT(match(r, EVAPI_GET, "/files/a+b", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_STR(m.params[0].value, "a+b");
	/* literal templates are compared decoded */
	CHECK_INT(match(r, EVAPI_GET, "/caf\xc3\xa9", &m, s), ==, EVAPI__MATCH_OK);
	CHECK(m.route->cb == h2);
	CHECK_INT(match(r, EVAPI_GET, "/caf%c3%a9", &m, s), ==, EVAPI__MATCH_OK);

	CHECK_INT(match(r, EVAPI_GET, "/files/%", &m, s), ==, EVAPI__MATCH_BAD_PATH);
	CHECK_INT(match(r, EVAPI_GET, "/files/a%1", &m, s), ==, EVAPI__MATCH_BAD_PATH);
	CHECK_INT(match(r, EVAPI_GET, "/files/%zz", &m, s), ==, EVAPI__MATCH_BAD_PATH);
	CHECK_INT(match(r, EVAPI_GET, "/files/%00", &m, s), ==, EVAPI__MATCH_BAD_PATH);
	CHECK_INT(match(r, EVAPI_GET, "files", &m, s), ==, EVAPI__MATCH_BAD_PATH);
	evapi__router_free(r);
}

static void test_pct_decode(void)
{
	char out[64];
	CHECK_INT(evapi__pct_decode("a%41b", 5, out, 0), ==, 3);
	CHECK_STR(out, "aAb");
	CHECK_INT(evapi__pct_decode("a+b", 3, out, 1), ==, 3);
	CHECK_STR(out, "a b");
	CHECK_INT(evapi__pct_decode("a+b", 3, out, 0), ==, 3);
	CHECK_STR(out, "a+b");
	CHECK_INT(evapi__pct_decode("%4", 2, out, 0), ==, -1);
	CHECK_INT(evapi__pct_decode("%", 1, out, 0), ==, -1);
	CHECK_INT(evapi__pct_decode("%g0", 3, out, 0), ==, -1);
	CHECK_INT(evapi__pct_decode("%00", 3, out, 0), ==, -1);
	/* length-bounded: the escape past len is not read */
	CHECK_INT(evapi__pct_decode("ab%41", 2, out, 0), ==, 2);
	CHECK_STR(out, "ab");
}

static void test_methods_405(void)
{
	evapi__router *r = evapi__router_new();
	evapi__match m;
	char s[256], allow[80];

	evapi__router_add(r, EVAPI_GET | EVAPI_POST, "/items/{id}", EVAPI_INLINE, h1, NULL);
	evapi__router_add(r, EVAPI_DELETE, "/items/{key}", EVAPI_INLINE, h2, NULL);
	evapi__router_add(r, EVAPI_PUT, "/other", EVAPI_INLINE, h2, NULL);

	CHECK_INT(match(r, EVAPI_POST, "/items/3", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_INT(m.route->method, ==, EVAPI_POST);
	/* a later template with the method wins over an earlier without */
	CHECK_INT(match(r, EVAPI_DELETE, "/items/3", &m, s), ==, EVAPI__MATCH_OK);
	CHECK(m.route->cb == h2);
	CHECK_STR(m.params[0].name, "key");

	/* 405: union of every matching template's methods, HEAD via GET */
	CHECK_INT(match(r, EVAPI_PATCH, "/items/3", &m, s), ==, EVAPI__MATCH_METHOD);
	evapi__allow_string(m.allow, allow, sizeof allow);
	CHECK_STR(allow, "GET, HEAD, POST, DELETE");

	CHECK_INT(match(r, EVAPI_GET, "/other", &m, s), ==, EVAPI__MATCH_METHOD);
	evapi__allow_string(m.allow, allow, sizeof allow);
	CHECK_STR(allow, "PUT");

	/* automatic HEAD for GET routes */
	CHECK_INT(match(r, EVAPI_HEAD, "/items/9", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_INT(m.route->method, ==, EVAPI_GET);
	CHECK_STR(m.params[0].value, "9");
	CHECK_INT(match(r, EVAPI_HEAD, "/other", &m, s), ==, EVAPI__MATCH_METHOD);
	evapi__router_free(r);
}

static void test_explicit_head_wins(void)
{
	evapi__router *r = evapi__router_new();
	evapi__match m;
	char s[64];
	evapi__router_add(r, EVAPI_GET, "/x", EVAPI_INLINE, h1, NULL);
	evapi__router_add(r, EVAPI_HEAD, "/x", EVAPI_INLINE, h2, NULL);
	CHECK_INT(match(r, EVAPI_HEAD, "/x", &m, s), ==, EVAPI__MATCH_OK);
	CHECK(m.route->cb == h2);
	evapi__router_free(r);
}

/* {name:path}: the rest of the path, rejoined; an encoded '/' never
 * becomes a separator (it does not match). */
static void test_path_tail(void)
{
	evapi__router *r = evapi__router_new();
	evapi__match m;
	char s[256];

	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/static/{rest:path}", EVAPI_POOL, h1, NULL), ==, 0);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/static/x", EVAPI_INLINE, h2, NULL), ==, 0);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/{a:path}/x", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(match(r, EVAPI_GET, "/static/css/a%20b.css", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_INT(m.nparams, ==, 1);
	CHECK_STR(m.params[0].name, "rest");
	CHECK_STR(m.params[0].value, "css/a b.css");
	CHECK_INT(match(r, EVAPI_GET, "/static/", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_STR(m.params[0].value, "");
	CHECK_INT(match(r, EVAPI_GET, "/static/d/", &m, s), ==, EVAPI__MATCH_OK);
	CHECK_STR(m.params[0].value, "d/");
	/* registration order: the tail route came first */
	CHECK_INT(match(r, EVAPI_GET, "/static/x", &m, s), ==, EVAPI__MATCH_OK);
	CHECK(m.route->cb == h1);
	CHECK_INT(match(r, EVAPI_GET, "/static/..%2fsecret", &m, s), ==, EVAPI__MATCH_NOT_FOUND);
	CHECK_INT(match(r, EVAPI_GET, "/static/a/%2Fetc", &m, s), ==, EVAPI__MATCH_NOT_FOUND);
	CHECK_INT(match(r, EVAPI_GET, "/static/a%00", &m, s), ==, EVAPI__MATCH_BAD_PATH);
	CHECK_INT(match(r, EVAPI_GET, "/stat", &m, s), ==, EVAPI__MATCH_NOT_FOUND);
	CHECK_INT(match(r, EVAPI_POST, "/static/a", &m, s), ==, EVAPI__MATCH_METHOD);
	evapi__router_free(r);
}

static void test_bad_templates(void)
{
	evapi__router *r = evapi__router_new();
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "nope", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/{}", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/{a-b}", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/x{a}", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/%zz", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, 0, "/", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, 1u << 12, "/", EVAPI_INLINE, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/", 7, h1, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_add(r, EVAPI_GET, "/", EVAPI_INLINE, NULL, NULL), ==, EVAPI_EINVAL);
	CHECK_INT(evapi__router_count(r), ==, 0);
	evapi__router_free(r);
}

static void test_parse_int(void)
{
	long long v = 0;
	CHECK_INT(evapi_parse_int("42", &v), ==, 0);
	CHECK_INT(v, ==, 42);
	CHECK_INT(evapi_parse_int("-7", &v), ==, 0);
	CHECK_INT(v, ==, -7);
	CHECK_INT(evapi_parse_int("+7", &v), ==, 0);
	CHECK_INT(evapi_parse_int("9223372036854775807", &v), ==, 0);
	CHECK_INT(evapi_parse_int("9223372036854775808", &v), ==, EVAPI_ERANGE);
	CHECK_INT(evapi_parse_int("", &v), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_parse_int("-", &v), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_parse_int(" 1", &v), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_parse_int("1 ", &v), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_parse_int("0x10", &v), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_parse_int("1.5", &v), ==, EVAPI_EINVAL);
	CHECK_INT(evapi_parse_int(NULL, &v), ==, EVAPI_ENOENT);
	CHECK_STR(evapi_strerror(EVAPI_EBUSY), "queue full");
	CHECK_STR(evapi_strerror(12345), "unknown error");
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"router.templates", test_templates},
		{"router.decoding", test_decoding},
		{"router.pct_decode", test_pct_decode},
		{"router.methods_405", test_methods_405},
		{"router.explicit_head_wins", test_explicit_head_wins},
		{"router.bad_templates", test_bad_templates},
		{"router.path_tail", test_path_tail},
		{"router.parse_int", test_parse_int},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
