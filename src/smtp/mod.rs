//! The SMTP server side: listener, sessions, limits, replies, STARTTLS, AUTH.
//!
//! Protocol only: it knows nothing of bounces or relaying. It asks a [`MessageSink`] at MAIL, RCPT
//! and the end of DATA, showing it what it knows of the session ([`SessionInfo`]) and the full
//! envelope parameters; the sink's answer becomes the reply. Clients authenticate (AUTH PLAIN,
//! LOGIN) against an [`Authenticator`] where the listener has one. Parsing is Stalwart's
//! `smtp-proto`; every network input is bounded (line length, message size, recipients, time,
//! connections). Per-listener settings live in one [`ListenerConfig`].

mod auth;
mod replies;
mod server;
mod session;
mod tls;

use std::net::{IpAddr, SocketAddr};

pub use crate::config::SmtpLimits;
pub use auth::{AuthOutcome, Authenticator, NoAuth};
pub use replies::Reply;
pub use server::{ServerHandle, SmtpServer};
pub use tls::{TlsError, load_tls};

/// What the server knows of a session when it asks the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub peer: IpAddr,
    /// The name given in EHLO/HELO (empty before it).
    pub helo: String,
    /// Whether the connection is encrypted (STARTTLS done).
    pub tls: bool,
    /// Who the client authenticated as (AUTH), if it did.
    pub identity: Option<String>,
}

/// The body type a client declared (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// What a DSN should return of the message (RFC 3461 `RET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnReturn {
    Full,
    Headers,
}

/// MAIL FROM with its parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailFrom {
    /// The reverse path; empty for the null sender (bounces).
    pub address: String,
    /// `SIZE=`, when declared.
    pub size: Option<usize>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    /// RFC 3461 `ENVID`.
    pub envid: Option<String>,
    pub ret: Option<DsnReturn>,
}

/// When a DSN should be sent for a recipient (RFC 3461 `NOTIFY`; all `false`: not given).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
    pub never: bool,
}

/// RCPT TO with its parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptTo {
    pub address: String,
    /// The address of RFC 3461 `ORCPT` (without its `rfc822;` type).
    pub orcpt: Option<String>,
    pub notify: Notify,
}

/// The envelope and bytes of one received message.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub session: SessionInfo,
    pub mail_from: MailFrom,
    /// The recipients the sink took at RCPT, in order.
    pub rcpt_to: Vec<RcptTo>,
    /// The message exactly as received (dot-unstuffed, line ends as sent).
    pub data: Vec<u8>,
}

impl ReceivedMessage {
    /// The recipients' addresses.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.rcpt_to.iter().map(|r| r.address.as_str())
    }
}

/// Why a message or recipient was not taken; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The recipient does not exist here (550 5.1.1, the listener's wording).
    #[error("no such recipient")]
    UnknownRecipient,
    /// The message is refused for good (550 5.7.1 with this text).
    #[error("refused: {0}")]
    Refused(String),
    /// Could not store it now; the client should retry (451 4.3.0).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Exactly this reply.
    #[error("{}", .0.text)]
    Reply(Reply),
}

/// Where received messages go, and who may send them: asked at MAIL, RCPT and end of DATA.
pub trait MessageSink: Send + Sync + 'static {
    /// Whether this sender may start a transaction (checked at MAIL FROM; default: anyone).
    fn mail(
        &self,
        _session: &SessionInfo,
        _from: &MailFrom,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Whether `to` is taken as a recipient of this transaction (checked at RCPT TO).
    fn rcpt(
        &self,
        session: &SessionInfo,
        from: &MailFrom,
        to: &RcptTo,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send;

    /// Takes one message; `Ok` only once it is durable (the 250 follows).
    fn data(
        &self,
        message: ReceivedMessage,
    ) -> impl std::future::Future<Output = Result<(), SinkError>> + Send;
}

/// Reply texts a listener words its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTexts {
    /// After `220 <hostname> ` in the banner.
    pub greeting: String,
    /// With 550 5.1.1 for a recipient the sink does not know.
    pub unknown_recipient: String,
    /// With 214 for HELP.
    pub help: String,
}

impl Default for ReplyTexts {
    fn default() -> Self {
        Self {
            greeting: "ESMTP bouncegate".into(),
            unknown_recipient: "No such recipient here".into(),
            help: "See RFC 5321".into(),
        }
    }
}

/// Everything one listener is: where, under which name, with which TLS, limits and wording.
#[derive(Clone)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    /// The name in the banner and the EHLO answer.
    pub hostname: String,
    /// With a certificate, STARTTLS is offered.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: SmtpLimits,
    pub texts: ReplyTexts,
    /// The listener's name in metrics (`inbound`, `relay`).
    pub name: &'static str,
}

impl ListenerConfig {
    /// A listener on `address` named `hostname`, without TLS, with default limits and wording.
    pub fn new(address: SocketAddr, hostname: impl Into<String>) -> Self {
        Self {
            address,
            hostname: hostname.into(),
            tls: None,
            limits: SmtpLimits::default(),
            texts: ReplyTexts::default(),
            name: "smtp",
        }
    }
}

/// Shared state of one listener.
pub(crate) struct ServerContext<S, A> {
    pub sink: std::sync::Arc<S>,
    pub authenticator: Option<std::sync::Arc<A>>,
    pub config: ListenerConfig,
}
