// Writes pkg/node/callbook_wasm.mjs (and its .d.mts): the package's `import`
// entry for Node. wasm-bindgen's nodejs build is CommonJS and loads the .wasm
// synchronously, which ESM can reuse; the names come from the built module
// itself, so a new export needs no edit here.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const dir = path.resolve(__dirname, "../pkg/node");
const names = Object.keys(require(path.join(dir, "callbook_wasm.js")));
if (names.length === 0) throw new Error("pkg/node/callbook_wasm.js exports nothing");
fs.writeFileSync(
  path.join(dir, "callbook_wasm.mjs"),
  `// The ESM entry for Node: the CommonJS build, re-exported by name.\n` +
    `import cjs from "./callbook_wasm.js";\n\n` +
    `export const { ${names.join(", ")} } = cjs;\n`,
);
fs.writeFileSync(path.join(dir, "callbook_wasm.d.mts"), `export * from "./callbook_wasm.js";\n`);
