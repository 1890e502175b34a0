/*
 * channel.c: named channels (rooms) and in-process broadcast to
 * WebSocket sessions and server-sent-event streams.
 *
 * Threads: loop thread only.
 *
 * A channel is a name and a list of subscriptions; it lives while it
 * has subscribers. A session's subscriptions are also chained on the
 * session, so it leaves every channel in one walk when it ends
 * (evapi__channels_leave_ws). A stream's subscription owns the stream's
 * producer handle and its callback: the stream is closed when it is
 * cancelled (client gone), at shutdown, or when the app is freed.
 *
 * Every publish goes through evapi_app_publish: to this process's
 * subscribers (evapi__channels_deliver) and, with redis_url set, to
 * Redis (redis.c), whose bridge calls evapi__channels_deliver for what
 * other processes published.
 */
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "ws_frame.h"

typedef struct channel channel;

struct evapi__ws_sub {
	channel *ch;
	evapi_ws *ws;         /* one of ws, stream */
	evapi_stream *stream;
	evapi_app *app;       /* for a stream's */
	TAILQ_ENTRY(evapi__ws_sub) in_ch;
	struct evapi__ws_sub *next_of_ws;
};

TAILQ_HEAD(sub_list, evapi__ws_sub);

struct channel {
	channel *next;
	struct sub_list subs;
	char name[];
};

struct evapi__channels {
	channel *list;
};

static channel *find(evapi_app *app, const char *name, int create)
{
	channel *ch;
	size_t n;

	if (!app->channels) {
		if (!create)
			return NULL;
		app->channels = calloc(1, sizeof *app->channels);
		if (!app->channels)
			return NULL;
	}
	for (ch = app->channels->list; ch; ch = ch->next)
		if (strcmp(ch->name, name) == 0)
			return ch;
	if (!create)
		return NULL;
	n = strlen(name);
	ch = calloc(1, sizeof *ch + n + 1);
	if (!ch)
		return NULL;
	memcpy(ch->name, name, n + 1);
	TAILQ_INIT(&ch->subs);
	ch->next = app->channels->list;
	app->channels->list = ch;
	return ch;
}

/* A channel lives while it has subscribers. */
static void drop_if_empty(evapi_app *app, channel *ch)
{
	channel **pp;
	if (!TAILQ_EMPTY(&ch->subs))
		return;
	for (pp = &app->channels->list; *pp; pp = &(*pp)->next)
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	free(ch);
}

/* Unlinks `sub` from its channel, freeing the channel once empty. */
static void sub_unlink(evapi_app *app, struct evapi__ws_sub *sub)
{
	channel *ch = sub->ch;

	TAILQ_REMOVE(&ch->subs, sub, in_ch);
	if (sub->stream) {
		evapi_stream_set_cb(sub->stream, NULL, NULL);
		evapi_stream_close(sub->stream);
	}
	free(sub);
	drop_if_empty(app, ch);
}

static struct evapi__ws_sub *sub_new(evapi_app *app, const char *name)
{
	channel *ch = find(app, name, 1);
	struct evapi__ws_sub *sub;

	if (!ch)
		return NULL;
	sub = calloc(1, sizeof *sub);
	if (!sub) {
		drop_if_empty(app, ch);
		return NULL;
	}
	sub->ch = ch;
	TAILQ_INSERT_TAIL(&ch->subs, sub, in_ch);
	return sub;
}

int evapi_ws_subscribe(evapi_ws *ws, const char *name)
{
	struct evapi__ws_sub **head, *sub;
	evapi_app *app = evapi_ws_app(ws);

	if (!ws || !name)
		return EVAPI_EINVAL;
	if (!evapi__ws_is_open(ws))
		return EVAPI_EGONE;
	head = evapi__ws_subs(ws);
	for (sub = *head; sub; sub = sub->next_of_ws)
		if (strcmp(sub->ch->name, name) == 0)
			return EVAPI_EEXIST;
	sub = sub_new(app, name);
	if (!sub)
		return EVAPI_ENOMEM;
	sub->ws = ws;
	sub->next_of_ws = *head;
	*head = sub;
	return 0;
}

int evapi_ws_unsubscribe(evapi_ws *ws, const char *name)
{
	struct evapi__ws_sub **pp, *sub;

	if (!ws || !name)
		return EVAPI_EINVAL;
	for (pp = evapi__ws_subs(ws); (sub = *pp); pp = &sub->next_of_ws)
		if (strcmp(sub->ch->name, name) == 0) {
			*pp = sub->next_of_ws;
			sub_unlink(evapi_ws_app(ws), sub);
			return 0;
		}
	return EVAPI_ENOENT;
}

void evapi__channels_leave_ws(evapi_ws *ws)
{
	struct evapi__ws_sub **head = evapi__ws_subs(ws), *sub;

	while ((sub = *head)) {
		*head = sub->next_of_ws;
		sub_unlink(evapi_ws_app(ws), sub);
	}
}

/* The stream's callback: a cancelled stream leaves its channel. */
static void stream_cb(evapi_stream *s, int status, void *arg)
{
	struct evapi__ws_sub *sub = arg;
	if (status == EVAPI_ECANCELED)
		sub_unlink(sub->app, sub);
}

int evapi_stream_subscribe(evapi_app *app, evapi_stream *s, const char *name)
{
	struct evapi__ws_sub *sub;
	int rc;

	if (!app || !s || !name)
		return EVAPI_EINVAL;
	sub = sub_new(app, name);
	if (!sub)
		return EVAPI_ENOMEM;
	sub->stream = s;
	sub->app = app;
	if ((rc = evapi_stream_set_cb(s, stream_cb, sub)) != 0) {
		sub->stream = NULL; /* still the caller's */
		sub_unlink(app, sub);
		return rc;
	}
	return 0;
}

void evapi__channels_shutdown(evapi_app *app)
{
	channel *ch, *next;
	struct evapi__ws_sub *sub, *nsub;

	if (!app->channels)
		return;
	for (ch = app->channels->list; ch; ch = next) {
		next = ch->next; /* `ch` may go with its last stream */
		for (sub = TAILQ_FIRST(&ch->subs); sub; sub = nsub) {
			nsub = TAILQ_NEXT(sub, in_ch);
			if (sub->stream)
				sub_unlink(app, sub);
		}
	}
}

/* Every subscriber of `name` in this process. */
int evapi__channels_deliver(evapi_app *app, const char *name, const char *text)
{
	channel *ch = find(app, name, 0);
	struct evapi__ws_sub *sub, *next;
	uint8_t h[EVAPI__WS_MAX_HEADER];
	size_t len, hn = 0;
	int reached = 0, rc;

	if (!ch)
		return 0;
	/* one frame for every session: checked and framed here, once, and
	 * written from the text itself (evapi__ws_send_framed) */
	len = strlen(text);
	hn = evapi__ws_text_header(h, text, len);
	/* unlinking the last subscriber frees the channel; `next` is then
	 * NULL and the walk ends */
	for (sub = TAILQ_FIRST(&ch->subs); sub; sub = next) {
		next = TAILQ_NEXT(sub, in_ch);
		if (sub->ws) {
			if (hn && evapi__ws_send_framed(sub->ws, h, hn, text,
			                                len) == 0)
				reached++;
			continue;
		}
		rc = evapi_sse_send(sub->stream, NULL, NULL, text);
		if (rc == 0) {
			reached++;
		} else if (rc != EVAPI_EBUSY) {
			sub_unlink(app, sub); /* cancelled */
		}
	}
	return reached;
}

int evapi_app_publish(evapi_app *app, const char *name, const char *text)
{
	if (!app || !name || !text)
		return EVAPI_EINVAL;
	/* here at once; other processes through Redis (redis.c skips
	 * our own message when it comes back) */
	evapi__redis_publish(app, name, text);
	return evapi__channels_deliver(app, name, text);
}

void evapi__channels_free(evapi_app *app)
{
	channel *ch;

	if (!app->channels)
		return;
	/* sessions left when they ended; what is left are streams. The
	 * last unlink of a channel frees it. */
	while ((ch = app->channels->list)) {
		struct evapi__ws_sub *sub;
		int last;
		do {
			sub = TAILQ_FIRST(&ch->subs);
			last = TAILQ_NEXT(sub, in_ch) == NULL;
			sub_unlink(app, sub);
		} while (!last);
	}
	free(app->channels);
	app->channels = NULL;
}
