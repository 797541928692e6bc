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
    /// Failed logins allowed per username (and sign-ups/logins ×3 per client address) per window.
    pub login_attempts_per_window: u32,
    pub login_window_seconds: u64,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that sets it).
    pub trust_proxy_headers: bool,
    pub log_format: LogFormat,
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
            trust_proxy_headers: false,
            log_format: LogFormat::Text,
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
                .merge(Env::prefixed("BERTH_").ignore(NOT_CONFIG_KEYS)),
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
        Ok(())
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
                std::fs::create_dir_all(&self.data_dir).map_err(io)?;
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
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            match value {
                serde_json::Value::Null => out.push_str(&format!("# {key} = (unset)\n")),
                other => out.push_str(&format!("{key} = {other}\n")),
            }
        }
    }
    out
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
    fn bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            for (var, value, key) in [
                ("BERTH_LISTEN", "not-an-address", "listen"),
                ("BERTH_DATABASE_URL", "mysql://x", "database_url"),
                ("BERTH_PUBLIC_URL", "ftp://x", "public_url"),
                ("BERTH_DOMAIN", "Bad_Domain", "domain"),
                ("BERTH_SECRET_KEY", "abc", "secret_key"),
                ("BERTH_SESSION_IDLE_MINUTES", "-3", "session_idle_minutes"),
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
