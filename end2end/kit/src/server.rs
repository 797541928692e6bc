//! A running `berth serve` on a test's database, killed when dropped, and the `berth` command
//! line against the same configuration.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::db::TestDb;

/// A running `berth serve`, killed when dropped.
pub struct TestServer {
    pub base: String,
    pub port: u16,
    child: Child,
    env: Vec<(String, String)>,
}

/// How to start one server.
#[derive(Default)]
struct Launch<'a> {
    log: Option<&'a Path>,
    umask: Option<u32>,
    site: bool,
}

impl TestServer {
    /// The settings every test server gets: loopback `port`, the test's database, data
    /// directory and (absent) configuration file, warnings only in the log.
    pub fn env_for(db: &TestDb, port: u16) -> Vec<(String, String)> {
        vec![
            ("BERTH_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("BERTH_DATABASE_URL".into(), db.url.clone()),
            ("BERTH_DATA_DIR".into(), db.dir.path().join("data").display().to_string()),
            ("BERTH_CONFIG".into(), db.dir.path().join("berth.toml").display().to_string()),
            ("BERTH_LOG".into(), "warn".into()),
        ]
    }

    pub async fn start(db: &TestDb) -> TestServer {
        Self::start_with(db, &[]).await
    }

    /// With `extra` settings on top of [`TestServer::env_for`] (later entries win).
    pub async fn start_with(db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
        Self::spawn(db, extra, Launch::default()).await
    }

    /// Like `start_with`, sending the server's log (stderr) to `log` when given.
    pub async fn start_logging(db: &TestDb, extra: &[(&str, &str)], log: Option<&Path>) -> TestServer {
        Self::spawn(db, extra, Launch { log, ..Launch::default() }).await
    }

    /// Like `start_with`, with the server's file-creation mask set to `umask`.
    pub async fn start_with_umask(db: &TestDb, extra: &[(&str, &str)], umask: u32) -> TestServer {
        Self::spawn(db, extra, Launch { umask: Some(umask), ..Launch::default() }).await
    }

    /// Like `start_with`, serving the built site (wasm, JavaScript, CSS), as the browser tests
    /// need; the site must be current (see [`crate::binary::site`]).
    pub async fn start_with_site(db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
        Self::spawn(db, extra, Launch { site: true, ..Launch::default() }).await
    }

    async fn spawn(db: &TestDb, extra: &[(&str, &str)], launch: Launch<'_>) -> TestServer {
        let port = crate::free_port();
        let mut env = Self::env_for(db, port);
        if launch.site {
            env.push(("BERTH_SITE_ROOT".into(), crate::binary::site().display().to_string()));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let stderr = match launch.log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let mut command = Command::new(crate::berth());
        command.arg("serve").envs(env.iter().cloned()).stdout(Stdio::null()).stderr(stderr);
        if let Some(mask) = launch.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe and touches only the child's own mask.
            unsafe {
                command.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("spawn berth");
        let mut server = TestServer { base: format!("http://127.0.0.1:{port}"), port, child, env };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("berth serve exited before it was healthy ({status}); its log is above");
            }
            assert!(Instant::now() < deadline, "berth did not become healthy on {}", self.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The environment the server runs with.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Runs `berth ARGS` against the same configuration, feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        cli(&self.env, args, stdin)
    }

    /// Like [`TestServer::cli`], failing the test (with the command's stderr) unless it succeeds.
    pub fn cli_ok(&self, args: &[&str], stdin: &str) -> Output {
        let out = self.cli(args, stdin);
        assert!(out.status.success(), "berth {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `berth ARGS` with exactly the environment `env`, feeding `stdin`.
pub fn cli(env: &[(String, String)], args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(crate::berth())
        .args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth cli");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
