//! `server`'s implementation of the services the `app` layer calls.

use app::error::AppError;
use std::sync::Arc;

use app::model::{
    AdminAction, CurrentUser, GpuBoard, UsagePanel, UserSummary, WorkspaceAction, WorkspaceCredentials, WorkspaceView, WorkspacesOverview,
};
use app::services::{LogInRequest, PortalServices, SignUpRequest};

use crate::accounts::{AccountError, Accounts};
use crate::app_errors::{sharing_error, to_app_error, workspace_error};
use crate::audit::{AuditActor, Event, Outcome};
use crate::workspace::{Actor, Credential, Owner, RuntimeError, WorkspaceError, Workspaces};

pub struct Portal {
    pub accounts: Accounts,
    pub workspaces: Arc<Workspaces>,
    pub gateway: Arc<crate::routes::verify::Gateway>,
    pub sso: Arc<crate::sso::Sso>,
    pub password_login: bool,
    pub monitor: Arc<crate::monitor::Monitor>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub sharing: Arc<crate::sharing::Sharing>,
    pub audit: crate::audit::Audit,
    pub self_service: Arc<crate::self_service::SelfService>,
}

/// What anonymous input may name in the audit log: a valid username is the target; anything
/// else is not (it could pose as "bob/key x" under an admin's filter) and goes, cleaned, into the
/// detail instead.
fn typed_name(typed: &str, detail: String) -> (String, String) {
    match crate::username::Username::parse(typed) {
        Ok(name) => (name.as_str().to_string(), detail),
        Err(_) => ("-".to_string(), format!("{detail} (typed name: {:?})", crate::sharing::clean_note(typed)).trim().to_string()),
    }
}

impl Portal {
    async fn note(&self, event: Event<'_>) {
        self.audit.record(event).await
    }
}

/// The longest history a usage panel shows: the retention's default.
const MAX_PANEL_HOURS: u32 = 7 * 24;
/// The most points a panel's chart gets (an hour of 10-second samples).
const CHART_POINTS: usize = 360;

fn password_login_off() -> AppError {
    AppError::Refused("Password login is turned off here; use single sign-on.".into())
}



#[async_trait::async_trait]
impl PortalServices for Portal {
    async fn sign_up(&self, r: SignUpRequest) -> Result<(), AppError> {
        if !self.password_login {
            return Err(password_login_off());
        }
        let result = self.accounts.sign_up(&r.username, &r.email, &r.password, r.client).await;
        // A refusal for the rate limit is not a sign-up attempt worth a line each.
        if !matches!(result, Err(AccountError::TooManyAttempts(_))) {
            let outcome = if result.is_ok() { Outcome::Ok } else { Outcome::Failed };
            let detail = result.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
            let (name, detail) = typed_name(&r.username, detail);
            self.note(Event::new(AuditActor::Anonymous, "signup", &name).client(r.client).outcome(outcome).detail(detail)).await;
        }
        result.map(drop).map_err(to_app_error)
    }

    async fn log_in(&self, r: LogInRequest) -> Result<CurrentUser, AppError> {
        if !self.password_login {
            return Err(password_login_off());
        }
        let result = self.accounts.log_in(&r.username, &r.password, r.client).await;
        // Refusals before the password is checked (rate limit, busy) are not login attempts.
        let (name, typed) = typed_name(&r.username, String::new());
        match &result {
            Ok(user) => {
                self.metrics.login(true, "password");
                self.note(Event::new(AuditActor::of(&user.current()), "login", &user.username).client(r.client).detail("password")).await;
            }
            Err(e @ (AccountError::BadCredentials | AccountError::PendingApproval | AccountError::Rejected | AccountError::Disabled)) => {
                self.metrics.login(false, "password");
                let outcome = if matches!(e, AccountError::BadCredentials) { Outcome::Failed } else { Outcome::Refused };
                let detail = if typed.is_empty() { e.to_string() } else { format!("{e} {typed}") };
                self.note(Event::new(AuditActor::Anonymous, "login", &name).client(r.client).outcome(outcome).detail(detail)).await;
            }
            Err(_) => {}
        }
        result.map(|u| u.current()).map_err(to_app_error)
    }

    async fn list_users(&self, actor: &CurrentUser) -> Result<Vec<UserSummary>, AppError> {
        if !actor.is_admin {
            return Err(AppError::Forbidden);
        }
        let users = self.accounts.list().await.map_err(to_app_error)?;
        Ok(users.iter().map(|u| u.summary()).collect())
    }

    async fn apply_admin_action(&self, actor: &CurrentUser, user_id: i64, action: AdminAction) -> Result<(), AppError> {
        let result = self.accounts.apply(Some(actor), user_id, action).await;
        let target = match &result {
            Ok(u) => u.username.clone(),
            Err(_) => format!("user #{user_id}"),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(AccountError::NotAllowed(_)) => Outcome::Refused,
            Err(_) => Outcome::Failed,
        };
        let name = format!("user.{}", action.as_str());
        self.note(Event::new(AuditActor::of(actor), &name, &target).outcome(outcome).detail(result.as_ref().err().map(|e| e.to_string()).unwrap_or_default())).await;
        let user = result.map_err(to_app_error)?;
        if matches!(action, AdminAction::Disable | AdminAction::Reject) {
            self.workspaces.disable_user(&Actor::from(actor), &Owner::from(&user)).await.map_err(workspace_error)?;
            self.sharing.forget_user(&Owner::from(&user)).await.map_err(sharing_error)?;
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
        let owner = self.owner_named(actor, owner).await?;
        let result = self.workspaces.apply_in_background(&Actor::from(actor), &owner, action);
        let name = format!("workspace.{}", action.as_str());
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(WorkspaceError::Forbidden(_)) => Outcome::Refused,
            Err(_) => Outcome::Failed,
        };
        // Accepted here; it runs in the background (its progress and any error show on the card).
        let detail = result.as_ref().err().map(|e| e.to_string()).unwrap_or_else(|| "accepted".into());
        self.note(Event::new(AuditActor::of(actor), &name, &owner.username).outcome(outcome).detail(detail)).await;
        result.map_err(workspace_error)
    }

    async fn drawn_page(&self, actor: &CurrentUser, page: &str, query: &str, session: Option<String>, outcome: Option<(bool, String)>) -> Result<String, AppError> {
        let stored = session.map(|id| crate::sessions::stored_id(&id));
        match page {
            "account" => self.self_service.account_page(actor, stored.as_deref(), outcome).await,
            "admin-accounts" => self.self_service.admin_accounts_page(actor, outcome).await,
            "audit" => {
                let query: std::collections::HashMap<String, String> = url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes()).into_owned().collect();
                self.self_service.audit_page(actor, &query).await
            }
            _ => Err(AppError::Invalid("No such page.".into())),
        }
    }

    async fn logged_out(&self, user: &CurrentUser, client: std::net::IpAddr) {
        self.note(Event::new(AuditActor::of(user), "logout", &user.username).client(client)).await;
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
        let result = self.workspaces.regenerate_credential(&Actor::from(user), &Owner::from(user), which).await;
        let action = match which {
            Credential::SshPassword => "credential.ssh-password",
            Credential::VncPassword => "credential.vnc-password",
        };
        let outcome = if result.is_ok() { Outcome::Ok } else { Outcome::Failed };
        let detail = result.as_ref().err().map(|e| e.to_string()).unwrap_or_else(|| "regenerated".into());
        self.note(Event::new(AuditActor::of(user), action, &user.username).outcome(outcome).detail(detail)).await;
        result.map(|_| ()).map_err(workspace_error)
    }

    async fn workspaces_overview(&self, admin: &CurrentUser) -> Result<WorkspacesOverview, AppError> {
        let mut overview = self.workspaces.overview(&Actor::from(admin)).await.map_err(workspace_error)?;
        for row in &mut overview.rows {
            row.usage = self.monitor.now_of(&row.username);
        }
        let (cpus, memory) = match self.workspaces.capabilities().await {
            Ok(c) => (c.host_cpus, c.host_memory_bytes),
            Err(_) => (0, 0),
        };
        overview.host = self.monitor.host_totals(cpus, memory);
        Ok(overview)
    }

    async fn usage_panel(&self, actor: &CurrentUser, owner: &str, hours: u32) -> Result<UsagePanel, AppError> {
        let owner = self.owner_named(actor, owner).await?;
        let actor = Actor::from(actor);
        actor.may_watch(&owner).map_err(workspace_error)?;
        let view = self.workspaces.view(&actor, &owner).await.map_err(workspace_error)?;
        let until = crate::db::now();
        let hours = hours.clamp(1, MAX_PANEL_HOURS);
        let since = until - i64::from(hours) * 3600;
        let history = self.monitor.history.since(&owner.username, since).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read the usage history");
            AppError::Unavailable("The usage history cannot be read right now.".into())
        })?;
        let history = crate::monitor::history::thin(history, since, until, CHART_POINTS);
        let (host_cpus, host_memory_bytes) = match self.workspaces.capabilities().await {
            Ok(c) => (c.host_cpus, c.host_memory_bytes),
            Err(_) => (0, 0),
        };
        Ok(UsagePanel {
            username: owner.username.clone(),
            state: view.state,
            now: self.monitor.now_of(&owner.username),
            history,
            until,
            hours,
            limits: view.limits,
            host_cpus,
            host_memory_bytes,
            gpu_note: self.monitor.gpu_board().1,
        })
    }

    async fn log_tail(&self, actor: &CurrentUser, owner: &str, search: &str) -> Result<Vec<String>, AppError> {
        use futures_util::StreamExt;
        if search.len() > 200 {
            return Err(AppError::Invalid("The search text is too long.".into()));
        }
        let owner = self.owner_named(actor, owner).await?;
        let request = crate::workspace::runtime::LogRequest { tail: crate::workspace::LOG_PAGE_TAIL, follow: false };
        let lines = match self.workspaces.logs(&Actor::from(actor), &owner, request).await {
            Ok(lines) => lines,
            Err(WorkspaceError::Runtime(e)) if e.status() == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(workspace_error(e)),
        };
        let needle = search.trim().to_lowercase();
        let lines: Vec<Result<String, RuntimeError>> = lines.collect().await;
        let mut shown = Vec::new();
        for line in lines {
            let line = line.map_err(|e| workspace_error(e.into()))?;
            if crate::workspace::log_line_matches(&line, &needle) {
                shown.push(line);
            }
        }
        Ok(shown)
    }

    async fn gpu_board(&self, admin: &CurrentUser) -> Result<GpuBoard, AppError> {
        if !admin.is_admin {
            return Err(AppError::Forbidden);
        }
        let (gpus, note) = self.monitor.gpu_board();
        Ok(GpuBoard { gpus, note })
    }

    async fn gpu_share(&self, actor: &CurrentUser) -> Result<app::model::GpuShareView, AppError> {
        self.sharing.board(&Owner::from(actor)).await.map_err(sharing_error)
    }

    async fn sharing_admin(&self, admin: &CurrentUser) -> Result<app::model::SharingAdminView, AppError> {
        self.sharing.admin_view(&Actor::from(admin), &Owner::from(admin)).await.map_err(sharing_error)
    }

    async fn sharing_command(&self, actor: &CurrentUser, command: app::model::SharingCommand) -> Result<String, AppError> {
        self.sharing.command(&Actor::from(actor), &Owner::from(actor), command).await.map_err(sharing_error)
    }
}


impl Portal {
    /// The account `owner` names, as an owner the actor may act on (checked by the service).
    async fn owner_named(&self, actor: &CurrentUser, owner: &str) -> Result<Owner, AppError> {
        if owner == actor.username {
            return Ok(Owner::from(actor));
        }
        if !actor.is_admin {
            // Whether another account exists is not a user's business.
            return Err(AppError::Forbidden);
        }
        Ok(Owner::from(&self.accounts.find_by_name(owner).await.map_err(to_app_error)?))
    }
}
