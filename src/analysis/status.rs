//! Enhanced status codes (RFC 3463) and SMTP reply codes, found in report fields and prose.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// `class.subject.detail`, e.g. 5.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode {
    pub class: u16,
    pub subject: u16,
    pub detail: u16,
}

impl StatusCode {
    /// Parses exactly `N.N.N` (class 2, 4 or 5).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().splitn(3, '.');
        let class: u16 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts
            .next()?
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()?;
        matches!(class, 2 | 4 | 5).then_some(StatusCode {
            class,
            subject,
            detail,
        })
    }

    /// The first status code in a text, as SMTP servers write them (`550 5.1.1 …`, `(#5.1.1)`).
    pub fn find(text: &str) -> Option<Self> {
        static CODE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?:^|[^\d.])([245])\.(\d{1,3})\.(\d{1,3})(?:[^\d.]|\.(?:\D|$)|$)")
                .expect("valid")
        });
        let captures = CODE.captures(text)?;
        StatusCode::parse(&format!(
            "{}.{}.{}",
            &captures[1], &captures[2], &captures[3]
        ))
    }

    /// `X.0.0`-style codes say nothing beyond success or failure.
    pub fn is_generic(self) -> bool {
        self.subject == 0 && self.detail == 0
    }

    /// A failure that will not go away by retrying.
    pub fn is_permanent(self) -> bool {
        self.class == 5
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The first SMTP reply code in a diagnostic (`550`, `421-…`).
pub fn find_reply_code(text: &str) -> Option<u16> {
    static REPLY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:^|[^\w.#-])([245][0-5][0-9])(?:[ ,:-]|$)").expect("valid")
    });
    REPLY.captures_iter(text).find_map(|c| {
        let code: u16 = c[1].parse().ok()?;
        // 2xx only as a reply, never as a number in prose (port 25, "250 messages").
        (code >= 400 || text.trim_start().starts_with(&c[1])).then_some(code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_status_codes_in_prose() {
        for (text, expected) in [
            ("550 5.1.1 <a@b.example>: user unknown", Some("5.1.1")),
            (
                "Sorry, no mailbox here by that name. (#5.1.1)",
                Some("5.1.1"),
            ),
            ("host 192.0.2.1 said: 452 4.2.2 Over quota", Some("4.2.2")),
            ("ip 192.0.2.1 rejected", None),
            ("version 1.2.3 of the software", None),
            ("5.7.26 This mail is unauthenticated", Some("5.7.26")),
        ] {
            assert_eq!(
                StatusCode::find(text).map(|s| s.to_string()).as_deref(),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn finds_reply_codes_in_diagnostics() {
        for (text, expected) in [
            ("550 5.1.1 user unknown", Some(550)),
            (
                "host mx.example.org[192.0.2.1] said: 552-5.2.2 over quota",
                Some(552),
            ),
            ("remote host 192.0.2.32 said: 550 Unknown user", Some(550)),
            ("connect to port 25: timed out", None),
            ("5.1.1 user unknown", None),
        ] {
            assert_eq!(find_reply_code(text), expected, "{text}");
        }
    }
}
