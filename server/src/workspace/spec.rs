//! The workspace spec: a pure function from (user, settings) to Docker's create body.
//! No daemon needed; everything here is unit-tested.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, HostConfig, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use sha2::{Digest, Sha256};

use crate::config::{Config, Isolation, PortPlanConfig, WorkspaceDefaults};

pub const LABEL_MANAGED: &str = "io.berth.managed";
pub const LABEL_USER: &str = "io.berth.user";
pub const LABEL_SPEC: &str = "io.berth.spec";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

/// Ports inside the container, fixed by the workspace image.
pub mod container_port {
    pub const SSH: u16 = 22;
    pub const VNC: u16 = 5901;
    pub const RDP: u16 = 3389;
    pub const NOVNC: u16 = 6080;
    pub const CODE: u16 = 8443;
    pub const JUPYTER: u16 = 8888;
    pub const TENSORBOARD: u16 = 6006;
}

/// GPUs handed to a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDir {
    pub path: PathBuf,
    /// Owner of a directory Berth creates: the workspace user's uid, or None for root.
    pub owner: Option<u32>,
    /// Mode of a directory Berth creates (existing ones are never changed).
    pub mode: u32,
}

/// Everything Berth creates for one workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceSpec {
    pub container_name: String,
    pub network_name: String,
    pub ports: PortBlock,
    pub uid: u32,
    pub body: ContainerCreateBody,
    /// Hash of `body` without the hash label itself; stored as the `io.berth.spec` label.
    pub hash: String,
    /// Host directories to create before the container starts.
    pub directories: Vec<HostDir>,
    /// The directories mounted writable: a start needs free space on each.
    pub writable: Vec<PathBuf>,
}

pub fn container_name(username: &str) -> String {
    format!("workspace-{username}")
}

pub fn network_name(username: &str) -> String {
    format!("berth-ws-{username}")
}

pub fn build_spec(user: &WorkspaceUser, settings: &WorkspaceSettings) -> Result<WorkspaceSpec, SpecError> {
    let u = user.username.as_str();
    let name = container_name(u);
    let network = network_name(u);
    let ports = PortBlock::for_slot(user.slot, &settings.ports)?;
    let uid = settings.uid_for(user.slot);
    let root = &settings.storage_root;
    let d = &settings.defaults;
    let o = &user.overrides;

    let plan = &settings.ports;
    // SSH, VNC and RDP on the public address only when the admin listed them; otherwise on
    // loopback, for Guacamole, noVNC and SSH tunnels.
    let address = |service: &str| if plan.public.iter().any(|p| p == service) { plan.host_ip.clone() } else { "127.0.0.1".to_string() };
    let mut published = vec![
        (ports.ssh, container_port::SSH, address("ssh")),
        (ports.vnc, container_port::VNC, address("vnc")),
        (ports.rdp, container_port::RDP, address("rdp")),
    ];
    if plan.publish_web {
        published.extend([
            (ports.novnc, container_port::NOVNC, plan.web_ip.clone()),
            (ports.code, container_port::CODE, plan.web_ip.clone()),
            (ports.jupyter, container_port::JUPYTER, plan.web_ip.clone()),
            (ports.tensorboard, container_port::TENSORBOARD, plan.web_ip.clone()),
        ]);
    }
    let exposed: Vec<String> = published.iter().map(|(_, c, _)| format!("{c}/tcp")).collect();
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = published
        .into_iter()
        .map(|(host, c, ip)| (format!("{c}/tcp"), Some(vec![PortBinding { host_ip: Some(ip), host_port: Some(host.to_string()) }])))
        .collect();

    let home = root.join("homes").join(u);
    let workspace = root.join("workspaces").join(u);
    let shared = root.join("shared");
    let tensorboard = shared.join("tensorboard").join(u);
    let state = root.join("state").join(u);
    // Docker-in-Docker keeps its images per user, on a real filesystem (overlay2 works there).
    let docker_data = root.join("docker").join(u);
    let binds = vec![
        format!("{}:/home/{u}:rw", home.display()),
        format!("{}:/workspace:rw", workspace.display()),
        format!("{}:/shared:ro", shared.display()),
        format!("{}:/shared/tensorboard/{u}:rw", tensorboard.display()),
        format!("{}:/var/lib/state:rw", state.display()),
        format!("{}:/var/lib/docker:rw", docker_data.display()),
    ];

    let memory_limit = o.memory_limit_gib.unwrap_or(d.memory_limit_gib) as i64 * GIB;
    let memory_reservation = (o.memory_reservation_gib.unwrap_or(d.memory_reservation_gib) as i64 * GIB).min(memory_limit);
    let swap = o.swap_gib.unwrap_or(d.swap_gib) as i64 * GIB;
    let cpus = o.cpus.unwrap_or(d.cpus);
    let gpus = GpuRequest::parse(o.gpus.as_deref().unwrap_or(&d.gpus));
    let device_requests = match gpus {
        GpuRequest::None => None,
        GpuRequest::All => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            count: Some(-1),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]),
        GpuRequest::Devices(ids) => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(ids),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]),
    };
    let isolation = settings.isolation;
    let privileged = isolation == Isolation::Privileged;
    let runtime = (isolation == Isolation::Sysbox).then(|| d.sysbox_runtime.clone());
    let all_caps = isolation == Isolation::Capabilities;
    if isolation == Isolation::Auto {
        return Err(SpecError::IsolationUnresolved);
    }

    let host_config = HostConfig {
        binds: Some(binds),
        // Hides the other users' TensorBoard directories that the read-only /shared would
        // show; the user's own is mounted on top.
        tmpfs: Some(HashMap::from([("/shared/tensorboard".to_string(), "size=64k,mode=0755".to_string())])),
        port_bindings: Some(port_bindings),
        memory: Some(memory_limit),
        memory_reservation: Some(memory_reservation),
        // Docker's memory_swap is memory + swap.
        memory_swap: Some(memory_limit + swap),
        nano_cpus: (cpus > 0.0).then(|| (cpus * 1e9) as i64),
        shm_size: Some(o.shm_gib.unwrap_or(d.shm_gib) as i64 * GIB),
        device_requests,
        privileged: Some(privileged),
        runtime,
        cap_add: all_caps.then(|| vec!["ALL".to_string()]),
        cap_drop: all_caps.then(|| vec!["SYS_RESOURCE".to_string()]),
        security_opt: all_caps.then(|| vec!["seccomp=unconfined".to_string(), "apparmor=unconfined".to_string()]),
        // The API form of the CLI's `--security-opt systempaths=unconfined`.
        masked_paths: all_caps.then(Vec::new),
        readonly_paths: all_caps.then(Vec::new),
        device_cgroup_rules: all_caps.then(|| vec!["a *:* rwm".to_string()]),
        devices: all_caps.then(|| {
            vec![bollard::models::DeviceMapping {
                path_on_host: Some("/dev/fuse".into()),
                path_in_container: Some("/dev/fuse".into()),
                cgroup_permissions: Some("rwm".into()),
            }]
        }),
        restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
        network_mode: Some(network.clone()),
        init: Some(false),
        ..Default::default()
    };

    let mut labels = HashMap::from([
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
    let mut body = ContainerCreateBody {
        image: Some(settings.image.clone()),
        hostname: Some(name.clone()),
        labels: Some(labels),
        env: Some(env),
        exposed_ports: Some(exposed),
        stop_timeout: Some(d.stop_timeout_seconds as i64),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network.clone(), EndpointSettings::default())])),
        }),
        ..Default::default()
    };
    let hash = spec_hash(&body);
    body.labels.as_mut().expect("labels set above").insert(LABEL_SPEC.into(), hash.clone());

    Ok(WorkspaceSpec {
        container_name: name,
        network_name: network,
        ports,
        uid,
        body,
        hash,
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
        ],
    })
}

/// A stable hash of a create body: keys sorted at every level, so HashMap order cannot change it.
pub fn spec_hash(body: &ContainerCreateBody) -> String {
    let value = serde_json::to_value(body).expect("create body serializes");
    let mut text = String::new();
    canonical(&value, &mut text);
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
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

    fn settings() -> WorkspaceSettings {
        let mut settings = WorkspaceSettings::from_config(&Config::default());
        settings.isolation = Isolation::Privileged;
        settings
    }

    fn alice(slot: u32) -> WorkspaceUser {
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

    fn host_config(spec: &WorkspaceSpec) -> &HostConfig {
        spec.body.host_config.as_ref().unwrap()
    }

    fn binding(spec: &WorkspaceSpec, container: &str) -> Option<String> {
        let bindings = host_config(spec).port_bindings.as_ref().unwrap();
        bindings.get(container).map(|b| b.as_ref().unwrap()[0].host_port.clone().unwrap())
    }

    #[test]
    fn names_labels_and_hostname() {
        let spec = build_spec(&alice(0), &settings()).unwrap();
        assert_eq!(spec.container_name, "workspace-alice");
        assert_eq!(spec.body.hostname.as_deref(), Some("workspace-alice"));
        assert_eq!(spec.network_name, "berth-ws-alice");
        let labels = spec.body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_USER], "alice");
        assert_eq!(labels[LABEL_SPEC], spec.hash);
        assert_eq!(host_config(&spec).network_mode.as_deref(), Some("berth-ws-alice"));
        assert_eq!(spec.body.image.as_deref(), Some("berth/workspace:latest"));
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

    fn binding_ip(spec: &WorkspaceSpec, container: &str) -> Option<String> {
        let bindings = host_config(spec).port_bindings.as_ref().unwrap();
        bindings.get(container).map(|b| b.as_ref().unwrap()[0].host_ip.clone().unwrap())
    }

    #[test]
    fn ssh_public_vnc_and_rdp_on_loopback_by_default() {
        let spec = build_spec(&alice(3), &settings()).unwrap();
        assert_eq!(binding(&spec, "22/tcp").as_deref(), Some("10322"));
        assert_eq!(binding(&spec, "5901/tcp").as_deref(), Some("10300"));
        assert_eq!(binding(&spec, "3389/tcp").as_deref(), Some("10305"));
        assert_eq!(binding_ip(&spec, "22/tcp").as_deref(), Some("0.0.0.0"));
        assert_eq!(binding_ip(&spec, "5901/tcp").as_deref(), Some("127.0.0.1"), "VNC's DES challenge stays off the network");
        assert_eq!(binding_ip(&spec, "3389/tcp").as_deref(), Some("127.0.0.1"));
        for web in ["6080/tcp", "8443/tcp", "8888/tcp", "6006/tcp"] {
            assert_eq!(binding(&spec, web), None, "{web} must not be published");
        }

        let mut s = settings();
        s.ports.public = vec!["ssh".into(), "rdp".into()];
        let spec = build_spec(&alice(3), &s).unwrap();
        assert_eq!(binding_ip(&spec, "3389/tcp").as_deref(), Some("0.0.0.0"), "published when the admin says so");
        assert_eq!(binding_ip(&spec, "5901/tcp").as_deref(), Some("127.0.0.1"));

        let mut s = settings();
        s.ports.publish_web = true;
        let spec = build_spec(&alice(3), &s).unwrap();
        assert_eq!(binding(&spec, "8888/tcp").as_deref(), Some("10303"));
        assert_eq!(binding(&spec, "6080/tcp").as_deref(), Some("10301"));
        assert_eq!(binding_ip(&spec, "8888/tcp").as_deref(), Some("127.0.0.1"), "web ports on web_ip, loopback by default");
        s.ports.web_ip = "192.0.2.10".into();
        let spec = build_spec(&alice(3), &s).unwrap();
        assert_eq!(binding_ip(&spec, "6006/tcp").as_deref(), Some("192.0.2.10"));
    }

    #[test]
    fn mounts_under_the_storage_root() {
        let mut s = settings();
        s.storage_root = PathBuf::from("/srv/berth");
        let spec = build_spec(&alice(0), &s).unwrap();
        let binds = host_config(&spec).binds.clone().unwrap();
        assert_eq!(binds, vec![
            "/srv/berth/homes/alice:/home/alice:rw",
            "/srv/berth/workspaces/alice:/workspace:rw",
            "/srv/berth/shared:/shared:ro",
            "/srv/berth/shared/tensorboard/alice:/shared/tensorboard/alice:rw",
            "/srv/berth/state/alice:/var/lib/state:rw",
            "/srv/berth/docker/alice:/var/lib/docker:rw",
        ]);
        assert!(spec.directories.contains(&HostDir { path: PathBuf::from("/srv/berth/homes/alice"), owner: Some(10000), mode: 0o700 }));
        assert!(spec.directories.contains(&HostDir { path: PathBuf::from("/srv/berth/shared/tensorboard/alice"), owner: Some(10000), mode: 0o700 }));
        assert!(spec.directories.contains(&HostDir { path: PathBuf::from("/srv/berth/state/alice"), owner: None, mode: 0o700 }));
        let shared_at = spec.directories.iter().position(|d| d.path == PathBuf::from("/srv/berth/shared")).unwrap();
        let tb_at = spec.directories.iter().position(|d| d.path == PathBuf::from("/srv/berth/shared/tensorboard/alice")).unwrap();
        assert!(shared_at < tb_at, "parents are made first, with their own mode");
        // The other users' TensorBoard directories are hidden under a tmpfs; the user's own is on top.
        let tmpfs = host_config(&spec).tmpfs.clone().unwrap();
        assert_eq!(tmpfs.get("/shared/tensorboard").map(String::as_str), Some("size=64k,mode=0755"));
        // Free space is needed where the workspace writes, not on the read-only shared root.
        assert!(spec.writable.contains(&PathBuf::from("/srv/berth/homes/alice")));
        assert!(spec.writable.contains(&PathBuf::from("/srv/berth/docker/alice")));
        assert!(!spec.writable.contains(&PathBuf::from("/srv/berth/shared")));
        for path in &spec.writable {
            let bind = format!("{}:", path.display());
            assert!(spec.body.host_config.as_ref().unwrap().binds.as_ref().unwrap().iter().any(|b| b.starts_with(&bind) && b.ends_with(":rw")), "{bind}");
        }
    }

    #[test]
    fn resources_defaults_and_overrides() {
        let spec = build_spec(&alice(0), &settings()).unwrap();
        let h = host_config(&spec);
        assert_eq!(h.memory_reservation, Some(32 * GIB));
        assert_eq!(h.memory, Some(100 * GIB));
        assert_eq!(h.memory_swap, Some(150 * GIB));
        assert_eq!(h.nano_cpus, None);
        assert_eq!(h.shm_size, Some(8 * GIB));

        let mut user = alice(0);
        user.overrides = ResourceOverrides { memory_limit_gib: Some(16), memory_reservation_gib: Some(64), cpus: Some(2.5), swap_gib: Some(0), ..Default::default() };
        let spec = build_spec(&user, &settings()).unwrap();
        let h = host_config(&spec);
        assert_eq!(h.memory, Some(16 * GIB));
        assert_eq!(h.memory_reservation, Some(16 * GIB), "reservation never exceeds the limit");
        assert_eq!(h.memory_swap, Some(16 * GIB), "no swap");
        assert_eq!(h.nano_cpus, Some(2_500_000_000));
    }

    #[test]
    fn gpu_requests() {
        let requests = |gpus: &str| {
            let mut user = alice(0);
            user.overrides.gpus = Some(gpus.into());
            build_spec(&user, &settings()).unwrap().body.host_config.unwrap().device_requests
        };
        let all = requests("all").unwrap();
        assert_eq!(all[0].count, Some(-1));
        assert_eq!(all[0].driver.as_deref(), Some("nvidia"));
        assert_eq!(all[0].capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert_eq!(requests("none"), None);
        let some = requests("0, 2").unwrap();
        assert_eq!(some[0].device_ids, Some(vec!["0".to_string(), "2".to_string()]));
        assert_eq!(some[0].count, None);
    }

    #[test]
    fn each_isolation_mode_renders_its_privileges() {
        let with = |mode: Isolation| {
            let mut s = settings();
            s.isolation = mode;
            build_spec(&alice(0), &s)
        };
        let spec = with(Isolation::Privileged).unwrap();
        let h = host_config(&spec);
        assert_eq!((h.privileged, h.runtime.as_deref(), h.cap_add.clone()), (Some(true), None, None));

        let spec = with(Isolation::Sysbox).unwrap();
        let h = host_config(&spec);
        assert_eq!((h.privileged, h.runtime.as_deref(), h.cap_add.clone()), (Some(false), Some("sysbox-runc"), None));

        let spec = with(Isolation::Capabilities).unwrap();
        let h = host_config(&spec);
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_add, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_drop, Some(vec!["SYS_RESOURCE".to_string()]));
        assert!(h.security_opt.as_ref().unwrap().contains(&"seccomp=unconfined".to_string()));

        let spec = with(Isolation::Plain).unwrap();
        let h = host_config(&spec);
        assert_eq!((h.privileged, h.runtime.as_deref()), (Some(false), None));
        assert_eq!((h.cap_add.clone(), h.security_opt.clone(), h.device_cgroup_rules.clone(), h.devices.clone()), (None, None, None, None));
        assert!(spec.body.env.as_ref().unwrap().contains(&"BERTH_DISABLE_SERVICES=dockerd".to_string()), "no Docker inside");
        for mode in [Isolation::Privileged, Isolation::Sysbox, Isolation::Capabilities] {
            assert!(!with(mode).unwrap().body.env.unwrap().iter().any(|e| e.starts_with("BERTH_DISABLE_SERVICES")), "{mode:?}");
        }
        assert_eq!(with(Isolation::Auto), Err(SpecError::IsolationUnresolved), "auto is resolved against the engine first");
        assert_ne!(with(Isolation::Plain).unwrap().hash, with(Isolation::Capabilities).unwrap().hash, "a mode change is drift");
    }

    #[test]
    fn environment_and_restart_policy() {
        let spec = build_spec(&alice(2), &settings()).unwrap();
        let env = spec.body.env.clone().unwrap();
        for expected in ["BERTH_USER=alice", "BERTH_UID=10002", "BERTH_GID=10002", "BERTH_PASSWORD=ssh-pw",
            "BERTH_VNC_PASSWORD=vnc-pw", "BERTH_JUPYTER_TOKEN=jt", "BERTH_APP_SECRET=0123abcd"] {
            assert!(env.contains(&expected.to_string()), "{expected}");
        }
        let policy = host_config(&spec).restart_policy.clone().unwrap();
        assert_eq!(policy.name, Some(RestartPolicyNameEnum::UNLESS_STOPPED));
        assert!(!format!("{:?}", alice(0).secrets).contains("ssh-pw"));
        assert!(!format!("{:?}", alice(0).secrets).contains("0123abcd"));
    }

    #[test]
    fn hash_is_stable_and_detects_drift() {
        let a = build_spec(&alice(0), &settings()).unwrap();
        let b = build_spec(&alice(0), &settings()).unwrap();
        assert_eq!(a.hash, b.hash, "same inputs, same hash, whatever HashMap order");
        let mut s = settings();
        s.image = "berth/workspace:slim".into();
        assert_ne!(build_spec(&alice(0), &s).unwrap().hash, a.hash);
        let mut user = alice(0);
        user.overrides.cpus = Some(4.0);
        assert_ne!(build_spec(&user, &settings()).unwrap().hash, a.hash);
        assert_ne!(build_spec(&alice(1), &settings()).unwrap().hash, a.hash);
    }

    #[test]
    fn extra_label_is_applied() {
        let mut s = settings();
        s.defaults.extra_label = Some("io.berth.test=run-1".into());
        let spec = build_spec(&alice(0), &s).unwrap();
        assert_eq!(spec.body.labels.unwrap()["io.berth.test"], "run-1");
    }
}
