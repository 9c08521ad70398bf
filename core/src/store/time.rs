//! Timestamps in the database: UTC, `YYYY-MM-DD HH:MM:SS.ffffff` (the Laravel
//! form, fixed width so text order is time order).

use super::Offered;
use crate::{Error, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// `FORMAT` written digit by digit: a booking writes half a dozen
/// timestamps, and chrono's formatter was 7% of its instructions
/// (callgrind, README). Years outside 0..=9999 never reach here (starts are
/// refused outside 1970–9999; clocks are now).
pub(crate) fn to_db(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let mut out = String::with_capacity(26);
    let mut push = |n: u32, width: u32, after: Option<char>| {
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(i) % 10) as u8));
        }
        if let Some(c) = after {
            out.push(c);
        }
    };
    let year = u32::try_from(t.year()).unwrap_or(0).min(9999);
    push(year, 4, Some('-'));
    push(t.month(), 2, Some('-'));
    push(t.day(), 2, Some(' '));
    push(t.hour(), 2, Some(':'));
    push(t.minute(), 2, Some(':'));
    // A leap second (nanosecond >= 1e9) is written as :59.999999, as chrono wrote it.
    push(t.second(), 2, Some('.'));
    push((t.nanosecond() / 1000).min(999_999), 6, None);
    out
}

pub(crate) fn from_db(s: &str) -> Result<DateTime<Utc>> {
    fixed_width(s)
        .map(Ok)
        .unwrap_or_else(|| {
            NaiveDateTime::parse_from_str(s, FORMAT).or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        })
        .map(|n| n.and_utc())
        .map_err(|_| Error::Storage(format!("bad timestamp in database: {s:?}")))
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` read digit by digit: what callbook writes,
/// in about 10 ns where `parse_from_str` (which reads the format string
/// again at each call) took 230 ns, measured in a release build. `None` for
/// anything else, which the general parser then reads or refuses; the
/// overview reads tens of thousands.
fn fixed_width(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 26 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' || b[19] != b'.'
    {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(number(0, 4)?).ok()?, number(5, 7)?, number(8, 10)?)?;
    let time =
        chrono::NaiveTime::from_hms_micro_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?, number(20, 26)?)?;
    Some(date.and_time(time))
}

/// Offered starts as stored: `{"starts": [UTC RFC 3339, ...], "length_minutes": n}`
/// (schema v4 stored the bare array, still read).
pub(crate) fn slots_to_db(offered: &Offered) -> Result<String> {
    let starts: Vec<String> = offered.starts.iter().map(crate::utc::format_utc).collect();
    Ok(serde_json::json!({"starts": starts, "length_minutes": offered.length_minutes}).to_string())
}

pub(crate) fn slots_from_db(text: &str) -> Result<Offered> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    let (list, length_minutes) = match &value {
        serde_json::Value::Array(_) => (value.clone(), None),
        _ => (value["starts"].clone(), value["length_minutes"].as_i64()),
    };
    let list: Vec<String> = serde_json::from_value(list)?;
    let starts = list
        .iter()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| Error::Storage(format!("bad slot in database: {t:?}")))
        })
        .collect::<Result<_>>()?;
    Ok(Offered { starts, length_minutes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_width_reader_agrees_with_the_general_one() {
        let general = |s: &str| NaiveDateTime::parse_from_str(s, FORMAT).ok();
        for s in [
            "2030-01-01 08:00:00.000000",
            "2024-02-29 23:59:59.999999",
            "1970-01-01 00:00:00.000001",
            "9999-12-31 23:59:59.123456",
            "2023-02-29 10:00:00.000000", // no such day
            "2030-13-01 10:00:00.000000",
            "2030-01-01 24:00:00.000000",
            "2030-01-01 10:60:00.000000",
            "2030-01-01 10:00:60.000000", // a leap second: left to the general parser
            "2030-01-01T10:00:00.000000",
            "2030-01-01 10:00:00.00000x",
            "+030-01-01 10:00:00.000000",
        ] {
            // The fast path may leave a string to the general parser, never read it otherwise.
            assert!(fixed_width(s).is_none() || fixed_width(s) == general(s), "{s}");
            assert_eq!(from_db(s).ok(), general(s).map(|n| n.and_utc()), "{s}");
        }
        assert!(fixed_width("2024-02-29 23:59:59.999999").is_some(), "what callbook writes takes the fast path");
        assert_eq!(fixed_width("2030-01-01 10:00:00"), None, "the short form is the general parser's");
        assert!(from_db("2030-01-01 10:00:00").is_ok() && from_db("2030-02-30 10:00:00.000000").is_err());
        let t = from_db("2030-01-01 08:00:00.250000").expect("reads");
        assert_eq!(to_db(t), "2030-01-01 08:00:00.250000");
    }

    #[test]
    fn the_digit_writer_agrees_with_chrono() {
        let mut seconds: i64 = 0;
        // From 1970 to 9999 in uneven steps, with every kind of fraction.
        while seconds < 253_402_300_799 {
            let nanos = (seconds as u32).wrapping_mul(2_654_435_761) % 1_000_000_000;
            let t = DateTime::from_timestamp(seconds, nanos).expect("in range");
            assert_eq!(to_db(t), t.format(FORMAT).to_string(), "{t:?}");
            seconds += 86_399_993;
        }
    }
}
