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

use crate::availability::{Availability, AvailabilityRequest};
use crate::booking::{book_in, validate_booking_request, Booking, BookingRequest};
use crate::call::NewCall;
use crate::callbook::Callbook;
use crate::company::{Branch, Secret};
use crate::error::{ErrorKind, Problem};
use crate::ids::CallId;
use crate::import::register_call;
use crate::retell::{
    bad, booking_request_from_args, id_arg, parse_function_call, text_arg, AgentFunction, FunctionCall,
};
use crate::store::{self, Tx};
use crate::utc::format_utc;
use crate::{Error, Result};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

/// The language the agent speaks for a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    German,
}

impl Language {
    /// German where the branch's country (or its number's) speaks it.
    pub fn of(branch: Option<&Branch>) -> Self {
        let country = branch.and_then(|b| {
            b.country.clone().or_else(|| {
                b.phone_number.as_deref().and_then(crate::caller::phone_region).map(|id| id.as_ref().to_string())
            })
        });
        match country.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("DE" | "AT" | "CH" | "LI") => Language::German,
            _ => Language::English,
        }
    }
}

const WEEKDAYS_EN: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const WEEKDAYS_DE: [&str; 7] = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_DE: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];

/// "Tuesday, 8 January at 14:30" / "Dienstag, 8. Januar um 14:30 Uhr", in `tz`.
pub fn speak_time(language: Language, tz: &str, at: DateTime<Utc>) -> String {
    let tz = crate::start::parse_timezone(tz).unwrap_or(chrono_tz::Europe::Berlin);
    let local = at.with_timezone(&tz);
    let day = local.weekday().num_days_from_monday() as usize;
    let month = local.month0() as usize;
    let (h, m) = (local.hour(), local.minute());
    match language {
        Language::English => format!("{}, {} {} at {h:02}:{m:02}", WEEKDAYS_EN[day], local.day(), MONTHS_EN[month]),
        Language::German => {
            format!("{}, {}. {} um {h:02}:{m:02} Uhr", WEEKDAYS_DE[day], local.day(), MONTHS_DE[month])
        }
    }
}

/// What the agent says after a booking.
pub fn speak_booking(language: Language, tz: &str, booking: &Booking) -> String {
    let when = speak_time(language, tz, booking.starts_at);
    match language {
        Language::English => format!("You're booked for {when}. We look forward to seeing you."),
        Language::German => format!("Ihr Termin ist gebucht: {when}. Wir freuen uns auf Sie."),
    }
}

/// "09:00, 09:30 or 10:00" / "09:00, 09:30 oder 10:00 Uhr", in `tz`.
pub fn speak_times(language: Language, tz: &str, times: &[DateTime<Utc>]) -> String {
    let tz = crate::start::parse_timezone(tz).unwrap_or(chrono_tz::Europe::Berlin);
    let list: Vec<String> = times.iter().map(|t| t.with_timezone(&tz).format("%H:%M").to_string()).collect();
    let (or, suffix) = match language {
        Language::English => ("or", ""),
        Language::German => ("oder", " Uhr"),
    };
    match list.split_last() {
        None => String::new(),
        Some((last, [])) => format!("{last}{suffix}"),
        Some((last, rest)) => format!("{} {or} {last}{suffix}", rest.join(", ")),
    }
}

/// "Tuesday, 8 January" / "Dienstag, 8. Januar".
fn speak_day(language: Language, day: chrono::NaiveDate) -> String {
    let (weekday, month) = (day.weekday().num_days_from_monday() as usize, day.month0() as usize);
    match language {
        Language::English => format!("{}, {} {}", WEEKDAYS_EN[weekday], day.day(), MONTHS_EN[month]),
        Language::German => format!("{}, {}. {}", WEEKDAYS_DE[weekday], day.day(), MONTHS_DE[month]),
    }
}

/// What the agent offers after checking a day.
pub fn speak_slots(language: Language, tz: &str, day: chrono::NaiveDate, offered: &[DateTime<Utc>]) -> String {
    let when = speak_day(language, day);
    match (language, offered.is_empty()) {
        (Language::English, true) => format!("I'm sorry, nothing is free on {when}. Would another day suit you?"),
        (Language::German, true) => format!("Am {when} ist leider nichts mehr frei. Passt Ihnen ein anderer Tag?"),
        (Language::English, false) => format!("On {when} I can offer {}.", speak_times(language, tz, offered)),
        (Language::German, false) => {
            format!("Am {when} kann ich Ihnen {} anbieten.", speak_times(language, tz, offered))
        }
    }
}

/// What the agent says when a rule refuses the booking.
pub fn speak_refusal(language: Language, tz: &str, error: &Error) -> String {
    use Language::{English as En, German as De};
    match (language, error) {
        (En, Error::SlotUnavailable { alternatives }) if !alternatives.is_empty() => {
            format!("That time is not available. I could offer {}.", speak_times(language, tz, alternatives))
        }
        (De, Error::SlotUnavailable { alternatives }) if !alternatives.is_empty() => {
            format!(
                "Dieser Termin ist leider nicht frei. Ich könnte Ihnen {} anbieten.",
                speak_times(language, tz, alternatives)
            )
        }
        (En, Error::SlotUnavailable { .. }) => "That time is not available. Which other time would suit you?".into(),
        (De, Error::SlotUnavailable { .. }) => {
            "Dieser Termin ist leider nicht frei. Welche andere Zeit passt Ihnen?".into()
        }
        (En, Error::CalcomUnavailable(_)) => {
            "I can't see the calendar right now, but tell me the time you'd like and I'll book it.".into()
        }
        (De, Error::CalcomUnavailable(_)) => {
            "Ich kann den Kalender gerade nicht einsehen. Nennen Sie mir Ihre Wunschzeit, dann buche ich sie.".into()
        }
        (En, Error::StartInPast(_)) => "That time has already passed. Which other time would suit you?".into(),
        (De, Error::StartInPast(_)) => {
            "Dieser Zeitpunkt liegt bereits in der Vergangenheit. Welcher andere Termin passt Ihnen?".into()
        }
        (En, Error::ServiceRequired) => "Which service would you like to book?".into(),
        (De, Error::ServiceRequired) => "Welche Leistung möchten Sie buchen?".into(),
        (En, Error::NonexistentLocalTime(_)) => {
            "That time does not exist because the clocks change. Could we take another time?".into()
        }
        (De, Error::NonexistentLocalTime(_)) => {
            "Diese Uhrzeit gibt es wegen der Zeitumstellung nicht. Passt Ihnen eine andere Uhrzeit?".into()
        }
        (En, _) => "I'm sorry, I could not book that appointment.".into(),
        (De, _) => "Das konnte ich leider nicht buchen.".into(),
    }
}

/// An answer for the agent: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    pub status: u16,
    pub body: Value,
    /// The appointment booked, when one was.
    pub booking: Option<Booking>,
}

impl AgentReply {
    fn refused(status: u16, error: &Error, message: String) -> Self {
        let problems: Vec<Problem> = error.problems();
        let mut body = json!({"ok": false, "code": error.code(), "message": message, "problems": problems});
        if let Error::SlotUnavailable { alternatives } = error {
            body["alternatives"] = alternatives.iter().map(format_utc).collect();
        }
        AgentReply { status, body, booking: None }
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
        match call.function {
            AgentFunction::BookAppointment => self.book_appointment(call),
            AgentFunction::CheckAvailability => self.check_availability(call),
        }
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
                }
            }
            Err(error) => refusal(&error, self.branch_for(call).as_ref()),
        }
    }

    /// Registers the call (when new) and books, in one transaction.
    fn book_in_call(&self, call: Option<NewCall>, request: BookingRequest) -> Result<(Booking, Option<Branch>)> {
        let config = self.book.config().clone();
        let now = self.book.now();
        store::write(&**self.book.store(), move |tx| {
            if let Some(call) = &call {
                register_call(tx, call, now)?;
            }
            let booking = book_in(tx, &request, &config, now)?;
            let branch = branch_of(tx, &CallId(request.retell_call_id.trim().to_string()))?;
            Ok((booking, branch))
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sentences_in_both_languages() {
        let at = Utc.with_ymd_and_hms(2030, 1, 8, 13, 30, 0).single().unwrap_or_default();
        assert_eq!(speak_time(Language::English, "Europe/Berlin", at), "Tuesday, 8 January at 14:30");
        assert_eq!(speak_time(Language::German, "Europe/Berlin", at), "Dienstag, 8. Januar um 14:30 Uhr");
        assert_eq!(speak_time(Language::English, "America/New_York", at), "Tuesday, 8 January at 08:30");
    }
}
