//! The rest of the call against the loopback fake Cal.com, with the worker:
//! moves reach Cal.com once each and keep the new uid (so a second and
//! third move work), a cancel racing the create leaves no live booking, a
//! seat's cancel frees only that seat, a move whose answer was lost is
//! found again, and the echo of our own move changes nothing.

#[allow(unused_macros)]
#[macro_use]
mod conformance;

use callbook::calcom::fake::*;
use callbook::calcom::*;
use callbook::store::*;
use callbook::*;
use chrono::Duration;
use conformance::{fixture_event_types, request, t0, FIXTURE};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Env {
    book: Callbook,
    clock: Arc<ManualClock>,
    fake: FakeCalcom,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions { synchronous: Synchronous::Normal, ..Default::default() };
    let store = SqliteStore::open_with(dir.path().join("journey.db"), options).expect("opens");
    let clock = Arc::new(ManualClock::new(t0()));
    let book = Callbook::new(Arc::new(store)).with_clock(clock.clone());
    book.import(&ImportData::from_json(FIXTURE).expect("parses")).expect("imports");
    let fake = FakeCalcom::with_event_types(clock.clone(), &fixture_event_types()).expect("fake starts");
    Env { book, clock, fake, _dir: dir }
}

fn worker(e: &Env, api: Arc<dyn CalcomApi>) -> Worker {
    let config = WorkerConfig { id: "w".into(), calcom_url: e.fake.url().into(), ..WorkerConfig::default() };
    Worker::new(e.book.clone(), api, config)
}

fn http() -> Arc<dyn CalcomApi> {
    Arc::new(HttpCalcom::new(std::time::Duration::from_secs(2)))
}

/// Runs the worker, moving the clock a second at a time, until no job is left.
fn drain(e: &Env, worker: &Worker) {
    for _ in 0..600 {
        worker.run_once().expect("runs");
        let s = e.book.stats().expect("stats");
        if s.jobs.get("available").copied().unwrap_or(0) + s.jobs.get("retryable").copied().unwrap_or(0) == 0
            && s.jobs.get("running").copied().unwrap_or(0) == 0
        {
            return;
        }
        e.clock.advance(Duration::seconds(1));
    }
    panic!("jobs left after 10 minutes: {:?}", e.book.stats().expect("stats").jobs);
}

fn caller(call: &str, id: AppointmentId) -> ChangeRequest {
    ChangeRequest {
        retell_call_id: Some(call.into()),
        appointment_id: Some(id.0),
        confirmed: true,
        ..Default::default()
    }
}

fn live_at(e: &Env) -> Vec<(String, String)> {
    let bookings = e.fake.bookings();
    bookings
        .iter()
        .filter(|b| b["status"] == "accepted")
        .map(|b| (b["uid"].as_str().unwrap_or("").to_string(), b["start"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn three_moves_reach_cal_com_once_each_and_keep_the_newest_uid() {
    let e = env();
    let w = worker(&e, http());
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    drain(&e, &w);
    let first_uid = e.book.appointment(a.appointment_id).expect("a").calcom_v2_booking_uid.expect("synced");
    let mut uids = vec![first_uid];
    for start in ["2030-01-08T10:00:00Z", "2030-01-09T10:00:00Z", "2030-01-10T10:00:00Z"] {
        let moved = ChangeRequest { new_start: Some(start.into()), ..caller("call_known_c", a.appointment_id) };
        e.book.reschedule_appointment(&moved).expect("moves");
        drain(&e, &w);
        let after = e.book.appointment(a.appointment_id).expect("a");
        let uid = after.calcom_v2_booking_uid.clone().expect("uid");
        assert!(!uids.contains(&uid), "a new uid for every move");
        assert_eq!(after.calcom_sync_status, SyncStatus::Synced);
        let expected = start.replace(":00Z", ":00.000Z");
        assert_eq!(live_at(&e), vec![(uid.clone(), expected)], "one live booking, at the new time, under the new uid");
        uids.push(uid);
    }
    let stats = e.fake.stats();
    assert_eq!(stats.creates, 1, "one create, then moves");
    assert_eq!(live_at(&e).len(), 1, "one live booking at the end");
    assert_eq!(e.book.appointment(a.appointment_id).expect("a").rescheduled_count, 3);
    // The echo webhook of our own last move: already applied, nothing written.
    let a = e.book.appointment(a.appointment_id).expect("a");
    let body = serde_json::json!({"triggerEvent": "BOOKING_RESCHEDULED", "createdAt": format_utc(&e.book.now()),
        "payload": {"uid": uids[3], "rescheduleUid": uids[2], "bookingId": a.calcom_v2_booking_id,
        "startTime": format_utc(&a.starts_at), "endTime": "2030-01-10T10:45:00Z"}})
    .to_string();
    let outcome = e
        .book
        .calcom_webhook(CompanyId(1), body.as_bytes(), &sign_calcom(body.as_bytes(), "whsec_one"))
        .expect("answers");
    assert!(matches!(outcome, WebhookOutcome::AlreadyApplied { .. } | WebhookOutcome::Stale { .. }), "{outcome:?}");
    assert_eq!(e.book.appointment(a.id).expect("a"), a, "the echo changed nothing");
}

/// The caller cancels while the create is on its way to Cal.com.
struct CancelsDuringCreate(HttpCalcom, Callbook, AppointmentId);

impl CalcomApi for CancelsDuringCreate {
    fn create_booking(&self, e: &Endpoint, p: &serde_json::Value) -> Result<CalBooking, ApiFailure> {
        self.1.cancel_appointment(&caller("call_known_a", self.2)).expect("cancels mid-flight");
        self.0.create_booking(e, p)
    }
    fn find_bookings(&self, e: &Endpoint, q: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        self.0.find_bookings(e, q)
    }
    fn get_booking(&self, e: &Endpoint, uid: &str) -> Result<CalBooking, ApiFailure> {
        self.0.get_booking(e, uid)
    }
    fn cancel_booking(&self, e: &Endpoint, uid: &str, seat: Option<&str>, reason: &str) -> Result<(), ApiFailure> {
        self.0.cancel_booking(e, uid, seat, reason)
    }
    fn reschedule_booking(&self, e: &Endpoint, uid: &str, m: &Move) -> Result<CalBooking, ApiFailure> {
        self.0.reschedule_booking(e, uid, m)
    }
    fn add_attendee(&self, e: &Endpoint, uid: &str, a: &NewAttendee) -> Result<(), ApiFailure> {
        self.0.add_attendee(e, uid, a)
    }
    fn slots(&self, e: &Endpoint, q: &SlotQuery) -> Result<SlotAnswer, ApiFailure> {
        self.0.slots(e, q)
    }
}

#[test]
fn a_cancel_racing_the_create_leaves_no_live_booking() {
    let e = env();
    let w = worker(&e, http());
    // The caller cancels while the create is on the wire: Cal.com books it,
    // then the cancel job (which waited for the create) cancels it.
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    let api = CancelsDuringCreate(HttpCalcom::new(std::time::Duration::from_secs(2)), e.book.clone(), a.appointment_id);
    let racing = worker(&e, Arc::new(api));
    let create = e.book.claim_jobs("w", 10).expect("claims");
    for job in create {
        racing.run_job(job);
    }
    assert_eq!(live_at(&e).len(), 1, "the create on the wire made its booking");
    let kinds: Vec<JobKind> = e.book.jobs_of(a.appointment_id).expect("jobs").iter().map(|j| j.kind).collect();
    assert_eq!(kinds, vec![JobKind::Create, JobKind::Cancel]);
    drain(&e, &w);
    assert!(live_at(&e).is_empty(), "and the cancel job cancelled it");
    assert_eq!(e.book.appointment(a.appointment_id).expect("a").status, AppointmentStatus::Cancelled);

    // A create whose answer was lost, then a cancel: the create looks, finds, and the cancel follows.
    e.fake.inject([Fault::LoseAnswer(std::time::Duration::from_millis(2500))]);
    let b = e.book.book(&request("call_known_a", "Max", "2030-01-09T09:00:00Z")).expect("books");
    w.run_once().expect("runs");
    assert_eq!(live_at(&e).len(), 1, "Cal.com has it; the worker does not know");
    assert!(e.book.appointment(b.appointment_id).expect("b").calcom_v2_booking_uid.is_none());
    e.book.cancel_appointment(&caller("call_known_a", b.appointment_id)).expect("cancels");
    drain(&e, &w);
    assert!(live_at(&e).is_empty(), "no orphan in Cal.com");
    assert_eq!(e.fake.stats().creates, 2, "nothing created twice");
    // Cancelled before the worker ever ran: nothing reaches Cal.com at all.
    let c = e.book.book(&request("call_known_a", "Max", "2030-01-10T09:00:00Z")).expect("books");
    e.book.cancel_appointment(&caller("call_known_a", c.appointment_id)).expect("cancels");
    let requests = e.fake.stats().requests;
    drain(&e, &w);
    assert_eq!(e.fake.stats().requests, requests);
}

#[test]
fn a_seat_is_cancelled_and_moved_alone() {
    let e = env();
    let w = worker(&e, http());
    // Each seat needs an attendee address of its own (Cal.com refuses one address twice).
    let fallback = r#"{"companies": [{"id": 1, "name": "Salon Berlin", "calcom_api_key": "cal_live_secret_one",
        "calcom_webhook_secret": "whsec_one", "calcom_email_fallback": "noreply+{appointment}@salon.example"}]}"#;
    e.book.import(&ImportData::from_json(fallback).expect("parses")).expect("imports");
    let colour = |call: &str| BookingRequest { service_id: Some(3), ..request(call, "Seat", "2030-01-08T09:00:00Z") };
    let one = e.book.book(&colour("call_known_a")).expect("books");
    let two = e.book.book(&colour("call_anon")).expect("books");
    drain(&e, &w);
    let uid = |id| {
        let a = e.book.appointment(id).expect("a");
        a.calcom_v2_booking_uid.clone().unwrap_or_else(|| panic!("not synced: {a:?}"))
    };
    assert_eq!(uid(one.appointment_id), uid(two.appointment_id), "two seats of one booking");
    e.book.cancel_appointment(&caller("call_anon", two.appointment_id)).expect("cancels");
    drain(&e, &w);
    let live = live_at(&e);
    assert_eq!(live.len(), 1, "the booking stays for the other seat");
    let seats = e.fake.bookings()[0]["attendees"].as_array().map_or(0, Vec::len);
    assert_eq!(seats, 1);
    // The remaining seat moves to another time: it leaves the booking (cancelled, empty) for a new one.
    let moved =
        ChangeRequest { new_start: Some("2030-01-08T13:00:00Z".into()), ..caller("call_known_a", one.appointment_id) };
    e.book.reschedule_appointment(&moved).expect("moves");
    drain(&e, &w);
    let after = e.book.appointment(one.appointment_id).expect("a");
    assert_eq!(
        live_at(&e),
        vec![(after.calcom_v2_booking_uid.clone().expect("uid"), "2030-01-08T13:00:00.000Z".into())]
    );
    assert!(after.calcom_v2_seat_uid.is_some());
}

/// Cal.com does the move, and the answer never arrives (once).
struct LosesOneMove(HttpCalcom, AtomicBool);

impl CalcomApi for LosesOneMove {
    fn create_booking(&self, e: &Endpoint, p: &serde_json::Value) -> Result<CalBooking, ApiFailure> {
        self.0.create_booking(e, p)
    }
    fn find_bookings(&self, e: &Endpoint, q: &BookingQuery) -> Result<BookingPage, ApiFailure> {
        self.0.find_bookings(e, q)
    }
    fn get_booking(&self, e: &Endpoint, uid: &str) -> Result<CalBooking, ApiFailure> {
        self.0.get_booking(e, uid)
    }
    fn cancel_booking(&self, e: &Endpoint, uid: &str, seat: Option<&str>, reason: &str) -> Result<(), ApiFailure> {
        self.0.cancel_booking(e, uid, seat, reason)
    }
    fn reschedule_booking(&self, e: &Endpoint, uid: &str, m: &Move) -> Result<CalBooking, ApiFailure> {
        let answer = self.0.reschedule_booking(e, uid, m);
        if !self.1.swap(true, Ordering::SeqCst) {
            return Err(ApiFailure::Timeout);
        }
        answer
    }
    fn add_attendee(&self, e: &Endpoint, uid: &str, a: &NewAttendee) -> Result<(), ApiFailure> {
        self.0.add_attendee(e, uid, a)
    }
    fn slots(&self, e: &Endpoint, q: &SlotQuery) -> Result<SlotAnswer, ApiFailure> {
        self.0.slots(e, q)
    }
}

#[test]
fn a_move_whose_answer_was_lost_is_found_again() {
    let e = env();
    let w =
        worker(&e, Arc::new(LosesOneMove(HttpCalcom::new(std::time::Duration::from_secs(2)), AtomicBool::new(false))));
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    drain(&e, &w);
    let moved =
        ChangeRequest { new_start: Some("2030-01-08T12:00:00Z".into()), ..caller("call_known_a", a.appointment_id) };
    e.book.reschedule_appointment(&moved).expect("moves");
    drain(&e, &w);
    let after = e.book.appointment(a.appointment_id).expect("a");
    // Cal.com refused the retry ("rescheduled already to …") and named the new booking: taken.
    assert_eq!(
        live_at(&e),
        vec![(after.calcom_v2_booking_uid.clone().expect("uid"), "2030-01-08T12:00:00.000Z".into())]
    );
    assert_eq!((after.calcom_sync_status, after.requires_manual_review), (SyncStatus::Synced, false));
}

#[test]
fn the_agent_moves_only_to_times_cal_com_has_free_its_own_excepted() {
    let e = env();
    let w = worker(&e, http());
    let config = AvailabilityConfig { calcom_url: e.fake.url().into(), ..Default::default() };
    let availability = Arc::new(Availability::new(e.book.clone(), http(), config));
    let agent = Agent::new(e.book.clone(), Secret::new(conformance::RETELL_KEY)).with_availability(availability);
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    drain(&e, &w);
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&chrono::Utc);
    e.fake
        .add_booking_elsewhere(1001, at("2030-01-08T11:00:00Z"), serde_json::json!({"name": "Walk-in"}))
        .expect("booked");
    let move_to = |start: &str| {
        let body = serde_json::json!({"name": "reschedule_appointment", "call": {"call_id": "call_known_a"},
            "args": {"appointment_id": a.appointment_id, "new_start": start, "confirmed": true}});
        conformance::retell(&agent, &body.to_string())
    };
    // Taken in Cal.com by a booking made elsewhere: refused with free times nearby.
    let taken = move_to("2030-01-08T11:00:00Z");
    assert_eq!(
        (taken.body["ok"].as_bool(), taken.body["code"].as_str()),
        (Some(false), Some("slot_unavailable")),
        "{}",
        taken.body
    );
    assert!(!taken.body["alternatives"].as_array().expect("alternatives").is_empty());
    // Half an hour later overlaps only its own booking (45 minutes in Cal.com): free for this move.
    let moved = move_to("2030-01-08T09:30:00Z");
    assert_eq!(moved.body["rescheduled"], true, "{}", moved.body);
    assert!(e.fake.last_request().is_some());
    drain(&e, &w);
    let after = e.book.appointment(a.appointment_id).expect("a");
    let live = live_at(&e);
    assert!(
        live.contains(&(after.calcom_v2_booking_uid.clone().expect("uid"), "2030-01-08T09:30:00.000Z".into())),
        "{live:?}"
    );
    assert_eq!(live.len(), 2, "the move and the booking made elsewhere");
}

#[test]
fn a_retried_move_by_date_through_the_agent_answers_the_move_again() {
    let e = env();
    let w = worker(&e, http());
    let config = AvailabilityConfig { calcom_url: e.fake.url().into(), ..Default::default() };
    let availability = Arc::new(Availability::new(e.book.clone(), http(), config));
    let agent = Agent::new(e.book.clone(), Secret::new(conformance::RETELL_KEY)).with_availability(availability);
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    drain(&e, &w);
    // Matched by the old date, as a caller says it, moved to another day; Retell sends the
    // confirmed call twice, and the old date matches nothing any more.
    let body = serde_json::json!({"name": "reschedule_appointment", "call": {"call_id": "call_known_a"},
        "args": {"date": "2030-01-08", "new_start": "2030-01-09T10:00:00Z", "confirmed": true}})
    .to_string();
    let first = conformance::retell(&agent, &body);
    assert_eq!(first.body["rescheduled"], true, "{}", first.body);
    assert_eq!(first.body["repeated"], false, "{}", first.body);
    let again = conformance::retell(&agent, &body);
    assert_eq!(
        (again.body["rescheduled"].as_bool(), again.body["repeated"].as_bool()),
        (Some(true), Some(true)),
        "{}",
        again.body
    );
    assert_eq!(again.body["appointment_id"], a.appointment_id.0);
    drain(&e, &w);
    assert_eq!(live_at(&e).len(), 1, "one move reached Cal.com");
}
