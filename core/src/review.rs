//! The manual-review queue: appointments that could not be synced (or need a
//! person's look, such as an email conflict). List, show, retry, resolve; and
//! each company's Cal.com breaker, for the operator's metrics.

use crate::appointment::Appointment;
use crate::callbook::Callbook;
use crate::error::{MAX_EMAIL, MAX_NAME, MAX_NOTE};
use crate::ids::{AppointmentId, CustomerId};
use crate::queue::{JobKind, NewJob};
use crate::store;
use crate::{Error, Result};

impl Callbook {
    /// Appointments on the review list, oldest flag first.
    pub fn review_list(&self) -> Result<Vec<Appointment>> {
        store::read(&**self.store(), |tx| tx.review_list(1000))
    }

    /// An appointment on the list, with its jobs' last errors.
    pub fn review_show(&self, id: AppointmentId) -> Result<(Appointment, Vec<crate::queue::Job>)> {
        let appointment = self.appointment(id)?;
        Ok((appointment, self.jobs_of(id)?))
    }

    /// Back to `pending` with a fresh `calcom.create` job (unless Cal.com already has it).
    pub fn review_retry(&self, id: AppointmentId) -> Result<Appointment> {
        let now = self.now();
        let max_attempts = self.config().policy.max_attempts;
        store::write(&**self.store(), move |tx| {
            let company = tx.appointment_company(id)?.ok_or(Error::AppointmentNotFound(id.0))?;
            let a = tx.appointment(company, id)?.ok_or(Error::AppointmentNotFound(id.0))?;
            if !a.requires_manual_review {
                return Err(Error::NotInReview(id.0));
            }
            tx.reset_sync(company, id, now)?;
            let unfinished = tx.jobs_of(id)?.iter().any(|j| j.kind == JobKind::Create && !j.state.is_final());
            if a.calcom_v2_booking_uid.is_none() && !unfinished {
                tx.insert_job(
                    &NewJob {
                        appointment_id: id,
                        company_id: company,
                        kind: JobKind::Create,
                        max_attempts,
                        run_at: now,
                    },
                    now,
                )?;
            }
            tx.appointment(company, id)?.ok_or(Error::AppointmentNotFound(id.0))
        })
    }

    /// Takes an appointment off the list, recording who, when and why.
    pub fn review_resolve(&self, id: AppointmentId, by: &str, note: &str) -> Result<Appointment> {
        let now = self.now();
        let (by, note) = (by.trim().to_string(), note.trim().to_string());
        if note.is_empty() {
            return Err(Error::invalid("note", "note_required", "say why the review is resolved"));
        }
        Error::check_length("note", &note, MAX_NOTE)?;
        Error::check_length("by", &by, MAX_NAME)?;
        store::write(&**self.store(), move |tx| {
            let company = tx.appointment_company(id)?.ok_or(Error::AppointmentNotFound(id.0))?;
            let a = tx.appointment(company, id)?.ok_or(Error::AppointmentNotFound(id.0))?;
            if !a.requires_manual_review {
                return Err(Error::NotInReview(id.0));
            }
            tx.resolve_review(company, id, &by, &note, now)?;
            tx.appointment(company, id)?.ok_or(Error::AppointmentNotFound(id.0))
        })
    }

    /// Sets a customer's email when it has none (an operator or a later call
    /// learned it). Every future appointment Cal.com already has gets a
    /// `calcom.update_attendee` job. Returns how many were queued.
    pub fn set_customer_email(&self, id: CustomerId, email: &str) -> Result<usize> {
        Error::check_length("email", email, MAX_EMAIL)?;
        let email = crate::email::normalize_email(Some(email));
        let Some(address) = email.valid().map(str::to_string) else {
            return Err(Error::invalid("email", "invalid_email", "the email is not an address"));
        };
        let now = self.now();
        let config = self.config().clone();
        store::write(&**self.store(), move |tx| {
            let company = tx.customer_company(id)?.ok_or(Error::CustomerNotFound(id.0))?;
            let customer = tx.customer(company, id)?.ok_or(Error::CustomerNotFound(id.0))?;
            if customer.email.as_deref() == Some(address.as_str()) {
                return Ok(0);
            }
            if customer.email.is_some() {
                return Err(Error::EmailAlreadySet(id.0));
            }
            if tx.customer_id_by_email(company, &address)?.is_some() {
                return Err(Error::EmailTaken);
            }
            tx.set_customer_email(company, id, &address, now)?;
            crate::booking::enqueue_attendee_updates(tx, company, id, &config, now)
        })
    }

    /// Each company with a Cal.com key and its breaker's state (closed when
    /// it has none yet), by company id: what `/metrics` labels, instead of
    /// the breaker's key (which carries a hash of the API key).
    pub fn breaker_states(
        &self,
        default_base: &str,
    ) -> Result<Vec<(crate::ids::CompanyId, crate::breaker::BreakerState)>> {
        crate::store::read(&**self.store(), |tx| {
            let breakers = tx.breakers()?;
            let mut out = Vec::new();
            for company in tx.companies()? {
                let Some(endpoint) = crate::calcom::Endpoint::of(&company, default_base) else { continue };
                let key = endpoint.breaker_key();
                let state =
                    breakers.iter().find(|b| b.key == key).map_or(crate::breaker::BreakerState::Closed, |b| b.state);
                out.push((company.id, state));
            }
            Ok(out)
        })
    }
}
