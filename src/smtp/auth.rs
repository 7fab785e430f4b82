//! AUTH PLAIN (RFC 4616) and LOGIN: decoding what the client sends. Whether the credentials are
//! right is the [`Authenticator`]'s to say; the session offers AUTH only where a password cannot
//! be read on the way (after STARTTLS, or on a loopback connection).

use std::net::IpAddr;

use data_encoding::BASE64;

/// The answer to a set of credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Right: the session is now this identity (235).
    Accepted(String),
    /// Wrong (535 5.7.8).
    Rejected,
    /// Too many failures from this client: 421 and the connection is closed.
    LockedOut,
    /// Cannot tell now (454 4.7.0).
    Temporary,
}

/// Checks credentials for a listener.
pub trait Authenticator: Send + Sync + 'static {
    /// Whether `user` with `password`, from `peer`, is a known client.
    fn authenticate(
        &self,
        peer: IpAddr,
        user: &str,
        password: &str,
    ) -> impl std::future::Future<Output = AuthOutcome> + Send;
}

/// A listener without AUTH (the MX): nobody authenticates.
pub struct NoAuth;

impl Authenticator for NoAuth {
    async fn authenticate(&self, _: IpAddr, _: &str, _: &str) -> AuthOutcome {
        AuthOutcome::Rejected
    }
}

/// Base64 text as a client sends it in AUTH (`=` is the empty string); `None` when it is not
/// base64 of UTF-8.
pub(crate) fn decode_text(line: &str) -> Option<String> {
    let line = line.trim();
    if line == "=" {
        return Some(String::new());
    }
    let bytes = BASE64.decode(line.as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

/// PLAIN's `authzid NUL authcid NUL passwd`: user and password. An authorisation identity other
/// than the user (acting for someone else) is not offered.
pub(crate) fn decode_plain(line: &str) -> Option<(String, String)> {
    let text = decode_text(line)?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || !(authzid.is_empty() || authzid == user) {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

/// `334` challenges of LOGIN: "Username:" and "Password:" in base64.
pub(crate) const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
pub(crate) const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_login_credentials_decode() {
        let plain = BASE64.encode(b"\0news\0s3cr\xc3\xa9t");
        assert_eq!(
            decode_plain(&plain),
            Some(("news".to_string(), "s3crét".to_string()))
        );
        let same = BASE64.encode(b"news\0news\0pw");
        assert_eq!(decode_plain(&same), Some(("news".into(), "pw".into())));
        for bad in [
            BASE64.encode(b"other\0news\0pw"),
            BASE64.encode(b"\0\0pw"),
            BASE64.encode(b"news-pw"),
            "not base64!".to_string(),
        ] {
            assert_eq!(decode_plain(&bad), None, "{bad}");
        }
        assert_eq!(decode_text("=").as_deref(), Some(""));
        assert_eq!(decode_text(LOGIN_USERNAME).as_deref(), Some("Username:"));
        assert_eq!(decode_text(LOGIN_PASSWORD).as_deref(), Some("Password:"));
    }
}
