/*
 * files.c: serving files: directory mounts (StaticFiles) and
 * evapi_reply_file (FileResponse).
 *
 * Threads: a file is opened, stat'ed and its reply decided (status,
 * validators, range) by `prepare` on a pool worker: a mount's route
 * runs on the pool lane, and an inline evapi_reply_file hands it to
 * evapi_req_run_in_pool. The loop never opens or stats a file (both may
 * block on a slow or remote disk). A mount keeps a small cache of open
 * descriptors (see "the descriptor cache"). The worker's product is an ordinary reply plus
 * an open descriptor (`req->resp.file`); the loop alone sends it
 * (evapi__files_send), like any reply.
 *
 * Content types: /etc/mime.types when present (read once), then a
 * built-in table; text types with "; charset=utf-8".
 *
 * Paths: a mount's rest-of-path comes from the router already decoded
 * per segment (an encoded '/' never matches). It is refused unless every
 * segment is a plain name (no "", ".", "..", no '\'), then opened
 * relative to the mount's directory descriptor with openat2
 * RESOLVE_BENEATH, so neither ".." nor a symlink can lead out; where the
 * kernel lacks openat2 we walk the components with O_NOFOLLOW (no
 * symlinks at all). Opened O_NONBLOCK: a FIFO placed in the tree cannot
 * hang a worker, and anything but a regular file is 404.
 *
 * Body: the loop sends the headers with a Content-Length through evhttp,
 * and the request guard sends the file behind them with sendfile(2)
 * (evapi__guard_send_file): from the page cache to the socket in the
 * kernel, as fast as the client reads, with no buffer of ours, so a
 * slow client holds back only its own socket (docs/ARCHITECTURE.md,
 * "Files"). Bodies up to SMALL_FILE are read with pread and sent whole
 * (send_small). The descriptor is closed when both the loop's side of
 * the transfer and the guard's have ended, also when the client leaves
 * mid-way.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/openat2.h>
#endif

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "guard/guard.h"

/* bodies up to this size go out as one whole reply (send_small) */
#define SMALL_FILE (32 * 1024)

struct evapi__fbody {
	int fd;
	off_t off, len;
};

/* ---- the descriptor cache ------------------------------------------------- */

/* Each mount keeps the descriptors of the files it served last: at most
 * FCACHE_MAX, least recently used first out, each trusted for FCACHE_US
 * after it was opened through the safe path walk. A hit costs a lookup,
 * an fstat and a dup instead of the walk (openat2) and the open; every
 * request still gets a descriptor of its own, so the transfer's life is
 * unchanged, and the mount never holds more than FCACHE_MAX.
 *
 * Staleness: on every hit the cached descriptor is fstat'ed and dropped
 * when its device, inode, size or mtime changed or it has no link left,
 * so a file written in place or deleted is seen at once. A path whose
 * file was replaced by another (rename over it, the usual way to deploy)
 * or a symlink pointed elsewhere is seen when the entry expires: at most
 * FCACHE_US (1 s) late, as nginx's open_file_cache_valid (60 s there).
 *
 * Threads: workers (prepare), under the cache's mutex; every syscall
 * made under it (fstat, dup, close) is on a descriptor already open.
 * Freed with the mount. */
#define FCACHE_MAX 64
#define FCACHE_US 1000000

typedef struct fentry {
	struct fentry *prev, *next; /* most recently used first */
	char *rel;
	int fd;
	int is_index;
	struct stat st;
	int64_t opened_us;
} fentry;

typedef struct fcache {
	pthread_mutex_t mu;
	fentry *head, *tail;
	int n;
} fcache;

static void fc_unlink(fcache *c, fentry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	c->n--;
}

static void fc_front(fcache *c, fentry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
	c->n++;
}

static void fc_drop(fcache *c, fentry *e)
{
	fc_unlink(c, e);
	close(e->fd);
	free(e->rel);
	free(e);
}

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && b->st_nlink > 0;
}

/* A new descriptor of the file cached for `rel`, its stat in *st; -1
 * when there is none (or it went stale: dropped). */
static int fc_take(fcache *c, const char *rel, struct stat *st, int *is_index)
{
	int64_t now = evapi__now_us();
	fentry *e;
	int fd = -1;

	pthread_mutex_lock(&c->mu);
	for (e = c->head; e && strcmp(e->rel, rel) != 0; e = e->next)
		;
	if (e && (now - e->opened_us > FCACHE_US || fstat(e->fd, st) != 0 ||
	          !same_file(&e->st, st))) {
		fc_drop(c, e);
		e = NULL;
	}
	if (e && (fd = fcntl(e->fd, F_DUPFD_CLOEXEC, 0)) >= 0) {
		*is_index = e->is_index;
		fc_unlink(c, e);
		fc_front(c, e);
	}
	pthread_mutex_unlock(&c->mu);
	return fd;
}

/* Keeps a copy of `fd` (just opened for `rel`, a regular file). */
static void fc_put(fcache *c, const char *rel, int fd, const struct stat *st,
                   int is_index)
{
	fentry *e = calloc(1, sizeof *e), *old;

	if (!e || !(e->rel = strdup(rel)) ||
	    (e->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		if (e)
			free(e->rel);
		free(e);
		return; /* not cached: nothing else changes */
	}
	e->st = *st;
	e->is_index = is_index;
	e->opened_us = evapi__now_us();
	pthread_mutex_lock(&c->mu);
	for (old = c->head; old && strcmp(old->rel, rel) != 0; old = old->next)
		;
	if (old) /* another worker cached it meanwhile */
		fc_drop(c, old);
	if (c->n == FCACHE_MAX)
		fc_drop(c, c->tail);
	fc_front(c, e);
	pthread_mutex_unlock(&c->mu);
}

static void fc_free(fcache *c)
{
	if (!c)
		return;
	while (c->head)
		fc_drop(c, c->head);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

typedef struct evapi__mount {
	struct evapi__mount *next; /* app->mounts */
	evapi_app *app;
	int dirfd;
	evapi_files_opts opts;
	fcache *cache;
} evapi__mount;

/* ---- content types ------------------------------------------------------- */

/* Debian's /etc/mime.types (package media-types), read once by the
 * first worker that needs a type and kept for the process's life; the
 * built-in table below answers for what it lacks, or when it is absent.
 * Text types get "; charset=utf-8". */
#define MIME_TYPES "/etc/mime.types"
#define CHARSET "; charset=utf-8"

typedef struct mime_entry {
	char *ext;
	const char *type;
} mime_entry;

static mime_entry *mime;
static size_t nmime;
static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static int mime_cmp(const void *a, const void *b)
{
	return strcasecmp(((const mime_entry *)a)->ext,
	                  ((const mime_entry *)b)->ext);
}

static void mime_load(void)
{
	FILE *f = fopen(MIME_TYPES, "re");
	char line[1024], *save, *tok, *type;
	size_t cap = 0;
	mime_entry *m;

	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		int used = 0;
		if (line[0] == '#' || !(tok = strtok_r(line, " \t\r\n", &save)))
			continue;
		type = malloc(strlen(tok) + sizeof CHARSET);
		if (!type)
			break;
		strcpy(type, tok);
		if (strncmp(type, "text/", 5) == 0)
			strcat(type, CHARSET);
		while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
			if (nmime == cap) {
				cap = cap ? cap * 2 : 512;
				m = realloc(mime, cap * sizeof *m);
				if (!m)
					break;
				mime = m;
			}
			if (!(mime[nmime].ext = strdup(tok)))
				break;
			mime[nmime++].type = type;
			used = 1;
		}
		if (!used)
			free(type);
	}
	fclose(f);
	if (nmime)
		qsort(mime, nmime, sizeof *mime, mime_cmp);
}

static const struct {
	const char *ext, *type;
} types[] = {
	{"html", "text/html; charset=utf-8"},
	{"htm", "text/html; charset=utf-8"},
	{"css", "text/css; charset=utf-8"},
	{"js", "text/javascript; charset=utf-8"},
	{"mjs", "text/javascript; charset=utf-8"},
	{"txt", "text/plain; charset=utf-8"},
	{"md", "text/markdown; charset=utf-8"},
	{"csv", "text/csv; charset=utf-8"},
	{"xml", "text/xml; charset=utf-8"},
	{"json", "application/json"},
	{"map", "application/json"},
	{"wasm", "application/wasm"},
	{"pdf", "application/pdf"},
	{"zip", "application/zip"},
	{"gz", "application/gzip"},
	{"tar", "application/x-tar"},
	{"png", "image/png"},
	{"jpg", "image/jpeg"},
	{"jpeg", "image/jpeg"},
	{"gif", "image/gif"},
	{"webp", "image/webp"},
	{"avif", "image/avif"},
	{"svg", "image/svg+xml"},
	{"ico", "image/vnd.microsoft.icon"},
	{"woff", "font/woff"},
	{"woff2", "font/woff2"},
	{"ttf", "font/ttf"},
	{"otf", "font/otf"},
	{"mp3", "audio/mpeg"},
	{"ogg", "audio/ogg"},
	{"wav", "audio/wav"},
	{"mp4", "video/mp4"},
	{"webm", "video/webm"},
};

static const char *type_of(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *dot = strrchr(slash ? slash + 1 : name, '.');
	mime_entry key, *hit;
	size_t i;

	if (!dot || !dot[1])
		return "application/octet-stream";
	pthread_once(&mime_once, mime_load);
	key.ext = (char *)(dot + 1);
	hit = nmime ? bsearch(&key, mime, nmime, sizeof *mime, mime_cmp) : NULL;
	if (hit)
		return hit->type;
	for (i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strcasecmp(dot + 1, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* ---- validators ------------------------------------------------------------ */

static void imf_date(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* An IMF-fixdate, or -1 (the obsolete formats count as invalid, and an
 * invalid date makes the condition ignored, RFC 9110 13.1.3). */
static time_t parse_date(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof tm);
	end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return (time_t)-1;
	return timegm(&tm);
}

/* If-None-Match: "*", or a list of entity-tags compared weakly (the
 * W/ prefix ignored). One pass over the value. */
static int none_match_hits(const char *v, const char *etag)
{
	size_t el = strlen(etag);
	const char *p = v, *q;

	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return 1;
		if (p[0] == 'W' && p[1] == '/')
			p += 2;
		if (*p != '"')
			return 0; /* malformed: no match */
		q = strchr(p + 1, '"');
		if (!q)
			return 0;
		if ((size_t)(q + 1 - p) == el && memcmp(p, etag, el) == 0)
			return 1;
		p = q + 1;
	}
	return 0;
}

enum { RANGE_NONE, RANGE_ONE, RANGE_UNSATISFIABLE };

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Digits at *pp into *out (no sign, bounded); returns 0 when none or
 * when the value overflows. */
static int parse_num(const char **pp, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*p))
		return 0;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*pp = p;
	*out = v;
	return 1;
}

/*
 * Range: "bytes=" and one range spec: first-last, first- or -suffix.
 * Anything else is ignored (RANGE_NONE: the whole file), including a
 * list of several ranges: serving them would need multipart/byteranges
 * and lets a client ask for the same bytes many times over. A single
 * pass over the value, however long (Starlette's quadratic parser was a
 * CVE).
 */
static int parse_range(const char *v, uint64_t size, uint64_t *first,
                       uint64_t *last)
{
	const char *p = skip_ws(v);
	uint64_t a = 0, b = 0;
	int have_a, have_b, specs = 0, sat = 0;

	if (strncasecmp(p, "bytes", 5) != 0)
		return RANGE_NONE;
	p = skip_ws(p + 5);
	if (*p++ != '=')
		return RANGE_NONE;
	for (;;) {
		p = skip_ws(p);
		if (*p == ',') {
			p++;
			continue; /* empty list element */
		}
		if (!*p)
			break;
		if (++specs > 1)
			return RANGE_NONE;
		have_a = parse_num(&p, &a);
		if (*p++ != '-')
			return RANGE_NONE;
		have_b = parse_num(&p, &b);
		p = skip_ws(p);
		if (*p && *p != ',')
			return RANGE_NONE;
		if (!have_a && !have_b)
			return RANGE_NONE;
		if (have_a && have_b && b < a)
			return RANGE_NONE; /* invalid: ignored */
		if (!have_a) { /* suffix */
			if (b == 0 || size == 0)
				continue;
			*first = b >= size ? 0 : size - b;
			*last = size - 1;
		} else {
			if (a >= size)
				continue;
			*first = a;
			*last = have_b && b < size ? b : size - 1;
		}
		sat = 1;
	}
	if (specs == 0)
		return RANGE_NONE;
	return sat ? RANGE_ONE : RANGE_UNSATISFIABLE;
}

/* ---- opening ---------------------------------------------------------------- */

/* Every segment a plain name; only the last may be empty (a directory
 * asked for with a trailing '/'). */
static int safe_rel(const char *rel)
{
	const char *p = rel;

	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if ((n == 0 && slash) || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.') ||
		    memchr(p, '\\', n))
			return 0;
		if (!slash)
			return 1;
		p = slash + 1;
	}
}

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* Component by component, refusing every symlink. */
static int open_walk(int dirfd, const char *rel)
{
	char buf[PATH_MAX], *p, *slash;
	int cur = dirfd, fd;

	if (strlen(rel) >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, rel);
	for (p = buf; (slash = strchr(p, '/')); p = slash + 1) {
		*slash = '\0';
		fd = openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cur != dirfd)
			close(cur);
		if (fd < 0)
			return -1;
		cur = fd;
	}
	fd = openat(cur, *p ? p : ".", OPEN_FLAGS | O_NOFOLLOW);
	if (cur != dirfd)
		close(cur);
	return fd;
}

static int no_openat2; /* ENOSYS seen once: stop trying (relaxed) */

static int open_beneath(int dirfd, const char *rel, int follow)
{
	if (!*rel)
		rel = ".";
	if (follow)
		return openat(dirfd, rel, OPEN_FLAGS);
#if defined(__linux__) && defined(SYS_openat2)
	if (!EVAPI__LOAD(&no_openat2)) {
		struct open_how how;
		long fd;
		memset(&how, 0, sizeof how);
		how.flags = OPEN_FLAGS;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
		fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
		if (fd >= 0 || errno != ENOSYS)
			return (int)fd;
		EVAPI__STORE(&no_openat2, 1);
	}
#endif
	return open_walk(dirfd, rel);
}

/* ---- deciding the reply (on a worker) ------------------------------------- */

typedef struct fctx {
	fcache *cache;      /* a mount's, or NULL */
	int dirfd;          /* mount directory, or AT_FDCWD */
	const char *rel;    /* relative to dirfd */
	int mount;          /* stay beneath dirfd unless follow */
	evapi_files_opts opts;
	int head, get;
	const char *inm, *ims, *range, *if_range; /* request headers */
	evapi__resp out;
} fctx;

static void set_error(evapi__resp *r, int status, const char *detail)
{
	char body[96];
	int n = snprintf(body, sizeof body, "{\"detail\":\"%s\"}", detail);

	r->status = status;
	r->content_type = "application/json";
	r->body = strdup(body);
	r->len = r->body ? (size_t)n : 0;
}

static int not_modified(const fctx *x, const struct stat *st,
                        const char *etag)
{
	time_t t;
	/* If-None-Match decides alone when present (RFC 9110 13.2.2). */
	if (x->inm)
		return none_match_hits(x->inm, etag);
	if (x->ims && (t = parse_date(x->ims)) != (time_t)-1)
		return st->st_mtime <= t;
	return 0;
}

/* If-Range: the range applies only to the representation the client
 * has, named by a strong ETag or by exactly our Last-Modified. */
static int if_range_holds(const char *v, const struct stat *st,
                          const char *etag)
{
	v = skip_ws(v);
	if (*v == '"')
		return strcmp(v, etag) == 0;
	if (v[0] == 'W' && v[1] == '/')
		return 0; /* weak tags never match a range */
	return parse_date(v) == st->st_mtime;
}

static void decide(fctx *x, int fd, const struct stat *st, const char *name);

/* Opens (or takes from the cache) and decides: on a worker. */
static void prepare(fctx *x)
{
	struct stat st;
	const char *name = x->rel;
	int fd = -1, is_index = 0;

	if (x->cache && (fd = fc_take(x->cache, x->rel, &st, &is_index)) >= 0) {
		decide(x, fd, &st, is_index ? "index.html" : name);
		return;
	}
	fd = x->mount ? open_beneath(x->dirfd, x->rel, x->opts.follow_symlinks)
	              : openat(x->dirfd, x->rel, OPEN_FLAGS);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) &&
	    x->opts.index) {
		int ifd = openat(fd, "index.html",
		                 OPEN_FLAGS |
		                         (x->opts.follow_symlinks ? 0 : O_NOFOLLOW));
		close(fd);
		fd = ifd;
		name = "index.html";
		is_index = 1;
		if (fd >= 0 && fstat(fd, &st) != 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		set_error(&x->out, 404, "Not Found");
		return;
	}
	if (x->cache)
		fc_put(x->cache, x->rel, fd, &st, is_index);
	decide(x, fd, &st, name);
}

/* The reply for open regular file `fd` (taken: closed, or kept in the
 * reply): validators, conditionals, range. No blocking call: a cache
 * hit runs it on the loop. */
static void decide(fctx *x, int fd, const struct stat *sp, const char *name)
{
	evapi__resp *r = &x->out;
	const struct stat st = *sp;
	char etag[48], date[40], buf[96];
	uint64_t first = 0, last = 0;
	int kind = RANGE_NONE;

	snprintf(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "\"",
	         (uint64_t)st.st_mtime, (uint64_t)st.st_size);
	imf_date(st.st_mtime, date, sizeof date);
	evapi__resp_add_header(r, "ETag", etag);
	evapi__resp_add_header(r, "Last-Modified", date);
	if (x->opts.max_age >= 0) {
		snprintf(buf, sizeof buf, "max-age=%d", x->opts.max_age);
		evapi__resp_add_header(r, "Cache-Control", buf);
	}
	if ((x->get || x->head) && not_modified(x, &st, etag)) {
		close(fd);
		r->status = 304;
		return;
	}
	evapi__resp_add_header(r, "Accept-Ranges", "bytes");
	if (x->get && x->range) {
		kind = parse_range(x->range, (uint64_t)st.st_size, &first, &last);
		if (kind != RANGE_NONE && x->if_range &&
		    !if_range_holds(x->if_range, &st, etag))
			kind = RANGE_NONE;
	}
	if (kind == RANGE_UNSATISFIABLE) {
		close(fd);
		snprintf(buf, sizeof buf, "bytes */%" PRIu64,
		         (uint64_t)st.st_size);
		evapi__resp_add_header(r, "Content-Range", buf);
		set_error(r, 416, "Range Not Satisfiable");
		return;
	}
	r->file = malloc(sizeof *r->file);
	if (!r->file) {
		close(fd);
		set_error(r, 500, "Internal Server Error");
		return;
	}
	r->file->fd = fd;
	if (x->opts.content_type)
		evapi__resp_add_header(r, "Content-Type", x->opts.content_type);
	else
		r->content_type = type_of(name);
	if (kind == RANGE_ONE) {
		r->status = 206;
		snprintf(buf, sizeof buf, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
		         first, last, (uint64_t)st.st_size);
		evapi__resp_add_header(r, "Content-Range", buf);
		r->file->off = (off_t)first;
		r->file->len = (off_t)(last - first + 1);
	} else {
		r->status = 200;
		r->file->off = 0;
		r->file->len = st.st_size;
	}
}

static void ctx_init(fctx *x, evapi_req *req, const evapi_files_opts *opts)
{
	memset(x, 0, sizeof *x);
	if (opts)
		x->opts = *opts;
	else
		evapi_files_opts_init(&x->opts);
	x->dirfd = AT_FDCWD;
	x->get = evapi_req_method(req) == EVAPI_GET;
	x->head = evapi_req_method(req) == EVAPI_HEAD;
	x->inm = evapi_req_header(req, "If-None-Match");
	x->ims = evapi_req_header(req, "If-Modified-Since");
	x->range = evapi_req_header(req, "Range");
	x->if_range = evapi_req_header(req, "If-Range");
}

/* Makes `out` the request's reply, as the reply functions do. */
static int deliver(evapi_req *req, evapi__resp *out)
{
	evapi__resp *r = &req->resp;
	int rc = evapi__reply_check(req);

	if (rc != 0) {
		evapi__resp_clear(out);
		return rc;
	}
	r->status = out->status;
	r->content_type = out->content_type;
	r->body = out->body;
	r->len = out->len;
	r->file = out->file;
	if (out->headers) {
		if (r->headers_tail)
			r->headers_tail->next = out->headers;
		else
			r->headers = out->headers;
		r->headers_tail = out->headers_tail;
	}
	memset(out, 0, sizeof *out);
	req->state = EVAPI__REQ_REPLIED;
	if (!req->on_worker)
		evapi__req_send(req);
	return 0;
}

void evapi__files_body_free(evapi__fbody *fb)
{
	if (!fb)
		return;
	close(fb->fd);
	free(fb);
}

/* ---- public calls ------------------------------------------------------------ */

void evapi_files_opts_init(evapi_files_opts *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof *opts);
	opts->max_age = -1;
}

static int run_pending(evapi_req *req, const fctx *x);

/* Inline: a file whose descriptor the mount has cached is answered on
 * the loop (fstat and dup of an open local file wait for no disk);
 * any other is opened on the pool, like an inline evapi_reply_file. */
static void mount_cb(evapi_req *req, void *arg)
{
	evapi__mount *m = arg;
	const char *rel = evapi_req_param(req, "path");
	struct stat st;
	int fd, is_index, rc;
	fctx x;

	if (!rel || !safe_rel(rel)) {
		evapi_reply_error(req, 404, "Not Found");
		return;
	}
	ctx_init(&x, req, &m->opts);
	x.cache = m->cache;
	x.dirfd = m->dirfd;
	x.rel = rel;
	x.mount = 1;
	if ((fd = fc_take(m->cache, rel, &st, &is_index)) >= 0) {
		decide(&x, fd, &st, is_index ? "index.html" : rel);
		deliver(req, &x.out);
		return;
	}
	if ((rc = run_pending(req, &x)) != 0) {
		if (rc == EVAPI_EBUSY)
			evapi_reply_add_header(req, "Retry-After", "1");
		evapi_reply_error(req, rc == EVAPI_EBUSY ? 503 : 500,
		                  rc == EVAPI_EBUSY ? "Server busy: the worker "
		                                      "pool queue is full"
		                                    : "Internal Server Error");
	}
}

int evapi__files_is_mount(const evapi__route *rt)
{
	return rt->cb == mount_cb;
}

int evapi_app_mount_dir(evapi_app *app, const char *prefix, const char *dir,
                        const evapi_files_opts *opts)
{
	evapi__mount *m;
	char *tmpl;
	size_t pl;
	int rc;

	if (!app || !prefix || !dir || prefix[0] != '/' || strchr(prefix, '{'))
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	pl = strlen(prefix);
	while (pl > 0 && prefix[pl - 1] == '/')
		pl--;
	m = calloc(1, sizeof *m);
	tmpl = malloc(pl + sizeof "/{path:path}");
	if (!m || !tmpl) {
		free(m);
		free(tmpl);
		return EVAPI_ENOMEM;
	}
	memcpy(tmpl, prefix, pl);
	strcpy(tmpl + pl, "/{path:path}");
	m->app = app;
	if (opts)
		m->opts = *opts;
	else
		evapi_files_opts_init(&m->opts);
	m->opts.content_type = NULL; /* per file, never per mount */
	m->cache = calloc(1, sizeof *m->cache);
	if (!m->cache) {
		free(m);
		free(tmpl);
		return EVAPI_ENOMEM;
	}
	pthread_mutex_init(&m->cache->mu, NULL);
	m->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->dirfd < 0) {
		fc_free(m->cache);
		free(m);
		free(tmpl);
		return EVAPI_ENOENT;
	}
	rc = evapi_app_route(app, EVAPI_GET, tmpl, EVAPI_INLINE, mount_cb, m);
	free(tmpl);
	if (rc != 0) {
		close(m->dirfd);
		fc_free(m->cache);
		free(m);
		return rc;
	}
	m->next = app->mounts;
	app->mounts = m;
	return 0;
}

void evapi__files_free(evapi_app *app)
{
	evapi__mount *m, *n;
	for (m = app->mounts; m; m = n) {
		n = m->next;
		close(m->dirfd);
		fc_free(m->cache);
		free(m);
	}
	app->mounts = NULL;
}

/* An inline evapi_reply_file: its own copies, as the request's strings
 * are not to be read by a run_in_pool work function. */
typedef struct pending_file {
	fctx x;
	char *path, *ctype, *hdr[4];
} pending_file;

static void pending_free(pending_file *p)
{
	int i;
	free(p->path);
	free(p->ctype);
	for (i = 0; i < 4; i++)
		free(p->hdr[i]);
	free(p);
}

static void pending_work(void *arg)
{
	pending_file *p = arg;
	prepare(&p->x);
}

static void pending_done(evapi_req *req, int status, void *arg)
{
	pending_file *p = arg;
	if (status == 0)
		deliver(req, &p->x.out);
	else
		evapi__resp_clear(&p->x.out);
	pending_free(p);
}

static char *dup_or_null(const char *s, int *fail)
{
	char *d = s ? strdup(s) : NULL;
	if (s && !d)
		*fail = 1;
	return d;
}

int evapi_reply_file(evapi_req *req, const char *path,
                     const evapi_files_opts *opts)
{
	fctx x;
	int rc;

	if (!req || !path || !*path)
		return EVAPI_EINVAL;
	if ((rc = evapi__reply_check(req)) != 0)
		return rc;
	if (req->on_worker) {
		ctx_init(&x, req, opts);
		x.rel = path;
		prepare(&x);
		return deliver(req, &x.out);
	}
	ctx_init(&x, req, opts);
	x.rel = path;
	return run_pending(req, &x);
}

/* Runs prepare(x) on the pool, then delivers from the loop; x's
 * strings are copied (a work function reads nothing of the request). */
static int run_pending(evapi_req *req, const fctx *x)
{
	pending_file *p = calloc(1, sizeof *p);
	int rc, fail = 0;

	if (!p)
		return EVAPI_ENOMEM;
	p->x = *x;
	p->x.rel = p->path = dup_or_null(x->rel, &fail);
	p->x.opts.content_type = p->ctype =
		dup_or_null(p->x.opts.content_type, &fail);
	p->x.inm = p->hdr[0] = dup_or_null(p->x.inm, &fail);
	p->x.ims = p->hdr[1] = dup_or_null(p->x.ims, &fail);
	p->x.range = p->hdr[2] = dup_or_null(p->x.range, &fail);
	p->x.if_range = p->hdr[3] = dup_or_null(p->x.if_range, &fail);
	if (fail) {
		pending_free(p);
		return EVAPI_ENOMEM;
	}
	rc = evapi_req_run_in_pool(req, pending_work, pending_done, p);
	if (rc != 0)
		pending_free(p);
	return rc;
}

/* ---- sending (loop) ---------------------------------------------------------- */

typedef struct evapi__xfer {
	evapi_app *app;
	evapi_req *req; /* held until the transfer ends or the client left */
	evapi__pending pend; /* on req's pending work while it holds it */
	struct evhttp_request *ev;
	struct evhttp_connection *evcon;
	int fd;
	int status;
	off_t len;
	int refs; /* the loop's side, and the guard's while it sends */
} xfer;

static void xfer_release(xfer *x)
{
	if (--x->refs > 0)
		return;
	close(x->fd);
	free(x);
}

/* The loop's side is over: the request finishes. */
static void loop_side_done(xfer *x, int status)
{
	evapi_req *req = x->req;

	evapi__req_pending_done(req, &x->pend);
	x->req = NULL;
	x->ev = NULL;
	x->evcon = NULL;
	evapi__req_finish(req, status);
	evapi__req_unref(req);
	xfer_release(x);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
	xfer *x = arg;
	struct evhttp_request *ev = x->ev;
	evapi_req *req = x->req;

	/* off the request's list: its walk must not cut it again */
	evapi__req_pending_done(req, &x->pend);
	/* As for streams: a request detached from its connection is ours
	 * to free; an attached one goes with the connection. */
	if (ev && evhttp_request_get_connection(ev) == NULL)
		evhttp_request_free(ev);
	EVAPI__ADD(&x->app->stats.gone, 1);
	evapi__log(x->app, EVAPI_LOG_DEBUG,
	           "file: client left during a %lld-byte body: id=%llu",
	           (long long)x->len, req->id);
	evapi__req_client_gone(req);
	loop_side_done(x, 499);
}

/* The request's pending-work walk (deadline, shutdown cut). */
static void xfer_cut(evapi__pending *p)
{
	xfer *x = EVAPI__CONTAINER_OF(p, xfer, pend);

	evapi__log(x->app, EVAPI_LOG_WARN,
	           "file: shutdown cut during a %lld-byte body: id=%llu",
	           (long long)x->len, x->req->id);
	evhttp_connection_set_closecb(x->evcon, NULL, NULL);
	/* frees x->ev with it: the client sees a short body; the guard
	 * lets go of the descriptor when the connection is freed */
	evhttp_connection_free(x->evcon);
	loop_side_done(x, 503);
}

/* The guard is done with the body (evapi__guard_send_file): all of it
 * went to the socket, and the reply ends; or the connection went first,
 * and conn_closed or xfer_cut ended the loop's side already. */
static void body_done(void *arg, int sent)
{
	xfer *x = arg;
	evapi_app *app = x->app;

	if (sent && x->req) {
		evapi__guard_replied(app,
		                     evhttp_connection_get_bufferevent(x->evcon));
		evhttp_connection_set_closecb(x->evcon, NULL, NULL);
		evapi__tasks_attach(x->req, x->ev);
		/* nothing left in evhttp's output: the reply is done here
		 * (the connection freed after a "Connection: close") */
		evhttp_send_reply_end(x->ev);
		loop_side_done(x, x->status);
	}
	app->bodies_writing--;
	xfer_release(x);
	evapi__reactor_maybe_exit(app);
}

/* A small body goes out as one whole reply, read with pread(2): for a
 * few KiB one sendmsg of headers and body is cheaper than a reply
 * started, a sendfile and a reply ended a loop turn later (bench/files,
 * bench/NOTES.md "Files"). 0 when sent; -1 (nothing sent, fb untouched)
 * when the read fell short or memory ran out: sendfile takes over. */
static int send_small(evapi_req *req, struct evhttp_request *ev,
                      struct evhttp_connection *evcon, evapi__fbody *fb,
                      int status)
{
	struct evbuffer *body = evbuffer_new();
	struct evbuffer_iovec v;
	ssize_t got;

	if (!body)
		return -1;
	if (evbuffer_reserve_space(body, (ev_ssize_t)fb->len, &v, 1) != 1 ||
	    v.iov_len < (size_t)fb->len ||
	    (got = pread(fb->fd, v.iov_base, (size_t)fb->len, fb->off)) !=
	        (ssize_t)fb->len) {
		evbuffer_free(body);
		return -1;
	}
	v.iov_len = (size_t)got;
	evbuffer_commit_space(body, &v, 1);
	evapi__files_body_free(fb);
	evapi__guard_replied(req->app, evhttp_connection_get_bufferevent(evcon));
	evapi__tasks_attach(req, ev);
	evhttp_send_reply(ev, status, evapi__reason(status), body);
	evbuffer_free(body);
	evapi__req_finish(req, status);
	return 0;
}

void evapi__files_send(evapi_req *req)
{
	evapi_app *app = req->app;
	evapi__fbody *fb = req->resp.file;
	struct evhttp_request *ev;
	struct evhttp_connection *evcon;
	char cl[32];
	int status = req->resp.status;
	xfer *x;

	req->resp.file = NULL;
	ev = evapi__req_stream_begin(req, &req->resp);
	evcon = evhttp_request_get_connection(ev);
	snprintf(cl, sizeof cl, "%lld", (long long)fb->len);
	evhttp_add_header(evhttp_request_get_output_headers(ev),
	                  "Content-Length", cl);
	if (!req->head_only && fb->len > 0 && fb->len <= SMALL_FILE && evcon &&
	    send_small(req, ev, evcon, fb, status) == 0)
		return;
	x = req->head_only || fb->len == 0 || !evcon ? NULL
	                                              : calloc(1, sizeof *x);
	if (x) {
		x->app = app;
		x->req = req;
		x->ev = ev;
		x->evcon = evcon;
		x->fd = fb->fd;
		x->len = fb->len;
		x->status = status;
		x->refs = 2; /* the loop's side and the guard's */
	}
	if (!x || evapi__guard_send_file(app,
	                                 evhttp_connection_get_bufferevent(evcon),
	                                 fb->fd, fb->off, fb->len, body_done,
	                                 x) != 0) {
		/* No body to send (HEAD, empty file), or no memory or no
		 * guarded connection for one: answer now (a 500 if the body
		 * was wanted). */
		int want = !req->head_only && fb->len > 0;
		free(x);
		evapi__files_body_free(fb);
		if (evcon)
			evapi__guard_replied(app,
			                     evhttp_connection_get_bufferevent(evcon));
		if (want) {
			evhttp_remove_header(evhttp_request_get_output_headers(ev),
			                     "Content-Length");
			status = 500;
		}
		evapi__tasks_attach(req, ev);
		evhttp_send_reply(ev, status, evapi__reason(status), NULL);
		evapi__req_finish(req, status);
		return;
	}
	app->bodies_writing++;
	/* the transfer's reference, until it ends */
	evapi__req_pending_add(req, &x->pend, xfer_cut, "file");
	x->pend.is_reply = 1;
	free(fb);
	evhttp_connection_set_closecb(evcon, conn_closed, x);
	/* the headers; the guard sends the body behind them */
	evhttp_send_reply_start(ev, status, evapi__reason(status));
}
