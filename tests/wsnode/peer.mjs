// peer.mjs: node's ws as a strict, well-behaved WebSocket client against
// a live evapi app (tests/test_ws_node starts it on 127.0.0.1:PORT).
// ws checks the handshake (Sec-WebSocket-Accept, the subprotocol),
// refuses masked server frames, reserved bits and text that is not
// UTF-8, and validates close codes: every frame evapi sends passes it.
// Prints "ok <step>" per step; exits 1 with "FAIL <step>: <why>".
// Usage: node peer.mjs PORT
import WebSocket from "ws";

const port = process.argv[2];
const base = `ws://127.0.0.1:${port}`;
let step = "start";

function fail(why) {
	console.log(`FAIL ${step}: ${why}`);
	process.exit(1);
}
setTimeout(() => fail("timed out"), 25000).unref();

// Opens a session; ws errors on anything RFC 6455 forbids.
function open(path, protocols, options) {
	return new Promise((resolve, reject) => {
		const ws = new WebSocket(base + path, protocols, {
			perMessageDeflate: false,
			maxPayload: 8 << 20,
			...options,
		});
		ws.once("open", () => resolve(ws));
		ws.once("error", reject);
		ws.once("unexpected-response", (req, res) =>
			reject(new Error(`status ${res.statusCode}`)));
	});
}

function next(ws) {
	return new Promise((resolve, reject) => {
		ws.once("message", (data, binary) => resolve({ data, binary }));
		ws.once("close", (code) => reject(new Error(`closed ${code}`)));
	});
}

function closed(ws) {
	return new Promise((resolve) =>
		ws.once("close", (code, reason) =>
			resolve({ code, reason: reason.toString() })));
}

function expect(cond, why) {
	if (!cond) fail(why);
}

async function run() {
	step = "echo text";
	let ws = await open("/ws/echo");
	ws.send("h\u00e9llo \u{1F600}");
	let m = await next(ws);
	expect(!m.binary && m.data.toString() === "h\u00e9llo \u{1F600}",
		`got ${m.data}`);
	console.log(`ok ${step}`);

	step = "echo binary";
	const bin = Buffer.alloc(256 * 1000);
	for (let i = 0; i < bin.length; i++) bin[i] = i & 0xff;
	ws.send(bin);
	m = await next(ws);
	expect(m.binary && Buffer.compare(m.data, bin) === 0, "bytes differ");
	for (const n of [0, 125, 126, 127, 65535, 65536]) {
		ws.send(Buffer.alloc(n, 0x5a));
		m = await next(ws);
		expect(m.binary && m.data.length === n, `length ${n}: ${m.data.length}`);
	}
	console.log(`ok ${step}`);

	step = "fragmented";
	ws.send("a".repeat(70000), { fin: false });
	ws.send("b", { fin: false });
	ws.ping("between");
	ws.send("c", { fin: true });
	m = await next(ws);
	expect(m.data.toString() === "a".repeat(70000) + "bc", "joined wrong");
	console.log(`ok ${step}`);

	step = "ping";
	const pong = new Promise((resolve) => ws.once("pong", resolve));
	ws.ping(Buffer.from("xyz"));
	const pd = await pong;
	expect(pd.toString() === "xyz", `pong payload ${pd}`);
	console.log(`ok ${step}`);

	step = "close 1000";
	let c = closed(ws);
	ws.close(1000, "done");
	let r = await c;
	expect(r.code === 1000, `code ${r.code}`);
	console.log(`ok ${step}`);

	step = "close 1012";
	ws = await open("/ws/echo");
	c = closed(ws);
	ws.close(1012, "restarting");
	r = await c;
	expect(r.code === 1012, `code ${r.code}`);
	console.log(`ok ${step}`);

	step = "server close 4000";
	ws = await open("/ws/echo");
	c = closed(ws);
	ws.send("close-me");
	r = await c;
	expect(r.code === 4000 && r.reason === "asked",
		`code ${r.code} reason ${r.reason}`);
	console.log(`ok ${step}`);

	step = "invalid UTF-8 1007";
	ws = await open("/ws/echo");
	c = closed(ws);
	ws.send(Buffer.from([0x6f, 0x6b, 0xed, 0xa0, 0x80]), { binary: false });
	r = await c;
	expect(r.code === 1007, `code ${r.code}`);
	console.log(`ok ${step}`);

	step = "over-size 1009";
	ws = await open("/ws/echo");
	c = closed(ws);
	ws.send(Buffer.alloc(2 << 20));
	r = await c;
	expect(r.code === 1009, `code ${r.code}`);
	console.log(`ok ${step}`);

	step = "subprotocol";
	ws = await open("/ws/proto", ["chat.v1", "chat.v2"],
		{ origin: "https://ok.example" });
	expect(ws.protocol === "chat.v2", `protocol ${ws.protocol}`);
	c = closed(ws);
	ws.close(1000);
	await c;
	console.log(`ok ${step}`);

	step = "server pings";
	ws = await open("/ws/ping");
	let pings = 0;
	ws.on("ping", () => pings++);
	await new Promise((resolve) => setTimeout(resolve, 900));
	expect(pings >= 2, `${pings} pings`);
	ws.send("alive");
	m = await next(ws);
	expect(m.data.toString() === "alive", `got ${m.data}`);
	c = closed(ws);
	ws.close(1000);
	await c;
	console.log(`ok ${step}`);

	step = "plain route refused";
	try {
		await open("/ws/nowhere");
		fail("connected to a plain route");
	} catch (e) {
		expect(/status 404/.test(e.message), e.message);
	}
	console.log(`ok ${step}`);
	console.log("node ws ok");
}

run().catch((e) => fail(e.message));
