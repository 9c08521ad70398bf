//! The sync worker against the loopback fake Cal.com: outcomes recorded as
//! the design says, faults (outage, lost answers, 4xx, 429, a dying worker,
//! two workers) with an injected clock — nothing sleeps to wait out a backoff.

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::rules::*;
use callbook::store::*;
use callbook::*;
use chrono::Duration;
use conformance::{fixture_event_types, request, t0, FIXTURE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Env {
    book: Callbook,
    clock: Arc<ManualClock>,
    fake: FakeCalcom,
    _dir: tempfile::TempDir,
}

fn env_with(timeout_ms: u64) -> (Env, Worker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_with(
        dir.path().join("sync.db"),
        SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() },
    )
    .expect("opens");
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(Arc::new(store)).with_clock(clock.clone());
    book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
    let fake = FakeCalcom::with_event_types(clock.clone(), &fixture_event_types()).expect("fake starts");
    let worker = worker_for(&book, &fake, "w1", timeout_ms);
    (Env { book, clock, fake, _dir: dir }, worker)
}

fn env() -> (Env, Worker) {
    env_with(2000)
}

fn worker_for(book: &Callbook, fake: &FakeCalcom, id: &str, timeout_ms: u64) -> Worker {
    let api = Arc::new(HttpCalcom::new(std::time::Duration::from_millis(timeout_ms)));
    let config = WorkerConfig { id: id.into(), calcom_url: fake.url().into(), ..WorkerConfig::default() };
    Worker::new(book.clone(), api, config)
}

fn book_n(book: &Callbook, n: usize) -> Vec<Booking> {
    (0..n)
        .map(|i| {
            // An hour apart: Cal.com's event type (45 minutes) outlasts the local service.
            let start = t0() + Duration::days(1) + Duration::hours(i as i64);
            book.book(&request("call_anon", "Anna", &format_utc(&start))).expect("books")
        })
        .collect()
}

/// Runs the worker, moving the injected clock a second at a time, until
/// nothing is pending or `limit` passes.
fn drain(e: &Env, worker: &Worker, limit: Duration) -> RunReport {
    let mut report = RunReport::default();
    let end = e.book.now() + limit;
    while e.book.now() < end {
        report.merge(&worker.run_once().expect("runs"));
        let s = e.book.stats().expect("stats");
        if s.jobs["available"] + s.jobs["retryable"] + s.jobs["running"] == 0 {
            break;
        }
        e.clock.advance(Duration::seconds(1));
    }
    report
}

#[test]
fn synced_appointments_carry_the_booking_and_the_payload_follows_the_rules() {
    let (e, worker) = env();
    let anon = e.book.book(&request("call_anon", "Jürgen Müller", "2030-01-02T10:00:00Z")).expect("books");
    let mut r = request("call_known_a", "Max", "2030-01-02T11:00:00Z");
    r.customer_email = Some("max@example.com".into());
    let known = e.book.book(&r).expect("books");
    let call = NewCall {
        retell_call_id: "call_mobile".into(),
        branch_id: Some(BranchId(1)),
        from_number: Some("0151 23456789".into()),
        ..Default::default()
    };
    e.book.register_call(&call).expect("registers");
    let mobile = e.book.book(&request("call_mobile", "Mia", "2030-01-02T12:00:00Z")).expect("books");
    let report = worker.run_once().expect("runs");
    assert_eq!((report.jobs, report.synced), (3, 3));

    for b in [&anon, &known, &mobile] {
        let a = e.book.appointment(b.appointment_id).expect("exists");
        assert_eq!(a.calcom_sync_status, SyncStatus::Synced);
        assert!(
            a.calcom_v2_booking_id.is_some()
                && a.calcom_v2_booking_uid.as_deref().is_some_and(|u| u.starts_with("fake"))
        );
        assert_eq!(a.sync_verified_at, Some(t0()));
        assert_eq!((a.sync_error_code, a.sync_attempt_count, a.requires_manual_review), (None, 0, false));
        assert_eq!(e.fake.creates_for(&a.idempotency_key), 1);
        assert_eq!(e.book.jobs_of(a.id).expect("jobs")[0].state, JobState::Completed);
    }
    let bookings = e.fake.bookings();
    let attendee = |i: usize| bookings[i]["attendees"][0].clone();
    // Anonymous: placeholder phone never sent, the fallback email, the branch zone.
    assert_eq!(attendee(0)["email"], "noreply@example.com");
    assert!(attendee(0).get("phoneNumber").is_none());
    assert_eq!(attendee(0)["timeZone"], "Europe/Berlin");
    assert_eq!(attendee(0)["name"], "Jürgen Müller");
    // Known: the real email; +491512345678 is too short for a German mobile
    // (libphonenumber says invalid), so it is not sent; a valid one is, in E.164.
    assert_eq!((attendee(1)["email"].as_str(), attendee(1).get("phoneNumber")), (Some("max@example.com"), None));
    assert_eq!(attendee(2)["phoneNumber"], "+4915123456789");
    assert_eq!(bookings[1]["start"], "2030-01-02T11:00:00.000Z");
    assert_eq!(bookings[1]["eventTypeId"], 1001);
}

#[test]
fn appointments_from_calcom_are_never_pushed_back() {
    let (e, worker) = env();
    let b = e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    // Pretend it came from a Cal.com webhook: same rows, origin calcom.
    let a = e.book.appointment(b.appointment_id).expect("exists");
    let mirror = NewAppointment {
        customer_id: a.customer_id,
        company_id: a.company_id,
        branch_id: a.branch_id,
        service_id: a.service_id,
        call_id: None,
        starts_at: a.starts_at + Duration::hours(1),
        ends_at: a.ends_at + Duration::hours(1),
        sync_origin: SyncOrigin::Calcom,
        metadata: Default::default(),
        requires_manual_review: false,
        review_reason: None,
        idempotency_key: "from-calcom".into(),
        booking_latency_us: None,
        now: t0(),
    };
    let id = callbook::store::write(&**e.book.store(), move |tx| {
        let id = tx.insert_appointment(&mirror)?;
        tx.insert_job(
            &NewJob {
                appointment_id: id,
                company_id: CompanyId(1),
                kind: JobKind::Create,
                max_attempts: 4,
                run_at: t0(),
            },
            t0(),
        )?;
        Ok(id)
    })
    .expect("writes");
    let report = worker.run_once().expect("runs");
    assert_eq!((report.synced, report.skipped), (1, 1));
    assert_eq!(e.fake.stats().creates, 1, "only the retell appointment went to Cal.com");
    assert_eq!(e.book.jobs_of(id).expect("jobs")[0].state, JobState::Completed);
}

#[test]
fn ten_minute_outage_ends_with_everything_synced_and_nothing_flagged() {
    let (e, worker) = env();
    let bookings = book_n(&e.book, 1000);
    e.fake.outage_until(t0() + Duration::minutes(10));
    let report = drain(&e, &worker, Duration::hours(2));
    let s = e.book.stats().expect("stats");
    let fake = e.fake.stats();
    println!("outage run: {report:?}; fake: {fake:?}; finished after {} s", (e.book.now() - t0()).num_seconds());
    assert_eq!(s.appointments["synced"], 1000, "{s:?}");
    assert_eq!(s.manual_review, 0);
    assert_eq!((fake.creates, fake.duplicated_keys, fake.rate_limited), (1000, 0, 0));
    assert!(report.deferred_breaker > 0, "the breaker held jobs back during the outage");
    assert!(bookings
        .iter()
        .all(|b| e.fake.creates_for(&e.book.appointment(b.appointment_id).expect("exists").idempotency_key) == 1));
    let breaker = &s.breakers[0];
    assert_eq!(breaker.state, BreakerState::Closed);
    assert!(!breaker.key.contains("cal_live_secret_one"), "the key is hashed");
}

#[test]
fn a_lost_answer_is_adopted_not_created_again() {
    let (e, worker) = env_with(150);
    let b = e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    e.fake.inject([Fault::LoseAnswer(std::time::Duration::from_millis(600))]);
    let first = worker.run_once().expect("runs");
    assert_eq!(first.retried, 1, "{first:?}");
    let a = e.book.appointment(b.appointment_id).expect("exists");
    assert_eq!(
        (a.calcom_sync_status, a.sync_error_code.as_deref(), a.sync_attempt_count),
        (SyncStatus::Failed, Some("timeout"), 1)
    );
    std::thread::sleep(std::time::Duration::from_millis(700)); // let the fake finish its late answer
    e.clock.advance(Duration::seconds(2));
    let second = worker.run_once().expect("runs");
    assert_eq!((second.synced, second.adopted), (1, 1), "{second:?}");
    let a = e.book.appointment(b.appointment_id).expect("exists");
    assert_eq!(a.calcom_sync_status, SyncStatus::Synced);
    assert!(!a.requires_manual_review, "no false slot_unavailable alarm");
    assert_eq!(e.fake.creates_for(&a.idempotency_key), 1);
    assert_eq!(e.fake.stats().bookings, 1);
}

#[test]
fn client_errors_are_flagged_after_one_attempt_and_can_be_retried_or_resolved() {
    let (e, worker) = env();
    book_n(&e.book, 3);
    e.fake.inject([
        Fault::Status(400, "Event type with id 1001 has no hosts".into()),
        Fault::Status(409, "User either already has booking at this time or is not available".into()),
    ]);
    let report = worker.run_once().expect("runs");
    assert_eq!((report.flagged, report.synced), (2, 1), "{report:?}");
    let list = e.book.review_list().expect("lists");
    assert_eq!(list.len(), 2);
    let codes: Vec<_> = list.iter().map(|a| a.sync_error_code.clone().unwrap_or_default()).collect();
    assert_eq!(codes, ["calcom_validation", "slot_unavailable"]);
    for a in &list {
        assert_eq!((a.sync_attempt_count, a.calcom_sync_status), (1, SyncStatus::Failed));
        assert_eq!(a.review_reason.as_deref(), Some("sync_failed"));
        assert_eq!(a.manual_review_flagged_at, Some(t0()));
        assert_eq!(e.book.jobs_of(a.id).expect("jobs")[0].state, JobState::Discarded);
        assert!(a.sync_error_message.as_deref().is_some_and(|m| m.chars().count() <= 255));
    }
    // Retry one: back to pending with a fresh job, and it syncs.
    let retried = e.book.review_retry(list[0].id).expect("retries");
    assert_eq!((retried.calcom_sync_status, retried.requires_manual_review), (SyncStatus::Pending, false));
    assert_eq!(worker.run_once().expect("runs").synced, 1);
    // Resolve the other with a note.
    let resolved = e.book.review_resolve(list[1].id, "operator", "booked by phone instead").expect("resolves");
    assert_eq!(
        (resolved.review_resolved_by.as_deref(), resolved.review_note.as_deref()),
        (Some("operator"), Some("booked by phone instead"))
    );
    assert_eq!(resolved.review_resolved_at, Some(t0()));
    assert!(e.book.review_list().expect("lists").is_empty());
    assert_eq!(
        e.book.review_resolve(list[1].id, "operator", "again").expect_err("not flagged").code(),
        "not_in_review"
    );
}

#[test]
fn a_429_waits_without_using_an_attempt() {
    let (e, worker) = env();
    let b = book_n(&e.book, 1).remove(0);
    e.fake.inject([Fault::RateLimited(30)]);
    let report = worker.run_once().expect("runs");
    assert_eq!(report.deferred_rate_limit, 1);
    let job = e.book.jobs_of(b.appointment_id).expect("jobs").remove(0);
    assert_eq!((job.state, job.attempt, job.run_at), (JobState::Retryable, 0, t0() + Duration::seconds(30)));
    assert_eq!(e.book.appointment(b.appointment_id).expect("exists").sync_attempt_count, 0);
    e.clock.advance(Duration::seconds(29));
    assert_eq!(worker.run_once().expect("runs").jobs, 0);
    e.clock.advance(Duration::seconds(1));
    assert_eq!(worker.run_once().expect("runs").synced, 1);
}

#[test]
fn server_errors_retry_with_backoff_then_flag() {
    let (e, worker) = env();
    let b = book_n(&e.book, 1).remove(0);
    e.fake.inject((0..4).map(|_| Fault::Status(502, "Bad Gateway".into())));
    let mut waits = vec![];
    for _ in 0..4 {
        worker.run_once().expect("runs");
        let job = e.book.jobs_of(b.appointment_id).expect("jobs").remove(0);
        waits.push((job.run_at - e.book.now()).num_seconds());
        e.clock.set(job.run_at.max(e.book.now()));
    }
    assert_eq!(waits, [1, 5, 30, 0], "backoff 1 s, 5 s, 30 s, then discarded");
    let a = e.book.appointment(b.appointment_id).expect("exists");
    assert_eq!((a.sync_attempt_count, a.sync_error_code.as_deref(), a.requires_manual_review), (4, Some("502"), true));
}

/// Forwards to the real client, then dies (panics) after the create went out.
struct DiesAfterCreate(HttpCalcom, AtomicUsize);

impl CalcomApi for DiesAfterCreate {
    fn create_booking(&self, e: &Endpoint, p: &serde_json::Value) -> Result<CalBooking, ApiFailure> {
        let _ = self.0.create_booking(e, p);
        self.1.fetch_add(1, Ordering::SeqCst);
        panic!("worker thread dies mid-job");
    }
    fn find_bookings(&self, e: &Endpoint, q: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        self.0.find_bookings(e, q)
    }
    fn get_booking(&self, e: &Endpoint, uid: &str) -> Result<CalBooking, ApiFailure> {
        self.0.get_booking(e, uid)
    }
    fn cancel_booking(&self, e: &Endpoint, uid: &str, seat: Option<&str>, reason: &str) -> Result<(), ApiFailure> {
        self.0.cancel_booking(e, uid, seat, reason)
    }
    fn reschedule_booking(&self, e: &Endpoint, uid: &str, m: &Move) -> Result<CalBooking, ApiFailure> {
        self.0.reschedule_booking(e, uid, m)
    }
    fn add_attendee(&self, e: &Endpoint, uid: &str, a: &NewAttendee) -> Result<(), ApiFailure> {
        self.0.add_attendee(e, uid, a)
    }
    fn slots(&self, e: &Endpoint, q: &SlotQuery) -> Result<SlotAnswer, ApiFailure> {
        self.0.slots(e, q)
    }
}

#[test]
fn a_job_whose_worker_died_is_claimed_again_after_the_lease_and_synced_once() {
    let (e, healthy) = env();
    let b = book_n(&e.book, 1).remove(0);
    let dying = Worker::new(
        e.book.clone(),
        Arc::new(DiesAfterCreate(HttpCalcom::new(std::time::Duration::from_secs(2)), AtomicUsize::new(0))),
        WorkerConfig { id: "dying".into(), calcom_url: e.fake.url().into(), ..WorkerConfig::default() },
    );
    let report = dying.run_once().expect("runs");
    assert_eq!(report.lost, 1);
    assert_eq!(e.book.jobs_of(b.appointment_id).expect("jobs")[0].state, JobState::Running);
    assert_eq!(healthy.run_once().expect("runs").jobs, 0, "leased by the dead worker");
    e.clock.advance(Policy::default().lease);
    let report = healthy.run_once().expect("runs");
    assert_eq!((report.synced, report.adopted), (1, 1));
    let a = e.book.appointment(b.appointment_id).expect("exists");
    assert_eq!((a.calcom_sync_status, e.fake.creates_for(&a.idempotency_key)), (SyncStatus::Synced, 1));
}

#[test]
fn two_workers_on_one_database_never_run_a_job_twice() {
    let (e, _) = env();
    book_n(&e.book, 200);
    // A second process's view: its own store on the same file.
    let path = e._dir.path().join("sync.db");
    let other = Callbook::new(Arc::new(SqliteStore::open(&path).expect("opens"))).with_clock(e.clock.clone());
    let (w1, w2) = (worker_for(&e.book, &e.fake, "a", 2000), worker_for(&other, &e.fake, "b", 2000));
    let mut jobs = (0, 0);
    for _ in 0..600 {
        let (r1, r2) = std::thread::scope(|s| {
            let h1 = s.spawn(|| w1.run_once().expect("runs"));
            let h2 = s.spawn(|| w2.run_once().expect("runs"));
            (h1.join().expect("joins"), h2.join().expect("joins"))
        });
        jobs = (jobs.0 + r1.synced, jobs.1 + r2.synced);
        if e.book.stats().expect("stats").appointments["synced"] == 200 {
            break;
        }
        e.clock.advance(Duration::seconds(1));
    }
    let fake = e.fake.stats();
    assert_eq!((fake.creates, fake.duplicated_keys), (200, 0));
    assert_eq!(jobs.0 + jobs.1, 200);
    assert!(jobs.0 > 0 && jobs.1 > 0, "both workers took jobs: {jobs:?}");
}

#[test]
fn a_new_email_adds_the_customer_as_attendee() {
    let (e, worker) = env();
    let b = e.book.book(&request("call_known_a", "Max", "2030-01-02T10:00:00Z")).expect("books");
    worker.run_once().expect("runs");
    assert_eq!(e.fake.bookings()[0]["attendees"][0]["email"], "noreply@example.com");
    let queued = e.book.set_customer_email(b.customer_id, "Max at Example dot com").expect("sets");
    assert_eq!(queued, 1);
    let report = worker.run_once().expect("runs");
    assert_eq!(report.synced, 1);
    let attendees = e.fake.bookings()[0]["attendees"].clone();
    assert_eq!(attendees[1]["email"], "max@example.com");
    assert_eq!(attendees[1]["timeZone"], "Europe/Berlin");
    assert_eq!(
        e.book.set_customer_email(b.customer_id, "other@example.com").expect_err("set").code(),
        "email_already_set"
    );
}

#[test]
fn a_probe_whose_answer_is_lost_is_adopted_later() {
    let (e, worker) = env_with(150);
    let bookings = book_n(&e.book, 10);
    e.fake.outage_until(t0() + Duration::minutes(2));
    e.fake.inject([Fault::LoseAnswer(std::time::Duration::from_millis(400))]);
    let report = drain(&e, &worker, Duration::hours(1));
    let fake = e.fake.stats();
    assert_eq!((report.synced, report.adopted, report.flagged), (10, 1, 0), "{report:?}");
    assert_eq!((fake.creates, fake.duplicated_keys), (10, 0));
    assert!(bookings.iter().all(|b| !e.book.appointment(b.appointment_id).expect("exists").requires_manual_review));
}

#[test]
fn a_slow_answer_past_the_timeout_is_retried_and_adopted() {
    let (e, worker) = env_with(150);
    let b = book_n(&e.book, 1).remove(0);
    // The request is handled only after the client gave up; the booking lands anyway.
    e.fake.inject([Fault::Delay(std::time::Duration::from_millis(400))]);
    assert_eq!(worker.run_once().expect("runs").retried, 1);
    std::thread::sleep(std::time::Duration::from_millis(500)); // the slow request finishes server-side
    e.clock.advance(Duration::seconds(1));
    let report = worker.run_once().expect("runs");
    assert_eq!((report.synced, report.adopted), (1, 1), "{report:?}");
    let a = e.book.appointment(b.appointment_id).expect("exists");
    assert_eq!((e.fake.creates_for(&a.idempotency_key), a.requires_manual_review), (1, false));
}

#[test]
fn the_client_reads_and_cancels_bookings() {
    let (e, worker) = env();
    let b = book_n(&e.book, 1).remove(0);
    worker.run_once().expect("runs");
    let a = e.book.appointment(b.appointment_id).expect("exists");
    let uid = a.calcom_v2_booking_uid.clone().expect("uid");
    let client = HttpCalcom::new(std::time::Duration::from_secs(2));
    let endpoint = Endpoint { base_url: e.fake.url().into(), api_key: Secret::new("cal_live_secret_one") };
    let got = client.get_booking(&endpoint, &uid).expect("gets");
    assert_eq!(
        (got.id, got.metadata.as_ref().and_then(|m| m[METADATA_KEY].as_str())),
        (a.calcom_v2_booking_id.expect("id"), Some(a.idempotency_key.as_str()))
    );
    let query = BookingQuery {
        event_type_id: 1001,
        after_start: a.starts_at,
        before_end: a.ends_at,
        attendee_email: Some("noreply@example.com".into()),
        take: 10,
        skip: 0,
        oldest_first: false,
    };
    // `beforeEnd` filters on the booking's end: Cal.com's event type (45 min) outlasts the local service (30).
    assert_eq!(client.find_bookings(&endpoint, &query).expect("lists").bookings.len(), 0);
    let query = BookingQuery { before_end: a.starts_at + Duration::minutes(45), ..query };
    assert_eq!(client.find_bookings(&endpoint, &query).expect("lists").bookings.len(), 1);
    client.cancel_booking(&endpoint, &uid, None, "caller cancelled").expect("cancels");
    assert_eq!(e.fake.bookings()[0]["status"], "cancelled");
    let missing = client.get_booking(&endpoint, "nope").expect_err("404");
    assert_eq!(classify(&missing).code, "calcom_not_found");
    let no_key = Endpoint { base_url: e.fake.url().into(), api_key: Secret::new("") };
    assert_eq!(classify(&client.get_booking(&no_key, &uid).expect_err("401")).code, "calcom_auth");
    // A cancel job for a synced appointment goes to Cal.com too.
    let (company, id) = (a.company_id, a.id);
    callbook::store::write(&**e.book.store(), move |tx| {
        tx.insert_job(
            &NewJob { appointment_id: id, company_id: company, kind: JobKind::Cancel, max_attempts: 4, run_at: t0() },
            t0(),
        )
    })
    .expect("queues");
    // Cal.com refuses a second cancel ("cancelled already"): the job is done all the same.
    assert_eq!(worker.run_once().expect("runs").synced, 1);
}

#[test]
fn a_running_worker_survives_a_storage_error_and_goes_on() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(store.clone()).with_clock(clock.clone());
    book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
    let fake = FakeCalcom::with_event_types(clock.clone(), &fixture_event_types()).expect("fake starts");
    let b = book_n(&book, 1).remove(0);
    store.fail_after_writes(0); // the worker's first write fails
    let worker = worker_for(&book, &fake, "resilient", 2000);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        let running = s.spawn(|| worker.run(&stop, std::time::Duration::from_millis(1)));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while book.appointment(b.appointment_id).expect("exists").calcom_sync_status != SyncStatus::Synced {
            assert!(std::time::Instant::now() < deadline, "the worker stopped after the fault");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        stop.store(true, Ordering::SeqCst);
        running.join().expect("joins")
    });
    assert_eq!((report.storage_errors, report.synced), (1, 1), "{report:?}");
}

#[test]
fn a_stopped_worker_finishes_the_job_in_hand_and_hands_back_the_rest() {
    let (e, _) = env();
    let bookings = book_n(&e.book, 5);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // One thread, so the claimed batch of five runs one job at a time; the
    // stop comes while the first one is being answered.
    let api = Arc::new(HttpCalcom::new(std::time::Duration::from_millis(2000)));
    let config =
        WorkerConfig { id: "stopping".into(), calcom_url: e.fake.url().into(), threads: 1, ..Default::default() };
    let worker = Worker::new(e.book.clone(), api, config).on_event(move |_| flag.store(true, Ordering::SeqCst));
    let report = worker.run(&stop, std::time::Duration::from_millis(1));
    assert_eq!((report.synced, report.released), (1, 4), "{report:?}");
    assert_eq!(e.fake.stats().creates, 1);
    for b in &bookings[1..] {
        let jobs = e.book.jobs_of(b.appointment_id).expect("jobs");
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (jobs[0].state, jobs[0].attempt, jobs[0].locked_by.is_none() || jobs[0].locked_until.is_none()),
            (JobState::Retryable, 0, true)
        );
    }
    // Another worker takes them at once, with every attempt still left.
    let rest = worker_for(&e.book, &e.fake, "next", 2000).run_once().expect("runs");
    assert_eq!(rest.synced, 4);
    assert_eq!(e.fake.stats().duplicated_keys, 0);
}
