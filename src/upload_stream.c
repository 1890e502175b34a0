/*
 * upload_stream.c: upload bodies (multipart/form-data, or a raw body on
 * a `raw` route) streamed to temporary files as they arrive, so an
 * upload costs bounded memory whatever its size.
 *
 * Threads: the request guard feeds the decoded body on the loop
 * (evapi__ustream_feed): the multipart parse, the limits, the text
 * fields, and copying file bytes off the guard's input into chunks this
 * file owns all happen there; no evbuffer ever reaches a worker. Full
 * chunks go on the stream's write queue (under `mu`) and one pool job
 * at a time writes them with pwrite at the offsets the loop gave them;
 * its completion (loop) counts them written. While more than HIGH bytes
 * wait, the guard stops reading the socket (the client is held back by
 * TCP, not by our memory), and reads again below LOW.
 *
 * Writers take a token (`writing`, under `mu`), so one writes at a time
 * and a file's descriptor is opened by whoever first writes to it. The
 * commit (upload.c, on a worker, after the whole body arrived) takes the
 * token too, writes what is left (a small upload never needs a write
 * job of its own), then links each file under its stored name. A writer
 * waiting for the token waits only for one that is running.
 *
 * Temporary files: O_TMPFILE in the upload directory, opened on a
 * worker: nameless, so the kernel removes one when its descriptor
 * closes, even if the process dies. Where the filesystem refuses
 * O_TMPFILE, a named ".evapi-upload" file (a sanitised name never
 * starts with '.'; a random prefix when taken), unlinked the same way.
 * Until the commit links them they go when the stream is freed: after
 * the request, after a refused body, or when the client left.
 *
 * Lifetime: a reference count touched on the loop only. The guard's
 * connection holds one while the body arrives and until the reactor
 * takes the stream for its request, the request one until it is freed,
 * a write job in flight one until its completion.
 */
#define _GNU_SOURCE /* memmem, O_TMPFILE */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define CHUNK (256 * 1024)   /* bytes of one write */
#define HIGH (1024 * 1024)   /* queued bytes that stop the reading */
#define LOW (512 * 1024)     /* ... and that start it again */
#define WINCAP (64 * 1024)   /* parse window */
#define PAD_MAX 256          /* transport padding after a delimiter */
#define MAX_PART_HEADERS 2048 /* as multipart.c */

enum { S_PRE, S_AFTER, S_HDRS, S_DATA, S_END };

typedef struct uchunk {
	struct uchunk *next;
	int file;
	off_t off;
	size_t len;
	char data[];
} uchunk;

typedef struct ufile {
	const char *field, *filename, *ctype; /* in the stream's arena */
	size_t size;
	int fd;            /* the writer's: under the token */
	char tmpname[STORED_MAX + 1]; /* named fallback; "" with O_TMPFILE */
} ufile;

struct evapi__ustream {
	evapi_app *app;
	int refs;
	const char *dir;
	size_t max_file, max_total, max_text;
	int max_files, max_fields, raw;
	/* the parse (loop) */
	int st;
	char delim[80];
	size_t dlen;
	char *win;
	size_t wlen;
	int cur;            /* file of the part being read; -1 text */
	evapi__sbuf text;   /* the text part being read */
	size_t text_total, total;
	int nparts, nfiles, nform;
	ufile *files;
	evapi__kv *form;
	evapi__arena arena;
	char arena_buf[512];
	uchunk *fill;       /* the chunk being filled */
	size_t backlog;     /* queued and not yet written */
	int job_busy, fail_status;
	const char *fail_detail;
	char msg[160];
	evapi__job job;
	void (*kick)(void *);
	void *kick_arg;
	/* the writers' side, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uchunk *q, **qtail;
	size_t written;     /* since the loop last looked */
	int writing;        /* the token */
	int err;            /* first write error (errno) */
	int dfd;
};

/* ---- the loop's side: the parse and the limits ---------------------------- */

static int failed(evapi__ustream *us, int status, const char *detail)
{
	if (!us->fail_status) {
		us->fail_status = status;
		us->fail_detail = detail;
	}
	return -1;
}

static int failedf(evapi__ustream *us, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int failedf(evapi__ustream *us, int status, const char *fmt, ...)
{
	va_list ap;
	if (us->fail_status)
		return -1;
	va_start(ap, fmt);
	vsnprintf(us->msg, sizeof us->msg, fmt, ap);
	va_end(ap);
	return failed(us, status, us->msg);
}

static void write_job(evapi__job *job);
static void write_done(evapi__job *job, int status);

/* Queues the chunk being filled; a write job takes the queue once a
 * chunk's worth waits (the commit writes the rest). */
static int flush_fill(evapi__ustream *us, int start_job)
{
	uchunk *c = us->fill;
	int rc;

	if (c) {
		us->fill = NULL;
		pthread_mutex_lock(&us->mu);
		*us->qtail = c;
		us->qtail = &c->next;
		pthread_mutex_unlock(&us->mu);
	}
	if (!start_job || us->job_busy || us->backlog < CHUNK)
		return 0;
	us->job.work = write_job;
	us->job.done = write_done;
	if ((rc = evapi__pool_submit(us->app->pool, &us->job)) != 0) {
		EVAPI__ADD(&us->app->stats.rejected, 1);
		return failed(us, 503, "Server busy: the worker pool queue is "
		                       "full");
	}
	us->job_busy = 1;
	us->refs++;
	return 0;
}

static int file_bytes(evapi__ustream *us, const char *p, size_t n)
{
	ufile *f = &us->files[us->cur];

	if (f->size + n > us->max_file)
		return failedf(us, 413, "File too large: '%s' is over %zu bytes",
		               f->field, us->max_file);
	if (us->total + n > us->max_total)
		return failedf(us, 413, "Upload too large: the files are over "
		                        "%zu bytes together", us->max_total);
	while (n > 0) {
		uchunk *c = us->fill;
		size_t k;
		if (!c) {
			c = malloc(sizeof *c + CHUNK);
			if (!c)
				return failed(us, 500, "Out of memory");
			c->next = NULL;
			c->file = us->cur;
			c->off = (off_t)f->size;
			c->len = 0;
			us->fill = c;
		}
		k = CHUNK - c->len < n ? CHUNK - c->len : n;
		memcpy(c->data + c->len, p, k);
		c->len += k;
		f->size += k;
		us->total += k;
		us->backlog += k;
		p += k;
		n -= k;
		if (c->len == CHUNK && flush_fill(us, 1) != 0)
			return -1;
	}
	return 0;
}

static int part_bytes(evapi__ustream *us, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (us->cur >= 0)
		return file_bytes(us, p, n);
	if (us->text_total + n > us->max_text)
		return failed(us, 413, "Request body too large");
	us->text_total += n;
	return evapi__sbuf_add(&us->text, p, n) ? failed(us, 500, "Out of "
	                                                          "memory")
	                                        : 0;
}

static int part_begin(evapi__ustream *us, const evapi__part *pt)
{
	int max = us->max_files + us->max_fields;

	if (++us->nparts > max)
		return failedf(us, 400, "Too many parts. Maximum number of parts "
		                        "is %d.", max);
	if (pt->filename) {
		ufile *f;
		if (us->nfiles == us->max_files)
			return failedf(us, 400, "Too many files. Maximum number "
			                        "of files is %d.", us->max_files);
		f = &us->files[us->nfiles];
		memset(f, 0, sizeof *f);
		f->field = pt->name;
		f->filename = pt->filename;
		f->ctype = pt->content_type;
		f->fd = -1;
		us->cur = us->nfiles++;
		return 0;
	}
	if (us->nform == us->max_fields)
		return failedf(us, 400, "Too many fields. Maximum number of "
		                        "fields is %d.", us->max_fields);
	us->form[us->nform].name = pt->name;
	us->cur = -1;
	us->text.len = 0;
	return 0;
}

static int part_end(evapi__ustream *us)
{
	char *v;

	if (us->cur >= 0) /* its last bytes wait in `fill` */
		return flush_fill(us, 0);
	if (us->text.len && memchr(us->text.p, '\0', us->text.len))
		return failed(us, 400, "Invalid multipart body: NUL byte in a "
		                       "text field");
	v = evapi__arena_strndup(&us->arena, us->text.p ? us->text.p : "",
	                         us->text.len);
	if (!v)
		return failed(us, 500, "Out of memory");
	us->form[us->nform++].value = v;
	return 0;
}

static int bad(evapi__ustream *us, const char *why)
{
	return failedf(us, 400, "Invalid multipart body: %s", why);
}

/* Consumes what it can of the window; a rest shorter than a delimiter
 * (or a header section not complete yet) stays for the next bytes. */
static int process(evapi__ustream *us)
{
	size_t pos = 0;

	for (;;) {
		char *w = us->win + pos;
		size_t n = us->wlen - pos, keep;
		const char *hit;
		evapi__part pt;
		const char *why;

		switch (us->st) {
		case S_PRE:
		case S_DATA:
			hit = memmem(w, n, us->delim, us->dlen);
			if (hit) {
				if (us->st == S_DATA &&
				    (part_bytes(us, w, (size_t)(hit - w)) ||
				     part_end(us)))
					return -1;
				pos += (size_t)(hit - w) + us->dlen;
				us->st = S_AFTER;
				continue;
			}
			keep = n < us->dlen - 1 ? n : us->dlen - 1;
			if (us->st == S_DATA && part_bytes(us, w, n - keep))
				return -1;
			pos += n - keep;
			goto out;
		case S_AFTER:
			if (n < 2)
				goto out;
			if (w[0] == '-' && w[1] == '-') {
				us->st = S_END;
				continue;
			}
			keep = 0;
			while (keep < n && (w[keep] == ' ' || w[keep] == '\t'))
				keep++;
			if (keep > PAD_MAX)
				return bad(us, "bad multipart delimiter line");
			if (n - keep < 2)
				goto out;
			if (w[keep] != '\r' || w[keep + 1] != '\n')
				return bad(us, "bad multipart delimiter line");
			pos += keep + 2;
			us->st = S_HDRS;
			continue;
		case S_HDRS:
			if (n < 2)
				goto out;
			if (w[0] == '\r' && w[1] == '\n') {
				hit = w; /* no headers: refused below */
			} else {
				hit = memmem(w, n < MAX_PART_HEADERS + 4
				                    ? n : MAX_PART_HEADERS + 4,
				             "\r\n\r\n", 4);
				if (!hit && n >= MAX_PART_HEADERS + 4)
					return bad(us, "part headers too long or "
					               "unterminated");
				if (!hit)
					goto out;
			}
			memset(&pt, 0, sizeof pt);
			if (evapi__multipart_headers(w, hit, &us->arena, &pt,
			                             &why) < 0)
				return bad(us, why);
			if (part_begin(us, &pt))
				return -1;
			pos += (size_t)(hit - w) + (hit == w ? 2 : 4);
			us->st = S_DATA;
			continue;
		default: /* S_END: the epilogue is ignored */
			pos = us->wlen;
			goto out;
		}
	}
out:
	memmove(us->win, us->win + pos, us->wlen - pos);
	us->wlen -= pos;
	return 0;
}

int evapi__ustream_feed(evapi__ustream *us, const char *data, size_t len,
                        int *status, const char **detail)
{
	int rc = 0;

	if (us->fail_status)
		rc = -1;
	else if (us->raw)
		rc = file_bytes(us, data, len);
	while (rc == 0 && !us->raw && len > 0) {
		size_t n = WINCAP - us->wlen < len ? WINCAP - us->wlen : len;
		memcpy(us->win + us->wlen, data, n);
		us->wlen += n;
		data += n;
		len -= n;
		rc = process(us);
	}
	if (rc) {
		*status = us->fail_status;
		*detail = us->fail_detail;
	}
	return rc;
}

int evapi__ustream_finish(evapi__ustream *us, int *status,
                          const char **detail)
{
	int rc = us->fail_status ? -1 : 0;

	if (!rc && !us->raw && us->st != S_END)
		rc = bad(us, us->st == S_PRE
		                 ? "no multipart boundary in the body"
		                 : "multipart body ends without its closing "
		                   "boundary");
	if (!rc)
		rc = flush_fill(us, 0);
	if (rc) {
		*status = us->fail_status;
		*detail = us->fail_detail;
	}
	return rc;
}

int evapi__ustream_backlogged(const evapi__ustream *us)
{
	return us->backlog > HIGH;
}

int evapi__ustream_failed(const evapi__ustream *us, int *status,
                          const char **detail)
{
	*status = us->fail_status;
	*detail = us->fail_detail;
	return us->fail_status != 0;
}

void evapi__ustream_on_kick(evapi__ustream *us, void (*kick)(void *),
                            void *arg)
{
	us->kick = kick;
	us->kick_arg = arg;
}

/* ---- the writers (workers) --------------------------------------------------- */

static void token_take(evapi__ustream *us)
{
	pthread_mutex_lock(&us->mu);
	while (us->writing)
		pthread_cond_wait(&us->cv, &us->mu);
	us->writing = 1;
	pthread_mutex_unlock(&us->mu);
}

static void token_give(evapi__ustream *us, size_t written, int err)
{
	pthread_mutex_lock(&us->mu);
	us->writing = 0;
	us->written += written;
	if (err && !us->err)
		us->err = err;
	pthread_cond_broadcast(&us->cv);
	pthread_mutex_unlock(&us->mu);
}

static int try_open(int dfd, const char *name, void *arg)
{
	(void)arg;
	return openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	                                 O_CLOEXEC, 0600);
}

/* The file's temporary descriptor (with the token held). */
static int temp_fd(evapi__ustream *us, ufile *f)
{
	if (f->fd >= 0)
		return 0;
	if (us->dfd < 0 &&
	    (us->dfd = open(us->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return errno;
	f->fd = openat(us->dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
	if (f->fd >= 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return errno;
	f->fd = evapi__upload_place(us->dfd, ".evapi-upload", f->tmpname,
	                            sizeof f->tmpname, NULL, try_open, NULL);
	if (f->fd < 0) {
		f->tmpname[0] = '\0';
		return errno ? errno : EEXIST;
	}
	return 0;
}

static int pwrite_all(int fd, const char *p, size_t n, off_t off)
{
	while (n) {
		ssize_t k = pwrite(fd, p, n, off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? errno : EIO;
		p += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

/* Writes (and frees) every queued chunk, with the token held. */
static int write_queue(evapi__ustream *us, size_t *written)
{
	uchunk *c, *next;
	int err = 0;

	pthread_mutex_lock(&us->mu);
	c = us->q;
	us->q = NULL;
	us->qtail = &us->q;
	err = us->err; /* after a failure, only drop what is left */
	pthread_mutex_unlock(&us->mu);
	for (; c; c = next) {
		ufile *f = &us->files[c->file];
		next = c->next;
		if (!err && !(err = temp_fd(us, f)))
			err = pwrite_all(f->fd, c->data, c->len, c->off);
		*written += c->len;
		free(c);
	}
	return err;
}

static void write_job(evapi__job *job)
{
	evapi__ustream *us = EVAPI__CONTAINER_OF(job, evapi__ustream, job);
	size_t written = 0;
	int err;

	token_take(us);
	err = write_queue(us, &written);
	token_give(us, written, err);
}

static void write_done(evapi__job *job, int status)
{
	evapi__ustream *us = EVAPI__CONTAINER_OF(job, evapi__ustream, job);
	size_t written;
	int err;

	pthread_mutex_lock(&us->mu);
	written = us->written;
	us->written = 0;
	err = us->err;
	pthread_mutex_unlock(&us->mu);
	us->job_busy = 0;
	us->backlog -= written < us->backlog ? written : us->backlog;
	if (status != 0 && !us->fail_status)
		failed(us, 503, "Server shutting down");
	if (err && !us->fail_status) {
		evapi__log(us->app, EVAPI_LOG_ERROR,
		           "upload: cannot store the upload in %s: %s", us->dir,
		           strerror(err));
		failed(us, err == ENOSPC ? 507 : 500,
		       "Could not store the upload");
	}
	if (!us->fail_status && us->backlog >= CHUNK)
		flush_fill(us, 1); /* the next ones waited meanwhile */
	if (us->kick && (us->fail_status || us->backlog <= LOW))
		us->kick(us->kick_arg);
	evapi__ustream_unref(us);
}

int evapi__ustream_commit(evapi__ustream *us)
{
	size_t written = 0;
	int i, err;

	token_take(us);
	err = write_queue(us, &written);
	for (i = 0; i < us->nfiles && !err; i++) /* empty files too */
		err = temp_fd(us, &us->files[i]);
	token_give(us, written, err);
	return err;
}

struct link_arg {
	evapi__ustream *us;
	ufile *f;
};

static int try_link(int dfd, const char *name, void *arg)
{
	struct link_arg *a = arg;
	char proc[40];

	if (a->f->tmpname[0])
		return linkat(a->us->dfd, a->f->tmpname, dfd, name, 0);
	/* a nameless file gets its first name through /proc (linkat with
	 * AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH) */
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", a->f->fd);
	return linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW);
}

int evapi__ustream_place(evapi__ustream *us, int i, int dfd,
                         const char *safe, char *stored, size_t cap)
{
	struct link_arg a = {us, &us->files[i]};

	if (evapi__upload_place(dfd, safe, stored, cap, NULL, try_link, &a) < 0)
		return -1;
	if (a.f->tmpname[0]) {
		unlinkat(us->dfd, a.f->tmpname, 0);
		a.f->tmpname[0] = '\0';
	}
	return 0;
}

/* ---- accessors (after the body; any thread) ------------------------------- */

int evapi__ustream_nfiles(const evapi__ustream *us)
{
	return us->nfiles;
}

void evapi__ustream_file(const evapi__ustream *us, int i, const char **field,
                         const char **filename, const char **ctype,
                         size_t *size)
{
	const ufile *f = &us->files[i];
	*field = f->field;
	*filename = f->filename;
	*ctype = f->ctype;
	*size = f->size;
}

int evapi__ustream_nform(const evapi__ustream *us)
{
	return us->nform;
}

const evapi__kv *evapi__ustream_form(const evapi__ustream *us)
{
	return us->form;
}

/* ---- life (loop) ------------------------------------------------------------- */

evapi__ustream *evapi__ustream_new(evapi_app *app, const evapi_upload *up,
                                   const char *boundary)
{
	evapi__ustream *us = calloc(1, sizeof *us);

	if (!us)
		return NULL;
	us->app = app;
	us->refs = 1;
	us->dir = up->dir;
	us->max_file = up->max_file_bytes ? up->max_file_bytes : 1 << 20;
	us->max_total = up->max_total_bytes ? up->max_total_bytes : 8 << 20;
	us->max_files = up->max_files > 0 ? up->max_files : 10;
	us->max_fields = up->max_fields > 0 ? up->max_fields : 50;
	us->max_text = app->cfg.max_body_bytes;
	us->dfd = -1;
	us->qtail = &us->q;
	evapi__arena_init(&us->arena, us->arena_buf, sizeof us->arena_buf);
	pthread_mutex_init(&us->mu, NULL);
	pthread_cond_init(&us->cv, NULL);
	us->files = calloc((size_t)us->max_files, sizeof *us->files);
	us->form = calloc((size_t)us->max_fields, sizeof *us->form);
	if (!us->files || !us->form)
		goto err;
	if (!boundary) { /* a raw body: one file, named by the route */
		us->raw = 1;
		us->files[0].field = "file";
		us->files[0].fd = -1;
		us->nfiles = 1;
		us->cur = 0;
		return us;
	}
	/* the body is read as if it began with CRLF, so the first
	 * delimiter is found like every other */
	us->dlen = (size_t)snprintf(us->delim, sizeof us->delim, "\r\n--%s",
	                            boundary);
	if (!(us->win = malloc(WINCAP)))
		goto err;
	memcpy(us->win, "\r\n", 2);
	us->wlen = 2;
	return us;
err:
	evapi__ustream_unref(us);
	return NULL;
}

size_t evapi__ustream_body_limit(const evapi__ustream *us)
{
	/* the files, plus the text fields, part headers and delimiters,
	 * which are bounded as any body is */
	return (us->raw ? us->max_file : us->max_total) + us->max_text;
}

void evapi__ustream_unref(evapi__ustream *us)
{
	uchunk *c, *next;
	int i;

	if (!us || --us->refs > 0)
		return;
	for (i = 0; i < us->nfiles; i++) {
		ufile *f = &us->files[i];
		if (f->fd >= 0)
			close(f->fd);
		if (f->tmpname[0])
			unlinkat(us->dfd, f->tmpname, 0);
	}
	if (us->dfd >= 0)
		close(us->dfd);
	free(us->fill);
	for (c = us->q; c; c = next) {
		next = c->next;
		free(c);
	}
	free(us->win);
	free(us->text.p);
	free(us->files);
	free(us->form);
	evapi__arena_release(&us->arena);
	pthread_mutex_destroy(&us->mu);
	pthread_cond_destroy(&us->cv);
	free(us);
}
