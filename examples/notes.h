/* notes.h: the notes service (notes.c), shared with its test. */
#ifndef EVAPI_EXAMPLE_NOTES_H
#define EVAPI_EXAMPLE_NOTES_H

#include <evapi.h>

/* Registers the notes routes on `app` (evapi_app_setup_cb), whose db_url
 * must name a database (sqlite://:memory: will do): its table is made
 * here, blocking, so call it before the app runs. Reads NOTES_API_KEY
 * [dev-key] and NOTES_ANALYSER [http://127.0.0.1:8001] from the
 * environment. Returns 0 or a negative code (the app's log says why). */
int notes_setup(evapi_app *app, void *arg);

#endif
