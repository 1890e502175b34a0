/*
 * ws_frame.c: RFC 6455 framing for WebSocket sessions: an incremental
 * parser of the peer's frames and the writer of ours. Pure: no I/O, no
 * libevent; the session code (ws.c), the tests and the fuzzer feed it
 * bytes split anywhere.
 *
 * Threads: one parser belongs to one session on the loop thread.
 *
 * No extension is ever negotiated, so every RSV bit is an error. The
 * parser checks a frame's header as soon as it has it (mask, minimal
 * length encoding, opcode, fragmentation order, the message limit), so
 * a hostile length is refused before a byte of its payload is kept.
 * Fragments are joined into one message buffer; control frames, which
 * may arrive between fragments, use their own 125-byte buffer and leave
 * the message being assembled alone. Text is checked for UTF-8 as its
 * bytes arrive, across fragment boundaries, so an invalid prefix fails
 * at once rather than after the whole message.
 */
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

enum { ST_HEAD = 0, ST_PAYLOAD, ST_CLOSED, ST_ERROR };

struct evapi__ws_parser {
	int server;
	int st;
	size_t max_message;
	uint8_t hdr[EVAPI__WS_MAX_HEADER];
	size_t hdr_have, hdr_need;
	/* the frame being read */
	int fin, opcode;
	uint64_t remain;
	uint8_t key[4];
	int masked;
	size_t key_off;
	/* the message being assembled (opcode 0: none) */
	int msg_opcode;
	uint8_t *msg;
	size_t msg_len, msg_cap;
	evapi__ws_utf8 utf8;
	/* the control frame being read */
	uint8_t ctl[EVAPI__WS_MAX_CONTROL + 1];
	size_t ctl_len;
	/* what the last event hands out */
	int ev_opcode;
	const uint8_t *ev_data;
	size_t ev_len;
	int close_code;
	int err_code;
	const char *err_detail;
};

/* ---- UTF-8 --------------------------------------------------------------- */

int evapi__ws_utf8_feed(evapi__ws_utf8 *u, const uint8_t *s, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		uint8_t c;
		if (!u->need) {
			/* ASCII, eight bytes at a time */
			uint64_t w;
			while (i + 8 <= n) {
				memcpy(&w, s + i, 8);
				if (w & 0x8080808080808080ULL)
					break;
				i += 8;
			}
			if (i == n)
				break;
		}
		c = s[i];
		if (u->need) {
			if (c < u->lo || c > u->hi)
				return -1;
			u->need--;
			u->lo = 0x80;
			u->hi = 0xBF;
			continue;
		}
		if (c < 0x80)
			continue;
		/* the second byte's range rules out overlongs (E0, F0),
		 * surrogates (ED) and code points past U+10FFFF (F4) */
		u->lo = 0x80;
		u->hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF) {
			u->need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			u->need = 2;
			if (c == 0xE0)
				u->lo = 0xA0;
			else if (c == 0xED)
				u->hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			u->need = 3;
			if (c == 0xF0)
				u->lo = 0x90;
			else if (c == 0xF4)
				u->hi = 0x8F;
		} else {
			return -1;
		}
	}
	return 0;
}

int evapi__ws_utf8_done(const evapi__ws_utf8 *u)
{
	return u->need == 0;
}

/* ---- parser -------------------------------------------------------------- */

evapi__ws_parser *evapi__ws_parser_new(int server, size_t max_message)
{
	evapi__ws_parser *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->server = server;
	p->max_message = max_message ? max_message
	                             : EVAPI__WS_DEFAULT_MAX_MESSAGE;
	p->hdr_need = 2;
	return p;
}

void evapi__ws_parser_free(evapi__ws_parser *p)
{
	if (!p)
		return;
	free(p->msg);
	free(p);
}

static int fail(evapi__ws_parser *p, int code, const char *detail)
{
	p->st = ST_ERROR;
	p->err_code = code;
	p->err_detail = detail;
	return EVAPI__WS_EV_ERROR;
}

static int is_control(int opcode)
{
	return opcode >= 0x8;
}

/* The header is whole: check it before any payload is kept. Returns
 * MORE to go on reading the payload, or ERROR. */
static int header_done(evapi__ws_parser *p)
{
	const uint8_t *h = p->hdr;
	size_t i, at = 2;
	int len7 = h[1] & 0x7F;

	p->fin = (h[0] & 0x80) != 0;
	p->opcode = h[0] & 0x0F;
	p->masked = (h[1] & 0x80) != 0;
	if (h[0] & 0x70)
		return fail(p, EVAPI__WS_PROTOCOL_ERROR,
		            "reserved bits set without an extension");
	switch (p->opcode) {
	case EVAPI__WS_CONT:
	case EVAPI__WS_TEXT:
	case EVAPI__WS_BINARY:
	case EVAPI__WS_CLOSE:
	case EVAPI__WS_PING:
	case EVAPI__WS_PONG:
		break;
	default:
		return fail(p, EVAPI__WS_PROTOCOL_ERROR, "reserved opcode");
	}
	if (p->server && !p->masked)
		return fail(p, EVAPI__WS_PROTOCOL_ERROR,
		            "client frame not masked");
	if (!p->server && p->masked)
		return fail(p, EVAPI__WS_PROTOCOL_ERROR, "server frame masked");
	if (len7 == 126) {
		p->remain = ((uint64_t)h[2] << 8) | h[3];
		at = 4;
		if (p->remain < 126)
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "payload length not minimally encoded");
	} else if (len7 == 127) {
		p->remain = 0;
		for (i = 2; i < 10; i++)
			p->remain = (p->remain << 8) | h[i];
		at = 10;
		if (h[2] & 0x80)
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "64-bit payload length with its top bit set");
		if (p->remain <= 0xFFFF)
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "payload length not minimally encoded");
	} else {
		p->remain = (uint64_t)len7;
	}
	if (p->masked)
		memcpy(p->key, h + at, 4);
	p->key_off = 0;
	if (is_control(p->opcode)) {
		if (!p->fin)
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "fragmented control frame");
		if (len7 > EVAPI__WS_MAX_CONTROL)
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "control frame over 125 bytes");
		p->ctl_len = 0;
	} else if (p->opcode == EVAPI__WS_CONT) {
		if (!p->msg_opcode)
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "continuation without a message to continue");
	} else {
		if (p->msg_opcode)
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "new message inside a fragmented one");
		p->msg_opcode = p->opcode;
		p->msg_len = 0;
		memset(&p->utf8, 0, sizeof p->utf8);
	}
	if (!is_control(p->opcode) &&
	    p->remain > (uint64_t)(p->max_message - p->msg_len))
		return fail(p, EVAPI__WS_TOO_BIG, "message too big");
	if (!is_control(p->opcode) &&
	    p->msg_len + (size_t)p->remain + 1 > p->msg_cap) {
		/* grow to what this frame needs (within max_message) */
		size_t cap = p->msg_cap ? p->msg_cap : 256;
		uint8_t *m;
		while (cap < p->msg_len + (size_t)p->remain + 1)
			cap *= 2;
		m = realloc(p->msg, cap);
		if (!m)
			return fail(p, EVAPI__WS_TOO_BIG, "out of memory");
		p->msg = m;
		p->msg_cap = cap;
	}
	p->st = ST_PAYLOAD;
	return EVAPI__WS_EV_MORE;
}

static int close_frame(evapi__ws_parser *p)
{
	const uint8_t *d = p->ctl;
	evapi__ws_utf8 u = {0, 0, 0};

	if (p->ctl_len == 1)
		return fail(p, EVAPI__WS_PROTOCOL_ERROR,
		            "close payload of one byte");
	p->ctl[p->ctl_len] = 0;
	if (p->ctl_len == 0) {
		p->close_code = EVAPI__WS_NO_STATUS;
	} else {
		p->close_code = (d[0] << 8) | d[1];
		if (!evapi__ws_close_code_ok(p->close_code))
			return fail(p, EVAPI__WS_PROTOCOL_ERROR,
			            "invalid close code");
		if (evapi__ws_utf8_feed(&u, d + 2, p->ctl_len - 2) < 0 ||
		    !evapi__ws_utf8_done(&u))
			return fail(p, EVAPI__WS_INVALID_DATA,
			            "close reason not UTF-8");
	}
	p->st = ST_CLOSED;
	return EVAPI__WS_EV_CLOSE;
}

/* The payload is whole: the frame's event. */
static int frame_done(evapi__ws_parser *p)
{
	p->st = ST_HEAD;
	p->hdr_have = 0;
	p->hdr_need = 2;
	p->ev_opcode = p->opcode;
	if (is_control(p->opcode)) {
		p->ev_data = p->ctl;
		p->ev_len = p->ctl_len;
		switch (p->opcode) {
		case EVAPI__WS_PING:
			return EVAPI__WS_EV_PING;
		case EVAPI__WS_PONG:
			return EVAPI__WS_EV_PONG;
		default:
			return close_frame(p);
		}
	}
	if (!p->fin)
		return EVAPI__WS_EV_MORE;
	if (p->msg_opcode == EVAPI__WS_TEXT && !evapi__ws_utf8_done(&p->utf8))
		return fail(p, EVAPI__WS_INVALID_DATA,
		            "text message not valid UTF-8");
	p->ev_opcode = p->msg_opcode;
	p->msg[p->msg_len] = 0;
	p->ev_data = p->msg;
	p->ev_len = p->msg_len;
	p->msg_opcode = 0;
	return EVAPI__WS_EV_MESSAGE;
}

int evapi__ws_parser_feed(evapi__ws_parser *p, const void *data, size_t len,
                          size_t *used)
{
	const uint8_t *s = data;
	size_t off = 0;
	int ev;

	*used = 0;
	if (p->st == ST_ERROR)
		return EVAPI__WS_EV_ERROR;
	if (p->st == ST_CLOSED)
		return EVAPI__WS_EV_CLOSE;
	while (off < len || (p->st == ST_PAYLOAD && p->remain == 0)) {
		if (p->st == ST_HEAD) {
			size_t n = p->hdr_need - p->hdr_have;
			if (n > len - off)
				n = len - off;
			memcpy(p->hdr + p->hdr_have, s + off, n);
			p->hdr_have += n;
			off += n;
			if (p->hdr_have == 2) {
				int len7 = p->hdr[1] & 0x7F;
				p->hdr_need = 2 + (len7 == 126 ? 2 : 0) +
				              (len7 == 127 ? 8 : 0) +
				              ((p->hdr[1] & 0x80) ? 4 : 0);
			}
			if (p->hdr_have < p->hdr_need)
				continue;
			ev = header_done(p);
			if (ev != EVAPI__WS_EV_MORE) {
				*used = off;
				return ev;
			}
		} else {
			size_t n = len - off;
			uint8_t *dst;
			if (n > p->remain)
				n = (size_t)p->remain;
			if (is_control(p->opcode)) {
				dst = p->ctl + p->ctl_len;
				p->ctl_len += n;
			} else {
				dst = p->msg + p->msg_len;
				p->msg_len += n;
			}
			memcpy(dst, s + off, n);
			if (p->masked) {
				evapi__ws_mask(dst, n, p->key, p->key_off);
				p->key_off += n;
			}
			off += n;
			p->remain -= n;
			if (!is_control(p->opcode) && p->msg_opcode == EVAPI__WS_TEXT &&
			    evapi__ws_utf8_feed(&p->utf8, dst, n) < 0) {
				*used = off;
				return fail(p, EVAPI__WS_INVALID_DATA,
				            "text message not valid UTF-8");
			}
			if (p->remain == 0) {
				ev = frame_done(p);
				if (ev != EVAPI__WS_EV_MORE) {
					*used = off;
					return ev;
				}
			}
		}
	}
	*used = off;
	return EVAPI__WS_EV_MORE;
}

int evapi__ws_parser_payload(const evapi__ws_parser *p, const uint8_t **data,
                             size_t *len)
{
	*data = p->ev_data;
	*len = p->ev_len;
	return p->ev_opcode;
}

int evapi__ws_parser_close(const evapi__ws_parser *p, const char **reason)
{
	*reason = p->close_code == EVAPI__WS_NO_STATUS
	                  ? ""
	                  : (const char *)p->ctl + 2;
	return p->close_code;
}

int evapi__ws_parser_error(const evapi__ws_parser *p, const char **detail)
{
	*detail = p->err_detail;
	return p->err_code;
}

int evapi__ws_close_code_ok(int code)
{
	if (code >= 3000 && code <= 4999)
		return 1;
	/* 1012-1014 (service restart, try again later, bad gateway) are in
	 * IANA's registry since RFC 6455: peers send them, so refusing them
	 * would fail a well-behaved client's close */
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

/* ---- writer -------------------------------------------------------------- */

size_t evapi__ws_header(uint8_t *out, int fin, int opcode, uint64_t len,
                        const uint8_t *mask)
{
	size_t n = 2;
	int i;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
	out[1] = mask ? 0x80 : 0;
	if (len < 126) {
		out[1] |= (uint8_t)len;
	} else if (len <= 0xFFFF) {
		out[1] |= 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] |= 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

void evapi__ws_mask(uint8_t *buf, size_t n, const uint8_t *key, size_t off)
{
	uint8_t k8[8];
	uint64_t k, w;
	size_t i;

	/* eight bytes at a time: the key, turned to `off`, twice */
	for (i = 0; i < 8; i++)
		k8[i] = key[(off + i) & 3];
	memcpy(&k, k8, 8);
	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, buf + i, 8);
		w ^= k;
		memcpy(buf + i, &w, 8);
	}
	for (; i < n; i++)
		buf[i] ^= key[(off + i) & 3];
}

size_t evapi__ws_close_payload(uint8_t *out, int code, const char *reason)
{
	size_t n = reason ? strlen(reason) : 0;

	if (code == 0)
		return 0;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	if (n > EVAPI__WS_MAX_CONTROL - 2) {
		/* back up to the start of a character */
		n = EVAPI__WS_MAX_CONTROL - 2;
		while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
			n--;
	}
	if (n)
		memcpy(out + 2, reason, n);
	return 2 + n;
}
