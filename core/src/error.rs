//! The one error type of callbook. Every variant has a stable snake_case
//! [`Error::code`] that the CLI, the Node addon and the WASM module pass on
//! unchanged, and a [`Error::kind`] that tells a caller whose fault it was.

use serde::Serialize;

/// One problem found in a booking request: which field, a stable code, and a
/// sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Problem {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        Problem { field: field.into(), code: code.into(), message: message.into() }
    }
}

/// Whose fault an error is; the CLI turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed (bad request, bad import file): exit code 2.
    Input,
    /// The input is well formed but a domain rule refuses it: exit code 3.
    Rejected,
    /// Storage, I/O or a bug: exit code 1.
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The booking request has one or more problems; the first one names the error.
    #[error("{}", .0.first().map(|p| p.message.as_str()).unwrap_or("invalid request"))]
    Invalid(Vec<Problem>),
    #[error("no call with Retell id {0:?} is registered")]
    CallNotFound(String),
    #[error("call {0:?} has no company")]
    CallMissingCompany(String),
    #[error("call {0:?} has no branch")]
    CallMissingBranch(String),
    #[error("branch {branch} does not belong to company {company}")]
    BranchNotInCompany { branch: i64, company: i64 },
    #[error("service {service} does not belong to company {company}")]
    ServiceNotInCompany { service: i64, company: i64 },
    #[error("company {0} not found")]
    CompanyNotFound(i64),
    #[error("branch {0} not found")]
    BranchNotFound(i64),
    #[error("service {0} not found")]
    ServiceNotFound(i64),
    #[error("no branch has the dialled number {0:?}")]
    BranchNotFoundForNumber(String),
    #[error("the requested start {0} is in the past")]
    StartInPast(String),
    #[error("the start time does not exist in time zone {0} (clock change)")]
    NonexistentLocalTime(String),
    #[error("unknown time zone {0:?}")]
    UnknownTimezone(String),
    #[error("the company has more than one service: name one")]
    ServiceRequired,
    #[error("invalid import data: {0}")]
    InvalidImport(String),
    #[error("appointment {0} not found")]
    AppointmentNotFound(i64),
    #[error("appointment {0} is not on the manual-review list")]
    NotInReview(i64),
    #[error("customer {0} not found")]
    CustomerNotFound(i64),
    #[error("customer {0} already has an email")]
    EmailAlreadySet(i64),
    #[error("another customer of the company has this email")]
    EmailTaken,
    /// The start is not free: outside the answer this call was given, or
    /// the service's capacity is reached. Up to 3 nearest free starts.
    #[error("that time is not available{}", alternatives_text(.alternatives))]
    SlotUnavailable { alternatives: Vec<chrono::DateTime<chrono::Utc>> },
    #[error("service {0} has no Cal.com event type")]
    ServiceNotInCalcom(i64),
    /// Cal.com could not be asked (down, refusing, or no API key).
    #[error("Cal.com cannot be reached: {0}")]
    CalcomUnavailable(String),
    /// A webhook's signature is missing, wrong or stale.
    #[error("invalid or stale signature")]
    BadSignature,
    /// The caller is not the appointment's customer (another or a withheld
    /// number): nothing is revealed or changed; offer a callback.
    #[error("the caller cannot be verified for this appointment")]
    CallerNotVerified,
    /// Several appointments match: say which (their ids, soonest first).
    #[error("several appointments match: say which one")]
    MultipleFound { appointments: Vec<crate::ids::AppointmentId> },
    /// The policy's notice for cancelling has passed (`deadline`: the last moment it was allowed).
    #[error("too late to cancel: it was possible until {}", crate::utc::format_utc(.deadline))]
    TooLateToCancel { deadline: chrono::DateTime<chrono::Utc> },
    #[error("too late to move it: it was possible until {}", crate::utc::format_utc(.deadline))]
    TooLateToReschedule { deadline: chrono::DateTime<chrono::Utc> },
    #[error("it was moved {max} time(s) already, the most allowed")]
    RescheduleLimitReached { max: i64 },
    /// A cancelled appointment cannot be moved.
    #[error("appointment {0} is cancelled")]
    AppointmentCancelled(i64),
    #[error("callback {0} not found")]
    CallbackNotFound(i64),
    /// The company has no Cal.com webhook secret, so no delivery for it can be verified.
    #[error("company {0} has no Cal.com webhook secret")]
    WebhookNotConfigured(i64),
    /// A delivery that names no company while several exist (`POST /calcom/webhook/{company_id}`).
    #[error("this install has several companies: deliver to the company's own webhook URL")]
    TenantRequired,
    /// `callbook migrate` into a database that holds rows (without `append`): the first table holding one.
    #[error(
        "the target database is not empty (table {table} holds rows); migrate into an empty database or pass --append"
    )]
    TargetNotEmpty { table: String },
    /// `callbook migrate --append`: a row of the source has a key (its id,
    /// or another unique key) already taken in the target; nothing was written.
    #[error("a row of table {table} has a key already taken in the target (ids are kept); nothing was written")]
    MigrateConflict { table: String },
    /// `callbook migrate`: a table read back from the target differs from
    /// the source (row count or checksum); nothing was committed.
    #[error("table {table} differs after the copy: {detail}; nothing was committed")]
    MigrateMismatch { table: String, detail: String },
    /// A database or file problem. The text never holds personal data or secrets.
    #[error("storage error: {0}")]
    Storage(String),
    /// The database server refused the transaction for a moment (a deadlock,
    /// a serialization failure, a lock wait) on every one of its retries:
    /// nothing was written; try again shortly.
    #[error("the database is busy, nothing was written; try again: {0}")]
    StorageBusy(String),
    /// The database server cannot be reached (down, restarting, the
    /// connection lost). A write whose connection went during its COMMIT
    /// may or may not have been kept: bookings are idempotent, retry them.
    #[error("the database cannot be reached: {0}")]
    StorageUnavailable(String),
    /// A bug: a write panicked (it was rolled back; the others went on).
    #[error("internal error: {0}")]
    Internal(String),
    /// A fault injected into the in-memory store by a test.
    #[cfg(feature = "fault-injection")]
    #[error("injected fault: {0}")]
    InjectedFault(String),
}

fn alternatives_text(list: &[chrono::DateTime<chrono::Utc>]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let list: Vec<String> = list.iter().map(crate::utc::format_utc).collect();
    format!("; free nearby: {}", list.join(", "))
}

impl Error {
    /// The nearest free starts, for `slot_unavailable`.
    pub fn alternatives(&self) -> &[chrono::DateTime<chrono::Utc>] {
        match self {
            Error::SlotUnavailable { alternatives } => alternatives,
            _ => &[],
        }
    }

    /// The stable snake_case code of this error.
    pub fn code(&self) -> &str {
        match self {
            Error::Invalid(problems) => problems.first().map(|p| p.code.as_str()).unwrap_or("invalid_request"),
            Error::CallNotFound(_) => "call_not_found",
            Error::CallMissingCompany(_) => "call_missing_company",
            Error::CallMissingBranch(_) => "call_missing_branch",
            Error::BranchNotInCompany { .. } => "branch_not_in_company",
            Error::ServiceNotInCompany { .. } => "service_not_in_company",
            Error::CompanyNotFound(_) => "company_not_found",
            Error::BranchNotFound(_) => "branch_not_found",
            Error::ServiceNotFound(_) => "service_not_found",
            Error::BranchNotFoundForNumber(_) => "branch_not_found_for_number",
            Error::StartInPast(_) => "start_in_past",
            Error::NonexistentLocalTime(_) => "nonexistent_local_time",
            Error::UnknownTimezone(_) => "unknown_timezone",
            Error::ServiceRequired => "service_required",
            Error::InvalidImport(_) => "invalid_import",
            Error::AppointmentNotFound(_) => "appointment_not_found",
            Error::NotInReview(_) => "not_in_review",
            Error::CustomerNotFound(_) => "customer_not_found",
            Error::EmailAlreadySet(_) => "email_already_set",
            Error::EmailTaken => "email_taken",
            Error::BadSignature => "bad_signature",
            Error::WebhookNotConfigured(_) => "webhook_not_configured",
            Error::CallerNotVerified => "caller_not_verified",
            Error::MultipleFound { .. } => "multiple_found",
            Error::TooLateToCancel { .. } => "too_late_to_cancel",
            Error::TooLateToReschedule { .. } => "too_late_to_reschedule",
            Error::RescheduleLimitReached { .. } => "reschedule_limit_reached",
            Error::AppointmentCancelled(_) => "appointment_cancelled",
            Error::CallbackNotFound(_) => "callback_not_found",
            Error::TenantRequired => "tenant_required",
            Error::SlotUnavailable { .. } => "slot_unavailable",
            Error::ServiceNotInCalcom(_) => "service_not_in_calcom",
            Error::CalcomUnavailable(_) => "calcom_unavailable",
            Error::TargetNotEmpty { .. } => "target_not_empty",
            Error::MigrateConflict { .. } => "migrate_conflict",
            Error::MigrateMismatch { .. } => "migrate_mismatch",
            Error::Storage(_) => "storage",
            Error::StorageBusy(_) => "storage_busy",
            Error::StorageUnavailable(_) => "storage_unavailable",
            Error::Internal(_) => "internal",
            #[cfg(feature = "fault-injection")]
            Error::InjectedFault(_) => "injected_fault",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) | Error::InvalidImport(_) | Error::UnknownTimezone(_) => ErrorKind::Input,
            Error::Storage(_)
            | Error::StorageBusy(_)
            | Error::StorageUnavailable(_)
            | Error::Internal(_)
            | Error::CalcomUnavailable(_)
            | Error::MigrateMismatch { .. } => ErrorKind::Internal,
            #[cfg(feature = "fault-injection")]
            Error::InjectedFault(_) => ErrorKind::Internal,
            _ => ErrorKind::Rejected,
        }
    }

    /// The error as every interface writes it (the CLI's `--json`, the C ABI,
    /// the bindings): `{code, message}`, plus `alternatives` (UTC RFC 3339)
    /// for `slot_unavailable` and `problems` when a request had several.
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::json!({"code": self.code(), "message": self.to_string()});
        if let Error::SlotUnavailable { alternatives } = self {
            out["alternatives"] = alternatives.iter().map(crate::utc::format_utc).collect();
        }
        match self {
            Error::MultipleFound { appointments } => out["appointments"] = serde_json::json!(appointments),
            Error::TargetNotEmpty { table }
            | Error::MigrateConflict { table }
            | Error::MigrateMismatch { table, .. } => {
                out["table"] = table.as_str().into();
            }
            Error::TooLateToCancel { deadline } | Error::TooLateToReschedule { deadline } => {
                out["deadline"] = crate::utc::format_utc(deadline).into();
            }
            _ => {}
        }
        if let Error::Invalid(problems) = self {
            if problems.len() > 1 {
                out["problems"] = serde_json::to_value(problems).unwrap_or_default();
            }
        }
        out
    }

    /// Every problem: the list for [`Error::Invalid`], else one built from this error.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Error::Invalid(problems) => problems.clone(),
            other => vec![Problem::new("", other.code(), other.to_string())],
        }
    }

    pub(crate) fn invalid(field: &str, code: &str, message: impl Into<String>) -> Self {
        Error::Invalid(vec![Problem::new(field, code, message)])
    }

    /// `text` in `field` may hold at most `max` characters, else `invalid_argument`.
    pub(crate) fn check_length(field: &str, text: &str, max: usize) -> Result<(), Self> {
        match too_long(field, text, max) {
            Some(problem) => Err(Error::Invalid(vec![problem])),
            None => Ok(()),
        }
    }
}

/// How long outside text may be: a Retell call id, a person's name, an
/// email (RFC 5321), an operator's note. Longer is refused, not stored.
pub(crate) const MAX_CALL_ID: usize = 128;
pub(crate) const MAX_NAME: usize = 200;
pub(crate) const MAX_EMAIL: usize = 254;
pub(crate) const MAX_NOTE: usize = 2000;

/// The problem of a text longer than `max` characters.
pub(crate) fn too_long(field: &str, text: &str, max: usize) -> Option<Problem> {
    (text.chars().count() > max)
        .then(|| Problem::new(field, "invalid_argument", format!("{field} is longer than {max} characters")))
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // rusqlite messages name tables and constraints, never bound values.
        Error::Storage(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Storage(format!("json: {e}"))
    }
}
