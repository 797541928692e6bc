//! A real OpenID provider for tests: oidc-provider-mock (PyPI), started per test on loopback.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MockProvider {
    pub issuer: String,
    child: Child,
}

impl MockProvider {
    /// `users`: JSON claims objects (each with "sub") the provider knows from the start.
    pub async fn start(users: &[serde_json::Value]) -> MockProvider {
        let port = super::free_port();
        // make test installs the provider into .tools/venv (scripts/install-deps.sh).
        let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
        let python = if venv.exists() { venv } else { "python3".into() };
        let mut cmd = Command::new(python);
        cmd.args(["-m", "oidc_provider_mock", "--port", &port.to_string()]);
        for user in users {
            cmd.args(["--user-claims", &user.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m oidc_provider_mock (make test installs oidc-provider-mock)");
        let provider = MockProvider { issuer: format!("http://127.0.0.1:{port}"), child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{}/.well-known/openid-configuration", provider.issuer);
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return provider;
            }
            assert!(Instant::now() < deadline, "the mock OpenID provider did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Changes a user's claims at the provider (e.g. group membership).
    pub async fn set_claims(&self, sub: &str, claims: serde_json::Value) {
        let r = reqwest::Client::new().put(format!("{}/users/{sub}", self.issuer)).json(&claims).send().await.unwrap();
        assert!(r.status().is_success(), "set claims: {}", r.status());
    }

    /// The provider's consent form, answered for `sub` (or denied): returns where it redirects.
    pub async fn authorize(&self, authorize_url: &str, sub: Option<&str>) -> String {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let form: Vec<(&str, &str)> = match sub {
            Some(sub) => vec![("sub", sub)],
            None => vec![("action", "deny")],
        };
        let r = http.post(authorize_url).form(&form).send().await.unwrap();
        assert!(r.status().is_redirection(), "provider answered {}: {}", r.status(), r.text().await.unwrap_or_default());
        r.headers()["location"].to_str().unwrap().to_string()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
