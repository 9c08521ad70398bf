//! An in-memory store (`":memory:"`, tests, WASM). It keeps the same
//! constraints and lookups as the SQL schema's indexes, and can inject
//! faults: fail the n-th write operation, to show that a failed transaction
//! leaves nothing behind. A transaction works on a copy of the state that
//! costs a few pointers (persistent maps of shared rows), so a booking
//! among 20,000 costs what one among ten does.

use super::{
    open_work_of, CalcomChange, Counts, DriftCounts, HealthRow, NewAppointment, Offered, OpenWork, PullPlace,
    RememberedOffer, Store, SyncFailure, Tx, WriteFn,
};
use crate::appointment::{Appointment, AppointmentChange, AppointmentStatus, SyncOrigin, SyncStatus};
use crate::breaker::Breaker;
use crate::call::{Call, NewCall};
use crate::callback::{Callback, CallbackStatus, NewCallback};
use crate::company::{Branch, Company, Service};
use crate::customer::{Customer, NewCustomer};
use crate::ids::{AppointmentId, BranchId, CallDbId, CallId, CallbackId, CompanyId, CustomerId, JobId, ServiceId};
use crate::queue::{is_claimable, Job, JobKind, JobSnapshot, JobState, NewJob};
use crate::ratelimit::RateWindow;
use crate::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use imbl::{OrdMap, OrdSet, Vector};
use std::sync::atomic::AtomicI64;
#[cfg(feature = "fault-injection")]
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
struct State {
    companies: OrdMap<CompanyId, Company>,
    branches: OrdMap<BranchId, Branch>,
    services: OrdMap<ServiceId, Service>,
    calls: OrdMap<CallDbId, Row<Call>>,
    customers: OrdMap<CustomerId, Row<Customer>>,
    appointments: OrdMap<AppointmentId, Row<Appointment>>,
    jobs: OrdMap<JobId, Row<Job>>,
    breakers: OrdMap<String, Breaker>,
    rate_windows: OrdMap<String, RateWindow>,
    remembered: OrdMap<(CallDbId, ServiceId, NaiveDate), Offered>,
    changes: Vector<AppointmentChange>,
    callbacks: OrdMap<CallbackId, Callback>,
    pulls: OrdMap<(CompanyId, i64), PullPlace>,
    drift: OrdMap<CompanyId, DriftCounts>,
    // Indexes, as the SQL schema's (a booking looks each of these up).
    call_ids: OrdMap<String, CallDbId>,
    customer_phones: OrdMap<(CompanyId, String), CustomerId>,
    customer_emails: OrdMap<(CompanyId, String), CustomerId>,
    appointment_keys: OrdMap<(CompanyId, String), AppointmentId>,
    jobs_of: OrdSet<(AppointmentId, JobId)>,
}

/// A row the copies of the state share: copying a map (or the part of it a
/// write changes) copies pointers, not rows; a row is copied when written.
#[derive(Debug)]
struct Row<V>(Arc<V>);

impl<V: Clone> Row<V> {
    fn new(value: V) -> Self {
        Row(Arc::new(value))
    }
    fn value(&self) -> V {
        V::clone(&self.0)
    }
}

impl<V> Clone for Row<V> {
    fn clone(&self) -> Self {
        Row(Arc::clone(&self.0))
    }
}

impl<V> std::ops::Deref for Row<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.0
    }
}

impl<V: Clone> std::ops::DerefMut for Row<V> {
    fn deref_mut(&mut self) -> &mut V {
        Arc::make_mut(&mut self.0)
    }
}

/// Keeps everything in a `Mutex`; a write works on a copy that replaces the
/// state only when the work succeeds. The maps are persistent (imbl): a copy
/// costs a few pointers, and a write copies only the paths it changes.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Write operations left before an injected fault; negative = never.
    fault_in: AtomicI64,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore { state: Mutex::default(), fault_in: AtomicI64::new(-1) }
    }

    /// Makes the write operation after the next `n` fail with `injected_fault`
    /// (feature `fault-injection`, for tests).
    #[cfg(feature = "fault-injection")]
    pub fn fail_after_writes(&self, n: u32) {
        self.fault_in.store(i64::from(n), Ordering::SeqCst);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Store for MemoryStore {
    fn write(&self, mut work: WriteFn) -> Result<()> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut tx = MemoryTx { state: guard.clone(), fault_in: Some(&self.fault_in) };
        // A panicking write changes nothing (it worked on a copy) and answers `internal`.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut tx)))
            .unwrap_or_else(|_| Err(Error::Internal("the write panicked; nothing of it was kept".into())))?;
        *guard = tx.state;
        Ok(())
    }

    fn read(&self, work: &mut dyn FnMut(&mut dyn Tx) -> Result<()>) -> Result<()> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        work(&mut MemoryTx { state, fault_in: None })
    }
}

struct MemoryTx<'a> {
    state: State,
    /// `None` for a read snapshot: writing through it is an error.
    fault_in: Option<&'a AtomicI64>,
}

fn next_id<K: Ord + Copy, V>(map: &OrdMap<K, V>, id: impl Fn(&K) -> i64) -> i64 {
    map.keys().next_back().map_or(1, |k| id(k) + 1)
}

fn unique_violation(what: &str) -> Error {
    Error::Storage(format!("UNIQUE constraint failed: {what}"))
}

impl MemoryTx<'_> {
    fn writing(&self) -> Result<()> {
        let counter = self.fault_in.ok_or_else(|| Error::Storage("write in a read transaction".into()))?;
        #[cfg(feature = "fault-injection")]
        if counter.load(Ordering::SeqCst) >= 0 && counter.fetch_sub(1, Ordering::SeqCst) == 0 {
            counter.store(-1, Ordering::SeqCst);
            return Err(Error::InjectedFault("memory store write failed".into()));
        }
        let _ = counter;
        Ok(())
    }
}

impl MemoryTx<'_> {
    /// A Cal.com booking (or one seat of it) belongs to one appointment of a
    /// company, as the SQL stores' unique index has it.
    fn check_booking_unique(&self, company: CompanyId, id: AppointmentId, uid: &str, seat: Option<&str>) -> Result<()> {
        let taken = self.state.appointments.values().any(|a| {
            a.id != id
                && a.company_id == company
                && a.calcom_v2_booking_uid.as_deref() == Some(uid)
                && a.calcom_v2_seat_uid.as_deref().unwrap_or("") == seat.unwrap_or("")
        });
        if taken {
            return Err(unique_violation("appointments.company_id, calcom_v2_booking_uid, calcom_v2_seat_uid"));
        }
        Ok(())
    }

    fn appointment_mut(&mut self, company: CompanyId, id: AppointmentId) -> Option<&mut Appointment> {
        self.state.appointments.get_mut(&id).filter(|a| a.company_id == company).map(|a| &mut **a)
    }
}

impl Tx for MemoryTx<'_> {
    fn company(&mut self, id: CompanyId) -> Result<Option<Company>> {
        Ok(self.state.companies.get(&id).cloned())
    }
    fn companies(&mut self) -> Result<Vec<Company>> {
        Ok(self.state.companies.values().cloned().collect())
    }
    fn branch(&mut self, id: BranchId) -> Result<Option<Branch>> {
        Ok(self.state.branches.get(&id).cloned())
    }
    fn branch_by_phone(&mut self, phone: &str) -> Result<Option<Branch>> {
        Ok(self.state.branches.values().find(|b| b.phone_number.as_deref() == Some(phone)).cloned())
    }
    fn service(&mut self, id: ServiceId) -> Result<Option<Service>> {
        Ok(self.state.services.get(&id).cloned())
    }
    fn services_of(&mut self, company: CompanyId) -> Result<Vec<Service>> {
        Ok(self.state.services.values().filter(|s| s.company_id == company).cloned().collect())
    }
    fn branches_of(&mut self, company: CompanyId) -> Result<Vec<Branch>> {
        Ok(self.state.branches.values().filter(|b| b.company_id == company).cloned().collect())
    }
    fn upsert_company(&mut self, company: &Company, _now: DateTime<Utc>) -> Result<()> {
        self.writing()?;
        self.state.companies.insert(company.id, company.clone());
        Ok(())
    }
    fn upsert_branch(&mut self, branch: &Branch, _now: DateTime<Utc>) -> Result<()> {
        self.writing()?;
        if !self.state.companies.contains_key(&branch.company_id) {
            return Err(Error::Storage("FOREIGN KEY constraint failed".into()));
        }
        self.state.branches.insert(branch.id, branch.clone());
        Ok(())
    }
    fn upsert_service(&mut self, service: &Service, _now: DateTime<Utc>) -> Result<()> {
        self.writing()?;
        if !self.state.companies.contains_key(&service.company_id) {
            return Err(Error::Storage("FOREIGN KEY constraint failed".into()));
        }
        self.state.services.insert(service.id, service.clone());
        Ok(())
    }

    fn call(&mut self, id: &CallId) -> Result<Option<Call>> {
        Ok(self.state.call_ids.get(&id.0).and_then(|db| self.state.calls.get(db)).map(Row::value))
    }
    fn call_with_offers(&mut self, id: &CallId) -> Result<Option<(Call, Vec<RememberedOffer>)>> {
        let Some(call) = self.call(id)? else { return Ok(None) };
        let offers = (self.state.remembered.range((call.id, ServiceId(i64::MIN), NaiveDate::MIN)..))
            .take_while(|((c, _, _), _)| *c == call.id)
            .map(|((_, service_id, day), offered)| RememberedOffer {
                service_id: *service_id,
                day: *day,
                offered: offered.clone(),
            })
            .collect();
        Ok(Some((call, offers)))
    }
    fn insert_call(&mut self, call: &NewCall, _now: DateTime<Utc>) -> Result<CallDbId> {
        self.writing()?;
        if self.state.call_ids.contains_key(&call.retell_call_id.0) {
            return Err(unique_violation("calls.retell_call_id"));
        }
        let id = call.id.unwrap_or(CallDbId(next_id(&self.state.calls, |k| k.0)));
        if self.state.calls.contains_key(&id) {
            return Err(unique_violation("calls.id"));
        }
        self.state.call_ids.insert(call.retell_call_id.0.clone(), id);
        self.state.calls.insert(
            id,
            Row::new(Call {
                id,
                retell_call_id: call.retell_call_id.clone(),
                company_id: call.company_id,
                branch_id: call.branch_id,
                from_number: call.from_number.clone(),
                to_number: call.to_number.clone(),
                direction: call.direction.clone(),
            }),
        );
        Ok(id)
    }

    fn customer(&mut self, company: CompanyId, id: CustomerId) -> Result<Option<Customer>> {
        Ok(self.state.customers.get(&id).filter(|c| c.company_id == company).map(Row::value))
    }
    fn customer_by_phone(&mut self, company: CompanyId, phone: &str) -> Result<Option<Customer>> {
        let id = self.state.customer_phones.get(&(company, phone.to_string()));
        Ok(id.and_then(|id| self.state.customers.get(id)).map(Row::value))
    }
    fn customer_id_by_email(&mut self, company: CompanyId, email: &str) -> Result<Option<CustomerId>> {
        Ok(self.state.customer_emails.get(&(company, email.to_string())).copied())
    }
    fn insert_customer(&mut self, new: &NewCustomer) -> Result<CustomerId> {
        self.writing()?;
        if let Some(email) = &new.email {
            if self.customer_id_by_email(new.company_id, email)?.is_some() {
                return Err(unique_violation("customers.company_id, customers.email"));
            }
        }
        let id = CustomerId(next_id(&self.state.customers, |k| k.0));
        // The first customer of a phone is the one it finds (ids only grow).
        self.state.customer_phones.entry((new.company_id, new.phone.clone())).or_insert(id);
        if let Some(email) = &new.email {
            self.state.customer_emails.insert((new.company_id, email.clone()), id);
        }
        self.state.customers.insert(
            id,
            Row::new(Customer {
                id,
                company_id: new.company_id,
                name: new.name.clone(),
                email: new.email.clone(),
                phone: new.phone.clone(),
                source: new.source,
                anonymity_reason: new.anonymity_reason,
                created_at: new.now,
                updated_at: new.now,
            }),
        );
        Ok(id)
    }
    fn set_customer_email(
        &mut self,
        company: CompanyId,
        id: CustomerId,
        email: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writing()?;
        if self.customer_id_by_email(company, email)?.is_some_and(|other| other != id) {
            return Err(unique_violation("customers.company_id, customers.email"));
        }
        if let Some(c) = self.state.customers.get_mut(&id).filter(|c| c.company_id == company) {
            if let Some(old) = c.email.replace(email.to_string()) {
                self.state.customer_emails.remove(&(company, old));
            }
            c.updated_at = now;
            self.state.customer_emails.insert((company, email.to_string()), id);
        }
        Ok(())
    }

    fn appointment(&mut self, company: CompanyId, id: AppointmentId) -> Result<Option<Appointment>> {
        Ok(self.state.appointments.get(&id).filter(|a| a.company_id == company).map(Row::value))
    }
    fn appointment_by_key(&mut self, company: CompanyId, key: &str) -> Result<Option<Appointment>> {
        let id = self.state.appointment_keys.get(&(company, key.to_string()));
        Ok(id.and_then(|id| self.state.appointments.get(id)).map(Row::value))
    }
    fn insert_appointment(&mut self, new: &NewAppointment) -> Result<AppointmentId> {
        self.writing()?;
        if self.appointment_by_key(new.company_id, &new.idempotency_key)?.is_some() {
            return Err(unique_violation("appointments.company_id, appointments.idempotency_key"));
        }
        let id = AppointmentId(next_id(&self.state.appointments, |k| k.0));
        self.state.appointment_keys.insert((new.company_id, new.idempotency_key.clone()), id);
        self.state.appointments.insert(
            id,
            Row::new(Appointment {
                id,
                customer_id: new.customer_id,
                company_id: new.company_id,
                branch_id: new.branch_id,
                service_id: new.service_id,
                call_id: new.call_id,
                starts_at: new.starts_at,
                ends_at: new.ends_at,
                status: AppointmentStatus::Confirmed,
                calcom_sync_status: SyncStatus::Pending,
                sync_origin: new.sync_origin,
                metadata: new.metadata.clone(),
                calcom_v2_booking_id: None,
                calcom_v2_booking_uid: None,
                calcom_v2_seat_uid: None,
                calcom_webhook_at: None,
                rescheduled_count: 0,
                previous_starts_at: None,
                sync_error_code: None,
                sync_error_message: None,
                sync_attempt_count: 0,
                sync_verified_at: None,
                requires_manual_review: new.requires_manual_review,
                manual_review_flagged_at: new.requires_manual_review.then_some(new.now),
                review_reason: new.review_reason.clone(),
                review_resolved_at: None,
                review_resolved_by: None,
                review_note: None,
                idempotency_key: new.idempotency_key.clone(),
                booking_latency_us: new.booking_latency_us,
                created_at: new.now,
                updated_at: new.now,
            }),
        );
        Ok(id)
    }
    fn synced_future_appointments(
        &mut self,
        company: CompanyId,
        customer: CustomerId,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppointmentId>> {
        Ok(self
            .state
            .appointments
            .values()
            .filter(|a| {
                a.company_id == company
                    && a.customer_id == customer
                    && a.starts_at > now
                    && a.status == AppointmentStatus::Confirmed
                    && a.calcom_v2_booking_uid.is_some()
            })
            .map(|a| a.id)
            .collect())
    }
    fn flag_for_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writing()?;
        if let Some(a) = self.state.appointments.get_mut(&id).filter(|a| a.company_id == company) {
            a.requires_manual_review = true;
            a.manual_review_flagged_at = Some(now);
            a.review_reason = Some(reason.to_string());
            a.updated_at = now;
        }
        Ok(())
    }
    fn appointments_between(
        &mut self,
        company: CompanyId,
        service: ServiceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>> {
        let mut found: Vec<Appointment> = self
            .state
            .appointments
            .values()
            .filter(|a| a.company_id == company && a.service_id == service && a.status == AppointmentStatus::Confirmed)
            .filter(|a| a.starts_at >= from && a.starts_at < to)
            .map(Row::value)
            .collect();
        found.sort_by_key(|a| (a.starts_at, a.id));
        Ok(found)
    }
    fn remember_slots(
        &mut self,
        call: CallDbId,
        service: ServiceId,
        day: NaiveDate,
        offered: &Offered,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        self.writing()?;
        self.state.remembered.insert((call, service, day), offered.clone());
        Ok(())
    }
    fn remembered_slots(&mut self, call: CallDbId, service: ServiceId, day: NaiveDate) -> Result<Option<Offered>> {
        Ok(self.state.remembered.get(&(call, service, day)).cloned())
    }
    fn appointment_company(&mut self, id: AppointmentId) -> Result<Option<CompanyId>> {
        Ok(self.state.appointments.get(&id).map(|a| a.company_id))
    }

    fn appointments_by_booking_uid(&mut self, company: CompanyId, uid: &str) -> Result<Vec<Appointment>> {
        let holds = |a: &&Row<Appointment>| a.company_id == company && a.calcom_v2_booking_uid.as_deref() == Some(uid);
        Ok(self.state.appointments.values().filter(holds).map(Row::value).collect())
    }
    fn apply_calcom_change(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        change: &CalcomChange,
        delivered_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writing()?;
        if let CalcomChange::Rescheduled { uid, .. } = change {
            let seat = self.state.appointments.get(&id).and_then(|a| a.calcom_v2_seat_uid.clone());
            self.check_booking_unique(company, id, uid, seat.as_deref())?;
        }
        let Some(a) = self.appointment_mut(company, id) else { return Ok(()) };
        a.sync_origin = SyncOrigin::Calcom;
        a.calcom_webhook_at = Some(delivered_at);
        a.updated_at = now;
        match change {
            CalcomChange::Cancelled => {
                a.status = AppointmentStatus::Cancelled;
                let open: Vec<JobId> = (self.state.jobs.values())
                    .filter(|j| j.appointment_id == id && !j.state.is_final())
                    .map(|j| j.id)
                    .collect();
                for id in open {
                    if let Some(job) = self.state.jobs.get_mut(&id) {
                        job.state = JobState::Cancelled;
                        job.locked_until = None;
                        job.locked_by = None;
                        job.updated_at = now;
                    }
                }
            }
            CalcomChange::Rescheduled { booking_id, uid, starts_at, ends_at } => {
                a.previous_starts_at = Some(a.starts_at);
                a.starts_at = *starts_at;
                a.ends_at = *ends_at;
                a.calcom_v2_booking_uid = Some(uid.clone());
                a.calcom_v2_booking_id = booking_id.or(a.calcom_v2_booking_id);
            }
        }
        Ok(())
    }
    fn insert_change(&mut self, change: &AppointmentChange) -> Result<()> {
        self.writing()?;
        self.state.changes.push_back(change.clone());
        Ok(())
    }
    fn changes_of(&mut self, company: CompanyId, id: AppointmentId) -> Result<Vec<AppointmentChange>> {
        let of = |c: &&AppointmentChange| c.company_id == company && c.appointment_id == id;
        Ok(self.state.changes.iter().filter(of).cloned().collect())
    }

    fn changes_by_call(&mut self, company: CompanyId, call: CallDbId) -> Result<Vec<AppointmentChange>> {
        let by = |c: &&AppointmentChange| {
            c.company_id == company
                && matches!(c.by, crate::appointment::ChangedBy::Call { call_id } if call_id == call)
        };
        Ok(self.state.changes.iter().filter(by).cloned().collect())
    }
    fn caller_appointments(
        &mut self,
        company: CompanyId,
        customer: Option<CustomerId>,
        call: CallDbId,
        from: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Appointment>> {
        let mut found: Vec<Appointment> = self
            .state
            .appointments
            .values()
            .filter(|a| a.company_id == company && a.starts_at >= from)
            .filter(|a| Some(a.customer_id) == customer || a.call_id == Some(call))
            .map(Row::value)
            .collect();
        found.sort_by_key(|a| (a.starts_at, a.id));
        found.truncate(limit as usize);
        Ok(found)
    }
    fn cancel_appointment(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()> {
        self.writing()?;
        if let Some(a) = self.appointment_mut(company, id) {
            a.status = AppointmentStatus::Cancelled;
            a.updated_at = now;
        }
        Ok(())
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
        self.writing()?;
        if let Some(a) = self.appointment_mut(company, id) {
            a.previous_starts_at = Some(a.starts_at);
            a.starts_at = starts_at;
            a.ends_at = ends_at;
            a.rescheduled_count += 1;
            if pending {
                a.calcom_sync_status = SyncStatus::Pending;
            }
            a.updated_at = now;
        }
        Ok(())
    }
    fn cancel_unsent_jobs(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        kind: JobKind,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        self.writing()?;
        let mut n = 0;
        let unstarted: Vec<JobId> = (self.state.jobs.values())
            .filter(|j| {
                j.company_id == company
                    && j.appointment_id == id
                    && j.kind == kind
                    && j.state == JobState::Available
                    && j.attempt == 0
            })
            .map(|j| j.id)
            .collect();
        for id in unstarted {
            if let Some(job) = self.state.jobs.get_mut(&id) {
                job.state = JobState::Cancelled;
                job.updated_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    fn appointments_starting(
        &mut self,
        company: CompanyId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Appointment>> {
        let mut found: Vec<Appointment> = self
            .state
            .appointments
            .values()
            .filter(|a| a.company_id == company && a.starts_at >= from && a.starts_at < to)
            .map(Row::value)
            .collect();
        found.sort_by_key(|a| (a.starts_at, a.id));
        Ok(found)
    }
    fn pull_place(&mut self, company: CompanyId, event_type: i64) -> Result<Option<PullPlace>> {
        Ok(self.state.pulls.get(&(company, event_type)).copied())
    }
    fn put_pull_place(
        &mut self,
        company: CompanyId,
        event_type: i64,
        place: Option<PullPlace>,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        self.writing()?;
        match place {
            Some(p) => self.state.pulls.insert((company, event_type), p),
            None => self.state.pulls.remove(&(company, event_type)),
        };
        Ok(())
    }
    fn put_drift(&mut self, counts: &DriftCounts) -> Result<()> {
        self.writing()?;
        self.state.drift.insert(counts.company_id, *counts);
        Ok(())
    }
    fn drift(&mut self) -> Result<Vec<DriftCounts>> {
        Ok(self.state.drift.values().copied().collect())
    }

    fn insert_callback(&mut self, c: &NewCallback) -> Result<CallbackId> {
        self.writing()?;
        let id = CallbackId(next_id(&self.state.callbacks, |k| k.0));
        let callback = Callback {
            id,
            company_id: c.company_id,
            branch_id: c.branch_id,
            call_id: c.call_id,
            customer_name: c.customer_name.clone(),
            phone: c.phone.clone(),
            reason: c.reason.clone(),
            status: CallbackStatus::Open,
            created_at: c.now,
            done_at: None,
            done_by: None,
        };
        self.state.callbacks.insert(id, callback);
        Ok(id)
    }
    fn callback(&mut self, id: CallbackId) -> Result<Option<Callback>> {
        Ok(self.state.callbacks.get(&id).cloned())
    }
    fn callbacks(&mut self, status: Option<CallbackStatus>, limit: u32) -> Result<Vec<Callback>> {
        let wanted = |c: &&Callback| status.is_none_or(|s| c.status == s);
        Ok(self.state.callbacks.values().filter(wanted).take(limit as usize).cloned().collect())
    }
    fn finish_callback(&mut self, id: CallbackId, by: &str, now: DateTime<Utc>) -> Result<bool> {
        self.writing()?;
        match self.state.callbacks.get_mut(&id) {
            Some(c) if c.status == CallbackStatus::Open => {
                c.status = CallbackStatus::Done;
                c.done_at = Some(now);
                c.done_by = Some(by.to_string());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn insert_job(&mut self, new: &NewJob, now: DateTime<Utc>) -> Result<JobId> {
        self.writing()?;
        let duplicate = (self.state.jobs_of.range((new.appointment_id, JobId(i64::MIN))..))
            .take_while(|(a, _)| *a == new.appointment_id)
            .filter_map(|(_, j)| self.state.jobs.get(j))
            .any(|j| j.kind == new.kind && !j.state.is_final());
        if duplicate {
            return Err(unique_violation("sync_jobs.appointment_id, sync_jobs.kind"));
        }
        let id = JobId(next_id(&self.state.jobs, |k| k.0));
        self.state.jobs_of.insert((new.appointment_id, id));
        self.state.jobs.insert(
            id,
            Row::new(Job {
                id,
                appointment_id: new.appointment_id,
                company_id: new.company_id,
                kind: new.kind,
                state: JobState::Available,
                attempt: 0,
                max_attempts: new.max_attempts,
                run_at: new.run_at,
                locked_until: None,
                locked_by: None,
                lease_token: 0,
                last_error: None,
                created_at: now,
                updated_at: now,
            }),
        );
        Ok(id)
    }
    fn job(&mut self, id: JobId) -> Result<Option<Job>> {
        Ok(self.state.jobs.get(&id).map(Row::value))
    }
    fn jobs_of(&mut self, appointment: AppointmentId) -> Result<Vec<Job>> {
        Ok(self.state.jobs.values().filter(|j| j.appointment_id == appointment).map(Row::value).collect())
    }
    fn claim_jobs(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        self.writing()?;
        let mut due: Vec<&Row<Job>> = self.state.jobs.values().filter(|j| is_claimable(&j.snapshot(), now)).collect();
        due.sort_by_key(|j| (j.run_at, j.id));
        let ids: Vec<JobId> = due.iter().take(limit as usize).map(|j| j.id).collect();
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = self.state.jobs.get_mut(&id) {
                job.state = JobState::Running;
                job.attempt += 1;
                job.lease_token += 1;
                job.locked_until = Some(lease_until);
                job.locked_by = Some(worker.to_string());
                job.updated_at = now;
                claimed.push(Job::clone(job));
            }
        }
        Ok(claimed)
    }
    fn finish_job(
        &mut self,
        id: JobId,
        lease_token: i64,
        next: &JobSnapshot,
        last_error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.writing()?;
        let Some(job) = self.state.jobs.get_mut(&id) else { return Ok(false) };
        if job.state != JobState::Running || job.lease_token != lease_token {
            return Ok(false);
        }
        job.state = next.state;
        job.attempt = next.attempt;
        job.run_at = next.run_at;
        job.locked_until = next.locked_until;
        if next.locked_until.is_none() {
            job.locked_by = None;
        }
        if let Some(error) = last_error {
            job.last_error = Some(error.to_string());
        }
        job.updated_at = now;
        Ok(true)
    }
    fn expired_exhausted_jobs(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        Ok(self
            .state
            .jobs
            .values()
            .filter(|j| {
                j.state == JobState::Running && j.locked_until.is_some_and(|t| t <= now) && j.attempt >= j.max_attempts
            })
            .take(limit as usize)
            .map(Row::value)
            .collect())
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
        self.writing()?;
        self.check_booking_unique(company, id, uid, seat_uid)?;
        if let Some(a) = self.appointment_mut(company, id) {
            a.calcom_sync_status = SyncStatus::Synced;
            a.calcom_v2_booking_id = Some(booking_id);
            a.calcom_v2_booking_uid = Some(uid.to_string());
            a.calcom_v2_seat_uid = seat_uid.map(str::to_string);
            a.sync_verified_at = Some(now);
            a.sync_error_code = None;
            a.sync_error_message = None;
            a.updated_at = now;
        }
        Ok(())
    }
    fn record_sync_failure(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        failure: &SyncFailure,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writing()?;
        if let Some(a) = self.appointment_mut(company, id) {
            a.calcom_sync_status = SyncStatus::Failed;
            a.sync_error_code = Some(failure.code.clone());
            a.sync_error_message = Some(failure.message.clone());
            a.sync_attempt_count += 1;
            if failure.flag {
                a.requires_manual_review = true;
                a.manual_review_flagged_at = Some(now);
                a.review_reason = Some("sync_failed".into());
            }
            a.updated_at = now;
        }
        Ok(())
    }
    fn review_list(&mut self, limit: u32) -> Result<Vec<Appointment>> {
        let mut list: Vec<Appointment> =
            self.state.appointments.values().filter(|a| a.requires_manual_review).map(Row::value).collect();
        list.sort_by_key(|a| (a.manual_review_flagged_at, a.id));
        list.truncate(limit as usize);
        Ok(list)
    }
    fn resolve_review(
        &mut self,
        company: CompanyId,
        id: AppointmentId,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.writing()?;
        if let Some(a) = self.appointment_mut(company, id) {
            a.requires_manual_review = false;
            a.review_resolved_at = Some(now);
            a.review_resolved_by = Some(by.to_string());
            a.review_note = Some(note.to_string());
            a.updated_at = now;
        }
        Ok(())
    }
    fn reset_sync(&mut self, company: CompanyId, id: AppointmentId, now: DateTime<Utc>) -> Result<()> {
        self.writing()?;
        if let Some(a) = self.appointment_mut(company, id) {
            a.calcom_sync_status = SyncStatus::Pending;
            a.requires_manual_review = false;
            a.updated_at = now;
        }
        Ok(())
    }
    fn customer_company(&mut self, id: CustomerId) -> Result<Option<CompanyId>> {
        Ok(self.state.customers.get(&id).map(|c| c.company_id))
    }
    fn breaker(&mut self, key: &str) -> Result<Option<Breaker>> {
        Ok(self.state.breakers.get(key).cloned())
    }
    fn put_breaker(&mut self, breaker: &Breaker) -> Result<()> {
        self.writing()?;
        self.state.breakers.insert(breaker.key.clone(), breaker.clone());
        Ok(())
    }
    fn breakers(&mut self) -> Result<Vec<Breaker>> {
        Ok(self.state.breakers.values().cloned().collect())
    }

    fn counts(&mut self) -> Result<Counts> {
        let mut counts = Counts::default();
        let state = &self.state;
        let unfinished = |a: &Appointment| {
            (state.jobs_of.range((a.id, JobId(i64::MIN))..))
                .take_while(|(of, _)| *of == a.id)
                .any(|(_, j)| state.jobs.get(j).is_some_and(|j| !j.state.is_final()))
        };
        let owes_nothing = |a: &Appointment| {
            a.status == AppointmentStatus::Cancelled && a.calcom_sync_status == SyncStatus::Pending && !unfinished(a)
        };
        for status in SyncStatus::ALL {
            let n = (self.state.appointments.values())
                .filter(|a| a.calcom_sync_status == *status && !owes_nothing(a))
                .count() as u64;
            counts.appointments_by_sync_status.push((*status, n));
        }
        counts.cancelled_before_sync = state.appointments.values().filter(|a| owes_nothing(a)).count() as u64;
        for state in JobState::ALL {
            let n = self.state.jobs.values().filter(|j| j.state == *state).count() as u64;
            counts.jobs_by_state.push((*state, n));
        }
        counts.manual_review = self.state.appointments.values().filter(|a| a.requires_manual_review).count() as u64;
        counts.customers_anonymous = self.state.customers.values().filter(|c| c.is_anonymous()).count() as u64;
        counts.customers_known = self.state.customers.len() as u64 - counts.customers_anonymous;
        Ok(counts)
    }

    fn health_rows(&mut self, after: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<HealthRow>> {
        let state = &self.state;
        let rows = state
            .appointments
            .values()
            .filter(|a| a.created_at > after && a.created_at <= until && a.call_id.is_some());
        Ok(rows
            .map(|a| HealthRow {
                company_id: a.company_id,
                created_at: a.created_at,
                anonymous: state.customers.get(&a.customer_id).is_some_and(|c| c.is_anonymous()),
                cancelled: a.status == AppointmentStatus::Cancelled,
                sync_status: a.calcom_sync_status,
                flagged: a.manual_review_flagged_at.is_some(),
                booking_latency_us: a.booking_latency_us,
                sync_verified_at: a.sync_verified_at,
                rescheduled: a.rescheduled_count > 0,
            })
            .collect())
    }
    fn open_work(&mut self, overdue_at: DateTime<Utc>) -> Result<Vec<OpenWork>> {
        let mut out: Vec<OpenWork> = Vec::new();
        for a in self.state.appointments.values().filter(|a| a.requires_manual_review) {
            open_work_of(&mut out, a.company_id).manual_reviews += 1;
        }
        for c in self.state.callbacks.values().filter(|c| c.status == CallbackStatus::Open) {
            open_work_of(&mut out, c.company_id).callbacks += 1;
        }
        for j in self.state.jobs.values().filter(|j| !j.state.is_final()) {
            let work = open_work_of(&mut out, j.company_id);
            work.jobs_overdue += u64::from(j.created_at <= overdue_at);
            work.oldest_job = Some(work.oldest_job.map_or(j.created_at, |t| t.min(j.created_at)));
        }
        out.sort_by_key(|w| w.company_id);
        Ok(out)
    }
    fn rate_window(&mut self, key: &str) -> Result<RateWindow> {
        Ok(self.state.rate_windows.get(key).cloned().unwrap_or_else(|| RateWindow::new(key)))
    }
    fn put_rate_window(&mut self, window: &RateWindow, _now: DateTime<Utc>) -> Result<()> {
        self.writing()?;
        self.state.rate_windows.insert(window.key.clone(), window.clone());
        Ok(())
    }
}
