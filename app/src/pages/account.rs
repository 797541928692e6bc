use leptos::prelude::*;

use super::{action_error, Frame};
use crate::api::{LogIn, SignUp};

#[component]
pub fn LoginPage() -> impl IntoView {
    let log_in = ServerAction::<LogIn>::new();
    let query = leptos_router::hooks::use_query_map();
    let rd = move || query.read().get("rd").unwrap_or_default();
    view! {
        <Frame user=None>
            <section class="card narrow">
                <h1>"Log in"</h1>
                <ActionForm action=log_in attr:class="stack" attr:id="login-form">
                    <label>"Username"<input type="text" name="username" autocomplete="username" required/></label>
                    <label>"Password"<input type="password" name="password" autocomplete="current-password" required/></label>
                    <input type="hidden" name="rd" value=rd/>
                    {action_error(move || log_in.value().get())}
                    <button type="submit" class="primary">"Log in"</button>
                </ActionForm>
                <p class="muted">"No account yet? " <a href="/signup">"Sign up"</a></p>
            </section>
        </Frame>
    }
}

#[component]
pub fn SignUpPage() -> impl IntoView {
    let sign_up = ServerAction::<SignUp>::new();
    view! {
        <Frame user=None>
            <section class="card narrow">
                <h1>"Create an account"</h1>
                <p class="muted">"An administrator approves new accounts before the first login."</p>
                <ActionForm action=sign_up attr:class="stack" attr:id="signup-form">
                    <label>
                        "Username"
                        <input type="text" name="username" autocomplete="username" required
                            pattern="[a-z][a-z0-9\\-]{1,30}" title="2–31 characters: lowercase letters, digits and '-', starting with a letter"/>
                        <small>"Lowercase letters, digits and '-'; it becomes your workspace's name."</small>
                    </label>
                    <label>"E-mail"<input type="email" name="email" autocomplete="email" required/></label>
                    <label>
                        "Password"
                        <input type="password" name="password" autocomplete="new-password" minlength="12" required/>
                        <small>"At least 12 characters."</small>
                    </label>
                    {action_error(move || sign_up.value().get())}
                    <button type="submit" class="primary">"Sign up"</button>
                </ActionForm>
                <p class="muted">"Already have an account? " <a href="/login">"Log in"</a></p>
            </section>
        </Frame>
    }
}

#[component]
pub fn PendingPage() -> impl IntoView {
    view! {
        <Frame user=None>
            <section class="card narrow" id="pending">
                <h1>"Waiting for approval"</h1>
                <p>"Your account exists and is waiting for an administrator's approval."</p>
                <p>"Once it is approved you can " <a href="/login">"log in"</a> "."</p>
            </section>
        </Frame>
    }
}
