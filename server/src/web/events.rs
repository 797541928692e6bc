//! Live state pushed to open dashboards: `GET /events/workspace` is a server-sent-events stream
//! of the caller's own `WorkspaceView` (event `workspace`, JSON), sent when it changes.
//!
//! The stream asks only `Workspaces::view` and `Workspaces::changes`: it recomputes the view when
//! the workspace service says something changed (or every [`RESYNC`] regardless), and sends it
//! when it differs from the last one sent. Inside the session and identity layers, so only a
//! logged-in user's portal session opens it (app hosts' cookies are never read here).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use app::model::WorkspaceView;
use app::services::RequestIdentity;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::time::Instant;

use super::AppState;
use crate::workspace::{Actor, Owner};
use crate::workspace::{WorkspaceError, Workspaces};

/// The stream's path (the dashboard's `EventSource` opens it).
pub const WORKSPACE_EVENTS: &str = "/events/workspace";
/// How often an open stream recomputes the view without being told of a change (uptime, a
/// missed engine event, the engine coming back).
const RESYNC: Duration = Duration::from_secs(30);
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream ends after this long; the browser reconnects at once, through the identity layer
/// again, so a session ended meanwhile stops receiving.
const LIFETIME: Duration = Duration::from_secs(600);
/// What the browser waits before reconnecting after a stream ends.
const RETRY: Duration = Duration::from_secs(2);

pub(super) async fn workspace_events(State(state): State<AppState>, request: Request) -> Response {
    let Some(user) = request.extensions().get::<RequestIdentity>().and_then(|i| i.user.clone()) else {
        return (StatusCode::UNAUTHORIZED, "Log in first.\n").into_response();
    };
    let follow = Follow {
        changes: state.workspaces.changes(),
        workspaces: state.workspaces.clone(),
        actor: Actor::from(&user),
        owner: Owner::from(&user),
        last: None,
        first: true,
        stopping: state.stopping.clone(),
        until: Instant::now() + LIFETIME,
    };
    Sse::new(futures_util::stream::unfold(follow, Follow::next))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// One open stream: whose workspace, and what it was last sent.
struct Follow {
    workspaces: Arc<Workspaces>,
    changes: watch::Receiver<u64>,
    actor: Actor,
    owner: Owner,
    /// The last view sent, as the card shows it.
    last: Option<WorkspaceView>,
    first: bool,
    /// Becomes true when the server shuts down: open streams end so the graceful shutdown does
    /// not wait for them.
    stopping: watch::Receiver<bool>,
    until: Instant,
}

impl Follow {
    /// The next event to send; None ends the stream.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Follow)> {
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            if !self.first {
                tokio::select! {
                    changed = self.changes.changed() => if changed.is_err() { return None },
                    _ = tokio::time::sleep(RESYNC) => {}
                    _ = self.stopping.changed() => return None,
                    _ = tokio::time::sleep_until(self.until) => return None,
                }
            }
            let first = std::mem::replace(&mut self.first, false);
            match self.workspaces.view(&self.actor, &self.owner).await {
                Ok(view) if self.last.as_ref() == Some(&as_shown(&view)) => continue,
                Ok(view) => {
                    let event = match Event::default().event("workspace").json_data(&view) {
                        Ok(event) => event,
                        Err(e) => {
                            tracing::error!(error = %e, "workspace view not serializable");
                            continue;
                        }
                    };
                    self.last = Some(as_shown(&view));
                    return Some((Ok(if first { event.retry(RETRY) } else { event }), self));
                }
                Err(WorkspaceError::Forbidden(_)) => return None,
                Err(e) => tracing::warn!(user = %self.owner.username, error = %e, "live workspace view failed; retrying at the next change"),
            }
        }
    }
}

/// A view as the card shows it: uptime in whole minutes ("up 5 min"). A recomputed view whose
/// uptime moved by a few seconds is no news to send.
fn as_shown(view: &WorkspaceView) -> WorkspaceView {
    WorkspaceView { uptime_seconds: view.uptime_seconds.map(|s| s / 60 * 60), ..view.clone() }
}
