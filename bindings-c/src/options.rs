//! The JSON options of `callbook_open`, `callbook_check_availability` and
//! `callbook_run_sync_once`, turned into the core's settings. Unknown keys
//! are refused (`invalid_json`), so a misspelt option is never ignored.

use callbook::{Callbook, Config, HttpCalcom, Policy, Worker, WorkerConfig};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenOptions {
    /// `full` (default) or `normal`, as the CLI's `--synchronous`.
    #[serde(default)]
    synchronous: Synchronous,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Synchronous {
    #[default]
    Full,
    Normal,
}

impl OpenOptions {
    pub(crate) fn sqlite(&self) -> callbook::SqliteOptions {
        let synchronous = match self.synchronous {
            Synchronous::Full => callbook::Synchronous::Full,
            Synchronous::Normal => callbook::Synchronous::Normal,
        };
        callbook::SqliteOptions { synchronous, ..Default::default() }
    }
}

fn default_url() -> String {
    callbook::DEFAULT_BASE_URL.to_string()
}

/// A slots request plus where to ask (the CLI's `slots` flags).
#[derive(Debug, Deserialize)]
pub(crate) struct AvailabilityOptions {
    #[serde(flatten)]
    pub(crate) request: callbook::AvailabilityRequest,
    #[serde(default = "default_url")]
    pub(crate) calcom_url: String,
    /// Per-request timeout; short by default, since a caller is waiting.
    #[serde(default = "availability_timeout")]
    pub(crate) timeout_ms: u64,
}

fn availability_timeout() -> u64 {
    5_000
}

impl AvailabilityOptions {
    pub(crate) fn checker(&self, book: &Callbook) -> Arc<callbook::Availability> {
        let api = Arc::new(HttpCalcom::new(Duration::from_millis(self.timeout_ms)));
        let config = callbook::AvailabilityConfig { base_url: self.calcom_url.clone(), ..Default::default() };
        Arc::new(callbook::Availability::new(book.clone(), api, config))
    }
}

/// The CLI's `sync --once` flags, plus the retry backoff.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SyncOptions {
    calcom_url: String,
    threads: usize,
    timeout_ms: u64,
    email_fallback: Option<String>,
    /// Delay before retry n in milliseconds (the last repeats); default the
    /// policy's 1 s, 5 s, 30 s. `[0]`: retries are due at once, so one run
    /// uses every attempt (tests and operators draining a queue by hand).
    backoff_ms: Option<Vec<u64>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            calcom_url: default_url(),
            threads: 2,
            timeout_ms: 30_000,
            email_fallback: None,
            backoff_ms: None,
        }
    }
}

impl SyncOptions {
    pub(crate) fn worker(self, book: &Callbook) -> Worker {
        let mut config = WorkerConfig { threads: self.threads, base_url: self.calcom_url, ..WorkerConfig::default() };
        if let Some(email) = self.email_fallback {
            config.email_fallback = email;
        }
        let book = match self.backoff_ms {
            Some(list) => {
                let backoff = list.iter().map(|ms| chrono_ms(*ms)).collect();
                let policy = Policy { backoff, ..book.config().policy.clone() };
                book.clone().with_config(Config { policy, ..book.config().clone() })
            }
            None => book.clone(),
        };
        Worker::new(book, Arc::new(HttpCalcom::new(Duration::from_millis(self.timeout_ms))), config)
    }
}

/// At most a day: longer is a typo, and chrono panics far beyond that.
fn chrono_ms(ms: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(ms.min(86_400_000) as i64)
}
