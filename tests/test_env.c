/*
 * test_env.c: the configuration read from the environment
 * (evapi_config_from_env, src/env.c): every kind of member, every way a
 * value can be wrong, and the README table against the config struct.
 */
#include "harness.h"

#include <ctype.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "../src/internal.h"

/* Unsets every EVAPI_* variable the table knows, so tests start clean. */
static void clear_env(void)
{
	const char *name;
	size_t i;
	for (i = 0; (name = evapi__config_env_name(i, NULL)); i++)
		unsetenv(name);
}

static void env_unset_keeps_config(void)
{
	evapi_config cfg, before;
	evapi_error err = {0, ""};

	clear_env();
	evapi_config_init(&cfg);
	cfg.port = 1234; /* a code override made before is kept */
	before = cfg;
	CHECK_INT(evapi_config_from_env(&cfg, &err), ==, 0);
	CHECK(memcmp(&cfg, &before, sizeof cfg) == 0);
	CHECK_INT(evapi_config_from_env(NULL, &err), ==, EVAPI_EINVAL);
}

static void env_each_kind(void)
{
	evapi_config cfg;
	evapi_error err = {0, ""};
	evapi_app *app;

	clear_env();
	setenv("EVAPI_HOST", "0.0.0.0", 1);                  /* string */
	setenv("EVAPI_PORT", "0", 1);                        /* int */
	setenv("EVAPI_POOL_THREADS", "3", 1);
	setenv("EVAPI_REQUEST_TIMEOUT_MS", "+2500", 1);
	setenv("EVAPI_MAX_BODY_BYTES", "2048", 1);          /* size_t */
	setenv("EVAPI_OUTBOUND_MAX_RESPONSE_BYTES", "5000000000", 1);
	setenv("EVAPI_OPENAPI", "yes", 1);                   /* switches */
	setenv("EVAPI_ACCESS_LOG", "off", 1);
	setenv("EVAPI_HANDLE_SIGNALS", "0", 1);
	setenv("EVAPI_STATS_ROUTES", "TRUE", 1);
	setenv("EVAPI_LOG_LEVEL", "debug", 1);               /* level */
	setenv("EVAPI_DB_URL", "", 1);                       /* none */
	evapi_config_init(&cfg);
	cfg.db_url = "postgresql://x@127.0.0.1/y";
	CHECK_INT(evapi_config_from_env(&cfg, &err), ==, 0);
	CHECK_STR(cfg.host, "0.0.0.0");
	CHECK_INT(cfg.port, ==, 0);
	CHECK_INT(cfg.pool_threads, ==, 3);
	CHECK_INT(cfg.request_timeout_ms, ==, 2500);
	CHECK_INT(cfg.max_body_bytes, ==, 2048);
	CHECK(cfg.outbound_max_response_bytes == (size_t)5000000000ULL);
	CHECK_INT(cfg.openapi, ==, 1);
	CHECK_INT(cfg.access_log, ==, 0);
	CHECK_INT(cfg.handle_signals, ==, 0);
	CHECK_INT(cfg.stats_routes, ==, 1);
	CHECK_INT(cfg.log_level, ==, EVAPI_LOG_DEBUG);
	CHECK(cfg.db_url == NULL);
	CHECK_INT(cfg.idle_timeout_ms, ==, 5000); /* unset: default */
	setenv("EVAPI_LOG_LEVEL", "1", 1);
	CHECK_INT(evapi_config_from_env(&cfg, &err), ==, 0);
	CHECK_INT(cfg.log_level, ==, EVAPI_LOG_WARN);

	/* the result is a config evapi_app_new accepts */
	setenv("EVAPI_HOST", "127.0.0.1", 1);
	evapi_config_init(&cfg);
	th_config(&cfg);
	CHECK_INT(evapi_config_from_env(&cfg, &err), ==, 0);
	app = evapi_app_new_ex(&cfg, &err);
	CHECK(app != NULL);
	if (app) {
		evapi_stats st;
		evapi_app_stats(app, &st);
		CHECK_INT(st.pool_threads, ==, 3);
	}
	evapi_app_free(app);
	clear_env();
}

static void env_bad_value_refused_with_its_name(void)
{
	static const struct {
		const char *name, *value, *says;
	} bad[] = {
		{"EVAPI_PORT", "abc", "not a whole number"},
		{"EVAPI_PORT", "80x", "not a whole number"},   /* junk */
		{"EVAPI_PORT", " 80", "not a whole number"},
		{"EVAPI_PORT", "80 ", "not a whole number"},
		{"EVAPI_PORT", "", "not a whole number"},
		{"EVAPI_PORT", "0x50", "not a whole number"},
		{"EVAPI_PORT", "65536", "must be 0..65535"},   /* range */
		{"EVAPI_POOL_THREADS", "0", "config.pool_threads = 0: must be 1..4096"},
		{"EVAPI_POOL_THREADS", "3000000000", "out of range"}, /* int */
		{"EVAPI_REQUEST_TIMEOUT_MS", "-5", "must be 1.."},
		{"EVAPI_MAX_BODY_BYTES", "99999999999999999999", "out of range"},
		{"EVAPI_MAX_BODY_BYTES", "-1", "not a whole number"},
		{"EVAPI_MAX_HEADER_BYTES", "100", "must be 256.."},
		{"EVAPI_MAX_BODY_BYTES", "1M", "not a whole number"},
		{"EVAPI_OPENAPI", "maybe", "must be 0/1"},
		{"EVAPI_ACCESS_LOG", "2", "must be 0/1"},
		{"EVAPI_LOG_LEVEL", "loud", "must be error, warn"},
		{"EVAPI_LOG_LEVEL", "4", "must be error, warn"},
		{"EVAPI_HOST", "", "is empty"},
		{"EVAPI_DB_STATEMENT_CACHE", "-1", "must be 0.."},
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		evapi_config cfg, before;
		evapi_error err = {0, ""};
		clear_env();
		setenv("EVAPI_WORKERS", "2", 1); /* valid: not applied either */
		setenv(bad[i].name, bad[i].value, 1);
		evapi_config_init(&cfg);
		before = cfg;
		CHECK_INT(evapi_config_from_env(&cfg, &err), ==, EVAPI_EINVAL);
		CHECK_INT(err.code, ==, EVAPI_EINVAL);
		CHECK_CONTAINS(err.text, bad[i].name);
		CHECK_CONTAINS(err.text, bad[i].says);
		CHECK(memcmp(&cfg, &before, sizeof cfg) == 0);
		/* err may be NULL */
		CHECK_INT(evapi_config_from_env(&cfg, NULL), ==, EVAPI_EINVAL);
	}
	clear_env();
}

/* Every member of evapi_config (read from the header) has its variable,
 * named EVAPI_<MEMBER>, and the README's table lists every variable. */
static void env_every_member_has_a_variable_in_the_readme(void)
{
	char path[1024], line[512], *readme = NULL;
	size_t len = 0, cap = 0, members = 0;
	int in_struct = 0;
	FILE *f;

	snprintf(path, sizeof path, "%s/README.md", TOP_SRCDIR);
	if ((f = fopen(path, "r"))) {
		while (fgets(line, sizeof line, f)) {
			size_t n = strlen(line);
			if (len + n + 1 > cap) {
				cap = (len + n + 1) * 2;
				readme = realloc(readme, cap);
			}
			memcpy(readme + len, line, n + 1);
			len += n;
		}
		fclose(f);
	}
	CHECK(readme != NULL);
	snprintf(path, sizeof path, "%s/include/evapi/app.h", TOP_SRCDIR);
	f = fopen(path, "r");
	CHECK(f != NULL);
	while (f && fgets(line, sizeof line, f)) {
		char member[64], want[80], *semi, *p;
		const char *name, *m;
		size_t i;
		int found = 0;

		if (strstr(line, "typedef struct evapi_config {"))
			in_struct = 1;
		else if (strstr(line, "} evapi_config;"))
			in_struct = 0;
		/* a member line: a tab, a type, the name, ';' before any comment */
		if (!in_struct || line[0] != '\t' || line[1] == ' ' ||
		    line[1] == '/' || !(semi = strchr(line, ';')) ||
		    (strstr(line, "/*") && strstr(line, "/*") < semi))
			continue;
		for (p = semi; p > line && (p[-1] == '_' || (p[-1] >= 'a' &&
		     p[-1] <= 'z')); p--)
			;
		snprintf(member, sizeof member, "%.*s", (int)(semi - p), p);
		if (!strcmp(member, "log_cb") || !strcmp(member, "log_arg"))
			continue;
		members++;
		for (i = 0; (name = evapi__config_env_name(i, &m)); i++)
			if (!strcmp(m, member)) {
				found = 1;
				break;
			}
		if (!found) {
			TH_FAIL_AT("config.%s has no environment variable",
			           member);
			continue;
		}
		snprintf(want, sizeof want, "| `%s` |", name);
		CHECK_CONTAINS(readme ? readme : "", want);
		for (p = member; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		CHECK_STR(name + 6, member);
	}
	if (f)
		fclose(f);
	CHECK_INT(members, >=, 30);
	free(readme);
}

/* The demo reads its settings from the environment and refuses a bad one
 * by name before binding anything. */
static void env_demo_refuses_a_bad_variable(void)
{
	char cmd[1200], out[512] = "";
	size_t n;
	FILE *p;
	int st;

	snprintf(cmd, sizeof cmd,
	         "EVAPI_POOL_THREADS=12abc %s/examples/demo --port 0 2>&1",
	         TOP_BUILDDIR);
	p = popen(cmd, "r");
	CHECK(p != NULL);
	if (!p)
		return;
	n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	st = pclose(p);
	CHECK(WIFEXITED(st));
	CHECK_INT(WEXITSTATUS(st), ==, 2);
	CHECK_CONTAINS(out, "EVAPI_POOL_THREADS=\"12abc\": not a whole number");
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"env.unset_keeps_config", env_unset_keeps_config},
		{"env.each_kind", env_each_kind},
		{"env.bad_value_refused_with_its_name",
		 env_bad_value_refused_with_its_name},
		{"env.every_member_has_a_variable_in_the_readme",
		 env_every_member_has_a_variable_in_the_readme},
		{"env.demo_refuses_a_bad_variable",
		 env_demo_refuses_a_bad_variable},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
