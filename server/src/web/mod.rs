//! The HTTP surface: Leptos pages and server functions, health check, the app hop, Guacamole
//! launch and the dashboard's live-state stream, behind the request layers (cross-site refusal,
//! sessions, identity, page guards: `middleware`). Single sign-on's handlers are in `oidc`.

mod account;
mod events;
mod logs;
mod middleware;
mod oidc;

use std::sync::Arc;

use app::services::{RequestIdentity, Services};
use app::{shell, App};
use axum::extract::{FromRef, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::workspace::{Actor, Owner};
use crate::accounts::Accounts;
use crate::backend::Backend;
use crate::config::Config;
use crate::portal::Portal;
use crate::routes::guacamole::GuacamoleSettings;
use crate::routes::verify::Gateway;
use crate::sessions::SqlSessionStore;
use crate::sso::Sso;
use crate::workspace::Workspaces;
use middleware::{identify, one_session_cookie, refuse_cross_site};
use oidc::{oidc_callback, oidc_login, oidc_username};

pub use crate::metrics::METRICS_PATH;

/// The portal's session cookie on http; host-only.
pub const SESSION_COOKIE: &str = "berth_session";
/// On https: the `__Host-` prefix makes browsers refuse it from any other host, or with a Domain.
pub const SECURE_SESSION_COOKIE: &str = "__Host-berth_session";

pub fn session_cookie_name(config: &Config) -> &'static str {
    if config.secure_cookies() {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub accounts: Accounts,
    pub config: Arc<Config>,
    pub gateway: Arc<Gateway>,
    pub workspaces: Arc<Workspaces>,
    pub guacamole: Option<Arc<GuacamoleSettings>>,
    pub http: reqwest::Client,
    pub sso: Arc<Sso>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub audit: crate::audit::Audit,
    pub self_service: Arc<crate::self_service::SelfService>,
    /// The log streams each account holds open (`logs`).
    pub log_followers: Arc<logs::LogFollowers>,
    /// True once the server shuts down: long-lived responses (the live-state streams) end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

pub fn leptos_options(config: &Config) -> LeptosOptions {
    crate::web_static::with_hashed_names(
        LeptosOptions::builder()
            .output_name("berth")
            .site_root(config.site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(config.listen)
            .build(),
    )
}

/// `stopping` turns true when the server shuts down (see [`AppState::stopping`]).
pub fn router(config: Arc<Config>, backend: Backend, stopping: tokio::sync::watch::Receiver<bool>) -> Router {
    let api = crate::api::router(backend.clone());
    let self_service = Arc::new(crate::self_service::SelfService { backend: backend.clone(), password_login: config.password_login });
    let Backend { db, accounts, workspaces, sessions: session_cache, gateway, app_gateway, guacamole, sso, monitor, metrics, sharing, audit, .. } = backend;
    let state = AppState {
        leptos_options: leptos_options(&config),
        accounts: accounts.clone(),
        config: config.clone(),
        gateway: gateway.clone(),
        workspaces: workspaces.clone(),
        guacamole: guacamole.map(Arc::new),
        sso: sso.clone(),
        metrics: metrics.clone(),
        log_followers: Arc::default(),
        audit: audit.clone(),
        self_service: self_service.clone(),
        stopping,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("HTTP client"),
    };
    let services = Services(Arc::new(Portal {
        accounts,
        workspaces,
        gateway: gateway.clone(),
        sso,
        password_login: config.password_login,
        monitor: monitor.clone(),
        metrics: metrics.clone(),
        sharing,
        audit,
        self_service,
    }));
    let metrics_route = match &config.metrics_token {
        Some(token) => crate::metrics::route(crate::metrics::MetricsState {
            metrics: metrics.clone(),
            monitor,
            db: db.clone(),
            token: Some(token.0.clone()),
        }),
        None => Router::new().route(METRICS_PATH, get(crate::metrics::metrics_off)),
    };

    // Host-only: the portal's session never travels to an app host (they get their own cookie,
    // see routes/verify.rs).
    let sessions = SessionManagerLayer::new(SqlSessionStore::new(db, session_cache))
        .with_name(session_cookie_name(&config))
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.secure_cookies())
        .with_path("/")
        // The cookie lasts the absolute lifetime; idle expiry is the store's (see sessions.rs).
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(config.session_absolute_hours as i64)));

    let routes = generate_route_list(App);
    let state_for_api = state.clone();
    // forwardAuth sits outside the session layers: it must not touch the database per request.
    let verify = Router::new().route(crate::routes::verify::VERIFY_PATH, get(crate::routes::verify::verify)).with_state(gateway);
    let pkg = crate::web_static::pkg_routes(&state.leptos_options);
    let portal = Router::new()
        .route("/healthz", get(healthz))
        .route("/desktop/guacamole", get(guacamole_launch))
        .route(crate::workspace::NOVNC_LAUNCH, get(novnc_launch))
        .route("/auth/app", get(app_hop))
        .route(events::WORKSPACE_EVENTS, get(events::workspace_events))
        .route(logs::LOG_STREAM, get(logs::log_stream))
        .route(logs::LOG_DOWNLOAD, get(logs::log_download))
        .route("/auth/oidc/{provider}/login", get(oidc_login))
        .route("/auth/oidc/{provider}/callback", get(oidc_callback))
        .route("/auth/oidc/username", axum::routing::post(oidc_username))
        .route(crate::self_service::ACCOUNT_FORM, axum::routing::post(account::account_form))
        .route(crate::self_service::ADMIN_FORM, axum::routing::post(account::admin_form))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(services.clone()),
            {
                let options = state.leptos_options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), identify))
        .layer(sessions)
        .layer(axum::middleware::from_fn_with_state(state.clone(), one_session_cookie))
        .layer(axum::middleware::from_fn_with_state(state.clone(), refuse_cross_site))
        // Its default rules leave server-sent event streams alone.
        .layer(crate::web_static::compression())
        .with_state(state);
    // /auth/verify stays uncompressed (forwardAuth's hot path); /pkg is precompressed. App hosts
    // never reach any of it when Berth's gateway serves them: it is the outermost layer.
    // The API has no session layer at all: a browser's cookie cannot act there.
    let api = api.layer(axum::middleware::from_fn_with_state(state_for_api, middleware::stamp_client));
    verify
        .merge(metrics_route)
        .merge(api)
        .merge(pkg)
        .merge(portal)
        .layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::count_requests))
        .layer(axum::middleware::from_fn_with_state(app_gateway, crate::routes::app_gateway::route))
}

/// The portal's half of the app hop: the owner, logged in here, is sent back to the app host
/// with a one-time code that forwardAuth turns into that host's own cookie.
async fn app_hop(
    State(state): State<AppState>,
    session: Session,
    axum::extract::Query(query): axum::extract::Query<ReturnQuery>,
    request: Request,
) -> Response {
    let Some(rd) = query.rd.and_then(|rd| state.gateway.normalized_return(&rd)) else {
        return Redirect::to("/dashboard").into_response();
    };
    let user = request.extensions().get::<RequestIdentity>().and_then(|i| i.user.clone());
    let (Some(user), Some(id)) = (user, session.id()) else {
        // Log in, then come back here through the login page's return address.
        return Redirect::to(&format!("/login?rd={}", urlencoding::encode(&rd))).into_response();
    };
    match state.gateway.hop(&rd, &user.username, &id.to_string()) {
        // Built from a parsed URL and encoded parts: a valid header value.
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => (StatusCode::FORBIDDEN, format!("Berth cannot open this: {e}.\n")).into_response(),
    }
}

/// "Desktop (noVNC)": the owner's desktop page, with the VNC password handed over.
async fn novnc_launch(State(state): State<AppState>, request: Request) -> Response {
    let Some(user) = request.extensions().get::<RequestIdentity>().and_then(|i| i.user.clone()) else {
        return Redirect::to("/login").into_response();
    };
    match state.workspaces.novnc_url(&Actor::from(&user), &Owner::from(&user)).await {
        // no-store: the address carries the password (in its fragment, which no server sees).
        Ok(Some(url)) => ([(axum::http::header::CACHE_CONTROL, "no-store")], Redirect::to(&url)).into_response(),
        Ok(None) => (StatusCode::CONFLICT, "Start your workspace first.\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "noVNC: cannot read workspace record");
            (StatusCode::SERVICE_UNAVAILABLE, "Try again shortly.\n").into_response()
        }
    }
}

/// "Desktop in browser": a Guacamole session for the caller's own workspace desktop.
async fn guacamole_launch(State(state): State<AppState>, request: Request) -> Response {
    let Some(identity) = request.extensions().get::<RequestIdentity>().cloned() else {
        return Redirect::to("/login").into_response();
    };
    let Some(user) = identity.user else { return Redirect::to("/login").into_response() };
    let Some(settings) = &state.guacamole else {
        return (StatusCode::NOT_FOUND, "Guacamole is not configured on this Berth.\n").into_response();
    };
    let secrets = match state.workspaces.credentials(&Actor::from(&user), &Owner::from(&user)).await {
        Ok(Some(secrets)) => secrets,
        Ok(None) => return (StatusCode::CONFLICT, "Start your workspace first.\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "guacamole: cannot read workspace record");
            return (StatusCode::SERVICE_UNAVAILABLE, "Try again shortly.\n").into_response();
        }
    };
    let password = if settings.protocol == "rdp" { secrets.ssh_password } else { secrets.vnc_password };
    let now_ms = crate::db::now() * 1000;
    let host = state.workspaces.runtime().proxy_host(&user.username);
    match crate::routes::guacamole::launch_url(settings, &state.http, &user.username, &host, &password, now_ms).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "guacamole launch failed");
            (StatusCode::BAD_GATEWAY, "Guacamole did not answer; try again shortly.\n").into_response()
        }
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.accounts.db().ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database not answering");
            (StatusCode::SERVICE_UNAVAILABLE, "database not answering\n").into_response()
        }
    }
}


#[derive(serde::Deserialize)]
struct ReturnQuery {
    rd: Option<String>,
}
