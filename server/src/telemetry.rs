use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Logs go to stderr; the filter comes from `BERTH_LOG`, else `RUST_LOG`, else `info`.
pub fn init(format: LogFormat) {
    let filter = std::env::var("BERTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn,tower_sessions=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(filter)).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
