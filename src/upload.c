/*
 * upload.c: storing uploaded files: sanitised names
 * (evapi_upload_safe_name) and the writes, beside multipart.c, which
 * parses them. An upload route's registered callback (schema.c) is one
 * of the two trampolines below: they store the request's files, then
 * call the route's handler.
 *
 * Threads: the files are written by store_files on a pool worker: in the
 * pool job itself for a pool route (evapi__upload_pool), through
 * evapi_req_run_in_pool for an inline one (evapi__upload_inline). Never
 * on the loop. The request's `parsed` (filled by schema.c on the loop
 * before the handler exists) is read here and the stored paths written
 * into it, before the handler reads them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ---- uploads: names and storing (pool) --------------------------------- */

int evapi_upload_safe_name(const char *name, char *out, size_t len)
{
	const char *p, *base = name;
	size_t o = 0;

	if (!name || !out || len < sizeof "upload")
		return EVAPI_EINVAL;
	for (p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f)
			return EVAPI_EINVAL;
		if (c == '/' || c == '\\')
			base = p + 1;
	}
	while (*base == '.')
		base++; /* no ".", "..", or hidden files */
	for (p = base; *p && o + 1 < len && o < SAFE_NAME_MAX; p++) {
		char c = *p;
		out[o++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		                           (c >= '0' && c <= '9') || c == '.' ||
		                           c == '_' || c == '-'
		                   ? c : '_';
	}
	out[o] = '\0';
	if (o == 0) {
		memcpy(out, "upload", sizeof "upload");
		o = sizeof "upload" - 1;
	}
	return (int)o;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A clash prefix: random, so no client can predict the names a clash
 * will try and take them first. Without getrandom (an old kernel) the
 * pid and a counter still keep two tries apart. */
static void clash_prefix(char *out)
{
	static unsigned long long counter;
	unsigned char r[CLASH_HEX / 2];
	size_t i;

	if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
		unsigned long long v =
			((unsigned long long)getpid() << 24) ^
			__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) ^
			(unsigned long long)evapi__now_us() << 8;
		for (i = 0; i < sizeof r; i++)
			r[i] = (unsigned char)(v >> (8 * i));
	}
	for (i = 0; i < sizeof r; i++)
		sprintf(out + 2 * i, "%02x", r[i]);
}

int evapi__upload_place(int dfd, const char *safe, char *stored, size_t cap,
                        int *attempts,
                        int (*try)(int dfd, const char *name, void *arg),
                        void *arg)
{
	char prefix[CLASH_HEX + 1];
	int rc, k;

	snprintf(stored, cap, "%s", safe);
	for (k = 0; k <= CLASH_TRIES; k++) {
		if (k) {
			clash_prefix(prefix);
			snprintf(stored, cap, "%s-%s", prefix, safe);
		}
		if (attempts)
			(*attempts)++;
		rc = try(dfd, stored, arg);
		if (rc >= 0 || errno != EEXIST)
			return rc;
	}
	errno = EEXIST;
	return -1;
}

static int try_create(int dfd, const char *name, void *arg)
{
	(void)arg;
	return openat(dfd, name,
	              O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
}

int evapi__upload_open(int dfd, const char *safe, char *stored, size_t cap,
                       int *attempts)
{
	return evapi__upload_place(dfd, safe, stored, cap, attempts, try_create,
	                           NULL);
}

/* Writes every file of p into its directory (worker thread). Names are
 * single path components (no '/'), opened relative to the directory with
 * O_EXCL|O_NOFOLLOW, so nothing is overwritten and nothing lands outside
 * it; a clash costs a bounded number of tries (evapi__upload_open).
 * Returns 0 or an errno. */
static int store_files(evapi__parsed *p)
{
	int dfd, i, err = 0;

	if (p->nfiles == 0)
		return 0;
	dfd = open(p->upload_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno;
	/* A streamed body: its files wait in temporary files, most of
	 * them written already; the rest is written now, then each is
	 * linked under its name. */
	if (p->ustream && (err = evapi__ustream_commit(p->ustream)) != 0) {
		close(dfd);
		return err;
	}
	for (i = 0; i < p->nfiles && !err; i++) {
		evapi_file *f = &p->files[i];
		char *stored = (char *)f->stored;
		int fd = -1;
		if (p->ustream) {
			if (evapi__ustream_place(p->ustream, i, dfd, p->safe[i],
			                         stored, STORED_MAX + 1) != 0) {
				err = errno ? errno : EEXIST;
				break;
			}
		} else if ((fd = evapi__upload_open(dfd, p->safe[i], stored,
		                                    STORED_MAX + 1, NULL)) < 0) {
			err = errno ? errno : EEXIST;
			break;
		}
		snprintf((char *)f->path, strlen(p->upload_dir) + STORED_MAX + 2,
		         "%s/%s", p->upload_dir, stored);
		if (fd < 0)
			continue;
		if (write_all(fd, p->file_data[i], f->size) != 0)
			err = errno ? errno : EIO;
		if (close(fd) != 0 && !err)
			err = errno;
		if (err)
			unlinkat(dfd, stored, 0);
	}
	if (err) /* all or nothing */
		while (--i >= 0)
			unlinkat(dfd, p->files[i].stored, 0);
	close(dfd);
	return err;
}

static void store_failed(evapi_req *req, int err)
{
	evapi__log(req->app, EVAPI_LOG_ERROR,
	           "%s: cannot store the upload in %s: %s id=%llu",
	           req->route->label, req->parsed->upload_dir, strerror(err),
	           req->id);
	evapi_reply_error(req, err == ENOSPC ? 507 : 500,
	                  "Could not store the upload");
}

/* Pool lane: the worker stores the files, then runs the handler. */
void evapi__upload_pool(evapi_req *req, void *arg)
{
	const struct evapi__decl *d = arg;
	int err = store_files(req->parsed);
	if (err)
		store_failed(req, err);
	else
		d->d.cb(req, d->d.arg);
}

struct store_job {
	evapi__parsed *parsed;
	const struct evapi__decl *d;
	int err;
};

static void store_work(void *arg)
{
	struct store_job *j = arg;
	j->err = store_files(j->parsed);
}

static void store_done(evapi_req *req, int status, void *arg)
{
	struct store_job *j = arg;
	if (status == 0) {
		if (j->err)
			store_failed(req, j->err);
		else
			j->d->d.cb(req, j->d->d.arg);
	}
	free(j);
}

/* Inline lane: the files are stored on the pool, and the handler runs
 * on the loop once they are. */
void evapi__upload_inline(evapi_req *req, void *arg)
{
	const struct evapi__decl *d = arg;
	struct store_job *j;
	int rc;

	if (req->parsed->nfiles == 0) {
		d->d.cb(req, d->d.arg);
		return;
	}
	j = calloc(1, sizeof *j);
	if (!j) {
		evapi_reply_error(req, 500, "Out of memory");
		return;
	}
	j->parsed = req->parsed;
	j->d = d;
	rc = evapi_req_run_in_pool(req, store_work, store_done, j);
	if (rc != 0) {
		free(j);
		if (rc == EVAPI_EBUSY)
			evapi_reply_add_header(req, "Retry-After", "1");
		evapi_reply_error(req, rc == EVAPI_EBUSY ? 503 : 500,
		                  rc == EVAPI_EBUSY ? "Server busy: the worker "
		                                      "pool queue is full"
		                                    : "Cannot store the upload");
	}
}
