/*
 * kore_hello.c: the Kore peer: a Kore module answering the hello JSON,
 * and TechEmpower's json (jansson per request, as the other C peers) and
 * plaintext. Built by bench/run as a shared object its kore.conf loads.
 * Kore adds its own Server header but no Date, which TechEmpower's rules
 * require: the TechEmpower routes add one.
 */
#include <kore/kore.h>
#include <kore/http.h>

#include <jansson.h>
#include <stdio.h>
#include <time.h>

int hello(struct http_request *);
int tfb_json(struct http_request *);
int tfb_plaintext(struct http_request *);

static const char body[] = "{\"Hello\":\"World\"}";

int hello(struct http_request *req)
{
	http_response_header(req, "content-type", "application/json");
	http_response(req, 200, body, sizeof body - 1);
	return KORE_RESULT_OK;
}

/* Formatted by hand once a second: a worker runs under seccomp, where
 * time(2) (without a vDSO) and gmtime's first look at /etc/localtime
 * are both fatal; clock_gettime is what Kore itself uses. */
static void date_header(struct http_request *req)
{
	static const char *wd[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue",
	                           "Wed"}; /* 1970-01-01 was a Thursday */
	static const char *mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static long long last = -1;
	static char date[64];
	struct timespec ts;
	long long t, days, z, era, doe, yoe, y, doy, mp, d, m, sec;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return;
	t = ts.tv_sec;
	if (t != last) {
		/* civil date from days since the epoch (H. Hinnant's algorithm) */
		days = t / 86400;
		sec = t % 86400;
		z = days + 719468;
		era = z / 146097;
		doe = z - era * 146097;
		yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
		y = yoe + era * 400;
		doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
		mp = (5 * doy + 2) / 153;
		d = doy - (153 * mp + 2) / 5 + 1;
		m = mp < 10 ? mp + 3 : mp - 9;
		y += m <= 2;
		snprintf(date, sizeof date,
		         "%s, %02lld %s %04lld %02lld:%02lld:%02lld GMT",
		         wd[days % 7], d, mo[m - 1], y, sec / 3600,
		         sec / 60 % 60, sec % 60);
		last = t;
	}
	http_response_header(req, "date", date);
}

int tfb_json(struct http_request *req)
{
	json_t *o = json_pack("{s:s}", "message", "Hello, World!");
	char buf[64];
	size_t n = o ? json_dumpb(o, buf, sizeof buf, JSON_COMPACT) : 0;

	json_decref(o);
	date_header(req);
	http_response_header(req, "content-type", "application/json");
	http_response(req, 200, buf, n <= sizeof buf ? n : 0);
	return KORE_RESULT_OK;
}

int tfb_plaintext(struct http_request *req)
{
	static const char text[] = "Hello, World!";
	date_header(req);
	http_response_header(req, "content-type", "text/plain");
	http_response(req, 200, text, sizeof text - 1);
	return KORE_RESULT_OK;
}
