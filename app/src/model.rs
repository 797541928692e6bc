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
    /// Host name users SSH to.
    pub ssh_host: String,
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
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub drift: bool,
    /// Labeled as Berth's but no user or record matches.
    pub orphan: bool,
}

/// The admin's view of the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspacesOverview {
    pub rows: Vec<WorkspaceRow>,
    /// Containers named `workspace-*` that Berth did not create.
    pub foreign: Vec<String>,
    pub engine_problem: Option<String>,
    pub isolation: Option<IsolationView>,
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
