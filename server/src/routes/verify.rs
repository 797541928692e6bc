//! `GET /auth/verify`: Traefik's forwardAuth. Called on every request to every workspace app,
//! so it answers from memory (the session cache) and never trusts what the client says about
//! where the request is going beyond what Traefik rebuilt.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::hosts::HostTemplates;
use crate::db::Db;
use crate::sessions::SessionCache;

pub struct Gateway {
    pub db: Db,
    pub cache: Arc<SessionCache>,
    pub hosts: HostTemplates,
    pub domain: String,
    pub public_url: Url,
    pub cookie_name: &'static str,
    pub absolute_seconds: i64,
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
    /// `url` as a post-login return address, when it points at a host Berth generated. The
    /// answer is the parsed URL, never the text given: parsing drops tabs and newlines and
    /// percent-encodes other control characters, so it always makes a valid `Location` header.
    pub fn safe_return(&self, url: &str) -> Option<Url> {
        let url = Url::parse(url).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.username() != "" || url.password().is_some() {
            return None;
        }
        self.hosts.owner_of(url.host_str()?, &self.domain)?;
        Some(url)
    }

    async fn session_user(&self, headers: &HeaderMap) -> Option<crate::sessions::GatewaySession> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(self.cookie_name).and_then(|rest| rest.strip_prefix('=')))?
            .to_string();
        if id.is_empty() || id.len() > 64 {
            return None;
        }
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

pub async fn verify(State(gw): State<Arc<Gateway>>, Query(query): Query<VerifyQuery>, headers: HeaderMap) -> Response {
    // 1. The middleware names the owner; the forwarded host must be one of that owner's hosts.
    let Some(owner) = query.owner.filter(|o| crate::username::Username::parse(o).is_ok()) else {
        return status(StatusCode::FORBIDDEN);
    };
    let Some(host) = header_str(&headers, "x-forwarded-host") else { return status(StatusCode::FORBIDDEN) };
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    match gw.hosts.owner_of(&host, &gw.domain) {
        Some((host_owner, _)) if host_owner == owner => {}
        _ => return status(StatusCode::FORBIDDEN),
    }
    // 2. Cross-site websockets and fetches: the Origin must be the app's own host.
    if let Some(origin) = header_str(&headers, "origin") {
        let same = Url::parse(origin).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)) == Some(host.clone());
        if !same {
            return status(StatusCode::FORBIDDEN);
        }
    }
    // 3. Who is asking.
    let Some(session) = gw.session_user(&headers).await else {
        let accept = header_str(&headers, "accept").unwrap_or_default();
        let method = header_str(&headers, "x-forwarded-method").unwrap_or("GET");
        if accept.contains("text/html") && method.eq_ignore_ascii_case("GET") {
            let proto = match header_str(&headers, "x-forwarded-proto") {
                Some("http") => "http",
                _ => "https",
            };
            let uri = header_str(&headers, "x-forwarded-uri").filter(|u| u.starts_with('/')).unwrap_or("/");
            let back = format!("{proto}://{host}{uri}");
            let mut login = gw.public_url.join("/login").expect("static path");
            login.query_pairs_mut().append_pair("rd", &back);
            return (
                StatusCode::FOUND,
                [(header::LOCATION, login.to_string()), (header::CACHE_CONTROL, "no-store".to_string())],
            )
                .into_response();
        }
        return status(StatusCode::UNAUTHORIZED);
    };
    // 4. Only the owner, admins included: their browser would run the user's code on a same-site origin.
    if session.username != owner {
        return status(StatusCode::FORBIDDEN);
    }
    let mut response = status(StatusCode::OK);
    if let Ok(value) = HeaderValue::from_str(&owner) {
        response.headers_mut().insert("x-berth-user", value);
    }
    response
}
