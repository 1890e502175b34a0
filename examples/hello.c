/* hello.c: the smallest evapi app: one inline route, one pool route. */
#include <evapi.h>
#include <unistd.h>

static void hello(evapi_req *req, void *arg)
{
	evapi_reply_json(req, 200, json_pack("{s:s}", "Hello", "World"));
}

static void blocking(evapi_req *req, void *arg)
{
	sleep(1); /* fine here: this runs on a pool worker */
	evapi_reply_json(req, 200, json_pack("{s:s}", "slept", "1s"));
}

int main(void)
{
	evapi_app *app = evapi_app_new(NULL); /* 127.0.0.1:8000, 40 workers */
	evapi_app_route(app, EVAPI_GET, "/", EVAPI_INLINE, hello, NULL);
	evapi_app_route(app, EVAPI_GET, "/blocking", EVAPI_POOL, blocking, NULL);
	int rc = evapi_app_run(app); /* until SIGINT/SIGTERM */
	evapi_app_free(app);
	return rc == 0 ? 0 : 1;
}
