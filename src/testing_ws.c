/*
 * testing_ws.c: the test client's WebSocket sessions (evapi/testing.h):
 * the opening handshake over a loopback socket, masked client frames out,
 * server frames in, pings answered, the close handshake both ways.
 *
 * Threads: a session belongs to the test thread that uses it; it touches
 * no app state, only its own socket, so it never meets the loop thread
 * but through the kernel. Every wait is a poll() with a deadline; sends
 * are bounded by SO_SNDTIMEO, so a server that stops reading fails the
 * test instead of hanging it.
 *
 * Frames are built and parsed by ws_frame.c, the code the server uses,
 * in client mode (the parser refuses masked server frames, the writer
 * masks ours): what the server's framing accepts, this client sends.
 * The handshake's answer is kept as an evapi_test_response (its header
 * lines stored the way the fetch module stores them), so a refusal reads
 * like any other reply.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <evapi/testing.h>

#include "client/fetch.h"
#include "internal.h"
#include "ws_frame.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_HANDSHAKE (64 * 1024)
#define IN_CAP (64 * 1024)
#define MAX_MESSAGE (16u << 20)
#define ABNORMAL 1006 /* closed without a close frame (RFC 6455 7.1.5) */

struct evapi_test_ws {
	int fd;
	int timeout_ms;
	evapi__ws_parser *parser;
	evapi_test_response *resp; /* the handshake's answer */
	int open;                  /* 101 received, no close yet either way */
	int close_sent;
	int close_code;            /* the server's; 0 while none */
	char close_reason[128];
	uint8_t in[IN_CAP];
	size_t in_pos, in_len;     /* bytes read, not yet fed */
};

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits until fd is readable before `deadline` (ms): 0, or
 * EVAPI_ETIMEDOUT. */
static int wait_readable(int fd, long long deadline)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	for (;;) {
		long long left = deadline - now_ms();
		int n;
		if (left < 0)
			left = 0;
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return EVAPI_ECONNRESET;
		if (n == 0 && now_ms() >= deadline)
			return EVAPI_ETIMEDOUT;
	}
}

static int send_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK
			               ? EVAPI_ETIMEDOUT : EVAPI_ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One masked frame: header, then the payload XORed with a fresh key. */
static int send_frame(evapi_test_ws *ws, int opcode, const void *data,
                      size_t len)
{
	uint8_t key[4], *frame;
	size_t h;
	int rc;

	if (RAND_bytes(key, sizeof key) != 1)
		return EVAPI_ENOMEM;
	if (!(frame = malloc(EVAPI__WS_MAX_HEADER + len)))
		return EVAPI_ENOMEM;
	h = evapi__ws_header(frame, 1, opcode, len, key);
	if (len)
		memcpy(frame + h, data, len);
	evapi__ws_mask(frame + h, len, key, 0);
	rc = send_all(ws->fd, frame, h + len);
	free(frame);
	return rc;
}

static void drop(evapi_test_ws *ws, int code)
{
	ws->open = 0;
	if (!ws->close_code)
		ws->close_code = code;
	if (ws->fd >= 0) {
		close(ws->fd);
		ws->fd = -1;
	}
}

/* Feeds what has been read and reads more until the parser has an event
 * other than a ping or pong (a message, a close, an error) or the time
 * is up. Returns the event, or a negative error. */
static int next_event(evapi_test_ws *ws, long long deadline)
{
	const uint8_t *data;
	size_t len, used;
	ssize_t n;
	int ev, rc;

	for (;;) {
		while (ws->in_pos < ws->in_len) {
			ev = evapi__ws_parser_feed(ws->parser, ws->in + ws->in_pos,
			                           ws->in_len - ws->in_pos, &used);
			ws->in_pos += used;
			if (ev == EVAPI__WS_EV_PING) {
				evapi__ws_parser_payload(ws->parser, &data, &len);
				if (!ws->close_sent &&
				    (rc = send_frame(ws, EVAPI__WS_PONG, data, len)))
					return rc;
			} else if (ev != EVAPI__WS_EV_MORE &&
			           ev != EVAPI__WS_EV_PONG) {
				return ev;
			}
		}
		ws->in_pos = ws->in_len = 0;
		if ((rc = wait_readable(ws->fd, deadline)) != 0)
			return rc;
		n = recv(ws->fd, ws->in, sizeof ws->in, 0);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			drop(ws, ABNORMAL); /* 1006 */
			return EVAPI_ECONNRESET;
		}
		ws->in_len = (size_t)n;
	}
}

/* The server's close frame: keep its code, answer it (unless ours went
 * first), and end the connection. */
static void on_close(evapi_test_ws *ws)
{
	const char *reason = "";
	uint8_t payload[EVAPI__WS_MAX_CONTROL];
	int code = evapi__ws_parser_close(ws->parser, &reason);

	ws->close_code = code;
	snprintf(ws->close_reason, sizeof ws->close_reason, "%s",
	         reason ? reason : "");
	if (!ws->close_sent) {
		size_t n = code == EVAPI__WS_NO_STATUS
		                   ? 0 : evapi__ws_close_payload(payload, code,
		                                                 NULL);
		ws->close_sent = 1;
		send_frame(ws, EVAPI__WS_CLOSE, payload, n);
	}
	drop(ws, code);
}

/* The parser refused a server frame: close with its code, as a peer must. */
static void on_error(evapi_test_ws *ws)
{
	uint8_t payload[EVAPI__WS_MAX_CONTROL];
	const char *why;
	int code = evapi__ws_parser_error(ws->parser, &why);
	size_t n = evapi__ws_close_payload(payload, code, why);

	if (!ws->close_sent) {
		ws->close_sent = 1;
		send_frame(ws, EVAPI__WS_CLOSE, payload, n);
	}
	drop(ws, ABNORMAL);
}

/* ---- the opening handshake -------------------------------------------- */

static void accept_key(const char *key, char out[32])
{
	char buf[128];
	unsigned char md[SHA_DIGEST_LENGTH];

	snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
	SHA1((const unsigned char *)buf, strlen(buf), md);
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

static int connect_to(int port, int timeout_ms)
{
	struct sockaddr_in a;
	struct timeval tv;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The request: the upgrade headers, then the caller's lines. */
static char *handshake_request(const evapi_test_req *req, int port,
                               const char *key, size_t *len)
{
	const char *const *h;
	char *out;
	size_t cap = 512 + strlen(req->path ? req->path : "/") +
	             (req->query ? strlen(req->query) : 0);
	int n;

	for (h = req->headers; h && *h; h++) {
		if (strpbrk(*h, "\r\n"))
			return NULL;
		cap += strlen(*h) + 2;
	}
	if (!(out = malloc(cap)))
		return NULL;
	n = snprintf(out, cap,
	             "GET %s%s%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
	             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
	             req->path ? req->path : "/", req->query ? "?" : "",
	             req->query ? req->query : "", port, key);
	for (h = req->headers; h && *h; h++)
		n += snprintf(out + n, cap - (size_t)n, "%s\r\n", *h);
	n += snprintf(out + n, cap - (size_t)n, "\r\n");
	*len = (size_t)n;
	return out;
}

/* Reads the answer's head (and a refusal's body, by Content-Length) into
 * ws->resp; leaves bytes after a 101's head in ws->in. */
static int read_answer(evapi_test_ws *ws, const char *key, long long deadline)
{
	evapi_fetch_res *res = evapi__test_response_res(ws->resp);
	char *head = (char *)ws->in, *end = NULL, *line, *next;
	size_t have = 0, body_len = 0;
	const char *v;
	char want[32];
	ssize_t n;
	int rc;

	while (!end) {
		if (have == sizeof ws->in - 1)
			return EVAPI_ETOOBIG;
		if ((rc = wait_readable(ws->fd, deadline)) != 0)
			return rc;
		n = recv(ws->fd, ws->in + have, sizeof ws->in - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return EVAPI_ECONNRESET;
		have += (size_t)n;
		head[have] = '\0';
		end = strstr(head, "\r\n\r\n");
	}
	if (sscanf(head, "HTTP/1.1 %d", &res->status) != 1)
		return EVAPI_EPROTO;
	*end = '\0';
	for (line = strstr(head, "\r\n") + 2; *line; line = next) {
		next = strstr(line, "\r\n");
		next = next ? next + 2 : line + strlen(line);
		if (evapi__fetch_on_header(line, 1, (size_t)(next - line), res) !=
		    (size_t)(next - line))
			return EVAPI_ETOOBIG;
	}
	ws->in_pos = (size_t)(end + 4 - head);
	ws->in_len = have;
	if (res->status != 101) {
		v = evapi_test_header(ws->resp, "Content-Length");
		body_len = v ? strtoul(v, NULL, 10) : 0;
		if (body_len > sizeof ws->in - 1)
			return EVAPI_ETOOBIG;
		memmove(ws->in, ws->in + ws->in_pos, have - ws->in_pos);
		have -= ws->in_pos;
		while (have < body_len) {
			if ((rc = wait_readable(ws->fd, deadline)) != 0)
				return rc;
			n = recv(ws->fd, ws->in + have, body_len - have, 0);
			if (n <= 0)
				return EVAPI_ECONNRESET;
			have += (size_t)n;
		}
		if (!(res->body = malloc(body_len + 1)))
			return EVAPI_ENOMEM;
		memcpy(res->body, ws->in, body_len);
		res->body[body_len] = '\0';
		res->len = body_len;
		ws->in_pos = ws->in_len = 0;
		return 0;
	}
	accept_key(key, want);
	v = evapi_test_header(ws->resp, "Sec-WebSocket-Accept");
	if (!v || strcmp(v, want) != 0)
		return EVAPI_EPROTO;
	ws->open = 1;
	return 0;
}

evapi_test_ws *evapi_test_ws_connect(evapi_test *tc, const evapi_test_req *req)
{
	evapi_test_ws *ws;
	unsigned char raw[16];
	char key[32], *text = NULL;
	size_t len = 0;
	long long deadline;
	int rc;

	if (req)
		json_decref(req->json);
	if (!tc || !req || !(ws = calloc(1, sizeof *ws)))
		return NULL;
	ws->fd = -1;
	ws->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms
	                                     : evapi__test_timeout(tc);
	deadline = now_ms() + ws->timeout_ms;
	if (!(ws->resp = evapi__test_response_new()) ||
	    !(ws->parser = evapi__ws_parser_new(0, MAX_MESSAGE)) ||
	    RAND_bytes(raw, sizeof raw) != 1) {
		evapi_test_ws_free(ws);
		return NULL;
	}
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
	if (!(text = handshake_request(req, evapi_test_port(tc), key, &len)))
		rc = EVAPI_EINVAL;
	else if ((ws->fd = connect_to(evapi_test_port(tc), ws->timeout_ms)) < 0)
		rc = EVAPI_ECONNREFUSED;
	else if ((rc = send_all(ws->fd, text, len)) == 0)
		rc = read_answer(ws, key, deadline);
	free(text);
	if (rc) {
		evapi__test_response_res(ws->resp)->error = rc;
		evapi__test_response_res(ws->resp)->status = 0;
	}
	if (!ws->open && ws->fd >= 0) {
		close(ws->fd);
		ws->fd = -1;
	}
	return ws;
}

evapi_test_response *evapi_test_ws_response(evapi_test_ws *ws)
{
	return ws ? ws->resp : NULL;
}

/* ---- messages ---------------------------------------------------------- */

static int send_message(evapi_test_ws *ws, int opcode, const void *data,
                        size_t len)
{
	int rc;

	if (!ws)
		return EVAPI_EINVAL;
	if (!ws->open || ws->close_sent)
		return EVAPI_EGONE;
	if ((rc = send_frame(ws, opcode, data, len)) == EVAPI_ECONNRESET)
		drop(ws, ABNORMAL);
	return rc;
}

int evapi_test_ws_send_text(evapi_test_ws *ws, const char *text)
{
	if (!text)
		return EVAPI_EINVAL;
	return send_message(ws, EVAPI__WS_TEXT, text, strlen(text));
}

int evapi_test_ws_send_bytes(evapi_test_ws *ws, const void *data, size_t len)
{
	if (!data && len)
		return EVAPI_EINVAL;
	return send_message(ws, EVAPI__WS_BINARY, data, len);
}

int evapi_test_ws_send_json(evapi_test_ws *ws, json_t *v)
{
	char *text;
	int rc;

	if (!v)
		return EVAPI_EINVAL;
	text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	if (!text)
		return EVAPI_ENOMEM;
	rc = evapi_test_ws_send_text(ws, text);
	free(text);
	return rc;
}

int evapi_test_ws_recv(evapi_test_ws *ws, evapi_test_ws_msg *msg,
                       int timeout_ms)
{
	const uint8_t *data;
	size_t len;
	int ev;

	if (!ws || !msg)
		return EVAPI_EINVAL;
	if (!ws->open)
		return ws->close_code == ABNORMAL ? EVAPI_ECONNRESET
		                                  : EVAPI_EGONE;
	ev = next_event(ws, now_ms() + (timeout_ms > 0 ? timeout_ms
	                                               : ws->timeout_ms));
	switch (ev) {
	case EVAPI__WS_EV_MESSAGE:
		msg->binary = evapi__ws_parser_payload(ws->parser, &data, &len) ==
		              EVAPI__WS_BINARY;
		msg->data = (const char *)data;
		msg->len = len;
		return 0;
	case EVAPI__WS_EV_CLOSE:
		on_close(ws);
		return EVAPI_EGONE;
	case EVAPI__WS_EV_ERROR:
		on_error(ws);
		return EVAPI_EPROTO;
	default:
		return ev < 0 ? ev : EVAPI_EPROTO;
	}
}

json_t *evapi_test_ws_recv_json(evapi_test_ws *ws, int timeout_ms)
{
	evapi_test_ws_msg m;

	if (evapi_test_ws_recv(ws, &m, timeout_ms) != 0 || m.binary)
		return NULL;
	return json_loadb(m.data, m.len, JSON_DECODE_ANY, NULL);
}

/* ---- closing ---------------------------------------------------------- */

int evapi_test_ws_close(evapi_test_ws *ws, int code, const char *reason)
{
	uint8_t payload[EVAPI__WS_MAX_CONTROL];
	long long deadline;
	int rc, ev;

	if (!ws || !evapi__ws_close_code_ok(code))
		return EVAPI_EINVAL;
	if (!ws->open || ws->close_sent)
		return EVAPI_EGONE;
	ws->close_sent = 1;
	rc = send_frame(ws, EVAPI__WS_CLOSE, payload,
	                evapi__ws_close_payload(payload, code, reason));
	if (rc) {
		drop(ws, ABNORMAL);
		return rc;
	}
	deadline = now_ms() + ws->timeout_ms;
	do
		ev = next_event(ws, deadline);
	while (ev == EVAPI__WS_EV_MESSAGE);
	if (ev == EVAPI__WS_EV_CLOSE) {
		on_close(ws);
		return 0;
	}
	drop(ws, ABNORMAL);
	return ev < 0 ? ev : EVAPI_EPROTO;
}

int evapi_test_ws_close_code(const evapi_test_ws *ws, const char **reason)
{
	if (reason)
		*reason = ws ? ws->close_reason : "";
	return ws ? ws->close_code : 0;
}

void evapi_test_ws_free(evapi_test_ws *ws)
{
	if (!ws)
		return;
	if (ws->fd >= 0)
		close(ws->fd);
	evapi__ws_parser_free(ws->parser);
	evapi_test_response_free(ws->resp);
	free(ws);
}
