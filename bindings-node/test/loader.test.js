// index.js: which methods reject instead of throwing comes from index.d.ts
// (promise-methods.json, written by `npm run build`), not from a list of names.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { promiseMethods } = require("../scripts/promise-methods.js");
const { open } = require("./fixture");

const root = path.resolve(__dirname, "..");

test("promise-methods.json is what index.d.ts declares", () => {
  const fromDts = promiseMethods(fs.readFileSync(path.join(root, "index.d.ts"), "utf8"));
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(root, "promise-methods.json"), "utf8")), fromDts);
  assert.deepEqual(fromDts.Callbook.instance.sort(), ["agentAnswer", "bookAsync", "calcomDrift", "checkAvailability", "pullFromCalcom", "stopWorker"]);
  assert.deepEqual(fromDts.FakeCalcom, { instance: [], static: [] });
});

test("the d.ts reader finds Promise return types past callback arguments, and static ones", () => {
  const dts = [
    "export declare function later(): Promise<void>",
    "export declare class Thing {",
    "  constructor(a: string)",
    "  on(callback: (event: { a: number }) => Promise<void>): void",
    "  run(options?: any | undefined | null): Promise<{ done: boolean }>",
    "  static open(path: string): Promise<Thing>",
    "  get url(): string",
    "}",
  ].join("\n");
  assert.deepEqual(promiseMethods(dts), { Thing: { instance: ["run"], static: ["open"] } });
});

test("a Promise method whose argument napi refuses rejects with the code; a sync one throws it", async () => {
  const book = open();
  for (const name of promiseMethods(fs.readFileSync(path.join(root, "index.d.ts"), "utf8")).Callbook.instance) {
    let result;
    assert.doesNotThrow(() => {
      result = book[name](Symbol("not JSON"));
    }, name);
    assert.ok(result instanceof Promise, name);
    // stopWorker takes no argument (and resolves); the others refuse a symbol.
    await result.then(
      () => assert.equal(name, "stopWorker"),
      (e) => assert.equal(e.code, "invalid_argument", name),
    );
  }
  assert.throws(() => book.book(Symbol("not JSON")), (e) => e.code === "invalid_argument");
  assert.throws(() => book.registerCall(Symbol("not JSON")), (e) => e.code === "invalid_argument");
});
