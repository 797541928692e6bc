//! Personal API tokens: `berth_` and 64 hex digits, shown once, kept only as their SHA-256.
//! A token carries scopes, an expiry and its owner's rights at the time of each use (an owner
//! who loses admin loses `admin` on every token; a disabled owner's tokens stop working).

use serde::Serialize;
use sqlx::Row as _;

use crate::db::{now, Db};

pub const TOKEN_PREFIX: &str = "berth_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub enum Scope {
    /// Read one's own workspace, account and keys.
    #[serde(rename = "workspace:read")]
    WorkspaceRead,
    /// Start, stop, restart one's own workspace; manage one's keys.
    #[serde(rename = "workspace:write")]
    WorkspaceWrite,
    /// GPU sharing on one's own behalf.
    #[serde(rename = "gpu")]
    Gpu,
    /// Everything an administrator may do (only an admin can create such a token).
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::WorkspaceRead, Scope::WorkspaceWrite, Scope::Gpu, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::WorkspaceRead => "workspace:read",
            Scope::WorkspaceWrite => "workspace:write",
            Scope::Gpu => "gpu",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("Only administrators can give a token the admin scope.")]
    AdminScope,
    #[error("No such token.")]
    NotFound,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A token as its owner and admins see it (never the secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Who a presented token speaks for, checked against the account as it is now.
#[derive(Debug, Clone)]
pub struct TokenIdentity {
    pub token_id: i64,
    pub token_name: String,
    pub user: app::model::CurrentUser,
    pub scopes: Vec<Scope>,
    /// True on the first use of the day (the audit log records that one).
    pub first_use_today: bool,
}

/// Why a presented token does not open anything; all of them are a 401 with the same words.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    Malformed,
    Unknown,
    /// A real token past its end: whose and which, and whether this is the first such try
    /// today (the audit log records that one).
    Expired(Spent),
    Revoked(Spent),
    AccountInactive,
}

/// A token that was real once.
#[derive(Debug, PartialEq, Eq)]
pub struct Spent {
    pub owner: String,
    pub name: String,
    pub first_today: bool,
}

pub struct NewToken<'a> {
    pub name: &'a str,
    pub scopes: &'a [Scope],
    pub lifetime_seconds: i64,
}

#[derive(Clone)]
pub struct ApiTokens {
    db: Db,
    /// (token id, day) of refused tries already noted, so a script retrying a dead token all
    /// day adds one audit entry, not thousands.
    refused_noted: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(i64, i64)>>>,
    /// The longest lifetime a token may have (config `api.max_token_days`).
    max_lifetime_seconds: i64,
}

fn hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}

const COLUMNS: &str = "t.id, t.user_id, u.username, t.name, t.scopes, t.created_at, t.expires_at, t.last_used_at, t.revoked_at";

fn info(row: &crate::db::Row) -> Result<TokenInfo, sqlx::Error> {
    let scopes: String = row.try_get("scopes")?;
    Ok(TokenInfo {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl ApiTokens {
    pub fn new(db: Db, max_lifetime_seconds: i64) -> ApiTokens {
        ApiTokens { db, max_lifetime_seconds, refused_noted: Default::default() }
    }

    pub fn max_lifetime_seconds(&self) -> i64 {
        self.max_lifetime_seconds
    }

    /// A new token for `owner`; the secret is returned once and never stored.
    pub async fn create(&self, owner: &app::model::CurrentUser, new: NewToken<'_>) -> Result<(String, TokenInfo), TokenError> {
        let name = crate::sharing::clean_note(new.name);
        if name.is_empty() || name.chars().count() > 64 {
            return Err(TokenError::Invalid("Give the token a name of 1 to 64 characters.".into()));
        }
        if new.scopes.is_empty() {
            return Err(TokenError::Invalid("Choose at least one scope.".into()));
        }
        if new.scopes.contains(&Scope::Admin) && !owner.is_admin {
            return Err(TokenError::AdminScope);
        }
        if new.lifetime_seconds <= 0 || new.lifetime_seconds > self.max_lifetime_seconds {
            return Err(TokenError::Invalid(format!(
                "A token lasts between a day and {} days here.",
                self.max_lifetime_seconds / 86_400
            )));
        }
        let mut scopes = new.scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        let now = now();
        let id: i64 = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(owner.id)
        .bind(&name)
        .bind(hash(&secret))
        .bind(scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        .bind(now)
        .bind(now + new.lifetime_seconds)
        .fetch_one(&self.db.pool)
        .await?
        .try_get("id")?;
        let info = self.find(id).await?.ok_or(TokenError::NotFound)?;
        Ok((secret, info))
    }

    async fn find(&self, id: i64) -> Result<Option<TokenInfo>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(info).transpose()
    }

    /// `owner`'s tokens, or everyone's when `owner` is None (admins), newest first.
    pub async fn list(&self, owner: Option<i64>) -> Result<Vec<TokenInfo>, sqlx::Error> {
        let rows = match owner {
            Some(id) => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.user_id = $1 ORDER BY t.id DESC"))
                    .bind(id)
                    .fetch_all(&self.db.pool)
                    .await?
            }
            None => sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id DESC"))
                .fetch_all(&self.db.pool)
                .await?,
        };
        rows.iter().map(info).collect()
    }

    /// Revokes token `id`: the owner's own, or anyone's for an admin. Revoking twice is fine.
    pub async fn revoke(&self, actor: &app::model::CurrentUser, id: i64) -> Result<TokenInfo, TokenError> {
        let token = self.find(id).await?.ok_or(TokenError::NotFound)?;
        if token.user_id != actor.id && !actor.is_admin {
            // The same answer as for a token that does not exist: no probing of ids.
            return Err(TokenError::NotFound);
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL").bind(now()).bind(id).execute(&self.db.pool).await?;
        self.find(id).await?.ok_or(TokenError::NotFound)
    }

    /// Who `secret` speaks for, or why it speaks for nobody. Marks its use.
    pub async fn authenticate(&self, secret: &str) -> Result<Result<TokenIdentity, Rejected>, sqlx::Error> {
        let well_formed = secret.strip_prefix(TOKEN_PREFIX).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Ok(Err(Rejected::Malformed));
        }
        let row = sqlx::query(
            "SELECT t.id, t.name, t.scopes, t.expires_at, t.revoked_at, t.last_used_at, u.id AS user_id, u.username, u.status, u.is_admin
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(hash(secret))
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else { return Ok(Err(Rejected::Unknown)) };
        let now = now();
        let id: i64 = row.try_get("id")?;
        let spent = || -> Result<Spent, sqlx::Error> {
            let mut noted = self.refused_noted.lock().expect("refused tokens");
            if noted.len() > 10_000 {
                noted.clear();
            }
            Ok(Spent { owner: row.try_get("username")?, name: row.try_get("name")?, first_today: noted.insert((id, now / 86_400)) })
        };
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Ok(Err(Rejected::Revoked(spent()?)));
        }
        if row.try_get::<i64, _>("expires_at")? <= now {
            return Ok(Err(Rejected::Expired(spent()?)));
        }
        if row.try_get::<String, _>("status")? != "approved" {
            return Ok(Err(Rejected::AccountInactive));
        }
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        // One write a minute at most per token: a script polling every second costs nothing.
        if last_used.is_none_or(|at| now - at >= 60) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2").bind(now).bind(id).execute(&self.db.pool).await?;
        }
        let is_admin = row.try_get::<i64, _>("is_admin")? != 0;
        let scopes: String = row.try_get("scopes")?;
        let scopes = scopes
            .split(' ')
            .filter_map(Scope::parse)
            // The owner's rights now, not when the token was made.
            .filter(|s| *s != Scope::Admin || is_admin)
            .collect();
        Ok(Ok(TokenIdentity {
            token_id: id,
            token_name: row.try_get("name")?,
            user: app::model::CurrentUser { id: row.try_get("user_id")?, username: row.try_get("username")?, is_admin },
            scopes,
            first_use_today: last_used.is_none_or(|at| at / 86_400 != now / 86_400),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_back_as_written() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("workspace:READ"), None);
        assert_eq!(serde_json::to_string(&Scope::WorkspaceWrite).unwrap(), "\"workspace:write\"");
    }

    #[test]
    fn secrets_are_stored_as_their_sha256() {
        assert_eq!(hash("berth_x"), "031c04afee3527d858baee26315d0e5f81490cf989d9e93d7a15732804f67acf");
    }
}
