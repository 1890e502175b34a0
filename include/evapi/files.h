/*
 * evapi/files.h: serving files (Starlette's StaticFiles and FileResponse).
 *
 * A directory mounted under a URL prefix answers GET and HEAD for the
 * files below it; a handler can answer with one file. Both send
 * `Content-Type` (from the extension; text types with
 * `; charset=utf-8`), `Last-Modified`, an `ETag` in nginx's format
 * ("<mtime hex>-<size hex>"), `Accept-Ranges: bytes`, and honour
 * If-None-Match / If-Modified-Since (304) and a single byte range
 * (206, or 416 with a `Content-Range` naming the size; If-Range; a
 * request for several ranges gets the whole file). Files are opened and
 * stat'ed on the pool; the body goes from the file to the socket with
 * sendfile(2), without passing through a user-space copy, and none of
 * it is held by evapi for a client (only the socket's kernel buffers).
 */
#ifndef EVAPI_FILES_H
#define EVAPI_FILES_H

#include <evapi/common.h>
#include <evapi/app.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Options for a mount or a file reply. Fill one with
 * evapi_files_opts_init() and change what you need; the calls copy it.
 * ABI: later versions add fields at the end only, and
 * evapi_files_opts_init() gives them their defaults, so always call it
 * first. Defaults in brackets.
 */
typedef struct evapi_files_opts {
	int index;           /* [0] mounts: a directory answers with its
	                        index.html; otherwise 404 (never a listing) */
	int follow_symlinks; /* [0] mounts: a symlink may lead out of the
	                        directory; by default resolution stays
	                        beneath it (openat2 RESOLVE_BENEATH, or
	                        no symlinks at all where that is missing) */
	int max_age;         /* [-1] >= 0: Cache-Control: max-age=N */
	const char *content_type; /* [NULL] evapi_reply_file: overrides the
	                             type from the extension (copied) */
} evapi_files_opts;

/** Fills `opts` with the defaults above. Thread-safe: yes. */
EVAPI_EXPORT void evapi_files_opts_init(evapi_files_opts *opts);

/**
 * Serves the files under directory `dir` at `prefix` ("/static": then
 * GET /static/css/a.css reads <dir>/css/a.css). The directory is opened
 * now and kept open until evapi_app_free. Paths are percent-decoded per
 * segment; a segment that is "." or "..", holds a '\' or an encoded
 * '/' answers 404, as does anything that is not a regular file (or a
 * directory with index.html when opts->index), and a symlink leading out
 * of `dir` unless opts->follow_symlinks. Other methods get 405. The
 * route is inline: a file whose descriptor the mount keeps (the last 64
 * served, each trusted for a second; one written in place or deleted is
 * seen at once) is answered on the loop, any other is opened on the
 * pool (503 when its queue is full). `prefix` and `dir` are copied; `opts`
 * may be NULL (defaults). Returns 0, EVAPI_EINVAL (bad prefix),
 * EVAPI_ENOENT (`dir` is not a readable directory), EVAPI_ENOMEM or
 * EVAPI_ESTATE (app running).
 */
EVAPI_EXPORT int evapi_app_mount_dir(evapi_app *app, const char *prefix,
                                     const char *dir,
                                     const evapi_files_opts *opts);

/**
 * Replies with the file at `path` (absolute, or relative to the working
 * directory; the handler chooses it, so it is trusted: symlinks are
 * followed), with the same headers, conditional requests and ranges as
 * a mount. A missing or unreadable file answers 404. From a pool handler
 * the file is opened at once on the worker; from an inline handler the
 * open runs on the pool and the reply follows from the loop (like
 * evapi_req_run_in_pool: EVAPI_EBUSY when the queue is full, and the
 * request counts as pending meanwhile). `path` and `opts` are copied;
 * `opts` may be NULL. Returns 0 or a code as the other reply functions.
 * Thread-safe: as the other reply functions.
 */
EVAPI_EXPORT int evapi_reply_file(evapi_req *req, const char *path,
                                  const evapi_files_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
