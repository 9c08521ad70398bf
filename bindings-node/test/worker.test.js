// The sync worker on Rust threads inside Node, against the loopback fake
// Cal.com: events reach JS, the review queue works from JS.
const test = require("node:test");
const assert = require("node:assert/strict");
const { FakeCalcom } = require("..");
const { open, startAt, eventTypes, until } = require("./fixture");

test("startWorker syncs on Rust threads and reports every outcome to onSyncEvent", async () => {
  const fake = new FakeCalcom(eventTypes);
  const book = open();
  book.registerCall({ retellCallId: "call_w", companyId: 1, branchId: 1, fromNumber: "anonymous" });
  const events = [];
  book.onSyncEvent((e) => events.push(e));
  fake.failNext(400, "responses - {email}invalid_email");
  for (let i = 0; i < 20; i++) book.book({ retellCallId: "call_w", customerName: "W", start: startAt(i) });
  book.startWorker({ calcomUrl: fake.url, threads: 2, idleMs: 5 });
  assert.throws(() => book.startWorker({ calcomUrl: fake.url }), (e) => e.code === "worker_running");
  await until(() => events.length >= 20);
  await book.stopWorker();
  const outcomes = events.map((e) => e.outcome).sort();
  assert.equal(outcomes.filter((o) => o === "synced").length, 19);
  assert.equal(outcomes.filter((o) => o === "flagged").length, 1);
  assert.ok(events.every((e) => typeof e.appointmentId === "number" && e.kind === "calcom.create"));
  assert.equal(fake.stats().creates, 19);
  assert.equal(fake.stats().duplicatedKeys, 0);

  // The review queue from JS.
  const list = book.reviewList();
  assert.equal(list.length, 1);
  assert.equal(list[0].syncErrorCode, "calcom_validation");
  const retried = book.reviewRetry(list[0].id);
  assert.equal(retried.calcomSyncStatus, "pending");
  book.startWorker({ calcomUrl: fake.url, idleMs: 5 });
  await until(() => book.stats().appointments.synced === 20);
  await book.stopWorker();
  assert.throws(() => book.reviewResolve(list[0].id, "done"), (e) => e.code === "not_in_review");
  assert.equal(book.stats().manualReview, 0);
});

test("reviewResolve records the note", async () => {
  const fake = new FakeCalcom(eventTypes);
  const book = open();
  book.registerCall({ retellCallId: "call_r", companyId: 1, branchId: 1, fromNumber: "anonymous" });
  const b = book.book({ retellCallId: "call_r", customerName: "R", start: startAt(1) });
  fake.failNext(404, "Event type with id 1001 not found.");
  const events = [];
  book.onSyncEvent((e) => events.push(e));
  book.startWorker({ calcomUrl: fake.url, idleMs: 5 });
  await until(() => events.length === 1);
  await book.stopWorker();
  const resolved = book.reviewResolve(b.appointmentId, "event type deleted, booked by hand");
  assert.equal(resolved.reviewNote, "event type deleted, booked by hand");
  assert.equal(resolved.requiresManualReview, false);
  await book.stopWorker(); // stopping twice is fine
});
