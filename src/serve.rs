//! `bouncegate serve`: the only place that wires the parts together.
//!
//! Opens (and migrates) the store, builds the token keys, starts the inbound listener, the relay
//! listener and its delivery workers, and stops cleanly on SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::Context;

use crate::analysis::{Analyzer, BounceRules};
use crate::api::HttpHandle;
use crate::config::Config;
use crate::inbound::InboundSink;
use crate::queue::Delivery;
use crate::queue::dkim::DkimSigners;
use crate::relay::{Clients, RelaySink};
use crate::service::SuppressionService;
use crate::smtp::{ListenerConfig, ReplyTexts, ServerHandle, SmtpServer, load_tls};
use crate::store::Store;
use crate::token::TokenKeys;
use crate::upstream::LettreUpstream;

/// Logs go to standard error, for people or as JSON lines (`log.format`); `RUST_LOG` overrides
/// the level. Colour only when standard error is a terminal.
///
/// `RUST_LOG` takes a level (`debug`) or targets with levels (`info,bouncegate::relay=trace`);
/// an unreadable value is reported and the default level kept. It is read by
/// `tracing-subscriber`'s `Targets` filter rather than `EnvFilter`: `EnvFilter`'s span-field
/// filters pull in a regex feature (full DFAs built at every compile) that tripled the time the
/// bounce rules took to compile (BENCHMARKS.md).
pub fn init_logging(default_level: &str, format: crate::config::LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fallback = || {
        default_level
            .parse::<Targets>()
            .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => value.parse::<Targets>().unwrap_or_else(|error| {
            eprintln!(
                "warning: RUST_LOG={value:?} is not a log filter ({error}); using {default_level:?}"
            );
            fallback()
        }),
        _ => fallback(),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter);
    // A closed or full standard error must not take the server down.
    let _ = match format {
        crate::config::LogFormat::Json => registry.with(layer.json()).try_init(),
        crate::config::LogFormat::Human => registry
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
    };
}

/// The analyser with the operator's extra rules from `[analysis] rules`, if any.
///
/// # Errors
/// The rules file cannot be read or is invalid.
pub fn load_analyzer(config: &Config) -> anyhow::Result<Analyzer> {
    Ok(Analyzer::new(load_rules(config)?))
}

fn load_rules(config: &Config) -> anyhow::Result<BounceRules> {
    let mut extensions = Vec::new();
    if let Some(path) = &config.analysis.rules {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read bounce rules {}", path.display()))?;
        extensions.push((path.display().to_string(), text));
    }
    Ok(BounceRules::load(&extensions)?)
}

/// [`load_analyzer`] for the gateway, which runs for long: every text-rule pattern is compiled
/// now (they are otherwise compiled on first use), so that one too large to compile stops the
/// start instead of never matching.
fn load_analyzer_compiled(config: &Config) -> anyhow::Result<Analyzer> {
    let rules = load_rules(config)?;
    rules.compile_all()?;
    Ok(Analyzer::new(rules))
}

/// Runs the gateway until SIGTERM or SIGINT: opens the store, starts the inbound and relay
/// listeners and the delivery workers, and on a signal stops accepting and lets sessions and
/// attempts finish.
///
/// # Errors
/// The store cannot be opened, the rules or TLS files are invalid, or a port cannot be bound.
pub async fn run(config: Arc<Config>) -> anyhow::Result<()> {
    let mut signals = ShutdownSignal::install();
    let gateway = Gateway::start(config).await?;
    signals.wait().await;
    tracing::info!("shutting down: no new connections, sessions finish");
    gateway.stop().await;
    Ok(())
}

/// A running gateway: its listeners, its delivery workers and its store.
pub struct Gateway {
    pub store: Store,
    pub inbound: ServerHandle,
    pub relay: ServerHandle,
    pub http: HttpHandle,
    delivery: tokio::task::JoinHandle<()>,
    webhooks: Option<tokio::task::JoinHandle<()>>,
    purge: Option<tokio::task::JoinHandle<()>>,
    stop_delivery: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    /// Opens (and migrates) the store and starts everything `config` describes.
    ///
    /// # Errors
    /// The store cannot be opened, the rules or TLS files are invalid, or a port cannot be bound.
    pub async fn start(config: Arc<Config>) -> anyhow::Result<Gateway> {
        crate::metrics::init();
        let store = Store::open(&config.database.url, config.database.max_connections).await?;
        tracing::info!(
            database = %crate::cli::redact(&config.database.url),
            backend = ?store.backend(),
            companies = config.companies.len(),
            "store ready, migrations applied"
        );
        // One set of token keys: what the relay mints, inbound verifies.
        let keys = TokenKeys::new(store.secret());
        let (inbound, bounces) = start_inbound(&config, &store, keys.clone()).await?;
        let queued = Arc::new(tokio::sync::Notify::new());
        let service = SuppressionService::new(store.clone(), config.clone());
        let (stop_delivery, stopping) = tokio::sync::watch::channel(false);
        let purge = config
            .retention
            .daily
            .then(|| service.clone().spawn_daily_purge(stopping.clone()));
        let relay = start_relay(&config, service.clone(), keys, queued.clone()).await?;
        let http = start_http(&config, service.clone(), bounces.clone()).await?;
        let hostname = config.relay_hostname();
        let upstream = LettreUpstream::new(&config.relay, &hostname)
            .map_err(|e| anyhow::anyhow!("relay.upstream: {e}"))?;
        let dkim = Arc::new(DkimSigners::load(&config)?);
        let delivery = Delivery::new(
            service,
            Arc::new(upstream),
            bounces,
            Arc::new(load_analyzer_compiled(&config)?),
            config.clone(),
            queued,
            dkim,
        )
        .spawn(stopping.clone());
        tracing::info!(upstream = %config.relay.upstream, "relay delivery running");
        let webhooks = if config.webhooks.is_empty() {
            None
        } else {
            let dispatcher = crate::webhooks::Dispatcher::new(store.clone(), config.clone())?;
            dispatcher.prime().await?;
            tracing::info!(webhooks = config.webhooks.len(), "webhooks out running");
            Some(dispatcher.spawn(stopping))
        };
        Ok(Gateway {
            store,
            inbound,
            relay,
            http,
            delivery,
            webhooks,
            purge,
            stop_delivery,
        })
    }

    /// Stops accepting, lets sessions and delivery attempts finish, and closes the store.
    pub async fn stop(self) {
        self.http.shutdown().await;
        self.relay.shutdown().await;
        self.inbound.shutdown().await;
        let _ = self.stop_delivery.send(true);
        let _ = self.delivery.await;
        if let Some(webhooks) = self.webhooks {
            let _ = webhooks.await;
        }
        if let Some(purge) = self.purge {
            let _ = purge.await;
        }
        self.store.close().await;
    }
}

async fn start_http(
    config: &Arc<Config>,
    service: SuppressionService,
    inbound: Arc<InboundSink>,
) -> anyhow::Result<HttpHandle> {
    if config.http.tokens.is_empty() {
        tracing::warn!(
            "no [[http.tokens]]: the API answers 401 to everything but one-click unsubscribes, /metrics and /openapi.json"
        );
    }
    for token in config.http.tokens.iter().filter(|t| t.token.is_some()) {
        tracing::warn!(
            token = token.name.as_deref().unwrap_or("(unnamed)"),
            "API token in plain text: store `token_hash` (its SHA-256 in hex) instead"
        );
    }
    // One-click requests batch with received mail in the inbound writer's group commits.
    let service = service.with_committer(inbound.committer());
    let state = crate::api::ApiState::new(service, config).with_inbound(inbound);
    let router = crate::api::router(state, config);
    let handle = crate::api::spawn(
        config.http.listen,
        router,
        config.http.max_connections,
        std::time::Duration::from_secs(config.http.header_read_timeout_secs),
    )
    .await
    .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    tracing::info!(address = %handle.local_addr(), "HTTP API listening");
    Ok(handle)
}

async fn start_inbound(
    config: &Arc<Config>,
    store: &Store,
    keys: TokenKeys,
) -> anyhow::Result<(ServerHandle, Arc<InboundSink>)> {
    let analyzer = load_analyzer_compiled(config)?;
    let inbound = &config.inbound;
    let tls = tls_pair(&inbound.tls_certificate, &inbound.tls_key, "inbound")?;
    let hostname = inbound
        .hostname
        .clone()
        .unwrap_or_else(|| inbound.domain.clone());
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
        name: "inbound",
        ..ListenerConfig::new(inbound.listen, hostname)
    };
    let server = SmtpServer::bind(listener, sink.clone())
        .await
        .with_context(|| format!("cannot listen on {} (inbound.listen)", inbound.listen))?;
    let handle = server.spawn();
    tracing::info!(address = %handle.local_addr(), domain = %inbound.domain, "inbound SMTP listening");
    Ok((handle, sink))
}

async fn start_relay(
    config: &Arc<Config>,
    service: SuppressionService,
    keys: TokenKeys,
    queued: Arc<tokio::sync::Notify>,
) -> anyhow::Result<ServerHandle> {
    let relay = &config.relay;
    for client in relay.clients.iter().filter(|c| c.password.is_some()) {
        tracing::warn!(
            client = %client.name(),
            "relay client with a plain `password`: store `password_hash` instead (bouncegate relay hash-password)"
        );
    }
    let tls = tls_pair(&relay.tls_certificate, &relay.tls_key, "relay")?;
    let clients = Arc::new(Clients::new(relay.clients.clone(), relay.max_auth_failures));
    let sink = Arc::new(RelaySink::new(
        config.clone(),
        clients.clone(),
        service,
        keys,
        queued,
    ));
    let listener = ListenerConfig {
        tls,
        limits: relay.limits.clone(),
        texts: ReplyTexts {
            greeting: "ESMTP bouncegate relay".into(),
            unknown_recipient: "Recipient refused".into(),
            help: "This server relays mail for its configured clients; see RFC 5321".into(),
        },
        name: "relay",
        ..ListenerConfig::new(relay.listen, config.relay_hostname())
    };
    let server = SmtpServer::bind_with_auth(listener, sink, Some(Arc::new(clients)))
        .await
        .with_context(|| format!("cannot listen on {} (relay.listen)", relay.listen))?;
    let handle = server.spawn();
    tracing::info!(address = %handle.local_addr(), clients = relay.clients.len(), "relay SMTP listening");
    Ok(handle)
}

fn tls_pair(
    certificate: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
    section: &str,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    Ok(match (certificate, key) {
        (Some(certificate), Some(key)) => Some(load_tls(certificate, key)?),
        (None, None) => None,
        _ => anyhow::bail!(
            "{section}.tls_certificate and {section}.tls_key go together: give both or neither"
        ),
    })
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
