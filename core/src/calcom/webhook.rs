//! Cal.com's webhooks as they arrive: the signature (`X-Cal-Signature-256`,
//! hex HMAC-SHA256 of the raw body, no timestamp) and the parts of the body
//! callbook reads. Applying one is `Callbook::calcom_webhook`.

use crate::{Error, Result};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Is `header` the hex HMAC-SHA256 of `body` with `secret`? Constant time.
/// Cal.com sends `no-secret-provided` when it has no secret: never valid here.
pub fn verify_calcom_signature(body: &[u8], header: &str, secret: &str) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Some(expected) = crate::retell::decode_hex(header.trim()) else { return false };
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The header value Cal.com would send for `body` (for tests and tools).
pub fn sign_calcom(body: &[u8], secret: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of a Cal.com webhook callbook reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalcomWebhook {
    /// `triggerEvent`: BOOKING_CANCELLED, BOOKING_RESCHEDULED, ...
    pub trigger: String,
    /// `createdAt`: when Cal.com sent it. Deliveries are applied in this
    /// order; an older or equal one than the last applied is stale.
    pub created_at: DateTime<Utc>,
    /// `payload.uid`: the booking (after a reschedule: the new booking).
    pub uid: Option<String>,
    /// `payload.rescheduleUid`: the booking a reschedule replaced.
    pub reschedule_uid: Option<String>,
    /// `payload.attendeeSeatId`: the one seat a seated booking's event is
    /// about (Cal.com spreads its `CalendarEvent` into the payload, and
    /// `cancelAttendeeSeat` sets it); absent when the whole booking changed.
    pub seat_uid: Option<String>,
    pub booking_id: Option<i64>,
    /// `payload.cancellationReason` (or `rescheduleReason`), cut to 2,000
    /// characters (an operator's note is bounded the same).
    pub reason: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// `payload.eventTypeId`.
    pub event_type_id: Option<i64>,
    /// The first attendee: `payload.attendees[0]` (`name`, `email`,
    /// `phoneNumber`, else `responses.attendeePhoneNumber`).
    pub attendee_name: Option<String>,
    pub attendee_email: Option<String>,
    pub attendee_phone: Option<String>,
    /// `payload.metadata.callbook_key`: a booking callbook made.
    pub callbook_key: Option<String>,
}

pub(crate) fn malformed(message: impl Into<String>) -> Error {
    Error::invalid("body", "malformed_webhook", message)
}

/// Parses a webhook body. Never panics on any input (fuzzed).
pub fn parse_calcom_webhook(body: &[u8]) -> Result<CalcomWebhook> {
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
    let trigger = value
        .get("triggerEvent")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("triggerEvent is missing"))?
        .to_string();
    let created_at = value
        .get("createdAt")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("createdAt is missing"))
        .and_then(|t| iso_time(t, "createdAt"))?;
    let payload = value.get("payload").filter(|p| p.is_object());
    let text = |key: &str| payload.and_then(|p| p.get(key)).and_then(Value::as_str).map(str::to_string);
    let time = |key: &str| text(key).map(|t| iso_time(&t, &format!("payload.{key}"))).transpose();
    let (start, end) = (time("startTime")?, time("endTime")?);
    let attendee = |key: &str| {
        let first = payload.and_then(|p| p.get("attendees")).and_then(|a| a.get(0));
        first.and_then(|a| a.get(key)).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string)
    };
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            return Err(malformed("payload.endTime is not after payload.startTime"));
        }
    }
    Ok(CalcomWebhook {
        created_at,
        uid: text("uid"),
        // Older and newer Cal.com versions name the replaced booking differently.
        reschedule_uid: text("rescheduleUid").or_else(|| text("fromReschedule")).or_else(|| text("rescheduledFromUid")),
        seat_uid: text("attendeeSeatId"),
        booking_id: payload.and_then(|p| p.get("bookingId")).and_then(Value::as_i64),
        reason: text("cancellationReason")
            .or_else(|| text("rescheduleReason"))
            .map(|r| r.chars().take(crate::error::MAX_NOTE).collect()),
        start,
        end,
        event_type_id: payload.and_then(|p| p.get("eventTypeId")).and_then(Value::as_i64),
        attendee_name: attendee("name"),
        attendee_email: attendee("email"),
        attendee_phone: attendee("phoneNumber").or_else(|| {
            let phone = payload.and_then(|p| p.pointer("/responses/attendeePhoneNumber/value"));
            phone.and_then(Value::as_str).map(str::to_string)
        }),
        callbook_key: payload
            .and_then(|p| p.pointer("/metadata/callbook_key"))
            .and_then(Value::as_str)
            .map(str::to_string),
        trigger,
    })
}

/// An RFC 3339 time in the years 1970-9999 (chrono takes year 0001 too).
fn iso_time(text: &str, field: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| (1970..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| malformed(format!("{field} is not an ISO 8601 time between 1970 and 9999")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let body = br#"{"triggerEvent":"PING"}"#;
        let header = sign_calcom(body, "whsec");
        assert!(verify_calcom_signature(body, &header, "whsec"));
        assert!(verify_calcom_signature(body, &header.to_uppercase(), "whsec"));
        assert!(!verify_calcom_signature(body, &header, "other"));
        assert!(!verify_calcom_signature(b"{}", &header, "whsec"));
        assert!(!verify_calcom_signature(body, "no-secret-provided", "whsec"));
        assert!(!verify_calcom_signature(body, &sign_calcom(body, ""), ""));
    }

    #[test]
    fn parsing() {
        let e = parse_calcom_webhook(
            br#"{"triggerEvent":"BOOKING_RESCHEDULED","createdAt":"2030-01-01T00:00:00Z","payload":{"uid":"new","rescheduleUid":"old","bookingId":7,"attendeeSeatId":"seat",
            "startTime":"2030-01-08T10:00:00.000Z","endTime":"2030-01-08T10:30:00+00:00"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.uid.as_deref(), Some("new"));
        assert_eq!(e.reschedule_uid.as_deref(), Some("old"));
        assert_eq!(e.booking_id, Some(7));
        assert_eq!(e.seat_uid.as_deref(), Some("seat"));
        assert_eq!(e.start.map(|t| crate::utc::format_utc(&t)).as_deref(), Some("2030-01-08T10:00:00Z"));
        let at = r#""createdAt":"2030-01-01T00:00:00Z""#;
        let times = |start: &str, end: &str| {
            format!(r#"{{"triggerEvent":"X",{at},"payload":{{"startTime":"{start}","endTime":"{end}"}}}}"#)
        };
        for bad in [
            "nope".to_string(),
            "[]".into(),
            "{}".into(),
            format!(r#"{{"triggerEvent":"X",{at},"payload":{{"startTime":"soon"}}}}"#),
            r#"{"triggerEvent":"X","payload":{}}"#.into(),
            r#"{"triggerEvent":"X","createdAt":"yesterday"}"#.into(),
            times("2030-01-08T10:30:00Z", "2030-01-08T10:00:00Z"),
            times("2030-01-08T10:00:00Z", "2030-01-08T10:00:00Z"),
            times("0001-01-01T00:00:00Z", "0001-01-01T00:30:00Z"),
        ] {
            let bad = bad.as_bytes();
            assert_eq!(parse_calcom_webhook(bad).map_err(|e| e.code().to_string()), Err("malformed_webhook".into()));
        }
    }
}
