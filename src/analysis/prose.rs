//! Non-standard bounces: the failed recipients and their diagnostics, read from the prose that
//! Postfix, Sendmail, Exim, qmail, Exchange, Gmail and the rest write for people.

use std::sync::LazyLock;

use regex::Regex;

/// Longest diagnostic kept per recipient.
const MAX_DIAGNOSTIC: usize = 1_000;
/// Most recipients read from one bounce.
const MAX_RECIPIENTS: usize = 500;

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
        .expect("valid")
});

/// Lines after which the bounce quotes the original message, not its own findings.
static ORIGINAL_STARTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?im)^(?:[\s>|-]*(?:below this line is a copy of the message|this is a copy of the message|original message follows|-+ ?original message ?-+|original message headers|the original message (?:headers? )?(?:is|are|was) (?:attached|included|below)|the headers of the original message|content-type: message/rfc822|-+ ?(?:returned|undelivered) message ?-+|-+ ?message header follows ?-+|header of the original message)|(?:received|return-path|dkim-signature|message-id): )",
    )
    .expect("valid")
});

/// One recipient found in the prose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProseRecipient {
    pub address: String,
    pub diagnostic: String,
}

/// The part of a bounce's text before it quotes the original.
pub fn findings(text: &str) -> &str {
    match ORIGINAL_STARTS.find(text) {
        // A header line at the very top is the bounce itself pasted as text: keep reading.
        Some(m) if m.start() > 0 => &text[..m.start()],
        _ => text,
    }
}

/// The recipients named in `text` (the bounce's own text, see [`findings`]; not those `exclude`
/// says are senders or system addresses), each with the lines that explain what happened to it.
pub fn recipients(text: &str, exclude: &dyn Fn(&str) -> bool) -> Vec<ProseRecipient> {
    // The original's `To:`/`Cc:` quoted in the prose ("Your message To: a; b ... did not reach
    // the following recipient(s): a ...") names every recipient, failed or not, before the
    // lines that say what failed: read only when no other line names a recipient.
    let found = recipients_in(text, exclude, true);
    if found.is_empty() {
        recipients_in(text, exclude, false)
    } else {
        found
    }
}

fn recipients_in(
    text: &str,
    exclude: &dyn Fn(&str) -> bool,
    skip_quoted_to: bool,
) -> Vec<ProseRecipient> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found: Vec<ProseRecipient> = Vec::new();
    let mut i = 0;
    while i < lines.len() && found.len() < MAX_RECIPIENTS {
        let line = lines[i];
        // Every address has an `@`: a line without one is passed over without a regex.
        if !line.contains('@')
            || is_not_about_recipients(line)
            || (skip_quoted_to && is_quoted_to(line))
        {
            i += 1;
            continue;
        }
        let new_address = ADDRESS
            .find_iter(line)
            .map(|m| m.as_str().trim_end_matches('.'))
            .find(|a| !exclude(a) && !found.iter().any(|f| f.address.eq_ignore_ascii_case(a)));
        let Some(address) = new_address else {
            i += 1;
            continue;
        };
        // The explanation: the rest of this line, then the lines that follow until a blank line
        // or a line that names another recipient.
        let mut diagnostic = line.replace(address, " ");
        // A transcript's summary line (`554 <a@b>... reason`, at the start of its line): each
        // such line is one message, so the next one starting with a reply code is not this one's.
        let summary_line = starts_with_reply_code(line);
        if summary_line {
            // Its cause is the remote's answer just above it (`<<< 550 Relaying denied`).
            let answers = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("<<<"))
                .count();
            if answers > 0 {
                let mut with_cause = lines[i - answers..i].join(" ");
                with_cause.push(' ');
                with_cause.push_str(&diagnostic);
                diagnostic = with_cause;
            }
        }
        let mut j = i + 1;
        let mut saw_text = !clean(&diagnostic).is_empty();
        while j < lines.len() && diagnostic.len() < MAX_DIAGNOSTIC {
            let next = lines[j];
            if next.trim().is_empty() {
                if saw_text {
                    break;
                }
                j += 1;
                continue;
            }
            let names_other = next.contains('@')
                && ADDRESS
                    .find_iter(next)
                    .map(|m| m.as_str().trim_end_matches('.'))
                    .any(|a| !a.eq_ignore_ascii_case(address) && !exclude(a));
            if names_other && (saw_text || starts_with_address(next)) {
                break;
            }
            if summary_line && starts_with_reply_code(next) {
                break;
            }
            // Quoted lines belong to the original, not to this recipient's explanation.
            let next_trimmed = next.trim_start();
            if saw_text && next_trimmed.starts_with('>') && !next_trimmed.starts_with(">>>") {
                break;
            }
            diagnostic.push(' ');
            diagnostic.push_str(next.trim());
            saw_text = true;
            j += 1;
        }
        found.push(ProseRecipient {
            address: address.to_string(),
            diagnostic: clean(&diagnostic),
        });
        i = j.max(i + 1);
    }
    found
}

/// Lines that name helpdesks or quote headers, not failed recipients.
fn is_not_about_recipients(line: &str) -> bool {
    static NOT_RECIPIENTS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(?-u:\b)(?:contact|assistance|questions?|help ?desk|support team)(?-u:\b)|^[\s>]*(?:(?:[a-z]+-)*message-id|in-reply-to|references|from|sender|reply-to)\s*:")
            .expect("valid")
    });
    NOT_RECIPIENTS.is_match(line)
}

/// A quoted `To:`/`Cc:` header line (`  To:      a@b; c@d`).
fn is_quoted_to(line: &str) -> bool {
    static QUOTED_TO: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^[ \t>]*(?:to|cc)[ \t]*:").expect("valid"));
    QUOTED_TO.is_match(line)
}

/// Whether `line` names `address` (ASCII case ignored), anywhere in it; an empty `address` is in
/// every line, as with `str::contains`.
pub fn line_names(line: &str, address: &str) -> bool {
    address.is_empty()
        || line
            .as_bytes()
            .windows(address.len())
            .any(|w| w.eq_ignore_ascii_case(address.as_bytes()))
}

/// A line that begins, unindented, with an SMTP reply code and a space (`550 ...`).
fn starts_with_reply_code(line: &str) -> bool {
    reply_code_and_separator(line).is_some_and(|(_, separator)| separator == b' ')
}

/// The reply code a line begins with, unindented and followed by more, and the byte after it:
/// `-` on a reply's lines but its last, a space on the last (`550-...`, `550 ...`).
fn reply_code_and_separator(line: &str) -> Option<(&str, u8)> {
    let b = line.as_bytes();
    (b.len() > 4
        && matches!(b[0], b'2' | b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit())
    .then(|| (&line[..3], b[3]))
}

/// A line that begins with an address (`<a@b>:`, `a@b`): a new recipient block.
fn starts_with_address(line: &str) -> bool {
    let trimmed = line.trim_start().trim_start_matches('<');
    trimmed.contains('@') && ADDRESS.find(trimmed).is_some_and(|m| m.start() == 0)
}

/// Every line of `text` that mentions `address` together with a reply or status code: where
/// a session transcript says what the server answered.
pub fn transcript_lines(text: &str, address: &str) -> String {
    static CODE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?-u:\b)[45]\d\d(?-u:\b)|(?-u:\b)[45]\.\d{1,3}\.\d{1,3}(?-u:\b)")
            .expect("valid")
    });
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line_names(line, address) {
            for candidate in lines.iter().skip(i).take(3) {
                if CODE.is_match(candidate) && out.len() < MAX_DIAGNOSTIC {
                    out.push_str(candidate.trim());
                    out.push(' ');
                }
            }
        }
    }
    clean(&out)
}

/// A diagnostic that is only the first line of a multi-line reply (`554-...`; Sendmail's
/// Diagnostic-Code keeps no more), completed from the session transcript that quotes the whole
/// reply (`<<< 554-...`, `<<< 554 ...`). `None` when it is not such a line or the transcript
/// does not hold it.
pub fn whole_reply(diagnostic: &str, text: &str) -> Option<String> {
    /// Continuation lines taken at most: replies are a few lines; a runaway one stops here.
    const MAX_LINES: usize = 16;
    let first = diagnostic.trim();
    let code = match reply_code_and_separator(first) {
        Some((code, b'-')) if !code.starts_with('2') => code,
        _ => return None,
    };
    fn quoted(line: &str) -> &str {
        let line = line.trim();
        line.strip_prefix("<<<").map_or(line, str::trim_start)
    }
    let mut lines = text.lines();
    lines.find(|line| quoted(line) == first)?;
    let mut out = first.to_string();
    for line in lines.take(MAX_LINES) {
        let line = quoted(line);
        let Some(rest) = line.strip_prefix(code) else {
            break;
        };
        out.push(' ');
        out.push_str(line);
        if !rest.starts_with('-') {
            break;
        }
    }
    (out.len() > first.len()).then_some(out)
}

/// Collapses white space and trims the punctuation left around a removed address; keeps at
/// most [`MAX_DIAGNOSTIC`] bytes.
pub fn clean(text: &str) -> String {
    clean_within(text, MAX_DIAGNOSTIC)
}

/// [`clean`], keeping at most `limit` bytes.
pub fn clean_within(text: &str, limit: usize) -> String {
    // Words are joined only as far as the result can reach: twice the limit leaves room for what
    // the trimming and the `<>` removal below take away (a bounce's whole text can be 256 KiB,
    // its diagnostic is a thousand bytes).
    let reach = limit.saturating_mul(2).saturating_add(64);
    let mut joined = String::with_capacity(text.len().min(reach) + 16);
    for word in text.split_whitespace() {
        if joined.len() >= reach {
            break;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(word);
    }
    let trimmed = joined.trim_matches(|c: char| {
        c == '<' || c == '>' || c == ':' || c == ',' || c == ';' || c == '"' || c.is_whitespace()
    });
    let mut out = if trimmed.contains("<>") || trimmed.contains("< >") {
        trimmed.replace("<>", "").replace("< >", "")
    } else {
        trimmed.to_string()
    };
    if out.len() > limit {
        let mut end = limit;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out.trim().to_string()
}

/// All addresses in a text.
pub fn addresses(text: &str) -> impl Iterator<Item = &str> {
    ADDRESS
        .find_iter(text)
        .map(|m| m.as_str().trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn a_first_line_is_completed_from_the_transcript() {
        let transcript = "... while talking to mx.example.net.:\n>>> RCPT To:<a@example.net>\n<<< 550-5.7.1 First line\n<<< 550-5.7.1 second line\n<<< 550 5.7.1 last line\n<<< 250 2.0.0 ok\n554 5.0.0 Service unavailable\n";
        assert_eq!(
            whole_reply("550-5.7.1 First line", transcript).as_deref(),
            Some("550-5.7.1 First line 550-5.7.1 second line 550 5.7.1 last line")
        );
        // A whole reply, a line the transcript does not hold, and no transcript: left alone.
        assert_eq!(whole_reply("550 5.7.1 last line", transcript), None);
        assert_eq!(whole_reply("550-5.7.1 Another line", transcript), None);
        assert_eq!(whole_reply("550-5.7.1 First line", ""), None);
    }

    #[test]
    fn reads_postfix_exim_and_qmail_prose() {
        for (text, address, diagnostic_has) in [
            (
                "The mail system\n\n<jane@example.net>: host mx.example.net[192.0.2.1] said: 550\n    5.1.1 <jane@example.net>: Recipient address rejected: User unknown (in reply to\n    RCPT TO command)\n",
                "jane@example.net",
                "550 5.1.1",
            ),
            (
                "A message that you sent could not be delivered.\n\n  jane@example.net\n    SMTP error from remote mail server after RCPT TO:<jane@example.net>:\n    550 No such user here\n",
                "jane@example.net",
                "No such user here",
            ),
            (
                "I'm afraid I wasn't able to deliver your message.\n\n<jane@example.net>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\nTo: other@example.org\n",
                "jane@example.net",
                "(#5.1.1)",
            ),
        ] {
            let found = recipients(findings(text), &none);
            assert_eq!(found.len(), 1, "{text}\n{found:?}");
            assert_eq!(found[0].address, address);
            assert!(found[0].diagnostic.contains(diagnostic_has), "{found:?}");
        }
    }

    #[test]
    fn separates_several_recipients_and_skips_excluded_ones() {
        let text = "From: sender@example.org\n\n<a@example.net>: user unknown\n<b@example.net>: mailbox full\n";
        let found = recipients(text, &|a| a == "sender@example.org");
        let addresses: Vec<_> = found.iter().map(|f| f.address.as_str()).collect();
        assert_eq!(addresses, ["a@example.net", "b@example.net"]);
        assert_eq!(found[1].diagnostic, "mailbox full");
    }
}
