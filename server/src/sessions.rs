//! tower-sessions store on Berth's own database. Each row also records the session's
//! user, so disabling a user can delete that user's live sessions at once.
//!
//! Idle expiry is kept here, not in the cookie: `expires_at` is the idle deadline and moves
//! forward whenever the session is used, on the portal or through `/auth/verify` (a user
//! working all day in VS Code or Jupyter never touches the portal). The cookie itself lives
//! for the absolute lifetime, which `identify` and the gateway check against the login time.
//!
//! Every "now" here comes from the cache's [`Clock`]: the system clock in Berth, a clock the
//! test sets in the idle-expiry tests (which then need not wait out a real idle window).
//!
//! Rows are keyed by the SHA-256 of the session id, never the id itself: a copy of the database
//! (a backup, a leaked dump) holds no cookie anyone could present. The id is 128 random bits, so
//! a plain hash is enough; there is nothing to brute-force.

use std::collections::HashMap;
use std::sync::Arc;

use app::services::SESSION_USER_ID;
use sqlx::Row as _;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::db::Db;

#[derive(Clone, Debug)]
pub struct SqlSessionStore {
    db: Db,
    cache: std::sync::Arc<SessionCache>,
}

impl SqlSessionStore {
    pub fn new(db: Db, cache: std::sync::Arc<SessionCache>) -> Self {
        SqlSessionStore { db, cache }
    }

    /// Removes expired rows; run periodically.
    pub async fn delete_expired(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(self.cache.now())
            .execute(&self.db.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Sessions that have not expired (by the absolute expiry stored with each).
pub async fn count_active(db: &Db) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query("SELECT COUNT(*) FROM sessions WHERE expires_at >= $1").bind(crate::db::now()).fetch_one(&db.pool).await?;
    row.try_get::<i64, _>(0)
}

pub async fn end_sessions_of(db: &Db, cache: &SessionCache, user_id: i64) -> Result<u64, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    bump_revocations(&mut tx).await?;
    tx.commit().await?;
    cache.forget_user(user_id);
    Ok(done.rows_affected())
}

/// Ends every session of `user_id` but `keep` (a stored id, see [`stored_id`]): a password
/// change logs the account out everywhere else.
pub async fn end_sessions_of_except(db: &Db, cache: &SessionCache, user_id: i64, keep: Option<&str>) -> Result<u64, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(user_id)
        .bind(keep.unwrap_or_default())
        .execute(&mut *tx)
        .await?;
    bump_revocations(&mut tx).await?;
    tx.commit().await?;
    cache.forget_user(user_id);
    Ok(done.rows_affected())
}

/// Ends one of `user_id`'s sessions, named by its stored id; false when it is not theirs.
pub async fn end_session_of(db: &Db, cache: &SessionCache, user_id: i64, stored: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id = $2").bind(user_id).bind(stored).execute(&mut *tx).await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    bump_revocations(&mut tx).await?;
    tx.commit().await?;
    cache.forget_user(user_id);
    Ok(true)
}

/// Where an account is logged in: what its account page lists.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The stored id (a hash of the cookie, never the cookie): names the session to end it.
    pub handle: String,
    pub created_at: Option<i64>,
    pub last_used_at: i64,
    pub client: Option<String>,
    pub agent: Option<String>,
}

/// `user_id`'s live sessions, most recently used first.
pub async fn sessions_of(db: &Db, cache: &SessionCache, user_id: i64) -> Result<Vec<SessionInfo>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, data, expires_at FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY expires_at DESC")
        .bind(user_id)
        .bind(cache.now())
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            let data: String = r.try_get("data")?;
            let data: HashMap<String, serde_json::Value> = serde_json::from_str(&data).unwrap_or_default();
            let text = |key: &str| data.get(key).and_then(|v| v.as_str()).map(|s| s.chars().take(200).collect::<String>());
            Ok(SessionInfo {
                handle: r.try_get("id")?,
                created_at: data.get(app::services::SESSION_LOGIN_AT).and_then(|v| v.as_i64()),
                // The idle deadline is the last use plus the idle window.
                last_used_at: r.try_get::<i64, _>("expires_at")? - cache.idle_seconds,
                client: text(app::services::SESSION_CLIENT),
                agent: text(app::services::SESSION_AGENT),
            })
        })
        .collect()
}

/// Tells every Berth process's forwardAuth cache that sessions ended (see `SessionCache::follow_revocations`).
async fn bump_revocations(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE revocations SET counter = counter + 1 WHERE id = 1").execute(conn).await?;
    Ok(())
}

/// What the `sessions.id` column holds for the session id `id`: lowercase hex SHA-256.
pub fn stored_id(id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn user_of(record: &Record) -> Option<i64> {
    record.data.get(SESSION_USER_ID).and_then(|v| v.as_i64())
}

#[async_trait::async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let expires_at = self.cache.idle_deadline(record.expiry_date.unix_timestamp());
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        // A fresh random id colliding is astronomically unlikely; still, never overwrite one.
        loop {
            let inserted = sqlx::query(
                "INSERT INTO sessions (id, user_id, data, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(stored_id(&record.id.to_string()))
            .bind(user_of(record))
            .bind(&data)
            .bind(expires_at)
            .execute(&self.db.pool)
            .await
            .map_err(backend)?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.cache.forget(&record.id.to_string());
        let data = serde_json::to_string(&record.data).map_err(backend)?;
        // An update only (new sessions come through `create`): a session ended meanwhile (a
        // password change, "log out everywhere else", a disabled account) stays ended, even
        // when a request of it still in flight writes to it afterwards.
        sqlx::query("UPDATE sessions SET user_id = $2, data = $3, expires_at = $4 WHERE id = $1")
            .bind(stored_id(&record.id.to_string()))
            .bind(user_of(record))
            .bind(data)
            .bind(self.cache.idle_deadline(record.expiry_date.unix_timestamp()))
            .execute(&self.db.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = sqlx::query("SELECT data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2")
            .bind(stored_id(&id.to_string()))
            .bind(self.cache.now())
            .fetch_optional(&self.db.pool)
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get("data").map_err(backend)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(backend)?;
        let data: HashMap<String, serde_json::Value> = serde_json::from_str(&data).map_err(backend)?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(expires_at).map_err(backend)?;
        self.cache.touch(&self.db, &id.to_string());
        Ok(Some(Record { id: *id, data, expiry_date }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.cache.forget(&id.to_string());
        let mut tx = self.db.pool.begin().await.map_err(backend)?;
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(stored_id(&id.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // Login cycles a fresh, never-stored id through here too: that ends nothing, and must
        // not need a write (a full disk still lets the login say why it cannot be recorded).
        if done.rows_affected() > 0 {
            bump_revocations(&mut tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }
}

/// A session as the forwardAuth endpoint needs it, cached so the hot path skips the database.
#[derive(Debug, Clone)]
pub struct GatewaySession {
    pub user_id: i64,
    pub username: String,
}

#[derive(Debug, Clone)]
struct CachedLookup {
    session: Option<GatewaySession>,
    /// Unix seconds on the cache's clock.
    fresh_until: i64,
}

/// Where the session code reads the time, in Unix seconds: [`Clock::system`] in Berth; a test
/// passes a clock it sets.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(crate::db::now))
    }

    /// A clock that reads `now` (tests: e.g. an `AtomicI64` they advance).
    pub fn new(now: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Session-id → user, for `/auth/verify`. Entries live at most `ttl`; logout, login rotation
/// and disabling a user evict at once within this process (other processes: within `ttl`).
#[derive(Debug)]
pub struct SessionCache {
    entries: std::sync::RwLock<HashMap<String, CachedLookup>>,
    ttl_seconds: i64,
    idle_seconds: i64,
    /// When (clock seconds) each session's idle deadline was last moved: at most one write per
    /// session per `touch_every` seconds, however many requests it makes.
    touched: std::sync::Mutex<HashMap<String, i64>>,
    touch_every: i64,
    clock: Clock,
    /// The revocation counter last seen in the database (-1: not read yet).
    revocations: std::sync::atomic::AtomicI64,
}

const CACHE_MAX_ENTRIES: usize = 100_000;

impl SessionCache {
    /// On the system clock. `ttl` and `idle` count in whole seconds.
    pub fn new(ttl: std::time::Duration, idle: std::time::Duration) -> SessionCache {
        Self::with_clock(ttl, idle, Clock::system())
    }

    pub fn with_clock(ttl: std::time::Duration, idle: std::time::Duration, clock: Clock) -> SessionCache {
        let idle_seconds = idle.as_secs().max(1) as i64;
        SessionCache {
            entries: std::sync::RwLock::new(HashMap::new()),
            ttl_seconds: ttl.as_secs().max(1) as i64,
            idle_seconds,
            touched: std::sync::Mutex::new(HashMap::new()),
            // A quarter of the idle window keeps a busy session from lapsing between writes.
            touch_every: (idle_seconds / 4).clamp(1, 60),
            clock,
            revocations: std::sync::atomic::AtomicI64::new(-1),
        }
    }

    /// Now on this cache's clock, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Reads the revocation counter; when another process (or the CLI) ended sessions since the
    /// last read, every cached answer is dropped. `serve` runs this once a second, off the hot path.
    pub async fn follow_revocations(&self, db: &Db) -> Result<(), sqlx::Error> {
        use std::sync::atomic::Ordering;
        let counter: i64 = sqlx::query("SELECT counter FROM revocations WHERE id = 1").fetch_one(&db.pool).await?.try_get("counter")?;
        let seen = self.revocations.swap(counter, Ordering::SeqCst);
        if seen != counter && seen != -1 {
            self.entries.write().expect("session cache").clear();
        }
        Ok(())
    }

    /// The idle deadline for a session used now, never past `latest` (the record's own expiry).
    pub fn idle_deadline(&self, latest: i64) -> i64 {
        (self.now() + self.idle_seconds).min(latest)
    }

    /// Moves a live session's idle deadline forward (throttled per session; `id` as the cookie
    /// holds it); an expired one stays expired. Best effort: a failed write (a full disk) must not end a working session.
    pub fn touch(&self, db: &Db, id: &str) {
        let now = self.now();
        {
            let mut touched = self.touched.lock().expect("session touch times");
            // A wall clock set back must not pause the writes: only 0..touch_every ago counts.
            let recent = |at: &i64| (0..self.touch_every).contains(&(now - *at));
            if touched.get(id).is_some_and(recent) {
                return;
            }
            if touched.len() >= CACHE_MAX_ENTRIES {
                touched.retain(|_, at| recent(at));
                if touched.len() >= CACHE_MAX_ENTRIES {
                    touched.clear();
                }
            }
            touched.insert(id.to_string(), now);
        }
        // Off the request: a busy database must not slow a page or an app request down.
        let (db, id, deadline) = (db.clone(), stored_id(id), now + self.idle_seconds);
        tokio::spawn(async move {
            let moved = sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = $2 AND expires_at > $3 AND expires_at < $1")
                .bind(deadline)
                .bind(id)
                .bind(now)
                .execute(&db.pool)
                .await;
            if let Err(e) = moved {
                tracing::warn!(error = %e, "could not extend a session's idle deadline");
            }
        });
    }

    /// `Some(answer)` when cached and fresh.
    pub fn get(&self, id: &str) -> Option<Option<GatewaySession>> {
        let entries = self.entries.read().expect("session cache");
        let hit = entries.get(id)?;
        // Fresh for `ttl` after it was put, also when the wall clock was set back meanwhile.
        let left = hit.fresh_until - self.now();
        (left > 0 && left <= self.ttl_seconds).then(|| hit.session.clone())
    }

    pub fn put(&self, id: &str, session: Option<GatewaySession>) {
        let now = self.now();
        let mut entries = self.entries.write().expect("session cache");
        if entries.len() >= CACHE_MAX_ENTRIES {
            entries.retain(|_, v| v.fresh_until > now);
            if entries.len() >= CACHE_MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(id.to_string(), CachedLookup { session, fresh_until: now + self.ttl_seconds });
    }

    pub fn forget(&self, id: &str) {
        self.entries.write().expect("session cache").remove(id);
        self.touched.lock().expect("session touch times").remove(id);
    }

    pub fn forget_user(&self, user_id: i64) {
        self.entries
            .write()
            .expect("session cache")
            .retain(|_, v| v.session.as_ref().map(|s| s.user_id) != Some(user_id));
    }

    /// Looks a session up in the database: it must exist, be unexpired, within the absolute
    /// lifetime, and belong to an approved user.
    pub async fn load(&self, db: &Db, id: &str, absolute_seconds: i64) -> Result<Option<GatewaySession>, sqlx::Error> {
        let now = self.now();
        let row = sqlx::query(
            "SELECT s.data AS data, u.id AS user_id, u.username AS username FROM sessions s
             JOIN users u ON u.id = s.user_id
             WHERE s.id = $1 AND s.expires_at > $2 AND u.status = 'approved'",
        )
        .bind(stored_id(id))
        .bind(now)
        .fetch_optional(&db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.try_get("data")?;
        let data: HashMap<String, serde_json::Value> = serde_json::from_str(&data).unwrap_or_default();
        let login_at = data.get(app::services::SESSION_LOGIN_AT).and_then(|v| v.as_i64()).unwrap_or(0);
        if now - login_at > absolute_seconds {
            return Ok(None);
        }
        // Working in an app counts as using the session.
        self.touch(db, id);
        Ok(Some(GatewaySession { user_id: row.try_get("user_id")?, username: row.try_get("username")? }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    fn cache_at(start: i64) -> (SessionCache, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(start));
        let clock = {
            let now = now.clone();
            Clock::new(move || now.load(Ordering::SeqCst))
        };
        (SessionCache::with_clock(Duration::from_secs(30), Duration::from_secs(60), clock), now)
    }

    #[test]
    fn cached_answers_last_the_ttl_on_the_cache_clock() {
        let (cache, now) = cache_at(1_000);
        cache.put("s", Some(GatewaySession { user_id: 7, username: "alice".into() }));
        now.store(1_029, Ordering::SeqCst);
        assert_eq!(cache.get("s").flatten().map(|s| s.user_id), Some(7), "29 s after: still fresh");
        now.store(1_030, Ordering::SeqCst);
        assert!(cache.get("s").is_none(), "30 s after: asked again");
    }

    #[test]
    fn a_clock_set_back_does_not_stretch_a_cached_answer() {
        let (cache, now) = cache_at(1_000);
        cache.put("s", None);
        now.store(1_000 - 3_600, Ordering::SeqCst);
        assert!(cache.get("s").is_none(), "an hour back: not trusted for an hour and 30 s");
    }

    #[test]
    fn idle_deadlines_come_from_the_cache_clock() {
        let (cache, now) = cache_at(1_700_000_000);
        assert_eq!(cache.idle_deadline(i64::MAX), 1_700_000_060);
        assert_eq!(cache.idle_deadline(1_700_000_010), 1_700_000_010, "never past the record's own expiry");
        now.store(1_700_000_100, Ordering::SeqCst);
        assert_eq!(cache.idle_deadline(i64::MAX), 1_700_000_160);
    }
}
