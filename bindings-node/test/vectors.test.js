// The shared vectors in tests/vectors/ through the addon: the answers the
// Rust tests and the WASM module get.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const cb = require("..");

const load = (name) => JSON.parse(fs.readFileSync(path.join(__dirname, "../../tests/vectors", name), "utf8")).cases;

test("anonymous detection", () => {
  for (const c of load("anonymous.json")) {
    assert.deepEqual(cb.detectAnonymous(c.input), { anonymous: c.reason !== null, reason: c.reason }, JSON.stringify(c.input));
  }
});

test("email normalisation", () => {
  for (const c of load("email.json")) assert.equal(cb.normalizeEmail(c.input), c.output, JSON.stringify(c.input));
});

test("placeholder phones", () => {
  for (const c of load("placeholder_phone.json")) assert.equal(cb.placeholderPhone(c.name, c.call_db_id, c.unix_seconds), c.expected);
});

test("booking request validation", () => {
  for (const c of load("booking_request.json")) {
    assert.deepEqual(cb.validateBookingRequest(c.request).map(({ field, code }) => ({ field, code })), c.problems, c.name);
  }
});

test("Cal.com payloads", () => {
  for (const c of load("calcom_payload.json")) {
    if (c.error) assert.throws(() => cb.buildCalcomPayload(c.input), (e) => e.code === c.error, c.name);
    else assert.deepEqual(cb.buildCalcomPayload(c.input), c.payload, c.name);
  }
});

test("Retell signatures, on strings and on raw Buffers", () => {
  for (const c of load("retell_signature.json")) {
    assert.equal(cb.verifyRetellSignature(c.body, c.header, c.apiKey, c.nowMs), c.valid, c.name);
    assert.equal(cb.verifyRetellSignature(Buffer.from(c.body, "utf8"), c.header, c.apiKey, c.nowMs), c.valid, c.name);
  }
});

test("anonymous detection reaches the booking: withheld callers are never matched", () => {
  const { open, startAt } = require("./fixture");
  const book = open();
  let slot = 0;
  for (const c of load("anonymous.json").filter((c) => c.reason !== null)) {
    const id = `call_vec_${slot}`;
    book.registerCall({ retellCallId: id, companyId: 1, branchId: 1, fromNumber: c.input });
    const b = book.book({ retellCallId: id, customerName: "Same Name", customerEmail: "same@example.com", start: startAt(slot++) });
    assert.equal(b.anonymous, true, JSON.stringify(c.input));
    assert.match(b.customerPhone, /^anonymous_\d+_[0-9a-f]{8}$/);
  }
  const stats = book.stats();
  assert.equal(stats.customersAnonymous, slot, "one new customer per anonymous booking");
});
