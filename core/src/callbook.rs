//! [`Callbook`]: the entry point that ties a store, a clock and the
//! configuration to the rules. Every binding and the CLI go through it.

use crate::appointment::Appointment;
use crate::booking::{book_in, Booking, BookingRequest};
use crate::call::{Call, NewCall};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::customer::Customer;
use crate::ids::{AppointmentId, CompanyId, CustomerId};
use crate::import::{import_in, register_call, ImportData, ImportSummary};
use crate::queue::{transition, Job, JobEvent};
use crate::stats::Stats;
use crate::store::{self, OpenOptions, Store, Tx};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Callbook {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<Config>,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Callbook {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Callbook { store, clock: Arc::new(SystemClock), config: Arc::new(Config::default()) }
    }

    /// Opens (creating and migrating) a SQLite database file, durable by
    /// default; or, given a `postgres://` or `mysql://` URL, that database;
    /// or, given `":memory:"`, a fresh in-memory store that keeps nothing.
    pub fn open(target: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::open_with(target, &OpenOptions::default())
    }

    /// [`Callbook::open`] with options (`synchronous`).
    pub fn open_with(target: impl AsRef<std::path::Path>, options: &OpenOptions) -> Result<Self> {
        let book = Self::new(crate::store::open(target.as_ref(), options)?);
        Ok(match options.horizon_days {
            Some(days) => {
                let config = Config { horizon_days: days.max(1), ..book.config().clone() };
                book.with_config(config)
            }
            None => book,
        })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64> {
        self.store.schema_version()
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_config(mut self, config: Config) -> Self {
        self.config = Arc::new(config);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn config_arc(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Books an appointment for a call: one transaction, no network.
    pub fn book(&self, request: &BookingRequest) -> Result<Booking> {
        let request = request.clone();
        let (config, clock) = (Arc::clone(&self.config), Arc::clone(&self.clock));
        let now = self.now();
        store::write(&*self.store, move |tx| book_in(tx, &request, &config, now, &*clock))
    }

    /// Registers a call (a no-op returning the known call when it exists).
    pub fn register_call(&self, call: &NewCall) -> Result<Call> {
        let call = call.clone();
        let now = self.now();
        store::write(&*self.store, move |tx| register_call(tx, &call, now))
    }

    /// Loads companies, branches, services and calls in one transaction.
    pub fn import(&self, data: &ImportData) -> Result<ImportSummary> {
        let data = data.clone();
        let now = self.now();
        store::write(&*self.store, move |tx| import_in(tx, &data, now))
    }

    /// A cheap read: is the database there and readable? (`/healthz`)
    pub fn ping(&self) -> Result<()> {
        store::read(&*self.store, |tx| tx.company(CompanyId(0)).map(|_| ()))
    }

    pub fn stats(&self) -> Result<Stats> {
        store::read(&*self.store, |tx| Ok(Stats { breakers: tx.breakers()?, ..Stats::from(tx.counts()?) }))
    }

    /// An appointment by id, for the operator (who sees every tenant).
    pub fn appointment(&self, id: AppointmentId) -> Result<Appointment> {
        store::read(&*self.store, |tx| {
            let company = tx.appointment_company(id)?.ok_or(Error::AppointmentNotFound(id.0))?;
            tx.appointment(company, id)?.ok_or(Error::AppointmentNotFound(id.0))
        })
    }

    /// Every company, by id (the operator sees every tenant).
    pub fn companies(&self) -> Result<Vec<crate::company::Company>> {
        store::read(&*self.store, |tx| tx.companies())
    }

    /// A customer, scoped to its company.
    pub fn customer(&self, company: CompanyId, id: CustomerId) -> Result<Option<Customer>> {
        store::read(&*self.store, |tx| tx.customer(company, id))
    }

    /// The outbox jobs of an appointment, oldest first.
    pub fn jobs_of(&self, id: AppointmentId) -> Result<Vec<Job>> {
        store::read(&*self.store, |tx| tx.jobs_of(id))
    }

    /// Claims up to `limit` due jobs for `worker` with a lease of the policy's length.
    pub fn claim_jobs(&self, worker: &str, limit: u32) -> Result<Vec<Job>> {
        let now = self.now();
        let lease_until = now + self.config.policy.lease;
        let worker = worker.to_string();
        store::write_background(&*self.store, move |tx| tx.claim_jobs(now, limit, &worker, lease_until))
    }

    /// Applies an event to a job this worker holds. `Ok(false)`: the lease
    /// was lost and nothing was written.
    pub fn finish_job(&self, job: &Job, event: JobEvent, error: Option<&str>) -> Result<bool> {
        let job = job.clone();
        let error = error.map(str::to_string);
        let now = self.now();
        store::write_background(&*self.store, move |tx| apply_in(tx, &job, &event, error.as_deref(), now))
    }

    /// Discards running jobs whose lease ran out on their last attempt and
    /// flags their appointments for review. Returns how many.
    pub fn rescue_expired(&self) -> Result<usize> {
        let now = self.now();
        store::write_background(&*self.store, move |tx| {
            let jobs = tx.expired_exhausted_jobs(now, 1000)?;
            let mut rescued = 0;
            for job in &jobs {
                if apply_in(tx, job, &JobEvent::Expire, Some("lease expired on the last attempt"), now)? {
                    tx.flag_for_review(job.company_id, job.appointment_id, "sync_failed", now)?;
                    rescued += 1;
                }
            }
            Ok(rescued)
        })
    }
}

/// Decides a job's next state with the pure rule book and writes it under the lease.
pub(crate) fn apply_in(
    tx: &mut dyn Tx,
    job: &Job,
    event: &JobEvent,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool> {
    // While the lease token matches, the stored job is the one the worker
    // holds; `finish_job` checks that, so no read is needed first.
    match transition(&job.snapshot(), event, now) {
        Ok(next) => tx.finish_job(job.id, job.lease_token, &next, error, now),
        Err(_) => Ok(false),
    }
}
