//! Cal.com's webhooks: a booking cancelled or moved in Cal.com is applied to
//! the local appointment with `sync_origin = calcom`, so the worker never
//! pushes it back. Events for bookings callbook does not know are ignored.
//!
//! Signature: `X-Cal-Signature-256` is the hex HMAC-SHA256 of the raw body
//! with the webhook secret. It has no timestamp, so a delivery can be
//! replayed: applying an event is idempotent (a second cancellation, or a
//! reschedule already applied, answers `already_applied` and writes nothing).

use crate::appointment::AppointmentStatus;
use crate::calcom::webhook::malformed;
use crate::calcom::{parse_calcom_webhook, verify_calcom_signature, CalcomWebhook};
use crate::callbook::Callbook;
use crate::ids::AppointmentId;
use crate::store::{self, CalcomChange};
use crate::{Error, Result};
use serde::Serialize;

/// What a webhook did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum WebhookOutcome {
    Cancelled {
        appointment_id: AppointmentId,
    },
    Rescheduled {
        appointment_id: AppointmentId,
    },
    /// Delivered before (Cal.com retries, or a replay): nothing written.
    AlreadyApplied {
        appointment_id: AppointmentId,
    },
    /// No appointment has this booking uid: not ours, ignored.
    UnknownBooking {
        uid: String,
    },
    /// A trigger callbook does not act on (BOOKING_CREATED, PING, ...).
    Ignored {
        trigger: String,
    },
}

impl Callbook {
    /// Verifies and applies one Cal.com webhook delivery.
    pub fn calcom_webhook(&self, body: &[u8], signature: &str, secret: &str) -> Result<WebhookOutcome> {
        if !verify_calcom_signature(body, signature, secret) {
            return Err(Error::BadSignature);
        }
        self.apply_calcom_webhook(&parse_calcom_webhook(body)?)
    }

    /// Applies a cancellation or a reschedule made in Cal.com, in one transaction.
    pub fn apply_calcom_webhook(&self, event: &CalcomWebhook) -> Result<WebhookOutcome> {
        let event = event.clone();
        let now = self.now();
        let require_uid = |e: &CalcomWebhook| e.uid.clone().ok_or_else(|| malformed("payload.uid is missing"));
        match event.trigger.as_str() {
            "BOOKING_CANCELLED" => {
                let uid = require_uid(&event)?;
                store::write(&**self.store(), move |tx| {
                    let Some(a) = tx.appointment_by_booking_uid(&uid)? else {
                        return Ok(WebhookOutcome::UnknownBooking { uid });
                    };
                    if a.status == AppointmentStatus::Cancelled {
                        return Ok(WebhookOutcome::AlreadyApplied { appointment_id: a.id });
                    }
                    tx.apply_calcom_change(a.company_id, a.id, &CalcomChange::Cancelled, now)?;
                    Ok(WebhookOutcome::Cancelled { appointment_id: a.id })
                })
            }
            "BOOKING_RESCHEDULED" => {
                let uid = require_uid(&event)?;
                let (Some(starts_at), Some(ends_at)) = (event.start, event.end) else {
                    return Err(malformed("payload.startTime and payload.endTime are required"));
                };
                store::write(&**self.store(), move |tx| {
                    let replaced = match &event.reschedule_uid {
                        Some(old) => tx.appointment_by_booking_uid(old)?,
                        None => None,
                    };
                    let found = match replaced {
                        Some(a) => Some(a),
                        None => tx.appointment_by_booking_uid(&uid)?,
                    };
                    let Some(a) = found else {
                        return Ok(WebhookOutcome::UnknownBooking { uid: event.reschedule_uid.unwrap_or(uid) });
                    };
                    if a.calcom_v2_booking_uid.as_deref() == Some(uid.as_str())
                        && a.starts_at == starts_at
                        && a.ends_at == ends_at
                    {
                        return Ok(WebhookOutcome::AlreadyApplied { appointment_id: a.id });
                    }
                    let change = CalcomChange::Rescheduled { booking_id: event.booking_id, uid, starts_at, ends_at };
                    tx.apply_calcom_change(a.company_id, a.id, &change, now)?;
                    Ok(WebhookOutcome::Rescheduled { appointment_id: a.id })
                })
            }
            _ => Ok(WebhookOutcome::Ignored { trigger: event.trigger }),
        }
    }
}
