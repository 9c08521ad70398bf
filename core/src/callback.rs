//! Callback requests: a caller the agent could not help (not verified, or
//! asking for a person) leaves a name and a number, and staff call back.

use crate::appointment::str_enum;
use crate::ids::{BranchId, CallDbId, CallbackId, CompanyId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

str_enum!(
    /// `open` until someone marks it `done`.
    CallbackStatus { Open => "open", Done => "done" }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub id: CallbackId,
    pub company_id: CompanyId,
    pub branch_id: Option<BranchId>,
    pub call_id: Option<CallDbId>,
    pub customer_name: String,
    /// The caller's E.164 when the call showed one, else the number they gave.
    pub phone: Option<String>,
    pub reason: Option<String>,
    pub status: CallbackStatus,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    pub done_by: Option<String>,
}

/// A callback as the store inserts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallback {
    pub company_id: CompanyId,
    pub branch_id: Option<BranchId>,
    pub call_id: Option<CallDbId>,
    pub customer_name: String,
    pub phone: Option<String>,
    pub reason: Option<String>,
    pub now: DateTime<Utc>,
}
