use leptos::prelude::*;

use super::{viewer_resource, Frame};

#[component]
pub fn DashboardPage() -> impl IntoView {
    let viewer = viewer_resource();
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match viewer.await {
                    Ok(Some(user)) => {
                        let name = user.username.clone();
                        view! {
                            <Frame user=Some(user)>
                                <section class="card" id="dashboard">
                                    <h1 id="greeting">"Hello, " {name} "!"</h1>
                                    <p class="muted">"This is your Berth dashboard."</p>
                                </section>
                            </Frame>
                        }.into_any()
                    }
                    _ => view! {
                        <Frame user=None>
                            <section class="card narrow"><p>"Please " <a href="/login">"log in"</a> "."</p></section>
                        </Frame>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}
