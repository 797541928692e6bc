//! Single sign-on against a real OpenID provider (oidc-provider-mock) over HTTP.

use serde_json::{json, Value};
use testkit::oidc::{KeySwapProxy, MockProvider};
use testkit::{location, Backend, Browser, TestDb, TestServer};

/// Runs the whole redirect dance for `sub`; returns the browser and Berth's final redirect.
async fn sso_login(server: &TestServer, provider: &MockProvider, id: &str, sub: &str) -> (Browser, String) {
    let browser = Browser::new(server);
    let to_provider = location(&browser.get(&format!("/auth/oidc/{id}/login")).await).expect("redirect to provider");
    assert!(to_provider.starts_with(&provider.issuer), "{to_provider}");
    for needed in ["code_challenge=", "code_challenge_method=S256", "nonce=", "state="] {
        assert!(to_provider.contains(needed), "{needed} missing from {to_provider}");
    }
    let callback = provider.authorize(&to_provider, Some(sub)).await;
    let r = browser.http.get(&callback).send().await.unwrap();
    let end = location(&r).unwrap_or_else(|| panic!("callback answered {}", r.status()));
    (browser, end)
}

fn toml_provider(issuer: &str, extra: &str) -> String {
    format!(
        "[[oidc_providers]]\nid = \"mock\"\nname = \"Lab SSO\"\nissuer = \"{issuer}\"\nclient_id = \"berth\"\nclient_secret = \"berth-secret\"\n{extra}\n"
    )
}

async fn server_with(db: &TestDb, provider: &MockProvider, toml: &str, env: &[(&str, &str)]) -> TestServer {
    std::fs::write(db.dir.path().join("berth.toml"), toml).unwrap();
    let mut all = vec![("BERTH_OIDC_ISSUER", provider.issuer.as_str()), ("BERTH_OIDC_CLIENT_ID", "berth"),
        ("BERTH_OIDC_CLIENT_SECRET", "berth-secret"), ("BERTH_OIDC_NAME", "Lab")];
    all.extend_from_slice(env);
    let server = TestServer::start_with(db, &all).await;
    assert!(server.cli(&["user", "add", "root-admin", "--admin", "--password-stdin"], "admin-password-long\n").status.success());
    server
}

#[tokio::test]
async fn first_login_waits_for_approval_then_reaches_the_dashboard() {
    let provider = MockProvider::start(&[json!({"sub": "u-erin", "email": "erin@elsewhere.org", "preferred_username": "Erin"})]).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, &provider, "", &[]).await;

    let (erin, end) = sso_login(&server, &provider, "sso", "u-erin").await;
    assert_eq!(end, "/pending");
    assert_eq!(erin.viewer().await, Value::Null, "pending: no session");

    let admin = Browser::new(&server);
    admin.log_in("root-admin", "admin-password-long").await;
    let users: Value = admin.call("users", &[]).await.json().await.unwrap();
    let erin_row = users.as_array().unwrap().iter().find(|u| u["username"] == "erin").expect("account named from the claim");
    assert_eq!(erin_row["status"], "Pending");
    let id = erin_row["id"].to_string();
    assert_eq!(admin.call("admin-action", &[("user_id", &id), ("action", "approve")]).await.status(), 200);

    let (erin, end) = sso_login(&server, &provider, "sso", "u-erin").await;
    assert_eq!(end, "/dashboard");
    assert_eq!(erin.viewer().await["username"], "erin");
    // Logout ends the provider's session too (RP-initiated logout).
    let r = erin.call("logout", &[]).await;
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&format!("{}/oauth2/end_session?", provider.issuer)), "{to}");
    assert!(to.contains("id_token_hint="), "{to}");
    assert_eq!(erin.viewer().await, Value::Null);
}

#[tokio::test]
async fn groups_auto_approve_and_grant_admin_and_changes_apply_at_next_login() {
    let provider = MockProvider::start(&[
        json!({"sub": "u-carol", "preferred_username": "carol", "groups": ["staff"]}),
        json!({"sub": "u-alan", "preferred_username": "alan", "groups": ["staff", "berth-admins"]}),
        json!({"sub": "u-guest", "preferred_username": "guest", "groups": ["visitors"]}),
    ])
    .await;
    let db = TestDb::new(Backend::Sqlite).await;
    let toml = toml_provider(&provider.issuer, "auto_approve_groups = [\"staff\"]\nadmin_groups = [\"berth-admins\"]");
    let server = server_with(&db, &provider, &toml, &[]).await;

    let (carol, end) = sso_login(&server, &provider, "mock", "u-carol").await;
    assert_eq!(end, "/dashboard", "staff are approved at once");
    assert_eq!(carol.viewer().await["is_admin"], false);

    let (alan, end) = sso_login(&server, &provider, "mock", "u-alan").await;
    assert_eq!(end, "/admin");
    assert_eq!(alan.viewer().await["is_admin"], true);

    let (_, end) = sso_login(&server, &provider, "mock", "u-guest").await;
    assert_eq!(end, "/pending", "no matching group: pending");

    provider.set_claims("u-alan", json!({"preferred_username": "alan", "groups": ["staff"]})).await;
    let (alan, end) = sso_login(&server, &provider, "mock", "u-alan").await;
    assert_eq!(end, "/dashboard");
    assert_eq!(alan.viewer().await["is_admin"], false, "admin revoked when the group is gone");
}

#[tokio::test]
async fn email_domain_auto_approval_needs_a_verified_address() {
    let provider = MockProvider::start(&[
        json!({"sub": "u-v", "email": "vera@lab.example.org", "email_verified": true, "preferred_username": "vera"}),
        json!({"sub": "u-u", "email": "uma@lab.example.org", "email_verified": false, "preferred_username": "uma"}),
        json!({"sub": "u-o", "email": "otto@other.org", "email_verified": true, "preferred_username": "otto"}),
    ])
    .await;
    let db = TestDb::new(Backend::Sqlite).await;
    let toml = toml_provider(&provider.issuer, "auto_approve_domains = [\"lab.example.org\"]");
    let server = server_with(&db, &provider, &toml, &[]).await;
    assert_eq!(sso_login(&server, &provider, "mock", "u-v").await.1, "/dashboard");
    assert_eq!(sso_login(&server, &provider, "mock", "u-u").await.1, "/pending");
    assert_eq!(sso_login(&server, &provider, "mock", "u-o").await.1, "/pending");
}

#[tokio::test]
async fn tampered_state_replayed_code_and_denied_consent_are_refused() {
    let provider = MockProvider::start(&[json!({"sub": "u-tess", "preferred_username": "tess", "groups": ["staff"]})]).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, &provider, &toml_provider(&provider.issuer, "auto_approve_groups = [\"staff\"]"), &[]).await;

    // Tampered state.
    let b = Browser::new(&server);
    let to_provider = location(&b.get("/auth/oidc/mock/login").await).unwrap();
    let callback = provider.authorize(&to_provider, Some("u-tess")).await;
    let tampered = {
        let mut url = url::Url::parse(&callback).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        url.query_pairs_mut().clear();
        for (k, v) in pairs {
            url.query_pairs_mut().append_pair(&k, if k == "state" { "forged-state" } else { &v });
        }
        url.to_string()
    };
    let r = b.http.get(&tampered).send().await.unwrap();
    assert_eq!(location(&r).as_deref(), Some("/auth/error?reason=state"));
    assert_eq!(b.viewer().await, Value::Null);
    let page = b.get("/auth/error?reason=state").await.text().await.unwrap();
    assert!(page.contains("expired or was tampered with"), "clear page");
    assert!(!page.to_lowercase().contains("panicked") && !page.contains("stack backtrace"));

    // Replayed code: a used code with a fresh, valid state.
    let b = Browser::new(&server);
    let to_provider = location(&b.get("/auth/oidc/mock/login").await).unwrap();
    let callback = provider.authorize(&to_provider, Some("u-tess")).await;
    assert_eq!(location(&b.http.get(&callback).send().await.unwrap()).as_deref(), Some("/dashboard"));
    let used_code = url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let again = Browser::new(&server);
    let to_provider = location(&again.get("/auth/oidc/mock/login").await).unwrap();
    let fresh_state = url::Url::parse(&to_provider).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let replay = format!("{}/auth/oidc/mock/callback?code={}&state={}", server.base, used_code, fresh_state);
    let r = again.http.get(&replay).send().await.unwrap();
    assert_eq!(location(&r).as_deref(), Some("/auth/error?reason=code"));
    assert_eq!(again.viewer().await, Value::Null);
    // The same callback twice: the pending login was single-use.
    let r = b.http.get(&callback).send().await.unwrap();
    assert_eq!(location(&r).as_deref(), Some("/auth/error?reason=state"));

    // Denied consent.
    let b = Browser::new(&server);
    let to_provider = location(&b.get("/auth/oidc/mock/login").await).unwrap();
    let callback = provider.authorize(&to_provider, None).await;
    let r = b.http.get(&callback).send().await.unwrap();
    assert_eq!(location(&r).as_deref(), Some("/auth/error?reason=denied"));
}

#[tokio::test]
async fn provider_down_gives_a_clear_page_and_password_login_still_works() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let server = TestServer::start_with(&db, &[("BERTH_OIDC_ISSUER", dead.as_str()), ("BERTH_OIDC_CLIENT_ID", "berth")]).await;
    assert!(server.cli(&["user", "add", "pat", "--password-stdin"], "pat-password-long\n").status.success());
    let b = Browser::new(&server);
    let r = b.get("/auth/oidc/sso/login").await;
    assert_eq!(location(&r).as_deref(), Some("/auth/error?reason=provider-unreachable"));
    let page = b.get("/auth/error?reason=provider-unreachable").await.text().await.unwrap();
    assert!(page.contains("cannot be reached"));
    assert_eq!(b.log_in("pat", "pat-password-long").await.status(), 200);
    assert_eq!(b.viewer().await["username"], "pat");
    let options: Value = b.call("login-options", &[]).await.json().await.unwrap();
    assert_eq!(options["password"], true);
    assert_eq!(options["providers"][0][0], "sso");
}

#[tokio::test]
async fn a_taken_name_is_never_someone_elses_account() {
    let provider = MockProvider::start(&[json!({"sub": "u-x", "preferred_username": "carol", "email": "carol@lab.example.org"})]).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, &provider, "", &[]).await;
    assert!(server.cli(&["user", "add", "carol", "--password-stdin"], "carol-password-long\n").status.success());

    let (b, end) = sso_login(&server, &provider, "sso", "u-x").await;
    assert_eq!(end, "/sso/username", "the provider's name is taken: pick another");
    assert_eq!(b.viewer().await, Value::Null);
    let post = |name: &'static str| {
        let b = &b;
        async move {
            let r = b.http.post(format!("{}/auth/oidc/username", b.base)).header("Origin", &b.base).form(&[("username", name)]).send().await.unwrap();
            location(&r).unwrap()
        }
    };
    assert_eq!(post("carol").await, "/sso/username?error=taken");
    assert_eq!(post("Bad Name").await, "/sso/username?error=invalid");
    assert_eq!(post("carol-lab").await, "/pending");
    let out = server.cli(&["user", "list", "--json"], "");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("\"carol-lab\"") && listing.contains("\"carol\""), "{listing}");
    // carol's own password account is untouched.
    let carol = Browser::new(&server);
    assert_eq!(carol.log_in("carol", "carol-password-long").await.status(), 200);
}

#[tokio::test]
async fn a_name_whose_hosts_clash_is_refused_for_sso_users_too() {
    let provider = MockProvider::start(&[json!({"sub": "u-ml", "preferred_username": "ml-code"})]).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, &provider, "", &[]).await;
    // jupyter-ml owns jupyter-ml-code.<domain>, which would be ml-code's Jupyter host.
    assert!(server.cli(&["user", "add", "jupyter-ml"], "").status.success());

    let (b, end) = sso_login(&server, &provider, "sso", "u-ml").await;
    assert_eq!(end, "/sso/username", "the provider's name is not available: pick another");
    let post = |name: &'static str| {
        let b = &b;
        async move {
            let r = b.http.post(format!("{}/auth/oidc/username", b.base)).header("Origin", &b.base).form(&[("username", name)]).send().await.unwrap();
            location(&r).unwrap()
        }
    };
    assert_eq!(post("ml-code").await, "/sso/username?error=unavailable");
    let page = b.get("/sso/username?error=unavailable").await.text().await.unwrap();
    assert!(page.contains("That username is not available; pick another."));
    assert_eq!(post("ml-lab").await, "/pending");
    let out = server.cli(&["user", "list"], "");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("ml-lab") && !listing.contains("ml-code"), "{listing}");
}

#[tokio::test]
async fn starting_sign_ins_stores_nothing_server_side() {
    let provider = MockProvider::start(&[json!({"sub": "u-sam", "preferred_username": "sam", "groups": ["staff"]})]).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, &provider, &toml_provider(&provider.issuer, "auto_approve_groups = [\"staff\"]"), &[]).await;
    // One address, fifty clients that never send a cookie back (as a script would).
    for _ in 0..50 {
        let r = Browser::new(&server).get("/auth/oidc/mock/login").await;
        assert!(location(&r).unwrap().starts_with(&provider.issuer));
    }
    let pool = testkit::sqlite_pool(&db).await;
    let count = || async { sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions").fetch_one(&pool).await.unwrap() };
    assert_eq!(count().await, 0, "fifty sign-ins started, no session rows");
    // A sign-in still goes through; only then is a session stored.
    let (sam, end) = sso_login(&server, &provider, "mock", "u-sam").await;
    assert_eq!(end, "/dashboard");
    assert_eq!(sam.viewer().await["username"], "sam");
    assert_eq!(count().await, 1);
}

#[tokio::test]
async fn sso_only_sites_refuse_password_login() {
    let provider = MockProvider::start(&[]).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, &provider, "", &[("BERTH_PASSWORD_LOGIN", "false")]).await;
    let b = Browser::new(&server);
    assert_eq!(b.log_in("root-admin", "admin-password-long").await.status(), 403);
    let options: Value = b.call("login-options", &[]).await.json().await.unwrap();
    assert_eq!(options["password"], false);
    let signup = b.call("signup", &[("username", "newbie"), ("email", "n@lab.example.org"), ("password", "newbie-password-long")]).await;
    assert_eq!(signup.status(), 403);
}

#[tokio::test]
async fn unverified_email_is_refused_when_the_policy_requires_it() {
    let provider = MockProvider::start(&[
        json!({"sub": "u-un", "email": "una@lab.example.org", "email_verified": false, "preferred_username": "una"}),
        json!({"sub": "u-ve", "email": "vic@lab.example.org", "email_verified": true, "preferred_username": "vic"}),
    ])
    .await;
    let db = TestDb::new(Backend::Sqlite).await;
    let server = server_with(&db, &provider, &toml_provider(&provider.issuer, "require_verified_email = true"), &[]).await;
    let (b, end) = sso_login(&server, &provider, "mock", "u-un").await;
    assert_eq!(end, "/auth/error?reason=email-unverified");
    assert_eq!(b.viewer().await, Value::Null);
    let page = b.get(&end).await.text().await.unwrap();
    assert!(page.contains("has not verified your e-mail"));
    assert_eq!(sso_login(&server, &provider, "mock", "u-ve").await.1, "/pending");
    let out = server.cli(&["user", "list", "--json"], "");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"una\""), "no account for the refused login");
}

#[tokio::test]
async fn an_id_token_with_a_bad_signature_is_refused() {
    let provider = MockProvider::start(&[json!({"sub": "u-mal", "preferred_username": "mal", "groups": ["staff"]})]).await;
    let forger = KeySwapProxy::start(&provider).await;
    let relay = KeySwapProxy::relay(&provider).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let via = |issuer: &str, id: &str| {
        toml_provider(issuer, "auto_approve_groups = [\"staff\"]").replace("id = \"mock\"", &format!("id = \"{id}\""))
    };
    let toml = format!("{}{}", via(&forger.issuer, "forged"), via(&relay.issuer, "relayed"));
    let server = server_with(&db, &provider, &toml, &[]).await;
    let through = |id: &'static str, proxy: &KeySwapProxy| {
        let (server, provider, issuer) = (&server, &provider, proxy.issuer.clone());
        async move {
            let b = Browser::new(server);
            let to_provider = location(&b.get(&format!("/auth/oidc/{id}/login")).await).expect("redirect to provider");
            assert!(to_provider.starts_with(&issuer), "discovery went through the proxy: {to_provider}");
            let callback = provider.authorize(&to_provider, Some("u-mal")).await;
            let r = b.http.get(&callback).send().await.unwrap();
            (b, location(&r).unwrap_or_default())
        }
    };

    // Through the forging proxy the provider is the same in every respect but its signing key.
    let (b, end) = through("forged", &forger).await;
    assert_eq!(end, "/auth/error?reason=token");
    assert_eq!(b.viewer().await, Value::Null, "no session from an unverifiable token");
    let page = b.get("/auth/error?reason=token").await.text().await.unwrap();
    assert!(page.contains("could not be verified"), "clear page");
    assert!(!page.to_lowercase().contains("panicked") && !page.contains("stack backtrace"));
    let admin = Browser::new(&server);
    admin.log_in("root-admin", "admin-password-long").await;
    let users: Value = admin.call("users", &[]).await.json().await.unwrap();
    assert!(users.as_array().unwrap().iter().all(|u| u["username"] != "mal"), "nothing created: {users}");

    // The control: the same proxy passing the real keys through signs the same user in.
    let (b, end) = through("relayed", &relay).await;
    assert_eq!(end, "/dashboard");
    assert_eq!(b.viewer().await["username"], "mal");
}
