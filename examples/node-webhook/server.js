// A Retell custom-function endpoint on plain node:http, booking through the
// callbook addon. Run: RETELL_API_KEY=... node server.js [port] [db]
"use strict";
const http = require("node:http");
const { Callbook, verifyRetellSignature } = require("../../bindings-node");

const MAX_BODY = 64 * 1024;
const FUNCTIONS = new Set(["book_appointment", "bookAppointment"]);

function reply(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** The sentence the voice agent speaks back. */
function sentence(booking, timeZone) {
  const when = new Intl.DateTimeFormat("en-GB", {
    timeZone, weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit",
  }).format(new Date(booking.startsAt));
  return `You're booked for ${when}. We look forward to seeing you.`;
}

function handle(book, options, raw, req, res) {
  const header = req.headers["x-retell-signature"] || "";
  if (!verifyRetellSignature(raw, header, options.retellApiKey, options.now())) {
    return reply(res, 401, { ok: false, code: "bad_signature", message: "invalid or stale x-retell-signature" });
  }
  let body;
  try {
    body = JSON.parse(raw.toString("utf8"));
  } catch {
    return reply(res, 400, { ok: false, code: "malformed_json", message: "the body is not JSON" });
  }
  if (body === null || typeof body !== "object") {
    return reply(res, 400, { ok: false, code: "malformed_json", message: "the body is not an object" });
  }
  // With Retell's "args only" option the body is the args, holding call_id.
  const argsOnly = !("args" in body);
  const args = argsOnly ? body : body.args || {};
  const name = argsOnly ? "book_appointment" : body.name;
  if (!FUNCTIONS.has(name)) {
    return reply(res, 400, { ok: false, code: "unknown_function", message: `unknown function ${JSON.stringify(name)}` });
  }
  const call = body.call || {};
  const callId = call.call_id || args.call_id;
  if (!callId) return reply(res, 400, { ok: false, code: "call_id_required", message: "no call id" });
  try {
    if (call.call_id) {
      book.registerCall({ retellCallId: call.call_id, fromNumber: call.from_number, toNumber: call.to_number, direction: call.direction });
    }
    const booking = book.book({
      retellCallId: callId,
      customerName: args.customer_name || "",
      customerEmail: args.customer_email,
      serviceId: args.service_id,
      start: args.start,
      date: args.date,
      time: args.time,
    });
    reply(res, 200, { ok: true, message: sentence(booking, options.timeZone), appointment_id: booking.appointmentId });
  } catch (e) {
    if (!e.code) throw e;
    // A domain refusal: 200, so the agent can tell the caller.
    reply(res, 200, { ok: false, code: e.code, message: e.message });
  }
}

function createServer(book, options) {
  const opts = { timeZone: "Europe/Berlin", now: Date.now, ...options };
  return http.createServer((req, res) => {
    req.setTimeout(10_000);
    if (req.method !== "POST" || req.url !== "/retell/function") return reply(res, 404, { ok: false, code: "not_found" });
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reply(res, 413, { ok: false, code: "body_too_large" });
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on("end", () => {
      if (size > MAX_BODY) return;
      try {
        handle(book, opts, Buffer.concat(chunks), req, res);
      } catch (e) {
        reply(res, 500, { ok: false, code: "internal", message: "internal error" });
      }
    });
  });
}

module.exports = { createServer };

if (require.main === module) {
  const port = Number(process.argv[2] || 8080);
  const book = new Callbook(process.argv[3] || "callbook.db");
  const server = createServer(book, { retellApiKey: process.env.RETELL_API_KEY || "" });
  server.listen(port, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${server.address().port}/retell/function`));
}
