//! Customers and how a caller becomes one. The rules here are the security
//! boundary: an anonymous caller always gets a new customer and is never
//! matched by name or email; a known caller is matched by (company, E.164 phone).

use crate::caller::{AnonymityReason, Caller};
use crate::email::EmailInput;
use crate::ids::{CallDbId, CompanyId, CustomerId};
use crate::store::Tx;
use crate::Result;
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// Where a customer came from (the original schema's `source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerSource {
    RetellWebhook,
    RetellWebhookAnonymous,
}

impl CustomerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerSource::RetellWebhook => "retell_webhook",
            CustomerSource::RetellWebhookAnonymous => "retell_webhook_anonymous",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "retell_webhook" => Some(CustomerSource::RetellWebhook),
            "retell_webhook_anonymous" => Some(CustomerSource::RetellWebhookAnonymous),
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

/// What customer resolution decided for one booking.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub customer: Customer,
    /// The caller gave an email that belongs to another customer of the company.
    pub email_conflict: bool,
    /// A known customer's email went from NULL to a real address in this booking.
    pub email_set: bool,
}

/// Finds or creates the customer for a caller, inside the booking transaction.
pub(crate) fn resolve(
    tx: &mut dyn Tx,
    company_id: CompanyId,
    call_db_id: CallDbId,
    caller: &Caller,
    name: &str,
    email: &EmailInput,
    now: DateTime<Utc>,
) -> Result<Resolved> {
    let given = email.valid();
    let (phone, source, anonymity_reason) = match caller {
        Caller::Known(phone) => {
            if let Some(existing) = tx.customer_by_phone(company_id, phone)? {
                return reuse(tx, existing, given, now);
            }
            (phone.clone(), CustomerSource::RetellWebhook, None)
        }
        // Never matched by anything: always a new customer.
        Caller::Anonymous(reason) => (
            placeholder_phone(name, call_db_id, now.timestamp()),
            CustomerSource::RetellWebhookAnonymous,
            Some(*reason),
        ),
    };
    // The email is only stored when nobody in the company has it.
    let email_conflict = match given {
        Some(e) => tx.customer_id_by_email(company_id, e)?.is_some(),
        None => false,
    };
    let new = NewCustomer {
        company_id,
        name: name.to_string(),
        email: given.filter(|_| !email_conflict).map(str::to_string),
        phone,
        source,
        anonymity_reason,
        now,
    };
    Ok(Resolved { customer: insert(tx, new)?, email_conflict, email_set: false })
}

/// A known customer calls again: a first email is set if it is free in the company.
fn reuse(tx: &mut dyn Tx, mut existing: Customer, given: Option<&str>, now: DateTime<Utc>) -> Result<Resolved> {
    let (Some(e), None) = (given, existing.email.as_ref()) else {
        return Ok(Resolved { customer: existing, email_conflict: false, email_set: false });
    };
    if let Some(other) = tx.customer_id_by_email(existing.company_id, e)? {
        return Ok(Resolved { email_conflict: other != existing.id, customer: existing, email_set: false });
    }
    tx.set_customer_email(existing.company_id, existing.id, e, now)?;
    existing.email = Some(e.to_string());
    existing.updated_at = now;
    Ok(Resolved { customer: existing, email_conflict: false, email_set: true })
}

fn insert(tx: &mut dyn Tx, new: NewCustomer) -> Result<Customer> {
    let id = tx.insert_customer(&new)?;
    Ok(Customer {
        id,
        company_id: new.company_id,
        name: new.name,
        email: new.email,
        phone: new.phone,
        source: new.source,
        anonymity_reason: new.anonymity_reason,
        created_at: new.now,
        updated_at: new.now,
    })
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
