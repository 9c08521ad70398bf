// The operations overview and the callbacks page of `callbook serve` in
// Debian's headless Chromium (playwright-core). A database with a known mix:
// five bookings of two companies synced by the CLI's worker against the
// fake Cal.com, two of them refused (400: on the review list), and one
// whose create has waited five hours (planted by SQL: the old pending job).
// A caller files a callback through the Retell function over HTTP. An
// operator signs in, reads every figure of the overview and compares it
// with what the test computes from the database itself (better-sqlite3),
// then marks the callback done; the database shows who did it.
// Screenshots in target/screenshots/.
import test from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { spawn, execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { chromium } = createRequire(path.join(root, "bindings-wasm/package.json"))("playwright-core");
const nodeRequire = createRequire(path.join(root, "bindings-node/package.json"));
const { FakeCalcom } = nodeRequire("./index.js");
const Database = nodeRequire("better-sqlite3");
const bin = process.env.CALLBOOK_BIN || path.join(root, "target/debug/callbook");
const TOKEN = "admin-token-for-the-overview";
const RETELL_KEY = "retell-key-for-the-overview";

const directory = {
  companies: [
    { id: 1, name: "Salon Mitte", calcom_api_key: "cal_live_health_one" },
    { id: 2, name: "Praxis <b>Nord</b>", calcom_api_key: "cal_live_health_two" },
  ],
  branches: [
    { id: 1, company_id: 1, name: "Mitte", timezone: "Europe/Berlin", country: "DE", phone_number: "+4930123456" },
    { id: 2, company_id: 2, name: "Nord", timezone: "Europe/Berlin", country: "DE", phone_number: "+4940123456" },
  ],
  services: [
    { id: 1, company_id: 1, name: "Cut", calcom_event_type_id: 123, duration_minutes: 30 },
    { id: 2, company_id: 2, name: "Checkup", calcom_event_type_id: 456, duration_minutes: 30 },
  ],
  calls: [
    { retell_call_id: "c1_known", company_id: 1, branch_id: 1, from_number: "+49 151 2345678" },
    { retell_call_id: "c1_anon", company_id: 1, branch_id: 1, from_number: "anonymous" },
    { retell_call_id: "c2_known", company_id: 2, branch_id: 2, from_number: "+49 151 7654321" },
    { retell_call_id: "c2_anon", company_id: 2, branch_id: 2, from_number: "restricted" },
  ],
};

// The test books in 2099 (always in the future): past the default 365-day horizon.
function cli(db, ...args) {
  const env = { ...process.env, CALLBOOK_HORIZON_DAYS: "40000" };
  return JSON.parse(execFileSync(bin, ["--db", db, "--json", ...args], { encoding: "utf8", env }));
}

const dbTime = (d) => d.toISOString().replace("T", " ").replace("Z", "000");

// Nearest rank, as core computes it.
function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(Math.max(Math.ceil(p * sorted.length), 1), sorted.length);
  return sorted[rank - 1];
}

// Stored times to whole microseconds (exact in a double, as core's integers are).
const micros = (text) => Date.parse(text.slice(0, 19).replace(" ", "T") + "Z") * 1000 + Number(text.slice(20, 26));

// Every figure of the overview over the last 24 hours, from the database alone.
function expected(db, company) {
  const where = company === "all" ? "" : `AND a.company_id = ${company}`;
  const since = dbTime(new Date(Date.now() - 24 * 3600 * 1000));
  const rows = db
    .prepare(`SELECT a.*, c.source FROM appointments a JOIN customers c ON c.id = a.customer_id WHERE a.created_at > ? ${where}`)
    .all(since);
  const count = (f) => rows.filter(f).length;
  const synced = count((r) => r.calcom_sync_status === "synced");
  const failed = count((r) => r.calcom_sync_status === "failed");
  const scope = company === "all" ? "" : `AND company_id = ${company}`;
  const one = (sql, ...args) => db.prepare(sql).pluck().get(...args);
  const hourAgo = dbTime(new Date(Date.now() - 3600 * 1000));
  const latencies = rows.map((r) => r.booking_latency_us / 1000);
  const syncs = rows
    .filter((r) => r.calcom_sync_status === "synced" && r.rescheduled_count === 0)
    .map((r) => (micros(r.sync_verified_at) - micros(r.created_at)) / 1000);
  return {
    bookings: rows.length,
    bookings_anonymous: count((r) => r.source === "retell_webhook_anonymous"),
    bookings_known: count((r) => r.source !== "retell_webhook_anonymous"),
    sync_success_rate: synced + failed ? synced / (synced + failed) : null,
    manual_review_rate: rows.length ? count((r) => r.manual_review_flagged_at !== null) / rows.length : null,
    manual_reviews_open: one(`SELECT COUNT(*) FROM appointments WHERE requires_manual_review = 1 ${scope}`),
    callbacks_open: one(`SELECT COUNT(*) FROM callbacks WHERE status = 'open' ${scope}`),
    pending_over_1h: one(`SELECT COUNT(*) FROM sync_jobs WHERE state IN ('available','running','retryable') AND created_at <= ? ${scope}`, hourAgo),
    booking_p50: percentile(latencies, 0.5),
    booking_p95: percentile(latencies, 0.95),
    booking_p99: percentile(latencies, 0.99),
    sync_p50: percentile(syncs, 0.5),
    sync_p99: percentile(syncs, 0.99),
  };
}

function sign(body) {
  const ts = String(Date.now());
  const digest = crypto.createHmac("sha256", RETELL_KEY).update(body).update(ts).digest("hex");
  return `v=${ts},d=${digest}`;
}

test("the overview shows what the database holds, and a callback is done from /admin/callbacks", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "callbook-health-"));
  const dbPath = path.join(dir, "health.db");
  fs.writeFileSync(path.join(dir, "directory.json"), JSON.stringify(directory));
  cli(dbPath, "import", path.join(dir, "directory.json"));

  // Five bookings synced by the CLI's worker; Cal.com refuses the first and the fourth.
  const fake = new FakeCalcom([{ id: 123, lengthMinutes: 30 }, { id: 456, lengthMinutes: 30 }]);
  const book = (call, service, start) => cli(dbPath, "book", "--call", call, "--name", "Kim", "--service", String(service), "--start", start);
  const sync = () => cli(dbPath, "sync", "--once", "--calcom-url", fake.url);
  book("c1_known", 1, "2099-05-04T09:00:00Z");
  fake.failNext(400, "invalid event type");
  assert.equal(sync().flagged, 1);
  book("c1_anon", 1, "2099-05-04T10:00:00Z");
  book("c2_known", 2, "2099-05-04T11:00:00Z");
  assert.equal(sync().synced, 2);
  book("c2_anon", 2, "2099-05-04T12:00:00Z");
  fake.failNext(400, "invalid event type");
  assert.equal(sync().flagged, 1);
  book("c1_known", 1, "2099-05-04T13:00:00Z");
  assert.equal(sync().synced, 1);
  // The old pending job: booked five hours ago, its create never run (no worker in serve below).
  const old = book("c2_known", 2, "2099-05-04T14:00:00Z");
  const fiveHoursAgo = dbTime(new Date(Date.now() - 5 * 3600 * 1000));
  const db = new Database(dbPath);
  db.prepare("UPDATE appointments SET created_at = ?, updated_at = ? WHERE id = ?").run(fiveHoursAgo, fiveHoursAgo, old.appointment_id);
  db.prepare("UPDATE sync_jobs SET created_at = ?, updated_at = ?, run_at = ? WHERE appointment_id = ?").run(fiveHoursAgo, fiveHoursAgo, fiveHoursAgo, old.appointment_id);

  const serve = spawn(bin, ["--db", dbPath, "--json", "serve", "--listen", "127.0.0.1:0", "--worker-threads", "0"], {
    env: { ...process.env, CALLBOOK_ADMIN_TOKEN: TOKEN, RETELL_API_KEY: RETELL_KEY },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise((resolve) => serve.on("exit", (code, signal) => resolve({ code, signal })));
  const lines = readline.createInterface({ input: serve.stdout });
  const base = (await new Promise((resolve) => lines.once("line", resolve))).replace("listening on ", "");

  // A caller of company 1 asks for a person: the agent files a callback over Retell's function call.
  const body = JSON.stringify({
    name: "request_callback",
    call: { call_id: "c1_known", from_number: "+49 151 2345678", to_number: "+4930123456" },
    args: { customer_name: "Kim <Kunde>", reason: "möchte den Termin besprechen" },
  });
  const filed = await fetch(`${base}/retell/function`, { method: "POST", body, headers: { "X-Retell-Signature": sign(body) } });
  const answer = await filed.json();
  assert.equal(filed.status, 200);
  assert.equal(answer.ok, true, JSON.stringify(answer));

  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  const shots = path.join(root, "target/screenshots");
  fs.mkdirSync(shots, { recursive: true });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    assert.equal((await page.goto(`${base}/admin/health`)).status(), 401, "the overview needs the same sign-in");
    await page.fill("input[name=operator]", "Ada Lovelace");
    await page.fill("input[name=token]", TOKEN);
    await page.click("button[type=submit]");
    await page.click("nav >> text=Overview");
    assert.equal(new URL(page.url()).pathname, "/admin/health");
    await page.screenshot({ path: path.join(shots, "admin-health.png"), fullPage: true });

    // Every figure, for all companies and for each, as the database has it.
    const figures = Object.keys(expected(db, "all"));
    for (const company of ["all", "1", "2"]) {
      const want = expected(db, company);
      for (const key of figures) {
        const cell = page.locator(`td[data-figure="${key}"][data-company="${company}"]`);
        const raw = await cell.getAttribute("data-value");
        const shown = raw === "" ? null : Number(raw);
        if (want[key] === null) assert.equal(shown, null, `${key} of ${company}`);
        else assert.ok(Math.abs(shown - want[key]) < 1e-9, `${key} of ${company}: page ${shown}, database ${want[key]}`);
      }
    }
    const all = expected(db, "all");
    assert.deepEqual([all.bookings, all.bookings_anonymous, all.manual_reviews_open, all.pending_over_1h, all.callbacks_open], [6, 2, 2, 1, 1]);
    // Outside their targets, and marked so: 3 of 5 synced, 2 of 6 flagged, a job waiting for five hours.
    for (const key of ["sync_success_rate", "manual_review_rate", "pending_over_1h"]) {
      assert.match(await page.getAttribute(`td[data-figure="${key}"][data-company="all"]`, "class"), /miss/, key);
    }
    assert.match(await page.textContent("#targets"), /sync_success_rate, manual_review_rate, .*pending_over_1h/);
    const oldest = Number(await page.getAttribute('td[data-figure="oldest_pending_seconds"][data-company="all"]', "data-value"));
    assert.ok(Math.abs(oldest - 5 * 3600) < 120, `the oldest pending job is five hours old: ${oldest} s`);
    assert.match(await page.textContent('td[data-figure="oldest_pending_seconds"][data-company="2"]'), /^5 h/);
    // A company's name is text, never markup.
    assert.equal(await page.textContent('thead th[data-company="2"]'), "Praxis <b>Nord</b>");
    assert.equal(await page.locator("thead th b").count(), 0);
    // The charts: one bar per hour, every booking of the window in them.
    assert.equal(await page.getAttribute("#chart-bookings", "data-total"), "6");
    assert.equal(await page.locator("#chart-bookings g[data-bar]").count(), 24);
    assert.ok((await page.locator("#chart-sync rect.failed").count()) >= 1);
    assert.ok((await page.locator("#chart-sync rect.pending").count()) >= 1, "the old pending booking, five bars back");
    // The last hour: the planted booking is outside it.
    await page.click(".tabs >> text=1h");
    assert.equal(await page.getAttribute('td[data-figure="bookings"][data-company="all"]', "data-value"), "5");
    assert.equal(await page.locator("#chart-bookings g[data-bar]").count(), 12);

    // The callback: listed with what the caller said, done by the operator signed in.
    await page.click("nav >> text=Callbacks");
    const row = page.locator(`tr[data-callback="${answer.callback_id}"]`);
    assert.equal(await page.textContent("#callbacks-count"), "1");
    assert.equal(await row.locator("td.name").textContent(), "Kim <Kunde>");
    assert.equal(await row.locator("td.phone").textContent(), "+491512345678", "the number the call showed");
    assert.equal(await row.locator("td.reason").textContent(), "möchte den Termin besprechen");
    assert.match(await row.textContent(), /Salon Mitte/);
    await page.screenshot({ path: path.join(shots, "admin-callbacks.png"), fullPage: true });
    await row.locator("button[name=done]").click();
    assert.match(await page.textContent("[role=status]"), new RegExp(`Callback ${answer.callback_id} is done`));
    assert.equal(await page.textContent("#callbacks-count"), "0");
    await page.screenshot({ path: path.join(shots, "admin-callbacks-done.png"), fullPage: true });
    const stored = db.prepare("SELECT status, done_by, done_at FROM callbacks WHERE id = ?").get(answer.callback_id);
    assert.equal(stored.status, "done");
    assert.equal(stored.done_by, "Ada Lovelace", "signed by the operator who signed in");
    assert.ok(stored.done_at);
    // The overview follows: no callback open.
    await page.click("nav >> text=Overview");
    assert.equal(await page.getAttribute('td[data-figure="callbacks_open"][data-company="all"]', "data-value"), "0");
    // A forged Done from another site is refused, as every admin POST is.
    const forged = await page.request.post(`${base}/admin/callbacks/${answer.callback_id}/done`, { maxRedirects: 0, headers: { Origin: "https://evil.example" } });
    assert.equal(forged.status(), 403);
  } finally {
    await browser.close();
    db.close();
    serve.kill("SIGTERM");
    const { code } = await exited;
    assert.equal(code, 0, "serve stops cleanly on SIGTERM");
  }
});
