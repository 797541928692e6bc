//! `/api/v1`: the JSON REST API, for scripts and the remote `berth` command line.
//!
//! Only `Authorization: Bearer <personal token>` opens it: it sits outside the session layers,
//! so a browser's session cookie authenticates nothing here (no cross-site request can act),
//! and a token opens no page. Errors are `{"code": "...", "message": "..."}` with a stable
//! code. The OpenAPI 3.1 document at `/api/v1/openapi.json` is generated from these handlers
//! (utoipa): a route exists here only with its documentation.

use app::error::AppError;
use app::model::{AdminAction, CurrentUser, WorkspaceView};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{AuditActor, Event, Outcome};
use crate::backend::Backend;
use crate::tokens::{Rejected, Scope, TokenIdentity};
use crate::workspace::{Actor, Owner};

pub const API_PREFIX: &str = "/api/v1";
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// An error as every client sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, for programs: `unauthenticated`, `insufficient_scope`, `forbidden`, `not_found`,
    /// `invalid`, `conflict`, `unavailable`, `busy`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    fn unauthenticated() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "A valid, unexpired API token is needed: Authorization: Bearer berth_…")
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("No such {what}."))
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match &e {
            AppError::Unauthenticated | AppError::BadCredentials => "unauthenticated",
            AppError::Forbidden | AppError::PendingApproval | AppError::Refused(_) => "forbidden",
            AppError::Invalid(_) => "invalid",
            AppError::TooManyAttempts(_) | AppError::Busy(_) => "busy",
            AppError::Conflict(_) => "conflict",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal | AppError::Transport(_) => "internal",
        };
        ApiError { status, code, message: e.to_string() }
    }
}

impl From<crate::workspace::WorkspaceError> for ApiError {
    fn from(e: crate::workspace::WorkspaceError) -> ApiError {
        crate::app_errors::workspace_error(e).into()
    }
}

impl From<crate::accounts::AccountError> for ApiError {
    fn from(e: crate::accounts::AccountError) -> ApiError {
        match e {
            crate::accounts::AccountError::NotFound(_) => ApiError::not_found("user"),
            e => crate::app_errors::to_app_error(e).into(),
        }
    }
}

impl From<crate::ssh_keys::KeyError> for ApiError {
    fn from(e: crate::ssh_keys::KeyError) -> ApiError {
        use crate::ssh_keys::KeyError;
        match e {
            KeyError::Invalid(_) | KeyError::NoKeyYet => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()),
            KeyError::Duplicate => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            KeyError::NotFound => ApiError::not_found("key"),
            e => {
                tracing::error!(error = %e, "SSH keys");
                ApiError::from(AppError::Internal)
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        tracing::error!(error = %e, "API: database");
        ApiError::from(AppError::Unavailable("The database is not answering; try again shortly.".into()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { code: self.code.into(), message: self.message })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The caller: a token that opened, and its owner as the account is now.
pub struct Caller {
    token: TokenIdentity,
    client: std::net::IpAddr,
}

impl Caller {
    /// `workspace:write` includes reading; `admin` includes everything.
    fn require(&self, scope: Scope) -> ApiResult<()> {
        let has = |s| self.token.scopes.contains(&s);
        if has(scope) || has(Scope::Admin) || (scope == Scope::WorkspaceRead && has(Scope::WorkspaceWrite)) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", format!("This token lacks the {} scope.", scope.as_str())))
        }
    }

    fn require_admin(&self) -> ApiResult<()> {
        self.require(Scope::Admin)?;
        if !self.token.user.is_admin {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Only administrators may do this."));
        }
        Ok(())
    }

    fn user(&self) -> &CurrentUser {
        &self.token.user
    }

    /// Whom the services see acting: an administrator only through a token with the `admin`
    /// scope (a `gpu` token of an admin must not revoke other people's GPUs).
    fn actor(&self) -> Actor {
        Actor::User { id: self.token.user.id, admin: self.token.user.is_admin && self.token.scopes.contains(&Scope::Admin) }
    }

    fn audit_actor(&self) -> AuditActor {
        AuditActor::Token { owner: self.token.user.username.clone(), name: self.token.token_name.clone() }
    }

    fn event<'a>(&self, action: &'a str, target: &'a str) -> Event<'a> {
        Event::new(self.audit_actor(), action, target).client(self.client)
    }
}

impl FromRequestParts<Backend> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, backend: &Backend) -> Result<Caller, ApiError> {
        let secret = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_string())
            .ok_or_else(ApiError::unauthenticated)?;
        // Stamped by the web layer (the socket peer, or a trusted proxy's forwarded address).
        let client = parts
            .extensions
            .get::<app::services::RequestIdentity>()
            .map(|i| i.client)
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let token = match backend.tokens.authenticate(&secret).await? {
            Ok(token) => token,
            Err(why) => {
                let (spent, detail) = match &why {
                    Rejected::Expired(spent) => (Some(spent), "expired"),
                    Rejected::Revoked(spent) => (Some(spent), "revoked"),
                    _ => (None, ""),
                };
                tracing::info!(why = detail, "API token refused");
                if let Some(spent) = spent.filter(|s| s.first_today) {
                    let actor = AuditActor::Token { owner: spent.owner.clone(), name: spent.name.clone() };
                    backend.audit.record(Event::new(actor, "token.use", &spent.owner).client(client).outcome(Outcome::Refused).detail(detail)).await;
                }
                return Err(ApiError::unauthenticated());
            }
        };
        let caller = Caller { token, client };
        if caller.token.first_use_today {
            let target = caller.token.user.username.clone();
            backend.audit.record(caller.event("token.use", &target)).await;
        }
        Ok(caller)
    }
}

/// Who the token speaks for.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
    /// The token's name and scopes.
    pub token: String,
    pub scopes: Vec<String>,
}

/// A workspace: its state, ports and app links.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Workspace {
    pub username: String,
    /// `absent`, `creating`, `running`, `stopped`, …
    pub state: String,
    /// Every installed service answers.
    pub ready: bool,
    /// `ssh -p PORT USER@HOST`, once the workspace has ports.
    pub ssh_command: Option<String>,
    pub ports: Option<Ports>,
    pub apps: Vec<AppLink>,
    /// The workspace differs from its current spec (applied at the next restart).
    pub drift: bool,
    /// The last operation's error, if any.
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Ports {
    pub ssh: u16,
    pub vnc: u16,
    pub rdp: u16,
    pub novnc: u16,
    pub code: u16,
    pub jupyter: u16,
    pub tensorboard: u16,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AppLink {
    pub key: String,
    pub label: String,
    pub url: String,
}

impl From<WorkspaceView> for Workspace {
    fn from(v: WorkspaceView) -> Workspace {
        Workspace {
            ssh_command: v.ports.map(|p| format!("ssh -p {} {}@{}", p.ssh, v.username, v.ssh_host)),
            ports: v.ports.map(|p| Ports { ssh: p.ssh, vnc: p.vnc, rdp: p.rdp, novnc: p.novnc, code: p.code, jupyter: p.jupyter, tensorboard: p.tensorboard }),
            apps: v.apps.into_iter().map(|a| AppLink { key: a.key, label: a.label, url: a.url }).collect(),
            username: v.username,
            state: v.state.as_str().to_string(),
            ready: v.ready,
            drift: v.drift,
            error: v.error,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SshKey {
    pub id: i64,
    pub name: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub created_at: i64,
}

impl From<crate::ssh_keys::KeyInfo> for SshKey {
    fn from(k: crate::ssh_keys::KeyInfo) -> SshKey {
        SshKey { id: k.id, name: k.name, algorithm: k.algorithm, fingerprint: k.fingerprint, created_at: k.created_at }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NewSshKey {
    /// Defaults to the key's comment.
    #[serde(default)]
    pub name: String,
    /// One OpenSSH public key line (ed25519, ECDSA, or RSA of 3072 bits or more).
    pub public_key: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    /// `pending`, `approved`, `rejected` or `disabled`.
    pub status: String,
    pub is_admin: bool,
    pub created_at: i64,
}

impl From<crate::accounts::User> for User {
    fn from(u: crate::accounts::User) -> User {
        User { id: u.id, username: u.username, email: u.email, status: u.status.as_str().to_string(), is_admin: u.is_admin, created_at: u.created_at }
    }
}

/// One row of the admin's workspace list.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WorkspaceSummary {
    pub username: String,
    pub state: String,
    pub ssh_port: Option<u16>,
    pub drift: bool,
}

/// One GPU of the server and who holds it.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub utilization_percent: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Who claimed or leased it, and until when (Unix seconds).
    pub holder: Option<String>,
    pub holding_id: Option<i64>,
    pub until: Option<i64>,
    pub note: Option<String>,
}

/// The GPU board: `mode` is `open` (claims, shown) or `leased` (enforced).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct GpuBoard {
    pub mode: String,
    pub gpus: Vec<Gpu>,
    /// Why there are none, or that leases are only advice here.
    pub note: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GpuRequest {
    /// How many GPUs (any free ones), when `gpu` is not given.
    #[serde(default = "one")]
    pub count: u32,
    /// One GPU by its index.
    pub gpu: Option<u32>,
    pub hours: f64,
    #[serde(default)]
    pub note: String,
    /// In leased mode, the workspace may restart to attach the GPUs.
    #[serde(default)]
    pub restart: bool,
}

fn one() -> u32 {
    1
}

/// What a GPU request or release came to, in words.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Said {
    pub message: String,
}

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Added to what the handlers collected, never replacing it.
        openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new)
            .add_security_scheme("token", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("berth_…").build()));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Berth API", description = "Your workspace, your keys, and (for administrators) users and workspaces. Authenticate with a personal API token made on the account page: `Authorization: Bearer berth_…`."),
    servers((url = "/api/v1")),
    modifiers(&BearerToken),
    security(("token" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The API's routes and their OpenAPI document, from the same list.
pub fn routes() -> (Router<Backend>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(me))
        .routes(routes!(my_workspace))
        .routes(routes!(start_workspace))
        .routes(routes!(stop_workspace))
        .routes(routes!(restart_workspace))
        .routes(routes!(list_keys, add_key))
        .routes(routes!(delete_key))
        .routes(routes!(gpu_board))
        .routes(routes!(request_gpus))
        .routes(routes!(release_gpu))
        .routes(routes!(list_users))
        .routes(routes!(approve_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(list_workspaces))
        .routes(routes!(start_user_workspace))
        .routes(routes!(stop_user_workspace))
        .split_for_parts()
}

/// `/api/v1/…`, with the document at [`OPENAPI_PATH`] (open to anyone: it describes, it grants nothing).
pub fn router(backend: Backend) -> Router {
    let (routes, doc) = routes();
    let doc = std::sync::Arc::new(doc.to_json().expect("the OpenAPI document serializes"));
    Router::new()
        .nest(API_PREFIX, routes.fallback(|| async { ApiError::not_found("API route") }))
        .route(OPENAPI_PATH, axum::routing::get(move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.as_str().to_string()) }))
        .with_state(backend)
}

/// The document as a string (`berth openapi`, tests).
pub fn openapi_json() -> String {
    routes().1.to_pretty_json().expect("the OpenAPI document serializes")
}

/// Who the token speaks for.
#[utoipa::path(get, path = "/me", tag = "account",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
async fn me(caller: Caller) -> Json<Me> {
    let t = &caller.token;
    Json(Me {
        id: t.user.id,
        username: t.user.username.clone(),
        is_admin: t.user.is_admin,
        token: t.token_name.clone(),
        scopes: t.scopes.iter().map(|s| s.as_str().to_string()).collect(),
    })
}

/// Your workspace: state, ports, app links. Scope `workspace:read`.
#[utoipa::path(get, path = "/workspace", tag = "workspace",
    responses((status = 200, body = Workspace), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn my_workspace(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<Workspace>> {
    caller.require(Scope::WorkspaceRead)?;
    Ok(Json(backend.workspaces.view(&caller.actor(), &Owner::from(caller.user())).await?.into()))
}

async fn act(backend: &Backend, caller: &Caller, owner: Owner, action: app::model::WorkspaceAction) -> ApiResult<Json<Workspace>> {
    let actor = caller.actor();
    let name = format!("workspace.{}", action.as_str());
    let result = backend.workspaces.apply(&actor, &owner, action).await;
    let outcome = match &result {
        Ok(()) => Outcome::Ok,
        Err(crate::workspace::WorkspaceError::Forbidden(_)) => Outcome::Refused,
        Err(_) => Outcome::Failed,
    };
    let detail = result.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
    backend.audit.record(caller.event(&name, &owner.username).outcome(outcome).detail(detail)).await;
    result?;
    Ok(Json(backend.workspaces.view(&actor, &owner).await?.into()))
}

/// Creates (if needed) and starts your workspace; answers once it runs. Scope `workspace:write`.
#[utoipa::path(post, path = "/workspace/start", tag = "workspace",
    responses((status = 200, body = Workspace), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn start_workspace(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<Workspace>> {
    caller.require(Scope::WorkspaceWrite)?;
    act(&backend, &caller, Owner::from(caller.user()), app::model::WorkspaceAction::Start).await
}

/// Stops your workspace (stopping a stopped one is fine). Scope `workspace:write`.
#[utoipa::path(post, path = "/workspace/stop", tag = "workspace",
    responses((status = 200, body = Workspace), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn stop_workspace(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<Workspace>> {
    caller.require(Scope::WorkspaceWrite)?;
    act(&backend, &caller, Owner::from(caller.user()), app::model::WorkspaceAction::Stop).await
}

/// Stops and starts your workspace, applying a changed spec. Scope `workspace:write`.
#[utoipa::path(post, path = "/workspace/restart", tag = "workspace",
    responses((status = 200, body = Workspace), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn restart_workspace(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<Workspace>> {
    caller.require(Scope::WorkspaceWrite)?;
    act(&backend, &caller, Owner::from(caller.user()), app::model::WorkspaceAction::Restart).await
}

/// Your SSH public keys. Scope `workspace:read`.
#[utoipa::path(get, path = "/keys", tag = "keys",
    responses((status = 200, body = Vec<SshKey>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_keys(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<Vec<SshKey>>> {
    caller.require(Scope::WorkspaceRead)?;
    Ok(Json(backend.keys.list(caller.user().id).await?.into_iter().map(SshKey::from).collect()))
}

/// Adds an SSH public key; it reaches the workspace within seconds. Scope `workspace:write`.
#[utoipa::path(post, path = "/keys", tag = "keys", request_body = NewSshKey,
    responses((status = 201, body = SshKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_key(State(backend): State<Backend>, caller: Caller, Json(new): Json<NewSshKey>) -> ApiResult<(StatusCode, Json<SshKey>)> {
    caller.require(Scope::WorkspaceWrite)?;
    let key = backend.keys.add(caller.user(), &new.name, &new.public_key).await?;
    let target = format!("{}/key {}", caller.user().username, key.name);
    backend.audit.record(caller.event("key.add", &target).detail(key.fingerprint.clone())).await;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// Removes one of your SSH keys. Scope `workspace:write`.
#[utoipa::path(delete, path = "/keys/{id}", tag = "keys", params(("id" = i64, Path, description = "The key's id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_key(State(backend): State<Backend>, caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    caller.require(Scope::WorkspaceWrite)?;
    let key = backend.keys.delete(caller.user(), id).await?;
    let target = format!("{}/key {}", caller.user().username, key.name);
    backend.audit.record(caller.event("key.remove", &target).detail(key.fingerprint)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Every account (administrators; scope `admin`).
#[utoipa::path(get, path = "/users", tag = "admin",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_users(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<Vec<User>>> {
    caller.require_admin()?;
    Ok(Json(backend.accounts.list().await?.into_iter().map(User::from).collect()))
}

async fn user_action(backend: &Backend, caller: &Caller, username: &str, action: AdminAction) -> ApiResult<Json<User>> {
    caller.require_admin()?;
    let user = backend.accounts.find_by_name(username).await?;
    let result = match action {
        AdminAction::Disable => backend.disable_user_as(Some(caller.user()), &user.username).await.map_err(|e| match e.downcast::<crate::accounts::AccountError>() {
            Ok(e) => ApiError::from(e),
            Err(e) => {
                tracing::error!(error = %e, "API: disabling a user");
                ApiError::from(AppError::Internal)
            }
        }),
        action => backend.accounts.apply(Some(caller.user()), user.id, action).await.map(drop).map_err(ApiError::from),
    };
    let name = format!("user.{}", action.as_str());
    let outcome = if result.is_ok() { Outcome::Ok } else { Outcome::Refused };
    backend.audit.record(caller.event(&name, &user.username).outcome(outcome)).await;
    result?;
    Ok(Json(backend.accounts.find_by_name(username).await?.into()))
}

/// Approves a pending account (administrators).
#[utoipa::path(post, path = "/users/{username}/approve", tag = "admin", params(("username" = String, Path)),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn approve_user(State(backend): State<Backend>, caller: Caller, Path(username): Path<String>) -> ApiResult<Json<User>> {
    user_action(&backend, &caller, &username, AdminAction::Approve).await
}

/// Disables an account: its sessions end, its workspace stops (administrators).
#[utoipa::path(post, path = "/users/{username}/disable", tag = "admin", params(("username" = String, Path)),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn disable_user(State(backend): State<Backend>, caller: Caller, Path(username): Path<String>) -> ApiResult<Json<User>> {
    user_action(&backend, &caller, &username, AdminAction::Disable).await
}

/// Enables a disabled account (administrators).
#[utoipa::path(post, path = "/users/{username}/enable", tag = "admin", params(("username" = String, Path)),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn enable_user(State(backend): State<Backend>, caller: Caller, Path(username): Path<String>) -> ApiResult<Json<User>> {
    user_action(&backend, &caller, &username, AdminAction::Enable).await
}

/// Every workspace (administrators).
#[utoipa::path(get, path = "/workspaces", tag = "admin",
    responses((status = 200, body = Vec<WorkspaceSummary>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_workspaces(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<Vec<WorkspaceSummary>>> {
    caller.require_admin()?;
    let overview = backend.workspaces.overview(&caller.actor()).await?;
    Ok(Json(
        overview
            .rows
            .into_iter()
            .map(|r| WorkspaceSummary { username: r.username, state: r.state.as_str().to_string(), ssh_port: r.ports.map(|p| p.ssh), drift: r.drift })
            .collect(),
    ))
}

async fn owner_of(backend: &Backend, username: &str) -> ApiResult<Owner> {
    Ok(Owner::from(&backend.accounts.find_by_name(username).await?))
}

/// Starts a user's workspace (administrators).
#[utoipa::path(post, path = "/workspaces/{username}/start", tag = "admin", params(("username" = String, Path)),
    responses((status = 200, body = Workspace), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn start_user_workspace(State(backend): State<Backend>, caller: Caller, Path(username): Path<String>) -> ApiResult<Json<Workspace>> {
    caller.require_admin()?;
    let owner = owner_of(&backend, &username).await?;
    act(&backend, &caller, owner, app::model::WorkspaceAction::Start).await
}

/// Stops a user's workspace (administrators).
#[utoipa::path(post, path = "/workspaces/{username}/stop", tag = "admin", params(("username" = String, Path)),
    responses((status = 200, body = Workspace), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn stop_user_workspace(State(backend): State<Backend>, caller: Caller, Path(username): Path<String>) -> ApiResult<Json<Workspace>> {
    caller.require_admin()?;
    let owner = owner_of(&backend, &username).await?;
    act(&backend, &caller, owner, app::model::WorkspaceAction::Stop).await
}

/// The server's GPUs and who holds each. Scope `gpu`.
#[utoipa::path(get, path = "/gpus", tag = "gpus",
    responses((status = 200, body = GpuBoard), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn gpu_board(State(backend): State<Backend>, caller: Caller) -> ApiResult<Json<GpuBoard>> {
    caller.require(Scope::Gpu)?;
    let board = backend.sharing.board(&Owner::from(caller.user())).await.map_err(crate::app_errors::sharing_error)?;
    Ok(Json(GpuBoard {
        mode: board.mode,
        note: board.note,
        gpus: board
            .gpus
            .into_iter()
            .map(|g| Gpu {
                index: g.index,
                name: g.name,
                utilization_percent: g.utilization_percent,
                memory_used_bytes: g.memory_used_bytes,
                memory_total_bytes: g.memory_total_bytes,
                holder: g.holder.as_ref().map(|h| h.username.clone()),
                holding_id: g.holder.as_ref().map(|h| h.id),
                until: g.holder.as_ref().map(|h| h.ends_at),
                note: g.holder.map(|h| h.note),
            })
            .collect(),
    }))
}

/// Asks for GPUs for your workspace: granted now or queued, within your limits. Scope `gpu`.
#[utoipa::path(post, path = "/gpus/request", tag = "gpus", request_body = GpuRequest,
    responses((status = 200, body = Said), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn request_gpus(State(backend): State<Backend>, caller: Caller, Json(ask): Json<GpuRequest>) -> ApiResult<Json<Said>> {
    caller.require(Scope::Gpu)?;
    if !(ask.hours.is_finite() && ask.hours > 0.0 && ask.hours <= 24.0 * 365.0) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "hours: more than 0, at most a year"));
    }
    let command = app::model::SharingCommand::Request {
        count: ask.count,
        gpu: ask.gpu,
        seconds: (ask.hours * 3600.0).round() as i64,
        note: ask.note,
        confirm: ask.restart,
    };
    let message = backend.sharing.command(&caller.actor(), &Owner::from(caller.user()), command).await.map_err(crate::app_errors::sharing_error)?;
    Ok(Json(Said { message }))
}

/// Gives one of your GPU holdings back. Scope `gpu`.
#[utoipa::path(post, path = "/gpus/release/{holding}", tag = "gpus", params(("holding" = i64, Path, description = "The holding's id (`holding_id` on the board)")),
    responses((status = 200, body = Said), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn release_gpu(State(backend): State<Backend>, caller: Caller, Path(holding): Path<i64>) -> ApiResult<Json<Said>> {
    caller.require(Scope::Gpu)?;
    let command = app::model::SharingCommand::Release { holding };
    let message = backend.sharing.command(&caller.actor(), &Owner::from(caller.user()), command).await.map_err(crate::app_errors::sharing_error)?;
    Ok(Json(Said { message }))
}
