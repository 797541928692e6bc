//! Per-user operation lock, shared by every Berth process (server or CLI) on one database:
//! a lease row in `workspace_locks`, renewed while held, stolen only from a dead process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row as _;

use crate::db::{now, Db};

const LEASE_SECONDS: i64 = 30;
const RENEW_EVERY: Duration = Duration::from_secs(10);
const WAIT_AT_MOST: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another operation on this workspace is still running; try again shortly")]
    Busy,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub struct UserLocks {
    db: Db,
    holder: String,
    local: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one operation runs; `release` it when done (dropping releases in the background).
pub struct LockGuard {
    db: Db,
    username: String,
    holder: String,
    renew: tokio::task::JoinHandle<()>,
    released: bool,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl UserLocks {
    pub fn new(db: Db) -> UserLocks {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        let holder = format!("{host}:{}:{}", std::process::id(), hex::encode(rand::random::<[u8; 4]>()));
        UserLocks { db, holder, local: Mutex::new(HashMap::new()) }
    }

    pub async fn lock(&self, username: &str) -> Result<LockGuard, LockError> {
        // Same process: queue on a mutex instead of polling the database.
        let local = {
            let mut map = self.local.lock().expect("lock map");
            map.entry(username.to_string()).or_default().clone()
        };
        let local = local.lock_owned().await;
        let deadline = Instant::now() + WAIT_AT_MOST;
        loop {
            if self.try_acquire(username).await? {
                break;
            }
            if Instant::now() > deadline {
                return Err(LockError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let renew = {
            let (db, username, holder) = (self.db.clone(), username.to_string(), self.holder.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RENEW_EVERY).await;
                    let _ = sqlx::query("UPDATE workspace_locks SET expires_at = $1 WHERE username = $2 AND holder = $3")
                        .bind(now() + LEASE_SECONDS)
                        .bind(&username)
                        .bind(&holder)
                        .execute(&db.pool)
                        .await;
                }
            })
        };
        Ok(LockGuard {
            db: self.db.clone(),
            username: username.to_string(),
            holder: self.holder.clone(),
            renew,
            released: false,
            _local: local,
        })
    }

    async fn try_acquire(&self, username: &str) -> Result<bool, LockError> {
        let t = now();
        sqlx::query(
            "INSERT INTO workspace_locks (username, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE workspace_locks.expires_at < $4",
        )
        .bind(username)
        .bind(&self.holder)
        .bind(t + LEASE_SECONDS)
        .bind(t)
        .execute(&self.db.pool)
        .await?;
        let row = sqlx::query("SELECT holder FROM workspace_locks WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.db.pool)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let holder: String = row.try_get("holder")?;
        if holder == self.holder {
            return Ok(true);
        }
        if holder_is_dead(&holder) {
            tracing::warn!(username, "taking over the lock of a Berth process that died");
            sqlx::query("DELETE FROM workspace_locks WHERE username = $1 AND holder = $2")
                .bind(username)
                .bind(&holder)
                .execute(&self.db.pool)
                .await?;
        }
        Ok(false)
    }
}

/// A holder on this host whose process no longer exists.
fn holder_is_dead(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else { return false };
    let this_host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    host == this_host.trim() && pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl LockGuard {
    pub async fn release(mut self) {
        self.renew.abort();
        let _ = sqlx::query("DELETE FROM workspace_locks WHERE username = $1 AND holder = $2")
            .bind(&self.username)
            .bind(&self.holder)
            .execute(&self.db.pool)
            .await;
        self.released = true;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.renew.abort();
        if !self.released {
            let (db, username, holder) = (self.db.clone(), self.username.clone(), self.holder.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = sqlx::query("DELETE FROM workspace_locks WHERE username = $1 AND holder = $2")
                        .bind(username)
                        .bind(holder)
                        .execute(&db.pool)
                        .await;
                });
            }
        }
    }
}
