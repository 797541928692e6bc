//! The HTTP surface: Leptos pages and server functions, health check, and the request
//! layers (cross-site refusal, sessions, identity, page guards).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use app::services::{RequestIdentity, Services, SESSION_LOGIN_AT, SESSION_USER_ID};
use app::{shell, App};
use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::accounts::{AccountSettings, Accounts};
use crate::config::Config;
use crate::db::Db;
use crate::portal::Portal;
use crate::routes::guacamole::GuacamoleSettings;
use crate::routes::hosts::HostRules;
use crate::routes::traefik::{TraefikSettings, TraefikWriter};
use crate::routes::verify::Gateway;
use crate::sessions::{SessionCache, SqlSessionStore};
use crate::sso::{Outcome, PendingSignup, Sso, SsoError};
use crate::workspace::service::LinkSettings;
use crate::workspace::spec::WorkspaceSettings;
use crate::workspace::{Actor, DockerRuntime, DockerSettings, Engine, Owner, Workspaces};
use app::model::AdminAction;

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

/// The domain services one Berth process runs, shared by the HTTP layer and the CLI.
#[derive(Clone)]
pub struct Backend {
    pub db: Db,
    pub accounts: Accounts,
    pub workspaces: Arc<Workspaces>,
    pub sessions: Arc<SessionCache>,
    pub gateway: Arc<Gateway>,
    pub guacamole: Option<GuacamoleSettings>,
    pub sso: Arc<Sso>,
}

/// How long `/auth/verify` trusts a cached session before asking the database again.
const GATEWAY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl Backend {
    pub fn new(config: &Config, db: Db, key: &[u8; 32]) -> Backend {
        let idle = std::time::Duration::from_secs(config.session_idle_minutes * 60);
        let sessions = Arc::new(SessionCache::new(GATEWAY_CACHE_TTL, idle));
        let accounts = Accounts::new(
            db.clone(),
            AccountSettings {
                attempts_per_window: config.login_attempts_per_window,
                window: std::time::Duration::from_secs(config.login_window_seconds),
                hashing_concurrency: config.hashing_concurrency(),
                hosts: HostRules::from_config(config),
            },
            sessions.clone(),
        );
        let engine = Arc::new(Engine::new(config.docker_host.clone(), config.docker_tls_dir.clone()));
        let settings = WorkspaceSettings::from_config(config);
        let runtime = Arc::new(DockerRuntime::new(
            engine,
            DockerSettings {
                min_free_mib: config.workspace.min_free_mib,
                extra_label: settings.extra_label(),
                attach_containers: config.workspace.attach_containers.clone(),
                probe_image: Some(config.workspace_image.clone()),
            },
        ));
        let public_url = config.public_url();
        let ssh_host = config.ssh_host.clone().unwrap_or_else(|| public_url.host_str().unwrap_or("localhost").to_string());
        let guacamole = match (&config.guacamole.public_url, &config.guacamole.secret_key) {
            (Some(public_url), Some(secret)) => Some(GuacamoleSettings {
                internal_url: config.guacamole.internal_url.clone(),
                public_url: public_url.clone(),
                secret: hex::decode(&secret.0).ok().and_then(|k| k.try_into().ok()).expect("validated 16-byte key"),
                protocol: config.guacamole.protocol.clone().unwrap_or_else(|| "vnc".into()),
            }),
            _ => None,
        };
        let mut workspaces = Workspaces::new(db.clone(), runtime, settings, key, ssh_host);
        workspaces.routes = config.traefik_dir.as_ref().map(|dir| {
            Arc::new(TraefikWriter::new(TraefikSettings {
                dir: dir.clone(),
                portal_internal_url: config.traefik.portal_internal_url.clone(),
                portal_host: public_url.host_str().unwrap_or("localhost").to_string(),
                domain: config.domain.clone(),
                hosts: config.hosts.clone(),
                entry_point: config.traefik.entry_point.clone(),
                cert_resolver: config.traefik.cert_resolver.clone(),
                tls: config.traefik.tls,
            }))
        });
        workspaces.links = LinkSettings {
            scheme: public_url.scheme().to_string(),
            domain: config.domain.clone(),
            hosts: config.hosts.clone(),
            guacamole: guacamole.is_some(),
        };
        let gateway = Arc::new(Gateway::new(
            db.clone(),
            sessions.clone(),
            config.hosts.clone(),
            config.domain.clone(),
            public_url,
            config.session_absolute_hours as i64 * 3600,
            key,
        ));
        let sso = Arc::new(Sso::new(config.oidc(), config.public_url(), db.clone(), accounts.clone(), key));
        Backend { db, accounts, workspaces: Arc::new(workspaces), sessions, gateway, guacamole, sso }
    }

    /// Disables an account everywhere: sessions, routes, running workspace.
    pub async fn disable_user(&self, username: &str) -> anyhow::Result<()> {
        let user = self.accounts.find_by_name(username).await?;
        self.accounts.apply(None, user.id, AdminAction::Disable).await?;
        self.workspaces.disable_user(&Actor::System, &Owner::from(&user)).await?;
        Ok(())
    }
}

pub fn router(config: Arc<Config>, backend: Backend) -> Router {
    let Backend { db, accounts, workspaces, sessions: session_cache, gateway, guacamole, sso } = backend;
    let state = AppState {
        leptos_options: leptos_options(&config),
        accounts: accounts.clone(),
        config: config.clone(),
        gateway: gateway.clone(),
        workspaces: workspaces.clone(),
        guacamole: guacamole.map(Arc::new),
        sso: sso.clone(),
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
    }));

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
    // forwardAuth sits outside the session layers: it must not touch the database per request.
    let verify = Router::new().route("/auth/verify", get(crate::routes::verify::verify)).with_state(gateway);
    let pkg = crate::web_static::pkg_routes(&state.leptos_options);
    let portal = Router::new()
        .route("/healthz", get(healthz))
        .route("/desktop/guacamole", get(guacamole_launch))
        .route("/auth/app", get(app_hop))
        .route("/auth/oidc/{provider}/login", get(oidc_login))
        .route("/auth/oidc/{provider}/callback", get(oidc_callback))
        .route("/auth/oidc/username", axum::routing::post(oidc_username))
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
        .layer(middleware::from_fn_with_state(state.clone(), identify))
        .layer(sessions)
        .layer(middleware::from_fn_with_state(state.clone(), one_session_cookie))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_cross_site))
        .layer(crate::web_static::compression())
        .with_state(state);
    // /auth/verify stays uncompressed (forwardAuth's hot path); /pkg is precompressed.
    verify.merge(pkg).merge(portal)
}

/// Two session cookies in one request (one planted from a sibling host, or left from an older
/// Berth that scoped it to the domain) mean no session, for every layer alike, and the browser
/// is told to forget them so the next login works.
async fn one_session_cookie(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
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

/// Refuses state-changing requests that do not come from the portal's own pages, and sets
/// the headers every response should carry.
async fn refuse_cross_site(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
async fn identify(State(state): State<AppState>, session: Session, mut request: Request, next: Next) -> Response {
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
        let target = match (path, &user) {
            ("/" | "/login" | "/signup", Some(_)) => Some("/dashboard"),
            ("/" | "/dashboard" | "/admin", None) => Some("/login"),
            ("/admin", Some(u)) if !u.is_admin => Some("/dashboard"),
            _ => None,
        };
        if let Some(target) = target {
            return Redirect::to(target).into_response();
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
fn client_address(request: &Request, trust_proxy_headers: bool) -> IpAddr {
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

/// Serves until Ctrl-C or SIGTERM.
pub async fn serve(config: Arc<Config>, backend: Backend) -> anyhow::Result<()> {
    let db = backend.db.clone();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key `listen`): {e}", config.listen))?;
    let store = SqlSessionStore::new(db.clone(), backend.sessions.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "could not delete expired sessions");
            }
        }
    });
    tokio::spawn(backend.workspaces.clone().watch_events());
    // Sessions ended by another process (the CLI's `user disable`) leave this one's forwardAuth
    // cache within about a second.
    let (cache, revocation_db) = (backend.sessions.clone(), db.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = cache.follow_revocations(&revocation_db).await {
                tracing::debug!(error = %e, "could not read the revocation counter");
            }
        }
    });
    // Said once at start (a WARN line when users can become host root); with the engine down,
    // the first workspace operation asks again.
    let workspaces = backend.workspaces.clone();
    tokio::spawn(async move {
        if let Err(e) = workspaces.isolation().await {
            tracing::warn!(error = %e, "isolation mode not known yet: the engine did not answer");
        }
    });
    let sso = backend.sso.clone();
    tokio::spawn(async move { sso.warm_up().await });
    let app = router(config.clone(), backend);
    tracing::info!(listen = %config.listen, public_url = %config.public_url(), "Berth is serving");
    println!("Berth is serving on http://{}", config.listen);
    // Small answers (forwardAuth's 200s above all) must leave at once, not wait for Nagle's
    // algorithm to coalesce them with data that never comes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

const SESSION_SSO_SIGNUP: &str = "oidc_signup";
/// Holds the sealed pending login between the redirect to the provider and the callback.
const PENDING_COOKIE: &str = "berth_oidc";

#[derive(serde::Deserialize)]
struct ReturnQuery {
    rd: Option<String>,
}

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
async fn oidc_login(
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
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn oidc_callback(
    State(state): State<AppState>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<CallbackQuery>,
    headers: axum::http::HeaderMap,
    session: Session,
) -> Response {
    let sealed = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(PENDING_COOKIE).and_then(|rest| rest.strip_prefix('=')))
        .map(str::to_string);
    let mut response = oidc_finish(&state, &provider, query, sealed, &session).await;
    // Whatever happened, the browser drops the pending login. A copy kept elsewhere is no use: the
    // provider's code for it is single-use and bound to the PKCE verifier sealed inside.
    let gone = pending_cookie(String::new(), time::Duration::ZERO, state.config.secure_cookies());
    response.headers_mut().append(header::SET_COOKIE, gone);
    response
}

async fn oidc_finish(state: &AppState, provider: &str, query: CallbackQuery, sealed: Option<String>, session: &Session) -> Response {
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
        Ok(outcome) => sso_outcome(state, session, outcome).await,
        Err(e) => sso_failed(e),
    }
}

#[derive(serde::Deserialize)]
struct UsernameForm {
    username: String,
}

/// A new SSO user's chosen username (the provider's was taken or invalid).
async fn oidc_username(State(state): State<AppState>, session: Session, axum::Form(form): axum::Form<UsernameForm>) -> Response {
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
            sso_outcome(&state, &session, outcome).await
        }
        Err(e) => sso_failed(e),
    }
}

async fn sso_outcome(state: &AppState, session: &Session, outcome: Outcome) -> Response {
    match outcome {
        Outcome::LoggedIn { user, provider, id_token, rd } => {
            // New id at login, as with passwords.
            if session.cycle_id().await.is_err()
                || session.insert(SESSION_USER_ID, user.id).await.is_err()
                || session.insert(SESSION_LOGIN_AT, crate::db::now()).await.is_err()
            {
                return sso_failed(SsoError::Internal("session store".into()));
            }
            let _ = session.insert(app::services::SESSION_SSO_LOGOUT, (provider, id_token)).await;
            // Saved now so a refused write (a full disk) gets the error page, not an empty 500.
            if session.save().await.is_err() {
                return sso_failed(SsoError::Internal("session store".into()));
            }
            tracing::info!(user_id = user.id, "login through single sign-on");
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
