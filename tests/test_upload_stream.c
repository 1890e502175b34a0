/*
 * test_upload_stream.c: upload bodies streamed to temporary files as
 * they arrive (src/upload_stream.c, fed by the request guard): a 50 MiB
 * upload stored whole and byte-exact with the process's memory bounded,
 * limits answered while the body is still arriving, temporary files
 * gone when the client leaves mid-body, and names kept safe.
 */
#include "harness.h"
#include "../src/internal.h"

#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define BOUNDARY "evapi-test-boundary-7f3a"
/* a prefix of the delimiter, planted in the file's bytes every PLANT
 * bytes, so the parser must keep a partial match across its reads */
#define DECOY "\r\n--evapi-test-bo"
#define PLANT 100003

static char updir[64];

static int under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");
	return p && strstr(p, "vgpreload") != NULL;
}

static int sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return 1;
#else
	return 0;
#endif
}

/* byte i of the uploaded file */
static unsigned char file_byte(uint64_t i)
{
	uint64_t k = i % PLANT;
	if (k < sizeof DECOY - 1)
		return (unsigned char)DECOY[k];
	return (unsigned char)((i * 31 + (i >> 13)) & 0xff);
}

static uint64_t fnv_add(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 1099511628211ULL;
	}
	return h;
}

#define FNV0 14695981039346656037ULL

/* Reads every stored file back on the worker: sizes and a hash, so the
 * test sees the handler got the whole, exact file. */
static void check_files(evapi_req *req, void *arg)
{
	json_t *files = json_array();
	int i;

	(void)arg;
	for (i = 0; i < evapi_req_file_count(req); i++) {
		const evapi_file *f = evapi_req_file(req, i);
		static __thread unsigned char buf[65536];
		uint64_t h = FNV0;
		long long on_disk = 0;
		char hex[24];
		ssize_t n;
		int fd = open(f->path, O_RDONLY | O_CLOEXEC);
		while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0) {
			h = fnv_add(h, buf, (size_t)n);
			on_disk += n;
		}
		if (fd >= 0)
			close(fd);
		snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
		json_array_append_new(files, json_pack(
			"{s:s, s:s?, s:s, s:I, s:I, s:s}", "field", f->field,
			"filename", f->filename, "stored", f->stored, "size",
			(json_int_t)f->size, "on_disk", (json_int_t)on_disk,
			"fnv", hex));
	}
	evapi_reply_json(req, 200, json_pack("{s:o, s:s?}", "files", files,
	                                     "title",
	                                     evapi_req_form(req, "title")));
}

static evapi_upload big = {.max_file_bytes = 64 << 20,
                           .max_total_bytes = 64 << 20};
static evapi_upload small = {.max_file_bytes = 1 << 20,
                             .max_total_bytes = 2 << 20};
static evapi_upload raw_up = {.max_file_bytes = 1 << 20, .raw = 1};

static evapi_app *make_app(size_t max_body)
{
	evapi_config cfg;
	evapi_app *app;
	evapi_route_decl up = {.methods = EVAPI_POST, .path = "/up",
	                       .lane = EVAPI_POOL, .cb = check_files,
	                       .upload = &big};
	evapi_route_decl lim = {.methods = EVAPI_POST, .path = "/small",
	                        .lane = EVAPI_INLINE, .cb = check_files,
	                        .upload = &small};

	evapi_route_decl put = {.methods = EVAPI_PUT, .path = "/raw/{filename}",
	                        .lane = EVAPI_POOL, .cb = check_files,
	                        .upload = &raw_up};

	snprintf(updir, sizeof updir, "/tmp/evapi-ustream-XXXXXX");
	CHECK(mkdtemp(updir) != NULL);
	big.dir = small.dir = raw_up.dir = updir;
	th_config(&cfg);
	/* the old way held the whole body (and copies of it): a limit this
	 * large let it, so memory, not the limit, is what is measured */
	cfg.max_body_bytes = max_body;
	app = evapi_app_new(&cfg);
	CHECK_INT(evapi_app_route_decl(app, &up), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &lim), ==, 0);
	CHECK_INT(evapi_app_route_decl(app, &put), ==, 0);
	return app;
}

/* Names in the upload directory, comma-separated (unsorted). */
static void dir_names(char *out, size_t cap)
{
	struct dirent *e;
	DIR *d = opendir(updir);
	out[0] = '\0';
	if (!d)
		return;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			snprintf(out + strlen(out), cap - strlen(out), "%s%s",
			         out[0] ? "," : "", e->d_name);
	closedir(d);
}

/* Descriptors of this process open on something in the upload
 * directory (a temporary file shows as "<dir>/#123 (deleted)"). */
static int fds_in_dir(void)
{
	char link[300], target[512];
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	ssize_t k;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		k = readlink(link, target, sizeof target - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		if (strncmp(target, updir, strlen(updir)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static long status_kib(const char *field)
{
	char line[256];
	long v = -1;
	size_t fl = strlen(field);
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, field, fl) == 0 && line[fl] == ':')
			v = strtol(line + fl + 1, NULL, 10);
	fclose(f);
	return v;
}

/* ---- a generated multipart body, never held whole ---------------------- */

static const char head_part[] =
	"--" BOUNDARY "\r\n"
	"Content-Disposition: form-data; name=\"title\"\r\n\r\n"
	"fifty\r\n"
	"--" BOUNDARY "\r\n"
	"Content-Disposition: form-data; name=\"file\"; "
	"filename=\"../../big.bin\"\r\n"
	"Content-Type: application/octet-stream\r\n\r\n";
static const char tail_part[] = "\r\n--" BOUNDARY "--\r\n";

typedef struct gen {
	uint64_t size, pos; /* of the whole body */
} gen;

static uint64_t body_size(uint64_t file)
{
	return sizeof head_part - 1 + file + sizeof tail_part - 1;
}

static size_t gen_read(char *out, size_t sz, size_t nm, void *arg)
{
	gen *g = arg;
	size_t cap = sz * nm, o = 0;
	uint64_t hl = sizeof head_part - 1, fl = g->size - hl -
	                                         (sizeof tail_part - 1);

	while (o < cap && g->pos < g->size) {
		uint64_t p = g->pos;
		if (p < hl)
			out[o] = head_part[p];
		else if (p < hl + fl)
			out[o] = (char)file_byte(p - hl);
		else
			out[o] = tail_part[p - hl - fl];
		o++;
		g->pos++;
	}
	return o;
}

static long post_generated(int port, uint64_t file, char *body, size_t cap)
{
	char url[64];
	CURL *h = curl_easy_init();
	struct curl_slist *hd = curl_slist_append(
		NULL, "Content-Type: multipart/form-data; boundary=" BOUNDARY);
	FILE *out = fmemopen(body, cap, "w");
	gen g = {body_size(file), 0};
	long status = 0;

	hd = curl_slist_append(hd, "Expect:");
	snprintf(url, sizeof url, "http://127.0.0.1:%d/up", port);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, gen_read);
	curl_easy_setopt(h, CURLOPT_READDATA, &g);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)g.size);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	fclose(out);
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	return status;
}

/* 50 MiB in one multipart body: stored whole and exact, under its
 * sanitised name, while the process's peak memory grows by a few MiB
 * (the old way held the body three times over: the guard's copy,
 * evhttp's, the request's). */
static void test_big_upload_bounded(void)
{
	uint64_t file = (under_valgrind() || sanitized() ? 8ULL : 50ULL) << 20;
	static char body[4096];
	char names[512], want[24];
	uint64_t h = FNV0, i;
	long hwm0, hwm1;
	double end;
	th_server s;
	json_t *j, *f;

	for (i = 0; i < file; i++) {
		unsigned char b = file_byte(i);
		h = fnv_add(h, &b, 1);
	}
	snprintf(want, sizeof want, "%016llx", (unsigned long long)h);
	th_server_start(&s, make_app(96 << 20));
	hwm0 = status_kib("VmHWM");
	CHECK_INT(post_generated(s.port, file, body, sizeof body), ==, 200);
	hwm1 = status_kib("VmHWM");
	j = json_loads(body, 0, NULL);
	CHECK(j != NULL);
	f = json_array_get(json_object_get(j, "files"), 0);
	CHECK_STR(json_string_value(json_object_get(j, "title")), "fifty");
	CHECK_STR(json_string_value(json_object_get(f, "filename")),
	          "../../big.bin");
	CHECK_STR(json_string_value(json_object_get(f, "stored")), "big.bin");
	CHECK_INT(json_integer_value(json_object_get(f, "size")), ==,
	          (long long)file);
	CHECK_INT(json_integer_value(json_object_get(f, "on_disk")), ==,
	          (long long)file);
	CHECK_STR(json_string_value(json_object_get(f, "fnv")), want);
	json_decref(j);
	printf("  note: %llu MiB upload: peak RSS %ld -> %ld KiB (+%ld KiB)\n",
	       (unsigned long long)(file >> 20), hwm0, hwm1, hwm1 - hwm0);
	if (!sanitized() && !under_valgrind())
		CHECK_INT(hwm1 - hwm0, <, 16 * 1024);
	/* only the stored file: no temporary file left, none outside */
	dir_names(names, sizeof names);
	CHECK_STR(names, "big.bin");
	/* the request's descriptors close when it is freed, just after its
	 * reply went out: give that a moment, then none may be left */
	for (end = th_now() + 5; th_now() < end && fds_in_dir() > 0;)
		th_sleep_ms(10);
	CHECK_INT(fds_in_dir(), ==, 0);
	th_server_stop(&s);
	th_remove_dir(updir);
}

/* Raw bytes of a request: headers with a Content-Length for the whole
 * body, then the start of one file part and `sent` bytes of its data. */
static char *partial_request(const char *path, size_t file, size_t sent)
{
	static const char part[] =
		"--" BOUNDARY "\r\n"
		"Content-Disposition: form-data; name=\"file\"; "
		"filename=\"f.bin\"\r\n\r\n";
	size_t cl = sizeof part - 1 + file + sizeof tail_part - 1;
	char *r = malloc(512 + sizeof part + sent);
	int n;

	if (!r)
		return NULL;
	n = snprintf(r, 512,
	             "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: "
	             "multipart/form-data; boundary=" BOUNDARY "\r\n"
	             "Content-Length: %zu\r\n\r\n%s", path, cl, part);
	memset(r + n, 'a', sent);
	r[(size_t)n + sent] = '\0';
	return r;
}

/* A file over max_file_bytes is refused with 413 JSON while it is still
 * arriving: the rest of the declared body is never awaited. Others stay
 * served, and nothing is left in the directory. */
static void test_limit_as_it_arrives(void)
{
	static char buf[8192];
	char names[256];
	char *raw;
	th_server s;
	th_resp r;
	double t0;
	int fd;

	th_server_start(&s, make_app(8 << 20));
	/* 4 MiB declared, 1.5 MiB sent, then the client waits */
	raw = partial_request("/small", 4 << 20, 3 << 19);
	fd = raw ? th_connect_send(s.port, raw) : -1;
	CHECK(fd >= 0);
	t0 = th_now();
	th_read_all(fd, buf, sizeof buf, 5.0);
	CHECK_CONTAINS(buf, "HTTP/1.1 413 ");
	CHECK_CONTAINS(buf, "{\"detail\":\"File too large: 'file' is over "
	                    "1048576 bytes\"}");
	CHECK_CONTAINS(buf, "Connection: close");
	CHECK_DBL(th_now() - t0, <, 4.5);
	if (fd >= 0)
		close(fd);
	free(raw);
	/* the same through the whole path: a body that fits is served */
	CHECK_INT(th_http_body(s.port, "POST", "/small",
	                       "multipart/form-data; boundary=" BOUNDARY,
	                       "--" BOUNDARY "\r\nContent-Disposition: "
	                       "form-data; name=f; filename=a\r\n\r\nabc\r\n--"
	                       BOUNDARY "--\r\n",
	                       sizeof("--" BOUNDARY "\r\nContent-Disposition: "
	                              "form-data; name=f; filename=a\r\n\r\nabc"
	                              "\r\n--" BOUNDARY "--\r\n") - 1, &r),
	          ==, 200);
	CHECK_CONTAINS(r.body, "\"size\":3");
	/* 2 MiB of text fields: over max_body_bytes for what is kept in
	 * memory, whatever the file limits */
	{
		size_t n = 9 << 20;
		char *t = malloc(n + 512);
		int hl = snprintf(t, 512, "--" BOUNDARY "\r\nContent-"
		                  "Disposition: form-data; name=t\r\n\r\n");
		memset(t + hl, 'x', n);
		memcpy(t + hl + n, tail_part, sizeof tail_part);
		CHECK_INT(th_http_body(s.port, "POST", "/up",
		                       "multipart/form-data; boundary=" BOUNDARY,
		                       t, (size_t)hl + n + sizeof tail_part - 1,
		                       &r), ==, 413);
		CHECK_STR(r.body, "{\"detail\":\"Request body too large\"}");
		free(t);
	}
	th_sleep_ms(200);
	dir_names(names, sizeof names);
	CHECK_STR(names, "a");
	th_server_stop(&s);
	th_remove_dir(updir);
}

/* A raw body (curl -T sends no Content-Type) is one file named by the
 * route's {filename}, sanitised; with a type, typed by it. */
static void test_raw_named_by_path(void)
{
	char names[256];
	th_server s;
	th_resp r;

	th_server_start(&s, make_app(1 << 20));
	CHECK_INT(th_http_body(s.port, "PUT", "/raw/report.txt", NULL, "hello\n",
	                       6, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"filename\":\"report.txt\"");
	CHECK_CONTAINS(r.body, "\"stored\":\"report.txt\"");
	CHECK_CONTAINS(r.body, "\"size\":6");
	CHECK_INT(th_http_body(s.port, "PUT", "/raw/..%2F..%2Fevil",
	                       "text/plain", "x", 1, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"stored\":\"evil\"");
	dir_names(names, sizeof names);
	CHECK(strcmp(names, "report.txt,evil") == 0 ||
	      strcmp(names, "evil,report.txt") == 0);
	th_server_stop(&s);
	th_remove_dir(updir);
}

/* A client that leaves mid-body: the temporary file, open while its
 * bytes were being written, is closed (and so removed), nothing is
 * stored, and the server keeps serving. */
static void test_disconnect_removes_temp(void)
{
	char names[256];
	char *raw = partial_request("/up", 10 << 20, 3 << 20);
	th_server s;
	th_resp r;
	double end;
	int fd, seen = 0;

	th_server_start(&s, make_app(1 << 20));
	fd = raw ? th_connect_send(s.port, raw) : -1;
	CHECK(fd >= 0);
	for (end = th_now() + 10; th_now() < end && !seen; th_sleep_ms(10))
		seen = fds_in_dir() > 0;
	CHECK(seen); /* the body was being written to a temporary file */
	dir_names(names, sizeof names);
	CHECK_STR(names, ""); /* which has no name */
	if (fd >= 0)
		close(fd);
	for (end = th_now() + 10; th_now() < end && fds_in_dir() > 0;)
		th_sleep_ms(10);
	CHECK_INT(fds_in_dir(), ==, 0);
	dir_names(names, sizeof names);
	CHECK_STR(names, "");
	CHECK_INT(th_http(s.port, "GET", "/nothing", NULL, &r), ==, 404);
	free(raw);
	th_server_stop(&s);
	th_remove_dir(updir);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"ustream.big_upload_bounded", test_big_upload_bounded},
		{"ustream.limit_as_it_arrives", test_limit_as_it_arrives},
		{"ustream.disconnect_removes_temp", test_disconnect_removes_temp},
		{"ustream.raw_named_by_path", test_raw_named_by_path},
		{NULL, NULL},
	};
	return th_main(argc, argv, tests);
}
