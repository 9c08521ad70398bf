//! Storage. Business rules stay in core and reach the database only through
//! [`Tx`]: one write transaction per booking, so nothing is ever half-written.
//! Every query that reads customers or appointments is scoped by company.

pub mod lock;
mod memory;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
pub mod retry;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) mod time;

pub use lock::Lock;
pub use memory::MemoryStore;
pub use retry::{RetryPolicy, RetryStats};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use server::{split_pool_size, ServerStore, DEFAULT_POOL_SIZE};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore, WriterStats};

use crate::appointment::{Appointment, AppointmentChange, SyncOrigin, SyncStatus};
use crate::breaker::Breaker;
use crate::call::{Call, NewCall};
use crate::callback::{Callback, CallbackStatus, NewCallback};
use crate::company::{Branch, Company, Service};
use crate::customer::{Customer, NewCustomer};
use crate::ids::{AppointmentId, BranchId, CallDbId, CallId, CallbackId, CompanyId, CustomerId, JobId, ServiceId};
use crate::queue::{Job, JobKind, JobSnapshot, JobState, NewJob};
use crate::ratelimit::RateWindow;
use crate::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use std::sync::{Arc, Mutex};

/// Work for one write transaction. Boxed and `'static` so a store may hand it
/// to another thread (one writer committing a group of bookings together);
/// `FnMut` because a database server may refuse a transaction for a moment
/// (a deadlock) and the store then runs it again: it must act only through
/// its `Tx`.
pub type WriteFn = Box<dyn FnMut(&mut dyn Tx) -> Result<()> + Send>;

/// A database holding callbook's tables.
pub trait Store: Send + Sync {
    /// Runs `work` in one write transaction: all of it is committed, or
    /// none. A server store runs it again after a transient refusal
    /// (`storage_busy` once its retries are spent).
    fn write(&self, work: WriteFn) -> Result<()>;
    /// As `write`, for the worker's bookkeeping (claims, outcomes, breaker):
    /// a store with one writer commits the bookings waiting with it first,
    /// and never in one transaction with them.
    fn write_background(&self, work: WriteFn) -> Result<()> {
        self.write(work)
    }
    /// Runs `work` on a consistent read snapshot; it must not write.
    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()>;
    /// The schema version the database is at (0: none kept, in memory).
    fn schema_version(&self) -> Result<i64> {
        Ok(0)
    }
    /// Starts listening for new jobs (PostgreSQL: `LISTEN callbook_jobs` on
    /// a connection of its own), so [`Store::wait_for_jobs`] can wake at
    /// once. Stores that cannot only poll: the default does nothing.
    fn listen_for_jobs(&self) -> Result<()> {
        Ok(())
    }
    /// An idle worker's wait: returns when a job was enqueued since the
    /// listening began (`true`, a notification) or after `timeout` (`false`,
    /// the worker polls again). The default sleeps the whole timeout.
    fn wait_for_jobs(&self, timeout: std::time::Duration) -> bool {
        std::thread::sleep(timeout);
        false
    }
}

/// `OpenWork` of `company` in `list`, created empty when missing.
pub(crate) fn open_work_of(list: &mut Vec<OpenWork>, company: CompanyId) -> &mut OpenWork {
    let i = match list.iter().position(|w| w.company_id == company) {
        Some(i) => i,
        None => {
            list.push(OpenWork {
                company_id: company,
                manual_reviews: 0,
                callbacks: 0,
                jobs_overdue: 0,
                oldest_job: None,
            });
            list.len() - 1
        }
    };
    &mut list[i]
}

/// Who copies the WAL back into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checkpoint {
    /// `Inline` with `Full`, `Background` with `Normal`: neither wins both
    /// throughput and tail under `Full` (README, "Durable and concurrent"),
    /// so a lone writer keeps its throughput; `callbook serve`, whose
    /// callers wait on the tail under sustained load, takes `Background`.
    Auto,
    /// SQLite's own: inside whichever commit crosses ~1000 pages, which then
    /// waits for the copy and the database file's sync. Best p50 with
    /// `Normal` (1.05x raw against 1.31x); at 1,000 bookings/s under `Full`
    /// `serve`'s p99 was 6.8–10.6 ms against 3.0–5.0 ms in the background.
    Inline,
    /// A thread of its own: no commit pays for the copy (p99 ~10x lower
    /// than inline with `Normal`), at ~10–20 µs more p50; under `Full`, 14%
    /// less throughput with 32 concurrent clients, the same with 1 and 8.
    Background,
}

/// SQLite's `synchronous` setting for the write connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit reaches the disk before the caller is answered (default).
    #[default]
    Full,
    /// Faster; may lose the last commits on power loss (never corrupts).
    Normal,
}

/// How to open a database (`Callbook::open_with`); from the Node and C
/// options (`{"synchronous": "normal", "horizonDays": 30}`) and the CLI's
/// `--synchronous`, `--horizon-days`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenOptions {
    /// SQLite's durability: `full` (default: a confirmed booking survives a
    /// power cut) or `normal`. Database servers keep their own settings.
    pub synchronous: Synchronous,
    /// How far ahead a start may be, in days (default 365, `Config::horizon_days`).
    #[serde(alias = "horizon_days")]
    pub horizon_days: Option<i64>,
    /// Database servers: connections this process keeps at most (default
    /// 16; a URL's `?pool_size=N` wins). SQLite has one writer and its readers.
    #[serde(alias = "pool_size")]
    pub pool_size: Option<usize>,
    /// SQLite: who copies the WAL back into the database file (`auto`,
    /// `inline`, `background`; [`Checkpoint`]).
    pub checkpoint: Option<Checkpoint>,
}

/// Is `target` a database server URL rather than a SQLite file path?
pub fn is_server_url(target: &str) -> bool {
    ["postgres://", "postgresql://", "mysql://", "mariadb://"].iter().any(|p| target.starts_with(p))
}

/// The target that names the in-memory store, as SQLite names its own.
pub const MEMORY: &str = ":memory:";

/// Opens (creating and migrating) the store `target` names: a
/// `postgres://` or `mysql://` URL (features `postgres`, `mysql`),
/// [`MEMORY`] for a [`MemoryStore`] (nothing kept: tests, benchmarks, a
/// demo), else a SQLite file (feature `sqlite`). The one place paths and
/// URLs part.
pub fn open(target: &std::path::Path, options: &OpenOptions) -> Result<Arc<dyn Store>> {
    if target.as_os_str() == MEMORY {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if let Some(url) = target.to_str().filter(|t| is_server_url(t)) {
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        return Ok(Arc::new(ServerStore::open_url_with(url, options.pool_size)?));
        #[cfg(not(any(feature = "postgres", feature = "mysql")))]
        return Err(Error::Storage(format!(
            "this build cannot open {url}: no database server support (features postgres, mysql)"
        )));
    }
    #[cfg(feature = "sqlite")]
    return Ok(Arc::new(SqliteStore::open_with(
        target,
        SqliteOptions {
            synchronous: options.synchronous,
            checkpoint: options.checkpoint.unwrap_or(Checkpoint::Auto),
            ..Default::default()
        },
    )?));
    #[cfg(not(feature = "sqlite"))]
    {
        let _ = options;
        Err(Error::Storage("this build has no SQLite support (feature sqlite)".into()))
    }
}

/// Runs `f` in one write transaction and hands back its result (`f` may
/// run more than once: see [`WriteFn`]).
pub fn write<R: Send + 'static>(
    store: &dyn Store,
    f: impl FnMut(&mut dyn Tx) -> Result<R> + Send + 'static,
) -> Result<R> {
    write_as(store, false, f)
}

/// As [`write`], through `Store::write_background`: the worker's bookkeeping.
pub fn write_background<R: Send + 'static>(
    store: &dyn Store,
    f: impl FnMut(&mut dyn Tx) -> Result<R> + Send + 'static,
) -> Result<R> {
    write_as(store, true, f)
}

fn write_as<R: Send + 'static>(
    store: &dyn Store,
    background: bool,
    mut f: impl FnMut(&mut dyn Tx) -> Result<R> + Send + 'static,
) -> Result<R> {
    let slot = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    let work: WriteFn = Box::new(move |tx| {
        let value = f(tx)?;
        *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    });
    match background {
        true => store.write_background(work)?,
        false => store.write(work)?,
    }
    let value = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    value.ok_or_else(|| Error::Storage("write finished without a result".into()))
}

/// Runs `f` on a read snapshot and hands back its result.
pub fn read<R>(store: &dyn Store, mut f: impl FnMut(&mut dyn Tx) -> Result<R>) -> Result<R> {
    let mut out = None;
    store.read(&mut |tx| {
        out = Some(f(tx)?);
        Ok(())
    })?;
    out.ok_or_else(|| Error::Storage("read finished without a result".into()))
}

/// Free starts a call was offered for a service on a local day.
#[derive(Debug, Clone, PartialEq)]
pub struct RememberedOffer {
    pub service_id: ServiceId,
    pub day: NaiveDate,
    pub offered: Offered,
}

/// A new appointment; the store assigns the id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAppointment {
    pub customer_id: CustomerId,
    pub company_id: CompanyId,
    pub branch_id: BranchId,
    pub service_id: ServiceId,
    pub call_id: Option<CallDbId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub sync_origin: SyncOrigin,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub requires_manual_review: bool,
    pub review_reason: Option<String>,
    pub idempotency_key: String,
    /// How long core took from receiving the booking to this insert.
    pub booking_latency_us: Option<i64>,
    pub now: DateTime<Utc>,
}

/// The free starts a call was offered for a service on a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offered {
    pub starts: Vec<DateTime<Utc>>,
    /// The Cal.com event type's own length, when its answer told it (it
    /// may be longer than the local service's duration).
    pub length_minutes: Option<i64>,
}

/// A failed sync attempt as the appointment records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    /// HTTP status or error kind (`timeout`, `network`, `slot_unavailable`, ...).
    pub code: String,
    /// At most 255 chars (cut on a char boundary by the caller).
    pub message: String,
    /// Out of attempts or not retryable: put it on the manual-review list.
    pub flag: bool,
}

/// What Cal.com did to a booking it holds (told by its webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalcomChange {
    /// Cancelled in Cal.com: the appointment is cancelled, its unfinished jobs too.
    Cancelled,
    /// Moved in Cal.com: Cal.com made a new booking (`uid`) at the new time.
    Rescheduled { booking_id: Option<i64>, uid: String, starts_at: DateTime<Utc>, ends_at: DateTime<Utc> },
}

/// Where an interrupted backfill of one event type resumes: after this
/// start, past the first `skip` bookings listed at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullPlace {
    pub after_start: DateTime<Utc>,
    pub skip: u32,
}

/// The last drift report's counts for one company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DriftCounts {
    pub company_id: CompanyId,
    pub checked_at: DateTime<Utc>,
    pub missing_locally: u64,
    pub missing_in_calcom: u64,
    pub different_start: u64,
    pub cancelled_one_side: u64,
}

/// Counts for `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// By sync status, without those cancelled before their first sync.
    pub appointments_by_sync_status: Vec<(SyncStatus, u64)>,
    /// Cancelled while still pending their first sync, with no job left to
    /// run (a create in flight still owes a cancel): nothing owed to Cal.com.
    pub cancelled_before_sync: u64,
    pub jobs_by_state: Vec<(JobState, u64)>,
    pub manual_review: u64,
    pub customers_known: u64,
    pub customers_anonymous: u64,
}

/// One appointment created inside a health window, as the operations
/// overview reads it (`Callbook::health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRow {
    pub company_id: CompanyId,
    pub created_at: DateTime<Utc>,
    /// Its customer is anonymous (a withheld number).
    pub anonymous: bool,
    pub cancelled: bool,
    pub sync_status: SyncStatus,
    /// Put on the manual-review list at some point (resolved or not).
    pub flagged: bool,
    pub booking_latency_us: Option<i64>,
    pub sync_verified_at: Option<DateTime<Utc>>,
    /// Moved since it was booked (its last sync confirmed the move, not the booking).
    pub rescheduled: bool,
}

/// Work waiting for a person or the worker, per company: not windowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenWork {
    pub company_id: CompanyId,
    /// Appointments on the manual-review list.
    pub manual_reviews: u64,
    /// Callbacks not done yet.
    pub callbacks: u64,
    /// Unfinished sync jobs created at or before the cut-off asked for.
    pub jobs_overdue: u64,
    /// When the oldest unfinished sync job was created.
    pub oldest_job: Option<DateTime<Utc>>,
}

/// The operations core needs, inside one transaction.
pub trait Tx {
    /// Holds these locks until the transaction ends (see [`lock`]): what a
    /// rule reads before it writes (a known phone, a slot, an email) cannot
    /// change under it, across processes, while writes that touch other
    /// things run in parallel. Take all of a transaction's locks in one
    /// call, before its first write: the stores take them in one order, so
    /// two writes cannot wait for each other in a circle. A no-op where one
    /// writer already serialises every write (SQLite, memory).
    fn lock(&mut self, _locks: &[Lock]) -> Result<()> {
        Ok(())
    }
    fn company(&mut self, id: CompanyId) -> Result<Option<Company>>;
    /// Every company, by id.
    fn companies(&mut self) -> Result<Vec<Company>>;
    fn branch(&mut self, id: BranchId) -> Result<Option<Branch>>;
    /// The branch whose `phone_number` is this E.164 number.
    fn branch_by_phone(&mut self, phone: &str) -> Result<Option<Branch>>;
    fn service(&mut self, id: ServiceId) -> Result<Option<Service>>;
    fn services_of(&mut self, company: CompanyId) -> Result<Vec<Service>>;
    /// A company's branches, by id.
    fn branches_of(&mut self, company: CompanyId) -> Result<Vec<Branch>>;
    fn upsert_company(&mut self, company: &Company, now: DateTime<Utc>) -> Result<()>;
    fn upsert_branch(&mut self, branch: &Branch, now: DateTime<Utc>) -> Result<()>;
    fn upsert_service(&mut self, service: &Service, now: DateTime<Utc>) -> Result<()>;

    fn call(&mut self, id: &CallId) -> Result<Option<Call>>;
    /// A call with every answer [`Tx::remember_slots`] stored for it (one
    /// read where a booking would otherwise make two).
    fn call_with_offers(&mut self, id: &CallId) -> Result<Option<(Call, Vec<RememberedOffer>)>>;
    fn insert_call(&mut self, call: &NewCall, now: DateTime<Utc>) -> Result<CallDbId>;

    fn customer(&mut self, company: CompanyId, id: CustomerId) -> Result<Option<Customer>>;
    fn customer_by_phone(&mut self, company: CompanyId, phone: &str) -> Result<Option<Customer>>;
    fn customer_id_by_email(&mut self, company: CompanyId, email: &str) -> Result<Option<CustomerId>>;
    fn insert_customer(&mut self, customer: &NewCustomer) -> Result<CustomerId>;
    fn set_customer_email(&mut self, company: CompanyId, id: CustomerId, email: &str, now: DateTime<Utc>)
        -> Result<()>;

    fn appointment(&mut self, company: CompanyId, id: AppointmentId) -> Result<Option<Appointment>>;
    fn appointment_by_key(&mut self, company: CompanyId, key: &str) -> Result<Option<Appointment>>;
    fn insert_appointment(&mut self, appointment: &NewAppointment) -> Result<AppointmentId>;
    /// Future appointments of a customer that Cal.com already has (a booking uid).
    fn synced_future_appointments(
        &mut self,
        company: CompanyId,
        customer: CustomerId,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppointmentId>>;
    /// Confirmed appointments of a service starting in `[from, to)`, by start.
    fn appointments_between(
        &mut self,
        company: CompanyId,
        service: ServiceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>>;
    /// Remembers the free starts a call was offered for a service on a day
    /// (replacing an earlier answer for the same day).
    fn remember_slots(
        &mut self,
        call: CallDbId,
        service: ServiceId,
        day: NaiveDate,
        offered: &Offered,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// What [`Tx::remember_slots`] stored, if anything.
    fn remembered_slots(&mut self, call: CallDbId, service: ServiceId, day: NaiveDate) -> Result<Option<Offered>>;
    /// Puts an appointment on the manual-review list.
    fn flag_for_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Which company an appointment belongs to (for the operator's commands
    /// that name an appointment by id alone).
    fn appointment_company(&mut self, id: AppointmentId) -> Result<Option<CompanyId>>;

    /// The company's appointments holding this Cal.com booking uid (several
    /// when the event type is seated: one per seat).
    fn appointments_by_booking_uid(&mut self, company: CompanyId, uid: &str) -> Result<Vec<Appointment>>;
    /// Applies a change made in Cal.com: `sync_origin` becomes `calcom` so
    /// nothing is pushed back, `calcom_webhook_at` becomes `delivered_at`
    /// (the delivery's `createdAt`); a cancellation also cancels unfinished
    /// jobs, a reschedule keeps the old start in `previous_starts_at`.
    fn apply_calcom_change(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        change: &CalcomChange,
        delivered_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records a cancel or a move (`appointment_changes`).
    fn insert_change(&mut self, change: &AppointmentChange) -> Result<()>;
    /// An appointment's changes, oldest first.
    fn changes_of(&mut self, company: CompanyId, id: AppointmentId) -> Result<Vec<AppointmentChange>>;
    /// The changes one call made, oldest first (a retried confirmation finds its first answer).
    fn changes_by_call(&mut self, company: CompanyId, call: CallDbId) -> Result<Vec<AppointmentChange>>;
    /// What a caller may see: the customer's appointments (when known) and
    /// those booked in this call, starting at or after `from`, soonest
    /// first, any status, at most `limit`.
    fn caller_appointments(
        &mut self,
        company: CompanyId,
        customer: Option<CustomerId>,
        call: CallDbId,
        from: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Appointment>>;
    /// Cancelled by a caller or an operator (Cal.com's cancellations are
    /// [`Tx::apply_calcom_change`]).
    fn cancel_appointment(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()>;
    /// Moved by a caller or an operator: the new times, the old start in
    /// `previous_starts_at`, `rescheduled_count + 1`; `pending`: Cal.com has
    /// to hear of it (`calcom_sync_status = pending`).
    fn move_appointment(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        pending: bool,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Cancels the appointment's jobs of `kind` that wait and were never
    /// sent (`available`, attempt 0); how many.
    fn cancel_unsent_jobs(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        kind: JobKind,
        now: DateTime<Utc>,
    ) -> Result<u64>;

    /// A company's appointments starting in `[from, to)`, any service, any status.
    fn appointments_starting(
        &mut self,
        company: CompanyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>>;
    fn pull_place(&mut self, company: CompanyId, event_type: i64) -> Result<Option<PullPlace>>;
    /// `None` forgets the place (the backfill of that event type finished).
    fn put_pull_place(
        &mut self,
        company: CompanyId,
        event_type: i64,
        place: Option<PullPlace>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    fn put_drift(&mut self, counts: &DriftCounts) -> Result<()>;
    fn drift(&mut self) -> Result<Vec<DriftCounts>>;

    fn insert_callback(&mut self, callback: &NewCallback) -> Result<CallbackId>;
    fn callback(&mut self, id: CallbackId) -> Result<Option<Callback>>;
    /// Callbacks, oldest first; `status` narrows them.
    fn callbacks(&mut self, status: Option<CallbackStatus>, limit: u32) -> Result<Vec<Callback>>;
    /// Marks an open callback done; `false` when it was not open.
    fn finish_callback(&mut self, id: CallbackId, by: &str, now: DateTime<Utc>) -> Result<bool>;

    fn insert_job(&mut self, job: &NewJob, now: DateTime<Utc>) -> Result<JobId>;
    fn job(&mut self, id: JobId) -> Result<Option<Job>>;
    fn jobs_of(&mut self, appointment: AppointmentId) -> Result<Vec<Job>>;
    /// Claims up to `limit` claimable jobs (see [`crate::queue::is_claimable`])
    /// in one statement, oldest `run_at` first: each becomes `running`, its
    /// attempt and lease token go up by one, and it is leased to `worker`.
    fn claim_jobs(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Job>>;
    /// Writes a job's next state if it is still `running` under `lease_token`;
    /// `false` when the lease was lost (someone else holds the job now).
    /// `last_error: None` keeps the job's previous error (a deferral is no error).
    fn finish_job(
        &mut self,
        id: JobId,
        lease_token: i64,
        next: &JobSnapshot,
        last_error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Running jobs whose lease ran out with no attempts left.
    fn expired_exhausted_jobs(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>>;

    /// Cal.com has the appointment: `synced`, booking id, uid (and seat),
    /// verified now, errors cleared.
    fn record_sync_success(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        booking_id: i64,
        uid: &str,
        seat_uid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// A failed attempt: `failed`, the error, one more attempt counted, and
    /// when `flag` the manual-review flag.
    fn record_sync_failure(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        failure: &SyncFailure,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Appointments flagged for review and not resolved, oldest flag first (all tenants: the operator's list).
    fn review_list(&mut self, limit: u32) -> Result<Vec<Appointment>>;
    /// Clears the flag and records who resolved it, when and why.
    fn resolve_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Back to `pending` with the review flag cleared (a retry follows with a new job).
    fn reset_sync(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()>;
    fn customer_company(&mut self, id: CustomerId) -> Result<Option<CompanyId>>;
    fn breaker(&mut self, key: &str) -> Result<Option<Breaker>>;
    fn put_breaker(&mut self, breaker: &Breaker) -> Result<()>;
    fn breakers(&mut self) -> Result<Vec<Breaker>>;

    fn counts(&mut self) -> Result<Counts>;
    /// Appointments booked in a call (`call_id` set: not those made
    /// elsewhere, such as on Cal.com's own page) created in `(after, until]`,
    /// every tenant (the operator's overview), in no particular order.
    fn health_rows(&mut self, after: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<HealthRow>>;
    /// Per company with any: open manual reviews, open callbacks, and
    /// unfinished jobs (how many created at or before `overdue_at`, and the
    /// oldest's creation), by company id.
    fn open_work(&mut self, overdue_at: DateTime<Utc>) -> Result<Vec<OpenWork>>;

    /// The shared Cal.com rate window of `key` (empty when none is kept),
    /// held for the rest of this write transaction: PostgreSQL and MariaDB
    /// lock its row (`FOR UPDATE`, the row made first when missing), SQLite's
    /// writer is alone. Every worker process on the key sees one window.
    fn rate_window(&mut self, key: &str) -> Result<RateWindow>;
    fn put_rate_window(&mut self, window: &RateWindow, now: DateTime<Utc>) -> Result<()>;
}
