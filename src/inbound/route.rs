//! Which of the listener's addresses a recipient is. The forms are a contract (DNS setups and
//! scripts rely on them): `b+TOKEN@`, `bounces@`, `unsubscribe+TOKEN@`, `unsubscribe-<company>@`
//! and `fbl@`, all at the inbound domain. Anything else is not ours: 550 at RCPT.

use crate::address::{EmailAddress, is_dot_atom};
use crate::config::{Config, LocalParts};

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
