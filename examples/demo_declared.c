/*
 * demo_declared.c: the demo's declared routes: FastAPI's typed
 * parameters, Pydantic bodies and UploadFile, done with evapi/schema.h.
 *
 *   GET  /items/{item_id}  -> typed parameters, 422 when they do not fit
 *   POST /items            -> declared JSON body, pool lane (bad bodies
 *                             are answered on the loop, never on a worker)
 *   POST /upload           -> multipart/form-data, files stored on the pool
 *   PUT  /files/{filename} -> the body stored as one file
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "demo.h"

/* def read_item(item_id: int = Path(ge=1),
 *               q: str | None = Query(None, max_length=50),
 *               limit: int = Query(10, ge=1, le=100)) */
static const evapi_field item_params[] = {
	{.name = "item_id", .in = EVAPI_IN_PATH, .type = EVAPI_INT,
	 .required = 1, .bounds = EVAPI_GE, .ge = 1, .example = "42"},
	{.name = "q", .type = EVAPI_STRING, .bounds = EVAPI_MAX_LEN,
	 .max_len = 50},
	{.name = "limit", .type = EVAPI_INT, .dflt = "10",
	 .bounds = EVAPI_GE | EVAPI_LE, .ge = 1, .le = 100},
	{0}};

static void read_item(evapi_req *req, void *arg)
{
	long long id, limit;
	evapi_req_get_int(req, "item_id", &id);
	evapi_req_get_int(req, "limit", &limit);
	evapi_reply_json(req, 200, json_pack(
		"{s:I, s:s?, s:I}", "item_id", (json_int_t)id, "q",
		evapi_req_get_string(req, "q"), "limit", (json_int_t)limit));
}

/* class Item(BaseModel): name: str = Field(max_length=50);
 *   price: float = Field(ge=0); tags: list[str] = [];
 *   description: str | None = None */
static const evapi_field tag_field = {.type = EVAPI_STRING};
static const evapi_field item_body[] = {
	{.name = "name", .type = EVAPI_STRING, .required = 1,
	 .bounds = EVAPI_MAX_LEN, .max_len = 50},
	{.name = "price", .type = EVAPI_NUMBER, .required = 1,
	 .bounds = EVAPI_GE, .ge = 0},
	{.name = "tags", .type = EVAPI_ARRAY, .items = &tag_field, .dflt = "[]"},
	{.name = "description", .type = EVAPI_STRING},
	{0}};

/* A pool route: invalid bodies never reach it (checked on the loop). */
static void create_item(evapi_req *req, void *arg)
{
	json_t *item;
	if (evapi_req_json(req, &item) != 0)
		return;
	evapi_reply_json(req, 201, json_incref(item));
}

static void uploaded(evapi_req *req, void *arg)
{
	json_t *files = json_array();
	int i;
	for (i = 0; i < evapi_req_file_count(req); i++) {
		const evapi_file *f = evapi_req_file(req, i);
		json_array_append_new(files, json_pack(
			"{s:s, s:s?, s:s, s:I, s:s}", "field", f->field,
			"filename", f->filename, "stored", f->stored, "size",
			(json_int_t)f->size, "content_type", f->content_type));
	}
	evapi_reply_json(req, 200, json_pack("{s:o}", "files", files));
}

/* What the routes answer, for the OpenAPI document and /docs. */
static const char *const items_tag[] = {"items", NULL};
static const char *const files_tag[] = {"files", NULL};
static const evapi_field read_fields[] = {
	{.name = "item_id", .type = EVAPI_INT, .required = 1},
	{.name = "q", .type = EVAPI_STRING},
	{.name = "limit", .type = EVAPI_INT, .required = 1},
	{0}};
static const evapi_field read_schema = {.type = EVAPI_OBJECT,
                                        .fields = read_fields};
static const evapi_field item_schema = {.type = EVAPI_OBJECT,
                                        .fields = item_body};
static const evapi_response read_responses[] = {
	{.status = 200, .description = "The item", .schema = &read_schema,
	 .schema_name = "ItemRead",
	 .example = "{\"item_id\": 42, \"q\": null, \"limit\": 10}"},
	{0}};
static const evapi_response create_responses[] = {
	{.status = 201, .description = "Created: the item as stored",
	 .schema = &item_schema, .schema_name = "ItemOut"},
	{0}};

static evapi_upload uploads = {.max_file_bytes = 4 << 20,
                               .max_total_bytes = 8 << 20};
static evapi_upload raw_uploads = {.max_file_bytes = 4 << 20, .raw = 1};

int demo_declared_routes(evapi_app *app, const char *upload_dir)
{
	evapi_route_decl get = {.methods = EVAPI_GET,
	                        .path = "/items/{item_id}",
	                        .lane = EVAPI_INLINE, .cb = read_item,
	                        .params = item_params,
	                        .summary = "Read an item",
	                        .tags = items_tag,
	                        .responses = read_responses};
	evapi_route_decl post = {.methods = EVAPI_POST, .path = "/items",
	                         .lane = EVAPI_POOL, .cb = create_item,
	                         .body = item_body, .body_name = "Item",
	                         .summary = "Create an item",
	                         .description = "Stores nothing: answers the "
	                                        "validated body, defaults "
	                                        "filled in.",
	                         .tags = items_tag,
	                         .responses = create_responses,
	                         .body_example = "{\"name\": \"Hammer\", "
	                                         "\"price\": 9.5}"};
	evapi_route_decl up = {.methods = EVAPI_POST, .path = "/upload",
	                       .lane = EVAPI_POOL, .cb = uploaded,
	                       .upload = &uploads,
	                       .summary = "Upload files (multipart/form-data)",
	                       .tags = files_tag};
	evapi_route_decl raw = {.methods = EVAPI_PUT,
	                        .path = "/files/{filename}",
	                        .lane = EVAPI_POOL, .cb = uploaded,
	                        .upload = &raw_uploads,
	                        .summary = "Upload one file as the body",
	                        .tags = files_tag};

	if (mkdir(upload_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "demo: cannot create %s: %s\n", upload_dir,
		        strerror(errno));
		return -1;
	}
	uploads.dir = raw_uploads.dir = upload_dir;
	if (evapi_app_route_decl(app, &get) || evapi_app_route_decl(app, &post) ||
	    evapi_app_route_decl(app, &up) || evapi_app_route_decl(app, &raw))
		return -1;
	return 0;
}

