/* demo.h: the demo server's route groups. */
#ifndef EVAPI_DEMO_H
#define EVAPI_DEMO_H

#include <evapi.h>

/* Registers /upstream, /external-api, /multi-fetch, /fan-out and their
 * blocking twins /sync-external-api, /sync-multi-fetch. `upstream` is the
 * URL to call, or NULL for the demo's own /upstream route; call
 * demo_outbound_set_port once the port is known. */
void demo_outbound_routes(evapi_app *app, const char *upstream,
                          unsigned upstream_delay_ms);
void demo_outbound_set_port(const char *host, int port);

/* Registers /items/{item_id}, /items, /upload and /files/{filename},
 * storing uploads in `upload_dir` (created when missing). Returns 0 or
 * -1 after printing why. */
int demo_declared_routes(evapi_app *app, const char *upload_dir);

/* Registers POST /log, GET /events, GET /stream, GET /messages, the
 * request-id, timing and CORS middleware and the consumer thread's
 * lifespan hooks (demo_parity.c). */
void demo_parity_setup(evapi_app *app);

/* Registers WS /ws/echo, WS /ws/chat/{room} and GET /chat/{room}/events
 * (demo_ws.c). Returns 0 or -1. */
int demo_ws_routes(evapi_app *app);
/* Points cfg->db_url at `url` (sqlite:///path or postgresql://...) and
 * makes the lookups take `slow_ms` in the database; then
 * demo_db_routes registers /db/users/{user_id}, /db/sync-users/{user_id},
 * /db/blocking-users/{user_id} and the start-up hook that creates and
 * seeds the table (demo_db.c). */
void demo_db_config(evapi_config *cfg, const char *url, unsigned slow_ms);
int demo_db_routes(evapi_app *app);

/* The articles' pub/sub consumer (demo_pubsub.c): subscribes to the
 * Redis channel DEMO_PUBSUB_CHANNEL in `lane` (EVAPI_INLINE: on the
 * loop, the blocking handler stalls every request; EVAPI_POOL: on the
 * pool, side by side); a message starting with "blocking" sleeps
 * `block_ms`. GET /pubsub/log lists each message's start and finish.
 * Needs cfg.redis_url. Returns 0 or -1. */
#define DEMO_PUBSUB_CHANNEL "experiment"
int demo_pubsub_routes(evapi_app *app, evapi_lane lane, unsigned block_ms);

#endif
