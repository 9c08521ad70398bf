-- v6 (SQLite v9): one Cal.com rate limit per API key for every worker
-- process. A worker locks its key's row (`FOR UPDATE`), takes its request
-- slots before it sends, and the answers' rate-limit headers and 429s land here too.
CREATE TABLE calcom_rate_windows (
    rate_key TEXT PRIMARY KEY,
    sent TEXT NOT NULL,
    blocked_until TEXT,
    server_remaining BIGINT,
    server_until TEXT,
    updated_at TEXT NOT NULL
);
