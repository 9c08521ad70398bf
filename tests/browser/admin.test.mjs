// The manual-review page of `callbook serve` in Debian's headless Chromium
// (playwright-core): two bookings fail against the fake Cal.com (a 400 is
// not retried, so both land on the list), an operator signs in with the
// token and their name, retries one and resolves the other with a note; the
// database shows the retried one synced and the other resolved by that
// operator with the note; forged cross-site POSTs are refused.
// Saves screenshots to target/screenshots/.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { spawn, execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { chromium } = createRequire(path.join(root, "bindings-wasm/package.json"))("playwright-core");
const { FakeCalcom } = createRequire(path.join(root, "bindings-node/package.json"))("./index.js");
const bin = process.env.CALLBOOK_BIN || path.join(root, "target/debug/callbook");
const TOKEN = "admin-token-for-the-test";

const directory = {
  companies: [{ id: 1, name: "Salon", calcom_api_key: "cal_live_admin_test" }],
  branches: [{ id: 1, company_id: 1, name: "Mitte", timezone: "Europe/Berlin", country: "DE", phone_number: "+4930123456" }],
  services: [{ id: 1, company_id: 1, name: "Cut", calcom_event_type_id: 123, duration_minutes: 30 }],
  calls: [
    { retell_call_id: "call_one", company_id: 1, branch_id: 1, from_number: "+49 151 2345678" },
    { retell_call_id: "call_two", company_id: 1, branch_id: 1, from_number: "anonymous" },
  ],
};

// The test books in 2099 (always in the future): past the default 365-day horizon.
function cli(db, ...args) {
  const env = { ...process.env, CALLBOOK_HORIZON_DAYS: "40000" };
  return JSON.parse(execFileSync(bin, ["--db", db, "--json", ...args], { encoding: "utf8", env }));
}

async function waitFor(what, check) {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("an operator retries one failed booking and resolves another on /admin", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "callbook-admin-"));
  const db = path.join(dir, "admin.db");
  fs.writeFileSync(path.join(dir, "directory.json"), JSON.stringify(directory));
  cli(db, "import", path.join(dir, "directory.json"));

  const fake = new FakeCalcom([{ id: 123, lengthMinutes: 30 }]);
  fake.failNext(400, "invalid event type");
  fake.failNext(400, "invalid event type");
  // The test books in 2099 (always in the future): past the default 365-day horizon.
  const serve = spawn(bin, ["--db", db, "--horizon-days", "40000", "--json", "serve", "--listen", "127.0.0.1:0", "--calcom-url", fake.url, "--worker-threads", "1"], {
    env: { ...process.env, CALLBOOK_ADMIN_TOKEN: TOKEN, RETELL_API_KEY: "k", CALCOM_WEBHOOK_SECRET: "s" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise((resolve) => serve.on("exit", (code, signal) => resolve({ code, signal })));
  const lines = readline.createInterface({ input: serve.stdout });
  const first = await new Promise((resolve) => lines.once("line", resolve));
  const base = first.replace("listening on ", "");

  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    const one = cli(db, "book", "--call", "call_one", "--name", "Max Muster", "--service", "1", "--start", "2099-05-04T09:00:00Z");
    const two = cli(db, "book", "--call", "call_two", "--name", "Erika", "--service", "1", "--start", "2099-05-04T10:00:00Z");
    await waitFor("both on the review list", () => cli(db, "review", "list").appointments.length === 2);

    const page = await browser.newPage();
    // Without the token: the login form, and a wrong token is refused.
    const first = await page.goto(`${base}/admin`);
    assert.equal(first.status(), 401);
    await page.fill("input[name=operator]", "Ada Lovelace");
    await page.fill("input[name=token]", "wrong");
    await page.click("button[type=submit]");
    assert.match(await page.textContent(".error"), /not right/);
    await page.fill("input[name=operator]", "Ada Lovelace");
    await page.fill("input[name=token]", TOKEN);
    await page.click("button[type=submit]");
    assert.equal(await page.textContent("#count"), "2");
    assert.equal(await page.textContent("#operator"), "Ada Lovelace");
    const row = (id) => `tr[data-appointment="${id}"]`;
    assert.match(await page.textContent(row(one.appointment_id)), /sync_failed[\s\S]*400[\s\S]*invalid event type/);
    assert.match(await page.textContent(row(one.appointment_id)), /Max Muster/);
    fs.mkdirSync(path.join(root, "target/screenshots"), { recursive: true });
    await page.screenshot({ path: path.join(root, "target/screenshots/admin-review.png"), fullPage: true });

    await page.click(`${row(one.appointment_id)} button[name=retry]`);
    assert.match(await page.textContent("[role=status]"), new RegExp(`Appointment ${one.appointment_id} is pending again`));
    assert.equal(await page.textContent("#count"), "1");

    // Resolving needs a note: the browser will not submit an empty one.
    await page.fill(`${row(two.appointment_id)} input[name=note]`, "called the customer back, booked by hand");
    await page.click(`${row(two.appointment_id)} button[name=resolve]`);
    assert.match(await page.textContent("[role=status]"), new RegExp(`Appointment ${two.appointment_id} is resolved`));
    assert.equal(await page.textContent("#count"), "0");
    await page.screenshot({ path: path.join(root, "target/screenshots/admin-review-done.png"), fullPage: true });

    // Acting on an appointment no longer on the list is refused with its code.
    const again = await page.request.post(`${base}/admin/appointments/${two.appointment_id}/retry`, { maxRedirects: 0, headers: { Origin: base } });
    assert.equal(again.status(), 409);
    assert.match(await again.text(), /not_in_review/);
    // The same POST from another site, riding on the session cookie, is refused.
    for (const headers of [{ Origin: "https://evil.example" }, { Origin: base, "Sec-Fetch-Site": "cross-site" }, {}]) {
      const forged = await page.request.post(`${base}/admin/appointments/${one.appointment_id}/retry`, { maxRedirects: 0, headers });
      assert.equal(forged.status(), 403, JSON.stringify(headers));
    }

    // The database: the retried one is synced by the worker inside serve, the other resolved.
    await waitFor("the retried booking synced", () => cli(db, "review", "show", String(one.appointment_id)).appointment.calcom_sync_status === "synced");
    const resolved = cli(db, "review", "show", String(two.appointment_id)).appointment;
    assert.equal(resolved.requires_manual_review, false);
    assert.equal(resolved.review_resolved_by, "Ada Lovelace", "signed by the operator who signed in");
    assert.equal(resolved.review_note, "called the customer back, booked by hand");
    assert.equal(resolved.calcom_sync_status, "failed");
    assert.equal(fake.bookings().length, 1);
  } finally {
    await browser.close();
    serve.kill("SIGTERM");
    const { code } = await exited;
    assert.equal(code, 0, "serve stops cleanly on SIGTERM");
  }
});
