//! The image's services as Berth sees them: which are installed (the supervisor programs the
//! image's entrypoint enabled at this start, printed by its `berth-services`), how each is
//! doing, and what the card makes of that (steps, "ready", launch links). The decisions here
//! are pure; `lifecycle` runs the watcher that feeds them what the runtime said, and
//! [`ServiceBoard`] keeps what was learnt for the views.

use std::collections::HashMap;
use std::sync::Mutex;

use app::model::StepState;

use super::names::container_port;
use super::runtime::{ExecOutcome, RuntimeError};
use crate::hosts::App;

/// The image's script that prints its services as JSON (docker/workspace/bin/berth-services).
pub const LIST_SERVICES: &str = "/usr/local/lib/berth/berth-services";
/// Lines of a failed service's own output the card shows.
pub const LOG_TAIL_LINES: usize = 20;
/// How far back in the workspace's log (every service's, interleaved) a failed service's lines
/// are looked for: the log is never read whole.
pub const LOG_SCAN_LINES: usize = 2000;

/// A service as supervisord reports it, in the few states the card tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    Starting,
    Running,
    Failed,
    Stopped,
}

impl ServiceState {
    /// From supervisord's state name.
    pub fn from_supervisor(name: &str) -> ServiceState {
        match name {
            "RUNNING" => ServiceState::Running,
            "STARTING" => ServiceState::Starting,
            // Someone stopped it (supervisorctl stop): not a failure, but not there either.
            "STOPPED" | "STOPPING" => ServiceState::Stopped,
            // BACKOFF: it exited too soon and waits for another try; EXITED: it ended when it
            // should not have; FATAL: supervisord gave up on it; UNKNOWN: supervisord lost track.
            _ => ServiceState::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub state: ServiceState,
}

/// What asking the workspace for its services gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// The image said which services it runs.
    Declared(Vec<Service>),
    /// The image has no `berth-services` (one built before it, or a stand-in): every service
    /// port is probed, as Berth did before images declared their services.
    Undeclared,
    /// The workspace is not running (any more).
    NotRunning,
    /// No answer yet (supervisord still starting) or an answer that makes no sense: asked again.
    Unknown(String),
}

/// The JSON `berth-services` prints: `[{"name": "sshd", "state": "RUNNING"}, …]`.
pub fn parse_services(output: &str) -> Result<Vec<Service>, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        name: String,
        state: String,
    }
    let raw: Vec<Raw> = serde_json::from_str(output.trim()).map_err(|e| format!("{LIST_SERVICES} printed something else than its JSON list ({e}): {}", snippet(output)))?;
    if let Some(bad) = raw.iter().find(|r| r.name.is_empty() || r.name.len() > 64 || !r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))) {
        return Err(format!("{LIST_SERVICES} named a service {:?}", bad.name));
    }
    Ok(raw.into_iter().map(|r| Service { state: ServiceState::from_supervisor(&r.state), name: r.name }).collect())
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Reads the answer of `LIST_SERVICES` run in the workspace.
pub fn listing_from_exec(outcome: Result<ExecOutcome, RuntimeError>) -> Listing {
    match outcome {
        Ok(ExecOutcome { exit_code: Some(0), output }) => match parse_services(&output) {
            Ok(services) => Listing::Declared(services),
            Err(why) => Listing::Unknown(why),
        },
        // 126/127: the script (or its interpreter) is not in the image; Docker says so with
        // these codes whether the exec itself or a shell failed to start it.
        Ok(ExecOutcome { exit_code: Some(126 | 127), .. }) => Listing::Undeclared,
        Ok(ExecOutcome { exit_code, output }) => {
            let code = exit_code.map_or_else(|| "an unknown status".to_string(), |c| c.to_string());
            Listing::Unknown(format!("{LIST_SERVICES} exited with {code}: {}", snippet(&output)))
        }
        Err(e) if e.status() == Some(409) => Listing::NotRunning,
        // Some engines refuse the exec itself when the file is missing.
        Err(e) if e.to_string().contains("no such file or directory") || e.to_string().contains("executable file not found") => {
            Listing::Undeclared
        }
        Err(e) => Listing::Unknown(e.to_string()),
    }
}

/// A service that answers on a port of the workspace: the card shows "<label> answering".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The supervisor program.
    pub program: &'static str,
    pub label: &'static str,
    pub port: u16,
}

/// The services with a port, in the order the card lists them. code-server and TensorBoard
/// are reached through the app gate (which answers on their ports even when they do not; see
/// `lifecycle::answers`).
pub const PROBES: &[Probe] = &[
    Probe { program: "sshd", label: "SSH", port: container_port::SSH },
    Probe { program: "vnc", label: "Desktop (VNC)", port: container_port::VNC },
    Probe { program: "xrdp", label: "Remote desktop (RDP)", port: container_port::RDP },
    Probe { program: "novnc", label: "Desktop in browser (noVNC)", port: container_port::NOVNC },
    Probe { program: "code-server", label: "VS Code", port: container_port::CODE },
    Probe { program: "jupyter", label: "Jupyter", port: container_port::JUPYTER },
    Probe { program: "tensorboard", label: "TensorBoard", port: container_port::TENSORBOARD },
];

pub fn probe_for(program: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.program == program)
}

/// How the card names a service.
pub fn label(program: &str) -> String {
    if let Some(probe) = probe_for(program) {
        return probe.label.to_string();
    }
    match program {
        "dbus" => "D-Bus",
        "dockerd" => "Docker",
        "xrdp-sesman" => "RDP sessions",
        "app-gate" => "App gate",
        "x2go" => "X2Go",
        other => other,
    }
    .to_string()
}

/// The supervisor program behind a launch link.
pub fn program_of(app: App) -> &'static str {
    match app {
        App::Code => "code-server",
        App::Jupyter => "jupyter",
        App::TensorBoard => "tensorboard",
        App::Desktop => "novnc",
    }
}

/// Whether the workspace has the app: only when its services are known and include it.
pub fn app_installed(app: App, installed: Option<&[String]>) -> bool {
    installed.is_some_and(|programs| programs.iter().any(|p| p == program_of(app)))
}

/// The last `keep` lines `program` printed, from the tail of the workspace's log, without
/// their `[program] ` prefix (docker/workspace/bin/berth-logged adds it), oldest first.
pub fn service_log(log: &[String], program: &str, keep: usize) -> Vec<String> {
    let prefix = format!("[{program}] ");
    let mine: Vec<&str> = log.iter().filter_map(|line| line.strip_prefix(&prefix)).collect();
    mine[mine.len().saturating_sub(keep)..].iter().map(|l| l.to_string()).collect()
}

/// One installed service as the watcher follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub name: String,
    pub state: ServiceState,
    /// Its port accepted a connection (or, behind the gate, the service answered).
    pub answered: bool,
    /// It failed at some point during this watch: a service without a port shows a step then.
    pub failed_once: bool,
    /// Its last lines, read when it failed; an error when they could not be read.
    pub log: Option<Result<Vec<String>, String>>,
}

/// A step of the card: (name, state, detail).
pub type Step = (String, StepState, Option<String>);

/// The services of one workspace start, from their listings and probes to the card's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWatch {
    pub services: Vec<Tracked>,
    /// The image declared them (else: every probe, states unknown, never failed).
    pub declared: bool,
}

impl ServiceWatch {
    /// An image that declares nothing: every service port is probed, as before.
    pub fn undeclared() -> ServiceWatch {
        let services = PROBES
            .iter()
            .map(|p| Tracked { name: p.program.into(), state: ServiceState::Running, answered: false, failed_once: false, log: None })
            .collect();
        ServiceWatch { services, declared: false }
    }

    pub fn declared() -> ServiceWatch {
        ServiceWatch { services: Vec::new(), declared: true }
    }

    /// The installed programs.
    pub fn installed(&self) -> Vec<String> {
        self.services.iter().map(|s| s.name.clone()).collect()
    }

    /// Takes a new listing; returns the services that have just failed (their logs are wanted).
    /// A failed service stays failed through supervisord's retries (BACKOFF, STARTING, BACKOFF…)
    /// until it runs again, so the card does not flicker between "failed" and "starting".
    pub fn update(&mut self, listed: &[Service]) -> Vec<String> {
        let mut newly_failed = Vec::new();
        let mut next = Vec::new();
        for service in listed {
            let mut tracked = self
                .services
                .iter()
                .find(|t| t.name == service.name)
                .cloned()
                .unwrap_or(Tracked { name: service.name.clone(), state: ServiceState::Starting, answered: false, failed_once: false, log: None });
            let state = match (tracked.state, service.state) {
                (ServiceState::Failed, ServiceState::Starting) => ServiceState::Failed,
                (_, reported) => reported,
            };
            if state == ServiceState::Failed && tracked.state != ServiceState::Failed {
                newly_failed.push(service.name.clone());
                tracked.failed_once = true;
            }
            if matches!(state, ServiceState::Failed | ServiceState::Stopped) {
                tracked.answered = false;
            }
            if state != ServiceState::Failed {
                tracked.log = None;
            }
            tracked.state = state;
            next.push(tracked);
        }
        self.services = next;
        newly_failed
    }

    pub fn set_log(&mut self, program: &str, log: Result<Vec<String>, String>) {
        if let Some(t) = self.services.iter_mut().find(|t| t.name == program) {
            t.log = Some(log);
        }
    }

    /// The services with a port to knock on now: up or coming up, not answered yet.
    pub fn to_probe(&self) -> Vec<&'static Probe> {
        self.services
            .iter()
            .filter(|t| !t.answered && matches!(t.state, ServiceState::Starting | ServiceState::Running))
            .filter_map(|t| probe_for(&t.name))
            .collect()
    }

    pub fn answered(&mut self, program: &str) {
        if let Some(t) = self.services.iter_mut().find(|t| t.name == program) {
            t.answered = true;
        }
    }

    /// Every installed service with a port answers and none has failed.
    pub fn ready(&self) -> bool {
        self.services.iter().all(|t| t.state != ServiceState::Failed && (t.answered || probe_for(&t.name).is_none()))
    }

    /// The card's steps for the services, in the card's order: one "<label> answering" per
    /// installed service with a port, and a "<label> running" for a service without one that
    /// failed. `timed_out`: the watch is over, what has not answered by now is said to fail.
    pub fn steps(&self, timed_out: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        for probe in PROBES {
            let Some(t) = self.services.iter().find(|t| t.name == probe.program) else { continue };
            let name = format!("{} answering", probe.label);
            steps.push(match t.state {
                ServiceState::Failed => (name, StepState::Failed, Some(failure_detail(t))),
                _ if t.answered => (name, StepState::Done, None),
                ServiceState::Stopped => (name, if timed_out { StepState::Failed } else { StepState::Pending }, Some("stopped".into())),
                _ if timed_out => (name, StepState::Failed, Some("not answering yet".into())),
                _ => (name, StepState::Running, None),
            });
        }
        for t in self.services.iter().filter(|t| probe_for(&t.name).is_none() && t.failed_once) {
            let name = format!("{} running", label(&t.name));
            steps.push(match t.state {
                ServiceState::Failed => (name, StepState::Failed, Some(failure_detail(t))),
                ServiceState::Running => (name, StepState::Done, None),
                ServiceState::Stopped => (name, StepState::Pending, Some("stopped".into())),
                ServiceState::Starting => (name, StepState::Running, None),
            });
        }
        steps
    }
}

/// "failed", then the service's last lines, one per line.
fn failure_detail(t: &Tracked) -> String {
    match &t.log {
        Some(Ok(lines)) if !lines.is_empty() => format!("failed; its last lines:\n{}", lines.join("\n")),
        Some(Ok(_)) => "failed (it printed nothing)".into(),
        Some(Err(why)) => format!("failed (its log cannot be read: {why})"),
        None => "failed".into(),
    }
}

/// What was learnt about one user's workspace services, for the views.
#[derive(Debug, Clone, Default)]
struct Known {
    /// Bumped by every new watch; an older watcher that sees another number stops.
    generation: u64,
    watching: bool,
    /// The container start the last watch was about (when known).
    started_at: Option<i64>,
    /// The installed programs, from the last listing (kept while the workspace is stopped,
    /// for its disabled launch links).
    installed: Option<Vec<String>>,
    ready: bool,
}

/// Each workspace's services as last learnt, and which watch is current.
#[derive(Default)]
pub struct ServiceBoard {
    all: Mutex<HashMap<String, Known>>,
}

impl ServiceBoard {
    /// A new watch of `username`'s services (a start); returns its generation.
    pub fn begin(&self, username: &str, started_at: Option<i64>) -> u64 {
        let mut all = self.all.lock().expect("services");
        let known = all.entry(username.to_string()).or_default();
        known.generation += 1;
        known.watching = true;
        known.ready = false;
        known.started_at = started_at;
        known.generation
    }

    /// Whether a workspace seen running (by events or a listing: a start by another process, a
    /// restart by Docker, Berth itself restarted) needs a watch: nothing is known of it, or
    /// what is known is about another container start, and no watch runs.
    pub fn needs_watch(&self, username: &str, started_at: Option<i64>) -> bool {
        let all = self.all.lock().expect("services");
        match all.get(username) {
            None => true,
            Some(k) if k.watching => false,
            Some(k) => matches!((k.started_at, started_at), (Some(known), Some(seen)) if known != seen),
        }
    }

    pub fn is_current(&self, username: &str, generation: u64) -> bool {
        self.all.lock().expect("services").get(username).is_some_and(|k| k.generation == generation)
    }

    pub fn learned(&self, username: &str, generation: u64, installed: Vec<String>) {
        if let Some(k) = self.all.lock().expect("services").get_mut(username).filter(|k| k.generation == generation) {
            k.installed = Some(installed);
        }
    }

    /// The watch ended; `started_at` when it is known by now.
    pub fn finish(&self, username: &str, generation: u64, ready: bool, started_at: Option<i64>) {
        if let Some(k) = self.all.lock().expect("services").get_mut(username).filter(|k| k.generation == generation) {
            k.watching = false;
            k.ready = ready;
            k.started_at = k.started_at.or(started_at);
        }
    }

    pub fn installed(&self, username: &str) -> Option<Vec<String>> {
        self.all.lock().expect("services").get(username).and_then(|k| k.installed.clone())
    }

    pub fn ready(&self, username: &str) -> bool {
        self.all.lock().expect("services").get(username).is_some_and(|k| k.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, state: ServiceState) -> Service {
        Service { name: name.into(), state }
    }

    fn names(steps: &[Step]) -> Vec<(&str, StepState)> {
        steps.iter().map(|(n, s, _)| (n.as_str(), *s)).collect()
    }

    /// What the slim image's berth-services printed in a plain workspace (no Docker inside).
    const SLIM: &str = r#"[{"name": "app-gate", "state": "RUNNING"}, {"name": "dbus", "state": "RUNNING"}, {"name": "jupyter", "state": "STARTING"}, {"name": "novnc", "state": "RUNNING"}, {"name": "sshd", "state": "RUNNING"}, {"name": "tensorboard", "state": "BACKOFF"}, {"name": "vnc", "state": "RUNNING"}, {"name": "xrdp", "state": "FATAL"}, {"name": "xrdp-sesman", "state": "STOPPED"}]"#;

    #[test]
    fn the_listing_parses_into_installed_services_and_their_states() {
        let services = parse_services(SLIM).unwrap();
        let got: Vec<(&str, ServiceState)> = services.iter().map(|s| (s.name.as_str(), s.state)).collect();
        assert_eq!(
            got,
            vec![
                ("app-gate", ServiceState::Running),
                ("dbus", ServiceState::Running),
                ("jupyter", ServiceState::Starting),
                ("novnc", ServiceState::Running),
                ("sshd", ServiceState::Running),
                ("tensorboard", ServiceState::Failed),
                ("vnc", ServiceState::Running),
                ("xrdp", ServiceState::Failed),
                ("xrdp-sesman", ServiceState::Stopped),
            ]
        );
        assert_eq!(ServiceState::from_supervisor("EXITED"), ServiceState::Failed);
        assert_eq!(ServiceState::from_supervisor("STOPPING"), ServiceState::Stopped);
        assert_eq!(parse_services("[]\n").unwrap(), vec![]);
    }

    #[test]
    fn a_listing_that_is_not_the_json_list_is_refused() {
        let error = parse_services("berth-services: supervisord does not answer").unwrap_err();
        assert!(error.starts_with("/usr/local/lib/berth/berth-services printed something else than its JSON list"), "{error}");
        assert!(error.ends_with(": berth-services: supervisord does not answer"), "{error}");
        assert!(parse_services(r#"[{"name": "sshd"}]"#).is_err(), "a state is required");
        assert_eq!(parse_services(r#"[{"name": "a b", "state": "RUNNING"}]"#).unwrap_err(), "/usr/local/lib/berth/berth-services named a service \"a b\"");
    }

    #[test]
    fn what_the_exec_answered_decides_the_listing() {
        let ok = |code: i64, output: &str| Ok(ExecOutcome { exit_code: Some(code), output: output.into() });
        assert_eq!(listing_from_exec(ok(0, r#"[{"name":"sshd","state":"RUNNING"}]"#)), Listing::Declared(vec![svc("sshd", ServiceState::Running)]));
        assert_eq!(
            listing_from_exec(ok(126, "OCI runtime exec failed: exec failed: unable to start container process: exec: \"/usr/local/lib/berth/berth-services\": stat /usr/local/lib/berth/berth-services: no such file or directory: unknown")),
            Listing::Undeclared
        );
        assert_eq!(listing_from_exec(ok(127, "")), Listing::Undeclared);
        assert_eq!(
            listing_from_exec(ok(69, "berth-services: supervisord does not answer on unix:///run/supervisor.sock: [Errno 2] No such file or directory\n")),
            Listing::Unknown("/usr/local/lib/berth/berth-services exited with 69: berth-services: supervisord does not answer on unix:///run/supervisor.sock: [Errno 2] No such file or directory".into())
        );
        let stopped = RuntimeError::Failed { op: "docker exec".into(), status: Some(409), message: "container is not running".into() };
        assert_eq!(listing_from_exec(Err(stopped)), Listing::NotRunning);
        let gone = RuntimeError::Unavailable("the Docker engine is not reachable".into());
        assert_eq!(listing_from_exec(Err(gone)), Listing::Unknown("the Docker engine is not reachable".into()));
    }

    #[test]
    fn only_installed_services_get_steps_and_code_server_is_not_on_slim() {
        let mut watch = ServiceWatch::declared();
        watch.update(&parse_services(SLIM).unwrap());
        assert_eq!(watch.installed(), vec!["app-gate", "dbus", "jupyter", "novnc", "sshd", "tensorboard", "vnc", "xrdp", "xrdp-sesman"]);
        let probes: Vec<&str> = watch.to_probe().iter().map(|p| p.program).collect();
        assert_eq!(probes, vec!["jupyter", "novnc", "sshd", "vnc"], "neither the failed nor the stopped nor the portless");
        let steps = watch.steps(false);
        assert_eq!(
            names(&steps),
            vec![
                ("SSH answering", StepState::Running),
                ("Desktop (VNC) answering", StepState::Running),
                ("Remote desktop (RDP) answering", StepState::Failed),
                ("Desktop in browser (noVNC) answering", StepState::Running),
                ("Jupyter answering", StepState::Running),
                ("TensorBoard answering", StepState::Failed),
            ]
        );
        assert!(!steps.iter().any(|(n, _, _)| n.contains("VS Code")), "slim has no code-server: {steps:?}");
    }

    #[test]
    fn each_service_turns_done_as_it_answers_and_then_the_workspace_is_ready() {
        let mut watch = ServiceWatch::declared();
        watch.update(&[svc("sshd", ServiceState::Running), svc("jupyter", ServiceState::Starting), svc("dbus", ServiceState::Running)]);
        assert!(!watch.ready());
        watch.answered("sshd");
        assert_eq!(names(&watch.steps(false)), vec![("SSH answering", StepState::Done), ("Jupyter answering", StepState::Running)]);
        assert!(!watch.ready(), "Jupyter has not answered");
        watch.update(&[svc("sshd", ServiceState::Running), svc("jupyter", ServiceState::Running), svc("dbus", ServiceState::Running)]);
        assert_eq!(watch.to_probe().iter().map(|p| p.program).collect::<Vec<_>>(), vec!["jupyter"], "sshd answered already");
        watch.answered("jupyter");
        assert!(watch.ready(), "every service with a port answers; dbus has none");
        // A portless service that fails spoils it, and shows.
        watch.update(&[svc("sshd", ServiceState::Running), svc("jupyter", ServiceState::Running), svc("dbus", ServiceState::Failed)]);
        assert!(!watch.ready());
        assert_eq!(watch.steps(false).last().map(|(n, s, _)| (n.as_str(), *s)), Some(("D-Bus running", StepState::Failed)));
    }

    #[test]
    fn a_failed_service_stays_failed_through_its_retries_and_shows_its_log() {
        let mut watch = ServiceWatch::declared();
        assert_eq!(watch.update(&[svc("tensorboard", ServiceState::Starting)]), Vec::<String>::new());
        assert_eq!(watch.update(&[svc("tensorboard", ServiceState::Failed)]), vec!["tensorboard"]);
        watch.set_log("tensorboard", Ok(vec!["E1201 TensorBoard could not bind to port 16006, it was already in use".into()]));
        assert_eq!(watch.update(&[svc("tensorboard", ServiceState::Starting)]), Vec::<String>::new(), "a retry is not news");
        assert_eq!(watch.update(&[svc("tensorboard", ServiceState::Failed)]), Vec::<String>::new(), "nor its next failure");
        assert!(watch.to_probe().is_empty());
        assert_eq!(
            watch.steps(false),
            vec![(
                "TensorBoard answering".to_string(),
                StepState::Failed,
                Some("failed; its last lines:\nE1201 TensorBoard could not bind to port 16006, it was already in use".into())
            )]
        );
        // It runs again: probed again, and done when it answers.
        watch.update(&[svc("tensorboard", ServiceState::Running)]);
        assert_eq!(watch.to_probe().len(), 1);
        watch.answered("tensorboard");
        assert_eq!(names(&watch.steps(false)), vec![("TensorBoard answering", StepState::Done)]);
        assert!(watch.ready());
    }

    #[test]
    fn at_the_deadline_what_has_not_answered_fails() {
        let mut watch = ServiceWatch::declared();
        watch.update(&[svc("sshd", ServiceState::Running), svc("jupyter", ServiceState::Stopped)]);
        watch.answered("sshd");
        assert_eq!(
            watch.steps(true),
            vec![
                ("SSH answering".to_string(), StepState::Done, None),
                ("Jupyter answering".to_string(), StepState::Failed, Some("stopped".into())),
            ]
        );
        let mut watch = ServiceWatch::declared();
        watch.update(&[svc("jupyter", ServiceState::Starting)]);
        assert_eq!(watch.steps(true), vec![("Jupyter answering".to_string(), StepState::Failed, Some("not answering yet".into()))]);
    }

    #[test]
    fn an_image_that_declares_nothing_is_probed_on_every_port() {
        let watch = ServiceWatch::undeclared();
        assert_eq!(watch.to_probe().len(), PROBES.len());
        let steps = watch.steps(false);
        assert_eq!(steps.len(), 7);
        assert!(steps.iter().any(|(n, _, _)| n == "VS Code answering"));
    }

    #[test]
    fn a_service_log_is_its_own_prefixed_lines_and_only_the_last_ones() {
        let log: Vec<String> = [
            "berth-entrypoint: user alice (10000:10000), services: sshd jupyter",
            "[jupyter] [I 10:00:00 ServerApp] starting",
            "[sshd] Server listening on 0.0.0.0 port 22.",
            "[jupyter] line 1",
            "[jupyter-extra] not jupyter's",
            "2026-12-01 10:00:01,000 WARN exited: jupyter (exit status 1; not expected)",
            "[jupyter] line 2",
            "[jupyter] line 3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(service_log(&log, "jupyter", 3), vec!["line 1", "line 2", "line 3"]);
        assert_eq!(service_log(&log, "jupyter", 20).len(), 4);
        assert_eq!(service_log(&log, "sshd", 20), vec!["Server listening on 0.0.0.0 port 22."]);
        assert_eq!(service_log(&log, "tensorboard", 20), Vec::<String>::new());
        let mut watch = ServiceWatch::declared();
        watch.update(&[svc("jupyter", ServiceState::Failed)]);
        watch.set_log("jupyter", Ok(Vec::new()));
        assert_eq!(watch.steps(false)[0].2.as_deref(), Some("failed (it printed nothing)"));
        watch.set_log("jupyter", Err("docker container logs failed: 404".into()));
        assert_eq!(watch.steps(false)[0].2.as_deref(), Some("failed (its log cannot be read: docker container logs failed: 404)"));
    }

    #[test]
    fn launch_links_only_for_installed_apps() {
        let slim: Vec<String> = ["app-gate", "jupyter", "novnc", "sshd", "tensorboard", "vnc"].iter().map(|s| s.to_string()).collect();
        let apps: Vec<App> = App::ALL.into_iter().filter(|a| app_installed(*a, Some(&slim))).collect();
        assert_eq!(apps, vec![App::Jupyter, App::TensorBoard, App::Desktop]);
        assert!(!app_installed(App::Jupyter, None), "nothing is offered before the services are known");
        let full: Vec<String> = ["code-server", "jupyter"].iter().map(|s| s.to_string()).collect();
        assert!(app_installed(App::Code, Some(&full)));
        assert!(!app_installed(App::Desktop, Some(&full)), "no noVNC, no desktop link");
    }

    #[test]
    fn the_board_runs_one_watch_per_container_start() {
        let board = ServiceBoard::default();
        assert!(board.needs_watch("alice", Some(100)), "nothing known yet");
        let first = board.begin("alice", None);
        assert!(!board.needs_watch("alice", Some(100)), "a watch runs");
        board.learned("alice", first, vec!["sshd".into()]);
        board.finish("alice", first, true, Some(100));
        assert!(board.ready("alice"));
        assert!(!board.needs_watch("alice", Some(100)), "the same container start");
        assert!(!board.needs_watch("alice", None), "a listing without start times says nothing new");
        assert!(board.needs_watch("alice", Some(200)), "Docker restarted it");
        let second = board.begin("alice", Some(200));
        assert!(!board.ready("alice"), "a new start is not ready yet");
        assert!(!board.is_current("alice", first) && board.is_current("alice", second));
        board.learned("alice", first, vec!["stale".into()]);
        board.finish("alice", first, true, None);
        assert_eq!(board.installed("alice"), Some(vec!["sshd".to_string()]), "a superseded watch changes nothing");
        assert!(!board.ready("alice"));
    }
}
