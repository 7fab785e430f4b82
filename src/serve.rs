//! `bouncegate serve`: the only place that wires the parts together.
//!
//! Opens (and migrates) the store, starts what exists, and stops cleanly on SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::Context;

use crate::analysis::{Analyzer, BounceRules};
use crate::config::Config;
use crate::inbound::InboundSink;
use crate::smtp::{ListenerConfig, ReplyTexts, SmtpServer, load_tls};
use crate::store::Store;
use crate::token::TokenKeys;

/// Logs go to standard error; `RUST_LOG` overrides the level.
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A closed or full standard error must not take the server down.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

/// The analyser with the operator's extra rules from `[analysis] rules`, if any.
///
/// # Errors
/// The rules file cannot be read or is invalid.
pub fn load_analyzer(config: &Config) -> anyhow::Result<Analyzer> {
    let mut extensions = Vec::new();
    if let Some(path) = &config.analysis.rules {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read bounce rules {}", path.display()))?;
        extensions.push((path.display().to_string(), text));
    }
    Ok(Analyzer::new(BounceRules::load(&extensions)?))
}

/// Runs the gateway until SIGTERM or SIGINT: opens the store, starts the inbound SMTP listener,
/// and on a signal stops accepting and lets sessions finish.
///
/// # Errors
/// The store cannot be opened, the rules or TLS files are invalid, or a port cannot be bound.
pub async fn run(config: Arc<Config>) -> anyhow::Result<()> {
    let mut signals = ShutdownSignal::install();
    let store = Store::open(&config.database.url, config.database.max_connections).await?;
    tracing::info!(
        database = %crate::cli::redact(&config.database.url),
        backend = ?store.backend(),
        companies = config.companies.len(),
        "store ready, migrations applied"
    );
    let analyzer = load_analyzer(&config)?;
    let inbound = &config.inbound;
    let tls = match (&inbound.tls_certificate, &inbound.tls_key) {
        (Some(certificate), Some(key)) => Some(load_tls(certificate, key)?),
        (None, None) => None,
        _ => anyhow::bail!(
            "inbound.tls_certificate and inbound.tls_key go together: give both or neither"
        ),
    };
    let hostname = inbound
        .hostname
        .clone()
        .unwrap_or_else(|| inbound.domain.clone());
    // One set of token keys: what the relay mints, inbound verifies.
    let keys = TokenKeys::new(store.secret());
    let sink = Arc::new(InboundSink::new(
        store.clone(),
        config.clone(),
        analyzer,
        keys,
    ));
    let listener = ListenerConfig {
        tls,
        limits: inbound.limits.clone(),
        texts: ReplyTexts {
            unknown_recipient: "No such recipient here; this server does not relay".into(),
            help: "This server takes bounces, complaints and unsubscribe requests; see RFC 5321"
                .into(),
            ..ReplyTexts::default()
        },
        ..ListenerConfig::new(inbound.listen, hostname)
    };
    let server = SmtpServer::bind(listener, sink)
        .await
        .with_context(|| format!("cannot listen on {} (inbound.listen)", inbound.listen))?;
    let listener = server.spawn();
    tracing::info!(address = %listener.local_addr(), domain = %inbound.domain, "inbound SMTP listening");
    signals.wait().await;
    tracing::info!("shutting down: no new connections, sessions finish");
    listener.shutdown().await;
    store.close().await;
    Ok(())
}

/// SIGTERM and SIGINT, caught from the moment this exists (also during start-up).
pub struct ShutdownSignal {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    /// Installs the handlers.
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves on the first of them.
    pub async fn wait(&mut self) {
        #[cfg(unix)]
        {
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let interrupt = async {
                match self.interrupt.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = terminate => {}
                _ = interrupt => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
