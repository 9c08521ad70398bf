//! The one SQL [`Tx`] of callbook, for SQLite, PostgreSQL and MySQL/MariaDB.
//! Every statement, column list and row mapper is written once, with `?`
//! placeholders; a [`Conn`] runs them on one database. What differs between
//! the three is in [`Dialect`] and the drivers' [`Conn`] and nowhere else:
//! upserts, the job claim, a reserved word, the sequence after an explicit
//! id, and how a lock is taken ([`Conn::take_locks`]).
//!
//! `SqlTx` is generic over its connection, so SQLite's prepared-statement
//! cache sees the same `&'static str` every time; the servers use it over
//! `dyn Conn`.

use super::lock::Lock;
use super::time::{from_db, slots_from_db, slots_to_db, to_db};
use super::{
    open_work_of, CalcomChange, Counts, DriftCounts, HealthRow, NewAppointment, Offered, OpenWork, PullPlace,
    RememberedOffer, SyncFailure, Tx,
};
use crate::appointment::{
    Appointment, AppointmentChange, AppointmentStatus, ChangeKind, ChangedBy, SyncOrigin, SyncStatus,
};
use crate::breaker::{Breaker, BreakerState};
use crate::call::{Call, NewCall};
use crate::callback::{Callback, CallbackStatus, NewCallback};
use crate::caller::AnonymityReason;
use crate::company::{Branch, ChangePolicy, Company, Secret, Service};
use crate::customer::{Customer, CustomerSource, NewCustomer};
use crate::ids::{AppointmentId, BranchId, CallDbId, CallId, CallbackId, CompanyId, CustomerId, JobId, ServiceId};
use crate::queue::{Job, JobKind, JobSnapshot, JobState, NewJob};
use crate::ratelimit::RateWindow;
use crate::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use std::borrow::Cow;

/// A value bound to a statement; text is borrowed where it can be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    Bool(bool),
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<u32> for Val<'_> {
    fn from(v: u32) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<bool> for Val<'_> {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a String> for Val<'a> {
    fn from(v: &'a String) -> Self {
        Val::Text(Cow::Borrowed(v))
    }
}
impl From<String> for Val<'_> {
    fn from(v: String) -> Self {
        Val::Text(Cow::Owned(v))
    }
}
impl<'a, T: Into<Val<'a>>> From<Option<T>> for Val<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// A timestamp as stored.
fn at(t: DateTime<Utc>) -> Val<'static> {
    Val::Text(Cow::Owned(to_db(t)))
}

/// One result row, with typed getters that fail as `storage` errors (never
/// a panic) on unexpected values.
pub(crate) trait SqlRow {
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;

    fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| bad("NULL", "number"))
    }
    fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| bad("NULL", "text"))
    }
    fn flag(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }
    fn small(&self, i: usize, what: &str) -> Result<u32> {
        u32::try_from(self.int(i)?).map_err(|_| bad(what, "out of range"))
    }
    fn time(&self, i: usize) -> Result<DateTime<Utc>> {
        from_db(&self.text(i)?)
    }
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>> {
        self.opt_text(i)?.as_deref().map(from_db).transpose()
    }
}

fn bad(what: &str, value: &str) -> Error {
    Error::Storage(format!("unexpected {what} in database: {value:?}"))
}

fn parsed<T>(r: &dyn SqlRow, i: usize, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    let text = r.text(i)?;
    parse(&text).ok_or_else(|| bad(what, &text))
}

/// The database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(all(feature = "sqlite", feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

/// Everything that differs between the three databases.
impl Dialect {
    /// `INSERT … ON CONFLICT (key) DO UPDATE SET …` (SQLite, PostgreSQL) or
    /// `… ON DUPLICATE KEY UPDATE …` (MySQL) of every column but the key
    /// and `created_at`.
    fn upsert(self, table: &str, key: &[&str], cols: &[&str]) -> String {
        let marks = vec!["?"; cols.len()].join(", ");
        let updated = cols.iter().filter(|c| !key.contains(c) && **c != "created_at");
        match self {
            Dialect::Sqlite | Dialect::Postgres => format!(
                "INSERT INTO {table} ({}) VALUES ({marks}) ON CONFLICT ({}) DO UPDATE SET {}",
                cols.join(", "),
                key.join(", "),
                updated.map(|c| format!("{c} = excluded.{c}")).collect::<Vec<_>>().join(", ")
            ),
            Dialect::Mysql => format!(
                "INSERT INTO {table} ({}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {}",
                cols.join(", "),
                updated.map(|c| format!("{c} = VALUES({c})")).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The column `key` (a reserved word in MySQL).
    fn key_col(self) -> &'static str {
        match self {
            Dialect::Mysql => "`key`",
            Dialect::Sqlite | Dialect::Postgres => "key",
        }
    }

    /// "Flagged for review", as each database's index on it is written:
    /// SQLite uses its partial index `appointments_review` only for `= 1`
    /// (with `= TRUE` it scans the table), PostgreSQL's column is boolean.
    fn in_review(self) -> &'static str {
        match self {
            Dialect::Sqlite => "requires_manual_review = 1",
            Dialect::Postgres | Dialect::Mysql => "requires_manual_review = TRUE",
        }
    }

    /// After an insert with an explicit id, what moves the id sequence on.
    fn after_explicit_id(self, table: &str) -> Option<String> {
        match self {
            Dialect::Postgres => {
                Some(format!("SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"))
            }
            Dialect::Sqlite | Dialect::Mysql => None,
        }
    }
}

/// One connection inside a transaction its store opened.
pub(crate) trait Conn {
    fn dialect(&self) -> Dialect;
    /// Runs a query and hands each row to `row`.
    fn each(&mut self, sql: &str, params: &[Val<'_>], row: &mut dyn FnMut(&dyn SqlRow) -> Result<()>) -> Result<()>;
    /// Rows changed.
    fn execute(&mut self, sql: &str, params: &[Val<'_>]) -> Result<u64>;
    /// Runs an INSERT and returns the new row's `id`.
    fn insert(&mut self, sql: &str, params: &[Val<'_>]) -> Result<i64>;
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Takes these locks until the transaction ends, by their keys in
    /// [`lock_order`](super::lock::lock_order). SQLite: nothing to do (its
    /// one writer serialises every write), so nothing is hashed either.
    fn take_locks(&mut self, _locks: &[Lock]) -> Result<()> {
        Ok(())
    }
    /// Ends the transaction: COMMIT, or ROLLBACK (and lets go of what the
    /// connection holds beyond it). Used by the server stores.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    fn finish(&mut self, commit: bool) -> Result<()> {
        self.batch(if commit { "COMMIT" } else { "ROLLBACK" })
    }
    /// The server refused a statement of this transaction as transient
    /// (deadlock, serialization failure, lock wait): `storage_busy`, once.
    #[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
    fn take_transient(&mut self) -> Option<Error> {
        None
    }
}

macro_rules! customer_cols {
    () => {
        "id, company_id, name, email, phone, source, anonymity_reason, created_at, updated_at"
    };
}
macro_rules! appointment_cols {
    () => {
        "id, customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at, status, \
         calcom_sync_status, sync_origin, metadata, calcom_v2_booking_id, calcom_v2_booking_uid, sync_error_code, \
         sync_error_message, sync_attempt_count, sync_verified_at, requires_manual_review, manual_review_flagged_at, \
         review_reason, idempotency_key, created_at, updated_at, review_resolved_at, review_resolved_by, review_note, \
         calcom_v2_seat_uid, calcom_webhook_at, rescheduled_count, previous_starts_at, booking_latency_us"
    };
}
macro_rules! job_cols {
    () => {
        "id, appointment_id, company_id, kind, state, attempt, max_attempts, run_at, locked_until, \
         locked_by, lease_token, last_error, created_at, updated_at"
    };
}
macro_rules! company_cols {
    () => {
        "id, name, calcom_api_key, calcom_api_base, calcom_email_fallback, calcom_webhook_secret, \
         min_cancel_notice_hours, min_reschedule_notice_hours, max_reschedules"
    };
}
macro_rules! change_cols {
    () => {
        "appointment_id, company_id, kind, changed_by, from_starts_at, to_starts_at, call_id, operator, reason, \
         created_at"
    };
}
macro_rules! callback_cols {
    () => {
        "id, company_id, branch_id, call_id, customer_name, phone, reason, status, created_at, done_at, done_by"
    };
}
macro_rules! branch_cols {
    () => {
        "id, company_id, name, timezone, country, phone_number"
    };
}
macro_rules! service_cols {
    () => {
        "id, company_id, name, calcom_event_type_id, duration_minutes, capacity, min_cancel_notice_hours, \
         min_reschedule_notice_hours, max_reschedules"
    };
}

/// Columns in `customer_cols!` order.
fn customer_row(r: &dyn SqlRow) -> Result<Customer> {
    Ok(Customer {
        id: CustomerId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        name: r.text(2)?,
        email: r.opt_text(3)?,
        phone: r.text(4)?,
        source: parsed(r, 5, "customer source", CustomerSource::parse)?,
        anonymity_reason: match r.opt_text(6)? {
            Some(text) => Some(AnonymityReason::parse(&text).ok_or_else(|| bad("anonymity reason", &text))?),
            None => None,
        },
        created_at: r.time(7)?,
        updated_at: r.time(8)?,
    })
}

/// Columns in `appointment_cols!` order.
fn appointment_row(r: &dyn SqlRow) -> Result<Appointment> {
    let metadata = match serde_json::from_str(&r.text(11)?)? {
        serde_json::Value::Object(map) => map,
        _ => return Err(bad("metadata", "not an object")),
    };
    Ok(Appointment {
        id: AppointmentId(r.int(0)?),
        customer_id: CustomerId(r.int(1)?),
        company_id: CompanyId(r.int(2)?),
        branch_id: BranchId(r.int(3)?),
        service_id: ServiceId(r.int(4)?),
        call_id: r.opt_int(5)?.map(CallDbId),
        starts_at: r.time(6)?,
        ends_at: r.time(7)?,
        status: parsed(r, 8, "status", AppointmentStatus::parse)?,
        calcom_sync_status: parsed(r, 9, "sync status", SyncStatus::parse)?,
        sync_origin: parsed(r, 10, "sync origin", SyncOrigin::parse)?,
        metadata,
        calcom_v2_booking_id: r.opt_int(12)?,
        calcom_v2_booking_uid: r.opt_text(13)?,
        sync_error_code: r.opt_text(14)?,
        sync_error_message: r.opt_text(15)?,
        sync_attempt_count: r.int(16)?,
        sync_verified_at: r.opt_time(17)?,
        requires_manual_review: r.flag(18)?,
        manual_review_flagged_at: r.opt_time(19)?,
        review_reason: r.opt_text(20)?,
        idempotency_key: r.text(21)?,
        created_at: r.time(22)?,
        updated_at: r.time(23)?,
        review_resolved_at: r.opt_time(24)?,
        review_resolved_by: r.opt_text(25)?,
        review_note: r.opt_text(26)?,
        calcom_v2_seat_uid: r.opt_text(27)?,
        calcom_webhook_at: r.opt_time(28)?,
        rescheduled_count: r.int(29)?,
        previous_starts_at: r.opt_time(30)?,
        booking_latency_us: r.opt_int(31)?,
    })
}

/// Columns in `change_cols!` order.
fn change_row(r: &dyn SqlRow) -> Result<AppointmentChange> {
    let by = r.text(3)?;
    Ok(AppointmentChange {
        appointment_id: AppointmentId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        kind: parsed(r, 2, "change kind", ChangeKind::parse)?,
        from_starts_at: r.time(4)?,
        to_starts_at: r.opt_time(5)?,
        by: match by.as_str() {
            "call" => ChangedBy::Call { call_id: CallDbId(r.int(6)?) },
            "operator" => ChangedBy::Operator { name: r.text(7)? },
            "calcom" => ChangedBy::Calcom,
            _ => return Err(bad("changed_by", &by)),
        },
        reason: r.opt_text(8)?,
        at: r.time(9)?,
    })
}

/// Columns in `callback_cols!` order.
fn callback_row(r: &dyn SqlRow) -> Result<Callback> {
    Ok(Callback {
        id: CallbackId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        branch_id: r.opt_int(2)?.map(BranchId),
        call_id: r.opt_int(3)?.map(CallDbId),
        customer_name: r.text(4)?,
        phone: r.opt_text(5)?,
        reason: r.opt_text(6)?,
        status: parsed(r, 7, "callback status", CallbackStatus::parse)?,
        created_at: r.time(8)?,
        done_at: r.opt_time(9)?,
        done_by: r.opt_text(10)?,
    })
}

/// Columns in `job_cols!` order.
fn job_row(r: &dyn SqlRow) -> Result<Job> {
    Ok(Job {
        id: JobId(r.int(0)?),
        appointment_id: AppointmentId(r.int(1)?),
        company_id: CompanyId(r.int(2)?),
        kind: parsed(r, 3, "job kind", JobKind::parse)?,
        state: parsed(r, 4, "job state", JobState::parse)?,
        attempt: r.small(5, "attempt")?,
        max_attempts: r.small(6, "max_attempts")?,
        run_at: r.time(7)?,
        locked_until: r.opt_time(8)?,
        locked_by: r.opt_text(9)?,
        lease_token: r.int(10)?,
        last_error: r.opt_text(11)?,
        created_at: r.time(12)?,
        updated_at: r.time(13)?,
    })
}

fn branch_row(r: &dyn SqlRow) -> Result<Branch> {
    Ok(Branch {
        id: BranchId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        name: r.text(2)?,
        timezone: r.text(3)?,
        country: r.opt_text(4)?,
        phone_number: r.opt_text(5)?,
    })
}

fn service_row(r: &dyn SqlRow) -> Result<Service> {
    Ok(Service {
        id: ServiceId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        name: r.text(2)?,
        calcom_event_type_id: r.opt_int(3)?,
        duration_minutes: r.int(4)?,
        capacity: r.opt_int(5)?,
        policy: policy_at(r, 6)?,
    })
}

/// The three policy columns from `i` on.
fn policy_at(r: &dyn SqlRow, i: usize) -> Result<ChangePolicy> {
    Ok(ChangePolicy {
        min_cancel_notice_hours: r.opt_int(i)?,
        min_reschedule_notice_hours: r.opt_int(i + 1)?,
        max_reschedules: r.opt_int(i + 2)?,
    })
}

/// Columns in `company_cols!` order.
fn company_row(r: &dyn SqlRow) -> Result<Company> {
    Ok(Company {
        id: CompanyId(r.int(0)?),
        name: r.text(1)?,
        calcom_api_key: r.opt_text(2)?.map(Secret::new),
        calcom_api_base: r.opt_text(3)?,
        calcom_email_fallback: r.opt_text(4)?,
        calcom_webhook_secret: r.opt_text(5)?.map(Secret::new),
        policy: policy_at(r, 6)?,
    })
}

fn breaker_row(r: &dyn SqlRow) -> Result<Breaker> {
    Ok(Breaker {
        key: r.text(0)?,
        state: parsed(r, 1, "breaker state", BreakerState::parse)?,
        consecutive_failures: r.small(2, "failures")?,
        open_until: r.opt_time(3)?,
        cooldown_secs: r.int(4)?,
        updated_at: r.time(5)?,
    })
}

fn call_row(r: &dyn SqlRow) -> Result<Call> {
    Ok(Call {
        id: CallDbId(r.int(0)?),
        retell_call_id: CallId(r.text(1)?),
        company_id: r.opt_int(2)?.map(CompanyId),
        branch_id: r.opt_int(3)?.map(BranchId),
        from_number: r.opt_text(4)?,
        to_number: r.opt_text(5)?,
        direction: r.opt_text(6)?,
    })
}

/// The operations of [`Tx`] as SQL, on any [`Conn`].
pub(crate) struct SqlTx<'c, C: Conn + ?Sized> {
    conn: &'c mut C,
}

impl<'c, C: Conn + ?Sized> SqlTx<'c, C> {
    pub(crate) fn new(conn: &'c mut C) -> Self {
        SqlTx { conn }
    }

    fn all<T>(&mut self, sql: &str, params: &[Val<'_>], map: impl Fn(&dyn SqlRow) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.conn.each(sql, params, &mut |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    fn one<T>(&mut self, sql: &str, params: &[Val<'_>], map: impl Fn(&dyn SqlRow) -> Result<T>) -> Result<Option<T>> {
        let mut out = None;
        self.conn.each(sql, params, &mut |row| {
            if out.is_none() {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn run(&mut self, sql: &str, params: &[Val<'_>]) -> Result<()> {
        self.conn.execute(sql, params).map(|_| ())
    }

    fn upsert(&mut self, table: &str, key: &[&str], cols: &[&str], params: &[Val<'_>]) -> Result<()> {
        let sql = self.conn.dialect().upsert(table, key, cols);
        self.run(&sql, params)
    }

    /// `(text, count)` pairs of a `GROUP BY`.
    fn tally(&mut self, sql: &str) -> Result<Vec<(String, u64)>> {
        self.all(sql, &[], |r| Ok((r.text(0)?, u64::try_from(r.int(1)?).unwrap_or(0))))
    }
}

fn count_of(tally: &[(String, u64)], name: &str) -> u64 {
    tally.iter().find(|(s, _)| s == name).map_or(0, |(_, n)| *n)
}

impl<C: Conn + ?Sized> Tx for SqlTx<'_, C> {
    fn lock(&mut self, locks: &[Lock]) -> Result<()> {
        self.conn.take_locks(locks)
    }

    fn company(&mut self, id: CompanyId) -> Result<Option<Company>> {
        self.one(concat!("SELECT ", company_cols!(), " FROM companies WHERE id = ?"), &[id.0.into()], company_row)
    }
    fn companies(&mut self) -> Result<Vec<Company>> {
        self.all(concat!("SELECT ", company_cols!(), " FROM companies ORDER BY id"), &[], company_row)
    }
    fn branch(&mut self, id: BranchId) -> Result<Option<Branch>> {
        self.one(concat!("SELECT ", branch_cols!(), " FROM branches WHERE id = ?"), &[id.0.into()], branch_row)
    }
    fn branch_by_phone(&mut self, phone: &str) -> Result<Option<Branch>> {
        let sql = concat!("SELECT ", branch_cols!(), " FROM branches WHERE phone_number = ? ORDER BY id LIMIT 1");
        self.one(sql, &[phone.into()], branch_row)
    }
    fn service(&mut self, id: ServiceId) -> Result<Option<Service>> {
        self.one(concat!("SELECT ", service_cols!(), " FROM services WHERE id = ?"), &[id.0.into()], service_row)
    }
    fn services_of(&mut self, company: CompanyId) -> Result<Vec<Service>> {
        let sql = concat!("SELECT ", service_cols!(), " FROM services WHERE company_id = ? ORDER BY id");
        self.all(sql, &[company.0.into()], service_row)
    }
    fn branches_of(&mut self, company: CompanyId) -> Result<Vec<Branch>> {
        let sql = concat!("SELECT ", branch_cols!(), " FROM branches WHERE company_id = ? ORDER BY id");
        self.all(sql, &[company.0.into()], branch_row)
    }
    fn upsert_company(&mut self, c: &Company, now: DateTime<Utc>) -> Result<()> {
        let cols = [
            "id",
            "name",
            "calcom_api_key",
            "calcom_api_base",
            "calcom_email_fallback",
            "calcom_webhook_secret",
            "min_cancel_notice_hours",
            "min_reschedule_notice_hours",
            "max_reschedules",
            "created_at",
            "updated_at",
        ];
        let p = c.policy;
        let params = [
            c.id.0.into(),
            (&c.name).into(),
            c.calcom_api_key.as_ref().map(Secret::expose).into(),
            c.calcom_api_base.as_ref().into(),
            c.calcom_email_fallback.as_ref().into(),
            c.calcom_webhook_secret.as_ref().map(Secret::expose).into(),
            p.min_cancel_notice_hours.into(),
            p.min_reschedule_notice_hours.into(),
            p.max_reschedules.into(),
            at(now),
            at(now),
        ];
        self.upsert("companies", &["id"], &cols, &params)
    }
    fn upsert_branch(&mut self, b: &Branch, now: DateTime<Utc>) -> Result<()> {
        let cols = ["id", "company_id", "name", "timezone", "country", "phone_number", "created_at", "updated_at"];
        let params = [
            b.id.0.into(),
            b.company_id.0.into(),
            (&b.name).into(),
            (&b.timezone).into(),
            b.country.as_ref().into(),
            b.phone_number.as_ref().into(),
            at(now),
            at(now),
        ];
        self.upsert("branches", &["id"], &cols, &params)
    }
    fn upsert_service(&mut self, s: &Service, now: DateTime<Utc>) -> Result<()> {
        let cols = [
            "id",
            "company_id",
            "name",
            "calcom_event_type_id",
            "duration_minutes",
            "capacity",
            "min_cancel_notice_hours",
            "min_reschedule_notice_hours",
            "max_reschedules",
            "created_at",
            "updated_at",
        ];
        let p = s.policy;
        let params = [
            s.id.0.into(),
            s.company_id.0.into(),
            (&s.name).into(),
            s.calcom_event_type_id.into(),
            s.duration_minutes.into(),
            s.capacity.into(),
            p.min_cancel_notice_hours.into(),
            p.min_reschedule_notice_hours.into(),
            p.max_reschedules.into(),
            at(now),
            at(now),
        ];
        self.upsert("services", &["id"], &cols, &params)
    }

    fn call(&mut self, id: &CallId) -> Result<Option<Call>> {
        let sql = "SELECT id, retell_call_id, company_id, branch_id, from_number, to_number, direction
                   FROM calls WHERE retell_call_id = ?";
        self.one(sql, &[(&id.0).into()], call_row)
    }
    fn call_with_offers(&mut self, id: &CallId) -> Result<Option<(Call, Vec<RememberedOffer>)>> {
        let sql = "SELECT c.id, c.retell_call_id, c.company_id, c.branch_id, c.from_number, c.to_number, c.direction,
                   a.service_id, a.day, a.slots
                   FROM calls c LEFT JOIN call_availability a ON a.call_id = c.id WHERE c.retell_call_id = ?";
        let mut found: Option<(Call, Vec<RememberedOffer>)> = None;
        self.conn.each(sql, &[(&id.0).into()], &mut |r| {
            let (_, offers) = match &mut found {
                Some(found) => found,
                None => found.insert((call_row(r)?, Vec::new())),
            };
            if let (Some(service), Some(day), Some(slots)) = (r.opt_int(7)?, r.opt_text(8)?, r.opt_text(9)?) {
                let day = day.parse().map_err(|_| Error::Storage(format!("bad day in database: {day:?}")))?;
                offers.push(RememberedOffer { service_id: ServiceId(service), day, offered: slots_from_db(&slots)? });
            }
            Ok(())
        })?;
        Ok(found)
    }
    fn insert_call(&mut self, c: &NewCall, now: DateTime<Utc>) -> Result<CallDbId> {
        let params = [
            c.id.map(|i| i.0).into(),
            (&c.retell_call_id.0).into(),
            c.company_id.map(|i| i.0).into(),
            c.branch_id.map(|i| i.0).into(),
            c.from_number.as_ref().into(),
            c.to_number.as_ref().into(),
            c.direction.as_ref().into(),
            at(now),
            at(now),
        ];
        match c.id {
            // No id: the database picks one (PostgreSQL's serial refuses an explicit NULL).
            None => {
                let sql = "INSERT INTO calls (retell_call_id, company_id, branch_id, from_number, to_number,
                           direction, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
                Ok(CallDbId(self.conn.insert(sql, &params[1..])?))
            }
            Some(id) => {
                let sql = "INSERT INTO calls (id, retell_call_id, company_id, branch_id, from_number, to_number,
                           direction, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
                self.run(sql, &params)?;
                if let Some(sql) = self.conn.dialect().after_explicit_id("calls") {
                    self.one(&sql, &[], |_| Ok(()))?;
                }
                Ok(id)
            }
        }
    }

    fn customer(&mut self, company: CompanyId, id: CustomerId) -> Result<Option<Customer>> {
        let sql = concat!("SELECT ", customer_cols!(), " FROM customers WHERE company_id = ? AND id = ?");
        self.one(sql, &[company.0.into(), id.0.into()], customer_row)
    }
    fn customer_by_phone(&mut self, company: CompanyId, phone: &str) -> Result<Option<Customer>> {
        let sql = concat!(
            "SELECT ",
            customer_cols!(),
            " FROM customers WHERE company_id = ? AND phone = ? ORDER BY id LIMIT 1"
        );
        self.one(sql, &[company.0.into(), phone.into()], customer_row)
    }
    fn customer_id_by_email(&mut self, company: CompanyId, email: &str) -> Result<Option<CustomerId>> {
        let sql = "SELECT id FROM customers WHERE company_id = ? AND email = ?";
        self.one(sql, &[company.0.into(), email.into()], |r| Ok(CustomerId(r.int(0)?)))
    }
    fn insert_customer(&mut self, c: &NewCustomer) -> Result<CustomerId> {
        let params = [
            c.company_id.0.into(),
            (&c.name).into(),
            c.email.as_ref().into(),
            (&c.phone).into(),
            c.source.as_str().into(),
            c.anonymity_reason.map(AnonymityReason::as_str).into(),
            at(c.now),
            at(c.now),
        ];
        let sql = "INSERT INTO customers (company_id, name, email, phone, source, anonymity_reason, created_at,
                   updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
        Ok(CustomerId(self.conn.insert(sql, &params)?))
    }
    fn set_customer_email(
        &mut self,
        company: CompanyId,
        id: CustomerId,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE customers SET email = ?, updated_at = ? WHERE company_id = ? AND id = ?";
        self.run(sql, &[email.into(), at(now), company.0.into(), id.0.into()])
    }

    fn appointment(&mut self, company: CompanyId, id: AppointmentId) -> Result<Option<Appointment>> {
        let sql = concat!("SELECT ", appointment_cols!(), " FROM appointments WHERE company_id = ? AND id = ?");
        self.one(sql, &[company.0.into(), id.0.into()], appointment_row)
    }
    fn appointment_by_key(&mut self, company: CompanyId, key: &str) -> Result<Option<Appointment>> {
        let sql =
            concat!("SELECT ", appointment_cols!(), " FROM appointments WHERE company_id = ? AND idempotency_key = ?");
        self.one(sql, &[company.0.into(), key.into()], appointment_row)
    }
    fn insert_appointment(&mut self, a: &NewAppointment) -> Result<AppointmentId> {
        let now = to_db(a.now);
        let params = [
            a.customer_id.0.into(),
            a.company_id.0.into(),
            a.branch_id.0.into(),
            a.service_id.0.into(),
            a.call_id.map(|c| c.0).into(),
            at(a.starts_at),
            at(a.ends_at),
            a.sync_origin.as_str().into(),
            serde_json::to_string(&a.metadata)?.into(),
            a.requires_manual_review.into(),
            a.requires_manual_review.then_some(now.as_str()).into(),
            a.review_reason.as_ref().into(),
            (&a.idempotency_key).into(),
            a.booking_latency_us.into(),
            now.as_str().into(),
            now.as_str().into(),
        ];
        let sql = "INSERT INTO appointments (customer_id, company_id, branch_id, service_id, call_id, starts_at,
                   ends_at, status, calcom_sync_status, sync_origin, metadata, sync_attempt_count,
                   requires_manual_review, manual_review_flagged_at, review_reason, idempotency_key,
                   booking_latency_us, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 'confirmed', 'pending', ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)";
        Ok(AppointmentId(self.conn.insert(sql, &params)?))
    }
    fn synced_future_appointments(
        &mut self,
        company: CompanyId,
        customer: CustomerId,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppointmentId>> {
        let sql = "SELECT id FROM appointments WHERE company_id = ? AND customer_id = ? AND starts_at > ?
                   AND status = 'confirmed' AND calcom_v2_booking_uid IS NOT NULL ORDER BY id";
        self.all(sql, &[company.0.into(), customer.0.into(), at(now)], |r| Ok(AppointmentId(r.int(0)?)))
    }
    fn appointments_between(
        &mut self,
        company: CompanyId,
        service: ServiceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>> {
        let sql = concat!(
            "SELECT ",
            appointment_cols!(),
            " FROM appointments WHERE company_id = ? AND service_id = ? AND starts_at >= ? AND starts_at < ?
              AND status = 'confirmed' ORDER BY starts_at, id"
        );
        self.all(sql, &[company.0.into(), service.0.into(), at(from), at(to)], appointment_row)
    }
    fn remember_slots(
        &mut self,
        call: CallDbId,
        service: ServiceId,
        day: NaiveDate,
        offered: &Offered,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let cols = ["call_id", "service_id", "day", "slots", "checked_at"];
        let params = [call.0.into(), service.0.into(), day.to_string().into(), slots_to_db(offered)?.into(), at(now)];
        self.upsert("call_availability", &["call_id", "service_id", "day"], &cols, &params)
    }
    fn remembered_slots(&mut self, call: CallDbId, service: ServiceId, day: NaiveDate) -> Result<Option<Offered>> {
        let sql = "SELECT slots FROM call_availability WHERE call_id = ? AND service_id = ? AND day = ?";
        let day = day.to_string();
        match self.one(sql, &[call.0.into(), service.0.into(), day.as_str().into()], |r| r.text(0))? {
            Some(text) => slots_from_db(&text).map(Some),
            None => Ok(None),
        }
    }
    fn flag_for_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE appointments SET requires_manual_review = TRUE, manual_review_flagged_at = ?,
                   review_reason = ?, updated_at = ? WHERE company_id = ? AND id = ?";
        self.run(sql, &[at(now), reason.into(), at(now), company.0.into(), id.0.into()])
    }
    fn appointment_company(&mut self, id: AppointmentId) -> Result<Option<CompanyId>> {
        self.one("SELECT company_id FROM appointments WHERE id = ?", &[id.0.into()], |r| Ok(CompanyId(r.int(0)?)))
    }
    fn appointments_by_booking_uid(&mut self, company: CompanyId, uid: &str) -> Result<Vec<Appointment>> {
        let sql = concat!(
            "SELECT ",
            appointment_cols!(),
            " FROM appointments WHERE company_id = ? AND calcom_v2_booking_uid = ? ORDER BY id"
        );
        self.all(sql, &[company.0.into(), uid.into()], appointment_row)
    }
    fn apply_calcom_change(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        change: &CalcomChange,
        delivered_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        match change {
            CalcomChange::Cancelled => {
                let sql = "UPDATE appointments SET status = 'cancelled', sync_origin = 'calcom', calcom_webhook_at = ?,
                           updated_at = ? WHERE company_id = ? AND id = ?";
                self.run(sql, &[at(delivered_at), at(now), company.0.into(), id.0.into()])?;
                let sql = "UPDATE sync_jobs SET state = 'cancelled', locked_until = NULL, locked_by = NULL,
                           updated_at = ? WHERE appointment_id = ? AND company_id = ?
                           AND state IN ('available', 'running', 'retryable')";
                self.run(sql, &[at(now), id.0.into(), company.0.into()])
            }
            CalcomChange::Rescheduled { booking_id, uid, starts_at, ends_at } => {
                // previous_starts_at first: MySQL assigns left to right with the new values.
                let sql = "UPDATE appointments SET previous_starts_at = starts_at, starts_at = ?, ends_at = ?,
                           calcom_v2_booking_uid = ?, calcom_v2_booking_id = COALESCE(?, calcom_v2_booking_id),
                           sync_origin = 'calcom', calcom_webhook_at = ?, updated_at = ?
                           WHERE company_id = ? AND id = ?";
                let params = [
                    at(*starts_at),
                    at(*ends_at),
                    uid.into(),
                    (*booking_id).into(),
                    at(delivered_at),
                    at(now),
                    company.0.into(),
                    id.0.into(),
                ];
                self.run(sql, &params)
            }
        }
    }
    fn insert_change(&mut self, c: &AppointmentChange) -> Result<()> {
        let (changed_by, call_id, operator) = match &c.by {
            ChangedBy::Call { call_id } => ("call", Some(call_id.0), None),
            ChangedBy::Operator { name } => ("operator", None, Some(name.as_str())),
            ChangedBy::Calcom => ("calcom", None, None),
        };
        let sql =
            concat!("INSERT INTO appointment_changes (", change_cols!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        let params = [
            c.appointment_id.0.into(),
            c.company_id.0.into(),
            c.kind.as_str().into(),
            changed_by.into(),
            at(c.from_starts_at),
            c.to_starts_at.map(at).unwrap_or(Val::Null),
            call_id.into(),
            operator.into(),
            c.reason.as_deref().into(),
            at(c.at),
        ];
        self.run(sql, &params)
    }
    fn changes_of(&mut self, company: CompanyId, id: AppointmentId) -> Result<Vec<AppointmentChange>> {
        let sql = concat!(
            "SELECT ",
            change_cols!(),
            " FROM appointment_changes WHERE company_id = ? AND appointment_id = ? ORDER BY id"
        );
        self.all(sql, &[company.0.into(), id.0.into()], change_row)
    }

    fn changes_by_call(&mut self, company: CompanyId, call: CallDbId) -> Result<Vec<AppointmentChange>> {
        let sql = concat!(
            "SELECT ",
            change_cols!(),
            " FROM appointment_changes WHERE company_id = ? AND call_id = ? ORDER BY id"
        );
        self.all(sql, &[company.0.into(), call.0.into()], change_row)
    }
    fn caller_appointments(
        &mut self,
        company: CompanyId,
        customer: Option<CustomerId>,
        call: CallDbId,
        from: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Appointment>> {
        let sql = concat!(
            "SELECT ",
            appointment_cols!(),
            " FROM appointments WHERE company_id = ? AND (customer_id = ? OR call_id = ?) AND starts_at >= ?
              ORDER BY starts_at, id LIMIT ?"
        );
        // No customer: -1 matches none (ids start at 1).
        let customer = customer.map_or(-1, |c| c.0);
        self.all(
            sql,
            &[company.0.into(), customer.into(), call.0.into(), at(from), i64::from(limit).into()],
            appointment_row,
        )
    }
    fn cancel_appointment(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE appointments SET status = 'cancelled', updated_at = ? WHERE company_id = ? AND id = ?";
        self.run(sql, &[at(now), company.0.into(), id.0.into()])
    }
    fn move_appointment(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        pending: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // previous_starts_at first: MySQL assigns left to right with the new values.
        let sql = if pending {
            "UPDATE appointments SET previous_starts_at = starts_at, starts_at = ?, ends_at = ?,
             rescheduled_count = rescheduled_count + 1, calcom_sync_status = 'pending', updated_at = ?
             WHERE company_id = ? AND id = ?"
        } else {
            "UPDATE appointments SET previous_starts_at = starts_at, starts_at = ?, ends_at = ?,
             rescheduled_count = rescheduled_count + 1, updated_at = ? WHERE company_id = ? AND id = ?"
        };
        self.run(sql, &[at(starts_at), at(ends_at), at(now), company.0.into(), id.0.into()])
    }
    fn cancel_unsent_jobs(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        kind: JobKind,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let sql = "UPDATE sync_jobs SET state = 'cancelled', updated_at = ?
                   WHERE company_id = ? AND appointment_id = ? AND kind = ? AND state = 'available' AND attempt = 0";
        self.conn.execute(sql, &[at(now), company.0.into(), id.0.into(), kind.as_str().into()])
    }

    fn appointments_starting(
        &mut self,
        company: CompanyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>> {
        let sql = concat!(
            "SELECT ",
            appointment_cols!(),
            " FROM appointments WHERE company_id = ? AND starts_at >= ? AND starts_at < ? ORDER BY starts_at, id"
        );
        self.all(sql, &[company.0.into(), at(from), at(to)], appointment_row)
    }
    fn pull_place(&mut self, company: CompanyId, event_type: i64) -> Result<Option<PullPlace>> {
        let sql = "SELECT after_start, skip_count FROM calcom_pulls WHERE company_id = ? AND event_type_id = ?";
        self.one(sql, &[company.0.into(), event_type.into()], |r| {
            Ok(PullPlace { after_start: r.time(0)?, skip: r.small(1, "skip_count")? })
        })
    }
    fn put_pull_place(
        &mut self,
        company: CompanyId,
        event_type: i64,
        place: Option<PullPlace>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        match place {
            None => self.run(
                "DELETE FROM calcom_pulls WHERE company_id = ? AND event_type_id = ?",
                &[company.0.into(), event_type.into()],
            ),
            Some(p) => {
                let cols = ["company_id", "event_type_id", "after_start", "skip_count", "updated_at"];
                let params = [company.0.into(), event_type.into(), at(p.after_start), p.skip.into(), at(now)];
                self.upsert("calcom_pulls", &["company_id", "event_type_id"], &cols, &params)
            }
        }
    }
    fn put_drift(&mut self, d: &DriftCounts) -> Result<()> {
        let cols = [
            "company_id",
            "checked_at",
            "missing_locally",
            "missing_in_calcom",
            "different_start",
            "cancelled_one_side",
        ];
        let n = |v: u64| Val::from(i64::try_from(v).unwrap_or(i64::MAX));
        let params = [
            d.company_id.0.into(),
            at(d.checked_at),
            n(d.missing_locally),
            n(d.missing_in_calcom),
            n(d.different_start),
            n(d.cancelled_one_side),
        ];
        self.upsert("calcom_drift", &["company_id"], &cols, &params)
    }
    fn drift(&mut self) -> Result<Vec<DriftCounts>> {
        let sql =
            "SELECT company_id, checked_at, missing_locally, missing_in_calcom, different_start, cancelled_one_side
                   FROM calcom_drift ORDER BY company_id";
        let n = |r: &dyn SqlRow, i| Ok::<u64, Error>(u64::try_from(r.int(i)?).unwrap_or(0));
        self.all(sql, &[], |r| {
            Ok(DriftCounts {
                company_id: CompanyId(r.int(0)?),
                checked_at: r.time(1)?,
                missing_locally: n(r, 2)?,
                missing_in_calcom: n(r, 3)?,
                different_start: n(r, 4)?,
                cancelled_one_side: n(r, 5)?,
            })
        })
    }

    fn insert_callback(&mut self, c: &NewCallback) -> Result<CallbackId> {
        let sql =
            "INSERT INTO callbacks (company_id, branch_id, call_id, customer_name, phone, reason, status, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, 'open', ?)";
        let params = [
            c.company_id.0.into(),
            c.branch_id.map(|b| b.0).into(),
            c.call_id.map(|b| b.0).into(),
            c.customer_name.as_str().into(),
            c.phone.as_deref().into(),
            c.reason.as_deref().into(),
            at(c.now),
        ];
        Ok(CallbackId(self.conn.insert(sql, &params)?))
    }
    fn callback(&mut self, id: CallbackId) -> Result<Option<Callback>> {
        self.one(concat!("SELECT ", callback_cols!(), " FROM callbacks WHERE id = ?"), &[id.0.into()], callback_row)
    }
    fn callbacks(&mut self, status: Option<CallbackStatus>, limit: u32) -> Result<Vec<Callback>> {
        let limit: Val<'_> = i64::from(limit).into();
        match status {
            Some(status) => self.all(
                concat!("SELECT ", callback_cols!(), " FROM callbacks WHERE status = ? ORDER BY id LIMIT ?"),
                &[status.as_str().into(), limit],
                callback_row,
            ),
            None => self.all(
                concat!("SELECT ", callback_cols!(), " FROM callbacks ORDER BY id LIMIT ?"),
                &[limit],
                callback_row,
            ),
        }
    }
    fn finish_callback(&mut self, id: CallbackId, by: &str, now: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE callbacks SET status = 'done', done_at = ?, done_by = ? WHERE id = ? AND status = 'open'";
        Ok(self.conn.execute(sql, &[at(now), by.into(), id.0.into()])? == 1)
    }

    fn insert_job(&mut self, j: &NewJob, now: DateTime<Utc>) -> Result<JobId> {
        let sql = "INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt, max_attempts, run_at,
                   lease_token, created_at, updated_at) VALUES (?, ?, ?, 'available', 0, ?, ?, 0, ?, ?)";
        let params = [
            j.appointment_id.0.into(),
            j.company_id.0.into(),
            j.kind.as_str().into(),
            j.max_attempts.into(),
            at(j.run_at),
            at(now),
            at(now),
        ];
        if self.conn.dialect() == Dialect::Postgres {
            // Wakes listening workers when this transaction commits (none
            // hear it if it rolls back), in the insert's own round trip.
            let notifying = "WITH job AS (INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt,
                             max_attempts, run_at, lease_token, created_at, updated_at)
                             VALUES (?, ?, ?, 'available', 0, ?, ?, 0, ?, ?) RETURNING id)
                             SELECT id FROM job, pg_notify('callbook_jobs', '') AS notified";
            let id = self.one(notifying, &params, |r| r.int(0))?;
            return id.map(JobId).ok_or_else(|| Error::Storage("the job insert returned no id".into()));
        }
        Ok(JobId(self.conn.insert(sql, &params)?))
    }
    fn job(&mut self, id: JobId) -> Result<Option<Job>> {
        self.one(concat!("SELECT ", job_cols!(), " FROM sync_jobs WHERE id = ?"), &[id.0.into()], job_row)
    }
    fn jobs_of(&mut self, appointment: AppointmentId) -> Result<Vec<Job>> {
        let sql = concat!("SELECT ", job_cols!(), " FROM sync_jobs WHERE appointment_id = ? ORDER BY id");
        self.all(sql, &[appointment.0.into()], job_row)
    }
    /// One statement on SQLite (its single writer makes it atomic); on the
    /// servers a `FOR UPDATE SKIP LOCKED` select, so rows another worker is
    /// claiming are skipped rather than waited for, then one update.
    fn claim_jobs(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        let claimed = "state = 'running', attempt = attempt + 1, lease_token = lease_token + 1, locked_until = ?,
                       locked_by = ?, updated_at = ?";
        let ids: Vec<i64> = match self.conn.dialect() {
            Dialect::Sqlite => {
                let sql = concat!(
                    "UPDATE sync_jobs SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1,
                         locked_until = ?, locked_by = ?, updated_at = ?
                     WHERE id IN (
                         SELECT id FROM sync_jobs WHERE attempt < max_attempts AND (
                             (state IN ('available', 'retryable') AND run_at <= ?)
                             OR (state = 'running' AND locked_until <= ?))
                         ORDER BY run_at, id LIMIT ?)
                     RETURNING ",
                    job_cols!()
                );
                let params = [at(lease_until), worker.into(), at(now), at(now), at(now), limit.into()];
                let mut jobs = self.all(sql, &params, job_row)?;
                // RETURNING has no order of its own.
                jobs.sort_by_key(|j| (j.run_at, j.id));
                return Ok(jobs);
            }
            // PostgreSQL locks only the rows the LIMIT lets through.
            Dialect::Postgres => self.all(
                "SELECT id FROM sync_jobs WHERE attempt < max_attempts AND (
                     (state IN ('available', 'retryable') AND run_at <= ?)
                     OR (state = 'running' AND locked_until <= ?))
                 ORDER BY run_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
                &[at(now), at(now), limit.into()],
                |r| r.int(0),
            )?,
            // InnoDB locks what it reads: walk the `due_at` index in order so
            // it reads (and locks) only about `limit` rows.
            Dialect::Mysql => self.all(
                "SELECT id FROM sync_jobs FORCE INDEX (sync_jobs_due_at)
                 WHERE due_at <= ? AND attempt < max_attempts
                 ORDER BY due_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
                &[at(now), limit.into()],
                |r| r.int(0),
            )?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let mut params = vec![at(lease_until), worker.into(), at(now)];
        params.extend(ids.iter().map(|i| Val::Int(*i)));
        self.run(&format!("UPDATE sync_jobs SET {claimed} WHERE id IN ({marks})"), &params)?;
        let ids: Vec<Val<'_>> = ids.into_iter().map(Val::Int).collect();
        let sql = format!("SELECT {} FROM sync_jobs WHERE id IN ({marks}) ORDER BY run_at, id", job_cols!());
        self.all(&sql, &ids, job_row)
    }
    fn finish_job(
        &mut self,
        id: JobId,
        lease_token: i64,
        next: &JobSnapshot,
        last_error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let sql = "UPDATE sync_jobs SET state = ?, attempt = ?, run_at = ?, locked_until = ?,
                       locked_by = CASE WHEN ? THEN NULL ELSE locked_by END, last_error = COALESCE(?, last_error),
                       updated_at = ?
                   WHERE id = ? AND state = 'running' AND lease_token = ?";
        let params = [
            next.state.as_str().into(),
            next.attempt.into(),
            at(next.run_at),
            next.locked_until.map(at).unwrap_or(Val::Null),
            next.locked_until.is_none().into(),
            last_error.into(),
            at(now),
            id.0.into(),
            lease_token.into(),
        ];
        Ok(self.conn.execute(sql, &params)? == 1)
    }
    fn expired_exhausted_jobs(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let sql = concat!(
            "SELECT ",
            job_cols!(),
            " FROM sync_jobs WHERE state = 'running' AND locked_until <= ? AND attempt >= max_attempts
              ORDER BY id LIMIT ?"
        );
        self.all(sql, &[at(now), limit.into()], job_row)
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
        let sql = "UPDATE appointments SET calcom_sync_status = 'synced', calcom_v2_booking_id = ?,
                   calcom_v2_booking_uid = ?, calcom_v2_seat_uid = ?, sync_verified_at = ?, sync_error_code = NULL,
                   sync_error_message = NULL, updated_at = ? WHERE company_id = ? AND id = ?";
        let params = [booking_id.into(), uid.into(), seat_uid.into(), at(now), at(now), company.0.into(), id.0.into()];
        self.run(sql, &params)
    }
    fn record_sync_failure(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        failure: &SyncFailure,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE appointments SET calcom_sync_status = 'failed', sync_error_code = ?, sync_error_message = ?,
                   sync_attempt_count = sync_attempt_count + 1,
                   requires_manual_review = CASE WHEN ? THEN TRUE ELSE requires_manual_review END,
                   manual_review_flagged_at = CASE WHEN ? THEN ? ELSE manual_review_flagged_at END,
                   review_reason = CASE WHEN ? THEN 'sync_failed' ELSE review_reason END,
                   updated_at = ? WHERE company_id = ? AND id = ?";
        let flag = Val::Bool(failure.flag);
        let params = [
            (&failure.code).into(),
            (&failure.message).into(),
            flag.clone(),
            flag.clone(),
            at(now),
            flag,
            at(now),
            company.0.into(),
            id.0.into(),
        ];
        self.run(sql, &params)
    }
    fn review_list(&mut self, limit: u32) -> Result<Vec<Appointment>> {
        let sql = format!(
            "SELECT {} FROM appointments WHERE {} ORDER BY manual_review_flagged_at, id LIMIT ?",
            appointment_cols!(),
            self.conn.dialect().in_review()
        );
        self.all(&sql, &[limit.into()], appointment_row)
    }
    fn resolve_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE appointments SET requires_manual_review = FALSE, review_resolved_at = ?,
                   review_resolved_by = ?, review_note = ?, updated_at = ? WHERE company_id = ? AND id = ?";
        self.run(sql, &[at(now), by.into(), note.into(), at(now), company.0.into(), id.0.into()])
    }
    fn reset_sync(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE appointments SET calcom_sync_status = 'pending', requires_manual_review = FALSE,
                   updated_at = ? WHERE company_id = ? AND id = ?";
        self.run(sql, &[at(now), company.0.into(), id.0.into()])
    }
    fn customer_company(&mut self, id: CustomerId) -> Result<Option<CompanyId>> {
        self.one("SELECT company_id FROM customers WHERE id = ?", &[id.0.into()], |r| Ok(CompanyId(r.int(0)?)))
    }
    fn breaker(&mut self, key: &str) -> Result<Option<Breaker>> {
        let k = self.conn.dialect().key_col();
        let sql = format!(
            "SELECT {k}, state, consecutive_failures, open_until, cooldown_secs, updated_at FROM calcom_breakers
             WHERE {k} = ?"
        );
        self.one(&sql, &[key.into()], breaker_row)
    }
    fn put_breaker(&mut self, b: &Breaker) -> Result<()> {
        let k = self.conn.dialect().key_col();
        let cols = [k, "state", "consecutive_failures", "open_until", "cooldown_secs", "updated_at"];
        let params = [
            (&b.key).into(),
            b.state.as_str().into(),
            b.consecutive_failures.into(),
            b.open_until.map(at).unwrap_or(Val::Null),
            b.cooldown_secs.into(),
            at(b.updated_at),
        ];
        self.upsert("calcom_breakers", &[k], &cols, &params)
    }
    fn breakers(&mut self) -> Result<Vec<Breaker>> {
        let k = self.conn.dialect().key_col();
        let sql = format!(
            "SELECT {k}, state, consecutive_failures, open_until, cooldown_secs, updated_at FROM calcom_breakers
             ORDER BY {k}"
        );
        self.all(&sql, &[], breaker_row)
    }

    fn counts(&mut self) -> Result<Counts> {
        let by_status = self.tally(
            "SELECT CASE WHEN status = 'cancelled' AND calcom_sync_status = 'pending' AND NOT EXISTS (
                        SELECT 1 FROM sync_jobs j WHERE j.appointment_id = appointments.id
                        AND j.state NOT IN ('completed', 'discarded', 'cancelled'))
                    THEN 'cancelled_before_sync' ELSE calcom_sync_status END, COUNT(*)
             FROM appointments GROUP BY 1",
        )?;
        let by_state = self.tally("SELECT state, COUNT(*) FROM sync_jobs GROUP BY state")?;
        let manual_review = self
            .one(&format!("SELECT COUNT(*) FROM appointments WHERE {}", self.conn.dialect().in_review()), &[], |r| {
                r.int(0)
            })?
            .unwrap_or(0);
        let (anonymous, total) = self
            .one(
                "SELECT COUNT(CASE WHEN source = 'retell_webhook_anonymous' THEN 1 END), COUNT(*) FROM customers",
                &[],
                |r| Ok((r.int(0)?, r.int(1)?)),
            )?
            .unwrap_or((0, 0));
        Ok(Counts {
            appointments_by_sync_status: SyncStatus::ALL
                .iter()
                .map(|s| (*s, count_of(&by_status, s.as_str())))
                .collect(),
            cancelled_before_sync: count_of(&by_status, "cancelled_before_sync"),
            jobs_by_state: JobState::ALL.iter().map(|s| (*s, count_of(&by_state, s.as_str()))).collect(),
            manual_review: manual_review.max(0) as u64,
            customers_anonymous: anonymous.max(0) as u64,
            customers_known: (total - anonymous).max(0) as u64,
        })
    }

    /// Walks `appointments_created` (v8) for the window only, and each
    /// row's customer by its key.
    fn health_rows(&mut self, after: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<HealthRow>> {
        let sql =
            "SELECT a.company_id, a.created_at, CASE WHEN c.source = 'retell_webhook_anonymous' THEN 1 ELSE 0 END,
                   CASE WHEN a.status = 'cancelled' THEN 1 ELSE 0 END, a.calcom_sync_status,
                   CASE WHEN a.manual_review_flagged_at IS NULL THEN 0 ELSE 1 END, a.booking_latency_us,
                   a.sync_verified_at, a.rescheduled_count
                   FROM appointments a JOIN customers c ON c.id = a.customer_id AND c.company_id = a.company_id
                   WHERE a.created_at > ? AND a.created_at <= ? AND a.call_id IS NOT NULL";
        self.all(sql, &[at(after), at(until)], |r| {
            Ok(HealthRow {
                company_id: CompanyId(r.int(0)?),
                created_at: r.time(1)?,
                anonymous: r.flag(2)?,
                cancelled: r.flag(3)?,
                sync_status: parsed(r, 4, "sync status", SyncStatus::parse)?,
                flagged: r.flag(5)?,
                booking_latency_us: r.opt_int(6)?,
                sync_verified_at: r.opt_time(7)?,
                rescheduled: r.int(8)? > 0,
            })
        })
    }
    /// Three grouped counts, each on its own index: `appointments_review`,
    /// `callbacks_status`, and `sync_jobs_unfinished_age` (v8).
    fn open_work(&mut self, overdue_at: DateTime<Utc>) -> Result<Vec<OpenWork>> {
        let mut out: Vec<OpenWork> = Vec::new();
        let count = |r: &dyn SqlRow, i| -> Result<u64> { Ok(u64::try_from(r.int(i)?).unwrap_or(0)) };
        let reviews = format!(
            "SELECT company_id, COUNT(*) FROM appointments WHERE {} GROUP BY company_id",
            self.conn.dialect().in_review()
        );
        for (company, n) in self.all(&reviews, &[], |r| Ok((CompanyId(r.int(0)?), count(r, 1)?)))? {
            open_work_of(&mut out, company).manual_reviews = n;
        }
        let callbacks = "SELECT company_id, COUNT(*) FROM callbacks WHERE status = 'open' GROUP BY company_id";
        for (company, n) in self.all(callbacks, &[], |r| Ok((CompanyId(r.int(0)?), count(r, 1)?)))? {
            open_work_of(&mut out, company).callbacks = n;
        }
        let jobs = "SELECT company_id, COUNT(CASE WHEN created_at <= ? THEN 1 END), MIN(created_at) FROM sync_jobs
                    WHERE state IN ('available', 'running', 'retryable') GROUP BY company_id";
        for (company, n, oldest) in
            self.all(jobs, &[at(overdue_at)], |r| Ok((CompanyId(r.int(0)?), count(r, 1)?, r.opt_time(2)?)))?
        {
            let work = open_work_of(&mut out, company);
            (work.jobs_overdue, work.oldest_job) = (n, oldest);
        }
        out.sort_by_key(|w| w.company_id);
        Ok(out)
    }

    /// One indexed read (a row lock on the servers); a missing row is made
    /// first on the servers so that the lock has something to hold (MySQL's
    /// upsert takes the row's exclusive lock at once: no shared-lock upgrade
    /// between two first users of a key, which would deadlock).
    fn rate_window(&mut self, key: &str) -> Result<RateWindow> {
        let dialect = self.conn.dialect();
        let (select, make) = match dialect {
            Dialect::Sqlite => (RATE_SELECT, None),
            Dialect::Postgres => (
                RATE_SELECT_LOCKED,
                Some(
                    "INSERT INTO calcom_rate_windows (rate_key, sent, updated_at) VALUES (?, '', ?)
                      ON CONFLICT (rate_key) DO NOTHING",
                ),
            ),
            Dialect::Mysql => (
                RATE_SELECT_LOCKED,
                Some(
                    "INSERT INTO calcom_rate_windows (rate_key, sent, updated_at) VALUES (?, '', ?)
                      ON DUPLICATE KEY UPDATE rate_key = rate_key",
                ),
            ),
        };
        if let Some(found) = self.one(select, &[key.into()], rate_row)? {
            return Ok(found);
        }
        let Some(make) = make else { return Ok(RateWindow::new(key)) };
        self.run(make, &[key.into(), at(DateTime::<Utc>::UNIX_EPOCH)])?;
        Ok(self.one(select, &[key.into()], rate_row)?.unwrap_or_else(|| RateWindow::new(key)))
    }
    fn put_rate_window(&mut self, w: &RateWindow, now: DateTime<Utc>) -> Result<()> {
        let cols = ["rate_key", "sent", "blocked_until", "server_remaining", "server_until", "updated_at"];
        let params = [
            (&w.key).into(),
            w.sent_to_db().into(),
            w.blocked_until.map(at).unwrap_or(Val::Null),
            w.server.map(|(left, _)| left).into(),
            w.server.map(|(_, until)| at(until)).unwrap_or(Val::Null),
            at(now),
        ];
        self.upsert("calcom_rate_windows", &["rate_key"], &cols, &params)
    }
}

const RATE_SELECT: &str =
    "SELECT rate_key, sent, blocked_until, server_remaining, server_until FROM calcom_rate_windows WHERE rate_key = ?";
const RATE_SELECT_LOCKED: &str = "SELECT rate_key, sent, blocked_until, server_remaining, server_until
     FROM calcom_rate_windows WHERE rate_key = ? FOR UPDATE";

fn rate_row(r: &dyn SqlRow) -> Result<RateWindow> {
    let server = match (r.opt_int(3)?, r.opt_time(4)?) {
        (Some(left), Some(until)) => Some((u32::try_from(left).map_err(|_| bad("remaining", "out of range"))?, until)),
        _ => None,
    };
    Ok(RateWindow {
        key: r.text(0)?,
        sent: RateWindow::sent_from_db(&r.text(1)?)?,
        blocked_until: r.opt_time(2)?,
        server,
    })
}
