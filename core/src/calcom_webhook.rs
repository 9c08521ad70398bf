//! Cal.com's webhooks: a booking cancelled or moved in Cal.com is applied to
//! the local appointment with `sync_origin = calcom`, so the worker never
//! pushes it back; a booking made in Cal.com (`BOOKING_CREATED`) is held as
//! an appointment (`calcom_booking`). Cancels and moves of bookings callbook
//! does not hold are ignored.
//!
//! Tenants: Cal.com configures a webhook per user, team or event type, each
//! with its own secret, so each company has its own secret and URL, and a
//! delivery only ever reaches the appointments of the company it was
//! verified for. A delivery that names no company is accepted only when the
//! install has exactly one.
//!
//! Order: `X-Cal-Signature-256` is the hex HMAC-SHA256 of the raw body and
//! has no timestamp, so a delivery can be replayed or arrive late. Each
//! appointment keeps the `createdAt` of the last delivery applied to it; one
//! created at or before that is `stale` and writes nothing. A delivery that
//! is already true (Cal.com retries) is `already_applied`, and a cancelled
//! appointment is never moved back to life.

use crate::appointment::{Appointment, AppointmentChange, AppointmentStatus, ChangeKind, ChangedBy};
use crate::calcom::webhook::malformed;
use crate::calcom::{parse_calcom_webhook, verify_calcom_signature, CalcomWebhook};
use crate::calcom_booking::{adopt_in, Adopted, ForeignBooking};
use crate::callbook::Callbook;
use crate::ids::{AppointmentId, CompanyId};
use crate::store::{self, CalcomChange, Tx};
use crate::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::sync::Arc;

/// How far ahead of this clock a delivery's `createdAt` may be (clock skew):
/// a later one would make every true delivery after it look stale.
const MAX_CREATED_AHEAD: Duration = Duration::hours(1);
/// How far from now a rescheduled booking may be (Cal.com's own booking
/// windows are shorter); further is a malformed delivery, not a booking.
const MAX_RESCHEDULE_YEARS: i64 = 10;

/// What a webhook did. `appointment_ids` holds one appointment, or each seat
/// of a seated booking changed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum WebhookOutcome {
    Cancelled {
        appointment_ids: Vec<AppointmentId>,
    },
    Rescheduled {
        appointment_ids: Vec<AppointmentId>,
    },
    /// Already true (Cal.com retries a delivery, or our own change echoed): nothing written.
    AlreadyApplied {
        appointment_ids: Vec<AppointmentId>,
    },
    /// Created at or before the last delivery applied (a replay, or out of order): nothing written.
    Stale {
        appointment_ids: Vec<AppointmentId>,
    },
    /// A reschedule of a cancelled appointment: it stays cancelled.
    AlreadyCancelled {
        appointment_ids: Vec<AppointmentId>,
    },
    /// No appointment of this company has this booking uid: ignored.
    UnknownBooking {
        uid: String,
    },
    /// A booking made in Cal.com, now held as an appointment (`BOOKING_CREATED`).
    Imported {
        appointment_ids: Vec<AppointmentId>,
    },
    /// A booking made in Cal.com that cannot be placed: no one service of
    /// the company books its event type (`unmapped_event_type`), or the
    /// company has no branch (`no_branch`).
    Unplaced {
        event_type_id: Option<i64>,
        reason: String,
    },
    /// A trigger callbook does not act on (BOOKING_CREATED, PING, ...).
    Ignored {
        trigger: String,
    },
}

impl WebhookOutcome {
    /// The stable snake_case name of the outcome (the `result` field).
    pub fn result(&self) -> &'static str {
        match self {
            WebhookOutcome::Cancelled { .. } => "cancelled",
            WebhookOutcome::Rescheduled { .. } => "rescheduled",
            WebhookOutcome::AlreadyApplied { .. } => "already_applied",
            WebhookOutcome::Stale { .. } => "stale",
            WebhookOutcome::AlreadyCancelled { .. } => "already_cancelled",
            WebhookOutcome::UnknownBooking { .. } => "unknown_booking",
            WebhookOutcome::Imported { .. } => "imported",
            WebhookOutcome::Unplaced { .. } => "unplaced",
            WebhookOutcome::Ignored { .. } => "ignored",
        }
    }
}

impl Callbook {
    /// Verifies one delivery with `company`'s webhook secret and applies it
    /// to that company's appointments only.
    pub fn calcom_webhook(&self, company: CompanyId, body: &[u8], signature: &str) -> Result<WebhookOutcome> {
        let found = store::read(&**self.store(), |tx| tx.company(company))?;
        let found = found.ok_or(Error::CompanyNotFound(company.0))?;
        let secret = found.calcom_webhook_secret.ok_or(Error::WebhookNotConfigured(company.0))?;
        if !verify_calcom_signature(body, signature, secret.expose()) {
            return Err(Error::BadSignature);
        }
        self.apply_calcom_webhook(company, &parse_calcom_webhook(body)?)
    }

    /// A delivery to a single-tenant install's one URL, verified with the
    /// process's secret: applied to the only company, refused
    /// (`tenant_required`) when there are several.
    pub fn calcom_webhook_single_tenant(&self, body: &[u8], signature: &str, secret: &str) -> Result<WebhookOutcome> {
        if !verify_calcom_signature(body, signature, secret) {
            return Err(Error::BadSignature);
        }
        let event = parse_calcom_webhook(body)?;
        let companies = store::read(&**self.store(), |tx| tx.companies())?;
        match companies.as_slice() {
            [only] => self.apply_calcom_webhook(only.id, &event),
            _ => Err(Error::TenantRequired),
        }
    }

    /// Applies a cancellation or a reschedule made in Cal.com to `company`'s
    /// appointments, in one transaction.
    pub fn apply_calcom_webhook(&self, company: CompanyId, event: &CalcomWebhook) -> Result<WebhookOutcome> {
        let now = self.now();
        if event.created_at > now + MAX_CREATED_AHEAD {
            return Err(malformed("createdAt is more than an hour ahead of this clock"));
        }
        let change = match event.trigger.as_str() {
            "BOOKING_CREATED" => return self.import_created(company, event),
            "BOOKING_CANCELLED" => CalcomChange::Cancelled,
            "BOOKING_RESCHEDULED" => {
                let (Some(starts_at), Some(ends_at)) = (event.start, event.end) else {
                    return Err(malformed("payload.startTime and payload.endTime are required"));
                };
                let window = Duration::days(366 * MAX_RESCHEDULE_YEARS);
                if starts_at < now - window || starts_at > now + window {
                    return Err(malformed(format!("payload.startTime is more than {MAX_RESCHEDULE_YEARS} years away")));
                }
                let uid = event.uid.clone().ok_or_else(|| malformed("payload.uid is missing"))?;
                CalcomChange::Rescheduled { booking_id: event.booking_id, uid, starts_at, ends_at }
            }
            _ => return Ok(WebhookOutcome::Ignored { trigger: event.trigger.clone() }),
        };
        let event = event.clone();
        store::write(&**self.store(), move |tx| apply(tx, company, &event, &change, now))
    }
}

impl Callbook {
    /// A booking made in Cal.com: held as an appointment, unless it is
    /// callbook's own echoing back or held already.
    fn import_created(&self, company: CompanyId, event: &CalcomWebhook) -> Result<WebhookOutcome> {
        let uid = event.uid.clone().ok_or_else(|| malformed("payload.uid is missing"))?;
        let (Some(start), Some(end)) = (event.start, event.end) else {
            return Err(malformed("payload.startTime and payload.endTime are required"));
        };
        let booking = ForeignBooking {
            uid,
            booking_id: event.booking_id,
            event_type_id: event.event_type_id,
            start,
            end,
            cancelled: false,
            attendee_name: event.attendee_name.clone(),
            attendee_email: event.attendee_email.clone(),
            attendee_phone: event.attendee_phone.clone(),
            callbook_key: event.callbook_key.clone(),
        };
        let (config, now, trigger) = (Arc::clone(self.config_arc()), self.now(), event.trigger.clone());
        let adopted = store::write(&**self.store(), move |tx| adopt_in(tx, company, &booking, &config, now))?;
        Ok(match adopted {
            Adopted::Created(id) => WebhookOutcome::Imported { appointment_ids: vec![id] },
            Adopted::Known(id) | Adopted::Ours(Some(id)) => {
                WebhookOutcome::AlreadyApplied { appointment_ids: vec![id] }
            }
            Adopted::Ours(None) | Adopted::Cancelled => WebhookOutcome::Ignored { trigger },
            Adopted::Unmapped { event_type_id } => {
                WebhookOutcome::Unplaced { event_type_id, reason: "unmapped_event_type".into() }
            }
            Adopted::NoBranch => {
                WebhookOutcome::Unplaced { event_type_id: event.event_type_id, reason: "no_branch".into() }
            }
        })
    }
}

/// The appointments a delivery is about: those holding the booking (the
/// replaced one for a reschedule), narrowed to its seat when it names one.
fn targets(tx: &mut dyn Tx, company: CompanyId, event: &CalcomWebhook) -> Result<Vec<Appointment>> {
    let uid = event.uid.as_deref().ok_or_else(|| malformed("payload.uid is missing"))?;
    let mut found = Vec::new();
    if let Some(old) = &event.reschedule_uid {
        found = tx.appointments_by_booking_uid(company, old)?;
    }
    if found.is_empty() {
        found = tx.appointments_by_booking_uid(company, uid)?;
    }
    if let Some(seat) = &event.seat_uid {
        found.retain(|a| a.calcom_v2_seat_uid.as_deref() == Some(seat.as_str()));
    }
    Ok(found)
}

fn apply(
    tx: &mut dyn Tx,
    company: CompanyId,
    event: &CalcomWebhook,
    change: &CalcomChange,
    now: DateTime<Utc>,
) -> Result<WebhookOutcome> {
    let found = targets(tx, company, event)?;
    if found.is_empty() {
        let uid = event.reschedule_uid.clone().or_else(|| event.uid.clone()).unwrap_or_default();
        return Ok(WebhookOutcome::UnknownBooking { uid });
    }
    let (mut applied, mut already, mut stale, mut cancelled) = (vec![], vec![], vec![], vec![]);
    for a in &found {
        let verdict = decide(a, event, change);
        let list = match verdict {
            Verdict::Apply => &mut applied,
            Verdict::AlreadyApplied => &mut already,
            Verdict::Stale => &mut stale,
            Verdict::AlreadyCancelled => &mut cancelled,
        };
        list.push(a.id);
        if verdict != Verdict::Apply {
            continue;
        }
        if let CalcomChange::Rescheduled { uid, .. } = change {
            let holders = tx.appointments_by_booking_uid(company, uid)?;
            let taken = holders.iter().any(|h| h.id != a.id && h.calcom_v2_seat_uid == a.calcom_v2_seat_uid);
            if taken {
                return Err(Error::invalid(
                    "payload.uid",
                    "booking_uid_taken",
                    "another appointment of the company holds the new booking uid",
                ));
            }
        }
        tx.apply_calcom_change(company, a.id, change, event.created_at, now)?;
        let (kind, to_starts_at) = match change {
            CalcomChange::Cancelled => (ChangeKind::Cancel, None),
            CalcomChange::Rescheduled { starts_at, .. } => (ChangeKind::Reschedule, Some(*starts_at)),
        };
        tx.insert_change(&AppointmentChange {
            appointment_id: a.id,
            company_id: company,
            kind,
            from_starts_at: a.starts_at,
            to_starts_at,
            by: ChangedBy::Calcom,
            reason: event.reason.clone(),
            at: now,
        })?;
    }
    Ok(if !applied.is_empty() {
        match change {
            CalcomChange::Cancelled => WebhookOutcome::Cancelled { appointment_ids: applied },
            CalcomChange::Rescheduled { .. } => WebhookOutcome::Rescheduled { appointment_ids: applied },
        }
    } else if !already.is_empty() {
        WebhookOutcome::AlreadyApplied { appointment_ids: already }
    } else if !stale.is_empty() {
        WebhookOutcome::Stale { appointment_ids: stale }
    } else {
        WebhookOutcome::AlreadyCancelled { appointment_ids: cancelled }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Apply,
    AlreadyApplied,
    Stale,
    AlreadyCancelled,
}

/// What one delivery does to one appointment: a pure decision.
fn decide(a: &Appointment, event: &CalcomWebhook, change: &CalcomChange) -> Verdict {
    let cancelled = a.status == AppointmentStatus::Cancelled;
    let already = match change {
        CalcomChange::Cancelled => cancelled,
        // The booking and its start decide: Cal.com's end follows its event
        // type's length, which may differ from the local service's.
        CalcomChange::Rescheduled { uid, starts_at, .. } => {
            a.calcom_v2_booking_uid.as_deref() == Some(uid.as_str()) && a.starts_at == *starts_at
        }
    };
    if already {
        Verdict::AlreadyApplied
    } else if cancelled {
        Verdict::AlreadyCancelled
    } else if a.calcom_webhook_at.is_some_and(|last| event.created_at <= last) {
        Verdict::Stale
    } else {
        Verdict::Apply
    }
}
