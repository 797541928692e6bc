//! A single-node swarm for the Swarm runtime's tests: `docker swarm init` on loopback when this
//! engine is in no swarm, marked as the tests', shared by the tests of one process and left
//! after the last of them (with the `docker_gwbridge` network, when init made it). A swarm the
//! tests did not make is never touched: the test fails and says so.

use std::sync::Mutex;

use crate::docker::{docker, try_docker};

/// The node label that marks a swarm as made by the tests (value: the making process).
pub const MARKER: &str = "io.berth.test.swarm";
/// Where the tests' overlays take their subnets: away from the engine's default pool
/// (10.0.0.0/8), which a site's own networks may use.
const ADDRESS_POOL: &str = "10.231.0.0/16";
/// One swarm per engine: processes that use it take turns (held while any test uses it).
const LOCK_FILE: &str = "/tmp/berth-test-swarm.lock";

struct Shared {
    users: usize,
    lock: Option<std::fs::File>,
    made_gateway_bridge: bool,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared { users: 0, lock: None, made_gateway_bridge: false });

/// A use of the tests' swarm; the last one dropped leaves it.
pub struct TestSwarm {
    /// This engine's node id.
    pub node_id: String,
}

fn state() -> String {
    docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"])
}

fn self_id() -> String {
    docker(&["info", "-f", "{{.Swarm.NodeID}}"])
}

impl TestSwarm {
    pub fn join() -> TestSwarm {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if shared.users == 0 {
            let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK_FILE).expect("swarm lock file");
            lock.lock().expect("lock the tests' swarm");
            match state().as_str() {
                "inactive" => {
                    shared.made_gateway_bridge = try_docker(&["network", "inspect", "docker_gwbridge"]).is_err();
                    docker(&[
                        "swarm", "init", "--listen-addr", "127.0.0.1:2377", "--advertise-addr", "127.0.0.1",
                        "--default-addr-pool", ADDRESS_POOL, "--default-addr-pool-mask-length", "24",
                    ]);
                    // Unmarked, it would look like somebody else's swarm to every later run.
                    if let Err(e) = try_docker(&["node", "update", "--label-add", &format!("{MARKER}={}", std::process::id()), &self_id()]) {
                        let _ = try_docker(&["swarm", "leave", "--force"]);
                        panic!("cannot mark the tests' swarm, left it: {e}");
                    }
                }
                "active" => {
                    // Left behind by a test process that was killed: it is the tests' to reuse.
                    let marker = docker(&["node", "inspect", "-f", &format!("{{{{index .Spec.Labels \"{MARKER}\"}}}}"), &self_id()]);
                    assert!(
                        !marker.is_empty() && marker != "<no value>",
                        "this engine is in a swarm the tests did not make: they never touch it (run them on an engine in no swarm)"
                    );
                }
                other => panic!("this engine's swarm is {other:?}: the tests need an engine in no swarm"),
            }
            shared.lock = Some(lock);
        }
        shared.users += 1;
        TestSwarm { node_id: self_id() }
    }
}

impl Drop for TestSwarm {
    fn drop(&mut self) {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        shared.users -= 1;
        if shared.users > 0 {
            return;
        }
        // Best effort, never a panic: this may run while a failed test unwinds.
        if let Err(e) = try_docker(&["swarm", "leave", "--force"]) {
            eprintln!("test swarm: {e}");
        }
        if std::mem::take(&mut shared.made_gateway_bridge) {
            if let Err(e) = try_docker(&["network", "rm", "docker_gwbridge"]) {
                eprintln!("test swarm: {e}");
            }
        }
        if let Some(lock) = shared.lock.take() {
            let _ = lock.unlock();
        }
    }
}
