-- v3: Cal.com's webhooks name a booking by its uid.
CREATE INDEX appointments_booking_uid ON appointments(calcom_v2_booking_uid) WHERE calcom_v2_booking_uid IS NOT NULL;
