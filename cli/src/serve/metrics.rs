//! What `/metrics` exports, in Prometheus text format: booking latency,
//! bookings by caller kind, the agent's answers by function and result
//! (refusals by code), cancels and moves, sync outcomes by class, HTTP answers, Cal.com
//! webhooks, and, read from the store at each scrape, appointments by sync
//! status, jobs by state, the manual-review gauge, breaker states, open
//! callbacks and the operations overview (`callbook_health_*`, the figures
//! of `Callbook::health` for 1h, 24h and 7d, per company and `company="all"`:
//! the same numbers `/admin/health` shows, whichever process is scraped).

use callbook::rules::BreakerState;
use callbook::{Callbook, Figures, SyncEvent, SyncOutcome, Window, TARGET_NAMES};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// A health figure's window and company (`all` for every company together).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    window: String,
    company: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallerLabels {
    window: String,
    company: String,
    caller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    window: String,
    company: String,
    quantile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    window: String,
    company: String,
    target: String,
}

type Ratio = Gauge<f64, AtomicU64>;

/// The `callbook_health_*` families: cleared and refilled at each scrape, so
/// a figure that has no value (no booking in the window) is absent.
#[derive(Clone, Debug, Default)]
struct HealthGauges {
    bookings: Family<CallerLabels, Gauge>,
    sync_success: Family<WindowLabels, Ratio>,
    manual_review: Family<WindowLabels, Ratio>,
    booking_latency: Family<QuantileLabels, Ratio>,
    sync_latency: Family<QuantileLabels, Ratio>,
    target_missed: Family<TargetLabels, Gauge>,
    pending_over_1h: Family<CompanyLabel, Gauge>,
    oldest_pending: Family<CompanyLabel, Gauge>,
}

impl HealthGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "health_bookings",
            "Bookings made in the window (overview, from the database), by caller",
            self.bookings.clone(),
        );
        registry.register(
            "health_sync_success_ratio",
            "Synced / (synced + failed) of the window's bookings; absent when none was tried",
            self.sync_success.clone(),
        );
        registry.register(
            "health_manual_review_ratio",
            "Share of the window's bookings flagged for manual review",
            self.manual_review.clone(),
        );
        registry.register(
            "health_booking_latency_seconds",
            "Booking latency of the window's bookings (core taking the request to its insert), by quantile",
            self.booking_latency.clone(),
        );
        registry.register(
            "health_sync_latency_seconds",
            "Booking to synced with Cal.com, of the window's bookings, by quantile",
            self.sync_latency.clone(),
        );
        registry.register(
            "health_target_missed",
            "1 when the figure named by `target` misses the design's target in the window",
            self.target_missed.clone(),
        );
        registry.register(
            "health_pending_over_1h",
            "Unfinished sync jobs created more than an hour ago",
            self.pending_over_1h.clone(),
        );
        registry.register(
            "health_oldest_pending_seconds",
            "Age of the oldest unfinished sync job (0: none)",
            self.oldest_pending.clone(),
        );
    }

    fn clear(&self) {
        self.bookings.clear();
        self.sync_success.clear();
        self.manual_review.clear();
        self.booking_latency.clear();
        self.sync_latency.clear();
        self.target_missed.clear();
        self.pending_over_1h.clear();
        self.oldest_pending.clear();
    }

    fn set(&self, window: &str, company: &str, f: &Figures) {
        let labels = || WindowLabels { window: window.into(), company: company.into() };
        for (caller, n) in [("anonymous", f.bookings_anonymous), ("known", f.bookings_known)] {
            let caller = CallerLabels { window: window.into(), company: company.into(), caller: caller.into() };
            self.bookings.get_or_create(&caller).set(n as i64);
        }
        if let Some(rate) = f.sync_success_rate {
            self.sync_success.get_or_create(&labels()).set(rate);
        }
        if let Some(rate) = f.manual_review_rate {
            self.manual_review.get_or_create(&labels()).set(rate);
        }
        let quantiles = [
            ("0.5", f.booking_latency_ms.p50, f.sync_latency_ms.p50),
            ("0.95", f.booking_latency_ms.p95, f.sync_latency_ms.p95),
            ("0.99", f.booking_latency_ms.p99, f.sync_latency_ms.p99),
        ];
        for (q, booking, sync) in quantiles {
            let labels = QuantileLabels { window: window.into(), company: company.into(), quantile: q.into() };
            if let Some(ms) = booking {
                self.booking_latency.get_or_create(&labels).set(ms / 1000.0);
            }
            if let Some(ms) = sync {
                self.sync_latency.get_or_create(&labels).set(ms / 1000.0);
            }
        }
        for target in TARGET_NAMES {
            let missed = f.targets_missed.iter().any(|m| m == target);
            let labels = TargetLabels { window: window.into(), company: company.into(), target: target.into() };
            self.target_missed.get_or_create(&labels).set(i64::from(missed));
        }
    }
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
    callbacks_open: Gauge,
    health: HealthGauges,
    /// One scrape at a time refills the health families.
    rendering: Arc<Mutex<()>>,
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
            callbacks_open: Gauge::default(),
            health: HealthGauges::default(),
            rendering: Arc::default(),
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
        registry.register("callbacks_open", "Callback requests nobody has marked done", m.callbacks_open.clone());
        m.health.register(&mut registry);
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
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(windows) = book.health_windows(&Window::STANDARD) {
            self.health.clear();
            for h in &windows {
                let window = h.window.to_string();
                self.health.set(&window, "all", &h.total);
                for c in &h.companies {
                    self.health.set(&window, &c.company_id.to_string(), &c.figures);
                }
            }
            // Not windowed: the same in every window's figures.
            if let Some(h) = windows.first() {
                self.callbacks_open.set(h.total.callbacks_open as i64);
                let not_windowed = std::iter::once(("all".to_string(), &h.total))
                    .chain(h.companies.iter().map(|c| (c.company_id.to_string(), &c.figures)));
                for (company, f) in not_windowed {
                    let label = CompanyLabel { company };
                    self.health.pending_over_1h.get_or_create(&label).set(f.pending_over_1h as i64);
                    self.health.oldest_pending.get_or_create(&label).set(f.oldest_pending_seconds);
                }
            }
        }
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
