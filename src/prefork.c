/*
 * prefork.c: prefork: evapi_app_serve runs one app
 * in-process, or `workers` processes that each build their own app
 * (reactor and pool) and share the port through SO_REUSEPORT, under a
 * parent that restarts a worker that dies (crashes or fails; one that
 * exits 0 was stopped on purpose and stays stopped) and forwards
 * SIGTERM/SIGINT so every worker drains gracefully.
 *
 * Threads: the supervisor is the calling thread of a process that must
 * not run other threads (fork copies only the caller; an app's workers
 * would be lost). It waits for signals with sigtimedwait, so SIGTERM,
 * SIGINT and SIGCHLD are blocked while it runs. Each worker process is
 * single-threaded until its own evapi_app_new starts the pool.
 *
 * Invariants: the parent holds the port from before the first fork (a
 * bound socket that never listens, so the kernel gives it no
 * connections) until every worker has exited, so a restarted worker
 * binds the same port even when the config asked for port 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* ---- the supervisor ------------------------------------------------------ */

typedef struct worker {
	pid_t pid;
	int64_t started_us;
	int restarts_fast; /* deaths within a second of starting, in a row */
	int stopped;       /* exited 0: stopped on purpose, not restarted */
} worker;

static void say(const evapi_config *cfg, evapi_log_level lvl, const char *fmt,
                ...) __attribute__((format(printf, 3, 4)));

static void say(const evapi_config *cfg, evapi_log_level lvl, const char *fmt,
                ...)
{
	char line[512];
	va_list ap;
	if ((int)lvl > (int)cfg->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (cfg->log_cb) {
		cfg->log_cb(lvl, line, cfg->log_arg);
	} else {
		char out[600];
		int n = snprintf(out, sizeof out, "evapi %s: [supervisor %d] %s\n",
		                 lvl == EVAPI_LOG_ERROR  ? "error"
		                 : lvl == EVAPI_LOG_WARN ? "warn"
		                                         : "info",
		                 (int)getpid(), line);
		if (n > 0 && write(STDERR_FILENO, out,
		                   (size_t)n < sizeof out ? (size_t)n
		                                          : sizeof out - 1) < 0)
			return;
	}
}

/* One app, in this process: create, listen, let `setup` add routes (it
 * may read the bound port), run, free. */
static int serve_one(const evapi_config *cfg, int reuse_port,
                     evapi_app_setup_cb setup, void *arg)
{
	evapi_app *app = evapi_app_new(cfg);
	int rc;
	if (!app)
		return EVAPI_ENOMEM;
	app->reuse_port = reuse_port;
	if ((rc = evapi_app_listen(app)) == 0 &&
	    (rc = setup ? setup(app, arg) : 0) == 0)
		rc = evapi_app_run(app);
	evapi_app_free(app);
	return rc;
}

static pid_t spawn(const evapi_config *cfg, const sigset_t *old_mask,
                   int holder, evapi_app_setup_cb setup, void *arg)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid; /* parent, or -1 */
	/* The worker: die with the supervisor, take signals again. Its own
	 * process group keeps a terminal's Ctrl-C (sent to the foreground
	 * group) from reaching it besides the SIGTERM the supervisor
	 * forwards, which would count as a second signal and cut. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	setpgid(0, 0);
	close(holder);
	sigprocmask(SIG_SETMASK, old_mask, NULL);
	_exit(serve_one(cfg, 1, setup, arg) == 0 ? 0 : 1);
}

static const char *death(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	return buf;
}

int evapi_app_serve(const evapi_config *cfg_in, evapi_app_setup_cb setup,
                    void *arg)
{
	evapi_config cfg;
	sigset_t mask, old;
	worker *w;
	int holder, i, n, live = 0, stopping = 0, failed = 0;

	if (cfg_in)
		cfg = *cfg_in;
	else
		evapi_config_init(&cfg);
	if (cfg.workers < 1 || cfg.workers > 1024)
		return EVAPI_EINVAL;
	if (cfg.workers == 1)
		return serve_one(&cfg, 0, setup, arg);
	n = cfg.workers;
	/* Hold the port (port 0: pick it) for every worker to come. */
	holder = evapi__bound_socket(cfg.host, cfg.port, 1, 0);
	if (holder < 0)
		return EVAPI_EBIND;
	cfg.port = evapi__socket_port(holder);
	w = calloc((size_t)n, sizeof *w);
	if (!w) {
		close(holder);
		return EVAPI_ENOMEM;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, &old);
	for (i = 0; i < n; i++) {
		w[i].started_us = evapi__now_us();
		w[i].pid = spawn(&cfg, &old, holder, setup, arg);
		if (w[i].pid > 0)
			live++;
		else
			w[i].pid = 0; /* retried on the next tick */
	}
	say(&cfg, EVAPI_LOG_INFO, "%d worker(s) on http://%s:%d", live, cfg.host,
	    cfg.port);
	while (live > 0 || !stopping) {
		struct timespec tick = {0, 250 * 1000000L};
		siginfo_t si;
		int sig = sigtimedwait(&mask, &si, &tick);
		pid_t pid;
		int status;

		if (sig == SIGTERM || sig == SIGINT) {
			say(&cfg, EVAPI_LOG_INFO, "%s: %s %d worker(s)",
			    sig == SIGTERM ? "SIGTERM" : "SIGINT",
			    stopping ? "stopping now" : "draining", live);
			stopping = 1;
			/* A second signal is forwarded too: workers cut at once. */
			for (i = 0; i < n; i++)
				if (w[i].pid > 0)
					kill(w[i].pid, SIGTERM);
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			char why[64];
			for (i = 0; i < n && w[i].pid != pid; i++)
				;
			if (i == n)
				continue;
			w[i].pid = 0;
			live--;
			if (stopping) {
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
					failed = 1;
				continue;
			}
			/* Exit status 0 is a graceful stop (a SIGTERM sent to
			 * the worker itself, or evapi_app_stop): what someone
			 * asked for, so the worker stays stopped. Only a crash
			 * or a failure is replaced. */
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
				w[i].stopped = 1;
				say(&cfg, EVAPI_LOG_INFO,
				    "worker %d (pid %d) stopped; not restarting", i,
				    (int)pid);
				continue;
			}
			say(&cfg, EVAPI_LOG_WARN, "worker %d (pid %d) %s; restarting",
			    i, (int)pid, death(status, why, sizeof why));
			/* A worker that keeps dying at start (bad setup, port
			 * trouble) is restarted at most once a second after its
			 * second quick death in a row. */
			if (evapi__now_us() - w[i].started_us < 1000000)
				w[i].restarts_fast++;
			else
				w[i].restarts_fast = 0;
		}
		for (i = 0; i < n && w[i].stopped; i++)
			;
		if (i == n && !stopping) {
			say(&cfg, EVAPI_LOG_INFO, "every worker stopped");
			stopping = 1;
		}
		for (i = 0; i < n && !stopping; i++) {
			if (w[i].pid != 0 || w[i].stopped ||
			    (w[i].restarts_fast > 1 &&
			                      evapi__now_us() - w[i].started_us <
			                              1000000))
				continue;
			w[i].started_us = evapi__now_us();
			w[i].pid = spawn(&cfg, &old, holder, setup, arg);
			if (w[i].pid > 0)
				live++;
			else
				w[i].pid = 0;
		}
	}
	say(&cfg, EVAPI_LOG_INFO, "all workers stopped");
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(holder);
	free(w);
	return failed ? EVAPI_ESYS : 0;
}
