/*
 * file_load.c: the large-file load client of bench/files, the same for
 * every server under test. One thread, epoll, non-blocking sockets,
 * keep-alive GETs, one at a time on each connection (as wrk does). The
 * body is discarded in the kernel: recv with MSG_TRUNC on a TCP socket
 * drops the bytes without copying them to user space, so reading a
 * 100 MiB body costs the client a few system calls, not a copy of
 * every byte (wrk copies it 8 KiB at a time, and at a few GB/s that
 * copy, not the server, is what it measures).
 *
 * While a body arrives the socket's SO_RCVLOWAT asks the kernel to wake
 * the client only once LOWAT bytes (64 KiB, or what is left of the body
 * when less) are queued. On loopback the data reaches the reader's
 * socket in the sender's context, so waking the reader (an inter-
 * processor interrupt when it sleeps on the other CPU) is charged to
 * the server under test: woken for every segment, the client made a
 * kernel-bound server spend much of its CPU waking it, and measured
 * that rather than the server. A LOWAT of 1 (the kernel's default)
 * gives the old behaviour.
 *
 *   file_load PORT PATH CONNS SECS [LOWAT]
 *       CONNS connections to 127.0.0.1:PORT, each asking for PATH over
 *       and over for SECS seconds; a reply is timed from the request's
 *       send to its body's last byte.
 *       RESULT <req/s> <MiB/s> <p50 ms> <p99 ms> <errors>
 *
 * Errors: a status other than 200, a reply without Content-Length, a
 * connection that closed or failed (it is opened again). A connection
 * the server ends after a reply with "Connection: close" (a keep-alive
 * request limit) is opened again without counting an error; the time
 * that takes is in the results. 127.0.0.1
 * only. Build: cc -O2 -o file_load bench/file_load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
	int fd;
	char head[8192];
	size_t hl;
	int in_body;
	int closing; /* the reply said "Connection: close" */
	long long left; /* body bytes still to come */
	int lowat;      /* the socket's SO_RCVLOWAT */
	int64_t sent_at;
} conn;

static int port;
static const char *path;
static char req[1024];
static size_t reql;
static int ep;
static int64_t *lat; /* reply times, us */
static size_t nlat, caplat;
static long long errors, bytes;
static int lowat = 64 * 1024;

/* Microseconds on the monotonic clock. */
static int64_t usec(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int by_value(const void *a, const void *b)
{
	int64_t d = *(const int64_t *)a - *(const int64_t *)b;
	return (d > 0) - (d < 0);
}

static void record(int64_t us)
{
	if (nlat == caplat) {
		caplat = caplat ? caplat * 2 : 65536;
		lat = realloc(lat, caplat * sizeof *lat);
		if (!lat) {
			perror("realloc");
			exit(1);
		}
	}
	lat[nlat++] = us;
}

/* Wakes for `want` bytes from now on (1: for any). */
static void set_lowat(conn *c, long long want)
{
	int v = want < 1 ? 1 : want > lowat ? lowat : (int)want;

	if (v != c->lowat &&
	    setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) == 0)
		c->lowat = v;
}

/* Sends the request; it is small enough for an empty socket buffer. */
static int ask(conn *c)
{
	set_lowat(c, 1); /* the header section, then the body's size */
	c->hl = 0;
	c->in_body = 0;
	c->sent_at = usec();
	return send(c->fd, req, reql, MSG_NOSIGNAL) == (ssize_t)reql ? 0 : -1;
}

static int open_conn(conn *c)
{
	struct sockaddr_in a;
	struct epoll_event ev;
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	c->lowat = 1;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("connect");
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		perror("epoll_ctl");
		return -1;
	}
	return ask(c);
}

static void reopen(conn *c, int error)
{
	errors += error;
	close(c->fd); /* leaves the epoll set with it */
	if (open_conn(c) != 0)
		exit(1);
}

/* The header section is in c->head[0..end): 0 when it says 200 with a
 * Content-Length (in c->left), else -1. */
static int parse_head(conn *c, size_t end)
{
	char *p;
	int status;

	c->head[end] = '\0';
	if (sscanf(c->head, "HTTP/1.%*d %d", &status) != 1 || status != 200)
		return -1;
	c->left = -1;
	c->closing = 0;
	for (p = strstr(c->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, "Content-Length:", 15) == 0)
			c->left = atoll(p + 17);
		if (strncasecmp(p + 2, "Connection: close", 17) == 0)
			c->closing = 1;
	}
	return c->left >= 0 ? 0 : -1;
}

/* Reads what the socket has; -1 when the connection must be reopened
 * (an error), 1 when the server ends it after a complete reply. */
static int on_readable(conn *c)
{
	static char sink[1 << 16];
	ssize_t n;

	for (;;) {
		if (c->in_body) {
			/* TCP with MSG_TRUNC: dropped in the kernel, not copied */
			n = recv(c->fd, sink, (size_t)c->left,
			         MSG_TRUNC | MSG_DONTWAIT);
			if (n > 0) {
				bytes += n;
				c->left -= n;
			}
		} else {
			char *end;
			n = recv(c->fd, c->head + c->hl, sizeof c->head - 1 - c->hl,
			         MSG_DONTWAIT);
			if (n > 0) {
				c->hl += (size_t)n;
				c->head[c->hl] = '\0';
				end = strstr(c->head, "\r\n\r\n");
				if (!end && c->hl == sizeof c->head - 1)
					return -1;
				if (end) {
					size_t hend = (size_t)(end + 4 - c->head);
					size_t extra = c->hl - hend;
					if (parse_head(c, hend - 2) != 0)
						return -1;
					if ((long long)extra > c->left)
						return -1; /* no pipelining here */
					bytes += (long long)extra;
					c->left -= (long long)extra;
					c->in_body = 1;
				}
			}
		}
		if (n == 0)
			return -1;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (c->in_body)
				set_lowat(c, c->left);
			return 0;
		}
		if (n < 0)
			return -1;
		if (c->in_body && c->left == 0) {
			record(usec() - c->sent_at);
			if (c->closing)
				return 1;
			if (ask(c) != 0)
				return -1;
		}
	}
}

int main(int argc, char **argv)
{
	struct epoll_event evs[256];
	int64_t t0, t_end;
	double secs, el;
	conn *cs;
	int nconn, i, n;

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: %s PORT PATH CONNS SECS [LOWAT]\n",
		        argv[0]);
		return 2;
	}
	port = atoi(argv[1]);
	path = argv[2];
	nconn = atoi(argv[3]);
	secs = atof(argv[4]);
	if (argc == 6)
		lowat = atoi(argv[5]);
	if (port <= 0 || nconn <= 0 || secs <= 0 || lowat < 1) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	reql = (size_t)snprintf(req, sizeof req,
	                        "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
	                        path, port);
	ep = epoll_create1(0);
	cs = calloc((size_t)nconn, sizeof *cs);
	if (ep < 0 || !cs)
		return 1;
	t0 = usec();
	t_end = t0 + (int64_t)(secs * 1e6);
	for (i = 0; i < nconn; i++)
		if (open_conn(&cs[i]) != 0)
			return 1;
	while (usec() < t_end) {
		n = epoll_wait(ep, evs, 256, 100);
		for (i = 0; i < n; i++) {
			conn *c = evs[i].data.ptr;
			int rc = on_readable(c);
			if (rc != 0)
				reopen(c, rc < 0);
		}
	}
	el = (double)(usec() - t0) / 1e6;
	if (nlat)
		qsort(lat, nlat, sizeof *lat, by_value);
	printf("RESULT %.1f %.1f %.3f %.3f %lld\n", (double)nlat / el,
	       (double)bytes / el / 1048576.0,
	       nlat ? (double)lat[nlat / 2] / 1000 : 0.0,
	       nlat ? (double)lat[(size_t)((double)nlat * 0.99)] / 1000 : 0.0,
	       errors);
	for (i = 0; i < nconn; i++)
		close(cs[i].fd);
	free(cs);
	free(lat);
	return 0;
}
