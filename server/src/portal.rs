//! `server`'s implementation of the services the `app` layer calls.

use app::error::AppError;
use std::sync::Arc;

use app::model::{
    AdminAction, CurrentUser, UserSummary, WorkspaceAction, WorkspaceCredentials, WorkspaceView, WorkspacesOverview,
};
use app::services::{LogInRequest, PortalServices, SignUpRequest};

use crate::accounts::{AccountError, Accounts};
use crate::workspace::{Actor, Credential, Owner, RuntimeError, WorkspaceError, Workspaces};

pub struct Portal {
    pub accounts: Accounts,
    pub workspaces: Arc<Workspaces>,
    pub gateway: Arc<crate::routes::verify::Gateway>,
    pub sso: Arc<crate::sso::Sso>,
    pub password_login: bool,
}

fn password_login_off() -> AppError {
    AppError::Refused("Password login is turned off here; use single sign-on.".into())
}

fn workspace_error(error: WorkspaceError) -> AppError {
    match error {
        WorkspaceError::Runtime(RuntimeError::Unavailable(why)) => {
            tracing::warn!(why, "Docker engine unavailable");
            AppError::Unavailable("The Docker engine is not reachable right now; Berth reconnects by itself when it is back.".into())
        }
        e @ WorkspaceError::Runtime(_) => AppError::Unavailable(e.to_string()),
        WorkspaceError::Forbidden(why) => {
            tracing::warn!(why, "workspace operation refused to this actor");
            AppError::Forbidden
        }
        e @ WorkspaceError::Lock(_) => AppError::Conflict(e.to_string()),
        // The detail (engine text, the script's output) went to the log where it arose.
        WorkspaceError::CredentialNotApplied { credential, .. } => AppError::Unavailable(format!(
            "Your new {credential} is saved and takes effect when the workspace next starts, but it could not be \
             applied to the running workspace now."
        )),
        e @ WorkspaceError::NotApproved(_) => AppError::Refused(e.to_string()),
        e @ WorkspaceError::NoGpus { .. } => AppError::Unavailable(e.to_string()),
        e @ WorkspaceError::StorageFull { .. } => AppError::Unavailable(format!("Sorry: {e}. Your files are untouched.")),
        e @ (WorkspaceError::Storage { .. } | WorkspaceError::NoFreeSlot(_) | WorkspaceError::Spec(_)) => {
            tracing::error!(error = %e, "workspace storage or allocation problem");
            AppError::Unavailable(format!("The server cannot set up the workspace: {e}. An administrator has to look at it."))
        }
        WorkspaceError::Database(e) if crate::db::is_storage_full(&e) => {
            tracing::error!(error = %e, "database storage is full");
            AppError::Unavailable(crate::db::STORAGE_FULL_MESSAGE.into())
        }
        e @ (WorkspaceError::Secrets | WorkspaceError::Database(_) | WorkspaceError::Routes(_)) => {
            tracing::error!(error = %e, "workspace service error");
            AppError::Internal
        }
    }
}

/// Maps a domain error to what the browser may see; internal detail goes to the log only.
fn to_app_error(error: AccountError) -> AppError {
    match error {
        AccountError::InvalidUsername(m) => AppError::Invalid(m),
        AccountError::Password(crate::passwords::PasswordError::Busy) => {
            tracing::warn!("every password hashing slot is busy; request refused");
            AppError::Busy(crate::passwords::BUSY_RETRY_SECONDS)
        }
        AccountError::Password(crate::passwords::PasswordError::Hashing) => {
            tracing::error!("password hashing failed");
            AppError::Internal
        }
        e @ (AccountError::Password(_) | AccountError::InvalidEmail) => AppError::Invalid(e.to_string()),
        e @ (AccountError::UsernameTaken | AccountError::UsernameUnavailable) => AppError::Conflict(e.to_string()),
        AccountError::NotFound(_) => AppError::Invalid("No such user.".into()),
        AccountError::BadCredentials => AppError::BadCredentials,
        AccountError::PendingApproval => AppError::PendingApproval,
        e @ (AccountError::Rejected | AccountError::Disabled | AccountError::NotAllowed(_)) => {
            AppError::Refused(e.to_string())
        }
        AccountError::TooManyAttempts(s) => AppError::TooManyAttempts(s),
        AccountError::Database(e) if crate::db::is_storage_full(&e) => {
            tracing::error!(error = %e, "database storage is full");
            AppError::Unavailable(crate::db::STORAGE_FULL_MESSAGE.into())
        }
        AccountError::Database(e) => {
            tracing::error!(error = %e, "database error");
            AppError::Unavailable("The database is not answering; try again shortly.".into())
        }
        AccountError::Internal(e) => {
            tracing::error!(error = %e, "internal error");
            AppError::Internal
        }
    }
}

#[async_trait::async_trait]
impl PortalServices for Portal {
    async fn sign_up(&self, r: SignUpRequest) -> Result<(), AppError> {
        if !self.password_login {
            return Err(password_login_off());
        }
        self.accounts.sign_up(&r.username, &r.email, &r.password, r.client).await.map(drop).map_err(to_app_error)
    }

    async fn log_in(&self, r: LogInRequest) -> Result<CurrentUser, AppError> {
        if !self.password_login {
            return Err(password_login_off());
        }
        self.accounts.log_in(&r.username, &r.password, r.client).await.map(|u| u.current()).map_err(to_app_error)
    }

    async fn list_users(&self, actor: &CurrentUser) -> Result<Vec<UserSummary>, AppError> {
        if !actor.is_admin {
            return Err(AppError::Forbidden);
        }
        let users = self.accounts.list().await.map_err(to_app_error)?;
        Ok(users.iter().map(|u| u.summary()).collect())
    }

    async fn apply_admin_action(&self, actor: &CurrentUser, user_id: i64, action: AdminAction) -> Result<(), AppError> {
        let user = self.accounts.apply(Some(actor), user_id, action).await.map_err(to_app_error)?;
        if matches!(action, AdminAction::Disable | AdminAction::Reject) {
            self.workspaces.disable_user(&Actor::from(actor), &Owner::from(&user)).await.map_err(workspace_error)?;
        }
        Ok(())
    }

    fn login_options(&self) -> app::model::LoginOptions {
        app::model::LoginOptions {
            password: self.password_login,
            providers: self.sso.providers.iter().map(|p| (p.config.id.clone(), p.config.name.clone())).collect(),
        }
    }

    async fn sso_logout_url(&self, provider: &str, id_token: &str) -> Option<String> {
        self.sso.logout_url(provider, id_token).await
    }

    fn login_return(&self, url: &str) -> Option<String> {
        self.gateway.normalized_return(url)
    }

    async fn workspace(&self, user: &CurrentUser) -> Result<WorkspaceView, AppError> {
        self.workspaces.view(&Actor::from(user), &Owner::from(user)).await.map_err(workspace_error)
    }

    async fn workspace_action(&self, actor: &CurrentUser, owner: &str, action: WorkspaceAction) -> Result<(), AppError> {
        let owner = if owner == actor.username {
            Owner::from(actor)
        } else {
            Owner::from(&self.accounts.find_by_name(owner).await.map_err(to_app_error)?)
        };
        self.workspaces.apply_in_background(&Actor::from(actor), &owner, action).map_err(workspace_error)
    }

    async fn workspace_credentials(&self, user: &CurrentUser) -> Result<WorkspaceCredentials, AppError> {
        match self.workspaces.credentials(&Actor::from(user), &Owner::from(user)).await.map_err(workspace_error)? {
            Some(secrets) => Ok(WorkspaceCredentials { ssh_password: secrets.ssh_password, vnc_password: secrets.vnc_password }),
            None => Err(AppError::Invalid("Start your workspace once to get its passwords.".into())),
        }
    }

    async fn regenerate_credential(&self, user: &CurrentUser, which: &str) -> Result<(), AppError> {
        let which = match which {
            "ssh" => Credential::SshPassword,
            "vnc" => Credential::VncPassword,
            _ => return Err(AppError::Invalid("unknown credential".into())),
        };
        self.workspaces.regenerate_credential(&Actor::from(user), &Owner::from(user), which).await.map(|_| ()).map_err(workspace_error)
    }

    async fn workspaces_overview(&self, admin: &CurrentUser) -> Result<WorkspacesOverview, AppError> {
        self.workspaces.overview(&Actor::from(admin), true).await.map_err(workspace_error)
    }
}
