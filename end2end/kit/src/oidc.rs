//! A real OpenID provider for tests: oidc-provider-mock (PyPI), started per test on loopback.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MockProvider {
    pub issuer: String,
    child: Child,
}

impl MockProvider {
    /// `users`: JSON claims objects (each with "sub") the provider knows from the start.
    pub async fn start(users: &[serde_json::Value]) -> MockProvider {
        let port = crate::free_port();
        // make test installs the provider into .tools/venv (scripts/install-deps.sh).
        let venv = crate::workspace_root().join(".tools/venv/bin/python");
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
        let mut provider = MockProvider { issuer: format!("http://127.0.0.1:{port}"), child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{}/.well-known/openid-configuration", provider.issuer);
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return provider;
            }
            if let Ok(Some(status)) = provider.child.try_wait() {
                panic!("the mock OpenID provider exited ({status}): is oidc-provider-mock installed (make test puts it into .tools/venv)?");
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

/// A man in the middle between Berth and the provider that hands out a wrong signing key: it
/// forwards everything (Host header included, so the provider names the proxy as its issuer)
/// but alters the modulus of every key in `/jwks`. Tokens the real provider signs then fail
/// verification, as a forged or corrupted token would.
pub struct KeySwapProxy {
    pub issuer: String,
    task: tokio::task::JoinHandle<()>,
}

impl KeySwapProxy {
    pub async fn start(provider: &MockProvider) -> KeySwapProxy {
        Self::launch(provider, true).await
    }

    /// The same proxy passing the keys through untouched: the control that shows the proxy
    /// itself breaks nothing.
    pub async fn relay(provider: &MockProvider) -> KeySwapProxy {
        Self::launch(provider, false).await
    }

    async fn launch(provider: &MockProvider, swap_keys: bool) -> KeySwapProxy {
        use axum::body::{to_bytes, Body};
        use axum::extract::{Request, State};
        use axum::response::Response;

        #[derive(Clone)]
        struct Upstream {
            base: String,
            http: reqwest::Client,
            swap_keys: bool,
        }

        async fn forward(State(up): State<Upstream>, request: Request) -> Response {
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, 1 << 20).await.unwrap();
            let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut outgoing = up.http.request(parts.method.clone(), format!("{}{path}", up.base));
            for (name, value) in &parts.headers {
                outgoing = outgoing.header(name, value);
            }
            let answer = outgoing.body(body).send().await.unwrap();
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            let mut bytes = answer.bytes().await.unwrap().to_vec();
            if up.swap_keys && parts.uri.path() == "/jwks" {
                bytes = wrong_keys(&bytes);
            }
            response.body(Body::from(bytes)).unwrap()
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let upstream = Upstream {
            base: provider.issuer.clone(),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            swap_keys,
        };
        let app = axum::Router::new().fallback(forward).with_state(upstream);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        KeySwapProxy { issuer, task }
    }
}

/// The same key set with one byte of every RSA modulus changed (the key ids stay, so the
/// verifier picks the altered key).
fn wrong_keys(jwks: &[u8]) -> Vec<u8> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut set: serde_json::Value = serde_json::from_slice(jwks).expect("provider's JWKS is JSON");
    let keys = set["keys"].as_array_mut().expect("JWKS has keys");
    assert!(!keys.is_empty(), "the provider publishes a key");
    for key in keys {
        let mut n = URL_SAFE_NO_PAD.decode(key["n"].as_str().expect("RSA key")).unwrap();
        let middle = n.len() / 2;
        n[middle] ^= 0x5a;
        key["n"] = URL_SAFE_NO_PAD.encode(n).into();
    }
    serde_json::to_vec(&set).unwrap()
}

impl Drop for KeySwapProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
