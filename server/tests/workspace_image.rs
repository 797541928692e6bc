//! The real workspace image (slim profile, `make image`) started through Berth itself: SSH with
//! the user's password, VNC, Jupyter with and without its token, TensorBoard, Docker inside,
//! and a home that survives stop, reset and start.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::docker::{approved_user, backend, config, docker, username, Cleanup};
use support::{Backend as DbBackend, TestDb};
use tokio::io::AsyncReadExt;

const IMAGE: &str = "berth/workspace:slim";

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
    assert!(
        !docker(&["image", "inspect", "-f", "{{.Id}}", IMAGE]).is_empty(),
        "{IMAGE} missing: run `make image` (make test does)"
    );
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let mut config = config(&cleanup, &db.dir.path().join("storage"), 32000);
    config.workspace_image = IMAGE.into();
    // This engine refuses --privileged; the image's Docker-in-Docker runs with all capabilities.
    config.workspace.isolation = berth::config::Isolation::Capabilities;
    config.workspace.stop_timeout_seconds = 10;
    let b = backend(&config, &db.url).await;
    let user = username("img");
    approved_user(&b, &user).await;
    let w = b.workspaces.clone();

    w.start(&user).await.expect("start from the real image");
    let view = w.view(&user).await.unwrap();
    let ports = view.ports.unwrap();
    let account = b.accounts.find_by_name(&user).await.unwrap();
    let record = w.record(account.id).await.unwrap().unwrap();
    let ssh = Ssh { port: ports.ssh, user: user.clone(), password: record.secrets.ssh_password.clone() };

    // SSH with the user's password; UID/GID as Berth configured (uid_base + slot 0).
    let ids = ssh.until_ok("id -u; id -g; echo kept > ~/persist; stat -c %U ~/persist", Duration::from_secs(180));
    assert_eq!(ids.lines().collect::<Vec<_>>(), vec!["10000", "10000", user.as_str()]);

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
    until_status(&format!("http://{ip}:6006/"), None, 200, Duration::from_secs(120)).await;

    // Docker-in-Docker.
    let driver = ssh.until_ok("docker info --format '{{.Driver}}'", Duration::from_secs(120));
    assert!(!driver.is_empty(), "docker info answered inside the workspace");

    // Stop, reset, start: the home and its owner survive.
    w.stop(&user).await.unwrap();
    w.reset(&user).await.unwrap();
    w.stop(&user).await.unwrap();
    w.start(&user).await.unwrap();
    let after = ssh.until_ok("cat ~/persist; stat -c %U:%G ~/persist", Duration::from_secs(180));
    assert_eq!(after.lines().collect::<Vec<_>>(), vec!["kept".to_string(), format!("{user}:{user}")]);
}
