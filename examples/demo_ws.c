/*
 * demo_ws.c: WebSocket routes of the demo server.
 *
 *   WS  /ws/echo            -> sends back every message, text or binary
 *   WS  /ws/chat/{room}     -> everything said goes to everyone in the
 *                              room (a broadcast channel "chat:{room}")
 *   GET /chat/{room}/events -> the same room as server-sent events
 *
 * Try: python3 -m websockets ws://127.0.0.1:8000/ws/chat/lobby (twice),
 * and curl -N http://127.0.0.1:8000/chat/lobby/events
 */
#include <stdio.h>

#include "demo.h"

static void echo(evapi_ws *ws, int binary, const char *data, size_t len,
                 void *arg)
{
	if (binary)
		evapi_ws_send_bytes(ws, data, len);
	else
		evapi_ws_send_text(ws, data);
}

static void room_of(char *buf, size_t cap, const char *room)
{
	snprintf(buf, cap, "chat:%s", room ? room : "");
}

static void chat_open(evapi_ws *ws, void *arg)
{
	char ch[128];
	room_of(ch, sizeof ch, evapi_ws_param(ws, "room"));
	evapi_ws_accept(ws, NULL, NULL);
	evapi_ws_subscribe(ws, ch);
}

static void chat_say(evapi_ws *ws, int binary, const char *data, size_t len,
                     void *arg)
{
	char ch[128];
	if (binary) {
		evapi_ws_close(ws, 1003, "text only");
		return;
	}
	room_of(ch, sizeof ch, evapi_ws_param(ws, "room"));
	evapi_app_publish(evapi_ws_app(ws), ch, data);
}

static void chat_events(evapi_req *req, void *arg)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	char ch[128];
	room_of(ch, sizeof ch, evapi_req_param(req, "room"));
	if (s && evapi_stream_subscribe(arg, s, ch) != 0)
		evapi_stream_close(s);
}

int demo_ws_routes(evapi_app *app)
{
	int rc = 0;
	rc |= evapi_app_websocket(app, "/ws/echo", NULL, NULL, echo, NULL, NULL);
	rc |= evapi_app_websocket(app, "/ws/chat/{room}", NULL, chat_open,
	                          chat_say, NULL, NULL);
	rc |= evapi_app_route(app, EVAPI_GET, "/chat/{room}/events",
	                      EVAPI_INLINE, chat_events, app);
	return rc ? -1 : 0;
}
