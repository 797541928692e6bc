//! Traefik dynamic configuration (file provider): one file per user plus one for the portal,
//! written atomically and checked before they replace the previous version, because a partial
//! or broken file either freezes every route or publishes a router without its auth.
//!
//! Files are JSON, which is valid YAML, so Traefik loads them as `.yml`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::hosts::{App, HostTemplates};

#[derive(Debug, thiserror::Error)]
pub enum TraefikError {
    #[error("traefik file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("refusing to write an unsafe Traefik configuration: {0}")]
    Unsafe(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TraefikSettings {
    pub dir: PathBuf,
    /// How Traefik reaches Berth, e.g. `http://berth:3000`.
    pub portal_internal_url: String,
    /// The portal's own host (from the public URL); it gets a router without forwardAuth.
    pub portal_host: String,
    pub domain: String,
    pub hosts: HostTemplates,
    pub entry_point: String,
    /// `Some(resolver)` for ACME; `None` with `tls` for a wildcard default certificate.
    pub cert_resolver: Option<String>,
    pub tls: bool,
}

pub struct TraefikWriter {
    pub settings: TraefikSettings,
}

/// The header the workspace image's app gate requires (see docker/workspace/README.md).
pub const APP_SECRET_HEADER: &str = "X-Berth-App-Secret";

/// One user's routes: where Traefik reaches the workspace (the runtime says), and what the
/// routers inject on the way in (the browser never sees either secret).
#[derive(Clone, PartialEq)]
pub struct UserRoute {
    /// The workspace's host name on the user's network (`WorkspaceRuntime::proxy_host`).
    pub upstream_host: String,
    pub jupyter_token: String,
    pub app_secret: String,
}

impl std::fmt::Debug for UserRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserRoute({}, <secrets redacted>)", self.upstream_host)
    }
}

pub fn auth_middleware(user: &str) -> String {
    format!("berth-auth-{user}")
}

pub fn user_file(user: &str) -> String {
    format!("user-{user}.yml")
}

pub const PORTAL_FILE: &str = "portal.yml";

impl TraefikWriter {
    pub fn new(settings: TraefikSettings) -> TraefikWriter {
        TraefikWriter { settings }
    }

    fn router(&self, rule: String, middlewares: Vec<String>, service: &str) -> Value {
        let mut router = json!({
            "rule": rule,
            "entryPoints": [self.settings.entry_point],
            "service": service,
        });
        if !middlewares.is_empty() {
            router["middlewares"] = json!(middlewares);
        }
        if self.settings.tls {
            router["tls"] = match &self.settings.cert_resolver {
                Some(resolver) => json!({ "certResolver": resolver }),
                None => json!({}),
            };
        }
        router
    }

    /// One user's routers: every one carries the owner's forwardAuth first; Jupyter also gets
    /// its token injected, code-server and TensorBoard the app secret their gate requires, so
    /// the browser never sees either and a request that bypasses Traefik has neither.
    pub fn render_user(&self, user: &str, route: &UserRoute) -> Value {
        let auth = auth_middleware(user);
        let jupyter_token_mw = format!("berth-jupyter-token-{user}");
        let app_secret_mw = format!("berth-app-secret-{user}");
        let mut routers = Map::new();
        let mut services = Map::new();
        for (app, host) in self.settings.hosts.hosts(user, &self.settings.domain) {
            let name = format!("{user}-{}", app.key());
            let mut middlewares = vec![auth.clone()];
            if app == App::Jupyter {
                middlewares.push(jupyter_token_mw.clone());
            }
            if app.gated() {
                middlewares.push(app_secret_mw.clone());
            }
            routers.insert(name.clone(), self.router(format!("Host(`{host}`)"), middlewares, &name));
            services.insert(
                name,
                json!({ "loadBalancer": {
                    "servers": [{ "url": format!("http://{}:{}", route.upstream_host, app.port()) }],
                    "passHostHeader": true,
                }}),
            );
        }
        json!({ "http": {
            "middlewares": {
                auth: { "forwardAuth": {
                    "address": format!("{}/auth/verify?owner={user}", self.settings.portal_internal_url.trim_end_matches('/')),
                    "trustForwardHeader": false,
                    "authRequestHeaders": ["Cookie", "Accept", "Origin", "X-Requested-With"],
                    // Cookie: forwardAuth's copy without Berth's cookies replaces the browser's.
                    "authResponseHeaders": ["X-Berth-User", "Cookie"],
                    "maxResponseBodySize": 65536,
                }},
                jupyter_token_mw: { "headers": { "customRequestHeaders": {
                    "Authorization": format!("token {}", route.jupyter_token),
                }}},
                app_secret_mw: { "headers": { "customRequestHeaders": {
                    APP_SECRET_HEADER: route.app_secret,
                }}},
            },
            "routers": routers,
            "services": services,
        }})
    }

    /// The portal's own router: Berth authenticates its own pages.
    pub fn render_portal(&self) -> Value {
        json!({ "http": {
            "routers": { "berth-portal": self.router(format!("Host(`{}`)", self.settings.portal_host), vec![], "berth-portal") },
            "services": { "berth-portal": { "loadBalancer": {
                "servers": [{ "url": self.settings.portal_internal_url }],
                "passHostHeader": true,
            }}},
        }})
    }

    /// Every router of a user file must start with that user's forwardAuth, which must point at
    /// the portal with the same owner, and every router must have its service.
    pub fn check_user(value: &Value, user: &str) -> Result<(), TraefikError> {
        let unsafe_ = |m: String| Err(TraefikError::Unsafe(m));
        let http = &value["http"];
        let auth = auth_middleware(user);
        let address = http["middlewares"][&auth]["forwardAuth"]["address"].as_str().unwrap_or_default();
        if !address.ends_with(&format!("/auth/verify?owner={user}")) {
            return unsafe_(format!("{auth} does not ask the portal about owner {user}"));
        }
        if http["middlewares"][&auth]["forwardAuth"]["trustForwardHeader"] != json!(false) {
            return unsafe_(format!("{auth} must not trust client X-Forwarded headers"));
        }
        let replaced = http["middlewares"][&auth]["forwardAuth"]["authResponseHeaders"].as_array();
        if !replaced.is_some_and(|h| h.iter().any(|v| v.as_str().is_some_and(|v| v.eq_ignore_ascii_case("cookie")))) {
            return unsafe_(format!("{auth} must replace the Cookie header (Berth's cookies never reach a workspace)"));
        }
        let Some(routers) = http["routers"].as_object().filter(|r| !r.is_empty()) else {
            return unsafe_(format!("no routers for {user}"));
        };
        for (name, router) in routers {
            if router["middlewares"].get(0).and_then(Value::as_str) != Some(auth.as_str()) {
                return unsafe_(format!("router {name} does not start with {auth}"));
            }
            let service = router["service"].as_str().unwrap_or_default();
            if http["services"].get(service).is_none() {
                return unsafe_(format!("router {name} points at missing service {service:?}"));
            }
        }
        Ok(())
    }

    pub fn write_user(&self, user: &str, route: &UserRoute) -> Result<(), TraefikError> {
        let value = self.render_user(user, route);
        Self::check_user(&value, user)?;
        self.write_atomic(&user_file(user), &value)
    }

    pub fn write_portal(&self) -> Result<(), TraefikError> {
        self.write_atomic(PORTAL_FILE, &self.render_portal())
    }

    pub fn remove_user(&self, user: &str) -> Result<(), TraefikError> {
        let path = self.settings.dir.join(user_file(user));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(TraefikError::Io { path, source }),
        }
    }

    /// Makes the directory hold exactly the portal file and one file per listed user.
    pub fn reconcile(&self, users: &[(String, UserRoute)]) -> Result<Vec<String>, TraefikError> {
        std::fs::create_dir_all(&self.settings.dir)
            .map_err(|source| TraefikError::Io { path: self.settings.dir.clone(), source })?;
        self.write_portal()?;
        for (user, route) in users {
            self.write_user(user, route)?;
        }
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(&self.settings.dir)
            .map_err(|source| TraefikError::Io { path: self.settings.dir.clone(), source })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let owner = name.strip_prefix("user-").and_then(|n| n.strip_suffix(".yml"));
            if let Some(owner) = owner {
                if !users.iter().any(|(u, _)| u == owner) {
                    self.remove_user(owner)?;
                    removed.push(owner.to_string());
                }
            }
        }
        Ok(removed)
    }

    /// Temporary file in the same directory with a suffix Traefik ignores, fsync, rename, fsync
    /// the directory: readers see the old file or the new one, never a part.
    fn write_atomic(&self, name: &str, value: &Value) -> Result<(), TraefikError> {
        let dir = &self.settings.dir;
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TraefikError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut bytes = serde_json::to_vec_pretty(value).expect("JSON value serializes");
        bytes.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_all());
        if let Err(source) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(TraefikError::Io { path: tmp, source });
        }
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path) -> TraefikWriter {
        TraefikWriter::new(TraefikSettings {
            dir: dir.to_path_buf(),
            portal_internal_url: "http://berth:3000".into(),
            portal_host: "berth.lab.org".into(),
            domain: "lab.org".into(),
            hosts: HostTemplates::default(),
            entry_point: "websecure".into(),
            cert_resolver: Some("le".into()),
            tls: true,
        })
    }

    fn secrets(token: &str) -> UserRoute {
        UserRoute { upstream_host: "workspace-alice".into(), jupyter_token: token.into(), app_secret: "ab12".into() }
    }

    #[test]
    fn user_file_has_four_authenticated_routers() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let v = w.render_user("alice", &secrets("tok123"));
        let routers = v["http"]["routers"].as_object().unwrap();
        assert_eq!(routers.len(), 4);
        assert_eq!(routers["alice-code"]["rule"], "Host(`alice-code.lab.org`)");
        assert_eq!(routers["alice-jupyter"]["rule"], "Host(`jupyter-alice.lab.org`)");
        assert_eq!(routers["alice-jupyter"]["middlewares"], json!(["berth-auth-alice", "berth-jupyter-token-alice"]));
        assert_eq!(routers["alice-code"]["tls"]["certResolver"], "le");
        assert_eq!(
            v["http"]["services"]["alice-tensorboard"]["loadBalancer"]["servers"][0]["url"],
            "http://workspace-alice:6006"
        );
        assert_eq!(
            v["http"]["middlewares"]["berth-auth-alice"]["forwardAuth"]["address"],
            "http://berth:3000/auth/verify?owner=alice"
        );
        assert_eq!(v["http"]["middlewares"]["berth-jupyter-token-alice"]["headers"]["customRequestHeaders"]["Authorization"], "token tok123");
        TraefikWriter::check_user(&v, "alice").unwrap();
    }

    #[test]
    fn code_and_tensorboard_get_the_app_secret_after_the_owners_auth() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        // The secret Berth derives for alice under the key 00 01 .. 1f (see crypto.rs).
        let app_secret = crate::crypto::AppSecrets::new(&std::array::from_fn(|i| i as u8)).for_user("alice");
        let v = w.render_user("alice", &UserRoute { upstream_host: "workspace-alice".into(), jupyter_token: "tok123".into(), app_secret });
        let routers = &v["http"]["routers"];
        assert_eq!(routers["alice-code"]["middlewares"], json!(["berth-auth-alice", "berth-app-secret-alice"]));
        assert_eq!(routers["alice-tensorboard"]["middlewares"], json!(["berth-auth-alice", "berth-app-secret-alice"]));
        // Jupyter has its own token and noVNC its VNC password: neither gets the app secret.
        assert_eq!(routers["alice-jupyter"]["middlewares"], json!(["berth-auth-alice", "berth-jupyter-token-alice"]));
        assert_eq!(routers["alice-desktop"]["middlewares"], json!(["berth-auth-alice"]));
        assert_eq!(
            v["http"]["middlewares"]["berth-app-secret-alice"],
            json!({ "headers": { "customRequestHeaders": {
                "X-Berth-App-Secret": "d182779b3dce5f8ff0bbcce5ec24c12d3783d0c850a8fd4d7c8b8db7eaa0c6b6"
            }}})
        );
        TraefikWriter::check_user(&v, "alice").unwrap();
        assert!(!format!("{:?}", secrets("tok123")).contains("tok123"));
    }

    #[test]
    fn check_refuses_a_router_without_the_owners_auth() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        let mut v = w.render_user("alice", &secrets("t"));
        v["http"]["routers"]["alice-code"]["middlewares"] = json!([]);
        assert!(TraefikWriter::check_user(&v, "alice").is_err());
        let v = w.render_user("alice", &secrets("t"));
        assert!(TraefikWriter::check_user(&v, "bob").is_err(), "alice's file is not bob's");
        let mut v = w.render_user("alice", &secrets("t"));
        v["http"]["middlewares"]["berth-auth-alice"]["forwardAuth"]["address"] = json!("http://berth:3000/auth/verify?owner=bob");
        assert!(TraefikWriter::check_user(&v, "alice").is_err());
    }

    #[test]
    fn atomic_write_leaves_no_temporary_files_and_reconcile_repairs() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path());
        w.write_user("stale", &secrets("t")).unwrap();
        std::fs::write(dir.path().join("user-alice.yml"), "http: {routers: {broken").unwrap();
        let removed = w.reconcile(&[("alice".into(), secrets("t1")), ("bob".into(), secrets("t2"))]).unwrap();
        assert_eq!(removed, vec!["stale".to_string()]);
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        assert_eq!(names, vec!["portal.yml", "user-alice.yml", "user-bob.yml"]);
        let alice: Value = serde_json::from_slice(&std::fs::read(dir.path().join("user-alice.yml")).unwrap()).unwrap();
        TraefikWriter::check_user(&alice, "alice").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("user-alice.yml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the Jupyter token is inside");
        w.remove_user("alice").unwrap();
        w.remove_user("alice").unwrap();
        assert!(!dir.path().join("user-alice.yml").exists());
    }
}
