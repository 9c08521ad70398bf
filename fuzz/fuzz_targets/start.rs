//! When an appointment starts: `resolve_start` with any spec, any IANA zone
//! and any "now" chrono can hold; `parse_date` and `parse_time` on their own;
//! and a booking request as the Node and WASM interfaces send it (JSON),
//! through `validate_booking_request`.
//!
//! Input: `[zone: u16 LE][now: i64 LE seconds][mode][date: u8 len + bytes][the rest]`.
//! Mode 0: ISO start = the rest; 1: date + time = the rest; 2: the rest is a
//! JSON booking request.
#![no_main]

use callbook::rules::*;
use callbook::*;
use callbook_fuzz::{t0, Reader};
use chrono::{DateTime, Offset, TimeZone, Timelike};
use chrono_tz::TZ_VARIANTS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let tz = TZ_VARIANTS[usize::from(input.u16()) % TZ_VARIANTS.len()];
    // Any instant chrono can represent (years -262143..262142), not just plausible ones.
    let now = DateTime::from_timestamp(input.i64(), 0).unwrap_or_else(t0);
    let mode = input.u8() % 3;
    let date = input.short_str();
    let rest = String::from_utf8_lossy(input.rest()).into_owned();

    // The zone's date at `now`, computed without `DateTime::date_naive`, which
    // panics when the offset pushes a date past chrono's range: the harness
    // must not crash where it only prepares the check.
    let offset = tz.offset_from_utc_datetime(&now.naive_utc()).fix();
    let today = now.naive_utc().checked_add_offset(offset).map_or(now.date_naive(), |t| t.date());
    let day = parse_date(&date, today);
    let time = parse_time(&rest);
    if let Some(t) = time {
        // `HH:MM:60` reads as a leap second (nanosecond >= 1e9, chrono's way):
        // allowed, so only the hour is checked.
        assert!(t.hour() < 24);
    }
    let spec = match mode {
        0 => StartSpec::Iso(rest.clone()),
        1 => StartSpec::DateTime { date: date.clone(), time: rest.clone() },
        _ => {
            let Ok(request) = serde_json::from_str::<BookingRequest>(&rest) else { return };
            let problems = validate_booking_request(&request);
            match request.start_spec() {
                Some(spec) if problems.is_empty() => spec,
                _ => return,
            }
        }
    };
    match resolve_start(&spec, tz, now) {
        Ok(at) => {
            if let (StartSpec::DateTime { .. }, Some(d), Some(t)) = (&spec, day, time) {
                // The instant is that wall-clock time in the zone (the earlier one on a fall-back).
                assert_eq!(at.with_timezone(&tz).naive_local(), d.and_time(t), "{spec:?} in {tz} at {now}");
            }
        }
        Err(e) => assert!(!e.code().is_empty()),
    }
});
