//! `server`'s implementation of the services the `app` layer calls.

use app::error::AppError;
use app::model::{AdminAction, CurrentUser, UserSummary};
use app::services::{LogInRequest, PortalServices, SignUpRequest};

use crate::accounts::{AccountError, Accounts};

pub struct Portal {
    pub accounts: Accounts,
}

/// Maps a domain error to what the browser may see; internal detail goes to the log only.
fn to_app_error(error: AccountError) -> AppError {
    match error {
        AccountError::InvalidUsername(m) => AppError::Invalid(m),
        AccountError::Password(crate::passwords::PasswordError::Hashing) => {
            tracing::error!("password hashing failed");
            AppError::Internal
        }
        e @ (AccountError::Password(_) | AccountError::InvalidEmail) => AppError::Invalid(e.to_string()),
        e @ AccountError::UsernameTaken => AppError::Conflict(e.to_string()),
        AccountError::NotFound(_) => AppError::Invalid("No such user.".into()),
        AccountError::BadCredentials => AppError::BadCredentials,
        AccountError::PendingApproval => AppError::PendingApproval,
        e @ (AccountError::Rejected | AccountError::Disabled | AccountError::NotAllowed(_)) => {
            AppError::Refused(e.to_string())
        }
        AccountError::TooManyAttempts(s) => AppError::TooManyAttempts(s),
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
        self.accounts.sign_up(&r.username, &r.email, &r.password, r.client).await.map(drop).map_err(to_app_error)
    }

    async fn log_in(&self, r: LogInRequest) -> Result<CurrentUser, AppError> {
        self.accounts.log_in(&r.username, &r.password, r.client).await.map(|u| u.current()).map_err(to_app_error)
    }

    async fn list_users(&self, _actor: &CurrentUser) -> Result<Vec<UserSummary>, AppError> {
        let users = self.accounts.list().await.map_err(to_app_error)?;
        Ok(users.iter().map(|u| u.summary()).collect())
    }

    async fn apply_admin_action(&self, actor: &CurrentUser, user_id: i64, action: AdminAction) -> Result<(), AppError> {
        self.accounts.apply(Some(actor), user_id, action).await.map(drop).map_err(to_app_error)
    }
}
