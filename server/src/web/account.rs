//! The account page's and the accounts admin page's form posts: carried out by
//! `self_service`, then back to the page with what happened (kept in the session, so no URL
//! can forge it), or a page of its own for a secret shown once.

use std::collections::HashMap;

use app::services::RequestIdentity;
use axum::extract::{Request, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use tower_sessions::Session;

use super::AppState;
use crate::self_service::{show_once_html, Done};

/// The session key the pages read the outcome from (`app::api::get_page_html`).
pub use app::services::SESSION_FORM_OUTCOME;

async fn keep_outcome(session: &Session, result: &Result<Done, app::error::AppError>) {
    let (ok, message) = match result {
        Ok(Done::Message(m)) => (true, m.clone()),
        Ok(Done::ShowOnce { .. }) => return,
        Err(e) => (false, e.to_string()),
    };
    let _ = session.insert(SESSION_FORM_OUTCOME, (ok, message, crate::db::now())).await;
}

fn respond(result: Result<Done, app::error::AppError>, back: &'static str) -> Response {
    match result {
        Ok(Done::ShowOnce { title, secret, note, back }) => {
            ([(axum::http::header::CACHE_CONTROL, "no-store")], Html(show_once_html(&title, &secret, &note, back))).into_response()
        }
        _ => Redirect::to(back).into_response(),
    }
}

fn identity(request: &Request) -> Option<RequestIdentity> {
    request.extensions().get::<RequestIdentity>().cloned()
}

async fn form(request: Request) -> Result<HashMap<String, String>, Response> {
    axum::Form::<HashMap<String, String>>::from_request(request, &())
        .await
        .map(|f| f.0)
        .map_err(|e| e.into_response())
}

use axum::extract::FromRequest as _;

pub(super) async fn account_form(State(state): State<AppState>, session: Session, request: Request) -> Response {
    let Some(RequestIdentity { user: Some(me), client }) = identity(&request) else {
        return Redirect::to("/login").into_response();
    };
    let stored = session.id().map(|id| crate::sessions::stored_id(&id.to_string()));
    let fields = match form(request).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let result = state.self_service.account_command(&me, client, stored.as_deref(), &fields).await;
    keep_outcome(&session, &result).await;
    respond(result, "/account")
}

pub(super) async fn admin_form(State(state): State<AppState>, session: Session, request: Request) -> Response {
    let Some(RequestIdentity { user: Some(admin), client }) = identity(&request) else {
        return Redirect::to("/login").into_response();
    };
    if !admin.is_admin {
        return (axum::http::StatusCode::FORBIDDEN, "Administrators only.\n").into_response();
    }
    let fields = match form(request).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let result = state.self_service.admin_command(&admin, client, &fields).await;
    keep_outcome(&session, &result).await;
    respond(result, "/admin/accounts")
}
