//! Typed identifiers, so a branch id is never passed where a company id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! int_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

int_id!(
    /// A tenant: one business with its own customers and Cal.com key.
    CompanyId,
    /// A location of a company, found by the number the caller dialled.
    BranchId,
    /// Something that can be booked: a Cal.com event type with a duration.
    ServiceId,
    /// The integer primary key of a call row (used in the placeholder phone).
    CallDbId,
    CustomerId,
    AppointmentId,
    JobId,
    /// A request to call a caller back.
    CallbackId,
);

/// A call as Retell names it (`call_...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub String);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for CallId {
    fn from(s: &str) -> Self {
        CallId(s.to_string())
    }
}
