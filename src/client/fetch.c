/*
 * fetch.c: one outbound call's setup and result, shared by the loop
 * client (client.c) and the blocking fetch (client_sync.c): option
 * checking, the defaults that are always on (timeouts, low-speed abort,
 * reply cap, http/https only), the write callbacks that enforce the cap,
 * libcurl's codes mapped to evapi's, the result accessors and the 502/504
 * reply.
 *
 * Threads: whichever thread owns the easy handle; nothing here is shared.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fetch.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

static void curl_init_once(void)
{
	curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

int evapi__curl_init(void)
{
	pthread_once(&curl_once, curl_init_once);
	return curl_ok ? 0 : EVAPI_ENOMEM;
}

/* ---- receiving ---------------------------------------------------------- */

/* Appends to a growable NUL-terminated buffer, refusing past res->max
 * (header and body bytes together). */
static int append(evapi_fetch_res *res, char **buf, size_t *len, size_t *cap,
                  const char *data, size_t n)
{
	size_t want;

	if (res->len + res->hlen + n > res->max) {
		res->too_big = 1;
		return -1;
	}
	want = *len + n + 1;
	if (want > *cap) {
		size_t c = *cap ? *cap : 1024;
		char *p;
		while (c < want)
			c *= 2;
		if (!(p = realloc(*buf, c)))
			return -1;
		*buf = p;
		*cap = c;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	evapi_fetch_res *res = arg;
	/* a short count makes curl fail the transfer with CURLE_WRITE_ERROR */
	if (append(res, &res->body, &res->len, &res->cap, data, size * n) < 0)
		return 0;
	return size * n;
}

/* Keeps the header lines of the last response only (a redirect or a
 * 100 Continue starts a new one), each stored as "Name: value\0". */
size_t evapi__fetch_on_header(char *data, size_t size, size_t n, void *arg)
{
	evapi_fetch_res *res = arg;
	size_t len = size * n, keep = len;

	/* a stream of 1xx responses or redirects must not get around the cap
	 * by restarting the stored section */
	res->hseen += len;
	if (res->hseen > EVAPI__FETCH_MAX_HEADER_BYTES || res->hseen > res->max) {
		res->too_big = 1;
		return 0;
	}

	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		res->hlen = 0;
		res->len = 0; /* an earlier response's body, if any */
		return len;
	}
	while (keep && (data[keep - 1] == '\n' || data[keep - 1] == '\r' ||
	                data[keep - 1] == ' ' || data[keep - 1] == '\t'))
		keep--;
	if (keep == 0)
		return len; /* the blank line ending the section */
	if (append(res, &res->hdrs, &res->hlen, &res->hcap, data, keep) < 0 ||
	    append(res, &res->hdrs, &res->hlen, &res->hcap, "", 1) < 0)
		return 0;
	/* count the terminator as part of the stored line */
	return len;
}

/* Counts every byte received, including the bodies of redirects that curl
 * reads and drops without calling on_body. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
	evapi_fetch_res *res = arg;
	if (dlnow > 0 && (size_t)dlnow > res->max) {
		res->too_big = 1;
		return 1;
	}
	return 0;
}

/* ---- setup -------------------------------------------------------------- */

/* "Name: value" with a token for a name. */
static int header_ok(const char *h)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~";
	const char *p;
	if (strpbrk(h, "\r\n"))
		return 0;
	for (p = h; *p && *p != ':'; p++)
		if (!isalnum((unsigned char)*p) && !strchr(tchar, *p))
			return 0;
	return *p == ':' && p > h;
}

static int method_ok(const char *m)
{
	size_t i;
	for (i = 0; m[i]; i++)
		if (!isupper((unsigned char)m[i]) || i >= 16)
			return 0;
	return i > 0;
}

static int scheme_ok(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	int ok = 0;

	if (!u)
		return 0;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		ok = strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0;
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

int evapi__fetch_prepare(CURL *e, const evapi_fetch_opts *o,
                         const evapi__fetch_defaults *d, evapi_fetch_res *res,
                         struct curl_slist **hdrs)
{
	const char *method = o->method;
	struct curl_slist *list = NULL, *l;
	const char *const *h;
	int has_expect = 0;
	unsigned timeout = o->timeout_ms ? o->timeout_ms : d->timeout_ms;
	unsigned connect = o->connect_timeout_ms ? o->connect_timeout_ms
	                                         : d->connect_timeout_ms;
	/* curl counts the low-speed window in whole seconds */
	unsigned low = o->low_speed_time_ms ? (o->low_speed_time_ms + 999) / 1000
	                                    : EVAPI__FETCH_LOW_SPEED_S;

	*hdrs = NULL;
	if (!o->url || !scheme_ok(o->url) || (method && !method_ok(method)) ||
	    (o->body_len && !o->body) ||
	    (o->body && method && strcmp(method, "HEAD") == 0))
		return EVAPI_EINVAL;
	for (h = o->headers; h && *h; h++) {
		if (!header_ok(*h))
			goto inval;
		if (strncasecmp(*h, "Expect:", 7) == 0)
			has_expect = 1;
		if (!(l = curl_slist_append(list, *h)))
			goto nomem;
		list = l;
	}
	/* curl would wait up to a second for "100 Continue" before sending a
	 * body: a needless stall against most servers. */
	if (o->body && !has_expect) {
		if (!(l = curl_slist_append(list, "Expect:")))
			goto nomem;
		list = l;
	}
	res->max = o->max_response_bytes ? o->max_response_bytes
	                                 : d->max_response_bytes;
	res->start_us = evapi__now_us();

	curl_easy_setopt(e, CURLOPT_URL, o->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)low);
	/* The cap counts bytes received (on_progress, on_body, on_header), not
	 * Content-Length: a HEAD of a large object is fine, and a redirect's
	 * dropped body is counted too. */
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, res);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, res);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, evapi__fetch_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, res);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, res->errmsg);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
	if (o->follow_redirects) {
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	}
	if (o->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)o->body_len);
		/* copied: the caller's buffer may die before the transfer */
		curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body);
		if (method && strcmp(method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	} else if (method && strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (method && strcmp(method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	*hdrs = list;
	return 0;
inval:
	curl_slist_free_all(list);
	return EVAPI_EINVAL;
nomem:
	curl_slist_free_all(list);
	return EVAPI_ENOMEM;
}

/* ---- outcome ------------------------------------------------------------ */

static int map_code(CURLcode rc, const evapi_fetch_res *res)
{
	if (res->too_big)
		return EVAPI_ETOOBIG;
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return EVAPI_ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return EVAPI_ECONNREFUSED;
	case CURLE_FILESIZE_EXCEEDED:
		return EVAPI_ETOOBIG;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return EVAPI_ECONNRESET;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL: /* an HTTP/0.9-looking reply */
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_TOO_MANY_REDIRECTS:
		return EVAPI_EPROTO;
	default:
		return EVAPI_EUPSTREAM;
	}
}

void evapi__fetch_complete(CURL *e, CURLcode rc, evapi_fetch_res *res)
{
	long code = 0;

	res->ms = (double)(evapi__now_us() - res->start_us) / 1000.0;
	res->error = map_code(rc, res);
	if (res->error == 0) {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		res->status = (int)code;
	} else {
		res->status = 0;
		if (!res->errmsg[0])
			snprintf(res->errmsg, sizeof res->errmsg, "%s",
			         curl_easy_strerror(rc));
	}
}

void evapi__fetch_res_fail(evapi_fetch_res *res, int error)
{
	res->error = error;
	res->status = 0;
	if (res->start_us)
		res->ms = (double)(evapi__now_us() - res->start_us) / 1000.0;
	snprintf(res->errmsg, sizeof res->errmsg, "%s", evapi_strerror(error));
}

void evapi__fetch_res_clear(evapi_fetch_res *res)
{
	free(res->body);
	free(res->hdrs);
	res->body = res->hdrs = NULL;
	res->len = res->cap = res->hlen = res->hcap = 0;
}

int evapi_fetch_res_error(const evapi_fetch_res *res)
{
	return res ? res->error : EVAPI_EINVAL;
}

const char *evapi_fetch_res_errmsg(const evapi_fetch_res *res)
{
	return res && res->error ? res->errmsg : "";
}

int evapi_fetch_res_status(const evapi_fetch_res *res)
{
	return res ? res->status : 0;
}

int evapi_fetch_res_ok(const evapi_fetch_res *res)
{
	return res && res->error == 0 && res->status >= 200 &&
	       res->status < 300;
}

const char *evapi_fetch_res_body(const evapi_fetch_res *res, size_t *len)
{
	if (len)
		*len = res && res->body ? res->len : 0;
	return res && res->body ? res->body : "";
}

const char *evapi__fetch_res_header_at(const evapi_fetch_res *res,
                                      const char *name, int i)
{
	size_t n;
	const char *p, *end;

	if (!res || !name || !res->hdrs || i < 0)
		return NULL;
	n = strlen(name);
	for (p = res->hdrs, end = res->hdrs + res->hlen; p < end;
	     p += strlen(p) + 1) {
		if (strncasecmp(p, name, n) != 0 || p[n] != ':' || i-- > 0)
			continue;
		for (p += n + 1; *p == ' ' || *p == '\t'; p++)
			;
		return p;
	}
	return NULL;
}

const char *evapi_fetch_res_header(const evapi_fetch_res *res,
                                   const char *name)
{
	return evapi__fetch_res_header_at(res, name, 0);
}

json_t *evapi_fetch_res_json(const evapi_fetch_res *res, json_error_t *err)
{
	json_error_t local;
	if (!res || res->error || !res->body) {
		if (err) {
			memset(err, 0, sizeof *err);
			snprintf(err->text, sizeof err->text, "no reply body");
		}
		return NULL;
	}
	return json_loadb(res->body, res->len, JSON_REJECT_DUPLICATES,
	                  err ? err : &local);
}

double evapi_fetch_res_ms(const evapi_fetch_res *res)
{
	return res ? res->ms : 0.0;
}

int evapi_fetch_res_gateway_status(const evapi_fetch_res *res)
{
	if (!res)
		return 502;
	if (res->error == EVAPI_ETIMEDOUT)
		return 504;
	if (res->error || res->status < 200 || res->status >= 300)
		return 502;
	return 0;
}

int evapi_reply_upstream_error(evapi_req *req, const evapi_fetch_res *res)
{
	int status = evapi_fetch_res_gateway_status(res);
	char detail[160];

	if (status == 0)
		return EVAPI_EINVAL;
	if (res && res->error == EVAPI_ETIMEDOUT)
		snprintf(detail, sizeof detail, "Upstream timed out");
	else if (res && res->error)
		snprintf(detail, sizeof detail, "Bad gateway: %s",
		         evapi_strerror(res->error));
	else
		snprintf(detail, sizeof detail,
		         "Bad gateway: upstream answered %d",
		         res ? res->status : 0);
	return evapi_reply_error(req, status, detail);
}
