//! Calls: the context every booking needs (which company, which branch, who
//! is calling). Registering one is `import::register_call`.

use crate::ids::{BranchId, CallDbId, CallId, CompanyId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub id: CallDbId,
    pub retell_call_id: CallId,
    pub company_id: Option<CompanyId>,
    pub branch_id: Option<BranchId>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub direction: Option<String>,
}

/// What is known of a call when it is registered. Without a branch, the branch
/// is found by `to_number`; without a company, the branch's company is used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCall {
    /// Keep this primary key (import); `None` lets the store choose.
    #[serde(default)]
    pub id: Option<CallDbId>,
    pub retell_call_id: CallId,
    #[serde(default)]
    pub company_id: Option<CompanyId>,
    #[serde(default)]
    pub branch_id: Option<BranchId>,
    #[serde(default)]
    pub from_number: Option<String>,
    #[serde(default)]
    pub to_number: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
}
