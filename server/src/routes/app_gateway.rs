//! The embedded app gateway: Berth proxies the app hosts (`jupyter-<user>.<domain>` and the
//! others) itself, so a first run shows VS Code, Jupyter, TensorBoard and the desktop without
//! Traefik or DNS (`*.localhost` is loopback in browsers). Every request passes the same
//! owner-only check as Traefik's forwardAuth (`verify::Gateway::authorize`), then goes to the
//! workspace with what Traefik's middlewares would add (the Jupyter token, the app gate's
//! secret) and without Berth's cookies. Websockets are upgraded end to end.
//!
//! The HTTP work is hyper's (its client, its upgrades); this module only decides.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::traefik::APP_SECRET_HEADER;
use super::verify::{AppRequest, Decision, Gateway};
use crate::hosts::App;
use crate::workspace::service::AppUpstream;
use crate::workspace::Workspaces;

/// How long an upstream address is trusted before the runtime is asked again. A failed
/// connection forgets it at once, so a restarted workspace (new address) costs one error at most.
const UPSTREAM_TTL: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct AppGateway {
    auth: Arc<Gateway>,
    workspaces: Arc<Workspaces>,
    /// `http` or `https`: how browsers reach the app hosts, as they reach the portal.
    scheme: String,
    client: Client<HttpConnector, Body>,
    upstreams: RwLock<HashMap<(String, App), (Instant, AppUpstream)>>,
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] =
    ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

impl AppGateway {
    pub fn new(auth: Arc<Gateway>, workspaces: Arc<Workspaces>, scheme: &str) -> AppGateway {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        AppGateway {
            auth,
            workspaces,
            scheme: if scheme == "https" { "https".into() } else { "http".into() },
            client,
            upstreams: RwLock::new(HashMap::new()),
        }
    }

    /// The (owner, app) a request's host belongs to, if it is an app host.
    fn app_of(&self, request: &Request) -> Option<(String, App, String, String)> {
        let authority = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))?
            .to_ascii_lowercase();
        let host = authority.split(':').next().unwrap_or(&authority).to_string();
        let (owner, app) = self.auth.hosts.owner_of(&host, &self.auth.domain)?;
        Some((owner, app, host, authority))
    }

    async fn upstream(&self, owner: &str, app: App) -> Result<Option<AppUpstream>, crate::workspace::WorkspaceError> {
        let key = (owner.to_string(), app);
        if let Some((at, upstream)) = self.upstreams.read().expect("upstreams").get(&key) {
            if at.elapsed() < UPSTREAM_TTL {
                return Ok(Some(upstream.clone()));
            }
        }
        let found = self.workspaces.app_upstream(owner, app).await?;
        let mut upstreams = self.upstreams.write().expect("upstreams");
        match &found {
            Some(upstream) => upstreams.insert(key, (Instant::now(), upstream.clone())),
            None => upstreams.remove(&key),
        };
        Ok(found)
    }

    fn forget(&self, owner: &str, app: App) {
        self.upstreams.write().expect("upstreams").remove(&(owner.to_string(), app));
    }

    async fn serve(&self, owner: String, app: App, host: String, authority: String, mut request: Request) -> Response {
        let path_and_query = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        let method = request.method().as_str().to_string();
        let decision = self
            .auth
            .authorize(&AppRequest {
                owner: &owner,
                host: &host,
                authority: &authority,
                proto: &self.scheme,
                uri: &path_and_query,
                method: &method,
                headers: request.headers(),
            })
            .await;
        let cookie = match decision {
            Decision::Answer(response) => return response,
            Decision::Allow { cookie } => cookie,
        };
        let upstream = match self.upstream(&owner, app).await {
            Ok(Some(upstream)) => upstream,
            Ok(None) => return not_running(),
            Err(e) => {
                tracing::warn!(owner = %owner, error = %e, "app gateway: cannot find the workspace");
                return unavailable("Berth cannot reach the workspace engine right now; try again shortly.");
            }
        };

        let upgrade = is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        // The workspace's services speak HTTP/1.1, whatever the browser spoke to Berth.
        parts.version = axum::http::Version::HTTP_11;
        let uri = format!("http://{}{}", upstream.address, path_and_query);
        parts.uri = match uri.parse::<Uri>() {
            Ok(uri) => uri,
            Err(_) => return (StatusCode::BAD_REQUEST, "bad request path\n").into_response(),
        };
        prepare_request_headers(&mut parts.headers, upgrade, cookie, &owner, &self.scheme, &authority);
        if app == App::Jupyter {
            if let Ok(value) = HeaderValue::from_str(&format!("token {}", upstream.jupyter_token)) {
                parts.headers.insert(header::AUTHORIZATION, value);
            }
        }
        if app.gated() {
            if let Ok(value) = HeaderValue::from_str(&upstream.app_secret) {
                parts.headers.insert(HeaderName::from_static("x-berth-app-secret"), value);
            }
        }

        let mut response = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(e) => {
                // The container may have a new address (restarted) or the service may be down.
                self.forget(&owner, app);
                tracing::debug!(owner = %owner, app = app.key(), error = %e, "app gateway: upstream failed");
                return unavailable("This app of your workspace is not answering (yet). If the workspace just started, wait a few seconds and reload.");
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    match (client_upgrade.await, upstream_upgrade.await) {
                        (Ok(client), Ok(upstream)) => {
                            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
                        }
                        (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "app gateway: upgrade failed"),
                    }
                });
            }
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, Body::new(body))
    }
}

/// The outermost layer of Berth's router: requests for an app host go to the workspace (when
/// the gateway serves), everything else to the portal.
pub async fn route(State(gateway): State<Option<Arc<AppGateway>>>, request: Request, next: Next) -> Response {
    let Some(gateway) = gateway else { return next.run(request).await };
    match gateway.app_of(&request) {
        Some((owner, app, host, authority)) => gateway.serve(owner, app, host, authority, request).await,
        None => next.run(request).await,
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the workspace receives: no hop-by-hop headers (but the upgrade's own), no Berth cookie,
/// no secret a browser tried to send, and who the request is for.
fn prepare_request_headers(
    headers: &mut HeaderMap,
    upgrade: bool,
    cookie: Option<HeaderValue>,
    owner: &str,
    scheme: &str,
    authority: &str,
) {
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if upgrade {
        if let Some(protocol) = upgrade_to {
            headers.insert(header::UPGRADE, protocol);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    headers.remove(header::COOKIE);
    if let Some(cookie) = cookie {
        headers.insert(header::COOKIE, cookie);
    }
    headers.remove(APP_SECRET_HEADER);
    // Only the gateway says who the user is, and where the browser was.
    for name in ["x-berth-user", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-real-ip"] {
        headers.remove(name);
    }
    if let Ok(value) = HeaderValue::from_str(owner) {
        headers.insert("x-berth-user", value);
    }
    if let Ok(value) = HeaderValue::from_str(authority) {
        headers.insert("x-forwarded-host", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }));
}

fn not_running() -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        "Your workspace is not running. Start it on the dashboard, then reload this page.",
    )
}

fn unavailable(message: &str) -> Response {
    page(StatusCode::BAD_GATEWAY, message)
}

fn page(code: StatusCode, message: &str) -> Response {
    (
        code,
        [(header::CACHE_CONTROL, "no-store"), (header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn upgrades_are_recognised_only_with_both_headers() {
        assert!(is_upgrade(&headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade")])));
    }

    #[test]
    fn the_workspace_gets_no_berth_cookie_no_forged_identity_and_no_hop_headers() {
        let mut h = headers(&[
            ("cookie", "berth_app=sealed; _xsrf=abc"),
            ("x-berth-app-secret", "guessed"),
            ("x-berth-user", "admin"),
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("accept", "text/html"),
        ]);
        prepare_request_headers(&mut h, false, Some(HeaderValue::from_static("_xsrf=abc")), "walker", "http", "jupyter-walker.localhost:3000");
        assert_eq!(h.get("cookie").unwrap(), "_xsrf=abc");
        assert!(h.get("x-berth-app-secret").is_none());
        assert_eq!(h.get("x-berth-user").unwrap(), "walker");
        assert!(h.get("x-forwarded-for").is_none());
        assert_eq!(h.get("x-forwarded-host").unwrap(), "jupyter-walker.localhost:3000");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        for gone in ["connection", "x-private", "te"] {
            assert!(h.get(gone).is_none(), "{gone} is hop-by-hop");
        }
        assert_eq!(h.get("accept").unwrap(), "text/html");

        let mut h = headers(&[("cookie", "berth_app=sealed"), ("connection", "Upgrade"), ("upgrade", "websocket")]);
        prepare_request_headers(&mut h, true, None, "walker", "https", "desktop-walker.lab.org");
        assert!(h.get("cookie").is_none(), "only Berth's cookie: none is left");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    }
}
