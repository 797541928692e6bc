//! Data that crosses the wire between the browser and the server functions.
//! Nothing here carries a password, a hash or a session id.

use serde::{Deserialize, Serialize};

/// Where an account stands in the approval workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountStatus {
    Pending,
    Approved,
    Rejected,
    Disabled,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Pending => "pending",
            AccountStatus::Approved => "approved",
            AccountStatus::Rejected => "rejected",
            AccountStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => AccountStatus::Pending,
            "approved" => AccountStatus::Approved,
            "rejected" => AccountStatus::Rejected,
            "disabled" => AccountStatus::Disabled,
            _ => return None,
        })
    }
}

/// The logged-in user as the pages see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub is_admin: bool,
}

/// One row of the admin's users table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub status: AccountStatus,
    pub is_admin: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// What an admin can do to an account from the admin page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAction {
    Approve,
    Reject,
    Disable,
    Enable,
    GrantAdmin,
    RevokeAdmin,
}

impl AdminAction {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approve" => AdminAction::Approve,
            "reject" => AdminAction::Reject,
            "disable" => AdminAction::Disable,
            "enable" => AdminAction::Enable,
            "grant-admin" => AdminAction::GrantAdmin,
            "revoke-admin" => AdminAction::RevokeAdmin,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::Approve => "approve",
            AdminAction::Reject => "reject",
            AdminAction::Disable => "disable",
            AdminAction::Enable => "enable",
            AdminAction::GrantAdmin => "grant-admin",
            AdminAction::RevokeAdmin => "revoke-admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AdminAction::Approve => "Approve",
            AdminAction::Reject => "Reject",
            AdminAction::Disable => "Disable",
            AdminAction::Enable => "Enable",
            AdminAction::GrantAdmin => "Make admin",
            AdminAction::RevokeAdmin => "Revoke admin",
        }
    }

    /// The actions that make sense for an account in its present state.
    pub fn available(user: &UserSummary) -> Vec<AdminAction> {
        let mut actions = match user.status {
            AccountStatus::Pending => vec![AdminAction::Approve, AdminAction::Reject],
            AccountStatus::Approved => vec![AdminAction::Disable],
            AccountStatus::Rejected => vec![AdminAction::Approve],
            AccountStatus::Disabled => vec![AdminAction::Enable],
        };
        if user.status == AccountStatus::Approved {
            actions.push(if user.is_admin { AdminAction::RevokeAdmin } else { AdminAction::GrantAdmin });
        }
        actions
    }
}

/// A workspace's state, from Docker's truth plus the operation Berth is running on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceState {
    Absent,
    Stopped,
    Starting,
    Running,
    Stopping,
    Error,
}

impl WorkspaceState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceState::Absent => "absent",
            WorkspaceState::Stopped => "stopped",
            WorkspaceState::Starting => "starting",
            WorkspaceState::Running => "running",
            WorkspaceState::Stopping => "stopping",
            WorkspaceState::Error => "error",
        }
    }

    pub fn is_busy(self) -> bool {
        matches!(self, WorkspaceState::Starting | WorkspaceState::Stopping)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceAction {
    Start,
    Stop,
    Restart,
    Reset,
}

impl WorkspaceAction {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "start" => WorkspaceAction::Start,
            "stop" => WorkspaceAction::Stop,
            "restart" => WorkspaceAction::Restart,
            "reset" => WorkspaceAction::Reset,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceAction::Start => "start",
            WorkspaceAction::Stop => "stop",
            WorkspaceAction::Restart => "restart",
            WorkspaceAction::Reset => "reset",
        }
    }
}

/// Host ports of a user's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsView {
    pub ssh: u16,
    pub vnc: u16,
    pub rdp: u16,
    pub novnc: u16,
    pub code: u16,
    pub jupyter: u16,
    pub tensorboard: u16,
    /// VNC and RDP are published on the server's public address (else on loopback only).
    pub vnc_public: bool,
    pub rdp_public: bool,
    /// The web ports are published directly (bypassing the portal's login).
    pub web_published: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
}

/// One step of a start (create, start, each installed service answering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressStep {
    pub name: String,
    pub state: StepState,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsView {
    pub memory_reservation_gib: u64,
    pub memory_limit_gib: u64,
    pub swap_gib: u64,
    /// What the card says about swap ("swap 50 GiB", "swap not limited on this server" when the
    /// kernel does not account swap per container).
    pub swap_summary: String,
    /// 0: no limit.
    pub cpus: f64,
    pub gpus: String,
    /// What the card says about GPUs ("GPUs: 0,2", "no GPUs on this server" for `auto` on a
    /// server without any).
    pub gpus_summary: String,
}

/// What the dashboard's workspace card shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceView {
    pub username: String,
    pub state: WorkspaceState,
    pub ports: Option<PortsView>,
    /// Host name users SSH to (the node's address when a cluster runs the workspace).
    pub ssh_host: String,
    /// The machine of a cluster the workspace runs on.
    pub node: Option<String>,
    /// Seconds since the container started, while running.
    pub uptime_seconds: Option<i64>,
    pub limits: LimitsView,
    pub steps: Vec<ProgressStep>,
    /// The last operation's error, in words for the user.
    pub error: Option<String>,
    /// The container differs from what Berth would create now (applied at the next stop/start).
    pub drift: bool,
    /// None when the Docker engine answers; otherwise why not.
    pub engine_problem: Option<String>,
    /// Launch links of the workspace's web apps (through the portal's login), for the apps
    /// the image has.
    pub apps: Vec<AppLink>,
    /// Running, and every service the image has answered after this start.
    pub ready: bool,
    /// "Desktop in browser (Guacamole)" is available at /desktop/guacamole.
    pub guacamole: bool,
    /// The isolation mode, once Berth has asked the engine.
    pub isolation: Option<IsolationView>,
}

/// What the workspaces' isolation mode allows, in the words the pages show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationView {
    /// `sysbox`, `privileged`, `capabilities` or `plain`.
    pub mode: String,
    /// A workspace user can become root on the host.
    pub host_root: bool,
    /// Docker runs inside the workspace.
    pub docker_inside: bool,
    /// Said whenever `host_root`.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLink {
    pub key: String,
    pub label: String,
    pub url: String,
}

/// One row of the admin's workspaces table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceRow {
    pub username: String,
    pub state: WorkspaceState,
    pub ports: Option<PortsView>,
    /// What it uses now, while it runs and Berth samples it.
    pub usage: Option<UsageNow>,
    /// Its limits (from its record; None for an orphan).
    pub limits: Option<LimitsView>,
    pub drift: bool,
    /// Labeled as Berth's but no user or record matches.
    pub orphan: bool,
    /// The machine of a cluster it runs on.
    pub node: Option<String>,
}

/// The admin's view of the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspacesOverview {
    pub rows: Vec<WorkspaceRow>,
    /// Containers named `workspace-*` that Berth did not create.
    pub foreign: Vec<String>,
    pub engine_problem: Option<String>,
    pub isolation: Option<IsolationView>,
    /// The host's size and what all workspaces use together.
    pub host: HostTotals,
    /// On a cluster, one line per node: its workspaces, homes, reserved memory and GPUs.
    pub nodes: Vec<String>,
}

/// The host as a whole, for the admin's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostTotals {
    /// 0 when not known yet.
    pub cpus: u32,
    pub memory_bytes: u64,
    pub cpu_cores_used: f64,
    pub memory_used_bytes: u64,
    pub gpus: Vec<GpuView>,
    /// Set when there are no GPUs to show: "no NVIDIA GPUs on this host", or why they cannot be read.
    pub gpu_note: Option<String>,
}

/// One workspace's resource use now (Berth's latest sample, never a fresh engine call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UsageNow {
    /// Unix seconds of the sample.
    pub at: i64,
    /// Cores in use: 1.0 is one core busy all the time.
    pub cpu_cores: f64,
    pub memory_bytes: u64,
    /// The memory limit the kernel enforces (0: none).
    pub memory_limit_bytes: u64,
    /// Bytes per second.
    pub net_rx_rate: f64,
    pub net_tx_rate: f64,
    pub disk_read_rate: f64,
    pub disk_write_rate: f64,
    /// Sizes, measured every few minutes (None until first measured).
    pub home_bytes: Option<u64>,
    pub writable_layer_bytes: Option<u64>,
    /// The GPUs its processes are on.
    pub gpus: Vec<WorkspaceGpu>,
}

/// A GPU as one workspace sees it: the whole GPU's figures, and its own processes there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceGpu {
    pub gpu: GpuView,
    pub processes: Vec<GpuProcessView>,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuView {
    pub index: u32,
    pub name: String,
    pub utilization_percent: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub temperature_celsius: Option<u32>,
    /// Everything running on it, with the workspace owner where it is one.
    pub processes: Vec<GpuProcessView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProcessView {
    pub pid: u32,
    /// The workspace's owner; None for a process outside every workspace.
    pub user: Option<String>,
    pub memory_bytes: Option<u64>,
}

/// One point of a workspace's usage history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UsagePoint {
    pub at: i64,
    pub cpu_cores: f64,
    pub memory_bytes: u64,
    pub net_rx_rate: f64,
    pub net_tx_rate: f64,
    pub disk_read_rate: f64,
    pub disk_write_rate: f64,
    /// Per GPU index its processes were on: (index, utilisation %, its memory there, temperature).
    pub gpus: Vec<GpuPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuPoint {
    pub index: u32,
    pub utilization_percent: u32,
    pub memory_bytes: u64,
    pub temperature_celsius: Option<u32>,
}

/// A workspace's usage panel: now, the last hour, and what it is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsagePanel {
    pub username: String,
    pub state: WorkspaceState,
    pub now: Option<UsageNow>,
    /// Oldest first.
    pub history: Vec<UsagePoint>,
    /// Unix seconds the panel was made: the charts' right edge.
    pub until: i64,
    /// The hours the charts span.
    pub hours: u32,
    pub limits: LimitsView,
    pub host_cpus: u32,
    pub host_memory_bytes: u64,
    /// "no NVIDIA GPUs on this host", or why they cannot be read; None when GPUs are read.
    pub gpu_note: Option<String>,
}

/// The admin's board of the host's GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuBoard {
    pub gpus: Vec<GpuView>,
    pub note: Option<String>,
}

/// Service credentials shown to the workspace's owner on request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceCredentials {
    pub ssh_password: String,
    pub vnc_password: String,
}

/// What the login page offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginOptions {
    pub password: bool,
    /// (id, display name) of each OpenID provider.
    pub providers: Vec<(String, String)>,
}

/// One GPU as the sharing board shows it: who holds it, and whose processes are on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedGpu {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub utilization_percent: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub holder: Option<GpuHolding>,
    /// Users with processes on it; flagged on the board when one is not its holder.
    pub process_users: Vec<String>,
}

/// A claim (`gpu.mode = open`) or lease (`leased`) on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuHolding {
    pub id: i64,
    pub username: String,
    /// `claim` or `lease`.
    pub kind: String,
    pub note: String,
    pub started_at: i64,
    pub ends_at: i64,
    pub idle_since: Option<i64>,
    pub idle_warned_at: Option<i64>,
}

/// A request waiting for GPUs, 1-based `position` in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedGpuRequest {
    pub id: i64,
    pub username: String,
    pub count: u32,
    pub gpu_index: Option<u32>,
    pub duration_seconds: i64,
    pub note: String,
    pub requested_at: i64,
    pub position: u32,
    /// When GPUs are expected to be free for it (holdings' ends), if known.
    pub estimate_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuLimitsView {
    pub max_gpus: u32,
    pub max_lease_seconds: i64,
    pub max_queued: u32,
}

/// Whether a workspace is idle, and what last kept it alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleView {
    pub username: String,
    pub running: bool,
    /// The signal seen last ("SSH session", "app traffic", …) and when.
    pub last_signal: Option<String>,
    pub last_at: Option<i64>,
    pub exempt: bool,
    /// 0: never stopped for idleness.
    pub stop_after_seconds: i64,
    pub warned_at: Option<i64>,
    /// When it is stopped if nothing happens.
    pub stops_at: Option<i64>,
}

/// The GPU sharing board and the viewer's idle state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuShareView {
    /// `open` or `leased`.
    pub mode: String,
    pub now: i64,
    pub viewer: String,
    pub gpus: Vec<SharedGpu>,
    /// Why there are no GPUs to show, or that leases are only advice here.
    pub note: Option<String>,
    pub queue: Vec<QueuedGpuRequest>,
    pub limits: GpuLimitsView,
    pub idle: Option<IdleView>,
    /// Warnings for the viewer: a holding about to end or be released, an idle stop coming.
    pub warnings: Vec<String>,
}

/// One recorded grant, queueing, extension, warning, release or idle stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharingEvent {
    pub at: i64,
    pub actor: String,
    pub username: String,
    pub action: String,
    pub detail: String,
}

/// What an admin sees of sharing: the board, the queue, limits, idle policy and the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharingAdminView {
    pub share: GpuShareView,
    pub limits: Vec<(String, GpuLimitsView)>,
    pub idle: Vec<IdleView>,
    pub events: Vec<SharingEvent>,
}

/// Everything a user or admin asks of GPU sharing and idle reclaim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SharingCommand {
    /// `count` GPUs (or the one with `gpu` index) for `seconds`; `confirm`: the workspace may
    /// be restarted to attach them (leased mode).
    Request { count: u32, gpu: Option<u32>, seconds: i64, note: String, confirm: bool },
    Release { holding: i64 },
    Extend { holding: i64, seconds: i64 },
    Cancel { request: i64 },
    StillHere,
    Reorder { request: i64, up: bool },
    SetLimits { username: String, max_gpus: Option<u32>, max_lease_seconds: Option<i64>, max_queued: Option<u32> },
    SetIdlePolicy { username: String, stop_after_seconds: Option<i64>, exempt: bool },
}
