//! How usage reads: sizes, rates and CPU shares as people write them, and (on the server) the
//! usage card and the GPU board as HTML with SVG charts. Drawn as text on the server rather than
//! as components: the same markup, without the chart code in the browser's download, and shown
//! with JavaScript off.

#[cfg(feature = "ssr")]
use crate::model::{GpuBoard, UsagePanel, UsagePoint, WorkspaceState};

const KIB: f64 = 1024.0;

/// "512 B", "1.5 KiB", "3.2 GiB".
pub fn bytes(n: u64) -> String {
    let mut value = n as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < KIB || unit == "TiB" {
            return if unit == "B" { format!("{n} B") } else { format!("{value:.1} {unit}") };
        }
        value /= KIB;
    }
    unreachable!()
}

/// A rate in bytes per second: "0 B/s", "1.5 MiB/s".
pub fn rate(per_second: f64) -> String {
    format!("{}/s", bytes(per_second.max(0.0).round() as u64))
}

/// Cores in use, and what share that is of the workspace's limit and of the host.
pub fn cpu_text(cores: f64, limit_cores: f64, host_cpus: u32) -> String {
    let mut text = format!("{cores:.2} cores");
    if limit_cores > 0.0 {
        text.push_str(&format!(" · {:.0} % of its limit", cores / limit_cores * 100.0));
    }
    if host_cpus > 0 {
        text.push_str(&format!(" · {:.1} % of the host", cores / f64::from(host_cpus) * 100.0));
    }
    text
}

/// The polyline of a chart `width`×`height`: x by time from `from` to `until`, y from 0 at the
/// bottom to `max` at the top (values above are drawn at the top).
#[cfg(feature = "ssr")]
pub fn chart_points(points: &[(i64, f64)], from: i64, until: i64, max: f64, width: f64, height: f64) -> String {
    let span = (until - from).max(1) as f64;
    let max = if max > 0.0 { max } else { 1.0 };
    points
        .iter()
        .filter(|(at, _)| *at >= from && *at <= until)
        .map(|(at, v)| {
            let x = (at - from) as f64 / span * width;
            let y = height - (v / max).clamp(0.0, 1.0) * height;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(feature = "ssr")]
const CHART_W: f64 = 240.0;
#[cfg(feature = "ssr")]
const CHART_H: f64 = 48.0;

/// Text made safe inside HTML (element content and quoted attributes).
#[cfg(feature = "ssr")]
/// A moment as a clock reads it (UTC): "14:05 UTC".
#[cfg(feature = "ssr")]
pub fn clock_text(at: i64) -> String {
    let of_day = at.rem_euclid(86_400);
    format!("{:02}:{:02} UTC", of_day / 3600, of_day % 3600 / 60)
}

/// A length of time as people say it: "45 s", "3 min", "2 h 05 min", "3 d 4 h".
#[cfg(feature = "ssr")]
pub fn duration_text(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One small history chart as SVG. `data-points` and `data-last` say what it drew (for people
/// reading the page source, and for tests).
#[cfg(feature = "ssr")]
pub fn chart_svg(points: &[(i64, f64)], from: i64, until: i64, max: f64, label: &str) -> String {
    let polyline = chart_points(points, from, until, max, CHART_W, CHART_H);
    let last = points.last().map(|(_, v)| format!("{v:.3}")).unwrap_or_default();
    format!(
        r#"<svg viewBox="0 0 240 48" preserveAspectRatio="none" role="img" aria-label="{}" data-points="{}" data-last="{last}" class="chart"><line class="axis" x1="0" y1="48" x2="240" y2="48"></line><polyline points="{polyline}" class="line"></polyline></svg>"#,
        escape(label),
        points.len()
    )
}

/// A figure: its name, its value now, and its chart(s).
#[cfg(feature = "ssr")]
fn figure(id: &str, title: &str, now: &str, charts: &str) -> String {
    format!(
        r#"<figure id="{id}" class="figure"><figcaption>{}</figcaption><p class="value">{}</p>{charts}</figure>"#,
        escape(title),
        escape(now)
    )
}

#[cfg(feature = "ssr")]
fn series(history: &[UsagePoint], f: impl Fn(&UsagePoint) -> f64) -> Vec<(i64, f64)> {
    history.iter().map(|p| (p.at, f(p))).collect()
}

#[cfg(feature = "ssr")]
fn peak(points: &[(i64, f64)], floor: f64) -> f64 {
    points.iter().map(|(_, v)| *v).fold(floor, f64::max) * 1.1
}

/// Every figure of one workspace with its charts, as HTML. Built as text rather than as
/// components: the same markup, a fraction of the code in the browser's download.
#[cfg(feature = "ssr")]
pub fn figures_html(panel: &UsagePanel) -> String {
    let UsagePanel { now, history, until, hours, limits, host_cpus, host_memory_bytes, gpu_note, state, .. } = panel;
    let (until, host_cpus) = (*until, *host_cpus);
    let from = until - i64::from(*hours) * 3600;
    let Some(now) = now else {
        let why = if *state == WorkspaceState::Running { "Measuring… the first figures come within seconds." } else { "Not running: nothing to measure." };
        return format!(r#"<p class="muted" id="usage-idle">{why}</p>"#);
    };
    let cpu = series(history, |p| p.cpu_cores);
    let cpu_max = peak(&cpu, if limits.cpus > 0.0 { limits.cpus } else { 1.0 });
    let memory = series(history, |p| p.memory_bytes as f64);
    let memory_limit = if now.memory_limit_bytes > 0 { now.memory_limit_bytes } else { limits.memory_limit_gib << 30 };
    let memory_max = peak(&memory, memory_limit as f64 / 1.1);
    let rx = series(history, |p| p.net_rx_rate);
    let tx = series(history, |p| p.net_tx_rate);
    let net_max = peak(&rx, peak(&tx, 1024.0));
    let read = series(history, |p| p.disk_read_rate);
    let write = series(history, |p| p.disk_write_rate);
    let disk_max = peak(&read, peak(&write, 1024.0));
    let memory_now = format!(
        "{} used · {} reserved · {} limit{}",
        bytes(now.memory_bytes),
        bytes(limits.memory_reservation_gib << 30),
        bytes(memory_limit),
        if *host_memory_bytes > 0 { format!(" · host {}", bytes(*host_memory_bytes)) } else { String::new() }
    );
    let sizes = format!(
        "home {} · container layer {}",
        now.home_bytes.map(bytes).unwrap_or_else(|| "not measured yet".into()),
        now.writable_layer_bytes.map(bytes).unwrap_or_else(|| "not measured yet".into())
    );
    let mut html = String::from(r#"<div class="figures">"#);
    html += &figure("usage-cpu", "CPU", &cpu_text(now.cpu_cores, limits.cpus, host_cpus), &chart_svg(&cpu, from, until, cpu_max, "CPU cores in use"));
    html += &figure("usage-memory", "Memory", &memory_now, &chart_svg(&memory, from, until, memory_max, "memory in use"));
    let charts = chart_svg(&rx, from, until, net_max, "received per second") + &chart_svg(&tx, from, until, net_max, "sent per second");
    html += &figure("usage-network", "Network", &format!("↓ {} · ↑ {}", rate(now.net_rx_rate), rate(now.net_tx_rate)), &charts);
    let charts = chart_svg(&read, from, until, disk_max, "read per second") + &chart_svg(&write, from, until, disk_max, "written per second");
    html += &figure("usage-disk", "Disk", &format!("read {} · write {}", rate(now.disk_read_rate), rate(now.disk_write_rate)), &charts);
    html += &figure("usage-sizes", "Storage", &sizes, "");
    html += r#"</div><div class="figures" id="usage-gpus">"#;
    if now.gpus.is_empty() {
        let text = gpu_note.clone().unwrap_or_else(|| "No GPU processes of this workspace.".into());
        html += &format!(r#"<p class="muted" id="usage-gpus-none">{}</p>"#, escape(&text));
    }
    for g in &now.gpus {
        let index = g.gpu.index;
        let on_gpu = |p: &UsagePoint| p.gpus.iter().find(|x| x.index == index).cloned();
        let util = series(history, |p| on_gpu(p).map_or(0.0, |x| f64::from(x.utilization_percent)));
        let mem = series(history, |p| on_gpu(p).map_or(0.0, |x| x.memory_bytes as f64));
        let temp = series(history, |p| on_gpu(p).and_then(|x| x.temperature_celsius).map_or(0.0, f64::from));
        let own: u64 = g.processes.iter().filter_map(|p| p.memory_bytes).sum();
        let pids = g.processes.iter().map(|p| p.pid.to_string()).collect::<Vec<_>>().join(", ");
        let text = format!(
            "{} % busy · {} of {} used ({} by this workspace) · {}",
            g.gpu.utilization_percent,
            bytes(g.gpu.memory_used_bytes),
            bytes(g.gpu.memory_total_bytes),
            bytes(own),
            g.gpu.temperature_celsius.map(|t| format!("{t} °C")).unwrap_or_else(|| "temperature unknown".into())
        );
        html += &format!(
            r#"<figure class="figure gpu" data-gpu="{index}"><figcaption>{}</figcaption><p class="value">{}</p><p class="muted">Processes: {pids}</p>{}{}{}</figure>"#,
            escape(&format!("GPU {index}: {}", g.gpu.name)),
            escape(&text),
            chart_svg(&util, from, until, 100.0, &format!("GPU {index} utilisation")),
            chart_svg(&mem, from, until, g.gpu.memory_total_bytes as f64, &format!("GPU {index} memory")),
            chart_svg(&temp, from, until, 100.0, &format!("GPU {index} temperature")),
        );
    }
    html += "</div>";
    html
}

/// The host's GPUs and whose processes are on them, as HTML (see [`figures_html`]).
#[cfg(feature = "ssr")]
pub fn gpu_board_html(board: &GpuBoard) -> String {
    if board.gpus.is_empty() {
        let note = board.note.clone().unwrap_or_else(|| "no NVIDIA GPUs on this host".into());
        return format!(r#"<p class="muted" id="gpu-board-none">{}</p>"#, escape(&note));
    }
    let mut html = String::from(
        r#"<div class="table-wrap"><table id="gpu-board"><thead><tr><th>GPU</th><th>Model</th><th>Busy</th><th>Memory</th><th>Temp.</th><th>Processes</th></tr></thead><tbody>"#,
    );
    for g in &board.gpus {
        let users = g
            .processes
            .iter()
            .map(|p| {
                let who = p.user.clone().unwrap_or_else(|| "not a workspace".into());
                match p.memory_bytes {
                    Some(m) => format!("{who} (pid {}, {})", p.pid, bytes(m)),
                    None => format!("{who} (pid {})", p.pid),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        html += &format!(
            r#"<tr data-gpu="{}"><td>{}</td><td>{}</td><td>{} %</td><td>{} / {}</td><td>{}</td><td class="gpu-users">{}</td></tr>"#,
            g.index,
            g.index,
            escape(&g.name),
            g.utilization_percent,
            bytes(g.memory_used_bytes),
            bytes(g.memory_total_bytes),
            g.temperature_celsius.map(|t| format!("{t} °C")).unwrap_or_default(),
            escape(if users.is_empty() { "idle" } else { &users }),
        );
    }
    html += "</tbody></table></div>";
    html
}

/// A query-string value, percent-encoded (RFC 3986 unreserved characters kept).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(clock_text(1_764_597_900), "14:05 UTC");
        assert_eq!(duration_text(45), "45 s");
        assert_eq!(duration_text(180), "3 min");
        assert_eq!(duration_text(7500), "2 h 05 min");
        assert_eq!(duration_text(273_600), "3 d 4 h");
        assert_eq!(duration_text(-5), "0 s");
    }

    #[test]
    fn sizes_and_rates_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(rate(2_621_440.0), "2.5 MiB/s");
        assert_eq!(rate(-1.0), "0 B/s");
    }

    #[test]
    fn cpu_is_told_against_the_limit_and_the_host() {
        assert_eq!(cpu_text(1.0, 4.0, 16), "1.00 cores · 25 % of its limit · 6.2 % of the host");
        assert_eq!(cpu_text(0.5, 0.0, 0), "0.50 cores", "no limit, host size unknown");
    }

    #[test]
    fn text_from_elsewhere_cannot_make_markup() {
        assert_eq!(escape(r#"<img src=x onerror="a('b')">&"#), "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;");
        let board = GpuBoard {
            gpus: vec![crate::model::GpuView {
                index: 0,
                name: "<script>x</script>".into(),
                utilization_percent: 1,
                memory_used_bytes: 0,
                memory_total_bytes: 0,
                temperature_celsius: None,
                processes: Vec::new(),
            }],
            note: None,
        };
        let html = gpu_board_html(&board);
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;") && !html.contains("<script>"), "{html}");
        assert!(html.contains(">idle</td>"), "{html}");
    }

    #[test]
    fn chart_points_span_the_window_and_clamp_to_the_top() {
        // A 100-second window 200 wide and 50 high; max 2.
        let points = [(1000, 0.0), (1050, 1.0), (1100, 4.0), (900, 1.0)];
        assert_eq!(chart_points(&points, 1000, 1100, 2.0, 200.0, 50.0), "0.0,50.0 100.0,25.0 200.0,0.0");
        assert_eq!(chart_points(&[], 0, 10, 1.0, 10.0, 10.0), "");
    }
}
