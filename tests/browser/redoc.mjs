// redoc.mjs: drives Debian's chromium (headless, through playwright-core)
// against a live evapi app for tests/test_docs_browser: loads /redoc,
// waits for ReDoc to render the document, and reports what the page
// then shows, as one JSON line:
//   {"title": ..., "summary": ..., "requests": [...], "blocked": [...],
//    "failed_requests": [...], "errors": [...]}
// Usage: node redoc.mjs BASE_URL OPERATION_SUMMARY SCREENSHOT.png
// "summary" is the text of the operation heading ReDoc drew for
// OPERATION_SUMMARY, "requests" every URL the page asked for, "blocked"
// those the browser refused to send because of the page's
// Content-Security-Policy, "failed_requests" any other that failed
// (URL and reason), "errors" the page's uncaught exceptions. The test asserts
// on that line; this script only reports (exit 0), or prints
// "error: ..." and exits 1 when a step fails. Every wait is bounded.
import { report } from "./chromium.mjs";

const [base, summary, shot] = process.argv.slice(2);

await report({ width: 1200, height: 900 }, async (page) => {
	page.setDefaultTimeout(30000);
	const requests = [], blocked = [], failed = [], errors = [];
	page.on("request", (r) => requests.push(r.url()));
	page.on("requestfailed", (r) => {
		const why = r.failure()?.errorText || "";
		if (why === "csp") // net::ERR_BLOCKED_BY_CSP: never sent
			blocked.push(r.url());
		else
			failed.push(`${r.url()} ${why}`);
	});
	page.on("pageerror", (e) => errors.push(String(e.message || e)));
	await page.goto(base + "/redoc", { waitUntil: "load" });
	// ReDoc draws each operation as an <h2> in its middle column
	const op = page.locator("h2", { hasText: summary }).first();
	await op.waitFor();
	const title = await page.locator("h1").first().textContent();
	await page.screenshot({ path: shot, fullPage: true });
	return {
		title: title.trim(),
		summary: (await op.textContent()).trim(),
		requests,
		blocked,
		failed_requests: failed,
		errors,
	};
});
