/*
 * app.c: the application object: configuration defaults, construction
 * and teardown, route registration, run/stop and the stats snapshot.
 *
 * Threads: created and configured on one thread, which becomes the loop
 * thread when it calls evapi_app_run. evapi_app_stop and evapi_app_stats
 * may be called from any thread.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"

/* ---- per-thread settings (internal.h) ----------------------------------- */

static __thread const evapi_app *thread_app;
static __thread enum evapi__thread_role thread_role;

void evapi__thread_set(const evapi_app *app, enum evapi__thread_role role)
{
	thread_app = app;
	thread_role = role;
}

const evapi_app *evapi__thread_app(void)
{
	return thread_app;
}

enum evapi__thread_role evapi__thread_role(void)
{
	return thread_role;
}

void *evapi__thread_record(evapi__thread_slot *slot, size_t size)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	void *rec;

	if (!__atomic_load_n(&slot->ready, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&lock);
		if (!slot->ready &&
		    pthread_key_create(&slot->key, slot->destroy) == 0)
			__atomic_store_n(&slot->ready, 1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&lock);
		if (!__atomic_load_n(&slot->ready, __ATOMIC_ACQUIRE))
			return NULL;
	}
	if ((rec = pthread_getspecific(slot->key)))
		return rec;
	if (!(rec = calloc(1, size)))
		return NULL;
	if (pthread_setspecific(slot->key, rec) != 0) {
		free(rec);
		return NULL;
	}
	return rec;
}

static void worker_init(void *app)
{
	evapi__thread_set(app, EVAPI__THREAD_WORKER);
}

void evapi_config_init(evapi_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->host = "127.0.0.1";
	cfg->port = 8000;
	cfg->pool_threads = 40;
	cfg->pool_queue_max = 1024;
	cfg->stall_threshold_ms = 100;
	cfg->request_timeout_ms = 30000;
	cfg->idle_timeout_ms = 5000;
	cfg->max_header_bytes = 8192;
	cfg->max_body_bytes = 1024 * 1024;
	cfg->shutdown_grace_ms = 10000;
	cfg->handle_signals = 1;
	cfg->access_log = 1;
	cfg->workers = 1;
	cfg->log_level = EVAPI_LOG_INFO;
	cfg->outbound_max_connections = 256;
	cfg->outbound_timeout_ms = 10000;
	cfg->outbound_connect_timeout_ms = 3000;
	cfg->outbound_max_response_bytes = (size_t)8 << 20;
	cfg->max_target_bytes = 4096;
	cfg->max_header_fields = 100;
	cfg->max_chunk_line_bytes = 4096;
	cfg->header_timeout_ms = 10000;
	cfg->body_timeout_ms = 30000;
	cfg->keepalive_max_requests = 1000;
	cfg->max_connections = 10000;
	cfg->max_json_depth = 64;
	cfg->pool_yield_to_loop = 1;
	cfg->reply_write_timeout_ms = 60000;
	cfg->db_max_connections = 8;
	cfg->db_queue_max = 1024;
	cfg->db_acquire_timeout_ms = 5000;
	cfg->db_query_timeout_ms = 5000;
	cfg->db_statement_cache = 100;
	cfg->db_max_result_bytes = (size_t)16 << 20;
	cfg->redis_connect_timeout_ms = 2000;
	cfg->redis_command_timeout_ms = 2000;
}

/* Checks one member against [lo, hi]; one line per member keeps each
 * bound next to its name, and the message names exactly what is wrong. */
#define RANGE(member, lo, hi)                                                \
	do {                                                                 \
		long long v_ = (long long)c->member;                         \
		if (v_ < (long long)(lo) || v_ > (long long)(hi))            \
			return evapi__error_set(                             \
				err, EVAPI_EINVAL,                           \
				"config." #member " = %lld: must be %lld..%lld", \
				v_, (long long)(lo), (long long)(hi));       \
	} while (0)

/* 0, or EVAPI_EINVAL with the first invalid member named in err. */
int evapi__config_check(const evapi_config *c, evapi_error *err)
{
	const long long big = 0x7fffffffLL;

	if (!c->host)
		return evapi__error_set(err, EVAPI_EINVAL, "config.host = NULL: "
		                        "an address to bind is needed");
	/* listener */
	RANGE(port, 0, 65535);
	RANGE(workers, 1, 1024);
	RANGE(max_connections, 1, big);
	RANGE(keepalive_max_requests, 1, big);
	RANGE(shutdown_grace_ms, 0, big);
	/* lanes */
	RANGE(pool_threads, 1, 4096);
	RANGE(pool_queue_max, 0, big);
	RANGE(stall_threshold_ms, 1, big);
	/* limits and deadlines */
	RANGE(max_target_bytes, 16, (size_t)-1 >> 1);
	RANGE(max_header_bytes, 256, (size_t)-1 >> 1);
	RANGE(max_header_fields, 1, big);
	RANGE(max_chunk_line_bytes, 16, (size_t)-1 >> 1);
	RANGE(max_json_depth, 1, big);
	RANGE(header_timeout_ms, 1, big);
	RANGE(body_timeout_ms, 1, big);
	RANGE(request_timeout_ms, 1, big);
	RANGE(idle_timeout_ms, 1, big);
	RANGE(reply_write_timeout_ms, 0, big);
	/* outbound */
	RANGE(outbound_max_connections, 1, big);
	RANGE(outbound_timeout_ms, 1, big);
	RANGE(outbound_connect_timeout_ms, 1, big);
	RANGE(outbound_max_response_bytes, 1, (size_t)-1 >> 1);
	/* database */
	RANGE(db_max_connections, 1, big);
	RANGE(db_queue_max, 0, big);
	RANGE(db_acquire_timeout_ms, 1, big);
	RANGE(db_query_timeout_ms, 1, big);
	RANGE(db_statement_cache, 0, big);
	RANGE(db_max_result_bytes, 1, (size_t)-1 >> 1);
	/* Redis */
	RANGE(redis_connect_timeout_ms, 1, big);
	RANGE(redis_command_timeout_ms, 1, big);
	/* logging */
	RANGE(log_level, EVAPI_LOG_ERROR, EVAPI_LOG_DEBUG);
	return 0;
}
#undef RANGE

evapi_app *evapi_app_new(const evapi_config *cfg)
{
	return evapi_app_new_ex(cfg, NULL);
}

evapi_app *evapi_app_new_ex(const evapi_config *cfg, evapi_error *err)
{
	struct event_config *ec = NULL;
	evapi_error mine;
	evapi_app *app;
	size_t i;
	int rc;

	if (!err)
		err = &mine;
	evapi__error_set(err, EVAPI_ENOMEM, "out of memory");
	app = calloc(1, sizeof *app);
	if (!app) {
		evapi__log(NULL, EVAPI_LOG_ERROR, "evapi_app_new: out of memory");
		return NULL;
	}
	if (cfg)
		app->cfg = *cfg;
	else
		evapi_config_init(&app->cfg);
	if (evapi__config_check(&app->cfg, err) != 0) {
		/* log through the caller's sink, whatever its level says */
		if ((int)app->cfg.log_level < (int)EVAPI_LOG_ERROR ||
		    app->cfg.log_level > EVAPI_LOG_DEBUG)
			app->cfg.log_level = EVAPI_LOG_ERROR;
		goto err;
	}
	/* jansson seeds its hash function from /dev/urandom at the first
	 * object: here, not in a handler on the loop (a blocking read). */
	json_object_seed(0);
	app->host = strdup(app->cfg.host);
	app->cfg.host = app->host;
	app->loop_thread = pthread_self();
	TAILQ_INIT(&app->live);
	TAILQ_INIT(&app->pending);
	ec = event_config_new();
	if (!app->host || !ec)
		goto err;
	/* Batches epoll_ctl changes per loop turn: fewer syscalls. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	app->base = event_base_new_with_config(ec);
	event_config_free(ec);
	ec = NULL;
	if (!app->base) {
		evapi__error_set(err, EVAPI_ESYS, "cannot create the event base");
		goto err;
	}
	app->router = evapi__router_new();
	if (!app->router || evapi__reactor_init(app) != 0 ||
	    evapi__lifespan_init(app) != 0)
		goto err;
	if (app->cfg.stats_routes && evapi__stats_init(app) != 0)
		goto err;
	if (app->cfg.health_routes && evapi__health_routes(app) != 0)
		goto err;
	app->pool = evapi__pool_new(app->base, &app->loop_thread,
	                            app->cfg.pool_threads, app->cfg.pool_queue_max,
	                            app->cfg.pool_yield_to_loop, worker_init,
	                            app);
	if (!app->pool) {
		evapi__error_set(err, EVAPI_ESYS,
		                 "cannot start %d pool threads",
		                 app->cfg.pool_threads);
		goto err;
	}
	if (!(app->client = evapi__client_new(app)))
		goto err;
	if (evapi__db_new(app) != 0)
		goto err;
	if ((rc = evapi__redis_new(app)) != 0) {
		evapi__error_set(err, rc, rc == EVAPI_EINVAL
		                 ? "config.redis_url: not a redis://[[user]:"
		                   "password@]host[:port][/db] URL"
		                 : "out of memory");
		goto err;
	}
	if (app->cfg.openapi && evapi__openapi_routes(app) != 0)
		goto err;
	/* evapi's own routes: no dependency applies (depends.c) */
	for (i = 0; i < evapi__router_count(app->router); i++)
		evapi__router_at(app->router, i)->builtin = 1;
	return app;
err:
	evapi__log(app, EVAPI_LOG_ERROR, "evapi_app_new: %s", err->text);
	if (ec)
		event_config_free(ec);
	evapi_app_free(app);
	return NULL;
}

void evapi_app_free(evapi_app *app)
{
	if (!app)
		return;
	app->freeing = 1; /* no new app-level work from here on */
	if (app->base) {
		/* Cut requests first, then let the pool deliver (and drop) the
		 * results of jobs that were running, then close the server. */
		if (app->http)
			evapi__reactor_free(app);
		evapi__pool_free(app->pool);
		event_base_loop(app->base, EVLOOP_NONBLOCK);
		evapi__channels_free(app);
		evapi__ws_free(app); /* after the pool: sessions its jobs held */
		evapi__lifespan_free(app); /* cancelled posts may end tasks */
		evapi__tasks_free(app);
		evapi__db_free(app);
		evapi__redis_free(app);
		evapi__client_free(app->client);
		evapi__stats_free(app);
		event_base_free(app->base);
	}
	evapi__mw_free(app);
	evapi__router_free(app->router);
	evapi__decls_free(app);
	evapi__groups_free(app);
	evapi__deps_free(app);
	evapi__security_free(app);
	evapi__error_handlers_free(app);
	evapi__openapi_free(app);
	evapi__files_free(app);
	free(app->host);
	free(app);
}

/* 1 when template `a` matches every path `b` matches: the same number of
 * segments, each a {parameter} in `a` or the same literal text in both.
 * Routes are tried in order, so a route `b` registered after such an `a`
 * for one of its methods would never run. */
int evapi__tmpl_covers(const char *a, const char *b)
{
	for (;;) {
		size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
		int pa = la >= 2 && a[0] == '{' && a[la - 1] == '}';
		int pb = lb >= 2 && b[0] == '{' && b[lb - 1] == '}';
		if (pa ? lb == 0 : pb || la != lb || memcmp(a, b, la) != 0)
			return 0;
		a += la;
		b += lb;
		if (!*a || !*b)
			return !*a && !*b;
		a++;
		b++;
	}
}

/* Where a route came from, for the refusal message. */
static const char *origin_of(const evapi__route *rt)
{
	return rt->group ? evapi__group_origin(rt->group)
	                 : "the app, or built in: config openapi, "
	                   "stats_routes, health_routes";
}

int evapi__route_check(evapi_app *app, unsigned methods, const char *path)
{
	size_t i, n = evapi__router_count(app->router);

	if (!path)
		return EVAPI_EINVAL;
	for (i = 0; i < n; i++) {
		const evapi__route *rt = evapi__router_at(app->router, i);
		if ((rt->method & methods) && evapi__tmpl_covers(rt->tmpl, path)) {
			evapi__log(app, EVAPI_LOG_ERROR,
			           "route %s %s refused: %s is already "
			           "registered (by %s) and matches every path "
			           "it matches, so it would always answer first "
			           "(the refused route is from %s)",
			           evapi_method_name((evapi_method)rt->method),
			           path, rt->label, origin_of(rt),
			           app->reg_origin ? app->reg_origin
			                           : "the app");
			return EVAPI_EEXIST;
		}
	}
	return 0;
}

int evapi_app_route(evapi_app *app, unsigned methods, const char *path,
                    evapi_lane lane, evapi_handler_cb cb, void *arg)
{
	int rc;
	if (!app)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	if ((rc = evapi__route_check(app, methods, path)) != 0)
		return rc;
	return evapi__router_add(app->router, methods, path, lane, cb, arg);
}

int evapi_app_listen(evapi_app *app)
{
	if (!app)
		return EVAPI_EINVAL;
	return evapi__reactor_listen(app);
}

int evapi_app_set_user_data(evapi_app *app, void *ptr)
{
	if (!app)
		return EVAPI_EINVAL;
	__atomic_store_n(&app->user_data, ptr, __ATOMIC_RELEASE);
	return 0;
}

void *evapi_app_user_data(const evapi_app *app)
{
	return app ? __atomic_load_n(&app->user_data, __ATOMIC_ACQUIRE) : NULL;
}

evapi_app *evapi_req_app(const evapi_req *req)
{
	return req ? req->app : NULL;
}

/* The pool's hooks (on the workers): the app's. */
static void worker_started(void *arg, int index)
{
	evapi_app *app = arg;
	app->worker_start(app, index, app->worker_start_arg);
}

static void worker_stopping(void *arg, int index)
{
	evapi_app *app = arg;
	app->worker_stop(app, index, app->worker_stop_arg);
}

static int worker_hook(evapi_app *app, int stop, evapi_worker_cb cb,
                       void *arg)
{
	if (!app || !cb)
		return EVAPI_EINVAL;
	if (app->running || app->freeing)
		return EVAPI_ESTATE;
	if (stop ? app->worker_stop != NULL : app->worker_start != NULL)
		return EVAPI_EEXIST;
	/* the pool's lock orders these writes before the workers' reads */
	if (stop) {
		app->worker_stop = cb;
		app->worker_stop_arg = arg;
	} else {
		app->worker_start = cb;
		app->worker_start_arg = arg;
	}
	evapi__pool_hooks(app->pool, app->worker_start ? worker_started : NULL,
	                  app->worker_stop ? worker_stopping : NULL, app);
	return 0;
}

int evapi_app_on_worker_start(evapi_app *app, evapi_worker_cb cb, void *arg)
{
	return worker_hook(app, 0, cb, arg);
}

int evapi_app_on_worker_stop(evapi_app *app, evapi_worker_cb cb, void *arg)
{
	return worker_hook(app, 1, cb, arg);
}

int evapi_app_port(const evapi_app *app)
{
	return app ? app->port : 0;
}

int evapi_app_run(evapi_app *app)
{
	int rc;
	if (!app)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	EVAPI__STORE(&app->loop_thread, pthread_self());
	if ((rc = evapi__stats_bind_routes(app)) != 0)
		return rc;
	app->running = 1;
	rc = evapi__lifespan_startup(app);
	if (rc == 0)
		rc = evapi__reactor_run(app);
	evapi__lifespan_shutdown(app);
	app->running = 0;
	return rc;
}

void evapi_app_stop(evapi_app *app)
{
	if (app)
		evapi__reactor_stop(app);
}

void evapi_app_stats(evapi_app *app, evapi_stats *out)
{
	memset(out, 0, sizeof *out);
#define COPY(type, name, group, key, prom, kind, help) \
	out->name = EVAPI__LOAD(&app->stats.name);
	EVAPI__COUNTERS(COPY)
#undef COPY
	evapi__pool_counts(app->pool, &out->pool_threads, &out->pool_busy,
	                   &out->pool_queued);
}
