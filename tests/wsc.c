/*
 * wsc.c: the tests' raw WebSocket client (wsc.h).
 */
#include "harness.h"

#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "wsc.h"

/* Reads what is there within `secs`: 1 got bytes, 0 timeout, -1 EOF. */
int wsc_fill(wsc *c, double secs)
{
	struct pollfd pf = {c->fd, POLLIN, 0};
	ssize_t n;
	if (c->off == c->have)
		c->off = c->have = 0;
	if (c->have == sizeof c->buf - 1) {
		memmove(c->buf, c->buf + c->off, c->have - c->off);
		c->have -= c->off;
		c->off = 0;
	}
	if (poll(&pf, 1, (int)(secs * 1000)) <= 0)
		return 0;
	n = read(c->fd, c->buf + c->have, sizeof c->buf - 1 - c->have);
	if (n <= 0) {
		c->eof = 1;
		return -1;
	}
	c->have += (size_t)n;
	c->buf[c->have] = 0; /* for the tests that read text */
	return 1;
}

/* Sends a handshake for `path` (with `extra` header lines) and reads
 * the response head into resp. Returns its status (0: none). */
int wsc_open_raw(wsc *c, int port, const char *request, char *resp,
                        size_t cap)
{
	double end = th_now() + 5;
	char *e = NULL;
	/* not the buffer: its untouched pages stay out of the RSS the
	 * 1 000-session test measures */
	c->have = c->off = 0;
	c->eof = 0;
	c->buf[0] = 0;
	c->fd = th_connect_send(port, request);
	c->p = evapi__ws_parser_new(0, 4 << 20);
	resp[0] = 0;
	if (c->fd < 0)
		return 0;
	while (th_now() < end) {
		c->buf[c->have] = 0;
		if ((e = strstr((char *)c->buf, "\r\n\r\n")))
			break;
		if (wsc_fill(c, 0.2) < 0)
			break;
	}
	{
		size_t k = c->have < cap - 1 ? c->have : cap - 1;
		memcpy(resp, c->buf, k);
		resp[k] = 0;
	}
	if (!e)
		return atoi(resp + 9);
	c->off = (size_t)(e + 4 - (char *)c->buf);
	resp[c->off < cap ? c->off : cap - 1] = 0;
	return atoi(resp + 9);
}

int wsc_open(wsc *c, int port, const char *path, const char *extra,
                    char *resp, size_t cap)
{
	char req[1024];
	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
	         "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
	         "Sec-WebSocket-Version: 13\r\n%s\r\n",
	         path, extra ? extra : "");
	return wsc_open_raw(c, port, req, resp, cap);
}

void wsc_close(wsc *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	evapi__ws_parser_free(c->p);
	c->p = NULL;
}

const uint8_t WSC_MASK[4] = {0xa1, 0x5b, 0x03, 0xc7};

/* One frame, masked unless b0 has bit 0x100 set ("send unmasked"). */
void wsc_send(wsc *c, int b0, const void *data, size_t len)
{
	uint8_t *f = malloc(len + EVAPI__WS_MAX_HEADER);
	int masked = !(b0 & 0x100);
	size_t hn = evapi__ws_header(f, 1, 0, len, masked ? WSC_MASK : NULL);
	f[0] = (uint8_t)b0;
	memcpy(f + hn, data, len);
	if (masked)
		evapi__ws_mask(f + hn, len, WSC_MASK, 0);
	if (write(c->fd, f, hn + len) < 0)
		perror("write");
	free(f);
}

void wsc_text(wsc *c, const char *s)
{
	wsc_send(c, 0x81, s, strlen(s));
}

/* The next frame event from the server, within `secs`: the event
 * (EVAPI__WS_EV_*), or -1 on timeout or EOF. Payload into out
 * (NUL-terminated, cut to cap); for CLOSE, *code. */
int wsc_recv(wsc *c, double secs, char *out, size_t cap, size_t *len,
                    int *code)
{
	double end = th_now() + secs;
	for (;;) {
		size_t used = 0;
		int ev = c->off < c->have
		                 ? evapi__ws_parser_feed(c->p, c->buf + c->off,
		                                         c->have - c->off, &used)
		                 : EVAPI__WS_EV_MORE;
		c->off += used;
		if (ev == EVAPI__WS_EV_MESSAGE || ev == EVAPI__WS_EV_PING ||
		    ev == EVAPI__WS_EV_PONG) {
			const uint8_t *d;
			size_t n;
			evapi__ws_parser_payload(c->p, &d, &n);
			if (len)
				*len = n;
			if (out) {
				size_t k = n < cap - 1 ? n : cap - 1;
				memcpy(out, d, k);
				out[k] = 0;
			}
			return ev;
		}
		if (ev == EVAPI__WS_EV_CLOSE) {
			const char *r;
			int k = evapi__ws_parser_close(c->p, &r);
			if (code)
				*code = k;
			if (out)
				snprintf(out, cap, "%s", r);
			return ev;
		}
		if (ev == EVAPI__WS_EV_ERROR)
			return ev;
		if (th_now() >= end || c->eof || wsc_fill(c, end - th_now()) <= 0)
			if (c->off >= c->have)
				return -1;
	}
}

/* 1 when the server closes the TCP connection within secs. */
int wsc_eof(wsc *c, double secs)
{
	double end = th_now() + secs;
	while (!c->eof && th_now() < end) {
		c->off = c->have;
		wsc_fill(c, 0.1);
	}
	return c->eof;
}

/* Sends `text` and expects the message `want` back. */
void text_reply(wsc *c, const char *text, const char *want)
{
	char resp[2048];
	wsc_text(c, text);
	CHECK_INT(wsc_recv(c, 5, resp, sizeof resp, NULL, NULL), ==,
	          EVAPI__WS_EV_MESSAGE);
	CHECK_STR(resp, want);
}

void expect_close(wsc *c, int code, int line)
{
	char r[128];
	int got = 0, ev = wsc_recv(c, 5, r, sizeof r, NULL, &got);
	if (ev != EVAPI__WS_EV_CLOSE || got != code)
		TH_FAIL_AT("line %d: close %d expected, got event %d code %d", line,
		           code, ev, got);
	if (!wsc_eof(c, 5))
		TH_FAIL_AT("line %d: connection not closed", line);
}

void wsc_app_echo(evapi_ws *ws, int binary, const char *data, size_t len)
{
	if (binary)
		evapi_ws_send_bytes(ws, data, len);
	else
		evapi_ws_send_text(ws, data);
}

void wsc_app_closed(evapi_ws *ws, int code, const char *reason, void *arg)
{
	char t[200];
	snprintf(t, sizeof t, "close:%s:%d:%s;", evapi_ws_path(ws), code,
	         reason);
	th_trace_add(t);
}
