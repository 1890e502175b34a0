// chromium.mjs: the frame of the scripts here (docs.mjs, redoc.mjs):
// starts Debian's chromium headless through playwright-core (which
// downloads no browser; EVAPI_CHROMIUM names another binary), runs one
// page and prints what it found as one JSON line.
import { chromium } from "playwright-core";

// Opens a page of `viewport` size and runs `body(page)`: prints the
// object it returns as JSON and exits 0, or prints "error: ..." with the
// first line of what failed and exits 1.
export async function report(viewport, body) {
	const exe = process.env.EVAPI_CHROMIUM || "/usr/bin/chromium";
	const args = ["--disable-gpu", "--disable-dev-shm-usage"];
	let browser;

	if (process.getuid && process.getuid() === 0)
		args.push("--no-sandbox"); // chromium refuses to run as root otherwise
	try {
		browser = await chromium.launch({ executablePath: exe,
		                                  headless: true, args,
		                                  timeout: 20000 });
		const found = await body(await browser.newPage({ viewport }));
		console.log(JSON.stringify(found));
		await browser.close();
		process.exit(0);
	} catch (e) {
		console.log(`error: ${String(e.message || e).split("\n")[0]}`);
		if (browser)
			await browser.close().catch(() => {});
		process.exit(1);
	}
}
