//! Accounts: sign-up, approval, login, admin actions. The only place that touches the
//! `users` table.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use app::model::{AccountStatus, AdminAction, CurrentUser, UserSummary};
use sqlx::Row as _;
use tracing::instrument;

use crate::db::{now, Db, DbKind, Row};
use crate::passwords::{self, HashingGate, PasswordError};
use crate::ratelimit::{address_key, AttemptLimiter, Quota, Refused};
use crate::hosts::HostRules;
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
    /// Free as a name, but one of its app hosts is another user's or the portal's.
    #[error("That username is not available.")]
    UsernameUnavailable,
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

/// How accounts are created and guarded; from the configuration.
pub struct AccountSettings {
    /// Failed logins per (username, client address) in `window`.
    pub attempts_per_window: u32,
    pub window: Duration,
    pub hashing_concurrency: usize,
    pub hosts: HostRules,
}

/// Failed logins (and sign-ups) one client address may make, in units of `attempts_per_window`.
const PER_ADDRESS_FACTOR: u32 = 3;
/// Failed logins for one username from every address together: high enough that one attacker
/// cannot lock the owner out, low enough that a spread-out guessing run still stops.
const PER_USERNAME_FACTOR: u32 = 10;

#[derive(Clone)]
pub struct Accounts {
    db: Db,
    limiter: Arc<AttemptLimiter>,
    attempts: u32,
    hashing: HashingGate,
    hosts: Arc<HostRules>,
    /// Verified against when the user is unknown, so both cases cost one argon2 run.
    dummy_hash: Arc<String>,
    sessions: Arc<crate::sessions::SessionCache>,
}

impl Accounts {
    pub fn new(db: Db, settings: AccountSettings, sessions: Arc<crate::sessions::SessionCache>) -> Accounts {
        Accounts {
            db,
            limiter: Arc::new(AttemptLimiter::new(settings.window)),
            attempts: settings.attempts_per_window,
            hashing: HashingGate::new(settings.hashing_concurrency),
            hosts: Arc::new(settings.hosts),
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
            Some(password) => Some(self.hashing.hash(password).await?),
            None => None,
        };
        let now = now();
        // An explicit transaction: on SQLite, an autocommitted INSERT … RETURNING hands back its
        // row before the commit, and a failed commit (a full disk) would go unreported.
        let mut tx = self.db.pool.begin().await?;
        // The host check below reads every username: no other account may be created between
        // that read and the commit. SQLite's INSERT takes the database's write lock for that;
        // PostgreSQL needs the table locked against concurrent inserts.
        if self.db.kind == DbKind::Postgres {
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
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
        let others: Vec<String> = sqlx::query("SELECT username FROM users WHERE id <> $1")
            .bind(user.id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("username"))
            .collect::<Result<_, _>>()?;
        if let Some(host) = self.hosts.clash(username.as_str(), others.iter().map(String::as_str)) {
            tracing::info!(%host, "username refused: its app host is taken or reserved");
            return Err(AccountError::UsernameUnavailable);
        }
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
        let quota = Quota::new("address", format!("signup:{}", address_key(client)), self.attempts.saturating_mul(PER_ADDRESS_FACTOR));
        self.limiter.reserve(&[quota]).map_err(|r| throttled("sign-up", r))?.spend();
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
    ///
    /// The attempt is counted before argon2 runs, so concurrent guesses cannot slip past the
    /// limit together; it is given back when the password was right or was never checked.
    /// Failures count per (username, address) — someone guessing at a name from elsewhere
    /// cannot lock its owner out — per address across names, and per username across every
    /// address with a ceiling ten times higher.
    #[instrument(skip_all, fields(%client))]
    pub async fn log_in(&self, username: &str, password: &str, client: IpAddr) -> Result<User, AccountError> {
        let name = Username::parse(username).ok();
        let address = address_key(client);
        let per_pair = name.as_ref().map(|n| format!("login:{n}@{address}"));
        let mut quotas = vec![Quota::new("address", format!("login:{address}"), self.attempts.saturating_mul(PER_ADDRESS_FACTOR))];
        if let (Some(name), Some(pair)) = (&name, &per_pair) {
            quotas.push(Quota::new("username-at-address", pair.clone(), self.attempts));
            quotas.push(Quota::new("username", format!("user:{name}"), self.attempts.saturating_mul(PER_USERNAME_FACTOR)));
        }
        let reservation = self.limiter.reserve(&quotas).map_err(|r| throttled("login", r))?;

        let found = match &name {
            Some(name) => sqlx::query(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1"))
                .bind(name.as_str())
                .fetch_optional(&self.db.pool)
                .await?
                .map(|row| Ok::<_, sqlx::Error>((User::from_row(&row)?, row.try_get::<Option<String>, _>("password_hash")?)))
                .transpose()?,
            None => None,
        };
        let (user, hash) = match found {
            Some((user, Some(hash))) => (Some(user), hash),
            Some((_, None)) | None => (None, self.dummy_hash.as_ref().clone()),
        };
        let matches = self.hashing.verify(password, &hash).await?;
        let user = match (user, matches) {
            (Some(user), true) => user,
            _ => {
                reservation.spend();
                tracing::info!("login refused: bad credentials");
                return Err(AccountError::BadCredentials);
            }
        };
        drop(reservation);
        if let Some(pair) = &per_pair {
            self.limiter.clear(pair);
        }
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
        let removes_an_admin = matches!(action, AdminAction::RevokeAdmin | AdminAction::Disable | AdminAction::Reject) && user.is_admin;
        if removes_an_admin && user.status == AccountStatus::Approved && self.other_active_admins(user.id).await? == 0 {
            return Err(AccountError::NotAllowed("Berth needs at least one administrator: make someone else admin first."));
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

impl Accounts {
    async fn other_active_admins(&self, except: i64) -> Result<i64, AccountError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE is_admin = 1 AND status = 'approved' AND id <> $1")
            .bind(except)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// True when the account can log in with a password (single sign-on accounts have none).
    pub async fn has_password(&self, user_id: i64) -> Result<bool, AccountError> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1").bind(user_id).fetch_optional(&self.db.pool).await?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>("password_hash")).transpose()?.flatten().is_some())
    }

    /// The single sign-on provider (issuer) an account signs in with, if any.
    pub async fn sso_issuer(&self, user_id: i64) -> Result<Option<String>, AccountError> {
        let row = sqlx::query("SELECT issuer FROM oidc_identities WHERE user_id = $1 ORDER BY last_login_at DESC LIMIT 1")
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.map(|r| r.try_get("issuer")).transpose()?)
    }

    /// The user changes their own password: the current one must be right (counted like a
    /// login attempt). Every other session of the account ends; `keep` (the stored id of the
    /// session asking) stays.
    #[instrument(skip_all, fields(user_id = user_id))]
    pub async fn change_password(&self, user_id: i64, current: &str, new: &str, keep: Option<&str>, client: IpAddr) -> Result<u64, AccountError> {
        let quota = Quota::new("username-at-address", format!("passwd:{user_id}@{}", address_key(client)), self.attempts);
        let reservation = self.limiter.reserve(&[quota]).map_err(|r| throttled("password change", r))?;
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1").bind(user_id).fetch_optional(&self.db.pool).await?;
        let Some(hash) = row.map(|r| r.try_get::<Option<String>, _>("password_hash")).transpose()?.flatten() else {
            return Err(AccountError::NotAllowed("This account signs in with single sign-on and has no Berth password."));
        };
        if !self.hashing.verify(current, &hash).await? {
            reservation.spend();
            return Err(AccountError::NotAllowed("Your current password is not right."));
        }
        drop(reservation);
        if current == new {
            return Err(AccountError::NotAllowed("The new password is the same as the current one."));
        }
        let hash = self.hashing.hash(new).await?;
        self.store_password(user_id, &hash, keep).await
    }

    /// An admin sets (or generates, when `new` is None) a user's password; every session of
    /// the user ends. Returns the password when Berth generated it, to be shown once.
    #[instrument(skip_all, fields(user_id = target))]
    pub async fn reset_password(&self, target: i64, new: Option<&str>) -> Result<Option<String>, AccountError> {
        self.find_by_id(target).await?.ok_or_else(|| AccountError::NotFound(target.to_string()))?;
        let generated = new.is_none().then(|| hex::encode(rand::random::<[u8; 12]>()));
        let password = new.or(generated.as_deref()).expect("one of the two");
        let hash = self.hashing.hash(password).await?;
        self.store_password(target, &hash, None).await?;
        Ok(generated)
    }

    async fn store_password(&self, user_id: i64, hash: &str, keep: Option<&str>) -> Result<u64, AccountError> {
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3").bind(hash).bind(now()).bind(user_id).execute(&self.db.pool).await?;
        Ok(crate::sessions::end_sessions_of_except(&self.db, &self.sessions, user_id, keep).await?)
    }

    /// The account, when `actor` may delete it: not oneself, not the last administrator.
    pub async fn check_deletable(&self, actor: Option<&CurrentUser>, target: i64) -> Result<User, AccountError> {
        let user = self.find_by_id(target).await?.ok_or_else(|| AccountError::NotFound(target.to_string()))?;
        if actor.is_some_and(|a| a.id == user.id) {
            return Err(AccountError::NotAllowed("Administrators cannot delete their own account."));
        }
        if user.is_admin && self.other_active_admins(user.id).await? == 0 {
            return Err(AccountError::NotAllowed("Berth needs at least one administrator: this is the last one."));
        }
        Ok(user)
    }

    /// Deletes the account and everything keyed to it in the database (sessions, keys, tokens,
    /// the workspace record); the caller removes the container and, if asked, the files.
    /// An admin cannot delete themselves, nor the last administrator.
    #[instrument(skip_all, fields(user_id = target))]
    pub async fn delete(&self, actor: Option<&CurrentUser>, target: i64) -> Result<User, AccountError> {
        let user = self.check_deletable(actor, target).await?;
        crate::sessions::end_sessions_of(&self.db, &self.sessions, target).await?;
        sqlx::query("DELETE FROM users WHERE id = $1").bind(target).execute(&self.db.pool).await?;
        tracing::info!(actor = actor.map(|a| a.id), "account deleted");
        Ok(user)
    }
}

/// The refusal, logged with the limit that fired (its kind, never whose it is).
fn throttled(what: &str, refused: Refused) -> AccountError {
    let seconds = refused.retry_after.0;
    tracing::info!(limit = %refused.quota, retry_after = seconds, "{what} refused: too many attempts");
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
