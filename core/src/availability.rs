//! Availability during the call: the free starts for a service on a day,
//! from Cal.com's `GET /v2/slots`, minus what callbook confirmed locally;
//! cached per (event type, day) for a short time, and remembered per call
//! so the booking that follows is checked against the answer the caller
//! heard without a second request. The booking itself never depends on
//! Cal.com being up: without a remembered answer it goes ahead as before.

use crate::calcom::{ApiFailure, CalcomApi, Endpoint, SlotAnswer, SlotQuery, DEFAULT_BASE_URL};
use crate::callbook::Callbook;
use crate::ids::{CallDbId, CallId, ServiceId};
use crate::import::CallRow;
use crate::slots::{day_bounds, free_starts, local_appointments, occupied};
use crate::start::{parse_date, parse_timezone};
use crate::store::{self, Offered};
use crate::utc::rfc3339_list;
use crate::{Error, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What to check: a day for a service, in a call (remembered) or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityRequest {
    /// With a call, the answer is remembered for it and the day is read in its branch's zone.
    #[serde(default, alias = "retell_call_id", alias = "call_id")]
    pub retell_call_id: Option<String>,
    /// Optional when the company has exactly one service (needs a call then).
    #[serde(default, alias = "service_id")]
    pub service_id: Option<i64>,
    /// A date as a booking takes it: ISO, `08.01.2030`, today, morgen, friday, ...
    pub date: String,
    /// Cal.com API base for companies that name none, instead of the
    /// checker's (one checker, and its cache, serves any base).
    #[serde(default, alias = "calcom_url")]
    pub calcom_url: Option<String>,
    /// The call as Retell describes it, when it may not be registered yet:
    /// it is registered in the write that remembers the answer, so a
    /// refused request (a bad date, an unknown service) writes nothing.
    #[serde(skip)]
    pub call: Option<crate::call::NewCall>,
    /// The appointment a move is asked for: its own booking does not block
    /// the day (Cal.com's `bookingUidToReschedule`, and left out locally).
    #[serde(skip)]
    pub reschedule: Option<crate::ids::AppointmentId>,
    /// Ask and answer only: no call registered, nothing remembered.
    #[serde(skip)]
    pub dry_run: bool,
}

/// Free starts on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slots {
    pub service_id: ServiceId,
    pub date: NaiveDate,
    pub time_zone: String,
    #[serde(serialize_with = "rfc3339_list")]
    pub slots: Vec<DateTime<Utc>>,
    /// Served from the short cache, not asked of Cal.com now.
    pub cached: bool,
    /// Remembered for the call named in the request.
    pub remembered: bool,
    /// What Cal.com offered before local appointments were taken out (a
    /// move re-checks its start against it inside its transaction).
    #[serde(skip)]
    pub offered: Offered,
}

/// Settings of the availability check, every default in one place; from
/// the same option names as the worker's (`calcomUrl`, `timeoutMs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilityConfig {
    /// Cal.com API base for companies that name none (`https://api.cal.com`).
    #[serde(alias = "calcom_url")]
    pub calcom_url: String,
    /// How long an answer per (event type, day) is reused, in seconds (30).
    #[serde(alias = "cache_ttl_secs")]
    pub cache_ttl_secs: i64,
    /// Per-request timeout in milliseconds: short (5 s), a caller is waiting.
    #[serde(alias = "timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for AvailabilityConfig {
    fn default() -> Self {
        AvailabilityConfig { calcom_url: DEFAULT_BASE_URL.to_string(), cache_ttl_secs: 30, timeout_ms: 5_000 }
    }
}

/// (endpoint, event type, day, zone, booking being moved) → (when asked, free starts).
type CacheKey = (String, i64, NaiveDate, String, Option<String>);
type Cache = HashMap<CacheKey, (DateTime<Utc>, SlotAnswer)>;

/// Asks Cal.com for slots, with a short cache; share one per process.
pub struct Availability {
    book: Callbook,
    api: Arc<dyn CalcomApi>,
    config: AvailabilityConfig,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Availability").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Everything a check needs from the store, read once.
struct Context {
    call: Option<CallDbId>,
    /// A call to register with the answer (see [`AvailabilityRequest::call`]).
    pending: Option<crate::call::NewCall>,
    /// The appointment being moved (see [`AvailabilityRequest::reschedule`]).
    moving: Option<crate::appointment::Appointment>,
    company: crate::company::Company,
    service: crate::company::Service,
    time_zone: String,
}

impl Availability {
    pub fn new(book: Callbook, api: Arc<dyn CalcomApi>, config: AvailabilityConfig) -> Self {
        Availability { book, api, config, cache: Mutex::default() }
    }

    /// A checker on the real Cal.com client, with the config's timeout.
    #[cfg(feature = "http")]
    pub fn http(book: Callbook, config: AvailabilityConfig) -> Self {
        let api = Arc::new(crate::calcom::HttpCalcom::new(std::time::Duration::from_millis(config.timeout_ms)));
        Availability::new(book, api, config)
    }

    /// The free starts for the request's service and day. Errors: the
    /// booking's call-context errors, `service_required`,
    /// `service_not_in_calcom`, `invalid_date`, `start_in_past`, and
    /// `calcom_unavailable` when Cal.com cannot be asked.
    pub fn check(&self, request: &AvailabilityRequest) -> Result<Slots> {
        let ctx = self.context(request)?;
        let tz = parse_timezone(&ctx.time_zone)?;
        let now = self.book.now();
        let today = now.with_timezone(&tz).date_naive();
        let day = parse_date(&request.date, today)
            .ok_or_else(|| Error::invalid("date", "invalid_date", "the date is not a date"))?;
        if day < today {
            return Err(Error::StartInPast(day.to_string()));
        }
        let config = self.book.config();
        if day > today + Duration::days(config.horizon_days) {
            return Err(config.beyond_horizon("date", "invalid_date"));
        }
        let event_type = ctx.service.calcom_event_type_id.ok_or(Error::ServiceNotInCalcom(ctx.service.id.0))?;
        let base = request.calcom_url.as_deref().unwrap_or(&self.config.calcom_url);
        let endpoint = Endpoint::of(&ctx.company, base)
            .ok_or_else(|| Error::CalcomUnavailable("the company has no Cal.com API key".into()))?;
        let moving_uid = ctx.moving.as_ref().and_then(|a| a.calcom_v2_booking_uid.clone());
        let key = (endpoint.breaker_key(), event_type, day, ctx.time_zone.clone(), moving_uid.clone());
        let hit = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(&key)
                .filter(|(at, _)| now - *at < Duration::seconds(self.config.cache_ttl_secs))
                .map(|(_, s)| s.clone())
        };
        let cached = hit.is_some();
        // Cal.com reads a date alone as a UTC day: ask for the local day by
        // its UTC bounds (an end at 00:00:00Z would be read as that whole day).
        let (from, to) = day_bounds(day, tz);
        let answer = match hit {
            Some(answer) => answer,
            None => {
                let query = SlotQuery {
                    event_type_id: event_type,
                    start: from,
                    end: to - Duration::seconds(1),
                    time_zone: ctx.time_zone.clone(),
                    booking_uid_to_reschedule: moving_uid,
                };
                let answer = self.api.slots(&endpoint, &query).map_err(unavailable)?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                cache.retain(|_, (at, _)| now - *at < Duration::seconds(self.config.cache_ttl_secs));
                cache.insert(key, (now, answer.clone()));
                answer
            }
        };
        let length_minutes = answer.length.map(|l| l.num_minutes());
        let offered: Vec<DateTime<Utc>> =
            answer.starts.into_iter().filter(|s| *s >= from && *s < to && *s > now).collect();
        let raw = Offered { starts: offered, length_minutes };
        let free_now = FreeNow {
            company: ctx.company.id,
            service: ctx.service.clone(),
            day,
            tz,
            moving: ctx.moving.as_ref().map(|a| a.id),
            offered: raw.clone(),
        };
        let (service_id, time_zone) = (ctx.service.id, ctx.time_zone);
        if request.dry_run {
            let slots = store::read(&**self.book.store(), |tx| free_now.of(tx))?;
            return Ok(Slots { service_id, date: day, time_zone, slots, cached, remembered: false, offered: raw });
        }
        let remembered = ctx.call.is_some() || ctx.pending.is_some();
        let (call, pending) = (ctx.call, ctx.pending);
        let slots = store::write(&**self.book.store(), move |tx| {
            let free = free_now.of(tx)?;
            let call = match &pending {
                Some(new) => Some(crate::import::register_call(tx, new, now)?.id),
                None => call,
            };
            if let Some(call) = call {
                let offered = Offered { starts: free.clone(), length_minutes: free_now.offered.length_minutes };
                tx.remember_slots(call, free_now.service.id, day, &offered, now)?;
            }
            Ok(free)
        })?;
        Ok(Slots { service_id, date: day, time_zone, slots, cached, remembered, offered: raw })
    }

    fn context(&self, request: &AvailabilityRequest) -> Result<Context> {
        let request = request.clone();
        store::read(&**self.book.store(), |tx| {
            // A call Retell describes is checked and resolved here, and only
            // registered once the whole request has passed.
            let (call, pending) = match &request.call {
                Some(new) => match crate::import::resolve_call(tx, new)? {
                    CallRow::Known(call) => (Some(call), None),
                    row @ CallRow::New(_) => (Some(row.into_call()), Some(new.clone())),
                },
                None => match request.retell_call_id.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
                    Some(id) => {
                        let call = tx.call(&CallId(id.to_string()))?;
                        (Some(call.ok_or_else(|| Error::CallNotFound(id.to_string()))?), None)
                    }
                    None => (None, None),
                },
            };
            // With a call, its company decides; without one, the named service's.
            let company_id = match (&call, request.service_id) {
                (Some(call), _) => {
                    call.company_id.ok_or_else(|| Error::CallMissingCompany(call.retell_call_id.0.clone()))?
                }
                (None, Some(id)) => tx.service(ServiceId(id))?.ok_or(Error::ServiceNotFound(id))?.company_id,
                (None, None) => return Err(Error::ServiceRequired),
            };
            let service = crate::booking::service_for(tx, company_id, request.service_id)?;
            // The call's branch; without a call, the company's first branch.
            let branch = match &call {
                Some(call) => {
                    let id = call.branch_id.ok_or_else(|| Error::CallMissingBranch(call.retell_call_id.0.clone()))?;
                    Some(tx.branch(id)?.ok_or(Error::BranchNotFound(id.0))?)
                }
                None => tx.branches_of(company_id)?.into_iter().next(),
            };
            let company = tx.company(company_id)?.ok_or(Error::CompanyNotFound(company_id.0))?;
            let moving = match request.reschedule {
                Some(id) => Some(tx.appointment(company_id, id)?.ok_or(Error::AppointmentNotFound(id.0))?),
                None => None,
            };
            Ok(Context {
                moving,
                call: call.filter(|_| pending.is_none()).map(|c| c.id),
                pending,
                company,
                service,
                time_zone: branch.map_or_else(crate::company::default_timezone, |b| b.timezone),
            })
        })
    }
}

/// Cal.com's starts for a day less what local appointments fill (the
/// appointment being moved left out).
struct FreeNow {
    company: crate::ids::CompanyId,
    service: crate::company::Service,
    day: NaiveDate,
    tz: chrono_tz::Tz,
    moving: Option<crate::ids::AppointmentId>,
    offered: Offered,
}

impl FreeNow {
    fn of(&self, tx: &mut dyn crate::store::Tx) -> Result<Vec<DateTime<Utc>>> {
        let duration = occupied(self.service.duration_minutes, self.offered.length_minutes);
        let mut local = local_appointments(tx, self.company, self.service.id, self.day, self.tz, duration)?;
        local.retain(|a| Some(a.id) != self.moving);
        Ok(free_starts(&self.offered.starts, &local, self.service.capacity, duration))
    }
}

fn unavailable(failure: ApiFailure) -> Error {
    Error::CalcomUnavailable(crate::appointment::cut_message(&failure.to_string()))
}
