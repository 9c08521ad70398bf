//! callbook's C ABI (`libcallbook.so`, `libcallbook.a`, header `callbook.h`):
//! a handle on a database, and UTF-8 JSON strings in and out in the CLI's
//! `--json` shapes. Each function converts its arguments, calls the core
//! once and converts the answer; the shared plumbing is in `ffi.rs`.
//!
//! The contract, for every function:
//! - The return value is a `CallbookStatus`: 0 ok, 1 failed (storage,
//!   Cal.com, internal), 2 bad input, 3 refused by a domain rule (the CLI's
//!   exit codes).
//! - `*out_json` receives the answer, or on failure the CLI's error object
//!   `{"error":{"code","message"}}` (`slot_unavailable` adds `"alternatives"`).
//!   Free it with `callbook_free`. Only when `out_json` itself is NULL is
//!   nothing written (status 2).
//! - String arguments are NUL-terminated UTF-8, valid for the call; NULL is an
//!   error (`null_argument`) unless the function says it means something.
//! - Handles may be used from many threads at once.

mod ffi;

mod journey;

use callbook::{rules, Agent, AppointmentId, Availability, AvailabilityConfig, CallDbId, Callbook, Worker};
use ffi::{json, opt_text, options as opts, respond, text};
pub use ffi::{CallbookHandle, CallbookStatus};
use serde_json::json;
use std::ffi::c_char;
use std::sync::Arc;

/// An open database and what its calls keep between them.
pub(crate) struct Handle {
    book: Callbook,
    /// One availability checker, and its short cache, for every Cal.com base.
    availability: Arc<Availability>,
    /// The Retell function dispatcher, when the handle was opened with a
    /// `retell_api_key` (as `callbook serve` with `RETELL_API_KEY`).
    agent: Option<Agent>,
}

/// Opens (creating and migrating) the SQLite file `target`, or the database
/// a `postgres://` or `mysql://` URL names. `options_json` may be NULL or
/// `{"synchronous":"full"|"normal", "horizon_days"?, "retell_api_key"?,
/// "poolSize"?}` (default full: a confirmed booking survives a power cut;
/// the Retell key lets `callbook_agent_answer` verify function calls;
/// `poolSize`: connections per process on a database server, default 16).
/// On success `*out` is the handle and `*error_json` NULL; on failure
/// `*out` is NULL and `*error_json` (when `error_json` is not NULL) the
/// error object. Close the handle with `callbook_close`.
#[no_mangle]
pub extern "C" fn callbook_open(
    target: *const c_char,
    options_json: *const c_char,
    out: *mut *mut CallbookHandle,
    error_json: *mut *mut c_char,
) -> i32 {
    ffi::respond_open(out, error_json, || {
        let (options, retell_api_key) = ffi::open_options(options_json)?;
        let book = Callbook::open_with(text(target, "target")?, &options)?;
        let availability = Arc::new(Availability::http(book.clone(), AvailabilityConfig::default()));
        let agent =
            retell_api_key.map(|key| Agent::new(book.clone(), key).with_availability(Arc::clone(&availability)));
        Ok(Handle { availability, agent, book })
    })
}

/// Closes a handle (calls running on it on other threads finish first).
/// Returns 0, or 2 for a handle that is not open (closed before, or never
/// opened); NULL is a no-op returning 0.
#[no_mangle]
pub extern "C" fn callbook_close(handle: *mut CallbookHandle) -> i32 {
    ffi::guard(|| if handle.is_null() || ffi::close_handle(handle) { 0 } else { CallbookStatus::BadInput as i32 })
}

/// Frees a string this library returned. Returns 0; NULL is a no-op (0); a
/// pointer this library did not hand out, or one already freed, is left
/// alone and returns 2.
#[no_mangle]
pub extern "C" fn callbook_free(s: *mut c_char) -> i32 {
    ffi::guard(|| if s.is_null() || ffi::take_back(s) { 0 } else { CallbookStatus::BadInput as i32 })
}

/// Loads companies, branches, services and calls (the CLI's import file) in
/// one transaction → `{"companies","branches","services","calls"}` counts.
#[no_mangle]
pub extern "C" fn callbook_import(
    handle: *mut CallbookHandle,
    data_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let data = callbook::ImportData::from_json(text(data_json, "data_json")?)?;
        Ok(ffi::handle(handle)?.book.import(&data)?)
    })
}

/// Registers a call `{"retell_call_id", "company_id"?, "branch_id"?,
/// "from_number"?, "to_number"?, "direction"?}` (the branch is found by
/// `to_number` when not named) → the call. Registering it again is a no-op.
#[no_mangle]
pub extern "C" fn callbook_register_call(
    handle: *mut CallbookHandle,
    call_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let call: callbook::NewCall = json(call_json, "call_json")?;
        Ok(ffi::handle(handle)?.book.register_call(&call)?)
    })
}

/// Books `{"retell_call_id", "customer_name", "customer_email"?, "service_id"?,
/// "start" | "date" + "time"}` in one transaction, nothing waiting for
/// Cal.com → the CLI's book JSON `{"appointment_id", "customer_id",
/// "anonymous", "customer_phone", "starts_at", "status", "calcom_sync_status"}`.
#[no_mangle]
pub extern "C" fn callbook_book(
    handle: *mut CallbookHandle,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let request: callbook::BookingRequest = json(request_json, "request_json")?;
        Ok(ffi::handle(handle)?.book.book(&request)?)
    })
}

/// Free starts for a service on a day, from Cal.com minus local bookings:
/// `{"service_id"?, "date", "retell_call_id"?, "calcom_url"?}`
/// (with a call the answer is remembered: its booking must take one of the
/// starts) → the CLI's slots JSON `{"service_id", "date", "time_zone",
/// "slots", "cached", "remembered"}`.
#[no_mangle]
pub extern "C" fn callbook_check_availability(
    handle: *mut CallbookHandle,
    request_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let request: callbook::AvailabilityRequest = json(request_json, "request_json")?;
        Ok(ffi::handle(handle)?.availability.check(&request)?)
    })
}

/// Runs the sync worker until no job is due (the CLI's `sync --once`).
/// `options_json` may be NULL or `{"calcom_url"?, "threads"?, "timeout_ms"?,
/// "email_fallback"?, "backoff_ms"?: [..]}` → the CLI's sync report.
#[no_mangle]
pub extern "C" fn callbook_run_sync_once(
    handle: *mut CallbookHandle,
    options_json: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let config = opts(options_json, "options_json")?;
        Ok(Worker::http(ffi::handle(handle)?.book.clone(), config).run_once()?)
    })
}

/// The manual-review list → `{"appointments": [...]}`.
#[no_mangle]
pub extern "C" fn callbook_review_list(handle: *mut CallbookHandle, out_json: *mut *mut c_char) -> i32 {
    respond(out_json, || Ok(json!({ "appointments": ffi::handle(handle)?.book.review_list()? })))
}

/// Puts a reviewed appointment back to pending with a fresh sync job →
/// `{"appointment": {...}}`.
#[no_mangle]
pub extern "C" fn callbook_review_retry(
    handle: *mut CallbookHandle,
    appointment_id: i64,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        Ok(json!({ "appointment": ffi::handle(handle)?.book.review_retry(AppointmentId(appointment_id))? }))
    })
}

/// Takes an appointment off the review list, recording `by` (NULL:
/// "operator", as the CLI) and the `note` → `{"appointment": {...}}`.
#[no_mangle]
pub extern "C" fn callbook_review_resolve(
    handle: *mut CallbookHandle,
    appointment_id: i64,
    note: *const c_char,
    by: *const c_char,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let (note, by) = (text(note, "note")?, opt_text(by, "by")?.unwrap_or("operator"));
        Ok(json!({ "appointment": ffi::handle(handle)?.book.review_resolve(AppointmentId(appointment_id), by, note)? }))
    })
}

/// Counts by sync status, jobs by state, manual reviews, customers, breakers
/// (the CLI's stats JSON).
#[no_mangle]
pub extern "C" fn callbook_stats(handle: *mut CallbookHandle, out_json: *mut *mut c_char) -> i32 {
    respond(out_json, || Ok(ffi::handle(handle)?.book.stats()?))
}

/// `{"anonymous": bool, "reason": string | null}` for a caller id; NULL
/// means no number at all (anonymous, reason "missing").
#[no_mangle]
pub extern "C" fn callbook_detect_anonymous(from_number: *const c_char, out_json: *mut *mut c_char) -> i32 {
    respond(out_json, || Ok(rules::anonymity(opt_text(from_number, "from_number")?)))
}

/// `{"email": string | null}`: the address as it would be stored (NULL text
/// allowed: no email).
#[no_mangle]
pub extern "C" fn callbook_normalize_email(email: *const c_char, out_json: *mut *mut c_char) -> i32 {
    respond(out_json, || {
        let email = rules::normalize_email(opt_text(email, "email")?);
        Ok(json!({ "email": email.valid() }))
    })
}

/// `{"phone": "anonymous_<unix>_<md5 hex 8>"}`: an anonymous customer's
/// placeholder phone (PHP-compatible).
#[no_mangle]
pub extern "C" fn callbook_placeholder_phone(
    name: *const c_char,
    call_db_id: i64,
    unix_seconds: i64,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let phone = rules::placeholder_phone(text(name, "name")?, CallDbId(call_db_id), unix_seconds);
        Ok(json!({ "phone": phone }))
    })
}

/// `{"problems": [{"field","code","message"}]}`: every problem a booking
/// would refuse before looking at the database (empty when well formed).
#[no_mangle]
pub extern "C" fn callbook_validate_booking_request(request_json: *const c_char, out_json: *mut *mut c_char) -> i32 {
    respond(out_json, || {
        let request: callbook::BookingRequest = json(request_json, "request_json")?;
        Ok(json!({ "problems": rules::validate_booking_request(&request) }))
    })
}

/// `{"valid": bool}`: does `x-retell-signature` (`header`) sign the raw body
/// (`body_len` bytes at `body`) with `api_key`, within 5 minutes of `now_ms`?
#[no_mangle]
pub extern "C" fn callbook_verify_retell_signature(
    body: *const c_char,
    body_len: usize,
    header: *const c_char,
    api_key: *const c_char,
    now_ms: i64,
    out_json: *mut *mut c_char,
) -> i32 {
    respond(out_json, || {
        let (body, header, key) =
            (ffi::bytes(body, body_len, "body")?, text(header, "header")?, text(api_key, "api_key")?);
        Ok(json!({ "valid": callbook::retell::verify_retell_signature(body, header, key, now_ms) }))
    })
}
