//! Accounts: sign-up, approval, login, admin actions. The only place that touches the
//! `users` table.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use app::model::{AccountStatus, AdminAction, CurrentUser, UserSummary};
use sqlx::Row as _;
use tracing::instrument;

use crate::db::{now, Db, Row};
use crate::passwords::{self, PasswordError};
use crate::ratelimit::{AttemptLimiter, RetryAfter};
use crate::username::Username;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    InvalidUsername(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("That e-mail address does not look valid.")]
    InvalidEmail,
    #[error("That username is taken.")]
    UsernameTaken,
    #[error("No such user: {0}")]
    NotFound(String),
    #[error("Wrong username or password.")]
    BadCredentials,
    #[error("This account is waiting for approval.")]
    PendingApproval,
    #[error("This account was not approved.")]
    Rejected,
    #[error("This account is disabled.")]
    Disabled,
    #[error("Too many attempts; try again in {0} seconds.")]
    TooManyAttempts(u64),
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A user as stored, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub status: AccountStatus,
    pub is_admin: bool,
    pub created_at: i64,
}

impl User {
    fn from_row(row: &Row) -> Result<User, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            status: AccountStatus::parse(&status)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            created_at: row.try_get("created_at")?,
        })
    }

    pub fn current(&self) -> CurrentUser {
        CurrentUser { id: self.id, username: self.username.clone(), is_admin: self.is_admin }
    }

    pub fn summary(&self) -> UserSummary {
        UserSummary {
            id: self.id,
            username: self.username.clone(),
            email: self.email.clone(),
            status: self.status,
            is_admin: self.is_admin,
            created_at: self.created_at,
        }
    }
}

const USER_COLUMNS: &str = "id, username, email, status, is_admin, created_at";

/// Who a new account is at an OpenID provider.
pub struct SsoIdentity<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub password: Option<&'a str>,
    pub status: AccountStatus,
    pub is_admin: bool,
}

#[derive(Clone)]
pub struct Accounts {
    db: Db,
    per_username: Arc<AttemptLimiter>,
    per_client: Arc<AttemptLimiter>,
    /// Verified against when the user is unknown, so both cases cost one argon2 run.
    dummy_hash: Arc<String>,
    sessions: Arc<crate::sessions::SessionCache>,
}

impl Accounts {
    pub fn new(db: Db, attempts_per_window: u32, window: Duration, sessions: Arc<crate::sessions::SessionCache>) -> Accounts {
        Accounts {
            db,
            per_username: Arc::new(AttemptLimiter::new(attempts_per_window, window)),
            per_client: Arc::new(AttemptLimiter::new(attempts_per_window.saturating_mul(3), window)),
            dummy_hash: Arc::new(passwords::hash("berth-dummy-password-for-timing").expect("hashing works")),
            sessions,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn session_cache(&self) -> &Arc<crate::sessions::SessionCache> {
        &self.sessions
    }

    pub async fn create(&self, new: NewUser<'_>) -> Result<User, AccountError> {
        self.create_linked(new, None).await
    }

    /// A new account and, in the same transaction, the single sign-on identity it belongs to:
    /// one is never stored without the other.
    #[instrument(skip_all, fields(username = %new.username))]
    pub async fn create_linked(&self, new: NewUser<'_>, identity: Option<SsoIdentity<'_>>) -> Result<User, AccountError> {
        let username = Username::parse(new.username).map_err(|e| AccountError::InvalidUsername(e.to_string()))?;
        let email = match new.email.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) if is_plausible_email(e) => Some(e.to_string()),
            Some(_) => return Err(AccountError::InvalidEmail),
            None => None,
        };
        let hash = match new.password {
            Some(password) => {
                passwords::check_policy(password)?;
                let password = password.to_string();
                Some(
                    tokio::task::spawn_blocking(move || passwords::hash(&password))
                        .await
                        .map_err(|e| AccountError::Internal(e.to_string()))??,
                )
            }
            None => None,
        };
        let now = now();
        // An explicit transaction: on SQLite, an autocommitted INSERT … RETURNING hands back its
        // row before the commit, and a failed commit (a full disk) would go unreported.
        let mut tx = self.db.pool.begin().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO users (username, email, password_hash, status, is_admin, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (username) DO NOTHING RETURNING {USER_COLUMNS}"
        ))
        .bind(username.as_str())
        .bind(email)
        .bind(hash)
        .bind(new.status.as_str())
        .bind(new.is_admin as i64)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Err(AccountError::UsernameTaken) };
        let user = User::from_row(&row)?;
        if let Some(identity) = identity {
            sqlx::query(
                "INSERT INTO oidc_identities (issuer, subject, user_id, email, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(identity.issuer)
            .bind(identity.subject)
            .bind(user.id)
            .bind(identity.email)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::info!(user_id = user.id, status = user.status.as_str(), "account created");
        Ok(user)
    }

    /// Self-service sign-up: a pending account, limited per client address.
    #[instrument(skip_all, fields(%client))]
    pub async fn sign_up(&self, username: &str, email: &str, password: &str, client: IpAddr) -> Result<User, AccountError> {
        let client_key = format!("signup:{client}");
        self.per_client.check(&client_key).map_err(throttled)?;
        self.per_client.record(&client_key);
        if email.trim().is_empty() {
            return Err(AccountError::InvalidEmail);
        }
        self.create(NewUser {
            username,
            email: Some(email),
            password: Some(password),
            status: AccountStatus::Pending,
            is_admin: false,
        })
        .await
    }

    /// Checks a password login. Unknown users and wrong passwords take the same time and
    /// give the same error; only a caller who knows the password learns the account's state.
    #[instrument(skip_all, fields(%client))]
    pub async fn log_in(&self, username: &str, password: &str, client: IpAddr) -> Result<User, AccountError> {
        let user_key = format!("user:{}", username.to_ascii_lowercase());
        let client_key = format!("login:{client}");
        self.per_client.check(&client_key).map_err(throttled)?;
        self.per_username.check(&user_key).map_err(throttled)?;

        let found = match Username::parse(username) {
            Ok(name) => sqlx::query(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1"))
                .bind(name.as_str())
                .fetch_optional(&self.db.pool)
                .await?
                .map(|row| Ok::<_, sqlx::Error>((User::from_row(&row)?, row.try_get::<Option<String>, _>("password_hash")?)))
                .transpose()?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((user, Some(hash))) => (Some(user), hash),
            Some((_, None)) | None => (None, self.dummy_hash.as_ref().clone()),
        };
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || passwords::verify(&password, &hash))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))?;
        let user = match (user, matches) {
            (Some(user), true) => user,
            _ => {
                self.per_client.record(&client_key);
                self.per_username.record(&user_key);
                tracing::info!("login refused: bad credentials");
                return Err(AccountError::BadCredentials);
            }
        };
        self.per_username.clear(&user_key);
        match user.status {
            AccountStatus::Approved => {
                tracing::info!(user_id = user.id, "login");
                Ok(user)
            }
            AccountStatus::Pending => Err(AccountError::PendingApproval),
            AccountStatus::Rejected => Err(AccountError::Rejected),
            AccountStatus::Disabled => Err(AccountError::Disabled),
        }
    }

    pub async fn find_by_id(&self, id: i64) -> Result<Option<User>, AccountError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.as_ref().map(User::from_row).transpose()?)
    }

    pub async fn find_by_name(&self, username: &str) -> Result<User, AccountError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.db.pool)
            .await?;
        match row {
            Some(row) => Ok(User::from_row(&row)?),
            None => Err(AccountError::NotFound(username.to_string())),
        }
    }

    pub async fn list(&self) -> Result<Vec<User>, AccountError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY CASE status WHEN 'pending' THEN 0 ELSE 1 END, username"
        ))
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows.iter().map(User::from_row).collect::<Result<_, _>>()?)
    }

    /// Applies an admin action. Disabling or rejecting ends the user's live sessions.
    #[instrument(skip_all, fields(user_id = target, action = action.as_str()))]
    pub async fn apply(&self, actor: Option<&CurrentUser>, target: i64, action: AdminAction) -> Result<User, AccountError> {
        let user = self.find_by_id(target).await?.ok_or_else(|| AccountError::NotFound(target.to_string()))?;
        let is_self = actor.is_some_and(|a| a.id == user.id);
        if is_self && matches!(action, AdminAction::Disable | AdminAction::Reject | AdminAction::RevokeAdmin) {
            return Err(AccountError::NotAllowed("Administrators cannot lock themselves out."));
        }
        let (column, value): (&str, String) = match action {
            AdminAction::Approve | AdminAction::Enable => ("status", "approved".into()),
            AdminAction::Reject => ("status", "rejected".into()),
            AdminAction::Disable => ("status", "disabled".into()),
            AdminAction::GrantAdmin => ("is_admin", "1".into()),
            AdminAction::RevokeAdmin => ("is_admin", "0".into()),
        };
        let now = now();
        if column == "status" {
            sqlx::query("UPDATE users SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(value)
                .bind(now)
                .bind(target)
                .execute(&self.db.pool)
                .await?;
        } else {
            sqlx::query("UPDATE users SET is_admin = $1, updated_at = $2 WHERE id = $3")
                .bind(value.parse::<i64>().unwrap_or_default())
                .bind(now)
                .bind(target)
                .execute(&self.db.pool)
                .await?;
        }
        if matches!(action, AdminAction::Disable | AdminAction::Reject) {
            let ended = crate::sessions::end_sessions_of(&self.db, &self.sessions, target).await?;
            tracing::info!(ended, "sessions ended");
        }
        tracing::info!(actor = actor.map(|a| a.id), "admin action applied");
        self.find_by_id(target).await?.ok_or_else(|| AccountError::NotFound(target.to_string()))
    }
}

fn throttled(RetryAfter(seconds): RetryAfter) -> AccountError {
    AccountError::TooManyAttempts(seconds)
}

fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::is_plausible_email;

    #[test]
    fn email_plausibility() {
        assert!(is_plausible_email("alice@lab.example.org"));
        assert!(!is_plausible_email("alice"));
        assert!(!is_plausible_email("@x.org"));
        assert!(!is_plausible_email("a@b"));
        assert!(!is_plausible_email("a b@c.org"));
    }
}
