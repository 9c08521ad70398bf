//! Transient refusals of a database server, retried inside core: a
//! deadlock or a serialization failure rolls the whole transaction back,
//! and running it again is the server's own advice (PostgreSQL 40001,
//! 40P01, 55P03; MySQL/MariaDB 1213, 1205). A caller sees `storage_busy`
//! only when every retry met one again.

use crate::Error;
use std::time::Duration;

/// How often and how far apart a write is run again after a transient refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs after the first (0: never retried).
    pub retries: u32,
    /// The ceiling of the first wait; each later one doubles it.
    pub base: Duration,
    /// No wait is longer.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// 6 retries within about half a second in all: a deadlock's winner
    /// commits in milliseconds, so the loser's first retry usually passes.
    fn default() -> Self {
        RetryPolicy { retries: 6, base: Duration::from_millis(2), cap: Duration::from_millis(200) }
    }
}

/// Does this error mean "the same transaction may pass if run again"?
pub fn is_transient(error: &Error) -> bool {
    matches!(error, Error::StorageBusy(_))
}

/// After the `tried`-th run (1: the first) failed with `error`: how long
/// to wait before the next, or `None` to give up. `jitter` in `[0, 1)`
/// places the wait between half the ceiling and the ceiling ("equal
/// jitter"): two processes that deadlocked each other do not come back at
/// the same moment, and none comes back at once.
pub fn retry_delay(policy: &RetryPolicy, error: &Error, tried: u32, jitter: f64) -> Option<Duration> {
    if !is_transient(error) || tried == 0 || tried > policy.retries {
        return None;
    }
    let doubled = policy.base.saturating_mul(1u32 << (tried - 1).min(20));
    let ceiling = doubled.min(policy.cap);
    Some(ceiling.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0))
}

/// A small seeded generator for the jitter (SplitMix64): the same seed
/// gives the same waits, so a test can pin them.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter(seed)
    }

    /// A seed that differs between processes and moments (the default).
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Jitter((nanos as u64) ^ (u64::from(std::process::id()) << 32))
    }

    /// The next value in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What retries did in one store, for tests and stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryStats {
    /// Runs started again after a transient refusal.
    pub retried: u64,
    /// Writes that met a transient refusal on every run (answered `storage_busy`).
    pub gave_up: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Error {
        Error::StorageBusy("postgres 40P01: deadlock detected".into())
    }

    #[test]
    fn transient_errors_are_retried_a_bounded_number_of_times() {
        let p = RetryPolicy::default();
        for tried in 1..=6 {
            assert!(retry_delay(&p, &busy(), tried, 0.5).is_some(), "run {tried}");
        }
        assert_eq!(retry_delay(&p, &busy(), 7, 0.5), None, "the seventh failure is the last");
        assert_eq!(retry_delay(&p, &Error::Storage("postgres 23505: duplicate key".into()), 1, 0.5), None);
        assert_eq!(retry_delay(&p, &Error::StorageUnavailable("connection refused".into()), 1, 0.5), None);
        assert_eq!(retry_delay(&RetryPolicy { retries: 0, ..p }, &busy(), 1, 0.5), None);
    }

    #[test]
    fn waits_double_up_to_the_cap_within_half_and_whole_ceiling() {
        let p = RetryPolicy { retries: 10, base: Duration::from_millis(10), cap: Duration::from_millis(50) };
        let at = |tried, jitter| retry_delay(&p, &busy(), tried, jitter).expect("retried");
        assert_eq!(at(1, 0.0), Duration::from_millis(5));
        assert_eq!(at(2, 0.0), Duration::from_millis(10));
        assert_eq!(at(3, 0.0), Duration::from_millis(20));
        assert_eq!(at(4, 0.0), Duration::from_millis(25), "capped at 50 ms, half of it at least");
        assert!(at(10, 0.999_999) <= Duration::from_millis(50));
        assert_eq!(at(2, 2.0), Duration::from_millis(20), "jitter outside [0, 1) is clamped");
    }

    #[test]
    fn the_jitter_is_seeded_and_spread() {
        let draw = |seed| {
            let mut j = Jitter::new(seed);
            (0..1000).map(|_| j.next_unit()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7), "the same seed, the same waits");
        assert_ne!(draw(7), draw(8));
        let values = draw(42);
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let low = values.iter().filter(|v| **v < 0.5).count();
        assert!((400..600).contains(&low), "about half below 0.5: {low}");
    }
}
