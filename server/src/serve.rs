//! `berth serve`: binds the listener, starts the background workers and serves the HTTP
//! surface (`web::router`) until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::Config;
use crate::sessions::SqlSessionStore;

/// Serves until Ctrl-C or SIGTERM.
pub async fn serve(config: Arc<Config>, backend: Backend) -> anyhow::Result<()> {
    let db = backend.db.clone();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (key `listen`): {e}", config.listen))?;
    let store = SqlSessionStore::new(db.clone(), backend.sessions.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "could not delete expired sessions");
            }
        }
    });
    // The audit log's retention: pruned at start and daily.
    let (audit, retention) = (backend.audit.clone(), config.audit.retention.as_secs() as i64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(86_400));
        loop {
            tick.tick().await;
            match audit.prune(retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "audit entries past the retention removed"),
                Err(e) => tracing::warn!(error = %e, "could not prune the audit log"),
            }
        }
    });
    // Every key file from the database: a write that failed before is set right.
    let keys = backend.keys.clone();
    tokio::spawn(async move {
        if let Err(e) = keys.write_all().await {
            tracing::warn!(error = %e, "could not write the workspaces' SSH key files");
        }
    });
    tokio::spawn(backend.workspaces.clone().watch_events());
    tokio::spawn(crate::monitor::run_sampler(backend.monitor.clone(), backend.workspaces.clone()));
    backend.sharing.restart_in_background();
    tokio::spawn(crate::sharing::run(backend.sharing.clone()));
    if let Some(address) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address} (key `metrics_listen`): {e}"))?;
        let state = crate::metrics::MetricsState {
            metrics: backend.metrics.clone(),
            monitor: backend.monitor.clone(),
            db: db.clone(),
            token: config.metrics_token.as_ref().map(|t| t.0.clone()),
        };
        let metrics_only = crate::metrics::route(state);
        tracing::info!(listen = %address, "metrics served on their own address");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, metrics_only).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    // Sessions ended by another process (the CLI's `user disable`) leave this one's forwardAuth
    // cache within about a second.
    let (cache, revocation_db) = (backend.sessions.clone(), db.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = cache.follow_revocations(&revocation_db).await {
                tracing::debug!(error = %e, "could not read the revocation counter");
            }
        }
    });
    // Said once at start (a WARN line when users can become host root); with the engine down,
    // the first workspace operation asks again.
    let workspaces = backend.workspaces.clone();
    tokio::spawn(async move {
        if let Err(e) = workspaces.isolation().await {
            tracing::warn!(error = %e, "isolation mode not known yet: the engine did not answer");
            return;
        }
        if let Ok(capabilities) = workspaces.capabilities().await {
            if !capabilities.swap_limit {
                tracing::warn!(
                    "this engine's kernel does not account swap per container: workspaces' swap limits do not hold \
                     (cgroup v2, or swapaccount=1 on the kernel command line with cgroup v1, turns it on)"
                );
            }
        }
    });
    let sso = backend.sso.clone();
    tokio::spawn(async move { sso.warm_up().await });
    // Told when the shutdown starts, so open live-state streams end instead of holding it up.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let app = crate::web::router(config.clone(), backend, stopping);
    tracing::info!(listen = %config.listen, public_url = %config.public_url(), "Berth is serving");
    println!("Berth is serving on http://{}", config.listen);
    // Small answers (forwardAuth's 200s above all) must leave at once, not wait for Nagle's
    // algorithm to coalesce them with data that never comes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

