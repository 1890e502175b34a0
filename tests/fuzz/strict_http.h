/*
 * strict_http.h: the fuzzers' independent judge of HTTP/1.1 bytes: llhttp
 * compiled a second time in strict mode (LLHTTP_STRICT_MODE=1, no lenient
 * flags), linked into the fuzzer with every symbol but these two made
 * local (tests/fuzz/run), so it cannot mix with the server's own copy.
 */
#ifndef STRICT_HTTP_H
#define STRICT_HTTP_H

#include <stddef.h>

#define STRICT_MAX 64
#define STRICT_TEXT 160 /* longest request-target or X-Path kept */

/* What strict llhttp makes of the bytes a client sent. */
typedef struct strict_requests {
	int complete;   /* whole requests, in order (at most STRICT_MAX kept) */
	int rejected;   /* parsing failed inside request number `complete` */
	int partial;    /* an unfinished request follows the complete ones */
	int trailing;   /* bytes follow the last complete request (blank
	                   lines, a rejected or an unfinished request): the
	                   server may answer them once, with an error */
	int last;       /* request `complete`-1 ends the connection (not
	                   keep-alive): what follows is not a request */
	int head[STRICT_MAX];    /* request i is HEAD (also the rejected or
	                            unfinished one after the complete ones,
	                            once its request line was read whole) */
	int upgrade[STRICT_MAX]; /* request i asked for a protocol upgrade
	                            (parsing resumed after it as HTTP) */
	char target[STRICT_MAX][STRICT_TEXT]; /* "" when longer */
	const char *error;       /* llhttp's reason when rejected */
} strict_requests;

/* What strict llhttp makes of the bytes a server answered. */
typedef struct strict_responses {
	int final;      /* final (non-1xx) responses, in order */
	int status[STRICT_MAX];
	int close[STRICT_MAX];   /* it said "Connection: close" */
	int framed[STRICT_MAX];  /* Content-Length, chunked, or no body (else
	                            the body ends where the connection does) */
	char path[STRICT_MAX][STRICT_TEXT]; /* its X-Path header, or "" */
	int after_close; /* bytes followed a "Connection: close" response */
	int bad;        /* unparsable: `error` says why */
	int partial;    /* the last response is cut short */
	const char *error;
} strict_responses;

void strict_http_requests(const char *data, size_t len, strict_requests *out);
/* `req` tells which responses answer HEAD (no body follows); `eof`: the
 * server closed the connection after these bytes. */
void strict_http_responses(const char *data, size_t len, int eof,
                           const strict_requests *req, strict_responses *out);

#endif
