//! The workspace plan: a pure function from (user, settings) to what one workspace is, in
//! terms no engine owns (image, environment, mounts, ports, limits, GPUs, isolation, labels).
//! A runtime renders it (`docker::render` for Docker). No daemon needed; all unit-tested.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::names::{container_port, network_name, workspace_name, LABEL_MANAGED, LABEL_USER};
use crate::config::{Config, Isolation, PortPlanConfig, WorkspaceDefaults};

const GIB: i64 = 1 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("slot {slot} puts the port block past 65535 (base {base}, stride {stride})")]
    PortsExhausted { slot: u32, base: u16, stride: u16 },
    #[error("workspace.isolation = auto is not resolved yet (the engine has not been asked for its runtimes)")]
    IsolationUnresolved,
}

/// What every workspace shares, read from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceSettings {
    pub image: String,
    pub storage_root: PathBuf,
    pub ports: PortPlanConfig,
    pub defaults: WorkspaceDefaults,
    /// The mode workspaces are created in: `defaults.isolation` with `auto` resolved against
    /// the engine (see `Workspaces::isolation`).
    pub isolation: Isolation,
}

impl WorkspaceSettings {
    pub fn from_config(config: &Config) -> WorkspaceSettings {
        WorkspaceSettings {
            image: config.workspace_image.clone(),
            storage_root: config.storage_root.clone(),
            ports: config.ports.clone(),
            defaults: config.workspace.clone(),
            isolation: config.workspace.isolation,
        }
    }

    /// The extra label as a (key, value) pair, when configured.
    pub fn extra_label(&self) -> Option<(String, String)> {
        let (k, v) = self.defaults.extra_label.as_deref()?.split_once('=')?;
        Some((k.to_string(), v.to_string()))
    }

    pub fn uid_for(&self, slot: u32) -> u32 {
        self.defaults.uid_base + slot
    }
}

/// Per-user resource overrides set by admins; `None` keeps the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceOverrides {
    pub memory_reservation_gib: Option<u64>,
    pub memory_limit_gib: Option<u64>,
    pub swap_gib: Option<u64>,
    pub cpus: Option<f64>,
    pub shm_gib: Option<u64>,
    pub gpus: Option<String>,
}

/// Credentials the workspace's services use, passed in the environment.
#[derive(Clone, PartialEq)]
pub struct WorkspaceSecrets {
    pub ssh_password: String,
    pub vnc_password: String,
    pub jupyter_token: String,
    /// What the image's app gate (code-server, TensorBoard) requires in `X-Berth-App-Secret`;
    /// only the user's Traefik routes send it. Derived from Berth's key (`crypto::AppSecrets`).
    pub app_secret: String,
}

impl std::fmt::Debug for WorkspaceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkspaceSecrets(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceUser {
    pub username: String,
    pub slot: u32,
    pub secrets: WorkspaceSecrets,
    pub overrides: ResourceOverrides,
}

/// The host ports of one user's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortBlock {
    pub base: u16,
    pub ssh: u16,
    pub vnc: u16,
    pub rdp: u16,
    pub novnc: u16,
    pub code: u16,
    pub jupyter: u16,
    pub tensorboard: u16,
}

impl PortBlock {
    pub fn for_slot(slot: u32, plan: &PortPlanConfig) -> Result<PortBlock, SpecError> {
        let base = plan.base as u32 + slot * plan.stride as u32;
        if base + plan.stride as u32 - 1 > u16::MAX as u32 {
            return Err(SpecError::PortsExhausted { slot, base: plan.base, stride: plan.stride });
        }
        let at = |offset: u16| (base + offset as u32) as u16;
        Ok(PortBlock {
            base: base as u16,
            ssh: at(plan.ssh),
            vnc: at(plan.vnc),
            rdp: at(plan.rdp),
            novnc: at(plan.novnc),
            code: at(plan.code),
            jupyter: at(plan.jupyter),
            tensorboard: at(plan.tensorboard),
        })
    }

    /// The highest slot whose block still fits below 65536.
    pub fn max_slot(plan: &PortPlanConfig) -> u32 {
        (u16::MAX as u32 + 1 - plan.base as u32) / plan.stride as u32 - 1
    }
}

/// GPUs handed to a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuRequest {
    All,
    None,
    Devices(Vec<String>),
}

impl GpuRequest {
    pub fn parse(s: &str) -> GpuRequest {
        match s.trim() {
            "all" => GpuRequest::All,
            "none" | "" => GpuRequest::None,
            list => GpuRequest::Devices(list.split(',').map(|d| d.trim().to_string()).collect()),
        }
    }
}

/// A host directory a workspace mounts, made before the container starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostDir {
    pub path: PathBuf,
    /// Owner of a directory Berth creates: the workspace user's uid, or None for root.
    pub owner: Option<u32>,
    /// Mode of a directory Berth creates (existing ones are never changed).
    pub mode: u32,
}

/// A directory of the host (or the runtime's volume) mounted into the workspace, or a
/// memory-backed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Mount {
    Bind { source: PathBuf, target: String, read_only: bool },
    Tmpfs { target: String, size_bytes: u64, mode: u32 },
}

/// A workspace port published on an address of the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub container: u16,
    pub host: u16,
    pub host_ip: String,
}

/// Resource limits, in bytes and billionths of a CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub memory_bytes: i64,
    pub memory_reservation_bytes: i64,
    pub swap_bytes: i64,
    /// None: no CPU limit.
    pub nano_cpus: Option<i64>,
    pub shm_bytes: i64,
}

/// Everything one workspace is, whatever runs it. Its hash is the workspace's identity for
/// drift: a workspace created from another plan is recreated at its next start from stopped.
#[derive(Clone, PartialEq, Serialize)]
pub struct WorkspacePlan {
    /// The workspace's name on the runtime (also its host name).
    pub name: String,
    pub owner: String,
    pub image: String,
    pub uid: u32,
    /// `KEY=value`, in a fixed order. Holds the workspace's credentials: never logged.
    pub env: Vec<String>,
    pub mounts: Vec<Mount>,
    pub ports: Vec<PublishedPort>,
    pub limits: Limits,
    pub gpus: GpuRequest,
    pub isolation: Isolation,
    /// The runtime (OCI runtime, runtime class) the isolation mode asks for, if any.
    pub runtime_class: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_timeout_seconds: u32,
    /// The user's port block (the dashboard shows it; `ports` publishes part of it).
    pub port_block: PortBlock,
    /// Host directories to create before the workspace starts, parents first.
    pub directories: Vec<HostDir>,
    /// The directories mounted writable: a start needs free space on each.
    pub writable: Vec<PathBuf>,
}

impl std::fmt::Debug for WorkspacePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspacePlan")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("isolation", &self.isolation)
            .field("env", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WorkspacePlan {
    /// A stable hash of the plan: maps are ordered, so it does not depend on insertion order.
    pub fn hash(&self) -> String {
        let value = serde_json::to_value(self).expect("a plan serializes");
        let mut text = String::new();
        canonical(&value, &mut text);
        hex::encode(&Sha256::digest(text.as_bytes())[..12])
    }
}

pub fn build_plan(user: &WorkspaceUser, settings: &WorkspaceSettings) -> Result<WorkspacePlan, SpecError> {
    let u = user.username.as_str();
    let ports = PortBlock::for_slot(user.slot, &settings.ports)?;
    let uid = settings.uid_for(user.slot);
    let root = &settings.storage_root;
    let d = &settings.defaults;
    let o = &user.overrides;
    let isolation = settings.isolation;
    if isolation == Isolation::Auto {
        return Err(SpecError::IsolationUnresolved);
    }

    let plan = &settings.ports;
    // SSH, VNC and RDP on the public address only when the admin listed them; otherwise on
    // loopback, for Guacamole, noVNC and SSH tunnels.
    let address = |service: &str| if plan.public.iter().any(|p| p == service) { plan.host_ip.clone() } else { "127.0.0.1".to_string() };
    let mut published = vec![
        PublishedPort { container: container_port::SSH, host: ports.ssh, host_ip: address("ssh") },
        PublishedPort { container: container_port::VNC, host: ports.vnc, host_ip: address("vnc") },
        PublishedPort { container: container_port::RDP, host: ports.rdp, host_ip: address("rdp") },
    ];
    if plan.publish_web {
        for (container, host) in [
            (container_port::NOVNC, ports.novnc),
            (container_port::CODE, ports.code),
            (container_port::JUPYTER, ports.jupyter),
            (container_port::TENSORBOARD, ports.tensorboard),
        ] {
            published.push(PublishedPort { container, host, host_ip: plan.web_ip.clone() });
        }
    }

    let home = root.join("homes").join(u);
    let workspace = root.join("workspaces").join(u);
    let shared = root.join("shared");
    let tensorboard = shared.join("tensorboard").join(u);
    let state = root.join("state").join(u);
    // Docker-in-Docker keeps its images per user, on a real filesystem (overlay2 works there).
    let docker_data = root.join("docker").join(u);
    // The user's SSH keys as Berth writes them (see `ssh_keys`): read-only inside, so a change
    // shows within the second while the workspace runs, and nothing inside can swap the file
    // for a link that would send Berth's next write elsewhere on the host.
    let keys = keys_dir(root, u);
    let bind = |source: &PathBuf, target: String, read_only: bool| Mount::Bind { source: source.clone(), target, read_only };
    let mounts = vec![
        // Fresh at every start, as on a machine that boots: no socket, pid file or half-written
        // state of an earlier run (a workspace killed mid-start) can stop a service from starting.
        Mount::Tmpfs { target: "/run".into(), size_bytes: 64 << 20, mode: 0o755 },
        bind(&home, format!("/home/{u}"), false),
        bind(&workspace, "/workspace".into(), false),
        bind(&shared, "/shared".into(), true),
        // Hides the other users' TensorBoard directories that the read-only /shared would
        // show; the user's own is mounted on top.
        Mount::Tmpfs { target: "/shared/tensorboard".into(), size_bytes: 64 << 10, mode: 0o755 },
        bind(&tensorboard, format!("/shared/tensorboard/{u}"), false),
        bind(&state, "/var/lib/state".into(), false),
        bind(&docker_data, "/var/lib/docker".into(), false),
        bind(&keys, KEYS_MOUNT.into(), true),
    ];

    let memory_limit = o.memory_limit_gib.unwrap_or(d.memory_limit_gib) as i64 * GIB;
    let cpus = o.cpus.unwrap_or(d.cpus);
    let limits = Limits {
        memory_bytes: memory_limit,
        memory_reservation_bytes: (o.memory_reservation_gib.unwrap_or(d.memory_reservation_gib) as i64 * GIB).min(memory_limit),
        swap_bytes: o.swap_gib.unwrap_or(d.swap_gib) as i64 * GIB,
        nano_cpus: (cpus > 0.0).then(|| (cpus * 1e9) as i64),
        shm_bytes: o.shm_gib.unwrap_or(d.shm_gib) as i64 * GIB,
    };

    let mut labels = BTreeMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_USER.to_string(), u.to_string()),
    ]);
    if let Some((k, v)) = settings.extra_label() {
        labels.insert(k, v);
    }
    let mut env = vec![
        format!("BERTH_USER={u}"),
        format!("BERTH_UID={uid}"),
        format!("BERTH_GID={uid}"),
        format!("BERTH_PASSWORD={}", user.secrets.ssh_password),
        format!("BERTH_VNC_PASSWORD={}", user.secrets.vnc_password),
        format!("BERTH_JUPYTER_TOKEN={}", user.secrets.jupyter_token),
        format!("BERTH_APP_SECRET={}", user.secrets.app_secret),
    ];
    if !isolation.docker_inside() {
        // Without privileges the inner dockerd can only fail and restart forever.
        env.push("BERTH_DISABLE_SERVICES=dockerd".to_string());
    }

    Ok(WorkspacePlan {
        name: workspace_name(u),
        owner: u.to_string(),
        image: settings.image.clone(),
        uid,
        env,
        mounts,
        ports: published,
        limits,
        gpus: GpuRequest::parse(o.gpus.as_deref().unwrap_or(&d.gpus)),
        isolation,
        runtime_class: (isolation == Isolation::Sysbox).then(|| d.sysbox_runtime.clone()),
        labels,
        stop_timeout_seconds: d.stop_timeout_seconds,
        port_block: ports,
        writable: vec![home.clone(), workspace.clone(), tensorboard.clone(), state.clone(), docker_data.clone()],
        directories: vec![
            // Parents first, so each gets its own mode.
            HostDir { path: shared.clone(), owner: None, mode: 0o755 },
            HostDir { path: shared.join("tensorboard"), owner: None, mode: 0o755 },
            HostDir { path: tensorboard, owner: Some(uid), mode: 0o700 },
            HostDir { path: home, owner: Some(uid), mode: 0o700 },
            HostDir { path: workspace, owner: Some(uid), mode: 0o700 },
            HostDir { path: state, owner: None, mode: 0o700 },
            HostDir { path: docker_data, owner: None, mode: 0o700 },
            HostDir { path: root.join("keys"), owner: None, mode: 0o755 },
            HostDir { path: keys, owner: None, mode: 0o755 },
        ],
    })
}

/// Where a workspace finds the keys Berth manages for its user (sshd's AuthorizedKeysCommand
/// reads `authorized_keys` there; the image's docker/workspace/bin/berth-authorized-keys).
pub const KEYS_MOUNT: &str = "/etc/berth/keys";

/// Every host directory that holds `user`'s files (what "purge files" removes).
pub fn user_directories(storage_root: &std::path::Path, user: &str) -> Vec<PathBuf> {
    vec![
        storage_root.join("homes").join(user),
        storage_root.join("workspaces").join(user),
        storage_root.join("shared").join("tensorboard").join(user),
        storage_root.join("state").join(user),
        storage_root.join("docker").join(user),
        keys_dir(storage_root, user),
    ]
}

/// The host directory holding `user`'s managed SSH keys.
pub fn keys_dir(storage_root: &std::path::Path, user: &str) -> PathBuf {
    storage_root.join("keys").join(user)
}

/// The per-user network a plan's workspace joins (runtimes that have networks use it).
pub fn plan_network(plan: &WorkspacePlan) -> String {
    network_name(&plan.owner)
}

fn canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for key in keys {
                out.push_str(&serde_json::to_string(key).expect("string"));
                out.push(':');
                canonical(&map[key], out);
                out.push(',');
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn settings() -> WorkspaceSettings {
        let mut settings = WorkspaceSettings::from_config(&Config::default());
        settings.isolation = Isolation::Privileged;
        settings
    }

    pub(crate) fn alice(slot: u32) -> WorkspaceUser {
        WorkspaceUser {
            username: "alice".into(),
            slot,
            secrets: WorkspaceSecrets {
                ssh_password: "ssh-pw".into(),
                vnc_password: "vnc-pw".into(),
                jupyter_token: "jt".into(),
                app_secret: "0123abcd".into(),
            },
            overrides: ResourceOverrides::default(),
        }
    }

    fn published(plan: &WorkspacePlan, container: u16) -> Option<(u16, String)> {
        plan.ports.iter().find(|p| p.container == container).map(|p| (p.host, p.host_ip.clone()))
    }

    #[test]
    fn names_and_labels() {
        let plan = build_plan(&alice(0), &settings()).unwrap();
        assert_eq!(plan.name, "workspace-alice");
        assert_eq!(plan.owner, "alice");
        assert_eq!(plan_network(&plan), "berth-ws-alice");
        assert_eq!(plan.labels["io.berth.managed"], "true");
        assert_eq!(plan.labels["io.berth.user"], "alice");
        assert!(!plan.labels.contains_key("io.berth.spec"), "the hash is over the plan, so not in it");
        assert_eq!(plan.image, "berth/workspace:latest");
        assert_eq!(plan.stop_timeout_seconds, 30);
    }

    #[test]
    fn port_block_follows_the_formula() {
        let plan = PortPlanConfig::default();
        for slot in [0u32, 1, 7, 42] {
            let p = PortBlock::for_slot(slot, &plan).unwrap();
            let base = 10000 + slot as u16 * 100;
            assert_eq!((p.base, p.vnc, p.novnc, p.code, p.jupyter, p.tensorboard, p.rdp, p.ssh),
                (base, base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 22));
        }
        let last = PortBlock::max_slot(&plan);
        assert!(PortBlock::for_slot(last, &plan).is_ok());
        assert_eq!(
            PortBlock::for_slot(last + 1, &plan),
            Err(SpecError::PortsExhausted { slot: last + 1, base: 10000, stride: 100 })
        );
    }

    #[test]
    fn ssh_public_vnc_and_rdp_on_loopback_by_default() {
        let plan = build_plan(&alice(3), &settings()).unwrap();
        assert_eq!(published(&plan, 22), Some((10322, "0.0.0.0".into())));
        assert_eq!(published(&plan, 5901), Some((10300, "127.0.0.1".into())), "VNC's DES challenge stays off the network");
        assert_eq!(published(&plan, 3389), Some((10305, "127.0.0.1".into())));
        for web in [6080, 8443, 8888, 6006] {
            assert_eq!(published(&plan, web), None, "{web} must not be published");
        }

        let mut s = settings();
        s.ports.public = vec!["ssh".into(), "rdp".into()];
        let plan = build_plan(&alice(3), &s).unwrap();
        assert_eq!(published(&plan, 3389), Some((10305, "0.0.0.0".into())), "published when the admin says so");
        assert_eq!(published(&plan, 5901), Some((10300, "127.0.0.1".into())));

        let mut s = settings();
        s.ports.publish_web = true;
        let plan = build_plan(&alice(3), &s).unwrap();
        assert_eq!(published(&plan, 8888), Some((10303, "127.0.0.1".into())), "web ports on web_ip, loopback by default");
        assert_eq!(published(&plan, 6080), Some((10301, "127.0.0.1".into())));
        s.ports.web_ip = "192.0.2.10".into();
        let plan = build_plan(&alice(3), &s).unwrap();
        assert_eq!(published(&plan, 6006), Some((10304, "192.0.2.10".into())));
    }

    #[test]
    fn mounts_under_the_storage_root() {
        let mut s = settings();
        s.storage_root = PathBuf::from("/srv/berth");
        let plan = build_plan(&alice(0), &s).unwrap();
        let bind = |source: &str, target: &str, read_only: bool| Mount::Bind { source: source.into(), target: target.into(), read_only };
        assert_eq!(plan.mounts, vec![
            Mount::Tmpfs { target: "/run".into(), size_bytes: 67108864, mode: 0o755 },
            bind("/srv/berth/homes/alice", "/home/alice", false),
            bind("/srv/berth/workspaces/alice", "/workspace", false),
            bind("/srv/berth/shared", "/shared", true),
            Mount::Tmpfs { target: "/shared/tensorboard".into(), size_bytes: 65536, mode: 0o755 },
            bind("/srv/berth/shared/tensorboard/alice", "/shared/tensorboard/alice", false),
            bind("/srv/berth/state/alice", "/var/lib/state", false),
            bind("/srv/berth/docker/alice", "/var/lib/docker", false),
            bind("/srv/berth/keys/alice", "/etc/berth/keys", true),
        ]);
        assert!(plan.directories.contains(&HostDir { path: PathBuf::from("/srv/berth/homes/alice"), owner: Some(10000), mode: 0o700 }));
        assert!(plan.directories.contains(&HostDir { path: PathBuf::from("/srv/berth/shared/tensorboard/alice"), owner: Some(10000), mode: 0o700 }));
        assert!(plan.directories.contains(&HostDir { path: PathBuf::from("/srv/berth/state/alice"), owner: None, mode: 0o700 }));
        let shared_at = plan.directories.iter().position(|d| d.path == PathBuf::from("/srv/berth/shared")).unwrap();
        let tb_at = plan.directories.iter().position(|d| d.path == PathBuf::from("/srv/berth/shared/tensorboard/alice")).unwrap();
        assert!(shared_at < tb_at, "parents are made first, with their own mode");
        // Free space is needed where the workspace writes, not on the read-only shared root.
        assert_eq!(plan.writable, vec![
            PathBuf::from("/srv/berth/homes/alice"),
            PathBuf::from("/srv/berth/workspaces/alice"),
            PathBuf::from("/srv/berth/shared/tensorboard/alice"),
            PathBuf::from("/srv/berth/state/alice"),
            PathBuf::from("/srv/berth/docker/alice"),
        ]);
    }

    #[test]
    fn resources_defaults_and_overrides() {
        let plan = build_plan(&alice(0), &settings()).unwrap();
        assert_eq!(plan.limits, Limits {
            memory_bytes: 100 * GIB,
            memory_reservation_bytes: 32 * GIB,
            swap_bytes: 50 * GIB,
            nano_cpus: None,
            shm_bytes: 8 * GIB,
        });

        let mut user = alice(0);
        user.overrides = ResourceOverrides { memory_limit_gib: Some(16), memory_reservation_gib: Some(64), cpus: Some(2.5), swap_gib: Some(0), ..Default::default() };
        let limits = build_plan(&user, &settings()).unwrap().limits;
        assert_eq!(limits.memory_bytes, 16 * GIB);
        assert_eq!(limits.memory_reservation_bytes, 16 * GIB, "reservation never exceeds the limit");
        assert_eq!(limits.swap_bytes, 0, "no swap");
        assert_eq!(limits.nano_cpus, Some(2_500_000_000));
    }

    #[test]
    fn gpu_requests() {
        let gpus = |gpus: &str| {
            let mut user = alice(0);
            user.overrides.gpus = Some(gpus.into());
            build_plan(&user, &settings()).unwrap().gpus
        };
        assert_eq!(gpus("all"), GpuRequest::All);
        assert_eq!(gpus("none"), GpuRequest::None);
        assert_eq!(gpus("0, 2"), GpuRequest::Devices(vec!["0".into(), "2".into()]));
    }

    #[test]
    fn isolation_modes_in_the_plan() {
        let with = |mode: Isolation| {
            let mut s = settings();
            s.isolation = mode;
            build_plan(&alice(0), &s)
        };
        assert_eq!(with(Isolation::Sysbox).unwrap().runtime_class.as_deref(), Some("sysbox-runc"));
        assert_eq!(with(Isolation::Privileged).unwrap().runtime_class, None);
        let plain = with(Isolation::Plain).unwrap();
        assert!(plain.env.contains(&"BERTH_DISABLE_SERVICES=dockerd".to_string()), "no Docker inside");
        for mode in [Isolation::Privileged, Isolation::Sysbox, Isolation::Capabilities] {
            assert!(!with(mode).unwrap().env.iter().any(|e| e.starts_with("BERTH_DISABLE_SERVICES")), "{mode:?}");
        }
        assert_eq!(with(Isolation::Auto).err(), Some(SpecError::IsolationUnresolved), "auto is resolved against the engine first");
        assert_ne!(plain.hash(), with(Isolation::Capabilities).unwrap().hash(), "a mode change is drift");
    }

    #[test]
    fn environment_holds_the_credentials_and_debug_hides_them() {
        let plan = build_plan(&alice(2), &settings()).unwrap();
        for expected in ["BERTH_USER=alice", "BERTH_UID=10002", "BERTH_GID=10002", "BERTH_PASSWORD=ssh-pw",
            "BERTH_VNC_PASSWORD=vnc-pw", "BERTH_JUPYTER_TOKEN=jt", "BERTH_APP_SECRET=0123abcd"] {
            assert!(plan.env.contains(&expected.to_string()), "{expected}");
        }
        assert!(!format!("{:?}", alice(0).secrets).contains("ssh-pw"));
        assert!(!format!("{:?}", alice(0).secrets).contains("0123abcd"));
        assert!(!format!("{plan:?}").contains("ssh-pw"), "a logged plan shows no password");
    }

    #[test]
    fn hash_is_stable_and_detects_drift() {
        let a = build_plan(&alice(0), &settings()).unwrap();
        let b = build_plan(&alice(0), &settings()).unwrap();
        assert_eq!(a.hash(), b.hash(), "same inputs, same hash");
        assert_eq!(a.hash().len(), 24);
        let mut s = settings();
        s.image = "berth/workspace:slim".into();
        assert_ne!(build_plan(&alice(0), &s).unwrap().hash(), a.hash());
        let mut user = alice(0);
        user.overrides.cpus = Some(4.0);
        assert_ne!(build_plan(&user, &settings()).unwrap().hash(), a.hash());
        assert_ne!(build_plan(&alice(1), &settings()).unwrap().hash(), a.hash());
        let mut s = settings();
        s.defaults.sysbox_runtime = "sysbox-runc-2".into();
        assert_eq!(build_plan(&alice(0), &s).unwrap().hash(), a.hash(), "the sysbox runtime's name matters only in sysbox mode");
    }

    #[test]
    fn extra_label_is_applied() {
        let mut s = settings();
        s.defaults.extra_label = Some("io.berth.test=run-1".into());
        let plan = build_plan(&alice(0), &s).unwrap();
        assert_eq!(plan.labels["io.berth.test"], "run-1");
    }
}
