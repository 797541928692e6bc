//! GPU sharing and idle state: the dashboard's section (the board refreshes itself; the form
//! is drawn once) and the admin's page. Both are drawn on the server (`crate::sharing_html`).

use leptos::prelude::*;

use super::{ticker, viewer_resource, Frame};
use crate::api::{get_gpu_controls_html, get_gpu_share_html, get_sharing_admin_html};

#[component]
pub fn SharingSection() -> impl IntoView {
    let tick = ticker(5000);
    let board = Resource::new(move || tick.get(), |_| get_gpu_share_html());
    let controls = Resource::new(|| (), |_| get_gpu_controls_html());
    view! {
        <section class="card" id="gpus">
            <h2>"GPUs"</h2>
            <Transition fallback=|| view! { <p class="muted">"Reading GPUs…"</p> }>
                {move || Suspend::new(async move {
                    match board.await {
                        Ok(html) => view! { <div id="gpu-board" inner_html=html></div> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    controls.await.ok().map(|html| view! { <div id="gpu-controls" inner_html=html></div> })
                })}
            </Suspense>
        </section>
    }
}

/// `/admin/sharing`: the board with revoke and reorder, limits, idle policy, the record.
#[component]
pub fn SharingAdminPage() -> impl IntoView {
    let viewer = viewer_resource();
    let page = Resource::new(|| (), |_| get_sharing_admin_html());
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let user = viewer.await.ok().flatten();
                let body = match page.await {
                    Ok(html) => view! { <div inner_html=html></div> }.into_any(),
                    Err(e) => view! { <section class="card"><p class="error">{e.to_string()}</p></section> }.into_any(),
                };
                view! {
                    <Frame user=user>
                        <section class="card"><h1>"GPU sharing and idle workspaces"</h1><p><a href="/admin">"Back to the admin page"</a></p></section>
                        {body}
                    </Frame>
                }
            })}
        </Suspense>
    }
}
