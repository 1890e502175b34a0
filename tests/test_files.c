/*
 * test_files.c: serving files on a real app over raw sockets (so paths
 * reach the server exactly as written): traversal attempts, content
 * types, ETag / Last-Modified and 304, HEAD, byte ranges (206, 416,
 * If-Range, suffix, several), a 20 MiB download compared byte for byte,
 * a client leaving mid-download (no descriptor left open), bodies sent
 * with sendfile (pipelined), a file shrinking mid-body, directory
 * index, and evapi_reply_file from inline and pool handlers.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- a tree to serve ------------------------------------------------------ */

static char base[256], root[300], big[320];
#define BIG_SIZE (20L << 20)

static void put(const char *dir, const char *name, const char *text)
{
	char p[512];
	FILE *f;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	f = fopen(p, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static unsigned char big_byte(long i)
{
	return (unsigned char)((i * 2654435761u) >> 13);
}

static void make_tree(void)
{
	char p[512];
	FILE *f;
	long i;

	if (base[0])
		return;
	snprintf(base, sizeof base, "/tmp/evapi-files-XXXXXX");
	CHECK(mkdtemp(base) != NULL);
	snprintf(root, sizeof root, "%s/root", base);
	mkdir(root, 0755);
	put(base, "secret.txt", "TOP-SECRET");
	put(root, "hello.txt", "hello, files\n");
	put(root, "page.html", "<p>hi</p>");
	put(root, "style.css", "p{}");
	put(root, "pic.png", "\x89PNG");
	put(root, "blob.zzq", "?");
	put(root, "notes.srt", "1");
	put(root, "digits.txt", "0123456789abcdefghij"); /* 20 bytes */
	snprintf(p, sizeof p, "%s/sub", root);
	mkdir(p, 0755);
	put(p, "index.html", "<h1>index</h1>");
	snprintf(p, sizeof p, "%s/noindex", root);
	mkdir(p, 0755);
	put(p, "x.txt", "x");
	snprintf(p, sizeof p, "%s/link.txt", root);
	CHECK(symlink("../secret.txt", p) == 0);
	snprintf(p, sizeof p, "%s/inlink.txt", root);
	CHECK(symlink("hello.txt", p) == 0);
	snprintf(big, sizeof big, "%s/big.bin", root);
	f = fopen(big, "w");
	CHECK(f != NULL);
	for (i = 0; f && i < BIG_SIZE; i++)
		fputc(big_byte(i), f);
	if (f)
		fclose(f);
}

static void rm_tree(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- a raw HTTP/1.1 client ------------------------------------------------- */

typedef struct rresp {
	int status;
	char head[4096];
	char *body;
	long len;
} rresp;

static int rconnect(int port)
{
	struct sockaddr_in a;
	struct timeval tv = {10, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static const char *hdr(const rresp *r, const char *name, char *out,
                       size_t len)
{
	const char *p = r->head;
	size_t nl = strlen(name);

	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e;
			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			if (!e || (size_t)(e - v) >= len)
				return NULL;
			memcpy(out, v, (size_t)(e - v));
			out[e - v] = '\0';
			return out;
		}
	}
	return NULL;
}

/* Sends `req` on fd and reads one response (no body for HEAD/304 when
 * no_body). Returns the status, 0 on failure. */
static int rdo(int fd, const char *req, int no_body, rresp *r)
{
	size_t used = 0;
	char cl[32], *end = NULL;
	long want, have;
	ssize_t n;

	memset(r, 0, sizeof *r);
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
		return 0;
	/* headers, a byte at a time: the body stays in the socket */
	while (!end && used + 1 < sizeof r->head) {
		n = recv(fd, r->head + used, 1, 0);
		if (n <= 0)
			return 0;
		used++;
		r->head[used] = '\0';
		if (used >= 4 && memcmp(r->head + used - 4, "\r\n\r\n", 4) == 0)
			end = r->head + used;
	}
	if (!end || sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
		return 0;
	want = hdr(r, "Content-Length", cl, sizeof cl) ? atol(cl) : 0;
	if (no_body || r->status == 304)
		want = 0;
	r->body = malloc((size_t)want + 1);
	for (have = 0; r->body && have < want; have += n) {
		n = recv(fd, r->body + have, (size_t)(want - have), 0);
		if (n <= 0)
			break;
	}
	if (r->body)
		r->body[have] = '\0';
	r->len = have;
	return r->status;
}

/* One request on its own connection. */
static int get(int port, const char *method, const char *path,
               const char *extra, rresp *r)
{
	char req[8192];
	int fd = rconnect(port), st;
	if (fd < 0)
		return 0;
	snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n",
	         method, path, extra ? extra : "");
	st = rdo(fd, req, strcmp(method, "HEAD") == 0, r);
	close(fd);
	return st;
}

static void rfree(rresp *r)
{
	free(r->body);
	r->body = NULL;
}

/* ---- the app -------------------------------------------------------------- */

static void file_inline(evapi_req *req, void *arg)
{
	(void)arg;
	CHECK_INT(evapi_reply_file(req, evapi_req_query(req, "p"), NULL), ==, 0);
}

static void file_pool(evapi_req *req, void *arg)
{
	evapi_files_opts o;
	(void)arg;
	evapi_files_opts_init(&o);
	o.content_type = "text/x-custom";
	evapi_reply_add_header(req, "X-Lane", "pool");
	CHECK_INT(evapi_reply_file(req, evapi_req_query(req, "p"), &o), ==, 0);
}

static void block_pool(evapi_req *req, void *arg)
{
	(void)arg;
	usleep(1000 * 1000); /* holds a worker for a second */
	evapi_reply_json(req, 200, json_pack("{s:b}", "slept", 1));
}

static int grace_ms; /* 0: th_config's */

static void start(th_server *s, int index, int follow)
{
	evapi_config cfg;
	evapi_files_opts o;
	evapi_app *app;

	make_tree();
	th_config(&cfg);
	if (grace_ms)
		cfg.shutdown_grace_ms = grace_ms;
	cfg.openapi = 1;
	app = evapi_app_new(&cfg);
	evapi_files_opts_init(&o);
	o.index = index;
	o.follow_symlinks = follow;
	CHECK_INT(evapi_app_mount_dir(app, "/static", root, &o), ==, 0);
	CHECK_INT(evapi_app_mount_dir(app, "/bad", "/nonexistent-dir", NULL),
	          ==, EVAPI_ENOENT);
	evapi_app_route(app, EVAPI_GET, "/inline", EVAPI_INLINE, file_inline,
	                NULL);
	evapi_app_route(app, EVAPI_GET, "/pool", EVAPI_POOL, file_pool, NULL);
	evapi_app_route(app, EVAPI_GET, "/block", EVAPI_POOL, block_pool, NULL);
	th_server_start(s, app);
}

static void etag_of(const char *path, char *out, size_t len)
{
	struct stat st;
	CHECK(stat(path, &st) == 0);
	snprintf(out, len, "\"%" PRIx64 "-%" PRIx64 "\"",
	         (uint64_t)st.st_mtime, (uint64_t)st.st_size);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_traversal(void)
{
	static const char *const paths[] = {
		"/static/../secret.txt",
		"/static/%2e%2e/secret.txt",
		"/static/%2E%2E/secret.txt",
		"/static/..%2fsecret.txt",
		"/static/..%2Fsecret.txt",
		"/static/%2e%2e%2fsecret.txt",
		"/static/..%5csecret.txt",
		"/static/sub/../../secret.txt",
		"/static/./hello.txt",
		"/static//etc/passwd",
		"/static/%2fetc%2fpasswd",
		"/static/link.txt", /* symlink out of the root */
		NULL};
	th_server s;
	rresp r;
	int i;

	start(&s, 0, 0);
	for (i = 0; paths[i]; i++) {
		CHECK_INT(get(s.port, "GET", paths[i], NULL, &r), ==, 404);
		CHECK_STR(r.body, "{\"detail\":\"Not Found\"}");
		if (r.body && strstr(r.body, "SECRET"))
			TH_FAIL_AT("%s leaked the secret", paths[i]);
		rfree(&r);
	}
	/* a NUL never reaches the file system */
	CHECK_INT(get(s.port, "GET", "/static/hello.txt%00.png", NULL, &r), ==,
	          400);
	rfree(&r);
	/* control: the file itself is served */
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", NULL, &r), ==, 200);
	CHECK_STR(r.body, "hello, files\n");
	rfree(&r);
	th_server_stop(&s);
}

static void test_symlink_option(void)
{
	th_server s;
	rresp r;

	start(&s, 0, 1);
	CHECK_INT(get(s.port, "GET", "/static/link.txt", NULL, &r), ==, 200);
	CHECK_STR(r.body, "TOP-SECRET");
	rfree(&r);
	/* ".." stays refused even when symlinks may lead out */
	CHECK_INT(get(s.port, "GET", "/static/%2e%2e/secret.txt", NULL, &r), ==,
	          404);
	rfree(&r);
	th_server_stop(&s);
}

static void test_content_types(void)
{
	static const struct {
		const char *path, *type;
	} cases[] = {
		{"/static/hello.txt", "text/plain; charset=utf-8"},
		{"/static/page.html", "text/html; charset=utf-8"},
		{"/static/style.css", "text/css; charset=utf-8"},
		{"/static/pic.png", "image/png"},
		{"/static/blob.zzq", "application/octet-stream"},
		{NULL, NULL}};
	th_server s;
	rresp r;
	char v[128];
	int i;

	start(&s, 0, 0);
	for (i = 0; cases[i].path; i++) {
		CHECK_INT(get(s.port, "GET", cases[i].path, NULL, &r), ==, 200);
		CHECK_STR(hdr(&r, "Content-Type", v, sizeof v), cases[i].type);
		CHECK_STR(hdr(&r, "Accept-Ranges", v, sizeof v), "bytes");
		rfree(&r);
	}
	/* an extension only Debian's /etc/mime.types knows */
	CHECK_INT(get(s.port, "GET", "/static/notes.srt", NULL, &r), ==, 200);
	CHECK_STR(hdr(&r, "Content-Type", v, sizeof v),
	          access("/etc/mime.types", R_OK) == 0
	                  ? "text/plain; charset=utf-8"
	                  : "application/octet-stream");
	rfree(&r);
	CHECK_INT(get(s.port, "POST", "/static/hello.txt",
	              "Content-Length: 0\r\n", &r), ==, 405);
	CHECK_STR(r.body, "{\"detail\":\"Method Not Allowed\"}");
	CHECK_STR(hdr(&r, "Allow", v, sizeof v), "GET, HEAD");
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/missing.txt", NULL, &r), ==, 404);
	CHECK_STR(r.body, "{\"detail\":\"Not Found\"}");
	rfree(&r);
	/* a mount is not part of the API document (as in FastAPI) */
	CHECK_INT(get(s.port, "GET", "/openapi.json", NULL, &r), ==, 200);
	CHECK_CONTAINS(r.body, "\"/inline\"");
	if (r.body && strstr(r.body, "/static"))
		TH_FAIL_AT("the mount is in /openapi.json: %s", r.body);
	rfree(&r);
	th_server_stop(&s);
}

static void test_etag_304(void)
{
	th_server s;
	rresp r;
	char path[400], etag[64], v[128], lm[64], h[256];

	start(&s, 0, 0);
	snprintf(path, sizeof path, "%s/hello.txt", root);
	etag_of(path, etag, sizeof etag);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", NULL, &r), ==, 200);
	CHECK_STR(hdr(&r, "ETag", v, sizeof v), etag);
	CHECK(hdr(&r, "Last-Modified", lm, sizeof lm) != NULL);
	CHECK_CONTAINS(lm, " GMT");
	rfree(&r);

	snprintf(h, sizeof h, "If-None-Match: %s\r\n", etag);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", h, &r), ==, 304);
	CHECK_INT(r.len, ==, 0);
	CHECK_STR(hdr(&r, "ETag", v, sizeof v), etag);
	rfree(&r);
	snprintf(h, sizeof h, "If-None-Match: \"nope\", W/%s\r\n", etag);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", h, &r), ==, 304);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", "If-None-Match: *\r\n",
	              &r), ==, 304);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt",
	              "If-None-Match: \"other\"\r\n", &r), ==, 200);
	CHECK_STR(r.body, "hello, files\n");
	rfree(&r);
	/* If-Modified-Since: same date -> 304, older -> 200 */
	snprintf(h, sizeof h, "If-Modified-Since: %s\r\n", lm);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", h, &r), ==, 304);
	rfree(&r);
	CHECK_INT(get(s.port, "HEAD", "/static/hello.txt", h, &r), ==, 304);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt",
	              "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n",
	              &r), ==, 200);
	rfree(&r);
	/* If-None-Match takes precedence over If-Modified-Since */
	snprintf(h, sizeof h,
	         "If-None-Match: \"other\"\r\nIf-Modified-Since: %s\r\n", lm);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", h, &r), ==, 200);
	rfree(&r);
	th_server_stop(&s);
}

static void test_head(void)
{
	th_server s;
	rresp r;
	char v[64];
	int fd;

	start(&s, 0, 0);
	fd = rconnect(s.port);
	/* HEAD then GET on one connection: a body after HEAD would be
	 * read as the GET's status line */
	CHECK_INT(rdo(fd, "HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n", 1,
	              &r), ==, 200);
	CHECK_STR(hdr(&r, "Content-Length", v, sizeof v), "20971520");
	rfree(&r);
	CHECK_INT(rdo(fd, "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n", 0,
	              &r), ==, 200);
	CHECK_STR(r.body, "hello, files\n");
	rfree(&r);
	close(fd);
	th_server_stop(&s);
}

static void test_ranges(void)
{
	th_server s;
	rresp r;
	char path[400], etag[64], v[128], lm[64], h[8300];
	size_t i;

	start(&s, 0, 0);
	snprintf(path, sizeof path, "%s/digits.txt", root);
	etag_of(path, etag, sizeof etag);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", "Range: bytes=2-5\r\n",
	              &r), ==, 206);
	CHECK_STR(r.body, "2345");
	CHECK_STR(hdr(&r, "Content-Range", v, sizeof v), "bytes 2-5/20");
	CHECK_STR(hdr(&r, "Content-Length", v, sizeof v), "4");
	CHECK(hdr(&r, "Last-Modified", lm, sizeof lm) != NULL);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", "Range: bytes=-3\r\n",
	              &r), ==, 206);
	CHECK_STR(r.body, "hij");
	CHECK_STR(hdr(&r, "Content-Range", v, sizeof v), "bytes 17-19/20");
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", "Range: bytes=15-\r\n",
	              &r), ==, 206);
	CHECK_STR(r.body, "fghij");
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt",
	              "Range: bytes=10-999\r\n", &r), ==, 206);
	CHECK_STR(hdr(&r, "Content-Range", v, sizeof v), "bytes 10-19/20");
	rfree(&r);
	/* unsatisfiable */
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", "Range: bytes=20-\r\n",
	              &r), ==, 416);
	CHECK_STR(hdr(&r, "Content-Range", v, sizeof v), "bytes */20");
	CHECK_STR(r.body, "{\"detail\":\"Range Not Satisfiable\"}");
	rfree(&r);
	/* invalid or several ranges: the whole file */
	CHECK_INT(get(s.port, "GET", "/static/digits.txt",
	              "Range: bytes=0-1,4-5\r\n", &r), ==, 200);
	CHECK_INT(r.len, ==, 20);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", "Range: bytes=5-2\r\n",
	              &r), ==, 200);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", "Range: items=0-1\r\n",
	              &r), ==, 200);
	rfree(&r);
	/* HEAD ignores Range */
	CHECK_INT(get(s.port, "HEAD", "/static/digits.txt", "Range: bytes=0-1\r\n",
	              &r), ==, 200);
	rfree(&r);
	/* If-Range: our ETag or exact date -> range; else the whole file */
	snprintf(h, sizeof h, "Range: bytes=0-1\r\nIf-Range: %s\r\n", etag);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", h, &r), ==, 206);
	CHECK_STR(r.body, "01");
	rfree(&r);
	snprintf(h, sizeof h, "Range: bytes=0-1\r\nIf-Range: %s\r\n", lm);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", h, &r), ==, 206);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt",
	              "Range: bytes=0-1\r\nIf-Range: \"stale\"\r\n", &r), ==, 200);
	CHECK_INT(r.len, ==, 20);
	rfree(&r);
	snprintf(h, sizeof h, "Range: bytes=0-1\r\nIf-Range: W/%s\r\n", etag);
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", h, &r), ==, 200);
	rfree(&r);
	/* a long list of ranges is answered at once (linear parse) */
	strcpy(h, "Range: bytes=0-0");
	for (i = strlen(h); i + 8 < 7000; i += 4)
		memcpy(h + i, ",1-1", 5);
	strcat(h, "\r\n");
	CHECK_INT(get(s.port, "GET", "/static/digits.txt", h, &r), ==, 200);
	CHECK_INT(r.len, ==, 20);
	rfree(&r);
	th_server_stop(&s);
}

static void test_big_download(void)
{
	th_server s;
	rresp r;
	long i, bad = -1;
	int fd;

	start(&s, 0, 0);
	fd = rconnect(s.port);
	CHECK_INT(rdo(fd, "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n", 0,
	              &r), ==, 200);
	CHECK_INT(r.len, ==, BIG_SIZE);
	for (i = 0; r.body && i < r.len && bad < 0; i++)
		if ((unsigned char)r.body[i] != big_byte(i))
			bad = i;
	CHECK_INT(bad, ==, -1);
	rfree(&r);
	/* a range from the middle, across a slice boundary, same connection */
	CHECK_INT(rdo(fd, "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n"
	                  "Range: bytes=262000-1000000\r\n\r\n", 0, &r), ==, 206);
	CHECK_INT(r.len, ==, 1000000 - 262000 + 1);
	for (i = 0, bad = -1; r.body && i < r.len && bad < 0; i++)
		if ((unsigned char)r.body[i] != big_byte(262000 + i))
			bad = i;
	CHECK_INT(bad, ==, -1);
	rfree(&r);
	close(fd);
	th_server_stop(&s);
}

/* Bytes of `r`'s body that differ from big.bin's from `from` on: the
 * first one's index, or -1. */
static long big_mismatch(const rresp *r, long from)
{
	long i;
	if (!r->body)
		return 0;
	for (i = 0; i < r->len; i++)
		if ((unsigned char)r->body[i] != big_byte(from + i))
			return i;
	return -1;
}

/* Large bodies go from the file to the socket with sendfile(2), counted
 * in file_sendfile_bytes: a range and a whole file, pipelined on one
 * connection with a HEAD and a small file (read and sent whole, not by
 * sendfile) behind them, each answered in order and byte for byte. */
static void test_body_by_sendfile(void)
{
	th_server s;
	evapi_stats st;
	unsigned long long before;
	rresp r;
	int fd;

	start(&s, 0, 0);
	evapi_app_stats(s.app, &st);
	before = st.file_sendfile_bytes;
	fd = rconnect(s.port);
	CHECK_INT(rdo(fd, "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n"
	                  "Range: bytes=100-299999\r\n\r\n"
	                  "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
	                  "HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
	                  "GET /static/digits.txt HTTP/1.1\r\nHost: t\r\n\r\n",
	              0, &r), ==, 206);
	CHECK_INT(r.len, ==, 299900);
	CHECK_INT(big_mismatch(&r, 100), ==, -1);
	rfree(&r);
	CHECK_INT(rdo(fd, "", 0, &r), ==, 200);
	CHECK_INT(r.len, ==, BIG_SIZE);
	CHECK_INT(big_mismatch(&r, 0), ==, -1);
	rfree(&r);
	CHECK_INT(rdo(fd, "", 1, &r), ==, 200);
	rfree(&r);
	CHECK_INT(rdo(fd, "", 0, &r), ==, 200);
	CHECK_STR(r.body, "0123456789abcdefghij");
	rfree(&r);
	close(fd);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.file_sendfile_bytes - before, ==, 299900 + BIG_SIZE);
	th_server_stop(&s);
}

/* Clients that leave mid-body in every way (close with unread bytes:
 * a reset; shutdown first; a reset by SO_LINGER) make the next
 * sendfile fail with EPIPE or ECONNRESET: the server must not die of
 * SIGPIPE, which this test does not ignore. */
static void test_client_resets_mid_body(void)
{
	struct linger lg = {1, 0};
	void (*old)(int) = signal(SIGPIPE, SIG_DFL);
	char buf[65536];
	th_server s;
	evapi_stats st;
	rresp r;
	int fd, k, i;
	long got;
	ssize_t n;

	start(&s, 0, 0);
	for (k = 0; k < 12; k++) {
		fd = rconnect(s.port);
		CHECK(fd >= 0);
		CHECK_INT(send(fd, "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n",
		               41, MSG_NOSIGNAL), ==, 41);
		for (got = 0; got < 200000; got += n)
			if ((n = recv(fd, buf, sizeof buf, 0)) <= 0)
				break;
		if (k % 3 == 1)
			shutdown(fd, SHUT_RDWR);
		if (k % 3 == 2)
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		close(fd);
	}
	/* every transfer ended, the server serves on */
	for (i = 0; i < 300; i++) {
		evapi_app_stats(s.app, &st);
		if (st.in_flight == 0)
			break;
		th_sleep_ms(10);
	}
	CHECK_INT(st.gone, >=, 12);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", NULL, &r), ==, 200);
	rfree(&r);
	th_server_stop(&s);
	signal(SIGPIPE, old);
}

/* A file cut short while its body is being sent: the reply cannot reach
 * its Content-Length, so the connection closes; the server goes on. */
static void test_file_shrinks(void)
{
	char p[400], buf[65536];
	th_server s;
	rresp r;
	double t0;
	long got = 0;
	ssize_t n;
	int fd;
	FILE *f;

	start(&s, 0, 0);
	snprintf(p, sizeof p, "%s/shrink.bin", root);
	f = fopen(p, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	/* sparse: more than the socket buffers on both sides hold */
	CHECK_INT(ftruncate(fileno(f), 64L << 20), ==, 0);
	fclose(f);
	fd = rconnect(s.port);
	CHECK_INT(send(fd, "GET /static/shrink.bin HTTP/1.1\r\nHost: t\r\n\r\n",
	               44, MSG_NOSIGNAL), ==, 44);
	n = recv(fd, buf, sizeof buf, 0);
	CHECK_INT(n, >, 0);
	th_sleep_ms(200); /* the buffers fill; the server waits */
	CHECK_INT(truncate(p, 4096), ==, 0);
	t0 = th_now();
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
		got += n;
	CHECK_INT(n, ==, 0); /* closed, not timed out */
	CHECK_DBL(th_now() - t0, <, 5.0);
	CHECK_INT(got, <, 64L << 20);
	close(fd);
	CHECK_INT(get(s.port, "GET", "/static/hello.txt", NULL, &r), ==, 200);
	rfree(&r);
	CHECK_CONTAINS(th_log(), "the file shrank");
	th_server_stop(&s);
	unlink(p);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n;
}

/* Descriptors of this process open on `path`, or on anything under it
 * when it ends with '/'. */
static int fds_on(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char p[300], t[512];
	size_t pl = strlen(path);
	int n = 0;
	ssize_t l;
	while (d && (e = readdir(d))) {
		snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
		l = readlink(p, t, sizeof t - 1);
		if (l > 0) {
			t[l] = '\0';
			if (path[pl - 1] == '/' ? strncmp(t, path, pl) == 0
			                        : strcmp(t, path) == 0)
				n++;
		}
	}
	if (d)
		closedir(d);
	return n;
}

static int big_fds(void)
{
	return fds_on(big);
}

static void test_disconnect_closes_fd(void)
{
	th_server s;
	evapi_stats st;
	char buf[65536];
	int fd, k, before, during = 0;
	long got;
	ssize_t n;

	start(&s, 0, 0);
	before = count_fds();
	for (k = 0; k < 3; k++) {
		fd = rconnect(s.port);
		CHECK(fd >= 0);
		n = send(fd, "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n", 41,
		         MSG_NOSIGNAL);
		CHECK_INT(n, ==, 41);
		for (got = 0; got < 300000; got += n) {
			n = recv(fd, buf, sizeof buf, 0);
			if (n <= 0)
				break;
		}
		CHECK_INT(got, >=, 300000);
		during += big_fds();
		close(fd); /* mid-download */
	}
	CHECK_INT(during, >=, 6); /* the transfer's and the cache's */
	/* what is left is the mount's cached descriptor, one */
	for (k = 0; k < 300 && (big_fds() > 1 || count_fds() > before + 1); k++)
		th_sleep_ms(10);
	CHECK_INT(big_fds(), ==, 1);
	CHECK_INT(count_fds(), <=, before + 1);
	evapi_app_stats(s.app, &st);
	CHECK_INT(st.in_flight, ==, 0);
	CHECK_INT(st.gone, >=, 3);
	th_server_stop(&s);
}

/* Waits (up to 3 s) until fds_on(path) is n; returns what it is. */
static int fds_settle(const char *path, int n)
{
	int k;
	for (k = 0; k < 300 && fds_on(path) != n; k++)
		th_sleep_ms(10);
	return fds_on(path);
}

/* The mount keeps the descriptors of the files it served last, 64 at
 * most (the least recently used go), and never serves a stale one: a
 * file written in place or deleted is seen at once, one replaced by a
 * rename within the entry's second. */
static void test_fd_cache(void)
{
	char dir[400], p[512], p2[512], url[64], want[64];
	th_server s;
	th_resp r;
	double t0;
	int i, fresh = 0;
	FILE *f;

	start(&s, 0, 0);
	snprintf(dir, sizeof dir, "%s/cache/", root);
	mkdir(dir, 0755);
	for (i = 0; i < 100; i++) {
		snprintf(p, sizeof p, "f%d.txt", i);
		snprintf(want, sizeof want, "file %d", i);
		put(dir, p, want);
	}
	CHECK_INT(th_http(s.port, "GET", "/static/cache/f0.txt", NULL, &r), ==,
	          200);
	CHECK_STR(r.body, "file 0");
	CHECK_INT(fds_settle(dir, 1), ==, 1); /* kept after the reply */
	for (i = 0; i < 100; i++) {
		snprintf(url, sizeof url, "/static/cache/f%d.txt", i);
		snprintf(want, sizeof want, "file %d", i);
		CHECK_INT(th_http(s.port, "GET", url, NULL, &r), ==, 200);
		CHECK_STR(r.body, want);
	}
	CHECK_INT(fds_settle(dir, 64), ==, 64); /* bounded */
	snprintf(p, sizeof p, "%sf99.txt", dir);
	CHECK_INT(fds_on(p), ==, 1); /* the last used stay */
	snprintf(p, sizeof p, "%sf0.txt", dir);
	CHECK_INT(fds_on(p), ==, 0); /* the least recently used went */
	/* written in place: the next request sees it */
	snprintf(p, sizeof p, "%sf99.txt", dir);
	f = fopen(p, "a");
	CHECK(f != NULL);
	if (f) {
		fputs(" and more", f);
		fclose(f);
	}
	CHECK_INT(th_http(s.port, "GET", "/static/cache/f99.txt", NULL, &r),
	          ==, 200);
	CHECK_STR(r.body, "file 99 and more");
	/* deleted: 404 at once */
	snprintf(p, sizeof p, "%sf98.txt", dir);
	unlink(p);
	CHECK_INT(th_http(s.port, "GET", "/static/cache/f98.txt", NULL, &r),
	          ==, 404);
	/* replaced by a rename: at most a second late */
	put(dir, "new.tmp", "replaced");
	snprintf(p, sizeof p, "%snew.tmp", dir);
	snprintf(p2, sizeof p2, "%sf97.txt", dir);
	CHECK(rename(p, p2) == 0);
	for (t0 = th_now(); th_now() - t0 < 3 && !fresh; th_sleep_ms(50)) {
		CHECK_INT(th_http(s.port, "GET", "/static/cache/f97.txt", NULL,
		                  &r), ==, 200);
		fresh = strcmp(r.body, "replaced") == 0;
	}
	CHECK(fresh);
	CHECK_DBL(th_now() - t0, <, 1.5);
	/* a hit is answered on the loop: every worker busy for a second,
	 * a cached file still comes at once, an uncached one after them */
	{
		th_async a[8];
		double t1;
		CHECK_INT(th_http(s.port, "GET", "/static/cache/f99.txt", NULL,
		                  &r), ==, 200);
		for (i = 0; i < 8; i++)
			th_http_start(&a[i], s.port, "/block");
		th_sleep_ms(200);
		t1 = th_now();
		CHECK_INT(th_http(s.port, "GET", "/static/cache/f99.txt", NULL,
		                  &r), ==, 200);
		CHECK_DBL(th_now() - t1, <, 0.4);
		CHECK_INT(th_http(s.port, "GET", "/static/cache/f1.txt", NULL,
		                  &r), ==, 200); /* f1 left the cache */
		CHECK_DBL(th_now() - t1, >=, 0.6);
		for (i = 0; i < 8; i++)
			CHECK_INT(th_http_join(&a[i]), ==, 200);
	}
	th_server_stop(&s);
	CHECK_INT(fds_on(dir), ==, 0); /* closed with the mount */
}

/* A stop while a client reads slowly: the download may go on through
 * the grace period, then it is cut (short body, connection closed), the
 * request counted and the descriptor closed. */
static void test_shutdown_cuts_download(void)
{
	th_server s;
	char buf[65536];
	/* small enough that the 20 MiB cannot all sit in the two sockets'
	 * buffers, large enough to drain the rest at loopback speed (a 4 KiB
	 * window drains by zero-window probes, 8 KiB per 200 ms) */
	int fd, rcv = 256 << 10;
	long got = 0;
	ssize_t n;
	double t0;

	grace_ms = 300;
	start(&s, 0, 0);
	grace_ms = 0;
	fd = rconnect(s.port);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
	CHECK_INT(send(fd, "GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n",
	               41, MSG_NOSIGNAL), ==, 41);
	n = recv(fd, buf, sizeof buf, 0);
	CHECK_INT(n, >, 0);
	th_sleep_ms(100);
	CHECK_INT(big_fds(), ==, 2); /* the transfer's and the cache's */
	t0 = th_now();
	th_server_stop(&s); /* checks in_flight == 0 */
	CHECK_DBL(th_now() - t0, <, 5.0);
	CHECK_INT(big_fds(), ==, 0);
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
		got += n;
	CHECK_INT(n, ==, 0); /* closed, not timed out */
	CHECK_INT(got, <, BIG_SIZE);
	CHECK_CONTAINS(th_log(), "file: shutdown cut");
	close(fd);
}

static void test_index(void)
{
	th_server s;
	rresp r;
	char v[128];

	start(&s, 0, 0);
	CHECK_INT(get(s.port, "GET", "/static/sub/", NULL, &r), ==, 404);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/noindex/", NULL, &r), ==, 404);
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/", NULL, &r), ==, 404);
	rfree(&r);
	th_server_stop(&s);

	start(&s, 1, 0);
	CHECK_INT(get(s.port, "GET", "/static/sub/", NULL, &r), ==, 200);
	CHECK_STR(r.body, "<h1>index</h1>");
	CHECK_STR(hdr(&r, "Content-Type", v, sizeof v),
	          "text/html; charset=utf-8");
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/static/sub", NULL, &r), ==, 200);
	rfree(&r);
	/* no listing, ever */
	CHECK_INT(get(s.port, "GET", "/static/noindex/", NULL, &r), ==, 404);
	rfree(&r);
	th_server_stop(&s);
}

static void test_reply_file(void)
{
	th_server s;
	rresp r;
	char q[512], v[128], h[256], etag[64], path[400];

	start(&s, 0, 0);
	snprintf(path, sizeof path, "%s/digits.txt", root);
	etag_of(path, etag, sizeof etag);
	snprintf(q, sizeof q, "/inline?p=%s", path);
	CHECK_INT(get(s.port, "GET", q, "Range: bytes=0-3\r\n", &r), ==, 206);
	CHECK_STR(r.body, "0123");
	rfree(&r);
	snprintf(h, sizeof h, "If-None-Match: %s\r\n", etag);
	CHECK_INT(get(s.port, "GET", q, h, &r), ==, 304);
	rfree(&r);
	snprintf(q, sizeof q, "/pool?p=%s", path);
	CHECK_INT(get(s.port, "GET", q, NULL, &r), ==, 200);
	CHECK_STR(r.body, "0123456789abcdefghij");
	CHECK_STR(hdr(&r, "Content-Type", v, sizeof v), "text/x-custom");
	CHECK_STR(hdr(&r, "X-Lane", v, sizeof v), "pool");
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/inline?p=/nonexistent", NULL, &r), ==, 404);
	CHECK_STR(r.body, "{\"detail\":\"Not Found\"}");
	rfree(&r);
	CHECK_INT(get(s.port, "GET", "/pool?p=/nonexistent", NULL, &r), ==, 404);
	rfree(&r);
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"files.traversal", test_traversal},
		{"files.symlink_option", test_symlink_option},
		{"files.content_types", test_content_types},
		{"files.etag_304", test_etag_304},
		{"files.head", test_head},
		{"files.ranges", test_ranges},
		{"files.big_download", test_big_download},
		{"files.disconnect_closes_fd", test_disconnect_closes_fd},
		{"files.body_by_sendfile", test_body_by_sendfile},
		{"files.file_shrinks", test_file_shrinks},
		{"files.client_resets_mid_body", test_client_resets_mid_body},
		{"files.fd_cache", test_fd_cache},
		{"files.shutdown_cuts_download", test_shutdown_cuts_download},
		{"files.index", test_index},
		{"files.reply_file", test_reply_file},
		{NULL, NULL}};
	int rc = th_main(argc, argv, tests);
	if (base[0])
		rm_tree(base);
	return rc;
}
