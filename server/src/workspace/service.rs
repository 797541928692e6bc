//! Workspace lifecycle: start, stop, restart, reset, status, reconciliation. Every operation
//! on a user's workspace runs under that user's lock, so concurrent requests (or several Berth
//! processes) never both create.

use std::collections::HashMap;
use std::os::unix::fs::chown;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::model::{
    AccountStatus, LimitsView, PortsView, ProgressStep, StepState, WorkspaceAction, WorkspaceRow, WorkspaceState,
    WorkspaceView, WorkspacesOverview,
};
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use futures_util::StreamExt;
use sqlx::Row as _;

use super::engine::{Engine, EngineError, ExecOutcome, Usage};
use super::lock::{LockError, UserLocks};
use super::spec::{
    build_spec, container_name, container_port, PortBlock, ResourceOverrides, SpecError, WorkspaceSecrets,
    WorkspaceSettings, WorkspaceSpec, WorkspaceUser, LABEL_MANAGED, LABEL_SPEC, LABEL_USER,
};
use crate::config::Isolation;
use crate::accounts::{AccountError, Accounts, User};
use crate::hosts::{App, HostTemplates};
use crate::routes::traefik::{RouteSecrets, TraefikWriter};
use crate::crypto::{random_password, AppSecrets, SecretBox};
use crate::db::{now, Db};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("no such user: {0}")]
    NoSuchUser(String),
    #[error("{0}'s account is not approved")]
    NotApproved(String),
    #[error("cannot prepare {path}: {source}")]
    Storage { path: String, source: std::io::Error },
    /// Said to users as is (the dashboard shows it), so it names no server path; the log does.
    #[error("the workspace storage is full ({free_mib} MiB free, {needed_mib} MiB needed), so nothing was started; an administrator has to free space")]
    StorageFull { path: String, free_mib: u64, needed_mib: u64 },
    #[error("all {0} port blocks are taken")]
    NoFreeSlot(u32),
    #[error("stored workspace credentials could not be opened (was the secret key changed?)")]
    Secrets,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("routes: {0}")]
    Routes(String),
    /// Said to the user as is: the new credential is safe in the database either way.
    #[error("the new {credential} is saved and takes effect when the workspace next starts, but it could not be applied to the running workspace now: {why}")]
    CredentialNotApplied { credential: &'static str, why: String },
}

impl From<AccountError> for WorkspaceError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::NotFound(name) => WorkspaceError::NoSuchUser(name),
            AccountError::Database(e) => WorkspaceError::Database(e),
            other => WorkspaceError::Database(sqlx::Error::Protocol(other.to_string())),
        }
    }
}

/// The stored workspace record of a user.
#[derive(Debug, Clone)]
pub struct WorkspaceRecord {
    pub user_id: i64,
    pub slot: u32,
    pub secrets: WorkspaceSecrets,
    pub desired_running: bool,
    pub overrides: ResourceOverrides,
}

/// The steps of the operation running (or last run) on one workspace.
#[derive(Debug, Clone, Default)]
struct Progress {
    busy: Option<WorkspaceState>,
    steps: Vec<ProgressStep>,
    error: Option<String>,
}

/// Service ports probed after a start, in the order the card lists them.
const PROBES: &[(&str, u16)] = &[
    ("SSH", container_port::SSH),
    ("Desktop (VNC)", container_port::VNC),
    ("Remote desktop (RDP)", container_port::RDP),
    ("Desktop in browser (noVNC)", container_port::NOVNC),
    ("VS Code", container_port::CODE),
    ("Jupyter", container_port::JUPYTER),
    ("TensorBoard", container_port::TENSORBOARD),
];

pub struct Workspaces {
    db: Db,
    accounts: Accounts,
    engine: Arc<Engine>,
    settings: WorkspaceSettings,
    sealer: SecretBox,
    app_secrets: AppSecrets,
    locks: UserLocks,
    progress: Mutex<HashMap<String, Progress>>,
    engine_problem: Mutex<Option<String>>,
    /// The isolation mode in force, `auto` resolved against the engine once.
    isolation: tokio::sync::OnceCell<Isolation>,
    /// How long to wait for the service ports to answer after a start.
    pub probe_timeout: Duration,
    /// Host name shown in the SSH command.
    pub ssh_host: String,
    /// Traefik routes into the workspaces, when Berth writes them.
    pub routes: Option<Arc<TraefikWriter>>,
    /// How launch links are built.
    pub links: LinkSettings,
    /// Bumped whenever a workspace may look different (progress, removal, a container event).
    changes: tokio::sync::watch::Sender<u64>,
}

/// What the dashboard's launch links need.
#[derive(Debug, Clone, Default)]
pub struct LinkSettings {
    pub scheme: String,
    pub domain: String,
    pub hosts: HostTemplates,
    pub guacamole: bool,
}

impl Workspaces {
    pub fn new(db: Db, accounts: Accounts, engine: Arc<Engine>, settings: WorkspaceSettings, key: &[u8; 32], ssh_host: String) -> Workspaces {
        Workspaces {
            locks: UserLocks::new(db.clone()),
            db,
            accounts,
            engine,
            settings,
            sealer: SecretBox::new(key),
            app_secrets: AppSecrets::new(key),
            progress: Mutex::new(HashMap::new()),
            engine_problem: Mutex::new(None),
            isolation: tokio::sync::OnceCell::new(),
            probe_timeout: Duration::from_secs(180),
            ssh_host,
            routes: None,
            links: LinkSettings::default(),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Wakes when some workspace may have changed; callers compare `view()`s to find out which.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Writes (or rewrites) the user's Traefik file; a failure is logged and shown, not fatal.
    fn write_routes(&self, username: &str, secrets: &WorkspaceSecrets) {
        if let Some(routes) = &self.routes {
            match routes.write_user(username, &route_secrets(secrets)) {
                Ok(()) => self.step(username, "routes", StepState::Done, None),
                Err(e) => {
                    tracing::error!(user = username, error = %e, "cannot write Traefik routes");
                    self.step(username, "routes", StepState::Failed, Some(e.to_string()));
                }
            }
        }
    }

    fn remove_routes(&self, username: &str) {
        if let Some(routes) = &self.routes {
            if let Err(e) = routes.remove_user(username) {
                tracing::error!(user = username, error = %e, "cannot remove Traefik routes");
            }
        }
    }

    /// A disabled user keeps nothing running and no routes.
    pub async fn disable_user(&self, username: &str) -> Result<(), WorkspaceError> {
        self.remove_routes(username);
        let user = self.accounts.find_by_name(username).await?;
        if self.record(user.id).await?.is_some() {
            self.stop(username).await?;
            self.remove_routes(username);
        }
        Ok(())
    }

    /// Rewrites every approved user's routes and deletes the others' (stale or missing files repaired).
    pub async fn reconcile_routes(&self) -> Result<Vec<String>, WorkspaceError> {
        let Some(routes) = &self.routes else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT u.username AS username, w.jupyter_token AS token FROM workspaces w JOIN users u ON u.id = w.user_id
             WHERE u.status = 'approved'",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut users = Vec::new();
        for row in rows {
            let token: String = row.try_get("token")?;
            let username: String = row.try_get("username")?;
            let secrets = RouteSecrets {
                jupyter_token: self.sealer.open(&token).map_err(|_| WorkspaceError::Secrets)?,
                app_secret: self.app_secrets.for_user(&username),
            };
            users.push((username, secrets));
        }
        routes.reconcile(&users).map_err(|e| WorkspaceError::Routes(e.to_string()))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn settings(&self) -> &WorkspaceSettings {
        &self.settings
    }

    fn note_engine<T>(&self, result: &Result<T, EngineError>) {
        let mut problem = self.engine_problem.lock().expect("engine state");
        match result {
            Err(EngineError::Unavailable(why)) => *problem = Some(why.clone()),
            _ => *problem = None,
        }
    }

    pub fn engine_problem(&self) -> Option<String> {
        self.engine_problem.lock().expect("engine state").clone()
    }

    /// The isolation mode workspaces run in. `auto` asks the engine once whether it offers the
    /// sysbox runtime. A mode that lets users become root on the host is said once in the log.
    pub async fn isolation(&self) -> Result<Isolation, WorkspaceError> {
        let configured = self.settings.defaults.isolation;
        let mode = self
            .isolation
            .get_or_try_init(|| async {
                let mode = match configured {
                    Isolation::Auto => Isolation::resolve_auto(&self.engine.runtimes().await?, &self.settings.defaults.sysbox_runtime),
                    mode => mode,
                };
                match mode.host_root_warning() {
                    Some(warning) => tracing::warn!(configured = configured.as_str(), "{warning}"),
                    None => tracing::info!(configured = configured.as_str(), mode = mode.as_str(), "workspace isolation"),
                }
                Ok::<_, EngineError>(mode)
            })
            .await?;
        Ok(*mode)
    }

    /// What the dashboard and the admin page say about the mode, once it is known.
    pub fn isolation_view(&self) -> Option<app::model::IsolationView> {
        let mode = *self.isolation.get()?;
        Some(app::model::IsolationView {
            mode: mode.as_str().to_string(),
            host_root: mode.allows_host_root(),
            docker_inside: mode.docker_inside(),
            warning: mode.host_root_warning(),
        })
    }

    // ----- records -------------------------------------------------------------------------

    pub async fn record(&self, user_id: i64) -> Result<Option<WorkspaceRecord>, WorkspaceError> {
        let row = sqlx::query(
            "SELECT w.user_id AS user_id, w.slot AS slot, w.ssh_password AS ssh_password, w.vnc_password AS vnc_password,
                    w.jupyter_token AS jupyter_token, w.desired_state AS desired_state,
                    w.memory_reservation_gib AS memory_reservation_gib, w.memory_limit_gib AS memory_limit_gib,
                    w.swap_gib AS swap_gib, w.cpu_millis AS cpu_millis, w.shm_gib AS shm_gib, w.gpus AS gpus,
                    u.username AS username
             FROM workspaces w JOIN users u ON u.id = w.user_id WHERE w.user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let open = |column: &str| -> Result<String, WorkspaceError> {
            let sealed: String = row.try_get(column)?;
            self.sealer.open(&sealed).map_err(|_| WorkspaceError::Secrets)
        };
        let gib = |column: &str| -> Result<Option<u64>, sqlx::Error> {
            Ok(row.try_get::<Option<i64>, _>(column)?.map(|v| v.max(0) as u64))
        };
        Ok(Some(WorkspaceRecord {
            user_id: row.try_get("user_id")?,
            slot: row.try_get::<i64, _>("slot")? as u32,
            secrets: WorkspaceSecrets {
                ssh_password: open("ssh_password")?,
                vnc_password: open("vnc_password")?,
                jupyter_token: open("jupyter_token")?,
                app_secret: self.app_secrets.for_user(&row.try_get::<String, _>("username")?),
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
        }))
    }

    /// The user's record, allocating a slot and credentials on first use (caller holds the lock).
    async fn ensure_record(&self, user: &User) -> Result<WorkspaceRecord, WorkspaceError> {
        if let Some(record) = self.record(user.id).await? {
            return Ok(record);
        }
        let max = PortBlock::max_slot(&self.settings.ports);
        loop {
            let taken: Vec<i64> = sqlx::query("SELECT slot FROM workspaces ORDER BY slot")
                .fetch_all(&self.db.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>("slot"))
                .collect::<Result<_, _>>()?;
            let slot = (0..=max as i64).find(|s| taken.binary_search(s).is_err()).ok_or(WorkspaceError::NoFreeSlot(max + 1))?;
            let t = now();
            let inserted = sqlx::query(
                "INSERT INTO workspaces (user_id, slot, ssh_password, vnc_password, jupyter_token, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .bind(user.id)
            .bind(slot)
            .bind(self.sealer.seal(&random_password(20)))
            .bind(self.sealer.seal(&random_password(8)))
            .bind(self.sealer.seal(&hex::encode(rand::random::<[u8; 24]>())))
            .bind(t)
            .execute(&self.db.pool)
            .await?;
            if let Some(record) = self.record(user.id).await? {
                if inserted.rows_affected() == 1 {
                    tracing::info!(user = %user.username, slot, "workspace slot allocated");
                }
                return Ok(record);
            }
            // Another process took that slot first: pick again.
        }
    }

    async fn set_desired(&self, user_id: i64, running: bool) -> Result<(), WorkspaceError> {
        sqlx::query("UPDATE workspaces SET desired_state = $1, updated_at = $2 WHERE user_id = $3")
            .bind(if running { "running" } else { "stopped" })
            .bind(now())
            .bind(user_id)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Replaces one of the user's service credentials. A running workspace gets it at once
    /// (through `docker exec` of the image's `berth-set-credentials`); otherwise the entrypoint
    /// applies it at the next start, from the recreated container's environment.
    pub async fn regenerate_credential(&self, username: &str, which: Credential) -> Result<CredentialApplied, WorkspaceError> {
        let user = self.approved_user(username).await?;
        let guard = self.locks.lock(username).await?;
        let result = self.regenerate_locked(&user, which).await;
        guard.release().await;
        result
    }

    async fn regenerate_locked(&self, user: &User, which: Credential) -> Result<CredentialApplied, WorkspaceError> {
        self.ensure_record(user).await?;
        let (column, value) = match which {
            Credential::SshPassword => ("ssh_password", random_password(20)),
            Credential::VncPassword => ("vnc_password", random_password(8)),
        };
        // Stored before anything is tried on the container, so a failure below never loses it:
        // the next start applies what the database holds.
        sqlx::query(&format!("UPDATE workspaces SET {column} = $1, updated_at = $2 WHERE user_id = $3"))
            .bind(self.sealer.seal(&value))
            .bind(now())
            .bind(user.id)
            .execute(&self.db.pool)
            .await?;
        let not_applied = |why: String| {
            tracing::warn!(user = %user.username, credential = which.label(), why = %why, "new credential not applied to the running workspace");
            WorkspaceError::CredentialNotApplied { credential: which.label(), why }
        };
        let name = container_name(&user.username);
        let inspected = self.engine.inspect(&name).await;
        self.note_engine(&inspected);
        let running = match inspected {
            Ok(info) => matches!(info.as_ref().map(container_state), Some(ContainerStateStatusEnum::RUNNING)),
            Err(e) => return Err(not_applied(e.to_string())),
        };
        if !running {
            return Ok(CredentialApplied::AtNextStart);
        }
        let input = format!("{value}\n");
        let outcome = self.engine.exec_with_input(&name, &[SET_CREDENTIALS, which.key()], input.as_bytes(), EXEC_TIMEOUT).await;
        self.note_engine(&outcome);
        match outcome {
            Ok(ExecOutcome { exit_code: Some(0), .. }) => {
                tracing::info!(user = %user.username, credential = which.label(), "new credential applied to the running workspace");
                Ok(CredentialApplied::Now)
            }
            Ok(ExecOutcome { exit_code, output }) => {
                let code = exit_code.map_or_else(|| "an unknown status".to_string(), |c| c.to_string());
                Err(not_applied(format!("{SET_CREDENTIALS} exited with {code}: {}", output.trim())))
            }
            // It stopped since we looked: the next start applies the stored one.
            Err(e) if e.status() == Some(409) => Ok(CredentialApplied::AtNextStart),
            Err(e) => Err(not_applied(e.to_string())),
        }
    }

    pub async fn set_overrides(&self, username: &str, o: &ResourceOverrides) -> Result<(), WorkspaceError> {
        let user = self.accounts.find_by_name(username).await?;
        let guard = self.locks.lock(username).await?;
        self.ensure_record(&user).await?;
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
        .bind(user.id)
        .execute(&self.db.pool)
        .await?;
        guard.release().await;
        Ok(())
    }

    async fn approved_user(&self, username: &str) -> Result<User, WorkspaceError> {
        let user = self.accounts.find_by_name(username).await?;
        if user.status != AccountStatus::Approved {
            return Err(WorkspaceError::NotApproved(username.to_string()));
        }
        Ok(user)
    }

    async fn spec_for(&self, user: &User, record: &WorkspaceRecord) -> Result<WorkspaceSpec, WorkspaceError> {
        let workspace_user = WorkspaceUser {
            username: user.username.clone(),
            slot: record.slot,
            secrets: record.secrets.clone(),
            overrides: record.overrides.clone(),
        };
        let mut settings = self.settings.clone();
        settings.isolation = self.isolation().await?;
        Ok(build_spec(&workspace_user, &settings)?)
    }

    // ----- progress ------------------------------------------------------------------------

    fn begin(&self, username: &str, busy: WorkspaceState, steps: &[&str]) {
        let steps = steps
            .iter()
            .map(|name| ProgressStep { name: name.to_string(), state: StepState::Pending, detail: None })
            .collect();
        self.progress
            .lock()
            .expect("progress")
            .insert(username.to_string(), Progress { busy: Some(busy), steps, error: None });
        self.changed();
    }

    fn step(&self, username: &str, name: &str, state: StepState, detail: Option<String>) {
        let mut all = self.progress.lock().expect("progress");
        let progress = all.entry(username.to_string()).or_default();
        match progress.steps.iter_mut().find(|s| s.name == name) {
            Some(step) => {
                step.state = state;
                step.detail = detail;
            }
            None => progress.steps.push(ProgressStep { name: name.to_string(), state, detail }),
        }
        drop(all);
        self.changed();
    }

    fn finish(&self, username: &str, error: Option<String>) {
        let mut all = self.progress.lock().expect("progress");
        let progress = all.entry(username.to_string()).or_default();
        progress.busy = None;
        if error.is_some() {
            for step in progress.steps.iter_mut().filter(|s| s.state == StepState::Running) {
                step.state = StepState::Failed;
            }
        }
        progress.error = error;
        drop(all);
        self.changed();
    }

    /// Runs `op` as the step `name` of the current operation.
    async fn run_step<T, E: std::fmt::Display>(
        &self,
        username: &str,
        name: &str,
        op: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.step(username, name, StepState::Running, None);
        let result = op.await;
        match &result {
            Ok(_) => self.step(username, name, StepState::Done, None),
            Err(e) => self.step(username, name, StepState::Failed, Some(e.to_string())),
        }
        result
    }

    // ----- operations ----------------------------------------------------------------------

    pub async fn apply(self: &Arc<Self>, username: &str, action: WorkspaceAction) -> Result<(), WorkspaceError> {
        match action {
            WorkspaceAction::Start => self.start(username).await,
            WorkspaceAction::Stop => self.stop(username).await,
            WorkspaceAction::Restart => self.restart(username).await,
            WorkspaceAction::Reset => self.reset(username).await,
        }
    }

    /// Shows the operation as under way at once and runs it in the background; its steps and
    /// any error appear in the workspace view.
    pub fn apply_in_background(self: &Arc<Self>, username: &str, action: WorkspaceAction) {
        let busy = match action {
            WorkspaceAction::Stop => WorkspaceState::Stopping,
            _ => WorkspaceState::Starting,
        };
        self.progress
            .lock()
            .expect("progress")
            .insert(username.to_string(), Progress { busy: Some(busy), steps: Vec::new(), error: None });
        self.changed();
        let (this, username) = (self.clone(), username.to_string());
        tokio::spawn(async move {
            if let Err(e) = this.apply(&username, action).await {
                tracing::warn!(user = %username, action = action.as_str(), error = %e, "workspace operation failed");
                this.finish(&username, Some(e.to_string()));
            }
        });
    }

    /// Creates the workspace if missing (recreating a stopped one whose spec changed) and starts it.
    pub async fn start(self: &Arc<Self>, username: &str) -> Result<(), WorkspaceError> {
        let user = self.approved_user(username).await?;
        let guard = self.locks.lock(username).await?;
        let result = self.start_locked(&user, false).await;
        guard.release().await;
        result
    }

    pub async fn restart(self: &Arc<Self>, username: &str) -> Result<(), WorkspaceError> {
        let user = self.approved_user(username).await?;
        let guard = self.locks.lock(username).await?;
        // Before stopping: a restart that could not start again must leave the workspace running.
        if let Err(e) = self.restart_fits(&user).await {
            self.finish(username, Some(e.to_string()));
            guard.release().await;
            return Err(e);
        }
        self.begin(username, WorkspaceState::Stopping, &["stop container"]);
        let stopped = self
            .run_step(username, "stop container", self.engine.stop(&container_name(username), self.settings.defaults.stop_timeout_seconds))
            .await;
        self.note_engine(&stopped);
        let result = match stopped {
            Ok(()) => self.start_locked(&user, false).await,
            Err(e) => {
                self.finish(username, Some(e.to_string()));
                Err(e.into())
            }
        };
        guard.release().await;
        result
    }

    async fn restart_fits(&self, user: &User) -> Result<(), WorkspaceError> {
        let Some(record) = self.record(user.id).await? else { return Ok(()) };
        self.check_free_space(&self.spec_for(user, &record).await?)
    }

    /// Removes the container and creates it afresh; homes and other directories are kept.
    pub async fn reset(self: &Arc<Self>, username: &str) -> Result<(), WorkspaceError> {
        let user = self.approved_user(username).await?;
        let guard = self.locks.lock(username).await?;
        let result = self.start_locked(&user, true).await;
        guard.release().await;
        result
    }

    pub async fn stop(&self, username: &str) -> Result<(), WorkspaceError> {
        let user = self.accounts.find_by_name(username).await?;
        let guard = self.locks.lock(username).await?;
        if self.record(user.id).await?.is_some() {
            self.set_desired(user.id, false).await?;
        }
        self.begin(username, WorkspaceState::Stopping, &["stop container"]);
        let result = self
            .run_step(username, "stop container", self.engine.stop(&container_name(username), self.settings.defaults.stop_timeout_seconds))
            .await;
        self.note_engine(&result);
        if let Some(record) = self.record(user.id).await? {
            self.write_routes(username, &record.secrets);
        }
        self.finish(username, result.as_ref().err().map(|e| e.to_string()));
        guard.release().await;
        Ok(result?)
    }

    /// Removes the container and the user's network (data directories stay).
    pub async fn remove(&self, username: &str) -> Result<(), WorkspaceError> {
        let user = self.accounts.find_by_name(username).await?;
        let guard = self.locks.lock(username).await?;
        if self.record(user.id).await?.is_some() {
            self.set_desired(user.id, false).await?;
        }
        let result = async {
            self.engine.remove(&container_name(username)).await?;
            self.engine.remove_network(&super::spec::network_name(username)).await
        }
        .await;
        self.note_engine(&result);
        self.remove_routes(username);
        guard.release().await;
        self.progress.lock().expect("progress").remove(username);
        self.changed();
        Ok(result?)
    }

    async fn start_locked(self: &Arc<Self>, user: &User, fresh: bool) -> Result<(), WorkspaceError> {
        let username = user.username.as_str();
        let mut steps = vec!["prepare storage", "network"];
        if fresh {
            steps.push("remove container");
        }
        steps.extend(["create container", "start container"]);
        self.begin(username, WorkspaceState::Starting, &steps);
        let result = self.start_steps(user, fresh).await;
        if let Err(e) = &result {
            if let WorkspaceError::Engine(EngineError::Unavailable(why)) = e {
                *self.engine_problem.lock().expect("engine state") = Some(why.clone());
            }
            tracing::warn!(user = username, error = %e, "workspace start failed");
        }
        self.finish(username, result.as_ref().err().map(|e| e.to_string()));
        result
    }

    async fn start_steps(self: &Arc<Self>, user: &User, fresh: bool) -> Result<(), WorkspaceError> {
        let username = user.username.as_str();
        let record = self.ensure_record(user).await?;
        let spec = self.spec_for(user, &record).await?;
        // Asked once, under the user's lock; an engine that does not answer fails the network
        // step below, where the dashboard shows it.
        let existing = self.engine.inspect(&spec.container_name).await;
        // Storage first: a workspace refused for want of space must not be brought back later.
        self.run_step(username, "prepare storage", async {
            self.prepare_directories(&spec)?;
            // Start on a running workspace changes nothing on disk, so it is never refused.
            let running = !fresh
                && matches!(&existing, Ok(Some(info))
                    if matches!(container_state(info), ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::RESTARTING));
            if !running {
                self.check_free_space(&spec)?;
            }
            Ok::<_, WorkspaceError>(())
        })
        .await?;
        self.set_desired(user.id, true).await?;

        let mut network_labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_USER.to_string(), username.to_string()),
        ]);
        if let Some((k, v)) = self.settings.extra_label() {
            network_labels.insert(k, v);
        }
        let network = self.run_step(username, "network", self.engine.ensure_network(&spec.network_name, network_labels)).await;
        self.note_engine(&network);
        network?;
        for container in &self.settings.defaults.attach_containers {
            if let Err(e) = self.engine.connect_network(&spec.network_name, container).await {
                tracing::warn!(container, network = %spec.network_name, error = %e, "cannot attach to the user's network");
            }
        }

        let existing = if fresh {
            self.run_step(username, "remove container", self.engine.remove(&spec.container_name)).await?;
            None
        } else {
            existing?
        };
        match existing.as_ref().map(container_state) {
            Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::RESTARTING) => {
                self.step(username, "create container", StepState::Done, Some("already exists".into()));
                self.step(username, "start container", StepState::Done, Some("already running".into()));
            }
            Some(_) if spec_label(existing.as_ref()) != Some(spec.hash.as_str()) => {
                // Stopped and out of date: recreate it from the current spec.
                self.run_step(username, "create container", async {
                    self.engine.remove(&spec.container_name).await?;
                    self.engine.create(&spec.container_name, spec.body.clone()).await
                })
                .await?;
                self.run_step(username, "start container", self.engine.start(&spec.container_name)).await?;
            }
            Some(_) => {
                self.step(username, "create container", StepState::Done, Some("already exists".into()));
                self.run_step(username, "start container", self.engine.start(&spec.container_name)).await?;
            }
            None => {
                self.run_step(username, "create container", self.engine.create(&spec.container_name, spec.body.clone())).await?;
                self.run_step(username, "start container", self.engine.start(&spec.container_name)).await?;
            }
        }
        *self.engine_problem.lock().expect("engine state") = None;
        self.write_routes(username, &record.secrets);
        tracing::info!(user = username, "workspace running");
        self.spawn_probes(username.to_string());
        Ok(())
    }

    fn prepare_directories(&self, spec: &WorkspaceSpec) -> Result<(), WorkspaceError> {
        use std::os::unix::fs::PermissionsExt;
        for dir in &spec.directories {
            let path = &dir.path;
            let storage = |source: std::io::Error| {
                if source.raw_os_error() == Some(libc::ENOSPC) {
                    tracing::error!(path = %path.display(), "workspace storage is full");
                    let needed_mib = self.settings.defaults.min_free_mib.max(1);
                    WorkspaceError::StorageFull { path: path.display().to_string(), free_mib: 0, needed_mib }
                } else {
                    WorkspaceError::Storage { path: path.display().to_string(), source }
                }
            };
            let existed = path.exists();
            std::fs::create_dir_all(path).map_err(storage)?;
            // Only a directory Berth just made gets its mode and owner: never walk a user's files.
            if !existed {
                // Set explicitly: the process umask must not decide who can read a home.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(dir.mode)).map_err(storage)?;
                if let Some(uid) = dir.owner {
                    if let Err(e) = chown(path, Some(uid), Some(uid)) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot hand directory to the workspace user");
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses when a directory the workspace writes to has less than `min_free_mib` free.
    fn check_free_space(&self, spec: &WorkspaceSpec) -> Result<(), WorkspaceError> {
        let needed_mib = self.settings.defaults.min_free_mib;
        if needed_mib == 0 {
            return Ok(());
        }
        for path in &spec.writable {
            let free_mib = match crate::disk::free_bytes(path) {
                Ok(bytes) => bytes >> 20,
                Err(source) => return Err(WorkspaceError::Storage { path: path.display().to_string(), source }),
            };
            if free_mib < needed_mib {
                tracing::error!(path = %path.display(), free_mib, needed_mib, "workspace storage is full");
                return Err(WorkspaceError::StorageFull { path: path.display().to_string(), free_mib, needed_mib });
            }
        }
        Ok(())
    }

    /// Marks each service port as answering once it accepts a TCP connection.
    fn spawn_probes(self: &Arc<Self>, username: String) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(Some(info)) = this.engine.inspect(&container_name(&username)).await else { return };
            let ip = container_ip(&info, &super::spec::network_name(&username));
            let Some(ip) = ip else { return };
            for (name, _) in PROBES {
                this.step(&username, &format!("{name} answering"), StepState::Running, None);
            }
            let deadline = tokio::time::Instant::now() + this.probe_timeout;
            let app_secret = this.app_secrets.for_user(&username);
            let mut waiting: Vec<(&str, u16)> = PROBES.to_vec();
            while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
                let mut still = Vec::new();
                for (name, port) in waiting {
                    let gated = App::ALL.iter().any(|app| app.gated() && app.port() == port);
                    if answers(ip, port, gated.then_some(app_secret.as_str())).await {
                        this.step(&username, &format!("{name} answering"), StepState::Done, None);
                    } else {
                        still.push((name, port));
                    }
                }
                waiting = still;
                if !waiting.is_empty() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            for (name, _) in waiting {
                this.step(&username, &format!("{name} answering"), StepState::Failed, Some("not answering yet".into()));
            }
        });
    }

    // ----- status --------------------------------------------------------------------------

    fn ports_view(&self, slot: u32) -> Option<PortsView> {
        let p = PortBlock::for_slot(slot, &self.settings.ports).ok()?;
        Some(PortsView {
            ssh: p.ssh,
            vnc: p.vnc,
            rdp: p.rdp,
            novnc: p.novnc,
            code: p.code,
            jupyter: p.jupyter,
            tensorboard: p.tensorboard,
            vnc_public: self.settings.ports.public.iter().any(|s| s == "vnc"),
            rdp_public: self.settings.ports.public.iter().any(|s| s == "rdp"),
            web_published: self.settings.ports.publish_web,
        })
    }

    fn limits(&self, o: &ResourceOverrides) -> LimitsView {
        let d = &self.settings.defaults;
        LimitsView {
            memory_reservation_gib: o.memory_reservation_gib.unwrap_or(d.memory_reservation_gib),
            memory_limit_gib: o.memory_limit_gib.unwrap_or(d.memory_limit_gib),
            swap_gib: o.swap_gib.unwrap_or(d.swap_gib),
            cpus: o.cpus.unwrap_or(d.cpus),
            gpus: o.gpus.clone().unwrap_or_else(|| d.gpus.clone()),
        }
    }

    pub async fn view(&self, username: &str) -> Result<WorkspaceView, WorkspaceError> {
        let user = self.accounts.find_by_name(username).await?;
        let record = self.record(user.id).await?;
        let inspected = self.engine.inspect(&container_name(username)).await;
        self.note_engine(&inspected);
        let progress = self.progress.lock().expect("progress").get(username).cloned().unwrap_or_default();
        let (state, started_at, drift) = match &inspected {
            Ok(info) => {
                // The engine answers: the mode can be known (the card says what it allows).
                self.isolation().await?;
                let expected = match &record {
                    Some(r) => Some(self.spec_for(&user, r).await?.hash),
                    None => None,
                };
                let drift = info.is_some() && expected.is_some() && spec_label(info.as_ref()) != expected.as_deref();
                (docker_state(info.as_ref()), started_at(info.as_ref()), drift)
            }
            Err(_) => (WorkspaceState::Error, None, false),
        };
        let state = progress.busy.unwrap_or(state);
        let record_exists = record.is_some();
        Ok(WorkspaceView {
            username: username.to_string(),
            state,
            ports: record.as_ref().and_then(|r| self.ports_view(r.slot)),
            ssh_host: self.ssh_host.clone(),
            uptime_seconds: if state == WorkspaceState::Running { started_at.map(|t| (now() - t).max(0)) } else { None },
            limits: self.limits(&record.map(|r| r.overrides).unwrap_or_default()),
            steps: progress.steps,
            error: progress.error,
            drift,
            engine_problem: inspected.err().map(|e| e.to_string()),
            apps: self.app_links(username),
            guacamole: self.links.guacamole && record_exists,
            isolation: self.isolation_view(),
        })
    }

    fn app_links(&self, username: &str) -> Vec<app::model::AppLink> {
        if self.routes.is_none() {
            return Vec::new();
        }
        let l = &self.links;
        App::ALL
            .iter()
            .map(|app| {
                let host = l.hosts.host(*app, username, &l.domain);
                let (label, path) = match app {
                    App::Code => ("VS Code", "/"),
                    App::Jupyter => ("Jupyter", "/lab"),
                    App::TensorBoard => ("TensorBoard", "/"),
                    App::Desktop => ("Desktop (noVNC)", "/vnc.html?autoconnect=1&resize=remote&path=websockify"),
                };
                app::model::AppLink { key: app.key().into(), label: label.into(), url: format!("{}://{host}{path}", l.scheme) }
            })
            .collect()
    }

    /// Every workspace on the engine plus every user with a record, for admins.
    pub async fn overview(&self, with_usage: bool) -> Result<WorkspacesOverview, WorkspaceError> {
        let extra = self.settings.extra_label();
        let listed = self.engine.list_managed(extra.as_ref()).await;
        self.note_engine(&listed);
        let containers = match listed {
            Ok(c) => c,
            Err(EngineError::Unavailable(why)) => {
                return Ok(WorkspacesOverview { rows: Vec::new(), foreign: Vec::new(), engine_problem: Some(why), isolation: self.isolation_view() })
            }
            Err(e) => return Err(e.into()),
        };
        let records: HashMap<String, (u32, bool)> = sqlx::query(
            "SELECT u.username AS username, w.slot AS slot, w.desired_state AS desired FROM workspaces w JOIN users u ON u.id = w.user_id",
        )
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String, _>("username")?, (r.try_get::<i64, _>("slot")? as u32, r.try_get::<String, _>("desired")? == "running"))))
        .collect::<Result<_, sqlx::Error>>()?;

        // Docker takes about a second per stats sample: ask for all running workspaces at once.
        let usages: HashMap<String, Usage> = if with_usage {
            let running: Vec<String> = containers
                .iter()
                .filter(|c| c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running"))
                .filter_map(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_USER)).cloned())
                .collect();
            futures_util::stream::iter(running)
                .map(|owner| async move {
                    let usage = self.engine.usage(&container_name(&owner)).await.ok();
                    (owner, usage)
                })
                .buffer_unordered(16)
                .filter_map(|(owner, usage)| async move { usage.map(|u| (owner, u)) })
                .collect()
                .await
        } else {
            HashMap::new()
        };
        let mut rows = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for c in &containers {
            let labels = c.labels.clone().unwrap_or_default();
            let Some(owner) = labels.get(LABEL_USER).cloned() else { continue };
            seen.insert(owner.clone());
            let record = records.get(&owner);
            let state = match c.state.as_ref().map(|s| s.to_string()).as_deref() {
                Some("running") => WorkspaceState::Running,
                Some("restarting") => WorkspaceState::Starting,
                Some("removing") => WorkspaceState::Stopping,
                _ => WorkspaceState::Stopped,
            };
            let busy = self.progress.lock().expect("progress").get(&owner).and_then(|p| p.busy);
            let usage = usages.get(&owner).copied();
            let expected = match self.accounts.find_by_name(&owner).await {
                Ok(user) => match self.record(user.id).await? {
                    Some(r) => Some(self.spec_for(&user, &r).await?.hash),
                    None => None,
                },
                Err(_) => None,
            };
            rows.push(WorkspaceRow {
                username: owner.clone(),
                state: busy.unwrap_or(state),
                ports: record.and_then(|(slot, _)| self.ports_view(*slot)),
                cpu_percent: usage.map(|u| u.cpu_percent),
                memory_bytes: usage.map(|u| u.memory_bytes),
                drift: expected.is_some() && labels.get(LABEL_SPEC) != expected.as_ref(),
                orphan: expected.is_none(),
            });
        }
        for (owner, (slot, _)) in &records {
            if !seen.contains(owner) {
                rows.push(WorkspaceRow {
                    username: owner.clone(),
                    state: WorkspaceState::Absent,
                    ports: self.ports_view(*slot),
                    cpu_percent: None,
                    memory_bytes: None,
                    drift: false,
                    orphan: false,
                });
            }
        }
        rows.sort_by(|a, b| a.username.cmp(&b.username));
        let foreign = self
            .engine
            .list_named_workspaces()
            .await?
            .into_iter()
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_MANAGED)).is_none())
            .filter_map(|c| c.names.and_then(|n| n.first().cloned()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        // Known by now (the rows' drift needed it) unless no workspace exists yet.
        let _ = self.isolation().await;
        Ok(WorkspacesOverview { rows, foreign, engine_problem: None, isolation: self.isolation_view() })
    }

    // ----- reconciliation ------------------------------------------------------------------

    /// Adopts Berth's containers, reports orphans, foreign containers and drift, and brings
    /// back workspaces their users want running (e.g. after Berth died mid-start).
    pub async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport, WorkspaceError> {
        let overview = self.overview(false).await?;
        if let Some(problem) = overview.engine_problem {
            return Err(WorkspaceError::Engine(EngineError::Unavailable(problem)));
        }
        let mut report = ReconcileReport { foreign: overview.foreign.clone(), ..Default::default() };
        for row in &overview.rows {
            if row.orphan {
                tracing::warn!(container = %container_name(&row.username), "orphaned workspace container: no matching user");
                report.orphans.push(row.username.clone());
            } else if row.state != WorkspaceState::Absent {
                report.adopted.push(row.username.clone());
            }
            if row.drift {
                tracing::info!(user = %row.username, "workspace differs from its current spec; applied at its next start");
                report.drifted.push(row.username.clone());
            }
        }
        match self.reconcile_routes().await {
            Ok(removed) => report.stale_routes = removed,
            Err(e) => tracing::error!(error = %e, "cannot reconcile Traefik routes"),
        }
        for name in &report.foreign {
            tracing::warn!(container = %name, "foreign container uses a workspace name but was not created by Berth");
        }
        let wanted: Vec<String> = sqlx::query(
            "SELECT u.username AS username FROM workspaces w JOIN users u ON u.id = w.user_id
             WHERE w.desired_state = 'running' AND u.status = 'approved'",
        )
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("username"))
        .collect::<Result<_, _>>()?;
        for username in wanted {
            let running = overview.rows.iter().any(|r| r.username == username && r.state == WorkspaceState::Running);
            if !running {
                tracing::info!(user = %username, "bringing back a workspace its user wants running");
                // One workspace that cannot start (its storage is full, say) must not keep the
                // others down.
                match self.start(&username).await {
                    Ok(()) => report.restarted.push(username),
                    Err(e) => {
                        tracing::warn!(user = %username, error = %e, "could not bring a workspace back");
                        report.failed.push(format!("{username}: {e}"));
                    }
                }
            }
        }
        Ok(report)
    }

    /// Follows Docker's events for Berth's containers; reconnects (and reconciles) when the
    /// engine comes back.
    pub async fn watch_events(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.engine.events().await {
                Ok(mut events) => {
                    if let Err(e) = self.reconcile().await {
                        tracing::warn!(error = %e, "reconciliation failed");
                    }
                    *self.engine_problem.lock().expect("engine state") = None;
                    backoff = Duration::from_secs(1);
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(event) => {
                                let actor = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
                                let user = actor.and_then(|a| a.get(LABEL_USER)).cloned().unwrap_or_default();
                                tracing::debug!(user, action = ?event.action, "container event");
                                self.changed();
                            }
                            Err(e) => {
                                *self.engine_problem.lock().expect("engine state") = Some(e.to_string());
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    *self.engine_problem.lock().expect("engine state") = Some(e.to_string());
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    SshPassword,
    VncPassword,
}

impl Credential {
    /// The argument `berth-set-credentials` takes.
    fn key(self) -> &'static str {
        match self {
            Credential::SshPassword => "ssh",
            Credential::VncPassword => "vnc",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Credential::SshPassword => "SSH password",
            Credential::VncPassword => "VNC password",
        }
    }
}

/// When a regenerated credential takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialApplied {
    /// The running workspace uses it already.
    Now,
    /// Nothing is running: the next start applies it.
    AtNextStart,
}

/// The image's script that applies a password read from stdin to the running workspace.
const SET_CREDENTIALS: &str = "/usr/local/lib/berth/berth-set-credentials";
/// chpasswd and vncpasswd take well under a second; a hung exec must not hold the user's lock.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub adopted: Vec<String>,
    pub orphans: Vec<String>,
    pub foreign: Vec<String>,
    pub drifted: Vec<String>,
    pub restarted: Vec<String>,
    /// Wanted running but could not be started, with why.
    pub failed: Vec<String>,
    pub stale_routes: Vec<String>,
}

/// Whether a service accepts connections. The app gate accepts them on the code-server and
/// TensorBoard ports even when nothing runs behind it (slim has no code-server), so those are
/// asked through the gate with the user's secret: a 502, 503 or 504 from it means the service
/// itself is not up yet.
async fn answers(ip: std::net::IpAddr, port: u16, gate_secret: Option<&str>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect((ip, port));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_millis(500), connect).await else { return false };
    let Some(secret) = gate_secret else { return true };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {ip}:{port}\r\n{}: {secret}\r\nConnection: close\r\n\r\n",
        crate::routes::traefik::APP_SECRET_HEADER
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut status_line = [0u8; 12];
        stream.read_exact(&mut status_line).await?;
        Ok::<_, std::io::Error>(status_line)
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(line)) => line.starts_with(b"HTTP/1.") && !matches!(&line[9..12], b"502" | b"503" | b"504"),
        _ => false,
    }
}

fn route_secrets(secrets: &WorkspaceSecrets) -> RouteSecrets {
    RouteSecrets { jupyter_token: secrets.jupyter_token.clone(), app_secret: secrets.app_secret.clone() }
}

fn container_state(info: &ContainerInspectResponse) -> ContainerStateStatusEnum {
    info.state.as_ref().and_then(|s| s.status).unwrap_or(ContainerStateStatusEnum::EMPTY)
}

fn spec_label(info: Option<&ContainerInspectResponse>) -> Option<&str> {
    info?.config.as_ref()?.labels.as_ref()?.get(LABEL_SPEC).map(String::as_str)
}

fn docker_state(info: Option<&ContainerInspectResponse>) -> WorkspaceState {
    match info.map(container_state) {
        None => WorkspaceState::Absent,
        Some(ContainerStateStatusEnum::RUNNING) => WorkspaceState::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => WorkspaceState::Starting,
        Some(ContainerStateStatusEnum::REMOVING | ContainerStateStatusEnum::STOPPING) => WorkspaceState::Stopping,
        Some(ContainerStateStatusEnum::DEAD) => WorkspaceState::Error,
        Some(_) => WorkspaceState::Stopped,
    }
}

fn started_at(info: Option<&ContainerInspectResponse>) -> Option<i64> {
    let text = info?.state.as_ref()?.started_at.as_ref()?;
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

fn container_ip(info: &ContainerInspectResponse, network: &str) -> Option<std::net::IpAddr> {
    let networks = info.network_settings.as_ref()?.networks.as_ref()?;
    networks.get(network)?.ip_address.as_ref()?.parse().ok()
}
