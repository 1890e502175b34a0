/*
 * Compiles llhttp's llhttp.c, found by configure (Debian's node-llhttp puts
 * it in /usr/share/llhttp), into evapi. Each llhttp source needs its own
 * translation unit, hence one wrapper per file.
 *
 * llhttp.c holds two parsers and picks one with LLHTTP_STRICT_MODE, which
 * defaults to 0: the loose one takes any byte after a CR as the LF, so a
 * bare CR ends a line (request smuggling past any front end that does not
 * agree). The request guard relies on the strict one; it is chosen here,
 * not in a build flag that a CPPFLAGS could override. tests/test_frame.c
 * fails if the loose one is ever compiled in.
 */
#undef LLHTTP_STRICT_MODE
#define LLHTTP_STRICT_MODE 1
#include <llhttp.c>
