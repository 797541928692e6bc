//! Routes into workspaces: Traefik files against the JSON Schema, atomic rewrites under
//! concurrent readers, the forwardAuth matrix over HTTP, and the Guacamole exchange.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use berth::routes::traefik::{UserRoute, TraefikWriter};
use testkit::service::traefik_writer as writer;
use serde_json::Value;
use testkit::{location, Backend, Browser, TestDb, TestServer};

fn secrets(jupyter_token: &str, app_secret: &str) -> UserRoute {
    UserRoute { upstream_host: "workspace-alice".into(), jupyter_token: jupyter_token.into(), app_secret: app_secret.into() }
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).expect("file is complete JSON (YAML)")
}

#[test]
fn every_generated_file_validates_and_every_router_is_authenticated() {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(testkit::shared_dir().join("testdata/traefik/traefik-v3-file-provider.schema.json")).unwrap())
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

/// Logs in through the portal as the public origin would, returning the portal cookie as
/// `name=value`: host-only, `__Host-` on https.
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
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attributes[0].starts_with("__Host-berth_session="), "{cookie}");
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "host-only: {cookie}");
    for wanted in ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(attributes.contains(&wanted), "{wanted} in {cookie}");
    }
    attributes[0].to_string()
}

const CODE_HOST: &str = "alice-code.lab.example.org";

/// The owner's cookie for one of her app hosts, through the portal's hop.
async fn app_cookie(server: &TestServer, portal: &str, owner: &str, host: &str) -> String {
    let cookie = testkit::app_cookie(&server.base, portal, owner, host, "https").await;
    assert!(cookie.starts_with("__Host-berth_app="), "{cookie}");
    cookie
}

struct Ask<'a> {
    owner: &'a str,
    host: &'a str,
    cookie: Option<&'a str>,
    accept: &'a str,
    origin: Option<&'a str>,
    upgrade: bool,
    uri: &'a str,
}

impl<'a> Ask<'a> {
    fn new(owner: &'a str, host: &'a str) -> Self {
        Ask { owner, host, cookie: None, accept: "text/html,application/xhtml+xml", origin: None, upgrade: false, uri: "/lab?x=1" }
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
    if let Some(c) = ask.cookie {
        r = r.header("Cookie", format!("other=1; {c}"));
    }
    if let Some(o) = ask.origin {
        r = r.header("Origin", o);
    }
    if ask.upgrade {
        r = r.header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==").header("Sec-WebSocket-Version", "13");
    }
    r.send().await.unwrap()
}

/// GET /auth/app?rd=… on the portal with `portal` as the cookie.
async fn hop(server: &TestServer, portal: &str, rd: &str) -> reqwest::Response {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    http.get(format!("{}/auth/app", server.base)).query(&[("rd", rd)]).header("Cookie", portal).send().await.unwrap()
}

#[tokio::test]
async fn forward_auth_matrix() {
    let (_db, server) = gateway_server().await;
    let alice_portal = session_of(&server, "alice").await;
    let bob_portal = session_of(&server, "bob").await;
    let admin_portal = session_of(&server, "root-admin").await;
    let dan_portal = session_of(&server, "dan").await;
    let alice = app_cookie(&server, &alice_portal, "alice", CODE_HOST).await;
    let code = CODE_HOST;

    // Anonymous browser navigation: 302 to the portal's app hop with a return address.
    let r = verify(&server, Ask::new("alice", code)).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r).unwrap(), "https://berth.lab.example.org/auth/app?rd=https%3A%2F%2Falice-code.lab.example.org%2Flab%3Fx%3D1");
    // Anonymous XHR and websocket upgrade: 401.
    assert_eq!(verify(&server, Ask { accept: "application/json", ..Ask::new("alice", code) }).await.status(), 401);
    assert_eq!(verify(&server, Ask { accept: "*/*", upgrade: true, ..Ask::new("alice", code) }).await.status(), 401);
    // Forged or foreign cookies are anonymous; so is the portal's own session cookie.
    for cookie in ["__Host-berth_app=forged", "berth_app=forged", alice_portal.as_str(), &alice_portal.replace("__Host-", "")] {
        let r = verify(&server, Ask { cookie: Some(cookie), accept: "*/*", ..Ask::new("alice", code) }).await;
        assert_eq!(r.status(), 401, "{cookie}");
    }

    // The owner, with her cookie for that host, including websocket upgrades with her own Origin.
    let r = verify(&server, Ask { cookie: Some(&alice), ..Ask::new("alice", code) }).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("x-berth-user").unwrap(), "alice");
    assert_eq!(r.headers().get("cookie").unwrap(), "other=1", "the workspace gets the browser's cookies minus Berth's");
    for host in ["jupyter-alice.lab.example.org", "tensorboard-alice.lab.example.org", "desktop-alice.lab.example.org"] {
        let own = app_cookie(&server, &alice_portal, "alice", host).await;
        assert_eq!(verify(&server, Ask { cookie: Some(&own), ..Ask::new("alice", host) }).await.status(), 200, "{host}");
        // One host's cookie opens no other host.
        assert_eq!(verify(&server, Ask { cookie: Some(&alice), accept: "*/*", ..Ask::new("alice", host) }).await.status(), 401, "{host}");
    }
    let ws = Ask { cookie: Some(&alice), upgrade: true, accept: "*/*", origin: Some("https://alice-code.lab.example.org"), ..Ask::new("alice", code) };
    assert_eq!(verify(&server, ws).await.status(), 200);
    // The same cookie twice, or another next to it: ambiguous, so nobody.
    let twice = format!("{alice}; __Host-berth_app=forged");
    assert_eq!(verify(&server, Ask { cookie: Some(&twice), accept: "*/*", ..Ask::new("alice", code) }).await.status(), 401);

    // Another user, and admins too, get no code for alice's hosts.
    for other in [&bob_portal, &admin_portal] {
        let r = hop(&server, other, "https://alice-code.lab.example.org/").await;
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("another user's workspace"));
    }
    // Nobody logged in: the hop sends to the login page, which comes back through the hop.
    let r = hop(&server, "other=1", "https://alice-code.lab.example.org/lab").await;
    assert_eq!(location(&r).unwrap(), "/login?rd=https%3A%2F%2Falice-code.lab.example.org%2Flab");
    // Not an app host: back to the dashboard.
    assert_eq!(location(&hop(&server, &alice_portal, "https://evil.example/").await).unwrap(), "/dashboard");

    // A code works once, on its own host, for its owner.
    let r = hop(&server, &alice_portal, "https://alice-code.lab.example.org/").await;
    let to = url::Url::parse(&location(&r).unwrap()).unwrap();
    let redeem_uri = format!("{}?{}", to.path(), to.query().unwrap());
    let elsewhere = verify(&server, Ask { uri: &redeem_uri, ..Ask::new("alice", "jupyter-alice.lab.example.org") }).await;
    assert_eq!(elsewhere.status(), 403, "a code for one host is refused on another");
    let first = verify(&server, Ask { uri: &redeem_uri, ..Ask::new("alice", code) }).await;
    assert_eq!(first.status(), 302);
    let again = verify(&server, Ask { uri: &redeem_uri, ..Ask::new("alice", code) }).await;
    assert_eq!(again.status(), 403, "replayed");
    assert!(again.headers().get("set-cookie").is_none());
    let forged = verify(&server, Ask { uri: "/.berth/auth?code=AAAA&rd=%2F", ..Ask::new("alice", code) }).await;
    assert_eq!(forged.status(), 403);
    // A return path to another site is not followed.
    let r = hop(&server, &alice_portal, "https://alice-code.lab.example.org/").await;
    let to = url::Url::parse(&location(&r).unwrap()).unwrap();
    let code_param: String = to.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let hostile = format!("/.berth/auth?code={code_param}&rd=%2F%2Fevil.example%2F");
    let r = verify(&server, Ask { uri: &hostile, ..Ask::new("alice", code) }).await;
    assert_eq!(location(&r).unwrap(), "https://alice-code.lab.example.org/");

    // An app cookie is not a portal session.
    let b = Browser::at(&server.base);
    let r = b.http.post(format!("{}/api/viewer", server.base)).header("Origin", "https://berth.lab.example.org").header("Cookie", &alice).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), Value::Null);

    // Forged X-Forwarded-Host: a host that is not the middleware owner's, or not Berth's at all.
    assert_eq!(verify(&server, Ask { cookie: Some(&alice), ..Ask::new("bob", code) }).await.status(), 403);
    assert_eq!(verify(&server, Ask { cookie: Some(&alice), ..Ask::new("alice", "alice-code.evil.example") }).await.status(), 403);
    assert_eq!(verify(&server, Ask { cookie: Some(&alice), ..Ask::new("alice", "bob-code.lab.example.org") }).await.status(), 403);
    assert_eq!(verify(&server, Ask { cookie: Some(&alice), ..Ask::new("../alice", code) }).await.status(), 403);

    // Origin mismatch (cross-site websocket hijacking): 403 even for the owner.
    for origin in ["https://evil.example", "https://bob-code.lab.example.org", "null"] {
        let ask = Ask { cookie: Some(&alice), upgrade: true, origin: Some(origin), ..Ask::new("alice", code) };
        assert_eq!(verify(&server, ask).await.status(), 403, "{origin}");
    }

    // Disabled user: refused at once (the admin disables her through the portal).
    let dan = app_cookie(&server, &dan_portal, "dan", "dan-code.lab.example.org").await;
    assert_eq!(verify(&server, Ask { cookie: Some(&dan), ..Ask::new("dan", "dan-code.lab.example.org") }).await.status(), 200);
    let admin_post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let (base, cookie) = (server.base.clone(), admin_portal.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{base}{path}"))
                .header("Origin", "https://berth.lab.example.org")
                .header("Cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let users: Value = admin_post("/api/users", vec![]).await.json().await.unwrap();
    let dan_id = users.as_array().unwrap().iter().find(|u| u["username"] == "dan").unwrap()["id"].to_string();
    let r = admin_post("/api/admin-action", vec![("user_id", dan_id), ("action", "disable".into())]).await;
    assert_eq!(r.status(), 200);
    let r = verify(&server, Ask { cookie: Some(&dan), accept: "*/*", ..Ask::new("dan", "dan-code.lab.example.org") }).await;
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
    let r = reqwest::Client::new()
        .post(format!("{}/api/logout", server.base))
        .header("Origin", "https://berth.lab.example.org")
        .header("Cookie", &alice_portal)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(verify(&server, Ask { cookie: Some(&alice), accept: "*/*", ..Ask::new("alice", code) }).await.status(), 401);
}

/// The CLI is another process: its `user disable` reaches this server's forwardAuth cache
/// through the revocation counter within two seconds, not at the cache's 30-second expiry.
#[tokio::test]
async fn disabling_in_another_process_reaches_forward_auth_within_two_seconds() {
    use std::time::{Duration, Instant};
    let (_db, server) = gateway_server().await;
    let portal = session_of(&server, "alice").await;
    let app = app_cookie(&server, &portal, "alice", CODE_HOST).await;
    let ask = || verify(&server, Ask { cookie: Some(&app), accept: "*/*", ..Ask::new("alice", CODE_HOST) });
    assert_eq!(ask().await.status(), 200);
    assert_eq!(ask().await.status(), 200, "answered from the cache now");
    let out = server.cli(&["user", "disable", "alice"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let disabled = Instant::now();
    loop {
        let status = ask().await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(disabled.elapsed() < Duration::from_secs(2), "still let in {:?} after the CLI disabled her", disabled.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two session cookies in one request (a planted one next to the real one, in either order)
/// mean no session for the portal, as they do for the gateway; the browser is told to drop them.
#[tokio::test]
async fn two_session_cookies_mean_none() {
    let (_db, server) = gateway_server().await;
    let alice = session_of(&server, "alice").await;
    let viewer = |cookie: String| {
        let base = server.base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/api/viewer"))
                .header("Origin", "https://berth.lab.example.org")
                .header("Cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(viewer(alice.clone()).await.json::<Value>().await.unwrap()["username"], "alice", "control: one cookie works");
    for cookie in [format!("{alice}; __Host-berth_session=planted"), format!("__Host-berth_session=planted; {alice}")] {
        let r = viewer(cookie.clone()).await;
        let cleared: Vec<String> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        assert!(cleared.iter().any(|c| c.starts_with("__Host-berth_session=;") && c.contains("Max-Age=0")), "{cleared:?}");
        assert_eq!(r.json::<Value>().await.unwrap(), Value::Null, "{cookie}");
    }
}

/// Plays Traefik's forwardAuth contract (docs: pkg/middlewares/auth/forward.go) with the
/// middleware definition Berth rendered into the user's Traefik file: only the listed request
/// headers go to the auth server, a non-2xx answer goes back to the browser as is, and on a 2xx
/// each listed response header replaces the request's (or removes it when absent).
struct Relay {
    address: String,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    backend: String,
}

async fn relay(axum::extract::State(relay): axum::extract::State<Arc<Relay>>, request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let host = request.headers().get("host").unwrap().to_str().unwrap().to_string();
    let uri = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or("/".into());
    let mut auth = http
        .get(&relay.address)
        .header("X-Forwarded-Method", request.method().as_str())
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", &host)
        .header("X-Forwarded-Uri", &uri)
        .header("X-Forwarded-For", "127.0.0.1");
    for name in &relay.request_headers {
        for value in request.headers().get_all(name.as_str()) {
            auth = auth.header(name.as_str(), value.clone());
        }
    }
    let answer = auth.send().await.unwrap();
    if !answer.status().is_success() {
        let (status, headers) = (answer.status(), answer.headers().clone());
        let mut out = axum::response::Response::new(axum::body::Body::from(answer.bytes().await.unwrap()));
        *out.status_mut() = status;
        for (name, value) in &headers {
            if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                out.headers_mut().append(name.clone(), value.clone());
            }
        }
        return out;
    }
    let mut headers = request.headers().clone();
    for name in &relay.response_headers {
        headers.remove(name.as_str());
        for value in answer.headers().get_all(name.as_str()) {
            headers.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.clone());
        }
    }
    let mut forward = http.get(format!("{}{uri}", relay.backend));
    for (name, value) in &headers {
        forward = forward.header(name, value);
    }
    let from_backend = forward.send().await.unwrap();
    (from_backend.status(), from_backend.text().await.unwrap()).into_response()
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test]
async fn through_the_rendered_forward_auth_no_berth_cookie_reaches_the_workspace() {
    let (_db, server) = gateway_server().await;
    let alice_portal = session_of(&server, "alice").await;
    // The middleware exactly as Berth writes it for Traefik, pointed at this server.
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path(), None);
    w.settings.portal_internal_url = server.base.clone();
    w.write_user("alice", &secrets("token-1", "ab12")).unwrap();
    let file = read(&dir.path().join("user-alice.yml"));
    let forward_auth = &file["http"]["middlewares"]["berth-auth-alice"]["forwardAuth"];
    let names = |key: &str| -> Vec<String> { forward_auth[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect() };

    // The workspace app: echoes the cookies and user header it was given.
    let backend = serve(axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
        serde_json::json!({ "cookie": get("cookie"), "user": get("x-berth-user") }).to_string()
    }))
    .await;
    let relay_state = Arc::new(Relay {
        address: forward_auth["address"].as_str().unwrap().to_string(),
        request_headers: names("authRequestHeaders"),
        response_headers: names("authResponseHeaders"),
        backend,
    });
    let traefik = serve(axum::Router::new().fallback(relay).with_state(relay_state)).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |uri: &str, cookie: Option<&str>| {
        let mut r = http.get(format!("{traefik}{uri}")).header("Host", CODE_HOST).header("Accept", "text/html");
        if let Some(c) = cookie {
            r = r.header("Cookie", c);
        }
        r.send()
    };

    // First visit: through the portal's hop, with the portal cookie the browser holds there.
    let r = get("/lab", None).await.unwrap();
    assert_eq!(r.status(), 302);
    let to_portal = location(&r).unwrap();
    let rd = url::Url::parse(&to_portal).unwrap().query_pairs().find(|(k, _)| k == "rd").unwrap().1.into_owned();
    let r = hop(&server, &alice_portal, &rd).await;
    let back = url::Url::parse(&location(&r).unwrap()).unwrap();
    let r = get(&format!("{}?{}", back.path(), back.query().unwrap()), None).await.unwrap();
    assert_eq!(r.status(), 302, "redeemed through the relay");
    assert_eq!(location(&r).unwrap(), "https://alice-code.lab.example.org/lab");
    let app = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();

    // Then the app itself, with every cookie the browser might send for that host.
    let sent = format!("theme=dark; {app}; {alice_portal}; berth_session=legacy; _xsrf=2|abc");
    let r = get("/lab", Some(&sent)).await.unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(seen["cookie"], "theme=dark; _xsrf=2|abc", "no berth_* cookie reaches the workspace");
    assert_eq!(seen["user"], "alice");
    // Only Berth's cookies: the workspace gets no Cookie header at all.
    let r = get("/lab", Some(&app)).await.unwrap();
    let seen: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(seen["cookie"], Value::Null);
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
    // Back to the app itself (another origin: a hydrated login page leaves by a full page load),
    // whose host then sends the browser through the hop for its own cookie.
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
    // The client identifier is base64url("workspace-alice\0c\0json"), Guacamole's name for the
    // connection in its `json` data source.
    assert_eq!(to, "https://guac.lab.example.org/guacamole/#/client/d29ya3NwYWNlLWFsaWNlAGMAanNvbg?token=guac-session-123");
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
    let sealed = to
        .strip_prefix("https://guac.lab.example.org/guacamole/#/client/d29ya3NwYWNlLWFsaWNlAGMAanNvbg?data=")
        .unwrap_or_else(|| panic!("the link form for alice's own connection: {to}"));
    assert!(!sealed.is_empty() && !sealed.contains(['&', '#', '?']), "one url-encoded token: {to}");
}
