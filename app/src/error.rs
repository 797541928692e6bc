use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// The one error type of the `app` layer: what a server function can tell the browser.
/// Messages are written for users; internal detail stays in the server log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please log in.")]
    Unauthenticated,
    #[error("You are not allowed to do that.")]
    Forbidden,
    #[error("{0}")]
    Invalid(String),
    /// The same words for an unknown user and a wrong password.
    #[error("Wrong username or password.")]
    BadCredentials,
    #[error("Your account is waiting for an administrator's approval.")]
    PendingApproval,
    /// The account exists and the password matched, but it may not log in (rejected, disabled).
    #[error("{0}")]
    Refused(String),
    #[error("Too many attempts. Try again in {0} seconds.")]
    TooManyAttempts(u64),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// Too much work in flight (password hashing); nothing was done.
    #[error("Berth is busy right now. Try again in {0} seconds.")]
    Busy(u64),
    #[error("Something went wrong on the server; the administrator can find details in its log.")]
    Internal,
    #[error("The request failed: {0}")]
    Transport(String),
}

impl AppError {
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::Unauthenticated | AppError::BadCredentials => 401,
            AppError::Forbidden | AppError::PendingApproval | AppError::Refused(_) => 403,
            AppError::Invalid(_) => 422,
            AppError::TooManyAttempts(_) => 429,
            AppError::Conflict(_) => 409,
            AppError::Unavailable(_) | AppError::Busy(_) => 503,
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }

    /// Seconds a client should wait before trying again, for a `Retry-After` header.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::TooManyAttempts(s) | AppError::Busy(s) => Some(*s),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}
