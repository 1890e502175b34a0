/*
 * arena.c: a bump allocator for everything that lives exactly as long as
 * one request (the snapshot: path, parameters, headers, body).
 *
 * The first block is inside the request struct, so small requests make
 * no extra allocation. Not thread-safe: a request's arena is filled on
 * the loop before any worker sees the request, and only read afterwards.
 *
 * Also the growable buffer (evapi__sbuf) of the framing and the test
 * client, for bytes that do not live as long as a request.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct evapi__arena_block {
	evapi__arena_block *next;
	size_t len;
};

#define ALIGN 16u
#define MIN_BLOCK 1024u

void evapi__arena_init(evapi__arena *a, void *buf, size_t len)
{
	a->cur = buf;
	a->end = (char *)buf + len;
	a->blocks = NULL;
}

void *evapi__arena_alloc(evapi__arena *a, size_t len)
{
	uintptr_t p = ((uintptr_t)a->cur + (ALIGN - 1)) & ~(uintptr_t)(ALIGN - 1);
	evapi__arena_block *b;
	size_t size;

	if (p <= (uintptr_t)a->end && len <= (size_t)(a->end - (char *)p)) {
		a->cur = (char *)p + len;
		return (void *)p;
	}
	size = len + sizeof *b + ALIGN;
	if (size < MIN_BLOCK)
		size = MIN_BLOCK;
	if (size < len) /* overflow */
		return NULL;
	b = malloc(size);
	if (!b)
		return NULL;
	b->next = a->blocks;
	b->len = size;
	a->blocks = b;
	p = ((uintptr_t)(b + 1) + (ALIGN - 1)) & ~(uintptr_t)(ALIGN - 1);
	a->cur = (char *)p + len;
	a->end = (char *)b + size;
	return (void *)p;
}

char *evapi__arena_strndup(evapi__arena *a, const char *s, size_t len)
{
	char *d = evapi__arena_alloc(a, len + 1);
	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

void evapi__arena_release(evapi__arena *a)
{
	evapi__arena_block *b = a->blocks, *n;
	for (; b; b = n) {
		n = b->next;
		free(b);
	}
	a->blocks = NULL;
	a->cur = a->end = NULL;
}

int evapi__sbuf_reserve(evapi__sbuf *b, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap)))
			return -1;
		b->p = p;
		b->cap = cap;
	}
	return 0;
}

int evapi__sbuf_add(evapi__sbuf *b, const void *data, size_t n)
{
	if (evapi__sbuf_reserve(b, n))
		return -1;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}
