//! The domain services one Berth process runs, wired from its configuration; shared by the
//! HTTP layer (`web`) and the command line (`cli`).

use std::sync::Arc;

use app::model::AdminAction;

use crate::accounts::{AccountSettings, Accounts};
use crate::audit::Audit;
use crate::ssh_keys::SshKeys;
use crate::tokens::ApiTokens;
use crate::config::{Config, GpuMode, RuntimeKind};
use crate::db::Db;
use crate::hosts::HostRules;
use crate::metrics::Metrics;
use crate::monitor::{Monitor, MonitorSettings};
use crate::routes::app_gateway::AppGateway;
use crate::routes::guacamole::GuacamoleSettings;
use crate::routes::traefik::{TraefikSettings, TraefikWriter};
use crate::routes::verify::Gateway;
use crate::sessions::SessionCache;
use crate::sharing::{LeaseBook, Sharing, SharingSettings};
use crate::sso::Sso;
use crate::workspace::service::LinkSettings;
use crate::workspace::spec::WorkspaceSettings;
use crate::workspace::{Actor, DockerRuntime, DockerSettings, Engine, Owner, SwarmRuntime, SwarmSettings, WorkspaceRuntime, Workspaces};

/// The domain services one Berth process runs, shared by the HTTP layer and the CLI.
#[derive(Clone)]
pub struct Backend {
    pub db: Db,
    pub accounts: Accounts,
    pub workspaces: Arc<Workspaces>,
    pub sessions: Arc<SessionCache>,
    pub gateway: Arc<Gateway>,
    /// Berth's own proxy for the app hosts, when it serves them (see `Config::app_gateway`).
    pub app_gateway: Option<Arc<AppGateway>>,
    pub guacamole: Option<GuacamoleSettings>,
    pub sso: Arc<Sso>,
    /// What every workspace uses (its sampler runs in `berth serve` only).
    pub monitor: Arc<Monitor>,
    pub metrics: Arc<Metrics>,
    /// GPU claims, leases and the queue; idle workspaces (its rounds run in `berth serve` only).
    pub sharing: Arc<Sharing>,
    pub audit: Audit,
    pub tokens: ApiTokens,
    pub keys: SshKeys,
}

/// How long `/auth/verify` trusts a cached session before asking the database again.
const GATEWAY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Backend {
    pub fn new(config: &Config, db: Db, key: &[u8; 32]) -> Backend {
        let idle = std::time::Duration::from_secs(config.session_idle_minutes * 60);
        let sessions = Arc::new(SessionCache::new(GATEWAY_CACHE_TTL, idle));
        let accounts = Accounts::new(
            db.clone(),
            AccountSettings {
                attempts_per_window: config.login_attempts_per_window,
                window: std::time::Duration::from_secs(config.login_window_seconds),
                hashing_concurrency: config.hashing_concurrency(),
                hosts: HostRules::from_config(config),
            },
            sessions.clone(),
        );
        let engine = Arc::new(Engine::new(config.docker_host.clone(), config.docker_tls_dir.clone()));
        let settings = WorkspaceSettings::from_config(config);
        let docker = DockerSettings {
            min_free_mib: config.workspace.min_free_mib,
            extra_label: settings.extra_label(),
            attach_containers: config.workspace.attach_containers.clone(),
            probe_image: Some(config.workspace_image.clone()),
        };
        let runtime: Arc<dyn WorkspaceRuntime> = match config.runtime {
            RuntimeKind::Docker => Arc::new(DockerRuntime::new(engine, docker)),
            RuntimeKind::Swarm => Arc::new(SwarmRuntime::new(engine, SwarmSettings { docker, shared_storage: config.swarm.shared_storage })),
        };
        let public_url = config.public_url();
        let ssh_host = config.ssh_host.clone().unwrap_or_else(|| public_url.host_str().unwrap_or("localhost").to_string());
        let guacamole = match (&config.guacamole.public_url, &config.guacamole.secret_key) {
            (Some(public_url), Some(secret)) => Some(GuacamoleSettings {
                internal_url: config.guacamole.internal_url.clone(),
                public_url: public_url.clone(),
                secret: hex::decode(&secret.0).ok().and_then(|k| k.try_into().ok()).expect("validated 16-byte key"),
                protocol: config.guacamole.protocol.clone().unwrap_or_else(|| "vnc".into()),
            }),
            _ => None,
        };
        let monitor = Arc::new(Monitor::new(db.clone(), MonitorSettings::from_config(config)));
        let metrics = Arc::new(Metrics::new(monitor.clone()));
        let mut workspaces = Workspaces::new(db.clone(), runtime, settings, key, ssh_host);
        let counted = metrics.clone();
        workspaces.on_operation = Some(Arc::new(move |operation, ok, took| counted.operation(operation, ok, took)));
        let audit = Audit::new(db.clone());
        let audited = audit.clone();
        workspaces.on_reconcile = Some(Arc::new(move |report| {
            let (audit, report) = (audited.clone(), report.clone());
            tokio::spawn(async move { crate::audit::record_reconcile(&audit, &report).await });
        }));
        workspaces.routes = config.traefik_dir.as_ref().map(|dir| {
            Arc::new(TraefikWriter::new(TraefikSettings {
                dir: dir.clone(),
                portal_internal_url: config.traefik.portal_internal_url.clone(),
                portal_host: public_url.host_str().unwrap_or("localhost").to_string(),
                domain: config.domain.clone(),
                hosts: config.hosts.clone(),
                entry_point: config.traefik.entry_point.clone(),
                cert_resolver: config.traefik.cert_resolver.clone(),
                tls: config.traefik.tls,
            }))
        });
        workspaces.links = LinkSettings {
            scheme: public_url.scheme().to_string(),
            domain: config.domain.clone(),
            hosts: config.hosts.clone(),
            // Through the gateway the app hosts are served on the portal's own port.
            port: if config.app_gateway_enabled() { public_url.port() } else { None },
            gateway: config.app_gateway_enabled(),
            guacamole: guacamole.is_some(),
        };
        let gateway = Arc::new(Gateway::new(
            db.clone(),
            sessions.clone(),
            config.hosts.clone(),
            config.domain.clone(),
            public_url,
            config.session_absolute_hours as i64 * 3600,
            key,
        ));
        let sso = Arc::new(Sso::new(config.oidc(), config.public_url(), db.clone(), accounts.clone(), key));
        let sharing_settings = SharingSettings::from_config(config);
        if sharing_settings.mode == GpuMode::Leased {
            workspaces.leased_gpus = Some(Arc::new(LeaseBook { db: db.clone() }));
        }
        let workspaces = Arc::new(workspaces);
        let sharing = Arc::new(Sharing::new(db.clone(), sharing_settings, monitor.clone(), workspaces.clone(), gateway.activity.clone()));
        let app_gateway = config
            .app_gateway_enabled()
            .then(|| Arc::new(AppGateway::new(gateway.clone(), workspaces.clone(), config.public_url().scheme())));
        let tokens = ApiTokens::new(db.clone(), config.api.max_token_lifetime.as_secs() as i64);
        let keys = SshKeys::new(db.clone(), config.storage_root.clone());
        Backend { db, accounts, workspaces, sessions, gateway, app_gateway, guacamole, sso, monitor, metrics, sharing, audit, tokens, keys }
    }

    /// Deletes an account: its workspace container and network go, its database rows and SSH
    /// keys go; its files are purged with `purge` (the caller has had the username typed to
    /// confirm), or else kept under `<storage_root>/deleted/<user>-<time>/`, out of reach of a
    /// later account that takes the same name.
    pub async fn delete_user(&self, actor: Option<&app::model::CurrentUser>, username: &str, purge: bool) -> anyhow::Result<()> {
        let user = self.accounts.find_by_name(username).await?;
        let owner = Owner::from(&user);
        if let Some(actor) = actor {
            if !actor.is_admin {
                anyhow::bail!("only administrators delete accounts");
            }
        }
        // Checked before anything is removed: the last admin, oneself.
        self.accounts.check_deletable(actor, user.id).await?;
        // Disabled first: no session or token of the account can start the workspace again
        // while it is being taken apart.
        self.accounts.apply(None, user.id, AdminAction::Disable).await?;
        self.sharing.forget_user(&owner).await?;
        self.workspaces.disable_user(&Actor::System, &owner).await?;
        self.workspaces.remove(&Actor::System, &owner).await?;
        self.workspaces.forget_home(&Actor::System, &owner).await?;
        self.accounts.delete(actor, user.id).await?;
        let root = self.workspaces.settings().storage_root.clone();
        let name = user.username.clone();
        tokio::task::spawn_blocking(move || set_files_aside(&root, &name, purge)).await??;
        Ok(())
    }

    /// Disables an account everywhere: sessions, routes, running workspace.
    pub async fn disable_user(&self, username: &str) -> anyhow::Result<()> {
        self.disable_user_as(None, username).await
    }

    /// [`Backend::disable_user`] by an administrator (who cannot disable themselves).
    pub async fn disable_user_as(&self, actor: Option<&app::model::CurrentUser>, username: &str) -> anyhow::Result<()> {
        let user = self.accounts.find_by_name(username).await?;
        self.accounts.apply(actor, user.id, AdminAction::Disable).await?;
        self.workspaces.disable_user(&Actor::System, &Owner::from(&user)).await?;
        self.sharing.forget_user(&Owner::from(&user)).await?;
        Ok(())
    }
}

/// A deleted account's directories: removed (`purge`), or moved under `deleted/` so that a new
/// account with the same name starts with nothing of the old one's (home, keys, state). Its
/// SSH keys are removed either way.
fn set_files_aside(root: &std::path::Path, username: &str, purge: bool) -> anyhow::Result<()> {
    let keys = crate::workspace::spec::keys_dir(root, username);
    let aside = root.join("deleted").join(format!("{username}-{}", crate::db::now()));
    for dir in crate::workspace::spec::user_directories(root, username) {
        if !dir.exists() {
            continue;
        }
        if purge || dir == keys {
            std::fs::remove_dir_all(&dir).map_err(|e| anyhow::anyhow!("removing {}: {e}", dir.display()))?;
        } else {
            // Same filesystem (all under the storage root): a rename, not a copy.
            let kind = dir.parent().and_then(|p| p.strip_prefix(root).ok()).map(|p| p.display().to_string().replace('/', "-")).unwrap_or_default();
            std::fs::create_dir_all(&aside)?;
            let to = aside.join(kind);
            std::fs::rename(&dir, &to).map_err(|e| anyhow::anyhow!("moving {} to {}: {e}", dir.display(), to.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::set_files_aside;

    #[test]
    fn a_deleted_accounts_files_are_set_aside_and_its_keys_removed() {
        let root = std::env::temp_dir().join(format!("berth-aside-{}", std::process::id()));
        for dir in ["homes/ann", "workspaces/ann", "shared/tensorboard/ann", "state/ann", "docker/ann", "keys/ann", "homes/bo"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("homes/ann/notes.txt"), "mine").unwrap();
        std::fs::write(root.join("keys/ann/authorized_keys"), "ssh-ed25519 AAAA").unwrap();
        set_files_aside(&root, "ann", false).unwrap();
        assert!(!root.join("homes/ann").exists() && !root.join("keys/ann").exists() && !root.join("state/ann").exists());
        assert!(root.join("homes/bo").exists(), "nobody else's");
        let aside: Vec<_> = std::fs::read_dir(root.join("deleted")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read_to_string(aside[0].join("homes").join("notes.txt")).unwrap(), "mine");
        let mut kinds: Vec<String> = std::fs::read_dir(&aside[0]).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        kinds.sort();
        assert_eq!(kinds, ["docker", "homes", "shared-tensorboard", "state", "workspaces"], "keys are not kept");
        std::fs::create_dir_all(root.join("homes/bo/x")).unwrap();
        set_files_aside(&root, "bo", true).unwrap();
        assert!(!root.join("homes/bo").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
