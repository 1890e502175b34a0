/*
 * upstream.h: a misbehaving HTTP upstream for the outbound client's tests.
 * A raw TCP server on 127.0.0.1:0, one thread per connection, that reads a
 * request and then does one thing wrong (or right) on purpose. It counts
 * the connections it accepted and the ones still open, so a test can see
 * that the client under test closed its side.
 */
#ifndef EVAPI_TEST_UPSTREAM_H
#define EVAPI_TEST_UPSTREAM_H

#include <pthread.h>

typedef enum th_up_mode {
	TH_UP_OK = 0,     /* 200 with a small JSON body, keep-alive */
	TH_UP_GARBAGE,    /* a line that is not a status line, then close */
	TH_UP_RESET,      /* promises 1000 bytes, sends 10, then RST */
	TH_UP_SILENT,     /* reads the request, never answers */
	TH_UP_BIG,        /* Content-Length: 2 MiB, and sends it */
	TH_UP_BIG_CHUNKED, /* 2 MiB in chunks, no length announced */
	TH_UP_HEAD_BIG,    /* 200 announcing 100 MiB, no body (for HEAD) */
	TH_UP_REDIRECT_FLOOD, /* 302 with an endless chunked body */
	TH_UP_INTERIM_FLOOD   /* endless 100 Continue responses */
} th_up_mode;

#define TH_UP_MAX_CONNS 64

typedef struct th_upstream {
	int fd, port;
	th_up_mode mode;
	pthread_t accept_thread;
	pthread_t conn_threads[TH_UP_MAX_CONNS];
	int nconn;
	int stop;     /* atomic */
	int accepted; /* atomic */
	int open;     /* atomic: connections not yet closed by either side */
	int requests; /* atomic: requests read */
} th_upstream;

void th_upstream_start(th_upstream *u, th_up_mode mode);
void th_upstream_stop(th_upstream *u);
int th_upstream_open(th_upstream *u);
int th_upstream_accepted(th_upstream *u);
/* Waits up to `ms` for the open count to reach `want`; returns it. */
int th_upstream_wait_open(th_upstream *u, int want, int ms);
/* A port on 127.0.0.1 with nothing listening (connections are refused). */
int th_closed_port(void);

#endif
