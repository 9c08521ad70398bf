//! The plumbing every exported function shares, written once: C strings in,
//! JSON strings out, panics caught, errors mapped to the CLI's exit codes and
//! `{"error":{"code","message"}}`, a registry of the strings handed out (so
//! `callbook_free` can refuse a double free or a foreign pointer), and a
//! registry of open handles (so a stale or made-up handle is an error, and a
//! handle closed by one thread is never freed under another's call).

use crate::Handle;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

/// What every function returns: the CLI's exit codes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbookStatus {
    Ok = 0,
    /// Storage, Cal.com, a bug (a caught panic): the CLI's exit code 1.
    Failed = 1,
    /// Malformed input: NULL, not UTF-8, not the expected JSON; exit code 2.
    BadInput = 2,
    /// Well formed but refused by a domain rule; exit code 3.
    Refused = 3,
}

/// An open database, as C sees it: an opaque token, never dereferenced.
/// It is a key into the handle registry, not an address.
pub struct CallbookHandle {
    _private: [u8; 0],
}

impl std::fmt::Debug for CallbookHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbookHandle")
    }
}

/// A failed call: the status and the error object the CLI prints.
#[derive(Debug)]
pub(crate) struct Failure {
    status: CallbookStatus,
    /// `{code, message}`, and `alternatives` for `slot_unavailable` (core's `Error::to_json`).
    error: serde_json::Value,
}

impl Failure {
    pub(crate) fn input(code: &str, message: impl Into<String>) -> Self {
        let error = serde_json::json!({ "code": code, "message": message.into() });
        Failure { status: CallbookStatus::BadInput, error }
    }

    fn internal(message: impl Into<String>) -> Self {
        let error = serde_json::json!({ "code": "internal", "message": message.into() });
        Failure { status: CallbookStatus::Failed, error }
    }

    fn to_json(&self) -> String {
        serde_json::json!({ "error": self.error }).to_string()
    }
}

impl From<callbook::Error> for Failure {
    fn from(e: callbook::Error) -> Self {
        let status = match e.kind() {
            callbook::ErrorKind::Input => CallbookStatus::BadInput,
            callbook::ErrorKind::Rejected => CallbookStatus::Refused,
            _ => CallbookStatus::Failed,
        };
        Failure { status, error: e.to_json() }
    }
}

pub(crate) type Outcome<T> = Result<T, Failure>;

/// Strings handed to C and not freed yet, by address.
static LIVE: LazyLock<Mutex<HashSet<usize>>> = LazyLock::new(Mutex::default);

fn live() -> std::sync::MutexGuard<'static, HashSet<usize>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands `text` to C as a NUL-terminated string that `callbook_free` frees.
fn give(text: String) -> *mut c_char {
    // serde_json escapes U+0000, so JSON text has no NUL; drop any anyway.
    let c = CString::new(text).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.retain(|b| *b != 0);
        CString::new(bytes).unwrap_or_default()
    });
    let p = c.into_raw();
    live().insert(p as usize);
    p
}

/// Frees a string from `give`; `false` (and nothing done) for any other pointer.
pub(crate) fn take_back(p: *mut c_char) -> bool {
    if !live().remove(&(p as usize)) {
        return false;
    }
    // SAFETY: `p` was in LIVE, so `give` made it with `CString::into_raw`, and
    // removing it under the lock means this is the only free of it.
    drop(unsafe { CString::from_raw(p) });
    true
}

/// Runs `f` with panics caught and writes its answer as JSON to `*out`: the
/// value on success, `{"error":{...}}` otherwise. Returns the status.
pub(crate) fn respond<T: Serialize>(out: *mut *mut c_char, f: impl FnOnce() -> Outcome<T>) -> i32 {
    if out.is_null() {
        // Nowhere to put the answer (or the error): say so by status alone.
        return CallbookStatus::BadInput as i32;
    }
    let answer = catch_unwind(AssertUnwindSafe(|| {
        f().and_then(|value| serde_json::to_string(&value).map_err(|e| Failure::internal(e.to_string())))
    }))
    .unwrap_or_else(|panic| Err(Failure::internal(format!("panic: {}", panic_text(&*panic)))));
    let (status, text) = match answer {
        Ok(text) => (CallbookStatus::Ok, text),
        Err(failure) => (failure.status, failure.to_json()),
    };
    // SAFETY: `out` is not NULL, and the C caller passes a `char **` it owns
    // for the duration of the call (the documented contract of every function).
    unsafe { *out = give(text) };
    status as i32
}

/// Runs `f` with panics caught, for functions with no JSON answer.
pub(crate) fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(CallbookStatus::Failed as i32)
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// A required string argument.
pub(crate) fn text<'a>(p: *const c_char, name: &str) -> Outcome<&'a str> {
    opt_text(p, name)?.ok_or_else(|| Failure::input("null_argument", format!("{name} is NULL")))
}

/// A string argument that may be NULL.
pub(crate) fn opt_text<'a>(p: *const c_char, name: &str) -> Outcome<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL, and by the ABI's contract a NUL-terminated string
    // that stays valid and unchanged while the call runs.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map(Some).map_err(|_| Failure::input("invalid_utf8", format!("{name} is not UTF-8")))
}

/// Bytes given as a pointer and a length (a raw request body).
pub(crate) fn bytes<'a>(p: *const c_char, len: usize, name: &str) -> Outcome<&'a [u8]> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(Failure::input("null_argument", format!("{name} is NULL"))) };
    }
    // SAFETY: not NULL, and by the ABI's contract `len` readable bytes that
    // stay unchanged while the call runs.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// A JSON argument in the shape `T` reads.
pub(crate) fn json<T: DeserializeOwned>(p: *const c_char, name: &str) -> Outcome<T> {
    serde_json::from_str(text(p, name)?).map_err(|e| Failure::input("invalid_json", format!("{name}: {e}")))
}

/// A JSON options argument: NULL means every default.
pub(crate) fn options<T: DeserializeOwned + Default>(p: *const c_char, name: &str) -> Outcome<T> {
    if p.is_null() {
        return Ok(T::default());
    }
    json(p, name)
}

/// `callbook_open`'s options: the core's `OpenOptions` (misspelt keys are
/// refused), plus the Retell API key the handle's agent verifies with (an
/// empty one is none).
pub(crate) fn open_options(p: *const c_char) -> Outcome<(callbook::OpenOptions, Option<callbook::Secret>)> {
    let mut options: serde_json::Map<String, serde_json::Value> = options(p, "options_json")?;
    let key = match options.remove("retell_api_key") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(key)) => (!key.is_empty()).then(|| callbook::Secret::new(key)),
        Some(_) => return Err(Failure::input("invalid_json", "options_json: retell_api_key is not a string")),
    };
    let open = serde_json::from_value(serde_json::Value::Object(options))
        .map_err(|e| Failure::input("invalid_json", format!("options_json: {e}")))?;
    Ok((open, key))
}

/// Waits in real time until `until` (a Cal.com rate limit), on the calling thread.
pub(crate) fn sleep_until(until: chrono::DateTime<chrono::Utc>) {
    std::thread::sleep((until - chrono::Utc::now()).to_std().unwrap_or_default());
}

/// Open handles by token. Tokens count up from 1 and are never reused, so a
/// closed handle stays invalid for good.
static HANDLES: LazyLock<RwLock<HashMap<usize, Arc<Handle>>>> = LazyLock::new(RwLock::default);
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(1);

/// Registers an open database and returns its token for C.
pub(crate) fn open_handle(handle: Handle) -> *mut CallbookHandle {
    let token = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    HANDLES.write().unwrap_or_else(|p| p.into_inner()).insert(token, Arc::new(handle));
    // A token, not an address: C only passes it back.
    token as *mut CallbookHandle
}

/// The handle behind a token; it stays alive for this call even if another
/// thread closes it meanwhile.
pub(crate) fn handle(p: *const CallbookHandle) -> Outcome<Arc<Handle>> {
    if p.is_null() {
        return Err(Failure::input("null_argument", "handle is NULL"));
    }
    let handles = HANDLES.read().unwrap_or_else(|p| p.into_inner());
    handles.get(&(p as usize)).cloned().ok_or_else(|| Failure::input("invalid_handle", "not an open callbook handle"))
}

/// Forgets a handle; the database closes when the last call using it ends.
pub(crate) fn close_handle(p: *const CallbookHandle) -> bool {
    HANDLES.write().unwrap_or_else(|p| p.into_inner()).remove(&(p as usize)).is_some()
}

/// Writes a new handle to `*out` (NULL on failure) and, on failure, the error
/// JSON to `*error` when `error` is not NULL (on success `*error` is NULL).
pub(crate) fn respond_open(
    out: *mut *mut CallbookHandle,
    error: *mut *mut c_char,
    f: impl FnOnce() -> Outcome<Handle>,
) -> i32 {
    let opened = if out.is_null() {
        Err(Failure::input("null_argument", "out is NULL"))
    } else {
        catch_unwind(AssertUnwindSafe(f))
            .unwrap_or_else(|panic| Err(Failure::internal(format!("panic: {}", panic_text(&*panic)))))
    };
    let (status, token, text) = match opened {
        Ok(handle) => (CallbookStatus::Ok, open_handle(handle), None),
        Err(failure) => (failure.status, std::ptr::null_mut(), Some(failure.to_json())),
    };
    if !out.is_null() {
        // SAFETY: not NULL: a `CallbookHandle **` the caller owns for the call.
        unsafe { *out = token };
    }
    if !error.is_null() {
        // SAFETY: not NULL: a `char **` the caller owns for the call.
        unsafe { *error = text.map_or(std::ptr::null_mut(), give) };
    }
    status as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(f: impl FnOnce() -> Outcome<serde_json::Value>) -> (i32, serde_json::Value) {
        let mut out: *mut c_char = std::ptr::null_mut();
        let status = respond(&mut out, f);
        // SAFETY: `respond` wrote a string from `give`.
        let text = unsafe { CStr::from_ptr(out) }.to_str().map(str::to_string).unwrap_or_default();
        assert!(take_back(out));
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    #[test]
    fn a_panic_becomes_internal_and_never_unwinds_into_c() {
        let (status, json) = answer(|| panic!("boom"));
        assert_eq!(status, CallbookStatus::Failed as i32);
        assert_eq!(json["error"]["code"], "internal");
        assert_eq!(json["error"]["message"], "panic: boom");
    }

    #[test]
    fn core_errors_keep_their_code_and_exit_status() {
        let (status, json) = answer(|| Err(callbook::Error::ServiceRequired.into()));
        assert_eq!((status, json["error"]["code"].as_str()), (3, Some("service_required")));
        assert!(json["error"].get("alternatives").is_none());
        let when = chrono::DateTime::from_timestamp(1_894_107_600, 0).unwrap_or_default();
        let (status, json) = answer(|| Err(callbook::Error::SlotUnavailable { alternatives: vec![when] }.into()));
        assert_eq!(status, 3);
        assert_eq!(json["error"]["alternatives"], serde_json::json!(["2030-01-08T13:00:00Z"]));
    }

    #[test]
    fn a_string_is_freed_once_and_foreign_pointers_are_refused() {
        let p = give("x".into());
        assert!(take_back(p));
        assert!(!take_back(p));
        let mut local = *b"abc\0";
        assert!(!take_back(local.as_mut_ptr().cast()));
    }

    #[test]
    fn open_options_take_the_retell_key_apart_and_refuse_a_misspelt_option() {
        let opened = |text: &str| {
            let c = CString::new(text).unwrap_or_default();
            open_options(c.as_ptr()).map(|(_, key)| key.map(|k| k.expose().to_string()))
        };
        assert_eq!(opened(r#"{"synchronous":"normal","retell_api_key":"key_1"}"#).ok(), Some(Some("key_1".into())));
        assert_eq!(opened(r#"{"retell_api_key":""}"#).ok(), Some(None), "an empty key is none");
        assert_eq!(opened("{}").ok(), Some(None));
        assert_eq!(open_options(std::ptr::null()).ok().map(|(_, key)| key.is_none()), Some(true), "NULL: defaults");
        for bad in [r#"{"retell_api_key":5}"#, r#"{"synchronus":"normal"}"#, r#"{"retell_api_key":"k","x":1}"#] {
            assert_eq!(
                opened(bad).err().map(|f| f.error["code"].clone()),
                Some(serde_json::json!("invalid_json")),
                "{bad}"
            );
        }
    }

    #[test]
    fn closed_and_made_up_handles_are_errors() {
        assert_eq!(
            handle(std::ptr::null()).err().map(|f| f.error["code"].clone()),
            Some(serde_json::json!("null_argument"))
        );
        assert_eq!(
            handle(12345 as *const CallbookHandle).err().map(|f| f.error["code"].clone()),
            Some(serde_json::json!("invalid_handle"))
        );
    }
}
