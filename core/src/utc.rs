//! Instants as callbook writes them at its edges: UTC RFC 3339 with a `Z`
//! and seconds precision (`2030-01-08T13:00:00Z`), in JSON and in text.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// UTC RFC 3339 with a `Z`, seconds precision: `2030-01-08T13:00:00Z`.
pub fn format_utc(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_utc(t))
}

pub(crate) fn rfc3339_list<S: Serializer>(list: &[DateTime<Utc>], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(list.iter().map(format_utc))
}

pub(crate) fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_utc(t)),
        None => s.serialize_none(),
    }
}
