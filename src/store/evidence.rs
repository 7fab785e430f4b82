//! Evidence: raw mails exactly as received, with their envelope. Append-only: written once, read
//! back byte for byte; the database refuses updates.

use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError, rows};
use crate::model::{Timestamp, format_time};

/// A received mail to keep as evidence.
#[derive(Debug, Clone, Default)]
pub struct NewEvidence<'a> {
    pub raw: &'a [u8],
    pub mail_from: Option<&'a str>,
    pub rcpt_to: Option<&'a str>,
    pub helo: Option<&'a str>,
    pub peer_ip: Option<&'a str>,
    pub received_at: Option<Timestamp>,
}

/// Stored evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRecord {
    pub id: i64,
    pub received_at: Timestamp,
    /// Hex SHA-256 of `raw`, computed when it was stored.
    pub sha256: String,
    pub raw: Vec<u8>,
    pub mail_from: Option<String>,
    pub rcpt_to: Option<String>,
    pub helo: Option<String>,
    pub peer_ip: Option<String>,
}

impl Store {
    /// Stores evidence on its own and returns its id.
    ///
    /// # Errors
    /// The database failed; nothing was stored.
    pub async fn store_evidence(
        &self,
        evidence: &NewEvidence<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = insert_evidence(&mut tx, evidence, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The evidence with this id.
    ///
    /// # Errors
    /// The database failed.
    pub async fn evidence(&self, id: i64) -> Result<Option<EvidenceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, received_at, sha256, raw, mail_from, rcpt_to, helo, peer_ip FROM evidence WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(EvidenceRecord {
            id: rows::int(&row, "id")?,
            received_at: rows::time(&row, "received_at")?,
            sha256: rows::text(&row, "sha256")?,
            raw: row.try_get::<Vec<u8>, _>("raw")?,
            mail_from: rows::opt_text(&row, "mail_from")?,
            rcpt_to: rows::opt_text(&row, "rcpt_to")?,
            helo: rows::opt_text(&row, "helo")?,
            peer_ip: rows::opt_text(&row, "peer_ip")?,
        }))
    }
}

/// Stores the raw bytes with their envelope; `$1`…`$8` as bound by both write paths.
pub(super) const INSERT_EVIDENCE: &str = "INSERT INTO evidence (received_at, sha256, size, raw, mail_from, rcpt_to, helo, peer_ip) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";

impl NewEvidence<'_> {
    /// The stored receipt time, SHA-256 (hex) and size.
    pub(super) fn computed(&self, now: Timestamp) -> (String, String, i64) {
        (
            format_time(&self.received_at.unwrap_or(now)),
            hex::encode(Sha256::digest(self.raw)),
            i64::try_from(self.raw.len()).unwrap_or(i64::MAX),
        )
    }
}

/// Stores evidence inside a transaction.
pub(crate) async fn insert_evidence(
    tx: &mut Transaction<'static, Any>,
    evidence: &NewEvidence<'_>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let (received_at, sha256, size) = evidence.computed(now);
    let row = sqlx::query(INSERT_EVIDENCE)
        .bind(received_at)
        .bind(sha256)
        .bind(size)
        .bind(evidence.raw.to_vec())
        .bind(evidence.mail_from)
        .bind(evidence.rcpt_to)
        .bind(evidence.helo)
        .bind(evidence.peer_ip)
        .fetch_one(&mut **tx)
        .await?;
    rows::int(&row, "id")
}
