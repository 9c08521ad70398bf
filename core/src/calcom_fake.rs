//! A fake Cal.com API v2 on a real loopback HTTP server (127.0.0.1, port 0),
//! for tests, the demo and benchmarks. It speaks the v2 bookings shapes and
//! rules callbook relies on: 201 on create; the "already has booking" 400
//! for a second booking of the same event type and start; 120 requests a
//! minute per API key, then 429 (its clock is injected, like the worker's).
//! It counts creates per idempotency key and injects faults on demand.

use crate::calcom::{BOOKINGS_API_VERSION, METADATA_KEY};
use crate::clock::Clock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One injected fault, used by the next request it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and Cal.com's error body.
    Status(u16, String),
    /// 429 with a `Retry-After` of this many seconds.
    RateLimited(i64),
    /// Answer after this long (real time: past the client's timeout, the client gives up).
    Delay(std::time::Duration),
    /// Do the next create, then answer only after this long: the client times
    /// out although the booking exists (the lost answer). Waits for a create.
    LoseAnswer(std::time::Duration),
}

#[derive(Debug, Default)]
struct State {
    bookings: Vec<Value>,
    next_id: i64,
    creates_by_key: HashMap<String, u32>,
    faults: VecDeque<Fault>,
    outage_until: Option<DateTime<Utc>>,
    requests: HashMap<String, VecDeque<DateTime<Utc>>>,
    requests_total: u64,
    rate_limited_total: u64,
    limit_per_minute: usize,
    schedule: Schedule,
}

/// When the fake's host works: every day from `open` to `close` (local time
/// in the zone the slots are asked in), a start every `step_minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub open: chrono::NaiveTime,
    pub close: chrono::NaiveTime,
    pub step_minutes: i64,
}

impl Default for Schedule {
    fn default() -> Self {
        let at = |h| chrono::NaiveTime::from_hms_opt(h, 0, 0).unwrap_or_default();
        Schedule { open: at(9), close: at(17), step_minutes: 30 }
    }
}

/// Counters a test reads after a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FakeStats {
    pub requests: u64,
    pub bookings: usize,
    /// Creates that Cal.com accepted, summed over keys.
    pub creates: u64,
    /// Idempotency keys with more than one accepted create.
    pub duplicated_keys: usize,
    pub rate_limited: u64,
}

pub struct FakeCalcom {
    url: String,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeCalcom {
    /// Starts the server on 127.0.0.1 with a free port and 4 handler threads.
    pub fn start(clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(|e| std::io::Error::other(e.to_string()))?;
        let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State { next_id: 1, limit_per_minute: 120, ..State::default() }));
        let stopping = Arc::new(AtomicBool::new(false));
        let threads = (0..4)
            .map(|_| {
                let (server, state, clock, stopping) =
                    (Arc::clone(&server), Arc::clone(&state), Arc::clone(&clock), Arc::clone(&stopping));
                std::thread::spawn(move || {
                    while !stopping.load(Ordering::SeqCst) {
                        match server.recv() {
                            Ok(request) => handle(request, &state, &*clock),
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        Ok(FakeCalcom { url: format!("http://127.0.0.1:{port}"), state, server, stopping, threads })
    }

    /// The API base to give the client (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues faults for the next requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state().faults.extend(faults);
    }

    /// Every request answers 503 until the fake's clock reaches `until`.
    pub fn outage_until(&self, until: DateTime<Utc>) {
        self.state().outage_until = Some(until);
    }

    pub fn set_limit_per_minute(&self, limit: usize) {
        self.state().limit_per_minute = limit;
    }

    /// The opening hours `/v2/slots` serves (default 09:00–17:00 every 30 minutes).
    pub fn set_schedule(&self, schedule: Schedule) {
        self.state().schedule = schedule;
    }

    /// Accepted creates for one idempotency key.
    pub fn creates_for(&self, key: &str) -> u32 {
        self.state().creates_by_key.get(key).copied().unwrap_or(0)
    }

    pub fn bookings(&self) -> Vec<Value> {
        self.state().bookings.clone()
    }

    pub fn stats(&self) -> FakeStats {
        let s = self.state();
        FakeStats {
            requests: s.requests_total,
            bookings: s.bookings.len(),
            creates: s.creates_by_key.values().map(|n| u64::from(*n)).sum(),
            duplicated_keys: s.creates_by_key.values().filter(|n| **n > 1).count(),
            rate_limited: s.rate_limited_total,
        }
    }
}

impl std::fmt::Debug for FakeCalcom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCalcom").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Drop for FakeCalcom {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn error_body(path: &str, status: u16, message: &str) -> Value {
    let code = match status {
        400 => "BadRequestException",
        401 => "UnauthorizedException",
        404 => "NotFoundException",
        409 => "ConflictException",
        429 => "ThrottlerException",
        _ => "InternalServerErrorException",
    };
    json!({"status": "error", "timestamp": Utc::now().to_rfc3339(), "path": path,
           "error": {"code": code, "message": message, "details": null}})
}

struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
    delay_after: Option<std::time::Duration>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Answer { status, body, headers: Vec::new(), delay_after: None }
    }
}

fn handle(mut request: tiny_http::Request, state: &Mutex<State>, clock: &dyn Clock) {
    let mut body = String::new();
    let _ = request.as_reader().take(64 * 1024).read_to_string(&mut body);
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let auth = header("authorization");
    let version = header("cal-api-version");
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let answer = answer(&method, &url, &body, auth.as_deref(), version.as_deref(), state, clock);
    if let Some(delay) = answer.delay_after {
        std::thread::sleep(delay);
    }
    let mut response = tiny_http::Response::from_string(answer.body.to_string()).with_status_code(answer.status);
    let mut headers = answer.headers;
    headers.push(("Content-Type".into(), "application/json".into()));
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

fn answer(
    method: &str,
    url: &str,
    body: &str,
    auth: Option<&str>,
    version: Option<&str>,
    state: &Mutex<State>,
    clock: &dyn Clock,
) -> Answer {
    let now = clock.now();
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let Some(key) = auth.and_then(|a| a.strip_prefix("Bearer ")).filter(|k| !k.is_empty()).map(str::to_string) else {
        return Answer::json(401, error_body(path, 401, "No API key provided"));
    };
    let mut delay_before = None;
    let mut delay_after = None;
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests_total += 1;
        if s.outage_until.is_some_and(|until| now < until) {
            return Answer::json(503, error_body(path, 503, "Service Unavailable"));
        }
        let is_create = method == "POST" && path.trim_end_matches('/') == "/v2/bookings";
        let waits_for_create = matches!(s.faults.front(), Some(Fault::LoseAnswer(_))) && !is_create;
        match if waits_for_create { None } else { s.faults.pop_front() } {
            Some(Fault::Status(status, message)) => return Answer::json(status, error_body(path, status, &message)),
            Some(Fault::RateLimited(secs)) => {
                s.rate_limited_total += 1;
                let mut a = Answer::json(429, error_body(path, 429, "Too many requests"));
                a.headers.push(("Retry-After".into(), secs.to_string()));
                return a;
            }
            Some(Fault::Delay(d)) => delay_before = Some(d),
            Some(Fault::LoseAnswer(d)) => delay_after = Some(d),
            None => {}
        }
        // Cal.com's default limit: 120 requests per 60 s per key.
        let limit = s.limit_per_minute;
        let window = s.requests.entry(key.clone()).or_default();
        while window.front().is_some_and(|t| *t + Duration::minutes(1) <= now) {
            window.pop_front();
        }
        if window.len() >= limit {
            let reset = window.front().map_or(60, |t| (*t + Duration::minutes(1) - now).num_seconds().max(1));
            s.rate_limited_total += 1;
            let mut a = Answer::json(429, error_body(path, 429, "ThrottlerException: Too Many Requests"));
            a.headers.push(("X-RateLimit-Limit-Default".into(), limit.to_string()));
            a.headers.push(("X-RateLimit-Remaining-Default".into(), "0".into()));
            a.headers.push(("X-RateLimit-Reset-Default".into(), reset.to_string()));
            return a;
        }
        window.push_back(now);
    }
    if let Some(d) = delay_before {
        std::thread::sleep(d);
    }
    let slots = method == "GET" && path.trim_end_matches('/') == "/v2/slots";
    if slots && version != Some(crate::calcom::SLOTS_API_VERSION) {
        return Answer::json(400, error_body(path, 400, "cal-api-version header 2024-09-04 is required"));
    }
    if !slots && version != Some(BOOKINGS_API_VERSION) {
        return Answer::json(400, error_body(path, 400, "cal-api-version header 2024-08-13 is required"));
    }
    let mut a = route(method, path, query, body, state, now);
    a.delay_after = delay_after;
    a
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| percent_decode(v))
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v).ok().map(|t| t.with_timezone(&Utc))
}

fn route(method: &str, path: &str, query: &str, body: &str, state: &Mutex<State>, now: DateTime<Utc>) -> Answer {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["v2", "bookings"]) => {
            let Ok(input) = serde_json::from_str::<Value>(body) else {
                return Answer::json(400, error_body(path, 400, "body is not JSON"));
            };
            let attendee = &input["attendee"];
            let start = input["start"].as_str().and_then(parse_time);
            let (Some(start), Some(event_type), Some(_), Some(_)) =
                (start, input["eventTypeId"].as_i64(), attendee["name"].as_str(), attendee["timeZone"].as_str())
            else {
                return Answer::json(
                    400,
                    error_body(path, 400, "start, eventTypeId, attendee.name and attendee.timeZone are required"),
                );
            };
            if attendee["email"].as_str().is_none() && attendee["phoneNumber"].as_str().is_none() {
                return Answer::json(400, error_body(path, 400, "attendee needs an email or a phoneNumber"));
            }
            if start <= now {
                return Answer::json(400, error_body(path, 400, "Attempting to book a meeting in the past."));
            }
            if input["metadata"].as_object().is_some_and(|m| m.len() > 50 || m.values().any(|v| !v.is_string())) {
                return Answer::json(400, error_body(path, 400, "metadata values must be strings, at most 50 keys"));
            }
            let taken = s.bookings.iter().any(|b| {
                b["eventTypeId"].as_i64() == Some(event_type)
                    && b["start"].as_str().and_then(parse_time) == Some(start)
                    && b["status"] == "accepted"
            });
            if taken {
                return Answer::json(
                    400,
                    error_body(path, 400, "User either already has booking at this time or is not available"),
                );
            }
            let id = s.next_id;
            s.next_id += 1;
            let booking = json!({
                "id": id,
                "uid": format!("fake-{id:06}"),
                "status": "accepted",
                "start": crate::booking::format_utc(&start),
                "eventTypeId": event_type,
                "attendees": [attendee.clone()],
                "metadata": input["metadata"].clone(),
            });
            if let Some(key) = input["metadata"][METADATA_KEY].as_str() {
                *s.creates_by_key.entry(key.to_string()).or_default() += 1;
            }
            s.bookings.push(booking.clone());
            Answer::json(201, json!({"status": "success", "data": booking}))
        }
        ("GET", ["v2", "bookings"]) => {
            let event_type = query_param(query, "eventTypeId").and_then(|v| v.parse::<i64>().ok());
            let after = query_param(query, "afterStart").and_then(|v| parse_time(&v));
            let before = query_param(query, "beforeEnd").and_then(|v| parse_time(&v));
            let email = query_param(query, "attendeeEmail");
            let found: Vec<Value> = s
                .bookings
                .iter()
                .filter(|b| {
                    let start = b["start"].as_str().and_then(parse_time);
                    event_type.is_none_or(|e| b["eventTypeId"].as_i64() == Some(e))
                        && after.is_none_or(|a| start.is_some_and(|s| s >= a))
                        && before.is_none_or(|e| start.is_some_and(|s| s <= e))
                        && email.as_deref().is_none_or(|m| {
                            b["attendees"].as_array().is_some_and(|l| l.iter().any(|x| x["email"] == m))
                        })
                })
                .cloned()
                .collect();
            let total = found.len();
            Answer::json(200, json!({"status": "success", "data": found, "pagination": {"totalItems": total}}))
        }
        ("GET", ["v2", "slots"]) => {
            let day = |name: &str| query_param(query, name).and_then(|d| d.parse::<chrono::NaiveDate>().ok());
            let event_type = query_param(query, "eventTypeId").and_then(|v| v.parse::<i64>().ok());
            let tz = query_param(query, "timeZone").unwrap_or_else(|| "UTC".into());
            let (Some(event_type), Some(start), Some(end), Ok(zone)) =
                (event_type, day("start"), day("end"), tz.parse::<chrono_tz::Tz>())
            else {
                return Answer::json(
                    400,
                    error_body(path, 400, "eventTypeId, start, end and a valid timeZone are required"),
                );
            };
            let taken: Vec<DateTime<Utc>> = s
                .bookings
                .iter()
                .filter(|b| b["eventTypeId"].as_i64() == Some(event_type) && b["status"] == "accepted")
                .filter_map(|b| b["start"].as_str().and_then(parse_time))
                .collect();
            let mut data = serde_json::Map::new();
            for date in start.iter_days().take_while(|d| *d <= end).take(62) {
                let mut day_slots = Vec::new();
                let mut at = s.schedule.open;
                while at < s.schedule.close {
                    let local = date.and_time(at).and_local_timezone(zone).earliest();
                    if let Some(local) =
                        local.filter(|l| l.with_timezone(&Utc) > now && !taken.contains(&l.with_timezone(&Utc)))
                    {
                        day_slots.push(json!({"start": local.to_rfc3339()}));
                    }
                    let next = at + Duration::minutes(s.schedule.step_minutes.max(1));
                    if next <= at {
                        break;
                    }
                    at = next;
                }
                if !day_slots.is_empty() {
                    data.insert(date.to_string(), Value::Array(day_slots));
                }
            }
            Answer::json(200, json!({"status": "success", "data": data}))
        }
        ("GET", ["v2", "bookings", uid]) => match s.bookings.iter().find(|b| b["uid"] == *uid) {
            Some(b) => Answer::json(200, json!({"status": "success", "data": b})),
            None => Answer::json(404, error_body(path, 404, "Booking not found")),
        },
        ("POST", ["v2", "bookings", uid, action]) => {
            let input: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            let Some(booking) = s.bookings.iter_mut().find(|b| b["uid"] == *uid) else {
                return Answer::json(404, error_body(path, 404, "Booking not found"));
            };
            match *action {
                "cancel" => {
                    booking["status"] = json!("cancelled");
                    booking["cancellationReason"] = input["cancellationReason"].clone();
                    Answer::json(200, json!({"status": "success", "data": booking.clone()}))
                }
                "attendees" => {
                    if input["name"].as_str().is_none() || input["timeZone"].as_str().is_none() {
                        return Answer::json(400, error_body(path, 400, "name and timeZone are required"));
                    }
                    if let Some(list) = booking["attendees"].as_array_mut() {
                        list.push(input.clone());
                    }
                    Answer::json(201, json!({"status": "success", "data": input}))
                }
                _ => Answer::json(404, error_body(path, 404, "Cannot POST")),
            }
        }
        _ => Answer::json(404, error_body(path, 404, &format!("Cannot {method} {path}"))),
    }
}
