// validateBookingRequest per call in Node (goal: under 20 µs), next to a
// baseline in the same run: JSON.stringify of the same request.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const cb = require("../pkg/node/callbook_wasm.js");

const requests = [
  { retellCallId: "call_1", customerName: "Jürgen Müller", serviceId: 1, start: "2030-01-08T13:00:00Z" },
  { retellCallId: "call_1", customerName: "Jane", date: "morgen", time: "14:30", customerEmail: "jane at example dot com" },
  { retellCallId: "", customerName: " ", date: "someday", time: "25:99" },
];

function measure(label, fn, n) {
  for (let i = 0; i < 2000; i++) fn(requests[i % requests.length]);
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(requests[i % requests.length]);
  const us = Number(process.hrtime.bigint() - t) / 1000 / n;
  console.log(`  ${label.padEnd(40)} ${us.toFixed(2)} µs per call`);
  return us;
}

const n = process.argv.includes("--quick") ? 20000 : 200000;
console.log("validateBookingRequest in Node (WASM)");
const wasm = measure("validateBookingRequest", (r) => cb.validateBookingRequest(r), n);
const base = measure("baseline: JSON.stringify(request)", (r) => JSON.stringify(r), n);
console.log(`  ratio: ${(wasm / base).toFixed(1)}x the baseline`);
