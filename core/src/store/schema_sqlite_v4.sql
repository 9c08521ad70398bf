-- v4: availability. The free starts a call was offered, so the booking that
-- follows in the same call is checked against them without asking Cal.com again.
CREATE TABLE call_availability (
    call_id INTEGER NOT NULL REFERENCES calls(id),
    service_id INTEGER NOT NULL REFERENCES services(id),
    day TEXT NOT NULL,
    slots TEXT NOT NULL,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (call_id, service_id, day)
);
-- Local capacity and "confirmed here, not yet in Cal.com" look up by service and start.
CREATE INDEX appointments_service_start ON appointments(company_id, service_id, starts_at);
