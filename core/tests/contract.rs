//! Contract tests against `tests/contract/calcom/*.json`: request and answer
//! bodies transcribed from Cal.com's own source (calcom/cal.com, apps/api/v2;
//! `SOURCES.md` there cites each). Three sides meet the same fixtures, so
//! the client and the fake cannot drift from upstream together:
//! - the client's parsers read every answer fixture;
//! - what the client sends matches the request fixtures;
//! - the fake answers every request fixture with the fixture's status,
//!   headers and body shape (the same keys and JSON types at every level).

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/contract/calcom")
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn all_fixtures() -> Vec<(String, Value)> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("fixture folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), fixture(&n))).collect()
}

/// Differences in shape: keys missing or extra, JSON types that differ (a
/// null on either side matches anything), arrays compared by their first item.
fn shape_diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                match a.get(k) {
                    Some(w) => shape_diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("{path}.{k} missing")),
                }
            }
            for k in a.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}.{k} not upstream"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e), Some(a)) = (e.first(), a.first()) {
                shape_diff(&format!("{path}[0]"), e, a, out);
            }
        }
        (e, a) if std::mem::discriminant(e) != std::mem::discriminant(a) => {
            out.push(format!("{path}: upstream {e}, fake {a}"))
        }
        _ => {}
    }
}

// ------------------------------------------------------------ the client

/// What each error answer means to callbook (its `sync_error_code`).
const ERROR_CODES: &[(&str, &str)] = &[
    ("errors_400_booker_limit.json", "calcom_booker_limit"),
    ("errors_400_cancel_already_cancelled.json", "calcom_validation"),
    ("errors_400_cancel_reason_required.json", "calcom_validation"),
    ("errors_400_metadata.json", "calcom_validation"),
    ("errors_400_past_booking.json", "calcom_validation"),
    ("errors_400_reschedule_already_rescheduled.json", "calcom_validation"),
    ("errors_400_slot_taken.json", "slot_unavailable"),
    ("errors_400_validation_attendee_email.json", "calcom_validation"),
    ("errors_400_validation_create.json", "calcom_validation"),
    ("errors_401.json", "calcom_auth"),
    ("errors_401_invalid_key.json", "calcom_auth"),
    ("errors_404_attendees_no_version.json", "calcom_not_found"),
    ("errors_404_booking.json", "calcom_not_found"),
    ("errors_404_event_type.json", "calcom_not_found"),
    ("errors_409_booking_conflict.json", "calcom_conflict"),
    ("errors_409_fixed_hosts.json", "slot_unavailable"),
    ("errors_409_no_available_users.json", "slot_unavailable"),
    ("errors_409_round_robin_hosts.json", "slot_unavailable"),
    ("errors_409_seats_full.json", "slot_unavailable"),
    ("errors_429.json", "429"),
];

fn header_fn(f: &Value) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        f["response"]["headers"]
            .as_object()
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    }
}

#[test]
fn the_client_reads_every_answer_fixture() {
    let mut checked = 0;
    for (name, f) in all_fixtures() {
        let status = f["response"]["status"].as_u64().unwrap_or(0) as u16;
        let body = &f["response"]["body"];
        if name.starts_with("webhook_") {
            continue; // read by the webhook test below
        }
        if status >= 400 {
            let code = ERROR_CODES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
            let code = code.unwrap_or_else(|| panic!("{name}: no expected code listed"));
            let message = error_message(body);
            assert_ne!(message, "no message", "{name}");
            let failure = ApiFailure::Status { status, message: message.clone(), retry_after: None };
            assert_eq!(classify(&failure).code, code, "{name}: {message}");
        } else if name.starts_with("list") {
            let page = parse_booking_page(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!page.bookings.is_empty() && page.total >= page.bookings.len() as u64, "{name}");
        } else if name.starts_with("slots") {
            let answer = parse_slots(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!answer.starts.is_empty(), "{name}");
            assert_eq!(
                answer.length.is_some(),
                name == "slots_range.json",
                "{name}: the range format tells the length"
            );
        } else if name == "attendees_add.json" {
            assert!(body["data"]["email"].is_string());
        } else {
            let booking: CalBooking =
                serde_json::from_value(body["data"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(booking.id > 0 && !booking.uid.is_empty(), "{name}");
            assert!(booking.start.is_some() && booking.end.is_some(), "{name}");
        }
        // Rate-limit headers, where the answer has them.
        let throttler = if name.contains("attendee") { ATTENDEES_THROTTLER } else { DEFAULT_THROTTLER };
        if header_fn(&f)(&format!("x-ratelimit-limit-{throttler}")).is_some() {
            let seen = rate_limit_headers(throttler, header_fn(&f)).unwrap_or_else(|| panic!("{name}: headers"));
            assert!(seen.limit > 0 && seen.reset > Duration::zero(), "{name}: {seen:?}");
        }
        checked += 1;
    }
    assert!(checked >= 30, "{checked} fixtures read");
}

#[test]
fn seated_answers_are_matched_by_the_seat_metadata() {
    let f = fixture("create_seated.json");
    let booking: CalBooking = serde_json::from_value(f["response"]["body"]["data"].clone()).expect("parses");
    assert!(booking.metadata.is_none(), "no top-level metadata on a seated booking");
    let mine = key_match(&booking, "cb_11aa22bb33cc44dd");
    assert_eq!(mine, KeyMatch::Mine { seat_uid: Some("3be561a9-31f1-4b8e-aefc-9d9a085f0dd1".into()) });
    assert_eq!(key_match(&booking, "cb_not_ours"), KeyMatch::NotMine);
    let mut stripped = booking.clone();
    stripped.attendees.iter_mut().for_each(|a| a.metadata = None);
    assert_eq!(key_match(&stripped, "cb_11aa22bb33cc44dd"), KeyMatch::Unknown);
    let regular: CalBooking =
        serde_json::from_value(fixture("create.json")["response"]["body"]["data"].clone()).expect("parses");
    assert_eq!(key_match(&regular, "cb_7f3a9c2e41d84b0f"), KeyMatch::Mine { seat_uid: None });
}

#[test]
fn the_webhook_fixtures_parse_and_their_signatures_verify() {
    for name in ["webhook_booking_created.json", "webhook_booking_rescheduled.json", "webhook_booking_cancelled.json"] {
        let f = fixture(name);
        let raw = f["request"]["raw_body"].as_str().unwrap_or_else(|| panic!("{name}: raw_body"));
        let event = parse_calcom_webhook(raw.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(event.uid.is_some() && event.start.is_some(), "{name}: {event:?}");
        let headers = f["request"]["headers"].as_object().expect("headers");
        let signature = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-cal-signature-256"))
            .and_then(|(_, v)| v.as_str())
            .expect("signature header");
        let secret = f["webhook_secret_for_this_fixture"].as_str().expect("the fixture's secret");
        assert!(verify_calcom_signature(raw.as_bytes(), signature, secret), "{name}");
    }
    let rescheduled = fixture("webhook_booking_rescheduled.json");
    let event =
        parse_calcom_webhook(rescheduled["request"]["raw_body"].as_str().unwrap_or("").as_bytes()).expect("parses");
    assert!(event.reschedule_uid.is_some() && event.reschedule_uid != event.uid, "the old booking is named apart");
}

#[test]
fn what_the_client_sends_matches_the_request_fixtures() {
    // POST /v2/bookings: the payload builder gives the fixture's body exactly.
    let f = fixture("create.json");
    let input = PayloadInput {
        start: "2030-01-08T13:00:00Z".into(),
        event_type_id: 123,
        customer_name: "Jane Doe".into(),
        customer_email: Some("jane@example.com".into()),
        customer_phone: Some("+491512345678".into()),
        time_zone: "Europe/Berlin".into(),
        country: Some("DE".into()),
        idempotency_key: "cb_7f3a9c2e41d84b0f".into(),
        appointment_id: 42,
        email_fallback: default_email_fallback(),
    };
    assert_eq!(calcom_payload(&input).expect("builds"), f["request"]["body"]);

    // The other calls, as the fake receives them from the real client.
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2029, 12, 20, 10, 15, 41).single().expect("time")));
    let fake = FakeCalcom::with_event_types(clock, &[EventType::new(123, 30)]).expect("fake");
    let client = HttpCalcom::new(std::time::Duration::from_secs(2));
    let endpoint = Endpoint { base_url: fake.url().into(), api_key: Secret::new("cal_live_test") };
    let booked = client.create_booking(&endpoint, &f["request"]["body"]).expect("books");
    let sent = |name: &str, recorded: Recorded| {
        let f = fixture(name);
        let (method, path) =
            (f["request"]["method"].as_str().unwrap_or(""), f["request"]["path"].as_str().unwrap_or(""));
        let path = path.replace("k9Xw2LmQp4TnRv7sZa1bYc", &booked.uid);
        assert_eq!((recorded.method.as_str(), recorded.path.as_str()), (method, path.as_str()), "{name}");
        let mut diffs = Vec::new();
        shape_diff(name, &f["request"]["body"], &recorded.body, &mut diffs);
        let expected_keys: Vec<&String> =
            f["request"]["query"].as_object().map(|q| q.keys().collect()).unwrap_or_default();
        let mut sent_keys: Vec<&String> = recorded.query.keys().collect();
        sent_keys.sort();
        let mut expected_keys = expected_keys;
        expected_keys.sort();
        assert_eq!(sent_keys, expected_keys, "{name}: query parameters");
        recorded
    };
    // The slots of Berlin's 8 January: the local day's UTC bounds, the range format.
    let day = chrono::NaiveDate::from_ymd_opt(2030, 1, 8).expect("day");
    let from = day.and_hms_opt(0, 0, 0).expect("t").and_local_timezone(chrono_tz::Europe::Berlin).single().expect("t");
    let query = SlotQuery {
        event_type_id: 123,
        start: from.with_timezone(&Utc),
        end: (from + Duration::days(1) - Duration::seconds(1)).with_timezone(&Utc),
        time_zone: "Europe/Berlin".into(),
        booking_uid_to_reschedule: None,
    };
    client.slots(&endpoint, &query).expect("slots");
    let recorded = sent("slots_range.json", fake.last_request().expect("recorded"));
    let expected: HashMap<String, String> = fixture("slots_range.json")["request"]["query"]
        .as_object()
        .expect("query")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(recorded.query, expected, "the same query, value for value");
    let page = BookingQuery {
        event_type_id: 123,
        after_start: Utc.with_ymd_and_hms(2030, 1, 8, 0, 0, 0).single().expect("t"),
        before_end: Utc.with_ymd_and_hms(2030, 1, 8, 23, 59, 59).single().expect("t"),
        attendee_email: None,
        take: 100,
        skip: 0,
        oldest_first: false,
    };
    assert_eq!(client.find_bookings(&endpoint, &page).expect("lists").bookings.len(), 1);
    sent("list.json", fake.last_request().expect("recorded"));
    let attendee = NewAttendee {
        name: "John Doe".into(),
        email: "john.doe@example.com".into(),
        time_zone: "Europe/Berlin".into(),
    };
    client.add_attendee(&endpoint, &booked.uid, &attendee).expect("adds");
    sent("attendees_add.json", fake.last_request().expect("recorded"));
    client.cancel_booking(&endpoint, &booked.uid, None, "Termin vom Anrufer storniert").expect("cancels");
    sent("cancel.json", fake.last_request().expect("recorded"));
}

// ------------------------------------------------------------ the fake

const KEY: &str = "cal_live_0123456789abcdef0123456789abcdef";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

struct Bench {
    fake: FakeCalcom,
    agent: ureq::Agent,
}

impl Bench {
    fn new(event_types: &[EventType]) -> Self {
        let clock = Arc::new(ManualClock::new(at("2029-12-20T10:15:41Z")));
        let fake = FakeCalcom::with_event_types(clock, event_types).expect("fake");
        Bench { fake, agent: ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(5)).build() }
    }

    /// Sends a request and returns (status, headers, body).
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &Value,
        headers: &Value,
        body: &Value,
    ) -> (u16, HashMap<String, String>, Value) {
        let mut request = self.agent.request(method, &format!("{}{path}", self.fake.url()));
        for (k, v) in query.as_object().into_iter().flatten() {
            request = request.query(k, v.as_str().unwrap_or_default());
        }
        for (k, v) in headers.as_object().into_iter().flatten() {
            if !k.eq_ignore_ascii_case("content-type") {
                request = request.set(k, v.as_str().unwrap_or_default());
            }
        }
        let answer = if body.is_null() { request.call() } else { request.send_json(body) };
        let response = match answer {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|n| Some((n.to_ascii_lowercase(), response.header(&n)?.to_string())))
            .collect();
        (status, headers, response.into_json().unwrap_or(Value::Null))
    }

    /// A booking of event type `event_type` at `start` for `email`: its uid.
    fn book(&self, event_type: i64, start: &str, email: &str) -> String {
        let body = json!({"start": start, "eventTypeId": event_type,
            "attendee": {"name": "Max Mustermann", "email": email, "timeZone": "Europe/Berlin",
                "phoneNumber": "+491512345678", "language": "de"},
            "metadata": {"callbook_key": format!("cb_{email}"), "callbook_appointment_id": "41"}});
        let (status, _, answer) = self.send("POST", "/v2/bookings", &Value::Null, &headers(), &body);
        assert_eq!(status, 201, "{answer}");
        answer["data"]["uid"].as_str().expect("uid").to_string()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.send("POST", path, &Value::Null, &headers(), &body).2
    }
}

fn headers() -> Value {
    json!({"Authorization": format!("Bearer {KEY}"), "cal-api-version": BOOKINGS_API_VERSION})
}

/// Brings a fresh fake into the state a fixture's request meets upstream
/// and returns the uid that stands for the fixture's booking uid.
fn arrange(name: &str) -> (Bench, Option<String>) {
    let regular = EventType::new(123, 30).schedule(Schedule::hours(9, 17, "Europe/Berlin"));
    let seated = EventType::new(124, 60).seated(2);
    let mut types = vec![regular.clone(), seated, EventType::new(200, 30), EventType::new(201, 30)];
    if name == "errors_400_booker_limit.json" {
        types[0] = regular.booker_limit(1);
    }
    let bench = Bench::new(&types);
    let start = "2030-01-08T13:00:00Z";
    let uid = match name {
        "get.json"
        | "cancel.json"
        | "reschedule.json"
        | "attendees_add.json"
        | "list.json"
        | "errors_400_validation_attendee_email.json"
        | "errors_404_attendees_no_version.json"
        | "errors_400_cancel_reason_required.json"
        | "errors_400_slot_taken.json" => Some(bench.book(123, start, "jane@example.com")),
        "errors_400_booker_limit.json" => Some(bench.book(123, "2030-01-09T09:00:00Z", "jane@example.com")),
        "get_rescheduled_old.json" | "errors_400_reschedule_already_rescheduled.json" => {
            let uid = bench.book(123, start, "jane@example.com");
            bench.post(&format!("/v2/bookings/{uid}/reschedule"), json!({"start": "2030-01-09T09:00:00Z"}));
            Some(uid)
        }
        "errors_400_cancel_already_cancelled.json" => {
            let uid = bench.book(123, start, "jane@example.com");
            bench.post(&format!("/v2/bookings/{uid}/cancel"), json!({"cancellationReason": "first"}));
            Some(uid)
        }
        "create_seated.json" | "list_seated.json" => Some(bench.book(124, start, "max@example.com")),
        "errors_409_seats_full.json" => {
            bench.book(124, start, "max@example.com");
            Some(bench.book(124, start, "erika@example.com"))
        }
        "errors_401_invalid_key.json" => {
            bench.fake.known_keys(&["cal_live_some_other_key"]);
            None
        }
        "errors_429.json" => {
            bench.fake.set_limit_per_minute(1);
            bench.send("GET", "/v2/bookings", &Value::Null, &headers(), &Value::Null);
            None
        }
        _ => None,
    };
    // Answers the fake does not reach by its own rules (team events, a
    // race with an earlier create) are injected; `refusal` picks the envelope.
    let injected = match name {
        "errors_409_booking_conflict.json" => Some((409, "booking_conflict_error")),
        "errors_409_fixed_hosts.json" => Some((409, "Fixed hosts unavailable for booking")),
        "errors_409_round_robin_hosts.json" => Some((409, "Round robin hosts unavailable for booking")),
        "errors_409_no_available_users.json" => Some((409, "No available users found")),
        _ => None,
    };
    if let Some((status, message)) = injected {
        bench.fake.inject([Fault::CreateStatus(status, message.into())]);
    }
    (bench, uid)
}

#[test]
fn the_fake_answers_every_request_fixture_as_upstream_does() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, f) in all_fixtures() {
        if name.starts_with("webhook_") {
            continue; // Cal.com sends those; the fake receives requests only
        }
        let (bench, uid) = arrange(&name);
        let request = &f["request"];
        let mut path = request["path"].as_str().unwrap_or_default().to_string();
        if let Some(uid) = &uid {
            path = path.replace("k9Xw2LmQp4TnRv7sZa1bYc", uid);
        }
        let (status, headers, body) = bench.send(
            request["method"].as_str().unwrap_or("GET"),
            &path,
            &request["query"],
            &request["headers"],
            &request["body"],
        );
        let expected = &f["response"];
        if u64::from(status) != expected["status"].as_u64().unwrap_or(0) {
            failures.push(format!("{name}: status {status}, upstream {}: {body}", expected["status"]));
            continue;
        }
        for header in expected["headers"].as_object().into_iter().flatten().map(|(k, _)| k.to_ascii_lowercase()) {
            if (header.starts_with("x-ratelimit") || header == "x-request-id") && !headers.contains_key(&header) {
                failures.push(format!("{name}: header {header} missing"));
            }
        }
        let mut diffs = Vec::new();
        shape_diff("body", &expected["body"], &body, &mut diffs);
        failures.extend(diffs.into_iter().map(|d| format!("{name}: {d}")));
        checked += 1;
    }
    assert!(failures.is_empty(), "the fake differs from upstream:\n{}", failures.join("\n"));
    assert!(checked >= 30, "{checked} fixtures sent");
}
