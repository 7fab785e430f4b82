//! The next hop: a narrow [`Upstream`] trait (one message to one recipient, as VERP needs) whose
//! errors say whether trying again can help, and its implementation with lettre (pooled
//! connections, STARTTLS or TLS, AUTH).

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};

use crate::config::{RelayConfig, UpstreamTls};

/// How long one SMTP exchange with the upstream may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the upstream did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// It answered with a refusal.
    #[error("{code} {text}")]
    Refused { code: u16, text: String },
    /// It could not be reached, or the exchange broke off.
    #[error("{0}")]
    Unreachable(String),
    /// The addresses cannot be put in an SMTP envelope.
    #[error("{0}")]
    BadEnvelope(String),
}

impl UpstreamError {
    /// Whether a later attempt may succeed (a 4xx, or no connection).
    pub fn is_transient(&self) -> bool {
        match self {
            UpstreamError::Refused { code, .. } => (400..500).contains(code),
            UpstreamError::Unreachable(_) => true,
            UpstreamError::BadEnvelope(_) => false,
        }
    }
}

/// Delivers one message to one recipient.
pub trait Upstream: Send + Sync + 'static {
    /// Sends `message` with the envelope `from` → `to`; `Ok` once the upstream said 250.
    fn send(
        &self,
        from: &str,
        to: &str,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<(), UpstreamError>> + Send;
}

/// The upstream over lettre's pooled SMTP transport.
pub struct LettreUpstream {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl LettreUpstream {
    /// A transport to `relay.upstream` as configured, greeting as `hostname`.
    ///
    /// # Errors
    /// The upstream is not `host:port`, or its TLS settings cannot be built.
    pub fn new(config: &RelayConfig, hostname: &str) -> Result<Self, UpstreamError> {
        let (host, port) = config
            .upstream
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                UpstreamError::BadEnvelope(format!("{:?} is not host:port", config.upstream))
            })?;
        let tls = match config.upstream_tls {
            UpstreamTls::None => Tls::None,
            UpstreamTls::Starttls | UpstreamTls::Tls => {
                let parameters = TlsParameters::new(host.to_string())
                    .map_err(|e| UpstreamError::Unreachable(format!("TLS settings: {e}")))?;
                if config.upstream_tls == UpstreamTls::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .hello_name(ClientId::Domain(hostname.to_string()))
            .timeout(Some(UPSTREAM_TIMEOUT))
            .pool_config(
                PoolConfig::new()
                    .max_size(u32::try_from(config.upstream_connections).unwrap_or(u32::MAX)),
            );
        if let (Some(user), Some(password)) = (&config.upstream_user, &config.upstream_password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }
}

impl Upstream for LettreUpstream {
    async fn send(&self, from: &str, to: &str, message: &[u8]) -> Result<(), UpstreamError> {
        let parse = |address: &str| {
            address.parse::<lettre::Address>().map_err(|e| {
                UpstreamError::BadEnvelope(format!("{address:?} cannot go in an envelope: {e}"))
            })
        };
        let envelope = Envelope::new(Some(parse(from)?), vec![parse(to)?])
            .map_err(|e| UpstreamError::BadEnvelope(e.to_string()))?;
        match self.transport.send_raw(&envelope, message).await {
            Ok(_) => Ok(()),
            Err(error) => Err(match error.status() {
                Some(code) => UpstreamError::Refused {
                    code: u16::from(code),
                    // The upstream's own words, without lettre's "permanent error (550): ".
                    text: std::error::Error::source(&error)
                        .map_or_else(|| error.to_string(), |s| s.to_string()),
                },
                None => UpstreamError::Unreachable(error.to_string()),
            }),
        }
    }
}
