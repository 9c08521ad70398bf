//! Bookings made in Cal.com (its booking page, staff, a system before
//! callbook) held as appointments: from a `BOOKING_CREATED` webhook or a
//! backfill. The event type names the service; the attendee's phone (in
//! the company's region) or email names the customer, else one is created
//! (source `calcom`; without either, with a placeholder phone like a
//! withheld caller's). Such an appointment is `sync_origin = calcom` and
//! synced, so it is never pushed back; callbook's own bookings echoing back
//! (their `callbook_key`) change nothing.

use crate::booking::branch_region;
use crate::calcom::{CalBooking, METADATA_KEY};
use crate::caller::{classify_caller, Caller};
use crate::config::Config;
use crate::customer::{placeholder_phone, CustomerSource, NewCustomer};
use crate::email::normalize_email;
use crate::error::MAX_NAME;
use crate::ids::{AppointmentId, CallDbId, CompanyId};
use crate::store::{NewAppointment, Tx};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// A booking as Cal.com describes it: what callbook needs to hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignBooking {
    pub uid: String,
    pub booking_id: Option<i64>,
    pub event_type_id: Option<i64>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Cancelled or rejected in Cal.com.
    pub cancelled: bool,
    pub attendee_name: Option<String>,
    pub attendee_email: Option<String>,
    pub attendee_phone: Option<String>,
    /// `metadata.callbook_key`: a booking callbook made itself.
    pub callbook_key: Option<String>,
}

impl ForeignBooking {
    /// A booking `GET /v2/bookings` listed; `None` without a readable start and end.
    pub fn from_listed(b: &CalBooking) -> Option<ForeignBooking> {
        let time = |t: &Option<String>| {
            t.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
        };
        let first = b.attendees.first();
        let key = key_of(b.metadata.as_ref()).or_else(|| b.attendees.iter().find_map(|a| key_of(a.metadata.as_ref())));
        Some(ForeignBooking {
            uid: b.uid.clone(),
            booking_id: Some(b.id),
            event_type_id: b.event_type_id,
            start: time(&b.start)?,
            end: time(&b.end)?,
            cancelled: matches!(b.status.as_deref(), Some("cancelled" | "rejected")),
            attendee_name: first.and_then(|a| a.name.clone()),
            attendee_email: first.and_then(|a| a.email.clone()),
            attendee_phone: first.and_then(|a| a.phone_number.clone()),
            callbook_key: key.map(str::to_string),
        })
    }
}

/// The callbook key in a booking's (or a seat's) metadata.
fn key_of(metadata: Option<&Map<String, Value>>) -> Option<&str> {
    metadata.and_then(|m| m.get(METADATA_KEY)).and_then(Value::as_str)
}

/// What holding a Cal.com booking did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// A new appointment.
    Created(AppointmentId),
    /// An appointment holds this booking already (a redelivery, a second backfill).
    Known(AppointmentId),
    /// callbook made it (its key): the appointment that made it, if it is this company's.
    Ours(Option<AppointmentId>),
    /// Cancelled in Cal.com and never held: nothing to hold.
    Cancelled,
    /// No one service of the company books this event type (none, or several).
    Unmapped { event_type_id: Option<i64> },
    /// The company has no branch to place the appointment in.
    NoBranch,
}

/// Holds one Cal.com booking as an appointment of `company`, inside the caller's transaction.
pub(crate) fn adopt_in(
    tx: &mut dyn Tx,
    company: CompanyId,
    booking: &ForeignBooking,
    config: &Config,
    now: DateTime<Utc>,
) -> crate::Result<Adopted> {
    if let Some(key) = &booking.callbook_key {
        return Ok(Adopted::Ours(tx.appointment_by_key(company, key)?.map(|a| a.id)));
    }
    if let Some(held) = tx.appointments_by_booking_uid(company, &booking.uid)?.first() {
        return Ok(Adopted::Known(held.id));
    }
    if booking.cancelled {
        return Ok(Adopted::Cancelled);
    }
    let services: Vec<_> = tx
        .services_of(company)?
        .into_iter()
        .filter(|s| booking.event_type_id.is_some() && s.calcom_event_type_id == booking.event_type_id)
        .collect();
    let [service] = services.as_slice() else {
        return Ok(Adopted::Unmapped { event_type_id: booking.event_type_id });
    };
    // The company's first branch: Cal.com does not say which one.
    let Some(branch) = tx.branches_of(company)?.into_iter().next() else { return Ok(Adopted::NoBranch) };
    let name: String = booking
        .attendee_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("Cal.com attendee")
        .chars()
        .take(MAX_NAME)
        .collect();
    let email = normalize_email(booking.attendee_email.as_deref());
    let email = email.valid().map(str::to_string);
    let phone = match classify_caller(booking.attendee_phone.as_deref(), branch_region(&branch, config)) {
        Caller::Known(phone) => Some(phone),
        Caller::Anonymous(_) => None,
    };
    let found = match (&phone, &email) {
        (Some(phone), _) => tx.customer_by_phone(company, phone)?.map(|c| c.id),
        (None, _) => None,
    };
    let found = match (found, &email) {
        (Some(id), _) => Some(id),
        (None, Some(email)) => tx.customer_id_by_email(company, email)?,
        (None, None) => None,
    };
    let customer = match found {
        Some(id) => id,
        None => {
            let new = NewCustomer {
                company_id: company,
                name: name.clone(),
                email: email.clone(),
                // No number: a placeholder, so nobody is ever matched by it.
                phone: phone.clone().unwrap_or_else(|| placeholder_phone(&name, CallDbId(0), now.timestamp())),
                source: CustomerSource::Calcom,
                anonymity_reason: None,
                now,
            };
            tx.insert_customer(&new)?
        }
    };
    let mut metadata = Map::new();
    metadata.insert("customer_name".into(), json!(name));
    metadata.insert("customer_email".into(), json!(email));
    metadata.insert("customer_phone".into(), json!(phone));
    metadata.insert("source".into(), json!("calcom"));
    let id = tx.insert_appointment(&NewAppointment {
        customer_id: customer,
        company_id: company,
        branch_id: branch.id,
        service_id: service.id,
        call_id: None,
        starts_at: booking.start,
        ends_at: booking.end,
        sync_origin: crate::appointment::SyncOrigin::Calcom,
        metadata,
        requires_manual_review: false,
        review_reason: None,
        idempotency_key: format!("calcom-{}", booking.uid),
        // Not booked through core: no booking latency of callbook's to keep.
        booking_latency_us: None,
        now,
    })?;
    let booking_id = booking.booking_id.unwrap_or(0);
    tx.record_sync_success(company, id, booking_id, &booking.uid, None, now)?;
    Ok(Adopted::Created(id))
}
