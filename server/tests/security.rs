//! The portal's defences, checked over HTTP against a real `berth serve`.

use std::path::{Path, PathBuf};

use testkit::{location, Backend, Browser, TestDb, TestServer};

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

/// A login posted as the hydrated page does, from `address` as the trusted proxy reports it.
async fn log_in_from(browser: &Browser, address: &str, username: &str, password: &str) -> reqwest::Response {
    browser
        .http
        .post(format!("{}/api/login", browser.base))
        .header("Origin", &browser.base)
        .header("Accept", "application/json")
        .header("X-Forwarded-For", address)
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .expect("request")
}

/// The log filter that shows every refusal of the attempt limiter, and nothing else chatty.
const LIMITER_LOG: (&str, &str) = ("BERTH_LOG", "warn,berth::accounts=info");

/// A server with `env`, logging its limiter's refusals to the file returned.
async fn server_logging_refusals(db: &TestDb, env: &[(&str, &str)]) -> (TestServer, PathBuf) {
    let log = db.dir.path().join(format!("berth-{}.log", testkit::hex(4)));
    let mut env = env.to_vec();
    env.push(LIMITER_LOG);
    (TestServer::start_logging(db, &env, Some(&log)).await, log)
}

/// Which limit refused each throttled attempt, in order, as the server logged it: "address"
/// (per client address), "username-at-address" (per username and address) or "username" (per
/// username, from every address).
fn limits_fired(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).expect("the server's log");
    strip_ansi(&text)
        .lines()
        .filter(|l| l.contains("refused: too many attempts"))
        .map(|l| l.split(" limit=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or("?").to_string())
        .collect()
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `n` times the limit `name`.
fn fired(name: &str, n: usize) -> Vec<String> {
    vec![name.to_string(); n]
}

/// A server behind a (pretend) proxy, so each test can play clients at distinct addresses;
/// its log (the third value) says which limit refused each throttled attempt.
async fn proxied_server_with_user(attempts: &str) -> (TestDb, TestServer, PathBuf) {
    let db = TestDb::new(Backend::Sqlite).await;
    let env = [("BERTH_LOGIN_ATTEMPTS_PER_WINDOW", attempts), ("BERTH_TRUST_PROXY_HEADERS", "true")];
    let (server, log) = server_logging_refusals(&db, &env).await;
    let out = server.cli(&["user", "add", "carol", "--password-stdin"], "carol-password-long\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (db, server, log)
}

#[tokio::test]
async fn twenty_wrong_passwords_get_throttled() {
    // Four failures per (username, address): the fourth guess from address A is still checked,
    // the fifth is refused. (Per address alone it would be twelve, per username forty.)
    let (_db, server, log) = proxied_server_with_user("4").await;
    let attacker = Browser::new(&server);
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..20 {
        let r = log_in_from(&attacker, "198.51.100.1", "carol", "wrong-password-guess").await;
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    let expected: Vec<u16> = [401; 4].into_iter().chain([429; 16]).collect();
    assert_eq!(statuses, expected);
    assert_eq!(limits_fired(&log), fired("username-at-address", 16), "the per-(username, address) limit refused them");
    let last = last.unwrap();
    assert!(last.headers().get("retry-after").is_some(), "429 says when to come back");
    let last_body = last.text().await.unwrap();
    assert!(last_body.contains("TooManyAttempts"), "{last_body}");
    // A plain HTML form post (no JavaScript) is sent back to the form, which shows the message.
    let r = attacker
        .http
        .post(format!("{}/api/login", server.base))
        .header("Origin", &server.base)
        .header("Referer", format!("{}/login", server.base))
        .header("Accept", "text/html")
        .header("X-Forwarded-For", "198.51.100.1")
        .form(&[("username", "carol"), ("password", "wrong-password-guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let back = testkit::location(&r).unwrap();
    assert!(back.starts_with(&format!("{}/login?", server.base)), "{back}");
    let page = attacker.http.get(&back).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Too many attempts. Try again in"), "the form shows a clear message");
    // Throttled means throttled: from the failing address the right password is refused too.
    let r = log_in_from(&attacker, "198.51.100.1", "carol", "carol-password-long").await;
    assert_eq!(r.status(), 429);
    assert_eq!(limits_fired(&log), fired("username-at-address", 18), "the form post and the right password too");
    // But whoever guesses at carol's name cannot lock carol out: from her own address she logs in.
    let carol = Browser::new(&server);
    let r = log_in_from(&carol, "198.51.100.2", "carol", "carol-password-long").await;
    assert_eq!(r.status(), 200, "per-username failures are counted per address");
    assert_eq!(carol.viewer().await["username"], "carol");
    assert_eq!(limits_fired(&log).len(), 18, "nothing refused carol");
}

#[tokio::test]
async fn a_username_guessed_at_from_many_addresses_locks_at_ten_times_the_limit() {
    // Two failures per (username, address), so twenty per username from all addresses: the
    // twentieth guess is still checked, the twenty-first is refused wherever it comes from.
    let (_db, server, log) = proxied_server_with_user("2").await;
    assert!(server.cli(&["user", "add", "dave", "--password-stdin"], "dave-password-long\n").status.success());
    let attacker = Browser::new(&server);
    for i in 1..=10 {
        let address = format!("203.0.113.{i}");
        let mut statuses = Vec::new();
        for _ in 0..2 {
            statuses.push(log_in_from(&attacker, &address, "carol", "wrong-password-guess").await.status().as_u16());
        }
        assert_eq!(statuses, [401, 401], "from {address}: within that address's limit");
    }
    assert_eq!(limits_fired(&log), Vec::<String>::new(), "twenty guesses, none refused");
    let carol = Browser::new(&server);
    let r = log_in_from(&carol, "198.51.100.2", "carol", "carol-password-long").await;
    assert_eq!(r.status(), 429, "the per-username ceiling holds for every address");
    assert!(r.text().await.unwrap().contains("TooManyAttempts"));
    assert_eq!(limits_fired(&log), fired("username", 1), "it was the username's ceiling, not the fresh address's");
    // The fresh address itself is not throttled: it was the username's ceiling that fired.
    let dave = Browser::new(&server);
    assert_eq!(log_in_from(&dave, "198.51.100.2", "dave", "dave-password-long").await.status(), 200);
}

#[tokio::test]
async fn concurrent_wrong_passwords_get_exactly_the_limit() {
    let db = TestDb::new(Backend::Sqlite).await;
    // Enough hashing slots that no guess is turned away as "busy": only the limiter decides.
    let env = [("BERTH_LOGIN_ATTEMPTS_PER_WINDOW", "5"), ("BERTH_PASSWORD_HASHING_CONCURRENCY", "64")];
    let (server, log) = server_logging_refusals(&db, &env).await;
    assert!(server.cli(&["user", "add", "carol", "--password-stdin"], "carol-password-long\n").status.success());
    let browser = Browser::new(&server);
    let guesses = (0..200).map(|_| browser.log_in("carol", "wrong-password-guess"));
    let statuses: Vec<u16> = futures_util::future::join_all(guesses).await.iter().map(|r| r.status().as_u16()).collect();
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    assert_eq!((count(401), count(429)), (5, 195), "{statuses:?}");
    // Five spent failures: the per-(username, address) limit (5), not the address's (15).
    assert_eq!(limits_fired(&log), fired("username-at-address", 195));
    // From that address even the correct password waits now.
    assert_eq!(browser.log_in("carol", "carol-password-long").await.status(), 429);
    assert_eq!(limits_fired(&log), fired("username-at-address", 196));
}

#[tokio::test]
async fn too_many_concurrent_hashes_get_503_with_retry_after() {
    let db = TestDb::new(Backend::Sqlite).await;
    let env = [("BERTH_PASSWORD_HASHING_CONCURRENCY", "1"), ("BERTH_TRUST_PROXY_HEADERS", "true")];
    let server = TestServer::start_with(&db, &env).await;
    assert!(server.cli(&["user", "add", "carol", "--password-stdin"], "carol-password-long\n").status.success());
    let browser = Browser::new(&server);
    // Each from its own address, so no login limit is anywhere near: only the hashing slots decide.
    let logins = (0..30).map(|i| {
        let browser = &browser;
        async move {
            let r = log_in_from(browser, &format!("198.51.100.{i}"), "carol", "carol-password-long").await;
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry_after, r.text().await.unwrap())
        }
    });
    let outcomes = futures_util::future::join_all(logins).await;
    let busy: Vec<_> = outcomes.iter().filter(|(status, _, _)| *status == 503).collect();
    let ok = outcomes.iter().filter(|(status, _, _)| *status == 200).count();
    assert_eq!(busy.len() + ok, 30, "only logins and busy refusals: {outcomes:?}");
    assert!(!busy.is_empty() && ok > 0, "{outcomes:?}");
    for (_, retry_after, body) in busy {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body, "{\"Busy\":1}");
    }
}

#[tokio::test]
async fn correct_passwords_give_their_attempts_back() {
    // Two failures per (username, address), six per address.
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, log) = server_logging_refusals(&db, &[("BERTH_LOGIN_ATTEMPTS_PER_WINDOW", "2")]).await;
    assert!(server.cli(&["user", "add", "carol", "--password-stdin"], "carol-password-long\n").status.success());
    let browser = Browser::new(&server);
    let mut statuses = vec![browser.log_in("carol", "wrong-password-guess").await.status().as_u16()];
    // Were these counted, the address's six attempts would run out at the sixth.
    for _ in 0..8 {
        statuses.push(browser.log_in("carol", "carol-password-long").await.status().as_u16());
    }
    for _ in 0..3 {
        statuses.push(browser.log_in("carol", "wrong-password-guess").await.status().as_u16());
    }
    assert_eq!(statuses, [401, 200, 200, 200, 200, 200, 200, 200, 200, 401, 401, 429]);
    // The login cleared the pair's count: two fresh failures used up its limit of two, while
    // the address's six were never near (three spent).
    assert_eq!(limits_fired(&log), fired("username-at-address", 1));
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
    // Three failures per (username, address), nine per address over all names: each guess names
    // another user, so the tenth is refused by the per-address limit.
    let limits = [("BERTH_LOGIN_ATTEMPTS_PER_WINDOW", "3")];
    let nine_then_refused: Vec<u16> = [401; 9].into_iter().chain([429]).collect();
    let db = TestDb::new(Backend::Sqlite).await;
    let (direct, log) = server_logging_refusals(&db, &limits).await;
    let statuses = guess_with_forged_addresses(&direct, None).await;
    assert_eq!(statuses, nine_then_refused, "the header is ignored without a trusted proxy");
    assert_eq!(limits_fired(&log), fired("address", 1));

    // Behind the proxy the address is the entry the proxy appended, not what the client wrote.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut env = limits.to_vec();
    env.push(("BERTH_TRUST_PROXY_HEADERS", "true"));
    let (proxied, log) = server_logging_refusals(&db, &env).await;
    let statuses = guess_with_forged_addresses(&proxied, Some("198.51.100.7")).await;
    assert_eq!(statuses, nine_then_refused);
    assert_eq!(limits_fired(&log), fired("address", 1));
    // Another real client has its own nine, though it forges the very same addresses and names.
    let statuses = guess_with_forged_addresses(&proxied, Some("198.51.100.8")).await;
    assert_eq!(statuses, nine_then_refused, "another real client is not throttled by the first");
    assert_eq!(limits_fired(&log), fired("address", 2));
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    // One attempt per window makes three sign-ups per address: the third is still taken, the
    // fourth refused; another address has its own three.
    let db = TestDb::new(Backend::Sqlite).await;
    let env = [("BERTH_LOGIN_ATTEMPTS_PER_WINDOW", "1"), ("BERTH_TRUST_PROXY_HEADERS", "true")];
    let (server, log) = server_logging_refusals(&db, &env).await;
    let browser = Browser::new(&server);
    let sign_up = |name: String, address: &'static str| {
        let browser = &browser;
        async move {
            let r = browser
                .http
                .post(format!("{}/api/signup", browser.base))
                .header("Origin", &browser.base)
                .header("Accept", "application/json")
                .header("X-Forwarded-For", address)
                .form(&[("username", name.as_str()), ("email", "x@lab.example.org"), ("password", "long-enough-password")])
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(sign_up(format!("newcomer-a{i}"), "198.51.100.1").await);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(limits_fired(&log), fired("address", 2));
    assert_eq!(sign_up("newcomer-b0".into(), "198.51.100.2").await, 200, "another address is not throttled");
    let out = server.cli(&["user", "list"], "");
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
    assert_eq!(names, ["newcomer-a0", "newcomer-a1", "newcomer-a2", "newcomer-b0"], "refused sign-ups created nothing");
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
    let out = testkit::cli(&env, &["config"], "");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("domain = \"lab.example.org\""), "{text}");
    assert!(!text.contains("s3cret-pw") && !text.contains(&"ab".repeat(32)), "{text}");
    let bad = testkit::cli(&[("BERTH_LISTEN".to_string(), "nowhere".to_string())], &["config"], "");
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

#[tokio::test]
async fn return_addresses_with_control_characters_are_normalised_not_fatal() {
    let (_db, server) = server_with_user().await;
    let browser = Browser::new(&server);
    assert_eq!(browser.log_in("carol", "carol-password-long").await.status(), 200);
    // Normalised, then sent through the portal's app hop (which gives the app host its cookie).
    let cases = [
        ("https://alice-code.localhost/%0a", "/auth/app?rd=https%3A%2F%2Falice-code.localhost%2F"),
        (
            "https://alice-code.localhost/x%0d%0aSet-Cookie:%20a=b",
            "/auth/app?rd=https%3A%2F%2Falice-code.localhost%2FxSet-Cookie%3A%2520a%3Db",
        ),
        ("https://alice-code.localhost/%01%7f", "/auth/app?rd=https%3A%2F%2Falice-code.localhost%2F%2501%257F"),
    ];
    for (rd, expected) in cases {
        let r = browser.get(&format!("/login?rd={rd}")).await;
        assert_eq!(r.status(), 303, "{rd}");
        assert_eq!(location(&r).as_deref(), Some(expected), "{rd}");
    }
    // The login form's own return address is normalised the same way (it leads to the app,
    // whose host sends the browser through the hop).
    let r = browser
        .call("login", &[("username", "carol"), ("password", "carol-password-long"), ("rd", "https://alice-code.localhost/\n\u{1}x")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(location(&r).as_deref(), Some("https://alice-code.localhost/%01x"));
    // The server is still there.
    assert_eq!(browser.viewer().await["username"], "carol");
}

#[tokio::test]
async fn the_database_holds_only_hashes_of_session_ids() {
    use sha2::{Digest, Sha256};
    let (db, server) = server_with_user().await;
    let browser = Browser::new(&server);
    assert_eq!(browser.log_in("carol", "carol-password-long").await.status(), 200);
    let cookie = browser.session_cookie().expect("session cookie");
    let pool = testkit::sqlite_pool(&db).await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM sessions").fetch_all(&pool).await.unwrap();
    assert_eq!(ids, [hex::encode(Sha256::digest(cookie.as_bytes()))]);
    assert!(!ids.contains(&cookie));
    assert_eq!(browser.viewer().await["username"], "carol", "the cookie still works");
    // So does forwardAuth, which looks the session behind an app cookie up by itself.
    let app = testkit::app_cookie(&server.base, &format!("berth_session={cookie}"), "carol", "carol-code.localhost", "http").await;
    let r = reqwest::Client::new()
        .get(format!("{}/auth/verify?owner=carol", server.base))
        .header("X-Forwarded-Host", "carol-code.localhost")
        .header("Cookie", &app)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Logout deletes the row it names.
    browser.call("logout", &[]).await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn data_dir_and_sqlite_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let data = db.dir.path().join("data");
    let url = format!("sqlite://{}/berth.db", data.display());
    // The most permissive mask: every mode below comes from Berth, not from the mask.
    let server = TestServer::start_with_umask(&db, &[("BERTH_DATABASE_URL", &url)], 0).await;
    let out = server.cli(&["user", "add", "carol", "--password-stdin"], "carol-password-long\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let browser = Browser::new(&server);
    assert_eq!(browser.log_in("carol", "carol-password-long").await.status(), 200);
    let mode = |name: &str| std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700, "data_dir");
    for file in ["berth.db", "berth.db-wal", "berth.db-shm", "secret.key"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}
