//! The `callbook` binary end to end: real processes on a real database file,
//! checking the JSON, the error JSON and the exit codes DESIGN.md promises.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn callbook(db: &Path, args: &[&str]) -> (Value, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_callbook"))
        .arg("--db")
        .arg(db)
        .arg("--json")
        .args(args)
        .env_remove("CALLBOOK_DB")
        // The tests book in 2099 so their dates stay in the future: past the default 365-day horizon.
        .env("CALLBOOK_HORIZON_DAYS", HORIZON_DAYS)
        .output()
        .expect("runs");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout, got {stdout:?}");
    (serde_json::from_str(lines[0]).expect("stdout is JSON"), out.status.code().expect("exit code"))
}

const HORIZON_DAYS: &str = "40000";

const DIRECTORY: &str = r#"{
  "companies": [{"id": 1, "name": "Salon", "calcom_api_key": "cal_live_supersecret"}],
  "branches": [{"id": 1, "company_id": 1, "name": "Mitte", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+4930123456"}],
  "services": [{"id": 1, "company_id": 1, "name": "Cut", "calcom_event_type_id": 123, "duration_minutes": 30, "capacity": null}],
  "calls": [
    {"id": 1, "retell_call_id": "call_abc", "company_id": 1, "branch_id": 1, "from_number": "anonymous"},
    {"id": 2, "retell_call_id": "call_known", "company_id": 1, "branch_id": 1, "from_number": "0151 2345678"},
    {"id": 3, "retell_call_id": "call_lost", "from_number": "+491511111111"}
  ]
}"#;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("cb.db");
    let (v, code) = callbook(&db, &["init"]);
    assert_eq!((code, v["schema_version"].as_i64()), (0, Some(9)));
    let file = dir.path().join("directory.json");
    std::fs::write(&file, DIRECTORY).expect("writes");
    let (v, code) = callbook(&db, &["import", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v, serde_json::json!({"companies": 1, "branches": 1, "services": 1, "calls": 3}));
    (dir, db)
}

#[test]
fn book_prints_the_promised_fields() {
    let (_dir, db) = setup();
    let (v, code) = callbook(
        &db,
        &["book", "--call", "call_abc", "--name", "Jane Doe", "--service", "1", "--start", "2099-01-08T13:00:00+01:00"],
    );
    assert_eq!(code, 0, "{v}");
    let keys: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["anonymous", "appointment_id", "calcom_sync_status", "customer_id", "customer_phone", "starts_at", "status"]
    );
    assert_eq!(v["starts_at"], "2099-01-08T12:00:00Z");
    assert_eq!(v["anonymous"], true);
    assert_eq!((v["status"].as_str(), v["calcom_sync_status"].as_str()), (Some("confirmed"), Some("pending")));
    assert!(v["customer_phone"].as_str().expect("phone").starts_with("anonymous_"));

    // Same call, service and start again: the same appointment.
    let (again, _) = callbook(
        &db,
        &["book", "--call", "call_abc", "--name", "Jane Doe", "--service", "1", "--start", "2099-01-08T12:00:00Z"],
    );
    assert_eq!(again, v);

    // Date words in the branch zone; the only service is used.
    let (k, code) = callbook(
        &db,
        &[
            "book",
            "--call",
            "call_known",
            "--name",
            "Max",
            "--email",
            "max at example dot com",
            "--date",
            "morgen",
            "--time",
            "10:00",
        ],
    );
    assert_eq!(code, 0, "{k}");
    assert_eq!((k["anonymous"].as_bool(), k["customer_phone"].as_str()), (Some(false), Some("+491512345678")));

    let (s, code) = callbook(&db, &["stats"]);
    assert_eq!(code, 0);
    assert_eq!((s["appointments"]["pending"].as_u64(), s["jobs"]["available"].as_u64()), (Some(2), Some(2)));
    assert_eq!((s["customers_known"].as_u64(), s["customers_anonymous"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn errors_have_codes_and_exit_codes() {
    let (dir, db) = setup();
    let cases: &[(&[&str], &str, i32)] = &[
        (&["book", "--call", "nope", "--name", "A", "--start", "2099-01-01T10:00:00Z"], "call_not_found", 3),
        (&["book", "--call", "call_lost", "--name", "A", "--start", "2099-01-01T10:00:00Z"], "call_missing_company", 3),
        (&["book", "--call", "call_abc", "--name", "A", "--start", "2001-01-01T10:00:00Z"], "start_in_past", 3),
        (
            &["book", "--call", "call_abc", "--name", "A", "--service", "9", "--start", "2099-01-01T10:00:00Z"],
            "service_not_found",
            3,
        ),
        (&["book", "--call", "call_abc", "--name", " ", "--start", "soon"], "customer_name_required", 2),
        (&["book", "--call", "call_abc", "--name", "A", "--date", "someday", "--time", "10:00"], "invalid_date", 2),
        (&["book", "--call", "call_abc"], "usage", 2),
        (&["import", "/nonexistent/file.json"], "io", 2),
        (&["frobnicate"], "usage", 2),
    ];
    for (args, code, exit) in cases {
        let (v, got) = callbook(&db, args);
        assert_eq!(v["error"]["code"], *code, "{args:?}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(got, *exit, "{args:?}");
    }
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"companies": [{"id": 1}]}"#).expect("writes");
    let (v, code) = callbook(&db, &["import", bad.to_str().expect("utf-8")]);
    assert_eq!((v["error"]["code"].as_str(), code), (Some("invalid_import"), 2));
    // Nothing was booked by any of them, and no secret leaked into any answer.
    let (s, _) = callbook(&db, &["stats"]);
    assert_eq!(s["appointments"]["pending"], 0);
}

#[test]
fn secrets_never_printed() {
    let (_dir, db) = setup();
    for args in [&["stats"][..], &["book", "--call", "call_abc", "--name", "A", "--start", "2001-01-01T10:00:00Z"]] {
        let (v, _) = callbook(&db, args);
        assert!(!v.to_string().contains("supersecret"));
    }
}

#[test]
fn demo_runs_on_its_own_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("untouched.db");
    let (v, code) = callbook(&db, &["demo", "--calls", "60", "--seed", "3"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["calls"], 60);
    let booked = v["booked"].as_u64().expect("booked");
    assert!(booked > 0);
    assert_eq!(v["anonymous_bookings"].as_u64().expect("n") + v["known_bookings"].as_u64().expect("n"), booked);
    assert!(v["anonymous_bookings"].as_u64().expect("n") > 0 && v["known_customers_reused"].as_u64().expect("n") > 0);
    assert_eq!(v["outbox_jobs_pending"].as_u64(), Some(booked));
    // The sync half: through an outage and lost answers, nothing lost, nothing doubled.
    let sync = &v["sync"];
    let n = |k: &str| sync[k].as_u64().unwrap_or_else(|| panic!("{k} in {sync}"));
    assert_eq!(n("synced") + n("flagged_for_review"), booked, "{sync}");
    assert_eq!((n("duplicate_calcom_bookings"), n("calcom_429s")), (0, 0));
    // Cal.com's event types outlast the services, one business is in Los Angeles: still no orphan, no false review.
    assert_eq!((n("orphan_calcom_bookings"), n("false_reviews")), (0, 0), "{sync}");
    assert!(n("deferred_by_breaker") > 0 && n("adopted_after_lost_answer") > 0, "{sync}");
    // Callers competing for times: checked first, none of them a review for a taken slot.
    let a = &v["availability"];
    assert_eq!(a["checks"].as_u64(), Some(60), "{a}");
    assert_eq!((a["calcom_requests_during_bookings"].as_u64(), a["taken_slot_reviews"].as_u64()), (Some(0), Some(0)));
    assert!(sync["flagged_by_code"].get("slot_unavailable").is_none(), "{sync}");
    // Callers ringing again: moves and cancels reach Cal.com once each; withheld numbers change nothing.
    let c = &v["changes"];
    let m = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k} in {c}"));
    assert!(m("moved") + m("cancelled") > 0 && m("not_verified") > 0, "{c}");
    assert_eq!(m("callbacks_filed"), m("not_verified"));
    assert_eq!(
        (m("changes_by_unverified_callers"), m("orphan_calcom_bookings"), m("local_without_calcom")),
        (0, 0, 0),
        "{c}"
    );
    assert!(!db.exists(), "the demo never touches --db");
}

#[test]
fn sync_and_review_against_a_fake_calcom() {
    let (_dir, db) = setup();
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake starts");
    let (a, _) = callbook(&db, &["book", "--call", "call_abc", "--name", "A", "--start", "2099-01-08T10:00:00Z"]);
    let (b, _) = callbook(&db, &["book", "--call", "call_known", "--name", "B", "--start", "2099-01-08T11:00:00Z"]);
    fake.inject([callbook::calcom::fake::Fault::Status(400, "responses - {email}invalid_email".into())]);
    let (report, code) = callbook(&db, &["sync", "--once", "--calcom-url", fake.url()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!((report["synced"].as_u64(), report["flagged"].as_u64()), (Some(1), Some(1)), "{report}");

    let (list, _) = callbook(&db, &["review", "list"]);
    let flagged = &list["appointments"][0];
    let id = flagged["id"].as_i64().expect("id");
    assert!([a["appointment_id"].as_i64(), b["appointment_id"].as_i64()].contains(&Some(id)));
    assert_eq!(flagged["sync_error_code"], "calcom_validation");
    let (shown, _) = callbook(&db, &["review", "show", &id.to_string()]);
    assert_eq!(shown["jobs"][0]["state"], "discarded");

    let (retried, code) = callbook(&db, &["review", "retry", &id.to_string()]);
    assert_eq!((code, retried["appointment"]["calcom_sync_status"].as_str()), (0, Some("pending")));
    let (report, _) = callbook(&db, &["sync", "--once", "--calcom-url", fake.url()]);
    assert_eq!(report["synced"], 1);
    let (err, code) = callbook(&db, &["review", "resolve", &id.to_string(), "--note", "done"]);
    assert_eq!((err["error"]["code"].as_str(), code), (Some("not_in_review"), 3));

    let (stats, _) = callbook(&db, &["stats"]);
    assert_eq!(stats["appointments"]["synced"], 2);
    assert!(stats["breakers"].is_array());
    assert!(!stats.to_string().contains("supersecret"));

    // A known customer's first email: the Cal.com booking gets them as attendee.
    let customer = b["customer_id"].as_i64().expect("id").to_string();
    let (set, code) = callbook(&db, &["customer-email", "--customer", &customer, "--email", "b@example.com"]);
    assert_eq!((code, set["attendee_updates_queued"].as_u64()), (0, Some(1)), "{set}");
    let (report, _) = callbook(&db, &["sync", "--once", "--calcom-url", fake.url()]);
    assert_eq!(report["synced"], 1);
    assert!(fake
        .bookings()
        .iter()
        .any(|bk| bk["attendees"].as_array().is_some_and(|l| l.iter().any(|x| x["email"] == "b@example.com"))));
}

#[test]
fn health_answers_with_the_figures_and_exits_1_on_a_missed_target() {
    let (_dir, db) = setup();
    let (empty, code) = callbook(&db, &["health"]);
    assert_eq!((code, empty["window"].as_str(), empty["bookings"].as_u64()), (0, Some("24h"), Some(0)), "{empty}");
    assert_eq!(
        (empty["sync_success_rate"].is_null(), empty["targets_missed"].as_array().map(Vec::len)),
        (true, Some(0))
    );
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake starts");
    for start in ["2099-01-08T10:00:00Z", "2099-01-08T11:00:00Z"] {
        callbook(&db, &["book", "--call", "call_known", "--name", "B", "--start", start]);
    }
    callbook(&db, &["sync", "--once", "--calcom-url", fake.url()]);
    // (Latencies depend on this machine: a fresh debug process loads
    // libphonenumber's metadata inside its booking; only counts are checked.)
    let (synced, _) = callbook(&db, &["health", "--window", "1h"]);
    assert_eq!((synced["synced"].as_u64(), synced["sync_success_rate"].as_f64()), (Some(2), Some(1.0)), "{synced}");
    assert_eq!(synced["booking_latency_ms"]["count"], 2, "each booking kept its latency");
    // A third booking Cal.com refuses: on the review list, a third of the bookings.
    callbook(&db, &["book", "--call", "call_abc", "--name", "A", "--start", "2099-01-08T12:00:00Z"]);
    fake.inject([callbook::calcom::fake::Fault::Status(400, "invalid event type".into())]);
    callbook(&db, &["sync", "--once", "--calcom-url", fake.url()]);
    let (missed, code) = callbook(&db, &["health", "--window", "7d"]);
    assert_eq!(code, 1, "{missed}");
    assert_eq!((missed["window"].as_str(), missed["bookings"].as_u64()), (Some("7d"), Some(3)));
    let names: Vec<&str> =
        missed["targets_missed"].as_array().expect("list").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(names[..2], ["sync_success_rate", "manual_review_rate"], "{names:?}");
    assert_eq!((missed["bookings_anonymous"].as_u64(), missed["manual_reviews_open"].as_u64()), (Some(1), Some(1)));
    assert_eq!(missed["companies"][0]["name"], "Salon");
    // The same as a table for a person, still exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_callbook")).arg("--db").arg(&db).arg("health").output().expect("runs");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("Cal.com sync success") && text.contains("66.7% ✗"), "{text}");
    assert!(text.contains("\ntargets missed: sync_success_rate, manual_review_rate"), "{text}");
    // A window it cannot read is bad input.
    let (bad, code) = callbook(&db, &["health", "--window", "1w"]);
    assert_eq!((code, bad["error"]["code"].as_str()), (2, Some("invalid_window")));
}

#[test]
fn a_refused_start_carries_its_alternatives_as_data() {
    let (_dir, db) = setup();
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake starts");
    let args = ["slots", "--service", "1", "--date", "2099-01-08", "--call", "call_abc", "--calcom-url", fake.url()];
    let (slots, code) = callbook(&db, &args);
    assert_eq!((code, slots["slots"].as_array().map(Vec::len)), (0, Some(16)), "{slots}");
    // 06:00 Berlin is not among the offered starts: refused, with the nearest ones as data.
    let (v, code) = callbook(&db, &["book", "--call", "call_abc", "--name", "A", "--start", "2099-01-08T05:00:00Z"]);
    assert_eq!((v["error"]["code"].as_str(), code), (Some("slot_unavailable"), 3), "{v}");
    assert_eq!(
        v["error"]["alternatives"],
        serde_json::json!(["2099-01-08T08:00:00Z", "2099-01-08T08:30:00Z", "2099-01-08T09:00:00Z"])
    );
}

#[test]
fn a_start_beyond_the_horizon_is_refused() {
    let (_dir, db) = setup();
    let out = Command::new(env!("CARGO_BIN_EXE_callbook"))
        .args(["--db", db.to_str().expect("utf-8"), "--json", "book", "--call", "call_abc", "--name", "A"])
        .args(["--start", "2099-01-08T13:00:00Z"])
        .env_remove("CALLBOOK_HORIZON_DAYS")
        .output()
        .expect("runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((v["error"]["code"].as_str(), out.status.code()), (Some("invalid_start"), Some(2)), "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("365 days")), "{v}");
}

#[test]
fn review_resolve_records_the_note() {
    let (_dir, db) = setup();
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake starts");
    callbook(&db, &["book", "--call", "call_abc", "--name", "A", "--start", "2099-01-08T10:00:00Z"]);
    fake.inject([callbook::calcom::fake::Fault::Status(404, "Event type with id 123 not found.".into())]);
    callbook(&db, &["sync", "--once", "--calcom-url", fake.url()]);
    let (resolved, code) =
        callbook(&db, &["review", "resolve", "1", "--note", "event type was deleted", "--by", "ops"]);
    assert_eq!(code, 0, "{resolved}");
    assert_eq!(resolved["appointment"]["review_note"], "event type was deleted");
    assert_eq!(resolved["appointment"]["review_resolved_by"], "ops");
    assert_eq!(resolved["appointment"]["requires_manual_review"], false);
    let (list, _) = callbook(&db, &["review", "list"]);
    assert_eq!(list["appointments"].as_array().map(Vec::len), Some(0));
}

#[test]
fn stats_show_the_breaker_after_a_failure() {
    let (_dir, db) = setup();
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake starts");
    callbook(&db, &["book", "--call", "call_abc", "--name", "A", "--start", "2099-01-08T10:00:00Z"]);
    fake.inject([callbook::calcom::fake::Fault::Status(503, "Service Unavailable".into())]);
    let (report, _) = callbook(&db, &["sync", "--once", "--calcom-url", fake.url()]);
    assert_eq!(report["retried"], 1, "{report}");
    let (stats, _) = callbook(&db, &["stats"]);
    let breaker = &stats["breakers"][0];
    assert_eq!((breaker["state"].as_str(), breaker["consecutive_failures"].as_u64()), (Some("closed"), Some(1)));
    assert!(breaker["key"].as_str().is_some_and(|k| k.starts_with(fake.url()) && !k.contains("supersecret")));
    assert_eq!(stats["appointments"]["failed"], 1);
}

/// `--db` takes server URLs: the same commands on PostgreSQL and MariaDB.
#[test]
fn db_urls_for_postgres_and_mariadb() {
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("directory.json");
    std::fs::write(&file, DIRECTORY).expect("writes");
    let name = format!("cb_cli_{}", std::process::id());
    for (kind, admin, url, start) in [
        ("postgres", "psql", format!("postgres://postgres@127.0.0.1:5432/{name}"), "2099-01-08T13:00:00Z"),
        ("mysql", "mariadb", format!("mysql://root@127.0.0.1:3306/{name}"), "2099-01-09T13:00:00Z"),
    ] {
        let sql = |statement: &str| {
            let out = match admin {
                "psql" => Command::new("psql").args(["-h", "127.0.0.1", "-U", "postgres", "-qc", statement]).output(),
                _ => Command::new("mariadb").args(["-h", "127.0.0.1", "-u", "root", "-e", statement]).output(),
            };
            assert!(out.expect("runs").status.success(), "{statement}");
        };
        sql(&format!("CREATE DATABASE {name}"));
        let db = Path::new(&url);
        let (v, code) = callbook(db, &["init"]);
        assert_eq!((code, v["schema_version"].as_i64()), (0, Some(6)), "{kind}: {v}");
        assert_eq!(
            v["database"],
            format!("{kind}://127.0.0.1:{}/{name}", if kind == "postgres" { 5432 } else { 3306 })
        );
        let (v, code) = callbook(db, &["import", file.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "{kind}: {v}");
        let (v, code) =
            callbook(db, &["book", "--call", "call_known", "--name", "Max", "--service", "1", "--start", start]);
        assert_eq!((code, v["status"].as_str()), (0, Some("confirmed")), "{kind}: {v}");
        let (v, code) = callbook(db, &["sync", "--once", "--calcom-url", fake.url()]);
        assert_eq!((code, v["synced"].as_u64()), (0, Some(1)), "{kind}: {v}");
        let (v, _) = callbook(db, &["stats"]);
        assert_eq!(
            (v["appointments"]["synced"].as_u64(), v["customers_known"].as_u64()),
            (Some(1), Some(1)),
            "{kind}: {v}"
        );
        sql(&format!("DROP DATABASE {name}"));
    }
}

#[test]
fn operators_find_move_and_cancel_a_callers_appointments() {
    let (_dir, db) = setup();
    let (booked, code) = callbook(
        &db,
        &["book", "--call", "call_known", "--name", "Max", "--service", "1", "--start", "2099-03-02T09:00:00Z"],
    );
    assert_eq!(code, 0, "{booked}");
    let id = booked["appointment_id"].as_i64().expect("id").to_string();
    // Any spelling of the caller's number finds it, within the company.
    let (found, code) = callbook(&db, &["appointments", "--company", "1", "--phone", "+49 151 2345678"]);
    assert_eq!((code, found["appointments"][0]["id"].as_i64()), (0, booked["appointment_id"].as_i64()));
    let (none, _) = callbook(&db, &["appointments", "--company", "1", "--phone", "0170 0000000"]);
    assert_eq!(none["appointments"], serde_json::json!([]));
    // A move by date and time in the branch's zone, then a cancel.
    let (moved, code) = callbook(&db, &["reschedule", &id, "--date", "2099-03-03", "--time", "11:30", "--by", "Ada"]);
    assert_eq!((code, moved["change"]["starts_at"].as_str()), (0, Some("2099-03-03T10:30:00Z")), "{moved}");
    assert_eq!(moved["change"]["previous_starts_at"], "2099-03-02T09:00:00Z");
    let (cancelled, code) = callbook(&db, &["cancel", &id, "--reason", "asked by phone", "--by", "Ada"]);
    assert_eq!((code, cancelled["change"]["status"].as_str()), (0, Some("cancelled")), "{cancelled}");
    let (again, code) = callbook(&db, &["cancel", &id, "--by", "Ada"]);
    assert_eq!((code, again["change"]["repeated"].as_bool()), (0, Some(true)));
    // Refusals carry their code and exit 3.
    let (err, code) = callbook(&db, &["reschedule", &id, "--start", "2099-03-04T09:00:00Z"]);
    assert_eq!((code, err["error"]["code"].as_str()), (3, Some("appointment_cancelled")));
    let (err, code) = callbook(&db, &["cancel", "999"]);
    assert_eq!((code, err["error"]["code"].as_str()), (3, Some("appointment_not_found")));
    let (list, code) = callbook(&db, &["callbacks", "list"]);
    assert_eq!((code, list["callbacks"].clone()), (0, serde_json::json!([])));
    let (err, code) = callbook(&db, &["callbacks", "done", "7"]);
    assert_eq!((code, err["error"]["code"].as_str()), (3, Some("callback_not_found")));
}

#[test]
fn calcom_pull_holds_cal_com_bookings_and_drift_exits_one_on_a_difference() {
    let (_dir, db) = setup();
    let fake = callbook::calcom::fake::FakeCalcom::with_event_types(
        std::sync::Arc::new(callbook::SystemClock),
        &[callbook::calcom::fake::EventType::new(123, 30)],
    )
    .expect("fake starts");
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&chrono::Utc);
    let guest = serde_json::json!({"name": "Guest", "email": "guest@example.com", "phoneNumber": "+49 151 2345678"});
    fake.add_booking_elsewhere(123, at("2099-02-01T09:00:00Z"), guest.clone()).expect("planted");
    fake.add_booking_elsewhere(123, at("2099-02-02T09:00:00Z"), guest.clone()).expect("planted");
    let window = ["--calcom-url", fake.url(), "--days-ahead", "40000"];
    let pull = |extra: &[&str]| callbook(&db, &[&["calcom", "pull"][..], &window, extra].concat());
    let (first, code) = pull(&[]);
    assert_eq!((code, first["imported"].as_u64()), (0, Some(2)), "{first}");
    let (again, _) = pull(&[]);
    assert_eq!((again["imported"].as_u64(), again["known"].as_u64()), (Some(0), Some(2)));
    // The attendee's number is a known caller's: they find it on the command line.
    let (found, _) = callbook(&db, &["appointments", "--company", "1", "--phone", "0151 2345678"]);
    assert_eq!(found["appointments"].as_array().map(Vec::len), Some(2));
    let drift = || callbook(&db, &[&["calcom", "drift"][..], &window].concat());
    let (clean, code) = drift();
    assert_eq!((code, clean["companies"][0]["missing_locally"].clone()), (0, serde_json::json!([])), "{clean}");
    let late = fake.add_booking_elsewhere(123, at("2099-02-03T09:00:00Z"), guest).expect("planted");
    let (found, code) = drift();
    assert_eq!((code, found["companies"][0]["missing_locally"].clone()), (1, serde_json::json!([late])), "{found}");
}
