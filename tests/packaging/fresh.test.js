// Runs inside a fresh project where tests/packaging/run installed only the
// packed tarballs (callbook, callbook-linux-x64-gnu, callbook-wasm), offline,
// with no Rust toolchain on PATH: what a user of the npm packages gets.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { Callbook, FakeCalcom } = require("callbook");
const wasm = require("callbook-wasm");

const modules = path.join(__dirname, "node_modules");
const manifest = (name) => JSON.parse(fs.readFileSync(path.join(modules, name, "package.json"), "utf8"));
const vectors = (name) => JSON.parse(fs.readFileSync(path.join(__dirname, "vectors", name), "utf8")).cases;

const DIRECTORY = {
  companies: [{ id: 1, name: "Salon Berlin", calcom_api_key: "cal_test_fresh" }],
  branches: [{ id: 1, company_id: 1, name: "Mitte", timezone: "Europe/Berlin", country: "DE", phone_number: "+49 30 1234567" }],
  services: [{ id: 1, company_id: 1, name: "Haircut", calcom_event_type_id: 1001, duration_minutes: 30 }],
};

function open() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "callbook-fresh-"));
  // The test books in 2099 (always in the future): past the default 365-day horizon.
  const book = new Callbook(path.join(dir, "test.db"), { horizonDays: 40000 });
  book.import(DIRECTORY);
  return book;
}

async function until(condition, ms = 20000) {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("the installed packages are the workspace's version, with their types", () => {
  for (const name of ["callbook", "callbook-linux-x64-gnu", "callbook-wasm"]) {
    assert.equal(manifest(name).version, process.env.CALLBOOK_VERSION, name);
    assert.equal(manifest(name).license, "MIT OR Apache-2.0", name);
  }
  assert.deepEqual(manifest("callbook").optionalDependencies, { "callbook-linux-x64-gnu": process.env.CALLBOOK_VERSION });
  assert.match(fs.readFileSync(path.join(modules, "callbook", manifest("callbook").types), "utf8"), /export declare class Callbook/);
  const exportsMap = JSON.stringify(manifest("callbook-wasm").exports);
  for (const file of exportsMap.match(/\.\/pkg\/[^"]+/g)) assert.ok(fs.existsSync(path.join(modules, "callbook-wasm", file)), file);
});

test("callbook loads the prebuilt addon from its platform package", () => {
  const addons = Object.keys(require.cache).filter((file) => file.endsWith(".node"));
  assert.deepEqual(addons, [path.join(modules, "callbook-linux-x64-gnu", "callbook.linux-x64-gnu.node")]);
  assert.deepEqual(fs.readdirSync(path.join(modules, "callbook")).filter((f) => f.endsWith(".node")), []);
});

test("books, checks availability and syncs to the fake Cal.com with the worker", async () => {
  const fake = new FakeCalcom([{ id: 1001, lengthMinutes: 30 }]);
  const book = open();
  book.registerCall({ retellCallId: "call_anon", fromNumber: "anonymous", toNumber: "+49301234567" });
  book.registerCall({ retellCallId: "call_known", fromNumber: "0151 2345678", toNumber: "+49301234567" });

  const slots = await book.checkAvailability({ retellCallId: "call_anon", serviceId: 1, date: "2099-01-08", calcomUrl: fake.url });
  assert.equal(slots.remembered, true);
  assert.equal(slots.slots[0], "2099-01-08T08:00:00Z");
  await assert.rejects(
    book.bookAsync({ retellCallId: "call_anon", customerName: "Jane", serviceId: 1, start: "2099-01-08T06:00:00Z" }),
    (e) => e.code === "slot_unavailable",
  );
  const anonymous = book.book({ retellCallId: "call_anon", customerName: "Jane", serviceId: 1, start: slots.slots[0] });
  assert.equal(anonymous.anonymous, true);
  assert.match(anonymous.customerPhone, /^anonymous_\d+_[0-9a-f]{8}$/);
  const known = await book.bookAsync({ retellCallId: "call_known", customerName: "Max", serviceId: 1, date: "2099-01-09", time: "10:00" });
  assert.equal(known.customerPhone, "+491512345678");
  assert.equal(known.calcomSyncStatus, "pending");

  const events = [];
  book.onSyncEvent((e) => events.push(e));
  book.startWorker({ calcomUrl: fake.url, threads: 2, idleMs: 5 });
  await until(() => events.length >= 2);
  await book.stopWorker();
  assert.deepEqual(events.map((e) => e.outcome), ["synced", "synced"]);
  assert.equal(fake.stats().creates, 2);
  assert.equal(fake.stats().duplicatedKeys, 0);
  assert.equal(book.reviewList().length, 0);
});

test("errors carry the core's code, thrown and rejected", async () => {
  const book = open();
  const unknown = { retellCallId: "call_nope", customerName: "X", serviceId: 1, start: "2099-01-08T08:00:00Z" };
  assert.throws(() => book.book(unknown), (e) => e instanceof Error && e.code === "call_not_found");
  await assert.rejects(book.bookAsync(unknown), (e) => e instanceof Error && e.code === "call_not_found");
  await assert.rejects(book.bookAsync(Symbol("not JSON")), (e) => e.code === "invalid_argument");
});

test("callbook-wasm by require: the shared vectors, and the addon's answers", () => {
  assert.ok(require.resolve("callbook-wasm").endsWith(path.join("pkg", "node", "callbook_wasm.js")));
  const addon = require("callbook");
  for (const c of vectors("anonymous.json")) {
    const expected = { anonymous: c.reason !== null, reason: c.reason };
    assert.deepEqual(wasm.detectAnonymous(c.input), expected, JSON.stringify(c.input));
    assert.deepEqual(addon.detectAnonymous(c.input), expected, JSON.stringify(c.input));
  }
  for (const c of vectors("email.json")) assert.equal(wasm.normalizeEmail(c.input), c.output, JSON.stringify(c.input));
  for (const c of vectors("placeholder_phone.json")) assert.equal(wasm.placeholderPhone(c.name, c.call_db_id, c.unix_seconds), c.expected);
  for (const c of vectors("booking_request.json")) {
    assert.deepEqual(wasm.validateBookingRequest(c.request).map(({ field, code }) => ({ field, code })), c.problems, c.name);
  }
});
