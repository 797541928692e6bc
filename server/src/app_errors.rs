//! What the browser and API clients may see of each layer's errors: the domain errors mapped
//! to `AppError`, the detail logged here where it is dropped. Shared by the portal's services,
//! the account pages and the REST API.

use app::error::AppError;

use crate::accounts::AccountError;
use crate::workspace::{RuntimeError, WorkspaceError};

pub fn workspace_error(error: WorkspaceError) -> AppError {
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
        e @ (WorkspaceError::Lock(_) | WorkspaceError::MustBeStopped { .. }) => AppError::Conflict(e.to_string()),
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
pub fn to_app_error(error: AccountError) -> AppError {
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

pub fn sharing_error(error: crate::sharing::SharingError) -> AppError {
    use crate::sharing::SharingError;
    match error {
        e @ (SharingError::Refused(_) | SharingError::Invalid(_)) => AppError::Invalid(e.to_string()),
        SharingError::Forbidden(why) => {
            tracing::warn!(why, "sharing operation refused to this actor");
            AppError::Forbidden
        }
        e @ SharingError::NotFound(_) => AppError::Invalid(format!("{e} (it may have just ended)")),
        SharingError::Workspace(e) => workspace_error(e),
        SharingError::Database(e) => {
            tracing::error!(error = %e, "GPU sharing: database error");
            if crate::db::is_storage_full(&e) {
                AppError::Unavailable(crate::db::STORAGE_FULL_MESSAGE.into())
            } else {
                AppError::Internal
            }
        }
    }
}
