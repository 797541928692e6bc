//! A workspace's output (`docker logs`: supervisord and its services) for its owner or an
//! admin: `GET /logs/stream` follows it as server-sent events (event `line`), from the last
//! [`STREAM_TAIL`] lines on; `GET /logs/download` sends the last [`DOWNLOAD_TAIL`] lines as a
//! file. Both pass lines through as the runtime gives them: nothing is held beyond a line.

use std::convert::Infallible;

use app::services::RequestIdentity;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::AppState;
use crate::workspace::runtime::LogRequest;
use crate::workspace::{Actor, Owner, WorkspaceError};

pub const LOG_STREAM: &str = "/logs/stream";
pub const LOG_DOWNLOAD: &str = "/logs/download";
/// Lines a follower starts with.
pub const STREAM_TAIL: usize = 500;
/// Lines a download holds at most.
pub const DOWNLOAD_TAIL: usize = 100_000;
/// The longest search text accepted.
const MAX_QUERY: usize = 200;

#[derive(serde::Deserialize)]
pub(super) struct LogQuery {
    /// Whose workspace (admins); the caller's own when absent.
    user: Option<String>,
    /// Only lines containing this (case-insensitive).
    q: Option<String>,
}

/// Whether `line` matches the search `needle` (already lower-cased; empty matches all).
pub fn matches(line: &str, needle: &str) -> bool {
    needle.is_empty() || line.to_lowercase().contains(needle)
}

/// Who asks (from the identity layer) and whose workspace: their own, or anyone's for an admin.
async fn resolve(state: &AppState, identity: Option<RequestIdentity>, query: &LogQuery) -> Result<(Actor, Owner), Response> {
    let Some(user) = identity.and_then(|i| i.user) else {
        return Err((StatusCode::UNAUTHORIZED, "Log in first.\n").into_response());
    };
    let actor = Actor::from(&user);
    let owner = match query.user.as_deref() {
        None => Owner::from(&user),
        Some(name) if name == user.username => Owner::from(&user),
        Some(_) if !user.is_admin => return Err((StatusCode::FORBIDDEN, "Only your own workspace.\n").into_response()),
        Some(name) => match state.accounts.find_by_name(name).await {
            Ok(account) => Owner::from(&account),
            Err(_) => return Err((StatusCode::NOT_FOUND, "No such user.\n").into_response()),
        },
    };
    Ok((actor, owner))
}

fn failure(error: WorkspaceError) -> Response {
    match error {
        WorkspaceError::Forbidden(_) => (StatusCode::FORBIDDEN, "Only your own workspace.\n").into_response(),
        WorkspaceError::Runtime(e) if e.status() == Some(404) => (StatusCode::NOT_FOUND, "This workspace does not exist yet.\n").into_response(),
        e => {
            tracing::warn!(error = %e, "workspace logs unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "The workspace's output cannot be read right now.\n").into_response()
        }
    }
}

fn needle(query: &LogQuery) -> Result<String, Response> {
    let q = query.q.as_deref().unwrap_or_default().trim();
    if q.len() > MAX_QUERY {
        return Err((StatusCode::BAD_REQUEST, "The search text is too long.\n").into_response());
    }
    Ok(q.to_lowercase())
}

pub(super) async fn log_stream(State(state): State<AppState>, Query(query): Query<LogQuery>, request: Request) -> Response {
    let identity = request.extensions().get::<RequestIdentity>().cloned();
    drop(request);
    let (actor, owner) = match resolve(&state, identity, &query).await {
        Ok(who) => who,
        Err(response) => return response,
    };
    let needle = match needle(&query) {
        Ok(n) => n,
        Err(response) => return response,
    };
    let lines = match state.workspaces.logs(&actor, &owner, LogRequest { tail: STREAM_TAIL, follow: true }).await {
        Ok(lines) => lines,
        Err(e) => return failure(e),
    };
    let mut stopping = state.stopping.clone();
    let events = lines
        .take_until(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .filter_map(move |line| {
            let event = match line {
                Ok(line) if matches(&line, &needle) => Some(Event::default().event("line").data(line.replace('\r', ""))),
                Ok(_) => None,
                Err(e) => Some(Event::default().event("failed").data(e.to_string())),
            };
            std::future::ready(event.map(Ok::<_, Infallible>))
        });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

pub(super) async fn log_download(State(state): State<AppState>, Query(query): Query<LogQuery>, request: Request) -> Response {
    let identity = request.extensions().get::<RequestIdentity>().cloned();
    drop(request);
    let (actor, owner) = match resolve(&state, identity, &query).await {
        Ok(who) => who,
        Err(response) => return response,
    };
    let needle = match needle(&query) {
        Ok(n) => n,
        Err(response) => return response,
    };
    let lines = match state.workspaces.logs(&actor, &owner, LogRequest { tail: DOWNLOAD_TAIL, follow: false }).await {
        Ok(lines) => lines,
        Err(e) => return failure(e),
    };
    let body = lines.filter_map(move |line| {
        std::future::ready(match line {
            Ok(line) if matches(&line, &needle) => Some(Ok::<_, std::io::Error>(format!("{line}\n"))),
            Ok(_) => None,
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        })
    });
    let file = format!("attachment; filename=\"workspace-{}.log\"", owner.username);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, file), (header::CACHE_CONTROL, "no-store".into())],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn search_is_a_case_insensitive_substring() {
        assert!(matches("INFO success: sshd entered RUNNING state", "running"));
        assert!(matches("anything", ""));
        assert!(!matches("jupyterlab exited", "sshd"));
    }
}
