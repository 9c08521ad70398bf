//! Timestamps in the database: UTC, `YYYY-MM-DD HH:MM:SS.ffffff` (the Laravel
//! form, fixed width so text order is time order).

use super::Offered;
use crate::{Error, Result};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDateTime, Utc};
use std::sync::OnceLock;

const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// The format, parsed once (a booking writes half a dozen timestamps).
fn items() -> &'static [Item<'static>] {
    static ITEMS: OnceLock<Vec<Item<'static>>> = OnceLock::new();
    ITEMS.get_or_init(|| StrftimeItems::new(FORMAT).collect())
}

pub(crate) fn to_db(t: DateTime<Utc>) -> String {
    t.format_with_items(items().iter()).to_string()
}

pub(crate) fn from_db(s: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .map(|n| n.and_utc())
        .map_err(|_| Error::Storage(format!("bad timestamp in database: {s:?}")))
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
