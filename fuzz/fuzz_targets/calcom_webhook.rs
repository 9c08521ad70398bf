//! A Cal.com webhook delivery: the signature check on any header, the body
//! parser, and the event applied to a MemoryStore holding appointments that
//! Cal.com knows (by the uids of `tests/contract/calcom/webhook_*.json`).
//!
//! Input: `[flags][header: u8 len + bytes][body: the rest]`. Flag bit 0 signs
//! the body validly (else the header is sent as given).
#![no_main]

use callbook::{
    format_utc, parse_calcom_webhook, sign_calcom, verify_calcom_signature, write, AppointmentStatus, BookingRequest,
    Callbook, CompanyId, MemoryStore, WebhookOutcome,
};
use callbook_fuzz::{fresh_book, t0, Reader, WEBHOOK_SECRET};
use chrono::Duration;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

/// Booking uids Cal.com holds for the appointments made below.
const UIDS: [&str; 3] = ["k9Xw2LmQp4TnRv7sZa1bYc", "r7Tq3WnXb8Kc5MzPv2LsJd", "uid_company_two"];

/// Three appointments (two companies), the first two synced to Cal.com.
fn book_with_synced_appointments() -> Callbook {
    let (book, _clock, _store) = fresh_book();
    let calls = [("call_anon", 1), ("call_known_a", 1), ("call_c2", 2)];
    for (i, (call, company)) in calls.into_iter().enumerate() {
        let start = t0() + Duration::days(7) + Duration::hours(i as i64);
        let request = BookingRequest {
            retell_call_id: call.into(),
            customer_name: "Jane".into(),
            service_id: Some(company),
            start: Some(format_utc(&start)),
            ..Default::default()
        };
        let booked = book.book(&request).unwrap_or_else(|e| panic!("setup books: {e}"));
        let (id, uid, now) = (booked.appointment_id, UIDS[i], book.now());
        let company = CompanyId(company);
        write(&**book.store(), move |tx| tx.record_sync_success(company, id, 412345 + id.0, uid, None, now))
            .unwrap_or_else(|e| panic!("setup syncs: {e}"));
    }
    book
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let flags = input.u8();
    let header = input.short_str();
    let body = input.rest();

    let verified = verify_calcom_signature(body, &header, WEBHOOK_SECRET);
    let parsed = parse_calcom_webhook(body);
    let signature = if flags & 1 == 1 { sign_calcom(body, WEBHOOK_SECRET) } else { header };
    // A delivery that is refused (signature) or unreadable (body) never
    // reaches the store: an empty one is enough, and much cheaper to make.
    let book = if parsed.is_ok() && (flags & 1 == 1 || verified) {
        book_with_synced_appointments()
    } else {
        Callbook::new(Arc::new(MemoryStore::new()))
    };

    // The full path as the HTTP server runs it.
    let outcome = book.calcom_webhook(body, &signature, WEBHOOK_SECRET);
    if flags & 1 == 0 && !verified {
        assert_eq!(outcome.as_ref().map_err(|e| e.code()), Err("bad_signature"));
        return;
    }
    let (Ok(event), Ok(first)) = (parsed, outcome) else { return };

    // Applied once, a delivery is done: a replay (Cal.com retries) writes nothing.
    let before = book.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    let again = book.apply_calcom_webhook(&event).unwrap_or_else(|e| panic!("a replay fails: {e}"));
    match (&first, &again) {
        (WebhookOutcome::Cancelled { appointment_id: a }, WebhookOutcome::AlreadyApplied { appointment_id: b }) => {
            assert_eq!(a, b);
            let cancelled = book.appointment(*a).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
            let jobs = book.jobs_of(*a).unwrap_or_else(|e| panic!("{e}"));
            assert!(jobs.iter().all(|j| j.state.is_final()), "a cancelled appointment keeps live jobs: {jobs:?}");
        }
        (WebhookOutcome::Cancelled { .. }, other) => panic!("a cancellation replayed gave {other:?}"),
        (WebhookOutcome::Rescheduled { appointment_id: a }, _) => {
            let moved = book.appointment(*a).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(Some(moved.starts_at), event.start);
            assert_eq!(Some(moved.ends_at), event.end);
            assert_eq!(moved.calcom_v2_booking_uid, event.uid);
            // Cal.com's uids are unique: moving one booking onto another's uid
            // is no delivery Cal.com sends, and then a replay may find the other.
            let known = |u: &Option<String>| u.as_deref().is_some_and(|u| UIDS.contains(&u));
            if !(known(&event.uid) && known(&event.reschedule_uid) && event.uid != event.reschedule_uid) {
                assert_eq!(again, WebhookOutcome::AlreadyApplied { appointment_id: *a }, "a reschedule replayed");
            }
        }
        (first, again) => assert_eq!(first, again, "an event that changed nothing changes something on replay"),
    }
    if matches!(again, WebhookOutcome::AlreadyApplied { .. }) {
        assert_eq!(book.stats().unwrap_or_else(|e| panic!("stats: {e}")), before, "a replay wrote");
    }
    // Nothing a webhook does touches the job queue but cancelling jobs.
    let counts = book.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(counts.jobs.values().sum::<u64>(), 3);
});
