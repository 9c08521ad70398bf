//! `callbook serve` as a real process on a real database file, with the
//! loopback fake Cal.com: the Retell endpoint over HTTP (good, refused and
//! malformed calls), Cal.com webhooks, /metrics and /healthz, and SIGTERM
//! in the middle of syncing.

use callbook::calcom::fake::{EventType, FakeCalcom, Fault};
use callbook::calcom::sign_calcom;
use callbook::retell::sign_retell;
use callbook::SystemClock;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RETELL_KEY: &str = "key_retell_serve";
const WEBHOOK_SECRET: &str = "whsec_serve";

const DIRECTORY: &str = r#"{
  "companies": [{"id": 1, "name": "Salon", "calcom_api_key": "cal_live_supersecret", "calcom_webhook_secret": "whsec_salon"}],
  "branches": [{"id": 1, "company_id": 1, "name": "Mitte", "timezone": "Europe/Berlin", "country": "DE", "phone_number": "+4930123456"}],
  "services": [{"id": 1, "company_id": 1, "name": "Cut", "calcom_event_type_id": 123, "duration_minutes": 30}]
}"#;

fn cli(db: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_callbook"))
        // The tests book in 2099 so their dates stay in the future: past the default 365-day horizon.
        .env("CALLBOOK_HORIZON_DAYS", "40000")
        .arg("--db")
        .arg(db)
        .arg("--json")
        .args(args)
        .output()
        .expect("runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("JSON from {args:?}: {out:?}"))
}

struct Serve {
    child: Child,
    url: String,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(calcom_url: &str, worker_threads: usize) -> Serve {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("serve.db");
    let file = dir.path().join("directory.json");
    std::fs::write(&file, DIRECTORY).expect("writes");
    cli(&db, &["import", file.to_str().expect("utf-8")]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbook"))
        // The tests book in 2099 so their dates stay in the future: past the default 365-day horizon.
        .env("CALLBOOK_HORIZON_DAYS", "40000")
        .arg("--db")
        .arg(&db)
        .args(["--json", "serve", "--listen", "127.0.0.1:0", "--calcom-url", calcom_url, "--timeout", "5"])
        .args(["--worker-threads", &worker_threads.to_string()])
        .env("RETELL_API_KEY", RETELL_KEY)
        .env("CALCOM_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("CALLBOOK_ADMIN_TOKEN", "admin-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut first).expect("reads");
    let url = first.trim().strip_prefix("listening on ").expect("announces its address").to_string();
    Serve { child, url, db, _dir: dir }
}

fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut request = ureq::post(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    let response = match request.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    let status = response.status();
    (status, response.into_json().unwrap_or(Value::Null))
}

fn get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().expect("text")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn retell(s: &Serve, body: &str) -> (u16, Value) {
    let signature = sign_retell(body.as_bytes(), RETELL_KEY, now_ms());
    post(&format!("{}/retell/function", s.url), &[("X-Retell-Signature", &signature)], body.as_bytes())
}

fn booking_body(call: &str, from: &str, start: &str) -> String {
    json!({
        "name": "book_appointment",
        "call": {"call_id": call, "from_number": from, "to_number": "+49 30 123456", "direction": "inbound"},
        "args": {"customer_name": "Jürgen Müller", "start": start}
    })
    .to_string()
}

fn totals(db: &Path) -> (u64, u64) {
    let s = cli(db, &["stats"]);
    let sum = |v: &Value| v.as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    (sum(&s["appointments"]), sum(&s["jobs"]))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_retell_endpoint_books_refuses_and_rejects_over_http() {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    // One 503 first: the worker retries, and the breaker it touched shows in /metrics.
    fake.inject([Fault::Status(503, "Service Unavailable".into())]);
    let s = serve(fake.url(), 1);
    let (status, body) = retell(&s, &booking_body("call_http_1", "+49 151 2345678", "2099-01-08T13:00:00Z"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["message"], "Ihr Termin ist gebucht: Donnerstag, 8. Januar um 14:00 Uhr. Wir freuen uns auf Sie.");
    // The worker inside syncs it.
    // Recorded locally, not only done in Cal.com (the worker writes right after the answer).
    wait_for("the sync", || cli(&s.db, &["stats"])["appointments"]["synced"] == 1);
    assert_eq!(fake.stats().creates, 1);

    let before = totals(&s.db);
    let malformed: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "malformed_json"),
        (br#"{"name":"cancel_everything","args":{},"call":{"call_id":"c"}}"#.to_vec(), 400, "unknown_function"),
        (br#"{"name":"book_appointment","args":{"customer_name":"A"}}"#.to_vec(), 400, "call_id_required"),
        (booking_body("call_http_2", "+491512345678", "not a time").into_bytes(), 400, "invalid_start"),
        (vec![b' '; 70 * 1024], 413, "body_too_large"),
    ];
    for (body, status, code) in &malformed {
        let signature = sign_retell(body, RETELL_KEY, now_ms());
        let (got, reply) = post(&format!("{}/retell/function", s.url), &[("X-Retell-Signature", &signature)], body);
        assert_eq!((got, reply["code"].as_str()), (*status, Some(*code)), "{reply}");
    }
    let body = booking_body("call_http_3", "anonymous", "2099-01-09T13:00:00Z");
    for signature in ["", "v=1,d=00", &sign_retell(body.as_bytes(), "wrong key", now_ms())] {
        let (got, reply) =
            post(&format!("{}/retell/function", s.url), &[("X-Retell-Signature", signature)], body.as_bytes());
        assert_eq!((got, reply["code"].as_str()), (401, Some("bad_signature")));
    }
    // A domain refusal is 200 with ok:false, so the agent can tell the caller.
    let (status, reply) = retell(&s, &booking_body("call_http_4", "anonymous", "2000-01-01T10:00:00Z"));
    assert_eq!((status, reply["ok"].as_bool(), reply["code"].as_str()), (200, Some(false), Some("start_in_past")));
    assert_eq!(totals(&s.db), before, "nothing written by any bad call");

    let (status, _) = get(&format!("{}/healthz", s.url));
    assert_eq!(status, 200);
    let (status, metrics) = get(&format!("{}/metrics", s.url));
    assert_eq!(status, 200);
    for line in [
        "callbook_booking_duration_seconds_count 9",
        "callbook_bookings_total{name=\"known\"} 1",
        "callbook_sync_jobs_total{outcome=\"synced\",code=\"\"} 1",
        "callbook_manual_review 0",
        "callbook_http_requests_total{route=\"retell_function\",status=\"401\"} 3",
        "callbook_appointments{name=\"synced\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let breaker = format!("callbook_breaker_state{{endpoint=\"{}|", fake.url());
    assert!(metrics.lines().any(|l| l.starts_with(&breaker) && l.ends_with("} 0")), "a closed breaker in\n{metrics}");
    assert!(metrics.contains("callbook_sync_jobs_total{outcome=\"retrying\",code=\"503\"} 1"), "{metrics}");
    let (status, _) = get(&format!("{}/nope", s.url));
    assert_eq!(status, 404);
}

#[test]
fn calcom_webhooks_over_http_cancel_what_cal_com_cancelled() {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    let s = serve(fake.url(), 1);
    let (_, booked) = retell(&s, &booking_body("call_wh", "+49 151 2345678", "2099-02-01T09:00:00Z"));
    // Recorded locally, not only done in Cal.com (the worker writes right after the answer).
    wait_for("the sync", || cli(&s.db, &["stats"])["appointments"]["synced"] == 1);
    let id = booked["appointment_id"].as_i64().expect("id");
    let uid = cli(&s.db, &["review", "show", &id.to_string()]);
    // `review show` answers for any appointment: read the uid Cal.com gave it.
    let uid = uid["appointment"]["calcom_v2_booking_uid"].as_str().expect("synced with a uid").to_string();
    let created = chrono::Utc::now().to_rfc3339();
    let event = json!({"triggerEvent": "BOOKING_CANCELLED", "createdAt": created,
        "payload": {"uid": uid, "cancellationReason": "changed plans"}})
    .to_string();
    // The company's own URL takes the company's own secret, and nothing else.
    let url = format!("{}/calcom/webhook/1", s.url);
    let (status, reply) = post(&url, &[("X-Cal-Signature-256", "no-secret-provided")], event.as_bytes());
    assert_eq!((status, reply["code"].as_str()), (401, Some("bad_signature")));
    let global_signature = sign_calcom(event.as_bytes(), WEBHOOK_SECRET);
    let (status, reply) = post(&url, &[("X-Cal-Signature-256", &global_signature)], event.as_bytes());
    assert_eq!(
        (status, reply["code"].as_str()),
        (401, Some("bad_signature")),
        "the process secret is not the company's"
    );
    let (status, reply) =
        post(&format!("{}/calcom/webhook/99", s.url), &[("X-Cal-Signature-256", &global_signature)], event.as_bytes());
    assert_eq!((status, reply["code"].as_str()), (404, Some("company_not_found")));
    let signature = sign_calcom(event.as_bytes(), "whsec_salon");
    let (status, reply) = post(&url, &[("X-Cal-Signature-256", &signature)], event.as_bytes());
    assert_eq!((status, reply["result"].as_str()), (200, Some("cancelled")), "{reply}");
    let (_, reply) = post(&url, &[("X-Cal-Signature-256", &signature)], event.as_bytes());
    assert_eq!(reply["result"], "already_applied");
    // The single-tenant URL with the process's secret: the one company.
    let single = format!("{}/calcom/webhook", s.url);
    let (status, reply) = post(&single, &[("X-Cal-Signature-256", &global_signature)], event.as_bytes());
    assert_eq!((status, reply["result"].as_str()), (200, Some("already_applied")), "{reply}");
    let a = cli(&s.db, &["review", "show", &id.to_string()]);
    assert_eq!(
        (a["appointment"]["status"].as_str(), a["appointment"]["sync_origin"].as_str()),
        (Some("cancelled"), Some("calcom"))
    );
    let (status, reply) = post(&url, &[("X-Cal-Signature-256", &sign_calcom(b"[]", "whsec_salon"))], b"[]");
    assert_eq!((status, reply["code"].as_str()), (400, Some("malformed_webhook")));
    // A second tenant: the URL without a company no longer knows whose delivery it is.
    let second = s.db.with_file_name("second.json");
    std::fs::write(&second, r#"{"companies": [{"id": 2, "name": "Other"}]}"#).expect("writes");
    cli(&s.db, &["import", second.to_str().expect("utf-8")]);
    let (status, reply) = post(&single, &[("X-Cal-Signature-256", &global_signature)], event.as_bytes());
    assert_eq!((status, reply["code"].as_str()), (400, Some("tenant_required")));
    let (status, reply) =
        post(&format!("{}/calcom/webhook/2", s.url), &[("X-Cal-Signature-256", &global_signature)], event.as_bytes());
    assert_eq!((status, reply["code"].as_str()), (503, Some("webhook_not_configured")));
    assert_eq!(fake.stats().requests, 1, "nothing was pushed back to Cal.com");
}

#[test]
fn sigterm_lets_jobs_in_hand_finish_and_loses_none() {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    // Cal.com answers slowly, so jobs are in flight when the signal comes.
    fake.inject((0..40).map(|_| Fault::Delay(Duration::from_millis(150))));
    let mut s = serve(fake.url(), 2);
    for i in 0..20 {
        // Half an hour apart: Cal.com refuses overlapping bookings of one host.
        let start = format!("2099-03-01T{:02}:{:02}:00Z", 8 + i / 2, (i % 2) * 30);
        let (status, reply) = retell(&s, &booking_body(&format!("call_term_{i}"), "anonymous", &start));
        assert_eq!(status, 200, "{reply}");
    }
    wait_for("the first create", || fake.stats().requests >= 1);
    let kill = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    let mut out = String::new();
    std::io::Read::read_to_string(s.child.stdout.as_mut().expect("stdout"), &mut out).expect("reads");
    let status = s.child.wait().expect("exits");
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}");
    let report: Value = serde_json::from_str(out.trim()).expect("the report is JSON");
    let synced = report["worker"]["synced"].as_u64().expect("count");
    assert!(synced < 20, "stopped mid-run: {report}");
    // Nothing left running or half-done: what Cal.com has is recorded, the rest waits.
    let stats = cli(&s.db, &["stats"]);
    assert_eq!(stats["jobs"]["running"], 0, "{stats}");
    assert_eq!(stats["appointments"]["synced"].as_u64(), Some(fake.stats().creates));
    // A later worker syncs the rest, each exactly once.
    let rest = cli(&s.db, &["sync", "--once", "--calcom-url", fake.url()]);
    assert_eq!(rest["synced"].as_u64(), Some(20 - synced), "{rest}");
    let stats = cli(&s.db, &["stats"]);
    assert_eq!(stats["appointments"]["synced"], 20, "{stats}");
    assert_eq!(fake.stats().duplicated_keys, 0);
    assert_eq!(fake.stats().creates, 20);
}

#[test]
fn check_availability_offers_times_and_the_booking_keeps_to_them() {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    let s = serve(fake.url(), 0);
    let call = json!({"call_id": "call_slots", "from_number": "anonymous", "to_number": "+4930123456"});
    let check = json!({"name": "check_availability", "call": call, "args": {"date": "2099-01-08", "time": "10:10"}});
    let (status, reply) = retell(&s, &check.to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["message"], "Am Donnerstag, 8. Januar kann ich Ihnen 09:30, 10:00 oder 10:30 Uhr anbieten.");
    assert_eq!(reply["offered"], json!(["2099-01-08T08:30:00Z", "2099-01-08T09:00:00Z", "2099-01-08T09:30:00Z"]));
    let requests = fake.stats().requests;
    // A time the caller was not offered: refused with the nearest free ones, nothing written.
    let book = |start: &str| {
        json!({"name": "book_appointment", "call": call, "args": {"customer_name": "Erika", "start": start}})
            .to_string()
    };
    let (status, reply) = retell(&s, &book("2099-01-08T18:00:00Z"));
    assert_eq!((status, reply["code"].as_str()), (200, Some("slot_unavailable")), "{reply}");
    assert_eq!(
        reply["message"],
        "Dieser Termin ist leider nicht frei. Ich könnte Ihnen 15:30, 16:00 oder 16:30 Uhr anbieten."
    );
    assert_eq!(totals(&s.db), (0, 0));
    let (status, reply) = retell(&s, &book("2099-01-08T09:00:00Z"));
    assert_eq!((status, reply["ok"].as_bool()), (200, Some(true)), "{reply}");
    assert_eq!(fake.stats().requests, requests, "the booking asked Cal.com nothing");
    // The CLI's view of the same day: the booked start is gone.
    let slots = cli(&s.db, &["slots", "--service", "1", "--date", "2099-01-08", "--calcom-url", fake.url()]);
    let list = slots["slots"].as_array().expect("a list");
    assert_eq!(list.len(), 15);
    assert!(!list.contains(&json!("2099-01-08T09:00:00Z")));
}
