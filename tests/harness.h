/*
 * harness.h: a tiny test runner. Assertions print both operands; each
 * test is a function; main() runs them (or the ones named on the command
 * line) and prints "PASS name" / "FAIL name" lines and a closing
 * "N passed, N failed". Integration helpers run a real app on
 * 127.0.0.1:0 in a thread and drive it with libcurl.
 */
#ifndef EVAPI_TEST_HARNESS_H
#define EVAPI_TEST_HARNESS_H

#include <evapi.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/types.h>
#include <string.h>

extern int th_failed; /* failures in the running test */
/* Set by TH_SKIP: the running test is reported "SKIP name: reason". */
extern char th_skip_reason[256];
#define TH_SKIP(...) snprintf(th_skip_reason, sizeof th_skip_reason, __VA_ARGS__)

#define TH_FAIL_AT(...)                                                      \
	do {                                                                 \
		fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);            \
		fprintf(stderr, __VA_ARGS__);                                \
		fprintf(stderr, "\n");                                       \
		th_failed++;                                                 \
	} while (0)

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			TH_FAIL_AT("CHECK(%s) failed", #cond);               \
	} while (0)

#define CHECK_INT(a, op, b)                                                  \
	do {                                                                 \
		long long a_ = (long long)(a), b_ = (long long)(b);          \
		if (!(a_ op b_))                                             \
			TH_FAIL_AT("%s %s %s: %lld vs %lld", #a, #op, #b, a_, \
			           b_);                                      \
	} while (0)

#define CHECK_DBL(a, op, b)                                                  \
	do {                                                                 \
		double a_ = (a), b_ = (b);                                   \
		if (!(a_ op b_))                                             \
			TH_FAIL_AT("%s %s %s: %.3f vs %.3f", #a, #op, #b, a_, \
			           b_);                                      \
	} while (0)

#define CHECK_STR(a, b)                                                      \
	do {                                                                 \
		const char *a_ = (a), *b_ = (b);                             \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                       \
			TH_FAIL_AT("%s == %s: \"%s\" vs \"%s\"", #a, #b,      \
			           a_ ? a_ : "(null)", b_ ? b_ : "(null)");  \
	} while (0)

#define CHECK_CONTAINS(hay, needle)                                          \
	do {                                                                 \
		const char *h_ = (hay), *n_ = (needle);                      \
		if (!h_ || !strstr(h_, n_))                                  \
			TH_FAIL_AT("%s contains \"%s\": got \"%s\"", #hay,   \
			           n_, h_ ? h_ : "(null)");                  \
	} while (0)

typedef struct th_test {
	const char *name;
	void (*fn)(void);
} th_test;

/* Runs the table; returns the process exit code. */
int th_main(int argc, char **argv, const th_test *tests);

/* ---- integration helpers ---------------------------------------------- */

/* Config for tests: port 0, no signals, quiet, logs captured. */
void th_config(evapi_config *cfg);

/* Everything logged by apps made from th_config, since th_log_clear. */
const char *th_log(void);
void th_log_clear(void);

typedef struct th_server {
	evapi_app *app;
	pthread_t thread;
	int port;
	int run_rc;
} th_server;

/* Listens and runs `app` on a new thread. */
void th_server_start(th_server *s, evapi_app *app);
/* Stops gracefully, joins, checks nothing is left in flight, frees. */
void th_server_stop(th_server *s);

typedef struct th_resp {
	long status;
	char body[8192];
	char headers[4096];
	double secs;    /* from start of the batch to completion */
	int curl_error; /* CURLcode */
} th_resp;

/* One request. `body` may be NULL. Returns the status (0 on failure). */
long th_http(int port, const char *method, const char *path,
             const char *body, th_resp *out);

/* One request with a body of `len` bytes (may contain NUL) sent with
 * Content-Type `ctype` (NULL: no Content-Type header at all). */
long th_http_body(int port, const char *method, const char *path,
                  const char *ctype, const void *body, size_t len,
                  th_resp *out);

/* n requests at once (each path[i] with GET), all started together. */
void th_http_parallel(int port, int n, const char *const *paths,
                      th_resp *out);

/* Sends a raw request, waits `wait_ms`, closes the socket without reading. */
void th_send_and_close(int port, const char *raw, int wait_ms);

/* Connects, sends `raw`, and returns a connected socket (or -1). */
int th_connect_send(int port, const char *raw);
/* Reads from fd into buf (NUL-terminated, at most cap-1 bytes kept; the
 * rest is counted) until EOF or `secs` pass. Returns all bytes read. */
long th_read_all(int fd, char *buf, size_t cap, double secs);

/* Connects, sends `raw`, and reads into buf (as th_read_all) until the
 * server closes or `secs` pass. Returns the status of the first response
 * (0: none); *closed (may be NULL) is 1 when the server closed in time. */
int th_exchange(int port, const char *raw, char *buf, size_t cap,
                double secs, int *closed);
/* How many responses buf holds (status lines "HTTP/1.x NNN "). */
int th_count_responses(const char *buf);

/* A loopback port free right now (bound to port 0, then released). */
int th_free_port(void);

/* In a forked child before exec: closes every descriptor from 3 up, so
 * a peer process (redis-server, postgres, nginx) holds none of the test
 * app's sockets. One it held would keep an old connection's file alive
 * inside the app's epoll set after the app closed it, reporting events
 * for a later socket that reuses the number. */
void th_child_close_fds(void);
/* As th_connect_send, with SO_RCVBUF set to `rcvbuf` before connecting
 * (a slow reader with a small window). */
int th_connect_rcvbuf(int port, const char *raw, int rcvbuf);
/* Reads up to `want` bytes (at most cap-1, NUL-terminated) or until EOF
 * or `secs` pass. Returns the bytes read. */
long th_read_some(int fd, char *buf, size_t cap, long want, double secs);

/* A trace handlers append to from any thread; the test reads a copy
 * (valid until the next th_trace call). */
void th_trace_add(const char *s);
const char *th_trace(void);
void th_trace_clear(void);
/* Waits until the trace contains `want`; returns 1, or 0 after `secs`. */
int th_trace_wait(const char *want, double secs);
/* Waits until nothing is in flight (at most `secs`). */
void th_wait_idle(evapi_app *app, double secs);

double th_now(void);
void th_sleep_ms(int ms);

/* A GET of `path` on a thread of its own: start, then join for the
 * status (the reply is in a->r). */
typedef struct th_async {
	pthread_t thread;
	int port;
	const char *path;
	th_resp r;
	long status;
} th_async;
void th_http_start(th_async *a, int port, const char *path);
long th_http_join(th_async *a);

/* Distinct values of "pid" in the JSON answers to GET `path` over n new
 * connections (at most cap kept); failed requests count into *errors
 * (may be NULL). */
int th_distinct_pids(int port, const char *path, int n, int *pids, int cap,
                     int *errors);
/* SIGTERM to child `pid`, then waits up to `secs` for it (a failure, and
 * SIGKILL, after that). Returns its wait status. */
int th_stop_child(pid_t pid, double secs);
/* Forks a child running evapi_app_serve with `workers` processes on
 * `port` (2 pool threads each, quiet) and returns its pid once GET
 * `probe` answers 200. The child dies with the test. */
pid_t th_start_prefork(int port, int workers, evapi_app_setup_cb setup,
                       const char *probe);
/* Runs the shell command `cmd` (popen) and keeps the first cap-1 bytes of
 * its output in out. Returns its exit status, or -1. */
int th_run_capture(const char *cmd, char *out, size_t cap);
/* nginx (on PATH) with `dir`/nginx.conf, prefix `dir`, in the foreground
 * as a child that dies with the test; returns its pid once GET / on
 * `port` answers 200 (a failure after 5 s). Stop it with th_nginx_stop. */
pid_t th_nginx_start(const char *dir, int port);
void th_nginx_stop(pid_t pid);
/* rm -rf `dir` */
void th_remove_dir(const char *dir);

#endif
