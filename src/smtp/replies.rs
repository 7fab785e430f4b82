//! Every reply the server sends, in one table: code, enhanced status code, text.

use std::borrow::Cow;

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: &'static str,
    pub text: Cow<'static, str>,
}

macro_rules! replies {
    ($($name:ident = $code:literal $status:literal $text:literal;)+) => {
        impl Reply {
            $(
                #[doc = concat!("`", stringify!($code), " ", $status, " ", $text, "`")]
                pub const $name: Reply = Reply { code: $code, status: $status, text: Cow::Borrowed($text) };
            )+
        }
    };
}

replies! {
    OK = 250 "2.0.0" "OK";
    SENDER_OK = 250 "2.1.0" "Sender OK";
    RECIPIENT_OK = 250 "2.1.5" "Recipient OK";
    ACCEPTED = 250 "2.0.0" "Message accepted";
    RESET = 250 "2.0.0" "Reset";
    BYE = 221 "2.0.0" "Bye";
    HELP = 214 "2.0.0" "See RFC 5321";
    AUTHENTICATED = 235 "2.7.0" "Authentication succeeded";
    START_DATA = 354 "" "Send the message, end with <CRLF>.<CRLF>";
    START_TLS = 220 "2.0.0" "Ready to start TLS";
    SHUTTING_DOWN = 421 "4.3.2" "Service shutting down, try again later";
    TIMEOUT = 421 "4.4.2" "Timeout, closing connection";
    TOO_MANY_CONNECTIONS = 421 "4.7.0" "Too many connections, try again later";
    TOO_MANY_ERRORS = 421 "4.7.0" "Too many errors, closing connection";
    TOO_MANY_COMMANDS = 421 "4.7.0" "Too many commands without a message, closing connection";
    TOO_SLOW = 421 "4.4.2" "Message data too slow, closing connection";
    SESSION_TOO_LONG = 421 "4.4.2" "Session too long, closing connection";
    STORE_FAILED = 451 "4.3.0" "Temporary failure storing the message, try again later";
    AUTH_TEMPORARY = 454 "4.7.0" "Temporary authentication failure, try again later";
    AUTH_LOCKED_OUT = 421 "4.7.0" "Too many failed authentications, try again later";
    TOO_MANY_RECIPIENTS = 452 "4.5.3" "Too many recipients";
    TLS_UNAVAILABLE = 454 "4.7.0" "TLS not available";
    UNKNOWN_COMMAND = 500 "5.5.1" "Command not recognized";
    LINE_TOO_LONG = 500 "5.5.2" "Line too long";
    SYNTAX_ERROR = 501 "5.5.4" "Syntax error in parameters";
    BAD_CREDENTIALS_SYNTAX = 501 "5.5.2" "Cannot decode the credentials";
    AUTH_CANCELLED = 501 "5.7.0" "Authentication cancelled";
    BAD_SENDER = 501 "5.1.7" "Bad sender address syntax";
    BAD_RECIPIENT = 501 "5.1.3" "Bad recipient address syntax";
    NOT_IMPLEMENTED = 502 "5.5.1" "Command not implemented";
    VRFY_DISABLED = 502 "5.5.1" "VRFY and EXPN are disabled";
    NEED_HELO = 503 "5.5.1" "Send EHLO or HELO first";
    NEED_MAIL = 503 "5.5.1" "Send MAIL FROM first";
    NESTED_MAIL = 503 "5.5.1" "Sender already given";
    NEED_RCPT = 503 "5.5.1" "Send RCPT TO first";
    ALREADY_TLS = 503 "5.5.1" "TLS already active";
    ALREADY_AUTHENTICATED = 503 "5.5.1" "Already authenticated";
    AUTH_IN_TRANSACTION = 503 "5.5.1" "AUTH is not allowed during a mail transaction";
    UNKNOWN_MECHANISM = 504 "5.5.4" "Unrecognized authentication mechanism; use PLAIN or LOGIN";
    AUTH_REQUIRED = 530 "5.7.0" "Authentication required";
    AUTH_FAILED = 535 "5.7.8" "Authentication credentials invalid";
    ENCRYPTION_REQUIRED = 538 "5.7.11" "Encryption required for requested authentication mechanism";
    UNKNOWN_RECIPIENT = 550 "5.1.1" "No such recipient here";
    REFUSED = 550 "5.7.1" "Message refused";
    TOO_BIG = 552 "5.3.4" "Message too big";
    BAD_HEADER = 554 "5.6.0" "The message header cannot be read";
}

impl Reply {
    /// A reply with its own text.
    pub fn with_text(&self, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            text: text.into(),
            ..self.clone()
        }
    }

    /// The reply as sent: `CODE STATUS TEXT\r\n` (control characters of the text removed).
    pub fn to_wire(&self) -> String {
        let text: String = self.text.chars().filter(|c| !c.is_control()).collect();
        if self.status.is_empty() {
            format!("{} {}\r\n", self.code, text)
        } else {
            format!("{} {} {}\r\n", self.code, self.status, text)
        }
    }
}

/// The EHLO answer: greeting line and one line per extension.
pub fn ehlo(
    hostname: &str,
    peer_name: &str,
    max_size: usize,
    offer_tls: bool,
    offer_auth: bool,
) -> String {
    let mut lines = vec![format!("{hostname} Hello {peer_name}")];
    lines.push("PIPELINING".into());
    lines.push(format!("SIZE {max_size}"));
    lines.push("8BITMIME".into());
    lines.push("SMTPUTF8".into());
    lines.push("ENHANCEDSTATUSCODES".into());
    if offer_tls {
        lines.push("STARTTLS".into());
    }
    if offer_auth {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    let last = lines.len() - 1;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| format!("250{}{line}\r\n", if i == last { ' ' } else { '-' }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_well_formed() {
        assert_eq!(Reply::ACCEPTED.to_wire(), "250 2.0.0 Message accepted\r\n");
        assert_eq!(
            Reply::START_DATA.to_wire(),
            "354 Send the message, end with <CRLF>.<CRLF>\r\n"
        );
        assert_eq!(
            Reply::REFUSED.with_text("no\r\nthanks").to_wire(),
            "550 5.7.1 nothanks\r\n"
        );
        let ehlo = ehlo("mx.example.org", "client.example", 1000, true, false);
        assert!(ehlo.starts_with("250-mx.example.org Hello client.example\r\n"));
        assert!(ehlo.ends_with("250 STARTTLS\r\n"));
        assert!(!super::ehlo("mx", "c", 1, false, false).contains("STARTTLS"));
        assert!(super::ehlo("mx", "c", 1, false, true).ends_with("250 AUTH PLAIN LOGIN\r\n"));
    }
}
