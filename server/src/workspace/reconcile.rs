//! Bringing the runtime in line with Berth's records (adopting, reporting orphans, foreign
//! workspaces and drift, starting what users want running), and following the runtime's
//! events into the live picture.

use std::sync::Arc;
use std::time::Duration;

use app::model::WorkspaceState;
use futures_util::StreamExt;

use super::names::workspace_name;
use super::service::{Actor, Owner, WorkspaceError, Workspaces};

/// How often the live picture is read whole again, in case an event was missed.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub adopted: Vec<String>,
    pub orphans: Vec<String>,
    pub foreign: Vec<String>,
    pub drifted: Vec<String>,
    pub restarted: Vec<String>,
    /// Wanted running but could not be started, with why.
    pub failed: Vec<String>,
    pub stale_routes: Vec<String>,
}

impl Workspaces {
    /// Rewrites every approved user's routes and deletes the others' (stale or missing files repaired).
    pub async fn reconcile_routes(&self) -> Result<Vec<String>, WorkspaceError> {
        let Some(routes) = &self.routes else { return Ok(Vec::new()) };
        let users = self.all_routes().await?;
        routes.reconcile(&users).map_err(|e| WorkspaceError::Routes(e.to_string()))
    }

    /// Adopts Berth's workspaces, reports orphans, foreign ones and drift, and brings back
    /// workspaces their users want running (e.g. after Berth died mid-start).
    pub async fn reconcile(self: &Arc<Self>, actor: &Actor) -> Result<ReconcileReport, WorkspaceError> {
        actor.may_administer()?;
        let overview = self.overview(actor).await?;
        if let Some(problem) = overview.engine_problem {
            return Err(WorkspaceError::Runtime(super::runtime::RuntimeError::Unavailable(problem)));
        }
        let mut report = ReconcileReport { foreign: overview.foreign.clone(), ..Default::default() };
        for row in &overview.rows {
            if row.orphan {
                tracing::warn!(container = %workspace_name(&row.username), "orphaned workspace: no matching user");
                report.orphans.push(row.username.clone());
            } else if row.state != WorkspaceState::Absent {
                report.adopted.push(row.username.clone());
            }
            if row.drift {
                tracing::info!(user = %row.username, "workspace differs from its current plan; applied at its next start");
                report.drifted.push(row.username.clone());
            }
        }
        match self.reconcile_routes().await {
            Ok(removed) => report.stale_routes = removed,
            Err(e) => tracing::error!(error = %e, "cannot reconcile Traefik routes"),
        }
        for name in &report.foreign {
            tracing::warn!(container = %name, "foreign container uses a workspace name but was not created by Berth");
        }
        let wanted: Vec<Owner> = self
            .records
            .all()
            .await?
            .into_iter()
            .filter(|r| r.record.desired_running && r.approved)
            .map(|r| Owner { id: r.record.user_id, username: r.username, approved: r.approved })
            .collect();
        for owner in wanted {
            let running = overview.rows.iter().any(|r| r.username == owner.username && r.state == WorkspaceState::Running);
            if !running {
                tracing::info!(user = %owner.username, "bringing back a workspace its user wants running");
                // One workspace that cannot start (its storage is full, say) must not keep the
                // others down.
                match self.start(actor, &owner).await {
                    Ok(()) => report.restarted.push(owner.username),
                    Err(e) => {
                        tracing::warn!(user = %owner.username, error = %e, "could not bring a workspace back");
                        report.failed.push(format!("{}: {e}", owner.username));
                    }
                }
            }
        }
        Ok(report)
    }

    /// Reads every workspace from the runtime into the live picture; running ones whose
    /// services this Berth has not followed yet get a watch.
    async fn resync(self: &Arc<Self>) -> Result<(), WorkspaceError> {
        let listed = self.runtime.list().await?;
        if self.live.replace_all(listed) {
            self.progress.bump();
        }
        for observed in self.live.snapshot() {
            self.watch_if_new(&observed);
        }
        Ok(())
    }

    /// Follows the runtime's events into the live picture, with a full read every 30 s in case
    /// one was lost; reconnects (and reconciles) when the runtime comes back. While this runs,
    /// open dashboards cost the runtime nothing.
    pub async fn watch_events(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.runtime.watch().await {
                Ok(mut events) => {
                    // Subscribed first, then read whole: nothing can fall between the two.
                    match self.resync().await {
                        Ok(()) => {
                            self.live.set_following(true);
                            *self.engine_problem.lock().expect("engine state") = None;
                            self.progress.bump();
                            match self.reconcile(&Actor::System).await {
                                Ok(report) => {
                                    if let Some(hook) = &self.on_reconcile {
                                        hook(&report);
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
                            }
                            backoff = Duration::from_secs(1);
                            let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC_EVERY, RESYNC_EVERY);
                            loop {
                                tokio::select! {
                                    event = events.next() => match event {
                                        Some(Ok(event)) => {
                                            tracing::debug!(owner = ?event.owner, name = %event.name, "workspace event");
                                            if let Some(owner) = event.owner {
                                                self.refresh(&owner).await;
                                                if let Some(observed) = self.live.get(&owner) {
                                                    self.watch_if_new(&observed);
                                                }
                                            }
                                        }
                                        Some(Err(e)) => {
                                            *self.engine_problem.lock().expect("engine state") = Some(e.to_string());
                                            break;
                                        }
                                        None => break,
                                    },
                                    _ = resync.tick() => {
                                        if let Err(e) = self.resync().await {
                                            *self.engine_problem.lock().expect("engine state") = Some(e.to_string());
                                            break;
                                        }
                                    }
                                }
                            }
                            self.live.set_following(false);
                            self.progress.bump();
                        }
                        Err(e) => *self.engine_problem.lock().expect("engine state") = Some(e.to_string()),
                    }
                }
                Err(e) => *self.engine_problem.lock().expect("engine state") = Some(e.to_string()),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(15));
        }
    }
}
