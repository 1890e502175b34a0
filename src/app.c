/*
 * app.c: the application object: configuration defaults, construction
 * and teardown, route registration, run/stop and the stats snapshot.
 *
 * Threads: created and configured on one thread, which becomes the loop
 * thread when it calls evapi_app_run. evapi_app_stop and evapi_app_stats
 * may be called from any thread.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *evapi_lane_name(evapi_lane lane)
{
	return lane == EVAPI_POOL ? "pool" : "inline";
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
	cfg->idle_timeout_s = 5;
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
	cfg->header_timeout_ms = 10000;
	cfg->body_timeout_ms = 30000;
	cfg->keepalive_max_requests = 1000;
	cfg->max_connections = 10000;
	cfg->max_json_depth = 64;
	cfg->pool_yield_to_loop = 1;
}

static int config_valid(const evapi_config *c)
{
	return c->host && c->port >= 0 && c->port <= 65535 &&
	       c->pool_threads >= 1 && c->pool_threads <= 4096 &&
	       c->pool_queue_max >= 0 && c->stall_threshold_ms >= 1 &&
	       c->request_timeout_ms >= 1 && c->idle_timeout_s >= 1 &&
	       c->max_header_bytes >= 256 && c->shutdown_grace_ms >= 0 &&
	       c->max_target_bytes >= 16 && c->max_header_fields >= 1 &&
	       c->header_timeout_ms >= 1 && c->body_timeout_ms >= 1 &&
	       c->keepalive_max_requests >= 1 && c->max_connections >= 1 &&
	       c->max_json_depth >= 1 &&
	       c->workers >= 1 && c->workers <= 1024 &&
	       (int)c->log_level >= 0 && c->log_level <= EVAPI_LOG_DEBUG &&
	       c->outbound_max_connections >= 1 &&
	       c->outbound_timeout_ms >= 1 &&
	       c->outbound_connect_timeout_ms >= 1 &&
	       c->outbound_max_response_bytes >= 1;
}

evapi_app *evapi_app_new(const evapi_config *cfg)
{
	struct event_config *ec = NULL;
	evapi_app *app;

	app = calloc(1, sizeof *app);
	if (!app)
		return NULL;
	if (cfg)
		app->cfg = *cfg;
	else
		evapi_config_init(&app->cfg);
	if (!config_valid(&app->cfg))
		goto err;
	app->host = strdup(app->cfg.host);
	app->cfg.host = app->host;
	app->loop_thread = pthread_self();
	TAILQ_INIT(&app->live);
	TAILQ_INIT(&app->bg_runs);
	ec = event_config_new();
	if (!app->host || !ec)
		goto err;
	/* Batches epoll_ctl changes per loop turn: fewer syscalls. */
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	app->base = event_base_new_with_config(ec);
	event_config_free(ec);
	ec = NULL;
	if (!app->base)
		goto err;
	app->router = evapi__router_new();
	if (!app->router || evapi__reactor_init(app) != 0 ||
	    evapi__lifespan_init(app) != 0)
		goto err;
	if (app->cfg.stats_routes && evapi__stats_init(app) != 0)
		goto err;
	app->pool = evapi__pool_new(app->base, &app->loop_thread,
	                            app->cfg.pool_threads, app->cfg.pool_queue_max,
	                            app->cfg.pool_yield_to_loop);
	if (!app->pool)
		goto err;
	if (!(app->client = evapi__client_new(app)))
		goto err;
	if (app->cfg.openapi && evapi__openapi_routes(app) != 0)
		goto err;
	return app;
err:
	if (ec)
		event_config_free(ec);
	evapi_app_free(app);
	return NULL;
}

void evapi_app_free(evapi_app *app)
{
	if (!app)
		return;
	if (app->base) {
		/* Cut requests first, then let the pool deliver (and drop) the
		 * results of jobs that were running, then close the server. */
		if (app->http)
			evapi__reactor_free(app);
		evapi__pool_free(app->pool);
		event_base_loop(app->base, EVLOOP_NONBLOCK);
		evapi__lifespan_free(app); /* cancelled posts may end tasks */
		evapi__tasks_free(app);
		evapi__client_free(app->client);
		evapi__stats_free(app);
		event_base_free(app->base);
	}
	evapi__mw_free(app);
	evapi__router_free(app->router);
	evapi__decls_free(app);
	evapi__files_free(app);
	free(app->host);
	free(app);
}

int evapi_app_route(evapi_app *app, unsigned methods, const char *path,
                    evapi_lane lane, evapi_handler_cb cb, void *arg)
{
	if (!app)
		return EVAPI_EINVAL;
	if (app->running)
		return EVAPI_ESTATE;
	return evapi__router_add(app->router, methods, path, lane, cb, arg);
}

int evapi_app_listen(evapi_app *app)
{
	if (!app)
		return EVAPI_EINVAL;
	return evapi__reactor_listen(app);
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
	out->requests = EVAPI__LOAD(&app->stats.requests);
	out->in_flight = EVAPI__LOAD(&app->stats.in_flight);
	out->stalls = EVAPI__LOAD(&app->stats.stalls);
	out->rejected = EVAPI__LOAD(&app->stats.rejected);
	out->no_reply = EVAPI__LOAD(&app->stats.no_reply);
	out->gone = EVAPI__LOAD(&app->stats.gone);
	out->timeouts = EVAPI__LOAD(&app->stats.timeouts);
	out->status_4xx = EVAPI__LOAD(&app->stats.s4xx);
	out->status_5xx = EVAPI__LOAD(&app->stats.s5xx);
	out->max_stall_ms = EVAPI__LOAD(&app->stats.max_stall_ms);
	out->outbound_calls = EVAPI__LOAD(&app->stats.out_calls);
	out->outbound_errors = EVAPI__LOAD(&app->stats.out_errors);
	out->outbound_in_flight = EVAPI__LOAD(&app->stats.out_in_flight);
	out->outbound_sockets = EVAPI__LOAD(&app->stats.out_sockets);
	out->outbound_connects = EVAPI__LOAD(&app->stats.out_connects);
	evapi__pool_counts(app->pool, &out->pool_threads, &out->pool_busy,
	                   &out->pool_queued);
}
