//! Calls: the context every booking needs (which company, which branch, who
//! is calling). Registered from Retell's call-started event or from the call
//! object inside a function call; registering the same call twice is a no-op.

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

/// Registers a call unless it is known (then the known one is returned).
pub(crate) fn register(
    tx: &mut dyn crate::store::Tx,
    new: &NewCall,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::Result<Call> {
    use crate::Error;
    let retell_call_id = CallId(new.retell_call_id.0.trim().to_string());
    if retell_call_id.0.is_empty() {
        return Err(Error::invalid("retellCallId", "call_id_required", "the call id is missing"));
    }
    if let Some(known) = tx.call(&retell_call_id)? {
        return Ok(known);
    }
    let branch = match (new.branch_id, new.to_number.as_deref()) {
        (Some(id), _) => Some(tx.branch(id)?.ok_or(Error::BranchNotFound(id.0))?),
        (None, Some(dialled)) => match crate::caller::normalize_phone(dialled, None) {
            Some(e164) => tx.branch_by_phone(&e164)?,
            None => None,
        },
        (None, None) => None,
    };
    let company_id = match (new.company_id, &branch) {
        (Some(company), Some(b)) if b.company_id != company => {
            return Err(Error::BranchNotInCompany { branch: b.id.0, company: company.0 })
        }
        (Some(company), _) => {
            tx.company(company)?.ok_or(Error::CompanyNotFound(company.0))?;
            Some(company)
        }
        (None, b) => b.as_ref().map(|b| b.company_id),
    };
    let row = NewCall {
        id: new.id,
        retell_call_id,
        company_id,
        branch_id: branch.map(|b| b.id),
        from_number: new.from_number.clone(),
        to_number: new.to_number.clone(),
        direction: new.direction.clone(),
    };
    let id = tx.insert_call(&row, now)?;
    Ok(Call {
        id,
        retell_call_id: row.retell_call_id,
        company_id: row.company_id,
        branch_id: row.branch_id,
        from_number: row.from_number,
        to_number: row.to_number,
        direction: row.direction,
    })
}
