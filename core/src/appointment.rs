//! Appointments: the row a booking confirms, with the original schema's
//! fields, and its Cal.com sync status.

use crate::ids::{AppointmentId, BranchId, CallDbId, CompanyId, CustomerId, ServiceId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use str_enum;

str_enum!(
    /// The appointment's own status.
    AppointmentStatus { Confirmed => "confirmed", Cancelled => "cancelled" }
);

str_enum!(
    /// Where the appointment stands with Cal.com (`calcom_sync_status`).
    SyncStatus { Pending => "pending", Synced => "synced", Failed => "failed" }
);

str_enum!(
    /// Who made the appointment. `Calcom` ones are never pushed back (loop prevention).
    SyncOrigin { Retell => "retell", Calcom => "calcom" }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appointment {
    pub id: AppointmentId,
    pub customer_id: CustomerId,
    pub company_id: CompanyId,
    pub branch_id: BranchId,
    pub service_id: ServiceId,
    pub call_id: Option<CallDbId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: AppointmentStatus,
    pub calcom_sync_status: SyncStatus,
    pub sync_origin: SyncOrigin,
    /// `{customer_name, customer_email, customer_phone}` plus raw/flag fields.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub calcom_v2_booking_id: Option<i64>,
    pub calcom_v2_booking_uid: Option<String>,
    /// The seat, when the Cal.com event type is seated (a booking shared by several callers).
    pub calcom_v2_seat_uid: Option<String>,
    /// The `createdAt` of the last Cal.com webhook applied (older deliveries are stale).
    pub calcom_webhook_at: Option<DateTime<Utc>>,
    /// How often it was moved, and where it was before the last move.
    pub rescheduled_count: i64,
    pub previous_starts_at: Option<DateTime<Utc>>,
    pub sync_error_code: Option<String>,
    pub sync_error_message: Option<String>,
    pub sync_attempt_count: i64,
    pub sync_verified_at: Option<DateTime<Utc>>,
    pub requires_manual_review: bool,
    pub manual_review_flagged_at: Option<DateTime<Utc>>,
    /// Why a person should look at it (`email_conflict`, `sync_failed`).
    pub review_reason: Option<String>,
    pub review_resolved_at: Option<DateTime<Utc>>,
    pub review_resolved_by: Option<String>,
    pub review_note: Option<String>,
    /// (call, service, start): the same booking twice returns this appointment.
    pub idempotency_key: String,
    /// Microseconds from core taking the booking (`created_at`) to its
    /// insert, waiting for the writer included; the commit is not. `None`
    /// for appointments booked before it was kept (schema v8), and for those
    /// not booked through core (held from Cal.com).
    pub booking_latency_us: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

str_enum!(
    /// What a change did to an appointment.
    ChangeKind { Cancel => "cancel", Reschedule => "reschedule" }
);

/// Who changed an appointment: the caller on a call, an operator, or Cal.com
/// (its webhook).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ChangedBy {
    Call { call_id: CallDbId },
    Operator { name: String },
    Calcom,
}

/// One cancel or move of an appointment (`appointment_changes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentChange {
    pub appointment_id: AppointmentId,
    pub company_id: CompanyId,
    pub kind: ChangeKind,
    pub from_starts_at: DateTime<Utc>,
    /// The new start of a reschedule.
    pub to_starts_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub by: ChangedBy,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Cuts an error message to at most 255 chars, on a char boundary.
pub fn cut_message(message: &str) -> String {
    message.chars().take(255).collect()
}
