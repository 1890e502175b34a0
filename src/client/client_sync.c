/*
 * client_sync.c: the blocking fetch for pool handlers and application
 * threads (the `requests.get` of a plain `def` route).
 *
 * Threads: any thread but a loop thread. Each thread keeps one easy
 * handle of its own (thread-specific data, cleaned up when the thread
 * exits), so calls from one worker reuse its connections and no handle is
 * ever shared between threads. A loop thread is refused: a blocking call
 * there stalls every connection of the app.
 */
#include <pthread.h>
#include <stdlib.h>

#include "fetch.h"

static pthread_key_t easy_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

static void easy_destroy(void *p)
{
	curl_easy_cleanup(p);
}

static void key_init(void)
{
	key_ok = pthread_key_create(&easy_key, easy_destroy) == 0;
}

static CURL *thread_easy(void)
{
	CURL *e;

	pthread_once(&key_once, key_init);
	if (!key_ok)
		return NULL;
	if ((e = pthread_getspecific(easy_key))) {
		curl_easy_reset(e);
		return e;
	}
	if (!(e = curl_easy_init()))
		return NULL;
	if (pthread_setspecific(easy_key, e) != 0) {
		curl_easy_cleanup(e);
		return NULL;
	}
	return e;
}

evapi_fetch_res *evapi_fetch_sync(const evapi_fetch_opts *opts)
{
	static const evapi__fetch_defaults builtin = {
		EVAPI__FETCH_TIMEOUT_MS, EVAPI__FETCH_CONNECT_MS,
		EVAPI__FETCH_MAX_BYTES
	};
	const evapi_app *app = evapi__thread_app();
	const evapi__fetch_defaults *d =
		app && app->client ? evapi__client_defaults(app->client)
		                   : &builtin;
	evapi_fetch_res *res = calloc(1, sizeof *res);
	struct curl_slist *hdrs = NULL;
	CURL *e;
	CURLcode rc;
	int err;

	if (!res)
		return NULL;
	if (evapi__thread_role() == EVAPI__THREAD_LOOP) {
		evapi__fetch_res_fail(res, EVAPI_ETHREAD);
		return res;
	}
	if (!opts) {
		evapi__fetch_res_fail(res, EVAPI_EINVAL);
		return res;
	}
	if (evapi__curl_init() != 0 || !(e = thread_easy())) {
		free(res);
		return NULL;
	}
	if ((err = evapi__fetch_prepare(e, opts, d, res, &hdrs)) != 0) {
		evapi__fetch_res_fail(res, err);
		return res;
	}
	rc = curl_easy_perform(e);
	evapi__fetch_complete(e, rc, res);
	/* the handle outlives this call: drop pointers into `res` and the
	 * header list now */
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(hdrs);
	return res;
}

void evapi_fetch_res_free(evapi_fetch_res *res)
{
	if (!res)
		return;
	evapi__fetch_res_clear(res);
	free(res);
}
