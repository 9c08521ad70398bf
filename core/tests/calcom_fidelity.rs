//! Cal.com as its own source code behaves (calcom/cal.com, apps/api/v2):
//! the lookup after a lost answer, the slot day, conflict answers, the
//! attendee endpoint, the per-booker limit, seated event types and the
//! rate-limit headers. Each test failed against the corrected fake before
//! the client followed upstream; the fake's rules name their sources.

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
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as Wall;

struct Env {
    book: Callbook,
    clock: Arc<ManualClock>,
    fake: FakeCalcom,
    _dir: tempfile::TempDir,
}

fn env_with(event_types: &[EventType], directory: &[&str], timeout_ms: u64) -> (Env, Worker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() };
    let store = SqliteStore::open_with(dir.path().join("fidelity.db"), options).expect("opens");
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(Arc::new(store)).with_clock(clock.clone());
    for data in directory {
        book.import(&ImportData::from_json(data).expect("parses")).expect("imports");
    }
    let fake = FakeCalcom::with_event_types(clock.clone(), event_types).expect("fake starts");
    let worker = worker_for(&book, &fake, timeout_ms);
    (Env { book, clock, fake, _dir: dir }, worker)
}

fn worker_for(book: &Callbook, fake: &FakeCalcom, timeout_ms: u64) -> Worker {
    let api = Arc::new(HttpCalcom::new(Wall::from_millis(timeout_ms)));
    Worker::new(book.clone(), api, WorkerConfig { calcom_url: fake.url().into(), ..WorkerConfig::default() })
}

fn env() -> (Env, Worker) {
    env_with(&fixture_event_types(), &[FIXTURE], 150)
}

fn appointment(e: &Env, b: &Booking) -> Appointment {
    e.book.appointment(b.appointment_id).expect("exists")
}

/// Nothing in the fake that callbook does not own, nothing owned twice.
fn assert_no_orphans(e: &Env, bookings: &[Booking]) {
    let local: HashSet<String> = bookings.iter().filter_map(|b| appointment(e, b).calcom_v2_booking_uid).collect();
    let live: HashSet<String> = e.fake.live_uids().into_iter().collect();
    assert_eq!(live, local, "live Cal.com bookings are exactly the synced appointments");
}

/// First attempt: the answer is lost (or the create lands late); the
/// worker retries once the clock allows.
fn retry_after_loss(e: &Env, worker: &Worker) -> RunReport {
    let first = worker.run_once().expect("runs");
    assert_eq!(first.retried, 1, "the first attempt timed out: {first:?}");
    e.clock.advance(Duration::seconds(2));
    worker.run_once().expect("runs")
}

#[test]
fn a_lost_answer_is_found_when_the_event_type_is_longer_than_the_service() {
    // Event type 1001 lasts 45 minutes, the local service 30: `beforeEnd`
    // filters on the booking's END, so a lookup bounded by the local end misses it.
    let (e, worker) = env();
    let b = e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    e.fake.inject([Fault::LoseAnswer(Wall::from_millis(600))]);
    let first = worker.run_once().expect("runs");
    assert_eq!(first.retried, 1);
    std::thread::sleep(Wall::from_millis(700)); // the fake sends its late answer
    e.clock.advance(Duration::seconds(2));
    let second = worker.run_once().expect("runs");
    assert_eq!((second.synced, second.adopted, second.flagged), (1, 1, 0), "{second:?}");
    let a = appointment(&e, &b);
    assert!(!a.requires_manual_review);
    assert_eq!(e.fake.creates_for(&a.idempotency_key), 1);
    assert_no_orphans(&e, &[b]);
}

const LA_AND_TOKYO: &str = r#"{
  "companies": [{"id": 5, "name": "West and East", "calcom_api_key": "cal_live_we"}],
  "branches": [
    {"id": 50, "company_id": 5, "name": "Santa Monica", "timezone": "America/Los_Angeles", "country": "US", "phone_number": "+1 310 555 0100"},
    {"id": 51, "company_id": 5, "name": "Shibuya", "timezone": "Asia/Tokyo", "country": "JP", "phone_number": "+81 3 1234 5678"}
  ],
  "services": [
    {"id": 50, "company_id": 5, "name": "Cut LA", "calcom_event_type_id": 5001, "duration_minutes": 30},
    {"id": 51, "company_id": 5, "name": "Cut Tokyo", "calcom_event_type_id": 5101, "duration_minutes": 30}
  ],
  "calls": [
    {"retell_call_id": "call_la", "company_id": 5, "branch_id": 50, "from_number": "+1 310 555 0199"},
    {"retell_call_id": "call_tokyo", "company_id": 5, "branch_id": 51, "from_number": "+81 90 1234 5678"}
  ]
}"#;

#[test]
fn a_local_day_west_or_east_of_utc_offers_every_slot_of_its_hours() {
    let event_types = [
        EventType::new(5001, 30).schedule(Schedule::hours(9, 17, "America/Los_Angeles")).strict_hours(),
        EventType::new(5101, 30).schedule(Schedule::hours(7, 17, "Asia/Tokyo")).strict_hours(),
    ];
    let (e, _) = env_with(&event_types, &[LA_AND_TOKYO], 2000);
    let availability = Availability::new(
        e.book.clone(),
        Arc::new(HttpCalcom::new(Wall::from_secs(2))),
        AvailabilityConfig { calcom_url: e.fake.url().into(), ..Default::default() },
    );
    let check = |call: &str, service| {
        availability
            .check(&AvailabilityRequest {
                retell_call_id: Some(call.into()),
                service_id: Some(service),
                date: "2030-01-08".into(),
                ..Default::default()
            })
            .expect("checks")
    };
    let la = check("call_la", 50);
    let local = |s: &Slots, tz: chrono_tz::Tz| -> Vec<String> {
        s.slots.iter().map(|t| t.with_timezone(&tz).format("%H:%M").to_string()).collect()
    };
    // 09:00 to 16:30 in Los Angeles: 16 starts, the afternoon included.
    assert_eq!(la.slots.len(), 16, "{:?}", local(&la, chrono_tz::America::Los_Angeles));
    assert_eq!(local(&la, chrono_tz::America::Los_Angeles).last().map(String::as_str), Some("16:30"));
    // 07:00 to 16:30 in Tokyo: 20 starts, the early morning included.
    let tokyo = check("call_tokyo", 51);
    assert_eq!(tokyo.slots.len(), 20, "{:?}", local(&tokyo, chrono_tz::Asia::Tokyo));
    assert_eq!(local(&tokyo, chrono_tz::Asia::Tokyo).first().map(String::as_str), Some("07:00"));
}

#[test]
fn a_create_racing_its_own_late_create_is_adopted_on_booking_conflict() {
    let (e, worker) = env();
    let b = e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    // The first create reaches Cal.com only when the retry's create does;
    // Cal.com answers the retry 409 booking_conflict_error.
    e.fake
        .inject([Fault::LateCreate(Wall::from_millis(600)), Fault::CreateStatus(409, "booking_conflict_error".into())]);
    let second = retry_after_loss(&e, &worker);
    assert_eq!((second.synced, second.adopted, second.flagged), (1, 1, 0), "{second:?}");
    assert_eq!(e.fake.creates_for(&appointment(&e, &b).idempotency_key), 1);
    assert_no_orphans(&e, &[b]);
}

#[test]
fn a_booker_limit_refusal_after_a_late_create_is_looked_up_and_adopted() {
    let mut types = fixture_event_types();
    types[0] = EventType::new(1001, 45).booker_limit(1);
    let (e, worker) = env_with(&types, &[FIXTURE], 150);
    let mut r = request("call_known_a", "Max", "2030-01-02T10:00:00Z");
    r.customer_email = Some("max@example.com".into());
    let b = e.book.book(&r).expect("books");
    // The late first create counts against the limit: the retry's create is refused with a 400.
    e.fake.inject([Fault::LateCreate(Wall::from_millis(600))]);
    let second = retry_after_loss(&e, &worker);
    assert_eq!((second.synced, second.adopted, second.flagged), (1, 1, 0), "{second:?}");
    assert!(!appointment(&e, &b).requires_manual_review);
    assert_no_orphans(&e, &[b]);
}

#[test]
fn team_conflicts_are_slot_unavailable_and_looked_up_first() {
    let (e, worker) = env();
    let b = e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    e.fake.inject([Fault::CreateStatus(409, "Fixed hosts unavailable for booking.".into())]);
    let report = worker.run_once().expect("runs");
    assert_eq!(report.flagged, 1, "{report:?}");
    let a = appointment(&e, &b);
    assert_eq!(a.sync_error_code.as_deref(), Some("slot_unavailable"));
    // Every 409 on a create may be ours: the worker looked before deciding.
    assert_eq!(e.fake.stats().requests, 2, "a create and one lookup");
    for message in ["Round robin hosts unavailable for booking.", "No available users found."] {
        let failure = ApiFailure::Status { status: 409, message: message.into(), retry_after: None };
        assert_eq!(classify(&failure).code, "slot_unavailable", "{message}");
    }
}

/// Ten known callers, each synced, then each gives an email: ten attendee updates.
fn ten_synced_known_callers(e: &Env, worker: &Worker) -> Vec<Booking> {
    let bookings: Vec<Booking> = (0..10)
        .map(|i| {
            let call = format!("call_k{i}");
            let from = format!("+49 151 2345 67{i:02}");
            e.book
                .register_call(&NewCall {
                    retell_call_id: call.as_str().into(),
                    branch_id: Some(BranchId(1)),
                    from_number: Some(from),
                    ..Default::default()
                })
                .expect("registers");
            let start = t0() + Duration::days(1) + Duration::hours(i);
            e.book.book(&request(&call, "K", &format_utc(&start))).expect("books")
        })
        .collect();
    assert_eq!(worker.run_once().expect("runs").synced, 10);
    bookings
}

#[test]
fn attendee_additions_keep_their_own_limit_of_five_a_minute() {
    let (e, worker) = env();
    let bookings = ten_synced_known_callers(&e, &worker);
    for (i, b) in bookings.iter().enumerate() {
        assert_eq!(e.book.set_customer_email(b.customer_id, &format!("k{i}@example.com")).expect("sets"), 1);
    }
    let mut report = worker.run_once().expect("runs");
    assert_eq!(report.synced, 5, "five additions in the first minute: {report:?}");
    // The shared window counts per second and keeps a request a second past
    // the end of its minute (arrival and clock slack): free again at 62 s.
    e.clock.advance(Duration::seconds(61));
    assert_eq!(worker.run_once().expect("runs").synced, 0, "still within the window at 61 s");
    e.clock.advance(Duration::seconds(1));
    report.merge(&worker.run_once().expect("runs"));
    assert_eq!(report.synced, 10, "{report:?}");
    assert_eq!(e.fake.stats().rate_limited, 0, "no 429 from the attendees throttler");
    let added = e.fake.bookings().iter().filter(|b| b["attendees"].as_array().is_some_and(|l| l.len() == 2)).count();
    assert_eq!(added, 10);
}

#[test]
fn an_address_cal_com_would_refuse_is_never_sent_as_attendee() {
    let (e, worker) = env();
    let b = ten_synced_known_callers(&e, &worker).remove(0);
    // Cal.com's @IsEmail wants a top-level domain of two letters or more.
    assert_eq!(e.book.set_customer_email(b.customer_id, "max@example.c").expect_err("refused").code(), "invalid_email");
    // One stored before this rule existed: the update is skipped, not flagged.
    let company = CompanyId(1);
    let customer = b.customer_id;
    callbook::store::write(&**e.book.store(), move |tx| {
        tx.set_customer_email(company, customer, "max@example.c", t0())?;
        tx.insert_job(
            &NewJob {
                appointment_id: b.appointment_id,
                company_id: company,
                kind: JobKind::UpdateAttendee,
                max_attempts: 4,
                run_at: t0(),
            },
            t0(),
        )
    })
    .expect("writes");
    let requests = e.fake.stats().requests;
    let report = worker.run_once().expect("runs");
    assert_eq!((report.skipped, report.flagged), (1, 0), "{report:?}");
    assert_eq!(e.fake.stats().requests, requests, "nothing sent");
}

const TEMPLATE: &str = r#"{"companies": [{"id": 1, "name": "Salon Berlin", "calcom_api_key": "cal_live_secret_one",
    "calcom_email_fallback": "noreply+{appointment}@salon.example"}]}"#;

#[test]
fn a_fallback_email_per_appointment_passes_a_per_booker_limit() {
    let mut types = fixture_event_types();
    types[0] = EventType::new(1001, 45).booker_limit(1);
    // Shared fallback: the second emailless caller is refused with its own code.
    let (e, worker) = env_with(&types, &[FIXTURE], 2000);
    e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    let second = e.book.book(&request("call_anon_2", "B", "2030-01-02T12:00:00Z")).expect("books");
    let report = worker.run_once().expect("runs");
    assert_eq!((report.synced, report.flagged), (1, 1), "{report:?}");
    assert_eq!(appointment(&e, &second).sync_error_code.as_deref(), Some("calcom_booker_limit"));
    // A template with the appointment in it: every caller has an address of their own.
    let (e, worker) = env_with(&types, &[FIXTURE, TEMPLATE], 2000);
    let first = e.book.book(&request("call_anon", "A", "2030-01-02T10:00:00Z")).expect("books");
    let second = e.book.book(&request("call_anon_2", "B", "2030-01-02T12:00:00Z")).expect("books");
    let report = worker.run_once().expect("runs");
    assert_eq!((report.synced, report.flagged), (2, 0), "{report:?}");
    let emails: Vec<String> =
        e.fake.bookings().iter().map(|b| b["attendees"][0]["email"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(
        emails,
        [
            format!("noreply+{}@salon.example", first.appointment_id),
            format!("noreply+{}@salon.example", second.appointment_id)
        ]
    );
}

#[test]
fn a_lost_seat_is_found_by_its_own_metadata_not_booked_again() {
    // Event type 1002 is seated: a second create at the same start adds a
    // seat, and the answer has no top-level metadata.
    let (e, worker) = env();
    let mut r = request("call_anon", "A", "2030-01-02T10:00:00Z");
    r.service_id = Some(3);
    let b = e.book.book(&r).expect("books");
    e.fake.inject([Fault::LoseAnswer(Wall::from_millis(600))]);
    assert_eq!(worker.run_once().expect("runs").retried, 1);
    std::thread::sleep(Wall::from_millis(700));
    e.clock.advance(Duration::seconds(2));
    let second = worker.run_once().expect("runs");
    assert_eq!((second.synced, second.adopted), (1, 1), "{second:?}");
    assert_eq!(e.fake.creates_for(&appointment(&e, &b).idempotency_key), 1, "one seat, not two");
}

/// Cal.com as it answers seated lookups without any metadata: the booking
/// found at the start cannot be told apart from another caller's.
struct NoSeatMetadata(HttpCalcom);

impl CalcomApi for NoSeatMetadata {
    fn create_booking(&self, e: &Endpoint, p: &serde_json::Value) -> Result<CalBooking, ApiFailure> {
        self.0.create_booking(e, p)
    }
    fn find_bookings(&self, e: &Endpoint, q: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        let mut page = self.0.find_bookings(e, q)?;
        for b in &mut page.bookings {
            b.metadata = None;
            b.attendees.iter_mut().for_each(|a| a.metadata = None);
        }
        Ok(page)
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
fn a_seat_that_cannot_be_told_apart_is_never_booked_blind() {
    let (e, _) = env();
    let api = Arc::new(NoSeatMetadata(HttpCalcom::new(Wall::from_millis(150))));
    let worker =
        Worker::new(e.book.clone(), api, WorkerConfig { calcom_url: e.fake.url().into(), ..Default::default() });
    let mut r = request("call_anon", "A", "2030-01-02T10:00:00Z");
    r.service_id = Some(3);
    let b = e.book.book(&r).expect("books");
    e.fake.inject([Fault::LoseAnswer(Wall::from_millis(600))]);
    assert_eq!(worker.run_once().expect("runs").retried, 1);
    std::thread::sleep(Wall::from_millis(700));
    e.clock.advance(Duration::seconds(2));
    let second = worker.run_once().expect("runs");
    assert_eq!(second.flagged, 1, "{second:?}");
    let a = appointment(&e, &b);
    assert_eq!(a.sync_error_code.as_deref(), Some("calcom_unverifiable"));
    assert_eq!(e.fake.creates_for(&a.idempotency_key), 1, "no second seat");
}

#[test]
fn the_worker_slows_down_before_the_429() {
    let (e, worker) = env();
    // Another process on the same key has used 115 of the minute's 120.
    e.fake.consume("cal_live_secret_one", 115, t0());
    let bookings: Vec<Booking> = (0..20)
        .map(|i| {
            let start = t0() + Duration::days(1) + Duration::hours(i);
            e.book.book(&request("call_anon", "A", &format_utc(&start))).expect("books")
        })
        .collect();
    let mut report = RunReport::default();
    for _ in 0..180 {
        report.merge(&worker.run_once().expect("runs"));
        if report.synced == 20 {
            break;
        }
        e.clock.advance(Duration::seconds(1));
    }
    assert_eq!(report.synced, 20, "{report:?}");
    assert_eq!(e.fake.stats().rate_limited, 0, "the headers said when to stop: {report:?}");
    assert!(report.deferred_rate_limit > 0);
    assert_no_orphans(&e, &bookings);
}

#[test]
fn outage_and_lost_answers_with_a_longer_event_type_end_synced_once_each() {
    let (e, worker) = env_with(&fixture_event_types(), &[FIXTURE], 150);
    let bookings: Vec<Booking> = (0..200)
        .map(|i| {
            let start = t0() + Duration::days(1) + Duration::hours(i);
            e.book.book(&request("call_anon", "A", &format_utc(&start))).expect("books")
        })
        .collect();
    e.fake.inject([
        Fault::LoseAnswer(Wall::from_millis(300)),
        Fault::LateCreate(Wall::from_millis(300)),
        Fault::LoseAnswer(Wall::from_millis(300)),
        Fault::LateCreate(Wall::from_millis(300)),
    ]);
    e.fake.outage_until(t0() + Duration::minutes(10));
    let mut report = RunReport::default();
    for _ in 0..7200 {
        report.merge(&worker.run_once().expect("runs"));
        let s = e.book.stats().expect("stats");
        if s.jobs["available"] + s.jobs["retryable"] + s.jobs["running"] == 0 {
            break;
        }
        e.clock.advance(Duration::seconds(1));
    }
    std::thread::sleep(Wall::from_millis(400)); // late answers finish
    let s = e.book.stats().expect("stats");
    let fake = e.fake.stats();
    println!("outage + lost answers, event type 45 min vs service 30: {report:?}; fake: {fake:?}");
    let flagged: Vec<_> = e.book.review_list().expect("lists").into_iter().map(|a| a.sync_error_code).collect();
    assert_eq!(s.appointments["synced"], 200, "{s:?} {flagged:?}");
    assert_eq!(s.manual_review, 0);
    assert_eq!((fake.duplicated_keys, fake.live_bookings), (0, 200));
    assert!(report.adopted >= 2, "lost and late creates were adopted: {report:?}");
    assert_no_orphans(&e, &bookings);
}

/// A listing's order follows `getOrderBy` (packages/features/bookings/
/// repositories/GetBookingsRepositoryBase.ts): a sort given wins; with none
/// and one status, `past` lists the latest start first; otherwise the
/// earliest first.
#[test]
fn a_listing_is_ordered_as_cal_com_orders_it() {
    let (e, _worker) = env();
    let starts: Vec<_> = (1..=3).map(|d| t0() - Duration::days(d)).collect();
    for start in &starts {
        e.fake.add_booking_elsewhere(1001, *start, serde_json::json!({"name": "Walk-in"})).expect("booked");
    }
    let list = |query: &str| -> Vec<String> {
        let url = format!("{}/v2/bookings?{query}", e.fake.url());
        let answer: serde_json::Value = ureq::get(&url)
            .set("Authorization", "Bearer cal_live_secret_one")
            .set("cal-api-version", "2024-08-13")
            .call()
            .expect("lists")
            .into_json()
            .expect("json");
        answer["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|b| b["start"].as_str().expect("start").to_string())
            .collect()
    };
    let earliest_first = list("take=10");
    assert_eq!(earliest_first.len(), 3);
    assert!(earliest_first.windows(2).all(|w| w[0] < w[1]), "{earliest_first:?}");
    let latest_first: Vec<String> = earliest_first.iter().rev().cloned().collect();
    assert_eq!(list("status=past"), latest_first, "one status, no sort: past is latest first");
    assert_eq!(list("status=past&sortStart=asc"), earliest_first, "a sort given wins");
    assert_eq!(list("sortStart=desc"), latest_first);
    assert_eq!(list("sortEnd=desc"), latest_first);
    assert_eq!(list("status=past,upcoming"), earliest_first, "two statuses: by start, earliest first");
}
