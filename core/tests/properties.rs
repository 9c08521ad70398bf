//! Property tests: the queue's invariants under random interleavings of
//! workers, crashes and clock jumps; normalisation round-trips; the
//! placeholder format; tenant isolation under random cross-company traffic.

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::*;
use callbook::retell::*;
use callbook::rules::*;
use callbook::store::*;
use callbook::*;
use chrono::Duration;
use conformance::{env, request, t0};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[derive(Debug, Clone)]
enum Op {
    Claim { worker: usize, limit: u32 },
    Finish { worker: usize, pick: usize, outcome: u8 },
    Advance { seconds: i64 },
    Crash { worker: usize },
    Rescue,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..4u32).prop_map(|(worker, limit)| Op::Claim { worker, limit }),
        (0..3usize, 0..8usize, 0..4u8).prop_map(|(worker, pick, outcome)| Op::Finish { worker, pick, outcome }),
        prop_oneof![Just(1i64), Just(5), Just(30), Just(91), Just(600)].prop_map(|seconds| Op::Advance { seconds }),
        (0..3usize).prop_map(|worker| Op::Crash { worker }),
        Just(Op::Rescue),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// No job is held by two workers at once (only the latest claim can
    /// finish it), attempts never exceed the policy, and after the dust
    /// settles every job is completed or discarded.
    #[test]
    fn queue_invariants(jobs in 1..6usize, ops in proptest::collection::vec(op(), 1..60)) {
        let e = env(memory);
        for i in 0..jobs {
            let start = format_utc(&(t0() + Duration::days(1) + Duration::minutes(30 * i as i64)));
            e.book.book(&request("call_anon", "P", &start)).expect("books");
        }
        let policy = Policy::default();
        let mut held: Vec<Vec<Job>> = vec![Vec::new(); 3];
        // job id -> (worker, lease token) of the latest claim.
        let mut holder: HashMap<JobId, (usize, i64)> = HashMap::new();
        for op in ops {
            match op {
                Op::Claim { worker, limit } => {
                    for job in e.book.claim_jobs(&format!("w{worker}"), limit).expect("claims") {
                        prop_assert!(job.attempt <= policy.max_attempts);
                        if let Some((_, token)) = holder.get(&job.id) {
                            prop_assert!(job.lease_token > *token, "a fresh token for every claim");
                        }
                        holder.insert(job.id, (worker, job.lease_token));
                        held[worker].push(job);
                    }
                }
                Op::Finish { worker, pick, outcome } => {
                    if held[worker].is_empty() { continue; }
                    let index = pick % held[worker].len();
                    let job = held[worker].remove(index);
                    let now = e.book.now();
                    let event = match outcome {
                        0 => JobEvent::Succeed,
                        1 => JobEvent::Fail { retryable: true, retry_at: now + retry_delay(&policy, job.attempt, None, 0.5) },
                        2 => JobEvent::Fail { retryable: false, retry_at: now },
                        _ => JobEvent::Defer { until: now + Duration::seconds(30) },
                    };
                    let current = e.book.jobs_of(job.appointment_id).expect("jobs").into_iter().find(|j| j.id == job.id).expect("job");
                    let accepted = e.book.finish_job(&job, event, Some("x")).expect("finishes");
                    let is_holder = holder.get(&job.id) == Some(&(worker, job.lease_token)) && current.state == JobState::Running;
                    prop_assert_eq!(accepted, is_holder, "only the latest claim may finish a job");
                }
                Op::Advance { seconds } => e.clock.advance(Duration::seconds(seconds)),
                Op::Crash { worker } => held[worker].clear(),
                Op::Rescue => { e.book.rescue_expired().expect("rescues"); }
            }
            let s = e.book.stats().expect("stats");
            prop_assert_eq!(s.jobs.values().sum::<u64>(), jobs as u64, "no job lost or added");
        }
        // Drain: a healthy worker keeps going until nothing is left.
        for _ in 0..50 {
            e.clock.advance(policy.lease + Duration::seconds(1));
            e.book.rescue_expired().expect("rescues");
            for job in e.book.claim_jobs("drain", 100).expect("claims") {
                prop_assert!(job.attempt <= policy.max_attempts);
                e.book.finish_job(&job, JobEvent::Succeed, None).expect("finishes");
            }
        }
        let s = e.book.stats().expect("stats");
        prop_assert_eq!(s.jobs["completed"] + s.jobs["discarded"], jobs as u64, "every job ends completed or discarded: {:?}", s.jobs);
    }

    /// The pure rule book: finished jobs never change, a claim always bumps
    /// the token, and attempts stay within the policy.
    #[test]
    fn transition_rules(state in 0..6usize, attempt in 0..6u32, event in 0..6u8, lease_live in any::<bool>(), due in any::<bool>()) {
        let now = t0();
        let job = JobSnapshot {
            state: JobState::ALL[state],
            attempt: attempt.min(4),
            max_attempts: 4,
            run_at: if due { now } else { now + Duration::seconds(1) },
            locked_until: Some(if lease_live { now + Duration::seconds(1) } else { now }),
            lease_token: 7,
        };
        let event = match event {
            0 => JobEvent::Claim { lease_until: now + Duration::seconds(90) },
            1 => JobEvent::Succeed,
            2 => JobEvent::Fail { retryable: true, retry_at: now + Duration::seconds(5) },
            3 => JobEvent::Fail { retryable: false, retry_at: now },
            4 => JobEvent::Defer { until: now + Duration::seconds(60) },
            _ => JobEvent::Expire,
        };
        if let Ok(next) = transition(&job, &event, now) {
            prop_assert!(!job.state.is_final());
            prop_assert!(next.attempt <= job.max_attempts);
            if matches!(event, JobEvent::Claim { .. }) {
                prop_assert_eq!(next.lease_token, job.lease_token + 1);
                prop_assert_eq!(next.state, JobState::Running);
            } else {
                prop_assert_eq!(next.lease_token, job.lease_token);
            }
        }
        if job.state.is_final() {
            prop_assert_eq!(transition(&job, &event, now), Err(Refusal::Final));
        }
    }

    #[test]
    fn german_numbers_in_any_form_are_one_e164(prefix in 150..180u32, rest in 1_000_000..9_999_999u32) {
        let de = region_of("DE");
        let e164 = format!("+49{prefix}{rest}");
        let forms = [
            e164.clone(),
            format!("+49 {prefix} {rest}"),
            format!("0{prefix} {rest}"),
            format!("0049{prefix}{rest}"),
            format!("(0{prefix}) {rest}"),
        ];
        for form in forms {
            prop_assert_eq!(normalize_phone(&form, de), Some(e164.clone()), "{}", form);
        }
        let once = normalize_phone(&e164, de).expect("parses");
        prop_assert_eq!(normalize_phone(&once, de), Some(once.clone()));
    }

    #[test]
    fn email_normalisation_is_idempotent(local in "[a-zA-Z][a-zA-Z0-9]{0,10}", domain in "[a-z]{1,10}", tld in "(de|com|org)") {
        let typed = format!("  {local}@{domain}.{tld} ");
        let once = normalize_email(Some(&typed));
        let want = format!("{}@{domain}.{tld}", local.to_lowercase());
        prop_assert_eq!(once.valid(), Some(want.as_str()));
        prop_assert_eq!(normalize_email(once.valid()), once.clone());
        // A part that is itself a spoken separator ("at", "dot", ...) cannot be
        // told from the separator by ear; the typed form above still holds.
        let words = ["at", "ät", "dot", "punkt", "underscore", "unterstrich", "dash", "hyphen", "minus", "bindestrich"];
        prop_assume!(![local.to_lowercase(), domain.clone()].iter().any(|w| words.contains(&w.as_str())));
        let spoken = format!("{local} at {domain} dot {tld}");
        let heard = normalize_email(Some(&spoken));
        prop_assert_eq!(heard.valid(), Some(want.as_str()));
    }

    #[test]
    fn placeholder_format(name in any::<String>(), id in 0..i64::MAX, seconds in 0..4_102_444_800i64) {
        let p = placeholder_phone(&name, CallDbId(id), seconds);
        let tail = p.strip_prefix(&format!("anonymous_{seconds}_")).expect("prefix");
        prop_assert_eq!(tail.len(), 8);
        prop_assert!(tail.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn outside_input_never_panics(text in any::<String>(), region in "[A-Z]{2}") {
        let _ = detect_anonymous(Some(&text));
        let _ = classify_caller(Some(&text), region_of(&region));
        let _ = normalize_email(Some(&text));
        let tz = parse_timezone("Europe/Berlin").expect("tz");
        let _ = resolve_start(&StartSpec::Iso(text.clone()), tz, t0());
        let _ = resolve_start(&StartSpec::DateTime { date: text.clone(), time: text.clone() }, tz, t0());
        let _ = ImportData::from_json(&text);
        let _ = parse_function_call(text.as_bytes(), None);
        let _ = parse_calcom_webhook(text.as_bytes());
        let _ = verify_calcom_signature(text.as_bytes(), &text, "secret");
        let _ = verify_retell_signature(text.as_bytes(), &text, "key", 0);
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = parse_slots(&value);
        }
    }

    /// Outside JSON with the right shape but random values: the parsers of
    /// Retell calls, Cal.com webhooks and slot answers answer, never panic.
    #[test]
    fn shaped_outside_json_never_panics(name in ".{0,20}", a in any::<i64>(), text in ".{0,40}", flag in any::<bool>()) {
        let value = |v: &str| if flag { serde_json::json!(v) } else { serde_json::json!(a) };
        let call = serde_json::json!({"name": name, "call": {"call_id": value(&text), "to_number": value(&text)},
            "args": {"customer_name": value(&text), "service_id": value(&text), "date": value(&text), "start": value(&text)}});
        if let Ok(parsed) = parse_function_call(call.to_string().as_bytes(), None) {
            let _ = booking_request_from_args(&parsed.call_id, &parsed.args);
        }
        let hook = serde_json::json!({"triggerEvent": value(&name), "payload": {"uid": value(&text),
            "rescheduleUid": value(&text), "bookingId": value(&text), "startTime": value(&text), "endTime": value(&text)}});
        let _ = parse_calcom_webhook(hook.to_string().as_bytes());
        let _ = parse_slots(&serde_json::json!({"data": {name.clone(): [value(&text), {"start": value(&text)}]}}));
    }

    /// Random bookings across two companies: nothing ever links across
    /// tenants, anonymous callers are never merged, and a known phone is one
    /// customer per company.
    #[test]
    fn tenant_isolation(bookings in proptest::collection::vec((0..6usize, 0..3usize, 0..4usize, 1..40i64), 1..25)) {
        let e = env(memory);
        let calls = ["call_anon", "call_known_a", "call_c2", "call_c2_anon", "call_known_b", "call_anon_2"];
        let emails = [None, Some("shared@example.com"), Some("other@example.com")];
        let mut results = Vec::new();
        for (call, email, service, slot) in bookings {
            let company_two = calls[call].starts_with("call_c2");
            let mut r = request(calls[call], "Sam", &format_utc(&(t0() + Duration::hours(slot))));
            r.customer_email = emails[email].map(str::to_string);
            r.service_id = Some(if company_two { 2 } else { [1, 3, 1, 3][service] });
            let b = match e.book.book(&r) {
                Ok(b) => b,
                // Service 3 takes 2 appointments per start: a third is refused, and only there.
                Err(err) if err.code() == "slot_unavailable" && r.service_id == Some(3) => continue,
                Err(err) => panic!("books: {err:?}"),
            };
            results.push((calls[call], b));
        }
        let mut known: HashMap<(CompanyId, String), CustomerId> = HashMap::new();
        let mut anonymous_customers: HashMap<CustomerId, AppointmentId> = HashMap::new();
        for (call, b) in &results {
            let a = e.book.appointment(b.appointment_id).expect("exists");
            let want = CompanyId(if call.starts_with("call_c2") { 2 } else { 1 });
            prop_assert_eq!(a.company_id, want);
            let c = e.book.customer(a.company_id, a.customer_id).expect("reads").expect("customer in the same company");
            prop_assert_eq!(c.company_id, a.company_id);
            let other = CompanyId(3 - want.0);
            prop_assert!(e.book.customer(other, a.customer_id).expect("reads").is_none());
            if b.anonymous {
                let first = anonymous_customers.entry(c.id).or_insert(a.id);
                prop_assert_eq!(*first, a.id, "an anonymous customer has one appointment (replays aside)");
            } else {
                let first = known.entry((c.company_id, c.phone.clone())).or_insert(c.id);
                prop_assert_eq!(*first, c.id, "one customer per known phone and company");
            }
        }
    }
}

/// The fixture's calls: (id, company, the E.164 they show when known).
const CALLERS: [(&str, i64, Option<&str>); 8] = [
    ("call_anon", 1, None),
    ("call_anon_2", 1, None),
    ("call_known_a", 1, Some("+491512345678")),
    ("call_known_b", 1, Some("+491512345678")),
    ("call_known_c", 1, Some("+491512345678")),
    ("call_ny", 1, Some("+12125550199")),
    ("call_c2", 2, Some("+491512345678")),
    ("call_c2_anon", 2, None),
];

#[derive(Debug, Clone)]
enum Ask {
    Find,
    Cancel,
    Move { hours: i64 },
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random companies' callers book, then random calls find, cancel and
    /// move random appointments by id or by day: a call only ever sees or
    /// changes an appointment of its company whose customer has its number,
    /// or one it booked itself; every other attempt writes nothing.
    #[test]
    fn calls_only_reach_their_own_appointments(
        bookings in proptest::collection::vec((0..8usize, 1..30i64), 1..12),
        asks in proptest::collection::vec((0..8usize, 0..12usize, any::<bool>(), prop_oneof![
            Just(Ask::Find), Just(Ask::Cancel), (1..20i64).prop_map(|hours| Ask::Move { hours })
        ]), 1..20),
    ) {
        let e = env(memory);
        let mut booked: Vec<(usize, AppointmentId)> = Vec::new();
        for (caller, hours) in bookings {
            let (call, company, _) = CALLERS[caller];
            let mut r = request(call, "Sam", &format_utc(&(t0() + Duration::days(2) + Duration::hours(hours))));
            r.service_id = Some(if company == 2 { 2 } else { 1 });
            if let Ok(b) = e.book.book(&r) {
                booked.push((caller, b.appointment_id));
            }
        }
        prop_assume!(!booked.is_empty());
        // Entitlement, worked out here from the fixture, not by core.
        let entitled = |caller: usize, id: AppointmentId| -> bool {
            let (call, company, phone) = CALLERS[caller];
            let a = e.book.appointment(id).expect("exists");
            let customer = e.book.customer(a.company_id, a.customer_id).expect("reads").expect("customer");
            let booked_here = booked.iter().any(|(c, b)| *b == id && CALLERS[*c].0 == call);
            a.company_id == CompanyId(company) && (booked_here || phone.is_some_and(|p| p == customer.phone))
        };
        for (caller, pick, by_day, ask) in asks {
            let (call, _, _) = CALLERS[caller];
            let id = booked[pick % booked.len()].1;
            let before = e.book.appointment(id).expect("exists");
            let day = before.starts_at.with_timezone(&chrono_tz::Europe::Berlin).date_naive().to_string();
            let request = ChangeRequest {
                retell_call_id: Some(call.into()),
                appointment_id: (!by_day).then_some(id.0),
                date: by_day.then(|| day.clone()),
                confirmed: true,
                ..Default::default()
            };
            match ask {
                Ask::Find => {
                    if let Ok(found) = e.book.find_appointments(call, Some(&day)) {
                        for a in found {
                            prop_assert!(entitled(caller, a.id), "{call} found {:?}", a.id);
                        }
                    }
                }
                Ask::Cancel => {
                    if let Ok(change) = e.book.cancel_appointment(&request) {
                        prop_assert!(entitled(caller, change.appointment_id), "{call} cancelled {:?}", change.appointment_id);
                    } else {
                        prop_assert_eq!(e.book.appointment(id).expect("exists"), before.clone());
                    }
                }
                Ask::Move { hours } => {
                    let start = format_utc(&(t0() + Duration::days(5) + Duration::hours(hours)));
                    let moving = ChangeRequest { new_start: Some(start), ..request };
                    if let Ok(change) = e.book.reschedule_appointment(&moving) {
                        prop_assert!(entitled(caller, change.appointment_id), "{call} moved {:?}", change.appointment_id);
                    } else {
                        prop_assert_eq!(e.book.appointment(id).expect("exists"), before.clone());
                    }
                }
            }
        }
    }
}

/// A failed write leaves nothing behind, wherever in the booking it fails.
#[test]
fn injected_faults_never_half_write() {
    for n in 0..6 {
        let store = Arc::new(MemoryStore::new());
        let book = Callbook::new(store.clone()).with_clock(Arc::new(ManualClock::new(t0())));
        book.import(&ImportData::from_json(conformance::FIXTURE).expect("parses")).expect("imports");
        // Booking a known caller with an email writes: customer, appointment, job.
        let before = book.stats().expect("stats");
        store.fail_after_writes(n);
        let mut r = request("call_known_a", "F", "2030-01-02T10:00:00Z");
        r.customer_email = Some("f@example.com".into());
        match book.book(&r) {
            Err(err) => {
                assert_eq!(err.code(), "injected_fault");
                assert_eq!(book.stats().expect("stats"), before, "fault after {n} writes left something behind");
            }
            Ok(_) => {
                assert!(n >= 3, "the booking has three writes; fault {n} came after them");
                let s = book.stats().expect("stats");
                assert_eq!((s.customers_known, s.appointments["pending"], s.jobs["available"]), (1, 1, 1));
            }
        }
    }
}
