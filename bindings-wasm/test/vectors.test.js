// The shared vectors in tests/vectors/ through the WASM module: the same
// answers as the Rust tests get from the core.
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const cb = require("../pkg/node/callbook_wasm.js");

const load = (name) =>
  JSON.parse(fs.readFileSync(path.join(__dirname, "../../tests/vectors", name), "utf8")).cases;

test("anonymous detection", () => {
  for (const c of load("anonymous.json")) {
    const got = cb.detectAnonymous(c.input);
    assert.deepEqual(got, { anonymous: c.reason !== null, reason: c.reason }, JSON.stringify(c.input));
  }
});

test("email normalisation", () => {
  for (const c of load("email.json")) {
    assert.equal(cb.normalizeEmail(c.input), c.output, JSON.stringify(c.input));
  }
});

test("placeholder phones (md5 computed independently)", () => {
  for (const c of load("placeholder_phone.json")) {
    assert.equal(cb.placeholderPhone(c.name, c.call_db_id, c.unix_seconds), c.expected);
  }
});

test("booking request validation: every problem, in order", () => {
  for (const c of load("booking_request.json")) {
    const got = cb.validateBookingRequest(c.request).map(({ field, code }) => ({ field, code }));
    assert.deepEqual(got, c.problems, c.name);
    for (const p of cb.validateBookingRequest(c.request)) assert.ok(p.message.length > 0);
  }
});

test("Cal.com payloads", () => {
  for (const c of load("calcom_payload.json")) {
    if (c.error) {
      assert.throws(() => cb.buildCalcomPayload(c.input), (e) => e instanceof Error && e.code === c.error, c.name);
    } else {
      assert.deepEqual(cb.buildCalcomPayload(c.input), c.payload, c.name);
    }
  }
});

test("Retell signatures", () => {
  for (const c of load("retell_signature.json")) {
    assert.equal(cb.verifyRetellSignature(c.body, c.header, c.apiKey, c.nowMs), c.valid, c.name);
  }
});

test("bad arguments throw an Error with a code", () => {
  assert.throws(() => cb.validateBookingRequest("not an object"), (e) => e instanceof Error && e.code === "invalid_argument");
  assert.throws(() => cb.buildCalcomPayload({}), (e) => e.code === "invalid_argument");
});
