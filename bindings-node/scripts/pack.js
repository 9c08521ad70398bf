// `npm run pack`: writes into dist/ the npm tarballs napi-rs projects publish:
// `callbook` (the loader, index.d.ts; optionalDependencies on every platform
// package in npm/, at the same version) and the platform package of this
// machine (npm/<platform>/ with the built addon, stripped). The checkout's
// package.json stays private and free of optionalDependencies, so `npm ci`
// here never asks the registry for a platform package.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { execFileSync } = require("node:child_process");
const { platform } = require("../platform.js");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");
const readJson = (file) => JSON.parse(fs.readFileSync(file, "utf8"));

function fail(message) {
  console.error(`pack: ${message}`);
  process.exit(1);
}

const loader = readJson(path.join(root, "package.json"));
const platforms = fs.readdirSync(path.join(root, "npm")).map((dir) => ({ dir, manifest: readJson(path.join(root, "npm", dir, "package.json")) }));
for (const { dir, manifest } of platforms) {
  // The loader pins its platform packages to its own version: a mismatch would not install.
  if (manifest.version !== loader.version) fail(`npm/${dir}/package.json is ${manifest.version}, package.json ${loader.version}`);
  if (manifest.name !== `${loader.name}-${dir}`) fail(`npm/${dir}/package.json is named ${manifest.name}, not ${loader.name}-${dir}`);
}
const here = platforms.find((p) => p.dir === platform());
if (!here) fail(`no platform package for this machine (${platform()}) in npm/`);
const addon = path.join(root, here.manifest.main);
if (!fs.existsSync(addon)) fail(`${here.manifest.main} is missing: run npm run build first`);
for (const file of loader.files) if (!fs.existsSync(path.join(root, file))) fail(`${file} is missing: run npm run build first`);

fs.rmSync(dist, { recursive: true, force: true });
const stage = path.join(dist, ".stage");

const LICENSES = ["LICENSE-MIT", "LICENSE-APACHE"];

// The repository's license files, listed in `files` (npm adds only a file named LICENSE on its own).
function addLicenses(into, manifest) {
  for (const license of LICENSES) fs.copyFileSync(path.join(root, "..", license), path.join(into, license));
  return { ...manifest, files: [...manifest.files, ...LICENSES] };
}

// The loader package: the checkout's manifest less what only building needs.
const loaderDir = path.join(stage, loader.name);
fs.mkdirSync(loaderDir, { recursive: true });
for (const file of [...loader.files, "README.md"]) fs.copyFileSync(path.join(root, file), path.join(loaderDir, file));
const published = addLicenses(loaderDir, loader);
for (const key of ["private", "scripts", "devDependencies", "allowScripts", "napi"]) delete published[key];
published.optionalDependencies = Object.fromEntries(platforms.map(({ manifest }) => [manifest.name, manifest.version]));
fs.writeFileSync(path.join(loaderDir, "package.json"), JSON.stringify(published, null, 2) + "\n");

// The platform package: the release build carries debug info (for profiling); users get it stripped.
const platformDir = path.join(stage, here.manifest.name);
fs.mkdirSync(platformDir, { recursive: true });
fs.copyFileSync(path.join(root, "npm", here.dir, "README.md"), path.join(platformDir, "README.md"));
const platformManifest = addLicenses(platformDir, here.manifest);
fs.writeFileSync(path.join(platformDir, "package.json"), JSON.stringify(platformManifest, null, 2) + "\n");
execFileSync("strip", ["--strip-all", "-o", path.join(platformDir, here.manifest.main), addon]);

for (const dir of [loaderDir, platformDir]) {
  const [packed] = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", dist], { cwd: dir, encoding: "utf8" }));
  const size = fs.statSync(path.join(dist, packed.filename)).size;
  console.log(`dist/${packed.filename}: ${size} bytes (${packed.entryCount} files, ${packed.unpackedSize} unpacked)`);
}
fs.rmSync(stage, { recursive: true, force: true });
