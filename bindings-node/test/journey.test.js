// The rest of the call from Node: a caller finds, cancels and moves their
// own appointments (two steps: the question, then the change), a stranger
// is refused with a code, callbacks are filed and done, an operator forces.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { open } = require("./fixture");

function setUp() {
  const book = open();
  book.registerCall({ retellCallId: "call_max", companyId: 1, branchId: 1, fromNumber: "+49 151 2345678" });
  book.registerCall({ retellCallId: "call_max_again", companyId: 1, branchId: 1, fromNumber: "0151 2345678" });
  book.registerCall({ retellCallId: "call_withheld", companyId: 1, branchId: 1, fromNumber: "anonymous" });
  const booked = book.book({ retellCallId: "call_max", customerName: "Max", serviceId: 1, start: "2099-03-02T09:00:00Z" });
  return { book, booked };
}

test("a caller finds, moves and cancels their own appointment in two steps", () => {
  const { book, booked } = setUp();
  const context = book.callContext("call_max_again");
  assert.equal(context.knownCaller, true);
  assert.equal(context.services.length, 1);
  const found = book.findAppointments("call_max_again", "2099-03-02");
  assert.deepEqual(found.map((a) => a.id), [booked.appointmentId]);

  const asked = book.rescheduleAppointment({ retellCallId: "call_max_again", date: "2099-03-02", newDate: "2099-03-03", newTime: "11:30" });
  assert.equal(asked.needsConfirmation, true);
  assert.equal(asked.startsAt, "2099-03-03T10:30:00Z");
  assert.equal(book.findAppointments("call_max", null)[0].startsAt, "2099-03-02T09:00:00Z", "nothing moved yet");
  const moved = book.rescheduleAppointment({ retellCallId: "call_max_again", appointmentId: booked.appointmentId, newStart: "2099-03-03T10:30:00Z", confirmed: true });
  assert.equal(moved.previousStartsAt, "2099-03-02T09:00:00Z");
  const cancelled = book.cancelAppointment({ retellCallId: "call_max", appointmentId: booked.appointmentId, reason: "ill", confirmed: true });
  assert.equal(cancelled.status, "cancelled");
  const again = book.cancelAppointment({ retellCallId: "call_max", appointmentId: booked.appointmentId, confirmed: true });
  assert.equal(again.repeated, true, "Retell's retry answers the same");
});

test("a withheld number is refused with a code and can ask for a callback", () => {
  const { book, booked } = setUp();
  assert.throws(
    () => book.cancelAppointment({ retellCallId: "call_withheld", appointmentId: booked.appointmentId, confirmed: true }),
    (e) => e.code === "caller_not_verified",
  );
  assert.throws(() => book.findAppointments("call_withheld", null), (e) => e.code === "caller_not_verified");
  const filed = book.requestCallback({ retellCallId: "call_withheld", customerName: "Max", phone: "0151 2345678", reason: "cancel" });
  assert.equal(filed.phone, "+491512345678");
  assert.deepEqual(book.callbackList().map((c) => c.id), [filed.id]);
  const done = book.callbackDone(filed.id, "Ada");
  assert.equal(done.doneBy, "Ada");
  assert.equal(book.callbackList().length, 0);
  assert.equal(book.callbackList("all").length, 1);
  assert.throws(() => book.callbackList("later"), (e) => e.code === "invalid_argument");
});

test("operators search by phone and may go past the policy with force", () => {
  const { book, booked } = setUp();
  book.import({ companies: [{ id: 1, name: "Salon Berlin", calcom_api_key: "cal_test_node", policy: { max_reschedules: 0 } }] });
  assert.deepEqual(book.appointmentsByPhone(1, "+49 151 2345678").map((a) => a.id), [booked.appointmentId]);
  const move = { operator: "Ada", appointmentId: booked.appointmentId, newStart: "2099-03-05T09:00:00Z", confirmed: true };
  assert.throws(() => book.rescheduleAppointment(move), (e) => e.code === "reschedule_limit_reached");
  const forced = book.rescheduleAppointment({ ...move, force: true });
  assert.equal(forced.startsAt, "2099-03-05T09:00:00Z");
});

test("bookings made in Cal.com come home: pullFromCalcom, then calcomDrift", async () => {
  const { FakeCalcom } = require("..");
  const { eventTypes } = require("./fixture");
  const book = open();
  const fake = new FakeCalcom(eventTypes);
  fake.addBookingElsewhere(1001, "2099-02-01T09:00:00Z", { name: "Guest", email: "guest@example.com", phoneNumber: "+49 151 2345678" });
  fake.addBookingElsewhere(2001, "2099-02-01T10:00:00Z", { name: "Other" });
  const options = { calcomUrl: fake.url, daysAhead: 40000 };
  const pulled = await book.pullFromCalcom(options);
  assert.equal(pulled.imported, 2);
  assert.equal((await book.pullFromCalcom(options)).known, 2, "held once");
  assert.equal(book.appointmentsByPhone(1, "0151 2345678").length, 1);
  const drift = await book.calcomDrift(options);
  assert.deepEqual(drift.companies.map((c) => c.missingLocally.length), [0, 0]);
  await assert.rejects(book.pullFromCalcom({ companyId: 9 }), (e) => e.code === "company_not_found");
});
