-- Self-service (README "Accounts"): SSH keys, API tokens, the audit log, and per-account SSH
-- password login.

-- Public keys only, as pasted (re-encoded canonically); Berth writes them to the workspace.
CREATE TABLE ssh_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (user_id, fingerprint)
);

-- Personal API tokens: only the SHA-256 of the secret is kept (it is 256 random bits; there is
-- nothing to brute-force), so a copy of the database holds no usable token.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

-- Every state change, once. Names are copied, not referenced: an entry outlives the account
-- it is about. Berth only ever inserts (and prunes past the retention).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor_kind TEXT NOT NULL CHECK (actor_kind IN ('user', 'admin', 'cli', 'token', 'system', 'anonymous')),
    actor TEXT NOT NULL,
    client TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'refused')),
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_target ON audit_log (target, at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);

ALTER TABLE users ADD COLUMN ssh_password_login INTEGER NOT NULL DEFAULT 1;
