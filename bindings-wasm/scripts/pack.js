// `npm run pack`: writes dist/callbook-wasm-<version>.tgz, the npm package
// with pkg/node (require, and import through its ESM entry) and pkg/web
// (browser) behind `exports`. The checkout's package.json stays private; the
// published one leaves out what only building and testing need.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");
const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));

// Every file the exports map names must be there: a stale or half build would pack a broken package.
const targets = JSON.stringify(manifest.exports).match(/\.\/pkg\/[^"]+/g);
for (const file of targets) {
  if (!fs.existsSync(path.join(root, file))) {
    console.error(`pack: ${file} is missing: run npm run build first`);
    process.exit(1);
  }
}

fs.rmSync(dist, { recursive: true, force: true });
const stage = path.join(dist, ".stage", manifest.name);
fs.mkdirSync(stage, { recursive: true });
for (const dir of manifest.files) fs.cpSync(path.join(root, dir), path.join(stage, dir), { recursive: true });
fs.copyFileSync(path.join(root, "README.md"), path.join(stage, "README.md"));
const licenses = ["LICENSE-MIT", "LICENSE-APACHE"];
for (const license of licenses) fs.copyFileSync(path.join(root, "..", license), path.join(stage, license));

const published = { ...manifest, files: [...manifest.files, ...licenses] };
for (const key of ["private", "scripts", "devDependencies"]) delete published[key];
fs.writeFileSync(path.join(stage, "package.json"), JSON.stringify(published, null, 2) + "\n");

const [packed] = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", dist], { cwd: stage, encoding: "utf8" }));
const size = fs.statSync(path.join(dist, packed.filename)).size;
console.log(`dist/${packed.filename}: ${size} bytes (${packed.entryCount} files, ${packed.unpackedSize} unpacked)`);
fs.rmSync(path.join(dist, ".stage"), { recursive: true, force: true });
