//! The host's NVIDIA GPUs, read through NVML (`libnvidia-ml.so.1`, opened at run time: Berth
//! builds and runs without it, and then says there are no NVIDIA GPUs). Behind [`GpuSource`] so
//! tests and demos read a recorded inventory instead (`monitoring.gpu_inventory = <file>`).

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Everything NVML said about the host's GPUs at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInventory {
    pub gpus: Vec<GpuReading>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuReading {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub utilization_percent: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub temperature_celsius: Option<u32>,
    pub processes: Vec<GpuProcess>,
}

/// A process using a GPU, as the host sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory_bytes: Option<u64>,
    /// The process's `/proc/<pid>/cgroup` as read when it was seen: it names the container.
    pub cgroup: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("NVML: {0}")]
    Nvml(String),
    #[error("the recorded GPU inventory {path}: {message}")]
    Recorded { path: String, message: String },
}

/// Where GPU readings come from.
pub trait GpuSource: Send + Sync + 'static {
    /// The GPUs now; `Ok(None)` when the host has no NVIDIA GPUs (or no driver to ask).
    fn read(&self) -> Result<Option<GpuInventory>, GpuError>;
}

/// `monitoring.gpu_inventory`: `nvml` (the default), `none`, or the path of a recorded inventory.
pub fn source_from_setting(setting: &str) -> Box<dyn GpuSource> {
    match setting {
        "nvml" => Box::new(NvmlSource::default()),
        "none" => Box::new(NoGpus),
        path => Box::new(RecordedSource { path: PathBuf::from(path) }),
    }
}

pub struct NoGpus;

impl GpuSource for NoGpus {
    fn read(&self) -> Result<Option<GpuInventory>, GpuError> {
        Ok(None)
    }
}

/// A JSON file holding a [`GpuInventory`], read again at every reading (so a test can change it).
pub struct RecordedSource {
    pub path: PathBuf,
}

impl GpuSource for RecordedSource {
    fn read(&self) -> Result<Option<GpuInventory>, GpuError> {
        let fail = |message: String| GpuError::Recorded { path: self.path.display().to_string(), message };
        let text = std::fs::read_to_string(&self.path).map_err(|e| fail(e.to_string()))?;
        let inventory: GpuInventory = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        Ok((!inventory.gpus.is_empty()).then_some(inventory))
    }
}

/// The real driver. NVML is initialised at the first reading; a host without the library
/// (`LibloadingError`) or without a driver has no NVIDIA GPUs, and is not asked again.
#[derive(Default)]
pub struct NvmlSource {
    nvml: OnceLock<Option<nvml_wrapper::Nvml>>,
}

impl GpuSource for NvmlSource {
    fn read(&self) -> Result<Option<GpuInventory>, GpuError> {
        let nvml = self.nvml.get_or_init(|| match nvml_wrapper::Nvml::init() {
            Ok(nvml) => Some(nvml),
            Err(e) => {
                tracing::info!(error = %e, "no NVIDIA GPUs on this host (NVML could not be loaded)");
                None
            }
        });
        let Some(nvml) = nvml else { return Ok(None) };
        let nvml_error = |e: nvml_wrapper::error::NvmlError| GpuError::Nvml(e.to_string());
        let count = nvml.device_count().map_err(nvml_error)?;
        let mut gpus = Vec::new();
        for index in 0..count {
            let device = nvml.device_by_index(index).map_err(nvml_error)?;
            let memory = device.memory_info().map_err(nvml_error)?;
            let mut processes = Vec::new();
            let compute = device.running_compute_processes().unwrap_or_default();
            let graphics = device.running_graphics_processes().unwrap_or_default();
            for p in compute.into_iter().chain(graphics) {
                if processes.iter().any(|known: &GpuProcess| known.pid == p.pid) {
                    continue;
                }
                let used_memory_bytes = match p.used_gpu_memory {
                    nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) => Some(bytes),
                    nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => None,
                };
                let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid)).ok();
                processes.push(GpuProcess { pid: p.pid, used_memory_bytes, cgroup });
            }
            gpus.push(GpuReading {
                index,
                uuid: device.uuid().map_err(nvml_error)?,
                name: device.name().unwrap_or_else(|_| "NVIDIA GPU".into()),
                utilization_percent: device.utilization_rates().map(|u| u.gpu).unwrap_or(0),
                memory_used_bytes: memory.used,
                memory_total_bytes: memory.total,
                temperature_celsius: device.temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu).ok(),
                processes,
            });
        }
        Ok((!gpus.is_empty()).then_some(GpuInventory { gpus }))
    }
}

/// The containers a process runs in, from its `/proc/<pid>/cgroup`, outermost first: the
/// 64-hex-digit ids in a path such as `/docker/<id>` (cgroup v1, cgroupfs),
/// `/system.slice/docker-<id>.scope` (systemd) or `/kubepods/…/<id>`; a container nested in
/// another adds its id further down. Empty for a process on the host itself.
pub fn container_ids_in_cgroup(cgroup: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in cgroup.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or(line);
        for part in path.split('/') {
            let part = part.strip_suffix(".scope").unwrap_or(part);
            let part = part.rsplit('-').next().unwrap_or(part);
            if part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) && !found.iter().any(|f| f == part) {
                found.push(part.to_string());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2b9c4e5d6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";

    #[test]
    fn the_container_is_found_in_each_cgroup_layout() {
        let ids = |text: &str| container_ids_in_cgroup(text);
        assert_eq!(ids(&format!("0::/system.slice/docker-{ID}.scope\n")), [ID]);
        assert_eq!(ids(&format!("12:memory:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n")), [ID], "once, however many lines name it");
        assert_eq!(ids(&format!("0::/kubepods/besteffort/pod1234/{ID}\n")), [ID], "Kubernetes");
        assert!(ids("0::/user.slice/user-1000.slice/session-3.scope\n").is_empty(), "a host process");
        assert!(ids("0::/\n").is_empty());
        assert!(ids(&format!("0::/docker/{}\n", &ID[..63])).is_empty(), "not a whole id");
        let inner = "0123456789abcdef".repeat(4);
        assert_eq!(
            ids(&format!("0::/system.slice/docker-{ID}.scope/docker/{inner}\n")),
            [ID.to_string(), inner.clone()],
            "a container inside a workspace: the workspace first"
        );
    }

    /// The real driver path: on a host with an NVIDIA driver, NVML must list its GPUs; on one
    /// without (like the build machine), it must say there are none, and the skip of the real
    /// reading is said on the test's output (written past the test harness's capture).
    #[test]
    fn nvml_reads_this_hosts_gpus_or_says_there_are_none() {
        use std::io::Write;
        let driver = std::path::Path::new("/dev/nvidiactl").exists();
        let read = NvmlSource::default().read();
        if driver {
            let inventory = read.expect("NVML answers on a host with the driver").expect("and lists GPUs");
            assert!(inventory.gpus.iter().all(|g| g.memory_total_bytes > 0 && !g.uuid.is_empty()), "{inventory:?}");
        } else {
            assert_eq!(read.unwrap(), None, "no driver: no NVIDIA GPUs, and no error");
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED the real NVML reading: no NVIDIA driver on this host (/dev/nvidiactl missing); checked that Berth says there are no GPUs"
            );
        }
    }

    #[test]
    fn a_recorded_inventory_is_read_and_an_empty_one_means_no_gpus() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpus.json");
        std::fs::write(&path, r#"{"gpus":[{"index":0,"uuid":"GPU-1","name":"A100","utilization_percent":40,"memory_used_bytes":10,"memory_total_bytes":100,"temperature_celsius":50,"processes":[{"pid":7,"used_memory_bytes":10,"cgroup":null}]}]}"#).unwrap();
        let source = RecordedSource { path: path.clone() };
        let read = source.read().unwrap().unwrap();
        assert_eq!(read.gpus[0].name, "A100");
        assert_eq!(read.gpus[0].processes[0].pid, 7);
        std::fs::write(&path, r#"{"gpus":[]}"#).unwrap();
        assert_eq!(source.read().unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        let error = source.read().unwrap_err().to_string();
        assert!(error.contains("gpus.json"), "names the file: {error}");
    }
}
