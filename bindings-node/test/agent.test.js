// The rest of the call through the core's own agent and webhook handler:
// agentAnswer answers Retell's function calls (signature, parsing, booking,
// the sentence), calcomWebhook applies Cal.com's changes, and
// appointmentChanges shows who changed what.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { FakeCalcom } = require("..");
const { open, eventTypes, until } = require("./fixture");

const KEY = "key_node_agent";
const WHSEC = "whsec_node";

function signRetell(body, ts = Date.now()) {
  const d = crypto.createHmac("sha256", KEY).update(body + String(ts)).digest("hex");
  return `v=${ts},d=${d}`;
}

const call = (id, from) => ({ call_id: id, direction: "inbound", from_number: from, to_number: "+49301234567" });

test("agentAnswer books, finds and refuses as serve does, off the event loop", async () => {
  const book = open({ retellApiKey: KEY });
  const body = JSON.stringify({
    name: "book_appointment",
    call: call("call_agent_1", "+49 151 2345678"),
    args: { customer_name: "Max", start: "2099-03-02T09:00:00Z" },
  });
  const booked = await book.agentAnswer(body, signRetell(body));
  assert.equal(booked.httpStatus, 200);
  assert.equal(booked.function, "book_appointment");
  assert.equal(booked.body.ok, true);
  assert.equal(typeof booked.body.message, "string");
  assert.equal(booked.body.starts_at, "2099-03-02T09:00:00Z", "the body goes to Retell as is (snake_case)");

  // A Buffer body, another call of the same number: it finds the appointment.
  const find = JSON.stringify({ name: "find_appointments", call: call("call_agent_2", "0151 2345678"), args: {} });
  const found = await book.agentAnswer(Buffer.from(find), signRetell(find));
  assert.deepEqual(found.body.appointments.map((a) => a.appointment_id), [booked.body.appointment_id]);

  // Refusals are answers, not exceptions; nothing is written.
  const before = book.stats();
  assert.equal((await book.agentAnswer(body, "v=1,d=00")).httpStatus, 401);
  assert.equal((await book.agentAnswer("{", signRetell("{"))).httpStatus, 400);
  const args = JSON.stringify({ call_id: "call_agent_1", customer_name: "Max", start: "2099-03-02T09:00:00Z" });
  const argsOnly = await book.agentAnswer(args, signRetell(args), "book_appointment");
  assert.equal(argsOnly.body.appointment_id, booked.body.appointment_id, "a retry answers the same appointment");
  assert.deepEqual(book.stats(), before);

  // A promise-returning method rejects, whatever the failure.
  await assert.rejects(open().agentAnswer(body, signRetell(body)), (e) => e.code === "not_configured");
  assert.throws(() => open({ retellApiKey: 5 }), (e) => e.code === "invalid_argument");
});

test("calcomWebhook applies a cancel made in Cal.com once; appointmentChanges shows it", async () => {
  const fake = new FakeCalcom(eventTypes);
  const book = open();
  book.import({ companies: [{ id: 1, name: "Salon Berlin", calcom_api_key: "cal_test_node", calcom_webhook_secret: WHSEC }] });
  book.registerCall({ retellCallId: "call_hook", companyId: 1, branchId: 1, fromNumber: "+49 151 7654321" });
  const booked = book.book({ retellCallId: "call_hook", customerName: "Eva", start: "2099-04-01T09:00:00Z" });
  book.startWorker({ calcomUrl: fake.url, idleMs: 5 });
  await until(() => book.stats().appointments.synced === 1);
  await book.stopWorker();
  const uid = book.findAppointments("call_hook", null)[0].calcomV2BookingUid;
  assert.ok(uid);

  const delivery = JSON.stringify({
    triggerEvent: "BOOKING_CANCELLED",
    createdAt: new Date().toISOString(),
    payload: { uid, cancellationReason: "moved away" },
  });
  const signature = crypto.createHmac("sha256", WHSEC).update(delivery).digest("hex");
  const applied = book.calcomWebhook(1, Buffer.from(delivery), signature);
  assert.equal(applied.result, "cancelled");
  assert.deepEqual(applied.appointmentIds, [booked.appointmentId]);
  assert.equal(book.calcomWebhook(1, delivery, signature).result, "already_applied", "a redelivery writes nothing");
  assert.throws(() => book.calcomWebhook(1, delivery, "00"), (e) => e.code === "bad_signature");
  assert.throws(() => book.calcomWebhook(2, delivery, signature), (e) => e.code === "webhook_not_configured");

  const changes = book.appointmentChanges(booked.appointmentId);
  assert.equal(changes.length, 1);
  assert.equal(changes[0].kind, "cancel");
  assert.equal(changes[0].reason, "moved away");
  assert.throws(() => book.appointmentChanges(999), (e) => e.code === "appointment_not_found");
});
