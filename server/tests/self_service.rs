//! Account self-service against a real `berth serve`: API tokens and their scopes on the real
//! engine (busybox test image), the remote command line, the OpenAPI document checked by a
//! real validator, and the audit log's entries for each action on SQLite and PostgreSQL.

use std::time::Duration;

use serde_json::Value;
use testkit::docker::{env, Cleanup};
use testkit::{username, Backend as DbBackend, Browser, TestDb, TestServer};

/// A form of the account page (or, with `admin`, the accounts admin page), posted as a browser does.
async fn form(browser: &Browser, admin: bool, fields: &[(&str, &str)]) -> reqwest::Response {
    let path = if admin { "/admin/accounts/do" } else { "/account/do" };
    browser
        .http
        .post(format!("{}{path}", browser.base))
        .header("Origin", &browser.base)
        .header("Accept", "text/html")
        .form(fields)
        .send()
        .await
        .expect("form post")
}

/// The page a form returns to, drawn, as the page shows it.
async fn page(browser: &Browser, page: &str) -> String {
    let r = browser.call("page-html", &[("page", page), ("query", "")]).await;
    assert_eq!(r.status(), 200, "{page} page");
    r.json::<String>().await.unwrap()
}

/// A new token of `browser`'s user with `scopes`, as the account page shows it once.
async fn new_token(browser: &Browser, name: &str, scopes: &[&str]) -> String {
    let mut fields = vec![("op", "create-token"), ("name", name), ("days", "30")];
    let keys: Vec<String> = scopes.iter().map(|s| format!("scope_{s}")).collect();
    for key in &keys {
        fields.push((key.as_str(), "yes"));
    }
    let r = form(browser, false, &fields).await;
    assert_eq!(r.status(), 200, "a token is shown on a page of its own");
    let html = r.text().await.unwrap();
    let start = html.find("<code id=\"secret\">").expect("the secret on the page") + "<code id=\"secret\">".len();
    let token = html[start..].split('<').next().unwrap().to_string();
    assert!(token.starts_with("berth_") && token.len() == 70, "{token}");
    token
}

async fn api(server: &TestServer, method: reqwest::Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut request = http.request(method, format!("{}/api/v1{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn sql(db: &TestDb, statement: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query(statement).execute(&pool).await.unwrap();
    pool.close().await;
}

fn audit(server: &TestServer, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json", "--limit", "1000"];
    all.extend_from_slice(args);
    let out = server.cli_ok(&all, "");
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn has(entries: &[Value], action: &str, target: &str, actor_kind: &str, outcome: &str) -> bool {
    entries.iter().any(|e| e["action"] == action && e["target"] == target && e["actor_kind"] == actor_kind && e["outcome"] == outcome)
}

#[tokio::test]
async fn tokens_open_the_api_by_scope_and_the_remote_command_line_runs_a_workspace() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    let mut settings = env(&cleanup, &db.dir.path().join("storage"), 14500);
    let fixture = format!("{}/tests/fixtures/two-gpus.json", env!("CARGO_MANIFEST_DIR"));
    settings.push(("BERTH_MONITORING__GPU_INVENTORY".into(), fixture));
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with(&db, &extra).await;
    let alice_name = username("alice");
    let alice = Browser::new_user(&server, &alice_name).await;

    // No token, a malformed one, one that never existed: 401 with a JSON error.
    for token in [None, Some("nonsense"), Some("berth_0000000000000000000000000000000000000000000000000000000000000000")] {
        let (status, body) = api(&server, reqwest::Method::GET, "/me", token).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["code"], "unauthenticated");
    }
    // A browser's session cookie opens nothing here.
    let r = alice.http.post(format!("{}/api/v1/workspace/start", server.base)).header("Origin", &server.base).send().await.unwrap();
    assert_eq!(r.status(), 401, "the session cookie must not authenticate the API");

    let read = new_token(&alice, "reader", &["workspace:read"]).await;
    let (status, me) = api(&server, reqwest::Method::GET, "/me", Some(&read)).await;
    assert_eq!(status, 200);
    assert_eq!(me["username"], alice_name.as_str());
    assert_eq!(me["scopes"], serde_json::json!(["workspace:read"]));
    let (status, body) = api(&server, reqwest::Method::POST, "/workspace/start", Some(&read)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")), "{body}");
    for path in ["/users", "/gpus"] {
        let (status, body) = api(&server, reqwest::Method::GET, path, Some(&read)).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("insufficient_scope")), "{path}: {body}");
    }
    // A token opens no page: the dashboard sends it to the login page.
    let r = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
        .get(format!("{}/dashboard", server.base)).bearer_auth(&read).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/login"));

    // Only an admin may give a token the admin scope.
    let r = form(&alice, false, &[("op", "create-token"), ("name", "sneaky"), ("days", "30"), ("scope_admin", "yes")]).await;
    assert!(r.status().is_redirection());
    assert!(page(&alice, "account").await.contains("Only administrators can give a token the admin scope."));

    let write = new_token(&alice, "writer", &["workspace:write"]).await;
    let (status, view) = api(&server, reqwest::Method::POST, "/workspace/start", Some(&write)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "running");
    assert!(view["ssh_command"].as_str().is_some_and(|s| s.starts_with("ssh -p ")), "{view}");

    // The command line on a laptop: the same commands, through the API.
    let token_file = db.dir.path().join("token");
    std::fs::write(&token_file, format!("{write}\n")).unwrap();
    let remote = |args: &[&str]| {
        let mut all = vec!["--url", server.base.as_str(), "--token-file", token_file.to_str().unwrap(), "workspace"];
        all.extend_from_slice(args);
        let out = server.cli(&all, "");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (ok, out, err) = remote(&["stop"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().next(), Some(format!("{alice_name}: stopped").as_str()));
    let (status, view) = api(&server, reqwest::Method::GET, "/workspace", Some(&read)).await;
    assert_eq!((status, view["state"].as_str()), (200, Some("stopped")));
    let (ok, out, err) = remote(&["start"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().next(), Some(format!("{alice_name}: running").as_str()));
    let (ok, out, err) = remote(&["status", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["state"], "running");
    // Another user's workspace is not alice's to start.
    let (ok, _, err) = remote(&["start", "root"]);
    assert!(!ok);
    assert!(err.contains("insufficient_scope"), "{err}");

    // GPUs with the gpu scope: the board, a request granted, a release.
    let gpu = new_token(&alice, "gpus", &["gpu"]).await;
    let (status, board) = api(&server, reqwest::Method::GET, "/gpus", Some(&gpu)).await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(board["gpus"].as_array().map(Vec::len), Some(2), "{board}");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/gpus/request", server.base))
        .bearer_auth(&gpu)
        .json(&serde_json::json!({ "gpu": 1, "hours": 2, "note": "from a script" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let said: Value = r.json().await.unwrap();
    assert!(said["message"].as_str().unwrap().starts_with("Granted: GPU 1 until"), "{said}");
    let (_, board) = api(&server, reqwest::Method::GET, "/gpus", Some(&gpu)).await;
    assert_eq!(board["gpus"][1]["holder"], alice_name.as_str(), "{board}");
    assert_eq!(board["gpus"][1]["note"], "from a script");
    let holding = board["gpus"][1]["holding_id"].as_i64().unwrap();
    let (status, _) = api(&server, reqwest::Method::POST, &format!("/gpus/release/{holding}"), Some(&write)).await;
    assert_eq!(status, 403, "workspace:write does not include gpu");
    // An administrator's token without the admin scope has no admin rights over others' GPUs.
    let boss_name = username("boss");
    server.cli_ok(&["user", "add", &boss_name, "--admin", "--password-stdin"], "boss-password-long\n");
    let boss = Browser::new(&server);
    assert_eq!(boss.log_in(&boss_name, "boss-password-long").await.status(), 200);
    let boss_gpu = new_token(&boss, "boss-gpus", &["gpu"]).await;
    let (status, said) = api(&server, reqwest::Method::POST, &format!("/gpus/release/{holding}"), Some(&boss_gpu)).await;
    assert!(status == 403 || status == 422, "{status}: {said}");
    let (_, board) = api(&server, reqwest::Method::GET, "/gpus", Some(&gpu)).await;
    assert_eq!(board["gpus"][1]["holder"], alice_name.as_str(), "still alice's: {board}");
    let (status, said) = api(&server, reqwest::Method::POST, &format!("/gpus/release/{holding}"), Some(&gpu)).await;
    assert_eq!(status, 200, "{said}");
    let (_, board) = api(&server, reqwest::Method::GET, "/gpus", Some(&gpu)).await;
    assert!(board["gpus"][1]["holder"].is_null(), "{board}");

    // Revoked: 401 at once, from the API and from the command line.
    let tokens = page(&alice, "account").await;
    let id = tokens
        .split("<tr data-token=\"")
        .skip(1)
        .find(|row| row.contains("<td>writer</td>"))
        .map(|row| row.split('"').next().unwrap().to_string())
        .expect("the writer's row");
    let r = form(&alice, false, &[("op", "revoke-token"), ("id", &id)]).await;
    assert!(r.status().is_redirection());
    let (status, body) = api(&server, reqwest::Method::GET, "/workspace", Some(&write)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "writer is revoked");
    let (ok, _, err) = remote(&["stop"]);
    assert!(!ok && err.contains("unauthenticated"), "{err}");
    // Expired: 401 as well.
    let (status, _) = api(&server, reqwest::Method::GET, "/me", Some(&read)).await;
    assert_eq!(status, 200);
    sql(&db, "UPDATE api_tokens SET expires_at = 1").await;
    let (status, body) = api(&server, reqwest::Method::GET, "/me", Some(&read)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));

    // Reconciliation (what `serve` runs at start) records the workspaces it adopts.
    server.cli_ok(&["workspace", "reconcile"], "");

    // Who started the workspace, and through what.
    let entries = audit(&server, &["--user", &alice_name]);
    assert!(has(&entries, "reconcile.adopt", &alice_name, "system", "ok"), "{entries:?}");
    assert!(has(&entries, "workspace.start", &alice_name, "token", "ok"), "{entries:?}");
    assert!(entries.iter().any(|e| e["action"] == "workspace.stop" && e["actor"] == format!("{alice_name} (token writer)")), "{entries:?}");
    assert!(has(&entries, "token.create", &format!("{alice_name}/token sneaky"), "user", "refused") || has(&entries, "token.create", &format!("{alice_name}/token sneaky"), "user", "failed"), "{entries:?}");
    assert!(has(&entries, "token.revoke", &format!("{alice_name}/token writer"), "user", "ok"), "{entries:?}");
    // GPU sharing's record is the audit log's too.
    for (action, kind) in [("sharing.request", "user"), ("sharing.grant", "system"), ("sharing.release", "user")] {
        assert!(has(&entries, action, &alice_name, kind, "ok"), "{action}: {entries:?}");
    }
    let refused: Vec<&Value> = entries.iter().filter(|e| e["action"] == "token.use" && e["outcome"] == "refused").collect();
    assert!(refused.iter().any(|e| e["actor"] == format!("{alice_name} (token writer)") && e["detail"] == "revoked"), "{refused:?}");
    assert!(refused.iter().any(|e| e["actor"] == format!("{alice_name} (token reader)") && e["detail"] == "expired"), "{refused:?}");
    assert_eq!(refused.len(), 2, "one entry a day for each dead token, however often it is tried (writer was tried twice): {refused:?}");
    drop(server);
    drop(cleanup);
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_every_route() {
    let db = TestDb::new(DbBackend::Sqlite).await;
    let server = TestServer::start(&db).await;
    let r = reqwest::get(format!("{}/api/v1/openapi.json", server.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let file = db.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let validator = testkit::workspace_root().join(".tools/venv/bin/openapi-spec-validator");
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{} (make test installs it): {e}", validator.display()));
    assert!(out.status.success(), "openapi-spec-validator: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let mut routes: Vec<String> = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    assert_eq!(routes, vec![
        "DELETE /keys/{id}",
        "GET /gpus",
        "GET /keys",
        "GET /me",
        "GET /users",
        "GET /workspace",
        "GET /workspaces",
        "POST /gpus/release/{holding}",
        "POST /gpus/request",
        "POST /keys",
        "POST /users/{username}/approve",
        "POST /users/{username}/disable",
        "POST /users/{username}/enable",
        "POST /workspace/restart",
        "POST /workspace/start",
        "POST /workspace/stop",
        "POST /workspaces/{username}/start",
        "POST /workspaces/{username}/stop",
    ]);
    // Every documented route exists (it asks for a token rather than being unknown), and an
    // undocumented one does not.
    let http = reqwest::Client::new();
    for route in &routes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "1").replace("{holding}", "1").replace("{username}", "nobody");
        let r = http.request(method.parse().unwrap(), format!("{}/api/v1{path}", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{route}");
    }
    let (status, body) = api(&server, reqwest::Method::GET, "/nothing-here", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // The command line prints the same document.
    let printed: Value = serde_json::from_slice(&server.cli_ok(&["openapi"], "").stdout).unwrap();
    assert_eq!(printed["paths"], doc["paths"]);
}

async fn every_action_is_audited(backend: DbBackend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (admin_name, alice_name, bob_name) = (username("root"), username("alice"), username("bob"));
    server.cli_ok(&["user", "add", &admin_name, "--admin", "--password-stdin"], &format!("{admin_name}-password-long\n"));
    let admin = Browser::new(&server);
    assert_eq!(admin.log_in(&admin_name, &format!("{admin_name}-password-long")).await.status(), 200);

    // Sign-up, approval, a failed and a good login, logout.
    let visitor = Browser::new(&server);
    let r = visitor.call("signup", &[("username", &alice_name), ("email", "alice@lab.example"), ("password", "alice-password-long")]).await;
    assert!(r.status().is_success(), "{}", r.status());
    let users: Value = admin.call("users", &[]).await.json().await.unwrap();
    let alice_id = users.as_array().unwrap().iter().find(|u| u["username"] == alice_name.as_str()).unwrap()["id"].as_i64().unwrap();
    assert!(admin.call("admin-action", &[("user_id", &alice_id.to_string()), ("action", "approve")]).await.status().is_success());
    let alice = Browser::new(&server);
    assert_eq!(alice.log_in(&alice_name, "wrong-password-here").await.status(), 401);
    assert_eq!(alice.log_in(&alice_name, "alice-password-long").await.status(), 200);
    let other = Browser::new(&server);
    assert_eq!(other.log_in(&alice_name, "alice-password-long").await.status(), 200);
    let r = other.call("logout", &[]).await;
    assert!(r.status().is_success() || r.status().is_redirection(), "{}", r.status());

    // Password change, a key added and removed, a token made, used and revoked.
    let r = form(&alice, false, &[("op", "password"), ("current", "alice-password-long"), ("new", "alice-new-password-long")]).await;
    assert!(r.status().is_redirection());
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1NptI2F8y2U26QqmlHtNCxiEQufOj5GX5pGFk5xTxU alice@laptop";
    assert!(form(&alice, false, &[("op", "add-key"), ("name", "laptop"), ("key", key)]).await.status().is_redirection());
    let account = page(&alice, "account").await;
    assert!(account.contains("SHA256:baVALgNCMrD5NAucvzGsxVmS7sHLZazAMDq+wbnOxds"), "{account}");
    let key_id = account.split("data-key=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert!(form(&alice, false, &[("op", "delete-key"), ("id", &key_id)]).await.status().is_redirection());
    alice.call("workspace-regenerate", &[("which", "ssh")]).await;
    let token = new_token(&alice, "script", &["workspace:write"]).await;
    let (status, _) = api(&server, reqwest::Method::POST, "/workspace/stop", Some(&token)).await;
    assert_eq!(status, 200, "stopping a workspace that never ran is fine");
    let token_id = page(&alice, "account").await.split("data-token=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert!(form(&alice, false, &[("op", "revoke-token"), ("id", &token_id)]).await.status().is_redirection());

    // Administration: limits, admin rights (never the last admin's), a reset, a deletion.
    server.cli_ok(&["user", "add", &bob_name, "--password-stdin"], "bob-password-long\n");
    assert!(form(&admin, true, &[("op", "limits"), ("username", &bob_name), ("memory_gib", "2"), ("cpus", "1.5"), ("gpus", "")]).await.status().is_redirection());
    assert!(form(&admin, true, &[("op", "promote"), ("username", &bob_name)]).await.status().is_redirection());
    assert!(form(&admin, true, &[("op", "demote"), ("username", &bob_name)]).await.status().is_redirection());
    assert!(form(&admin, true, &[("op", "demote"), ("username", &admin_name)]).await.status().is_redirection());
    assert!(page(&admin, "admin-accounts").await.contains("Administrators cannot lock themselves out."));
    let out = server.cli(&["user", "demote", &admin_name], "");
    assert!(!out.status.success(), "the last administrator stays one");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Berth needs at least one administrator"), "{}", String::from_utf8_lossy(&out.stderr));
    let r = form(&admin, true, &[("op", "reset-password"), ("username", &alice_name), ("password", "")]).await;
    assert_eq!(r.status(), 200, "a generated password is shown once");
    assert!(r.text().await.unwrap().contains("<code id=\"secret\">"));
    assert!(form(&admin, true, &[("op", "delete"), ("username", &bob_name), ("confirm", "not-bob")]).await.status().is_redirection());
    assert!(page(&admin, "admin-accounts").await.contains(&format!("Type {bob_name} in the box")));
    assert!(form(&admin, true, &[("op", "delete"), ("username", &bob_name), ("confirm", &bob_name)]).await.status().is_redirection());
    server.cli_ok(&["user", "passwd", &alice_name, "--password-stdin"], "alice-third-password\n");

    let entries = audit(&server, &[]);
    let expect = [
        ("signup", alice_name.as_str(), "anonymous", "ok"),
        ("user.approve", alice_name.as_str(), "admin", "ok"),
        ("login", alice_name.as_str(), "anonymous", "failed"),
        ("login", alice_name.as_str(), "user", "ok"),
        ("logout", alice_name.as_str(), "user", "ok"),
        ("password.change", alice_name.as_str(), "user", "ok"),
        ("key.add", &format!("{alice_name}/key laptop"), "user", "ok"),
        ("key.remove", &format!("{alice_name}/key laptop"), "user", "ok"),
        ("token.create", &format!("{alice_name}/token script"), "user", "ok"),
        ("token.use", alice_name.as_str(), "token", "ok"),
        ("workspace.stop", alice_name.as_str(), "token", "ok"),
        ("token.revoke", &format!("{alice_name}/token script"), "user", "ok"),
        ("user.add", bob_name.as_str(), "cli", "ok"),
        ("user.limits", bob_name.as_str(), "admin", "ok"),
        ("user.grant-admin", bob_name.as_str(), "admin", "ok"),
        ("user.revoke-admin", bob_name.as_str(), "admin", "ok"),
        ("user.revoke-admin", admin_name.as_str(), "admin", "refused"),
        ("user.revoke-admin", admin_name.as_str(), "cli", "failed"),
        ("password.reset", alice_name.as_str(), "admin", "ok"),
        ("user.delete", bob_name.as_str(), "admin", "failed"),
        ("user.delete", bob_name.as_str(), "admin", "ok"),
        ("password.reset", alice_name.as_str(), "cli", "ok"),
    ];
    for (action, target, kind, outcome) in expect {
        let found = entries.iter().filter(|e| e["action"] == action && e["target"] == target && e["actor_kind"] == kind && e["outcome"] == outcome).count();
        assert!(found >= 1, "no {action} of {target} by {kind} ({outcome}) in {entries:#?}");
    }
    assert!(entries.iter().any(|e| e["action"] == "credential.ssh-password" && e["target"] == alice_name.as_str() && e["actor_kind"] == "user"), "{entries:?}");
    // Once each: one login, one sign-up.
    assert_eq!(entries.iter().filter(|e| e["action"] == "signup").count(), 1);
    // The client address is kept where there is one.
    assert!(entries.iter().filter(|e| e["action"] == "login").all(|e| e["client"] == "127.0.0.1"), "{entries:?}");
    // Filters narrow: by user and by action family; newest first.
    let bobs = audit(&server, &["--user", &bob_name]);
    assert!(!bobs.is_empty() && bobs.iter().all(|e| e["target"] == bob_name.as_str() || e["actor"] == bob_name.as_str()), "{bobs:?}");
    let tokens = audit(&server, &["--action", "token"]);
    assert!(tokens.len() >= 3 && tokens.iter().all(|e| e["action"].as_str().unwrap().starts_with("token.")));
    assert!(entries.windows(2).all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()), "newest first");
    // The admin page shows them, filtered the same way.
    let r = admin.call("page-html", &[("page", "audit"), ("query", &format!("user={alice_name}&action=key"))]).await;
    let html: String = r.json().await.unwrap();
    assert_eq!(html.matches("data-action=\"key.").count(), 2, "{html}");
    // Not for users.
    assert_eq!(alice.call("page-html", &[("page", "audit"), ("query", "")]).await.status(), 401, "alice's sessions ended at the reset");
    let alice_again = Browser::new(&server);
    assert_eq!(alice_again.log_in(&alice_name, "alice-third-password").await.status(), 200);
    assert_eq!(alice_again.call("page-html", &[("page", "audit"), ("query", "")]).await.status(), 403);
    // Nothing the portal offers deletes an entry.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(audit(&server, &[]).len() >= entries.len());
}

#[tokio::test]
async fn every_action_is_audited_on_sqlite() {
    every_action_is_audited(DbBackend::Sqlite).await;
}

#[tokio::test]
async fn every_action_is_audited_on_postgres() {
    every_action_is_audited(DbBackend::Postgres).await;
}
