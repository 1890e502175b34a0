/*
 * fuzz_frame.c: libFuzzer target for the request guard's framing
 * (src/guard/frame.c). The first byte picks how the rest is sliced, so the
 * parser sees every request split at arbitrary points, as on a socket.
 */
#include <stdint.h>
#include <string.h>

#include "guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	evapi__frame_limits lim = {1024, 256, 4096, 20, 64};
	evapi__frame *f;
	size_t slice, off = 1;
	int requests = 0;

	if (size < 1)
		return 0;
	slice = (size_t)(data[0] % 17) + 1;
	f = evapi__frame_new(&lim);
	if (!f)
		return 0;
	while (off < size) {
		size_t n = size - off < slice ? size - off : slice, used = 0;
		int ev = evapi__frame_feed(f, (const char *)data + off, n, &used);
		if (used > n)
			__builtin_trap();
		off += used;
		if (ev == EVAPI__FRAME_REQUEST) {
			const char *h, *b;
			size_t hl, bl;
			evapi__frame_request(f, requests++ % 2, &h, &hl, &b, &bl);
			/* re-framed heads end with an empty line */
			if (hl < 4 || memcmp(h + hl - 4, "\r\n\r\n", 4) != 0 ||
			    bl > lim.max_body)
				__builtin_trap();
		} else if (ev == EVAPI__FRAME_ERROR) {
			const char *detail;
			int st = evapi__frame_error(f, &detail);
			if (st < 400 || st > 599 || !detail)
				__builtin_trap();
			break;
		} else if (ev == EVAPI__FRAME_MORE && used == 0) {
			break;
		}
	}
	evapi__frame_free(f);
	return 0;
}
