//! The SMTP server side: listener, sessions, limits, replies, STARTTLS.
//!
//! Protocol only: it knows nothing of bounces or relaying. It asks a [`MessageSink`] whether a
//! recipient is accepted and hands it each received message (envelope + bytes); the sink's answer
//! becomes the reply. Parsing is Stalwart's `smtp-proto`; every network input is bounded (line
//! length, message size, recipients, time, connections).

mod replies;
mod server;
mod session;
mod tls;

use std::net::IpAddr;
use std::sync::Arc;

pub use crate::config::SmtpLimits;
pub use replies::Reply;
pub use server::{ServerHandle, SmtpServer};
pub use tls::{TlsError, load_tls};

/// The envelope and bytes of one received message.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub peer: IpAddr,
    pub helo: String,
    /// MAIL FROM, empty for the null sender (bounces).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message exactly as received (dot-unstuffed, CRLF line ends as sent).
    pub data: Vec<u8>,
}

/// Why a message or recipient was not taken; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The recipient does not exist here (550 5.1.1).
    #[error("no such recipient")]
    UnknownRecipient,
    /// The message is refused for good (550 5.7.1, or the given reply).
    #[error("refused: {0}")]
    Refused(String),
    /// Could not store it now; the client should retry (451 4.3.0).
    #[error("temporary failure: {0}")]
    Temporary(String),
}

/// Where received messages go.
pub trait MessageSink: Send + Sync + 'static {
    /// Whether `address` is accepted as a recipient (checked at RCPT TO).
    fn accepts_recipient(&self, address: &str) -> Result<(), SinkError>;

    /// Takes one message; `Ok` only once it is durable (the 250 follows).
    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send;
}

/// Shared state of one listener.
pub(crate) struct ServerContext<S> {
    pub sink: Arc<S>,
    pub limits: SmtpLimits,
    pub hostname: String,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}
