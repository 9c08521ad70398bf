//! One Cal.com rate limit per API key, shared by every worker process.
//!
//! Cal.com counts requests per API key in a sliding 60 s window (120 by
//! default, then the key is blocked for 60 s), whichever process sends them.
//! So the window lives in the store, one row per key ([`RateWindow`]), and a
//! worker takes its request slots in a write transaction before it sends
//! (PostgreSQL and MariaDB lock the key's row; SQLite has one writer). What
//! every answer says about the key (`X-RateLimit-Remaining-*` until
//! `X-RateLimit-Reset-*`) and every 429 goes into the same row, so all
//! processes slow down together.
//!
//! The decisions here are pure functions of the stored window and the time:
//! no clock, no database.

use crate::{Error, Result};
use chrono::{DateTime, Duration, TimeZone, Utc};

/// The window Cal.com counts requests in.
pub const WINDOW: Duration = Duration::seconds(60);
/// Requests are counted per second. A request counted in the second that
/// begins at `s` leaves the window at `s + 60 s + 1 s` (the end of its second)
/// plus this slack: Cal.com counts a request when it arrives, a little after
/// the slot was taken, and the clocks of the processes differ slightly.
pub const SLACK: Duration = Duration::seconds(1);

/// The shared state of one rate limit (an API key's default throttler, or
/// one of its routes with a throttler of its own), as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow {
    /// The breaker key of the endpoint (a hash of the API key, never the key),
    /// with the throttler's name for a route that has its own.
    pub key: String,
    /// Requests sent per second (unix seconds, ascending), the last 62 s at most.
    pub sent: Vec<(i64, u32)>,
    /// Cal.com answered 429: nobody sends on this key until then.
    pub blocked_until: Option<DateTime<Utc>>,
    /// What Cal.com said last: requests left, until when.
    pub server: Option<(u32, DateTime<Utc>)>,
}

/// When the requests counted in second `s` leave the window.
fn leaves(second: i64) -> DateTime<Utc> {
    let start = Utc.timestamp_opt(second, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC);
    start + Duration::seconds(1) + WINDOW + SLACK
}

impl RateWindow {
    pub fn new(key: &str) -> Self {
        RateWindow { key: key.to_string(), ..RateWindow::default() }
    }

    /// Requests counted in the window at `now`.
    pub fn in_window(&self, now: DateTime<Utc>) -> u64 {
        self.sent.iter().filter(|(s, _)| leaves(*s) > now).map(|(_, n)| u64::from(*n)).sum()
    }

    /// `sent` as stored: `second:count` pairs separated by commas.
    pub fn sent_to_db(&self) -> String {
        self.sent.iter().map(|(s, n)| format!("{s}:{n}")).collect::<Vec<_>>().join(",")
    }

    /// Reads `sent` as [`RateWindow::sent_to_db`] writes it.
    pub fn sent_from_db(text: &str) -> Result<Vec<(i64, u32)>> {
        let bad = || Error::Storage(format!("unexpected rate window in database: {text:?}"));
        text.split(',')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (s, n) = pair.split_once(':').ok_or_else(bad)?;
                Ok((s.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?))
            })
            .collect()
    }
}

/// Takes `n` request slots at `now` within `limit` requests per window: the
/// window with them counted, or the time enough slots free up (the caller
/// defers its job to then, no attempt used). `n` is at least 1 and at most
/// `limit`. Refused while Cal.com's block lasts, and when Cal.com said the key
/// has fewer than `n` requests left until its reset (other users of the key
/// count there too).
pub fn take(
    window: &RateWindow,
    limit: u32,
    n: u32,
    now: DateTime<Utc>,
) -> std::result::Result<RateWindow, DateTime<Utc>> {
    take_up_to(window, limit, n, n, now).map(|(next, _)| next)
}

/// [`take`] of at least `least` slots and, while the window is less than
/// half full, up to `most`: the window with them counted and how many were
/// taken. A worker takes a few ahead for the jobs it holds, in the same
/// write, and uses them until the end of the next second: when any are
/// taken ahead, all of this take is counted in the next second (present in
/// the window from now, leaving it a second later than if counted now, so
/// a request sent before the end of that second is counted 61 s or more).
/// The ones it does not use are wasted, never sent later. Near the limit,
/// where a wasted slot would be a request not sent, nothing is taken ahead
/// (and writes are few anyway: the limit allows few requests).
pub fn take_up_to(
    window: &RateWindow,
    limit: u32,
    least: u32,
    most: u32,
    now: DateTime<Utc>,
) -> std::result::Result<(RateWindow, u32), DateTime<Utc>> {
    if let Some(until) = window.blocked_until.filter(|u| *u > now) {
        return Err(until);
    }
    let limit = limit.max(1);
    let n = least.clamp(1, limit);
    let mut next = window.clone();
    next.blocked_until = None;
    next.sent.retain(|(s, _)| leaves(*s) > now);
    let counted: u64 = next.sent.iter().map(|(_, c)| u64::from(*c)).sum();
    if counted + u64::from(n) > u64::from(limit) {
        // The oldest seconds leave first: wait until enough of them have.
        let mut must_free = counted + u64::from(n) - u64::from(limit);
        for (s, c) in &next.sent {
            if u64::from(*c) >= must_free {
                return Err(leaves(*s));
            }
            must_free -= u64::from(*c);
        }
        return Err(now + WINDOW);
    }
    let below_half = u64::from(limit / 2).saturating_sub(counted + u64::from(n));
    let ahead = u64::from(most.saturating_sub(n)).min(below_half);
    let mut taken = n + u32::try_from(ahead).unwrap_or(0);
    match next.server {
        Some((left, until)) if until > now && left < n => return Err(until),
        Some((left, until)) if until > now => {
            taken = taken.min(left);
            next.server = Some((left - taken, until));
        }
        _ => next.server = None,
    }
    let second = now.timestamp() + i64::from(taken > n);
    match next.sent.binary_search_by_key(&second, |(s, _)| *s) {
        Ok(i) => next.sent[i].1 = next.sent[i].1.saturating_add(taken),
        Err(i) => next.sent.insert(i, (second, taken)),
    }
    Ok((next, taken))
}

/// The last second (unix) in which slots taken ahead at `now` may be used.
pub fn ahead_usable_until(now: DateTime<Utc>) -> i64 {
    now.timestamp() + 1
}

/// An answer's rate-limit headers (`X-RateLimit-Remaining-*`,
/// `X-RateLimit-Reset-*`), seen at `now`: the key has `remaining` requests
/// until `now + reset`. A later answer of the
/// same period (the reset within a second of the one known) that another
/// process recorded first may say less: the smaller budget is kept.
pub fn observe(window: &RateWindow, remaining: u32, reset: Duration, now: DateTime<Utc>) -> RateWindow {
    let until = now + reset;
    let mut next = window.clone();
    next.server = match window.server {
        Some((left, known)) if known > now && (known - until).num_milliseconds().abs() <= 1000 => {
            Some((left.min(remaining), known.max(until)))
        }
        _ => Some((remaining, until)),
    };
    next
}

/// Cal.com answered 429: the key is blocked until `until` for everyone.
pub fn block(window: &RateWindow, until: DateTime<Utc>) -> RateWindow {
    let mut next = window.clone();
    next.blocked_until = Some(window.blocked_until.map_or(until, |b| b.max(until)));
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 8, 9, 0, 0).single().expect("valid")
    }

    #[test]
    fn the_limit_holds_in_every_window_and_the_wait_is_exact() {
        let clock = ManualClock::new(t0());
        let mut w = RateWindow::new("k");
        // 120 in the first second, then refused until they leave the window.
        for _ in 0..120 {
            w = take(&w, 120, 1, clock.now()).expect("within the limit");
        }
        let until = take(&w, 120, 1, clock.now()).expect_err("the 121st waits");
        assert_eq!(until, t0() + Duration::seconds(62), "end of its second + 60 s + slack");
        clock.advance(Duration::seconds(61));
        assert_eq!(take(&w, 120, 1, clock.now()), Err(until), "still in the window");
        clock.set(until);
        w = take(&w, 120, 1, clock.now()).expect("free again");
        assert_eq!(w.in_window(clock.now()), 1);
    }

    #[test]
    fn a_steady_stream_never_exceeds_the_limit_in_any_60_seconds() {
        // Four "processes" share the window; each asks every 100 ms and
        // sends when allowed. Count the sends in every rolling 60 s.
        let clock = ManualClock::new(t0());
        let mut w = RateWindow::new("k");
        let mut sent = Vec::new();
        for _ in 0..(5 * 60 * 10) {
            for _ in 0..4 {
                if let Ok(next) = take(&w, 120, 1, clock.now()) {
                    w = next;
                    sent.push(clock.now());
                }
            }
            clock.advance(Duration::milliseconds(100));
        }
        let busiest = sent
            .iter()
            .map(|from| sent.iter().filter(|t| **t >= *from && **t < *from + WINDOW).count())
            .max()
            .unwrap_or(0);
        assert_eq!(busiest, 120, "the limit, never more");
        // And the pace is close to the limit: 5 minutes, about 120 a minute.
        assert!(sent.len() >= 5 * 116, "{} sent", sent.len());
        assert!(w.sent.len() <= 63, "at most a window of seconds is kept: {}", w.sent.len());
    }

    #[test]
    fn several_slots_wait_for_enough_to_leave() {
        let mut w = RateWindow::new("k");
        w = take(&w, 3, 1, t0()).expect("1");
        w = take(&w, 3, 1, t0() + Duration::seconds(10)).expect("2");
        // Two at once need both older ones gone... one free slot, two asked:
        // the first second's request must leave.
        assert_eq!(take(&w, 3, 2, t0() + Duration::seconds(20)), Err(t0() + Duration::seconds(62)));
        let w2 = take(&w, 3, 1, t0() + Duration::seconds(20)).expect("one fits");
        assert_eq!(take(&w2, 3, 2, t0() + Duration::seconds(63)), Err(t0() + Duration::seconds(72)));
        // More than the limit at once is the limit.
        assert!(take(&RateWindow::new("k"), 3, 10, t0()).is_ok());
    }

    #[test]
    fn the_server_budget_and_a_block_are_honoured() {
        let w = observe(&RateWindow::new("k"), 1, Duration::seconds(30), t0());
        let w = take(&w, 120, 1, t0()).expect("one left");
        assert_eq!(w.server, Some((0, t0() + Duration::seconds(30))));
        assert_eq!(take(&w, 120, 1, t0() + Duration::seconds(5)), Err(t0() + Duration::seconds(30)));
        // After the reset the budget is forgotten.
        let after = take(&w, 120, 1, t0() + Duration::seconds(30)).expect("reset passed");
        assert_eq!(after.server, None);
        // Another process's answer of the same period saying more does not raise it.
        assert_eq!(observe(&w, 50, Duration::seconds(30), t0()).server, Some((0, t0() + Duration::seconds(30))));
        // A new period replaces it.
        let later = observe(&w, 50, Duration::seconds(30), t0() + Duration::seconds(31));
        assert_eq!(later.server, Some((50, t0() + Duration::seconds(61))));
        // A 429 blocks everyone until the time given, and a block never shrinks.
        let blocked = block(&block(&w, t0() + Duration::seconds(60)), t0() + Duration::seconds(10));
        assert_eq!(take(&blocked, 120, 1, t0() + Duration::seconds(59)), Err(t0() + Duration::seconds(60)));
        assert!(take(&blocked, 120, 1, t0() + Duration::seconds(60)).is_ok());
    }

    #[test]
    fn slots_taken_ahead_count_now_and_never_pass_the_limit_or_the_budget() {
        // Ahead only up to half the limit: 1 asked + 1 ahead of 5.
        let (w, taken) = take_up_to(&RateWindow::new("k"), 5, 1, 8, t0()).expect("free");
        assert_eq!((taken, w.in_window(t0())), (2, 2), "ahead only below half the limit");
        // Past half, exactly what is asked, up to the limit.
        let (w, taken) = take_up_to(&w, 5, 1, 8, t0()).expect("free");
        let (w, _) = take_up_to(&w, 5, 2, 8, t0()).expect("free");
        assert_eq!((taken, w.in_window(t0())), (1, 5), "no more than the limit");
        assert_eq!(take_up_to(&w, 5, 1, 8, t0()), Err(t0() + Duration::seconds(62)));
        let (w, taken) = take_up_to(&RateWindow::new("k"), 1000, 1, 16, t0()).expect("free");
        assert_eq!((taken, w.in_window(t0())), (16, 16), "a high limit: the whole burst in one write");
        // Counted in the next second, usable until its end: each stays 61 s or more.
        assert_eq!(w.sent, vec![(t0().timestamp() + 1, 16)]);
        assert_eq!(ahead_usable_until(t0() + Duration::milliseconds(999)), t0().timestamp() + 1);
        assert_eq!(w.in_window(t0() + Duration::seconds(62)), 16, "used at 1.999 s, still counted at 62 s");
        assert_eq!(w.in_window(t0() + Duration::seconds(63)), 0);
        // An exact take in this second keeps the seconds in order.
        let w = take(&w, 1000, 1, t0()).expect("free");
        assert_eq!(w.sent, vec![(t0().timestamp(), 1), (t0().timestamp() + 1, 16)]);
        let (w, taken) = take_up_to(&RateWindow::new("k"), 120, 2, 1, t0()).expect("free");
        assert_eq!((taken, w.in_window(t0())), (2, 2), "at least the least");
        let budget = observe(&RateWindow::new("k"), 3, Duration::seconds(30), t0());
        let (w, taken) = take_up_to(&budget, 120, 1, 10, t0()).expect("within the budget");
        assert_eq!((taken, w.server), (3, Some((0, t0() + Duration::seconds(30)))));
    }

    #[test]
    fn the_stored_form_round_trips() {
        let w = RateWindow { sent: vec![(1_900_000_000, 3), (1_900_000_001, 117)], ..RateWindow::new("k") };
        assert_eq!(w.sent_to_db(), "1900000000:3,1900000001:117");
        assert_eq!(RateWindow::sent_from_db(&w.sent_to_db()).expect("parses"), w.sent);
        assert_eq!(RateWindow::sent_from_db("").expect("empty"), vec![]);
        assert!(RateWindow::sent_from_db("12:x").is_err());
    }
}
