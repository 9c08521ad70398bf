// checkAvailability through the addon against the fake Cal.com's /v2/slots:
// the answer is remembered for the call, a booking outside it is refused with
// the nearest alternatives, and the booking that keeps to it asks Cal.com nothing.
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeCalcom } = require("..");
const { open, eventTypes } = require("./fixture");

test("checkAvailability remembers the answer for the call", async () => {
  const fake = new FakeCalcom(eventTypes);
  const book = open();
  book.registerCall({ retellCallId: "call_avail", companyId: 1, branchId: 1, fromNumber: "anonymous" });
  const slots = await book.checkAvailability({ retellCallId: "call_avail", serviceId: 1, date: "2099-01-08", calcomUrl: fake.url });
  assert.equal(slots.date, "2099-01-08");
  assert.equal(slots.timeZone, "Europe/Berlin");
  assert.equal(slots.remembered, true);
  assert.equal(slots.slots.length, 16);
  assert.equal(slots.slots[0], "2099-01-08T08:00:00Z");
  const requests = fake.stats().requests;

  await assert.rejects(
    book.bookAsync({ retellCallId: "call_avail", customerName: "Erika", serviceId: 1, start: "2099-01-08T07:00:00Z" }),
    (e) => e.code === "slot_unavailable" && /08:00:00Z, 2099-01-08T08:30:00Z, 2099-01-08T09:00:00Z/.test(e.message),
  );
  const b = book.book({ retellCallId: "call_avail", customerName: "Erika", serviceId: 1, start: "2099-01-08T08:30:00Z" });
  assert.equal(b.startsAt, "2099-01-08T08:30:00Z");
  assert.equal(fake.stats().requests, requests, "the booking asked Cal.com nothing");

  const again = await book.checkAvailability({ serviceId: 1, date: "2099-01-08", calcomUrl: fake.url });
  assert.equal(again.cached, true);
  assert.ok(!again.slots.includes("2099-01-08T08:30:00Z"), "booked here, not offered again");
  await assert.rejects(book.checkAvailability({ serviceId: 1, date: "someday", calcomUrl: fake.url }), (e) => e.code === "invalid_date");
  await assert.rejects(book.checkAvailability({ serviceId: 1, date: "2099-01-08", calcomUrl: "http://127.0.0.1:9" }), (e) => e.code === "calcom_unavailable");
});
