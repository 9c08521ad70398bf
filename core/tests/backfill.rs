//! Cal.com's side read back, against the loopback fake Cal.com with an
//! injected clock: a backfill holds every booking made elsewhere once (and
//! again holds nothing twice), keeps to the rate limit, resumes after an
//! interruption; a drift report finds every planted difference and nothing
//! else.

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::store::*;
use callbook::*;
use chrono::{DateTime, Duration, Utc};
use conformance::{request, t0, FIXTURE};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Env {
    book: Callbook,
    clock: Arc<ManualClock>,
    fake: FakeCalcom,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() };
    let store = SqliteStore::open_with(dir.path().join("backfill.db"), options).expect("opens");
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(Arc::new(store)).with_clock(clock.clone());
    book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
    // Company 2 gets a key of its own, so both are read.
    let key = r#"{"companies": [{"id": 2, "name": "Praxis Hamburg", "calcom_api_key": "cal_live_two"}]}"#;
    book.import(&ImportData::from_json(key).expect("parses")).expect("imports");
    let types = [EventType::new(1001, 45), EventType::new(1002, 60).seated(2), EventType::new(2001, 50)];
    let fake = FakeCalcom::with_event_types(clock.clone(), &types).expect("fake starts");
    Env { book, clock, fake, _dir: dir }
}

fn reader_on(e: &Env, api: Arc<dyn CalcomApi>) -> CalcomReader {
    let options =
        CalcomReadOptions { calcom_url: e.fake.url().into(), days_back: 1, days_ahead: 400, ..Default::default() };
    CalcomReader::new(e.book.clone(), api, options)
}

fn http() -> Arc<dyn CalcomApi> {
    Arc::new(HttpCalcom::new(std::time::Duration::from_secs(5)))
}

/// `n` bookings made on Cal.com's page, some at the same start (pages end among them).
fn plant(e: &Env, event_type: i64, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let start = t0() + Duration::days(1 + (i / 40) as i64) + Duration::minutes(15 * (i % 40 / 2) as i64);
            let attendee = serde_json::json!({"name": format!("Guest {i}"), "email": format!("guest{i}@example.com"),
                "phoneNumber": format!("+4917{:08}", i)});
            e.fake.add_booking_elsewhere(event_type, start, attendee).expect("planted")
        })
        .collect()
}

/// The clock waits instead of the test (the reader calls this when the limit is reached).
fn waiter(clock: &Arc<ManualClock>) -> impl FnMut(DateTime<Utc>) + '_ {
    move |until| clock.set(until.max(clock.now()))
}

fn held_per_uid(e: &Env) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for company in [CompanyId(1), CompanyId(2)] {
        let all = callbook::store::read(&**e.book.store(), |tx| {
            tx.appointments_starting(company, t0() - Duration::days(10), t0() + Duration::days(500))
        })
        .expect("reads");
        for a in all {
            if let Some(uid) = a.calcom_v2_booking_uid {
                *count.entry(uid).or_insert(0) += 1;
            }
        }
    }
    count
}

#[test]
fn a_backfill_holds_every_booking_once_within_the_rate_limit() {
    let e = env();
    let ones = plant(&e, 1001, 600);
    let twos = plant(&e, 2001, 130);
    // One of callbook's own, synced by the worker: recognised, not held twice.
    e.book.book(&request("call_known_a", "Max", "2030-01-20T09:00:00Z")).expect("books");
    let config = WorkerConfig { calcom_url: e.fake.url().into(), ..Default::default() };
    Worker::new(e.book.clone(), http(), config).run_once().expect("syncs");
    let reader = reader_on(&e, http());
    let mut pages = Vec::new();
    let report = reader.pull(&mut waiter(&e.clock), &mut |p| pages.push(*p)).expect("pulls");
    assert_eq!((report.imported, report.ours, report.known), (730, 1, 0), "{report:?}");
    // Pages of 250: 3 for event type 1001 (601 bookings), 1 for 1002 (none), 1 for company 2's 2001.
    assert_eq!(report.requests, 5);
    assert_eq!(pages.last().map(|p| p.listed), Some(130));
    let held = held_per_uid(&e);
    assert!(ones.iter().chain(&twos).all(|uid| held.get(uid) == Some(&1)), "every booking held once");
    // The customers came from the attendees' numbers, in their company.
    let a = callbook::store::read(&**e.book.store(), |tx| tx.appointments_by_booking_uid(CompanyId(2), &twos[0]))
        .expect("reads");
    let c = e.book.customer(CompanyId(2), a[0].customer_id).expect("reads").expect("customer");
    assert_eq!((c.phone.as_str(), c.source), ("+491700000000", CustomerSource::Calcom));
    // Again: nothing new, nothing twice.
    let again = reader.pull(&mut waiter(&e.clock), &mut |_| {}).expect("pulls");
    assert_eq!((again.imported, again.known, again.resumed), (0, 730, 0), "{again:?}");
    assert!(held_per_uid(&e).values().all(|n| *n == 1));
    assert!(e.fake.busiest_minute("cal_live_secret_one") <= 120);
    assert_eq!(e.fake.stats().rate_limited, 0);
}

/// Cal.com answers `pages` listings, then goes away.
struct FailsAfter(HttpCalcom, AtomicUsize);

impl CalcomApi for FailsAfter {
    fn create_booking(&self, e: &Endpoint, p: &serde_json::Value) -> Result<CalBooking, ApiFailure> {
        self.0.create_booking(e, p)
    }
    fn find_bookings(&self, e: &Endpoint, q: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        if self.1.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.1.store(0, Ordering::SeqCst);
            return Err(ApiFailure::Network("connection reset".into()));
        }
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
fn an_interrupted_backfill_resumes_where_it_stopped() {
    let e = env();
    let planted = plant(&e, 1001, 900);
    let broken =
        reader_on(&e, Arc::new(FailsAfter(HttpCalcom::new(std::time::Duration::from_secs(5)), AtomicUsize::new(2))));
    let err = broken.pull(&mut waiter(&e.clock), &mut |_| {}).expect_err("Cal.com went away");
    assert_eq!(err.code(), "calcom_unavailable");
    assert_eq!(held_per_uid(&e).len(), 500, "two pages were held before it stopped");
    let resumed = reader_on(&e, http()).pull(&mut waiter(&e.clock), &mut |_| {}).expect("resumes");
    assert_eq!(resumed.resumed, 1, "company 1's event type went on from its place");
    assert_eq!((resumed.imported, resumed.known), (400, 0), "{resumed:?}");
    // Event type 1001 read 2 more pages (not 4 from the start); 1002 and company 2's one empty page each.
    assert_eq!(resumed.requests, 4);
    let held = held_per_uid(&e);
    assert!(planted.iter().all(|uid| held.get(uid) == Some(&1)));
}

#[test]
fn a_drift_report_finds_every_difference_and_nothing_else() {
    let e = env();
    plant(&e, 1001, 60);
    let reader = reader_on(&e, http());
    reader.pull(&mut waiter(&e.clock), &mut |_| {}).expect("pulls");
    let clean = reader.drift(&mut waiter(&e.clock)).expect("compares");
    assert_eq!(clean.total(), 0, "{clean:?}");
    // Plant one of each: a booking made after the backfill, one cancelled in Cal.com,
    // one cancelled locally, one moved locally, one synced locally that Cal.com never had.
    let api = HttpCalcom::new(std::time::Duration::from_secs(5));
    let endpoint = Endpoint { base_url: e.fake.url().into(), api_key: Secret::new("cal_live_secret_one") };
    let late = e
        .fake
        .add_booking_elsewhere(1001, t0() + Duration::days(30), serde_json::json!({"name": "Late"}))
        .expect("planted");
    let local = callbook::store::read(&**e.book.store(), |tx| {
        tx.appointments_starting(CompanyId(1), t0(), t0() + Duration::days(400))
    })
    .expect("reads");
    let uid = |i: usize| local[i].calcom_v2_booking_uid.clone().expect("held");
    api.cancel_booking(&endpoint, &uid(0), None, "by the host").expect("cancels in Cal.com");
    let (one, two, now) = (local[1].id, local[2].id, e.book.now());
    callbook::store::write(&**e.book.store(), move |tx| {
        tx.cancel_appointment(CompanyId(1), one, now)?;
        tx.move_appointment(
            CompanyId(1),
            two,
            now + Duration::days(3),
            now + Duration::days(3) + Duration::minutes(45),
            false,
            now,
        )
    })
    .expect("plants");
    let ghost = e.book.book(&request("call_known_a", "Max", "2030-02-20T09:00:00Z")).expect("books");
    let id = ghost.appointment_id;
    callbook::store::write(&**e.book.store(), move |tx| {
        tx.record_sync_success(CompanyId(1), id, 777, "never-in-calcom", None, now)
    })
    .expect("plants");
    let report = reader.drift(&mut waiter(&e.clock)).expect("compares");
    let company = &report.companies[0];
    assert_eq!(company.missing_locally, vec![late]);
    assert_eq!(company.missing_in_calcom, vec![ghost.appointment_id]);
    assert_eq!(company.different_start, vec![local[2].id]);
    let mut both = vec![local[0].id, local[1].id];
    both.sort();
    assert_eq!(company.cancelled_one_side, both);
    assert_eq!(report.total(), 5, "{report:?}");
    // The counts are kept for /metrics.
    let kept = callbook::store::read(&**e.book.store(), |tx| tx.drift()).expect("reads");
    assert_eq!((kept[0].missing_locally, kept[0].cancelled_one_side), (1, 2));
}

/// The issue's figures: 10,000 bookings backfilled (twice), and a drift
/// report over them with 50 planted differences. `cargo test --release -p
/// callbook --test backfill -- --ignored --nocapture`.
#[test]
#[ignore]
fn ten_thousand_bookings_backfilled_and_compared() {
    let e = env();
    e.fake.set_limit_per_minute(120);
    let planted = plant(&e, 1001, 10_000);
    let reader = reader_on(&e, http());
    let started = std::time::Instant::now();
    let first = reader.pull(&mut waiter(&e.clock), &mut |_| {}).expect("pulls");
    let took = started.elapsed();
    let second = reader.pull(&mut waiter(&e.clock), &mut |_| {}).expect("pulls");
    let held = held_per_uid(&e);
    let duplicates = held.values().filter(|n| **n > 1).count();
    println!(
        "backfill of {} bookings: {:?}, {} requests (minimum at take=250: {} pages and one for each of the two \
         empty event types), second run imported {}, duplicates {duplicates}, busiest minute {} requests",
        planted.len(),
        took,
        first.requests,
        planted.len().div_ceil(250),
        second.imported,
        e.fake.busiest_minute("cal_live_secret_one")
    );
    assert_eq!((first.imported, second.imported, duplicates), (10_000, 0, 0));
    // 50 planted differences: 10 made in Cal.com after the backfill, 10 cancelled there, 10 cancelled
    // locally, 10 moved locally, 10 synced locally under uids Cal.com never had.
    let api = HttpCalcom::new(std::time::Duration::from_secs(5));
    let endpoint = Endpoint { base_url: e.fake.url().into(), api_key: Secret::new("cal_live_secret_one") };
    let local = callbook::store::read(&**e.book.store(), |tx| {
        tx.appointments_starting(CompanyId(1), t0(), t0() + Duration::days(400))
    })
    .expect("reads");
    let now = e.book.now();
    for i in 0..10 {
        e.fake.add_booking_elsewhere(
            1001,
            t0() + Duration::days(300) + Duration::hours(i),
            serde_json::json!({"name": "Late"}),
        );
        api.cancel_booking(&endpoint, local[i as usize].calcom_v2_booking_uid.as_deref().unwrap_or(""), None, "host")
            .expect("cancels");
    }
    let ids: Vec<AppointmentId> = local[100..120].iter().map(|a| a.id).collect();
    // Ten appointments synced locally under uids Cal.com never had.
    let ghosts: Vec<AppointmentId> = (0..10)
        .map(|i| {
            let start = format_utc(&(t0() + Duration::days(320) + Duration::hours(i)));
            e.book.book(&request("call_known_a", "Max", &start)).expect("books").appointment_id
        })
        .collect();
    callbook::store::write(&**e.book.store(), move |tx| {
        for (n, id) in ids.iter().enumerate() {
            match n / 10 {
                0 => tx.cancel_appointment(CompanyId(1), *id, now)?,
                _ => tx.move_appointment(
                    CompanyId(1),
                    *id,
                    now + Duration::days(350),
                    now + Duration::days(350),
                    false,
                    now,
                )?,
            }
        }
        for (n, id) in ghosts.iter().enumerate() {
            tx.record_sync_success(CompanyId(1), *id, 1, &format!("ghost-{n}"), None, now)?;
        }
        Ok(())
    })
    .expect("plants");
    let started = std::time::Instant::now();
    let report = reader.drift(&mut waiter(&e.clock)).expect("compares");
    let c = &report.companies[0];
    println!(
        "drift over {} appointments: {:?}, {} requests; found {} missing locally, {} missing in Cal.com, \
         {} different start, {} cancelled on one side (50 planted)",
        local.len(),
        started.elapsed(),
        report.requests,
        c.missing_locally.len(),
        c.missing_in_calcom.len(),
        c.different_start.len(),
        c.cancelled_one_side.len()
    );
    assert_eq!(
        (c.missing_locally.len(), c.missing_in_calcom.len(), c.different_start.len(), c.cancelled_one_side.len()),
        (10, 10, 10, 20)
    );
}
