//! The rest of the call through the C ABI: what the agent is told when a
//! call starts, finding, cancelling and moving appointments, the change log,
//! callbacks, the Retell function dispatcher (as `callbook serve` answers
//! `POST /retell/function`), Cal.com's webhook per company, and Cal.com's
//! side read back (pull, drift). Same contract as every function in
//! `lib.rs`; answers in the CLI's `--json` shapes.

use crate::ffi::{self, bytes, json, opt_text, options as opts, respond, text, Failure};
use crate::CallbookHandle;
use callbook::{AppointmentId, CalcomReadOptions, CalcomReader, CallbackId, CallbackStatus, CompanyId};
use serde_json::json;
use std::ffi::c_char;

/// What the agent is told when a call starts: `{"today", "weekday",
/// "time_zone", "branch", "known_caller", "customer_name"?, "upcoming",
/// "services": [{"service_id", "name", "duration_minutes"}]}`.
#[no_mangle]
pub extern "C" fn callbook_call_context(
    handle: *mut CallbookHandle,
    retell_call_id: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || Ok(ffi::handle(handle)?.book.call_context(text(retell_call_id, "retell_call_id")?)?))
}

/// The calling customer's upcoming confirmed appointments (at most 5,
/// soonest first), on one local day when `date` is not NULL →
/// `{"appointments": [...]}`; `caller_not_verified` for a caller nobody
/// knows with nothing booked in this call.
#[no_mangle]
pub extern "C" fn callbook_find_appointments(
    handle: *mut CallbookHandle,
    retell_call_id: *const c_char,
    date: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let (id, date) = (text(retell_call_id, "retell_call_id")?, opt_text(date, "date")?);
        Ok(json!({ "appointments": ffi::handle(handle)?.book.find_appointments(id, date)? }))
    })
}

/// A company's upcoming appointments for a phone number (an operator's
/// search, the CLI's `appointments`) → `{"appointments": [...]}`.
#[no_mangle]
pub extern "C" fn callbook_appointments_by_phone(
    handle: *mut CallbookHandle,
    company_id: i64,
    phone: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let found = ffi::handle(handle)?.book.appointments_by_phone(CompanyId(company_id), text(phone, "phone")?)?;
        Ok(json!({ "appointments": found }))
    })
}

/// Cancels `{"retell_call_id" | "operator", "appointment_id"? | "date" +
/// "time"?, "reason"?, "confirmed"?, "force"?}` (a caller their own
/// appointments only; unconfirmed nothing is written) → `{"change":
/// {"appointment_id", "kind", "needs_confirmation", "repeated", "starts_at",
/// "status", "calcom_sync_status"}}`.
#[no_mangle]
pub extern "C" fn callbook_cancel_appointment(
    handle: *mut CallbookHandle,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let request: callbook::ChangeRequest = json(request_json, "request_json")?;
        Ok(json!({ "change": ffi::handle(handle)?.book.cancel_appointment(&request)? }))
    })
}

/// Moves an appointment: the cancel's request plus `"new_start"` or
/// `"new_date"` + `"new_time"`; every booking rule applies to the new start
/// → `{"change": {..., "previous_starts_at"}}`.
#[no_mangle]
pub extern "C" fn callbook_reschedule_appointment(
    handle: *mut CallbookHandle,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let request: callbook::ChangeRequest = json(request_json, "request_json")?;
        Ok(json!({ "change": ffi::handle(handle)?.book.reschedule_appointment(&request)? }))
    })
}

/// An appointment's cancels and moves, oldest first → `{"changes": [...]}`.
#[no_mangle]
pub extern "C" fn callbook_appointment_changes(
    handle: *mut CallbookHandle,
    appointment_id: i64,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        Ok(json!({ "changes": ffi::handle(handle)?.book.appointment_changes(AppointmentId(appointment_id))? }))
    })
}

/// Files a callback `{"retell_call_id", "customer_name", "reason"?,
/// "phone"?}` (the caller's own number when the call showed one) →
/// `{"callback": {...}}`.
#[no_mangle]
pub extern "C" fn callbook_request_callback(
    handle: *mut CallbookHandle,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let request: callbook::CallbackRequest = json(request_json, "request_json")?;
        Ok(json!({ "callback": ffi::handle(handle)?.book.request_callback(&request)? }))
    })
}

/// Callbacks, oldest first: `status` "open" (also NULL), "done" or "all" →
/// `{"callbacks": [...]}`.
#[no_mangle]
pub extern "C" fn callbook_callback_list(
    handle: *mut CallbookHandle,
    status: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let status =
            match opt_text(status, "status")?.unwrap_or("open") {
                "all" => None,
                s => Some(CallbackStatus::parse(s).ok_or_else(|| {
                    Failure::input("invalid_argument", format!("status {s:?} is not open, done or all"))
                })?),
            };
        Ok(json!({ "callbacks": ffi::handle(handle)?.book.callbacks(status)? }))
    })
}

/// Marks a callback done by `by` (NULL: "operator", as the CLI) →
/// `{"callback": {...}}`; one done already is answered as it is.
#[no_mangle]
pub extern "C" fn callbook_callback_done(
    handle: *mut CallbookHandle,
    callback_id: i64,
    by: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let by = opt_text(by, "by")?.unwrap_or("operator");
        Ok(json!({ "callback": ffi::handle(handle)?.book.callback_done(CallbackId(callback_id), by)? }))
    })
}

/// Answers one Retell custom function call exactly as `callbook serve`
/// answers `POST /retell/function`: the raw body (`body_len` bytes at
/// `body`) is verified against `signature` (the `x-retell-signature`
/// header) with the handle's `retell_api_key`, parsed and run (any of the
/// agent's functions). `function` names the function for the "args only"
/// form (serve's `/retell/function/{name}`), else NULL. → `{"http_status",
/// "body", "function"}`: the HTTP answer to send (401 bad signature, 400
/// malformed, 200 `{"ok": false, "code"}` refused, 200 `{"ok": true}`). A
/// handle opened without a key answers `not_configured`.
#[no_mangle]
pub extern "C" fn callbook_agent_answer(
    handle: *mut CallbookHandle,
    body: *const c_char,
    body_len: usize,
    signature: *const c_char,
    function: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let (body, signature) = (bytes(body, body_len, "body")?, text(signature, "signature")?);
        let function = opt_text(function, "function")?;
        let handle = ffi::handle(handle)?;
        let agent = handle
            .agent
            .as_ref()
            .ok_or_else(|| Failure::input("not_configured", "this handle was opened without retell_api_key"))?;
        let reply = agent.answer(body, signature, function);
        Ok(json!({ "http_status": reply.status, "body": reply.body, "function": reply.function.map(|f| f.as_str()) }))
    })
}

/// Applies one Cal.com webhook delivery (the raw body, `body_len` bytes at
/// `body`, and its `X-Cal-Signature-256` header) to company `company_id`,
/// verified with that company's `calcom_webhook_secret` (serve's `POST
/// /calcom/webhook/{company}`) → `{"result": "imported" | "cancelled" |
/// "rescheduled" | "already_applied" | ..., ...}`; `bad_signature`,
/// `company_not_found`, `webhook_not_configured` are errors.
#[no_mangle]
pub extern "C" fn callbook_calcom_webhook(
    handle: *mut CallbookHandle,
    company_id: i64,
    body: *const c_char,
    body_len: usize,
    signature: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let (body, signature) = (bytes(body, body_len, "body")?, text(signature, "signature")?);
        Ok(ffi::handle(handle)?.book.calcom_webhook(CompanyId(company_id), body, signature)?)
    })
}

/// Holds every Cal.com booking of the companies' event types as an
/// appointment (the CLI's `calcom pull`; resumes where an interrupted one
/// stopped). `options_json` may be NULL or `{"company_id"?, "days_back"?,
/// "days_ahead"?, "calcom_url"?, "requests_per_minute"?, "timeout_ms"?}` →
/// `{"companies", "event_types", "resumed", "requests", "listed",
/// "imported", "known", "ours", "cancelled", "unplaced"}`. The rate limit
/// waits on the calling thread.
#[no_mangle]
pub extern "C" fn callbook_pull_from_calcom(
    handle: *mut CallbookHandle,
    options_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || Ok(reader(handle, options_json)?.pull(&mut ffi::sleep_until, &mut |_| {})?))
}

/// Where Cal.com and the appointments disagree, from now on (the CLI's
/// `calcom drift`; the counts are stored for `/metrics`): the pull's
/// options → `{"companies": [{"company_id", "missing_locally",
/// "missing_in_calcom", "different_start", "cancelled_one_side"}],
/// "requests"}`. Drift is an answer, not an error (status 0).
#[no_mangle]
pub extern "C" fn callbook_calcom_drift(
    handle: *mut CallbookHandle,
    options_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || Ok(reader(handle, options_json)?.drift(&mut ffi::sleep_until)?))
}

fn reader(handle: *mut CallbookHandle, options_json: *const c_char) -> ffi::Outcome<CalcomReader> {
    let options: CalcomReadOptions = opts(options_json, "options_json")?;
    Ok(CalcomReader::http(ffi::handle(handle)?.book.clone(), options))
}
