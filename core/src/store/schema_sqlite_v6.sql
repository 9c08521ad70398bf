-- v6: webhooks per tenant, the rest of the call (cancel, reschedule,
-- callbacks) and the policies that bound it.
ALTER TABLE companies ADD COLUMN calcom_webhook_secret TEXT;
ALTER TABLE companies ADD COLUMN min_cancel_notice_hours INTEGER;
ALTER TABLE companies ADD COLUMN min_reschedule_notice_hours INTEGER;
ALTER TABLE companies ADD COLUMN max_reschedules INTEGER;
ALTER TABLE services ADD COLUMN min_cancel_notice_hours INTEGER;
ALTER TABLE services ADD COLUMN min_reschedule_notice_hours INTEGER;
ALTER TABLE services ADD COLUMN max_reschedules INTEGER;
-- The createdAt of the last Cal.com delivery applied: older ones are stale.
ALTER TABLE appointments ADD COLUMN calcom_webhook_at TEXT;
ALTER TABLE appointments ADD COLUMN rescheduled_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE appointments ADD COLUMN previous_starts_at TEXT;
-- A Cal.com booking (or one seat of it) belongs to one appointment of one company.
DROP INDEX appointments_booking_uid;
CREATE UNIQUE INDEX appointments_booking_uid
    ON appointments(company_id, calcom_v2_booking_uid, COALESCE(calcom_v2_seat_uid, ''))
    WHERE calcom_v2_booking_uid IS NOT NULL;
-- Every cancel and reschedule, who made it (a call, an operator or Cal.com) and why.
CREATE TABLE appointment_changes (
    id INTEGER PRIMARY KEY,
    appointment_id INTEGER NOT NULL REFERENCES appointments(id),
    company_id INTEGER NOT NULL REFERENCES companies(id),
    kind TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    from_starts_at TEXT NOT NULL,
    to_starts_at TEXT,
    call_id INTEGER REFERENCES calls(id),
    operator TEXT,
    reason TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX appointment_changes_appointment ON appointment_changes(company_id, appointment_id, id);
CREATE TABLE callbacks (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    branch_id INTEGER REFERENCES branches(id),
    call_id INTEGER REFERENCES calls(id),
    customer_name TEXT NOT NULL,
    phone TEXT,
    reason TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    done_at TEXT,
    done_by TEXT
);
CREATE INDEX callbacks_status ON callbacks(status, company_id, id);
