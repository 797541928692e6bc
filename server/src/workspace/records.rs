//! The stored half of a workspace: its port slot, its sealed credentials, the admin's limits,
//! and whether its user wants it running. SQL only; no runtime, no locks (callers hold them).

use sqlx::Row as _;

use super::error::WorkspaceError;
use super::spec::{PortBlock, ResourceOverrides, WorkspaceSecrets};
use crate::config::PortPlanConfig;
use crate::crypto::{random_password, AppSecrets, SecretBox};
use crate::db::{now, Db};

/// The stored workspace record of a user.
#[derive(Debug, Clone)]
pub struct WorkspaceRecord {
    pub user_id: i64,
    pub slot: u32,
    pub secrets: WorkspaceSecrets,
    pub desired_running: bool,
    pub overrides: ResourceOverrides,
}

/// A record with its owner, as the overview and reconciliation read them all at once.
#[derive(Debug, Clone)]
pub struct OwnedRecord {
    pub username: String,
    pub approved: bool,
    pub record: WorkspaceRecord,
}

const COLUMNS: &str = "w.user_id AS user_id, w.slot AS slot, w.ssh_password AS ssh_password, w.vnc_password AS vnc_password,
    w.jupyter_token AS jupyter_token, w.desired_state AS desired_state,
    w.memory_reservation_gib AS memory_reservation_gib, w.memory_limit_gib AS memory_limit_gib,
    w.swap_gib AS swap_gib, w.cpu_millis AS cpu_millis, w.shm_gib AS shm_gib, w.gpus AS gpus";

pub struct Records {
    db: Db,
    sealer: SecretBox,
    app_secrets: AppSecrets,
}

impl Records {
    pub fn new(db: Db, sealer: SecretBox, app_secrets: AppSecrets) -> Records {
        Records { db, sealer, app_secrets }
    }

    /// The secret `username`'s app gate requires (derived, never stored).
    pub fn app_secret(&self, username: &str) -> String {
        self.app_secrets.for_user(username)
    }

    fn from_row(&self, row: &sqlx::any::AnyRow, username: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let open = |column: &str| -> Result<String, WorkspaceError> {
            let sealed: String = row.try_get(column)?;
            self.sealer.open(&sealed).map_err(|_| WorkspaceError::Secrets)
        };
        let gib = |column: &str| -> Result<Option<u64>, sqlx::Error> {
            Ok(row.try_get::<Option<i64>, _>(column)?.map(|v| v.max(0) as u64))
        };
        Ok(WorkspaceRecord {
            user_id: row.try_get("user_id")?,
            slot: row.try_get::<i64, _>("slot")? as u32,
            secrets: WorkspaceSecrets {
                ssh_password: open("ssh_password")?,
                vnc_password: open("vnc_password")?,
                jupyter_token: open("jupyter_token")?,
                app_secret: self.app_secrets.for_user(username),
            },
            desired_running: row.try_get::<String, _>("desired_state")? == "running",
            overrides: ResourceOverrides {
                memory_reservation_gib: gib("memory_reservation_gib")?,
                memory_limit_gib: gib("memory_limit_gib")?,
                swap_gib: gib("swap_gib")?,
                cpus: row.try_get::<Option<i64>, _>("cpu_millis")?.map(|m| m as f64 / 1000.0),
                shm_gib: gib("shm_gib")?,
                gpus: row.try_get("gpus")?,
            },
        })
    }

    pub async fn get(&self, user_id: i64, username: &str) -> Result<Option<WorkspaceRecord>, WorkspaceError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM workspaces w WHERE w.user_id = $1"))
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|row| self.from_row(&row, username)).transpose()
    }

    /// Every record with its owner, in one query (the admin overview, reconciliation).
    /// The record of an approved user's workspace, by username (the app gateway knows no more).
    pub async fn get_approved_by_name(&self, username: &str) -> Result<Option<WorkspaceRecord>, WorkspaceError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workspaces w JOIN users u ON u.id = w.user_id WHERE u.username = $1 AND u.status = 'approved'"
        ))
        .bind(username)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|row| self.from_row(&row, username)).transpose()
    }

    pub async fn all(&self) -> Result<Vec<OwnedRecord>, WorkspaceError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, u.username AS username, u.status AS status FROM workspaces w JOIN users u ON u.id = w.user_id ORDER BY u.username"
        ))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let username: String = row.try_get("username")?;
                let approved = row.try_get::<String, _>("status")? == "approved";
                Ok(OwnedRecord { record: self.from_row(row, &username)?, username, approved })
            })
            .collect()
    }

    /// The user's record, allocating a slot and credentials on first use (caller holds the lock).
    pub async fn ensure(&self, user_id: i64, username: &str, ports: &PortPlanConfig) -> Result<WorkspaceRecord, WorkspaceError> {
        if let Some(record) = self.get(user_id, username).await? {
            return Ok(record);
        }
        let max = PortBlock::max_slot(ports);
        loop {
            let taken: Vec<i64> = sqlx::query("SELECT slot FROM workspaces ORDER BY slot")
                .fetch_all(&self.db.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("slot"))
                .collect::<Result<_, _>>()?;
            let slot = (0..=max as i64).find(|s| taken.binary_search(s).is_err()).ok_or(WorkspaceError::NoFreeSlot(max + 1))?;
            let inserted = sqlx::query(
                "INSERT INTO workspaces (user_id, slot, ssh_password, vnc_password, jupyter_token, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(slot)
            .bind(self.sealer.seal(&random_password(20)))
            .bind(self.sealer.seal(&random_password(8)))
            .bind(self.sealer.seal(&hex::encode(rand::random::<[u8; 24]>())))
            .bind(now())
            .execute(&self.db.pool)
            .await?;
            if let Some(record) = self.get(user_id, username).await? {
                if inserted.rows_affected() == 1 {
                    tracing::info!(user = %username, slot, "workspace slot allocated");
                }
                return Ok(record);
            }
            // Another process took that slot first: pick again.
        }
    }

    pub async fn set_desired(&self, user_id: i64, running: bool) -> Result<(), WorkspaceError> {
        sqlx::query("UPDATE workspaces SET desired_state = $1, updated_at = $2 WHERE user_id = $3")
            .bind(if running { "running" } else { "stopped" })
            .bind(now())
            .bind(user_id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Stores a new credential (`column` is one of Berth's own names, never user input).
    pub async fn set_credential(&self, user_id: i64, column: &'static str, value: &str) -> Result<(), WorkspaceError> {
        debug_assert!(matches!(column, "ssh_password" | "vnc_password"));
        sqlx::query(&format!("UPDATE workspaces SET {column} = $1, updated_at = $2 WHERE user_id = $3"))
            .bind(self.sealer.seal(value))
            .bind(now())
            .bind(user_id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    pub async fn set_overrides(&self, user_id: i64, o: &ResourceOverrides) -> Result<(), WorkspaceError> {
        sqlx::query(
            "UPDATE workspaces SET memory_reservation_gib = $1, memory_limit_gib = $2, swap_gib = $3, cpu_millis = $4,
             shm_gib = $5, gpus = $6, updated_at = $7 WHERE user_id = $8",
        )
        .bind(o.memory_reservation_gib.map(|v| v as i64))
        .bind(o.memory_limit_gib.map(|v| v as i64))
        .bind(o.swap_gib.map(|v| v as i64))
        .bind(o.cpus.map(|c| (c * 1000.0).round() as i64))
        .bind(o.shm_gib.map(|v| v as i64))
        .bind(o.gpus.clone())
        .bind(now())
        .bind(user_id)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }
}
