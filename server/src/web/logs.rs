//! A workspace's output (`docker logs`: supervisord and its services) for its owner or an
//! admin: `GET /logs/stream` follows it as server-sent events (event `line`), from the last
//! `LOG_PAGE_TAIL` lines on; `GET /logs/download` sends the last [`DOWNLOAD_TAIL`] lines as a
//! file. Both pass lines through as the runtime gives them: nothing is held beyond a line.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::services::RequestIdentity;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::AppState;
use crate::workspace::runtime::{LogRequest, RuntimeError};
use crate::workspace::{log_line_matches, Actor, Owner, WorkspaceError, LOG_PAGE_TAIL};

pub const LOG_STREAM: &str = "/logs/stream";
pub const LOG_DOWNLOAD: &str = "/logs/download";
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

/// What a logs request asks: the caller, whose workspace, and the search (lower-cased); or
/// the answer that refuses it.
struct Asked {
    actor: Actor,
    /// The caller's own username (whose count of open streams it is).
    caller: String,
    owner: Owner,
    needle: String,
}

async fn asked(state: &AppState, query: &LogQuery, request: Request) -> Result<Asked, Response> {
    let identity = request.extensions().get::<RequestIdentity>().cloned();
    // Not held across the awaits below: a request's body cannot be shared between threads.
    drop(request);
    let caller = identity.as_ref().and_then(|i| i.user.as_ref()).map(|u| u.username.clone()).unwrap_or_default();
    let (actor, owner) = resolve(state, identity, query).await?;
    Ok(Asked { actor, caller, owner, needle: needle(query)? })
}

pub(super) async fn log_stream(State(state): State<AppState>, Query(query): Query<LogQuery>, request: Request) -> Response {
    let Asked { actor, caller, owner, needle } = match asked(&state, &query, request).await {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    let Some(seat) = state.log_followers.take(&caller) else {
        return (StatusCode::TOO_MANY_REQUESTS, format!("At most {FOLLOWERS_PER_USER} logs can be followed at once; close another tab.\n")).into_response();
    };
    let lines = match state.workspaces.logs(&actor, &owner, LogRequest { tail: LOG_PAGE_TAIL, follow: true }).await {
        Ok(lines) => lines,
        Err(e) => return failure(e),
    };
    let follow = Follow { lines, needle, stopping: state.stopping.clone(), until: Instant::now() + LIFETIME, first: true, done: false, _seat: seat };
    Sse::new(futures_util::stream::unfold(follow, Follow::next)).keep_alive(KeepAlive::default()).into_response()
}

/// A stream ends after this long; the browser reconnects through the identity layer again, so
/// an ended session or a demoted admin stops reading.
const LIFETIME: Duration = Duration::from_secs(600);
/// What the browser waits before reconnecting after a stream ended by its lifetime.
const RETRY: Duration = Duration::from_secs(2);
/// Log streams one account may hold open at once (each is an engine connection).
pub const FOLLOWERS_PER_USER: usize = 4;

/// How many log streams each account holds open.
#[derive(Default)]
pub struct LogFollowers {
    open: Mutex<HashMap<String, usize>>,
}

impl LogFollowers {
    /// A seat for one more stream of `username`'s, or None when they hold the most already.
    fn take(self: &Arc<Self>, username: &str) -> Option<Seat> {
        let mut open = self.open.lock().expect("log followers");
        let count = open.entry(username.to_string()).or_default();
        if *count >= FOLLOWERS_PER_USER {
            return None;
        }
        *count += 1;
        Some(Seat { followers: self.clone(), username: username.to_string() })
    }
}

/// Held by an open stream; gives its place back when the stream ends, however it ends.
struct Seat {
    followers: Arc<LogFollowers>,
    username: String,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut open = self.followers.open.lock().expect("log followers");
        if let Some(count) = open.get_mut(&self.username) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.username);
            }
        }
    }
}

/// One open log stream.
struct Follow {
    lines: BoxStream<'static, Result<String, RuntimeError>>,
    needle: String,
    stopping: watch::Receiver<bool>,
    until: Instant,
    first: bool,
    /// The log ended (the workspace stopped) and the last event said so.
    done: bool,
    _seat: Seat,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Follow)> {
        if self.done || *self.stopping.borrow() {
            return None;
        }
        loop {
            let event = tokio::select! {
                line = self.lines.next() => match line {
                    Some(Ok(line)) if log_line_matches(&line, &self.needle) => Event::default().event("line").data(line.replace('\r', "")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        self.done = true;
                        Event::default().event("failed").data(e.to_string())
                    }
                    // Tells the page not to reconnect: there is nothing more to follow.
                    None => {
                        self.done = true;
                        Event::default().event("end").data("the workspace stopped")
                    }
                },
                _ = self.stopping.changed() => return None,
                _ = tokio::time::sleep_until(self.until) => return None,
            };
            let event = if std::mem::replace(&mut self.first, false) { event.retry(RETRY) } else { event };
            return Some((Ok(event), self));
        }
    }
}

pub(super) async fn log_download(State(state): State<AppState>, Query(query): Query<LogQuery>, request: Request) -> Response {
    let Asked { actor, owner, needle, .. } = match asked(&state, &query, request).await {
        Ok(asked) => asked,
        Err(response) => return response,
    };
    let lines = match state.workspaces.logs(&actor, &owner, LogRequest { tail: DOWNLOAD_TAIL, follow: false }).await {
        Ok(lines) => lines,
        Err(e) => return failure(e),
    };
    let body = lines.filter_map(move |line| {
        std::future::ready(match line {
            Ok(line) if log_line_matches(&line, &needle) => Some(Ok::<_, std::io::Error>(format!("{line}\n"))),
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
    use crate::workspace::log_line_matches as matches;

    #[test]
    fn search_is_a_case_insensitive_substring() {
        assert!(matches("INFO success: sshd entered RUNNING state", "running"));
        assert!(matches("anything", ""));
        assert!(!matches("jupyterlab exited", "sshd"));
    }
}
