//! The next hop: a narrow [`Upstream`] trait (one message to one recipient, as VERP needs) whose
//! errors say whether trying again can help, and its implementation with lettre's SMTP
//! connection (STARTTLS or TLS, AUTH) in a pool of our own.
//!
//! The pool is ours, not lettre's transport, for one reason measured in `benches/relay.sh`:
//! lettre writes a message and its final `.` in two writes on a socket with Nagle's algorithm
//! on, so every message waited out the upstream's delayed ACK (40 ms) and a connection carried
//! 25 mails a second. Here the socket is opened with `TCP_NODELAY` and handed to lettre.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{Mutex, Semaphore};

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

/// The upstream over lettre's SMTP connection, pooled.
pub struct LettreUpstream {
    host: String,
    port: u16,
    tls: UpstreamTls,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Connections not in use.
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    /// One permit per connection allowed at once.
    slots: Semaphore,
}

impl LettreUpstream {
    /// A pool to `relay.upstream` as configured, greeting as `hostname`.
    ///
    /// # Errors
    /// The upstream is not `host:port`.
    pub fn new(config: &RelayConfig, hostname: &str) -> Result<Self, UpstreamError> {
        let (host, port) = config
            .upstream
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                UpstreamError::BadEnvelope(format!("{:?} is not host:port", config.upstream))
            })?;
        let credentials = match (&config.upstream_user, &config.upstream_password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            _ => None,
        };
        Ok(Self {
            host: host.to_string(),
            port,
            tls: config.upstream_tls,
            credentials,
            hello: ClientId::Domain(hostname.to_string()),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(config.upstream_connections.max(1)),
        })
    }

    /// A new connection: TCP without Nagle, TLS as configured, EHLO, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, UpstreamError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            UpstreamError::Unreachable(format!("{}:{}: {e}", self.host, self.port))
        };
        let tls =
            || TlsParameters::new(self.host.clone()).map_err(|e| unreachable(&format!("TLS: {e}")));
        let mut connection = match self.tls {
            // Implicit TLS (port 465): lettre opens the socket itself.
            UpstreamTls::Tls => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(UPSTREAM_TIMEOUT),
                &self.hello,
                Some(tls()?),
                None,
            )
            .await
            .map_err(|e| unreachable(&e))?,
            UpstreamTls::None | UpstreamTls::Starttls => {
                let stream = tokio::time::timeout(
                    UPSTREAM_TIMEOUT,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| unreachable(&"connection timed out"))?
                .map_err(|e| unreachable(&e))?;
                stream.set_nodelay(true).map_err(|e| unreachable(&e))?;
                let mut connection =
                    AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                        .await
                        .map_err(|e| unreachable(&e))?;
                if self.tls == UpstreamTls::Starttls {
                    connection
                        .starttls(tls()?, &self.hello)
                        .await
                        .map_err(|e| unreachable(&e))?;
                }
                connection
            }
        };
        if let Some(credentials) = &self.credentials {
            // Refused credentials are this side's misconfiguration, never a verdict on a
            // recipient: the mail waits (and is retried) instead of bouncing.
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| unreachable(&format!("the upstream refused our AUTH: {e}")))?;
        }
        Ok(connection)
    }
}

/// The upstream's answer in an error, when it gave one.
fn refusal(error: &lettre::transport::smtp::Error) -> Option<UpstreamError> {
    error.status().map(|code| UpstreamError::Refused {
        code: u16::from(code),
        // The upstream's own words, without lettre's "permanent error (550): ".
        text: std::error::Error::source(error).map_or_else(|| error.to_string(), |s| s.to_string()),
    })
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
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| UpstreamError::Unreachable("the upstream pool is closed".into()))?;
        // A connection that idled may have been closed by the upstream meanwhile: a failure
        // without an answer on a reused one is tried once more on a new one.
        let reused = self.idle.lock().await.pop();
        let retry_fresh = reused.is_some();
        let mut connection = match reused {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let mut result = connection.send(&envelope, message).await;
        if retry_fresh && matches!(&result, Err(e) if e.status().is_none()) {
            connection = self.connect().await?;
            result = connection.send(&envelope, message).await;
        }
        if !connection.has_broken() {
            self.idle.lock().await.push(connection);
        }
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                Err(refusal(&error)
                    .unwrap_or_else(|| UpstreamError::Unreachable(error.to_string())))
            }
        }
    }
}
