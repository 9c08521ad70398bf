//! callbook's pure functions for the browser and edge runtimes. Each export
//! converts its arguments, calls the core once and converts the answer; the
//! rules live in the `callbook` crate, so the answers equal the server's.

mod error;

use callbook::calcom::PayloadInput;
use callbook::{rules, BookingRequest, CallDbId};
use error::{invalid_argument, to_js};
use serde::Serialize;
use wasm_bindgen::prelude::*;

fn out<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| invalid_argument(&e.to_string()))
}

/// `{anonymous, reason}` for a caller id (`null`/`undefined` = no number).
#[wasm_bindgen(js_name = detectAnonymous)]
pub fn detect_anonymous(from_number: Option<String>) -> Result<JsValue, JsValue> {
    out(&rules::anonymity(from_number.as_deref()))
}

/// The address a caller gave, normalised, or `null` (blank or not an address).
#[wasm_bindgen(js_name = normalizeEmail)]
pub fn normalize_email(text: Option<String>) -> JsValue {
    rules::normalize_email(text.as_deref()).valid().map_or(JsValue::NULL, JsValue::from_str)
}

/// The placeholder phone of an anonymous customer (PHP-compatible).
#[wasm_bindgen(js_name = placeholderPhone)]
pub fn placeholder_phone(name: &str, call_db_id: f64, unix_seconds: f64) -> String {
    rules::placeholder_phone(name, CallDbId(call_db_id as i64), unix_seconds as i64)
}

/// Every problem `[{field, code, message}]` a booking would refuse; `[]` when valid.
#[wasm_bindgen(js_name = validateBookingRequest)]
pub fn validate_booking_request(request: JsValue) -> Result<JsValue, JsValue> {
    let request: BookingRequest =
        serde_wasm_bindgen::from_value(request).map_err(|e| invalid_argument(&e.to_string()))?;
    out(&rules::validate_booking_request(&request))
}

/// The Cal.com `POST /v2/bookings` body for `{start, eventTypeId, customerName, ...}`.
#[wasm_bindgen(js_name = buildCalcomPayload)]
pub fn build_calcom_payload(input: JsValue) -> Result<JsValue, JsValue> {
    let input: PayloadInput = serde_wasm_bindgen::from_value(input).map_err(|e| invalid_argument(&e.to_string()))?;
    out(&callbook::calcom::calcom_payload(&input).map_err(to_js)?)
}

/// Checks an `x-retell-signature` header against the raw body text.
#[wasm_bindgen(js_name = verifyRetellSignature)]
pub fn verify_retell_signature(body: &str, header: &str, api_key: &str, now_ms: f64) -> bool {
    callbook::retell::verify_retell_signature(body.as_bytes(), header, api_key, now_ms as i64)
}
