//! Pages drawn on the server as plain HTML forms (`server/src/self_service.rs`): the account
//! page, the administrators' accounts page and the audit log. They work without JavaScript
//! and add one small server function to the browser's download.

use leptos::prelude::*;

use super::{viewer_resource, Frame};
use crate::api::get_page_html;

#[component]
fn DrawnPage(page: &'static str, title: &'static str) -> impl IntoView {
    let viewer = viewer_resource();
    let location = leptos_router::hooks::use_location();
    let html = Resource::new(move || location.search.get(), move |query| get_page_html(page.to_string(), query));
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let user = viewer.await.ok().flatten();
                let body = match html.await {
                    Ok(html) => view! { <div id=format!("{page}-page") inner_html=html></div> }.into_any(),
                    Err(e) => view! { <section class="card"><p class="error" role="alert">{e.to_string()}</p></section> }.into_any(),
                };
                let heading = (page != "account").then(|| view! {
                    <section class="card"><h1>{title}</h1><p><a href="/admin">"Back to the admin page"</a></p></section>
                });
                view! { <Frame user=user>{heading}{body}</Frame> }
            })}
        </Suspense>
    }
}

/// `/account`: password, sessions, SSH keys, API tokens.
#[component]
pub fn AccountPage() -> impl IntoView {
    view! { <DrawnPage page="account" title="Your account"/> }
}

/// `/admin/accounts`: reset, promote, delete, limits, everyone's tokens.
#[component]
pub fn AccountsAdminPage() -> impl IntoView {
    view! { <DrawnPage page="admin-accounts" title="Accounts"/> }
}

/// `/admin/audit`: who did what, filtered and paged.
#[component]
pub fn AuditPage() -> impl IntoView {
    view! { <DrawnPage page="audit" title="Audit log"/> }
}
