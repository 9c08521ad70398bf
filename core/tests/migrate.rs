//! `callbook::migrate`: a SQLite database with everything a shop's
//! database holds (the directory, known and anonymous callers, synced,
//! retried and flagged jobs, a breaker, remembered slots, a cancel, a move,
//! a callback, a Cal.com pull place and drift report) goes round
//! SQLite → PostgreSQL → MariaDB → SQLite and comes back the same: the same
//! checksums on every backend, the same answers through the public API.
//! A non-empty target is refused, `append` keeps the target's rows, the
//! sequences are moved past the copied ids, a write during the copy stays
//! out of it (one snapshot), and a target that reads back differently is
//! `migrate_mismatch` with nothing committed.

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::store::*;
use callbook::*;
use chrono::Duration;
use conformance::server::{create, drop_database, fresh_name};
use conformance::{fixture_event_types, request, t0, FIXTURE};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A database of its own on a server, dropped with the value.
struct TempDb {
    kind: &'static str,
    name: String,
    url: String,
}

impl TempDb {
    fn new(kind: &'static str) -> Self {
        let name = fresh_name(&format!("mig_{kind}"));
        let url = create(kind, &name);
        TempDb { kind, name, url }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        drop_database(self.kind, &self.name);
    }
}

struct Source {
    path: PathBuf,
    clock: Arc<ManualClock>,
    _fake: FakeCalcom,
}

fn open(target: impl AsRef<Path>, clock: &Arc<ManualClock>) -> Callbook {
    Callbook::open(target).expect("opens").with_clock(clock.clone())
}

/// Runs the worker, moving the clock a second at a time, until no job is due.
fn drain(book: &Callbook, clock: &ManualClock, worker: &Worker) {
    for _ in 0..600 {
        worker.run_once().expect("runs");
        let s = book.stats().expect("stats");
        if ["available", "retryable", "running"].iter().map(|k| s.jobs.get(*k).copied().unwrap_or(0)).sum::<u64>() == 0
        {
            return;
        }
        clock.advance(Duration::seconds(1));
    }
    panic!("the worker did not drain");
}

/// A SQLite database holding a row in every table, with the awkward values
/// too: tabs, newlines, backslashes and quotes in names, a true boolean.
fn filled(dir: &Path, appointments: usize) -> Source {
    let path = dir.join("source.db");
    let store = SqliteStore::open_with(&path, SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() })
        .expect("opens");
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(Arc::new(store)).with_clock(clock.clone());
    book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
    let fake = FakeCalcom::with_event_types(clock.clone(), &fixture_event_types()).expect("fake starts");
    let api = Arc::new(HttpCalcom::new(std::time::Duration::from_secs(5)));

    // A remembered answer (call_availability), then a known caller booking one of its starts.
    let availability = Availability::new(
        book.clone(),
        api.clone(),
        AvailabilityConfig { calcom_url: fake.url().into(), ..Default::default() },
    );
    let slots = availability
        .check(&AvailabilityRequest {
            retell_call_id: Some("call_known_a".into()),
            service_id: Some(1),
            date: "2030-01-08".into(),
            ..Default::default()
        })
        .expect("slots");
    assert!(slots.remembered && !slots.slots.is_empty());
    let mut known = request("call_known_a", "Max Müller", &format_utc(&slots.slots[0]));
    known.customer_email = Some("max@example.com".into());
    let known = book.book(&known).expect("books the known caller");
    assert!(!known.anonymous);
    book.book(&request("call_anon", "Anna \"Tab\"\tBack\\slash\nNew line", "2030-01-02T10:00:00Z"))
        .expect("books an anonymous caller");
    book.book(&request("call_anon_2", "Zoë", "2030-01-02T11:00:00Z")).expect("books a second anonymous caller");
    let mut other = request("call_c2", "Ole", "2030-01-03T09:00:00Z");
    other.service_id = Some(2);
    book.book(&other).expect("books in company 2");
    for i in 0..appointments.saturating_sub(4) {
        let start = t0() + Duration::days(20) + Duration::hours(i as i64);
        book.book(&request("call_anon", &format!("Caller {i}"), &format_utc(&start))).expect("books");
    }

    // The worker: one outage answer (a breaker, a retried job), one refused create (a manual review).
    fake.inject([Fault::Status(503, "down for a moment".into())]);
    fake.inject([Fault::CreateStatus(400, "invalid attendee".into())]);
    let config = WorkerConfig { id: "w1".into(), calcom_url: fake.url().into(), ..WorkerConfig::default() };
    let worker = Worker::new(book.clone(), api, config);
    drain(&book, &clock, &worker);
    assert!(!book.review_list().expect("reviews").is_empty(), "one appointment flagged");
    assert!(!book.stats().expect("stats").breakers.is_empty(), "a breaker is stored");

    // A cancel, a move (their changes and jobs), a callback.
    let operator = |id: AppointmentId| ChangeRequest {
        operator: Some("ops".into()),
        force: true,
        appointment_id: Some(id.0),
        reason: Some("asked to".into()),
        confirmed: true,
        ..Default::default()
    };
    book.cancel_appointment(&operator(known.appointment_id)).expect("cancels");
    let moved = book.appointment(AppointmentId(2)).expect("exists");
    book.reschedule_appointment(&ChangeRequest {
        new_start: Some(format_utc(&(moved.starts_at + Duration::days(1)))),
        ..operator(moved.id)
    })
    .expect("moves");
    book.request_callback(&CallbackRequest {
        retell_call_id: "call_known_a".into(),
        customer_name: "Max Müller".into(),
        reason: Some("wants a colour too".into()),
        phone: None,
        call: None,
    })
    .expect("callback");
    // What a Cal.com backfill and drift report leave.
    let now = clock.now();
    write(&**book.store(), move |tx| {
        tx.put_pull_place(CompanyId(1), 1001, Some(PullPlace { after_start: now, skip: 3 }), now)?;
        tx.put_drift(&DriftCounts {
            company_id: CompanyId(1),
            checked_at: now,
            missing_locally: 1,
            missing_in_calcom: 0,
            different_start: 2,
            cancelled_one_side: 0,
        })
    })
    .expect("writes");
    Source { path, clock, _fake: fake }
}

fn without_next_id(tables: &[TableChecksum]) -> Vec<TableChecksum> {
    tables.iter().map(|t| TableChecksum { next_id: None, ..t.clone() }).collect()
}

/// Everything the public API reads back: the same on two databases.
fn reads(book: &Callbook) -> serde_json::Value {
    let mut appointments = Vec::new();
    let mut customers = Vec::new();
    for id in 1.. {
        let Ok(a) = book.appointment(AppointmentId(id)) else { break };
        let customer = book.customer(a.company_id, a.customer_id).expect("reads");
        customers.push(serde_json::to_value(customer).expect("json"));
        let jobs = book.jobs_of(a.id).expect("jobs");
        let changes = book.appointment_changes(a.id).expect("changes");
        appointments.push(serde_json::json!({"appointment": a, "jobs": jobs, "changes": changes}));
    }
    serde_json::json!({
        "stats": book.stats().expect("stats"),
        "companies": book.companies().expect("companies"),
        "appointments": appointments,
        "customers": customers,
        "callbacks": book.callbacks(None).expect("callbacks"),
        "reviews": book.review_list().expect("reviews"),
        "by_phone": book.appointments_by_phone(CompanyId(1), "+491512345678").expect("by phone"),
    })
}

fn code<T: std::fmt::Debug>(result: Result<T>) -> String {
    result.expect_err("refused").code().to_string()
}

#[test]
fn a_round_trip_through_every_backend_keeps_every_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = filled(dir.path(), 12);
    let sums = checksums(&source.path).expect("checksums");
    let names: Vec<&str> = sums.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, migrated_tables());
    for table in &sums {
        assert!(table.rows > 0, "the source has a row in {}: the round trip covers every table", table.name);
    }
    let before = reads(&open(&source.path, &source.clock));
    assert_eq!(before["appointments"].as_array().map(Vec::len), Some(12));

    let pg = TempDb::new("postgres");
    let my = TempDb::new("mysql");
    let back = dir.path().join("back.db");
    let mut seen = Vec::new();
    for (from, to) in [
        (source.path.to_string_lossy().into_owned(), pg.url.clone()),
        (pg.url.clone(), my.url.clone()),
        (my.url.clone(), back.to_string_lossy().into_owned()),
    ] {
        let progress = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = progress.clone();
        let options = MigrateOptions {
            batch: 4, // several batches per table
            progress: Some(Box::new(move |p: &MigrateProgress| log.lock().expect("log").push(*p))),
            ..Default::default()
        };
        let report = migrate(&from, &to, options).unwrap_or_else(|e| panic!("{from} → {to}: {e}"));
        assert_eq!(without_next_id(&report.tables), sums, "{from} → {to}: what was copied and verified");
        assert_eq!(checksums(&to).expect("checksums"), sums, "{to} holds the same rows");
        assert_eq!(report.rows, sums.iter().map(|t| t.rows).sum::<u64>());
        assert!(!report.to.contains('@') && !report.append);
        let progress = progress.lock().expect("log");
        let last_copy = progress.iter().rfind(|p| p.phase == MigratePhase::Copy).expect("copy progress");
        assert_eq!((last_copy.done, last_copy.total), (report.rows, report.rows));
        assert!(progress.iter().any(|p| p.phase == MigratePhase::Verify));
        assert!(progress.len() > TABLES_AT_LEAST, "batches of 4 rows: {} progress calls", progress.len());
        seen.push(report);
    }

    // The last SQLite answers every read as the first did.
    assert_eq!(reads(&open(&back, &source.clock)), before);
    assert_eq!(reads(&open(&pg.url, &source.clock)), before, "PostgreSQL answers the same");
    assert_eq!(reads(&open(&my.url, &source.clock)), before, "MariaDB answers the same");

    // A non-empty target is refused, and stays as it was.
    for target in [back.to_string_lossy().into_owned(), pg.url.clone(), my.url.clone()] {
        let refused = migrate(&source.path, &target, MigrateOptions::default());
        assert!(matches!(&refused, Err(Error::TargetNotEmpty { table }) if table == "companies"), "{refused:?}");
        assert_eq!(code(refused), "target_not_empty");
        // With --append the same ids are taken: a conflict (the driver's unique violation, typed), nothing kept.
        let again = migrate(&source.path, &target, MigrateOptions { append: true, ..Default::default() });
        assert!(matches!(&again, Err(Error::MigrateConflict { table }) if table == "companies"), "{again:?}");
        assert_eq!(checksums(&target).expect("checksums"), sums);
    }

    // Sequences: the next booking on each target gets the id after the copied ones.
    let highest = |name: &str| sums.iter().find(|t| t.name == name).map(|t| t.rows as i64).unwrap_or_default();
    for (report, target) in seen.iter().zip([pg.url.clone(), my.url.clone(), back.to_string_lossy().into_owned()]) {
        let next = |name: &str| report.tables.iter().find(|t| t.name == name).and_then(|t| t.next_id);
        assert_eq!(next("appointments"), Some(highest("appointments") + 1), "{target}");
        assert_eq!(next("customers"), Some(highest("customers") + 1), "{target}");
        let book = open(&target, &source.clock);
        let b = book.book(&request("call_anon_2", "After", "2030-03-01T09:00:00Z")).expect("books on the target");
        assert_eq!(b.appointment_id.0, highest("appointments") + 1, "{target}: a fresh appointment id");
        assert_eq!(b.customer_id.0, highest("customers") + 1, "{target}: a fresh customer id");
        let call = book
            .register_call(&NewCall {
                retell_call_id: "call_after".into(),
                company_id: Some(CompanyId(1)),
                branch_id: Some(BranchId(1)),
                from_number: Some("anonymous".into()),
                ..Default::default()
            })
            .expect("registers");
        assert!(call.id.0 > 19, "{target}: a fresh call id, {:?}", call.id);
    }
}

/// More than the number of tables: some table took several batches.
const TABLES_AT_LEAST: usize = 13;

#[test]
fn append_keeps_the_targets_rows_and_refuses_a_taken_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = filled(dir.path(), 6);
    let sums = checksums(&source.path).expect("checksums");
    let target = dir.path().join("target.db");
    let other = open(&target, &source.clock);
    other
        .import(
            &ImportData::from_json(
                r#"{"companies": [{"id": 9, "name": "Elsewhere"}],
                    "branches": [{"id": 90, "company_id": 9, "name": "Hafen", "phone_number": "+49 40 9999999"}],
                    "services": [{"id": 90, "company_id": 9, "name": "Massage", "duration_minutes": 50}],
                    "calls": [{"id": 900, "retell_call_id": "call_elsewhere", "company_id": 9, "branch_id": 90,
                               "from_number": "anonymous"}]}"#,
            )
            .expect("parses"),
        )
        .expect("imports");
    let own = checksums(&target).expect("checksums");

    assert_eq!(code(migrate(&source.path, &target, MigrateOptions::default())), "target_not_empty");
    assert_eq!(checksums(&target).expect("checksums"), own, "refused: nothing written");

    let report =
        migrate(&source.path, &target, MigrateOptions { append: true, ..Default::default() }).expect("appends");
    assert!(report.append);
    assert_eq!(without_next_id(&report.tables), sums, "the copied rows verified against the source");
    let after = checksums(&target).expect("checksums");
    let rows = |t: &[TableChecksum], name: &str| t.iter().find(|x| x.name == name).map(|x| x.rows).unwrap_or_default();
    for table in &sums {
        assert_eq!(rows(&after, &table.name), table.rows + rows(&own, &table.name), "{}", table.name);
    }
    let book = open(&target, &source.clock);
    let names: Vec<String> = book.companies().expect("companies").into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["Salon Berlin", "Praxis Hamburg", "Elsewhere"]);
    let mut elsewhere = request("call_elsewhere", "Nils", "2030-01-05T09:00:00Z");
    elsewhere.service_id = Some(90);
    let b = book.book(&elsewhere).expect("books in the target's own company");
    assert_eq!(b.appointment_id.0, rows(&sums, "appointments") as i64 + 1);

    // Again: every key is taken now; nothing of the second copy is kept.
    let before = checksums(&target).expect("checksums");
    let again = migrate(&source.path, &target, MigrateOptions { append: true, ..Default::default() });
    assert!(matches!(&again, Err(Error::MigrateConflict { table }) if table == "companies"), "{again:?}");
    assert_eq!(checksums(&target).expect("checksums"), before);
}

#[test]
fn a_write_during_the_copy_is_not_in_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = filled(dir.path(), 6);
    let sums = checksums(&source.path).expect("checksums");
    let pg = TempDb::new("postgres");
    let my = TempDb::new("mysql");
    let copy = dir.path().join("copy.db");
    // Each backend as the source: a booking lands in it while its first batch is copied.
    for (from, to, start) in [
        (source.path.to_string_lossy().into_owned(), pg.url.clone(), "2030-03-02T09:00:00Z"),
        (pg.url.clone(), my.url.clone(), "2030-03-02T10:00:00Z"),
        (my.url.clone(), copy.to_string_lossy().into_owned(), "2030-03-02T11:00:00Z"),
    ] {
        let writer = open(&from, &source.clock);
        let (tx, rx) = std::sync::mpsc::channel();
        let progress = move |p: &MigrateProgress| {
            // After the first batch of the first table (the two companies).
            if p.phase == MigratePhase::Copy && p.done == 2 {
                let _ = tx.send(writer.book(&request("call_anon_2", "During", start)).map(|b| b.appointment_id));
            }
        };
        let options = MigrateOptions { batch: 2, progress: Some(Box::new(progress)), ..Default::default() };
        let report = migrate(&from, &to, options).expect("migrates");
        rx.recv().expect("booked during the copy").expect("the booking went through");
        assert_eq!(without_next_id(&report.tables), sums, "{from} → {to}: the snapshot before the booking");
        assert_eq!(checksums(&to).expect("checksums"), sums);
        let source_now = checksums(&from).expect("checksums");
        let rows =
            |t: &[TableChecksum], name: &str| t.iter().find(|x| x.name == name).map(|x| x.rows).unwrap_or_default();
        assert_eq!(rows(&source_now, "appointments"), rows(&sums, "appointments") + 1, "the source has the booking");
    }
}

#[test]
fn a_target_that_reads_back_differently_is_a_mismatch_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = filled(dir.path(), 5);
    let target = dir.path().join("bent.db");
    drop(open(&target, &source.clock));
    // A trigger bends every customer's name on the way in.
    let conn = rusqlite::Connection::open(&target).expect("opens");
    conn.execute_batch(
        "CREATE TRIGGER bend AFTER INSERT ON customers BEGIN UPDATE customers SET name = upper(name) WHERE id = NEW.id; END",
    )
    .expect("trigger");
    drop(conn);
    let result = migrate(&source.path, &target, MigrateOptions::default());
    assert!(matches!(&result, Err(Error::MigrateMismatch { table, .. }) if table == "customers"), "{result:?}");
    assert_eq!(code(result), "migrate_mismatch");
    let left = checksums(&target).expect("checksums");
    assert!(left.iter().all(|t| t.rows == 0), "nothing committed: {left:?}");
}

#[test]
fn bad_arguments_are_refused_before_anything_is_opened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.db");
    let to = dir.path().join("to.db");
    assert_eq!(code(migrate(&missing, &to, MigrateOptions::default())), "source_not_found");
    assert!(!missing.exists(), "a missing source is not created");
    assert_eq!(code(migrate(&to, &to, MigrateOptions::default())), "same_database");
    let zero = MigrateOptions { batch: 0, ..Default::default() };
    assert_eq!(code(migrate(&missing, &to, zero)), "invalid_argument");
}
