//! The voice agent's side of a call: a Retell custom function call is
//! verified, parsed and answered with a sentence the agent can speak (German
//! for branches in German-speaking countries, else English) plus data.
//!
//! Status codes follow the Retell contract: 401 for a bad or stale
//! signature; 400 for a body that is not a function call callbook can run
//! (malformed JSON, unknown function, missing or mistyped arguments), with
//! nothing written; 200 `{"ok": false, "code", "message"}` when a domain rule
//! refuses the booking, so the agent can tell the caller; 200 `{"ok": true}`
//! with the appointment otherwise.

mod journey;
mod speech;

pub use speech::{
    speak_booking, speak_callback, speak_cancel_question, speak_cancelled, speak_found, speak_move_question,
    speak_moved, speak_refusal, speak_slots, speak_time, speak_times, speak_today, speak_which, Language,
};

use crate::availability::{Availability, AvailabilityRequest};
use crate::booking::{book_with, validate_booking_request, Booking, BookingRequest};
use crate::call::NewCall;
use crate::callbook::Callbook;
use crate::company::{Branch, Secret};
use crate::error::{ErrorKind, Problem};
use crate::ids::CallId;
use crate::import::register_new_call;
use crate::retell::{
    bad, booking_request_from_args, id_arg, parse_function_call, text_arg, AgentFunction, FunctionCall,
};
use crate::store::{self, Tx};
use crate::utc::format_utc;
use crate::{Error, Result};
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

/// An answer for the agent: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    pub status: u16,
    pub body: Value,
    /// The appointment booked, when one was.
    pub booking: Option<Booking>,
    /// The cancel or move made, when one was (confirmed and new).
    pub change: Option<crate::change::Change>,
    /// The function answered (`None`: the body named none callbook runs).
    pub function: Option<AgentFunction>,
}

impl AgentReply {
    fn refused(status: u16, error: &Error, message: String) -> Self {
        let problems: Vec<Problem> = error.problems();
        let mut body = json!({"ok": false, "code": error.code(), "message": message, "problems": problems});
        if let Error::SlotUnavailable { alternatives } = error {
            body["alternatives"] = alternatives.iter().map(format_utc).collect();
        }
        AgentReply { status, body, booking: None, change: None, function: None }
    }
}

/// Answers Retell function calls for one Retell API key.
#[derive(Debug, Clone)]
pub struct Agent {
    book: Callbook,
    retell_api_key: Secret,
    availability: Option<Arc<Availability>>,
}

impl Agent {
    pub fn new(book: Callbook, retell_api_key: Secret) -> Self {
        Agent { book, retell_api_key, availability: None }
    }

    /// Lets the agent answer `check_availability` (without it: `not_configured`).
    pub fn with_availability(mut self, availability: Arc<Availability>) -> Self {
        self.availability = Some(availability);
        self
    }

    pub fn callbook(&self) -> &Callbook {
        &self.book
    }

    /// Verifies, parses and runs one function call. `function` names the
    /// function when the URL does (the "args only" form).
    pub fn answer(&self, body: &[u8], signature: &str, function: Option<&str>) -> AgentReply {
        let now_ms = self.book.now().timestamp_millis();
        if !crate::retell::verify_retell_signature(body, signature, self.retell_api_key.expose(), now_ms) {
            let error = Error::BadSignature;
            return AgentReply::refused(401, &error, "invalid or stale x-retell-signature".into());
        }
        match parse_function_call(body, function) {
            Ok(call) => self.run(&call),
            Err(error) => AgentReply::refused(400, &error, error.to_string()),
        }
    }

    /// Runs a parsed (and already verified) function call.
    pub fn run(&self, call: &FunctionCall) -> AgentReply {
        let reply = match call.function {
            AgentFunction::BookAppointment => self.book_appointment(call),
            AgentFunction::CheckAvailability => self.check_availability(call),
            AgentFunction::GetCallContext => self.get_call_context(call),
            AgentFunction::FindAppointments => self.find_appointments(call),
            AgentFunction::CancelAppointment => self.cancel_appointment(call),
            AgentFunction::RescheduleAppointment => self.reschedule_appointment(call),
            AgentFunction::RequestCallback => self.request_callback(call),
        };
        AgentReply { function: Some(call.function), ..reply }
    }

    fn check_availability(&self, call: &FunctionCall) -> AgentReply {
        let parsed = (|| {
            let date = text_arg(&call.args, "date")?
                .filter(|d| !d.trim().is_empty())
                .ok_or_else(|| bad("date", "date_required", "give the date to check"))?;
            let time = text_arg(&call.args, "time")?;
            let service_id = id_arg(&call.args, "service_id")?;
            Ok::<_, Error>((date, time, service_id))
        })();
        let (date, time, service_id) = match parsed {
            Ok(args) => args,
            Err(error) => return AgentReply::refused(400, &error, error.to_string()),
        };
        let Some(availability) = &self.availability else {
            let error = Error::CalcomUnavailable("availability is not configured".into());
            return AgentReply::refused(503, &error, error.to_string());
        };
        // The call is registered only with the answer: a refusal writes nothing.
        let request = AvailabilityRequest {
            retell_call_id: Some(call.call_id.0.clone()),
            service_id,
            date,
            calcom_url: None,
            call: call.call.clone(),
            ..Default::default()
        };
        let checked = availability.check(&request);
        let branch = self.branch_for(call);
        let language = Language::of(branch.as_ref());
        match checked {
            Ok(slots) => {
                let offered = match time.as_deref().and_then(crate::start::parse_time) {
                    Some(t) => {
                        let tz = crate::start::parse_timezone(&slots.time_zone).unwrap_or(chrono_tz::Europe::Berlin);
                        match slots.date.and_time(t).and_local_timezone(tz).earliest() {
                            Some(wanted) if slots.slots.contains(&wanted.with_timezone(&Utc)) => {
                                vec![wanted.with_timezone(&Utc)]
                            }
                            Some(wanted) => crate::slots::nearest(&slots.slots, wanted.with_timezone(&Utc), 3),
                            None => slots.slots.iter().take(3).copied().collect(),
                        }
                    }
                    None => slots.slots.iter().take(3).copied().collect(),
                };
                AgentReply {
                    status: 200,
                    body: json!({
                        "ok": true,
                        "message": speak_slots(language, &slots.time_zone, slots.date, &offered),
                        "date": slots.date.to_string(),
                        "offered": offered.iter().map(format_utc).collect::<Vec<_>>(),
                        "slots": slots.slots.iter().map(format_utc).collect::<Vec<_>>(),
                    }),
                    booking: None,
                    change: None,
                    function: None,
                }
            }
            Err(error) => refusal(&error, branch.as_ref()),
        }
    }

    fn book_appointment(&self, call: &FunctionCall) -> AgentReply {
        let request = match booking_request_from_args(&call.call_id, &call.args) {
            Ok(request) => request,
            Err(error) => return AgentReply::refused(400, &error, error.to_string()),
        };
        let problems = validate_booking_request(&request);
        if !problems.is_empty() {
            let error = Error::Invalid(problems);
            return AgentReply::refused(400, &error, error.to_string());
        }
        match self.book_in_call(call.call.clone(), request) {
            Ok((booking, branch)) => {
                let language = Language::of(branch.as_ref());
                let tz = branch.as_ref().map_or("Europe/Berlin", |b| b.timezone.as_str());
                AgentReply {
                    status: 200,
                    body: json!({
                        "ok": true,
                        "message": speak_booking(language, tz, &booking),
                        "appointment_id": booking.appointment_id,
                        "starts_at": format_utc(&booking.starts_at),
                        "status": booking.status,
                        "calcom_sync_status": booking.calcom_sync_status,
                    }),
                    booking: Some(booking),
                    change: None,
                    function: None,
                }
            }
            Err(error) => refusal(&error, self.branch_for(call).as_ref()),
        }
    }

    /// Registers the call (when new) and books, in one transaction.
    fn book_in_call(&self, call: Option<NewCall>, request: BookingRequest) -> Result<(Booking, Option<Branch>)> {
        let config = self.book.config().clone();
        let clock = Arc::clone(self.book.clock());
        let now = self.book.now();
        store::write(&**self.book.store(), move |tx| {
            let inserted = match &call {
                Some(call) => register_new_call(tx, call, now)?,
                None => None,
            };
            let (booking, branch) = book_with(tx, inserted, &request, &config, now, &*clock)?;
            Ok((booking, Some(branch)))
        })
    }

    /// The branch a call reaches, for the language of a refusal.
    fn branch_for(&self, call: &FunctionCall) -> Option<Branch> {
        let dialled = call.call.as_ref().and_then(|c| c.to_number.clone());
        let id = call.call_id.clone();
        store::read(&**self.book.store(), |tx| match branch_of(tx, &id)? {
            Some(b) => Ok(Some(b)),
            None => match dialled.as_deref().and_then(|d| crate::caller::normalize_phone(d, None)) {
                Some(e164) => tx.branch_by_phone(&e164),
                None => Ok(None),
            },
        })
        .ok()
        .flatten()
    }
}

/// The answer to a failed function call: input errors 400; a rule's
/// refusal, or Cal.com unreachable during a check, 200 with a sentence in the
/// branch's language; anything else 500 without details.
fn refusal(error: &Error, branch: Option<&Branch>) -> AgentReply {
    let status = match error.kind() {
        ErrorKind::Input => 400,
        _ if matches!(error, Error::CalcomUnavailable(_)) => 200,
        ErrorKind::Rejected => 200,
        _ => 500,
    };
    let tz = branch.map_or("Europe/Berlin", |b| b.timezone.as_str());
    let message =
        if status == 500 { "internal error".to_string() } else { speak_refusal(Language::of(branch), tz, error) };
    AgentReply::refused(status, error, message)
}

fn branch_of(tx: &mut dyn Tx, call: &CallId) -> Result<Option<Branch>> {
    match tx.call(call)?.and_then(|c| c.branch_id) {
        Some(id) => tx.branch(id),
        None => Ok(None),
    }
}
