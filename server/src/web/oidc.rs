//! Single sign-on over HTTP: the redirect to the provider, its callback, a new user's chosen
//! username, and what each outcome does to the session.

use app::services::{SESSION_LOGIN_AT, SESSION_USER_ID};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::cookie::SameSite;
use tower_sessions::Session;

use super::{AppState, ReturnQuery};
use crate::sso::{Outcome, PendingSignup, SsoError};

const SESSION_SSO_SIGNUP: &str = "oidc_signup";
/// Holds the sealed pending login between the redirect to the provider and the callback.
const PENDING_COOKIE: &str = "berth_oidc";

fn sso_failed(error: SsoError) -> Response {
    tracing::warn!(error = %error, "single sign-on failed");
    Redirect::to(&format!("/auth/error?reason={}", error.code())).into_response()
}

/// The `Set-Cookie` for the pending-login cookie; an empty value with no lifetime removes it.
fn pending_cookie(value: String, lifetime: time::Duration, secure: bool) -> HeaderValue {
    let cookie = tower_sessions::cookie::Cookie::build((PENDING_COOKIE, value))
        .path("/auth/oidc")
        .http_only(true)
        // Lax: the provider sends the browser back with a top-level GET, which carries it.
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(lifetime)
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("base64 and fixed attributes make a valid header")
}

/// Sends the browser to the provider, remembering state, nonce and PKCE verifier in a sealed
/// cookie: nothing is stored server-side for a sign-in that may never come back.
pub(super) async fn oidc_login(
    State(state): State<AppState>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<ReturnQuery>,
) -> Response {
    let rd = query.rd.and_then(|rd| state.gateway.normalized_return(&rd));
    match state.sso.start(&provider, rd).await {
        Ok((url, pending)) => {
            let cookie = pending_cookie(
                state.sso.seal_pending(&pending),
                time::Duration::seconds(crate::sso::PENDING_LOGIN_SECONDS),
                state.config.secure_cookies(),
            );
            let mut response = Redirect::to(url.as_str()).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => sso_failed(e),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub(super) async fn oidc_callback(
    State(state): State<AppState>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<CallbackQuery>,
    headers: axum::http::HeaderMap,
    axum::Extension(identity): axum::Extension<app::services::RequestIdentity>,
    session: Session,
) -> Response {
    let from = LoginFrom::of(&identity, &headers);
    let sealed = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(PENDING_COOKIE).and_then(|rest| rest.strip_prefix('=')))
        .map(str::to_string);
    let mut response = oidc_finish(&state, &provider, query, sealed, &session, &from).await;
    // Whatever happened, the browser drops the pending login. A copy kept elsewhere is no use: the
    // provider's code for it is single-use and bound to the PKCE verifier sealed inside.
    let gone = pending_cookie(String::new(), time::Duration::ZERO, state.config.secure_cookies());
    response.headers_mut().append(header::SET_COOKIE, gone);
    response
}

/// Where a login comes from, for the session list and the audit log.
pub(super) struct LoginFrom {
    client: std::net::IpAddr,
    agent: String,
}

impl LoginFrom {
    fn of(identity: &app::services::RequestIdentity, headers: &axum::http::HeaderMap) -> LoginFrom {
        let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().chars().take(200).collect();
        LoginFrom { client: identity.client, agent }
    }
}

async fn oidc_finish(state: &AppState, provider: &str, query: CallbackQuery, sealed: Option<String>, session: &Session, from: &LoginFrom) -> Response {
    if let Some(error) = query.error {
        // Provider-chosen text: keep only an error-code shape out of the log.
        let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return sso_failed(SsoError::Denied(code));
    }
    let (Some(sealed), Some(code), Some(returned_state)) = (sealed, query.code, query.state) else {
        return sso_failed(SsoError::State);
    };
    let pending = match state.sso.open_pending(&sealed) {
        Ok(pending) if pending.provider == provider => pending,
        Ok(_) => return sso_failed(SsoError::State),
        Err(e) => return sso_failed(e),
    };
    match state.sso.finish(pending, &returned_state, &code).await {
        Ok(outcome) => {
            state.metrics.login(true, "sso");
            sso_outcome(state, session, outcome, from).await
        }
        Err(e) => {
            state.metrics.login(false, "sso");
            sso_failed(e)
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct UsernameForm {
    username: String,
}

/// A new SSO user's chosen username (the provider's was taken or invalid).
pub(super) async fn oidc_username(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    axum::Extension(identity): axum::Extension<app::services::RequestIdentity>,
    session: Session,
    axum::Form(form): axum::Form<UsernameForm>,
) -> Response {
    let from = LoginFrom::of(&identity, &headers);
    let Some(signup) = session.get::<PendingSignup>(SESSION_SSO_SIGNUP).await.ok().flatten() else {
        return sso_failed(SsoError::State);
    };
    let name = form.username.trim().to_string();
    if crate::username::Username::parse(&name).is_err() {
        return Redirect::to("/sso/username?error=invalid").into_response();
    }
    if state.accounts.find_by_name(&name).await.is_ok() {
        return Redirect::to("/sso/username?error=taken").into_response();
    }
    match state.sso.resolve(signup, Some(&name)).await {
        // Free as a name (checked above) yet refused: one of its hosts is someone else's.
        Ok(Outcome::ChooseUsername(_)) => Redirect::to("/sso/username?error=unavailable").into_response(),
        Ok(outcome) => {
            let _ = session.remove::<PendingSignup>(SESSION_SSO_SIGNUP).await;
            sso_outcome(&state, &session, outcome, &from).await
        }
        Err(e) => sso_failed(e),
    }
}

async fn sso_outcome(state: &AppState, session: &Session, outcome: Outcome, from: &LoginFrom) -> Response {
    match outcome {
        Outcome::LoggedIn { user, provider, id_token, rd } => {
            // New id at login, as with passwords.
            if session.cycle_id().await.is_err()
                || session.insert(SESSION_USER_ID, user.id).await.is_err()
                || session.insert(SESSION_LOGIN_AT, crate::db::now()).await.is_err()
                || session.insert(app::services::SESSION_CLIENT, from.client.to_string()).await.is_err()
                || session.insert(app::services::SESSION_AGENT, from.agent.clone()).await.is_err()
            {
                return sso_failed(SsoError::Internal("session store".into()));
            }
            let _ = session.insert(app::services::SESSION_SSO_LOGOUT, (provider.clone(), id_token)).await;
            // Saved now so a refused write (a full disk) gets the error page, not an empty 500.
            if session.save().await.is_err() {
                return sso_failed(SsoError::Internal("session store".into()));
            }
            tracing::info!(user_id = user.id, "login through single sign-on");
            let actor = crate::audit::AuditActor::of(&user.current());
            state.audit.record(crate::audit::Event::new(actor, "login", &user.username).client(from.client).detail(format!("single sign-on ({provider})"))).await;
            let target = rd
                .and_then(|rd| state.gateway.return_path(&rd))
                .unwrap_or_else(|| if user.is_admin { "/admin".into() } else { "/dashboard".into() });
            Redirect::to(&target).into_response()
        }
        Outcome::Pending => Redirect::to("/pending").into_response(),
        Outcome::ChooseUsername(signup) => {
            if session.insert(SESSION_SSO_SIGNUP, signup).await.is_err() {
                return sso_failed(SsoError::Internal("session store".into()));
            }
            Redirect::to("/sso/username").into_response()
        }
    }
}
