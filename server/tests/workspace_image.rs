//! The real workspace image (slim profile, `make image`) started through Berth itself: SSH with
//! the user's password, VNC, Jupyter with and without its token, the app gate in front of
//! TensorBoard and code-server, passwords regenerated while it runs, Docker inside, the services
//! the image declares (steps, links, "ready", a broken one shown failed with its own log lines),
//! and a home that survives stop, reset and start.
//!
//! `BERTH_TEST_WORKSPACE_IMAGE` picks another tag of the image (default `berth/workspace:slim`).

use std::process::Command;
use std::time::{Duration, Instant};

use app::model::StepState;
use berth::workspace::{Credential, CredentialApplied};
use testkit::docker::{docker, image_exists, try_docker, Cleanup};
use testkit::service::{approved_user, backend, config, SYSTEM};
use testkit::{username, Backend as DbBackend, TestDb};
use tokio::io::AsyncReadExt;

fn image() -> String {
    std::env::var("BERTH_TEST_WORKSPACE_IMAGE").unwrap_or_else(|_| "berth/workspace:slim".into())
}

/// The secret key `testkit::service::backend` gives Berth.
const KEY: [u8; 32] = [42; 32];
/// sshpass's exit status for a password the server refused.
const SSHPASS_WRONG_PASSWORD: i32 = 5;

struct Ssh {
    port: u16,
    user: String,
    password: String,
}

impl Ssh {
    fn run(&self, command: &str) -> std::process::Output {
        Command::new("sshpass")
            .args(["-p", &self.password, "ssh", "-p", &self.port.to_string(), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(command)
            .output()
            .expect("sshpass + ssh (make test installs them)")
    }

    /// Retries until the command succeeds (services come up one by one after a start).
    fn until_ok(&self, command: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let out = self.run(command);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            assert!(Instant::now() < deadline, "{command}: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

async fn http_status(url: &str, token: Option<&str>) -> Option<u16> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(5)).build().unwrap();
    let mut request = http.get(url);
    if let Some(t) = token {
        request = request.header("Authorization", format!("token {t}"));
    }
    request.send().await.ok().map(|r| r.status().as_u16())
}

/// A request as it reaches the app gate, with or without `X-Berth-App-Secret`.
async fn gate_status(url: &str, secret: Option<&str>) -> Option<u16> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(5)).build().unwrap();
    let mut request = http.get(url);
    if let Some(s) = secret {
        request = request.header("X-Berth-App-Secret", s);
    }
    request.send().await.ok().map(|r| r.status().as_u16())
}

async fn until_gate_status(url: &str, secret: Option<&str>, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = gate_status(url, secret).await;
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{url}: wanted {want}, got {got:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The obfuscated VNC password file as base64, and what `vncpasswd -f` makes of `password`.
fn vnc_file_and_expected(container: &str, user: &str, password: Option<&str>) -> (String, Option<String>) {
    let file = docker(&["exec", container, "base64", &format!("/home/{user}/.vnc/passwd")]);
    let expected = password.map(|p| docker(&["exec", container, "sh", "-c", &format!("printf '%s\\n' '{p}' | vncpasswd -f | base64")]));
    (file, expected)
}

async fn until_status(url: &str, token: Option<&str>, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = http_status(url, token).await;
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{url}: wanted {want}, got {got:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn slim_workspace_image_through_berth() {
    let image = image();
    assert!(image_exists(&image), "{image} missing: run `make image` (make test does)");
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let mut config = config(&cleanup, &db.dir.path().join("storage"), 23000);
    config.workspace_image = image.clone();
    // This engine refuses --privileged; the image's Docker-in-Docker runs with all capabilities.
    config.workspace.isolation = berth::config::Isolation::Capabilities;
    config.workspace.stop_timeout_seconds = 10;
    // Routes written (to a directory nobody reads), so the card has launch links.
    config.traefik_dir = Some(db.dir.path().join("traefik"));
    let b = backend(&config, &db.url).await;
    let user = username("img");
    let owner = approved_user(&b, &user).await;
    let w = b.workspaces.clone();

    w.start(SYSTEM, &owner).await.expect("start from the real image");
    let view = w.view(SYSTEM, &owner).await.unwrap();
    let ports = view.ports.unwrap();
    let record = w.record(&owner).await.unwrap().unwrap();
    let ssh = Ssh { port: ports.ssh, user: user.clone(), password: record.secrets.ssh_password.clone() };

    // SSH with the user's password; UID/GID as Berth configured (uid_base + slot 0).
    let ids = ssh.until_ok("id -u; id -g; echo kept > ~/persist; stat -c %U ~/persist", Duration::from_secs(180));
    assert_eq!(ids.lines().collect::<Vec<_>>(), vec!["10000", "10000", user.as_str()]);

    // `berth-gpus` reads the board GPU sharing writes under the storage's shared directory.
    assert!(ssh.until_ok("berth-gpus", Duration::from_secs(10)).contains("no GPU board here"));
    let board = db.dir.path().join("storage/shared/.berth");
    std::fs::create_dir_all(&board).unwrap();
    std::fs::write(board.join("gpus.txt"), "GPUs on this server (open)\n  GPU 0  A100  claimed by ada until 14:05 UTC\n").unwrap();
    assert_eq!(ssh.until_ok("berth-gpus", Duration::from_secs(10)), "GPUs on this server (open)\n  GPU 0  A100  claimed by ada until 14:05 UTC");

    // VNC answers with an RFB greeting on the published port.
    let mut greeting = [0u8; 12];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", ports.vnc)).await {
            if tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut greeting)).await.is_ok_and(|r| r.is_ok()) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "VNC never greeted");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(greeting.starts_with(b"RFB 003."), "{:?}", String::from_utf8_lossy(&greeting));

    // Jupyter and TensorBoard, reached on the user's network as Traefik reaches them.
    let ip = docker(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"berth-ws-{user}\").IPAddress}}}}"),
        &format!("workspace-{user}")]);
    let token = record.secrets.jupyter_token.as_str();
    until_status(&format!("http://{ip}:8888/api/contents"), Some(token), 200, Duration::from_secs(180)).await;
    assert_eq!(http_status(&format!("http://{ip}:8888/api/contents"), None).await, Some(403), "no token, no API");
    assert_eq!(http_status(&format!("http://{ip}:8888/api/contents"), Some("wrong-token")).await, Some(403));

    // The app gate: TensorBoard and code-server only for requests with the user's app secret,
    // which Berth derives from its key and only the user's Traefik routes send.
    let app_secret = berth::crypto::AppSecrets::new(&KEY).for_user(&user);
    assert_eq!(record.secrets.app_secret, app_secret);
    assert_eq!(app_secret.len(), 64);
    let tensorboard = format!("http://{ip}:6006/");
    until_gate_status(&tensorboard, Some(&app_secret), 200, Duration::from_secs(120)).await;
    assert_eq!(gate_status(&tensorboard, None).await, Some(403), "no secret, no TensorBoard");
    assert_eq!(gate_status(&tensorboard, Some(&"0".repeat(64))).await, Some(403), "a wrong secret");
    assert_eq!(gate_status(&tensorboard, Some(&app_secret[..63])).await, Some(403), "a prefix of the secret");
    let code = format!("http://{ip}:8443/");
    assert_eq!(gate_status(&code, None).await, Some(403), "no secret, no code-server");
    assert_eq!(gate_status(&code, Some(&app_secret)).await, Some(502), "let through, but slim has no code-server behind");
    // The image declares its services: slim has no code-server, so the card has neither a VS
    // Code step nor a VS Code link, and it is ready once every installed service answers (the
    // dashboard's probes ask TensorBoard through the gate).
    let view = until_view(&w, &owner, Duration::from_secs(180), "ready", |v| v.ready).await;
    let installed = w.installed_services(SYSTEM, &owner).unwrap().expect("the services are known");
    for program in ["sshd", "jupyter", "novnc", "tensorboard", "vnc", "app-gate", "dockerd"] {
        assert!(installed.iter().any(|p| p == program), "{program} missing from {installed:?}");
    }
    assert!(!installed.iter().any(|p| p == "code-server"), "slim has no code-server: {installed:?}");
    let answering: Vec<(&str, StepState)> =
        view.steps.iter().filter(|s| s.name.ends_with(" answering")).map(|s| (s.name.as_str(), s.state)).collect();
    assert_eq!(
        answering,
        vec![
            ("SSH answering", StepState::Done),
            ("Desktop (VNC) answering", StepState::Done),
            ("Remote desktop (RDP) answering", StepState::Done),
            ("Desktop in browser (noVNC) answering", StepState::Done),
            ("Jupyter answering", StepState::Done),
            ("TensorBoard answering", StepState::Done),
        ]
    );
    let links: Vec<&str> = view.apps.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(links, vec!["jupyter", "tensorboard", "desktop"], "no VS Code link");
    // Each service's output is in the container's log, its lines marked with its name.
    let log = docker_logs(&format!("workspace-{user}"));
    assert!(log.lines().any(|l| l.starts_with("[sshd] ")), "sshd's lines are in docker logs, prefixed: {log}");
    assert!(log.lines().any(|l| l.starts_with("[jupyter] ")), "so are Jupyter's");
    // Behind the gate, TensorBoard listens on loopback only: not on the user's network.
    let direct = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((ip.as_str(), 16006))).await;
    assert!(matches!(direct, Ok(Err(_))), "TensorBoard's own port answers from outside: {direct:?}");
    let container = format!("workspace-{user}");
    assert_eq!(docker(&["exec", &container, "stat", "-c", "%U %a", "/etc/berth/app-gate.conf"]), "root 600");

    // A new SSH password applies to the running workspace at once: the old one stops working.
    let started_at = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]);
    let old_password = record.secrets.ssh_password.clone();
    let applied = w.regenerate_credential(SYSTEM, &owner, Credential::SshPassword).await.expect("regenerate the SSH password");
    assert_eq!(applied, CredentialApplied::Now);
    let record = w.record(&owner).await.unwrap().unwrap();
    assert_ne!(record.secrets.ssh_password, old_password);
    let ssh = Ssh { port: ports.ssh, user: user.clone(), password: record.secrets.ssh_password.clone() };
    let old_ssh = Ssh { port: ports.ssh, user: user.clone(), password: old_password };
    let out = ssh.run("id -un");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user, "new password: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(old_ssh.run("true").status.code(), Some(SSHPASS_WRONG_PASSWORD), "the old password is refused");
    // Given on stdin: neither the container's nor any exec's configuration holds it.
    let inspected = docker(&["inspect", &container]);
    assert!(!inspected.contains(&record.secrets.ssh_password), "the new password shows in docker inspect");
    assert_eq!(docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]), started_at, "no restart");

    // The same for VNC: ~/.vnc/passwd now holds the new password.
    let (vnc_before, _) = vnc_file_and_expected(&container, &user, None);
    assert_eq!(w.regenerate_credential(SYSTEM, &owner, Credential::VncPassword).await.expect("regenerate VNC"), CredentialApplied::Now);
    let record = w.record(&owner).await.unwrap().unwrap();
    let (vnc_after, expected) = vnc_file_and_expected(&container, &user, Some(&record.secrets.vnc_password));
    assert_eq!(Some(vnc_after.clone()), expected, "~/.vnc/passwd is vncpasswd -f of the new password");
    assert_ne!(vnc_after, vnc_before);
    assert_eq!(docker(&["exec", &container, "stat", "-c", "%U %a", &format!("/home/{user}/.vnc/passwd")]), format!("{user} 600"));

    // Docker restarting this same container (its restart policy, a reboot) brings back the
    // environment with the old passwords; the new ones must survive that too.
    docker(&["restart", "-t", "10", &container]);
    // The entrypoint sets the passwords before supervisord starts sshd: once sshd greets, they
    // are what they will be.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut banner = [0u8; 4];
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", ports.ssh)).await {
            if tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut banner)).await.is_ok_and(|r| r.is_ok())
                && &banner == b"SSH-"
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "sshd never came back after the restart");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let out = ssh.run("true");
    assert!(out.status.success(), "the new password after a restart: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(old_ssh.run("true").status.code(), Some(SSHPASS_WRONG_PASSWORD), "the old password is still refused");
    assert_eq!(vnc_file_and_expected(&container, &user, None).0, vnc_after, "the new VNC password survives the restart");

    // Docker-in-Docker.
    let driver = ssh.until_ok("docker info --format '{{.Driver}}'", Duration::from_secs(120));
    assert!(!driver.is_empty(), "docker info answered inside the workspace");

    // A service broken from outside (its program no longer executable, and supervisord told to
    // restart it) shows failed, with its own last lines, once Berth looks again: a start of the
    // running workspace follows its services anew.
    docker(&["exec", &container, "chmod", "-x", "/opt/berth/venv/bin/tensorboard"]);
    // supervisorctl says the start failed (exit 1): that is the point.
    let _ = try_docker(&["exec", &container, "supervisorctl", "restart", "tensorboard"]);
    w.start(SYSTEM, &owner).await.unwrap();
    let failed = |v: &app::model::WorkspaceView| v.steps.iter().any(|s| s.name == "TensorBoard answering" && s.state == StepState::Failed);
    let view = until_view(&w, &owner, Duration::from_secs(120), "TensorBoard shown failed", failed).await;
    let detail = view.steps.iter().find(|s| s.name == "TensorBoard answering").and_then(|s| s.detail.clone()).unwrap_or_default();
    let (first, lines) = detail.split_once('\n').unwrap_or((detail.as_str(), ""));
    assert_eq!(first, "failed; its last lines:", "{detail}");
    assert!(lines.contains("/opt/berth/venv/bin/tensorboard") && lines.contains("Permission denied"), "its own words: {detail}");
    assert!(lines.lines().count() <= 20, "the last lines only: {detail}");
    assert!(!lines.contains("[tensorboard]") && !lines.contains("[sshd]") && !lines.contains("berth-entrypoint"), "only its lines, unprefixed: {detail}");
    let view = until_view(&w, &owner, Duration::from_secs(120), "SSH answering after the restart", |v| {
        v.steps.iter().any(|s| s.name == "SSH answering" && s.state == StepState::Done)
    })
    .await;
    assert!(!view.ready, "a failed service: not ready");

    // Stop, reset, start: the home and its owner survive, and the reset image's TensorBoard
    // runs again.
    w.stop(SYSTEM, &owner).await.unwrap();
    w.reset(SYSTEM, &owner).await.unwrap();
    w.stop(SYSTEM, &owner).await.unwrap();
    w.start(SYSTEM, &owner).await.unwrap();
    until_view(&w, &owner, Duration::from_secs(180), "ready after the reset", |v| v.ready).await;
    let after = ssh.until_ok("cat ~/persist; stat -c %U:%G ~/persist", Duration::from_secs(180));
    assert_eq!(after.lines().collect::<Vec<_>>(), vec!["kept".to_string(), format!("{user}:{user}")]);

    // Killed (no clean shutdown: supervisord's socket and every pid file left behind), then
    // started: every service comes back.
    docker(&["kill", &container]);
    w.start(SYSTEM, &owner).await.unwrap();
    until_view(&w, &owner, Duration::from_secs(180), "ready after a kill", |v| v.ready).await;
}

/// Asks for the owner's card until `done` holds (at most `within`).
async fn until_view(
    w: &berth::workspace::Workspaces,
    owner: &berth::workspace::Owner,
    within: Duration,
    what: &str,
    done: impl Fn(&app::model::WorkspaceView) -> bool,
) -> app::model::WorkspaceView {
    let deadline = Instant::now() + within;
    loop {
        let view = w.view(SYSTEM, owner).await.unwrap();
        if done(&view) {
            return view;
        }
        if Instant::now() >= deadline {
            let log = docker_logs(&format!("workspace-{}", owner.username));
            let tail: Vec<&str> = log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("{what}: never, the card says {:?}\nthe workspace's last log lines:\n{}", view.steps, tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `docker logs NAME`, stdout and stderr together.
fn docker_logs(name: &str) -> String {
    let out = Command::new("docker").args(["logs", name]).output().expect("docker logs");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
