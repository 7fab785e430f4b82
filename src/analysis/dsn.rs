//! RFC 3464 / RFC 6533 delivery-status fields: a per-message block, then one block per recipient.
//!
//! Lenient: folded lines are joined, blocks split on blank lines or on a new `Final-Recipient`,
//! unknown fields kept, a block without a recipient skipped rather than fatal.

/// One recipient block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnRecipient {
    pub final_recipient: Option<String>,
    pub original_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub remote_mta: Option<String>,
    /// Every field as given (name lower-cased), for what this module does not interpret.
    pub fields: Vec<(String, String)>,
}

impl DsnRecipient {
    /// The recipient address: Final-Recipient, else Original-Recipient.
    pub fn address(&self) -> Option<&str> {
        self.final_recipient
            .as_deref()
            .or(self.original_recipient.as_deref())
    }
}

/// The parsed report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub reporting_mta: Option<String>,
    pub recipients: Vec<DsnRecipient>,
}

/// Whether a text looks like delivery-status fields (a mislabelled status part).
pub fn looks_like_dsn(text: &str) -> bool {
    // One pass over the lines, a field's first letter choosing the name to compare.
    let (mut recipient, mut outcome) = (false, false);
    for line in text.lines() {
        match line.as_bytes().first().map(u8::to_ascii_lowercase) {
            Some(b'f') => recipient |= starts_with_field(line, "final-recipient"),
            Some(b'o') => recipient |= starts_with_field(line, "original-recipient"),
            Some(b'a') => outcome |= starts_with_field(line, "action"),
            Some(b's') => outcome |= starts_with_field(line, "status"),
            _ => {}
        }
        if recipient && outcome {
            return true;
        }
    }
    false
}

fn starts_with_field(line: &str, name: &str) -> bool {
    line.len() > name.len()
        && line.as_bytes()[name.len()] == b':'
        && line[..name.len()].eq_ignore_ascii_case(name)
}

/// Parses delivery-status fields.
pub fn parse(text: &str) -> DeliveryStatus {
    let mut report = DeliveryStatus::default();
    for block in fields(text).split(|(name, _)| name.is_empty()) {
        let starts = |name: &str| name == "final-recipient" || name == "original-recipient";
        if !block.iter().any(|(name, _)| starts(name)) {
            if let Some((_, value)) = block.iter().find(|(name, _)| name == "reporting-mta") {
                report.reporting_mta = Some(strip_type(value));
            }
            continue;
        }
        // Several recipients without blank lines between them: a new one starts at each
        // Final-Recipient after the first (or an Original-Recipient that follows a complete one).
        // Fields before the first recipient field belong to the first recipient.
        let mut current = DsnRecipient::default();
        for (name, value) in block {
            let complete = current.final_recipient.is_some();
            if starts(name)
                && complete
                && (name == "final-recipient" || current.original_recipient.is_some())
            {
                push(&mut report, std::mem::take(&mut current));
            }
            apply(&mut current, name, value);
        }
        push(&mut report, current);
    }
    report
}

fn apply(recipient: &mut DsnRecipient, name: &str, value: &str) {
    match name {
        "final-recipient" | "x-actual-recipient" if recipient.final_recipient.is_none() => {
            recipient.final_recipient = Some(address_of(value))
        }
        "original-recipient" => recipient.original_recipient = Some(address_of(value)),
        "action" => recipient.action = value.split_whitespace().next().map(str::to_ascii_lowercase),
        "status" => recipient.status = Some(value.trim().to_string()),
        "diagnostic-code" => recipient.diagnostic = Some(strip_type(value)),
        "remote-mta" => recipient.remote_mta = Some(strip_type(value)),
        _ => {}
    }
    recipient.fields.push((name.to_string(), value.to_string()));
}

fn push(report: &mut DeliveryStatus, recipient: DsnRecipient) {
    if recipient.address().is_some_and(|a| !a.is_empty()) {
        report.recipients.push(recipient);
    }
}

/// `(lower-case name, unfolded value)` per field; `("", "")` marks a blank line.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if out.last().is_none_or(|(n, _)| !n.is_empty()) {
                out.push((String::new(), String::new()));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((name, value)) = out.last_mut().filter(|(n, _)| !n.is_empty()) {
                let _ = name;
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                out.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    out
}

/// `rfc822; <a@b>` → `a@b`.
fn address_of(value: &str) -> String {
    strip_type(value)
        .trim_matches(|c| c == '<' || c == '>' || c == '"' || c == ' ')
        .to_string()
}

/// `smtp; 550 …` → `550 …`; `dns; mx.example` → `mx.example`.
fn strip_type(value: &str) -> String {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.trim().is_empty() && !kind.contains(' ') => {
            rest.trim().to_string()
        }
        _ => value.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recipient_blocks() {
        let text = "Reporting-MTA: dns; mail.example.org\r\nArrival-Date: today\r\n\r\n\
                    Final-Recipient: rfc822; a@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                    Remote-MTA: dns; mx.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1 <a@example.net>:\r\n    user unknown\r\n\r\n\
                    Original-Recipient: rfc822;B@example.net\r\nFinal-Recipient: RFC822; <b@example.net>\r\nAction: delayed\r\nStatus: 4.4.7\r\n";
        let report = parse(text);
        assert!(looks_like_dsn(text));
        assert_eq!(report.reporting_mta.as_deref(), Some("mail.example.org"));
        assert_eq!(report.recipients.len(), 2);
        let first = &report.recipients[0];
        assert_eq!(first.address(), Some("a@example.net"));
        assert_eq!(
            first.diagnostic.as_deref(),
            Some("550 5.1.1 <a@example.net>: user unknown")
        );
        assert_eq!(first.remote_mta.as_deref(), Some("mx.example.net"));
        assert_eq!(report.recipients[1].address(), Some("b@example.net"));
        assert_eq!(report.recipients[1].action.as_deref(), Some("delayed"));
    }

    #[test]
    fn splits_recipients_without_blank_lines_and_survives_garbage() {
        let text = "Final-Recipient: rfc822; a@example.net\nAction: failed\nFinal-Recipient: rfc822; b@example.net\nAction: failed\n";
        assert_eq!(parse(text).recipients.len(), 2);
        for garbage in [
            "",
            ":",
            "\n\n\n",
            "Final-Recipient:\n",
            " folded first\nAction: failed",
            "\u{0}\u{ff}: x",
        ] {
            let _ = parse(garbage);
        }
    }

    #[test]
    fn parses_at_every_split_of_a_report() {
        let text = "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1\n";
        for i in 0..=text.len() {
            let report = parse(&text[..i]);
            assert!(report.recipients.len() <= 1);
        }
    }
}
