//! The one loop that asks the runtime about usage: every few seconds it learns which
//! workspaces run (from the live picture, which events keep current), reads those whose sample
//! is due (one reading each per sample), stores the round's samples in one write, reads the
//! GPUs, now and then measures sizes, and compacts the history. However many pages are open,
//! the engine sees this loop alone.
//!
//! One reading per sample rather than the engine's stream of a reading a second, and one write
//! per round rather than one per sample: for 100 busybox workspaces the streams cost Berth
//! 5.9 % of a core and dockerd 16 % (README, Performance).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use app::model::UsagePoint;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::Monitor;
use crate::db::now as now_unix;
use crate::workspace::names::workspace_name;
use crate::workspace::runtime::UsageReading;
use crate::workspace::Workspaces;

/// How often the loop looks for started and stopped workspaces, and reads the GPUs.
const TICK: Duration = Duration::from_secs(2);
/// How long one usage reading may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Readings asked of the engine at once.
const READS_AT_ONCE: usize = 8;
/// How often home and writable-layer sizes are measured (both walk files).
const SIZES_EVERY: Duration = Duration::from_secs(300);
/// How often old samples are averaged and expired ones deleted.
const COMPACT_EVERY: Duration = Duration::from_secs(600);
/// A home walk stops counting after this many entries.
const HOME_WALK_LIMIT: usize = 2_000_000;

/// What the sampler knows of one running workspace.
struct Followed {
    /// Its last reading, which the next one's rates are taken against.
    last: Option<UsageReading>,
    /// When it is next read.
    due: tokio::time::Instant,
    readings: u64,
}

/// Runs until the process ends.
pub async fn run(monitor: Arc<Monitor>, workspaces: Arc<Workspaces>) {
    let mut followed: HashMap<String, Followed> = HashMap::new();
    let every = Duration::from_secs(monitor.settings.sample_seconds.max(1));
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
            // NVML calls block: on a thread of their own, so the sampling goes on.
            gpus = Some(tokio::task::spawn_blocking(move || gpu_reader.read_gpus()));
        }
        let running = match workspaces.running_owners().await {
            Ok(running) => running,
            Err(e) => {
                monitor.set_engine_up(false);
                tracing::debug!(error = %e, "usage sampler: the runtime did not answer");
                continue;
            }
        };
        monitor.set_engine_up(true);
        followed.retain(|owner, _| {
            let keep = running.contains(owner);
            if !keep {
                monitor.forget(owner);
            }
            keep
        });
        let now = tokio::time::Instant::now();
        let started: Vec<String> = running.iter().filter(|o| !followed.contains_key(*o)).cloned().collect();
        for owner in &started {
            followed.insert(owner.clone(), Followed { last: None, due: now, readings: 0 });
        }
        let due: Vec<String> = followed.iter().filter(|(_, f)| f.due <= now).map(|(o, _)| o.clone()).collect();
        let points = read_round(&monitor, &workspaces, &mut followed, due, every).await;
        // One write for the round, however many workspaces it read.
        if let Err(e) = monitor.history.insert_round(&points, every.as_secs() as i64).await {
            tracing::warn!(error = %e, samples = points.len(), "could not store usage samples");
        }
        // Everyone every few minutes; a workspace that just started at once, so its sizes do
        // not wait for the next round.
        let sizes_due = last_sizes.is_none_or(|t| t.elapsed() >= SIZES_EVERY);
        if sizes.as_ref().is_none_or(|task| task.is_finished()) {
            let owners = if sizes_due {
                last_sizes = Some(tokio::time::Instant::now());
                running
            } else {
                started
            };
            if !owners.is_empty() {
                sizes = Some(tokio::spawn(measure_sizes(monitor.clone(), workspaces.clone(), owners)));
            }
        }
        if last_compact.elapsed() >= COMPACT_EVERY {
            last_compact = tokio::time::Instant::now();
            match monitor.history.compact(now_unix()).await {
                Ok(done) => tracing::debug!(averaged = done.averaged, deleted = done.deleted, "usage history compacted"),
                Err(e) => tracing::warn!(error = %e, "could not compact the usage history"),
            }
        }
    }
}

/// Reads the `due` workspaces (a few at a time), records their figures and returns the points
/// to store. A new workspace is read again at the next tick, so its figures show within
/// seconds; then once per sample, its first regular reading placed at random in the interval so
/// that many workspaces' readings spread out.
async fn read_round(
    monitor: &Monitor,
    workspaces: &Workspaces,
    followed: &mut HashMap<String, Followed>,
    due: Vec<String>,
    every: Duration,
) -> Vec<(String, i64, UsagePoint)> {
    let runtime = workspaces.runtime();
    let readings: Vec<(String, Option<UsageReading>)> = futures_util::stream::iter(due)
        .map(|owner| async move {
            let reading = match tokio::time::timeout(READ_TIMEOUT, runtime.usage(&workspace_name(&owner))).await {
                Ok(Ok(reading)) => reading,
                Ok(Err(e)) => {
                    tracing::debug!(owner, error = %e, "no usage reading");
                    None
                }
                Err(_) => {
                    tracing::debug!(owner, "the usage reading timed out");
                    None
                }
            };
            (owner, reading)
        })
        .buffer_unordered(READS_AT_ONCE)
        .collect()
        .await;
    let now = tokio::time::Instant::now();
    let mut points = Vec::new();
    for (owner, reading) in readings {
        let Some(f) = followed.get_mut(&owner) else { continue };
        f.readings += 1;
        f.due = now
            + match f.readings {
                1 => TICK,
                2 => every.mul_f64(rand::random::<f64>()),
                _ => every,
            };
        let Some(reading) = reading else { continue };
        if let Some(rates) = f.last.as_ref().and_then(|b| super::usage::rates(b, &reading)) {
            let at = reading.at_ms / 1000;
            monitor.record(&owner, reading.clone(), rates);
            if let Some(point) = monitor.point_of(&owner) {
                points.push((owner.clone(), at, point));
            }
        }
        f.last = Some(reading);
    }
    points
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
