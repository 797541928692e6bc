-- GPU sharing and idle reclaim (README "Sharing GPUs"). A holding is a claim (gpu.mode = open:
-- shown, not enforced) or a lease (gpu.mode = leased: the workspace sees only what it holds).
-- At most one active holding per GPU, whatever number of Berth processes grant at once.
CREATE TABLE gpu_holdings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    gpu_uuid TEXT NOT NULL,
    gpu_index INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('claim', 'lease')),
    note TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    -- How many of `gpu.warn_before`'s warnings were given.
    warnings_given INTEGER NOT NULL DEFAULT 0,
    idle_since INTEGER,
    idle_warned_at INTEGER,
    released_at INTEGER,
    release_reason TEXT
);
CREATE UNIQUE INDEX gpu_holdings_one_active_per_gpu ON gpu_holdings (gpu_uuid) WHERE released_at IS NULL;
CREATE INDEX gpu_holdings_by_user ON gpu_holdings (user_id, released_at);

-- Requests waiting for GPUs, served in `position` order (admins may reorder).
CREATE TABLE gpu_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    gpu_count INTEGER NOT NULL,
    gpu_uuid TEXT,
    duration_seconds INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    requested_at INTEGER NOT NULL,
    position INTEGER NOT NULL
);

-- Per-user limits set by an admin; NULL: the site's default (config `gpu`).
CREATE TABLE gpu_limits (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    max_gpus INTEGER,
    max_lease_seconds INTEGER,
    max_queued INTEGER
);

-- Per-user idle policy set by an admin; NULL: the site's default (config `idle`).
CREATE TABLE idle_policies (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    stop_after_seconds INTEGER,
    exempt INTEGER NOT NULL DEFAULT 0
);

-- When each signal last showed the workspace in use, and the pending idle warning.
CREATE TABLE workspace_activity (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    signal TEXT NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, signal)
);
CREATE TABLE idle_warnings (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    warned_at INTEGER NOT NULL
);

-- Every grant, queueing, extension, warning, release and idle stop: who, what, when. Shaped so
-- an audit log can adopt it.
CREATE TABLE sharing_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sharing_events_by_time ON sharing_events (at);
