//! Timestamps in the database: UTC, `YYYY-MM-DD HH:MM:SS.ffffff` (the Laravel
//! form, fixed width so text order is time order).

use crate::{Error, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

pub(crate) fn to_db(t: DateTime<Utc>) -> String {
    t.format(FORMAT).to_string()
}

pub(crate) fn from_db(s: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .map(|n| n.and_utc())
        .map_err(|_| Error::Storage(format!("bad timestamp in database: {s:?}")))
}
