-- v5: Cal.com as it behaves. A company's fallback attendee email template
-- (one address per appointment passes per-booker limits), and the seat an
-- appointment holds on a seated event type (cancel and reschedule name it).
ALTER TABLE companies ADD COLUMN calcom_email_fallback TEXT;
ALTER TABLE appointments ADD COLUMN calcom_v2_seat_uid TEXT;
