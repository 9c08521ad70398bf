//! The embedded SQLite store: WAL, a busy timeout, cached prepared
//! statements, migrations by `PRAGMA user_version`. One write connection;
//! reads use their own connections so they never wait for the writer.

use super::time::{from_db, to_db};
use super::{Counts, NewAppointment, Store, Tx, WriteFn};
use crate::appointment::{Appointment, AppointmentStatus, SyncOrigin, SyncStatus};
use crate::call::{Call, NewCall};
use crate::caller::AnonymityReason;
use crate::company::{Branch, Company, Secret, Service};
use crate::customer::{Customer, CustomerSource, NewCustomer};
use crate::ids::{AppointmentId, BranchId, CallDbId, CallId, CompanyId, CustomerId, JobId, ServiceId};
use crate::queue::{Job, JobKind, JobSnapshot, JobState, NewJob};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA_V1: &str = include_str!("schema_sqlite.sql");
const SCHEMA_VERSION: i64 = 1;

/// SQLite's `synchronous` setting for the write connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit reaches the disk before the caller is answered (default).
    Full,
    /// Faster; may lose the last commits on power loss (never corrupts).
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { synchronous: Synchronous::Full, busy_timeout: Duration::from_secs(5) }
    }
}

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writer: Arc<Mutex<Writer>>,
    readers: Mutex<Vec<Connection>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

/// Commits between two WAL checkpoints (SQLite's own default is ~1000 pages).
const CHECKPOINT_EVERY: u32 = 256;

#[derive(Debug)]
struct Writer {
    conn: Connection,
    commits: u32,
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
) -> Result<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)> {
    let conn = connect(path, options)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new()
        .name("callbook-checkpoint".into())
        .spawn(move || {
            let checkpoint = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).ok();
            while rx.recv().is_ok() {
                checkpoint();
                let _held = writer.lock().unwrap_or_else(|p| p.into_inner());
                checkpoint();
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
        conn.execute_batch("PRAGMA wal_autocheckpoint=0")?;
        let writer = Arc::new(Mutex::new(Writer { conn, commits: 0, wake: None }));
        let (wake, checkpointer) = spawn_checkpointer(&path, &options, Arc::clone(&writer))?;
        writer.lock().unwrap_or_else(|p| p.into_inner()).wake = Some(wake);
        Ok(SqliteStore { path, options, writer, readers: Mutex::new(Vec::new()), checkpointer: Some(checkpointer) })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
    conn.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
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
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    fn write(&self, work: WriteFn) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = writer.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        work(&mut SqliteTx { conn: &tx })?;
        tx.commit()?;
        writer.commits = writer.commits.wrapping_add(1);
        if writer.commits % CHECKPOINT_EVERY == 0 {
            if let Some(wake) = &writer.wake {
                // Full channel: a checkpoint is already due, nothing to add.
                let _ = wake.try_send(());
            }
        }
        Ok(())
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

struct SqliteTx<'a> {
    conn: &'a Connection,
}

const CUSTOMER_COLS: &str = "id, company_id, name, email, phone, source, anonymity_reason, created_at, updated_at";
const APPOINTMENT_COLS: &str =
    "id, customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at, status, \
    calcom_sync_status, sync_origin, metadata, calcom_v2_booking_id, calcom_v2_booking_uid, sync_error_code, \
    sync_error_message, sync_attempt_count, sync_verified_at, requires_manual_review, manual_review_flagged_at, \
    review_reason, idempotency_key, created_at, updated_at";
const JOB_COLS: &str = "id, appointment_id, company_id, kind, state, attempt, max_attempts, run_at, locked_until, \
    locked_by, lease_token, last_error, created_at, updated_at";

fn bad(what: &str, value: &str) -> Error {
    Error::Storage(format!("unexpected {what} in database: {value:?}"))
}

fn time_opt(value: Option<String>) -> Result<Option<DateTime<Utc>>> {
    value.as_deref().map(from_db).transpose()
}

/// Reads a row with rusqlite, then converts it with callbook's own errors.
fn raw<T>(row: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: rusqlite::types::FromSql,
{
    row.get(i)
}

type CustomerRaw = (i64, i64, String, Option<String>, String, String, Option<String>, String, String);

fn customer_raw(r: &Row<'_>) -> rusqlite::Result<CustomerRaw> {
    Ok((raw(r, 0)?, raw(r, 1)?, raw(r, 2)?, raw(r, 3)?, raw(r, 4)?, raw(r, 5)?, raw(r, 6)?, raw(r, 7)?, raw(r, 8)?))
}

fn customer_from(c: CustomerRaw) -> Result<Customer> {
    Ok(Customer {
        id: CustomerId(c.0),
        company_id: CompanyId(c.1),
        name: c.2,
        email: c.3,
        phone: c.4,
        source: CustomerSource::parse(&c.5).ok_or_else(|| bad("customer source", &c.5))?,
        anonymity_reason: match c.6 {
            Some(r) => Some(AnonymityReason::parse(&r).ok_or_else(|| bad("anonymity reason", &r))?),
            None => None,
        },
        created_at: from_db(&c.7)?,
        updated_at: from_db(&c.8)?,
    })
}

struct AppointmentRaw {
    ints: [Option<i64>; 9],
    texts: [Option<String>; 15],
}

fn appointment_raw(r: &Row<'_>) -> rusqlite::Result<AppointmentRaw> {
    // Integer columns: id, customer_id, company_id, branch_id, service_id, call_id,
    // calcom_v2_booking_id, sync_attempt_count, requires_manual_review.
    let ints =
        [raw(r, 0)?, raw(r, 1)?, raw(r, 2)?, raw(r, 3)?, raw(r, 4)?, raw(r, 5)?, raw(r, 12)?, raw(r, 16)?, raw(r, 18)?];
    let texts = [
        raw(r, 6)?,
        raw(r, 7)?,
        raw(r, 8)?,
        raw(r, 9)?,
        raw(r, 10)?,
        raw(r, 11)?,
        raw(r, 13)?,
        raw(r, 14)?,
        raw(r, 15)?,
        raw(r, 17)?,
        raw(r, 19)?,
        raw(r, 20)?,
        raw(r, 21)?,
        raw(r, 22)?,
        raw(r, 23)?,
    ];
    Ok(AppointmentRaw { ints, texts })
}

fn appointment_from(a: AppointmentRaw) -> Result<Appointment> {
    let [id, customer_id, company_id, branch_id, service_id, call_id, booking_id, attempts, review] = a.ints;
    let [starts_at, ends_at, status, sync_status, origin, metadata, uid, err_code, err_msg, verified, flagged, reason, key, created, updated] =
        a.texts;
    let need_int = |v: Option<i64>| v.ok_or_else(|| Error::Storage("NULL in a NOT NULL column".into()));
    let need = |v: Option<String>| v.ok_or_else(|| Error::Storage("NULL in a NOT NULL column".into()));
    let status = need(status)?;
    let sync_status = need(sync_status)?;
    let origin = need(origin)?;
    let metadata: serde_json::Value = serde_json::from_str(&need(metadata)?)?;
    Ok(Appointment {
        id: AppointmentId(need_int(id)?),
        customer_id: CustomerId(need_int(customer_id)?),
        company_id: CompanyId(need_int(company_id)?),
        branch_id: BranchId(need_int(branch_id)?),
        service_id: ServiceId(need_int(service_id)?),
        call_id: call_id.map(CallDbId),
        starts_at: from_db(&need(starts_at)?)?,
        ends_at: from_db(&need(ends_at)?)?,
        status: AppointmentStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        calcom_sync_status: SyncStatus::parse(&sync_status).ok_or_else(|| bad("sync status", &sync_status))?,
        sync_origin: SyncOrigin::parse(&origin).ok_or_else(|| bad("sync origin", &origin))?,
        metadata: match metadata {
            serde_json::Value::Object(map) => map,
            _ => return Err(bad("metadata", "not an object")),
        },
        calcom_v2_booking_id: booking_id,
        calcom_v2_booking_uid: uid,
        sync_error_code: err_code,
        sync_error_message: err_msg,
        sync_attempt_count: attempts.unwrap_or(0),
        sync_verified_at: time_opt(verified)?,
        requires_manual_review: review.unwrap_or(0) != 0,
        manual_review_flagged_at: time_opt(flagged)?,
        review_reason: reason,
        idempotency_key: need(key)?,
        created_at: from_db(&need(created)?)?,
        updated_at: from_db(&need(updated)?)?,
    })
}

type JobRaw = (
    i64,
    i64,
    i64,
    String,
    String,
    u32,
    u32,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    String,
    String,
);

fn job_raw(r: &Row<'_>) -> rusqlite::Result<JobRaw> {
    Ok((
        raw(r, 0)?,
        raw(r, 1)?,
        raw(r, 2)?,
        raw(r, 3)?,
        raw(r, 4)?,
        raw(r, 5)?,
        raw(r, 6)?,
        raw(r, 7)?,
        raw(r, 8)?,
        raw(r, 9)?,
        raw(r, 10)?,
        raw(r, 11)?,
        raw(r, 12)?,
        raw(r, 13)?,
    ))
}

fn job_from(j: JobRaw) -> Result<Job> {
    Ok(Job {
        id: JobId(j.0),
        appointment_id: AppointmentId(j.1),
        company_id: CompanyId(j.2),
        kind: JobKind::parse(&j.3).ok_or_else(|| bad("job kind", &j.3))?,
        state: JobState::parse(&j.4).ok_or_else(|| bad("job state", &j.4))?,
        attempt: j.5,
        max_attempts: j.6,
        run_at: from_db(&j.7)?,
        locked_until: time_opt(j.8)?,
        locked_by: j.9,
        lease_token: j.10,
        last_error: j.11,
        created_at: from_db(&j.12)?,
        updated_at: from_db(&j.13)?,
    })
}

fn branch_raw(r: &Row<'_>) -> rusqlite::Result<Branch> {
    Ok(Branch {
        id: BranchId(raw(r, 0)?),
        company_id: CompanyId(raw(r, 1)?),
        name: raw(r, 2)?,
        timezone: raw(r, 3)?,
        country: raw(r, 4)?,
        phone_number: raw(r, 5)?,
    })
}

fn service_raw(r: &Row<'_>) -> rusqlite::Result<Service> {
    Ok(Service {
        id: ServiceId(raw(r, 0)?),
        company_id: CompanyId(raw(r, 1)?),
        name: raw(r, 2)?,
        calcom_event_type_id: raw(r, 3)?,
        duration_minutes: raw(r, 4)?,
        capacity: raw(r, 5)?,
    })
}

const BRANCH_COLS: &str = "id, company_id, name, timezone, country, phone_number";
const SERVICE_COLS: &str = "id, company_id, name, calcom_event_type_id, duration_minutes, capacity";

impl Tx for SqliteTx<'_> {
    fn company(&mut self, id: CompanyId) -> Result<Option<Company>> {
        let mut st = self.conn.prepare_cached("SELECT id, name, calcom_api_key FROM companies WHERE id = ?1")?;
        Ok(st
            .query_row([id.0], |r| {
                Ok(Company {
                    id: CompanyId(r.get(0)?),
                    name: r.get(1)?,
                    calcom_api_key: r.get::<_, Option<String>>(2)?.map(Secret::new),
                })
            })
            .optional()?)
    }
    fn branch(&mut self, id: BranchId) -> Result<Option<Branch>> {
        let mut st = self.conn.prepare_cached(&format!("SELECT {BRANCH_COLS} FROM branches WHERE id = ?1"))?;
        Ok(st.query_row([id.0], branch_raw).optional()?)
    }
    fn branch_by_phone(&mut self, phone: &str) -> Result<Option<Branch>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {BRANCH_COLS} FROM branches WHERE phone_number = ?1 ORDER BY id LIMIT 1"
        ))?;
        Ok(st.query_row([phone], branch_raw).optional()?)
    }
    fn service(&mut self, id: ServiceId) -> Result<Option<Service>> {
        let mut st = self.conn.prepare_cached(&format!("SELECT {SERVICE_COLS} FROM services WHERE id = ?1"))?;
        Ok(st.query_row([id.0], service_raw).optional()?)
    }
    fn services_of(&mut self, company: CompanyId) -> Result<Vec<Service>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {SERVICE_COLS} FROM services WHERE company_id = ?1 ORDER BY id"))?;
        let rows = st.query_map([company.0], service_raw)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
    fn upsert_company(&mut self, c: &Company, now: DateTime<Utc>) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT INTO companies (id, name, calcom_api_key, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, calcom_api_key = excluded.calcom_api_key,
             updated_at = excluded.updated_at",
        )?;
        st.execute(params![c.id.0, c.name, c.calcom_api_key.as_ref().map(Secret::expose), to_db(now)])?;
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
        st.query_row(params![company.0, id.0], customer_raw).optional()?.map(customer_from).transpose()
    }
    fn customer_by_phone(&mut self, company: CompanyId, phone: &str) -> Result<Option<Customer>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {CUSTOMER_COLS} FROM customers WHERE company_id = ?1 AND phone = ?2 ORDER BY id LIMIT 1"
        ))?;
        st.query_row(params![company.0, phone], customer_raw).optional()?.map(customer_from).transpose()
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
        st.query_row(params![company.0, id.0], appointment_raw).optional()?.map(appointment_from).transpose()
    }
    fn appointment_by_key(&mut self, company: CompanyId, key: &str) -> Result<Option<Appointment>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {APPOINTMENT_COLS} FROM appointments WHERE company_id = ?1 AND idempotency_key = ?2"
        ))?;
        st.query_row(params![company.0, key], appointment_raw).optional()?.map(appointment_from).transpose()
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
    fn appointment_company(&mut self, id: AppointmentId) -> Result<Option<CompanyId>> {
        let mut st = self.conn.prepare_cached("SELECT company_id FROM appointments WHERE id = ?1")?;
        Ok(st.query_row([id.0], |r| r.get(0)).optional()?.map(CompanyId))
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
        st.query_row([id.0], job_raw).optional()?.map(job_from).transpose()
    }
    fn jobs_of(&mut self, appointment: AppointmentId) -> Result<Vec<Job>> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {JOB_COLS} FROM sync_jobs WHERE appointment_id = ?1 ORDER BY id"))?;
        let rows = st.query_map([appointment.0], job_raw)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(job_from).collect()
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
        let rows = st.query_map(params![to_db(lease_until), worker, to_db(now), limit], job_raw)?;
        let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let mut jobs = rows.into_iter().map(job_from).collect::<Result<Vec<_>>>()?;
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
                 locked_by = CASE WHEN ?4 IS NULL THEN NULL ELSE locked_by END, last_error = ?5, updated_at = ?6
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
        let rows = st.query_map(params![to_db(now), limit], job_raw)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(job_from).collect()
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
