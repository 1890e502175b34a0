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
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include <evapi.h>

#define EVAPI_HIDDEN __attribute__((visibility("hidden")))

/* Relaxed atomics for counters read from other threads. */
#define EVAPI__ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define EVAPI__LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define EVAPI__STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

struct event_base;
struct event;
struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;

/* ---- time.c-free helpers (inline) ------------------------------------ */
static inline int64_t evapi__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- error.c, app.c, env.c: errors and the config ----------------- */
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

/* debug.c (evapi/debug.h): this thread runs a loop; the user callback it
 * runs now (borrowed name, NULL in evapi's own code). Each thread writes
 * only its own. */
EVAPI_HIDDEN extern __thread int evapi__dbg_loop;
EVAPI_HIDDEN extern __thread const char *evapi__dbg_cb;

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

/* A growable byte buffer, kept NUL-terminated (arena.c; any one thread). */
typedef struct evapi__sbuf {
	char *p;
	size_t len, cap;
} evapi__sbuf;
/* Appends `n` bytes; returns 0, or -1 when out of memory (nothing added). */
EVAPI_HIDDEN int evapi__sbuf_add(evapi__sbuf *b, const void *data, size_t n);

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
	unsigned char *is_param;
	struct evapi__decl *decl; /* declared route (schema.c), or NULL */
	unsigned idx;        /* position in the router (stats.c) */
	const struct evapi__group *group; /* apirouter.c: from a router, or
	                                     NULL (app-owned) */
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
/* Writes "GET, HEAD, POST" for a method mask into buf. */
EVAPI_HIDDEN void evapi__allow_string(unsigned methods, char *buf,
                                      size_t len);
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

EVAPI_HIDDEN evapi__pool *evapi__pool_new(struct event_base *base,
                                          const pthread_t *loop,
                                          int threads, int queue_max,
                                          int batch);
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

/* ---- request.c / reactor.c ------------------------------------------- */
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
} evapi__resp;

typedef struct evapi__op evapi__op;
typedef struct evapi__batch evapi__batch;   /* client.c */
typedef struct evapi__client evapi__client; /* client.c */
typedef struct evapi__task evapi__task;

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
	int pending;                  /* ops in flight (timers, pool jobs) */
	struct evhttp_request *ev;    /* NULL once sent or gone */
	struct event *watch;          /* client-close detector, deferred only */
	struct event *deadline;       /* request deadline, deferred only */
	evapi__op *ops;               /* pending ops, for cancellation */
	evapi__batch *batches;        /* outbound calls, for cancellation */
	int gone;                     /* client left / deadline / cut */
	int finished;                 /* counted and logged */
	int head_only;                /* HEAD answered by a GET route */
	int64_t start_us;
	TAILQ_ENTRY(evapi_req) live;  /* app->live */
	/* written by the thread that owns the handler; read by the loop
	 * after the pool's completion (happens-before via the pool mutex) */
	int state;
	int on_worker;                /* set by the loop before submit */
	evapi__resp resp;
	json_t *json;                 /* parsed body cache */
	struct evapi__parsed *parsed; /* declared routes: validated input */
	/* immutable snapshot, readable from any thread */
	evapi_method method;
	const char *path;
	int nparams, nquery, nheaders;
	evapi__kv *params, *query, *headers;
	const char *body;
	size_t body_len;
	evapi__job job;               /* pool-lane handler job */
	/* parity features (tasks.c, stream.c, middleware.c) */
	evapi__task *tasks;           /* handler-owned like resp, until sent */
	evapi_stream *stream;         /* loop: the stream being written */
	evapi__resp *after_resp;      /* loop: reply seen by after hooks */
	int mw_depth;                 /* loop: before hooks that ran */
	int in_before;                /* loop: a before hook is running */
	evapi__arena arena;
	/* Enough for a short request (wrk's, curl's: path and two or
	 * three headers); more spills into malloc'd blocks. Every
	 * connection waiting on a handler holds one request. */
	char arena_buf[256];
};

TAILQ_HEAD(evapi__req_list, evapi_req);

struct evapi_app {
	pthread_t loop_thread;
	evapi_config cfg;
	char *host;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	evapi__router *router;
	evapi__pool *pool;
	struct evapi__decl *decls;    /* declared routes (schema.c) */
	struct evapi__group *groups;  /* apirouter.c: routes from routers */
	struct evapi__errh *errh;     /* error_reply.c: error body shapes */
	int nerrh;
	const char *reg_origin;       /* apirouter.c: the router being
	                                 registered, for refusals */
	evapi__client *client;        /* outbound calls (client.c) */
	struct evapi__db *db;         /* db.c; NULL without cfg.db_url */
	struct evapi__guard *guard; /* guard.c: the filter in front of evhttp */
	struct event *sigint_ev, *sigterm_ev, *grace_ev;
	evapi__wake *stop_wake; /* evapi_app_stop from any thread */
	int port;
	int running;
	int stopping;       /* 1 draining, 2 cut */
	int not_ready;      /* evapi_app_set_ready(app, 0); atomic */
	int stop_requests;  /* evapi_app_stop calls, atomic */
	int stops_seen;     /* of those, handled on the loop */
	int early_close;    /* the backend supports EV_CLOSED */
	int bodies_writing; /* reply bodies not yet written or dropped */
	int64_t cb_start_us; /* watchdog: start of the running callback */
	unsigned long long next_id;
	struct evapi__req_list live;
	/* parity features */
	int bg_active;            /* background runs not finished (loop) */
	TAILQ_HEAD(, evapi__bgrun) bg_runs;
	struct evapi__postq *postq;      /* lifespan.c: thread-safe posts */
	struct evapi__hook *startup, *shutdown;
	struct evapi__mw *mw;            /* middleware.c, in registration order */
	int nmw;
	evapi__access_buf *access; /* log.c */
	evapi__stats *stats_mod;   /* stats.c; NULL unless cfg.stats_routes */
	int reuse_port;            /* prefork worker: bind with SO_REUSEPORT */
	evapi_req *req_cache;      /* freed requests kept for reuse */
	int req_cached;
	time_t date_sec;           /* Date header cache (reactor.c) */
	char date[40];
	struct {
		unsigned long long requests, in_flight, stalls, rejected,
			no_reply, gone, timeouts, s4xx, s5xx;
		unsigned long long out_calls, out_errors, out_in_flight,
			out_sockets, out_connects;
		unsigned long long reply_cuts; /* guard.c: slow readers */
		long long max_stall_ms;
	} stats; /* written on the loop with EVAPI__ADD, read anywhere */
};

/* app.c: 0, or EVAPI_EEXIST (logged) when a method of `methods` is
 * already registered for a template of the same shape as `path`. */
EVAPI_HIDDEN int evapi__route_check(evapi_app *app, unsigned methods,
                                    const char *path);

/* reactor.c: loop-side request lifecycle */
EVAPI_HIDDEN int evapi__reactor_init(evapi_app *app);
EVAPI_HIDDEN void evapi__reactor_free(evapi_app *app);
EVAPI_HIDDEN int evapi__reactor_listen(evapi_app *app);
EVAPI_HIDDEN int evapi__reactor_run(evapi_app *app);
EVAPI_HIDDEN void evapi__reactor_stop(evapi_app *app);
/* Sends req->resp now (loop thread). */
EVAPI_HIDDEN void evapi__req_send(evapi_req *req);
EVAPI_HIDDEN void evapi__req_unref(evapi_req *req);
/* Runs an inline callback with watchdog timing and the no-reply check. */
EVAPI_HIDDEN void evapi__req_enter(evapi_req *req);
EVAPI_HIDDEN void evapi__req_leave(evapi_req *req, const char *what);

/* request.c */
EVAPI_HIDDEN void evapi__resp_clear(evapi__resp *resp);
EVAPI_HIDDEN int evapi__is_loop_thread(const evapi_req *req);
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

/* tasks.c: background tasks, run after the reply is fully written */
struct evapi__bgrun;
EVAPI_HIDDEN void evapi__tasks_attach(evapi_req *req,
                                      struct evhttp_request *ev);
EVAPI_HIDDEN void evapi__tasks_drop(evapi_req *req, const char *why);
EVAPI_HIDDEN void evapi__tasks_cut(evapi_app *app);
EVAPI_HIDDEN void evapi__tasks_free(evapi_app *app);

/* stream.c (loop): take over the request (no-op once done); the same
 * from a pool job's completion, dropping the job's reference; cut it */
EVAPI_HIDDEN void evapi__stream_start(evapi_stream *s);
EVAPI_HIDDEN void evapi__stream_job_done(evapi_stream *s);
EVAPI_HIDDEN void evapi__stream_cut(evapi_stream *s);

/* middleware.c: calls one before hook (a middleware's, or a route's
 * dependency), named `what` in logs: 1 when it answered (short-circuit,
 * or 500 when it returned non-zero without replying), else 0 */
EVAPI_HIDDEN int evapi__before_call(evapi_req *req, evapi_mw_before_cb cb,
                                    void *arg, const char *what);
/* apirouter.c: runs the dependencies of req's route (it has a group):
 * 1 when one answered; the route's OpenAPI tags (new, or NULL without); where a
 * route came from ("router /api"); the app's groups freed */
EVAPI_HIDDEN int evapi__group_depends(evapi_req *req);
EVAPI_HIDDEN json_t *evapi__group_tags(const struct evapi__group *g);
EVAPI_HIDDEN const char *evapi__group_origin(const struct evapi__group *g);
EVAPI_HIDDEN void evapi__groups_free(evapi_app *app);
/* app.c: 1 when template `a` matches every path `b` matches */
EVAPI_HIDDEN int evapi__tmpl_covers(const char *a, const char *b);
/* middleware.c: 1 when a before hook answered (short-circuit) */
EVAPI_HIDDEN int evapi__mw_before(evapi_req *req);
EVAPI_HIDDEN void evapi__mw_after(evapi_req *req, evapi__resp *resp);
EVAPI_HIDDEN void evapi__mw_free(evapi_app *app);

/* lifespan.c: the post queue and startup/shutdown hooks */
EVAPI_HIDDEN int evapi__lifespan_init(evapi_app *app);
EVAPI_HIDDEN int evapi__lifespan_startup(evapi_app *app);
EVAPI_HIDDEN void evapi__lifespan_shutdown(evapi_app *app);
EVAPI_HIDDEN void evapi__lifespan_free(evapi_app *app);
/* Runs fn(arg) on the loop soon. Thread-safe; used internally too. */
EVAPI_HIDDEN int evapi__post(evapi_app *app, void (*fn)(evapi_app *, int,
                                                        void *), void *arg);

/* ---- schema.c, multipart.c, openapi.c: declared routes ---------------- */
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
};

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

/* schema.c: declared routes. Checks a request against its route's
 * declaration on the loop, before the handler runs or a worker is taken;
 * returns 0, or nonzero when it has answered (422, 415, 413 or 400). */
EVAPI_HIDDEN int evapi__decl_check(evapi_req *req);
EVAPI_HIDDEN void evapi__decls_free(evapi_app *app);
/* Creates (O_EXCL) the file for one upload in directory dfd: under
 * `safe` when that is free, else under "<12 random hex digits>-safe",
 * at most 5 tries in all, so a clash costs constant work and a client
 * cannot exhaust the names. The name used is written to `stored` (cap
 * bytes); *attempts (may be NULL) is incremented per openat. Returns the
 * fd, or -1 with errno. Any thread. */
EVAPI_HIDDEN int evapi__upload_open(int dfd, const char *safe, char *stored,
                                    size_t cap, int *attempts);
/* health.c: registers GET /_/health and GET /_/ready (config.health_routes). */
EVAPI_HIDDEN int evapi__health_routes(evapi_app *app);
/* openapi.c: registers GET /openapi.json and GET /docs (config.openapi). */
EVAPI_HIDDEN int evapi__openapi_routes(evapi_app *app);
/* client.c, client_sync.c: outbound calls */
EVAPI_HIDDEN evapi__client *evapi__client_new(evapi_app *app);
EVAPI_HIDDEN void evapi__client_free(evapi__client *c);
/* The app's outbound defaults (struct evapi__fetch_defaults, fetch.h):
 * written once at creation, read-only after, so any thread may read. */
EVAPI_HIDDEN const struct evapi__fetch_defaults *
evapi__client_defaults(const evapi__client *c);
/* Aborts the request's calls; continuations run on a later loop turn. */
EVAPI_HIDDEN void evapi__client_cancel_req(evapi_req *req);
/* Aborts the calls bound to no request (the app is stopping). */
EVAPI_HIDDEN void evapi__client_cancel_unbound(evapi_app *app);
/* Tells evapi_fetch_sync that this thread runs a loop. */
EVAPI_HIDDEN void evapi__client_mark_loop_thread(int yes);
/* Makes evapi_fetch_sync on this thread use the app's outbound defaults
 * (a worker, around one of the app's jobs); NULL ends it. */
EVAPI_HIDDEN void evapi__client_use_app(const evapi_app *app);

/* db.c: the database pool (loop thread). new: 0, or EVAPI_EINVAL for a
 * db_url libpq cannot parse, EVAPI_ENOMEM; nothing when db_url is NULL.
 * free: after the pool is freed (cancel jobs have all completed). */
EVAPI_HIDDEN int evapi__db_new(evapi_app *app);
EVAPI_HIDDEN void evapi__db_free(evapi_app *app);
/* Cancels the request's queries (on the server when running); their
 * continuations run on a later loop turn with EVAPI_ECANCELED. */
EVAPI_HIDDEN void evapi__db_req_gone(evapi_req *req);

/* stats.c: runtime statistics (loop thread) */
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

/* prefork.c: a listening socket for app->host and cfg.port (SO_REUSEPORT
 * when app->reuse_port), non-blocking. Returns the fd and the bound port
 * in *port, or -1. */
EVAPI_HIDDEN int evapi__listen_socket(evapi_app *app, int *port);

/* continue.c */
EVAPI_HIDDEN void evapi__ops_cancel(evapi_req *req);
EVAPI_HIDDEN const char *evapi__reason(int status);

#endif
