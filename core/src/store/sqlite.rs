//! The embedded SQLite store: WAL, a busy timeout, cached prepared
//! statements, migrations by `PRAGMA user_version`. One write connection;
//! reads use their own connections so they never wait for the writer.

use super::time::{from_db, slots_from_db, slots_to_db, to_db};
use super::{CalcomChange, Counts, NewAppointment, Offered, Store, SyncFailure, Tx, WriteFn};
use crate::appointment::{Appointment, AppointmentStatus, SyncOrigin, SyncStatus};
use crate::breaker::{Breaker, BreakerState};
use crate::call::{Call, NewCall};
use crate::caller::AnonymityReason;
use crate::company::{Branch, Company, Secret, Service};
use crate::customer::{Customer, CustomerSource, NewCustomer};
use crate::ids::{AppointmentId, BranchId, CallDbId, CallId, CompanyId, CustomerId, JobId, ServiceId};
use crate::queue::{Job, JobKind, JobSnapshot, JobState, NewJob};
use crate::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::Duration;

const SCHEMA_V1: &str = include_str!("schema_sqlite.sql");
const SCHEMA_V2: &str = include_str!("schema_sqlite_v2.sql");
const SCHEMA_V3: &str = include_str!("schema_sqlite_v3.sql");
const SCHEMA_V4: &str = include_str!("schema_sqlite_v4.sql");
const SCHEMA_V5: &str = include_str!("schema_sqlite_v5.sql");
const SCHEMA_VERSION: i64 = 5;

/// SQLite's `synchronous` setting for the write connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit reaches the disk before the caller is answered (default).
    Full,
    /// Faster; may lose the last commits on power loss (never corrupts).
    Normal,
}

/// Who copies the WAL back into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// `Inline` with `Full`, `Background` with `Normal` (what measured best).
    Auto,
    /// SQLite's own: inside whichever commit crosses ~1000 pages. With
    /// `Full`, a background checkpoint's syncs compete with every commit's
    /// and halved single-client throughput; inline, group commit amortises it.
    Inline,
    /// A thread of its own: no commit pays for the copy (p99 ~10x lower
    /// than inline with `Normal`), at ~20–30 µs more p50.
    Background,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    pub checkpoint: Checkpoint,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            checkpoint: Checkpoint::Auto,
        }
    }
}

impl SqliteOptions {
    fn background_checkpoint(&self) -> bool {
        match self.checkpoint {
            Checkpoint::Auto => self.synchronous == Synchronous::Normal,
            Checkpoint::Inline => false,
            Checkpoint::Background => true,
        }
    }
}

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writer: Arc<Mutex<Writer>>,
    /// Writes waiting for the writer: whoever holds it commits them together.
    group: Arc<Group>,
    readers: Mutex<Vec<Connection>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

/// The queue of waiting writes and the signal that a group was committed
/// (or the writer let go), so a waiting write learns its result without
/// taking the writer itself.
#[derive(Debug, Default)]
struct Group {
    queue: Mutex<VecDeque<Queued>>,
    released: Condvar,
}

impl Group {
    /// Wakes every waiting write; taking the queue lock first means none is
    /// between its check of the writer and its wait.
    fn notify(&self) {
        let _queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        self.released.notify_all();
    }
}

/// Most writes one group commit takes.
const MAX_BATCH: usize = 64;

/// A write waiting in the queue, and where its result goes.
struct Queued {
    work: WriteFn,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queued")
    }
}

#[derive(Debug, Default)]
struct Slot(Mutex<Option<Result<()>>>);

impl Slot {
    fn take(&self) -> Option<Result<()>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
    fn fill(&self, result: Result<()>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
    }
}

/// How the writer has been used (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (or rolled back).
    pub transactions: u64,
    /// Writes done in them; more writes than transactions means group commit happened.
    pub writes: u64,
}

/// Commits between two WAL checkpoints (SQLite's own default is ~1000 pages).
const CHECKPOINT_EVERY: u32 = 256;

#[derive(Debug)]
struct Writer {
    conn: Connection,
    commits: u32,
    stats: WriterStats,
    /// Wakes the checkpointer; dropped with the store, which ends it.
    wake: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).wake = None;
        if let Some(handle) = self.checkpointer.take() {
            let _ = handle.join();
        }
    }
}

/// Checkpoints the WAL on its own connection and thread, so no booking
/// pays for copying pages back into the database file (SQLite's automatic
/// checkpoint runs inside whichever commit crosses the threshold).
///
/// Two passes: the first copies the bulk while bookings go on; the second,
/// holding the writer for the few frames appended meanwhile, completes the
/// checkpoint so the next commit starts the WAL from the beginning. Without
/// it a steady stream of bookings never lets the WAL reset, and it grows.
fn spawn_checkpointer(
    path: &Path,
    options: &SqliteOptions,
    writer: Arc<Mutex<Writer>>,
    group: Arc<Group>,
) -> Result<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)> {
    let conn = connect(path, options)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new()
        .name("callbook-checkpoint".into())
        .spawn(move || {
            let checkpoint = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).ok();
            while rx.recv().is_ok() {
                checkpoint();
                let held = writer.lock().unwrap_or_else(|p| p.into_inner());
                checkpoint();
                drop(held);
                group.notify();
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the checkpoint thread: {e}")))?;
    Ok((tx, handle))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database file, durable by default.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = connect(&path, &options)?;
        migrate(&mut conn)?;
        let background = options.background_checkpoint();
        if background {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0")?;
        }
        let writer = Arc::new(Mutex::new(Writer { conn, commits: 0, stats: WriterStats::default(), wake: None }));
        let group = Arc::new(Group::default());
        let checkpointer = if background {
            let (wake, handle) = spawn_checkpointer(&path, &options, Arc::clone(&writer), Arc::clone(&group))?;
            writer.lock().unwrap_or_else(|p| p.into_inner()).wake = Some(wake);
            Some(handle)
        } else {
            None
        };
        Ok(SqliteStore { path, options, writer, group, readers: Mutex::new(Vec::new()), checkpointer })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer_stats(&self) -> WriterStats {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).stats
    }

    /// The schema version of the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        Ok(writer.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(options.busy_timeout)?;
    let sync = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // Switching to WAL needs a lock; a file already in WAL (the usual case,
    // and what other processes hold open) needs no switch.
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.execute_batch("PRAGMA journal_mode=WAL")?;
    }
    conn.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // Up to date (every open but the first): no write lock, so processes
    // opening while others book do not queue behind them.
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Storage(format!(
            "database schema {version} is newer than this callbook ({SCHEMA_VERSION})"
        )));
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4)?;
    }
    if version < 5 {
        tx.execute_batch(SCHEMA_V5)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    /// Group commit: the write joins a queue; whoever holds the writer takes
    /// every queued write (up to `MAX_BATCH`), runs each in its own
    /// SAVEPOINT, commits once (one sync), and answers them all. A lone
    /// write is committed at once: nothing waits for company.
    fn write(&self, work: WriteFn) -> Result<()> {
        let slot = Arc::new(Slot::default());
        let mut queue = self.group.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back(Queued { work, slot: Arc::clone(&slot) });
        loop {
            // A group committed while this write waited may have included it.
            if let Some(result) = slot.take() {
                return result;
            }
            let writer = match self.writer.try_lock() {
                Ok(writer) => writer,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // Someone is committing (or checkpointing): wait for the signal. The
                    // timeout only guards against a holder that never signals.
                    queue = self
                        .group
                        .released
                        .wait_timeout(queue, Duration::from_millis(50))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
            };
            let n = queue.len().min(MAX_BATCH);
            let batch: Vec<Queued> = queue.drain(..n).collect();
            drop(queue);
            let mut writer = writer;
            commit_group(&mut writer, batch);
            drop(writer);
            queue = self.group.queue.lock().unwrap_or_else(|p| p.into_inner());
            self.group.released.notify_all();
        }
    }

    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = connect(&self.path, &self.options)?;
                c.execute_batch("PRAGMA query_only=ON")?;
                c
            }
        };
        let result = {
            let tx = conn.transaction()?;
            work(&mut SqliteTx { conn: &tx })
        };
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        result
    }
}

/// Runs a batch of writes in one transaction, each in its own savepoint,
/// and fills every write's slot: its own error if it failed (only its
/// savepoint is rolled back), the commit's error if the commit failed.
fn commit_group(writer: &mut Writer, batch: Vec<Queued>) {
    let storage = |e: &Error| Error::Storage(e.to_string());
    let tx = match writer.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = Error::from(e);
            batch.iter().for_each(|q| q.slot.fill(Err(storage(&e))));
            return;
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    if batch.len() == 1 {
        results.extend(batch.into_iter().map(|q| ((q.work)(&mut SqliteTx { conn: &tx }), q.slot)));
    } else {
        for q in batch {
            let result = in_savepoint(&tx, q.work);
            results.push((result, q.slot));
        }
    }
    let lone_failed = results.len() == 1 && results[0].0.is_err();
    let committed = if lone_failed { tx.rollback().map_err(Error::from) } else { tx.commit().map_err(Error::from) };
    writer.stats.transactions += 1;
    writer.stats.writes += results.len() as u64;
    for (result, slot) in results {
        slot.fill(match (&committed, result) {
            (Err(e), Ok(())) => Err(storage(e)),
            (_, result) => result,
        });
    }
    writer.commits = writer.commits.wrapping_add(1);
    if writer.commits % CHECKPOINT_EVERY == 0 {
        if let Some(wake) = &writer.wake {
            // Full channel: a checkpoint is already due, nothing to add.
            let _ = wake.try_send(());
        }
    }
}

fn in_savepoint(conn: &Connection, work: WriteFn) -> Result<()> {
    conn.prepare_cached("SAVEPOINT booking")?.execute([])?;
    let result = work(&mut SqliteTx { conn });
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO booking")?.execute([])?;
    }
    conn.prepare_cached("RELEASE booking")?.execute([])?;
    result
}

struct SqliteTx<'a> {
    conn: &'a Connection,
}

const CUSTOMER_COLS: &str = "id, company_id, name, email, phone, source, anonymity_reason, created_at, updated_at";
const APPOINTMENT_COLS: &str =
    "id, customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at, status, \
    calcom_sync_status, sync_origin, metadata, calcom_v2_booking_id, calcom_v2_booking_uid, sync_error_code, \
    sync_error_message, sync_attempt_count, sync_verified_at, requires_manual_review, manual_review_flagged_at, \
    review_reason, idempotency_key, created_at, updated_at, review_resolved_at, review_resolved_by, review_note, \
    calcom_v2_seat_uid";
const JOB_COLS: &str = "id, appointment_id, company_id, kind, state, attempt, max_attempts, run_at, locked_until, \
    locked_by, lease_token, last_error, created_at, updated_at";

fn bad(what: &str, value: &str) -> Error {
    Error::Storage(format!("unexpected {what} in database: {value:?}"))
}

/// The first row of a query, mapped with callbook's own errors (so a bad enum
/// or timestamp in the database is a `storage` error, not a panic).
fn one<T>(
    st: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    map: impl FnOnce(&Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut rows = st.query(params)?;
    rows.next()?.map(map).transpose()
}

/// Every row of a query, mapped with callbook's own errors.
fn all<T>(
    st: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    mut map: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = st.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

fn time_at(r: &Row<'_>, i: usize) -> Result<DateTime<Utc>> {
    from_db(&r.get::<_, String>(i)?)
}

fn time_opt_at(r: &Row<'_>, i: usize) -> Result<Option<DateTime<Utc>>> {
    r.get::<_, Option<String>>(i)?.as_deref().map(from_db).transpose()
}

fn parsed<T>(r: &Row<'_>, i: usize, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| bad(what, &text))
}

/// Columns in `CUSTOMER_COLS` order.
fn customer_row(r: &Row<'_>) -> Result<Customer> {
    Ok(Customer {
        id: CustomerId(r.get(0)?),
        company_id: CompanyId(r.get(1)?),
        name: r.get(2)?,
        email: r.get(3)?,
        phone: r.get(4)?,
        source: parsed(r, 5, "customer source", CustomerSource::parse)?,
        anonymity_reason: match r.get::<_, Option<String>>(6)? {
            Some(text) => Some(AnonymityReason::parse(&text).ok_or_else(|| bad("anonymity reason", &text))?),
            None => None,
        },
        created_at: time_at(r, 7)?,
        updated_at: time_at(r, 8)?,
    })
}

/// Columns in `APPOINTMENT_COLS` order.
fn appointment_row(r: &Row<'_>) -> Result<Appointment> {
    let metadata: serde_json::Value = serde_json::from_str(&r.get::<_, String>(11)?)?;
    Ok(Appointment {
        id: AppointmentId(r.get(0)?),
        customer_id: CustomerId(r.get(1)?),
        company_id: CompanyId(r.get(2)?),
        branch_id: BranchId(r.get(3)?),
        service_id: ServiceId(r.get(4)?),
        call_id: r.get::<_, Option<i64>>(5)?.map(CallDbId),
        starts_at: time_at(r, 6)?,
        ends_at: time_at(r, 7)?,
        status: parsed(r, 8, "status", AppointmentStatus::parse)?,
        calcom_sync_status: parsed(r, 9, "sync status", SyncStatus::parse)?,
        sync_origin: parsed(r, 10, "sync origin", SyncOrigin::parse)?,
        metadata: match metadata {
            serde_json::Value::Object(map) => map,
            _ => return Err(bad("metadata", "not an object")),
        },
        calcom_v2_booking_id: r.get(12)?,
        calcom_v2_booking_uid: r.get(13)?,
        sync_error_code: r.get(14)?,
        sync_error_message: r.get(15)?,
        sync_attempt_count: r.get(16)?,
        sync_verified_at: time_opt_at(r, 17)?,
        requires_manual_review: r.get(18)?,
        manual_review_flagged_at: time_opt_at(r, 19)?,
        review_reason: r.get(20)?,
        idempotency_key: r.get(21)?,
        created_at: time_at(r, 22)?,
        updated_at: time_at(r, 23)?,
        review_resolved_at: time_opt_at(r, 24)?,
        review_resolved_by: r.get(25)?,
        review_note: r.get(26)?,
        calcom_v2_seat_uid: r.get(27)?,
    })
}

fn breaker_row(r: &Row<'_>) -> Result<Breaker> {
    Ok(Breaker {
        key: r.get(0)?,
        state: parsed(r, 1, "breaker state", BreakerState::parse)?,
        consecutive_failures: r.get(2)?,
        open_until: time_opt_at(r, 3)?,
        cooldown_secs: r.get(4)?,
        updated_at: time_at(r, 5)?,
    })
}

/// Columns in `JOB_COLS` order.
fn job_row(r: &Row<'_>) -> Result<Job> {
    Ok(Job {
        id: JobId(r.get(0)?),
        appointment_id: AppointmentId(r.get(1)?),
        company_id: CompanyId(r.get(2)?),
        kind: parsed(r, 3, "job kind", JobKind::parse)?,
        state: parsed(r, 4, "job state", JobState::parse)?,
        attempt: r.get(5)?,
        max_attempts: r.get(6)?,
        run_at: time_at(r, 7)?,
        locked_until: time_opt_at(r, 8)?,
        locked_by: r.get(9)?,
        lease_token: r.get(10)?,
        last_error: r.get(11)?,
        created_at: time_at(r, 12)?,
        updated_at: time_at(r, 13)?,
    })
}

fn branch_row(r: &Row<'_>) -> rusqlite::Result<Branch> {
    Ok(Branch {
        id: BranchId(r.get(0)?),
        company_id: CompanyId(r.get(1)?),
        name: r.get(2)?,
        timezone: r.get(3)?,
        country: r.get(4)?,
        phone_number: r.get(5)?,
    })
}

fn service_row(r: &Row<'_>) -> rusqlite::Result<Service> {
    Ok(Service {
        id: ServiceId(r.get(0)?),
        company_id: CompanyId(r.get(1)?),
        name: r.get(2)?,
        calcom_event_type_id: r.get(3)?,
        duration_minutes: r.get(4)?,
        capacity: r.get(5)?,
    })
}

const BRANCH_COLS: &str = "id, company_id, name, timezone, country, phone_number";
const SERVICE_COLS: &str = "id, company_id, name, calcom_event_type_id, duration_minutes, capacity";

impl Tx for SqliteTx<'_> {
    fn company(&mut self, id: CompanyId) -> Result<Option<Company>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, calcom_api_key, calcom_api_base, calcom_email_fallback FROM companies WHERE id = ?1",
        )?;
        Ok(st
            .query_row([id.0], |r| {
                Ok(Company {
                    id: CompanyId(r.get(0)?),
                    name: r.get(1)?,
                    calcom_api_key: r.get::<_, Option<String>>(2)?.map(Secret::new),
                    calcom_api_base: r.get(3)?,
                    calcom_email_fallback: r.get(4)?,
                })
            })
            .optional()?)
    }
    fn branch(&mut self, id: BranchId) -> Result<Option<Branch>> {
        let mut st = self.conn.prepare_cached(&format!("SELECT {BRANCH_COLS} FROM branches WHERE id = ?1"))?;
        Ok(st.query_row([id.0], branch_row).optional()?)
    }
    fn branch_by_phone(&mut self, phone: &str) -> Result<Option<Branch>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {BRANCH_COLS} FROM branches WHERE phone_number = ?1 ORDER BY id LIMIT 1"
        ))?;
        Ok(st.query_row([phone], branch_row).optional()?)
    }
    fn service(&mut self, id: ServiceId) -> Result<Option<Service>> {
        let mut st = self.conn.prepare_cached(&format!("SELECT {SERVICE_COLS} FROM services WHERE id = ?1"))?;
        Ok(st.query_row([id.0], service_row).optional()?)
    }
    fn services_of(&mut self, company: CompanyId) -> Result<Vec<Service>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {SERVICE_COLS} FROM services WHERE company_id = ?1 ORDER BY id"))?;
        let rows = st.query_map([company.0], service_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
    fn branches_of(&mut self, company: CompanyId) -> Result<Vec<Branch>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {BRANCH_COLS} FROM branches WHERE company_id = ?1 ORDER BY id"))?;
        let rows = st.query_map([company.0], branch_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
    fn upsert_company(&mut self, c: &Company, now: DateTime<Utc>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO companies (id, name, calcom_api_key, calcom_api_base, calcom_email_fallback, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?5, ?6, ?4, ?4)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, calcom_api_key = excluded.calcom_api_key,
             calcom_api_base = excluded.calcom_api_base, calcom_email_fallback = excluded.calcom_email_fallback,
             updated_at = excluded.updated_at",
        )?;
        st.execute(params![
            c.id.0,
            c.name,
            c.calcom_api_key.as_ref().map(Secret::expose),
            to_db(now),
            c.calcom_api_base,
            c.calcom_email_fallback
        ])?;
        Ok(())
    }
    fn upsert_branch(&mut self, b: &Branch, now: DateTime<Utc>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO branches (id, company_id, name, timezone, country, phone_number, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT(id) DO UPDATE SET company_id = excluded.company_id, name = excluded.name,
             timezone = excluded.timezone, country = excluded.country, phone_number = excluded.phone_number,
             updated_at = excluded.updated_at",
        )?;
        st.execute(params![b.id.0, b.company_id.0, b.name, b.timezone, b.country, b.phone_number, to_db(now)])?;
        Ok(())
    }
    fn upsert_service(&mut self, s: &Service, now: DateTime<Utc>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO services (id, company_id, name, calcom_event_type_id, duration_minutes, capacity, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT(id) DO UPDATE SET company_id = excluded.company_id, name = excluded.name,
             calcom_event_type_id = excluded.calcom_event_type_id, duration_minutes = excluded.duration_minutes,
             capacity = excluded.capacity, updated_at = excluded.updated_at",
        )?;
        st.execute(params![
            s.id.0,
            s.company_id.0,
            s.name,
            s.calcom_event_type_id,
            s.duration_minutes,
            s.capacity,
            to_db(now)
        ])?;
        Ok(())
    }

    fn call(&mut self, id: &CallId) -> Result<Option<Call>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, retell_call_id, company_id, branch_id, from_number, to_number, direction
             FROM calls WHERE retell_call_id = ?1",
        )?;
        Ok(st
            .query_row([&id.0], |r| {
                Ok(Call {
                    id: CallDbId(r.get(0)?),
                    retell_call_id: CallId(r.get(1)?),
                    company_id: r.get::<_, Option<i64>>(2)?.map(CompanyId),
                    branch_id: r.get::<_, Option<i64>>(3)?.map(BranchId),
                    from_number: r.get(4)?,
                    to_number: r.get(5)?,
                    direction: r.get(6)?,
                })
            })
            .optional()?)
    }
    fn insert_call(&mut self, c: &NewCall, now: DateTime<Utc>) -> Result<CallDbId> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO calls (id, retell_call_id, company_id, branch_id, from_number, to_number, direction, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )?;
        st.execute(params![
            c.id.map(|i| i.0),
            c.retell_call_id.0,
            c.company_id.map(|i| i.0),
            c.branch_id.map(|i| i.0),
            c.from_number,
            c.to_number,
            c.direction,
            to_db(now)
        ])?;
        Ok(CallDbId(self.conn.last_insert_rowid()))
    }

    fn customer(&mut self, company: CompanyId, id: CustomerId) -> Result<Option<Customer>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {CUSTOMER_COLS} FROM customers WHERE company_id = ?1 AND id = ?2"))?;
        one(&mut st, params![company.0, id.0], customer_row)
    }
    fn customer_by_phone(&mut self, company: CompanyId, phone: &str) -> Result<Option<Customer>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {CUSTOMER_COLS} FROM customers WHERE company_id = ?1 AND phone = ?2 ORDER BY id LIMIT 1"
        ))?;
        one(&mut st, params![company.0, phone], customer_row)
    }
    fn customer_id_by_email(&mut self, company: CompanyId, email: &str) -> Result<Option<CustomerId>> {
        let mut st = self.conn.prepare_cached("SELECT id FROM customers WHERE company_id = ?1 AND email = ?2")?;
        Ok(st.query_row(params![company.0, email], |r| r.get(0)).optional()?.map(CustomerId))
    }
    fn insert_customer(&mut self, c: &NewCustomer) -> Result<CustomerId> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO customers (company_id, name, email, phone, source, anonymity_reason, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?;
        st.execute(params![
            c.company_id.0,
            c.name,
            c.email,
            c.phone,
            c.source.as_str(),
            c.anonymity_reason.map(AnonymityReason::as_str),
            to_db(c.now)
        ])?;
        Ok(CustomerId(self.conn.last_insert_rowid()))
    }
    fn set_customer_email(
        &mut self,
        company: CompanyId,
        id: CustomerId,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached("UPDATE customers SET email = ?1, updated_at = ?2 WHERE company_id = ?3 AND id = ?4")?;
        st.execute(params![email, to_db(now), company.0, id.0])?;
        Ok(())
    }

    fn appointment(&mut self, company: CompanyId, id: AppointmentId) -> Result<Option<Appointment>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {APPOINTMENT_COLS} FROM appointments WHERE company_id = ?1 AND id = ?2"
        ))?;
        one(&mut st, params![company.0, id.0], appointment_row)
    }
    fn appointment_by_key(&mut self, company: CompanyId, key: &str) -> Result<Option<Appointment>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {APPOINTMENT_COLS} FROM appointments WHERE company_id = ?1 AND idempotency_key = ?2"
        ))?;
        one(&mut st, params![company.0, key], appointment_row)
    }
    fn insert_appointment(&mut self, a: &NewAppointment) -> Result<AppointmentId> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO appointments (customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at,
             status, calcom_sync_status, sync_origin, metadata, sync_attempt_count, requires_manual_review,
             manual_review_flagged_at, review_reason, idempotency_key, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'confirmed', 'pending', ?8, ?9, 0, ?10, ?11, ?12, ?13, ?14, ?14)",
        )?;
        let now = to_db(a.now);
        st.execute(params![
            a.customer_id.0,
            a.company_id.0,
            a.branch_id.0,
            a.service_id.0,
            a.call_id.map(|c| c.0),
            to_db(a.starts_at),
            to_db(a.ends_at),
            a.sync_origin.as_str(),
            serde_json::to_string(&a.metadata)?,
            a.requires_manual_review,
            a.requires_manual_review.then_some(&now),
            a.review_reason,
            a.idempotency_key,
            now
        ])?;
        Ok(AppointmentId(self.conn.last_insert_rowid()))
    }
    fn synced_future_appointments(
        &mut self,
        company: CompanyId,
        customer: CustomerId,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppointmentId>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id FROM appointments WHERE company_id = ?1 AND customer_id = ?2 AND starts_at > ?3
             AND status = 'confirmed' AND calcom_v2_booking_uid IS NOT NULL ORDER BY id",
        )?;
        let rows = st.query_map(params![company.0, customer.0, to_db(now)], |r| r.get(0))?;
        Ok(rows.map(|r| r.map(AppointmentId)).collect::<rusqlite::Result<_>>()?)
    }
    fn flag_for_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE appointments SET requires_manual_review = 1, manual_review_flagged_at = ?1, review_reason = ?2,
             updated_at = ?1 WHERE company_id = ?3 AND id = ?4",
        )?;
        st.execute(params![to_db(now), reason, company.0, id.0])?;
        Ok(())
    }
    fn appointments_between(
        &mut self,
        company: CompanyId,
        service: ServiceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {APPOINTMENT_COLS} FROM appointments WHERE company_id = ?1 AND service_id = ?2
             AND starts_at >= ?3 AND starts_at < ?4 AND status = 'confirmed' ORDER BY starts_at, id"
        ))?;
        all(&mut st, params![company.0, service.0, to_db(from), to_db(to)], appointment_row)
    }
    fn remember_slots(
        &mut self,
        call: CallDbId,
        service: ServiceId,
        day: NaiveDate,
        offered: &Offered,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO call_availability (call_id, service_id, day, slots, checked_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (call_id, service_id, day) DO UPDATE SET slots = excluded.slots, checked_at = excluded.checked_at",
        )?;
        st.execute(params![call.0, service.0, day.to_string(), slots_to_db(offered)?, to_db(now)])?;
        Ok(())
    }
    fn remembered_slots(&mut self, call: CallDbId, service: ServiceId, day: NaiveDate) -> Result<Option<Offered>> {
        let mut st = self.conn.prepare_cached(
            "SELECT slots FROM call_availability WHERE call_id = ?1 AND service_id = ?2 AND day = ?3",
        )?;
        let Some(text) =
            st.query_row(params![call.0, service.0, day.to_string()], |r| r.get::<_, String>(0)).optional()?
        else {
            return Ok(None);
        };
        slots_from_db(&text).map(Some)
    }
    fn appointment_company(&mut self, id: AppointmentId) -> Result<Option<CompanyId>> {
        let mut st = self.conn.prepare_cached("SELECT company_id FROM appointments WHERE id = ?1")?;
        Ok(st.query_row([id.0], |r| r.get(0)).optional()?.map(CompanyId))
    }

    fn appointment_by_booking_uid(&mut self, uid: &str) -> Result<Option<Appointment>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {APPOINTMENT_COLS} FROM appointments WHERE calcom_v2_booking_uid = ?1"))?;
        one(&mut st, [uid], appointment_row)
    }
    fn apply_calcom_change(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        change: &CalcomChange,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = to_db(now);
        match change {
            CalcomChange::Cancelled => {
                let mut st = self.conn.prepare_cached(
                    "UPDATE appointments SET status = 'cancelled', sync_origin = 'calcom', updated_at = ?1
                     WHERE company_id = ?2 AND id = ?3",
                )?;
                st.execute(params![now, company.0, id.0])?;
                let mut st = self.conn.prepare_cached(
                    "UPDATE sync_jobs SET state = 'cancelled', locked_until = NULL, locked_by = NULL, updated_at = ?1
                     WHERE appointment_id = ?2 AND company_id = ?3 AND state IN ('available', 'running', 'retryable')",
                )?;
                st.execute(params![now, id.0, company.0])?;
            }
            CalcomChange::Rescheduled { booking_id, uid, starts_at, ends_at } => {
                let mut st = self.conn.prepare_cached(
                    "UPDATE appointments SET starts_at = ?1, ends_at = ?2, calcom_v2_booking_uid = ?3,
                     calcom_v2_booking_id = COALESCE(?4, calcom_v2_booking_id), sync_origin = 'calcom', updated_at = ?5
                     WHERE company_id = ?6 AND id = ?7",
                )?;
                st.execute(params![to_db(*starts_at), to_db(*ends_at), uid, booking_id, now, company.0, id.0])?;
            }
        }
        Ok(())
    }

    fn insert_job(&mut self, j: &NewJob, now: DateTime<Utc>) -> Result<JobId> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt, max_attempts, run_at, lease_token,
             created_at, updated_at) VALUES (?1, ?2, ?3, 'available', 0, ?4, ?5, 0, ?6, ?6)",
        )?;
        st.execute(params![
            j.appointment_id.0,
            j.company_id.0,
            j.kind.as_str(),
            j.max_attempts,
            to_db(j.run_at),
            to_db(now)
        ])?;
        Ok(JobId(self.conn.last_insert_rowid()))
    }
    fn job(&mut self, id: JobId) -> Result<Option<Job>> {
        let mut st = self.conn.prepare_cached(&format!("SELECT {JOB_COLS} FROM sync_jobs WHERE id = ?1"))?;
        one(&mut st, [id.0], job_row)
    }
    fn jobs_of(&mut self, appointment: AppointmentId) -> Result<Vec<Job>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {JOB_COLS} FROM sync_jobs WHERE appointment_id = ?1 ORDER BY id"))?;
        all(&mut st, [appointment.0], job_row)
    }
    fn claim_jobs(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        let mut st = self.conn.prepare_cached(&format!(
            "UPDATE sync_jobs SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1,
                 locked_until = ?1, locked_by = ?2, updated_at = ?3
             WHERE id IN (
                 SELECT id FROM sync_jobs
                 WHERE attempt < max_attempts AND (
                     (state IN ('available', 'retryable') AND run_at <= ?3)
                     OR (state = 'running' AND locked_until <= ?3))
                 ORDER BY run_at, id LIMIT ?4)
             RETURNING {JOB_COLS}"
        ))?;
        let mut jobs = all(&mut st, params![to_db(lease_until), worker, to_db(now), limit], job_row)?;
        // RETURNING has no order of its own.
        jobs.sort_by_key(|j| (j.run_at, j.id));
        Ok(jobs)
    }
    fn finish_job(
        &mut self,
        id: JobId,
        lease_token: i64,
        next: &JobSnapshot,
        last_error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "UPDATE sync_jobs SET state = ?1, attempt = ?2, run_at = ?3, locked_until = ?4,
                 locked_by = CASE WHEN ?4 IS NULL THEN NULL ELSE locked_by END, last_error = COALESCE(?5, last_error), updated_at = ?6
             WHERE id = ?7 AND state = 'running' AND lease_token = ?8",
        )?;
        let changed = st.execute(params![
            next.state.as_str(),
            next.attempt,
            to_db(next.run_at),
            next.locked_until.map(to_db),
            last_error,
            to_db(now),
            id.0,
            lease_token
        ])?;
        Ok(changed == 1)
    }
    fn expired_exhausted_jobs(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM sync_jobs WHERE state = 'running' AND locked_until <= ?1
             AND attempt >= max_attempts ORDER BY id LIMIT ?2"
        ))?;
        all(&mut st, params![to_db(now), limit], job_row)
    }

    fn record_sync_success(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        booking_id: i64,
        uid: &str,
        seat_uid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE appointments SET calcom_sync_status = 'synced', calcom_v2_booking_id = ?1,
             calcom_v2_booking_uid = ?2, calcom_v2_seat_uid = ?6, sync_verified_at = ?3, sync_error_code = NULL,
             sync_error_message = NULL, updated_at = ?3 WHERE company_id = ?4 AND id = ?5",
        )?;
        st.execute(params![booking_id, uid, to_db(now), company.0, id.0, seat_uid])?;
        Ok(())
    }
    fn record_sync_failure(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        failure: &SyncFailure,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE appointments SET calcom_sync_status = 'failed', sync_error_code = ?1, sync_error_message = ?2,
             sync_attempt_count = sync_attempt_count + 1,
             requires_manual_review = CASE WHEN ?3 THEN 1 ELSE requires_manual_review END,
             manual_review_flagged_at = CASE WHEN ?3 THEN ?4 ELSE manual_review_flagged_at END,
             review_reason = CASE WHEN ?3 THEN 'sync_failed' ELSE review_reason END,
             updated_at = ?4 WHERE company_id = ?5 AND id = ?6",
        )?;
        st.execute(params![failure.code, failure.message, failure.flag, to_db(now), company.0, id.0])?;
        Ok(())
    }
    fn review_list(&mut self, limit: u32) -> Result<Vec<Appointment>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {APPOINTMENT_COLS} FROM appointments WHERE requires_manual_review = 1
             ORDER BY manual_review_flagged_at, id LIMIT ?1"
        ))?;
        all(&mut st, [limit], appointment_row)
    }
    fn resolve_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE appointments SET requires_manual_review = 0, review_resolved_at = ?1, review_resolved_by = ?2,
             review_note = ?3, updated_at = ?1 WHERE company_id = ?4 AND id = ?5",
        )?;
        st.execute(params![to_db(now), by, note, company.0, id.0])?;
        Ok(())
    }
    fn reset_sync(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "UPDATE appointments SET calcom_sync_status = 'pending', requires_manual_review = 0, updated_at = ?1
             WHERE company_id = ?2 AND id = ?3",
        )?;
        st.execute(params![to_db(now), company.0, id.0])?;
        Ok(())
    }
    fn customer_company(&mut self, id: CustomerId) -> Result<Option<CompanyId>> {
        let mut st = self.conn.prepare_cached("SELECT company_id FROM customers WHERE id = ?1")?;
        Ok(st.query_row([id.0], |r| r.get(0)).optional()?.map(CompanyId))
    }
    fn breaker(&mut self, key: &str) -> Result<Option<Breaker>> {
        let mut st = self.conn.prepare_cached(
            "SELECT key, state, consecutive_failures, open_until, cooldown_secs, updated_at FROM calcom_breakers
             WHERE key = ?1",
        )?;
        one(&mut st, [key], breaker_row)
    }
    fn put_breaker(&mut self, b: &Breaker) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO calcom_breakers (key, state, consecutive_failures, open_until, cooldown_secs, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(key) DO UPDATE SET state = excluded.state, consecutive_failures = excluded.consecutive_failures,
             open_until = excluded.open_until, cooldown_secs = excluded.cooldown_secs, updated_at = excluded.updated_at",
        )?;
        st.execute(params![
            b.key,
            b.state.as_str(),
            b.consecutive_failures,
            b.open_until.map(to_db),
            b.cooldown_secs,
            to_db(b.updated_at)
        ])?;
        Ok(())
    }
    fn breakers(&mut self) -> Result<Vec<Breaker>> {
        let mut st = self.conn.prepare_cached(
            "SELECT key, state, consecutive_failures, open_until, cooldown_secs, updated_at FROM calcom_breakers
             ORDER BY key",
        )?;
        all(&mut st, [], breaker_row)
    }

    fn counts(&mut self) -> Result<Counts> {
        let mut counts = Counts::default();
        let mut st = self.conn.prepare_cached("SELECT calcom_sync_status, COUNT(*) FROM appointments GROUP BY 1")?;
        let by_status: Vec<(String, u64)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        for status in SyncStatus::ALL {
            let n = by_status.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
            counts.appointments_by_sync_status.push((*status, n));
        }
        let mut st = self.conn.prepare_cached("SELECT state, COUNT(*) FROM sync_jobs GROUP BY 1")?;
        let by_state: Vec<(String, u64)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        for state in JobState::ALL {
            let n = by_state.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
            counts.jobs_by_state.push((*state, n));
        }
        counts.manual_review = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM appointments WHERE requires_manual_review = 1")?
            .query_row([], |r| r.get(0))?;
        let (anonymous, total): (u64, u64) = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FILTER (WHERE source = 'retell_webhook_anonymous'), COUNT(*) FROM customers",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        counts.customers_anonymous = anonymous;
        counts.customers_known = total - anonymous;
        Ok(counts)
    }
}
