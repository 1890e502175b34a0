/*
 * db_result.c: what a query returns: the result accessors (over a
 * PGresult, or SQLite's rows copied out), the mapping of PostgreSQL
 * types and SQLite storage classes to JSON, the SQLSTATE classes behind each
 * EVAPI_E* code and the FastAPI-style error reply.
 *
 * Threads: a result is read by whoever holds it (the continuation, on the
 * loop); nothing here keeps state of its own.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

/* ---- results ------------------------------------------------------------ */

int evapi_db_result_error(const evapi_db_result *res)
{
	return res ? res->error : EVAPI_EINVAL;
}

const char *evapi_db_result_sqlstate(const evapi_db_result *res)
{
	return res ? res->sqlstate : "";
}

const char *evapi_db_result_errmsg(const evapi_db_result *res)
{
	return res && res->errmsg ? res->errmsg : "";
}

int evapi_db_result_ntuples(const evapi_db_result *res)
{
	if (!res)
		return 0;
	return res->pg ? PQntuples(res->pg) : res->rows ? res->rows->nrows : 0;
}

int evapi_db_result_nfields(const evapi_db_result *res)
{
	if (!res)
		return 0;
	return res->pg ? PQnfields(res->pg) : res->rows ? res->rows->ncols : 0;
}

const char *evapi_db_result_fname(const evapi_db_result *res, int col)
{
	if (col < 0 || col >= evapi_db_result_nfields(res))
		return NULL;
	return res->pg ? PQfname(res->pg, col) : res->rows->names[col];
}

static int in_range(const evapi_db_result *res, int row, int col)
{
	return row >= 0 && row < evapi_db_result_ntuples(res) && col >= 0 &&
	       col < evapi_db_result_nfields(res);
}

static const evapi__db_cell *cell(const evapi_db_result *res, int row, int col)
{
	return &res->rows->cells[(size_t)row * (size_t)res->rows->ncols +
	                         (size_t)col];
}

int evapi_db_result_is_null(const evapi_db_result *res, int row, int col)
{
	if (!in_range(res, row, col))
		return 1;
	return res->pg ? PQgetisnull(res->pg, row, col)
	               : cell(res, row, col)->type == EVAPI__CELL_NULL;
}

const char *evapi_db_result_value(const evapi_db_result *res, int row,
                                  int col)
{
	if (evapi_db_result_is_null(res, row, col))
		return NULL;
	return res->pg ? PQgetvalue(res->pg, row, col) : cell(res, row, col)->v;
}

long long evapi_db_result_affected(const evapi_db_result *res)
{
	const char *n = res && res->pg ? PQcmdTuples(res->pg) : "";
	if (res && res->rows)
		return res->rows->changes;
	if (*n)
		return strtoll(n, NULL, 10);
	/* rows gathered in single-row mode carry no command tag */
	return res && res->pg ? PQntuples(res->pg) : 0;
}

double evapi_db_result_ms(const evapi_db_result *res)
{
	return res ? (double)(res->end_us - res->start_us) / 1000.0 : 0;
}

int evapi_db_result_http_status(const evapi_db_result *res)
{
	if (!res)
		return 500;
	switch (res->error) {
	case 0:
		return 0;
	case EVAPI_EUNAVAIL:
	case EVAPI_EBUSY:
	case EVAPI_ECANCELED:
		return 503;
	case EVAPI_ETIMEDOUT:
		return 504;
	}
	return strcmp(res->sqlstate, "23505") == 0 ? 409 : 500;
}

int evapi_reply_db_error(evapi_req *req, const evapi_db_result *res)
{
	int status = evapi_db_result_http_status(res);
	const char *detail = "Internal Server Error";

	if (status == 0)
		return EVAPI_EINVAL;
	if (req)
		evapi__log(req->app, status == 409   ? EVAPI_LOG_INFO
		                     : status == 500 ? EVAPI_LOG_ERROR
		                                     : EVAPI_LOG_WARN,
		           "%s: database: %s [%s] %s: %d id=%llu",
		           req->route ? req->route->label : "-",
		           evapi_strerror(res ? res->error : EVAPI_EINVAL),
		           res && res->sqlstate[0] ? res->sqlstate : "-",
		           evapi_db_result_errmsg(res), status, req->id);
	if (status == 503) {
		evapi_reply_add_header(req, "Retry-After", "1");
		detail = res && res->error == EVAPI_EBUSY ? "Database busy"
		                                          : "Database unavailable";
	} else if (status == 504) {
		detail = "Database timed out";
	} else if (status == 409) {
		detail = "Conflict";
	}
	return evapi_reply_error(req, status, detail);
}

/* ---- JSON mapping ------------------------------------------------------- */

/* Type OIDs (pg_type.h is a server header). */
enum {
	OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21,
	OID_INT4 = 23, OID_OID = 26, OID_JSON = 114, OID_FLOAT4 = 700,
	OID_FLOAT8 = 701, OID_DATE = 1082, OID_TIMESTAMP = 1114,
	OID_TIMESTAMPTZ = 1184, OID_JSONB = 3802
};

static json_t *base64(const unsigned char *p, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	json_t *j;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		*o++ = tab[p[i] >> 2];
		*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*o++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*o++ = tab[p[i + 2] & 63];
	}
	if (i < n) {
		*o++ = tab[p[i] >> 2];
		if (i + 1 < n) {
			*o++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*o++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*o++ = tab[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = '\0';
	j = json_string(out);
	free(out);
	return j;
}

/* DateStyle ISO ("2024-05-01 12:30:00.5+02") to ISO 8601
 * ("2024-05-01T12:30:00.5+02:00"). "infinity" and BC dates stay as
 * they are. */
static json_t *iso8601(const char *v)
{
	char buf[64];
	size_t n = strlen(v);
	char *tz;

	if (n < 10 || n + 4 > sizeof buf || strstr(v, " BC"))
		return json_string(v);
	memcpy(buf, v, n + 1);
	if (n > 10 && buf[10] == ' ')
		buf[10] = 'T';
	/* a zone of whole hours, "+02", is written "+02:00" */
	tz = strpbrk(buf + 11 < buf + n ? buf + 11 : buf + n, "+-");
	if (n > 11 && tz && strlen(tz) == 3) {
		memcpy(tz + 3, ":00", 4);
	}
	return json_string(buf);
}

static json_t *value_json(PGresult *r, int row, int col)
{
	const char *v = PQgetvalue(r, row, col);
	char *end;

	if (PQgetisnull(r, row, col))
		return json_null();
	switch (PQftype(r, col)) {
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
		return json_integer(strtoll(v, NULL, 10));
	case OID_FLOAT4:
	case OID_FLOAT8: {
		double d = strtod(v, &end);
		return isfinite(d) && *end == '\0' ? json_real(d)
		                                   : json_string(v);
	}
	case OID_BOOL:
		return json_boolean(v[0] == 't');
	case OID_JSON:
	case OID_JSONB: {
		json_t *j = json_loads(v, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		return j ? j : json_string(v);
	}
	case OID_DATE:
	case OID_TIMESTAMP:
	case OID_TIMESTAMPTZ:
		return iso8601(v);
	case OID_BYTEA: {
		size_t n = 0;
		unsigned char *b = PQunescapeBytea((const unsigned char *)v, &n);
		json_t *j = b ? base64(b, n) : NULL;
		PQfreemem(b);
		return j;
	}
	}
	return json_stringn(v, (size_t)PQgetlength(r, row, col));
}

/* SQLite's storage classes: INTEGER, REAL, TEXT, BLOB (base64), NULL */
static json_t *cell_json(const evapi__db_cell *c)
{
	switch (c->type) {
	case EVAPI__CELL_INT:
		return json_integer(strtoll(c->v, NULL, 10));
	case EVAPI__CELL_REAL: {
		double d = strtod(c->v, NULL);
		return isfinite(d) ? json_real(d) : json_string(c->v);
	}
	case EVAPI__CELL_TEXT:
		return json_stringn(c->v, (size_t)c->len);
	case EVAPI__CELL_BLOB:
		return base64((const unsigned char *)c->v, (size_t)c->len);
	}
	return json_null();
}

json_t *evapi_db_result_row_json(const evapi_db_result *res, int row)
{
	json_t *o;
	int c, n = evapi_db_result_nfields(res);

	if (row < 0 || row >= evapi_db_result_ntuples(res))
		return NULL;
	if (!(o = json_object()))
		return NULL;
	for (c = 0; c < n; c++) {
		json_t *v = res->pg ? value_json(res->pg, row, c)
		                    : cell_json(cell(res, row, c));
		if (!v || json_object_set_new(o, evapi_db_result_fname(res, c),
		                              v) != 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

json_t *evapi_db_result_json(const evapi_db_result *res)
{
	json_t *a = json_array();
	int r, n = evapi_db_result_ntuples(res);

	for (r = 0; a && r < n; r++) {
		json_t *o = evapi_db_result_row_json(res, r);
		if (!o || json_array_append_new(a, o) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* ---- errors ------------------------------------------------------------- */

void evapi__db_result_msg(evapi_db_result *res, const char *msg)
{
	size_t n;

	free(res->errmsg);
	res->errmsg = NULL;
	if (!msg)
		return;
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--; /* libpq's messages end in a newline */
	if ((res->errmsg = malloc(n + 1))) {
		memcpy(res->errmsg, msg, n);
		res->errmsg[n] = '\0';
	}
}

int evapi__db_classify(const PGresult *r, int conn_bad)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	if (!state || !*state)
		return conn_bad ? EVAPI_EUNAVAIL : EVAPI_EDB;
	/* 08: connection exception; 57P01-03: admin/crash shutdown, cannot
	 * connect now; 53: insufficient resources (too many connections) */
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
	    strncmp(state, "53", 2) == 0)
		return EVAPI_EUNAVAIL;
	if (strcmp(state, "57014") == 0) /* query_canceled, statement_timeout */
		return EVAPI_ETIMEDOUT;
	return EVAPI_EDB;
}

int evapi__db_row_add(PGresult **acc, PGresult *row, size_t *bytes,
                      size_t max)
{
	int ncols = PQnfields(row), nrows = PQntuples(row), i, j, n;
	size_t add = 0;

	for (i = 0; i < nrows; i++)
		for (j = 0; j < ncols; j++)
			add += (size_t)PQgetlength(row, i, j);
	if (add > max - *bytes) {
		*bytes = max + 1;
		goto fail;
	}
	*bytes += add;
	if (!*acc) {
		/* the first row: columns and all, as a TUPLES_OK result */
		*acc = PQcopyResult(row, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
		PQclear(row);
		return *acc ? 0 : -1;
	}
	n = PQntuples(*acc);
	for (i = 0; i < nrows; i++, n++)
		for (j = 0; j < ncols; j++)
			if (!PQsetvalue(*acc, n, j,
			                PQgetisnull(row, i, j)
			                        ? NULL
			                        : PQgetvalue(row, i, j),
			                PQgetisnull(row, i, j)
			                        ? -1
			                        : PQgetlength(row, i, j)))
				goto fail;
	PQclear(row);
	return 0;
fail:
	PQclear(row);
	PQclear(*acc);
	*acc = NULL;
	return -1;
}

const char *evapi__db_too_big(char *buf, size_t len, size_t max)
{
	snprintf(buf, len, "result over db_max_result_bytes (%zu bytes)", max);
	return buf;
}

int evapi__db_failed(const PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
	       st != PGRES_EMPTY_QUERY;
}

void evapi__db_result_set(evapi_db_result *res, int error, PGresult *pg,
                          const char *msg)
{
	res->error = error;
	if (pg && evapi__db_failed(pg)) {
		const char *st = PQresultErrorField(pg, PG_DIAG_SQLSTATE);
		snprintf(res->sqlstate, sizeof res->sqlstate, "%s", st ? st : "");
		evapi__db_result_msg(res, PQresultErrorMessage(pg));
		PQclear(pg);
		pg = NULL;
	} else if (msg) {
		evapi__db_result_msg(res, msg);
	}
	res->pg = pg;
}

void evapi__db_rows_free(evapi__db_rows *rows)
{
	size_t i;

	if (!rows)
		return;
	for (i = 0; rows->names && i < (size_t)rows->ncols; i++)
		free(rows->names[i]);
	for (i = 0; i < (size_t)rows->nrows * (size_t)rows->ncols; i++)
		free(rows->cells[i].v);
	free(rows->names);
	free(rows->cells);
	free(rows);
}

void evapi__db_result_clear(evapi_db_result *res)
{
	PQclear(res->pg);
	res->pg = NULL;
	evapi__db_rows_free(res->rows);
	res->rows = NULL;
	free(res->errmsg);
	res->errmsg = NULL;
}
