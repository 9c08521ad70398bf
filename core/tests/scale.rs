//! Scale-out on the database servers, with real processes (this test
//! binary re-executed): 8 booking processes on one database, then 4 worker
//! processes syncing every appointment to the loopback fake Cal.com while
//! one of them is killed with SIGKILL mid-run. Every appointment is synced
//! exactly once (the fake counts creates per idempotency key), no job is
//! lost, no known phone becomes two customers, no anonymous caller is merged.
//!
//! `CALLBOOK_SCALE_APPOINTMENTS` sets the number of appointments (default
//! 10,000, as the issue asks; the same test at any size). The same run on a
//! SQLite file prints the figures to compare (run with `--test-threads=1`
//! for clean timings: tests/run does).

#![cfg(all(feature = "postgres", feature = "mysql"))]

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::*;
use chrono::Duration;
use conformance::server::{create, drop_database, fresh_name};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

const ROLE: &str = "CALLBOOK_SCALE_ROLE";
const BOOKERS: usize = 8;
const WORKERS: usize = 4;

fn appointments() -> usize {
    std::env::var("CALLBOOK_SCALE_APPOINTMENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}

/// The directory: one company with a Cal.com key; calls are made per process.
fn directory(calcom: &str) -> String {
    format!(
        r#"{{"companies": [{{"id": 1, "name": "Scale", "calcom_api_key": "cal_scale", "calcom_api_base": "{calcom}"}}],
            "branches": [{{"id": 1, "company_id": 1, "name": "Mitte", "country": "DE", "phone_number": "+4930123456"}}],
            "services": [{{"id": 1, "company_id": 1, "name": "Cut", "calcom_event_type_id": 1, "duration_minutes": 15}}]}}"#
    )
}

/// A booking process: `n` bookings, every one its own call; callers 0..50
/// are regulars whose numbers every process sees (one customer each, however
/// many processes book them at once), every third call is anonymous.
/// Several processes writing one SQLite file can be told "database is
/// locked" under heavy contention (SQLite's busy wait is not fair); a client
/// retries (bookings are idempotent). The servers never needed it here.
fn retrying<T>(retries: &mut u32, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match f() {
            Err(Error::Storage(m)) if m.contains("database is locked") && *retries < 1000 => *retries += 1,
            other => return other,
        }
    }
}

fn booker(url: &str, index: usize, n: usize) -> ! {
    let mut retries = 0;
    let book = retrying(&mut retries, || Callbook::open(url)).expect("opens");
    let day0 = chrono::Utc::now() + Duration::days(30);
    for i in 0..n {
        let global = index * n + i;
        let from = if global % 3 == 0 { "anonymous".to_string() } else { format!("+4915100000{:02}", global % 50) };
        let call = format!("call_scale_{global}");
        let new = NewCall {
            retell_call_id: CallId(call.clone()),
            company_id: Some(CompanyId(1)),
            branch_id: Some(BranchId(1)),
            from_number: Some(from),
            ..Default::default()
        };
        retrying(&mut retries, || book.register_call(&new)).expect("registers");
        let start = format_utc(&(day0 + Duration::minutes(15 * global as i64)));
        let request = conformance::request(&call, "Scale Caller", &start);
        retrying(&mut retries, || book.book(&request)).expect("books");
    }
    if retries > 0 {
        eprintln!("booker {index}: {retries} retries after \"database is locked\"");
    }
    println!("booked {n}");
    std::process::exit(0)
}

/// The victim's Cal.com client: after `n` creates, the next one is sent
/// (Cal.com makes the booking) and the worker hangs before it hears the
/// answer, holding its leases, until it is killed.
struct HangsAfter(HttpCalcom, std::sync::atomic::AtomicUsize, usize);

impl CalcomApi for HangsAfter {
    fn create_booking(&self, e: &Endpoint, p: &serde_json::Value) -> std::result::Result<CalBooking, ApiFailure> {
        let answer = self.0.create_booking(e, p);
        if self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.2 {
            println!("hanging");
            loop {
                std::thread::park();
            }
        }
        answer
    }
    fn find_bookings(&self, e: &Endpoint, q: &BookingQuery) -> std::result::Result<BookingPage, ApiFailure> {
        self.0.find_bookings(e, q)
    }
    fn get_booking(&self, e: &Endpoint, uid: &str) -> std::result::Result<CalBooking, ApiFailure> {
        self.0.get_booking(e, uid)
    }
    fn cancel_booking(&self, e: &Endpoint, uid: &str, s: Option<&str>, r: &str) -> std::result::Result<(), ApiFailure> {
        self.0.cancel_booking(e, uid, s, r)
    }
    fn reschedule_booking(&self, e: &Endpoint, uid: &str, m: &Move) -> std::result::Result<CalBooking, ApiFailure> {
        self.0.reschedule_booking(e, uid, m)
    }
    fn add_attendee(&self, e: &Endpoint, uid: &str, a: &NewAttendee) -> std::result::Result<(), ApiFailure> {
        self.0.add_attendee(e, uid, a)
    }
    fn slots(&self, e: &Endpoint, q: &SlotQuery) -> std::result::Result<SlotAnswer, ApiFailure> {
        self.0.slots(e, q)
    }
}

/// A worker process: syncs until nothing is due; `lease_offset` moves its
/// clock forward (the rescuer: jobs of the killed worker look expired to it).
fn worker(url: &str, name: &str, lease_offset: i64) -> ! {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now() + Duration::seconds(lease_offset)));
    let policy = Policy { lease: Duration::seconds(20), ..Policy::default() };
    let mut retries = 0;
    let book = retrying(&mut retries, || Callbook::open(url))
        .expect("opens")
        .with_clock(clock)
        .with_config(Config { policy, ..Config::default() });
    let http = HttpCalcom::new(std::time::Duration::from_secs(10));
    let api: Arc<dyn CalcomApi> = if name == "victim" {
        Arc::new(HangsAfter(http, std::sync::atomic::AtomicUsize::new(0), 50))
    } else {
        Arc::new(http)
    };
    let config = WorkerConfig {
        id: name.into(),
        threads: 2,
        requests_per_minute: u32::MAX,
        batch: 16,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(book, api, config).on_event(|e| {
        if matches!(e.outcome, SyncOutcome::Synced { .. }) {
            println!("synced {}", e.appointment_id);
        }
    });
    let report = retrying(&mut retries, || worker.run_once()).unwrap_or_else(|e| {
        eprintln!("worker {name} stopped: {e}");
        std::process::exit(3)
    });
    println!("done {}", report.synced);
    std::process::exit(0)
}

fn spawn(test: &str, role: &str, read_output: bool) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1", "--include-ignored"])
        .env(ROLE, role)
        .stdout(if read_output { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child starts")
}

fn children_role() -> Option<Vec<String>> {
    std::env::var(ROLE).ok().map(|r| r.split('|').map(str::to_string).collect())
}

fn scale_out(kind: &'static str, test: &str) {
    if let Some(role) = children_role() {
        match role.as_slice() {
            [r, url, i, n] if r == "book" => booker(url, i.parse().expect("i"), n.parse().expect("n")),
            [r, url, name, offset] if r == "work" => worker(url, name, offset.parse().expect("offset")),
            _ => panic!("unknown role {role:?}"),
        }
    }
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(1, 15)]).expect("fake Cal.com");
    fake.set_limit_per_minute(usize::MAX);
    let name = fresh_name(&format!("scale_{kind}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match kind {
        "sqlite" => dir.path().join("scale.db").to_str().expect("utf-8 path").to_string(),
        _ => create(kind, &name),
    };
    struct Cleanup(&'static str, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if self.0 != "sqlite" {
                drop_database(self.0, &self.1);
            }
        }
    }
    let _cleanup = Cleanup(kind, name);
    let book = Callbook::open(&url).expect("opens");
    book.import(&ImportData::from_json(&directory(fake.url())).expect("parses")).expect("imports");

    // 8 booking processes at once.
    let per = appointments() / BOOKERS;
    let total = per * BOOKERS;
    let started = std::time::Instant::now();
    let bookers: Vec<Child> = (0..BOOKERS).map(|i| spawn(test, &format!("book|{url}|{i}|{per}"), false)).collect();
    for mut b in bookers {
        assert!(b.wait().expect("waits").success(), "a booking process failed");
    }
    let booking_secs = started.elapsed().as_secs_f64();
    let stats = book.stats().expect("stats");
    assert_eq!(stats.appointments["pending"], total as u64);
    assert_eq!(stats.customers_known, 50, "one customer per known phone, across processes");
    assert_eq!(stats.customers_anonymous, (0..total).filter(|g| g % 3 == 0).count() as u64, "anonymous never merged");

    // 4 worker processes; the first hangs mid-job after 50 creates (its
    // batch leased, one booking made in Cal.com without the answer heard)
    // and is killed there with SIGKILL.
    let started = std::time::Instant::now();
    let mut workers: Vec<Child> = (0..WORKERS)
        .map(|i| {
            spawn(
                test,
                &format!("work|{url}|{}|0", if i == 0 { "victim".to_string() } else { format!("w{i}") }),
                i == 0,
            )
        })
        .collect();
    let mut victim_out = BufReader::new(workers[0].stdout.take().expect("stdout")).lines();
    let hung = (&mut victim_out).map_while(|l| l.ok()).any(|l| l == "hanging");
    assert!(hung, "the victim reached its hanging create");
    // Its other thread may still print: keep reading, so it is SIGKILL that ends it.
    let drain = std::thread::spawn(move || victim_out.count());
    let killed = Command::new("kill").args(["-9", &workers[0].id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = workers[0].wait().expect("waits");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "killed by SIGKILL: {status:?}");
    let _ = drain.join();

    for w in workers.iter_mut().skip(1) {
        assert!(w.wait().expect("waits").success(), "a worker failed");
    }
    // What is still `running` now is what the dead worker held.
    let stranded = book.stats().expect("stats").jobs["running"];
    assert!(stranded > 0, "the killed worker held leases");
    // The killed worker's leased jobs: claimed again once the lease is over
    // (the rescuer's clock is past it; nobody sleeps).
    let mut rescuer = spawn(test, &format!("work|{url}|rescuer|60"), false);
    assert!(rescuer.wait().expect("waits").success());
    let sync_secs = started.elapsed().as_secs_f64();

    let stats = book.stats().expect("stats");
    assert_eq!(stats.appointments["synced"], total as u64, "every appointment synced: {stats:?}");
    assert_eq!((stats.jobs["running"], stats.jobs["available"], stats.jobs["retryable"]), (0, 0, 0));
    assert_eq!(stats.manual_review, 0);
    let fake_stats = fake.stats();
    assert_eq!((fake_stats.creates, fake_stats.duplicated_keys), (total as u64, 0), "each exactly once");
    let mut keys: HashMap<String, u32> = HashMap::new();
    for b in fake.bookings() {
        *keys.entry(b["metadata"][METADATA_KEY].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    assert!(keys.values().all(|n| *n == 1) && keys.len() == total);
    println!("{kind}: the killed worker held {stranded} leased jobs; all were claimed again and synced once");
    println!(
        "{kind}: {total} bookings by {BOOKERS} processes in {booking_secs:.1} s ({:.0}/s); \
         synced by {WORKERS} worker processes (one killed) + a rescuer in {sync_secs:.1} s ({:.0}/s)",
        total as f64 / booking_secs,
        total as f64 / sync_secs
    );
}

// Minutes in a debug build: `cargo test` skips them; tests/run runs them in
// release with `--ignored --test-threads=1`.

/// The same processes on one SQLite file, for comparison in the same run.
#[test]
#[ignore = "run by tests/run in release: cargo test --release --test scale -- --ignored"]
fn scale_out_on_sqlite() {
    scale_out("sqlite", "scale_out_on_sqlite");
}

#[test]
#[ignore = "run by tests/run in release: cargo test --release --test scale -- --ignored"]
fn scale_out_on_postgres() {
    scale_out("postgres", "scale_out_on_postgres");
}

#[test]
#[ignore = "run by tests/run in release: cargo test --release --test scale -- --ignored"]
fn scale_out_on_mariadb() {
    scale_out("mysql", "scale_out_on_mariadb");
}

// One Cal.com rate limit per key across every process (#19 point 3): 4
// worker processes on one API key, each allowed 120 requests a minute,
// against the fake that counts every request per key in a rolling 60 s and
// answers 429 past 120. Together they keep to 120 in any 60 s, with no 429.

const RATE_WORKERS: usize = 4;

fn rate_appointments() -> usize {
    std::env::var("CALLBOOK_RATE_APPOINTMENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(300)
}

/// A worker process on the system clock, Cal.com's default limit: runs
/// until no job is left unfinished (deferred jobs are not due, so
/// `run_once` would end early), then prints its report.
fn rate_worker(url: &str, name: &str) -> ! {
    let mut retries = 0;
    let book = retrying(&mut retries, || Callbook::open(url)).expect("opens");
    let config =
        WorkerConfig { id: name.into(), threads: 2, batch: 16, requests_per_minute: 120, ..WorkerConfig::default() };
    let handle = Worker::new(book.clone(), Arc::new(HttpCalcom::new(std::time::Duration::from_secs(10))), config)
        .spawn()
        .expect("worker starts");
    loop {
        // The child's own loop (not a test's wait): is anything left?
        std::thread::sleep(std::time::Duration::from_millis(250));
        let Ok(stats) = book.stats() else { continue };
        if ["available", "running", "retryable"].iter().all(|s| stats.jobs.get(*s).copied().unwrap_or(0) == 0) {
            break;
        }
    }
    let report = handle.stop();
    println!("{name}: synced {} deferred_rate_limit {}", report.synced, report.deferred_rate_limit);
    std::process::exit(0)
}

fn one_rate_limit(kind: &'static str, test: &str) {
    if let Some(role) = children_role() {
        match role.as_slice() {
            [r, url, name] if r == "rate" => rate_worker(url, name),
            _ => panic!("unknown role {role:?}"),
        }
    }
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(1, 15)]).expect("fake Cal.com");
    fake.set_limit_per_minute(120);
    let name = fresh_name(&format!("rate_{kind}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match kind {
        "sqlite" => dir.path().join("rate.db").to_str().expect("utf-8 path").to_string(),
        _ => create(kind, &name),
    };
    struct Cleanup(&'static str, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if self.0 != "sqlite" {
                drop_database(self.0, &self.1);
            }
        }
    }
    let _cleanup = Cleanup(kind, name);
    let book = Callbook::open(&url).expect("opens");
    let directory = directory(fake.url()).replace("cal_scale", "cal_rate");
    book.import(&ImportData::from_json(&directory).expect("parses")).expect("imports");
    let total = rate_appointments();
    let day0 = chrono::Utc::now() + Duration::days(30);
    for i in 0..total {
        let call = format!("call_rate_{i}");
        let new = NewCall {
            retell_call_id: CallId(call.clone()),
            company_id: Some(CompanyId(1)),
            branch_id: Some(BranchId(1)),
            from_number: Some("anonymous".into()),
            ..Default::default()
        };
        book.register_call(&new).expect("registers");
        let start = format_utc(&(day0 + Duration::minutes(15 * i as i64)));
        book.book(&conformance::request(&call, "Rate Caller", &start)).expect("books");
    }

    let started = std::time::Instant::now();
    let workers: Vec<Child> = (0..RATE_WORKERS).map(|i| spawn(test, &format!("rate|{url}|r{i}"), true)).collect();
    let mut reports = Vec::new();
    for mut w in workers {
        let out = BufReader::new(w.stdout.take().expect("stdout")).lines().map_while(|l| l.ok()).collect::<Vec<_>>();
        assert!(w.wait().expect("waits").success(), "a worker failed");
        reports.extend(out.into_iter().filter(|l| l.contains("synced")));
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = book.stats().expect("stats");
    assert_eq!(stats.appointments["synced"], total as u64, "every appointment synced: {stats:?}");
    assert_eq!(stats.manual_review, 0);
    let fake_stats = fake.stats();
    let busiest = fake.busiest_minute("cal_rate");
    println!("{kind}: {RATE_WORKERS} worker processes on one key, {total} jobs in {secs:.1} s: {reports:?}");
    println!(
        "{kind}: most requests in any 60 s: {busiest} (limit 120); 429s: {}; requests {}",
        fake_stats.rate_limited, fake_stats.requests
    );
    assert_eq!((fake_stats.creates, fake_stats.duplicated_keys), (total as u64, 0), "each exactly once");
    assert!(busiest <= 120, "the key's limit held across processes: {busiest} in one minute");
    assert_eq!(fake_stats.rate_limited, 0, "no 429");
    if total > 240 {
        // The window was used, not starved: a third minute was needed and reached.
        assert!(secs >= 120.0, "{total} requests cannot pass 120 a minute in {secs:.1} s");
    }
}

#[test]
#[ignore = "minutes: cargo test --release --test scale -- --ignored"]
fn one_rate_limit_on_sqlite() {
    one_rate_limit("sqlite", "one_rate_limit_on_sqlite");
}

#[test]
#[ignore = "minutes: cargo test --release --test scale -- --ignored"]
fn one_rate_limit_on_postgres() {
    one_rate_limit("postgres", "one_rate_limit_on_postgres");
}

#[test]
#[ignore = "minutes: cargo test --release --test scale -- --ignored"]
fn one_rate_limit_on_mariadb() {
    one_rate_limit("mysql", "one_rate_limit_on_mariadb");
}
