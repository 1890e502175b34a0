/*
 * redis.c: the private redis-server of redis.h.
 *
 * Everything runs on the calling (test) thread. The server is started
 * with fork + exec only: the test process has other threads, so between
 * the two the child calls nothing but async-signal-safe functions, on
 * arguments built before the fork.
 */
#include "redis.h"
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define REDIS_SERVER "/usr/bin/redis-server"

static const char *server(void)
{
	const char *s = getenv("EVAPI_REDIS_SERVER");
	return s && *s ? s : REDIS_SERVER;
}

int th_redis_init(th_redis *r, char *why, size_t len)
{
	memset(r, 0, sizeof *r);
	if (access(server(), X_OK) != 0) {
		snprintf(why, len, "redis-server not installed (%s: %s)",
		         server(), strerror(errno));
		return -1;
	}
	snprintf(r->dir, sizeof r->dir, "/tmp/evapi-redis-XXXXXX");
	if (!mkdtemp(r->dir)) {
		fprintf(stderr, "  redis: mkdtemp: %s\n", strerror(errno));
		r->dir[0] = '\0';
		return -2;
	}
	r->port = th_free_port();
	snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
	return 0;
}

int th_redis_up(th_redis *r)
{
	char port[16], log[128], out[64];
	char *argv[] = {(char *)server(), "--port", port, "--bind",
	                "127.0.0.1", "--save", "", "--appendonly", "no",
	                "--dir", r->dir, "--logfile", log, NULL};
	const char *ping[] = {"PING"};
	int i;

	snprintf(port, sizeof port, "%d", r->port);
	snprintf(log, sizeof log, "%s/log", r->dir);
	r->pid = fork();
	if (r->pid < 0) {
		r->pid = 0;
		return -2;
	}
	if (r->pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		th_child_close_fds();
		execv(argv[0], argv);
		_exit(127);
	}
	for (i = 0; i < 200; i++) {
		if (th_redis_cmd(r, out, sizeof out, 1, ping) == 0 &&
		    strcmp(out, "+PONG") == 0)
			return 0;
		th_sleep_ms(25);
	}
	fprintf(stderr, "  redis: no answer on port %d after 5 s\n", r->port);
	return -2;
}

int th_redis_start(th_redis *r, char *why, size_t len)
{
	int rc = th_redis_init(r, why, len);
	return rc != 0 ? rc : th_redis_up(r);
}

void th_redis_down(th_redis *r)
{
	int st;

	if (r->pid <= 0)
		return;
	kill(r->pid, SIGTERM);
	waitpid(r->pid, &st, 0);
	r->pid = 0;
}

void th_redis_free(th_redis *r)
{
	th_redis_down(r);
	if (r->dir[0])
		th_remove_dir(r->dir);
	r->dir[0] = '\0';
}

/* A connection to the server, or -1 (not a test failure: the server may
 * be starting or down on purpose). */
static int redis_connect(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

int th_redis_cmd(const th_redis *r, char *out, size_t cap, int argc,
                 const char *const *argv)
{
	char req[4096], buf[512];
	size_t n = 0;
	long got;
	char *eol;
	int i, fd;

	n += (size_t)snprintf(req + n, sizeof req - n, "*%d\r\n", argc);
	for (i = 0; i < argc && n < sizeof req; i++)
		n += (size_t)snprintf(req + n, sizeof req - n, "$%zu\r\n%s\r\n",
		                      strlen(argv[i]), argv[i]);
	if (n >= sizeof req)
		return -1;
	out[0] = '\0';
	if ((fd = redis_connect(r->port)) < 0)
		return -1;
	if (write(fd, req, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	got = th_read_some(fd, buf, sizeof buf, 2, 2.0);
	/* one line is enough */
	while (got > 0 && !strstr(buf, "\r\n") && got < (long)sizeof buf - 1)
		got += th_read_some(fd, buf + got, sizeof buf - (size_t)got,
		                    1, 1.0);
	close(fd);
	if (got <= 0 || !(eol = strstr(buf, "\r\n")))
		return -1;
	*eol = '\0';
	snprintf(out, cap, "%s", buf);
	return 0;
}

int th_redis_publish(const th_redis *r, const char *channel,
                     const char *text)
{
	const char *argv[] = {"PUBLISH", channel, text};
	char out[64];

	if (th_redis_cmd(r, out, sizeof out, 3, argv) != 0 || out[0] != ':')
		return -1;
	return atoi(out + 1);
}
