-- v8: the operations overview (Callbook::health). How long each booking took
-- in core (NULL for bookings made before), and the indexes that keep the
-- overview's reads to its window: appointments by creation time, and
-- unfinished jobs by age per company. The same indexes exist on every backend.
ALTER TABLE appointments ADD COLUMN booking_latency_us INTEGER;
CREATE INDEX appointments_created ON appointments(created_at);
CREATE INDEX sync_jobs_unfinished_age ON sync_jobs(state, company_id, created_at);
