//! What a workspace uses: the usage card (drawn on the server, see `crate::figures`), the
//! admin table's sorting, the GPU board, a workspace's detail page for admins, and the logs page.

use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{viewer_resource, Frame};
use super::ticker;
use crate::api::{get_gpu_board_html, get_usage_html, get_workspace_log};
use crate::figures::urlencode;
use crate::model::WorkspaceRow;

/// A workspace's usage, refreshed every few seconds from Berth's samples (one engine stream
/// per workspace serves every open page). `user`: whose (admins), else the viewer's own.
#[component]
pub fn UsageSection(user: Option<String>) -> impl IntoView {
    let tick = ticker(5000);
    let hours = RwSignal::new(1u32);
    let who = user.clone();
    let panel = Resource::new(move || (tick.get(), hours.get()), move |(_, h)| get_usage_html(who.clone(), Some(h)));
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
                        Ok(html) => view! { <div class="usage-figures" inner_html=html></div> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
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

#[component]
pub fn GpuSection() -> impl IntoView {
    let tick = ticker(5000);
    let board = Resource::new(move || tick.get(), |_| get_gpu_board_html());
    view! {
        <section class="card" id="admin-gpus">
            <h1>"GPUs"</h1>
            <p><a href="/admin/sharing" id="sharing-link">"Claims, leases, the queue, limits and idle workspaces"</a></p>
            <Transition fallback=|| view! { <p class="muted">"Reading GPUs…"</p> }>
                {move || Suspend::new(async move {
                    match board.await {
                        Ok(html) => view! { <div inner_html=html></div> }.into_any(),
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
    // Why following stopped (the workspace stopped, the output could not be read).
    let ended: RwSignal<Option<String>> = RwSignal::new(None);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| follow_logs::follow(user(), search(), live, ended));
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
                            <p class="muted" id="log-status">{move || match (ended.get(), live.with(Option::is_some)) {
                                (Some(why), _) => format!("Not following: {why}. Reload to look again."),
                                (None, true) => "Following live.".to_string(),
                                (None, false) => "The last lines; following starts when the page is interactive.".to_string(),
                            }}</p>
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

    pub fn follow(user: Option<String>, search: String, live: RwSignal<Option<Vec<String>>>, ended: RwSignal<Option<String>>) {
        let mut url = String::from("/logs/stream?");
        if let Some(u) = &user {
            url.push_str(&format!("user={}&", crate::figures::urlencode(u)));
        }
        url.push_str(&format!("q={}", crate::figures::urlencode(&search)));
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
        // The server's last word (`end`: the workspace stopped; `failed`): stop, do not reconnect.
        let closing = source.clone();
        let on_last = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            closing.close();
            ended.set(Some(event.data().as_string().unwrap_or_else(|| "the stream ended".into())));
        });
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        let _ = source.add_event_listener_with_callback("line", on_line.as_ref().unchecked_ref());
        let _ = source.add_event_listener_with_callback("end", on_last.as_ref().unchecked_ref());
        let _ = source.add_event_listener_with_callback("failed", on_last.as_ref().unchecked_ref());
        // The closures live as long as the source they are registered on.
        let held = StoredValue::new_local((source, on_open, on_line, on_last));
        on_cleanup(move || {
            held.try_with_value(|(source, ..)| source.close());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{UsageNow, WorkspaceState};

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
            node: None,
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
