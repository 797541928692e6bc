//! The portal's request layers: cross-site refusal and security headers, one session cookie,
//! and identity (who is asking, from where, and which pages fit them).

use std::net::{IpAddr, SocketAddr};

use app::services::{RequestIdentity, SESSION_LOGIN_AT, SESSION_USER_ID};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::{session_cookie_name, AppState, SESSION_COOKIE};

/// Two session cookies in one request (one planted from a sibling host, or left from an older
/// Berth that scoped it to the domain) mean no session, for every layer alike, and the browser
/// is told to forget them so the next login works.
pub(super) async fn one_session_cookie(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let name = session_cookie_name(&state.config);
    if !crate::cookies::drop_if_ambiguous(request.headers_mut(), name) {
        return next.run(request).await;
    }
    tracing::warn!(path = request.uri().path(), "two session cookies in one request: treated as none");
    let mut response = next.run(request).await;
    let mut forget = vec![format!("{name}=; Max-Age=0; Path=/")];
    if let Some(domain) = state.config.cookie_domain.as_deref().filter(|_| name == SESSION_COOKIE) {
        forget.push(format!("{name}=; Max-Age=0; Path=/; Domain={}", domain.trim_start_matches('.')));
    }
    for cookie in forget {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// the headers every response should carry.
pub(super) async fn refuse_cross_site(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !is_same_origin(&request, &state.config.public_origin())
    {
        tracing::warn!(method = %request.method(), path = request.uri().path(), "cross-site request refused");
        return (StatusCode::FORBIDDEN, "Cross-site request refused.\n").into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// Origin must be the portal's; without Origin, the Referer's origin must be.
fn is_same_origin(request: &Request, expected: &str) -> bool {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(|o| o == expected);
    }
    headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .is_some_and(|u| u.origin().ascii_serialization() == expected)
}

/// Resolves who is asking (a still-approved user, within the absolute session lifetime)
/// and keeps people on pages that fit their state.
pub(super) async fn identify(State(state): State<AppState>, session: Session, mut request: Request, next: Next) -> Response {
    let client = client_address(&request, state.config.trust_proxy_headers);
    let user = if request.uri().path().starts_with("/pkg/") {
        None
    } else {
        match current_user(&state, &session).await {
            Ok(user) => user,
            Err(response) => return response,
        }
    };
    if request.method() == Method::GET {
        let path = request.uri().path();
        if path == "/login" && user.is_some() {
            let rd = request.uri().query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "rd").map(|(_, v)| v.to_string())
            });
            if let Some(back) = rd.and_then(|rd| state.gateway.return_path(&rd)) {
                return Redirect::to(&back).into_response();
            }
        }
        let admin_page = path == "/admin" || path.starts_with("/admin/");
        let target = match (path, &user) {
            ("/" | "/login" | "/signup", Some(_)) => Some("/dashboard"),
            ("/" | "/dashboard" | "/logs", None) => Some("/login"),
            (_, None) if admin_page => Some("/login"),
            (_, Some(u)) if admin_page && !u.is_admin => Some("/dashboard"),
            _ => None,
        };
        if let Some(target) = target {
            return Redirect::to(target).into_response();
        }
        // Opening a page counts as using the workspace (the dashboards' polls do not).
        if let (Some(u), "/dashboard" | "/logs") = (&user, path) {
            state.gateway.activity.touch_portal(&u.username);
        }
    }
    request.extensions_mut().insert(RequestIdentity { user, client });
    next.run(request).await
}

async fn current_user(state: &AppState, session: &Session) -> Result<Option<app::model::CurrentUser>, Response> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "session lookup failed");
        (StatusCode::SERVICE_UNAVAILABLE, "Berth cannot reach its database; try again shortly.\n").into_response()
    };
    let user_id = match session.get::<i64>(SESSION_USER_ID).await {
        Ok(Some(id)) => id,
        Ok(None) => return Ok(None),
        Err(e) => return Err(unavailable(&e)),
    };
    let login_at = session.get::<i64>(SESSION_LOGIN_AT).await.ok().flatten().unwrap_or_default();
    let absolute = state.config.session_absolute_hours as i64 * 3600;
    if crate::db::now() - login_at > absolute {
        let _ = session.flush().await;
        return Ok(None);
    }
    match state.accounts.find_by_id(user_id).await {
        Ok(Some(user)) if user.status == app::model::AccountStatus::Approved => Ok(Some(user.current())),
        Ok(_) => {
            // Disabled, rejected or deleted since login: this session is over.
            let _ = session.flush().await;
            Ok(None)
        }
        Err(e) => Err(unavailable(&e)),
    }
}

/// The client's address: the socket peer, or behind a trusted proxy the last `X-Forwarded-For`
/// entry, the one that proxy appended itself (entries before it are whatever the client sent).
pub(super) fn client_address(request: &Request, trust_proxy_headers: bool) -> IpAddr {
    if trust_proxy_headers {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .last()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| forwarded_address(v.trim()));
        if let Some(address) = forwarded {
            return address;
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// An `X-Forwarded-For` entry: a bare address, or one with a port (`1.2.3.4:5678`, `[::1]:443`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry.parse().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::forwarded_address;

    #[test]
    fn forwarded_entries_with_and_without_ports() {
        assert_eq!(forwarded_address("198.51.100.7"), Some([198, 51, 100, 7].into()));
        assert_eq!(forwarded_address("198.51.100.7:5678"), Some([198, 51, 100, 7].into()));
        assert_eq!(forwarded_address("2001:db8::1"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(forwarded_address("[2001:db8::1]:443"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(forwarded_address("unknown"), None);
        assert_eq!(forwarded_address(""), None);
    }
}

/// For `/api/v1`, which has no session: who is asking is the token's business; from where is
/// this layer's (the same rule as the portal's).
pub(super) async fn stamp_client(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let client = client_address(&request, state.config.trust_proxy_headers);
    request.extensions_mut().insert(RequestIdentity { user: None, client });
    next.run(request).await
}
