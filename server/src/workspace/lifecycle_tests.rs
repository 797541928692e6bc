//! The lifecycle decisions, driven through the fake runtime: no engine needed, failures on
//! purpose. The real-engine tests (server/tests/workspaces.rs) check the Docker side.

use std::sync::Arc;
use std::time::Duration;

use app::model::{StepState, WorkspaceState};

use super::fake::{Failures, FakeRuntime};
use super::runtime::RuntimeStatus;
use super::service::{Actor, Owner, WorkspaceError, Workspaces};
use super::spec::{build_plan, WorkspaceSettings, WorkspaceUser};
use crate::config::{Config, Isolation};
use crate::db::Db;

struct Fixture {
    dir: tempfile::TempDir,
    db: Db,
    fake: Arc<FakeRuntime>,
    w: Arc<Workspaces>,
}

const SYSTEM: &Actor = &Actor::System;

async fn fixture() -> Fixture {
    fixture_with(Isolation::Plain).await
}

async fn fixture_with(isolation: Isolation) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/berth.db", dir.path().display())).await.unwrap();
    db.migrate().await.unwrap();
    let mut config = Config::default();
    config.storage_root = dir.path().join("storage");
    config.workspace.isolation = isolation;
    let fake = Arc::new(FakeRuntime::new());
    let mut w = Workspaces::new(db.clone(), fake.clone(), WorkspaceSettings::from_config(&config), &[7; 32], "localhost".into());
    w.probe_timeout = Duration::from_millis(10);
    Fixture { dir, db, fake, w: Arc::new(w) }
}

async fn user(db: &Db, name: &str, status: &str, admin: bool) -> Owner {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, status, is_admin, created_at, updated_at) VALUES ($1, $2, $3, 0, 0) RETURNING id",
    )
    .bind(name)
    .bind(status)
    .bind(admin as i32)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    Owner { id, username: name.into(), approved: status == "approved" }
}

fn busy_steps(w: &Workspaces, owner: &str) -> Vec<(String, StepState)> {
    w.progress.get(owner).steps.into_iter().map(|s| (s.name, s.state)).collect()
}

#[tokio::test]
async fn start_creates_then_starts_and_a_second_start_changes_nothing() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.w.start(SYSTEM, &alice).await.unwrap();
    let calls = f.fake.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| !c.starts_with("observe") && !c.starts_with("address") && *c != "capabilities" && !c.ends_with("berth-services"))
            .cloned()
            .collect::<Vec<_>>(),
        vec!["prepare workspace-alice", "connect alice", "create workspace-alice", "start workspace-alice"]
    );
    assert_eq!(f.fake.workspace("workspace-alice").unwrap().status, RuntimeStatus::Running);
    assert_eq!(f.w.view(SYSTEM, &alice).await.unwrap().state, WorkspaceState::Running);

    f.fake.clear_calls();
    f.w.start(SYSTEM, &alice).await.unwrap();
    assert!(!f.fake.calls().iter().any(|c| c.starts_with("create") || c.starts_with("start")), "{:?}", f.fake.calls());
}

#[tokio::test]
async fn restart_of_a_missing_container_creates_it_again() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.w.start(SYSTEM, &alice).await.unwrap();
    f.fake.vanish("workspace-alice");
    assert_eq!(f.w.view(SYSTEM, &alice).await.unwrap().state, WorkspaceState::Absent);
    f.fake.clear_calls();
    f.w.restart(SYSTEM, &alice).await.expect("a restart of a workspace someone removed brings it back");
    assert!(f.fake.calls().contains(&"create workspace-alice".to_string()), "{:?}", f.fake.calls());
    assert_eq!(f.fake.workspace("workspace-alice").unwrap().status, RuntimeStatus::Running);
    assert_eq!(f.w.view(SYSTEM, &alice).await.unwrap().state, WorkspaceState::Running);
}

#[tokio::test]
async fn reset_recreates_the_container_and_keeps_home() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.w.start(SYSTEM, &alice).await.unwrap();
    let home = f.dir.path().join("storage/homes/alice");
    std::fs::write(home.join("thesis.tex"), "chapter one").unwrap();
    let before = f.fake.workspace("workspace-alice").unwrap().started_at;
    f.fake.clear_calls();
    f.w.reset(SYSTEM, &alice).await.unwrap();
    let calls = f.fake.calls();
    let at = |what: &str| calls.iter().position(|c| c == what).unwrap_or_else(|| panic!("{what} missing from {calls:?}"));
    assert!(at("remove workspace-alice") < at("create workspace-alice"));
    assert!(at("create workspace-alice") < at("start workspace-alice"));
    assert_ne!(f.fake.workspace("workspace-alice").unwrap().started_at, before, "a new container");
    assert_eq!(std::fs::read_to_string(home.join("thesis.tex")).unwrap(), "chapter one");
    let steps = busy_steps(&f.w, "alice");
    assert!(steps.contains(&("remove container".to_string(), StepState::Done)), "{steps:?}");
}

#[tokio::test]
async fn a_crash_during_create_leaves_no_half_workspace() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.fake.fail(Failures { create_after_making: true, ..Default::default() });
    let error = f.w.start(SYSTEM, &alice).await.expect_err("the create's answer was lost");
    assert!(error.to_string().contains("connection reset during create"), "{error}");
    assert!(f.fake.workspace("workspace-alice").is_none(), "the half-made container is removed");
    let view = f.w.view(SYSTEM, &alice).await.unwrap();
    assert_eq!(view.state, WorkspaceState::Absent);
    assert!(view.steps.iter().any(|s| s.name == "create container" && s.state == StepState::Failed), "{:?}", view.steps);
    assert!(view.error.is_some());

    f.fake.heal();
    f.w.start(SYSTEM, &alice).await.expect("the next start begins clean");
    assert_eq!(f.fake.workspace("workspace-alice").unwrap().status, RuntimeStatus::Running);
}

#[tokio::test]
async fn a_create_that_fails_says_why_and_keeps_the_record() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.fake.fail(Failures { create: Some("no space left on device".into()), ..Default::default() });
    let error = f.w.start(SYSTEM, &alice).await.unwrap_err().to_string();
    assert_eq!(error, "docker create container failed: no space left on device");
    assert!(f.w.record(&alice).await.unwrap().is_some(), "slot and credentials stay allocated");
}

#[tokio::test]
async fn a_hung_start_fails_in_time_and_frees_the_lock() {
    let f = fixture().await;
    let mut w = Workspaces::new(f.db.clone(), f.fake.clone(), f.w.settings().clone(), &[7; 32], "localhost".into());
    w.operation_timeout = Duration::from_millis(300);
    let w = Arc::new(w);
    let alice = user(&f.db, "alice", "approved", false).await;
    f.fake.fail(Failures { start_hangs: true, ..Default::default() });
    let error = w.start(SYSTEM, &alice).await.unwrap_err().to_string();
    assert_eq!(error, "start container failed: no answer within 0.3 s; the engine may be overloaded");
    f.fake.heal();
    // Within the lock's own wait: a lock still held would make this wait minutes.
    tokio::time::timeout(Duration::from_secs(10), w.start(SYSTEM, &alice)).await.expect("lock released").unwrap();
    assert_eq!(f.fake.workspace("workspace-alice").unwrap().status, RuntimeStatus::Running);
}

#[tokio::test]
async fn an_engine_that_is_gone_is_said_and_recovered_from() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.fake.fail(Failures { engine_gone: true, ..Default::default() });
    let error = f.w.start(SYSTEM, &alice).await.unwrap_err();
    assert!(matches!(error, WorkspaceError::Runtime(super::runtime::RuntimeError::Unavailable(_))), "{error:?}");
    let view = f.w.view(SYSTEM, &alice).await.unwrap();
    assert_eq!(view.state, WorkspaceState::Error);
    assert_eq!(view.engine_problem.as_deref(), Some("the Docker engine is not reachable: fake engine gone"));
    f.fake.heal();
    f.w.start(SYSTEM, &alice).await.unwrap();
    let view = f.w.view(SYSTEM, &alice).await.unwrap();
    assert_eq!((view.state, view.engine_problem), (WorkspaceState::Running, None));
}

#[tokio::test]
async fn reconcile_adopts_repairs_and_reports() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    let bob = user(&f.db, "bob", "approved", false).await;
    let dave = user(&f.db, "dave", "approved", false).await;
    user(&f.db, "erin", "approved", false).await;
    // alice: running as planned. bob: wanted running, but his container died with Berth away.
    f.w.start(SYSTEM, &alice).await.unwrap();
    f.w.start(SYSTEM, &bob).await.unwrap();
    f.fake.kill("workspace-bob");
    // dave: stopped, and made from another image than today's plan says.
    f.w.start(SYSTEM, &dave).await.unwrap();
    f.w.stop(SYSTEM, &dave).await.unwrap();
    let mut stale = f.fake.workspace("workspace-dave").unwrap().plan;
    stale.image = "berth/workspace:old".into();
    f.fake.put(stale, RuntimeStatus::Exited);
    // carol: a container of Berth's whose user is gone.
    let mut settings = f.w.settings().clone();
    settings.isolation = Isolation::Plain;
    let secrets = f.w.record(&alice).await.unwrap().unwrap().secrets;
    let carol = WorkspaceUser { username: "carol".into(), slot: 9, secrets, overrides: Default::default() };
    f.fake.put(build_plan(&carol, &settings).unwrap(), RuntimeStatus::Running);

    let report = f.w.reconcile(SYSTEM).await.unwrap();
    assert_eq!(report.adopted, vec!["alice", "bob", "dave"]);
    assert_eq!(report.orphans, vec!["carol"]);
    assert_eq!(report.drifted, vec!["dave"]);
    assert_eq!(report.restarted, vec!["bob"], "erin never asked for a workspace; dave stopped his");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(f.fake.workspace("workspace-bob").unwrap().status, RuntimeStatus::Running);
    assert_eq!(f.fake.workspace("workspace-dave").unwrap().status, RuntimeStatus::Exited);
}

#[tokio::test]
async fn a_drifted_stopped_workspace_is_recreated_at_its_next_start() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.w.start(SYSTEM, &alice).await.unwrap();
    f.w.stop(SYSTEM, &alice).await.unwrap();
    f.w.set_overrides(SYSTEM, &alice, &super::spec::ResourceOverrides { cpus: Some(2.0), ..Default::default() }).await.unwrap();
    assert!(f.w.view(SYSTEM, &alice).await.unwrap().drift);
    f.fake.clear_calls();
    f.w.start(SYSTEM, &alice).await.unwrap();
    let calls = f.fake.calls();
    assert!(calls.contains(&"remove workspace-alice".to_string()) && calls.contains(&"create workspace-alice".to_string()), "{calls:?}");
    assert_eq!(f.fake.workspace("workspace-alice").unwrap().plan.limits.nano_cpus, Some(2_000_000_000));
    assert!(!f.w.view(SYSTEM, &alice).await.unwrap().drift);
}

#[tokio::test]
async fn a_workspace_that_dies_is_seen_through_events_without_asking_again() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.w.start(SYSTEM, &alice).await.unwrap();
    let follower = tokio::spawn(f.w.clone().watch_events());
    let mut changes = f.w.changes();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !f.w.live.following() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the follower reads the runtime whole");

    // Two hundred open dashboards ask: the runtime is not asked once.
    f.fake.clear_calls();
    for _ in 0..200 {
        assert_eq!(f.w.view(SYSTEM, &alice).await.unwrap().state, WorkspaceState::Running);
    }
    assert_eq!(f.fake.calls(), Vec::<String>::new());

    changes.borrow_and_update();
    f.fake.kill("workspace-alice");
    tokio::time::timeout(Duration::from_secs(5), changes.changed()).await.expect("dashboards are told").unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while f.w.view(SYSTEM, &alice).await.unwrap().state != WorkspaceState::Stopped {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the death reaches the card");
    assert_eq!(f.fake.calls(), vec!["observe workspace-alice"], "one look per event, whatever the number of dashboards");
    follower.abort();
}

#[tokio::test]
async fn the_service_checks_who_asks() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    let mallory = user(&f.db, "mallory", "approved", false).await;
    let admin = user(&f.db, "root", "approved", true).await;
    let as_alice = Actor::User { id: alice.id, admin: false };
    let as_mallory = Actor::User { id: mallory.id, admin: false };
    let as_admin = Actor::User { id: admin.id, admin: true };
    let forbidden = |r: Result<(), WorkspaceError>| matches!(r, Err(WorkspaceError::Forbidden(_)));

    assert!(forbidden(f.w.start(&as_mallory, &alice).await), "another user cannot start alice's workspace");
    assert!(forbidden(f.w.view(&as_mallory, &alice).await.map(drop)));
    assert!(forbidden(f.w.overview(&as_alice).await.map(drop)), "admin-only even if a caller forgets");
    assert!(forbidden(f.w.reconcile(&as_alice).await.map(drop)));
    assert!(forbidden(f.w.set_overrides(&as_alice, &alice, &Default::default()).await));
    assert!(forbidden(f.w.disable_user(&as_alice, &mallory).await));
    assert!(forbidden(f.w.apply_in_background(&as_mallory, &alice, app::model::WorkspaceAction::Stop)));
    assert!(f.fake.workspace("workspace-alice").is_none(), "nothing was done");

    f.w.start(&as_alice, &alice).await.expect("the owner may");
    f.w.stop(&as_admin, &alice).await.expect("an administrator may stop anyone's");
    assert!(forbidden(f.w.credentials(&as_admin, &alice).await.map(drop)), "admins run the portal, not users' sessions");
    assert!(f.w.credentials(&as_alice, &alice).await.unwrap().is_some());
    let pending = user(&f.db, "newbie", "pending", false).await;
    let refused = f.w.start(SYSTEM, &pending).await.unwrap_err();
    assert_eq!(refused.to_string(), "newbie's account is not approved");
}

#[tokio::test]
async fn auto_isolation_and_gpus_follow_what_the_runtime_offers() {
    let f = fixture_with(Isolation::Auto).await;
    let alice = user(&f.db, "alice", "approved", false).await;
    // CPU-only, privileged refused: plain, no GPUs, and the workspace starts.
    f.w.start(SYSTEM, &alice).await.expect("auto works on an engine that refuses --privileged");
    assert_eq!(f.w.isolation().await.unwrap(), Isolation::Plain);
    let plan = f.fake.workspace("workspace-alice").unwrap().plan;
    assert_eq!(plan.gpus, super::spec::GpuRequest::None);
    assert!(plan.env.contains(&"BERTH_DISABLE_SERVICES=dockerd".to_string()));
    assert_eq!(f.fake.calls().iter().filter(|c| *c == "capabilities").count(), 1, "asked once");

    // An explicit GPU request on such an engine names the setting and the fix.
    f.w.stop(SYSTEM, &alice).await.unwrap();
    f.w.set_overrides(SYSTEM, &alice, &super::spec::ResourceOverrides { gpus: Some("all".into()), ..Default::default() }).await.unwrap();
    let error = f.w.start(SYSTEM, &alice).await.unwrap_err().to_string();
    assert_eq!(error, "the GPU limit of alice = all asks for GPUs, but this Docker engine offers none (no NVIDIA runtime, no CDI GPU devices): set it to auto or none, or install the NVIDIA Container Toolkit on the server");

    // A GPU server with sysbox: sysbox, and every GPU.
    let f = fixture_with(Isolation::Auto).await;
    f.fake.set_capabilities(super::runtime::Capabilities { runtimes: vec!["runc".into(), "sysbox-runc".into(), "nvidia".into()], privileged: Ok(()), gpus: true, swap_limit: true, host_cpus: 8, host_memory_bytes: 64 << 30 });
    let bob = user(&f.db, "bob", "approved", false).await;
    f.w.start(SYSTEM, &bob).await.unwrap();
    assert_eq!(f.w.isolation().await.unwrap(), Isolation::Sysbox);
    let plan = f.fake.workspace("workspace-bob").unwrap().plan;
    assert_eq!((plan.gpus, plan.runtime_class.as_deref()), (super::spec::GpuRequest::All, Some("sysbox-runc")));
}

// --- the services a workspace's image declares (see `services`) ---------------------------

use super::names::container_port;
use super::runtime::ExecOutcome;
use super::services::{LIST_SERVICES, LOG_SCAN_LINES};

/// A workspace's port as a test serves it: a loopback listener that accepts, and answers any
/// request with `status` when given (the app gate's ports are asked over HTTP).
async fn serve(status: Option<&'static str>) -> std::net::SocketAddr {
    serve_at("127.0.0.1:0".parse().unwrap(), status).await
}

/// A loopback address where nothing listens yet; [`serve_at`] it later.
fn not_yet() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

async fn serve_at(address: std::net::SocketAddr, status: Option<&'static str>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                if let Some(status) = status {
                    let mut buffer = [0u8; 1024];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            });
        }
    });
    address
}

/// `berth-services` answering `services` as (program, supervisord state).
fn declares(fake: &FakeRuntime, services: &[(&str, &str)]) {
    let list: Vec<serde_json::Value> = services.iter().map(|(n, s)| serde_json::json!({"name": n, "state": s})).collect();
    fake.answer_exec(LIST_SERVICES, ExecOutcome { exit_code: Some(0), output: serde_json::Value::Array(list).to_string() });
}

/// Workspaces over `f`'s database and runtime that follow services for up to `probe_timeout`,
/// with Traefik routes (so the card has launch links).
fn probing(f: &Fixture, probe_timeout: Duration) -> Arc<Workspaces> {
    let mut w = Workspaces::new(f.db.clone(), f.fake.clone(), f.w.settings().clone(), &[7; 32], "localhost".into());
    w.probe_timeout = probe_timeout;
    w.routes = Some(Arc::new(crate::routes::traefik::TraefikWriter::new(crate::routes::traefik::TraefikSettings {
        dir: f.dir.path().join("traefik"),
        portal_internal_url: "http://berth:3000".into(),
        portal_host: "berth.localhost".into(),
        domain: "localhost".into(),
        hosts: Default::default(),
        entry_point: "websecure".into(),
        cert_resolver: None,
        tls: true,
    })));
    w.links.scheme = "http".into();
    w.links.domain = "localhost".into();
    Arc::new(w)
}

async fn until_view(w: &Workspaces, owner: &Owner, what: &str, done: impl Fn(&app::model::WorkspaceView) -> bool) -> app::model::WorkspaceView {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = w.view(SYSTEM, owner).await.unwrap();
        if done(&view) {
            return view;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {:?}", view.steps);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn service_steps(view: &app::model::WorkspaceView) -> Vec<(String, StepState)> {
    view.steps.iter().filter(|s| s.name.ends_with(" answering") || s.name.ends_with(" running")).map(|s| (s.name.clone(), s.state)).collect()
}

const SLIM: &[(&str, &str)] = &[
    ("app-gate", "RUNNING"),
    ("dbus", "RUNNING"),
    ("jupyter", "RUNNING"),
    ("novnc", "RUNNING"),
    ("sshd", "RUNNING"),
    ("tensorboard", "RUNNING"),
];

#[tokio::test]
async fn a_start_shows_only_the_installed_services_and_says_ready_when_all_answer() {
    let f = fixture().await;
    let w = probing(&f, Duration::from_secs(30));
    let alice = user(&f.db, "alice", "approved", false).await;
    declares(&f.fake, SLIM);
    f.fake.answer_on(container_port::SSH, serve(None).await);
    f.fake.answer_on(container_port::NOVNC, serve(None).await);
    // Jupyter is slow to come up: its port does not answer yet.
    let jupyter = not_yet();
    f.fake.answer_on(container_port::JUPYTER, jupyter);
    f.fake.answer_on(container_port::TENSORBOARD, serve(Some("200 OK")).await);

    w.start(SYSTEM, &alice).await.unwrap();
    let view = until_view(&w, &alice, "SSH answers", |v| v.steps.iter().any(|s| s.name == "SSH answering" && s.state == StepState::Done)).await;
    assert_eq!(view.state, WorkspaceState::Running, "running as soon as the container runs");
    assert!(!view.ready);
    let view = until_view(&w, &alice, "TensorBoard answers", |v| service_steps(v).iter().filter(|s| s.1 == StepState::Done).count() == 3).await;
    assert_eq!(
        service_steps(&view),
        vec![
            ("SSH answering".to_string(), StepState::Done),
            ("Desktop in browser (noVNC) answering".to_string(), StepState::Done),
            ("Jupyter answering".to_string(), StepState::Running),
            ("TensorBoard answering".to_string(), StepState::Done),
        ],
        "no VS Code, VNC or RDP step: the image has none of them"
    );
    assert!(!view.ready, "Jupyter has not answered");
    let keys: Vec<&str> = view.apps.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, vec!["jupyter", "tensorboard", "desktop"], "no VS Code link");
    assert_eq!(
        w.installed_services(SYSTEM, &alice).unwrap(),
        Some(vec!["app-gate", "dbus", "jupyter", "novnc", "sshd", "tensorboard"].into_iter().map(String::from).collect())
    );

    serve_at(jupyter, None).await;
    let view = until_view(&w, &alice, "ready", |v| v.ready).await;
    assert!(service_steps(&view).iter().all(|s| s.1 == StepState::Done), "{:?}", view.steps);

    // Stopped: no longer ready, and the links stay (disabled on the card) for what the image has.
    w.stop(SYSTEM, &alice).await.unwrap();
    let view = w.view(SYSTEM, &alice).await.unwrap();
    assert!(!view.ready);
    assert_eq!(view.apps.len(), 3);
}

#[tokio::test]
async fn a_failed_service_shows_failed_with_the_last_lines_of_its_own_log() {
    let f = fixture().await;
    let w = probing(&f, Duration::from_secs(30));
    let alice = user(&f.db, "alice", "approved", false).await;
    f.fake.answer_on(container_port::SSH, serve(None).await);
    let jupyter = not_yet();
    f.fake.answer_on(container_port::JUPYTER, jupyter);
    declares(&f.fake, &[("sshd", "RUNNING"), ("jupyter", "BACKOFF")]);
    let mut log = vec!["berth-entrypoint: user alice (10000:10000), services: sshd jupyter".to_string()];
    for i in 1..=25 {
        log.push(format!("[jupyter] traceback line {i}"));
        log.push(format!("[sshd] sshd line {i}"));
    }
    log.push("[jupyter] OSError: [Errno 98] Address already in use".into());
    f.fake.print("workspace-alice", &log.iter().map(String::as_str).collect::<Vec<_>>());

    w.start(SYSTEM, &alice).await.unwrap();
    let view = until_view(&w, &alice, "Jupyter fails", |v| v.steps.iter().any(|s| s.name == "Jupyter answering" && s.state == StepState::Failed)).await;
    let step = view.steps.iter().find(|s| s.name == "Jupyter answering").unwrap();
    let expected: Vec<String> = (7..=25).map(|i| format!("traceback line {i}")).chain(["OSError: [Errno 98] Address already in use".to_string()]).collect();
    assert_eq!(step.detail.as_deref(), Some(format!("failed; its last lines:\n{}", expected.join("\n")).as_str()));
    assert!(f.fake.calls().contains(&format!("logs workspace-alice {LOG_SCAN_LINES}")), "a bounded tail of the log: {:?}", f.fake.calls());
    assert!(!view.ready);

    // supervisord tries again (STARTING): still shown failed, not "starting" again.
    declares(&f.fake, &[("sshd", "RUNNING"), ("jupyter", "STARTING")]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let view = w.view(SYSTEM, &alice).await.unwrap();
    assert_eq!(view.steps.iter().find(|s| s.name == "Jupyter answering").map(|s| s.state), Some(StepState::Failed));

    // It comes up after all (its port freed): done, and ready.
    declares(&f.fake, &[("sshd", "RUNNING"), ("jupyter", "RUNNING")]);
    serve_at(jupyter, None).await;
    let view = until_view(&w, &alice, "ready after the recovery", |v| v.ready).await;
    assert_eq!(view.steps.iter().find(|s| s.name == "Jupyter answering").map(|s| (s.state, s.detail.clone())), Some((StepState::Done, None)));
}

#[tokio::test]
async fn a_service_without_a_port_that_fails_shows_too() {
    let f = fixture().await;
    let w = probing(&f, Duration::from_secs(30));
    let alice = user(&f.db, "alice", "approved", false).await;
    f.fake.answer_on(container_port::SSH, serve(None).await);
    declares(&f.fake, &[("sshd", "RUNNING"), ("dockerd", "FATAL")]);
    f.fake.print("workspace-alice", &["[dockerd] failed to start daemon: Devices cgroup isn't mounted"]);
    w.start(SYSTEM, &alice).await.unwrap();
    let view = until_view(&w, &alice, "Docker fails", |v| v.steps.iter().any(|s| s.name == "Docker running")).await;
    let step = view.steps.iter().find(|s| s.name == "Docker running").unwrap();
    assert_eq!((step.state, step.detail.as_deref()), (StepState::Failed, Some("failed; its last lines:\nfailed to start daemon: Devices cgroup isn't mounted")));
    until_view(&w, &alice, "SSH answers", |v| v.steps.iter().any(|s| s.name == "SSH answering" && s.state == StepState::Done)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!w.view(SYSTEM, &alice).await.unwrap().ready, "a failed service spoils ready, port or not");
}

#[tokio::test]
async fn an_image_that_declares_no_services_is_probed_on_every_port() {
    let f = fixture().await;
    let w = probing(&f, Duration::from_secs(30));
    let alice = user(&f.db, "alice", "approved", false).await;
    // What Docker answers for an exec of a file the image lacks.
    f.fake.answer_exec(LIST_SERVICES, ExecOutcome { exit_code: Some(126), output: "OCI runtime exec failed: exec failed: unable to start container process: exec: \"/usr/local/lib/berth/berth-services\": stat /usr/local/lib/berth/berth-services: no such file or directory: unknown".into() });
    w.start(SYSTEM, &alice).await.unwrap();
    let view = until_view(&w, &alice, "every port probed", |v| service_steps(v).len() == 7).await;
    assert!(view.steps.iter().any(|s| s.name == "VS Code answering" && s.state == StepState::Running), "{:?}", view.steps);
    assert_eq!(view.apps.len(), 4, "nothing known to be missing: every link");
    let execs = f.fake.calls().iter().filter(|c| c.contains(LIST_SERVICES)).count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(f.fake.calls().iter().filter(|c| c.contains(LIST_SERVICES)).count(), execs, "not asked again");
}

#[tokio::test]
async fn a_workspace_started_by_another_process_gets_its_services_learnt_from_events() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    declares(&f.fake, &[("sshd", "RUNNING"), ("jupyter", "RUNNING")]);
    f.fake.answer_on(container_port::SSH, serve(None).await);
    f.fake.answer_on(container_port::JUPYTER, serve(None).await);
    // The serving process follows the runtime; the command line starts the workspace.
    let serving = probing(&f, Duration::from_secs(30));
    let follower = tokio::spawn(serving.clone().watch_events());
    let cli = probing(&f, Duration::from_millis(10));
    cli.start(SYSTEM, &alice).await.unwrap();
    let view = until_view(&serving, &alice, "ready in the serving process", |v| v.ready).await;
    assert_eq!(view.apps.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), vec!["jupyter"]);
    assert_eq!(service_steps(&view), vec![("SSH answering".to_string(), StepState::Done), ("Jupyter answering".to_string(), StepState::Done)]);
    // Berth restarted while it runs: the new process learns them too.
    let restarted = probing(&f, Duration::from_secs(30));
    let follower2 = tokio::spawn(restarted.clone().watch_events());
    until_view(&restarted, &alice, "ready after a restart of Berth", |v| v.ready && v.apps.len() == 1).await;
    follower.abort();
    follower2.abort();
}

#[tokio::test]
async fn the_card_says_there_are_no_gpus_on_a_cpu_only_server() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    assert_eq!(f.w.settings().defaults.gpus, "auto", "the default");
    let view = f.w.view(SYSTEM, &alice).await.unwrap();
    assert_eq!((view.limits.gpus.as_str(), view.limits.gpus_summary.as_str()), ("auto", "no GPUs on this server"));
    f.w.set_overrides(SYSTEM, &alice, &super::spec::ResourceOverrides { gpus: Some("none".into()), ..Default::default() }).await.unwrap();
    assert_eq!(f.w.view(SYSTEM, &alice).await.unwrap().limits.gpus_summary, "GPUs: none");

    let f = fixture().await;
    f.fake.set_capabilities(super::runtime::Capabilities { runtimes: vec!["runc".into(), "nvidia".into()], privileged: Ok(()), gpus: true, swap_limit: true, host_cpus: 8, host_memory_bytes: 64 << 30 });
    let bob = user(&f.db, "bob", "approved", false).await;
    assert_eq!(f.w.view(SYSTEM, &bob).await.unwrap().limits.gpus_summary, "GPUs: all");
}

#[tokio::test]
async fn the_card_says_when_the_server_cannot_limit_swap() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    assert_eq!(f.w.view(SYSTEM, &alice).await.unwrap().limits.swap_summary, "swap 50 GiB");

    let f = fixture().await;
    f.fake.set_capabilities(super::runtime::Capabilities { runtimes: vec!["runc".into()], privileged: Ok(()), gpus: false, swap_limit: false, host_cpus: 8, host_memory_bytes: 64 << 30 });
    let bob = user(&f.db, "bob", "approved", false).await;
    assert_eq!(f.w.view(SYSTEM, &bob).await.unwrap().limits.swap_summary, "swap not limited on this server");
}

#[tokio::test]
async fn a_move_needs_an_admin_a_stopped_workspace_and_a_runtime_of_several_machines() {
    let f = fixture().await;
    let alice = user(&f.db, "alice", "approved", false).await;
    f.w.start(SYSTEM, &alice).await.unwrap();
    let as_alice = Actor::User { id: alice.id, admin: false };
    assert!(matches!(f.w.move_to_node(&as_alice, &alice, "gpu-2").await, Err(WorkspaceError::Forbidden(_))));
    let running = f.w.move_to_node(SYSTEM, &alice, "gpu-2").await.unwrap_err();
    assert!(matches!(running, WorkspaceError::MustBeStopped { state: "running", .. }), "{running}");
    assert_eq!(running.to_string(), "alice's workspace is running: stop it first (its files must not change while they are copied)");
    f.w.stop(SYSTEM, &alice).await.unwrap();
    let single = f.w.move_to_node(SYSTEM, &alice, "gpu-2").await.unwrap_err().to_string();
    assert!(single.contains("one machine"), "{single}");
    assert!(f.w.nodes(SYSTEM).await.unwrap().is_empty(), "a runtime of one machine lists no nodes");
}

#[test]
fn a_move_says_what_to_copy_from_where() {
    use super::lifecycle::move_message;
    use super::runtime::NodeView;
    let node = |id: &str, address: &str| NodeView {
        id: id.into(),
        hostname: format!("host-{id}"),
        address: address.into(),
        ready: true,
        active: true,
        cpus: 8,
        memory_bytes: 0,
        gpus: 0,
        homes: vec![],
    };
    let (a, b) = (node("a", "10.0.0.1"), node("b", "10.0.0.2"));
    let root = std::path::Path::new("/srv/berth");
    let text = move_message("ann", Some(&a), &b, root);
    assert!(text.starts_with("ann's next start runs on host-b (10.0.0.2). Berth copied nothing: copy these directories from host-a (10.0.0.1)"), "{text}");
    for dir in ["homes/ann", "workspaces/ann", "shared/tensorboard/ann", "state/ann", "docker/ann", "keys/ann"] {
        assert!(text.contains(&format!("\n  /srv/berth/{dir}")), "{dir} in {text}");
    }
    assert_eq!(move_message("ann", Some(&b), &b, root), "ann's home is already on host-b; nothing to copy.");
    assert!(move_message("ann", None, &b, root).contains("No node held the home before"));
}
