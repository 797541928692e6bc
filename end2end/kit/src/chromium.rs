//! Headless Chromium driven through chromedriver (WebDriver), one browser and profile per test,
//! every process of it killed when the fixture is dropped (also when the test panics).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::ChildGuard;

pub struct Chromium {
    pub client: Client,
    shots: PathBuf,
    // Fields drop in this order: the browser processes go before their profile directory.
    reaper: ChromiumReaper,
    _profile: tempfile::TempDir,
    _driver: ChildGuard,
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
pub fn processes_with_arg(arg: &str) -> Vec<i32> {
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

impl Chromium {
    /// A browser for the test `test` (its screenshots go to target/e2e-screenshots/`test`).
    pub async fn start(test: &str) -> Chromium {
        Self::launch(test, true).await
    }

    /// A browser with JavaScript switched off: the pages must work as plain HTML forms.
    pub async fn without_javascript(test: &str) -> Chromium {
        Self::launch(test, false).await
    }

    async fn launch(test: &str, javascript: bool) -> Chromium {
        let port = crate::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt install chromium-driver; make test does)");
        let driver = ChildGuard(driver);
        crate::wait_for(&format!("http://127.0.0.1:{port}/status")).await;
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
        let shots = crate::binary::target_dir().join("e2e-screenshots").join(test);
        std::fs::create_dir_all(&shots).unwrap();
        let reaper = ChromiumReaper(format!("--user-data-dir={}", profile.path().display()));
        Chromium { client, shots, reaper, _profile: profile, _driver: driver }
    }

    /// The command-line argument that marks this browser's processes (see [`processes_with_arg`]).
    pub fn profile_arg(&self) -> &str {
        &self.reaper.0
    }

    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    /// Whether `css` matches anything on the page now (no waiting).
    pub async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Opens a page and waits until the wasm has hydrated it.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
        self.wait_css("body[data-hydrated='true']").await;
    }

    pub async fn fill(&self, css: &str, text: &str) {
        self.wait_css(css).await.send_keys(text).await.unwrap();
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    pub async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.path().await != path {
            assert!(Instant::now() < deadline, "expected {path}, still at {}", self.path().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn submit(&self, form: &str) {
        self.wait_css(&format!("{form} button[type=submit]")).await.click().await.unwrap();
    }

    /// Without script a page never updates itself: reload until `css` shows (a minute at most).
    pub async fn reload_until(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.has(css).await {
            assert!(Instant::now() < deadline, "{css} never showed");
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.client.refresh().await.unwrap();
        }
    }

    /// Whether the current page runs scripts: inserts a script (with the page's nonce, so a
    /// content security policy does not stand in the way) and reports whether it ran. WebDriver
    /// runs this probe also where the page's own scripts are switched off: `false` is positive
    /// proof that nothing on this page (its hydration included) can run.
    pub async fn scripts_run(&self) -> bool {
        let ran = self
            .client
            .execute(
                "const probe = document.createElement('script');
                 const nonced = document.querySelector('script[nonce]');
                 if (nonced) probe.nonce = nonced.nonce;
                 probe.textContent = 'window.__berthScriptProbe = (window.__berthScriptProbe || 0) + 1;';
                 const before = window.__berthScriptProbe || 0;
                 document.head.appendChild(probe);
                 probe.remove();
                 return (window.__berthScriptProbe || 0) === before + 1;",
                vec![],
            )
            .await
            .expect("run the script probe");
        ran.as_bool().expect("a boolean")
    }

    /// The dashboard's progress steps, in order: (data-step, data-state). Read in one go, so a
    /// re-render between two reads cannot mix two versions of the list.
    pub async fn step_states(&self) -> Vec<(String, String)> {
        let steps = self
            .client
            .execute(
                "return [...document.querySelectorAll('#workspace-steps li[data-step]')].map(li => [li.dataset.step, li.dataset.state]);",
                vec![],
            )
            .await
            .unwrap();
        let steps: Vec<(String, String)> = serde_json::from_value(steps).expect("pairs of strings");
        for (name, state) in &steps {
            assert!(["pending", "running", "done", "failed"].contains(&state.as_str()), "step {name:?}: data-state {state:?}");
        }
        steps
    }

    pub async fn log_in(&self, base: &str, user: &str, password: &str) {
        self.open(&format!("{base}/login")).await;
        self.fill("#login-form input[name=username]", user).await;
        self.fill("#login-form input[name=password]", password).await;
        self.wait_css("#login-form button[type=submit]").await.click().await.unwrap();
    }

    pub async fn log_out(&self) {
        self.wait_css("nav.topnav button[type=submit]").await.click().await.unwrap();
        self.wait_path("/login").await;
    }
}
