//! What Retell AI sends: the custom function call's body (`{name, call,
//! args}`, or the args alone) and its signature, `x-retell-signature:
//! v=<unix ms>,d=<hex>` where hex = HMAC-SHA256(key = Retell API key,
//! message = raw body followed by the timestamp string). Verified on the raw
//! body bytes (re-serialised JSON breaks on non-ASCII names), in constant
//! time, and refused when the timestamp is more than 5 minutes off.
//! Answering a call is the `Agent`'s.

use crate::booking::BookingRequest;
use crate::call::NewCall;
use crate::change::{CallbackRequest, ChangeRequest};
use crate::error::MAX_CALL_ID;
use crate::ids::CallId;
use crate::{Error, Result};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// How far the signature's timestamp may be from now.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

fn mac(body: &[u8], api_key: &str, timestamp: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(api_key.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    mac
}

/// The header value Retell would send for `body` at `timestamp_ms` (for tests and tools).
pub fn sign_retell(body: &[u8], api_key: &str, timestamp_ms: i64) -> String {
    let ts = timestamp_ms.to_string();
    let digest = mac(body, api_key, &ts).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v={ts},d={hex}")
}

/// Is `header` a valid signature of `body` with `api_key`, made within 5 minutes of `now_ms`?
pub fn verify_retell_signature(body: &[u8], header: &str, api_key: &str, now_ms: i64) -> bool {
    let mut ts = None;
    let mut digest = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("v", v)) => ts = Some(v.trim()),
            Some(("d", d)) => digest = Some(d.trim()),
            _ => {}
        }
    }
    let (Some(ts), Some(digest)) = (ts, digest) else { return false };
    // Digits only: `parse` would also take a sign.
    let ts_ms = match ts.parse::<i64>() {
        Ok(t) if ts.bytes().all(|b| b.is_ascii_digit()) => t,
        _ => return false,
    };
    if api_key.is_empty() || now_ms.abs_diff(ts_ms) > MAX_SKEW_MS.unsigned_abs() {
        return false;
    }
    let Some(bytes) = decode_hex(digest) else { return false };
    mac(body, api_key, ts).verify_slice(&bytes).is_ok()
}

/// Exactly 64 hex digits (`from_str_radix` alone would take a `+` in place of one).
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// The functions an agent may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentFunction {
    BookAppointment,
    /// Args `{date, service_id?, time?}`: up to 3 free times (nearest `time` when given).
    CheckAvailability,
    /// Args `{}`: today in the branch, who calls, the services.
    GetCallContext,
    /// Args `{date?}`: the verified caller's upcoming appointments.
    FindAppointments,
    /// Args `{appointment_id? | date [+ time], reason?, confirmed?}`.
    CancelAppointment,
    /// Args as a cancel plus `new_start | new_date + new_time`.
    RescheduleAppointment,
    /// Args `{customer_name, reason?, phone?}`.
    RequestCallback,
}

impl AgentFunction {
    /// The snake_case name (the one in the docs and in metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentFunction::BookAppointment => "book_appointment",
            AgentFunction::CheckAvailability => "check_availability",
            AgentFunction::GetCallContext => "get_call_context",
            AgentFunction::FindAppointments => "find_appointments",
            AgentFunction::CancelAppointment => "cancel_appointment",
            AgentFunction::RescheduleAppointment => "reschedule_appointment",
            AgentFunction::RequestCallback => "request_callback",
        }
    }

    /// Both spellings agents use (`book_appointment`, `bookAppointment`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "book_appointment" | "bookAppointment" => Some(AgentFunction::BookAppointment),
            "check_availability" | "checkAvailability" => Some(AgentFunction::CheckAvailability),
            "get_call_context" | "getCallContext" => Some(AgentFunction::GetCallContext),
            "find_appointments" | "findAppointments" => Some(AgentFunction::FindAppointments),
            "cancel_appointment" | "cancelAppointment" => Some(AgentFunction::CancelAppointment),
            "reschedule_appointment" | "rescheduleAppointment" => Some(AgentFunction::RescheduleAppointment),
            "request_callback" | "requestCallback" => Some(AgentFunction::RequestCallback),
            _ => None,
        }
    }
}

/// A parsed function call.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    pub function: AgentFunction,
    /// The call object, when Retell sent one (registers the call if new).
    pub call: Option<NewCall>,
    pub call_id: CallId,
    pub args: Map<String, Value>,
}

pub(crate) fn bad(field: &str, code: &str, message: impl Into<String>) -> Error {
    Error::invalid(field, code, message)
}

/// Parses a function-call body: `{name, call, args}`, or with the agent's
/// "args only" option the args alone (then `call_id` is among them and the
/// function is `function`, named by the URL, else `book_appointment`).
/// Never panics on any input (fuzzed).
pub fn parse_function_call(body: &[u8], function: Option<&str>) -> Result<FunctionCall> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad("body", "malformed_json", format!("the body is not JSON: {e}")))?;
    let Value::Object(mut body) = value else {
        return Err(bad("body", "malformed_json", "the body is not a JSON object"));
    };
    let args_only = !body.contains_key("args");
    let name = match (args_only, function) {
        (true, hint) => hint.unwrap_or("book_appointment").to_string(),
        (false, _) => body.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
    };
    let function = AgentFunction::parse(&name)
        .ok_or_else(|| bad("name", "unknown_function", format!("unknown function {name:?}")))?;
    let args = if args_only {
        body.clone()
    } else {
        match body.remove("args") {
            Some(Value::Object(args)) => args,
            Some(Value::Null) => Map::new(),
            _ => return Err(bad("args", "invalid_argument", "args is not an object")),
        }
    };
    let call = match body.get("call") {
        Some(Value::Object(call)) => {
            let text = |key: &str| call.get(key).and_then(Value::as_str).map(str::to_string);
            text("call_id").map(|id| NewCall {
                retell_call_id: CallId(id),
                from_number: text("from_number"),
                to_number: text("to_number"),
                direction: text("direction"),
                ..NewCall::default()
            })
        }
        None | Some(Value::Null) => None,
        Some(_) => return Err(bad("call", "invalid_argument", "call is not an object")),
    };
    let call_id = match (&call, args.get("call_id")) {
        (Some(call), _) => call.retell_call_id.clone(),
        (None, Some(Value::String(id))) => CallId(id.clone()),
        _ => return Err(bad("call_id", "call_id_required", "no call id: send the call object or args.call_id")),
    };
    if call_id.0.trim().is_empty() {
        return Err(bad("call_id", "call_id_required", "the call id is empty"));
    }
    Error::check_length("call_id", &call_id.0, MAX_CALL_ID)?;
    Ok(FunctionCall { function, call, call_id, args })
}

pub(crate) fn text_arg(args: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(key, "invalid_argument", format!("{key} must be a string"))),
    }
}

/// A service id as a number, or as the digits a language model may send.
pub(crate) fn id_arg(args: &Map<String, Value>, key: &str) -> Result<Option<i64>> {
    match args.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => n.as_i64().map(Some),
        Some(Value::String(s)) if s.trim().is_empty() => Some(None),
        Some(Value::String(s)) => s.trim().parse().ok().map(Some),
        Some(_) => None,
    }
    .ok_or_else(|| bad(key, "invalid_argument", format!("{key} must be a whole number")))
}

/// A yes/no as a language model may send it: `true`, `"true"`, `"yes"`, `"ja"`.
pub(crate) fn flag_arg(args: &Map<String, Value>, key: &str) -> Result<bool> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "ja" | "1" => Ok(true),
            "false" | "no" | "nein" | "0" | "" => Ok(false),
            _ => Err(bad(key, "invalid_argument", format!("{key} must be true or false"))),
        },
        Some(_) => Err(bad(key, "invalid_argument", format!("{key} must be true or false"))),
    }
}

/// The cancel or move the args ask for (both spellings of each name).
pub fn change_request_from_args(call: &FunctionCall) -> Result<ChangeRequest> {
    let args = &call.args;
    let text =
        |snake: &str, camel: &str| -> Result<Option<String>> { Ok(text_arg(args, snake)?.or(text_arg(args, camel)?)) };
    let request = ChangeRequest {
        retell_call_id: Some(call.call_id.0.clone()),
        appointment_id: id_arg(args, "appointment_id")?.or(id_arg(args, "appointmentId")?),
        date: text("date", "date")?,
        time: text("time", "time")?,
        new_start: text("new_start", "newStart")?,
        new_date: text("new_date", "newDate")?,
        new_time: text("new_time", "newTime")?,
        reason: text("reason", "reason")?,
        confirmed: flag_arg(args, "confirmed")?,
        call: call.call.clone(),
        ..Default::default()
    };
    for (field, value) in [
        ("date", &request.date),
        ("time", &request.time),
        ("new_start", &request.new_start),
        ("new_date", &request.new_date),
        ("new_time", &request.new_time),
    ] {
        Error::check_length(field, value.as_deref().unwrap_or_default(), 64)?;
    }
    Ok(request)
}

/// The callback the args ask for.
pub fn callback_request_from_args(call: &FunctionCall) -> Result<CallbackRequest> {
    let args = &call.args;
    Ok(CallbackRequest {
        retell_call_id: call.call_id.0.clone(),
        customer_name: text_arg(args, "customer_name")?.or(text_arg(args, "customerName")?).unwrap_or_default(),
        reason: text_arg(args, "reason")?,
        phone: text_arg(args, "phone")?,
        call: call.call.clone(),
    })
}

/// The booking the args ask for.
pub fn booking_request_from_args(call_id: &CallId, args: &Map<String, Value>) -> Result<BookingRequest> {
    Ok(BookingRequest {
        retell_call_id: call_id.0.clone(),
        customer_name: text_arg(args, "customer_name")?.unwrap_or_default(),
        customer_email: text_arg(args, "customer_email")?,
        service_id: id_arg(args, "service_id")?,
        start: text_arg(args, "start")?,
        date: text_arg(args, "date")?,
        time: text_arg(args, "time")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_call_shapes() {
        let full = br#"{"name":"bookAppointment","call":{"call_id":"c1","from_number":"+4930123","to_number":"+4940"},"args":{"customer_name":"A","service_id":"2"}}"#;
        let parsed = parse_function_call(full, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.call_id.0, "c1");
        assert_eq!(parsed.call.as_ref().and_then(|c| c.to_number.as_deref()), Some("+4940"));
        let request = booking_request_from_args(&parsed.call_id, &parsed.args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(request.service_id, Some(2));
        let args_only = br#"{"call_id":"c2","customer_name":"B"}"#;
        assert_eq!(parse_function_call(args_only, None).map(|c| c.call_id.0).ok().as_deref(), Some("c2"));
        let code = |body: &[u8]| parse_function_call(body, None).err().map(|e| e.code().to_string());
        assert_eq!(code(b"{").as_deref(), Some("malformed_json"));
        assert_eq!(code(b"[1]").as_deref(), Some("malformed_json"));
        assert_eq!(code(br#"{"name":"drop_tables","args":{}}"#).as_deref(), Some("unknown_function"));
        assert_eq!(code(br#"{"name":"book_appointment","args":{}}"#).as_deref(), Some("call_id_required"));
        assert_eq!(
            code(br#"{"name":"book_appointment","args":5,"call":{"call_id":"x"}}"#).as_deref(),
            Some("invalid_argument")
        );
        let wrong_type = serde_json::from_str::<Map<String, Value>>(r#"{"service_id":true}"#).unwrap_or_default();
        assert!(booking_request_from_args(&CallId("c".into()), &wrong_type).is_err());
    }

    #[test]
    fn signs_in_place_of_digits_are_refused() {
        // A valid digest with a byte below 0x10: its pair "0x" written "+x"
        // decodes to the same byte with a signed-integer parser.
        let (body, header) = (0..)
            .map(|i| format!("{{\"n\":{i}}}"))
            .map(|b| {
                let h = sign_retell(b.as_bytes(), "key", 1_900_000_000_000);
                (b, h)
            })
            .find(|(_, h)| h.split_once(",d=").is_some_and(|(_, d)| d.as_bytes().chunks(2).any(|p| p[0] == b'0')))
            .expect("some digest has a byte below 0x10");
        let (prefix, digest) = header.split_once(",d=").expect("digest");
        let at = digest.as_bytes().chunks(2).position(|p| p[0] == b'0').expect("found") * 2;
        let plus = format!("{prefix},d={}+{}", &digest[..at], &digest[at + 1..]);
        assert!(verify_retell_signature(body.as_bytes(), &header, "key", 1_900_000_000_000));
        assert!(!verify_retell_signature(body.as_bytes(), &plus, "key", 1_900_000_000_000), "{plus}");
        assert!(decode_hex(&format!("+{}", "0".repeat(63))).is_none());
        assert!(!verify_retell_signature(
            body.as_bytes(),
            &format!("v=+1900000000000,d={digest}"),
            "key",
            1_900_000_000_000
        ));
        // Far-off timestamps are refused, not an overflow.
        assert!(!verify_retell_signature(body.as_bytes(), &format!("v={},d={digest}", i64::MAX), "key", i64::MIN));
    }

    #[test]
    fn round_trip_and_refusals() {
        let body = "{\"name\":\"Jürgen\"}".as_bytes();
        let header = sign_retell(body, "key_abc", 1_900_000_000_000);
        assert!(verify_retell_signature(body, &header, "key_abc", 1_900_000_000_000 + 60_000));
        assert!(!verify_retell_signature(body, &header, "key_abc", 1_900_000_000_000 + MAX_SKEW_MS + 1));
        assert!(!verify_retell_signature(body, &header, "other", 1_900_000_000_000));
        assert!(!verify_retell_signature(b"{}", &header, "key_abc", 1_900_000_000_000));
        assert!(!verify_retell_signature(body, "v=1,d=zz", "key_abc", 1));
    }
}
