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
    pub inbound: InboundConfig,
    pub relay: RelayConfig,
    pub http: HttpConfig,
    pub policy: PolicyConfig,
    pub analysis: AnalysisConfig,
    pub companies: Vec<CompanyConfig>,
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

/// `[relay]`: the campaign relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// `host:port` of the next SMTP hop.
    pub upstream: String,
    pub clients: Vec<RelayClient>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2587)),
            upstream: "127.0.0.1:25".into(),
            clients: Vec::new(),
        }
    }
}

/// `[[relay.clients]]`: a sender allowed to relay, and what it may send for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayClient {
    pub user: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_hash: Option<String>,
    pub company: Spanned<String>,
    #[serde(default)]
    pub brands: Vec<Spanned<String>>,
    #[serde(default)]
    pub default_class: MailClass,
}

/// `[http]`: API and one-click unsubscribe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base of the links put into List-Unsubscribe.
    pub public_url: String,
    pub tokens: Vec<ApiToken>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            public_url: "http://127.0.0.1:8025".into(),
            tokens: Vec::new(),
        }
    }
}

/// An API bearer token and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub token: String,
    pub role: ApiRole,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    Read,
    Write,
    Admin,
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
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        config
            .validate()
            .map_err(|(span, key, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: line_of(text, span.start),
                key,
                message,
            })?;
        Ok(config)
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
            if client.password.is_some() == client.password_hash.is_some() {
                return Err((
                    client.company.span(),
                    format!("relay.clients[{i}].password"),
                    format!(
                        "client {:?} needs exactly one of `password` or `password_hash`",
                        client.user
                    ),
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
