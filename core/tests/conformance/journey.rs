//! The rest of the call, on every store: who may find, cancel and move
//! which appointment; confirmation and retries; the outbox each change
//! writes; policies; callbacks; the call's context.

use super::*;

fn change(call: &str) -> ChangeRequest {
    ChangeRequest { retell_call_id: Some(call.into()), ..Default::default() }
}

fn by_id(call: &str, id: AppointmentId) -> ChangeRequest {
    ChangeRequest { appointment_id: Some(id.0), ..change(call) }
}

fn confirmed(request: ChangeRequest) -> ChangeRequest {
    ChangeRequest { confirmed: true, ..request }
}

fn moved_to(request: ChangeRequest, start: &str) -> ChangeRequest {
    ChangeRequest { new_start: Some(start.into()), ..request }
}

fn code<T: std::fmt::Debug>(result: Result<T>) -> String {
    result.expect_err("refused").code().to_string()
}

fn kinds_of(e: &Env, id: AppointmentId) -> Vec<(JobKind, JobState)> {
    e.book.jobs_of(id).expect("jobs").iter().map(|j| (j.kind, j.state)).collect()
}

pub fn callers_see_and_change_only_their_own(make: MakeStore) {
    let e = env(make);
    // The same number in two calls of company 1, and in company 2.
    let mine = e.book.book(&request("call_known_a", "Max", "2030-01-08T10:00:00Z")).expect("books");
    let anon = e.book.book(&request("call_anon", "Jane", "2030-01-08T11:00:00Z")).expect("books");
    // Another call from the same number finds it (E.164, same company).
    let found = e.book.find_appointments("call_known_c", None).expect("finds");
    assert_eq!(found.iter().map(|a| a.id).collect::<Vec<_>>(), vec![mine.appointment_id]);
    let found = e.book.find_appointments("call_known_b", Some("2030-01-08")).expect("finds by the dialled number");
    assert_eq!(found.len(), 1);
    // The same number in another company: nothing there, and not verified.
    assert_eq!(code(e.book.find_appointments("call_c2", None)), "caller_not_verified");
    // Another caller of the company asking by id: not verified, nothing changed.
    let before = totals(&e.book);
    assert_eq!(
        code(e.book.cancel_appointment(&confirmed(by_id("call_ny", mine.appointment_id)))),
        "caller_not_verified"
    );
    // An anonymous caller may undo what this same call booked, and nothing else.
    assert_eq!(code(e.book.find_appointments("call_anon_2", None)), "caller_not_verified");
    assert_eq!(
        code(e.book.cancel_appointment(&confirmed(by_id("call_anon_2", anon.appointment_id)))),
        "caller_not_verified"
    );
    let by_day = ChangeRequest { date: Some("2030-01-08".into()), ..change("call_anon_2") };
    assert_eq!(code(e.book.cancel_appointment(&confirmed(by_day))), "caller_not_verified");
    assert_eq!(
        code(e.book.cancel_appointment(&confirmed(by_id("call_anon", mine.appointment_id)))),
        "caller_not_verified"
    );
    assert_eq!(totals(&e.book), before, "nothing written by a refusal");
    assert_eq!(e.book.find_appointments("call_anon", None).expect("own").len(), 1);
    let undone = e.book.cancel_appointment(&confirmed(change("call_anon"))).expect("the same call undoes it");
    assert_eq!((undone.appointment_id, undone.status), (anon.appointment_id, AppointmentStatus::Cancelled));
    assert_eq!(e.book.appointment(mine.appointment_id).expect("a").status, AppointmentStatus::Confirmed);
    // Names never match: a stranger naming the customer gets nothing either.
    let named = ChangeRequest { reason: Some("I am Max".into()), ..by_id("call_ny", mine.appointment_id) };
    assert_eq!(code(e.book.cancel_appointment(&confirmed(named))), "caller_not_verified");
    // Operators see any appointment by id.
    let by = ChangeRequest {
        operator: Some("Ada".into()),
        appointment_id: Some(mine.appointment_id.0),
        ..Default::default()
    };
    assert!(e.book.cancel_appointment(&by).expect("an operator may").needs_confirmation);
    assert_eq!(code(e.book.cancel_appointment(&ChangeRequest::default())), "actor_required");
}

pub fn matching_by_day_and_time(make: MakeStore) {
    let e = env(make);
    let morning = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    let evening = e.book.book(&request("call_known_a", "Max", "2030-01-08T15:00:00Z")).expect("books");
    let other = e.book.book(&request("call_known_a", "Max", "2030-01-10T09:00:00Z")).expect("books");
    let on = |date: &str, time: Option<&str>| ChangeRequest {
        date: Some(date.into()),
        time: time.map(str::to_string),
        ..change("call_known_c")
    };
    // Two that day: say which; with the local time (Berlin, UTC+1), the one.
    let err = e.book.cancel_appointment(&on("2030-01-08", None)).expect_err("two");
    assert_eq!(err.code(), "multiple_found");
    assert_eq!(err.to_json()["appointments"], serde_json::json!([morning.appointment_id, evening.appointment_id]));
    let one = e.book.cancel_appointment(&on("2030-01-08", Some("16:00"))).expect("one");
    assert_eq!((one.appointment_id, one.needs_confirmation), (evening.appointment_id, true));
    assert_eq!(e.book.cancel_appointment(&on("10.01.2030", None)).expect("one").appointment_id, other.appointment_id);
    assert_eq!(code(e.book.cancel_appointment(&on("2030-01-09", None))), "appointment_not_found");
    assert_eq!(code(e.book.cancel_appointment(&on("2030-01-08", Some("12:00")))), "appointment_not_found");
    assert_eq!(code(e.book.cancel_appointment(&on("someday", None))), "invalid_date");
    // No day: the only one, or which one.
    assert_eq!(code(e.book.cancel_appointment(&change("call_known_c"))), "multiple_found");
    // find lists at most five, soonest first, and narrows to a day.
    let listed: Vec<AppointmentId> =
        e.book.find_appointments("call_known_c", None).expect("finds").iter().map(|a| a.id).collect();
    assert_eq!(listed, vec![morning.appointment_id, evening.appointment_id, other.appointment_id]);
    assert_eq!(e.book.find_appointments("call_known_c", Some("2030-01-10")).expect("finds").len(), 1);
}

pub fn cancel_asks_first_and_a_retry_answers_the_same(make: MakeStore) {
    let e = env(make);
    let pending = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    let before = totals(&e.book);
    let asked = e.book.cancel_appointment(&by_id("call_known_a", pending.appointment_id)).expect("asks");
    assert!(asked.needs_confirmation && !asked.repeated);
    assert_eq!(totals(&e.book), before, "nothing written before confirmation");
    assert_eq!(e.book.appointment(pending.appointment_id).expect("a").status, AppointmentStatus::Confirmed);
    // Confirmed before Cal.com heard of it: the unsent create is dropped, nothing to send.
    let reason = ChangeRequest { reason: Some("ill".into()), ..by_id("call_known_a", pending.appointment_id) };
    let done = e.book.cancel_appointment(&confirmed(reason.clone())).expect("cancels");
    assert_eq!((done.status, done.needs_confirmation, done.repeated), (AppointmentStatus::Cancelled, false, false));
    assert_eq!(kinds_of(&e, pending.appointment_id), vec![(JobKind::Create, JobState::Cancelled)]);
    // Nothing is owed to Cal.com: not pending, counted apart.
    let stats = e.book.stats().expect("stats");
    assert_eq!((stats.appointments["pending"], stats.appointments["cancelled_before_sync"]), (0, 1));
    // Retell retries the confirmed call: the same answer, nothing new written.
    let after = totals(&e.book);
    let again = e.book.cancel_appointment(&confirmed(reason)).expect("the same");
    assert_eq!(
        (again.appointment_id, again.status, again.repeated),
        (pending.appointment_id, AppointmentStatus::Cancelled, true)
    );
    let by_day = ChangeRequest { date: Some("2030-01-08".into()), ..change("call_known_a") };
    assert!(e.book.cancel_appointment(&confirmed(by_day)).expect("the same by day").repeated);
    assert_eq!(totals(&e.book), after);
    let changes = e.book.appointment_changes(pending.appointment_id).expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].kind, changes[0].reason.as_deref()), (ChangeKind::Cancel, Some("ill")));
    assert!(matches!(changes[0].by, ChangedBy::Call { .. }));

    // Synced: a cancel job carries it to Cal.com.
    let synced = e.book.book(&request("call_known_a", "Max", "2030-01-09T09:00:00Z")).expect("books");
    synced_as(&e, synced.appointment_id, "uid-synced", None);
    let jobs = e.book.claim_jobs("w", 10).expect("claims");
    for job in jobs.iter().filter(|j| j.appointment_id == synced.appointment_id) {
        assert!(e.book.finish_job(job, JobEvent::Succeed, None).expect("finishes"));
    }
    e.book.cancel_appointment(&confirmed(by_id("call_known_a", synced.appointment_id))).expect("cancels");
    assert!(kinds_of(&e, synced.appointment_id).contains(&(JobKind::Cancel, JobState::Available)));

    // A create in flight (claimed, being sent): it goes on, and a cancel job follows it.
    let flying = e.book.book(&request("call_known_a", "Max", "2030-01-10T09:00:00Z")).expect("books");
    let held = e.book.claim_jobs("w", 10).expect("claims");
    assert!(held.iter().any(|j| j.appointment_id == flying.appointment_id));
    e.book.cancel_appointment(&confirmed(by_id("call_known_a", flying.appointment_id))).expect("cancels");
    let kinds = kinds_of(&e, flying.appointment_id);
    assert!(
        kinds.contains(&(JobKind::Create, JobState::Running))
            && kinds.contains(&(JobKind::Cancel, JobState::Available)),
        "{kinds:?}"
    );
    // Its create in flight still owes a cancel: pending, not "cancelled before sync".
    assert_eq!(e.book.stats().expect("stats").appointments["cancelled_before_sync"], 1);
    // An appointment that has started is no longer cancelled, even by an operator.
    let past = e.book.book(&request("call_known_a", "Max", "2030-01-11T09:00:00Z")).expect("books");
    e.clock.set(t0() + Duration::days(20));
    let started = e.book.cancel_appointment(&ChangeRequest {
        operator: Some("Ada".into()),
        appointment_id: Some(past.appointment_id.0),
        ..Default::default()
    });
    assert_eq!(code(started), "start_in_past");
    let unknown = ChangeRequest { operator: Some("Ada".into()), appointment_id: Some(999), ..Default::default() };
    assert_eq!(code(e.book.cancel_appointment(&unknown)), "appointment_not_found");
}

pub fn reschedule_keeps_every_booking_rule(make: MakeStore) {
    let e = env(make);
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    let me = || by_id("call_known_a", a.appointment_id);
    assert_eq!(code(e.book.reschedule_appointment(&me())), "new_start_required");
    assert_eq!(code(e.book.reschedule_appointment(&moved_to(me(), "2029-12-31T09:00:00Z"))), "start_in_past");
    assert_eq!(code(e.book.reschedule_appointment(&moved_to(me(), "2033-01-01T09:00:00Z"))), "invalid_start");
    // Unconfirmed: the question, nothing written.
    let before = totals(&e.book);
    let asked = e.book.reschedule_appointment(&moved_to(me(), "2030-01-08T13:00:00Z")).expect("asks");
    assert_eq!((asked.needs_confirmation, format_utc(&asked.starts_at)), (true, "2030-01-08T13:00:00Z".into()));
    assert_eq!(asked.previous_starts_at.map(|t| format_utc(&t)).as_deref(), Some("2030-01-08T09:00:00Z"));
    assert_eq!(totals(&e.book), before);
    // Local date and time in the branch's zone, confirmed: same appointment, moved.
    let local = ChangeRequest { new_date: Some("2030-01-08".into()), new_time: Some("14:00".into()), ..me() };
    let moved = e.book.reschedule_appointment(&confirmed(local.clone())).expect("moves");
    assert_eq!((moved.appointment_id, format_utc(&moved.starts_at)), (a.appointment_id, "2030-01-08T13:00:00Z".into()));
    let after = e.book.appointment(a.appointment_id).expect("a");
    assert_eq!(
        (after.rescheduled_count, after.previous_starts_at.map(|t| format_utc(&t))),
        (1, Some("2030-01-08T09:00:00Z".into()))
    );
    assert_eq!(format_utc(&after.ends_at), "2030-01-08T13:30:00Z");
    // Not synced yet: the waiting create sends the new time; no move job.
    assert_eq!(kinds_of(&e, a.appointment_id), vec![(JobKind::Create, JobState::Available)]);
    // A retried confirmation answers the same and writes nothing.
    let written = totals(&e.book);
    assert!(e.book.reschedule_appointment(&confirmed(local)).expect("same").repeated);
    assert_eq!(totals(&e.book), written);
    assert_eq!(e.book.appointment(a.appointment_id).expect("a").rescheduled_count, 1);

    // Synced: a move job carries it to Cal.com.
    synced_as(&e, a.appointment_id, "uid-a", None);
    for job in e.book.claim_jobs("w", 10).expect("claims") {
        e.book.finish_job(&job, JobEvent::Succeed, None).expect("finishes");
    }
    e.book.reschedule_appointment(&confirmed(moved_to(me(), "2030-01-09T13:00:00Z"))).expect("moves");
    assert!(kinds_of(&e, a.appointment_id).contains(&(JobKind::Reschedule, JobState::Available)));
    assert_eq!(e.book.appointment(a.appointment_id).expect("a").calcom_sync_status, SyncStatus::Pending);
    // The change log holds both moves, from and to.
    let log = e.book.appointment_changes(a.appointment_id).expect("log");
    let moves: Vec<(String, Option<String>)> =
        log.iter().map(|c| (format_utc(&c.from_starts_at), c.to_starts_at.map(|t| format_utc(&t)))).collect();
    assert_eq!(
        moves,
        vec![
            ("2030-01-08T09:00:00Z".into(), Some("2030-01-08T13:00:00Z".into())),
            ("2030-01-08T13:00:00Z".into(), Some("2030-01-09T13:00:00Z".into()))
        ]
    );

    // Capacity: a full slot refuses; the appointment's own place does not count against it.
    let colour = |call: &str, start: &str| BookingRequest { service_id: Some(3), ..request(call, "C", start) };
    let c1 = e.book.book(&colour("call_known_a", "2030-01-08T10:00:00Z")).expect("books");
    e.book.book(&colour("call_anon", "2030-01-08T12:00:00Z")).expect("books");
    e.book.book(&colour("call_anon_2", "2030-01-08T12:00:00Z")).expect("books");
    let to_full = confirmed(moved_to(by_id("call_known_a", c1.appointment_id), "2030-01-08T12:00:00Z"));
    assert_eq!(code(e.book.reschedule_appointment(&to_full)), "slot_unavailable");
    // A cancelled appointment is not moved.
    let gone = e.book.book(&request("call_known_a", "Max", "2030-01-11T09:00:00Z")).expect("books");
    e.book.cancel_appointment(&confirmed(by_id("call_known_a", gone.appointment_id))).expect("cancels");
    let revive = confirmed(moved_to(by_id("call_known_a", gone.appointment_id), "2030-01-12T09:00:00Z"));
    assert_eq!(code(e.book.reschedule_appointment(&revive)), "appointment_cancelled");
}

pub fn reschedule_honours_what_the_call_was_offered(make: MakeStore) {
    let e = env(make);
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    let day = chrono::NaiveDate::from_ymd_opt(2030, 1, 9).expect("day");
    let offered = Offered {
        starts: ["2030-01-09T08:00:00Z", "2030-01-09T09:00:00Z", "2030-01-09T11:00:00Z"]
            .iter()
            .map(|s| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc))
            .collect(),
        length_minutes: Some(30),
    };
    let call = callbook::store::read(&**e.book.store(), |tx| tx.call(&CallId::from("call_known_a"))).expect("reads");
    let (call, now) = (call.expect("call").id, e.book.now());
    callbook::store::write(&**e.book.store(), move |tx| tx.remember_slots(call, ServiceId(1), day, &offered, now))
        .expect("remembers");
    let to = |start: &str| confirmed(moved_to(by_id("call_known_a", a.appointment_id), start));
    let err = e.book.reschedule_appointment(&to("2030-01-09T10:00:00Z")).expect_err("not offered");
    assert_eq!(err.code(), "slot_unavailable");
    assert_eq!(
        err.alternatives().iter().map(format_utc).collect::<Vec<_>>(),
        ["2030-01-09T08:00:00Z", "2030-01-09T09:00:00Z", "2030-01-09T11:00:00Z"]
    );
    assert_eq!(
        format_utc(&e.book.reschedule_appointment(&to("2030-01-09T11:00:00Z")).expect("offered").starts_at),
        "2030-01-09T11:00:00Z"
    );
}

pub fn policies_refuse_with_their_deadline_and_operators_may_force(make: MakeStore) {
    let e = env(make);
    let policy = r#"{"companies": [{"id": 1, "name": "Salon Berlin", "calcom_api_key": "cal_live_secret_one",
        "policy": {"min_cancel_notice_hours": 24, "min_reschedule_notice_hours": 12, "max_reschedules": 1}}],
        "services": [{"id": 3, "company_id": 1, "name": "Colour", "calcom_event_type_id": 1002, "duration_minutes": 60,
        "capacity": 2, "policy": {"min_cancel_notice_hours": 2}}]}"#;
    e.book.import(&ImportData::from_json(policy).expect("parses")).expect("imports");
    // Tomorrow 06:00 UTC is 22 hours away: too late to cancel (24 h), not to move (12 h).
    let soon = e.book.book(&request("call_known_a", "Max", "2030-01-02T06:00:00Z")).expect("books");
    let err = e.book.cancel_appointment(&confirmed(by_id("call_known_a", soon.appointment_id))).expect_err("late");
    assert_eq!((err.code(), err.to_json()["deadline"].as_str()), ("too_late_to_cancel", Some("2030-01-01T06:00:00Z")));
    let first = confirmed(moved_to(by_id("call_known_a", soon.appointment_id), "2030-01-03T06:00:00Z"));
    e.book.reschedule_appointment(&first).expect("one move allowed");
    let second = confirmed(moved_to(by_id("call_known_a", soon.appointment_id), "2030-01-04T06:00:00Z"));
    assert_eq!(code(e.book.reschedule_appointment(&second)), "reschedule_limit_reached");
    // The service's own notice (2 h) overrides the company's for cancelling.
    let colour = BookingRequest { service_id: Some(3), ..request("call_known_a", "Max", "2030-01-02T06:00:00Z") };
    let c = e.book.book(&colour).expect("books");
    e.book.cancel_appointment(&confirmed(by_id("call_known_a", c.appointment_id))).expect("2 h is enough");
    // An operator goes past it with force, and the log says who.
    let late = e.book.book(&request("call_known_c", "Max", "2030-01-02T07:00:00Z")).expect("books");
    let operator = |force| ChangeRequest {
        operator: Some("Ada".into()),
        force,
        appointment_id: Some(late.appointment_id.0),
        confirmed: true,
        ..Default::default()
    };
    assert_eq!(code(e.book.cancel_appointment(&operator(false))), "too_late_to_cancel");
    e.book.cancel_appointment(&operator(true)).expect("forced");
    let log = e.book.appointment_changes(late.appointment_id).expect("log");
    assert_eq!(log.last().map(|c| c.by.clone()), Some(ChangedBy::Operator { name: "Ada".into() }));
}

pub fn callbacks_are_filed_listed_and_done(make: MakeStore) {
    let e = env(make);
    let known = e
        .book
        .request_callback(&CallbackRequest {
            retell_call_id: "call_known_a".into(),
            customer_name: "Max".into(),
            reason: Some("wants to move".into()),
            phone: Some("+49 170 0000000".into()),
            ..Default::default()
        })
        .expect("files");
    // The number the call showed wins over the one given.
    assert_eq!((known.phone.as_deref(), known.status), (Some("+491512345678"), CallbackStatus::Open));
    let anon = e
        .book
        .request_callback(&CallbackRequest {
            retell_call_id: "call_anon".into(),
            customer_name: "Jane".into(),
            phone: Some("0170 1234567".into()),
            ..Default::default()
        })
        .expect("files");
    assert_eq!(anon.phone.as_deref(), Some("+491701234567"));
    let missing = CallbackRequest { retell_call_id: "call_anon".into(), ..Default::default() };
    assert_eq!(code(e.book.request_callback(&missing)), "customer_name_required");
    assert_eq!(e.book.callbacks(Some(CallbackStatus::Open)).expect("lists").len(), 2);
    let done = e.book.callback_done(known.id, "Ada").expect("done");
    assert_eq!((done.status, done.done_by.as_deref()), (CallbackStatus::Done, Some("Ada")));
    assert_eq!(e.book.callbacks(Some(CallbackStatus::Open)).expect("lists").len(), 1);
    assert_eq!(e.book.callbacks(None).expect("lists").len(), 2);
    assert_eq!(code(e.book.callback_done(CallbackId(999), "Ada")), "callback_not_found");
}

pub fn the_call_context_gives_today_in_the_branch(make: MakeStore) {
    let e = env(make);
    e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    // 2030-01-01 08:00 UTC: Tuesday in Berlin; in New York still 03:00 on Tuesday.
    let context = e.book.call_context("call_known_c").expect("context");
    assert_eq!((context.today.as_str(), context.weekday.as_str()), ("2030-01-01", "Tuesday"));
    assert_eq!((context.known_caller, context.customer_name.as_deref(), context.upcoming), (true, Some("Max"), 1));
    assert_eq!(context.services.len(), 2);
    e.clock.set(t0() - Duration::hours(10));
    let ny = e.book.call_context("call_ny").expect("context");
    assert_eq!((ny.today.as_str(), ny.time_zone.as_str(), ny.known_caller), ("2029-12-31", "America/New_York", false));
}

pub fn the_agent_answers_the_rest_of_the_call(make: MakeStore) {
    let e = env(make);
    let agent = Agent::new(e.book.clone(), Secret::new(RETELL_KEY));
    let say = |call: &str, name: &str, args: serde_json::Value| {
        let body = serde_json::json!({"name": name, "call": {"call_id": call, "from_number": "+49 151 2345678",
            "to_number": "+49 30 1234567"}, "args": args});
        retell(&agent, &body.to_string())
    };
    let a = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    e.book.book(&request("call_known_a", "Max", "2030-01-08T15:00:00Z")).expect("books");

    // A new call from the known number: the context, without registering anything yet.
    let before = totals(&e.book);
    let context = say("call_new", "get_call_context", serde_json::json!({}));
    assert_eq!(context.status, 200, "{}", context.body);
    assert_eq!(
        (context.body["today"].as_str(), context.body["known_caller"].as_bool()),
        (Some("2030-01-01"), Some(true))
    );
    assert_eq!(context.body["message"], "Heute ist Dienstag, 1. Januar.");
    let found = say("call_new", "find_appointments", serde_json::json!({"date": "2030-01-08"}));
    assert_eq!(found.body["appointments"].as_array().map(Vec::len), Some(2), "{}", found.body);
    assert_eq!(found.body["appointments"][0]["spoken"], "Dienstag, 8. Januar um 10:00 Uhr");
    assert!(found.body["message"].as_str().unwrap_or("").starts_with("Sie haben 2 Termine: Haircut am Dienstag"));
    // Two that day: which one?
    let which = say("call_new", "cancel_appointment", serde_json::json!({"date": "2030-01-08"}));
    assert_eq!((which.status, which.body["code"].as_str()), (200, Some("multiple_found")));
    assert!(which.body["message"].as_str().unwrap_or("").ends_with("Welchen meinen Sie?"), "{}", which.body);
    // The question first, then the cancel; Retell's retry answers the same.
    let asked = say("call_new", "cancel_appointment", serde_json::json!({"date": "2030-01-08", "time": "10:00"}));
    assert_eq!(asked.body["needs_confirmation"], true);
    assert_eq!(asked.body["message"], "Soll ich Ihren Termin am Dienstag, 8. Januar um 10:00 Uhr stornieren?");
    assert_eq!(totals(&e.book), before, "nothing written yet, not even the call");
    let args = serde_json::json!({"appointment_id": a.appointment_id, "confirmed": "true", "reason": "krank"});
    let done = say("call_new", "cancel_appointment", args.clone());
    assert_eq!((done.body["cancelled"].as_bool(), done.change.is_some()), (Some(true), true), "{}", done.body);
    assert_eq!(done.body["message"], "Ihr Termin am Dienstag, 8. Januar um 10:00 Uhr ist storniert.");
    let again = say("call_new", "cancel_appointment", args);
    assert_eq!(
        (again.body["message"].clone(), again.body["repeated"].as_bool()),
        (done.body["message"].clone(), Some(true))
    );
    assert!(again.change.is_none(), "a retry is no new change");
    // The other one moves, asked then confirmed.
    let to = serde_json::json!({"date": "2030-01-08", "new_date": "2030-01-09", "new_time": "11:30"});
    let asked = say("call_new", "reschedule_appointment", to.clone());
    assert_eq!(
        asked.body["message"],
        "Soll ich Ihren Termin von Dienstag, 8. Januar um 16:00 Uhr auf Mittwoch, 9. Januar um 11:30 Uhr verschieben?"
    );
    let mut confirmed = to;
    confirmed["confirmed"] = true.into();
    let moved = say("call_new", "reschedule_appointment", confirmed);
    assert_eq!(
        moved.body["message"], "Erledigt: Ihr Termin ist jetzt am Mittwoch, 9. Januar um 11:30 Uhr.",
        "{}",
        moved.body
    );
    // A caller the company does not know: offered a callback, which is filed.
    let stranger = |name: &str, args: serde_json::Value| {
        let body = serde_json::json!({"name": name, "call": {"call_id": "call_stranger", "from_number": "anonymous",
            "to_number": "+49 30 1234567"}, "args": args});
        retell(&agent, &body.to_string())
    };
    let refused = stranger("cancel_appointment", serde_json::json!({"date": "2030-01-09", "confirmed": true}));
    assert_eq!(
        (refused.status, refused.body["code"].as_str(), refused.body["offer_callback"].as_bool()),
        (200, Some("caller_not_verified"), Some(true))
    );
    let callback = stranger(
        "request_callback",
        serde_json::json!({"customer_name": "Max", "phone": "0151 2345678", "reason": "cancel"}),
    );
    assert_eq!(callback.body["message"], "Vielen Dank. Jemand aus dem Team ruft Sie zurück.");
    let id = callback.body["callback_id"].as_i64().expect("an id");
    let open = e.book.callbacks(Some(CallbackStatus::Open)).expect("lists");
    assert_eq!((open.len(), open[0].id.0, open[0].phone.as_deref()), (1, id, Some("+491512345678")));
    let bad = stranger("request_callback", serde_json::json!({"customer_name": 5}));
    assert_eq!((bad.status, bad.body["code"].as_str()), (400, Some("invalid_argument")));
}

pub fn bookings_made_in_calcom_are_held_once(make: MakeStore) {
    let e = env(make);
    let known = e.book.book(&request("call_known_a", "Max", "2030-01-08T09:00:00Z")).expect("books");
    let max = e.book.appointment(known.appointment_id).expect("a").customer_id;
    let created = |minutes: i64, uid: &str, event_type: i64, attendee: serde_json::Value| {
        hook(
            "BOOKING_CREATED",
            minutes,
            serde_json::json!({"uid": uid, "bookingId": 9000 + minutes, "eventTypeId": event_type,
                "startTime": "2030-01-09T09:00:00Z", "endTime": "2030-01-09T09:45:00Z", "attendees": [attendee],
                "metadata": {"videoCallUrl": "https://app.cal.com/video/x"}, "status": "ACCEPTED"}),
        )
    };
    let deliver = |body: &str| deliver_as(&e, 1, "whsec_one", body);
    // Booked on Cal.com's page by a known caller: held, their customer, synced, never pushed back.
    let by_max = created(
        1,
        "cal-max",
        1001,
        serde_json::json!({"name": "Max M.", "email": "max@example.com", "phoneNumber": "0151 2345678"}),
    );
    let WebhookOutcome::Imported { appointment_ids } = deliver(&by_max).expect("imports") else {
        panic!("not imported")
    };
    let held = e.book.appointment(appointment_ids[0]).expect("held");
    assert_eq!((held.customer_id, held.service_id, held.sync_origin), (max, ServiceId(1), SyncOrigin::Calcom));
    assert_eq!((held.calcom_sync_status, held.calcom_v2_booking_uid.as_deref()), (SyncStatus::Synced, Some("cal-max")));
    assert_eq!(format_utc(&held.ends_at), "2030-01-09T09:45:00Z", "Cal.com's end");
    assert!(e.book.jobs_of(held.id).expect("jobs").is_empty(), "nothing to push back");
    // A redelivery holds nothing twice.
    let before = totals(&e.book);
    assert_eq!(deliver(&by_max).expect("again"), WebhookOutcome::AlreadyApplied { appointment_ids: vec![held.id] });
    assert_eq!(totals(&e.book), before);
    // The caller finds it by phone, and Cal.com's later changes reach it.
    assert!(e
        .book
        .find_appointments("call_known_c", Some("2030-01-09"))
        .expect("finds")
        .iter()
        .any(|a| a.id == held.id));
    let moved = hook(
        "BOOKING_RESCHEDULED",
        2,
        serde_json::json!({"uid": "cal-max-2", "rescheduleUid": "cal-max",
        "startTime": "2030-01-10T09:00:00Z", "endTime": "2030-01-10T09:45:00Z"}),
    );
    assert_eq!(deliver(&moved).expect("moves"), WebhookOutcome::Rescheduled { appointment_ids: vec![held.id] });
    let gone = hook("BOOKING_CANCELLED", 3, serde_json::json!({"uid": "cal-max-2"}));
    assert_eq!(deliver(&gone).expect("cancels"), WebhookOutcome::Cancelled { appointment_ids: vec![held.id] });
    // A new attendee by email only, and one with nothing: customers of the company, never a match by name.
    let by_mail = created(4, "cal-mail", 1001, serde_json::json!({"name": "Max", "email": "new@example.com"}));
    let WebhookOutcome::Imported { appointment_ids } = deliver(&by_mail).expect("imports") else {
        panic!("not imported")
    };
    let a = e.book.appointment(appointment_ids[0]).expect("held");
    let c = e.book.customer(CompanyId(1), a.customer_id).expect("reads").expect("customer");
    assert_ne!(c.id, max, "not matched by name");
    assert_eq!(
        (c.source, c.email.as_deref(), c.phone.starts_with("anonymous_")),
        (CustomerSource::Calcom, Some("new@example.com"), true)
    );
    let nobody = created(5, "cal-nobody", 1001, serde_json::json!({"name": "Walk-in"}));
    let WebhookOutcome::Imported { appointment_ids } = deliver(&nobody).expect("imports") else {
        panic!("not imported")
    };
    let walk_in = e.book.appointment(appointment_ids[0]).expect("held").customer_id;
    assert!(e.book.customer(CompanyId(1), walk_in).expect("reads").expect("c").phone.starts_with("anonymous_"));
    // An event type no service books, or another tenant's: not placed, nothing written.
    let before = totals(&e.book);
    let unknown = created(6, "cal-unknown", 9999, serde_json::json!({"name": "X"}));
    let placed = deliver(&unknown).expect("answers");
    assert_eq!(placed, WebhookOutcome::Unplaced { event_type_id: Some(9999), reason: "unmapped_event_type".into() });
    let theirs = created(7, "cal-theirs", 2001, serde_json::json!({"name": "X"}));
    assert!(matches!(deliver(&theirs).expect("answers"), WebhookOutcome::Unplaced { .. }), "company 2's event type");
    // callbook's own booking echoing back: recognised by its key, nothing changes.
    let key = e.book.appointment(known.appointment_id).expect("a").idempotency_key;
    let echo = hook(
        "BOOKING_CREATED",
        8,
        serde_json::json!({"uid": "cal-echo", "eventTypeId": 1001,
        "startTime": "2030-01-08T09:00:00Z", "endTime": "2030-01-08T09:45:00Z", "attendees": [{"name": "Max"}],
        "metadata": {"callbook_key": key}}),
    );
    assert_eq!(
        deliver(&echo).expect("echo"),
        WebhookOutcome::AlreadyApplied { appointment_ids: vec![known.appointment_id] }
    );
    assert_eq!(totals(&e.book), before);
    // A capacity service counts what came from Cal.com.
    let colour = |minutes, uid: &str| {
        hook(
            "BOOKING_CREATED",
            minutes,
            serde_json::json!({"uid": uid, "eventTypeId": 1002,
            "startTime": "2030-01-11T09:00:00Z", "endTime": "2030-01-11T10:00:00Z", "attendees": [{"name": "C"}]}),
        )
    };
    deliver(&colour(9, "cal-c1")).expect("imports");
    deliver(&colour(10, "cal-c2")).expect("imports");
    let full = BookingRequest { service_id: Some(3), ..request("call_known_a", "Max", "2030-01-11T09:00:00Z") };
    assert_eq!(code(e.book.book(&full)), "slot_unavailable");
}
