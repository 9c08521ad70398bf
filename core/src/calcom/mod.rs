//! Cal.com API v2, as callbook uses it (bookings API version 2024-08-13,
//! checked against calcom/cal.com apps/api/v2 and the v2 docs): what a
//! booking request looks like, what an error answer means, and the
//! `CalcomApi` trait the sync worker calls. The HTTP client (feature `http`)
//! is one implementation; tests may inject others.
//!
//! Pure here: [`build_create_payload`], [`classify`], [`retry_after`].
//! Beside it: the HTTP client (`http`), Cal.com's webhooks (`webhook`) and
//! a fake Cal.com for tests (`fake`, feature `fake-calcom`).

#[cfg(feature = "fake-calcom")]
pub mod fake;
#[cfg(feature = "http")]
mod http;
pub(crate) mod webhook;

#[cfg(feature = "http")]
pub use http::HttpCalcom;
pub use webhook::{parse_calcom_webhook, sign_calcom, verify_calcom_signature, CalcomWebhook};

use crate::appointment::Appointment;
use crate::breaker::Outcome;
use crate::company::{Branch, Company, Secret, Service};
use crate::customer::Customer;
use crate::email::is_valid_email;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Header value every bookings call needs (without it an older version answers).
pub const BOOKINGS_API_VERSION: &str = "2024-08-13";
/// Slots need their own version header.
pub const SLOTS_API_VERSION: &str = "2024-09-04";
/// The metadata key that carries an appointment's idempotency key to Cal.com.
pub const METADATA_KEY: &str = "callbook_key";
/// Default API base; paths such as `/v2/bookings` are appended.
pub const DEFAULT_BASE_URL: &str = "https://api.cal.com";

/// Where and as whom to call Cal.com.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub base_url: String,
    pub api_key: Secret,
}

impl Endpoint {
    /// A company's endpoint: its own API base or `default_base`, and its
    /// key; `None` when it has no key.
    pub fn of(company: &Company, default_base: &str) -> Option<Endpoint> {
        Some(Endpoint {
            base_url: company.calcom_api_base.clone().unwrap_or_else(|| default_base.to_string()),
            api_key: company.calcom_api_key.clone()?,
        })
    }

    /// The breaker's key: the base URL and a hash of the key (never the key).
    pub fn breaker_key(&self) -> String {
        format!("{}|{}", self.base_url.trim_end_matches('/'), key_hash(&self.api_key))
    }
}

/// The part of a breaker's key that names the API key: 12 hex digits of its md5.
pub(crate) fn key_hash(api_key: &Secret) -> String {
    use md5::{Digest, Md5};
    let digest = Md5::digest(api_key.expose().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A booking as Cal.com returns it (the fields callbook reads; see
/// `tests/contract/calcom/create.json` and `create_seated.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalBooking {
    pub id: i64,
    pub uid: String,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// Absent on seated event types: there the metadata is per seat.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// The seat a create took, on a seated event type.
    #[serde(default)]
    pub seat_uid: Option<String>,
    #[serde(default)]
    pub event_type_id: Option<i64>,
    #[serde(default)]
    pub attendees: Vec<CalAttendee>,
}

/// An attendee of a booking; on a seated event type, a seat with its own metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalAttendee {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub seat_uid: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub phone_number: Option<String>,
}

/// Whether a booking Cal.com lists is the one an appointment made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    /// Its metadata (or one seat's) holds the key: `seat_uid` names the seat.
    Mine {
        seat_uid: Option<String>,
    },
    NotMine,
    /// A seated booking with no metadata anywhere: it cannot be told apart
    /// from another caller's seat.
    Unknown,
}

/// Does `booking` carry the appointment's idempotency key? Seated bookings
/// have no top-level metadata; their seats carry it.
pub fn key_match(booking: &CalBooking, key: &str) -> KeyMatch {
    let holds = |m: &Option<Map<String, Value>>| {
        m.as_ref().and_then(|m| m.get(METADATA_KEY)).and_then(Value::as_str) == Some(key)
    };
    if holds(&booking.metadata) {
        return KeyMatch::Mine { seat_uid: booking.seat_uid.clone() };
    }
    if let Some(seat) = booking.attendees.iter().find(|a| holds(&a.metadata)) {
        return KeyMatch::Mine { seat_uid: seat.seat_uid.clone() };
    }
    let seated = booking.seat_uid.is_some() || booking.attendees.iter().any(|a| a.seat_uid.is_some());
    let no_metadata = booking.metadata.is_none() && booking.attendees.iter().all(|a| a.metadata.is_none());
    if seated && no_metadata || booking.metadata.is_none() && booking.attendees.is_empty() {
        KeyMatch::Unknown
    } else {
        KeyMatch::NotMine
    }
}

/// `GET /v2/bookings` filters: Cal.com cannot filter by metadata, so callbook
/// narrows by event type and time and matches the metadata itself.
/// `afterStart` compares a booking's start, `beforeEnd` its END (both inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingQuery {
    pub event_type_id: i64,
    pub after_start: DateTime<Utc>,
    pub before_end: DateTime<Utc>,
    pub attendee_email: Option<String>,
    /// Page size, 1..=250.
    pub take: u32,
    pub skip: u32,
    /// `sortStart=asc`: oldest first, so a long listing can resume after the last start read.
    pub oldest_first: bool,
}

/// One page of `GET /v2/bookings`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookingPage {
    pub bookings: Vec<CalBooking>,
    pub total: u64,
    pub has_next_page: bool,
}

/// Parses a `GET /v2/bookings` answer (`list.json`). Never panics.
pub fn parse_booking_page(answer: &Value) -> Result<BookingPage, String> {
    let bookings: Vec<CalBooking> =
        serde_json::from_value(answer.get("data").cloned().unwrap_or(Value::Null)).map_err(|e| e.to_string())?;
    let pagination = answer.get("pagination");
    let flag = |k: &str| pagination.and_then(|p| p.get(k)).and_then(Value::as_bool);
    let total = pagination.and_then(|p| p.get("totalItems")).and_then(Value::as_u64).unwrap_or(bookings.len() as u64);
    Ok(BookingPage { has_next_page: flag("hasNextPage").unwrap_or(false), total, bookings })
}

/// `GET /v2/slots` for one event type between two instants. Cal.com reads a
/// date alone as a UTC day, so a local day is asked for by its UTC bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotQuery {
    pub event_type_id: i64,
    pub start: DateTime<Utc>,
    /// Inclusive. Never at 00:00:00 UTC: Cal.com moves such an end to 23:59:59 of that day.
    pub end: DateTime<Utc>,
    /// IANA zone the answer's times are written in.
    pub time_zone: String,
    /// `bookingUidToReschedule`: a booking being moved, whose own time
    /// does not count as taken.
    pub booking_uid_to_reschedule: Option<String>,
}

/// Free starts from `GET /v2/slots`, and the event type's length when the
/// answer tells it (the "range" format: `end - start`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotAnswer {
    /// Sorted, in UTC.
    pub starts: Vec<DateTime<Utc>>,
    pub length: Option<Duration>,
}

/// The free starts in a `GET /v2/slots` answer (`cal-api-version: 2024-09-04`):
/// `{"status":"success","data":{"2030-01-08":[{"start":"2030-01-08T09:00:00.000+01:00"}]}}`.
/// A slot may also be a bare string or carry an `end` (the "range" format,
/// which gives the event type's length). Never panics on any input (fuzzed).
pub fn parse_slots(answer: &Value) -> Result<SlotAnswer, String> {
    let days = answer.get("data").and_then(Value::as_object).ok_or("data is not an object of days")?;
    let time = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("slot time {text:?} is not ISO 8601"))
    };
    let mut out = SlotAnswer::default();
    for slots in days.values() {
        for slot in slots.as_array().ok_or("a day is not a list of slots")? {
            let text =
                slot.as_str().or_else(|| slot.get("start").and_then(Value::as_str)).ok_or("a slot has no start")?;
            let start = time(text)?;
            if let Some(end) = slot.get("end").and_then(Value::as_str) {
                let length = time(end)? - start;
                out.length = Some(out.length.map_or(length, |l| l.max(length)));
            }
            out.starts.push(start);
        }
    }
    out.starts.sort_unstable();
    out.starts.dedup();
    Ok(out)
}

/// A throttler's state as an answer's `X-RateLimit-*-<Name>` headers give
/// it. Cal.com sends them on every answer, so a client can slow down before
/// it is refused. `Reset` is in seconds from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u32,
    pub remaining: u32,
    pub reset: Duration,
}

/// The throttler of `POST /v2/bookings/{uid}/attendees` (5 a minute, its own).
pub const ATTENDEES_THROTTLER: &str = "booking_attendees_add";
/// The throttler of every other route (120 a minute per key).
pub const DEFAULT_THROTTLER: &str = "default";

/// Reads `X-RateLimit-{Limit,Remaining,Reset}-<name>` (case-insensitive).
pub fn rate_limit_headers(name: &str, header: impl Fn(&str) -> Option<String>) -> Option<RateLimitHeaders> {
    let get = |what: &str| header(&format!("x-ratelimit-{what}-{name}"))?.trim().parse::<i64>().ok();
    Some(RateLimitHeaders {
        limit: u32::try_from(get("limit")?).ok()?,
        remaining: u32::try_from(get("remaining")?.max(0)).ok()?,
        reset: Duration::seconds(get("reset")?.clamp(0, 3600)),
    })
}

/// An attendee to add to a booking (`POST /v2/bookings/{uid}/attendees`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAttendee {
    pub name: String,
    pub email: String,
    pub time_zone: String,
}

/// A move of a booking (`POST /v2/bookings/{uid}/reschedule`): Cal.com
/// makes a new booking (new uid) at `start` and cancels the old one. A
/// seated booking moves one seat (`seatUid`) and takes no reason
/// (`RescheduleSeatedBookingInput_2024_08_13`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub start: DateTime<Utc>,
    pub seat_uid: Option<String>,
    pub reason: Option<String>,
}

impl Move {
    /// The request body.
    pub fn body(&self) -> Value {
        match &self.seat_uid {
            Some(seat) => json!({"start": crate::utc::format_utc(&self.start), "seatUid": seat}),
            None => {
                let mut body = json!({"start": crate::utc::format_utc(&self.start)});
                if let Some(reason) = &self.reason {
                    body["reschedulingReason"] = reason.clone().into();
                }
                body
            }
        }
    }
}

/// Why a call to Cal.com failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// No answer at all (connection refused, reset, DNS).
    Network(String),
    /// No answer within the timeout: the request may or may not have been done.
    Timeout,
    /// An HTTP error answer.
    Status { status: u16, message: String, retry_after: Option<Duration> },
    /// A 2xx whose body is not what the API promises.
    BadAnswer(String),
    /// A create may have been done but its booking cannot be told apart
    /// from others (a seated booking without metadata): never sent blind again.
    Ambiguous(String),
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Network(m) => write!(f, "network error: {m}"),
            ApiFailure::Timeout => f.write_str("no answer within the timeout"),
            ApiFailure::Status { status, message, .. } => write!(f, "HTTP {status}: {message}"),
            ApiFailure::BadAnswer(m) => write!(f, "unexpected answer: {m}"),
            ApiFailure::Ambiguous(m) => write!(f, "cannot tell whether Cal.com has it: {m}"),
        }
    }
}

/// Cal.com as the worker needs it. Implementations must be usable from many threads.
pub trait CalcomApi: Send + Sync {
    fn create_booking(&self, endpoint: &Endpoint, payload: &Value) -> Result<CalBooking, ApiFailure>;
    fn find_bookings(&self, endpoint: &Endpoint, query: &BookingQuery) -> Result<BookingPage, ApiFailure>;
    fn get_booking(&self, endpoint: &Endpoint, uid: &str) -> Result<CalBooking, ApiFailure>;
    /// Cancels a booking, or only the seat `seat_uid` of a seated one
    /// (`CancelSeatedBookingInput_2024_08_13` takes the seat and no reason).
    fn cancel_booking(
        &self,
        endpoint: &Endpoint,
        uid: &str,
        seat_uid: Option<&str>,
        reason: &str,
    ) -> Result<(), ApiFailure>;
    /// Moves a booking; the answer is the new booking.
    fn reschedule_booking(&self, endpoint: &Endpoint, uid: &str, the_move: &Move) -> Result<CalBooking, ApiFailure>;
    fn add_attendee(&self, endpoint: &Endpoint, uid: &str, attendee: &NewAttendee) -> Result<(), ApiFailure>;
    /// Free starts for an event type (`GET /v2/slots`, range format).
    fn slots(&self, endpoint: &Endpoint, query: &SlotQuery) -> Result<SlotAnswer, ApiFailure>;
    /// What the last answer for this endpoint said about one of its
    /// throttlers ([`DEFAULT_THROTTLER`], [`ATTENDEES_THROTTLER`]).
    fn observed_limit(&self, _endpoint: &Endpoint, _throttler: &str) -> Option<RateLimitHeaders> {
        None
    }
}

/// Everything the `POST /v2/bookings` body is made of, as plain data (the
/// WASM module builds the same body from it in a browser).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadInput {
    /// The appointment's start (ISO 8601; sent in UTC).
    pub start: String,
    pub event_type_id: i64,
    pub customer_name: String,
    #[serde(default)]
    pub customer_email: Option<String>,
    /// The number to send, already checked where it entered (the worker
    /// passes only numbers libphonenumber holds valid: [`sendable_phone`]).
    /// A placeholder (`anonymous_…`) is never sent.
    #[serde(default)]
    pub customer_phone: Option<String>,
    /// The branch's IANA zone.
    pub time_zone: String,
    /// The branch's ISO country, for the attendee's language.
    #[serde(default)]
    pub country: Option<String>,
    pub idempotency_key: String,
    pub appointment_id: i64,
    /// Sent when the customer has no valid email (Cal.com needs one).
    #[serde(default = "default_email_fallback")]
    pub email_fallback: String,
}

pub fn default_email_fallback() -> String {
    "noreply@example.com".to_string()
}

/// The phone to send to Cal.com for a customer: none for anonymous callers,
/// and only a number libphonenumber holds valid (Cal.com rejects others).
pub fn sendable_phone(customer: &Customer) -> Option<String> {
    (!customer.is_anonymous() && crate::caller::is_valid_phone(&customer.phone)).then(|| customer.phone.clone())
}

/// The `POST /v2/bookings` body. The attendee's email is the customer's or
/// the fallback (event types usually require one); the phone is sent as
/// given, except a placeholder, which never is. Needs no phone metadata, so
/// the WASM module stays small; phone validity is decided by [`sendable_phone`].
pub fn calcom_payload(input: &PayloadInput) -> Result<Value, crate::Error> {
    let start = DateTime::parse_from_rfc3339(input.start.trim())
        .map_err(|_| crate::Error::invalid("start", "invalid_start", "the start is not an ISO 8601 instant"))?
        .with_timezone(&Utc);
    crate::start::parse_timezone(&input.time_zone)?;
    let email =
        input.customer_email.as_deref().map(str::trim).filter(|e| is_valid_email(e)).unwrap_or(&input.email_fallback);
    let mut attendee = json!({
        "name": input.customer_name,
        "email": email,
        "timeZone": input.time_zone,
    });
    let phone =
        input.customer_phone.as_deref().map(str::trim).filter(|p| !p.is_empty() && !p.starts_with("anonymous_"));
    if let Some(phone) = phone {
        attendee["phoneNumber"] = json!(phone);
    }
    if let Some(language) = language_of(input.country.as_deref()) {
        attendee["language"] = json!(language);
    }
    Ok(json!({
        "start": crate::utc::format_utc(&start),
        "eventTypeId": input.event_type_id,
        "attendee": attendee,
        "metadata": {
            METADATA_KEY: input.idempotency_key,
            "callbook_appointment_id": input.appointment_id.to_string(),
        },
    }))
}

/// The body for a stored appointment (see [`calcom_payload`]).
pub fn build_create_payload(
    appointment: &Appointment,
    customer: &Customer,
    service: &Service,
    branch: &Branch,
    email_fallback: &str,
) -> Value {
    let input = PayloadInput {
        start: crate::utc::format_utc(&appointment.starts_at),
        event_type_id: service.calcom_event_type_id.unwrap_or_default(),
        customer_name: customer.name.clone(),
        customer_email: customer.email.clone(),
        customer_phone: sendable_phone(customer),
        time_zone: branch.timezone.clone(),
        country: branch.country.clone(),
        idempotency_key: appointment.idempotency_key.clone(),
        appointment_id: appointment.id.0,
        email_fallback: email_fallback.to_string(),
    };
    // Stored rows always hold a valid start and zone; fall back to nothing rather than panic.
    calcom_payload(&input).unwrap_or(Value::Null)
}

/// German-speaking branches get German confirmations.
fn language_of(country: Option<&str>) -> Option<&'static str> {
    match country.map(str::to_ascii_uppercase).as_deref() {
        Some("DE" | "AT" | "CH") => Some("de"),
        Some(_) => Some("en"),
        None => None,
    }
}

/// What an error means for the job and the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorClass {
    /// The `sync_error_code` stored on the appointment.
    pub code: String,
    pub retryable: bool,
    /// A rate-limit answer: wait, without using an attempt.
    pub rate_limited: bool,
    pub breaker: Outcome,
}

/// The host cannot take the slot: "User either already has booking at this
/// time or is not available" (400, or 409 in some versions), the team forms,
/// the `AvailabilityCalculator` 409s and full seats (see `SOURCES.md` §6).
/// Matched by message and code, not by status.
pub fn is_slot_taken(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "already has booking",
        "is not available",
        "no available users found",
        "no_available_users_found_error",
        "fixed hosts unavailable",
        "fixed_hosts_unavailable_for_booking",
        "round robin host",
        "round_robin_host_unavailable_for_booking",
        "no more seats left",
        "booking_seats_full_error",
        "not_enough_available_seats_error",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The event type's per-booker limit of active bookings was reached
/// (`booker_limit_exceeded_error`).
pub fn is_booker_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("maximum number of active bookings") || m.contains("booker_limit_exceeded")
}

/// Sorts a failure into the error classes of the design.
pub fn classify(failure: &ApiFailure) -> ErrorClass {
    let class = |code: &str, retryable: bool, breaker: Outcome| ErrorClass {
        code: code.to_string(),
        retryable,
        rate_limited: false,
        breaker,
    };
    match failure {
        ApiFailure::Network(_) => class("network", true, Outcome::Unhealthy),
        ApiFailure::Timeout => class("timeout", true, Outcome::Unhealthy),
        ApiFailure::BadAnswer(_) => class("bad_answer", true, Outcome::Unhealthy),
        ApiFailure::Status { status: 429, .. } => {
            ErrorClass { rate_limited: true, ..class("429", true, Outcome::Healthy) }
        }
        // Availability failures may come as 500 where their filter is not
        // registered upstream: the message says it is no outage.
        ApiFailure::Status { status: 500, message, .. } if is_slot_taken(message) => {
            class("slot_unavailable", false, Outcome::Healthy)
        }
        ApiFailure::Status { status, .. } if *status == 408 || *status >= 500 => {
            class(&status.to_string(), true, Outcome::Unhealthy)
        }
        ApiFailure::Status { status, message, .. } => {
            let code = match status {
                _ if message.contains("booking_conflict_error") => "calcom_conflict",
                _ if message.contains("already_signed_up_for_this_booking") => "calcom_already_attendee",
                400 | 409 if is_slot_taken(message) => "slot_unavailable",
                400 | 409 if is_booker_limit(message) => "calcom_booker_limit",
                401 | 403 => "calcom_auth",
                404 => "calcom_not_found",
                _ => "calcom_validation",
            };
            class(code, false, Outcome::Healthy)
        }
        ApiFailure::Ambiguous(_) => class("calcom_unverifiable", false, Outcome::Healthy),
    }
}

/// The longest wait an answer's headers are taken at (a week).
const MAX_WAIT_SECS: i64 = 7 * 86_400;

/// How long the server asked us to wait: `Retry-After` (seconds or an HTTP
/// date), else, for a 429, `X-RateLimit-Reset-Default` (relative seconds,
/// `SOURCES.md` §3; a large number is read as a Unix time in seconds or
/// milliseconds), else 60 s. The reset header comes on every answer, so
/// on anything but a 429 it says nothing about retrying.
pub fn retry_after(status: u16, header: impl Fn(&str) -> Option<String>, now: DateTime<Utc>) -> Option<Duration> {
    // Any number may come from a proxy: a week at most (the worker caps it
    // further), and chrono panics on seconds past ~292 million years.
    let seconds = |s: i64| Duration::seconds(s.clamp(0, MAX_WAIT_SECS));
    if let Some(value) = header("retry-after") {
        let value = value.trim();
        if let Ok(secs) = value.parse::<i64>() {
            return Some(seconds(secs));
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(value) {
            return Some((at.with_timezone(&Utc) - now).clamp(Duration::zero(), Duration::seconds(MAX_WAIT_SECS)));
        }
    }
    if status != 429 {
        return None;
    }
    if let Some(reset) = header("x-ratelimit-reset-default").and_then(|v| v.trim().parse::<i64>().ok()) {
        let wait = match reset {
            r if r > 100_000_000_000 => seconds(r.saturating_sub(now.timestamp_millis()) / 1000),
            r if r > 1_000_000_000 => seconds(r.saturating_sub(now.timestamp())),
            r => seconds(r),
        };
        return Some(wait);
    }
    Some(Duration::seconds(60))
}

/// The message of an error answer in any of Cal.com's three envelopes:
/// `{error: {code, message, details}}`, `{error: {code, message}}` and the
/// bare `{statusCode, message}` (`tests/contract/calcom/errors_*.json`).
pub fn error_message(body: &Value) -> String {
    let message = body["error"]["message"].as_str().or_else(|| body["message"].as_str());
    let code = body["error"]["code"].as_str().filter(|c| !c.ends_with("Exception"));
    match (message, code) {
        (Some(m), Some(c)) if !m.contains(c) => format!("{m} ({c})"),
        (Some(m), _) => m.to_string(),
        (None, Some(c)) => c.to_string(),
        (None, None) => "no message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes() {
        let status =
            |status: u16, message: &str| ApiFailure::Status { status, message: message.into(), retry_after: None };
        let taken = "User either already has booking at this time or is not available";
        assert_eq!(classify(&status(400, taken)).code, "slot_unavailable");
        assert_eq!(classify(&status(409, taken)).code, "slot_unavailable");
        assert_eq!(classify(&status(400, "Attempting to book a meeting in the past.")).code, "calcom_validation");
        assert_eq!(classify(&status(401, "bad key")).code, "calcom_auth");
        assert_eq!(classify(&status(404, "Event type with id 1 not found.")).code, "calcom_not_found");
        for s in [408, 500, 502, 503] {
            assert!(classify(&status(s, "")).retryable, "{s}");
        }
        assert!(classify(&status(429, "")).rate_limited);
        assert!(classify(&ApiFailure::Timeout).retryable);
        assert!(!classify(&status(422, "")).retryable);
    }

    #[test]
    fn slot_answers() {
        let answer = json!({"status": "success", "data": {
            "2030-01-08": [{"start": "2030-01-08T10:00:00+01:00"}, "2030-01-08T09:30:00+01:00"],
            "2030-01-09": [{"start": "2030-01-09T09:00:00Z", "end": "2030-01-09T09:30:00Z"}]}});
        let slots: Vec<String> =
            parse_slots(&answer).unwrap_or_default().starts.iter().map(crate::utc::format_utc).collect();
        assert_eq!(slots, ["2030-01-08T08:30:00Z", "2030-01-08T09:00:00Z", "2030-01-09T09:00:00Z"]);
        assert_eq!(parse_slots(&answer).map(|a| a.length), Ok(Some(Duration::minutes(30))), "the range format's end");
        assert!(parse_slots(&json!({"data": []})).is_err());
        assert!(parse_slots(&json!({"data": {"d": [{"start": "soon"}]}})).is_err());
        assert_eq!(parse_slots(&json!({"data": {}})), Ok(SlotAnswer::default()));
    }

    #[test]
    fn retry_after_headers() {
        let now = DateTime::from_timestamp(1_900_000_000, 0).expect("valid");
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(retry_after(503, h(&[("retry-after", "7")]), now), Some(Duration::seconds(7)));
        assert_eq!(retry_after(429, h(&[("x-ratelimit-reset-default", "12")]), now), Some(Duration::seconds(12)));
        assert_eq!(
            retry_after(429, h(&[("x-ratelimit-reset-default", "1900000030")]), now),
            Some(Duration::seconds(30))
        );
        assert_eq!(retry_after(429, h(&[]), now), Some(Duration::seconds(60)));
        assert_eq!(retry_after(503, h(&[]), now), None);
        // The reset header is on every answer: no retry hint unless it is a 429.
        assert_eq!(retry_after(503, h(&[("x-ratelimit-reset-default", "60")]), now), None);
        // Found by fuzzing: absurd numbers are a week at most, never a panic.
        let week = Some(Duration::days(7));
        assert_eq!(retry_after(503, h(&[("retry-after", "9223372036854775807")]), now), week);
        assert_eq!(retry_after(429, h(&[("x-ratelimit-reset-default", "9223372036854775807")]), now), week);
        assert_eq!(retry_after(503, h(&[("retry-after", "-5")]), now), Some(Duration::zero()));
    }
}
