//! GPU sharing and idle reclaim. Leases, the queue and idle releases run against the recorded
//! two-GPU inventory with two `Sharing` services on one database (two Berth processes' worth
//! of pools), on SQLite and PostgreSQL, the clock moved by the test; the workspaces' side runs
//! on the fake runtime (this machine has no GPU for the real one: the Docker side of
//! `device_ids` is asserted in `workspace::docker`'s tests). The idle stop runs against a real
//! `berth serve` and the real engine: a workspace with an SSH session open is never stopped,
//! one with nothing open is, after its warning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::config::{Config, GpuMode};
use berth::db::Db;
use berth::monitor::{Monitor, MonitorSettings};
use berth::sharing::{LeaseBook, RequestOutcome, Sharing, SharingSettings};
use berth::workspace::fake::FakeRuntime;
use berth::workspace::runtime::Capabilities;
use berth::workspace::spec::{GpuRequest, WorkspaceSettings};
use berth::workspace::{Actor, Owner, Workspaces};
use serde_json::Value;
use sqlx::Row as _;
use testkit::docker::{docker, env, Cleanup};
use testkit::{username, Backend as DbBackend, TestDb, TestServer};

const GPU0: &str = "GPU-6a1c2f3e-0d4b-4c55-9a8e-1f2b3c4d5e60";
const GPU1: &str = "GPU-9b8c7d6e-5f4a-4b3c-8d2e-1a0b9c8d7e6f";

/// One Berth process's worth: its own pool on the shared database, its own services.
struct Process {
    db: Db,
    sharing: Sharing,
    workspaces: Arc<Workspaces>,
    fake: Arc<FakeRuntime>,
}

fn fixture_path() -> String {
    format!("{}/tests/fixtures/two-gpus.json", env!("CARGO_MANIFEST_DIR"))
}

/// The engine both processes drive.
fn engine_with_gpus() -> Arc<FakeRuntime> {
    let fake = Arc::new(FakeRuntime::new());
    fake.set_capabilities(Capabilities {
        runtimes: vec!["runc".into(), "nvidia".into()],
        privileged: Err("refused".into()),
        gpus: true,
        swap_limit: true,
        host_cpus: 2,
        host_memory_bytes: 8 << 30,
    });
    fake
}

async fn process(url: &str, storage: &std::path::Path, fake: Arc<FakeRuntime>) -> Process {
    let db = Db::connect(url).await.unwrap();
    db.migrate().await.unwrap();
    let mut config = Config::default();
    config.storage_root = storage.to_path_buf();
    config.workspace.isolation = berth::config::Isolation::Plain;
    config.gpu.mode = GpuMode::Leased;
    config.gpu.max_gpus = 1;
    config.gpu.idle_release_after = Duration::from_secs(60);
    config.gpu.idle_warning = Duration::from_secs(30);
    config.gpu.warn_before = vec![Duration::from_secs(600).into()];
    config.monitoring.gpu_inventory = fixture_path();
    let mut workspaces = Workspaces::new(db.clone(), fake.clone(), WorkspaceSettings::from_config(&config), &[7; 32], "localhost".into());
    workspaces.probe_timeout = Duration::from_millis(10);
    workspaces.leased_gpus = Some(Arc::new(LeaseBook { db: db.clone() }));
    let workspaces = Arc::new(workspaces);
    let monitor = Arc::new(Monitor::new(db.clone(), MonitorSettings::from_config(&config)));
    let sharing = Sharing::new(db.clone(), SharingSettings::from_config(&config), monitor, workspaces.clone(), Arc::default());
    Process { db, sharing, workspaces, fake }
}

async fn add_user(db: &Db, name: &str) -> Owner {
    let id: i64 = sqlx::query_scalar("INSERT INTO users (username, status, is_admin, created_at, updated_at) VALUES ($1, 'approved', 0, 0, 0) RETURNING id")
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    Owner { id, username: name.into(), approved: true }
}

/// (user, GPU uuid) of every active holding, sorted.
async fn holdings(db: &Db) -> Vec<(String, String)> {
    let rows = sqlx::query("SELECT u.username, h.gpu_uuid FROM gpu_holdings h JOIN users u ON u.id = h.user_id WHERE h.released_at IS NULL ORDER BY u.username")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    rows.iter().map(|r| (r.get("username"), r.get("gpu_uuid"))).collect()
}

async fn events(db: &Db, action: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT username FROM sharing_events WHERE action = $1 ORDER BY id").bind(action).fetch_all(&db.pool).await.unwrap()
}

/// The queue as the board shows it: (request id, user), in serving order.
async fn waiting(p: &Process, viewer: &Owner) -> Vec<(i64, String)> {
    p.sharing.board(viewer).await.unwrap().queue.iter().map(|r| (r.id, r.username.clone())).collect()
}

async fn leases_queue_and_idle_release(backend: DbBackend) {
    let test_db = TestDb::new(backend).await;
    let storage = test_db.dir.path().join("storage");
    let engine = engine_with_gpus();
    let a = process(&test_db.url, &storage, engine.clone()).await;
    let b = process(&test_db.url, &storage, engine.clone()).await;
    let users = [add_user(&a.db, "alice").await, add_user(&a.db, "bob").await, add_user(&a.db, "carol").await, add_user(&a.db, "dave").await];

    // Four users ask at once, through two processes, for one GPU each; there are two.
    let asks = users.iter().enumerate().map(|(i, u)| {
        let p = if i % 2 == 0 { &a } else { &b };
        p.sharing.request(&Actor::System, u, 1, None, 3600, "training")
    });
    let outcomes: Vec<RequestOutcome> = futures_util::future::join_all(asks).await.into_iter().map(Result::unwrap).collect();
    let granted = outcomes.iter().filter(|o| matches!(o, RequestOutcome::Granted { .. })).count();
    assert_eq!(granted, 2, "two GPUs, two grants: {outcomes:?}");
    let held = holdings(&a.db).await;
    assert_eq!(held.len(), 2, "{held:?}");
    assert_ne!(held[0].1, held[1].1, "never one GPU twice: {held:?}");
    let queue: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gpu_requests").fetch_one(&a.db.pool).await.unwrap();
    assert_eq!(queue, 2);
    // Both processes running rounds at the same moment change nothing.
    let (x, y) = tokio::join!(a.sharing.schedule(), b.sharing.schedule());
    assert_eq!(x.unwrap() + y.unwrap(), 0);
    assert_eq!(holdings(&a.db).await, held);

    // An admin moves the second waiting request ahead of the first; a user may not.
    let before = waiting(&a, &users[0]).await;
    assert_eq!(before.len(), 2);
    let refused = a.sharing.reorder(&Actor::User { id: users[0].id, admin: false }, before[1].0, true).await.unwrap_err();
    assert!(refused.to_string().contains("administrators only"), "{refused}");
    b.sharing.reorder(&Actor::System, before[1].0, true).await.unwrap();
    assert_eq!(waiting(&a, &users[0]).await, vec![before[1].clone(), before[0].clone()]);

    // A user over their limit is told so, and nothing is queued.
    let holder = users.iter().find(|u| u.username == held[0].0).unwrap();
    let refused = a.sharing.request(&Actor::System, holder, 1, None, 3600, "").await.unwrap_err();
    assert!(refused.to_string().contains("at most 1 GPU"), "{refused}");

    // The container plan of a holder carries exactly its leased GPU as a device id.
    a.workspaces.start(&Actor::System, holder).await.unwrap();
    let plan = a.fake.workspace(&format!("workspace-{}", holder.username)).unwrap().plan;
    assert_eq!(plan.gpus, GpuRequest::Devices(vec![held[0].1.clone()]));

    // The leases end (the clock moved past them): each ends exactly once, though both
    // processes run the round, and the two waiting users get the GPUs.
    let later = berth::db::now() + 3601;
    let (x, y) = tokio::join!(a.sharing.schedule_at(later), b.sharing.schedule_at(later));
    assert_eq!(x.unwrap() + y.unwrap(), 2, "the two queued requests granted once each");
    assert_eq!(events(&a.db, "expired").await.len(), 2, "each lease expired once");
    let now_held: Vec<String> = holdings(&a.db).await.into_iter().map(|(u, _)| u).collect();
    let waited: Vec<String> = {
        let mut w: Vec<String> = users.iter().map(|u| u.username.clone()).filter(|u| !held.iter().any(|(h, _)| h == u)).collect();
        w.sort();
        w
    };
    assert_eq!(now_held, waited);
    // The earlier holder's running workspace was restarted without its GPU.
    let plan = a.fake.workspace(&format!("workspace-{}", holder.username)).unwrap().plan;
    assert_eq!(plan.gpus, GpuRequest::None, "restarted without the ended lease");

    // Every workspace reads the board under /shared (`berth-gpus`, the login message).
    let board = std::fs::read_to_string(storage.join("shared/.berth/gpus.txt")).unwrap();
    let on_gpu1 = holdings(&a.db).await.into_iter().find(|(_, g)| g == GPU1).unwrap().0;
    assert!(board.contains(&format!("GPU 1  NVIDIA A100-SXM4-80GB  leased by {on_gpu1} until ")), "{board}");
    assert!(board.contains("(training)") && board.contains("leased: a workspace sees only the GPUs it holds"), "{board}");

    // Nobody but the holder (or an admin) gives a GPU back.
    let holding_of = |user: &str| {
        let user = user.to_string();
        let db = a.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT h.id FROM gpu_holdings h JOIN users u ON u.id = h.user_id WHERE u.username = $1 AND h.released_at IS NULL")
                .bind(user)
                .fetch_one(&db.pool)
                .await
                .unwrap()
        }
    };
    let stranger = users.iter().find(|u| u.username != on_gpu1).unwrap();
    let refused = a.sharing.release(&Actor::User { id: stranger.id, admin: false }, holding_of(&on_gpu1).await).await.unwrap_err();
    assert!(refused.to_string().contains("only the holder or an administrator"), "{refused}");
    assert!(holdings(&a.db).await.iter().any(|(u, g)| u == &on_gpu1 && g == GPU1));

    // GPU 1 sits at 3 % in the recording: its holder is warned (on the board and on the
    // workspace's terminals), then it is released.
    let gpu1_owner = users.iter().find(|u| u.username == on_gpu1).unwrap();
    a.workspaces.start(&Actor::System, gpu1_owner).await.unwrap();
    engine.clear_calls();
    let t0 = later + 10;
    a.sharing.schedule_at(t0).await.unwrap();
    assert!(events(&a.db, "idle-gpu-warning").await.is_empty(), "not warned at once");
    a.sharing.schedule_at(t0 + 30).await.unwrap();
    b.sharing.schedule_at(t0 + 30).await.unwrap();
    assert_eq!(events(&a.db, "idle-gpu-warning").await, vec![on_gpu1.clone()], "warned once");
    let told: Vec<String> = engine.calls().into_iter().filter(|c| c.starts_with(&format!("exec workspace-{on_gpu1} sh -c"))).collect();
    assert_eq!(told.len(), 1, "one message on the terminals: {:?}", engine.calls());
    assert!(told[0].contains("GPU 1 has been idle since"), "{told:?}");
    let view = a.sharing.board(gpu1_owner).await.unwrap();
    assert!(view.warnings.iter().any(|w| w.starts_with("GPU 1 is idle and is given back in")), "{:?}", view.warnings);
    b.sharing.schedule_at(t0 + 59).await.unwrap();
    assert!(holdings(&a.db).await.iter().any(|(_, g)| g == GPU1), "not before the whole warning");
    b.sharing.schedule_at(t0 + 60).await.unwrap();
    assert_eq!(events(&a.db, "idle-gpu-release").await, vec![on_gpu1.clone()]);
    assert!(!holdings(&a.db).await.iter().any(|(_, g)| g == GPU1), "GPU 1 is free again");
    // GPU 0 is busy (87 %) and stays held.
    assert!(holdings(&a.db).await.iter().any(|(_, g)| g == GPU0));

    // An admin revokes a holding; the record names who did.
    let admin = add_user(&a.db, "root").await;
    sqlx::query("UPDATE users SET is_admin = 1 WHERE id = $1").bind(admin.id).execute(&a.db.pool).await.unwrap();
    let on_gpu0 = holdings(&a.db).await.into_iter().find(|(_, g)| g == GPU0).unwrap().0;
    a.sharing.release(&Actor::User { id: admin.id, admin: true }, holding_of(&on_gpu0).await).await.unwrap();
    assert!(holdings(&a.db).await.is_empty());
    let revoked: (String, String) = sqlx::query_as("SELECT actor, username FROM sharing_events WHERE action = 'revoke'").fetch_one(&a.db.pool).await.unwrap();
    assert_eq!(revoked, ("root".to_string(), on_gpu0.clone()));

    // A disabled account gives back what it holds and withdraws what it waits for.
    let dave = &users[3];
    assert!(matches!(a.sharing.request(&Actor::System, dave, 1, Some(0), 3600, "").await.unwrap(), RequestOutcome::Granted { .. }));
    b.sharing.forget_user(dave).await.unwrap();
    assert!(holdings(&a.db).await.is_empty());
    assert_eq!(events(&a.db, "account-disabled").await, vec![dave.username.clone()]);
    drop((a, b));
}

#[tokio::test]
async fn leases_queue_and_idle_release_on_sqlite() {
    leases_queue_and_idle_release(DbBackend::Sqlite).await;
}

#[tokio::test]
async fn leases_queue_and_idle_release_on_postgres() {
    leases_queue_and_idle_release(DbBackend::Postgres).await;
}

fn idle_status(server: &TestServer) -> Vec<Value> {
    let out = server.cli(&["idle", "status", "--json"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn an_open_ssh_session_keeps_a_workspace_and_a_quiet_one_is_stopped_after_its_warning() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let mut settings = env(&cleanup, &db.dir.path().join("storage"), 24000);
    settings.push(("BERTH_IDLE__STOP_AFTER".into(), "8s".into()));
    settings.push(("BERTH_IDLE__WARNING".into(), "3s".into()));
    settings.push(("BERTH_IDLE__CHECK_EVERY".into(), "1s".into()));
    settings.push(("BERTH_MONITORING__GPU_INVENTORY".into(), "none".into()));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with(&db, &extra).await;
    let (busy, quiet) = (username("ssh"), username("quiet"));
    for user in [&busy, &quiet] {
        assert!(server.cli(&["user", "add", user], "").status.success());
        let out = server.cli(&["workspace", "start", user], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Just started: the start is what keeps it alive, and it has a time to stop (the command
    // line asks the engine when it started; a listing does not say).
    let fresh = idle_status(&server);
    let quiet_view = fresh.iter().find(|v| v["username"] == quiet.as_str()).unwrap();
    assert_eq!(quiet_view["running"], true, "{quiet_view}");
    assert_eq!(quiet_view["last_signal"], "start", "{quiet_view}");
    assert!(quiet_view["stops_at"].is_i64(), "{quiet_view}");

    // Opening the dashboard counts as using the workspace; its polls do not.
    let visitor_name = username("visitor");
    let visitor = testkit::Browser::new_user(&server, &visitor_name).await;
    let out = server.cli(&["workspace", "start", &visitor_name], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(visitor.get("/dashboard").await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = idle_status(&server);
        let v = status.iter().find(|v| v["username"] == visitor_name.as_str()).unwrap();
        if v["last_signal"] == "portal visit" {
            break;
        }
        assert!(Instant::now() < deadline, "the visit was not seen: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // An SSH session into the busy one: an established connection to its port 22.
    let busy_container = format!("workspace-{busy}");
    docker(&["exec", "-d", &busy_container, "sh", "-c", "sleep 600 | nc 127.0.0.1 22"]);

    // The quiet one is warned, then stopped; the busy one keeps running.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stopped = loop {
        let status = idle_status(&server);
        let of = |u: &str| status.iter().find(|v| v["username"] == u).cloned().unwrap();
        if of(&quiet)["running"] == false {
            break status;
        }
        assert!(Instant::now() < deadline, "the quiet workspace was never stopped: {status:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let busy_view = stopped.iter().find(|v| v["username"] == busy.as_str()).unwrap();
    assert_eq!(busy_view["running"], true, "{busy_view}");
    assert_eq!(busy_view["last_signal"], "SSH session", "{busy_view}");
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &format!("workspace-{quiet}")]), "false");
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &busy_container]), "true");
    // Warned before it was stopped, and both are on the record.
    let record = sqlx::query("SELECT username, action FROM sharing_events ORDER BY id")
        .fetch_all(&testkit::db::sqlite_pool(&db).await)
        .await
        .unwrap();
    let actions: Vec<(String, String)> = record.iter().map(|r| (r.get("username"), r.get("action"))).collect();
    let warned = actions.iter().position(|a| a == &(quiet.clone(), "idle-warning".to_string())).expect("a warning");
    let stop = actions.iter().position(|a| a == &(quiet.clone(), "idle-stop".to_string())).expect("a stop");
    assert!(warned < stop, "{actions:?}");
    assert!(!actions.iter().any(|(u, a)| u == &busy && a == "idle-stop"), "{actions:?}");
    // A stopped workspace stays stopped: a reconciliation does not bring it back.
    assert!(server.cli(&["workspace", "reconcile"], "").status.success());
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &format!("workspace-{quiet}")]), "false");

    // A user reaches none of the admin's controls, whatever they post.
    let mallory = testkit::Browser::new_user(&server, &username("mallory")).await;
    let forms: [(&str, Vec<(&str, &str)>); 3] = [
        ("gpu-limits", vec![("username", busy.as_str()), ("max_gpus", "9")]),
        ("idle-policy", vec![("username", busy.as_str()), ("exempt", "yes")]),
        ("gpu-reorder", vec![("request", "1"), ("direction", "up")]),
    ];
    for (endpoint, form) in &forms {
        assert_eq!(mallory.call(endpoint, form).await.status(), 403, "{endpoint}");
    }
    assert_eq!(mallory.call("sharing-admin-html", &[]).await.status(), 403);
    let after = idle_status(&server);
    assert_eq!(after.iter().find(|v| v["username"] == busy.as_str()).unwrap()["exempt"], false);

    // On this CPU-only machine, `gpu.mode = open` shows no GPUs and refuses a claim plainly.
    let out = server.cli(&["gpu", "list"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no NVIDIA GPUs"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = server.cli(&["gpu", "claim", &busy, "--for", "1h"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no GPUs to share"), "{}", String::from_utf8_lossy(&out.stderr));
    drop(server);
}
