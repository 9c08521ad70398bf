//! A Cal.com webhook delivery: the signature check on any header, the body
//! parser, and the event applied to a MemoryStore holding appointments that
//! Cal.com knows (by the uids of `tests/contract/calcom/webhook_*.json`).
//!
//! Input: `[flags][header: u8 len + bytes][body: the rest]`. Flag bit 0 signs
//! the body validly (else the header is sent as given); bit 1 delivers it to
//! company 2's URL (else company 1's). Whatever arrives, the other
//! company's appointments stay as they were.
#![no_main]

use callbook::calcom::*;
use callbook::store::*;
use callbook::*;
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

    let (company, other, secret) = if flags & 2 == 0 {
        (CompanyId(1), CompanyId(2), WEBHOOK_SECRET.to_string())
    } else {
        (CompanyId(2), CompanyId(1), format!("{WEBHOOK_SECRET}-2"))
    };
    let verified = verify_calcom_signature(body, &header, &secret);
    let parsed = parse_calcom_webhook(body);
    let signature = if flags & 1 == 1 { sign_calcom(body, &secret) } else { header };
    // A delivery that is refused (signature) or unreadable (body) never
    // reaches the store: an empty one is enough, and much cheaper to make.
    let book = if parsed.is_ok() && (flags & 1 == 1 || verified) {
        book_with_synced_appointments()
    } else {
        Callbook::new(Arc::new(MemoryStore::new()))
    };

    let others = |book: &Callbook| -> Vec<Appointment> {
        (1..=3)
            .filter_map(|id| book.appointment(AppointmentId(id)).ok())
            .filter(|a| a.company_id == other)
            .collect()
    };
    let untouched = others(&book);
    // The full path as the HTTP server runs it.
    let outcome = book.calcom_webhook(company, body, &signature);
    assert_eq!(others(&book), untouched, "a delivery to one company changed another's");
    if flags & 1 == 0 && !verified {
        // Refused: for a bad signature, or (on the cheap empty store) before, for an unknown company.
        let code = outcome.as_ref().map_err(|e| e.code().to_string()).err();
        assert!(matches!(code.as_deref(), Some("bad_signature" | "company_not_found")), "{code:?}");
        return;
    }
    let (Ok(event), Ok(first)) = (parsed, outcome) else { return };

    // Applied once, a delivery is done: a replay (Cal.com retries) writes nothing.
    let before = book.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    let again = book.apply_calcom_webhook(company, &event).unwrap_or_else(|e| panic!("a replay fails: {e}"));
    match (&first, &again) {
        (WebhookOutcome::Cancelled { appointment_ids: a }, WebhookOutcome::AlreadyApplied { appointment_ids: b }) => {
            assert_eq!(a, b);
            for id in a {
                let cancelled = book.appointment(*id).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!((cancelled.status, cancelled.company_id), (AppointmentStatus::Cancelled, company));
                let jobs = book.jobs_of(*id).unwrap_or_else(|e| panic!("{e}"));
                assert!(jobs.iter().all(|j| j.state.is_final()), "a cancelled appointment keeps live jobs: {jobs:?}");
            }
        }
        (WebhookOutcome::Cancelled { .. }, other) => panic!("a cancellation replayed gave {other:?}"),
        (WebhookOutcome::Rescheduled { appointment_ids }, _) => {
            for id in appointment_ids {
                let moved = book.appointment(*id).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(moved.company_id, company);
                assert_eq!(Some(moved.starts_at), event.start);
                assert_eq!(Some(moved.ends_at), event.end);
                assert_eq!(moved.calcom_v2_booking_uid, event.uid);
            }
            let ids = appointment_ids.clone();
            assert_eq!(again, WebhookOutcome::AlreadyApplied { appointment_ids: ids }, "a reschedule replayed");
        }
        // A booking made in Cal.com, held once: the replay finds it held.
        (WebhookOutcome::Imported { appointment_ids: a }, WebhookOutcome::AlreadyApplied { appointment_ids: b }) => {
            assert_eq!(a, b);
            let held = book.appointment(a[0]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((held.company_id, held.sync_origin), (company, SyncOrigin::Calcom));
        }
        (WebhookOutcome::Imported { .. }, other) => panic!("an import replayed gave {other:?}"),
        (first, again) => assert_eq!(first, again, "an event that changed nothing changes something on replay"),
    }
    if matches!(again, WebhookOutcome::AlreadyApplied { .. }) {
        assert_eq!(book.stats().unwrap_or_else(|e| panic!("stats: {e}")), before, "a replay wrote");
    }
    // Nothing a webhook does touches the job queue but cancelling jobs.
    let counts = book.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(counts.jobs.values().sum::<u64>(), 3);
});
