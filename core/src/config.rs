//! The settings the booking rules and the worker's retry policy read.

use crate::queue::Policy;

/// Settings with the original design's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Region for national numbers when the branch names none (`DE`).
    pub default_region: String,
    pub policy: Policy,
}

impl Default for Config {
    fn default() -> Self {
        Config { default_region: "DE".into(), policy: Policy::default() }
    }
}
