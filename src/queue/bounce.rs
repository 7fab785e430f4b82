//! A permanent refusal by the upstream, written as the delivery status notification the upstream
//! would have sent: it goes through the inbound path (analysis, attribution by the VERP token,
//! thresholds, evidence) exactly as a bounce received on the MX does.

use std::net::{IpAddr, Ipv4Addr};

use crate::smtp::{MailFrom, RcptTo, ReceivedMessage, SessionInfo};
use crate::store::QueueItem;

/// The DSN for `item` refused with `code` and `text`, addressed to its return path.
pub fn refusal_dsn(
    item: &QueueItem,
    code: u16,
    text: &str,
    reporting_mta: &str,
    upstream: &str,
) -> ReceivedMessage {
    let status = enhanced_status(text).unwrap_or_else(|| format!("{}.0.0", code / 100));
    let boundary = format!("bouncegate-{}", hex::encode(rand::random::<[u8; 8]>()));
    let text = text.replace(['\r', '\n'], " ");
    let original_headers = original_headers(&item.raw);
    let dsn = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n\
         To: <{return_path}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         The relay's upstream {upstream} refused the mail for <{recipient}>:\r\n\
         {code} {text}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {reporting_mta}\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Remote-MTA: dns; {upstream}\r\n\
         Diagnostic-Code: smtp; {code} {text}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {original_headers}\
         --{boundary}--\r\n",
        return_path = item.return_path,
        recipient = item.recipient,
        date = chrono::Utc::now().to_rfc2822(),
    );
    ReceivedMessage {
        session: SessionInfo {
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: reporting_mta.to_string(),
            tls: false,
            identity: None,
        },
        mail_from: MailFrom::default(),
        rcpt_to: vec![RcptTo {
            address: item.return_path.clone(),
            ..RcptTo::default()
        }],
        data: dsn.into_bytes(),
    }
}

/// The first enhanced status code (`5.1.1`) in a reply text.
fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .find(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The original's header block, for the report's third part.
fn original_headers(raw: &[u8]) -> String {
    let (header, _) = crate::message::split(raw);
    let mut text = String::from_utf8_lossy(header).into_owned();
    if !text.ends_with("\r\n") {
        text.push_str("\r\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::enhanced_status;

    #[test]
    fn the_enhanced_status_is_read_from_the_reply() {
        for (text, expected) in [
            (
                "5.1.1 <x@example.net>: Recipient address rejected",
                Some("5.1.1"),
            ),
            (
                "Requested action aborted 4.7.28 rate limited",
                Some("4.7.28"),
            ),
            ("User unknown", None),
            ("version 1.2.3 of something", None),
        ] {
            assert_eq!(enhanced_status(text).as_deref(), expected, "{text}");
        }
    }
}
