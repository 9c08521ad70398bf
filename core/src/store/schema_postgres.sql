-- callbook schema (PostgreSQL): the same logical schema as SQLite v4.
-- Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' on every backend
-- (fixed width, so text order is time order).
CREATE TABLE companies (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    calcom_api_key TEXT,
    calcom_api_base TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE branches (
    id BIGINT PRIMARY KEY,
    company_id BIGINT NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'Europe/Berlin',
    country TEXT,
    phone_number TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX branches_phone_number ON branches(phone_number);
CREATE TABLE services (
    id BIGINT PRIMARY KEY,
    company_id BIGINT NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    calcom_event_type_id BIGINT,
    duration_minutes BIGINT NOT NULL,
    capacity BIGINT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX services_company ON services(company_id);
CREATE TABLE calls (
    id BIGSERIAL PRIMARY KEY,
    retell_call_id TEXT NOT NULL UNIQUE,
    company_id BIGINT REFERENCES companies(id),
    branch_id BIGINT REFERENCES branches(id),
    from_number TEXT,
    to_number TEXT,
    direction TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE customers (
    id BIGSERIAL PRIMARY KEY,
    company_id BIGINT NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    email TEXT,
    phone TEXT NOT NULL,
    source TEXT NOT NULL,
    anonymity_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (company_id, email)
);
CREATE INDEX customers_phone ON customers(company_id, phone);
CREATE TABLE appointments (
    id BIGSERIAL PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    company_id BIGINT NOT NULL REFERENCES companies(id),
    branch_id BIGINT NOT NULL REFERENCES branches(id),
    service_id BIGINT NOT NULL REFERENCES services(id),
    call_id BIGINT REFERENCES calls(id),
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    status TEXT NOT NULL,
    calcom_sync_status TEXT NOT NULL,
    sync_origin TEXT NOT NULL,
    metadata TEXT NOT NULL,
    calcom_v2_booking_id BIGINT,
    calcom_v2_booking_uid TEXT,
    sync_error_code TEXT,
    sync_error_message TEXT,
    sync_attempt_count BIGINT NOT NULL DEFAULT 0,
    sync_verified_at TEXT,
    requires_manual_review BOOLEAN NOT NULL DEFAULT FALSE,
    manual_review_flagged_at TEXT,
    review_reason TEXT,
    idempotency_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    review_resolved_at TEXT,
    review_resolved_by TEXT,
    review_note TEXT,
    UNIQUE (company_id, idempotency_key)
);
CREATE INDEX appointments_customer ON appointments(company_id, customer_id, starts_at);
CREATE INDEX appointments_sync_status ON appointments(calcom_sync_status);
CREATE INDEX appointments_review ON appointments(company_id, id) WHERE requires_manual_review;
CREATE INDEX appointments_booking_uid ON appointments(calcom_v2_booking_uid) WHERE calcom_v2_booking_uid IS NOT NULL;
CREATE INDEX appointments_service_start ON appointments(company_id, service_id, starts_at);
CREATE TABLE sync_jobs (
    id BIGSERIAL PRIMARY KEY,
    appointment_id BIGINT NOT NULL REFERENCES appointments(id),
    company_id BIGINT NOT NULL REFERENCES companies(id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at TEXT NOT NULL,
    locked_until TEXT,
    locked_by TEXT,
    lease_token BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX sync_jobs_one_unfinished ON sync_jobs(appointment_id, kind)
    WHERE state IN ('available', 'running', 'retryable');
CREATE INDEX sync_jobs_due ON sync_jobs(run_at, id) WHERE state IN ('available', 'retryable');
CREATE INDEX sync_jobs_leased ON sync_jobs(locked_until) WHERE state = 'running';
CREATE INDEX sync_jobs_appointment ON sync_jobs(appointment_id);
CREATE TABLE calcom_breakers (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    open_until TEXT,
    cooldown_secs BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE call_availability (
    call_id BIGINT NOT NULL REFERENCES calls(id),
    service_id BIGINT NOT NULL REFERENCES services(id),
    day TEXT NOT NULL,
    slots TEXT NOT NULL,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (call_id, service_id, day)
);
