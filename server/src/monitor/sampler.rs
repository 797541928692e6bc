//! The one loop that asks the runtime about usage: every few seconds it learns which
//! workspaces run (from the live picture, which events keep current), keeps one reader per
//! running workspace (a reading per sample), reads the GPUs, now and then measures sizes, and
//! compacts the history. However many pages are open, the engine sees this loop alone.
//!
//! One reading per sample, not the engine's stream of a reading a second: for 100 busybox
//! workspaces the streams cost Berth 5.9 % of a core and dockerd 16 %, a reading every 10 s a
//! fraction of that (README, Performance).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Monitor;
use crate::db::now;
use crate::workspace::names::workspace_name;
use crate::workspace::runtime::UsageReading;
use crate::workspace::Workspaces;

/// How often the loop looks for started and stopped workspaces, and reads the GPUs.
const TICK: Duration = Duration::from_secs(2);
/// How long one usage reading may take before the workspace's sampling starts over.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often home and writable-layer sizes are measured (both walk files).
const SIZES_EVERY: Duration = Duration::from_secs(300);
/// How often old samples are averaged and expired ones deleted.
const COMPACT_EVERY: Duration = Duration::from_secs(600);
/// A home walk stops counting after this many entries.
const HOME_WALK_LIMIT: usize = 2_000_000;

/// Runs until the process ends.
pub async fn run(monitor: Arc<Monitor>, workspaces: Arc<Workspaces>) {
    let mut streams: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut last_sizes: Option<tokio::time::Instant> = None;
    // At most one GPU reading and one size pass at a time: a hung driver or a slow walk must
    // not pile up threads.
    let mut gpus: Option<JoinHandle<()>> = None;
    let mut sizes: Option<JoinHandle<()>> = None;
    let mut last_compact = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if gpus.as_ref().is_none_or(|task| task.is_finished()) {
            let gpu_reader = monitor.clone();
            // NVML calls block: on a thread of their own, so the usage streams go on.
            gpus = Some(tokio::task::spawn_blocking(move || gpu_reader.read_gpus()));
        }
        match workspaces.running_owners().await {
            Ok(running) => {
                monitor.set_engine_up(true);
                streams.retain(|owner, task| {
                    let keep = running.contains(owner) && !task.is_finished();
                    if !keep {
                        task.abort();
                        if !running.contains(owner) {
                            monitor.forget(owner);
                        }
                    }
                    keep
                });
                let started: Vec<String> = running.iter().filter(|o| !streams.contains_key(*o)).cloned().collect();
                for owner in &started {
                    streams.insert(owner.clone(), tokio::spawn(follow(monitor.clone(), workspaces.clone(), owner.clone())));
                }
                // Everyone every few minutes; a workspace that just started at once, so its
                // sizes do not wait for the next round.
                let due = last_sizes.is_none_or(|t| t.elapsed() >= SIZES_EVERY);
                if sizes.as_ref().is_none_or(|task| task.is_finished()) {
                    let owners = if due {
                        last_sizes = Some(tokio::time::Instant::now());
                        running
                    } else {
                        started
                    };
                    if !owners.is_empty() {
                        sizes = Some(tokio::spawn(measure_sizes(monitor.clone(), workspaces.clone(), owners)));
                    }
                }
            }
            Err(e) => {
                monitor.set_engine_up(false);
                tracing::debug!(error = %e, "usage sampler: the runtime did not answer");
            }
        }
        if last_compact.elapsed() >= COMPACT_EVERY {
            last_compact = tokio::time::Instant::now();
            match monitor.history.compact(now()).await {
                Ok(done) => tracing::debug!(averaged = done.averaged, deleted = done.deleted, "usage history compacted"),
                Err(e) => tracing::warn!(error = %e, "could not compact the usage history"),
            }
        }
    }
}

/// Reads one workspace's usage once per sample until it is no longer running (or the
/// runtime stops answering; the loop above starts it again while the workspace runs).
async fn follow(monitor: Arc<Monitor>, workspaces: Arc<Workspaces>, owner: String) {
    let name = workspace_name(&owner);
    let every = Duration::from_secs(monitor.settings.sample_seconds.max(1));
    let mut before: Option<UsageReading> = None;
    let mut readings = 0u64;
    loop {
        let reading = match tokio::time::timeout(READ_TIMEOUT, workspaces.runtime().usage(&name)).await {
            Ok(Ok(Some(reading))) => reading,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(owner, error = %e, "no usage reading");
                return;
            }
            Err(_) => {
                tracing::debug!(owner, "the usage reading timed out");
                return;
            }
        };
        if let Some(rates) = before.as_ref().and_then(|b| super::usage::rates(b, &reading)) {
            let at = reading.at_ms / 1000;
            monitor.record(&owner, reading.clone(), rates);
            if let Some(point) = monitor.point_of(&owner) {
                if let Err(e) = monitor.history.insert(&owner, at, every.as_secs() as i64, &point).await {
                    tracing::warn!(owner, error = %e, "could not store a usage sample");
                }
            }
        }
        before = Some(reading);
        readings += 1;
        let pause = match readings {
            // The first figures a second after the workspace is seen, ...
            1 => Duration::from_secs(1),
            // ... then the readings of many workspaces spread over the interval, not all at once.
            2 => every.mul_f64(rand::random::<f64>()),
            _ => every,
        };
        tokio::time::sleep(pause).await;
    }
}

async fn measure_sizes(monitor: Arc<Monitor>, workspaces: Arc<Workspaces>, owners: Vec<String>) {
    for owner in owners {
        let home = monitor.settings.storage_root.join("homes").join(&owner);
        let home_bytes = tokio::task::spawn_blocking(move || super::disk_usage(&home, HOME_WALK_LIMIT)).await.ok().flatten();
        let layer = tokio::time::timeout(Duration::from_secs(60), workspaces.runtime().writable_layer_bytes(&workspace_name(&owner))).await;
        let writable_layer_bytes = match layer {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::debug!(owner, error = %e, "writable layer size unknown");
                None
            }
            Err(_) => None,
        };
        monitor.set_sizes(&owner, home_bytes, writable_layer_bytes);
    }
}
