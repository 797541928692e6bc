//! The seam between the thin `app` layer and the domain services in `server`.
//! `server` implements [`PortalServices`] and provides it as context; server functions
//! only authorize, call it and map the outcome.

use std::net::IpAddr;
use std::sync::Arc;

use crate::error::AppError;
use crate::model::{
    AdminAction, CurrentUser, GpuBoard, UsagePanel, UserSummary, WorkspaceAction, WorkspaceCredentials, WorkspaceView, WorkspacesOverview,
};

/// Session keys shared by the server functions (which write them at login) and the
/// server's request layer (which reads them on every request).
pub const SESSION_USER_ID: &str = "user_id";
pub const SESSION_LOGIN_AT: &str = "login_at";
/// Where the login came from and with what browser (the account page's session list).
pub const SESSION_CLIENT: &str = "client";
pub const SESSION_AGENT: &str = "agent";
/// (ok, message, when) of the last account or admin form post, for the page it returns to.
pub const SESSION_FORM_OUTCOME: &str = "form_outcome";
/// (provider id, ID token) of an SSO login, for ending the provider's session at logout.
pub const SESSION_SSO_LOGOUT: &str = "oidc_logout";

pub struct SignUpRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    pub client: IpAddr,
}

pub struct LogInRequest {
    pub username: String,
    pub password: String,
    pub client: IpAddr,
}

#[async_trait::async_trait]
pub trait PortalServices: Send + Sync + 'static {
    /// Creates a pending account.
    async fn sign_up(&self, request: SignUpRequest) -> Result<(), AppError>;
    /// Checks credentials; only approved accounts get a user back.
    async fn log_in(&self, request: LogInRequest) -> Result<CurrentUser, AppError>;
    async fn list_users(&self, actor: &CurrentUser) -> Result<Vec<UserSummary>, AppError>;
    async fn apply_admin_action(
        &self,
        actor: &CurrentUser,
        user_id: i64,
        action: AdminAction,
    ) -> Result<(), AppError>;

    fn login_options(&self) -> crate::model::LoginOptions;
    /// The provider's end-session URL for an SSO login, if it has one.
    async fn sso_logout_url(&self, provider: &str, id_token: &str) -> Option<String>;
    /// Where the login form sends the browser back to reach `url`, when `url` is an app host
    /// Berth generated: the app's own address, normalised. It is another origin, so the
    /// hydrated page leaves by a full page load (its router would try to render a portal path
    /// such as `/auth/app` itself); the app host then sends the browser through the hop that
    /// gives it its own cookie. None otherwise.
    fn login_return(&self, url: &str) -> Option<String>;
    /// The caller's own workspace card.
    async fn workspace(&self, user: &CurrentUser) -> Result<WorkspaceView, AppError>;
    /// Starts, stops, restarts or resets `owner`'s workspace in the background; the card
    /// shows the progress. The service refuses an actor who is neither the owner nor an admin.
    async fn workspace_action(&self, actor: &CurrentUser, owner: &str, action: WorkspaceAction) -> Result<(), AppError>;
    async fn workspace_credentials(&self, user: &CurrentUser) -> Result<WorkspaceCredentials, AppError>;
    /// `which` is `ssh` or `vnc`.
    async fn regenerate_credential(&self, user: &CurrentUser, which: &str) -> Result<(), AppError>;
    async fn workspaces_overview(&self, admin: &CurrentUser) -> Result<WorkspacesOverview, AppError>;
    /// `owner`'s usage now and over the last `hours`: the owner's own, or any for an admin.
    async fn usage_panel(&self, actor: &CurrentUser, owner: &str, hours: u32) -> Result<UsagePanel, AppError>;
    /// Every GPU of the host and whose processes are on it (admins).
    async fn gpu_board(&self, admin: &CurrentUser) -> Result<GpuBoard, AppError>;
    /// The GPU sharing board, the queue and the viewer's idle state.
    async fn gpu_share(&self, actor: &CurrentUser) -> Result<crate::model::GpuShareView, AppError>;
    /// The board with everyone's limits, idle policy and the record (admins).
    async fn sharing_admin(&self, admin: &CurrentUser) -> Result<crate::model::SharingAdminView, AppError>;
    /// Carries out a request, release, extension, … and says what happened.
    async fn sharing_command(&self, actor: &CurrentUser, command: crate::model::SharingCommand) -> Result<String, AppError>;
    /// A page drawn on the server: `account`, `admin-accounts` or `audit` (with the page's
    /// query). `session` is the asking session's id; `outcome` what its last form post came to.
    async fn drawn_page(&self, actor: &CurrentUser, page: &str, query: &str, session: Option<String>, outcome: Option<(bool, String)>) -> Result<String, AppError>;
    /// Notes a logout in the audit log.
    async fn logged_out(&self, user: &CurrentUser, client: IpAddr);
    /// The last lines `owner`'s workspace printed that contain `search` (any case); the
    /// owner's own, or any for an admin.
    async fn log_tail(&self, actor: &CurrentUser, owner: &str, search: &str) -> Result<Vec<String>, AppError>;
}

/// Context handle the server provides to every render and server-function call.
#[derive(Clone)]
pub struct Services(pub Arc<dyn PortalServices>);

/// Put in each request's extensions by the server's session layer: who is asking and from where.
#[derive(Clone, Debug)]
pub struct RequestIdentity {
    pub user: Option<CurrentUser>,
    pub client: IpAddr,
}
