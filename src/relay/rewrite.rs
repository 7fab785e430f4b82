//! What the relay changes in a message, as pure functions over its bytes: line endings made CRLF
//! (a bare CR or LF is never passed on: SMTP smuggling), the control headers and any
//! List-Unsubscribe of the sender's removed, Message-ID and Date added when missing (RFC 6409
//! §8).

pub use crate::message::{Field, HeaderError, fields, find, split};

/// Headers the relay reads and removes before the mail goes on.
pub const CLASS_HEADER: &str = "X-Bouncegate-Class";
pub const BRAND_HEADER: &str = "X-Bouncegate-Brand";
/// Headers the relay sets itself; a sender's are removed.
const OWN_HEADERS: [&str; 4] = [
    CLASS_HEADER,
    BRAND_HEADER,
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// `bytes` with every line ending CRLF: a bare LF or a bare CR becomes CRLF.
pub fn normalize_line_endings(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 64);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            byte => out.push(byte),
        }
        i += 1;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The message as it goes on: without the relay's own headers, with a Message-ID and a Date.
pub fn rewrite(
    fields: &[Field<'_>],
    body: &[u8],
    message_id: Option<&str>,
    date: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    if let Some(id) = message_id {
        out.extend_from_slice(format!("Message-ID: <{id}>\r\n").as_bytes());
    }
    if let Some(date) = date {
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    for field in fields {
        if !OWN_HEADERS
            .iter()
            .any(|h| field.name.eq_ignore_ascii_case(h))
        {
            out.extend_from_slice(field.raw);
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_ends_become_crlf_and_no_smuggled_end_of_data_survives() {
        for (input, expected) in [
            (&b"a\r\nb\r\n"[..], &b"a\r\nb\r\n"[..]),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"a\rb\r", b"a\r\nb\r\n"),
            (b"a\n.\nb", b"a\r\n.\r\nb\r\n"),
            (b"a\r\n.\r\n", b"a\r\n.\r\n"),
            (b"x", b"x\r\n"),
        ] {
            assert_eq!(
                normalize_line_endings(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn control_headers_and_the_senders_list_unsubscribe_are_removed() {
        let message = normalize_line_endings(
            b"From: News <news@acme.example>\nSubject: Hello\n  world\nX-Bouncegate-Class: service\nList-Unsubscribe: <mailto:x@y>\n\nBody\n",
        );
        let (header, body) = split(&message);
        let parsed = fields(header).unwrap();
        let out = rewrite(&parsed, body, Some("m1@acme.example"), None);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("Message-ID: <m1@acme.example>\r\nFrom: News"),
            "{text}"
        );
        assert!(!text.contains("X-Bouncegate"), "{text}");
        assert!(!text.contains("List-Unsubscribe"), "{text}");
        assert!(
            text.contains("Subject: Hello\r\n  world\r\n\r\nBody\r\n"),
            "{text}"
        );
    }
}
