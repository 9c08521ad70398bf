#!/bin/sh
# Builds pkg/node (wasm-bindgen target nodejs, for require) and pkg/web
# (target web, for browsers), each shrunk with binaryen's wasm-opt, and the
# ESM entry for Node beside pkg/node (the package's `import` condition).
# Needs: the wasm32-unknown-unknown target and wasm-bindgen-cli at the
# version of the wasm-bindgen crate (tests/run installs both).
set -eu
cd "$(dirname "$0")"
cargo build -p callbook-wasm --target wasm32-unknown-unknown --profile wasm --locked
wasm=../target/wasm32-unknown-unknown/wasm/callbook_wasm.wasm
for target in node web; do
    case $target in node) flag=nodejs ;; web) flag=web ;; esac
    wasm-bindgen --target "$flag" --out-dir "pkg/$target" "$wasm"
    node_modules/.bin/wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory \
        --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals "pkg/$target/callbook_wasm_bg.wasm" -o "pkg/$target/callbook_wasm_bg.wasm"
done
node scripts/esm-entry.js
size=$(wc -c < pkg/web/callbook_wasm_bg.wasm)
gz=$(gzip -9 -c pkg/web/callbook_wasm_bg.wasm | wc -c)
echo "callbook_wasm_bg.wasm: $size bytes, $gz gzipped"
