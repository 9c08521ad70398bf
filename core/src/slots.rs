//! The arithmetic of free starts: which offered starts local appointments
//! leave free, the nearest ones to a wish, a local day's bounds in UTC.
//! Shared by the booking (a remembered answer) and the availability check.

use crate::appointment::Appointment;
use crate::ids::{CompanyId, ServiceId};
use crate::store::Tx;
use crate::Result;
use chrono::{DateTime, Duration, NaiveDate, Utc};

/// The starts of `offered` that callbook has not filled itself. Without a
/// capacity the host takes one appointment at a time: a start is gone when
/// any confirmed appointment overlaps `[start, start + duration)`, each
/// appointment lasting at least `duration` too (Cal.com's event type may
/// be longer than the local service). With a capacity, when that many
/// confirmed appointments share the start.
pub fn free_starts(
    offered: &[DateTime<Utc>],
    local: &[Appointment],
    capacity: Option<i64>,
    duration: Duration,
) -> Vec<DateTime<Utc>> {
    offered
        .iter()
        .copied()
        .filter(|start| match capacity {
            None => {
                !local.iter().any(|a| a.starts_at < *start + duration && *start < a.ends_at.max(a.starts_at + duration))
            }
            Some(c) => (local.iter().filter(|a| a.starts_at == *start).count() as i64) < c,
        })
        .collect()
}

/// Up to `n` of `free` nearest to `wanted` (earlier first on a tie), in time order.
pub fn nearest(free: &[DateTime<Utc>], wanted: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut by_distance: Vec<DateTime<Utc>> = free.iter().copied().filter(|s| *s != wanted).collect();
    by_distance.sort_by_key(|s| ((*s - wanted).num_seconds().abs(), *s));
    by_distance.truncate(n);
    by_distance.sort_unstable();
    by_distance
}

/// How long an appointment keeps the host: the local service's duration,
/// or Cal.com's event type length when that is longer.
pub(crate) fn occupied(service_minutes: i64, calcom_minutes: Option<i64>) -> Duration {
    Duration::minutes(service_minutes.max(calcom_minutes.unwrap_or(0)))
}

/// The day's confirmed appointments of a service that may overlap its starts.
pub(crate) fn local_appointments(
    tx: &mut dyn Tx,
    company: CompanyId,
    service: ServiceId,
    day: NaiveDate,
    tz: chrono_tz::Tz,
    duration: Duration,
) -> Result<Vec<Appointment>> {
    let (from, to) = day_bounds(day, tz);
    tx.appointments_between(company, service, from - duration, to + duration)
}

/// Local midnight to local midnight, in UTC.
pub(crate) fn day_bounds(day: NaiveDate, tz: chrono_tz::Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = |d: NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(tz).earliest())
            .map_or_else(|| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(), |t| t.with_timezone(&Utc))
    };
    (midnight(day), midnight(day.succ_opt().unwrap_or(day)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 8, h, m, 0).single().unwrap_or_default()
    }

    #[test]
    fn nearest_alternatives() {
        let free = [at(8, 0), at(9, 0), at(9, 30), at(11, 0), at(12, 0)];
        assert_eq!(nearest(&free, at(10, 0), 3), [at(9, 0), at(9, 30), at(11, 0)]);
        assert_eq!(nearest(&free, at(7, 0), 2), [at(8, 0), at(9, 0)]);
        assert_eq!(nearest(&free, at(9, 0), 1), [at(9, 30)]);
        assert!(nearest(&[], at(9, 0), 3).is_empty());
    }
}
