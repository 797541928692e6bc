//! The Docker engine driver (used by `docker::DockerRuntime`): bollard behind operations named after what Berth does, with errors
//! that say which operation failed. Stopping or removing something already gone is success.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary, EventMessage, ExecConfig, NetworkConnectRequest,
    NetworkCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, InspectContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{Docker, API_DEFAULT_VERSION};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::RwLock;

use super::names::LABEL_MANAGED;
use super::runtime::{Created, ExecOutcome, UsageReading};

pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";
/// Seconds bollard waits for an answer; stops wait for the container's own timeout on top.
const REQUEST_TIMEOUT: u64 = 120;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the Docker engine is not reachable: {0}")]
    Unavailable(String),
    #[error("the workspace image {0} is not on this Docker engine; build it with `make image` (docker/workspace/build.sh --profile slim|full)")]
    ImageMissing(String),
    #[error("docker {op} failed: {message}")]
    Operation { op: &'static str, status: u16, message: String },
    /// The engine answered, but the attached stream broke or went quiet (no HTTP status).
    #[error("docker {op} failed: {message}")]
    Stream { op: &'static str, message: String },
}

/// An error with its chain of causes: hyper's "client error (Connect)" alone does not say
/// whether the address, the certificate or the handshake was wrong.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl EngineError {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            EngineError::Operation { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The most output of one exec Berth keeps (the rest is not read).
const EXEC_OUTPUT_LIMIT: usize = 1 << 20;

/// The parts of `docker info` Berth decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineInfo {
    pub runtimes: Vec<String>,
    pub cdi_gpus: bool,
    /// The kernel accounts swap per container, so a swap limit holds (`SwapLimit`).
    pub swap_limit: bool,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The OCI runtime containers get when none is named (`runc`, or `sysbox-runc` on nodes
    /// set up for it).
    pub default_runtime: Option<String>,
}

pub struct Engine {
    host: String,
    tls_dir: Option<PathBuf>,
    client: RwLock<Option<Docker>>,
}

impl Engine {
    pub fn new(host: Option<String>, tls_dir: Option<PathBuf>) -> Engine {
        Engine { host: host.unwrap_or_else(|| DEFAULT_SOCKET.into()), tls_dir, client: RwLock::new(None) }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The connected client, connecting (and negotiating the API version) when needed, so the
    /// engine coming back later is picked up without a restart.
    pub(super) async fn client(&self) -> Result<Docker, EngineError> {
        if let Some(docker) = self.client.read().await.clone() {
            return Ok(docker);
        }
        let unavailable = |e: BollardError| EngineError::Unavailable(format!("{} ({})", self.host, with_causes(&e)));
        let docker = if self.host.starts_with("unix://") {
            Docker::connect_with_unix(&self.host, REQUEST_TIMEOUT, API_DEFAULT_VERSION).map_err(unavailable)?
        } else if let Some(dir) = &self.tls_dir {
            Docker::connect_with_ssl(
                &self.host,
                &dir.join("key.pem"),
                &dir.join("cert.pem"),
                &dir.join("ca.pem"),
                REQUEST_TIMEOUT,
                API_DEFAULT_VERSION,
            )
            .map_err(unavailable)?
        } else {
            Docker::connect_with_http(&self.host, REQUEST_TIMEOUT, API_DEFAULT_VERSION).map_err(unavailable)?
        };
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        *self.client.write().await = Some(docker.clone());
        Ok(docker)
    }

    /// Maps a bollard error; a transport failure drops the client so the next call reconnects.
    pub(super) async fn fail(&self, op: &'static str, error: BollardError) -> EngineError {
        match error {
            BollardError::DockerResponseServerError { status_code, message } => {
                EngineError::Operation { op, status: status_code, message }
            }
            other => {
                *self.client.write().await = None;
                EngineError::Unavailable(format!("{} ({op}: {})", self.host, with_causes(&other)))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), EngineError> {
        let docker = self.client().await?;
        match docker.ping().await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail("ping", e).await),
        }
    }

    /// What `docker info` says about runtimes and devices.
    pub async fn info(&self) -> Result<EngineInfo, EngineError> {
        let docker = self.client().await?;
        match docker.info().await {
            Ok(info) => {
                let mut runtimes: Vec<String> = info.runtimes.map(|r| r.into_keys().collect()).unwrap_or_default();
                runtimes.sort();
                // CDI devices named like NVIDIA's (`nvidia.com/gpu=0`), on engines new enough to list them.
                let cdi_gpus = info
                    .discovered_devices
                    .unwrap_or_default()
                    .iter()
                    .any(|d| d.id.as_deref().is_some_and(|id| id.starts_with("nvidia.com/gpu")));
                Ok(EngineInfo {
                    runtimes,
                    cdi_gpus,
                    swap_limit: info.swap_limit.unwrap_or(false),
                    cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                    memory_bytes: info.mem_total.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
                    default_runtime: info.default_runtime,
                })
            }
            Err(e) => Err(self.fail("info", e).await),
        }
    }

    /// Whether the engine lets a privileged container start: some refuse (rootless engines,
    /// engines inside unprivileged containers) only when the container starts. Runs `/bin/sh -c
    /// "exit 0"` from `image`, privileged, and removes it whatever happens.
    pub async fn privileged_allowed(&self, image: &str, labels: HashMap<String, String>) -> Result<Result<(), String>, EngineError> {
        let name = format!("berth-probe-{}-{}", std::process::id(), hex::encode(rand::random::<[u8; 4]>()));
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), "exit 0".into()]),
            cmd: Some(Vec::new()),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(bollard::models::HostConfig { privileged: Some(true), ..Default::default() }),
            ..Default::default()
        };
        self.create(&name, body).await?;
        let started = self.start(&name).await;
        self.remove(&name).await?;
        match started {
            Ok(()) => Ok(Ok(())),
            Err(EngineError::Operation { message, .. }) => Ok(Err(message)),
            Err(e) => Err(e),
        }
    }

    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>, EngineError> {
        let docker = self.client().await?;
        match docker.inspect_container(name, None).await {
            Ok(found) => Ok(Some(found)),
            Err(e) => match self.fail("inspect container", e).await {
                e if e.status() == Some(404) => Ok(None),
                e => Err(e),
            },
        }
    }

    pub async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<Created, EngineError> {
        let docker = self.client().await?;
        let image = body.image.clone().unwrap_or_default();
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        match docker.create_container(Some(options), body).await {
            Ok(_) => Ok(Created::New),
            Err(e) => match self.fail("create container", e).await {
                e if e.status() == Some(409) => Ok(Created::AlreadyExisted),
                EngineError::Operation { status: 404, message, .. } if message.contains("image") => {
                    Err(EngineError::ImageMissing(image))
                }
                e => Err(e),
            },
        }
    }

    pub async fn start(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.client().await?;
        match docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) => match self.fail("start container", e).await {
                e if e.status() == Some(304) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Graceful stop (SIGTERM, then SIGKILL after `timeout` seconds). Already stopped or absent: fine.
    pub async fn stop(&self, name: &str, timeout: u32) -> Result<(), EngineError> {
        let docker = self.client().await?;
        let options = StopContainerOptionsBuilder::new().t(timeout as i32).build();
        match docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match self.fail("stop container", e).await {
                e if matches!(e.status(), Some(304 | 404 | 409)) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Removes the container (never its bind-mounted directories). Absent: fine.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.client().await?;
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match self.fail("remove container", e).await {
                e if matches!(e.status(), Some(404 | 409)) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Runs `cmd` as root in the running container `name`, writes `input` to its stdin, and
    /// waits (at most `timeout`) for it to end. Secrets go in through stdin because an exec's
    /// argv shows in `ps` inside the container and in `docker inspect` of the exec, and its
    /// environment in the exec's inspect data too; stdin is seen by the process alone.
    /// A stopped container gives `Operation` with status 409.
    pub async fn exec_with_input(&self, name: &str, cmd: &[&str], input: &[u8], timeout: Duration) -> Result<ExecOutcome, EngineError> {
        let docker = self.client().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.iter().map(|a| a.to_string()).collect()),
            // Numeric: root by name needs an /etc/passwd entry the image may not have.
            user: Some("0".into()),
            ..Default::default()
        };
        let id = match docker.create_exec(name, config).await {
            Ok(created) => created.id,
            Err(e) => return Err(self.fail("exec", e).await),
        };
        let stream_error = |message: String| EngineError::Stream { op: "exec", message };
        let run = async {
            let options = StartExecOptions { detach: false, tty: false, output_capacity: None };
            let (mut output, mut stdin) = match docker.start_exec(&id, Some(options)).await {
                Ok(StartExecResults::Attached { output, input }) => (output, input),
                Ok(StartExecResults::Detached) => return Err(stream_error("the engine started it detached".into())),
                Err(e) => return Err(self.fail("exec", e).await),
            };
            stdin.write_all(input).await.map_err(|e| stream_error(format!("writing its input: {e}")))?;
            stdin.flush().await.map_err(|e| stream_error(format!("writing its input: {e}")))?;
            // End of input, for commands that read to EOF; a half-closed socket may refuse it,
            // and the output below still tells how the command ended.
            let _ = stdin.shutdown().await;
            let mut text = String::new();
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(log) => text.push_str(&log.to_string()),
                    Err(e) => return Err(stream_error(format!("reading its output: {}", with_causes(&e)))),
                }
                // The workspace's user may be root in it and make any program print without
                // end: Berth keeps a bounded part.
                if text.len() > EXEC_OUTPUT_LIMIT {
                    let mut end = EXEC_OUTPUT_LIMIT;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                    break;
                }
            }
            Ok(text)
        };
        let output = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result?,
            Err(_) => return Err(stream_error(format!("{} did not finish within {} s", cmd.join(" "), timeout.as_secs()))),
        };
        // The stream ends when the process does, but the engine may record the exit code a
        // moment later.
        for _ in 0..20 {
            match docker.inspect_exec(&id).await {
                Ok(info) if info.running == Some(false) => return Ok(ExecOutcome { exit_code: info.exit_code, output }),
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => return Err(self.fail("exec inspect", e).await),
            }
        }
        Ok(ExecOutcome { exit_code: None, output })
    }

    /// The container's last `lines` log lines (stdout and stderr), oldest first: the engine
    /// sends only those, so a long log costs nothing.
    pub async fn log_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, EngineError> {
        let docker = self.client().await?;
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let mut stream = docker.logs(name, Some(options));
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(output) => text.push_str(&output.to_string()),
                Err(e) => return Err(self.fail("container logs", e).await),
            }
        }
        Ok(text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect())
    }

    /// Creates the network unless it exists: a bridge on this engine, or (`overlay`) an
    /// attachable overlay across a swarm, encrypted so that nobody on the wire between nodes
    /// reads or injects a user's traffic.
    pub async fn ensure_network(&self, name: &str, labels: HashMap<String, String>, overlay: bool) -> Result<(), EngineError> {
        let docker = self.client().await?;
        match docker.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) => match self.fail("inspect network", e).await {
                e if e.status() == Some(404) => {}
                e => return Err(e),
            },
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some(if overlay { "overlay" } else { "bridge" }.into()),
            attachable: overlay.then_some(true),
            options: overlay.then(|| HashMap::from([("encrypted".to_string(), String::new())])),
            labels: Some(labels),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => Ok(()),
            Err(e) => match self.fail("create network", e).await {
                e if e.status() == Some(409) => Ok(()),
                e => Err(e),
            },
        }
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.client().await?;
        match docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.fail("remove network", e).await {
                e if e.status() == Some(404) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Attaches another container (Traefik, guacd) to a user's network.
    pub async fn connect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let docker = self.client().await?;
        let request = NetworkConnectRequest { container: container.to_string(), endpoint_config: None };
        match docker.connect_network(network, request).await {
            Ok(()) => Ok(()),
            Err(e) => match self.fail("connect network", e).await {
                // Already connected.
                e if e.status() == Some(403) || e.to_string().contains("already exists") => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Every container carrying Berth's label (and the extra label, when given).
    pub async fn list_managed(&self, extra: Option<&(String, String)>) -> Result<Vec<ContainerSummary>, EngineError> {
        let mut labels = vec![format!("{LABEL_MANAGED}=true")];
        if let Some((k, v)) = extra {
            labels.push(format!("{k}={v}"));
        }
        self.list(HashMap::from([("label".to_string(), labels)])).await
    }

    /// Containers named like workspaces, labeled or not (to find foreign ones).
    pub async fn list_named_workspaces(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        self.list(HashMap::from([("name".to_string(), vec!["workspace-".to_string()])])).await
    }

    async fn list(&self, filters: HashMap<String, Vec<String>>) -> Result<Vec<ContainerSummary>, EngineError> {
        let docker = self.client().await?;
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        match docker.list_containers(Some(options)).await {
            Ok(list) => Ok(list),
            Err(e) => Err(self.fail("list containers", e).await),
        }
    }

    /// Container events for Berth's containers, from now on.
    pub async fn events(&self) -> Result<BoxStream<'static, Result<EventMessage, EngineError>>, EngineError> {
        let docker = self.client().await?;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![format!("{LABEL_MANAGED}=true")]),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        Ok(docker
            .events(Some(options))
            .map(|item| item.map_err(|e| EngineError::Unavailable(format!("event stream: {e}"))))
            .boxed())
    }

    /// The container's resource use now, in one answer (`one-shot`: the engine does not wait a
    /// second for a second reading; rates come from Berth's own previous reading). None when the
    /// container is not running.
    pub async fn stats(&self, name: &str) -> Result<Option<UsageReading>, EngineError> {
        let docker = self.client().await?;
        let options = StatsOptionsBuilder::new().stream(false).one_shot(true).build();
        let mut answers = docker.stats(name, Some(options));
        match answers.next().await {
            // A stopped container answers with an empty reading.
            Some(Ok(stats)) if stats.cpu_stats.as_ref().and_then(|c| c.system_cpu_usage).unwrap_or(0) == 0 => Ok(None),
            Some(Ok(stats)) => Ok(Some(reading_from_stats(&stats))),
            Some(Err(e)) => match self.fail("container stats", e).await {
                e if e.status() == Some(404) => Ok(None),
                e => Err(e),
            },
            None => Ok(None),
        }
    }

    /// The size of the container's writable layer (`docker ps --size`): the engine walks the
    /// layer to answer, so this is slow on a big one.
    pub async fn writable_layer_bytes(&self, name: &str) -> Result<Option<u64>, EngineError> {
        let docker = self.client().await?;
        let options = InspectContainerOptionsBuilder::new().size(true).build();
        match docker.inspect_container(name, Some(options)).await {
            Ok(info) => Ok(info.size_rw.and_then(|s| u64::try_from(s).ok())),
            Err(e) => Err(self.fail("container inspect (size)", e).await),
        }
    }

    /// The container's output as lines, from `tail` lines back, following it when asked.
    pub async fn logs(&self, name: &str, tail: usize, follow: bool) -> Result<BoxStream<'static, Result<String, EngineError>>, EngineError> {
        let docker = self.client().await?;
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).follow(follow).tail(&tail.to_string()).build();
        let host = self.host.clone();
        let chunks = docker.logs(name, Some(options)).map(move |item| match item {
            Ok(output) => Ok(output.into_bytes()),
            Err(BollardError::DockerResponseServerError { status_code, message }) => {
                Err(EngineError::Operation { op: "container logs", status: status_code, message })
            }
            Err(e) => Err(EngineError::Unavailable(format!("{host} (container logs: {})", with_causes(&e)))),
        });
        Ok(lines_of(chunks).boxed())
    }
}

/// The longest line a log reader is given; the rest of a longer one is dropped, so one
/// endless line cannot fill Berth's memory.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// Splits a stream of output chunks into lines (a write may hold several lines, or part of one).
fn lines_of<E: Send + 'static>(
    chunks: impl futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<String, E>> + Send + 'static {
    struct Split {
        pending: Vec<u8>,
        ready: std::collections::VecDeque<String>,
        ended: bool,
    }
    let state = Split { pending: Vec::new(), ready: Default::default(), ended: false };
    futures_util::stream::unfold((Box::pin(chunks), state), |(mut chunks, mut s)| async move {
        loop {
            if let Some(line) = s.ready.pop_front() {
                return Some((Ok(line), (chunks, s)));
            }
            if s.ended {
                return None;
            }
            match chunks.next().await {
                Some(Ok(bytes)) => {
                    for &b in bytes.iter() {
                        if b == b'\n' {
                            let line = String::from_utf8_lossy(&s.pending).trim_end_matches('\r').to_string();
                            s.ready.push_back(line);
                            s.pending.clear();
                        } else if s.pending.len() < MAX_LOG_LINE {
                            s.pending.push(b);
                        }
                    }
                }
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(e), (chunks, s)));
                }
                None => {
                    s.ended = true;
                    if !s.pending.is_empty() {
                        s.ready.push_back(String::from_utf8_lossy(&s.pending).to_string());
                        s.pending.clear();
                    }
                }
            }
        }
    })
}

/// One stats frame as a reading. Memory leaves out the inactive page cache, as `docker stats`
/// does (cgroup v1: `total_inactive_file`, the container's with its children; v2:
/// `inactive_file`): a workspace that read big files is not using that memory.
pub fn reading_from_stats(stats: &ContainerStatsResponse) -> UsageReading {
    let cpu = stats.cpu_stats.as_ref();
    let memory = stats.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    let inactive = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|s| s.get("total_inactive_file").or_else(|| s.get("inactive_file")).copied())
        .unwrap_or(0);
    let (mut rx, mut tx) = (0u64, 0u64);
    for net in stats.networks.iter().flat_map(|n| n.values()) {
        rx += net.rx_bytes.unwrap_or(0);
        tx += net.tx_bytes.unwrap_or(0);
    }
    let (mut read, mut write) = (0u64, 0u64);
    for entry in stats.blkio_stats.iter().flat_map(|b| b.io_service_bytes_recursive.iter().flatten()) {
        match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += entry.value.unwrap_or(0),
            Some("write") => write += entry.value.unwrap_or(0),
            _ => {}
        }
    }
    let at_ms = stats
        .read
        .as_deref()
        .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or_else(now_ms);
    UsageReading {
        container_id: stats.id.clone().unwrap_or_default(),
        at_ms,
        cpu_ns: cpu.and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0),
        host_cpu_ns: cpu.and_then(|c| c.system_cpu_usage).unwrap_or(0),
        online_cpus: cpu.and_then(|c| c.online_cpus).unwrap_or(1).max(1),
        memory_bytes: usage.saturating_sub(inactive),
        memory_limit_bytes: memory.and_then(|m| m.limit).unwrap_or(0),
        net_rx_bytes: rx,
        net_tx_bytes: tx,
        disk_read_bytes: read,
        disk_write_bytes: write,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
