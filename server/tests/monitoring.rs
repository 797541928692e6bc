//! Monitoring against a real `berth serve` and the real engine (busybox test image): the
//! sampler's figures on the usage panel and the admin page, `/metrics` read by a real parser
//! and refused without its token, the GPU board from a recorded two-GPU inventory (and the
//! CPU-only message without one), the logs endpoints, and the history's compaction on SQLite
//! and PostgreSQL.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::docker::{docker, env, inspect, Cleanup};
use testkit::{username, Backend as DbBackend, Browser, TestDb, TestServer};

const TOKEN: &str = "metrics-token-for-tests-0123456789";

/// A new administrator `name`, logged in.
async fn admin(server: &TestServer, name: &str) -> Browser {
    let out = server.cli(&["user", "add", name, "--admin", "--password-stdin"], &format!("{name}-password-long\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let browser = Browser::new(server);
    assert_eq!(browser.log_in(name, &format!("{name}-password-long")).await.status(), 200);
    browser
}

async fn start_and_wait_running(browser: &Browser) {
    let r = browser.call("workspace-action", &[("action", "start")]).await;
    assert!(r.status().is_success(), "start: {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let view: Value = browser.call("workspace", &[]).await.json().await.unwrap();
        if view["state"] == "Running" && view["error"].is_null() {
            return;
        }
        assert!(Instant::now() < deadline, "the workspace never ran: {view}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn usage(browser: &Browser, user: Option<&str>) -> reqwest::Response {
    match user {
        Some(u) => browser.call("usage", &[("user", u)]).await,
        None => browser.call("usage", &[]).await,
    }
}

/// Polls the caller's (or `user`'s) usage panel until `ready` holds of it.
async fn usage_until(browser: &Browser, user: Option<&str>, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let r = usage(browser, user).await;
        assert_eq!(r.status(), 200, "usage panel");
        let panel: Value = r.json().await.unwrap();
        if ready(&panel) {
            return panel;
        }
        assert!(Instant::now() < deadline, "{what} never came: {panel}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn scrape(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.send().await.expect("scrape")
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("the exposition parses")
}

/// The value of the series `name` whose labels include every pair of `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// Writes the recorded two-GPU inventory with the real containers of `alice` and `bob` in
/// place of the recording's.
fn write_gpu_fixture(path: &std::path::Path, alice: &str, bob: &str) {
    let recorded = include_str!("fixtures/two-gpus.json");
    let alice_id = inspect(&format!("workspace-{alice}"), "{{.Id}}");
    let bob_id = inspect(&format!("workspace-{bob}"), "{{.Id}}");
    assert_eq!((alice_id.len(), bob_id.len()), (64, 64));
    std::fs::write(path, recorded.replace("ALICE_CONTAINER", &alice_id).replace("BOB_CONTAINER", &bob_id)).unwrap();
}

#[tokio::test]
async fn usage_metrics_gpus_and_logs_come_from_the_sampler() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let gpu_file = db.dir.path().join("gpus.json");
    let mut settings = env(&cleanup, &db.dir.path().join("storage"), 17000);
    settings.push(("BERTH_METRICS_TOKEN".into(), TOKEN.into()));
    settings.push(("BERTH_MONITORING__SAMPLE_SECONDS".into(), "1".into()));
    settings.push(("BERTH_MONITORING__GPU_INVENTORY".into(), gpu_file.display().to_string()));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with(&db, &extra).await;
    let (alice_name, bob_name, carol_name) = (username("alice"), username("bob"), username("carol"));
    let alice = Browser::new_user(&server, &alice_name).await;
    let bob = Browser::new_user(&server, &bob_name).await;
    let carol = admin(&server, &carol_name).await;
    // A failed login counts too.
    assert_ne!(Browser::new(&server).log_in(&alice_name, "not-her-password").await.status(), 200);
    start_and_wait_running(&alice).await;
    start_and_wait_running(&bob).await;
    write_gpu_fixture(&gpu_file, &alice_name, &bob_name);

    // The usage panel: figures from the sampler, a history from the database, the GPU alice
    // is on with her process.
    let panel = usage_until(&alice, None, "alice's figures, history and GPU", |p| {
        p["now"]["memory_bytes"].as_u64().is_some_and(|m| m > 0)
            && p["history"].as_array().is_some_and(|h| h.len() >= 2)
            && p["now"]["gpus"].as_array().is_some_and(|g| !g.is_empty())
    })
    .await;
    assert_eq!(panel["username"], alice_name.as_str());
    assert!(!panel.to_string().contains(&bob_name), "alice's panel says nothing of bob, who shares her GPU: {panel}");
    let gpus = panel["now"]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 1, "alice's processes are on GPU 0 only: {gpus:?}");
    assert_eq!(gpus[0]["gpu"]["index"], 0);
    assert_eq!(gpus[0]["gpu"]["utilization_percent"], 87);
    assert_eq!(gpus[0]["processes"], serde_json::json!([{ "pid": 4242, "user": alice_name, "memory_bytes": 21474836480u64 }]));
    assert!(panel["now"]["cpu_cores"].as_f64().is_some_and(|c| c >= 0.0));
    // Sizes are measured as soon as a workspace is seen running (then every few minutes).
    let sized = usage_until(&alice, None, "alice's home and layer sizes", |p| {
        p["now"]["home_bytes"].as_u64().is_some() && p["now"]["writable_layer_bytes"].as_u64().is_some()
    })
    .await;
    assert!(sized["now"]["home_bytes"].as_u64().unwrap() >= 4096, "a home directory takes at least a block: {sized}");
    let history = panel["history"].as_array().unwrap();
    assert!(history.windows(2).all(|w| w[0]["at"].as_i64() <= w[1]["at"].as_i64()), "oldest first");
    assert_eq!(history.last().unwrap()["gpus"][0]["index"], 0, "the GPU is in the stored samples too");

    // Nobody else's panel for a user; any for an admin.
    assert_eq!(usage(&bob, Some(&alice_name)).await.status(), 403, "bob reads alice's usage");
    assert_eq!(usage(&Browser::new(&server), None).await.status(), 401, "no session");
    let seen_by_admin = usage_until(&carol, Some(&alice_name), "alice's panel for the admin", |p| !p["now"].is_null()).await;
    assert_eq!(seen_by_admin["username"], alice_name.as_str());
    let bobs = usage_until(&carol, Some(&bob_name), "bob's GPU, for the admin", |p| {
        p["now"]["gpus"].as_array().is_some_and(|g| !g.is_empty())
    })
    .await;
    assert_eq!(bobs["now"]["gpus"][0]["processes"][0]["pid"], 4343);

    // Pages (server-rendered, as with JavaScript off): alice's charts; the admin's table with
    // totals and the GPU board naming whose processes are where.
    let dashboard = alice.get("/dashboard").await.text().await.unwrap();
    for part in ["id=\"usage-cpu\"", "id=\"usage-memory\"", "id=\"usage-network\"", "id=\"usage-disk\"", "class=\"chart\"", "GPU 0: NVIDIA A100-SXM4-80GB"] {
        let around = dashboard.find("usage").map(|i| &dashboard[i.saturating_sub(200)..(i + 1500).min(dashboard.len())]).unwrap_or(&dashboard);
        assert!(dashboard.contains(part), "the dashboard shows {part}:\n{around}");
    }
    let admin_page = carol.get("/admin").await.text().await.unwrap();
    assert!(admin_page.contains("id=\"host-totals\""), "totals for the host");
    assert!(admin_page.contains("id=\"gpu-board\""), "the GPU board");
    assert!(admin_page.contains(&format!("{alice_name} (pid 4242, 20.0 GiB)")), "alice's process on the board");
    assert!(admin_page.contains(&format!("{bob_name} (pid 4343, 12.0 GiB)")), "bob's process on the board");
    assert!(admin_page.contains("not a workspace (pid 977"), "a host process is nobody's");
    assert!(admin_page.contains(&format!("href=\"/admin/workspaces/{alice_name}\"")), "each workspace's detail page is linked");
    let detail = carol.get(&format!("/admin/workspaces/{alice_name}")).await;
    assert_eq!(detail.status(), 200);
    assert!(detail.text().await.unwrap().contains("id=\"usage-cpu\""), "the detail page shows alice's usage");
    let refused = bob.get(&format!("/admin/workspaces/{alice_name}")).await;
    assert_eq!(refused.status(), 303, "a user is sent away from the admin pages");

    // /metrics: refused without the token, parsed with it.
    let url = format!("{}/metrics", server.base);
    assert_eq!(scrape(&url, None).await.status(), 401, "no token");
    assert_eq!(scrape(&url, Some("metrics-token-for-tests-wrong-one")).await.status(), 401, "a wrong token");
    let with_cookie = carol.http.get(&url).send().await.unwrap();
    assert_eq!(with_cookie.status(), 401, "an admin's session is not the token");
    // One forwardAuth request, so its latency histogram has a sample.
    let _ = reqwest::get(format!("{}/auth/verify", server.base)).await.unwrap();
    let r = scrape(&url, Some(TOKEN)).await;
    assert_eq!(r.status(), 200);
    let kind = r.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = r.text().await.unwrap();
    let scrape = parse(&text);
    for user in [alice_name.as_str(), bob_name.as_str()] {
        assert_eq!(value(&scrape, "berth_workspace_up", &[("user", user)]), Some(1.0), "{user} is up\n{text}");
        assert!(value(&scrape, "berth_workspace_memory_bytes", &[("user", user)]).is_some_and(|m| m > 0.0), "{user}'s memory");
        assert!(value(&scrape, "berth_workspace_cpu_seconds_total", &[("user", user)]).is_some_and(|c| c >= 0.0), "{user}'s CPU time");
        for counter in ["berth_workspace_network_receive_bytes_total", "berth_workspace_disk_write_bytes_total"] {
            assert!(value(&scrape, counter, &[("user", user)]).is_some(), "{counter} for {user}");
        }
    }
    assert_eq!(value(&scrape, "berth_gpu_utilization_percent", &[("gpu", "0")]), Some(87.0));
    assert_eq!(value(&scrape, "berth_gpu_memory_total_bytes", &[("gpu", "1")]), Some(85899345920.0));
    assert_eq!(value(&scrape, "berth_workspace_gpu_memory_bytes", &[("user", &alice_name), ("gpu", "0")]), Some(21474836480.0));
    assert_eq!(value(&scrape, "berth_workspace_gpu_memory_bytes", &[("user", &bob_name), ("gpu", "1")]), None, "bob is not on GPU 1");
    assert_eq!(value(&scrape, "berth_engine_up", &[]), Some(1.0));
    assert!(value(&scrape, "berth_logins_total", &[("result", "ok"), ("method", "password")]).is_some_and(|n| n >= 3.0), "three logins");
    assert_eq!(value(&scrape, "berth_logins_total", &[("result", "failed"), ("method", "password")]), Some(1.0));
    assert!(value(&scrape, "berth_sessions", &[]).is_some_and(|n| n >= 3.0), "three sessions");
    assert!(value(&scrape, "berth_workspace_operations_total", &[("operation", "start"), ("outcome", "ok")]).is_some_and(|n| n >= 2.0));
    assert!(text.contains("berth_verify_duration_seconds_bucket"), "the forwardAuth latency histogram");
    assert!(text.contains("berth_workspace_operation_duration_seconds_bucket{"), "operation durations");
    assert!(
        value(&scrape, "berth_http_requests_total", &[("route", "/auth/verify"), ("method", "GET")]).is_some(),
        "requests are counted by route"
    );
    assert!(
        scrape.samples.iter().filter(|s| s.metric == "berth_http_requests_total").all(|s| !s.labels.get("route").unwrap_or_default().contains(&alice_name)),
        "routes are patterns, never paths with names in them"
    );

    // Grafana's provisioned dashboard asks only for series Berth exposes.
    let dashboard: Value = serde_json::from_str(include_str!("../../docker/grafana/dashboards/berth.json")).expect("dashboard JSON");
    let exposed: HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(panel["gridPos"].is_object(), "every panel is placed: {panel}");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("berth_")) {
                asked += 1;
                assert!(exposed.contains(word), "the dashboard asks for {word}, which /metrics does not have");
            }
        }
    }
    assert!(asked >= 15, "the dashboard covers the figures ({asked} series asked)");

    // Logs: the owner and an admin read them; another user and nobody do not.
    let marker = format!("berth-log-marker-{}", testkit::hex(4));
    docker(&["exec", &format!("workspace-{alice_name}"), "sh", "-c", &format!("echo {marker} > /proc/1/fd/1")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = alice.get("/logs/download").await;
        assert_eq!(r.status(), 200);
        let disposition = r.headers().get("content-disposition").unwrap().to_str().unwrap().to_string();
        assert!(disposition.contains(&format!("workspace-{alice_name}.log")), "{disposition}");
        if r.text().await.unwrap().lines().any(|l| l == marker) {
            break;
        }
        assert!(Instant::now() < deadline, "the printed line is not in the download");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let searched = alice.get(&format!("/logs/download?q={}", marker.to_uppercase())).await.text().await.unwrap();
    assert_eq!(searched.lines().collect::<Vec<_>>(), [marker.as_str()], "the search keeps matching lines only, in any case");
    assert_eq!(bob.get(&format!("/logs/download?user={alice_name}")).await.status(), 403, "bob reads alice's logs");
    assert_eq!(bob.get(&format!("/logs/stream?user={alice_name}")).await.status(), 403);
    assert_eq!(Browser::new(&server).get("/logs/download").await.status(), 401, "no session");
    let by_admin = carol.get(&format!("/logs/download?user={alice_name}")).await;
    assert_eq!(by_admin.status(), 200);
    assert!(by_admin.text().await.unwrap().contains(&marker), "an admin reads anyone's");
    let page = alice.get(&format!("/logs?q={marker}")).await.text().await.unwrap();
    let shown = page.split("id=\"log-lines\"").nth(1).expect("the page's lines").split("</pre>").next().unwrap();
    assert!(shown.contains(&marker), "the logs page shows the line, server-rendered: {shown}");
    let other = alice.get("/logs?q=no-such-line-in-this-log").await.text().await.unwrap();
    let shown = other.split("id=\"log-lines\"").nth(1).expect("the page's lines").split("</pre>").next().unwrap();
    assert!(!shown.contains(&marker), "a search for something else leaves it out: {shown}");
    // The page's server function refuses another user's log, and the GPU board a non-admin.
    assert_eq!(bob.call("workspace-log", &[("user", &alice_name)]).await.status(), 403);
    assert_eq!(bob.call("gpus", &[]).await.status(), 403);

    // Following: a line printed after the stream opened arrives on it.
    let mut stream = alice
        .http
        .get(format!("{}/logs/stream", server.base))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let live = format!("berth-live-marker-{}", testkit::hex(4));
    tokio::time::sleep(Duration::from_millis(500)).await;
    docker(&["exec", &format!("workspace-{alice_name}"), "sh", "-c", &format!("echo {live} > /proc/1/fd/1")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut received = String::new();
    while !received.contains(&format!("data: {live}")) {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(bytes))) => received.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("the live line never came ({other:?}); got:\n{received}"),
        }
    }
    assert!(received.contains("event: line"), "{received}");

    // One account follows at most four logs at once (each is an engine connection).
    let mut open = Vec::new();
    for _ in 0..3 {
        let r = alice.http.get(format!("{}/logs/stream", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let fifth = alice.http.get(format!("{}/logs/stream", server.base)).send().await.unwrap();
    assert_eq!(fifth.status(), 429, "a fifth stream of the same account");
    assert_eq!(bob.http.get(format!("{}/logs/stream", server.base)).send().await.unwrap().status(), 200, "others are not limited by alice's");
    drop(open);
    drop(stream);
    // The server learns of a closed stream at its next write (a keep-alive at the latest, 15 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    while alice.http.get(format!("{}/logs/stream", server.base)).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "closed streams give their places back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An unknown method is counted, but never as a label of its own.
    let odd = reqwest::Method::from_bytes(b"BREW").unwrap();
    let _ = reqwest::Client::new().request(odd, format!("{}/healthz", server.base)).send().await.unwrap();
    let text = reqwest::Client::new().get(&url).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("BREW"), "the method label is one of a fixed set");
    assert!(text.contains("method=\"other\""), "the odd one is counted as other");
}

#[tokio::test]
async fn a_cpu_only_host_says_it_has_no_gpus_and_metrics_can_have_their_own_address() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let metrics_port = testkit::free_port();
    let mut settings = env(&cleanup, &db.dir.path().join("storage"), 18000);
    settings.push(("BERTH_METRICS_LISTEN".into(), format!("127.0.0.1:{metrics_port}")));
    settings.push(("BERTH_MONITORING__SAMPLE_SECONDS".into(), "1".into()));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The default GPU source: NVML, which this CPU-only host does not have.
    let server = TestServer::start_with(&db, &extra).await;
    let dave_name = username("dave");
    let dave = Browser::new_user(&server, &dave_name).await;
    let erin = admin(&server, &username("erin")).await;
    start_and_wait_running(&dave).await;
    let panel = usage_until(&dave, None, "dave's figures", |p| !p["now"].is_null()).await;
    assert_eq!(panel["gpu_note"], "no NVIDIA GPUs on this host");
    assert_eq!(panel["now"]["gpus"], serde_json::json!([]));
    let dashboard = dave.get("/dashboard").await.text().await.unwrap();
    assert!(dashboard.contains("id=\"usage-gpus-none\"") && dashboard.contains("no NVIDIA GPUs on this host"), "the dashboard says so");
    let admin_page = erin.get("/admin").await.text().await.unwrap();
    assert!(admin_page.contains("id=\"gpu-board-none\""), "the GPU board says so");
    assert!(!admin_page.contains("id=\"gpu-board\""), "and shows no table");

    // Without a token the portal's own address exposes nothing; the separate one does.
    let r = scrape(&format!("{}/metrics", server.base), None).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("metrics_token"), "it says how to turn metrics on");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = scrape(&format!("http://127.0.0.1:{metrics_port}/metrics"), None).await;
        assert_eq!(r.status(), 200);
        let scrape = parse(&r.text().await.unwrap());
        if value(&scrape, "berth_workspace_up", &[("user", &dave_name)]) == Some(1.0) {
            assert!(!scrape.samples.iter().any(|s| s.metric.starts_with("berth_gpu_")), "no GPU series on a CPU-only host");
            break;
        }
        assert!(Instant::now() < deadline, "dave's workspace never appeared on the metrics address");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let other = reqwest::get(format!("http://127.0.0.1:{metrics_port}/dashboard")).await.unwrap();
    assert_eq!(other.status(), 404, "the metrics address serves nothing else");
}

async fn history_compaction(backend: DbBackend) {
    use app::model::{GpuPoint, UsagePoint};
    use berth::monitor::history::History;
    let db = TestDb::new(backend).await;
    let pool = testkit::service::database(&db.url).await;
    let history = History::new(pool, 7);
    let now = 1_800_000_000i64; // a whole minute: 30_000_000 × 60
    let point = |cpu: f64, memory: u64| UsagePoint {
        cpu_cores: cpu,
        memory_bytes: memory,
        net_rx_rate: cpu * 10.0,
        gpus: vec![GpuPoint { index: 1, utilization_percent: 50, memory_bytes: 7, temperature_celsius: Some(60) }],
        ..Default::default()
    };
    // Two hours ago: six samples in one minute, three in the next.
    let old = now - 7200;
    for (i, cpu) in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0].iter().enumerate() {
        history.insert("alice", old + i as i64 * 10, 10, &point(*cpu, 100 * (i as u64 + 1))).await.unwrap();
    }
    for (i, cpu) in [0.5, 0.5, 2.0].iter().enumerate() {
        history.insert("alice", old + 60 + i as i64 * 10, 10, &point(*cpu, 600)).await.unwrap();
    }
    // Recent (kept raw), and older than the retention (deleted).
    history.insert("alice", now - 100, 10, &point(9.0, 900)).await.unwrap();
    history.insert("alice", now - 8 * 86_400, 60, &point(1.0, 1)).await.unwrap();
    history.insert("bob", old, 10, &point(7.0, 70)).await.unwrap();

    let done = history.compact(now).await.unwrap();
    assert_eq!(done.averaged, 3, "alice's two minutes and bob's one");
    assert_eq!(done.deleted, 1, "the row older than seven days");
    let alice = history.since("alice", 0).await.unwrap();
    let summary: Vec<(i64, f64, u64)> = alice.iter().map(|p| (p.at, p.cpu_cores, p.memory_bytes)).collect();
    assert_eq!(summary, [(old, 3.5, 350), (old + 60, 1.0, 600), (now - 100, 9.0, 900)]);
    assert_eq!(alice[0].net_rx_rate, 35.0);
    assert_eq!(alice[0].gpus, vec![GpuPoint { index: 1, utilization_percent: 50, memory_bytes: 7, temperature_celsius: Some(60) }]);
    let bob = history.since("bob", 0).await.unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(history.compact(now).await.unwrap(), berth::monitor::history::Compacted { averaged: 0, deleted: 0 }, "a second run changes nothing");

    // A sampling round is one write, in statements of 50 rows: 120 samples of three owners.
    let round: Vec<(String, i64, UsagePoint)> =
        (0..120).map(|i| (format!("round-{}", i % 3), now + i as i64, point(i as f64, i as u64))).collect();
    history.insert_round(&round, 10).await.unwrap();
    let of_one = history.since("round-1", 0).await.unwrap();
    assert_eq!(of_one.len(), 40);
    assert_eq!((of_one[0].at, of_one[0].cpu_cores, of_one[39].memory_bytes), (now + 1, 1.0, 118));
    assert_eq!(of_one[0].gpus.len(), 1, "with its GPU");
}

#[tokio::test]
async fn history_is_averaged_after_an_hour_and_expires_on_sqlite() {
    history_compaction(DbBackend::Sqlite).await;
}

#[tokio::test]
async fn history_is_averaged_after_an_hour_and_expires_on_postgres() {
    history_compaction(DbBackend::Postgres).await;
}
