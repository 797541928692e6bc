//! Side doors between workspaces, tried from the attacker's seat: inside a real workspace (the
//! slim image, in `plain` isolation: what this engine allows without handing users the host).
//! Alice scans for everything that is not hers — Bob's workspace on every port, guacd as the
//! production stack runs it, the portal — and finds nothing; the same scan does find what is
//! open (her own services, a guacd listening the old way), so it can fail.

use std::time::{Duration, Instant};

use berth::config::Isolation;
use testkit::docker::{docker, image_exists, Cleanup, TEST_IMAGE};
use testkit::service::{approved_user, backend, config, SYSTEM};
use testkit::{hex, username, Backend as DbBackend, Browser, TestDb, TestServer};

fn image() -> String {
    std::env::var("BERTH_TEST_WORKSPACE_IMAGE").unwrap_or_else(|_| "berth/workspace:slim".into())
}

/// Tries a TCP connection to every target (`ip:port,port` or `ip:all`) at once; prints the
/// ones that connected as a JSON list. Refused ports fail at once, dropped ones after a second.
const PROBE: &str = r#"
import asyncio, json, sys
async def probe(ip, port, sem):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 1.0)
            w.close()
            return "%s:%d" % (ip, port)
        except Exception:
            return None
async def main():
    sem = asyncio.Semaphore(3000)
    jobs = []
    for target in sys.argv[1:]:
        ip, ports = target.rsplit(":", 1)
        numbers = range(1, 65536) if ports == "all" else [int(p) for p in ports.split(",")]
        jobs += [probe(ip, p, sem) for p in numbers]
    print(json.dumps(sorted(x for x in await asyncio.gather(*jobs) if x)))
asyncio.run(main())
"#;

/// HTTP statuses of argv[1] and argv[2] without the app secret, then of argv[1] with argv[3].
const APP_STATUS: &str = r#"
import json, sys, urllib.request, urllib.error
def status(url, secret=None):
    request = urllib.request.Request(url, headers={"X-Berth-App-Secret": secret} if secret else {})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
print(json.dumps([status(sys.argv[1]), status(sys.argv[2]), status(sys.argv[1], sys.argv[3])]))
"#;

/// What connected, seen from inside `container` as the workspace user `uid`.
fn open_from(container: &str, uid: u32, targets: &[String]) -> Vec<String> {
    let mut args = vec!["exec".to_string(), "-u".into(), uid.to_string(), container.into(), "python3".into(), "-c".into(), PROBE.into()];
    args.extend(targets.iter().cloned());
    let out = std::process::Command::new("docker").args(&args).output().expect("docker exec");
    assert!(out.status.success(), "probe in {container}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("probe output {:?}: {e}", String::from_utf8_lossy(&out.stdout)))
}

fn ip_on(container: &str, network: &str) -> String {
    let ip = docker(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"), container]);
    assert!(!ip.is_empty() && ip != "<no value>", "{container} has no address on {network}");
    ip
}

/// The production stack as shipped: guacd binds the address it has when it starts (its edge
/// address; the stand-in below does the same), and Traefik has no API entry point that a
/// workspace on a network Traefik joins could reach.
#[test]
fn the_shipped_stack_leaves_no_door_open_to_workspace_networks() {
    let docker_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
    let compose = std::fs::read_to_string(docker_dir.join("compose.yaml")).unwrap();
    assert!(
        compose.contains(r#"exec /opt/guacamole/sbin/guacd -b "$$(hostname -i | cut -d" " -f1)""#),
        "guacd must listen only on its edge address"
    );
    let traefik = std::fs::read_to_string(docker_dir.join("traefik/traefik.yml")).unwrap();
    assert!(!traefik.lines().any(|l| l.starts_with("api:")), "no Traefik API or dashboard on any entry point");
}

/// A busybox container on `network` serving HTTP on `listen` (a shell expression).
fn stand_in(cleanup: &Cleanup, name: &str, network: &str, listen: &str) {
    let id = docker(&["run", "-d", "--name", name, "--label", &cleanup.label, "--network", network, "--entrypoint", "/bin/sh",
        TEST_IMAGE, "-c", &format!("mkdir -p /www && exec httpd -f -h /www -p {listen}")]);
    assert!(!id.is_empty(), "stand-in {name} did not start");
}

#[tokio::test]
async fn a_workspace_reaches_nothing_of_anyone_else() {
    let image = image();
    assert!(image_exists(&image), "{image} missing: run `make image` (make test does)");
    let cleanup = Cleanup::new();
    let run = hex(4);

    // The production stack's edge network, with guacd listening as docker/compose.yaml makes it
    // (on the address it has when it starts: its edge address), the portal there, and a guacd
    // listening on every address as it did before (the control: that one the scan must find).
    let edge = format!("berth-test-edge-{run}");
    assert!(!docker(&["network", "create", "--label", &cleanup.label, &edge]).is_empty());
    let guacd = format!("berth-test-guacd-{run}");
    let guacd_open = format!("berth-test-guacd-open-{run}");
    let portal = format!("berth-test-portal-{run}");
    stand_in(&cleanup, &guacd, &edge, r#""$(hostname -i | cut -d' ' -f1)":4822"#);
    stand_in(&cleanup, &guacd_open, &edge, "4822");
    stand_in(&cleanup, &portal, &edge, "3000");
    // The real portal, on this host, as `make run` serves it.
    let portal_db = TestDb::new(DbBackend::Sqlite).await;
    let berth = TestServer::start(&portal_db).await;

    let db = TestDb::new(DbBackend::Sqlite).await;
    let mut config = config(&cleanup, &db.dir.path().join("storage"), 13000);
    config.workspace_image = image.clone();
    config.workspace.isolation = Isolation::Plain;
    config.workspace.attach_containers = vec![guacd.clone(), guacd_open.clone()];
    let b = backend(&config, &db.url).await;
    let (alice, bob) = (username("alice"), username("bob"));
    let alice_owner = approved_user(&b, &alice).await;
    let bob_owner = approved_user(&b, &bob).await;
    let w = b.workspaces.clone();
    w.start(SYSTEM, &alice_owner).await.expect("alice's workspace starts in plain isolation");
    w.start(SYSTEM, &bob_owner).await.expect("bob's workspace starts");
    let (alice_c, bob_c) = (format!("workspace-{alice}"), format!("workspace-{bob}"));
    let (alice_net, bob_net) = (format!("berth-ws-{alice}"), format!("berth-ws-{bob}"));
    let (alice_uid, bob_uid) = (10000, 10001);
    let (alice_ip, bob_ip) = (ip_on(&alice_c, &alice_net), ip_on(&bob_c, &bob_net));

    // Plain is a real mode: the image's services run, Docker inside does not, and the card says so.
    let deadline = Instant::now() + Duration::from_secs(180);
    let own = vec![format!("{alice_ip}:22,5901,3389,6080,8888,6006")];
    loop {
        let open = open_from(&alice_c, alice_uid, &own);
        if open.len() == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "alice's services did not all come up: {open:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let view = w.view(SYSTEM, &alice_owner).await.unwrap();
    let isolation = view.isolation.expect("the card knows the isolation mode");
    assert_eq!((isolation.mode.as_str(), isolation.docker_inside, isolation.host_root), ("plain", false, false));
    let dockerd = std::process::Command::new("docker").args(["exec", &alice_c, "pgrep", "-x", "dockerd"]).output().unwrap();
    assert!(!dockerd.status.success(), "no dockerd in plain isolation");
    // Bob's services are up too (seen from his own seat), so a closed door below means closed.
    let deadline = Instant::now() + Duration::from_secs(180);
    while open_from(&bob_c, bob_uid, &[format!("{bob_ip}:22,8888")]).len() != 2 {
        assert!(Instant::now() < deadline, "bob's services did not come up");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // VS Code's and TensorBoard's ports answer nobody without the app secret that only the
    // owner's Traefik route sends, not even the workspace's own user; with it, TensorBoard answers.
    let secret = berth::crypto::AppSecrets::new(&[42; 32]).for_user(&alice);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let statuses = docker(&["exec", "-u", &alice_uid.to_string(), &alice_c, "python3", "-c", APP_STATUS,
            &format!("http://{alice_ip}:6006/"), &format!("http://{alice_ip}:8443/"), &secret]);
        if statuses.ends_with(", 200]") {
            assert_eq!(statuses, "[403, 403, 200]", "TensorBoard and VS Code without the secret, TensorBoard with it");
            break;
        }
        assert!(Instant::now() < deadline, "TensorBoard never answered through its gate: {statuses}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Each user sees only their own TensorBoard directory under the shared mount.
    let listed = docker(&["exec", "-u", &alice_uid.to_string(), &alice_c, "ls", "-A", "/shared/tensorboard"]);
    assert_eq!(listed, alice, "alice sees only her own TensorBoard directory");
    let listed = docker(&["exec", &alice_c, "ls", "-A", "/shared/tensorboard"]);
    assert_eq!(listed, alice, "root in her workspace neither");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let bob_tb = std::fs::metadata(db.dir.path().join("storage/shared/tensorboard").join(&bob)).unwrap();
    assert_eq!((bob_tb.permissions().mode() & 0o777, bob_tb.uid()), (0o700, bob_uid), "per-user directories are the user's, 0700");
    let bob_home = std::fs::metadata(db.dir.path().join("storage/homes").join(&bob)).unwrap();
    assert_eq!(bob_home.uid(), bob_uid);

    // The scan, from alice's seat.
    let gateway = docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", &alice_net]);
    let bob_ports = w.view(SYSTEM, &bob_owner).await.unwrap().ports.unwrap();
    let guacd_on_alice = ip_on(&guacd, &alice_net);
    let guacd_open_on_alice = ip_on(&guacd_open, &alice_net);
    let targets = vec![
        format!("{bob_ip}:all"),
        format!("{guacd_on_alice}:all"),
        format!("{}:all", ip_on(&guacd, &edge)),
        format!("{}:all", ip_on(&portal, &edge)),
        format!("{guacd_open_on_alice}:4822"),
        // The host: the portal `make run` serves, and Bob's published ports.
        format!("{gateway}:{},{},{},{}", berth.port, bob_ports.ssh, bob_ports.vnc, bob_ports.rdp),
    ];
    let open = open_from(&alice_c, alice_uid, &targets);
    assert_eq!(open, vec![format!("{guacd_open_on_alice}:4822")], "only the control (a guacd listening on every address) answers");
    drop(berth);
}

/// A mode that lets users become root on the host is said wherever an admin looks: one WARN
/// line in the log, `berth config`, `berth workspace list`, a banner on the admin page, and next
/// to a GPU list, which such a mode cannot enforce. Plain says none of it.
#[tokio::test]
async fn a_mode_that_gives_users_the_host_says_so_everywhere() {
    for (mode, warns) in [("capabilities", true), ("plain", false)] {
        let cleanup = Cleanup::new();
        let db = TestDb::new(DbBackend::Sqlite).await;
        let mut env = testkit::docker::env(&cleanup, &db.dir.path().join("storage"), 13500);
        env.retain(|(k, _)| k != "BERTH_WORKSPACE__ISOLATION");
        env.push(("BERTH_WORKSPACE__ISOLATION".into(), mode.into()));
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let log = db.dir.path().join("berth.log");
        let server = TestServer::start_logging(&db, &extra, Some(&log)).await;
        let cli_ok = |args: &[&str], stdin: &str| {
            let out = server.cli(args, stdin);
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out
        };
        cli_ok(&["user", "add", "root-admin", "--admin", "--password-stdin"], "admin-password-long\n");
        let carol_name = username("carol");
        cli_ok(&["user", "add", &carol_name, "--password-stdin"], "carol-password-long\n");
        cli_ok(&["workspace", "start", &carol_name], "");

        let warning = format!("workspace.isolation = {mode}: every workspace user can become root on this host");
        let config = String::from_utf8(cli_ok(&["config"], "").stdout).unwrap();
        assert_eq!(config.contains(&format!("# WARNING: {warning}")), warns, "berth config ({mode}):\n{config}");
        let list = cli_ok(&["workspace", "list"], "");
        let stderr = String::from_utf8_lossy(&list.stderr);
        assert_eq!(stderr.contains(&format!("WARNING: {warning}")), warns, "workspace list ({mode}): {stderr}");
        assert!(String::from_utf8_lossy(&list.stdout).contains(&carol_name), "the list itself is unchanged");
        let limits = cli_ok(&["workspace", "limits", &carol_name, "--gpus", "0"], "");
        assert_eq!(String::from_utf8_lossy(&limits.stderr).contains("cannot hold a GPU list"), warns, "limits ({mode})");

        let admin = Browser::new(&server);
        assert!(admin.log_in("root-admin", "admin-password-long").await.status().is_success());
        let page = admin.get("/admin").await.text().await.unwrap();
        assert!(page.contains(&format!("data-mode=\"{mode}\"")), "admin page names the mode ({mode})");
        assert_eq!(page.contains("can become root on this host"), warns, "admin banner ({mode})");
        let carol = Browser::new(&server);
        assert!(carol.log_in(&carol_name, "carol-password-long").await.status().is_success());
        let page = carol.get("/dashboard").await.text().await.unwrap();
        assert!(page.contains("GPUs: 0"), "the card shows the GPU list");
        assert_eq!(page.contains("not enforced in this isolation mode"), warns, "GPU note ({mode})");

        let said = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = said.lines().filter(|l| l.contains(&warning)).collect();
        assert_eq!(lines.len(), usize::from(warns), "one WARN line at start ({mode}): {lines:?}");
        assert!(lines.iter().all(|l| l.contains("WARN")), "{lines:?}");
        let out = server.cli(&["workspace", "stop", &carol_name], "");
        assert!(out.status.success());
    }
}
