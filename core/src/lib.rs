//! callbook turns a call with a voice agent into a confirmed appointment in
//! microseconds, then syncs it to Cal.com in the background.
//!
//! ```
//! use callbook::{BookingRequest, Callbook, ImportData, MemoryStore};
//! use std::sync::Arc;
//!
//! let book = Callbook::new(Arc::new(MemoryStore::new()));
//! book.import(&ImportData::from_json(r#"{
//!     "companies": [{"id": 1, "name": "Salon Berlin"}],
//!     "branches": [{"id": 1, "company_id": 1, "name": "Mitte", "phone_number": "+493012345678"}],
//!     "services": [{"id": 1, "company_id": 1, "name": "Haircut", "duration_minutes": 30}],
//!     "calls": [{"retell_call_id": "call_1", "company_id": 1, "branch_id": 1, "from_number": "anonymous"}]
//! }"#)?)?;
//! let booking = book.book(&BookingRequest {
//!     retell_call_id: "call_1".into(),
//!     customer_name: "Jane Doe".into(),
//!     date: Some("tomorrow".into()),
//!     time: Some("14:30".into()),
//!     ..Default::default()
//! })?;
//! assert!(booking.anonymous);
//! assert!(booking.customer_phone.starts_with("anonymous_"));
//! # Ok::<(), callbook::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod agent;
mod appointment;
mod availability;
mod booking;
mod breaker;
mod calcom;
#[cfg(feature = "fake-calcom")]
mod calcom_fake;
mod calcom_webhook;
mod call;
mod callbook;
mod caller;
mod clock;
mod company;
mod customer;
mod email;
mod error;
mod ids;
mod import;
mod queue;
mod retell;
mod review;
mod start;
mod stats;
mod store;
mod sync;

pub use agent::{
    booking_request_from_args, parse_function_call, speak_booking, speak_refusal, speak_slots, speak_time, speak_times,
    Agent, AgentFunction, AgentReply, FunctionCall, Language,
};
pub use appointment::{cut_message, Appointment, AppointmentStatus, SyncOrigin, SyncStatus};
pub use availability::{free_starts, nearest, Availability, AvailabilityConfig, AvailabilityRequest, Slots};
pub use booking::{format_utc, idempotency_key, validate_booking_request, Booking, BookingRequest};
pub use breaker::{admit, record as record_breaker, Admission, Breaker, BreakerPolicy, BreakerState, Outcome};
#[cfg(feature = "http")]
pub use calcom::HttpCalcom;
pub use calcom::{
    build_create_payload, calcom_payload, classify, default_email_fallback, error_message, is_booker_limit,
    is_slot_taken, key_match, parse_booking_page, parse_slots, rate_limit_headers, retry_after, sendable_phone,
    ApiFailure, BookingPage, BookingQuery, CalAttendee, CalBooking, CalcomApi, Endpoint, ErrorClass, KeyMatch,
    NewAttendee, PayloadInput, RateLimitHeaders, SlotAnswer, SlotQuery, ATTENDEES_THROTTLER, BOOKINGS_API_VERSION,
    DEFAULT_BASE_URL, DEFAULT_THROTTLER, METADATA_KEY, SLOTS_API_VERSION,
};
#[cfg(feature = "fake-calcom")]
pub use calcom_fake::{EventType, FakeCalcom, FakeStats, Fault, Recorded, Schedule};
pub use calcom_webhook::{parse_calcom_webhook, sign_calcom, verify_calcom_signature, CalcomWebhook, WebhookOutcome};
pub use call::{Call, NewCall};
pub use callbook::{Callbook, Config};
pub use caller::{
    classify_caller, detect_anonymous, is_valid_phone, normalize_phone, region_of, AnonymityReason, Caller,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use company::{Branch, Company, Secret, Service};
pub use customer::{placeholder_phone, Customer, CustomerSource, NewCustomer};
pub use email::{is_valid_email, normalize_email, EmailInput};
pub use error::{Error, ErrorKind, Problem};
pub use ids::{AppointmentId, BranchId, CallDbId, CallId, CompanyId, CustomerId, JobId, ServiceId};
pub use import::{ImportData, ImportSummary};
pub use queue::{
    is_claimable, retry_delay, transition, Job, JobEvent, JobKind, JobSnapshot, JobState, NewJob, Policy, Refusal,
};
pub use retell::{sign_retell, verify_retell_signature, MAX_SKEW_MS};
pub use start::{parse_date, parse_time, parse_timezone, resolve_start, StartSpec};
pub use stats::Stats;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use store::ServerStore;
pub use store::{
    is_server_url, read, write, CalcomChange, Counts, MemoryStore, NewAppointment, Offered, Store, SyncFailure, Tx,
    WriteFn,
};
#[cfg(feature = "sqlite")]
pub use store::{open_store, Checkpoint, SqliteOptions, SqliteStore, Synchronous, WriterStats};
pub use sync::{RateLimiter, RunReport, SyncEvent, SyncOutcome, Worker, WorkerConfig, ATTENDEES_PER_MINUTE};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The storage and transport features this build of the crate has, in the
/// order `callbook --version` prints them (`fake-calcom`, a test aid, is not
/// listed).
pub const FEATURES: &[&str] = &[
    #[cfg(feature = "sqlite")]
    "sqlite",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "mysql")]
    "mysql",
    #[cfg(feature = "http")]
    "http",
];
