/*
 * env.c: the configuration read from the environment (EVAPI_PORT, ...),
 * one variable per evapi_config member.
 *
 * Threads: whichever thread builds the config, before evapi_app_new. It
 * reads the environment with getenv, which is not safe against a
 * concurrent setenv: call it before starting threads.
 *
 * Each variable is parsed strictly (digits only, no trailing junk, no
 * overflow of its member's type) and then checked against the same range
 * table evapi_app_new_ex uses (evapi__config_check), on a default config
 * holding only that value, so the error names the variable that is wrong
 * and nothing else. Nothing is stored unless every variable is valid.
 */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* K_STR refuses "", except EVAPI_DB_URL and EVAPI_REDIS_URL where it
 * means NULL (none); K_STR_ANY takes "" as it is */
enum kind { K_INT, K_SIZE, K_BOOL, K_STR, K_STR_ANY, K_LEVEL };

static const struct var {
	const char *name;   /* "EVAPI_POOL_THREADS" */
	const char *member; /* "pool_threads" */
	size_t off;
	enum kind kind;
} vars[] = {
#define V(NAME, member, kind) \
	{"EVAPI_" #NAME, #member, offsetof(evapi_config, member), kind}
	/* listener */
	V(HOST, host, K_STR),
	V(PORT, port, K_INT),
	V(WORKERS, workers, K_INT),
	V(MAX_CONNECTIONS, max_connections, K_INT),
	V(KEEPALIVE_MAX_REQUESTS, keepalive_max_requests, K_INT),
	V(HANDLE_SIGNALS, handle_signals, K_BOOL),
	V(SHUTDOWN_GRACE_MS, shutdown_grace_ms, K_INT),
	/* lanes */
	V(POOL_THREADS, pool_threads, K_INT),
	V(POOL_QUEUE_MAX, pool_queue_max, K_INT),
	V(POOL_YIELD_TO_LOOP, pool_yield_to_loop, K_BOOL),
	V(STALL_THRESHOLD_MS, stall_threshold_ms, K_INT),
	/* limits and deadlines */
	V(MAX_TARGET_BYTES, max_target_bytes, K_SIZE),
	V(MAX_HEADER_BYTES, max_header_bytes, K_SIZE),
	V(MAX_HEADER_FIELDS, max_header_fields, K_INT),
	V(MAX_BODY_BYTES, max_body_bytes, K_SIZE),
	V(MAX_JSON_DEPTH, max_json_depth, K_INT),
	V(MAX_CHUNK_LINE_BYTES, max_chunk_line_bytes, K_SIZE),
	V(HEADER_TIMEOUT_MS, header_timeout_ms, K_INT),
	V(BODY_TIMEOUT_MS, body_timeout_ms, K_INT),
	V(REQUEST_TIMEOUT_MS, request_timeout_ms, K_INT),
	V(IDLE_TIMEOUT_MS, idle_timeout_ms, K_INT),
	V(REPLY_WRITE_TIMEOUT_MS, reply_write_timeout_ms, K_INT),
	/* outbound */
	V(OUTBOUND_MAX_CONNECTIONS, outbound_max_connections, K_INT),
	V(OUTBOUND_TIMEOUT_MS, outbound_timeout_ms, K_INT),
	V(OUTBOUND_CONNECT_TIMEOUT_MS, outbound_connect_timeout_ms, K_INT),
	V(OUTBOUND_MAX_RESPONSE_BYTES, outbound_max_response_bytes, K_SIZE),
	/* database */
	V(DB_URL, db_url, K_STR),
	V(DB_MAX_CONNECTIONS, db_max_connections, K_INT),
	V(DB_QUEUE_MAX, db_queue_max, K_INT),
	V(DB_ACQUIRE_TIMEOUT_MS, db_acquire_timeout_ms, K_INT),
	V(DB_QUERY_TIMEOUT_MS, db_query_timeout_ms, K_INT),
	V(DB_STATEMENT_CACHE, db_statement_cache, K_INT),
	V(DB_MAX_RESULT_BYTES, db_max_result_bytes, K_SIZE),
	V(DB_PIPELINE, db_pipeline, K_BOOL),
	/* Redis */
	V(REDIS_URL, redis_url, K_STR),
	V(REDIS_CONNECT_TIMEOUT_MS, redis_connect_timeout_ms, K_INT),
	V(REDIS_COMMAND_TIMEOUT_MS, redis_command_timeout_ms, K_INT),
	/* docs and introspection */
	V(OPENAPI, openapi, K_BOOL),
	V(SWAGGER_UI_DIR, swagger_ui_dir, K_STR_ANY),
	V(REDOC_DIR, redoc_dir, K_STR_ANY),
	V(STATS_ROUTES, stats_routes, K_BOOL),
	V(HEALTH_ROUTES, health_routes, K_BOOL),
	/* logging */
	V(LOG_LEVEL, log_level, K_LEVEL),
	V(ACCESS_LOG, access_log, K_BOOL),
#undef V
};
#define NVARS (sizeof vars / sizeof vars[0])

static const char *const levels[] = {"error", "warn", "info", "debug"};

static int word(const char *s, const char *const *words, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (strcasecmp(s, words[i]) == 0)
			return (int)i;
	return -1;
}

/* Parses `text` for `v` into `c` (only v's member changes). Returns 0,
 * or EVAPI_EINVAL with the variable named in err. */
static int store(evapi_config *c, const struct var *v, const char *text,
                 evapi_error *err)
{
	static const char *const no_yes[] = {"0", "1", "false", "true", "no",
	                                     "yes", "off", "on"};
	char *field = (char *)c + v->off;
	long long n;
	int w;

	switch (v->kind) {
	case K_STR:
		/* an empty EVAPI_DB_URL or EVAPI_REDIS_URL means "none" */
		if (!*text && (strcmp(v->member, "db_url") == 0 ||
		               strcmp(v->member, "redis_url") == 0))
			text = NULL;
		else if (!*text)
			break;
		/* fall through */
	case K_STR_ANY:
		memcpy(field, &text, sizeof text);
		return 0;
	case K_BOOL:
		if ((w = word(text, no_yes, 8)) < 0) {
			evapi__error_set(err, EVAPI_EINVAL,
			                 "%s=\"%.40s\": must be 0/1, "
			                 "true/false, yes/no or on/off",
			                 v->name, text);
			return EVAPI_EINVAL;
		}
		*(int *)(void *)field = w & 1;
		return 0;
	case K_LEVEL:
		if ((w = word(text, levels, 4)) >= 0) {
			c->log_level = (evapi_log_level)w;
			return 0;
		}
		if (evapi_parse_int(text, &n) != 0 || n < 0 || n > 3) {
			evapi__error_set(err, EVAPI_EINVAL,
			                 "%s=\"%.40s\": must be error, warn, "
			                 "info or debug (or 0..3)",
			                 v->name, text);
			return EVAPI_EINVAL;
		}
		c->log_level = (evapi_log_level)n;
		return 0;
	case K_INT:
	case K_SIZE:
		w = evapi_parse_int(text, &n);
		if (w == EVAPI_ERANGE || (w == 0 && v->kind == K_INT &&
		                          (n < INT_MIN || n > INT_MAX))) {
			evapi__error_set(err, EVAPI_EINVAL,
			                 "%s=\"%.40s\": out of range", v->name,
			                 text);
			return EVAPI_EINVAL;
		}
		if (w != 0 || (v->kind == K_SIZE && n < 0)) {
			evapi__error_set(err, EVAPI_EINVAL,
			                 "%s=\"%.40s\": not a whole number%s",
			                 v->name, text,
			                 v->kind == K_SIZE ? " of bytes" : "");
			return EVAPI_EINVAL;
		}
		if (v->kind == K_INT)
			*(int *)(void *)field = (int)n;
		else
			*(size_t *)(void *)field = (size_t)n;
		return 0;
	}
	evapi__error_set(err, EVAPI_EINVAL, "%s is empty", v->name);
	return EVAPI_EINVAL;
}

int evapi_config_from_env(evapi_config *cfg, evapi_error *err)
{
	evapi_config out, one;
	evapi_error why;
	size_t i;

	if (!cfg)
		return evapi__error_set(err, EVAPI_EINVAL, "cfg is NULL");
	out = *cfg;
	for (i = 0; i < NVARS; i++) {
		const char *text = getenv(vars[i].name);
		int rc;
		if (!text)
			continue;
		if ((rc = store(&out, &vars[i], text, err)) != 0)
			return rc;
		/* the range table, on this value alone */
		evapi_config_init(&one);
		store(&one, &vars[i], text, NULL);
		if (evapi__config_check(&one, &why) != 0)
			return evapi__error_set(err, EVAPI_EINVAL, "%s: %s",
			                        vars[i].name, why.text);
	}
	*cfg = out;
	return 0;
}

const char *evapi__config_env_name(size_t i, const char **member)
{
	if (i >= NVARS)
		return NULL;
	if (member)
		*member = vars[i].member;
	return vars[i].name;
}
