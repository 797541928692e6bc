//! Accounts end to end over HTTP against a real `berth serve`, on SQLite and on PostgreSQL.

use testkit::{location, Backend, Browser, TestDb, TestServer};

const ADMIN_PW: &str = "admin-password-long";
const ALICE_PW: &str = "alice-password-long";

async fn start(backend: Backend) -> (TestDb, TestServer) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let out = server.cli(&["user", "add", "root-admin", "--admin", "--password-stdin"], &format!("{ADMIN_PW}\n"));
    assert!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    (db, server)
}

async fn sign_up(browser: &Browser, name: &str, password: &str) -> reqwest::Response {
    browser
        .call("signup", &[("username", name), ("email", &format!("{name}@lab.example.org")), ("password", password)])
        .await
}

async fn user_id(admin: &Browser, name: &str) -> i64 {
    let users: serde_json::Value = admin.call("users", &[]).await.json().await.unwrap();
    users.as_array().unwrap().iter().find(|u| u["username"] == name).expect("user listed")["id"].as_i64().unwrap()
}

async fn admin_action(admin: &Browser, name: &str, action: &str) -> reqwest::Response {
    let id = user_id(admin, name).await.to_string();
    admin.call("admin-action", &[("user_id", &id), ("action", action)]).await
}

async fn logged_in_admin(server: &TestServer) -> Browser {
    let admin = Browser::new(server);
    let r = admin.log_in("root-admin", ADMIN_PW).await;
    assert!(r.status().is_success(), "admin login: {}", r.status());
    admin
}

async fn signup_pending_approve_login_logout(backend: Backend) {
    let (_db, server) = start(backend).await;
    let alice = Browser::new(&server);

    let r = sign_up(&alice, "alice", ALICE_PW).await;
    assert!(r.status().is_success(), "sign-up: {}", r.status());

    // Pending: the correct password does not open a session.
    let r = alice.log_in("alice", ALICE_PW).await;
    assert_eq!(r.headers().get("serverfnredirect").is_some(), true, "pending login is sent to /pending");
    assert_eq!(r.headers().get("location").unwrap(), "/pending");
    assert_eq!(alice.viewer().await, serde_json::Value::Null);
    let r = alice.get("/dashboard").await;
    assert_eq!(r.status(), 303, "dashboard without login redirects");
    assert_eq!(location(&r).as_deref(), Some("/login"));

    let admin = logged_in_admin(&server).await;
    let users: serde_json::Value = admin.call("users", &[]).await.json().await.unwrap();
    let row = users.as_array().unwrap().iter().find(|u| u["username"] == "alice").unwrap();
    assert_eq!(row["status"], "Pending");
    let r = admin_action(&admin, "alice", "approve").await;
    assert!(r.status().is_success(), "approve: {}", r.status());

    let r = alice.log_in("alice", ALICE_PW).await;
    assert!(r.status().is_success());
    assert_eq!(r.headers().get("location").unwrap(), "/dashboard");
    assert_eq!(alice.viewer().await["username"], "alice");
    let page = alice.get("/dashboard").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("alice"), "dashboard greets the user");

    // Non-admins cannot use admin functions.
    let r = alice.call("users", &[]).await;
    assert_eq!(r.status(), 403);

    // Logout deletes the session server-side: the old cookie is worthless.
    let old_cookie = alice.session_cookie().expect("session cookie");
    let r = alice.call("logout", &[]).await;
    assert!(r.status().is_success());
    assert_eq!(alice.viewer().await, serde_json::Value::Null);
    let replay = Browser::at(&server.base);
    replay.jar.add_cookie_str(&format!("berth_session={old_cookie}"), &server.base.parse().unwrap());
    assert_eq!(replay.viewer().await, serde_json::Value::Null, "a logged-out session id must not work again");
}

async fn disabled_user_is_refused_on_next_request(backend: Backend) {
    let (_db, server) = start(backend).await;
    let out = server.cli(&["user", "add", "bob", "--password-stdin"], "bob-password-long\n");
    assert!(out.status.success());
    let bob = Browser::new(&server);
    assert!(bob.log_in("bob", "bob-password-long").await.status().is_success());
    assert_eq!(bob.get("/dashboard").await.status(), 200);

    let admin = logged_in_admin(&server).await;
    assert!(admin_action(&admin, "bob", "disable").await.status().is_success());

    let r = bob.get("/dashboard").await;
    assert_eq!(location(&r).as_deref(), Some("/login"), "disabled user's session is over");
    assert_eq!(bob.viewer().await, serde_json::Value::Null);
    let r = bob.log_in("bob", "bob-password-long").await;
    assert_eq!(r.status(), 403, "disabled user cannot log in again");

    // Re-enabled, bob logs in again; the CLI can do the same.
    assert!(admin_action(&admin, "bob", "enable").await.status().is_success());
    assert!(bob.log_in("bob", "bob-password-long").await.status().is_success());
    let out = server.cli(&["user", "disable", "bob"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(bob.viewer().await, serde_json::Value::Null, "CLI disable ends live sessions too");
}

async fn session_survives_server_restart(backend: Backend) {
    let (db, server) = start(backend).await;
    let admin = logged_in_admin(&server).await;
    assert_eq!(admin.viewer().await["username"], "root-admin");
    let cookie = admin.session_cookie().unwrap();
    server.kill();

    let server = TestServer::start(&db).await;
    let again = Browser::at(&server.base);
    again.jar.add_cookie_str(&format!("berth_session={cookie}"), &server.base.parse().unwrap());
    assert_eq!(again.viewer().await["username"], "root-admin", "session kept across a restart");
}

/// The session cookie lasts the absolute lifetime (7 days); the server decides when idleness
/// ends it (see the next test).
async fn the_session_cookie_lasts_the_absolute_lifetime(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start_with(&db, &[("BERTH_SESSION_IDLE_MINUTES", "1")]).await;
    server.cli_ok(&["user", "add", "alice", "--password-stdin"], &format!("{ALICE_PW}\n"));
    let r = Browser::new(&server).log_in("alice", ALICE_PW).await;
    assert!(r.status().is_success());
    let set_cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set_cookie.contains("Max-Age=604800"), "{set_cookie}");
}

/// Idle expiry counts work done in the apps: a user in VS Code all day never touches the portal.
/// The portal's session store and the forwardAuth gateway (served over HTTP) run here, on the
/// real database, with a clock the test sets: 75 seconds of app use pass without waiting.
async fn app_use_keeps_a_session_alive_and_idleness_ends_it(backend: Backend) {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use app::services::{SESSION_LOGIN_AT, SESSION_USER_ID};
    use sha2::{Digest, Sha256};
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::SessionStore;

    const T0: i64 = 1_700_000_000;
    let db = TestDb::new(backend).await;
    let services = testkit::service::backend(&berth::config::Config::default(), &db.url).await;
    testkit::service::approved_user(&services, "alice").await;
    let alice = services.accounts.find_by_name("alice").await.unwrap().id;
    let now = Arc::new(AtomicI64::new(T0));
    let clock = {
        let now = now.clone();
        berth::sessions::Clock::new(move || now.load(Ordering::SeqCst))
    };
    // An idle window of one minute, as BERTH_SESSION_IDLE_MINUTES=1 gives.
    let sessions = testkit::service::sessions(&services.db, clock, Duration::from_secs(60));
    let store = &sessions.store;

    // Two logins at T0, as the portal records them (the record itself lasts 7 days).
    let login = || Record {
        id: Id::default(),
        data: HashMap::from([(SESSION_USER_ID.to_string(), serde_json::json!(alice)), (SESSION_LOGIN_AT.to_string(), serde_json::json!(T0))]),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::days(7),
    };
    let (mut working, mut idle) = (login(), login());
    store.create(&mut working).await.unwrap();
    store.create(&mut idle).await.unwrap();
    let pool = services.db.pool.clone();
    let deadline_of = |record: &Record| {
        let (pool, id) = (pool.clone(), hex::encode(Sha256::digest(record.id.to_string().as_bytes())));
        async move {
            sqlx::query_scalar::<_, i64>("SELECT expires_at FROM sessions WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap()
        }
    };
    assert_eq!(deadline_of(&working).await, 1_700_000_060, "idle deadline: a minute after the login");
    assert_eq!(deadline_of(&idle).await, 1_700_000_060);

    // The working session's app cookie, through the portal's hop and forwardAuth's redeem.
    let verify = testkit::service::serve_forward_auth(sessions.gateway.clone()).await;
    let hop = sessions.gateway.hop("http://alice-code.localhost/lab", "alice", &working.id.to_string()).unwrap();
    let to = url::Url::parse(&hop).unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let ask = |uri: String, cookie: Option<String>| {
        let mut r = http
            .get(format!("{verify}/auth/verify?owner=alice"))
            .header("X-Forwarded-Host", "alice-code.localhost")
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", uri)
            .header("Accept", "application/json");
        if let Some(cookie) = cookie {
            r = r.header("Cookie", cookie);
        }
        r.send()
    };
    let r = ask(format!("{}?{}", to.path(), to.query().unwrap()), None).await.unwrap();
    assert_eq!(r.status(), 302, "redeemed");
    let app = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(app.starts_with("berth_app="), "{app}");

    // For 70 s, longer than the idle window, only the app is used: forwardAuth every 10 s.
    for step in 0..=7 {
        let t = T0 + 10 * step;
        now.store(t, Ordering::SeqCst);
        // The deadline moves off the request path; give a write from the last step time to
        // land. While the app is in use, the session keeps at least half its window ahead.
        let waited = Instant::now();
        while deadline_of(&working).await < t + 30 {
            assert!(waited.elapsed() < Duration::from_secs(10), "at T0+{}s the session's deadline lags: {}", t - T0, deadline_of(&working).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = ask("/lab".into(), Some(app.clone())).await.unwrap();
        assert_eq!(r.status(), 200, "app use at T0+{}s", t - T0);
    }

    now.store(T0 + 75, Ordering::SeqCst);
    assert_eq!(deadline_of(&idle).await, 1_700_000_060, "nothing moved the unused session's deadline");
    let portal = store.load(&working.id).await.unwrap();
    assert_eq!(portal.map(|r| r.data[SESSION_USER_ID].clone()), Some(serde_json::json!(alice)), "app use kept the session alive");
    assert!(store.load(&idle.id).await.unwrap().is_none(), "an unused session ends after the idle window");
    let idle_at_gateway = sessions.cache.load(&services.db, &idle.id.to_string(), 7 * 24 * 3600).await.unwrap();
    assert!(idle_at_gateway.is_none(), "and forwardAuth no longer knows it either");
    // The periodic clean-up removes exactly the expired row.
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 1);
}

async fn usernames_sharing_an_app_host_are_refused(backend: Backend) {
    let (_db, server) = start(backend).await;
    let out = server.cli(&["user", "add", "jupyter-ml"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Both would own jupyter-ml-code.<domain>.
    let out = server.cli(&["user", "add", "ml-code"], "");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "berth: That username is not available.\n");
    // The other way round, through sign-up.
    assert!(server.cli(&["user", "add", "nb-code"], "").status.success());
    let r = sign_up(&Browser::new(&server), "jupyter-nb", "jupyter-nb-password").await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("That username is not available."));
    let out = server.cli(&["user", "list"], "");
    let names: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
    assert_eq!(names, ["jupyter-ml", "nb-code", "root-admin"], "nothing else was created");
}

#[tokio::test]
async fn the_portal_and_guacamole_hosts_are_nobodys() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut env = TestServer::env_for(&db, testkit::free_port());
    // With the default templates, user "lab" would own lab-code.example.org and user "remote"
    // desktop-remote.example.org: the portal's and Guacamole's hosts here.
    for (key, value) in [
        ("BERTH_PUBLIC_URL", "https://lab-code.example.org"),
        ("BERTH_DOMAIN", "example.org"),
        ("BERTH_GUACAMOLE__PUBLIC_URL", "https://desktop-remote.example.org/guacamole"),
        ("BERTH_GUACAMOLE__SECRET_KEY", "00112233445566778899aabbccddeeff"),
    ] {
        env.push((key.into(), value.into()));
    }
    for name in ["lab", "remote"] {
        let out = testkit::cli(&env, &["user", "add", name], "");
        assert!(!out.status.success(), "{name}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "berth: That username is not available.\n", "{name}");
    }
    let out = testkit::cli(&env, &["user", "add", "alice"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await } )* }
    };
}

on_both_databases!(
    signup_pending_approve_login_logout,
    disabled_user_is_refused_on_next_request,
    session_survives_server_restart,
    the_session_cookie_lasts_the_absolute_lifetime,
    app_use_keeps_a_session_alive_and_idleness_ends_it,
    usernames_sharing_an_app_host_are_refused,
);
