//! GPU sharing and idle reclaim (README "Sharing GPUs"): claims and leases on the host's GPUs,
//! a queue served first come first served within each user's limits, warnings before anything
//! ends, idle GPUs and idle workspaces given back. The decisions are `scheduler`'s (pure); this
//! module reads the snapshot, applies each decision only if the rows it read still hold (so two
//! Berth processes on one database never grant one GPU twice), and carries out what follows:
//! restarts (leased mode), messages inside the workspace, the record of events.

pub mod idle;
pub mod scheduler;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use app::figures::duration_text;
use app::model::{GpuHolding, GpuLimitsView, GpuShareView, QueuedGpuRequest, SharedGpu, SharingAdminView, SharingCommand, SharingEvent};
use sqlx::Row as _;

use self::idle::IdleSettings;
use self::scheduler::{Decision, Gpu, Holding, HoldingKind, Limits, Policy, Refusal, Request, Snapshot};
use crate::activity::Activity;
use crate::config::{Config, GpuMode, Isolation};
use crate::db::{now, Db};
use crate::monitor::Monitor;
use crate::workspace::{Actor, HeldGpus, Owner, WorkspaceError, Workspaces};

#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
}

#[derive(Debug, Clone)]
pub struct SharingSettings {
    pub mode: GpuMode,
    pub defaults: Limits,
    pub policy: Policy,
    pub idle: IdleSettings,
    pub gpu_check_every: Duration,
    pub idle_check_every: Duration,
    /// The board every workspace reads (`berth-gpus`, the login message): a file under the
    /// storage's `shared` directory, which workspaces mount read-only at `/shared`.
    pub board_file: Option<std::path::PathBuf>,
    pub dashboard_url: String,
}

impl SharingSettings {
    pub fn from_config(c: &Config) -> SharingSettings {
        let mut warn_before: Vec<i64> = c.gpu.warn_before.iter().map(|d| d.as_secs() as i64).collect();
        warn_before.sort_unstable_by(|a, b| b.cmp(a));
        SharingSettings {
            mode: c.gpu.mode,
            defaults: Limits { max_gpus: c.gpu.max_gpus, max_lease_seconds: c.gpu.max_lease.as_secs() as i64, max_queued: c.gpu.max_queued },
            policy: Policy {
                warn_before,
                idle_release_after: c.gpu.idle_release_after.as_secs() as i64,
                idle_utilization_percent: c.gpu.idle_utilization_percent,
                idle_warning: c.gpu.idle_warning.as_secs() as i64,
            },
            idle: IdleSettings { stop_after: c.idle.stop_after.as_secs() as i64, warning: c.idle.warning.as_secs() as i64, cpu_percent: c.idle.cpu_percent },
            gpu_check_every: c.gpu.check_every,
            idle_check_every: c.idle.check_every,
            board_file: Some(c.storage_root.join("shared").join(".berth").join("gpus.txt")),
            dashboard_url: format!("{}/dashboard", c.public_url().as_str().trim_end_matches('/')),
        }
    }

    fn kind(&self) -> HoldingKind {
        match self.mode {
            GpuMode::Open => HoldingKind::Claim,
            GpuMode::Leased => HoldingKind::Lease,
        }
    }
}

/// The leases each user holds, read by the workspace layer when it plans a container.
pub struct LeaseBook {
    pub db: Db,
}

#[async_trait::async_trait]
impl HeldGpus for LeaseBook {
    async fn held_gpus(&self, user_id: i64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT gpu_uuid FROM gpu_holdings WHERE user_id = $1 AND kind = 'lease' AND released_at IS NULL ORDER BY gpu_index")
            .bind(user_id)
            .fetch_all(&self.db.pool)
            .await
    }
}

pub struct Sharing {
    db: Db,
    settings: SharingSettings,
    monitor: Arc<Monitor>,
    workspaces: Arc<Workspaces>,
    pub activity: Arc<Activity>,
    http: reqwest::Client,
    /// What the board file last said (written again only when it changes).
    board_written: std::sync::Mutex<String>,
    restart_in_background: std::sync::atomic::AtomicBool,
}

/// A holding as read, with what the board shows of it.
#[derive(Debug, Clone)]
struct HoldingRow {
    holding: Holding,
    username: String,
    gpu_index: u32,
    kind: String,
    note: String,
    started_at: i64,
}

#[derive(Debug, Clone)]
struct RequestRow {
    request: Request,
    username: String,
    note: String,
    requested_at: i64,
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    Granted { gpus: Vec<u32>, ends_at: i64 },
    Queued { position: u32 },
}

impl Sharing {
    pub fn new(db: Db, settings: SharingSettings, monitor: Arc<Monitor>, workspaces: Arc<Workspaces>, activity: Arc<Activity>) -> Sharing {
        Sharing { db, settings, monitor, workspaces, activity, http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("HTTP client"), board_written: Default::default(), restart_in_background: Default::default() }
    }

    pub fn settings(&self) -> &SharingSettings {
        &self.settings
    }

    /// The host's GPUs now (read at once when the sampler has not read them yet).
    fn gpus(&self) -> Vec<Gpu> {
        let (views, _) = self.monitor.gpu_inventory();
        views.iter().map(|(uuid, v)| Gpu { uuid: uuid.clone(), index: v.index, utilization_percent: Some(v.utilization_percent) }).collect()
    }

    async fn holdings(&self) -> Result<Vec<HoldingRow>, SharingError> {
        let rows = sqlx::query(
            "SELECT h.id, h.user_id, u.username, h.gpu_uuid, h.gpu_index, h.kind, h.note, h.started_at, h.ends_at, h.warnings_given, \
             h.idle_since, h.idle_warned_at FROM gpu_holdings h JOIN users u ON u.id = h.user_id WHERE h.released_at IS NULL ORDER BY h.gpu_index",
        )
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| HoldingRow {
                holding: Holding {
                    id: r.get("id"),
                    user_id: r.get("user_id"),
                    gpu_uuid: r.get("gpu_uuid"),
                    ends_at: r.get("ends_at"),
                    warnings_given: r.get::<i64, _>("warnings_given") as u32,
                    idle_since: r.get("idle_since"),
                    idle_warned_at: r.get("idle_warned_at"),
                },
                username: r.get("username"),
                gpu_index: r.get::<i64, _>("gpu_index") as u32,
                kind: r.get("kind"),
                note: r.get("note"),
                started_at: r.get("started_at"),
            })
            .collect())
    }

    async fn queue(&self) -> Result<Vec<RequestRow>, SharingError> {
        let rows = sqlx::query(
            "SELECT r.id, r.user_id, u.username, r.gpu_count, r.gpu_uuid, r.duration_seconds, r.note, r.requested_at \
             FROM gpu_requests r JOIN users u ON u.id = r.user_id ORDER BY r.position, r.id",
        )
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| RequestRow {
                request: Request {
                    id: r.get("id"),
                    user_id: r.get("user_id"),
                    count: r.get::<i64, _>("gpu_count") as u32,
                    gpu_uuid: r.get("gpu_uuid"),
                    duration_seconds: r.get("duration_seconds"),
                },
                username: r.get("username"),
                note: r.get("note"),
                requested_at: r.get("requested_at"),
            })
            .collect())
    }

    /// The user's limits: an admin's per-user values over the site's defaults.
    pub async fn limits_of(&self, user_id: i64) -> Result<Limits, SharingError> {
        let row = sqlx::query("SELECT max_gpus, max_lease_seconds, max_queued FROM gpu_limits WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?;
        let d = self.settings.defaults;
        Ok(match row {
            None => d,
            Some(r) => Limits {
                max_gpus: r.get::<Option<i64>, _>("max_gpus").map_or(d.max_gpus, |v| v as u32),
                max_lease_seconds: r.get::<Option<i64>, _>("max_lease_seconds").unwrap_or(d.max_lease_seconds),
                max_queued: r.get::<Option<i64>, _>("max_queued").map_or(d.max_queued, |v| v as u32),
            },
        })
    }

    async fn snapshot(&self) -> Result<(Snapshot, Vec<HoldingRow>, Vec<RequestRow>), SharingError> {
        let gpus = self.gpus();
        let holdings = self.holdings().await?;
        let queue = self.queue().await?;
        let mut limits = HashMap::new();
        for r in &queue {
            if !limits.contains_key(&r.request.user_id) {
                limits.insert(r.request.user_id, self.limits_of(r.request.user_id).await?);
            }
        }
        let snapshot = Snapshot {
            gpus,
            holdings: holdings.iter().map(|h| h.holding.clone()).collect(),
            queue: queue.iter().map(|r| r.request.clone()).collect(),
            limits,
        };
        Ok((snapshot, holdings, queue))
    }

    pub(crate) async fn owner_by_id(&self, id: i64) -> Result<Option<Owner>, SharingError> {
        let row = sqlx::query("SELECT id, username, status FROM users WHERE id = $1").bind(id).fetch_optional(&self.db.pool).await?;
        Ok(row.map(|r| Owner { id: r.get("id"), username: r.get("username"), approved: r.get::<String, _>("status") == "approved" }))
    }

    pub(crate) async fn owner_by_name(&self, name: &str) -> Result<Option<Owner>, SharingError> {
        let row = sqlx::query("SELECT id, username, status FROM users WHERE username = $1").bind(name).fetch_optional(&self.db.pool).await?;
        Ok(row.map(|r| Owner { id: r.get("id"), username: r.get("username"), approved: r.get::<String, _>("status") == "approved" }))
    }

    async fn actor_name(&self, actor: &Actor) -> Result<String, SharingError> {
        Ok(match actor {
            Actor::System => "berth".into(),
            Actor::User { id, .. } => self.owner_by_id(*id).await?.map_or_else(|| format!("user {id}"), |o| o.username),
        })
    }

    pub(crate) async fn event(&self, actor: &str, username: &str, action: &str, detail: &str) -> Result<(), SharingError> {
        Ok(record_event(&self.db, actor, username, action, detail).await?)
    }

    /// A message to the workspace's terminals; failing to deliver it only goes to the log. Its
    /// user may be root in it and make the delivery hang: it runs beside the round in `serve`,
    /// and waits a few seconds at most.
    async fn tell(&self, owner: &Owner, message: &str) {
        let (workspaces, owner, message) = (self.workspaces.clone(), owner.clone(), message.to_string());
        let deliver = async move {
            match tokio::time::timeout(Duration::from_secs(5), workspaces.tell(&owner, &message)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(user = %owner.username, error = %e, "could not tell the workspace"),
                Err(_) => tracing::debug!(user = %owner.username, "telling the workspace took too long"),
            }
        };
        if self.restart_in_background.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::spawn(deliver);
        } else {
            deliver.await;
        }
    }

    /// Asks for GPUs: granted at once when free, queued otherwise.
    pub async fn request(&self, actor: &Actor, owner: &Owner, count: u32, gpu_index: Option<u32>, seconds: i64, note: &str) -> Result<RequestOutcome, SharingError> {
        may_act_for(actor, owner)?;
        if !owner.approved {
            return Err(SharingError::Forbidden("the account is not approved"));
        }
        let note = clean_note(note);
        let gpus = self.gpus();
        let gpu_uuid = match gpu_index {
            Some(i) => Some(gpus.iter().find(|g| g.index == i).map(|g| g.uuid.clone()).ok_or_else(|| Refusal::UnknownGpu(i.to_string()))?),
            None => None,
        };
        let count = if gpu_uuid.is_some() { 1 } else { count };
        let request = Request { id: 0, user_id: owner.id, count, gpu_uuid, duration_seconds: seconds };
        let limits = self.limits_of(owner.id).await?;
        let holds = self.holdings().await?.iter().filter(|h| h.holding.user_id == owner.id).count() as u32;
        let mine: Vec<RequestRow> = self.queue().await?.into_iter().filter(|r| r.request.user_id == owner.id).collect();
        let waiting = (mine.len() as u32, mine.iter().map(|r| r.request.count).sum());
        scheduler::admit(&request, &gpus, holds, waiting, limits)?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO gpu_requests (user_id, gpu_count, gpu_uuid, duration_seconds, note, requested_at, position) \
             VALUES ($1, $2, $3, $4, $5, $6, (SELECT COALESCE(MAX(position), 0) + 1 FROM gpu_requests)) RETURNING id",
        )
        .bind(owner.id)
        .bind(i64::from(request.count))
        .bind(request.gpu_uuid.clone())
        .bind(seconds)
        .bind(&note)
        .bind(now())
        .fetch_one(&self.db.pool)
        .await?;
        let by = self.actor_name(actor).await?;
        let what = match gpu_index {
            Some(i) => format!("GPU {i}"),
            None => format!("{count} GPU(s)"),
        };
        self.event(&by, &owner.username, "request", &format!("{what} for {}{}", duration_text(seconds), note_suffix(&note))).await?;
        self.schedule().await?;
        let holdings = self.holdings().await?;
        if let Some(position) = self.queue().await?.iter().position(|r| r.request.id == id) {
            self.event("berth", &owner.username, "queue", &format!("{what} waits, position {}", position + 1)).await?;
            return Ok(RequestOutcome::Queued { position: position as u32 + 1 });
        }
        let mine: Vec<&HoldingRow> = holdings.iter().filter(|h| h.holding.user_id == owner.id).collect();
        Ok(RequestOutcome::Granted {
            gpus: mine.iter().map(|h| h.gpu_index).collect(),
            ends_at: mine.iter().map(|h| h.holding.ends_at).max().unwrap_or_default(),
        })
    }

    /// One scheduling round: expiries, warnings, idle releases, grants. Returns how many grants.
    pub async fn schedule(&self) -> Result<usize, SharingError> {
        self.schedule_at(now()).await
    }

    /// [`Sharing::schedule`] as if it were `at` (tests move the clock; Berth passes the time).
    pub async fn schedule_at(&self, at: i64) -> Result<usize, SharingError> {
        let (snapshot, holdings, queue) = self.snapshot().await?;
        let decisions = scheduler::decide(&snapshot, &self.settings.policy, at);
        let by_id: HashMap<i64, &HoldingRow> = holdings.iter().map(|h| (h.holding.id, h)).collect();
        let requests: HashMap<i64, &RequestRow> = queue.iter().map(|r| (r.request.id, r)).collect();
        let gpu_index: HashMap<&str, u32> = snapshot.gpus.iter().map(|g| (g.uuid.as_str(), g.index)).collect();
        let mut changed: BTreeSet<i64> = BTreeSet::new();
        let mut grants = 0;
        for decision in decisions {
            match decision {
                Decision::Expire { holding } => {
                    if let Some(h) = by_id.get(&holding) {
                        if self.end_holding(h, "expired", at).await? {
                            changed.insert(h.holding.user_id);
                        }
                    }
                }
                Decision::ReleaseIdle { holding } => {
                    if let Some(h) = by_id.get(&holding) {
                        if self.end_holding(h, "idle", at).await? {
                            changed.insert(h.holding.user_id);
                        }
                    }
                }
                Decision::WarnExpiry { holding, warning, seconds_left } => {
                    let ends_at = by_id.get(&holding).map_or(0, |h| h.holding.ends_at);
                    let done = sqlx::query(
                        "UPDATE gpu_holdings SET warnings_given = $1 WHERE id = $2 AND warnings_given < $1 AND ends_at = $3 AND released_at IS NULL",
                    )
                    .bind(i64::from(warning))
                    .bind(holding)
                    .bind(ends_at)
                    .execute(&self.db.pool)
                        .await?
                        .rows_affected();
                    if let (1, Some(h)) = (done, by_id.get(&holding)) {
                        let message = format!("your {} on GPU {} ends in {}{}", h.kind, h.gpu_index, duration_text(seconds_left), self.ending_consequence());
                        self.event("berth", &h.username, "expiry-warning", &message).await?;
                        self.tell_user(h.holding.user_id, &message).await?;
                    }
                }
                Decision::MarkIdle { holding, since } => {
                    sqlx::query("UPDATE gpu_holdings SET idle_since = $1, idle_warned_at = CASE WHEN $1 IS NULL THEN NULL ELSE idle_warned_at END WHERE id = $2 AND released_at IS NULL")
                        .bind(since)
                        .bind(holding)
                        .execute(&self.db.pool)
                        .await?;
                }
                Decision::WarnIdle { holding } => {
                    let done = sqlx::query("UPDATE gpu_holdings SET idle_warned_at = $1 WHERE id = $2 AND idle_warned_at IS NULL AND released_at IS NULL")
                        .bind(at)
                        .bind(holding)
                        .execute(&self.db.pool)
                        .await?
                        .rows_affected();
                    if let (1, Some(h)) = (done, by_id.get(&holding)) {
                        let message = format!(
                            "GPU {} has been idle since {}; it is given back in {} unless it is used{}",
                            h.gpu_index,
                            app::figures::clock_text(h.holding.idle_since.unwrap_or(at)),
                            duration_text(self.settings.policy.idle_warning),
                            self.ending_consequence()
                        );
                        self.event("berth", &h.username, "idle-gpu-warning", &message).await?;
                        self.tell_user(h.holding.user_id, &message).await?;
                    }
                }
                Decision::Grant { request, user_id, gpus, ends_at } => {
                    let Some(r) = requests.get(&request) else { continue };
                    if self.grant(r, &gpus, &gpu_index, ends_at, at).await? {
                        grants += 1;
                        changed.insert(user_id);
                    }
                }
            }
        }
        if self.settings.mode == GpuMode::Leased {
            for user_id in changed {
                self.reattach(user_id).await;
            }
        }
        self.write_board_file().await;
        Ok(grants)
    }

    /// Writes the board for the workspaces when it changed (atomically: a reader sees the old
    /// board or the new one). A failure only goes to the log.
    async fn write_board_file(&self) {
        let Some(path) = &self.settings.board_file else { return };
        let nobody = Owner { id: 0, username: String::new(), approved: true };
        let text = match self.board(&nobody).await {
            Ok(board) if !board.gpus.is_empty() => board_text(&board, &self.settings.dashboard_url),
            _ => return,
        };
        if *self.board_written.lock().expect("board") == text {
            return;
        }
        let write = || -> std::io::Result<()> {
            let dir = path.parent().expect("a file in a directory");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".gpus.txt.{}.new", std::process::id()));
            std::fs::write(&tmp, &text)?;
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            std::fs::rename(&tmp, path)
        };
        match write() {
            Ok(()) => *self.board_written.lock().expect("board") = text,
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "could not write the GPU board for the workspaces"),
        }
    }

    fn ending_consequence(&self) -> &'static str {
        match self.settings.mode {
            GpuMode::Leased => " (the workspace then restarts without it: save your work; your home stays)",
            GpuMode::Open => "",
        }
    }

    async fn tell_user(&self, user_id: i64, message: &str) -> Result<(), SharingError> {
        if let Some(owner) = self.owner_by_id(user_id).await? {
            self.tell(&owner, message).await;
        }
        Ok(())
    }

    /// Ends a holding once, whichever process gets there first. True when this call ended it.
    /// Only as the round saw it: an extension since (a later end) or the GPU busy again (its
    /// idle warning cleared) keeps the holding.
    async fn end_holding(&self, h: &HoldingRow, reason: &str, at: i64) -> Result<bool, SharingError> {
        let done = sqlx::query(
            "UPDATE gpu_holdings SET released_at = $1, release_reason = $2 \
             WHERE id = $3 AND released_at IS NULL AND ends_at = $4 AND (idle_warned_at = $5 OR ($5 IS NULL AND idle_warned_at IS NULL))",
        )
        .bind(at)
        .bind(reason)
        .bind(h.holding.id)
        .bind(h.holding.ends_at)
        .bind(h.holding.idle_warned_at)
        .execute(&self.db.pool)
        .await?
        .rows_affected();
        if done == 1 {
            let action = if reason == "idle" { "idle-gpu-release" } else { reason };
            self.event("berth", &h.username, action, &format!("{} on GPU {} ended ({reason})", h.kind, h.gpu_index)).await?;
        }
        Ok(done == 1)
    }

    /// Takes the request off the queue and records its holdings, in one transaction: another
    /// process that served it first, or holds one of these GPUs, makes this a no-op.
    async fn grant(&self, r: &RequestRow, gpus: &[String], index: &HashMap<&str, u32>, ends_at: i64, at: i64) -> Result<bool, SharingError> {
        let mut tx = self.db.pool.begin().await?;
        let taken = sqlx::query("DELETE FROM gpu_requests WHERE id = $1").bind(r.request.id).execute(&mut *tx).await?.rows_affected();
        if taken != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let kind = self.settings.kind().as_str();
        for uuid in gpus {
            let inserted = sqlx::query(
                "INSERT INTO gpu_holdings (user_id, gpu_uuid, gpu_index, kind, note, started_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(r.request.user_id)
            .bind(uuid)
            .bind(i64::from(index.get(uuid.as_str()).copied().unwrap_or_default()))
            .bind(kind)
            .bind(&r.note)
            .bind(at)
            .bind(ends_at)
            .execute(&mut *tx)
            .await;
            if let Err(e) = inserted {
                // The one-active-holding-per-GPU index: another process granted it just now.
                tracing::info!(error = %e, "a GPU was granted elsewhere first; the request stays queued");
                tx.rollback().await?;
                return Ok(false);
            }
        }
        let list: Vec<String> = gpus.iter().map(|g| index.get(g.as_str()).map_or_else(|| g.clone(), |i| i.to_string())).collect();
        let detail = format!("{kind} on GPU {} until {}{}", list.join(", "), app::figures::clock_text(ends_at), note_suffix(&r.note));
        sqlx::query("INSERT INTO sharing_events (at, actor, username, action, detail) VALUES ($1, 'berth', $2, 'grant', $3)")
            .bind(at)
            .bind(&r.username)
            .bind(&detail)
            .execute(&mut *tx)
            .await?;
        sqlx::query(AUDIT_INSERT).bind(at).bind("system").bind("berth").bind("sharing.grant").bind(&r.username).bind(&detail).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Leased mode: restart the user's running workspace so it gets exactly the GPUs it holds.
    async fn reattach(&self, user_id: i64) {
        let owner = match self.owner_by_id(user_id).await {
            Ok(Some(owner)) => owner,
            _ => return,
        };
        let running = self.workspaces.running_owners().await.unwrap_or_default();
        if !running.contains(&owner.username) {
            return;
        }
        let (workspaces, db) = (self.workspaces.clone(), self.db.clone());
        let restart = async move {
            let (action, detail) = match workspaces.restart(&Actor::System, &owner).await {
                Ok(()) => ("restart", "restarted with the GPUs it now holds".to_string()),
                Err(e) => {
                    // A workspace must not keep a GPU its lease no longer gives it: stopped
                    // instead (its home stays; its user starts it again with what it holds).
                    tracing::warn!(user = %owner.username, error = %e, "could not restart the workspace to change its GPUs; stopping it");
                    match workspaces.stop(&Actor::System, &owner).await {
                        Ok(()) => ("stopped", format!("could not restart with its GPUs ({e}), so stopped")),
                        Err(stop) => ("restart-failed", format!("{e}; and could not stop it: {stop}")),
                    }
                }
            };
            if let Err(e) = record_event(&db, "berth", &owner.username, action, &detail).await {
                tracing::warn!(error = %e, "could not record a restart");
            }
        };
        // The portal answers at once and the dashboard shows the restart's progress; the
        // command line waits for it (its process would end before a task could).
        if self.restart_in_background.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::spawn(restart);
        } else {
            restart.await;
        }
    }

    /// From `berth serve`: restarts that attach or detach GPUs run beside the request.
    pub fn restart_in_background(&self) {
        self.restart_in_background.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Gives a holding back: its holder, or an admin (a revoke).
    pub async fn release(&self, actor: &Actor, holding: i64) -> Result<(), SharingError> {
        let h = self.holdings().await?.into_iter().find(|h| h.holding.id == holding).ok_or_else(|| SharingError::NotFound(format!("holding {holding}")))?;
        let owner = self.owner_by_id(h.holding.user_id).await?.ok_or_else(|| SharingError::NotFound("user".into()))?;
        may_act_for(actor, &owner)?;
        let revoke = !is_owner(actor, &owner);
        let by = self.actor_name(actor).await?;
        let done = sqlx::query("UPDATE gpu_holdings SET released_at = $1, release_reason = $2 WHERE id = $3 AND released_at IS NULL")
            .bind(now())
            .bind(if revoke { "revoked" } else { "released" })
            .bind(holding)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        if done == 1 {
            let action = if revoke { "revoke" } else { "release" };
            self.event(&by, &owner.username, action, &format!("{} on GPU {}", h.kind, h.gpu_index)).await?;
            if self.settings.mode == GpuMode::Leased {
                self.reattach(owner.id).await;
            }
        }
        self.schedule().await?;
        Ok(())
    }

    /// More time on a holding, while nobody waits.
    pub async fn extend(&self, actor: &Actor, holding: i64, seconds: i64) -> Result<i64, SharingError> {
        let h = self.holdings().await?.into_iter().find(|h| h.holding.id == holding).ok_or_else(|| SharingError::NotFound(format!("holding {holding}")))?;
        let owner = self.owner_by_id(h.holding.user_id).await?.ok_or_else(|| SharingError::NotFound("user".into()))?;
        may_act_for(actor, &owner)?;
        let waiting = self.queue().await?.len();
        let limits = self.limits_of(owner.id).await?;
        let end = scheduler::extension_end(&h.holding, seconds, waiting, limits, now()).map_err(|e| SharingError::Invalid(e.into()))?;
        let done = sqlx::query("UPDATE gpu_holdings SET ends_at = $1, warnings_given = 0 WHERE id = $2 AND ends_at = $3 AND released_at IS NULL")
            .bind(end)
            .bind(holding)
            .bind(h.holding.ends_at)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        if done != 1 {
            return Err(SharingError::Invalid("the holding changed meanwhile; try again".into()));
        }
        let by = self.actor_name(actor).await?;
        self.event(&by, &owner.username, "extend", &format!("GPU {} until {}", h.gpu_index, app::figures::clock_text(end))).await?;
        Ok(end)
    }

    /// Withdraws a queued request: its owner, or an admin.
    pub async fn cancel(&self, actor: &Actor, request: i64) -> Result<(), SharingError> {
        let r = self.queue().await?.into_iter().find(|r| r.request.id == request).ok_or_else(|| SharingError::NotFound(format!("request {request}")))?;
        let owner = self.owner_by_id(r.request.user_id).await?.ok_or_else(|| SharingError::NotFound("user".into()))?;
        may_act_for(actor, &owner)?;
        let done = sqlx::query("DELETE FROM gpu_requests WHERE id = $1").bind(request).execute(&self.db.pool).await?.rows_affected();
        if done != 1 {
            return Err(SharingError::Invalid("that request was granted or withdrawn meanwhile: see the board".into()));
        }
        let by = self.actor_name(actor).await?;
        self.event(&by, &owner.username, "cancel", &format!("request for {} GPU(s)", r.request.count)).await?;
        self.schedule().await?;
        Ok(())
    }

    /// Moves a queued request one place up or down (admins).
    pub async fn reorder(&self, actor: &Actor, request: i64, up: bool) -> Result<(), SharingError> {
        may_administer(actor)?;
        let rows = sqlx::query("SELECT id, position FROM gpu_requests ORDER BY position, id").fetch_all(&self.db.pool).await?;
        let order: Vec<(i64, i64)> = rows.iter().map(|r| (r.get("id"), r.get("position"))).collect();
        let at = order.iter().position(|(id, _)| *id == request).ok_or_else(|| SharingError::NotFound(format!("request {request}")))?;
        let other = if up { at.checked_sub(1) } else { (at + 1 < order.len()).then_some(at + 1) };
        let Some(other) = other else { return Ok(()) };
        let (a, b) = (order[at], order[other]);
        let mut tx = self.db.pool.begin().await?;
        // Positions are not unique, so two rows can swap in two plain updates.
        sqlx::query("UPDATE gpu_requests SET position = $1 WHERE id = $2").bind(b.1).bind(a.0).execute(&mut *tx).await?;
        sqlx::query("UPDATE gpu_requests SET position = $1 WHERE id = $2").bind(a.1).bind(b.0).execute(&mut *tx).await?;
        if a.1 == b.1 {
            let shift = if up { -1 } else { 1 };
            sqlx::query("UPDATE gpu_requests SET position = position + $1 WHERE id = $2").bind(shift).bind(a.0).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let by = self.actor_name(actor).await?;
        let username: String = sqlx::query_scalar("SELECT u.username FROM users u JOIN gpu_requests r ON r.user_id = u.id WHERE r.id = $1")
            .bind(request)
            .fetch_optional(&self.db.pool)
            .await?
            .unwrap_or_default();
        self.event(&by, &username, "reorder", &format!("request {request} moved {}", if up { "up" } else { "down" })).await?;
        self.schedule().await?;
        Ok(())
    }

    /// Per-user limits (admins); None keeps the site's default.
    pub async fn set_limits(&self, actor: &Actor, owner: &Owner, max_gpus: Option<u32>, max_lease_seconds: Option<i64>, max_queued: Option<u32>) -> Result<(), SharingError> {
        may_administer(actor)?;
        sqlx::query(
            "INSERT INTO gpu_limits (user_id, max_gpus, max_lease_seconds, max_queued) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET max_gpus = excluded.max_gpus, max_lease_seconds = excluded.max_lease_seconds, max_queued = excluded.max_queued",
        )
        .bind(owner.id)
        .bind(max_gpus.map(i64::from))
        .bind(max_lease_seconds)
        .bind(max_queued.map(i64::from))
        .execute(&self.db.pool)
        .await?;
        let l = self.limits_of(owner.id).await?;
        let by = self.actor_name(actor).await?;
        let detail = format!("at most {} GPU(s), {} a lease, {} waiting", l.max_gpus, duration_text(l.max_lease_seconds), l.max_queued);
        self.event(&by, &owner.username, "limits", &detail).await?;
        Ok(())
    }

    /// Per-user idle policy (admins): another stop time (None: the site's), or exempt.
    pub async fn set_idle_policy(&self, actor: &Actor, owner: &Owner, stop_after_seconds: Option<i64>, exempt: bool) -> Result<(), SharingError> {
        may_administer(actor)?;
        sqlx::query(
            "INSERT INTO idle_policies (user_id, stop_after_seconds, exempt) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET stop_after_seconds = excluded.stop_after_seconds, exempt = excluded.exempt",
        )
        .bind(owner.id)
        .bind(stop_after_seconds)
        .bind(i64::from(exempt))
        .execute(&self.db.pool)
        .await?;
        let by = self.actor_name(actor).await?;
        let detail = match (exempt, stop_after_seconds) {
            (true, _) => "exempt from idle stops".to_string(),
            (false, Some(s)) if s <= 0 => "never stopped for idleness".to_string(),
            (false, Some(s)) => format!("stopped after {} idle", duration_text(s)),
            (false, None) => "the site's idle policy".to_string(),
        };
        self.event(&by, &owner.username, "idle-policy", &detail).await?;
        Ok(())
    }

    /// The board as `viewer` sees it (everyone sees who holds which GPU; that is the point).
    pub async fn board(&self, viewer: &Owner) -> Result<GpuShareView, SharingError> {
        let at = now();
        let (inventory, note) = self.monitor.gpu_inventory();
        let holdings = self.holdings().await?;
        let queue = self.queue().await?;
        let gpus: Vec<SharedGpu> = inventory
            .iter()
            .map(|(uuid, v)| {
                let holder = holdings.iter().find(|h| &h.holding.gpu_uuid == uuid).map(holding_view);
                let mut process_users: Vec<String> = v.processes.iter().filter_map(|p| p.user.clone()).collect();
                process_users.sort();
                process_users.dedup();
                SharedGpu {
                    index: v.index,
                    uuid: uuid.clone(),
                    name: v.name.clone(),
                    utilization_percent: v.utilization_percent,
                    memory_used_bytes: v.memory_used_bytes,
                    memory_total_bytes: v.memory_total_bytes,
                    holder,
                    process_users,
                }
            })
            .collect();
        // An estimate for each request: the n-th holding to end frees the n-th GPU.
        let mut ends: Vec<i64> = holdings.iter().map(|h| h.holding.ends_at).collect();
        ends.sort_unstable();
        let free_now = gpus.iter().filter(|g| g.holder.is_none()).count();
        let mut needed = 0usize;
        let queue_view = queue
            .iter()
            .enumerate()
            .map(|(i, r)| {
                needed += r.request.count as usize;
                let estimate_at = if needed <= free_now { Some(at) } else { ends.get(needed - free_now - 1).copied() };
                QueuedGpuRequest {
                    id: r.request.id,
                    username: r.username.clone(),
                    count: r.request.count,
                    gpu_index: r.request.gpu_uuid.as_ref().and_then(|u| gpus.iter().find(|g| &g.uuid == u).map(|g| g.index)),
                    duration_seconds: r.request.duration_seconds,
                    note: r.note.clone(),
                    requested_at: r.requested_at,
                    position: i as u32 + 1,
                    estimate_at,
                }
            })
            .collect();
        let limits = self.limits_of(viewer.id).await?;
        let running = self.workspaces.running_owners().await.unwrap_or_default().contains(&viewer.username);
        let idle = self.idle_view(viewer, running).await?;
        let mut warnings = Vec::new();
        for h in holdings.iter().filter(|h| h.holding.user_id == viewer.id) {
            if h.holding.warnings_given > 0 {
                warnings.push(format!("Your {} on GPU {} ends in {}.", h.kind, h.gpu_index, duration_text(h.holding.ends_at - at)));
            }
            if let Some(warned) = h.holding.idle_warned_at {
                let left = warned + self.settings.policy.idle_warning - at;
                warnings.push(format!("GPU {} is idle and is given back in {} unless you use it.", h.gpu_index, duration_text(left)));
            }
        }
        if let (Some(_), Some(stops)) = (idle.warned_at, idle.stops_at) {
            warnings.push(format!("Your workspace is idle and will be stopped in {} (your files stay). Press \"I'm still here\" to keep it.", duration_text(stops - at)));
        }
        let mut note = note;
        if note.is_none() && self.settings.mode == GpuMode::Leased && self.workspaces.isolation().await.ok() == Some(Isolation::Privileged) {
            note = Some("Workspaces here run privileged and see every GPU: leases are advice only.".into());
        }
        Ok(GpuShareView {
            mode: match self.settings.mode {
                GpuMode::Open => "open".into(),
                GpuMode::Leased => "leased".into(),
            },
            now: at,
            viewer: viewer.username.clone(),
            gpus,
            note,
            queue: queue_view,
            limits: GpuLimitsView { max_gpus: limits.max_gpus, max_lease_seconds: limits.max_lease_seconds, max_queued: limits.max_queued },
            idle: Some(idle),
            warnings,
        })
    }

    /// A disabled account gives back what it holds and waits for (its workspace is stopped).
    pub async fn forget_user(&self, owner: &Owner) -> Result<(), SharingError> {
        let at = now();
        let released = sqlx::query("UPDATE gpu_holdings SET released_at = $1, release_reason = 'account disabled' WHERE user_id = $2 AND released_at IS NULL")
            .bind(at)
            .bind(owner.id)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        let withdrawn = sqlx::query("DELETE FROM gpu_requests WHERE user_id = $1").bind(owner.id).execute(&self.db.pool).await?.rows_affected();
        if released + withdrawn > 0 {
            self.event("berth", &owner.username, "account-disabled", &format!("{released} GPU(s) released, {withdrawn} request(s) withdrawn")).await?;
            self.schedule().await?;
        }
        Ok(())
    }

    /// Drops the record's entries older than [`EVENT_RETENTION_SECONDS`].
    pub async fn prune_events(&self) -> Result<u64, SharingError> {
        let done = sqlx::query("DELETE FROM sharing_events WHERE at < $1").bind(now() - EVENT_RETENTION_SECONDS).execute(&self.db.pool).await?;
        Ok(done.rows_affected())
    }

    /// The record, newest first.
    pub async fn events(&self, limit: i64) -> Result<Vec<SharingEvent>, SharingError> {
        let rows = sqlx::query("SELECT at, actor, username, action, detail FROM sharing_events ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.db.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| SharingEvent { at: r.get("at"), actor: r.get("actor"), username: r.get("username"), action: r.get("action"), detail: r.get("detail") })
            .collect())
    }

    pub async fn admin_view(&self, actor: &Actor, viewer: &Owner) -> Result<SharingAdminView, SharingError> {
        may_administer(actor)?;
        let share = self.board(viewer).await?;
        let rows = sqlx::query("SELECT u.id, u.username FROM users u JOIN gpu_limits l ON l.user_id = u.id ORDER BY u.username").fetch_all(&self.db.pool).await?;
        let mut limits = Vec::new();
        for r in rows {
            let l = self.limits_of(r.get("id")).await?;
            limits.push((r.get::<String, _>("username"), GpuLimitsView { max_gpus: l.max_gpus, max_lease_seconds: l.max_lease_seconds, max_queued: l.max_queued }));
        }
        Ok(SharingAdminView { share, limits, idle: self.idle_status().await?, events: self.events(100).await? })
    }

    /// Carries out a command from the portal; says what happened.
    pub async fn command(&self, actor: &Actor, viewer: &Owner, command: SharingCommand) -> Result<String, SharingError> {
        match command {
            SharingCommand::Request { count, gpu, seconds, note, confirm } => {
                if self.settings.mode == GpuMode::Leased && !confirm {
                    return Err(SharingError::Invalid(
                        "Tick the box: your workspace restarts to attach the GPUs (running processes end; your home stays).".into(),
                    ));
                }
                Ok(match self.request(actor, viewer, count, gpu, seconds, &note).await? {
                    RequestOutcome::Granted { gpus, ends_at } => {
                        let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
                        format!("Granted: GPU {} until {}.", list.join(", "), app::figures::clock_text(ends_at))
                    }
                    RequestOutcome::Queued { position } => format!("Queued: position {position}."),
                })
            }
            SharingCommand::Release { holding } => self.release(actor, holding).await.map(|()| "Released.".into()),
            SharingCommand::Extend { holding, seconds } => {
                self.extend(actor, holding, seconds).await.map(|end| format!("Extended until {}.", app::figures::clock_text(end)))
            }
            SharingCommand::Cancel { request } => self.cancel(actor, request).await.map(|()| "Request withdrawn.".into()),
            SharingCommand::StillHere => self.still_here(viewer).await.map(|()| "Noted: your workspace is in use.".into()),
            SharingCommand::Reorder { request, up } => self.reorder(actor, request, up).await.map(|()| "Moved.".into()),
            SharingCommand::SetLimits { username, max_gpus, max_lease_seconds, max_queued } => {
                may_administer(actor)?;
                let owner = self.owner_by_name(&username).await?.ok_or(SharingError::NotFound(username))?;
                self.set_limits(actor, &owner, max_gpus, max_lease_seconds, max_queued).await.map(|()| "Limits saved.".into())
            }
            SharingCommand::SetIdlePolicy { username, stop_after_seconds, exempt } => {
                may_administer(actor)?;
                let owner = self.owner_by_name(&username).await?.ok_or(SharingError::NotFound(username))?;
                self.set_idle_policy(actor, &owner, stop_after_seconds, exempt).await.map(|()| "Idle policy saved.".into())
            }
        }
    }
}

/// The board as a workspace's terminal shows it (no utilisation: it would change every round).
pub fn board_text(board: &GpuShareView, dashboard_url: &str) -> String {
    let mode = if board.mode == "leased" {
        "leased: a workspace sees only the GPUs it holds"
    } else {
        "open: every workspace sees every GPU; a claim tells the others which one you use"
    };
    let mut text = format!("GPUs on this server ({mode})\n");
    for g in &board.gpus {
        let holder = match &g.holder {
            None => "free".to_string(),
            Some(h) => format!(
                "{} by {} until {}{}",
                if h.kind == "lease" { "leased" } else { "claimed" },
                h.username,
                app::figures::clock_text(h.ends_at),
                if h.note.is_empty() { String::new() } else { format!(" ({})", h.note) }
            ),
        };
        text += &format!("  GPU {}  {}  {}\n", g.index, g.name, holder);
    }
    for r in &board.queue {
        let what = r.gpu_index.map_or_else(|| format!("{} GPU(s)", r.count), |i| format!("GPU {i}"));
        text += &format!("  waiting {}: {} wants {} for {}\n", r.position, r.username, what, duration_text(r.duration_seconds));
    }
    text += &format!("Claim, lease or release one on the dashboard: {dashboard_url}\n");
    text
}

fn holding_view(h: &HoldingRow) -> GpuHolding {
    GpuHolding {
        id: h.holding.id,
        username: h.username.clone(),
        kind: h.kind.clone(),
        note: h.note.clone(),
        started_at: h.started_at,
        ends_at: h.holding.ends_at,
        idle_since: h.holding.idle_since,
        idle_warned_at: h.holding.idle_warned_at,
    }
}

/// Each sharing event is also the audit log's (as `sharing.<action>`), in the same transaction:
/// the audit log holds every state change; `sharing_events` is GPU sharing's own, shorter-lived
/// record for its page.
const AUDIT_INSERT: &str = "INSERT INTO audit_log (at, actor_kind, actor, client, action, target, outcome, detail) VALUES ($1, $2, $3, NULL, $4, $5, 'ok', $6)";

async fn record_event(db: &Db, actor: &str, username: &str, action: &str, detail: &str) -> Result<(), sqlx::Error> {
    let at = now();
    let mut tx = db.pool.begin().await?;
    sqlx::query("INSERT INTO sharing_events (at, actor, username, action, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(at)
        .bind(actor)
        .bind(username)
        .bind(action)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
    // Sharing names people, not roles: "berth" is Berth itself, anyone else a user.
    let kind = if actor == "berth" { "system" } else { "user" };
    sqlx::query(AUDIT_INSERT).bind(at).bind(kind).bind(actor).bind(format!("sharing.{action}")).bind(username).bind(detail).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A note as others see it: no control characters, no invisible ones that reorder or hide
/// text (bidirectional overrides, zero-width), at most 200 characters.
pub fn clean_note(note: &str) -> String {
    let invisible = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}');
    note.trim().chars().filter(|c| !c.is_control() && !invisible(*c)).take(200).collect()
}

fn note_suffix(note: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!(" ({note})")
    }
}

fn is_owner(actor: &Actor, owner: &Owner) -> bool {
    match actor {
        Actor::System => true,
        Actor::User { id, .. } => *id == owner.id,
    }
}

fn may_act_for(actor: &Actor, owner: &Owner) -> Result<(), SharingError> {
    match actor {
        Actor::User { admin: false, .. } if !is_owner(actor, owner) => Err(SharingError::Forbidden("only the holder or an administrator may do this")),
        _ => Ok(()),
    }
}

fn may_administer(actor: &Actor) -> Result<(), SharingError> {
    match actor {
        Actor::System | Actor::User { admin: true, .. } => Ok(()),
        Actor::User { .. } => Err(SharingError::Forbidden("administrators only")),
    }
}

/// How long the record of grants, warnings and stops is kept.
pub const EVENT_RETENTION_SECONDS: i64 = 180 * 86_400;

/// The scheduler and the idle check, each on its own tick, for as long as `berth serve` runs.
pub async fn run(sharing: Arc<Sharing>) {
    let idle = sharing.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(idle.settings.idle_check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = idle.idle_round().await {
                tracing::warn!(error = %e, "idle check failed");
            }
        }
    });
    let mut tick = tokio::time::interval(sharing.settings.gpu_check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_at = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        tick.tick().await;
        if let Err(e) = sharing.schedule().await {
            tracing::warn!(error = %e, "GPU scheduling round failed");
        }
        if pruned_at.elapsed() >= Duration::from_secs(3600) {
            pruned_at = std::time::Instant::now();
            if let Err(e) = sharing.prune_events().await {
                tracing::warn!(error = %e, "could not prune the sharing record");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_cannot_hide_or_reorder_text_on_others_screens() {
        assert_eq!(clean_note("  fine-tuning\u{1b}[2J\n "), "fine-tuning[2J");
        assert_eq!(clean_note("abc\u{202E}fed\u{200B}"), "abcfed");
        assert_eq!(clean_note(&"x".repeat(300)).len(), 200);
    }
}
