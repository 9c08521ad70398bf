//! When an appointment starts: ISO 8601, or a date and a wall-clock time in
//! the branch's time zone, where the date may be a relative word in German or
//! English ("morgen", "next friday").

use crate::error::{Error, Problem};
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

/// How the caller named the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartSpec {
    /// ISO 8601: with an offset it is absolute; without, branch-local.
    Iso(String),
    /// A date (ISO, `DD.MM.YYYY` or a relative word) and `HH:MM`, branch-local.
    DateTime { date: String, time: String },
}

/// Parses a time-zone name such as `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<Tz, Error> {
    name.parse::<Tz>().map_err(|_| Error::UnknownTimezone(name.to_string()))
}

/// The problems in a start's syntax, found without knowing the time zone or
/// the time: what a browser can check before sending.
pub fn start_problems(spec: Option<&StartSpec>) -> Vec<Problem> {
    match spec {
        None => vec![Problem::new("start", "start_required", "give a start, or a date and a time")],
        Some(StartSpec::Iso(s)) => match parse_iso(s) {
            Some(_) => vec![],
            None => vec![Problem::new("start", "invalid_start", "the start is not an ISO 8601 date and time")],
        },
        Some(StartSpec::DateTime { date, time }) => {
            let mut problems = vec![];
            if date.trim().is_empty() {
                problems.push(Problem::new("date", "date_required", "give a date"));
            } else if parse_date(date, NaiveDate::MIN).is_none() {
                problems.push(Problem::new(
                    "date",
                    "invalid_date",
                    "the date is not a date (2030-01-08, 08.01.2030, today, morgen, friday, ...)",
                ));
            }
            if time.trim().is_empty() {
                problems.push(Problem::new("time", "time_required", "give a time"));
            } else if parse_time(time).is_none() {
                problems.push(Problem::new("time", "invalid_time", "the time is not HH:MM"));
            }
            problems
        }
    }
}

enum Iso {
    Absolute(DateTime<Utc>),
    Local(NaiveDateTime),
}

/// Years a start may fall in: no booking is made before 1970, and beyond
/// 9999 the calendar arithmetic itself overflows.
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;
/// The largest UTC offset any zone has (Kiribati, UTC+14).
const MAX_OFFSET_SECS: i32 = 14 * 3600;

/// A time people can mean: no leap second (`23:59:60`).
fn plain(t: NaiveTime) -> bool {
    t.nanosecond() < 1_000_000_000
}

fn plausible(dt: NaiveDateTime) -> bool {
    YEARS.contains(&dt.year()) && plain(dt.time())
}

fn parse_iso(s: &str) -> Option<Iso> {
    let s = s.trim();
    let absolute = |dt: DateTime<chrono::FixedOffset>| {
        (plausible(dt.naive_local()) && dt.offset().local_minus_utc().abs() <= MAX_OFFSET_SECS)
            .then(|| Iso::Absolute(dt.with_timezone(&Utc)))
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return absolute(dt);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return absolute(dt);
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return plausible(dt).then_some(Iso::Local(dt));
        }
    }
    None
}

/// Reads `HH:MM` (also `H:MM`, `HH:MM:SS`, `HH.MM`, `14 Uhr`).
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.trim().to_lowercase();
    let s = s.strip_suffix("uhr").map(str::trim).unwrap_or(&s);
    if let Ok(h) = s.parse::<u32>() {
        return NaiveTime::from_hms_opt(h, 0, 0);
    }
    for fmt in ["%H:%M", "%H:%M:%S", "%H.%M"] {
        if let Ok(t) = NaiveTime::parse_from_str(s, fmt) {
            return plain(t).then_some(t);
        }
    }
    None
}

const WEEKDAYS: &[(&str, Weekday)] = &[
    ("monday", Weekday::Mon),
    ("montag", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("dienstag", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("mittwoch", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("donnerstag", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("freitag", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("samstag", Weekday::Sat),
    ("sonnabend", Weekday::Sat),
    ("sunday", Weekday::Sun),
    ("sonntag", Weekday::Sun),
];

/// Reads a date relative to `today` (the branch's local date). A weekday name
/// means the next such day after today.
pub fn parse_date(s: &str, today: NaiveDate) -> Option<NaiveDate> {
    let lowered = s.trim().to_lowercase();
    let mut word = lowered.as_str();
    for prefix in ["next ", "on ", "this ", "nächsten ", "naechsten ", "nächster ", "am ", "diesen "] {
        word = word.strip_prefix(prefix).unwrap_or(word);
    }
    let word = word.trim_end_matches(['.', ',']).trim();
    let offset = match word {
        "today" | "heute" => Some(0),
        "tomorrow" | "morgen" => Some(1),
        "day after tomorrow" | "the day after tomorrow" | "übermorgen" | "uebermorgen" => Some(2),
        _ => None,
    };
    if let Some(days) = offset {
        return today.checked_add_signed(Duration::days(days));
    }
    if let Some((_, wd)) = WEEKDAYS.iter().find(|(name, _)| *name == word) {
        let ahead = (wd.num_days_from_monday() + 7 - today.weekday().num_days_from_monday()) % 7;
        let ahead = if ahead == 0 { 7 } else { ahead };
        return today.checked_add_signed(Duration::days(i64::from(ahead)));
    }
    NaiveDate::parse_from_str(word, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(word, "%d.%m.%Y"))
        .ok()
        .filter(|d| YEARS.contains(&d.year()))
}

/// The instant a start names, in UTC. `now` decides what "today" is in `tz`.
pub fn resolve_start(spec: &StartSpec, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    // Parsed once; only a failure asks `start_problems` for every problem.
    let invalid = || {
        let mut problems = start_problems(Some(spec));
        if problems.is_empty() {
            problems.push(Problem::new("start", "invalid_start", "the start is out of range"));
        }
        Error::Invalid(problems)
    };
    let local = match spec {
        StartSpec::Iso(s) => match parse_iso(s) {
            Some(Iso::Absolute(dt)) => return Ok(dt),
            Some(Iso::Local(naive)) => naive,
            None => return Err(invalid()),
        },
        StartSpec::DateTime { date, time } => {
            // A clock past the years a start may have (found by fuzzing:
            // chrono panics on a local time beyond its range).
            if !YEARS.contains(&now.year()) {
                return Err(invalid());
            }
            let today = now.with_timezone(&tz).date_naive();
            match (parse_date(date, today), parse_time(time)) {
                (Some(d), Some(t)) => d.and_time(t),
                _ => return Err(invalid()),
            }
        }
    };
    match tz.from_local_datetime(&local) {
        LocalResult::Single(dt) => Ok(dt.with_timezone(&Utc)),
        // On the autumn clock change the earlier of the two is what a person means.
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(Error::NonexistentLocalTime(tz.name().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_at_chronos_limit_is_refused_not_a_panic() {
        // Found by fuzzing (fuzz/regressions/start/resolve_start-now-at-chrono-max).
        let spec = StartSpec::DateTime { date: "tomorrow".into(), time: "23:59:59".into() };
        let err = resolve_start(&spec, chrono_tz::Europe::Berlin, DateTime::<Utc>::MAX_UTC).expect_err("refused");
        assert_eq!(err.code(), "invalid_start");
    }

    fn now() -> DateTime<Utc> {
        // A Wednesday.
        Utc.with_ymd_and_hms(2030, 1, 2, 9, 0, 0).single().expect("valid")
    }

    #[test]
    fn relative_words_in_berlin() {
        let tz = parse_timezone("Europe/Berlin").expect("tz");
        let at =
            |d: &str| resolve_start(&StartSpec::DateTime { date: d.into(), time: "14:30".into() }, tz, now()).expect(d);
        assert_eq!(at("morgen").to_rfc3339(), "2030-01-03T13:30:00+00:00");
        assert_eq!(at("übermorgen").to_rfc3339(), "2030-01-04T13:30:00+00:00");
        assert_eq!(at("Friday").to_rfc3339(), "2030-01-04T13:30:00+00:00");
        assert_eq!(at("mittwoch").to_rfc3339(), "2030-01-09T13:30:00+00:00");
        assert_eq!(at("08.01.2030").to_rfc3339(), "2030-01-08T13:30:00+00:00");
    }

    #[test]
    fn absurd_starts_are_refused_before_anything_runs() {
        let tz = parse_timezone("Europe/Berlin").expect("tz");
        let iso = |s: &str| resolve_start(&StartSpec::Iso(s.into()), tz, now()).map_err(|e| e.code().to_string());
        let dated = |d: &str, t: &str| {
            resolve_start(&StartSpec::DateTime { date: d.into(), time: t.into() }, tz, now())
                .map_err(|e| e.code().to_string())
        };
        for bad in [
            "+262142-12-31T23:59:00+00:00",
            "0001-01-01T10:00:00Z",
            "1969-12-31T10:00:00Z",
            "2030-01-08T23:59:60Z",
            "2030-01-08T10:00:00+15:00",
            "2030-01-08T10:00:00-14:30",
        ] {
            assert_eq!(iso(bad), Err("invalid_start".to_string()), "{bad}");
        }
        assert_eq!(dated("+262142-12-31", "10:00"), Err("invalid_date".to_string()));
        assert_eq!(dated("2030-01-08", "23:59:60"), Err("invalid_time".to_string()));
        assert!(iso("2030-01-08T10:00:00+14:00").is_ok() && iso("9999-12-30T10:00:00Z").is_ok());
    }

    #[test]
    fn spring_gap_is_an_error() {
        let tz = parse_timezone("Europe/Berlin").expect("tz");
        let r = resolve_start(&StartSpec::Iso("2030-03-31T02:30".into()), tz, now());
        assert!(matches!(r, Err(Error::NonexistentLocalTime(_))));
    }
}
