//! The Node addon: `new Callbook(dbPath, options)`. Each method converts its
//! arguments, calls the core once and converts the answer; bookings and the
//! sync worker run on Rust threads, never blocking the event loop for I/O.
//! Options pass through to the core's own settings (`OpenOptions`,
//! `WorkerConfig`, `AvailabilityRequest`), which own every default.

mod convert;
mod error;

use callbook::calcom::fake::{EventType, FakeCalcom, Fault, Schedule};
use callbook::{
    rules, Agent, AppointmentId, Availability, AvailabilityConfig, CalcomReadOptions, CalcomReader, CallbackId,
    CallbackStatus, Callbook, CompanyId, Secret, Worker, WorkerHandle,
};
use convert::{camel, snake};
use error::{bad_argument, not_configured, to_js, to_js_async, Code};
use napi::bindgen_prelude::{AsyncTask, Result};
use napi::threadsafe_function::{ErrorStrategy, ThreadSafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsFunction, JsUnknown, Task};
use napi_derive::napi;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A core answer as a JS object (camelCase keys).
fn json<T: serde::Serialize>(value: &T) -> Result<Value, Code> {
    serde_json::to_value(value).map(camel).map_err(bad_argument)
}

/// A JS object (camelCase keys) as a core request; `undefined` is `{}`.
fn parse<T: serde::de::DeserializeOwned>(value: Option<Value>) -> Result<T, Code> {
    let value = value.filter(|v| !v.is_null()).unwrap_or_else(|| Value::Object(Default::default()));
    serde_json::from_value(snake(value)).map_err(bad_argument)
}

type Listeners = Arc<Mutex<Vec<ThreadsafeFunction<Value, ErrorStrategy::Fatal>>>>;

#[napi(js_name = "Callbook")]
pub struct JsCallbook {
    inner: Callbook,
    listeners: Listeners,
    worker: Arc<Mutex<Option<WorkerHandle>>>,
    /// One checker, and its short cache, for every Cal.com base (`calcomUrl` per request).
    availability: Arc<Availability>,
    /// Answers Retell's function calls (`retellApiKey` given).
    agent: Option<Arc<Agent>>,
}

/// A request body as JS hands it: a string or a Buffer.
type Body = napi::Either<String, napi::bindgen_prelude::Buffer>;

fn bytes_of(body: Body) -> Vec<u8> {
    match body {
        napi::Either::A(text) => text.into_bytes(),
        napi::Either::B(buffer) => buffer.to_vec(),
    }
}

#[napi]
impl JsCallbook {
    /// Opens (creating and migrating) the SQLite database at `dbPath`, or the
    /// server database a `postgres://` or `mysql://` URL names.
    /// Options: `{ synchronous: "full" | "normal" }` (default full: durable);
    /// `poolSize`: connections per process on a database server (default 16);
    /// `retellApiKey`: the key `agentAnswer` verifies Retell's signature with.
    #[napi(constructor)]
    pub fn new(db_path: String, mut options: Option<Value>) -> Result<Self, Code> {
        let key = match options.as_mut().and_then(|o| o.as_object_mut()).and_then(|o| o.remove("retellApiKey")) {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => (!key.is_empty()).then(|| Secret::new(key)),
            Some(_) => return Err(bad_argument("retellApiKey is not a string")),
        };
        let inner = Callbook::open_with(&db_path, &parse(options)?).map_err(to_js)?;
        let availability = Arc::new(Availability::http(inner.clone(), AvailabilityConfig::default()));
        let agent = key.map(|key| Arc::new(Agent::new(inner.clone(), key).with_availability(availability.clone())));
        Ok(JsCallbook { inner, listeners: Arc::default(), worker: Arc::default(), availability, agent })
    }

    /// Answers one Retell function call: the raw body and its
    /// `x-retell-signature`, verified with `retellApiKey`; `functionName` for
    /// the "args only" form. Resolves `{httpStatus, body, function}`: the
    /// answer to send as is (401 bad signature, 400 malformed, 200 with
    /// `ok` true or false). Runs off the event loop (availability asks Cal.com).
    #[napi(ts_return_type = "Promise<{ httpStatus: number; body: any; function: string | null }>")]
    pub fn agent_answer(
        &self,
        #[napi(ts_arg_type = "string | Buffer")] body: Body,
        signature: String,
        function_name: Option<String>,
    ) -> Result<AsyncTask<AgentTask>, Code> {
        let agent = self.agent.clone().ok_or_else(|| not_configured("opened without retellApiKey"))?;
        Ok(AsyncTask::new(AgentTask { agent, body: bytes_of(body), signature, function: function_name }))
    }

    /// Applies one Cal.com webhook delivery (raw body and `x-cal-signature-256`)
    /// to the company, verified with its `calcom_webhook_secret` →
    /// `{result: "imported" | "cancelled" | "rescheduled" | "already_applied" | ..., appointmentIds, ...}`.
    #[napi]
    pub fn calcom_webhook(
        &self,
        company_id: i64,
        #[napi(ts_arg_type = "string | Buffer")] body: Body,
        signature: String,
    ) -> Result<Value, Code> {
        json(&self.inner.calcom_webhook(CompanyId(company_id), &bytes_of(body), &signature).map_err(to_js)?)
    }

    /// The appointment's change log (cancels and moves, who and why), oldest first.
    #[napi]
    pub fn appointment_changes(&self, appointment_id: i64) -> Result<Value, Code> {
        json(&self.inner.appointment_changes(AppointmentId(appointment_id)).map_err(to_js)?)
    }

    /// Loads companies, branches, services and calls (the CLI's import JSON).
    #[napi(js_name = "import")]
    pub fn import_data(&self, data: Value) -> Result<Value, Code> {
        json(&self.inner.import(&parse(Some(data))?).map_err(to_js)?)
    }

    /// `{retellCallId, companyId?, branchId?, fromNumber, toNumber?}` → the call.
    #[napi]
    pub fn register_call(&self, call: Value) -> Result<Value, Code> {
        json(&self.inner.register_call(&parse(Some(call))?).map_err(to_js)?)
    }

    /// Books synchronously (microseconds; the commit waits for the disk).
    #[napi]
    pub fn book(&self, request: BookingRequest) -> Result<Booking, Code> {
        self.inner.book(&request.into()).map(Booking::from).map_err(to_js)
    }

    /// Books on the libuv thread pool; resolves with the booking.
    #[napi(ts_return_type = "Promise<Booking>")]
    pub fn book_async(&self, request: BookingRequest) -> AsyncTask<BookTask> {
        AsyncTask::new(BookTask { book: self.inner.clone(), request: request.into() })
    }

    /// Free starts for a service on a day, from Cal.com minus local bookings,
    /// remembered for the call when one is named (its booking must then take
    /// one of them). Resolves `{serviceId, date, timeZone, slots, cached, remembered}`.
    #[napi(
        ts_args_type = "request: { retellCallId?: string; serviceId?: number; date: string; calcomUrl?: string }",
        ts_return_type = "Promise<Slots>"
    )]
    pub fn check_availability(&self, request: Value) -> Result<AsyncTask<CheckTask>, Code> {
        Ok(AsyncTask::new(CheckTask { availability: Arc::clone(&self.availability), request: parse(Some(request))? }))
    }

    /// Starts the sync worker on Rust threads: `{calcomUrl?, threads?,
    /// timeoutMs?, idleMs?, emailFallback?, backoffMs?, ...}` (the core's `WorkerConfig`).
    #[napi]
    pub fn start_worker(&self, options: Option<Value>) -> Result<(), Code> {
        let mut running = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if running.is_some() {
            return Err(napi::Error::new(Code("worker_running".into()), "the worker is already running"));
        }
        let listeners = Arc::clone(&self.listeners);
        let worker = Worker::http(self.inner.clone(), parse(options)?).on_event(move |e| notify(&listeners, e));
        *running = Some(worker.spawn().map_err(to_js)?);
        Ok(())
    }

    /// Stops the worker after the jobs in hand finish their attempt.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn stop_worker(&self) -> AsyncTask<StopTask> {
        AsyncTask::new(StopTask { worker: Arc::clone(&self.worker) })
    }

    /// Calls `callback(event)` after every sync job: `{jobId, appointmentId, kind, attempt, outcome, ...}`.
    #[napi(
        ts_args_type = "callback: (event: { jobId: number; appointmentId: number; kind: string; attempt: number; outcome: string; adopted?: boolean; code?: string; reason?: string }) => void"
    )]
    pub fn on_sync_event(&self, env: Env, callback: JsFunction) -> Result<(), Code> {
        let mut tsfn: ThreadsafeFunction<Value, ErrorStrategy::Fatal> = callback
            .create_threadsafe_function(0, |ctx: ThreadSafeCallContext<Value>| Ok(vec![ctx.value]))
            .map_err(|e| bad_argument(e.reason))?;
        // Listening must not keep the process alive on its own.
        tsfn.unref(&env).map_err(|e| bad_argument(e.reason))?;
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(tsfn);
        Ok(())
    }

    #[napi]
    pub fn review_list(&self) -> Result<Value, Code> {
        json(&self.inner.review_list().map_err(to_js)?)
    }

    #[napi]
    pub fn review_retry(&self, id: i64) -> Result<Value, Code> {
        json(&self.inner.review_retry(AppointmentId(id)).map_err(to_js)?)
    }

    /// Resolves a review with a note; `by` names the operator (default `node`).
    #[napi]
    pub fn review_resolve(&self, id: i64, note: String, by: Option<String>) -> Result<Value, Code> {
        let by = by.unwrap_or_else(|| "node".into());
        json(&self.inner.review_resolve(AppointmentId(id), &by, &note).map_err(to_js)?)
    }

    #[napi]
    pub fn stats(&self) -> Result<Value, Code> {
        json(&self.inner.stats().map_err(to_js)?)
    }

    /// What the agent is told when a call starts: `{today, weekday, timeZone, branch, knownCaller, ...}`.
    #[napi]
    pub fn call_context(&self, retell_call_id: String) -> Result<Value, Code> {
        json(&self.inner.call_context(&retell_call_id).map_err(to_js)?)
    }

    /// The calling customer's upcoming appointments (at most 5), on `date` when given.
    #[napi]
    pub fn find_appointments(&self, retell_call_id: String, date: Option<String>) -> Result<Value, Code> {
        json(&self.inner.find_appointments(&retell_call_id, date.as_deref()).map_err(to_js)?)
    }

    /// A company's upcoming appointments for a phone number (an operator's search).
    #[napi]
    pub fn appointments_by_phone(&self, company_id: i64, phone: String) -> Result<Value, Code> {
        json(&self.inner.appointments_by_phone(CompanyId(company_id), &phone).map_err(to_js)?)
    }

    /// `{retellCallId | operator, appointmentId? | date + time?, reason?, confirmed?, force?}`:
    /// unconfirmed it only says what would happen (`needsConfirmation`).
    #[napi]
    pub fn cancel_appointment(&self, request: Value) -> Result<Value, Code> {
        json(&self.inner.cancel_appointment(&parse(Some(request))?).map_err(to_js)?)
    }

    /// As `cancelAppointment`, plus `newStart` or `newDate` + `newTime`.
    #[napi]
    pub fn reschedule_appointment(&self, request: Value) -> Result<Value, Code> {
        json(&self.inner.reschedule_appointment(&parse(Some(request))?).map_err(to_js)?)
    }

    /// `{retellCallId, customerName, reason?, phone?}` → the callback.
    #[napi]
    pub fn request_callback(&self, request: Value) -> Result<Value, Code> {
        json(&self.inner.request_callback(&parse(Some(request))?).map_err(to_js)?)
    }

    /// Callbacks, oldest first: `"open"` (default), `"done"` or `"all"`.
    #[napi]
    pub fn callback_list(&self, status: Option<String>) -> Result<Value, Code> {
        let status = match status.as_deref().unwrap_or("open") {
            "all" => None,
            s => Some(CallbackStatus::parse(s).ok_or_else(|| bad_argument(format!("unknown status {s:?}")))?),
        };
        json(&self.inner.callbacks(status).map_err(to_js)?)
    }

    /// Holds every Cal.com booking of the companies' event types as an
    /// appointment, off the event loop: `{companyId?, daysBack?, daysAhead?,
    /// calcomUrl?, requestsPerMinute?}`. Resolves the report; resumes where
    /// an interrupted one stopped.
    #[napi(ts_return_type = "Promise<Record<string, number>>")]
    pub fn pull_from_calcom(&self, options: Option<Value>) -> Result<AsyncTask<ReadTask>, Code> {
        Ok(AsyncTask::new(ReadTask { book: self.inner.clone(), options: parse(options)?, drift: false }))
    }

    /// Compares Cal.com's bookings with the appointments: resolves `{companies: [{companyId,
    /// missingLocally, missingInCalcom, differentStart, cancelledOneSide}], requests}`.
    #[napi(ts_return_type = "Promise<Record<string, unknown>>")]
    pub fn calcom_drift(&self, options: Option<Value>) -> Result<AsyncTask<ReadTask>, Code> {
        Ok(AsyncTask::new(ReadTask { book: self.inner.clone(), options: parse(options)?, drift: true }))
    }

    /// Marks a callback done; `by` names who called back (default `node`).
    #[napi]
    pub fn callback_done(&self, id: i64, by: Option<String>) -> Result<Value, Code> {
        let by = by.unwrap_or_else(|| "node".into());
        json(&self.inner.callback_done(CallbackId(id), &by).map_err(to_js)?)
    }
}

/// Hands a sync event to every JS listener without blocking the worker.
fn notify(listeners: &Listeners, event: &callbook::SyncEvent) {
    let value = serde_json::to_value(event).map(camel).unwrap_or(Value::Null);
    for listener in listeners.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        listener.call(value.clone(), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

pub struct BookTask {
    book: Callbook,
    request: callbook::BookingRequest,
}

impl Task for BookTask {
    type Output = Booking;
    type JsValue = Booking;

    fn compute(&mut self) -> napi::Result<Booking> {
        self.book.book(&self.request).map(Booking::from).map_err(to_js_async)
    }

    fn resolve(&mut self, _env: Env, output: Booking) -> napi::Result<Booking> {
        Ok(output)
    }
}

pub struct CheckTask {
    availability: Arc<Availability>,
    request: callbook::AvailabilityRequest,
}

impl Task for CheckTask {
    type Output = Slots;
    type JsValue = Slots;

    fn compute(&mut self) -> napi::Result<Slots> {
        self.availability.check(&self.request).map(Slots::from).map_err(to_js_async)
    }

    fn resolve(&mut self, _env: Env, output: Slots) -> napi::Result<Slots> {
        Ok(output)
    }
}

pub struct ReadTask {
    book: Callbook,
    options: CalcomReadOptions,
    drift: bool,
}

impl Task for ReadTask {
    type Output = Value;
    type JsValue = JsUnknown;

    fn compute(&mut self) -> napi::Result<Value> {
        let reader = CalcomReader::http(self.book.clone(), self.options.clone());
        // The rate limit waits in real time, on this libuv thread.
        let book = self.book.clone();
        let mut sleep = |until: chrono::DateTime<chrono::Utc>| {
            std::thread::sleep((until - book.now()).to_std().unwrap_or_default());
        };
        let report = match self.drift {
            true => reader.drift(&mut sleep).map(|r| serde_json::to_value(r).map(camel)),
            false => reader.pull(&mut sleep, &mut |_| {}).map(|r| serde_json::to_value(r).map(camel)),
        };
        report.map_err(to_js_async)?.map_err(|e| napi::Error::from_reason(e.to_string()))
    }

    fn resolve(&mut self, env: Env, output: Value) -> napi::Result<JsUnknown> {
        env.to_js_value(&output)
    }
}

pub struct AgentTask {
    agent: Arc<Agent>,
    body: Vec<u8>,
    signature: String,
    function: Option<String>,
}

impl Task for AgentTask {
    type Output = Value;
    type JsValue = JsUnknown;

    fn compute(&mut self) -> napi::Result<Value> {
        let reply = self.agent.answer(&self.body, &self.signature, self.function.as_deref());
        // The body goes to Retell as the agent made it: its keys are not renamed.
        let function = reply.function.map(|f| f.as_str());
        Ok(serde_json::json!({"httpStatus": reply.status, "body": reply.body, "function": function}))
    }

    fn resolve(&mut self, env: Env, output: Value) -> napi::Result<JsUnknown> {
        env.to_js_value(&output)
    }
}

pub struct StopTask {
    worker: Arc<Mutex<Option<WorkerHandle>>>,
}

impl Task for StopTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> napi::Result<()> {
        if let Some(handle) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            handle.stop();
        }
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> napi::Result<()> {
        Ok(())
    }
}

/// Free starts on one day (UTC RFC 3339).
#[napi(object)]
pub struct Slots {
    pub service_id: i64,
    pub date: String,
    pub time_zone: String,
    pub slots: Vec<String>,
    pub cached: bool,
    pub remembered: bool,
}

impl From<callbook::Slots> for Slots {
    fn from(s: callbook::Slots) -> Self {
        Slots {
            service_id: s.service_id.0,
            date: s.date.to_string(),
            time_zone: s.time_zone,
            slots: s.slots.iter().map(callbook::format_utc).collect(),
            cached: s.cached,
            remembered: s.remembered,
        }
    }
}

/// A booking request, as JS sends it (camelCase): `start`, or `date` and `time`.
#[napi(object)]
pub struct BookingRequest {
    pub retell_call_id: String,
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub service_id: Option<i64>,
    /// ISO 8601; or `date` and `time`.
    pub start: Option<String>,
    pub date: Option<String>,
    pub time: Option<String>,
}

impl From<BookingRequest> for callbook::BookingRequest {
    fn from(r: BookingRequest) -> Self {
        callbook::BookingRequest {
            retell_call_id: r.retell_call_id,
            customer_name: r.customer_name,
            customer_email: r.customer_email,
            service_id: r.service_id,
            start: r.start,
            date: r.date,
            time: r.time,
        }
    }
}

/// A confirmed booking.
#[napi(object)]
pub struct Booking {
    pub appointment_id: i64,
    pub customer_id: i64,
    pub anonymous: bool,
    pub customer_phone: String,
    /// UTC RFC 3339.
    pub starts_at: String,
    pub status: String,
    pub calcom_sync_status: String,
}

impl From<callbook::Booking> for Booking {
    fn from(b: callbook::Booking) -> Self {
        Booking {
            appointment_id: b.appointment_id.0,
            customer_id: b.customer_id.0,
            anonymous: b.anonymous,
            customer_phone: b.customer_phone,
            starts_at: callbook::format_utc(&b.starts_at),
            status: b.status.as_str().to_string(),
            calcom_sync_status: b.calcom_sync_status.as_str().to_string(),
        }
    }
}

/// An event type the fake Cal.com holds: `{id, lengthMinutes, seats?, timeZone?}`.
#[napi(object)]
pub struct FakeEventType {
    pub id: i64,
    /// Cal.com's own length; it may differ from the local service's.
    pub length_minutes: i64,
    pub seats: Option<u32>,
    /// The host's zone for its 09:00–17:00 hours (default Europe/Berlin).
    pub time_zone: Option<String>,
}

impl From<FakeEventType> for EventType {
    fn from(e: FakeEventType) -> Self {
        let hours = Schedule::hours(9, 17, e.time_zone.as_deref().unwrap_or("Europe/Berlin"));
        let event_type = EventType::new(e.id, e.length_minutes).schedule(hours);
        match e.seats {
            Some(seats) => event_type.seated(seats),
            None => event_type,
        }
    }
}

/// The loopback fake Cal.com, for tests and examples:
/// `new FakeCalcom([{id: 123, lengthMinutes: 30}])` (other event types answer 404, as Cal.com does).
#[napi(js_name = "FakeCalcom")]
pub struct JsFakeCalcom {
    fake: FakeCalcom,
}

#[napi]
impl JsFakeCalcom {
    #[napi(constructor)]
    pub fn new(event_types: Vec<FakeEventType>) -> Result<Self, Code> {
        let types: Vec<EventType> = event_types.into_iter().map(EventType::from).collect();
        let fake = FakeCalcom::with_event_types(Arc::new(callbook::SystemClock), &types).map_err(bad_argument)?;
        Ok(JsFakeCalcom { fake })
    }

    #[napi(getter)]
    pub fn url(&self) -> String {
        self.fake.url().to_string()
    }

    /// `{requests, bookings, liveBookings, creates, duplicatedKeys, rateLimited}`.
    #[napi]
    pub fn stats(&self) -> Result<Value, Code> {
        json(&self.fake.stats())
    }

    /// Answers the next request with `status` and Cal.com's error body.
    #[napi]
    pub fn fail_next(&self, status: u16, message: String) {
        self.fake.inject([Fault::Status(status, message)]);
    }

    #[napi]
    pub fn bookings(&self) -> Value {
        Value::Array(self.fake.bookings())
    }

    /// A booking made on Cal.com's own page (no callbook key): its uid.
    /// `start` is ISO 8601; `attendee` `{name, email?, phoneNumber?}`.
    #[napi]
    pub fn add_booking_elsewhere(&self, event_type: i64, start: String, attendee: Value) -> Result<String, Code> {
        let start = chrono::DateTime::parse_from_rfc3339(&start).map_err(bad_argument)?.with_timezone(&chrono::Utc);
        self.fake.add_booking_elsewhere(event_type, start, attendee).ok_or_else(|| bad_argument("unknown event type"))
    }
}

/// `{anonymous, reason}` for a caller id (`null` = no number).
#[napi(ts_return_type = "{ anonymous: boolean; reason: string | null }")]
pub fn detect_anonymous(from_number: Option<String>) -> Result<Value, Code> {
    json(&rules::anonymity(from_number.as_deref()))
}

/// The normalised address, or `null`.
#[napi]
pub fn normalize_email(text: Option<String>) -> Option<String> {
    rules::normalize_email(text.as_deref()).valid().map(str::to_string)
}

#[napi]
pub fn placeholder_phone(name: String, call_db_id: i64, unix_seconds: i64) -> String {
    rules::placeholder_phone(&name, callbook::CallDbId(call_db_id), unix_seconds)
}

/// Every problem `[{field, code, message}]` a booking would refuse.
#[napi]
pub fn validate_booking_request(request: Value) -> Result<Value, Code> {
    json(&rules::validate_booking_request(&parse(Some(request))?))
}

/// The Cal.com `POST /v2/bookings` body.
#[napi]
pub fn build_calcom_payload(input: Value) -> Result<Value, Code> {
    let input: callbook::calcom::PayloadInput = serde_json::from_value(input).map_err(bad_argument)?;
    callbook::calcom::calcom_payload(&input).map_err(to_js)
}

/// Checks `x-retell-signature` against the raw body (a string or a Buffer).
#[napi]
pub fn verify_retell_signature(
    body: napi::Either<String, napi::bindgen_prelude::Buffer>,
    header: String,
    api_key: String,
    now_ms: i64,
) -> bool {
    let bytes: &[u8] = match &body {
        napi::Either::A(text) => text.as_bytes(),
        napi::Either::B(buffer) => buffer,
    };
    callbook::retell::verify_retell_signature(bytes, &header, &api_key, now_ms)
}
