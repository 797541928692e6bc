//! Berth's test kit, shared by `server/tests` and `end2end/tests`: a real `berth` process on a
//! real database, Docker clean-up by label, an OpenID provider, an HTTP client that behaves like
//! the hydrated page, and (feature `browser`) headless Chromium.
//!
//! Everything a fixture starts stops when the fixture is dropped, also when the test panics.

pub mod binary;
#[cfg(feature = "browser")]
pub mod chromium;
pub mod db;
pub mod docker;
pub mod http;
pub mod oidc;
pub mod server;
#[cfg(feature = "service")]
pub mod service;
pub mod swarm;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

pub use binary::{berth, workspace_root};
pub use db::{sqlite_pool, Backend, TestDb};
pub use http::{app_cookie, location, Browser};
pub use server::{cli, TestServer};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `bytes` pseudo-random bytes as lowercase hex: unique enough to tell test runs apart.
pub fn hex(bytes: usize) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
        ^ (std::process::id() as u64) << 32
        ^ CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut x = seed | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:02x}", x as u8)
        })
        .collect()
}

/// A unique valid username for this test.
pub fn username(prefix: &str) -> String {
    format!("{prefix}-{}", hex(4))
}

/// Waits (30 s at most) until `url` answers with a success status.
pub async fn wait_for(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the child process when dropped, even when the test panics.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the shared test data (Traefik schema, Guacamole vector) lives.
pub fn shared_dir() -> PathBuf {
    std::env::var("BERTH_SHARED_DIR").map(Into::into).unwrap_or_else(|_| workspace_root().join("../shared"))
}
