//! The names Berth gives workspaces and what carries them, and the ports the workspace image
//! listens on. A leaf on purpose: configuration, routes and runtimes all read it, and it reads
//! nothing of Berth's, so none of them can come to depend on each other through it.

/// On every container and network Berth creates.
pub const LABEL_MANAGED: &str = "io.berth.managed";
/// The owner's username.
pub const LABEL_USER: &str = "io.berth.user";
/// The hash of the plan a container was created from (drift detection).
pub const LABEL_SPEC: &str = "io.berth.spec";

/// The workspace's name on the runtime (the container, and the host name other containers on
/// the user's network reach it by).
pub fn workspace_name(username: &str) -> String {
    format!("workspace-{username}")
}

/// The user's own network: the workspace, and whatever proxies are attached to reach it.
pub fn network_name(username: &str) -> String {
    format!("berth-ws-{username}")
}

/// Ports inside the workspace, fixed by the workspace image.
pub mod container_port {
    pub const SSH: u16 = 22;
    pub const VNC: u16 = 5901;
    pub const RDP: u16 = 3389;
    pub const NOVNC: u16 = 6080;
    pub const CODE: u16 = 8443;
    pub const JUPYTER: u16 = 8888;
    pub const TENSORBOARD: u16 = 6006;
}
