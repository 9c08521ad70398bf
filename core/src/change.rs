//! The rest of the call: a caller finds, cancels and moves their own
//! appointments and asks to be called back; staff do the same for any
//! appointment. Who may change what, which appointment a request means and
//! what the policy allows are decided here, inside the one transaction that
//! also writes the change, its outbox job and its line in
//! `appointment_changes`.
//!
//! Identity: a caller may see and change an appointment when the call's
//! number normalises to the appointment's customer's phone in the same
//! company, or when this same call booked it (so an anonymous caller can
//! undo what they just did). Nobody is ever matched by name.

use crate::appointment::{Appointment, AppointmentChange, AppointmentStatus, ChangeKind, ChangedBy, SyncStatus};
use crate::booking::branch_region;
use crate::call::{Call, NewCall};
use crate::callback::{Callback, NewCallback};
use crate::caller::{classify_caller, normalize_phone, Caller};
use crate::company::{Branch, ChangePolicy, Service};
use crate::config::Config;
use crate::customer::Customer;
use crate::error::{MAX_NAME, MAX_NOTE};
use crate::ids::{AppointmentId, CallId, CompanyId, ServiceId};
use crate::import::{register_call, resolve_call};
use crate::queue::{JobKind, JobState, NewJob};
use crate::slots::{free_starts, local_appointments, nearest, occupied};
use crate::start::{parse_date, parse_time, parse_timezone, resolve_start, StartSpec};
use crate::store::lock::{slot_locks, Lock};
use crate::store::{Offered, Tx};
use crate::utc::{format_utc, rfc3339, rfc3339_opt};
use crate::{Error, Result};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How many upcoming appointments `find` lists at most.
pub const MAX_FOUND: usize = 5;

/// A cancel or a move, as a caller's agent or an operator asks for it.
/// Field names are camelCase (Node); the snake_case forms are accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequest {
    /// The call asking: a caller changes only their own appointments.
    #[serde(default, alias = "retell_call_id", alias = "call_id")]
    pub retell_call_id: Option<String>,
    /// Or the operator asking: any appointment, by id.
    #[serde(default)]
    pub operator: Option<String>,
    /// An operator goes past the policy.
    #[serde(default)]
    pub force: bool,
    #[serde(default, alias = "appointment_id")]
    pub appointment_id: Option<i64>,
    /// Without an id: the appointment's local day, and time if several.
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    /// A move's new start: ISO 8601, or `newDate` + `newTime` in the branch's zone.
    #[serde(default, alias = "new_start")]
    pub new_start: Option<String>,
    #[serde(default, alias = "new_date")]
    pub new_date: Option<String>,
    #[serde(default, alias = "new_time")]
    pub new_time: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Without it nothing is written: the answer says what would happen.
    #[serde(default)]
    pub confirmed: bool,
    /// The call as Retell describes it, registered with a confirmed change
    /// when it is new.
    #[serde(skip)]
    pub call: Option<NewCall>,
}

impl ChangeRequest {
    fn new_start_spec(&self) -> Option<StartSpec> {
        match (&self.new_start, &self.new_date, &self.new_time) {
            (Some(s), _, _) => Some(StartSpec::Iso(s.clone())),
            (None, None, None) => None,
            (None, d, t) => {
                Some(StartSpec::DateTime { date: d.clone().unwrap_or_default(), time: t.clone().unwrap_or_default() })
            }
        }
    }
}

/// What a cancel or a move did, or would do when not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub appointment_id: AppointmentId,
    pub kind: ChangeKind,
    /// Not confirmed: nothing was written.
    pub needs_confirmation: bool,
    /// Done before (a retried confirmation, or already so): nothing written now.
    pub repeated: bool,
    /// The appointment's start: the cancelled one's, or a move's new one.
    #[serde(serialize_with = "rfc3339")]
    pub starts_at: DateTime<Utc>,
    /// A move's old start.
    #[serde(serialize_with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub previous_starts_at: Option<DateTime<Utc>>,
    pub status: AppointmentStatus,
    pub calcom_sync_status: SyncStatus,
    /// The branch's zone, for the sentence.
    #[serde(skip)]
    pub time_zone: String,
}

/// The caller's or operator's view of who asks.
enum Who {
    Caller { call: Call, branch: Box<Branch>, customer: Option<Box<Customer>> },
    Operator { name: String, force: bool },
}

impl Who {
    fn changed_by(&self) -> ChangedBy {
        match self {
            Who::Caller { call, .. } => ChangedBy::Call { call_id: call.id },
            Who::Operator { name, .. } => ChangedBy::Operator { name: name.clone() },
        }
    }
    fn force(&self) -> bool {
        matches!(self, Who::Operator { force: true, .. })
    }
}

/// A call with its company and branch, and the customer its number is.
pub(crate) struct CallerScope {
    pub call: Call,
    pub company: CompanyId,
    pub branch: Branch,
    /// The E.164 the call came from, when it showed one.
    pub phone: Option<String>,
    pub customer: Option<Customer>,
}

/// The call `retell_call_id` names. A call Retell describes (`new`) that
/// is not known yet is registered when `register` gives the time (a write
/// that goes on), else only resolved (id 0: it booked nothing yet).
pub(crate) fn caller_scope(
    tx: &mut dyn Tx,
    retell_call_id: &str,
    new: Option<&NewCall>,
    register: Option<DateTime<Utc>>,
    config: &Config,
) -> Result<CallerScope> {
    let id = CallId(retell_call_id.trim().to_string());
    if id.0.is_empty() {
        return Err(Error::invalid("retellCallId", "call_id_required", "the call id is missing"));
    }
    let call = match (tx.call(&id)?, new, register) {
        (Some(call), _, _) => call,
        (None, Some(new), Some(now)) => register_call(tx, new, now)?,
        (None, Some(new), None) => resolve_call(tx, new)?.into_call(),
        (None, None, _) => return Err(Error::CallNotFound(id.0.clone())),
    };
    let company = call.company_id.ok_or_else(|| Error::CallMissingCompany(id.0.clone()))?;
    let branch_id = call.branch_id.ok_or_else(|| Error::CallMissingBranch(id.0.clone()))?;
    let branch = tx.branch(branch_id)?.ok_or(Error::BranchNotFound(branch_id.0))?;
    let phone = match classify_caller(call.from_number.as_deref(), branch_region(&branch, config)) {
        Caller::Known(phone) => Some(phone),
        Caller::Anonymous(_) => None,
    };
    let customer = match &phone {
        Some(phone) => tx.customer_by_phone(company, phone)?,
        None => None,
    };
    Ok(CallerScope { call, company, branch, phone, customer })
}

fn who(tx: &mut dyn Tx, request: &ChangeRequest, config: &Config, now: DateTime<Utc>) -> Result<Who> {
    match (&request.retell_call_id, &request.operator) {
        (Some(call), None) => {
            let register = request.confirmed.then_some(now);
            let scope = caller_scope(tx, call, request.call.as_ref(), register, config)?;
            Ok(Who::Caller { call: scope.call, branch: Box::new(scope.branch), customer: scope.customer.map(Box::new) })
        }
        (None, Some(name)) if !name.trim().is_empty() => {
            Error::check_length("operator", name, MAX_NAME)?;
            Ok(Who::Operator { name: name.trim().to_string(), force: request.force })
        }
        _ => Err(Error::invalid("by", "actor_required", "name the call or the operator asking, one of them")),
    }
}

/// May this caller see and change `a`? Their own customer's, or booked in this call.
pub fn caller_may_change(a: &Appointment, call: &Call, customer: Option<&Customer>) -> bool {
    Some(a.company_id) == call.company_id
        && (customer.is_some_and(|c| c.id == a.customer_id && c.company_id == a.company_id)
            || a.call_id == Some(call.id))
}

/// The last moment a policy lets an appointment starting at `starts_at` be
/// cancelled or moved (`None`: no limit).
pub fn deadline(notice_hours: Option<i64>, starts_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    notice_hours.map(|h| starts_at - Duration::hours(h.clamp(0, 24 * 366)))
}

/// The policy's verdict on a cancel at `now`.
pub fn check_cancel(policy: &ChangePolicy, a: &Appointment, now: DateTime<Utc>) -> Result<()> {
    match deadline(policy.min_cancel_notice_hours, a.starts_at) {
        Some(deadline) if now > deadline => Err(Error::TooLateToCancel { deadline }),
        _ => Ok(()),
    }
}

/// The policy's verdict on a move at `now`.
pub fn check_reschedule(policy: &ChangePolicy, a: &Appointment, now: DateTime<Utc>) -> Result<()> {
    if let Some(max) = policy.max_reschedules {
        if a.rescheduled_count >= max {
            return Err(Error::RescheduleLimitReached { max });
        }
    }
    match deadline(policy.min_reschedule_notice_hours, a.starts_at) {
        Some(deadline) if now > deadline => Err(Error::TooLateToReschedule { deadline }),
        _ => Ok(()),
    }
}

/// The appointment's local day and time of day.
fn local(a: &Appointment, tz: Tz) -> (NaiveDate, NaiveTime) {
    let t = a.starts_at.with_timezone(&tz);
    (t.date_naive(), t.time())
}

/// What the request names: a day (and time) in the branch's zone.
fn wanted_day(request: &ChangeRequest, tz: Tz, now: DateTime<Utc>) -> Result<Option<(NaiveDate, Option<NaiveTime>)>> {
    let Some(date) = request.date.as_deref().filter(|d| !d.trim().is_empty()) else { return Ok(None) };
    let today = now.with_timezone(&tz).date_naive();
    let day =
        parse_date(date, today).ok_or_else(|| Error::invalid("date", "invalid_date", "the date is not a date"))?;
    let time = match request.time.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) => Some(parse_time(t).ok_or_else(|| Error::invalid("time", "invalid_time", "the time is not a time"))?),
        None => None,
    };
    Ok(Some((day, time)))
}

/// Of a caller's upcoming confirmed appointments, the one the request
/// means; `multiple_found` with the ids, or not found.
pub fn pick(upcoming: &[Appointment], wanted: Option<(NaiveDate, Option<NaiveTime>)>, tz: Tz) -> Result<&Appointment> {
    let matches: Vec<&Appointment> = upcoming
        .iter()
        .filter(|a| match wanted {
            None => true,
            Some((day, time)) => {
                let (d, t) = local(a, tz);
                d == day && time.is_none_or(|wanted| wanted == t)
            }
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::AppointmentNotFound(0)),
        many => Err(Error::MultipleFound { appointments: many.iter().map(|a| a.id).collect() }),
    }
}

/// The appointment a request means, checked against who asks.
fn target(tx: &mut dyn Tx, who: &Who, request: &ChangeRequest, now: DateTime<Utc>) -> Result<Appointment> {
    match who {
        Who::Operator { .. } => {
            let id = request
                .appointment_id
                .map(AppointmentId)
                .ok_or_else(|| Error::invalid("appointmentId", "appointment_id_required", "name the appointment"))?;
            let company = tx.appointment_company(id)?.ok_or(Error::AppointmentNotFound(id.0))?;
            tx.appointment(company, id)?.ok_or(Error::AppointmentNotFound(id.0))
        }
        Who::Caller { call, branch, customer } => {
            let company = branch.company_id;
            if let Some(id) = request.appointment_id {
                let a = tx.appointment(company, AppointmentId(id))?.ok_or(Error::AppointmentNotFound(id))?;
                return if caller_may_change(&a, call, customer.as_deref()) {
                    Ok(a)
                } else {
                    Err(Error::CallerNotVerified)
                };
            }
            let tz = parse_timezone(&branch.timezone)?;
            let wanted = wanted_day(request, tz, now)?;
            let upcoming: Vec<Appointment> = tx
                .caller_appointments(company, customer.as_ref().map(|c| c.id), call.id, now, 50)?
                .into_iter()
                .filter(|a| a.status == AppointmentStatus::Confirmed && a.starts_at > now)
                .collect();
            match pick(&upcoming, wanted, tz) {
                Ok(a) => Ok(a.clone()),
                // A caller nobody knows, with nothing booked in this call: not verified.
                Err(Error::AppointmentNotFound(_)) if customer.is_none() && upcoming.is_empty() => {
                    Err(Error::CallerNotVerified)
                }
                Err(Error::AppointmentNotFound(_)) => {
                    Err(Error::AppointmentNotFound(request.appointment_id.unwrap_or(0)))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// A confirmation Retell retries: this call made this change already.
fn repeated(
    tx: &mut dyn Tx,
    who: &Who,
    request: &ChangeRequest,
    kind: ChangeKind,
    new_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<Appointment>> {
    let Who::Caller { call, branch, .. } = who else { return Ok(None) };
    let tz = parse_timezone(&branch.timezone)?;
    let wanted = wanted_day(request, tz, now)?;
    for change in tx.changes_by_call(branch.company_id, call.id)?.iter().rev() {
        if change.kind != kind || (kind == ChangeKind::Reschedule && change.to_starts_at != new_start) {
            continue;
        }
        let same = match (request.appointment_id, wanted) {
            (Some(id), _) => change.appointment_id.0 == id,
            (None, Some((day, time))) => {
                let t = change.from_starts_at.with_timezone(&tz);
                t.date_naive() == day && time.is_none_or(|w| w == t.time())
            }
            (None, None) => true,
        };
        let Some(a) = tx.appointment(branch.company_id, change.appointment_id)? else { continue };
        let still = match kind {
            ChangeKind::Cancel => a.status == AppointmentStatus::Cancelled,
            ChangeKind::Reschedule => Some(a.starts_at) == new_start && a.status == AppointmentStatus::Confirmed,
        };
        if same && still {
            return Ok(Some(a));
        }
    }
    Ok(None)
}

fn time_zone_of(tx: &mut dyn Tx, a: &Appointment) -> Result<(String, Tz)> {
    let branch = tx.branch(a.branch_id)?.ok_or(Error::BranchNotFound(a.branch_id.0))?;
    let tz = parse_timezone(&branch.timezone)?;
    Ok((branch.timezone, tz))
}

fn change_of(a: &Appointment, kind: ChangeKind, time_zone: String) -> Change {
    Change {
        appointment_id: a.id,
        kind,
        needs_confirmation: false,
        repeated: false,
        starts_at: a.starts_at,
        previous_starts_at: (kind == ChangeKind::Reschedule).then_some(a.previous_starts_at).flatten(),
        status: a.status,
        calcom_sync_status: a.calcom_sync_status,
        time_zone,
    }
}

fn policy_of(tx: &mut dyn Tx, a: &Appointment) -> Result<(ChangePolicy, Service)> {
    let company = tx.company(a.company_id)?.ok_or(Error::CompanyNotFound(a.company_id.0))?;
    let service = tx.service(a.service_id)?.ok_or(Error::ServiceNotFound(a.service_id.0))?;
    Ok((service.policy.over(company.policy), service))
}

fn check_reason(request: &ChangeRequest) -> Result<Option<String>> {
    let reason = request.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = reason {
        Error::check_length("reason", r, MAX_NOTE)?;
    }
    Ok(reason.map(str::to_string))
}

/// Inserts a job unless one of its kind is unfinished for the appointment.
fn ensure_job(tx: &mut dyn Tx, a: &Appointment, kind: JobKind, config: &Config, now: DateTime<Utc>) -> Result<()> {
    if tx.jobs_of(a.id)?.iter().any(|j| j.kind == kind && !j.state.is_final()) {
        return Ok(());
    }
    let job = NewJob {
        appointment_id: a.id,
        company_id: a.company_id,
        kind,
        max_attempts: config.policy.max_attempts,
        run_at: now,
    };
    tx.insert_job(&job, now).map(|_| ())
}

/// Cancels inside the caller's transaction.
pub(crate) fn cancel_in(
    tx: &mut dyn Tx,
    request: &ChangeRequest,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Change> {
    let reason = check_reason(request)?;
    let who = who(tx, request, config, now)?;
    let a = match target(tx, &who, request, now) {
        Ok(a) => a,
        // Nothing matches any more: this call may have cancelled it already (Retell retries).
        Err(e) => match repeated(tx, &who, request, ChangeKind::Cancel, None, now)? {
            Some(a) => {
                let (zone, _) = time_zone_of(tx, &a)?;
                return Ok(Change { repeated: true, ..change_of(&a, ChangeKind::Cancel, zone) });
            }
            None => return Err(e),
        },
    };
    let (zone, _) = time_zone_of(tx, &a)?;
    if a.status == AppointmentStatus::Cancelled {
        return Ok(Change { repeated: true, ..change_of(&a, ChangeKind::Cancel, zone) });
    }
    if a.starts_at <= now {
        return Err(Error::StartInPast(format_utc(&a.starts_at)));
    }
    let (policy, _) = policy_of(tx, &a)?;
    if !who.force() {
        check_cancel(&policy, &a, now)?;
    }
    if !request.confirmed {
        return Ok(Change { needs_confirmation: true, ..change_of(&a, ChangeKind::Cancel, zone) });
    }
    tx.lock(&[Lock::Appointment(a.id)])?;
    // As it is now, under the lock: a cancel that finished meanwhile (a
    // retried confirmation in another process) is this one, repeated.
    let a = tx.appointment(a.company_id, a.id)?.ok_or(Error::AppointmentNotFound(a.id.0))?;
    if a.status == AppointmentStatus::Cancelled {
        return Ok(Change { repeated: true, ..change_of(&a, ChangeKind::Cancel, zone) });
    }
    tx.cancel_appointment(a.company_id, a.id, now)?;
    // Jobs never sent are simply dropped; anything Cal.com may have (a
    // booking, or a create sent without an answer) gets a cancel job, which
    // waits for a create or a move still in flight.
    for kind in [JobKind::Create, JobKind::Reschedule, JobKind::UpdateAttendee] {
        tx.cancel_unsent_jobs(a.company_id, a.id, kind, now)?;
    }
    let in_flight = tx.jobs_of(a.id)?.iter().any(|j| j.kind == JobKind::Create && !j.state.is_final());
    if a.calcom_v2_booking_uid.is_some() || in_flight {
        ensure_job(tx, &a, JobKind::Cancel, config, now)?;
    }
    tx.insert_change(&AppointmentChange {
        appointment_id: a.id,
        company_id: a.company_id,
        kind: ChangeKind::Cancel,
        from_starts_at: a.starts_at,
        to_starts_at: None,
        by: who.changed_by(),
        reason,
        at: now,
    })?;
    let after = tx.appointment(a.company_id, a.id)?.ok_or(Error::AppointmentNotFound(a.id.0))?;
    Ok(change_of(&after, ChangeKind::Cancel, zone))
}

/// Moves inside the caller's transaction. `offered`: the free starts of the
/// new day just asked of Cal.com (the agent's live check, which already
/// leaves this appointment's own booking out); else what this call was
/// offered for that day, if anything.
pub(crate) fn reschedule_in(
    tx: &mut dyn Tx,
    request: &ChangeRequest,
    offered: Option<&Offered>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Change> {
    let reason = check_reason(request)?;
    let spec = request.new_start_spec().ok_or_else(|| {
        Error::invalid("newStart", "new_start_required", "give the new start, or a new date and time")
    })?;
    let who = who(tx, request, config, now)?;
    // The new start is read in the zone of the branch asking (a call's), or the appointment's.
    let a = match target(tx, &who, request, now) {
        Ok(a) => a,
        // Nothing matches any more: this call may have moved it already (Retell retries,
        // or the agent's question before a retried confirmation), read in the call's zone.
        Err(e) => {
            let zone = match &who {
                Who::Caller { branch, .. } => Some(parse_timezone(&branch.timezone)?),
                Who::Operator { .. } => None,
            };
            let to = zone.map(|tz| resolve_start(&spec, tz, now)).transpose().ok().flatten();
            match repeated(tx, &who, request, ChangeKind::Reschedule, to, now)? {
                Some(a) => {
                    let (zone, _) = time_zone_of(tx, &a)?;
                    return Ok(Change { repeated: true, ..change_of(&a, ChangeKind::Reschedule, zone) });
                }
                None => return Err(e),
            }
        }
    };
    let (zone, tz) = time_zone_of(tx, &a)?;
    if a.status == AppointmentStatus::Cancelled {
        return Err(Error::AppointmentCancelled(a.id.0));
    }
    if a.starts_at <= now {
        return Err(Error::StartInPast(format_utc(&a.starts_at)));
    }
    let new_start = resolve_start(&spec, tz, now)?;
    if new_start <= now {
        return Err(Error::StartInPast(format_utc(&new_start)));
    }
    if new_start > now + Duration::days(config.horizon_days) {
        return Err(config.beyond_horizon("newStart", "invalid_start"));
    }
    if new_start == a.starts_at {
        return Ok(Change { repeated: true, ..change_of(&a, ChangeKind::Reschedule, zone) });
    }
    let (policy, service) = policy_of(tx, &a)?;
    if !who.force() {
        check_reschedule(&policy, &a, now)?;
    }
    let day = new_start.with_timezone(&tz).date_naive();
    let remembered = match (offered, &who) {
        (Some(o), _) => Some(o.clone()),
        (None, Who::Caller { call, .. }) => tx.remembered_slots(call.id, service.id, day)?,
        (None, Who::Operator { .. }) => None,
    };
    let duration = occupied(service.duration_minutes, remembered.as_ref().and_then(|o| o.length_minutes));
    // The appointment, and the new start's slot when a rule counts it (as a booking's: see `booking_locks`).
    let mut locks = vec![Lock::Appointment(a.id)];
    locks.extend(slot_locks(service.id, new_start, service.capacity, remembered.as_ref().map(|_| duration)));
    tx.lock(&locks)?;
    // As it is now, under the lock (another process may have moved or cancelled it).
    let a = tx.appointment(a.company_id, a.id)?.ok_or(Error::AppointmentNotFound(a.id.0))?;
    if a.status == AppointmentStatus::Cancelled {
        return Err(Error::AppointmentCancelled(a.id.0));
    }
    check_free(tx, &a, &service, remembered.as_ref(), duration, new_start, tz)?;
    let moved = Change {
        starts_at: new_start,
        previous_starts_at: Some(a.starts_at),
        ..change_of(&a, ChangeKind::Reschedule, zone.clone())
    };
    if !request.confirmed {
        return Ok(Change { needs_confirmation: true, ..moved });
    }
    // Before the first sync the waiting create sends the new time; once
    // Cal.com has (or may have) a booking, a move job carries it there.
    let jobs = tx.jobs_of(a.id)?;
    let create_unsent =
        jobs.iter().any(|j| j.kind == JobKind::Create && j.state == JobState::Available && j.attempt == 0);
    let create_live = jobs.iter().any(|j| j.kind == JobKind::Create && !j.state.is_final());
    let in_calcom = a.calcom_v2_booking_uid.is_some() || (create_live && !create_unsent);
    let ends_at = new_start + Duration::minutes(service.duration_minutes);
    tx.move_appointment(a.company_id, a.id, new_start, ends_at, in_calcom || create_live, now)?;
    if in_calcom {
        ensure_job(tx, &a, JobKind::Reschedule, config, now)?;
    }
    tx.insert_change(&AppointmentChange {
        appointment_id: a.id,
        company_id: a.company_id,
        kind: ChangeKind::Reschedule,
        from_starts_at: a.starts_at,
        to_starts_at: Some(new_start),
        by: who.changed_by(),
        reason,
        at: now,
    })?;
    let after = tx.appointment(a.company_id, a.id)?.ok_or(Error::AppointmentNotFound(a.id.0))?;
    Ok(change_of(&after, ChangeKind::Reschedule, zone))
}

/// Every booking rule for a move's new start, the appointment's own place
/// left out: what the call was offered (or Cal.com just said), and capacity.
fn check_free(
    tx: &mut dyn Tx,
    a: &Appointment,
    service: &Service,
    remembered: Option<&Offered>,
    duration: Duration,
    new_start: DateTime<Utc>,
    tz: Tz,
) -> Result<()> {
    let day = new_start.with_timezone(&tz).date_naive();
    let others: Vec<Appointment> = local_appointments(tx, a.company_id, service.id, day, tz, duration)?
        .into_iter()
        .filter(|other| other.id != a.id)
        .collect();
    let free = remembered.as_ref().map(|o| free_starts(&o.starts, &others, service.capacity, duration));
    let alternatives = || free.as_deref().map_or_else(Vec::new, |f| nearest(f, new_start, 3));
    if free.as_ref().is_some_and(|f| !f.contains(&new_start)) {
        return Err(Error::SlotUnavailable { alternatives: alternatives() });
    }
    if let Some(capacity) = service.capacity {
        if others.iter().filter(|o| o.starts_at == new_start).count() as i64 >= capacity {
            return Err(Error::SlotUnavailable { alternatives: alternatives() });
        }
    }
    Ok(())
}

/// A caller's upcoming confirmed appointments (soonest first, at most
/// [`MAX_FOUND`]), narrowed to a local day when `date` is given.
pub(crate) fn find_in(
    tx: &mut dyn Tx,
    retell_call_id: &str,
    call: Option<&NewCall>,
    date: Option<&str>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<(Vec<Appointment>, CallerScope)> {
    let scope = caller_scope(tx, retell_call_id, call, None, config)?;
    let tz = parse_timezone(&scope.branch.timezone)?;
    let request = ChangeRequest { date: date.map(str::to_string), ..Default::default() };
    let wanted = wanted_day(&request, tz, now)?;
    let customer = scope.customer.as_ref().map(|c| c.id);
    let found: Vec<Appointment> = tx
        .caller_appointments(scope.company, customer, scope.call.id, now, 50)?
        .into_iter()
        .filter(|a| a.status == AppointmentStatus::Confirmed && a.starts_at > now)
        .filter(|a| wanted.is_none_or(|(day, _)| local(a, tz).0 == day))
        .take(MAX_FOUND)
        .collect();
    if found.is_empty() && scope.customer.is_none() {
        return Err(Error::CallerNotVerified);
    }
    Ok((found, scope))
}

/// A callback request, as the agent or an integration files it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackRequest {
    #[serde(alias = "retell_call_id", alias = "call_id")]
    pub retell_call_id: String,
    #[serde(alias = "customer_name")]
    pub customer_name: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// A number to call back on, used when the call showed none.
    #[serde(default)]
    pub phone: Option<String>,
    /// The call as Retell describes it, registered with the request when new.
    #[serde(skip)]
    pub call: Option<NewCall>,
}

pub(crate) fn callback_in(
    tx: &mut dyn Tx,
    request: &CallbackRequest,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Callback> {
    let name = request.customer_name.trim();
    if name.is_empty() {
        return Err(Error::invalid("customerName", "customer_name_required", "the customer's name is missing"));
    }
    Error::check_length("customerName", name, MAX_NAME)?;
    let reason = request.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    Error::check_length("reason", reason.unwrap_or_default(), MAX_NOTE)?;
    Error::check_length("phone", request.phone.as_deref().unwrap_or_default(), 64)?;
    let scope = caller_scope(tx, &request.retell_call_id, request.call.as_ref(), Some(now), config)?;
    let given = request.phone.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let region = branch_region(&scope.branch, config);
    let phone =
        scope.phone.clone().or_else(|| given.map(|p| normalize_phone(p, region).unwrap_or_else(|| p.to_string())));
    let new = NewCallback {
        company_id: scope.company,
        branch_id: Some(scope.branch.id),
        call_id: Some(scope.call.id),
        customer_name: name.to_string(),
        phone,
        reason: reason.map(str::to_string),
        now,
    };
    let id = tx.insert_callback(&new)?;
    tx.callback(id)?.ok_or(Error::CallbackNotFound(id.0))
}

/// What the agent is told when a call starts (`get_call_context`): today in
/// the branch's zone (language models get relative dates wrong), who calls,
/// and what can be booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallContext {
    /// `YYYY-MM-DD` in the branch's zone.
    pub today: String,
    pub weekday: String,
    pub time_zone: String,
    pub branch: String,
    pub known_caller: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    /// The caller's upcoming confirmed appointments.
    pub upcoming: usize,
    pub services: Vec<ServiceInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    pub service_id: ServiceId,
    pub name: String,
    pub duration_minutes: i64,
}

pub(crate) fn context_in(
    tx: &mut dyn Tx,
    retell_call_id: &str,
    call: Option<&NewCall>,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<CallContext> {
    let scope = caller_scope(tx, retell_call_id, call, None, config)?;
    let tz = parse_timezone(&scope.branch.timezone)?;
    let today = now.with_timezone(&tz).date_naive();
    let upcoming = match &scope.customer {
        Some(c) => tx
            .caller_appointments(scope.company, Some(c.id), scope.call.id, now, 50)?
            .iter()
            .filter(|a| a.status == AppointmentStatus::Confirmed && a.starts_at > now)
            .count(),
        None => 0,
    };
    let services = tx
        .services_of(scope.company)?
        .into_iter()
        .map(|s| ServiceInfo { service_id: s.id, name: s.name, duration_minutes: s.duration_minutes })
        .collect();
    Ok(CallContext {
        today: today.to_string(),
        weekday: today.format("%A").to_string(),
        time_zone: scope.branch.timezone.clone(),
        branch: scope.branch.name.clone(),
        known_caller: scope.customer.is_some(),
        customer_name: scope.customer.map(|c| c.name),
        upcoming,
        services,
    })
}

/// A company's appointments for a known phone (an operator's search).
pub(crate) fn by_phone_in(
    tx: &mut dyn Tx,
    company: CompanyId,
    phone: &str,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<Appointment>> {
    let region = crate::caller::region_of(&config.default_region);
    let e164 = normalize_phone(phone, region)
        .ok_or_else(|| Error::invalid("phone", "invalid_phone", "the phone number is not a number"))?;
    match tx.customer_by_phone(company, &e164)? {
        // A call id no appointment has: only the customer's own count.
        Some(customer) => tx.caller_appointments(company, Some(customer.id), crate::ids::CallDbId(-1), now, 50),
        None => Ok(Vec::new()),
    }
}
