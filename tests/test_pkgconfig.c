/*
 * test_pkgconfig.c: the installed evapi.pc, used as a user would. The
 * build is installed into a temporary DESTDIR; then examples/hello.c is
 * compiled with `pkg-config --cflags evapi` and linked against the
 * static libevapi.a with `pkg-config --static --libs evapi` and nothing
 * else: a library the archive needs (libcurl, libevent, jansson,
 * pthreads, libm) missing from evapi.pc fails the link. The system
 * libraries themselves are linked dynamically: a fully static glibc
 * program cannot use NSS, which getaddrinfo needs.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#if !defined(TOP_SRCDIR) || !defined(ABS_BUILDDIR) || !defined(SAN_FLAGS)
#error "TOP_SRCDIR, ABS_BUILDDIR and SAN_FLAGS must be defined"
#endif

static char tmp[] = "/tmp/evapi-pc-XXXXXX";

/* Runs a shell command; its output goes to `log` inside tmp. */
static int sh(const char *fmt, const char *a, const char *b)
{
	char cmd[16384];
	int rc;
	snprintf(cmd, sizeof cmd, fmt, a, b);
	rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "  failed (%d): %s\n", rc, cmd);
	return rc;
}

/* The first line a command prints (NUL-terminated, newline removed). */
static void first_line(const char *cmd, char *out, size_t cap)
{
	FILE *p = popen(cmd, "r");
	out[0] = '\0';
	if (!p)
		return;
	if (fgets(out, (int)cap, p))
		out[strcspn(out, "\n")] = '\0';
	pclose(p);
}

/*
 * Copies the flags of `libs` but -levapi and the -lX the system has
 * neither libX.so nor libX.a for. Those are libcurl's own private
 * dependencies (-lldap, -lzstd...), which pkg-config --static lists for
 * a fully static program and which Debian installs only with their -dev
 * packages; a program linked against the shared libcurl never needs
 * them. Anything libevapi.a itself needs and that is missing still
 * fails the link.
 */
static void keep_linkable(const char *libs, char *out, size_t cap)
{
	char copy[2048], cmd[256], found[1024], *tok, *save = NULL;
	size_t o = 0;

	snprintf(copy, sizeof copy, "%s", libs);
	out[0] = '\0';
	for (tok = strtok_r(copy, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		if (strcmp(tok, "-levapi") == 0)
			continue;
		if (strncmp(tok, "-l", 2) == 0) {
			snprintf(cmd, sizeof cmd, "cc -print-file-name=lib%s.so",
			         tok + 2);
			first_line(cmd, found, sizeof found);
			if (!strchr(found, '/')) {
				snprintf(cmd, sizeof cmd,
				         "cc -print-file-name=lib%s.a", tok + 2);
				first_line(cmd, found, sizeof found);
			}
			if (!strchr(found, '/'))
				continue;
		}
		o += (size_t)snprintf(out + o, cap - o, " %s", tok);
		if (o >= cap)
			break;
	}
}

static void test_static_link_through_pkgconfig(void)
{
	char env[2200], cmd[8192], libs[2048], kept[2048], libdir[1024];

	if (system("command -v pkg-config >/dev/null 2>&1") != 0) {
		TH_SKIP("pkg-config not installed");
		return;
	}
	CHECK(mkdtemp(tmp) != NULL);
	CHECK_INT(sh("make -s -C '%s' install DESTDIR='%s' >/dev/null 2>&1",
	             ABS_BUILDDIR, tmp), ==, 0);
	/* where make install put evapi.pc, under DESTDIR */
	snprintf(cmd, sizeof cmd,
	         "find '%s' -name evapi.pc -path '*/pkgconfig/*' | head -1", tmp);
	first_line(cmd, libdir, sizeof libdir);
	CHECK(libdir[0] != '\0');
	if (!libdir[0])
		goto out;
	*strrchr(libdir, '/') = '\0'; /* .../lib/pkgconfig */
	snprintf(env, sizeof env,
	         "PKG_CONFIG_PATH='%s' PKG_CONFIG_SYSROOT_DIR='%s'", libdir,
	         tmp);
	*strrchr(libdir, '/') = '\0'; /* .../lib */

	snprintf(cmd, sizeof cmd, "%s pkg-config --static --libs evapi", env);
	first_line(cmd, libs, sizeof libs);
	CHECK_CONTAINS(libs, "-levapi");
	CHECK_CONTAINS(libs, "-lcurl");
	CHECK_CONTAINS(libs, "-levent ");
	CHECK_CONTAINS(libs, "-levent_pthreads");
	CHECK_CONTAINS(libs, "-ljansson");
	CHECK_CONTAINS(libs, "-pthread");
	CHECK_CONTAINS(libs, "-lm");

	/* libevapi.a in place of -levapi, everything else from evapi.pc */
	keep_linkable(libs, kept, sizeof kept);
	snprintf(cmd, sizeof cmd,
	         "cc %s -o '%s/hello' '%s/examples/hello.c' "
	         "$(%s pkg-config --cflags evapi) '%s/libevapi.a' %s",
	         SAN_FLAGS, tmp, TOP_SRCDIR, env, libdir, kept);
	CHECK_INT(sh("%s%s", cmd, ""), ==, 0);
	/* and the program does not need the shared libevapi */
	CHECK_INT(sh("test -x '%s/hello' && ! readelf -d '%s/hello' | "
	             "grep -q 'libevapi'", tmp, tmp), ==, 0);
out:
	sh("rm -rf '%s'%s", tmp, "");
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"pkgconfig.static_link", test_static_link_through_pkgconfig},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
