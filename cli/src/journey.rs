//! The operator's side of the rest of the call: find a caller's
//! appointments, cancel and move them (the company's policy applies unless
//! `--force`), and work through the callbacks the agent filed.

use crate::Failure;
use callbook::{Appointment, CallbackId, CallbackStatus, Callbook, Change, ChangeRequest, CompanyId};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum CallbackAction {
    /// Open callbacks, oldest first (`--all`: done ones too).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Mark a callback done.
    Done {
        id: i64,
        /// Who called back (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
}

fn line(a: &Appointment) -> String {
    format!(
        "#{} {} service {} {} ({})",
        a.id,
        callbook::format_utc(&a.starts_at),
        a.service_id,
        a.status,
        a.calcom_sync_status
    )
}

pub fn appointments(book: &Callbook, company: i64, phone: &str) -> Result<(Value, String), Failure> {
    let found = book.appointments_by_phone(CompanyId(company), phone)?;
    let text = if found.is_empty() {
        "no appointments from now on for that number".to_string()
    } else {
        found.iter().map(line).collect::<Vec<_>>().join("\n")
    };
    Ok((json!({ "appointments": found }), text))
}

/// A cancel or a move by an operator: confirmed by running the command.
pub fn operator_request(id: i64, by: String, force: bool, reason: Option<String>) -> ChangeRequest {
    ChangeRequest { operator: Some(by), force, appointment_id: Some(id), reason, confirmed: true, ..Default::default() }
}

fn said(change: &Change) -> Value {
    json!({ "change": change })
}

pub fn cancel(book: &Callbook, request: &ChangeRequest) -> Result<(Value, String), Failure> {
    let change = book.cancel_appointment(request)?;
    let text = match change.repeated {
        true => format!("appointment {} was cancelled already", change.appointment_id),
        false => format!("appointment {} cancelled", change.appointment_id),
    };
    Ok((said(&change), text))
}

pub fn reschedule(book: &Callbook, request: &ChangeRequest) -> Result<(Value, String), Failure> {
    let change = book.reschedule_appointment(request)?;
    let text = format!("appointment {} now starts {}", change.appointment_id, callbook::format_utc(&change.starts_at));
    Ok((said(&change), text))
}

pub fn callbacks(book: &Callbook, action: CallbackAction) -> Result<(Value, String), Failure> {
    Ok(match action {
        CallbackAction::List { all } => {
            let list = book.callbacks(if all { None } else { Some(CallbackStatus::Open) })?;
            let text = if list.is_empty() {
                "no open callbacks".to_string()
            } else {
                list.iter()
                    .map(|c| {
                        format!(
                            "#{} {} company {} {} {} — {}",
                            c.id,
                            c.status,
                            c.company_id,
                            c.customer_name,
                            c.phone.as_deref().unwrap_or("no number"),
                            c.reason.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            (json!({ "callbacks": list }), text)
        }
        CallbackAction::Done { id, by } => {
            let done = book.callback_done(CallbackId(id), &by)?;
            (json!({ "callback": done }), format!("callback {id} done by {by}"))
        }
    })
}
