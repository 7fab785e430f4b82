//! `bouncegate serve`: the only place that wires the parts together.
//!
//! Opens (and migrates) the store, starts what exists, and stops cleanly on SIGTERM or SIGINT.

use std::sync::Arc;

use crate::config::Config;
use crate::service::SuppressionService;
use crate::store::Store;

/// Logs go to standard error; `RUST_LOG` overrides the level.
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the gateway until SIGTERM or SIGINT.
///
/// # Errors
/// The store cannot be opened.
pub async fn run(config: Arc<Config>) -> anyhow::Result<()> {
    let store = Store::open(&config.database.url, config.database.max_connections).await?;
    tracing::info!(
        database = %crate::cli::redact(&config.database.url),
        backend = ?store.backend(),
        companies = config.companies.len(),
        "store ready, migrations applied"
    );
    let service = SuppressionService::new(store, config);
    shutdown_signal().await;
    tracing::info!("shutting down");
    service.store().close().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
