//! The booking path: a request from a call becomes a confirmed appointment,
//! its customer and one `calcom.create` outbox job, in one transaction, and
//! nothing in it waits for Cal.com.

use crate::appointment::{AppointmentStatus, SyncOrigin, SyncStatus};
use crate::call::Call;
use crate::caller::{classify_caller, phone_region, region_of, Caller};
use crate::clock::Clock;
use crate::company::Branch;
use crate::config::Config;
use crate::customer::{placeholder_phone, Customer, CustomerSource, NewCustomer};
use crate::email::{normalize_email, EmailInput};
use crate::error::{too_long, Problem, MAX_CALL_ID, MAX_EMAIL, MAX_NAME};
use crate::ids::{AppointmentId, CallDbId, CallId, CompanyId, CustomerId, ServiceId};
use crate::queue::{JobKind, NewJob};
use crate::start::{parse_timezone, resolve_start, start_problems, StartSpec};
use crate::store::lock::{booking_locks, slot_locks};
use crate::store::{NewAppointment, Tx};
use crate::utc::{format_utc, rfc3339};
use crate::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A booking as a voice agent asks for it. Field names are camelCase (the
/// Node and WASM form); the snake_case forms of the CLI are accepted too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingRequest {
    #[serde(alias = "retell_call_id", alias = "call_id")]
    pub retell_call_id: String,
    #[serde(alias = "customer_name")]
    pub customer_name: String,
    #[serde(default, alias = "customer_email")]
    pub customer_email: Option<String>,
    /// Optional when the company has exactly one service.
    #[serde(default, alias = "service_id")]
    pub service_id: Option<i64>,
    /// ISO 8601; or give `date` and `time` instead.
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

impl BookingRequest {
    /// The start as given: `start`, else `date` + `time`.
    pub fn start_spec(&self) -> Option<StartSpec> {
        match (&self.start, &self.date, &self.time) {
            (Some(s), _, _) => Some(StartSpec::Iso(s.clone())),
            (None, None, None) => None,
            (None, d, t) => {
                Some(StartSpec::DateTime { date: d.clone().unwrap_or_default(), time: t.clone().unwrap_or_default() })
            }
        }
    }
}

/// Every problem in a request that a booking would refuse before looking at
/// the database (empty when it is well formed). An email that is no address
/// is not a problem: the booking keeps it as raw text.
pub fn validate_booking_request(request: &BookingRequest) -> Vec<Problem> {
    let mut problems = Vec::new();
    if request.retell_call_id.trim().is_empty() {
        problems.push(Problem::new("retellCallId", "call_id_required", "the call id is missing"));
    }
    problems.extend(too_long("retellCallId", &request.retell_call_id, MAX_CALL_ID));
    let name = request.customer_name.trim();
    if name.is_empty() {
        problems.push(Problem::new("customerName", "customer_name_required", "the customer's name is missing"));
    } else if name.chars().count() > MAX_NAME {
        problems.push(Problem::new("customerName", "customer_name_too_long", "the name is longer than 200 characters"));
    }
    if let Some(email) = &request.customer_email {
        problems.extend(too_long("customerEmail", email, MAX_EMAIL));
    }
    for (field, text) in [("start", &request.start), ("date", &request.date), ("time", &request.time)] {
        problems.extend(text.as_deref().and_then(|t| too_long(field, t, 64)));
    }
    if request.service_id.is_some_and(|id| id <= 0) {
        problems.push(Problem::new("serviceId", "invalid_service_id", "the service id must be a positive number"));
    }
    if request.start.is_some() && (request.date.is_some() || request.time.is_some()) {
        problems.push(Problem::new("start", "ambiguous_start", "give either start, or date and time, not both"));
    } else {
        problems.extend(start_problems(request.start_spec().as_ref()));
    }
    problems
}

/// The answer to a booking: the same fields the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Booking {
    pub appointment_id: AppointmentId,
    pub customer_id: CustomerId,
    pub anonymous: bool,
    pub customer_phone: String,
    #[serde(serialize_with = "rfc3339")]
    pub starts_at: DateTime<Utc>,
    pub status: AppointmentStatus,
    pub calcom_sync_status: SyncStatus,
    /// The start was checked against free starts this call was offered
    /// (`check_availability`); `false`: booked without a check.
    #[serde(skip)]
    pub availability_checked: bool,
}

/// The key that makes a booking idempotent: (call, service, start).
pub fn idempotency_key(company: CompanyId, call: CallDbId, service: ServiceId, starts_at: DateTime<Utc>) -> String {
    format!("cb-{company}-{call}-{service}-{}", starts_at.timestamp())
}

/// The service a call books: the one named (it must belong to the company),
/// or the company's only service; else `service_required`.
pub(crate) fn service_for(
    tx: &mut dyn Tx,
    company: CompanyId,
    service_id: Option<i64>,
) -> Result<crate::company::Service> {
    let service = match service_id {
        Some(id) => tx.service(ServiceId(id))?.ok_or(Error::ServiceNotFound(id))?,
        None => {
            let mut services = tx.services_of(company)?;
            if services.len() != 1 {
                return Err(Error::ServiceRequired);
            }
            services.remove(0)
        }
    };
    if service.company_id != company {
        return Err(Error::ServiceNotInCompany { service: service.id.0, company: company.0 });
    }
    Ok(service)
}

/// Books inside the caller's transaction. Any error leaves the transaction
/// to be rolled back by the store: nothing of a failed booking is written.
/// `now` is when core took the request; `clock` tells, at the insert, how
/// long the booking took (kept for the operations overview).
pub(crate) fn book_in(
    tx: &mut dyn Tx,
    request: &BookingRequest,
    config: &Config,
    now: DateTime<Utc>,
    clock: &dyn Clock,
) -> Result<Booking> {
    book_with(tx, None, request, config, now, clock).map(|(booking, _)| booking)
}

/// [`book_in`] with the call when it was inserted in this transaction (so
/// it has no remembered answer and need not be read again), answering the
/// branch too (the agent's sentence is in its language).
pub(crate) fn book_with(
    tx: &mut dyn Tx,
    inserted: Option<Call>,
    request: &BookingRequest,
    config: &Config,
    now: DateTime<Utc>,
    clock: &dyn Clock,
) -> Result<(Booking, Branch)> {
    let problems = validate_booking_request(request);
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    let call_id = CallId(request.retell_call_id.trim().to_string());
    let (call, offers) = match inserted.filter(|c| c.retell_call_id == call_id) {
        Some(call) => (call, Vec::new()),
        None => tx.call_with_offers(&call_id)?.ok_or_else(|| Error::CallNotFound(call_id.0.clone()))?,
    };
    let company_id = call.company_id.ok_or_else(|| Error::CallMissingCompany(call_id.0.clone()))?;
    let branch_id = call.branch_id.ok_or_else(|| Error::CallMissingBranch(call_id.0.clone()))?;
    let branch = tx.branch(branch_id)?.ok_or(Error::BranchNotFound(branch_id.0))?;
    if branch.company_id != company_id {
        return Err(Error::BranchNotInCompany { branch: branch_id.0, company: company_id.0 });
    }
    let service = service_for(tx, company_id, request.service_id)?;
    let tz = parse_timezone(&branch.timezone)?;
    let spec = request.start_spec().ok_or_else(|| Error::invalid("start", "start_required", "give a start"))?;
    let starts_at = resolve_start(&spec, tz, now)?;
    if starts_at <= now {
        return Err(Error::StartInPast(format_utc(&starts_at)));
    }
    if starts_at > now + Duration::days(config.horizon_days) {
        return Err(config.beyond_horizon("start", "invalid_start"));
    }

    let key = idempotency_key(company_id, call.id, service.id, starts_at);
    let caller = classify_caller(call.from_number.as_deref(), branch_region(&branch, config));
    let email = normalize_email(request.customer_email.as_deref());
    // The answer this call was given (check_availability), read before the
    // locks: it is the call's own, nobody else writes it.
    let day = starts_at.with_timezone(&tz).date_naive();
    let remembered = offers.into_iter().find(|o| o.service_id == service.id && o.day == day).map(|o| o.offered);
    let duration = crate::slots::occupied(service.duration_minutes, remembered.as_ref().and_then(|o| o.length_minutes));
    // From here on, what the rules below read is locked: the key, the known
    // phone, the email, and the slot when a rule counts it.
    let phone = match &caller {
        Caller::Known(phone) => Some(phone.as_str()),
        Caller::Anonymous(_) => None,
    };
    let slot = slot_locks(service.id, starts_at, service.capacity, remembered.as_ref().map(|_| duration));
    tx.lock(&booking_locks(company_id, &key, phone, email.valid(), slot))?;
    if let Some(existing) = tx.appointment_by_key(company_id, &key)? {
        // A retried function call: answer with the first booking.
        let customer = tx
            .customer(company_id, existing.customer_id)?
            .ok_or_else(|| Error::Storage("appointment without its customer".into()))?;
        let booking = Booking {
            appointment_id: existing.id,
            customer_id: customer.id,
            anonymous: customer.is_anonymous(),
            customer_phone: customer.phone,
            starts_at: existing.starts_at,
            status: existing.status,
            calcom_sync_status: existing.calcom_sync_status,
            availability_checked: false,
        };
        return Ok((booking, branch));
    }

    // A start outside the remembered answer is refused before anything is
    // written, with the nearest free ones.
    let local = match (&remembered, service.capacity) {
        (None, None) => Vec::new(),
        _ => crate::slots::local_appointments(tx, company_id, service.id, day, tz, duration)?,
    };
    let free = remembered
        .as_ref()
        .map(|offered| crate::slots::free_starts(&offered.starts, &local, service.capacity, duration));
    let alternatives = || free.as_deref().map_or_else(Vec::new, |f| crate::slots::nearest(f, starts_at, 3));
    if free.as_ref().is_some_and(|f| !f.contains(&starts_at)) {
        return Err(Error::SlotUnavailable { alternatives: alternatives() });
    }
    // Local capacity, inside the booking's transaction: two callers cannot both take the last place.
    if let Some(capacity) = service.capacity {
        if local.iter().filter(|a| a.starts_at == starts_at).count() as i64 >= capacity {
            return Err(Error::SlotUnavailable { alternatives: alternatives() });
        }
    }

    let name = request.customer_name.trim();
    let resolved = resolve_customer(tx, company_id, call.id, &caller, name, &email, now)?;

    let metadata = metadata(&resolved.customer, &caller, &email, resolved.email_conflict);
    // A clock set back meanwhile would make it negative: none is kept then.
    let latency = (clock.now() - now).num_microseconds().filter(|us| *us >= 0);
    let appointment_id = tx.insert_appointment(&NewAppointment {
        customer_id: resolved.customer.id,
        company_id,
        branch_id,
        service_id: service.id,
        call_id: Some(call.id),
        starts_at,
        ends_at: starts_at + Duration::minutes(service.duration_minutes),
        sync_origin: SyncOrigin::Retell,
        metadata,
        requires_manual_review: resolved.email_conflict,
        review_reason: resolved.email_conflict.then(|| "email_conflict".to_string()),
        idempotency_key: key,
        booking_latency_us: latency,
        now,
    })?;
    tx.insert_job(
        &NewJob {
            appointment_id,
            company_id,
            kind: JobKind::Create,
            max_attempts: config.policy.max_attempts,
            run_at: now,
        },
        now,
    )?;
    if resolved.email_set {
        enqueue_attendee_updates(tx, company_id, resolved.customer.id, config, now)?;
    }
    let booking = Booking {
        appointment_id,
        customer_id: resolved.customer.id,
        anonymous: resolved.customer.is_anonymous(),
        customer_phone: resolved.customer.phone,
        starts_at,
        status: AppointmentStatus::Confirmed,
        calcom_sync_status: SyncStatus::Pending,
        availability_checked: remembered.is_some(),
    };
    Ok((booking, branch))
}

/// The region a branch's callers' national numbers are read in: its
/// country, else its own number's, else the configured default.
pub(crate) fn branch_region(branch: &crate::company::Branch, config: &Config) -> Option<phonenumber::country::Id> {
    branch
        .country
        .as_deref()
        .and_then(region_of)
        .or_else(|| branch.phone_number.as_deref().and_then(phone_region))
        .or_else(|| region_of(&config.default_region))
}

// ------------------------------------------------- who the caller is
//
// The security boundary: an anonymous caller always gets a new customer and
// is never matched by name or email; a known caller is matched by
// (company, E.164 phone).

/// What customer resolution decided for one booking.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub customer: Customer,
    /// The caller gave an email that belongs to another customer of the company.
    pub email_conflict: bool,
    /// A known customer's email went from NULL to a real address in this booking.
    pub email_set: bool,
}

/// Finds or creates the customer for a caller, inside the booking transaction.
pub(crate) fn resolve_customer(
    tx: &mut dyn Tx,
    company_id: CompanyId,
    call_db_id: CallDbId,
    caller: &Caller,
    name: &str,
    email: &EmailInput,
    now: DateTime<Utc>,
) -> Result<Resolved> {
    let given = email.valid();
    let (phone, source, anonymity_reason) = match caller {
        Caller::Known(phone) => {
            if let Some(existing) = tx.customer_by_phone(company_id, phone)? {
                return reuse(tx, existing, given, now);
            }
            (phone.clone(), CustomerSource::RetellWebhook, None)
        }
        // Never matched by anything: always a new customer.
        Caller::Anonymous(reason) => (
            placeholder_phone(name, call_db_id, now.timestamp()),
            CustomerSource::RetellWebhookAnonymous,
            Some(*reason),
        ),
    };
    // The email is only stored when nobody in the company has it.
    let email_conflict = match given {
        Some(e) => tx.customer_id_by_email(company_id, e)?.is_some(),
        None => false,
    };
    let new = NewCustomer {
        company_id,
        name: name.to_string(),
        email: given.filter(|_| !email_conflict).map(str::to_string),
        phone,
        source,
        anonymity_reason,
        now,
    };
    Ok(Resolved { customer: insert(tx, new)?, email_conflict, email_set: false })
}

/// A known customer calls again: a first email is set if it is free in the company.
fn reuse(tx: &mut dyn Tx, mut existing: Customer, given: Option<&str>, now: DateTime<Utc>) -> Result<Resolved> {
    let (Some(e), None) = (given, existing.email.as_ref()) else {
        return Ok(Resolved { customer: existing, email_conflict: false, email_set: false });
    };
    if let Some(other) = tx.customer_id_by_email(existing.company_id, e)? {
        return Ok(Resolved { email_conflict: other != existing.id, customer: existing, email_set: false });
    }
    tx.set_customer_email(existing.company_id, existing.id, e, now)?;
    existing.email = Some(e.to_string());
    existing.updated_at = now;
    Ok(Resolved { customer: existing, email_conflict: false, email_set: true })
}

fn insert(tx: &mut dyn Tx, new: NewCustomer) -> Result<Customer> {
    let id = tx.insert_customer(&new)?;
    Ok(Customer {
        id,
        company_id: new.company_id,
        name: new.name,
        email: new.email,
        phone: new.phone,
        source: new.source,
        anonymity_reason: new.anonymity_reason,
        created_at: new.now,
        updated_at: new.now,
    })
}

fn metadata(customer: &Customer, caller: &Caller, email: &EmailInput, email_conflict: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("customer_name".into(), json!(customer.name));
    m.insert("customer_email".into(), json!(email.valid()));
    m.insert("customer_phone".into(), json!(customer.phone));
    if let EmailInput::Invalid(raw) = email {
        m.insert("customer_email_raw".into(), json!(raw));
    }
    if email_conflict {
        m.insert("email_conflict".into(), json!(true));
    }
    if let Caller::Anonymous(reason) = caller {
        m.insert("anonymity_reason".into(), json!(reason.as_str()));
    }
    m
}

/// A customer's email went from NULL to an address: every future appointment
/// Cal.com already has gets a `calcom.update_attendee` job.
pub(crate) fn enqueue_attendee_updates(
    tx: &mut dyn Tx,
    company: CompanyId,
    customer: CustomerId,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut queued = 0;
    for appointment_id in tx.synced_future_appointments(company, customer, now)? {
        let pending =
            tx.jobs_of(appointment_id)?.iter().any(|j| j.kind == JobKind::UpdateAttendee && !j.state.is_final());
        if !pending {
            let job = NewJob {
                appointment_id,
                company_id: company,
                kind: JobKind::UpdateAttendee,
                max_attempts: config.policy.max_attempts,
                run_at: now,
            };
            tx.insert_job(&job, now)?;
            queued += 1;
        }
    }
    Ok(queued)
}
