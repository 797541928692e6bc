//! `GET /metrics`: Prometheus exposition (OpenMetrics text, by `prometheus-client`) of the
//! portal (requests, forwardAuth latency, logins, sessions, workspace operations, the engine)
//! and of every sampled workspace and GPU (read from the monitor's snapshot, never the engine).
//! Reached with the bearer token `metrics_token`, or on the separate `metrics_listen` address.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prometheus's address on the portal and on `metrics_listen`.
pub const METRICS_PATH: &str = "/metrics";

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::monitor::Monitor;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `ok` or `failed`.
    pub result: String,
    /// `password` or `sso`.
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
    /// `ok` or `error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationKind {
    pub operation: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn operation_histogram() -> Histogram {
    // 0.25 s … about 17 min: an image pull can take minutes.
    Histogram::new(exponential_buckets(0.25, 2.0, 13))
}

/// The portal's own counters, and the registry that exposes them with the workspaces'.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    verify_seconds: Histogram,
    logins: Family<LoginLabels, Counter>,
    operations: Family<OperationLabels, Counter>,
    operation_seconds: HistogramFamily<OperationKind>,
    sessions: Gauge,
    engine_up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(monitor: Arc<Monitor>) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("berth_http_requests", "HTTP requests answered, by route, method and status", requests.clone());
        // 0.1 ms … about 1.6 s: forwardAuth answers from its cache in well under a millisecond.
        let verify_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register("berth_verify_duration_seconds", "Time to answer a forwardAuth request (/auth/verify)", verify_seconds.clone());
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register("berth_logins", "Login attempts, by result and method", logins.clone());
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register("berth_workspace_operations", "Workspace operations (start, stop, restart, reset), by outcome", operations.clone());
        let operation_seconds: HistogramFamily<OperationKind> = Family::new_with_constructor(operation_histogram);
        registry.register("berth_workspace_operation_duration_seconds", "How long workspace operations took", operation_seconds.clone());
        let sessions = Gauge::default();
        registry.register("berth_sessions", "Portal sessions that have not expired", sessions.clone());
        let engine_up = Gauge::default();
        registry.register("berth_engine_up", "1 when the container engine answered the sampler's last question", engine_up.clone());
        registry.register_collector(Box::new(WorkspaceCollector { monitor }));
        Metrics { registry, requests, verify_seconds, logins, operations, operation_seconds, sessions, engine_up }
    }

    pub fn login(&self, ok: bool, method: &str) {
        let result = if ok { "ok" } else { "failed" };
        self.logins.get_or_create(&LoginLabels { result: result.into(), method: method.into() }).inc();
    }

    pub fn operation(&self, operation: &str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.operations.get_or_create(&OperationLabels { operation: operation.into(), outcome: outcome.into() }).inc();
        self.operation_seconds.get_or_create(&OperationKind { operation: operation.into() }).observe(took.as_secs_f64());
    }

    /// The exposition, after reading what is read at scrape time (sessions, engine).
    pub async fn render(&self, db: &Db, monitor: &Monitor) -> Result<String, std::fmt::Error> {
        match crate::sessions::count_active(db).await {
            Ok(n) => {
                self.sessions.set(n);
            }
            Err(e) => tracing::debug!(error = %e, "metrics: cannot count sessions"),
        }
        if let Some(up) = monitor.engine_up() {
            self.engine_up.set(i64::from(up));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Counts every request the portal answers by its route (the pattern, never the raw path, so
/// the label set stays small), and times forwardAuth.
pub async fn count_requests(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    // Any token is a method to hyper: only the standard ones get a label of their own, so
    // nobody can grow the label set from outside.
    let method = match *request.method() {
        Method::GET | Method::POST | Method::HEAD | Method::PUT | Method::DELETE | Method::PATCH | Method::OPTIONS => {
            request.method().as_str().to_string()
        }
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.unwrap_or_else(|| "unmatched".into());
    if route == crate::routes::verify::VERIFY_PATH {
        metrics.verify_seconds.observe(started.elapsed().as_secs_f64());
    }
    metrics.requests.get_or_create(&RequestLabels { route, method, status: response.status().as_u16() }).inc();
    response
}

/// What `/metrics` needs.
#[derive(Clone)]
pub struct MetricsState {
    pub metrics: Arc<Metrics>,
    pub monitor: Arc<Monitor>,
    pub db: Db,
    /// Required as `Authorization: Bearer …` when set; None only on the separate listener.
    pub token: Option<String>,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn serve_metrics(State(state): State<MetricsState>, request: Request) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::crypto::constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a metrics token is required\n").into_response();
        }
    }
    match state.metrics.render(&state.db, &state.monitor).await {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS), (header::CACHE_CONTROL, "no-store")], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// The `/metrics` route alone, for the portal's router (with the token) and the separate
/// metrics address.
pub fn route(state: MetricsState) -> axum::Router {
    axum::Router::new().route(METRICS_PATH, axum::routing::get(serve_metrics)).with_state(state)
}

/// `/metrics` when neither a token nor a separate address is configured: nothing is exposed.
pub async fn metrics_off() -> Response {
    (StatusCode::NOT_FOUND, "metrics are not exposed here: set metrics_token, or metrics_listen for a separate address\n").into_response()
}

/// The workspaces' and GPUs' series, from the monitor's latest readings at each scrape.
#[derive(Debug)]
struct WorkspaceCollector {
    monitor: Arc<Monitor>,
}

fn user(name: &str) -> [(&'static str, String); 1] {
    [("user", name.to_string())]
}

fn gpu(index: u32) -> [(&'static str, String); 1] {
    [("gpu", index.to_string())]
}

/// One family: its descriptor, then a series per (labels, metric).
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: prometheus_client::metrics::MetricType,
    series: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for WorkspaceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType::{Counter as C, Gauge as G};
        let snapshot = self.monitor.metrics_snapshot();
        let w = &snapshot.workspaces;
        family(&mut encoder, "berth_workspace_up", "1 for each workspace Berth samples (it runs)", G, w.iter().map(|(u, _)| (user(u), ConstGauge::new(1i64))))?;
        family(&mut encoder, "berth_workspace_cpu_seconds", "CPU time the workspace used since it started", C,
            w.iter().map(|(u, r)| (user(u), ConstCounter::new(r.cpu_ns as f64 / 1e9))))?;
        family(&mut encoder, "berth_workspace_memory_bytes", "Memory the workspace uses, without droppable page cache", G,
            w.iter().map(|(u, r)| (user(u), ConstGauge::new(r.memory_bytes as i64))))?;
        family(&mut encoder, "berth_workspace_memory_limit_bytes", "The workspace's memory limit", G,
            w.iter().map(|(u, r)| (user(u), ConstGauge::new(r.memory_limit_bytes as i64))))?;
        family(&mut encoder, "berth_workspace_network_receive_bytes", "Bytes the workspace received since it started", C,
            w.iter().map(|(u, r)| (user(u), ConstCounter::new(r.net_rx_bytes))))?;
        family(&mut encoder, "berth_workspace_network_transmit_bytes", "Bytes the workspace sent since it started", C,
            w.iter().map(|(u, r)| (user(u), ConstCounter::new(r.net_tx_bytes))))?;
        family(&mut encoder, "berth_workspace_disk_read_bytes", "Bytes the workspace read from block devices since it started", C,
            w.iter().map(|(u, r)| (user(u), ConstCounter::new(r.disk_read_bytes))))?;
        family(&mut encoder, "berth_workspace_disk_write_bytes", "Bytes the workspace wrote to block devices since it started", C,
            w.iter().map(|(u, r)| (user(u), ConstCounter::new(r.disk_write_bytes))))?;
        let g = &snapshot.gpus;
        family(&mut encoder, "berth_gpu_utilization_percent", "GPU utilisation", G,
            g.iter().map(|x| (gpu(x.index), ConstGauge::new(i64::from(x.utilization_percent)))))?;
        family(&mut encoder, "berth_gpu_memory_used_bytes", "GPU memory in use", G,
            g.iter().map(|x| (gpu(x.index), ConstGauge::new(x.memory_used_bytes as i64))))?;
        family(&mut encoder, "berth_gpu_memory_total_bytes", "GPU memory", G,
            g.iter().map(|x| (gpu(x.index), ConstGauge::new(x.memory_total_bytes as i64))))?;
        family(&mut encoder, "berth_gpu_temperature_celsius", "GPU temperature", G,
            g.iter().filter_map(|x| x.temperature_celsius.map(|t| (gpu(x.index), ConstGauge::new(i64::from(t))))))?;
        // Per user and GPU: the memory of the user's processes there, and the GPU's utilisation
        // while they are on it (NVML does not split utilisation by process reliably).
        let mut on_gpu: Vec<([(&'static str, String); 2], u64, u32)> = Vec::new();
        for x in g {
            let mut users: Vec<&str> = x.processes.iter().filter_map(|p| p.user.as_deref()).collect();
            users.sort();
            users.dedup();
            for u in users {
                let memory = x.processes.iter().filter(|p| p.user.as_deref() == Some(u)).filter_map(|p| p.memory_bytes).sum();
                on_gpu.push(([("user", u.to_string()), ("gpu", x.index.to_string())], memory, x.utilization_percent));
            }
        }
        family(&mut encoder, "berth_workspace_gpu_memory_bytes", "GPU memory the workspace's processes use, per GPU", G,
            on_gpu.iter().map(|(l, m, _)| (l.clone(), ConstGauge::new(*m as i64))))?;
        family(&mut encoder, "berth_workspace_gpu_utilization_percent", "Utilisation of each GPU the workspace's processes are on", G,
            on_gpu.iter().map(|(l, _, u)| (l.clone(), ConstGauge::new(i64::from(*u)))))?;
        Ok(())
    }
}
