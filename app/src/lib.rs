#![recursion_limit = "256"]
//! Berth's user interface: Leptos components, the DTOs they show and the server functions
//! they call. Domain logic lives in `server`, reached through [`services::PortalServices`].

pub mod api;
pub mod error;
pub mod figures;
pub mod model;
mod pages;
#[cfg(feature = "ssr")]
pub mod services;
#[cfg(feature = "ssr")]
pub mod sharing_html;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::SsrMode;
use leptos_router::path;

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                // Both name the site build's content-hashed files (`hash.txt`, see
                // server/src/web_static.rs) when the server found them.
                <HashedStylesheet options=options.clone() id="leptos"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Runs in the browser only: tells people (and browser tests) the page is interactive.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Title text="Berth"/>
        <Router>
            <Routes fallback=pages::NotFound>
                <Route path=path!("/") view=pages::Home ssr=SsrMode::Async/>
                <Route path=path!("/login") view=pages::LoginPage ssr=SsrMode::Async/>
                <Route path=path!("/signup") view=pages::SignUpPage ssr=SsrMode::Async/>
                <Route path=path!("/pending") view=pages::PendingPage ssr=SsrMode::Async/>
                <Route path=path!("/dashboard") view=pages::DashboardPage ssr=SsrMode::Async/>
                <Route path=path!("/admin") view=pages::AdminPage ssr=SsrMode::Async/>
                <Route path=path!("/admin/workspaces/:user") view=pages::WorkspaceDetailPage ssr=SsrMode::Async/>
                <Route path=path!("/logs") view=pages::LogsPage ssr=SsrMode::Async/>
                <Route path=path!("/admin/sharing") view=pages::SharingAdminPage ssr=SsrMode::Async/>
                <Route path=path!("/admin/accounts") view=pages::AccountsAdminPage ssr=SsrMode::Async/>
                <Route path=path!("/admin/audit") view=pages::AuditPage ssr=SsrMode::Async/>
                <Route path=path!("/account") view=pages::AccountPage ssr=SsrMode::Async/>
                <Route path=path!("/auth/error") view=pages::AuthErrorPage ssr=SsrMode::Async/>
                <Route path=path!("/sso/username") view=pages::SsoUsernamePage ssr=SsrMode::Async/>
            </Routes>
        </Router>
    }
}
