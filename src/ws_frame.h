/*
 * ws_frame.h: WebSocket framing (RFC 6455 section 5), the parser and the
 * writer (ws_frame.c). Never installed. Pure: no I/O, no libevent, so
 * the tests and the fuzzer drive it with byte strings.
 */
#ifndef EVAPI_WS_FRAME_H
#define EVAPI_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifndef EVAPI_HIDDEN
#define EVAPI_HIDDEN __attribute__((visibility("hidden")))
#endif

/* Opcodes (RFC 6455 5.2). */
enum {
	EVAPI__WS_CONT = 0x0,
	EVAPI__WS_TEXT = 0x1,
	EVAPI__WS_BINARY = 0x2,
	EVAPI__WS_CLOSE = 0x8,
	EVAPI__WS_PING = 0x9,
	EVAPI__WS_PONG = 0xA
};

/* Close codes evapi sends (RFC 6455 7.4.1). */
enum {
	EVAPI__WS_NORMAL = 1000,
	EVAPI__WS_GOING_AWAY = 1001,
	EVAPI__WS_PROTOCOL_ERROR = 1002,
	EVAPI__WS_NO_STATUS = 1005, /* received close without a code */
	EVAPI__WS_INVALID_DATA = 1007,
	EVAPI__WS_POLICY = 1008,
	EVAPI__WS_TOO_BIG = 1009,
	EVAPI__WS_INTERNAL = 1011
};

#define EVAPI__WS_MAX_CONTROL 125
#define EVAPI__WS_MAX_HEADER 14
#define EVAPI__WS_DEFAULT_MAX_MESSAGE (1024 * 1024)

typedef struct evapi__ws_parser evapi__ws_parser;

/* What evapi__ws_parser_feed stopped at. */
enum evapi__ws_event {
	EVAPI__WS_EV_MORE = 0, /* everything consumed; feed more */
	EVAPI__WS_EV_MESSAGE,  /* a whole text or binary message */
	EVAPI__WS_EV_PING,     /* answer with a pong of the same payload */
	EVAPI__WS_EV_PONG,
	EVAPI__WS_EV_CLOSE, /* the peer's close frame, valid */
	EVAPI__WS_EV_ERROR  /* close with evapi__ws_parser_error's code */
};

/* `server`: 1 parses client frames (which must be masked), 0 parses
 * server frames (which must not be). `max_message`: the largest message,
 * summed over its fragments (0: EVAPI__WS_DEFAULT_MAX_MESSAGE). New;
 * free with evapi__ws_parser_free. NULL when out of memory. */
EVAPI_HIDDEN evapi__ws_parser *evapi__ws_parser_new(int server,
                                                    size_t max_message);
EVAPI_HIDDEN void evapi__ws_parser_free(evapi__ws_parser *p);
/* Consumes bytes from data[0, len) up to and including the next event;
 * *used receives how many. Call again with the rest. After CLOSE or
 * ERROR it consumes nothing and returns the same event again. */
EVAPI_HIDDEN int evapi__ws_parser_feed(evapi__ws_parser *p, const void *data,
                                       size_t len, size_t *used);
/* After MESSAGE, PING or PONG: the opcode (TEXT or BINARY for a message)
 * and the unmasked payload, borrowed until the next feed. A text payload
 * is valid UTF-8 and NUL-terminated (len excludes the NUL). */
EVAPI_HIDDEN int evapi__ws_parser_payload(const evapi__ws_parser *p,
                                          const uint8_t **data, size_t *len);
/* After CLOSE: the peer's code (EVAPI__WS_NO_STATUS when its close frame
 * was empty) and its reason (valid UTF-8, NUL-terminated, borrowed until
 * the parser is freed). */
EVAPI_HIDDEN int evapi__ws_parser_close(const evapi__ws_parser *p,
                                        const char **reason);
/* After ERROR: the close code to send (1002, 1007, 1009) and a static
 * text saying why. */
EVAPI_HIDDEN int evapi__ws_parser_error(const evapi__ws_parser *p,
                                        const char **detail);

/* 1 for a close code a peer may send (RFC 6455 7.4 and IANA's
 * registry): 1000-1003, 1007-1014, 3000-4999. */
EVAPI_HIDDEN int evapi__ws_close_code_ok(int code);

/* Incremental UTF-8 check (RFC 3629: no overlongs, surrogates or code
 * points past U+10FFFF). Start from a zeroed state; feed pieces; each
 * call returns -1 as soon as the bytes so far cannot start valid UTF-8.
 * evapi__ws_utf8_done: 1 when the text ends on a whole character. */
typedef struct evapi__ws_utf8 {
	uint8_t need;   /* continuation bytes still expected */
	uint8_t lo, hi; /* the range of the next continuation byte */
} evapi__ws_utf8;
EVAPI_HIDDEN int evapi__ws_utf8_feed(evapi__ws_utf8 *u, const uint8_t *s,
                                     size_t n);
EVAPI_HIDDEN int evapi__ws_utf8_done(const evapi__ws_utf8 *u);

/* Writes a frame header for a frame of `len` payload bytes into out
 * (EVAPI__WS_MAX_HEADER bytes) and returns its length. `mask`: NULL for
 * a server frame; else the 4-byte key (a client frame), which the caller
 * applies to the payload with evapi__ws_mask. */
EVAPI_HIDDEN size_t evapi__ws_header(uint8_t *out, int fin, int opcode,
                                     uint64_t len, const uint8_t *mask);
/* XORs buf with the key, starting at key offset `off` (mod 4). */
EVAPI_HIDDEN void evapi__ws_mask(uint8_t *buf, size_t n, const uint8_t *key,
                                 size_t off);
/* A close frame's payload: the code, then `reason` cut to fit 125 bytes
 * on a character boundary. Returns the payload length (0 for code 0). */
EVAPI_HIDDEN size_t evapi__ws_close_payload(uint8_t *out, int code,
                                            const char *reason);

#endif
