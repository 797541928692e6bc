//! GPU sharing as the portal shows it, drawn on the server: the board (who holds which GPU,
//! the queue, the viewer's buttons), the request form, and the admin's page. Plain HTML forms
//! posting to the server functions: they work without JavaScript and add nothing to the wasm.

use crate::figures::{bytes, clock_text, duration_text, escape};
use crate::model::{GpuShareView, IdleView, SharingAdminView};

fn post(endpoint: &str, fields: &[(&str, String)], button: &str, class: &str) -> String {
    let hidden: String =
        fields.iter().map(|(k, v)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(k), escape(v))).collect();
    format!(r#"<form method="post" action="/api/{endpoint}" class="inline">{hidden}<button type="submit" class="{class}">{}</button></form>"#, escape(button))
}

/// What the last form post came to (from the session), above the form.
pub fn outcome_html(outcome: Option<(bool, String)>) -> String {
    match outcome {
        Some((true, message)) => format!(r#"<p class="notice" id="sharing-outcome" role="status">{}</p>"#, escape(&message)),
        Some((false, message)) => format!(r#"<p class="error" id="sharing-outcome" role="alert">{}</p>"#, escape(&message)),
        None => String::new(),
    }
}

/// "active: SSH session, 3 min ago · stops in 23 h 57 min".
pub fn idle_text(idle: &IdleView, now: i64) -> String {
    if !idle.running {
        return "not running".into();
    }
    let last = match (&idle.last_signal, idle.last_at) {
        (Some(signal), Some(at)) => format!("active: {}, {} ago", signal, duration_text(now - at)),
        _ => "no activity seen yet".into(),
    };
    let fate = if idle.exempt {
        "exempt from idle stops".to_string()
    } else if idle.stop_after_seconds <= 0 {
        "never stopped for idleness".to_string()
    } else {
        match idle.stops_at {
            Some(at) => format!("stopped after {} idle (in {} if nothing happens)", duration_text(idle.stop_after_seconds), duration_text(at - now)),
            None => format!("stopped after {} idle", duration_text(idle.stop_after_seconds)),
        }
    };
    format!("{last} · {fate}")
}

/// The board: `admin` adds revoke and reorder buttons on everyone's rows.
pub fn board_html(v: &GpuShareView, admin: bool) -> String {
    let mut html = String::new();
    for w in &v.warnings {
        html += &format!(r#"<p class="banner warning" role="alert">{}</p>"#, escape(w));
    }
    let mode = if v.mode == "leased" {
        "Leased: a workspace sees only the GPUs it holds."
    } else {
        "Open: every workspace sees every GPU; claims tell the others which one you use."
    };
    html += &format!(r#"<p class="muted" id="gpu-mode" data-mode="{}">{}</p>"#, escape(&v.mode), mode);
    if let Some(note) = &v.note {
        html += &format!(r#"<p class="muted" id="gpu-note">{}</p>"#, escape(note));
    }
    if !v.gpus.is_empty() {
        html += r#"<table class="gpu-share"><thead><tr><th>GPU</th><th>Model</th><th>Use</th><th>Memory</th><th>Held by</th><th></th></tr></thead><tbody>"#;
        for g in &v.gpus {
            let (holder, state, buttons) = match &g.holder {
                None => ("free".to_string(), "free", String::new()),
                Some(h) => {
                    let mine = h.username == v.viewer;
                    let mut text = format!(
                        "{} · {} until {} (in {})",
                        escape(&h.username),
                        escape(&h.kind),
                        clock_text(h.ends_at),
                        duration_text(h.ends_at - v.now)
                    );
                    if !h.note.is_empty() {
                        text += &format!(" · {}", escape(&h.note));
                    }
                    if let Some(since) = h.idle_since {
                        text += &format!(" · idle for {}", duration_text(v.now - since));
                    }
                    let mut buttons = String::new();
                    if mine {
                        buttons += &post("gpu-extend", &[("holding", h.id.to_string()), ("hours", "1".into())], "+1 h", "link");
                        buttons += &post("gpu-release", &[("holding", h.id.to_string())], "Release", "link release");
                    } else if admin {
                        buttons += &post("gpu-release", &[("holding", h.id.to_string())], "Revoke", "link danger");
                    }
                    (text, if h.kind == "lease" { "leased" } else { "claimed" }, buttons)
                }
            };
            // Someone else's processes on a GPU another user holds.
            let holder_name = g.holder.as_ref().map(|h| h.username.as_str());
            let strangers: Vec<&str> = g.process_users.iter().map(String::as_str).filter(|u| holder_name.is_some_and(|h| h != *u)).collect();
            let flag = if strangers.is_empty() {
                String::new()
            } else {
                format!(r#"<br><span class="flag" role="alert">⚠ processes of {} on a GPU {} holds</span>"#, escape(&strangers.join(", ")), escape(holder_name.unwrap_or_default()))
            };
            html += &format!(
                r#"<tr data-gpu="{}" data-state="{state}"><td>{}</td><td>{}</td><td>{} %</td><td>{} / {}</td><td class="holder">{holder}{flag}</td><td>{buttons}</td></tr>"#,
                g.index,
                g.index,
                escape(&g.name),
                g.utilization_percent,
                bytes(g.memory_used_bytes),
                bytes(g.memory_total_bytes),
            );
        }
        html += "</tbody></table>";
    }
    if v.queue.is_empty() {
        html += r#"<p class="muted" id="gpu-queue-empty">Nobody is waiting for a GPU.</p>"#;
    } else {
        html += r#"<h3>Waiting</h3><ol class="gpu-queue" id="gpu-queue">"#;
        for r in &v.queue {
            let what = r.gpu_index.map_or_else(|| format!("{} GPU(s)", r.count), |i| format!("GPU {i}"));
            let estimate = match r.estimate_at {
                Some(at) if at <= v.now => "next round".to_string(),
                Some(at) => format!("about {}", clock_text(at)),
                None => "unknown".to_string(),
            };
            let mut buttons = String::new();
            if r.username == v.viewer || admin {
                buttons += &post("gpu-cancel", &[("request", r.id.to_string())], "Withdraw", "link");
            }
            if admin {
                buttons += &post("gpu-reorder", &[("request", r.id.to_string()), ("direction", "up".into())], "↑", "link");
                buttons += &post("gpu-reorder", &[("request", r.id.to_string()), ("direction", "down".into())], "↓", "link");
            }
            html += &format!(
                r#"<li data-request="{}">{} wants {} for {} · position {} · expected {}{} {buttons}</li>"#,
                r.id,
                escape(&r.username),
                what,
                duration_text(r.duration_seconds),
                r.position,
                estimate,
                if r.note.is_empty() { String::new() } else { format!(" · {}", escape(&r.note)) },
            );
        }
        html += "</ol>";
    }
    if !admin {
        if let Some(idle) = &v.idle {
            html += &format!(r#"<p class="muted" id="idle-status">Workspace: {}</p>"#, escape(&idle_text(idle, v.now)));
        }
    }
    html
}

/// The request form and "I'm still here".
pub fn controls_html(v: &GpuShareView) -> String {
    let mut html = String::new();
    if !v.gpus.is_empty() {
        let options: String = std::iter::once(r#"<option value="">any free GPU</option>"#.to_string())
            .chain(v.gpus.iter().map(|g| format!(r#"<option value="{}">GPU {} ({})</option>"#, g.index, g.index, escape(&g.name))))
            .collect();
        let confirm = if v.mode == "leased" {
            r#"<label class="check"><input type="checkbox" name="confirm" value="yes" id="gpu-confirm"> Restart my workspace to attach the GPUs when granted (running processes end; the home stays)</label>"#
        } else {
            r#"<input type="hidden" name="confirm" value="yes">"#
        };
        let default_hours = (4 * 3600).min(v.limits.max_lease_seconds) as f64 / 3600.0;
        html += &format!(
            r#"<form method="post" action="/api/gpu-request" id="gpu-request-form" class="row">
<label>GPUs <input type="number" name="count" min="1" max="{max}" value="1" id="gpu-count"></label>
<label>Which <select name="gpu" id="gpu-which">{options}</select></label>
<label>Hours <input type="number" name="hours" min="0.1" max="{max_hours}" step="any" value="{default_hours}" id="gpu-hours"></label>
<label>Note <input type="text" name="note" maxlength="200" id="gpu-note-input" placeholder="what for"></label>
{confirm}
<button type="submit" id="gpu-request">{verb}</button>
</form><p class="muted">You may hold {max} GPU(s) at once, each for at most {max_lease}; a request waits when none is free.</p>"#,
            max = v.limits.max_gpus,
            max_hours = v.limits.max_lease_seconds as f64 / 3600.0,
            max_lease = duration_text(v.limits.max_lease_seconds),
            verb = if v.mode == "leased" { "Request" } else { "Claim" },
        );
    }
    html += &post("still-here", &[], "I'm still here", "secondary");
    html
}

/// The admin's page: the board with revoke and reorder, limits, idle policy, the record.
pub fn admin_html(v: &SharingAdminView) -> String {
    let now = v.share.now;
    let mut html = String::from(r#"<section class="card" id="sharing-board"><h2>GPUs</h2>"#);
    html += &board_html(&v.share, true);
    html += "</section>";

    html += r#"<section class="card" id="sharing-limits"><h2>Limits</h2>"#;
    html += &format!(
        r#"<p class="muted">Site defaults: {} GPU(s) at once, {} a lease, {} waiting. Per-user values below override them.</p>"#,
        v.share.limits.max_gpus,
        duration_text(v.share.limits.max_lease_seconds),
        v.share.limits.max_queued
    );
    if !v.limits.is_empty() {
        html += "<table><thead><tr><th>User</th><th>GPUs</th><th>Longest lease</th><th>Waiting</th></tr></thead><tbody>";
        for (user, l) in &v.limits {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(user),
                l.max_gpus,
                duration_text(l.max_lease_seconds),
                l.max_queued
            );
        }
        html += "</tbody></table>";
    }
    html += r#"<form method="post" action="/api/gpu-limits" id="limits-form" class="row">
<label>User <input type="text" name="username" required></label>
<label>GPUs <input type="number" name="max_gpus" min="0"></label>
<label>Longest lease (h) <input type="number" name="max_hours" min="0" step="0.5"></label>
<label>Waiting <input type="number" name="max_queued" min="0"></label>
<button type="submit">Set limits</button></form><p class="muted">An empty field keeps the site default.</p></section>"#;

    html += r#"<section class="card" id="sharing-idle"><h2>Idle workspaces</h2><table><thead><tr><th>User</th><th>State</th></tr></thead><tbody>"#;
    for idle in &v.idle {
        html += &format!(
            r#"<tr data-user="{}"><td>{}</td><td>{}{}</td></tr>"#,
            escape(&idle.username),
            escape(&idle.username),
            escape(&idle_text(idle, now)),
            if idle.warned_at.is_some() { " · warned" } else { "" }
        );
    }
    html += r#"</tbody></table>
<form method="post" action="/api/idle-policy" id="idle-form" class="row">
<label>User <input type="text" name="username" required></label>
<label>Stop after (h) <input type="number" name="stop_after_hours" min="0" step="0.5"></label>
<label class="check"><input type="checkbox" name="exempt" value="yes"> Exempt</label>
<button type="submit">Set idle policy</button></form><p class="muted">Empty: the site's idle time; 0: never stopped.</p></section>"#;

    html += r#"<section class="card" id="sharing-events"><h2>Record</h2><table><thead><tr><th>When</th><th>Who</th><th>User</th><th>What</th><th></th></tr></thead><tbody>"#;
    for e in &v.events {
        html += &format!(
            r#"<tr data-action="{}"><td>{} ago</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            escape(&e.action),
            duration_text(now - e.at),
            escape(&e.actor),
            escape(&e.username),
            escape(&e.action),
            escape(&e.detail)
        );
    }
    html += "</tbody></table></section>";
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GpuHolding, GpuLimitsView, SharedGpu};

    fn view() -> GpuShareView {
        GpuShareView {
            mode: "open".into(),
            now: 10_000,
            viewer: "alice".into(),
            gpus: vec![SharedGpu {
                index: 0,
                uuid: "GPU-a".into(),
                name: "A100".into(),
                utilization_percent: 80,
                memory_used_bytes: 0,
                memory_total_bytes: 0,
                holder: Some(GpuHolding {
                    id: 7,
                    username: "alice".into(),
                    kind: "claim".into(),
                    note: "<script>x</script>".into(),
                    started_at: 0,
                    ends_at: 13_600,
                    idle_since: None,
                    idle_warned_at: None,
                }),
                process_users: vec!["alice".into(), "mallory".into()],
            }],
            note: None,
            queue: Vec::new(),
            limits: GpuLimitsView { max_gpus: 2, max_lease_seconds: 86_400, max_queued: 2 },
            idle: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_board_flags_someone_elses_processes_and_escapes_notes() {
        let html = board_html(&view(), false);
        assert!(html.contains("alice · claim until 03:46 UTC (in 1 h 00 min)"), "{html}");
        assert!(html.contains("⚠ processes of mallory on a GPU alice holds"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(r#"action="/api/gpu-release""#), "the holder gets a release button: {html}");
    }

    #[test]
    fn the_idle_line_says_what_kept_the_workspace_alive_and_when_it_stops() {
        let idle = IdleView {
            username: "alice".into(),
            running: true,
            last_signal: Some("SSH session".into()),
            last_at: Some(9_820),
            exempt: false,
            stop_after_seconds: 86_400,
            warned_at: None,
            stops_at: Some(96_220),
        };
        assert_eq!(idle_text(&idle, 10_000), "active: SSH session, 3 min ago · stopped after 1 d 0 h idle (in 23 h 57 min if nothing happens)");
        assert_eq!(idle_text(&IdleView { exempt: true, ..idle.clone() }, 10_000), "active: SSH session, 3 min ago · exempt from idle stops");
        assert_eq!(idle_text(&IdleView { running: false, ..idle }, 10_000), "not running");
    }

    #[test]
    fn another_user_sees_no_release_button_and_an_admin_a_revoke() {
        let mut v = view();
        v.viewer = "bob".into();
        assert!(!board_html(&v, false).contains("gpu-release"));
        assert!(board_html(&v, true).contains(">Revoke</button>"));
    }
}
