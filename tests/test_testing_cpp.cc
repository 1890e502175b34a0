// test_testing_cpp.cc: the public headers from C++17: an app built and
// driven through evapi/testing.h in a C++ program (RAII wrappers of the
// client and its responses, a lambda-free C callback, an SSE stream, a
// WebSocket session), and a typed body (evapi/model.h) read and replied.
#include <evapi.h>
#include <evapi/testing.h>

#include <cctype>
#include <cstddef>
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

extern "C" void shout(evapi_ws *ws, int, const char *data, size_t, void *)
{
	std::string s(data);
	for (char &c : s)
		c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
	evapi_ws_send_text(ws, s.c_str());
}

struct point {
	int64_t x;
	double y;
	char *label;
};

// Designated initialisers are C++20; C++17 fills members in order.
const evapi_member point_members[] = {
	{"x", EVAPI_C_INT64, offsetof(point, x), sizeof(int64_t), 1, nullptr,
	 0, 0, 0, 0, 0, nullptr, nullptr, nullptr, nullptr, 0},
	{"y", EVAPI_C_DOUBLE, offsetof(point, y), sizeof(double), 0, "0.5",
	 EVAPI_GE, 0, 0, 0, 0, nullptr, nullptr, nullptr, nullptr, 0},
	{"label", EVAPI_C_STRING, offsetof(point, label), sizeof(char *), 0,
	 nullptr, 0, 0, 0, 0, 0, nullptr, nullptr, nullptr, nullptr, 0},
	{nullptr, EVAPI_C_INT64, 0, 0, 0, nullptr, 0, 0, 0, 0, 0, nullptr,
	 nullptr, nullptr, nullptr, 0}};
const evapi_model point_model = {"Point", sizeof(point), point_members, 0};

extern "C" void move_point(evapi_req *req, void *)
{
	point p;
	if (evapi_req_model(req, &point_model, &p) != 0) {
		evapi_reply_error(req, 500, "no model");
		return;
	}
	p.x += 1;
	evapi_reply_model(req, 200, &point_model, &p);
	evapi_model_free(&point_model, &p);
}

client start()
{
	evapi_config cfg;
	th_config(&cfg);
	evapi_app *app = evapi_app_new(&cfg);
	evapi_app_route(app, EVAPI_GET, "/hello", EVAPI_INLINE, hello, nullptr);
	evapi_app_route(app, EVAPI_GET, "/hello/pool", EVAPI_POOL, hello, nullptr);
	evapi_app_route(app, EVAPI_GET, "/events", EVAPI_INLINE, events, nullptr);
	evapi_app_websocket(app, "/shout", nullptr, nullptr, shout, nullptr,
	                    nullptr);
	evapi_route_decl d{};
	d.methods = EVAPI_POST;
	d.path = "/move";
	d.lane = EVAPI_POOL;
	d.cb = move_point;
	d.body_model = &point_model;
	d.response_model = &point_model;
	CHECK_INT(evapi_app_route_decl(app, &d), ==, 0);
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

void test_websocket()
{
	client tc = start();
	evapi_test_req req{};
	req.path = "/shout";
	std::unique_ptr<evapi_test_ws, void (*)(evapi_test_ws *)> ws(
		evapi_test_ws_connect(tc.get(), &req), evapi_test_ws_free);
	CHECK_INT(evapi_test_status(evapi_test_ws_response(ws.get())), ==, 101);
	CHECK_INT(evapi_test_ws_send_text(ws.get(), "hey"), ==, 0);
	evapi_test_ws_msg m{};
	CHECK_INT(evapi_test_ws_recv(ws.get(), &m, 0), ==, 0);
	std::string got(m.data, m.len);
	CHECK_STR(got.c_str(), "HEY");
	CHECK_INT(evapi_test_ws_close(ws.get(), 1000, "done"), ==, 0);
	CHECK_INT(evapi_test_ws_close_code(ws.get(), nullptr), ==, 1000);
}

void test_model()
{
	client tc = start();
	evapi_test_req req{};
	req.path = "/move";
	req.json = json_pack("{s:i, s:s, s:s}", "x", 41, "label", "p", "extra",
	                     "dropped");
	response r(evapi_test_request(tc.get(), &req));
	CHECK_INT(evapi_test_status(r.get()), ==, 200);
	CHECK_STR(evapi_test_body(r.get(), nullptr),
	          "{\"x\":42,\"y\":0.5,\"label\":\"p\"}");
	req.json = json_pack("{s:s, s:i}", "x", "a", "y", -1);
	response bad(evapi_test_request(tc.get(), &req));
	CHECK_INT(evapi_test_status(bad.get()), ==, 422);
	CHECK_INT(json_array_size(json_object_get(evapi_test_json(bad.get()),
	                                          "detail")), ==, 2);
}

} // namespace

int main(int argc, char **argv)
{
	static const th_test tests[] = {
		{"testing_cpp.request", test_request},
		{"testing_cpp.stream", test_stream},
		{"testing_cpp.websocket", test_websocket},
		{"testing_cpp.model", test_model},
		{nullptr, nullptr}};
	return th_main(argc, argv, tests);
}
