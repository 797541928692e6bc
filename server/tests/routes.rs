//! Routes into workspaces: Traefik files against the JSON Schema, atomic rewrites under
//! concurrent readers, the forwardAuth matrix over HTTP, and the Guacamole exchange.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use berth::routes::hosts::HostTemplates;
use berth::routes::traefik::{RouteSecrets, TraefikSettings, TraefikWriter};
use serde_json::Value;
use support::{location, Backend, Browser, TestDb, TestServer};

fn shared() -> PathBuf {
    std::env::var("BERTH_SHARED_DIR")
        .map(Into::into)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn writer(dir: &Path, cert_resolver: Option<&str>) -> TraefikWriter {
    TraefikWriter::new(TraefikSettings {
        dir: dir.to_path_buf(),
        portal_internal_url: "http://berth:3000".into(),
        portal_host: "berth.lab.example.org".into(),
        domain: "lab.example.org".into(),
        hosts: HostTemplates::default(),
        entry_point: "websecure".into(),
        cert_resolver: cert_resolver.map(Into::into),
        tls: true,
    })
}

fn secrets(jupyter_token: &str, app_secret: &str) -> RouteSecrets {
    RouteSecrets { jupyter_token: jupyter_token.into(), app_secret: app_secret.into() }
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).expect("file is complete JSON (YAML)")
}

#[test]
fn every_generated_file_validates_and_every_router_is_authenticated() {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(shared().join("testdata/traefik/traefik-v3-file-provider.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for resolver in [Some("le"), None] {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path(), resolver);
        let users = [("alice".to_string(), secrets("tok-a", "0a0a")), ("bob-2".to_string(), secrets("tok-b", "0b0b"))];
        w.reconcile(&users).unwrap();
        let mut routers_seen = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let value = read(&path);
            let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            for (router_name, router) in value["http"]["routers"].as_object().unwrap() {
                routers_seen += 1;
                if name == "portal.yml" {
                    // The portal's own pages: Berth authenticates them itself.
                    assert_eq!(router_name, "berth-portal");
                    continue;
                }
                let owner = name.strip_prefix("user-").unwrap().strip_suffix(".yml").unwrap();
                let first = router["middlewares"][0].as_str().unwrap_or_default();
                assert_eq!(first, format!("berth-auth-{owner}"), "{name}: {router_name} lacks its owner's auth");
                let mw = &value["http"]["middlewares"][first]["forwardAuth"];
                assert_eq!(mw["address"], format!("http://berth:3000/auth/verify?owner={owner}"));
                assert_eq!(mw["trustForwardHeader"], false);
                if router_name.ends_with("-code") || router_name.ends_with("-tensorboard") {
                    let gate = router["middlewares"][1].as_str().unwrap_or_default();
                    assert_eq!(gate, format!("berth-app-secret-{owner}"), "{name}: {router_name}");
                    let expected = if owner == "alice" { "0a0a" } else { "0b0b" };
                    assert_eq!(value["http"]["middlewares"][gate]["headers"]["customRequestHeaders"]["X-Berth-App-Secret"], expected);
                }
            }
        }
        assert_eq!(routers_seen, 9, "4 routers per user plus the portal's");
    }
}

#[test]
fn readers_never_see_a_partial_file_during_ten_thousand_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(dir.path(), Some("le"));
    w.write_user("alice", &secrets("token-0", "ab")).unwrap();
    let path = dir.path().join("user-alice.yml");
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (done, reads, path) = (done.clone(), reads.clone(), path.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let bytes = std::fs::read(&path).expect("the file is always there");
                    let value: Value = serde_json::from_slice(&bytes).expect("never partial");
                    TraefikWriter::check_user(&value, "alice").expect("never without auth");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 0..10_000 {
        w.write_user("alice", &secrets(&format!("token-{i}"), "ab")).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader saw a partial or unsafe file");
    }
    assert!(reads.load(Ordering::Relaxed) > 100, "readers really read concurrently");
    let last = read(&path);
    assert_eq!(last["http"]["middlewares"]["berth-jupyter-token-alice"]["headers"]["customRequestHeaders"]["Authorization"], "token token-9999");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}

const DOMAIN: &str = "lab.example.org";

async fn gateway_server() -> (TestDb, TestServer) {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start_with(&db, &[("BERTH_DOMAIN", DOMAIN), ("BERTH_PUBLIC_URL", "https://berth.lab.example.org")]).await;
    for (name, admin) in [("alice", false), ("bob", false), ("root-admin", true), ("dan", false)] {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        assert!(server.cli(&args, &format!("{name}-password-long\n")).status.success());
    }
    (db, server)
}

/// Logs in through the portal as the public origin would, returning the session cookie value.
async fn session_of(server: &TestServer, name: &str) -> String {
    let browser = Browser::at(&server.base);
    let r = browser
        .http
        .post(format!("{}/api/login", server.base))
        .header("Origin", "https://berth.lab.example.org")
        .form(&[("username", name), ("password", &format!("{name}-password-long"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login {name}");
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    cookie.split(';').next().unwrap().strip_prefix("berth_session=").unwrap().to_string()
}

struct Ask<'a> {
    owner: &'a str,
    host: &'a str,
    session: Option<&'a str>,
    accept: &'a str,
    origin: Option<&'a str>,
    upgrade: bool,
    uri: &'a str,
}

impl<'a> Ask<'a> {
    fn new(owner: &'a str, host: &'a str) -> Self {
        Ask { owner, host, session: None, accept: "text/html,application/xhtml+xml", origin: None, upgrade: false, uri: "/lab?x=1" }
    }
}

async fn verify(server: &TestServer, ask: Ask<'_>) -> reqwest::Response {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut r = http
        .get(format!("{}/auth/verify?owner={}", server.base, ask.owner))
        .header("X-Forwarded-Host", ask.host)
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", ask.uri)
        .header("Accept", ask.accept);
    if let Some(s) = ask.session {
        r = r.header("Cookie", format!("other=1; berth_session={s}"));
    }
    if let Some(o) = ask.origin {
        r = r.header("Origin", o);
    }
    if ask.upgrade {
        r = r.header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==").header("Sec-WebSocket-Version", "13");
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn forward_auth_matrix() {
    let (_db, server) = gateway_server().await;
    let alice = session_of(&server, "alice").await;
    let bob = session_of(&server, "bob").await;
    let admin = session_of(&server, "root-admin").await;
    let dan = session_of(&server, "dan").await;
    let code = "alice-code.lab.example.org";

    // Anonymous browser navigation: 302 to the portal's absolute login URL with a return address.
    let r = verify(&server, Ask::new("alice", code)).await;
    assert_eq!(r.status(), 302);
    let to = location(&r).unwrap();
    assert_eq!(to, "https://berth.lab.example.org/login?rd=https%3A%2F%2Falice-code.lab.example.org%2Flab%3Fx%3D1");
    // Anonymous XHR and websocket upgrade: 401.
    assert_eq!(verify(&server, Ask { accept: "application/json", ..Ask::new("alice", code) }).await.status(), 401);
    assert_eq!(verify(&server, Ask { accept: "*/*", upgrade: true, ..Ask::new("alice", code) }).await.status(), 401);
    // A forged cookie is anonymous.
    assert_eq!(verify(&server, Ask { session: Some("forged"), accept: "*/*", ..Ask::new("alice", code) }).await.status(), 401);

    // The owner, on each of her hosts, including websocket upgrades with her own Origin.
    for host in [code, "jupyter-alice.lab.example.org", "tensorboard-alice.lab.example.org", "desktop-alice.lab.example.org"] {
        let r = verify(&server, Ask { session: Some(&alice), ..Ask::new("alice", host) }).await;
        assert_eq!(r.status(), 200, "{host}");
        assert_eq!(r.headers().get("x-berth-user").unwrap(), "alice");
    }
    let ws = Ask { session: Some(&alice), upgrade: true, accept: "*/*", origin: Some("https://alice-code.lab.example.org"), ..Ask::new("alice", code) };
    assert_eq!(verify(&server, ws).await.status(), 200);

    // Another user, and admins too: 403.
    assert_eq!(verify(&server, Ask { session: Some(&bob), ..Ask::new("alice", code) }).await.status(), 403);
    assert_eq!(verify(&server, Ask { session: Some(&admin), ..Ask::new("alice", code) }).await.status(), 403);

    // Forged X-Forwarded-Host: a host that is not the middleware owner's, or not Berth's at all.
    assert_eq!(verify(&server, Ask { session: Some(&bob), ..Ask::new("bob", code) }).await.status(), 403);
    assert_eq!(verify(&server, Ask { session: Some(&alice), ..Ask::new("alice", "alice-code.evil.example") }).await.status(), 403);
    assert_eq!(verify(&server, Ask { session: Some(&alice), ..Ask::new("alice", "bob-code.lab.example.org") }).await.status(), 403);
    assert_eq!(verify(&server, Ask { session: Some(&alice), ..Ask::new("../alice", code) }).await.status(), 403);

    // Origin mismatch (cross-site websocket hijacking): 403 even for the owner.
    for origin in ["https://evil.example", "https://bob-code.lab.example.org", "null"] {
        let ask = Ask { session: Some(&alice), upgrade: true, origin: Some(origin), ..Ask::new("alice", code) };
        assert_eq!(verify(&server, ask).await.status(), 403, "{origin}");
    }

    // Disabled user: refused at once (the admin disables her through the portal).
    assert_eq!(verify(&server, Ask { session: Some(&dan), ..Ask::new("dan", "dan-code.lab.example.org") }).await.status(), 200);
    let admin_browser = Browser::at(&server.base);
    admin_browser.jar.add_cookie_str(&format!("berth_session={admin}"), &server.base.parse().unwrap());
    let users: Value = admin_browser
        .http
        .post(format!("{}/api/users", server.base))
        .header("Origin", "https://berth.lab.example.org")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dan_id = users.as_array().unwrap().iter().find(|u| u["username"] == "dan").unwrap()["id"].to_string();
    let r = admin_browser
        .http
        .post(format!("{}/api/admin-action", server.base))
        .header("Origin", "https://berth.lab.example.org")
        .form(&[("user_id", dan_id.as_str()), ("action", "disable")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = verify(&server, Ask { session: Some(&dan), accept: "*/*", ..Ask::new("dan", "dan-code.lab.example.org") }).await;
    assert_eq!(r.status(), 401, "disabled user's session is gone");

    // Pending user: never has a session to begin with.
    let signup = Browser::at(&server.base);
    let r = signup
        .http
        .post(format!("{}/api/signup", server.base))
        .header("Origin", "https://berth.lab.example.org")
        .form(&[("username", "erin"), ("email", "erin@lab.example.org"), ("password", "erin-password-long")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = signup
        .http
        .post(format!("{}/api/login", server.base))
        .header("Origin", "https://berth.lab.example.org")
        .form(&[("username", "erin"), ("password", "erin-password-long")])
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_none(), "pending: no session");
    let r = verify(&server, Ask { accept: "*/*", ..Ask::new("erin", "erin-code.lab.example.org") }).await;
    assert_eq!(r.status(), 401);

    // Logging out ends access to the apps too.
    let out = Browser::at(&server.base);
    out.jar.add_cookie_str(&format!("berth_session={alice}"), &server.base.parse().unwrap());
    let r = out.http.post(format!("{}/api/logout", server.base)).header("Origin", "https://berth.lab.example.org").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(verify(&server, Ask { session: Some(&alice), accept: "*/*", ..Ask::new("alice", code) }).await.status(), 401);
}

#[tokio::test]
async fn login_returns_only_to_hosts_berth_generated() {
    let (_db, server) = gateway_server().await;
    let login = |rd: &'static str| {
        let base = server.base.clone();
        async move {
            let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            let r = http
                .post(format!("{base}/api/login"))
                .header("Origin", "https://berth.lab.example.org")
                .form(&[("username", "alice"), ("password", "alice-password-long"), ("rd", rd)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers().get("location").unwrap().to_str().unwrap().to_string()
        }
    };
    assert_eq!(login("https://jupyter-alice.lab.example.org/lab?x=1").await, "https://jupyter-alice.lab.example.org/lab?x=1");
    for hostile in [
        "https://evil.example/",
        "https://jupyter-alice.lab.example.org.evil.example/",
        "//evil.example/",
        "javascript:alert(1)",
        "https://user@evil.example@jupyter-alice.lab.example.org/",
        "https://lab.example.org/",
        "/\\evil.example",
        "",
    ] {
        assert_eq!(login(hostile).await, "/dashboard", "{hostile:?} must not be followed");
    }
}

#[tokio::test]
async fn guacamole_token_is_exchanged_server_side() {
    use axum::routing::post;
    // A stand-in for Guacamole's /api/tokens that decrypts the token with the openssl CLI.
    let key_hex = "00112233445566778899aabbccddeeff";
    let received = Arc::new(std::sync::Mutex::new(None::<Value>));
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/guacamole/api/tokens",
            post(move |form: axum::extract::Form<std::collections::HashMap<String, String>>| {
                let received = received.clone();
                async move {
                    use std::io::Write;
                    let mut dec = std::process::Command::new("openssl")
                        .args(["enc", "-d", "-aes-128-cbc", "-K", key_hex, "-iv", &"0".repeat(32), "-nosalt", "-a", "-A"])
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                    dec.stdin.take().unwrap().write_all(form["data"].as_bytes()).unwrap();
                    let plain = dec.wait_with_output().unwrap().stdout;
                    let json: Value = serde_json::from_slice(&plain[32..]).unwrap();
                    *received.lock().unwrap() = Some(json);
                    axum::Json(serde_json::json!({"authToken": "guac-session-123", "username": "alice", "dataSource": "json"}))
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let guac = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let db = TestDb::new(Backend::Sqlite).await;
    let internal = format!("http://{guac}/guacamole");
    let server = TestServer::start_with(&db, &[
        ("BERTH_GUACAMOLE__INTERNAL_URL", internal.as_str()),
        ("BERTH_GUACAMOLE__PUBLIC_URL", "https://guac.lab.example.org/guacamole"),
        ("BERTH_GUACAMOLE__SECRET_KEY", key_hex),
    ])
    .await;
    assert!(server.cli(&["user", "add", "alice", "--password-stdin"], "alice-password-long\n").status.success());
    let alice = Browser::new(&server);
    assert_eq!(alice.log_in("alice", "alice-password-long").await.status(), 200);
    // Creates the workspace record (and its VNC password) without needing Docker.
    assert_eq!(alice.call("workspace-regenerate", &[("which", "vnc")]).await.status(), 200);
    let creds: Value = alice.call("workspace-credentials", &[]).await.json().await.unwrap();

    let r = alice.get("/desktop/guacamole").await;
    assert_eq!(r.status(), 303);
    let to = location(&r).unwrap();
    let id = berth::routes::guacamole::connection_id("workspace-alice");
    assert_eq!(to, format!("https://guac.lab.example.org/guacamole/#/client/{id}?token=guac-session-123"));
    let sent = received.lock().unwrap().clone().expect("the exchange happened");
    assert_eq!(sent["username"], "alice");
    assert_eq!(sent["singleUse"], true);
    let conn = &sent["connections"]["workspace-alice"];
    assert_eq!(conn["protocol"], "vnc");
    assert_eq!(conn["parameters"]["hostname"], "workspace-alice");
    assert_eq!(conn["parameters"]["password"], creds["vnc_password"]);
    assert_eq!(sent.as_object().unwrap().len(), 4, "only the user's own connection: {sent}");

    // Anonymous visitors get the login page, not a token.
    let anon = Browser::at(&server.base);
    assert_eq!(location(&anon.get("/desktop/guacamole").await).as_deref(), Some("/login"));
}

#[tokio::test]
async fn guacamole_falls_back_to_the_link_form() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start_with(&db, &[
        ("BERTH_GUACAMOLE__PUBLIC_URL", "https://guac.lab.example.org/guacamole"),
        ("BERTH_GUACAMOLE__SECRET_KEY", "00112233445566778899aabbccddeeff"),
    ])
    .await;
    assert!(server.cli(&["user", "add", "alice", "--password-stdin"], "alice-password-long\n").status.success());
    let alice = Browser::new(&server);
    alice.log_in("alice", "alice-password-long").await;
    alice.call("workspace-regenerate", &[("which", "vnc")]).await;
    let to = location(&alice.get("/desktop/guacamole").await).unwrap();
    assert!(to.starts_with("https://guac.lab.example.org/guacamole/#/client/"), "{to}");
    assert!(to.contains("?data="), "{to}");
}
