// docs.mjs: drives Debian's chromium (headless, through playwright-core)
// against a live evapi app for tests/test_docs_browser: loads /docs,
// expands one operation, clicks "Try it out", fills a parameter, clicks
// "Execute" and reports what the page then shows, as one JSON line:
//   {"title": ..., "status": "200", "body": "...", "url": "..."}
// Usage: node docs.mjs BASE_URL OPERATION_ID PARAM VALUE SCREENSHOT.png
// The test asserts on that line; this script only reports (exit 0), or
// prints "error: ..." and exits 1 when a step fails. Every wait is
// bounded: the whole run takes seconds, at most about 45 s.
import { report } from "./chromium.mjs";

const [base, opId, param, value, shot] = process.argv.slice(2);

await report({ width: 1200, height: 1400 }, async (page) => {
	page.setDefaultTimeout(30000);
	const failed = [];
	page.on("requestfailed", (r) => failed.push(r.url()));
	await page.goto(base + "/docs", { waitUntil: "load" });
	// Swagger UI names each operation's block operations-<tag>-<id>
	const op = page.locator(`[id$="-${opId}"].opblock`).first();
	await op.locator(".opblock-summary-control").click();
	await op.locator("button.try-out__btn").click();
	await op.locator(`tr[data-param-name="${param}"] input`).fill(value);
	await op.locator("button.execute").click();
	const live = op.locator(".live-responses-table");
	const status = live.locator("tr.response td.response-col_status").first();
	await status.waitFor();
	const body = live.locator(".response-col_description pre").first();
	await body.waitFor();
	const url = await op.locator(".request-url pre").first().textContent()
		.catch(() => "");
	const title = await page.locator(".info .title").first().textContent();
	await op.scrollIntoViewIfNeeded();
	await page.screenshot({ path: shot, fullPage: true });
	return {
		title: title.trim(),
		status: (await status.textContent()).trim(),
		body: (await body.textContent()).trim(),
		url: (url || "").trim(),
		failed_requests: failed,
	};
});
