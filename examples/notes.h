/* notes.h: the notes example app (notes.c), shared with its test. */
#ifndef EVAPI_EXAMPLE_NOTES_H
#define EVAPI_EXAMPLE_NOTES_H

#include <evapi.h>

/* A new app serving the notes routes with `cfg` (NULL: defaults). */
evapi_app *notes_app(const evapi_config *cfg);

#endif
