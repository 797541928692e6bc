//! The Swarm runtime: each user's workspace is one Swarm service, `workspace-<user>`, on the
//! swarm Berth's engine manages. Swarm chooses nothing Berth has not asked for: a home is pinned
//! to a node by a node label (unless the storage is shared), a start scales the service to one
//! replica and waits for its task, a stop scales it to none. Berth's own node serves what only
//! an engine can (exec, usage, logs) for the tasks it runs.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointPortConfigProtocolEnum, EndpointSpec, EndpointSpecModeEnum,
    GenericResourcesInner, GenericResourcesInnerDiscreteResourceSpec, Limit, Mount as SwarmMount, MountTmpfsOptions, MountType,
    NetworkAttachmentConfig, Node, NodeSpecAvailabilityEnum, NodeState, ResourceObject, Service, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListContainersOptions, ListNodesOptions, ListServicesOptions, ListTasksOptions, UpdateNodeOptions, UpdateServiceOptions};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::docker::{connect_owner_network, prepare_host_storage, DockerSettings};
use super::engine::Engine;
use super::names::{network_name, workspace_name, LABEL_MANAGED, LABEL_SPEC, LABEL_USER};
use super::runtime::{
    Capabilities, Created, ExecOutcome, LogRequest, NodePlace, NodeView, Observed, RuntimeError, RuntimeEvent, RuntimeStatus, UsageReading,
    WorkspaceRuntime,
};
use super::spec::{GpuRequest, Mount, WorkspacePlan};

/// Swarm's name for the GPUs nodes offer (`node-generic-resources` in their daemon.json).
pub const GPU_RESOURCE: &str = "NVIDIA-GPU";
/// How often `watch` asks for the services: Swarm sends no events for tasks.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How often a start or stop looks at the tasks while it waits.
const WAIT_STEP: Duration = Duration::from_millis(250);
/// How long a start waits for its task to run (an image pull on a new node takes a while).
const START_WAIT: Duration = Duration::from_secs(180);
/// How long a task may stay unplaceable ("no suitable node") before the start gives up.
const UNPLACED_WAIT: Duration = Duration::from_secs(15);

/// The node label that pins `owner`'s home (and so their workspace) to a node.
pub fn home_label(owner: &str) -> String {
    format!("io.berth.home.{owner}")
}

/// What the Swarm runtime needs beyond the engine.
#[derive(Debug, Clone, Default)]
pub struct SwarmSettings {
    /// Storage checks, the extra label and the proxies to attach, as for Docker.
    pub docker: DockerSettings,
    /// The storage root is the same on every node: workspaces go wherever Swarm puts them.
    pub shared_storage: bool,
}

pub struct SwarmRuntime {
    engine: Arc<Engine>,
    settings: SwarmSettings,
    /// This engine's node id, asked once: the sampler, exec and the gateway need it on every
    /// call, and it changes only if the engine leaves the swarm (then Berth is restarted anyway).
    local_node: tokio::sync::OnceCell<String>,
}

impl SwarmRuntime {
    pub fn new(engine: Arc<Engine>, settings: SwarmSettings) -> SwarmRuntime {
        SwarmRuntime { engine, settings, local_node: tokio::sync::OnceCell::new() }
    }
}

/// A Swarm service spec for a plan, with no replica (a start scales it). Pure.
pub fn render_service(plan: &WorkspacePlan, settings: &SwarmSettings) -> ServiceSpec {
    let mut labels: HashMap<String, String> = plan.labels.clone().into_iter().collect();
    labels.insert(LABEL_SPEC.into(), plan.hash());
    let mut mounts: Vec<SwarmMount> = plan
        .mounts
        .iter()
        .map(|mount| match mount {
            Mount::Bind { source, target, read_only } => SwarmMount {
                typ: Some(MountType::BIND),
                source: Some(source.display().to_string()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            },
            Mount::Tmpfs { target, size_bytes, mode } => SwarmMount {
                typ: Some(MountType::TMPFS),
                target: Some(target.clone()),
                tmpfs_options: Some(MountTmpfsOptions { size_bytes: Some(*size_bytes as i64), mode: Some(*mode as i64), ..Default::default() }),
                ..Default::default()
            },
        })
        .collect();
    // Swarm has no shm_size: a tmpfs of that size stands in (PyTorch's data loaders need it).
    mounts.push(SwarmMount {
        typ: Some(MountType::TMPFS),
        target: Some("/dev/shm".into()),
        tmpfs_options: Some(MountTmpfsOptions { size_bytes: Some(plan.limits.shm_bytes), mode: Some(0o1777), ..Default::default() }),
        ..Default::default()
    });
    let mut env = plan.env.clone();
    // A CUDA image asks for every GPU by default; the NVIDIA runtime, default on GPU nodes,
    // would give them all. "void": none, unless the plan holds some.
    let (visible, gpu_count) = match &plan.gpus {
        GpuRequest::None => ("void".to_string(), 0),
        GpuRequest::All => ("all".to_string(), 0),
        GpuRequest::Devices(ids) => (ids.join(","), ids.len() as i64),
    };
    env.push(format!("NVIDIA_VISIBLE_DEVICES={visible}"));
    let reservations = ResourceObject {
        memory_bytes: Some(plan.limits.memory_reservation_bytes),
        generic_resources: (gpu_count > 0).then(|| {
            vec![GenericResourcesInner {
                discrete_resource_spec: Some(GenericResourcesInnerDiscreteResourceSpec { kind: Some(GPU_RESOURCE.into()), value: Some(gpu_count) }),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let constraints = (!settings.shared_storage).then(|| vec![format!("node.labels.{}==true", home_label(&plan.owner))]);
    // Only the public ports (SSH by default): host-mode publishing binds every address of the
    // node, so the loopback-only VNC and RDP ports stay unpublished (Guacamole and the SSH
    // tunnel reach them over the user's network).
    let ports: Vec<EndpointPortConfig> = plan
        .ports
        .iter()
        .filter(|p| !p.host_ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
        .map(|p| EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(p.container.into()),
            published_port: Some(p.host.into()),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(plan.name.clone()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(plan.image.clone()),
                // On the task's container too: listings and clean-up find it by them.
                labels: Some(labels),
                hostname: Some(plan.name.clone()),
                env: Some(env),
                mounts: Some(mounts),
                stop_grace_period: Some(i64::from(plan.stop_timeout_seconds) * 1_000_000_000),
                init: Some(false),
                // Every task on a node shares docker_gwbridge: its "no traffic between
                // containers" holds for IP only. Without raw sockets a workspace cannot forge
                // ARP there to take over another user's address (ping still works).
                capability_drop: Some(vec!["CAP_NET_RAW".into()]),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit { memory_bytes: Some(plan.limits.memory_bytes), nano_cpus: plan.limits.nano_cpus, ..Default::default() }),
                reservations: Some(reservations),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(5_000_000_000),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement { constraints, ..Default::default() }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network_name(&plan.owner)),
                aliases: Some(vec![plan.name.clone()]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }), ..Default::default() }),
        // DNS round robin: the name resolves to the task itself, as a container name does
        // (a virtual IP would put IPVS between the proxies and the workspace).
        endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports: Some(ports) }),
        ..Default::default()
    }
}

fn replicas(service: &Service) -> i64 {
    service.spec.as_ref().and_then(|s| s.mode.as_ref()).and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(0)
}

fn service_labels(service: &Service) -> Option<&HashMap<String, String>> {
    service.spec.as_ref().and_then(|s| s.labels.as_ref())
}

fn task_state(task: &Task) -> Option<TaskState> {
    task.status.as_ref().and_then(|s| s.state)
}

/// A task that is not over: Swarm may still run it, or runs it.
fn is_live(state: Option<TaskState>) -> bool {
    matches!(
        state,
        Some(
            TaskState::NEW
                | TaskState::ALLOCATED
                | TaskState::PENDING
                | TaskState::ASSIGNED
                | TaskState::ACCEPTED
                | TaskState::PREPARING
                | TaskState::READY
                | TaskState::STARTING
                | TaskState::RUNNING
        )
    )
}

/// When a task was made, in nanoseconds (Swarm's timestamps drop trailing zeros, so their text
/// does not sort).
fn created_ns(task: &Task) -> i128 {
    task.created_at
        .as_deref()
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map_or(0, |t| t.unix_timestamp_nanos())
}

/// The task Swarm wants running now (the newest, when a replacement is on its way).
pub fn wanted_task(tasks: &[Task]) -> Option<&Task> {
    tasks.iter().filter(|t| t.desired_state == Some(TaskState::RUNNING)).max_by_key(|t| created_ns(t))
}

/// The workspace's condition from its replica count and its tasks. Pure.
pub fn status_of(replicas: i64, tasks: &[Task]) -> RuntimeStatus {
    if replicas == 0 {
        return if tasks.iter().any(|t| is_live(task_state(t))) { RuntimeStatus::Stopping } else { RuntimeStatus::Exited };
    }
    match wanted_task(tasks).and_then(task_state) {
        Some(TaskState::RUNNING) => RuntimeStatus::Running,
        // Being placed, pulled, started, or replaced after a failure: on its way up.
        _ => RuntimeStatus::Restarting,
    }
}

fn unix_seconds(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

fn node_view(node: &Node) -> NodeView {
    let spec = node.spec.as_ref();
    let description = node.description.as_ref();
    let resources = description.and_then(|d| d.resources.as_ref());
    let gpus = resources
        .and_then(|r| r.generic_resources.as_ref())
        .map(|all| {
            all.iter()
                .map(|g| match (&g.discrete_resource_spec, &g.named_resource_spec) {
                    (Some(d), _) if d.kind.as_deref() == Some(GPU_RESOURCE) => d.value.unwrap_or(0).max(0) as u32,
                    (_, Some(n)) if n.kind.as_deref() == Some(GPU_RESOURCE) => 1,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0);
    let mut homes: Vec<String> = spec
        .and_then(|s| s.labels.as_ref())
        .map(|labels| {
            labels.iter().filter(|(_, v)| v.as_str() == "true").filter_map(|(k, _)| k.strip_prefix("io.berth.home.").map(str::to_string)).collect()
        })
        .unwrap_or_default();
    homes.sort();
    NodeView {
        id: node.id.clone().unwrap_or_default(),
        hostname: description.and_then(|d| d.hostname.clone()).unwrap_or_default(),
        address: node_address(node),
        ready: node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY),
        active: spec.and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE),
        cpus: resources.and_then(|r| r.nano_cpus).map_or(0, |n| (n / 1_000_000_000) as u32),
        memory_bytes: resources.and_then(|r| r.memory_bytes).unwrap_or(0).max(0) as u64,
        gpus,
        homes,
    }
}

/// The address a node is reached at: its status address, or on a manager that reports 0.0.0.0
/// or loopback there (it does, when it listens on every address), its manager address's host.
fn node_address(node: &Node) -> String {
    let status = node.status.as_ref().and_then(|s| s.addr.clone()).unwrap_or_default();
    let unusable = status.parse::<IpAddr>().map_or(status.is_empty(), |ip| ip.is_unspecified() || ip.is_loopback());
    let manager = node
        .manager_status
        .as_ref()
        .and_then(|m| m.addr.as_deref())
        .and_then(|a| a.rsplit_once(':'))
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']').to_string());
    match manager {
        Some(host) if unusable && !host.is_empty() => host,
        _ => status,
    }
}

/// What a new home asks of its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HomeNeeds {
    pub memory_reservation_bytes: i64,
    pub gpus: u32,
}

/// What the workspaces reserve per node: those running there now, and all whose homes it holds
/// (running or not: they come back there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved {
    pub running: HashMap<String, i64>,
    pub pinned: HashMap<String, i64>,
}

/// The node a new home goes to, among the ready and active ones with the GPUs asked for: Berth's
/// own (`local`) when the reservation fits beside every home it holds, since Berth makes the
/// directories and writes the keys only on its own node; else the one with the most memory left
/// after what running workspaces reserve, then the fewest homes. Pure.
pub fn choose_home_node<'a>(nodes: &'a [NodeView], reserved: &Reserved, needs: HomeNeeds, local: &str) -> Option<&'a NodeView> {
    let of = |map: &HashMap<String, i64>, n: &NodeView| n.memory_bytes as i64 - map.get(&n.id).copied().unwrap_or(0);
    let fit: Vec<&NodeView> = nodes.iter().filter(|n| n.ready && n.active && n.gpus >= needs.gpus).collect();
    if let Some(own) = fit.iter().find(|n| n.id == local && of(&reserved.pinned, n) >= needs.memory_reservation_bytes) {
        return Some(own);
    }
    let left = |n: &NodeView| of(&reserved.running, n);
    fit.into_iter().max_by(|a, b| left(a).cmp(&left(b)).then(b.homes.len().cmp(&a.homes.len())).then(b.hostname.cmp(&a.hostname)))
}

fn placed(task: Option<&Task>, nodes: &HashMap<String, NodeView>) -> Option<NodePlace> {
    let node = nodes.get(task?.node_id.as_deref()?)?;
    Some(NodePlace { hostname: node.hostname.clone(), address: node.address.clone() })
}

fn observed(name: &str, service: &Service, tasks: &[Task], nodes: &HashMap<String, NodeView>) -> Observed {
    let labels = service_labels(service);
    let status = status_of(replicas(service), tasks);
    let wanted = wanted_task(tasks);
    let started_at = match status {
        RuntimeStatus::Running => wanted.and_then(|t| t.status.as_ref()).and_then(|s| s.timestamp.as_deref()).and_then(unix_seconds),
        _ => None,
    };
    Observed {
        name: name.to_string(),
        owner: labels.and_then(|l| l.get(LABEL_USER)).cloned(),
        status,
        plan_hash: labels.and_then(|l| l.get(LABEL_SPEC)).cloned(),
        started_at,
        node: if status == RuntimeStatus::Exited { None } else { placed(wanted, nodes) },
    }
}

/// Why a task did not run, in Swarm's words.
fn task_problem(task: &Task) -> String {
    let status = task.status.as_ref();
    let state = task_state(task).map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
    let why = status.and_then(|s| s.err.clone().or_else(|| s.message.clone())).unwrap_or_default();
    format!("task {state}: {why}")
}

impl SwarmRuntime {
    fn failed(op: &str, status: Option<u16>, message: impl Into<String>) -> RuntimeError {
        RuntimeError::Failed { op: format!("swarm {op}"), status, message: message.into() }
    }

    async fn inspect_service(&self, name: &str) -> Result<Option<Service>, RuntimeError> {
        let docker = self.engine.client().await?;
        match docker.inspect_service(name, None).await {
            Ok(service) => Ok(Some(service)),
            Err(e) => match self.engine.fail("inspect service", e).await {
                e if e.status() == Some(404) => Ok(None),
                e => Err(e.into()),
            },
        }
    }

    async fn tasks(&self, service_id: Option<&str>) -> Result<Vec<Task>, RuntimeError> {
        let docker = self.engine.client().await?;
        let filters = service_id.map(|id| HashMap::from([("service".to_string(), vec![id.to_string()])]));
        match docker.list_tasks(Some(ListTasksOptions { filters })).await {
            Ok(tasks) => Ok(tasks),
            Err(e) => Err(self.engine.fail("list tasks", e).await.into()),
        }
    }

    async fn service_tasks(&self, service: &Service) -> Result<Vec<Task>, RuntimeError> {
        match service.id.as_deref() {
            Some(id) => self.tasks(Some(id)).await,
            None => Ok(Vec::new()),
        }
    }

    async fn raw_nodes(&self) -> Result<Vec<Node>, RuntimeError> {
        let docker = self.engine.client().await?;
        match docker.list_nodes(None::<ListNodesOptions>).await {
            Ok(nodes) => Ok(nodes),
            Err(e) => Err(self.engine.fail("list nodes", e).await.into()),
        }
    }

    async fn down_nodes(&self) -> Result<HashSet<String>, RuntimeError> {
        Ok(self
            .raw_nodes()
            .await?
            .into_iter()
            .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::DOWN))
            .filter_map(|n| n.id)
            .collect())
    }

    async fn node_map(&self) -> Result<HashMap<String, NodeView>, RuntimeError> {
        Ok(self.raw_nodes().await?.iter().map(node_view).map(|n| (n.id.clone(), n)).collect())
    }

    /// This engine's node in the swarm; an engine in no swarm is a configuration error.
    async fn local_node(&self) -> Result<String, RuntimeError> {
        Ok(self.local_node.get_or_try_init(|| self.ask_local_node()).await?.clone())
    }

    async fn ask_local_node(&self) -> Result<String, RuntimeError> {
        let docker = self.engine.client().await?;
        let info = match docker.info().await {
            Ok(info) => info,
            Err(e) => return Err(self.engine.fail("info", e).await.into()),
        };
        let swarm = info.swarm.unwrap_or_default();
        match (swarm.node_id.filter(|id| !id.is_empty()), swarm.control_available) {
            (Some(id), Some(true)) => Ok(id),
            _ => Err(Self::failed(
                "info",
                Some(503),
                format!("{} is not a manager of a swarm: run `docker swarm init` there, or set runtime = \"docker\"", self.engine.host()),
            )),
        }
    }

    /// Sets the replica count, retrying when another update came between read and write.
    async fn scale(&self, name: &str, count: i64) -> Result<(), RuntimeError> {
        let docker = self.engine.client().await?;
        for attempt in 0..5 {
            let Some(service) = self.inspect_service(name).await? else {
                return Err(Self::failed("scale", Some(404), format!("no service {name}")));
            };
            if replicas(&service) == count {
                return Ok(());
            }
            let mut spec = service.spec.clone().unwrap_or_default();
            spec.mode = Some(ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(count) }), ..Default::default() });
            let version = service.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            let options = UpdateServiceOptions { version: version as i32, ..Default::default() };
            match docker.update_service(name, spec, options, None).await {
                Ok(_) => return Ok(()),
                Err(e) => match self.engine.fail("update service", e).await {
                    e if e.to_string().contains("out of sequence") && attempt < 4 => continue,
                    e => return Err(e.into()),
                },
            }
        }
        Err(Self::failed("scale", None, format!("{name} kept changing under the update")))
    }

    /// The labels of node `id` with `change` applied, written back at the version read; read
    /// again and retried when another update (another user's first start) came between.
    async fn relabel(&self, id: &str, change: impl Fn(&mut HashMap<String, String>)) -> Result<(), RuntimeError> {
        let docker = self.engine.client().await?;
        for attempt in 0..5 {
            let node = match docker.inspect_node(id).await {
                Ok(node) => node,
                Err(e) => return Err(self.engine.fail("inspect node", e).await.into()),
            };
            let mut spec = node.spec.clone().unwrap_or_default();
            let mut labels = spec.labels.take().unwrap_or_default();
            change(&mut labels);
            spec.labels = Some(labels);
            let version = node.version.as_ref().and_then(|v| v.index).unwrap_or(0) as i64;
            match docker.update_node(id, spec, UpdateNodeOptions { version }).await {
                Ok(()) => return Ok(()),
                Err(e) => match self.engine.fail("update node", e).await {
                    e if e.to_string().contains("out of sequence") && attempt < 4 => continue,
                    e => return Err(e.into()),
                },
            }
        }
        Err(Self::failed("update node", None, format!("node {id} kept changing under the update")))
    }

    /// Pins a new home to a node (the one it has, if it has one).
    async fn ensure_home(&self, plan: &WorkspacePlan) -> Result<(), RuntimeError> {
        let label = home_label(&plan.owner);
        let nodes = self.raw_nodes().await?;
        if nodes.iter().any(|n| n.spec.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.get(&label)).is_some_and(|v| v == "true")) {
            return Ok(());
        }
        let views: Vec<NodeView> = nodes.iter().map(node_view).collect();
        let reserved = self.reserved_memory(&views).await?;
        let gpus = match &plan.gpus {
            GpuRequest::Devices(ids) => ids.len() as u32,
            _ => 0,
        };
        let needs = HomeNeeds { memory_reservation_bytes: plan.limits.memory_reservation_bytes, gpus };
        let Some(chosen) = choose_home_node(&views, &reserved, needs, &self.local_node().await?) else {
            return Err(Self::failed("place", Some(503), format!("no ready, active node has {gpus} GPU(s) for {}", plan.owner)));
        };
        tracing::info!(user = %plan.owner, node = %chosen.hostname, "home placed");
        self.relabel(&chosen.id, |labels| {
            labels.insert(label.clone(), "true".into());
        })
        .await
    }

    /// Memory reserved per node by the workspaces running there, and by those whose homes it holds.
    async fn reserved_memory(&self, nodes: &[NodeView]) -> Result<Reserved, RuntimeError> {
        let services = self.managed_services().await?;
        let tasks = self.tasks(None).await?;
        let mut reserved = Reserved::default();
        for service in &services {
            let memory = service
                .spec
                .as_ref()
                .and_then(|s| s.task_template.as_ref())
                .and_then(|t| t.resources.as_ref())
                .and_then(|r| r.reservations.as_ref())
                .and_then(|r| r.memory_bytes)
                .unwrap_or(0);
            let of_service: Vec<Task> = tasks.iter().filter(|t| t.service_id == service.id).cloned().collect();
            if let Some(node) = wanted_task(&of_service).and_then(|t| t.node_id.clone()) {
                *reserved.running.entry(node).or_insert(0) += memory;
            }
            let owner = service_labels(service).and_then(|l| l.get(LABEL_USER));
            if let Some(home) = nodes.iter().find(|n| owner.is_some_and(|o| n.homes.contains(o))) {
                *reserved.pinned.entry(home.id.clone()).or_insert(0) += memory;
            }
        }
        Ok(reserved)
    }

    async fn managed_services(&self) -> Result<Vec<Service>, RuntimeError> {
        let mut labels = vec![format!("{LABEL_MANAGED}=true")];
        if let Some((k, v)) = &self.settings.docker.extra_label {
            labels.push(format!("{k}={v}"));
        }
        let docker = self.engine.client().await?;
        let options = ListServicesOptions { filters: Some(HashMap::from([("label".to_string(), labels)])), ..Default::default() };
        match docker.list_services(Some(options)).await {
            Ok(services) => Ok(services),
            Err(e) => Err(self.engine.fail("list services", e).await.into()),
        }
    }

    /// The container of the workspace's task on Berth's own node: the running one, or with
    /// `any_state` the newest (its log outlives it). Err 409 when it runs on another node.
    async fn local_container(&self, name: &str, any_state: bool) -> Result<Option<String>, RuntimeError> {
        let Some(service) = self.inspect_service(name).await? else { return Ok(None) };
        let tasks = self.service_tasks(&service).await?;
        let task = match wanted_task(&tasks).filter(|t| task_state(t) == Some(TaskState::RUNNING)) {
            Some(task) => task,
            None if any_state => match tasks.iter().filter(|t| container_of(t).is_some()).max_by_key(|t| created_ns(t)) {
                Some(task) => task,
                None => return Ok(None),
            },
            None => return Ok(None),
        };
        if task.node_id.as_deref() != Some(self.local_node().await?.as_str()) {
            let node = placed(Some(task), &self.node_map().await?).map(|p| p.hostname).unwrap_or_else(|| "another node".into());
            return Err(Self::failed(
                "exec",
                Some(409),
                format!("{name} runs on {node}; Berth reads and runs commands only in workspaces on its own node"),
            ));
        }
        Ok(container_of(task))
    }

    /// The address of a local task's container on `docker_gwbridge`, which the host reaches and
    /// other containers do not (that bridge forbids traffic between containers).
    async fn gateway_address(&self, container: &str) -> Result<Option<IpAddr>, RuntimeError> {
        let docker = self.engine.client().await?;
        let network = match docker.inspect_network("docker_gwbridge", None).await {
            Ok(network) => network,
            Err(e) => return Err(self.engine.fail("inspect network", e).await.into()),
        };
        let ip = network
            .containers
            .unwrap_or_default()
            .get(container)
            .and_then(|endpoint| endpoint.ipv4_address.as_deref())
            .and_then(|cidr| cidr.split('/').next())
            .and_then(|ip| ip.parse().ok());
        Ok(ip)
    }

    /// Every task on this node shares `docker_gwbridge`: Swarm makes it with traffic between
    /// containers forbidden, and a bridge an admin made by hand without that would put every
    /// user's workspace in reach of every other. Refused, with the fix.
    async fn check_gateway_bridge(&self) -> Result<(), RuntimeError> {
        let docker = self.engine.client().await?;
        let network = match docker.inspect_network("docker_gwbridge", None).await {
            Ok(network) => network,
            Err(e) => match self.engine.fail("inspect network", e).await {
                // Not made yet (a node makes it with its first task): Swarm's own is safe.
                e if e.status() == Some(404) => return Ok(()),
                e => return Err(e.into()),
            },
        };
        let icc = network.options.unwrap_or_default().get("com.docker.network.bridge.enable_icc").cloned();
        // As Docker reads it (Go's ParseBool).
        if matches!(icc.as_deref(), Some("false" | "False" | "FALSE" | "f" | "F" | "0")) {
            return Ok(());
        }
        Err(Self::failed(
            "connect",
            Some(503),
            "docker_gwbridge on this node lets containers reach each other (com.docker.network.bridge.enable_icc is not false): every user's workspace would be in reach of every other; recreate it as Docker's swarm documentation shows, with -o com.docker.network.bridge.enable_icc=false",
        ))
    }

    /// A remote task's address by its name, accepted only inside the owner's overlay: no other
    /// resolver may send Berth's probes or its app gateway elsewhere.
    async fn overlay_address(&self, owner: &str, name: &str, port: u16) -> Result<Option<SocketAddr>, RuntimeError> {
        let docker = self.engine.client().await?;
        let network = match docker.inspect_network(&network_name(owner), None).await {
            Ok(network) => network,
            Err(e) => return Err(self.engine.fail("inspect network", e).await.into()),
        };
        let subnets: Vec<ipnet::IpNet> = network
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.subnet.as_deref()?.parse().ok())
            .collect();
        let Ok(addresses) = tokio::net::lookup_host((name, port)).await else { return Ok(None) };
        Ok(addresses.into_iter().find(|a| subnets.iter().any(|s| s.contains(&a.ip()))))
    }
}

fn container_of(task: &Task) -> Option<String> {
    task.status.as_ref().and_then(|s| s.container_status.as_ref()).and_then(|c| c.container_id.clone()).filter(|id| !id.is_empty())
}

#[async_trait::async_trait]
impl WorkspaceRuntime for SwarmRuntime {
    async fn capabilities(&self) -> Result<Capabilities, RuntimeError> {
        let info = self.engine.info().await?;
        let nodes = self.nodes().await?;
        // Swarm cannot choose a runtime per service: sysbox only as the nodes' default.
        let runtimes = info.default_runtime.iter().filter(|r| r.as_str() != "runc").cloned().collect();
        Ok(Capabilities {
            runtimes,
            privileged: Err("Swarm services cannot run privileged".into()),
            gpus: nodes.iter().any(|n| n.gpus > 0),
            // Swarm's API (before 1.52) has no swap setting: a task may swap as much as its node lets it.
            swap_limit: false,
            host_cpus: info.cpus,
            host_memory_bytes: info.memory_bytes,
        })
    }

    async fn prepare_storage(&self, plan: &WorkspacePlan, check_space: bool) -> Result<(), RuntimeError> {
        prepare_host_storage(plan, check_space, self.settings.docker.min_free_mib)
    }

    async fn connect(&self, plan: &WorkspacePlan) -> Result<(), RuntimeError> {
        connect_owner_network(&self.engine, plan, &self.settings.docker, true).await?;
        self.check_gateway_bridge().await
    }

    async fn create(&self, plan: &WorkspacePlan) -> Result<Created, RuntimeError> {
        if self.inspect_service(&plan.name).await?.is_some() {
            return Ok(Created::AlreadyExisted);
        }
        if let Some(wanted) = &plan.runtime_class {
            let default = self.engine.info().await?.default_runtime.unwrap_or_default();
            if &default != wanted {
                return Err(Self::failed(
                    "create service",
                    Some(400),
                    format!("Swarm cannot choose a runtime per service: make {wanted} the nodes' default runtime (daemon.json \"default-runtime\"; it is {default:?} here), or use workspace.isolation = \"plain\""),
                ));
            }
        }
        if !self.settings.shared_storage {
            self.ensure_home(plan).await?;
        }
        let docker = self.engine.client().await?;
        match docker.create_service(render_service(plan, &self.settings), None).await {
            Ok(_) => Ok(Created::New),
            Err(e) => match self.engine.fail("create service", e).await {
                e if e.status() == Some(409) => Ok(Created::AlreadyExisted),
                e => Err(e.into()),
            },
        }
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        let Some(service) = self.inspect_service(name).await? else {
            return Err(Self::failed("start", Some(404), format!("no service {name}")));
        };
        let before: HashSet<String> = self.service_tasks(&service).await?.into_iter().filter_map(|t| t.id).collect();
        self.scale(name, 1).await?;
        let began = tokio::time::Instant::now();
        let problem = loop {
            let tasks = self.service_tasks(&service).await?;
            let wanted = wanted_task(&tasks);
            if wanted.is_some_and(|t| task_state(t) == Some(TaskState::RUNNING)) {
                return Ok(());
            }
            // Judged by the tasks of this start only: an older failure is history.
            let failed = tasks.iter().find(|t| {
                !t.id.as_ref().is_some_and(|id| before.contains(id)) && matches!(task_state(t), Some(TaskState::FAILED | TaskState::REJECTED))
            });
            if let Some(task) = failed {
                break task_problem(task);
            }
            let unplaced = wanted.filter(|t| task_state(t) == Some(TaskState::PENDING) && t.status.as_ref().is_some_and(|s| s.err.is_some()));
            if let Some(task) = unplaced {
                if began.elapsed() >= UNPLACED_WAIT {
                    break task_problem(task);
                }
            }
            if began.elapsed() >= START_WAIT {
                break format!("no task running after {} s", START_WAIT.as_secs());
            }
            tokio::time::sleep(WAIT_STEP).await;
        };
        // Back to none, so Swarm does not go on trying behind Berth's back.
        if let Err(e) = self.scale(name, 0).await {
            tracing::warn!(workspace = name, error = %e, "cannot scale a failed workspace back to 0");
        }
        if let Some(image) = problem.contains("No such image").then(|| service.spec.as_ref()?.task_template.as_ref()?.container_spec.as_ref()?.image.clone()).flatten() {
            return Err(RuntimeError::ImageMissing(image));
        }
        Err(Self::failed("start", None, problem))
    }

    async fn stop(&self, name: &str, timeout_seconds: u32) -> Result<(), RuntimeError> {
        let Some(service) = self.inspect_service(name).await? else { return Ok(()) };
        match self.scale(name, 0).await {
            // Removed meanwhile: stopped for good.
            Err(e) if e.status() == Some(404) => return Ok(()),
            other => other?,
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(timeout_seconds) + 30);
        loop {
            let tasks = self.service_tasks(&service).await?;
            let live: Vec<&Task> = tasks.iter().filter(|t| is_live(task_state(t))).collect();
            if live.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                // A node that is down keeps reporting its task running: it runs nothing Berth
                // can wait for, and Swarm shuts the task down when the node comes back. Judged
                // only now, and only for nodes down (not "unknown", as every node is for a
                // moment after a manager restarts).
                let down = self.down_nodes().await?;
                if live.iter().all(|t| t.node_id.as_ref().is_some_and(|n| down.contains(n))) {
                    tracing::warn!(workspace = name, "stopped but for a task on a node that is down");
                    return Ok(());
                }
                return Err(Self::failed("stop", None, format!("{name} still has a task {timeout_seconds} s after its stop")));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let Some(service) = self.inspect_service(name).await? else { return Ok(()) };
        // Stopped through the task list first: deleting a service does not wait for its task.
        let grace = service
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.stop_grace_period)
            .map_or(10, |ns| (ns / 1_000_000_000).clamp(1, 600) as u32);
        if let Err(e) = self.stop(name, grace).await {
            // Deleted all the same: Swarm ends the task when it can, and the account or reset
            // that asked must not be stuck behind it.
            tracing::warn!(workspace = name, error = %e, "removing a workspace whose task did not stop");
        }
        let docker = self.engine.client().await?;
        if let Err(e) = docker.delete_service(name).await {
            match self.engine.fail("delete service", e).await {
                e if e.status() == Some(404) => {}
                e => return Err(e.into()),
            }
        }
        // Its containers hold the published port until they are gone: a new service of the
        // same name would fail to start meanwhile. Only this node's are seen: one on another
        // node may outlive this call by the time its agent takes.
        let id = service.id.clone().unwrap_or_default();
        let filters = HashMap::from([("label".to_string(), vec![format!("com.docker.swarm.service.id={id}")])]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let options = ListContainersOptions { all: true, filters: Some(filters.clone()), ..Default::default() };
            let left = match docker.list_containers(Some(options)).await {
                Ok(list) => list.len(),
                Err(e) => return Err(self.engine.fail("list containers", e).await.into()),
            };
            if left == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Self::failed("remove", None, format!("{left} container(s) of {name} still there 30 s after its removal")));
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    async fn disconnect(&self, owner: &str) -> Result<(), RuntimeError> {
        // An overlay keeps a task's endpoint a moment after the task is gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match self.engine.remove_network(&network_name(owner)).await {
                Err(e) if e.to_string().contains("active endpoints") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                other => return Ok(other?),
            }
        }
    }

    async fn observe(&self, name: &str) -> Result<Option<Observed>, RuntimeError> {
        let Some(service) = self.inspect_service(name).await? else { return Ok(None) };
        let tasks = self.service_tasks(&service).await?;
        let nodes = if wanted_task(&tasks).is_some() { self.node_map().await? } else { HashMap::new() };
        Ok(Some(observed(name, &service, &tasks, &nodes)))
    }

    async fn list(&self) -> Result<Vec<Observed>, RuntimeError> {
        let services = self.managed_services().await?;
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let tasks = self.tasks(None).await?;
        let nodes = self.node_map().await?;
        Ok(services
            .iter()
            .map(|service| {
                let own: Vec<Task> = tasks.iter().filter(|t| t.service_id == service.id).cloned().collect();
                let name = service.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
                observed(&name, service, &own, &nodes)
            })
            .collect())
    }

    async fn list_foreign(&self) -> Result<Vec<String>, RuntimeError> {
        let docker = self.engine.client().await?;
        let options = ListServicesOptions { filters: Some(HashMap::from([("name".to_string(), vec!["workspace-".to_string()])])), ..Default::default() };
        let services = match docker.list_services(Some(options)).await {
            Ok(services) => services,
            Err(e) => return Err(self.engine.fail("list services", e).await.into()),
        };
        Ok(services
            .iter()
            .filter(|s| service_labels(s).and_then(|l| l.get(LABEL_MANAGED)).is_none())
            .filter_map(|s| s.spec.as_ref()?.name.clone())
            .collect())
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        // Polled: Swarm has events for services but none for their tasks. The first reading is
        // the baseline; each later one yields the workspaces that changed.
        type Seen = HashMap<String, Observed>;
        let read = |list: Vec<Observed>| -> Seen { list.into_iter().map(|o| (o.name.clone(), o)).collect() };
        let baseline = read(self.list().await?);
        let this = SwarmRuntime::new(self.engine.clone(), self.settings.clone());
        let stream = futures_util::stream::unfold((this, baseline, Vec::<RuntimeEvent>::new()), move |(this, mut seen, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    return Some((Ok(event), (this, seen, pending)));
                }
                tokio::time::sleep(WATCH_EVERY).await;
                let now = match this.list().await {
                    Ok(list) => read(list),
                    Err(e) => return Some((Err(e), (this, seen, pending))),
                };
                for (name, observed) in &now {
                    if seen.get(name) != Some(observed) {
                        pending.push(RuntimeEvent { name: name.clone(), owner: observed.owner.clone() });
                    }
                }
                for (name, gone) in &seen {
                    if !now.contains_key(name) {
                        pending.push(RuntimeEvent { name: name.clone(), owner: gone.owner.clone() });
                    }
                }
                seen = now;
            }
        });
        Ok(stream.boxed())
    }

    async fn usage(&self, name: &str) -> Result<Option<UsageReading>, RuntimeError> {
        match self.local_container(name, false).await {
            Ok(Some(container)) => Ok(self.engine.stats(&container).await?),
            Ok(None) => Ok(None),
            // Another node's workspace: not sampled (README "A Swarm cluster").
            Err(e) if e.status() == Some(409) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn writable_layer_bytes(&self, name: &str) -> Result<Option<u64>, RuntimeError> {
        match self.local_container(name, true).await {
            Ok(Some(container)) => Ok(self.engine.writable_layer_bytes(&container).await?),
            Ok(None) => Ok(None),
            Err(e) if e.status() == Some(409) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn logs(&self, name: &str, request: LogRequest) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        match self.local_container(name, true).await? {
            Some(container) => Ok(self.engine.logs(&container, request.tail, request.follow).await?.map(|r| r.map_err(RuntimeError::from)).boxed()),
            None => Ok(futures_util::stream::empty().boxed()),
        }
    }

    async fn service_address(&self, name: &str, port: u16) -> Result<Option<SocketAddr>, RuntimeError> {
        let Some(service) = self.inspect_service(name).await? else { return Ok(None) };
        let Some(owner) = service_labels(&service).and_then(|l| l.get(LABEL_USER)).cloned() else { return Ok(None) };
        let tasks = self.service_tasks(&service).await?;
        let Some(task) = wanted_task(&tasks).filter(|t| task_state(t) == Some(TaskState::RUNNING)) else { return Ok(None) };
        if task.node_id.as_deref() == Some(self.local_node().await?.as_str()) {
            let Some(container) = container_of(task) else { return Ok(None) };
            return Ok(self.gateway_address(&container).await?.map(|ip| SocketAddr::new(ip, port)));
        }
        self.overlay_address(&owner, name, port).await
    }

    fn proxy_host(&self, owner: &str) -> String {
        // The alias on the user's overlay (DNS round robin: the task itself).
        workspace_name(owner)
    }

    async fn exec_with_input(&self, name: &str, cmd: &[&str], input: &[u8], timeout: Duration) -> Result<ExecOutcome, RuntimeError> {
        match self.local_container(name, false).await? {
            Some(container) => Ok(self.engine.exec_with_input(&container, cmd, input, timeout).await?),
            None => Err(Self::failed("exec", Some(409), format!("{name} is not running"))),
        }
    }

    async fn log_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, RuntimeError> {
        match self.local_container(name, true).await? {
            Some(container) => Ok(self.engine.log_tail(&container, lines).await?),
            None => Ok(Vec::new()),
        }
    }

    async fn nodes(&self) -> Result<Vec<NodeView>, RuntimeError> {
        let mut nodes: Vec<NodeView> = self.raw_nodes().await?.iter().map(node_view).collect();
        nodes.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(nodes)
    }

    async fn move_home(&self, owner: &str, node: &str) -> Result<NodeView, RuntimeError> {
        if self.settings.shared_storage {
            return Err(Self::failed(
                "move",
                Some(400),
                "swarm.shared_storage is on: every node has every home, and Swarm runs a workspace wherever it fits; there is nothing to move",
            ));
        }
        let label = home_label(owner);
        let nodes = self.raw_nodes().await?;
        let target = nodes.iter().find(|n| {
            let view = node_view(n);
            view.id == node || view.hostname == node
        });
        let Some(target) = target else {
            let known: Vec<String> = nodes.iter().map(|n| node_view(n).hostname).collect();
            return Err(Self::failed("move", Some(404), format!("no node {node:?} in the swarm (nodes: {})", known.join(", "))));
        };
        let view = node_view(target);
        if !(view.ready && view.active) {
            return Err(Self::failed("move", Some(409), format!("node {} is not ready and active: Swarm would not run the workspace there", view.hostname)));
        }
        for other in nodes.iter().filter(|n| n.id != target.id) {
            if other.spec.as_ref().and_then(|s| s.labels.as_ref()).is_some_and(|l| l.contains_key(&label)) {
                self.relabel(other.id.as_deref().unwrap_or_default(), |labels| {
                    labels.remove(&label);
                })
                .await?;
            }
        }
        self.relabel(&view.id, |labels| {
            labels.insert(label.clone(), "true".into());
        })
        .await?;
        let moved = self.raw_nodes().await?.iter().map(node_view).find(|n| n.id == view.id);
        Ok(moved.unwrap_or(view))
    }

    async fn forget_home(&self, owner: &str) -> Result<(), RuntimeError> {
        let label = home_label(owner);
        for node in self.raw_nodes().await? {
            if node.spec.as_ref().and_then(|s| s.labels.as_ref()).is_some_and(|l| l.contains_key(&label)) {
                self.relabel(node.id.as_deref().unwrap_or_default(), |labels| {
                    labels.remove(&label);
                })
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Isolation;
    use crate::workspace::spec::{build_plan, ResourceOverrides, WorkspaceSecrets, WorkspaceSettings, WorkspaceUser};
    use bollard::models::{ContainerStatus, NodeDescription, NodeSpec, NodeStatus, TaskStatus};

    const GIB: i64 = 1 << 30;

    fn plan(gpus: &str) -> WorkspacePlan {
        let mut settings = WorkspaceSettings::from_config(&crate::config::Config::default());
        settings.isolation = Isolation::Plain;
        settings.storage_root = "/srv/berth".into();
        let user = WorkspaceUser {
            username: "alice".into(),
            slot: 3,
            secrets: WorkspaceSecrets { ssh_password: "s".into(), vnc_password: "v".into(), jupyter_token: "j".into(), app_secret: "a".into() },
            overrides: ResourceOverrides { gpus: Some(gpus.into()), cpus: Some(2.0), ..Default::default() },
        };
        build_plan(&user, &settings).unwrap()
    }

    fn container(spec: &ServiceSpec) -> &TaskSpecContainerSpec {
        spec.task_template.as_ref().unwrap().container_spec.as_ref().unwrap()
    }

    #[test]
    fn a_service_of_no_replica_named_and_labelled_like_the_container() {
        let plan = plan("none");
        let spec = render_service(&plan, &SwarmSettings::default());
        assert_eq!(spec.name.as_deref(), Some("workspace-alice"));
        assert_eq!(spec.mode.clone().unwrap().replicated.unwrap().replicas, Some(0), "a start scales it");
        let labels = spec.labels.as_ref().unwrap();
        assert_eq!(labels["io.berth.user"], "alice");
        assert_eq!(labels["io.berth.managed"], "true");
        assert_eq!(labels["io.berth.spec"], plan.hash());
        let c = container(&spec);
        assert_eq!(c.labels.as_ref().unwrap()["io.berth.user"], "alice", "the task's container carries them too");
        assert_eq!(c.hostname.as_deref(), Some("workspace-alice"));
        assert_eq!(c.image.as_deref(), Some("berth/workspace:latest"));
        assert_eq!(c.stop_grace_period, Some(30_000_000_000));
        let networks = spec.task_template.as_ref().unwrap().networks.clone().unwrap();
        assert_eq!(networks[0].target.as_deref(), Some("berth-ws-alice"));
        assert_eq!(networks[0].aliases, Some(vec!["workspace-alice".to_string()]));
        assert_eq!(spec.endpoint_spec.as_ref().unwrap().mode, Some(EndpointSpecModeEnum::DNSRR));
    }

    #[test]
    fn mounts_limits_and_shm_in_swarm_terms() {
        let spec = render_service(&plan("none"), &SwarmSettings::default());
        let c = container(&spec);
        let mounts = c.mounts.as_ref().unwrap();
        let home = mounts.iter().find(|m| m.target.as_deref() == Some("/home/alice")).unwrap();
        assert_eq!((home.typ, home.source.as_deref(), home.read_only), (Some(MountType::BIND), Some("/srv/berth/homes/alice"), Some(false)));
        let shared = mounts.iter().find(|m| m.target.as_deref() == Some("/shared")).unwrap();
        assert_eq!(shared.read_only, Some(true));
        let shm = mounts.iter().find(|m| m.target.as_deref() == Some("/dev/shm")).unwrap();
        assert_eq!(shm.typ, Some(MountType::TMPFS));
        assert_eq!(shm.tmpfs_options.as_ref().unwrap().size_bytes, Some(8 * GIB));
        assert_eq!(shm.tmpfs_options.as_ref().unwrap().mode, Some(0o1777));
        let resources = spec.task_template.as_ref().unwrap().resources.as_ref().unwrap();
        assert_eq!(resources.limits.as_ref().unwrap().memory_bytes, Some(100 * GIB));
        assert_eq!(resources.limits.as_ref().unwrap().nano_cpus, Some(2_000_000_000));
        assert_eq!(resources.reservations.as_ref().unwrap().memory_bytes, Some(32 * GIB));
        assert_eq!(resources.reservations.as_ref().unwrap().generic_resources, None);
    }

    #[test]
    fn only_public_ports_published_on_the_node_in_host_mode() {
        let spec = render_service(&plan("none"), &SwarmSettings::default());
        let ports = spec.endpoint_spec.unwrap().ports.unwrap();
        assert_eq!(ports.len(), 1, "{ports:?}");
        assert_eq!((ports[0].target_port, ports[0].published_port), (Some(22), Some(10322)));
        assert_eq!(ports[0].publish_mode, Some(EndpointPortConfigPublishModeEnum::HOST), "the ingress mesh is not assumed");
    }

    #[test]
    fn the_home_label_pins_it_unless_the_storage_is_shared() {
        let constraints = |shared_storage| {
            let settings = SwarmSettings { shared_storage, ..Default::default() };
            render_service(&plan("none"), &settings).task_template.unwrap().placement.unwrap().constraints
        };
        assert_eq!(constraints(false), Some(vec!["node.labels.io.berth.home.alice==true".to_string()]));
        assert_eq!(constraints(true), None);
    }

    #[test]
    fn gpus_as_generic_resources_and_none_as_void() {
        let env = |gpus| container(&render_service(&plan(gpus), &SwarmSettings::default())).env.clone().unwrap();
        assert!(env("none").contains(&"NVIDIA_VISIBLE_DEVICES=void".to_string()));
        assert!(env("all").contains(&"NVIDIA_VISIBLE_DEVICES=all".to_string()));
        assert!(env("GPU-a,GPU-b").contains(&"NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b".to_string()));
        let spec = render_service(&plan("GPU-a,GPU-b"), &SwarmSettings::default());
        let generic = spec.task_template.unwrap().resources.unwrap().reservations.unwrap().generic_resources.unwrap();
        let discrete = generic[0].discrete_resource_spec.clone().unwrap();
        assert_eq!((discrete.kind.as_deref(), discrete.value), (Some("NVIDIA-GPU"), Some(2)));
    }

    fn task(id: &str, created: &str, desired: TaskState, state: TaskState) -> Task {
        Task {
            id: Some(id.into()),
            created_at: Some(created.into()),
            desired_state: Some(desired),
            node_id: Some("n1".into()),
            status: Some(TaskStatus {
                state: Some(state),
                timestamp: Some("2026-12-04T10:00:05Z".into()),
                container_status: Some(ContainerStatus { container_id: Some(format!("c-{id}")), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_from_replicas_and_the_task_swarm_wants() {
        use TaskState::*;
        assert_eq!(status_of(0, &[]), RuntimeStatus::Exited);
        assert_eq!(status_of(0, &[task("a", "1", SHUTDOWN, SHUTDOWN)]), RuntimeStatus::Exited);
        assert_eq!(status_of(0, &[task("a", "1", SHUTDOWN, RUNNING)]), RuntimeStatus::Stopping, "still going down");
        assert_eq!(status_of(1, &[task("a", "1", RUNNING, PREPARING)]), RuntimeStatus::Restarting);
        assert_eq!(status_of(1, &[task("a", "1", RUNNING, RUNNING)]), RuntimeStatus::Running);
        // A failed task and its replacement: the replacement says how it is.
        let replaced = [task("a", "2026-12-04T10:00:01Z", SHUTDOWN, FAILED), task("b", "2026-12-04T10:00:02Z", RUNNING, RUNNING)];
        assert_eq!(status_of(1, &replaced), RuntimeStatus::Running);
        assert_eq!(wanted_task(&replaced).unwrap().id.as_deref(), Some("b"));
        assert_eq!(status_of(1, &[task("a", "1", SHUTDOWN, FAILED)]), RuntimeStatus::Restarting, "Swarm replaces it");
    }

    #[test]
    fn observed_with_its_node_and_start_time() {
        let service = Service {
            spec: Some(ServiceSpec {
                labels: Some(HashMap::from([("io.berth.user".into(), "alice".into()), ("io.berth.spec".into(), "h1".into())])),
                mode: Some(ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let nodes = HashMap::from([(
            "n1".to_string(),
            NodeView { id: "n1".into(), hostname: "gpu-2".into(), address: "10.0.0.12".into(), ready: true, active: true, cpus: 8, memory_bytes: 0, gpus: 0, homes: vec![] },
        )]);
        let seen = observed("workspace-alice", &service, &[task("a", "1", TaskState::RUNNING, TaskState::RUNNING)], &nodes);
        assert_eq!(seen.owner.as_deref(), Some("alice"));
        assert_eq!(seen.plan_hash.as_deref(), Some("h1"));
        assert_eq!(seen.started_at, Some(1_796_378_405));
        assert_eq!(seen.node, Some(NodePlace { hostname: "gpu-2".into(), address: "10.0.0.12".into() }));
    }

    fn node(id: &str, memory_gib: i64, gpus: i64, availability: NodeSpecAvailabilityEnum, homes: &[&str]) -> NodeView {
        node_view(&Node {
            id: Some(id.into()),
            spec: Some(NodeSpec {
                availability: Some(availability),
                labels: Some(homes.iter().map(|h| (home_label(h), "true".to_string())).chain([("other".into(), "x".into())]).collect()),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: Some(format!("host-{id}")),
                resources: Some(ResourceObject {
                    memory_bytes: Some(memory_gib * GIB),
                    nano_cpus: Some(16_000_000_000),
                    generic_resources: Some(vec![GenericResourcesInner {
                        discrete_resource_spec: Some(GenericResourcesInnerDiscreteResourceSpec { kind: Some(GPU_RESOURCE.into()), value: Some(gpus) }),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus { state: Some(NodeState::READY), addr: Some(format!("10.0.0.{}", id.len())), ..Default::default() }),
            ..Default::default()
        })
    }

    #[test]
    fn a_managers_address_when_its_status_says_only_loopback() {
        use bollard::models::ManagerStatus;
        let with = |status: &str, manager: Option<&str>| Node {
            status: Some(NodeStatus { addr: Some(status.into()), ..Default::default() }),
            manager_status: manager.map(|m| ManagerStatus { addr: Some(m.into()), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(node_address(&with("10.0.0.12", Some("10.0.0.12:2377"))), "10.0.0.12");
        assert_eq!(node_address(&with("0.0.0.0", Some("192.168.1.5:2377"))), "192.168.1.5");
        assert_eq!(node_address(&with("127.0.0.1", Some("192.168.1.5:2377"))), "192.168.1.5");
        assert_eq!(node_address(&with("127.0.0.1", None)), "127.0.0.1", "a worker keeps what it says");
        assert_eq!(node_address(&with("0.0.0.0", Some("[2001:db8::5]:2377"))), "2001:db8::5");
    }

    #[test]
    fn no_raw_sockets_in_a_task() {
        let spec = render_service(&plan("none"), &SwarmSettings::default());
        assert_eq!(container(&spec).capability_drop, Some(vec!["CAP_NET_RAW".to_string()]));
    }

    #[test]
    fn the_newest_task_by_its_time_not_its_text() {
        use TaskState::*;
        // Swarm writes "…:05.5Z" and "…:05.45Z": as text the older one sorts last.
        let older = task("old", "2026-12-04T10:00:05.45Z", RUNNING, FAILED);
        let newer = task("new", "2026-12-04T10:00:05.5Z", RUNNING, PREPARING);
        assert_eq!(wanted_task(&[newer.clone(), older.clone()]).unwrap().id.as_deref(), Some("new"));
        assert_eq!(wanted_task(&[older, newer]).unwrap().id.as_deref(), Some("new"));
    }

    #[test]
    fn a_node_as_the_admin_sees_it() {
        let n = node("n1", 256, 4, NodeSpecAvailabilityEnum::ACTIVE, &["bo", "ann"]);
        assert_eq!((n.hostname.as_str(), n.cpus, n.memory_bytes, n.gpus), ("host-n1", 16, 256 * GIB as u64, 4));
        assert_eq!(n.homes, ["ann", "bo"], "only Berth's home labels, sorted");
        assert!(n.ready && n.active);
    }

    #[test]
    fn a_new_home_goes_where_most_memory_is_left() {
        let nodes = [
            node("big", 512, 0, NodeSpecAvailabilityEnum::ACTIVE, &[]),
            node("mid", 256, 2, NodeSpecAvailabilityEnum::ACTIVE, &[]),
            node("drained", 1024, 8, NodeSpecAvailabilityEnum::DRAIN, &[]),
        ];
        let none = Reserved::default();
        let needs = |gib: i64, gpus: u32| HomeNeeds { memory_reservation_bytes: gib * GIB, gpus };
        assert_eq!(choose_home_node(&nodes, &none, needs(32, 0), "elsewhere").unwrap().id, "big", "a drained node takes nothing new");
        assert_eq!(choose_home_node(&nodes, &none, needs(32, 2), "elsewhere").unwrap().id, "mid", "only a node with the GPUs asked for");
        assert!(choose_home_node(&nodes, &none, needs(32, 3), "elsewhere").is_none());
        let busy = Reserved { running: HashMap::from([("big".to_string(), 300 * GIB)]), pinned: HashMap::from([("big".to_string(), 300 * GIB)]) };
        assert_eq!(choose_home_node(&nodes, &busy, needs(32, 0), "elsewhere").unwrap().id, "mid", "what running workspaces reserve counts");
        let twins = [node("a", 256, 0, NodeSpecAvailabilityEnum::ACTIVE, &["x", "y"]), node("b", 256, 0, NodeSpecAvailabilityEnum::ACTIVE, &["z"])];
        assert_eq!(choose_home_node(&twins, &none, needs(32, 0), "elsewhere").unwrap().id, "b", "then the fewest homes");
        // Berth's own node first (it makes the directories there), while the reservation fits.
        assert_eq!(choose_home_node(&nodes, &none, needs(32, 0), "mid").unwrap().id, "mid");
        assert_eq!(choose_home_node(&nodes, &busy, needs(32, 0), "big").unwrap().id, "big", "212 GiB left there: it fits, though mid has more");
        assert_eq!(choose_home_node(&nodes, &busy, needs(300, 0), "big").unwrap().id, "mid", "it does not fit on Berth's node");
        assert_eq!(choose_home_node(&nodes, &none, needs(32, 0), "drained").unwrap().id, "big", "not a drained one, even Berth's");
        // Homes of stopped workspaces come back: Berth's node is not filled past them.
        let stopped_homes = Reserved { running: HashMap::new(), pinned: HashMap::from([("mid".to_string(), 240 * GIB)]) };
        assert_eq!(choose_home_node(&nodes, &stopped_homes, needs(32, 0), "mid").unwrap().id, "big", "240 of mid's 256 GiB are pinned");
    }
}
