/*
 * evapi.h: the umbrella header. FastAPI's concurrency model in C: an
 * evhttp reactor answers inline routes, a pthread pool runs blocking ones.
 */
#ifndef EVAPI_H
#define EVAPI_H

#include <evapi/common.h>
#include <evapi/app.h>
#include <evapi/request.h>
#include <evapi/schema.h>
#include <evapi/model.h>
#include <evapi/client.h>
#include <evapi/db.h>
#include <evapi/redis.h>
#include <evapi/tasks.h>
#include <evapi/websocket.h>
#include <evapi/channel.h>
#include <evapi/stream.h>
#include <evapi/middleware.h>
#include <evapi/lifespan.h>
#include <evapi/apirouter.h>
#include <evapi/debug.h>
#include <evapi/files.h>
#include <evapi/depends.h>
#include <evapi/security.h>

#define EVAPI_VERSION "0.1.0"

#endif
