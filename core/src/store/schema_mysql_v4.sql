-- v4 (SQLite v7): bookings made in Cal.com come home. A backfill's place per
-- (company, event type), so an interrupted one resumes, and the last drift
-- report per company, for /metrics.
CREATE TABLE calcom_pulls (
    company_id BIGINT NOT NULL,
    event_type_id BIGINT NOT NULL,
    after_start VARCHAR(26) NOT NULL,
    skip_count BIGINT NOT NULL,
    updated_at VARCHAR(26) NOT NULL,
    PRIMARY KEY (company_id, event_type_id),
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE calcom_drift (
    company_id BIGINT PRIMARY KEY,
    checked_at VARCHAR(26) NOT NULL,
    missing_locally BIGINT NOT NULL,
    missing_in_calcom BIGINT NOT NULL,
    different_start BIGINT NOT NULL,
    cancelled_one_side BIGINT NOT NULL,
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
