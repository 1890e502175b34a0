/*
 * redis.h: a private redis-server for one test, on a free 127.0.0.1 port,
 * with no persistence (--save '' --appendonly no), in a temporary
 * directory. It is a child of the test process with a parent-death
 * signal, so a test that crashes does not leave it running; stopped by
 * its PID.
 */
#ifndef EVAPI_TEST_REDIS_H
#define EVAPI_TEST_REDIS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct th_redis {
	char dir[64];   /* the temporary directory (its log is there) */
	char url[64];   /* redis://127.0.0.1:PORT */
	int port;
	pid_t pid;      /* the server, or 0 when stopped */
} th_redis;

/* Picks a free port and starts a server there, waiting until it answers
 * PING. Returns 0; or -1 when redis-server is not installed, with a
 * reason in `why` (the test then skips); or -2 for any other failure
 * (reported on stderr: the test fails). */
int th_redis_start(th_redis *r, char *why, size_t len);
/* Picks a free port (in url) without starting a server: for "Redis down
 * at start". Same returns as th_redis_start. */
int th_redis_init(th_redis *r, char *why, size_t len);
/* Starts the server (again) on its port; returns 0 or -2. */
int th_redis_up(th_redis *r);
/* SIGTERM to the server, waits for it to exit. */
void th_redis_down(th_redis *r);
/* th_redis_down, then removes the directory. A zeroed th_redis is a
 * no-op. */
void th_redis_free(th_redis *r);

/* Sends one command (argc strings) on a new connection and keeps the
 * first line of the reply ("+OK", ":1", "$5") in out. Returns 0, or -1
 * when there is no answer. */
int th_redis_cmd(const th_redis *r, char *out, size_t cap, int argc,
                 const char *const *argv);
/* PUBLISH channel text; returns the number of receivers Redis counted,
 * or -1. */
int th_redis_publish(const th_redis *r, const char *channel,
                     const char *text);

#endif
