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
        calls.iter().filter(|c| !c.starts_with("observe") && !c.starts_with("address") && *c != "capabilities").cloned().collect::<Vec<_>>(),
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
    assert!(forbidden(f.w.overview(&as_alice, false).await.map(drop)), "admin-only even if a caller forgets");
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
    f.fake.set_capabilities(super::runtime::Capabilities { runtimes: vec!["runc".into(), "sysbox-runc".into(), "nvidia".into()], privileged: Ok(()), gpus: true });
    let bob = user(&f.db, "bob", "approved", false).await;
    f.w.start(SYSTEM, &bob).await.unwrap();
    assert_eq!(f.w.isolation().await.unwrap(), Isolation::Sysbox);
    let plan = f.fake.workspace("workspace-bob").unwrap().plan;
    assert_eq!((plan.gpus, plan.runtime_class.as_deref()), (super::spec::GpuRequest::All, Some("sysbox-runc")));
}
