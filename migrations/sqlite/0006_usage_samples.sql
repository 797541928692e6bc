-- Each running workspace's resource use, one row per sample (every 10 s by default); rows older
-- than an hour are averaged into one per minute (`span` 60) and rows older than the retention
-- (7 days by default) are deleted. `gpus` is JSON: the GPUs its processes were on.
CREATE TABLE usage_samples (
    username TEXT NOT NULL,
    at BIGINT NOT NULL,
    span INTEGER NOT NULL,
    cpu_cores REAL NOT NULL,
    memory_bytes BIGINT NOT NULL,
    net_rx_rate REAL NOT NULL,
    net_tx_rate REAL NOT NULL,
    disk_read_rate REAL NOT NULL,
    disk_write_rate REAL NOT NULL,
    gpus TEXT
);
CREATE INDEX usage_samples_by_user ON usage_samples (username, at);
-- Compaction finds the raw rows by span, the retention finds the old rows by time.
CREATE INDEX usage_samples_by_span ON usage_samples (span, at);
CREATE INDEX usage_samples_by_time ON usage_samples (at);
