//! DKIM signing of relayed mail (Stalwart's `mail-auth`): one key per sender domain, RSA-SHA256
//! or Ed25519-SHA256, loaded from PEM files at start. Each recipient's copy is signed after the
//! rewrite, covering the headers RFC 8058 asks for, List-Unsubscribe and List-Unsubscribe-Post
//! oversigned (listed once more than they occur, so none can be added later).

use std::collections::HashMap;
use std::path::Path;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::config::Config;

/// The headers a signature covers; the last two twice (oversigned).
const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("DKIM key {path} for {domain}: {message}")]
pub struct DkimError {
    pub path: String,
    pub domain: String,
    pub message: String,
}

enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// The signers of every configured sender domain.
#[derive(Default)]
pub struct DkimSigners {
    by_domain: HashMap<String, Signer>,
}

impl DkimSigners {
    /// Loads every `[[companies]] dkim` key.
    ///
    /// # Errors
    /// A key file cannot be read, is not a PEM private key, or not an RSA or Ed25519 key.
    pub fn load(config: &Config) -> Result<Self, DkimError> {
        let mut by_domain = HashMap::new();
        for key in config.companies.iter().flat_map(|c| &c.dkim) {
            let domain = key.domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let signer = load_signer(&key.key_file, &domain, &key.selector).map_err(|message| {
                DkimError {
                    path: key.key_file.display().to_string(),
                    domain: domain.clone(),
                    message,
                }
            })?;
            by_domain.insert(domain, signer);
        }
        Ok(Self { by_domain })
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// A `DKIM-Signature` header for `message` when its From domain has a key.
    pub fn sign(&self, from_domain: &str, message: &[u8]) -> Option<String> {
        let signer = self.by_domain.get(&from_domain.to_ascii_lowercase())?;
        let signature = match signer {
            Signer::Rsa(signer) => signer.sign(message),
            Signer::Ed25519(signer) => signer.sign(message),
        };
        match signature {
            Ok(signature) => Some(signature.to_header()),
            Err(error) => {
                tracing::warn!(%error, domain = from_domain, "DKIM signing failed; sent unsigned");
                None
            }
        }
    }
}

fn load_signer(path: &Path, domain: &str, selector: &str) -> Result<Signer, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let der =
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("not a PEM private key: {e}"))?;
    if let PrivateKeyDer::Pkcs8(pkcs8) = &der
        && let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
    {
        return Ok(Signer::Ed25519(
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(selector)
                .headers(SIGNED_HEADERS),
        ));
    }
    let key = RsaKey::<Sha256>::from_key_der(der)
        .map_err(|e| format!("neither an Ed25519 nor an RSA key: {e}"))?;
    Ok(Signer::Rsa(
        DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS),
    ))
}
