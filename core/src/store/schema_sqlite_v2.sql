-- v2: who resolved a manual review and why; the shared circuit breakers; a Cal.com base per company.
ALTER TABLE companies ADD COLUMN calcom_api_base TEXT;
ALTER TABLE appointments ADD COLUMN review_resolved_at TEXT;
ALTER TABLE appointments ADD COLUMN review_resolved_by TEXT;
ALTER TABLE appointments ADD COLUMN review_note TEXT;
CREATE TABLE calcom_breakers (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    consecutive_failures INTEGER NOT NULL,
    open_until TEXT,
    cooldown_secs INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
