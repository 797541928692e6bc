//! Configuration: built-in defaults, then `berth.toml`, then `BERTH_*` environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Domain attribute of the session cookie so app hosts receive it; unset means host-only.
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
    pub traefik: TraefikConfig,
    /// App host templates (`{user}`, `{domain}`).
    pub hosts: crate::routes::hosts::HostTemplates,
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
    /// Host address the ports are published on.
    pub host_ip: String,
    /// Publish the web ports (noVNC, code-server, Jupyter, TensorBoard) directly, bypassing the
    /// portal's login. Off by default: they are reached through the authenticated routes.
    pub publish_web: bool,
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
            publish_web: false,
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
    /// `all`, `none`, or a comma-separated list of GPU ids.
    pub gpus: String,
    /// Privileged containers run Docker-in-Docker; set `runtime` (e.g. sysbox-runc) instead to avoid it.
    pub privileged: bool,
    pub runtime: Option<String>,
    /// For engines that refuse --privileged (nested or sandboxed Docker): every capability but
    /// SYS_RESOURCE, unconfined seccomp and /proc paths, all devices. Nearly privileged; only
    /// used when `privileged` is false and no `runtime` is set.
    pub all_capabilities: bool,
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
            gpus: "all".into(),
            privileged: true,
            runtime: None,
            all_capabilities: false,
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
            docker_host: None,
            docker_tls_dir: None,
            workspace_image: "berth/workspace:latest".into(),
            storage_root: PathBuf::from("/mnt/storage"),
            ports: PortPlanConfig::default(),
            workspace: WorkspaceDefaults::default(),
            traefik_dir: None,
            traefik: TraefikConfig::default(),
            hosts: crate::routes::hosts::HostTemplates::default(),
            guacamole: GuacamoleConfig::default(),
            password_login: true,
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_name: None,
            oidc_providers: Vec::new(),
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
        let config: Config = figment.extract().map_err(load_error)?;
        config.validate()?;
        Ok(config)
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
        let gpus = self.workspace.gpus.as_str();
        if !(gpus == "all" || gpus == "none" || gpus.split(',').all(|g| !g.trim().is_empty() && g.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))) {
            return Err(invalid("workspace.gpus", "must be all, none or a comma-separated list of GPU ids"));
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
        toml_string(&shown)
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
    fn printed_config_hides_secrets() {
        let mut config = Config::default();
        config.database_url = Secret("postgres://berth:hunter2hunter2@db/berth".into());
        config.secret_key = Some(Secret("ab".repeat(32)));
        let text = config.redacted_toml();
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
