//! The operations overview: how bookings and their sync to Cal.com went in a
//! window (the last hour, day, week), per company and in total, against the
//! original design's targets. Computed from the database at every call, so
//! the figures survive restarts and every process sees the same ones
//! (`/admin/health`, `/metrics`, `callbook health` agree).
//!
//! What each figure counts (appointments booked in a call and *created* in
//! the window; one made elsewhere, such as on Cal.com's own page, is no
//! booking of callbook's):
//! - bookings, anonymous or known by their customer;
//! - sync success rate: synced / (synced + failed) by their current
//!   `calcom_sync_status` (failed counts while it is still being retried, so
//!   an outage shows at once); pending ones and cancelled ones that never
//!   reached Cal.com are left out; `None` when nothing is left;
//! - manual-review rate: flagged for review at some point (resolved or
//!   not), over bookings;
//! - booking latency: `booking_latency_us` (core taking the request to its
//!   insert, waiting for the writer included; the commit is not);
//! - booking → synced: `sync_verified_at - created_at` of synced
//!   appointments never moved (a move's sync would count as the booking's).
//!
//! Not windowed: manual reviews and callbacks open, unfinished sync jobs
//! older than an hour and the oldest one's age, the breakers.
//! Percentiles are nearest-rank: the smallest value with at least p of the
//! values at or below it.

use crate::appointment::SyncStatus;
use crate::breaker::BreakerState;
use crate::callbook::Callbook;
use crate::ids::CompanyId;
use crate::store::{self, HealthRow, OpenWork};
use crate::utc::{rfc3339, rfc3339_opt};
use crate::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use serde::{Serialize, Serializer};

/// The longest window the overview reads (its rows are read one by one).
pub const MAX_WINDOW_DAYS: i64 = 90;

/// How far back the overview looks: `<n>m`, `<n>h` or `<n>d`, one minute to
/// 90 days. Written back as given where it can (`24h`, `7d`, `90m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    seconds: i64,
}

impl Window {
    pub const HOUR: Window = Window { seconds: 3600 };
    pub const DAY: Window = Window { seconds: 86_400 };
    pub const WEEK: Window = Window { seconds: 7 * 86_400 };
    /// The three the overview shows side by side.
    pub const STANDARD: [Window; 3] = [Window::HOUR, Window::DAY, Window::WEEK];

    /// `90m`, `1h`, `24h`, `7d`; else `invalid_window`.
    pub fn parse(text: &str) -> Result<Window> {
        let bad = || {
            Error::invalid(
                "window",
                "invalid_window",
                format!("a window is <n>m, <n>h or <n>d, from 1m to {MAX_WINDOW_DAYS}d (such as 1h, 24h, 7d)"),
            )
        };
        let text = text.trim();
        let unit = match text.chars().last() {
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(bad()),
        };
        let digits = &text[..text.len() - 1];
        if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let seconds = digits.parse::<i64>().map_err(|_| bad())? * unit;
        if !(60..=MAX_WINDOW_DAYS * 86_400).contains(&seconds) {
            return Err(bad());
        }
        Ok(Window { seconds })
    }

    pub fn seconds(self) -> i64 {
        self.seconds
    }

    pub fn duration(self) -> Duration {
        Duration::seconds(self.seconds)
    }

    /// How wide a chart bar is: the narrowest of 5 min, 15 min, 1 h, 6 h
    /// that gives at most 48 bars, else a day.
    pub fn bucket_seconds(self) -> i64 {
        [300, 900, 3600, 21_600].into_iter().find(|b| (self.seconds + b - 1) / b <= 48).unwrap_or(86_400)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.seconds;
        // 24h reads better than 1d; 48h and longer in days.
        if s % 86_400 == 0 && s >= 2 * 86_400 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else {
            write!(f, "{}m", s / 60)
        }
    }
}

impl std::str::FromStr for Window {
    type Err = Error;
    fn from_str(text: &str) -> Result<Window> {
        Window::parse(text)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The original design's health targets; a figure past its bound is a
/// target missed (coloured on the page, exit code 1 of `callbook health`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    /// Cal.com sync success at least this (95%).
    pub sync_success_rate_min: f64,
    /// Manual-review rate at most this (5%).
    pub manual_review_rate_max: f64,
    pub booking_p50_ms_max: f64,
    pub booking_p95_ms_max: f64,
    /// Booking → synced, p99 (2 s).
    pub sync_p99_ms_max: f64,
    /// A sync job unfinished for longer than this misses (an hour).
    pub pending_max_seconds: i64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            sync_success_rate_min: 0.95,
            manual_review_rate_max: 0.05,
            booking_p50_ms_max: 150.0,
            booking_p95_ms_max: 300.0,
            sync_p99_ms_max: 2000.0,
            pending_max_seconds: 3600,
        }
    }
}

/// The targets' names as `targets_missed` lists them.
pub const TARGET_NAMES: [&str; 6] =
    ["sync_success_rate", "manual_review_rate", "booking_p50", "booking_p95", "sync_p99", "pending_over_1h"];

/// Percentiles of a latency, in milliseconds; `None` without values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// How many values they are taken over.
    pub count: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Latency {
    /// From microseconds, in any order.
    pub fn of_micros(mut values: Vec<i64>) -> Latency {
        values.sort_unstable();
        let ms = |p| percentile(&values, p).map(|us| us as f64 / 1000.0);
        Latency { count: values.len() as u64, p50: ms(0.50), p95: ms(0.95), p99: ms(0.99) }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at
/// least `p` of them at or below it.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The figures of one company, or of all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub bookings: u64,
    pub bookings_anonymous: u64,
    pub bookings_known: u64,
    pub synced: u64,
    pub sync_failed: u64,
    /// Not tried yet, or not finished (left out of the success rate).
    pub sync_pending: u64,
    /// 0..1; `None` when no booking of the window was synced or failed.
    pub sync_success_rate: Option<f64>,
    /// Bookings of the window flagged for manual review at some point.
    pub manual_review_flagged: u64,
    /// 0..1; `None` without bookings.
    pub manual_review_rate: Option<f64>,
    /// On the review list now (any age).
    pub manual_reviews_open: u64,
    pub callbacks_open: u64,
    /// Unfinished sync jobs created more than an hour ago.
    pub pending_over_1h: u64,
    /// Age of the oldest unfinished sync job (0: none).
    pub oldest_pending_seconds: i64,
    pub booking_latency_ms: Latency,
    pub sync_latency_ms: Latency,
    /// Names from [`TARGET_NAMES`] this figure set misses.
    pub targets_missed: Vec<String>,
}

impl Figures {
    fn from_rows<'a>(rows: impl Iterator<Item = &'a HealthRow>, open: &[&OpenWork], now: DateTime<Utc>) -> Self {
        let mut f = Figures::default();
        let (mut booking_us, mut sync_us) = (Vec::new(), Vec::new());
        for row in rows {
            f.bookings += 1;
            if row.anonymous {
                f.bookings_anonymous += 1;
            }
            match row.sync_status {
                SyncStatus::Synced => f.synced += 1,
                SyncStatus::Failed => f.sync_failed += 1,
                // Cancelled before it reached Cal.com: nothing is owed.
                SyncStatus::Pending if row.cancelled => {}
                SyncStatus::Pending => f.sync_pending += 1,
            }
            f.manual_review_flagged += u64::from(row.flagged);
            booking_us.extend(row.booking_latency_us);
            if let (SyncStatus::Synced, Some(verified), false) =
                (row.sync_status, row.sync_verified_at, row.rescheduled)
            {
                sync_us.extend((verified - row.created_at).num_microseconds().filter(|us| *us >= 0));
            }
        }
        f.bookings_known = f.bookings - f.bookings_anonymous;
        let done = f.synced + f.sync_failed;
        f.sync_success_rate = (done > 0).then(|| f.synced as f64 / done as f64);
        f.manual_review_rate = (f.bookings > 0).then(|| f.manual_review_flagged as f64 / f.bookings as f64);
        f.booking_latency_ms = Latency::of_micros(booking_us);
        f.sync_latency_ms = Latency::of_micros(sync_us);
        for work in open {
            f.manual_reviews_open += work.manual_reviews;
            f.callbacks_open += work.callbacks;
            f.pending_over_1h += work.jobs_overdue;
            if let Some(oldest) = work.oldest_job {
                f.oldest_pending_seconds = f.oldest_pending_seconds.max((now - oldest).num_seconds().max(0));
            }
        }
        f
    }

    /// Which targets these figures miss (an undefined figure misses none).
    pub fn missed(&self, targets: &Targets) -> Vec<String> {
        let over = |v: Option<f64>, max: f64| v.is_some_and(|v| v > max);
        let checks = [
            self.sync_success_rate.is_some_and(|r| r < targets.sync_success_rate_min),
            over(self.manual_review_rate, targets.manual_review_rate_max),
            over(self.booking_latency_ms.p50, targets.booking_p50_ms_max),
            over(self.booking_latency_ms.p95, targets.booking_p95_ms_max),
            over(self.sync_latency_ms.p99, targets.sync_p99_ms_max),
            self.pending_over_1h > 0,
        ];
        TARGET_NAMES.iter().zip(checks).filter(|(_, missed)| *missed).map(|(name, _)| name.to_string()).collect()
    }
}

/// One company's figures, and the worst state of its Cal.com breakers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompanyHealth {
    pub company_id: CompanyId,
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub breaker: BreakerState,
}

/// A Cal.com circuit breaker (one per API base and key) and the companies
/// whose key it guards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointBreaker {
    /// The API base.
    pub endpoint: String,
    /// `<base>|<hash of the key>`, as `callbook stats` shows it.
    pub key: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    #[serde(serialize_with = "rfc3339_opt")]
    pub open_until: Option<DateTime<Utc>>,
    /// When it last changed.
    #[serde(serialize_with = "rfc3339")]
    pub since: DateTime<Utc>,
    pub companies: Vec<CompanyId>,
}

/// One bar of the overview's charts: the window's bookings created in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    #[serde(serialize_with = "rfc3339")]
    pub start: DateTime<Utc>,
    pub anonymous: u64,
    pub known: u64,
    pub synced: u64,
    pub failed: u64,
    pub pending: u64,
}

/// The overview for one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub window: Window,
    #[serde(serialize_with = "rfc3339")]
    pub since: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub until: DateTime<Utc>,
    /// Every company together.
    #[serde(flatten)]
    pub total: Figures,
    pub companies: Vec<CompanyHealth>,
    pub breakers: Vec<EndpointBreaker>,
    pub bucket_seconds: i64,
    /// Bookings and their sync status over the window, oldest bar first.
    pub series: Vec<Bucket>,
    pub targets: Targets,
}

fn worst(a: BreakerState, b: BreakerState) -> BreakerState {
    let rank = |s| match s {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

impl Callbook {
    /// The overview of the last `window` (see the module's notes).
    pub fn health(&self, window: Window) -> Result<Health> {
        self.health_windows(&[window])?.pop().ok_or_else(|| Error::Internal("no overview".into()))
    }

    /// The overview of several windows from one read: the rows of the
    /// longest are read once and every window is counted from them.
    pub fn health_windows(&self, windows: &[Window]) -> Result<Vec<Health>> {
        let now = self.now();
        let longest = windows.iter().max().copied().unwrap_or(Window::DAY);
        let targets = Targets::default();
        let overdue_at = now - Duration::seconds(targets.pending_max_seconds);
        let (companies, breakers, open, rows) = store::read(&**self.store(), |tx| {
            Ok((
                tx.companies()?,
                tx.breakers()?,
                tx.open_work(overdue_at)?,
                tx.health_rows(now - longest.duration(), now)?,
            ))
        })?;
        let breakers: Vec<EndpointBreaker> = breakers
            .into_iter()
            .map(|b| {
                let (endpoint, hash) = b.key.rsplit_once('|').unwrap_or((b.key.as_str(), ""));
                let guards = |c: &&crate::company::Company| {
                    c.calcom_api_key.as_ref().is_some_and(|k| crate::calcom::key_hash(k) == hash)
                        && c.calcom_api_base.as_deref().is_none_or(|base| base.trim_end_matches('/') == endpoint)
                };
                EndpointBreaker {
                    endpoint: endpoint.to_string(),
                    companies: companies.iter().filter(guards).map(|c| c.id).collect(),
                    key: b.key.clone(),
                    state: b.state,
                    consecutive_failures: b.consecutive_failures,
                    open_until: b.open_until,
                    since: b.updated_at,
                }
            })
            .collect();
        let out = windows
            .iter()
            .map(|window| {
                let since = now - window.duration();
                let inside: Vec<&HealthRow> = rows.iter().filter(|r| r.created_at > since).collect();
                let mut total = Figures::from_rows(inside.iter().copied(), &open.iter().collect::<Vec<_>>(), now);
                total.targets_missed = total.missed(&targets);
                let per_company = companies
                    .iter()
                    .map(|c| {
                        let mine = inside.iter().copied().filter(|r| r.company_id == c.id);
                        let work: Vec<&OpenWork> = open.iter().filter(|w| w.company_id == c.id).collect();
                        let mut figures = Figures::from_rows(mine, &work, now);
                        figures.targets_missed = figures.missed(&targets);
                        let breaker = breakers
                            .iter()
                            .filter(|b| b.companies.contains(&c.id))
                            .fold(BreakerState::Closed, |acc, b| worst(acc, b.state));
                        CompanyHealth { company_id: c.id, name: c.name.clone(), figures, breaker }
                    })
                    .collect();
                let (bucket_seconds, series) = series(&inside, since, *window);
                Health {
                    window: *window,
                    since,
                    until: now,
                    total,
                    companies: per_company,
                    breakers: breakers.clone(),
                    bucket_seconds,
                    series,
                    targets,
                }
            })
            .collect();
        Ok(out)
    }
}

/// The window's bookings in bars of [`Window::bucket_seconds`], oldest first.
fn series(rows: &[&HealthRow], since: DateTime<Utc>, window: Window) -> (i64, Vec<Bucket>) {
    let size = window.bucket_seconds();
    let n = (window.seconds() + size - 1) / size;
    let mut buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start: since + Duration::seconds(i * size),
            anonymous: 0,
            known: 0,
            synced: 0,
            failed: 0,
            pending: 0,
        })
        .collect();
    for row in rows {
        // Rows are after `since`: (created - since) > 0; the last instant falls in the last bar.
        let offset = (row.created_at - since).num_microseconds().unwrap_or(0).max(1) - 1;
        let i = (offset / (size * 1_000_000)).clamp(0, n - 1) as usize;
        let bucket = &mut buckets[i];
        if row.anonymous {
            bucket.anonymous += 1;
        } else {
            bucket.known += 1;
        }
        match row.sync_status {
            SyncStatus::Synced => bucket.synced += 1,
            SyncStatus::Failed => bucket.failed += 1,
            SyncStatus::Pending if row.cancelled => {}
            SyncStatus::Pending => bucket.pending += 1,
        }
    }
    (size, buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_print_back() {
        for (text, seconds, back) in [
            ("1h", 3600, "1h"),
            ("24h", 86_400, "24h"),
            ("7d", 604_800, "7d"),
            ("90m", 5400, "90m"),
            ("2d", 172_800, "2d"),
        ] {
            let w = Window::parse(text).expect(text);
            assert_eq!((w.seconds(), w.to_string()), (seconds, back.to_string()));
        }
        for bad in ["", "h", "0h", "24", "-1h", "1.5h", "91d", "1w", "999999999d", "30s"] {
            assert_eq!(Window::parse(bad).map_err(|e| e.code().to_string()), Err("invalid_window".into()), "{bad}");
        }
        assert_eq!([Window::HOUR, Window::DAY, Window::WEEK].map(Window::bucket_seconds), [300, 3600, 21_600]);
    }

    #[test]
    fn cancelled_and_moved_appointments_stay_out_of_what_they_would_distort() {
        let t = DateTime::parse_from_rfc3339("2030-01-01T08:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        let row = |sync_status, cancelled, rescheduled, verified_after_s: i64| HealthRow {
            company_id: CompanyId(1),
            created_at: t,
            anonymous: false,
            cancelled,
            sync_status,
            flagged: false,
            booking_latency_us: None,
            sync_verified_at: Some(t + Duration::seconds(verified_after_s)),
            rescheduled,
        };
        let rows = [
            row(SyncStatus::Pending, true, false, 0), // cancelled before Cal.com heard of it: owes nothing
            row(SyncStatus::Pending, false, false, 0), // waiting
            row(SyncStatus::Synced, false, true, 86_400), // moved a day later: its sync is the move's
            row(SyncStatus::Synced, false, false, 2),
        ];
        let f = Figures::from_rows(rows.iter(), &[], t + Duration::days(2));
        assert_eq!((f.bookings, f.sync_pending, f.synced, f.sync_success_rate), (4, 1, 2, Some(1.0)));
        assert_eq!((f.sync_latency_ms.count, f.sync_latency_ms.p99), (1, Some(2000.0)));
        assert_eq!((f.booking_latency_ms.count, f.booking_latency_ms.p50), (0, None));
        assert!(f.missed(&Targets::default()).is_empty(), "undefined figures miss nothing");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!([0.5, 0.95, 0.99, 1.0].map(|p| percentile(&v, p)), [Some(50), Some(95), Some(99), Some(100)]);
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[1, 2], 0.5), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
