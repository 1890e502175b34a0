/*
 * fuzz_ws.c: libFuzzer target for the WebSocket frame parser
 * (src/ws_frame.c). The first byte picks the slice size and the role
 * (server parser of masked frames, or client parser); the rest is fed
 * in slices, as from a socket. Every event must be one the session code
 * can act on: a close code it may send, text that is valid UTF-8.
 */
#include <stdint.h>
#include <string.h>

#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	evapi__ws_parser *p;
	size_t slice, off = 1;

	if (size < 1)
		return 0;
	slice = (size_t)(data[0] % 31) + 1;
	p = evapi__ws_parser_new(data[0] & 0x80 ? 0 : 1, 4096);
	if (!p)
		return 0;
	while (off < size) {
		size_t n = size - off < slice ? size - off : slice, used = 0;
		int ev = evapi__ws_parser_feed(p, data + off, n, &used);
		const uint8_t *d;
		const char *s;
		size_t len;
		evapi__ws_utf8 u = {0, 0, 0};

		if (used > n)
			__builtin_trap();
		off += used;
		if (ev == EVAPI__WS_EV_MESSAGE) {
			int op = evapi__ws_parser_payload(p, &d, &len);
			if (len > 4096)
				__builtin_trap();
			if (op == EVAPI__WS_TEXT &&
			    (evapi__ws_utf8_feed(&u, d, len) < 0 ||
			     !evapi__ws_utf8_done(&u) || d[len] != 0))
				__builtin_trap();
		} else if (ev == EVAPI__WS_EV_PING || ev == EVAPI__WS_EV_PONG) {
			evapi__ws_parser_payload(p, &d, &len);
			if (len > EVAPI__WS_MAX_CONTROL)
				__builtin_trap();
		} else if (ev == EVAPI__WS_EV_CLOSE) {
			int code = evapi__ws_parser_close(p, &s);
			if (code != EVAPI__WS_NO_STATUS &&
			    !evapi__ws_close_code_ok(code))
				__builtin_trap();
			if (evapi__ws_utf8_feed(&u, (const uint8_t *)s,
			                        strlen(s)) < 0)
				__builtin_trap();
			break;
		} else if (ev == EVAPI__WS_EV_ERROR) {
			int code = evapi__ws_parser_error(p, &s);
			if ((code != 1002 && code != 1007 && code != 1009) || !s)
				__builtin_trap();
			break;
		} else if (used < n) {
			__builtin_trap();
		}
	}
	evapi__ws_parser_free(p);
	return 0;
}
