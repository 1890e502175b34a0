/*
 * ws_echo_test.c: the README's WebSocket route (examples/ws_echo.c) is
 * that file, word for word, at most 15 lines; and the built example,
 * run as it is (127.0.0.1:8000), echoes text and binary and stops on
 * SIGTERM with 0. SKIP when port 8000 is taken.
 */
#include "../tests/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tests/wsc.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s = NULL;
	size_t n = 0, cap = 0, k;
	char buf[4096];
	if (!f)
		return NULL;
	while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
		if (n + k + 1 > cap)
			s = realloc(s, cap = (n + k + 1) * 2);
		memcpy(s + n, buf, k);
		n += k;
	}
	fclose(f);
	if (s)
		s[n] = 0;
	return s;
}

static void readme_shows_it(void)
{
	char *readme = slurp(TOP_SRCDIR "/README.md");
	char *code = slurp(TOP_SRCDIR "/examples/ws_echo.c");
	char block[2048];
	const char *p;
	int lines = 0;

	CHECK(readme && code);
	if (!readme || !code)
		return;
	for (p = code; *p; p++)
		lines += *p == '\n';
	CHECK_INT(lines, <=, 15);
	snprintf(block, sizeof block, "```c\n%s```\n", code);
	CHECK_CONTAINS(readme, block);
	free(readme);
	free(code);
}

/* 1 when something accepts connections on 127.0.0.1:port. */
static int listening(int port)
{
	struct sockaddr_in a = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

static void it_echoes(void)
{
	wsc c;
	char resp[2048];
	size_t len = 0;
	int i, status = 0;
	pid_t pid;

	if (listening(8000)) {
		TH_SKIP("port 8000 is taken: the example listens there");
		return;
	}
	if (access("./examples/ws_echo", X_OK) != 0) {
		TH_FAIL_AT("./examples/ws_echo is not built (make)");
		return;
	}
	pid = fork();
	if (pid == 0) {
		execl("./examples/ws_echo", "ws_echo", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 200 && !listening(8000); i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			TH_FAIL_AT("the example exited at start: %d", status);
			return;
		}
		th_sleep_ms(50);
	}
	CHECK_INT(wsc_open(&c, 8000, "/ws/echo", NULL, resp, sizeof resp), ==,
	          101);
	text_reply(&c, "h\xc3\xa9llo", "h\xc3\xa9llo");
	wsc_send(&c, 0x82, "\0\1\2", 3);
	CHECK_INT(wsc_recv(&c, 3, resp, sizeof resp, &len, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_INT(len, ==, 3);
	CHECK(memcmp(resp, "\0\1\2", 3) == 0);
	/* SIGTERM: 1001 Going Away, then a clean exit */
	kill(pid, SIGTERM);
	expect_close(&c, 1001, __LINE__);
	wsc_close(&c);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"ws_echo.readme_shows_it", readme_shows_it},
		{"ws_echo.it_echoes", it_echoes},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
