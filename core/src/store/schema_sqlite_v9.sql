-- v9: one Cal.com rate limit per API key for every worker process. The
-- sliding window of each key (requests per second of the last minute, as
-- `second:count` pairs), Cal.com's last word on the key (requests left until
-- when) and its 429 block. A worker takes its request slots here, in a write
-- transaction, before it sends.
CREATE TABLE calcom_rate_windows (
    rate_key TEXT PRIMARY KEY,
    sent TEXT NOT NULL,
    blocked_until TEXT,
    server_remaining INTEGER,
    server_until TEXT,
    updated_at TEXT NOT NULL
);
