use leptos::prelude::*;

use super::{action_error, Frame};
use crate::figures::urlencode;
use crate::api::{login_options, LogIn, SignUp};

#[component]
pub fn LoginPage() -> impl IntoView {
    let log_in = ServerAction::<LogIn>::new();
    let query = leptos_router::hooks::use_query_map();
    let rd = move || query.read().get("rd").unwrap_or_default();
    let options = Resource::new(|| (), |_| login_options());
    view! {
        <Frame user=None>
            <section class="card narrow">
                <h1>"Log in"</h1>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let options = options.await.ok();
                        let providers = options.as_ref().map(|o| o.providers.clone()).unwrap_or_default();
                        let password = options.map(|o| o.password).unwrap_or(true);
                        let buttons = providers
                            .into_iter()
                            .map(|(id, name)| {
                                let href = format!("/auth/oidc/{id}/login?rd={}", urlencode(&rd()));
                                view! { <a class="button sso" href=href rel="external" data-provider=id>"Sign in with " {name}</a> }
                            })
                            .collect_view();
                        view! {
                            <div class="stack sso-buttons">{buttons}</div>
                            {(!password).then(|| view! { <style>"#login-form, #signup-hint { display: none; }"</style> })}
                        }
                    })}
                </Suspense>
                <ActionForm action=log_in attr:class="stack" attr:id="login-form">
                    <label>"Username"<input type="text" name="username" autocomplete="username" required/></label>
                    <label>"Password"<input type="password" name="password" autocomplete="current-password" required/></label>
                    <input type="hidden" name="rd" value=rd/>
                    {action_error(move || log_in.value().get())}
                    <button type="submit" class="primary">"Log in"</button>
                </ActionForm>
                <p class="muted" id="signup-hint">"No account yet? " <a href="/signup">"Sign up"</a></p>
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

/// Minimal percent-encoding for a query value.
/// Shown when single sign-on cannot finish; the reason is a fixed code, never provider text.
#[component]
pub fn AuthErrorPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let message = move || match query.read().get("reason").as_deref() {
        Some("provider-unreachable") => "The identity provider cannot be reached right now. Try again in a moment, or log in with your Berth password.",
        Some("state") => "This sign-in attempt expired or was tampered with. Please start again.",
        Some("denied") => "The identity provider did not allow the sign-in (consent denied or refused).",
        Some("code") => "The sign-in code was refused: it expired or was already used. Please start again.",
        Some("token") => "The identity provider's answer could not be verified (bad signature or claims).",
        Some("email-unverified") => "Your identity provider has not verified your e-mail address; Berth requires a verified one.",
        Some("disabled") => "This account is disabled.",
        Some("rejected") => "This account was not approved.",
        Some("unknown-provider") => "There is no such identity provider on this Berth.",
        _ => "Single sign-on did not finish. Please try again.",
    };
    view! {
        <Frame user=None>
            <section class="card narrow" id="auth-error">
                <h1>"Sign-in failed"</h1>
                <p class="error" role="alert">{message}</p>
                <p><a href="/login">"Back to the login page"</a></p>
            </section>
        </Frame>
    }
}

/// A new single sign-on user whose provider name is taken or invalid picks one here.
#[component]
pub fn SsoUsernamePage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let error = move || query.read().get("error").map(|e| match e.as_str() {
        "taken" => "That username is taken; pick another.",
        "unavailable" => "That username is not available; pick another.",
        "invalid" => "Usernames are 2–31 lowercase letters, digits or '-', starting with a letter, and not reserved.",
        _ => "Please start the sign-in again.",
    });
    view! {
        <Frame user=None>
            <section class="card narrow">
                <h1>"Choose your username"</h1>
                <p class="muted">"It becomes your workspace's name and cannot be changed later."</p>
                <form method="post" action="/auth/oidc/username" class="stack" id="sso-username-form">
                    <label>"Username"<input type="text" name="username" required pattern="[a-z][a-z0-9\\-]{1,30}"/></label>
                    {move || error().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                    <button type="submit" class="primary">"Continue"</button>
                </form>
            </section>
        </Frame>
    }
}
