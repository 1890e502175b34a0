/*
 * blockcheck.c: libevapi_blockcheck.so, a test-and-debug tool preloaded
 * into an evapi program (LD_PRELOAD) to catch, before production, a call
 * that blocks the loop thread: while it runs no other connection is
 * served. Not part of libevapi.
 *
 * It interposes the usual blocking functions (sleep, usleep, nanosleep,
 * clock_nanosleep; read, recv, connect and accept on a descriptor without
 * O_NONBLOCK; fsync, fdatasync; getaddrinfo, system; sqlite3_step,
 * PQexec, curl_easy_perform) and, when the calling thread is an evapi
 * loop (evapi/debug.h, found with dlsym: a program without evapi is never
 * reported), writes one report naming the function, the route or
 * callback running (evapi_debug_current_callback) and a backtrace, then
 * calls the real function. Each function is reported once per callback
 * name, so a busy route does not flood the log.
 *
 * Environment: EVAPI_BLOCKCHECK=warn (the default) reports and goes on,
 * abort reports and aborts (a test run stops at the first blocking
 * call), off does nothing. EVAPI_BLOCKCHECK_LOG=path appends the reports
 * to that file instead of stderr.
 *
 * Threads: any; the checks read only the calling thread's state, the
 * once-per-name table is under a mutex, and a report is one write(2)
 * plus backtrace_symbols_fd (neither interposed).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum { MODE_WARN, MODE_ABORT, MODE_OFF };

static int mode = MODE_WARN;
static int log_fd = 2;
static int (*is_loop)(void);
static const char *(*current)(void);
static __thread int busy; /* in a check: the calls it makes are not */

static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	const char *fn, *cb;
} seen[256];
static int nseen;

__attribute__((constructor)) static void blockcheck_init(void)
{
	const char *m = getenv("EVAPI_BLOCKCHECK");
	const char *path = getenv("EVAPI_BLOCKCHECK_LOG");
	void *warm[2];

	if (m && strcmp(m, "abort") == 0)
		mode = MODE_ABORT;
	else if (m && strcmp(m, "off") == 0)
		mode = MODE_OFF;
	if (path && *path) {
		int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		              0644);
		if (fd >= 0)
			log_fd = fd;
	}
	/* The first backtrace() loads libgcc_s: do it now, not mid-check. */
	backtrace(warm, 2);
}

/* Found lazily: the preloaded library starts before the program's own
 * symbols are relocated. */
static void resolve(void)
{
	if (!is_loop) {
		*(void **)&current = dlsym(RTLD_DEFAULT,
		                           "evapi_debug_current_callback");
		*(void **)&is_loop = dlsym(RTLD_DEFAULT,
		                           "evapi_debug_is_loop_thread");
	}
}

static void *real(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* 1 the first time `fn` is seen in callback `cb` */
static int first_time(const char *fn, const char *cb)
{
	int i, first = 1;

	pthread_mutex_lock(&seen_mu);
	for (i = 0; i < nseen; i++)
		if (seen[i].fn == fn && seen[i].cb == cb) {
			first = 0;
			break;
		}
	if (first && nseen < (int)(sizeof seen / sizeof seen[0])) {
		seen[nseen].fn = fn;
		seen[nseen].cb = cb;
		nseen++;
	}
	pthread_mutex_unlock(&seen_mu);
	return first;
}

/* Reports `fn` (with `what`, e.g. "on a blocking descriptor") when the
 * calling thread is an evapi loop. */
static void check(const char *fn, const char *what)
{
	const char *cb;
	void *frames[48];
	char line[512];
	int n, len;

	if (mode == MODE_OFF || busy)
		return;
	busy = 1;
	resolve();
	if (!is_loop || !is_loop()) {
		busy = 0;
		return;
	}
	cb = current ? current() : NULL;
	if (mode == MODE_WARN && !first_time(fn, cb)) {
		busy = 0;
		return;
	}
	len = snprintf(line, sizeof line,
	               "evapi blockcheck: %s()%s%s on the loop thread in %s: "
	               "every connection waits; use the pool lane or a "
	               "non-blocking call\n",
	               fn, what ? " " : "", what ? what : "",
	               cb ? cb : "evapi's loop (no user callback)");
	if (len > (int)sizeof line - 1)
		len = (int)sizeof line - 1;
	if (write(log_fd, line, (size_t)len) < 0)
		(void)0; /* nowhere else to say it */
	n = backtrace(frames, (int)(sizeof frames / sizeof frames[0]));
	backtrace_symbols_fd(frames + 1, n - 1, log_fd);
	if (write(log_fd, "\n", 1) < 0)
		(void)0;
	busy = 0;
	if (mode == MODE_ABORT)
		abort();
}

/* Descriptors that block: a socket, pipe or device without O_NONBLOCK
 * (regular files always "block" briefly: reading them is left to the
 * disk-latency tools). */
static int blocking_fd(int fd)
{
	struct stat st;
	int fl;

	if (busy)
		return 0;
	busy = 1;
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK) && fstat(fd, &st) == 0 &&
	    !S_ISREG(st.st_mode)) {
		busy = 0;
		return 1;
	}
	busy = 0;
	return 0;
}

/* ---- the interposed functions -------------------------------------------- */

#define REAL(type, name, args)                                              \
	static type(*next) args;                                            \
	if (!next)                                                          \
		*(void **)&next = real(#name)

EXPORT unsigned int sleep(unsigned int s)
{
	REAL(unsigned int, sleep, (unsigned int));
	check("sleep", NULL);
	return next(s);
}

EXPORT int usleep(useconds_t us)
{
	REAL(int, usleep, (useconds_t));
	check("usleep", NULL);
	return next(us);
}

EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	REAL(int, nanosleep, (const struct timespec *, struct timespec *));
	check("nanosleep", NULL);
	return next(req, rem);
}

EXPORT int clock_nanosleep(clockid_t c, int flags, const struct timespec *req,
                           struct timespec *rem)
{
	REAL(int, clock_nanosleep, (clockid_t, int, const struct timespec *,
	                            struct timespec *));
	check("clock_nanosleep", NULL);
	return next(c, flags, req, rem);
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	REAL(ssize_t, read, (int, void *, size_t));
	if (blocking_fd(fd))
		check("read", "on a blocking descriptor");
	return next(fd, buf, len);
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	REAL(ssize_t, recv, (int, void *, size_t, int));
	if (!(flags & MSG_DONTWAIT) && blocking_fd(fd))
		check("recv", "on a blocking descriptor");
	return next(fd, buf, len, flags);
}

EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	REAL(int, connect, (int, const struct sockaddr *, socklen_t));
	if (blocking_fd(fd))
		check("connect", "on a blocking descriptor");
	return next(fd, sa, len);
}

EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	REAL(int, accept, (int, struct sockaddr *, socklen_t *));
	if (blocking_fd(fd))
		check("accept", "on a blocking descriptor");
	return next(fd, sa, len);
}

EXPORT int fsync(int fd)
{
	REAL(int, fsync, (int));
	check("fsync", NULL);
	return next(fd);
}

EXPORT int fdatasync(int fd)
{
	REAL(int, fdatasync, (int));
	check("fdatasync", NULL);
	return next(fd);
}

EXPORT int getaddrinfo(const char *node, const char *service,
                       const struct addrinfo *hints, struct addrinfo **res)
{
	REAL(int, getaddrinfo, (const char *, const char *,
	                        const struct addrinfo *, struct addrinfo **));
	check("getaddrinfo", NULL);
	return next(node, service, hints, res);
}

EXPORT int system(const char *cmd)
{
	REAL(int, system, (const char *));
	check("system", NULL);
	return next(cmd);
}

/* Libraries the program may or may not link: declared here (their
 * handles are opaque pointers), forwarded to the real one when it is
 * there (it is, if the program called it). */
EXPORT int sqlite3_step(void *stmt);
EXPORT void *PQexec(void *conn, const char *query);
EXPORT int curl_easy_perform(void *easy);

EXPORT int sqlite3_step(void *stmt)
{
	REAL(int, sqlite3_step, (void *));
	check("sqlite3_step", NULL);
	return next ? next(stmt) : 21; /* SQLITE_MISUSE */
}

EXPORT void *PQexec(void *conn, const char *query)
{
	REAL(void *, PQexec, (void *, const char *));
	check("PQexec", NULL);
	return next ? next(conn, query) : NULL;
}

EXPORT int curl_easy_perform(void *easy)
{
	REAL(int, curl_easy_perform, (void *));
	check("curl_easy_perform", NULL);
	return next ? next(easy) : 2; /* CURLE_FAILED_INIT */
}
