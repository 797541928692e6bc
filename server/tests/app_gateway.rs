//! The embedded app gateway (on by default without Traefik): app hosts such as
//! `jupyter-<user>.localhost:<port>` are served by `berth serve` itself, to their owner only,
//! and reach the workspace with the secrets Traefik's middlewares would add and without Berth's
//! cookies. Against a real `berth serve`, the real engine and the busybox test workspace (whose
//! httpd answers on every app port; a CGI script added in the container shows what arrives).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::docker::{docker, env, try_docker, Cleanup};
use testkit::{location, username, Backend as DbBackend, Browser, TestDb, TestServer};

/// A client that reaches every `*.localhost` app host of these users at the test server, as a
/// browser does (it resolves `*.localhost` to loopback by itself), with no cookie jar.
fn app_client(server: &TestServer, hosts: &[&str]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    for host in hosts {
        builder = builder.resolve(host, SocketAddr::from(([127, 0, 0, 1], server.port)));
    }
    builder.build().unwrap()
}

/// The owner's cookie for one app host, the way a browser gets it: the gateway sends the
/// anonymous page load to the portal, the portal (her session) hands back a one-time code, the
/// gateway redeems it for the host's own cookie and sends her back where she was going.
async fn app_cookie(server: &TestServer, client: &reqwest::Client, portal: &str, host: &str) -> String {
    let url = format!("http://{host}:{}/index.html?x=1", server.port);
    let r = client.get(&url).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302, "anonymous page load on {host}");
    let to_portal = location(&r).unwrap();
    let expected = format!("{}/auth/app?rd={}", server.base, urlencoding::encode(&url));
    assert_eq!(to_portal, expected, "sent to the portal's hop, with the way back");
    let r = client.get(&to_portal).header("Cookie", portal).send().await.unwrap();
    assert_eq!(r.status(), 303, "the portal hands out a code");
    let with_code = location(&r).unwrap();
    assert!(with_code.starts_with(&format!("http://{host}:{}/.berth/auth?code=", server.port)), "{with_code}");
    let r = client.get(&with_code).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302, "the gateway redeems the code");
    assert_eq!(location(&r).as_deref(), Some(url.as_str()), "back where she was going, port included");
    let set_cookie = r.headers().get("set-cookie").expect("the host's cookie").to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && !set_cookie.to_ascii_lowercase().contains("domain="), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_string()
}

/// `KEY=value` lines of what the workspace's CGI script saw.
fn cgi_env(body: &str) -> std::collections::HashMap<String, String> {
    body.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn the_app_gateway_serves_each_workspace_to_its_owner_alone() {
    let cleanup = Cleanup::new();
    let db = TestDb::new(DbBackend::Sqlite).await;
    // What `make run` has: no Traefik directory, domain "localhost".
    let settings = env(&cleanup, &db.dir.path().join("storage"), 16000);
    let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start_with(&db, &extra).await;
    let (alice_name, bob_name) = (username("alice"), username("bob"));
    let alice = Browser::new_user(&server, &alice_name).await;
    let bob = Browser::new_user(&server, &bob_name).await;
    let jupyter = format!("jupyter-{alice_name}.localhost");
    let code = format!("{alice_name}-code.localhost");
    let bobs_jupyter = format!("jupyter-{bob_name}.localhost");
    let client = app_client(&server, &[&jupyter, &code, &bobs_jupyter]);
    let port = server.port;

    // Before the workspace runs, the owner hears so in words.
    let alice_portal = format!("berth_session={}", alice.session_cookie().unwrap());
    let alice_jupyter = app_cookie(&server, &client, &alice_portal, &jupyter).await;
    let r = client.get(format!("http://{jupyter}:{port}/")).header("Cookie", &alice_jupyter).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("not running"), "a page that says why");

    let r = alice.call("workspace-action", &[("action", "start")]).await;
    assert!(r.status().is_success(), "start: {}", r.status());
    let workspace = format!("workspace-{alice_name}");
    // The CGI script that shows what reaches the workspace (busybox httpd runs /www/cgi-bin).
    let deadline = Instant::now() + Duration::from_secs(90);
    while try_docker(&["inspect", "-f", "{{.State.Running}}", &workspace]).as_deref() != Ok("true") {
        assert!(Instant::now() < deadline, "alice's workspace never ran");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    docker(&[
        "exec",
        &workspace,
        "sh",
        "-c",
        "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\nenv\\n' > /www/cgi-bin/env && chmod +x /www/cgi-bin/env",
    ]);

    // The owner, with her host's cookie, gets her workspace's page through the gateway.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let r = client.get(format!("http://{jupyter}:{port}/index.html")).header("Cookie", &alice_jupyter).send().await.unwrap();
        if r.status() == 200 {
            break r.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the gateway never reached the workspace: {}", r.status());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(body.trim(), format!("berth test workspace for {alice_name}"));

    // What the workspace receives: no Berth cookie, none of the browser's forged identity or
    // secrets, the owner's name, and on Jupyter's host the token Traefik would add.
    let r = client
        .get(format!("http://{jupyter}:{port}/cgi-bin/env"))
        .header("Cookie", format!("{alice_jupyter}; _xsrf=abc"))
        .header("X-Berth-User", &bob_name)
        .header("X-Berth-App-Secret", "forged")
        .header("X-Forwarded-Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = cgi_env(&r.text().await.unwrap());
    assert_eq!(seen.get("HTTP_COOKIE").map(String::as_str), Some("_xsrf=abc"), "{seen:?}");
    assert_eq!(seen.get("HTTP_X_BERTH_USER"), Some(&alice_name), "{seen:?}");
    assert_eq!(seen.get("HTTP_X_BERTH_APP_SECRET"), None, "jupyter's host gets no app secret: {seen:?}");
    assert_eq!(seen.get("HTTP_X_FORWARDED_HOST").map(String::as_str), Some(format!("{jupyter}:{port}").as_str()));
    assert_eq!(seen.get("HTTP_HOST").map(String::as_str), Some(format!("{jupyter}:{port}").as_str()), "the browser's host");

    // On the app gate's hosts (code-server, TensorBoard) the gateway adds the gate's secret.
    let alice_code = app_cookie(&server, &client, &alice_portal, &code).await;
    let r = client
        .get(format!("http://{code}:{port}/cgi-bin/env"))
        .header("Cookie", &alice_code)
        .header("X-Berth-App-Secret", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = cgi_env(&r.text().await.unwrap());
    let secret = seen.get("HTTP_X_BERTH_APP_SECRET").expect("the gate's secret is added");
    assert_ne!(secret, "forged");
    assert_eq!(secret.len(), 64, "Berth's secret: {secret}");
    assert_eq!(seen.get("HTTP_COOKIE"), None, "only Berth's cookie was sent: none is left");

    // A cookie is good for its own host only.
    let r = client.get(format!("http://{code}:{port}/index.html")).header("Cookie", &alice_jupyter).send().await.unwrap();
    assert_eq!(r.status(), 401, "jupyter's cookie on the code host");

    // Cross-site: a page elsewhere cannot use her cookie (websocket or fetch).
    let r = client
        .get(format!("http://{jupyter}:{port}/index.html"))
        .header("Cookie", &alice_jupyter)
        .header("Origin", "http://evil.localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "foreign Origin");

    // Bob, logged in: the portal refuses him a code for her host, and his own host's cookie
    // opens nothing of hers.
    let bob_portal = format!("berth_session={}", bob.session_cookie().unwrap());
    let rd = format!("http://{jupyter}:{port}/index.html");
    let r = client.get(format!("{}/auth/app", server.base)).query(&[("rd", &rd)]).header("Cookie", &bob_portal).send().await.unwrap();
    assert_eq!(r.status(), 403, "no code for another user's host");
    let bob_jupyter = app_cookie(&server, &client, &bob_portal, &bobs_jupyter).await;
    for accept in ["text/html", "application/json"] {
        let r = client
            .get(format!("http://{jupyter}:{port}/index.html"))
            .header("Cookie", &bob_jupyter)
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 200, "bob's cookie on alice's host ({accept})");
        assert!(!r.text().await.unwrap().contains("berth test workspace"), "nothing of hers reaches bob");
    }
    // Forged cookies are nobody's.
    let r = client.get(format!("http://{jupyter}:{port}/index.html")).header("Cookie", "berth_app=AAAA").send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Logged out of the portal, her app cookie dies with the session.
    let r = alice.call("logout", &[]).await;
    assert!(r.status().is_success() || r.status().is_redirection(), "logout: {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(35);
    loop {
        let r = client.get(format!("http://{jupyter}:{port}/index.html")).header("Cookie", &alice_jupyter).send().await.unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "the app cookie outlived the portal session: {}", r.status());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
