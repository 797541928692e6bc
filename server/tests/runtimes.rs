//! One lifecycle suite, run against each runtime: the plain Docker engine and a Swarm (a
//! single-node swarm the tests make on this engine, `testkit::swarm`). Each scenario is written
//! once, as a function of the runtime, and `for_each_runtime!` makes a test of it per runtime.
//! The Swarm-only tests at the end cover what only a cluster has: placement by node label,
//! moves, the node list, and isolation between users' overlays, from inside a workspace.

use std::time::{Duration, Instant};

use app::model::WorkspaceState;
use berth::config::{Config, RuntimeKind};
use berth::workspace::Owner;
use testkit::docker::{docker, env, image_exists, try_docker, Cleanup};
use testkit::service::{approved_user, backend, config, SYSTEM};
use testkit::swarm::TestSwarm;
use testkit::{cli, username, Backend as DbBackend, TestDb, TestServer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Docker,
    Swarm,
}

/// A scenario's world. Fields drop in order: the clean-up runs before the swarm is left.
struct World {
    cleanup: Cleanup,
    db: TestDb,
    config: Config,
    kind: Kind,
    _swarm: Option<TestSwarm>,
}

impl World {
    async fn new(kind: Kind, port_base: u16) -> World {
        let swarm = (kind == Kind::Swarm).then(TestSwarm::join);
        let cleanup = Cleanup::new();
        let db = TestDb::new(DbBackend::Sqlite).await;
        let mut config = config(&cleanup, &db.dir.path().join("storage"), port_base);
        if kind == Kind::Swarm {
            config.runtime = RuntimeKind::Swarm;
            // Swarm publishes on every address of the node (the configuration insists).
            config.ports.host_ip = "0.0.0.0".into();
            // Swarm places by reservations: the default 32 GiB is more than this machine has.
            config.workspace.memory_reservation_gib = 1;
        }
        World { cleanup, db, config, kind, _swarm: swarm }
    }

    fn storage(&self) -> std::path::PathBuf {
        self.db.dir.path().join("storage")
    }

    /// Workspaces of this test on the runtime: containers, or services.
    fn workspaces(&self) -> usize {
        match self.kind {
            Kind::Docker => self.cleanup.containers().len(),
            Kind::Swarm => docker(&["service", "ls", "-q", "--filter", &format!("label={}", self.cleanup.label)]).lines().count(),
        }
    }

    /// Swarm: the service has `want` replicas (a Docker workspace has none to count).
    fn assert_replicas(&self, user: &str, want: &str) {
        if self.kind == Kind::Swarm {
            let replicas = docker(&["service", "inspect", "-f", "{{.Spec.Mode.Replicated.Replicas}}", &format!("workspace-{user}")]);
            assert_eq!(replicas, want, "replicas of {user}'s service");
        }
    }

    /// Swarm: the tasks Swarm wants running.
    fn running_tasks(&self, user: &str) -> usize {
        docker(&["service", "ps", "-q", "--filter", "desired-state=running", &format!("workspace-{user}")]).lines().count()
    }
}

macro_rules! for_each_runtime {
    ($scenario:ident, $port_base:expr) => {
        mod $scenario {
            #[tokio::test]
            async fn docker() {
                super::$scenario(super::Kind::Docker, $port_base).await
            }

            #[tokio::test]
            async fn swarm() {
                super::$scenario(super::Kind::Swarm, $port_base + 900).await
            }
        }
    };
}

for_each_runtime!(two_users_answer_ssh_and_keep_their_homes, 6200);
for_each_runtime!(reconcile_after_a_restart_adopts_the_running_one, 6400);
for_each_runtime!(a_drifted_spec_is_applied_at_the_next_start, 6600);
for_each_runtime!(twenty_concurrent_starts_give_one_workspace, 6800);

/// The first line the port sends: an SSH server's banner (retried while sshd comes up).
async fn banner(port: u16, within: Duration) -> String {
    use tokio::io::AsyncBufReadExt;
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await {
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(stream);
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await {
                if n > 0 {
                    return line.trim().to_string();
                }
            }
        }
        assert!(Instant::now() < deadline, "no banner on port {port} within {within:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn inside(b: &berth::backend::Backend, owner: &Owner, script: &str) -> String {
    b.workspaces.read_inside(owner, &["sh", "-c", script]).await.expect("exec").expect("running").trim().to_string()
}

async fn two_users_answer_ssh_and_keep_their_homes(kind: Kind, port_base: u16) {
    let image = std::env::var("BERTH_TEST_WORKSPACE_IMAGE").unwrap_or_else(|_| "berth/workspace:slim".into());
    assert!(image_exists(&image), "{image} missing: run `make image` (make test does)");
    let mut world = World::new(kind, port_base).await;
    world.config.workspace_image = image;
    world.config.workspace.stop_timeout_seconds = 10;
    let b = backend(&world.config, &world.db.url).await;
    let w = b.workspaces.clone();
    let ann = approved_user(&b, &username("ann")).await;
    let bo = approved_user(&b, &username("bo")).await;
    let (first, second) = tokio::join!(w.start(SYSTEM, &ann), w.start(SYSTEM, &bo));
    first.expect("ann's start");
    second.expect("bo's start");
    assert_eq!(world.workspaces(), 2);

    let mut ports = Vec::new();
    for owner in [&ann, &bo] {
        let view = w.view(SYSTEM, owner).await.unwrap();
        assert_eq!(view.state, WorkspaceState::Running, "{}", owner.username);
        ports.push(view.ports.unwrap().ssh);
    }
    let ann_port = ports[0];
    ports.sort();
    assert_eq!(ports, [port_base + 22, port_base + 122], "slots 0 and 1 of the block, in whichever order the starts took them");
    for port in &ports {
        let line = banner(*port, Duration::from_secs(90)).await;
        assert!(line.starts_with("SSH-2.0-"), "port {port}: {line:?}");
    }

    let home = format!("/home/{}", ann.username);
    assert_eq!(inside(&b, &ann, &format!("echo kept-by-ann > {home}/persist && cat {home}/persist")).await, "kept-by-ann");
    w.stop(SYSTEM, &ann).await.expect("stop");
    assert_eq!(w.view(SYSTEM, &ann).await.unwrap().state, WorkspaceState::Stopped);
    world.assert_replicas(&ann.username, "0");
    let on_host = world.storage().join("homes").join(&ann.username).join("persist");
    assert_eq!(std::fs::read_to_string(&on_host).unwrap(), "kept-by-ann\n", "the home is on the host, kept");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", ann_port)).await.is_err(), "a stopped workspace's port is closed");
    assert!(banner(if ann_port == ports[0] { ports[1] } else { ports[0] }, Duration::from_secs(10)).await.starts_with("SSH-2.0-"), "bo's still answers");
    assert_eq!(w.view(SYSTEM, &bo).await.unwrap().state, WorkspaceState::Running, "bo's is not touched");

    w.start(SYSTEM, &ann).await.expect("start again");
    world.assert_replicas(&ann.username, "1");
    assert_eq!(inside(&b, &ann, &format!("cat {home}/persist")).await, "kept-by-ann", "the home came back with it");
    assert!(banner(ann_port, Duration::from_secs(90)).await.starts_with("SSH-2.0-"));
    assert_eq!(world.workspaces(), 2, "the same two workspaces, none made anew");
}

async fn reconcile_after_a_restart_adopts_the_running_one(kind: Kind, port_base: u16) {
    let world = World::new(kind, port_base).await;
    let b = backend(&world.config, &world.db.url).await;
    let ann = approved_user(&b, &username("adopt")).await;
    let bo = approved_user(&b, &username("left")).await;
    b.workspaces.start(SYSTEM, &ann).await.unwrap();
    b.workspaces.start(SYSTEM, &bo).await.unwrap();
    b.workspaces.stop(SYSTEM, &bo).await.unwrap();
    drop(b);

    // A new Berth: nothing in memory, only the database and the runtime.
    let again = backend(&world.config, &world.db.url).await;
    let report = again.workspaces.reconcile(SYSTEM).await.unwrap();
    assert!(report.adopted.contains(&ann.username) && report.adopted.contains(&bo.username), "{report:?}");
    assert!(report.restarted.is_empty(), "bo stopped on purpose and stays stopped: {report:?}");
    assert!(report.failed.is_empty() && report.orphans.is_empty() && report.drifted.is_empty(), "{report:?}");
    assert_eq!(again.workspaces.view(SYSTEM, &ann).await.unwrap().state, WorkspaceState::Running);
    assert_eq!(again.workspaces.view(SYSTEM, &bo).await.unwrap().state, WorkspaceState::Stopped);
    assert_eq!(world.workspaces(), 2);
}

async fn a_drifted_spec_is_applied_at_the_next_start(kind: Kind, port_base: u16) {
    let world = World::new(kind, port_base).await;
    let b = backend(&world.config, &world.db.url).await;
    let w = b.workspaces.clone();
    let owner = approved_user(&b, &username("drift")).await;
    w.start(SYSTEM, &owner).await.unwrap();
    assert!(!w.view(SYSTEM, &owner).await.unwrap().drift);
    let memory_limit = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
    assert_eq!(inside(&b, &owner, memory_limit).await, (100u64 << 30).to_string(), "the default limit, 100 GiB");

    let overrides = berth::workspace::spec::ResourceOverrides { memory_limit_gib: Some(2), memory_reservation_gib: Some(1), ..Default::default() };
    w.set_overrides(SYSTEM, &owner, &overrides).await.unwrap();
    assert!(w.view(SYSTEM, &owner).await.unwrap().drift, "the running workspace no longer matches");
    assert!(w.overview(SYSTEM).await.unwrap().rows.iter().any(|r| r.username == owner.username && r.drift));

    w.stop(SYSTEM, &owner).await.unwrap();
    w.start(SYSTEM, &owner).await.unwrap();
    let view = w.view(SYSTEM, &owner).await.unwrap();
    assert_eq!(view.state, WorkspaceState::Running);
    assert!(!view.drift, "recreated from the new plan");
    assert_eq!(inside(&b, &owner, memory_limit).await, "2147483648", "the kernel holds it to 2 GiB now");
    assert_eq!(world.workspaces(), 1);
}

async fn twenty_concurrent_starts_give_one_workspace(kind: Kind, port_base: u16) {
    let world = World::new(kind, port_base).await;
    // Two service instances on one database stand for two Berth processes.
    let first = backend(&world.config, &world.db.url).await;
    let second = backend(&world.config, &world.db.url).await;
    let owner = approved_user(&first, &username("race")).await;
    let starts: Vec<_> = (0..20)
        .map(|i| {
            let w = if i % 2 == 0 { first.workspaces.clone() } else { second.workspaces.clone() };
            let owner = owner.clone();
            tokio::spawn(async move { w.start(SYSTEM, &owner).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().expect("every start succeeds");
    }
    assert_eq!(world.workspaces(), 1, "one workspace");
    if kind == Kind::Swarm {
        assert_eq!(world.running_tasks(&owner.username), 1, "running once");
    }
    assert_eq!(second.workspaces.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Running);
}

/// `berth` processes on the Swarm runtime (the busybox stand-in, ports from `port_base`).
fn swarm_env(world: &World, port_base: u16) -> Vec<(String, String)> {
    let mut settings = env(&world.cleanup, &world.storage(), port_base);
    settings.retain(|(k, _)| k != "BERTH_PORTS__HOST_IP");
    settings.push(("BERTH_WORKSPACE__MEMORY_RESERVATION_GIB".into(), "1".into()));
    // The in-process services' key (`testkit::service::KEY`), so both read the same records.
    settings.push(("BERTH_SECRET_KEY".into(), hex(&testkit::service::KEY)));
    settings.extend(TestServer::env_for(&world.db, 0));
    settings.push(("BERTH_RUNTIME".into(), "swarm".into()));
    settings.push(("BERTH_SSH_HOST".into(), "ssh.lab.example".into()));
    settings.push(("BERTH_PORTS__HOST_IP".into(), "0.0.0.0".into()));
    settings
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The node's `io.berth.home.<user>` label, if it has one.
fn home_label(node: &str, user: &str) -> Option<String> {
    let labels: serde_json::Value = serde_json::from_str(&docker(&["node", "inspect", "-f", "{{json .Spec.Labels}}", node])).unwrap();
    labels.get(format!("io.berth.home.{user}")).map(|v| v.as_str().unwrap().to_string())
}

#[tokio::test]
async fn swarm_pins_each_home_to_a_node_and_moves_it_only_when_stopped() {
    let world = World::new(Kind::Swarm, 7900).await;
    let node = world._swarm.as_ref().unwrap().node_id.clone();
    let hostname = docker(&["node", "inspect", "-f", "{{.Description.Hostname}}", &node]);
    let address = docker(&["node", "inspect", "-f", "{{.Status.Addr}}", &node]);
    let env = swarm_env(&world, 7900);
    let user = username("home");
    assert!(cli(&env, &["user", "add", &user], "").status.success());

    // What Swarm cannot hold is refused before anything is done.
    let mut loopback = env.clone();
    loopback.push(("BERTH_PORTS__HOST_IP".into(), "127.0.0.1".into()));
    let refused = cli(&loopback, &["workspace", "start", &user], "");
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("ports.host_ip") && stderr(&refused).contains("every address of the node"), "{}", stderr(&refused));
    assert_eq!(world.workspaces(), 0);

    let started = cli(&env, &["workspace", "start", &user], "");
    assert!(started.status.success(), "{}", stderr(&started));
    assert_eq!(home_label(&node, &user).as_deref(), Some("true"), "the home is pinned at its first placement");
    let constraints = docker(&["service", "inspect", "-f", "{{json .Spec.TaskTemplate.Placement.Constraints}}", &format!("workspace-{user}")]);
    assert_eq!(constraints, format!("[\"node.labels.io.berth.home.{user}==true\"]"));
    let published = docker(&["service", "inspect", "-f", "{{json .Endpoint.Ports}}", &format!("workspace-{user}")]);
    assert!(published.contains("\"PublishMode\":\"host\"") && published.contains("\"PublishedPort\":7922"), "{published}");
    assert!(!published.contains("7900"), "VNC stays unpublished: {published}");

    // The card names the node. Its SSH command would use the node's address, but this one's is
    // loopback (a swarm on 127.0.0.1), which no user could reach: the configured host instead.
    let status = cli(&env, &["workspace", "status", &user, "--json"], "");
    let view: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(view["state"], "Running");
    assert_eq!(view["node"], hostname.as_str());
    assert_eq!(address, "127.0.0.1");
    assert_eq!(view["ssh_host"], "ssh.lab.example");

    let listed = cli(&env, &["node", "list", "--json"], "");
    assert!(listed.status.success(), "{}", stderr(&listed));
    let nodes: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["hostname"], hostname.as_str());
    assert!(nodes[0]["homes"].as_array().unwrap().iter().any(|h| h == user.as_str()), "{}", nodes[0]);
    assert_eq!((nodes[0]["ready"].as_bool(), nodes[0]["active"].as_bool()), (Some(true), Some(true)));

    // The admin's totals, per node.
    let b = backend(&world.config, &world.db.url).await;
    let overview = b.workspaces.overview(SYSTEM).await.unwrap();
    let row = overview.rows.iter().find(|r| r.username == user).expect("a row");
    assert_eq!(row.node.as_deref(), Some(hostname.as_str()));
    assert_eq!(overview.nodes.len(), 1, "{:?}", overview.nodes);
    assert!(overview.nodes[0].starts_with(&format!("{hostname}: 1 running, ")), "{}", overview.nodes[0]);
    assert!(overview.nodes[0].contains(" 1 of "), "its reservation, 1 GiB: {}", overview.nodes[0]);

    // A move needs a stopped workspace and a node that exists.
    let running = cli(&env, &["workspace", "move", &user, &hostname], "");
    assert!(!running.status.success());
    assert!(stderr(&running).contains("stop it first"), "{}", stderr(&running));
    assert!(cli(&env, &["workspace", "stop", &user], "").status.success());
    let nowhere = cli(&env, &["workspace", "move", &user, "no-such-node"], "");
    assert!(!nowhere.status.success());
    assert!(stderr(&nowhere).contains("no node \"no-such-node\"") && stderr(&nowhere).contains(&hostname), "{}", stderr(&nowhere));
    let moved = cli(&env, &["workspace", "move", &user, &hostname], "");
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert!(String::from_utf8_lossy(&moved.stdout).contains("already on"), "{}", String::from_utf8_lossy(&moved.stdout));

    // A runtime of one machine has nowhere to move to.
    let mut one_machine = env.clone();
    one_machine.push(("BERTH_RUNTIME".into(), "docker".into()));
    let single = cli(&one_machine, &["workspace", "move", &user, &hostname], "");
    assert!(!single.status.success());
    assert!(stderr(&single).contains("one machine"), "{}", stderr(&single));

    // A deleted account's home is forgotten: a new account of that name starts afresh.
    let deleted = cli(&env, &["user", "delete", &user, "--purge"], &format!("{user}\n"));
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(home_label(&node, &user), None, "the label went with the account");
    assert_eq!(world.workspaces(), 0);
}

/// From inside one user's workspace (the attacker's), another user's workspace does not answer,
/// neither on its overlay address nor on its address on `docker_gwbridge`; the attacker's own
/// does, and Berth on the host reaches the victim's through the bridge. Judged by what answers
/// (the stand-in's page names its user), not by a connection alone: this machine's network
/// accepts any outgoing connection and answers it itself.
#[tokio::test]
async fn swarm_workspaces_cannot_reach_each_other() {
    let world = World::new(Kind::Swarm, 8100).await;
    let b = backend(&world.config, &world.db.url).await;
    let attacker = approved_user(&b, &username("mallory")).await;
    let victim = approved_user(&b, &username("victim")).await;
    b.workspaces.start(SYSTEM, &attacker).await.unwrap();
    b.workspaces.start(SYSTEM, &victim).await.unwrap();

    let container_of = |user: &str| docker(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name=workspace-{user}")]);
    let (mallory, target) = (container_of(&attacker.username), container_of(&victim.username));
    let overlay_ip = docker(&["inspect", "-f", &format!("{{{{(index .NetworkSettings.Networks \"berth-ws-{}\").IPAddress}}}}", victim.username), &target]);
    let bridge = b.workspaces.app_upstream(&victim.username, berth::hosts::App::Jupyter).await.unwrap().expect("a running workspace").address;
    assert!(!overlay_ip.is_empty());
    let victims_page = format!("berth test workspace for {}", victim.username);
    // The host reaches the victim through the bridge (the control: the address is right).
    let page = reqwest::get(format!("http://{bridge}/")).await.expect("Berth reaches the workspace on its node").text().await.unwrap();
    assert!(page.contains(&victims_page), "{page}");

    let fetch = |ip: &str| {
        let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8888; true");
        try_docker(&["exec", &mallory, "sh", "-c", &script]).unwrap()
    };
    let own = fetch("127.0.0.1");
    assert!(own.contains(&format!("berth test workspace for {}", attacker.username)), "the probe works on the attacker's own: {own}");
    for ip in [overlay_ip.clone(), bridge.ip().to_string()] {
        let answer = fetch(&ip);
        assert!(!answer.contains(&victims_page), "the victim's workspace answered the attacker at {ip}: {answer}");
    }
    // The bridge forbids IP between containers, not Ethernet: forging ARP there would take the
    // victim's address over. A task has no raw sockets to forge it with.
    let spoof = try_docker(&["exec", &mallory, "sh", "-c", &format!("arping -c 1 -w 1 {} 2>&1; true", bridge.ip())]).unwrap();
    assert!(spoof.contains("Operation not permitted"), "raw sockets in the attacker's workspace: {spoof}");
    let attacker_bridge = b.workspaces.app_upstream(&attacker.username, berth::hosts::App::Jupyter).await.unwrap().unwrap().address;
    assert_ne!(attacker_bridge.ip(), bridge.ip());
}

/// Swarm runs no privileged task and picks no runtime per service: `auto` comes to `plain` on
/// nodes whose default runtime is runc (this engine's), and the card says Docker inside is off.
#[tokio::test]
async fn swarm_auto_isolation_is_plain_without_sysbox_as_the_default_runtime() {
    let mut world = World::new(Kind::Swarm, 8300).await;
    world.config.workspace.isolation = berth::config::Isolation::Auto;
    let b = backend(&world.config, &world.db.url).await;
    let owner = approved_user(&b, &username("auto")).await;
    let privileged = b.workspaces.capabilities().await.unwrap().privileged.clone();
    assert_eq!(privileged, Err("Swarm services cannot run privileged".to_string()));
    assert_eq!(b.workspaces.isolation().await.unwrap(), berth::config::Isolation::Plain);
    b.workspaces.start(SYSTEM, &owner).await.unwrap();
    let view = b.workspaces.view(SYSTEM, &owner).await.unwrap();
    let isolation = view.isolation.expect("known once the runtime answered");
    assert_eq!((isolation.mode.as_str(), isolation.docker_inside, isolation.host_root), ("plain", false, false));
    let env = docker(&["service", "inspect", "-f", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", &format!("workspace-{}", owner.username)]);
    assert!(env.contains("BERTH_DISABLE_SERVICES=dockerd"), "the image is told not to start Docker: {env}");
    assert_eq!(view.limits.swap_summary, "swap not limited on this server", "Swarm has no swap setting");
}
