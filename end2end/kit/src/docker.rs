//! Docker through its command line: every test run labels what it creates (`io.berth.test`)
//! and [`Cleanup`] removes it when dropped, even when the test panics: Swarm services,
//! containers, networks.

use std::path::Path;
use std::process::Command;

/// The tiny busybox image the lifecycle tests run (scripts/build-test-image.sh).
pub const TEST_IMAGE: &str = "berth-test/busybox:latest";

/// `docker ARGS`: its trimmed stdout, or `Err` with its exit status and stderr.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).output().map_err(|e| format!("docker {args:?}: cannot run the docker CLI: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("docker {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `docker ARGS`, its trimmed stdout; fails the test with docker's stderr when docker fails.
/// Where a failure is an acceptable answer, use [`try_docker`] and say so.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the engine has `image` (no pull is ever attempted).
pub fn image_exists(image: &str) -> bool {
    try_docker(&["image", "inspect", "-f", "{{.Id}}", image]).is_ok()
}

/// `docker inspect -f FORMAT NAME`; fails the test when there is no such object.
pub fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

/// Removes the services, containers and networks carrying `label`.
pub struct Cleanup {
    pub label: String,
}

impl Cleanup {
    /// A fresh run label; fails at once when the test image is missing.
    pub fn new() -> Cleanup {
        assert!(image_exists(TEST_IMAGE), "{TEST_IMAGE} missing: run scripts/build-test-image.sh (make test does)");
        Cleanup { label: format!("io.berth.test=run-{}", crate::hex(6)) }
    }

    /// The containers (ids) carrying this run's label, running or not.
    pub fn containers(&self) -> Vec<String> {
        docker(&["ps", "-aq", "--filter", &format!("label={}", self.label)]).lines().map(str::to_string).collect()
    }
}

impl Default for Cleanup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Best effort, and never a panic here: this runs while a failed test unwinds.
        let filter = format!("label={}", self.label);
        // Services first, or Swarm replaces the containers removed below. An engine in no
        // swarm refuses the listing: nothing to do then.
        if let Ok(ids) = try_docker(&["service", "ls", "-q", "--filter", &filter]) {
            for id in ids.lines() {
                if let Err(e) = try_docker(&["service", "rm", id]) {
                    eprintln!("clean-up: {e}");
                }
            }
        }
        if let Ok(ids) = try_docker(&["ps", "-aq", "--filter", &filter]) {
            for id in ids.lines() {
                if let Err(e) = try_docker(&["rm", "-f", id]) {
                    eprintln!("clean-up: {e}");
                }
            }
        }
        if let Ok(nets) = try_docker(&["network", "ls", "-q", "--filter", &filter]) {
            for id in nets.lines() {
                // An overlay keeps a removed task's endpoint a moment.
                let mut attempts = 0;
                while let Err(e) = try_docker(&["network", "rm", id]) {
                    attempts += 1;
                    if attempts == 20 || !e.contains("active endpoints") {
                        eprintln!("clean-up: {e}");
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
            }
        }
    }
}

/// Settings for `berth` processes whose workspaces run the busybox test image: private
/// `storage`, loopback ports from `port_base`, unprivileged, labelled for `cleanup`.
pub fn env(cleanup: &Cleanup, storage: &Path, port_base: u16) -> Vec<(String, String)> {
    assert_below_ephemeral_ports(port_base);
    vec![
        ("BERTH_WORKSPACE_IMAGE".into(), TEST_IMAGE.into()),
        ("BERTH_STORAGE_ROOT".into(), storage.display().to_string()),
        ("BERTH_PORTS__BASE".into(), port_base.to_string()),
        ("BERTH_PORTS__HOST_IP".into(), "127.0.0.1".into()),
        ("BERTH_WORKSPACE__GPUS".into(), "none".into()),
        ("BERTH_WORKSPACE__STOP_TIMEOUT_SECONDS".into(), "5".into()),
        // This machine's engine refuses --privileged (nested sandbox): tests run unprivileged.
        ("BERTH_WORKSPACE__ISOLATION".into(), "plain".into()),
        ("BERTH_WORKSPACE__EXTRA_LABEL".into(), cleanup.label.clone()),
    ]
}

/// The ports a test's workspaces publish must lie below the kernel's ephemeral range: there any
/// outgoing connection on the machine may hold one as its source port, and the workspace then
/// fails to start with "address already in use" (seen in CI at 127.0.0.1:33100). A test uses at
/// most ten slots of 100 ports.
pub fn assert_below_ephemeral_ports(port_base: u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let first_ephemeral: u32 = range.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(32768);
    assert!(
        u32::from(port_base) + 1000 <= first_ephemeral,
        "test port block {port_base}..{} reaches the ephemeral ports from {first_ephemeral}: pick a base below {}",
        u32::from(port_base) + 1000,
        first_ephemeral - 1000
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_docker_command_fails_the_test_with_what_docker_said() {
        let error = try_docker(&["inspect", "berth-test-no-such-object-7f3a"]).unwrap_err();
        assert!(error.contains("berth-test-no-such-object-7f3a"), "{error}");
        assert!(error.to_lowercase().contains("no such object"), "docker's stderr is in the message: {error}");
        let panicked = std::panic::catch_unwind(|| docker(&["inspect", "berth-test-no-such-object-7f3a"]));
        assert!(panicked.is_err(), "docker() must not return when docker fails");
        assert_eq!(docker(&["version", "-f", "ok"]), "ok");
    }
}
