/*
 * test_headers.c: the installed headers as a user's compiler sees them.
 * Each public header, alone and through the umbrella evapi.h, must
 * compile cleanly as C99 (gcc -std=c99 -Wall -Wextra -Wpedantic -Werror)
 * and as C++17 (g++ -std=c++17, the same warnings), without evapi's own
 * build flags: no EVAPI_BUILDING, no -D_GNU_SOURCE. The test writes a
 * one-line translation unit per header and runs the compilers on it.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef TOP_SRCDIR
#error "TOP_SRCDIR must name the source tree"
#endif

static const char *const headers[] = {
	"evapi.h",           "evapi/common.h", "evapi/app.h",
	"evapi/request.h",   "evapi/schema.h", "evapi/client.h",
	"evapi/tasks.h",     "evapi/stream.h", "evapi/middleware.h",
	"evapi/lifespan.h",  "evapi/websocket.h", "evapi/channel.h",
	"evapi/model.h",     "evapi/testing.h",
	"evapi/depends.h",   "evapi/security.h",
	NULL};

static int have(const char *tool)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

/* Compiles `#include <hdr>` with `compiler` and `flags`; returns the exit
 * status, with the compiler's messages on stderr. */
static int compile(const char *compiler, const char *flags, const char *ext,
                   const char *hdr)
{
	char src[] = "/tmp/evapi-hdr-XXXXXX";
	char path[64], cmd[2048];
	FILE *f;
	int fd = mkstemp(src), rc;

	CHECK(fd >= 0);
	if (fd < 0)
		return -1;
	close(fd);
	unlink(src);
	snprintf(path, sizeof path, "%s.%s", src, ext);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return -1;
	/* a user's file: the header first, then some use of it */
	fprintf(f, "#include <%s>\n#include <evapi.h>\n"
	           "int main(void) { return evapi_strerror(0) == 0; }\n", hdr);
	fclose(f);
	snprintf(cmd, sizeof cmd,
	         "%s %s -Wall -Wextra -Wpedantic -Werror -fsyntax-only "
	         "-I'%s/include' $(pkg-config --cflags jansson) '%s'",
	         compiler, flags, TOP_SRCDIR, path);
	rc = system(cmd);
	unlink(path);
	if (rc != 0)
		fprintf(stderr, "  failed: %s\n", cmd);
	return rc;
}

static void test_c99_pedantic(void)
{
	int i;
	if (!have("gcc")) {
		TH_SKIP("gcc not installed");
		return;
	}
	for (i = 0; headers[i]; i++)
		CHECK_INT(compile("gcc", "-std=c99", "c", headers[i]), ==, 0);
}

static void test_cxx17_pedantic(void)
{
	int i;
	if (!have("g++")) {
		TH_SKIP("g++ not installed");
		return;
	}
	for (i = 0; headers[i]; i++)
		CHECK_INT(compile("g++", "-std=c++17", "cc", headers[i]), ==, 0);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"headers.c99_pedantic", test_c99_pedantic},
		{"headers.cxx17_pedantic", test_cxx17_pedantic},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
