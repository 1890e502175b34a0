/*
 * test_ws_node.c: node's ws library (npm, pinned in tests/wsnode and
 * installed by .ci/deps) as a second strict third-party peer of
 * WebSocket routes: tests/wsnode/peer.mjs drives echo (text, binary,
 * the length boundaries), a fragmented message with a ping inside,
 * pings, close codes both ways, 1007, 1009, a subprotocol, the server's
 * idle pings and a refused upgrade against a live app. SKIP only when
 * node itself is absent.
 */
#include "harness.h"

#include <stdlib.h>

#include "wsc.h"

#define PEER TOP_SRCDIR "/tests/wsnode/peer.mjs"
#define WS_PKG TOP_SRCDIR "/tests/wsnode/node_modules/ws/package.json"

static void echo(evapi_ws *ws, int binary, const char *data, size_t len,
                 void *arg)
{
	if (!binary && strcmp(data, "close-me") == 0)
		evapi_ws_close(ws, 4000, "asked");
	else
		wsc_app_echo(ws, binary, data, len);
}

static evapi_app *make_app(void)
{
	static const char *const protos[] = {"chat.v2", "chat.v1", NULL};
	static const char *const origins[] = {"https://ok.example", NULL};
	evapi_ws_opts o = {0}, ping = {0};
	evapi_config cfg;
	evapi_app *app;

	th_config(&cfg);
	app = evapi_app_new(&cfg);
	o.subprotocols = protos;
	o.origins = origins;
	ping.ping_interval_ms = 200;
	ping.ping_timeout_ms = 1000;
	evapi_app_websocket(app, "/ws/echo", NULL, NULL, echo, wsc_app_closed,
	                    NULL);
	evapi_app_websocket(app, "/ws/proto", &o, NULL, echo, wsc_app_closed,
	                    NULL);
	evapi_app_websocket(app, "/ws/ping", &ping, NULL, echo,
	                    wsc_app_closed, NULL);
	return app;
}

static void test_node_ws(void)
{
	th_server s;
	char cmd[1024], out[8192];
	FILE *f;
	int rc;

	if (system("node -v >/dev/null 2>&1") != 0) {
		TH_SKIP("node is not installed (.ci/deps installs nodejs)");
		return;
	}
	if (!(f = fopen(WS_PKG, "r"))) {
		TH_FAIL_AT("node's ws is not installed in tests/wsnode: run "
		           ".ci/deps (npm ci there)");
		return;
	}
	fclose(f);
	th_trace_clear();
	th_server_start(&s, make_app());
	snprintf(cmd, sizeof cmd, "timeout 30 node '%s' %d 2>&1", PEER, s.port);
	rc = th_run_capture(cmd, out, sizeof out);
	printf("%s", out);
	CHECK_INT(rc, ==, 0);
	CHECK_CONTAINS(out, "node ws ok");
	/* the app saw each end as the peer said it */
	CHECK(th_trace_wait("close:/ws/echo:1012:restarting;", 3));
	CHECK_CONTAINS(th_trace(), "close:/ws/echo:1000:done;");
	CHECK_CONTAINS(th_trace(), "close:/ws/echo:4000:asked;");
	CHECK_CONTAINS(th_trace(), "close:/ws/echo:1007:");
	CHECK_CONTAINS(th_trace(), "close:/ws/echo:1009:");
	th_server_stop(&s);
}

int main(int argc, char **argv)
{
	static const th_test tests[] = {{"ws_node.peer", test_node_ws},
	                                {NULL, NULL}};
	return th_main(argc, argv, tests);
}
