/*
 * Compiles llhttp's api.c, found by configure (Debian's node-llhttp puts
 * it in /usr/share/llhttp), into evapi. No code of our own: each llhttp
 * source needs its own translation unit, hence one wrapper per file.
 */
#include <api.c>
