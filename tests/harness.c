/*
 * harness.c: the runner and the integration helpers of harness.h.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int th_failed;
char th_skip_reason[256];

int th_main(int argc, char **argv, const th_test *tests)
{
	int passed = 0, failed = 0, i, j;

	curl_global_init(CURL_GLOBAL_ALL);
	for (i = 0; tests[i].name; i++) {
		int run = argc <= 1;
		for (j = 1; j < argc; j++)
			if (strcmp(argv[j], tests[i].name) == 0)
				run = 1;
		if (!run)
			continue;
		th_failed = 0;
		th_skip_reason[0] = '\0';
		th_log_clear();
		tests[i].fn();
		if (th_skip_reason[0] && !th_failed) {
			printf("SKIP %s: %s\n", tests[i].name, th_skip_reason);
		} else if (th_failed) {
			printf("FAIL %s\n", tests[i].name);
			failed++;
		} else {
			printf("PASS %s\n", tests[i].name);
			passed++;
		}
		fflush(stdout);
	}
	curl_global_cleanup();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

/* ---- log capture --------------------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 16];
static size_t log_len;
static char log_copy[1 << 16];

static void capture(evapi_log_level lvl, const char *msg, void *arg)
{
	size_t n = strlen(msg);
	pthread_mutex_lock(&log_mu);
	if (log_len + n + 2 < sizeof log_buf) {
		memcpy(log_buf + log_len, msg, n);
		log_len += n;
		log_buf[log_len++] = '\n';
		log_buf[log_len] = '\0';
	}
	pthread_mutex_unlock(&log_mu);
	if (getenv("TH_VERBOSE"))
		fprintf(stderr, "    log: %s\n", msg);
}

const char *th_log(void)
{
	pthread_mutex_lock(&log_mu);
	memcpy(log_copy, log_buf, log_len + 1);
	pthread_mutex_unlock(&log_mu);
	return log_copy;
}

void th_log_clear(void)
{
	pthread_mutex_lock(&log_mu);
	log_len = 0;
	log_buf[0] = '\0';
	pthread_mutex_unlock(&log_mu);
}

void th_config(evapi_config *cfg)
{
	evapi_config_init(cfg);
	cfg->port = 0;
	cfg->handle_signals = 0;
	cfg->pool_threads = 8;
	cfg->shutdown_grace_ms = 5000;
	cfg->log_cb = capture;
	cfg->log_level = EVAPI_LOG_INFO;
}

/* ---- server thread -------------------------------------------------------- */

static void *server_main(void *arg)
{
	th_server *s = arg;
	s->run_rc = evapi_app_run(s->app);
	return NULL;
}

void th_server_start(th_server *s, evapi_app *app)
{
	memset(s, 0, sizeof *s);
	s->app = app;
	CHECK(app != NULL);
	if (!app)
		return;
	CHECK_INT(evapi_app_listen(app), ==, 0);
	s->port = evapi_app_port(app);
	CHECK_INT(s->port, >, 0);
	pthread_create(&s->thread, NULL, server_main, s);
}

void th_server_stop(th_server *s)
{
	evapi_stats st;
	if (!s->app)
		return;
	evapi_app_stop(s->app);
	pthread_join(s->thread, NULL);
	CHECK_INT(s->run_rc, ==, 0);
	evapi_app_stats(s->app, &st);
	CHECK_INT(st.in_flight, ==, 0);
	evapi_app_free(s->app);
	s->app = NULL;
}

/* ---- clients ---------------------------------------------------------------- */

double th_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void th_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

typedef struct sink {
	char *buf;
	size_t cap, len;
} sink;

static size_t sink_write(char *p, size_t sz, size_t n, void *arg)
{
	sink *s = arg;
	size_t len = sz * n, room = s->cap - 1 - s->len;
	if (len < room)
		room = len;
	memcpy(s->buf + s->len, p, room);
	s->len += room;
	s->buf[s->len] = '\0';
	return len;
}

typedef struct easy_ctx {
	CURL *h;
	sink body, hdr;
	struct curl_slist *hl;
	th_resp *out;
} easy_ctx;

static void easy_setup(easy_ctx *c, int port, const char *method,
                       const char *path, const char *body, th_resp *out)
{
	char url[1024];
	memset(out, 0, sizeof *out);
	c->out = out;
	c->h = curl_easy_init();
	c->body = (sink){out->body, sizeof out->body, 0};
	c->hdr = (sink){out->headers, sizeof out->headers, 0};
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c->h, CURLOPT_URL, url);
	curl_easy_setopt(c->h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->body);
	curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, sink_write);
	curl_easy_setopt(c->h, CURLOPT_HEADERDATA, &c->hdr);
	curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
	c->hl = curl_slist_append(NULL, "Expect:");
	if (method && strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c->h, CURLOPT_NOBODY, 1L);
	else if (method && strcmp(method, "GET") != 0)
		curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
		c->hl = curl_slist_append(c->hl,
		                          "Content-Type: application/json");
	}
	curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hl);
}

static void easy_finish(easy_ctx *c, int code)
{
	c->out->curl_error = code;
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->out->status);
	curl_slist_free_all(c->hl);
	curl_easy_cleanup(c->h);
}

long th_http(int port, const char *method, const char *path,
             const char *body, th_resp *out)
{
	easy_ctx c;
	double t0 = th_now();
	int rc;
	easy_setup(&c, port, method, path, body, out);
	rc = curl_easy_perform(c.h);
	easy_finish(&c, rc);
	out->secs = th_now() - t0;
	return out->status;
}

long th_http_body(int port, const char *method, const char *path,
                  const char *ctype, const void *body, size_t len,
                  th_resp *out)
{
	easy_ctx c;
	char ct[256];
	double t0 = th_now();
	int rc;

	easy_setup(&c, port, method, path, NULL, out);
	curl_easy_setopt(c.h, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(c.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	if (!method || strcmp(method, "POST") == 0)
		curl_easy_setopt(c.h, CURLOPT_CUSTOMREQUEST, NULL);
	snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "");
	/* "Content-Type:" with no value removes curl's default one */
	c.hl = curl_slist_append(c.hl, ctype ? ct : "Content-Type:");
	curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, c.hl);
	rc = curl_easy_perform(c.h);
	easy_finish(&c, rc);
	out->secs = th_now() - t0;
	return out->status;
}

void th_http_parallel(int port, int n, const char *const *paths,
                      th_resp *out)
{
	CURLM *m = curl_multi_init();
	easy_ctx *c = calloc((size_t)n, sizeof *c);
	double t0 = th_now();
	int i, running = 1;

	for (i = 0; i < n; i++) {
		easy_setup(&c[i], port, "GET", paths[i], NULL, &out[i]);
		curl_easy_setopt(c[i].h, CURLOPT_PRIVATE, &c[i]);
		curl_multi_add_handle(m, c[i].h);
	}
	while (running) {
		CURLMsg *msg;
		int left;
		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			easy_ctx *e;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
			                  (char **)&e);
			e->out->secs = th_now() - t0;
			e->out->curl_error = msg->data.result;
			curl_easy_getinfo(e->h, CURLINFO_RESPONSE_CODE,
			                  &e->out->status);
		}
		if (running)
			curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	for (i = 0; i < n; i++) {
		curl_multi_remove_handle(m, c[i].h);
		curl_slist_free_all(c[i].hl);
		curl_easy_cleanup(c[i].h);
	}
	curl_multi_cleanup(m);
	free(c);
}

int th_connect_send(int port, const char *raw)
{
	return th_connect_rcvbuf(port, raw, 0);
}

long th_read_all(int fd, char *buf, size_t cap, double secs)
{
	struct timeval tv = {0, 100000};
	double end = th_now() + secs;
	long total = 0;
	size_t kept = 0;
	char tmp[65536];

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	buf[0] = '\0';
	while (th_now() < end) {
		ssize_t n = read(fd, tmp, sizeof tmp);
		if (n == 0)
			break;
		if (n < 0)
			continue; /* timeout tick */
		if (kept + 1 < cap) {
			size_t k = (size_t)n < cap - 1 - kept ? (size_t)n : cap - 1 - kept;
			memcpy(buf + kept, tmp, k);
			kept += k;
			buf[kept] = '\0';
		}
		total += n;
	}
	return total;
}

void th_send_and_close(int port, const char *raw, int wait_ms)
{
	int fd = th_connect_send(port, raw);
	th_sleep_ms(wait_ms);
	if (fd >= 0)
		close(fd);
}

int th_exchange(int port, const char *raw, char *buf, size_t cap,
                double secs, int *closed)
{
	int fd = th_connect_send(port, raw), st = 0;
	double t0 = th_now();

	buf[0] = '\0';
	if (closed)
		*closed = 0;
	if (fd < 0)
		return 0;
	th_read_all(fd, buf, cap, secs);
	if (closed)
		*closed = th_now() - t0 < secs - 0.05;
	close(fd);
	if (sscanf(buf, "HTTP/1.%*d %d", &st) != 1)
		return 0;
	return st;
}

int th_count_responses(const char *buf)
{
	int n = 0;
	const char *p;
	int st;
	for (p = buf; (p = strstr(p, "HTTP/1.")) != NULL; p++)
		if (sscanf(p, "HTTP/1.%*1d %3d ", &st) == 1)
			n++;
	return n;
}

int th_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

int th_connect_rcvbuf(int port, const char *raw, int rcvbuf)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* Before connect, so the window is negotiated small. */
	if (fd >= 0 && rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		TH_FAIL_AT("cannot connect to 127.0.0.1:%d", port);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	CHECK_INT(write(fd, raw, strlen(raw)), ==, (long long)strlen(raw));
	return fd;
}

long th_read_some(int fd, char *buf, size_t cap, long want, double secs)
{
	struct timeval tv = {0, 50000};
	double end = th_now() + secs;
	long total = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (total < want && th_now() < end) {
		size_t room = cap - 1 - (size_t)total;
		ssize_t n;
		if ((long)room > want - total)
			room = (size_t)(want - total);
		n = read(fd, buf + total, room);
		if (n == 0)
			break;
		if (n > 0)
			total += n;
	}
	buf[total] = '\0';
	return total;
}

/* ---- trace ------------------------------------------------------------ */

static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;
static char trace_buf[1024], trace_copy[1024];

void th_trace_add(const char *s)
{
	pthread_mutex_lock(&trace_mu);
	strncat(trace_buf, s, sizeof trace_buf - strlen(trace_buf) - 1);
	pthread_mutex_unlock(&trace_mu);
}

const char *th_trace(void)
{
	pthread_mutex_lock(&trace_mu);
	memcpy(trace_copy, trace_buf, sizeof trace_copy);
	pthread_mutex_unlock(&trace_mu);
	return trace_copy;
}

void th_trace_clear(void)
{
	pthread_mutex_lock(&trace_mu);
	trace_buf[0] = '\0';
	pthread_mutex_unlock(&trace_mu);
}

int th_trace_wait(const char *want, double secs)
{
	double end = th_now() + secs;
	do {
		if (strstr(th_trace(), want))
			return 1;
		th_sleep_ms(10);
	} while (th_now() < end);
	return 0;
}

void th_wait_idle(evapi_app *app, double secs)
{
	evapi_stats st;
	double end = th_now() + secs;
	do {
		evapi_app_stats(app, &st);
		if (st.in_flight == 0)
			return;
		th_sleep_ms(10);
	} while (th_now() < end);
}

/* ---- processes and background requests ------------------------------------- */

static void *async_main(void *arg)
{
	th_async *a = arg;
	a->status = th_http(a->port, "GET", a->path, NULL, &a->r);
	return NULL;
}

void th_http_start(th_async *a, int port, const char *path)
{
	memset(a, 0, sizeof *a);
	a->port = port;
	a->path = path;
	pthread_create(&a->thread, NULL, async_main, a);
}

long th_http_join(th_async *a)
{
	pthread_join(a->thread, NULL);
	return a->status;
}

int th_distinct_pids(int port, const char *path, int n, int *pids, int cap,
                     int *errors)
{
	th_resp r;
	int i, k, seen = 0;
	for (i = 0; i < n; i++) {
		json_t *j;
		int pid;
		if (th_http(port, "GET", path, NULL, &r) != 200) {
			if (errors)
				(*errors)++;
			continue;
		}
		j = json_loads(r.body, 0, NULL);
		pid = (int)json_integer_value(json_object_get(j, "pid"));
		json_decref(j);
		for (k = 0; k < seen && pids[k] != pid; k++)
			;
		if (k == seen && seen < cap)
			pids[seen++] = pid;
	}
	return seen;
}

int th_stop_child(pid_t pid, double secs)
{
	int status = -1;
	double end = th_now() + secs;
	kill(pid, SIGTERM);
	while (th_now() < end) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		th_sleep_ms(50);
	}
	TH_FAIL_AT("process %d did not stop within %.0f s", (int)pid, secs);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

pid_t th_start_prefork(int port, int workers, evapi_app_setup_cb setup,
                       const char *probe)
{
	evapi_config cfg;
	pid_t pid;
	th_resp r;
	int i;

	evapi_config_init(&cfg);
	cfg.port = port;
	cfg.workers = workers;
	cfg.pool_threads = 2;
	cfg.access_log = 0;
	cfg.shutdown_grace_ms = 5000;
	cfg.log_level = EVAPI_LOG_WARN;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
		_exit(evapi_app_serve(&cfg, setup, NULL) == 0 ? 0 : 3);
	}
	CHECK(pid > 0);
	for (i = 0; i < 100 && th_http(port, "GET", probe, NULL, &r) != 200; i++)
		th_sleep_ms(50);
	return pid;
}

int th_run_capture(const char *cmd, char *out, size_t cap)
{
	size_t n = 0;
	FILE *f;
	int rc;

	out[0] = '\0';
	if (!(f = popen(cmd, "r")))
		return -1;
	while (n + 1 < cap && fgets(out + n, (int)(cap - n), f))
		n = strlen(out);
	while (fgetc(f) != EOF)
		;
	rc = pclose(f);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void th_remove_dir(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

pid_t th_nginx_start(const char *dir, int port)
{
	char conf[512], err[512], globals[512];
	char *argv[] = {"nginx", "-p", (char *)dir, "-c", conf, "-e", err,
	                "-g", globals, NULL};
	th_resp r;
	pid_t pid;
	int i;

	snprintf(conf, sizeof conf, "%s/nginx.conf", dir);
	snprintf(err, sizeof err, "%s/error.log", dir);
	snprintf(globals, sizeof globals, "daemon off; pid %s/nginx.pid;", dir);
	pid = fork();
	if (pid == 0) {
		/* nginx must neither outlive the test nor hold its output pipe
		 * open (tests/run reads it to the end). */
		int null = open("/dev/null", O_RDWR);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		th_child_close_fds();
		execvp("nginx", argv);
		_exit(127);
	}
	if (pid < 0) {
		TH_FAIL_AT("cannot start nginx");
		return -1;
	}
	for (i = 0; i < 100; i++) {
		if (th_http(port, "GET", "/", NULL, &r) == 200)
			return pid;
		th_sleep_ms(50);
	}
	TH_FAIL_AT("nginx did not answer on %d", port);
	return pid;
}

void th_nginx_stop(pid_t pid)
{
	int status;
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
}

void th_child_close_fds(void)
{
	long fd, max;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = 3; fd < max; fd++)
		close((int)fd);
}
