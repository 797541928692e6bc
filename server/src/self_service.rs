//! Account self-service and account administration as the portal does them: the account page
//! (password, sessions, SSH keys, API tokens), the admin's accounts page (reset, promote,
//! delete, limits, everyone's tokens) and the audit log page. Each action is recorded in the
//! audit log here, once. The pages are drawn on the server as plain HTML forms: they work
//! without JavaScript and add nothing to the browser's download.

use std::collections::HashMap;
use std::net::IpAddr;

use app::error::AppError;
use app::figures::escape;
use app::model::{AdminAction, CurrentUser};

use crate::audit::{AuditActor, Event, Filter, Outcome};
use crate::backend::Backend;
use crate::tokens::{NewToken, Scope};
use crate::workspace::{Actor, Owner};

/// Where each form posts (`web` routes them here).
pub const ACCOUNT_FORM: &str = "/account/do";
pub const ADMIN_FORM: &str = "/admin/accounts/do";
/// The most audit entries one page shows.
const AUDIT_PAGE: u32 = 100;

pub struct SelfService {
    pub backend: Backend,
    /// `password_login` in the configuration: passwords are one way to log in here.
    pub password_login: bool,
}

/// What a form post came to: a message for the page it returns to, or a page of its own
/// (a secret shown once, never stored anywhere to be shown again).
pub enum Done {
    Message(String),
    ShowOnce { title: String, secret: String, note: String, back: &'static str },
}

/// `2026-12-01 14:05 UTC`.
pub fn when(at: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(at) {
        Ok(t) => format!("{}-{:02}-{:02} {:02}:{:02} UTC", t.year(), t.month() as u8, t.day(), t.hour(), t.minute()),
        Err(_) => "?".into(),
    }
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map(|s| s.as_str()).unwrap_or_default()
}

fn number(form: &HashMap<String, String>, name: &str) -> Result<i64, AppError> {
    field(form, name).trim().parse().map_err(|_| AppError::Invalid(format!("{name}: not a number")))
}

fn form_button(action: &str, op: &str, fields: &[(&str, String)], label: &str, class: &str) -> String {
    let hidden: String = fields.iter().map(|(k, v)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(k), escape(v))).collect();
    format!(
        r#"<form method="post" action="{action}" class="inline"><input type="hidden" name="op" value="{op}">{hidden}<button type="submit" class="{class}">{}</button></form>"#,
        escape(label)
    )
}

/// The message a page shows after a form post.
pub fn outcome_html(outcome: Option<(bool, String)>) -> String {
    match outcome {
        Some((true, m)) => format!(r#"<p class="notice" id="form-outcome" role="status">{}</p>"#, escape(&m)),
        Some((false, m)) => format!(r#"<p class="error" id="form-outcome" role="alert">{}</p>"#, escape(&m)),
        None => String::new(),
    }
}

/// A secret shown once, as a page of its own.
pub fn show_once_html(title: &str, secret: &str, note: &str, back: &str) -> String {
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{t} · Berth</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem}}code{{display:block;padding:.8rem;background:#f2f2f2;word-break:break-all;font-size:1.05rem}}</style></head>
<body><h1>{t}</h1><p>{n}</p><code id="secret">{s}</code><p>Berth does not keep it: this page is the only time it is shown.</p><p><a href="{b}">Back</a></p></body></html>"#,
        t = escape(title),
        n = escape(note),
        s = escape(secret),
        b = escape(back)
    )
}

impl SelfService {
    fn audit(&self) -> &crate::audit::Audit {
        &self.backend.audit
    }

    async fn record(&self, me: &CurrentUser, client: IpAddr, action: &str, target: &str, result: &Result<Done, AppError>) {
        let (outcome, detail) = match result {
            Ok(_) => (Outcome::Ok, String::new()),
            Err(AppError::Forbidden | AppError::Refused(_)) => (Outcome::Refused, result.as_ref().err().map(|e| e.to_string()).unwrap_or_default()),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        self.audit().record(Event::new(AuditActor::of(me), action, target).client(client).outcome(outcome).detail(detail)).await;
    }

    /// The account page of `me`; `session` is the asking session's stored id.
    pub async fn account_page(&self, me: &CurrentUser, session: Option<&str>, outcome: Option<(bool, String)>) -> Result<String, AppError> {
        let b = &self.backend;
        let db_error = |e: sqlx::Error| {
            tracing::error!(error = %e, "account page");
            AppError::Unavailable("The database is not answering; try again shortly.".into())
        };
        let user = b.accounts.find_by_id(me.id).await.map_err(crate::app_errors::to_app_error)?.ok_or(AppError::Unauthenticated)?;
        let has_password = b.accounts.has_password(me.id).await.map_err(crate::app_errors::to_app_error)?;
        let issuer = b.accounts.sso_issuer(me.id).await.map_err(crate::app_errors::to_app_error)?;
        let sessions = crate::sessions::sessions_of(&b.db, &b.sessions, me.id).await.map_err(db_error)?;
        let keys = b.keys.list(me.id).await.map_err(|e| AppError::Unavailable(e.to_string()))?;
        let ssh_password = b.keys.password_login(me.id).await.map_err(|e| AppError::Unavailable(e.to_string()))?;
        let tokens = b.tokens.list(Some(me.id)).await.map_err(db_error)?;
        let now = crate::db::now();
        let mut html = outcome_html(outcome);

        let method = match (&issuer, has_password) {
            (Some(i), true) => format!("single sign-on ({}) and a Berth password", escape(i)),
            (Some(i), false) => format!("single sign-on ({})", escape(i)),
            (None, _) => "a Berth password".to_string(),
        };
        html += &format!(
            r#"<section class="card" id="account-summary"><h1>Your account</h1><p><strong>{}</strong>{} · signs in with {method}</p></section>"#,
            escape(&user.username),
            user.email.as_deref().map(|e| format!(" · {}", escape(e))).unwrap_or_default()
        );

        // A single sign-on account has no password to change; one with both shows it only when
        // the site allows password logins.
        if has_password && self.password_login {
            html += &format!(
                r#"<section class="card" id="password"><h2>Password</h2><form method="post" action="{ACCOUNT_FORM}" class="stack" id="password-form">
<input type="hidden" name="op" value="password">
<label>Current password<input type="password" name="current" autocomplete="current-password" required></label>
<label>New password<input type="password" name="new" autocomplete="new-password" minlength="12" required><small>At least 12 characters. Every other session of your account ends.</small></label>
<button type="submit" class="primary">Change password</button></form></section>"#
            );
        }

        let mut rows = String::new();
        for s in &sessions {
            let this = session == Some(s.handle.as_str());
            rows += &format!(
                r#"<tr data-session="{h}"><td>{c}</td><td>{l}</td><td>{ip}</td><td>{a}</td><td>{act}</td></tr>"#,
                h = escape(&s.handle[..12.min(s.handle.len())]),
                c = s.created_at.map(when).unwrap_or_else(|| "?".into()),
                l = when(s.last_used_at),
                ip = escape(s.client.as_deref().unwrap_or("?")),
                a = escape(s.agent.as_deref().unwrap_or("?")),
                act = if this { "this browser".to_string() } else { form_button(ACCOUNT_FORM, "end-session", &[("handle", s.handle.clone())], "End", "") },
            );
        }
        html += &format!(
            r#"<section class="card" id="sessions"><h2>Where you are logged in</h2><table class="table"><thead><tr><th>Logged in</th><th>Last used</th><th>From</th><th>Browser</th><th></th></tr></thead><tbody>{rows}</tbody></table>{}</section>"#,
            if sessions.len() > 1 { form_button(ACCOUNT_FORM, "end-other-sessions", &[], "Log out everywhere else", "danger") } else { String::new() }
        );

        let mut rows = String::new();
        for k in &keys {
            rows += &format!(
                r#"<tr data-key="{id}"><td>{n}</td><td>{alg}</td><td><code>{fp}</code></td><td>{added}</td><td>{used}</td><td>{del}</td></tr>"#,
                id = k.id,
                n = escape(&k.name),
                alg = escape(&k.algorithm),
                fp = escape(&k.fingerprint),
                added = when(k.created_at),
                used = k.last_used_at.map(when).unwrap_or_else(|| "not known".into()),
                del = form_button(ACCOUNT_FORM, "delete-key", &[("id", k.id.to_string())], "Delete", "danger"),
            );
        }
        let toggle = if keys.is_empty() {
            "<p class=\"muted\">Add a key to be able to turn SSH password login off.</p>".to_string()
        } else if ssh_password {
            form_button(ACCOUNT_FORM, "ssh-password", &[("allowed", "no".into())], "Turn SSH password login off", "")
        } else {
            format!("<p id=\"ssh-password-off\">SSH password login is off: only your keys open SSH.</p>{}", form_button(ACCOUNT_FORM, "ssh-password", &[("allowed", "yes".into())], "Turn SSH password login back on", ""))
        };
        html += &format!(
            r#"<section class="card" id="ssh-keys"><h2>SSH keys</h2><p class="muted">They reach your workspace within seconds, also while it runs. Your own <code>~/.ssh/authorized_keys</code> keeps working and is never changed.</p>
<table class="table"><thead><tr><th>Name</th><th>Type</th><th>Fingerprint</th><th>Added</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<form method="post" action="{ACCOUNT_FORM}" class="stack" id="add-key-form"><input type="hidden" name="op" value="add-key">
<label>Name<input type="text" name="name" maxlength="64" placeholder="laptop"></label>
<label>Public key<textarea name="key" rows="3" required placeholder="ssh-ed25519 AAAA… you@laptop"></textarea><small>ed25519, ECDSA, or RSA of 3072 bits or more: the contents of a .pub file.</small></label>
<button type="submit" class="primary">Add key</button></form>{toggle}</section>"#
        );

        let mut rows = String::new();
        for t in &tokens {
            let state = match (t.revoked_at, t.expires_at <= now) {
                (Some(at), _) => format!("revoked {}", when(at)),
                (None, true) => "expired".to_string(),
                (None, false) => format!("until {}", when(t.expires_at)),
            };
            let live = t.revoked_at.is_none() && t.expires_at > now;
            rows += &format!(
                r#"<tr data-token="{id}"><td>{n}</td><td>{sc}</td><td>{c}</td><td>{st}</td><td>{u}</td><td>{rv}</td></tr>"#,
                id = t.id,
                n = escape(&t.name),
                sc = t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                c = when(t.created_at),
                st = escape(&state),
                u = t.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                rv = if live { form_button(ACCOUNT_FORM, "revoke-token", &[("id", t.id.to_string())], "Revoke", "danger") } else { String::new() },
            );
        }
        let scopes: String = Scope::ALL
            .iter()
            .filter(|s| **s != Scope::Admin || me.is_admin)
            .map(|s| format!(r#"<label class="inline"><input type="checkbox" name="scope_{0}" value="yes"{1}> {0}</label>"#, s.as_str(), if *s == Scope::WorkspaceRead { " checked" } else { "" }))
            .collect();
        let max_days = b.tokens.max_lifetime_seconds() / 86_400;
        html += &format!(
            r#"<section class="card" id="api-tokens"><h2>API tokens</h2><p class="muted">For scripts and the <code>berth</code> command line on your laptop: <code>Authorization: Bearer …</code> on <a href="/api/v1/openapi.json">the API</a>.</p>
<table class="table"><thead><tr><th>Name</th><th>Scopes</th><th>Created</th><th>State</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table>
<form method="post" action="{ACCOUNT_FORM}" class="stack" id="token-form"><input type="hidden" name="op" value="create-token">
<label>Name<input type="text" name="name" maxlength="64" required placeholder="laptop scripts"></label>
<label>Days until it expires<input type="number" name="days" min="1" max="{max_days}" value="{d}" required></label>
<fieldset><legend>Scopes</legend>{scopes}</fieldset>
<button type="submit" class="primary">Create token</button></form></section>"#,
            d = 90.min(max_days)
        );
        Ok(html)
    }

    /// Carries out an account page form.
    pub async fn account_command(&self, me: &CurrentUser, client: IpAddr, session: Option<&str>, form: &HashMap<String, String>) -> Result<Done, AppError> {
        let b = &self.backend;
        let op = field(form, "op");
        let me_name = me.username.clone();
        let key_error = |e: crate::ssh_keys::KeyError| match e {
            e @ (crate::ssh_keys::KeyError::Invalid(_) | crate::ssh_keys::KeyError::Duplicate | crate::ssh_keys::KeyError::NoKeyYet | crate::ssh_keys::KeyError::NotFound) => {
                AppError::Invalid(e.to_string())
            }
            e => {
                tracing::error!(error = %e, "SSH keys");
                AppError::Unavailable("Your keys could not be saved right now; try again shortly.".into())
            }
        };
        let db_error = |e: sqlx::Error| {
            tracing::error!(error = %e, "account");
            AppError::Unavailable("The database is not answering; try again shortly.".into())
        };
        match op {
            "password" => {
                if !self.password_login {
                    return Err(AppError::Refused("Password login is turned off here.".into()));
                }
                let result = b
                    .accounts
                    .change_password(me.id, field(form, "current"), field(form, "new"), session, client)
                    .await
                    .map(|ended| Done::Message(format!("Password changed; {ended} other session(s) ended.")))
                    .map_err(crate::app_errors::to_app_error);
                self.record(me, client, "password.change", &me_name, &result).await;
                result
            }
            "end-session" => {
                let handle = field(form, "handle");
                let ended = crate::sessions::end_session_of(&b.db, &b.sessions, me.id, handle).await.map_err(db_error)?;
                let result = if ended { Ok(Done::Message("That session has ended.".into())) } else { Err(AppError::Invalid("No such session.".into())) };
                self.record(me, client, "session.end", &me_name, &result).await;
                result
            }
            "end-other-sessions" => {
                let ended = crate::sessions::end_sessions_of_except(&b.db, &b.sessions, me.id, session).await.map_err(db_error)?;
                let result = Ok(Done::Message(format!("{ended} other session(s) ended.")));
                self.record(me, client, "session.end-others", &me_name, &result).await;
                result
            }
            "add-key" => {
                let result = b.keys.add(me, field(form, "name"), field(form, "key")).await.map_err(key_error);
                let target = match &result {
                    Ok(k) => format!("{me_name}/key {}", k.name),
                    Err(_) => format!("{me_name}/key"),
                };
                let fingerprint = result.as_ref().map(|k| k.fingerprint.clone()).unwrap_or_default();
                let result = result.map(|k| Done::Message(format!("Key {} added ({}).", k.name, k.fingerprint)));
                self.audit()
                    .record(
                        Event::new(AuditActor::of(me), "key.add", &target)
                            .client(client)
                            .outcome(if result.is_ok() { Outcome::Ok } else { Outcome::Failed })
                            .detail(result.as_ref().err().map(|e| e.to_string()).unwrap_or(fingerprint)),
                    )
                    .await;
                result
            }
            "delete-key" => {
                let key = b.keys.delete(me, number(form, "id")?).await.map_err(key_error)?;
                let target = format!("{me_name}/key {}", key.name);
                let result = Ok(Done::Message(format!("Key {} deleted.", key.name)));
                self.audit().record(Event::new(AuditActor::of(me), "key.remove", &target).client(client).detail(key.fingerprint)).await;
                result
            }
            "ssh-password" => {
                let allowed = field(form, "allowed") == "yes";
                let result = b
                    .keys
                    .set_password_login(me, allowed)
                    .await
                    .map(|()| Done::Message(if allowed { "SSH password login is on." } else { "SSH password login is off: only your keys open SSH." }.into()))
                    .map_err(key_error);
                self.record(me, client, if allowed { "ssh-password.on" } else { "ssh-password.off" }, &me_name, &result).await;
                result
            }
            "create-token" => {
                let scopes: Vec<Scope> = Scope::ALL.into_iter().filter(|s| field(form, &format!("scope_{}", s.as_str())) == "yes").collect();
                let days = number(form, "days")?;
                let name = field(form, "name");
                let created = b
                    .tokens
                    .create(me, NewToken { name, scopes: &scopes, lifetime_seconds: days.saturating_mul(86_400) })
                    .await
                    .map_err(|e| match e {
                        crate::tokens::TokenError::Database(e) => db_error(e),
                        e => AppError::Invalid(e.to_string()),
                    });
                let target = format!("{me_name}/token {}", crate::sharing::clean_note(name));
                let result = created.map(|(secret, info)| Done::ShowOnce {
                    title: "Your new API token".into(),
                    note: format!(
                        "{}: {}, until {}. Copy it now.",
                        info.name,
                        info.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        when(info.expires_at)
                    ),
                    secret,
                    back: "/account",
                });
                self.record(me, client, "token.create", &target, &result).await;
                result
            }
            "revoke-token" => self.revoke_token(me, client, number(form, "id")?).await,
            _ => Err(AppError::Invalid("Unknown form.".into())),
        }
    }

    async fn revoke_token(&self, me: &CurrentUser, client: IpAddr, id: i64) -> Result<Done, AppError> {
        let result = self.backend.tokens.revoke(me, id).await;
        let target = match &result {
            Ok(t) => format!("{}/token {}", t.username, t.name),
            Err(_) => format!("token #{id}"),
        };
        let result = result.map(|t| Done::Message(format!("Token {} revoked.", t.name))).map_err(|e| AppError::Invalid(e.to_string()));
        self.record(me, client, "token.revoke", &target, &result).await;
        result
    }

    /// The administrators' accounts page: every account with its actions, and every token.
    pub async fn admin_accounts_page(&self, admin: &CurrentUser, outcome: Option<(bool, String)>) -> Result<String, AppError> {
        if !admin.is_admin {
            return Err(AppError::Forbidden);
        }
        let b = &self.backend;
        let users = b.accounts.list().await.map_err(crate::app_errors::to_app_error)?;
        let tokens = b.tokens.list(None).await.map_err(|_| AppError::Unavailable("The database is not answering.".into()))?;
        let now = crate::db::now();
        let mut rows = String::new();
        for u in &users {
            let name = escape(&u.username);
            let promote = if u.is_admin {
                form_button(ADMIN_FORM, "demote", &[("username", u.username.clone())], "Remove admin", "")
            } else {
                form_button(ADMIN_FORM, "promote", &[("username", u.username.clone())], "Make admin", "")
            };
            rows += &format!(
                r#"<tr data-user="{name}"><td>{name}{adm}</td><td>{st}</td>
<td><form method="post" action="{ADMIN_FORM}" class="inline"><input type="hidden" name="op" value="reset-password"><input type="hidden" name="username" value="{name}"><input type="password" name="password" placeholder="blank: generate one" autocomplete="new-password"><button type="submit">Reset password</button></form></td>
<td>{promote}</td>
<td><form method="post" action="{ADMIN_FORM}" class="inline"><input type="hidden" name="op" value="limits"><input type="hidden" name="username" value="{name}"><input type="number" name="memory_gib" min="1" placeholder="GiB" title="memory limit (GiB)"><input type="number" name="cpus" min="0.1" step="any" placeholder="CPUs"><input type="text" name="gpus" placeholder="GPUs (all, none, 0,1)" size="8"><button type="submit">Set limits</button></form></td>
<td><form method="post" action="{ADMIN_FORM}" class="inline"><input type="hidden" name="op" value="delete"><input type="hidden" name="username" value="{name}"><input type="text" name="confirm" placeholder="type {name} to confirm" size="14"><label class="inline"><input type="checkbox" name="purge" value="yes"> and purge files</label><button type="submit" class="danger">Delete</button></form></td></tr>"#,
                adm = if u.is_admin { " (admin)" } else { "" },
                st = u.status.as_str(),
            );
        }
        let mut html = outcome_html(outcome);
        html += &format!(
            r#"<section class="card" id="accounts"><p class="muted">Limits apply at the workspace's next start from stopped; empty fields return to the defaults. Deleting removes the workspace and keeps the files unless "purge" is ticked.</p><table class="table"><thead><tr><th>User</th><th>Status</th><th>Password</th><th>Admin</th><th>Limits</th><th>Delete</th></tr></thead><tbody>{rows}</tbody></table></section>"#
        );
        let mut rows = String::new();
        for t in &tokens {
            let live = t.revoked_at.is_none() && t.expires_at > now;
            rows += &format!(
                r#"<tr data-token="{id}"><td>{u}</td><td>{n}</td><td>{sc}</td><td>{exp}</td><td>{used}</td><td>{rv}</td></tr>"#,
                id = t.id,
                u = escape(&t.username),
                n = escape(&t.name),
                sc = t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                exp = if t.revoked_at.is_some() { "revoked".into() } else { when(t.expires_at) },
                used = t.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                rv = if live { form_button(ADMIN_FORM, "revoke-token", &[("id", t.id.to_string())], "Revoke", "danger") } else { String::new() },
            );
        }
        html += &format!(
            r#"<section class="card" id="all-tokens"><h2>API tokens</h2><table class="table"><thead><tr><th>User</th><th>Name</th><th>Scopes</th><th>Expires</th><th>Last used</th><th></th></tr></thead><tbody>{rows}</tbody></table></section>"#
        );
        Ok(html)
    }

    /// Carries out an accounts page form (administrators).
    pub async fn admin_command(&self, admin: &CurrentUser, client: IpAddr, form: &HashMap<String, String>) -> Result<Done, AppError> {
        if !admin.is_admin {
            return Err(AppError::Forbidden);
        }
        let b = &self.backend;
        let op = field(form, "op");
        if op == "revoke-token" {
            return self.revoke_token(admin, client, number(form, "id")?).await;
        }
        let username = field(form, "username").trim().to_string();
        let user = b.accounts.find_by_name(&username).await.map_err(|_| AppError::Invalid("No such user.".into()))?;
        let result = match op {
            "reset-password" => {
                let typed = Some(field(form, "password")).filter(|p| !p.is_empty());
                b.accounts.reset_password(user.id, typed).await.map_err(crate::app_errors::to_app_error).map(|generated| match generated {
                    Some(password) => Done::ShowOnce {
                        title: format!("New password for {username}"),
                        note: format!("{username}'s sessions have ended. Give them this password by a safe way; they can change it on their account page."),
                        secret: password,
                        back: "/admin/accounts",
                    },
                    None => Done::Message(format!("{username}'s password is set and their sessions have ended.")),
                })
            }
            "promote" | "demote" => {
                let action = if op == "promote" { AdminAction::GrantAdmin } else { AdminAction::RevokeAdmin };
                b.accounts
                    .apply(Some(admin), user.id, action)
                    .await
                    .map(|u| Done::Message(format!("{} is {}an administrator.", u.username, if u.is_admin { "" } else { "no longer " })))
                    .map_err(crate::app_errors::to_app_error)
            }
            "delete" => {
                if field(form, "confirm").trim() != username {
                    Err(AppError::Invalid(format!("Type {username} in the box to confirm the deletion.")))
                } else {
                    let purge = field(form, "purge") == "yes";
                    match b.delete_user(Some(admin), &username, purge).await {
                        Ok(()) => Ok(Done::Message(format!("{username} is deleted; {}.", if purge { "their files are purged" } else { "their files are kept" }))),
                        Err(e) => match e.downcast::<crate::accounts::AccountError>() {
                            Ok(e) => Err(crate::app_errors::to_app_error(e)),
                            Err(e) => {
                                tracing::error!(error = %e, "deleting an account");
                                Err(AppError::Unavailable(format!("The account could not be deleted completely: {e}")))
                            }
                        },
                    }
                }
            }
            "limits" => {
                let opt_u64 = |name: &str| -> Result<Option<u64>, AppError> {
                    match field(form, name).trim() {
                        "" => Ok(None),
                        v => v.parse().map(Some).map_err(|_| AppError::Invalid(format!("{name}: not a whole number"))),
                    }
                };
                let cpus = match field(form, "cpus").trim() {
                    "" => None,
                    v => Some(v.parse::<f64>().ok().filter(|c| c.is_finite() && *c > 0.0).ok_or_else(|| AppError::Invalid("cpus: a positive number".into()))?),
                };
                let gpus = Some(field(form, "gpus").trim().to_string()).filter(|g| !g.is_empty());
                if let Some(g) = &gpus {
                    if !crate::config::is_gpu_setting(g) {
                        return Err(AppError::Invalid("GPUs: auto, all, none or a list like 0,1".into()));
                    }
                }
                let overrides = crate::workspace::spec::ResourceOverrides {
                    memory_limit_gib: opt_u64("memory_gib")?,
                    memory_reservation_gib: None,
                    swap_gib: None,
                    cpus,
                    shm_gib: None,
                    gpus,
                };
                b.workspaces
                    .set_overrides(&Actor::from(admin), &Owner::from(&user), &overrides)
                    .await
                    .map(|()| Done::Message(format!("{username}'s limits are stored; they apply at the workspace's next start from stopped.")))
                    .map_err(crate::app_errors::workspace_error)
            }
            _ => Err(AppError::Invalid("Unknown form.".into())),
        };
        let action = match op {
            "reset-password" => "password.reset",
            "promote" => "user.grant-admin",
            "demote" => "user.revoke-admin",
            "delete" if field(form, "purge") == "yes" => "user.delete-purge",
            "delete" => "user.delete",
            _ => "user.limits",
        };
        self.record(admin, client, action, &username, &result).await;
        result
    }

    /// The audit log page (administrators), filtered by the page's query.
    pub async fn audit_page(&self, admin: &CurrentUser, query: &HashMap<String, String>) -> Result<String, AppError> {
        if !admin.is_admin {
            return Err(AppError::Forbidden);
        }
        let date = |name: &str| -> Result<Option<i64>, AppError> {
            match field(query, name).trim() {
                "" => Ok(None),
                v => parse_day(v).map(Some).ok_or_else(|| AppError::Invalid(format!("{name}: a date like 2026-12-01"))),
            }
        };
        let filter = Filter {
            user: Some(field(query, "user").trim().to_string()).filter(|u| !u.is_empty()),
            action: Some(field(query, "action").trim().to_string()).filter(|a| !a.is_empty()),
            since: date("since")?,
            until: date("until")?.map(|d| d + 86_399),
            before_id: field(query, "before").trim().parse().ok(),
            limit: AUDIT_PAGE,
        };
        let entries = self.audit().list(&filter).await.map_err(|e| {
            tracing::error!(error = %e, "audit page");
            AppError::Unavailable("The database is not answering; try again shortly.".into())
        })?;
        let mut rows = String::new();
        for e in &entries {
            rows += &format!(
                r#"<tr data-action="{a}" data-outcome="{o}"><td>{at}</td><td>{k}: {who}</td><td>{c}</td><td>{a}</td><td>{t}</td><td>{o}</td><td>{d}</td></tr>"#,
                at = when(e.at),
                k = escape(&e.actor_kind),
                who = escape(&e.actor),
                c = escape(e.client.as_deref().unwrap_or("")),
                a = escape(&e.action),
                t = escape(&e.target),
                o = escape(&e.outcome),
                d = escape(&e.detail),
            );
        }
        let keep = |name: &str| escape(field(query, name));
        let older = match entries.last() {
            Some(last) if entries.len() as u32 == AUDIT_PAGE => {
                let mut q: Vec<(String, String)> = ["user", "action", "since", "until"].iter().map(|k| (k.to_string(), field(query, k).to_string())).collect();
                q.push(("before".into(), last.id.to_string()));
                let q: String = q.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", urlencoding::encode(v))).collect::<Vec<_>>().join("&");
                format!(r#"<p><a href="/admin/audit?{}" id="older">Older entries</a></p>"#, escape(&q))
            }
            _ => String::new(),
        };
        Ok(format!(
            r#"<section class="card" id="audit"><form method="get" action="/admin/audit" class="inline" id="audit-filter">
<input type="text" name="user" placeholder="user" value="{u}"><input type="text" name="action" placeholder="action, e.g. login or workspace" value="{a}">
<label class="inline">from <input type="date" name="since" value="{s}"></label><label class="inline">to <input type="date" name="until" value="{t}"></label><button type="submit">Filter</button></form>
<table class="table"><thead><tr><th>When</th><th>Who</th><th>From</th><th>Action</th><th>Target</th><th>Outcome</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>{older}</section>"#,
            u = keep("user"),
            a = keep("action"),
            s = keep("since"),
            t = keep("until"),
        ))
    }
}

/// `2026-12-01` → the Unix time of its midnight, UTC.
pub fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-').map(|p| p.parse::<i32>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_times_read_as_people_write_them() {
        assert_eq!(parse_day("2026-12-01"), Some(1_796_083_200));
        assert_eq!(parse_day("2026-13-01"), None);
        assert_eq!(parse_day("yesterday"), None);
        assert_eq!(when(1_796_083_200 + 3_600 + 120), "2026-12-01 01:02 UTC");
    }

    #[test]
    fn a_secret_page_escapes_what_it_shows() {
        let page = show_once_html("T", "<script>", "n&", "/account");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("n&amp;"));
        assert!(!page.contains("<script>"));
    }
}
