// A directory for the tests: one company with a Cal.com key and one without.
"use strict";
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { Callbook } = require("..");

const DIRECTORY = {
  companies: [
    { id: 1, name: "Salon Berlin", calcom_api_key: "cal_test_node" },
    { id: 2, name: "Praxis Hamburg", calcom_api_key: "cal_test_node_2" },
  ],
  branches: [
    { id: 1, company_id: 1, name: "Mitte", timezone: "Europe/Berlin", country: "DE", phone_number: "+49 30 1234567" },
    { id: 2, company_id: 2, name: "Altona", timezone: "Europe/Berlin", country: "DE", phone_number: "+49 40 1234567" },
  ],
  services: [
    { id: 1, company_id: 1, name: "Haircut", calcom_event_type_id: 1001, duration_minutes: 30 },
    { id: 2, company_id: 2, name: "Checkup", calcom_event_type_id: 2001, duration_minutes: 45 },
  ],
};

/** The event types the fake Cal.com holds for the directory's services. */
const eventTypes = [
  { id: 1001, lengthMinutes: 30 },
  { id: 2001, lengthMinutes: 45 },
];

function tempDb() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "callbook-node-"));
  return path.join(dir, "test.db");
}

/** The tests book in 2099 (always in the future): past the default 365-day horizon. */
const HORIZON_DAYS = 40000;

function open(options) {
  const book = new Callbook(tempDb(), { horizonDays: HORIZON_DAYS, ...options });
  book.import(DIRECTORY);
  return book;
}

/** An ISO start `days` ahead at a distinct half hour `slot`. */
function startAt(slot, days = 30) {
  const t = new Date(Date.UTC(2099, 0, 1, 8, 0, 0) + days * 86400000 + slot * 1800000);
  return t.toISOString().replace(".000Z", "Z");
}

/** Resolves once `condition()` holds (polls every 10 ms; fails after `ms`). */
async function until(condition, ms = 10000) {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

module.exports = { DIRECTORY, HORIZON_DAYS, eventTypes, open, tempDb, startAt, until };
