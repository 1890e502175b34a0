/*
 * pg.h: a private PostgreSQL 15 cluster for one test: initdb into a fresh
 * temporary directory, a postmaster on a free 127.0.0.1 port (and a unix
 * socket in that directory), fsync off. Run as root, the server runs as
 * `nobody` (or a system user `evapi-pg` made with useradd where there is
 * no `nobody`) and the directory is handed to it: PostgreSQL refuses
 * root.
 *
 * The postmaster is a child of the test process with a parent-death
 * signal, so a test that crashes does not leave it running; the next
 * run removes such a directory once it is ten minutes old. th_pg_free
 * stops it and removes the directory; call it on every path out of the
 * test, failed checks included.
 */
#ifndef EVAPI_TEST_PG_H
#define EVAPI_TEST_PG_H

#include <sys/types.h>

typedef struct th_pg {
	char dir[128];  /* the temporary directory; data/ and the socket */
	char url[256];  /* postgresql://postgres@127.0.0.1:PORT/postgres */
	int port;
	pid_t pid;      /* the postmaster, or 0 when stopped */
	uid_t uid;      /* who runs it, when the tests run as root */
	gid_t gid;
} th_pg;

/* Creates and starts a cluster. Returns 0; or -1 when PostgreSQL is not
 * installed, with a reason in `why` (the test then skips); or -2 for any
 * other failure (reported on stderr: the test fails). */
int th_pg_start(th_pg *pg, char *why, size_t len);
/* Creates the cluster without starting it (a port is reserved in `url`):
 * for "database down at start". Same returns as th_pg_start. */
int th_pg_init(th_pg *pg, char *why, size_t len);
/* Starts the postmaster of an initialised cluster (again) on its port
 * and waits until it accepts connections. Returns 0 or -2. */
int th_pg_up(th_pg *pg);
/* Fast shutdown (SIGINT), waits for the postmaster to exit. */
void th_pg_down(th_pg *pg);
/* th_pg_down, then removes the directory. A zeroed th_pg is a no-op. */
void th_pg_free(th_pg *pg);

/* Runs `sql` on a new blocking connection; returns the first column of
 * the first row as an integer, or -1 on any error (printed). */
long th_pg_int(const th_pg *pg, const char *sql);
/* Runs `sql` (several statements allowed); returns 0 or -1 (printed). */
int th_pg_exec(const th_pg *pg, const char *sql);

/* The binary's shared cluster, started by the first call: for tests that
 * need a server that stays up. NULL when there is none, the running test
 * then marked skipped (PostgreSQL not installed) or failed. */
const th_pg *th_pg_shared(void);
/* Stops and removes the shared cluster, if started; at the end of main. */
void th_pg_shared_free(void);

#endif
