/*
 * test_nginx.c: examples/nginx/nginx.conf in front of two evapi apps on
 * 127.0.0.1: requests reach both, and stopping one while requests keep
 * coming loses none (nginx retries what it may elsewhere); the same with
 * two prefork servers while one worker is killed with SIGKILL under load.
 * And a path rule in nginx ("/echo" refused, "/_/" denied) is not
 * bypassed with a target starting with "//", merge_slashes on or off.
 * Skipped, with the reason printed, when nginx is not installed.
 */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int hits[2]; /* per instance, atomics */

static void hello(evapi_req *req, void *arg)
{
	int *n = arg;
	__atomic_add_fetch(n, 1, __ATOMIC_SEQ_CST);
	evapi_reply_json(req, 200, json_pack("{s:i}", "instance",
	                                     (int)(n - hits)));
}

static void start_instance(th_server *s, int i)
{
	evapi_config cfg;
	evapi_app *app;
	th_config(&cfg);
	cfg.access_log = 0;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, hello, &hits[i]);
	th_server_start(s, app);
}

/* The example config with our ports and a private temp directory. */
static int write_conf(const char *dir, int port, int up0, int up1)
{
	char path[512], line[512], out[600];
	FILE *in, *o;

	snprintf(path, sizeof path, "%s/examples/nginx/nginx.conf",
	         EVAPI_SRCDIR);
	in = fopen(path, "r");
	snprintf(path, sizeof path, "%s/nginx.conf", dir);
	o = fopen(path, "w");
	if (!in || !o) {
		TH_FAIL_AT("cannot copy examples/nginx/nginx.conf");
		if (in)
			fclose(in);
		if (o)
			fclose(o);
		return -1;
	}
	while (fgets(line, sizeof line, in)) {
		if (strstr(line, "127.0.0.1:8001"))
			snprintf(out, sizeof out, "\t\tserver 127.0.0.1:%d "
			         "max_fails=1 fail_timeout=2s;\n", up0);
		else if (strstr(line, "127.0.0.1:8002"))
			snprintf(out, sizeof out, "\t\tserver 127.0.0.1:%d "
			         "max_fails=1 fail_timeout=2s;\n", up1);
		else if (strstr(line, "listen 127.0.0.1:8080"))
			snprintf(out, sizeof out, "\t\tlisten 127.0.0.1:%d;\n",
			         port);
		else if (strncmp(line, "http {", 6) == 0)
			snprintf(out, sizeof out,
			         "http {\n\tclient_body_temp_path %s/body;\n"
			         "\tproxy_temp_path %s/proxy;\n", dir, dir);
		else
			snprintf(out, sizeof out, "%s", line);
		fputs(out, o);
	}
	fclose(in);
	fclose(o);
	return 0;
}

struct load {
	int port, stop, sent, failed;
};

static void *keep_asking(void *arg)
{
	struct load *l = arg;
	th_resp r;
	while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
		if (th_http(l->port, "GET", "/", NULL, &r) != 200)
			__atomic_add_fetch(&l->failed, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&l->sent, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

static void test_two_instances_behind_nginx(void)
{
	char dir[] = "/tmp/evapi-nginx-XXXXXX";
	th_server a, b;
	struct load l = {0, 0, 0, 0};
	pthread_t t;
	pid_t ng;
	th_resp r;
	int i, port = th_free_port(), a_hits;

	CHECK(mkdtemp(dir) != NULL);
	start_instance(&a, 0);
	start_instance(&b, 1);
	if (write_conf(dir, port, a.port, b.port) != 0) {
		th_server_stop(&a);
		th_server_stop(&b);
		return;
	}
	ng = th_nginx_start(dir, port);

	for (i = 0; i < 40; i++)
		CHECK_INT(th_http(port, "GET", "/", NULL, &r), ==, 200);
	CHECK_INT(__atomic_load_n(&hits[0], __ATOMIC_SEQ_CST), >, 0);
	CHECK_INT(__atomic_load_n(&hits[1], __ATOMIC_SEQ_CST), >, 0);

	/* Stop instance 0 gracefully while requests keep coming. */
	l.port = port;
	pthread_create(&t, NULL, keep_asking, &l);
	th_sleep_ms(300);
	th_server_stop(&a);
	a_hits = __atomic_load_n(&hits[0], __ATOMIC_SEQ_CST);
	th_sleep_ms(500);
	__atomic_store_n(&l.stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(t, NULL);
	CHECK_INT(l.sent, >, 20);
	CHECK_INT(l.failed, ==, 0);
	CHECK_INT(__atomic_load_n(&hits[0], __ATOMIC_SEQ_CST), ==, a_hits);
	for (i = 0; i < 10; i++)
		CHECK_INT(th_http(port, "GET", "/", NULL, &r), ==, 200);
	th_nginx_stop(ng);
	th_server_stop(&b);
	th_remove_dir(dir);
}

/* ---- path rules in nginx ------------------------------------------------ */

static int guarded_hits; /* handlers nginx's rules should keep away */

static void guarded(evapi_req *req, void *arg)
{
	__atomic_add_fetch(&guarded_hits, 1, __ATOMIC_SEQ_CST);
	evapi_reply_text(req, 200, (const char *)arg);
}

static void open_route(evapi_req *req, void *arg)
{
	evapi_reply_text(req, 200, "open");
}

/* nginx refusing /echo and /_/ by location, proxying the rest. */
static int write_rules_conf(const char *dir, int port, int up,
                            int merge_slashes)
{
	char path[512];
	FILE *o;

	snprintf(path, sizeof path, "%s/nginx.conf", dir);
	o = fopen(path, "w");
	if (!o) {
		TH_FAIL_AT("cannot write %s", path);
		return -1;
	}
	fprintf(o, "worker_processes 1;\n"
	           "events { worker_connections 64; }\n"
	           "http {\n"
	           "\taccess_log off;\n"
	           "\tclient_body_temp_path %s/body;\n"
	           "\tproxy_temp_path %s/proxy;\n"
	           "\tmerge_slashes %s;\n"
	           "\tserver {\n"
	           "\t\tlisten 127.0.0.1:%d;\n"
	           "\t\tlocation /echo { return 403; }\n"
	           "\t\tlocation /_/ { deny all; }\n"
	           "\t\tlocation / {\n"
	           "\t\t\tproxy_pass http://127.0.0.1:%d;\n"
	           "\t\t\tproxy_http_version 1.1;\n"
	           "\t\t\tproxy_set_header Connection \"\";\n"
	           "\t\t}\n"
	           "\t}\n"
	           "}\n",
	        dir, dir, merge_slashes ? "on" : "off", port, up);
	fclose(o);
	return 0;
}

static void rules_hold(int merge_slashes)
{
	/* What a client sends nginx; what it must get back. Through nginx
	 * a "//" target reaches evapi unchanged (proxy_pass without a URI
	 * passes the target as sent), where it is a path of its own: 404.
	 * With merge_slashes on, nginx matches "//echo" as "/echo": 403. */
	static const struct {
		const char *method, *target;
		int status_merged, status_unmerged;
	} cases[] = {
		{"GET", "/", 200, 200},
		{"POST", "/echo", 403, 403},
		{"GET", "/_/stats", 403, 403},
		{"POST", "//x/echo", 404, 404},
		{"POST", "//a@b:1/echo", 404, 404},
		{"GET", "//x/_/stats", 404, 404},
		{"GET", "//x/_/metrics", 404, 404},
		{"GET", "//echo", 403, 404},
		{"GET", "//_/stats", 403, 404},
	};
	char dir[] = "/tmp/evapi-nginx-XXXXXX";
	evapi_config cfg;
	evapi_app *app;
	th_server s;
	pid_t ng;
	size_t i;
	int port = th_free_port();

	CHECK(mkdtemp(dir) != NULL);
	th_config(&cfg);
	cfg.access_log = 0;
	cfg.stats_routes = 1;
	app = evapi_app_new(&cfg);
	CHECK(app != NULL);
	evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, open_route, NULL);
	evapi_app_route(app, EVAPI_GET | EVAPI_POST, "/echo", EVAPI_INLINE,
	                guarded, "echo");
	th_server_start(&s, app);
	__atomic_store_n(&guarded_hits, 0, __ATOMIC_SEQ_CST);
	if (write_rules_conf(dir, port, s.port, merge_slashes) != 0) {
		th_server_stop(&s);
		th_remove_dir(dir);
		return;
	}
	ng = th_nginx_start(dir, port);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char raw[512], buf[8192];
		int want = merge_slashes ? cases[i].status_merged
		                         : cases[i].status_unmerged;
		int st;

		snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: t\r\n"
		         "Content-Length: 0\r\nConnection: close\r\n\r\n",
		         cases[i].method, cases[i].target);
		st = th_exchange(port, raw, buf, sizeof buf, 3, NULL);
		if (st != want)
			fprintf(stderr, "  %s %s (merge_slashes %s): %s\n",
			        cases[i].method, cases[i].target,
			        merge_slashes ? "on" : "off", buf);
		CHECK_INT(st, ==, want);
		if (st == 200 && strcmp(cases[i].target, "/") != 0)
			CHECK(strstr(buf, "\"in_flight\"") == NULL);
	}
	CHECK_INT(__atomic_load_n(&guarded_hits, __ATOMIC_SEQ_CST), ==, 0);
	th_nginx_stop(ng);
	th_server_stop(&s);
	th_remove_dir(dir);
}

static void test_path_rules_merge_slashes_on(void)
{
	rules_hold(1);
}

static void test_path_rules_merge_slashes_off(void)
{
	rules_hold(0);
}

/* ---- kill -9 of a prefork worker behind nginx -------------------------- */

static void pid_slept(evapi_req *req, int status, void *arg)
{
	if (status == 0)
		evapi_reply_json(req, 200, json_pack("{s:i}", "pid", (int)getpid()));
}

/* Each request waits 50 ms, so several are in flight on every worker. */
static void pid_slow(evapi_req *req, void *arg)
{
	evapi_req_sleep(req, 50, pid_slept, NULL);
}

static int prefork_setup(evapi_app *app, void *arg)
{
	return evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, pid_slow, NULL);
}

static void stop_prefork(pid_t pid)
{
	int status = th_stop_child(pid, 10);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

#define KILL_LOADERS 8

/* A worker of prefork supervisor `sup` (its first child), or -1. */
static pid_t first_child(pid_t sup)
{
	char path[64];
	long pid = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)sup,
	         (int)sup);
	if ((f = fopen(path, "r"))) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = -1;
		fclose(f);
	}
	return (pid_t)pid;
}

static void test_worker_killed_under_load(void)
{
	char dir[] = "/tmp/evapi-nginx-XXXXXX", path[600], log[8192];
	struct load l = {0, 0, 0, 0};
	pthread_t t[KILL_LOADERS];
	int port = th_free_port(), p0 = th_free_port(), p1 = th_free_port();
	int before[4], after[4], i, k, n, fresh = 0, retried, kills;
	pid_t s0, s1, ng;
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	s0 = th_start_prefork(p0, 2, prefork_setup, "/");
	s1 = th_start_prefork(p1, 2, prefork_setup, "/");
	if (write_conf(dir, port, p0, p1) != 0)
		goto out;
	ng = th_nginx_start(dir, port);
	CHECK_INT(th_distinct_pids(p0, "/", 60, before, 4, NULL), ==, 2);

	l.port = port;
	for (i = 0; i < KILL_LOADERS; i++)
		pthread_create(&t[i], NULL, keep_asking, &l);
	th_sleep_ms(1000);
	/* Kill one worker of instance 0; while nginx has shown no retry (its
	 * connections to instance 0 may all have been on the other worker,
	 * as the kernel spreads them), kill the one serving now, up to five
	 * times. Whatever the rounds, no client request may fail. */
	snprintf(path, sizeof path, "%s/error.log", dir);
	for (i = 0, retried = 0; i < 5 && !retried; i++) {
		pid_t victim = i == 0 ? before[0] : first_child(s0);
		if (victim > 0)
			kill(victim, SIGKILL);
		th_sleep_ms(1000);
		log[0] = '\0';
		if ((f = fopen(path, "r"))) {
			log[fread(log, 1, sizeof log - 1, f)] = '\0';
			fclose(f);
		}
		retried = strstr(log, "from upstream") != NULL;
	}
	kills = i;
	__atomic_store_n(&l.stop, 1, __ATOMIC_SEQ_CST);
	for (i = 0; i < KILL_LOADERS; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(l.sent, >, 100);
	CHECK_INT(l.failed, ==, 0);

	/* nginx saw the dead worker's connections fail, and retried. */
	CHECK_CONTAINS(log, "from upstream");
	{
		char *at = strstr(log, "from upstream"), *bol = at, *eol;
		while (bol && bol > log && bol[-1] != '\n')
			bol--;
		if (bol && (eol = strchr(bol, '\n')))
			*eol = '\0';
		if (bol)
			fprintf(stderr, "  note: nginx: %.200s\n", bol);
	}
	/* The supervisor replaced the worker. */
	for (i = 0; i < 20; i++) {
		n = th_distinct_pids(p0, "/", 20, after, 4, NULL);
		for (k = 0, fresh = 0; k < n; k++)
			fresh += after[k] != before[0] && after[k] != before[1];
		if (fresh)
			break;
		th_sleep_ms(100);
	}
	CHECK(fresh >= 1);
	fprintf(stderr, "  note: %d requests through nginx, %d failed, while "
	        "%d worker(s) were killed one at a time\n", l.sent, l.failed, kills);
	th_nginx_stop(ng);
out:
	stop_prefork(s0);
	stop_prefork(s1);
	th_remove_dir(dir);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"nginx.two_instances_behind_nginx",
		 test_two_instances_behind_nginx},
		{"nginx.path_rules_merge_slashes_on",
		 test_path_rules_merge_slashes_on},
		{"nginx.path_rules_merge_slashes_off",
		 test_path_rules_merge_slashes_off},
		{"nginx.worker_killed_under_load", test_worker_killed_under_load},
		{NULL, NULL}};
	if (system("command -v nginx >/dev/null 2>&1") != 0) {
		int i;
		for (i = 0; tests[i].name; i++)
			printf("SKIP %s (nginx is not installed: apt-get "
			       "install nginx-light)\n", tests[i].name);
		return 0;
	}
	return th_main(argc, argv, tests);
}
