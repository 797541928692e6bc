//! The dashboard tells the truth about the workspace's services: on the real slim image (which
//! has no code-server) it shows no VS Code link and no VS Code step, each installed service
//! turns done as it answers, the card says "ready" when all do, and on this CPU-only engine,
//! with the default `workspace.gpus = "auto"`, it says there are no GPUs.
//!
//! `BERTH_TEST_WORKSPACE_IMAGE` picks another tag of the image (default `berth/workspace:slim`).

use std::time::{Duration, Instant};

use testkit::chromium::Chromium as Browser;
use testkit::docker::{image_exists, Cleanup};
use testkit::{TestDb, TestServer};

fn image() -> String {
    std::env::var("BERTH_TEST_WORKSPACE_IMAGE").unwrap_or_else(|_| "berth/workspace:slim".into())
}

#[tokio::test]
async fn the_slim_image_shows_only_its_services_and_gets_ready() {
    let image = image();
    assert!(image_exists(&image), "{image} missing: run `make image` (make test does)");
    let cleanup = Cleanup::new();
    let db = TestDb::new(testkit::Backend::Sqlite).await;
    let storage = db.dir.path().join("storage");
    let traefik = db.dir.path().join("traefik");
    // The test settings for workspaces, on the real image, with the default GPUs (`auto`), and
    // Traefik routes written (to a directory nobody reads) so the card has launch links.
    let mut env: Vec<(String, String)> = testkit::docker::env(&cleanup, &storage, 16500)
        .into_iter()
        .filter(|(k, _)| k != "BERTH_WORKSPACE_IMAGE" && k != "BERTH_WORKSPACE__GPUS")
        .collect();
    env.push(("BERTH_WORKSPACE_IMAGE".into(), image.clone()));
    env.push(("BERTH_TRAEFIK_DIR".into(), traefik.display().to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with_site(&db, &env).await;
    let user = testkit::username("svc");
    server.cli_ok(&["user", "add", &user, "--password-stdin"], "svc-password-long\n");
    let b = Browser::start("services").await;

    b.log_in(&server.base, &user, "svc-password-long").await;
    b.wait_path("/dashboard").await;
    b.wait_css("body[data-hydrated='true']").await;
    b.wait_css("#workspace button[data-action='start']").await.click().await.unwrap();
    b.wait_css("#workspace-state[data-state='running']").await;

    // The services come up one by one; the card says ready when every installed one answers.
    let deadline = Instant::now() + Duration::from_secs(240);
    while !b.has("#workspace-ready").await {
        assert!(Instant::now() < deadline, "never ready: {:?}", b.step_states().await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.screenshot("1-ready").await;
    assert_eq!(b.wait_css("#workspace-ready").await.text().await.unwrap(), "ready");
    let steps = b.step_states().await;
    let answering: Vec<(&str, &str)> =
        steps.iter().filter(|(name, _)| name.ends_with(" answering")).map(|(n, s)| (n.as_str(), s.as_str())).collect();
    assert_eq!(
        answering,
        vec![
            ("SSH answering", "done"),
            ("Desktop (VNC) answering", "done"),
            ("Remote desktop (RDP) answering", "done"),
            ("Desktop in browser (noVNC) answering", "done"),
            ("Jupyter answering", "done"),
            ("TensorBoard answering", "done"),
        ],
        "every installed service, and no VS Code: {steps:?}"
    );
    let page = b.wait_css("#workspace").await.text().await.unwrap();
    assert!(!page.contains("VS Code"), "nothing on the card mentions VS Code: {page}");
    // Launch links for the apps the image has, and none for VS Code.
    b.wait_css("#launch [data-app='jupyter']").await;
    b.wait_css("#launch [data-app='desktop']").await;
    assert!(!b.has("[data-app='code']").await, "no VS Code link on the slim image");

    // This engine has no GPUs and the setting is the default `auto`.
    assert_eq!(b.wait_css("#gpus").await.text().await.unwrap(), "no GPUs on this server");

    b.client.close().await.unwrap();
    drop(server);
}

