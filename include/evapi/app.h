/*
 * evapi/app.h: the application object: configuration, route
 * registration, running and stopping.
 *
 * Everything here is loop-thread-only (the thread that calls
 * evapi_app_run) unless its doc says "Thread-safe: yes". Before
 * evapi_app_run starts, the thread that created the app is the loop thread.
 */
#ifndef EVAPI_APP_H
#define EVAPI_APP_H

#include <stddef.h>
#include <evapi/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evapi_app evapi_app;
typedef struct evapi_req evapi_req;

/** HTTP methods, as bits so a route can take several. */
typedef enum evapi_method {
	EVAPI_GET = 1 << 0,
	EVAPI_POST = 1 << 1,
	EVAPI_PUT = 1 << 2,
	EVAPI_PATCH = 1 << 3,
	EVAPI_DELETE = 1 << 4,
	EVAPI_HEAD = 1 << 5,
	EVAPI_OPTIONS = 1 << 6
} evapi_method;

/** Upper-case name of one method bit ("GET"), or NULL. Thread-safe: yes. */
EVAPI_EXPORT const char *evapi_method_name(evapi_method m);

/**
 * Where a route's handler runs.
 *
 * EVAPI_INLINE: on the loop thread, like an `async def` route. It must
 * never block: while it runs no other connection is served. Wait with
 * evapi_req_sleep() or hand work to the pool with evapi_req_run_in_pool().
 *
 * EVAPI_POOL: on one of the pool's worker threads, like a plain `def`
 * route. It may block (sleep, blocking I/O, CPU work). It sees an
 * immutable snapshot of the request; its reply is sent when it returns.
 */
typedef enum evapi_lane { EVAPI_INLINE = 0, EVAPI_POOL = 1 } evapi_lane;

/** Name of a lane: "inline" or "pool". Thread-safe: yes. */
EVAPI_EXPORT const char *evapi_lane_name(evapi_lane lane);

/** A route handler. Same signature in both lanes. `req` is borrowed: it
 *  stays valid until the request finishes (reply sent and nothing
 *  pending, or client gone). The handler must reply exactly once, now or
 *  later from a continuation. */
typedef void (*evapi_handler_cb)(evapi_req *req, void *arg);

/**
 * Configuration. Fill one with evapi_config_init() and change what you
 * need, by member name; evapi_app_new() copies it. Defaults in brackets.
 * Every duration is in milliseconds (the members end in _ms).
 *
 * ABI: no promise before 1.0 (see evapi/common.h). Members are grouped
 * by subsystem and new ones are added to their group, so the layout
 * changes between minor versions: always start from evapi_config_init(),
 * never from a struct literal listing members in order.
 */
typedef struct evapi_config {
	/* ---- listener ---------------------------------------------------- */
	const char *host;          /* ["127.0.0.1"] address to bind */
	int port;                  /* [8000] 0 picks a free port */
	int workers;               /* [1] processes for evapi_app_serve */
	int max_connections;       /* [10000] beyond: 503 and close at once */
	int keepalive_max_requests; /* [1000] then "Connection: close" */
	int handle_signals;        /* [1] stop gracefully on SIGINT/SIGTERM */
	int shutdown_grace_ms;     /* [10000] drain time on SIGINT/SIGTERM */

	/* ---- lanes: the loop and the worker pool ------------------------- */
	int pool_threads;          /* [40] worker threads for pool routes */
	int pool_queue_max;        /* [1024] waiting pool jobs before 503 */
	int pool_yield_to_loop;    /* [1] pool workers run as SCHED_BATCH on
	                              Linux: waking up, they never preempt
	                              the loop thread on a shared CPU */
	int stall_threshold_ms;    /* [100] loop-stall watchdog threshold */

	/* ---- limits and deadlines (docs/ARCHITECTURE.md, "Request guard") */
	size_t max_target_bytes;   /* [4096] request-target: 414 */
	size_t max_header_bytes;   /* [8192] request line + headers: 431 */
	int max_header_fields;     /* [100] header fields: 431 */
	size_t max_body_bytes;     /* [1048576] request body: 413 */
	int max_json_depth;        /* [64] evapi_req_json nesting: 422 */
	size_t max_chunk_line_bytes; /* [4096] one chunk-size line of a
	                              chunked body, extensions included:
	                              400 and close, as soon as it is longer;
	                              extensions also count against
	                              max_body_bytes */
	int header_timeout_ms;     /* [10000] request line + headers must
	                              arrive within this: 408 and close (a
	                              connection that sends nothing: close) */
	int body_timeout_ms;       /* [30000] whole request must arrive within
	                              this from its first byte: 408, close */
	int request_timeout_ms;    /* [30000] deadline for a reply: 504 */
	int idle_timeout_ms;       /* [5000] keep-alive idle: silent close */
	int reply_write_timeout_ms; /* [60000] a reply (not a stream) must
	                              be written to the client within this
	                              from when it is sent, however steadily
	                              a slow reader takes it: else the
	                              connection is closed; 0: off */

	/* ---- outbound calls (evapi/client.h) ----------------------------- */
	int outbound_max_connections;     /* [256] open at once; more wait */
	int outbound_timeout_ms;          /* [10000] default total timeout */
	int outbound_connect_timeout_ms;  /* [3000] default connect timeout */
	size_t outbound_max_response_bytes; /* [8 MiB] default reply cap */

	/* ---- the database (evapi/db.h; docs/ARCHITECTURE.md, "Database") */
	const char *db_url;        /* [NULL: no database] libpq URL or
	                              conninfo: "postgresql://user@127.0.0.1/db" */
	int db_max_connections;    /* [8] connections opened on demand */
	int db_queue_max;          /* [1024] queries waiting for a connection;
	                              more: EVAPI_EBUSY (503) */
	int db_acquire_timeout_ms; /* [5000] longest wait for a connection
	                              (EVAPI_EBUSY), and for connecting */
	int db_query_timeout_ms;   /* [5000] per query: EVAPI_ETIMEDOUT (504),
	                              cancelled on the server */
	int db_statement_cache;    /* [100] prepared statements kept per
	                              connection, by SQL text; 0: none */
	size_t db_max_result_bytes; /* [16 MiB] cap on one result's values:
	                              over it the query fails (EVAPI_ETOOBIG,
	                              500) and its connection is reused */
	int db_pipeline;           /* [0] 1: the queries of one
	                              evapi_req_db_gather share one connection
	                              and one round trip (libpq pipeline
	                              mode), run one after another, each in
	                              its own transaction; 0: each on its own
	                              connection, at once */

	/* ---- Redis (evapi/redis.h; docs/ARCHITECTURE.md, "Redis") -------- */
	const char *redis_url;     /* [NULL: no Redis] "redis://127.0.0.1:6379/0";
	                              with it, evapi_app_publish also reaches
	                              every other process and instance */
	int redis_connect_timeout_ms; /* [2000] longest wait for a connection */
	int redis_command_timeout_ms; /* [2000] per command: EVAPI_ETIMEDOUT
	                              (504); the connection is then reopened */

	/* ---- docs and introspection routes ------------------------------- */
	int openapi;               /* [0] serve GET /openapi.json, GET /docs
	                              and GET /redoc (see evapi/schema.h) */
	const char *swagger_ui_dir; /* [NULL: configure --with-swagger-ui]
	                              swagger-ui-dist's files, read once by
	                              evapi_app_new: /docs is Swagger UI,
	                              its files served under /docs/; "" or
	                              files missing: a plain page instead */
	const char *redoc_dir;     /* [NULL: configure --with-redoc] the
	                              directory of npm redoc's
	                              redoc.standalone.js, read once by
	                              evapi_app_new: GET /redoc is ReDoc's
	                              read-only reference; file missing:
	                              /redoc answers 404 {"detail"}; "": no
	                              /redoc route (the path is the app's) */
	int stats_routes;          /* [0] serve GET /_/stats and /_/metrics */
	int health_routes;         /* [0] serve GET /_/health (liveness) and
	                              GET /_/ready (readiness: 503 while not
	                              ready or draining) */

	/* ---- logging ----------------------------------------------------- */
	evapi_log_level log_level; /* [EVAPI_LOG_INFO] */
	evapi_log_cb log_cb;       /* [NULL: write to stderr] */
	void *log_arg;             /* [NULL] passed to log_cb */
	int access_log;            /* [1] one line per request at INFO */
} evapi_config;

/** Fills `cfg` with the defaults above. */
EVAPI_EXPORT void evapi_config_init(evapi_config *cfg);

/**
 * Overrides members of `cfg` from the environment: one variable per
 * member, named EVAPI_ and the member in capitals (EVAPI_PORT,
 * EVAPI_POOL_THREADS, EVAPI_REQUEST_TIMEOUT_MS; README.md, "Settings
 * from the environment", lists them all). An unset variable leaves its
 * member alone; log_cb and log_arg have none. Call it after
 * evapi_config_init and before the program's own overrides (code,
 * command line), so those win.
 *
 * Numbers are whole decimal numbers, nothing else (no spaces, units or
 * trailing junk), within the member's type and the range evapi_app_new
 * accepts; switches take 0/1, true/false, yes/no or on/off;
 * EVAPI_LOG_LEVEL takes error, warn, info or debug; an empty
 * EVAPI_DB_URL means no database. The strings (EVAPI_HOST,
 * EVAPI_DB_URL, EVAPI_SWAGGER_UI_DIR, EVAPI_REDOC_DIR) are borrowed from the environment:
 * valid while the variable is not changed (evapi_app_new copies or reads
 * them).
 *
 * Returns 0, or EVAPI_EINVAL and then `cfg` is unchanged and `err` (may
 * be NULL) names the first invalid variable with its value and what it
 * must be ("EVAPI_POOL_THREADS: config.pool_threads = 0: must be
 * 1..4096"). Not safe against a concurrent setenv: call it before
 * starting threads.
 */
EVAPI_EXPORT int evapi_config_from_env(evapi_config *cfg, evapi_error *err);

/** Creates an app (the event base, the HTTP server and the worker pool;
 *  nothing is bound yet). `cfg` is copied; NULL means defaults. Returns
 *  new (free with evapi_app_free) or NULL; why it failed is logged (an
 *  invalid config member is named with its value) through cfg's log_cb,
 *  or stderr. evapi_app_new_ex also hands the reason back. */
EVAPI_EXPORT evapi_app *evapi_app_new(const evapi_config *cfg);

/** evapi_app_new, and on failure fills `err` (may be NULL): code
 *  EVAPI_EINVAL with the invalid member and its value in `text`
 *  ("pool_threads = 0: must be 1..4096"), EVAPI_ENOMEM, or EVAPI_ESYS
 *  (the event base could not be made). */
EVAPI_EXPORT evapi_app *evapi_app_new_ex(const evapi_config *cfg,
                                         evapi_error *err);

/** Frees the app: cuts whatever is still in flight, joins the workers
 *  (a running pool handler is waited for) and closes every socket.
 *  NULL is a no-op. Must not be called while evapi_app_run runs. */
EVAPI_EXPORT void evapi_app_free(evapi_app *app);

/**
 * Registers `cb` for `methods` (a bitwise OR of evapi_method) on `path`,
 * a template such as "/users/{user_id}". A `{name}` segment matches one
 * non-empty path segment, percent-decoded; read it with evapi_req_param.
 * Routes are tried in registration order. A GET route also answers HEAD
 * (without the body) unless HEAD is registered for the path. `path` is
 * copied. A method and template that an earlier route already matches
 * on every path would never run: the same template (the same literal
 * segments, parameters in the same places, whatever their names), or
 * one with a literal where the earlier one has a parameter
 * ("/users/me" after "/users/{id}": register the specific one first).
 * It is refused with EVAPI_EEXIST and logged, naming both routes and
 * where each came from (the app, a router: evapi/apirouter.h).
 * That includes the built-in routes when they are on: GET /openapi.json,
 * GET /docs and GET /redoc (config openapi; redoc_dir "" leaves /redoc
 * to the app), GET /_/stats and GET /_/metrics
 * (config stats_routes). Returns 0, EVAPI_EINVAL (bad template or
 * method), EVAPI_EEXIST, EVAPI_ENOMEM or EVAPI_ESTATE (app already
 * running).
 */
EVAPI_EXPORT int evapi_app_route(evapi_app *app, unsigned methods,
                                 const char *path, evapi_lane lane,
                                 evapi_handler_cb cb, void *arg);

/** Binds the listening socket (config host/port). Called by
 *  evapi_app_run when not called before; call it first to learn the port
 *  when the config says 0. Returns 0 or EVAPI_EBIND. */
EVAPI_EXPORT int evapi_app_listen(evapi_app *app);

/** The bound port, or 0 before evapi_app_listen. */
EVAPI_EXPORT int evapi_app_port(const evapi_app *app);

/** Runs the loop on the calling thread (which becomes the loop thread)
 *  until a graceful stop completes. Returns 0, or a negative code if it
 *  could not start. */
EVAPI_EXPORT int evapi_app_run(evapi_app *app);

/** Starts a graceful stop, as SIGTERM does: stop accepting, let in-flight
 *  requests finish within shutdown_grace_ms, then cut the rest and return
 *  from evapi_app_run. A second call cuts at once. Thread-safe: yes. */
EVAPI_EXPORT void evapi_app_stop(evapi_app *app);

/** Says whether the app is ready for traffic: 1 (the default) or 0, for
 *  example while a startup hook's work still finishes on the loop. With
 *  health_routes, GET /_/ready answers 503 {"status":"starting"} while
 *  it is 0, 503 {"status":"draining"} from the start of a graceful stop
 *  (SIGTERM, evapi_app_stop) and 200 {"status":"ready"} otherwise.
 *  Returns 0 or EVAPI_EINVAL. Thread-safe: yes. */
EVAPI_EXPORT int evapi_app_set_ready(evapi_app *app, int ready);

/** The application's own pointer (app.state in FastAPI): kept, never
 *  freed by the app. Set it before evapi_app_run; read it from any
 *  thread (handlers, workers, hooks). Returns 0 or EVAPI_EINVAL. */
EVAPI_EXPORT int evapi_app_set_user_data(evapi_app *app, void *ptr);
/** What evapi_app_set_user_data set, or NULL. */
EVAPI_EXPORT void *evapi_app_user_data(const evapi_app *app);
/** The app a request belongs to (request.app), or NULL for NULL. Any
 *  thread that may use the request. */
EVAPI_EXPORT evapi_app *evapi_req_app(const evapi_req *req);

/** A pool worker's hook: `index` is evapi_worker_index() of that
 *  worker. */
typedef void (*evapi_worker_cb)(evapi_app *app, int index, void *arg);
/** Runs `cb` on every pool worker, on that worker, before the next job
 *  it takes (per-thread state: a connection, a buffer, a PRNG). The
 *  workers start with the app, so an idle worker runs it at once. One
 *  hook per app; before evapi_app_run, on the thread that created the
 *  app. Returns 0, EVAPI_EINVAL, EVAPI_EEXIST (one is registered) or
 *  EVAPI_ESTATE (the app runs). */
EVAPI_EXPORT int evapi_app_on_worker_start(evapi_app *app, evapi_worker_cb cb,
                                           void *arg);
/** Runs `cb` on every pool worker as it exits (evapi_app_free), after
 *  its start hook. Same rules and returns. */
EVAPI_EXPORT int evapi_app_on_worker_stop(evapi_app *app, evapi_worker_cb cb,
                                          void *arg);
/** 0..pool_threads-1 on a pool worker (in the order they started), -1 on
 *  any other thread. */
EVAPI_EXPORT int evapi_worker_index(void);

/** Registers an app's routes (and whatever else it needs) on a new app
 *  that has already bound its port (evapi_app_port works); returns 0, or
 *  a negative code and then the app is not run. `app` is borrowed:
 *  evapi_app_serve owns and frees it. */
typedef int (*evapi_app_setup_cb)(evapi_app *app, void *arg);

/**
 * Serves `cfg` (NULL: defaults) until SIGTERM/SIGINT and returns 0, or a
 * negative code if it could not start (EVAPI_EBIND, EVAPI_EINVAL,
 * EVAPI_ENOMEM, or the setup callback's code).
 *
 * With cfg->workers == 1: creates one app in this process, calls
 * setup(app, arg), listens, runs and frees it.
 *
 * With cfg->workers == N > 1: forks N worker processes that each do the
 * above (own reactor and pool) on the same port, bound with SO_REUSEPORT
 * so the kernel spreads connections among them; port 0 picks one port for
 * all. The calling process supervises: a worker that dies is restarted
 * (at most once a second while it keeps dying at start; one that exits 0,
 * stopped gracefully on its own SIGTERM, is not, and the call returns
 * once every worker has stopped so), SIGTERM/SIGINT
 * are forwarded so every worker drains gracefully (a second signal cuts),
 * and the call returns when all have exited (EVAPI_ESYS if one failed to
 * stop cleanly). The caller must not have started threads (fork copies
 * only the calling thread); SIGTERM, SIGINT and SIGCHLD are blocked in it
 * while it supervises.
 */
EVAPI_EXPORT int evapi_app_serve(const evapi_config *cfg,
                                 evapi_app_setup_cb setup, void *arg);

/** Counters, read with evapi_app_stats. ABI: no promise before 1.0 (see
 *  evapi/common.h): members may be added or reordered between minor
 *  versions; read them by name. */
typedef struct evapi_stats {
	unsigned long long requests;  /* finished requests */
	unsigned long long in_flight; /* requests alive: replying, or with
	                                 work still pending after the reply */
	unsigned long long stalls;    /* watchdog reports */
	unsigned long long rejected;  /* 503 for a full pool queue */
	unsigned long long no_reply;  /* 500 for handlers that never replied */
	unsigned long long gone;      /* clients that left before the reply */
	unsigned long long timeouts;  /* 504 for the request deadline */
	unsigned long long status_4xx, status_5xx;
	int pool_threads, pool_busy, pool_queued;
	long long max_stall_ms;
	/* outbound calls on the loop (evapi/client.h) */
	unsigned long long outbound_calls;     /* finished calls */
	unsigned long long outbound_errors;    /* of those, transport errors */
	unsigned long long outbound_in_flight; /* calls started, not finished */
	unsigned long long outbound_sockets;   /* sockets open now */
	unsigned long long outbound_connects;  /* sockets opened in all */
	/* requests the request guard answered itself (400, 408, 413, 414,
	 * 431, 501, 503, 505); also counted in requests and status_4xx/5xx */
	unsigned long long guard_rejected;
	/* connections closed for not reading a reply within
	 * reply_write_timeout_ms */
	unsigned long long reply_write_timeouts;
	/* WebSocket sessions (evapi/websocket.h) */
	unsigned long long websocket_open;  /* accepted and not yet over */
	unsigned long long websocket_total; /* accepted in all */
	/* file reply bodies (evapi/files.h) the kernel sent from the file
	 * to the socket with sendfile(2), in bytes */
	unsigned long long file_sendfile_bytes;
} evapi_stats;

/** Copies the current counters into `out`. Thread-safe: yes (a
 *  consistent-enough snapshot; counters are updated on the loop). */
EVAPI_EXPORT void evapi_app_stats(evapi_app *app, evapi_stats *out);

#ifdef __cplusplus
}
#endif
#endif
