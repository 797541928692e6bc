mod account;
mod admin;
mod dashboard;
mod drawn;
mod sharing;
mod usage;

pub use account::{AuthErrorPage, LoginPage, PendingPage, SignUpPage, SsoUsernamePage};
pub use admin::AdminPage;
pub use dashboard::DashboardPage;
pub use sharing::SharingAdminPage;
pub use drawn::{AccountPage, AccountsAdminPage, AuditPage};
pub use usage::{LogsPage, WorkspaceDetailPage};

use leptos::prelude::*;

use crate::api::{get_viewer, LogOut};
use crate::error::AppError;
use crate::model::CurrentUser;

/// The landing page: the server's request layer sends visitors on to /login or /dashboard;
/// this is what a client-side navigation to "/" shows.
#[component]
pub fn Home() -> impl IntoView {
    view! {
        <Frame user=None>
            <section class="card">
                <h1>"Berth"</h1>
                <p>"Your own workspace on the lab's GPU server."</p>
                <p><a class="button" href="/login">"Log in"</a> " " <a href="/signup">"Create an account"</a></p>
            </section>
        </Frame>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
        options.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Frame user=None>
            <section class="card"><h1>"Not found"</h1><p><a href="/">"Back to Berth"</a></p></section>
        </Frame>
    }
}

/// Page chrome: the top bar with the user's name and the log-out button.
#[component]
pub fn Frame(user: Option<CurrentUser>, children: Children) -> impl IntoView {
    let log_out = ServerAction::<LogOut>::new();
    let nav = user.map(|user| {
        let admin_link = user.is_admin.then(|| view! { <a href="/admin">"Admin"</a> });
        view! {
            <nav class="topnav">
                <a href="/dashboard">"Dashboard"</a>
                {admin_link}
                <a class="who" href="/account" id="account-link">{user.username.clone()}</a>
                <ActionForm action=log_out attr:class="inline">
                    <button type="submit" class="link">"Log out"</button>
                </ActionForm>
            </nav>
        }
    });
    view! {
        <header class="topbar">
            <a class="brand" href="/">"⚓ Berth"</a>
            {nav}
        </header>
        <main class="content">{children()}</main>
    }
}

/// Shows the error of the last submission of an action, if it failed.
pub fn action_error(
    value: impl Fn() -> Option<Result<(), AppError>> + Send + Sync + 'static,
) -> impl IntoView {
    move || {
        value().and_then(|result| result.err()).map(|error| {
            view! { <p class="error" role="alert">{error.to_string()}</p> }
        })
    }
}

/// Re-runs the closure every `ms` milliseconds in the browser (never on the server).
pub fn ticker(ms: u64) -> RwSignal<u64> {
    let tick = RwSignal::new(0u64);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|t| *t += 1), std::time::Duration::from_millis(ms)) {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}

/// Loads the viewer for a page that needs one.
pub fn viewer_resource() -> Resource<Result<Option<CurrentUser>, AppError>> {
    Resource::new(|| (), |_| get_viewer())
}
