// test_testing_cpp.cc: the public headers from C++17: an app built and
// driven through evapi/testing.h in a C++ program (RAII wrappers of the
// client and its responses, a lambda-free C callback, an SSE stream).
#include <evapi.h>
#include <evapi/testing.h>

#include <memory>
#include <string>

extern "C" {
#include "harness.h"
}

namespace {

struct test_stop {
	void operator()(evapi_test *tc) const { CHECK_INT(evapi_test_stop(tc), ==, 0); }
};
struct resp_free {
	void operator()(evapi_test_response *r) const { evapi_test_response_free(r); }
};
using client = std::unique_ptr<evapi_test, test_stop>;
using response = std::unique_ptr<evapi_test_response, resp_free>;

extern "C" void hello(evapi_req *req, void *)
{
	std::string who = evapi_req_query(req, "who") ? evapi_req_query(req, "who") : "world";
	evapi_reply_json(req, 200, json_pack("{s:s}", "hello", who.c_str()));
}

extern "C" void events(evapi_req *req, void *)
{
	evapi_stream *s = evapi_reply_sse(req, 0);
	for (int i = 0; i < 3; i++)
		evapi_sse_send(s, "n", std::to_string(i).c_str(), "x");
	evapi_stream_close(s);
}

client start()
{
	evapi_config cfg;
	th_config(&cfg);
	evapi_app *app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, hello, nullptr);
	evapi_app_route(app, EVAPI_GET, "/hello/pool", EVAPI_POOL, hello, nullptr);
	evapi_app_route(app, EVAPI_GET, "/events", EVAPI_INLINE, events, nullptr);
	return client(evapi_test_start(app));
}

void test_request()
{
	client tc = start();
	CHECK(tc != nullptr);
	const char *headers[] = {"Accept: application/json", nullptr};
	evapi_test_req req{};
	req.path = "/hello/pool";
	req.query = "who=c%2B%2B";
	req.headers = headers;
	response r(evapi_test_request(tc.get(), &req));
	CHECK_INT(evapi_test_status(r.get()), ==, 200);
	CHECK_STR(json_string_value(json_object_get(evapi_test_json(r.get()), "hello")),
	          "c++");
	response missing(evapi_test_get(tc.get(), "/nope"));
	CHECK_INT(evapi_test_status(missing.get()), ==, 404);
}

void test_stream()
{
	client tc = start();
	evapi_test_req req{};
	req.path = "/events";
	evapi_test_stream *s = evapi_test_open(tc.get(), &req);
	evapi_test_sse ev{};
	std::string ids;
	while (evapi_test_sse_next(s, &ev, 2000) == 0)
		ids += ev.id;
	CHECK_STR(ids.c_str(), "012");
	evapi_test_stream_close(s);
}

} // namespace

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"testing_cpp.request", test_request},
		{"testing_cpp.stream", test_stream},
		{nullptr, nullptr}};
	return th_main(argc, argv, tests);
}
