// The webhook example over real HTTP on port 0: signed and unsigned,
// anonymous and known callers, malformed requests (4xx, nothing written).
const test = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { createServer } = require("./server");
const { open } = require("../../bindings-node/test/fixture");

const KEY = "key_retell_test";

function sign(body, key = KEY, ts = Date.now()) {
  const d = crypto.createHmac("sha256", key).update(body + String(ts)).digest("hex");
  return `v=${ts},d=${d}`;
}

async function withServer(fn) {
  const book = open();
  const server = createServer(book, { retellApiKey: KEY });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}/retell/function`;
  const post = async (body, headers = {}) => {
    const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });
    return { status: res.status, json: await res.json() };
  };
  try {
    await fn(post, book);
  } finally {
    server.close();
  }
}

const call = (id, from) => ({ call_id: id, call_type: "phone_call", direction: "inbound", from_number: from, to_number: "+49301234567" });

test("signed requests book anonymous and known callers and answer with a sentence", async () => {
  await withServer(async (post, book) => {
    const known = JSON.stringify({ name: "book_appointment", call: call("call_k", "+49 151 2345678"), args: { customer_name: "Jürgen Müller", date: "2099-01-08", time: "14:30" } });
    const a = await post(known, { "x-retell-signature": sign(known) });
    assert.equal(a.status, 200);
    assert.equal(a.json.ok, true);
    assert.match(a.json.message, /^You're booked for Thursday,? 8 January( at)? 14:30\./);
    assert.equal(typeof a.json.appointment_id, "number");
    // Retell retries: the same appointment.
    const again = await post(known, { "x-retell-signature": sign(known) });
    assert.equal(again.json.appointment_id, a.json.appointment_id);

    const anon = JSON.stringify({ name: "bookAppointment", call: call("call_a", "anonymous"), args: { customer_name: "José", start: "2099-01-09T10:00:00Z" } });
    const b = await post(anon, { "x-retell-signature": sign(anon) });
    assert.equal(b.json.ok, true);
    const stats = book.stats();
    assert.deepEqual([stats.customersKnown, stats.customersAnonymous, stats.appointments.pending], [1, 1, 2]);

    // "Args only": the call id travels in the args.
    const argsOnly = JSON.stringify({ call_id: "call_a", customer_name: "José", start: "2099-01-10T10:00:00Z" });
    assert.equal((await post(argsOnly, { "x-retell-signature": sign(argsOnly) })).json.ok, true);

    // A domain refusal is 200 with ok:false, so the agent can say it.
    const past = JSON.stringify({ name: "book_appointment", call: call("call_k", "+49 151 2345678"), args: { customer_name: "M", start: "2001-01-01T10:00:00Z" } });
    const r = await post(past, { "x-retell-signature": sign(past) });
    assert.deepEqual([r.status, r.json.ok, r.json.code], [200, false, "start_in_past"]);
  });
});

test("bad signatures are 401 and malformed requests 4xx, and nothing is written", async () => {
  await withServer(async (post, book) => {
    const body = JSON.stringify({ name: "book_appointment", call: call("call_z", "+4915123456789"), args: { customer_name: "Z", start: "2099-01-08T10:00:00Z" } });
    const cases = [
      [body, {}, 401, "bad_signature"],
      [body, { "x-retell-signature": sign(body, "wrong_key") }, 401, "bad_signature"],
      [body, { "x-retell-signature": sign(body, KEY, Date.now() - 6 * 60 * 1000) }, 401, "bad_signature"],
      [body.replace("Z", "Y"), { "x-retell-signature": sign(body) }, 401, "bad_signature"],
      ["{not json", { "x-retell-signature": sign("{not json") }, 400, "malformed_json"],
      ["null", { "x-retell-signature": sign("null") }, 400, "malformed_json"],
    ];
    const unknown = JSON.stringify({ name: "delete_everything", call: call("call_z", "x"), args: {} });
    cases.push([unknown, { "x-retell-signature": sign(unknown) }, 400, "unknown_function"]);
    const noCall = JSON.stringify({ name: "book_appointment", args: { customer_name: "Z" } });
    cases.push([noCall, { "x-retell-signature": sign(noCall) }, 400, "call_id_required"]);
    for (const [b, headers, status, code] of cases) {
      const r = await post(b, headers);
      assert.deepEqual([r.status, r.json.code], [status, code], `${code}: ${b.slice(0, 40)}`);
    }
    const big = "x".repeat(70 * 1024);
    assert.equal((await post(big, { "x-retell-signature": sign(big) })).status, 413);
    assert.equal(book.stats().appointments.pending, 0);
    assert.equal(book.stats().customersKnown + book.stats().customersAnonymous, 0);
  });
});
