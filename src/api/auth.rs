//! Bearer tokens from `[[http.tokens]]`: the presented token's SHA-256 is compared with every
//! configured one in constant time, so neither a match's position nor a prefix leaks by timing.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::ApiError;
use crate::config::{ApiRole, ApiToken};

/// The configured tokens, as SHA-256 digests.
#[derive(Clone)]
pub struct Tokens(Vec<([u8; 32], ApiRole, String)>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self(
            tokens
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let digest: [u8; 32] = match (&t.token, &t.token_hash) {
                        (Some(token), _) => Sha256::digest(token.as_bytes()).into(),
                        (None, Some(hash)) => hex::decode(hash.trim()).ok()?.try_into().ok()?,
                        (None, None) => return None,
                    };
                    let name = t.name.clone().unwrap_or_else(|| format!("token{i}"));
                    Some((digest, t.role, name))
                })
                .collect(),
        )
    }

    /// The role and name of the token, if it is one of ours.
    fn find(&self, presented: &str) -> Option<(ApiRole, &str)> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (known, role, name) in &self.0 {
            if bool::from(known.ct_eq(&digest)) {
                found = Some((*role, name.as_str()));
            }
        }
        found
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: ApiRole,
    /// The token's name, for the record (`api:<name>`).
    pub name: String,
}

impl Caller {
    /// Refuses (403) a caller whose role is below `needed`.
    pub fn require(&self, needed: ApiRole) -> Result<(), ApiError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this token's role ({:?}) may not do this; it needs {:?}",
                    self.role, needed
                )
                .to_lowercase(),
            ))
        }
    }

    /// Who did it, for events and lifts.
    pub fn actor(&self) -> String {
        format!("api:{}", self.name)
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let unauthorized = |message: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message.to_string(),
            )
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthorized("send Authorization: Bearer <token>"))?;
        let (role, name) = state
            .tokens
            .find(token)
            .ok_or_else(|| unauthorized("the token is not valid"))?;
        Ok(Caller {
            role,
            name: name.to_string(),
        })
    }
}
