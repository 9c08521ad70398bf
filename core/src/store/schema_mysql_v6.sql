-- v6 (SQLite v9): one Cal.com rate limit per API key for every worker
-- process. A worker locks its key's row (`FOR UPDATE`), takes its request
-- slots before it sends, and the answers' rate-limit headers and 429s land here too.
CREATE TABLE calcom_rate_windows (
    rate_key VARCHAR(255) PRIMARY KEY,
    sent TEXT NOT NULL,
    blocked_until VARCHAR(26),
    server_remaining BIGINT,
    server_until VARCHAR(26),
    updated_at VARCHAR(26) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
