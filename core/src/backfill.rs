//! Cal.com's side read back: a **backfill** holds every booking of the
//! companies' event types as an appointment (as `BOOKING_CREATED` would
//! have), page by page within the rate limit, resumable where it stopped;
//! a **drift report** compares Cal.com's bookings with the local
//! appointments for a window and says where they disagree.

use crate::appointment::{Appointment, AppointmentStatus};
use crate::calcom::{ApiFailure, BookingQuery, CalcomApi, Endpoint, DEFAULT_BASE_URL, DEFAULT_THROTTLER};
use crate::calcom_booking::{adopt_in, Adopted, ForeignBooking};
use crate::callbook::Callbook;
use crate::company::Company;
use crate::ids::{AppointmentId, CompanyId};
use crate::store::{self, DriftCounts, PullPlace};
use crate::sync::RateLimiter;
use crate::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Bookings per page (Cal.com's maximum).
const PAGE: u32 = 250;
/// `beforeEnd` filters on a booking's end: read a day past the window.
const END_SLACK: Duration = Duration::days(1);

/// What a backfill or a drift report reads; every default here.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CalcomReadOptions {
    /// One company, else every company with a Cal.com key.
    #[serde(alias = "company_id")]
    pub company_id: Option<i64>,
    /// How far back a backfill reads (30 days).
    #[serde(alias = "days_back")]
    pub days_back: i64,
    /// How far ahead both read (365 days).
    #[serde(alias = "days_ahead")]
    pub days_ahead: i64,
    /// Cal.com API base for companies that name none.
    #[serde(alias = "calcom_url")]
    pub calcom_url: String,
    /// Client-side limit per API key (Cal.com's default: 120 a minute).
    #[serde(alias = "requests_per_minute")]
    pub requests_per_minute: u32,
    #[serde(alias = "timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for CalcomReadOptions {
    fn default() -> Self {
        CalcomReadOptions {
            company_id: None,
            days_back: 30,
            days_ahead: 365,
            calcom_url: DEFAULT_BASE_URL.to_string(),
            requests_per_minute: 120,
            timeout_ms: 30_000,
        }
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullReport {
    pub companies: usize,
    pub event_types: usize,
    /// Event types that went on from where an interrupted backfill stopped.
    pub resumed: usize,
    pub requests: u64,
    pub listed: u64,
    pub imported: u64,
    /// Held already (a second backfill, or a webhook before it).
    pub known: u64,
    /// callbook's own bookings.
    pub ours: u64,
    pub cancelled: u64,
    /// No one service books the event type, or no branch.
    pub unplaced: u64,
}

/// Where Cal.com and the local appointments disagree, for one company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompanyDrift {
    pub company_id: CompanyId,
    /// Live in Cal.com, held by no appointment.
    pub missing_locally: Vec<String>,
    /// Confirmed and synced locally, not in Cal.com at all.
    pub missing_in_calcom: Vec<AppointmentId>,
    /// Both live, at different starts.
    pub different_start: Vec<AppointmentId>,
    /// Cancelled on one side, live on the other.
    pub cancelled_one_side: Vec<AppointmentId>,
}

impl CompanyDrift {
    pub fn total(&self) -> usize {
        self.missing_locally.len()
            + self.missing_in_calcom.len()
            + self.different_start.len()
            + self.cancelled_one_side.len()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    pub companies: Vec<CompanyDrift>,
    pub requests: u64,
}

impl DriftReport {
    pub fn total(&self) -> usize {
        self.companies.iter().map(CompanyDrift::total).sum()
    }
}

/// Progress of a backfill, after each page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullProgress {
    pub company: CompanyId,
    pub event_type: i64,
    pub listed: u64,
    pub total: u64,
}

/// Reads Cal.com's bookings for backfills and drift reports.
pub struct CalcomReader {
    book: Callbook,
    api: Arc<dyn CalcomApi>,
    options: CalcomReadOptions,
    limiter: RateLimiter,
}

impl std::fmt::Debug for CalcomReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalcomReader").field("options", &self.options).finish_non_exhaustive()
    }
}

impl CalcomReader {
    pub fn new(book: Callbook, api: Arc<dyn CalcomApi>, options: CalcomReadOptions) -> Self {
        let limiter = RateLimiter::new(options.requests_per_minute);
        CalcomReader { book, api, options, limiter }
    }

    /// A reader on the real Cal.com client, with the options' timeout.
    #[cfg(feature = "http")]
    pub fn http(book: Callbook, options: CalcomReadOptions) -> Self {
        let api = Arc::new(crate::calcom::HttpCalcom::new(std::time::Duration::from_millis(options.timeout_ms)));
        CalcomReader::new(book, api, options)
    }

    /// The companies to read, each with its endpoint.
    fn companies(&self) -> Result<Vec<(Company, Endpoint, Vec<i64>)>> {
        let wanted = self.options.company_id.map(CompanyId);
        let base = self.options.calcom_url.clone();
        store::read(&**self.book.store(), |tx| {
            let mut out = Vec::new();
            for company in tx.companies()? {
                if wanted.is_some_and(|w| w != company.id) {
                    continue;
                }
                let Some(endpoint) = Endpoint::of(&company, &base) else { continue };
                let types: BTreeSet<i64> =
                    tx.services_of(company.id)?.iter().filter_map(|s| s.calcom_event_type_id).collect();
                out.push((company, endpoint, types.into_iter().collect()));
            }
            if let Some(id) = wanted.filter(|_| out.is_empty()) {
                tx.company(id)?.ok_or(Error::CompanyNotFound(id.0))?;
            }
            Ok(out)
        })
    }

    /// One page, within the rate limit: `wait` is called with the moment a
    /// request may go (the CLI sleeps; tests move their clock).
    fn page(
        &self,
        endpoint: &Endpoint,
        query: &BookingQuery,
        wait: &mut dyn FnMut(DateTime<Utc>),
    ) -> Result<crate::calcom::BookingPage> {
        let key = endpoint.breaker_key();
        loop {
            let now = self.book.now();
            if let Err(until) = self.limiter.acquire(&key, 1, now) {
                wait(until);
                continue;
            }
            let answer = self.api.find_bookings(endpoint, query);
            if let Some(seen) = self.api.observed_limit(endpoint, DEFAULT_THROTTLER) {
                self.limiter.observe(&key, &seen, self.book.now());
            }
            match answer {
                Ok(page) => return Ok(page),
                Err(ApiFailure::Status { status: 429, retry_after, .. }) => {
                    let until = self.book.now() + retry_after.unwrap_or_else(|| Duration::seconds(60));
                    self.limiter.block(&key, until);
                }
                Err(failure) => {
                    return Err(Error::CalcomUnavailable(crate::appointment::cut_message(&failure.to_string())))
                }
            }
        }
    }

    /// Holds every Cal.com booking of the window as an appointment. An
    /// interrupted backfill goes on from the last page it stored; running
    /// it again holds nothing twice (bookings are held by uid).
    pub fn pull(
        &self,
        wait: &mut dyn FnMut(DateTime<Utc>),
        progress: &mut dyn FnMut(&PullProgress),
    ) -> Result<PullReport> {
        let mut report = PullReport::default();
        let now = self.book.now();
        let (from, to) = (now - Duration::days(self.options.days_back), now + Duration::days(self.options.days_ahead));
        for (company, endpoint, event_types) in self.companies()? {
            report.companies += 1;
            for event_type in event_types {
                report.event_types += 1;
                let saved = store::read(&**self.book.store(), |tx| tx.pull_place(company.id, event_type))?;
                report.resumed += usize::from(saved.is_some());
                let mut place = saved.unwrap_or(PullPlace { after_start: from, skip: 0 });
                let mut listed = 0;
                loop {
                    let query = BookingQuery {
                        event_type_id: event_type,
                        after_start: place.after_start,
                        before_end: to + END_SLACK,
                        attendee_email: None,
                        take: PAGE,
                        skip: place.skip,
                        oldest_first: true,
                    };
                    let page = self.page(&endpoint, &query, wait)?;
                    report.requests += 1;
                    let bookings: Vec<ForeignBooking> =
                        page.bookings.iter().filter_map(ForeignBooking::from_listed).collect();
                    listed += bookings.len() as u64;
                    report.listed += bookings.len() as u64;
                    let next = next_place(place, &bookings);
                    let done = !page.has_next_page || bookings.is_empty();
                    let (config, company_id, now) = (Arc::clone(self.book.config_arc()), company.id, self.book.now());
                    let held = store::write(&**self.book.store(), move |tx| {
                        let mut held = Vec::with_capacity(bookings.len());
                        for b in bookings.iter().filter(|b| b.start < to) {
                            held.push(adopt_in(tx, company_id, b, &config, now)?);
                        }
                        tx.put_pull_place(company_id, event_type, (!done).then_some(next), now)?;
                        Ok(held)
                    })?;
                    for adopted in held {
                        match adopted {
                            Adopted::Created(_) => report.imported += 1,
                            Adopted::Known(_) => report.known += 1,
                            Adopted::Ours(_) => report.ours += 1,
                            Adopted::Cancelled => report.cancelled += 1,
                            Adopted::Unmapped { .. } | Adopted::NoBranch => report.unplaced += 1,
                        }
                    }
                    progress(&PullProgress { company: company.id, event_type, listed, total: page.total });
                    if done {
                        break;
                    }
                    place = next;
                }
            }
        }
        Ok(report)
    }

    /// Compares Cal.com's bookings from now to the horizon with the local
    /// appointments, per company, and stores the counts (for `/metrics`).
    pub fn drift(&self, wait: &mut dyn FnMut(DateTime<Utc>)) -> Result<DriftReport> {
        let mut report = DriftReport::default();
        let now = self.book.now();
        let to = now + Duration::days(self.options.days_ahead);
        for (company, endpoint, event_types) in self.companies()? {
            let mut calcom: HashMap<String, ForeignBooking> = HashMap::new();
            for event_type in event_types {
                let mut place = PullPlace { after_start: now, skip: 0 };
                loop {
                    let query = BookingQuery {
                        event_type_id: event_type,
                        after_start: place.after_start,
                        before_end: to + END_SLACK,
                        attendee_email: None,
                        take: PAGE,
                        skip: place.skip,
                        oldest_first: true,
                    };
                    let page = self.page(&endpoint, &query, wait)?;
                    report.requests += 1;
                    let bookings: Vec<ForeignBooking> =
                        page.bookings.iter().filter_map(ForeignBooking::from_listed).collect();
                    let next = next_place(place, &bookings);
                    let done = !page.has_next_page || bookings.is_empty();
                    calcom.extend(bookings.into_iter().filter(|b| b.start < to).map(|b| (b.uid.clone(), b)));
                    if done {
                        break;
                    }
                    place = next;
                }
            }
            let local = store::read(&**self.book.store(), |tx| {
                let mut local = tx.appointments_starting(company.id, now, to)?;
                let held: BTreeSet<String> = local.iter().filter_map(|a| a.calcom_v2_booking_uid.clone()).collect();
                let mut in_flight = BTreeMap::new();
                for b in calcom.values().filter(|b| !held.contains(&b.uid)) {
                    // Held by an appointment starting outside the window (moved on one side).
                    let elsewhere = tx.appointments_by_booking_uid(company.id, &b.uid)?;
                    if !elsewhere.is_empty() {
                        local.extend(elsewhere);
                        continue;
                    }
                    // Made by callbook, its answer not recorded yet: in flight, not drift.
                    if let Some(key) = &b.callbook_key {
                        if let Some(a) = tx.appointment_by_key(company.id, key)? {
                            in_flight.insert(b.uid.clone(), a);
                        }
                    }
                }
                Ok((local, in_flight))
            })?;
            let drift = compare(company.id, &calcom, &local.0, &local.1);
            let counts = DriftCounts {
                company_id: company.id,
                checked_at: now,
                missing_locally: drift.missing_locally.len() as u64,
                missing_in_calcom: drift.missing_in_calcom.len() as u64,
                different_start: drift.different_start.len() as u64,
                cancelled_one_side: drift.cancelled_one_side.len() as u64,
            };
            store::write(&**self.book.store(), move |tx| tx.put_drift(&counts))?;
            report.companies.push(drift);
        }
        Ok(report)
    }
}

/// Where the next page starts: after the last start read, past the
/// bookings at that start already read (a page may end among several).
fn next_place(place: PullPlace, page: &[ForeignBooking]) -> PullPlace {
    let Some(last) = page.last().map(|b| b.start) else { return place };
    let at_last = page.iter().filter(|b| b.start == last).count() as u32;
    if last == place.after_start {
        PullPlace { after_start: last, skip: place.skip + at_last }
    } else {
        PullPlace { after_start: last, skip: at_last }
    }
}

/// The disagreements between Cal.com's bookings (by uid) and the local
/// appointments: a pure decision.
pub fn compare(
    company: CompanyId,
    calcom: &HashMap<String, ForeignBooking>,
    local: &[Appointment],
    in_flight: &BTreeMap<String, Appointment>,
) -> CompanyDrift {
    let mut drift = CompanyDrift {
        company_id: company,
        missing_locally: Vec::new(),
        missing_in_calcom: Vec::new(),
        different_start: Vec::new(),
        cancelled_one_side: Vec::new(),
    };
    let mut held: HashMap<&str, Vec<&Appointment>> = HashMap::new();
    for a in local {
        if let Some(uid) = a.calcom_v2_booking_uid.as_deref() {
            held.entry(uid).or_default().push(a);
        }
    }
    let mut uids: Vec<&String> = calcom.keys().collect();
    uids.sort();
    for uid in uids {
        let b = &calcom[uid];
        match held.get(uid.as_str()) {
            Some(appointments) => {
                for a in appointments {
                    let cancelled_here = a.status == AppointmentStatus::Cancelled;
                    if cancelled_here != b.cancelled {
                        drift.cancelled_one_side.push(a.id);
                    } else if !b.cancelled && a.starts_at != b.start {
                        drift.different_start.push(a.id);
                    }
                }
            }
            None if b.cancelled => {}
            // callbook made it and the worker has not recorded the answer yet.
            None if in_flight.contains_key(uid) => {}
            None => drift.missing_locally.push(uid.clone()),
        }
    }
    for a in local {
        let Some(uid) = a.calcom_v2_booking_uid.as_deref() else { continue };
        if a.status == AppointmentStatus::Confirmed && !calcom.contains_key(uid) {
            drift.missing_in_calcom.push(a.id);
        }
    }
    drift.missing_in_calcom.sort();
    drift.different_start.sort();
    drift.cancelled_one_side.sort();
    drift
}

impl Callbook {
    /// The last drift report's counts per company (what `/metrics` shows).
    pub fn last_drift(&self) -> Result<Vec<DriftCounts>> {
        store::read(&**self.store(), |tx| tx.drift())
    }
}
