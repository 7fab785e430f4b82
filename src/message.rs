//! The header block of a CRLF message, read as it stands: where it ends, its fields with their
//! raw bytes (so a rewrite keeps them byte for byte), the From domain. A leaf: relay and queue
//! both read messages through it.

/// Why a message's header block is refused (554 5.6.0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("line {0} of the header is neither a field nor a continuation")]
    BadLine(usize),
    #[error("the message has no header")]
    Empty,
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
    let address = from_address(&fields(header).ok()?)?;
    let domain = address.rsplit_once('@')?.1.trim();
    (!domain.is_empty()).then(|| domain.trim_end_matches('.').to_ascii_lowercase())
}

/// The address of the From field (`Name <a@b>` or a bare `a@b`), as written.
pub fn from_address(fields: &[Field<'_>]) -> Option<String> {
    let from = find(fields, "From")?.value();
    let address = from
        .rsplit_once('<')
        .map_or(from.as_str(), |(_, a)| a.split('>').next().unwrap_or(a));
    Some(address.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_and_broken_headers_refused() {
        let message = b"From: News <news@acme.example>\r\nSubject: Hello\r\n  world\r\nX-Bouncegate-Class: service\r\n\r\nBody\r\n";
        let (header, body) = split(message);
        let parsed = fields(header).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(find(&parsed, "subject").unwrap().value(), "Hello world");
        assert_eq!(body, b"Body\r\n");
        assert_eq!(from_domain(message).as_deref(), Some("acme.example"));
        assert_eq!(
            from_domain(b"From: plain@Mail.Acme.Example\r\n\r\n").as_deref(),
            Some("mail.acme.example")
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
    }
}
