// The WASM package by `import` in the fresh project (tests/packaging/run):
// the `import` condition gives Node's ESM entry, with the same answers.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { detectAnonymous, normalizeEmail, validateBookingRequest, verifyRetellSignature } from "callbook-wasm";

const require = createRequire(import.meta.url);
const vectors = (name) => JSON.parse(fs.readFileSync(new URL(`./vectors/${name}`, import.meta.url), "utf8")).cases;

test("import resolves to the ESM entry and answers like require", () => {
  assert.match(fileURLToPath(import.meta.resolve("callbook-wasm")), /node_modules\/callbook-wasm\/pkg\/node\/callbook_wasm\.mjs$/);
  const cjs = require("callbook-wasm");
  for (const c of vectors("anonymous.json")) {
    assert.deepEqual(detectAnonymous(c.input), { anonymous: c.reason !== null, reason: c.reason }, JSON.stringify(c.input));
  }
  for (const c of vectors("email.json")) assert.equal(normalizeEmail(c.input), cjs.normalizeEmail(c.input));
  for (const c of vectors("retell_signature.json")) assert.equal(verifyRetellSignature(c.body, c.header, c.apiKey, c.nowMs), c.valid, c.name);
  assert.deepEqual(validateBookingRequest({ retellCallId: "call_1", customerName: "", date: "someday", time: "10:00" }).map((p) => p.code), [
    "customer_name_required",
    "invalid_date",
  ]);
});

test("the installed package's browser entry is wasm-bindgen's web build", async () => {
  const manifest = JSON.parse(fs.readFileSync(new URL("./node_modules/callbook-wasm/package.json", import.meta.url), "utf8"));
  const web = new URL(`./node_modules/callbook-wasm/${manifest.exports["."].browser.default}`, import.meta.url);
  assert.match(fs.readFileSync(web, "utf8"), /__wbg_init as default/);
  assert.equal(import.meta.resolve("callbook-wasm/web"), web.href);
});
