-- v3 (SQLite v6): webhooks per tenant, the rest of the call (cancel,
-- reschedule, callbacks) and the policies that bound it.
ALTER TABLE companies ADD COLUMN calcom_webhook_secret TEXT,
    ADD COLUMN min_cancel_notice_hours BIGINT, ADD COLUMN min_reschedule_notice_hours BIGINT,
    ADD COLUMN max_reschedules BIGINT;
ALTER TABLE services ADD COLUMN min_cancel_notice_hours BIGINT, ADD COLUMN min_reschedule_notice_hours BIGINT,
    ADD COLUMN max_reschedules BIGINT;
-- MySQL/MariaDB index no expression: the seat's part of the unique key is a stored column.
ALTER TABLE appointments ADD COLUMN calcom_webhook_at VARCHAR(26),
    ADD COLUMN rescheduled_count BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN previous_starts_at VARCHAR(26),
    MODIFY calcom_v2_seat_uid VARCHAR(255),
    ADD COLUMN seat_key VARCHAR(255) AS (COALESCE(calcom_v2_seat_uid, '')) STORED;
DROP INDEX appointments_booking_uid ON appointments;
CREATE UNIQUE INDEX appointments_booking_uid ON appointments(company_id, calcom_v2_booking_uid, seat_key);
CREATE TABLE appointment_changes (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    appointment_id BIGINT NOT NULL,
    company_id BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    changed_by VARCHAR(16) NOT NULL,
    from_starts_at VARCHAR(26) NOT NULL,
    to_starts_at VARCHAR(26),
    call_id BIGINT,
    operator TEXT,
    reason TEXT,
    created_at VARCHAR(26) NOT NULL,
    INDEX appointment_changes_appointment (company_id, appointment_id, id),
    FOREIGN KEY (appointment_id) REFERENCES appointments(id),
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE callbacks (
    id BIGINT PRIMARY KEY AUTO_INCREMENT,
    company_id BIGINT NOT NULL,
    branch_id BIGINT,
    call_id BIGINT,
    customer_name TEXT NOT NULL,
    phone VARCHAR(64),
    reason TEXT,
    status VARCHAR(16) NOT NULL,
    created_at VARCHAR(26) NOT NULL,
    done_at VARCHAR(26),
    done_by TEXT,
    INDEX callbacks_status (status, company_id, id),
    FOREIGN KEY (company_id) REFERENCES companies(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
