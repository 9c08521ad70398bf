//! Customers: who booked, their phone (E.164, or the placeholder of an
//! anonymous caller) and where they came from. How a caller becomes one is
//! the booking's rule (`booking::resolve_customer`).

use crate::caller::AnonymityReason;
use crate::ids::{CallDbId, CompanyId, CustomerId};
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Where a customer came from (the original schema's `source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerSource {
    RetellWebhook,
    RetellWebhookAnonymous,
    /// An attendee of a booking made in Cal.com (its webhook, or a backfill).
    Calcom,
}

impl CustomerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerSource::RetellWebhook => "retell_webhook",
            CustomerSource::RetellWebhookAnonymous => "retell_webhook_anonymous",
            CustomerSource::Calcom => "calcom",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "retell_webhook" => Some(CustomerSource::RetellWebhook),
            "retell_webhook_anonymous" => Some(CustomerSource::RetellWebhookAnonymous),
            "calcom" => Some(CustomerSource::Calcom),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub company_id: CompanyId,
    pub name: String,
    pub email: Option<String>,
    /// E.164 for known callers, the placeholder for anonymous ones.
    pub phone: String,
    pub source: CustomerSource,
    pub anonymity_reason: Option<AnonymityReason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Customer {
    pub fn is_anonymous(&self) -> bool {
        self.source == CustomerSource::RetellWebhookAnonymous
    }
}

/// A customer to insert; the store assigns the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    pub company_id: CompanyId,
    pub name: String,
    pub email: Option<String>,
    pub phone: String,
    pub source: CustomerSource,
    pub anonymity_reason: Option<AnonymityReason>,
    pub now: DateTime<Utc>,
}

/// The placeholder phone of an anonymous customer, byte-compatible with the
/// original PHP: `anonymous_<unix seconds>_<md5(name . call_db_id)[0..8]>`.
pub fn placeholder_phone(name: &str, call_db_id: CallDbId, unix_seconds: i64) -> String {
    let digest = Md5::digest(format!("{name}{}", call_db_id.0).as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("anonymous_{unix_seconds}_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_matches_php() {
        // Known md5 values live in tests/vectors/placeholder_phone.json.
        let p = placeholder_phone("Jane Doe", CallDbId(42), 1_700_000_000);
        assert!(p.starts_with("anonymous_1700000000_"));
        assert_eq!(p.len(), "anonymous_1700000000_".len() + 8);
    }
}
