// The addon on the database servers: `new Callbook(url)` with a postgres://
// or mysql:// URL books, books concurrently and counts like on SQLite.
const test = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const { Callbook } = require("..");
const { DIRECTORY, HORIZON_DAYS, startAt } = require("./fixture");

const SERVERS = [
  { kind: "postgres", drop: " WITH (FORCE)", url: (db) => `postgres://postgres@127.0.0.1:5432/${db}`, sql: (s) => execFileSync("psql", ["-h", "127.0.0.1", "-U", "postgres", "-qc", s]) },
  { kind: "mysql", drop: "", url: (db) => `mysql://root@127.0.0.1:3306/${db}`, sql: (s) => execFileSync("mariadb", ["-h", "127.0.0.1", "-u", "root", "-e", s]) },
];

for (const server of SERVERS) {
  test(`Callbook on ${server.kind} by URL`, async () => {
    const db = `cb_node_${server.kind}_${process.pid}`;
    server.sql(`CREATE DATABASE ${db}`);
    try {
      const book = new Callbook(server.url(db), { horizonDays: HORIZON_DAYS });
      book.import(DIRECTORY);
      book.registerCall({ retellCallId: "call_srv", companyId: 1, branchId: 1, fromNumber: "0151 2345678" });
      const first = book.book({ retellCallId: "call_srv", customerName: "Max", start: startAt(0) });
      assert.equal(first.calcomSyncStatus, "pending");
      const many = await Promise.all(Array.from({ length: 50 }, (_, i) => book.bookAsync({ retellCallId: "call_srv", customerName: "Max", start: startAt(i) })));
      assert.equal(many[0].appointmentId, first.appointmentId, "the same booking again is the first one");
      assert.equal(new Set(many.map((b) => b.appointmentId)).size, 50);
      const stats = book.stats();
      assert.equal(stats.appointments.pending, 50);
      assert.equal(stats.customersKnown, 1);
      assert.throws(() => book.book({ retellCallId: "nope", customerName: "X", start: startAt(1) }), (e) => e.code === "call_not_found");
    } finally {
      server.sql(`DROP DATABASE IF EXISTS ${db}${server.drop}`);
    }
  });
}
