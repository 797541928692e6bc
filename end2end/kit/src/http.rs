//! An HTTP client that behaves like the hydrated page: keeps cookies, sends the portal's
//! Origin, calls server functions.

use crate::server::TestServer;

/// A cookie-keeping client that sends the portal's Origin, like the hydrated page does.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn new(server: &TestServer) -> Browser {
        Self::at(&server.base)
    }

    /// A new approved account `name` (password `<name>-password-long`), logged in.
    pub async fn new_user(server: &TestServer, name: &str) -> Browser {
        let out = server.cli(&["user", "add", name, "--password-stdin"], &format!("{name}-password-long\n"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let browser = Browser::new(server);
        assert_eq!(browser.log_in(name, &format!("{name}-password-long")).await.status(), 200, "login {name}");
        browser
    }

    pub fn at(base: &str) -> Browser {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser { http, base: base.to_string(), jar }
    }

    /// Calls a server function the way the wasm client does.
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/api/{endpoint}", self.base))
            .header("Origin", &self.base)
            .header("Accept", "application/json")
            .form(form)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).header("Accept", "text/html").send().await.expect("request")
    }

    pub fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("berth_session=").map(str::to_string))
    }

    pub async fn log_in(&self, username: &str, password: &str) -> reqwest::Response {
        self.call("login", &[("username", username), ("password", password)]).await
    }

    pub async fn viewer(&self) -> serde_json::Value {
        let r = self.call("viewer", &[]).await;
        assert!(r.status().is_success(), "viewer: {}", r.status());
        r.json().await.unwrap()
    }
}

/// Goes through the app hop as a browser does: the portal (with the portal cookie `portal`,
/// `name=value`) hands out a one-time code for `host`, forwardAuth redeems it. Returns the app
/// host's cookie as `name=value`.
pub async fn app_cookie(base: &str, portal: &str, owner: &str, host: &str, proto: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .get(format!("{base}/auth/app"))
        .query(&[("rd", format!("{proto}://{host}/lab?x=1"))])
        .header("Cookie", portal)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "hop: {}", r.status());
    let to = url::Url::parse(&location(&r).unwrap()).unwrap();
    assert_eq!((to.scheme(), to.host_str(), to.path()), (proto, Some(host), "/.berth/auth"), "{to}");
    let r = http
        .get(format!("{base}/auth/verify?owner={owner}"))
        .header("X-Forwarded-Host", host)
        .header("X-Forwarded-Proto", proto)
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Uri", format!("{}?{}", to.path(), to.query().unwrap()))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "redeem");
    assert_eq!(location(&r).unwrap(), format!("{proto}://{host}/lab?x=1"), "back where the user was going");
    let set_cookie = r.headers().get("set-cookie").expect("the app host's cookie").to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_string()
}

pub fn location(response: &reqwest::Response) -> Option<String> {
    response.headers().get("location").map(|v| v.to_str().unwrap().to_string())
}
