//! E-mail addresses as the gateway matches them.
//!
//! Owns parsing and normalisation only: trim, IDNA to ASCII and lower-case the domain, compare the
//! local part case-insensitively. The address as given is kept for display. Knows nothing of the
//! store or of hashing.

use std::fmt;
use std::str::FromStr;

/// Longest local part RFC 5321 allows, in octets.
const MAX_LOCAL_PART: usize = 64;
/// Longest forward path RFC 5321 allows, in octets (without the angle brackets).
const MAX_ADDRESS: usize = 254;
/// Longest domain name, in octets of its ASCII form.
const MAX_DOMAIN: usize = 253;

/// Why a string is not an address we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("the address has no '@'")]
    MissingAt,
    #[error("the local part (before '@') is empty")]
    EmptyLocalPart,
    #[error("the local part is longer than 64 octets")]
    LocalPartTooLong,
    #[error("the local part contains {0:?}, which needs quoting or is not allowed")]
    InvalidLocalPart(char),
    #[error("the local part has a leading, trailing or doubled '.'")]
    MisplacedDot,
    #[error("the domain {0:?} is not a valid host name")]
    InvalidDomain(String),
    #[error("the domain needs at least two labels (like example.org)")]
    BareDomain,
    #[error("address literals ([1.2.3.4]) are not accepted")]
    AddressLiteral,
    #[error("the address is longer than 254 octets")]
    TooLong,
}

/// A syntactically valid address: the form given plus the form used for matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    given: String,
    normalized: String,
}

impl EmailAddress {
    /// Parses and normalises an address.
    ///
    /// # Errors
    /// An [`AddressError`] saying what is wrong with it.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let given = input.trim();
        let given = given
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(given)
            .trim();
        if given.is_empty() {
            return Err(AddressError::Empty);
        }
        let at = given.rfind('@').ok_or(AddressError::MissingAt)?;
        let (local, domain) = (&given[..at], &given[at + 1..]);
        let local = normalize_local_part(local)?;
        let domain = normalize_domain(domain)?;
        let normalized = format!("{local}@{domain}");
        if normalized.len() > MAX_ADDRESS {
            return Err(AddressError::TooLong);
        }
        Ok(Self {
            given: given.to_string(),
            normalized,
        })
    }

    /// The address as it was given (trimmed), for display.
    pub fn as_given(&self) -> &str {
        &self.given
    }

    /// The matching form: lower-case local part, ASCII lower-case domain.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The ASCII domain of the matching form.
    pub fn domain(&self) -> &str {
        let at = self.normalized.rfind('@').unwrap_or(0);
        &self.normalized[at + 1..]
    }

    /// The local part of the matching form.
    pub fn local_part(&self) -> &str {
        let at = self.normalized.rfind('@').unwrap_or(0);
        &self.normalized[..at]
    }
}

impl FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

fn normalize_local_part(local: &str) -> Result<String, AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError::LocalPartTooLong);
    }
    if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        return normalize_quoted(&local[1..local.len() - 1]);
    }
    check_dot_atom(local)?;
    Ok(local.to_lowercase())
}

/// A quoted local part (RFC 5321 §4.1.2) is the same mailbox as its unquoted content when that
/// content is a dot-atom (`"jane"` is `jane`, `"j\ane"` too); otherwise it stays quoted, in one
/// canonical form (only `"` and `\` escaped), so every spelling of it matches.
fn normalize_quoted(inner: &str) -> Result<String, AddressError> {
    let mut content = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => chars.next().ok_or(AddressError::InvalidLocalPart('\\'))?,
            '"' => return Err(AddressError::InvalidLocalPart('"')),
            c => c,
        };
        if c.is_control() {
            return Err(AddressError::InvalidLocalPart(c));
        }
        content.push(c);
    }
    if content.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    let content = content.to_lowercase();
    if check_dot_atom(&content).is_ok() {
        return Ok(content);
    }
    let mut quoted = String::with_capacity(content.len() + 2);
    quoted.push('"');
    for c in content.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

/// An unquoted local part: `atext` words joined by single dots.
fn check_dot_atom(local: &str) -> Result<(), AddressError> {
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::MisplacedDot);
    }
    if let Some(c) = local.chars().find(|&c| !is_atext(c) && c != '.') {
        return Err(AddressError::InvalidLocalPart(c));
    }
    Ok(())
}

/// Whether the local part is a plain dot-atom, as every address the gateway itself issues is
/// (quoted local parts never match one of its own addresses).
pub fn is_dot_atom(local: &str) -> bool {
    !local.is_empty() && check_dot_atom(local).is_ok()
}

/// RFC 5322 `atext`, extended by RFC 6531 to every non-ASCII character.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+/=?^_`{|}~-".contains(c)
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn normalize_domain(domain: &str) -> Result<String, AddressError> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.starts_with('[') {
        return Err(AddressError::AddressLiteral);
    }
    let invalid = || AddressError::InvalidDomain(domain.to_string());
    if domain.is_empty() {
        return Err(invalid());
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| invalid())?;
    if ascii.len() > MAX_DOMAIN {
        return Err(invalid());
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    for label in &labels {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(invalid());
        }
    }
    if labels.len() < 2 {
        return Err(AddressError::BareDomain);
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_for_matching_and_keeps_the_given_form() {
        for (input, given, normalized) in [
            (
                "  Jane.Doe@Example.ORG ",
                "Jane.Doe@Example.ORG",
                "jane.doe@example.org",
            ),
            (
                "<info@acme.example>",
                "info@acme.example",
                "info@acme.example",
            ),
            (
                "user+tag@sub.example.com.",
                "user+tag@sub.example.com.",
                "user+tag@sub.example.com",
            ),
            (
                "müller@bücher.example",
                "müller@bücher.example",
                "müller@xn--bcher-kva.example",
            ),
            ("Ö@EXAMPLE.de", "Ö@EXAMPLE.de", "ö@example.de"),
            (
                "\"john doe\"@example.org",
                "\"john doe\"@example.org",
                "\"john doe\"@example.org",
            ),
            (
                "o'brien@example.ie",
                "o'brien@example.ie",
                "o'brien@example.ie",
            ),
        ] {
            let address = EmailAddress::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(address.as_given(), given, "{input}");
            assert_eq!(address.normalized(), normalized, "{input}");
        }
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        let long_local = format!("{}@example.org", "a".repeat(65));
        let long_domain = format!("a@{}.example", "b".repeat(64));
        for (input, expected) in [
            ("", AddressError::Empty),
            ("   ", AddressError::Empty),
            ("no-at-sign", AddressError::MissingAt),
            ("@example.org", AddressError::EmptyLocalPart),
            (".jane@example.org", AddressError::MisplacedDot),
            ("ja..ne@example.org", AddressError::MisplacedDot),
            ("jane doe@example.org", AddressError::InvalidLocalPart(' ')),
            ("jane,doe@example.org", AddressError::InvalidLocalPart(',')),
            ("jane@localhost", AddressError::BareDomain),
            ("jane@[192.0.2.1]", AddressError::AddressLiteral),
            (long_local.as_str(), AddressError::LocalPartTooLong),
        ] {
            assert_eq!(EmailAddress::parse(input), Err(expected), "{input:?}");
        }
        for input in [
            "jane@",
            "jane@exa mple.org",
            "jane@-bad.org",
            "jane@ex_ample.org",
            "jane@a..b",
            long_domain.as_str(),
        ] {
            assert!(
                matches!(
                    EmailAddress::parse(input),
                    Err(AddressError::InvalidDomain(_))
                ),
                "{input:?} gave {:?}",
                EmailAddress::parse(input)
            );
        }
    }

    #[test]
    fn splits_local_part_and_domain() {
        let address = EmailAddress::parse("a@b@Example.org").err();
        assert!(
            address.is_some(),
            "an unquoted '@' in the local part is refused"
        );
        let address = EmailAddress::parse("Info@Acme.Example").unwrap();
        assert_eq!(address.local_part(), "info");
        assert_eq!(address.domain(), "acme.example");
    }
}

#[cfg(test)]
mod equivalence {
    use super::EmailAddress;

    fn normalized(input: &str) -> String {
        EmailAddress::parse(input)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .normalized()
            .to_string()
    }

    /// Spellings of one mailbox match; different mailboxes do not.
    #[test]
    fn equivalent_and_different_forms() {
        for (a, b) in [
            ("\"jane\"@example.com", "jane@example.com"),
            ("\"Jane.Doe\"@Example.COM", "jane.doe@example.com"),
            ("\"j\\ane\"@example.com", "jane@example.com"),
            ("jane@EXAMPLE.com.", "jane@example.com"),
            ("<\"jane\"@example.com>", "jane@example.com"),
            ("jane@bücher.example", "jane@xn--bcher-kva.example"),
            ("jane@BÜCHER.example", "jane@xn--bcher-kva.example"),
            ("\"john doe\"@example.org", "\"John Doe\"@example.org"),
            ("\"john\\ doe\"@example.org", "\"john doe\"@example.org"),
            ("\"a\\\"b\"@example.org", "\"a\\\"b\"@example.org"),
        ] {
            assert_eq!(normalized(a), normalized(b), "{a} ~ {b}");
        }
        for (a, b) in [
            ("\"john doe\"@example.org", "johndoe@example.org"),
            ("\"jane.\"@example.com", "jane@example.com"),
            ("jane@example.com", "jane@example.co"),
            ("\"a,b\"@example.org", "a@example.org"),
        ] {
            assert_ne!(normalized(a), normalized(b), "{a} !~ {b}");
        }
        assert_eq!(normalized("\"jane\"@example.com"), "jane@example.com");
        assert_eq!(
            normalized("\"John Doe\"@example.org"),
            "\"john doe\"@example.org"
        );
    }

    #[test]
    fn broken_quoting_is_refused() {
        for input in [
            "\"\"@example.org",
            "\"a\"b\"@example.org",
            "\"a\\\"@example.org",
            "\"a\u{7}b\"@example.org",
            "\"a\r\nb\"@example.org",
            "a\"b@example.org",
            "\"a\".b@example.org",
        ] {
            assert!(
                EmailAddress::parse(input).is_err(),
                "{input:?} was accepted"
            );
        }
    }
}
