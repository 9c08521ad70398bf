// One version everywhere: the workspace's `version` (cargo metadata on stdin)
// must be every crate's, every npm manifest's and lockfile's, the CLI's
// requirement on core, and have a CHANGELOG section. Prints the version;
// exits 1 listing every mismatch.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "../..");
const metadata = JSON.parse(fs.readFileSync(0, "utf8"));
const core = metadata.packages.find((p) => p.name === "callbook");
const version = core.version;
const problems = [];
const expect = (what, got) => {
  if (got !== version) problems.push(`${what} is ${got}, the workspace ${version}`);
};

for (const p of metadata.packages) expect(`crate ${p.name}`, p.version);
const cli = metadata.packages.find((p) => p.name === "callbook-cli");
expect("callbook-cli's requirement on callbook", cli.dependencies.find((d) => d.name === "callbook").req.replace(/^\^/, ""));

const json = (file) => JSON.parse(fs.readFileSync(path.join(root, file), "utf8"));
for (const dir of ["bindings-node", "bindings-wasm"]) {
  expect(`${dir}/package.json`, json(`${dir}/package.json`).version);
  const lock = json(`${dir}/package-lock.json`);
  expect(`${dir}/package-lock.json`, lock.version);
  expect(`${dir}/package-lock.json (root package)`, lock.packages[""].version);
}
for (const dir of fs.readdirSync(path.join(root, "bindings-node/npm"))) {
  expect(`bindings-node/npm/${dir}/package.json`, json(`bindings-node/npm/${dir}/package.json`).version);
}
const changelog = fs.readFileSync(path.join(root, "CHANGELOG.md"), "utf8");
if (!changelog.includes(`## [${version}]`)) problems.push(`CHANGELOG.md has no "## [${version}]" section`);

if (problems.length) {
  for (const p of problems) console.error(`version mismatch: ${p}`);
  process.exit(1);
}
console.log(version);
