//! A full disk: Berth says so clearly, keeps serving what it can, and loses nothing. The disk
//! is a small tmpfs mounted for the test (CI runs as root), filled to the last byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth::routes::traefik::UserRoute;
use testkit::{Backend, Browser, TestDb, TestServer};

struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount");
        assert!(out.status.success(), "mounting a small tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk { path: dir.path().to_path_buf(), _dir: dir }
    }

    /// Writes zeros until the disk refuses (ENOSPC); returns the filler to free space later.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                    break;
                }
            }
        }
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn secrets(jupyter_token: &str) -> UserRoute {
    UserRoute { upstream_host: "workspace-alice".into(), jupyter_token: jupyter_token.into(), app_secret: "ab".into() }
}

fn writer(dir: &Path) -> berth::routes::traefik::TraefikWriter {
    testkit::service::traefik_writer(dir, None)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn traefik_files_stay_whole_when_the_disk_is_full() {
    let disk = SmallDisk::mount("256k");
    let routes = disk.path.join("traefik");
    std::fs::create_dir(&routes).unwrap();
    let w = writer(&routes);
    w.write_user("alice", &secrets("token-one")).expect("write with room to spare");
    let alice = routes.join("user-alice.yml");
    let before = std::fs::read_to_string(&alice).unwrap();
    assert!(before.contains("token-one"));

    let filler = disk.fill();
    let error = w.write_user("alice", &secrets("token-two")).expect_err("no room for the new file");
    assert!(error.to_string().to_lowercase().contains("space"), "the error says why: {error}");
    assert!(w.write_user("bob", &secrets("token-bob")).is_err());
    // The old file is untouched and valid, and no half-written temporary is left behind.
    assert_eq!(std::fs::read_to_string(&alice).unwrap(), before);
    serde_json::from_str::<serde_json::Value>(&before).expect("still valid");
    let names = names_in(&routes);
    assert!(names.iter().all(|n| n.ends_with(".yml")), "only finished files: {names:?}");
    assert!(!names.contains(&"user-bob.yml".to_string()));

    std::fs::remove_file(filler).unwrap();
    w.write_user("alice", &secrets("token-two")).expect("room again");
    assert!(std::fs::read_to_string(&alice).unwrap().contains("token-two"));
}

#[tokio::test]
async fn a_full_database_disk_gives_a_clear_error_and_loses_nothing() {
    let disk = SmallDisk::mount("8m");
    let db = TestDb::new(Backend::Sqlite).await;
    let url = format!("sqlite://{}/berth.db", disk.path.display());
    let server = TestServer::start_with(&db, &[("BERTH_DATABASE_URL", url.as_str())]).await;
    let out = server.cli(&["user", "add", "root-admin", "--admin", "--password-stdin"], "admin-password-long\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.cli(&["user", "add", "erin", "--password-stdin"], "erin-password-long\n");
    assert!(out.status.success());
    let admin = Browser::new(&server);
    assert!(admin.log_in("root-admin", "admin-password-long").await.status().is_success());

    let filler = disk.fill();
    // SQLite reuses space its log already holds, so some writes still fit; the CLI adds
    // accounts until the database must grow and cannot. Each one it confirmed must survive.
    let mut confirmed = Vec::new();
    let refusal = loop {
        let name = format!("filler-{}", confirmed.len());
        let out = server.cli(&["user", "add", &name], "");
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        confirmed.push(name);
        assert!(confirmed.len() < 5000, "the database never filled up");
    };
    assert!(refusal.contains("full"), "the CLI says the disk is full: {refusal}");

    // A sign-up cannot be stored: the visitor is told so, plainly.
    let newcomer = Browser::new(&server);
    let r = newcomer
        .call("signup", &[("username", "frank"), ("email", "frank@lab.example.org"), ("password", "frank-password-long")])
        .await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("storage is full"), "{body}");
    // A login cannot be recorded either, and says so.
    let erin = Browser::new(&server);
    let r = erin.log_in("erin", "erin-password-long").await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("could not record your login"), "{body}");
    // What is already there keeps working: the admin's session, the pages, the health check.
    assert_eq!(admin.viewer().await["username"], "root-admin");
    assert!(admin.get("/admin").await.status().is_success());

    // Space comes back: nothing was lost and everything works again.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        newcomer
            .call("signup", &[("username", "frank"), ("email", "frank@lab.example.org"), ("password", "frank-password-long")])
            .await
            .status(),
        200
    );
    assert!(erin.log_in("erin", "erin-password-long").await.status().is_success());
    assert_eq!(erin.viewer().await["username"], "erin");
    let users: serde_json::Value = admin.call("users", &[]).await.json().await.unwrap();
    let mut names: Vec<String> =
        users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect();
    names.sort();
    let mut expected: Vec<String> = ["erin", "frank", "root-admin"].iter().map(|s| s.to_string()).chain(confirmed).collect();
    expected.sort();
    assert_eq!(names, expected, "every confirmed account is there");
    let out = server.cli(&["user", "list"], "");
    assert!(out.status.success());
    drop(server);
    // And the file itself is sound.
    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let verdict: String = sqlx::query("PRAGMA integrity_check").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(verdict, "ok");
}

#[tokio::test]
async fn a_full_workspace_storage_refuses_to_start_and_loses_nothing() {
    use app::model::WorkspaceState;
    use testkit::docker::{docker, env, Cleanup};
    use testkit::username;

    let disk = SmallDisk::mount("64m");
    let cleanup = Cleanup::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let storage = disk.path.join("storage");
    let mut settings = env(&cleanup, &storage, 12000);
    settings.push(("BERTH_WORKSPACE__MIN_FREE_MIB".into(), "16".into()));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with(&db, &extra).await;
    let user = username("full");
    let out = server.cli(&["user", "add", &user, "--password-stdin"], "full-password-long\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let browser = Browser::new(&server);
    assert!(browser.log_in(&user, "full-password-long").await.status().is_success());

    // With space, the workspace starts and its user saves a file.
    let out = server.cli(&["workspace", "start", &user], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let container = format!("workspace-{user}");
    docker(&["exec", &container, "sh", "-c", &format!("echo kept > /home/{user}/persist")]);

    let filler = disk.fill();
    // A running workspace is not taken down by a restart that could not start it again, and
    // pressing Start on it changes nothing, so that is not refused.
    let out = server.cli(&["workspace", "restart", &user], "");
    assert!(!out.status.success(), "a restart on a full disk must be refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage is full"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &container]), "true", "still running after a refused restart");
    let out = server.cli(&["workspace", "start", &user], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Stopping always works.
    let out = server.cli(&["workspace", "stop", &user], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The CLI refuses and says why, naming the space.
    let out = server.cli(&["workspace", "start", &user], "");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "a start on a full disk must fail");
    assert!(said.contains("storage is full") && said.contains("MiB free"), "{said}");
    // The dashboard's start button: the user is told plainly, and no server path leaks.
    assert_eq!(browser.call("workspace-action", &[("action", "start")]).await.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let view = loop {
        let view: serde_json::Value = browser.call("workspace", &[]).await.json().await.unwrap();
        if view["error"].is_string() {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "no error shown: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let error = view["error"].as_str().unwrap();
    assert!(error.contains("storage is full"), "{error}");
    assert!(!error.contains(&disk.path.display().to_string()), "no server path in what users see: {error}");
    assert_eq!(view["state"], serde_json::json!(WorkspaceState::Stopped), "{view}");
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &container]), "false");
    // Nothing of the user's was touched.
    assert_eq!(std::fs::read_to_string(storage.join("homes").join(&user).join("persist")).unwrap(), "kept\n");

    // Space comes back. The refused start was not remembered as wanted: a reconciliation
    // (what Berth does when it restarts) leaves the workspace stopped, as its user left it.
    std::fs::remove_file(filler).unwrap();
    let out = server.cli(&["workspace", "reconcile"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &container]), "false");
    // Starting works again and the file is there.
    let out = server.cli(&["workspace", "start", &user], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(docker(&["exec", &container, "cat", &format!("/home/{user}/persist")]), "kept");

    // Reconciliation brings back wanted workspaces one by one: one that cannot start does not
    // keep the next one down, and each failure is reported.
    let second = username("full2");
    let out = server.cli(&["user", "add", &second], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.cli(&["workspace", "start", &second], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    docker(&["stop", "-t", "1", &container, &format!("workspace-{second}")]);
    let filler = disk.fill();
    let out = server.cli(&["workspace", "reconcile"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = report["failed"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(failed.len(), 2, "{report}");
    assert!(failed.iter().all(|f| f.contains("storage is full")), "{report}");
    std::fs::remove_file(filler).unwrap();
    let out = server.cli(&["workspace", "reconcile"], "");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["restarted"].as_array().unwrap().len(), 2, "{report}");
    drop(server);
}

#[tokio::test]
async fn the_cli_says_at_once_that_the_database_disk_is_full() {
    let disk = SmallDisk::mount("8m");
    let work = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = vec![
        ("BERTH_DATABASE_URL".into(), format!("sqlite://{}/berth.db", disk.path.display())),
        ("BERTH_DATA_DIR".into(), work.path().join("data").display().to_string()),
        ("BERTH_CONFIG".into(), work.path().join("berth.toml").display().to_string()),
        ("BERTH_LOG".into(), "warn".into()),
    ];
    let out = testkit::cli(&env, &["user", "add", "alice", "--password-stdin"], "alice-password-long\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Connections closing at the same moment can each leave SQLite's log and shared-memory files
    // for the next one; a single connection closing alone removes them, as after a quiet restart.
    {
        use sqlx::{ConnectOptions, Connection};
        let url = format!("sqlite://{}/berth.db", disk.path.display());
        let mut conn = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap().connect().await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    let files: Vec<_> = std::fs::read_dir(&disk.path).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["berth.db"]);

    // No process holds the database open, so opening it must create SQLite's side files.
    let filler = disk.fill();
    for args in [&["user", "list"][..], &["user", "add", "bob"][..]] {
        let out = testkit::cli(&env, args, "");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} cannot work on a full disk");
        assert!(said.contains("is full") && said.contains("free some space"), "{args:?}: {said}");
        assert!(!said.contains("pool timed out"), "{args:?}: {said}");
    }

    std::fs::remove_file(filler).unwrap();
    let out = testkit::cli(&env, &["user", "list"], "");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && listed.contains("alice") && !listed.contains("bob"), "{listed}");
}
