//! Whether a mail's author is who its From says: a DKIM signature that passes for a domain
//! aligned with the From domain, or SPF passing for the envelope sender's domain (the HELO name
//! for the null sender) aligned with it. This is DMARC's test of the From address in relaxed
//! mode, without DMARC's policy: whether the domain publishes a policy does not matter here.
//!
//! Owns the DNS lookups for it (Stalwart's `mail-auth` with hickory); knows nothing of the store.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, SpfResult, spf::verify::SpfParameters,
};

/// How long one DNS question may take: the client waits for its reply meanwhile.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// How the From address was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// A passing DKIM signature of an aligned domain.
    Dkim,
    /// SPF passed for an aligned envelope domain.
    Spf,
    /// Neither: the From may be forged.
    None,
}

impl Authentication {
    /// Whether the From is proven.
    pub fn is_authenticated(self) -> bool {
        self != Authentication::None
    }
}

/// The envelope of the mail being checked.
pub struct Envelope<'a> {
    pub peer: IpAddr,
    pub helo: &'a str,
    /// MAIL FROM, empty for the null sender.
    pub mail_from: &'a str,
}

/// Checks senders against DNS.
pub struct SenderAuthenticator {
    authenticator: MessageAuthenticator,
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up DNS for sender authentication: {0}")]
pub struct ResolverError(String);

impl SenderAuthenticator {
    /// Asks `nameserver` (UDP and TCP), or the system's resolvers when `None`.
    ///
    /// # Errors
    /// The system's resolver configuration cannot be read, or the resolver not built.
    pub fn new(nameserver: Option<SocketAddr>) -> Result<Self, ResolverError> {
        let config = match nameserver {
            Some(address) => {
                let mut server = NameServerConfig::udp_and_tcp(address.ip());
                for connection in &mut server.connections {
                    connection.port = address.port();
                }
                ResolverConfig::from_name_servers(vec![server])
            }
            None => {
                let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| ResolverError(e.to_string()))?;
                config
            }
        };
        let mut options = ResolverOpts::default();
        options.timeout = DNS_TIMEOUT;
        options.attempts = 1;
        let authenticator =
            MessageAuthenticator::new(config, options).map_err(|e| ResolverError(e.to_string()))?;
        Ok(Self { authenticator })
    }

    /// Whether `from_domain` is proven to be the author's, by DKIM first, then SPF. A DNS
    /// failure proves nothing.
    pub async fn authenticate(
        &self,
        raw: &[u8],
        from_domain: &str,
        envelope: &Envelope<'_>,
    ) -> Authentication {
        if let Some(message) = AuthenticatedMessage::parse(raw) {
            let results = self.authenticator.verify_dkim(&message).await;
            let dkim_aligned = results.iter().any(|result| {
                *result.result() == DkimResult::Pass
                    && result
                        .signature()
                        .is_some_and(|s| aligned(&s.d, from_domain))
            });
            if dkim_aligned {
                return Authentication::Dkim;
            }
        }
        let helo = envelope.helo.trim();
        let spf = if envelope.mail_from.is_empty() {
            self.authenticator
                .verify_spf(SpfParameters::verify_ehlo(envelope.peer, helo, helo))
                .await
        } else {
            self.authenticator
                .verify_spf(SpfParameters::verify_mail_from(
                    envelope.peer,
                    helo,
                    helo,
                    envelope.mail_from,
                ))
                .await
        };
        let spf_domain = match envelope.mail_from.rsplit_once('@') {
            Some((_, domain)) => domain,
            None => helo,
        };
        if spf.result() == SpfResult::Pass && aligned(spf_domain, from_domain) {
            return Authentication::Spf;
        }
        Authentication::None
    }
}

/// Relaxed alignment: the same domain, or one a subdomain of the other where the parent has at
/// least two labels. Stricter than DMARC's organisational domains (siblings such as
/// `a.example.org` and `b.example.org` do not align here), never looser.
pub fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    if short == long {
        return true;
    }
    short.contains('.')
        && long
            .strip_suffix(short.as_str())
            .is_some_and(|head| head.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::aligned;

    #[test]
    fn relaxed_alignment_without_public_suffix_tricks() {
        for (a, b, expected) in [
            ("example.org", "example.org", true),
            ("Example.ORG.", "example.org", true),
            ("mail.example.org", "example.org", true),
            ("example.org", "news.mail.example.org", true),
            ("a.example.org", "b.example.org", false),
            ("example.org", "example.com", false),
            ("badexample.org", "example.org", false),
            ("org", "example.org", false),
            ("", "example.org", false),
        ] {
            assert_eq!(aligned(a, b), expected, "{a} ~ {b}");
        }
    }
}
