/*
 * evhttp_hello.c: the floor: libevent's evhttp answering the hello JSON
 * with nothing around it, on an event base built with the same flags as
 * evapi's (EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST). Single thread; stops on
 * SIGINT/SIGTERM. SIGPIPE is ignored, as every server must: evhttp writes
 * with writev, and a client that closes with replies still owed (wrk at
 * the end of a pipelined run) would otherwise kill the process.
 *
 *   GET /json        TechEmpower "json": the object built and dumped by
 *                    jansson per request, as evapi_reply_json does
 *   GET /plaintext   TechEmpower "plaintext"
 *   anything else    the hello JSON, a static body
 *
 * The TechEmpower routes carry Server; evhttp adds Date to every reply.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static const char body[] = "{\"Hello\":\"World\"}";

static void hello(struct evhttp_request *req, void *arg)
{
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "application/json");
	evbuffer_add_reference(evhttp_request_get_output_buffer(req), body,
	                       sizeof body - 1, NULL, NULL);
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void tfb_json(struct evhttp_request *req, void *arg)
{
	json_t *o = json_pack("{s:s}", "message", "Hello, World!");
	char buf[64];
	size_t n = o ? json_dumpb(o, buf, sizeof buf, JSON_COMPACT) : 0;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	json_decref(o);
	evhttp_add_header(h, "Server", "evhttp");
	evhttp_add_header(h, "Content-Type", "application/json");
	evbuffer_add(evhttp_request_get_output_buffer(req), buf,
	             n <= sizeof buf ? n : 0);
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void tfb_plaintext(struct evhttp_request *req, void *arg)
{
	static const char text[] = "Hello, World!";
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Server", "evhttp");
	evhttp_add_header(h, "Content-Type", "text/plain");
	evbuffer_add_reference(evhttp_request_get_output_buffer(req), text,
	                       sizeof text - 1, NULL, NULL);
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;
	struct evhttp *http;
	struct event *sigterm, *sigint;
	int port = argc > 1 ? atoi(argv[1]) : 18100;

	signal(SIGPIPE, SIG_IGN);
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	http = base ? evhttp_new(base) : NULL;
	if (!http || evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port)) {
		fprintf(stderr, "evhttp_hello: cannot listen on %d\n", port);
		return 1;
	}
	evhttp_set_gencb(http, hello, NULL);
	evhttp_set_cb(http, "/json", tfb_json, NULL);
	evhttp_set_cb(http, "/plaintext", tfb_plaintext, NULL);
	evhttp_set_default_content_type(http, NULL);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_base_dispatch(base);
	event_free(sigterm);
	event_free(sigint);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
