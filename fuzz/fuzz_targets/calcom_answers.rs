//! Cal.com's booking answers as the HTTP client reads them: a JSON value
//! shaped like a recorded response (`{status, headers, body}`, as in
//! `tests/contract/calcom/*.json`; a bare body works too). The body goes
//! through `CalBooking` deserialisation (`data` of create/get),
//! `parse_booking_page` (list), `key_match` and `error_message`; the headers
//! through `rate_limit_headers` and `retry_after`.
#![no_main]

use callbook::calcom::*;
use callbook_fuzz::t0;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = serde_json::from_slice::<Value>(data) else { return };
    let body = answer.get("body").unwrap_or(&answer);
    let status = answer.get("status").and_then(Value::as_u64).map_or(200, |s| s as u16);

    // Headers as an HTTP library hands them: looked up case-insensitively.
    let headers: Vec<(String, String)> = answer
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        })
        .into_iter()
        .flatten()
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let mut throttlers = vec![DEFAULT_THROTTLER.to_string(), ATTENDEES_THROTTLER.to_string()];
    throttlers.extend(headers.iter().filter_map(|(k, _)| k.strip_prefix("x-ratelimit-limit-").map(str::to_string)));
    for name in &throttlers {
        if let Some(seen) = rate_limit_headers(name, header) {
            assert!(seen.reset >= chrono::Duration::zero() && seen.reset <= chrono::Duration::hours(1));
        }
    }
    if let Some(wait) = retry_after(status, header, t0()) {
        assert!(wait >= chrono::Duration::zero(), "a negative wait: {wait}");
    }

    // An error answer: its message, and what the worker makes of it.
    // An empty message is possible (Cal.com may send `"message": ""`).
    let message = error_message(body);
    let _ = (is_slot_taken(&message), is_booker_limit(&message));
    let class = classify(&ApiFailure::Status { status, message, retry_after: None });
    assert!(!class.code.is_empty());

    // create/get: `data` is one booking.
    for candidate in [body.get("data"), Some(body)].into_iter().flatten() {
        if let Ok(booking) = serde_json::from_value::<CalBooking>(candidate.clone()) {
            check_booking(&booking);
        }
    }
    // list: `data` is a page of bookings.
    if let Ok(page) = parse_booking_page(body) {
        for booking in &page.bookings {
            check_booking(booking);
        }
    }
});

fn check_booking(booking: &CalBooking) {
    // The key the worker looks for, and the key this booking carries (if any).
    let carried = booking
        .metadata
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .or_else(|| booking.attendees.iter().find_map(|a| a.metadata.as_ref()?.get(METADATA_KEY)))
        .and_then(Value::as_str)
        .map(str::to_string);
    let _ = key_match(booking, "cb-1-10-1-1893488400");
    if let Some(key) = carried {
        assert!(matches!(key_match(booking, &key), KeyMatch::Mine { .. }), "its own key is not found: {booking:?}");
    }
    // The worker stores what it reads and may serialise it again.
    let text = serde_json::to_value(booking).unwrap_or_else(|e| panic!("serialises: {e}"));
    let back: CalBooking = serde_json::from_value(text).unwrap_or_else(|e| panic!("reads back: {e}"));
    assert_eq!(&back, booking);
}
