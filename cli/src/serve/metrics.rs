//! What `/metrics` exports, in Prometheus text format: booking latency,
//! bookings by caller kind, the agent's answers by function and result
//! (refusals by code), cancels and moves, sync outcomes by class, HTTP answers, Cal.com
//! webhooks, and, read from the store at each scrape, appointments by sync
//! status, jobs by state, the manual-review gauge and breaker states.

use callbook::rules::BreakerState;
use callbook::{Callbook, SyncEvent, SyncOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct One {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    function: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    outcome: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompanyLabel {
    company: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabel {
    company: String,
    kind: String,
}

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    booking_seconds: Histogram,
    bookings: Family<One, Counter>,
    http: Family<Route, Counter>,
    answers: Family<Answer, Counter>,
    changes: Family<One, Counter>,
    sync: Family<SyncLabels, Counter>,
    webhooks: Family<One, Counter>,
    appointments: Family<One, Gauge>,
    jobs: Family<One, Gauge>,
    manual_review: Gauge,
    breakers: Family<CompanyLabel, Gauge>,
    connections_refused: Counter,
    drift: Family<DriftLabel, Gauge>,
    storage_errors: Counter,
    storage_errors_seen: Arc<AtomicU64>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("callbook");
        // 50 µs to ~1.6 s: a booking is microseconds, a slow disk is not.
        let booking_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let m = Metrics {
            registry: Arc::default(),
            booking_seconds,
            bookings: Family::default(),
            http: Family::default(),
            answers: Family::default(),
            changes: Family::default(),
            sync: Family::default(),
            webhooks: Family::default(),
            appointments: Family::default(),
            jobs: Family::default(),
            manual_review: Gauge::default(),
            breakers: Family::default(),
            connections_refused: Counter::default(),
            drift: Family::default(),
            storage_errors: Counter::default(),
            storage_errors_seen: Arc::default(),
        };
        registry.register(
            "booking_duration_seconds",
            "Time to answer a Retell booking call (verify, parse, book, commit)",
            m.booking_seconds.clone(),
        );
        registry.register("bookings", "Confirmed bookings by caller (anonymous or known)", m.bookings.clone());
        registry.register("http_requests", "HTTP requests by route and status", m.http.clone());
        registry.register(
            "agent_answers",
            "Retell function calls by function and result (ok, or the refusal's code)",
            m.answers.clone(),
        );
        registry.register("appointment_changes", "Cancels and moves made by callers", m.changes.clone());
        registry.register("sync_jobs", "Sync jobs run, by outcome and error class", m.sync.clone());
        registry.register("calcom_webhooks", "Cal.com webhook deliveries by result", m.webhooks.clone());
        registry.register("appointments", "Appointments by Cal.com sync status", m.appointments.clone());
        registry.register("jobs", "Outbox jobs by state", m.jobs.clone());
        registry.register("manual_review", "Appointments waiting for a person", m.manual_review.clone());
        registry.register(
            "breaker_state",
            "Cal.com circuit breaker of each company's endpoint: 0 closed, 1 half-open, 2 open",
            m.breakers.clone(),
        );
        registry.register(
            "calcom_drift",
            "The last drift report (callbook calcom drift) per company, by kind",
            m.drift.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed on accept: the open-connection cap was reached",
            m.connections_refused.clone(),
        );
        registry.register(
            "worker_storage_errors",
            "Worker rounds that could not reach the store",
            m.storage_errors.clone(),
        );
        Metrics { registry: Arc::new(registry), ..m }
    }

    pub fn booked(&self, seconds: f64, anonymous: Option<bool>) {
        self.booking_seconds.observe(seconds);
        if let Some(anonymous) = anonymous {
            let name = if anonymous { "anonymous" } else { "known" };
            self.bookings.get_or_create(&One { name: name.into() }).inc();
        }
    }

    pub fn answered(&self, function: &str, result: &str) {
        self.answers.get_or_create(&Answer { function: function.into(), result: result.into() }).inc();
    }

    pub fn changed(&self, kind: &str) {
        self.changes.get_or_create(&One { name: kind.into() }).inc();
    }

    pub fn request(&self, route: &str, status: u16) {
        self.http.get_or_create(&Route { route: route.into(), status: status.to_string() }).inc();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn webhook(&self, result: &str) {
        self.webhooks.get_or_create(&One { name: result.into() }).inc();
    }

    pub fn sync_event(&self, event: &SyncEvent) {
        let (outcome, code) = match &event.outcome {
            SyncOutcome::Synced { adopted: true } => ("synced", "adopted".to_string()),
            SyncOutcome::Synced { adopted: false } => ("synced", String::new()),
            SyncOutcome::Skipped { reason } => ("skipped", reason.clone()),
            SyncOutcome::Retrying { code } => ("retrying", code.clone()),
            SyncOutcome::Flagged { code } => ("flagged", code.clone()),
            SyncOutcome::Deferred { reason } => ("deferred", reason.clone()),
            SyncOutcome::Cancelled => ("cancelled", String::new()),
            SyncOutcome::Lost => ("lost", String::new()),
        };
        self.sync.get_or_create(&SyncLabels { outcome: outcome.into(), code }).inc();
    }

    /// The text for one scrape; the store-backed gauges are read now.
    pub fn render(&self, book: &Callbook, calcom_base: &str, worker_storage_errors: u64) -> String {
        if let Ok(stats) = book.stats() {
            for (status, n) in &stats.appointments {
                self.appointments.get_or_create(&One { name: status.clone() }).set(*n as i64);
            }
            for (state, n) in &stats.jobs {
                self.jobs.get_or_create(&One { name: state.clone() }).set(*n as i64);
            }
            self.manual_review.set(stats.manual_review as i64);
        }
        for (company, state) in book.breaker_states(calcom_base).unwrap_or_default() {
            let value = match state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            self.breakers.get_or_create(&CompanyLabel { company: company.to_string() }).set(value);
        }
        for d in book.last_drift().unwrap_or_default() {
            for (kind, n) in [
                ("missing_locally", d.missing_locally),
                ("missing_in_calcom", d.missing_in_calcom),
                ("different_start", d.different_start),
                ("cancelled_one_side", d.cancelled_one_side),
            ] {
                let label = DriftLabel { company: d.company_id.to_string(), kind: kind.into() };
                self.drift.get_or_create(&label).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let seen = self.storage_errors_seen.swap(worker_storage_errors, Ordering::Relaxed);
        self.storage_errors.inc_by(worker_storage_errors.saturating_sub(seen));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
