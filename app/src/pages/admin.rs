use leptos::prelude::*;

use super::{action_error, viewer_resource, Frame};
use crate::api::{get_workspaces_overview, list_users, AdminAction as AdminActionFn, AdminWorkspaceAction};
use super::usage::{sort_rows, GpuSection, SORT_KEYS};
use crate::figures::{bytes, cpu_text, rate, urlencode};
use crate::model::{AdminAction, UserSummary, WorkspaceState, WorkspacesOverview};

#[component]
pub fn AdminPage() -> impl IntoView {
    let viewer = viewer_resource();
    let act = ServerAction::<AdminActionFn>::new();
    let users = Resource::new(move || act.version().get(), |_| list_users());
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let user = viewer.await.ok().flatten();
                let is_admin = user.as_ref().is_some_and(|u| u.is_admin);
                let me = user.as_ref().map(|u| u.id);
                view! {
                    <Frame user=user>
                        <section class="card" id="admin">
                            <h1>"Users"</h1>
                            <p><a href="/admin/accounts" id="accounts-link">"Passwords, admins, deletion, limits, API tokens"</a>" · "<a href="/admin/audit" id="audit-link">"Audit log"</a></p>
                            {(!is_admin).then(|| view! { <p class="error">"Only administrators can see this page."</p> })}
                            {action_error(move || act.value().get())}
                            <Transition fallback=|| view! { <p class="muted">"Loading users…"</p> }>
                                {move || Suspend::new(async move {
                                    match users.await {
                                        Ok(list) => view! { <UsersTable users=list act=act me=me/> }.into_any(),
                                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                                    }
                                })}
                            </Transition>
                        </section>
                        {is_admin.then(|| view! { <WorkspacesSection/> <GpuSection/> })}
                    </Frame>
                }
            })}
        </Suspense>
    }
}

#[component]
fn UsersTable(users: Vec<UserSummary>, act: ServerAction<AdminActionFn>, me: Option<i64>) -> impl IntoView {
    let pending = users.iter().filter(|u| u.status == crate::model::AccountStatus::Pending).count();
    let rows = users
        .into_iter()
        .map(|user| {
            let is_me = Some(user.id) == me;
            let buttons = AdminAction::available(&user)
                .into_iter()
                // The server refuses self-lockout anyway; do not offer it.
                .filter(|a| !(is_me && matches!(a, AdminAction::Disable | AdminAction::Reject | AdminAction::RevokeAdmin)))
                .map(|action| {
                    view! {
                        <ActionForm action=act attr:class="inline">
                            <input type="hidden" name="user_id" value=user.id/>
                            <input type="hidden" name="action" value=action.as_str()/>
                            <button type="submit" class="small" data-action=action.as_str()>{action.label()}</button>
                        </ActionForm>
                    }
                })
                .collect_view();
            let status = user.status.as_str();
            view! {
                <tr data-user=user.username.clone()>
                    <td>{user.username.clone()}</td>
                    <td>{user.email.clone().unwrap_or_default()}</td>
                    <td><span class=format!("badge {status}") data-status=status>{status}</span></td>
                    <td>{if user.is_admin { "admin" } else { "" }}</td>
                    <td class="actions">{buttons}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="muted" id="pending-count">{format!("{pending} waiting for approval")}</p>
        <div class="table-wrap">
            <table class="users">
                <thead><tr><th>"User"</th><th>"E-mail"</th><th>"Status"</th><th>"Role"</th><th>"Actions"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}

#[component]
fn WorkspacesSection() -> impl IntoView {
    let act = ServerAction::<AdminWorkspaceAction>::new();
    let tick = super::ticker(3000);
    let overview = Resource::new(move || (tick.get(), act.version().get()), |_| get_workspaces_overview());
    let query = leptos_router::hooks::use_query_map();
    let sort = Memo::new(move |_| query.with(|q| q.get("sort")).unwrap_or_else(|| "owner".into()));
    view! {
        <section class="card" id="admin-workspaces">
            <h1>"Workspaces"</h1>
            {action_error(move || act.value().get())}
            <Transition fallback=|| view! { <p class="muted">"Asking Docker…"</p> }>
                {move || Suspend::new(async move {
                    match overview.await {
                        Ok(mut o) => {
                            let key = sort.get();
                            sort_rows(&mut o.rows, &key);
                            view! { <WorkspacesTable overview=o act=act sort=key/> }.into_any()
                        }
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn WorkspacesTable(overview: WorkspacesOverview, act: ServerAction<AdminWorkspaceAction>, sort: String) -> impl IntoView {
    let host = overview.host.clone();
    let banner = overview.engine_problem.map(|p| view! { <p class="banner" role="alert">"Docker engine not reachable: " {p}</p> });
    let isolation = overview.isolation.map(|i| match i.warning {
        Some(warning) => view! {
            <p class="banner" role="alert" id="isolation-banner" data-mode=i.mode.clone()>
                "Isolation: " {warning} ". Per-user GPU limits are "
                "not enforced in this mode (every GPU can be reached)."
                " See README, Isolation."
            </p>
        }
        .into_any(),
        None => view! {
            <p class="muted" id="isolation-banner" data-mode=i.mode.clone()>
                {format!("Isolation: {} · Docker inside: {}", i.mode, if i.docker_inside { "on" } else { "off" })}
            </p>
        }
        .into_any(),
    });
    let sorted_by = sort.clone();
    let header = move |key: &'static str| {
        let label = SORT_KEYS.iter().find(|(k, _)| *k == key).map_or(key, |(_, l)| *l);
        let class = if sorted_by == key { "sorted" } else { "" };
        view! { <th><a href=format!("/admin?sort={key}") class=class data-sort=key>{label}</a></th> }
    };
    let totals_cpu = if host.cpus > 0 { format!("{:.2} of {} cores", host.cpu_cores_used, host.cpus) } else { format!("{:.2} cores", host.cpu_cores_used) };
    let totals_memory = if host.memory_bytes > 0 {
        format!("{} of {}", bytes(host.memory_used_bytes), bytes(host.memory_bytes))
    } else {
        bytes(host.memory_used_bytes)
    };
    let totals_gpus = if host.gpus.is_empty() {
        host.gpu_note.clone().unwrap_or_default()
    } else {
        host.gpus
            .iter()
            .map(|g| format!("{}: {} %, {} / {}", g.index, g.utilization_percent, bytes(g.memory_used_bytes), bytes(g.memory_total_bytes)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let foreign = (!overview.foreign.is_empty()).then(|| {
        view! { <p class="muted">"Foreign containers using workspace names: " {overview.foreign.join(", ")}</p> }
    });
    // Made on the server: the page only lists them.
    let nodes = (!overview.nodes.is_empty()).then(|| {
        let lines = overview.nodes.iter().map(|line| view! { <li>{line.clone()}</li> }).collect_view();
        view! { <ul id="node-totals">{lines}</ul> }
    });
    let empty = overview.rows.is_empty().then(|| {
        view! { <tr><td colspan="10" class="muted">"No workspaces yet: they appear here when their users first start them."</td></tr> }
    });
    let rows = overview
        .rows
        .into_iter()
        .map(|row| {
            let state = row.state;
            let action = match state {
                WorkspaceState::Running => Some(("stop", "Stop")),
                WorkspaceState::Absent | WorkspaceState::Stopped | WorkspaceState::Error => Some(("start", "Start")),
                _ => None,
            };
            let owner = row.username.clone();
            let button = action.filter(|_| !row.orphan).map(move |(action, label)| {
                view! {
                    <ActionForm action=act attr:class="inline">
                        <input type="hidden" name="username" value=owner/>
                        <input type="hidden" name="action" value=action/>
                        <button type="submit" class="small" data-action=action>{label}</button>
                    </ActionForm>
                }
            });
            let usage = row.usage.clone();
            let limits = row.limits.clone();
            let cpu = usage.as_ref().map(|u| cpu_text(u.cpu_cores, limits.as_ref().map_or(0.0, |l| l.cpus), host.cpus)).unwrap_or_default();
            let memory = usage
                .as_ref()
                .map(|u| format!("{} / {}", bytes(u.memory_bytes), bytes(u.memory_limit_bytes)))
                .unwrap_or_default();
            let network = usage.as_ref().map(|u| format!("↓ {} ↑ {}", rate(u.net_rx_rate), rate(u.net_tx_rate))).unwrap_or_default();
            let disk = usage.as_ref().map(|u| format!("r {} w {}", rate(u.disk_read_rate), rate(u.disk_write_rate))).unwrap_or_default();
            let home = usage.as_ref().and_then(|u| u.home_bytes).map(bytes).unwrap_or_default();
            let gpus = usage
                .as_ref()
                .map(|u| {
                    u.gpus
                        .iter()
                        .map(|g| format!("{}: {} %, {}", g.gpu.index, g.gpu.utilization_percent, bytes(g.processes.iter().filter_map(|p| p.memory_bytes).sum())))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            let detail = format!("/admin/workspaces/{}", urlencode(&row.username));
            let mut ports = row.ports.map(|p| format!("ssh {} · vnc {} · rdp {}", p.ssh, p.vnc, p.rdp)).unwrap_or_default();
            if let Some(node) = &row.node {
                ports = format!("{ports} · on {node}");
            }
            view! {
                <tr data-workspace=row.username.clone()>
                    <td><a href=detail>{row.username.clone()}</a></td>
                    <td>
                        <span class=format!("badge {}", state.as_str()) data-state=state.as_str()>{state.as_str()}</span>
                        {row.drift.then(|| view! { " " <span class="badge pending">"drift"</span> })}
                        {row.orphan.then(|| view! { " " <span class="badge error">"orphan"</span> })}
                    </td>
                    <td>{ports}</td>
                    <td class="cpu">{cpu}</td>
                    <td class="memory">{memory}</td>
                    <td>{network}</td>
                    <td>{disk}</td>
                    <td>{home}</td>
                    <td>{gpus}</td>
                    <td class="actions">{button}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        {banner}
        {isolation}
        {foreign}
        {nodes}
        <div class="table-wrap">
            <table id="workspaces-table" data-sort=sort.clone()>
                <thead><tr>
                    {header("owner")}<th>"State"</th><th>"Ports"</th>{header("cpu")}{header("memory")}{header("network")}{header("disk")}{header("home")}<th>"GPUs"</th><th></th>
                </tr></thead>
                <tbody>{empty}{rows}</tbody>
                <tfoot><tr id="host-totals">
                    <th>"Host"</th><td></td><td></td>
                    <td>{totals_cpu}</td>
                    <td>{totals_memory}</td>
                    <td></td><td></td><td></td>
                    <td>{totals_gpus}</td><td></td>
                </tr></tfoot>
            </table>
        </div>
    }
}
