//! The stores on a database server (PostgreSQL, MySQL/MariaDB): one `Tx`
//! written once over a small [`Conn`] seam, so both servers run the same SQL
//! (`?` placeholders; the PostgreSQL driver numbers them). Many processes
//! share the database: the queue claims with `FOR UPDATE SKIP LOCKED`, and a
//! booking takes its company's row lock first (`lock_company`), which keeps
//! "one customer per known phone" and capacities true across processes.

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
use std::sync::Mutex;

/// A value crossing the seam.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// A build with one server feature constructs only its own dialect.
#[cfg_attr(not(all(feature = "postgres", feature = "mysql")), allow(dead_code))]
pub(crate) enum Dialect {
    Postgres,
    Mysql,
}

/// One connection to the server, inside a transaction the store opened.
pub(crate) trait Conn: Send {
    fn dialect(&self) -> Dialect;
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>>;
    /// Rows changed.
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64>;
    /// Runs an INSERT and returns the new row's `id`.
    fn insert(&mut self, sql: &str, params: &[Val]) -> Result<i64>;
    fn batch(&mut self, sql: &str) -> Result<()>;
}

/// A row as the seam hands it back, with typed getters that fail as
/// `storage` errors (never a panic) on unexpected values.
struct Row(Vec<Val>);

fn bad(what: &str, value: &str) -> Error {
    Error::Storage(format!("unexpected {what} in database: {value:?}"))
}

impl Row {
    fn val(&self, i: usize) -> &Val {
        self.0.get(i).unwrap_or(&Val::Null)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.val(i) {
            Val::Null => Ok(None),
            Val::Int(n) => Ok(Some(*n)),
            Val::Bool(b) => Ok(Some(i64::from(*b))),
            Val::Text(t) => t.trim().parse().map(Some).map_err(|_| bad("number", t)),
        }
    }
    fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| bad("NULL", "number"))
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.val(i) {
            Val::Null => Ok(None),
            Val::Text(t) => Ok(Some(t.clone())),
            Val::Int(n) => Ok(Some(n.to_string())),
            Val::Bool(b) => Ok(Some(b.to_string())),
        }
    }
    fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| bad("NULL", "text"))
    }
    fn flag(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }
    fn time(&self, i: usize) -> Result<DateTime<Utc>> {
        from_db(&self.text(i)?)
    }
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>> {
        self.opt_text(i)?.as_deref().map(from_db).transpose()
    }
    fn parsed<T>(&self, i: usize, what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
        let text = self.text(i)?;
        parse(&text).ok_or_else(|| bad(what, &text))
    }
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
const BRANCH_COLS: &str = "id, company_id, name, timezone, country, phone_number";
const SERVICE_COLS: &str = "id, company_id, name, calcom_event_type_id, duration_minutes, capacity";

fn customer_row(r: &Row) -> Result<Customer> {
    Ok(Customer {
        id: CustomerId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        name: r.text(2)?,
        email: r.opt_text(3)?,
        phone: r.text(4)?,
        source: r.parsed(5, "customer source", CustomerSource::parse)?,
        anonymity_reason: match r.opt_text(6)? {
            Some(text) => Some(AnonymityReason::parse(&text).ok_or_else(|| bad("anonymity reason", &text))?),
            None => None,
        },
        created_at: r.time(7)?,
        updated_at: r.time(8)?,
    })
}

fn appointment_row(r: &Row) -> Result<Appointment> {
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
        status: r.parsed(8, "status", AppointmentStatus::parse)?,
        calcom_sync_status: r.parsed(9, "sync status", SyncStatus::parse)?,
        sync_origin: r.parsed(10, "sync origin", SyncOrigin::parse)?,
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
    })
}

fn job_row(r: &Row) -> Result<Job> {
    Ok(Job {
        id: JobId(r.int(0)?),
        appointment_id: AppointmentId(r.int(1)?),
        company_id: CompanyId(r.int(2)?),
        kind: r.parsed(3, "job kind", JobKind::parse)?,
        state: r.parsed(4, "job state", JobState::parse)?,
        attempt: u32::try_from(r.int(5)?).map_err(|_| bad("attempt", "out of range"))?,
        max_attempts: u32::try_from(r.int(6)?).map_err(|_| bad("max_attempts", "out of range"))?,
        run_at: r.time(7)?,
        locked_until: r.opt_time(8)?,
        locked_by: r.opt_text(9)?,
        lease_token: r.int(10)?,
        last_error: r.opt_text(11)?,
        created_at: r.time(12)?,
        updated_at: r.time(13)?,
    })
}

fn branch_row(r: &Row) -> Result<Branch> {
    Ok(Branch {
        id: BranchId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        name: r.text(2)?,
        timezone: r.text(3)?,
        country: r.opt_text(4)?,
        phone_number: r.opt_text(5)?,
    })
}

fn service_row(r: &Row) -> Result<Service> {
    Ok(Service {
        id: ServiceId(r.int(0)?),
        company_id: CompanyId(r.int(1)?),
        name: r.text(2)?,
        calcom_event_type_id: r.opt_int(3)?,
        duration_minutes: r.int(4)?,
        capacity: r.opt_int(5)?,
    })
}

fn breaker_row(r: &Row) -> Result<Breaker> {
    Ok(Breaker {
        key: r.text(0)?,
        state: r.parsed(1, "breaker state", BreakerState::parse)?,
        consecutive_failures: u32::try_from(r.int(2)?).map_err(|_| bad("failures", "out of range"))?,
        open_until: r.opt_time(3)?,
        cooldown_secs: r.int(4)?,
        updated_at: r.time(5)?,
    })
}

pub(crate) struct ServerTx<'a> {
    conn: &'a mut dyn Conn,
}

impl ServerTx<'_> {
    fn rows(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        Ok(self.conn.query(sql, params)?.into_iter().map(Row).collect())
    }
    fn one<T>(&mut self, sql: &str, params: &[Val], map: impl FnOnce(&Row) -> Result<T>) -> Result<Option<T>> {
        self.rows(sql, params)?.first().map(map).transpose()
    }
    fn all<T>(&mut self, sql: &str, params: &[Val], map: impl FnMut(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.rows(sql, params)?.iter().map(map).collect()
    }
    /// `INSERT … ON CONFLICT/DUPLICATE KEY UPDATE` of every column but the key.
    fn upsert(&mut self, table: &str, key: &[&str], cols: &[&str], params: &[Val]) -> Result<()> {
        let marks = vec!["?"; cols.len()].join(", ");
        let updated: Vec<&str> = cols.iter().copied().filter(|c| !key.contains(c) && *c != "created_at").collect();
        let sql = match self.conn.dialect() {
            Dialect::Postgres => format!(
                "INSERT INTO {table} ({}) VALUES ({marks}) ON CONFLICT ({}) DO UPDATE SET {}",
                cols.join(", "),
                key.join(", "),
                updated.iter().map(|c| format!("{c} = excluded.{c}")).collect::<Vec<_>>().join(", ")
            ),
            Dialect::Mysql => format!(
                "INSERT INTO {table} ({}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {}",
                cols.join(", "),
                updated.iter().map(|c| format!("{c} = VALUES({c})")).collect::<Vec<_>>().join(", ")
            ),
        };
        self.conn.execute(&sql, params).map(|_| ())
    }
    /// `key` is a reserved word in MySQL.
    fn key_col(&self) -> &'static str {
        match self.conn.dialect() {
            Dialect::Postgres => "key",
            Dialect::Mysql => "`key`",
        }
    }
}

impl Tx for ServerTx<'_> {
    fn lock_company(&mut self, company: CompanyId) -> Result<()> {
        // PostgreSQL: NO KEY UPDATE, so rows that merely reference the
        // company (its jobs, its customers) are not held up by the lock.
        let sql = match self.conn.dialect() {
            Dialect::Postgres => "SELECT id FROM companies WHERE id = ? FOR NO KEY UPDATE",
            Dialect::Mysql => "SELECT id FROM companies WHERE id = ? FOR UPDATE",
        };
        self.conn.query(sql, &[company.0.into()]).map(|_| ())
    }

    fn company(&mut self, id: CompanyId) -> Result<Option<Company>> {
        let sql = "SELECT id, name, calcom_api_key, calcom_api_base, calcom_email_fallback FROM companies WHERE id = ?";
        self.one(sql, &[id.0.into()], |r| {
            Ok(Company {
                id: CompanyId(r.int(0)?),
                name: r.text(1)?,
                calcom_api_key: r.opt_text(2)?.map(Secret::new),
                calcom_api_base: r.opt_text(3)?,
                calcom_email_fallback: r.opt_text(4)?,
            })
        })
    }
    fn branch(&mut self, id: BranchId) -> Result<Option<Branch>> {
        self.one(&format!("SELECT {BRANCH_COLS} FROM branches WHERE id = ?"), &[id.0.into()], branch_row)
    }
    fn branch_by_phone(&mut self, phone: &str) -> Result<Option<Branch>> {
        let sql = format!("SELECT {BRANCH_COLS} FROM branches WHERE phone_number = ? ORDER BY id LIMIT 1");
        self.one(&sql, &[phone.into()], branch_row)
    }
    fn service(&mut self, id: ServiceId) -> Result<Option<Service>> {
        self.one(&format!("SELECT {SERVICE_COLS} FROM services WHERE id = ?"), &[id.0.into()], service_row)
    }
    fn services_of(&mut self, company: CompanyId) -> Result<Vec<Service>> {
        let sql = format!("SELECT {SERVICE_COLS} FROM services WHERE company_id = ? ORDER BY id");
        self.all(&sql, &[company.0.into()], service_row)
    }
    fn branches_of(&mut self, company: CompanyId) -> Result<Vec<Branch>> {
        let sql = format!("SELECT {BRANCH_COLS} FROM branches WHERE company_id = ? ORDER BY id");
        self.all(&sql, &[company.0.into()], branch_row)
    }
    fn upsert_company(&mut self, c: &Company, now: DateTime<Utc>) -> Result<()> {
        let cols =
            ["id", "name", "calcom_api_key", "calcom_api_base", "calcom_email_fallback", "created_at", "updated_at"];
        let key = c.calcom_api_key.as_ref().map(|k| k.expose().to_string());
        let params = [
            c.id.0.into(),
            (&c.name).into(),
            key.into(),
            c.calcom_api_base.clone().into(),
            c.calcom_email_fallback.clone().into(),
            to_db(now).into(),
            to_db(now).into(),
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
            b.country.clone().into(),
            b.phone_number.clone().into(),
            to_db(now).into(),
            to_db(now).into(),
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
            "created_at",
            "updated_at",
        ];
        let params = [
            s.id.0.into(),
            s.company_id.0.into(),
            (&s.name).into(),
            s.calcom_event_type_id.into(),
            s.duration_minutes.into(),
            s.capacity.into(),
            to_db(now).into(),
            to_db(now).into(),
        ];
        self.upsert("services", &["id"], &cols, &params)
    }

    fn call(&mut self, id: &CallId) -> Result<Option<Call>> {
        self.one(
            "SELECT id, retell_call_id, company_id, branch_id, from_number, to_number, direction FROM calls WHERE retell_call_id = ?",
            &[(&id.0).into()],
            |r| {
                Ok(Call {
                    id: CallDbId(r.int(0)?),
                    retell_call_id: CallId(r.text(1)?),
                    company_id: r.opt_int(2)?.map(CompanyId),
                    branch_id: r.opt_int(3)?.map(BranchId),
                    from_number: r.opt_text(4)?,
                    to_number: r.opt_text(5)?,
                    direction: r.opt_text(6)?,
                })
            },
        )
    }
    fn insert_call(&mut self, c: &NewCall, now: DateTime<Utc>) -> Result<CallDbId> {
        let params = [
            (&c.retell_call_id.0).into(),
            c.company_id.map(|i| i.0).into(),
            c.branch_id.map(|i| i.0).into(),
            c.from_number.clone().into(),
            c.to_number.clone().into(),
            c.direction.clone().into(),
            to_db(now).into(),
            to_db(now).into(),
        ];
        let cols = "retell_call_id, company_id, branch_id, from_number, to_number, direction, created_at, updated_at";
        match c.id {
            None => Ok(CallDbId(
                self.conn.insert(&format!("INSERT INTO calls ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"), &params)?,
            )),
            Some(id) => {
                let mut all = vec![Val::Int(id.0)];
                all.extend(params);
                self.conn
                    .execute(&format!("INSERT INTO calls (id, {cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), &all)?;
                if self.conn.dialect() == Dialect::Postgres {
                    // An explicit id leaves the sequence behind: move it past the largest id.
                    self.conn.query(
                        "SELECT setval(pg_get_serial_sequence('calls', 'id'), (SELECT MAX(id) FROM calls))",
                        &[],
                    )?;
                }
                Ok(id)
            }
        }
    }

    fn customer(&mut self, company: CompanyId, id: CustomerId) -> Result<Option<Customer>> {
        let sql = format!("SELECT {CUSTOMER_COLS} FROM customers WHERE company_id = ? AND id = ?");
        self.one(&sql, &[company.0.into(), id.0.into()], customer_row)
    }
    fn customer_by_phone(&mut self, company: CompanyId, phone: &str) -> Result<Option<Customer>> {
        let sql =
            format!("SELECT {CUSTOMER_COLS} FROM customers WHERE company_id = ? AND phone = ? ORDER BY id LIMIT 1");
        self.one(&sql, &[company.0.into(), phone.into()], customer_row)
    }
    fn customer_id_by_email(&mut self, company: CompanyId, email: &str) -> Result<Option<CustomerId>> {
        self.one(
            "SELECT id FROM customers WHERE company_id = ? AND email = ?",
            &[company.0.into(), email.into()],
            |r| Ok(CustomerId(r.int(0)?)),
        )
    }
    fn insert_customer(&mut self, c: &NewCustomer) -> Result<CustomerId> {
        let params = [
            c.company_id.0.into(),
            (&c.name).into(),
            c.email.clone().into(),
            (&c.phone).into(),
            c.source.as_str().into(),
            c.anonymity_reason.map(AnonymityReason::as_str).into(),
            to_db(c.now).into(),
            to_db(c.now).into(),
        ];
        let sql =
            "INSERT INTO customers (company_id, name, email, phone, source, anonymity_reason, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
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
        self.conn.execute(sql, &[email.into(), to_db(now).into(), company.0.into(), id.0.into()]).map(|_| ())
    }

    fn appointment(&mut self, company: CompanyId, id: AppointmentId) -> Result<Option<Appointment>> {
        let sql = format!("SELECT {APPOINTMENT_COLS} FROM appointments WHERE company_id = ? AND id = ?");
        self.one(&sql, &[company.0.into(), id.0.into()], appointment_row)
    }
    fn appointment_by_key(&mut self, company: CompanyId, key: &str) -> Result<Option<Appointment>> {
        let sql = format!("SELECT {APPOINTMENT_COLS} FROM appointments WHERE company_id = ? AND idempotency_key = ?");
        self.one(&sql, &[company.0.into(), key.into()], appointment_row)
    }
    fn insert_appointment(&mut self, a: &NewAppointment) -> Result<AppointmentId> {
        let now = to_db(a.now);
        let params = [
            a.customer_id.0.into(),
            a.company_id.0.into(),
            a.branch_id.0.into(),
            a.service_id.0.into(),
            a.call_id.map(|c| c.0).into(),
            to_db(a.starts_at).into(),
            to_db(a.ends_at).into(),
            a.sync_origin.as_str().into(),
            serde_json::to_string(&a.metadata)?.into(),
            a.requires_manual_review.into(),
            a.requires_manual_review.then(|| now.clone()).into(),
            a.review_reason.clone().into(),
            (&a.idempotency_key).into(),
            (&now).into(),
            (&now).into(),
        ];
        let sql =
            "INSERT INTO appointments (customer_id, company_id, branch_id, service_id, call_id, starts_at, ends_at,
             status, calcom_sync_status, sync_origin, metadata, sync_attempt_count, requires_manual_review,
             manual_review_flagged_at, review_reason, idempotency_key, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'confirmed', 'pending', ?, ?, 0, ?, ?, ?, ?, ?, ?)";
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
        self.all(sql, &[company.0.into(), customer.0.into(), to_db(now).into()], |r| Ok(AppointmentId(r.int(0)?)))
    }
    fn appointments_between(
        &mut self,
        company: CompanyId,
        service: ServiceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>> {
        let sql = format!(
            "SELECT {APPOINTMENT_COLS} FROM appointments WHERE company_id = ? AND service_id = ?
             AND starts_at >= ? AND starts_at < ? AND status = 'confirmed' ORDER BY starts_at, id"
        );
        self.all(&sql, &[company.0.into(), service.0.into(), to_db(from).into(), to_db(to).into()], appointment_row)
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
        let params =
            [call.0.into(), service.0.into(), day.to_string().into(), slots_to_db(offered)?.into(), to_db(now).into()];
        self.upsert("call_availability", &["call_id", "service_id", "day"], &cols, &params)
    }
    fn remembered_slots(&mut self, call: CallDbId, service: ServiceId, day: NaiveDate) -> Result<Option<Offered>> {
        let sql = "SELECT slots FROM call_availability WHERE call_id = ? AND service_id = ? AND day = ?";
        let Some(text) = self.one(sql, &[call.0.into(), service.0.into(), day.to_string().into()], |r| r.text(0))?
        else {
            return Ok(None);
        };
        slots_from_db(&text).map(Some)
    }
    fn flag_for_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql =
            "UPDATE appointments SET requires_manual_review = TRUE, manual_review_flagged_at = ?, review_reason = ?,
                   updated_at = ? WHERE company_id = ? AND id = ?";
        let now = to_db(now);
        self.conn
            .execute(sql, &[(&now).into(), reason.into(), (&now).into(), company.0.into(), id.0.into()])
            .map(|_| ())
    }
    fn appointment_company(&mut self, id: AppointmentId) -> Result<Option<CompanyId>> {
        self.one("SELECT company_id FROM appointments WHERE id = ?", &[id.0.into()], |r| Ok(CompanyId(r.int(0)?)))
    }
    fn appointment_by_booking_uid(&mut self, uid: &str) -> Result<Option<Appointment>> {
        let sql =
            format!("SELECT {APPOINTMENT_COLS} FROM appointments WHERE calcom_v2_booking_uid = ? ORDER BY id LIMIT 1");
        self.one(&sql, &[uid.into()], appointment_row)
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
                self.conn.execute(
                    "UPDATE appointments SET status = 'cancelled', sync_origin = 'calcom', updated_at = ?
                     WHERE company_id = ? AND id = ?",
                    &[(&now).into(), company.0.into(), id.0.into()],
                )?;
                self.conn.execute(
                    "UPDATE sync_jobs SET state = 'cancelled', locked_until = NULL, locked_by = NULL, updated_at = ?
                     WHERE appointment_id = ? AND company_id = ? AND state IN ('available', 'running', 'retryable')",
                    &[(&now).into(), id.0.into(), company.0.into()],
                )?;
            }
            CalcomChange::Rescheduled { booking_id, uid, starts_at, ends_at } => {
                self.conn.execute(
                    "UPDATE appointments SET starts_at = ?, ends_at = ?, calcom_v2_booking_uid = ?,
                     calcom_v2_booking_id = COALESCE(?, calcom_v2_booking_id), sync_origin = 'calcom', updated_at = ?
                     WHERE company_id = ? AND id = ?",
                    &[
                        to_db(*starts_at).into(),
                        to_db(*ends_at).into(),
                        uid.into(),
                        (*booking_id).into(),
                        (&now).into(),
                        company.0.into(),
                        id.0.into(),
                    ],
                )?;
            }
        }
        Ok(())
    }

    fn insert_job(&mut self, j: &NewJob, now: DateTime<Utc>) -> Result<JobId> {
        let sql = "INSERT INTO sync_jobs (appointment_id, company_id, kind, state, attempt, max_attempts, run_at, lease_token,
                   created_at, updated_at) VALUES (?, ?, ?, 'available', 0, ?, ?, 0, ?, ?)";
        let params = [
            j.appointment_id.0.into(),
            j.company_id.0.into(),
            j.kind.as_str().into(),
            j.max_attempts.into(),
            to_db(j.run_at).into(),
            to_db(now).into(),
            to_db(now).into(),
        ];
        Ok(JobId(self.conn.insert(sql, &params)?))
    }
    fn job(&mut self, id: JobId) -> Result<Option<Job>> {
        self.one(&format!("SELECT {JOB_COLS} FROM sync_jobs WHERE id = ?"), &[id.0.into()], job_row)
    }
    fn jobs_of(&mut self, appointment: AppointmentId) -> Result<Vec<Job>> {
        let sql = format!("SELECT {JOB_COLS} FROM sync_jobs WHERE appointment_id = ? ORDER BY id");
        self.all(&sql, &[appointment.0.into()], job_row)
    }
    fn claim_jobs(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        // Rows another worker is claiming right now are skipped, not waited for.
        let now_text = to_db(now);
        let ids: Vec<i64> = match self.conn.dialect() {
            // PostgreSQL locks only the rows the LIMIT lets through.
            Dialect::Postgres => self.all(
                "SELECT id FROM sync_jobs WHERE attempt < max_attempts AND (
                     (state IN ('available', 'retryable') AND run_at <= ?)
                     OR (state = 'running' AND locked_until <= ?))
                 ORDER BY run_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
                &[(&now_text).into(), (&now_text).into(), limit.into()],
                |r| r.int(0),
            )?,
            // InnoDB locks what it reads: walk the `due_at` index in order so
            // it reads (and locks) only about `limit` rows.
            Dialect::Mysql => self.all(
                "SELECT id FROM sync_jobs FORCE INDEX (sync_jobs_due_at)
                 WHERE due_at <= ? AND attempt < max_attempts
                 ORDER BY due_at, id LIMIT ? FOR UPDATE SKIP LOCKED",
                &[(&now_text).into(), limit.into()],
                |r| r.int(0),
            )?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(", ");
        let mut params: Vec<Val> = vec![to_db(lease_until).into(), worker.into(), (&now_text).into()];
        params.extend(ids.iter().map(|i| Val::Int(*i)));
        self.conn.execute(
            &format!(
                "UPDATE sync_jobs SET state = 'running', attempt = attempt + 1, lease_token = lease_token + 1,
                 locked_until = ?, locked_by = ?, updated_at = ? WHERE id IN ({marks})"
            ),
            &params,
        )?;
        let ids: Vec<Val> = ids.into_iter().map(Val::Int).collect();
        self.all(&format!("SELECT {JOB_COLS} FROM sync_jobs WHERE id IN ({marks}) ORDER BY run_at, id"), &ids, job_row)
    }
    fn finish_job(
        &mut self,
        id: JobId,
        lease_token: i64,
        next: &JobSnapshot,
        last_error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let locked_until: Val = next.locked_until.map(to_db).into();
        let changed = self.conn.execute(
            "UPDATE sync_jobs SET state = ?, attempt = ?, run_at = ?, locked_until = ?,
                 locked_by = CASE WHEN ? THEN NULL ELSE locked_by END, last_error = COALESCE(?, last_error), updated_at = ?
             WHERE id = ? AND state = 'running' AND lease_token = ?",
            &[
                next.state.as_str().into(),
                next.attempt.into(),
                to_db(next.run_at).into(),
                locked_until,
                next.locked_until.is_none().into(),
                last_error.into(),
                to_db(now).into(),
                id.0.into(),
                lease_token.into(),
            ],
        )?;
        Ok(changed == 1)
    }
    fn expired_exhausted_jobs(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLS} FROM sync_jobs WHERE state = 'running' AND locked_until <= ?
             AND attempt >= max_attempts ORDER BY id LIMIT ?"
        );
        self.all(&sql, &[to_db(now).into(), limit.into()], job_row)
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
        let now = to_db(now);
        self.conn
            .execute(
                "UPDATE appointments SET calcom_sync_status = 'synced', calcom_v2_booking_id = ?,
                 calcom_v2_booking_uid = ?, calcom_v2_seat_uid = ?, sync_verified_at = ?, sync_error_code = NULL,
                 sync_error_message = NULL, updated_at = ? WHERE company_id = ? AND id = ?",
                &[
                    booking_id.into(),
                    uid.into(),
                    seat_uid.into(),
                    (&now).into(),
                    (&now).into(),
                    company.0.into(),
                    id.0.into(),
                ],
            )
            .map(|_| ())
    }
    fn record_sync_failure(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        failure: &SyncFailure,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = to_db(now);
        let flag = Val::Bool(failure.flag);
        self.conn
            .execute(
                "UPDATE appointments SET calcom_sync_status = 'failed', sync_error_code = ?, sync_error_message = ?,
                 sync_attempt_count = sync_attempt_count + 1,
                 requires_manual_review = CASE WHEN ? THEN TRUE ELSE requires_manual_review END,
                 manual_review_flagged_at = CASE WHEN ? THEN ? ELSE manual_review_flagged_at END,
                 review_reason = CASE WHEN ? THEN 'sync_failed' ELSE review_reason END,
                 updated_at = ? WHERE company_id = ? AND id = ?",
                &[
                    (&failure.code).into(),
                    (&failure.message).into(),
                    flag.clone(),
                    flag.clone(),
                    (&now).into(),
                    flag,
                    (&now).into(),
                    company.0.into(),
                    id.0.into(),
                ],
            )
            .map(|_| ())
    }
    fn review_list(&mut self, limit: u32) -> Result<Vec<Appointment>> {
        let sql = format!(
            "SELECT {APPOINTMENT_COLS} FROM appointments WHERE requires_manual_review = TRUE
             ORDER BY manual_review_flagged_at, id LIMIT ?"
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
        let now = to_db(now);
        self.conn
            .execute(
                "UPDATE appointments SET requires_manual_review = FALSE, review_resolved_at = ?, review_resolved_by = ?,
                 review_note = ?, updated_at = ? WHERE company_id = ? AND id = ?",
                &[(&now).into(), by.into(), note.into(), (&now).into(), company.0.into(), id.0.into()],
            )
            .map(|_| ())
    }
    fn reset_sync(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE appointments SET calcom_sync_status = 'pending', requires_manual_review = FALSE, updated_at = ?
                 WHERE company_id = ? AND id = ?",
                &[to_db(now).into(), company.0.into(), id.0.into()],
            )
            .map(|_| ())
    }
    fn customer_company(&mut self, id: CustomerId) -> Result<Option<CompanyId>> {
        self.one("SELECT company_id FROM customers WHERE id = ?", &[id.0.into()], |r| Ok(CompanyId(r.int(0)?)))
    }
    fn breaker(&mut self, key: &str) -> Result<Option<Breaker>> {
        let k = self.key_col();
        let sql = format!(
            "SELECT {k}, state, consecutive_failures, open_until, cooldown_secs, updated_at FROM calcom_breakers WHERE {k} = ?"
        );
        self.one(&sql, &[key.into()], breaker_row)
    }
    fn put_breaker(&mut self, b: &Breaker) -> Result<()> {
        let k = self.key_col();
        let cols = [k, "state", "consecutive_failures", "open_until", "cooldown_secs", "updated_at"];
        let params = [
            (&b.key).into(),
            b.state.as_str().into(),
            b.consecutive_failures.into(),
            b.open_until.map(to_db).into(),
            b.cooldown_secs.into(),
            to_db(b.updated_at).into(),
        ];
        self.upsert("calcom_breakers", &[k], &cols, &params)
    }
    fn breakers(&mut self) -> Result<Vec<Breaker>> {
        let k = self.key_col();
        let sql = format!(
            "SELECT {k}, state, consecutive_failures, open_until, cooldown_secs, updated_at FROM calcom_breakers ORDER BY {k}"
        );
        self.all(&sql, &[], breaker_row)
    }

    fn counts(&mut self) -> Result<Counts> {
        let mut counts = Counts::default();
        let by_status =
            self.all("SELECT calcom_sync_status, COUNT(*) FROM appointments GROUP BY calcom_sync_status", &[], |r| {
                Ok((r.text(0)?, r.int(1)?))
            })?;
        for status in SyncStatus::ALL {
            let n = by_status.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
            counts.appointments_by_sync_status.push((*status, n as u64));
        }
        let by_state =
            self.all("SELECT state, COUNT(*) FROM sync_jobs GROUP BY state", &[], |r| Ok((r.text(0)?, r.int(1)?)))?;
        for state in JobState::ALL {
            let n = by_state.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
            counts.jobs_by_state.push((*state, n as u64));
        }
        counts.manual_review = self
            .one("SELECT COUNT(*) FROM appointments WHERE requires_manual_review = TRUE", &[], |r| r.int(0))?
            .unwrap_or(0) as u64;
        let (anonymous, total) = self
            .one(
                "SELECT COUNT(CASE WHEN source = 'retell_webhook_anonymous' THEN 1 END), COUNT(*) FROM customers",
                &[],
                |r| Ok((r.int(0)?, r.int(1)?)),
            )?
            .unwrap_or((0, 0));
        counts.customers_anonymous = anonymous as u64;
        counts.customers_known = (total - anonymous) as u64;
        Ok(counts)
    }
}

/// How to open connections to one server database.
pub(crate) trait Connector: Send + Sync {
    fn connect(&self) -> Result<Box<dyn Conn>>;
}

/// A store on a database server: a small pool of connections, one
/// transaction per `write` (READ COMMITTED), any number of processes.
pub struct ServerStore {
    connector: Box<dyn Connector>,
    pool: Mutex<Vec<Box<dyn Conn>>>,
    what: &'static str,
}

impl std::fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("ServerStore").field("server", &self.what).finish_non_exhaustive()
    }
}

/// The schema files: version 1 creates every table; each later one alters them.
pub(crate) type Schema = &'static [&'static str];

impl ServerStore {
    pub(crate) fn open(connector: Box<dyn Connector>, what: &'static str, schema: Schema) -> Result<Self> {
        let store = ServerStore { connector, pool: Mutex::default(), what };
        store.migrate(schema)?;
        Ok(store)
    }

    /// Brings the schema up to date, one version at a time; `callbook_schema`
    /// records each. Another process may be migrating at the same time: the
    /// loser's statements fail, and it finds the version written.
    fn migrate(&self, schema: Schema) -> Result<()> {
        let mut conn = self.connector.connect()?;
        conn.batch("CREATE TABLE IF NOT EXISTS callbook_schema (version BIGINT NOT NULL)")?;
        let newest = schema.len() as i64;
        let read_version = |conn: &mut Box<dyn Conn>| -> Result<i64> {
            let rows = conn.query("SELECT MAX(version) FROM callbook_schema", &[])?;
            Ok(rows.into_iter().next().map(Row).map(|r| r.opt_int(0)).transpose()?.flatten().unwrap_or(0))
        };
        let version = read_version(&mut conn)?;
        if version > newest {
            return Err(Error::Storage(format!("database schema {version} is newer than this callbook ({newest})")));
        }
        for (next, sql) in (1..).zip(schema.iter()).skip(version as usize) {
            let applied = sql
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.lines().all(|l| l.trim_start().starts_with("--")))
                .try_for_each(|statement| conn.batch(statement));
            match applied {
                Ok(()) => {
                    conn.execute("INSERT INTO callbook_schema (version) VALUES (?)", &[Val::Int(next)]).map(|_| ())?
                }
                Err(e) if read_version(&mut conn)? < next => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Opens the database a `postgres://`, `postgresql://`, `mysql://` or
    /// `mariadb://` URL names, with the matching feature.
    pub fn open_url(url: &str) -> Result<Self> {
        let missing =
            |feature: &str| Error::Storage(format!("this build has no {feature} support (feature `{feature}`)"));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Self::postgres(url);
            #[cfg(not(feature = "postgres"))]
            return Err(missing("postgres"));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            #[cfg(feature = "mysql")]
            return Self::mysql(&url.replacen("mariadb://", "mysql://", 1));
            #[cfg(not(feature = "mysql"))]
            return Err(missing("mysql"));
        }
        let _ = missing;
        Err(Error::Storage("not a database server URL (postgres:// or mysql://)".into()))
    }

    /// The schema version recorded in `callbook_schema`.
    pub fn schema_version(&self) -> Result<i64> {
        let mut conn = self.take()?;
        let rows = conn.query("SELECT MAX(version) FROM callbook_schema", &[])?;
        self.give_back(conn);
        Ok(rows.into_iter().next().map(Row).map(|r| r.opt_int(0)).transpose()?.flatten().unwrap_or(0))
    }

    fn take(&self) -> Result<Box<dyn Conn>> {
        match self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(conn) => Ok(conn),
            None => self.connector.connect(),
        }
    }

    fn give_back(&self, conn: Box<dyn Conn>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 16 {
            pool.push(conn);
        }
    }

    fn run(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>, read_only: bool) -> Result<()> {
        let mut conn = self.take()?;
        conn.batch(if read_only { "START TRANSACTION READ ONLY" } else { "START TRANSACTION" })?;
        let outcome = work(&mut ServerTx { conn: &mut *conn });
        let ended = match &outcome {
            Ok(()) => conn.batch("COMMIT"),
            Err(_) => conn.batch("ROLLBACK"),
        };
        match ended {
            // A connection whose COMMIT or ROLLBACK failed is not reused.
            Ok(()) => self.give_back(conn),
            Err(e) if outcome.is_ok() => return Err(e),
            Err(_) => {}
        }
        outcome
    }
}

impl Store for ServerStore {
    fn write(&self, work: WriteFn) -> Result<()> {
        let mut work = Some(work);
        self.run(
            &mut |tx| match work.take() {
                Some(w) => w(tx),
                None => Err(Error::Storage("write ran twice".into())),
            },
            false,
        )
    }

    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        self.run(work, true)
    }
}
