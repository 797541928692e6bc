//! Browser tests: headless Chromium driven through chromedriver (WebDriver) against a real
//! `berth serve` with the built site (wasm + css). `make e2e` builds both first.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child process when dropped, even when the test panics.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the containers and networks a test run labeled, even on panic.
struct DockerCleanup(String);
impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let filter = format!("label={}", self.0);
        let ids = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output().unwrap().stdout;
        for id in String::from_utf8_lossy(&ids).lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        let nets = Command::new("docker").args(["network", "ls", "-q", "--filter", &filter]).output().unwrap().stdout;
        for id in String::from_utf8_lossy(&nets).lines() {
            let _ = Command::new("docker").args(["network", "rm", id]).output();
        }
    }
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{:08x}", nanos ^ std::process::id())
}

struct Portal {
    base: String,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
    _process: Guard,
}

impl Portal {
    async fn start() -> Portal {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[(String, String)]) -> Portal {
        let root = workspace_root();
        let bin = std::env::var("BERTH_BIN").map(PathBuf::from).unwrap_or_else(|_| root.join("target/debug/berth"));
        let site = root.join("target/site");
        assert!(bin.exists(), "{} missing: run `make build` first", bin.display());
        assert!(site.join("pkg/berth.wasm").exists(), "{}/pkg/berth.wasm missing: run `make build` first", site.display());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let env: Vec<(String, String)> = vec![
            ("BERTH_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("BERTH_DATABASE_URL".into(), format!("sqlite://{}/berth.db", dir.path().display())),
            ("BERTH_DATA_DIR".into(), dir.path().join("data").display().to_string()),
            ("BERTH_CONFIG".into(), dir.path().join("berth.toml").display().to_string()),
            ("BERTH_SITE_ROOT".into(), site.display().to_string()),
            ("BERTH_LOG".into(), "warn".into()),
            ("BERTH_STORAGE_ROOT".into(), dir.path().join("storage").display().to_string()),
        ];
        let env: Vec<(String, String)> = env.into_iter().chain(extra.iter().cloned()).collect();
        let child = Command::new(&bin).arg("serve").envs(env.clone()).stdout(Stdio::null()).spawn().unwrap();
        let portal = Portal { base: format!("http://127.0.0.1:{port}"), env, _dir: dir, _process: Guard(child) };
        wait_for(&format!("{}/healthz", portal.base)).await;
        portal
    }

    /// A portal whose workspaces run the busybox test image, unprivileged, with ports from
    /// `port_base` and the run's cleanup label.
    async fn with_test_workspaces(cleanup: &DockerCleanup, port_base: u16) -> Portal {
        let extra: Vec<(String, String)> = [
            ("BERTH_WORKSPACE_IMAGE", "berth-test/busybox:latest".to_string()),
            ("BERTH_PORTS__BASE", port_base.to_string()),
            ("BERTH_PORTS__HOST_IP", "127.0.0.1".to_string()),
            ("BERTH_WORKSPACE__GPUS", "none".to_string()),
            ("BERTH_WORKSPACE__ISOLATION", "plain".to_string()),
            ("BERTH_WORKSPACE__STOP_TIMEOUT_SECONDS", "5".to_string()),
            ("BERTH_WORKSPACE__EXTRA_LABEL", cleanup.0.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self::start_with(&extra).await
    }

    fn cli(&self, args: &[&str], stdin: &str) {
        use std::io::Write;
        let bin = std::env::var("BERTH_BIN").map(PathBuf::from).unwrap_or_else(|_| workspace_root().join("target/debug/berth"));
        let mut child = Command::new(bin)
            .args(args)
            .envs(self.env.clone())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "berth {args:?}");
    }
}

async fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not answer");
}

struct Browser {
    client: Client,
    shots: PathBuf,
    // Fields drop in this order: the browser processes go before their profile directory.
    _chromium: ChromiumReaper,
    _profile: tempfile::TempDir,
    _driver: Guard,
}

/// Kills the Chromium processes started with one test's profile directory. A test that panics
/// never closes its WebDriver session, and killing chromedriver alone leaves Chromium running.
struct ChromiumReaper(String);
impl Drop for ChromiumReaper {
    fn drop(&mut self) {
        for pid in processes_with_arg(&self.0) {
            // SAFETY: kill(2) with a pid read from /proc; at worst the process is already gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Processes whose command line mentions `arg` (read from /proc: no procps needed). Chromium's
/// helpers rewrite their command line into one space-separated string, so this searches the
/// raw bytes rather than comparing whole arguments.
fn processes_with_arg(arg: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| cmdline.windows(arg.len()).any(|w| w == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

impl Browser {
    async fn start(test: &str) -> Browser {
        Self::launch(test, true).await
    }

    /// A browser with JavaScript switched off: the pages must work as plain HTML forms.
    async fn without_javascript(test: &str) -> Browser {
        Self::launch(test, false).await
    }

    async fn launch(test: &str, javascript: bool) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt install chromium-driver; make test does)");
        let driver = Guard(driver);
        wait_for(&format!("http://127.0.0.1:{port}/status")).await;
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(), "--no-sandbox".into(), "--disable-gpu".into(), "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(), "--disable-component-update".into(), "--disable-sync".into(),
            "--no-first-run".into(), "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if !javascript {
            args.push("--blink-settings=scriptEnabled=false".into());
        }
        let caps = serde_json::json!({
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        });
        let caps = caps.as_object().unwrap().clone();
        let client = ClientBuilder::rustls()
            .expect("tls")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("connect to chromedriver");
        let shots = workspace_root().join("target/e2e-screenshots").join(test);
        std::fs::create_dir_all(&shots).unwrap();
        let reaper = ChromiumReaper(format!("--user-data-dir={}", profile.path().display()));
        Browser { client, shots, _chromium: reaper, _profile: profile, _driver: driver }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    /// Opens a page and waits until the wasm has hydrated it.
    async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
        self.wait_css("body[data-hydrated='true']").await;
    }

    async fn fill(&self, css: &str, text: &str) {
        self.wait_css(css).await.send_keys(text).await.unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.path().await != path {
            assert!(Instant::now() < deadline, "expected {path}, still at {}", self.path().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn submit(&self, form: &str) {
        self.wait_css(&format!("{form} button[type=submit]")).await.click().await.unwrap();
    }

    /// Without script a page never updates itself: reload until `css` shows (a minute at most).
    async fn reload_until(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.client.find(Locator::Css(css)).await.is_err() {
            assert!(Instant::now() < deadline, "{css} never showed");
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.client.refresh().await.unwrap();
        }
    }

    async fn log_in(&self, base: &str, user: &str, password: &str) {
        self.open(&format!("{base}/login")).await;
        self.fill("#login-form input[name=username]", user).await;
        self.fill("#login-form input[name=password]", password).await;
        self.wait_css("#login-form button[type=submit]").await.click().await.unwrap();
    }

    async fn log_out(&self) {
        self.wait_css("nav.topnav button[type=submit]").await.click().await.unwrap();
        self.wait_path("/login").await;
    }
}

#[tokio::test]
async fn sign_up_approve_log_in_and_see_dashboard() {
    let portal = Portal::start().await;
    portal.cli(&["user", "add", "root-admin", "--admin", "--password-stdin"], "admin-password-long\n");
    let b = Browser::start("accounts").await;
    let base = portal.base.clone();

    // A newcomer signs up and lands on the waiting page.
    b.open(&format!("{base}/signup")).await;
    b.screenshot("1-signup").await;
    b.fill("#signup-form input[name=username]", "carol").await;
    b.fill("#signup-form input[name=email]", "carol@lab.example.org").await;
    b.fill("#signup-form input[name=password]", "carol-password-long").await;
    b.wait_css("#signup-form button[type=submit]").await.click().await.unwrap();
    b.wait_path("/pending").await;
    b.wait_css("#pending").await;
    b.screenshot("2-pending").await;

    // Before approval the password gets her nowhere but the waiting page.
    b.log_in(&base, "carol", "carol-password-long").await;
    b.wait_path("/pending").await;

    // The admin approves her on the admin page, without a page reload.
    b.log_in(&base, "root-admin", "admin-password-long").await;
    b.wait_path("/admin").await;
    b.wait_css("body[data-hydrated='true']").await;
    b.wait_css("tr[data-user='carol'] [data-status='pending']").await;
    b.screenshot("3-admin-pending").await;
    b.client.execute("window.__berthNoReload = 'still here'; return null;", vec![]).await.unwrap();
    b.wait_css("tr[data-user='carol'] button[data-action='approve']").await.click().await.unwrap();
    b.wait_css("tr[data-user='carol'] [data-status='approved']").await;
    let marker = b.client.execute("return window.__berthNoReload || null;", vec![]).await.unwrap();
    assert_eq!(marker, serde_json::json!("still here"), "approving must not reload the page");
    b.screenshot("4-admin-approved").await;
    b.log_out().await;

    // Carol logs in and is greeted on her dashboard.
    b.log_in(&base, "carol", "carol-password-long").await;
    b.wait_path("/dashboard").await;
    let greeting = b.wait_css("#greeting").await.text().await.unwrap();
    assert_eq!(greeting, "Hello, carol!");
    b.screenshot("5-dashboard").await;

    // Wrong passwords are answered on the page itself.
    b.log_out().await;
    b.log_in(&base, "carol", "not-carols-password").await;
    let error = b.wait_css("#login-form .error").await.text().await.unwrap();
    assert_eq!(error, "Wrong username or password.");
    b.screenshot("6-login-error").await;

    b.client.close().await.unwrap();
}

#[tokio::test]
async fn start_workspace_watch_it_run_and_stop_it() {
    let run = run_id();
    let cleanup = DockerCleanup(format!("io.berth.test=e2e-{run}"));
    let portal = Portal::with_test_workspaces(&cleanup, 30000).await;
    let user = format!("dora-{run}");
    portal.cli(&["user", "add", &user, "--password-stdin"], "dora-password-long\n");
    let b = Browser::start("workspace").await;

    b.log_in(&portal.base, &user, "dora-password-long").await;
    b.wait_path("/dashboard").await;
    b.wait_css("#workspace-state[data-state='absent']").await;
    b.screenshot("1-absent").await;
    b.client.execute("window.__berthNoReload = 'still here'; return null;", vec![]).await.unwrap();
    b.wait_css("#workspace button[data-action='start']").await.click().await.unwrap();

    // Live progress without a reload, until Docker says running.
    b.wait_css("#workspace-steps").await;
    b.wait_css("#workspace-state[data-state='running']").await;
    let port = b.wait_css("#ssh-port").await.text().await.unwrap();
    assert_eq!(port, "30022", "slot 0 of the block at 30000");
    let command = b.wait_css("#ssh-command").await.prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(command, format!("ssh -p 30022 {user}@127.0.0.1"));
    // VNC and RDP stay on the server's loopback: the card offers the tunnel instead.
    let tunnel = b.wait_css("#tunnel-command").await.prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(tunnel, format!("ssh -p 30022 -L 5901:localhost:5901 -L 3389:localhost:3389 {user}@127.0.0.1"));
    // These workspaces run in plain isolation: the card says Docker inside is off.
    let isolation = b.wait_css("#isolation").await;
    assert_eq!(isolation.attr("data-docker-inside").await.unwrap().as_deref(), Some("off"));
    assert_eq!(isolation.text().await.unwrap(), "Isolation: plain · Docker inside: off");
    let marker = b.client.execute("return window.__berthNoReload || null;", vec![]).await.unwrap();
    assert_eq!(marker, serde_json::json!("still here"), "status updates arrive without a page reload");
    // Every service port answers in the busybox stand-in image.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let steps = b.wait_css("#workspace-steps").await.text().await.unwrap();
        if steps.contains("SSH answering") && !steps.contains("◐") && !steps.contains("○") {
            assert!(!steps.contains("✕"), "{steps}");
            break;
        }
        assert!(Instant::now() < deadline, "services not answering: {steps}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.screenshot("2-running").await;

    b.wait_css("#workspace button[data-action='stop']").await.click().await.unwrap();
    b.wait_css("#workspace-state[data-state='stopped']").await;
    b.screenshot("3-stopped").await;
    b.client.close().await.unwrap();
    drop(portal);
}

/// How often the page has called the `workspace_status` server function (Resource Timing).
const WORKSPACE_STATUS_CALLS: &str =
    "return performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname === '/api/workspace').length;";

#[tokio::test]
async fn the_dashboard_is_pushed_its_workspace_not_polling() {
    let run = run_id();
    let cleanup = DockerCleanup(format!("io.berth.test=e2e-{run}"));
    let portal = Portal::with_test_workspaces(&cleanup, 35000).await;
    let user = format!("pia-{run}");
    portal.cli(&["user", "add", &user, "--password-stdin"], "pia-password-long\n");
    let b = Browser::start("live").await;

    b.log_in(&portal.base, &user, "pia-password-long").await;
    b.wait_path("/dashboard").await;
    b.wait_css("body[data-hydrated='true']").await;
    b.wait_css("#workspace-state[data-state='absent']").await;
    b.client.execute("window.__berthNoReload = 'still here'; return null;", vec![]).await.unwrap();
    let calls = || async { b.client.execute(WORKSPACE_STATUS_CALLS, vec![]).await.unwrap().as_u64().unwrap() };
    // Reaching the dashboard may ask once (after a client-side navigation); then nothing more.
    let before = calls().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = calls().await;
    assert!(after <= 1, "the dashboard asked {after} times");
    assert_eq!(after, before, "no poll within 5 s");

    // Started from another process, the workspace shows as running on the open page: Docker's
    // events reach Berth, which pushes the new view (the fallback poll would ask the server).
    portal.cli(&["workspace", "start", &user], "");
    b.client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#workspace-state[data-state='running']"))
        .await
        .expect("the running state is pushed to the open dashboard");
    assert_eq!(b.wait_css("#ssh-port").await.text().await.unwrap(), "35022");
    assert_eq!(calls().await, before, "pushed, not asked for");
    let marker = b.client.execute("return window.__berthNoReload || null;", vec![]).await.unwrap();
    assert_eq!(marker, serde_json::json!("still here"), "no reload");
    b.screenshot("1-running-pushed").await;
    portal.cli(&["workspace", "stop", &user], "");
    b.client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#workspace-state[data-state='stopped']"))
        .await
        .expect("the stopped state is pushed");
    assert_eq!(calls().await, before, "still not asked for");
    b.client.close().await.unwrap();
    drop(portal);
}

#[tokio::test]
async fn every_step_works_without_javascript() {
    let run = run_id();
    let cleanup = DockerCleanup(format!("io.berth.test=e2e-{run}"));
    let portal = Portal::with_test_workspaces(&cleanup, 19000).await;
    let user = format!("nojs-{run}");
    let b = Browser::without_javascript("no-javascript").await;
    let base = portal.base.clone();

    // Sign up with a plain form post.
    b.client.goto(&format!("{base}/signup")).await.unwrap();
    b.fill("#signup-form input[name=username]", &user).await;
    b.fill("#signup-form input[name=email]", "nojs@lab.example.org").await;
    b.fill("#signup-form input[name=password]", "nojs-password-long").await;
    b.submit("#signup-form").await;
    b.wait_path("/pending").await;
    // With scripts on, the wasm would have hydrated the page well within this pause.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hydrated = b.client.find(Locator::Css("body[data-hydrated]")).await;
    assert!(hydrated.is_err(), "no script ran: the page was never hydrated");
    b.screenshot("1-pending").await;
    portal.cli(&["user", "approve", &user], "");

    // Log in, land on the dashboard, start the workspace: each a full page load.
    b.client.goto(&format!("{base}/login")).await.unwrap();
    b.fill("#login-form input[name=username]", &user).await;
    b.fill("#login-form input[name=password]", "nojs-password-long").await;
    b.submit("#login-form").await;
    b.wait_path("/dashboard").await;
    b.wait_css("#workspace-state[data-state='absent']").await;
    b.wait_css("#workspace button[data-action='start']").await.click().await.unwrap();
    b.reload_until("#workspace-state[data-state='running']").await;
    assert_eq!(b.wait_css("#ssh-port").await.text().await.unwrap(), "19022");
    b.screenshot("2-running").await;
    b.wait_css("#workspace button[data-action='stop']").await.click().await.unwrap();
    b.wait_path("/dashboard").await;
    b.reload_until("#workspace-state[data-state='stopped']").await;
    b.screenshot("3-stopped").await;

    // And log out.
    b.log_out().await;
    assert!(b.client.find(Locator::Css("body[data-hydrated]")).await.is_err());
    b.client.close().await.unwrap();
    drop(portal);
}

#[tokio::test]
async fn a_test_that_panics_leaves_no_browser_running() {
    let b = Browser::start("panicking").await;
    let profile_arg = b._chromium.0.clone();
    b.client.goto("about:blank").await.unwrap();
    let running = processes_with_arg(&profile_arg);
    assert!(running.len() > 1, "Chromium and its helpers run with this test's profile: {running:?}");
    // What a failing test does: panics holding the browser, never closing its session.
    let failed = tokio::spawn(async move {
        let _held = b;
        panic!("a browser test failed");
    })
    .await;
    assert!(failed.unwrap_err().is_panic());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with_arg(&profile_arg).is_empty() {
        assert!(Instant::now() < deadline, "Chromium outlived the test: {:?}", processes_with_arg(&profile_arg));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// oidc-provider-mock from .tools/venv (make test installs it), killed on drop.
async fn start_mock_provider(users: &[serde_json::Value]) -> (String, Guard) {
    let port = free_port();
    let venv = workspace_root().join(".tools/venv/bin/python");
    let python = if venv.exists() { venv } else { PathBuf::from("python3") };
    let mut cmd = Command::new(python);
    cmd.args(["-m", "oidc_provider_mock", "--port", &port.to_string()]);
    for user in users {
        cmd.args(["--user-claims", &user.to_string()]);
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("oidc-provider-mock");
    let guard = Guard(child);
    let issuer = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{issuer}/.well-known/openid-configuration")).await;
    (issuer, guard)
}

#[tokio::test]
async fn single_sign_on_first_login_waits_for_approval_then_dashboard() {
    let (issuer, _provider) =
        start_mock_provider(&[serde_json::json!({"sub": "u-frank", "preferred_username": "frank", "email": "frank@lab.example.org"})]).await;
    let extra: Vec<(String, String)> = vec![
        ("BERTH_OIDC_ISSUER".into(), issuer.clone()),
        ("BERTH_OIDC_CLIENT_ID".into(), "berth".into()),
        ("BERTH_OIDC_CLIENT_SECRET".into(), "berth-secret".into()),
        ("BERTH_OIDC_NAME".into(), "Lab SSO".into()),
    ];
    let portal = Portal::start_with(&extra).await;
    portal.cli(&["user", "add", "root-admin", "--admin", "--password-stdin"], "admin-password-long\n");
    let b = Browser::start("sso").await;
    let base = portal.base.clone();

    b.open(&format!("{base}/login")).await;
    b.wait_css("a[data-provider='sso']").await.click().await.unwrap();
    // The provider's own page: pick the predefined user.
    b.wait_css("button[name='sub'][value='u-frank']").await;
    b.screenshot("1-provider").await;
    b.wait_css("button[name='sub'][value='u-frank']").await.click().await.unwrap();
    b.wait_path("/pending").await;
    b.wait_css("#pending").await;
    b.screenshot("2-pending").await;

    b.log_in(&base, "root-admin", "admin-password-long").await;
    b.wait_path("/admin").await;
    b.wait_css("tr[data-user='frank'] button[data-action='approve']").await.click().await.unwrap();
    b.wait_css("tr[data-user='frank'] [data-status='approved']").await;
    b.log_out().await;

    b.open(&format!("{base}/login")).await;
    b.wait_css("a[data-provider='sso']").await.click().await.unwrap();
    b.wait_css("button[name='sub'][value='u-frank']").await.click().await.unwrap();
    b.wait_path("/dashboard").await;
    let greeting = b.wait_css("#greeting").await.text().await.unwrap();
    assert_eq!(greeting, "Hello, frank!");
    b.screenshot("3-dashboard").await;
    b.client.close().await.unwrap();
}
