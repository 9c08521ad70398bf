//! A fake Cal.com API v2 on a real loopback HTTP server (127.0.0.1, port 0),
//! for tests, the demo and benchmarks.
//!
//! The fake is a claim about Cal.com: every rule names the upstream file of
//! calcom/cal.com it follows (paths below are relative to that repository),
//! and its answers are checked against the contract fixtures in
//! `tests/contract/calcom/`, transcribed from the same files. Where a rule is
//! simplified, the comment says how. Faults are injected on demand; its
//! clock is injected like the worker's.
//!
//! Upstream sources (paths in calcom/cal.com), by the short names the
//! rules below use:
//! - CONTROLLER: apps/api/v2/src/ee/bookings/2024-08-13/controllers/bookings.controller.ts
//! - CREATE_INPUT: packages/platform/types/bookings/2024-08-13/inputs/create-booking.input.ts
//! - GET_BOOKINGS_INPUT: packages/platform/types/bookings/2024-08-13/inputs/get-bookings.input.ts
//! - BOOKINGS_SERVICE: apps/api/v2/src/ee/bookings/2024-08-13/services/bookings.service.ts
//! - OUTPUT_SERVICE: apps/api/v2/src/ee/bookings/2024-08-13/services/output.service.ts
//! - HANDLE_NEW_BOOKING: packages/features/bookings/lib/handleNewBooking.ts
//! - HANDLE_SEATS: packages/features/bookings/lib/handleSeats/handleSeats.ts
//! - BOOKER_LIMIT: packages/features/bookings/lib/handleNewBooking/checkActiveBookingsLimitForBooker.ts
//! - ADD_ATTENDEE_INPUT: packages/platform/types/bookings/2024-08-13/inputs/add-attendee.input.ts
//! - RESCHEDULE_INPUT: packages/platform/types/bookings/2024-08-13/inputs/reschedule-booking.input.ts
//! - METADATA_VALIDATOR: packages/platform/types/utils/validators/validate-metadata.ts
//! - THROTTLER: apps/api/v2/src/lib/throttler-guard.ts
//! - ERROR_FILTER: apps/api/v2/src/filters/http-exception.filter.ts
//! - ERROR_WITH_CODE_FILTER: apps/api/v2/src/filters/error-with-code-exception.filter.ts
//! - ERRORS_SERVICE: apps/api/v2/src/ee/bookings/2024-08-13/services/errors.service.ts
//! - INPUT_SERVICE: apps/api/v2/src/ee/bookings/2024-08-13/services/input.service.ts
//! - HANDLE_CANCEL: packages/features/bookings/lib/handleCancelBooking.ts
//! - ATTENDEES_CONTROLLER: apps/api/v2/src/ee/bookings/2024-08-13/controllers/booking-attendees.controller.ts
//! - SLOTS_INPUT_SERVICE: apps/api/v2/src/modules/slots/slots-2024-09-04/services/slots-input.service.ts
//! - AUTH_STRATEGY: apps/api/v2/src/modules/auth/strategies/api-auth/api-auth.strategy.ts
//!
//! Facts and fixtures: `tests/contract/calcom/SOURCES.md`.
//! - SLOTS_INPUT: packages/platform/types/slots/slots-2024-09-04/inputs/get-slots.input.ts
//! - SLOTS_OUTPUT: apps/api/v2/src/modules/slots/slots-2024-09-04/services/slots-output.service.ts

use crate::calcom::{BOOKINGS_API_VERSION, METADATA_KEY, SLOTS_API_VERSION};
use crate::clock::Clock;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A Cal.com event type as the fake's host offers it. Its length is Cal.com's
/// own and may differ from the local service's `duration_minutes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventType {
    pub id: i64,
    pub length_minutes: i64,
    /// Seats per time slot: a create at a start that has a booking adds a
    /// seat to it (same uid) instead of being refused (`HANDLE_SEATS`).
    pub seats: Option<u32>,
    /// Upcoming accepted bookings one attendee email may hold (`BOOKER_LIMIT`).
    pub max_active_bookings_per_booker: Option<u32>,
    /// The host's working hours, which `/v2/slots` offers.
    pub schedule: Schedule,
    /// Refuse creates outside the working hours, as Cal.com does ("No
    /// available users found"). Off by default so bulk tests may book
    /// around the clock; the availability tests turn it on.
    pub strict_hours: bool,
}

impl EventType {
    pub fn new(id: i64, length_minutes: i64) -> Self {
        EventType {
            id,
            length_minutes,
            seats: None,
            max_active_bookings_per_booker: None,
            schedule: Schedule::default(),
            strict_hours: false,
        }
    }
    pub fn seated(mut self, seats: u32) -> Self {
        self.seats = Some(seats);
        self
    }
    pub fn booker_limit(mut self, bookings: u32) -> Self {
        self.max_active_bookings_per_booker = Some(bookings);
        self
    }
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }
    pub fn strict_hours(mut self) -> Self {
        self.strict_hours = true;
        self
    }
}

/// When the host works: every day from `open` to `close` in the host's own
/// zone (a Cal.com schedule has its own time zone, whatever zone a client
/// asks the slots in), a start every `step_minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub open: NaiveTime,
    pub close: NaiveTime,
    pub step_minutes: i64,
    pub time_zone: chrono_tz::Tz,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::hours(9, 17, "Europe/Berlin")
    }
}

impl Schedule {
    /// `open` to `close` o'clock in the IANA zone `zone` (UTC if unknown), every 30 minutes.
    pub fn hours(open: u32, close: u32, zone: &str) -> Self {
        let at = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or(NaiveTime::MIN);
        let time_zone = zone.parse().unwrap_or(chrono_tz::UTC);
        Schedule { open: at(open), close: at(close), step_minutes: 30, time_zone }
    }
}

/// One injected fault, used by the next request it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and Cal.com's error body (message as given).
    Status(u16, String),
    /// 429 with a `Retry-After` of this many seconds.
    RateLimited(i64),
    /// Answer after this long (real time: past the client's timeout, the client gives up).
    Delay(std::time::Duration),
    /// Do the next create at once, but answer it only after this long: the
    /// client times out although the booking exists (the lost answer).
    LoseAnswer(std::time::Duration),
    /// The next create reaches Cal.com late: it is done only when the
    /// following create arrives (just before it), or after this long; its
    /// own answer comes after this long. A lookup in between finds nothing
    /// — the create that races an earlier create of the same booking.
    LateCreate(std::time::Duration),
    /// The next create answers this status and error message, undone
    /// (other requests pass). After a `LateCreate` it is the answer to the
    /// create that races it.
    CreateStatus(u16, String),
}

impl Fault {
    /// Faults that wait for a create and let other requests pass.
    fn waits_for_create(&self) -> bool {
        matches!(self, Fault::LoseAnswer(_) | Fault::LateCreate(_) | Fault::CreateStatus(..))
    }
}

/// An attendee (or, on a seated event type, a seat) of a fake booking.
#[derive(Debug, Clone, PartialEq)]
struct Attendee {
    fields: Map<String, Value>,
    /// Seated event types: the seat's uid and metadata.
    seat: Option<(String, Map<String, Value>)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Booking {
    id: i64,
    uid: String,
    event_type: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// `accepted` or `cancelled`.
    status: &'static str,
    attendees: Vec<Attendee>,
    metadata: Map<String, Value>,
    cancellation_reason: Option<String>,
    rescheduling_reason: Option<String>,
    rescheduled_from: Option<String>,
    rescheduled_to: Option<String>,
    created_at: DateTime<Utc>,
}

impl Booking {
    fn live(&self) -> bool {
        self.status == "accepted"
    }
}

#[derive(Debug, Default)]
struct Throttle {
    /// Request times in the current window.
    sent: VecDeque<DateTime<Utc>>,
    blocked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct State {
    event_types: HashMap<i64, EventType>,
    bookings: Vec<Booking>,
    next_id: i64,
    creates_by_key: HashMap<String, u32>,
    faults: VecDeque<Fault>,
    /// Creates that arrived and wait to be done (`Fault::LateCreate`).
    parked: Vec<String>,
    outage_until: Option<DateTime<Utc>>,
    /// Per (API key, throttler name).
    throttles: HashMap<(String, &'static str), Throttle>,
    /// Every request per API key, for the busiest-minute figure.
    log: HashMap<String, Vec<DateTime<Utc>>>,
    requests_total: u64,
    rate_limited_total: u64,
    limit_per_minute: usize,
    /// API keys Cal.com knows; empty: any key.
    keys: Vec<String>,
    last_request: Option<Recorded>,
}

/// Counters a test reads after a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FakeStats {
    pub requests: u64,
    /// Bookings in any state (a reschedule adds one).
    pub bookings: usize,
    /// Bookings not cancelled.
    pub live_bookings: usize,
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
    /// Starts the server on 127.0.0.1 with a free port and 4 handler
    /// threads. It knows no event type yet: see [`FakeCalcom::add_event_type`].
    pub fn start(clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        // TCP_NODELAY, inherited by every accepted connection: tiny_http writes
        // a response longer than its 1 KiB buffer in two segments, and Nagle
        // would hold the second until the client's delayed ACK (40 ms).
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(128)?;
        let server = tiny_http::Server::from_listener(std::net::TcpListener::from(socket), None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
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

    /// Starts with these event types.
    pub fn with_event_types(clock: Arc<dyn Clock>, event_types: &[EventType]) -> std::io::Result<Self> {
        let fake = Self::start(clock)?;
        for e in event_types {
            fake.add_event_type(e.clone());
        }
        Ok(fake)
    }

    /// The API base to give the client (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) an event type; others answer 404 as upstream does.
    pub fn add_event_type(&self, event_type: EventType) {
        self.state().event_types.insert(event_type.id, event_type);
    }

    /// Only these API keys are known; others answer 401 (default: any key).
    pub fn known_keys(&self, keys: &[&str]) {
        self.state().keys = keys.iter().map(|k| k.to_string()).collect();
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<Recorded> {
        self.state().last_request.clone()
    }

    /// Queues faults for the next requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state().faults.extend(faults);
    }

    /// Every request answers 503 until the fake's clock reaches `until`.
    pub fn outage_until(&self, until: DateTime<Utc>) {
        self.state().outage_until = Some(until);
    }

    /// The default throttler's limit per key and minute (Cal.com: 120).
    pub fn set_limit_per_minute(&self, limit: usize) {
        self.state().limit_per_minute = limit;
    }

    /// `n` requests made with `api_key` by someone else (another process
    /// on the same key), now: they count against the key's limit.
    pub fn consume(&self, api_key: &str, n: usize, now: DateTime<Utc>) {
        let mut s = self.state();
        let window = &mut s.throttles.entry((api_key.to_string(), DEFAULT_THROTTLER)).or_default().sent;
        window.extend(std::iter::repeat_n(now, n));
    }

    /// A booking made in Cal.com itself (its booking page, staff): no
    /// callbook key in its metadata. Returns its uid.
    pub fn add_booking_elsewhere(&self, event_type: i64, start: DateTime<Utc>, attendee: Value) -> Option<String> {
        let mut s = self.state();
        let length = s.event_types.get(&event_type)?.length_minutes;
        let fields = attendee.as_object().cloned().unwrap_or_default();
        let booking = new_booking(&mut s, event_type, start, length, fields, Map::new(), None, start);
        let uid = booking.uid.clone();
        s.bookings.push(booking);
        Some(uid)
    }

    /// Accepted creates for one idempotency key.
    pub fn creates_for(&self, key: &str) -> u32 {
        self.state().creates_by_key.get(key).copied().unwrap_or(0)
    }

    /// Every booking as `GET /v2/bookings/{uid}` answers it, oldest first.
    pub fn bookings(&self) -> Vec<Value> {
        let s = self.state();
        s.bookings.iter().map(|b| booking_json(b, &s)).collect()
    }

    /// The uids of bookings not cancelled.
    pub fn live_uids(&self) -> Vec<String> {
        self.state().bookings.iter().filter(|b| b.live()).map(|b| b.uid.clone()).collect()
    }

    /// Most requests one API key made in any 60 seconds.
    pub fn busiest_minute(&self, api_key: &str) -> usize {
        let s = self.state();
        let Some(times) = s.log.get(api_key) else { return 0 };
        let mut sorted = times.clone();
        sorted.sort_unstable();
        let mut best = 0;
        let mut from = 0;
        for (i, t) in sorted.iter().enumerate() {
            while sorted[from] + Duration::minutes(1) <= *t {
                from += 1;
            }
            best = best.max(i + 1 - from);
        }
        best
    }

    pub fn stats(&self) -> FakeStats {
        let s = self.state();
        FakeStats {
            requests: s.requests_total,
            bookings: s.bookings.len(),
            live_bookings: s.bookings.iter().filter(|b| b.live()).count(),
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

// ------------------------------------------------------------------ answers

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
    fn ok(status: u16, data: Value) -> Self {
        Answer::json(status, json!({"status": "success", "data": data}))
    }
    /// Envelope (A) of `ERROR_FILTER`, for Nest's HttpExceptions:
    /// `{status, timestamp, path, error: {code: <exception>, message, details}}`.
    fn error(path: &str, status: u16, message: &str) -> Self {
        let (code, reason) = match status {
            400 => ("BadRequestException", "Bad Request"),
            401 => ("UnauthorizedException", "Unauthorized"),
            403 => ("ForbiddenException", "Forbidden"),
            404 => ("NotFoundException", "Not Found"),
            409 => ("ConflictException", "Conflict"),
            429 => ("ThrottlerException", "Too Many Requests"),
            _ => ("InternalServerErrorException", "Internal Server Error"),
        };
        let details = if status == 429 {
            json!(message)
        } else {
            json!({"message": message, "error": reason, "statusCode": status})
        };
        Answer::json(
            status,
            json!({"status": "error", "timestamp": format_ms(&Utc::now()), "path": path,
                   "error": {"code": code, "message": message, "details": details}}),
        )
    }
    /// Envelope (B), `ErrorWithCode` (`ERROR_WITH_CODE_FILTER`): a snake_case code, no details.
    fn coded(path: &str, status: u16, code: &str, message: &str) -> Self {
        Answer::json(
            status,
            json!({"status": "error", "timestamp": format_ms(&Utc::now()), "path": path,
                   "error": {"code": code, "message": message}}),
        )
    }
    /// Envelope (C), Nest's base filter for an `HttpError` with a status:
    /// `{statusCode, message}` (`booking_conflict_error`, cancel refusals).
    fn bare(status: u16, message: &str) -> Self {
        Answer::json(status, json!({"statusCode": status, "message": message}))
    }
}

/// A create refused with `message`, in the envelope upstream uses for it:
/// `HttpError`s such as `booking_conflict_error` bare (C), the
/// `AvailabilityCalculator` messages with their code (B), the rest (A).
fn refusal(path: &str, status: u16, message: &str) -> Answer {
    let code = match message.trim_end_matches('.') {
        "Fixed hosts unavailable for booking" => Some("fixed_hosts_unavailable_for_booking"),
        "Round robin hosts unavailable for booking" => Some("round_robin_host_unavailable_for_booking"),
        "No available users found" => Some("no_available_users_found_error"),
        _ => None,
    };
    match code {
        _ if message.ends_with("_error") => Answer::bare(status, message),
        Some(code) => Answer::coded(path, status, code, message),
        None => Answer::error(path, status, message),
    }
}

fn format_ms(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A request as the fake received it (for contract tests of the client).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Value,
}

/// A stable id per request line (no randomness in tests).
fn rand_id(url: &str, status: u16) -> u64 {
    url.bytes().fold(u64::from(status), |h, b| h.wrapping_mul(0x100_0000_01b3) ^ u64::from(b))
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
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        s.last_request = Some(Recorded {
            method: method.clone(),
            path: path.to_string(),
            query: query_params(query),
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
        });
    }
    let mut response = tiny_http::Response::from_string(answer.body.to_string()).with_status_code(answer.status);
    let mut headers = answer.headers;
    headers.push(("Content-Type".into(), "application/json; charset=utf-8".into()));
    if answer.status >= 400 {
        // Nest's request id middleware; every error answer carries one.
        headers.push(("X-Request-Id".into(), format!("fake-{:016x}", rand_id(&url, answer.status))));
    }
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

/// The default throttler and the one of `POST /v2/bookings/{uid}/attendees` (`THROTTLER`).
const DEFAULT_THROTTLER: &str = "Default";
const ATTENDEES_THROTTLER: &str = "Booking_attendees_add";
const ATTENDEES_PER_MINUTE: usize = 5;

/// Counts one request against a throttler. Cal.com's guard (`THROTTLER`):
/// `limit` requests per 60 s per key, then the key is blocked for 60 s; it
/// sends `X-RateLimit-Limit-<Name>`, `-Remaining-` and `-Reset-` (seconds)
/// on every answer, and no `Retry-After`.
fn throttle(
    s: &mut State,
    key: &str,
    name: &'static str,
    limit: usize,
    now: DateTime<Utc>,
) -> (bool, [(String, String); 3]) {
    let t = s.throttles.entry((key.to_string(), name)).or_default();
    while t.sent.front().is_some_and(|at| *at + Duration::minutes(1) <= now) {
        t.sent.pop_front();
    }
    let blocked = t.blocked_until.is_some_and(|until| now < until);
    let refused = blocked || t.sent.len() >= limit;
    if !refused {
        t.sent.push_back(now);
    } else if !blocked {
        t.blocked_until = Some(now + Duration::minutes(1));
    }
    let reset_at = match t.blocked_until.filter(|u| now < *u) {
        Some(until) => until,
        None => t.sent.front().map_or(now + Duration::minutes(1), |at| *at + Duration::minutes(1)),
    };
    let reset = ((reset_at - now).num_milliseconds().max(0) + 999) / 1000;
    let remaining = if refused { 0 } else { limit.saturating_sub(t.sent.len()) };
    let headers = [
        (format!("X-RateLimit-Limit-{name}"), limit.to_string()),
        (format!("X-RateLimit-Remaining-{name}"), remaining.to_string()),
        (format!("X-RateLimit-Reset-{name}"), reset.to_string()),
    ];
    (refused, headers)
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
    let path = path.trim_end_matches('/');
    let Some(key) = auth.and_then(|a| a.strip_prefix("Bearer ")).filter(|k| !k.is_empty()).map(str::to_string) else {
        // The throttler counts the caller by IP first, then `AUTH_STRATEGY` refuses.
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests_total += 1;
        let limit = s.limit_per_minute;
        let (_, headers) = throttle(&mut s, "ip:127.0.0.1", DEFAULT_THROTTLER, limit, now);
        let mut a = Answer::error(path, 401, "ApiAuthStrategy - No authentication method provided. Either pass an API key as 'Bearer' header or OAuth client credentials as 'x-cal-secret-key' and 'x-cal-client-id' headers");
        a.headers.extend(headers);
        return a;
    };
    {
        // A key Cal.com does not know is refused by the throttler before
        // anything is counted (`THROTTLER`). Without registered keys the fake takes any.
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        if !s.keys.is_empty() && !s.keys.contains(&key) {
            return Answer::error(path, 401, "CustomThrottlerGuard - Invalid API Key");
        }
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_create = method == "POST" && segments == ["v2", "bookings"];
    let is_attendees = method == "POST" && matches!(segments.as_slice(), ["v2", "bookings", _, "attendees"]);
    let mut delay_before = None;
    let mut delay_after = None;
    let mut late = false;
    let mut headers = Vec::new();
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests_total += 1;
        s.log.entry(key.clone()).or_default().push(now);
        if s.outage_until.is_some_and(|until| now < until) {
            return Answer::error(path, 503, "Service Unavailable");
        }
        if is_create {
            land_parked(&mut s, now);
        }
        // The throttler runs first, for every request that reaches the app
        // (its headers are on every answer). A route with its own
        // `@Throttle` (attendees) counts only against that one, not
        // against Default (`ATTENDEES_CONTROLLER`, `THROTTLER`).
        let (name, limit) = if is_attendees {
            (ATTENDEES_THROTTLER, ATTENDEES_PER_MINUTE)
        } else {
            (DEFAULT_THROTTLER, s.limit_per_minute)
        };
        let (refused, h) = throttle(&mut s, &key, name, limit, now);
        headers.extend(h);
        if refused {
            s.rate_limited_total += 1;
            let mut a = Answer::error(path, 429, "CustomThrottlerGuard - Too many requests. Please try again later.");
            a.headers = headers;
            return a;
        }
        let waits = s.faults.front().is_some_and(Fault::waits_for_create) && !is_create;
        let injected = |mut a: Answer| {
            a.headers.extend(headers.clone());
            a
        };
        match if waits { None } else { s.faults.pop_front() } {
            Some(Fault::Status(status, message)) => return injected(Answer::error(path, status, &message)),
            Some(Fault::CreateStatus(status, message)) => return injected(refusal(path, status, &message)),
            Some(Fault::RateLimited(secs)) => {
                s.rate_limited_total += 1;
                let mut a =
                    Answer::error(path, 429, "CustomThrottlerGuard - Too many requests. Please try again later.");
                a.headers.push(("Retry-After".into(), secs.to_string()));
                return a;
            }
            Some(Fault::Delay(d)) => delay_before = Some(d),
            Some(Fault::LoseAnswer(d)) => delay_after = Some(d),
            Some(Fault::LateCreate(d)) => {
                delay_after = Some(d);
                late = true;
            }
            None => {}
        }
        if late {
            s.parked.push(body.to_string());
        }
    }
    if late {
        // Lands after the delay unless the next create made it land first.
        let d = delay_after.unwrap_or_default();
        std::thread::sleep(d);
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        land_parked(&mut s, clock.now());
        let mut a = Answer::error(path, 504, "Gateway Timeout");
        a.headers = headers;
        return a;
    }
    if let Some(d) = delay_before {
        std::thread::sleep(d);
    }
    // Without `cal-api-version` an older controller answers the bookings
    // routes (the fake refuses instead of imitating it); routes that exist
    // only in 2024-08-13, such as attendees, are not found (`CONTROLLER`).
    let slots = method == "GET" && segments == ["v2", "slots"];
    let mut a = match (slots, version) {
        (true, Some(SLOTS_API_VERSION)) | (false, Some(BOOKINGS_API_VERSION)) => {
            route(method, &segments, path, query, body, state, now)
        }
        (false, _) if is_attendees => Answer::error(path, 404, &format!("Cannot POST {path}")),
        (true, _) => Answer::error(path, 400, "cal-api-version header 2024-09-04 is required"),
        (false, _) => Answer::error(path, 400, "cal-api-version header 2024-08-13 is required"),
    };
    a.headers.extend(headers);
    a.delay_after = delay_after;
    a
}

fn query_params(query: &str) -> HashMap<String, String> {
    query.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (percent_decode(k), percent_decode(v))).collect()
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
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

fn route(
    method: &str,
    segments: &[&str],
    path: &str,
    query: &str,
    body: &str,
    state: &Mutex<State>,
    now: DateTime<Utc>,
) -> Answer {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let input = || serde_json::from_str::<Value>(body).ok().filter(Value::is_object);
    match (method, segments) {
        ("POST", ["v2", "bookings"]) => match input() {
            Some(input) => create(&mut s, path, &input, now),
            None => Answer::error(path, 400, "body is not a JSON object"),
        },
        ("GET", ["v2", "bookings"]) => list(&s, path, &query_params(query), now),
        ("GET", ["v2", "slots"]) => slots(&s, path, &query_params(query), now),
        ("GET", ["v2", "bookings", uid]) => match s.bookings.iter().find(|b| b.uid == *uid) {
            Some(b) => Answer::ok(200, booking_json(b, &s)),
            None => Answer::error(path, 404, &format!("Booking with uid={uid} was not found in the database")),
        },
        ("POST", ["v2", "bookings", uid, action]) => {
            let input = input().unwrap_or_else(|| json!({}));
            match *action {
                "cancel" => cancel(&mut s, path, uid, &input, now),
                "reschedule" => reschedule(&mut s, path, uid, &input, now),
                "attendees" => add_attendee(&mut s, path, uid, &input),
                _ => Answer::error(path, 404, &format!("Cannot POST {path}")),
            }
        }
        _ => Answer::error(path, 404, &format!("Cannot {method} {path}")),
    }
}

// ----------------------------------------------------------------- bookings

#[allow(clippy::too_many_arguments)]
fn new_booking(
    s: &mut State,
    event_type: i64,
    start: DateTime<Utc>,
    length: i64,
    attendee: Map<String, Value>,
    metadata: Map<String, Value>,
    seat: Option<Map<String, Value>>,
    now: DateTime<Utc>,
) -> Booking {
    let id = s.next_id;
    s.next_id += 1;
    let uid = format!("fake{id:06}bk");
    let seat = seat.map(|m| (format!("{uid}-seat-1"), m));
    Booking {
        id,
        event_type,
        start,
        end: start + Duration::minutes(length),
        status: "accepted",
        attendees: vec![Attendee { fields: attendee, seat }],
        metadata,
        cancellation_reason: None,
        rescheduling_reason: None,
        rescheduled_from: None,
        rescheduled_to: None,
        created_at: now,
        uid,
    }
}

/// A create's validation error as `CreateBookingInputPipe` words it
/// (`CREATE_INPUT`): one string, `"<prop> property is wrong,<constraint> "`.
fn invalid(path: &str, property: &str, constraint: &str) -> Answer {
    Answer::error(path, 400, &format!("{property} property is wrong,{constraint} "))
}

/// Body keys the create DTO knows (a subset; `forbidNonWhitelisted` refuses others).
const CREATE_KEYS: &[&str] = &[
    "start",
    "lengthInMinutes",
    "eventTypeId",
    "eventTypeSlug",
    "username",
    "teamSlug",
    "organizationSlug",
    "attendee",
    "guests",
    "location",
    "meetingUrl",
    "metadata",
    "bookingFieldsResponses",
    "routing",
    "emailVerificationCode",
    "allowConflicts",
    "allowBookingOutOfBounds",
    "instant",
    "recurrenceCount",
];

/// `METADATA_VALIDATOR`: at most 50 keys, keys up to 40 characters, string
/// values up to 500.
fn metadata_ok(metadata: &Value) -> bool {
    match metadata {
        Value::Null => true,
        Value::Object(map) => {
            map.len() <= 50
                && map
                    .iter()
                    .all(|(k, v)| k.chars().count() <= 40 && v.as_str().is_some_and(|v| v.chars().count() <= 500))
        }
        _ => false,
    }
}

/// `POST /v2/bookings` (`CONTROLLER` → `HANDLE_NEW_BOOKING`, answers mapped
/// by `ERRORS_SERVICE`).
fn create(s: &mut State, path: &str, input: &Value, now: DateTime<Utc>) -> Answer {
    if let Some(unknown) = input.as_object().and_then(|o| o.keys().find(|k| !CREATE_KEYS.contains(&k.as_str()))) {
        return invalid(path, unknown, &format!("property {unknown} should not exist"));
    }
    let attendee = &input["attendee"];
    let Some(start) = input["start"].as_str().and_then(parse_time) else {
        return invalid(path, "start", "start must be a valid ISO 8601 date string");
    };
    let Some(event_type) = input["eventTypeId"].as_i64() else {
        return invalid(path, "eventTypeId", "eventTypeId must be an integer number");
    };
    if attendee["name"].as_str().is_none() {
        return invalid(path, "attendee", " name property is wrong,name must be a string");
    }
    if attendee["timeZone"].as_str().and_then(|z| z.parse::<chrono_tz::Tz>().ok()).is_none() {
        return invalid(path, "attendee", " timeZone property is wrong,timeZone must be a valid IANA time-zone");
    }
    // The class-level rule runs; the email and phone format checks are
    // written in a form class-validator ignores, so neither is checked (`CREATE_INPUT`).
    let email = attendee["email"].as_str();
    if email.is_none() && attendee["phoneNumber"].as_str().is_none() {
        return invalid(path, "attendee", "Attendee must have at least one contact method (email or phone number)");
    }
    if !metadata_ok(&input["metadata"]) {
        return invalid(
            path,
            "metadata",
            "Metadata must have at most 50 keys, each key up to 40 characters, and string values up to 500 characters.",
        );
    }
    let Some(et) = s.event_types.get(&event_type).cloned() else {
        return Answer::error(path, 404, &format!("Event type with id {event_type} not found."));
    };
    if start <= now {
        return Answer::error(path, 400, "Attempting to book a meeting in the past.");
    }
    // Upcoming accepted bookings of this event type with this attendee email (`BOOKER_LIMIT`).
    if let (Some(limit), Some(email)) = (et.max_active_bookings_per_booker, email) {
        let active = s
            .bookings
            .iter()
            .filter(|b| b.event_type == event_type && b.live() && b.start > now)
            .filter(|b| b.attendees.iter().any(|a| a.fields.get("email").and_then(Value::as_str) == Some(email)))
            .count();
        if active >= limit as usize {
            return Answer::error(
                path,
                400,
                "Attendee with this email can't book because the maximum number of active bookings has been reached.",
            );
        }
    }
    let metadata = input["metadata"].as_object().cloned().unwrap_or_default();
    let fields = attendee.as_object().cloned().unwrap_or_default();
    let key = metadata.get(METADATA_KEY).and_then(Value::as_str).map(str::to_string);
    let end = start + Duration::minutes(et.length_minutes);
    // Seated event types (`HANDLE_SEATS`): a create at a start that has a
    // booking takes a seat of it (same uid, a new seatUid, the metadata
    // kept per seat); the same email twice is a 409, a full slot too.
    if let Some(seats) = et.seats {
        if let Some(i) = s.bookings.iter().position(|b| b.event_type == event_type && b.live() && b.start == start) {
            let booking = &mut s.bookings[i];
            let same_email = booking
                .attendees
                .iter()
                .any(|a| email.is_some() && a.fields.get("email").and_then(Value::as_str) == email);
            if same_email {
                return Answer::bare(409, "already_signed_up_for_this_booking_error");
            }
            if booking.attendees.len() >= seats as usize {
                return Answer::error(path, 409, "No more seats left at this seated booking.");
            }
            let seat_uid = format!("{}-seat-{}", booking.uid, booking.attendees.len() + 1);
            booking.attendees.push(Attendee { fields, seat: Some((seat_uid.clone(), metadata)) });
            let answer = seated_create_json(&s.bookings[i], &seat_uid, s);
            count_create(s, key);
            return Answer::ok(201, answer);
        }
    }
    // The host is taken, or does not work then: `ensureAvailableUsers`
    // throws, and `ERRORS_SERVICE` answers 400 with this sentence.
    let taken = s.bookings.iter().any(|b| b.event_type == event_type && b.live() && b.start < end && start < b.end);
    if taken || (et.strict_hours && !in_hours(&et, start)) {
        return Answer::error(path, 400, "User either already has booking at this time or is not available");
    }
    let seat = et.seats.map(|_| metadata.clone());
    let booking = new_booking(s, event_type, start, et.length_minutes, fields, metadata, seat, now);
    let answer = match &booking.attendees[0].seat {
        Some((seat_uid, _)) => seated_create_json(&booking, seat_uid, s),
        None => booking_json(&booking, s),
    };
    s.bookings.push(booking);
    count_create(s, key);
    Answer::ok(201, answer)
}

fn count_create(s: &mut State, key: Option<String>) {
    if let Some(key) = key {
        *s.creates_by_key.entry(key).or_default() += 1;
    }
}

/// Does the host work at `start` (for the whole length)?
fn in_hours(et: &EventType, start: DateTime<Utc>) -> bool {
    let local = start.with_timezone(&et.schedule.time_zone);
    let end = local + Duration::minutes(et.length_minutes);
    local.time() >= et.schedule.open && end.date_naive() == local.date_naive() && end.time() <= et.schedule.close
}

/// Creates parked by `Fault::LateCreate` finally reach Cal.com.
fn land_parked(s: &mut State, now: DateTime<Utc>) {
    for body in std::mem::take(&mut s.parked) {
        if let Ok(input) = serde_json::from_str::<Value>(&body) {
            create(s, "/v2/bookings", &input, now);
        }
    }
}

/// `GET /v2/bookings` (`GET_BOOKINGS_INPUT`, `INPUT_SERVICE`,
/// `BOOKINGS_SERVICE`): filters combine with AND; `afterStart` compares the
/// booking's start and `beforeEnd` its END, both inclusive; every status
/// (cancelled too) unless `status` names some; `take` 1..250, default 100;
/// ordered by start.
fn list(s: &State, path: &str, q: &HashMap<String, String>, now: DateTime<Utc>) -> Answer {
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, Answer> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => parse_time(v)
                .map(Some)
                .ok_or_else(|| Answer::error(path, 400, &format!("{name} must be a valid ISO 8601 date string"))),
        }
    };
    let number = |name: &str, default: usize| q.get(name).map_or(Some(default), |v| v.parse::<usize>().ok());
    let (after_start, before_end) = match (time("afterStart"), time("beforeEnd")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let (Some(take), Some(skip)) = (number("take", 100), number("skip", 0)) else {
        return Answer::error(path, 400, "take and skip must be numbers");
    };
    if !(1..=250).contains(&take) {
        return Answer::error(path, 400, "take must not be greater than 250");
    }
    let mut event_types: Vec<i64> = Vec::new();
    for v in q.get("eventTypeId").into_iter().chain(q.get("eventTypeIds")) {
        event_types.extend(v.split(',').filter_map(|id| id.trim().parse::<i64>().ok()));
    }
    let statuses: Vec<&str> = q.get("status").map(|v| v.split(',').collect()).unwrap_or_default();
    let has_attendee = |b: &Booking, key: &str, want: &String| {
        b.attendees.iter().any(|a| a.fields.get(key).and_then(Value::as_str) == Some(want.as_str()))
    };
    let mut found: Vec<&Booking> = s
        .bookings
        .iter()
        .filter(|b| event_types.is_empty() || event_types.contains(&b.event_type))
        .filter(|b| after_start.is_none_or(|a| b.start >= a))
        .filter(|b| before_end.is_none_or(|e| b.end <= e))
        .filter(|b| q.get("bookingUid").is_none_or(|uid| &b.uid == uid))
        .filter(|b| q.get("attendeeEmail").is_none_or(|m| has_attendee(b, "email", m)))
        .filter(|b| q.get("attendeeName").is_none_or(|n| has_attendee(b, "name", n)))
        .filter(|b| {
            statuses.is_empty()
                || statuses.iter().any(|st| match *st {
                    "upcoming" => b.live() && b.end >= now,
                    "past" => b.end < now,
                    "cancelled" => !b.live(),
                    _ => false,
                })
        })
        .collect();
    // The order, as `getOrderBy` in packages/features/bookings/repositories/
    // GetBookingsRepositoryBase.ts: a sort given wins (sortStart, sortEnd,
    // sortCreated, in that order); with none and a single status, `past` and
    // `cancelled` list the latest start first and the others the earliest;
    // otherwise by start, earliest first. (Ties by id, for a stable page.)
    let sort = ["sortStart", "sortEnd", "sortCreated"].into_iter().find_map(|k| Some((k, q.get(k)?.as_str())));
    let descending = match sort {
        Some((_, order)) => order == "desc",
        None => matches!(statuses.as_slice(), ["past"] | ["cancelled"]),
    };
    match sort.map(|(k, _)| k) {
        Some("sortEnd") => found.sort_by_key(|b| (b.end, b.id)),
        Some("sortCreated") => found.sort_by_key(|b| (b.created_at, b.id)),
        _ => found.sort_by_key(|b| (b.start, b.id)),
    }
    if descending {
        found.reverse();
    }
    let total = found.len();
    let page: Vec<Value> = found.iter().skip(skip).take(take).map(|b| booking_json(b, s)).collect();
    let returned = page.len();
    Answer::json(
        200,
        json!({"status": "success", "data": page, "pagination": {
            "returnedItems": returned,
            "totalItems": total,
            "itemsPerPage": take,
            "remainingItems": total.saturating_sub(skip + returned),
            "currentPage": skip / take + 1,
            "totalPages": total.div_ceil(take),
            "hasNextPage": skip + returned < total,
            "hasPreviousPage": skip > 0,
        }}),
    )
}

fn not_found(path: &str, uid: &str) -> Answer {
    Answer::error(path, 404, &format!("Booking with uid={uid} was not found in the database"))
}

/// `POST /v2/bookings/{uid}/cancel` → 200 with the booking (`INPUT_SERVICE`,
/// `HANDLE_CANCEL`): the host's key must give a reason; a cancelled or
/// ended booking is refused. With `seatUid` only that seat goes; the host
/// cancelling a seated booking removes every seat.
fn cancel(s: &mut State, path: &str, uid: &str, input: &Value, now: DateTime<Utc>) -> Answer {
    let Some(i) = s.bookings.iter().position(|b| b.uid == uid) else {
        return not_found(path, uid);
    };
    if !s.bookings[i].live() {
        return Answer::error(
            path,
            400,
            &format!("Can't cancel booking with uid={uid} because it has been cancelled already. Please provide uid of a booking that is not cancelled."),
        );
    }
    if let Some(seat) = input["seatUid"].as_str() {
        let b = &mut s.bookings[i];
        let before = b.attendees.len();
        b.attendees.retain(|a| a.seat.as_ref().is_none_or(|(u, _)| u != seat));
        if b.attendees.len() == before {
            return Answer::error(path, 400, "Seat not found");
        }
        return Answer::ok(200, booking_json(&s.bookings[i], s));
    }
    let reason = input["cancellationReason"].as_str().map(str::trim).filter(|r| !r.is_empty());
    let Some(reason) = reason else {
        return Answer::bare(400, "Cancellation reason is required when you are the host");
    };
    if s.bookings[i].end <= now {
        return Answer::bare(400, "Cannot cancel a booking that has already ended");
    }
    let b = &mut s.bookings[i];
    b.status = "cancelled";
    b.cancellation_reason = Some(reason.to_string());
    if b.attendees.iter().any(|a| a.seat.is_some()) {
        b.attendees.clear();
    }
    Answer::ok(200, booking_json(&s.bookings[i], s))
}

/// `POST /v2/bookings/{uid}/reschedule` → 201 with a NEW booking (new uid,
/// `rescheduledFromUid`, the event type's length, the metadata copied); the
/// old one is cancelled with `rescheduledToUid`; rescheduling it again is
/// refused (`RESCHEDULE_INPUT`, `INPUT_SERVICE`, `BOOKINGS_SERVICE`).
fn reschedule(s: &mut State, path: &str, uid: &str, input: &Value, now: DateTime<Utc>) -> Answer {
    let Some(i) = s.bookings.iter().position(|b| b.uid == uid) else {
        return not_found(path, uid);
    };
    let Some(start) = input["start"].as_str().and_then(parse_time) else {
        return Answer::error(path, 400, "start must be a valid ISO 8601 date string");
    };
    let old = s.bookings[i].clone();
    if let Some(new) = &old.rescheduled_to {
        return Answer::error(
            path,
            400,
            &format!("Can't reschedule booking with uid={uid} because it has been cancelled and rescheduled already to booking with uid={new}. You probably want to reschedule {new} instead by passing it within the request URL."),
        );
    }
    if !old.live() {
        return Answer::error(
            path,
            400,
            &format!("Can't reschedule booking with uid={uid} because it has been cancelled. Please provide uid of a booking that is not cancelled."),
        );
    }
    if old.attendees.iter().any(|a| a.seat.is_some()) && input["seatUid"].as_str().is_none() {
        return Answer::error(path, 400, "seatUid is required to reschedule a seated booking");
    }
    if start <= now {
        return Answer::error(path, 400, "Attempting to book a meeting in the past.");
    }
    if let Some(seat) = input["seatUid"].as_str() {
        return move_seat(s, path, i, seat, start, now);
    }
    let length = s.event_types.get(&old.event_type).map_or((old.end - old.start).num_minutes(), |e| e.length_minutes);
    let end = start + Duration::minutes(length);
    let taken = s
        .bookings
        .iter()
        .any(|b| b.uid != uid && b.event_type == old.event_type && b.live() && b.start < end && start < b.end);
    if taken {
        return Answer::error(path, 400, "User either already has booking at this time or is not available");
    }
    let attendee = old.attendees.first().map(|a| a.fields.clone()).unwrap_or_default();
    let mut new = new_booking(s, old.event_type, start, length, attendee, old.metadata.clone(), None, now);
    new.attendees = old.attendees.clone();
    new.rescheduled_from = Some(old.uid.clone());
    new.rescheduling_reason = input["reschedulingReason"].as_str().map(str::to_string);
    let b = &mut s.bookings[i];
    b.status = "cancelled";
    b.rescheduled_to = Some(new.uid.clone());
    let answer = booking_json(&new, s);
    s.bookings.push(new);
    Answer::ok(201, answer)
}

/// A seat's move (`RescheduleSeatedBookingInput_2024_08_13`, upstream's
/// `attendeeRescheduleSeatedBooking`): the seat (same seat uid, its own
/// metadata) leaves its booking, which is cancelled when no seat is left,
/// and joins the live booking of the event type at the new start, or a new
/// one; 201 with that booking and the seat's uid.
fn move_seat(s: &mut State, path: &str, i: usize, seat: &str, start: DateTime<Utc>, now: DateTime<Utc>) -> Answer {
    let Some(at) = s.bookings[i].attendees.iter().position(|a| a.seat.as_ref().is_some_and(|(u, _)| u == seat)) else {
        return Answer::error(path, 400, "Seat not found");
    };
    let event_type = s.bookings[i].event_type;
    let (length, seats) = s
        .event_types
        .get(&event_type)
        .map_or(((s.bookings[i].end - s.bookings[i].start).num_minutes(), u32::MAX), |e| {
            (e.length_minutes, e.seats.unwrap_or(u32::MAX))
        });
    let target = s.bookings.iter().position(|b| b.event_type == event_type && b.live() && b.start == start);
    if target.is_some_and(|t| t != i && s.bookings[t].attendees.len() >= seats as usize) {
        return Answer::error(path, 409, "No more seats left at this seated booking.");
    }
    let attendee = s.bookings[i].attendees.remove(at);
    if s.bookings[i].attendees.is_empty() {
        s.bookings[i].status = "cancelled";
    }
    let target = match target {
        Some(t) => {
            s.bookings[t].attendees.push(attendee);
            t
        }
        None => {
            let metadata = attendee.seat.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
            let mut new = new_booking(s, event_type, start, length, attendee.fields.clone(), metadata, None, now);
            new.attendees = vec![attendee];
            new.rescheduled_from = Some(s.bookings[i].uid.clone());
            s.bookings.push(new);
            s.bookings.len() - 1
        }
    };
    Answer::ok(201, seated_create_json(&s.bookings[target], seat, s))
}

/// `POST /v2/bookings/{uid}/attendees` (`ADD_ATTENDEE_INPUT`): name and
/// timeZone, and an email that passes `@IsEmail()` (the global pipe
/// answers "Bad Request Exception" with the errors); 201 with the attendee.
fn add_attendee(s: &mut State, path: &str, uid: &str, input: &Value) -> Answer {
    let email = input["email"].as_str().filter(|e| crate::email::is_valid_email(e));
    let (Some(name), Some(email), Some(zone)) = (input["name"].as_str(), email, input["timeZone"].as_str()) else {
        let mut a = Answer::error(path, 400, "Bad Request Exception");
        a.body["error"]["details"] = json!({"errors": [{"target": input, "value": input["email"], "property": "email",
            "children": [], "constraints": {"isEmail": "email must be an email"}}]});
        return a;
    };
    let Some(booking) = s.bookings.iter_mut().find(|b| b.uid == uid) else {
        return not_found(path, uid);
    };
    let fields = json!({"name": name, "email": email, "timeZone": zone});
    booking.attendees.push(Attendee { fields: fields.as_object().cloned().unwrap_or_default(), seat: None });
    let (booking_id, id) = (booking.id, booking.id * 100 + booking.attendees.len() as i64);
    Answer::ok(
        201,
        json!({"id": id, "bookingId": booking_id, "name": name, "email": email, "displayEmail": email,
               "timeZone": zone, "language": input["language"].as_str().unwrap_or("en"), "absent": false,
               "phoneNumber": input["phoneNumber"]}),
    )
}

fn attendee_json(a: &Attendee) -> Value {
    let field = |k: &str| a.fields.get(k).cloned().unwrap_or(Value::Null);
    let mut out = json!({
        "name": field("name"),
        "email": field("email"),
        "displayEmail": field("email"),
        "timeZone": field("timeZone"),
        "language": a.fields.get("language").cloned().unwrap_or(json!("en")),
        "absent": false,
    });
    // A seat carries its uid, its responses (no email) and its own metadata; no phone.
    if let (Some(phone), None) = (a.fields.get("phoneNumber"), &a.seat) {
        out["phoneNumber"] = phone.clone();
    }
    if let Some((seat_uid, metadata)) = &a.seat {
        out["seatUid"] = json!(seat_uid);
        out["bookingFieldsResponses"] = json!({"name": field("name")});
        out["metadata"] = Value::Object(metadata.clone());
    }
    out
}

/// A booking as `OUTPUT_SERVICE` writes it (see `create.json`,
/// `create_seated.json`): a seated booking has no top-level `metadata`,
/// `bookingFieldsResponses` or `cancelledByEmail`; each seat has its own.
fn booking_json(b: &Booking, s: &State) -> Value {
    let seated = b.attendees.iter().any(|a| a.seat.is_some())
        || s.event_types.get(&b.event_type).is_some_and(|e| e.seats.is_some());
    let first = b.attendees.first().map(|a| &a.fields);
    let name = first.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("Attendee");
    let host_zone = s.event_types.get(&b.event_type).map_or("Europe/Berlin", |e| e.schedule.time_zone.name());
    let video = format!("https://app.cal.com/video/{}", b.uid);
    let mut out = json!({
        "id": b.id,
        "uid": b.uid,
        "title": format!("Appointment between Host and {name}"),
        "description": "",
        "hosts": [{"id": 1, "name": "Host", "email": "host@example.com", "displayEmail": "host@example.com",
                   "username": "host", "timeZone": host_zone}],
        "status": b.status,
        "cancellationReason": b.cancellation_reason.clone().unwrap_or_default(),
        "start": format_ms(&b.start),
        "end": format_ms(&b.end),
        "duration": (b.end - b.start).num_minutes(),
        "eventTypeId": b.event_type,
        "eventType": {"id": b.event_type, "slug": format!("event-{}", b.event_type)},
        "meetingUrl": video,
        "location": video,
        "absentHost": false,
        "createdAt": format_ms(&b.created_at),
        "updatedAt": format_ms(&b.created_at),
        "rating": null,
        "icsUid": format!("{}@Cal.com", b.uid),
        "rescheduledByEmail": null,
        "attendees": b.attendees.iter().map(attendee_json).collect::<Vec<_>>(),
    });
    if !seated {
        out["cancelledByEmail"] = json!("");
        out["metadata"] = Value::Object(b.metadata.clone());
        let field = |k: &str| first.and_then(|f| f.get(k)).cloned();
        let mut responses = json!({"name": name, "location": {"value": "integrations:daily", "optionValue": ""}});
        if let Some(email) = field("email") {
            responses["email"] = email.clone();
            responses["displayEmail"] = email;
        }
        if let Some(phone) = field("phoneNumber") {
            responses["attendeePhoneNumber"] = phone;
        }
        if let Some(reason) = &b.rescheduling_reason {
            responses["rescheduledReason"] = json!(reason);
        }
        out["bookingFieldsResponses"] = responses;
    }
    for (k, v) in [
        ("reschedulingReason", &b.rescheduling_reason),
        ("rescheduledFromUid", &b.rescheduled_from),
        ("rescheduledToUid", &b.rescheduled_to),
    ] {
        if let Some(v) = v {
            out[k] = json!(v);
        }
    }
    out
}

/// The answer to a create that took a seat: the booking with `seatUid`.
fn seated_create_json(b: &Booking, seat_uid: &str, s: &State) -> Value {
    let mut out = booking_json(b, s);
    out["seatUid"] = json!(seat_uid);
    out
}

// -------------------------------------------------------------------- slots

/// `GET /v2/slots` (`SLOTS_INPUT`, `SLOTS_INPUT_SERVICE`, `SLOTS_OUTPUT`):
/// `start` and `end` are ISO 8601 dates or instants read in UTC; a date
/// alone starts at 00:00:00Z, and an `end` whose UTC time is exactly
/// 00:00:00 is moved to 23:59:59 of that day. `timeZone` only changes how
/// the starts are written (milliseconds and offset; UTC without it) and
/// grouped by day. The host's hours are its own schedule's.
fn slots(s: &State, path: &str, q: &HashMap<String, String>, now: DateTime<Utc>) -> Answer {
    let bound = |name: &str| -> Option<DateTime<Utc>> {
        let v = q.get(name)?;
        let t = match v.parse::<NaiveDate>() {
            Ok(day) => day.and_time(NaiveTime::MIN).and_utc(),
            Err(_) => parse_time(v)?,
        };
        Some(if name == "end" && t.time() == NaiveTime::MIN { t + Duration::seconds(86_399) } else { t })
    };
    let event_type = q.get("eventTypeId").and_then(|v| v.parse::<i64>().ok());
    let zone = q.get("timeZone").map_or(Ok(chrono_tz::UTC), |z| z.parse::<chrono_tz::Tz>());
    let (Some(event_type), Some(from), Some(to), Ok(zone)) = (event_type, bound("start"), bound("end"), zone) else {
        return Answer::error(path, 400, "eventTypeId, start, end and a valid timeZone are required");
    };
    let Some(et) = s.event_types.get(&event_type) else {
        return Answer::error(path, 404, &format!("Event type with id {event_type} not found."));
    };
    let range = q.get("format").is_some_and(|f| f == "range");
    let length = Duration::minutes(et.length_minutes);
    let host = et.schedule.time_zone;
    let utc = q.get("timeZone").is_none();
    let write = |t: DateTime<Utc>| {
        if utc {
            format_ms(&t)
        } else {
            t.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Millis, false)
        }
    };
    // `bookingUidToReschedule`: the booking being moved does not block its own new slot.
    let moving = q.get("bookingUidToReschedule");
    let live = |b: &&Booking| b.event_type == event_type && b.live() && moving != Some(&b.uid);
    let mut data = Map::new();
    let first = from.with_timezone(&host).date_naive();
    for date in
        first.iter_days().take_while(|d| d.and_time(NaiveTime::MIN).and_utc() <= to + Duration::days(1)).take(64)
    {
        let mut at = et.schedule.open;
        while at < et.schedule.close {
            if let Some(start) = date.and_time(at).and_local_timezone(host).earliest().map(|l| l.with_timezone(&Utc)) {
                let free = match et.seats {
                    Some(n) => s
                        .bookings
                        .iter()
                        .filter(live)
                        .filter(|b| b.start == start)
                        .all(|b| b.attendees.len() < n as usize),
                    None => !s.bookings.iter().filter(live).any(|b| b.start < start + length && start < b.end),
                };
                if start >= from && start <= to && start > now && free && in_hours(et, start) {
                    let slot = if range {
                        json!({"start": write(start), "end": write(start + length)})
                    } else {
                        json!({"start": write(start)})
                    };
                    let day = start.with_timezone(&zone).date_naive().to_string();
                    if let Value::Array(list) = data.entry(day).or_insert_with(|| Value::Array(Vec::new())) {
                        list.push(slot);
                    }
                }
            }
            let next = at + Duration::minutes(et.schedule.step_minutes.max(1));
            if next <= at {
                break;
            }
            at = next;
        }
    }
    Answer::ok(200, Value::Object(data))
}
