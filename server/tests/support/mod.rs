//! Test fixtures: a real `berth` process on a real database (SQLite file or a fresh
//! PostgreSQL database), and an HTTP client that behaves like a browser's fetch.
#![allow(dead_code)]

pub mod docker;
pub mod oidc;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test; a PostgreSQL one is dropped when this goes away.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb { url: format!("sqlite://{}/berth.db", dir.path().display()), dir, postgres: None },
            Backend::Postgres => {
                let admin_url = std::env::var("BERTH_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()).expect(
                    "BERTH_TEST_POSTGRES_URL must point at a PostgreSQL server (make test starts one: scripts/ensure-postgres.sh)",
                );
                let name = format!("berth_test_{}_{}", std::process::id(), rand_suffix());
                run_sql(&admin_url, &format!("CREATE DATABASE {name}")).await;
                let mut url = url::Url::parse(&admin_url).expect("postgres url");
                url.set_path(&format!("/{name}"));
                TestDb { url: url.to_string(), dir, postgres: Some((admin_url, name)) }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop may run inside a runtime: do the async work on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(run_sql(&admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
            })
            .join();
        }
    }
}

async fn run_sql(url: &str, sql: &str) {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect to test PostgreSQL");
    pool.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}

fn rand_suffix() -> String {
    use std::time::SystemTime;
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{nanos:x}")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `berth serve`, killed when dropped.
pub struct TestServer {
    pub base: String,
    pub port: u16,
    child: Child,
    env: Vec<(String, String)>,
}

impl TestServer {
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

    pub async fn start_with(db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
        Self::start_logging(db, extra, None).await
    }

    /// Like `start_with`, sending the server's log (stderr) to `log` when given.
    pub async fn start_logging(db: &TestDb, extra: &[(&str, &str)], log: Option<&std::path::Path>) -> TestServer {
        Self::spawn(db, extra, log, None).await
    }

    /// Like `start_with`, with the server's file-creation mask set to `umask`.
    pub async fn start_with_umask(db: &TestDb, extra: &[(&str, &str)], umask: u32) -> TestServer {
        Self::spawn(db, extra, None, Some(umask)).await
    }

    async fn spawn(db: &TestDb, extra: &[(&str, &str)], log: Option<&std::path::Path>, umask: Option<u32>) -> TestServer {
        let port = free_port();
        let mut env = Self::env_for(db, port);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        let mut command = Command::new(BERTH);
        command.arg("serve").envs(env.iter().cloned()).stdout(Stdio::null()).stderr(stderr);
        if let Some(mask) = umask {
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
        let server = TestServer { base: format!("http://127.0.0.1:{port}"), port, child, env };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "berth did not become healthy on {}", self.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `berth ARGS` against the same configuration, feeding `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        cli(&self.env, args, stdin)
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

pub fn cli(env: &[(String, String)], args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BERTH)
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

/// A cookie-keeping client that sends the portal's Origin, like the hydrated page does.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn new(server: &TestServer) -> Browser {
        Self::at(&server.base)
    }

    pub fn at(base: &str) -> Browser {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser { http, base: base.to_string(), jar }
    }

    /// Calls a server function the way the wasm client does.
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/api/{endpoint}", self.base))
            .header("Origin", &self.base)
            .header("Accept", "application/json")
            .form(form)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).header("Accept", "text/html").send().await.expect("request")
    }

    pub fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("berth_session=").map(str::to_string))
    }

    pub async fn log_in(&self, username: &str, password: &str) -> reqwest::Response {
        self.call("login", &[("username", username), ("password", password)]).await
    }

    pub async fn viewer(&self) -> serde_json::Value {
        let r = self.call("viewer", &[]).await;
        assert!(r.status().is_success(), "viewer: {}", r.status());
        r.json().await.unwrap()
    }
}

/// Goes through the app hop as a browser does: the portal (with the portal cookie `portal`,
/// `name=value`) hands out a one-time code for `host`, forwardAuth redeems it. Returns the app
/// host's cookie as `name=value`.
pub async fn app_cookie(base: &str, portal: &str, owner: &str, host: &str, proto: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .get(format!("{base}/auth/app"))
        .query(&[("rd", format!("{proto}://{host}/lab?x=1"))])
        .header("Cookie", portal)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "hop: {}", r.status());
    let to = url::Url::parse(&location(&r).unwrap()).unwrap();
    assert_eq!((to.scheme(), to.host_str(), to.path()), (proto, Some(host), "/.berth/auth"), "{to}");
    let r = http
        .get(format!("{base}/auth/verify?owner={owner}"))
        .header("X-Forwarded-Host", host)
        .header("X-Forwarded-Proto", proto)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", format!("{}?{}", to.path(), to.query().unwrap()))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "redeem");
    assert_eq!(location(&r).unwrap(), format!("{proto}://{host}/lab?x=1"), "back where the user was going");
    let set_cookie = r.headers().get("set-cookie").expect("the app host's cookie").to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_string()
}

/// The test's SQLite database, opened beside the running server (WAL lets both read).
pub async fn sqlite_pool(db: &TestDb) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&db.url).await.expect("open the test's SQLite database")
}

pub fn location(response: &reqwest::Response) -> Option<String> {
    response.headers().get("location").map(|v| v.to_str().unwrap().to_string())
}
