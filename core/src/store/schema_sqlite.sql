-- callbook schema v1 (SQLite). Column names follow the original Laravel schema.
CREATE TABLE companies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    calcom_api_key TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE branches (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'Europe/Berlin',
    country TEXT,
    phone_number TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX branches_phone_number ON branches(phone_number);
CREATE TABLE services (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    calcom_event_type_id INTEGER,
    duration_minutes INTEGER NOT NULL,
    capacity INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX services_company ON services(company_id);
CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    retell_call_id TEXT NOT NULL UNIQUE,
    company_id INTEGER REFERENCES companies(id),
    branch_id INTEGER REFERENCES branches(id),
    from_number TEXT,
    to_number TEXT,
    direction TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL,
    email TEXT,
    phone TEXT NOT NULL,
    source TEXT NOT NULL,
    anonymity_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- Scoped to the tenant (the original's global UNIQUE let one tenant block another); NULLs repeat.
    UNIQUE (company_id, email)
);
CREATE INDEX customers_phone ON customers(company_id, phone);
CREATE TABLE appointments (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    company_id INTEGER NOT NULL REFERENCES companies(id),
    branch_id INTEGER NOT NULL REFERENCES branches(id),
    service_id INTEGER NOT NULL REFERENCES services(id),
    call_id INTEGER REFERENCES calls(id),
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    status TEXT NOT NULL,
    calcom_sync_status TEXT NOT NULL,
    sync_origin TEXT NOT NULL,
    metadata TEXT NOT NULL,
    calcom_v2_booking_id INTEGER,
    calcom_v2_booking_uid TEXT,
    sync_error_code TEXT,
    sync_error_message TEXT,
    sync_attempt_count INTEGER NOT NULL DEFAULT 0,
    sync_verified_at TEXT,
    requires_manual_review INTEGER NOT NULL DEFAULT 0,
    manual_review_flagged_at TEXT,
    review_reason TEXT,
    idempotency_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (company_id, idempotency_key)
);
CREATE INDEX appointments_customer ON appointments(company_id, customer_id, starts_at);
CREATE INDEX appointments_sync_status ON appointments(calcom_sync_status);
CREATE INDEX appointments_review ON appointments(company_id, id) WHERE requires_manual_review = 1;
CREATE TABLE sync_jobs (
    id INTEGER PRIMARY KEY,
    appointment_id INTEGER NOT NULL REFERENCES appointments(id),
    company_id INTEGER NOT NULL REFERENCES companies(id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at TEXT NOT NULL,
    locked_until TEXT,
    locked_by TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- At most one unfinished job per (appointment, kind).
CREATE UNIQUE INDEX sync_jobs_one_unfinished ON sync_jobs(appointment_id, kind)
    WHERE state IN ('available', 'running', 'retryable');
CREATE INDEX sync_jobs_due ON sync_jobs(run_at, id) WHERE state IN ('available', 'retryable');
CREATE INDEX sync_jobs_leased ON sync_jobs(locked_until) WHERE state = 'running';
CREATE INDEX sync_jobs_appointment ON sync_jobs(appointment_id);
