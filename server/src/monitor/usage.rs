//! Figures from two readings of one workspace: pure arithmetic, tested with literals.

use crate::workspace::runtime::UsageReading;

/// What a workspace used between two readings, per second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Cores in use (1.0 = one core busy all the time).
    pub cpu_cores: f64,
    pub net_rx: f64,
    pub net_tx: f64,
    pub disk_read: f64,
    pub disk_write: f64,
}

/// None when the two cannot be compared: the later one is not later, or the counters went
/// back (the workspace restarted in between).
pub fn rates(before: &UsageReading, after: &UsageReading) -> Option<Rates> {
    let seconds = (after.at_ms - before.at_ms) as f64 / 1000.0;
    if seconds <= 0.0 || after.container_id != before.container_id {
        return None;
    }
    let delta = |a: u64, b: u64| a.checked_sub(b).map(|d| d as f64);
    let cpu_ns = delta(after.cpu_ns, before.cpu_ns)?;
    // The host's CPU time is what the share is measured against (as `docker stats` does): it
    // is counted by the same clock as the workspace's, so the ratio holds even when the
    // readings' timestamps jitter. Without it, wall time.
    let cpu_cores = match delta(after.host_cpu_ns, before.host_cpu_ns) {
        Some(host) if host > 0.0 => cpu_ns / host * f64::from(after.online_cpus),
        _ => cpu_ns / 1e9 / seconds,
    };
    Some(Rates {
        cpu_cores,
        net_rx: delta(after.net_rx_bytes, before.net_rx_bytes)? / seconds,
        net_tx: delta(after.net_tx_bytes, before.net_tx_bytes)? / seconds,
        disk_read: delta(after.disk_read_bytes, before.disk_read_bytes)? / seconds,
        disk_write: delta(after.disk_write_bytes, before.disk_write_bytes)? / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_ms: i64, cpu_ns: u64, host_cpu_ns: u64, net: u64, disk: u64) -> UsageReading {
        UsageReading {
            container_id: "c1".into(),
            at_ms,
            cpu_ns,
            host_cpu_ns,
            online_cpus: 4,
            memory_bytes: 1 << 30,
            memory_limit_bytes: 4 << 30,
            net_rx_bytes: net,
            net_tx_bytes: net / 2,
            disk_read_bytes: disk,
            disk_write_bytes: disk * 3,
        }
    }

    #[test]
    fn one_busy_core_of_four_over_two_seconds() {
        // Two seconds on a four-core host: 8 s of host CPU time, 2 s of it the workspace's.
        let before = reading(10_000, 5_000_000_000, 100_000_000_000, 1_000, 0);
        let after = reading(12_000, 7_000_000_000, 108_000_000_000, 201_000, 4_096);
        let r = rates(&before, &after).unwrap();
        assert!((r.cpu_cores - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.net_rx, 100_000.0);
        assert_eq!(r.net_tx, 50_000.0);
        assert_eq!(r.disk_read, 2_048.0);
        assert_eq!(r.disk_write, 6_144.0);
    }

    #[test]
    fn without_the_hosts_cpu_time_wall_time_is_used() {
        let before = reading(0, 0, 0, 0, 0);
        let after = reading(1_000, 500_000_000, 0, 0, 0);
        assert_eq!(rates(&before, &after).unwrap().cpu_cores, 0.5);
    }

    #[test]
    fn a_restart_or_a_reading_out_of_order_gives_nothing() {
        let before = reading(10_000, 5_000_000_000, 100_000_000_000, 1_000, 0);
        let restarted = reading(12_000, 1_000, 108_000_000_000, 10, 0);
        assert_eq!(rates(&before, &restarted), None, "counters went back");
        assert_eq!(rates(&before, &before), None, "no time passed");
        let other = UsageReading { container_id: "c2".into(), ..reading(12_000, 7_000_000_000, 108_000_000_000, 2_000, 0) };
        assert_eq!(rates(&before, &other), None, "another container (re-created)");
    }
}
