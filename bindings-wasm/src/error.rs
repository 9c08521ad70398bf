//! Errors cross into JS as `Error` objects whose `code` is the core's code.

use wasm_bindgen::JsValue;

fn js_error(code: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&error, &"code".into(), &code.into());
    error.into()
}

pub fn to_js(e: callbook::Error) -> JsValue {
    js_error(e.code(), &e.to_string())
}

pub fn invalid_argument(message: &str) -> JsValue {
    js_error("invalid_argument", message)
}
