//! An in-memory runtime for tests of the lifecycle decisions: deterministic, with failures
//! injected on purpose (create fails, start hangs, the engine is gone, a workspace dies). It
//! keeps the runtime contract (see `runtime`), so the service cannot tell it from Docker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::names::{workspace_name, LABEL_USER};
use super::runtime::{
    Capabilities, Created, ExecOutcome, Observed, RuntimeError, RuntimeEvent, RuntimeStatus, LogRequest, UsageReading, WorkspaceRuntime,
};
use super::spec::WorkspacePlan;

/// One fake workspace.
#[derive(Debug, Clone)]
pub struct FakeWorkspace {
    pub plan: WorkspacePlan,
    pub status: RuntimeStatus,
    pub started_at: Option<i64>,
}

/// Failures the next calls meet, until cleared.
#[derive(Debug, Clone, Default)]
pub struct Failures {
    /// `create` fails with this message (after nothing was made).
    pub create: Option<String>,
    /// `create` makes the workspace, then fails: a crash half-way.
    pub create_after_making: bool,
    /// `start` never answers.
    pub start_hangs: bool,
    /// Every call answers `Unavailable`.
    pub engine_gone: bool,
    /// `prepare_storage` says the storage is full.
    pub storage_full: bool,
}

#[derive(Default)]
struct State {
    workspaces: BTreeMap<String, FakeWorkspace>,
    networks: BTreeSet<String>,
    /// Directories "made", by path.
    directories: BTreeSet<std::path::PathBuf>,
    failures: Failures,
    /// Every call, in order: `create workspace-alice`, `start workspace-alice`, …
    calls: Vec<String>,
    clock: i64,
    /// None: a CPU-only engine that refuses privileged containers, like the one tests run on.
    capabilities: Option<Capabilities>,
    /// What an exec of a program answers (by the command's first word); others: exit 0, no output.
    exec_answers: BTreeMap<String, ExecOutcome>,
    /// Each workspace's log, oldest line first.
    logs: BTreeMap<String, Vec<String>>,
    /// Where a service port of any running workspace is reached (a listener the test runs);
    /// other ports: an address where nothing answers.
    addresses: BTreeMap<u16, SocketAddr>,
}

pub struct FakeRuntime {
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime { state: Mutex::new(State { clock: 1_700_000_000, ..State::default() }), events: broadcast::channel(256).0 }
    }
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    pub fn fail(&self, failures: Failures) {
        self.state.lock().expect("fake").failures = failures;
    }

    pub fn set_capabilities(&self, capabilities: Capabilities) {
        self.state.lock().expect("fake").capabilities = Some(capabilities);
    }

    /// From now on an exec of `program` in any running workspace answers `outcome`.
    pub fn answer_exec(&self, program: &str, outcome: ExecOutcome) {
        self.state.lock().expect("fake").exec_answers.insert(program.to_string(), outcome);
    }

    /// The workspace prints `lines` (to its log, which `log_tail` reads).
    pub fn print(&self, name: &str, lines: &[&str]) {
        let mut state = self.state.lock().expect("fake");
        state.logs.entry(name.to_string()).or_default().extend(lines.iter().map(|l| l.to_string()));
    }

    /// From now on `port` of a running workspace is reached at `address`.
    pub fn answer_on(&self, port: u16, address: SocketAddr) {
        self.state.lock().expect("fake").addresses.insert(port, address);
    }

    pub fn heal(&self) {
        self.fail(Failures::default());
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("fake").calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state.lock().expect("fake").calls.clear();
    }

    pub fn workspace(&self, name: &str) -> Option<FakeWorkspace> {
        self.state.lock().expect("fake").workspaces.get(name).cloned()
    }

    pub fn has_network(&self, owner: &str) -> bool {
        self.state.lock().expect("fake").networks.contains(owner)
    }

    pub fn has_directory(&self, path: &std::path::Path) -> bool {
        self.state.lock().expect("fake").directories.contains(path)
    }

    /// The workspace's main process ends (an OOM kill, a crash): it is exited, as Docker says.
    pub fn kill(&self, name: &str) {
        let owner = {
            let mut state = self.state.lock().expect("fake");
            let Some(w) = state.workspaces.get_mut(name) else { return };
            w.status = RuntimeStatus::Exited;
            w.started_at = None;
            w.plan.owner.clone()
        };
        let _ = self.events.send(RuntimeEvent { name: name.to_string(), owner: Some(owner) });
    }

    /// Someone removed the workspace behind Berth's back (`docker rm -f`).
    pub fn vanish(&self, name: &str) {
        let owner = self.state.lock().expect("fake").workspaces.remove(name).map(|w| w.plan.owner);
        let _ = self.events.send(RuntimeEvent { name: name.to_string(), owner });
    }

    /// Puts a workspace in place as an earlier Berth would have left it.
    pub fn put(&self, plan: WorkspacePlan, status: RuntimeStatus) {
        let mut state = self.state.lock().expect("fake");
        state.networks.insert(plan.owner.clone());
        let started_at = (status == RuntimeStatus::Running).then_some(state.clock);
        state.workspaces.insert(plan.name.clone(), FakeWorkspace { plan, status, started_at });
    }

    fn call(&self, what: String) -> Result<(), RuntimeError> {
        let mut state = self.state.lock().expect("fake");
        state.calls.push(what);
        state.clock += 1;
        if state.failures.engine_gone {
            return Err(RuntimeError::Unavailable("the Docker engine is not reachable: fake engine gone".into()));
        }
        Ok(())
    }

    fn changed(&self, name: &str) {
        let owner = self.state.lock().expect("fake").workspaces.get(name).map(|w| w.plan.owner.clone());
        let _ = self.events.send(RuntimeEvent { name: name.to_string(), owner });
    }

    fn observed(w: &FakeWorkspace) -> Observed {
        Observed {
            name: w.plan.name.clone(),
            owner: w.plan.labels.get(LABEL_USER).cloned(),
            status: w.status,
            plan_hash: Some(w.plan.hash()),
            started_at: w.started_at,
            node: None,
        }
    }
}

#[async_trait::async_trait]
impl WorkspaceRuntime for FakeRuntime {
    async fn capabilities(&self) -> Result<Capabilities, RuntimeError> {
        self.call("capabilities".into())?;
        let configured = self.state.lock().expect("fake").capabilities.clone();
        Ok(configured.unwrap_or(Capabilities { runtimes: vec!["runc".into()], privileged: Err("refused by the fake".into()), gpus: false, swap_limit: true, host_cpus: 2, host_memory_bytes: 8 << 30 }))
    }

    async fn prepare_storage(&self, plan: &WorkspacePlan, check_space: bool) -> Result<(), RuntimeError> {
        self.call(format!("prepare {}", plan.name))?;
        let mut state = self.state.lock().expect("fake");
        if check_space && state.failures.storage_full {
            return Err(RuntimeError::StorageFull { path: plan.writable[0].display().to_string(), free_mib: 3, needed_mib: 512 });
        }
        // Made for real (under the test's storage root), so tests can see what survives.
        for dir in &plan.directories {
            std::fs::create_dir_all(&dir.path)
                .map_err(|source| RuntimeError::Storage { path: dir.path.display().to_string(), source })?;
            state.directories.insert(dir.path.clone());
        }
        Ok(())
    }

    async fn connect(&self, plan: &WorkspacePlan) -> Result<(), RuntimeError> {
        self.call(format!("connect {}", plan.owner))?;
        self.state.lock().expect("fake").networks.insert(plan.owner.clone());
        Ok(())
    }

    async fn create(&self, plan: &WorkspacePlan) -> Result<Created, RuntimeError> {
        self.call(format!("create {}", plan.name))?;
        let created = {
            let mut state = self.state.lock().expect("fake");
            if let Some(message) = state.failures.create.clone() {
                return Err(RuntimeError::Failed { op: "docker create container".into(), status: Some(500), message });
            }
            if state.workspaces.contains_key(&plan.name) {
                return Ok(Created::AlreadyExisted);
            }
            state.workspaces.insert(
                plan.name.clone(),
                FakeWorkspace { plan: plan.clone(), status: RuntimeStatus::Created, started_at: None },
            );
            !state.failures.create_after_making
        };
        self.changed(&plan.name);
        if !created {
            return Err(RuntimeError::Unavailable("the Docker engine is not reachable: connection reset during create".into()));
        }
        Ok(Created::New)
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.call(format!("start {name}"))?;
        if self.state.lock().expect("fake").failures.start_hangs {
            std::future::pending::<()>().await;
        }
        {
            let mut state = self.state.lock().expect("fake");
            let clock = state.clock;
            let Some(w) = state.workspaces.get_mut(name) else {
                return Err(RuntimeError::Failed { op: "docker start container".into(), status: Some(404), message: format!("No such container: {name}") });
            };
            if w.status != RuntimeStatus::Running {
                w.status = RuntimeStatus::Running;
                w.started_at = Some(clock);
            }
        }
        self.changed(name);
        Ok(())
    }

    async fn stop(&self, name: &str, _timeout_seconds: u32) -> Result<(), RuntimeError> {
        self.call(format!("stop {name}"))?;
        if let Some(w) = self.state.lock().expect("fake").workspaces.get_mut(name) {
            w.status = RuntimeStatus::Exited;
            w.started_at = None;
        }
        self.changed(name);
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.call(format!("remove {name}"))?;
        let owner = self.state.lock().expect("fake").workspaces.remove(name).map(|w| w.plan.owner);
        let _ = self.events.send(RuntimeEvent { name: name.to_string(), owner });
        Ok(())
    }

    async fn disconnect(&self, owner: &str) -> Result<(), RuntimeError> {
        self.call(format!("disconnect {owner}"))?;
        self.state.lock().expect("fake").networks.remove(owner);
        Ok(())
    }

    async fn observe(&self, name: &str) -> Result<Option<Observed>, RuntimeError> {
        self.call(format!("observe {name}"))?;
        Ok(self.state.lock().expect("fake").workspaces.get(name).map(FakeRuntime::observed))
    }

    async fn list(&self) -> Result<Vec<Observed>, RuntimeError> {
        self.call("list".into())?;
        Ok(self.state.lock().expect("fake").workspaces.values().map(FakeRuntime::observed).collect())
    }

    async fn list_foreign(&self) -> Result<Vec<String>, RuntimeError> {
        self.call("list foreign".into())?;
        Ok(Vec::new())
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        self.call("watch".into())?;
        let events = futures_util::stream::unfold(self.events.subscribe(), |mut receiver| async move {
            let item = match receiver.recv().await {
                Ok(event) => Ok(event),
                Err(broadcast::error::RecvError::Lagged(n)) => Err(RuntimeError::Unavailable(format!("fake event stream lost {n} events"))),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((item, receiver))
        });
        Ok(events.boxed())
    }

    /// Each reading one fake second after the one before: a quarter of one core, 256 MiB.
    async fn usage(&self, name: &str) -> Result<Option<UsageReading>, RuntimeError> {
        self.call(format!("usage {name}"))?;
        let state = self.state.lock().expect("fake");
        if state.workspaces.get(name).is_none_or(|w| w.status != RuntimeStatus::Running) {
            return Ok(None);
        }
        let n = state.calls.iter().filter(|c| **c == format!("usage {name}")).count() as u64;
        Ok(Some(UsageReading {
            container_id: format!("fake-{name}"),
            at_ms: 1_700_000_000_000 + n as i64 * 1000,
            cpu_ns: n * 250_000_000,
            host_cpu_ns: n * 2_000_000_000,
            online_cpus: 2,
            memory_bytes: 256 << 20,
            memory_limit_bytes: 1 << 30,
            ..UsageReading::default()
        }))
    }

    async fn writable_layer_bytes(&self, name: &str) -> Result<Option<u64>, RuntimeError> {
        self.call(format!("size {name}"))?;
        Ok(Some(4096))
    }

    async fn logs(&self, name: &str, request: LogRequest) -> Result<BoxStream<'static, Result<String, RuntimeError>>, RuntimeError> {
        let lines = self.log_tail(name, request.tail).await?;
        Ok(futures_util::stream::iter(lines.into_iter().map(Ok)).boxed())
    }

    async fn service_address(&self, name: &str, port: u16) -> Result<Option<SocketAddr>, RuntimeError> {
        self.call(format!("address {name}"))?;
        let state = self.state.lock().expect("fake");
        let running = state.workspaces.get(name).is_some_and(|w| w.status == RuntimeStatus::Running);
        // TEST-NET-1: nothing answers there, so probes of other ports never succeed.
        let address = state.addresses.get(&port).copied().unwrap_or(SocketAddr::from(([192, 0, 2, 1], port)));
        Ok(running.then_some(address))
    }

    fn proxy_host(&self, owner: &str) -> String {
        workspace_name(owner)
    }

    async fn exec_with_input(&self, name: &str, cmd: &[&str], _input: &[u8], _timeout: Duration) -> Result<ExecOutcome, RuntimeError> {
        self.call(format!("exec {name} {}", cmd.join(" ")))?;
        let running = self.state.lock().expect("fake").workspaces.get(name).is_some_and(|w| w.status == RuntimeStatus::Running);
        if !running {
            return Err(RuntimeError::Failed { op: "docker exec".into(), status: Some(409), message: format!("container {name} is not running") });
        }
        let answer = cmd.first().and_then(|program| self.state.lock().expect("fake").exec_answers.get(*program).cloned());
        Ok(answer.unwrap_or(ExecOutcome { exit_code: Some(0), output: String::new() }))
    }

    async fn log_tail(&self, name: &str, lines: usize) -> Result<Vec<String>, RuntimeError> {
        self.call(format!("logs {name} {lines}"))?;
        let state = self.state.lock().expect("fake");
        let log = state.logs.get(name).map(Vec::as_slice).unwrap_or_default();
        Ok(log[log.len().saturating_sub(lines)..].to_vec())
    }
}
