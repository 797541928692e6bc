use leptos::prelude::*;

use super::{action_error, viewer_resource, Frame};
use crate::api::{list_users, AdminAction as AdminActionFn};
use crate::model::{AdminAction, UserSummary};

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
                view! {
                    <Frame user=user>
                        <section class="card" id="admin">
                            <h1>"Users"</h1>
                            {(!is_admin).then(|| view! { <p class="error">"Only administrators can see this page."</p> })}
                            {action_error(move || act.value().get())}
                            <Transition fallback=|| view! { <p class="muted">"Loading users…"</p> }>
                                {move || Suspend::new(async move {
                                    match users.await {
                                        Ok(list) => view! { <UsersTable users=list act=act/> }.into_any(),
                                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                                    }
                                })}
                            </Transition>
                        </section>
                    </Frame>
                }
            })}
        </Suspense>
    }
}

#[component]
fn UsersTable(users: Vec<UserSummary>, act: ServerAction<AdminActionFn>) -> impl IntoView {
    let pending = users.iter().filter(|u| u.status == crate::model::AccountStatus::Pending).count();
    let rows = users
        .into_iter()
        .map(|user| {
            let buttons = AdminAction::available(&user)
                .into_iter()
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
