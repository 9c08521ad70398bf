// This machine's platform in napi-rs's naming ("linux-x64-gnu", "darwin-arm64",
// "win32-x64-msvc"): the suffix of the prebuilt package (`callbook-<platform>`)
// and of a local build (`callbook.<platform>.node`).
"use strict";

function abi() {
  if (process.platform === "win32") return "-msvc";
  if (process.platform !== "linux") return "";
  // glibc or musl: a glibc build does not load on musl (Alpine), and back.
  const glibc = process.report && process.report.getReport().header.glibcVersionRuntime;
  if (process.arch === "arm") return glibc ? "-gnueabihf" : "-musleabihf";
  return glibc ? "-gnu" : "-musl";
}

let cached;
function platform() {
  if (!cached) cached = `${process.platform}-${process.arch}${abi()}`;
  return cached;
}

module.exports = { platform };
