// book() through the addon next to the same booking written by hand in JS
// with better-sqlite3 (same schema, same SQL, one transaction per booking),
// in the same run. Half the callers withhold their number, half are 1,000
// regulars. `node bench/book.mjs [--quick]`.
import { createRequire } from "node:module";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const require = createRequire(import.meta.url);
const { Callbook } = require("..");
const Database = require("better-sqlite3");

const quick = process.argv.includes("--quick");
const N = quick ? 2000 : 20000;
const DIRECTORY = {
  companies: [{ id: 1, name: "Bench GmbH" }],
  branches: [{ id: 1, company_id: 1, name: "HQ", timezone: "Europe/Berlin", country: "DE", phone_number: "+4930123456" }],
  services: [{ id: 1, company_id: 1, name: "Slot", calcom_event_type_id: 1, duration_minutes: 30 }],
};
const base = Date.UTC(2099, 0, 1, 8);
const startOf = (i) => new Date(base + i * 1800000);
const iso = (d) => d.toISOString().replace(".000Z", "Z");
const dbTime = (d) => d.toISOString().replace("T", " ").replace("Z", "000");
const fromNumber = (i) => (i % 2 === 0 ? "anonymous" : `+4915${String(10000000 + (Math.floor(i / 2) % 1000))}`);

/** A database with the directory and the calls of both runs (not timed); `":memory:"` for none on disk. */
function prepare(dir, name, sync) {
  const file = name === ":memory:" ? name : path.join(dir, `${name}.db`);
  // Starts in 2099, past the default 365-day horizon.
  const book = new Callbook(file, { synchronous: sync, horizonDays: 40000 });
  book.import({
    ...DIRECTORY,
    calls: Array.from({ length: N }, (_, i) => ({ retell_call_id: `call_${i}`, company_id: 1, branch_id: 1, from_number: fromNumber(i) })),
  });
  return { file, book };
}

function handWritten(db, sync) {
  if (!db.memory) db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${sync}`);
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  const q = {
    call: db.prepare("SELECT id, retell_call_id, company_id, branch_id, from_number, to_number, direction FROM calls WHERE retell_call_id = ?"),
    branch: db.prepare("SELECT id, company_id, name, timezone, country, phone_number FROM branches WHERE id = ?"),
    service: db.prepare("SELECT id, company_id, name, calcom_event_type_id, duration_minutes, capacity FROM services WHERE id = ?"),
    byKey: db.prepare("SELECT id, customer_id FROM appointments WHERE company_id = ? AND idempotency_key = ?"),
    byPhone: db.prepare("SELECT id, company_id, name, email, phone, source, anonymity_reason, created_at, updated_at FROM customers WHERE company_id = ? AND phone = ? ORDER BY id LIMIT 1"),
    customer: db.prepare("INSERT INTO customers (company_id, name, email, phone, source, anonymity_reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
    appointment: db.prepare("INSERT INTO appointments (customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at, status, calcom_sync_status, sync_origin, metadata, sync_attempt_count, requires_manual_review, manual_review_flagged_at, review_reason, idempotency_key, booking_latency_us, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'confirmed', 'pending', 'retell', ?, 0, 0, NULL, NULL, ?, ?, ?, ?)"),
    job: db.prepare("INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt, max_attempts, run_at, lease_token, created_at, updated_at) VALUES (?, ?, 'calcom.create', 'available', 0, 4, ?, 0, ?, ?)"),
  };
  const book = db.transaction((i) => {
    const now = new Date();
    const nowS = dbTime(now);
    const call = q.call.get(`call_${i}`);
    q.branch.get(call.branch_id);
    const service = q.service.get(1);
    const starts = startOf(i);
    const key = `cb-${call.company_id}-${call.id}-1-${starts.getTime() / 1000}`;
    if (q.byKey.get(call.company_id, key)) throw new Error("already booked");
    const anonymous = call.from_number === "anonymous";
    const phone = anonymous
      ? `anonymous_${Math.floor(now / 1000)}_${crypto.createHash("md5").update(`Bench Caller${call.id}`).digest("hex").slice(0, 8)}`
      : call.from_number;
    let customer = anonymous ? undefined : q.byPhone.get(call.company_id, phone);
    const customerId = customer
      ? customer.id
      : q.customer.run(call.company_id, "Bench Caller", null, phone, anonymous ? "retell_webhook_anonymous" : "retell_webhook", anonymous ? "withheld_word" : null, nowS, nowS).lastInsertRowid;
    const metadata = JSON.stringify({ customer_name: "Bench Caller", customer_email: null, customer_phone: phone });
    const ends = new Date(starts.getTime() + service.duration_minutes * 60000);
    // The latency callbook keeps with every booking, measured the same way.
    const latency = (Date.now() - now.getTime()) * 1000;
    const id = q.appointment.run(customerId, call.company_id, call.branch_id, 1, call.id, dbTime(starts), dbTime(ends), metadata, key, latency, nowS, nowS).lastInsertRowid;
    q.job.run(id, call.company_id, nowS, nowS, nowS);
  });
  return book.immediate;
}

function measure(label, fn) {
  const lat = new Float64Array(N);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint();
    fn(i);
    lat[i] = Number(process.hrtime.bigint() - t) / 1000;
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort();
  const r = { rate: N / secs, p50: lat[Math.floor(N * 0.5)], p99: lat[Math.floor(N * 0.99)] };
  console.log(`  ${label.padEnd(36)} ${r.rate.toFixed(0).padStart(7)} bookings/s   p50 ${r.p50.toFixed(1).padStart(6)} µs   p99 ${r.p99.toFixed(1).padStart(7)} µs`);
  return r;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "callbook-node-bench-"));
for (const sync of ["normal", "full"]) {
  console.log(`\nNode ${process.version}, ${N} bookings each, synchronous=${sync.toUpperCase()}`);
  const hand = prepare(dir, `hand-${sync}`, sync);
  const addon = prepare(dir, `addon-${sync}`, sync);
  const byHand = handWritten(new Database(hand.file), sync);
  const r1 = measure("better-sqlite3, same SQL, by hand", byHand);
  const r2 = measure("callbook addon book()", (i) =>
    addon.book.book({ retellCallId: `call_${i}`, customerName: "Bench Caller", serviceId: 1, start: iso(startOf(i)) }),
  );
  console.log(`  ratio addon/hand-written: throughput ${(r2.rate / r1.rate).toFixed(2)}x, p50 ${(r2.p50 / r1.p50).toFixed(2)}x`);
}
// In memory: the addon's in-memory store (":memory:") next to better-sqlite3
// on an in-memory copy of the same database, same SQL by hand.
{
  console.log(`\nNode ${process.version}, ${N} bookings each, in memory`);
  const hand = prepare(dir, "hand-memory", "normal");
  const copy = new Database(hand.file);
  copy.pragma("journal_mode = DELETE"); // an in-memory copy cannot keep a WAL
  const byHand = handWritten(new Database(copy.serialize()), "off");
  copy.close();
  const addon = prepare(dir, ":memory:", "normal");
  const r1 = measure("better-sqlite3 :memory:, by hand", byHand);
  const r2 = measure("callbook addon book(), :memory:", (i) =>
    addon.book.book({ retellCallId: `call_${i}`, customerName: "Bench Caller", serviceId: 1, start: iso(startOf(i)) }),
  );
  console.log(`  ratio addon/hand-written: throughput ${(r2.rate / r1.rate).toFixed(2)}x, p50 ${(r2.p50 / r1.p50).toFixed(2)}x`);
}
fs.rmSync(dir, { recursive: true, force: true });
