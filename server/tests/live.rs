//! The dashboard's push channel, `GET /events/workspace` (server-sent events): a logged-in
//! user gets their own workspace's view, as it changes; nobody else's, and nothing without a
//! portal session. Against a real `berth serve` and the real engine (busybox test image).



use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::docker::{env, Cleanup};
use testkit::{username, Backend as DbBackend, Browser, TestDb, TestServer};

const DOMAIN: &str = "lab.example.org";

/// An open event stream, read as the browser's `EventSource` does.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(browser: &Browser) -> Events {
        let response = browser
            .http
            .get(format!("{}/events/workspace", browser.base))
            .header("Accept", "text/event-stream")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "the owner's stream opens");
        let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(kind.as_deref(), Some("text/event-stream"));
        Events { response, buffer: String::new() }
    }

    /// The next `workspace` event's data, or None when none came within `within`. Comments
    /// (keep-alives) and the `retry:` field are skipped.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message";
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = if v.trim() == "workspace" { "workspace" } else { "other" };
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                assert_eq!(name, "workspace", "only workspace events: {block}");
                return Some(serde_json::from_str(&data.join("\n")).expect("the event's data is JSON"));
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                Ok(Ok(None)) => panic!("the stream ended"),
                Ok(Err(e)) => panic!("reading the stream: {e}"),
                Err(_) => return None,
            }
        }
    }
}

#[tokio::test]
async fn the_owner_alone_gets_their_workspace_pushed_as_it_changes() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let mut settings = env(&cleanup, &db.dir.path().join("storage"), 14000);
    settings.push(("BERTH_DOMAIN".into(), DOMAIN.into()));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with(&db, &extra).await;
    let (alice_name, bob_name) = (username("alice"), username("bob"));
    let alice = Browser::new_user(&server, &alice_name).await;
    let bob = Browser::new_user(&server, &bob_name).await;
    let url = format!("{}/events/workspace", server.base);
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // No session, a made-up one, or alice's app-host cookie: no stream.
    assert_eq!(plain.get(&url).send().await.unwrap().status(), 401, "no session");
    let forged = plain.get(&url).header("Cookie", "berth_session=AAAAAAAAAAAAAAAAAAAAAA").send().await.unwrap();
    assert_eq!(forged.status(), 401, "an unknown session id");
    let portal = format!("berth_session={}", alice.session_cookie().expect("alice's session"));
    let host = format!("{alice_name}-code.{DOMAIN}");
    let app = testkit::app_cookie(&server.base, &portal, &alice_name, &host, "http").await;
    assert!(app.starts_with("berth_app="), "{app}");
    assert_eq!(plain.get(&url).header("Cookie", &app).send().await.unwrap().status(), 401, "an app host's cookie");

    // Each stream starts with its owner's own view.
    let mut alice_events = Events::open(&alice).await;
    let first = alice_events.next(Duration::from_secs(10)).await.expect("alice's first event");
    assert_eq!((first["username"].as_str(), first["state"].as_str()), (Some(alice_name.as_str()), Some("Absent")));
    let mut bob_events = Events::open(&bob).await;
    let first = bob_events.next(Duration::from_secs(10)).await.expect("bob's first event");
    assert_eq!((first["username"].as_str(), first["state"].as_str()), (Some(bob_name.as_str()), Some("Absent")));

    // Alice starts her workspace: her stream follows the progress to running, pushed (nobody asks).
    let r = alice.call("workspace-action", &[("action", "start")]).await;
    assert!(r.status().is_success(), "start: {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(view) = alice_events.next(left).await else { panic!("no running state pushed; saw {seen:?}") };
        assert_eq!(view["username"].as_str(), Some(alice_name.as_str()), "only alice's own workspace");
        let state = view["state"].as_str().unwrap().to_string();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        // Running (not Starting) once the operation has finished.
        if state == "Running" {
            assert!(view["error"].is_null(), "{view}");
            assert_eq!(view["ports"]["ssh"], 14022);
            break;
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("Starting"), "the progress is pushed, not only the end: {seen:?}");

    // Bob's stream said nothing of it: his own view did not change.
    assert_eq!(bob_events.next(Duration::from_millis(500)).await, None, "bob gets nothing of alice's");

    // Stopping is pushed too.
    let r = alice.call("workspace-action", &[("action", "stop")]).await;
    assert!(r.status().is_success(), "stop: {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let view = alice_events.next(left).await.expect("stopped pushed");
        assert_eq!(view["username"].as_str(), Some(alice_name.as_str()));
        if view["state"] == "Stopped" {
            break;
        }
    }
    assert_eq!(bob_events.next(Duration::from_millis(500)).await, None, "bob still gets nothing of alice's");
}
