//! A Retell function call through the whole agent: signature check, body
//! parse, argument validation, then a booking or an availability check on a
//! fresh MemoryStore with the fuzz directory imported.
//!
//! Input: up to four frames, each `[flags][header: u8 len + bytes][body: u16 LE len + bytes]`
//! (several frames let a check_availability be followed by the booking it
//! remembers). Flags: bit 0 signs the body validly with the agent's key (else
//! the header is sent as given), bit 3 makes that signature stale, bits 1-2
//! name the function the URL gives (none, book, check, the header text),
//! bits 4-7 move the clock that many hours after the frame.
#![no_main]

use callbook::retell::*;
use callbook::*;
use callbook_fuzz::{fresh_book, Reader, ScriptedCalcom, RETELL_KEY};
use chrono::Duration;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let (book, clock, _store) = fresh_book();
    let availability =
        Availability::new(book.clone(), Arc::new(ScriptedCalcom::default()), AvailabilityConfig::default());
    let agent = Agent::new(book.clone(), Secret::new(RETELL_KEY)).with_availability(Arc::new(availability));
    let mut input = Reader::new(data);
    for _ in 0..4 {
        if input.is_empty() {
            break;
        }
        let flags = input.u8();
        let header = input.short_str();
        let body = input.long_bytes();
        let now = book.now();
        let now_ms = now.timestamp_millis();

        // The header parser on its own, with arbitrary text and an arbitrary "now".
        let _ = verify_retell_signature(body, &header, RETELL_KEY, now_ms);
        let _ = verify_retell_signature(body, &header, RETELL_KEY, i64::from_le_bytes(pad(body)));

        let function = match (flags >> 1) & 3 {
            0 => None,
            1 => Some("book_appointment"),
            2 => Some("check_availability"),
            _ => Some(header.as_str()),
        };
        let signed = flags & 1 == 1;
        let stale = flags & 8 != 0;
        let signature = if signed {
            let skew = if stale { MAX_SKEW_MS + 1 } else { 0 };
            sign_retell(body, RETELL_KEY, now_ms - skew)
        } else {
            header.clone()
        };
        // The parsers the agent uses, called directly too.
        if let Ok(call) = parse_function_call(body, function) {
            assert!(!call.call_id.0.trim().is_empty(), "a parsed call has a call id");
            let _ = booking_request_from_args(&call.call_id, &call.args);
        }

        let reply = agent.answer(body, &signature, function);

        // What the agent answers, whatever it was sent.
        assert!(matches!(reply.status, 200 | 400 | 401), "status {} for {:?}", reply.status, reply.body);
        if signed && !stale {
            assert_ne!(reply.status, 401, "a valid signature is refused: {signature}");
        }
        if signed && stale {
            assert_eq!(reply.status, 401, "a stale signature is taken");
        }
        let ok = reply.body.get("ok").and_then(Value::as_bool);
        assert!(ok.is_some(), "no ok flag: {:?}", reply.body);
        assert!(
            reply.body.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()),
            "no message: {:?}",
            reply.body
        );
        if ok == Some(true) {
            assert_eq!(reply.status, 200);
        }
        if let Some(booking) = &reply.booking {
            assert_eq!(ok, Some(true));
            assert!(booking.starts_at > now, "booked in the past: {booking:?}");
            assert_eq!(booking.anonymous, booking.customer_phone.starts_with("anonymous_"));
        }
        clock.advance(Duration::hours(i64::from(flags >> 4)));
    }
});

/// The first 8 bytes of `b`, zero-padded: an arbitrary "now" for the header check.
fn pad(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, x) in out.iter_mut().zip(b) {
        *o = *x;
    }
    out
}
