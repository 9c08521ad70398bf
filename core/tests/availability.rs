//! Availability during the call, against the loopback fake Cal.com's
//! `/v2/slots` with an injected clock: the remembered answer is honoured
//! with no second request, the cache expires, a Cal.com outage never blocks
//! a booking, capacity holds under concurrent bookers, and alternatives are
//! the nearest free starts.

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::store::*;
use callbook::*;
use chrono::Duration;
use conformance::{fixture_event_types, request, t0, FIXTURE};
use std::sync::Arc;

struct Env {
    book: Callbook,
    clock: Arc<ManualClock>,
    fake: FakeCalcom,
    availability: Availability,
    _dir: Option<tempfile::TempDir>,
}

fn env_on(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) -> Env {
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(store).with_clock(clock.clone());
    book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
    // Event types as long as the services here; `a_longer_event_type_…` below differs.
    let types = [EventType::new(1001, 30), EventType::new(1002, 60).seated(2), EventType::new(2001, 45)];
    let fake = FakeCalcom::with_event_types(clock.clone(), &types).expect("fake starts");
    let api = Arc::new(HttpCalcom::new(std::time::Duration::from_secs(2)));
    let config = AvailabilityConfig { calcom_url: fake.url().into(), ..Default::default() };
    let availability = Availability::new(book.clone(), api, config);
    Env { book, clock, fake, availability, _dir: dir }
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() };
    let store = SqliteStore::open_with(dir.path().join("availability.db"), options).expect("opens");
    env_on(Arc::new(store), Some(dir))
}

fn check(e: &Env, call: Option<&str>, service: i64, date: &str) -> Result<Slots> {
    e.availability.check(&AvailabilityRequest {
        retell_call_id: call.map(str::to_string),
        service_id: Some(service),
        date: date.into(),
        ..Default::default()
    })
}

fn utc(list: &[chrono::DateTime<chrono::Utc>]) -> Vec<String> {
    list.iter().map(format_utc).collect()
}

#[test]
fn a_remembered_answer_is_honoured_and_the_booking_asks_cal_com_nothing() {
    let e = env();
    // Branch 1 is in Berlin (UTC+1 in January): 09:00–16:30 local is 08:00Z–15:30Z.
    let slots = check(&e, Some("call_anon"), 1, "2030-01-08").expect("checks");
    assert_eq!((slots.slots.len(), slots.remembered, slots.cached), (16, true, false));
    assert_eq!(utc(&slots.slots[..2]), ["2030-01-08T08:00:00Z", "2030-01-08T08:30:00Z"]);
    assert_eq!(e.fake.stats().requests, 1);

    // Another caller takes 09:00Z meanwhile (no check in that call: it books as before).
    let other = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    assert!(!other.availability_checked);

    let err = e.book.book(&request("call_anon", "Jane", "2030-01-08T09:00:00Z")).expect_err("taken since the check");
    assert_eq!(err.code(), "slot_unavailable");
    assert_eq!(utc(err.alternatives()), ["2030-01-08T08:00:00Z", "2030-01-08T08:30:00Z", "2030-01-08T09:30:00Z"]);
    let err = e.book.book(&request("call_anon", "Jane", "2030-01-08T17:00:00Z")).expect_err("after closing");
    assert_eq!(utc(err.alternatives()), ["2030-01-08T14:30:00Z", "2030-01-08T15:00:00Z", "2030-01-08T15:30:00Z"]);
    let booked = e.book.book(&request("call_anon", "Jane", "2030-01-08T09:30:00Z")).expect("free");
    assert!(booked.availability_checked);
    assert_eq!(e.fake.stats().requests, 1, "no Cal.com request for the bookings");

    // A check in another call within the cache time: no request, and what
    // callbook confirmed (not yet in Cal.com) is not offered.
    let again = check(&e, Some("call_known_b"), 1, "2030-01-08").expect("checks");
    assert!(again.cached);
    assert_eq!(again.slots.len(), 14);
    assert!(!utc(&again.slots).iter().any(|s| s == "2030-01-08T09:00:00Z" || s == "2030-01-08T09:30:00Z"));
    assert_eq!(e.fake.stats().requests, 1);
    // A refused booking wrote nothing.
    assert_eq!(e.book.stats().expect("stats").appointments.values().sum::<u64>(), 2);
}

#[test]
fn a_longer_event_type_keeps_the_host_for_its_whole_length() {
    // Cal.com's event type lasts 45 minutes, the local service 30: the range
    // answer tells the length, and a local booking at 09:00Z takes 08:30Z
    // (until 09:15Z) and 09:30Z (from 09:00Z to 09:45Z) with it.
    let e = env();
    e.fake.add_event_type(fixture_event_types().remove(0));
    let slots = check(&e, Some("call_anon"), 1, "2030-01-08").expect("checks");
    assert_eq!(slots.slots.len(), 15, "the last start leaves 45 minutes before 17:00");
    e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    for taken in ["2030-01-08T08:30:00Z", "2030-01-08T09:30:00Z"] {
        let err = e.book.book(&request("call_anon", "Jane", taken)).expect_err("overlaps for 45 minutes");
        assert_eq!(err.code(), "slot_unavailable", "{taken}");
    }
    e.book.book(&request("call_anon", "Jane", "2030-01-08T10:00:00Z")).expect("free");
}

#[test]
fn the_cache_expires() {
    let e = env();
    assert!(!check(&e, None, 1, "2030-01-08").expect("checks").cached);
    assert!(check(&e, None, 1, "2030-01-08").expect("checks").cached);
    assert_eq!(e.fake.stats().requests, 1);
    e.clock.advance(Duration::seconds(31));
    assert!(!check(&e, None, 1, "2030-01-08").expect("checks").cached);
    assert_eq!(e.fake.stats().requests, 2);
    // Another day is another entry.
    check(&e, None, 1, "2030-01-09").expect("checks");
    assert_eq!(e.fake.stats().requests, 3);
}

#[test]
fn cal_com_down_never_blocks_a_booking() {
    let e = env();
    e.fake.outage_until(t0() + Duration::hours(1));
    let err = check(&e, Some("call_anon"), 1, "morgen").expect_err("Cal.com is down");
    assert_eq!(err.code(), "calcom_unavailable");
    let b = e.book.book(&request("call_anon", "Jane", "2030-01-02T10:00:00Z")).expect("books anyway");
    assert!(!b.availability_checked, "booked without a remembered answer");
}

#[test]
fn refusals_of_the_check() {
    let e = env();
    assert_eq!(check(&e, None, 1, "someday").expect_err("bad").code(), "invalid_date");
    assert_eq!(check(&e, None, 1, "2029-12-31").expect_err("past").code(), "start_in_past");
    assert_eq!(check(&e, Some("call_c2"), 1, "2030-01-08").expect_err("tenant").code(), "service_not_in_company");
    assert_eq!(check(&e, Some("nope"), 1, "2030-01-08").expect_err("call").code(), "call_not_found");
    let no_service = e.availability.check(&AvailabilityRequest { date: "2030-01-08".into(), ..Default::default() });
    assert_eq!(no_service.expect_err("service").code(), "service_required");
    // Company 2 has no Cal.com key.
    assert_eq!(check(&e, Some("call_c2"), 2, "2030-01-08").expect_err("no key").code(), "calcom_unavailable");
    assert_eq!(e.fake.stats().requests, 0);
}

#[test]
fn a_refused_check_by_the_agent_writes_nothing() {
    let e = env();
    let config = AvailabilityConfig { calcom_url: e.fake.url().into(), ..Default::default() };
    let api = Arc::new(HttpCalcom::new(std::time::Duration::from_secs(2)));
    let availability = Arc::new(Availability::new(e.book.clone(), api, config));
    let agent = Agent::new(e.book.clone(), Secret::new(conformance::RETELL_KEY)).with_availability(availability);
    let body = |args: &str| {
        format!(
            r#"{{"name":"check_availability","call":{{"call_id":"call_fresh","from_number":"+49 151 999 0000",
            "to_number":"+49301234567"}},"args":{args}}}"#
        )
    };
    let registered =
        || callbook::store::read(&**e.book.store(), |tx| tx.call(&CallId::from("call_fresh"))).expect("reads");
    for (args, code) in [
        (r#"{"date":"someday","service_id":1}"#, "invalid_date"),
        (r#"{"date":"2029-12-31","service_id":1}"#, "start_in_past"),
        (r#"{"date":"2030-01-08","service_id":2}"#, "service_not_in_company"),
        (r#"{"date":"2030-01-08","service_id":99}"#, "service_not_found"),
        (r#"{"date":"9999-01-08","service_id":1}"#, "invalid_date"),
    ] {
        let reply = conformance::retell(&agent, &body(args));
        // Input errors answer 400, domain refusals 200 with ok:false (a sentence for the agent).
        assert_eq!((reply.body["ok"].as_bool(), reply.body["code"].as_str()), (Some(false), Some(code)), "{args}");
        assert!(registered().is_none(), "{args}: the call was written on a refusal");
    }
    let reply = conformance::retell(&agent, &body(r#"{"date":"2030-01-08","service_id":1}"#));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let call = registered().expect("registered with the answer");
    assert_eq!(call.branch_id, Some(BranchId(1)));
    let remembered = callbook::store::read(&**e.book.store(), |tx| {
        tx.remembered_slots(call.id, ServiceId(1), chrono::NaiveDate::from_ymd_opt(2030, 1, 8).unwrap_or_default())
    })
    .expect("reads");
    assert_eq!(remembered.map(|o| o.starts.len()), Some(16));
}

fn capacity_holds_under_concurrent_bookers(e: Env) {
    for i in 0..8 {
        let call = NewCall {
            retell_call_id: CallId(format!("call_cap_{i}")),
            company_id: Some(CompanyId(1)),
            branch_id: Some(BranchId(1)),
            from_number: Some(format!("+49151000000{i}")),
            ..Default::default()
        };
        e.book.register_call(&call).expect("registers");
    }
    // Service 3 takes 2 appointments per start.
    let results: Vec<Result<Booking>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let book = e.book.clone();
                s.spawn(move || {
                    let mut r = request(&format!("call_cap_{i}"), "Cap", "2030-01-08T10:00:00Z");
                    r.service_id = Some(3);
                    book.book(&r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("joins")).collect()
    });
    let booked = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<&str> = results.iter().filter_map(|r| r.as_ref().err()).map(Error::code).collect();
    assert_eq!(booked, 2, "exactly the capacity: {results:?}");
    assert!(refused.iter().all(|c| *c == "slot_unavailable"), "{refused:?}");
    assert_eq!(e.book.stats().expect("stats").appointments.values().sum::<u64>(), 2);
    // The check offers the start no more, but still offers the others.
    let slots = check(&e, None, 3, "2030-01-08").expect("checks");
    assert!(!utc(&slots.slots).contains(&"2030-01-08T10:00:00Z".to_string()));
    assert!(utc(&slots.slots).contains(&"2030-01-08T10:30:00Z".to_string()));
}

#[test]
fn capacity_holds_under_8_concurrent_bookers_on_sqlite() {
    capacity_holds_under_concurrent_bookers(env());
}

#[test]
fn capacity_holds_under_8_concurrent_bookers_in_memory() {
    capacity_holds_under_concurrent_bookers(env_on(Arc::new(MemoryStore::new()), None));
}
