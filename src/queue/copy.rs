//! The recipient's copy of a queued message: its own List-Unsubscribe pair (RFC 8058) for
//! promotional mail, and a DKIM signature over the result when the From domain has a key.

use super::dkim::DkimSigners;

/// RFC 8058's pair for one recipient's copy: the HTTPS one-click link and the mailto fallback.
pub fn list_unsubscribe(public_url: &str, token: &str, mailto: &str) -> String {
    format!(
        "List-Unsubscribe: <{}/u/{token}>, <mailto:{mailto}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        public_url.trim_end_matches('/')
    )
}

/// `raw` as `recipient` gets it: the List-Unsubscribe headers first (when given), then the
/// queued bytes, signed when the From domain has a key.
pub fn copy(list_unsubscribe: Option<String>, raw: &[u8], dkim: &DkimSigners) -> Vec<u8> {
    let mut message = Vec::with_capacity(raw.len() + 1024);
    // Below the relay's own trace line, which stays on top (RFC 5321 §4.4).
    let trace = leading_trace(raw);
    message.extend_from_slice(&raw[..trace]);
    if let Some(headers) = list_unsubscribe {
        message.extend_from_slice(headers.as_bytes());
    }
    message.extend_from_slice(&raw[trace..]);
    if dkim.is_empty() {
        return message;
    }
    let signature = crate::message::from_domain(&message).and_then(|d| dkim.sign(&d, &message));
    match signature {
        Some(signature) => {
            let mut signed = signature.into_bytes();
            signed.extend_from_slice(&message);
            signed
        }
        None => message,
    }
}

/// The length of the `Received:` field the message starts with, if it does.
fn leading_trace(raw: &[u8]) -> usize {
    let (header, _) = crate::message::split(raw);
    match crate::message::fields(header) {
        Ok(fields) => fields
            .first()
            .filter(|f| f.name.eq_ignore_ascii_case("Received"))
            .map_or(0, |f| f.raw.len()),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_carries_its_own_list_unsubscribe() {
        assert_eq!(
            list_unsubscribe("https://u.example/", "tok", "unsubscribe+tok@b.example"),
            "List-Unsubscribe: <https://u.example/u/tok>, <mailto:unsubscribe+tok@b.example>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        );
        let plain = copy(
            Some("List-Unsubscribe: <x>\r\n".into()),
            b"From: a@b.example\r\n\r\nhi\r\n",
            &DkimSigners::default(),
        );
        assert_eq!(
            plain,
            b"List-Unsubscribe: <x>\r\nFrom: a@b.example\r\n\r\nhi\r\n"
        );
        let traced = copy(
            Some("List-Unsubscribe: <x>\r\n".into()),
            b"Received: from a\r\n\tby b; date\r\nFrom: a@b.example\r\n\r\nhi\r\n",
            &DkimSigners::default(),
        );
        assert_eq!(
            traced,
            b"Received: from a\r\n\tby b; date\r\nList-Unsubscribe: <x>\r\nFrom: a@b.example\r\n\r\nhi\r\n"
        );
    }
}
