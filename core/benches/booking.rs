//! Booking benchmark: callbook's `book()` on a SQLite file (WAL,
//! synchronous=NORMAL) next to raw rusqlite running the same SQL in one
//! transaction per booking, in the same run; then both again with a million
//! appointments already stored.
//!
//! `cargo bench -p callbook --bench booking` (full), `-- --quick` (smoke run),
//! `-- --profile N [--raw]` (N bookings alone, for callgrind).
//! Env: CALLBOOK_BENCH_N (bookings per run), CALLBOOK_BENCH_ROWS (pre-stored appointments).

use callbook::rules::{idempotency_key, placeholder_phone};
use callbook::store::{Checkpoint, SqliteOptions, SqliteStore};
use callbook::{
    format_utc, BookingRequest, CallDbId, Callbook, CompanyId, Config, ImportData, NewCall, ServiceId, Synchronous,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const DIRECTORY: &str = r#"{
  "companies": [{"id": 1, "name": "Bench GmbH"}],
  "branches": [{"id": 1, "company_id": 1, "name": "HQ", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+4930123456"}],
  "services": [{"id": 1, "company_id": 1, "name": "Slot", "calcom_event_type_id": 1, "duration_minutes": 30}]
}"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn base_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 1, 1, 8, 0, 0).single().expect("valid")
}

/// Call i: even = withheld number, odd = one of 1,000 regulars (E.164).
fn from_number(i: usize) -> String {
    if i % 2 == 0 {
        "anonymous".into()
    } else {
        format!("+4915{:08}", 10_000_000 + (i / 2) % 1000)
    }
}

fn call_id(run: &str, i: usize) -> String {
    format!("call_{run}_{i}")
}

fn start_of(i: usize) -> DateTime<Utc> {
    base_start() + Duration::minutes(30 * i as i64)
}

/// A database with the directory, `rows` appointments already stored, and the calls of both runs.
fn prepare(path: &Path, rows: usize, n: usize) {
    let store = SqliteStore::open_with(path, SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() })
        .expect("opens");
    let book = Callbook::new(Arc::new(store));
    let mut data = ImportData::from_json(DIRECTORY).expect("directory");
    for run in ["raw", "callbook", "warm_raw", "warm_callbook"] {
        for i in 0..n {
            data.calls.push(NewCall {
                retell_call_id: call_id(run, i).as_str().into(),
                company_id: Some(CompanyId(1)),
                branch_id: Some(callbook::BranchId(1)),
                from_number: Some(from_number(i)),
                ..Default::default()
            });
        }
    }
    book.import(&data).expect("imports");
    drop(book);
    if rows > 0 {
        let mut conn = Connection::open(path).expect("opens");
        let tx = conn.transaction().expect("tx");
        let now = "2030-01-01 00:00:00.000000";
        {
            let mut st = tx
                .prepare("INSERT INTO customers (id, company_id, name, phone, source, created_at, updated_at) VALUES (?1, 1, 'Seed', ?2, 'retell_webhook', ?3, ?3)")
                .expect("prepares");
            for c in 0..10_000i64 {
                st.execute(params![1_000_000 + c, format!("+4916{}", 1_000_000 + c), now]).expect("inserts");
            }
        }
        {
            let mut a = tx.prepare("INSERT INTO appointments (id, customer_id, company_id, branch_id, service_id, starts_at, ends_at, status, calcom_sync_status, sync_origin, metadata, sync_attempt_count, requires_manual_review, idempotency_key, calcom_v2_booking_uid, created_at, updated_at) VALUES (?1, ?2, 1, 1, 1, ?3, ?3, 'confirmed', 'synced', 'retell', '{}', 1, 0, ?4, ?4, ?5, ?5)").expect("prepares");
            let mut j = tx.prepare("INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt, max_attempts, run_at, lease_token, created_at, updated_at) VALUES (?1, 1, 'calcom.create', 'completed', 1, 4, ?2, 1, ?2, ?2)").expect("prepares");
            let seed_start = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).single().expect("valid");
            for r in 0..rows as i64 {
                let at = callbook_db_time(seed_start + Duration::minutes(r));
                a.execute(params![10_000_000 + r, 1_000_000 + r % 10_000, at, format!("seed-{r}"), now])
                    .expect("inserts");
                j.execute(params![10_000_000 + r, now]).expect("inserts");
            }
        }
        tx.commit().expect("commits");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;").expect("checkpoints");
    }
}

fn callbook_db_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

struct Run {
    name: String,
    latencies_ns: Vec<u64>,
    total_s: f64,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.total_s
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies_ns.clone();
        v.sort_unstable();
        v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    }
    fn print(&self) {
        println!(
            "  {:<34} {:>9.0} bookings/s   p50 {:>6.1} µs   p99 {:>6.1} µs",
            self.name,
            self.per_sec(),
            self.pct(0.50),
            self.pct(0.99)
        );
    }
}

/// Bookings `0..n` split over `clients` threads; latency per booking, throughput over the wall time.
fn concurrently(
    n: usize,
    clients: usize,
    per_client: impl Fn(usize) -> Box<dyn FnMut(usize) + Send> + Sync,
) -> (Vec<u64>, f64) {
    let all = Instant::now();
    let latencies = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let mut book_one = per_client(c);
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(n / clients + 1);
                    for i in (c..n).step_by(clients) {
                        let t = Instant::now();
                        book_one(i);
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("joins")).collect::<Vec<_>>()
    });
    (latencies, all.elapsed().as_secs_f64())
}

fn run_callbook(path: &Path, run: &str, n: usize, clients: usize, sync: Synchronous) -> Run {
    // CALLBOOK_BENCH_CHECKPOINT=inline|background: compare against the default's choice.
    let checkpoint = match std::env::var("CALLBOOK_BENCH_CHECKPOINT").as_deref() {
        Ok("inline") => Checkpoint::Inline,
        Ok("background") => Checkpoint::Background,
        _ => Checkpoint::Auto,
    };
    let store = SqliteStore::open_with(path, SqliteOptions { synchronous: sync, checkpoint, ..Default::default() })
        .expect("opens");
    // The starts reach into 2031: past the default 365-day horizon.
    let book = Callbook::new(Arc::new(store)).with_config(Config { horizon_days: 3650, ..Config::default() });
    let run = run.to_string();
    let (latencies_ns, total_s) = concurrently(n, clients, |_| {
        let (book, run) = (book.clone(), run.clone());
        Box::new(move |i| {
            let request = BookingRequest {
                retell_call_id: call_id(&run, i),
                customer_name: "Bench Caller".into(),
                service_id: Some(1),
                start: Some(format_utc(&start_of(i))),
                ..Default::default()
            };
            book.book(&request).expect("books");
        })
    });
    Run { name: "callbook book()".into(), total_s, latencies_ns }
}

/// The same statements callbook runs for these bookings, by hand: one
/// connection per client, one transaction per booking.
fn run_raw(path: &Path, run: &str, n: usize, clients: usize, sync: Synchronous) -> Run {
    let sync = if sync == Synchronous::Full { "FULL" } else { "NORMAL" };
    let run = run.to_string();
    let (latencies_ns, total_s) = concurrently(n, clients, |_| {
        let mut conn = Connection::open(path).expect("opens");
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;"
        ))
        .expect("pragmas");
        let run = run.clone();
        Box::new(move |i| raw_booking(&mut conn, &run, i))
    });
    Run { name: "raw rusqlite, same SQL".into(), total_s, latencies_ns }
}

fn raw_booking(conn: &mut Connection, run: &str, i: usize) {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("begins");
    let now = Utc::now();
    let now_s = callbook_db_time(now);
    let (call_db_id, company, branch, from): (i64, i64, i64, Option<String>) = tx
        .prepare_cached("SELECT id, retell_call_id, company_id, branch_id, from_number, to_number, direction FROM calls WHERE retell_call_id = ?1")
        .expect("prepares")
        .query_row([call_id(run, i)], |r| Ok((r.get(0)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .expect("call");
    let _: String = tx
        .prepare_cached("SELECT id, company_id, name, timezone, country, phone_number FROM branches WHERE id = ?1")
        .expect("prepares")
        .query_row([branch], |r| r.get(3))
        .expect("branch");
    let duration: i64 = tx
        .prepare_cached(
            "SELECT id, company_id, name, calcom_event_type_id, duration_minutes, capacity FROM services WHERE id = ?1",
        )
        .expect("prepares")
        .query_row([1], |r| r.get(4))
        .expect("service");
    let starts = start_of(i);
    let key = idempotency_key(CompanyId(company), CallDbId(call_db_id), ServiceId(1), starts);
    let existing: Option<i64> = tx
        .prepare_cached("SELECT id, customer_id FROM appointments WHERE company_id = ?1 AND idempotency_key = ?2")
        .expect("prepares")
        .query_row(params![company, key], |r| r.get(0))
        .optional()
        .expect("key");
    assert!(existing.is_none());
    let phone = match from.as_deref() {
        Some("anonymous") | None => placeholder_phone("Bench Caller", CallDbId(call_db_id), now.timestamp()),
        Some(p) => p.to_string(),
    };
    let anonymous = phone.starts_with("anonymous_");
    let found: Option<i64> = if anonymous {
        None
    } else {
        tx.prepare_cached("SELECT id, company_id, name, email, phone, source, anonymity_reason, created_at, updated_at FROM customers WHERE company_id = ?1 AND phone = ?2 ORDER BY id LIMIT 1")
            .expect("prepares")
            .query_row(params![company, phone], |r| r.get(0))
            .optional()
            .expect("customer")
    };
    let customer = match found {
        Some(id) => id,
        None => {
            tx.prepare_cached("INSERT INTO customers (company_id, name, email, phone, source, anonymity_reason, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)")
                .expect("prepares")
                .execute(params![company, "Bench Caller", None::<String>, phone, if anonymous { "retell_webhook_anonymous" } else { "retell_webhook" }, anonymous.then_some("withheld_word"), now_s])
                .expect("inserts");
            tx.last_insert_rowid()
        }
    };
    let metadata =
        serde_json::json!({"customer_name": "Bench Caller", "customer_email": null, "customer_phone": phone})
            .to_string();
    // The latency callbook keeps with every booking, measured the same way.
    let latency = (Utc::now() - now).num_microseconds();
    tx.prepare_cached("INSERT INTO appointments (customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at, status, calcom_sync_status, sync_origin, metadata, sync_attempt_count, requires_manual_review, manual_review_flagged_at, review_reason, idempotency_key, booking_latency_us, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'confirmed', 'pending', 'retell', ?8, 0, 0, NULL, NULL, ?9, ?11, ?10, ?10)")
        .expect("prepares")
        .execute(params![customer, company, branch, 1, call_db_id, callbook_db_time(starts), callbook_db_time(starts + Duration::minutes(duration)), metadata, key, now_s, latency])
        .expect("inserts");
    let appointment = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt, max_attempts, run_at, lease_token, created_at, updated_at) VALUES (?1, ?2, 'calcom.create', 'available', 0, 4, ?3, 0, ?3, ?3)")
        .expect("prepares")
        .execute(params![appointment, company, now_s])
        .expect("inserts");
    tx.commit().expect("commits");
}

fn scenario(dir: &Path, label: &str, rows: usize, n: usize) -> (Run, Run) {
    println!(
        "\n{label}: {n} bookings each (half anonymous, half from 1,000 regulars), {rows} appointments stored before"
    );
    let seeded: PathBuf = dir.join(format!("seed-{rows}.db"));
    prepare(&seeded, rows, n);
    let copy = |name: &str| {
        let p = dir.join(name);
        std::fs::copy(&seeded, &p).expect("copies");
        p
    };
    let raw_db = copy(&format!("raw-{rows}.db"));
    let cb_db = copy(&format!("cb-{rows}.db"));
    // Warm both (page cache, statement caches), then measure.
    let warm = (n / 10).max(100);
    run_raw(&raw_db, "warm_raw", warm, 1, Synchronous::Normal);
    run_callbook(&cb_db, "warm_callbook", warm, 1, Synchronous::Normal);
    let raw = run_raw(&raw_db, "raw", n, 1, Synchronous::Normal);
    let cb = run_callbook(&cb_db, "callbook", n, 1, Synchronous::Normal);
    raw.print();
    cb.print();
    println!(
        "  ratio callbook/raw: throughput {:.2}, p50 {:.2}x, p99 {:.2}x",
        cb.per_sec() / raw.per_sec(),
        cb.pct(0.5) / raw.pct(0.5),
        cb.pct(0.99) / raw.pct(0.99)
    );
    (raw, cb)
}

/// Group commit: 1, 2, 8 and 32 concurrent clients, durable (FULL) and NORMAL.
fn concurrency(dir: &Path, quick: bool) {
    println!("\nconcurrent clients (empty database; raw: one connection per client, one transaction per booking)");
    for (sync, label, n) in [
        (Synchronous::Full, "FULL", if quick { 400 } else { 4000 }),
        (Synchronous::Normal, "NORMAL", if quick { 1000 } else { 16000 }),
    ] {
        let seeded = dir.join(format!("conc-{label}.db"));
        prepare(&seeded, 0, n);
        for clients in [1, 2, 8, 32] {
            let copy = |name: &str| {
                let p = dir.join(format!("{name}-{label}-{clients}.db"));
                std::fs::copy(&seeded, &p).expect("copies");
                p
            };
            let raw = run_raw(&copy("raw"), "raw", n, clients, sync);
            let cb = run_callbook(&copy("cb"), "callbook", n, clients, sync);
            println!(
                "  {label:<6} {clients:>2} clients: raw {:>7.0}/s p50 {:>7.1} p99 {:>8.1} µs | callbook {:>7.0}/s p50 {:>7.1} p99 {:>8.1} µs | throughput {:.2}x, p50 {:.2}x",
                raw.per_sec(), raw.pct(0.5), raw.pct(0.99), cb.per_sec(), cb.pct(0.5), cb.pct(0.99),
                cb.per_sec() / raw.per_sec(), cb.pct(0.5) / raw.pct(0.5)
            );
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = env_usize("CALLBOOK_BENCH_N", if quick { 500 } else { 20_000 });
    let rows = env_usize("CALLBOOK_BENCH_ROWS", if quick { 20_000 } else { 1_000_000 });
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "callbook booking benchmark (SQLite file, WAL, synchronous=NORMAL){}",
        if quick { " [quick]" } else { "" }
    );
    // `--profile N [--raw]`: N bookings and nothing else, for a profiler
    // (README: the booking profile under callgrind).
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--profile").and_then(|i| args.get(i + 1)?.parse().ok()) {
        let db = dir.path().join("profile.db");
        prepare(&db, 0, n);
        let run = match args.iter().any(|a| a == "--raw") {
            true => run_raw(&db, "raw", n, 1, Synchronous::Normal),
            false => run_callbook(&db, "callbook", n, 1, Synchronous::Normal),
        };
        run.print();
        return;
    }
    if std::env::args().any(|a| a == "--concurrency") {
        concurrency(dir.path(), quick);
        return;
    }
    let (_, empty) = scenario(dir.path(), "empty database", 0, n);
    let (_, full) = scenario(dir.path(), "large database", rows, n);
    println!(
        "\ngrowth with {rows} stored appointments: p50 {:.2}x, p99 {:.2}x, throughput {:.2}x",
        full.pct(0.5) / empty.pct(0.5),
        full.pct(0.99) / empty.pct(0.99),
        full.per_sec() / empty.per_sec()
    );
    concurrency(dir.path(), quick);
}
