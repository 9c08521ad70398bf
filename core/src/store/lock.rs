//! What a write locks besides the rows it writes. A booking reads before it
//! writes ("is there a customer with this phone?", "how many are booked at
//! this start?"); on a database server another process may do the same at
//! the same moment, so the write first takes locks on exactly what those
//! reads decide about: the known caller's phone, the slot, the email, the
//! booking's own key. Two bookings of different callers at different times
//! take different locks and run in parallel, in one company or many.
//!
//! The decisions (which locks, their keys, their order) are pure functions
//! here; the stores only take the keys they are given (`Tx::lock`).

use crate::ids::{AppointmentId, CompanyId, ServiceId};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

/// Something a write transaction holds until it ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lock {
    /// A known caller's customer, by (company, E.164 phone): one customer per known phone.
    Phone(CompanyId, String),
    /// An email in a company: the check that it is free and the write that takes it.
    Email(CompanyId, String),
    /// One booking's idempotency key: the same (call, service, start) twice at once is one appointment.
    Booking(CompanyId, String),
    /// A start of a service: its capacity is counted at that start.
    Slot(ServiceId, DateTime<Utc>),
    /// [`SPAN_MINUTES`] of a service's time, from the minute given (a
    /// multiple of the span): an offered start is gone when an appointment
    /// overlaps it, and two overlapping appointments always share a span.
    Span(ServiceId, i64),
    /// An appointment being cancelled or moved.
    Appointment(AppointmentId),
}

/// The length of a [`Lock::Span`].
pub const SPAN_MINUTES: i64 = 30;

/// At most this many spans per booking (a day): a longer stay locks its first day only.
pub const MAX_SPANS: i64 = 24 * 60 / SPAN_MINUTES;

impl Lock {
    /// A stable 64-bit key: the same in every process and every build
    /// (SHA-256, not std's hasher, whose output may change between Rust
    /// releases, and processes of two releases may share a database). Two
    /// locks with one key (a hash collision) only wait for each other.
    pub fn key(&self) -> i64 {
        let text = match self {
            Lock::Phone(company, phone) => format!("phone\0{company}\0{phone}"),
            Lock::Email(company, email) => format!("email\0{company}\0{email}"),
            Lock::Booking(company, key) => format!("booking\0{company}\0{key}"),
            Lock::Slot(service, start) => format!("slot\0{service}\0{}", start.timestamp()),
            Lock::Span(service, minute) => format!("span\0{service}\0{minute}"),
            Lock::Appointment(id) => format!("appointment\0{id}"),
        };
        let digest = Sha256::digest(text.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

/// The keys of `locks` in the order every process takes them: ascending,
/// each once. Two writes that take overlapping sets, each in this order and
/// in one call, cannot wait for each other in a circle.
pub fn lock_order(locks: &[Lock]) -> Vec<i64> {
    let mut keys: Vec<i64> = locks.iter().map(Lock::key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The spans `[start, start + length)` touches (at most [`MAX_SPANS`]).
/// Two stretches of time that overlap share an instant, and the span
/// holding that instant is in both lists: so two bookings whose times
/// overlap always wait for each other, and others never do.
pub fn spans(service: ServiceId, start: DateTime<Utc>, length: Duration) -> Vec<Lock> {
    let first = start.timestamp().div_euclid(60 * SPAN_MINUTES);
    // The last instant inside the stretch (it ends before `start + length`).
    let end = (start + length.max(Duration::seconds(1))).timestamp() - 1;
    let last = end.div_euclid(60 * SPAN_MINUTES).min(first + MAX_SPANS - 1);
    (first..=last).map(|n| Lock::Span(service, n * SPAN_MINUTES)).collect()
}

/// What a booking locks: its key, the known caller's phone, the email it
/// may store, and `slot` (its [`slot_locks`]).
pub fn booking_locks(
    company: CompanyId,
    key: &str,
    phone: Option<&str>,
    email: Option<&str>,
    slot: Vec<Lock>,
) -> Vec<Lock> {
    let mut locks = vec![Lock::Booking(company, key.to_string())];
    locks.extend(phone.map(|p| Lock::Phone(company, p.to_string())));
    locks.extend(email.map(|e| Lock::Email(company, e.to_string())));
    locks.extend(slot);
    locks
}

/// The slot a booking (or a move to `start`) locks when a rule counts it:
/// with a capacity, the start (capacity is counted per start); with a
/// remembered answer (`availability`: how long an appointment keeps the
/// host) and no capacity, the spans its time covers (a start is gone when
/// anything overlaps it). Without either rule it touches no slot: it is
/// made whatever else is booked, so it need not wait for anyone.
pub fn slot_locks(
    service: ServiceId,
    start: DateTime<Utc>,
    capacity: Option<i64>,
    availability: Option<Duration>,
) -> Vec<Lock> {
    match (capacity, availability) {
        (Some(_), _) => vec![Lock::Slot(service, start)],
        (None, Some(length)) => spans(service, start, length),
        (None, None) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, h, m, 0).single().expect("valid")
    }

    #[test]
    fn keys_are_stable_across_builds() {
        // Fixed values: a change here means two releases on one database would not see each other's locks.
        // SHA-256 of "appointment\07", its first 8 bytes big-endian (Python: hashlib.sha256(b"appointment\x007")).
        assert_eq!(Lock::Appointment(AppointmentId(7)).key(), -8_420_416_095_607_213_536);
        assert_ne!(Lock::Phone(CompanyId(1), "+49151".into()).key(), Lock::Phone(CompanyId(2), "+49151".into()).key());
        assert_ne!(Lock::Phone(CompanyId(1), "x".into()).key(), Lock::Email(CompanyId(1), "x".into()).key());
    }

    #[test]
    fn the_order_is_sorted_and_each_key_once() {
        let a = Lock::Phone(CompanyId(1), "+491".into());
        let b = Lock::Slot(ServiceId(1), at(10, 0));
        let c = Lock::Booking(CompanyId(1), "k".into());
        let one = lock_order(&[a.clone(), b.clone(), c.clone(), a.clone()]);
        let other = lock_order(&[c, b, a]);
        assert_eq!(one, other, "any order of the same locks is taken in one order");
        assert_eq!(one.len(), 3);
        assert!(one.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn overlapping_times_share_a_span_and_others_do_not() {
        let s = ServiceId(3);
        let of = |h, m, minutes| lock_order(&spans(s, at(h, m), Duration::minutes(minutes)));
        let shared = |x: &[i64], y: &[i64]| x.iter().any(|k| y.contains(k));
        // 10:00-10:45 and 10:40-11:00 overlap; 10:00-10:30 and 10:30-11:00 touch only.
        assert!(shared(&of(10, 0, 45), &of(10, 40, 20)));
        assert!(!shared(&of(10, 0, 30), &of(10, 30, 30)));
        assert!(shared(&of(10, 15, 10), &of(10, 20, 5)));
        assert!(!shared(&of(10, 0, 15), &of(11, 0, 15)));
        assert_eq!(spans(s, at(10, 0), Duration::minutes(90)).len(), 3);
        assert_eq!(spans(s, at(10, 0), Duration::days(3)).len() as i64, MAX_SPANS);
        // Another service's time is its own.
        assert!(!shared(&of(10, 0, 30), &lock_order(&spans(ServiceId(4), at(10, 0), Duration::minutes(30)))));
    }

    #[test]
    fn a_booking_locks_what_its_rules_read() {
        let (c, s, t) = (CompanyId(1), ServiceId(2), at(9, 0));
        let plain = booking_locks(c, "k", None, None, slot_locks(s, t, None, None));
        assert_eq!(plain, vec![Lock::Booking(c, "k".into())], "an anonymous caller without rules waits for nobody");
        let known = booking_locks(c, "k", Some("+49151"), Some("a@b.de"), slot_locks(s, t, Some(2), None));
        assert_eq!(
            known,
            vec![
                Lock::Booking(c, "k".into()),
                Lock::Phone(c, "+49151".into()),
                Lock::Email(c, "a@b.de".into()),
                Lock::Slot(s, t)
            ]
        );
        // Capacity counts per start, even with a remembered answer.
        assert_eq!(slot_locks(s, t, Some(1), Some(Duration::minutes(60))), vec![Lock::Slot(s, t)]);
        assert_eq!(slot_locks(s, t, None, Some(Duration::minutes(60))), spans(s, t, Duration::minutes(60)));
    }
}
