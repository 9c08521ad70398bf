// The browser example in Debian's headless Chromium (playwright-core): the
// form validates as the user types, with the WASM module, and shows each
// problem beside its field. Saves a screenshot to target/screenshots/.
// With CALLBOOK_WASM_PACKAGE (an installed callbook-wasm, tests/packaging/run)
// the page's module comes from that package's browser entry instead of the
// checkout's pkg/web.
import test from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const require = createRequire(path.join(root, "bindings-wasm/package.json"));
const { chromium } = require("playwright-core");

// The directory served as /bindings-wasm/pkg/web/ (what examples/browser/app.js imports).
const installed = process.env.CALLBOOK_WASM_PACKAGE;
const webDir = installed
  ? path.dirname(path.join(installed, JSON.parse(fs.readFileSync(path.join(installed, "package.json"), "utf8")).exports["."].browser.default))
  : path.join(root, "bindings-wasm/pkg/web");
const served = [];

const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".mjs": "text/javascript" };

function serve() {
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const web = "/bindings-wasm/pkg/web/";
    const file = url.startsWith(web) ? path.join(webDir, url.slice(web.length)) : path.join(root, url);
    const allowed = url.startsWith(web) ? file.startsWith(webDir) : file.startsWith(root) && !url.startsWith("/bindings-wasm/");
    if (!allowed || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    served.push(file);
    res.writeHead(200, { "content-type": types[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const title = installed ? "the booking form, with the module from the installed callbook-wasm" : "the booking form shows every problem beside its field as the user types";
test(title, async () => {
  const server = await serve();
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${server.address().port}/examples/browser/index.html`);
    await page.waitForSelector("body[data-checked]");
    const problem = (field) => page.textContent(`.problem[data-field="${field}"]`);

    // Empty form: name and start are missing.
    assert.match(await problem("customerName"), /name is missing/);
    assert.match(await problem("start"), /give a start/);

    await page.fill("#customerName", "Jürgen Müller");
    await page.type("#date", "someday");
    await page.type("#time", "25:99");
    assert.equal(await problem("customerName"), "");
    assert.match(await problem("date"), /not a date/);
    assert.match(await problem("time"), /not HH:MM/);
    assert.equal(await page.getAttribute("#date", "class"), "bad");

    await page.fill("#date", "");
    await page.type("#date", "morgen");
    await page.fill("#time", "");
    await page.type("#time", "14:30");
    await page.type("#customerEmail", "Juergen at Example dot com");
    await page.type("#serviceId", "0");
    assert.equal(await problem("date"), "");
    assert.equal(await problem("time"), "");
    assert.match(await problem("serviceId"), /positive number/);
    assert.equal(await page.textContent("#emailPreview"), "will be saved as juergen@example.com");

    await page.fill("#serviceId", "");
    await page.type("#serviceId", "2");
    assert.equal(await page.textContent("#status"), "Ready to book.");
    fs.mkdirSync(path.join(root, "target/screenshots"), { recursive: true });
    await page.fill("#time", "9");
    await page.type("#time", "9:7x");
    assert.match(await problem("time"), /not HH:MM/);
    const shot = installed ? "browser-form-package.png" : "browser-form.png";
    await page.screenshot({ path: path.join(root, "target/screenshots", shot), fullPage: true });
    assert.deepEqual(errors, []);
    assert.ok(served.includes(path.join(webDir, "callbook_wasm_bg.wasm")), "the module came from " + webDir);
  } finally {
    await browser.close();
    server.close();
  }
});
