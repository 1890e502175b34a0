/*
 * test_blockcheck.c: libevapi_blockcheck.so (src/blockcheck.c) and the
 * hooks it asks (evapi/debug.h). The library is preloaded into child
 * processes: this binary re-run as a child with routes that block in
 * every way the library knows (and some that do not block the loop),
 * the demo, and the integration tests test_app, test_client and
 * test_stream, which must report nothing but their deliberate
 * loop-blocking routes. Skipped in sanitizer builds, whose runtime must
 * come first in the process.
 */
#include "harness.h"

#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define SO TOP_BUILDDIR "/.libs/libevapi_blockcheck.so"

static char self[1024];

/* The checker's logs live in a directory of this run's own (mkdtemp),
 * made on first use and removed at the end, so runs side by side never
 * read each other's reports. */
static char logdir[48];

static const char *log_path(char *buf, size_t cap, const char *name)
{
	if (!logdir[0]) {
		snprintf(logdir, sizeof logdir, "/tmp/evapi-blockcheck-XXXXXX");
		if (!mkdtemp(logdir))
			TH_FAIL_AT("mkdtemp %s failed", logdir);
	}
	snprintf(buf, cap, "%s/%s", logdir, name);
	return buf;
}

/* ---- the child: routes that block (or not) ------------------------------ */

static int server_port;

static void ok(evapi_req *req)
{
	evapi_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void r_usleep(evapi_req *req, void *arg) { usleep(1000); ok(req); }
static void r_nanosleep(evapi_req *req, void *arg) { th_sleep_ms(1); ok(req); }

static void r_read_pipe(evapi_req *req, void *arg)
{
	int p[2];
	char c;
	if (pipe(p) == 0) {
		if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1)
			th_failed++;
		close(p[0]);
		close(p[1]);
	}
	ok(req);
}

static void r_read_nonblock(evapi_req *req, void *arg)
{
	int p[2];
	char c;
	if (pipe(p) == 0) {
		fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
		if (read(p[0], &c, 1) != -1)
			th_failed++;
		close(p[0]);
		close(p[1]);
	}
	ok(req);
}

static void r_read_file(evapi_req *req, void *arg)
{
	char buf[16];
	int fd = open(self, O_RDONLY);
	if (fd >= 0) {
		if (read(fd, buf, sizeof buf) <= 0)
			th_failed++;
		close(fd);
	}
	ok(req);
}

static void r_recv(evapi_req *req, void *arg)
{
	int sv[2];
	char c;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
		if (send(sv[1], "x", 1, 0) != 1 || recv(sv[0], &c, 1, 0) != 1)
			th_failed++;
		close(sv[0]);
		close(sv[1]);
	}
	ok(req);
}

static void r_connect(evapi_req *req, void *arg)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)server_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0) {
		/* the listen backlog takes it at once */
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
			th_failed++;
		close(fd);
	}
	ok(req);
}

static void r_getaddrinfo(evapi_req *req, void *arg)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo("127.0.0.1", "80", &hints, &res) == 0)
		freeaddrinfo(res);
	ok(req);
}

static void r_fsync(evapi_req *req, void *arg)
{
	FILE *f = tmpfile();
	if (f) {
		fsync(fileno(f));
		fclose(f);
	}
	ok(req);
}

static void r_system(evapi_req *req, void *arg)
{
	if (system("true") != 0)
		th_failed++;
	ok(req);
}

static void r_pool_sleep(evapi_req *req, void *arg)
{
	usleep(1000); /* a worker may block */
	ok(req);
}

static int mw_sleep(evapi_req *req, void *arg)
{
	if (strcmp(evapi_req_path(req), "/mw-sleep") == 0)
		usleep(1000);
	return 0;
}

static const char *const child_paths[] = {
	"/usleep", "/nanosleep", "/read-pipe", "/read-nonblock", "/read-file",
	"/recv", "/connect", "/getaddrinfo", "/fsync", "/system", "/pool-sleep",
	"/mw-sleep", "/usleep"};

static int child_main(const char *only)
{
	static const struct {
		const char *path;
		evapi_handler_cb cb;
		evapi_lane lane;
	} routes[] = {
		{"/usleep", r_usleep, EVAPI_INLINE},
		{"/nanosleep", r_nanosleep, EVAPI_INLINE},
		{"/read-pipe", r_read_pipe, EVAPI_INLINE},
		{"/read-nonblock", r_read_nonblock, EVAPI_INLINE},
		{"/read-file", r_read_file, EVAPI_INLINE},
		{"/recv", r_recv, EVAPI_INLINE},
		{"/connect", r_connect, EVAPI_INLINE},
		{"/getaddrinfo", r_getaddrinfo, EVAPI_INLINE},
		{"/fsync", r_fsync, EVAPI_INLINE},
		{"/system", r_system, EVAPI_INLINE},
		{"/pool-sleep", r_pool_sleep, EVAPI_POOL},
	};
	evapi_config cfg;
	th_server s;
	th_resp r;
	size_t i;

	th_config(&cfg);
	s.app = evapi_app_new(&cfg);
	for (i = 0; i < sizeof routes / sizeof routes[0]; i++)
		evapi_app_route(s.app, EVAPI_GET, routes[i].path, routes[i].lane,
		                routes[i].cb, NULL);
	evapi_app_middleware(s.app, mw_sleep, NULL, NULL);
	th_server_start(&s, s.app);
	server_port = s.port;
	for (i = 0; i < sizeof child_paths / sizeof child_paths[0]; i++)
		if (!only || strcmp(only, child_paths[i]) == 0)
			th_http(s.port, "GET", child_paths[i], NULL, &r);
	th_server_stop(&s);
	return th_failed ? 1 : 0;
}

/* ---- the parent ---------------------------------------------------------- */

/* Starts argv with the library preloaded and the environment pairs
 * `env` (name, value, ..., NULL), its output thrown away. */
static pid_t spawn_to(char *const argv[], const char *const *env,
                      const char *out)
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open(out ? out : "/dev/null",
		                O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		setenv("LD_PRELOAD", SO, 1);
		for (; env[0]; env += 2)
			setenv(env[0], env[1], 1);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static pid_t spawn(char *const argv[], const char *const *env)
{
	return spawn_to(argv, env, NULL);
}

/* Runs argv under the checker in `mode`, reporting to `log` (removed
 * first). Returns the wait status. */
static int run_checked_to(char *const argv[], const char *mode,
                          const char *log, const char *out)
{
	const char *env[] = {"EVAPI_BLOCKCHECK", mode, "EVAPI_BLOCKCHECK_LOG",
	                     log, NULL};
	pid_t pid;
	int st = -1;

	unlink(log);
	if ((pid = spawn_to(argv, env, out)) > 0)
		waitpid(pid, &st, 0);
	return st;
}

static int run_checked(char *const argv[], const char *mode, const char *log)
{
	return run_checked_to(argv, mode, log, NULL);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s;
	long n;

	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	s = calloc(1, (size_t)n + 1);
	if (s && fread(s, 1, (size_t)n, f) != (size_t)n)
		s[0] = '\0';
	fclose(f);
	return s;
}

/* Report lines ("evapi blockcheck: ..."), and whether each names one of
 * `allowed` (NULL-ended); the others are counted in *stray. */
static int reports(const char *log, const char *const *allowed, int *stray)
{
	const char *p = log;
	int n = 0;

	*stray = 0;
	while ((p = strstr(p, "evapi blockcheck: "))) {
		const char *eol = strchr(p, '\n');
		int ok = 0;
		size_t i;
		for (i = 0; allowed && allowed[i]; i++) {
			const char *hit = strstr(p, allowed[i]);
			if (hit && (!eol || hit < eol))
				ok = 1;
		}
		if (!ok) {
			fprintf(stderr, "  unexpected: %.*s\n",
			        (int)(eol ? eol - p : 200), p);
			(*stray)++;
		}
		n++;
		p += 18;
	}
	return n;
}

static int skip_if_sanitized(void)
{
	if (SANITIZED)
		TH_SKIP("sanitizer build: a preloaded library cannot come "
		        "before the sanitizer runtime");
	else if (access(SO, R_OK) != 0)
		TH_FAIL_AT("%s not built", SO);
	return SANITIZED || access(SO, R_OK) != 0;
}

static void blockcheck_each_kind_reported_with_its_route(void)
{
	static const char *const want[] = {
		"usleep() on the loop thread in GET /usleep:",
		"nanosleep() on the loop thread in GET /nanosleep:",
		"read() on a blocking descriptor on the loop thread in GET "
		"/read-pipe:",
		"recv() on a blocking descriptor on the loop thread in GET /recv:",
		"connect() on a blocking descriptor on the loop thread in GET "
		"/connect:",
		"getaddrinfo() on the loop thread in GET /getaddrinfo:",
		"fsync() on the loop thread in GET /fsync:",
		"system() on the loop thread in GET /system:",
		"usleep() on the loop thread in middleware 0:",
		NULL};
	char *argv[] = {self, "--blockcheck-child", NULL};
	char log[sizeof logdir + 16];
	char *text;
	int st, stray, i;

	if (skip_if_sanitized())
		return;
	log_path(log, sizeof log, "kinds.log");
	st = run_checked(argv, "warn", log);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	text = slurp(log);
	for (i = 0; want[i]; i++)
		CHECK_CONTAINS(text, want[i]);
	/* nothing else: not the non-blocking read, the regular file, the
	 * pool worker, the second /usleep, nor evapi's own loop */
	CHECK_INT(reports(text, want, &stray), ==, 9);
	CHECK_INT(stray, ==, 0);
	/* each with a backtrace down to the loop */
	CHECK_CONTAINS(text, "libevapi_blockcheck.so(");
	CHECK_CONTAINS(text, "(evapi_app_run+");
	free(text);
	unlink(log);
}

static void blockcheck_abort_mode_stops_at_the_first(void)
{
	char *argv[] = {self, "--blockcheck-child", "/usleep", NULL};
	char log[sizeof logdir + 16];
	char *text;
	int st;

	if (skip_if_sanitized())
		return;
	log_path(log, sizeof log, "abort.log");
	st = run_checked(argv, "abort", log);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	text = slurp(log);
	CHECK_CONTAINS(text, "usleep() on the loop thread in GET /usleep:");
	free(text);
	/* off: nothing at all */
	argv[2] = NULL;
	st = run_checked(argv, "off", log);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	text = slurp(log);
	CHECK_STR(text, "");
	free(text);
	unlink(log);
}

static void blockcheck_demo_slow_caught_first_request(void)
{
	static const char *const slow[] = {"GET /slow:", NULL};
	char log[sizeof logdir + 16];
	char port[16], demo[1024];
	char *argv[] = {demo, "--delay-ms", "20", "--quiet", NULL};
	const char *env[] = {"EVAPI_BLOCKCHECK_LOG", log, "EVAPI_PORT", port,
	                     NULL};
	th_resp r;
	pid_t pid;
	char *text;
	int p = th_free_port(), i, stray;

	if (skip_if_sanitized())
		return;
	log_path(log, sizeof log, "demo.log");
	snprintf(port, sizeof port, "%d", p);
	snprintf(demo, sizeof demo, "%s/examples/demo", TOP_BUILDDIR);
	unlink(log);
	pid = spawn(argv, env);
	for (i = 0; i < 100 && th_http(p, "GET", "/", NULL, &r) != 200; i++)
		th_sleep_ms(100);
	CHECK_INT(r.status, ==, 200);
	CHECK_INT(th_http(p, "GET", "/async-sleep", NULL, &r), ==, 200);
	CHECK_INT(th_http(p, "GET", "/sync-slow", NULL, &r), ==, 200);
	text = slurp(log);
	CHECK_STR(text, ""); /* nothing blocked yet */
	free(text);
	CHECK_INT(th_http(p, "GET", "/slow", NULL, &r), ==, 200);
	text = slurp(log);
	CHECK_CONTAINS(text, "sleep() on the loop thread in GET /slow:");
	CHECK_INT(reports(text, slow, &stray), ==, 1);
	CHECK_INT(stray, ==, 0);
	free(text);
	CHECK(WIFEXITED(th_stop_child(pid, 15.0)));
	unlink(log);
}

/* Prints the FAIL lines (and the check lines after them) of a suite's
 * output file. */
static void show_failures(const char *suite, const char *out)
{
	FILE *f = fopen(out, "r");
	char line[512];
	int after = 0;

	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "FAIL ", 5) == 0)
			after = 4;
		if (after > 0) {
			printf("    %s under the checker: %s", suite, line);
			after--;
		}
	}
	fclose(f);
}

/* The integration tests under the checker: only their deliberate
 * loop-blocking routes are reported, nothing of evapi's own. */
static void blockcheck_integration_tests_clean(void)
{
	static const char *const deliberate[] = {
		"in GET /block:", "in GET /block-then-sleep:", NULL};
	static const char *const suites[] = {"test_app", "test_client",
	                                     "test_stream"};
	char log[sizeof logdir + 16], out[sizeof logdir + 16];
	size_t i;

	if (skip_if_sanitized())
		return;
	log_path(log, sizeof log, "suite.log");
	log_path(out, sizeof out, "suite.out");
	for (i = 0; i < sizeof suites / sizeof suites[0]; i++) {
		char bin[1024], *text;
		char *argv[] = {bin, NULL};
		int st, stray;
		snprintf(bin, sizeof bin, "%s/tests/%s", TOP_BUILDDIR, suites[i]);
		st = run_checked_to(argv, "warn", log, out);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			/* Say which of its tests failed; then run the suite
			 * once more: its timing bounds were written for a
			 * process without an interposer reporting (with a
			 * backtrace) on a loaded machine. A suite that fails
			 * twice fails here. */
			show_failures(suites[i], out);
			st = run_checked_to(argv, "warn", log, out);
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			show_failures(suites[i], out);
			TH_FAIL_AT("%s under the checker: status %d", suites[i],
			           st);
		}
		text = slurp(log);
		reports(text, deliberate, &stray);
		if (stray)
			TH_FAIL_AT("%s: %d unexpected report(s)", suites[i], stray);
		if (strcmp(suites[i], "test_app") == 0)
			CHECK_CONTAINS(text, "on the loop thread in GET /block:");
		free(text);
	}
	unlink(log);
	unlink(out);
}

static void blockcheck_hooks_answer(void)
{
	/* not a loop, no callback: what the library sees off the loop */
	CHECK_INT(evapi_debug_is_loop_thread(), ==, 0);
	CHECK(evapi_debug_current_callback() == NULL);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"blockcheck.hooks_answer", blockcheck_hooks_answer},
		{"blockcheck.each_kind_reported_with_its_route",
		 blockcheck_each_kind_reported_with_its_route},
		{"blockcheck.abort_mode_stops_at_the_first",
		 blockcheck_abort_mode_stops_at_the_first},
		{"blockcheck.demo_slow_caught_first_request",
		 blockcheck_demo_slow_caught_first_request},
		{"blockcheck.integration_tests_clean",
		 blockcheck_integration_tests_clean},
		{NULL, NULL}};
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	int rc;

	self[n > 0 ? n : 0] = '\0';
	if (argc >= 2 && strcmp(argv[1], "--blockcheck-child") == 0)
		return child_main(argc >= 3 ? argv[2] : NULL);
	rc = th_main(argc, argv, tests);
	if (logdir[0])
		rmdir(logdir); /* each test unlinked its log */
	return rc;
}
