//! Docker fixtures: every test run labels what it creates and removes it when dropped,
//! even when the test panics.
#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;

use berth::config::Config;
use berth::db::Db;
use berth::backend::Backend;
use berth::workspace::Workspaces;

pub const TEST_IMAGE: &str = "berth-test/busybox:latest";

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes containers and networks carrying this run's label.
pub struct Cleanup {
    pub label: String,
}

impl Cleanup {
    pub fn new() -> Cleanup {
        assert!(
            !docker(&["image", "inspect", "-f", "{{.Id}}", TEST_IMAGE]).is_empty(),
            "{TEST_IMAGE} missing: run scripts/build-test-image.sh (make test does)"
        );
        Cleanup { label: format!("io.berth.test=run-{}", hex(6)) }
    }

    pub fn containers(&self) -> Vec<String> {
        docker(&["ps", "-aq", "--filter", &format!("label={}", self.label)])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={}", self.label);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in ids.lines() {
            docker(&["rm", "-f", id]);
        }
        let nets = docker(&["network", "ls", "-q", "--filter", &filter]);
        for id in nets.lines() {
            docker(&["network", "rm", id]);
        }
    }
}

pub fn hex(bytes: usize) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ (std::process::id() as u64) << 32;
    let mut x = seed | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:02x}", x as u8)
        })
        .collect()
}

/// A unique valid username for this test.
pub fn username(prefix: &str) -> String {
    format!("{prefix}-{}", hex(4))
}

/// Test settings: the busybox image, private storage, loopback ports from `port_base`.
pub fn config(cleanup: &Cleanup, storage: &std::path::Path, port_base: u16) -> Config {
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

/// The same settings as environment variables, for `berth` processes.
pub fn env(cleanup: &Cleanup, storage: &std::path::Path, port_base: u16) -> Vec<(String, String)> {
    vec![
        ("BERTH_WORKSPACE_IMAGE".into(), TEST_IMAGE.into()),
        ("BERTH_STORAGE_ROOT".into(), storage.display().to_string()),
        ("BERTH_PORTS__BASE".into(), port_base.to_string()),
        ("BERTH_PORTS__HOST_IP".into(), "127.0.0.1".into()),
        ("BERTH_WORKSPACE__GPUS".into(), "none".into()),
        ("BERTH_WORKSPACE__STOP_TIMEOUT_SECONDS".into(), "5".into()),
        ("BERTH_WORKSPACE__ISOLATION".into(), "plain".into()),
        ("BERTH_WORKSPACE__EXTRA_LABEL".into(), cleanup.label.clone()),
    ]
}

pub async fn backend(config: &Config, db_url: &str) -> Backend {
    let db = Db::connect(db_url).await.expect("db");
    db.migrate().await.expect("migrate");
    Backend::new(config, db, &[42; 32])
}

pub async fn approved_user(backend: &Backend, name: &str) {
    use app::model::AccountStatus;
    use berth::accounts::NewUser;
    backend
        .accounts
        .create(NewUser { username: name, email: None, password: None, status: AccountStatus::Approved, is_admin: false })
        .await
        .expect("create user");
}

pub fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

pub type Service = Arc<Workspaces>;
