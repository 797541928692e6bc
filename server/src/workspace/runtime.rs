//! The seam between Berth's workspace decisions and whatever runs the workspaces. Docker is
//! one implementation (`docker::DockerRuntime`); `fake::FakeRuntime` is another, for tests of
//! the lifecycle decisions; `swarm::SwarmRuntime` runs them as Swarm services on several
//! machines, and a Kubernetes runtime would implement the same trait (docker/kubernetes/README.md).
//!
//! # Contract
//! - Workspaces are named by `names::workspace_name(owner)`; every call takes that name.
//! - Idempotent: `create` of an existing workspace answers `Created::AlreadyExisted` and changes
//!   nothing; `start` of a running one, `stop` of a stopped or missing one, `remove` and
//!   `disconnect` of missing ones all succeed.
//! - `observe` of a workspace that does not exist is `Ok(None)`, never an error; an error means
//!   the runtime could not be asked (`RuntimeError::Unavailable`) or refused the question.
//! - `list` returns only workspaces Berth created (labelled), each as `observe` would.
//! - `watch` yields events for Berth's workspaces in the order the runtime saw them, per
//!   workspace. Events can be lost across a reconnect: after (re)subscribing, a caller
//!   resynchronises with `list`. An event says only that a workspace changed; `observe` says how.
//! - `start` returns once the workspace runs (or has failed), `stop` once it is down: the
//!   lifecycle reads the state right after either.
//! - Nothing here touches Berth's database or locks: callers hold the owner's lock.

use std::net::SocketAddr;
use std::time::Duration;

use app::model::WorkspaceState;
use futures_util::stream::BoxStream;

use super::spec::WorkspacePlan;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Unavailable(String),
    #[error("the workspace image {0} is not on this Docker engine; build it with `make image` (docker/workspace/build.sh --profile slim|full)")]
    ImageMissing(String),
    /// The runtime answered with a refusal; `status` is its HTTP-like code when it has one.
    #[error("{op} failed: {message}")]
    Failed { op: String, status: Option<u16>, message: String },
    #[error("cannot prepare {path}: {source}")]
    Storage { path: String, source: std::io::Error },
    #[error("the workspace storage is full ({free_mib} MiB free, {needed_mib} MiB needed)")]
    StorageFull { path: String, free_mib: u64, needed_mib: u64 },
}

impl RuntimeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            RuntimeError::Failed { status, .. } => *status,
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    AlreadyExisted,
}

/// What the runtime can offer workspaces (asked once, at the first need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The OCI runtimes (Docker) or runtime classes (Kubernetes) on offer: `runc`, `sysbox-runc`, …
    pub runtimes: Vec<String>,
    /// Whether a privileged workspace can start; `Err` says why not, in the engine's words.
    pub privileged: Result<(), String>,
    /// Whether GPUs can be handed to workspaces (an NVIDIA runtime, or CDI GPU devices).
    pub gpus: bool,
    /// Whether a workspace's swap limit holds: without swap accounting in the kernel, Docker
    /// limits memory only and a workspace may swap as much as the host has.
    pub swap_limit: bool,
    /// The host's size, for the admin's totals (0 when the runtime does not say).
    pub host_cpus: u32,
    pub host_memory_bytes: u64,
}

/// A workspace's condition on the runtime, in the runtime's own words mapped to a few.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeStatus {
    Created,
    Running,
    Restarting,
    Paused,
    Stopping,
    Exited,
    Dead,
}

impl RuntimeStatus {
    /// The one mapping from the runtime's condition to what Berth shows.
    pub fn workspace_state(self) -> WorkspaceState {
        match self {
            RuntimeStatus::Running => WorkspaceState::Running,
            RuntimeStatus::Restarting => WorkspaceState::Starting,
            RuntimeStatus::Stopping => WorkspaceState::Stopping,
            RuntimeStatus::Dead => WorkspaceState::Error,
            RuntimeStatus::Created | RuntimeStatus::Paused | RuntimeStatus::Exited => WorkspaceState::Stopped,
        }
    }

    /// Up, or about to be by itself: a start changes nothing on disk.
    pub fn is_up(self) -> bool {
        matches!(self, RuntimeStatus::Running | RuntimeStatus::Restarting)
    }
}

/// One workspace as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    /// The owner's username (from Berth's label); None on a foreign one.
    pub owner: Option<String>,
    pub status: RuntimeStatus,
    /// The hash of the plan it was created from.
    pub plan_hash: Option<String>,
    /// Unix seconds of the last start, when running.
    pub started_at: Option<i64>,
    /// The machine it runs on, on a runtime of several (None: Berth's own, or not placed).
    pub node: Option<NodePlace>,
}

/// A machine of a runtime of several, as a workspace card names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlace {
    pub hostname: String,
    /// The address users reach its published ports on (the SSH command's host).
    pub address: String,
}

/// One machine of the runtime, for the admin (`berth node list`, the admin page's totals).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    pub address: String,
    /// Up and answering its manager.
    pub ready: bool,
    /// Takes new workspaces (not drained or paused).
    pub active: bool,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// GPUs it offers workspaces (Swarm's `NVIDIA-GPU` generic resources).
    pub gpus: u32,
    /// The users whose home directories it holds (their workspaces run only here).
    pub homes: Vec<String>,
}

/// Something happened to a workspace (see the contract: observe it to know what).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub name: String,
    pub owner: Option<String>,
}

/// One reading of a workspace's resource use: counters since its start, and its memory now.
/// Rates come from two readings (see `monitor::usage`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageReading {
    /// The runtime's id of what runs the workspace (Docker: the container id, which GPU
    /// processes' cgroups name).
    pub container_id: String,
    /// When the runtime took it, in Unix milliseconds.
    pub at_ms: i64,
    /// CPU time the workspace used, in nanoseconds.
    pub cpu_ns: u64,
    /// CPU time the whole host used (all cores), in nanoseconds; with `online_cpus`, what a
    /// share of the host is.
    pub host_cpu_ns: u64,
    pub online_cpus: u32,
    /// Memory in use, without the page cache the kernel can drop (as `docker stats` counts it).
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
}

/// Which part of a workspace's output to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRequest {
    /// The last this many lines (a bound on what is read, however long the log is).
    pub tail: usize,
    /// Go on with new lines as they come, until the reader goes away or the workspace stops.
    pub follow: bool,
}

/// How a command run in a workspace ended, and what it printed (stdout and stderr together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: Option<i64>,
    pub output: String,
}

#[async_trait::async_trait]
pub trait WorkspaceRuntime: Send + Sync + 'static {
    /// What the runtime offers (runtimes for the isolation modes, later devices).
    async fn capabilities(&self) -> Result<Capabilities, RuntimeError>;

    /// Makes the workspace's storage ready: its directories exist with their owner and mode.
    /// With `check_space`, refuses (`StorageFull`) when a writable one lacks free space.
    async fn prepare_storage(&self, plan: &WorkspacePlan, check_space: bool) -> Result<(), RuntimeError>;

    /// Makes the owner's network ready and attaches the proxies that must reach the workspace.
    async fn connect(&self, plan: &WorkspacePlan) -> Result<(), RuntimeError>;

    /// Creates the workspace from its plan, stopped. Existing: `AlreadyExisted`, unchanged.
    async fn create(&self, plan: &WorkspacePlan) -> Result<Created, RuntimeError>;

    async fn start(&self, name: &str) -> Result<(), RuntimeError>;

    /// Graceful stop: terminate, then kill after `timeout_seconds`.
    async fn stop(&self, name: &str, timeout_seconds: u32) -> Result<(), RuntimeError>;

    /// Removes the workspace (never its storage).
    async fn remove(&self, name: &str) -> Result<(), RuntimeError>;

    /// Removes the owner's network.
    async fn disconnect(&self, owner: &str) -> Result<(), RuntimeError>;

    /// The workspace, or None when it does not exist.
    async fn observe(&self, name: &str) -> Result<Option<Observed>, RuntimeError>;

    /// Every workspace Berth created (and, with an extra label configured, only those with it).
    async fn list(&self) -> Result<Vec<Observed>, RuntimeError>;

    /// Names of things that look like workspaces but are not Berth's.
    async fn list_foreign(&self) -> Result<Vec<String>, RuntimeError>;

    /// Changes to Berth's workspaces from now on (see the contract on ordering and loss).
    async fn watch(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError>;

    /// The workspace's resource use now (counters since it started); None when it is not
    /// running. Asked by one sampler per Berth, once per sample (see `monitor`), never per page.
    async fn usage(&self, name: &str) -> Result<Option<UsageReading>, RuntimeError>;

    /// Bytes the workspace wrote outside its mounts (Docker: the container's writable layer).
    /// Costly to work out: asked rarely. None when the runtime cannot tell.
    async fn writable_layer_bytes(&self, name: &str) -> Result<Option<u64>, RuntimeError>;

    /// What the workspace prints, line by line (stdout and stderr together, no trailing
    /// newline), from `request.tail` lines back.
    async fn logs(&self, name: &str, request: LogRequest) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError>;

    /// Where Berth itself reaches `port` of the workspace (probes, its own proxy); None when
    /// the workspace is not running.
    async fn service_address(&self, name: &str, port: u16) -> Result<Option<SocketAddr>, RuntimeError>;

    /// The host name by which the proxies on the owner's network (Traefik, guacd) reach the
    /// workspace.
    fn proxy_host(&self, owner: &str) -> String;

    /// Runs `cmd` as root in the running workspace with `input` on its stdin (secrets go there,
    /// never in argv). A stopped workspace: `Failed` with status 409.
    async fn exec_with_input(&self, name: &str, cmd: &[&str], input: &[u8], timeout: Duration) -> Result<ExecOutcome, RuntimeError>;

    /// The last `lines` lines the workspace printed (its services and its entrypoint, stdout
    /// and stderr together), oldest first; never more, however long its log is.
    async fn log_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, RuntimeError>;

    /// The machines workspaces run on; empty on a runtime of one machine.
    async fn nodes(&self) -> Result<Vec<NodeView>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Pins `owner`'s home to `node` (its id or host name): their next start runs there. Moves
    /// no file: the caller says what to copy.
    async fn move_home(&self, owner: &str, node: &str) -> Result<NodeView, RuntimeError> {
        let _ = owner;
        Err(RuntimeError::Failed {
            op: format!("move to node {node}"),
            status: Some(400),
            message: "this Berth runs workspaces on one machine (runtime = \"docker\"): there is no other node".into(),
        })
    }

    /// Forgets where `owner`'s home was (their account is gone).
    async fn forget_home(&self, owner: &str) -> Result<(), RuntimeError> {
        let _ = owner;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_from_runtime_status_to_workspace_state() {
        let cases = [
            (RuntimeStatus::Created, WorkspaceState::Stopped),
            (RuntimeStatus::Running, WorkspaceState::Running),
            (RuntimeStatus::Restarting, WorkspaceState::Starting),
            (RuntimeStatus::Paused, WorkspaceState::Stopped),
            (RuntimeStatus::Stopping, WorkspaceState::Stopping),
            (RuntimeStatus::Exited, WorkspaceState::Stopped),
            (RuntimeStatus::Dead, WorkspaceState::Error),
        ];
        for (status, state) in cases {
            assert_eq!(status.workspace_state(), state, "{status:?}");
        }
    }
}
