/*
 * conn_storm.c: scenario 4's client. Opens N connections to 127.0.0.1,
 * sends one "GET path" on each at once, and waits for every reply (or
 * the time limit). Prints one line:
 *   ok=N errors=N secs=S first=S last=S
 * ok counts "HTTP/1.1 200" replies; errors everything else (refused,
 * reset, other status, no reply in time). Single thread, epoll.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
	int fd;
	int sent;
	int done;
	size_t got;
	char head[16];
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int port, n, i, ep, left, ok = 0, errs = 0;
	double limit, t0, first = 0, last = 0;
	char req[256];
	struct conn *c;
	struct sockaddr_in sa;
	struct epoll_event ev, evs[512];

	if (argc != 5) {
		fprintf(stderr, "usage: conn_storm PORT PATH N SECONDS\n");
		return 2;
	}
	port = atoi(argv[1]);
	n = atoi(argv[3]);
	limit = atof(argv[4]);
	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
	         argv[2]);
	c = calloc((size_t)n, sizeof *c);
	ep = epoll_create1(0);
	if (!c || ep < 0)
		return 1;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t0 = now();
	left = n;
	for (i = 0; i < n; i++) {
		c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (c[i].fd < 0 ||
		    (connect(c[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0 &&
		     errno != EINPROGRESS)) {
			if (c[i].fd >= 0)
				close(c[i].fd);
			c[i].fd = -1;
			c[i].done = 1;
			errs++;
			left--;
			continue;
		}
		ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
		ev.data.u32 = (unsigned)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
	}
	while (left > 0 && now() - t0 < limit) {
		int k, m = epoll_wait(ep, evs, 512, 100);
		for (k = 0; k < m; k++) {
			struct conn *x = &c[evs[k].data.u32];
			char buf[4096];
			ssize_t r;
			if (x->done)
				continue;
			if (!x->sent && (evs[k].events & EPOLLOUT)) {
				if (write(x->fd, req, strlen(req)) > 0) {
					x->sent = 1;
					ev.events = EPOLLIN | EPOLLRDHUP;
					ev.data.u32 = evs[k].data.u32;
					epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
				}
			}
			while ((r = read(x->fd, buf, sizeof buf)) > 0) {
				if (x->got < sizeof x->head - 1) {
					size_t cp = sizeof x->head - 1 - x->got;
					if ((size_t)r < cp)
						cp = (size_t)r;
					memcpy(x->head + x->got, buf, cp);
				}
				x->got += (size_t)r;
			}
			if (r == 0 || (r < 0 && errno != EAGAIN) ||
			    (evs[k].events & (EPOLLERR | EPOLLHUP))) {
				double t = now() - t0;
				x->done = 1;
				left--;
				if (strncmp(x->head, "HTTP/1.1 200", 12) == 0) {
					ok++;
					if (!first)
						first = t;
					last = t;
				} else {
					errs++;
				}
				close(x->fd);
			}
		}
	}
	errs += left; /* no reply in time */
	printf("ok=%d errors=%d secs=%.3f first=%.3f last=%.3f\n", ok, errs,
	       now() - t0, first, last);
	return errs ? 1 : 0;
}
