//! Counts an operator looks at: appointments by sync status, jobs by state,
//! the manual-review list, known and anonymous customers.

use crate::breaker::Breaker;
use crate::store::Counts;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// `pending`, `synced`, `failed` → count; and `cancelled_before_sync`:
    /// cancelled while pending their first sync, so nothing is owed to
    /// Cal.com (not `pending`, as the overview counts them). The counts add
    /// up to every appointment.
    pub appointments: BTreeMap<String, u64>,
    /// Job state → count.
    pub jobs: BTreeMap<String, u64>,
    pub manual_review: u64,
    pub customers_known: u64,
    pub customers_anonymous: u64,
    /// The Cal.com circuit breakers (per API base and key) and their state.
    pub breakers: Vec<Breaker>,
}

impl From<Counts> for Stats {
    fn from(c: Counts) -> Self {
        Stats {
            appointments: (c.appointments_by_sync_status.into_iter())
                .map(|(s, n)| (s.as_str().to_string(), n))
                .chain([("cancelled_before_sync".to_string(), c.cancelled_before_sync)])
                .collect(),
            jobs: c.jobs_by_state.into_iter().map(|(s, n)| (s.as_str().to_string(), n)).collect(),
            manual_review: c.manual_review,
            customers_known: c.customers_known,
            customers_anonymous: c.customers_anonymous,
            breakers: Vec::new(),
        }
    }
}
