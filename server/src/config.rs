//! Configuration: built-in defaults, then `berth.toml`, then `BERTH_*` environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration key `{key}`: {message}")]
    Load { key: String, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("configuration: cannot use secret key file {path}: {source}")]
    SecretFile { path: PathBuf, source: std::io::Error },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// A value that must never be printed or logged.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address the portal listens on.
    pub listen: SocketAddr,
    /// `sqlite://…` (embedded default) or `postgres://…`.
    pub database_url: Secret,
    /// Where Berth keeps its own files (SQLite database, generated secret key).
    pub data_dir: PathBuf,
    /// The portal's own URL as browsers see it. Defaults to `http://<listen>`.
    pub public_url: Option<Url>,
    /// Base domain of the app hosts (`alice-code.<domain>`).
    pub domain: String,
    /// Deprecated, ignored: the portal's cookie is host-only, app hosts get their own. Only used
    /// to clear a domain-wide session cookie an older Berth set.
    pub cookie_domain: Option<String>,
    /// 32-byte key as 64 hex digits. Generated into `<data_dir>/secret.key` when not given.
    pub secret_key: Option<Secret>,
    /// Built site (wasm, css): `make build` writes `target/site`.
    pub site_root: PathBuf,
    /// A session ends after this long without a request.
    pub session_idle_minutes: u64,
    /// A session ends this long after login, active or not.
    pub session_absolute_hours: u64,
    /// Failed logins allowed per (username, client address) per window; ×3 per client address
    /// (logins, and sign-ups apart), ×10 per username from all addresses together.
    pub login_attempts_per_window: u32,
    pub login_window_seconds: u64,
    /// Password hashes (login, sign-up, new accounts) computed at once; beyond it Berth answers
    /// 503 with Retry-After. Unset: the number of cores.
    pub password_hashing_concurrency: Option<u32>,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_proxy_headers: bool,
    pub log_format: LogFormat,
    /// What runs the workspaces: `docker` (this engine) or `swarm` (services on the swarm this
    /// engine manages; README "A Swarm cluster").
    pub runtime: RuntimeKind,
    pub swarm: SwarmConfig,
    /// Docker engine: `unix:///var/run/docker.sock` (default when unset) or `tcp://host:2376`.
    pub docker_host: Option<String>,
    /// With a tcp docker_host: directory holding `ca.pem`, `cert.pem`, `key.pem` for TLS.
    pub docker_tls_dir: Option<PathBuf>,
    /// Host name shown in SSH commands; defaults to the public URL's host.
    pub ssh_host: Option<String>,
    /// Image every workspace runs.
    pub workspace_image: String,
    /// Root of the per-user directories (`homes/<user>`, `workspaces/<user>`, `shared`, `state/<user>`).
    pub storage_root: PathBuf,
    pub ports: PortPlanConfig,
    pub workspace: WorkspaceDefaults,
    /// Directory of Traefik's file provider; unset: Berth writes no routes.
    pub traefik_dir: Option<PathBuf>,
    /// Berth's own proxy for the app hosts (`jupyter-<user>.<domain>` on the portal's port):
    /// `auto` serves them when no `traefik_dir` is set.
    pub app_gateway: AppGatewayMode,
    pub traefik: TraefikConfig,
    /// App host templates (`{user}`, `{domain}`).
    pub hosts: crate::hosts::HostTemplates,
    pub guacamole: GuacamoleConfig,
    /// Local username/password login (off for SSO-only sites).
    pub password_login: bool,
    /// One provider from the environment alone: BERTH_OIDC_ISSUER, _CLIENT_ID, _CLIENT_SECRET, _NAME.
    pub oidc_issuer: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret: Option<Secret>,
    pub oidc_name: Option<String>,
    /// More providers (or every option of one): `[[oidc_providers]]` tables in berth.toml.
    pub oidc_providers: Vec<OidcProviderConfig>,
    /// `GET /metrics` on the portal's address requires `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<Secret>,
    /// A second address serving only `/metrics` (for a Prometheus on a private network); the
    /// token, when set, is required there too.
    pub metrics_listen: Option<SocketAddr>,
    pub monitoring: MonitoringConfig,
    pub gpu: GpuConfig,
    pub idle: IdleConfig,
    pub api: ApiConfig,
    pub audit: AuditConfig,
    /// What the loaded configuration said in deprecated words, to be logged once logging is up.
    #[serde(skip)]
    pub deprecations: Vec<String>,
}

/// What runs the workspaces.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Containers on the one engine at `docker_host`.
    Docker,
    /// One Swarm service per user on the swarm whose manager is `docker_host`.
    Swarm,
}

/// The Swarm runtime (README "A Swarm cluster").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SwarmConfig {
    /// `storage_root` is the same directory on every node (NFS, CephFS…): a workspace may run on
    /// any node. Off: each home stays on the node it was first placed on, until an admin moves it.
    pub shared_storage: bool,
}

/// How the host's GPUs are shared (README "Sharing GPUs").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GpuMode {
    /// Every workspace sees every GPU; claims say who uses which, and are not enforced.
    Open,
    /// A workspace sees only the GPUs it holds a lease on.
    Leased,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GpuConfig {
    pub mode: GpuMode,
    /// The most GPUs one user holds at once (an admin may set another per user).
    pub max_gpus: u32,
    /// The longest a claim or lease runs (extensions included).
    #[serde(with = "humantime_serde")]
    pub max_lease: Duration,
    /// The most requests one user has waiting.
    pub max_queued: u32,
    /// Warnings before a holding ends, e.g. `["1h", "10m"]`.
    pub warn_before: Vec<humantime_serde::Serde<Duration>>,
    /// A held GPU this long under `idle_utilization_percent` is released after a warning;
    /// `0s`: never.
    #[serde(with = "humantime_serde")]
    pub idle_release_after: Duration,
    pub idle_utilization_percent: u32,
    /// How long before an idle release (or idle stop) the holder is warned.
    #[serde(with = "humantime_serde")]
    pub idle_warning: Duration,
    /// How often the scheduler looks at expiries, idleness and the queue.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            mode: GpuMode::Open,
            max_gpus: 2,
            max_lease: Duration::from_secs(24 * 3600),
            max_queued: 2,
            warn_before: vec![Duration::from_secs(3600).into(), Duration::from_secs(600).into()],
            idle_release_after: Duration::from_secs(2 * 3600),
            idle_utilization_percent: 5,
            idle_warning: Duration::from_secs(15 * 60),
            check_every: Duration::from_secs(15),
        }
    }
}

/// The REST API and its personal tokens (README "API").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiConfig {
    /// The longest a personal API token may last.
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { max_token_lifetime: Duration::from_secs(365 * 86_400) }
    }
}

/// The audit log (README "Audit log").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AuditConfig {
    /// Entries older than this are pruned; nothing else removes one.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention: Duration::from_secs(365 * 86_400) }
    }
}

/// When an idle workspace is stopped (README "Idle workspaces").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct IdleConfig {
    /// A running workspace quiet on every signal this long is stopped after a warning; `0s`:
    /// never (an admin may set another per user, or exempt one).
    #[serde(with = "humantime_serde")]
    pub stop_after: Duration,
    /// How long before the stop its user is warned.
    #[serde(with = "humantime_serde")]
    pub warning: Duration,
    /// CPU use under this (percent of one core) counts as quiet.
    pub cpu_percent: f64,
    /// How often the signals are read.
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            stop_after: Duration::from_secs(24 * 3600),
            warning: Duration::from_secs(30 * 60),
            cpu_percent: 5.0,
            check_every: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct OidcProviderConfig {
    /// Short name in URLs (`/auth/oidc/<id>/login`).
    pub id: String,
    /// Shown on the login button.
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    /// Claim the username comes from: `preferred_username` or `email` (its local part).
    pub username_claim: String,
    pub groups_claim: String,
    /// Members of these groups are approved at once.
    pub auto_approve_groups: Vec<String>,
    /// People with a (verified) e-mail address in these domains are approved at once.
    pub auto_approve_domains: Vec<String>,
    /// Members of these groups are administrators; when set, it is re-applied at every login.
    pub admin_groups: Vec<String>,
    /// Refuse logins whose e-mail the provider has not verified.
    pub require_verified_email: bool,
}

impl Default for OidcProviderConfig {
    fn default() -> Self {
        OidcProviderConfig {
            id: "sso".into(),
            name: "Single sign-on".into(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            auto_approve_groups: Vec::new(),
            auto_approve_domains: Vec::new(),
            admin_groups: Vec::new(),
            require_verified_email: false,
        }
    }
}

/// Berth's own usage sampling and history (see README "Monitoring").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MonitoringConfig {
    /// Seconds between stored samples of each running workspace.
    pub sample_seconds: u64,
    /// Days the history is kept (averaged to one sample a minute after the first hour).
    pub retention_days: u64,
    /// `nvml` (the NVIDIA driver's library, loaded at run time; none on the host: no GPUs),
    /// `none`, or the path of a recorded inventory (JSON), for demos and tests.
    pub gpu_inventory: String,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig { sample_seconds: 10, retention_days: 7, gpu_inventory: "nvml".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TraefikConfig {
    /// How Traefik reaches Berth (forwardAuth and the portal's own router).
    pub portal_internal_url: String,
    pub entry_point: String,
    /// ACME resolver name; unset with `tls = true` uses Traefik's default (wildcard) certificate.
    pub cert_resolver: Option<String>,
    pub tls: bool,
}

impl Default for TraefikConfig {
    fn default() -> Self {
        TraefikConfig { portal_internal_url: "http://berth:3000".into(), entry_point: "websecure".into(), cert_resolver: None, tls: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct GuacamoleConfig {
    /// Where Berth reaches Guacamole for the server-side token exchange (e.g. http://guacamole:8080/guacamole).
    pub internal_url: Option<String>,
    /// Where browsers open Guacamole; unset disables "Desktop in browser (Guacamole)".
    pub public_url: Option<String>,
    /// guacamole-auth-json `json-secret-key`: 32 hex digits.
    pub secret_key: Option<Secret>,
    /// `vnc` (default) or `rdp`.
    pub protocol: Option<String>,
}

/// Each user gets a block of host ports: base + slot × stride + offset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PortPlanConfig {
    pub base: u16,
    pub stride: u16,
    /// Host address the public services (`public`) are published on.
    pub host_ip: String,
    /// Services published on `host_ip`; the others of `ssh`, `vnc`, `rdp` are published on
    /// 127.0.0.1 only (reached through Guacamole, noVNC or an SSH tunnel). VNC's DES challenge
    /// and plaintext stream do not belong on a network.
    pub public: Vec<String>,
    /// Publish the web ports (noVNC, code-server, Jupyter, TensorBoard) directly, bypassing the
    /// portal's login. Off by default: they are reached through the authenticated routes.
    pub publish_web: bool,
    /// Address the web ports are published on with `publish_web`.
    pub web_ip: String,
    /// Required to publish the web ports on a non-loopback `web_ip`: anyone who reaches them
    /// skips the portal's login.
    pub publish_web_unauthenticated: bool,
    pub vnc: u16,
    pub novnc: u16,
    pub code: u16,
    pub jupyter: u16,
    pub tensorboard: u16,
    pub rdp: u16,
    pub ssh: u16,
}

impl Default for PortPlanConfig {
    fn default() -> Self {
        PortPlanConfig {
            base: 10000,
            stride: 100,
            host_ip: "0.0.0.0".into(),
            public: vec!["ssh".into()],
            publish_web: false,
            web_ip: "127.0.0.1".into(),
            publish_web_unauthenticated: false,
            vnc: 0,
            novnc: 1,
            code: 2,
            jupyter: 3,
            tensorboard: 4,
            rdp: 5,
            ssh: 22,
        }
    }
}

/// Whether Berth proxies the app hosts itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppGatewayMode {
    /// On when Traefik is not configured (`traefik_dir` unset): a first run shows the apps.
    Auto,
    On,
    Off,
}

/// How far a workspace is kept from the host. The modes differ in what Docker-in-Docker, FUSE
/// and device access cost: see README "Isolation".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// `sysbox` when the engine lists the sysbox runtime, else `privileged` when the engine
    /// lets a privileged container start, else `plain`.
    Auto,
    /// The sysbox runtime: Docker-in-Docker without host root.
    Sysbox,
    /// `--privileged`: Docker-in-Docker and every device; a user can become root on the host.
    Privileged,
    /// For engines that refuse `--privileged`: every capability but SYS_RESOURCE, unconfined
    /// seccomp, AppArmor and /proc paths, all devices. As open as privileged.
    Capabilities,
    /// Docker's defaults: no extra privileges, no Docker inside.
    Plain,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Auto => "auto",
            Isolation::Sysbox => "sysbox",
            Isolation::Privileged => "privileged",
            Isolation::Capabilities => "capabilities",
            Isolation::Plain => "plain",
        }
    }

    /// Whether a workspace user can become root on the host in this mode.
    pub fn allows_host_root(self) -> bool {
        matches!(self, Isolation::Privileged | Isolation::Capabilities)
    }

    /// Said in the log, on the admin page, by `berth config` and `berth workspace list` whenever
    /// the mode lets users become root on the host.
    pub fn host_root_warning(self) -> Option<String> {
        self.allows_host_root().then(|| {
            format!(
                "workspace.isolation = {}: every workspace user can become root on this host (and read Berth's database, its secret key and every home); use sysbox for Docker inside without that, or plain",
                self.as_str()
            )
        })
    }

    /// What `auto` becomes on an engine offering `runtimes` (as `docker info` lists them) and
    /// allowing privileged containers or not (tried, since some refuse only at start).
    pub fn resolve_auto(runtimes: &[String], privileged_allowed: bool, sysbox_runtime: &str) -> Isolation {
        if runtimes.iter().any(|r| r == sysbox_runtime) {
            Isolation::Sysbox
        } else if privileged_allowed {
            Isolation::Privileged
        } else {
            Isolation::Plain
        }
    }

    /// Whether Docker runs inside the workspace in this mode.
    pub fn docker_inside(self) -> bool {
        !matches!(self, Isolation::Plain)
    }
}

/// Resources and isolation every workspace gets unless an admin overrides them per user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WorkspaceDefaults {
    pub memory_reservation_gib: u64,
    pub memory_limit_gib: u64,
    pub swap_gib: u64,
    /// 0 means no CPU limit.
    pub cpus: f64,
    pub shm_gib: u64,
    /// `auto` (all GPUs when the engine has GPU support, none otherwise), `all`, `none`, or a
    /// comma-separated list of GPU ids.
    pub gpus: String,
    pub isolation: Isolation,
    /// The engine's name of the sysbox runtime (`auto` looks for it, `sysbox` uses it).
    pub sysbox_runtime: String,
    /// Deprecated (read, mapped onto `isolation`): true → privileged, false → plain or, with
    /// `all_capabilities`, capabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Deprecated: a runtime name → `isolation = "sysbox"` with that `sysbox_runtime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Deprecated: see `privileged`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_capabilities: Option<bool>,
    /// User ids inside workspaces: uid_base + slot.
    pub uid_base: u32,
    pub stop_timeout_seconds: u32,
    /// One extra `key=value` label on everything Berth creates (tests tag their runs with it).
    pub extra_label: Option<String>,
    /// Containers (Traefik, guacd) connected to every user's network so they reach the workspace.
    pub attach_containers: Vec<String>,
    /// A workspace is not started when its storage has less free space than this (MiB): its
    /// user could not save a file. 0 turns the check off.
    pub min_free_mib: u64,
}

impl Default for WorkspaceDefaults {
    fn default() -> Self {
        WorkspaceDefaults {
            memory_reservation_gib: 32,
            memory_limit_gib: 100,
            swap_gib: 50,
            cpus: 0.0,
            shm_gib: 8,
            gpus: "auto".into(),
            isolation: Isolation::Auto,
            sysbox_runtime: "sysbox-runc".into(),
            privileged: None,
            runtime: None,
            all_capabilities: None,
            uid_base: 10000,
            stop_timeout_seconds: 30,
            extra_label: None,
            attach_containers: Vec::new(),
            min_free_mib: 256,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database_url: Secret("sqlite://data/berth.db".into()),
            data_dir: PathBuf::from("data"),
            public_url: None,
            domain: "localhost".into(),
            cookie_domain: None,
            secret_key: None,
            site_root: PathBuf::from("target/site"),
            session_idle_minutes: 8 * 60,
            session_absolute_hours: 7 * 24,
            login_attempts_per_window: 10,
            login_window_seconds: 300,
            password_hashing_concurrency: None,
            trust_proxy_headers: false,
            log_format: LogFormat::Text,
            ssh_host: None,
            runtime: RuntimeKind::Docker,
            swarm: SwarmConfig::default(),
            docker_host: None,
            docker_tls_dir: None,
            workspace_image: "berth/workspace:latest".into(),
            storage_root: PathBuf::from("/mnt/storage"),
            ports: PortPlanConfig::default(),
            workspace: WorkspaceDefaults::default(),
            traefik_dir: None,
            app_gateway: AppGatewayMode::Auto,
            traefik: TraefikConfig::default(),
            hosts: crate::hosts::HostTemplates::default(),
            guacamole: GuacamoleConfig::default(),
            password_login: true,
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_name: None,
            oidc_providers: Vec::new(),
            metrics_token: None,
            metrics_listen: None,
            monitoring: MonitoringConfig::default(),
            gpu: GpuConfig::default(),
            idle: IdleConfig::default(),
            api: ApiConfig::default(),
            audit: AuditConfig::default(),
            deprecations: Vec::new(),
        }
    }
}

/// Names of environment variables that are not configuration keys but share the prefix.
const NOT_CONFIG_KEYS: &[&str] = &["log", "config", "test_postgres_url", "bin"];

impl Config {
    /// Loads defaults → `config_file` (if it exists) → `BERTH_*` environment, then validates.
    pub fn load(config_file: &Path) -> Result<Config, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::file(config_file))
                .merge(Env::prefixed("BERTH_").ignore(NOT_CONFIG_KEYS).split("__")),
        )
    }

    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(load_error)?;
        config.map_deprecated_isolation();
        config.validate()?;
        Ok(config)
    }

    /// Maps `workspace.privileged`, `runtime` and `all_capabilities` onto `workspace.isolation`
    /// with the meaning they had, and notes the deprecation.
    fn map_deprecated_isolation(&mut self) {
        if self.cookie_domain.is_some() {
            self.deprecations.push(
                "cookie_domain is no longer used: the portal's cookie is host-only and each app host gets its own through the portal".into(),
            );
        }
        let w = &mut self.workspace;
        let (privileged, runtime, all_capabilities) = (w.privileged.take(), w.runtime.take(), w.all_capabilities.take());
        if privileged.is_none() && runtime.is_none() && all_capabilities.is_none() {
            return;
        }
        if w.isolation != Isolation::Auto {
            self.deprecations.push(format!(
                "workspace.privileged, workspace.runtime and workspace.all_capabilities are deprecated and ignored: workspace.isolation = {:?} is set",
                w.isolation.as_str()
            ));
            return;
        }
        w.isolation = match (runtime, privileged.unwrap_or(true), all_capabilities.unwrap_or(false)) {
            (Some(runtime), _, _) => {
                w.sysbox_runtime = runtime;
                Isolation::Sysbox
            }
            (None, true, _) => Isolation::Privileged,
            (None, false, true) => Isolation::Capabilities,
            (None, false, false) => Isolation::Plain,
        };
        self.deprecations.push(format!(
            "workspace.privileged, workspace.runtime and workspace.all_capabilities are deprecated: read as workspace.isolation = {:?}; set that instead",
            w.isolation.as_str()
        ));
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let db = &self.database_url.0;
        if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(invalid("database_url", "must start with sqlite: or postgres://"));
        }
        if let Some(url) = &self.public_url {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid("public_url", "must be an absolute http(s) URL"));
            }
        }
        if self.domain.is_empty() || self.domain.split('.').any(|l| !is_dns_label(l)) {
            return Err(invalid("domain", format!("{:?} is not a DNS name", self.domain)));
        }
        if let Some(cookie_domain) = &self.cookie_domain {
            let trimmed = cookie_domain.trim_start_matches('.');
            if trimmed.is_empty() || trimmed.split('.').any(|l| !is_dns_label(l)) {
                return Err(invalid("cookie_domain", format!("{cookie_domain:?} is not a DNS name")));
            }
        }
        if let Some(key) = &self.secret_key {
            parse_secret_key(&key.0).map_err(|m| invalid("secret_key", m))?;
        }
        if self.api.max_token_lifetime < Duration::from_secs(86_400) {
            return Err(invalid("api.max_token_lifetime", "must be at least a day"));
        }
        if self.audit.retention < Duration::from_secs(86_400) {
            return Err(invalid("audit.retention", "must be at least a day"));
        }
        if self.session_idle_minutes == 0 {
            return Err(invalid("session_idle_minutes", "must be at least 1"));
        }
        if self.session_absolute_hours == 0 {
            return Err(invalid("session_absolute_hours", "must be at least 1"));
        }
        if self.login_attempts_per_window == 0 || self.login_window_seconds == 0 {
            return Err(invalid("login_attempts_per_window", "attempts and window must be at least 1"));
        }
        if self.password_hashing_concurrency == Some(0) {
            return Err(invalid("password_hashing_concurrency", "must be at least 1"));
        }
        if let Some(host) = &self.docker_host {
            if !(host.starts_with("unix://") || host.starts_with("tcp://")) {
                return Err(invalid("docker_host", "must start with unix:// or tcp://"));
            }
            // Whoever reaches a plain-TCP engine API is root on that host.
            if host.starts_with("tcp://") && self.docker_tls_dir.is_none() && !is_loopback_endpoint(host) {
                return Err(invalid(
                    "docker_host",
                    format!("{host} is plain TCP to another machine: anyone on the way gets root there; set docker_tls_dir (TLS client certificates) or use a loopback address"),
                ));
            }
        }
        if let Some(token) = &self.metrics_token {
            if token.0.len() < 16 {
                return Err(invalid("metrics_token", "must be at least 16 characters (e.g. `openssl rand -hex 24`)"));
            }
        }
        if self.metrics_listen.is_some_and(|m| m == self.listen) {
            return Err(invalid("metrics_listen", "must differ from `listen`"));
        }
        if self.monitoring.sample_seconds == 0 || self.monitoring.sample_seconds > 3600 {
            return Err(invalid("monitoring.sample_seconds", "must be between 1 and 3600"));
        }
        if self.monitoring.retention_days == 0 {
            return Err(invalid("monitoring.retention_days", "must be at least 1"));
        }
        if self.workspace_image.trim().is_empty() {
            return Err(invalid("workspace_image", "must name an image"));
        }
        if !self.storage_root.is_absolute() {
            return Err(invalid("storage_root", "must be an absolute path (Docker bind-mounts it)"));
        }
        if self.ports.stride == 0 || [self.ports.vnc, self.ports.novnc, self.ports.code, self.ports.jupyter,
            self.ports.tensorboard, self.ports.rdp, self.ports.ssh].iter().any(|o| *o >= self.ports.stride)
        {
            return Err(invalid("ports", "every offset must be smaller than the stride"));
        }
        if self.ports.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid("ports.host_ip", "must be an IP address"));
        }
        if let Some(unknown) = self.ports.public.iter().find(|s| !matches!(s.as_str(), "ssh" | "vnc" | "rdp")) {
            return Err(invalid("ports.public", format!("{unknown:?} is not one of ssh, vnc, rdp (the web apps go through the portal; see ports.publish_web)")));
        }
        match self.ports.web_ip.parse::<std::net::IpAddr>() {
            Err(_) => return Err(invalid("ports.web_ip", "must be an IP address")),
            Ok(ip) if self.ports.publish_web && !ip.is_loopback() && !self.ports.publish_web_unauthenticated => {
                return Err(invalid(
                    "ports.web_ip",
                    format!("publish_web on {ip} would let anyone who reaches this server use code-server, Jupyter and TensorBoard without logging in; use 127.0.0.1, or set ports.publish_web_unauthenticated = true to accept that"),
                ))
            }
            Ok(_) => {}
        }
        let gpus = self.workspace.gpus.as_str();
        if !is_gpu_setting(gpus) {
            return Err(invalid("workspace.gpus", "must be auto, all, none or a comma-separated list of GPU ids"));
        }
        if self.gpu.mode == GpuMode::Leased && self.workspace.isolation == Isolation::Privileged {
            // A privileged container sees every device node: a lease would only be advice.
            return Err(invalid(
                "gpu.mode",
                "leased cannot hold with workspace.isolation = privileged (privileged workspaces see every GPU); use sysbox or plain, or gpu.mode = open",
            ));
        }
        if self.gpu.max_gpus == 0 || self.gpu.max_lease.is_zero() || self.gpu.check_every.is_zero() || self.idle.check_every.is_zero() {
            return Err(invalid("gpu", "max_gpus, max_lease, gpu.check_every and idle.check_every must be more than zero"));
        }
        if self.workspace.memory_reservation_gib > self.workspace.memory_limit_gib {
            return Err(invalid("workspace.memory_reservation_gib", "must not exceed memory_limit_gib"));
        }
        self.hosts.validate().map_err(|m| invalid("hosts", m))?;
        if let Some(dir) = &self.traefik_dir {
            if !dir.is_absolute() {
                return Err(invalid("traefik_dir", "must be an absolute path"));
            }
        }
        if Url::parse(&self.traefik.portal_internal_url).is_err() {
            return Err(invalid("traefik.portal_internal_url", "must be a URL"));
        }
        if let Some(key) = &self.guacamole.secret_key {
            if hex::decode(&key.0).map(|k| k.len()) != Ok(16) {
                return Err(invalid("guacamole.secret_key", "must be 32 hex digits (128 bits)"));
            }
        }
        if !matches!(self.guacamole.protocol.as_deref(), None | Some("vnc") | Some("rdp")) {
            return Err(invalid("guacamole.protocol", "must be vnc or rdp"));
        }
        if self.guacamole.public_url.is_some() && self.guacamole.secret_key.is_none() {
            return Err(invalid("guacamole.secret_key", "is required when guacamole.public_url is set"));
        }
        let providers = self.oidc();
        for (i, p) in providers.iter().enumerate() {
            if p.id.is_empty() || !p.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                return Err(invalid("oidc_providers", format!("provider id {:?} must be lowercase letters, digits, '-'", p.id)));
            }
            if providers[..i].iter().any(|q| q.id == p.id) {
                return Err(invalid("oidc_providers", format!("provider id {:?} is used twice", p.id)));
            }
            if Url::parse(&p.issuer).is_err() {
                return Err(invalid("oidc_issuer", format!("{:?} is not a URL", p.issuer)));
            }
            if p.client_id.is_empty() {
                return Err(invalid("oidc_client_id", "is required with an issuer"));
            }
            if !matches!(p.username_claim.as_str(), "preferred_username" | "email") {
                return Err(invalid("oidc_providers", "username_claim must be preferred_username or email"));
            }
        }
        if !self.password_login && providers.is_empty() {
            return Err(invalid("password_login", "cannot be off without an OIDC provider"));
        }
        if let Some(label) = &self.workspace.extra_label {
            if !label.contains('=') || label.starts_with('=') {
                return Err(invalid("workspace.extra_label", "must be key=value"));
            }
        }
        if self.runtime == RuntimeKind::Swarm {
            self.validate_swarm()?;
        }
        Ok(())
    }

    /// What Swarm cannot hold is refused at start-up rather than half-done later.
    fn validate_swarm(&self) -> Result<(), ConfigError> {
        // Host-mode publishing binds every address of the node: a narrower host_ip would be a
        // promise Swarm does not keep.
        if !self.ports.host_ip.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return Err(invalid(
                "ports.host_ip",
                format!("{} cannot hold with runtime = \"swarm\": Swarm publishes ports on every address of the node; use 0.0.0.0 and a firewall", self.ports.host_ip),
            ));
        }
        if self.ports.publish_web {
            return Err(invalid(
                "ports.publish_web",
                "cannot hold with runtime = \"swarm\": Swarm would publish the web apps on every address of the node, past the portal's login",
            ));
        }
        if matches!(self.workspace.isolation, Isolation::Privileged | Isolation::Capabilities) {
            return Err(invalid(
                "workspace.isolation",
                format!(
                    "{} cannot hold with runtime = \"swarm\": Swarm services run neither privileged nor with extra capabilities and devices; use sysbox (sysbox-runc as the nodes' default runtime), plain or auto",
                    self.workspace.isolation.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Every configured OpenID provider: the `[[oidc_providers]]` tables plus the one from the
    /// flat `oidc_*` keys.
    pub fn oidc(&self) -> Vec<OidcProviderConfig> {
        let mut all = self.oidc_providers.clone();
        if let Some(issuer) = &self.oidc_issuer {
            all.push(OidcProviderConfig {
                id: "sso".into(),
                name: self.oidc_name.clone().unwrap_or_else(|| "Single sign-on".into()),
                issuer: issuer.clone(),
                client_id: self.oidc_client_id.clone().unwrap_or_default(),
                client_secret: self.oidc_client_secret.clone().unwrap_or_default(),
                ..OidcProviderConfig::default()
            });
        }
        all
    }

    pub fn public_url(&self) -> Url {
        self.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{}/", self.listen)).expect("a socket address makes a URL")
        })
    }

    /// Whether the embedded app gateway serves the app hosts.
    pub fn app_gateway_enabled(&self) -> bool {
        match self.app_gateway {
            AppGatewayMode::Auto => self.traefik_dir.is_none(),
            AppGatewayMode::On => true,
            AppGatewayMode::Off => false,
        }
    }

    /// `scheme://host[:port]` of the portal, what browsers send as `Origin`.
    pub fn public_origin(&self) -> String {
        self.public_url().origin().ascii_serialization()
    }

    pub fn hashing_concurrency(&self) -> usize {
        match self.password_hashing_concurrency {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url().scheme() == "https"
    }

    /// The configured key, or the one stored in `<data_dir>/secret.key` (created with mode 0600).
    pub fn load_or_create_secret_key(&self) -> Result<[u8; 32], ConfigError> {
        if let Some(key) = &self.secret_key {
            return parse_secret_key(&key.0).map_err(|m| invalid("secret_key", m));
        }
        let path = self.data_dir.join("secret.key");
        let io = |source| ConfigError::SecretFile { path: path.clone(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_secret_key(text.trim()).map_err(|m| invalid("secret_key", format!("{}: {m}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                crate::disk::create_private_dir(&self.data_dir).map_err(io)?;
                let key: [u8; 32] = rand::random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                file.write_all(hex::encode(key).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The effective configuration as TOML, secrets replaced by `<redacted>`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Secret(redact_url_password(&self.database_url.0));
        if shown.secret_key.is_some() {
            shown.secret_key = Some(Secret("<redacted>".into()));
        }
        if shown.oidc_client_secret.is_some() {
            shown.oidc_client_secret = Some(Secret("<redacted>".into()));
        }
        for p in &mut shown.oidc_providers {
            p.client_secret = Secret("<redacted>".into());
        }
        if shown.guacamole.secret_key.is_some() {
            shown.guacamole.secret_key = Some(Secret("<redacted>".into()));
        }
        if shown.metrics_token.is_some() {
            shown.metrics_token = Some(Secret("<redacted>".into()));
        }
        let mut text = toml_string(&shown);
        match self.workspace.isolation {
            Isolation::Auto => text.push_str(&format!(
                "# workspace.isolation = \"auto\": sysbox when the engine lists {:?}, else privileged: every workspace user can then become root on this host\n",
                self.workspace.sysbox_runtime
            )),
            mode => {
                if let Some(warning) = mode.host_root_warning() {
                    text.push_str(&format!("# WARNING: {warning}\n"));
                }
            }
        }
        text
    }
}

/// Names the offending key in lowercase, as written in berth.toml, and where the value came from.
fn load_error(error: figment::Error) -> ConfigError {
    let key = error.path.join(".").to_ascii_lowercase();
    let source = error.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
    let message = format!("{} (from {source})", error.kind);
    ConfigError::Load { key, message }
}

fn toml_string(config: &Config) -> String {
    // figment has no serializer; a tiny one suffices for this flat struct.
    let value = serde_json::to_value(config).expect("config serializes");
    let mut out = String::new();
    let mut tables = String::new();
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            match value {
                serde_json::Value::Null => out.push_str(&format!("# {key} = (unset)\n")),
                serde_json::Value::Object(table) => {
                    tables.push_str(&format!("\n[{key}]\n"));
                    for (k, v) in table {
                        match v {
                            serde_json::Value::Null => tables.push_str(&format!("# {k} = (unset)\n")),
                            other => tables.push_str(&format!("{k} = {other}\n")),
                        }
                    }
                }
                other => out.push_str(&format!("{key} = {other}\n")),
            }
        }
    }
    out + &tables
}

fn redact_url_password(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

/// Whether a `tcp://host:port` names this machine's loopback interface.
fn is_loopback_endpoint(url: &str) -> bool {
    match Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        // tcp:// is not a special scheme: the url crate leaves an IPv4 host as opaque text.
        Some(url::Host::Domain(d)) => d == "localhost" || d.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn parse_secret_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|_| "must be 64 hex digits".to_string())?;
    bytes.try_into().map_err(|_| "must be 64 hex digits (32 bytes)".to_string())
}

/// A GPU setting as Berth takes it: `auto`, `all`, `none`, or a comma-separated list of GPU
/// indexes or UUIDs (config, the command line and the admin page check the same way).
pub fn is_gpu_setting(text: &str) -> bool {
    text == "auto" || text == "all" || text == "none" || text.split(',').all(|d| !d.trim().is_empty() && d.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail() -> Result<Config, ConfigError> {
        Config::load(Path::new("berth.toml"))
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        Jail::expect_with(|_jail| {
            let config = load_in_jail().expect("defaults are valid");
            assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
            assert!(config.database_url.0.starts_with("sqlite:"));
            assert_eq!(config.public_origin(), "http://127.0.0.1:3000");
            assert!(!config.secure_cookies());
            assert!(config.app_gateway_enabled(), "a first run serves the apps itself");
            Ok(())
        });
    }

    #[test]
    fn the_app_gateway_steps_aside_for_traefik_unless_asked() {
        Jail::expect_with(|jail| {
            jail.set_env("BERTH_TRAEFIK_DIR", "/srv/traefik");
            assert!(!load_in_jail().unwrap().app_gateway_enabled());
            jail.set_env("BERTH_APP_GATEWAY", "on");
            assert!(load_in_jail().unwrap().app_gateway_enabled());
            jail.clear_env();
            jail.set_env("BERTH_APP_GATEWAY", "off");
            assert!(!load_in_jail().unwrap().app_gateway_enabled());
            jail.set_env("BERTH_APP_GATEWAY", "sometimes");
            let error = load_in_jail().unwrap_err().to_string();
            assert!(error.contains("app_gateway"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        Jail::expect_with(|jail| {
            jail.create_file("berth.toml", "listen = \"0.0.0.0:4000\"\ndomain = \"lab.example.org\"\n")?;
            let config = load_in_jail().unwrap();
            assert_eq!(config.listen.to_string(), "0.0.0.0:4000");
            assert_eq!(config.domain, "lab.example.org");
            jail.set_env("BERTH_LISTEN", "127.0.0.1:5000");
            jail.set_env("BERTH_PUBLIC_URL", "https://berth.lab.example.org");
            let config = load_in_jail().unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
            assert_eq!(config.domain, "lab.example.org", "file value kept where env is silent");
            assert!(config.secure_cookies());
            assert_eq!(config.public_origin(), "https://berth.lab.example.org");
            Ok(())
        });
    }

    #[test]
    fn nested_keys_from_env_and_workspace_keys() {
        Jail::expect_with(|jail| {
            jail.set_env("BERTH_WORKSPACE_IMAGE", "berth/workspace:slim");
            jail.set_env("BERTH_STORAGE_ROOT", "/srv/berth");
            jail.set_env("BERTH_PORTS__BASE", "20000");
            jail.set_env("BERTH_WORKSPACE__GPUS", "none");
            let config = load_in_jail().unwrap();
            assert_eq!(config.workspace_image, "berth/workspace:slim");
            assert_eq!(config.storage_root, PathBuf::from("/srv/berth"));
            assert_eq!(config.ports.base, 20000);
            assert_eq!(config.ports.ssh, 22, "other nested keys keep their defaults");
            assert_eq!(config.workspace.gpus, "none");
            assert!(config.redacted_toml().contains("[ports]\nbase = 20000"));
            Ok(())
        });
    }

    #[test]
    fn swarm_refuses_what_it_cannot_hold() {
        Jail::expect_with(|jail| {
            jail.set_env("BERTH_RUNTIME", "swarm");
            jail.set_env("BERTH_WORKSPACE__ISOLATION", "plain");
            let config = load_in_jail().expect("the defaults hold on Swarm with plain isolation");
            assert_eq!(config.runtime, RuntimeKind::Swarm);
            assert!(!config.swarm.shared_storage);
            assert!(config.redacted_toml().contains("runtime = \"swarm\""));
            assert!(config.redacted_toml().contains("[swarm]\nshared_storage = false"));
            jail.set_env("BERTH_PORTS__HOST_IP", "127.0.0.1");
            let error = load_in_jail().unwrap_err().to_string();
            assert!(error.contains("ports.host_ip") && error.contains("every address of the node"), "{error}");
            jail.set_env("BERTH_PORTS__HOST_IP", "0.0.0.0");
            jail.set_env("BERTH_PORTS__PUBLISH_WEB", "true");
            let error = load_in_jail().unwrap_err().to_string();
            assert!(error.contains("ports.publish_web"), "{error}");
            jail.set_env("BERTH_PORTS__PUBLISH_WEB", "false");
            for mode in ["privileged", "capabilities"] {
                jail.set_env("BERTH_WORKSPACE__ISOLATION", mode);
                let error = load_in_jail().unwrap_err().to_string();
                assert!(error.contains("workspace.isolation") && error.contains(mode) && error.contains("sysbox"), "{error}");
            }
            jail.set_env("BERTH_WORKSPACE__ISOLATION", "sysbox");
            jail.set_env("BERTH_SWARM__SHARED_STORAGE", "true");
            assert!(load_in_jail().unwrap().swarm.shared_storage);
            jail.set_env("BERTH_RUNTIME", "kubernetes");
            let error = load_in_jail().unwrap_err().to_string();
            assert!(error.contains("runtime"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            for (var, value, key) in [
                ("BERTH_LISTEN", "not-an-address", "listen"),
                ("BERTH_DATABASE_URL", "mysql://x", "database_url"),
                ("BERTH_PUBLIC_URL", "ftp://x", "public_url"),
                ("BERTH_DOMAIN", "Bad_Domain", "domain"),
                ("BERTH_SECRET_KEY", "abc", "secret_key"),
                ("BERTH_SESSION_IDLE_MINUTES", "-3", "session_idle_minutes"),
                ("BERTH_PASSWORD_HASHING_CONCURRENCY", "0", "password_hashing_concurrency"),
                ("BERTH_STORAGE_ROOT", "relative/dir", "storage_root"),
                ("BERTH_DOCKER_HOST", "http://x", "docker_host"),
                ("BERTH_PORTS__SSH", "200", "ports"),
                ("BERTH_WORKSPACE__GPUS", "all;rm", "workspace.gpus"),
            ] {
                jail.clear_env();
                jail.set_env(var, value);
                let error = load_in_jail().expect_err(var).to_string();
                assert!(error.contains(key), "{var}={value}: error {error:?} should name {key}");
            }
            Ok(())
        });
    }

    #[test]
    fn gpu_sharing_reads_human_durations_and_refuses_leases_that_cannot_hold() {
        Jail::expect_with(|jail| {
            jail.set_env("BERTH_GPU__MODE", "leased");
            jail.set_env("BERTH_GPU__MAX_LEASE", "90m");
            jail.set_env("BERTH_GPU__WARN_BEFORE", r#"["10m", "30s"]"#);
            jail.set_env("BERTH_IDLE__STOP_AFTER", "0s");
            let config = load_in_jail().expect("valid");
            assert_eq!(config.gpu.mode, GpuMode::Leased);
            assert_eq!(config.gpu.max_lease, Duration::from_secs(5400));
            assert_eq!(config.gpu.warn_before.iter().map(|d| d.as_secs()).collect::<Vec<_>>(), vec![600, 30]);
            assert_eq!(config.idle.stop_after, Duration::ZERO);
            assert!(config.redacted_toml().contains("max_lease = \"1h 30m\""), "{}", config.redacted_toml());
            // A privileged workspace sees every device: a lease there would be a promise not kept.
            jail.set_env("BERTH_WORKSPACE__ISOLATION", "privileged");
            let error = load_in_jail().expect_err("leased with privileged").to_string();
            assert!(error.contains("gpu.mode") && error.contains("privileged"), "{error}");
            jail.set_env("BERTH_WORKSPACE__ISOLATION", "plain");
            jail.set_env("BERTH_GPU__MAX_LEASE", "soon");
            assert!(load_in_jail().expect_err("bad duration").to_string().contains("max_lease"));
            Ok(())
        });
    }

    #[test]
    fn isolation_modes_and_deprecated_keys() {
        Jail::expect_with(|jail| {
            let config = load_in_jail().unwrap();
            assert_eq!(config.workspace.isolation, Isolation::Auto);
            assert!(config.deprecations.is_empty());
            assert!(config.redacted_toml().contains("# workspace.isolation = \"auto\": sysbox when the engine lists \"sysbox-runc\", else privileged"));
            for (vars, expected) in [
                (vec![("BERTH_WORKSPACE__PRIVILEGED", "true")], Isolation::Privileged),
                (vec![("BERTH_WORKSPACE__PRIVILEGED", "false")], Isolation::Plain),
                (vec![("BERTH_WORKSPACE__PRIVILEGED", "false"), ("BERTH_WORKSPACE__ALL_CAPABILITIES", "true")], Isolation::Capabilities),
                // The old default was privileged, and all_capabilities only counted without it.
                (vec![("BERTH_WORKSPACE__ALL_CAPABILITIES", "true")], Isolation::Privileged),
                (vec![("BERTH_WORKSPACE__RUNTIME", "sysbox-custom")], Isolation::Sysbox),
                (vec![("BERTH_WORKSPACE__ISOLATION", "plain"), ("BERTH_WORKSPACE__PRIVILEGED", "true")], Isolation::Plain),
            ] {
                jail.clear_env();
                for (k, v) in &vars {
                    jail.set_env(k, v);
                }
                let config = load_in_jail().unwrap();
                assert_eq!(config.workspace.isolation, expected, "{vars:?}");
                assert_eq!(config.deprecations.len(), 1, "{vars:?}: one deprecation line");
                assert!(config.deprecations[0].contains("deprecated"), "{:?}", config.deprecations);
                assert!(!config.redacted_toml().contains("all_capabilities"), "deprecated keys are not printed back");
            }
            jail.clear_env();
            jail.set_env("BERTH_WORKSPACE__RUNTIME", "sysbox-custom");
            assert_eq!(load_in_jail().unwrap().workspace.sysbox_runtime, "sysbox-custom");
            jail.clear_env();
            jail.set_env("BERTH_WORKSPACE__ISOLATION", "capabilities");
            let text = load_in_jail().unwrap().redacted_toml();
            assert!(text.contains("isolation = \"capabilities\""), "{text}");
            assert!(text.contains("# WARNING: workspace.isolation = capabilities: every workspace user can become root on this host"), "{text}");
            jail.set_env("BERTH_WORKSPACE__ISOLATION", "sysbox");
            assert!(!load_in_jail().unwrap().redacted_toml().contains("WARNING"));
            jail.set_env("BERTH_WORKSPACE__ISOLATION", "docker");
            assert!(load_in_jail().unwrap_err().to_string().contains("workspace.isolation"));
            Ok(())
        });
    }

    #[test]
    fn auto_picks_sysbox_only_when_the_engine_offers_it() {
        let runtimes = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // This machine's engine, as `docker info` lists it; it refuses privileged containers.
        assert_eq!(Isolation::resolve_auto(&runtimes(&["io.containerd.runc.v2", "runc"]), false, "sysbox-runc"), Isolation::Plain);
        assert_eq!(Isolation::resolve_auto(&runtimes(&["io.containerd.runc.v2", "runc"]), true, "sysbox-runc"), Isolation::Privileged);
        assert_eq!(Isolation::resolve_auto(&runtimes(&["runc", "sysbox-runc"]), true, "sysbox-runc"), Isolation::Sysbox);
        assert_eq!(Isolation::resolve_auto(&runtimes(&["runc", "sysbox-runc"]), false, "sysbox-runc"), Isolation::Sysbox);
        assert_eq!(Isolation::resolve_auto(&runtimes(&["runc", "sysbox-runc"]), true, "sysbox-custom"), Isolation::Privileged);
        assert_eq!(Isolation::resolve_auto(&[], false, "sysbox-runc"), Isolation::Plain);
    }

    #[test]
    fn exposure_needs_an_explicit_choice() {
        Jail::expect_with(|jail| {
            let config = load_in_jail().unwrap();
            assert_eq!(config.ports.public, vec!["ssh".to_string()]);
            jail.set_env("BERTH_PORTS__PUBLIC", "[ssh,rdp]");
            assert_eq!(load_in_jail().unwrap().ports.public, vec!["ssh".to_string(), "rdp".to_string()]);
            jail.set_env("BERTH_PORTS__PUBLIC", "[ssh,jupyter]");
            assert!(load_in_jail().unwrap_err().to_string().contains("ports.public"));
            jail.clear_env();

            jail.set_env("BERTH_PORTS__PUBLISH_WEB", "true");
            assert!(load_in_jail().is_ok(), "on loopback by default");
            jail.set_env("BERTH_PORTS__WEB_IP", "0.0.0.0");
            let error = load_in_jail().unwrap_err().to_string();
            assert!(error.contains("ports.web_ip") && error.contains("without logging in"), "{error}");
            jail.set_env("BERTH_PORTS__PUBLISH_WEB_UNAUTHENTICATED", "true");
            assert!(load_in_jail().is_ok(), "acknowledged");
            jail.clear_env();

            for (host, ok) in [("tcp://10.0.0.5:2375", false), ("tcp://docker.lab:2375", false), ("tcp://127.0.0.1:2375", true),
                ("tcp://localhost:2375", true), ("tcp://[::1]:2375", true), ("unix:///run/docker.sock", true)] {
                jail.set_env("BERTH_DOCKER_HOST", host);
                let loaded = load_in_jail();
                assert_eq!(loaded.is_ok(), ok, "{host}: {:?}", loaded.err().map(|e| e.to_string()));
            }
            jail.set_env("BERTH_DOCKER_HOST", "tcp://10.0.0.5:2376");
            jail.set_env("BERTH_DOCKER_TLS_DIR", "/etc/berth/docker-tls");
            assert!(load_in_jail().is_ok(), "with TLS client certificates");
            Ok(())
        });
    }

    #[test]
    fn printed_config_hides_secrets() {
        let mut config = Config::default();
        config.database_url = Secret("postgres://berth:hunter2hunter2@db/berth".into());
        config.secret_key = Some(Secret("ab".repeat(32)));
        config.metrics_token = Some(Secret("scrape-me-if-you-can-0123".into()));
        let text = config.redacted_toml();
        assert!(!text.contains("scrape-me-if-you-can"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(&"ab".repeat(32)), "{text}");
        assert!(text.contains("listen = \"127.0.0.1:3000\""), "{text}");
        assert!(format!("{config:?}").find("hunter2").is_none());
    }

    #[test]
    fn secret_key_is_generated_once_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().join("d"), ..Config::default() };
        let first = config.load_or_create_secret_key().unwrap();
        let second = config.load_or_create_secret_key().unwrap();
        assert_eq!(first, second);
        let mode = std::fs::metadata(dir.path().join("d/secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
