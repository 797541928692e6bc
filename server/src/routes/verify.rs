//! `GET /auth/verify`: Traefik's forwardAuth. Called on every request to every workspace app,
//! so it answers from memory (the session cache) and never trusts what the client says about
//! where the request is going beyond what Traefik rebuilt.
//!
//! App hosts never see the portal's session cookie. Each app host gets its own cookie
//! (`berth_app`), issued through a hop via the portal, like an OAuth redirect: the app host's
//! first page load is sent to `/auth/app` on the portal, which (for the owner, logged in there)
//! sends the browser back to `https://<app host>/.berth/auth?code=…` with a one-time code
//! sealed with Berth's key; forwardAuth redeems it for a host-only cookie bound to that host,
//! its owner and the portal session. What reaches the workspace carries no Berth cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use url::Url;

use crate::hosts::HostTemplates;
use crate::cookies;
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::sessions::SessionCache;

/// Traefik's forwardAuth address.
pub const VERIFY_PATH: &str = "/auth/verify";

/// The path on every app host where forwardAuth redeems a one-time code. Traefik sends it to
/// forwardAuth like any other path; the workspace never sees it.
pub const APP_AUTH_PATH: &str = "/.berth/auth";
/// How long a one-time code from the portal may take to come back.
const CODE_SECONDS: i64 = 60;

pub struct Gateway {
    pub db: Db,
    pub cache: Arc<SessionCache>,
    pub hosts: HostTemplates,
    pub domain: String,
    pub public_url: Url,
    pub absolute_seconds: i64,
    /// Seals codes and app cookies: nobody without Berth's key can make or read one.
    pub sealer: SecretBox,
    /// `__Host-berth_app` on https (no sibling host can plant or shadow it), else `berth_app`.
    pub app_cookie: &'static str,
    pub secure_cookies: bool,
    /// Told of every request let through: app traffic keeps a workspace from counting as idle.
    pub activity: Arc<crate::activity::Activity>,
    /// Codes already redeemed (until they expire): each works once.
    redeemed: Mutex<HashMap<String, i64>>,
    /// App cookies already opened: AES-GCM and JSON once per cookie, not once per request (a
    /// sealed token always opens to the same grant, so this cannot be wrong, only bounded).
    opened: std::sync::RwLock<HashMap<String, Arc<AppGrant>>>,
}

const OPENED_MAX: usize = 100_000;

/// What a one-time code and an app cookie say, sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct AppGrant {
    /// The portal session the grant lives and dies with.
    s: String,
    /// Owner and host it is good for.
    o: String,
    h: String,
    /// Expiry (codes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<i64>,
}

#[derive(serde::Deserialize)]
pub struct VerifyQuery {
    owner: Option<String>,
}

fn status(code: StatusCode) -> Response {
    (code, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        cache: Arc<SessionCache>,
        hosts: HostTemplates,
        domain: String,
        public_url: Url,
        absolute_seconds: i64,
        key: &[u8; 32],
    ) -> Gateway {
        let secure_cookies = public_url.scheme() == "https";
        Gateway {
            db,
            cache,
            hosts,
            domain,
            app_cookie: if secure_cookies { "__Host-berth_app" } else { "berth_app" },
            public_url,
            absolute_seconds,
            sealer: SecretBox::new(key),
            secure_cookies,
            activity: Arc::default(),
            redeemed: Mutex::new(HashMap::new()),
            opened: std::sync::RwLock::new(HashMap::new()),
        }
    }

    /// The grant sealed in an app cookie, opened at most once.
    fn open_app_cookie(&self, token: &str) -> Option<Arc<AppGrant>> {
        if let Some(grant) = self.opened.read().expect("opened cookies").get(token) {
            return Some(grant.clone());
        }
        let grant: Arc<AppGrant> = Arc::new(serde_json::from_str(&self.sealer.open_token(token).ok()?).ok()?);
        let mut opened = self.opened.write().expect("opened cookies");
        if opened.len() >= OPENED_MAX {
            opened.clear();
        }
        opened.insert(token.to_string(), grant.clone());
        Some(grant)
    }

    /// Whether `url` may be a post-login return address: only hosts Berth generated.
    pub fn is_safe_return(&self, url: &str) -> bool {
        self.return_target(url).is_some()
    }

    /// `url` parsed, when it is an app host Berth generated (no user info, http or https).
    fn return_target(&self, url: &str) -> Option<(Url, String)> {
        let url = Url::parse(url).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.username() != "" || url.password().is_some() {
            return None;
        }
        let (owner, _) = self.hosts.owner_of(url.host_str()?, &self.domain)?;
        Some((url, owner))
    }

    /// `url` as the URL parser writes it back, when it is an app host Berth generated.
    pub fn normalized_return(&self, url: &str) -> Option<String> {
        Some(self.return_target(url)?.0.to_string())
    }

    /// The portal path that takes a browser back to `url` through the app hop, when `url` is an
    /// app host Berth generated. The address is encoded, so no byte of it reaches a header raw.
    pub fn return_path(&self, url: &str) -> Option<String> {
        Some(format!("/auth/app?rd={}", urlencoding::encode(&self.normalized_return(url)?)))
    }

    /// The redirect that hands `username` a one-time code for the app host of `rd`, or why not.
    pub fn hop(&self, rd: &str, username: &str, session_id: &str) -> Result<String, HopError> {
        let (url, owner) = self.return_target(rd).ok_or(HopError::NotAnAppHost)?;
        if owner != username {
            return Err(HopError::NotTheOwner);
        }
        let host = url.host_str().ok_or(HopError::NotAnAppHost)?.to_string();
        let grant = AppGrant { s: session_id.to_string(), o: owner, h: host.clone(), e: Some(crate::db::now() + CODE_SECONDS) };
        let code = self.sealer.seal_token(&serde_json::to_string(&grant).expect("grant serializes"));
        let back = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(format!(
            "{}://{host}{port}{APP_AUTH_PATH}?code={code}&rd={}",
            url.scheme(),
            urlencoding::encode(&back)
        ))
    }

    /// Redeems a code at `APP_AUTH_PATH` on `host` (addressed as `authority`): a redirect to
    /// where the user was going, with this host's cookie.
    fn redeem(&self, owner: &str, host: &str, authority: &str, proto: &str, query: &str) -> Response {
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let now = crate::db::now();
        let grant = params
            .get("code")
            .and_then(|code| self.sealer.open_token(code).ok())
            .and_then(|text| serde_json::from_str::<AppGrant>(&text).ok())
            .filter(|g| g.o == owner && g.h == host && g.e.is_some_and(|e| e >= now));
        let Some(grant) = grant else { return status(StatusCode::FORBIDDEN) };
        {
            let mut redeemed = self.redeemed.lock().expect("redeemed codes");
            redeemed.retain(|_, expires| *expires >= now);
            let code = params.get("code").expect("checked above").clone();
            if redeemed.insert(code, grant.e.unwrap_or(now)).is_some() {
                return status(StatusCode::FORBIDDEN);
            }
        }
        // Only a path on this same host: never a way to another site.
        let back = params.get("rd").filter(|rd| rd.starts_with('/') && !rd.starts_with("//") && !rd.starts_with("/\\")).map(String::as_str).unwrap_or("/");
        let cookie = AppGrant { e: None, ..grant };
        let value = self.sealer.seal_token(&serde_json::to_string(&cookie).expect("grant serializes"));
        let set_cookie = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax{}",
            self.app_cookie,
            if self.secure_cookies { "; Secure" } else { "" }
        );
        let location = format!("{proto}://{authority}{back}");
        match (HeaderValue::from_str(&location), HeaderValue::from_str(&set_cookie)) {
            (Ok(location), Ok(set_cookie)) => {
                let mut response = status(StatusCode::FOUND);
                response.headers_mut().insert(header::LOCATION, location);
                response.headers_mut().insert(header::SET_COOKIE, set_cookie);
                response
            }
            _ => status(StatusCode::BAD_REQUEST),
        }
    }

    /// The session behind this host's app cookie, when it is one Berth sealed for this owner and
    /// host and its portal session is still alive.
    async fn app_session(&self, headers: &HeaderMap, owner: &str, host: &str) -> Option<crate::sessions::GatewaySession> {
        let token = cookies::single(headers, self.app_cookie).value()?;
        if token.len() > 4096 {
            return None;
        }
        let grant = self.open_app_cookie(token)?;
        if grant.o != owner || grant.h != host {
            return None;
        }
        let id = grant.s.clone();
        if let Some(hit) = self.cache.get(&id) {
            return hit;
        }
        match self.cache.load(&self.db, &id, self.absolute_seconds).await {
            Ok(found) => {
                self.cache.put(&id, found.clone());
                found
            }
            Err(e) => {
                tracing::error!(error = %e, "forwardAuth: session lookup failed");
                None
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HopError {
    #[error("that address is not a workspace app of this Berth")]
    NotAnAppHost,
    #[error("that app belongs to another user's workspace")]
    NotTheOwner,
}

/// One request for an app host, as forwardAuth (from Traefik's headers) or the embedded app
/// gateway (from the request itself) sees it.
pub struct AppRequest<'a> {
    /// The owner the route belongs to (Traefik's middleware names it; the gateway reads it from the host).
    pub owner: &'a str,
    /// The app host, lower-case, without a port.
    pub host: &'a str,
    /// The host as the browser addressed it, with its port if any: redirects go back there.
    pub authority: &'a str,
    pub proto: &'a str,
    /// Path and query.
    pub uri: &'a str,
    pub method: &'a str,
    pub headers: &'a HeaderMap,
}

/// What to do with a request for an app host.
pub enum Decision {
    /// The owner, logged in: pass the request on with this `Cookie` header (Berth's removed),
    /// or none at all.
    Allow { cookie: Option<HeaderValue> },
    /// Answer the browser with this (a redirect through the portal, the app cookie, 401, 403).
    Answer(Response),
}

impl Gateway {
    /// The owner-only check every request to an app host passes, whichever proxy asks.
    pub async fn authorize(&self, req: &AppRequest<'_>) -> Decision {
        let deny = |code| Decision::Answer(status(code));
        // 1. The host must be one of the owner's hosts.
        match self.hosts.owner_of(req.host, &self.domain) {
            Some((host_owner, _)) if host_owner == req.owner => {}
            _ => return deny(StatusCode::FORBIDDEN),
        }
        // 2. Cross-site websockets and fetches: the Origin must be the app's own host.
        if let Some(origin) = header_str(req.headers, "origin") {
            let same = Url::parse(origin).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)).as_deref() == Some(req.host);
            if !same {
                return deny(StatusCode::FORBIDDEN);
            }
        }
        // 3. Coming back from the portal with a code.
        if let Some(rest) = req.uri.strip_prefix(APP_AUTH_PATH) {
            if rest.is_empty() || rest.starts_with('?') {
                return Decision::Answer(self.redeem(req.owner, req.host, req.authority, req.proto, rest.trim_start_matches('?')));
            }
        }
        // 4. Who is asking: this host's cookie, for this owner, while the portal session lives.
        let Some(session) = self.app_session(req.headers, req.owner, req.host).await else {
            let accept = header_str(req.headers, "accept").unwrap_or_default();
            if accept.contains("text/html") && req.method.eq_ignore_ascii_case("GET") {
                let back = format!("{}://{}{}", req.proto, req.authority, req.uri);
                let mut hop = self.public_url.join("/auth/app").expect("static path");
                hop.query_pairs_mut().append_pair("rd", &back);
                return Decision::Answer(
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, hop.to_string()), (header::CACHE_CONTROL, "no-store".to_string())],
                    )
                        .into_response(),
                );
            }
            return deny(StatusCode::UNAUTHORIZED);
        };
        // 5. Only the owner, admins included: their browser would run the user's code on a same-site origin.
        if session.username != req.owner {
            return deny(StatusCode::FORBIDDEN);
        }
        self.activity.touch_app(req.owner);
        Decision::Allow { cookie: cookies::without_berth(req.headers) }
    }
}

pub async fn verify(State(gw): State<Arc<Gateway>>, Query(query): Query<VerifyQuery>, headers: HeaderMap) -> Response {
    // The middleware names the owner; the forwarded host must be one of that owner's hosts.
    let Some(owner) = query.owner.filter(|o| crate::username::Username::parse(o).is_ok()) else {
        return status(StatusCode::FORBIDDEN);
    };
    let Some(host) = header_str(&headers, "x-forwarded-host") else { return status(StatusCode::FORBIDDEN) };
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let proto = match header_str(&headers, "x-forwarded-proto") {
        Some("http") => "http",
        _ => "https",
    };
    let uri = header_str(&headers, "x-forwarded-uri").filter(|u| u.starts_with('/')).unwrap_or("/");
    let method = header_str(&headers, "x-forwarded-method").unwrap_or("GET");
    let request = AppRequest { owner: &owner, host: &host, authority: &host, proto, uri, method, headers: &headers };
    match gw.authorize(&request).await {
        Decision::Answer(response) => response,
        Decision::Allow { cookie } => {
            let mut response = status(StatusCode::OK);
            if let Ok(value) = HeaderValue::from_str(&owner) {
                response.headers_mut().insert("x-berth-user", value);
            }
            // Traefik replaces the request's Cookie header with this one (authResponseHeaders), or
            // removes it when this has none: the workspace never holds a Berth cookie.
            if let Some(kept) = cookie {
                response.headers_mut().insert(header::COOKIE, kept);
            }
            response
        }
    }
}
