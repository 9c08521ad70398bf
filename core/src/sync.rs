//! The sync worker: claims due outbox jobs with a lease and runs them against
//! Cal.com, with a client-side rate limit per API key, the shared circuit
//! breaker, and a lookup before any retried create so an appointment never
//! gets two Cal.com bookings. Time comes from the injected clock; nothing
//! here sleeps to wait out a backoff.

use crate::appointment::{cut_message, Appointment, AppointmentStatus, SyncOrigin};
use crate::breaker::{self, Admission, Breaker, BreakerPolicy, BreakerState, Outcome};
use crate::calcom::{
    build_create_payload, classify, key_match, ApiFailure, BookingQuery, CalBooking, CalcomApi, Endpoint, KeyMatch,
    Move, NewAttendee, RateLimitHeaders, ATTENDEES_THROTTLER, DEFAULT_BASE_URL, DEFAULT_THROTTLER,
};
use crate::callbook::{apply_in, Callbook};
use crate::company::{Branch, Company, Service};
use crate::customer::Customer;
use crate::email::is_valid_email;
use crate::ids::{AppointmentId, JobId};
use crate::queue::{retry_delay, transition, Job, JobEvent, JobKind, JobState, Policy};
use crate::ratelimit;
use crate::store::{self, SyncFailure, Tx};
use crate::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How a worker runs, every default in one place. The CLI, `serve`, the
/// Node addon and the C ABI pass their options through: it deserializes
/// from the Node option names (`calcomUrl`, `threads`, `timeoutMs`,
/// `idleMs`, `emailFallback`, `backoffMs`, …) and their snake_case forms.
/// The retry policy and the lease come from the `Callbook`'s `Config`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerConfig {
    /// Names the worker in `locked_by`.
    pub id: String,
    /// Jobs run at once (threads).
    pub threads: usize,
    /// Jobs claimed per round.
    pub batch: u32,
    /// Cal.com API base for companies that name none (`https://api.cal.com`).
    #[serde(alias = "calcom_url")]
    pub calcom_url: String,
    /// The attendee email when the customer has none and the company sets
    /// no template (Cal.com needs one).
    #[serde(alias = "email_fallback")]
    pub email_fallback: String,
    #[serde(skip)]
    pub breaker: BreakerPolicy,
    /// Client-side limit per API key (Cal.com's default: 120 a minute).
    #[serde(alias = "requests_per_minute")]
    pub requests_per_minute: u32,
    /// Per-request timeout of the HTTP client, in milliseconds (30 s).
    #[serde(alias = "timeout_ms")]
    pub timeout_ms: u64,
    /// How long `run` waits when nothing is due, in milliseconds (200).
    #[serde(alias = "idle_ms")]
    pub idle_ms: u64,
    /// Wake at once when a job is enqueued, where the store can tell
    /// (PostgreSQL `LISTEN/NOTIFY`); `idle_ms` is then the longest wait and
    /// polling the fallback. `false`: poll every `idle_ms` (true by default).
    pub listen: bool,
    /// Delays before retry n in milliseconds (the last repeats), instead of
    /// the policy's 1 s, 5 s, 30 s. `[0]`: retries are due at once.
    #[serde(alias = "backoff_ms")]
    pub backoff_ms: Option<Vec<u64>>,
    /// Seeds the backoff jitter.
    #[serde(skip)]
    pub seed: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: format!("worker-{}", std::process::id()),
            threads: 1,
            batch: 32,
            calcom_url: DEFAULT_BASE_URL.to_string(),
            email_fallback: crate::calcom::default_email_fallback(),
            breaker: BreakerPolicy::default(),
            requests_per_minute: 120,
            timeout_ms: 30_000,
            idle_ms: 200,
            listen: true,
            backoff_ms: None,
            seed: 0x5eed,
        }
    }
}

impl WorkerConfig {
    /// The policy a worker retries by: the `Callbook`'s, with `backoff_ms` if set.
    fn policy(&self, base: &Policy) -> Policy {
        match &self.backoff_ms {
            // At most a day each: longer is a typo, and chrono panics far beyond.
            Some(list) if !list.is_empty() => Policy {
                backoff: list.iter().map(|ms| Duration::milliseconds((*ms).min(86_400_000) as i64)).collect(),
                ..base.clone()
            },
            _ => base.clone(),
        }
    }
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SyncOutcome {
    /// Cal.com has it now (`adopted`: found by its key after a lost answer, not created again).
    Synced { adopted: bool },
    /// Done without a call (from Cal.com, already synced, nothing to update).
    Skipped { reason: String },
    /// The attempt failed and the job will run again.
    Retrying { code: String },
    /// Out of attempts or not retryable: on the manual-review list.
    Flagged { code: String },
    /// Not run now and no attempt used: the breaker is open or the rate limit is reached.
    Deferred { reason: String },
    /// The appointment was cancelled before it was synced.
    Cancelled,
    /// The lease was lost (or the job panicked): another worker will take it.
    Lost,
}

/// One finished job, for `Worker::on_event` listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncEvent {
    pub job_id: JobId,
    pub appointment_id: AppointmentId,
    pub kind: JobKind,
    pub attempt: u32,
    #[serde(flatten)]
    pub outcome: SyncOutcome,
}

/// Counts of one `run_once`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub jobs: u64,
    pub synced: u64,
    pub adopted: u64,
    pub skipped: u64,
    pub retried: u64,
    pub flagged: u64,
    pub deferred_breaker: u64,
    pub deferred_rate_limit: u64,
    pub cancelled: u64,
    pub lost: u64,
    /// Claimed but not started when the worker was stopped: handed back
    /// at once, no attempt used.
    pub released: u64,
    /// Rounds `run` could not claim because the store failed.
    pub storage_errors: u64,
    /// Idle waits of `run` that a new job's notification ended early.
    pub woken: u64,
}

impl RunReport {
    fn add(&mut self, outcome: &SyncOutcome) {
        self.jobs += 1;
        match outcome {
            SyncOutcome::Synced { adopted } => {
                self.synced += 1;
                self.adopted += u64::from(*adopted);
            }
            SyncOutcome::Skipped { .. } => self.skipped += 1,
            SyncOutcome::Retrying { .. } => self.retried += 1,
            SyncOutcome::Flagged { .. } => self.flagged += 1,
            SyncOutcome::Deferred { reason } if reason == "breaker_open" => self.deferred_breaker += 1,
            SyncOutcome::Deferred { .. } => self.deferred_rate_limit += 1,
            SyncOutcome::Cancelled => self.cancelled += 1,
            SyncOutcome::Lost => self.lost += 1,
        }
    }

    pub fn merge(&mut self, other: &RunReport) {
        self.jobs += other.jobs;
        self.synced += other.synced;
        self.adopted += other.adopted;
        self.skipped += other.skipped;
        self.retried += other.retried;
        self.flagged += other.flagged;
        self.deferred_breaker += other.deferred_breaker;
        self.deferred_rate_limit += other.deferred_rate_limit;
        self.cancelled += other.cancelled;
        self.lost += other.lost;
        self.released += other.released;
        self.storage_errors += other.storage_errors;
        self.woken += other.woken;
    }
}

/// A sliding-window limit per API key: at most `limit` requests in any 60 s.
/// Stricter than a token bucket with the same rate, so it never trips a
/// window-based server limit (a burst of 120 then 2/s would). Cal.com also
/// says on every answer how many requests the key has left until when (other
/// processes may use the key too): that budget is honoured as well.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limit: usize,
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Default)]
struct Window {
    sent: VecDeque<DateTime<Utc>>,
    blocked_until: Option<DateTime<Utc>>,
    /// What the server said last: requests left, until when.
    server: Option<(u32, DateTime<Utc>)>,
}

/// Requests per minute Cal.com allows `POST /v2/bookings/{uid}/attendees`.
pub const ATTENDEES_PER_MINUTE: u32 = 5;

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter { limit: per_minute.max(1) as usize, windows: Mutex::default() }
    }

    /// Takes `n` request slots at once, or says when enough free up.
    pub fn acquire(&self, key: &str, n: usize, now: DateTime<Utc>) -> std::result::Result<(), DateTime<Utc>> {
        self.acquire_within(key, self.limit as u32, n, now)
    }

    /// [`RateLimiter::acquire`] with a limit of this key's own (a throttled route).
    pub fn acquire_within(
        &self,
        key: &str,
        limit: u32,
        n: usize,
        now: DateTime<Utc>,
    ) -> std::result::Result<(), DateTime<Utc>> {
        let limit = limit.max(1) as usize;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let w = windows.entry(key.to_string()).or_default();
        if let Some(until) = w.blocked_until.filter(|u| *u > now) {
            return Err(until);
        }
        while w.sent.front().is_some_and(|t| *t + Duration::minutes(1) <= now) {
            w.sent.pop_front();
        }
        let n = n.clamp(1, limit);
        if w.sent.len() + n > limit {
            let frees = w.sent.get(w.sent.len() + n - limit - 1).copied();
            return Err(frees.map_or(now, |t| t + Duration::minutes(1)));
        }
        match w.server {
            Some((left, until)) if until > now && (left as usize) < n => return Err(until),
            Some((left, until)) if until > now => w.server = Some((left - n as u32, until)),
            _ => w.server = None,
        }
        w.sent.extend(std::iter::repeat_n(now, n));
        Ok(())
    }

    /// An answer's rate-limit headers: the key has `remaining` requests until `reset`.
    pub fn observe(&self, key: &str, seen: &RateLimitHeaders, now: DateTime<Utc>) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.entry(key.to_string()).or_default().server = Some((seen.remaining, now + seen.reset));
    }

    /// The server said 429: nobody uses this key until then.
    pub fn block(&self, key: &str, until: DateTime<Utc>) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.entry(key.to_string()).or_default().blocked_until = Some(until);
    }
}

type Listener = Box<dyn Fn(&SyncEvent) + Send + Sync>;

/// A worker running on its own threads ([`Worker::spawn`]).
#[derive(Debug)]
pub struct WorkerHandle {
    worker: Arc<Worker>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<RunReport>,
}

impl WorkerHandle {
    /// The running worker (its counters, e.g. `storage_errors`).
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Asks the worker to stop without waiting: jobs in hand finish their
    /// attempt, claimed ones not started are handed back.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops the worker and waits for it; what it did while running.
    pub fn stop(self) -> RunReport {
        self.signal_stop();
        self.thread.join().unwrap_or_default()
    }
}

pub struct Worker {
    book: Callbook,
    api: Arc<dyn CalcomApi>,
    config: WorkerConfig,
    policy: Policy,
    rng: Mutex<u64>,
    listeners: Vec<Listener>,
    storage_errors: AtomicU64,
    idle_waits: AtomicU64,
    /// Request slots taken ahead per rate bucket: (the last second they
    /// may be used in, how many are left).
    ahead: Mutex<HashMap<String, (i64, u32)>>,
    /// Jobs claimed by `run_jobs` and not started yet (how many slots to take ahead).
    backlog: AtomicUsize,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Everything a job needs, read in one snapshot.
struct Context {
    /// The company's Cal.com breaker as stored (`None`: never tripped).
    breaker: Option<Breaker>,
    appointment: Appointment,
    customer: Customer,
    service: Service,
    branch: Branch,
    company: Company,
}

impl Worker {
    pub fn new(book: Callbook, api: Arc<dyn CalcomApi>, config: WorkerConfig) -> Self {
        let rng = Mutex::new(config.seed);
        let policy = config.policy(&book.config().policy);
        let (storage_errors, idle_waits) = (AtomicU64::new(0), AtomicU64::new(0));
        let (ahead, backlog) = (Mutex::default(), AtomicUsize::new(0));
        Worker { book, api, config, policy, rng, listeners: Vec::new(), storage_errors, idle_waits, ahead, backlog }
    }

    /// A worker on the real Cal.com client, with the config's timeout.
    #[cfg(feature = "http")]
    pub fn http(book: Callbook, config: WorkerConfig) -> Self {
        let api = Arc::new(crate::calcom::HttpCalcom::new(std::time::Duration::from_millis(config.timeout_ms)));
        Worker::new(book, api, config)
    }

    /// Runs the worker on its own threads until [`WorkerHandle::stop`].
    pub fn spawn(self) -> Result<WorkerHandle> {
        let worker = Arc::new(self);
        let stop = Arc::new(AtomicBool::new(false));
        let (w, flag) = (Arc::clone(&worker), Arc::clone(&stop));
        let idle = std::time::Duration::from_millis(worker.config.idle_ms);
        let thread = std::thread::Builder::new()
            .name("callbook-worker".into())
            .spawn(move || w.run(&flag, idle))
            .map_err(|e| Error::Storage(format!("cannot start the worker thread: {e}")))?;
        Ok(WorkerHandle { worker, stop, thread })
    }

    /// Calls `listener` after every job (from the worker's threads: keep it short).
    pub fn on_event(mut self, listener: impl Fn(&SyncEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Box::new(listener));
        self
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Rounds `run` could not claim because the store failed, so far (for metrics).
    pub fn storage_errors(&self) -> u64 {
        self.storage_errors.load(Ordering::Relaxed)
    }

    /// Idle waits `run` has begun, so far: one more means it found nothing
    /// due and is waiting (for a notification or its poll interval).
    pub fn idle_waits(&self) -> u64 {
        self.idle_waits.load(Ordering::SeqCst)
    }

    /// Runs jobs until none is due: rescues jobs whose worker died on their
    /// last attempt, then claims and runs batches on `threads` threads.
    pub fn run_once(&self) -> Result<RunReport> {
        let mut report = RunReport::default();
        self.book.rescue_expired()?;
        loop {
            let jobs = self.book.claim_jobs(&self.config.id, self.config.batch)?;
            if jobs.is_empty() {
                return Ok(report);
            }
            report.merge(&self.run_jobs(jobs, None));
        }
    }

    /// Runs until `stop` is set, waiting `idle` (real time) when nothing is due.
    /// A job that is running when `stop` is set finishes its attempt first;
    /// claimed jobs not started yet are handed back at once (no attempt used).
    /// A storage error (a busy or briefly unavailable database) does not end
    /// the worker: it is counted in `storage_errors` and the loop goes on
    /// after `idle`; jobs it held are claimed again when their lease ends.
    ///
    /// With `listen` (the default) an idle wait ends as soon as a job is
    /// enqueued on a store that can say so (PostgreSQL `LISTEN/NOTIFY`):
    /// the listening starts before the first claim, so no job enqueued after
    /// a claim found nothing goes unheard. Elsewhere it polls every `idle`.
    pub fn run(&self, stop: &AtomicBool, idle: std::time::Duration) -> RunReport {
        let mut report = RunReport::default();
        if self.config.listen {
            // Cannot listen now: the store polls and tries again at its next wait.
            let _ = self.book.store().listen_for_jobs();
        }
        while !stop.load(Ordering::SeqCst) {
            let claimed =
                self.book.rescue_expired().and_then(|_| self.book.claim_jobs(&self.config.id, self.config.batch));
            match claimed {
                Ok(jobs) if !jobs.is_empty() => report.merge(&self.run_jobs(jobs, Some(stop))),
                Ok(_) => {
                    self.idle_waits.fetch_add(1, Ordering::SeqCst);
                    match self.config.listen {
                        true => report.woken += u64::from(self.book.store().wait_for_jobs(idle)),
                        false => std::thread::sleep(idle),
                    }
                }
                Err(_) => {
                    report.storage_errors += 1;
                    self.storage_errors.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(idle);
                }
            }
        }
        report
    }

    fn run_jobs(&self, jobs: Vec<Job>, stop: Option<&AtomicBool>) -> RunReport {
        let queue = Mutex::new(VecDeque::from(jobs));
        let report = Mutex::new(RunReport::default());
        let stopping = || stop.is_some_and(|s| s.load(Ordering::SeqCst));
        let next = || {
            if stopping() {
                return None;
            }
            let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            let job = queue.pop_front();
            self.backlog.store(queue.len(), Ordering::SeqCst);
            job
        };
        std::thread::scope(|scope| {
            for _ in 0..self.config.threads.max(1) {
                scope.spawn(|| {
                    while let Some(job) = next() {
                        let event = self.run_job(job);
                        report.lock().unwrap_or_else(|p| p.into_inner()).add(&event.outcome);
                        for listener in &self.listeners {
                            listener(&event);
                        }
                    }
                });
            }
        });
        self.backlog.store(0, Ordering::SeqCst);
        let mut report = report.into_inner().unwrap_or_else(|p| p.into_inner());
        let now = self.book.now();
        for job in queue.into_inner().unwrap_or_else(|p| p.into_inner()) {
            // Not started: back to the queue as it was, due now. If this write
            // fails, the lease runs out and the job is claimed again anyway.
            if self.book.finish_job(&job, JobEvent::Defer { until: now }, None).unwrap_or(false) {
                report.released += 1;
            }
        }
        report
    }

    /// Runs one claimed job. A panic inside leaves the job leased: it is
    /// claimed again when the lease runs out, like a job of a dead worker.
    pub fn run_job(&self, job: Job) -> SyncEvent {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.process(&job)))
            .unwrap_or(Ok(SyncOutcome::Lost))
            .unwrap_or(SyncOutcome::Lost);
        SyncEvent { job_id: job.id, appointment_id: job.appointment_id, kind: job.kind, attempt: job.attempt, outcome }
    }

    fn jitter(&self) -> f64 {
        let mut state = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn context(&self, job: &Job) -> Result<Context> {
        let (company_id, appointment_id) = (job.company_id, job.appointment_id);
        let base_url = self.config.calcom_url.clone();
        store::read(&**self.book.store(), |tx| {
            let appointment =
                tx.appointment(company_id, appointment_id)?.ok_or(Error::AppointmentNotFound(appointment_id.0))?;
            let missing = |what: &str| Error::Storage(format!("appointment {} has no {what}", appointment_id.0));
            let company = tx.company(company_id)?.ok_or_else(|| missing("company"))?;
            let breaker = match Endpoint::of(&company, &base_url) {
                Some(endpoint) => tx.breaker(&endpoint.breaker_key())?,
                None => None,
            };
            Ok(Context {
                breaker,
                customer: tx.customer(company_id, appointment.customer_id)?.ok_or_else(|| missing("customer"))?,
                service: tx.service(appointment.service_id)?.ok_or_else(|| missing("service"))?,
                branch: tx.branch(appointment.branch_id)?.ok_or_else(|| missing("branch"))?,
                company,
                appointment,
            })
        })
    }

    /// Finishes a job without a call to Cal.com.
    fn finish_quietly(&self, job: &Job, event: JobEvent, outcome: SyncOutcome) -> Result<SyncOutcome> {
        Ok(if self.book.finish_job(job, event, None)? { outcome } else { SyncOutcome::Lost })
    }

    fn process(&self, job: &Job) -> Result<SyncOutcome> {
        let ctx = self.context(job)?;
        let a = &ctx.appointment;
        let skip =
            |reason: &str| self.finish_quietly(job, JobEvent::Succeed, SyncOutcome::Skipped { reason: reason.into() });
        // A create sent before without a definite answer may have booked.
        let sent_before = job.attempt > 1 || job.last_error.is_some();
        let cancelled = a.status == AppointmentStatus::Cancelled;
        match job.kind {
            // Loop prevention: what came from Cal.com is never pushed back.
            JobKind::Create if a.sync_origin == SyncOrigin::Calcom => return skip("from_calcom"),
            JobKind::Create if a.calcom_v2_booking_uid.is_some() => return skip("already_synced"),
            JobKind::Create if cancelled && !sent_before => {
                return self.finish_quietly(job, JobEvent::Cancel, SyncOutcome::Cancelled)
            }
            // A cancel or a move acts on the booking a create or a move in
            // flight is making: it waits for them to finish.
            JobKind::Cancel | JobKind::Reschedule if self.in_flight(job)? => {
                return self.defer(job, self.book.now() + WAIT_FOR_IN_FLIGHT, "waiting_for_sync", None)
            }
            JobKind::Reschedule if cancelled => return skip("cancelled"),
            JobKind::UpdateAttendee | JobKind::Cancel | JobKind::Reschedule if a.calcom_v2_booking_uid.is_none() => {
                return skip("not_in_calcom")
            }
            JobKind::UpdateAttendee if ctx.customer.email.is_none() => return skip("no_email"),
            // The attendees endpoint's `@IsEmail()` refuses it: sending is a sure 400.
            JobKind::UpdateAttendee if !ctx.customer.email.as_deref().is_some_and(is_valid_email) => {
                return skip("invalid_email")
            }
            _ => {}
        }
        let Some(endpoint) = Endpoint::of(&ctx.company, &self.config.calcom_url) else {
            let failure = ApiFailure::Status {
                status: 401,
                message: "the company has no Cal.com API key".into(),
                retry_after: None,
            };
            return self.record(job, &ctx, Err(failure), false, None, None);
        };
        let breaker_key = endpoint.breaker_key();
        let now = self.book.now();
        // A closed breaker (the usual case) needs no read of its own to admit a call.
        let closed = ctx.breaker.as_ref().is_none_or(|b| b.state == BreakerState::Closed);
        // A create that was sent before without a definite answer (an earlier
        // attempt, or a probe that timed out) looks for its booking first.
        let lookup = job.kind == JobKind::Create && (job.attempt > 1 || job.last_error.is_some());
        // Adding an attendee has a throttler of its own (5 a minute) and
        // does not count against the key's default one.
        let (bucket, throttler, limit, requests) = match job.kind {
            JobKind::UpdateAttendee => (attendees_bucket(&breaker_key), ATTENDEES_THROTTLER, ATTENDEES_PER_MINUTE, 1),
            _ => (breaker_key.clone(), DEFAULT_THROTTLER, self.config.requests_per_minute, if lookup { 2 } else { 1 }),
        };
        // One write: the breaker's admission (when not closed) and the
        // request slots in the key's window shared by every process.
        let probe = match self.gate(&breaker_key, !closed, &bucket, limit, requests, now)? {
            Gate::Go { probe } => probe,
            Gate::BreakerOpen(until) => return self.defer(job, until, "breaker_open", None),
            Gate::RateLimited(until) => return self.defer(job, until, "rate_limit", None),
        };
        let answer = match job.kind {
            // Cancelled while a create without an answer was out: only look
            // for what it may have booked (the cancel job then cancels it).
            JobKind::Create if cancelled => match self.find_created(&ctx, &endpoint) {
                Ok(None) => return self.finish_quietly(job, JobEvent::Cancel, SyncOutcome::Cancelled),
                other => other,
            },
            JobKind::Create => self.create(lookup, &ctx, &endpoint),
            JobKind::Reschedule => self.reschedule(&ctx, &endpoint),
            JobKind::UpdateAttendee => {
                let attendee = NewAttendee {
                    name: ctx.customer.name.clone(),
                    email: ctx.customer.email.clone().unwrap_or_default(),
                    time_zone: ctx.branch.timezone.clone(),
                };
                let uid = a.calcom_v2_booking_uid.clone().unwrap_or_default();
                self.api.add_attendee(&endpoint, &uid, &attendee).map(|()| None)
            }
            JobKind::Cancel => {
                let uid = a.calcom_v2_booking_uid.clone().unwrap_or_default();
                let seat = a.calcom_v2_seat_uid.as_deref();
                match self.api.cancel_booking(&endpoint, &uid, seat, "cancelled by the caller") {
                    // A retried cancel whose first answer was lost: done all the same.
                    Err(ApiFailure::Status { status: 400, message, .. }) if is_cancelled_already(&message) => Ok(None),
                    other => other.map(|()| None),
                }
            }
        };
        // What Cal.com said about the key's budget: recorded with the outcome,
        // in the same write, for every process.
        let seen = self.api.observed_limit(&endpoint, throttler).map(|h| (bucket.clone(), h));
        // Slots taken ahead are no more than Cal.com says the key has left
        // (none after a 429).
        let left = match &answer {
            Err(ApiFailure::Status { status: 429, .. }) => Some(0),
            _ => seen.as_ref().map(|(_, h)| h.remaining),
        };
        if let Some(left) = left {
            self.cap_ahead(&bucket, left);
        }
        if let Err(ApiFailure::Status { status: 429, retry_after, message }) = &answer {
            // Rate limited: wait as told, without using an attempt. Cal.com's
            // 429 blocks the key for every process; our own (a second request
            // of a flow found no slot) only defers this job.
            let until =
                self.book.now() + retry_after.unwrap_or_else(|| Duration::seconds(60)).min(self.policy.max_retry_after);
            let block = (message != LOCAL_LIMIT).then(|| (bucket.clone(), until));
            self.note_breaker(&breaker_key, Outcome::Healthy, seen, block)?;
            return self.defer(job, until, "rate_limit", None);
        }
        let outcome = match &answer {
            Ok(_) => Outcome::Healthy,
            Err(failure) => classify(failure).breaker,
        };
        if probe && outcome == Outcome::Unhealthy {
            // The probe found Cal.com still down: that is the breaker's
            // business, not this appointment's, so no attempt is used.
            let reopened = self.note_breaker(&breaker_key, outcome, seen, None)?;
            let error = answer.err().map(|f| cut_message(&f.to_string()));
            return self.defer(job, reopened.open_until.unwrap_or(now), "breaker_open", error.as_deref());
        }
        // A healthy answer on a clean breaker changes nothing: no breaker write.
        let clean = ctx.breaker.as_ref().is_none_or(|b| b.state == BreakerState::Closed && b.consecutive_failures == 0);
        let breaker = (outcome == Outcome::Unhealthy || !clean).then_some((breaker_key, outcome));
        self.record(job, &ctx, answer, true, breaker, seen)
    }

    /// The attendee email for a customer without one: the company's
    /// template with the appointment in it (every caller an address of
    /// their own, so a per-booker limit never counts strangers together),
    /// else the worker's fallback.
    fn email_fallback(&self, ctx: &Context) -> String {
        ctx.company.fallback_email(ctx.appointment.id).unwrap_or_else(|| self.config.email_fallback.clone())
    }

    /// The create flow. A create sent before without a definite answer first
    /// looks for the booking that attempt may have made, by the key in its
    /// metadata. A refusal of the create may be the earlier request landing
    /// in between (a slow answer, a race): it looks once more before
    /// deciding when the create was sent before, and after every 409.
    fn create(
        &self,
        lookup: bool,
        ctx: &Context,
        endpoint: &Endpoint,
    ) -> std::result::Result<Option<Synced>, ApiFailure> {
        let a = &ctx.appointment;
        let Some(event_type_id) = ctx.service.calcom_event_type_id else {
            return Err(ApiFailure::Status {
                status: 400,
                message: "the service has no Cal.com event type".into(),
                retry_after: None,
            });
        };
        if lookup {
            if let Some(found) = self.find_mine(ctx, event_type_id, endpoint)? {
                return Ok(Some(found));
            }
        }
        let fallback = self.email_fallback(ctx);
        let payload = build_create_payload(a, &ctx.customer, &ctx.service, &ctx.branch, &fallback);
        match self.api.create_booking(endpoint, &payload) {
            Ok(booking) => Ok(Some(Synced::from(&booking, booking.seat_uid.clone(), false))),
            Err(failure) if maybe_ours(&failure, lookup) => match self.find_mine(ctx, event_type_id, endpoint)? {
                Some(found) => Ok(Some(found)),
                None => Err(failure),
            },
            Err(failure) => Err(failure),
        }
    }

    /// Is a create (or, for a cancel, a move) of this appointment unfinished?
    fn in_flight(&self, job: &Job) -> Result<bool> {
        let waits_for = |kind: JobKind| match job.kind {
            JobKind::Cancel => kind == JobKind::Create || kind == JobKind::Reschedule,
            _ => kind == JobKind::Create,
        };
        let jobs = self.book.jobs_of(job.appointment_id)?;
        Ok(jobs.iter().any(|j| j.id != job.id && waits_for(j.kind) && !j.state.is_final()))
    }

    /// The booking an unanswered create of a now cancelled appointment made, if any.
    fn find_created(&self, ctx: &Context, endpoint: &Endpoint) -> std::result::Result<Option<Synced>, ApiFailure> {
        match ctx.service.calcom_event_type_id {
            Some(event_type_id) => self.find_mine(ctx, event_type_id, endpoint),
            None => Ok(None),
        }
    }

    /// The move flow: Cal.com books the new time under a new uid and cancels
    /// the old booking. When an earlier attempt did that without an answer,
    /// Cal.com's refusal names the new booking: it is taken if it is at the
    /// wanted time, else moved on from.
    fn reschedule(&self, ctx: &Context, endpoint: &Endpoint) -> std::result::Result<Option<Synced>, ApiFailure> {
        let a = &ctx.appointment;
        let the_move = Move { start: a.starts_at, seat_uid: a.calcom_v2_seat_uid.clone(), reason: None };
        let seat = |b: &CalBooking| b.seat_uid.clone().or_else(|| a.calcom_v2_seat_uid.clone());
        let uid = a.calcom_v2_booking_uid.clone().unwrap_or_default();
        match self.api.reschedule_booking(endpoint, &uid, &the_move) {
            Ok(b) => Ok(Some(Synced::from(&b, seat(&b), false))),
            Err(ApiFailure::Status { status: 400, message, retry_after }) => {
                let Some(new_uid) = rescheduled_to(&message) else {
                    return Err(ApiFailure::Status { status: 400, message, retry_after });
                };
                self.take_slot(endpoint)?;
                let b = self.api.get_booking(endpoint, &new_uid)?;
                if starts_at(&b) == Some(a.starts_at) {
                    return Ok(Some(Synced::from(&b, seat(&b), true)));
                }
                self.take_slot(endpoint)?;
                let b = self.api.reschedule_booking(endpoint, &new_uid, &the_move)?;
                Ok(Some(Synced::from(&b, seat(&b), false)))
            }
            Err(failure) => Err(failure),
        }
    }

    /// One more request slot (in the window every process shares) for a
    /// flow that needs a second call; a local 429 (retried after the wait,
    /// no attempt used) when none is free or the store cannot say.
    fn take_slot(&self, endpoint: &Endpoint) -> std::result::Result<(), ApiFailure> {
        let now = self.book.now();
        let (bucket, limit) = (endpoint.breaker_key(), self.config.requests_per_minute);
        if self.use_ahead(&bucket, 1, now) {
            return Ok(());
        }
        let taken = store::write_background(&**self.book.store(), move |tx| {
            Ok(match ratelimit::take(&tx.rate_window(&bucket)?, limit, 1, now) {
                Ok(window) => tx.put_rate_window(&window, now).map(|()| None)?,
                Err(until) => Some(until),
            })
        });
        let wait = match taken {
            Ok(None) => return Ok(()),
            Ok(Some(until)) => until - now,
            Err(_) => Duration::seconds(1),
        };
        Err(ApiFailure::Status { status: 429, message: LOCAL_LIMIT.into(), retry_after: Some(wait) })
    }

    /// Looks for the booking an earlier create made: Cal.com cannot filter by
    /// metadata, so list the event type's bookings from the start on and
    /// match the key. `beforeEnd` filters on a booking's END and the length
    /// is Cal.com's own (it may differ from the local service's), so the
    /// window is a day past the start, read page by page.
    fn find_mine(
        &self,
        ctx: &Context,
        event_type_id: i64,
        endpoint: &Endpoint,
    ) -> std::result::Result<Option<Synced>, ApiFailure> {
        let a = &ctx.appointment;
        let mut query = BookingQuery {
            event_type_id,
            after_start: a.starts_at - Duration::minutes(1),
            before_end: a.starts_at + LOOKUP_SPAN,
            attendee_email: None,
            take: 250,
            skip: 0,
            oldest_first: false,
        };
        let mut ambiguous = false;
        for page in 0..LOOKUP_PAGES {
            if page > 0 {
                // Pages past the first are rare; each still keeps to the limit.
                self.take_slot(endpoint)?;
            }
            let found = self.api.find_bookings(endpoint, &query)?;
            for booking in &found.bookings {
                match key_match(booking, &a.idempotency_key) {
                    KeyMatch::Mine { seat_uid } => return Ok(Some(Synced::from(booking, seat_uid, true))),
                    KeyMatch::Unknown => ambiguous |= starts_at(booking) == Some(a.starts_at),
                    KeyMatch::NotMine => {}
                }
            }
            if !found.has_next_page {
                break;
            }
            query.skip += query.take;
        }
        if ambiguous {
            return Err(ApiFailure::Ambiguous(
                "a seated booking at this start carries no metadata; it may be this appointment's".into(),
            ));
        }
        Ok(None)
    }

    /// A slot taken ahead in this second, if one is left (no write).
    fn use_ahead(&self, bucket: &str, requests: u32, now: DateTime<Utc>) -> bool {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        match ahead.get_mut(bucket) {
            Some((last, left)) if now.timestamp() <= *last && *left >= requests => {
                *left -= requests;
                true
            }
            _ => false,
        }
    }

    /// At most `left` slots of `bucket` taken ahead stay usable.
    fn cap_ahead(&self, bucket: &str, left: u32) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, kept)) = ahead.get_mut(bucket) {
            *kept = (*kept).min(left);
        }
    }

    /// How many slots of `bucket` to take at once for a call of `requests`:
    /// on the key's default throttler, one more for each job this process
    /// holds (at most [`AHEAD_MAX`]); a route with a small limit of its own
    /// (attendees, 5 a minute) takes only what it sends.
    fn wanted(&self, bucket_is_default: bool, requests: u32) -> u32 {
        let held = u32::try_from(self.backlog.load(Ordering::SeqCst)).unwrap_or(u32::MAX);
        match bucket_is_default {
            true => requests.saturating_add(held).min(AHEAD_MAX).max(requests),
            false => requests,
        }
    }

    /// May this job call Cal.com now? A slot taken ahead in this second
    /// needs no write; else one write transaction: the breaker's admission
    /// when it is not closed (a probe is written only when the call goes
    /// out), then `requests` slots of `limit` (and up to one for each job
    /// this process holds, used until the end of the next second) in the window of
    /// `bucket` that every worker process shares (its row locked on the servers).
    fn gate(
        &self,
        key: &str,
        check_breaker: bool,
        bucket: &str,
        limit: u32,
        requests: u32,
        now: DateTime<Utc>,
    ) -> Result<Gate> {
        if !check_breaker && self.use_ahead(bucket, requests, now) {
            return Ok(Gate::Go { probe: false });
        }
        let most = self.wanted(bucket == key, requests);
        let (key, owned_bucket) = (key.to_string(), bucket.to_string());
        let policy = self.config.breaker.clone();
        let (gate, taken) = store::write_background(&**self.book.store(), move |tx| {
            let admission = match check_breaker {
                true => breaker::admit(&tx.breaker(&key)?.unwrap_or_else(|| Breaker::closed(&key, now)), now, &policy),
                false => Admission::Go,
            };
            if let Admission::Wait(until) = admission {
                return Ok((Gate::BreakerOpen(until), 0));
            }
            let (window, taken) =
                match ratelimit::take_up_to(&tx.rate_window(&owned_bucket)?, limit, requests, most, now) {
                    Ok(taken) => taken,
                    Err(until) => return Ok((Gate::RateLimited(until), 0)),
                };
            tx.put_rate_window(&window, now)?;
            Ok(match admission {
                Admission::Probe(probing) => {
                    tx.put_breaker(&probing)?;
                    (Gate::Go { probe: true }, taken)
                }
                _ => (Gate::Go { probe: false }, taken),
            })
        })?;
        if taken > requests {
            let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
            ahead.insert(bucket.to_string(), (ratelimit::ahead_usable_until(now), taken - requests));
        }
        Ok(gate)
    }

    /// Records a call's outcome on the shared breaker, with what the answer
    /// said about the key's budget and, after Cal.com's 429, the block of
    /// the key for every process, in one write; returns the breaker's new state.
    fn note_breaker(
        &self,
        key: &str,
        outcome: Outcome,
        seen: Option<(String, RateLimitHeaders)>,
        block: Option<(String, DateTime<Utc>)>,
    ) -> Result<Breaker> {
        let key = key.to_string();
        let policy = self.config.breaker.clone();
        let now = self.book.now();
        store::write_background(&**self.book.store(), move |tx| {
            note_limits(tx, seen.as_ref(), now)?;
            if let Some((bucket, until)) = &block {
                let window = ratelimit::block(&tx.rate_window(bucket)?, *until);
                tx.put_rate_window(&window, now)?;
            }
            breaker_in(tx, &key, outcome, now, &policy)
        })
    }

    fn defer(&self, job: &Job, until: DateTime<Utc>, reason: &str, error: Option<&str>) -> Result<SyncOutcome> {
        let outcome = SyncOutcome::Deferred { reason: reason.into() };
        Ok(if self.book.finish_job(job, JobEvent::Defer { until }, error)? { outcome } else { SyncOutcome::Lost })
    }

    /// Writes the attempt's result: job state, appointment sync fields and,
    /// when the job is discarded, the manual-review flag, in one transaction.
    fn record(
        &self,
        job: &Job,
        ctx: &Context,
        answer: std::result::Result<Option<Synced>, ApiFailure>,
        attempted: bool,
        breaker: Option<(String, Outcome)>,
        seen: Option<(String, RateLimitHeaders)>,
    ) -> Result<SyncOutcome> {
        let now = self.book.now();
        let job = job.clone();
        let policy = self.config.breaker.clone();
        let note = move |tx: &mut dyn Tx| -> Result<()> {
            note_limits(tx, seen.as_ref(), now)?;
            if let Some((key, outcome)) = &breaker {
                breaker_in(tx, key, *outcome, now, &policy)?;
            }
            Ok(())
        };
        let (company, appointment) = (job.company_id, ctx.appointment.id);
        let sent_start = ctx.appointment.starts_at;
        match answer {
            Ok(booked) => store::write_background(&**self.book.store(), move |tx| {
                note(tx)?;
                // Moved again while this move was out: run once more with the newest time.
                let moved_since = job.kind == JobKind::Reschedule
                    && tx.appointment(company, appointment)?.is_some_and(|now| now.starts_at != sent_start);
                let event = if moved_since { JobEvent::Defer { until: now } } else { JobEvent::Succeed };
                if !apply_in(tx, &job, &event, None, now)? {
                    return Ok(SyncOutcome::Lost);
                }
                let adopted = match &booked {
                    Some(s) => {
                        tx.record_sync_success(company, appointment, s.booking_id, &s.uid, s.seat_uid.as_deref(), now)?;
                        s.adopted
                    }
                    None => false,
                };
                Ok(SyncOutcome::Synced { adopted })
            }),
            Err(failure) => {
                let class = classify(&failure);
                let policy = &self.policy;
                let retry_after = match &failure {
                    ApiFailure::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let retry_at = now + retry_delay(policy, job.attempt, retry_after, self.jitter());
                let event = JobEvent::Fail { retryable: class.retryable && attempted, retry_at };
                let discarded =
                    transition(&job.snapshot(), &event, now).is_ok_and(|next| next.state == JobState::Discarded);
                let failure = SyncFailure {
                    code: class.code.clone(),
                    message: cut_message(&failure.to_string()),
                    flag: discarded,
                };
                let message = failure.message.clone();
                store::write_background(&**self.book.store(), move |tx: &mut dyn Tx| {
                    note(tx)?;
                    if !apply_in(tx, &job, &event, Some(&message), now)? {
                        return Ok(SyncOutcome::Lost);
                    }
                    if job.kind == JobKind::Create {
                        tx.record_sync_failure(company, appointment, &failure, now)?;
                    } else if failure.flag {
                        tx.flag_for_review(company, appointment, "sync_failed", now)?;
                    }
                    Ok(if failure.flag {
                        SyncOutcome::Flagged { code: failure.code.clone() }
                    } else {
                        SyncOutcome::Retrying { code: failure.code.clone() }
                    })
                })
            }
        }
    }
}

/// How far past its start a lookup reads (bookings are found by their end).
const LOOKUP_SPAN: Duration = Duration::hours(24);
/// Pages of 250 a lookup reads at most.
const LOOKUP_PAGES: u32 = 4;

/// The booking a create made or found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Synced {
    booking_id: i64,
    uid: String,
    seat_uid: Option<String>,
    /// Found by its key after a lost answer, not created now.
    adopted: bool,
}

impl Synced {
    fn from(booking: &CalBooking, seat_uid: Option<String>, adopted: bool) -> Self {
        Synced { booking_id: booking.id, uid: booking.uid.clone(), seat_uid, adopted }
    }
}

fn starts_at(booking: &CalBooking) -> Option<DateTime<Utc>> {
    booking.start.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// A create refusal that an earlier, unanswered create of the same
/// booking could explain: a client error (not a 429) after a create that
/// was sent before, or any 409 (Cal.com's conflict answers, `booking_conflict_error`).
fn maybe_ours(failure: &ApiFailure, sent_before: bool) -> bool {
    match failure {
        ApiFailure::Status { status: 409, .. } => true,
        ApiFailure::Status { status, .. } if sent_before && (400..500).contains(status) && *status != 429 => true,
        ApiFailure::Status { .. } => sent_before && classify(failure).code == "slot_unavailable",
        _ => false,
    }
}

/// How long a cancel or a move waits for a create or move in flight.
const WAIT_FOR_IN_FLIGHT: Duration = Duration::seconds(1);

/// The new booking's uid in Cal.com's refusal to move a booking that was
/// moved already ("… cancelled and rescheduled already to booking with
/// uid=NEW. You probably want …", `errors_400_reschedule_already_rescheduled`).
fn rescheduled_to(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("rescheduled already to booking with uid=")?;
    let uid: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    (!uid.is_empty()).then_some(uid)
}

/// Cal.com's refusal to cancel a booking that is cancelled
/// ("… because it has been cancelled already", `errors_400_cancel_already_cancelled.json`).
fn is_cancelled_already(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("cancelled already") || m.contains("already been cancelled")
}

/// Slots taken ahead at most in one write (see `Worker::gate`).
const AHEAD_MAX: u32 = 16;

/// The message of the 429 a flow's second request answers itself when the
/// shared window has no slot for it (not Cal.com's: the key is not blocked).
const LOCAL_LIMIT: &str = "local rate limit";

/// What the shared rate window and the breaker say about one call.
enum Gate {
    Go { probe: bool },
    BreakerOpen(DateTime<Utc>),
    RateLimited(DateTime<Utc>),
}

/// Records an answer's rate-limit headers in the key's shared window.
fn note_limits(tx: &mut dyn Tx, seen: Option<&(String, RateLimitHeaders)>, now: DateTime<Utc>) -> Result<()> {
    if let Some((bucket, headers)) = seen {
        let window = ratelimit::observe(&tx.rate_window(bucket)?, headers.remaining, headers.reset, now);
        tx.put_rate_window(&window, now)?;
    }
    Ok(())
}

fn attendees_bucket(breaker_key: &str) -> String {
    format!("{breaker_key}|{ATTENDEES_THROTTLER}")
}

/// Applies a call's outcome to the stored breaker inside `tx`; writes only a change.
fn breaker_in(
    tx: &mut dyn Tx,
    key: &str,
    outcome: Outcome,
    now: DateTime<Utc>,
    policy: &BreakerPolicy,
) -> Result<Breaker> {
    let current = tx.breaker(key)?.unwrap_or_else(|| Breaker::closed(key, now));
    let next = breaker::record(&current, outcome, now, policy);
    let unchanged = current.state == next.state
        && current.consecutive_failures == next.consecutive_failures
        && current.open_until == next.open_until;
    if !unchanged {
        tx.put_breaker(&next)?;
    }
    Ok(next)
}
