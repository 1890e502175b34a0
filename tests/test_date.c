/*
 * test_date.c: the Date header evapi sends on every reply (reactor.c,
 * http_date): RFC 9110's IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
 * close to the clock, with English day and month names whatever locale
 * the application has set (strftime's %a and %b follow LC_TIME).
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "harness.h"

#include <evapi/testing.h>
#include <locale.h>
#include <regex.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void hello(evapi_req *req, void *arg)
{
	evapi_reply_add_header(req, "Server", "evapi");
	evapi_reply_bytes(req, 200, "text/plain", "Hello, World!", 13);
}

/* Gets /plaintext and checks its Date and Server headers. */
static void check_date(void)
{
	static const char imf[] =
		"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
		"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
		"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$";
	evapi_config cfg;
	evapi_app *app;
	evapi_test *tc;
	evapi_test_response *r;
	const char *date;
	regex_t re;
	struct tm tm;
	time_t now;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/plaintext", EVAPI_INLINE, hello, NULL);
	tc = evapi_test_start(app);
	CHECK(tc != NULL);
	if (!tc)
		return;
	r = evapi_test_get(tc, "/plaintext");
	CHECK_INT(evapi_test_status(r), ==, 200);
	CHECK_STR(evapi_test_header(r, "Server"), "evapi");
	date = evapi_test_header(r, "Date");
	CHECK(date != NULL);
	CHECK_INT(regcomp(&re, imf, REG_EXTENDED | REG_NOSUB), ==, 0);
	if (date) {
		int ok = regexec(&re, date, 0, NULL, 0) == 0;
		if (!ok)
			fprintf(stderr, "  Date: %s\n", date);
		CHECK(ok);
		memset(&tm, 0, sizeof tm);
		/* strptime in the C locale, whatever the app set */
		{
			locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
			locale_t old = uselocale(c);
			if (ok && strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
				now = time(NULL);
				CHECK_INT(llabs((long long)(timegm(&tm) - now)), <=, 5);
			}
			uselocale(old);
			freelocale(c);
		}
	}
	regfree(&re);
	evapi_test_response_free(r);
	CHECK_INT(evapi_test_stop(tc), ==, 0);
}

static void test_imf_fixdate(void)
{
	check_date();
}

/* An app that calls setlocale (for its own messages, say) must not turn
 * the Date into "Mo, 30 Nov 2026": clients parse English names only. A
 * German locale is compiled into a temporary directory for this. */
static void test_imf_fixdate_in_german_locale(void)
{
	char dir[] = "/tmp/evapi-locale-XXXXXX", cmd[256];

	if (!mkdtemp(dir)) {
		TH_SKIP("no temporary directory");
		return;
	}
	snprintf(cmd, sizeof cmd,
	         "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1",
	         dir);
	if (system(cmd) != 0) {
		TH_SKIP("localedef cannot build de_DE.UTF-8 (package locales)");
	} else {
		setenv("LOCPATH", dir, 1);
		if (!setlocale(LC_ALL, "de_DE.UTF-8")) {
			TH_SKIP("de_DE.UTF-8 not loadable");
		} else {
			check_date();
			setlocale(LC_ALL, "C");
		}
		unsetenv("LOCPATH");
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"date.imf_fixdate", test_imf_fixdate},
		{"date.imf_fixdate_in_german_locale",
		 test_imf_fixdate_in_german_locale},
		{NULL, NULL}};
	return th_main(argc, argv, tests);
}
