//! Signed tokens for VERP return paths (`b+TOKEN@…`) and unsubscribe addresses
//! (`unsubscribe+TOKEN@…`).
//!
//! A token is short lower-case base32 of: kind, the id of the send record (who got which message
//! from which company and brand), the hour it was minted, and an HMAC-SHA256 (truncated to 80
//! bits) keyed per purpose from the installation secret. The MAC covers the send record's
//! recipient, company, brand and message id too, so a token cannot be moved to another address or
//! scope, and a forged bounce without one suppresses nothing.

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::Timestamp;
use crate::secret::InstallationSecret;

const VERSION: u8 = 1;
const MAC_LEN: usize = 10;
const BODY_LEN: usize = 1 + 6 + 4;
const TOKEN_LEN: usize = BODY_LEN + MAC_LEN;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// VERP return path: a bounce or complaint about this send.
    Bounce,
    /// Unsubscribe from the send's brand.
    UnsubscribeBrand,
    /// Unsubscribe from every brand of the send's company.
    UnsubscribeCompany,
}

impl TokenKind {
    fn code(self) -> u8 {
        match self {
            TokenKind::Bounce => 0,
            TokenKind::UnsubscribeBrand => 1,
            TokenKind::UnsubscribeCompany => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(TokenKind::Bounce),
            1 => Some(TokenKind::UnsubscribeBrand),
            2 => Some(TokenKind::UnsubscribeCompany),
            _ => None,
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            TokenKind::Bounce => "verp-token",
            TokenKind::UnsubscribeBrand | TokenKind::UnsubscribeCompany => "unsubscribe-token",
        }
    }
}

/// What the MAC binds: the send record's facts.
#[derive(Debug, Clone, Copy)]
pub struct TokenBinding<'a> {
    /// The recipient's normalised address.
    pub recipient: &'a str,
    pub company: &'a str,
    pub brand: &'a str,
    pub message_id: &'a str,
}

/// A token that decoded, before its MAC is checked against the send record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken {
    pub kind: TokenKind,
    pub send_id: i64,
    pub issued: Timestamp,
    bytes: [u8; TOKEN_LEN],
}

/// Why a token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a bouncegate token")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token expired")]
    Expired,
}

/// Mints and checks tokens with keys derived from the installation secret.
#[derive(Clone)]
pub struct TokenKeys {
    secret: InstallationSecret,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys of this installation.
    pub fn new(secret: &InstallationSecret) -> Self {
        Self {
            secret: secret.clone(),
        }
    }

    /// A token for `send_id`, minted at `now`.
    pub fn mint(
        &self,
        kind: TokenKind,
        send_id: i64,
        now: Timestamp,
        binding: TokenBinding<'_>,
    ) -> String {
        let mut bytes = [0u8; TOKEN_LEN];
        bytes[0] = (VERSION << 4) | kind.code();
        let id = u64::try_from(send_id).unwrap_or(0).to_be_bytes();
        bytes[1..7].copy_from_slice(&id[2..8]);
        let hours = u32::try_from(now.timestamp().max(0) / 3600).unwrap_or(u32::MAX);
        bytes[7..11].copy_from_slice(&hours.to_be_bytes());
        let mac = self
            .mac(kind, &bytes[..BODY_LEN], binding)
            .finalize()
            .into_bytes();
        bytes[BODY_LEN..].copy_from_slice(&mac[..MAC_LEN]);
        BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()
    }

    /// Decodes a token (any letter case) without checking its MAC.
    ///
    /// # Errors
    /// [`TokenError::Malformed`].
    pub fn parse(&self, token: &str) -> Result<ParsedToken, TokenError> {
        let raw = BASE32_NOPAD
            .decode(token.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| TokenError::Malformed)?;
        let bytes: [u8; TOKEN_LEN] = raw.try_into().map_err(|_| TokenError::Malformed)?;
        if bytes[0] >> 4 != VERSION {
            return Err(TokenError::Malformed);
        }
        let kind = TokenKind::from_code(bytes[0] & 0x0f).ok_or(TokenError::Malformed)?;
        let mut id = [0u8; 8];
        id[2..8].copy_from_slice(&bytes[1..7]);
        let hours = u32::from_be_bytes(bytes[7..11].try_into().map_err(|_| TokenError::Malformed)?);
        let issued = DateTime::<Utc>::from_timestamp(i64::from(hours) * 3600, 0)
            .ok_or(TokenError::Malformed)?;
        Ok(ParsedToken {
            kind,
            send_id: i64::try_from(u64::from_be_bytes(id)).map_err(|_| TokenError::Malformed)?,
            issued,
            bytes,
        })
    }

    /// Checks a parsed token against the send record it names.
    ///
    /// # Errors
    /// The MAC does not match the record, or the token is older than `max_age`.
    pub fn verify(
        &self,
        token: &ParsedToken,
        binding: TokenBinding<'_>,
        now: Timestamp,
        max_age: chrono::Duration,
    ) -> Result<(), TokenError> {
        self.mac(token.kind, &token.bytes[..BODY_LEN], binding)
            .verify_truncated_left(&token.bytes[BODY_LEN..])
            .map_err(|_| TokenError::BadSignature)?;
        if now - token.issued > max_age {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// The MAC over the token body and what it binds (compared in constant time by `verify`).
    fn mac(&self, kind: TokenKind, body: &[u8], binding: TokenBinding<'_>) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret.derive(kind.purpose()))
            .expect("any key length");
        mac.update(body);
        for part in [
            binding.recipient,
            binding.company,
            binding.brand,
            binding.message_id,
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> TokenBinding<'static> {
        TokenBinding {
            recipient: "jane@example.org",
            company: "acme",
            brand: "news",
            message_id: "n-1@acme.example",
        }
    }

    #[test]
    fn tokens_round_trip_and_fit_a_local_part() {
        let keys = TokenKeys::new(&InstallationSecret::generate());
        let now = Utc::now();
        for kind in [
            TokenKind::Bounce,
            TokenKind::UnsubscribeBrand,
            TokenKind::UnsubscribeCompany,
        ] {
            let token = keys.mint(kind, 123_456_789, now, binding());
            assert!(format!("unsubscribe+{token}").len() <= 64, "{token}");
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{token}"
            );
            let parsed = keys.parse(&token.to_ascii_uppercase()).unwrap();
            assert_eq!((parsed.kind, parsed.send_id), (kind, 123_456_789));
            keys.verify(&parsed, binding(), now, chrono::Duration::days(1))
                .unwrap();
        }
    }

    #[test]
    fn forged_moved_or_old_tokens_fail() {
        let keys = TokenKeys::new(&InstallationSecret::generate());
        let now = Utc::now();
        let token = keys.mint(TokenKind::Bounce, 7, now, binding());
        let parsed = keys.parse(&token).unwrap();
        let other = TokenBinding {
            recipient: "john@example.org",
            ..binding()
        };
        assert_eq!(
            keys.verify(&parsed, other, now, chrono::Duration::days(1)),
            Err(TokenError::BadSignature)
        );
        let foreign = TokenKeys::new(&InstallationSecret::generate());
        assert_eq!(
            foreign.verify(&parsed, binding(), now, chrono::Duration::days(1)),
            Err(TokenError::BadSignature)
        );
        let later = now + chrono::Duration::days(30);
        assert_eq!(
            keys.verify(&parsed, binding(), later, chrono::Duration::days(7)),
            Err(TokenError::Expired)
        );
        for bad in ["", "abc", "!!!!", &token[1..], &format!("{token}aa")] {
            assert_eq!(keys.parse(bad), Err(TokenError::Malformed), "{bad}");
        }
        // A different kind byte does not verify: the MAC covers it.
        let mut bytes = BASE32_NOPAD
            .decode(token.to_ascii_uppercase().as_bytes())
            .unwrap();
        bytes[0] = (VERSION << 4) | 2;
        let moved = keys.parse(&BASE32_NOPAD.encode(&bytes)).unwrap();
        assert!(
            keys.verify(&moved, binding(), now, chrono::Duration::days(1))
                .is_err()
        );
    }
}
