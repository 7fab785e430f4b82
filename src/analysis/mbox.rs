//! Mailbox files: several mails in one file, each after a `From ` separator line (mbox, as
//! mail spools, archives and `mutt` keep them). One mail per SMTP transaction never needs this;
//! files handed to `classify` may.

use std::sync::LazyLock;

use regex::bytes::Regex;

/// Most mails read from one mailbox file; the rest stay with the last one.
const MAX_MAILS: usize = 10_000;

/// A separator line: `From <sender> <asctime date>`, e.g.
/// `From MAILER-DAEMON  Thu Apr 29 23:34:45 2015`. The date keeps a body line that happens to
/// begin with "From " (and was not escaped to ">From ") from splitting a mail.
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?m)^From \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{1,2}:\d{2}(?::\d{2})? (?:[A-Za-z+-]\S* )?\d{4}\s*$",
    )
    .expect("valid")
});

/// The mails in `raw`: each separated mail of a mailbox file (separator line included, which
/// the mail parser passes over), or `raw` itself when it is a single mail.
pub fn mails(raw: &[u8]) -> Vec<&[u8]> {
    if !raw.starts_with(b"From ") {
        return vec![raw];
    }
    let mut starts: Vec<usize> = SEPARATOR
        .find_iter(raw)
        .map(|m| m.start())
        .take(MAX_MAILS)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
        starts.truncate(MAX_MAILS);
    }
    let mut mails: Vec<&[u8]> = starts.windows(2).map(|w| &raw[w[0]..w[1]]).collect();
    mails.push(&raw[*starts.last().unwrap_or(&0)..]);
    mails.retain(|m| !m.iter().all(u8::is_ascii_whitespace));
    mails
}

#[cfg(test)]
mod tests {
    use super::mails;

    #[test]
    fn a_single_mail_is_one_mail() {
        let raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nFrom here on\r\n";
        assert_eq!(mails(raw), vec![&raw[..]]);
    }

    #[test]
    fn splits_a_mailbox_at_its_separator_lines() {
        let raw = b"From MAILER-DAEMON  Thu Apr 29 23:34:45 2015\nFrom: a@example.org\n\nFrom the body, not a separator\n\nFrom double-bounce@example.com  Thu Jul  2 12:05:05 2020\nFrom: b@example.org\n\nbody\n";
        let found = mails(raw);
        assert_eq!(found.len(), 2);
        assert!(found[0].ends_with(b"From the body, not a separator\n\n"));
        assert!(found[1].starts_with(b"From double-bounce@example.com"));
        assert!(found[1].ends_with(b"body\n"));
    }

    #[test]
    fn a_mailbox_of_one_mail_is_that_mail() {
        let raw = b"From someone@example.org Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n";
        assert_eq!(mails(raw), vec![&raw[..]]);
    }
}
