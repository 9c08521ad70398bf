//! A day in the life of a MemoryStore: calls from random numbers are
//! registered and book with random names, emails and starts; emails are set;
//! the real sync worker runs against a scripted Cal.com; workers claim and
//! finish jobs by hand while a manual clock moves; Cal.com cancels and moves
//! bookings by webhook; an operator retries and resolves reviews. After every
//! step the store must hold the rules of DESIGN.md:
//! - no two customers of one company share a known E.164 phone;
//! - an anonymous booking always makes a new customer (and a withheld number
//!   never books as a known caller);
//! - every appointment has a create job, at most one of them unfinished, and
//!   a cancelled appointment has no unfinished job;
//! - tenant isolation: an appointment's customer, branch, service, call and
//!   jobs are all of its company.
#![no_main]

use arbitrary::Arbitrary;
use callbook::calcom::*;
use callbook::rules::*;
use callbook::store::*;
use callbook::*;
use callbook_fuzz::{directory, fresh_book, Answer, ScriptedCalcom, WEBHOOK_SECRET};
use chrono::Duration;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Caller ids as carriers and PBXs send them: one number in several forms,
/// withheld ones, and the region-dependent ones.
const PHONES: &[&str] = &[
    "+49 151 2345678",
    "0151 2345678",
    "+491512345678",
    "0049 151 2345678",
    "(0151) 234-5678",
    "tel:+491512345678",
    "sip:+491512345678@pbx.example",
    "anonymous",
    "",
    "restricted",
    "sip:anonymous@anonymous.invalid",
    "+266696687",
    "0000000000",
    "(212) 555-0199",
    "+1 212 555 0199",
    "0412 345 678",
    "+61 412 345 678",
    "12",
    "Unbekannt",
];
const NAMES: &[&str] = &["Jane Doe", "Jürgen Müller", "José", "李小龙", "", "   ", "Jane Doe "];
const EMAILS: &[&str] = &[
    "jane@example.com",
    " JANE@Example.com ",
    "max at example dot com",
    "other@example.com",
    "not an email",
    "",
    "jane@",
];
const DAY_WORDS: &[&str] = &["heute", "tomorrow", "morgen", "übermorgen", "friday", "Montag", "next sunday"];

#[derive(Arbitrary, Debug)]
enum Phone {
    Pool(u8),
    /// A German mobile number: often the same customer, sometimes not.
    Mobile(u16),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Pool(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Start {
    /// Hours after now (in UTC, ISO with a `Z`).
    Hours(i16),
    /// A relative day word and a branch-local wall-clock time.
    Local {
        day: u8,
        hour: u8,
        minute: u8,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Scripted {
    Booked {
        seat: bool,
    },
    /// Cal.com made the booking but the answer was lost: the next attempt finds it by its key.
    Lost,
    Status(u16),
    Timeout,
    Network,
}

#[derive(Arbitrary, Debug)]
enum Op {
    RegisterCall { from: Phone, branch: u8, dialled: u8 },
    Book { call: u8, name: Text, email: Option<Text>, start: Start, service: u8 },
    SetEmail { customer: u8, email: Text },
    Sync { answers: Vec<Scripted> },
    Claim { worker: u8, limit: u8 },
    Finish { worker: u8, pick: u8, outcome: u8 },
    Advance { minutes: u16 },
    CancelWebhook { appointment: u8, uid: Option<String> },
    RescheduleWebhook { appointment: u8, minutes: i16, new_uid: bool },
    ReviewRetry { appointment: u8 },
    ReviewResolve { appointment: u8 },
    Rescue,
}

const MAX_OPS: usize = 40;

fn pick<'a>(pool: &[&'a str], i: u8) -> &'a str {
    pool[usize::from(i) % pool.len()]
}

fn text(t: &Text, pool: &[&str]) -> String {
    match t {
        Text::Pool(i) => pick(pool, *i).to_string(),
        Text::Raw(s) => s.clone(),
    }
}

struct Harness {
    book: Callbook,
    clock: Arc<ManualClock>,
    api: Arc<ScriptedCalcom>,
    worker: Worker,
    /// Call ids and the number each came from.
    calls: Vec<(String, Option<String>)>,
    /// Jobs held by three hand-driven workers.
    held: [Vec<Job>; 3],
    appointments: Vec<AppointmentId>,
    customers_seen: BTreeSet<CustomerId>,
    jobs_total: u64,
}

impl Harness {
    fn new() -> Self {
        let (book, clock, _store) = fresh_book();
        let api = Arc::new(ScriptedCalcom::default());
        let config = WorkerConfig { id: "fuzz-worker".into(), threads: 1, ..WorkerConfig::default() };
        let worker = Worker::new(book.clone(), api.clone(), config);
        let calls = directory().calls.iter().map(|c| (c.retell_call_id.0.clone(), c.from_number.clone())).collect();
        Harness {
            book,
            clock,
            api,
            worker,
            calls,
            held: Default::default(),
            appointments: Vec::new(),
            customers_seen: BTreeSet::new(),
            jobs_total: 0,
        }
    }

    fn appointment(&self, i: u8) -> Option<AppointmentId> {
        (!self.appointments.is_empty()).then(|| self.appointments[usize::from(i) % self.appointments.len()])
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::RegisterCall { from, branch, dialled } => {
                let from = match from {
                    Phone::Pool(i) => pick(PHONES, *i).to_string(),
                    Phone::Mobile(n) => format!("+49 151 {:07}", u32::from(*n) % 4),
                    Phone::Raw(s) => s.clone(),
                };
                let branches = directory().branches.len() as u8 + 1;
                // Branch 0: found by the number dialled, as Retell's call-started event does it.
                let (branch_id, to_number) = match branch % branches {
                    0 => {
                        (None, directory().branches.get(usize::from(*dialled) % 5).and_then(|b| b.phone_number.clone()))
                    }
                    b => (Some(callbook::BranchId(i64::from(b))), None),
                };
                let id = format!("fuzz_call_{}", self.calls.len());
                let call = NewCall {
                    retell_call_id: CallId(id.clone()),
                    branch_id,
                    to_number,
                    from_number: Some(from.clone()),
                    ..NewCall::default()
                };
                if self.book.register_call(&call).is_ok() {
                    self.calls.push((id, Some(from)));
                }
            }
            Op::Book { call, name, email, start, service } => {
                let (call_id, from) = self.calls[usize::from(*call) % self.calls.len()].clone();
                let now = self.book.now();
                let mut request = BookingRequest {
                    retell_call_id: call_id,
                    customer_name: text(name, NAMES),
                    customer_email: email.as_ref().map(|e| text(e, EMAILS)),
                    // 0 asks for the company's only service (refused where it has several).
                    service_id: match service % 5 {
                        0 => None,
                        s => Some(i64::from(s)),
                    },
                    ..BookingRequest::default()
                };
                match start {
                    Start::Hours(h) => request.start = Some(format_utc(&(now + Duration::hours(i64::from(*h))))),
                    Start::Local { day, hour, minute } => {
                        request.date = Some(pick(DAY_WORDS, *day).to_string());
                        request.time = Some(format!("{:02}:{:02}", hour % 24, (minute % 4) * 15));
                    }
                    Start::Raw(s) => request.start = Some(s.clone()),
                }
                let before = self.customers_seen.clone();
                let replay_of = |id: AppointmentId| self.appointments.contains(&id);
                let Ok(booking) = self.book.book(&request) else { return };
                assert!(booking.starts_at > now || replay_of(booking.appointment_id), "booked in the past");
                if !replay_of(booking.appointment_id) {
                    if booking.anonymous {
                        assert!(
                            !before.contains(&booking.customer_id),
                            "an anonymous booking reused customer {:?}",
                            booking.customer_id
                        );
                    }
                    self.appointments.push(booking.appointment_id);
                }
                if detect_anonymous(from.as_deref()).is_some() {
                    assert!(booking.anonymous, "a withheld number {from:?} booked as a known caller");
                }
                assert_eq!(booking.anonymous, booking.customer_phone.starts_with("anonymous_"));
            }
            Op::SetEmail { customer, email } => {
                let Some(max) = self.customers_seen.last().map(|c| c.0) else { return };
                let id = CustomerId(i64::from(*customer) % (max + 1));
                let _ = self.book.set_customer_email(id, &text(email, EMAILS));
            }
            Op::Sync { answers } => {
                for answer in answers.iter().take(8) {
                    self.api.push(match answer {
                        Scripted::Booked { seat } => Answer::Booked { seat: *seat, lost: false },
                        Scripted::Lost => Answer::Booked { seat: false, lost: true },
                        Scripted::Status(s) => Answer::Failure(ApiFailure::Status {
                            status: 400 + s % 200,
                            message: "scripted".into(),
                            retry_after: (s % 3 == 0).then(|| Duration::seconds(i64::from(*s))),
                        }),
                        Scripted::Timeout => Answer::Failure(ApiFailure::Timeout),
                        Scripted::Network => Answer::Failure(ApiFailure::Network("reset".into())),
                    });
                }
                let _ = self.worker.run_once();
            }
            Op::Claim { worker, limit } => {
                let w = usize::from(worker % 3);
                if let Ok(jobs) = self.book.claim_jobs(&format!("hand-{w}"), u32::from(limit % 4)) {
                    self.held[w].extend(jobs);
                }
            }
            Op::Finish { worker, pick, outcome } => {
                let w = usize::from(worker % 3);
                if self.held[w].is_empty() {
                    return;
                }
                let job = self.held[w].remove(usize::from(*pick) % self.held[w].len());
                let now = self.book.now();
                let event = match outcome % 5 {
                    0 => JobEvent::Succeed,
                    1 => JobEvent::Fail { retryable: true, retry_at: now + Duration::seconds(5) },
                    2 => JobEvent::Fail { retryable: false, retry_at: now },
                    3 => JobEvent::Defer { until: now + Duration::seconds(30) },
                    _ => JobEvent::Cancel,
                };
                let _ = self.book.finish_job(&job, event, Some("by hand"));
            }
            Op::Advance { minutes } => self.clock.advance(Duration::minutes(i64::from(*minutes))),
            Op::CancelWebhook { appointment, uid } => {
                let Some(id) = self.appointment(*appointment) else { return };
                let known = self.book.appointment(id).ok().and_then(|a| a.calcom_v2_booking_uid);
                let Some(uid) = uid.clone().or(known) else { return };
                let created = format_utc(&self.book.now());
                let body = serde_json::json!({"triggerEvent": "BOOKING_CANCELLED", "createdAt": created,
                    "payload": {"uid": uid}})
                .to_string();
                let outcome = self.book.calcom_webhook(
                    CompanyId(1),
                    body.as_bytes(),
                    &sign_calcom(body.as_bytes(), WEBHOOK_SECRET),
                );
                if let Ok(WebhookOutcome::Cancelled { appointment_ids }) = outcome {
                    for id in appointment_ids {
                        let a = self.book.appointment(id).unwrap_or_else(|e| panic!("{e}"));
                        assert_eq!((a.status, a.company_id), (AppointmentStatus::Cancelled, CompanyId(1)));
                    }
                }
            }
            Op::RescheduleWebhook { appointment, minutes, new_uid } => {
                let Some(id) = self.appointment(*appointment) else { return };
                let Ok(a) = self.book.appointment(id) else { return };
                let Some(old) = a.calcom_v2_booking_uid.clone() else { return };
                let starts = a.starts_at + Duration::minutes(i64::from(*minutes));
                let uid = if *new_uid { format!("{old}-moved-{}", starts.timestamp()) } else { old.clone() };
                let created = format_utc(&self.book.now());
                let body = serde_json::json!({"triggerEvent": "BOOKING_RESCHEDULED", "createdAt": created, "payload": {
                    "uid": uid, "rescheduleUid": old, "startTime": format_utc(&starts),
                    "endTime": format_utc(&(starts + (a.ends_at - a.starts_at)))}})
                .to_string();
                let (company, secret) = if a.company_id == CompanyId(1) {
                    (CompanyId(1), WEBHOOK_SECRET.to_string())
                } else {
                    (CompanyId(2), format!("{WEBHOOK_SECRET}-2"))
                };
                let signature = sign_calcom(body.as_bytes(), &secret);
                let first = self.book.calcom_webhook(company, body.as_bytes(), &signature);
                let again = self.book.calcom_webhook(company, body.as_bytes(), &signature);
                if let Ok(WebhookOutcome::Rescheduled { appointment_ids }) = first {
                    assert!(appointment_ids.contains(&id));
                    assert_eq!(
                        again.ok(),
                        Some(WebhookOutcome::AlreadyApplied { appointment_ids }),
                        "a replay is applied again"
                    );
                }
            }
            Op::ReviewRetry { appointment } => {
                if let Some(id) = self.appointment(*appointment) {
                    let _ = self.book.review_retry(id);
                }
            }
            Op::ReviewResolve { appointment } => {
                if let Some(id) = self.appointment(*appointment) {
                    let _ = self.book.review_resolve(id, "fuzz", "checked by hand");
                }
            }
            Op::Rescue => {
                let _ = self.book.rescue_expired();
            }
        }
    }

    /// Reads the whole store in one snapshot and checks the invariants.
    fn check(&mut self) {
        let appointments = self.appointments.clone();
        let calls: Vec<String> = self.calls.iter().map(|(id, _)| id.clone()).collect();
        let snapshot = read(&**self.book.store(), |tx| snapshot(tx, &appointments, &calls))
            .unwrap_or_else(|e| panic!("the store cannot be read: {e}"));
        // Known phones: one customer per (company, E.164).
        let mut by_phone: HashMap<(CompanyId, &str), CustomerId> = HashMap::new();
        for c in &snapshot.customers {
            if c.is_anonymous() {
                assert!(c.phone.starts_with("anonymous_"), "anonymous customer with a phone: {c:?}");
                continue;
            }
            assert!(c.phone.starts_with('+'), "known customer without an E.164 phone: {c:?}");
            if let Some(other) = by_phone.insert((c.company_id, c.phone.as_str()), c.id) {
                panic!("customers {other:?} and {:?} of company {:?} share {}", c.id, c.company_id, c.phone);
            }
        }
        for c in &snapshot.customers {
            self.customers_seen.insert(c.id);
        }
        let jobs_total: u64 = snapshot.appointments.values().map(|v| v.jobs.len() as u64).sum();
        assert!(jobs_total >= self.jobs_total, "jobs disappeared: {} -> {jobs_total}", self.jobs_total);
        self.jobs_total = jobs_total;
        for (id, view) in &snapshot.appointments {
            let a = &view.appointment;
            let company = a.company_id;
            // Tenant isolation.
            assert!(
                view.customer_company == Some(company),
                "appointment {id:?}'s customer is of {:?}",
                view.customer_company
            );
            assert_eq!(view.branch_company, Some(company), "appointment {id:?}'s branch is of another company");
            assert_eq!(view.service_company, Some(company), "appointment {id:?}'s service is of another company");
            if let Some(call_company) = view.call_company {
                assert_eq!(call_company, Some(company), "appointment {id:?}'s call is of another company");
            }
            for j in &view.jobs {
                assert_eq!(j.company_id, company, "job {:?} of appointment {id:?} is of another company", j.id);
            }
            // The outbox.
            let creates: Vec<&Job> = view.jobs.iter().filter(|j| j.kind == JobKind::Create).collect();
            assert!(!creates.is_empty(), "appointment {id:?} has no create job");
            let mut live: HashMap<JobKind, usize> = HashMap::new();
            for j in view.jobs.iter().filter(|j| !j.state.is_final()) {
                *live.entry(j.kind).or_default() += 1;
            }
            assert!(
                live.values().all(|n| *n <= 1),
                "appointment {id:?} has two unfinished jobs of a kind: {:?}",
                view.jobs
            );
            if a.status == AppointmentStatus::Cancelled {
                assert!(live.is_empty(), "cancelled appointment {id:?} has unfinished jobs: {:?}", view.jobs);
            }
            if a.calcom_sync_status == SyncStatus::Synced {
                assert!(a.calcom_v2_booking_uid.is_some(), "synced appointment {id:?} without a booking uid");
            }
            assert!(a.ends_at > a.starts_at || a.sync_origin == callbook::SyncOrigin::Calcom, "{a:?}");
        }
    }
}

struct View {
    appointment: callbook::Appointment,
    customer_company: Option<CompanyId>,
    branch_company: Option<CompanyId>,
    service_company: Option<CompanyId>,
    /// `None`: the appointment names no call.
    call_company: Option<Option<CompanyId>>,
    jobs: Vec<Job>,
}

struct Snapshot {
    customers: Vec<callbook::Customer>,
    appointments: BTreeMap<AppointmentId, View>,
}

fn snapshot(tx: &mut dyn Tx, booked: &[AppointmentId], calls: &[String]) -> callbook::Result<Snapshot> {
    let counts = tx.counts()?;
    // Tx finds calls by their Retell id: every call the run knows, by database id.
    let mut call_companies = HashMap::new();
    for id in calls {
        if let Some(call) = tx.call(&CallId(id.clone()))? {
            call_companies.insert(call.id, call.company_id);
        }
    }
    // MemoryStore numbers customers 1, 2, 3, ... and never deletes one.
    let mut customers = Vec::new();
    for id in 1..=(counts.customers_known + counts.customers_anonymous) as i64 {
        let id = CustomerId(id);
        let company = tx.customer_company(id)?.unwrap_or_else(|| panic!("customer {id:?} is missing"));
        customers.push(tx.customer(company, id)?.unwrap_or_else(|| panic!("customer {id:?} not in its company")));
    }
    let mut appointments = BTreeMap::new();
    for &id in booked {
        let company = tx.appointment_company(id)?.unwrap_or_else(|| panic!("appointment {id:?} disappeared"));
        let appointment =
            tx.appointment(company, id)?.unwrap_or_else(|| panic!("appointment {id:?} not in its company"));
        let customer_company = tx.customer(company, appointment.customer_id)?.map(|c| c.company_id);
        let branch_company = tx.branch(appointment.branch_id)?.map(|b| b.company_id);
        let service_company = tx.service(appointment.service_id)?.map(|s| s.company_id);
        let call_company = appointment.call_id.map(|db_id| {
            *call_companies.get(&db_id).unwrap_or_else(|| panic!("appointment {id:?} names an unknown call {db_id:?}"))
        });
        let jobs = tx.jobs_of(id)?;
        appointments
            .insert(id, View { appointment, customer_company, branch_company, service_company, call_company, jobs });
    }
    let total: u64 = counts.appointments_by_sync_status.iter().map(|(_, n)| n).sum();
    assert_eq!(total, booked.len() as u64, "appointments the harness did not book");
    Ok(Snapshot { customers, appointments })
}

fuzz_target!(|ops: Vec<Op>| {
    let mut h = Harness::new();
    for op in ops.iter().take(MAX_OPS) {
        h.run(op);
        h.check();
    }
});
