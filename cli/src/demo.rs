//! `callbook demo`: a temporary database, two businesses, and a stream of
//! simulated callers (withheld numbers in every form providers send them,
//! regulars calling back with their number written differently, spoken
//! emails), booked through the core; then a report.

use callbook::calcom::fake::{EventType, FakeCalcom, Fault, Schedule};
use callbook::{
    AppointmentId, AppointmentStatus, Availability, AvailabilityConfig, AvailabilityRequest, BookingRequest,
    CallbackRequest, Callbook, ChangeRequest, Clock, ImportData, ManualClock, NewCall, RunReport, Worker, WorkerConfig,
};
use chrono::Duration;
use serde::Serialize;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

const DIRECTORY: &str = r#"{
  "companies": [
    {"id": 1, "name": "Salon Sonnenschein", "calcom_api_key": "cal_test_demo_salon"},
    {"id": 2, "name": "Physio am Hafen", "calcom_api_key": "cal_test_demo_physio"},
    {"id": 3, "name": "Santa Monica Barbers", "calcom_api_key": "cal_test_demo_barbers"}
  ],
  "branches": [
    {"id": 1, "company_id": 1, "name": "Berlin Mitte", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+49 30 1234567"},
    {"id": 2, "company_id": 2, "name": "Hamburg Altona", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+49 40 7654321"},
    {"id": 3, "company_id": 3, "name": "Main Street", "timezone": "America/Los_Angeles", "country": "US", "phone_number": "+1 310 555 0100"}
  ],
  "services": [
    {"id": 1, "company_id": 1, "name": "Haarschnitt", "calcom_event_type_id": 1001, "duration_minutes": 30},
    {"id": 2, "company_id": 1, "name": "Färben", "calcom_event_type_id": 1002, "duration_minutes": 90},
    {"id": 3, "company_id": 2, "name": "Krankengymnastik", "calcom_event_type_id": 2001, "duration_minutes": 45},
    {"id": 4, "company_id": 3, "name": "Haircut", "calcom_event_type_id": 3001, "duration_minutes": 30}
  ]
}"#;

/// The businesses' event types as Cal.com holds them: each lasts longer
/// than the local service says (Cal.com's length decides a booking's end),
/// and the hosts work 09:00–17:00 in their own zone, one of them west of UTC.
fn event_types() -> Vec<EventType> {
    let berlin = |id, minutes| EventType::new(id, minutes).strict_hours();
    let la = Schedule::hours(9, 17, "America/Los_Angeles");
    vec![berlin(1001, 45), berlin(1002, 120), berlin(2001, 60), EventType::new(3001, 45).schedule(la).strict_hours()]
}

const WITHHELD: &[&str] = &[
    "anonymous",
    "Anonymous",
    "RESTRICTED",
    "private",
    "",
    "+266696687",
    "+7378742833",
    "\"Anonymous\" <sip:anonymous@anonymous.invalid>",
    "0000000000",
    "unknown",
    "Unterdrückt",
];
const NAMES: &[&str] = &[
    "Jürgen Müller",
    "Anna Schmidt",
    "José García",
    "Mehmet Yılmaz",
    "Lena Weber",
    "Tom Becker",
    "Sofia Rossi",
    "Jan Nowak",
];
const DATES: &[&str] = &["morgen", "übermorgen", "tomorrow", "Freitag", "monday", "next wednesday", "Donnerstag"];

#[derive(Debug, Serialize)]
pub struct Report {
    pub calls: usize,
    pub booked: usize,
    pub anonymous_bookings: usize,
    pub known_bookings: usize,
    pub retried_function_calls: usize,
    pub customers_created: u64,
    pub known_customers_reused: usize,
    pub email_conflicts_flagged: u64,
    pub rejected: std::collections::BTreeMap<String, usize>,
    pub booking_p50_us: u64,
    pub booking_p99_us: u64,
    pub outbox_jobs_pending: u64,
    pub availability: AvailabilitySummary,
    pub sync: SyncSummary,
    pub changes: ChangesSummary,
}

/// Callers ringing again to move or cancel what they booked.
#[derive(Debug, Default, Serialize)]
pub struct ChangesSummary {
    pub calls: usize,
    pub moved: usize,
    pub cancelled: usize,
    /// Refused by a rule (slot taken meanwhile, policy, ...), by code.
    pub refused: std::collections::BTreeMap<String, usize>,
    /// Withheld numbers asking about an earlier booking: refused, offered a callback.
    pub not_verified: usize,
    pub callbacks_filed: usize,
    /// Changes made by a caller who was not verified (must be 0).
    pub changes_by_unverified_callers: usize,
    pub reschedule_p50_us: u64,
    pub reschedule_p99_us: u64,
    pub cancel_p50_us: u64,
    /// After the worker ran: Cal.com's live bookings against the local appointments.
    pub live_calcom_bookings: usize,
    /// Live bookings no confirmed appointment holds (a cancel or move that did not arrive).
    pub orphan_calcom_bookings: usize,
    /// Confirmed, synced appointments whose uid is not live in Cal.com at their start.
    pub local_without_calcom: usize,
    pub calcom_requests: u64,
}

/// Callers compete for the same times: each call checks its day first.
#[derive(Debug, Default, Serialize)]
pub struct AvailabilitySummary {
    pub checks: usize,
    /// Asked of Cal.com; the rest came from the short cache.
    pub calcom_requests_for_checks: u64,
    /// The wished time was taken: the caller took the nearest offered one.
    pub took_an_alternative: usize,
    /// Requests to Cal.com while booking (a booking never asks it).
    pub calcom_requests_during_bookings: u64,
    /// Appointments Cal.com refused as taken, flagged for review (the goal: 0).
    pub taken_slot_reviews: u64,
}

/// The sync half of the demo: the worker against the built-in fake Cal.com.
#[derive(Debug, Default, Serialize)]
pub struct SyncSummary {
    pub synced: u64,
    pub adopted_after_lost_answer: u64,
    pub retried_attempts: u64,
    pub deferred_by_breaker: u64,
    pub deferred_by_rate_limit: u64,
    pub flagged_for_review: u64,
    /// `sync_error_code` → appointments flagged with it.
    pub flagged_by_code: std::collections::BTreeMap<String, u64>,
    pub calcom_requests: u64,
    pub calcom_429s: u64,
    pub duplicate_calcom_bookings: usize,
    /// Live bookings in Cal.com that no appointment owns (the goal: 0).
    pub orphan_calcom_bookings: usize,
    /// Appointments flagged although Cal.com has their booking, or flagged
    /// as a taken slot (the goal: 0; the injected refusals are true reviews).
    pub false_reviews: usize,
    pub simulated_seconds: i64,
    pub real_ms: u128,
}

impl Report {
    pub fn to_text(&self) -> String {
        let rejected: Vec<String> = self.rejected.iter().map(|(c, n)| format!("{n} {c}")).collect();
        format!(
            "callbook demo: {} simulated calls to businesses in Berlin, Hamburg and Los Angeles,\n\
             \x20             on a temporary SQLite database\n\
             booked            {} ({} anonymous, {} known callers)\n\
             retried calls     {} answered with the first booking, nothing doubled\n\
             customers         {} created; known callers recognised again {} times\n\
             email conflicts   {} flagged for review (anonymous caller gave someone else's email)\n\
             refused           {}\n\
             booking latency   p50 {} µs, p99 {} µs (durable commit included)\n\
             outbox            {} calcom.create jobs written with the bookings\n\
             availability      {} checks ({} asked of Cal.com, the rest cached); {} callers took an offered\n\
             \x20                 alternative to a taken time; {} Cal.com requests while booking;\n\
             \x20                 {} manual reviews for a taken slot after the sync\n\
             \n\
             sync to the built-in fake Cal.com (3-minute outage at the start, 2 lost answers, 2 refused requests)\n\
             synced            {} ({} adopted after a lost answer, none created twice: {} duplicates,\n\
             \x20                 {} orphan bookings in Cal.com, {} false reviews)\n\
             retried           {} failed attempts retried with backoff\n\
             deferred          {} by the open circuit breaker, {} by the 120/min rate limit (no attempt used)\n\
             flagged           {} for manual review: {}\n\
             Cal.com           {} requests, {} answered 429\n\
             took              {} s simulated, {} ms real\n\
             \n\
             callers ringing again to move or cancel ({} calls)\n\
             moved             {} (p50 {} µs, p99 {} µs per confirmed move; booking p50 {} µs)\n\
             cancelled         {} (p50 {} µs)\n\
             refused           {}\n\
             not verified      {} withheld numbers asked about a booking: {} callbacks filed, {} changes made\n\
             Cal.com after     {} live bookings, {} orphans, {} local appointments not live there ({} requests)",
            self.calls,
            self.booked,
            self.anonymous_bookings,
            self.known_bookings,
            self.retried_function_calls,
            self.customers_created,
            self.known_customers_reused,
            self.email_conflicts_flagged,
            if rejected.is_empty() { "none".to_string() } else { rejected.join(", ") },
            self.booking_p50_us,
            self.booking_p99_us,
            self.outbox_jobs_pending,
            self.availability.checks,
            self.availability.calcom_requests_for_checks,
            self.availability.took_an_alternative,
            self.availability.calcom_requests_during_bookings,
            self.availability.taken_slot_reviews,
            self.sync.synced,
            self.sync.adopted_after_lost_answer,
            self.sync.duplicate_calcom_bookings,
            self.sync.orphan_calcom_bookings,
            self.sync.false_reviews,
            self.sync.retried_attempts,
            self.sync.deferred_by_breaker,
            self.sync.deferred_by_rate_limit,
            self.sync.flagged_for_review,
            self.sync.flagged_by_code.iter().map(|(c, n)| format!("{n} {c}")).collect::<Vec<_>>().join(", "),
            self.sync.calcom_requests,
            self.sync.calcom_429s,
            self.sync.simulated_seconds,
            self.sync.real_ms,
            self.changes.calls,
            self.changes.moved,
            self.changes.reschedule_p50_us,
            self.changes.reschedule_p99_us,
            self.booking_p50_us,
            self.changes.cancelled,
            self.changes.cancel_p50_us,
            {
                let refused: Vec<String> = self.changes.refused.iter().map(|(c, n)| format!("{n} {c}")).collect();
                if refused.is_empty() {
                    "none".to_string()
                } else {
                    refused.join(", ")
                }
            },
            self.changes.not_verified,
            self.changes.callbacks_filed,
            self.changes.changes_by_unverified_callers,
            self.changes.live_calcom_bookings,
            self.changes.orphan_calcom_bookings,
            self.changes.local_without_calcom,
            self.changes.calcom_requests
        )
    }
}

/// A small deterministic generator (SplitMix64), so a seed replays a demo.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// The regulars: the same person, their number written the ways carriers and agents write it.
fn regular_number(rng: &mut Rng, person: usize) -> String {
    let rest = 2_345_670 + person as u64;
    match rng.below(3) {
        0 => format!("+49151{rest}"),
        1 => format!("0151 {rest}"),
        _ => format!("+49 151 {rest}"),
    }
}

pub fn run(calls: usize, seed: u64) -> callbook::Result<Report> {
    let dir = std::env::temp_dir().join(format!("callbook-demo-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| callbook::Error::Storage(e.to_string()))?;
    let result = run_in(&dir.join("demo.db"), calls, seed);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(path: &std::path::Path, calls: usize, seed: u64) -> callbook::Result<Report> {
    // Simulated time: the worker's backoffs, the breaker's cool-downs and
    // Cal.com's rate limit run on this clock, so the demo takes seconds.
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let book = Callbook::open(path)?.with_clock(clock.clone());
    book.import(&ImportData::from_json(DIRECTORY)?)?;
    let mut rng = Rng(seed);
    let mut latencies = Vec::with_capacity(calls);
    let mut report = Report {
        calls,
        booked: 0,
        anonymous_bookings: 0,
        known_bookings: 0,
        retried_function_calls: 0,
        customers_created: 0,
        known_customers_reused: 0,
        email_conflicts_flagged: 0,
        rejected: Default::default(),
        booking_p50_us: 0,
        booking_p99_us: 0,
        outbox_jobs_pending: 0,
        availability: AvailabilitySummary::default(),
        sync: SyncSummary::default(),
        changes: ChangesSummary::default(),
    };
    // (dialled, caller's number, anonymous, appointment) of every booking.
    let mut made: Vec<(&str, String, bool, AppointmentId)> = Vec::new();
    let io = |e: std::io::Error| callbook::Error::Storage(format!("fake Cal.com: {e}"));
    let fake = FakeCalcom::with_event_types(clock.clone(), &event_types()).map_err(io)?;
    let config = AvailabilityConfig { calcom_url: fake.url().into(), timeout_ms: 500, ..Default::default() };
    let availability = Availability::http(book.clone(), config);
    let mut seen_customers = std::collections::HashSet::new();
    for i in 0..calls {
        let anonymous = rng.below(10) < 3;
        let person = rng.below(12);
        // One call in four reaches the barbers in Los Angeles, the rest the German businesses.
        let to = ["+49 30 1234567", "+49 30 1234567", "+49 40 7654321", "+1 310 555 0100"][rng.below(4)];
        let from = match (anonymous, to.starts_with("+1")) {
            (true, _) => rng.pick(WITHHELD).to_string(),
            (false, false) => regular_number(&mut rng, person),
            (false, true) => format!("(310) 555-{:04}", 2000 + person),
        };
        let call_id = format!("call_demo_{i:05}");
        book.register_call(&NewCall {
            retell_call_id: call_id.as_str().into(),
            from_number: Some(from.clone()),
            to_number: Some(to.into()),
            direction: Some("inbound".into()),
            ..Default::default()
        })?;
        let name = NAMES[person % NAMES.len()];
        let email = match rng.below(5) {
            0 => None,
            1 => Some(format!("{} at example dot com", name.split(' ').next().unwrap_or("x").to_lowercase())),
            2 => Some("not sure".to_string()),
            _ => Some(format!("kunde{person}@example.com")),
        };
        let service = match to {
            "+49 40 7654321" => 3,
            "+1 310 555 0100" => 4,
            _ => 1 + rng.below(2) as i64,
        };
        let request = BookingRequest {
            retell_call_id: call_id,
            customer_name: name.into(),
            customer_email: email,
            service_id: Some(service),
            date: Some(rng.pick(DATES).into()),
            time: Some(format!("{:02}:{:02}", 9 + rng.below(9), [0, 15, 30, 45][rng.below(4)])),
            // One in ten asks for something that cannot be booked.
            start: None,
        };
        let mut request =
            if rng.below(10) == 0 { BookingRequest { time: Some("25:00".into()), ..request } } else { request };
        // The agent checks the day first; the answer is remembered for the call.
        let asked = fake.stats().requests;
        let check = AvailabilityRequest {
            retell_call_id: Some(request.retell_call_id.clone()),
            service_id: request.service_id,
            date: request.date.clone().unwrap_or_default(),
            ..Default::default()
        };
        if availability.check(&check).is_ok() {
            report.availability.checks += 1;
        }
        report.availability.calcom_requests_for_checks += fake.stats().requests - asked;
        let asked = fake.stats().requests;
        let started = Instant::now();
        let mut outcome = book.book(&request);
        latencies.push(started.elapsed().as_micros() as u64);
        // Taken since the caller chose it: the agent offers the nearest free times; the caller takes the first.
        if let Err(e @ callbook::Error::SlotUnavailable { .. }) = &outcome {
            if let Some(first) = e.alternatives().first() {
                request.date = None;
                request.time = None;
                request.start = Some(callbook::format_utc(first));
                outcome = book.book(&request);
                report.availability.took_an_alternative += 1;
            }
        }
        report.availability.calcom_requests_during_bookings += fake.stats().requests - asked;
        match outcome {
            Ok(b) => {
                report.booked += 1;
                made.push((to, from, b.anonymous, b.appointment_id));
                if b.anonymous {
                    report.anonymous_bookings += 1;
                } else {
                    report.known_bookings += 1;
                    if !seen_customers.insert(b.customer_id) {
                        report.known_customers_reused += 1;
                    }
                }
                // Retell retries a timed-out function call: the same booking comes back.
                if rng.below(8) == 0 {
                    let again = book.book(&request)?;
                    debug_assert_eq!(again.appointment_id, b.appointment_id);
                    report.retried_function_calls += 1;
                }
            }
            Err(e) => *report.rejected.entry(e.code().to_string()).or_default() += 1,
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    report.booking_p50_us = pct(0.50);
    report.booking_p99_us = pct(0.99);
    let stats = book.stats()?;
    report.customers_created = stats.customers_known + stats.customers_anonymous;
    report.email_conflicts_flagged = stats.manual_review;
    report.outbox_jobs_pending = stats.jobs.get("available").copied().unwrap_or(0);
    report.sync = sync_phase(&book, &clock, &fake, report.booked as u64)?;
    report.availability.taken_slot_reviews = report.sync.flagged_by_code.get("slot_unavailable").copied().unwrap_or(0);
    report.changes = changes_phase(&book, &clock, &fake, &availability, &mut rng, &made)?;
    Ok(report)
}

/// One caller in three rings again: a known number finds the appointment
/// and moves it (to a free time of the same day, asked of Cal.com with its
/// own booking left out) or cancels it; a withheld number is not verified
/// and leaves a callback. Then the worker carries the changes to Cal.com,
/// and Cal.com's live bookings are compared with the local appointments.
fn changes_phase(
    book: &Callbook,
    clock: &Arc<ManualClock>,
    fake: &FakeCalcom,
    availability: &Availability,
    rng: &mut Rng,
    made: &[(&str, String, bool, AppointmentId)],
) -> callbook::Result<ChangesSummary> {
    let mut summary = ChangesSummary::default();
    let before = fake.stats().requests;
    let (mut moves, mut cancels) = (Vec::new(), Vec::new());
    for (n, (to, from, anonymous, id)) in made.iter().enumerate() {
        if rng.below(3) != 0 {
            continue;
        }
        summary.calls += 1;
        let call_id = format!("call_again_{n:05}");
        // A withheld caller rings from a withheld number again: a new call, nobody to verify.
        let from = if *anonymous { rng.pick(WITHHELD).to_string() } else { from.clone() };
        book.register_call(&NewCall {
            retell_call_id: call_id.as_str().into(),
            from_number: Some(from),
            to_number: Some((*to).into()),
            ..Default::default()
        })?;
        let found = match book.find_appointments(&call_id, None) {
            Ok(found) => found,
            Err(e) if e.code() == "caller_not_verified" => {
                summary.not_verified += 1;
                let callback = CallbackRequest {
                    retell_call_id: call_id.clone(),
                    customer_name: NAMES[n % NAMES.len()].into(),
                    reason: Some("wants to change a booking".into()),
                    phone: Some("0170 1234567".into()),
                    ..Default::default()
                };
                book.request_callback(&callback)?;
                summary.callbacks_filed += 1;
                // Asking anyway changes nothing.
                let forced = ChangeRequest {
                    retell_call_id: Some(call_id.clone()),
                    appointment_id: Some(id.0),
                    confirmed: true,
                    ..Default::default()
                };
                summary.changes_by_unverified_callers += usize::from(book.cancel_appointment(&forced).is_ok());
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(appointment) = found.iter().find(|a| a.id == *id) else { continue };
        let request = ChangeRequest {
            retell_call_id: Some(call_id.clone()),
            appointment_id: Some(id.0),
            confirmed: true,
            ..Default::default()
        };
        let outcome = if rng.below(2) == 0 {
            let started = Instant::now();
            let done = book.cancel_appointment(&request);
            cancels.push(started.elapsed().as_micros() as u64);
            done.map(|_| summary.cancelled += 1)
        } else {
            // The free times of that day for this move, remembered for the call.
            let check = AvailabilityRequest {
                retell_call_id: Some(call_id.clone()),
                service_id: Some(appointment.service_id.0),
                date: appointment.starts_at.date_naive().to_string(),
                reschedule: Some(appointment.id),
                ..Default::default()
            };
            let free = availability.check(&check).map(|s| s.slots).unwrap_or_default();
            let choices: Vec<_> = free.iter().filter(|t| **t != appointment.starts_at).collect();
            let Some(new_start) = choices.get(rng.below(choices.len().max(1))).copied() else { continue };
            let moving = ChangeRequest { new_start: Some(callbook::format_utc(new_start)), ..request };
            let started = Instant::now();
            let done = book.reschedule_appointment(&moving);
            moves.push(started.elapsed().as_micros() as u64);
            done.map(|_| summary.moved += 1)
        };
        if let Err(e) = outcome {
            *summary.refused.entry(e.code().to_string()).or_default() += 1;
        }
    }
    let pct = |list: &mut Vec<u64>, p: f64| {
        list.sort_unstable();
        list.get(((list.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0)
    };
    summary.reschedule_p50_us = pct(&mut moves, 0.50);
    summary.reschedule_p99_us = pct(&mut moves, 0.99);
    summary.cancel_p50_us = pct(&mut cancels, 0.50);
    // The worker carries every change to Cal.com.
    let config =
        WorkerConfig { id: "demo-changes".into(), threads: 2, calcom_url: fake.url().into(), ..Default::default() };
    let worker = Worker::http(book.clone(), config);
    for _ in 0..3600 {
        worker.run_once()?;
        let jobs = book.stats()?.jobs;
        if ["available", "retryable", "running"].iter().all(|s| jobs.get(*s).copied().unwrap_or(0) == 0) {
            break;
        }
        clock.advance(Duration::seconds(1));
    }
    summary.calcom_requests = fake.stats().requests - before;
    let live: Vec<(String, String)> = fake
        .bookings()
        .iter()
        .filter(|b| b["status"] == "accepted")
        .map(|b| (b["uid"].as_str().unwrap_or("").to_string(), b["start"].as_str().unwrap_or("").to_string()))
        .collect();
    summary.live_calcom_bookings = live.len();
    let mut held = std::collections::HashSet::new();
    for (_, _, _, id) in made {
        let a = book.appointment(*id)?;
        let Some(uid) = a.calcom_v2_booking_uid.clone() else { continue };
        if a.status == AppointmentStatus::Confirmed {
            let start = callbook::format_utc(&a.starts_at).replace('Z', ".000Z");
            summary.local_without_calcom += usize::from(!live.contains(&(uid.clone(), start)));
            held.insert(uid);
        }
    }
    summary.orphan_calcom_bookings = live.iter().filter(|(uid, _)| !held.contains(uid)).count();
    Ok(summary)
}

fn sync_phase(
    book: &Callbook,
    clock: &Arc<ManualClock>,
    fake: &FakeCalcom,
    total: u64,
) -> callbook::Result<SyncSummary> {
    let before = fake.stats();
    fake.inject([
        Fault::LoseAnswer(std::time::Duration::from_millis(400)),
        Fault::Status(400, "responses - {email}invalid_email".into()),
        Fault::LoseAnswer(std::time::Duration::from_millis(400)),
        Fault::Status(404, "Event type with id 1002 not found.".into()),
    ]);
    // A short timeout: the lost answers are simulated in real time.
    let config = WorkerConfig {
        id: "demo".into(),
        threads: 2,
        calcom_url: fake.url().into(),
        timeout_ms: 200,
        ..Default::default()
    };
    let worker = Worker::http(book.clone(), config);
    let progress = Progress::new(total);
    let (started, real) = (clock.now(), Instant::now());
    let mut run = RunReport::default();
    fake.outage_until(clock.now() + Duration::minutes(3));
    for _ in 0..3600 {
        run.merge(&worker.run_once()?);
        let stats = book.stats()?;
        progress.show(run.synced + run.flagged, &run);
        if ["available", "retryable", "running"].iter().all(|s| stats.jobs.get(*s).copied().unwrap_or(0) == 0) {
            break;
        }
        clock.advance(Duration::seconds(1));
    }
    progress.finish();
    let fake_stats = fake.stats();
    // Cal.com's live bookings, each with the appointment its metadata names.
    let live: Vec<(String, Option<i64>, Option<String>)> = fake
        .bookings()
        .iter()
        .filter(|b| b["status"] == "accepted")
        .map(|b| {
            let meta = |k: &str| b["metadata"][k].as_str().map(str::to_string);
            let id = meta("callbook_appointment_id").and_then(|id| id.parse().ok());
            (b["uid"].as_str().unwrap_or("").to_string(), id, meta("callbook_key"))
        })
        .collect();
    let mut orphans = 0;
    for (uid, id, _) in &live {
        let owner = id.map(|id| book.appointment(AppointmentId(id))).transpose().ok().flatten();
        orphans += usize::from(owner.and_then(|a| a.calcom_v2_booking_uid).as_deref() != Some(uid.as_str()));
    }
    let false_reviews = book
        .review_list()?
        .iter()
        .filter(|a| a.review_reason.as_deref() == Some("sync_failed"))
        .filter(|a| {
            live.iter().any(|(_, _, key)| key.as_deref() == Some(a.idempotency_key.as_str()))
                || a.sync_error_code.as_deref() == Some("slot_unavailable")
        })
        .count();
    Ok(SyncSummary {
        orphan_calcom_bookings: orphans,
        false_reviews,
        synced: run.synced,
        adopted_after_lost_answer: run.adopted,
        retried_attempts: run.retried,
        deferred_by_breaker: run.deferred_breaker,
        deferred_by_rate_limit: run.deferred_rate_limit,
        flagged_for_review: run.flagged,
        flagged_by_code: book.review_list()?.iter().filter_map(|a| a.sync_error_code.clone()).fold(
            Default::default(),
            |mut m, code| {
                *m.entry(code).or_default() += 1;
                m
            },
        ),
        calcom_requests: fake_stats.requests - before.requests,
        calcom_429s: fake_stats.rate_limited - before.rate_limited,
        duplicate_calcom_bookings: fake_stats.duplicated_keys,
        simulated_seconds: (clock.now() - started).num_seconds(),
        real_ms: real.elapsed().as_millis(),
    })
}

/// A progress bar on a terminal, a plain line per 10% otherwise (on stderr,
/// so `--json` keeps stdout to one object).
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { total: u64, last: std::cell::Cell<u64> },
}

impl Progress {
    fn new(total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template("syncing {bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            Progress::Bar(bar)
        } else {
            Progress::Lines { total: total.max(1), last: std::cell::Cell::new(0) }
        }
    }

    fn show(&self, done: u64, run: &RunReport) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{} deferred by the breaker, {} retried", run.deferred_breaker, run.retried));
            }
            Progress::Lines { total, last } => {
                let tenth = done * 10 / total;
                if tenth > last.get() {
                    last.set(tenth);
                    eprintln!(
                        "syncing: {done}/{total} done ({} deferred by the breaker, {} retried)",
                        run.deferred_breaker, run.retried
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}
