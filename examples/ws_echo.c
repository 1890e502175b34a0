#include <evapi.h>

static void echo(evapi_ws *ws, int bin, const char *d, size_t n, void *arg)
{
	bin ? evapi_ws_send_bytes(ws, d, n) : evapi_ws_send_text(ws, d);
}

int main(void)
{
	evapi_app *app = evapi_app_new(NULL); /* 127.0.0.1:8000 */
	evapi_app_websocket(app, "/ws/echo", NULL, NULL, echo, NULL, NULL);
	return evapi_app_run(app); /* until SIGINT/SIGTERM */
}
