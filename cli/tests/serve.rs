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
    serve_with(calcom_url, worker_threads, &[], &[])
}

fn serve_with(calcom_url: &str, worker_threads: usize, args: &[&str], env: &[(&str, &str)]) -> Serve {
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
        .args(args)
        .envs(env.iter().copied())
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
        "callbook_booking_duration_seconds_count 3", // the booking calls that parsed: one booked, two refused
        "callbook_bookings_total{name=\"known\"} 1",
        "callbook_sync_jobs_total{outcome=\"synced\",code=\"\"} 1",
        "callbook_manual_review 0",
        "callbook_http_requests_total{route=\"retell_function\",status=\"401\"} 3",
        "callbook_appointments{name=\"synced\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    // Breakers by company id: nothing derived from the API key is exported.
    assert!(metrics.lines().any(|l| l == "callbook_breaker_state{company=\"1\"} 0"), "a closed breaker in\n{metrics}");
    assert!(!metrics.contains(fake.url()) && !metrics.contains("endpoint="), "{metrics}");
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

/// Reads from a raw connection until the server closes it (or 10 s pass):
/// `true` when it was closed.
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_idle_and_surplus_connections_are_closed_and_metrics_want_their_token() {
    use std::io::Write as _;
    use std::net::TcpStream;
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    let args = ["--header-timeout", "1", "--max-connections", "4"];
    let s = serve_with(fake.url(), 0, &args, &[("CALLBOOK_METRICS_TOKEN", "metrics-token")]);
    let addr = s.url.trim_start_matches("http://").to_string();
    // Headers that never finish: closed after the header timeout, not kept.
    let mut slow = TcpStream::connect(&addr).expect("connects");
    slow.write_all(b"POST /retell/function HTTP/1.1\r\nHost: x\r\n").expect("writes");
    let started = Instant::now();
    assert!(closed_by_server(&mut slow), "a connection dribbling its headers is closed");
    // An idle keep-alive connection after a full answer: closed too.
    let mut idle = TcpStream::connect(&addr).expect("connects");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("writes");
    assert!(closed_by_server(&mut idle), "an idle kept-alive connection is closed");
    eprintln!("slow and idle connections closed after {:?} (header timeout 1 s)", started.elapsed());
    // Four connections that send nothing take every slot: a fifth is closed at once.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).expect("connects")).collect();
    std::thread::sleep(Duration::from_millis(200)); // accepted by now
    let mut surplus = TcpStream::connect(&addr).expect("the kernel accepts");
    let _ = surplus.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed_by_server(&mut surplus), "past the cap a connection is closed");
    drop(held);
    // The slots come back: requests are answered again.
    wait_for("a free slot", || ureq::get(&format!("{}/healthz", s.url)).call().is_ok());
    // /metrics: only with the token, and it counts the refused connection.
    let (status, _) = get(&format!("{}/metrics", s.url));
    assert_eq!(status, 401);
    let wrong = ureq::get(&format!("{}/metrics", s.url)).set("Authorization", "Bearer nope").call();
    assert!(matches!(wrong, Err(ureq::Error::Status(401, _))));
    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .set("Authorization", "Bearer metrics-token")
        .call()
        .expect("answers")
        .into_string()
        .expect("text");
    let refused = metrics.lines().find(|l| l.starts_with("callbook_connections_refused_total ")).expect("counted");
    assert_ne!(refused, "callbook_connections_refused_total 0", "{metrics}");
}

#[test]
fn absurd_starts_among_concurrent_bookings_answer_alone() {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    let s = serve(fake.url(), 0);
    let absurd =
        ["+262142-12-31T23:59:00+00:00", "2099-01-01T23:59:60Z", "2099-01-01T10:00:00+23:00", "0001-01-01T10:00:00Z"];
    let answers: Vec<(bool, u16, Value, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let valid = i % 2 == 0;
                    let start = if valid {
                        format!("2099-03-{:02}T10:00:00Z", 1 + i / 2)
                    } else {
                        absurd[i % absurd.len()].to_string()
                    };
                    let started = Instant::now();
                    let (status, reply) =
                        retell(s, &booking_body(&format!("call_many_{i}"), "+49 151 2345678", &start));
                    (valid, status, reply, started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("answers")).collect()
    });
    assert_eq!(answers.len(), 24, "every request answered");
    for (valid, status, reply, _) in &answers {
        if *valid {
            assert_eq!((*status, reply["ok"].as_bool()), (200, Some(true)), "{reply}");
        } else {
            assert_eq!((*status, reply["code"].as_str()), (400, Some("invalid_start")), "{reply}");
        }
    }
    assert_eq!(cli(&s.db, &["stats"])["appointments"]["pending"], 12);
    let mut times: Vec<Duration> = answers.iter().map(|a| a.3).collect();
    times.sort();
    eprintln!("24 concurrent bookings, 12 absurd: p50 {:?}, p99 {:?}", times[11], times[23]);
}

/// The value of a `callbook_…` sample with exactly these labels.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The raw value the overview page shows for a figure and company.
fn figure(page: &str, key: &str, company: &str) -> Option<f64> {
    let marker = format!(r#"data-figure="{key}" data-company="{company}" data-value=""#);
    let rest = &page[page.find(&marker)? + marker.len()..];
    rest[..rest.find('"')?].parse().ok()
}

#[test]
fn the_overview_metrics_and_the_health_command_agree() {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    // The first create is refused: that booking goes on the review list.
    fake.inject([Fault::Status(400, "invalid event type".into())]);
    let s = serve(fake.url(), 1);
    for (call, from, start) in [
        ("call_h1", "+49 151 1234567", "2099-05-04T09:00:00Z"),
        ("call_h2", "anonymous", "2099-05-04T10:00:00Z"),
        ("call_h3", "+49 151 7654321", "2099-05-04T11:00:00Z"),
    ] {
        assert_eq!(retell(&s, &booking_body(call, from, start)).0, 200);
    }
    let callback = json!({
        "name": "request_callback",
        "call": {"call_id": "call_h2", "from_number": "anonymous", "to_number": "+49 30 123456"},
        "args": {"customer_name": "Kim", "reason": "wants a person", "phone": "0151 2223334"}
    });
    let (status, filed) = retell(&s, &callback.to_string());
    assert_eq!((status, filed["ok"].as_bool()), (200, Some(true)), "{filed}");
    wait_for("two synced and one flagged", || {
        let stats = cli(&s.db, &["stats"]);
        stats["appointments"]["synced"] == 2 && stats["manual_review"] == 1
    });

    // The command: one object, exit 1 (a third flagged, two thirds synced).
    let out = Command::new(env!("CARGO_BIN_EXE_callbook"))
        .arg("--db")
        .arg(&s.db)
        .args(["--json", "health", "--window", "24h"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "a target is missed");
    let health: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!((health["window"].as_str(), health["bookings"].as_u64()), (Some("24h"), Some(3)));
    assert_eq!((health["pending_over_1h"].as_u64(), health["oldest_pending_seconds"].as_i64()), (Some(0), Some(0)));
    let missed: Vec<&str> =
        health["targets_missed"].as_array().expect("list").iter().filter_map(Value::as_str).collect();
    assert_eq!(missed, ["sync_success_rate", "manual_review_rate"]);
    let rate = health["sync_success_rate"].as_f64().expect("rate");
    assert!((rate - 2.0 / 3.0).abs() < 1e-12, "{rate}");

    // The page (a script's bearer token), and the metrics, say the same.
    let page = ureq::get(&format!("{}/admin/health?window=24h", s.url))
        .set("Authorization", "Bearer admin-token")
        .call()
        .expect("answers")
        .into_string()
        .expect("html");
    let metrics = get(&format!("{}/metrics", s.url)).1;
    let labels = |extra: &str| format!(r#"{{window="24h",company="all"{extra}}}"#);
    let p50 = health["booking_latency_ms"]["p50"].as_f64().expect("p50");
    for (what, json, on_page, in_metrics) in [
        ("bookings", 3.0, figure(&page, "bookings", "all"), None),
        (
            "anonymous",
            health["bookings_anonymous"].as_f64().expect("n"),
            figure(&page, "bookings_anonymous", "all"),
            sample(&metrics, &format!("callbook_health_bookings{}", labels(r#",caller="anonymous""#))),
        ),
        (
            "known",
            health["bookings_known"].as_f64().expect("n"),
            figure(&page, "bookings_known", "all"),
            sample(&metrics, &format!("callbook_health_bookings{}", labels(r#",caller="known""#))),
        ),
        (
            "sync success",
            rate,
            figure(&page, "sync_success_rate", "all"),
            sample(&metrics, &format!("callbook_health_sync_success_ratio{}", labels(""))),
        ),
        (
            "manual review",
            health["manual_review_rate"].as_f64().expect("rate"),
            figure(&page, "manual_review_rate", "1"),
            sample(&metrics, &format!("callbook_health_manual_review_ratio{}", labels(""))),
        ),
        (
            "booking p50",
            p50,
            figure(&page, "booking_p50", "all"),
            sample(&metrics, &format!("callbook_health_booking_latency_seconds{}", labels(r#",quantile="0.5""#)))
                .map(|s| s * 1000.0),
        ),
        ("callbacks open", 1.0, figure(&page, "callbacks_open", "all"), sample(&metrics, "callbook_callbacks_open")),
        (
            "reviews open",
            health["manual_reviews_open"].as_f64().expect("n"),
            figure(&page, "manual_reviews_open", "all"),
            sample(&metrics, "callbook_manual_review"),
        ),
    ] {
        let close = |v: Option<f64>| v.is_some_and(|v| (v - json).abs() < 1e-9);
        assert!(close(on_page), "{what}: page {on_page:?}, command {json}");
        assert!(in_metrics.is_none() || close(in_metrics), "{what}: metrics {in_metrics:?}, command {json}");
    }
    let missed_metric = |target: &str| {
        sample(&metrics, &format!("callbook_health_target_missed{}", labels(&format!(r#",target="{target}""#))))
    };
    assert_eq!((missed_metric("sync_success_rate"), missed_metric("booking_p50")), (Some(1.0), Some(0.0)));
    assert!(page.contains(r#"data-missed="sync_success_rate,manual_review_rate""#), "the page names the misses");
    assert!(p50 > 0.0 && p50 < 150.0, "a booking takes more than nothing and less than the target: {p50} ms");
}

#[test]
fn the_rest_of_the_call_over_http_with_its_metrics_and_callbacks() {
    let fake = FakeCalcom::with_event_types(Arc::new(SystemClock), &[EventType::new(123, 30)]).expect("fake");
    let s = serve(fake.url(), 0);
    let function = |name: &str, from: &str, args: Value| {
        let body =
            json!({"name": name, "call": {"call_id": "call_rest", "from_number": from, "to_number": "+49 30 123456"},
            "args": args})
            .to_string();
        retell(&s, &body)
    };
    let (_, booked) = retell(&s, &booking_body("call_first", "+49 151 2345678", "2099-04-01T09:00:00Z"));
    let id = booked["appointment_id"].as_i64().expect("id");
    let (_, asked) = function("cancel_appointment", "+49 151 2345678", json!({"appointment_id": id}));
    assert_eq!(asked["needs_confirmation"], true, "{asked}");
    let (status, done) =
        function("cancel_appointment", "+49 151 2345678", json!({"appointment_id": id, "confirmed": true}));
    assert_eq!((status, done["cancelled"].as_bool()), (200, Some(true)), "{done}");
    let body = json!({"name": "cancel_appointment", "call": {"call_id": "call_hidden", "from_number": "anonymous",
        "to_number": "+49 30 123456"}, "args": {"appointment_id": id, "confirmed": true}})
    .to_string();
    let (status, refused) = retell(&s, &body);
    assert_eq!((status, refused["code"].as_str()), (200, Some("caller_not_verified")));
    let (_, filed) =
        function("request_callback", "+49 151 2345678", json!({"customer_name": "Jürgen", "reason": "new time"}));
    let callback = filed["callback_id"].as_i64().expect("filed").to_string();
    // The operator sees it on the command line and marks it done.
    let listed = cli(&s.db, &["callbacks", "list"]);
    assert_eq!(listed["callbacks"][0]["phone"], "+491512345678");
    let done = cli(&s.db, &["callbacks", "done", &callback, "--by", "Ada"]);
    assert_eq!(done["callback"]["status"], "done");
    // The last drift report shows in /metrics (run by cron, say).
    let drift = cli(&s.db, &["calcom", "drift", "--calcom-url", fake.url(), "--days-ahead", "40000"]);
    assert_eq!(drift["companies"][0]["missing_in_calcom"], json!([]));
    // ... and on the operator's overview.
    let overview = ureq::get(&format!("{}/admin/health", s.url))
        .set("Authorization", "Bearer admin-token")
        .call()
        .expect("answers")
        .into_string()
        .expect("html");
    assert!(overview.contains("<tr data-drift=\"1\">"), "{overview}");
    let (_, metrics) = get(&format!("{}/metrics", s.url));
    for line in [
        "callbook_calcom_drift{company=\"1\",kind=\"missing_locally\"} 0",
        "callbook_agent_answers_total{function=\"cancel_appointment\",result=\"ok\"} 2",
        "callbook_agent_answers_total{function=\"cancel_appointment\",result=\"caller_not_verified\"} 1",
        "callbook_agent_answers_total{function=\"request_callback\",result=\"ok\"} 1",
        "callbook_appointment_changes_total{name=\"cancel\"} 1",
        "callbook_booking_duration_seconds_count 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}
