/*
 * upstream.c: see upstream.h. Test-only code; blocking sockets, one
 * thread per connection, every wait bounded by a poll timeout so that
 * th_upstream_stop always returns.
 */
#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

typedef struct conn_arg {
	th_upstream *u;
	int fd;
} conn_arg;

/* Waits for readable data, checking the stop flag every 50 ms. Returns
 * bytes read, 0 at EOF, -1 when stopping or on error. */
static ssize_t read_some(th_upstream *u, int fd, char *buf, size_t len)
{
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		int r = poll(&p, 1, 50);
		if (LOAD(&u->stop))
			return -1;
		if (r > 0)
			return read(fd, buf, len);
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

/* Reads one request head (and ignores any body). 1 read, 0 peer closed. */
static int read_request(th_upstream *u, int fd)
{
	char buf[8192];
	size_t have = 0;

	while (have < sizeof buf - 1) {
		ssize_t n = read_some(u, fd, buf + have, sizeof buf - 1 - have);
		if (n <= 0)
			return 0;
		have += (size_t)n;
		buf[have] = '\0';
		if (strstr(buf, "\r\n\r\n")) {
			ADD(&u->requests, 1);
			return 1;
		}
	}
	return 0;
}

static void send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void send_big(int fd, int chunked)
{
	static char block[65536];
	char head[64];
	int i;

	memset(block, 'x', sizeof block);
	for (i = 0; i < 32; i++) {
		if (chunked) {
			snprintf(head, sizeof head, "%zx\r\n", sizeof block);
			send_all(fd, head, strlen(head));
		}
		send_all(fd, block, sizeof block);
		if (chunked)
			send_all(fd, "\r\n", 2);
	}
	if (chunked)
		send_all(fd, "0\r\n\r\n", 5);
}

/* Sends until the peer goes away (or 64 MiB, or stop). */
static void send_flood(th_upstream *u, int fd, int redirect)
{
	static char block[4096];
	char head[64];
	size_t sent = 0;

	memset(block, 'x', sizeof block);
	if (redirect)
		send_all(fd, "HTTP/1.1 302 Found\r\nLocation: /final\r\n"
		             "Transfer-Encoding: chunked\r\n\r\n", 68);
	while (sent < (64u << 20) && !LOAD(&u->stop)) {
		ssize_t n;
		if (redirect) {
			snprintf(head, sizeof head, "%zx\r\n", sizeof block);
			send_all(fd, head, strlen(head));
			n = send(fd, block, sizeof block, MSG_NOSIGNAL);
			send_all(fd, "\r\n", 2);
		} else {
			static const char line[] =
				"HTTP/1.1 100 Continue\r\nX-Pad: "
				"0123456789012345678901234567890123456789\r\n\r\n";
			n = send(fd, line, sizeof line - 1, MSG_NOSIGNAL);
		}
		if (n <= 0)
			return;
		sent += (size_t)n;
	}
}

static void *conn_main(void *arg)
{
	conn_arg *a = arg;
	th_upstream *u = a->u;
	int fd = a->fd;

	free(a);
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: "
	                         "application/json\r\nContent-Length: 11\r\n\r\n"
	                         "{\"up\":true}";
	char sink[4096];

	switch (u->mode) {
	case TH_UP_OK:
		while (read_request(u, fd))
			send_all(fd, ok, sizeof ok - 1);
		break;
	case TH_UP_GARBAGE:
		if (read_request(u, fd))
			send_all(fd, "HELLO THERE\r\n\r\n", 15);
		break;
	case TH_UP_RESET:
		if (read_request(u, fd)) {
			struct linger l = { 1, 0 };
			send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000"
			             "\r\n\r\n0123456789", 48);
			th_sleep_ms(50);
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		}
		break;
	case TH_UP_SILENT:
		if (read_request(u, fd))
			while (read_some(u, fd, sink, sizeof sink) > 0)
				;
		break;
	case TH_UP_BIG:
		if (read_request(u, fd)) {
			const char *h = "HTTP/1.1 200 OK\r\nContent-Length: "
			                "2097152\r\n\r\n";
			send_all(fd, h, strlen(h));
			send_big(fd, 0);
		}
		break;
	case TH_UP_HEAD_BIG:
		while (read_request(u, fd))
			send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: "
			             "104857600\r\n\r\n", 46);
		break;
	case TH_UP_REDIRECT_FLOOD:
	case TH_UP_INTERIM_FLOOD:
		if (read_request(u, fd))
			send_flood(u, fd, u->mode == TH_UP_REDIRECT_FLOOD);
		break;
	case TH_UP_BIG_CHUNKED:
		if (read_request(u, fd)) {
			const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
			                "chunked\r\n\r\n";
			send_all(fd, h, strlen(h));
			send_big(fd, 1);
		}
		break;
	}
	close(fd);
	ADD(&u->open, -1);
	return NULL;
}

static void *accept_main(void *arg)
{
	th_upstream *u = arg;

	while (!LOAD(&u->stop)) {
		struct pollfd p = { u->fd, POLLIN, 0 };
		int fd;
		conn_arg *a;
		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(u->fd, NULL, NULL);
		if (fd < 0)
			continue;
		a = malloc(sizeof *a);
		if (u->nconn == TH_UP_MAX_CONNS || !a) {
			free(a);
			close(fd);
			continue;
		}
		ADD(&u->accepted, 1);
		ADD(&u->open, 1);
		a->u = u;
		a->fd = fd;
		pthread_create(&u->conn_threads[u->nconn], NULL, conn_main, a);
		u->nconn++;
	}
	return NULL;
}

static int listen_any(int *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

void th_upstream_start(th_upstream *u, th_up_mode mode)
{
	memset(u, 0, sizeof *u);
	u->mode = mode;
	u->fd = listen_any(&u->port);
	CHECK(u->fd >= 0);
	CHECK_INT(listen(u->fd, 128), ==, 0);
	pthread_create(&u->accept_thread, NULL, accept_main, u);
}

void th_upstream_stop(th_upstream *u)
{
	int i;
	ADD(&u->stop, 1);
	pthread_join(u->accept_thread, NULL);
	for (i = 0; i < u->nconn; i++)
		pthread_join(u->conn_threads[i], NULL);
	close(u->fd);
}

int th_upstream_open(th_upstream *u)
{
	return LOAD(&u->open);
}

int th_upstream_accepted(th_upstream *u)
{
	return LOAD(&u->accepted);
}

int th_upstream_wait_open(th_upstream *u, int want, int ms)
{
	double end = th_now() + ms / 1000.0;
	while (LOAD(&u->open) != want && th_now() < end)
		th_sleep_ms(10);
	return LOAD(&u->open);
}

int th_closed_port(void)
{
	static int port, fd = -1;
	/* Bound but never listening, for the life of the process: connecting
	 * is refused, and nothing else can take the port meanwhile. */
	if (fd < 0)
		fd = listen_any(&port);
	return fd < 0 ? 1 : port;
}
