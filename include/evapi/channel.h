/*
 * evapi/channel.h: named channels (rooms) for broadcasts to WebSocket
 * sessions and server-sent-event streams.
 *
 * A publish reaches every subscriber in this process and, with
 * config.redis_url set, every subscriber in every other process and
 * instance sharing that Redis (evapi/redis.h).
 * Everything here is loop-thread-only.
 */
#ifndef EVAPI_CHANNEL_H
#define EVAPI_CHANNEL_H

#include <evapi/common.h>
#include <evapi/app.h>
#include <evapi/stream.h>
#include <evapi/websocket.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Subscribes an open session to `channel` (copied). The subscription
 *  ends with evapi_ws_unsubscribe or with the session. Returns 0,
 *  EVAPI_EEXIST (already subscribed), EVAPI_EGONE or EVAPI_ENOMEM. */
EVAPI_EXPORT int evapi_ws_subscribe(evapi_ws *ws, const char *channel);
/** Returns 0 or EVAPI_ENOENT (not subscribed). */
EVAPI_EXPORT int evapi_ws_unsubscribe(evapi_ws *ws, const char *channel);

/** Subscribes an event stream (evapi_reply_sse, from an inline handler)
 *  of `app` to one `channel`: each publish is sent to it as one event
 *  (evapi_sse_send with no event name). Steals the producer's handle and
 *  sets the stream callback: the channel closes the stream when the
 *  client goes, when the app drains, or when it is freed. On error the
 *  handle is still the caller's. Returns 0, EVAPI_EINVAL, EVAPI_ETHREAD
 *  or EVAPI_ENOMEM. */
EVAPI_EXPORT int evapi_stream_subscribe(evapi_app *app, evapi_stream *s,
                                        const char *channel);

/** Sends `text` (UTF-8, copied) to every subscriber of `channel`: a text
 *  message to sessions (a slow one is handled as its route says: closed
 *  with 1008, or skipped), an event to streams (skipped when its buffer
 *  is full). With redis_url set it is also PUBLISHed on the Redis
 *  channel "evapi:channel:<channel>", and every other app on that Redis
 *  delivers it to its own subscribers (a PUBLISH there by any other
 *  client reaches every app's subscribers too); a Redis that is down
 *  loses it for the other processes only (logged). Returns how many
 *  subscribers it reached in this process (0 for an unknown channel),
 *  or EVAPI_EINVAL. */
EVAPI_EXPORT int evapi_app_publish(evapi_app *app, const char *channel,
                                   const char *text);

#ifdef __cplusplus
}
#endif
#endif
