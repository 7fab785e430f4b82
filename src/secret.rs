//! The installation secret and what is keyed with it.
//!
//! One random 256-bit secret per installation (kept in the store's settings, so restarts and
//! several instances on one database agree). Each use derives its own key, so an address hash can
//! never be replayed as a token or the other way round.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::address::EmailAddress;

type HmacSha256 = Hmac<Sha256>;

/// The installation secret could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("the stored installation secret is not 64 hex digits")]
pub struct SecretFormatError;

/// The keyed hash of a normalised address: what stays when the address itself is erased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressHash(String);

impl AddressHash {
    /// The hex text as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a stored hash.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }
}

/// The installation's secret.
#[derive(Clone)]
pub struct InstallationSecret {
    bytes: [u8; 32],
}

impl std::fmt::Debug for InstallationSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstallationSecret(..)")
    }
}

impl InstallationSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self { bytes }
    }

    /// Decodes the stored hex form.
    ///
    /// # Errors
    /// The text is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, SecretFormatError> {
        let raw = hex::decode(text.trim()).map_err(|_| SecretFormatError)?;
        let bytes: [u8; 32] = raw.try_into().map_err(|_| SecretFormatError)?;
        Ok(Self { bytes })
    }

    /// The hex form to store.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// A key for one purpose (`"address-hash"`, `"verp"`, `"unsubscribe"` …).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.bytes).expect("HMAC takes any key length");
        mac.update(b"bouncegate key derivation\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The keyed hash of an address (of its normalised form).
    pub fn address_hasher(&self) -> AddressHasher {
        AddressHasher {
            mac: HmacSha256::new_from_slice(&self.derive("address-hash")).expect("any key length"),
        }
    }
}

/// Computes keyed address hashes; cheap to clone, reuse it for bulk work.
#[derive(Clone)]
pub struct AddressHasher {
    mac: HmacSha256,
}

impl AddressHasher {
    /// The keyed hash of `address`.
    pub fn hash(&self, address: &EmailAddress) -> AddressHash {
        let mut mac = self.mac.clone();
        mac.update(address.normalized().as_bytes());
        AddressHash(hex::encode(mac.finalize().into_bytes()))
    }
}

/// Whether `password` matches an argon2 PHC string (`false` for a malformed one).
pub fn verify_password_hash(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Equal bytes, in time that depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (i, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_case_insensitively_and_depend_on_the_secret() {
        let secret = InstallationSecret::generate();
        let hasher = secret.address_hasher();
        let a = hasher.hash(&EmailAddress::parse("Jane@Example.org").unwrap());
        let b = hasher.hash(&EmailAddress::parse("jane@example.ORG").unwrap());
        let c = hasher.hash(&EmailAddress::parse("john@example.org").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.as_str().len(), 64);
        let other = InstallationSecret::generate().address_hasher();
        assert_ne!(
            other.hash(&EmailAddress::parse("jane@example.org").unwrap()),
            a
        );
    }

    #[test]
    fn the_secret_round_trips_through_hex() {
        let secret = InstallationSecret::generate();
        let again = InstallationSecret::from_hex(&secret.to_hex()).unwrap();
        assert_eq!(secret.derive("x"), again.derive("x"));
        assert_ne!(secret.derive("x"), secret.derive("y"));
        assert!(InstallationSecret::from_hex("abcd").is_err());
    }
}

/// Text for logs at info level and above: every e-mail address in it replaced by `addr:` and
/// the first 12 hex digits of its keyed hash, so log lines can be correlated (the same address
/// gives the same tag, and `bouncegate` can compute it) without holding personal data.
pub fn redact_addresses(text: &str, hasher: &AddressHasher) -> String {
    static ADDRESS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = ADDRESS.get_or_init(|| {
        regex::Regex::new(r#"[A-Za-z0-9._%+\-=!#$&'*/?^`{|}~]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+"#)
            .expect("valid pattern")
    });
    pattern
        .replace_all(
            text,
            |found: &regex::Captures<'_>| match crate::address::EmailAddress::parse(&found[0]) {
                Ok(address) => {
                    let hash = hasher.hash(&address);
                    format!("addr:{}", &hash.as_str()[..12.min(hash.as_str().len())])
                }
                Err(_) => "addr:?".to_string(),
            },
        )
        .into_owned()
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn logs_name_addresses_by_keyed_hash_only() {
        let hasher = InstallationSecret::generate().address_hasher();
        let text = "550 5.1.1 <Jane.Doe@Example.org>: user unknown; also jane.doe@example.org";
        let redacted = redact_addresses(text, &hasher);
        assert!(!redacted.to_lowercase().contains("jane"), "{redacted}");
        let tag = format!(
            "addr:{}",
            &hasher
                .hash(&EmailAddress::parse("jane.doe@example.org").unwrap())
                .as_str()[..12]
        );
        assert_eq!(redacted.matches(&tag).count(), 2, "{redacted}");
        assert!(redacted.starts_with("550 5.1.1 <addr:"), "{redacted}");
    }
}
