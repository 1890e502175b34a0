/*
 * wsc.h: a raw WebSocket client for the tests (tests/wsc.c): one
 * blocking socket, frames built and parsed with src/ws_frame.c, so a
 * test can send anything, well-formed or not, and read the server's
 * frames one event at a time.
 */
#ifndef EVAPI_TEST_WSC_H
#define EVAPI_TEST_WSC_H

#include <stddef.h>
#include <stdint.h>

#include <evapi.h>

#include "../src/ws_frame.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define KEY_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

typedef struct wsc {
	int fd;
	evapi__ws_parser *p;
	uint8_t buf[65536];
	size_t have, off;
	int eof;
} wsc;

/* The masking key of every frame wsc_send writes. */
extern const uint8_t WSC_MASK[4];

/* Reads what is there within `secs`: 1 got bytes, 0 timeout, -1 EOF. */
int wsc_fill(wsc *c, double secs);
/* Sends `request` (a whole handshake) and reads the response head into
 * resp. Returns its status (0: none). */
int wsc_open_raw(wsc *c, int port, const char *request, char *resp,
                 size_t cap);
/* A valid handshake for `path`, with `extra` header lines (may be NULL). */
int wsc_open(wsc *c, int port, const char *path, const char *extra,
             char *resp, size_t cap);
void wsc_close(wsc *c);
/* One frame with FIN/RSV/opcode byte `b0`, masked unless b0 has bit
 * 0x100 set ("send unmasked"). */
void wsc_send(wsc *c, int b0, const void *data, size_t len);
void wsc_text(wsc *c, const char *s);
/* The next frame event from the server within `secs`: EVAPI__WS_EV_*,
 * or -1 on timeout or EOF. The payload goes to out (NUL-terminated, cut
 * to cap; may be NULL), its length to *len; for CLOSE the code to *code
 * and the reason to out. */
int wsc_recv(wsc *c, double secs, char *out, size_t cap, size_t *len,
             int *code);
/* 1 when the server closes the TCP connection within secs. */
int wsc_eof(wsc *c, double secs);
/* Sends `text` and expects the message `want` back. */
void text_reply(wsc *c, const char *text, const char *want);
/* Expects the close frame `code`, then the TCP close (a failure naming
 * `line` otherwise). */
void expect_close(wsc *c, int code, int line);

/* For the apps under test: sends a message back as it came, and an
 * on_close adding "close:<path>:<code>:<reason>;" to the trace. */
void wsc_app_echo(evapi_ws *ws, int binary, const char *data, size_t len);
void wsc_app_closed(evapi_ws *ws, int code, const char *reason, void *arg);

#endif
