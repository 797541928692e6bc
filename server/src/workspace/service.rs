//! The workspace service: who may act on which workspace, and the state every operation
//! shares. The operations live beside it: `lifecycle` (start, stop, …), `views` (the card and
//! the admin overview), `reconcile` (bringing the runtime in line, following its events).
//! Every operation on a user's workspace runs under that user's lock (`with_lock`), so
//! concurrent requests, or several Berth processes, never both create.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::model::CurrentUser;

use super::live::LiveState;
use super::lock::UserLocks;
use super::progress::ProgressBoard;
use super::records::Records;
use super::services::ServiceBoard;
pub use super::error::WorkspaceError;
use super::runtime::{Capabilities, RuntimeError, WorkspaceRuntime};
use super::spec::{build_plan, WorkspacePlan, WorkspaceSettings, WorkspaceUser};
use super::records::WorkspaceRecord;
use crate::accounts::User;
use crate::config::Isolation;
use crate::crypto::{AppSecrets, SecretBox};
use crate::db::Db;
use crate::hosts::HostTemplates;
use crate::routes::traefik::TraefikWriter;

/// The user a workspace belongs to, resolved by the caller (the workspace layer never looks
/// accounts up by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: i64,
    pub username: String,
    pub approved: bool,
}

impl From<&User> for Owner {
    fn from(user: &User) -> Owner {
        Owner { id: user.id, username: user.username.clone(), approved: user.status == app::model::AccountStatus::Approved }
    }
}

impl From<&CurrentUser> for Owner {
    /// A current user is an approved one: the request layer drops the others' sessions.
    fn from(user: &CurrentUser) -> Owner {
        Owner { id: user.id, username: user.username.clone(), approved: true }
    }
}

/// Who asks for an operation. The service checks it whatever the caller checked before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Berth itself or its command line (run by whoever holds the server).
    System,
    User { id: i64, admin: bool },
}

impl From<&CurrentUser> for Actor {
    fn from(user: &CurrentUser) -> Actor {
        Actor::User { id: user.id, admin: user.is_admin }
    }
}

impl Actor {
    fn is_admin(&self) -> bool {
        matches!(self, Actor::System | Actor::User { admin: true, .. })
    }

    fn is_owner(&self, owner: &Owner) -> bool {
        match self {
            Actor::System => true,
            Actor::User { id, .. } => *id == owner.id,
        }
    }

    /// Starting, stopping, looking: the owner or an admin.
    pub(super) fn may_operate(&self, owner: &Owner) -> Result<(), WorkspaceError> {
        if self.is_owner(owner) || self.is_admin() {
            Ok(())
        } else {
            Err(WorkspaceError::Forbidden("only the owner or an administrator may do this"))
        }
    }

    /// Its usage and its output: the owner, or an admin (who keeps the shared machine fair).
    pub fn may_watch(&self, owner: &Owner) -> Result<(), WorkspaceError> {
        self.may_operate(owner)
    }

    /// The workspace's own secrets: the owner alone (admins run the portal, not users' sessions).
    pub(super) fn may_use_secrets(&self, owner: &Owner) -> Result<(), WorkspaceError> {
        if self.is_owner(owner) {
            Ok(())
        } else {
            Err(WorkspaceError::Forbidden("only the owner may see or change the workspace's passwords"))
        }
    }

    pub(super) fn may_administer(&self) -> Result<(), WorkspaceError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(WorkspaceError::Forbidden("administrators only"))
        }
    }
}

pub struct Workspaces {
    pub(super) runtime: Arc<dyn WorkspaceRuntime>,
    pub(super) records: Records,
    pub(super) settings: WorkspaceSettings,
    locks: UserLocks,
    pub(super) progress: ProgressBoard,
    pub(super) live: LiveState,
    /// Each workspace's services as last learnt (installed, ready).
    pub(super) services: ServiceBoard,
    /// What the runtime offers, asked once when a decision needs it.
    capabilities: tokio::sync::OnceCell<Capabilities>,
    /// The isolation mode in force, `auto` resolved against the runtime once.
    isolation: tokio::sync::OnceCell<Isolation>,
    pub(super) engine_problem: Mutex<Option<String>>,
    /// How long to follow the services after a start (until they all answer, at most this).
    pub probe_timeout: Duration,
    /// How long a create or start may take before it counts as failed.
    pub operation_timeout: Duration,
    /// Host name shown in the SSH command.
    pub ssh_host: String,
    /// Traefik routes into the workspaces, when Berth writes them.
    pub routes: Option<Arc<TraefikWriter>>,
    /// How launch links are built.
    pub links: LinkSettings,
    /// Told of every finished start, stop, restart and reset: (operation, succeeded, time taken).
    pub on_operation: Option<OperationHook>,
    /// Told of what each reconciliation `serve` runs found and did (the audit log keeps it).
    pub on_reconcile: Option<Arc<dyn Fn(&super::ReconcileReport) + Send + Sync>>,
    /// In `gpu.mode = leased`: the GPUs each user holds, which alone its workspace gets.
    pub leased_gpus: Option<Arc<dyn HeldGpus>>,
}

/// The GPUs a user holds a lease on (device ids for the runtime), kept by GPU sharing.
#[async_trait::async_trait]
pub trait HeldGpus: Send + Sync {
    async fn held_gpus(&self, user_id: i64) -> Result<Vec<String>, sqlx::Error>;
}

pub type OperationHook = Arc<dyn Fn(&'static str, bool, Duration) + Send + Sync>;

/// Where one app of a workspace is reached, with what the proxy adds to each request.
#[derive(Clone)]
pub struct AppUpstream {
    pub address: std::net::SocketAddr,
    pub jupyter_token: String,
    pub app_secret: String,
}

impl std::fmt::Debug for AppUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppUpstream({}, <secrets redacted>)", self.address)
    }
}

/// What the dashboard's launch links need.
#[derive(Debug, Clone, Default)]
pub struct LinkSettings {
    pub scheme: String,
    pub domain: String,
    pub hosts: HostTemplates,
    /// `:port` of the app hosts' URLs (the embedded gateway serves them on the portal's port).
    pub port: Option<u16>,
    /// The embedded app gateway serves the app hosts (links show without Traefik routes).
    pub gateway: bool,
    pub guacamole: bool,
}

impl Workspaces {
    pub fn new(db: Db, runtime: Arc<dyn WorkspaceRuntime>, settings: WorkspaceSettings, key: &[u8; 32], ssh_host: String) -> Workspaces {
        Workspaces {
            locks: UserLocks::new(db.clone()),
            records: Records::new(db, SecretBox::new(key), AppSecrets::new(key)),
            runtime,
            settings,
            progress: ProgressBoard::default(),
            live: LiveState::default(),
            services: ServiceBoard::default(),
            capabilities: tokio::sync::OnceCell::new(),
            isolation: tokio::sync::OnceCell::new(),
            engine_problem: Mutex::new(None),
            probe_timeout: Duration::from_secs(180),
            operation_timeout: Duration::from_secs(300),
            ssh_host,
            routes: None,
            links: LinkSettings::default(),
            on_operation: None,
            on_reconcile: None,
            leased_gpus: None,
        }
    }

    pub fn settings(&self) -> &WorkspaceSettings {
        &self.settings
    }

    pub fn runtime(&self) -> &Arc<dyn WorkspaceRuntime> {
        &self.runtime
    }

    /// Bumped on every change a dashboard shows (progress, runtime state); wait on it to push.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Runs `op` holding the owner's lock, and releases the lock whatever `op` returns.
    pub(super) async fn with_lock<T, F, Fut>(&self, username: &str, op: F) -> Result<T, WorkspaceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, WorkspaceError>>,
    {
        let guard = self.locks.lock(username).await?;
        let result = op().await;
        guard.release().await;
        result
    }

    /// Remembers whether the runtime answered, for the dashboard's banner.
    pub(super) fn note_runtime<T>(&self, result: &Result<T, RuntimeError>) {
        let mut problem = self.engine_problem.lock().expect("engine state");
        match result {
            Err(RuntimeError::Unavailable(why)) => *problem = Some(why.clone()),
            _ => *problem = None,
        }
    }

    pub fn engine_problem(&self) -> Option<String> {
        self.engine_problem.lock().expect("engine state").clone()
    }

    /// What the runtime offers (runtimes, privileged starts, GPUs), asked once.
    pub async fn capabilities(&self) -> Result<&Capabilities, WorkspaceError> {
        Ok(self.capabilities.get_or_try_init(|| self.runtime.capabilities()).await?)
    }

    /// The isolation mode workspaces run in. `auto` asks the runtime once what it offers:
    /// sysbox, else privileged if a privileged container can start, else plain. A mode that
    /// lets users become root on the host is said once in the log.
    pub async fn isolation(&self) -> Result<Isolation, WorkspaceError> {
        let configured = self.settings.defaults.isolation;
        let mode = self
            .isolation
            .get_or_try_init(|| async {
                let mode = match configured {
                    Isolation::Auto => {
                        let capabilities = self.capabilities().await?;
                        if let Err(why) = &capabilities.privileged {
                            tracing::info!(why = %why, "this engine does not start privileged workspaces");
                        }
                        Isolation::resolve_auto(&capabilities.runtimes, capabilities.privileged.is_ok(), &self.settings.defaults.sysbox_runtime)
                    }
                    mode => mode,
                };
                match mode.host_root_warning() {
                    Some(warning) => tracing::warn!(configured = configured.as_str(), "{warning}"),
                    None => tracing::info!(configured = configured.as_str(), mode = mode.as_str(), "workspace isolation"),
                }
                Ok::<_, WorkspaceError>(mode)
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

    /// Where the embedded app gateway sends `username`'s `app` traffic, and the secret it adds
    /// on the way (what Traefik's middlewares add): None when the user has no running workspace.
    pub async fn app_upstream(&self, username: &str, app: crate::hosts::App) -> Result<Option<AppUpstream>, WorkspaceError> {
        let Some(record) = self.records.get_approved_by_name(username).await? else { return Ok(None) };
        let address = self.runtime.service_address(&super::names::workspace_name(username), app.port()).await?;
        Ok(address.map(|address| AppUpstream {
            address,
            jupyter_token: record.secrets.jupyter_token,
            app_secret: record.secrets.app_secret,
        }))
    }

    /// The owner's stored record (slot, credentials, limits), if a workspace was ever made.
    pub async fn record(&self, owner: &Owner) -> Result<Option<WorkspaceRecord>, WorkspaceError> {
        self.records.get(owner.id, &owner.username).await
    }

    /// The GPUs a workspace gets: `auto` is all of them when the runtime has GPU support and
    /// none otherwise. An explicit request on a runtime without GPUs is kept as asked (views
    /// show it); `check_gpus` refuses it before a start.
    async fn resolve_gpus(&self, record: &WorkspaceRecord) -> Result<String, WorkspaceError> {
        if let Some(book) = &self.leased_gpus {
            let held = book.held_gpus(record.user_id).await?;
            return Ok(if held.is_empty() { "none".into() } else { held.join(",") });
        }
        match record.overrides.gpus.as_deref().unwrap_or(&self.settings.defaults.gpus) {
            "auto" => Ok(if self.capabilities().await?.gpus { "all".into() } else { "none".into() }),
            other => Ok(other.to_string()),
        }
    }

    /// Refuses a start that asks for GPUs the runtime cannot give, naming the setting and the fix.
    pub(super) async fn check_gpus(&self, record: &WorkspaceRecord, username: &str) -> Result<(), WorkspaceError> {
        if let Some(book) = &self.leased_gpus {
            let held = book.held_gpus(record.user_id).await?;
            if held.is_empty() || self.capabilities().await?.gpus {
                return Ok(());
            }
            return Err(WorkspaceError::NoGpus { setting: format!("the GPU lease of {username}"), value: held.join(",") });
        }
        let (setting, value) = match &record.overrides.gpus {
            Some(value) => (format!("the GPU limit of {username}"), value.as_str()),
            None => ("workspace.gpus".to_string(), self.settings.defaults.gpus.as_str()),
        };
        match value {
            "none" | "auto" => Ok(()),
            _ if self.capabilities().await?.gpus => Ok(()),
            requested => Err(WorkspaceError::NoGpus { setting, value: requested.to_string() }),
        }
    }

    pub(super) async fn plan_for(&self, username: &str, record: &WorkspaceRecord) -> Result<WorkspacePlan, WorkspaceError> {
        let mut overrides = record.overrides.clone();
        overrides.gpus = Some(self.resolve_gpus(record).await?);
        let workspace_user = WorkspaceUser {
            username: username.to_string(),
            slot: record.slot,
            secrets: record.secrets.clone(),
            overrides,
        };
        let mut settings = self.settings.clone();
        settings.isolation = self.isolation().await?;
        Ok(build_plan(&workspace_user, &settings)?)
    }
}
