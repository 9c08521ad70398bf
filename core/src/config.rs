//! The settings the booking rules and the worker's retry policy read.

use crate::queue::Policy;

/// Settings with the original design's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Region for national numbers when the branch names none (`DE`).
    pub default_region: String,
    pub policy: Policy,
    /// How far ahead a start may be, in days (365): a year out is a
    /// mistake or an attack, not an appointment.
    pub horizon_days: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config { default_region: "DE".into(), policy: Policy::default(), horizon_days: 365 }
    }
}

impl Config {
    /// The refusal of a start beyond the horizon.
    pub(crate) fn beyond_horizon(&self, field: &str, code: &str) -> crate::Error {
        crate::Error::invalid(field, code, format!("that is more than {} days ahead", self.horizon_days))
    }
}
