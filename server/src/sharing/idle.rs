//! Idle workspaces: every signal that shows a workspace in use, written down when seen, and the
//! stop (after a warning) of one quiet on all of them for `idle.stop_after`.

use std::collections::BTreeSet;

use app::model::IdleView;
use sqlx::Row as _;

use futures_util::StreamExt as _;

use super::scheduler::{effective_warning, idle_step, IdleStep};
use super::{Sharing, SharingError};
use crate::db::now;
use crate::workspace::names::container_port;
use crate::workspace::{Actor, Owner};

#[derive(Debug, Clone)]
pub struct IdleSettings {
    /// 0: never.
    pub stop_after: i64,
    pub warning: i64,
    pub cpu_percent: f64,
}

/// The signals, by the name stored and shown ("active: SSH session, 3 min ago").
pub const SSH: &str = "SSH session";
pub const VNC: &str = "VNC connection";
pub const RDP: &str = "RDP connection";
pub const BROWSER_DESKTOP: &str = "desktop in the browser";
pub const APPS: &str = "app traffic";
pub const PORTAL: &str = "I'm still here";
pub const PORTAL_VISIT: &str = "portal visit";
pub const CPU: &str = "CPU use";
pub const GPU: &str = "GPU use";
pub const JUPYTER: &str = "busy Jupyter kernel";
pub const STARTED: &str = "start";

/// The connections established to the workspace's own services, from its `/proc/net/tcp` and
/// `/proc/net/tcp6` (X2Go runs over SSH).
pub fn connection_signals(proc_net_tcp: &str) -> BTreeSet<&'static str> {
    const ESTABLISHED: &str = "01";
    let mut signals = BTreeSet::new();
    for line in proc_net_tcp.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st ...
        if fields.len() < 4 || fields[3] != ESTABLISHED {
            continue;
        }
        let Some(port) = fields[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) else { continue };
        let signal = match port {
            container_port::SSH => SSH,
            container_port::VNC => VNC,
            container_port::RDP => RDP,
            container_port::NOVNC => BROWSER_DESKTOP,
            _ => continue,
        };
        signals.insert(signal);
    }
    signals
}

/// The kernels Jupyter's `/api/kernels` lists, busy or not.
pub fn any_kernel_busy(kernels: &serde_json::Value) -> bool {
    kernels.as_array().is_some_and(|ks| ks.iter().any(|k| k["execution_state"] == "busy"))
}

impl Sharing {
    /// One idle check of every running workspace: write down what is active now, warn, stop.
    pub async fn idle_round(&self) -> Result<(), SharingError> {
        let at = now();
        let seen = self.activity.take();
        for (signal, by_user) in [(APPS, &seen.apps), (PORTAL_VISIT, &seen.portal)] {
            for (name, at) in by_user {
                if let Some(user) = self.owner_by_name(name).await? {
                    self.note_signal(user.id, signal, *at).await?;
                }
            }
        }
        let running = self.workspaces.running_owners().await.map_err(crate::workspace::WorkspaceError::from)?;
        // A few at once: each reads inside its workspace, which its user may slow down.
        futures_util::stream::iter(running)
            .for_each_concurrent(8, |username| async move {
                let checked = async {
                    let Some(owner) = self.owner_by_name(&username).await? else { return Ok(()) };
                    self.check_idle(&owner, at).await
                };
                if let Err(e) = checked.await {
                    tracing::warn!(user = %username, error = %e, "idle check failed");
                }
            })
            .await;
        Ok(())
    }

    async fn check_idle(&self, owner: &Owner, at: i64) -> Result<(), SharingError> {
        for signal in self.signals_now(owner).await {
            self.note_signal(owner.id, signal, at).await?;
        }
        // Written down, so a warning from before this start never counts against it.
        if let Some(started) = self.workspaces.started_at(&owner.username).await {
            self.note_signal(owner.id, STARTED, started).await?;
        }
        let view = self.idle_view(owner, true).await?;
        if view.exempt || view.stop_after_seconds <= 0 {
            if view.warned_at.is_some() {
                self.clear_idle_warning(owner).await?;
            }
            return Ok(());
        }
        let last = view.last_at.unwrap_or(at);
        let warned_for = view.warned_at.map(|w| at - w);
        match idle_step(at - last, warned_for, view.stop_after_seconds, self.settings.idle.warning) {
            IdleStep::Quiet => {
                // Active again after a warning: the warning no longer holds.
                if view.warned_at.is_some_and(|warned| last > warned) {
                    self.clear_idle_warning(owner).await?;
                }
            }
            IdleStep::Warn => {
                let inserted = sqlx::query("INSERT INTO idle_warnings (user_id, warned_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
                    .bind(owner.id)
                    .bind(at)
                    .execute(&self.db.pool)
                    .await?
                    .rows_affected();
                if inserted == 1 {
                    let left = (last + view.stop_after_seconds - at).max(effective_warning(view.stop_after_seconds, self.settings.idle.warning));
                    let message = format!(
                        "this workspace has been idle since {}; it will be stopped in about {} unless it is used (or press \"I'm still here\" on the dashboard). Your files stay.",
                        app::figures::clock_text(last),
                        app::figures::duration_text(left)
                    );
                    self.event("berth", &owner.username, "idle-warning", &message).await?;
                    self.tell(owner, &message).await;
                }
            }
            IdleStep::Act => {
                // Whoever takes the warning away stops the workspace: one process, once.
                let taken = sqlx::query("DELETE FROM idle_warnings WHERE user_id = $1 AND warned_at = $2")
                    .bind(owner.id)
                    .bind(view.warned_at)
                    .execute(&self.db.pool)
                    .await?
                    .rows_affected();
                if taken == 1 {
                    self.event("berth", &owner.username, "idle-stop", &format!("idle since {}", app::figures::clock_text(last))).await?;
                    self.workspaces.stop(&Actor::System, owner).await?;
                    tracing::info!(user = %owner.username, "stopped an idle workspace");
                }
            }
        }
        Ok(())
    }

    /// The signals active in the owner's workspace at this moment.
    async fn signals_now(&self, owner: &Owner) -> BTreeSet<&'static str> {
        let mut signals = BTreeSet::new();
        match self.workspaces.read_inside(owner, &["cat", "/proc/net/tcp", "/proc/net/tcp6"]).await {
            Ok(Some(table)) => signals.extend(connection_signals(&table)),
            Ok(None) => {}
            Err(e) => tracing::debug!(user = %owner.username, error = %e, "cannot read the workspace's connections"),
        }
        if let Some(usage) = self.monitor.now_of(&owner.username) {
            if usage.cpu_cores * 100.0 >= self.settings.idle.cpu_percent {
                signals.insert(CPU);
            }
            if usage.gpus.iter().any(|g| g.gpu.utilization_percent >= self.settings.policy.idle_utilization_percent) {
                signals.insert(GPU);
            }
        }
        if self.jupyter_busy(owner).await {
            signals.insert(JUPYTER);
        }
        signals
    }

    async fn jupyter_busy(&self, owner: &Owner) -> bool {
        let Ok(Some(upstream)) = self.workspaces.app_upstream(&owner.username, crate::hosts::App::Jupyter).await else { return false };
        let url = format!("http://{}/api/kernels", upstream.address);
        let answer = self
            .http
            .get(url)
            .header("Authorization", format!("token {}", upstream.jupyter_token))
            .timeout(std::time::Duration::from_secs(3))
            .send()
            .await;
        let Ok(mut response) = answer else { return false };
        if !response.status().is_success() {
            return false;
        }
        // Whatever listens there is the workspace user's: read a bounded answer.
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
            if body.len() > 256 << 10 {
                return false;
            }
        }
        serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|k| any_kernel_busy(&k))
    }

    pub(super) async fn note_signal(&self, user_id: i64, signal: &str, at: i64) -> Result<(), SharingError> {
        sqlx::query(
            "INSERT INTO workspace_activity (user_id, signal, last_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, signal) DO UPDATE SET last_at = excluded.last_at WHERE workspace_activity.last_at < excluded.last_at",
        )
        .bind(user_id)
        .bind(signal)
        .bind(at)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// "I'm still here": counts as activity now and lifts a pending idle warning.
    pub async fn still_here(&self, owner: &Owner) -> Result<(), SharingError> {
        self.note_signal(owner.id, PORTAL, now()).await?;
        self.clear_idle_warning(owner).await
    }

    async fn clear_idle_warning(&self, owner: &Owner) -> Result<(), SharingError> {
        sqlx::query("DELETE FROM idle_warnings WHERE user_id = $1").bind(owner.id).execute(&self.db.pool).await?;
        Ok(())
    }

    /// The owner's idle state; `running` when known (else asked of the live picture).
    pub(super) async fn idle_view(&self, owner: &Owner, running: bool) -> Result<IdleView, SharingError> {
        let rows = sqlx::query("SELECT signal, last_at FROM workspace_activity WHERE user_id = $1 ORDER BY last_at DESC")
            .bind(owner.id)
            .fetch_all(&self.db.pool)
            .await?;
        let mut last: Option<(String, i64)> = rows.first().map(|r| (r.get::<String, _>("signal"), r.get::<i64, _>("last_at")));
        // A start counts as activity: a workspace just started is not idle.
        if let Some(started) = self.workspaces.started_at(&owner.username).await {
            if last.as_ref().is_none_or(|(_, at)| *at < started) {
                last = Some((STARTED.to_string(), started));
            }
        }
        let policy = sqlx::query("SELECT stop_after_seconds, exempt FROM idle_policies WHERE user_id = $1")
            .bind(owner.id)
            .fetch_optional(&self.db.pool)
            .await?;
        let (stop_after, exempt) = match policy {
            Some(p) => (p.get::<Option<i64>, _>("stop_after_seconds").unwrap_or(self.settings.idle.stop_after), p.get::<i64, _>("exempt") != 0),
            None => (self.settings.idle.stop_after, false),
        };
        let warned_at: Option<i64> = sqlx::query_scalar("SELECT warned_at FROM idle_warnings WHERE user_id = $1")
            .bind(owner.id)
            .fetch_optional(&self.db.pool)
            .await?;
        let stops_at = match (&last, running && !exempt && stop_after > 0) {
            (Some((_, at)), true) => Some((at + stop_after).max(warned_at.map_or(0, |w| w + effective_warning(stop_after, self.settings.idle.warning)))),
            _ => None,
        };
        Ok(IdleView {
            username: owner.username.clone(),
            running,
            last_signal: last.as_ref().map(|(s, _)| s.clone()),
            last_at: last.map(|(_, at)| at),
            exempt,
            stop_after_seconds: stop_after,
            warned_at,
            stops_at,
        })
    }

    /// Every user with a workspace record: their idle state (`berth idle status`, the admin page).
    pub async fn idle_status(&self) -> Result<Vec<IdleView>, SharingError> {
        let running: BTreeSet<String> = self.workspaces.running_owners().await.map_err(crate::workspace::WorkspaceError::from)?.into_iter().collect();
        let rows = sqlx::query("SELECT u.id, u.username, u.status FROM users u JOIN workspaces w ON w.user_id = u.id ORDER BY u.username")
            .fetch_all(&self.db.pool)
            .await?;
        let mut views = Vec::new();
        for r in rows {
            let owner = Owner { id: r.get("id"), username: r.get("username"), approved: r.get::<String, _>("status") == "approved" };
            let is_running = running.contains(&owner.username);
            views.push(self.idle_view(&owner, is_running).await?);
        }
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_connections_to_the_workspaces_services_are_signals() {
        // Recorded from a workspace: sshd listening (0A), an SSH session (01, local :0016), an
        // outgoing connection to a remote port 22 (not a session into this workspace), and an
        // established VNC connection over IPv6.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 020011AC:0016 010011AC:D43A 01 00000000:00000000 02:0000005B 00000000     0        0 2 4 0 20 4 30 10 -1\n\
   2: 020011AC:9A3C 0A0B0C0D:0016 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1\n\
   0: 0000000000000000FFFF0000020011AC:170D 0000000000000000FFFF0000010011AC:C000 01 00000000:00000000 00:00000000 00000000  1000 0 4 1 0 20 4 30 10 -1\n";
        assert_eq!(connection_signals(tcp).into_iter().collect::<Vec<_>>(), vec![SSH, VNC]);
        assert!(connection_signals("garbage\n\n").is_empty());
        // Listening alone is not a session.
        assert!(connection_signals("   0: 00000000:0016 00000000:0000 0A 0 0 0 0\n").is_empty());
    }

    #[test]
    fn a_busy_kernel_is_a_signal_and_idle_ones_are_not() {
        let kernels = serde_json::json!([{ "id": "a", "execution_state": "idle" }, { "id": "b", "execution_state": "busy" }]);
        assert!(any_kernel_busy(&kernels));
        assert!(!any_kernel_busy(&serde_json::json!([{ "id": "a", "execution_state": "idle" }])));
        assert!(!any_kernel_busy(&serde_json::json!({ "message": "Forbidden" })));
    }
}
