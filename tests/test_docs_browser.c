/*
 * test_docs_browser.c: /docs and /redoc in a real browser. A live app
 * with config.openapi, Swagger UI's files and ReDoc's bundle;
 * tests/browser/docs.mjs drives Debian's chromium headless
 * (playwright-core, pinned in tests/browser/package-lock.json): it loads
 * /docs, expands an operation, clicks "Try it out", fills the path
 * parameter, clicks "Execute" and reports the status and body the page
 * shows, which this test asserts. tests/browser/redoc.mjs loads /redoc,
 * waits for ReDoc to draw the operation and reports its heading and
 * every URL the page asked for. The screenshots are kept as
 * artifacts/docs.png and artifacts/redoc.png in the build directory.
 * SKIP with the reason when node, playwright-core, chromium, the Swagger
 * UI files or ReDoc's bundle are missing (.ci/deps installs them).
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TOP_SRCDIR
#define TOP_SRCDIR "."
#endif
#ifndef TOP_BUILDDIR
#define TOP_BUILDDIR "."
#endif
#define SCRIPT TOP_SRCDIR "/tests/browser/docs.mjs"
#define PLAYWRIGHT TOP_SRCDIR "/tests/browser/node_modules/playwright-core"
#define SWAGGER_DIR TOP_SRCDIR "/docs/swagger/node_modules/swagger-ui-dist"
#define REDOC_SCRIPT TOP_SRCDIR "/tests/browser/redoc.mjs"
#define REDOC_DIR TOP_SRCDIR "/docs/redoc/node_modules/redoc/bundles"
#define ARTIFACTS TOP_BUILDDIR "/artifacts"
#define CHROMIUM "/usr/bin/chromium"

static void read_item(evapi_req *req, void *arg)
{
	long long id;
	char name[64];

	evapi_req_get_int(req, "item_id", &id);
	if (id == 404) {
		evapi_reply_error(req, 404, "No such item");
		return;
	}
	snprintf(name, sizeof name, "item-%lld", id);
	evapi_reply_json(req, 200, json_pack("{s:I, s:s}", "item_id",
	                                     (json_int_t)id, "name", name));
}

static const char *const tags[] = {"items", NULL};
static const evapi_field params[] = {
	{.name = "item_id", .in = EVAPI_IN_PATH, .type = EVAPI_INT,
	 .required = 1, .bounds = EVAPI_GE, .ge = 1,
	 .description = "The item's id"},
	{0}};
static const evapi_field item_fields[] = {
	{.name = "item_id", .type = EVAPI_INT, .required = 1},
	{.name = "name", .type = EVAPI_STRING, .required = 1},
	{0}};
static const evapi_field item = {.type = EVAPI_OBJECT,
                                 .fields = item_fields};
static const evapi_response responses[] = {
	{.status = 200, .description = "The item", .schema = &item,
	 .schema_name = "Item"},
	{.status = 404, .description = "No such item"},
	{0}};

/* Runs the script on the live app at base ("http://127.0.0.1:port" or
 * with a path prefix); its one output line in out. */
static int drive(const char *base, const char *value, const char *shot,
                 char *out, size_t cap)
{
	char cmd[2048];

	snprintf(cmd, sizeof cmd,
	         "timeout 120 node '%s' '%s' "
	         "read_item_items__item_id__get item_id '%s' '%s' 2>&1",
	         SCRIPT, base, value, shot);
	return th_run_capture(cmd, out, cap);
}

static const char *str(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	return s ? s : "(none)";
}

/* Fills `value` into the page at base, executes, and checks what the
 * page shows: the app's title, `status`, a request URL containing
 * `url`, no failed request. Returns the report (new), or NULL. */
static json_t *try_it(const char *base, const char *value,
                      const char *shot, const char *status,
                      const char *url)
{
	static char out[16384];
	json_t *r;

	CHECK_INT(drive(base, value, shot, out, sizeof out), ==, 0);
	r = json_loads(out, 0, NULL);
	CHECK(r != NULL);
	if (!r) {
		printf("# docs.mjs said: %s\n", out);
		return NULL;
	}
	CHECK_CONTAINS(str(r, "title"), "Browser test API");
	CHECK_STR(str(r, "status"), status);
	CHECK_CONTAINS(str(r, "url"), url);
	CHECK_INT(json_array_size(json_object_get(r, "failed_requests")), ==, 0);
	return r;
}

/* 1 (and SKIP with the reason) when the browser cannot run here or
 * the page's `bundle` is not installed. */
static int cannot_run(const char *bundle)
{
	struct stat st;

	if (system("node -v >/dev/null 2>&1") != 0 ||
	    access(PLAYWRIGHT "/package.json", R_OK) != 0) {
		TH_SKIP("no node or no %s (run .ci/deps; needs npm)",
		        PLAYWRIGHT);
		return 1;
	}
	if (access(CHROMIUM, X_OK) != 0) {
		TH_SKIP("no %s (run .ci/deps: apt-get install chromium)",
		        CHROMIUM);
		return 1;
	}
	if (stat(bundle, &st) != 0) {
		TH_SKIP("no %s (run .ci/deps)", bundle);
		return 1;
	}
	return 0;
}

static evapi_app *docs_app(void)
{
	evapi_route_decl get = {
		.methods = EVAPI_GET, .path = "/items/{item_id}",
		.cb = read_item, .params = params, .summary = "Read item",
		.tags = tags, .responses = responses};
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	cfg.openapi = 1;
	cfg.swagger_ui_dir = SWAGGER_DIR;
	cfg.redoc_dir = REDOC_DIR;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	CHECK_INT(evapi_app_openapi_info(app, "Browser test API", "1.2.3",
	                                 NULL), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &get), ==, 0);
	return app;
}

static void test_try_it_out(void)
{
	char base[64];
	th_server s;
	json_t *r, *body;
	struct stat st;

	if (cannot_run(SWAGGER_DIR "/swagger-ui-bundle.js"))
		return;
	th_server_start(&s, docs_app());
	snprintf(base, sizeof base, "http://127.0.0.1:%d", s.port);
	mkdir(ARTIFACTS, 0755);
	unlink(ARTIFACTS "/docs.png"); /* the one checked is this run's */

	r = try_it(base, "7", ARTIFACTS "/docs.png", "200", "/items/7");
	body = json_loads(str(r, "body"), 0, NULL);
	CHECK(body != NULL);
	CHECK_STR(json_string_value(json_object_get(body, "name")), "item-7");
	CHECK_INT(json_integer_value(json_object_get(body, "item_id")), ==, 7);
	json_decref(body);
	json_decref(r);
	CHECK(stat(ARTIFACTS "/docs.png", &st) == 0 && st.st_size > 1000);
	printf("# screenshot: %s\n", ARTIFACTS "/docs.png");

	/* the app's own answers reach the page too: 404 and its detail */
	r = try_it(base, "404", ARTIFACTS "/docs-404.png", "404", "/items/404");
	CHECK_CONTAINS(str(r, "body"), "No such item");
	json_decref(r);
	th_server_stop(&s);
}

/* Whether `url` is one of the strings of array `a`. */
static int listed(json_t *a, const char *url)
{
	json_t *v;
	size_t i;
	json_array_foreach(a, i, v)
		if (strcmp(json_string_value(v), url) == 0)
			return 1;
	return 0;
}

/* Loads /redoc at base and checks what ReDoc drew: the app's title and
 * the operation's summary as a heading, with no script error, no failed
 * request, and every request made to the app itself (the page, the
 * bundle and openapi.json under base). Nothing reaches a CDN: the
 * bundle's logo from cdn.redoc.ly is refused by the page's
 * Content-Security-Policy before it is sent. */
static void redoc_renders_at(const char *base, const char *shot)
{
	static char out[65536];
	char cmd[2048], want[256];
	json_t *r, *reqs, *blocked, *v;
	size_t i;
	int bundle = 0, doc = 0;

	snprintf(cmd, sizeof cmd,
	         "timeout 120 node '%s' '%s' 'Read item' '%s' 2>&1",
	         REDOC_SCRIPT, base, shot);
	CHECK_INT(th_run_capture(cmd, out, sizeof out), ==, 0);
	r = json_loads(out, 0, NULL);
	CHECK(r != NULL);
	if (!r) {
		printf("# redoc.mjs said: %s\n", out);
		return;
	}
	CHECK_CONTAINS(str(r, "title"), "Browser test API");
	CHECK_STR(str(r, "summary"), "Read item");
	CHECK_INT(json_array_size(json_object_get(r, "errors")), ==, 0);
	CHECK_INT(json_array_size(json_object_get(r, "failed_requests")), ==, 0);
	reqs = json_object_get(r, "requests");
	blocked = json_object_get(r, "blocked");
	json_array_foreach(reqs, i, v) {
		const char *u = json_string_value(v);
		if (strncmp(u, base, strlen(base)) != 0 &&
		    strncmp(u, "blob:", 5) != 0 &&
		    strncmp(u, "data:", 5) != 0 && !listed(blocked, u))
			TH_FAIL_AT("the page fetched %s, not under %s", u, base);
		snprintf(want, sizeof want, "%s/redoc/redoc.standalone.js",
		         base);
		bundle += strcmp(u, want) == 0;
		snprintf(want, sizeof want, "%s/openapi.json", base);
		doc += strcmp(u, want) == 0;
	}
	CHECK_INT(bundle, ==, 1);
	CHECK_INT(doc, >=, 1);
	json_decref(r);
}

static void test_redoc_renders(void)
{
	char base[64];
	th_server s;
	struct stat st;

	if (cannot_run(REDOC_DIR "/redoc.standalone.js"))
		return;
	th_server_start(&s, docs_app());
	snprintf(base, sizeof base, "http://127.0.0.1:%d", s.port);
	mkdir(ARTIFACTS, 0755);
	unlink(ARTIFACTS "/redoc.png"); /* the one checked is this run's */
	redoc_renders_at(base, ARTIFACTS "/redoc.png");
	CHECK(stat(ARTIFACTS "/redoc.png", &st) == 0 && st.st_size > 1000);
	printf("# screenshot: %s\n", ARTIFACTS "/redoc.png");
	th_server_stop(&s);
}

/* nginx serving the app at app_port under /api/ (root_path "/api"),
 * its config in dir (made with mkdtemp); its base URL in base. Returns
 * nginx's pid, or -1. */
static pid_t proxy_start(char *dir, int app_port, char *base, size_t cap)
{
	int port = th_free_port();
	char path[600];
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/nginx.conf", dir);
	CHECK((f = fopen(path, "w")) != NULL);
	if (!f)
		return -1;
	fprintf(f, "worker_processes 1;\n"
	           "events { worker_connections 64; }\n"
	           "http {\n\taccess_log off;\n"
	           "\tclient_body_temp_path %s/body;\n"
	           "\tproxy_temp_path %s/proxy;\n"
	           "\tserver {\n\t\tlisten 127.0.0.1:%d;\n"
	           "\t\tlocation = / { return 200 \"up\"; }\n"
	           "\t\tlocation /api/ {\n"
	           "\t\t\tproxy_pass http://127.0.0.1:%d/;\n"
	           "\t\t}\n\t}\n}\n", dir, dir, port, app_port);
	fclose(f);
	snprintf(base, cap, "http://127.0.0.1:%d/api", port);
	return th_nginx_start(dir, port);
}

/* 1 (and SKIP) when there is no nginx to put in front of the app. */
static int no_nginx(void)
{
	if (system("command -v nginx >/dev/null 2>&1") == 0)
		return 0;
	TH_SKIP("no nginx (run .ci/deps)");
	return 1;
}

/* Through the proxy, the page, its files, the document and the call
 * made by "Execute" all go through the prefix, because every URL is
 * relative. */
static void test_try_it_out_behind_prefix(void)
{
	char dir[] = "/tmp/evapi-docs-nginx-XXXXXX", path[600], base[64];
	th_server s;
	json_t *r;
	pid_t ng;

	if (cannot_run(SWAGGER_DIR "/swagger-ui-bundle.js") || no_nginx())
		return;
	th_server_start(&s, docs_app());
	ng = proxy_start(dir, s.port, base, sizeof base);
	snprintf(path, sizeof path, "%s/items/8", base + strlen("http://"));
	r = try_it(base, "8", ARTIFACTS "/docs-prefix.png", "200", path);
	CHECK_CONTAINS(str(r, "body"), "\"item-8\"");
	json_decref(r);
	th_nginx_stop(ng);
	th_server_stop(&s);
	th_remove_dir(dir);
}

/* /redoc through the same proxy: its bundle and the document come from
 * under /api/ too. */
static void test_redoc_renders_behind_prefix(void)
{
	char dir[] = "/tmp/evapi-redoc-nginx-XXXXXX", base[64];
	th_server s;
	pid_t ng;

	if (cannot_run(REDOC_DIR "/redoc.standalone.js") || no_nginx())
		return;
	th_server_start(&s, docs_app());
	ng = proxy_start(dir, s.port, base, sizeof base);
	redoc_renders_at(base, ARTIFACTS "/redoc-prefix.png");
	th_nginx_stop(ng);
	th_server_stop(&s);
	th_remove_dir(dir);
}

static const th_test tests[] = {
	{"try_it_out", test_try_it_out},
	{"try_it_out_behind_prefix", test_try_it_out_behind_prefix},
	{"redoc_renders", test_redoc_renders},
	{"redoc_renders_behind_prefix", test_redoc_renders_behind_prefix},
	{NULL, NULL}};

int main(int argc, char **argv)
{
	return th_main(argc, argv, tests);
}
