//! What the agent says: short sentences in the branch's language (German
//! for branches in German-speaking countries, else English), with times
//! read in the branch's zone.

use crate::booking::Booking;
use crate::company::Branch;
use crate::Error;
use chrono::{DateTime, Datelike, Timelike, Utc};

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

/// "on Tuesday, 8 January at 14:30" / "am Dienstag, 8. Januar um 14:30 Uhr".
fn on(language: Language, tz: &str, at: DateTime<Utc>) -> String {
    match language {
        Language::English => format!("on {}", speak_time(language, tz, at)),
        Language::German => format!("am {}", speak_time(language, tz, at)),
    }
}

/// "Today is Tuesday, 8 January." for the start of a call.
pub fn speak_today(language: Language, day: chrono::NaiveDate) -> String {
    match language {
        Language::English => format!("Today is {}.", speak_day(language, day)),
        Language::German => format!("Heute ist {}.", speak_day(language, day)),
    }
}

/// The caller's appointments, each as (service, start).
pub fn speak_found(language: Language, tz: &str, found: &[(String, DateTime<Utc>)]) -> String {
    let list: Vec<String> = found.iter().map(|(service, at)| format!("{service} {}", on(language, tz, *at))).collect();
    let joined = match (language, list.split_last()) {
        (_, None) => String::new(),
        (_, Some((last, []))) => last.clone(),
        (Language::English, Some((last, rest))) => format!("{} and {last}", rest.join(", ")),
        (Language::German, Some((last, rest))) => format!("{} und {last}", rest.join(", ")),
    };
    match (language, found.len()) {
        (Language::English, 0) => "I can't find an upcoming appointment for you.".into(),
        (Language::German, 0) => "Ich finde keinen anstehenden Termin für Sie.".into(),
        (Language::English, 1) => format!("You have one appointment: {joined}."),
        (Language::German, 1) => format!("Sie haben einen Termin: {joined}."),
        (Language::English, n) => format!("You have {n} appointments: {joined}."),
        (Language::German, n) => format!("Sie haben {n} Termine: {joined}."),
    }
}

/// Several appointments match: which one?
pub fn speak_which(language: Language, tz: &str, found: &[(String, DateTime<Utc>)]) -> String {
    let list = speak_found(language, tz, found);
    match language {
        Language::English => format!("{list} Which one do you mean?"),
        Language::German => format!("{list} Welchen meinen Sie?"),
    }
}

/// Asks before cancelling.
pub fn speak_cancel_question(language: Language, tz: &str, at: DateTime<Utc>) -> String {
    match language {
        Language::English => format!("Shall I cancel your appointment {}?", on(language, tz, at)),
        Language::German => format!("Soll ich Ihren Termin {} stornieren?", on(language, tz, at)),
    }
}

pub fn speak_cancelled(language: Language, tz: &str, at: DateTime<Utc>) -> String {
    match language {
        Language::English => format!("Your appointment {} is cancelled.", on(language, tz, at)),
        Language::German => format!("Ihr Termin {} ist storniert.", on(language, tz, at)),
    }
}

/// Asks before moving.
pub fn speak_move_question(language: Language, tz: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    match language {
        Language::English => {
            format!(
                "Shall I move your appointment from {} to {}?",
                speak_time(language, tz, from),
                speak_time(language, tz, to)
            )
        }
        Language::German => format!(
            "Soll ich Ihren Termin von {} auf {} verschieben?",
            speak_time(language, tz, from),
            speak_time(language, tz, to)
        ),
    }
}

pub fn speak_moved(language: Language, tz: &str, to: DateTime<Utc>) -> String {
    match language {
        Language::English => format!("Done: your appointment is now {}.", on(language, tz, to)),
        Language::German => format!("Erledigt: Ihr Termin ist jetzt {}.", on(language, tz, to)),
    }
}

pub fn speak_callback(language: Language) -> String {
    match language {
        Language::English => "Thank you. Someone from the team will call you back.".into(),
        Language::German => "Vielen Dank. Jemand aus dem Team ruft Sie zurück.".into(),
    }
}

/// What the agent says when a rule refuses a booking or a change.
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
        (En, Error::CallerNotVerified) => "I'm sorry, I can't confirm from this number that the appointment is yours, so I can't change it. Shall I ask someone to call you back?".into(),
        (De, Error::CallerNotVerified) => "Ich kann leider nicht bestätigen, dass der Termin Ihrer ist, daher kann ich ihn nicht ändern. Soll Sie jemand zurückrufen?".into(),
        (En, Error::AppointmentNotFound(_)) => "I can't find that appointment. Which day was it?".into(),
        (De, Error::AppointmentNotFound(_)) => "Diesen Termin finde ich leider nicht. An welchem Tag war er?".into(),
        (En, Error::AppointmentCancelled(_)) => "That appointment is cancelled already.".into(),
        (De, Error::AppointmentCancelled(_)) => "Dieser Termin ist bereits storniert.".into(),
        (En, Error::TooLateToCancel { deadline }) => format!(
            "I'm sorry, it can only be cancelled by phone until {}. Shall I ask someone to call you back?",
            speak_time(language, tz, *deadline)
        ),
        (De, Error::TooLateToCancel { deadline }) => format!(
            "Eine Stornierung ist telefonisch leider nur bis {} möglich. Soll Sie jemand zurückrufen?",
            speak_time(language, tz, *deadline)
        ),
        (En, Error::TooLateToReschedule { deadline }) => format!(
            "I'm sorry, it can only be moved by phone until {}. Shall I ask someone to call you back?",
            speak_time(language, tz, *deadline)
        ),
        (De, Error::TooLateToReschedule { deadline }) => format!(
            "Eine Verschiebung ist telefonisch leider nur bis {} möglich. Soll Sie jemand zurückrufen?",
            speak_time(language, tz, *deadline)
        ),
        (En, Error::RescheduleLimitReached { max }) => {
            format!("This appointment has been moved {max} time(s) already, the most we can do by phone. Shall I ask someone to call you back?")
        }
        (De, Error::RescheduleLimitReached { max }) => {
            format!("Dieser Termin wurde schon {max}-mal verschoben, öfter geht es telefonisch nicht. Soll Sie jemand zurückrufen?")
        }
        (En, _) => "I'm sorry, I could not do that.".into(),
        (De, _) => "Das konnte ich leider nicht erledigen.".into(),
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
