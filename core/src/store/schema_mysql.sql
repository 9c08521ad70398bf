-- callbook schema (MySQL 8 / MariaDB 10.6+): the same logical schema as SQLite v4.
-- Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' on every backend.
-- Indexed text is VARCHAR (MySQL indexes no TEXT without a prefix).
CREATE TABLE companies (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    calcom_api_key TEXT,
    calcom_api_base TEXT,
    created_at VARCHAR(26) NOT NULL,
    updated_at VARCHAR(26) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE branches (
    id BIGINT PRIMARY KEY,
    company_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    timezone VARCHAR(64) NOT NULL DEFAULT 'Europe/Berlin',
    country VARCHAR(8),
    phone_number VARCHAR(32),
    created_at VARCHAR(26) NOT NULL,
    updated_at VARCHAR(26) NOT NULL,
    INDEX branches_phone_number (phone_number),
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE services (
    id BIGINT PRIMARY KEY,
    company_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    calcom_event_type_id BIGINT,
    duration_minutes BIGINT NOT NULL,
    capacity BIGINT,
    created_at VARCHAR(26) NOT NULL,
    updated_at VARCHAR(26) NOT NULL,
    INDEX services_company (company_id),
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE calls (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    retell_call_id VARCHAR(255) NOT NULL UNIQUE,
    company_id BIGINT,
    branch_id BIGINT,
    from_number TEXT,
    to_number TEXT,
    direction VARCHAR(32),
    created_at VARCHAR(26) NOT NULL,
    updated_at VARCHAR(26) NOT NULL,
    FOREIGN KEY (company_id) REFERENCES companies(id),
    FOREIGN KEY (branch_id) REFERENCES branches(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE customers (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    company_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    email VARCHAR(255),
    phone VARCHAR(255) NOT NULL,
    source VARCHAR(64) NOT NULL,
    anonymity_reason VARCHAR(64),
    created_at VARCHAR(26) NOT NULL,
    updated_at VARCHAR(26) NOT NULL,
    UNIQUE KEY customers_company_email (company_id, email),
    INDEX customers_phone (company_id, phone),
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE appointments (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    company_id BIGINT NOT NULL,
    branch_id BIGINT NOT NULL,
    service_id BIGINT NOT NULL,
    call_id BIGINT,
    starts_at VARCHAR(26) NOT NULL,
    ends_at VARCHAR(26) NOT NULL,
    status VARCHAR(32) NOT NULL,
    calcom_sync_status VARCHAR(32) NOT NULL,
    sync_origin VARCHAR(32) NOT NULL,
    metadata TEXT NOT NULL,
    calcom_v2_booking_id BIGINT,
    calcom_v2_booking_uid VARCHAR(255),
    sync_error_code VARCHAR(255),
    sync_error_message TEXT,
    sync_attempt_count BIGINT NOT NULL DEFAULT 0,
    sync_verified_at VARCHAR(26),
    requires_manual_review BOOLEAN NOT NULL DEFAULT FALSE,
    manual_review_flagged_at VARCHAR(26),
    review_reason VARCHAR(64),
    idempotency_key VARCHAR(255) NOT NULL,
    created_at VARCHAR(26) NOT NULL,
    updated_at VARCHAR(26) NOT NULL,
    review_resolved_at VARCHAR(26),
    review_resolved_by TEXT,
    review_note TEXT,
    UNIQUE KEY appointments_key (company_id, idempotency_key),
    INDEX appointments_customer (company_id, customer_id, starts_at),
    INDEX appointments_sync_status (calcom_sync_status),
    INDEX appointments_review (requires_manual_review, manual_review_flagged_at),
    INDEX appointments_booking_uid (calcom_v2_booking_uid),
    INDEX appointments_service_start (company_id, service_id, starts_at),
    FOREIGN KEY (customer_id) REFERENCES customers(id),
    FOREIGN KEY (company_id) REFERENCES companies(id),
    FOREIGN KEY (branch_id) REFERENCES branches(id),
    FOREIGN KEY (service_id) REFERENCES services(id),
    FOREIGN KEY (call_id) REFERENCES calls(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE sync_jobs (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    appointment_id BIGINT NOT NULL,
    company_id BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    state VARCHAR(32) NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at VARCHAR(26) NOT NULL,
    locked_until VARCHAR(26),
    locked_by VARCHAR(255),
    lease_token BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at VARCHAR(26) NOT NULL,
    updated_at VARCHAR(26) NOT NULL,
    -- MySQL has no partial unique index: a generated column that is NULL
    -- for finished jobs carries the "one unfinished job per appointment and kind" rule.
    unfinished_key VARCHAR(64) AS (CASE WHEN state IN ('available', 'running', 'retryable')
        THEN CONCAT(appointment_id, ':', kind) END) STORED,
    -- When the job is claimable (NULL once finished). A claim walks this
    -- index in order and stops at its LIMIT: with a sort instead, InnoDB
    -- locks every due row it reads and SKIP LOCKED leaves other workers nothing.
    due_at VARCHAR(26) AS (CASE WHEN state IN ('available', 'retryable') THEN run_at
        WHEN state = 'running' THEN locked_until END) STORED,
    UNIQUE KEY sync_jobs_one_unfinished (unfinished_key),
    INDEX sync_jobs_due_at (due_at, id),
    INDEX sync_jobs_appointment (appointment_id),
    FOREIGN KEY (appointment_id) REFERENCES appointments(id),
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE calcom_breakers (
    `key` VARCHAR(255) PRIMARY KEY,
    state VARCHAR(32) NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    open_until VARCHAR(26),
    cooldown_secs BIGINT NOT NULL,
    updated_at VARCHAR(26) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE call_availability (
    call_id BIGINT NOT NULL,
    service_id BIGINT NOT NULL,
    day VARCHAR(10) NOT NULL,
    slots TEXT NOT NULL,
    checked_at VARCHAR(26) NOT NULL,
    PRIMARY KEY (call_id, service_id, day),
    FOREIGN KEY (call_id) REFERENCES calls(id),
    FOREIGN KEY (service_id) REFERENCES services(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
