//! One conformance suite, written once, run against every store (see
//! `stores.rs`): the booking rules, tenant isolation and the job queue must
//! behave the same on SQLite, in memory and on the server databases.

#![allow(dead_code)]

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::retell::*;
use callbook::rules::*;
use callbook::store::*;
use callbook::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::Arc;

pub type MakeStore = fn() -> Arc<dyn Store>;

mod health;
mod journey;
#[allow(unused_imports)]
pub use health::*;
#[allow(unused_imports)]
pub use journey::*;

/// Tuesday 2030-01-01 08:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 8, 0, 0).single().expect("valid time")
}

pub const FIXTURE: &str = r#"{
  "companies": [
    {"id": 1, "name": "Salon Berlin", "calcom_api_key": "cal_live_secret_one", "calcom_webhook_secret": "whsec_one"},
    {"id": 2, "name": "Praxis Hamburg", "calcom_webhook_secret": "whsec_two"}
  ],
  "branches": [
    {"id": 1, "company_id": 1, "name": "Mitte", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+49 30 1234567"},
    {"id": 2, "company_id": 2, "name": "Altona", "timezone": "Europe/Berlin", "phone_number": "+49 40 1234567"},
    {"id": 3, "company_id": 1, "name": "Manhattan", "timezone": "America/New_York", "country": "US", "phone_number": "+1 212 555 0100"}
  ],
  "services": [
    {"id": 1, "company_id": 1, "name": "Haircut", "calcom_event_type_id": 1001, "duration_minutes": 30},
    {"id": 2, "company_id": 2, "name": "Checkup", "calcom_event_type_id": 2001, "duration_minutes": 45},
    {"id": 3, "company_id": 1, "name": "Colour", "calcom_event_type_id": 1002, "duration_minutes": 60, "capacity": 2}
  ],
  "calls": [
    {"id": 10, "retell_call_id": "call_anon", "company_id": 1, "branch_id": 1, "from_number": "anonymous"},
    {"id": 11, "retell_call_id": "call_known_a", "company_id": 1, "branch_id": 1, "from_number": "+49 151 2345678"},
    {"id": 12, "retell_call_id": "call_known_b", "to_number": "+49301234567", "from_number": "0151 2345678"},
    {"id": 13, "retell_call_id": "call_known_c", "company_id": 1, "branch_id": 1, "from_number": "+491512345678"},
    {"id": 14, "retell_call_id": "call_c2", "company_id": 2, "branch_id": 2, "from_number": "+491512345678"},
    {"id": 15, "retell_call_id": "call_no_company", "from_number": "+491700000001"},
    {"id": 16, "retell_call_id": "call_no_branch", "company_id": 1, "from_number": "+491700000002"},
    {"id": 17, "retell_call_id": "call_ny", "branch_id": 3, "from_number": "(212) 555-0199"},
    {"id": 18, "retell_call_id": "call_anon_2", "company_id": 1, "branch_id": 1, "from_number": "sip:anonymous@anonymous.invalid"},
    {"id": 19, "retell_call_id": "call_c2_anon", "company_id": 2, "branch_id": 2, "from_number": "restricted"}
  ]
}"#;

/// The fixture's event types as Cal.com holds them: longer than the local
/// services (Cal.com's length decides a booking's end), and the service
/// with a capacity is a seated event type.
pub fn fixture_event_types() -> Vec<EventType> {
    vec![EventType::new(1001, 45), EventType::new(1002, 60).seated(2), EventType::new(2001, 50)]
}

pub struct Env {
    pub book: Callbook,
    pub clock: Arc<ManualClock>,
}

pub fn env(make: MakeStore) -> Env {
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(make()).with_clock(clock.clone());
    book.import(&ImportData::from_json(FIXTURE).expect("fixture parses")).expect("fixture imports");
    Env { book, clock }
}

pub fn request(call: &str, name: &str, start: &str) -> BookingRequest {
    BookingRequest {
        retell_call_id: call.into(),
        customer_name: name.into(),
        service_id: Some(1),
        start: Some(start.into()),
        ..Default::default()
    }
}

pub(crate) fn totals(book: &Callbook) -> (u64, u64, u64) {
    let s = book.stats().expect("stats");
    (s.customers_known + s.customers_anonymous, s.appointments.values().sum(), s.jobs.values().sum())
}

fn appointment_of(book: &Callbook, b: &Booking) -> Appointment {
    book.appointment(b.appointment_id).expect("appointment exists")
}

// ---------------------------------------------------------------- directory

pub fn import_is_idempotent_and_registers_calls(make: MakeStore) {
    let e = env(make);
    let again = e.book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("re-import");
    assert_eq!(again, ImportSummary { companies: 2, branches: 3, services: 3, calls: 10 });
    // Found by the dialled number, company from the branch.
    let call =
        e.book.register_call(&NewCall { retell_call_id: "call_known_b".into(), ..Default::default() }).expect("known");
    assert_eq!((call.company_id, call.branch_id), (Some(CompanyId(1)), Some(BranchId(1))));
    let new = NewCall {
        retell_call_id: "call_new".into(),
        to_number: Some("+49 40 1234567".into()),
        from_number: Some("+4915112345678".into()),
        ..Default::default()
    };
    let first = e.book.register_call(&new).expect("registers");
    assert_eq!((first.company_id, first.branch_id), (Some(CompanyId(2)), Some(BranchId(2))));
    let second = e.book.register_call(&new).expect("no-op");
    assert_eq!(first, second);
    let err = e
        .book
        .register_call(&NewCall {
            retell_call_id: "call_x".into(),
            company_id: Some(CompanyId(2)),
            branch_id: Some(BranchId(1)),
            ..Default::default()
        })
        .expect_err("branch of another company");
    assert_eq!(err.code(), "branch_not_in_company");
}

pub fn import_rejects_bad_data_and_writes_nothing(make: MakeStore) {
    let book = Callbook::new(make()).with_clock(Arc::new(ManualClock::new(t0())));
    let bad = r#"{"companies":[{"id":1,"name":"A"}],
        "branches":[{"id":1,"company_id":1,"name":"B","timezone":"Mars/Olympus"}]}"#;
    let err = book.import(&ImportData::from_json(bad).expect("parses")).expect_err("bad zone");
    assert_eq!(err.code(), "invalid_import");
    let orphan = r#"{"services":[{"id":1,"company_id":9,"name":"S","duration_minutes":30}]}"#;
    assert_eq!(
        book.import(&ImportData::from_json(orphan).expect("parses")).expect_err("orphan").code(),
        "invalid_import"
    );
    assert_eq!(ImportData::from_json(r#"{"companiez":[]}"#).expect_err("unknown key").code(), "invalid_import");
    // The first import failed as a whole: company 1 was not written.
    let read = callbook::store::read(&**book.store(), |tx| tx.company(CompanyId(1))).expect("reads");
    assert!(read.is_none());
}

// ------------------------------------------------------------- call context

pub fn call_context_errors_write_nothing(make: MakeStore) {
    let e = env(make);
    // A call row written by another system with a branch of another company.
    callbook::store::write(&**e.book.store(), |tx| {
        tx.insert_call(
            &NewCall {
                id: Some(CallDbId(99)),
                retell_call_id: "call_cross".into(),
                company_id: Some(CompanyId(2)),
                branch_id: Some(BranchId(1)),
                from_number: Some("+491512345678".into()),
                ..Default::default()
            },
            t0(),
        )
    })
    .expect("raw insert");
    let before = totals(&e.book);
    let start = "2030-01-08T13:00:00Z";
    let cases = [
        (request("call_missing", "Jane", start), "call_not_found"),
        (request("call_no_company", "Jane", start), "call_missing_company"),
        (request("call_no_branch", "Jane", start), "call_missing_branch"),
        (request("call_cross", "Jane", start), "branch_not_in_company"),
        (BookingRequest { service_id: Some(2), ..request("call_known_a", "Jane", start) }, "service_not_in_company"),
        (BookingRequest { service_id: Some(77), ..request("call_known_a", "Jane", start) }, "service_not_found"),
        (BookingRequest { service_id: None, ..request("call_known_a", "Jane", start) }, "service_required"),
        (request("call_known_a", "Jane", "2029-12-31T13:00:00Z"), "start_in_past"),
        (request("call_known_a", "", start), "customer_name_required"),
        (request("call_known_a", "Jane", "whenever"), "invalid_start"),
    ];
    for (req, code) in cases {
        let err = e.book.book(&req).expect_err(code);
        assert_eq!(err.code(), code, "{req:?}");
        assert_eq!(totals(&e.book), before, "nothing written for {code}");
    }
    // With one service, the service may be left out.
    let b =
        e.book.book(&BookingRequest { service_id: None, ..request("call_c2", "Jane", start) }).expect("only service");
    assert_eq!(appointment_of(&e.book, &b).service_id, ServiceId(2));
}

// ---------------------------------------------------------------- customers

pub fn anonymous_callers_always_get_a_new_customer(make: MakeStore) {
    let e = env(make);
    let mut req = request("call_known_a", "Jane Doe", "2030-01-08T13:00:00Z");
    req.customer_email = Some("jane@example.com".into());
    let known = e.book.book(&req).expect("known caller");
    assert!(!known.anonymous);

    let mut seen = std::collections::HashSet::new();
    for (i, call) in ["call_anon", "call_anon", "call_anon_2"].iter().enumerate() {
        let mut r = request(call, "Jane Doe", &format!("2030-01-0{}T13:00:00Z", 2 + i));
        r.customer_email = Some(" Jane@Example.com ".into());
        let b = e.book.book(&r).expect("anonymous booking succeeds");
        assert!(b.anonymous);
        assert_ne!(b.customer_id, known.customer_id, "never matched by name or email");
        assert!(seen.insert(b.customer_id), "a new customer every time");
        let call_db_id = if *call == "call_anon" { 10 } else { 18 };
        assert_eq!(b.customer_phone, placeholder_phone("Jane Doe", CallDbId(call_db_id), t0().timestamp()));
        let customer = e.book.customer(CompanyId(1), b.customer_id).expect("reads").expect("exists");
        assert_eq!(customer.source, CustomerSource::RetellWebhookAnonymous);
        assert_eq!(customer.email, None, "the email belongs to someone else");
        assert!(customer.anonymity_reason.is_some());
        let a = appointment_of(&e.book, &b);
        assert_eq!(a.metadata["customer_email"], "jane@example.com");
        assert_eq!(a.metadata["email_conflict"], true);
        assert!(a.requires_manual_review);
        assert_eq!(a.review_reason.as_deref(), Some("email_conflict"));
        assert_eq!(a.manual_review_flagged_at, Some(t0()));
    }
    // An anonymous caller with a free email keeps it.
    let mut r = request("call_anon", "Max", "2030-01-09T13:00:00Z");
    r.customer_email = Some("max at example dot com".into());
    let b = e.book.book(&r).expect("books");
    let c = e.book.customer(CompanyId(1), b.customer_id).expect("reads").expect("exists");
    assert_eq!(c.email.as_deref(), Some("max@example.com"));
    assert_eq!(c.anonymity_reason, Some(AnonymityReason::WithheldWord));
    assert!(!appointment_of(&e.book, &b).requires_manual_review);
}

pub fn known_callers_are_matched_by_e164_within_their_company(make: MakeStore) {
    let e = env(make);
    let ids: Vec<Booking> = ["call_known_a", "call_known_b", "call_known_c"]
        .iter()
        .enumerate()
        .map(|(i, call)| e.book.book(&request(call, "Max", &format!("2030-01-0{}T10:00:00Z", 2 + i))).expect("books"))
        .collect();
    assert!(ids.iter().all(|b| b.customer_id == ids[0].customer_id && b.customer_phone == "+491512345678"));
    let c = e.book.customer(CompanyId(1), ids[0].customer_id).expect("reads").expect("exists");
    assert_eq!(c.source, CustomerSource::RetellWebhook);
    // Same phone in another company: another customer, and company 1's customer is invisible there.
    let other = e
        .book
        .book(&BookingRequest { service_id: Some(2), ..request("call_c2", "Max", "2030-01-02T10:00:00Z") })
        .expect("books");
    assert_ne!(other.customer_id, ids[0].customer_id);
    assert!(e.book.customer(CompanyId(2), ids[0].customer_id).expect("reads").is_none());
    // A US branch reads national numbers as US numbers.
    let ny = e.book.book(&request("call_ny", "Ann", "2030-01-02T15:00:00Z")).expect("books");
    assert_eq!(ny.customer_phone, "+12125550199");
}

pub fn email_rules(make: MakeStore) {
    let e = env(make);
    let mut r = request("call_known_a", "Max", "2030-01-02T10:00:00Z");
    r.customer_email = Some("   ".into());
    let b = e.book.book(&r).expect("books");
    let c = e.book.customer(CompanyId(1), b.customer_id).expect("reads").expect("exists");
    assert_eq!(c.email, None, "blank is NULL, never ''");

    r.start = Some("2030-01-03T10:00:00Z".into());
    r.customer_email = Some("max at home".into());
    let b = e.book.book(&r).expect("books");
    let a = appointment_of(&e.book, &b);
    assert_eq!(a.metadata["customer_email_raw"], "max at home");
    assert_eq!(a.metadata["customer_email"], serde_json::Value::Null);
    assert_eq!(e.book.customer(CompanyId(1), b.customer_id).expect("reads").expect("exists").email, None);

    // A known customer without email gets the first valid one.
    r.start = Some("2030-01-04T10:00:00Z".into());
    r.customer_email = Some("Max Punkt Muster at Example dot org".into());
    let b = e.book.book(&r).expect("books");
    assert_eq!(
        e.book.customer(CompanyId(1), b.customer_id).expect("reads").expect("exists").email.as_deref(),
        Some("max.muster@example.org")
    );

    // The same email in another company is free there (UNIQUE is per company).
    let mut r2 = BookingRequest { service_id: Some(2), ..request("call_c2", "Max", "2030-01-02T10:00:00Z") };
    r2.customer_email = Some("max.muster@example.org".into());
    let b2 = e.book.book(&r2).expect("books");
    assert_eq!(
        e.book.customer(CompanyId(2), b2.customer_id).expect("reads").expect("exists").email.as_deref(),
        Some("max.muster@example.org")
    );

    // A new known caller whose email belongs to another customer: booked, email NULL, flagged.
    e.book
        .register_call(&NewCall {
            retell_call_id: "call_new".into(),
            branch_id: Some(BranchId(1)),
            from_number: Some("+4915199999999".into()),
            ..Default::default()
        })
        .expect("registers");
    let mut r3 = request("call_new", "Other", "2030-01-05T10:00:00Z");
    r3.customer_email = Some("max.muster@example.org".into());
    let b3 = e.book.book(&r3).expect("books");
    assert_ne!(b3.customer_id, b.customer_id);
    assert_eq!(e.book.customer(CompanyId(1), b3.customer_id).expect("reads").expect("exists").email, None);
    assert_eq!(appointment_of(&e.book, &b3).review_reason.as_deref(), Some("email_conflict"));
}

// ------------------------------------------------------------- appointments

pub fn appointment_has_every_field_and_one_job(make: MakeStore) {
    let e = env(make);
    let mut r = request("call_known_a", "Jürgen Müller", "x");
    r.start = None;
    r.date = Some("morgen".into());
    r.time = Some("14:30".into());
    r.customer_email = Some("juergen@example.de".into());
    let b = e.book.book(&r).expect("books");
    assert_eq!(format_utc(&b.starts_at), "2030-01-02T13:30:00Z");
    assert_eq!((b.status, b.calcom_sync_status), (AppointmentStatus::Confirmed, SyncStatus::Pending));
    let a = appointment_of(&e.book, &b);
    assert_eq!(a.customer_id, b.customer_id);
    assert_eq!(
        (a.company_id, a.branch_id, a.service_id, a.call_id),
        (CompanyId(1), BranchId(1), ServiceId(1), Some(CallDbId(11)))
    );
    assert_eq!(a.ends_at - a.starts_at, Duration::minutes(30));
    assert_eq!(a.sync_origin, SyncOrigin::Retell);
    assert_eq!(a.metadata["customer_name"], "Jürgen Müller");
    assert_eq!(a.metadata["customer_email"], "juergen@example.de");
    assert_eq!(a.metadata["customer_phone"], "+491512345678");
    assert_eq!((a.calcom_v2_booking_id, a.calcom_v2_booking_uid.as_deref()), (None, None));
    assert_eq!((a.sync_error_code.as_deref(), a.sync_error_message.as_deref(), a.sync_attempt_count), (None, None, 0));
    assert_eq!((a.sync_verified_at, a.requires_manual_review, a.manual_review_flagged_at), (None, false, None));
    assert_eq!((a.created_at, a.updated_at), (t0(), t0()));
    let jobs = e.book.jobs_of(a.id).expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].kind, jobs[0].state, jobs[0].attempt, jobs[0].max_attempts),
        (JobKind::Create, JobState::Available, 0, 4)
    );
    assert_eq!(jobs[0].run_at, t0());
}

pub fn booking_is_idempotent(make: MakeStore) {
    let e = env(make);
    let r = request("call_anon", "Jane", "2030-01-08T13:00:00+01:00");
    let first = e.book.book(&r).expect("books");
    e.clock.advance(Duration::seconds(20));
    // A retried function call, even with the start written another way.
    let again =
        e.book.book(&BookingRequest { start: Some("2030-01-08T12:00:00Z".into()), ..r.clone() }).expect("replays");
    assert_eq!(first, again);
    assert_eq!(totals(&e.book), (1, 1, 1));
    let other_service = e.book.book(&BookingRequest { service_id: Some(3), ..r.clone() }).expect("books");
    assert_ne!(other_service.appointment_id, first.appointment_id);
    assert_eq!(totals(&e.book).1, 2);
}

pub fn start_times_in_the_branch_zone(make: MakeStore) {
    let e = env(make);
    let at = |call: &str, date: &str, time: &str| {
        let mut r = request(call, "Jane", "");
        r.start = None;
        r.date = Some(date.into());
        r.time = Some(time.into());
        e.book.book(&r)
    };
    // 2030-01-01 is a Tuesday.
    assert_eq!(format_utc(&at("call_anon", "heute", "18:00").expect("books").starts_at), "2030-01-01T17:00:00Z");
    assert_eq!(format_utc(&at("call_anon", "übermorgen", "9:00").expect("books").starts_at), "2030-01-03T08:00:00Z");
    assert_eq!(format_utc(&at("call_anon", "next Tuesday", "9:00").expect("books").starts_at), "2030-01-08T08:00:00Z");
    assert_eq!(format_utc(&at("call_ny", "tomorrow", "09:00").expect("books").starts_at), "2030-01-02T14:00:00Z");
    let err = at("call_anon", "today", "08:59").expect_err("past");
    assert_eq!(err.code(), "start_in_past");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(at("call_anon", "2030-03-31", "02:30").expect_err("gap").code(), "nonexistent_local_time");
}

// -------------------------------------------------------------------- queue

fn booked_jobs(e: &Env, n: usize) -> Vec<AppointmentId> {
    (0..n)
        .map(|i| {
            let start = t0() + Duration::days(1) + Duration::minutes(30 * i as i64);
            e.book.book(&request("call_anon", "Q", &format_utc(&start))).expect("books").appointment_id
        })
        .collect()
}

pub fn queue_claims_complete_retry_discard(make: MakeStore) {
    let e = env(make);
    let ids = booked_jobs(&e, 3);
    let claimed = e.book.claim_jobs("w1", 2).expect("claims");
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|j| j.state == JobState::Running && j.attempt == 1 && j.lease_token == 1));
    assert_eq!(claimed[0].locked_by.as_deref(), Some("w1"));
    assert_eq!(claimed[0].locked_until, Some(t0() + Policy::default().lease));
    // The third is still there, the first two are leased.
    let rest = e.book.claim_jobs("w2", 10).expect("claims");
    assert_eq!(rest.iter().map(|j| j.appointment_id).collect::<Vec<_>>(), vec![ids[2]]);
    assert!(e.book.claim_jobs("w3", 10).expect("claims").is_empty());

    // complete
    assert!(e.book.finish_job(&claimed[0], JobEvent::Succeed, None).expect("finishes"));
    assert_eq!(e.book.jobs_of(ids[0]).expect("jobs")[0].state, JobState::Completed);
    // retry at a time: not due before it
    let at = t0() + Duration::seconds(5);
    assert!(e
        .book
        .finish_job(&claimed[1], JobEvent::Fail { retryable: true, retry_at: at }, Some("503"))
        .expect("fails"));
    let job = &e.book.jobs_of(ids[1]).expect("jobs")[0];
    assert_eq!(
        (job.state, job.run_at, job.last_error.as_deref(), job.locked_by.as_deref()),
        (JobState::Retryable, at, Some("503"), None)
    );
    e.clock.advance(Duration::seconds(4));
    assert!(e.book.claim_jobs("w1", 10).expect("claims").is_empty());
    e.clock.advance(Duration::seconds(1));
    let again = e.book.claim_jobs("w1", 10).expect("claims");
    assert_eq!((again.len(), again[0].attempt, again[0].lease_token), (1, 2, 2));
    // discard
    assert!(e
        .book
        .finish_job(&again[0], JobEvent::Fail { retryable: false, retry_at: at }, Some("400"))
        .expect("fails"));
    assert_eq!(e.book.jobs_of(ids[1]).expect("jobs")[0].state, JobState::Discarded);
    // a finished job can't be finished twice
    assert!(!e.book.finish_job(&again[0], JobEvent::Succeed, None).expect("refused"));
    // defer gives the attempt back
    assert!(e
        .book
        .finish_job(&rest[0], JobEvent::Defer { until: e.book.now() + Duration::seconds(60) }, None)
        .expect("defers"));
    let deferred = &e.book.jobs_of(ids[2]).expect("jobs")[0];
    assert_eq!((deferred.state, deferred.attempt), (JobState::Retryable, 0));
}

pub fn expired_leases_are_claimed_again_and_lost_leases_write_nothing(make: MakeStore) {
    let e = env(make);
    let ids = booked_jobs(&e, 1);
    let first = e.book.claim_jobs("dead-worker", 1).expect("claims").remove(0);
    e.clock.advance(Policy::default().lease - Duration::seconds(1));
    assert!(e.book.claim_jobs("w2", 1).expect("claims").is_empty(), "lease still live");
    e.clock.advance(Duration::seconds(1));
    let second = e.book.claim_jobs("w2", 1).expect("claims").remove(0);
    assert_eq!(
        (second.id, second.attempt, second.lease_token, second.locked_by.as_deref()),
        (first.id, 2, 2, Some("w2"))
    );
    // The first worker wakes up: its result is refused.
    assert!(!e.book.finish_job(&first, JobEvent::Succeed, None).expect("refused"));
    assert_eq!(e.book.jobs_of(ids[0]).expect("jobs")[0].state, JobState::Running);
    assert!(e.book.finish_job(&second, JobEvent::Succeed, None).expect("finishes"));
}

pub fn exhausted_expired_jobs_are_discarded_and_flagged(make: MakeStore) {
    let e = env(make);
    let ids = booked_jobs(&e, 1);
    let lease = Policy::default().lease;
    for _ in 0..4 {
        let job = e.book.claim_jobs("crashy", 1).expect("claims");
        assert_eq!(job.len(), 1);
        e.clock.advance(lease);
    }
    assert!(e.book.claim_jobs("w", 1).expect("claims").is_empty(), "no fifth attempt");
    assert_eq!(e.book.rescue_expired().expect("rescues"), 1);
    let job = &e.book.jobs_of(ids[0]).expect("jobs")[0];
    assert_eq!((job.state, job.attempt), (JobState::Discarded, 4));
    let a = e.book.appointment(ids[0]).expect("exists");
    assert!(a.requires_manual_review);
    assert_eq!(a.review_reason.as_deref(), Some("sync_failed"));
    assert_eq!(e.book.rescue_expired().expect("rescues"), 0);
}

pub fn one_unfinished_job_per_appointment_and_kind(make: MakeStore) {
    let e = env(make);
    let ids = booked_jobs(&e, 1);
    let dup = NewJob {
        appointment_id: ids[0],
        company_id: CompanyId(1),
        kind: JobKind::Create,
        max_attempts: 4,
        run_at: t0(),
    };
    let first = dup.clone();
    let err = callbook::store::write(&**e.book.store(), move |tx| tx.insert_job(&first, t0())).expect_err("unique");
    assert_eq!(err.code(), "storage");
    // Once finished, a new one may be queued (a manual retry).
    let job = e.book.claim_jobs("w", 1).expect("claims").remove(0);
    e.book.finish_job(&job, JobEvent::Fail { retryable: false, retry_at: t0() }, Some("400")).expect("discards");
    callbook::store::write(&**e.book.store(), move |tx| tx.insert_job(&dup, t0()))
        .expect("allowed after the first finished");
}

pub fn stats_count_everything(make: MakeStore) {
    let e = env(make);
    e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    e.book.book(&request("call_known_a", "B", "2030-01-02T10:00:00Z")).expect("books");
    let s = e.book.stats().expect("stats");
    assert_eq!((s.customers_known, s.customers_anonymous), (1, 1));
    assert_eq!(s.appointments["pending"], 2);
    assert_eq!(s.jobs["available"], 2);
    assert_eq!(s.manual_review, 0);
}

/// Runs every case of the suite against one store.
pub const RETELL_KEY: &str = "key_retell_test";

/// A signed Retell function call, as Retell sends it at the clock's time.
pub fn retell(agent: &Agent, body: &str) -> AgentReply {
    let now = agent.callbook().now().timestamp_millis();
    agent.answer(body.as_bytes(), &sign_retell(body.as_bytes(), RETELL_KEY, now), None)
}

pub fn retell_function_calls_book_in_one_transaction(make: MakeStore) {
    let e = env(make);
    let agent = Agent::new(e.book.clone(), Secret::new(RETELL_KEY));
    // A new call: its call object registers it (branch by the dialled number) in the booking's transaction.
    let body = r#"{"name":"book_appointment","call":{"call_id":"call_new","from_number":"+49 151 999 0000",
        "to_number":"+49301234567","direction":"inbound"},"args":{"customer_name":"Jürgen","date":"2030-01-08","time":"14:30","service_id":"1"}}"#;
    let reply = retell(&agent, body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["ok"], true);
    assert_eq!(
        reply.body["message"],
        "Ihr Termin ist gebucht: Dienstag, 8. Januar um 14:30 Uhr. Wir freuen uns auf Sie."
    );
    assert_eq!(reply.body["starts_at"], "2030-01-08T13:30:00Z");
    let id = AppointmentId(reply.body["appointment_id"].as_i64().expect("an id"));
    let a = e.book.appointment(id).expect("stored");
    assert_eq!((a.company_id, a.branch_id), (CompanyId(1), BranchId(1)));
    // Retell retries a timed-out call: the same appointment, nothing new.
    let before = totals(&e.book);
    let again = retell(&agent, body);
    assert_eq!(again.body["appointment_id"], reply.body["appointment_id"]);
    assert_eq!(totals(&e.book), before);
    // "Args only": the call id is among the args; a branch in New York hears English.
    let reply =
        retell(&agent, r#"{"call_id":"call_ny","customer_name":"Ann","start":"2030-01-09T15:00:00Z","service_id":1}"#);
    assert_eq!(
        reply.body["message"],
        "You're booked for Wednesday, 9 January at 10:00. We look forward to seeing you."
    );
    // A domain refusal is 200 with ok:false, spoken in the branch's language, and writes nothing.
    let before = totals(&e.book);
    let reply = retell(
        &agent,
        r#"{"name":"bookAppointment","args":{"call_id":"call_anon","customer_name":"Jo","date":"2029-12-31","time":"10:00","service_id":1}}"#,
    );
    assert_eq!(
        (reply.status, reply.body["ok"].clone(), reply.body["code"].clone()),
        (200, false.into(), "start_in_past".into())
    );
    assert_eq!(
        reply.body["message"],
        "Dieser Zeitpunkt liegt bereits in der Vergangenheit. Welcher andere Termin passt Ihnen?"
    );
    // A call whose dialled number is no branch: refused, and the call is not registered either.
    let reply = retell(
        &agent,
        r#"{"name":"book_appointment","call":{"call_id":"call_stray","to_number":"+4989000000"},"args":{"customer_name":"Jo","start":"2030-01-09T15:00:00Z","service_id":1}}"#,
    );
    assert_eq!((reply.status, reply.body["code"].clone()), (200, "call_missing_company".into()));
    assert_eq!(totals(&e.book), before);
    assert!(
        e.book
            .register_call(&NewCall {
                retell_call_id: "call_stray".into(),
                company_id: Some(CompanyId(1)),
                branch_id: Some(BranchId(1)),
                ..Default::default()
            })
            .expect("registers")
            .id
            .0
            > 0
    );
}

pub fn malformed_function_calls_answer_4xx_and_write_nothing(make: MakeStore) {
    let e = env(make);
    let agent = Agent::new(e.book.clone(), Secret::new(RETELL_KEY));
    let before = totals(&e.book);
    let call = r#""call":{"call_id":"call_fresh","to_number":"+49301234567","from_number":"+491511111111"}"#;
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "malformed_json"),
        ("[1,2]".into(), "malformed_json"),
        ("\"text\"".into(), "malformed_json"),
        (format!(r#"{{"name":"drop_tables",{call},"args":{{}}}}"#), "unknown_function"),
        (format!(r#"{{"name":42,{call},"args":{{}}}}"#), "unknown_function"),
        (format!(r#"{{"name":"book_appointment",{call},"args":[]}}"#), "invalid_argument"),
        (r#"{"name":"book_appointment","call":7,"args":{}}"#.into(), "invalid_argument"),
        (
            r#"{"name":"book_appointment","args":{"customer_name":"A","start":"2030-01-09T15:00:00Z"}}"#.into(),
            "call_id_required",
        ),
        (
            format!(r#"{{"name":"book_appointment",{call},"args":{{"start":"2030-01-09T15:00:00Z"}}}}"#),
            "customer_name_required",
        ),
        (format!(r#"{{"name":"book_appointment",{call},"args":{{"customer_name":"A"}}}}"#), "start_required"),
        (
            format!(
                r#"{{"name":"book_appointment",{call},"args":{{"customer_name":"A","date":"someday","time":"10:00"}}}}"#
            ),
            "invalid_date",
        ),
        (
            format!(
                r#"{{"name":"book_appointment",{call},"args":{{"customer_name":"A","start":"2030-01-09T15:00:00Z","service_id":"one"}}}}"#
            ),
            "invalid_argument",
        ),
        (
            format!(
                r#"{{"name":"book_appointment",{call},"args":{{"customer_name":7,"start":"2030-01-09T15:00:00Z"}}}}"#
            ),
            "invalid_argument",
        ),
    ];
    for (body, code) in &cases {
        let reply = retell(&agent, body);
        assert!((400..500).contains(&reply.status), "{body}: {} {}", reply.status, reply.body);
        assert_eq!(reply.body["code"], *code, "{body}: {}", reply.body);
        assert_eq!(reply.body["ok"], false);
    }
    // Signatures: wrong key, stale, missing, or over another body: 401.
    let body = format!(
        r#"{{"name":"book_appointment",{call},"args":{{"customer_name":"A","start":"2030-01-09T15:00:00Z"}}}}"#
    );
    let now = e.book.now().timestamp_millis();
    for header in [
        sign_retell(body.as_bytes(), "other key", now),
        sign_retell(body.as_bytes(), RETELL_KEY, now - MAX_SKEW_MS - 1),
        String::new(),
        sign_retell(b"{}", RETELL_KEY, now),
    ] {
        let reply = agent.answer(body.as_bytes(), &header, None);
        assert_eq!((reply.status, reply.body["code"].clone()), (401, "bad_signature".into()));
    }
    assert_eq!(totals(&e.book), before, "nothing written");
    let ok = retell(&agent, &body);
    assert_eq!(ok.status, 200, "the same body, signed, books: {}", ok.body);
}

/// Marks an appointment synced as Cal.com booking `uid` (seat `seat`).
pub(crate) fn synced_as(e: &Env, id: AppointmentId, uid: &str, seat: Option<&str>) {
    let (uid, seat, now) = (uid.to_string(), seat.map(str::to_string), e.book.now());
    let company = e.book.appointment(id).expect("exists").company_id;
    callbook::store::write(&**e.book.store(), move |tx| {
        tx.record_sync_success(company, id, 100 + id.0, &uid, seat.as_deref(), now)
    })
    .expect("synced");
}

/// A Cal.com delivery to `company`'s URL, signed with `secret`.
fn deliver_as(e: &Env, company: i64, secret: &str, body: &str) -> Result<WebhookOutcome> {
    e.book.calcom_webhook(CompanyId(company), body.as_bytes(), &sign_calcom(body.as_bytes(), secret))
}

/// A Cal.com body, created `minutes` after t0.
fn hook(trigger: &str, minutes: i64, payload: serde_json::Value) -> String {
    let created = format_utc(&(t0() + Duration::minutes(minutes)));
    serde_json::json!({"triggerEvent": trigger, "createdAt": created, "payload": payload}).to_string()
}

pub fn calcom_webhooks_cancel_and_reschedule_once(make: MakeStore) {
    let e = env(make);
    let a = e.book.book(&request("call_anon", "Jane", "2030-01-08T10:00:00Z")).expect("books");
    let b = e.book.book(&request("call_known_a", "Max", "2030-01-09T10:00:00Z")).expect("books");
    synced_as(&e, a.appointment_id, "uid-a", None);
    synced_as(&e, b.appointment_id, "uid-b", None);
    // A retried attendee update is unfinished when the cancellation arrives.
    e.book
        .set_customer_email(e.book.appointment(b.appointment_id).expect("a").customer_id, "max@example.com")
        .expect("sets");
    let deliver = |body: &str| deliver_as(&e, 1, "whsec_one", body);
    let cancel = hook(
        "BOOKING_CANCELLED",
        1,
        serde_json::json!({"uid": "uid-b", "bookingId": 102, "cancellationReason": "ill"}),
    );
    let ids = |a: &Booking| vec![a.appointment_id];
    assert_eq!(deliver(&cancel).expect("applies"), WebhookOutcome::Cancelled { appointment_ids: ids(&b) });
    let cancelled = e.book.appointment(b.appointment_id).expect("a");
    assert_eq!((cancelled.status, cancelled.sync_origin), (AppointmentStatus::Cancelled, SyncOrigin::Calcom));
    assert!(
        e.book.jobs_of(b.appointment_id).expect("jobs").iter().all(|j| j.state.is_final()),
        "unfinished jobs cancelled"
    );
    assert_eq!(
        e.book.claim_jobs("w", 10).expect("claims").iter().filter(|j| j.appointment_id == b.appointment_id).count(),
        0
    );
    // Cal.com retries deliveries: the second one writes nothing.
    assert_eq!(deliver(&cancel).expect("applies"), WebhookOutcome::AlreadyApplied { appointment_ids: ids(&b) });
    assert_eq!(e.book.appointment(b.appointment_id).expect("a").updated_at, cancelled.updated_at);

    let moved = hook(
        "BOOKING_RESCHEDULED",
        2,
        serde_json::json!({"uid": "uid-a2", "rescheduleUid": "uid-a", "bookingId": 555,
            "startTime": "2030-01-10T09:00:00.000Z", "endTime": "2030-01-10T09:30:00.000Z"}),
    );
    assert_eq!(deliver(&moved).expect("applies"), WebhookOutcome::Rescheduled { appointment_ids: ids(&a) });
    let r = e.book.appointment(a.appointment_id).expect("a");
    assert_eq!(format_utc(&r.starts_at), "2030-01-10T09:00:00Z");
    assert_eq!(format_utc(&r.ends_at), "2030-01-10T09:30:00Z");
    assert_eq!(r.previous_starts_at.map(|t| format_utc(&t)).as_deref(), Some("2030-01-08T10:00:00Z"));
    assert_eq!((r.calcom_v2_booking_uid.as_deref(), r.calcom_v2_booking_id), (Some("uid-a2"), Some(555)));
    assert_eq!((r.status, r.sync_origin), (AppointmentStatus::Confirmed, SyncOrigin::Calcom));
    assert_eq!(deliver(&moved).expect("applies"), WebhookOutcome::AlreadyApplied { appointment_ids: ids(&a) });
    // Each change is recorded, by Cal.com, with its reason.
    let changes =
        callbook::store::read(&**e.book.store(), |tx| tx.changes_of(CompanyId(1), b.appointment_id)).expect("reads");
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].kind, &changes[0].by, changes[0].reason.as_deref()),
        (ChangeKind::Cancel, &ChangedBy::Calcom, Some("ill"))
    );

    // Not ours, or not acted on: ignored, nothing written.
    let before = totals(&e.book);
    let unknown = hook("BOOKING_CANCELLED", 3, serde_json::json!({"uid": "someone-else"}));
    assert_eq!(deliver(&unknown).expect("ok"), WebhookOutcome::UnknownBooking { uid: "someone-else".into() });
    let ping = hook("PING", 3, serde_json::json!({}));
    assert_eq!(deliver(&ping).expect("ok"), WebhookOutcome::Ignored { trigger: "PING".into() });
    assert_eq!(totals(&e.book), before);
    // Bad signatures and malformed bodies are errors with codes.
    let err = e.book.calcom_webhook(CompanyId(1), cancel.as_bytes(), "no-secret-provided").expect_err("refused");
    assert_eq!(err.code(), "bad_signature");
    let err = deliver(&hook("BOOKING_CANCELLED", 3, serde_json::json!({}))).expect_err("no uid");
    assert_eq!(err.code(), "malformed_webhook");
}

pub fn calcom_webhooks_stay_in_their_tenant(make: MakeStore) {
    let e = env(make);
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T10:00:00Z")).expect("books");
    let c = e
        .book
        .book(&BookingRequest { service_id: Some(2), ..request("call_c2", "Eva", "2030-01-08T10:00:00Z") })
        .expect("books");
    synced_as(&e, a.appointment_id, "uid-a", None);
    synced_as(&e, c.appointment_id, "uid-c", None);
    let before = (e.book.appointment(a.appointment_id).expect("a"), e.book.appointment(c.appointment_id).expect("c"));
    // Company 2's webhook, rightly signed, names company 1's booking: not found in company 2.
    let cancel_a = hook("BOOKING_CANCELLED", 1, serde_json::json!({"uid": "uid-a"}));
    assert_eq!(
        deliver_as(&e, 2, "whsec_two", &cancel_a).expect("answers"),
        WebhookOutcome::UnknownBooking { uid: "uid-a".into() }
    );
    // Company 1's secret does not open company 2's URL, nor the other way round.
    assert_eq!(deliver_as(&e, 2, "whsec_one", &cancel_a).expect_err("refused").code(), "bad_signature");
    // A reschedule crossing tenants (company 1's old uid, company 2's new one)
    // sent to company 2 moves no appointment of company 1 and copies no uid.
    let crossing = hook(
        "BOOKING_RESCHEDULED",
        2,
        serde_json::json!({"uid": "uid-c", "rescheduleUid": "uid-a",
            "startTime": "2030-01-11T09:00:00Z", "endTime": "2030-01-11T09:50:00Z"}),
    );
    let _ = deliver_as(&e, 2, "whsec_two", &crossing).expect("answers");
    assert_eq!(e.book.appointment(a.appointment_id).expect("a"), before.0, "company 1 untouched");
    // The company's own uid, rightly sent to company 1: applied there only.
    let moved = hook(
        "BOOKING_RESCHEDULED",
        3,
        serde_json::json!({"uid": "uid-a2", "rescheduleUid": "uid-a",
            "startTime": "2030-01-11T09:00:00Z", "endTime": "2030-01-11T09:45:00Z"}),
    );
    let outcome = deliver_as(&e, 1, "whsec_one", &moved).expect("applies");
    assert_eq!(outcome, WebhookOutcome::Rescheduled { appointment_ids: vec![a.appointment_id] });
    // No secret, no company: refused with codes.
    assert_eq!(deliver_as(&e, 9, "whsec_one", &moved).expect_err("no company").code(), "company_not_found");
    // A single-tenant URL is refused while there are two tenants.
    let err = e
        .book
        .calcom_webhook_single_tenant(cancel_a.as_bytes(), &sign_calcom(cancel_a.as_bytes(), "any"), "any")
        .expect_err("two companies");
    assert_eq!(err.code(), "tenant_required");
    assert_eq!(e.book.appointment(c.appointment_id).expect("c").status, AppointmentStatus::Confirmed);
}

pub fn calcom_webhooks_apply_in_order_and_never_resurrect(make: MakeStore) {
    let e = env(make);
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T10:00:00Z")).expect("books");
    synced_as(&e, a.appointment_id, "uid-1", None);
    let deliver = |body: &str| deliver_as(&e, 1, "whsec_one", body);
    let move_to = |minutes: i64, from: &str, to: &str, start: &str, end: &str| {
        hook(
            "BOOKING_RESCHEDULED",
            minutes,
            serde_json::json!({"uid": to, "rescheduleUid": from, "startTime": start, "endTime": end}),
        )
    };
    let start_of = || format_utc(&e.book.appointment(a.appointment_id).expect("a").starts_at);
    let first = move_to(10, "uid-1", "uid-2", "2030-01-09T10:00:00Z", "2030-01-09T10:45:00Z");
    let second = move_to(20, "uid-2", "uid-3", "2030-01-10T10:00:00Z", "2030-01-10T10:45:00Z");
    assert!(matches!(deliver(&first).expect("applies"), WebhookOutcome::Rescheduled { .. }));
    assert!(matches!(deliver(&second).expect("applies"), WebhookOutcome::Rescheduled { .. }));
    // Replaying the first (its uids are gone) or an older move of the same
    // booking (same uid, created before the last applied) writes nothing.
    let _ = deliver(&first).expect("answers");
    let older_same_uid = move_to(15, "uid-3", "uid-3", "2030-01-12T10:00:00Z", "2030-01-12T10:45:00Z");
    assert_eq!(
        deliver(&older_same_uid).expect("answers"),
        WebhookOutcome::Stale { appointment_ids: vec![a.appointment_id] }
    );
    let equal = move_to(20, "uid-3", "uid-3", "2030-01-12T10:00:00Z", "2030-01-12T10:45:00Z");
    assert_eq!(deliver(&equal).expect("answers"), WebhookOutcome::Stale { appointment_ids: vec![a.appointment_id] });
    assert_eq!(start_of(), "2030-01-10T10:00:00Z", "the newest move holds");
    // A cancellation created before the last move is stale too.
    let old_cancel = hook("BOOKING_CANCELLED", 19, serde_json::json!({"uid": "uid-3"}));
    assert_eq!(
        deliver(&old_cancel).expect("answers"),
        WebhookOutcome::Stale { appointment_ids: vec![a.appointment_id] }
    );
    assert_eq!(e.book.appointment(a.appointment_id).expect("a").status, AppointmentStatus::Confirmed);
    // Cancelled stays cancelled: a later reschedule does not bring it back.
    let cancel = hook("BOOKING_CANCELLED", 30, serde_json::json!({"uid": "uid-3"}));
    assert!(matches!(deliver(&cancel).expect("applies"), WebhookOutcome::Cancelled { .. }));
    let revive = move_to(40, "uid-3", "uid-4", "2030-01-13T10:00:00Z", "2030-01-13T10:45:00Z");
    assert_eq!(
        deliver(&revive).expect("answers"),
        WebhookOutcome::AlreadyCancelled { appointment_ids: vec![a.appointment_id] }
    );
    let after = e.book.appointment(a.appointment_id).expect("a");
    assert_eq!(
        (after.status, format_utc(&after.starts_at)),
        (AppointmentStatus::Cancelled, "2030-01-10T10:00:00Z".into())
    );
    // Implausible times are refused (400) before anything is read.
    let b = e.book.book(&request("call_known_c", "Max", "2030-01-08T11:00:00Z")).expect("books");
    synced_as(&e, b.appointment_id, "uid-b", None);
    for (start, end) in [
        ("2030-01-09T10:45:00Z", "2030-01-09T10:00:00Z"),
        ("2030-01-09T10:00:00Z", "2030-01-09T10:00:00Z"),
        ("0001-01-01T10:00:00Z", "0001-01-01T10:30:00Z"),
        ("9999-01-01T10:00:00Z", "9999-01-01T10:30:00Z"),
    ] {
        let err = deliver(&move_to(50, "uid-b", "uid-b2", start, end)).expect_err("implausible");
        assert_eq!(err.code(), "malformed_webhook", "{start} .. {end}");
    }
    let ahead = hook("BOOKING_CANCELLED", 24 * 60, serde_json::json!({"uid": "uid-b"}));
    assert_eq!(deliver(&ahead).expect_err("from the future").code(), "malformed_webhook");
    assert_eq!(e.book.appointment(b.appointment_id).expect("b").status, AppointmentStatus::Confirmed);
    // Seats: a seat's cancellation cancels that seat; the booking's, the rest.
    let colour = |call: &str| BookingRequest { service_id: Some(3), ..request(call, "Seat", "2030-01-08T14:00:00Z") };
    let s1 = e.book.book(&colour("call_known_a")).expect("books");
    let s2 = e.book.book(&colour("call_anon")).expect("books");
    synced_as(&e, s1.appointment_id, "uid-s", Some("seat-1"));
    synced_as(&e, s2.appointment_id, "uid-s", Some("seat-2"));
    let seat = hook("BOOKING_CANCELLED", 55, serde_json::json!({"uid": "uid-s", "attendeeSeatId": "seat-1"}));
    assert_eq!(
        deliver(&seat).expect("applies"),
        WebhookOutcome::Cancelled { appointment_ids: vec![s1.appointment_id] }
    );
    assert_eq!(e.book.appointment(s2.appointment_id).expect("s2").status, AppointmentStatus::Confirmed);
    let whole = hook("BOOKING_CANCELLED", 56, serde_json::json!({"uid": "uid-s"}));
    assert_eq!(
        deliver(&whole).expect("applies"),
        WebhookOutcome::Cancelled { appointment_ids: vec![s2.appointment_id] }
    );
}

pub fn outside_text_has_bounds_and_nothing_is_written(make: MakeStore) {
    let e = env(make);
    let before = totals(&e.book);
    let huge = "x".repeat(60_000);
    let code_and_field = |err: Error| {
        let p = err.problems().remove(0);
        (p.code, p.field)
    };
    let mut r = request(&huge, "Jane", "2030-01-08T10:00:00Z");
    assert_eq!(
        code_and_field(e.book.book(&r).expect_err("call id")),
        ("invalid_argument".into(), "retellCallId".into())
    );
    r = request("call_anon", "Jane", "2030-01-08T10:00:00Z");
    r.customer_email = Some(format!("{huge}@example.com"));
    assert_eq!(
        code_and_field(e.book.book(&r).expect_err("email")),
        ("invalid_argument".into(), "customerEmail".into())
    );
    let call = NewCall { retell_call_id: huge.as_str().into(), branch_id: Some(BranchId(1)), ..Default::default() };
    assert_eq!(code_and_field(e.book.register_call(&call).expect_err("call")).0, "invalid_argument");
    assert_eq!(totals(&e.book), before, "nothing written");
    // An operator's note: at most 2,000 characters.
    let flagged = {
        let mut r = request("call_anon", "Jane", "2030-01-08T10:00:00Z");
        r.customer_email = Some("max@example.com".into());
        e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
        let _ = e.book.set_customer_email(CustomerId(1), "max@example.com");
        e.book.book(&r).expect("books, flagged email_conflict")
    };
    let err = e.book.review_resolve(flagged.appointment_id, "op", &huge).expect_err("note");
    assert_eq!(code_and_field(err), ("invalid_argument".into(), "note".into()));
    assert!(e.book.appointment(flagged.appointment_id).expect("exists").requires_manual_review);
}

pub fn remembered_slots_and_local_capacity(make: MakeStore) {
    let e = env(make);
    let day = chrono::NaiveDate::from_ymd_opt(2030, 1, 8).expect("date");
    let at = |h: u32| Utc.with_ymd_and_hms(2030, 1, 8, h, 0, 0).single().expect("time");
    let now = e.book.now();
    let first = Offered { starts: vec![at(9), at(10), at(11)], length_minutes: None };
    let second = Offered { starts: vec![at(10), at(11)], length_minutes: Some(30) };
    callbook::store::write(&**e.book.store(), move |tx| {
        tx.remember_slots(CallDbId(10), ServiceId(1), day, &first, now)?;
        tx.remember_slots(CallDbId(10), ServiceId(1), day, &second, now)
    })
    .expect("remembers");
    let read = callbook::store::read(&**e.book.store(), |tx| {
        Ok((
            tx.remembered_slots(CallDbId(10), ServiceId(1), day)?,
            tx.remembered_slots(CallDbId(11), ServiceId(1), day)?,
        ))
    })
    .expect("reads");
    let second = Offered { starts: vec![at(10), at(11)], length_minutes: Some(30) };
    assert_eq!(read, (Some(second), None), "the later answer replaces the earlier");
    // The call's booking must take one of them; 09:00 is not offered any more.
    let err = e.book.book(&request("call_anon", "Jane", "2030-01-08T09:00:00Z")).expect_err("not offered");
    assert_eq!((err.code(), err.alternatives().to_vec()), ("slot_unavailable", vec![at(10), at(11)]));
    assert!(e.book.book(&request("call_anon", "Jane", "2030-01-08T10:00:00Z")).expect("offered").availability_checked);
    // Scoped by company and service, confirmed only, [from, to).
    let mut other = request("call_c2", "Kim", "2030-01-08T10:00:00Z");
    other.service_id = Some(2);
    e.book.book(&other).expect("books");
    let found = callbook::store::read(&**e.book.store(), |tx| {
        tx.appointments_between(CompanyId(1), ServiceId(1), at(10), at(11))
    })
    .expect("reads");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].starts_at, at(10));
    let none = callbook::store::read(&**e.book.store(), |tx| {
        tx.appointments_between(CompanyId(1), ServiceId(1), at(9), at(10))
    })
    .expect("reads");
    assert!(none.is_empty());
}

macro_rules! conformance_suite {
    ($make:expr) => {
        conformance_suite!(@cases $make;
            import_is_idempotent_and_registers_calls,
            import_rejects_bad_data_and_writes_nothing,
            call_context_errors_write_nothing,
            anonymous_callers_always_get_a_new_customer,
            known_callers_are_matched_by_e164_within_their_company,
            email_rules,
            appointment_has_every_field_and_one_job,
            booking_is_idempotent,
            start_times_in_the_branch_zone,
            queue_claims_complete_retry_discard,
            expired_leases_are_claimed_again_and_lost_leases_write_nothing,
            exhausted_expired_jobs_are_discarded_and_flagged,
            one_unfinished_job_per_appointment_and_kind,
            stats_count_everything,
            retell_function_calls_book_in_one_transaction,
            malformed_function_calls_answer_4xx_and_write_nothing,
            calcom_webhooks_cancel_and_reschedule_once,
            calcom_webhooks_stay_in_their_tenant,
            calcom_webhooks_apply_in_order_and_never_resurrect,
            remembered_slots_and_local_capacity,
            outside_text_has_bounds_and_nothing_is_written,
            callers_see_and_change_only_their_own,
            matching_by_day_and_time,
            cancel_asks_first_and_a_retry_answers_the_same,
            reschedule_keeps_every_booking_rule,
            reschedule_honours_what_the_call_was_offered,
            policies_refuse_with_their_deadline_and_operators_may_force,
            callbacks_are_filed_listed_and_done,
            the_call_context_gives_today_in_the_branch,
            the_agent_answers_the_rest_of_the_call,
            health_counts_windows_and_companies_from_the_database,
            bookings_made_in_calcom_are_held_once,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                crate::conformance::$case($make);
            }
        )*
    };
}

/// A fresh database on a server for one test, dropped when the store is.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod server {
    use callbook::store::{ServerStore, Store, Tx, WriteFn};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub fn postgres_admin() -> String {
        std::env::var("CALLBOOK_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }
    pub fn mysql_admin() -> String {
        std::env::var("CALLBOOK_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
    }

    /// A database name unique to this process and call.
    pub fn fresh_name(prefix: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!("cb_{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
    }

    fn run(command: &str, args: &[&str]) {
        let out = std::process::Command::new(command).args(args).output().unwrap_or_else(|e| panic!("{command}: {e}"));
        assert!(out.status.success(), "{command} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Creates the database with the servers' own clients; returns its URL.
    pub fn create(kind: &str, name: &str) -> String {
        match kind {
            "postgres" => {
                run("psql", &[&postgres_admin(), "-qc", &format!("CREATE DATABASE {name}")]);
                format!("{}/{name}", postgres_admin().rsplit_once('/').map_or("", |(base, _)| base))
            }
            _ => {
                run("mariadb", &["-h", "127.0.0.1", "-u", "root", "-e", &format!("CREATE DATABASE {name}")]);
                format!("{}/{name}", mysql_admin().trim_end_matches('/'))
            }
        }
    }

    pub fn drop_database(kind: &str, name: &str) {
        let _ = match kind {
            "postgres" => std::process::Command::new("psql")
                .args([&postgres_admin(), "-qc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .output(),
            _ => std::process::Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root", "-e", &format!("DROP DATABASE IF EXISTS {name}")])
                .output(),
        };
    }

    /// Drops the database `create` made when it goes out of scope (a test's
    /// panic included); `"sqlite"` names a file in a temporary directory: nothing to drop.
    pub struct DropDatabase(pub &'static str, pub String);

    impl Drop for DropDatabase {
        fn drop(&mut self) {
            if self.0 != "sqlite" {
                drop_database(self.0, &self.1);
            }
        }
    }

    /// A store on its own fresh database; the database goes with it.
    pub struct TempServerStore {
        inner: Option<ServerStore>,
        kind: &'static str,
        name: String,
    }

    impl TempServerStore {
        pub fn new(kind: &'static str) -> Self {
            Self::with_url_suffix(kind, "")
        }

        /// Opened with `suffix` after the URL (`?pool_size=2`).
        pub fn with_url_suffix(kind: &'static str, suffix: &str) -> Self {
            let name = fresh_name(kind);
            let url = format!("{}{suffix}", create(kind, &name));
            let inner = match kind {
                "postgres" => ServerStore::postgres(&url),
                _ => ServerStore::mysql(&url),
            }
            .unwrap_or_else(|e| panic!("{kind} store opens: {e}"));
            TempServerStore { inner: Some(inner), kind, name }
        }

        /// With another retry policy (a fixed jitter seed: the waits are the same every run).
        pub fn with_retry(kind: &'static str, policy: callbook::store::RetryPolicy) -> Self {
            let mut store = Self::new(kind);
            store.inner = store.inner.take().map(|s| s.with_retry(policy, 19));
            store
        }

        pub fn server(&self) -> &ServerStore {
            self.inner.as_ref().expect("open")
        }
    }

    impl Store for TempServerStore {
        fn write(&self, work: WriteFn) -> callbook::Result<()> {
            self.inner.as_ref().expect("open").write(work)
        }
        fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> callbook::Result<()>) -> callbook::Result<()> {
            self.inner.as_ref().expect("open").read(work)
        }
    }

    impl Drop for TempServerStore {
        fn drop(&mut self) {
            self.inner = None; // closes the connections first
            drop_database(self.kind, &self.name);
        }
    }
}
