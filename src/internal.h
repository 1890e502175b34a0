/*
 * internal.h: struct layouts and cross-file internals. Never installed.
 *
 * Threads: the loop thread owns every field unless a comment says a
 * worker may touch it. A pool handler reads the request snapshot and
 * writes only `resp` (see request.c); the pool's mutex orders that
 * against the loop.
 */
#ifndef EVAPI_INTERNAL_H
#define EVAPI_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include <evapi.h>

#define EVAPI_HIDDEN __attribute__((visibility("hidden")))

/* The record that embeds `member` at address `ptr`. */
#define EVAPI__CONTAINER_OF(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Relaxed atomics for counters read from other threads. */
#define EVAPI__ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define EVAPI__LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define EVAPI__STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

struct event_base;
struct event;
struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;

/* ---- inline helpers (no file of their own) ---------------------------- */
static inline int64_t evapi__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- error_reply.c, app.c, env.c: errors and the config ----------- */
/* Fills `err` (may be NULL) with `code` and the message; returns `code`. */
EVAPI_HIDDEN int evapi__error_set(evapi_error *err, int code,
                                  const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* 0, or EVAPI_EINVAL with the first invalid member named in err (the one
 * range table, app.c). */
EVAPI_HIDDEN int evapi__config_check(const evapi_config *c, evapi_error *err);
/* The i-th environment variable and its member's name, or NULL past the
 * end (env.c). */
EVAPI_HIDDEN const char *evapi__config_env_name(size_t i, const char **member);

/* error_reply.c: the body of an error reply: the app's handler for the
 * status, or {"detail": detail}. Steals `detail`; `app` and `req` may be
 * NULL. Returns new, or NULL when out of memory. Any thread. */
EVAPI_HIDDEN json_t *evapi__error_body(evapi_app *app, evapi_req *req,
                                       int status, json_t *detail);
/* The same from a detail string, serialised: malloc'd (free) or NULL. */
EVAPI_HIDDEN char *evapi__error_dump(evapi_app *app, evapi_req *req,
                                     int status, const char *detail,
                                     size_t *len);
EVAPI_HIDDEN void evapi__error_handlers_free(evapi_app *app);

/* ---- log.c ----------------------------------------------------------- */
EVAPI_HIDDEN void evapi__log(const evapi_app *app, evapi_log_level lvl,
                             const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Access log (loop thread only): buffered with the default sink. */
typedef struct evapi__access_buf evapi__access_buf;
typedef struct evapi__stats evapi__stats; /* stats.c */
EVAPI_HIDDEN void evapi__access_log(evapi_app *app, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
EVAPI_HIDDEN void evapi__access_flush(evapi_app *app);
EVAPI_HIDDEN void evapi__access_free(evapi_app *app);

/* ---- app.c: per-thread settings and "am I on the loop" ---------------
 * A thread that serves an app says so once: a pool worker at its
 * start-up (evapi__pool_new's thread_init), the loop thread for the
 * length of evapi_app_run. What depends on the calling thread and has no
 * app at hand reads them: evapi_fetch_sync takes the app's outbound
 * limits from there and refuses to run on a loop. */
enum evapi__thread_role {
	EVAPI__THREAD_OTHER = 0, /* a thread of the application's own */
	EVAPI__THREAD_LOOP,
	EVAPI__THREAD_WORKER
};
EVAPI_HIDDEN void evapi__thread_set(const evapi_app *app,
                                    enum evapi__thread_role role);
EVAPI_HIDDEN const evapi_app *evapi__thread_app(void); /* or NULL */
EVAPI_HIDDEN enum evapi__thread_role evapi__thread_role(void);

/* A record of each thread's own (a blocking client's connection): made
 * zeroed on a thread's first evapi__thread_record call and handed to
 * `destroy` (which frees it) when the thread exits. Declare one per
 * kind, file-static: static evapi__thread_slot s =
 * EVAPI__THREAD_SLOT(destroy). Any thread. */
typedef struct evapi__thread_slot {
	void (*destroy)(void *record);
	pthread_key_t key;
	int ready; /* atomic: key made */
} evapi__thread_slot;
#define EVAPI__THREAD_SLOT(destroy) {(destroy), 0, 0}
/* The calling thread's record of `size` bytes, or NULL when out of
 * memory (or of thread keys). */
EVAPI_HIDDEN void *evapi__thread_record(evapi__thread_slot *slot,
                                        size_t size);

/* 1 when the calling thread is `*t` (read atomically: evapi_app_run
 * stores the loop thread's id while other threads may read it). */
static inline int evapi__is_thread(const pthread_t *t)
{
	return t && pthread_equal(pthread_self(), EVAPI__LOAD(t));
}
/* 1 on the app's loop thread (its creator's until evapi_app_run). */
#define evapi__on_loop(app) \
	pthread_equal(pthread_self(), EVAPI__LOAD(&(app)->loop_thread))

/* ---- watchdog.c: every user callback on the loop ---------------------
 * evapi__user_begin(app, &u, kind, name, route); <user code>;
 * evapi__user_end(app, &u). `u` lives on the caller's stack; kind and
 * name are borrowed until the end ("handler", "GET /x"; "background
 * task", its name). A callback that holds the loop for
 * stall_threshold_ms or more (its own time, nested callbacks excluded)
 * counts in stalls, max_stall_ms and the route's stalls, and is logged
 * as "loop stalled N ms in <name> (<kind>)". Loop thread only. */
struct evapi__route;
typedef struct evapi__user {
	struct evapi__user *parent;
	int64_t start_us, child_us;
	const char *kind, *name;
	const struct evapi__route *route;
} evapi__user;
/* evapi__user_begin and evapi__user_end are inline (after struct
 * evapi_app, below): they run around every handler. A stall is reported
 * by: */
EVAPI_HIDDEN void evapi__user_stall(evapi_app *app, const evapi__user *u,
                                    int64_t ms);

/* ---- arena.c: request-scoped bump allocator --------------------------- */
typedef struct evapi__arena_block evapi__arena_block;
typedef struct evapi__arena {
	char *cur, *end;
	evapi__arena_block *blocks; /* malloc'd overflow blocks */
} evapi__arena;

EVAPI_HIDDEN void evapi__arena_init(evapi__arena *a, void *buf, size_t len);
EVAPI_HIDDEN void *evapi__arena_alloc(evapi__arena *a, size_t len);
EVAPI_HIDDEN char *evapi__arena_strndup(evapi__arena *a, const char *s,
                                        size_t len);
EVAPI_HIDDEN void evapi__arena_release(evapi__arena *a);

/* ---- names.c: the name tables ------------------------------------------ */
/* The method bits in registration order (GET, HEAD, POST, ...); 0 past
 * the last. */
EVAPI_HIDDEN unsigned evapi__method_at(size_t i);
/* Writes "GET, HEAD, POST" for a method mask into buf. */
EVAPI_HIDDEN void evapi__allow_string(unsigned methods, char *buf,
                                      size_t len);
/* The reason phrase for a status ("Not Found"). */
EVAPI_HIDDEN const char *evapi__reason(int status);
/* A growable byte buffer, kept NUL-terminated (arena.c; any one thread). */
typedef struct evapi__sbuf {
	char *p;
	size_t len, cap;
} evapi__sbuf;
/* Appends `n` bytes; returns 0, or -1 when out of memory (nothing added). */
EVAPI_HIDDEN int evapi__sbuf_add(evapi__sbuf *b, const void *data, size_t n);
/* Room for `n` more bytes and the NUL at b->p + b->len; 0 or -1. */
EVAPI_HIDDEN int evapi__sbuf_reserve(evapi__sbuf *b, size_t n);

/* ---- router.c -------------------------------------------------------- */
#define EVAPI__MAX_PARAMS 16

typedef struct evapi__kv {
	const char *name;
	const char *value;
} evapi__kv;

typedef struct evapi__route {
	unsigned method;     /* one evapi_method bit */
	char *tmpl;          /* "/users/{user_id}" */
	char *label;         /* "GET /users/{user_id}", for logs */
	evapi_lane lane;
	evapi_handler_cb cb;
	void *arg;
	int nsegs;
	char **segs;         /* literal text, or the name for a {param} */
	unsigned char *is_param; /* 1: {name}; 2: {name:path}, the last */
	struct evapi__decl *decl; /* declared route (schema.c), or NULL */
	unsigned idx;        /* position in the router (stats.c) */
	const struct evapi__group *group; /* apirouter.c: from a router, or
	                                     NULL (app-owned) */
	evapi_dep *deps;     /* depends.c: the route's own (evapi_route_dep) */
	int ndeps;
	int builtin;         /* evapi's own route or a mount: no dependencies */
} evapi__route;

typedef struct evapi__router evapi__router;

enum evapi__match_result {
	EVAPI__MATCH_OK = 0,
	EVAPI__MATCH_NOT_FOUND = 1,
	EVAPI__MATCH_METHOD = 2,  /* path known, method not: see allow */
	EVAPI__MATCH_BAD_PATH = 3 /* malformed escape, %00, no leading '/' */
};

typedef struct evapi__match {
	evapi__route *route;
	unsigned allow; /* with EVAPI__MATCH_METHOD: methods for the path */
	int nparams;
	evapi__kv params[EVAPI__MAX_PARAMS];
} evapi__match;

EVAPI_HIDDEN evapi__router *evapi__router_new(void);
EVAPI_HIDDEN void evapi__router_free(evapi__router *r);
EVAPI_HIDDEN int evapi__router_add(evapi__router *r, unsigned methods,
                                   const char *tmpl, evapi_lane lane,
                                   evapi_handler_cb cb, void *arg);
/* Matches `raw_path` (still percent-encoded, no query). Decoded parameter
 * values are written into `scratch`, which must hold strlen(raw_path)+1
 * bytes and outlive the match. */
EVAPI_HIDDEN int evapi__router_match(const evapi__router *r, unsigned method,
                                     const char *raw_path, char *scratch,
                                     evapi__match *m);
EVAPI_HIDDEN size_t evapi__router_count(const evapi__router *r);
EVAPI_HIDDEN evapi__route *evapi__router_at(const evapi__router *r, size_t i);
/* Strict percent-decoding of [s, s+len) into out (NUL-terminated).
 * plus_is_space for query strings. Returns decoded length, or -1 for a
 * malformed escape or a decoded NUL. */
EVAPI_HIDDEN long evapi__pct_decode(const char *s, size_t len, char *out,
                                    int plus_is_space);

/* ---- wake.c: another thread wakes the loop (an eventfd) --------------- */
typedef struct evapi__wake evapi__wake;
/* Loop thread: `fn(arg)` runs on the loop after any evapi__wake_signal.
 * `loop` points at the loop thread's id (read atomically), or is NULL. */
EVAPI_HIDDEN evapi__wake *evapi__wake_new(struct event_base *base,
                                          const pthread_t *loop,
                                          void (*fn)(void *), void *arg);
/* Any thread. Signals coalesce: `fn` must take everything published. */
EVAPI_HIDDEN void evapi__wake_signal(evapi__wake *w);
EVAPI_HIDDEN void evapi__wake_free(evapi__wake *w); /* loop thread; NULL ok */

/* The post queue (wake.c): any thread hands a function to the loop.
 * Bounded (EVAPI_POST_QUEUE_MAX: EVAPI_EBUSY past it); every accepted
 * post runs exactly once, on the loop, with 0 or, when the app is not
 * running or the queue is freed, EVAPI_ECANCELED. `user`: a callback of
 * evapi_app_post's, timed by the watchdog. */
typedef struct evapi__postq evapi__postq;
EVAPI_HIDDEN evapi__postq *evapi__postq_new(evapi_app *app); /* loop */
EVAPI_HIDDEN int evapi__postq_add(evapi__postq *q, evapi_post_cb cb,
                                  void *arg, int user); /* any thread */
/* Loop thread: runs what is queued now with `status`. */
EVAPI_HIDDEN void evapi__postq_run(evapi__postq *q, int status);
EVAPI_HIDDEN void evapi__postq_free(evapi__postq *q); /* loop; NULL ok */

/* ---- ready.c: final outcomes delivered later, from one loop event ---- */
/* Embedded in the owner's record; on the list from _add until delivered. */
typedef struct evapi__ready_item {
	TAILQ_ENTRY(evapi__ready_item) link;
} evapi__ready_item;
TAILQ_HEAD(evapi__ready_list, evapi__ready_item);
/* Delivers one item (taken off the list); it may add more. */
typedef void (*evapi__ready_cb)(evapi__ready_item *it, void *arg);
/* Embedded in its owner; every call on the loop thread. */
typedef struct evapi__ready {
	struct evapi__ready_list list;
	struct event *ev;
	evapi__ready_cb cb;
	void *arg;
} evapi__ready;
/* 0, or EVAPI_ENOMEM (then _run and _free are still safe). */
EVAPI_HIDDEN int evapi__ready_init(evapi__ready *r, struct event_base *base,
                                   evapi__ready_cb cb, void *arg);
/* `it` goes to the end of the list; `cb` runs for it from the event. */
EVAPI_HIDDEN void evapi__ready_add(evapi__ready *r, evapi__ready_item *it);
/* Delivers what is on the list now (the event's work; an owner being
 * freed calls it once the loop stopped). A zeroed, never initialised
 * `r` has nothing to deliver. */
EVAPI_HIDDEN void evapi__ready_run(evapi__ready *r);
/* Frees the event; what is still on the list is not delivered. */
EVAPI_HIDDEN void evapi__ready_free(evapi__ready *r);

/* ---- pool.c ---------------------------------------------------------- */
typedef struct evapi__pool evapi__pool;
typedef struct evapi__job evapi__job;
/* work runs on a worker; done runs on the loop with 0, or with
 * EVAPI_ECANCELED when the pool is torn down before the job ran. */
typedef void (*evapi__job_fn)(evapi__job *job);
typedef void (*evapi__done_fn)(evapi__job *job, int status);

struct evapi__job {
	TAILQ_ENTRY(evapi__job) link; /* under the pool mutex */
	evapi__job_fn work;
	evapi__done_fn done;
	int state;                    /* under the pool mutex */
	int64_t queued_us;            /* under the pool mutex */
};

/* `thread_init(init_arg)` (may be NULL) runs on each worker once, when
 * it starts, before its first job: per-thread settings go there. */
EVAPI_HIDDEN evapi__pool *evapi__pool_new(struct event_base *base,
                                          const pthread_t *loop,
                                          int threads, int queue_max,
                                          int batch,
                                          void (*thread_init)(void *),
                                          void *init_arg);
/* Worker hooks: a new `on_start(arg, index)` runs on every worker, on
 * that worker, before the next job it takes (at once if it is idle);
 * `on_stop(arg, index)` on each worker as it exits (evapi__pool_free),
 * after on_start if there is one. Any thread, before evapi__pool_free. */
typedef void (*evapi__pool_hook)(void *arg, int index);
EVAPI_HIDDEN void evapi__pool_hooks(evapi__pool *p, evapi__pool_hook on_start,
                                    evapi__pool_hook on_stop, void *arg);
/* Returns 0 or EVAPI_EBUSY when queue_max jobs already wait. */
EVAPI_HIDDEN int evapi__pool_submit(evapi__pool *p, evapi__job *job);
/* Unlinks a job still waiting (returns 1: done will never run) or
 * returns 0 when it already runs or ran (done will run). */
EVAPI_HIDDEN int evapi__pool_cancel(evapi__pool *p, evapi__job *job);
/* Joins the workers (after their current job), runs pending completions
 * and calls done(EVAPI_ECANCELED) for jobs that never ran. Loop thread. */
EVAPI_HIDDEN void evapi__pool_free(evapi__pool *p);
EVAPI_HIDDEN void evapi__pool_counts(evapi__pool *p, int *threads, int *busy,
                                     int *queued);
/* Age of the oldest queued job and the longest wait any job had before a
 * worker took it, in microseconds. */
EVAPI_HIDDEN void evapi__pool_waits(evapi__pool *p, int64_t *oldest_us,
                                    int64_t *max_us);

/* ---- the request and the app: layouts (request.c builds replies,
 * reactor.c runs the request's life, app.c owns the app) -------------- */
typedef struct evapi__header {
	char *name, *value;
	struct evapi__header *next;
} evapi__header;

/* A reply built by any thread, sent by the loop. */
typedef struct evapi__resp {
	int status;
	const char *content_type; /* static or in body_owner */
	char *body;               /* malloc'd */
	size_t len;
	evapi__header *headers;   /* malloc'd list, in order of addition */
	evapi__header *headers_tail;
	evapi_stream *stream;     /* the reply is this stream (not owned) */
	struct evapi__fbody *file; /* a file body (files.c), owned */
} evapi__resp;

typedef struct evapi__client evapi__client; /* client.c */
typedef struct evapi__task evapi__task;

/*
 * Pending work (reactor.c). Every operation that may complete after the
 * code that started it has returned (a sleep or a pool continuation in
 * continue.c, a batch of outbound calls in client.c, a stream in
 * stream.c, a background run in tasks.c; database queries and WebSocket
 * sessions the same way) embeds one evapi__pending in its own record and
 * registers it when it starts: on its request (evapi__req_pending_add:
 * the entry holds a reference on the request and counts in
 * req->pending, so the no-reply check waits for it) or, when it is bound
 * to no request, on the app (evapi__pending_link on &app->pending).
 * The entry is removed when the operation completes, before its
 * continuation runs. A client leaving, the request's deadline and a
 * shutdown cut walk the request's list; a shutdown cut also walks the
 * app's: the reactor knows no kind by name.
 *
 * `cancel` runs on the loop, from inside that walk. It stops the work
 * (aborts transfers, fires a timer early, unlinks a queued job) and
 * arranges for the operation's completion to run later, from an event of
 * its own, with EVAPI_ECANCELED; it never calls user code, and it may
 * remove its own entry but no other. (A WebSocket session is the one
 * exception to "no user code": its cancel sends 1001 Going Away, closes
 * the connection and runs on_close, since the loop stops right after.)
 */
typedef struct evapi__pending evapi__pending;
typedef void (*evapi__cancel_fn)(evapi__pending *p);
TAILQ_HEAD(evapi__pending_list, evapi__pending);
struct evapi__pending {
	TAILQ_ENTRY(evapi__pending) link;   /* in the order started */
	struct evapi__pending_list *list;   /* NULL when not linked */
	evapi__cancel_fn cancel;
	const char *what;   /* "sleep", "stream": for log lines */
	int is_reply;       /* the operation is writing the reply (stream) */
	/* Optional, for work on app->pending that outlives requests (a
	 * WebSocket session): when the app starts draining, asked to wind
	 * down by itself (it never calls user code there); while such an
	 * entry is linked the drain waits for it. Set after linking. */
	void (*drain)(evapi__pending *p);
};

enum evapi__req_state {
	EVAPI__REQ_RUNNING = 0, /* no reply yet */
	EVAPI__REQ_REPLIED,     /* reply built (pool: not yet sent) */
	EVAPI__REQ_SENT,        /* reply handed to evhttp */
	EVAPI__REQ_GONE         /* client left / deadline / cut */
};

struct evapi_req {
	evapi_app *app;
	unsigned long long id;
	evapi__route *route;
	/* loop thread only */
	int refs;
	int pending;                  /* entries on pending_ops */
	struct evhttp_request *ev;    /* NULL once sent or gone */
	struct event *watch;          /* client-close detector, deferred only */
	struct event *deadline;       /* request deadline, deferred only */
	struct evapi__pending_list pending_ops; /* for cancellation */
	int gone;                     /* client left / deadline / cut */
	int finished;                 /* counted and logged */
	int head_only;                /* HEAD answered by a GET route */
	evapi_method method;
	int64_t start_us;
	TAILQ_ENTRY(evapi_req) live;  /* app->live */
	/* written by the thread that owns the handler; read by the loop
	 * after the pool's completion (happens-before via the pool mutex) */
	int state;
	int on_worker;                /* set by the loop before submit */
	evapi__resp resp;
	json_t *json;                 /* parsed body cache */
	struct evapi__parsed *parsed; /* declared routes: validated input */
	struct evapi__ustream *ustream; /* an upload body the guard streamed
	                                   to temporary files (a reference) */
	/* immutable snapshot, readable from any thread */
	const char *path;
	int nparams, nquery, nheaders;
	int cleaning;                 /* cleanups running: no reply, no wait */
	evapi__kv *params, *query, *headers;
	const char *body;
	size_t body_len;
	evapi__job job;               /* pool-lane handler job */
	/* parity features (tasks.c, stream.c, middleware.c) */
	evapi__task *tasks;           /* handler-owned like resp, until sent */
	evapi__resp *after_resp;      /* loop: reply seen by after hooks */
	int mw_depth;                 /* loop: before hooks that ran */
	int in_before;                /* loop: a before hook is running */
	/* depends.c: state slots and cleanups are owned like resp; the
	 * chain's fields by the loop (dep_rc: written by the worker running
	 * the pool resolver dep_job, read after its completion) */
	struct evapi__slot *slots;
	struct evapi__cleanup *cleanups; /* newest first */
	int dep_next;                 /* next resolver of the chain */
	int dep_waiting;              /* a resolver returned EVAPI_DEP_WAIT */
	const evapi_dep *dep_job;     /* the job runs this pool resolver */
	int dep_rc;
	int final_status;             /* as logged (req_finish) */
	evapi__arena arena;
	/* Enough for a short request (wrk's, curl's: path and two or
	 * three headers); more spills into malloc'd blocks. Every
	 * connection waiting on a handler holds one request. */
	char arena_buf[256] __attribute__((aligned(16))); /* arena.c ALIGN */
};

TAILQ_HEAD(evapi__req_list, evapi_req);

/*
 * Every app-wide counter, once (stats.c, app.c). Each row: the C type
 * and the name, which is both the field of app->stats and of the public
 * evapi_stats (evapi_app_stats copies them all); where it goes in the
 * /_/stats JSON (an object, "" for the top level, and the key); and its
 * Prometheus name, type and help in /_/metrics. A new counter is one
 * row here plus its field in include/evapi/app.h (the copy does not
 * compile without it); tests/test_stats.c checks every row is in all
 * three.
 */
#define EVAPI__COUNTERS(X)                                                     \
	X(unsigned long long, requests, "", "requests",                        \
	  "evapi_finished_requests_total", "counter",                          \
	  "Requests answered, the guard's own rejections included.")           \
	X(unsigned long long, in_flight, "", "in_flight",                      \
	  "evapi_in_flight_requests", "gauge",                                 \
	  "Requests alive: replying, or with work pending after the reply.")   \
	X(unsigned long long, stalls, "", "stalls",                            \
	  "evapi_loop_stalls_total", "counter",                                \
	  "Loop stalls reported by the watchdog.")                             \
	X(long long, max_stall_ms, "", "max_stall_ms",                         \
	  "evapi_loop_max_stall_milliseconds", "gauge",                        \
	  "The longest stall the watchdog reported.")                          \
	X(unsigned long long, rejected, "", "pool_rejected",                   \
	  "evapi_pool_rejected_total", "counter",                              \
	  "503 answers for a full pool queue.")                                \
	X(unsigned long long, no_reply, "", "no_reply",                        \
	  "evapi_no_reply_total", "counter",                                   \
	  "500 answers for handlers that returned without replying.")          \
	X(unsigned long long, gone, "", "gone",                                \
	  "evapi_clients_gone_total", "counter",                               \
	  "Clients that left before their reply.")                             \
	X(unsigned long long, timeouts, "", "timeouts",                        \
	  "evapi_request_timeouts_total", "counter",                           \
	  "504 answers for the request deadline.")                             \
	X(unsigned long long, status_4xx, "status", "4xx",                     \
	  "evapi_status_4xx_total", "counter", "4xx answers.")                 \
	X(unsigned long long, status_5xx, "status", "5xx",                     \
	  "evapi_status_5xx_total", "counter", "5xx answers.")                 \
	X(unsigned long long, guard_rejected, "", "guard_rejected",            \
	  "evapi_guard_rejected_total", "counter",                             \
	  "Requests the request guard answered itself (400, 408, 413, 414, "   \
	  "431, 501, 503, 505).")                                              \
	X(unsigned long long, outbound_calls, "outbound", "calls",             \
	  "evapi_outbound_calls_total", "counter", "Finished outbound calls.") \
	X(unsigned long long, outbound_errors, "outbound", "errors",           \
	  "evapi_outbound_errors_total", "counter",                            \
	  "Outbound calls that ended in a transport error.")                   \
	X(unsigned long long, outbound_in_flight, "outbound", "in_flight",     \
	  "evapi_outbound_in_flight", "gauge", "Outbound calls running.")      \
	X(unsigned long long, outbound_sockets, "outbound", "sockets",         \
	  "evapi_outbound_sockets", "gauge", "Outbound sockets open.")         \
	X(unsigned long long, outbound_connects, "outbound", "connects",       \
	  "evapi_outbound_connects_total", "counter",                          \
	  "Outbound sockets opened.")                                          \
	X(unsigned long long, reply_write_timeouts, "", "reply_write_timeouts", \
	  "evapi_reply_write_timeouts_total", "counter",                       \
	  "Replies cut at reply_write_timeout_ms (slow readers).")           \
	X(unsigned long long, websocket_open, "websocket", "open",             \
	  "evapi_websocket_open", "gauge",                                     \
	  "WebSocket sessions accepted and not yet over.")                     \
	X(unsigned long long, websocket_total, "websocket", "total",           \
	  "evapi_websocket_sessions_total", "counter",                         \
	  "WebSocket sessions accepted.")                                      \
	X(unsigned long long, file_sendfile_bytes, "files", "sendfile_bytes",  \
	  "evapi_file_sendfile_bytes_total", "counter",                        \
	  "File reply bytes the kernel sent with sendfile(2).")

struct evapi_app {
	pthread_t loop_thread;
	evapi_config cfg;
	char *host;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct evhttp_bound_socket *local; /* evapi__reactor_connect_local */
	evapi__router *router;
	evapi__pool *pool;
	struct evapi__decl *decls;    /* declared routes (schema.c) */
	struct evapi__group *groups;  /* apirouter.c: routes from routers */
	struct evapi__errh *errh;     /* error_reply.c: error body shapes */
	int nerrh;
	const char *reg_origin;       /* apirouter.c: the router being
	                                 registered, for refusals */
	struct evapi__openapi *openapi; /* info, schemes, files (openapi.c) */
	evapi__client *client;        /* outbound calls (client.c) */
	struct evapi__db *db;         /* db.c; NULL without cfg.db_url */
	struct evapi__redis *redis;   /* redis.c; NULL without redis_url */
	struct evapi__guard *guard; /* guard.c: the filter in front of evhttp */
	struct evapi__ws_app *ws;   /* ws.c: WebSocket routes and sessions */
	struct evapi__channels *channels; /* channel.c: broadcast */
	struct event *sigint_ev, *sigterm_ev, *grace_ev;
	evapi__wake *stop_wake; /* evapi_app_stop from any thread */
	int port;
	int running;
	int stopping;       /* 1 draining, 2 cut */
	int freeing;        /* in evapi_app_free */
	int not_ready;      /* evapi_app_set_ready(app, 0); atomic */
	int stop_requests;  /* evapi_app_stop calls, atomic */
	int stops_seen;     /* of those, handled on the loop */
	int early_close;    /* the backend supports EV_CLOSED */
	int bodies_writing; /* reply bodies not yet written or dropped */
	struct evapi__user *user_top; /* watchdog.c: the running callback */
	unsigned long long next_id;
	struct evapi__req_list live;
	/* parity features */

	struct evapi__pending_list pending; /* work bound to no request */
	struct evapi__tasks *tasks_mod;  /* tasks.c: background runs */
	evapi__postq *postq;             /* wake.c: thread-safe posts */
	struct evapi__hooks *hooks;      /* lifespan.c: startup/shutdown */
	struct evapi__mws *mws;          /* middleware.c; NULL when none */
	struct evapi__deps *deps_mod;    /* depends.c: app-wide; NULL: none */
	struct evapi__secs *secs;        /* security.c: security deps */
	struct evapi__mount *mounts;     /* files.c: mounted directories */
	evapi__access_buf *access; /* log.c */
	evapi__stats *stats_mod;   /* stats.c; NULL unless cfg.stats_routes */
	int reuse_port;            /* prefork worker: bind with SO_REUSEPORT */
	void *user_data;           /* evapi_app_set_user_data; atomic */
	/* evapi_app_on_worker_start/_stop (app.c), set before run */
	void (*worker_start)(evapi_app *app, int index, void *arg);
	void (*worker_stop)(evapi_app *app, int index, void *arg);
	void *worker_start_arg, *worker_stop_arg;
	evapi_req *req_cache;      /* freed requests kept for reuse */
	int req_cached;
	time_t date_sec;           /* Date header cache (reactor.c) */
	char date[40];
	struct {
#define EVAPI__COUNTER_FIELD(type, name, group, key, prom, kind, help) \
	type name;
		EVAPI__COUNTERS(EVAPI__COUNTER_FIELD)
#undef EVAPI__COUNTER_FIELD
	} stats; /* written on the loop with EVAPI__ADD, read anywhere */
};

/* watchdog.c's fast path (see evapi__user_stall) */
static inline void evapi__user_begin(evapi_app *app, evapi__user *u,
                                     const char *kind, const char *name,
                                     const struct evapi__route *route)
{
	u->kind = kind;
	u->name = name;
	u->route = route;
	u->child_us = 0;
	u->parent = app->user_top;
	app->user_top = u;
	u->start_us = evapi__now_us();
}

static inline void evapi__user_end(evapi_app *app, evapi__user *u)
{
	int64_t total = evapi__now_us() - u->start_us;
	int64_t ms = (total - u->child_us) / 1000;

	app->user_top = u->parent;
	if (u->parent)
		u->parent->child_us += total;
	if (ms >= app->cfg.stall_threshold_ms)
		evapi__user_stall(app, u, ms);
}

/* ---- app.c: registration ---------------------------------------------- */
/* 0, or EVAPI_EEXIST (logged) when a method of `methods` is already
 * registered for a template of the same shape as `path`. */
EVAPI_HIDDEN int evapi__route_check(evapi_app *app, unsigned methods,
                                    const char *path);

/* ---- reactor.c: loop-side request lifecycle --------------------------- */
EVAPI_HIDDEN int evapi__reactor_init(evapi_app *app);
EVAPI_HIDDEN void evapi__reactor_free(evapi_app *app);
EVAPI_HIDDEN int evapi__reactor_listen(evapi_app *app);
EVAPI_HIDDEN int evapi__reactor_run(evapi_app *app);
/* Tests and the fuzzer: a connection to the app without a network.
 * Returns the client's end (blocking, new: close it) of an AF_UNIX
 * stream whose server end evhttp accepts on the next loop turn and the
 * guard wraps like any accepted connection; -1 on failure. libevent 2.1
 * has no call that hands evhttp an already connected socket, so the
 * first call adds a listening socket at an abstract address the kernel
 * picks (evhttp_free closes it). */
EVAPI_HIDDEN int evapi__reactor_connect_local(evapi_app *app);
EVAPI_HIDDEN void evapi__reactor_stop(evapi_app *app);
/* Sends req->resp now (loop thread). */
EVAPI_HIDDEN void evapi__req_send(evapi_req *req);
EVAPI_HIDDEN void evapi__req_unref(evapi_req *req);
/* Runs an inline callback of a request (handler, continuation) with the
 * watchdog (kind: "handler", "sleep continuation") and, on leaving, the
 * no-reply check: 500 when it did not reply and nothing is pending. */
static inline void evapi__req_enter(evapi_req *req, evapi__user *u,
                                    const char *kind)
{
	req->refs++;
	evapi__user_begin(req->app, u, kind,
	                  req->route ? req->route->label : "-", req->route);
}
EVAPI_HIDDEN void evapi__req_leave(evapi_req *req, struct evapi__user *u);

/* ---- request.c -------------------------------------------------------- */
EVAPI_HIDDEN void evapi__resp_clear(evapi__resp *resp);
EVAPI_HIDDEN int evapi__parse_query(evapi_req *req, const char *q);
/* 0 when an inline continuation may be started for req (loop thread,
 * not in a before hook, client still there), else the code. */
EVAPI_HIDDEN int evapi__req_can_wait(const evapi_req *req);
/* 0 when the calling thread may still reply to req, else the code. */
EVAPI_HIDDEN int evapi__reply_check(evapi_req *req);
/* Checks a header as evapi_reply_add_header does and appends a copy to
 * resp (resp NULL: check only). */
EVAPI_HIDDEN int evapi__resp_add_header(evapi__resp *resp, const char *name,
                                        const char *value);

/* json.c: compact JSON text of `v` (malloc'd, not NUL-terminated, its
 * length in *len) with reals in their shortest round-trip form; NULL
 * when out of memory or not serialisable. Any thread. */
EVAPI_HIDDEN char *evapi__json_dump(json_t *v, size_t *len);

/* reactor.c hooks for the parity modules */
EVAPI_HIDDEN void evapi__reactor_maybe_exit(evapi_app *app);
EVAPI_HIDDEN void evapi__req_finish(evapi_req *req, int status);
/* Adds a reply's headers to ev's output and runs the after hooks. */
EVAPI_HIDDEN void evapi__req_headers_out(evapi_req *req, evapi__resp *resp,
                                         struct evhttp_request *ev);
/* Hands req->ev to a starting stream: disarms the request's watch and
 * deadline and adds the reply headers (after hooks included). */
EVAPI_HIDDEN struct evhttp_request *evapi__req_stream_begin(evapi_req *req,
                                                           evapi__resp *resp);
/* Marks the request gone because its stream's client left. */
EVAPI_HIDDEN void evapi__req_client_gone(evapi_req *req);

/* Pending work (see struct evapi__pending). Loop thread only. */
EVAPI_HIDDEN void evapi__pending_link(struct evapi__pending_list *list,
                                      evapi__pending *p,
                                      evapi__cancel_fn cancel,
                                      const char *what);
EVAPI_HIDDEN void evapi__pending_unlink(evapi__pending *p); /* idempotent */
/* Calls every entry's cancel, oldest first; an entry may unlink itself
 * meanwhile (no other). */
EVAPI_HIDDEN void evapi__pending_cancel_all(struct evapi__pending_list *l);
/* On a request: links p, takes a reference and counts it in pending. */
EVAPI_HIDDEN void evapi__req_pending_add(evapi_req *req, evapi__pending *p,
                                         evapi__cancel_fn cancel,
                                         const char *what);
/* Unlinks p and uncounts it; the caller drops the reference
 * (evapi__req_unref) once it is done with the request. */
EVAPI_HIDDEN void evapi__req_pending_done(evapi_req *req, evapi__pending *p);
/* evapi_req_run_in_pool, plus `interrupt`: when the request is cancelled
 * (client gone, deadline, shutdown cut) while `work` already runs on a
 * worker, the loop calls interrupt(arg) so the work can end early (it
 * must only set something the work polls, e.g. an atomic flag). The
 * continuation is still told EVAPI_ECANCELED once the work returns. */
EVAPI_HIDDEN int evapi__req_run_in_pool_ex(evapi_req *req, evapi_work_cb work,
                                           evapi_done_cb done,
                                           void (*interrupt)(void *arg),
                                           void *arg);

/* tasks.c: background tasks, run after the reply is fully written */
struct evapi__bgrun;
EVAPI_HIDDEN void evapi__tasks_attach(evapi_req *req,
                                      struct evhttp_request *ev);
EVAPI_HIDDEN void evapi__tasks_drop(evapi_req *req, const char *why);
EVAPI_HIDDEN void evapi__tasks_free(evapi_app *app);
/* Background runs not finished yet (a draining stop waits for them). */
EVAPI_HIDDEN int evapi__tasks_active(const evapi_app *app);

/* stream.c (loop): take over the request (no-op once done); the same
 * from a pool job's completion, dropping the job's reference */
EVAPI_HIDDEN void evapi__stream_start(evapi_stream *s);
EVAPI_HIDDEN void evapi__stream_job_done(evapi_stream *s);

/* middleware.c: calls one before hook (a middleware's, or a route's
 * dependency) in a watchdog frame of `kind` and `name` (borrowed for the
 * call; in logs): 1 when it answered (short-circuit, or 500 when it
 * returned non-zero without replying), else 0 */
EVAPI_HIDDEN int evapi__before_call(evapi_req *req, evapi_mw_before_cb cb,
                                    void *arg, const char *kind,
                                    const char *name);
/* apirouter.c: a group's dependencies (outermost router first) and
 * their count; the route's OpenAPI tags (new, or NULL without); where a
 * route came from ("router /api"); the app's groups freed */
EVAPI_HIDDEN const evapi_dep *evapi__group_deps(const struct evapi__group *g,
                                                int *n);
EVAPI_HIDDEN json_t *evapi__group_tags(const struct evapi__group *g);
EVAPI_HIDDEN const char *evapi__group_origin(const struct evapi__group *g);
EVAPI_HIDDEN void evapi__groups_free(evapi_app *app);
/* depends.c: the dependency chain of a routed request (loop): runs the
 * resolvers from req->dep_next on, then evapi__req_dispatch; a pool
 * resolver's outcome (after its job's completion); OpenAPI `security`
 * items of a route's dependencies appended to `a`; a dependency checked
 * and appended to an array; a freed request's cleanups and state; the
 * app's list freed. security.c: the security dependencies freed. */
EVAPI_HIDDEN void evapi__deps_run(evapi_req *req);
EVAPI_HIDDEN void evapi__deps_pool_done(evapi_req *req, const evapi_dep *d);
EVAPI_HIDDEN void evapi__deps_security(const evapi_app *app,
                                       const evapi__route *rt, json_t *a);
EVAPI_HIDDEN int evapi__dep_valid(const evapi_dep *d);
EVAPI_HIDDEN int evapi__dep_append(evapi_dep **v, int *n, const evapi_dep *d);
EVAPI_HIDDEN void evapi__deps_req_free(evapi_req *req);
EVAPI_HIDDEN void evapi__deps_free(evapi_app *app);
EVAPI_HIDDEN void evapi__security_free(evapi_app *app);
/* reactor.c: runs req's handler on its lane; queues req's pool job (the
 * handler, or the pool resolver req->dep_job; 503 when the queue is
 * full); arms the close watch and deadline of a request that waits */
EVAPI_HIDDEN void evapi__req_dispatch(evapi_req *req);
EVAPI_HIDDEN void evapi__req_submit(evapi_req *req);
EVAPI_HIDDEN void evapi__req_defer(evapi_req *req);
/* app.c: 1 when template `a` matches every path `b` matches */
EVAPI_HIDDEN int evapi__tmpl_covers(const char *a, const char *b);
/* files.c: a file reply's body (closed with it), sending it (loop; in
 * place of send_resp), the mounts (evapi_app_free) */
typedef struct evapi__fbody evapi__fbody;
EVAPI_HIDDEN void evapi__files_body_free(evapi__fbody *fb);
EVAPI_HIDDEN void evapi__files_send(evapi_req *req);
EVAPI_HIDDEN void evapi__files_free(evapi_app *app);
/* 1 for a mount's route (left out of OpenAPI, as FastAPI's mounts). */
EVAPI_HIDDEN int evapi__files_is_mount(const evapi__route *rt);
/* middleware.c: 1 when a before hook answered (short-circuit) */
EVAPI_HIDDEN int evapi__mw_before(evapi_req *req);
/* 1 when a before hook is registered: it may answer any request. */
EVAPI_HIDDEN int evapi__mw_any_before(const evapi_app *app);
EVAPI_HIDDEN void evapi__mw_after(evapi_req *req, evapi__resp *resp);
EVAPI_HIDDEN void evapi__mw_free(evapi_app *app);

/* lifespan.c: startup/shutdown hooks, the post queue's set-up */
EVAPI_HIDDEN int evapi__lifespan_init(evapi_app *app);
EVAPI_HIDDEN int evapi__lifespan_startup(evapi_app *app);
EVAPI_HIDDEN void evapi__lifespan_shutdown(evapi_app *app);
EVAPI_HIDDEN void evapi__lifespan_free(evapi_app *app);
/* Runs fn(arg) on the loop soon. Thread-safe; used internally too. */
EVAPI_HIDDEN int evapi__post(evapi_app *app, void (*fn)(evapi_app *, int,
                                                        void *), void *arg);

/* ---- schema.c, upload.c, multipart.c, openapi.c: declared routes ------ */
#include <evapi/schema.h>

/* A parsed parameter value (a request's, or a declared default). */
typedef struct evapi__val {
	const evapi_field *f;
	int present;
	long long i;
	double d;
	int b;
	const char *s;
} evapi__val;

/* A body field's default, parsed once at registration. */
typedef struct evapi__dflt {
	const evapi_field *f;
	json_t *value;
} evapi__dflt;

struct evapi__decl {
	struct evapi__decl *next; /* app->decls */
	evapi_route_decl d;       /* copied; what it points to is borrowed */
	char *body_name;          /* d.body_name or derived from the route */
	int nparams;
	evapi__val *dflt_vals;    /* per parameter: its default, if any */
	int ndflts;
	evapi__dflt *dflts;       /* body field defaults */
	/* model.c: what body_model / response_model derived (fields,
	 * the response list), freed with the decl */
	struct evapi__mblock *derived;
};

/* testing.c, for testing_ws.c: the client's default timeout; an empty
 * response (status 0, no headers) to fill, and its result. */
struct evapi_test;
struct evapi_test_response;
EVAPI_HIDDEN int evapi__test_timeout(const struct evapi_test *tc);
EVAPI_HIDDEN struct evapi_test_response *evapi__test_response_new(void);
EVAPI_HIDDEN evapi_fetch_res *evapi__test_response_res(
	struct evapi_test_response *r);

/* schema.c, for model.c: checks a body field list (and records its
 * defaults); validates v as the decl's body (new, or NULL after adding
 * items to errs); frees a decl. */
EVAPI_HIDDEN int evapi__decl_fields(struct evapi__decl *d,
                                    const evapi_field *fields, int depth);
EVAPI_HIDDEN json_t *evapi__decl_body_value(const struct evapi__decl *d,
                                            json_t *v, json_t *errs);
EVAPI_HIDDEN void evapi__decl_free(struct evapi__decl *d);
/* model.c: derives d->d.body and d->d.responses from the decl's models
 * (0, EVAPI_EINVAL for a bad model, EVAPI_ENOMEM); frees what it did. */
EVAPI_HIDDEN int evapi__model_decl(struct evapi__decl *d);
EVAPI_HIDDEN void evapi__model_decl_free(struct evapi__decl *d);

/* Validated input of a declared request, in the request's arena. */
typedef struct evapi__parsed {
	int nvals;
	evapi__val *vals;
	int nfiles, nform;
	evapi_file *files;
	const char **file_data;   /* bytes of each file, in the body */
	const char **safe;        /* sanitised name of each file */
	evapi__kv *form;
	const char *upload_dir;
	struct evapi__ustream *ustream; /* the request's, when streamed */
} evapi__parsed;

/* multipart.c: a strict multipart/form-data parser over a whole body.
 * Strings are copied into `arena`; data points into `body`. */
typedef struct evapi__part {
	const char *name;         /* form field name */
	const char *filename;     /* NULL when the part has none */
	const char *content_type; /* NULL when not given */
	const char *data;
	size_t len;
} evapi__part;

/* Extracts the boundary of a "multipart/form-data; boundary=..." value
 * into out (len >= 71). Returns 0, or -1 when ctype is not
 * multipart/form-data (-2: it is, but the boundary is missing/invalid). */
EVAPI_HIDDEN int evapi__multipart_boundary(const char *ctype, char *out,
                                           size_t len);
/* Parses at most max_parts parts. Returns the number of parts, -1 for a
 * malformed body (why set to a static message), -2 when there are more
 * than max_parts parts. */
EVAPI_HIDDEN int evapi__multipart_parse(const char *body, size_t len,
                                        const char *boundary,
                                        evapi__arena *arena,
                                        evapi__part *parts, int max_parts,
                                        const char **why);

/* The part header section [p, end) (CRLF-separated lines, no final
 * empty line) into `part`: 0, or -1 with a static *why. */
EVAPI_HIDDEN int evapi__multipart_headers(const char *p, const char *end,
                                          evapi__arena *arena,
                                          evapi__part *part,
                                          const char **why);

/* upload_stream.c: an upload body streamed to temporary files as it
 * arrives (see the file's comment). Loop thread unless said. */
typedef struct evapi__ustream evapi__ustream;
/* A stream for a body with this multipart boundary, or a raw body
 * (boundary NULL); NULL when out of memory. One reference. */
EVAPI_HIDDEN evapi__ustream *evapi__ustream_new(evapi_app *app,
                                                const evapi_upload *up,
                                                const char *boundary);
EVAPI_HIDDEN void evapi__ustream_unref(evapi__ustream *us); /* NULL ok */
/* The most body bytes the route takes. */
EVAPI_HIDDEN size_t evapi__ustream_body_limit(const evapi__ustream *us);
/* The next decoded body bytes; the end of the body. 0, or -1 with the
 * status and detail to refuse the request with (the detail lives as
 * long as the stream). */
EVAPI_HIDDEN int evapi__ustream_feed(evapi__ustream *us, const char *data,
                                     size_t len, int *status,
                                     const char **detail);
EVAPI_HIDDEN int evapi__ustream_finish(evapi__ustream *us, int *status,
                                       const char **detail);
/* 1 while so much waits to be written that the reader should pause. */
EVAPI_HIDDEN int evapi__ustream_backlogged(const evapi__ustream *us);
EVAPI_HIDDEN int evapi__ustream_failed(const evapi__ustream *us, int *status,
                                       const char **detail);
/* `kick(arg)` runs on the loop after a write job, when the backlog fell
 * below its low mark or the stream failed; NULL stops it. */
EVAPI_HIDDEN void evapi__ustream_on_kick(evapi__ustream *us,
                                         void (*kick)(void *), void *arg);
/* After the body, any thread: its files (in body order) and text
 * fields; strings live as long as the stream. */
EVAPI_HIDDEN int evapi__ustream_nfiles(const evapi__ustream *us);
EVAPI_HIDDEN void evapi__ustream_file(const evapi__ustream *us, int i,
                                      const char **field,
                                      const char **filename,
                                      const char **ctype, size_t *size);
EVAPI_HIDDEN int evapi__ustream_nform(const evapi__ustream *us);
EVAPI_HIDDEN const evapi__kv *evapi__ustream_form(const evapi__ustream *us);
/* A worker, after the body: writes what is still queued and waits for
 * a write in flight (0 or an errno); then links file i under `safe` in
 * directory dfd (as evapi__upload_open names it; the name in `stored`):
 * 0, or -1 with errno. */
EVAPI_HIDDEN int evapi__ustream_commit(evapi__ustream *us);
EVAPI_HIDDEN int evapi__ustream_place(evapi__ustream *us, int i, int dfd,
                                      const char *safe, char *stored,
                                      size_t cap);

/* upload.c: the registered callback of an upload route (arg: its
 * struct evapi__decl): stores the files on the pool, then runs the
 * route's handler; 500 (507 when the disk is full) if a write fails. */
#define SAFE_NAME_MAX 100     /* bytes of a sanitised file name */
#define CLASH_HEX 12           /* hex digits of a clash prefix (48 bits) */
#define CLASH_TRIES 4          /* prefixed names tried after the plain one */
#define STORED_MAX (SAFE_NAME_MAX + CLASH_HEX + 1) /* + "<hex>-" */
EVAPI_HIDDEN void evapi__upload_pool(evapi_req *req, void *arg);
EVAPI_HIDDEN void evapi__upload_inline(evapi_req *req, void *arg);

/* schema.c: declared routes. Checks a request against its route's
 * declaration on the loop, before the handler runs or a worker is taken;
 * returns 0, or nonzero when it has answered (422, 415, 413 or 400). */
EVAPI_HIDDEN int evapi__decl_check(evapi_req *req);
/* When declared route `r` cannot read a body of Content-Type `ct` (NULL:
 * none sent) at all: the 415 detail (static); else NULL. */
EVAPI_HIDDEN const char *evapi__decl_refused_media(const evapi__route *r,
                                                   const char *ct);
EVAPI_HIDDEN void evapi__decls_free(evapi_app *app);
/* Creates (O_EXCL) the file for one upload in directory dfd: under
 * `safe` when that is free, else under "<12 random hex digits>-safe",
 * at most 5 tries in all, so a clash costs constant work and a client
 * cannot exhaust the names. The name used is written to `stored` (cap
 * bytes); *attempts (may be NULL) is incremented per openat. Returns the
 * fd, or -1 with errno. Any thread. */
EVAPI_HIDDEN int evapi__upload_open(int dfd, const char *safe, char *stored,
                                    size_t cap, int *attempts);
/* The naming of evapi__upload_open with another way to take a name:
 * `try(dfd, name, arg)` returns >= 0, or -1 with errno (EEXIST: taken,
 * try the next name). */
EVAPI_HIDDEN int evapi__upload_place(int dfd, const char *safe, char *stored,
                                     size_t cap, int *attempts,
                                     int (*try)(int dfd, const char *name,
                                                void *arg),
                                     void *arg);
/* health.c: registers GET /_/health and GET /_/ready (config.health_routes). */
EVAPI_HIDDEN int evapi__health_routes(evapi_app *app);
/* schema.c: application/json or application/<x>+json, parameters aside;
 * a name for components/schemas or a security scheme ([A-Za-z0-9._-]+). */
EVAPI_HIDDEN int evapi__is_json_type(const char *ct);
EVAPI_HIDDEN int evapi__valid_component_name(const char *s);
/* openapi.c: registers GET /openapi.json, GET /docs and the Swagger UI
 * files under /docs/, GET /redoc and ReDoc's bundle under /redoc/
 * (config.openapi); whether a security scheme is
 * declared; frees the document's info, schemes and loaded files. */
EVAPI_HIDDEN int evapi__openapi_routes(evapi_app *app);
EVAPI_HIDDEN int evapi__openapi_has_scheme(const evapi_app *app,
                                           const char *name);
EVAPI_HIDDEN void evapi__openapi_free(evapi_app *app);

/* ---- client.c: outbound calls on the loop (client_sync.c and fetch.c
 * have fetch.h) ------------------------------------------------------ */
EVAPI_HIDDEN evapi__client *evapi__client_new(evapi_app *app);
EVAPI_HIDDEN void evapi__client_free(evapi__client *c);
/* The app's outbound defaults (struct evapi__fetch_defaults, fetch.h):
 * written once at creation, read-only after, so any thread may read. */
EVAPI_HIDDEN const struct evapi__fetch_defaults *
evapi__client_defaults(const evapi__client *c);

/* ---- db.c: the database pool (loop thread) ---------------------------- */
/* new: 0, or EVAPI_EINVAL for a db_url libpq cannot parse, EVAPI_ENOMEM;
 * nothing when db_url is NULL. free: after the pool is freed (cancel jobs
 * have all completed). */
EVAPI_HIDDEN int evapi__db_new(evapi_app *app);
EVAPI_HIDDEN void evapi__db_free(evapi_app *app);

/* ---- redis.c: Redis on the loop, the broadcast bridge ----------------- */
/* new: 0, or EVAPI_EINVAL for a redis_url it cannot parse, EVAPI_ENOMEM;
 * nothing when redis_url is NULL. free: after the pool is freed. */
EVAPI_HIDDEN int evapi__redis_new(evapi_app *app);
EVAPI_HIDDEN void evapi__redis_free(evapi_app *app);
/* PUBLISHes a broadcast of channel.c to the other processes (no-op
 * without Redis). Loop thread. */
EVAPI_HIDDEN void evapi__redis_publish(evapi_app *app, const char *name,
                                       const char *text);
/* channel.c: delivers `text` to this process's subscribers of `name`;
 * returns how many it reached. Loop thread. */
EVAPI_HIDDEN int evapi__channels_deliver(evapi_app *app, const char *name,
                                         const char *text);

/* ---- stats.c: runtime statistics (loop thread) ----------------------- */
EVAPI_HIDDEN int evapi__stats_init(evapi_app *app);
EVAPI_HIDDEN int evapi__stats_bind_routes(evapi_app *app);
EVAPI_HIDDEN void evapi__stats_start(evapi_app *app);
EVAPI_HIDDEN void evapi__stats_stop(evapi_app *app);
EVAPI_HIDDEN void evapi__stats_free(evapi_app *app);
EVAPI_HIDDEN void evapi__stats_request(evapi_app *app,
                                       const evapi__route *route, int status,
                                       int64_t us);
EVAPI_HIDDEN void evapi__stats_stall(evapi_app *app,
                                     const evapi__route *route);
/* New reference / malloc'd text, or NULL when stats are off. */
EVAPI_HIDDEN json_t *evapi__stats_json(evapi_app *app);
EVAPI_HIDDEN char *evapi__stats_metrics(evapi_app *app, size_t *len);

/* ---- listen.c ---------------------------------------------------------- */
/* A listening socket for app->host and cfg.port (SO_REUSEPORT
 * when app->reuse_port), non-blocking. Returns the fd and the bound port
 * in *port, or -1. */
EVAPI_HIDDEN int evapi__listen_socket(evapi_app *app, int *port);
/* A bound socket for host:port (SO_REUSEADDR, and SO_REUSEPORT when
 * asked), non-blocking and close-on-exec; listening unless `listen_too`
 * is 0. Returns the fd or -1. */
EVAPI_HIDDEN int evapi__bound_socket(const char *host, int port,
                                     int reuse_port, int listen_too);
/* The port a socket is bound to, or 0. */
EVAPI_HIDDEN int evapi__socket_port(int fd);

#endif
