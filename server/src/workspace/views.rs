//! What the dashboard card and the admin overview show, read from the live picture of the
//! runtime (or from the runtime itself when nobody follows its events), the stored records and
//! the progress board.

use std::collections::HashMap;

use app::model::{LimitsView, PortsView, WorkspaceRow, WorkspaceState, WorkspaceView, WorkspacesOverview};

use super::names::workspace_name;
use super::services;
use super::runtime::{Capabilities, LogRequest, Observed, RuntimeError, RuntimeStatus};
use super::service::{Actor, Owner, WorkspaceError, Workspaces};
use super::spec::{PortBlock, ResourceOverrides};
use crate::db::now;
use crate::hosts::App;

/// Lines a logs page starts with, and a follower's first lines.
pub const LOG_PAGE_TAIL: usize = 500;

/// Whether a workspace's output line matches a search (`needle` lower-cased; empty matches all).
pub fn log_line_matches(line: &str, needle: &str) -> bool {
    needle.is_empty() || line.to_lowercase().contains(needle)
}

/// The portal path that opens the noVNC desktop with its password handed over.
pub const NOVNC_LAUNCH: &str = "/desktop/novnc";

impl Workspaces {
    /// The owner's workspace as the runtime has it: from the live picture when it is followed,
    /// else asked (and remembered).
    async fn observe_owner(&self, username: &str) -> Result<Option<Observed>, RuntimeError> {
        if self.live.following() {
            return Ok(self.live.get(username));
        }
        let observed = self.runtime.observe(&workspace_name(username)).await;
        if let Ok(o) = &observed {
            self.live.update(username, o.clone());
        }
        observed
    }

    /// Every workspace Berth made, from the live picture or a listing.
    pub(super) async fn observe_all(&self) -> Result<Vec<Observed>, RuntimeError> {
        if self.live.following() {
            return Ok(self.live.snapshot());
        }
        let listed = self.runtime.list().await?;
        self.live.replace_all(listed.clone());
        Ok(listed)
    }

    /// When the owner's running workspace last started: from the live picture, or asked of the
    /// runtime when the picture came from a listing, which does not say (the command line's).
    pub async fn started_at(&self, owner: &str) -> Option<i64> {
        let seen = self.live.get(owner)?;
        if seen.status != RuntimeStatus::Running {
            return None;
        }
        match seen.started_at {
            Some(at) => Some(at),
            None => self.runtime.observe(&workspace_name(owner)).await.ok().flatten().and_then(|o| o.started_at),
        }
    }

    /// Owners whose workspaces run now (from the live picture when it is followed).
    pub async fn running_owners(&self) -> Result<Vec<String>, RuntimeError> {
        let all = self.observe_all().await;
        self.note_runtime(&all);
        Ok(all?.into_iter().filter(|o| o.status == RuntimeStatus::Running).filter_map(|o| o.owner).collect())
    }

    /// The owner's limits as the card shows them (defaults for a user without a record).
    pub async fn limits_of(&self, owner: &Owner) -> Result<LimitsView, WorkspaceError> {
        let record = self.record(owner).await?;
        let overrides = record.map(|r| r.overrides).unwrap_or_default();
        let server = self.capabilities().await.ok();
        Ok(self.limits(&overrides, server))
    }

    /// The owner's workspace output (see `LogRequest`), for the owner or an admin.
    pub async fn logs(
        &self,
        actor: &Actor,
        owner: &Owner,
        request: LogRequest,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<String, RuntimeError>>, WorkspaceError> {
        actor.may_watch(owner)?;
        Ok(self.runtime.logs(&workspace_name(&owner.username), request).await?)
    }

    fn ports_view(&self, slot: u32) -> Option<PortsView> {
        let p = PortBlock::for_slot(slot, &self.settings.ports).ok()?;
        Some(PortsView {
            ssh: p.ssh,
            vnc: p.vnc,
            rdp: p.rdp,
            novnc: p.novnc,
            code: p.code,
            jupyter: p.jupyter,
            tensorboard: p.tensorboard,
            vnc_public: self.settings.ports.public.iter().any(|s| s == "vnc"),
            rdp_public: self.settings.ports.public.iter().any(|s| s == "rdp"),
            web_published: self.settings.ports.publish_web,
        })
    }

    /// `server`: what the runtime offers, when known.
    fn limits(&self, o: &ResourceOverrides, server: Option<&Capabilities>) -> LimitsView {
        let d = &self.settings.defaults;
        let gpus = o.gpus.clone().unwrap_or_else(|| d.gpus.clone());
        let swap_gib = o.swap_gib.unwrap_or(d.swap_gib);
        LimitsView {
            memory_reservation_gib: o.memory_reservation_gib.unwrap_or(d.memory_reservation_gib),
            memory_limit_gib: o.memory_limit_gib.unwrap_or(d.memory_limit_gib),
            swap_gib,
            swap_summary: swap_summary(swap_gib, server.map(|c| c.swap_limit)),
            cpus: o.cpus.unwrap_or(d.cpus),
            gpus_summary: gpus_summary(&gpus, server.map(|c| c.gpus)),
            gpus,
        }
    }

    /// The owner's workspace card.
    pub async fn view(&self, actor: &Actor, owner: &Owner) -> Result<WorkspaceView, WorkspaceError> {
        actor.may_operate(owner)?;
        let username = owner.username.as_str();
        let record = self.record(owner).await?;
        let observed = self.observe_owner(username).await;
        self.note_runtime(&observed);
        let progress = self.progress.get(username);
        let (state, started_at, drift) = match &observed {
            Ok(o) => {
                // The runtime answers: the mode can be known (the card says what it allows).
                self.isolation().await?;
                let expected = match &record {
                    Some(r) => Some(self.plan_for(username, r).await?.hash()),
                    None => None,
                };
                let drift = match (o, &expected) {
                    (Some(o), Some(expected)) => o.plan_hash.as_ref() != Some(expected),
                    _ => false,
                };
                let state = o.as_ref().map_or(WorkspaceState::Absent, |o| o.status.workspace_state());
                (state, o.as_ref().and_then(|o| o.started_at), drift)
            }
            Err(_) => (WorkspaceState::Error, None, false),
        };
        let state = progress.busy.unwrap_or(state);
        let guacamole = self.links.guacamole && record.is_some();
        // `auto` GPUs and the swap limit depend on the server: asked of the runtime once
        // (cached), and only while it answers.
        let overrides = record.as_ref().map(|r| r.overrides.clone()).unwrap_or_default();
        let server = if observed.is_ok() { self.capabilities().await.ok() } else { None };
        let node = observed.as_ref().ok().and_then(|o| o.as_ref()).and_then(|o| o.node.clone());
        Ok(WorkspaceView {
            username: username.to_string(),
            state,
            ports: record.as_ref().and_then(|r| self.ports_view(r.slot)),
            ssh_host: ssh_host_for(node.as_ref().map(|n| n.address.as_str()), &self.ssh_host),
            node: node.map(|n| n.hostname),
            uptime_seconds: if state == WorkspaceState::Running { started_at.map(|t| (now() - t).max(0)) } else { None },
            limits: self.limits(&overrides, server),
            steps: progress.steps,
            error: progress.error,
            drift,
            engine_problem: observed.err().map(|e| e.to_string()),
            apps: self.app_links(username),
            // No operation under way, the container runs, and every installed service answered
            // after this start.
            ready: state == WorkspaceState::Running && self.services.ready(username),
            guacamole,
            isolation: self.isolation_view(),
        })
    }

    fn app_links(&self, username: &str) -> Vec<app::model::AppLink> {
        if self.routes.is_none() && !self.links.gateway {
            return Vec::new();
        }
        let l = &self.links;
        let port = l.port.map(|p| format!(":{p}")).unwrap_or_default();
        let installed = self.services.installed(username);
        App::ALL
            .iter()
            .filter(|app| services::app_installed(**app, installed.as_deref()))
            .map(|app| {
                let host = l.hosts.host(*app, username, &l.domain);
                let (label, url) = match app {
                    App::Code => ("VS Code", format!("{}://{host}{port}/", l.scheme)),
                    App::Jupyter => ("Jupyter", format!("{}://{host}{port}/lab", l.scheme)),
                    App::TensorBoard => ("TensorBoard", format!("{}://{host}{port}/", l.scheme)),
                    // Through the portal, which hands noVNC the VNC password (see `novnc_url`).
                    App::Desktop => ("Desktop (noVNC)", NOVNC_LAUNCH.to_string()),
                };
                app::model::AppLink { key: app.key().into(), label: label.into(), url }
            })
            .collect()
    }

    /// The noVNC page of the owner's desktop, connecting by itself: the VNC password rides in
    /// the URL's fragment, which browsers never send to a server (so no proxy or log sees it)
    /// and noVNC reads like a query parameter.
    pub async fn novnc_url(&self, actor: &Actor, owner: &Owner) -> Result<Option<String>, WorkspaceError> {
        let Some(credentials) = self.credentials(actor, owner).await? else { return Ok(None) };
        let l = &self.links;
        let port = l.port.map(|p| format!(":{p}")).unwrap_or_default();
        let host = l.hosts.host(App::Desktop, &owner.username, &l.domain);
        Ok(Some(format!(
            "{}://{host}{port}/vnc.html?autoconnect=1&resize=remote&path=websockify#password={}",
            l.scheme,
            urlencoding::encode(&credentials.vnc_password)
        )))
    }

    /// Every workspace on the runtime plus every user with a record, for admins. One query for
    /// the records, one listing (or none, when the live picture is followed).
    pub async fn overview(&self, actor: &Actor) -> Result<WorkspacesOverview, WorkspaceError> {
        actor.may_administer()?;
        let listed = self.observe_all().await;
        self.note_runtime(&listed);
        let observed = match listed {
            Ok(o) => o,
            Err(RuntimeError::Unavailable(why)) => {
                return Ok(WorkspacesOverview {
                    rows: Vec::new(),
                    foreign: Vec::new(),
                    engine_problem: Some(why),
                    isolation: self.isolation_view(),
                    host: Default::default(),
                    nodes: Vec::new(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let records: HashMap<String, super::records::OwnedRecord> =
            self.records.all().await?.into_iter().map(|r| (r.username.clone(), r)).collect();

        // Known by now unless no workspace exists yet; cached after the first answer.
        let server = self.capabilities().await.ok();
        let mut rows = Vec::new();
        for o in &observed {
            let Some(owner) = o.owner.clone() else { continue };
            let record = records.get(&owner);
            let expected = match record {
                Some(r) => Some(self.plan_for(&owner, &r.record).await?.hash()),
                None => None,
            };
            rows.push(WorkspaceRow {
                username: owner.clone(),
                state: self.progress.busy(&owner).unwrap_or(o.status.workspace_state()),
                ports: record.and_then(|r| self.ports_view(r.record.slot)),
                usage: None,
                limits: record.map(|r| self.limits(&r.record.overrides, server)),
                drift: expected.is_some() && o.plan_hash != expected,
                orphan: expected.is_none(),
                node: o.node.as_ref().map(|n| n.hostname.clone()),
            });
        }
        for (owner, r) in &records {
            if !observed.iter().any(|o| o.owner.as_deref() == Some(owner)) {
                rows.push(WorkspaceRow {
                    username: owner.clone(),
                    state: WorkspaceState::Absent,
                    ports: self.ports_view(r.record.slot),
                    usage: None,
                    limits: Some(self.limits(&r.record.overrides, server)),
                    drift: false,
                    orphan: false,
                    node: None,
                });
            }
        }
        rows.sort_by(|a, b| a.username.cmp(&b.username));
        let foreign = self.runtime.list_foreign().await?;
        // Known by now (the rows' drift needed it) unless no workspace exists yet.
        let _ = self.isolation().await;
        let nodes = self.node_totals(&observed, &records).await?;
        Ok(WorkspacesOverview { rows, foreign, engine_problem: None, isolation: self.isolation_view(), host: Default::default(), nodes })
    }

    /// One line per node of a cluster (none on one machine): what runs there and what it holds.
    async fn node_totals(&self, observed: &[Observed], records: &HashMap<String, super::records::OwnedRecord>) -> Result<Vec<String>, WorkspaceError> {
        let nodes = self.runtime.nodes().await?;
        let d = &self.settings.defaults;
        Ok(nodes
            .iter()
            .map(|node| {
                let running: Vec<&Observed> =
                    observed.iter().filter(|o| o.status.is_up() && o.node.as_ref().is_some_and(|n| n.hostname == node.hostname)).collect();
                let reserved_gib = running
                    .iter()
                    .filter_map(|o| records.get(o.owner.as_deref()?))
                    .map(|r| r.record.overrides.memory_reservation_gib.unwrap_or(d.memory_reservation_gib))
                    .sum();
                node_summary(node, running.len(), reserved_gib)
            })
            .collect())
    }
}

/// The host in the card's SSH command: the address of the node that runs the workspace, unless
/// it says nothing a user could reach (loopback, 0.0.0.0: a single-node swarm on loopback, a
/// manager that listens everywhere); then the configured `ssh_host`. Pure.
pub fn ssh_host_for(node_address: Option<&str>, configured: &str) -> String {
    match node_address {
        Some(address) if !address.is_empty() && !address.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified()) => {
            address.to_string()
        }
        _ => configured.to_string(),
    }
}

/// A node's line on the admin page and in `berth node list`. Pure.
pub fn node_summary(node: &super::runtime::NodeView, running: usize, reserved_gib: u64) -> String {
    let state = match (node.ready, node.active) {
        (true, true) => String::new(),
        (false, _) => " (down)".into(),
        (true, false) => " (drained)".into(),
    };
    let gpus = if node.gpus > 0 { format!(", {} GPUs", node.gpus) } else { String::new() };
    format!(
        "{}{state}: {running} running, {} homes, {reserved_gib} of {} GiB reserved{gpus}",
        node.hostname,
        node.homes.len(),
        node.memory_bytes >> 30
    )
}

/// What the card says about GPUs: `auto` is resolved against the server, so a CPU-only one
/// says so instead of a bare "none".
fn gpus_summary(setting: &str, server_gpus: Option<bool>) -> String {
    match (setting, server_gpus) {
        ("auto", Some(false)) => "no GPUs on this server".into(),
        ("auto", Some(true)) => "GPUs: all".into(),
        (other, _) => format!("GPUs: {other}"),
    }
}

/// What the card says about swap: `server_swap_limit` is whether the kernel accounts swap per
/// container (unknown until the runtime answers).
fn swap_summary(swap_gib: u64, server_swap_limit: Option<bool>) -> String {
    match server_swap_limit {
        Some(false) => "swap not limited on this server".into(),
        _ => format!("swap {swap_gib} GiB"),
    }
}

#[cfg(test)]
mod tests {
    use super::{gpus_summary, node_summary, ssh_host_for, swap_summary};
    use crate::workspace::runtime::NodeView;

    #[test]
    fn the_ssh_command_names_the_node_users_can_reach() {
        assert_eq!(ssh_host_for(Some("10.0.0.12"), "berth.lab.example.org"), "10.0.0.12");
        assert_eq!(ssh_host_for(Some("gpu-2.lab"), "berth.lab.example.org"), "gpu-2.lab");
        assert_eq!(ssh_host_for(Some("127.0.0.1"), "berth.lab.example.org"), "berth.lab.example.org");
        assert_eq!(ssh_host_for(Some("0.0.0.0"), "berth.lab.example.org"), "berth.lab.example.org");
        assert_eq!(ssh_host_for(None, "berth.lab.example.org"), "berth.lab.example.org", "one engine: as configured");
    }

    #[test]
    fn a_nodes_line_says_what_runs_there_and_what_it_holds() {
        let mut node = NodeView {
            id: "n1".into(),
            hostname: "gpu-1".into(),
            address: "10.0.0.11".into(),
            ready: true,
            active: true,
            cpus: 32,
            memory_bytes: 256 << 30,
            gpus: 4,
            homes: vec!["ann".into(), "bo".into(), "cy".into()],
        };
        assert_eq!(node_summary(&node, 2, 64), "gpu-1: 2 running, 3 homes, 64 of 256 GiB reserved, 4 GPUs");
        node.active = false;
        node.gpus = 0;
        assert_eq!(node_summary(&node, 0, 0), "gpu-1 (drained): 0 running, 3 homes, 0 of 256 GiB reserved");
        node.ready = false;
        assert!(node_summary(&node, 0, 0).starts_with("gpu-1 (down):"));
    }

    #[test]
    fn the_card_says_when_the_server_cannot_limit_swap() {
        assert_eq!(swap_summary(50, Some(true)), "swap 50 GiB");
        assert_eq!(swap_summary(0, None), "swap 0 GiB", "the engine was not asked yet");
        assert_eq!(swap_summary(50, Some(false)), "swap not limited on this server");
    }

    #[test]
    fn the_card_says_there_are_no_gpus_when_auto_finds_none() {
        assert_eq!(gpus_summary("auto", Some(false)), "no GPUs on this server");
        assert_eq!(gpus_summary("auto", Some(true)), "GPUs: all");
        assert_eq!(gpus_summary("auto", None), "GPUs: auto", "the engine was not asked yet");
        assert_eq!(gpus_summary("none", Some(false)), "GPUs: none", "asked for none: not the server's doing");
        assert_eq!(gpus_summary("0,2", Some(true)), "GPUs: 0,2");
    }
}
