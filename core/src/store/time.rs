//! Timestamps in the database: UTC, `YYYY-MM-DD HH:MM:SS.ffffff` (the Laravel
//! form, fixed width so text order is time order).

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

/// A list of starts as stored (a JSON array of UTC RFC 3339 strings).
pub(crate) fn slots_to_db(slots: &[DateTime<Utc>]) -> Result<String> {
    let list: Vec<String> = slots.iter().map(crate::booking::format_utc).collect();
    Ok(serde_json::to_string(&list)?)
}

pub(crate) fn slots_from_db(text: &str) -> Result<Vec<DateTime<Utc>>> {
    let list: Vec<String> = serde_json::from_str(text)?;
    list.iter()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| Error::Storage(format!("bad slot in database: {t:?}")))
        })
        .collect()
}
