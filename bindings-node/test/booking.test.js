// Booking through the addon: camelCase in and out, idempotency, errors with
// codes (sync and async), and 1,000 concurrent bookAsync calls.
const test = require("node:test");
const assert = require("node:assert/strict");
const { open, startAt } = require("./fixture");

test("book returns the promised fields in camelCase", () => {
  const book = open();
  book.registerCall({ retellCallId: "call_known", toNumber: "+49301234567", fromNumber: "0151 2345678" });
  const b = book.book({ retellCallId: "call_known", customerName: "Max", customerEmail: "max at example dot com", start: "2099-01-08T13:00:00+01:00" });
  assert.deepEqual(Object.keys(b).sort(), ["anonymous", "appointmentId", "calcomSyncStatus", "customerId", "customerPhone", "startsAt", "status"]);
  assert.equal(b.startsAt, "2099-01-08T12:00:00Z");
  assert.equal(b.customerPhone, "+491512345678");
  assert.equal(b.anonymous, false);
  assert.equal(b.status, "confirmed");
  assert.equal(b.calcomSyncStatus, "pending");
  // Retell retries a timed-out function call: the same appointment.
  assert.deepEqual(book.book({ retellCallId: "call_known", customerName: "Max", start: "2099-01-08T12:00:00Z" }), b);
  // Date words in the branch's zone (service left out: the company has one).
  const d = book.book({ retellCallId: "call_known", customerName: "Max", date: "2099-02-03", time: "09:30" });
  assert.equal(d.startsAt, "2099-02-03T08:30:00Z");
  assert.equal(d.customerId, b.customerId);
});

test("errors carry the core's code, thrown and rejected alike", async () => {
  const book = open();
  book.registerCall({ retellCallId: "call_x", companyId: 1, branchId: 1, fromNumber: "anonymous" });
  const cases = [
    [{ retellCallId: "nope", customerName: "A", start: startAt(1) }, "call_not_found"],
    [{ retellCallId: "call_x", customerName: "A", start: "2001-01-01T10:00:00Z" }, "start_in_past"],
    [{ retellCallId: "call_x", customerName: "", start: startAt(1) }, "customer_name_required"],
    [{ retellCallId: "call_x", customerName: "A", serviceId: 2, start: startAt(1) }, "service_not_in_company"],
  ];
  for (const [request, code] of cases) {
    assert.throws(() => book.book(request), (e) => e instanceof Error && e.code === code, code);
    await assert.rejects(book.bookAsync(request), (e) => e instanceof Error && e.code === code, code);
  }
  assert.throws(() => book.book("not an object"), (e) => e.code === "invalid_argument");
  await assert.rejects(book.bookAsync(42), (e) => e.code === "invalid_argument");
  assert.equal(book.stats().appointments.pending, 0, "nothing written");
});

test("1,000 concurrent bookAsync calls: all resolved, each appointment exactly once", async () => {
  const book = open({ synchronous: "normal" });
  book.registerCall({ retellCallId: "call_busy", companyId: 1, branchId: 1, fromNumber: "+4915123456789" });
  const requests = Array.from({ length: 1000 }, (_, i) => ({ retellCallId: "call_busy", customerName: "Busy", start: startAt(i) }));
  // 200 of them sent twice at once, as a retrying voice platform would.
  const all = requests.concat(requests.slice(0, 200));
  const results = await Promise.all(all.map((r) => book.bookAsync(r)));
  assert.equal(results.length, 1200);
  const ids = new Set(results.map((b) => b.appointmentId));
  assert.equal(ids.size, 1000);
  for (let i = 0; i < 200; i++) assert.equal(results[1000 + i].appointmentId, results[i].appointmentId);
  const stats = book.stats();
  assert.equal(stats.appointments.pending, 1000);
  assert.equal(stats.jobs.available, 1000);
  assert.equal(stats.customersKnown, 1);
});
