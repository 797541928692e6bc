//! Berth's services built in-process, for tests that drive the service layer directly. Every
//! constructor of a Berth service a test needs is called here and nowhere else, so a changed
//! signature is one fix in this file.

use std::sync::Arc;

use berth::config::Config;
use berth::db::Db;
use berth::routes::verify::Gateway;
use berth::sessions::{Clock, SessionCache, SqlSessionStore};
use berth::backend::Backend;
use berth::workspace::{Actor, Owner, Workspaces};

use crate::docker::{Cleanup, TEST_IMAGE};

/// The secret key the in-process services get.
pub const KEY: [u8; 32] = [42; 32];

pub type Service = Arc<Workspaces>;

/// Test settings: the busybox image, private storage, loopback ports from `port_base`,
/// unprivileged, labelled for `cleanup` (the same as [`crate::docker::env`] for processes).
pub fn config(cleanup: &Cleanup, storage: &std::path::Path, port_base: u16) -> Config {
    crate::docker::assert_below_ephemeral_ports(port_base);
    let mut config = Config::default();
    config.workspace_image = TEST_IMAGE.into();
    config.storage_root = storage.to_path_buf();
    config.ports.base = port_base;
    config.ports.host_ip = "127.0.0.1".into();
    config.workspace.gpus = "none".into();
    config.workspace.stop_timeout_seconds = 5;
    // This machine's engine refuses --privileged (nested sandbox): tests run unprivileged.
    config.workspace.isolation = berth::config::Isolation::Plain;
    config.workspace.extra_label = Some(cleanup.label.clone());
    config
}

/// The database at `db_url`, migrated.
pub async fn database(db_url: &str) -> Db {
    let db = Db::connect(db_url).await.expect("db");
    db.migrate().await.expect("migrate");
    db
}

/// Every service, wired as `berth serve` wires them, on the database at `db_url`.
pub async fn backend(config: &Config, db_url: &str) -> Backend {
    Backend::new(config, database(db_url).await, &KEY)
}

/// Tests act as Berth itself (the command line's actor); the portal's checks have tests of their own.
pub const SYSTEM: &Actor = &Actor::System;

/// An approved account without a password, as the workspace service takes its owner.
pub async fn approved_user(backend: &Backend, name: &str) -> Owner {
    use app::model::AccountStatus;
    use berth::accounts::NewUser;
    let user = backend
        .accounts
        .create(NewUser { username: name, email: None, password: None, status: AccountStatus::Approved, is_admin: false })
        .await
        .expect("create user");
    Owner::from(&user)
}

/// The session side of the portal on `clock`: the session store, the forwardAuth cache (30 s,
/// as `berth serve` has it) with an idle window of `idle`, and the forwardAuth gateway for
/// app hosts `<user>-code.localhost` etc. on plain http.
pub struct Sessions {
    pub store: SqlSessionStore,
    pub cache: Arc<SessionCache>,
    pub gateway: Arc<Gateway>,
}

pub fn sessions(db: &Db, clock: Clock, idle: std::time::Duration) -> Sessions {
    let cache = Arc::new(SessionCache::with_clock(std::time::Duration::from_secs(30), idle, clock));
    let store = SqlSessionStore::new(db.clone(), cache.clone());
    let absolute_seconds = 7 * 24 * 3600;
    let gateway = Arc::new(Gateway::new(
        db.clone(),
        cache.clone(),
        berth::hosts::HostTemplates::default(),
        "localhost".into(),
        "http://127.0.0.1".parse().unwrap(),
        absolute_seconds,
        &KEY,
    ));
    Sessions { store, cache, gateway }
}

/// `gateway`'s forwardAuth endpoint served on loopback as `berth serve` routes it
/// (`GET /auth/verify`); returns its base URL. Served until the test's runtime ends.
pub async fn serve_forward_auth(gateway: Arc<Gateway>) -> String {
    let app = axum::Router::new().route("/auth/verify", axum::routing::get(berth::routes::verify::verify)).with_state(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Berth's Traefik file writer for `dir`, for the portal `berth.lab.example.org` (reached by
/// Traefik at `http://berth:3000`) and app hosts under `lab.example.org`, on the entry point
/// `websecure` with TLS, certificates from `cert_resolver` when given.
pub fn traefik_writer(dir: &std::path::Path, cert_resolver: Option<&str>) -> berth::routes::traefik::TraefikWriter {
    use berth::routes::traefik::{TraefikSettings, TraefikWriter};
    TraefikWriter::new(TraefikSettings {
        dir: dir.to_path_buf(),
        portal_internal_url: "http://berth:3000".into(),
        portal_host: "berth.lab.example.org".into(),
        domain: "lab.example.org".into(),
        hosts: berth::hosts::HostTemplates::default(),
        entry_point: "websecure".into(),
        cert_resolver: cert_resolver.map(Into::into),
        tls: true,
    })
}
