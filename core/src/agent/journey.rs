//! The agent's functions for the rest of the call: `get_call_context`,
//! `find_appointments`, `cancel_appointment`, `reschedule_appointment` and
//! `request_callback`. Each parses its args, asks core once (a move may ask
//! Cal.com for the new day first) and answers with a sentence.

use super::{refusal, AgentReply, Language};
use crate::agent::speech::{
    speak_callback, speak_cancel_question, speak_cancelled, speak_found, speak_move_question, speak_moved, speak_today,
    speak_which,
};
use crate::appointment::Appointment;
use crate::availability::AvailabilityRequest;
use crate::change::{self, Change, ChangeRequest};
use crate::ids::AppointmentId;
use crate::retell::{callback_request_from_args, change_request_from_args, text_arg, FunctionCall};
use crate::store::{self, Tx};
use crate::utc::format_utc;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

impl super::Agent {
    pub(super) fn get_call_context(&self, call: &FunctionCall) -> AgentReply {
        let (config, now) = (self.book.config().clone(), self.book.now());
        let id = call.call_id.0.clone();
        let context = store::read(&**self.book.store(), |tx| {
            let context = change::context_in(tx, &id, call.call.as_ref(), &config, now)?;
            let scope = change::caller_scope(tx, &id, call.call.as_ref(), None, &config)?;
            Ok((context, scope.branch))
        });
        match context {
            Ok((context, branch)) => {
                let language = Language::of(Some(&branch));
                let today = chrono::NaiveDate::parse_from_str(&context.today, "%Y-%m-%d").unwrap_or_default();
                let mut body = serde_json::to_value(&context).unwrap_or_else(|_| json!({}));
                body["ok"] = true.into();
                body["message"] = speak_today(language, today).into();
                ok(body)
            }
            Err(error) => refusal(&error, self.branch_for(call).as_ref()),
        }
    }

    pub(super) fn find_appointments(&self, call: &FunctionCall) -> AgentReply {
        let date = match text_arg(&call.args, "date") {
            Ok(date) => date,
            Err(error) => return AgentReply::refused(400, &error, error.to_string()),
        };
        let (config, now) = (self.book.config().clone(), self.book.now());
        let id = call.call_id.0.clone();
        let found = store::read(&**self.book.store(), |tx| {
            let (found, scope) = change::find_in(tx, &id, call.call.as_ref(), date.as_deref(), &config, now)?;
            Ok((listed(tx, &found)?, scope.branch))
        });
        match found {
            Ok((found, branch)) => {
                let (language, tz) = (Language::of(Some(&branch)), branch.timezone.as_str());
                ok(json!({
                    "ok": true,
                    "message": speak_found(language, tz, &spoken(&found)),
                    "appointments": found.iter().map(|f| f.json(language, tz)).collect::<Vec<_>>(),
                }))
            }
            Err(error) => self.change_refusal(call, &error),
        }
    }

    pub(super) fn cancel_appointment(&self, call: &FunctionCall) -> AgentReply {
        let request = match change_request_from_args(call) {
            Ok(request) => request,
            Err(error) => return AgentReply::refused(400, &error, error.to_string()),
        };
        match self.book.cancel_appointment(&request) {
            Ok(change) => self.change_answer(call, change),
            Err(error) => self.change_refusal(call, &error),
        }
    }

    pub(super) fn reschedule_appointment(&self, call: &FunctionCall) -> AgentReply {
        let request = match change_request_from_args(call) {
            Ok(request) => request,
            Err(error) => return AgentReply::refused(400, &error, error.to_string()),
        };
        match self.reschedule(&request) {
            Ok(change) => self.change_answer(call, change),
            Err(error) => self.change_refusal(call, &error),
        }
    }

    /// A move checked against Cal.com's free starts for the new day when
    /// availability is on (the appointment's own booking leaves its time
    /// free); Cal.com down never blocks it, as it never blocks a booking.
    fn reschedule(&self, request: &ChangeRequest) -> Result<Change> {
        let Some(availability) = &self.availability else {
            return self.book.reschedule_appointment(request);
        };
        // What the request means, asked without writing.
        let preview = self.book.reschedule_appointment(&ChangeRequest { confirmed: false, ..request.clone() })?;
        if preview.repeated {
            return self.book.reschedule_appointment(request);
        }
        let appointment = self.book.appointment(preview.appointment_id)?;
        let zone = crate::start::parse_timezone(&preview.time_zone)?;
        let check = AvailabilityRequest {
            retell_call_id: request.retell_call_id.clone(),
            service_id: Some(appointment.service_id.0),
            date: preview.starts_at.with_timezone(&zone).date_naive().to_string(),
            call: request.call.clone(),
            reschedule: Some(appointment.id),
            dry_run: true,
            ..Default::default()
        };
        let offered = match availability.check(&check) {
            Ok(slots) => Some(slots.offered),
            Err(Error::CalcomUnavailable(_)) => None,
            Err(error) => return Err(error),
        };
        self.book.reschedule_checked(request, offered)
    }

    pub(super) fn request_callback(&self, call: &FunctionCall) -> AgentReply {
        let request = match callback_request_from_args(call) {
            Ok(request) => request,
            Err(error) => return AgentReply::refused(400, &error, error.to_string()),
        };
        match self.book.request_callback(&request) {
            Ok(callback) => {
                let branch = self.branch_for(call);
                ok(json!({
                    "ok": true,
                    "callback_id": callback.id,
                    "message": speak_callback(Language::of(branch.as_ref())),
                }))
            }
            Err(error) => refusal(&error, self.branch_for(call).as_ref()),
        }
    }

    /// The answer to a cancel or a move: a question before confirmation,
    /// the result after it.
    fn change_answer(&self, call: &FunctionCall, change: Change) -> AgentReply {
        let branch = self.branch_for(call);
        let (language, tz) = (Language::of(branch.as_ref()), change.time_zone.as_str());
        let cancel = change.kind == crate::appointment::ChangeKind::Cancel;
        let message = match (cancel, change.needs_confirmation) {
            (true, true) => speak_cancel_question(language, tz, change.starts_at),
            (true, false) => speak_cancelled(language, tz, change.starts_at),
            (false, true) => speak_move_question(
                language,
                tz,
                change.previous_starts_at.unwrap_or(change.starts_at),
                change.starts_at,
            ),
            (false, false) => speak_moved(language, tz, change.starts_at),
        };
        let mut body = serde_json::to_value(&change).unwrap_or_else(|_| json!({}));
        body["ok"] = true.into();
        body["message"] = message.into();
        if !change.needs_confirmation {
            body[if cancel { "cancelled" } else { "rescheduled" }] = true.into();
        }
        let made = !change.needs_confirmation && !change.repeated;
        AgentReply { status: 200, body, booking: None, change: made.then_some(change), function: None }
    }

    /// A refusal of a find, cancel or move: `multiple_found` lists the
    /// candidates to read out; `caller_not_verified` offers a callback.
    fn change_refusal(&self, call: &FunctionCall, error: &Error) -> AgentReply {
        let branch = self.branch_for(call);
        let mut reply = refusal(error, branch.as_ref());
        match error {
            Error::MultipleFound { appointments } => {
                let listed = store::read(&**self.book.store(), |tx| {
                    let company = branch.as_ref().map(|b| b.company_id);
                    let mut found = Vec::new();
                    for id in appointments {
                        if let Some(a) = company.map(|c| tx.appointment(c, *id)).transpose()?.flatten() {
                            found.push(a);
                        }
                    }
                    listed(tx, &found)
                })
                .unwrap_or_default();
                let language = Language::of(branch.as_ref());
                let tz = branch.as_ref().map_or("Europe/Berlin", |b| b.timezone.as_str());
                reply.body["message"] = speak_which(language, tz, &spoken(&listed)).into();
                reply.body["appointments"] = listed.iter().map(|f| f.json(language, tz)).collect::<Vec<_>>().into();
            }
            Error::CallerNotVerified => reply.body["offer_callback"] = true.into(),
            Error::TooLateToCancel { .. }
            | Error::TooLateToReschedule { .. }
            | Error::RescheduleLimitReached { .. } => {
                reply.body["offer_callback"] = true.into();
            }
            _ => {}
        }
        reply
    }
}

/// An appointment as the agent reads it out.
struct Listed {
    id: AppointmentId,
    starts_at: DateTime<Utc>,
    service_id: i64,
    service: String,
}

impl Listed {
    fn json(&self, language: Language, tz: &str) -> Value {
        json!({
            "appointment_id": self.id,
            "starts_at": format_utc(&self.starts_at),
            "service_id": self.service_id,
            "service": self.service,
            "spoken": crate::agent::speak_time(language, tz, self.starts_at),
        })
    }
}

fn listed(tx: &mut dyn Tx, found: &[Appointment]) -> Result<Vec<Listed>> {
    let mut out = Vec::with_capacity(found.len());
    for a in found {
        let service = tx.service(a.service_id)?.map(|s| s.name).unwrap_or_default();
        out.push(Listed { id: a.id, starts_at: a.starts_at, service_id: a.service_id.0, service });
    }
    Ok(out)
}

fn spoken(found: &[Listed]) -> Vec<(String, DateTime<Utc>)> {
    found.iter().map(|f| (f.service.clone(), f.starts_at)).collect()
}

fn ok(body: Value) -> AgentReply {
    AgentReply { status: 200, body, booking: None, change: None, function: None }
}
