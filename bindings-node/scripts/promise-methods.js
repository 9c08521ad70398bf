// Writes promise-methods.json from index.d.ts (which `napi build` has just
// generated from the Rust source): per class, the instance and static methods
// whose declared return type is a Promise. index.js turns synchronous throws
// of exactly those into rejections, so adding an async method needs no edit there.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

function promiseMethods(dts) {
  const classes = {};
  let current = null;
  for (const line of dts.split("\n")) {
    const open = line.match(/^export declare class (\w+)\b.*\{\s*$/);
    if (open) {
      current = classes[open[1]] = { instance: [], static: [] };
      continue;
    }
    if (/^\}/.test(line)) current = null;
    const member = current && line.match(/^\s+(static\s+)?(\w+)\(/);
    if (!member || member[2] === "constructor") continue;
    // The return type follows the parenthesis that closes the arguments
    // (arguments may hold callback types with parentheses of their own).
    let depth = 0;
    let end = line.indexOf("(");
    for (; end < line.length; end++) {
      if (line[end] === "(") depth++;
      else if (line[end] === ")" && --depth === 0) break;
    }
    const returns = line.slice(end + 1).replace(/^\s*:\s*/, "");
    if (returns.startsWith("Promise<")) (member[1] ? current.static : current.instance).push(member[2]);
  }
  return classes;
}

if (require.main === module) {
  const root = path.resolve(__dirname, "..");
  const classes = promiseMethods(fs.readFileSync(path.join(root, "index.d.ts"), "utf8"));
  // A d.ts whose format changed would otherwise leave every method synchronous without a word.
  if (Object.keys(classes).length === 0) throw new Error("index.d.ts declares no class: has napi's output format changed?");
  fs.writeFileSync(path.join(root, "promise-methods.json"), JSON.stringify(classes, null, 2) + "\n");
  for (const [name, m] of Object.entries(classes)) console.log(`${name}: ${[...m.instance, ...m.static.map((s) => `static ${s}`)].join(", ") || "no promise"}`);
}

module.exports = { promiseMethods };
