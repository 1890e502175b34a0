/*
 * kore_hello.c: the Kore peer: a Kore module answering the hello JSON,
 * and TechEmpower's json (jansson per request, as the other C peers) and
 * plaintext. Built by bench/run as a shared object its kore.conf loads.
 * Kore adds its own Server header but no Date, which TechEmpower's rules
 * require: the TechEmpower routes add one, formatted once a second.
 */
#include <kore/kore.h>
#include <kore/http.h>

#include <jansson.h>
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

static void date_header(struct http_request *req)
{
	static const char *wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
	                           "Sat"};
	static const char *mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static time_t last;
	static char date[40];
	time_t now = time(NULL);
	struct tm tm;

	if (now != last && gmtime_r(&now, &tm)) {
		snprintf(date, sizeof date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
		         wd[tm.tm_wday], tm.tm_mday, mo[tm.tm_mon],
		         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
		last = now;
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
