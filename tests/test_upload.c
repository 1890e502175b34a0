/*
 * test_upload.c: uploads: the multipart parser (src/multipart.c) on its
 * own, sanitised store names, and upload routes on a real app: files on
 * disk, traversal names kept inside the upload directory, size limits
 * (413), part and field count limits (400), wrong Content-Type (415),
 * raw-body uploads, both lanes, and name clashes (a random prefix, a
 * bounded number of tries, however many files share the name).
 */
#include "harness.h"
#include "../src/internal.h"

#include <curl/curl.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the parser ------------------------------------------------------------ */

static int parse(const char *body, size_t len, const char *boundary,
                 evapi__part *parts, int max, const char **why)
{
	static char buf[8192];
	evapi__arena a;
	evapi__arena_init(&a, buf, sizeof buf);
	/* strings live in buf (and its overflow blocks, never needed here) */
	int n = evapi__multipart_parse(body, len, boundary, &a, parts, max, why);
	evapi__arena_release(&a);
	return n;
}

#define BODY(s) (s), sizeof(s) - 1

static void test_boundary(void)
{
	char b[80];
	CHECK_INT(evapi__multipart_boundary("multipart/form-data; boundary=abc",
	                                    b, sizeof b), ==, 0);
	CHECK_STR(b, "abc");
	CHECK_INT(evapi__multipart_boundary(
			  "Multipart/Form-Data;charset=x; boundary=\"a b:c\"", b,
			  sizeof b), ==, 0);
	CHECK_STR(b, "a b:c");
	CHECK_INT(evapi__multipart_boundary("application/json", b, sizeof b),
	          ==, -1);
	CHECK_INT(evapi__multipart_boundary("multipart/form-datax; boundary=a",
	                                    b, sizeof b), ==, -1);
	CHECK_INT(evapi__multipart_boundary(NULL, b, sizeof b), ==, -1);
	CHECK_INT(evapi__multipart_boundary("multipart/form-data", b, sizeof b),
	          ==, -2);
	CHECK_INT(evapi__multipart_boundary("multipart/form-data; boundary=", b,
	                                    sizeof b), ==, -2);
	CHECK_INT(evapi__multipart_boundary(
			  "multipart/form-data; boundary=\"ends with space \"", b,
			  sizeof b), ==, -2);
	CHECK_INT(evapi__multipart_boundary(
			  "multipart/form-data; boundary=0123456789012345678901234567"
			  "890123456789012345678901234567890123456789x", b, sizeof b),
	          ==, -2); /* 71 characters */
}

static void test_parse_good(void)
{
	evapi__part p[4];
	const char *why = NULL;
	static const char body[] =
		"preamble is ignored\r\n"
		"--XyZ\r\n"
		"Content-Disposition: form-data; name=\"title\"\r\n"
		"\r\n"
		"hello\r\nworld\r\n"
		"--XyZ  \r\n" /* transport padding */
		"content-disposition: form-data; name=file; "
		"filename=\"a \\\"q\\\".txt\"\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"--XyZ is not a delimiter without CRLF before it\r\n"
		"--XyZ--\r\n"
		"epilogue is ignored";
	int n = parse(BODY(body), "XyZ", p, 4, &why);

	CHECK_INT(n, ==, 2);
	if (n != 2)
		return;
	CHECK_STR(p[0].name, "title");
	CHECK(p[0].filename == NULL && p[0].content_type == NULL);
	CHECK_INT(p[0].len, ==, 12);
	CHECK(memcmp(p[0].data, "hello\r\nworld", 12) == 0);
	CHECK_STR(p[1].name, "file");
	CHECK_STR(p[1].filename, "a \"q\".txt");
	CHECK_STR(p[1].content_type, "text/plain");
	CHECK_INT(p[1].len, ==, 47);
	/* no preamble, empty part data, closing right at the end */
	CHECK_INT(parse(BODY("--b\r\nContent-Disposition: form-data; "
	                     "name=e\r\n\r\n\r\n--b--"), "b", p, 4, &why), ==, 1);
	CHECK_INT(p[0].len, ==, 0);
	CHECK_INT(parse(BODY("--b--\r\n"), "b", p, 4, &why), ==, 0);
}

static void test_parse_bad(void)
{
	static const struct {
		const char *body;
		size_t len;
		int want;
	} cases[] = {
#define C(s, w) {s, sizeof(s) - 1, w}
		C("", -1),
		C("no boundary at all", -1),
		/* never closed */
		C("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx", -1),
		C("--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--b",
		  -1),
		/* garbage after the delimiter */
		C("--bX\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n"
		  "--b--", -1),
		/* no Content-Disposition, or not form-data, or no name */
		C("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", -1),
		C("--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n"
		  "--b--", -1),
		C("--b\r\nContent-Disposition: form-data; filename=a\r\n\r\nx\r\n"
		  "--b--", -1),
		C("--b\r\n\r\nx\r\n--b--", -1),
		/* NUL, bare CR, header without a colon, unterminated quote */
		C("--b\r\nContent-Disposition: form-data; name=a; filename=\"x"
		  "\0y\"\r\n\r\nx\r\n--b--", -1),
		C("--b\r\nContent-Disposition: form-data; name=a\rX: y\r\n\r\nx"
		  "\r\n--b--", -1),
		C("--b\r\nContent-Disposition form-data; name=a\r\n\r\nx\r\n--b--",
		  -1),
		C("--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n"
		  "--b--", -1),
		/* two names */
		C("--b\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\n"
		  "x\r\n--b--", -1),
		/* three parts, two allowed */
		C("--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
		  "--b\r\nContent-Disposition: form-data; name=a\r\n\r\n2\r\n"
		  "--b\r\nContent-Disposition: form-data; name=a\r\n\r\n3\r\n"
		  "--b--", -2),
#undef C
	};
	evapi__part p[2];
	const char *why;
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		why = NULL;
		int n = parse(cases[i].body, cases[i].len, "b", p, 2, &why);
		if (n != cases[i].want)
			TH_FAIL_AT("case %zu: got %d, want %d", i, n,
			           cases[i].want);
		if (n == -1)
			CHECK(why != NULL && *why);
	}
}

static void test_safe_name(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"report.pdf", "report.pdf"},
		{"../../x", "x"},
		{"/abs", "abs"},
		{"C:\\x", "x"},
		{"..\\..\\win.ini", "win.ini"},
		{"dir/", "upload"},
		{"..", "upload"},
		{"...hidden", "hidden"},
		{"", "upload"},
		{"a b$c;rm -rf.txt", "a_b_c_rm_-rf.txt"},
		{"caf\xc3\xa9.txt", "caf__.txt"},
	};
	char out[128], longname[300];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK_INT(evapi_upload_safe_name(cases[i].in, out, sizeof out), ==,
		          (long long)strlen(cases[i].out));
		CHECK_STR(out, cases[i].out);
	}
	CHECK_INT(evapi_upload_safe_name("a\x01", out, sizeof out), ==,
	          EVAPI_EINVAL);
	CHECK_INT(evapi_upload_safe_name("a\nb", out, sizeof out), ==,
	          EVAPI_EINVAL);
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	CHECK_INT(evapi_upload_safe_name(longname, out, sizeof out), ==, 100);
	CHECK_INT(evapi_upload_safe_name("x", out, 3), ==, EVAPI_EINVAL);
}

/* ---- upload routes ------------------------------------------------------- */

/* The upload directory is two levels down a private temporary directory
 * (base/a/b), so a name that climbed out of it ("../x", "../../x") would
 * land in base/a or base, where no other process writes. */
static char basedir[40], updir[64];

static void make_dir(void)
{
	snprintf(basedir, sizeof basedir, "/tmp/evapi-upload-test-XXXXXX");
	CHECK(mkdtemp(basedir) != NULL);
	snprintf(updir, sizeof updir, "%s/a", basedir);
	CHECK(mkdir(updir, 0700) == 0);
	snprintf(updir, sizeof updir, "%s/a/b", basedir);
	CHECK(mkdir(updir, 0700) == 0);
}

/* 1 when `name` exists in base or base/a, outside the upload directory. */
static int escaped(const char *name)
{
	char path[sizeof basedir + 260];
	snprintf(path, sizeof path, "%s/%s", basedir, name);
	if (access(path, F_OK) == 0)
		return 1;
	snprintf(path, sizeof path, "%s/a/%s", basedir, name);
	return access(path, F_OK) == 0;
}

/* Removes the upload directory (empty by now) and its parents. */
static void base_remove(void)
{
	char path[sizeof basedir + 8];
	rmdir(updir);
	snprintf(path, sizeof path, "%s/a", basedir);
	rmdir(path);
	rmdir(basedir);
}

/* Names in the upload directory, sorted, comma-separated; removes them
 * and the directory when `clean`. */
static void dir_list(char *out, size_t cap, int clean)
{
	char names[32][256], path[sizeof updir + 260];
	struct dirent *e;
	DIR *d = opendir(updir);
	int n = 0, i, j;

	out[0] = '\0';
	if (!d)
		return;
	while ((e = readdir(d)) != NULL && n < 32)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			snprintf(names[n++], sizeof names[0], "%s", e->d_name);
	closedir(d);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (strcmp(names[i], names[j]) > 0) {
				char t[256];
				memcpy(t, names[i], sizeof t);
				memcpy(names[i], names[j], sizeof t);
				memcpy(names[j], t, sizeof t);
			}
	for (i = 0; i < n; i++) {
		snprintf(out + strlen(out), cap - strlen(out), "%s%s",
		         i ? "," : "", names[i]);
		if (clean) {
			snprintf(path, sizeof path, "%s/%.255s", updir, names[i]);
			unlink(path);
		}
	}
	if (clean)
		base_remove();
}

/* 1 when `name` is what a clash makes of `safe`: 12 hex digits, '-',
 * then the sanitised name. */
static int clash_of(const char *name, const char *safe)
{
	int i;
	if (!name || strlen(name) != 13 + strlen(safe) || name[12] != '-' ||
	    strcmp(name + 13, safe) != 0)
		return 0;
	for (i = 0; i < 12; i++)
		if (!isxdigit((unsigned char)name[i]))
			return 0;
	return 1;
}

/* Checks a comma-separated sorted listing: the `plain` names, plus one
 * clash name for each of `clashed`, and nothing else. */
static void check_listing(const char *list, const char *const *plain,
                          int nplain, const char *const *clashed,
                          int nclashed)
{
	char copy[512], *tok, *save = NULL;
	int n = 0, i, found;

	snprintf(copy, sizeof copy, "%s", list);
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save), n++) {
		found = 0;
		for (i = 0; i < nplain && !found; i++)
			found = strcmp(tok, plain[i]) == 0;
		for (i = 0; i < nclashed && !found; i++)
			found = clash_of(tok, clashed[i]);
		if (!found)
			TH_FAIL_AT("unexpected stored name %s in %s", tok, list);
	}
	CHECK_INT(n, ==, nplain + nclashed);
}

/* Removes every file of the upload directory, then the directory. */
static void dir_remove(void)
{
	char path[sizeof updir + 260];
	struct dirent *e;
	DIR *d = opendir(updir);
	if (!d)
		return;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(path, sizeof path, "%s/%.255s", updir, e->d_name);
			unlink(path);
		}
	closedir(d);
	base_remove();
}

static long file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Lists what the handler sees; each file's size is also read from disk
 * (the file must be complete before the handler runs). */
static void show(evapi_req *req, void *arg)
{
	json_t *files = json_array();
	int i;

	for (i = 0; i < evapi_req_file_count(req); i++) {
		const evapi_file *f = evapi_req_file(req, i);
		json_array_append_new(files, json_pack(
			"{s:s, s:s?, s:s, s:I, s:I, s:s, s:b}", "field", f->field,
			"filename", f->filename, "stored", f->stored, "size",
			(json_int_t)f->size, "on_disk",
			(json_int_t)file_size(f->path), "type", f->content_type,
			"inside", strncmp(f->path, updir, strlen(updir)) == 0 &&
			                  f->path[strlen(updir)] == '/'));
	}
	CHECK(evapi_req_file(req, i) == NULL);
	evapi_reply_json(req, 200, json_pack(
		"{s:o, s:s?, s:s?, s:s}", "files", files, "title",
		evapi_req_form(req, "title"), "note", evapi_req_form(req, "note"),
		"lane", arg ? "inline" : "pool"));
}

/* dir is set by make_app, before the server starts */
static evapi_upload limits = {.max_file_bytes = 1000,
                              .max_total_bytes = 1500, .max_files = 3,
                              .max_fields = 2, .raw = 1};
static evapi_upload strict; /* multipart only, default limits */

static evapi_app *make_app(void)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_route_decl pool = {.methods = EVAPI_POST, .path = "/upload",
	                         .lane = EVAPI_POOL, .cb = show,
	                         .upload = &limits};
	evapi_route_decl inl = {.methods = EVAPI_POST, .path = "/upload-inline",
	                        .lane = EVAPI_INLINE, .cb = show,
	                        .arg = (void *)1, .upload = &limits};
	evapi_route_decl raw = {.methods = EVAPI_PUT, .path = "/files/{filename}",
	                        .lane = EVAPI_POOL, .cb = show,
	                        .upload = &limits};

	evapi_route_decl strict_route = {.methods = EVAPI_POST,
	                                 .path = "/upload-strict",
	                                 .cb = show, .upload = &strict};

	make_dir();
	limits.dir = updir;
	strict.dir = updir;
	th_config(&cfg);
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_route_decl(app, &strict_route), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &pool), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &inl), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &raw), ==, 0);
	return app;
}

/* What `curl -F title=T -F file=@... -F file=@...` sends. */
static long post_form(int port, const char *path, th_resp *out)
{
	char url[128], big[900];
	CURL *h = curl_easy_init();
	curl_mime *mime = curl_mime_init(h);
	curl_mimepart *part;
	FILE *body = fmemopen(out->body, sizeof out->body, "w");
	long status = 0;

	memset(big, 'z', sizeof big);
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "title");
	curl_mime_data(part, "my files", CURL_ZERO_TERMINATED);
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "file");
	curl_mime_filename(part, "notes.txt");
	curl_mime_type(part, "text/plain");
	curl_mime_data(part, "line 1\nline 2\n", CURL_ZERO_TERMINATED);
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "file");
	curl_mime_filename(part, "big.bin");
	curl_mime_data(part, big, sizeof big);
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	fclose(body);
	curl_mime_free(mime);
	curl_easy_cleanup(h);
	return status;
}

static json_t *body_json(const th_resp *r)
{
	json_t *j = json_loads(r->body, 0, NULL);
	if (!j)
		TH_FAIL_AT("not JSON: %s", r->body);
	return j;
}

static void test_curl_form_both_lanes(void)
{
	static const char *paths[] = {"/upload", "/upload-inline"};
	char list[512];
	th_server s;
	th_resp r;
	size_t i;

	th_server_start(&s, make_app());
	for (i = 0; i < 2; i++) {
		json_t *j, *f;
		memset(&r, 0, sizeof r);
		CHECK_INT(post_form(s.port, paths[i], &r), ==, 200);
		j = body_json(&r);
		CHECK_STR(json_string_value(json_object_get(j, "title")),
		          "my files");
		CHECK_STR(json_string_value(json_object_get(j, "lane")),
		          i ? "inline" : "pool");
		f = json_array_get(json_object_get(j, "files"), 0);
		CHECK_STR(json_string_value(json_object_get(f, "filename")),
		          "notes.txt");
		CHECK_STR(json_string_value(json_object_get(f, "type")),
		          "text/plain");
		CHECK_INT(json_integer_value(json_object_get(f, "size")), ==, 14);
		CHECK_INT(json_integer_value(json_object_get(f, "on_disk")), ==,
		          14);
		f = json_array_get(json_object_get(j, "files"), 1);
		CHECK_STR(json_string_value(json_object_get(f, "type")),
		          "application/octet-stream");
		CHECK_INT(json_integer_value(json_object_get(f, "on_disk")), ==,
		          900);
		json_decref(j);
	}
	/* the second upload of the same names did not overwrite the first */
	dir_list(list, sizeof list, 1);
	{
		static const char *const names[] = {"big.bin", "notes.txt"};
		check_listing(list, names, 2, names, 2);
	}
	th_server_stop(&s);
}

#define MP_CT "multipart/form-data; boundary=XyZ"
#define PART(name, filename, data)                                           \
	"--XyZ\r\nContent-Disposition: form-data; name=\"" name "\""         \
	filename "\r\n\r\n" data "\r\n"
#define FILE_PART(name, filename, data)                                      \
	PART(name, "; filename=\"" filename "\"", data)

static long post_mp(int port, const char *body, size_t len, th_resp *r)
{
	return th_http_body(port, "POST", "/upload", MP_CT, body, len, r);
}

static void test_traversal_names(void)
{
	static const char body[] =
		FILE_PART("a", "../../x", "one")
		FILE_PART("b", "/abs", "two")
		FILE_PART("c", "C:\\\\x", "three") "--XyZ--\r\n";
	static const char nul_name[] =
		FILE_PART("a", "ok\0../../evil", "one") "--XyZ--\r\n";
	char list[512];
	th_server s;
	th_resp r;
	json_t *j;

	th_server_start(&s, make_app());
	CHECK_INT(post_mp(s.port, BODY(body), &r), ==, 200);
	j = body_json(&r);
	CHECK_STR(json_string_value(json_object_get(json_array_get(
			  json_object_get(j, "files"), 0), "filename")), "../../x");
	CHECK_STR(json_string_value(json_object_get(json_array_get(
			  json_object_get(j, "files"), 2), "filename")), "C:\\x");
	CHECK(clash_of(json_string_value(json_object_get(json_array_get(
			  json_object_get(j, "files"), 2), "stored")), "x"));
	CHECK(json_is_true(json_object_get(json_array_get(
		json_object_get(j, "files"), 0), "inside")));
	json_decref(j);
	/* a NUL in the filename: 400, nothing stored */
	CHECK_INT(post_mp(s.port, BODY(nul_name), &r), ==, 400);
	CHECK_CONTAINS(r.body, "control byte in a part header");
	/* a raw upload named by the path: %2F stays inside the segment */
	CHECK_INT(th_http_body(s.port, "PUT", "/files/..%2F..%2Fevil",
	                       "application/octet-stream", "raw!", 4, &r), ==,
	          200);
	CHECK_CONTAINS(r.body, "\"stored\":\"evil\"");
	CHECK_CONTAINS(r.body, "\"filename\":\"../../evil\"");
	CHECK(!escaped("x") && !escaped("evil") && !escaped("abs"));
	dir_list(list, sizeof list, 1);
	{
		static const char *const plain[] = {"abs", "evil", "x"};
		static const char *const clashed[] = {"x"};
		check_listing(list, plain, 3, clashed, 1);
	}
	th_server_stop(&s);
}

static void test_limits(void)
{
	static char big[2048];
	static const char files4[] =
		FILE_PART("a", "1", "1") FILE_PART("a", "2", "2")
		FILE_PART("a", "3", "3") FILE_PART("a", "4", "4") "--XyZ--\r\n";
	static const char fields3[] =
		PART("t", "", "1") PART("t", "", "2") PART("t", "", "3")
		"--XyZ--\r\n";
	static const char parts6[] =
		PART("t", "", "1") PART("t", "", "2") FILE_PART("a", "1", "1")
		FILE_PART("a", "2", "2") FILE_PART("a", "3", "3")
		PART("t", "", "3") "--XyZ--\r\n";
	static const char unclosed[] = FILE_PART("a", "1", "1");
	char list[512];
	th_server s;
	th_resp r;
	int n;

	th_server_start(&s, make_app());
	/* one file over max_file_bytes (1000) */
	n = snprintf(big, sizeof big, "%s%1001d\r\n--XyZ--\r\n",
	             "--XyZ\r\nContent-Disposition: form-data; name=f; "
	             "filename=big\r\n\r\n", 7);
	CHECK_INT(post_mp(s.port, big, (size_t)n, &r), ==, 413);
	CHECK_STR(r.body, "{\"detail\":\"File too large: 'f' is over 1000 "
	                  "bytes\"}");
	/* two files of 800 bytes: over max_total_bytes (1500) together */
	n = snprintf(big, sizeof big, "%s%800d\r\n%s%800d\r\n--XyZ--\r\n",
	             "--XyZ\r\nContent-Disposition: form-data; name=f; "
	             "filename=a\r\n\r\n", 1,
	             "--XyZ\r\nContent-Disposition: form-data; name=f; "
	             "filename=b\r\n\r\n", 2);
	CHECK_INT(post_mp(s.port, big, (size_t)n, &r), ==, 413);
	CHECK_CONTAINS(r.body, "over 1500 bytes together");
	CHECK_INT(post_mp(s.port, BODY(files4), &r), ==, 400);
	CHECK_STR(r.body, "{\"detail\":\"Too many files. Maximum number of "
	                  "files is 3.\"}");
	CHECK_INT(post_mp(s.port, BODY(fields3), &r), ==, 400);
	CHECK_STR(r.body, "{\"detail\":\"Too many fields. Maximum number of "
	                  "fields is 2.\"}");
	CHECK_INT(post_mp(s.port, BODY(parts6), &r), ==, 400);
	CHECK_CONTAINS(r.body, "Too many parts");
	CHECK_INT(post_mp(s.port, BODY(unclosed), &r), ==, 400);
	CHECK_CONTAINS(r.body, "without its closing boundary");
	/* raw upload over the per-file limit */
	CHECK_INT(th_http_body(s.port, "PUT", "/files/x", "text/plain", big,
	                       1200, &r), ==, 413);
	/* not multipart on a multipart-only route; no boundary */
	CHECK_INT(th_http_body(s.port, "POST", "/upload-strict",
	                       "application/json", "{}", 2, &r), ==, 415);
	CHECK_STR(r.body, "{\"detail\":\"Unsupported Media Type: expected "
	                  "multipart/form-data\"}");
	CHECK_INT(th_http_body(s.port, "POST", "/upload-strict",
	                       "multipart/form-data", "x", 1, &r), ==, 400);
	/* nothing was stored by any refused request */
	dir_list(list, sizeof list, 1);
	CHECK_STR(list, "");
	th_server_stop(&s);
}

/* The upload directory vanished: 500, logged, the server keeps going. */
static void test_store_failure(void)
{
	static const char body[] = FILE_PART("a", "f", "1") "--XyZ--\r\n";
	th_server s;
	th_resp r;

	th_server_start(&s, make_app());
	rmdir(updir);
	CHECK_INT(post_mp(s.port, BODY(body), &r), ==, 500);
	CHECK_STR(r.body, "{\"detail\":\"Could not store the upload\"}");
	CHECK_CONTAINS(th_log(), "cannot store the upload");
	CHECK_INT(th_http_body(s.port, "POST", "/upload-inline", MP_CT, body,
	                       sizeof body - 1, &r), ==, 500);
	th_server_stop(&s);
	base_remove();
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

#define SAME_NAME 1100

/* Many uploads of one filename: every one is stored, none replaces
 * another (a name collision used to fail every upload after the
 * 1 000th with 500). */
static void test_same_name_many_times(void)
{
	static const char body[] = FILE_PART("f", "same.txt", "x") "--XyZ--\r\n";
	char **names = calloc(SAME_NAME, sizeof *names);
	double start = th_now();
	th_server s;
	th_resp r;
	int i, ok = 0, plain = 0;

	th_server_start(&s, make_app());
	for (i = 0; i < SAME_NAME && th_now() - start < 60; i++) {
		json_t *j, *f;
		const char *stored;
		if (post_mp(s.port, BODY(body), &r) != 200) {
			TH_FAIL_AT("upload %d: %ld %s", i, r.status, r.body);
			break;
		}
		j = body_json(&r);
		f = json_array_get(json_object_get(j, "files"), 0);
		stored = json_string_value(json_object_get(f, "stored"));
		CHECK(stored != NULL);
		if (stored && strcmp(stored, "same.txt") == 0)
			plain++;
		else if (!clash_of(stored, "same.txt"))
			TH_FAIL_AT("stored name %s", stored ? stored : "(null)");
		names[ok++] = strdup(stored ? stored : "");
		json_decref(j);
	}
	CHECK_INT(ok, ==, SAME_NAME);
	CHECK_INT(plain, ==, 1);
	qsort(names, (size_t)ok, sizeof *names, cmp_str);
	for (i = 1; i < ok; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			TH_FAIL_AT("stored twice as %s", names[i]);
	fprintf(stderr, "  note: %d uploads of one name in %.1f s\n", ok,
	        th_now() - start);
	for (i = 0; i < ok; i++)
		free(names[i]);
	free(names);
	dir_remove();
	th_server_stop(&s);
}

/* Files already holding every name an upload could be given by a
 * counter ("x", "1-x" ... "999-x") do not make it fail, and storing
 * never takes more than a constant number of openat calls. */
static void test_clash_costs_constant_tries(void)
{
	static const char body[] = FILE_PART("f", "x", "data") "--XyZ--\r\n";
	char path[sizeof updir + 32], stored[128];
	th_server s;
	th_resp r;
	json_t *j;
	int i, dfd, most = 0;

	th_server_start(&s, make_app());
	for (i = 0; i < 1000; i++) {
		int fd;
		if (i)
			snprintf(path, sizeof path, "%s/%d-x", updir, i);
		else
			snprintf(path, sizeof path, "%s/x", updir);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		CHECK(fd >= 0);
		close(fd);
	}
	CHECK_INT(post_mp(s.port, BODY(body), &r), ==, 200);
	j = body_json(&r);
	CHECK(clash_of(json_string_value(json_object_get(json_array_get(
			  json_object_get(j, "files"), 0), "stored")), "x"));
	json_decref(j);
	th_server_stop(&s);

	/* The storing function itself: one openat for a free name, two
	 * for a taken one, however many share it. */
	dfd = open(updir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	for (i = 0; i < SAME_NAME; i++) {
		int tries = 0;
		int fd = evapi__upload_open(dfd, "y", stored, sizeof stored,
		                            &tries);
		CHECK(fd >= 0);
		if (fd >= 0)
			close(fd);
		CHECK(i == 0 ? strcmp(stored, "y") == 0 : clash_of(stored, "y"));
		if (tries > most)
			most = tries;
	}
	CHECK_INT(most, ==, 2);
	close(dfd);
	dir_remove();
}

static const th_test tests[] = {
	{"multipart_boundary", test_boundary},
	{"multipart_parse_good", test_parse_good},
	{"multipart_parse_bad", test_parse_bad},
	{"safe_name", test_safe_name},
	{"curl_form_both_lanes", test_curl_form_both_lanes},
	{"traversal_names", test_traversal_names},
	{"limits", test_limits},
	{"store_failure", test_store_failure},
	{"same_name_many_times", test_same_name_many_times},
	{"clash_costs_constant_tries", test_clash_costs_constant_tries},
	{NULL, NULL}};

int main(int argc, char **argv)
{
	return th_main(argc, argv, tests);
}
