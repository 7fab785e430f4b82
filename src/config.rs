//! Configuration: the TOML file, its safe defaults and its validation.
//!
//! A leaf everyone may read. Every setting has a default, so an empty file (or none) runs the
//! gateway on the embedded SQLite store on loopback ports. Unknown keys and inconsistent settings
//! are refused at start with the key and the line.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::model::{MailClass, Reason};

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "BOUNCEGATE_CONFIG";
/// Environment variable overriding `database.url`.
pub const DATABASE_URL_ENV: &str = "BOUNCEGATE_DATABASE_URL";

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config file {path}, line {line}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub erasure: ErasureConfig,
    pub retention: RetentionConfig,
    pub inbound: InboundConfig,
    pub relay: RelayConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// `[[webhooks]]`: receivers of the gateway's events.
    pub webhooks: Vec<WebhookConfig>,
    /// `[hooks.*]`: the upstream ESP's bounce and complaint notifications.
    pub hooks: HooksConfig,
    pub webhook_delivery: WebhookDeliveryConfig,
    pub policy: PolicyConfig,
    pub analysis: AnalysisConfig,
    pub companies: Vec<CompanyConfig>,
    /// `[[staff]]`: accounts of the staff web page (`/staff`).
    pub staff: Vec<StaffAccount>,
}

/// `[[staff]]`: a person who signs in to the staff web page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffAccount {
    pub user: String,
    /// An argon2id PHC string (`bouncegate relay hash-password` prints one).
    pub password_hash: String,
    pub role: StaffRole,
}

/// What a staff account may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StaffRole {
    /// Look up contacts, see blocks, events and evidence.
    Viewer,
    /// Also add e-mail and postal blocks and lift bounce and staff blocks.
    Editor,
    /// Also erase, import and export.
    Admin,
}

impl StaffRole {
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Viewer => "viewer",
            StaffRole::Editor => "editor",
            StaffRole::Admin => "admin",
        }
    }
}

impl StaffAccount {
    fn check(&self) -> Result<(), (String, String)> {
        let user = self.user.trim();
        if user.is_empty()
            || user.len() > 64
            || user.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err((
                "user".into(),
                "1 to 64 characters, no spaces or control characters".into(),
            ));
        }
        match argon2::password_hash::PasswordHash::new(&self.password_hash) {
            Ok(parsed) if parsed.algorithm.as_str() == "argon2id" => Ok(()),
            _ => Err((
                "password_hash".into(),
                "is not an argon2id hash: make one with `bouncegate relay hash-password`".into(),
            )),
        }
    }
}

/// `[erasure]`: what a data-protection erasure keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErasureConfig {
    /// Keep the evidence of a standing opt-out (the original unsubscribe mail or complaint): it is
    /// the proof that the block is lawful (GDPR Art. 17(3)(e)). `false`: it goes too, and the
    /// suppression keeps only its hash, reason and dates.
    pub keep_opt_out_evidence: bool,
}

impl Default for ErasureConfig {
    fn default() -> Self {
        Self {
            keep_opt_out_evidence: true,
        }
    }
}

/// `[retention]`: how long what is held about an address is kept (`bouncegate purge`, and daily
/// inside `serve`). Never purged, whatever the settings: a standing suppression, the proof of a
/// standing opt-out or complaint, a consent, and the keyed hash of an erasure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events (bounces, deliveries, auto-replies, lifts …), blocked sends and delivered webhook
    /// calls; not the event a standing suppression follows from, nor an erasure's record.
    pub events_days: u32,
    /// Raw bounce, delay and auto-reply mails.
    pub bounce_mail_days: u32,
    /// Send records and finished queue items (metadata of relayed mail); never below
    /// `inbound.token_max_age_days`, or a valid token would name a forgotten send.
    pub sends_days: u32,
    /// The evidence of an opt-out once it was lifted (by the owner's consent), counted from the
    /// lift; also lifted suppressions' own rows.
    pub lifted_proof_days: u32,
    /// Expired suppressions (soft bounces with an expiry), counted from the expiry.
    pub expired_suppression_days: u32,
    /// Purge once a day inside `serve` (first run an hour after start). `false`: run
    /// `bouncegate purge` from cron, or on one instance of several.
    pub daily: bool,
    /// Rows per purge transaction: small enough that inbound mail and checks keep their pace.
    pub batch_size: u32,
    /// Pause between two batches, in milliseconds.
    pub batch_pause_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events_days: 1095,
            bounce_mail_days: 90,
            sends_days: 400,
            lifted_proof_days: 1095,
            expired_suppression_days: 365,
            daily: true,
            batch_size: 50,
            batch_pause_ms: 10,
        }
    }
}

impl RetentionConfig {
    fn check(&self, inbound: &InboundConfig) -> Result<(), (String, String)> {
        for (key, value) in [
            ("events_days", self.events_days),
            ("bounce_mail_days", self.bounce_mail_days),
            ("sends_days", self.sends_days),
            ("lifted_proof_days", self.lifted_proof_days),
            ("expired_suppression_days", self.expired_suppression_days),
            ("batch_size", self.batch_size),
        ] {
            if value == 0 {
                return Err((format!("retention.{key}"), "must be at least 1".into()));
            }
        }
        if self.sends_days < inbound.token_max_age_days {
            return Err((
                "retention.sends_days".into(),
                format!(
                    "must be at least inbound.token_max_age_days ({}): a token still valid must find its send record",
                    inbound.token_max_age_days
                ),
            ));
        }
        if self.batch_size > 100_000 {
            return Err((
                "retention.batch_size".into(),
                "at most 100000: one batch is one write transaction".into(),
            ));
        }
        Ok(())
    }
}

/// `[analysis]`: the bounce analyser.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Operator bounce rules (same shape as `config/bounce-rules.toml`), tried before the shipped
    /// ones; relative to the working directory.
    pub rules: Option<PathBuf>,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://…`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/bouncegate.db".into(),
            max_connections: 8,
        }
    }
}

/// `[inbound]`: the MX / return-path listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    pub listen: SocketAddr,
    /// The bounce / return-path / unsubscribe domain.
    pub domain: String,
    /// Whether plain DSNs without a valid token may suppress.
    pub trust_unsigned_bounces: bool,
    /// Name this server gives in its greeting and EHLO answer (default: `domain`).
    pub hostname: Option<String>,
    /// PEM certificate chain and private key for STARTTLS; without both, STARTTLS is not offered.
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Hard bounces needed before an address is suppressed.
    pub hard_bounce_threshold: u32,
    /// Soft failures (one per original message) within `soft_bounce_window_days` that make a
    /// `soft_bounce` suppression.
    pub soft_bounce_threshold: u32,
    pub soft_bounce_window_days: u32,
    /// Days after which a `soft_bounce` suppression stops counting (none: never).
    pub soft_bounce_expiry_days: Option<u32>,
    /// Days a VERP or unsubscribe token stays valid after it was minted.
    pub token_max_age_days: u32,
    /// Plain unsubscribe mails (to `unsubscribe-<company>@`) from one client IP within an hour
    /// that take effect unauthenticated; past it they are kept for staff review instead.
    pub max_unsubscribes_per_sender_ip_per_hour: u32,
    /// `IP:port` of the DNS server asked for DKIM keys and SPF records (default: the system's).
    pub dns_resolver: Option<SocketAddr>,
    pub limits: SmtpLimits,
    pub local_parts: LocalParts,
}

/// `[inbound.local_parts]`: the recipient forms the listener takes (defaults are the contract:
/// `b+TOKEN`, `bounces`, `unsubscribe+TOKEN`, `unsubscribe-<company>`, `fbl`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalParts {
    pub verp_prefix: String,
    pub bounces: String,
    pub unsubscribe_prefix: String,
    pub feedback: String,
}

impl Default for LocalParts {
    fn default() -> Self {
        Self {
            verp_prefix: "b".into(),
            bounces: "bounces".into(),
            unsubscribe_prefix: "unsubscribe".into(),
            feedback: "fbl".into(),
        }
    }
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            domain: "bounces.localhost".into(),
            trust_unsigned_bounces: false,
            hostname: None,
            tls_certificate: None,
            tls_key: None,
            hard_bounce_threshold: 1,
            soft_bounce_threshold: 3,
            soft_bounce_window_days: 30,
            soft_bounce_expiry_days: None,
            token_max_age_days: 400,
            max_unsubscribes_per_sender_ip_per_hour: 20,
            dns_resolver: None,
            limits: SmtpLimits::default(),
            local_parts: LocalParts::default(),
        }
    }
}

/// `[inbound.limits]`: what one SMTP client may cost. Timeouts follow RFC 5321 section 4.5.3.2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpLimits {
    /// Largest message accepted, in bytes (552 past it).
    pub max_message_size: usize,
    /// Recipients per transaction (452 past it).
    pub max_recipients: usize,
    /// Open connections in total, and from one IP address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Seconds a whole command line may take to arrive (counted from the previous reply, not per
    /// read, so a client trickling a byte at a time is cut off too), and seconds each block of
    /// message data may take.
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// After the first `data_timeout_secs` of DATA, the message must keep arriving at this many
    /// bytes per second on average (a trickled message is cut off, 421).
    pub min_data_rate: u64,
    /// Seconds one connection may last in all.
    pub session_timeout_secs: u64,
    /// Unknown or malformed commands before the connection is dropped.
    pub max_bad_commands: u32,
    /// NOOP, RSET, HELP, VRFY and EXPN commands one session may send (they keep a connection
    /// busy without delivering anything).
    pub max_junk_commands: u32,
    /// Seconds sessions get to finish when the server stops.
    pub shutdown_grace_secs: u64,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        Self {
            max_message_size: 25 << 20,
            max_recipients: 100,
            max_connections: 2_000,
            max_connections_per_ip: 50,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            min_data_rate: 1024,
            session_timeout_secs: 1800,
            max_bad_commands: 10,
            max_junk_commands: 50,
            shutdown_grace_secs: 30,
        }
    }
}

/// `[relay]`: the campaign relay (submission listener, queue, upstream).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// Name in the greeting and EHLO answer (default: `inbound.hostname`, else the inbound domain).
    pub hostname: Option<String>,
    /// PEM certificate chain and key; with both, STARTTLS is offered.
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `host:port` of the next SMTP hop.
    pub upstream: String,
    pub upstream_tls: UpstreamTls,
    pub upstream_user: Option<String>,
    pub upstream_password: Option<String>,
    /// Connections to the upstream at once.
    pub upstream_connections: usize,
    /// Failed AUTH attempts from one IP within 10 minutes before it gets 421 for 10 minutes.
    pub max_auth_failures: u32,
    /// Waits before each retry of a temporary failure (`30s`, `5m`, `2h`, `1d`); the last repeats.
    pub retry_schedule: Vec<String>,
    /// How long a mail may stay queued before it fails for good.
    pub max_queue_age: String,
    pub limits: SmtpLimits,
    pub clients: Vec<RelayClient>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2587)),
            hostname: None,
            tls_certificate: None,
            tls_key: None,
            upstream: "127.0.0.1:25".into(),
            upstream_tls: UpstreamTls::None,
            upstream_user: None,
            upstream_password: None,
            upstream_connections: 20,
            max_auth_failures: 5,
            retry_schedule: ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
                .map(String::from)
                .to_vec(),
            max_queue_age: "5d".into(),
            limits: SmtpLimits::default(),
            clients: Vec::new(),
        }
    }
}

impl RelayConfig {
    /// What serde cannot check: durations, the upstream, limits.
    fn check(&self) -> Result<(), (String, String)> {
        check_retries(
            &self.retry_schedule,
            "relay.retry_schedule",
            &self.max_queue_age,
            "relay.max_queue_age",
        )?;
        let port = self
            .upstream
            .rsplit_once(':')
            .map(|(_, p)| p.parse::<u16>());
        if !matches!(port, Some(Ok(p)) if p > 0) {
            return Err((
                "relay.upstream".into(),
                format!("{:?} is not host:port", self.upstream),
            ));
        }
        if self.upstream_connections == 0 {
            return Err((
                "relay.upstream_connections".into(),
                "must be at least 1".into(),
            ));
        }
        if self.upstream_user.is_some() != self.upstream_password.is_some() {
            return Err((
                "relay.upstream_user".into(),
                "`upstream_user` and `upstream_password` go together".into(),
            ));
        }
        if self.tls_certificate.is_some() != self.tls_key.is_some() {
            return Err((
                "relay.tls_certificate".into(),
                "`tls_certificate` and `tls_key` go together".into(),
            ));
        }
        self.limits.check("relay.limits")
    }

    /// The retry schedule as durations.
    pub fn retry_delays(&self) -> Vec<std::time::Duration> {
        durations(&self.retry_schedule)
    }

    /// The queue age past which a mail fails.
    pub fn max_queue_age(&self) -> std::time::Duration {
        parse_duration(&self.max_queue_age).unwrap_or(std::time::Duration::from_secs(5 * 86_400))
    }
}

/// A retry schedule (waits, the last repeating) and the age past which one gives up.
fn check_retries(
    schedule: &[String],
    schedule_key: &str,
    max_age: &str,
    max_age_key: &str,
) -> Result<(), (String, String)> {
    if schedule.is_empty() {
        return Err((
            schedule_key.into(),
            "needs at least one wait (like [\"5m\"])".into(),
        ));
    }
    for (wait, key) in schedule
        .iter()
        .map(|w| (w.as_str(), schedule_key))
        .chain([(max_age, max_age_key)])
    {
        if parse_duration(wait).is_none_or(|d| d.is_zero()) {
            return Err((
                key.into(),
                format!("{wait:?} is not a duration (like \"30s\", \"5m\", \"2h\", \"5d\")"),
            ));
        }
    }
    Ok(())
}

/// The waits of a checked schedule.
fn durations(schedule: &[String]) -> Vec<std::time::Duration> {
    schedule.iter().filter_map(|d| parse_duration(d)).collect()
}

/// How the relay talks to its upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    /// Plain SMTP (a smarthost on a trusted network).
    #[default]
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `30s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(number.checked_mul(seconds)?))
}

/// `[[relay.clients]]`: a sender allowed to relay, and what it may send for. It authenticates
/// with `user` and `password_hash` (or `password`), or relays from `networks` without AUTH.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayClient {
    #[serde(default)]
    pub user: Option<String>,
    /// Accepted, with a warning at start: prefer `password_hash`.
    #[serde(default)]
    pub password: Option<String>,
    /// An argon2id PHC string (`bouncegate relay hash-password`).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Clients from these networks relay as this client without AUTH (like Postfix's
    /// mynetworks); at most /16 (IPv4) or /48 (IPv6) each.
    #[serde(default)]
    pub networks: Vec<String>,
    pub company: Spanned<String>,
    #[serde(default)]
    pub brands: Vec<Spanned<String>>,
    /// The class of a mail without `X-Bouncegate-Class`.
    #[serde(default)]
    pub default_class: MailClass,
    /// Fixes the class: the header is not read.
    #[serde(default)]
    pub class: Option<MailClass>,
}

/// Widest network a client may relay from: an open relay by configuration is still one.
const WIDEST_IPV4: u8 = 16;
const WIDEST_IPV6: u8 = 48;

impl RelayClient {
    /// A name for this client in logs and records: its user, else its first network.
    pub fn name(&self) -> String {
        match (&self.user, self.networks.first()) {
            (Some(user), _) => user.clone(),
            (None, Some(network)) => format!("networks:{network}"),
            (None, None) => "unnamed".into(),
        }
    }

    /// The parsed networks (valid after [`Config::parse`]).
    pub fn parsed_networks(&self) -> Vec<ipnet::IpNet> {
        self.networks
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .collect()
    }

    /// One way to authenticate, well formed: `(key, message)` otherwise.
    fn check(&self) -> Result<(), (String, String)> {
        let credential = self.password.is_some() || self.password_hash.is_some();
        let by_password = self.user.is_some() || credential;
        match (by_password, self.networks.is_empty()) {
            (false, true) => {
                return Err((
                    "user".into(),
                    "a client needs `user` with `password_hash` (or `password`), or `networks`"
                        .into(),
                ));
            }
            (true, false) => {
                return Err((
                    "networks".into(),
                    "a client authenticates with a password or relays from `networks`, not both: make two clients".into(),
                ));
            }
            _ => {}
        }
        if by_password {
            if self.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
                return Err(("user".into(), "a password needs a user name".into()));
            }
            match (&self.password, &self.password_hash) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err((
                        "password".into(),
                        format!(
                            "client {:?} needs exactly one of `password` or `password_hash`",
                            self.name()
                        ),
                    ));
                }
                (_, Some(hash)) => {
                    argon2::PasswordHash::new(hash).map_err(|e| {
                        (
                            "password_hash".into(),
                            format!(
                                "not a PHC password hash ({e}); make one with `bouncegate relay hash-password`"
                            ),
                        )
                    })?;
                }
                _ => {}
            }
        }
        for network in &self.networks {
            parse_network(network).map_err(|message| ("networks".to_string(), message))?;
        }
        if self.class.is_some() && self.default_class != MailClass::default() {
            return Err((
                "class".into(),
                "`class` fixes the class; `default_class` would never apply: give one of them"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A network a client may relay from: valid, and no wider than /16 or /48.
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let network: ipnet::IpNet = match text.trim().parse() {
        Ok(network) => network,
        Err(_) => match text.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => ipnet::IpNet::from(ip),
            Err(_) => return Err(format!("{text:?} is not a network (like 10.1.2.0/24)")),
        },
    };
    let (prefix, widest) = match network {
        ipnet::IpNet::V4(n) => (n.prefix_len(), WIDEST_IPV4),
        ipnet::IpNet::V6(n) => (n.prefix_len(), WIDEST_IPV6),
    };
    if prefix < widest {
        return Err(format!(
            "{text:?} is wider than /{widest}: every host in it could relay (an open relay by configuration)"
        ));
    }
    Ok(network.trunc())
}

/// `[http]`: API and one-click unsubscribe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base of the links put into List-Unsubscribe.
    pub public_url: String,
    pub tokens: Vec<ApiToken>,
    /// Largest request body (bulk filter and import stream past it).
    pub max_body_size: usize,
    /// Requests served at once; more wait.
    pub max_concurrent_requests: usize,
    /// Open connections at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers (a slow client holds no slot longer).
    pub header_read_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            public_url: "http://127.0.0.1:8025".into(),
            tokens: Vec::new(),
            max_body_size: 1024 * 1024,
            max_concurrent_requests: 512,
            max_connections: 1024,
            header_read_timeout_secs: 10,
        }
    }
}

impl HttpConfig {
    fn check(&self) -> Result<(), (String, String)> {
        if self.max_body_size == 0 {
            return Err(("http.max_body_size".into(), "must be at least 1".into()));
        }
        for (key, value) in [
            (
                "http.max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("http.max_connections", self.max_connections as u64),
            (
                "http.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err((
                "http.public_url".into(),
                format!("{:?} is not an http(s) URL", self.public_url),
            ));
        }
        for (i, token) in self.tokens.iter().enumerate() {
            token
                .check()
                .map_err(|(key, message)| (format!("http.tokens[{i}].{key}"), message))?;
        }
        Ok(())
    }
}

/// Shortest plain API token accepted (a guessable token is no lock).
pub const MIN_TOKEN_LEN: usize = 16;

/// An API bearer token and what it may do: `token` in plain text, or `token_hash`, its SHA-256
/// in hex (so the config file does not hold the secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// A name for logs (which token was used); never the token.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_hash: Option<String>,
    pub role: ApiRole,
}

impl ApiToken {
    fn check(&self) -> Result<(), (String, String)> {
        match (&self.token, &self.token_hash) {
            (Some(_), Some(_)) => Err((
                "token_hash".into(),
                "give token or token_hash, not both".into(),
            )),
            (None, None) => Err((
                "token".into(),
                "give token or token_hash (its SHA-256 in hex)".into(),
            )),
            (Some(token), None) if token.len() < MIN_TOKEN_LEN => Err((
                "token".into(),
                format!("is shorter than {MIN_TOKEN_LEN} characters: too easy to guess"),
            )),
            (None, Some(hash))
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Err((
                    "token_hash".into(),
                    "is not a SHA-256 in hex (64 characters 0-9, a-f)".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What an API token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Queries and evidence download.
    Read,
    /// Also suppress, lift, consent, erase, import.
    Write,
    /// Also queue control.
    Admin,
}

/// The events a webhook can receive.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "suppression.created",
    "suppression.lifted",
    "send.blocked",
    "bounce.received",
    "complaint.received",
    "unsubscribe.received",
    "consent.recorded",
    "erasure.done",
];

/// `[[webhooks]]`: a receiver of events, POSTed as JSON signed the Standard Webhooks way.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook's place in the outbox (default: its URL); renaming starts it afresh.
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    /// The signing secret: `whsec_` and base64 (as Standard Webhooks libraries make them), or any
    /// text of 16 characters or more.
    pub secret: String,
    /// Which events (default: all).
    #[serde(default)]
    pub events: Vec<String>,
}

impl WebhookConfig {
    /// The webhook's key in the outbox.
    pub fn key(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }

    /// Whether it wants `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    /// The HMAC key.
    pub fn key_bytes(&self) -> Vec<u8> {
        match self.secret.strip_prefix("whsec_") {
            Some(encoded) => data_encoding::BASE64
                .decode(encoded.as_bytes())
                .unwrap_or_else(|_| self.secret.as_bytes().to_vec()),
            None => self.secret.as_bytes().to_vec(),
        }
    }

    fn check(&self) -> Result<(), (String, String)> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err((
                "url".into(),
                format!("{:?} is not an http(s) URL", self.url),
            ));
        }
        match self.secret.strip_prefix("whsec_") {
            Some(encoded) if data_encoding::BASE64.decode(encoded.as_bytes()).is_err() => {
                return Err(("secret".into(), "whsec_ must be followed by base64".into()));
            }
            None if self.secret.len() < 16 => {
                return Err((
                    "secret".into(),
                    "is shorter than 16 characters: too easy to guess".into(),
                ));
            }
            _ => {}
        }
        for event in &self.events {
            if !WEBHOOK_EVENTS.contains(&event.as_str()) {
                return Err((
                    "events".into(),
                    format!(
                        "{event:?} is not an event (one of {})",
                        WEBHOOK_EVENTS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `[webhook_delivery]`: how long and how often a webhook is retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookDeliveryConfig {
    /// Waits between attempts; the last repeats until `max_age`.
    pub retry_schedule: Vec<String>,
    /// After this, an undelivered event is given up (kept as failed in the outbox).
    pub max_age: String,
    /// Seconds one POST may take.
    pub timeout_secs: u64,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> Self {
        Self {
            retry_schedule: ["10s", "1m", "5m", "30m", "2h", "6h"]
                .map(String::from)
                .to_vec(),
            max_age: "3d".into(),
            timeout_secs: 10,
        }
    }
}

impl WebhookDeliveryConfig {
    fn check(&self) -> Result<(), (String, String)> {
        check_retries(
            &self.retry_schedule,
            "webhook_delivery.retry_schedule",
            &self.max_age,
            "webhook_delivery.max_age",
        )?;
        if self.timeout_secs == 0 {
            return Err((
                "webhook_delivery.timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The waits between attempts.
    pub fn delays(&self) -> Vec<std::time::Duration> {
        durations(&self.retry_schedule)
    }

    /// How long an event is tried.
    pub fn max_age(&self) -> std::time::Duration {
        parse_duration(&self.max_age).unwrap_or(std::time::Duration::from_secs(3 * 86_400))
    }
}

/// `[hooks]`: webhooks in, one table per provider; a provider without one answers 404.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    pub ses: Option<SesHook>,
    pub sendgrid: Option<SendgridHook>,
    pub mailgun: Option<MailgunHook>,
    pub postmark: Option<PostmarkHook>,
}

/// Amazon SES notifications through SNS: the message signature is checked against
/// `certificate_file`, or against the certificate at the message's `SigningCertURL` when that is
/// an https URL of an SNS host (`sns.<region>.amazonaws.com`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesHook {
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// Only these topics (default: any).
    #[serde(default)]
    pub topic_arns: Vec<String>,
    /// The company an unsubscribe or complaint belongs to when no send record names it.
    #[serde(default)]
    pub company: Option<String>,
}

/// SendGrid's Event Webhook, signed (ECDSA P-256): `public_key` is the verification key
/// SendGrid shows (base64 DER).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridHook {
    pub public_key: String,
    /// Oldest signature timestamp accepted, in seconds.
    #[serde(default = "default_hook_max_age")]
    pub max_age_secs: i64,
    #[serde(default)]
    pub company: Option<String>,
}

/// Mailgun's webhooks, signed with HMAC-SHA256 by the account's webhook signing key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailgunHook {
    pub signing_key: String,
    #[serde(default = "default_hook_max_age")]
    pub max_age_secs: i64,
    #[serde(default)]
    pub company: Option<String>,
}

/// Postmark's webhooks, with HTTP basic auth in the webhook URL (`https://user:password@…`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkHook {
    pub user: String,
    #[serde(default)]
    pub password: Option<String>,
    /// SHA-256 of the password, in hex (instead of `password`).
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
}

fn default_hook_max_age() -> i64 {
    86_400
}

impl HooksConfig {
    fn check(&self, companies: &[CompanyConfig]) -> Result<(), (String, String)> {
        let known = |company: &Option<String>, key: &str| match company {
            Some(id) if !companies.iter().any(|c| c.id() == id) => Err((
                format!("hooks.{key}.company"),
                format!("no [[companies]] entry has id {id:?}"),
            )),
            _ => Ok(()),
        };
        if let Some(ses) = &self.ses {
            known(&ses.company, "ses")?;
            if let Some(path) = &ses.certificate_file
                && !path.exists()
            {
                return Err((
                    "hooks.ses.certificate_file".into(),
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        if let Some(sendgrid) = &self.sendgrid {
            known(&sendgrid.company, "sendgrid")?;
            if data_encoding::BASE64
                .decode(sendgrid.public_key.trim().as_bytes())
                .is_err()
            {
                return Err((
                    "hooks.sendgrid.public_key".into(),
                    "is not base64 (paste the verification key SendGrid shows)".into(),
                ));
            }
        }
        if let Some(mailgun) = &self.mailgun {
            known(&mailgun.company, "mailgun")?;
            if mailgun.signing_key.trim().is_empty() {
                return Err(("hooks.mailgun.signing_key".into(), "is empty".into()));
            }
        }
        if let Some(postmark) = &self.postmark {
            known(&postmark.company, "postmark")?;
            match (&postmark.password, &postmark.password_hash) {
                (Some(p), None) if p.len() >= 12 => {}
                (None, Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                _ => {
                    return Err((
                        "hooks.postmark.password".into(),
                        "give password (12 characters or more) or password_hash (SHA-256 in hex)"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `[log]`: how the gateway logs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Lines for people (colour only on a terminal).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[policy]`: the knobs of the send decision.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Suppression reasons that also block service mail (default: none).
    pub service_blocked_by: Vec<Reason>,
}

/// `[[companies]]`: a legal entity that owns consent, with its brands.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyConfig {
    pub id: Spanned<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Sender domains of this company.
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    #[serde(default)]
    pub brands: Vec<Spanned<String>>,
    /// DKIM keys for the company's sender domains: relayed mail whose From domain has one is
    /// signed.
    #[serde(default)]
    pub dkim: Vec<DkimKeyConfig>,
}

/// `dkim = [{ domain, selector, key_file }]`: a PEM private key (PKCS#8 RSA or Ed25519, as
/// `openssl genpkey` writes it, or PKCS#1 RSA) for `selector._domainkey.domain`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
}

impl CompanyConfig {
    /// The company id.
    pub fn id(&self) -> &str {
        self.id.get_ref()
    }

    /// Whether `brand` belongs to this company.
    pub fn has_brand(&self, brand: &str) -> bool {
        self.brands.iter().any(|b| b.get_ref() == brand)
    }
}

impl Config {
    /// Loads the file named by `path`, else by `BOUNCEGATE_CONFIG`, else the defaults; then applies
    /// `BOUNCEGATE_DATABASE_URL`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML, has unknown keys or inconsistent settings.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let from_env = std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let mut config = match path.map(Path::to_path_buf).or(from_env) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Config::parse(&text, &path)?
            }
            None => Config::default(),
        };
        if let Some(url) = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|v| !v.is_empty())
        {
            config.database.url = url;
        }
        Ok(config)
    }

    /// Parses and validates config text; `path` only names the file in errors.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let invalid = |line: usize, key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            key,
            message,
        };
        config
            .validate()
            .map_err(|(span, key, message)| invalid(line_of(text, span.start), key, message))?;
        config
            .inbound
            .normalize()
            .and_then(|()| config.retention.check(&config.inbound))
            .and_then(|()| {
                for (i, account) in config.staff.iter().enumerate() {
                    account
                        .check()
                        .map_err(|(key, message)| (format!("staff[{i}].{key}"), message))?;
                    if config.staff[..i].iter().any(|a| a.user == account.user) {
                        return Err((
                            format!("staff[{i}].user"),
                            format!("user {:?} is defined twice", account.user),
                        ));
                    }
                }
                Ok(())
            })
            .and_then(|()| config.relay.check())
            .and_then(|()| config.http.check())
            .and_then(|()| config.webhook_delivery.check())
            .and_then(|()| config.hooks.check(&config.companies))
            .and_then(|()| {
                for (i, webhook) in config.webhooks.iter().enumerate() {
                    webhook
                        .check()
                        .map_err(|(key, message)| (format!("webhooks[{i}].{key}"), message))?;
                    if config.webhooks[..i]
                        .iter()
                        .any(|w| w.key() == webhook.key())
                    {
                        return Err((
                            format!("webhooks[{i}].name"),
                            format!("webhook {:?} is defined twice", webhook.key()),
                        ));
                    }
                }
                Ok(())
            })
            .map_err(|(key, message)| invalid(line_of_key(text, &key), key, message))?;
        Ok(config)
    }

    /// The relay's name: `relay.hostname`, else `inbound.hostname`, else the inbound domain.
    pub fn relay_hostname(&self) -> String {
        self.relay
            .hostname
            .clone()
            .or_else(|| self.inbound.hostname.clone())
            .unwrap_or_else(|| self.inbound.domain.clone())
    }

    /// The company with this id.
    pub fn company(&self, id: &str) -> Option<&CompanyConfig> {
        self.companies.iter().find(|c| c.id() == id)
    }

    /// The company whose sender domains include `domain` (or a parent of it).
    pub fn company_for_domain(&self, domain: &str) -> Option<&CompanyConfig> {
        let domain = domain.to_ascii_lowercase();
        self.companies.iter().find(|c| {
            c.domains.iter().any(|d| {
                let d = d.get_ref().to_ascii_lowercase();
                domain == d || domain.ends_with(&format!(".{d}"))
            })
        })
    }

    fn validate(&self) -> Result<(), (Range<usize>, String, String)> {
        let mut brand_owner: Vec<(&str, &str)> = Vec::new();
        let mut domain_owner: Vec<(String, &str)> = Vec::new();
        for (i, company) in self.companies.iter().enumerate() {
            let id = company.id();
            let key = format!("companies[{i}].id");
            check_identifier(id).map_err(|m| (company.id.span(), key.clone(), m))?;
            if self.companies[..i].iter().any(|c| c.id() == id) {
                return Err((
                    company.id.span(),
                    key,
                    format!("company {id:?} is defined twice"),
                ));
            }
            for (j, brand) in company.brands.iter().enumerate() {
                let key = format!("companies[{i}].brands[{j}]");
                check_identifier(brand.get_ref()).map_err(|m| (brand.span(), key.clone(), m))?;
                if let Some((_, owner)) = brand_owner.iter().find(|(b, _)| *b == brand.get_ref()) {
                    let message = if *owner == id {
                        format!("brand {:?} is listed twice", brand.get_ref())
                    } else {
                        format!(
                            "brand {:?} already belongs to company {owner:?}; a brand belongs to exactly one company",
                            brand.get_ref()
                        )
                    };
                    return Err((brand.span(), key, message));
                }
                brand_owner.push((brand.get_ref(), id));
            }
            for (j, domain) in company.domains.iter().enumerate() {
                let key = format!("companies[{i}].domains[{j}]");
                let normalized = domain.get_ref().trim().to_ascii_lowercase();
                let valid = !normalized.is_empty()
                    && normalized.contains('.')
                    && normalized.split('.').all(|l| {
                        !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !valid {
                    return Err((
                        domain.span(),
                        key,
                        format!("{:?} is not a domain name", domain.get_ref()),
                    ));
                }
                if let Some((_, owner)) = domain_owner.iter().find(|(d, _)| *d == normalized) {
                    return Err((
                        domain.span(),
                        key,
                        format!(
                            "domain {normalized:?} is already a sender domain of company {owner:?}"
                        ),
                    ));
                }
                domain_owner.push((normalized, id));
            }
        }
        for (i, client) in self.relay.clients.iter().enumerate() {
            let company_key = format!("relay.clients[{i}].company");
            let Some(company) = self.company(client.company.get_ref()) else {
                return Err((
                    client.company.span(),
                    company_key,
                    format!(
                        "no [[companies]] entry has id {:?}",
                        client.company.get_ref()
                    ),
                ));
            };
            client.check().map_err(|(key, message)| {
                (
                    client.company.span(),
                    format!("relay.clients[{i}].{key}"),
                    message,
                )
            })?;
            if let Some(user) = &client.user
                && self.relay.clients[..i]
                    .iter()
                    .any(|c| c.user.as_deref() == Some(user.as_str()))
            {
                return Err((
                    client.company.span(),
                    format!("relay.clients[{i}].user"),
                    format!("user {user:?} is defined twice"),
                ));
            }
            for (j, brand) in client.brands.iter().enumerate() {
                if !company.has_brand(brand.get_ref()) {
                    return Err((
                        brand.span(),
                        format!("relay.clients[{i}].brands[{j}]"),
                        format!(
                            "brand {:?} is not a brand of company {:?}",
                            brand.get_ref(),
                            company.id()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Company and brand ids appear in addresses (`unsubscribe-<company>@…`) and URLs.
fn check_identifier(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !id.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a valid id: use 1 to 64 of a-z, 0-9, '-' and '_', not starting with '-'"
        ))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line that sets a dotted key (`inbound.limits.max_message_size`): under its table header,
/// or as a dotted key under a parent's; else the line of the nearest table header on its path,
/// or 1.
fn line_of_key(text: &str, key: &str) -> usize {
    let parts: Vec<&str> = key.split('.').collect();
    let mut table: Vec<String> = Vec::new();
    let mut fallback = 1;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = header
                .trim_matches('[')
                .split('.')
                .map(|p| p.trim().to_string())
                .collect();
            if parts.starts_with(&table.iter().map(String::as_str).collect::<Vec<_>>()) {
                fallback = number + 1;
            }
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        let full: Vec<&str> = table
            .iter()
            .map(String::as_str)
            .chain(name.split('.').map(str::trim))
            .collect();
        if full == parts {
            return number + 1;
        }
    }
    fallback
}

impl InboundConfig {
    /// Checks what serde cannot, and brings names to the form they are matched in (the domain in
    /// lower-case ASCII, local parts lower-case): a listener started with a nonsense domain,
    /// colliding addresses or zero limits fails in ways no one notices.
    fn normalize(&mut self) -> Result<(), (String, String)> {
        let domain = self.domain.trim();
        let parsed = crate::address::EmailAddress::parse(&format!("x@{domain}"));
        match parsed {
            Ok(address) if !domain.is_empty() => self.domain = address.domain().to_string(),
            _ => {
                return Err((
                    "inbound.domain".into(),
                    format!(
                        "{:?} is not a domain name (like bounces.example.org)",
                        self.domain
                    ),
                ));
            }
        }
        if let Some(hostname) = &self.hostname
            && crate::address::EmailAddress::parse(&format!("x@{hostname}")).is_err()
        {
            return Err((
                "inbound.hostname".into(),
                format!("{hostname:?} is not a host name"),
            ));
        }
        self.local_parts.normalize()?;
        self.limits.check("inbound.limits")?;
        for (key, value) in [
            ("hard_bounce_threshold", self.hard_bounce_threshold),
            ("soft_bounce_threshold", self.soft_bounce_threshold),
            ("soft_bounce_window_days", self.soft_bounce_window_days),
            ("token_max_age_days", self.token_max_age_days),
        ] {
            if value == 0 {
                return Err((format!("inbound.{key}"), "must be at least 1".into()));
            }
        }
        if self.soft_bounce_expiry_days == Some(0) {
            return Err((
                "inbound.soft_bounce_expiry_days".into(),
                "must be at least 1 (leave it out for \"never\")".into(),
            ));
        }
        Ok(())
    }
}

impl LocalParts {
    /// Each a plain local part, lower-case, and no two forms that could take the same address.
    fn normalize(&mut self) -> Result<(), (String, String)> {
        for (key, value) in [
            ("verp_prefix", &mut self.verp_prefix),
            ("bounces", &mut self.bounces),
            ("unsubscribe_prefix", &mut self.unsubscribe_prefix),
            ("feedback", &mut self.feedback),
        ] {
            let key = format!("inbound.local_parts.{key}");
            let lower = value.trim().to_lowercase();
            if !crate::address::is_dot_atom(&lower) {
                return Err((
                    key,
                    format!(
                        "{value:?} is not a plain local part (letters, digits, '.', '-', '_'; no '@', spaces or quotes)"
                    ),
                ));
            }
            if lower.contains('+') {
                return Err((
                    key,
                    format!("{value:?} may not contain '+': it separates a prefix from its token"),
                ));
            }
            *value = lower;
        }
        let names = [
            ("verp_prefix", &self.verp_prefix),
            ("bounces", &self.bounces),
            ("unsubscribe_prefix", &self.unsubscribe_prefix),
            ("feedback", &self.feedback),
        ];
        for (i, (key, value)) in names.iter().enumerate() {
            if let Some((other_key, _)) = names[..i].iter().find(|(_, other)| other == value) {
                return Err((
                    format!("inbound.local_parts.{other_key}"),
                    format!(
                        "`{other_key}` and `{key}` are both {value:?}: each form needs a local part of its own"
                    ),
                ));
            }
        }
        let company_form = format!("{}-", self.unsubscribe_prefix);
        for (key, value) in [("bounces", &self.bounces), ("feedback", &self.feedback)] {
            if value.starts_with(&company_form) {
                return Err((
                    format!("inbound.local_parts.{key}"),
                    format!(
                        "{value:?} looks like a company's unsubscribe address ({company_form}<company>)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl SmtpLimits {
    /// Zero limits and timeouts would refuse everything or cut every session at once.
    fn check(&self, table: &str) -> Result<(), (String, String)> {
        let at_least_one = [
            ("max_recipients", self.max_recipients as u64),
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_ip", self.max_connections_per_ip as u64),
            ("command_timeout_secs", self.command_timeout_secs),
            ("data_timeout_secs", self.data_timeout_secs),
            ("min_data_rate", self.min_data_rate),
            ("session_timeout_secs", self.session_timeout_secs),
            ("max_bad_commands", u64::from(self.max_bad_commands)),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err((format!("{table}.{key}"), "must be at least 1".into()));
            }
        }
        if self.max_message_size < 1024 {
            return Err((
                format!("{table}.max_message_size"),
                format!(
                    "{} bytes is too small for any mail (at least 1024; the default is 26214400)",
                    self.max_message_size
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn an_empty_file_gives_the_safe_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.database.url, "sqlite://data/bouncegate.db");
        assert_eq!(config.inbound.listen.to_string(), "127.0.0.1:2525");
        assert_eq!(config.relay.listen.to_string(), "127.0.0.1:2587");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8025");
        assert!(!config.inbound.trust_unsigned_bounces);
        assert!(config.policy.service_blocked_by.is_empty());
    }

    #[test]
    fn retention_keeps_send_records_as_long_as_tokens_live() {
        let config = parse("").unwrap();
        assert_eq!(config.retention.events_days, 1095);
        assert_eq!(config.retention.bounce_mail_days, 90);
        assert_eq!(config.retention.sends_days, 400);
        assert_eq!(config.retention.lifted_proof_days, 1095);
        assert_eq!(config.retention.expired_suppression_days, 365);
        let error = parse("[retention]\nsends_days = 30\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 2")
                && error.contains("retention.sends_days")
                && error.contains("400"),
            "{error}"
        );
        assert!(
            parse("[inbound]\ntoken_max_age_days = 20\n[retention]\nsends_days = 30\n").is_ok()
        );
        let error = parse("[retention]\nevents_days = 0\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("retention.events_days"), "{error}");
    }

    #[test]
    fn staff_accounts_need_an_argon2id_hash_and_distinct_names() {
        let hash = crate::relay::hash_password("secret").unwrap();
        let account = |user: &str, hash: &str| {
            format!("[[staff]]\nuser = {user:?}\npassword_hash = {hash:?}\nrole = \"editor\"\n")
        };
        let config = parse(&account("vera", &hash)).unwrap();
        assert_eq!(config.staff[0].role, StaffRole::Editor);
        let error = parse(&account("vera", "secret")).unwrap_err().to_string();
        assert!(
            error.contains("staff[0].password_hash") && error.contains("hash-password"),
            "{error}"
        );
        let twice = format!("{}{}", account("vera", &hash), account("vera", &hash));
        assert!(
            parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("defined twice")
        );
        assert!(parse(&account("ve ra", &hash)).is_err());
        assert!(StaffRole::Viewer < StaffRole::Editor && StaffRole::Editor < StaffRole::Admin);
    }

    #[test]
    fn names_are_brought_to_their_matching_form() {
        let config = parse(
            "[inbound]\ndomain = 'Bounces.Bücher.example.'\n[inbound.local_parts]\nbounces = 'Returns'\n",
        )
        .unwrap();
        assert_eq!(config.inbound.domain, "bounces.xn--bcher-kva.example");
        assert_eq!(config.inbound.local_parts.bounces, "returns");
    }

    #[test]
    fn durations_and_networks_read_as_operators_write_them() {
        assert_eq!(
            parse_duration("90"),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("5m"),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("2h"),
            Some(std::time::Duration::from_secs(7_200))
        );
        assert_eq!(
            parse_duration("5d"),
            Some(std::time::Duration::from_secs(432_000))
        );
        assert_eq!(parse_duration("5 weeks"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(
            parse_network("10.1.2.7/24").unwrap().to_string(),
            "10.1.2.0/24"
        );
        assert_eq!(
            parse_network("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert!(parse_network("10.1.0.0/16").is_ok());
        assert!(parse_network("2001:db8:1::/48").is_ok());
    }

    #[test]
    fn the_shipped_example_is_valid_and_complete() {
        let text = include_str!("../config/bouncegate.toml");
        let config = parse(text).unwrap();
        assert_eq!(config.companies.len(), 2);
        assert_eq!(
            config.relay.clients[0].default_class,
            MailClass::Promotional
        );
        assert_eq!(
            config.company_for_domain("mail.acme.example").unwrap().id(),
            "acme"
        );
    }

    #[test]
    fn bad_configs_name_the_key_and_the_line() {
        for (text, expected) in [
            (
                "[database]\nurl = 'x'\nbogus = 1\n",
                "unknown field `bogus`",
            ),
            ("[inbound]\nlisten = 'not an address'\n", "line 2"),
            (
                "[[companies]]\nid = 'acme'\nbrands = ['news']\n\n[[companies]]\nid = 'other'\nbrands = ['news']\n",
                "line 7: `companies[1].brands[0]`: brand \"news\" already belongs to company \"acme\"",
            ),
            (
                "[[companies]]\nid = 'Acme Corp'\n",
                "line 2: `companies[0].id`",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nuser = 'u'\npassword = 'p'\ncompany = 'nope'\n",
                "line 6: `relay.clients[0].company`: no [[companies]] entry has id \"nope\"",
            ),
            (
                "[[companies]]\nid = 'acme'\nbrands = ['news']\n[[relay.clients]]\nuser = 'u'\npassword = 'p'\ncompany = 'acme'\nbrands = ['shop']\n",
                "line 8: `relay.clients[0].brands[0]`",
            ),
            (
                "[policy]\nservice_blocked_by = ['bogus']\n",
                "not a valid reason",
            ),
            ("[relay.clients]\n", "invalid type"),
            ("[inbound]\ndomain = ''\n", "line 2: `inbound.domain`"),
            (
                "[inbound]\ndomain = 'not a domain'\n",
                "line 2: `inbound.domain`",
            ),
            (
                "[inbound]\nhostname = 'mx host'\n",
                "line 2: `inbound.hostname`",
            ),
            (
                "[inbound]\ndomain = 'b.example.org'\n\n[inbound.local_parts]\nbounces = 'fbl'\n",
                "line 5: `inbound.local_parts.bounces`: `bounces` and `feedback` are both \"fbl\"",
            ),
            (
                "[inbound.local_parts]\nverp_prefix = 'unsubscribe'\n",
                "line 2: `inbound.local_parts.verp_prefix`: `verp_prefix` and `unsubscribe_prefix` are both",
            ),
            (
                "[inbound.local_parts]\nbounces = 'b@x'\n",
                "line 2: `inbound.local_parts.bounces`",
            ),
            (
                "[inbound.local_parts]\nbounces = 'b+x'\n",
                "may not contain '+'",
            ),
            (
                "[inbound.local_parts]\nfeedback = ''\n",
                "`inbound.local_parts.feedback`",
            ),
            (
                "[inbound.local_parts]\nbounces = 'unsubscribe-acme'\n",
                "company's unsubscribe address",
            ),
            (
                "[inbound.limits]\ncommand_timeout_secs = 0\n",
                "line 2: `inbound.limits.command_timeout_secs`: must be at least 1",
            ),
            (
                "[inbound.limits]\ndata_timeout_secs = 0\n",
                "`inbound.limits.data_timeout_secs`",
            ),
            (
                "[inbound.limits]\nmax_connections_per_ip = 0\n",
                "`inbound.limits.max_connections_per_ip`",
            ),
            (
                "[inbound.limits]\nmax_message_size = 0\n",
                "line 2: `inbound.limits.max_message_size`",
            ),
            (
                "[inbound]\nlimits.max_recipients = 0\n",
                "line 2: `inbound.limits.max_recipients`",
            ),
            (
                "[inbound]\nhard_bounce_threshold = 0\n",
                "`inbound.hard_bounce_threshold`",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\ncompany = 'acme'\n",
                "`relay.clients[0].user`: a client needs `user`",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nuser = 'u'\npassword = 'p'\nnetworks = ['10.0.0.0/24']\ncompany = 'acme'\n",
                "not both",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nnetworks = ['10.0.0.0/8']\ncompany = 'acme'\n",
                "wider than /16",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nnetworks = ['0.0.0.0/0']\ncompany = 'acme'\n",
                "open relay by configuration",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nnetworks = ['2001:db8::/32']\ncompany = 'acme'\n",
                "wider than /48",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nnetworks = ['mynet']\ncompany = 'acme'\n",
                "not a network",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nuser = 'u'\npassword_hash = 'plain text'\ncompany = 'acme'\n",
                "not a PHC password hash",
            ),
            (
                "[[companies]]\nid = 'acme'\n[[relay.clients]]\nuser = 'u'\npassword = 'p'\ncompany = 'acme'\n[[relay.clients]]\nuser = 'u'\npassword = 'q'\ncompany = 'acme'\n",
                "user \"u\" is defined twice",
            ),
            (
                "[relay]\nupstream = 'smtp.example.org'\n",
                "line 2: `relay.upstream`",
            ),
            (
                "[relay]\nmax_queue_age = 'forever'\n",
                "line 2: `relay.max_queue_age`",
            ),
            (
                "[relay]\nretry_schedule = ['5m', 'soon']\n",
                "`relay.retry_schedule`",
            ),
            ("[relay]\nupstream_tls = 'maybe'\n", "unknown variant"),
            (
                "[relay.limits]\nmax_recipients = 0\n",
                "line 2: `relay.limits.max_recipients`",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "for {text:?}\n got: {err}\n want: {expected}"
            );
            assert!(err.contains("test.toml"), "{err}");
        }
    }
}
