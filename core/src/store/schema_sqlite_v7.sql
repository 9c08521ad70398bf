-- v7: bookings made in Cal.com come home. A backfill's place per
-- (company, event type), so an interrupted one resumes, and the last drift
-- report per company, for /metrics.
CREATE TABLE calcom_pulls (
    company_id INTEGER NOT NULL REFERENCES companies(id),
    event_type_id INTEGER NOT NULL,
    after_start TEXT NOT NULL,
    skip_count INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (company_id, event_type_id)
);
CREATE TABLE calcom_drift (
    company_id INTEGER PRIMARY KEY REFERENCES companies(id),
    checked_at TEXT NOT NULL,
    missing_locally INTEGER NOT NULL,
    missing_in_calcom INTEGER NOT NULL,
    different_start INTEGER NOT NULL,
    cancelled_one_side INTEGER NOT NULL
);
