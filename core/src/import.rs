//! The directory: companies, branches, services and calls, loaded from the
//! CLI's import JSON, and calls registered as they come in. Everything is checked first and written in one
//! transaction; ids are kept, and importing again updates in place.

use crate::call::{Call, NewCall};
use crate::caller::{normalize_phone, region_of};
use crate::company::{Branch, Company, Service};
use crate::error::{MAX_CALL_ID, MAX_NAME};
use crate::ids::CallId;
use crate::start::parse_timezone;
use crate::store::Tx;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportData {
    #[serde(default)]
    pub companies: Vec<Company>,
    #[serde(default)]
    pub branches: Vec<Branch>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub calls: Vec<NewCall>,
}

impl ImportData {
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidImport(e.to_string()))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub companies: usize,
    pub branches: usize,
    pub services: usize,
    pub calls: usize,
}

fn invalid(what: String) -> Error {
    Error::InvalidImport(what)
}

/// Checks what can be checked without the database, and canonicalises
/// branch numbers to E.164 so calls find their branch.
fn checked(data: &ImportData) -> Result<ImportData> {
    let mut data = data.clone();
    let names = data.companies.iter().map(|c| &c.name).chain(data.branches.iter().map(|b| &b.name));
    if let Some(long) = names.chain(data.services.iter().map(|s| &s.name)).find(|n| n.chars().count() > MAX_NAME) {
        return Err(invalid(format!(
            "a name is longer than {MAX_NAME} characters: {}…",
            long.chars().take(20).collect::<String>()
        )));
    }
    for company in &data.companies {
        if company.name.trim().is_empty() {
            return Err(invalid(format!("company {} has no name", company.id)));
        }
        let sample = company.fallback_email(crate::ids::AppointmentId(1));
        if sample.as_deref().is_some_and(|e| !crate::email::is_valid_email(e)) {
            return Err(invalid(format!("company {}: calcom_email_fallback is not an email address", company.id)));
        }
    }
    for branch in &mut data.branches {
        parse_timezone(&branch.timezone)
            .map_err(|_| invalid(format!("branch {}: unknown time zone {:?}", branch.id, branch.timezone)))?;
        let region = match branch.country.as_deref() {
            Some(c) => {
                Some(region_of(c).ok_or_else(|| invalid(format!("branch {}: unknown country {c:?}", branch.id)))?)
            }
            None => None,
        };
        if let Some(phone) = &branch.phone_number {
            let e164 = normalize_phone(phone, region)
                .ok_or_else(|| invalid(format!("branch {}: phone_number is not a phone number", branch.id)))?;
            branch.phone_number = Some(e164);
        }
    }
    for service in &data.services {
        if service.duration_minutes <= 0 || service.duration_minutes > 24 * 60 {
            return Err(invalid(format!("service {}: duration_minutes must be 1..1440", service.id)));
        }
        if service.capacity.is_some_and(|c| c < 1) {
            return Err(invalid(format!("service {}: capacity must be at least 1", service.id)));
        }
    }
    Ok(data)
}

pub(crate) fn import_in(tx: &mut dyn Tx, data: &ImportData, now: DateTime<Utc>) -> Result<ImportSummary> {
    let data = checked(data)?;
    for company in &data.companies {
        tx.upsert_company(company, now)?;
    }
    for branch in &data.branches {
        tx.company(branch.company_id)?
            .ok_or_else(|| invalid(format!("branch {}: company {} not found", branch.id, branch.company_id)))?;
        tx.upsert_branch(branch, now)?;
    }
    for service in &data.services {
        tx.company(service.company_id)?
            .ok_or_else(|| invalid(format!("service {}: company {} not found", service.id, service.company_id)))?;
        tx.upsert_service(service, now)?;
    }
    for call in &data.calls {
        register_call(tx, call, now)?;
    }
    Ok(ImportSummary {
        companies: data.companies.len(),
        branches: data.branches.len(),
        services: data.services.len(),
        calls: data.calls.len(),
    })
}

/// What registering a call would do, found without writing anything.
pub(crate) enum CallRow {
    Known(Call),
    /// Checked and resolved (branch and company found), not yet inserted.
    New(NewCall),
}

/// Registers a call unless it is known (then the known one is returned):
/// from Retell's call-started event, or from the call object inside a
/// function call. The branch is found by the dialled number unless named.
pub(crate) fn register_call(tx: &mut dyn Tx, new: &NewCall, now: DateTime<Utc>) -> Result<Call> {
    match resolve_call(tx, new)? {
        CallRow::Known(call) => Ok(call),
        CallRow::New(row) => insert_call(tx, row, now),
    }
}

/// Registers a call; the call when this inserted it (it then has nothing
/// remembered yet), `None` when it was known.
pub(crate) fn register_new_call(tx: &mut dyn Tx, new: &NewCall, now: DateTime<Utc>) -> Result<Option<Call>> {
    match resolve_call(tx, new)? {
        CallRow::Known(_) => Ok(None),
        CallRow::New(row) => insert_call(tx, row, now).map(Some),
    }
}

fn insert_call(tx: &mut dyn Tx, row: NewCall, now: DateTime<Utc>) -> Result<Call> {
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

impl CallRow {
    /// The call as it is, or will be once inserted (id 0 until then).
    pub(crate) fn into_call(self) -> Call {
        match self {
            CallRow::Known(call) => call,
            CallRow::New(row) => Call {
                id: crate::ids::CallDbId(0),
                retell_call_id: row.retell_call_id,
                company_id: row.company_id,
                branch_id: row.branch_id,
                from_number: row.from_number,
                to_number: row.to_number,
                direction: row.direction,
            },
        }
    }
}

/// Checks a call and finds its branch and company, writing nothing.
pub(crate) fn resolve_call(tx: &mut dyn Tx, new: &NewCall) -> Result<CallRow> {
    let retell_call_id = CallId(new.retell_call_id.0.trim().to_string());
    if retell_call_id.0.is_empty() {
        return Err(Error::invalid("retellCallId", "call_id_required", "the call id is missing"));
    }
    Error::check_length("retellCallId", &retell_call_id.0, MAX_CALL_ID)?;
    for (field, number) in
        [("fromNumber", &new.from_number), ("toNumber", &new.to_number), ("direction", &new.direction)]
    {
        Error::check_length(field, number.as_deref().unwrap_or_default(), 64)?;
    }
    if let Some(known) = tx.call(&retell_call_id)? {
        return Ok(CallRow::Known(known));
    }
    let branch = match (new.branch_id, new.to_number.as_deref()) {
        (Some(id), _) => Some(tx.branch(id)?.ok_or(Error::BranchNotFound(id.0))?),
        (None, Some(dialled)) => match normalize_phone(dialled, None) {
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
    Ok(CallRow::New(row))
}
