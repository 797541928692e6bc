-- One workspace record per user: its port slot (never shared, freed only when the user is
-- deleted), its sealed service credentials, admin overrides and the state the user asked for.
CREATE TABLE workspaces (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    slot INTEGER NOT NULL UNIQUE,
    ssh_password TEXT NOT NULL,
    vnc_password TEXT NOT NULL,
    jupyter_token TEXT NOT NULL,
    desired_state TEXT NOT NULL DEFAULT 'stopped' CHECK (desired_state IN ('running', 'stopped')),
    memory_reservation_gib INTEGER,
    memory_limit_gib INTEGER,
    swap_gib INTEGER,
    cpu_millis INTEGER,
    shm_gib INTEGER,
    gpus TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Per-user operation lease shared by every Berth process on this database.
CREATE TABLE workspace_locks (
    username TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
