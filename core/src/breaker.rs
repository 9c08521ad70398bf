//! The circuit breaker in front of Cal.com, one per (API base, API key). Its
//! state lives in the store so every worker process sees the same breaker.
//! The rules are pure functions of (state, event, now, policy).

use crate::appointment::str_enum;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

str_enum!(
    /// `closed`: calls go through; `open`: calls wait until `open_until`;
    /// `half_open`: one probe is out, everyone else waits for its answer.
    BreakerState { Closed => "closed", Open => "open", HalfOpen => "half_open" }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breaker {
    /// `<api base>|<hash of the API key>`: never the key itself.
    pub key: String,
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Open: when a probe may go; half-open: when the probe counts as lost.
    pub open_until: Option<DateTime<Utc>>,
    /// The cool-down used for the last opening; it doubles up to the cap.
    pub cooldown_secs: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive retryable failures that open the breaker.
    pub failure_threshold: u32,
    pub initial_cooldown: Duration,
    pub max_cooldown: Duration,
    /// How long a half-open probe may take before another may go.
    pub probe_timeout: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            initial_cooldown: Duration::seconds(30),
            max_cooldown: Duration::minutes(5),
            probe_timeout: Duration::seconds(60),
        }
    }
}

impl Breaker {
    pub fn closed(key: &str, now: DateTime<Utc>) -> Self {
        Breaker {
            key: key.to_string(),
            state: BreakerState::Closed,
            consecutive_failures: 0,
            open_until: None,
            cooldown_secs: 0,
            updated_at: now,
        }
    }
}

/// What a worker may do with a job for this breaker's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Call Cal.com.
    Go,
    /// Call Cal.com as the half-open probe (the new state is to be saved first).
    Probe(Breaker),
    /// Don't call; put the job back until then, without using an attempt.
    Wait(DateTime<Utc>),
}

/// Asks the breaker before a call.
pub fn admit(b: &Breaker, now: DateTime<Utc>, policy: &BreakerPolicy) -> Admission {
    match (b.state, b.open_until) {
        (BreakerState::Closed, _) => Admission::Go,
        (_, Some(until)) if now < until => Admission::Wait(until),
        // Open and cooled down, or a probe that never answered: send a probe.
        _ => Admission::Probe(Breaker {
            state: BreakerState::HalfOpen,
            open_until: Some(now + policy.probe_timeout),
            updated_at: now,
            ..b.clone()
        }),
    }
}

/// What a call's answer means for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any answer that shows Cal.com is up (success, or a 4xx about the request).
    Healthy,
    /// Network error, timeout, 408 or 5xx.
    Unhealthy,
}

/// The breaker after a call's outcome.
pub fn record(b: &Breaker, outcome: Outcome, now: DateTime<Utc>, policy: &BreakerPolicy) -> Breaker {
    match outcome {
        Outcome::Healthy => Breaker::closed(&b.key, now),
        Outcome::Unhealthy => {
            let failures = b.consecutive_failures.saturating_add(1);
            let reopen = b.state == BreakerState::HalfOpen;
            if !reopen && failures < policy.failure_threshold {
                return Breaker { consecutive_failures: failures, updated_at: now, ..b.clone() };
            }
            let cooldown = if reopen {
                (Duration::seconds(b.cooldown_secs) * 2).min(policy.max_cooldown)
            } else {
                policy.initial_cooldown
            };
            Breaker {
                key: b.key.clone(),
                state: BreakerState::Open,
                consecutive_failures: failures,
                open_until: Some(now + cooldown),
                cooldown_secs: cooldown.num_seconds(),
                updated_at: now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn opens_probes_and_grows_to_the_cap() {
        let p = BreakerPolicy::default();
        let t = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("valid");
        let mut b = Breaker::closed("k", t);
        for _ in 0..4 {
            b = record(&b, Outcome::Unhealthy, t, &p);
            assert_eq!((b.state, admit(&b, t, &p)), (BreakerState::Closed, Admission::Go));
        }
        b = record(&b, Outcome::Unhealthy, t, &p);
        assert_eq!(b.state, BreakerState::Open);
        assert_eq!(admit(&b, t, &p), Admission::Wait(t + Duration::seconds(30)));
        let mut now = t + Duration::seconds(30);
        let mut cooldowns = vec![];
        for _ in 0..6 {
            let Admission::Probe(probing) = admit(&b, now, &p) else { panic!("a probe is due") };
            assert!(matches!(admit(&probing, now, &p), Admission::Wait(_)), "only one probe");
            b = record(&probing, Outcome::Unhealthy, now, &p);
            cooldowns.push(b.cooldown_secs);
            now = b.open_until.expect("open");
        }
        assert_eq!(cooldowns, [60, 120, 240, 300, 300, 300]);
        let Admission::Probe(probing) = admit(&b, now, &p) else { panic!("a probe is due") };
        assert_eq!(record(&probing, Outcome::Healthy, now, &p).state, BreakerState::Closed);
    }
}
