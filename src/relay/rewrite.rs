//! What the relay changes in a message, as pure functions over its bytes: line endings made CRLF
//! (a bare CR or LF is never passed on: SMTP smuggling), the control headers and any
//! List-Unsubscribe of the sender's removed, Message-ID and Date added when missing (RFC 6409
//! §8), and the List-Unsubscribe headers (RFC 8058) a recipient's copy gets.

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

/// Why a message's header block is refused (554 5.6.0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("line {0} of the header is neither a field nor a continuation")]
    BadLine(usize),
    #[error("the message has no header")]
    Empty,
}

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

/// The header block and body of a CRLF message: the header ends at the first empty line.
pub fn split(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => (&message[..end + 2], &message[end + 4..]),
        None if message.starts_with(b"\r\n") => (&[], &message[2..]),
        None => (message, &[]),
    }
}

/// One header field: its name and its whole value (continuations unfolded as they stand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    /// The raw lines of the field, CRLF included.
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The value, unfolded and trimmed.
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(self.raw);
        let value = text.split_once(':').map_or("", |(_, v)| v);
        value
            .split("\r\n")
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The fields of a header block; refuses lines that are neither a field (`Name: value`) nor a
/// continuation.
///
/// # Errors
/// [`HeaderError`] naming the first bad line.
pub fn fields(header: &[u8]) -> Result<Vec<Field<'_>>, HeaderError> {
    if header.is_empty() {
        return Err(HeaderError::Empty);
    }
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    let mut line_number = 0;
    while start < header.len() {
        let end = header[start..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(header.len(), |p| start + p + 2);
        let line = &header[start..end];
        line_number += 1;
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            let Some(last) = fields.last_mut() else {
                return Err(HeaderError::BadLine(line_number));
            };
            let begin = last.raw.as_ptr() as usize - header.as_ptr() as usize;
            last.raw = &header[begin..end];
        } else {
            let colon = line.iter().position(|&b| b == b':');
            let name = colon.map(|c| &line[..c]).filter(|name| {
                !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
            });
            let Some(name) = name.and_then(|n| std::str::from_utf8(n).ok()) else {
                return Err(HeaderError::BadLine(line_number));
            };
            fields.push(Field {
                name,
                raw: &header[start..end],
            });
        }
        start = end;
    }
    Ok(fields)
}

/// The first field named `name` (case-insensitive), if any.
pub fn find<'f>(fields: &'f [Field<'_>], name: &str) -> Option<&'f Field<'f>> {
    fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// The domain of the From address of a CRLF message (the first address when there are several).
pub fn from_domain(message: &[u8]) -> Option<String> {
    let (header, _) = split(message);
    let parsed = fields(header).ok()?;
    let from = find(&parsed, "From")?.value();
    let address = from
        .rsplit_once('<')
        .map_or(from.as_str(), |(_, a)| a.split('>').next().unwrap_or(a));
    let domain = address.trim().rsplit_once('@')?.1.trim();
    (!domain.is_empty()).then(|| domain.trim_end_matches('.').to_ascii_lowercase())
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

/// RFC 8058's pair for one recipient's copy: the HTTPS one-click link and the mailto fallback.
pub fn list_unsubscribe(public_url: &str, token: &str, mailto: &str) -> String {
    format!(
        "List-Unsubscribe: <{}/u/{token}>, <mailto:{mailto}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        public_url.trim_end_matches('/')
    )
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
    fn fields_are_read_and_broken_headers_refused() {
        let message = normalize_line_endings(
            b"From: News <news@acme.example>\nSubject: Hello\n  world\nX-Bouncegate-Class: service\nList-Unsubscribe: <mailto:x@y>\n\nBody\n",
        );
        let (header, body) = split(&message);
        let parsed = fields(header).unwrap();
        assert_eq!(parsed.len(), 4);
        assert_eq!(find(&parsed, "subject").unwrap().value(), "Hello world");
        assert_eq!(body, b"Body\r\n");
        assert_eq!(from_domain(&message).as_deref(), Some("acme.example"));
        assert_eq!(
            from_domain(b"From: plain@Mail.Acme.Example\r\n\r\n").as_deref(),
            Some("mail.acme.example")
        );
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
        for bad in [
            &b"this is not a header\r\n\r\nbody"[..],
            b" continuation first: x\r\n\r\n",
            b"Bad Name: x\r\n\r\n",
            b"",
        ] {
            let (header, _) = split(bad);
            assert!(fields(header).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            list_unsubscribe("https://u.example/", "tok", "unsubscribe+tok@b.example"),
            "List-Unsubscribe: <https://u.example/u/tok>, <mailto:unsubscribe+tok@b.example>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
    }
}
