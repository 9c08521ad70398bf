-- v2 (SQLite v5): a company's fallback attendee email template and the
-- seat an appointment holds on a seated Cal.com event type.
ALTER TABLE companies ADD COLUMN calcom_email_fallback TEXT;
ALTER TABLE appointments ADD COLUMN calcom_v2_seat_uid TEXT;
