//! The tenant side of the directory: companies, their branches (found by the
//! number a caller dialled) and their bookable services. Loaded by `import`.

use crate::ids::{BranchId, CompanyId, ServiceId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A secret (a Cal.com API key): kept out of `Debug` output, logs and errors.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// Does `given` equal the secret? Compared in constant time (over
    /// SHA-256 digests, so the length leaks nothing either).
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        let (a, b) = (Sha256::digest(self.0.as_bytes()), Sha256::digest(given.as_bytes()));
        !self.0.is_empty() && a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Company {
    pub id: CompanyId,
    pub name: String,
    #[serde(default)]
    pub calcom_api_key: Option<Secret>,
    /// Cal.com API base for this company; `None` uses the worker's (`https://api.cal.com`).
    #[serde(default)]
    pub calcom_api_base: Option<String>,
    /// The attendee email sent for a customer without one, with
    /// `{appointment}` replaced by the appointment id (e.g.
    /// `noreply+{appointment}@salon.example`): every caller then has an
    /// address of their own, which an event type's per-booker limit needs.
    /// `None` uses the worker's fallback (`noreply@example.com`).
    #[serde(default)]
    pub calcom_email_fallback: Option<String>,
    /// The secret of this company's Cal.com webhook (`POST
    /// /calcom/webhook/{company_id}`): Cal.com configures one per user, team
    /// or event type, so each tenant has its own.
    #[serde(default)]
    pub calcom_webhook_secret: Option<Secret>,
    /// Limits on what callers change by phone (a service may override each).
    #[serde(default)]
    pub policy: ChangePolicy,
}

/// Limits on cancelling and moving an appointment by phone; `None` is no
/// limit. Operators may go past them (`--force`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePolicy {
    #[serde(default)]
    pub min_cancel_notice_hours: Option<i64>,
    #[serde(default)]
    pub min_reschedule_notice_hours: Option<i64>,
    #[serde(default)]
    pub max_reschedules: Option<i64>,
}

impl ChangePolicy {
    /// This policy, each limit it leaves open taken from `fallback` (a
    /// service's policy over its company's).
    pub fn over(self, fallback: ChangePolicy) -> ChangePolicy {
        ChangePolicy {
            min_cancel_notice_hours: self.min_cancel_notice_hours.or(fallback.min_cancel_notice_hours),
            min_reschedule_notice_hours: self.min_reschedule_notice_hours.or(fallback.min_reschedule_notice_hours),
            max_reschedules: self.max_reschedules.or(fallback.max_reschedules),
        }
    }
}

impl Company {
    /// A company with a name and nothing configured yet.
    pub fn new(id: CompanyId, name: impl Into<String>) -> Company {
        Company {
            id,
            name: name.into(),
            calcom_api_key: None,
            calcom_api_base: None,
            calcom_email_fallback: None,
            calcom_webhook_secret: None,
            policy: ChangePolicy::default(),
        }
    }

    /// The fallback attendee email for one appointment, from the template.
    pub fn fallback_email(&self, appointment: crate::ids::AppointmentId) -> Option<String> {
        let template = self.calcom_email_fallback.as_deref()?.trim();
        (!template.is_empty()).then(|| template.replace("{appointment}", &appointment.0.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub id: BranchId,
    pub company_id: CompanyId,
    pub name: String,
    /// IANA zone; local dates and times are read in it.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// ISO 3166 alpha-2; the region for callers' national numbers.
    #[serde(default)]
    pub country: Option<String>,
    /// E.164; a call's `to_number` finds its branch by it.
    #[serde(default)]
    pub phone_number: Option<String>,
}

pub(crate) fn default_timezone() -> String {
    "Europe/Berlin".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    pub company_id: CompanyId,
    pub name: String,
    #[serde(default)]
    pub calcom_event_type_id: Option<i64>,
    pub duration_minutes: i64,
    /// Appointments that may share one start; `None` leaves it to Cal.com.
    #[serde(default)]
    pub capacity: Option<i64>,
    /// Overrides the company's limits, each on its own.
    #[serde(default)]
    pub policy: ChangePolicy,
}
