//! Sync worker benchmark against the loopback fake Cal.com (rate limits
//! lifted on both sides, so the worker and the HTTP round trip are measured):
//! - throughput in jobs/s with 1, 2 and 8 threads;
//! - the worker's own cost per job beyond the HTTP call (p50/p99);
//! - end to end: from `book()` returning to the appointment being `synced`
//!   with a worker running beside the bookings (p50/p99).
//!
//! The branch is west of UTC (Los Angeles) and Cal.com's event type lasts
//! longer than the local service (45 vs 30 minutes), as in real accounts;
//! every run ends with 0 duplicate Cal.com bookings and 0 reviews.
//!
//! `cargo bench -p callbook --bench sync` (`-- --quick` for a short run).

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::store::*;
use callbook::*;
use chrono::Duration;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const DIRECTORY: &str = r#"{
  "companies": [{"id": 1, "name": "Bench", "calcom_api_key": "cal_test_bench"}],
  "branches": [{"id": 1, "company_id": 1, "name": "HQ", "timezone": "America/Los_Angeles", "country": "US", "phone_number": "+1 310 555 0100"}],
  "services": [{"id": 1, "company_id": 1, "name": "Slot", "calcom_event_type_id": 1, "duration_minutes": 30}],
  "calls": [{"id": 1, "retell_call_id": "call_bench", "company_id": 1, "branch_id": 1, "from_number": "+4915123456789"}]
}"#;

thread_local! {
    static HTTP_NS: Cell<u64> = const { Cell::new(0) };
}

/// The real client, timing every call on the calling thread.
struct Timed(HttpCalcom);

fn timed<T>(f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    HTTP_NS.with(|c| c.set(c.get() + t.elapsed().as_nanos() as u64));
    out
}

impl CalcomApi for Timed {
    fn create_booking(&self, e: &Endpoint, p: &serde_json::Value) -> Result<CalBooking, ApiFailure> {
        timed(|| self.0.create_booking(e, p))
    }
    fn find_bookings(&self, e: &Endpoint, q: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        timed(|| self.0.find_bookings(e, q))
    }
    fn get_booking(&self, e: &Endpoint, uid: &str) -> Result<CalBooking, ApiFailure> {
        timed(|| self.0.get_booking(e, uid))
    }
    fn cancel_booking(&self, e: &Endpoint, uid: &str, s: Option<&str>, r: &str) -> Result<(), ApiFailure> {
        timed(|| self.0.cancel_booking(e, uid, s, r))
    }
    fn reschedule_booking(&self, e: &Endpoint, uid: &str, m: &Move) -> Result<CalBooking, ApiFailure> {
        timed(|| self.0.reschedule_booking(e, uid, m))
    }
    fn add_attendee(&self, e: &Endpoint, uid: &str, a: &NewAttendee) -> Result<(), ApiFailure> {
        timed(|| self.0.add_attendee(e, uid, a))
    }
    fn slots(&self, e: &Endpoint, q: &SlotQuery) -> Result<SlotAnswer, ApiFailure> {
        timed(|| self.0.slots(e, q))
    }
}

struct Setup {
    book: Callbook,
    fake: FakeCalcom,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() };
    let book = Callbook::new(Arc::new(SqliteStore::open_with(dir.path().join("sync.db"), options).expect("opens")));
    book.import(&ImportData::from_json(DIRECTORY).expect("parses")).expect("imports");
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(1, 45)]).expect("fake starts");
    fake.set_limit_per_minute(usize::MAX);
    Setup { book, fake, _dir: dir }
}

fn book_n(book: &Callbook, n: usize, offset: usize) {
    let base = chrono::Utc::now() + Duration::days(30);
    for i in offset..offset + n {
        let start = format_utc(&(base + Duration::hours(i as i64)));
        book.book(&BookingRequest {
            retell_call_id: "call_bench".into(),
            customer_name: "Bench".into(),
            service_id: Some(1),
            start: Some(start),
            ..Default::default()
        })
        .expect("books");
    }
}

fn worker(s: &Setup, threads: usize) -> Worker {
    let config = WorkerConfig {
        threads,
        batch: 64,
        calcom_url: s.fake.url().into(),
        requests_per_minute: u32::MAX,
        ..WorkerConfig::default()
    };
    Worker::new(s.book.clone(), Arc::new(Timed(HttpCalcom::new(std::time::Duration::from_secs(5)))), config)
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 300 } else { 3000 };
    println!("callbook sync benchmark (loopback fake Cal.com, SQLite NORMAL){}", if quick { " [quick]" } else { "" });

    for threads in [1, 2, 8] {
        let s = setup();
        book_n(&s.book, n, 0);
        let w = worker(&s, threads);
        let t = Instant::now();
        let report = w.run_once().expect("runs");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.synced as usize, n);
        let (fake, stats) = (s.fake.stats(), s.book.stats().expect("stats"));
        assert_eq!((fake.duplicated_keys, fake.live_bookings, stats.manual_review), (0, n, 0), "{fake:?}");
        println!("  {threads} thread(s): {:>7.0} jobs/s ({n} jobs in {secs:.2} s)", n as f64 / secs);
    }

    // The worker's own cost per job: each job run by hand on this thread,
    // minus the time spent inside the HTTP client.
    let s = setup();
    book_n(&s.book, n, 0);
    let w = worker(&s, 1);
    let mut overhead_ns = Vec::with_capacity(n);
    let mut http_ns = Vec::with_capacity(n);
    loop {
        let jobs = s.book.claim_jobs("bench", 64).expect("claims");
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            HTTP_NS.with(|c| c.set(0));
            let t = Instant::now();
            let event = w.run_job(job);
            let total = t.elapsed().as_nanos() as u64;
            assert!(matches!(event.outcome, SyncOutcome::Synced { .. }));
            let http = HTTP_NS.with(Cell::get);
            http_ns.push(http);
            overhead_ns.push(total.saturating_sub(http));
        }
    }
    println!(
        "  per job: HTTP call p50 {:.0} µs p99 {:.0} µs; worker overhead beyond it p50 {:.0} µs p99 {:.0} µs",
        pct(&mut http_ns, 0.5),
        pct(&mut http_ns, 0.99),
        pct(&mut overhead_ns, 0.5),
        pct(&mut overhead_ns, 0.99)
    );

    // End to end with a worker running beside the bookings.
    let s = setup();
    let booked_at: Arc<Mutex<HashMap<AppointmentId, Instant>>> = Arc::default();
    // When each was synced: the worker may sync one before book() has
    // returned to this thread, so the two are matched afterwards.
    let synced_at: Arc<Mutex<HashMap<AppointmentId, Instant>>> = Arc::default();
    let s2 = Arc::clone(&synced_at);
    let w = worker(&s, 2).on_event(move |e| {
        if matches!(e.outcome, SyncOutcome::Synced { .. }) {
            s2.lock().expect("lock").insert(e.appointment_id, Instant::now());
        }
    });
    let stop = AtomicBool::new(false);
    let e2e = if quick { 200 } else { 1000 };
    std::thread::scope(|scope| {
        scope.spawn(|| w.run(&stop, std::time::Duration::from_micros(200)));
        let base = chrono::Utc::now() + Duration::days(30);
        for i in 0..e2e {
            let start = format_utc(&(base + Duration::hours(i as i64)));
            let request = BookingRequest {
                retell_call_id: "call_bench".into(),
                customer_name: "Bench".into(),
                service_id: Some(1),
                start: Some(start),
                ..Default::default()
            };
            let b = s.book.book(&request).expect("books");
            booked_at.lock().expect("lock").insert(b.appointment_id, Instant::now());
            std::thread::sleep(std::time::Duration::from_millis(2)); // ~500 bookings/s offered
        }
        while synced_at.lock().expect("lock").len() < e2e {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let (booked, synced) = (booked_at.lock().expect("lock"), synced_at.lock().expect("lock"));
    let mut l: Vec<u64> = booked
        .iter()
        .map(|(id, at)| synced.get(id).map_or(0, |s| s.saturating_duration_since(*at).as_nanos() as u64))
        .collect();
    println!(
        "  end to end, book() returned -> synced: p50 {:.2} ms, p99 {:.2} ms ({e2e} bookings)",
        pct(&mut l, 0.5) / 1000.0,
        pct(&mut l, 0.99) / 1000.0
    );
}
