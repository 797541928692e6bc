//! The portal's defences, checked over HTTP against a real `berth serve`.

mod support;

use support::{Backend, Browser, TestDb, TestServer};

async fn server_with_user() -> (TestDb, TestServer) {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let out = server.cli(&["user", "add", "carol", "--password-stdin"], "carol-password-long\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (db, server)
}

#[tokio::test]
async fn cross_site_posts_are_refused() {
    let (_db, server) = server_with_user().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = format!("{}/api/login", server.base);
    let form = [("username", "carol"), ("password", "carol-password-long")];
    let cases: [(&str, Option<(&str, String)>); 4] = [
        ("foreign origin", Some(("Origin", "https://evil.example".into()))),
        ("null origin", Some(("Origin", "null".into()))),
        ("foreign referer", Some(("Referer", "https://evil.example/page".into()))),
        ("no origin at all", None),
    ];
    for (what, header) in cases {
        let mut request = http.post(&url).form(&form);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 403, "{what}");
        assert!(r.headers().get("set-cookie").is_none(), "{what}: no session handed out");
    }
    // The same request from the portal's own origin works.
    let r = http.post(&url).header("Origin", &server.base).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_some());
}

#[tokio::test]
async fn twenty_wrong_passwords_get_throttled() {
    let (_db, server) = server_with_user().await;
    let browser = Browser::new(&server);
    let mut statuses = Vec::new();
    let mut last_body = String::new();
    for _ in 0..20 {
        let r = browser.log_in("carol", "wrong-password-guess").await;
        statuses.push(r.status().as_u16());
        last_body = r.text().await.unwrap();
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "statuses: {statuses:?}");
    assert!(last_body.contains("TooManyAttempts"), "{last_body}");
    // A plain HTML form post (no JavaScript) is sent back to the form, which shows the message.
    let r = browser
        .http
        .post(format!("{}/api/login", server.base))
        .header("Origin", &server.base)
        .header("Referer", format!("{}/login", server.base))
        .header("Accept", "text/html")
        .form(&[("username", "carol"), ("password", "wrong-password-guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let back = support::location(&r).unwrap();
    assert!(back.starts_with(&format!("{}/login?", server.base)), "{back}");
    let page = browser.http.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Too many attempts. Try again in"), "the form shows a clear message");
    // Throttled means throttled: the right password is refused too until the window passes.
    let r = browser.log_in("carol", "carol-password-long").await;
    assert_eq!(r.status(), 429);
    // Another account from another... the same address is limited per address as well.
    let other = Browser::new(&server);
    let r = other.log_in("carol", "carol-password-long").await;
    assert_eq!(r.status(), 429, "per-username limit holds for every client");
}

/// Failed logins with a different made-up `X-Forwarded-For` each time, until the per-address
/// limit answers; returns every status seen.
async fn guess_with_forged_addresses(server: &TestServer, proxy_adds: Option<&str>) -> Vec<u16> {
    let browser = Browser::new(server);
    let mut statuses = Vec::new();
    for i in 0..10 {
        let forged = format!("203.0.113.{i}");
        let header = match proxy_adds {
            Some(real) => format!("{forged}, {real}"),
            None => forged,
        };
        let r = browser
            .http
            .post(format!("{}/api/login", server.base))
            .header("Origin", &server.base)
            .header("X-Forwarded-For", header)
            .form(&[("username", format!("nobody-{i}").as_str()), ("password", "some-guess-long")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn forged_forwarded_for_headers_do_not_escape_the_address_limit() {
    // Three failures per username, nine per address: the tenth guess is refused.
    let limits = [("BERTH_LOGIN_ATTEMPTS_PER_WINDOW", "3")];
    let db = TestDb::new(Backend::Sqlite).await;
    let direct = TestServer::start_with(&db, &limits).await;
    let statuses = guess_with_forged_addresses(&direct, None).await;
    assert_eq!(statuses[..9], [401; 9]);
    assert_eq!(statuses[9], 429, "the header is ignored without a trusted proxy: {statuses:?}");

    // Behind the proxy the address is the entry the proxy appended, not what the client wrote.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut env = limits.to_vec();
    env.push(("BERTH_TRUST_PROXY_HEADERS", "true"));
    let proxied = TestServer::start_with(&db, &env).await;
    let statuses = guess_with_forged_addresses(&proxied, Some("198.51.100.7")).await;
    assert_eq!(statuses[9], 429, "{statuses:?}");
    let statuses = guess_with_forged_addresses(&proxied, Some("198.51.100.8")).await;
    assert_eq!(statuses[0], 401, "another real client is not throttled: {statuses:?}");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    let (_db, server) = server_with_user().await;
    let browser = Browser::new(&server);
    let wrong = browser.log_in("carol", "not-her-password").await;
    let (s1, b1) = (wrong.status(), wrong.text().await.unwrap());
    let unknown = browser.log_in("nobody-here", "not-her-password").await;
    let (s2, b2) = (unknown.status(), unknown.text().await.unwrap());
    let invalid = browser.log_in("../../etc/passwd", "not-her-password").await;
    let (s3, b3) = (invalid.status(), invalid.text().await.unwrap());
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!((s1, &b1), (s3, &b3));
    assert_eq!(s1, 401);
    assert_eq!(b1, "\"BadCredentials\"");
}

#[tokio::test]
async fn session_id_changes_at_login_and_old_id_dies() {
    let (_db, server) = server_with_user().await;
    let browser = Browser::new(&server);
    assert!(browser.log_in("carol", "carol-password-long").await.status().is_success());
    let first = browser.session_cookie().expect("cookie after first login");
    // Logging in again (e.g. with a session an attacker planted) must issue a new id.
    assert!(browser.log_in("carol", "carol-password-long").await.status().is_success());
    let second = browser.session_cookie().expect("cookie after second login");
    assert_ne!(first, second);
    let stale = Browser::new(&server);
    stale.jar.add_cookie_str(&format!("berth_session={first}"), &server.base.parse().unwrap());
    assert_eq!(stale.viewer().await, serde_json::Value::Null, "the pre-login id is no longer valid");
    assert_eq!(browser.viewer().await["username"], "carol");
}

#[tokio::test]
async fn cookie_flags_and_security_headers() {
    let (_db, server) = server_with_user().await;
    let browser = Browser::new(&server);
    let r = browser.log_in("carol", "carol-password-long").await;
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.starts_with("berth_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain-http public URL: no Secure flag");
    let page = browser.get("/login").await;
    assert_eq!(page.headers().get("x-frame-options").unwrap(), "DENY");
}

#[tokio::test]
async fn secure_cookie_when_public_url_is_https() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start_with(&db, &[("BERTH_PUBLIC_URL", "https://berth.lab.example.org")]).await;
    let out = server.cli(&["user", "add", "dave", "--password-stdin"], "dave-password-long\n");
    assert!(out.status.success());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/login", server.base))
        .header("Origin", "https://berth.lab.example.org")
        .form(&[("username", "dave"), ("password", "dave-password-long")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn hostile_sign_ups_get_clear_errors_and_create_nothing() {
    let (_db, server) = server_with_user().await;
    let browser = Browser::new(&server);
    for name in ["Alice", "1alice", "../etc", "{{.Env}}", "alicé", "root", "admin", &"a".repeat(32)] {
        let r = browser
            .call("signup", &[("username", name), ("email", "x@lab.example.org"), ("password", "long-enough-password")])
            .await;
        assert_eq!(r.status(), 422, "{name:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains("sername"), "{name:?}: {body}");
    }
    let short = browser.call("signup", &[("username", "erin"), ("email", "e@lab.example.org"), ("password", "short")]).await;
    assert_eq!(short.status(), 422);
    assert!(short.text().await.unwrap().contains("at least 12"));
    let huge = "p".repeat(2000);
    let long = browser.call("signup", &[("username", "erin"), ("email", "e@lab.example.org"), ("password", &huge)]).await;
    assert_eq!(long.status(), 422);
    // Taken names are refused without touching the existing account.
    let taken = browser.call("signup", &[("username", "carol"), ("email", "c@lab.example.org"), ("password", "another-long-password")]).await;
    assert_eq!(taken.status(), 409);
    assert!(browser.log_in("carol", "carol-password-long").await.status().is_success());
    let out = server.cli(&["user", "list", "--json"], "");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listing.lines().count(), 1, "only carol exists: {listing}");
}

#[tokio::test]
async fn config_command_prints_effective_config_without_secrets() {
    let db = TestDb::new(Backend::Sqlite).await;
    let env = vec![
        ("BERTH_DATABASE_URL".to_string(), "postgres://berth:s3cret-pw@db.internal/berth".to_string()),
        ("BERTH_SECRET_KEY".to_string(), "ab".repeat(32)),
        ("BERTH_CONFIG".to_string(), db.dir.path().join("none.toml").display().to_string()),
        ("BERTH_DOMAIN".to_string(), "lab.example.org".to_string()),
    ];
    let out = support::cli(&env, &["config"], "");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("domain = \"lab.example.org\""), "{text}");
    assert!(!text.contains("s3cret-pw") && !text.contains(&"ab".repeat(32)), "{text}");
    let bad = support::cli(&[("BERTH_LISTEN".to_string(), "nowhere".to_string())], &["config"], "");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("listen"));
}

#[tokio::test]
async fn healthz_answers_and_debug_logs_hold_no_secrets() {
    let db = TestDb::new(Backend::Sqlite).await;
    let log = db.dir.path().join("server.log");
    let server = TestServer::start_logging(&db, &[("BERTH_LOG", "debug")], Some(&log)).await;
    let r = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");

    let password = "frank-Secret-password-123";
    let browser = Browser::new(&server);
    let r = browser
        .call("signup", &[("username", "frank"), ("email", "f@lab.example.org"), ("password", password)])
        .await;
    assert!(r.status().is_success());
    assert!(server.cli(&["user", "approve", "frank"], "").status.success());
    assert!(browser.log_in("frank", password).await.status().is_success());
    browser.log_in("frank", "frank-wrong-guess-xyz").await;
    let cookie = browser.session_cookie().unwrap();
    server.kill();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("login"), "the log is being written at debug level: {text}");
    for secret in [password, "frank-wrong-guess-xyz", cookie.as_str(), "$argon2id$"] {
        assert!(!text.contains(secret), "log contains a secret {secret:?}");
    }
}
