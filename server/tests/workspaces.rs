//! Workspace lifecycle against this machine's real Docker engine, with a tiny busybox image
//! standing in for the workspace image. Everything a test creates carries its run label and
//! is removed when the test ends, even on panic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::model::{WorkspaceAction, WorkspaceState};
use testkit::docker::{docker, env, inspect, try_docker, Cleanup, TEST_IMAGE};
use testkit::service::{approved_user, backend, config, SYSTEM};
use testkit::{cli, username, Backend as DbBackend, TestDb, TestServer};

#[tokio::test]
async fn create_start_stop_restart_reset_and_home_survives() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let storage = db.dir.path().join("storage");
    let config = config(&cleanup, &storage, 21000);
    let b = backend(&config, &db.url).await;
    let user = username("life");
    let owner = approved_user(&b, &user).await;
    let w = b.workspaces.clone();
    let name = format!("workspace-{user}");

    assert_eq!(w.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Absent);
    w.start(SYSTEM, &owner).await.expect("start");
    let view = w.view(SYSTEM, &owner).await.unwrap();
    assert_eq!(view.state, WorkspaceState::Running);
    let ports = view.ports.expect("ports");
    // Slot 0 of a block at 21000, stride 100.
    assert_eq!((ports.ssh, ports.vnc, ports.rdp), (21022, 21000, 21005));
    assert_eq!(inspect(&name, "{{(index (index .HostConfig.PortBindings \"22/tcp\") 0).HostPort}}"), "21022");
    assert_eq!(inspect(&name, "{{(index (index .NetworkSettings.Ports \"5901/tcp\") 0).HostPort}}"), "21000");
    assert_eq!(inspect(&name, "{{(index (index .NetworkSettings.Ports \"3389/tcp\") 0).HostPort}}"), "21005");
    assert_eq!(inspect(&name, "{{index .NetworkSettings.Ports \"8888/tcp\"}}"), "<no value>", "web ports stay unpublished");
    assert_eq!(inspect(&name, "{{.HostConfig.NetworkMode}}"), format!("berth-ws-{user}"));
    assert_eq!(inspect(&name, "{{index .Config.Labels \"io.berth.user\"}}"), user);
    assert_eq!(inspect(&name, "{{.HostConfig.Memory}}"), (100u64 << 30).to_string());
    assert_eq!(inspect(&name, "{{.HostConfig.Privileged}}"), "false", "as configured for this engine");
    assert_eq!(inspect(&name, "{{.HostConfig.RestartPolicy.Name}}"), "unless-stopped");
    // The published SSH port answers on the host.
    tokio::net::TcpStream::connect(("127.0.0.1", ports.ssh)).await.expect("SSH port answers");

    // Home data written inside the workspace lands in the persistent directory.
    docker(&["exec", &name, "sh", "-c", &format!("echo kept > /home/{user}/persist")]);
    let host_copy = storage.join("homes").join(&user).join("persist");
    assert_eq!(std::fs::read_to_string(&host_copy).unwrap(), "kept\n");
    let uid = inspect(&name, "{{range .Config.Env}}{{println .}}{{end}}");
    assert!(uid.contains("BERTH_UID=10000"), "{uid}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(storage.join("homes").join(&user)).unwrap().uid(), 10000, "home belongs to the user");

    w.stop(SYSTEM, &owner).await.expect("stop");
    assert_eq!(w.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Stopped);
    w.stop(SYSTEM, &owner).await.expect("stopping a stopped workspace is fine");

    w.restart(SYSTEM, &owner).await.expect("restart");
    assert_eq!(w.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Running);

    let before = inspect(&name, "{{.Id}}");
    w.reset(SYSTEM, &owner).await.expect("reset");
    let after = inspect(&name, "{{.Id}}");
    assert_ne!(before, after, "reset makes a new container");
    assert_eq!(docker(&["exec", &name, "cat", &format!("/home/{user}/persist")]), "kept", "home survives reset");
    assert_eq!(cleanup.containers().len(), 1);

    w.remove(SYSTEM, &owner).await.expect("remove");
    assert!(cleanup.containers().is_empty());
    assert!(host_copy.exists(), "removing the container never deletes the home");
    w.remove(SYSTEM, &owner).await.expect("removing twice is fine");
}

#[tokio::test]
async fn fifty_concurrent_starts_give_exactly_one_container() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let storage = db.dir.path().join("storage");
    let config = config(&cleanup, &storage, 22000);
    // Two independent service instances on one database stand for two Berth processes.
    let first = backend(&config, &db.url).await;
    let second = backend(&config, &db.url).await;
    let user = username("race");
    let owner = approved_user(&first, &user).await;

    let mut tasks = Vec::new();
    for i in 0..50 {
        let w = if i % 2 == 0 { first.workspaces.clone() } else { second.workspaces.clone() };
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move { w.start(SYSTEM, &owner).await }));
    }
    for task in tasks {
        task.await.unwrap().expect("every start succeeds");
    }
    assert_eq!(cleanup.containers().len(), 1, "exactly one container");
    assert_eq!(first.workspaces.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Running);
}

#[tokio::test]
async fn concurrent_cli_processes_never_both_create() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let storage = db.dir.path().join("storage");
    let mut env = env(&cleanup, &storage, 23000);
    env.extend(TestServer::env_for(&db, 0));
    let user = username("proc");
    assert!(cli(&env, &["user", "add", &user], "").status.success());

    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(testkit::berth())
                .args(["workspace", "start", &user])
                .envs(env.iter().cloned())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait for every process before judging, so none outlives the test's clean-up.
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for out in outputs {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(cleanup.containers().len(), 1);
    let status = cli(&env, &["workspace", "status", &user, "--json"], "");
    let view: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    assert_eq!(view["state"], "Running");
    assert_eq!(view["ports"]["ssh"], 23022);
}

#[tokio::test]
async fn killed_mid_start_recovers_when_started_again() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let storage = db.dir.path().join("storage");
    let docker_env = env(&cleanup, &storage, 24000);
    let mut env = docker_env.clone();
    env.extend(TestServer::env_for(&db, testkit::free_port()));
    let user = username("kill");
    assert!(cli(&env, &["user", "add", &user], "").status.success());
    let pool = {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&format!("{}?mode=rwc", db.url)).await.unwrap()
    };
    let holder_of = |pool: sqlx::AnyPool, user: String| async move {
        sqlx::query_as::<_, (String,)>("SELECT holder FROM workspace_locks WHERE username = $1")
            .bind(user)
            .fetch_optional(&pool)
            .await
            .expect("read workspace_locks")
            .map(|(holder,)| holder)
    };

    let mut child = std::process::Command::new(testkit::berth())
        .args(["workspace", "start", &user])
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 in the middle of the start: once it has recorded the user's intent (desired
    // state running, written under the lease) while it still holds the user's lease. The
    // lease's holder is "host:pid:nonce": it must name this very process.
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let wanted: Option<(String,)> = sqlx::query_as("SELECT desired_state FROM workspaces WHERE desired_state = 'running'")
            .fetch_optional(&pool)
            .await
            .unwrap_or(None);
        if wanted.is_some() {
            if let Some(holder) = holder_of(pool.clone(), user.clone()).await {
                if holder.split(':').nth(1) == Some(pid.as_str()) {
                    break holder;
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("`berth workspace start` ended ({status}) before it was seen mid-start holding its lease");
        }
        assert!(Instant::now() < deadline, "`berth workspace start` (pid {pid}) was never seen holding the lease with the intent recorded");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    child.kill().expect("kill -9 the start");
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the start was killed, it did not finish: {status}");
    // The dead process still holds the lease: a crash mid-start is what the rest recovers from.
    assert_eq!(
        holder_of(pool.clone(), user.clone()).await.as_deref(),
        Some(held.as_str()),
        "the lease of the killed process was left behind (it was killed while holding it)"
    );
    // Whether the container exists yet depends on where the kill landed; either is fine.
    let state_after_kill = try_docker(&["inspect", "-f", "{{.State.Status}}", &format!("workspace-{user}")]);
    eprintln!("container right after kill -9: {state_after_kill:?}");

    // A new server process reconciles at start-up: the user wanted it running.
    let extra: Vec<(&str, &str)> = docker_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with(&db, &extra).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = server.cli(&["workspace", "status", &user, "--json"], "");
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if view["state"] == "Running" {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {view}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(cleanup.containers().len(), 1);
    let locks: Vec<(String,)> = sqlx::query_as("SELECT holder FROM workspace_locks").fetch_all(&pool).await.unwrap();
    assert!(locks.is_empty(), "the dead process's lock was cleared: {locks:?}");
    // And a start issued again is simply a no-op success.
    let out = server.cli(&["workspace", "start", &user], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cleanup.containers().len(), 1);
}

#[tokio::test]
async fn engine_unreachable_gives_clear_error_and_recovers() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let storage = db.dir.path().join("storage");
    let socket = db.dir.path().join("docker.sock");
    let mut config = config(&cleanup, &storage, 25000);
    config.docker_host = Some(format!("unix://{}", socket.display()));
    let b = backend(&config, &db.url).await;
    let user = username("down");
    let owner = approved_user(&b, &user).await;
    let w = b.workspaces.clone();

    let error = w.start(SYSTEM, &owner).await.expect_err("no engine").to_string();
    assert!(error.contains("Docker engine is not reachable"), "{error}");
    let view = w.view(SYSTEM, &owner).await.unwrap();
    assert_eq!(view.state, WorkspaceState::Error);
    assert!(view.engine_problem.is_some());

    // The engine "comes back" at the configured address: no restart needed.
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();
    w.start(SYSTEM, &owner).await.expect("start after recovery");
    let view = w.view(SYSTEM, &owner).await.unwrap();
    assert_eq!(view.state, WorkspaceState::Running);
    assert_eq!(view.engine_problem, None);
}

#[tokio::test]
async fn missing_image_names_the_image_and_how_to_build_it() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let mut config = config(&cleanup, &db.dir.path().join("storage"), 26000);
    config.workspace_image = "berth-test/not-built:nope".into();
    let b = backend(&config, &db.url).await;
    let user = username("noimg");
    let owner = approved_user(&b, &user).await;
    let error = b.workspaces.start(SYSTEM, &owner).await.expect_err("no image").to_string();
    assert!(error.contains("berth-test/not-built:nope") && error.contains("make image"), "{error}");
    let view = b.workspaces.view(SYSTEM, &owner).await.unwrap();
    assert!(view.error.unwrap_or_default().contains("berth-test/not-built:nope"));
}

#[tokio::test]
async fn drift_is_shown_and_applied_at_the_next_start() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let config = config(&cleanup, &db.dir.path().join("storage"), 27000);
    let b = backend(&config, &db.url).await;
    let user = username("drift");
    let owner = approved_user(&b, &user).await;
    let w = b.workspaces.clone();
    w.start(SYSTEM, &owner).await.unwrap();
    assert!(!w.view(SYSTEM, &owner).await.unwrap().drift);

    let overrides = berth::workspace::spec::ResourceOverrides { cpus: Some(1.5), memory_limit_gib: Some(2), ..Default::default() };
    w.set_overrides(SYSTEM, &owner, &overrides).await.unwrap();
    assert!(w.view(SYSTEM, &owner).await.unwrap().drift, "running container no longer matches");
    let overview = w.overview(SYSTEM).await.unwrap();
    assert!(overview.rows.iter().any(|r| r.username == user && r.drift));

    w.stop(SYSTEM, &owner).await.unwrap();
    w.start(SYSTEM, &owner).await.unwrap();
    let view = w.view(SYSTEM, &owner).await.unwrap();
    assert!(!view.drift);
    assert_eq!(view.limits.cpus, 1.5);
    let name = format!("workspace-{user}");
    assert_eq!(inspect(&name, "{{.HostConfig.NanoCpus}}"), "1500000000");
    assert_eq!(inspect(&name, "{{.HostConfig.Memory}}"), (2u64 << 30).to_string());
}

#[tokio::test]
async fn a_regenerated_password_is_kept_when_the_running_workspace_cannot_take_it() {
    use berth::workspace::{Credential, CredentialApplied, WorkspaceError};
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let config = config(&cleanup, &db.dir.path().join("storage"), 27500);
    let b = backend(&config, &db.url).await;
    let user = username("cred");
    let owner = approved_user(&b, &user).await;
    let w = b.workspaces.clone();

    // Nothing running: storing it is all there is to do; the next start applies it.
    assert_eq!(w.regenerate_credential(SYSTEM, &owner, Credential::SshPassword).await.unwrap(), CredentialApplied::AtNextStart);

    // The busybox stand-in lacks the image's berth-set-credentials, so the exec fails.
    w.start(SYSTEM, &owner).await.unwrap();
    let before = w.record(&owner).await.unwrap().unwrap().secrets.ssh_password;
    let error = w.regenerate_credential(SYSTEM, &owner, Credential::SshPassword).await.expect_err("the exec cannot work here");
    let text = error.to_string();
    assert!(
        text.starts_with("the new SSH password is saved and takes effect when the workspace next starts, but it could not be applied to the running workspace now: "),
        "{text}"
    );
    assert!(text.contains("/usr/local/lib/berth/berth-set-credentials"), "says what failed: {text}");
    assert!(text.contains("no such file or directory"), "and why: {text}");
    assert!(matches!(error, WorkspaceError::CredentialNotApplied { credential: "SSH password", .. }));
    let after = w.record(&owner).await.unwrap().unwrap().secrets.ssh_password;
    assert_ne!(after, before, "the new password is stored all the same");
    assert_eq!(after.len(), 20);

    w.stop(SYSTEM, &owner).await.unwrap();
    assert_eq!(w.regenerate_credential(SYSTEM, &owner, Credential::VncPassword).await.unwrap(), CredentialApplied::AtNextStart);
}

#[tokio::test]
async fn reconcile_adopts_and_reports_orphans_and_foreign_containers() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let config = config(&cleanup, &db.dir.path().join("storage"), 28000);
    let b = backend(&config, &db.url).await;
    let user = username("adopt");
    let owner = approved_user(&b, &user).await;
    b.workspaces.start(SYSTEM, &owner).await.unwrap();

    // A second Berth (fresh process state) adopts the running workspace.
    let again = backend(&config, &db.url).await;
    let orphan = username("ghost");
    let foreign = username("foreign");
    docker(&["run", "-d", "--name", &format!("workspace-{orphan}"), "--label", "io.berth.managed=true",
        "--label", &format!("io.berth.user={orphan}"), "--label", &cleanup.label, TEST_IMAGE]);
    docker(&["run", "-d", "--name", &format!("workspace-{foreign}"), "--label", &cleanup.label, TEST_IMAGE]);
    let report = again.workspaces.reconcile(SYSTEM).await.unwrap();
    assert!(report.adopted.contains(&user), "{report:?}");
    assert!(report.orphans.contains(&orphan), "{report:?}");
    assert!(report.foreign.contains(&format!("workspace-{foreign}")), "{report:?}");
    assert!(report.restarted.is_empty(), "nothing needed restarting: {report:?}");
    assert_eq!(again.workspaces.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Running);
}

#[tokio::test]
async fn background_start_shows_progress_steps_and_services_answering() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let config = config(&cleanup, &db.dir.path().join("storage"), 29000);
    let b = backend(&config, &db.url).await;
    let user = username("steps");
    let owner = approved_user(&b, &user).await;
    let w: Arc<berth::workspace::Workspaces> = b.workspaces.clone();
    w.apply_in_background(SYSTEM, &owner, WorkspaceAction::Start).unwrap();
    assert_eq!(w.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Starting, "starting shows at once");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = w.view(SYSTEM, &owner).await.unwrap();
        let answering = view.steps.iter().filter(|s| s.name.ends_with("answering")).collect::<Vec<_>>();
        if view.state == WorkspaceState::Running && !answering.is_empty()
            && answering.iter().all(|s| s.state == app::model::StepState::Done)
        {
            let names: Vec<_> = view.steps.iter().map(|s| s.name.as_str()).collect();
            assert!(names.contains(&"create container") && names.contains(&"start container") && names.contains(&"SSH answering"), "{names:?}");
            break;
        }
        assert!(Instant::now() < deadline, "services never all answered: {view:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What the view says, the engine says too.
    assert_eq!(inspect(&format!("workspace-{user}"), "{{.State.Running}}"), "true");
    assert_eq!(cleanup.containers().len(), 1);
}

#[tokio::test]
async fn routes_follow_the_workspace_and_vanish_when_the_user_is_disabled() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let traefik = db.dir.path().join("traefik");
    let mut config = config(&cleanup, &db.dir.path().join("storage"), 31000);
    config.traefik_dir = Some(traefik.clone());
    config.domain = "lab.example.org".into();
    let b = backend(&config, &db.url).await;
    let user = username("routes");
    let owner = approved_user(&b, &user).await;
    b.workspaces.start(SYSTEM, &owner).await.unwrap();
    let file = traefik.join(format!("user-{user}.yml"));
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).expect("routes written at start")).unwrap();
    berth::routes::traefik::TraefikWriter::check_user(&value, &user).unwrap();
    // Launch links come once the workspace has said which services it has (the busybox
    // stand-in declares none: every app is offered, as before images declared theirs).
    let deadline = Instant::now() + Duration::from_secs(30);
    let jupyter = loop {
        let view = b.workspaces.view(SYSTEM, &owner).await.unwrap();
        if let Some(link) = view.apps.iter().find(|a| a.key == "jupyter") {
            break link.clone();
        }
        assert!(Instant::now() < deadline, "no Jupyter launch link: {view:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(jupyter.url, format!("http://jupyter-{user}.lab.example.org/lab"));

    // A stale file of a user who no longer exists is removed; a deleted one is rewritten.
    std::fs::write(traefik.join("user-ghost.yml"), "{}").unwrap();
    std::fs::remove_file(&file).unwrap();
    let report = b.workspaces.reconcile(SYSTEM).await.unwrap();
    assert_eq!(report.stale_routes, vec!["ghost".to_string()]);
    assert!(file.exists(), "missing file repaired");

    b.disable_user(&user).await.unwrap();
    assert!(!file.exists(), "a disabled user has no routes");
    assert_eq!(b.workspaces.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Stopped, "and nothing running");
}

/// Certificates made with the openssl command line: a CA, the engine's server certificate for
/// 127.0.0.1, a client certificate the CA signed, and a self-signed client the engine must refuse.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = |name: &str| openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    key("ca-key.pem");
    openssl(&["req", "-x509", "-new", "-key", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=berth-test-ca"]);
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        key(&format!("{name}-key.pem"));
        openssl(&["req", "-new", "-key", &format!("{name}-key.pem"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={name}")]);
        openssl(&[
            "x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-out", &format!("{name}.pem"), "-days", "2", "-extfile", ext,
        ]);
    }
    key("rogue-key.pem");
    openssl(&["req", "-x509", "-new", "-key", "rogue-key.pem", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=rogue"]);
}

/// The local engine behind a TLS listener that demands a client certificate from our CA, as a
/// remote `dockerd --tlsverify` does (rustls, the same checks Go's TLS server makes); stopped
/// when dropped.
struct TlsEngine {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl TlsEngine {
    async fn start(dir: &std::path::Path) -> TlsEngine {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{server::WebPkiClientVerifier, RootCertStore, ServerConfig};

        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
        let chain = CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
        let config = ServerConfig::builder().with_client_cert_verifier(verifier).with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client without a certificate from the CA ends here, in the handshake.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                });
            }
        });
        TlsEngine { port, task }
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn engine_over_tcp_with_tls_and_client_certificates() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let engine = TlsEngine::start(certs.path()).await;
    let host = format!("tcp://127.0.0.1:{}", engine.port);
    // What Berth reads from BERTH_DOCKER_TLS_DIR: ca.pem, cert.pem, key.pem.
    let tls_dir = |client: &str| {
        let dir = certs.path().join(format!("berth-{client}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(certs.path().join("ca.pem"), dir.join("ca.pem")).unwrap();
        std::fs::copy(certs.path().join(format!("{client}.pem")), dir.join("cert.pem")).unwrap();
        std::fs::copy(certs.path().join(format!("{client}-key.pem")), dir.join("key.pem")).unwrap();
        dir
    };

    // A client certificate the engine does not trust: refused, with the engine's address named.
    let mut config = config(&cleanup, &db.dir.path().join("storage"), 20000);
    config.docker_host = Some(host.clone());
    config.docker_tls_dir = Some(tls_dir("rogue"));
    let rogue = backend(&config, &db.url).await;
    let user = username("tls");
    let owner = approved_user(&rogue, &user).await;
    let error = rogue.workspaces.start(SYSTEM, &owner).await.expect_err("untrusted client").to_string();
    assert!(error.contains("Docker engine is not reachable") && error.contains(&host), "{error}");
    assert!(cleanup.containers().is_empty());

    // The CA's client: the whole lifecycle runs over TLS.
    config.docker_tls_dir = Some(tls_dir("client"));
    let trusted = backend(&config, &db.url).await;
    trusted.workspaces.start(SYSTEM, &owner).await.expect("start over TLS");
    let name = format!("workspace-{user}");
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(trusted.workspaces.view(SYSTEM, &owner).await.unwrap().state, WorkspaceState::Running);
    trusted.workspaces.stop(SYSTEM, &owner).await.expect("stop over TLS");
    assert_eq!(inspect(&name, "{{.State.Running}}"), "false");
    assert_eq!(cleanup.containers().len(), 1);
}

/// The first run on this very engine (it refuses `--privileged`, has no GPUs): `auto` for both
/// settings starts a workspace, and the probe leaves nothing behind.
#[tokio::test]
async fn auto_isolation_and_gpus_work_on_this_engine() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let storage = db.dir.path().join("storage");
    let mut config = config(&cleanup, &storage, 25900);
    config.workspace.isolation = berth::config::Isolation::Auto;
    config.workspace.gpus = "auto".into();
    let b = backend(&config, &db.url).await;
    let user = username("auto");
    let owner = approved_user(&b, &user).await;
    b.workspaces.start(SYSTEM, &owner).await.expect("a workspace starts with auto isolation and GPUs");
    let privileged_here = try_docker(&["run", "--rm", "--privileged", "--label", &cleanup.label, "berth-test/busybox:latest", "true"]).is_ok();
    let expected = if privileged_here { berth::config::Isolation::Privileged } else { berth::config::Isolation::Plain };
    assert_eq!(b.workspaces.isolation().await.unwrap(), expected);
    assert_eq!(inspect(&format!("workspace-{user}"), "{{.HostConfig.DeviceRequests}}"), "[]", "no GPUs asked of a CPU-only engine");
    assert_eq!(docker(&["ps", "-aq", "--filter", "label=io.berth.probe"]), "", "the privileged probe is removed");
    // Swap accounting as the Docker CLI reports it, and the card's words for it.
    let swap_limit = docker(&["info", "--format", "{{.SwapLimit}}"]) == "true";
    assert_eq!(b.workspaces.capabilities().await.unwrap().swap_limit, swap_limit);
    let card = b.workspaces.view(SYSTEM, &owner).await.unwrap();
    let expected = if swap_limit { "swap 50 GiB" } else { "swap not limited on this server" };
    assert_eq!(card.limits.swap_summary, expected);
}
