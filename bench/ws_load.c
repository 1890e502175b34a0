/*
 * ws_load.c: the WebSocket load client of bench/ws, the same for every
 * server under test. One thread, epoll, non-blocking sockets; frames
 * written and read by hand (masked text out, unmasked frames in), so
 * the client costs little next to the server it measures.
 *
 *   ws_load [-w WINDOW] [-p PID] echo PORT PATH CONNS SECS SIZE [COUNT]
 *       CONNS sessions, each sending a SIZE-byte text message and
 *       waiting for its echo, over and over for SECS seconds (or until
 *       COUNT round trips in all: a fixed amount of work, to count a
 *       server's instructions or system calls per message).
 *       With -w, each session keeps WINDOW messages in flight (default
 *       1): it sends WINDOW at once, and as many new ones as echoes came
 *       back, in one write; a round trip is still one message, its
 *       latency from that message's own send. The client then spends
 *       one read and one write per batch of echoes instead of per echo,
 *       so a server that costs less than the client per message can
 *       show it (at WINDOW 1 the client's core is the limit).
 *       With -p, the server's CPU time (utime + stime of PID, all its
 *       threads, from /proc) over the run, per round trip.
 *       RESULT echo <round trips/s> <p50 us> <p99 us> <errors>
 *                   <server CPU us/msg> <of it user us/msg> (-1: no -p)
 *   ws_load fanout PORT PATH N ROUNDS
 *       N sessions in one room (PATH); each round one of them says
 *       something and every session (the sender too) receives it. A
 *       receipt's time is the kernel's (SO_TIMESTAMPNS: when the bytes
 *       reached the client's socket), not when this one thread got
 *       round to reading that socket: reading 1 000 sockets in turn
 *       would otherwise add the client's own time to the last ones.
 *       RESULT fanout <p50 ms> <p99 ms> (publish -> each receipt)
 *              <p50 ms> <p99 ms> (publish -> the Nth receipt) <missing>
 *   ws_load idle   PORT PATH N PID
 *       opens N sessions and leaves them idle; PID's resident memory
 *       before and after.
 *       RESULT idle <sessions> <KiB per session> <MiB added> <MiB total>
 *
 * 127.0.0.1 only. Build: cc -O2 -o ws_load bench/ws_load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW_MAX 64

typedef struct sess {
	int fd;
	uint8_t in[4096];
	size_t have;
	double sent_at;
	/* echo: send times of the messages in flight, oldest first (a
	 * ring); a server answers a session's messages in order */
	double sent[WINDOW_MAX];
	unsigned head, n;
} sess;

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Reads what `fd` has; *at is the kernel's receive time of the last
 * segment (CLOCK_REALTIME), or the time now when there is none. */
static ssize_t read_stamped(int fd, void *buf, size_t cap, double *at)
{
	char ctl[CMSG_SPACE(sizeof(struct timespec))];
	struct iovec v = {buf, cap};
	struct msghdr m = {0};
	struct cmsghdr *cm;
	ssize_t n;

	m.msg_iov = &v;
	m.msg_iovlen = 1;
	m.msg_control = ctl;
	m.msg_controllen = sizeof ctl;
	n = recvmsg(fd, &m, 0);
	*at = 0;
	for (cm = CMSG_FIRSTHDR(&m); n > 0 && cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;
			memcpy(&ts, CMSG_DATA(cm), sizeof ts);
			*at = ts.tv_sec + ts.tv_nsec / 1e9;
		}
	if (*at == 0)
		*at = wall();
	return n;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	if (!n)
		return 0;
	return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

/* Connects and completes the handshake (blocking); -1 on failure. */
static int ws_connect(int port, const char *path)
{
	struct sockaddr_in a = {0};
	char req[512], buf[1024];
	size_t have = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	double until = now() + 10;

	if (fd < 0)
		return -1;
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		goto fail;
	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
	         "Connection: Upgrade\r\nSec-WebSocket-Key: "
	         "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	         path, port);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto fail;
	buf[0] = 0;
	/* byte by byte up to the blank line: nothing after it is taken */
	while (!strstr(buf, "\r\n\r\n") && have < sizeof buf - 1 &&
	       now() < until) {
		struct pollfd pf = {fd, POLLIN, 0};
		if (poll(&pf, 1, 1000) <= 0)
			continue;
		if (read(fd, buf + have, 1) != 1)
			goto fail;
		buf[++have] = 0;
	}
	if (strncmp(buf, "HTTP/1.1 101", 12) != 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* Opens n sessions, one handshake at a time. */
static int open_all(int port, const char *path, sess *s, int n)
{
	int i, ok = 0;
	for (i = 0; i < n; i++) {
		s[i].fd = ws_connect(port, path);
		s[i].have = 0;
		ok += s[i].fd >= 0;
	}
	return ok;
}

static const uint8_t MASK[4] = {0x12, 0x34, 0x56, 0x78};

/* A masked text frame of `msg` (len < 65536). */
static size_t frame(uint8_t *out, const char *msg, size_t len)
{
	size_t h = 2, i;
	out[0] = 0x81;
	if (len < 126) {
		out[1] = (uint8_t)(0x80 | len);
	} else {
		out[1] = 0x80 | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		h = 4;
	}
	memcpy(out + h, MASK, 4);
	for (i = 0; i < len; i++)
		out[h + 4 + i] = (uint8_t)msg[i] ^ MASK[i & 3];
	return h + 4 + len;
}

/* Takes whole frames from s->in; returns how many data frames (pings
 * and other control frames are skipped; pings are not answered: the
 * runs are shorter than any server's ping interval). */
static int take_frames(sess *s, char *last, size_t cap)
{
	int got = 0;
	size_t off = 0;
	while (s->have - off >= 2) {
		uint8_t b0 = s->in[off], b1 = s->in[off + 1];
		size_t h = 2, len = b1 & 0x7F;
		if (len == 126) {
			if (s->have - off < 4)
				break;
			len = ((size_t)s->in[off + 2] << 8) | s->in[off + 3];
			h = 4;
		} else if (len == 127) {
			break; /* never sent in these runs */
		}
		if (s->have - off < h + len)
			break;
		if ((b0 & 0x0F) < 0x8) {
			got++;
			if (last) {
				size_t k = len < cap - 1 ? len : cap - 1;
				memcpy(last, s->in + off + h, k);
				last[k] = 0;
			}
		}
		off += h + len;
	}
	memmove(s->in, s->in + off, s->have - off);
	s->have -= off;
	return got;
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ---- echo ------------------------------------------------------------------ */

/* utime + stime of `pid` (all its threads) in clock ticks; 0 if gone. */
static int cpu_ticks(int pid, long long *user, long long *sys)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* the command name may hold spaces: fields count from its ')' */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	           &ut, &st) != 2)
		return -1;
	*user = (long long)ut;
	*sys = (long long)st;
	return 0;
}

/* Sends `k` messages on `c` in one write (f: `k` frames back to back). */
static int send_batch(sess *c, const uint8_t *f, size_t fl, unsigned k,
                      double t)
{
	unsigned i;
	for (i = 0; i < k; i++)
		c->sent[(c->head + c->n + i) % WINDOW_MAX] = t;
	c->n += k;
	return write(c->fd, f, fl * k) == (ssize_t)(fl * k) ? 0 : -1;
}

static int run_echo(int port, const char *path, int conns, double secs,
                    size_t size, long count, unsigned window, int pid)
{
	sess *s = calloc((size_t)conns, sizeof *s);
	size_t cap = 1 << 22, nlat = 0, fl;
	double *lat = malloc(cap * sizeof *lat), t0, end, el;
	char *msg = malloc(size + 1);
	uint8_t one[70000], *f;
	long rts = 0, sent = 0, errors = 0;
	long long u0 = 0, s0 = 0, u1 = 0, s1 = 0;
	int ep = epoll_create1(0), i, cpu = 0;
	unsigned k;

	memset(msg, 'x', size);
	fl = frame(one, msg, size);
	/* WINDOW echoes (unmasked: 4 bytes less each) fit a session's
	 * input buffer, whatever arrives together */
	if (window < 1 || window > WINDOW_MAX ||
	    window * fl > sizeof s->in) {
		fprintf(stderr, "ws_load: window %u of %zu-byte frames: "
		        "1 to %d, and under %zu bytes\n", window, fl,
		        WINDOW_MAX, sizeof s->in);
		return 2;
	}
	f = malloc(fl * window);
	for (k = 0; k < window; k++)
		memcpy(f + k * fl, one, fl);
	if (open_all(port, path, s, conns) != conns) {
		fprintf(stderr, "ws_load: could not open %d sessions\n", conns);
		return 1;
	}
	for (i = 0; i < conns; i++) {
		struct epoll_event e = {EPOLLIN, {.u32 = (uint32_t)i}};
		nonblock(s[i].fd);
		epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &e);
	}
	if (pid > 0)
		cpu = cpu_ticks(pid, &u0, &s0) == 0;
	t0 = now();
	end = t0 + secs;
	for (i = 0; i < conns; i++) {
		k = window;
		if (count > 0 && sent + k > count)
			k = count > sent ? (unsigned)(count - sent) : 0;
		sent += k;
		if (k && send_batch(&s[i], f, fl, k, now()) < 0)
			errors++;
	}
	while (now() < end && (count <= 0 || rts < count)) {
		struct epoll_event ev[256];
		int j, n = epoll_wait(ep, ev, 256, 100);
		for (j = 0; j < n; j++) {
			sess *c = &s[ev[j].data.u32];
			ssize_t r = read(c->fd, c->in + c->have,
			                 sizeof c->in - c->have);
			int got;
			double t;
			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				errors++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				continue;
			}
			c->have += (size_t)r;
			got = take_frames(c, NULL, 0);
			if (got <= 0)
				continue;
			t = now();
			for (k = 0; k < (unsigned)got && c->n > 0; k++) {
				if (nlat < cap)
					lat[nlat++] =
					        (t - c->sent[c->head]) * 1e6;
				c->head = (c->head + 1) % WINDOW_MAX;
				c->n--;
			}
			rts += got;
			/* as many new ones as came back, in one write; the
			 * last ones of a COUNT run are not replaced */
			if (count > 0 && sent + k > count)
				k = count > sent ? (unsigned)(count - sent) : 0;
			sent += k;
			if (k && send_batch(c, f, fl, k, t) < 0)
				errors++;
		}
	}
	el = now() - t0;
	if (cpu)
		cpu = cpu_ticks(pid, &u1, &s1) == 0;
	qsort(lat, nlat, sizeof *lat, cmp);
	{
		double us = rts > 0 && cpu ? 1e6 / (double)sysconf(_SC_CLK_TCK) /
		                                     (double)rts
		                           : 0;
		printf("RESULT echo %.0f %.0f %.0f %ld %.2f %.2f\n", rts / el,
		       pct(lat, nlat, 0.5), pct(lat, nlat, 0.99), errors,
		       us ? (double)(u1 - u0 + s1 - s0) * us : -1.0,
		       us ? (double)(u1 - u0) * us : -1.0);
	}
	return 0;
}

/* ---- fan-out ------------------------------------------------------------------ */

static int run_fanout(int port, const char *path, int n, int rounds)
{
	sess *s = calloc((size_t)n, sizeof *s);
	double *lat = malloc((size_t)n * rounds * sizeof *lat);
	double *last = malloc((size_t)rounds * sizeof *last);
	unsigned char *seen = malloc((size_t)n);
	size_t nlat = 0;
	int ep = epoll_create1(0), i, r, missing = 0, done_rounds = 0;

	if (open_all(port, path, s, n) != n) {
		fprintf(stderr, "ws_load: could not open %d sessions\n", n);
		return 1;
	}
	for (i = 0; i < n; i++) {
		struct epoll_event e = {EPOLLIN, {.u32 = (uint32_t)i}};
		int one = 1;
		nonblock(s[i].fd);
		setsockopt(s[i].fd, SOL_SOCKET, SO_TIMESTAMPNS, &one,
		           sizeof one);
		epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &e);
	}
	usleep(300000); /* every session has joined */
	for (r = 0; r < rounds; r++) {
		char msg[32], got[64];
		uint8_t f[64];
		size_t fl;
		int recv = 0;
		double t0, until;

		snprintf(msg, sizeof msg, "round %d", r);
		fl = frame(f, msg, strlen(msg));
		memset(seen, 0, (size_t)n);
		t0 = wall();
		if (write(s[r % n].fd, f, fl) != (ssize_t)fl)
			missing += n;
		until = now() + 10;
		while (recv < n && now() < until) {
			struct epoll_event ev[256];
			int k, m = epoll_wait(ep, ev, 256, 100);
			for (k = 0; k < m; k++) {
				int id = (int)ev[k].data.u32;
				sess *c = &s[id];
				double t;
				ssize_t rd = read_stamped(c->fd, c->in + c->have,
				                          sizeof c->in - c->have,
				                          &t);
				if (rd <= 0)
					continue;
				c->have += (size_t)rd;
				while (take_frames(c, got, sizeof got) > 0)
					if (strcmp(got, msg) == 0 && !seen[id]) {
						seen[id] = 1;
						lat[nlat++] = (t - t0) * 1e3;
						if (++recv == n)
							last[done_rounds++] = (t - t0) * 1e3;
					}
			}
		}
		missing += n - recv;
		usleep(20000);
	}
	qsort(lat, nlat, sizeof *lat, cmp);
	qsort(last, (size_t)done_rounds, sizeof *last, cmp);
	printf("RESULT fanout %.2f %.2f %.2f %.2f %d\n", pct(lat, nlat, 0.5),
	       pct(lat, nlat, 0.99), pct(last, (size_t)done_rounds, 0.5),
	       pct(last, (size_t)done_rounds, 0.99), missing);
	return 0;
}

/* ---- idle memory ------------------------------------------------------------------ */

static long rss_kib(int pid)
{
	char path[64], line[256];
	long kib = 0;
	FILE *f;
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	if (!(f = fopen(path, "r")))
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static int run_idle(int port, const char *path, int n, int pid)
{
	sess *s = calloc((size_t)n, sizeof *s);
	long before, after;
	int ok;

	/* a few first: lazy allocations behind the baseline */
	ok = open_all(port, path, s, 10);
	for (int i = 0; i < ok; i++)
		close(s[i].fd);
	usleep(300000);
	before = rss_kib(pid);
	ok = open_all(port, path, s, n);
	usleep(1000000);
	after = rss_kib(pid);
	printf("RESULT idle %d %.2f %.1f %.1f\n", ok,
	       ok ? (double)(after - before) / ok : 0,
	       (after - before) / 1024.0, after / 1024.0);
	return ok == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	unsigned window = 1;
	int pid = 0, o;

	while ((o = getopt(argc, argv, "+w:p:")) != -1) {
		if (o == 'w')
			window = (unsigned)atoi(optarg);
		else if (o == 'p')
			pid = atoi(optarg);
		else
			goto usage;
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (argc >= 7 && strcmp(argv[1], "echo") == 0)
		return run_echo(atoi(argv[2]), argv[3], atoi(argv[4]),
		                atof(argv[5]), (size_t)atol(argv[6]),
		                argc >= 8 ? atol(argv[7]) : 0, window, pid);
	if (argc >= 6 && strcmp(argv[1], "fanout") == 0)
		return run_fanout(atoi(argv[2]), argv[3], atoi(argv[4]),
		                  atoi(argv[5]));
	if (argc >= 6 && strcmp(argv[1], "idle") == 0)
		return run_idle(atoi(argv[2]), argv[3], atoi(argv[4]),
		                atoi(argv[5]));
usage:
	fprintf(stderr, "usage: ws_load [-w WINDOW] [-p PID] echo PORT PATH "
	                "CONNS SECS SIZE [COUNT]\n"
	                "       ws_load fanout PORT PATH N ROUNDS\n"
	                "       ws_load idle PORT PATH N PID\n");
	return 2;
}
