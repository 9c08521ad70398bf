//! Workers wake on new work (#19 point 4): on PostgreSQL a booking's
//! transaction notifies `callbook_jobs` when it enqueues a job, and an idle
//! worker waits on a listening connection of its own, so it starts the job
//! at once instead of at its next poll. Polling stays the fallback (and the
//! way of MySQL/MariaDB and SQLite).
//!
//! The worker here polls every 60 s: a test that passes by polling would
//! take a minute. Nothing sleeps to wait for a result; the one timed wait is
//! the control's, which shows that without listening nothing happens for
//! seconds.

#![cfg(all(feature = "postgres", feature = "mysql"))]

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::*;
use chrono::Duration;
use conformance::server::{create, drop_database, fresh_name};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

const LONG_POLL_MS: u64 = 60_000;

struct Db {
    kind: &'static str,
    name: String,
    url: String,
    fake: FakeCalcom,
    book: Callbook,
}

impl Drop for Db {
    fn drop(&mut self) {
        drop_database(self.kind, &self.name);
    }
}

fn db(kind: &'static str) -> Db {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(1, 15)]).expect("fake Cal.com");
    fake.set_limit_per_minute(usize::MAX);
    let name = fresh_name(&format!("wake_{kind}"));
    let url = create(kind, &name);
    let book = Callbook::open(&url).expect("opens");
    let directory = format!(
        r#"{{"companies": [{{"id": 1, "name": "Wake", "calcom_api_key": "cal_wake", "calcom_api_base": "{}"}}],
            "branches": [{{"id": 1, "company_id": 1, "name": "Mitte", "country": "DE", "phone_number": "+4930123456"}}],
            "services": [{{"id": 1, "company_id": 1, "name": "Cut", "calcom_event_type_id": 1, "duration_minutes": 15}}]}}"#,
        fake.url()
    );
    book.import(&ImportData::from_json(&directory).expect("parses")).expect("imports");
    Db { kind, name, url, fake, book }
}

/// Books appointment `i` (its own call) and returns its id.
fn book_one(book: &Callbook, i: usize) -> AppointmentId {
    let call = format!("call_wake_{i}");
    book.register_call(&NewCall {
        retell_call_id: CallId(call.clone()),
        company_id: Some(CompanyId(1)),
        branch_id: Some(BranchId(1)),
        from_number: Some("anonymous".into()),
        ..Default::default()
    })
    .expect("registers");
    let start = format_utc(&(chrono::Utc::now() + Duration::days(30) + Duration::minutes(15 * i as i64)));
    book.book(&conformance::request(&call, "Wake Caller", &start)).expect("books").appointment_id
}

/// A worker on a store of its own (its own connections, as another process
/// would have), reporting every synced appointment on the channel.
fn worker(db: &Db, idle_ms: u64, listen: bool) -> (WorkerHandle, mpsc::Receiver<(AppointmentId, Instant)>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let config = WorkerConfig { idle_ms, listen, calcom_url: db.fake.url().into(), ..WorkerConfig::default() };
    let own = Callbook::open(&db.url).expect("opens");
    let handle = Worker::new(own, Arc::new(HttpCalcom::new(std::time::Duration::from_secs(5))), config)
        .on_event(move |e| {
            if matches!(e.outcome, SyncOutcome::Synced { .. }) {
                let _ = tx.lock().map(|tx| tx.send((e.appointment_id, Instant::now())));
            }
        })
        .spawn()
        .expect("worker starts");
    (handle, rx)
}

/// Until the worker has begun `n` idle waits (it found nothing due and waits).
fn until_idle(handle: &WorkerHandle, n: u64) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while handle.worker().idle_waits() < n {
        assert!(Instant::now() < deadline, "the worker never went idle");
        std::thread::yield_now();
    }
}

#[test]
fn a_listening_worker_starts_a_new_job_at_once_not_at_its_next_poll() {
    let db = db("postgres");
    let (handle, synced) = worker(&db, LONG_POLL_MS, true);
    for round in 0..3 {
        // The worker is idle (waiting up to 60 s) before each booking.
        until_idle(&handle, round + 1);
        let booked = Instant::now();
        let id = book_one(&db.book, round as usize);
        let (got, at) = synced.recv_timeout(std::time::Duration::from_secs(10)).expect("synced within seconds");
        assert_eq!(got, id);
        let latency = at - booked;
        assert!(latency < std::time::Duration::from_secs(5), "round {round}: {latency:?}, a poll would take 60 s");
    }
    // The last wait ends with a notification too: stop, then one more job wakes it.
    until_idle(&handle, 4);
    handle.signal_stop();
    book_one(&db.book, 99);
    let report = handle.stop();
    assert!(report.woken >= 3, "woken by notifications, not by the poll: {report:?}");
    assert_eq!(db.book.stats().expect("stats").appointments["synced"], 3);
}

/// The control: the same worker polling (and one listening on MariaDB, which
/// has no notifications) does not see a new job for seconds.
#[test]
fn a_polling_worker_waits_for_its_poll_interval() {
    for (kind, listen) in [("postgres", false), ("mysql", true)] {
        let db = db(kind);
        let (handle, synced) = worker(&db, LONG_POLL_MS, listen);
        until_idle(&handle, 1);
        book_one(&db.book, 0);
        assert!(
            synced.recv_timeout(std::time::Duration::from_secs(3)).is_err(),
            "{kind} listen={listen}: picked up before its poll"
        );
        // The worker sleeps out its minute; the database goes with `db`.
        handle.signal_stop();
    }
}

/// Booking → synced latency on PostgreSQL, a worker idle at the default
/// poll interval (200 ms), polling vs listening. Each booking is made
/// while the worker is idle, at a pseudo-random point of its poll cycle.
#[test]
#[ignore = "a measurement: cargo test --release --test wake -- --ignored --nocapture"]
fn booking_to_synced_latency_polling_vs_listening() {
    let db = db("postgres");
    let n = 60;
    let mut seed: u64 = 0x5eed;
    let mut next_gap = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        std::time::Duration::from_millis((seed >> 33) % 250)
    };
    for listen in [false, true] {
        let (handle, synced) = worker(&db, WorkerConfig::default().idle_ms, listen);
        let mut ms = Vec::with_capacity(n);
        for i in 0..n {
            std::thread::sleep(next_gap()); // pacing: lands anywhere in the poll cycle
            let booked = Instant::now();
            let id = book_one(&db.book, (listen as usize) * 1000 + i);
            let (got, at) = synced.recv_timeout(std::time::Duration::from_secs(10)).expect("synced");
            assert_eq!(got, id);
            ms.push((at - booked).as_secs_f64() * 1000.0);
        }
        let report = handle.stop();
        ms.sort_by(f64::total_cmp);
        let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
        println!(
            "postgres, worker idle_ms 200, {}: booking -> synced p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms ({n} bookings; woken {})",
            if listen { "LISTEN/NOTIFY" } else { "polling" },
            pct(0.5),
            pct(0.9),
            pct(1.0),
            report.woken
        );
    }
}
