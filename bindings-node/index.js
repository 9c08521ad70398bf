// Loads the native addon the napi-rs way: the prebuilt platform package
// (`callbook-linux-x64-gnu`, an optional dependency of the published
// `callbook`), else a local build next to this file (`npm run build` in a
// checkout). Then gives every error the core's snake_case `code`: promise
// rejections carry it in the message (napi's async errors have no custom
// code), and napi's own argument errors become `invalid_argument`.
"use strict";
const { platform } = require("./platform.js");
// Per class, the methods index.d.ts declares as returning a Promise
// (written from it by `npm run build`): a synchronous throw in one of those
// (napi refusing an argument before the task starts) must become a rejection.
const declared = require("./promise-methods.json");

function loadNative() {
  const name = platform();
  const pkg = `callbook-${name}`;
  try {
    return require(pkg);
  } catch (e) {
    // Only "not installed" falls through: a package that is there but fails to load is the error to see.
    if (e.code !== "MODULE_NOT_FOUND" || !String(e.message).includes(`'${pkg}'`)) throw e;
  }
  const local = `./callbook.${name}.node`;
  try {
    return require(local);
  } catch (e) {
    if (e.code !== "MODULE_NOT_FOUND" || !String(e.message).includes(local.slice(2))) throw e;
    throw new Error(
      `callbook: no native addon for ${name}: install ${pkg} (an optional dependency of callbook; ` +
        `was it left out, e.g. by --omit=optional?) or build one (cd bindings-node && npm run build)`,
    );
  }
}

const native = loadNative();

const SEPARATOR = "\u001f";
const NAPI_CODES = { InvalidArg: "invalid_argument", ObjectExpected: "invalid_argument", StringExpected: "invalid_argument", NumberExpected: "invalid_argument" };

function withCode(e) {
  if (!(e instanceof Error)) return e;
  if (e.message.includes(SEPARATOR)) {
    const [code, message] = e.message.split(SEPARATOR);
    const error = new Error(message);
    error.code = code;
    return error;
  }
  if (NAPI_CODES[e.code]) e.code = NAPI_CODES[e.code];
  return e;
}

function wrapMethods(target, promising) {
  for (const name of Object.getOwnPropertyNames(target)) {
    // Descriptors, not `target[name]`: reading a getter on the prototype would call it.
    const method = Object.getOwnPropertyDescriptor(target, name).value;
    if (name === "constructor" || typeof method !== "function") continue;
    const async = promising.includes(name);
    target[name] = function (...args) {
      let result;
      try {
        result = method.apply(this, args);
      } catch (e) {
        if (async) return Promise.reject(withCode(e));
        throw withCode(e);
      }
      return result instanceof Promise ? result.catch((e) => Promise.reject(withCode(e))) : result;
    };
  }
}

for (const [name, methods] of Object.entries(declared)) {
  const cls = native[name];
  if (typeof cls !== "function") throw new Error(`callbook: index.d.ts declares class ${name}, the addon has none (stale build?)`);
  wrapMethods(cls.prototype, methods.instance);
  wrapMethods(cls, methods.static);
}

module.exports = native;
