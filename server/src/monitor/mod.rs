//! What every workspace uses, sampled by Berth itself: one reading per running workspace per
//! sample (never a request per page view), GPU readings through a [`gpu::GpuSource`], sizes measured
//! every few minutes, and a history in the database (`history`). Pages, the admin table and
//! `/metrics` read what is held here; only the sampler talks to the runtime.

pub mod gpu;
pub mod history;
mod sampler;
pub mod usage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use app::model::{GpuPoint, GpuProcessView, GpuView, HostTotals, UsageNow, UsagePoint, WorkspaceGpu};

use crate::config::Config;
use crate::db::Db;
use crate::workspace::runtime::UsageReading;
use gpu::{GpuInventory, GpuSource};
use history::History;
use usage::Rates;

pub use sampler::run as run_sampler;

/// A reading older than this is not shown as the present.
const STALE_MS: i64 = 30_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// What a CPU-only host's GPU panels say.
pub const NO_GPUS: &str = "no NVIDIA GPUs on this host";

#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Seconds between stored samples of a workspace.
    pub sample_seconds: u64,
    pub retention_days: u64,
    /// `nvml`, `none`, or a recorded inventory's path.
    pub gpu_inventory: String,
    /// Where homes are (`<storage_root>/homes/<user>`), to measure them.
    pub storage_root: PathBuf,
}

impl MonitorSettings {
    pub fn from_config(config: &Config) -> MonitorSettings {
        MonitorSettings {
            sample_seconds: config.monitoring.sample_seconds,
            retention_days: config.monitoring.retention_days,
            gpu_inventory: config.monitoring.gpu_inventory.clone(),
            storage_root: config.storage_root.clone(),
        }
    }
}

/// The latest of one workspace.
#[derive(Debug, Clone)]
struct Sampled {
    reading: UsageReading,
    rates: Rates,
}

#[derive(Debug, Clone, Default)]
enum GpuState {
    #[default]
    NotRead,
    NoGpus,
    Read(GpuInventory),
    Failed(String),
}

#[derive(Debug, Clone, Copy, Default)]
struct Sizes {
    home_bytes: Option<u64>,
    writable_layer_bytes: Option<u64>,
}

#[derive(Default)]
struct State {
    /// By owner, while it runs and its stream gives readings.
    sampled: HashMap<String, Sampled>,
    gpus: GpuState,
    sizes: HashMap<String, Sizes>,
    /// Whether the runtime answered the sampler's last question.
    engine_up: Option<bool>,
}

pub struct Monitor {
    /// Samples kept in the database.
    pub history: History,
    settings: MonitorSettings,
    gpu_source: Box<dyn GpuSource>,
    state: RwLock<State>,
}

/// What `/metrics` exposes of the workspaces and GPUs (cumulative counters as read).
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub workspaces: Vec<(String, UsageReading)>,
    pub gpus: Vec<GpuView>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Monitor")
    }
}

impl Monitor {
    pub fn new(db: Db, settings: MonitorSettings) -> Monitor {
        let gpu_source = gpu::source_from_setting(&settings.gpu_inventory);
        Monitor::with_gpu_source(db, settings, gpu_source)
    }

    pub fn with_gpu_source(db: Db, settings: MonitorSettings, gpu_source: Box<dyn GpuSource>) -> Monitor {
        Monitor { history: History::new(db, settings.retention_days), settings, gpu_source, state: RwLock::default() }
    }

    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    fn record(&self, owner: &str, reading: UsageReading, rates: Rates) {
        self.state.write().expect("monitor").sampled.insert(owner.to_string(), Sampled { reading, rates });
    }

    fn forget(&self, owner: &str) {
        let mut state = self.state.write().expect("monitor");
        state.sampled.remove(owner);
        state.sizes.remove(owner);
    }

    fn set_sizes(&self, owner: &str, home_bytes: Option<u64>, writable_layer_bytes: Option<u64>) {
        let mut state = self.state.write().expect("monitor");
        let sizes = state.sizes.entry(owner.to_string()).or_default();
        sizes.home_bytes = home_bytes.or(sizes.home_bytes);
        sizes.writable_layer_bytes = writable_layer_bytes.or(sizes.writable_layer_bytes);
    }

    /// Reads the GPUs now (blocking: NVML calls are synchronous).
    fn read_gpus(&self) {
        let next = match self.gpu_source.read() {
            Ok(Some(inventory)) => GpuState::Read(inventory),
            Ok(None) => GpuState::NoGpus,
            Err(e) => GpuState::Failed(e.to_string()),
        };
        self.state.write().expect("monitor").gpus = next;
    }

    /// The owner of each sampled workspace, by its container id.
    fn owners_by_container(state: &State) -> HashMap<&str, &str> {
        state.sampled.iter().map(|(owner, s)| (s.reading.container_id.as_str(), owner.as_str())).collect()
    }

    fn gpu_views_of(state: &State) -> (Vec<GpuView>, Option<String>) {
        let inventory = match &state.gpus {
            GpuState::Read(inventory) => inventory,
            GpuState::NoGpus => return (Vec::new(), Some(NO_GPUS.into())),
            GpuState::NotRead => return (Vec::new(), Some("GPUs not read yet".into())),
            GpuState::Failed(why) => return (Vec::new(), Some(format!("GPUs cannot be read: {why}"))),
        };
        let owners = Self::owners_by_container(state);
        let gpus = inventory
            .gpus
            .iter()
            .map(|g| GpuView {
                index: g.index,
                name: g.name.clone(),
                utilization_percent: g.utilization_percent,
                memory_used_bytes: g.memory_used_bytes,
                memory_total_bytes: g.memory_total_bytes,
                temperature_celsius: g.temperature_celsius,
                processes: g
                    .processes
                    .iter()
                    .map(|p| GpuProcessView {
                        pid: p.pid,
                        // The outermost workspace container on the process's cgroup path: a
                        // container nested inside a workspace (Docker inside) is its owner's,
                        // whatever ids it names below.
                        user: p
                            .cgroup
                            .as_deref()
                            .map(gpu::container_ids_in_cgroup)
                            .unwrap_or_default()
                            .iter()
                            .find_map(|id| owners.get(id.as_str()).map(|o| o.to_string())),
                        memory_bytes: p.used_memory_bytes,
                    })
                    .collect(),
            })
            .collect();
        (gpus, None)
    }

    /// The host's GPUs with their UUIDs (what leases name), as last read; read now when the
    /// sampler has not (the command line has no sampler). Or why there are none.
    pub fn gpu_inventory(&self) -> (Vec<(String, GpuView)>, Option<String>) {
        if matches!(self.state.read().expect("monitor").gpus, GpuState::NotRead) {
            self.read_gpus();
        }
        let state = self.state.read().expect("monitor");
        let (views, note) = Self::gpu_views_of(&state);
        let GpuState::Read(inventory) = &state.gpus else { return (Vec::new(), note) };
        let with_uuids = views
            .into_iter()
            .filter_map(|v| inventory.gpus.iter().find(|g| g.index == v.index).map(|g| (g.uuid.clone(), v)))
            .collect();
        (with_uuids, note)
    }

    /// Every GPU of the host with whose processes are on it; or why there are none to show.
    pub fn gpu_board(&self) -> (Vec<GpuView>, Option<String>) {
        Self::gpu_views_of(&self.state.read().expect("monitor"))
    }

    /// The GPUs `owner`'s processes are on: each GPU's own figures and the owner's processes,
    /// never anybody else's (who else is on a GPU is for admins, on the GPU board).
    fn workspace_gpus(gpus: &[GpuView], owner: &str) -> Vec<WorkspaceGpu> {
        gpus.iter()
            .filter_map(|g| {
                let processes: Vec<GpuProcessView> =
                    g.processes.iter().filter(|p| p.user.as_deref() == Some(owner)).cloned().collect();
                (!processes.is_empty()).then(|| WorkspaceGpu { gpu: GpuView { processes: Vec::new(), ..g.clone() }, processes })
            })
            .collect()
    }

    /// The owner's workspace now: None when it is not sampled (stopped, not read yet, or its
    /// last reading is older than three samples and [`STALE_MS`]: figures that stopped moving
    /// are not "now").
    pub fn now_of(&self, owner: &str) -> Option<UsageNow> {
        let state = self.state.read().expect("monitor");
        let stale = STALE_MS.max(self.settings.sample_seconds as i64 * 3000);
        let sampled = state.sampled.get(owner).filter(|s| now_ms() - s.reading.at_ms < stale)?;
        let (gpus, _) = Self::gpu_views_of(&state);
        let sizes = state.sizes.get(owner).copied().unwrap_or_default();
        Some(usage_now(sampled, sizes, Self::workspace_gpus(&gpus, owner)))
    }

    /// What the host has and what all workspaces use together.
    pub fn host_totals(&self, cpus: u32, memory_bytes: u64) -> HostTotals {
        let state = self.state.read().expect("monitor");
        let (gpus, gpu_note) = Self::gpu_views_of(&state);
        HostTotals {
            cpus,
            memory_bytes,
            cpu_cores_used: state.sampled.values().map(|s| s.rates.cpu_cores).sum(),
            memory_used_bytes: state.sampled.values().map(|s| s.reading.memory_bytes).sum(),
            gpus,
            gpu_note,
        }
    }

    fn set_engine_up(&self, up: bool) {
        self.state.write().expect("monitor").engine_up = Some(up);
    }

    /// Whether the runtime answered the sampler's last question (None: not asked yet).
    pub fn engine_up(&self) -> Option<bool> {
        self.state.read().expect("monitor").engine_up
    }

    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let state = self.state.read().expect("monitor");
        let mut workspaces: Vec<(String, UsageReading)> =
            state.sampled.iter().map(|(owner, s)| (owner.clone(), s.reading.clone())).collect();
        workspaces.sort_by(|a, b| a.0.cmp(&b.0));
        MetricsSnapshot { workspaces, gpus: Self::gpu_views_of(&state).0 }
    }

    /// The point stored for the owner's workspace now.
    fn point_of(&self, owner: &str) -> Option<UsagePoint> {
        let now = self.now_of(owner)?;
        Some(UsagePoint {
            at: now.at,
            cpu_cores: now.cpu_cores,
            memory_bytes: now.memory_bytes,
            net_rx_rate: now.net_rx_rate,
            net_tx_rate: now.net_tx_rate,
            disk_read_rate: now.disk_read_rate,
            disk_write_rate: now.disk_write_rate,
            gpus: now
                .gpus
                .iter()
                .map(|g| GpuPoint {
                    index: g.gpu.index,
                    utilization_percent: g.gpu.utilization_percent,
                    memory_bytes: g.processes.iter().filter_map(|p| p.memory_bytes).sum(),
                    temperature_celsius: g.gpu.temperature_celsius,
                })
                .collect(),
        })
    }
}

fn usage_now(sampled: &Sampled, sizes: Sizes, gpus: Vec<WorkspaceGpu>) -> UsageNow {
    let r = &sampled.reading;
    UsageNow {
        at: r.at_ms / 1000,
        cpu_cores: sampled.rates.cpu_cores,
        memory_bytes: r.memory_bytes,
        memory_limit_bytes: r.memory_limit_bytes,
        net_rx_rate: sampled.rates.net_rx,
        net_tx_rate: sampled.rates.net_tx,
        disk_read_rate: sampled.rates.disk_read,
        disk_write_rate: sampled.rates.disk_write,
        home_bytes: sizes.home_bytes,
        writable_layer_bytes: sizes.writable_layer_bytes,
        gpus,
    }
}

/// Disk space the files under `dir` take (allocated blocks, as `du` counts), without following
/// links; None when `dir` cannot be opened. Stops counting after `max_entries` entries, so a
/// home of millions of files costs a bounded walk (the figure is then a lower bound).
///
/// The home belongs to a user who may change it during the walk: each directory is opened
/// relative to the one above it and never through a link (`openat` with `O_NOFOLLOW`), so a
/// directory swapped for a link to another user's files mid-walk is not followed.
pub fn disk_usage(dir: &std::path::Path, max_entries: usize) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let root = walk::open_dir(libc::AT_FDCWD, &path)?;
    let mut walk = walk::Walk { seen: 0, max_entries, total: walk::blocks(&root)? };
    walk.dir(&root, 0);
    Some(walk.total)
}

mod walk {
    use std::ffi::{CStr, CString};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;

    /// Deeper directories are not counted (and the open descriptors stay bounded).
    const MAX_DEPTH: usize = 64;

    pub fn open_dir(parent: RawFd, name: &CStr) -> Option<OwnedFd> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `name` is a valid C string; a descriptor returned by openat is ours to own.
        let fd = unsafe { libc::openat(parent, name.as_ptr(), flags) };
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn blocks(fd: &OwnedFd) -> Option<u64> {
        // SAFETY: fstat writes into the zeroed struct it is given.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0).then(|| st.st_blocks as u64 * 512)
    }

    pub struct Walk {
        pub seen: usize,
        pub max_entries: usize,
        pub total: u64,
    }

    impl Walk {
        /// Counts what is in the directory `fd`; false once the entry bound is reached.
        pub fn dir(&mut self, fd: &OwnedFd, depth: usize) -> bool {
            if depth >= MAX_DEPTH {
                return true;
            }
            // The directory the descriptor holds, whatever its path has become since.
            let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd())) else { return true };
            for entry in entries.flatten() {
                self.seen += 1;
                if self.seen > self.max_entries {
                    return false;
                }
                let Ok(name) = CString::new(entry.file_name().as_bytes()) else { continue };
                // SAFETY: as in `blocks`; AT_SYMLINK_NOFOLLOW reports a link itself.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                if unsafe { libc::fstatat(fd.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
                    continue;
                }
                self.total += st.st_blocks as u64 * 512;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    if let Some(child) = open_dir(fd.as_raw_fd(), &name) {
                        if !self.dir(&child, depth + 1) {
                            return false;
                        }
                    }
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gpu::{GpuProcess, GpuReading};
    use super::*;

    const ALICE_ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const BOB_ID: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn sampled(id: &str, cores: f64, memory: u64) -> Sampled {
        Sampled {
            reading: UsageReading { container_id: id.into(), at_ms: now_ms(), memory_bytes: memory, ..Default::default() },
            rates: Rates { cpu_cores: cores, ..Default::default() },
        }
    }

    fn two_gpus() -> GpuInventory {
        let process = |pid, id: &str, memory| GpuProcess {
            pid,
            used_memory_bytes: Some(memory),
            cgroup: Some(format!("0::/system.slice/docker-{id}.scope\n")),
        };
        GpuInventory {
            gpus: vec![
                GpuReading {
                    index: 0,
                    uuid: "GPU-0".into(),
                    name: "A100".into(),
                    utilization_percent: 90,
                    memory_used_bytes: 30 << 30,
                    memory_total_bytes: 80 << 30,
                    temperature_celsius: Some(70),
                    processes: vec![
                        process(100, ALICE_ID, 20 << 30),
                        process(200, BOB_ID, 10 << 30),
                        // Inside alice's workspace, a container she named after bob's.
                        process(150, &format!("{ALICE_ID}.scope/docker/{BOB_ID}"), 1 << 30),
                    ],
                },
                GpuReading {
                    index: 1,
                    uuid: "GPU-1".into(),
                    name: "A100".into(),
                    utilization_percent: 5,
                    memory_used_bytes: 1 << 30,
                    memory_total_bytes: 80 << 30,
                    temperature_celsius: None,
                    processes: vec![GpuProcess { pid: 300, used_memory_bytes: None, cgroup: Some("0::/user.slice\n".into()) }],
                },
            ],
        }
    }

    #[test]
    fn gpu_processes_are_told_to_their_workspaces_owners() {
        let state = State {
            sampled: HashMap::from([("alice".into(), sampled(ALICE_ID, 1.5, 1 << 30)), ("bob".into(), sampled(BOB_ID, 0.5, 2 << 30))]),
            gpus: GpuState::Read(two_gpus()),
            ..State::default()
        };
        let (gpus, note) = Monitor::gpu_views_of(&state);
        assert_eq!(note, None);
        let users: Vec<Option<&str>> = gpus[0].processes.iter().map(|p| p.user.as_deref()).collect();
        assert_eq!(users, [Some("alice"), Some("bob"), Some("alice")], "a nested container is its workspace owner's");
        assert_eq!(gpus[1].processes[0].user, None, "a host process is nobody's workspace");
        let alice = Monitor::workspace_gpus(&gpus, "alice");
        assert_eq!(alice.len(), 1, "alice is on GPU 0 only");
        assert_eq!(alice[0].gpu.index, 0);
        assert_eq!(
            alice[0].processes,
            [
                GpuProcessView { pid: 100, user: Some("alice".into()), memory_bytes: Some(20 << 30) },
                GpuProcessView { pid: 150, user: Some("alice".into()), memory_bytes: Some(1 << 30) },
            ]
        );
        assert!(alice[0].gpu.processes.is_empty(), "who else is on the GPU is not alice's to see");
        assert!(Monitor::workspace_gpus(&gpus, "carol").is_empty());
    }

    #[test]
    fn a_host_without_gpus_says_so() {
        let state = State { gpus: GpuState::NoGpus, ..State::default() };
        assert_eq!(Monitor::gpu_views_of(&state), (Vec::new(), Some("no NVIDIA GPUs on this host".into())));
    }

    #[test]
    fn disk_usage_counts_nested_files_and_stops_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/big"), vec![7u8; 1 << 20]).unwrap();
        let total = disk_usage(dir.path(), 1000).unwrap();
        assert!(total >= 1 << 20, "at least the 1 MiB file: {total}");
        let bounded = disk_usage(dir.path(), 1).unwrap();
        assert!(bounded < 1 << 20, "the walk stopped before the file: {bounded}");
        assert_eq!(disk_usage(&dir.path().join("missing"), 10), None);
    }

    #[test]
    fn disk_usage_never_follows_a_link_out_of_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let (home, elsewhere) = (dir.path().join("home"), dir.path().join("someone-else"));
        std::fs::create_dir_all(home.join("sub")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("big"), vec![7u8; 4 << 20]).unwrap();
        std::os::unix::fs::symlink(&elsewhere, home.join("sub/link")).unwrap();
        let counted = disk_usage(&home, 1000).unwrap();
        assert!(counted < 1 << 20, "the 4 MiB behind the link are not counted: {counted}");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("home-link")).unwrap();
        assert_eq!(disk_usage(&dir.path().join("home-link"), 1000), None, "nor is a home that is itself a link");
    }
}
