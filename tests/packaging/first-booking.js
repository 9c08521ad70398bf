// The first thing a user does after `npm install`: open a database, import a
// directory, register a call and book. tests/packaging/run times install plus
// this script (a fresh process: loading the addon counts too).
"use strict";
const os = require("node:os");
const path = require("node:path");
const fs = require("node:fs");
const { Callbook } = require("callbook");

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "callbook-first-"));
const book = new Callbook(path.join(dir, "callbook.db"));
book.import({
  companies: [{ id: 1, name: "Salon Berlin", calcom_api_key: "cal_test" }],
  branches: [{ id: 1, company_id: 1, name: "Mitte", timezone: "Europe/Berlin", country: "DE", phone_number: "+49 30 1234567" }],
  services: [{ id: 1, company_id: 1, name: "Haircut", calcom_event_type_id: 1001, duration_minutes: 30 }],
});
book.registerCall({ retellCallId: "call_first", fromNumber: "0151 2345678", toNumber: "+49301234567" });
const booking = book.book({ retellCallId: "call_first", customerName: "Max", serviceId: 1, date: "tomorrow", time: "14:30" });
if (booking.status !== "confirmed" || booking.customerPhone !== "+491512345678") throw new Error(`unexpected booking ${JSON.stringify(booking)}`);
console.log(JSON.stringify(booking));
fs.rmSync(dir, { recursive: true, force: true });
