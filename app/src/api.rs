//! Server functions: session → authorize → call a service → map the error.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{CurrentUser, UserSummary, WorkspaceCredentials, WorkspaceView, WorkspacesOverview};

#[cfg(feature = "ssr")]
mod ssr {
    use std::sync::Arc;

    use leptos::prelude::*;
    use leptos_axum::ResponseOptions;

    use crate::error::AppError;
    use crate::model::CurrentUser;
    use crate::services::{PortalServices, RequestIdentity, Services};

    pub fn services() -> Arc<dyn PortalServices> {
        expect_context::<Services>().0
    }

    pub fn identity() -> Result<RequestIdentity, AppError> {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<RequestIdentity>().cloned())
            .ok_or(AppError::Internal)
    }

    pub fn require_user() -> Result<CurrentUser, AppError> {
        identity()?.user.ok_or(AppError::Unauthenticated)
    }

    pub fn require_admin() -> Result<CurrentUser, AppError> {
        let user = require_user()?;
        if user.is_admin {
            Ok(user)
        } else {
            Err(AppError::Forbidden)
        }
    }

    /// The browser's own description of itself, shortened (the session list shows it).
    pub fn user_agent() -> String {
        use_context::<http::request::Parts>()
            .and_then(|p| p.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(200).collect()))
            .unwrap_or_default()
    }

    pub async fn session() -> Result<tower_sessions::Session, AppError> {
        leptos_axum::extract::<tower_sessions::Session>()
            .await
            .map_err(|_| AppError::Internal)
    }

    /// Sets the HTTP status for API clients. A plain HTML form post keeps the redirect
    /// leptos_axum gives it (back to the form, with the error in the URL).
    /// A plain HTML form's post (the browser asks for a page back), not a call from the app.
    pub fn is_form_post() -> bool {
        use_context::<http::request::Parts>()
            .and_then(|p| p.headers.get(http::header::ACCEPT).cloned())
            .and_then(|v| v.to_str().ok().map(|v| v.contains("text/html")))
            .unwrap_or(false)
    }

    pub fn fail(error: AppError) -> AppError {
        if !is_form_post() {
            if let (Some(options), Ok(code)) = (
                use_context::<ResponseOptions>(),
                http::StatusCode::from_u16(error.status_code()),
            ) {
                options.set_status(code);
                if let Some(seconds) = error.retry_after() {
                    options.insert_header(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
                }
            }
        }
        error
    }
}

/// The logged-in user, if any.
#[server(endpoint = "viewer")]
pub async fn get_viewer() -> Result<Option<CurrentUser>, AppError> {
    Ok(ssr::identity()?.user)
}

#[server(endpoint = "signup")]
pub async fn sign_up(username: String, email: String, password: String) -> Result<(), AppError> {
    use crate::services::SignUpRequest;
    let client = ssr::identity()?.client;
    let request = SignUpRequest { username, email, password, client };
    ssr::services().sign_up(request).await.map_err(ssr::fail)?;
    leptos_axum::redirect("/pending");
    Ok(())
}

/// `rd`: where to return after login (only hosts Berth generated are honoured).
#[server(endpoint = "login")]
pub async fn log_in(username: String, password: String, rd: Option<String>) -> Result<(), AppError> {
    use crate::services::{LogInRequest, SESSION_AGENT, SESSION_CLIENT, SESSION_LOGIN_AT, SESSION_USER_ID};
    let client = ssr::identity()?.client;
    let request = LogInRequest { username, password, client };
    let user = match ssr::services().log_in(request).await {
        Ok(user) => user,
        Err(AppError::PendingApproval) => {
            leptos_axum::redirect("/pending");
            return Ok(());
        }
        Err(error) => return Err(ssr::fail(error)),
    };
    let session = ssr::session().await?;
    // A new id at login: a session id planted before login is worthless afterwards.
    session.cycle_id().await.map_err(|_| AppError::Internal)?;
    session.insert(SESSION_USER_ID, user.id).await.map_err(|_| AppError::Internal)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    session.insert(SESSION_LOGIN_AT, now).await.map_err(|_| AppError::Internal)?;
    session.insert(SESSION_CLIENT, client.to_string()).await.map_err(|_| AppError::Internal)?;
    session.insert(SESSION_AGENT, ssr::user_agent()).await.map_err(|_| AppError::Internal)?;
    // Saved here, not only after the response is built, so a refused write gets a clear answer.
    session.save().await.map_err(|_| ssr::fail(AppError::Unavailable(LOGIN_NOT_SAVED.into())))?;
    match rd.and_then(|rd| ssr::services().login_return(&rd)) {
        Some(back) => leptos_axum::redirect(&back),
        None => leptos_axum::redirect(if user.is_admin { "/admin" } else { "/dashboard" }),
    }
    Ok(())
}

#[cfg(feature = "ssr")]
const LOGIN_NOT_SAVED: &str =
    "Berth could not record your login: its database refused the write (storage full or unreachable). Please tell an administrator.";

#[server(endpoint = "logout")]
pub async fn log_out() -> Result<(), AppError> {
    use crate::services::SESSION_SSO_LOGOUT;
    let session = ssr::session().await?;
    if let Ok(identity) = ssr::identity() {
        if let Some(user) = &identity.user {
            ssr::services().logged_out(user, identity.client).await;
        }
    }
    let sso = session.get::<(String, String)>(SESSION_SSO_LOGOUT).await.ok().flatten();
    session.flush().await.map_err(|_| AppError::Internal)?;
    let provider_logout = match sso {
        Some((provider, id_token)) => ssr::services().sso_logout_url(&provider, &id_token).await,
        None => None,
    };
    leptos_axum::redirect(provider_logout.as_deref().unwrap_or("/login"));
    Ok(())
}

#[server(endpoint = "login-options")]
pub async fn login_options() -> Result<crate::model::LoginOptions, AppError> {
    Ok(ssr::services().login_options())
}

#[server(endpoint = "users")]
pub async fn list_users() -> Result<Vec<UserSummary>, AppError> {
    let admin = ssr::require_admin().map_err(ssr::fail)?;
    ssr::services().list_users(&admin).await.map_err(ssr::fail)
}

#[server(endpoint = "admin-action")]
pub async fn admin_action(user_id: i64, action: String) -> Result<(), AppError> {
    use crate::model::AdminAction;
    let admin = ssr::require_admin().map_err(ssr::fail)?;
    let action = AdminAction::parse(&action)
        .ok_or_else(|| ssr::fail(AppError::Invalid(format!("unknown action {action:?}"))))?;
    ssr::services()
        .apply_admin_action(&admin, user_id, action)
        .await
        .map_err(ssr::fail)
}

#[server(endpoint = "workspace")]
pub async fn workspace_status() -> Result<WorkspaceView, AppError> {
    let user = ssr::require_user().map_err(ssr::fail)?;
    ssr::services().workspace(&user).await.map_err(ssr::fail)
}

/// The caller's own workspace: start, stop, restart, or reset (which needs `confirm`).
#[server(endpoint = "workspace-action")]
pub async fn workspace_action(action: String, confirm: Option<String>) -> Result<(), AppError> {
    use crate::model::WorkspaceAction;
    let user = ssr::require_user().map_err(ssr::fail)?;
    let action = WorkspaceAction::parse(&action)
        .ok_or_else(|| ssr::fail(AppError::Invalid(format!("unknown action {action:?}"))))?;
    if action == WorkspaceAction::Reset && confirm.as_deref() != Some("yes") {
        return Err(ssr::fail(AppError::Invalid("Tick the box to confirm the reset.".into())));
    }
    ssr::services().workspace_action(&user, &user.username, action).await.map_err(ssr::fail)
}

#[server(endpoint = "workspace-credentials")]
pub async fn get_workspace_credentials() -> Result<WorkspaceCredentials, AppError> {
    let user = ssr::require_user().map_err(ssr::fail)?;
    ssr::services().workspace_credentials(&user).await.map_err(ssr::fail)
}

#[server(endpoint = "workspace-regenerate")]
pub async fn regenerate_credential(which: String) -> Result<(), AppError> {
    let user = ssr::require_user().map_err(ssr::fail)?;
    ssr::services().regenerate_credential(&user, &which).await.map_err(ssr::fail)
}

#[server(endpoint = "admin-workspaces")]
pub async fn get_workspaces_overview() -> Result<WorkspacesOverview, AppError> {
    let admin = ssr::require_admin().map_err(ssr::fail)?;
    ssr::services().workspaces_overview(&admin).await.map_err(ssr::fail)
}

/// Admins start or stop anyone's workspace.
#[server(endpoint = "admin-workspace-action")]
pub async fn admin_workspace_action(username: String, action: String) -> Result<(), AppError> {
    use crate::model::WorkspaceAction;
    let admin = ssr::require_admin().map_err(ssr::fail)?;
    let action = WorkspaceAction::parse(&action)
        .ok_or_else(|| ssr::fail(AppError::Invalid(format!("unknown action {action:?}"))))?;
    ssr::services().workspace_action(&admin, &username, action).await.map_err(ssr::fail)
}

/// A workspace's usage now and over the last `hours` (1 when absent): the caller's own, or
/// anyone's for an admin. Read from Berth's samples, never from the engine.
#[server(endpoint = "usage")]
pub async fn get_usage(user: Option<String>, hours: Option<u32>) -> Result<crate::model::UsagePanel, AppError> {
    let me = ssr::require_user().map_err(ssr::fail)?;
    let owner = user.unwrap_or_else(|| me.username.clone());
    ssr::services().usage_panel(&me, &owner, hours.unwrap_or(1)).await.map_err(ssr::fail)
}

/// [`get_usage`] drawn as the dashboard shows it (figures and SVG charts, as HTML): drawn on
/// the server, so the browser's download carries no chart code.
#[server(endpoint = "usage-html")]
pub async fn get_usage_html(user: Option<String>, hours: Option<u32>) -> Result<String, AppError> {
    let me = ssr::require_user().map_err(ssr::fail)?;
    let owner = user.unwrap_or_else(|| me.username.clone());
    let panel = ssr::services().usage_panel(&me, &owner, hours.unwrap_or(1)).await.map_err(ssr::fail)?;
    Ok(crate::figures::figures_html(&panel))
}

/// [`get_gpu_board`] as the admin page shows it (HTML drawn on the server).
#[server(endpoint = "gpus-html")]
pub async fn get_gpu_board_html() -> Result<String, AppError> {
    let admin = ssr::require_admin().map_err(ssr::fail)?;
    let board = ssr::services().gpu_board(&admin).await.map_err(ssr::fail)?;
    Ok(crate::figures::gpu_board_html(&board))
}

/// The host's GPUs and whose processes are on them (admins).
#[server(endpoint = "gpus")]
pub async fn get_gpu_board() -> Result<crate::model::GpuBoard, AppError> {
    let admin = ssr::require_admin().map_err(ssr::fail)?;
    ssr::services().gpu_board(&admin).await.map_err(ssr::fail)
}

/// The last lines a workspace printed (matching `q`, when given), for the logs page's first
/// render; the page then follows `/logs/stream`.
#[server(endpoint = "workspace-log")]
pub async fn get_workspace_log(user: Option<String>, q: Option<String>) -> Result<Vec<String>, AppError> {
    let me = ssr::require_user().map_err(ssr::fail)?;
    let owner = user.unwrap_or_else(|| me.username.clone());
    ssr::services().log_tail(&me, &owner, q.as_deref().unwrap_or_default()).await.map_err(ssr::fail)
}

/// A page drawn on the server (`account`, `admin-accounts`, `audit`), with what the last form
/// post came to (kept in the session by the form's handler for a few seconds: the page may be
/// drawn more than once for one visit).
#[server(endpoint = "page-html")]
pub async fn get_page_html(page: String, query: String) -> Result<String, AppError> {
    use crate::services::SESSION_FORM_OUTCOME;
    let me = ssr::require_user().map_err(ssr::fail)?;
    let session = ssr::session().await?;
    let outcome = session
        .get::<(bool, String, i64)>(SESSION_FORM_OUTCOME)
        .await
        .ok()
        .flatten()
        .filter(|(_, _, at)| unix_now() - at <= SHARING_OUTCOME_SECONDS)
        .map(|(ok, message, _)| (ok, message));
    let id = session.id().map(|id| id.to_string());
    ssr::services().drawn_page(&me, &page, &query, id, outcome).await.map_err(ssr::fail)
}

/// The GPU sharing board and the viewer's idle state (JSON).
#[server(endpoint = "gpu-share")]
pub async fn get_gpu_share() -> Result<crate::model::GpuShareView, AppError> {
    let me = ssr::require_user().map_err(ssr::fail)?;
    ssr::services().gpu_share(&me).await.map_err(ssr::fail)
}

/// [`get_gpu_share`] drawn on the server: the board, the queue and the viewer's buttons on them
/// (the dashboard polls it).
#[server(endpoint = "gpu-share-html")]
pub async fn get_gpu_share_html() -> Result<String, AppError> {
    let me = ssr::require_user().map_err(ssr::fail)?;
    let view = ssr::services().gpu_share(&me).await.map_err(ssr::fail)?;
    Ok(crate::sharing_html::board_html(&view, false))
}

/// The request form and "I'm still here", drawn once (a poll would wipe what is being typed),
/// with what the last form post came to.
#[server(endpoint = "gpu-controls-html")]
pub async fn get_gpu_controls_html() -> Result<String, AppError> {
    let me = ssr::require_user().map_err(ssr::fail)?;
    let view = ssr::services().gpu_share(&me).await.map_err(ssr::fail)?;
    Ok(crate::sharing_html::outcome_html(take_sharing_outcome().await) + &crate::sharing_html::controls_html(&view))
}

/// Everything an admin runs of sharing, drawn on the server.
#[server(endpoint = "sharing-admin-html")]
pub async fn get_sharing_admin_html() -> Result<String, AppError> {
    let admin = ssr::require_admin().map_err(ssr::fail)?;
    let view = ssr::services().sharing_admin(&admin).await.map_err(ssr::fail)?;
    Ok(crate::sharing_html::outcome_html(take_sharing_outcome().await) + &crate::sharing_html::admin_html(&view))
}

/// What a sharing form post came to, kept in the session for the page it returns to (the
/// redirect's URL could be forged; the session cannot).
#[cfg(feature = "ssr")]
const SHARING_OUTCOME: &str = "sharing_outcome";

/// Shown for this long after the post: the page it returns to renders its parts more than
/// once, so the outcome is not taken out at the first reading.
#[cfg(feature = "ssr")]
const SHARING_OUTCOME_SECONDS: i64 = 15;

#[cfg(feature = "ssr")]
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

#[cfg(feature = "ssr")]
async fn take_sharing_outcome() -> Option<(bool, String)> {
    let session = ssr::session().await.ok()?;
    let (ok, message, at) = session.get::<(bool, String, i64)>(SHARING_OUTCOME).await.ok().flatten()?;
    (unix_now() - at <= SHARING_OUTCOME_SECONDS).then_some((ok, message))
}

#[cfg(feature = "ssr")]
async fn keep_sharing_outcome(ok: bool, message: String) {
    if let Ok(session) = ssr::session().await {
        let _ = session.insert(SHARING_OUTCOME, (ok, message, unix_now())).await;
    }
}

#[cfg(feature = "ssr")]
fn sharing_number<T: std::str::FromStr>(field: &str, value: Option<&str>) -> Result<Option<T>, AppError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| AppError::Invalid(format!("{field}: {v:?} is not a number"))),
    }
}

/// Hours as typed ("2", "0.5") to whole seconds.
#[cfg(feature = "ssr")]
fn sharing_hours(field: &str, value: Option<&str>) -> Result<Option<i64>, AppError> {
    match sharing_number::<f64>(field, value)? {
        Some(h) if h.is_finite() && (0.0..=24.0 * 365.0).contains(&h) => Ok(Some((h * 3600.0).round() as i64)),
        Some(_) => Err(AppError::Invalid(format!("{field}: hours between 0 and a year"))),
        None => Ok(None),
    }
}

#[cfg(feature = "ssr")]
async fn sharing_run(command: crate::model::SharingCommand) -> Result<String, AppError> {
    let me = ssr::require_user().map_err(ssr::fail)?;
    let result = ssr::services().sharing_command(&me, command).await;
    if ssr::is_form_post() {
        match &result {
            Ok(message) => keep_sharing_outcome(true, message.clone()).await,
            Err(e) => keep_sharing_outcome(false, e.to_string()).await,
        }
    }
    result.map_err(ssr::fail)
}

/// Asks for GPUs: `count` of any, or the one numbered `gpu`, for `hours`; `confirm` = "yes"
/// lets a leased-mode grant restart the workspace.
#[server(endpoint = "gpu-request")]
pub async fn gpu_request(count: Option<String>, gpu: Option<String>, hours: Option<String>, note: Option<String>, confirm: Option<String>) -> Result<String, AppError> {
    use crate::model::SharingCommand;
    let parsed = (|| {
        let gpu = sharing_number::<u32>("gpu", gpu.as_deref())?;
        let count = sharing_number::<u32>("count", count.as_deref())?.unwrap_or(1);
        let seconds = sharing_hours("hours", hours.as_deref())?.ok_or_else(|| AppError::Invalid("Say for how many hours.".into()))?;
        Ok(SharingCommand::Request { count, gpu, seconds, note: note.unwrap_or_default(), confirm: confirm.as_deref() == Some("yes") })
    })();
    match parsed {
        Ok(command) => sharing_run(command).await,
        Err(e) => Err(sharing_refused(e).await),
    }
}

/// A form that could not be read: told like a refusal.
#[cfg(feature = "ssr")]
async fn sharing_refused(error: AppError) -> AppError {
    if ssr::is_form_post() {
        keep_sharing_outcome(false, error.to_string()).await;
    }
    ssr::fail(error)
}

#[server(endpoint = "gpu-release")]
pub async fn gpu_release(holding: String) -> Result<String, AppError> {
    let holding = sharing_number::<i64>("holding", Some(&holding)).map_err(ssr::fail)?.unwrap_or_default();
    sharing_run(crate::model::SharingCommand::Release { holding }).await
}

#[server(endpoint = "gpu-extend")]
pub async fn gpu_extend(holding: String, hours: String) -> Result<String, AppError> {
    let holding = sharing_number::<i64>("holding", Some(&holding)).map_err(ssr::fail)?.unwrap_or_default();
    let seconds = sharing_hours("hours", Some(&hours)).map_err(ssr::fail)?.unwrap_or_default();
    sharing_run(crate::model::SharingCommand::Extend { holding, seconds }).await
}

#[server(endpoint = "gpu-cancel")]
pub async fn gpu_cancel(request: String) -> Result<String, AppError> {
    let request = sharing_number::<i64>("request", Some(&request)).map_err(ssr::fail)?.unwrap_or_default();
    sharing_run(crate::model::SharingCommand::Cancel { request }).await
}

/// Resets the viewer's idle timer and lifts a pending idle warning.
#[server(endpoint = "still-here")]
pub async fn still_here() -> Result<String, AppError> {
    sharing_run(crate::model::SharingCommand::StillHere).await
}

#[server(endpoint = "gpu-reorder")]
pub async fn gpu_reorder(request: String, direction: String) -> Result<String, AppError> {
    let request = sharing_number::<i64>("request", Some(&request)).map_err(ssr::fail)?.unwrap_or_default();
    sharing_run(crate::model::SharingCommand::Reorder { request, up: direction == "up" }).await
}

/// Per-user GPU limits (admins); an empty field keeps the site's default.
#[server(endpoint = "gpu-limits")]
pub async fn gpu_limits(username: String, max_gpus: Option<String>, max_hours: Option<String>, max_queued: Option<String>) -> Result<String, AppError> {
    let parsed = (|| {
        Ok(crate::model::SharingCommand::SetLimits {
            username: username.trim().to_string(),
            max_gpus: sharing_number("max_gpus", max_gpus.as_deref())?,
            max_lease_seconds: sharing_hours("max_hours", max_hours.as_deref())?,
            max_queued: sharing_number("max_queued", max_queued.as_deref())?,
        })
    })();
    match parsed {
        Ok(command) => sharing_run(command).await,
        Err(e) => Err(sharing_refused(e).await),
    }
}

/// Per-user idle policy (admins): stop after `stop_after_hours` idle (empty: the site's; 0:
/// never), or `exempt` = "yes".
#[server(endpoint = "idle-policy")]
pub async fn idle_policy(username: String, stop_after_hours: Option<String>, exempt: Option<String>) -> Result<String, AppError> {
    let stop_after_seconds = sharing_hours("stop_after_hours", stop_after_hours.as_deref()).map_err(ssr::fail)?;
    sharing_run(crate::model::SharingCommand::SetIdlePolicy { username: username.trim().to_string(), stop_after_seconds, exempt: exempt.as_deref() == Some("yes") }).await
}
