//! Starting, stopping, restarting, resetting and removing workspaces, and changing what they
//! are made from (credentials, limits). Each runs under the owner's lock and shows its steps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use app::model::{StepState, WorkspaceAction, WorkspaceState};

use super::names::workspace_name;
use super::records::WorkspaceRecord;
use super::runtime::{ExecOutcome, RuntimeError, RuntimeStatus};
use super::service::{Actor, Owner, WorkspaceError, Workspaces};
use super::services::{listing_from_exec, service_log, Listing, ServiceWatch, Step, LIST_SERVICES, LOG_SCAN_LINES, LOG_TAIL_LINES};
use super::spec::{ResourceOverrides, WorkspaceSecrets};
use crate::crypto::random_password;
use crate::hosts::App;
use crate::routes::traefik::UserRoute;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    SshPassword,
    VncPassword,
}

impl Credential {
    /// The argument `berth-set-credentials` takes.
    fn key(self) -> &'static str {
        match self {
            Credential::SshPassword => "ssh",
            Credential::VncPassword => "vnc",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Credential::SshPassword => "ssh_password",
            Credential::VncPassword => "vnc_password",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Credential::SshPassword => "SSH password",
            Credential::VncPassword => "VNC password",
        }
    }
}

/// When a regenerated credential takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialApplied {
    /// The running workspace uses it already.
    Now,
    /// Nothing is running: the next start applies it.
    AtNextStart,
}

/// The image's script that applies a password read from stdin to the running workspace.
const SET_CREDENTIALS: &str = "/usr/local/lib/berth/berth-set-credentials";
/// chpasswd and vncpasswd take well under a second; a hung exec must not hold the user's lock.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the watcher knocks on the service ports while it follows a start.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How often it asks the workspace for its services meanwhile (an exec, dearer than a knock).
const LIST_EVERY: Duration = Duration::from_secs(2);
/// `berth-services` answers in well under a second; a hung one must not stall the watch.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

impl Workspaces {
    fn user_route(&self, username: &str, secrets: &WorkspaceSecrets) -> UserRoute {
        UserRoute {
            upstream_host: self.runtime.proxy_host(username),
            jupyter_token: secrets.jupyter_token.clone(),
            app_secret: secrets.app_secret.clone(),
        }
    }

    /// Writes (or rewrites) the user's Traefik file; a failure is logged and shown, not fatal.
    fn write_routes(&self, username: &str, secrets: &WorkspaceSecrets) {
        if let Some(routes) = &self.routes {
            match routes.write_user(username, &self.user_route(username, secrets)) {
                Ok(()) => self.progress.step(username, "routes", StepState::Done, None),
                Err(e) => {
                    tracing::error!(user = username, error = %e, "cannot write Traefik routes");
                    self.progress.step(username, "routes", StepState::Failed, Some(e.to_string()));
                }
            }
        }
    }

    fn remove_routes(&self, username: &str) {
        if let Some(routes) = &self.routes {
            if let Err(e) = routes.remove_user(username) {
                tracing::error!(user = username, error = %e, "cannot remove Traefik routes");
            }
        }
    }

    /// Every approved user's routes, for the Traefik reconciliation.
    pub(super) async fn all_routes(&self) -> Result<Vec<(String, UserRoute)>, WorkspaceError> {
        Ok(self
            .records
            .all()
            .await?
            .into_iter()
            .filter(|r| r.approved)
            .map(|r| {
                let route = self.user_route(&r.username, &r.record.secrets);
                (r.username, route)
            })
            .collect())
    }

    /// Reads the workspace again after an operation, so the card is right before the event comes.
    pub(super) async fn refresh(&self, username: &str) {
        match self.runtime.observe(&workspace_name(username)).await {
            Ok(observed) => {
                if self.live.update(username, observed) {
                    self.progress.bump();
                }
            }
            Err(e) => tracing::debug!(user = username, error = %e, "cannot observe the workspace after an operation"),
        }
    }

    /// A disabled user keeps nothing running and no routes.
    pub async fn disable_user(&self, actor: &Actor, owner: &Owner) -> Result<(), WorkspaceError> {
        actor.may_administer()?;
        self.remove_routes(&owner.username);
        if self.record(owner).await?.is_some() {
            self.stop(actor, owner).await?;
            self.remove_routes(&owner.username);
        }
        Ok(())
    }

    /// Writes `message` to every terminal open in the owner's running workspace (as `wall`
    /// does: SSH sessions, the desktop's terminals). Nothing when it is not running.
    pub async fn tell(&self, owner: &Owner, message: &str) -> Result<(), WorkspaceError> {
        const WALL: &str = r#"for t in /dev/pts/[0-9]*; do [ -c "$t" ] && printf '\r\n*** Berth: %s\r\n' "$1" > "$t" 2>/dev/null; done; true"#;
        let name = workspace_name(&owner.username);
        match self.runtime.exec_with_input(&name, &["sh", "-c", WALL, "berth-tell", message], b"", EXEC_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// What the owner's running workspace prints for `cmd` (None when it is not running).
    pub async fn read_inside(&self, owner: &Owner, cmd: &[&str]) -> Result<Option<String>, WorkspaceError> {
        match self.runtime.exec_with_input(&workspace_name(&owner.username), cmd, b"", EXEC_TIMEOUT).await {
            Ok(outcome) => Ok(Some(outcome.output)),
            Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The owner's workspace credentials (None before the first start).
    pub async fn credentials(&self, actor: &Actor, owner: &Owner) -> Result<Option<WorkspaceSecrets>, WorkspaceError> {
        actor.may_use_secrets(owner)?;
        Ok(self.record(owner).await?.map(|r| r.secrets))
    }

    /// Replaces one of the user's service credentials. A running workspace gets it at once
    /// (through the image's `berth-set-credentials`); otherwise the entrypoint applies it at
    /// the next start, from the recreated container's environment.
    pub async fn regenerate_credential(&self, actor: &Actor, owner: &Owner, which: Credential) -> Result<CredentialApplied, WorkspaceError> {
        actor.may_use_secrets(owner)?;
        require_approved(owner)?;
        self.with_lock(&owner.username, || self.regenerate_locked(owner, which)).await
    }

    async fn regenerate_locked(&self, owner: &Owner, which: Credential) -> Result<CredentialApplied, WorkspaceError> {
        let username = owner.username.as_str();
        self.records.ensure(owner.id, username, &self.settings.ports).await?;
        let value = match which {
            Credential::SshPassword => random_password(20),
            Credential::VncPassword => random_password(8),
        };
        // Stored before anything is tried on the workspace, so a failure below never loses it:
        // the next start applies what the database holds.
        self.records.set_credential(owner.id, which.column(), &value).await?;
        let not_applied = |why: String| {
            tracing::warn!(user = %username, credential = which.label(), why = %why, "new credential not applied to the running workspace");
            WorkspaceError::CredentialNotApplied { credential: which.label(), why }
        };
        let name = workspace_name(username);
        let observed = self.runtime.observe(&name).await;
        self.note_runtime(&observed);
        let running = match observed {
            Ok(o) => o.is_some_and(|o| o.status == super::runtime::RuntimeStatus::Running),
            Err(e) => return Err(not_applied(e.to_string())),
        };
        if !running {
            return Ok(CredentialApplied::AtNextStart);
        }
        let input = format!("{value}\n");
        let outcome = self.runtime.exec_with_input(&name, &[SET_CREDENTIALS, which.key()], input.as_bytes(), EXEC_TIMEOUT).await;
        self.note_runtime(&outcome);
        match outcome {
            Ok(ExecOutcome { exit_code: Some(0), .. }) => {
                tracing::info!(user = %username, credential = which.label(), "new credential applied to the running workspace");
                Ok(CredentialApplied::Now)
            }
            Ok(ExecOutcome { exit_code, output }) => {
                let code = exit_code.map_or_else(|| "an unknown status".to_string(), |c| c.to_string());
                Err(not_applied(format!("{SET_CREDENTIALS} exited with {code}: {}", output.trim())))
            }
            // It stopped since we looked: the next start applies the stored one.
            Err(e) if e.status() == Some(409) => Ok(CredentialApplied::AtNextStart),
            Err(e) => Err(not_applied(e.to_string())),
        }
    }

    /// An administrator's limits for one user; applied when the workspace next starts from stopped.
    pub async fn set_overrides(&self, actor: &Actor, owner: &Owner, o: &ResourceOverrides) -> Result<(), WorkspaceError> {
        actor.may_administer()?;
        self.with_lock(&owner.username, || async {
            self.records.ensure(owner.id, &owner.username, &self.settings.ports).await?;
            self.records.set_overrides(owner.id, o).await
        })
        .await?;
        self.progress.bump();
        Ok(())
    }

    pub async fn apply(self: &Arc<Self>, actor: &Actor, owner: &Owner, action: WorkspaceAction) -> Result<(), WorkspaceError> {
        let started = std::time::Instant::now();
        let result = match action {
            WorkspaceAction::Start => self.start(actor, owner).await,
            WorkspaceAction::Stop => self.stop(actor, owner).await,
            WorkspaceAction::Restart => self.restart(actor, owner).await,
            WorkspaceAction::Reset => self.reset(actor, owner).await,
        };
        if let Some(hook) = &self.on_operation {
            hook(action.as_str(), result.is_ok(), started.elapsed());
        }
        result
    }

    /// Checks the actor, shows the operation as under way at once and runs it in the
    /// background; its steps and any error appear in the workspace view.
    pub fn apply_in_background(self: &Arc<Self>, actor: &Actor, owner: &Owner, action: WorkspaceAction) -> Result<(), WorkspaceError> {
        actor.may_operate(owner)?;
        if action != WorkspaceAction::Stop {
            require_approved(owner)?;
        }
        let busy = match action {
            WorkspaceAction::Stop => WorkspaceState::Stopping,
            _ => WorkspaceState::Starting,
        };
        self.progress.begin(&owner.username, busy, &[]);
        let (this, actor, owner) = (self.clone(), actor.clone(), owner.clone());
        tokio::spawn(async move {
            if let Err(e) = this.apply(&actor, &owner, action).await {
                tracing::warn!(user = %owner.username, action = action.as_str(), error = %e, "workspace operation failed");
                this.progress.finish(&owner.username, Some(e.to_string()));
            }
        });
        Ok(())
    }

    /// Creates the workspace if missing (recreating a stopped one whose plan changed) and starts it.
    pub async fn start(self: &Arc<Self>, actor: &Actor, owner: &Owner) -> Result<(), WorkspaceError> {
        actor.may_operate(owner)?;
        require_approved(owner)?;
        self.with_lock(&owner.username, || self.start_locked(owner, false)).await
    }

    pub async fn restart(self: &Arc<Self>, actor: &Actor, owner: &Owner) -> Result<(), WorkspaceError> {
        actor.may_operate(owner)?;
        require_approved(owner)?;
        self.with_lock(&owner.username, || async {
            let username = owner.username.as_str();
            // Before stopping: a restart that could not start again must leave the workspace running.
            if let Err(e) = self.restart_fits(owner).await {
                self.progress.finish(username, Some(e.to_string()));
                return Err(e);
            }
            self.progress.begin(username, WorkspaceState::Stopping, &["stop container"]);
            let name = workspace_name(username);
            let stopped = self
                .progress
                .run_step(username, "stop container", self.runtime.stop(&name, self.settings.defaults.stop_timeout_seconds))
                .await;
            self.note_runtime(&stopped);
            match stopped {
                Ok(()) => self.start_locked(owner, false).await,
                Err(e) => {
                    self.progress.finish(username, Some(e.to_string()));
                    Err(e.into())
                }
            }
        })
        .await
    }

    async fn restart_fits(&self, owner: &Owner) -> Result<(), WorkspaceError> {
        let Some(record) = self.record(owner).await? else { return Ok(()) };
        let plan = self.plan_for(&owner.username, &record).await?;
        Ok(self.runtime.prepare_storage(&plan, true).await?)
    }

    /// Removes the container and creates it afresh; homes and other directories are kept.
    pub async fn reset(self: &Arc<Self>, actor: &Actor, owner: &Owner) -> Result<(), WorkspaceError> {
        actor.may_operate(owner)?;
        require_approved(owner)?;
        self.with_lock(&owner.username, || self.start_locked(owner, true)).await
    }

    pub async fn stop(&self, actor: &Actor, owner: &Owner) -> Result<(), WorkspaceError> {
        actor.may_operate(owner)?;
        let username = owner.username.as_str();
        self.with_lock(username, || async {
            self.records.set_desired(owner.id, false).await?;
            self.progress.begin(username, WorkspaceState::Stopping, &["stop container"]);
            let result = self
                .progress
                .run_step(username, "stop container", self.runtime.stop(&workspace_name(username), self.settings.defaults.stop_timeout_seconds))
                .await;
            self.note_runtime(&result);
            if let Some(record) = self.record(owner).await? {
                self.write_routes(username, &record.secrets);
            }
            self.refresh(username).await;
            self.progress.finish(username, result.as_ref().err().map(|e| e.to_string()));
            Ok(result?)
        })
        .await
    }

    /// Removes the container and the user's network (data directories stay).
    pub async fn remove(&self, actor: &Actor, owner: &Owner) -> Result<(), WorkspaceError> {
        actor.may_operate(owner)?;
        let username = owner.username.as_str();
        self.with_lock(username, || async {
            self.records.set_desired(owner.id, false).await?;
            let result = async {
                self.runtime.remove(&workspace_name(username)).await?;
                self.runtime.disconnect(username).await
            }
            .await;
            self.note_runtime(&result);
            self.remove_routes(username);
            self.refresh(username).await;
            Ok(result?)
        })
        .await?;
        self.progress.forget(username);
        Ok(())
    }

    async fn start_locked(self: &Arc<Self>, owner: &Owner, fresh: bool) -> Result<(), WorkspaceError> {
        let username = owner.username.as_str();
        let mut steps = vec!["prepare storage", "network"];
        if fresh {
            steps.push("remove container");
        }
        steps.extend(["create container", "start container"]);
        self.progress.begin(username, WorkspaceState::Starting, &steps);
        let result = self.start_steps(owner, fresh).await;
        if let Err(e) = &result {
            if let WorkspaceError::Runtime(RuntimeError::Unavailable(why)) = e {
                *self.engine_problem.lock().expect("engine state") = Some(why.clone());
            }
            tracing::warn!(user = username, error = %e, "workspace start failed");
        }
        self.refresh(username).await;
        self.progress.finish(username, result.as_ref().err().map(|e| e.to_string()));
        result
    }

    async fn start_steps(self: &Arc<Self>, owner: &Owner, fresh: bool) -> Result<(), WorkspaceError> {
        let username = owner.username.as_str();
        let record: WorkspaceRecord = self.records.ensure(owner.id, username, &self.settings.ports).await?;
        self.check_gpus(&record, username).await?;
        let plan = self.plan_for(username, &record).await?;
        let progress = &self.progress;
        // Asked once, under the user's lock; a runtime that does not answer fails the network
        // step below, where the dashboard shows it.
        let existing = self.runtime.observe(&plan.name).await;
        // Storage first: a workspace refused for want of space must not be brought back later.
        // Start on a running workspace changes nothing on disk, so it is never refused.
        let running = !fresh && matches!(&existing, Ok(Some(o)) if o.status.is_up());
        progress.run_step(username, "prepare storage", self.runtime.prepare_storage(&plan, !running)).await?;
        self.records.set_desired(owner.id, true).await?;

        let network = progress.run_step(username, "network", self.runtime.connect(&plan)).await;
        self.note_runtime(&network);
        network?;

        let existing = if fresh {
            progress.run_step(username, "remove container", self.runtime.remove(&plan.name)).await?;
            None
        } else {
            existing?
        };
        let hash = plan.hash();
        match existing {
            Some(o) if o.status.is_up() => {
                progress.step(username, "create container", StepState::Done, Some("already exists".into()));
                progress.step(username, "start container", StepState::Done, Some("already running".into()));
            }
            Some(o) if o.plan_hash.as_deref() != Some(hash.as_str()) => {
                // Stopped and out of date: recreate it from the current plan.
                progress
                    .run_step(username, "create container", async {
                        self.runtime.remove(&plan.name).await?;
                        self.create_whole(&plan).await
                    })
                    .await?;
                progress.run_step(username, "start container", self.timed("start container", self.runtime.start(&plan.name))).await?;
            }
            Some(_) => {
                progress.step(username, "create container", StepState::Done, Some("already exists".into()));
                progress.run_step(username, "start container", self.timed("start container", self.runtime.start(&plan.name))).await?;
            }
            None => {
                progress.run_step(username, "create container", self.create_whole(&plan)).await?;
                progress.run_step(username, "start container", self.timed("start container", self.runtime.start(&plan.name))).await?;
            }
        }
        *self.engine_problem.lock().expect("engine state") = None;
        self.write_routes(username, &record.secrets);
        tracing::info!(user = username, "workspace running");
        self.watch_services(username, None);
        Ok(())
    }

    /// A runtime call that must end: a hung engine must not hold the owner's lock for ever.
    async fn timed<T>(&self, op: &str, call: impl std::future::Future<Output = Result<T, RuntimeError>>) -> Result<T, RuntimeError> {
        match tokio::time::timeout(self.operation_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::Failed {
                op: op.to_string(),
                status: None,
                message: format!("no answer within {:.1} s; the engine may be overloaded", self.operation_timeout.as_secs_f64()),
            }),
        }
    }

    /// Creates the workspace, or leaves none: a create that failed half-way (the engine made
    /// the container, then the answer was lost) is removed, so the next start begins clean.
    async fn create_whole(&self, plan: &super::spec::WorkspacePlan) -> Result<super::runtime::Created, RuntimeError> {
        let created = self.timed("create container", self.runtime.create(plan)).await;
        if created.is_err() {
            if let Err(e) = self.runtime.remove(&plan.name).await {
                tracing::warn!(workspace = %plan.name, error = %e, "cannot remove a half-created workspace");
            }
        }
        created
    }

    /// The machines workspaces run on (none on a runtime of one machine), for admins.
    pub async fn nodes(&self, actor: &Actor) -> Result<Vec<super::runtime::NodeView>, WorkspaceError> {
        actor.may_administer()?;
        Ok(self.runtime.nodes().await?)
    }

    /// Pins the owner's home to `node` (id or host name): their next start runs there. The
    /// workspace must be stopped for good. Copies nothing: says what the admin must copy.
    pub async fn move_to_node(&self, actor: &Actor, owner: &Owner, node: &str) -> Result<String, WorkspaceError> {
        actor.may_administer()?;
        let username = owner.username.as_str();
        self.with_lock(username, || async {
            if let Some(o) = self.runtime.observe(&workspace_name(username)).await? {
                if !matches!(o.status, RuntimeStatus::Exited | RuntimeStatus::Created) {
                    return Err(WorkspaceError::MustBeStopped { username: username.to_string(), state: o.status.workspace_state().as_str() });
                }
            }
            let from = self.runtime.nodes().await?.into_iter().find(|n| n.homes.iter().any(|h| h == username));
            let to = self.runtime.move_home(username, node).await?;
            tracing::info!(user = username, from = ?from.as_ref().map(|n| &n.hostname), to = %to.hostname, "home moved");
            Ok(move_message(username, from.as_ref(), &to, &self.settings.storage_root))
        })
        .await
    }

    /// Forgets where a deleted account's home was, so a new account of the same name is not
    /// placed with the old one's files.
    pub async fn forget_home(&self, actor: &Actor, owner: &Owner) -> Result<(), WorkspaceError> {
        actor.may_administer()?;
        Ok(self.runtime.forget_home(&owner.username).await?)
    }

    /// Follows the services of a workspace that has just started, in the background: asks the
    /// image which services it runs, knocks on their ports until each answers, shows each as a
    /// step (a failed one with its last log lines) and marks the workspace ready when all
    /// answer. A newer watch of the same workspace (another start) ends this one.
    pub(super) fn watch_services(self: &Arc<Self>, username: &str, started_at: Option<i64>) {
        let generation = self.services.begin(username, started_at);
        let (this, username) = (self.clone(), username.to_string());
        tokio::spawn(async move { this.follow_services(&username, generation).await });
    }

    /// A workspace seen running without a watch of this start (started by another process or
    /// by Docker, or running when Berth started) gets one, so its card and links are right too.
    pub(super) fn watch_if_new(self: &Arc<Self>, observed: &super::runtime::Observed) {
        let Some(owner) = observed.owner.as_deref() else { return };
        if observed.status == super::runtime::RuntimeStatus::Running && self.services.needs_watch(owner, observed.started_at) {
            self.watch_services(owner, observed.started_at);
        }
    }

    async fn follow_services(&self, username: &str, generation: u64) {
        let name = workspace_name(username);
        let deadline = tokio::time::Instant::now() + self.probe_timeout;
        let app_secret = self.records.app_secret(username);
        let mut watch: Option<ServiceWatch> = None;
        let mut addresses: HashMap<u16, std::net::SocketAddr> = HashMap::new();
        let mut listed_at: Option<tokio::time::Instant> = None;
        let mut problem = None;
        let mut shown: Vec<Step> = Vec::new();
        let ready = loop {
            if !self.services.is_current(username, generation) {
                return;
            }
            let undeclared = watch.as_ref().is_some_and(|w| !w.declared);
            if !undeclared && listed_at.is_none_or(|at| at.elapsed() >= LIST_EVERY) {
                listed_at = Some(tokio::time::Instant::now());
                let answer = self.runtime.exec_with_input(&name, &[LIST_SERVICES], b"", LIST_TIMEOUT).await;
                match listing_from_exec(answer) {
                    Listing::Declared(services) => {
                        let w = watch.get_or_insert_with(ServiceWatch::declared);
                        for program in w.update(&services) {
                            let log = match self.runtime.log_tail(&name, LOG_SCAN_LINES).await {
                                Ok(log) => Ok(service_log(&log, &program, LOG_TAIL_LINES)),
                                Err(e) => Err(e.to_string()),
                            };
                            tracing::warn!(user = username, service = %program, "workspace service failed");
                            w.set_log(&program, log);
                        }
                        self.services.learned(username, generation, w.installed());
                    }
                    Listing::Undeclared => {
                        tracing::debug!(user = username, "the workspace image does not declare its services; probing every port");
                        let w = ServiceWatch::undeclared();
                        self.services.learned(username, generation, w.installed());
                        watch = Some(w);
                    }
                    Listing::NotRunning => break false,
                    Listing::Unknown(why) => problem = Some(why),
                }
            }
            if let Some(w) = &mut watch {
                for probe in w.to_probe() {
                    let address = match addresses.get(&probe.port) {
                        Some(a) => *a,
                        None => match self.runtime.service_address(&name, probe.port).await {
                            Ok(Some(a)) => *addresses.entry(probe.port).or_insert(a),
                            // Not running any more.
                            Ok(None) => break,
                            Err(_) => continue,
                        },
                    };
                    let gated = App::ALL.iter().any(|app| app.gated() && app.port() == probe.port);
                    if answers(address, gated.then_some(app_secret.as_str())).await {
                        w.answered(probe.program);
                    }
                }
                self.show_steps(username, &mut shown, w.steps(false));
                if w.ready() {
                    break true;
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                match &watch {
                    Some(w) => self.show_steps(username, &mut shown, w.steps(true)),
                    None => {
                        let why = problem.take().unwrap_or_else(|| "no answer".into());
                        tracing::warn!(user = username, why = %why, "cannot tell which services the workspace runs");
                        self.progress.step(username, "services", StepState::Failed, Some(format!("the workspace did not say which services it runs: {why}")));
                    }
                }
                break false;
            }
            tokio::time::sleep(PROBE_EVERY.min(deadline - now)).await;
        };
        let started_at = self.live.get(username).and_then(|o| o.started_at);
        self.services.finish(username, generation, ready, started_at);
        // Views read the board: dashboards are told.
        self.progress.bump();
    }

    /// Writes the steps that changed since `shown`, so a dashboard is pushed news only.
    fn show_steps(&self, username: &str, shown: &mut Vec<Step>, steps: Vec<Step>) {
        for step in &steps {
            if !shown.contains(step) {
                let (name, state, detail) = step.clone();
                self.progress.step(username, &name, state, detail);
            }
        }
        *shown = steps;
    }

    /// What Berth learnt of the workspace's services: the installed supervisor programs
    /// (None until the workspace has run under this Berth and said).
    pub fn installed_services(&self, actor: &Actor, owner: &Owner) -> Result<Option<Vec<String>>, WorkspaceError> {
        actor.may_operate(owner)?;
        Ok(self.services.installed(&owner.username))
    }
}

/// What an admin is told after a move: which directories to copy, from where to where. Pure.
pub fn move_message(username: &str, from: Option<&super::runtime::NodeView>, to: &super::runtime::NodeView, storage_root: &std::path::Path) -> String {
    let directories = super::spec::user_directories(storage_root, username);
    let list: Vec<String> = directories.iter().map(|d| format!("  {}", d.display())).collect();
    match from {
        Some(from) if from.id == to.id => format!("{username}'s home is already on {}; nothing to copy.", to.hostname),
        Some(from) => format!(
            "{username}'s next start runs on {to_host} ({to_addr}). Berth copied nothing: copy these directories from {from_host} ({from_addr}) to the same paths on {to_host}, keeping owners and modes (e.g. rsync -aHAX), before that start:
{}",
            list.join("
"),
            to_host = to.hostname,
            to_addr = to.address,
            from_host = from.hostname,
            from_addr = from.address,
        ),
        None => format!(
            "{username}'s next start runs on {} ({}). No node held the home before; if its files are elsewhere, copy these directories there first:
{}",
            to.hostname,
            to.address,
            list.join("
")
        ),
    }
}

fn require_approved(owner: &Owner) -> Result<(), WorkspaceError> {
    if owner.approved {
        Ok(())
    } else {
        Err(WorkspaceError::NotApproved(owner.username.clone()))
    }
}

/// Whether a service accepts connections. The app gate accepts them on the code-server and
/// TensorBoard ports even when nothing runs behind it (slim has no code-server), so those are
/// asked through the gate with the user's secret: a 502, 503 or 504 from it means the service
/// itself is not up yet.
async fn answers(address: std::net::SocketAddr, gate_secret: Option<&str>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(address);
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_millis(500), connect).await else { return false };
    let Some(secret) = gate_secret else { return true };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {address}\r\n{}: {secret}\r\nConnection: close\r\n\r\n",
        crate::routes::traefik::APP_SECRET_HEADER
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut status_line = [0u8; 12];
        stream.read_exact(&mut status_line).await?;
        Ok::<_, std::io::Error>(status_line)
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(line)) => line.starts_with(b"HTTP/1.") && !matches!(&line[9..12], b"502" | b"503" | b"504"),
        _ => false,
    }
}
