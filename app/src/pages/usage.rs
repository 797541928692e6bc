//! What a workspace uses, as figures and small history charts (server-rendered SVG: they show
//! without JavaScript, and nothing external loads), the admin's table and GPU board, and the
//! workspace logs page.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{viewer_resource, Frame};
use crate::api::{get_gpu_board, get_usage, get_workspace_log};
use crate::model::{GpuBoard, GpuView, UsagePanel, UsagePoint, WorkspaceRow, WorkspaceState};

const KIB: f64 = 1024.0;

/// "512 B", "1.5 KiB", "3.2 GiB".
pub fn bytes(n: u64) -> String {
    let mut value = n as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < KIB || unit == "TiB" {
            return if unit == "B" { format!("{n} B") } else { format!("{value:.1} {unit}") };
        }
        value /= KIB;
    }
    unreachable!()
}

/// A rate in bytes per second: "0 B/s", "1.5 MiB/s".
pub fn rate(per_second: f64) -> String {
    format!("{}/s", bytes(per_second.max(0.0).round() as u64))
}

/// Cores in use, and what share that is of the workspace's limit and of the host.
pub fn cpu_text(cores: f64, limit_cores: f64, host_cpus: u32) -> String {
    let mut text = format!("{cores:.2} cores");
    if limit_cores > 0.0 {
        text.push_str(&format!(" · {:.0} % of its limit", cores / limit_cores * 100.0));
    }
    if host_cpus > 0 {
        text.push_str(&format!(" · {:.1} % of the host", cores / f64::from(host_cpus) * 100.0));
    }
    text
}

/// The polyline of a chart `width`×`height`: x by time from `from` to `until`, y from 0 at the
/// bottom to `max` at the top (values above are drawn at the top).
pub fn chart_points(points: &[(i64, f64)], from: i64, until: i64, max: f64, width: f64, height: f64) -> String {
    let span = (until - from).max(1) as f64;
    let max = if max > 0.0 { max } else { 1.0 };
    points
        .iter()
        .filter(|(at, _)| *at >= from && *at <= until)
        .map(|(at, v)| {
            let x = (at - from) as f64 / span * width;
            let y = height - (v / max).clamp(0.0, 1.0) * height;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const CHART_W: f64 = 240.0;
const CHART_H: f64 = 48.0;

/// One small history chart. `data-points` and `data-last` say what it drew (for people reading
/// the page source, and for tests).
#[component]
fn Chart(points: Vec<(i64, f64)>, from: i64, until: i64, max: f64, #[prop(into)] label: String) -> impl IntoView {
    let polyline = chart_points(&points, from, until, max, CHART_W, CHART_H);
    let last = points.last().map(|(_, v)| format!("{v:.3}")).unwrap_or_default();
    view! {
        <svg class="chart" viewBox=format!("0 0 {CHART_W} {CHART_H}") preserveAspectRatio="none" role="img"
            aria-label=label data-points=points.len().to_string() data-last=last>
            <line class="axis" x1="0" y1="48" x2="240" y2="48"/>
            <polyline class="line" points=polyline/>
        </svg>
    }
}

/// A figure: its name, its value now, and its chart(s).
#[component]
fn Figure(id: &'static str, title: &'static str, #[prop(into)] now: String, children: Children) -> impl IntoView {
    view! {
        <figure class="figure" id=id>
            <figcaption>{title}</figcaption>
            <p class="value">{now}</p>
            {children()}
        </figure>
    }
}

fn series(history: &[UsagePoint], f: impl Fn(&UsagePoint) -> f64) -> Vec<(i64, f64)> {
    history.iter().map(|p| (p.at, f(p))).collect()
}

fn peak(points: &[(i64, f64)], floor: f64) -> f64 {
    points.iter().map(|(_, v)| *v).fold(floor, f64::max) * 1.1
}

/// Every figure of one workspace, with its charts.
#[component]
pub fn UsageFigures(panel: UsagePanel) -> impl IntoView {
    let UsagePanel { now, history, until, hours, limits, host_cpus, host_memory_bytes, gpu_note, state, .. } = panel;
    let from = until - i64::from(hours) * 3600;
    let Some(now) = now else {
        let why = if state == WorkspaceState::Running { "Measuring… the first figures come within seconds." } else { "Not running: nothing to measure." };
        return view! { <p class="muted" id="usage-idle">{why}</p> }.into_any();
    };
    let cpu = series(&history, |p| p.cpu_cores);
    let cpu_max = peak(&cpu, if limits.cpus > 0.0 { limits.cpus } else { 1.0 });
    let memory = series(&history, |p| p.memory_bytes as f64);
    let memory_limit = if now.memory_limit_bytes > 0 { now.memory_limit_bytes } else { limits.memory_limit_gib << 30 };
    let memory_max = peak(&memory, memory_limit as f64 / 1.1);
    let rx = series(&history, |p| p.net_rx_rate);
    let tx = series(&history, |p| p.net_tx_rate);
    let net_max = peak(&rx, peak(&tx, 1024.0));
    let read = series(&history, |p| p.disk_read_rate);
    let write = series(&history, |p| p.disk_write_rate);
    let disk_max = peak(&read, peak(&write, 1024.0));
    let memory_now = format!(
        "{} used · {} reserved · {} limit{}",
        bytes(now.memory_bytes),
        bytes(limits.memory_reservation_gib << 30),
        bytes(memory_limit),
        if host_memory_bytes > 0 { format!(" · host {}", bytes(host_memory_bytes)) } else { String::new() }
    );
    let sizes = format!(
        "home {} · container layer {}",
        now.home_bytes.map(bytes).unwrap_or_else(|| "not measured yet".into()),
        now.writable_layer_bytes.map(bytes).unwrap_or_else(|| "not measured yet".into())
    );
    let gpus = if now.gpus.is_empty() {
        let text = gpu_note.unwrap_or_else(|| "No GPU processes of this workspace.".into());
        view! { <p class="muted" id="usage-gpus-none">{text}</p> }.into_any()
    } else {
        now.gpus
            .iter()
            .map(|g| {
                let index = g.gpu.index;
                let on_gpu = |p: &UsagePoint| p.gpus.iter().find(|x| x.index == index).cloned();
                let util = series(&history, |p| on_gpu(p).map_or(0.0, |x| f64::from(x.utilization_percent)));
                let mem = series(&history, |p| on_gpu(p).map_or(0.0, |x| x.memory_bytes as f64));
                let temp = series(&history, |p| on_gpu(p).and_then(|x| x.temperature_celsius).map_or(0.0, f64::from));
                let own: u64 = g.processes.iter().filter_map(|p| p.memory_bytes).sum();
                let pids = g.processes.iter().map(|p| p.pid.to_string()).collect::<Vec<_>>().join(", ");
                let text = format!(
                    "{} % busy · {} of {} used ({} by this workspace) · {}",
                    g.gpu.utilization_percent,
                    bytes(g.gpu.memory_used_bytes),
                    bytes(g.gpu.memory_total_bytes),
                    bytes(own),
                    g.gpu.temperature_celsius.map(|t| format!("{t} °C")).unwrap_or_else(|| "temperature unknown".into())
                );
                view! {
                    <figure class="figure gpu" data-gpu=index.to_string()>
                        <figcaption>{format!("GPU {index}: {}", g.gpu.name)}</figcaption>
                        <p class="value">{text}</p>
                        <p class="muted">"Processes: " {pids}</p>
                        <Chart points=util from=from until=until max=100.0 label=format!("GPU {index} utilisation")/>
                        <Chart points=mem from=from until=until max=g.gpu.memory_total_bytes as f64 label=format!("GPU {index} memory")/>
                        <Chart points=temp from=from until=until max=100.0 label=format!("GPU {index} temperature")/>
                    </figure>
                }
            })
            .collect_view()
            .into_any()
    };
    view! {
        <div class="figures">
            <Figure id="usage-cpu" title="CPU" now=cpu_text(now.cpu_cores, limits.cpus, host_cpus)>
                <Chart points=cpu from=from until=until max=cpu_max label="CPU cores in use"/>
            </Figure>
            <Figure id="usage-memory" title="Memory" now=memory_now>
                <Chart points=memory from=from until=until max=memory_max label="memory in use"/>
            </Figure>
            <Figure id="usage-network" title="Network" now=format!("↓ {} · ↑ {}", rate(now.net_rx_rate), rate(now.net_tx_rate))>
                <Chart points=rx from=from until=until max=net_max label="received per second"/>
                <Chart points=tx from=from until=until max=net_max label="sent per second"/>
            </Figure>
            <Figure id="usage-disk" title="Disk" now=format!("read {} · write {}", rate(now.disk_read_rate), rate(now.disk_write_rate))>
                <Chart points=read from=from until=until max=disk_max label="read per second"/>
                <Chart points=write from=from until=until max=disk_max label="written per second"/>
            </Figure>
            <Figure id="usage-sizes" title="Storage" now=sizes>
                <span></span>
            </Figure>
        </div>
        <div class="figures" id="usage-gpus">{gpus}</div>
    }
    .into_any()
}

/// A workspace's usage, refreshed every few seconds from Berth's samples (one engine stream
/// per workspace serves every open page). `user`: whose (admins), else the viewer's own.
#[component]
pub fn UsageSection(user: Option<String>) -> impl IntoView {
    let tick = super::dashboard::ticker(5000);
    let hours = RwSignal::new(1u32);
    let who = user.clone();
    let panel = Resource::new(move || (tick.get(), hours.get()), move |(_, h)| get_usage(who.clone(), Some(h)));
    let logs = match &user {
        Some(u) => format!("/logs?user={}", urlencode(u)),
        None => "/logs".to_string(),
    };
    view! {
        <section class="card" id="usage">
            <h2>"Usage"</h2>
            <p class="muted">
                "Last " {move || if hours.get() == 1 { "hour".to_string() } else { format!("{} hours", hours.get()) }} " · "
                <button type="button" class="link" on:click=move |_| hours.set(1)>"1 h"</button> " "
                <button type="button" class="link" on:click=move |_| hours.set(24)>"24 h"</button> " "
                <button type="button" class="link" on:click=move |_| hours.set(168)>"7 days"</button> " · "
                <a href=logs id="logs-link">"Logs"</a>
            </p>
            <Transition fallback=|| view! { <p class="muted">"Loading usage…"</p> }>
                {move || Suspend::new(async move {
                    match panel.await {
                        Ok(panel) => view! { <UsageFigures panel=panel/> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The admin's table columns that sort, by their `?sort=` key.
pub const SORT_KEYS: &[(&str, &str)] =
    &[("owner", "Owner"), ("cpu", "CPU"), ("memory", "Memory"), ("network", "Network"), ("disk", "Disk"), ("home", "Home")];

/// Sorts the admin's rows by `key` (biggest use first; by owner for `owner` or an unknown key).
pub fn sort_rows(rows: &mut [WorkspaceRow], key: &str) {
    let figure = |row: &WorkspaceRow| -> f64 {
        let Some(u) = &row.usage else { return -1.0 };
        match key {
            "cpu" => u.cpu_cores,
            "memory" => u.memory_bytes as f64,
            "network" => u.net_rx_rate + u.net_tx_rate,
            "disk" => u.disk_read_rate + u.disk_write_rate,
            "home" => u.home_bytes.map_or(-1.0, |b| b as f64),
            _ => 0.0,
        }
    };
    if SORT_KEYS.iter().any(|(k, _)| *k == key && key != "owner") {
        rows.sort_by(|a, b| figure(b).total_cmp(&figure(a)).then_with(|| a.username.cmp(&b.username)));
    } else {
        rows.sort_by(|a, b| a.username.cmp(&b.username));
    }
}

/// The host's GPUs and whose processes are on them.
#[component]
pub fn GpuBoardView(board: GpuBoard) -> impl IntoView {
    if board.gpus.is_empty() {
        let note = board.note.unwrap_or_else(|| "no NVIDIA GPUs on this host".into());
        return view! { <p class="muted" id="gpu-board-none">{note}</p> }.into_any();
    }
    let rows = board.gpus.into_iter().map(|g: GpuView| {
        let users = g
            .processes
            .iter()
            .map(|p| {
                let who = p.user.clone().unwrap_or_else(|| "not a workspace".into());
                match p.memory_bytes {
                    Some(m) => format!("{who} (pid {}, {})", p.pid, bytes(m)),
                    None => format!("{who} (pid {})", p.pid),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        view! {
            <tr data-gpu=g.index.to_string()>
                <td>{g.index}</td>
                <td>{g.name.clone()}</td>
                <td>{format!("{} %", g.utilization_percent)}</td>
                <td>{format!("{} / {}", bytes(g.memory_used_bytes), bytes(g.memory_total_bytes))}</td>
                <td>{g.temperature_celsius.map(|t| format!("{t} °C")).unwrap_or_default()}</td>
                <td class="gpu-users">{if users.is_empty() { "idle".to_string() } else { users }}</td>
            </tr>
        }
    });
    view! {
        <div class="table-wrap">
            <table id="gpu-board">
                <thead><tr><th>"GPU"</th><th>"Model"</th><th>"Busy"</th><th>"Memory"</th><th>"Temp."</th><th>"Processes"</th></tr></thead>
                <tbody>{rows.collect_view()}</tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
pub fn GpuSection() -> impl IntoView {
    let tick = super::dashboard::ticker(5000);
    let board = Resource::new(move || tick.get(), |_| get_gpu_board());
    view! {
        <section class="card" id="admin-gpus">
            <h1>"GPUs"</h1>
            <Transition fallback=|| view! { <p class="muted">"Reading GPUs…"</p> }>
                {move || Suspend::new(async move {
                    match board.await {
                        Ok(board) => view! { <GpuBoardView board=board/> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// `/admin/workspaces/:user`: one workspace's usage, for an admin.
#[component]
pub fn WorkspaceDetailPage() -> impl IntoView {
    let params = use_params_map();
    let viewer = viewer_resource();
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let user = viewer.await.ok().flatten();
                let owner = params.with(|p| p.get("user")).unwrap_or_default();
                view! {
                    <Frame user=user>
                        <section class="card">
                            <h1 id="detail-owner">{format!("Workspace of {owner}")}</h1>
                            <p><a href="/admin">"Back to all workspaces"</a></p>
                        </section>
                        <UsageSection user=Some(owner)/>
                    </Frame>
                }
            })}
        </Suspense>
    }
}

/// The most lines the page keeps while following; older ones scroll away.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const MAX_SHOWN_LINES: usize = 5000;

/// `/logs?user=…&q=…`: a workspace's output, following it live, with a search and a download.
#[component]
pub fn LogsPage() -> impl IntoView {
    let query = use_query_map();
    let user = move || query.with(|q| q.get("user"));
    let search = move || query.with(|q| q.get("q")).unwrap_or_default();
    let viewer = viewer_resource();
    let first = Resource::new(move || (user(), search()), |(u, q)| get_workspace_log(u, Some(q)));
    // Once the live stream is open, its lines replace the first render's.
    let live: RwSignal<Option<Vec<String>>> = RwSignal::new(None);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| follow_logs::follow(user(), search(), live));
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let viewer_user = viewer.await.ok().flatten();
                let owner = user();
                let q = search();
                let title = match &owner {
                    Some(o) => format!("Logs of {o}'s workspace"),
                    None => "Your workspace's logs".to_string(),
                };
                let mut download = String::from("/logs/download?");
                if let Some(o) = &owner {
                    download.push_str(&format!("user={}&", urlencode(o)));
                }
                download.push_str(&format!("q={}", urlencode(&q)));
                let first_lines = first.await;
                view! {
                    <Frame user=viewer_user>
                        <section class="card" id="logs">
                            <h1>{title}</h1>
                            <form method="get" action="/logs" class="inline" id="log-search">
                                {owner.clone().map(|o| view! { <input type="hidden" name="user" value=o/> })}
                                <input type="search" name="q" value=q placeholder="Search the output" maxlength="200"/>
                                <button type="submit">"Search"</button>
                                " "
                                <a href=download id="log-download" download="">"Download"</a>
                            </form>
                            <p class="muted" id="log-status">{move || if live.get().is_some() { "Following live." } else { "The last lines; following starts when the page is interactive." }}</p>
                            {match first_lines {
                                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                                Ok(lines) => view! {
                                    <pre id="log-lines">{move || live.with(|l| match l {
                                        Some(streamed) => streamed.join("\n"),
                                        None => lines.join("\n"),
                                    })}</pre>
                                }.into_any(),
                            }}
                        </section>
                    </Frame>
                }
            })}
        </Suspense>
    }
}

/// The logs page's live stream: `/logs/stream` as an `EventSource`, each `line` event appended.
/// The browser reconnects by itself; a stream starts again from the last lines, so the shown
/// lines start over at each opening.
#[cfg(feature = "hydrate")]
mod follow_logs {
    use leptos::prelude::*;
    use leptos::wasm_bindgen::closure::Closure;
    use leptos::wasm_bindgen::JsCast;
    use web_sys::{Event, EventSource, MessageEvent};

    pub fn follow(user: Option<String>, search: String, live: RwSignal<Option<Vec<String>>>) {
        let mut url = String::from("/logs/stream?");
        if let Some(u) = &user {
            url.push_str(&format!("user={}&", super::urlencode(u)));
        }
        url.push_str(&format!("q={}", super::urlencode(&search)));
        let Ok(source) = EventSource::new(&url) else { return };
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| live.set(Some(Vec::new())));
        let on_line = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else { return };
            live.update(|lines| {
                let lines = lines.get_or_insert_with(Vec::new);
                lines.push(text);
                if lines.len() > super::MAX_SHOWN_LINES {
                    let extra = lines.len() - super::MAX_SHOWN_LINES;
                    lines.drain(..extra);
                }
            });
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        let _ = source.add_event_listener_with_callback("line", on_line.as_ref().unchecked_ref());
        // The closures live as long as the source they are registered on.
        let held = StoredValue::new_local((source, on_open, on_line));
        on_cleanup(move || {
            held.try_with_value(|(source, _, _)| source.close());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UsageNow;

    #[test]
    fn sizes_and_rates_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(rate(2_621_440.0), "2.5 MiB/s");
        assert_eq!(rate(-1.0), "0 B/s");
    }

    #[test]
    fn cpu_is_told_against_the_limit_and_the_host() {
        assert_eq!(cpu_text(1.0, 4.0, 16), "1.00 cores · 25 % of its limit · 6.2 % of the host");
        assert_eq!(cpu_text(0.5, 0.0, 0), "0.50 cores", "no limit, host size unknown");
    }

    #[test]
    fn chart_points_span_the_window_and_clamp_to_the_top() {
        // A 100-second window 200 wide and 50 high; max 2.
        let points = [(1000, 0.0), (1050, 1.0), (1100, 4.0), (900, 1.0)];
        assert_eq!(chart_points(&points, 1000, 1100, 2.0, 200.0, 50.0), "0.0,50.0 100.0,25.0 200.0,0.0");
        assert_eq!(chart_points(&[], 0, 10, 1.0, 10.0, 10.0), "");
    }

    #[test]
    fn the_admin_table_sorts_biggest_first() {
        let row = |name: &str, cores: Option<f64>| WorkspaceRow {
            username: name.into(),
            state: WorkspaceState::Running,
            ports: None,
            usage: cores.map(|c| UsageNow { cpu_cores: c, memory_bytes: (c * 10.0) as u64, ..Default::default() }),
            limits: None,
            drift: false,
            orphan: false,
        };
        let mut rows = vec![row("bob", Some(0.5)), row("alice", None), row("carol", Some(2.0))];
        sort_rows(&mut rows, "cpu");
        let names: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
        assert_eq!(names, ["carol", "bob", "alice"], "a stopped workspace sorts last");
        sort_rows(&mut rows, "owner");
        let names: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        sort_rows(&mut rows, "'; drop");
        let names: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"], "an unknown key sorts by owner");
    }
}
