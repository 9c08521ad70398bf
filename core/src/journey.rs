//! The rest of the call on [`Callbook`]: what the agent is told when a call
//! starts, finding, cancelling and moving appointments, callbacks. The rules
//! are in `change`; each method here is one transaction.

use crate::appointment::{Appointment, AppointmentChange};
use crate::callback::{Callback, CallbackStatus};
use crate::callbook::Callbook;
use crate::change::{
    by_phone_in, callback_in, cancel_in, context_in, find_in, reschedule_in, CallContext, CallbackRequest, Change,
    ChangeRequest,
};
use crate::error::MAX_NAME;
use crate::ids::{AppointmentId, CallbackId, CompanyId};
use crate::store::{self, Offered};
use crate::{Error, Result};
use std::sync::Arc;

impl Callbook {
    /// Today in the call's branch, who calls, and what can be booked.
    pub fn call_context(&self, retell_call_id: &str) -> Result<CallContext> {
        let (id, config, now) = (retell_call_id.to_string(), Arc::clone(self.config_arc()), self.now());
        store::read(&**self.store(), |tx| context_in(tx, &id, None, &config, now))
    }

    /// The calling customer's upcoming confirmed appointments (at most 5,
    /// soonest first), on one local day when `date` is given;
    /// `caller_not_verified` for a caller nobody knows with nothing booked
    /// in this call.
    pub fn find_appointments(&self, retell_call_id: &str, date: Option<&str>) -> Result<Vec<Appointment>> {
        let (id, config, now) = (retell_call_id.to_string(), Arc::clone(self.config_arc()), self.now());
        store::read(&**self.store(), |tx| find_in(tx, &id, None, date, &config, now).map(|(found, _)| found))
    }

    /// A company's appointments from now on for a phone number, cancelled
    /// ones included with their status: an operator's search ("did my
    /// cancel go through?"). A caller's own search, `find_appointments`,
    /// lists confirmed ones only.
    pub fn appointments_by_phone(&self, company: CompanyId, phone: &str) -> Result<Vec<Appointment>> {
        let (config, now) = (Arc::clone(self.config_arc()), self.now());
        store::read(&**self.store(), |tx| by_phone_in(tx, company, phone, &config, now))
    }

    /// Cancels an appointment for a caller (their own only) or an operator;
    /// unconfirmed, it only says what would happen.
    pub fn cancel_appointment(&self, request: &ChangeRequest) -> Result<Change> {
        let (request, config, now) = (request.clone(), Arc::clone(self.config_arc()), self.now());
        store::write(&**self.store(), move |tx| cancel_in(tx, &request, &config, now))
    }

    /// Moves an appointment, every booking rule applying to the new start.
    pub fn reschedule_appointment(&self, request: &ChangeRequest) -> Result<Change> {
        self.reschedule_checked(request, None)
    }

    /// [`Callbook::reschedule_appointment`] against the new day's free
    /// starts just asked of Cal.com (the agent's live check).
    pub(crate) fn reschedule_checked(&self, request: &ChangeRequest, offered: Option<Offered>) -> Result<Change> {
        let (request, config, now) = (request.clone(), Arc::clone(self.config_arc()), self.now());
        store::write(&**self.store(), move |tx| reschedule_in(tx, &request, offered.as_ref(), &config, now))
    }

    /// An appointment's cancels and moves, oldest first.
    pub fn appointment_changes(&self, id: AppointmentId) -> Result<Vec<AppointmentChange>> {
        store::read(&**self.store(), |tx| {
            let company = tx.appointment_company(id)?.ok_or(Error::AppointmentNotFound(id.0))?;
            tx.changes_of(company, id)
        })
    }

    /// Files a callback request for a call.
    pub fn request_callback(&self, request: &CallbackRequest) -> Result<Callback> {
        let (request, config, now) = (request.clone(), Arc::clone(self.config_arc()), self.now());
        store::write(&**self.store(), move |tx| callback_in(tx, &request, &config, now))
    }

    /// Callbacks, oldest first (at most 500); `status` narrows them.
    pub fn callbacks(&self, status: Option<CallbackStatus>) -> Result<Vec<Callback>> {
        store::read(&**self.store(), |tx| tx.callbacks(status, 500))
    }

    /// Marks a callback done by `by` (one done already is answered as it is).
    pub fn callback_done(&self, id: CallbackId, by: &str) -> Result<Callback> {
        let by = by.trim().to_string();
        if by.is_empty() {
            return Err(Error::invalid("by", "operator_required", "say who called back"));
        }
        Error::check_length("by", &by, MAX_NAME)?;
        let now = self.now();
        store::write(&**self.store(), move |tx| {
            let callback = tx.callback(id)?.ok_or(Error::CallbackNotFound(id.0))?;
            if !tx.finish_callback(id, &by, now)? {
                return Ok(callback);
            }
            tx.callback(id)?.ok_or(Error::CallbackNotFound(id.0))
        })
    }
}
