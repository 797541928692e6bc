//! The audit log: every state change, once, with when, who (and as what), from where, what,
//! to whom and how it ended. Berth only inserts here; nothing in the portal, the API or the
//! command line deletes an entry. Entries older than `audit.retention` are pruned by `serve`.

use serde::Serialize;
use sqlx::Row as _;

use crate::db::{now, Db};

/// Who did it, as the log names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditActor {
    /// A user acting on their own account or workspace in the portal.
    User(String),
    /// An administrator in the portal.
    Admin(String),
    /// The `berth` command line on the server (whoever holds the server).
    Cli,
    /// An API token: its owner and its name.
    Token { owner: String, name: String },
    /// Berth itself: reconciliation, expiry, idle stops.
    System,
    /// Nobody logged in (a sign-up, a failed login).
    Anonymous,
}

impl AuditActor {
    pub fn of(user: &app::model::CurrentUser) -> AuditActor {
        if user.is_admin {
            AuditActor::Admin(user.username.clone())
        } else {
            AuditActor::User(user.username.clone())
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            AuditActor::User(_) => "user",
            AuditActor::Admin(_) => "admin",
            AuditActor::Cli => "cli",
            AuditActor::Token { .. } => "token",
            AuditActor::System => "system",
            AuditActor::Anonymous => "anonymous",
        }
    }

    fn name(&self) -> String {
        match self {
            AuditActor::User(n) | AuditActor::Admin(n) => n.clone(),
            AuditActor::Cli => "berth command line".into(),
            AuditActor::Token { owner, name } => format!("{owner} (token {name})"),
            AuditActor::System => "berth".into(),
            AuditActor::Anonymous => "-".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Tried and did not work (a wrong password, an engine error).
    Failed,
    /// Not allowed (a scope, a missing admin right, the last admin).
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }
}

/// One thing that happened, before it is stored.
pub struct Event<'a> {
    pub actor: AuditActor,
    pub client: Option<std::net::IpAddr>,
    /// A stable dotted name: `login`, `password.change`, `token.create`, `workspace.start`, …
    pub action: &'a str,
    /// Whom or what it was done to (a username, `alice/key laptop`, …).
    pub target: &'a str,
    pub outcome: Outcome,
    pub detail: String,
}

impl<'a> Event<'a> {
    pub fn new(actor: AuditActor, action: &'a str, target: &'a str) -> Event<'a> {
        Event { actor, client: None, action, target, outcome: Outcome::Ok, detail: String::new() }
    }

    pub fn client(mut self, client: std::net::IpAddr) -> Self {
        self.client = Some(client);
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// An entry as stored, for the admin page, the API and `berth audit`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub at: i64,
    pub actor_kind: String,
    pub actor: String,
    pub client: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

/// What to look for; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Entries done by or to this user (the actor's or the target's name starts with it).
    pub user: Option<String>,
    /// An action, or a family of them: `workspace` matches `workspace.start`.
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Entries with an id below this one (the next page, newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Clone)]
pub struct Audit {
    db: Db,
}

impl Audit {
    pub fn new(db: Db) -> Audit {
        Audit { db }
    }

    /// Stores `event`. A failure is logged and swallowed: the action it records already
    /// happened, and refusing it afterwards would leave the user unsure whether it did.
    pub async fn record(&self, event: Event<'_>) {
        if let Err(e) = self.try_record(&event).await {
            tracing::error!(error = %e, action = event.action, target = event.target, "audit entry not stored");
        }
    }

    pub async fn try_record(&self, event: &Event<'_>) -> Result<(), sqlx::Error> {
        // A detail is a few words (200 characters at most), never a dump or a control sequence.
        let detail = crate::sharing::clean_note(&event.detail);
        sqlx::query(
            "INSERT INTO audit_log (at, actor_kind, actor, client, action, target, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(now())
        .bind(event.actor.kind())
        .bind(event.actor.name())
        .bind(event.client.map(|c| c.to_string()))
        .bind(event.action)
        .bind(event.target)
        .bind(event.outcome.as_str())
        .bind(detail)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Newest first.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Entry>, sqlx::Error> {
        let mut sql = String::from("SELECT id, at, actor_kind, actor, client, action, target, outcome, detail FROM audit_log WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, value: Bind| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(user) = filter.user.as_deref().filter(|u| !u.is_empty()) {
            // A username, or "alice (token …)" for her tokens, or "alice/…" targets.
            arg(&mut sql, " AND (actor = ? ", Bind::Text(user.to_string()));
            arg(&mut sql, "OR actor LIKE ? ", Bind::Text(format!("{} (token %", escape_like(user))));
            arg(&mut sql, "OR target = ? ", Bind::Text(user.to_string()));
            arg(&mut sql, "OR target LIKE ?)", Bind::Text(format!("{}/%", escape_like(user))));
        }
        if let Some(action) = filter.action.as_deref().filter(|a| !a.is_empty()) {
            arg(&mut sql, " AND (action = ? ", Bind::Text(action.to_string()));
            arg(&mut sql, "OR action LIKE ?)", Bind::Text(format!("{}.%", escape_like(action))));
        }
        if let Some(since) = filter.since {
            arg(&mut sql, " AND at >= ?", Bind::Int(since));
        }
        if let Some(until) = filter.until {
            arg(&mut sql, " AND at <= ?", Bind::Int(until));
        }
        if let Some(before) = filter.before_id {
            arg(&mut sql, " AND id < ?", Bind::Int(before));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 1000)));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = match bind {
                Bind::Text(t) => query.bind(t),
                Bind::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Entry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor: r.try_get("actor")?,
                    client: r.try_get("client")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: r.try_get("outcome")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Drops entries older than `retention_seconds`; the retention is the only way out.
    pub async fn prune(&self, retention_seconds: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at < $1").bind(now() - retention_seconds).execute(&self.db.pool).await?;
        Ok(done.rows_affected())
    }
}

/// What a reconciliation adopted, restarted or could not start, in the audit log (Berth
/// itself acted; nothing is written when it found everything in order).
pub async fn record_reconcile(audit: &Audit, report: &crate::workspace::ReconcileReport) {
    for name in &report.adopted {
        audit.record(Event::new(AuditActor::System, "reconcile.adopt", name)).await;
    }
    for name in &report.restarted {
        audit.record(Event::new(AuditActor::System, "reconcile.restart", name)).await;
    }
    for failed in &report.failed {
        let (name, why) = failed.split_once(':').unwrap_or((failed, ""));
        audit.record(Event::new(AuditActor::System, "reconcile.restart", name.trim()).outcome(Outcome::Failed).detail(why.trim())).await;
    }
    for route in &report.stale_routes {
        audit.record(Event::new(AuditActor::System, "reconcile.remove-route", route)).await;
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

/// `LIKE` treats `%` and `_` as wildcards; usernames hold neither today, but a filter is typed.
fn escape_like(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, '%' | '_' | '\\')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_named_for_people() {
        assert_eq!(AuditActor::Token { owner: "alice".into(), name: "laptop".into() }.name(), "alice (token laptop)");
        assert_eq!(AuditActor::Cli.kind(), "cli");
        assert_eq!(AuditActor::Anonymous.name(), "-");
    }

    #[test]
    fn like_wildcards_are_dropped_from_filters() {
        assert_eq!(escape_like("a%b_c\\"), "abc");
    }
}
