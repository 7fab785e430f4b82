//! The gateway's own addresses, minted and parsed in one place so that the relay mints exactly
//! what inbound takes. The forms are a contract (DNS setups and scripts rely on them):
//! `b+TOKEN@`, `bounces@`, `unsubscribe+TOKEN@`, `unsubscribe-<company>@` and `fbl@`, all at the
//! inbound domain. Anything else is not ours: 550 at RCPT. Also here: which token kinds each
//! form carries, and what an unsubscribe token opts out of.

use crate::address::{EmailAddress, is_dot_atom};
use crate::config::{Config, InboundConfig, LocalParts};
use crate::model::Scope;
use crate::token::TokenKind;

/// What a recipient address stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A return path: signed (`b+TOKEN`) or the plain bounce address.
    Bounce { token: Option<String> },
    /// The feedback-loop address for ARF reports.
    Feedback,
    /// A signed unsubscribe address.
    Unsubscribe { token: String },
    /// A company's plain unsubscribe address.
    UnsubscribeCompany { company: String },
}

/// The route of `address`, if it is one of ours.
///
/// The address is parsed as any other (quotes, case, IDNA, trailing dot): `"bounces"@` is
/// `bounces@`. A local part that stays quoted (spaces, `@`, `,`, control characters) is never
/// one of ours, and a token is base32 only, so no address smuggles a second recipient in.
pub fn route(address: &str, config: &Config) -> Option<Route> {
    let address = EmailAddress::parse(address).ok()?;
    if !address
        .domain()
        .eq_ignore_ascii_case(config.inbound.domain.trim_end_matches('.'))
    {
        return None;
    }
    let local = address.local_part();
    if !is_dot_atom(local) {
        return None;
    }
    let parts: &LocalParts = &config.inbound.local_parts;
    if local == parts.bounces {
        return Some(Route::Bounce { token: None });
    }
    if local == parts.feedback {
        return Some(Route::Feedback);
    }
    if let Some(token) = tagged(local, &parts.verp_prefix) {
        return Some(Route::Bounce {
            token: Some(token.to_string()),
        });
    }
    if let Some(token) = tagged(local, &parts.unsubscribe_prefix) {
        return Some(Route::Unsubscribe {
            token: token.to_string(),
        });
    }
    let company = local.strip_prefix(&format!("{}-", parts.unsubscribe_prefix))?;
    config.company(company).map(|_| Route::UnsubscribeCompany {
        company: company.to_string(),
    })
}

impl Route {
    /// The token this address carries and the kinds it may be, if it carries one.
    pub fn token(&self) -> Option<(&str, &'static [TokenKind])> {
        match self {
            Route::Bounce { token: Some(token) } => Some((token, &[TokenKind::Bounce])),
            Route::Unsubscribe { token } => Some((token, UNSUBSCRIBE_KINDS)),
            _ => None,
        }
    }
}

/// The kinds an `unsubscribe+TOKEN@` address carries.
pub const UNSUBSCRIBE_KINDS: &[TokenKind] =
    &[TokenKind::UnsubscribeBrand, TokenKind::UnsubscribeCompany];

/// The signed return path for a send: `b+TOKEN@<inbound domain>`.
pub fn return_path(token: &str, inbound: &InboundConfig) -> String {
    format!(
        "{}+{token}@{}",
        inbound.local_parts.verp_prefix, inbound.domain
    )
}

/// The signed unsubscribe address for a send: `unsubscribe+TOKEN@<inbound domain>`.
pub fn unsubscribe_address(token: &str, inbound: &InboundConfig) -> String {
    format!(
        "{}+{token}@{}",
        inbound.local_parts.unsubscribe_prefix, inbound.domain
    )
}

/// The route of an address found inside a returned original: a return path, or a
/// List-Unsubscribe target (`mailto:` with or without `?subject=…`).
pub fn route_of_target(target: &str, config: &Config) -> Option<Route> {
    let target = target.trim();
    let address = match target.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => {
            target[7..].split('?').next().unwrap_or("")
        }
        _ => target,
    };
    route(address, config)
}

/// What an unsubscribe token of `kind` opts out of, for a send of `company` and `brand` (`""`
/// when the send had none): the brand, or the whole company.
pub fn unsubscribe_scope(kind: TokenKind, company: &str, brand: &str) -> Scope {
    if kind == TokenKind::UnsubscribeBrand && !brand.is_empty() {
        Scope::Brand {
            company: company.to_string(),
            brand: brand.to_string(),
        }
    } else {
        Scope::Company(company.to_string())
    }
}

/// `prefix+TAG` → `TAG` (non-empty, letters and digits: tokens are base32).
fn tagged<'a>(local: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, tag) = local.split_once('+')?;
    (head.eq_ignore_ascii_case(prefix)
        && !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then_some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_addresses_route_back_to_their_token() {
        let config = Config::parse(
            "[inbound]\ndomain = \"Bounces.Example.org\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let path = return_path("abc234", &config.inbound);
        assert_eq!(path, "b+abc234@bounces.example.org");
        assert_eq!(
            route(&path, &config).unwrap().token(),
            Some(("abc234", &[TokenKind::Bounce][..]))
        );
        let unsubscribe = unsubscribe_address("xyz567", &config.inbound);
        assert_eq!(unsubscribe, "unsubscribe+xyz567@bounces.example.org");
        for target in [
            format!("mailto:{unsubscribe}"),
            format!("MAILTO:{unsubscribe}?subject=unsubscribe"),
            unsubscribe.clone(),
        ] {
            assert_eq!(
                route_of_target(&target, &config).unwrap().token(),
                Some(("xyz567", UNSUBSCRIBE_KINDS)),
                "{target}"
            );
        }
        assert_eq!(route_of_target("https://example.org/u/x", &config), None);
        assert_eq!(
            unsubscribe_scope(TokenKind::UnsubscribeBrand, "acme", "news"),
            Scope::Brand {
                company: "acme".into(),
                brand: "news".into()
            }
        );
        assert_eq!(
            unsubscribe_scope(TokenKind::UnsubscribeBrand, "acme", ""),
            Scope::Company("acme".into())
        );
        assert_eq!(
            unsubscribe_scope(TokenKind::UnsubscribeCompany, "acme", "news"),
            Scope::Company("acme".into())
        );
    }

    #[test]
    fn recognises_the_contract_forms_only() {
        let mut config = Config::parse(
            "[inbound]\ndomain = \"bounces.example.org\"\n[[companies]]\nid = \"acme\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        config.inbound.domain = "bounces.example.org".into();
        for (address, expected) in [
            (
                "bounces@bounces.example.org",
                Some(Route::Bounce { token: None }),
            ),
            (
                "Bounces@BOUNCES.example.org",
                Some(Route::Bounce { token: None }),
            ),
            (
                "b+abc123@bounces.example.org",
                Some(Route::Bounce {
                    token: Some("abc123".into()),
                }),
            ),
            ("fbl@bounces.example.org", Some(Route::Feedback)),
            (
                "unsubscribe+xyz@bounces.example.org",
                Some(Route::Unsubscribe {
                    token: "xyz".into(),
                }),
            ),
            (
                "unsubscribe-acme@bounces.example.org",
                Some(Route::UnsubscribeCompany {
                    company: "acme".into(),
                }),
            ),
            ("unsubscribe-globex@bounces.example.org", None),
            ("b+@bounces.example.org", None),
            ("postmaster@bounces.example.org", None),
            ("bounces@other.example.org", None),
            ("someone@example.net", None),
            (
                "\"bounces\"@bounces.example.org",
                Some(Route::Bounce { token: None }),
            ),
            (
                "b+abc123@BOUNCES.example.org.",
                Some(Route::Bounce {
                    token: Some("abc123".into()),
                }),
            ),
            ("\"b+x, victim@gmail.com\"@bounces.example.org", None),
            ("b+x, victim@gmail.com@bounces.example.org", None),
            ("\"b+x victim\"@bounces.example.org", None),
            ("\"bounces\r\n\"@bounces.example.org", None),
            ("b+abc,def@bounces.example.org", None),
            ("b+abc=def@bounces.example.org", None),
            ("unsubscribe+x%y@bounces.example.org", None),
        ] {
            assert_eq!(route(address, &config), expected, "{address}");
        }
    }
}
