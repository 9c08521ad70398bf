//! The outbox job queue: jobs live in the same database as the appointments,
//! are written in the booking transaction, and are claimed with a lease.
//!
//! Every state change is decided by [`transition`], a pure function; the
//! stores only apply its answer (guarded by the lease token), so the rules are
//! tested without a database or a clock.

use crate::appointment::str_enum;
use crate::ids::{AppointmentId, CompanyId, JobId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

str_enum!(
    /// What a job does at Cal.com.
    JobKind {
        Create => "calcom.create",
        UpdateAttendee => "calcom.update_attendee",
        Cancel => "calcom.cancel",
        Reschedule => "calcom.reschedule",
    }
);

str_enum!(
    /// `available` → `running` → `completed` | `retryable` | `discarded`, plus `cancelled`.
    JobState {
        Available => "available",
        Running => "running",
        Completed => "completed",
        Retryable => "retryable",
        Discarded => "discarded",
        Cancelled => "cancelled",
    }
);

impl JobState {
    /// Finished states never change again.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Completed | JobState::Discarded | JobState::Cancelled)
    }
}

/// Retry policy. Defaults from the original design: first attempt plus 3
/// retries, backoff 1 s, 5 s, 30 s, 30 s per request.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub max_attempts: u32,
    /// Delay before retry n (the last entry repeats).
    pub backoff: Vec<Duration>,
    /// Spread each delay by up to ± this fraction (0 = none).
    pub jitter: f64,
    /// How long a claimed job stays leased; must exceed the request timeout.
    pub lease: Duration,
    /// Longest wait a `Retry-After` or rate-limit header may impose.
    pub max_retry_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: 4,
            backoff: vec![Duration::seconds(1), Duration::seconds(5), Duration::seconds(30)],
            jitter: 0.0,
            lease: Duration::seconds(90),
            max_retry_after: Duration::minutes(10),
        }
    }
}

/// The delay before the retry that follows failed attempt `attempt` (1-based).
/// `jitter_unit` is a sample in [0, 1) from the injected randomness; a server's
/// `Retry-After` (capped) wins when it is longer.
pub fn retry_delay(policy: &Policy, attempt: u32, retry_after: Option<Duration>, jitter_unit: f64) -> Duration {
    let index = (attempt.max(1) as usize - 1).min(policy.backoff.len().saturating_sub(1));
    let base = policy.backoff.get(index).copied().unwrap_or_else(Duration::zero);
    let spread = policy.jitter.clamp(0.0, 1.0) * (2.0 * jitter_unit.clamp(0.0, 1.0) - 1.0);
    let millis = (base.num_milliseconds() as f64 * (1.0 + spread)).round() as i64;
    let backoff = Duration::milliseconds(millis.max(0));
    match retry_after {
        Some(wait) => backoff.max(wait.min(policy.max_retry_after)),
        None => backoff,
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub appointment_id: AppointmentId,
    pub company_id: CompanyId,
    pub kind: JobKind,
    pub state: JobState,
    /// Attempts started so far (a claim starts one; a deferral gives it back).
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub locked_by: Option<String>,
    /// Bumped by every claim: a worker that lost its lease holds an old token.
    pub lease_token: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Job {
    /// The part of a job that [`transition`] reads and writes.
    pub fn snapshot(&self) -> JobSnapshot {
        JobSnapshot {
            state: self.state,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            run_at: self.run_at,
            locked_until: self.locked_until,
            lease_token: self.lease_token,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub appointment_id: AppointmentId,
    pub company_id: CompanyId,
    pub kind: JobKind,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSnapshot {
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub lease_token: i64,
}

/// What happens to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    /// A worker takes it until `lease_until`.
    Claim { lease_until: DateTime<Utc> },
    /// The attempt succeeded.
    Succeed,
    /// The attempt failed; `retry_at` is when a retryable failure may run again.
    Fail { retryable: bool, retry_at: DateTime<Utc> },
    /// Not run now (open breaker, rate limit): back to the queue without using an attempt.
    Defer { until: DateTime<Utc> },
    /// The appointment was cancelled before the job ran.
    Cancel,
    /// Its lease ran out with no attempts left: the worker died on the last try.
    Expire,
}

/// Why a transition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Not due yet, leased by a live worker, or out of attempts.
    NotClaimable,
    /// Only a running job can succeed, fail or be deferred.
    NotRunning,
    /// A finished job never changes.
    Final,
    /// The lease is still live, or attempts remain.
    NotExpired,
}

/// Can a worker claim this job at `now`?
pub fn is_claimable(job: &JobSnapshot, now: DateTime<Utc>) -> bool {
    let has_attempts = job.attempt < job.max_attempts;
    match job.state {
        JobState::Available | JobState::Retryable => job.run_at <= now && has_attempts,
        JobState::Running => job.locked_until.is_some_and(|t| t <= now) && has_attempts,
        _ => false,
    }
}

/// The one rule book of the queue.
pub fn transition(job: &JobSnapshot, event: &JobEvent, now: DateTime<Utc>) -> Result<JobSnapshot, Refusal> {
    if job.state.is_final() {
        return Err(Refusal::Final);
    }
    let mut next = *job;
    match event {
        JobEvent::Claim { lease_until } => {
            if !is_claimable(job, now) {
                return Err(Refusal::NotClaimable);
            }
            next.state = JobState::Running;
            next.attempt += 1;
            next.lease_token += 1;
            next.locked_until = Some(*lease_until);
        }
        JobEvent::Succeed | JobEvent::Fail { .. } | JobEvent::Defer { .. } if job.state != JobState::Running => {
            return Err(Refusal::NotRunning);
        }
        JobEvent::Succeed => {
            next.state = JobState::Completed;
            next.locked_until = None;
        }
        JobEvent::Fail { retryable, retry_at } => {
            next.locked_until = None;
            if *retryable && job.attempt < job.max_attempts {
                next.state = JobState::Retryable;
                next.run_at = *retry_at;
            } else {
                next.state = JobState::Discarded;
            }
        }
        JobEvent::Defer { until } => {
            next.state = JobState::Retryable;
            next.attempt = job.attempt.saturating_sub(1);
            next.run_at = *until;
            next.locked_until = None;
        }
        JobEvent::Cancel => {
            next.state = JobState::Cancelled;
            next.locked_until = None;
        }
        JobEvent::Expire => {
            let expired = job.state == JobState::Running && job.locked_until.is_some_and(|t| t <= now);
            if !expired || job.attempt < job.max_attempts {
                return Err(Refusal::NotExpired);
            }
            next.state = JobState::Discarded;
            next.locked_until = None;
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_defaults_and_retry_after() {
        let p = Policy::default();
        assert_eq!(retry_delay(&p, 1, None, 0.5), Duration::seconds(1));
        assert_eq!(retry_delay(&p, 3, None, 0.5), Duration::seconds(30));
        assert_eq!(retry_delay(&p, 9, None, 0.5), Duration::seconds(30));
        assert_eq!(retry_delay(&p, 1, Some(Duration::seconds(60)), 0.5), Duration::seconds(60));
        assert_eq!(retry_delay(&p, 1, Some(Duration::hours(5)), 0.5), Duration::minutes(10));
        let jittery = Policy { jitter: 0.5, ..Policy::default() };
        assert_eq!(retry_delay(&jittery, 2, None, 0.0), Duration::milliseconds(2500));
        assert_eq!(retry_delay(&jittery, 2, None, 1.0), Duration::milliseconds(7500));
    }
}
