/*
 * pg.c: the private PostgreSQL cluster of pg.h.
 *
 * Everything runs on the calling (test) thread. Children are started
 * with fork + exec only: the test process has other threads, so between
 * the two the child calls nothing but async-signal-safe functions, on
 * arguments built before the fork.
 */
#include "pg.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG_BINDIR "/usr/lib/postgresql/15/bin"
/* Who runs the server when the tests run as root: `nobody`, or a
 * system user made for it where there is no `nobody`. */
#define RUN_AS "nobody"
#define RUN_AS_MADE "evapi-pg"

static const char *bindir(void)
{
	const char *d = getenv("EVAPI_PG_BINDIR");
	return d && *d ? d : PG_BINDIR;
}

/* Forks and execs argv (with setpriv in front when root), output to
 * `log`, cwd `dir`. The child dies with the calling thread. Returns the
 * pid or -1. */
static pid_t spawn(const th_pg *pg, char *const *argv, const char *log)
{
	static char setpriv[] = "/usr/bin/setpriv", clear[] = "--clear-groups";
	char reuid[32], regid[32];
	static char pdeath[] = "--pdeathsig", keep[] = "keep", dash[] = "--";
	char *full[32];
	int n = 0, i, root = geteuid() == 0;
	pid_t pid;

	if (root) {
		snprintf(reuid, sizeof reuid, "--reuid=%u", (unsigned)pg->uid);
		snprintf(regid, sizeof regid, "--regid=%u", (unsigned)pg->gid);
		full[n++] = setpriv;
		full[n++] = reuid;
		full[n++] = regid;
		full[n++] = clear;
		full[n++] = pdeath;
		full[n++] = keep;
		full[n++] = dash;
	}
	for (i = 0; argv[i] && n < 31; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	pid = fork();
	if (pid != 0)
		return pid;
	/* child: async-signal-safe calls only */
	{
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0666);
		int nul = open("/dev/null", O_RDONLY);
		if (fd < 0 || nul < 0 || chdir(pg->dir) != 0)
			_exit(126);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
		if (nul > 2)
			close(nul);
		prctl(PR_SET_PDEATHSIG, SIGINT);
		th_child_close_fds();
		execv(full[0], full);
		_exit(127);
	}
}

/* The unprivileged user to run the server as (root only). */
static struct passwd *run_as(void)
{
	struct passwd *pw = getpwnam(RUN_AS);
	char *argv[] = { "useradd", "--system", "--no-create-home", "--shell",
	                 "/usr/sbin/nologin", RUN_AS_MADE, NULL };
	pid_t pid;
	int st;

	if (pw || (pw = getpwnam(RUN_AS_MADE)))
		return pw;
	if ((pid = fork()) == 0) {
		execv("/usr/sbin/useradd", argv);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	return getpwnam(RUN_AS_MADE);
}

static void show_log(const th_pg *pg)
{
	char path[192], line[512];
	FILE *f;

	snprintf(path, sizeof path, "%s/log", pg->dir);
	if (!(f = fopen(path, "r")))
		return;
	while (fgets(line, sizeof line, f))
		fprintf(stderr, "    pg: %s", line);
	fclose(f);
}

static void rm_rf(const char *dir)
{
	char *argv[] = { "rm", "-rf", (char *)dir, NULL };
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		execv("/bin/rm", argv);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
}

/* Removes what crashed runs left: directories whose server is not
 * running (no postmaster.pid: the parent-death signal stopped it) and
 * that are older than any run's setup. */
static void sweep_stale(void)
{
	DIR *d = opendir("/tmp");
	struct dirent *e;
	char path[300], pid[320];
	struct stat st;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "evapi-pg-", 9) != 0)
			continue;
		snprintf(path, sizeof path, "/tmp/%s", e->d_name);
		snprintf(pid, sizeof pid, "%s/data/postmaster.pid", path);
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
		    st.st_mtime < time(NULL) - 600 && access(pid, F_OK) != 0)
			rm_rf(path);
	}
	closedir(d);
}

int th_pg_init(th_pg *pg, char *why, size_t len)
{
	char exe[160], data[160], log[160];
	struct passwd *pw = NULL;
	pid_t pid;
	int st;

	memset(pg, 0, sizeof *pg);
	snprintf(exe, sizeof exe, "%s/postgres", bindir());
	if (access(exe, X_OK) != 0) {
		snprintf(why, len, "postgresql not installed (%s: %s)", exe,
		         strerror(errno));
		return -1;
	}
	if (geteuid() == 0 && (access("/usr/bin/setpriv", X_OK) != 0 ||
	                       !(pw = run_as()))) {
		fprintf(stderr, "  pg: running as root needs setpriv and user "
		                "%s (or useradd to make %s)\n", RUN_AS,
		        RUN_AS_MADE);
		return -2;
	}
	if (pw) {
		pg->uid = pw->pw_uid;
		pg->gid = pw->pw_gid;
	}
	sweep_stale();
	snprintf(pg->dir, sizeof pg->dir, "/tmp/evapi-pg-XXXXXX");
	if (!mkdtemp(pg->dir)) {
		fprintf(stderr, "  pg: mkdtemp: %s\n", strerror(errno));
		pg->dir[0] = '\0';
		return -2;
	}
	if (pw && chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
		fprintf(stderr, "  pg: chown: %s\n", strerror(errno));
		th_pg_free(pg);
		return -2;
	}
	pg->port = th_free_port();
	snprintf(pg->url, sizeof pg->url,
	         "postgresql://postgres@127.0.0.1:%d/postgres", pg->port);
	snprintf(exe, sizeof exe, "%s/initdb", bindir());
	snprintf(data, sizeof data, "%s/data", pg->dir);
	snprintf(log, sizeof log, "%s/log", pg->dir);
	{
		char *argv[] = { exe, "-D", data, "-U", "postgres", "-A", "trust",
		                 "-E", "UTF8", "--locale=C", "--no-sync",
		                 "--no-instructions", NULL };
		pid = spawn(pg, argv, log);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		fprintf(stderr, "  pg: initdb failed\n");
		show_log(pg);
		th_pg_free(pg);
		return -2;
	}
	return 0;
}

int th_pg_up(th_pg *pg)
{
	char exe[160], data[160], log[160], port[16], conninfo[256];
	double until = th_now() + 30;
	int st;

	snprintf(exe, sizeof exe, "%s/postgres", bindir());
	snprintf(data, sizeof data, "%s/data", pg->dir);
	snprintf(log, sizeof log, "%s/log", pg->dir);
	snprintf(port, sizeof port, "%d", pg->port);
	{
		char *argv[] = { exe, "-D", data, "-p", port, "-k", pg->dir,
		                 "-c", "listen_addresses=127.0.0.1",
		                 "-c", "fsync=off", "-c", "synchronous_commit=off",
		                 "-c", "full_page_writes=off",
		                 "-c", "max_connections=40",
		                 "-c", "shared_buffers=16MB",
		                 "-c", "timezone=UTC", NULL };
		pg->pid = spawn(pg, argv, log);
	}
	if (pg->pid < 0) {
		pg->pid = 0;
		return -2;
	}
	snprintf(conninfo, sizeof conninfo,
	         "host=%s port=%d user=postgres dbname=postgres", pg->dir,
	         pg->port);
	while (th_now() < until) {
		if (PQping(conninfo) == PQPING_OK)
			return 0;
		if (waitpid(pg->pid, &st, WNOHANG) == pg->pid) {
			pg->pid = 0;
			break;
		}
		th_sleep_ms(50);
	}
	fprintf(stderr, "  pg: the server did not come up\n");
	show_log(pg);
	th_pg_down(pg);
	return -2;
}

int th_pg_start(th_pg *pg, char *why, size_t len)
{
	int rc = th_pg_init(pg, why, len);
	if (rc == 0 && (rc = th_pg_up(pg)) != 0)
		th_pg_free(pg);
	return rc;
}

void th_pg_down(th_pg *pg)
{
	double until = th_now() + 20;
	int st;

	if (pg->pid <= 0)
		return;
	kill(pg->pid, SIGINT); /* fast shutdown */
	while (waitpid(pg->pid, &st, WNOHANG) == 0) {
		if (th_now() > until) {
			kill(pg->pid, SIGKILL);
			waitpid(pg->pid, &st, 0);
			break;
		}
		th_sleep_ms(20);
	}
	pg->pid = 0;
}

void th_pg_free(th_pg *pg)
{
	th_pg_down(pg);
	if (pg->dir[0])
		rm_rf(pg->dir);
	pg->dir[0] = '\0';
}

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Runs `sql` on a new connection; the result when it succeeded (the
 * caller clears it), else NULL with the reason printed. */
static PGresult *run(const th_pg *pg, const char *sql)
{
	PGconn *c = PQconnectdb(pg->url);
	PGresult *r = NULL;

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "  pg: connect: %s", PQerrorMessage(c));
	} else {
		PQsetNoticeProcessor(c, quiet, NULL);
		r = PQexec(c, sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK &&
		    PQresultStatus(r) != PGRES_TUPLES_OK) {
			fprintf(stderr, "  pg: %s: %s", sql,
			        PQresultErrorMessage(r));
			PQclear(r);
			r = NULL;
		}
	}
	PQfinish(c);
	return r;
}

long th_pg_int(const th_pg *pg, const char *sql)
{
	PGresult *r = run(pg, sql);
	long v = -1;

	if (r && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

int th_pg_exec(const th_pg *pg, const char *sql)
{
	PGresult *r = run(pg, sql);
	PQclear(r);
	return r ? 0 : -1;
}

/* ---- one cluster shared by a test binary -------------------------------- */

static th_pg shared;
static int shared_state; /* 0 untried, 1 up, -1 not installed, -2 failed */
static char skip_why[256];

const th_pg *th_pg_shared(void)
{
	if (shared_state == 0) {
		int rc = th_pg_start(&shared, skip_why, sizeof skip_why);
		shared_state = rc == 0 ? 1 : rc;
	}
	if (shared_state == -1)
		TH_SKIP("%s", skip_why);
	else if (shared_state != 1)
		TH_FAIL_AT("the PostgreSQL test cluster did not start");
	return shared_state == 1 ? &shared : NULL;
}

void th_pg_shared_free(void)
{
	th_pg_free(&shared);
}
