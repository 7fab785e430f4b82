//! Walking a parsed mail: which parts are delivery-status fields, a feedback report, the returned
//! original, and the human-readable text.

use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use super::dsn::looks_like_dsn;
use super::report::OriginalMessage;

/// Most forwarded reports read from one mail (a digest of complaint reports, say).
pub const MAX_FORWARDED: usize = 100;

/// Longest human-readable text kept per mail: bounce prose is short, anything past this is noise.
const MAX_TEXT: usize = 256 * 1024;

/// The parts of a mail that matter to the analyser.
#[derive(Debug, Default)]
pub struct MailParts {
    /// Delivery-status fields (`message/delivery-status`, the global form, or mislabelled text).
    pub dsn_texts: Vec<String>,
    /// `message/feedback-report` fields, one entry per part.
    pub feedback: Vec<String>,
    /// The returned original (attached message or headers).
    pub original: Option<OriginalMessage>,
    /// Text of the readable parts, in order.
    pub human_text: String,
    /// Whether the mail is a `multipart/report`.
    pub is_report: bool,
    /// Attached messages that are themselves reports (forwarded bounces, a digest of complaint
    /// reports), raw, in order; at most [`MAX_FORWARDED`].
    pub forwarded_reports: Vec<Vec<u8>>,
}

/// The mail parser the analyser uses: headers it never reads (Received, dates) are kept raw,
/// which saves most of the header parsing time of a bounce.
pub fn parser() -> &'static MessageParser {
    use std::sync::LazyLock;
    static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
        use mail_parser::HeaderName;
        // Only these are parsed structurally; every other header is skipped (its raw bytes are
        // still found by offset, which is all `header_raw` reads).
        MessageParser::new()
            .default_header_ignore()
            .with_mime_headers()
            .header_address(HeaderName::From)
            .header_address(HeaderName::To)
            .header_address(HeaderName::ReplyTo)
            .header_address(HeaderName::Sender)
            .header_address(HeaderName::ListUnsubscribe)
            .header_text(HeaderName::Subject)
            .header_id(HeaderName::MessageId)
            .header_id(HeaderName::InReplyTo)
            .header_id(HeaderName::References)
            .header_id(HeaderName::ReturnPath)
    });
    &PARSER
}

/// `raw` with line feeds: a mail whose lines end in a carriage return alone (classic Mac OS, some
/// mail stores) gets a line feed for each bare carriage return; others (LF, CRLF) are returned
/// as they are, without a copy.
pub fn with_line_feeds(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    // Decided by how the first line ends.
    let Some(end) = raw.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return Cow::Borrowed(raw);
    };
    if raw[end] == b'\n' || raw.get(end + 1) == Some(&b'\n') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// Parses a mail, never panicking: mail-parser 0.11 panics on some malformed MIME structures
/// (found by fuzzing), and a received mail must never take the analyser down. `None` when there
/// is nothing to parse or the parser failed.
pub fn parse_mail(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parser().parse(raw)))
        .ok()
        .flatten()
}

/// Collects the parts of `message`.
pub fn collect(message: &Message<'_>) -> MailParts {
    let mut parts = MailParts::default();
    if let Some(ct) = message.root_part().content_type() {
        parts.is_report = ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"));
    }
    collect_into(message, &mut parts, true);
    // Only the bounce's own words count, not the quoted original after them: cut once here.
    let own = super::prose::findings(&parts.human_text).len();
    if parts.original.is_none() && own < parts.human_text.len() {
        // An original quoted inline ("----- Unsent message follows -----"): its headers still
        // say whom it was for.
        parts.original = inline_original(&parts.human_text[own..]);
    }
    parts.human_text.truncate(own);
    parts
}

/// The original a bounce quotes as text, from where its quotation starts (the marker line, or
/// its first header line).
fn inline_original(quoted: &str) -> Option<OriginalMessage> {
    let is_header = |line: &str| {
        line.split_once(':').is_some_and(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    let start = quoted
        .split_inclusive('\n')
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len();
            Some((at, line))
        })
        .take(3)
        .find(|(_, line)| is_header(line))
        .map(|(at, _)| at)?;
    // Its headers are all that is read: the body is not parsed.
    let quoted = &quoted[start..];
    let end = [quoted.find("\n\n"), quoted.find("\n\r\n")]
        .into_iter()
        .flatten()
        .min();
    let headers = end.map_or(quoted, |end| &quoted[..end + 1]);
    let original = parse_mail(headers.as_bytes()).map(|m| original_of(&m))?;
    (!original.to.is_empty() || original.message_id.is_some()).then_some(original)
}

/// Adds the parts of `message` to `parts`; `recover` allows reading one multipart whose
/// boundary was lost (not again inside what that recovery finds).
fn collect_into(message: &Message<'_>, parts: &mut MailParts, recover: bool) {
    for part in &message.parts {
        let (ctype, subtype) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        match (&part.body, ctype.as_str(), subtype.as_str()) {
            (PartType::Multipart(_), _, _) => {}
            (PartType::Message(inner), _, _) => {
                if parts.original.is_none() {
                    parts.original = Some(original_of(inner));
                }
                let inner_is_report = inner.root_part().content_type().is_some_and(|ct| {
                    ct.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                });
                if inner_is_report && parts.forwarded_reports.len() < MAX_FORWARDED {
                    parts.forwarded_reports.push(inner.raw_message().to_vec());
                }
            }
            (_, "message", "delivery-status" | "global-delivery-status") => {
                parts.dsn_texts.push(lossy(part.contents()));
            }
            (_, "message", "feedback-report") if parts.feedback.len() < MAX_FORWARDED => {
                parts.feedback.push(lossy(part.contents()));
            }
            (_, "text", "rfc822-headers") | (_, "message", "rfc822-headers" | "global-headers") => {
                if parts.original.is_none()
                    && let Some(inner) = parse_mail(part.contents())
                {
                    parts.original = Some(original_of(&inner));
                }
            }
            (PartType::Text(text), _, _) => {
                if looks_like_dsn(text) {
                    // A report whose MIME structure was lost: the prose before the fields is
                    // still the bounce's own text.
                    push_text(&mut parts.human_text, before_dsn_fields(text));
                    parts.dsn_texts.push(text.to_string());
                } else {
                    push_text(&mut parts.human_text, text);
                }
            }
            (PartType::Html(html), _, _) => push_text(&mut parts.human_text, &strip_html(html)),
            (PartType::Binary(bytes) | PartType::InlineBinary(bytes), "message", _) => {
                // An unparsed message part (e.g. message/global): keep its text for the prose reader.
                let text = lossy(bytes);
                if looks_like_dsn(&text) {
                    parts.dsn_texts.push(text);
                }
            }
            (PartType::Binary(bytes) | PartType::InlineBinary(bytes), "multipart", _)
                if recover =>
            {
                // A multipart the parser could not split, typically because its boundary
                // parameter sat on an unfolded line of its own: its first delimiter line says
                // what the boundary is.
                if let Some(inner) = with_boundary_of_first_delimiter(bytes)
                    && let Some(reparsed) = parse_mail(&inner)
                {
                    collect_into(&reparsed, parts, false);
                }
            }
            _ => {}
        }
    }
}

/// `body` (a multipart's body whose boundary is unknown) as a mail of its own, with the
/// boundary its first delimiter line (`--boundary`) gives; `None` when no line looks like one.
fn with_boundary_of_first_delimiter(body: &[u8]) -> Option<Vec<u8>> {
    const MAX_BOUNDARY: usize = 70; // RFC 2046
    let head = &body[..body.len().min(4096)];
    let line = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))?;
    let boundary = line.strip_prefix(b"--")?;
    let valid = |b: &u8| b.is_ascii_graphic() && *b != b'"' || *b == b' ';
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY || !boundary.iter().all(valid) {
        return None;
    }
    let mut mail = Vec::with_capacity(body.len() + 64);
    mail.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"");
    mail.extend_from_slice(boundary);
    mail.extend_from_slice(b"\"\r\n\r\n");
    mail.extend_from_slice(body);
    Some(mail)
}

/// The text before the first delivery-status field line.
fn before_dsn_fields(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "reporting-mta"
                | "final-recipient"
                | "original-recipient"
                | "arrival-date"
                | "received-from-mta"
        ) && line.contains(':')
        {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

fn push_text(out: &mut String, text: &str) {
    if out.len() >= MAX_TEXT {
        return;
    }
    let room = MAX_TEXT - out.len();
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&text[..end]);
    out.push('\n');
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT)]).into_owned()
}

/// What the returned original says about itself.
pub fn original_of(message: &Message<'_>) -> OriginalMessage {
    let addresses = |value: Option<&mail_parser::Address<'_>>| -> Vec<String> {
        value
            .map(|a| {
                a.iter()
                    .filter_map(|a| a.address().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut original = OriginalMessage {
        message_id: message.message_id().map(str::to_string),
        from: addresses(message.from()).into_iter().next(),
        to: addresses(message.to()),
        ..OriginalMessage::default()
    };
    if let Some(path) = message.return_address() {
        original.return_paths.push(path.to_string());
    }
    if let HeaderValue::Address(list) = message.list_unsubscribe() {
        for target in list.iter().filter_map(|a| a.address()) {
            original.list_unsubscribe.push(target.to_string());
        }
    } else if let Some(raw) = message.header_raw("List-Unsubscribe") {
        for target in raw.split(',') {
            let target = target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            if !target.is_empty() {
                original.list_unsubscribe.push(target.to_string());
            }
        }
    }
    original
}

/// Text of an HTML part: tags dropped, block ends as line breaks, common entities decoded.
pub fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut skip_depth = 0u32;
    let mut rest = html;
    // `<` and `>` are ASCII, so they never occur inside a multi-byte character: the text between
    // tags is copied in slices.
    while let Some(open) = rest.find('<') {
        if skip_depth == 0 {
            out.push_str(&rest[..open]);
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            // An unclosed tag runs to the end.
            return decoded(out);
        };
        let tag = &after[..close];
        let closing = tag.starts_with('/');
        let name_start = tag.trim_start_matches('/');
        let name_len = name_start
            .bytes()
            .take_while(u8::is_ascii_alphanumeric)
            .count();
        let name = &name_start[..name_len];
        let is = |names: &[&str]| names.iter().any(|n| name.eq_ignore_ascii_case(n));
        if is(&["script", "style", "head"]) {
            if closing {
                skip_depth = skip_depth.saturating_sub(1);
            } else {
                skip_depth += 1;
            }
        }
        if is(&["br", "p", "div", "tr", "li", "h1", "h2", "h3", "table"]) {
            out.push('\n');
        }
        rest = &after[close + 1..];
    }
    if skip_depth == 0 {
        out.push_str(rest);
    }
    decoded(out)
}

/// `text` with the common HTML entities decoded (`&nbsp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;`,
/// `&amp;`; an `&amp;lt;` stays `&lt;`), in one pass.
fn decoded(text: String) -> String {
    if !text.contains('&') {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    const ENTITIES: [(&str, &str); 6] = [
        ("&nbsp;", " "),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&amp;", "&"),
    ];
    let mut rest = text.as_str();
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let from = &rest[at..];
        match ENTITIES.iter().find(|(entity, _)| from.starts_with(entity)) {
            Some((entity, decoded)) => {
                out.push_str(decoded);
                rest = &from[entity.len()..];
            }
            None => {
                out.push('&');
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_html_to_text() {
        let html = "<html><head><style>p{}</style></head><body><p>Delivery to <b>a@example.org</b> failed:</p>550 &lt;a@example.org&gt; unknown</body></html>";
        let text = strip_html(html);
        assert!(text.contains("Delivery to a@example.org failed:"), "{text}");
        assert!(text.contains("550 <a@example.org> unknown"), "{text}");
        assert!(!text.contains("p{}"));
        // Entities are decoded once: an escaped entity stays as text.
        assert_eq!(
            strip_html("a &amp;lt; b&nbsp;&quot;c&#39;"),
            "a &lt; b \"c'"
        );
        // An unclosed tag hides the rest; a block tag ends a line.
        assert_eq!(strip_html("x<br>y<span"), "x\ny");
        assert_eq!(strip_html("<SCRIPT>var a;</Script>ok"), "ok");
    }
}
