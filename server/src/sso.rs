//! Single sign-on with OpenID Connect: discovery, authorization code flow with PKCE, nonce and
//! state, ID-token verification, and mapping (issuer, subject) to a Berth account.

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::model::{AccountStatus, AdminAction};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadataWithLogout, RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row as _;
use tokio::sync::RwLock;
use url::Url;

use crate::accounts::{AccountError, Accounts, NewUser, SsoIdentity, User};
use crate::config::OidcProviderConfig;
use crate::crypto::SecretBox;
use crate::db::{now, Db};
use crate::username::Username;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct GroupClaims {
    #[serde(default, flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for GroupClaims {}

type IdFields = IdTokenFields<GroupClaims, EmptyExtraTokenFields, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type OidcTokenResponse = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient = Client<
    GroupClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    OidcTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a sign-in failed; `code()` is what the error page is told, never internal detail.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("unknown identity provider")]
    UnknownProvider,
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("state mismatch or expired sign-in")]
    State,
    #[error("the user denied consent or the provider refused: {0}")]
    Denied(String),
    #[error("authorization code refused (expired or replayed): {0}")]
    Code(String),
    #[error("ID token rejected: {0}")]
    Token(String),
    #[error("e-mail address not verified by the provider")]
    EmailNotVerified,
    #[error("account may not sign in: {0}")]
    Refused(&'static str),
    #[error("internal: {0}")]
    Internal(String),
}

impl SsoError {
    pub fn code(&self) -> &'static str {
        match self {
            SsoError::UnknownProvider => "unknown-provider",
            SsoError::Unreachable(_) => "provider-unreachable",
            SsoError::State => "state",
            SsoError::Denied(_) => "denied",
            SsoError::Code(_) => "code",
            SsoError::Token(_) => "token",
            SsoError::EmailNotVerified => "email-unverified",
            SsoError::Refused("disabled") => "disabled",
            SsoError::Refused(_) => "rejected",
            SsoError::Internal(_) => "internal",
        }
    }
}

/// Kept between the redirect to the provider and the callback, sealed in a cookie of the browser
/// (not in a session row: anyone may start a sign-in, and each start would store one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub rd: Option<String>,
    pub issued_at: i64,
}

/// How long a sign-in may take at the provider.
pub const PENDING_LOGIN_SECONDS: i64 = 600;

/// Kept in the session while a new SSO user picks a username.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSignup {
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub groups: Vec<String>,
    pub suggested: Option<String>,
    pub id_token: String,
    pub rd: Option<String>,
}

pub enum Outcome {
    LoggedIn { user: User, provider: String, id_token: String, rd: Option<String> },
    Pending,
    ChooseUsername(PendingSignup),
}

struct Discovered {
    client: OidcClient,
    issuer: String,
    end_session: Option<Url>,
    at: Instant,
}

pub struct Provider {
    pub config: OidcProviderConfig,
    discovered: RwLock<Option<Arc<Discovered>>>,
}

pub struct Sso {
    pub providers: Vec<Provider>,
    http: reqwest::Client,
    public_url: Url,
    db: Db,
    accounts: Accounts,
    sealer: SecretBox,
}

const REDISCOVER_AFTER: Duration = Duration::from_secs(3600);

impl Sso {
    pub fn new(configs: Vec<OidcProviderConfig>, public_url: Url, db: Db, accounts: Accounts, key: &[u8; 32]) -> Sso {
        let http = reqwest::Client::builder()
            // The crate's SSRF advice: never follow redirects from the provider.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let providers = configs.into_iter().map(|config| Provider { config, discovered: RwLock::new(None) }).collect();
        // A key of its own: a sealed workspace secret must never open as a pending login.
        let pending_key: [u8; 32] =
            Sha256::new_with_prefix(b"berth: sealed OpenID pending login\0").chain_update(key).finalize().into();
        Sso { providers, http, public_url, db, accounts, sealer: SecretBox::new(&pending_key) }
    }

    /// A pending login as a cookie value: encrypted and authenticated with Berth's key.
    pub fn seal_pending(&self, pending: &PendingLogin) -> String {
        self.sealer.seal(&serde_json::to_string(pending).expect("a pending login serializes"))
    }

    /// The pending login a cookie holds, if Berth sealed it and it has not expired.
    pub fn open_pending(&self, sealed: &str) -> Result<PendingLogin, SsoError> {
        let json = self.sealer.open(sealed).map_err(|_| SsoError::State)?;
        let pending: PendingLogin = serde_json::from_str(&json).map_err(|_| SsoError::State)?;
        if !(0..=PENDING_LOGIN_SECONDS).contains(&(now() - pending.issued_at)) {
            return Err(SsoError::State);
        }
        Ok(pending)
    }

    pub fn provider(&self, id: &str) -> Result<&Provider, SsoError> {
        self.providers.iter().find(|p| p.config.id == id).ok_or(SsoError::UnknownProvider)
    }

    fn redirect_url(&self, id: &str) -> String {
        self.public_url.join(&format!("/auth/oidc/{id}/callback")).expect("static path").to_string()
    }

    /// Discovery (with the provider's keys), cached for an hour; retried on the next login
    /// when the provider was down.
    async fn discovered(&self, provider: &Provider) -> Result<Arc<Discovered>, SsoError> {
        if let Some(d) = provider.discovered.read().await.as_ref().filter(|d| d.at.elapsed() < REDISCOVER_AFTER) {
            return Ok(d.clone());
        }
        let c = &provider.config;
        let issuer = IssuerUrl::new(c.issuer.clone()).map_err(|e| SsoError::Unreachable(e.to_string()))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SsoError::Unreachable(e.to_string()))?;
        let end_session = metadata.additional_metadata().end_session_endpoint.as_ref().map(|u| u.url().clone());
        let redirect = RedirectUrl::new(self.redirect_url(&c.id)).map_err(|e| SsoError::Internal(e.to_string()))?;
        let secret = (!c.client_secret.0.is_empty()).then(|| ClientSecret::new(c.client_secret.0.clone()));
        let client: OidcClient = Client::from_provider_metadata(metadata, ClientId::new(c.client_id.clone()), secret)
            .set_redirect_uri(redirect);
        let d = Arc::new(Discovered { client, issuer: c.issuer.clone(), end_session, at: Instant::now() });
        *provider.discovered.write().await = Some(d.clone());
        Ok(d)
    }

    /// Tries discovery for every provider once; a provider that is down only gets logged.
    pub async fn warm_up(&self) {
        for p in &self.providers {
            if let Err(e) = self.discovered(p).await {
                tracing::warn!(provider = %p.config.id, error = %e, "OpenID provider not reachable at start-up; password login still works");
            }
        }
    }

    /// The provider's authorization URL and what to remember until the callback.
    pub async fn start(&self, id: &str, rd: Option<String>) -> Result<(Url, PendingLogin), SsoError> {
        let provider = self.provider(id)?;
        let d = self.discovered(provider).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = d.client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for scope in &provider.config.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = PendingLogin {
            provider: id.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            rd,
            issued_at: now(),
        };
        Ok((url, pending))
    }

    /// Completes the callback: state, code exchange with PKCE, ID-token checks, account mapping.
    #[tracing::instrument(skip_all, fields(provider = %pending.provider))]
    pub async fn finish(&self, pending: PendingLogin, state: &str, code: &str) -> Result<Outcome, SsoError> {
        if !crate::crypto::constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(SsoError::State);
        }
        let provider = self.provider(&pending.provider)?;
        let d = self.discovered(provider).await?;
        let token = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SsoError::Internal(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::Code(e.to_string()))?;
        let id_token = token.id_token().ok_or_else(|| SsoError::Token("no ID token".into()))?;
        let claims = id_token
            .claims(&d.client.id_token_verifier(), &Nonce::new(pending.nonce.clone()))
            .map_err(|e| SsoError::Token(e.to_string()))?;
        let c = &provider.config;
        let mut extra = claims.additional_claims().rest.clone();
        if !extra.contains_key(&c.groups_claim) {
            // Some providers put groups only in UserInfo.
            if let Ok(request) = d.client.user_info(token.access_token().clone(), Some(claims.subject().clone())) {
                if let Ok(info) = request.request_async::<GroupClaims, _, CoreGenderClaim>(&self.http).await {
                    let info: UserInfoClaims<GroupClaims, CoreGenderClaim> = info;
                    extra = info.additional_claims().rest.clone();
                }
            }
        }
        let groups: Vec<String> = match extra.get(&c.groups_claim) {
            Some(serde_json::Value::Array(items)) => items.iter().filter_map(|g| g.as_str().map(str::to_string)).collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let email = claims.email().map(|e| e.as_str().to_string());
        let preferred = claims.preferred_username().map(|u| u.as_str().to_string());
        let suggested = match c.username_claim.as_str() {
            "email" => email.as_deref().and_then(|e| e.split('@').next()).and_then(normalize_username),
            _ => preferred.as_deref().and_then(normalize_username),
        };
        let signup = PendingSignup {
            provider: c.id.clone(),
            issuer: d.issuer.clone(),
            subject: claims.subject().as_str().to_string(),
            email,
            email_verified: claims.email_verified().unwrap_or(false),
            groups,
            suggested,
            id_token: id_token.to_string(),
            rd: pending.rd,
        };
        self.resolve(signup, None).await
    }

    /// Maps an identity to its account, creating one (pending unless a rule approves it) when
    /// the identity is new. `chosen` is the username a new user picked on the form.
    pub async fn resolve(&self, signup: PendingSignup, chosen: Option<&str>) -> Result<Outcome, SsoError> {
        let c = &self.provider(&signup.provider)?.config;
        if c.require_verified_email && !signup.email_verified {
            return Err(SsoError::EmailNotVerified);
        }
        let by_group = signup.groups.iter().any(|g| c.auto_approve_groups.contains(g));
        let by_domain = signup.email_verified
            && signup
                .email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(_, domain)| c.auto_approve_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)));
        let admin = (!c.admin_groups.is_empty()).then(|| signup.groups.iter().any(|g| c.admin_groups.contains(g)));
        let internal = |e: &dyn std::fmt::Display| SsoError::Internal(e.to_string());

        let known = sqlx::query("SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2")
            .bind(&signup.issuer)
            .bind(&signup.subject)
            .fetch_optional(&self.db.pool)
            .await
            .map_err(|e| internal(&e))?;
        let mut user = match known {
            Some(row) => {
                let id: i64 = row.try_get("user_id").map_err(|e| internal(&e))?;
                sqlx::query("UPDATE oidc_identities SET last_login_at = $1, email = $2 WHERE issuer = $3 AND subject = $4")
                    .bind(now())
                    .bind(&signup.email)
                    .bind(&signup.issuer)
                    .bind(&signup.subject)
                    .execute(&self.db.pool)
                    .await
                    .map_err(|e| internal(&e))?;
                self.accounts.find_by_id(id).await.map_err(|e| internal(&e))?.ok_or(SsoError::Refused("rejected"))?
            }
            None => {
                let name = match chosen.map(str::to_string).or_else(|| signup.suggested.clone()) {
                    Some(name) if Username::parse(&name).is_ok() => name,
                    _ => return Ok(Outcome::ChooseUsername(signup)),
                };
                let created = self
                    .accounts
                    .create_linked(
                        NewUser {
                            username: &name,
                            email: signup.email.as_deref(),
                            password: None,
                            status: if by_group || by_domain { AccountStatus::Approved } else { AccountStatus::Pending },
                            is_admin: admin.unwrap_or(false),
                        },
                        Some(SsoIdentity { issuer: &signup.issuer, subject: &signup.subject, email: signup.email.as_deref() }),
                    )
                    .await;
                let user = match created {
                    Ok(user) => user,
                    // Taken, clashing with another user's hosts, or invalid after all: never someone
                    // else's account; ask for a (another) name.
                    Err(AccountError::UsernameTaken | AccountError::UsernameUnavailable | AccountError::InvalidUsername(_)) => {
                        return Ok(Outcome::ChooseUsername(signup))
                    }
                    Err(e) => return Err(SsoError::Internal(e.to_string())),
                };
                tracing::info!(user_id = user.id, "account created from single sign-on");
                user
            }
        };
        // Rules apply at every login, so group changes at the provider take effect now.
        if user.status == AccountStatus::Pending && (by_group || by_domain) {
            user = self.accounts.apply(None, user.id, AdminAction::Approve).await.map_err(|e| internal(&e))?;
        }
        if let Some(admin) = admin {
            if admin != user.is_admin {
                let action = if admin { AdminAction::GrantAdmin } else { AdminAction::RevokeAdmin };
                user = self.accounts.apply(None, user.id, action).await.map_err(|e| internal(&e))?;
            }
        }
        match user.status {
            AccountStatus::Approved => {
                Ok(Outcome::LoggedIn { user, provider: signup.provider, id_token: signup.id_token, rd: signup.rd })
            }
            AccountStatus::Pending => Ok(Outcome::Pending),
            AccountStatus::Rejected => Err(SsoError::Refused("rejected")),
            AccountStatus::Disabled => Err(SsoError::Refused("disabled")),
        }
    }

    /// Where to send the browser so the provider's session ends too, if it offers that.
    pub async fn logout_url(&self, provider: &str, id_token: &str) -> Option<String> {
        let p = self.provider(provider).ok()?;
        let d = self.discovered(p).await.ok()?;
        let mut url = d.end_session.clone()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("client_id", &p.config.client_id)
            .append_pair("post_logout_redirect_uri", self.public_url.join("/login").ok()?.as_str());
        Some(url.to_string())
    }
}

/// A provider's name turned into a valid Berth username, if it can be.
pub fn normalize_username(raw: &str) -> Option<String> {
    let mut out = String::new();
    for ch in raw.trim().to_lowercase().chars() {
        match ch {
            'a'..='z' | '0'..='9' => out.push(ch),
            '-' | '.' | '_' | '+' | ' ' if !out.is_empty() && !out.ends_with('-') => out.push('-'),
            _ => {}
        }
    }
    let start = out.find(|c: char| c.is_ascii_lowercase())?;
    let mut name: String = out[start..].chars().take(31).collect();
    while name.ends_with('-') {
        name.pop();
    }
    Username::parse(&name).ok().map(|u| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::normalize_username;

    #[test]
    fn usernames_from_provider_claims() {
        assert_eq!(normalize_username("Alice.Smith").as_deref(), Some("alice-smith"));
        assert_eq!(normalize_username("bob_42").as_deref(), Some("bob-42"));
        assert_eq!(normalize_username("42carol").as_deref(), Some("carol"));
        assert_eq!(normalize_username("José").as_deref(), Some("jos"));
        assert_eq!(normalize_username("root"), None, "reserved");
        assert_eq!(normalize_username("{{.Env}}").as_deref(), Some("env"));
        assert_eq!(normalize_username("日本"), None);
        assert_eq!(normalize_username(&"x".repeat(40)).map(|n| n.len()), Some(31));
    }
}
