//! The Docker runtime: renders a plan into Docker's create body, and owns what only Docker has
//! (per-user bridge networks, bind-mounted host directories, container addresses).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::chown;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
    DeviceRequest, EndpointSettings, HostConfig, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::engine::{Engine, EngineError};
use super::names::{network_name, workspace_name, LABEL_MANAGED, LABEL_SPEC, LABEL_USER};
use super::runtime::{
    Capabilities, Created, ExecOutcome, Observed, RuntimeError, RuntimeEvent, RuntimeStatus, LogRequest, UsageReading, WorkspaceRuntime,
};
use super::spec::{plan_network, GpuRequest, Mount, WorkspacePlan};
use crate::config::Isolation;

impl From<EngineError> for RuntimeError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unavailable(_) => RuntimeError::Unavailable(e.to_string()),
            EngineError::ImageMissing(image) => RuntimeError::ImageMissing(image),
            EngineError::Operation { op, status, message } => RuntimeError::Failed { op: format!("docker {op}"), status: Some(status), message },
            EngineError::Stream { op, message } => RuntimeError::Failed { op: format!("docker {op}"), status: None, message },
        }
    }
}

/// What the Docker runtime needs beyond the engine.
#[derive(Debug, Clone, Default)]
pub struct DockerSettings {
    /// Refuse a start when a writable directory has less free (0: never refuse).
    pub min_free_mib: u64,
    /// `key=value` every listing must also match (tests, several Berths on one engine).
    pub extra_label: Option<(String, String)>,
    /// Containers attached to each user's network (Traefik, guacd).
    pub attach_containers: Vec<String>,
    /// The image a privileged start is tried with (the workspace image: it is there anyway).
    pub probe_image: Option<String>,
}

pub struct DockerRuntime {
    engine: Arc<Engine>,
    settings: DockerSettings,
}

impl DockerRuntime {
    pub fn new(engine: Arc<Engine>, settings: DockerSettings) -> DockerRuntime {
        DockerRuntime { engine, settings }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Docker's create body for a plan. Pure.
pub fn render(plan: &WorkspacePlan) -> ContainerCreateBody {
    const GPU: &str = "gpu";
    let network = plan_network(plan);
    let exposed: Vec<String> = plan.ports.iter().map(|p| format!("{}/tcp", p.container)).collect();
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = plan
        .ports
        .iter()
        .map(|p| {
            let binding = PortBinding { host_ip: Some(p.host_ip.clone()), host_port: Some(p.host.to_string()) };
            (format!("{}/tcp", p.container), Some(vec![binding]))
        })
        .collect();
    let mut binds = Vec::new();
    let mut tmpfs = HashMap::new();
    for mount in &plan.mounts {
        match mount {
            Mount::Bind { source, target, read_only } => {
                binds.push(format!("{}:{target}:{}", source.display(), if *read_only { "ro" } else { "rw" }))
            }
            Mount::Tmpfs { target, size_bytes, mode } => {
                tmpfs.insert(target.clone(), format!("size={}k,mode={mode:04o}", size_bytes >> 10));
            }
        }
    }
    let device_requests = match &plan.gpus {
        GpuRequest::None => None,
        GpuRequest::All => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            count: Some(-1),
            capabilities: Some(vec![vec![GPU.into()]]),
            ..Default::default()
        }]),
        GpuRequest::Devices(ids) => Some(vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(ids.clone()),
            capabilities: Some(vec![vec![GPU.into()]]),
            ..Default::default()
        }]),
    };
    let all_caps = plan.isolation == Isolation::Capabilities;
    let limits = &plan.limits;
    let host_config = HostConfig {
        binds: Some(binds),
        tmpfs: Some(tmpfs),
        port_bindings: Some(port_bindings),
        memory: Some(limits.memory_bytes),
        memory_reservation: Some(limits.memory_reservation_bytes),
        // Docker's memory_swap is memory + swap.
        memory_swap: Some(limits.memory_bytes + limits.swap_bytes),
        nano_cpus: limits.nano_cpus,
        shm_size: Some(limits.shm_bytes),
        device_requests,
        privileged: Some(plan.isolation == Isolation::Privileged),
        runtime: plan.runtime_class.clone(),
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
    let mut labels: HashMap<String, String> = plan.labels.clone().into_iter().collect();
    labels.insert(LABEL_SPEC.into(), plan.hash());
    ContainerCreateBody {
        image: Some(plan.image.clone()),
        hostname: Some(plan.name.clone()),
        labels: Some(labels),
        env: Some(plan.env.clone()),
        exposed_ports: Some(exposed),
        stop_timeout: Some(plan.stop_timeout_seconds as i64),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, EndpointSettings::default())])),
        }),
        ..Default::default()
    }
}

fn status_of(status: Option<ContainerStateStatusEnum>) -> RuntimeStatus {
    match status {
        Some(ContainerStateStatusEnum::RUNNING) => RuntimeStatus::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => RuntimeStatus::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => RuntimeStatus::Paused,
        Some(ContainerStateStatusEnum::REMOVING | ContainerStateStatusEnum::STOPPING) => RuntimeStatus::Stopping,
        Some(ContainerStateStatusEnum::DEAD) => RuntimeStatus::Dead,
        Some(ContainerStateStatusEnum::CREATED) => RuntimeStatus::Created,
        _ => RuntimeStatus::Exited,
    }
}

fn summary_status(status: Option<ContainerSummaryStateEnum>) -> RuntimeStatus {
    match status {
        Some(ContainerSummaryStateEnum::RUNNING) => RuntimeStatus::Running,
        Some(ContainerSummaryStateEnum::RESTARTING) => RuntimeStatus::Restarting,
        Some(ContainerSummaryStateEnum::PAUSED) => RuntimeStatus::Paused,
        Some(ContainerSummaryStateEnum::REMOVING) => RuntimeStatus::Stopping,
        Some(ContainerSummaryStateEnum::DEAD) => RuntimeStatus::Dead,
        Some(ContainerSummaryStateEnum::CREATED) => RuntimeStatus::Created,
        _ => RuntimeStatus::Exited,
    }
}

fn observed_from_inspect(name: &str, info: &ContainerInspectResponse) -> Observed {
    let labels = info.config.as_ref().and_then(|c| c.labels.as_ref());
    let state = info.state.as_ref();
    let status = status_of(state.and_then(|s| s.status));
    let started_at = state
        .and_then(|s| s.started_at.as_ref())
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(|t| t.unix_timestamp());
    Observed {
        name: name.to_string(),
        owner: labels.and_then(|l| l.get(LABEL_USER)).cloned(),
        status,
        plan_hash: labels.and_then(|l| l.get(LABEL_SPEC)).cloned(),
        started_at: if status == RuntimeStatus::Running { started_at } else { None },
        node: None,
    }
}

fn observed_from_summary(c: &ContainerSummary) -> Option<Observed> {
    let labels = c.labels.as_ref();
    let owner = labels.and_then(|l| l.get(LABEL_USER)).cloned()?;
    Some(Observed {
        name: workspace_name(&owner),
        owner: Some(owner),
        status: summary_status(c.state),
        plan_hash: labels.and_then(|l| l.get(LABEL_SPEC)).cloned(),
        // Listings carry no start time; `observe` has it.
        started_at: None,
        node: None,
    })
}

#[async_trait::async_trait]
impl WorkspaceRuntime for DockerRuntime {
    async fn capabilities(&self) -> Result<Capabilities, RuntimeError> {
        let info = self.engine.info().await?;
        let gpus = info.cdi_gpus || info.runtimes.iter().any(|r| r == "nvidia");
        let mut labels = HashMap::from([("io.berth.probe".to_string(), "true".to_string())]);
        if let Some((k, v)) = &self.settings.extra_label {
            labels.insert(k.clone(), v.clone());
        }
        let privileged = match &self.settings.probe_image {
            Some(image) => match self.engine.privileged_allowed(image, labels).await {
                Ok(answer) => answer,
                Err(EngineError::ImageMissing(image)) => Err(format!("cannot check: the image {image} is not on this engine")),
                Err(e) => return Err(e.into()),
            },
            None => Err("not checked".to_string()),
        };
        Ok(Capabilities { runtimes: info.runtimes, privileged, gpus, swap_limit: info.swap_limit, host_cpus: info.cpus, host_memory_bytes: info.memory_bytes })
    }

    async fn prepare_storage(&self, plan: &WorkspacePlan, check_space: bool) -> Result<(), RuntimeError> {
        prepare_host_storage(plan, check_space, self.settings.min_free_mib)
    }

    async fn connect(&self, plan: &WorkspacePlan) -> Result<(), RuntimeError> {
        connect_owner_network(&self.engine, plan, &self.settings, false).await
    }

    async fn create(&self, plan: &WorkspacePlan) -> Result<Created, RuntimeError> {
        Ok(self.engine.create(&plan.name, render(plan)).await?)
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        Ok(self.engine.start(name).await?)
    }

    async fn stop(&self, name: &str, timeout_seconds: u32) -> Result<(), RuntimeError> {
        Ok(self.engine.stop(name, timeout_seconds).await?)
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        Ok(self.engine.remove(name).await?)
    }

    async fn disconnect(&self, owner: &str) -> Result<(), RuntimeError> {
        Ok(self.engine.remove_network(&network_name(owner)).await?)
    }

    async fn observe(&self, name: &str) -> Result<Option<Observed>, RuntimeError> {
        Ok(self.engine.inspect(name).await?.map(|info| observed_from_inspect(name, &info)))
    }

    async fn list(&self) -> Result<Vec<Observed>, RuntimeError> {
        let listed = self.engine.list_managed(self.settings.extra_label.as_ref()).await?;
        Ok(listed.iter().filter_map(observed_from_summary).collect())
    }

    async fn list_foreign(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self
            .engine
            .list_named_workspaces()
            .await?
            .into_iter()
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_MANAGED)).is_none())
            .filter_map(|c| c.names.and_then(|n| n.first().cloned()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        let events = self.engine.events().await?;
        Ok(events
            // An exec (Berth's own service listing, a password change) changes nothing the
            // runtime reports about the workspace: no need to look at it again for each.
            .filter(|event| {
                let exec = matches!(event, Ok(e) if e.action.as_deref().is_some_and(|a| a.starts_with("exec_")));
                std::future::ready(!exec)
            })
            .map(|event| {
                let event = event?;
                let attributes = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
                let owner = attributes.and_then(|a| a.get(LABEL_USER)).cloned();
                let name = attributes
                    .and_then(|a| a.get("name"))
                    .cloned()
                    .or_else(|| owner.as_deref().map(workspace_name))
                    .unwrap_or_default();
                Ok(RuntimeEvent { name, owner })
            })
            .boxed())
    }

    async fn usage(&self, name: &str) -> Result<Option<UsageReading>, RuntimeError> {
        Ok(self.engine.stats(name).await?)
    }

    async fn writable_layer_bytes(&self, name: &str) -> Result<Option<u64>, RuntimeError> {
        Ok(self.engine.writable_layer_bytes(name).await?)
    }

    async fn logs(&self, name: &str, request: LogRequest) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        Ok(self.engine.logs(name, request.tail, request.follow).await?.map(|r| r.map_err(RuntimeError::from)).boxed())
    }

    async fn service_address(&self, name: &str, port: u16) -> Result<Option<SocketAddr>, RuntimeError> {
        let Some(info) = self.engine.inspect(name).await? else { return Ok(None) };
        let owner = info.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get(LABEL_USER)).cloned();
        let Some(owner) = owner else { return Ok(None) };
        let ip = info
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .and_then(|n| n.get(&network_name(&owner)))
            .and_then(|n| n.ip_address.as_ref())
            .and_then(|ip| ip.parse().ok());
        Ok(ip.map(|ip| SocketAddr::new(ip, port)))
    }

    fn proxy_host(&self, owner: &str) -> String {
        // Docker's DNS on the user's network answers to the container's name.
        workspace_name(owner)
    }

    async fn exec_with_input(&self, name: &str, cmd: &[&str], input: &[u8], timeout: Duration) -> Result<ExecOutcome, RuntimeError> {
        Ok(self.engine.exec_with_input(name, cmd, input, timeout).await?)
    }

    async fn log_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, RuntimeError> {
        Ok(self.engine.log_tail(name, lines).await?)
    }
}

/// The owner's network (a bridge, or with `overlay` a swarm-wide one), with the proxies that
/// must reach the workspace attached to it. Shared by the Docker and Swarm runtimes.
pub(super) async fn connect_owner_network(engine: &Engine, plan: &WorkspacePlan, settings: &DockerSettings, overlay: bool) -> Result<(), RuntimeError> {
    let network = plan_network(plan);
    let mut labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_USER.to_string(), plan.owner.clone()),
    ]);
    if let Some((k, v)) = &settings.extra_label {
        labels.insert(k.clone(), v.clone());
    }
    engine.ensure_network(&network, labels, overlay).await?;
    for container in &settings.attach_containers {
        if let Err(e) = engine.connect_network(&network, container).await {
            tracing::warn!(container, network = %network, error = %e, "cannot attach to the user's network");
        }
    }
    Ok(())
}

/// The workspace's host directories made, and (with `check_space`) free space checked on each
/// it writes to. Shared by the Docker and Swarm runtimes (Swarm: Berth's node, or the shared
/// storage every node mounts).
pub(super) fn prepare_host_storage(plan: &WorkspacePlan, check_space: bool, min_free_mib: u64) -> Result<(), RuntimeError> {
    prepare_directories(plan, min_free_mib)?;
    if check_space {
        check_free_space(plan, min_free_mib)?;
    }
    Ok(())
}

fn storage_error(path: &std::path::Path, source: std::io::Error, min_free_mib: u64) -> RuntimeError {
    if source.raw_os_error() == Some(libc::ENOSPC) {
        tracing::error!(path = %path.display(), "workspace storage is full");
        RuntimeError::StorageFull { path: path.display().to_string(), free_mib: 0, needed_mib: min_free_mib.max(1) }
    } else {
        RuntimeError::Storage { path: path.display().to_string(), source }
    }
}

fn prepare_directories(plan: &WorkspacePlan, min_free_mib: u64) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in &plan.directories {
        let path = &dir.path;
        let existed = path.exists();
        std::fs::create_dir_all(path).map_err(|e| storage_error(path, e, min_free_mib))?;
        // Only a directory Berth just made gets its mode and owner: never walk a user's files.
        if !existed {
            // Set explicitly: the process umask must not decide who can read a home.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(dir.mode)).map_err(|e| storage_error(path, e, min_free_mib))?;
            if let Some(uid) = dir.owner {
                if let Err(e) = chown(path, Some(uid), Some(uid)) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot hand directory to the workspace user");
                }
            }
        }
    }
    Ok(())
}

/// Refuses when a directory the workspace writes to has less than `min_free_mib` free.
fn check_free_space(plan: &WorkspacePlan, needed_mib: u64) -> Result<(), RuntimeError> {
    if needed_mib == 0 {
        return Ok(());
    }
    for path in &plan.writable {
        let free_mib = match crate::disk::free_bytes(path) {
            Ok(bytes) => bytes >> 20,
            Err(source) => return Err(RuntimeError::Storage { path: path.display().to_string(), source }),
        };
        if free_mib < needed_mib {
            tracing::error!(path = %path.display(), free_mib, needed_mib, "workspace storage is full");
            return Err(RuntimeError::StorageFull { path: path.display().to_string(), free_mib, needed_mib });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::spec::{build_plan, ResourceOverrides, WorkspaceSecrets, WorkspaceSettings, WorkspaceUser};

    const GIB: i64 = 1 << 30;

    fn plan_with(isolation: Isolation, gpus: Option<&str>) -> WorkspacePlan {
        let mut settings = WorkspaceSettings::from_config(&crate::config::Config::default());
        settings.isolation = isolation;
        settings.storage_root = "/srv/berth".into();
        let user = WorkspaceUser {
            username: "alice".into(),
            slot: 3,
            secrets: WorkspaceSecrets {
                ssh_password: "ssh-pw".into(),
                vnc_password: "vnc-pw".into(),
                jupyter_token: "jt".into(),
                app_secret: "0123abcd".into(),
            },
            overrides: ResourceOverrides { gpus: gpus.map(str::to_string), ..Default::default() },
        };
        build_plan(&user, &settings).unwrap()
    }

    fn host_config(body: &ContainerCreateBody) -> &HostConfig {
        body.host_config.as_ref().unwrap()
    }

    #[test]
    fn names_labels_network_and_the_plan_hash() {
        let plan = plan_with(Isolation::Privileged, None);
        let body = render(&plan);
        assert_eq!(body.hostname.as_deref(), Some("workspace-alice"));
        assert_eq!(body.image.as_deref(), Some("berth/workspace:latest"));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels["io.berth.managed"], "true");
        assert_eq!(labels["io.berth.user"], "alice");
        assert_eq!(labels["io.berth.spec"], plan.hash());
        assert_eq!(host_config(&body).network_mode.as_deref(), Some("berth-ws-alice"));
        assert!(body.networking_config.unwrap().endpoints_config.unwrap().contains_key("berth-ws-alice"));
        assert_eq!(body.stop_timeout, Some(30));
        assert_eq!(host_config(&render(&plan)).restart_policy.clone().unwrap().name, Some(RestartPolicyNameEnum::UNLESS_STOPPED));
    }

    #[test]
    fn mounts_ports_and_limits_in_docker_terms() {
        let body = render(&plan_with(Isolation::Privileged, None));
        let h = host_config(&body);
        assert_eq!(h.binds.clone().unwrap(), vec![
            "/srv/berth/homes/alice:/home/alice:rw",
            "/srv/berth/workspaces/alice:/workspace:rw",
            "/srv/berth/shared:/shared:ro",
            "/srv/berth/shared/tensorboard/alice:/shared/tensorboard/alice:rw",
            "/srv/berth/state/alice:/var/lib/state:rw",
            "/srv/berth/docker/alice:/var/lib/docker:rw",
            "/srv/berth/keys/alice:/etc/berth/keys:ro",
        ]);
        assert_eq!(h.tmpfs.clone().unwrap().get("/shared/tensorboard").map(String::as_str), Some("size=64k,mode=0755"));
        let bindings = h.port_bindings.clone().unwrap();
        let ssh = bindings["22/tcp"].clone().unwrap();
        assert_eq!((ssh[0].host_ip.as_deref(), ssh[0].host_port.as_deref()), (Some("0.0.0.0"), Some("10322")));
        let vnc = bindings["5901/tcp"].clone().unwrap();
        assert_eq!((vnc[0].host_ip.as_deref(), vnc[0].host_port.as_deref()), (Some("127.0.0.1"), Some("10300")));
        assert!(!bindings.contains_key("8888/tcp"));
        assert_eq!(body.exposed_ports.clone().unwrap(), vec!["22/tcp", "5901/tcp", "3389/tcp"]);
        assert_eq!(h.memory, Some(100 * GIB));
        assert_eq!(h.memory_reservation, Some(32 * GIB));
        assert_eq!(h.memory_swap, Some(150 * GIB), "Docker's swap figure is memory plus swap");
        assert_eq!(h.nano_cpus, None);
        assert_eq!(h.shm_size, Some(8 * GIB));
    }

    #[test]
    fn gpu_requests_for_the_nvidia_driver() {
        let requests = |gpus: &str| host_config(&render(&plan_with(Isolation::Privileged, Some(gpus)))).device_requests.clone();
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
        let body = render(&plan_with(Isolation::Privileged, None));
        let h = host_config(&body);
        assert_eq!((h.privileged, h.runtime.as_deref(), h.cap_add.clone()), (Some(true), None, None));

        let body = render(&plan_with(Isolation::Sysbox, None));
        let h = host_config(&body);
        assert_eq!((h.privileged, h.runtime.as_deref(), h.cap_add.clone()), (Some(false), Some("sysbox-runc"), None));

        let body = render(&plan_with(Isolation::Capabilities, None));
        let h = host_config(&body);
        assert_eq!(h.privileged, Some(false));
        assert_eq!(h.cap_add, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_drop, Some(vec!["SYS_RESOURCE".to_string()]));
        assert!(h.security_opt.as_ref().unwrap().contains(&"seccomp=unconfined".to_string()));

        let body = render(&plan_with(Isolation::Plain, None));
        let h = host_config(&body);
        assert_eq!((h.privileged, h.runtime.as_deref()), (Some(false), None));
        assert_eq!((h.cap_add.clone(), h.security_opt.clone(), h.device_cgroup_rules.clone(), h.devices.clone()), (None, None, None, None));
        assert!(body.env.as_ref().unwrap().contains(&"BERTH_DISABLE_SERVICES=dockerd".to_string()));
    }

    #[test]
    fn inspect_and_listing_map_to_one_status() {
        let inspected = |status| {
            let info = ContainerInspectResponse {
                state: Some(bollard::models::ContainerState { status: Some(status), ..Default::default() }),
                ..Default::default()
            };
            observed_from_inspect("workspace-alice", &info).status
        };
        assert_eq!(inspected(ContainerStateStatusEnum::DEAD), RuntimeStatus::Dead);
        assert_eq!(inspected(ContainerStateStatusEnum::EXITED), RuntimeStatus::Exited);
        assert_eq!(inspected(ContainerStateStatusEnum::RESTARTING), RuntimeStatus::Restarting);
        let listed = |state| {
            let summary = ContainerSummary {
                state: Some(state),
                labels: Some(HashMap::from([("io.berth.user".to_string(), "alice".to_string())])),
                ..Default::default()
            };
            observed_from_summary(&summary).unwrap().status
        };
        // The listing and the inspection once disagreed on "dead": both are an error now.
        assert_eq!(listed(ContainerSummaryStateEnum::DEAD), RuntimeStatus::Dead);
        assert_eq!(listed(ContainerSummaryStateEnum::REMOVING), RuntimeStatus::Stopping);
        assert_eq!(listed(ContainerSummaryStateEnum::RUNNING), RuntimeStatus::Running);
    }
}
