//! callbook turns a call with a voice agent into a confirmed appointment in
//! microseconds, then syncs it to Cal.com in the background.
//!
//! ```
//! use callbook::store::MemoryStore;
//! use callbook::{BookingRequest, Callbook, ImportData};
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
mod backfill;
mod booking;
mod breaker;
pub mod calcom;
mod calcom_booking;
mod calcom_webhook;
mod call;
mod callback;
mod callbook;
mod caller;
mod change;
mod clock;
mod company;
mod config;
mod customer;
mod email;
mod error;
mod health;
mod ids;
mod import;
mod journey;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod migrate;
mod queue;
mod ratelimit;
pub mod retell;
mod review;
mod slots;
mod start;
mod stats;
pub mod store;
mod sync;
mod utc;

// The façade: open a database, book, check availability, sync, answer the
// agent and Cal.com's webhooks, review; the requests and the answers.
pub use agent::{Agent, AgentReply};
pub use appointment::{
    Appointment, AppointmentChange, AppointmentStatus, ChangeKind, ChangedBy, SyncOrigin, SyncStatus,
};
pub use availability::{Availability, AvailabilityConfig, AvailabilityRequest, Slots};
pub use backfill::{CalcomReadOptions, CalcomReader, CompanyDrift, DriftReport, PullProgress, PullReport};
pub use booking::{Booking, BookingRequest};
pub use calcom_webhook::WebhookOutcome;
pub use call::{Call, NewCall};
pub use callback::{Callback, CallbackStatus};
pub use callbook::Callbook;
pub use change::{CallContext, CallbackRequest, Change, ChangeRequest, ServiceInfo};
pub use clock::{Clock, ManualClock, SystemClock};
pub use company::{Branch, ChangePolicy, Company, Secret, Service};
pub use config::Config;
pub use customer::{Customer, CustomerSource};
pub use error::{Error, ErrorKind, Problem};
pub use health::{Bucket, CompanyHealth, EndpointBreaker, Figures, Health, Latency, Targets, Window, TARGET_NAMES};
pub use ids::{AppointmentId, BranchId, CallDbId, CallId, CallbackId, CompanyId, CustomerId, JobId, ServiceId};
pub use import::{ImportData, ImportSummary};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use migrate::{
    checksums, migrate, migrated_tables, MigrateOptions, MigratePhase, MigrateProgress, MigrateReport, TableChecksum,
};
pub use queue::{Job, JobKind, JobState, Policy};
pub use stats::Stats;
pub use store::{DriftCounts, OpenOptions, Synchronous};
pub use sync::{RunReport, SyncEvent, SyncOutcome, Worker, WorkerConfig, WorkerHandle};
pub use utc::format_utc;

/// The domain rules as pure functions: no database, no network, no clock of
/// their own (the WASM module exposes them to browsers).
pub mod rules {
    pub use crate::agent::{
        speak_booking, speak_callback, speak_cancel_question, speak_cancelled, speak_found, speak_move_question,
        speak_moved, speak_refusal, speak_slots, speak_time, speak_times, speak_today, speak_which, Language,
    };
    pub use crate::appointment::cut_message;
    pub use crate::booking::{idempotency_key, validate_booking_request};
    pub use crate::breaker::{
        admit, record as record_breaker, Admission, Breaker, BreakerPolicy, BreakerState, Outcome,
    };
    pub use crate::caller::{
        anonymity, classify_caller, detect_anonymous, is_valid_phone, normalize_phone, region_of, Anonymity,
        AnonymityReason, Caller,
    };
    pub use crate::change::{caller_may_change, check_cancel, check_reschedule, deadline, pick};
    pub use crate::customer::{placeholder_phone, NewCustomer};
    pub use crate::email::{is_valid_email, normalize_email, EmailInput};
    pub use crate::health::percentile;
    pub use crate::queue::{is_claimable, retry_delay, transition, JobEvent, JobSnapshot, NewJob, Refusal};
    pub use crate::ratelimit::{
        block as block_rate, observe as observe_rate, take as take_rate, take_up_to as take_rate_up_to, RateWindow,
    };
    pub use crate::slots::{free_starts, nearest};
    pub use crate::start::{parse_date, parse_time, parse_timezone, resolve_start, StartSpec};
    pub use crate::sync::{RateLimiter, ATTENDEES_PER_MINUTE};
}

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
