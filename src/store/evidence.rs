//! Evidence: raw mails exactly as received, with their envelope. Append-only: written once, read
//! back byte for byte; the database refuses updates, and deletes that the purge did not record.
//!
//! Tamper-evident: every row is sealed by a link of a hash chain (`evidence_chain`), written in
//! the same transaction: SHA-256 over the previous link, the row's id, receipt time, the SHA-256 of
//! its bytes and of its envelope. [`Store::verify_evidence`] walks the chain and names the first
//! link that does not hold; a purged row leaves a tombstone and its link, so the chain still
//! verifies.

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
    /// The SHA-256 its chain link sealed (`None`: the row is not in the chain).
    pub sealed_sha256: Option<String>,
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
            "SELECT e.id, e.received_at, e.sha256, c.sha256 AS sealed_sha256, e.raw, e.mail_from, \
             e.rcpt_to, e.helo, e.peer_ip FROM evidence e \
             LEFT JOIN evidence_chain c ON c.evidence_id = e.id WHERE e.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(EvidenceRecord {
            id: rows::int(&row, "id")?,
            received_at: rows::time(&row, "received_at")?,
            sha256: rows::text(&row, "sha256")?,
            sealed_sha256: rows::opt_text(&row, "sealed_sha256")?,
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
    /// What the chain seals of the envelope.
    pub(super) fn envelope_sha256(&self) -> String {
        envelope_sha256([self.mail_from, self.rcpt_to, self.helo, self.peer_ip])
    }

    /// The stored receipt time, SHA-256 (hex) and size.
    pub(super) fn computed(&self, now: Timestamp) -> (String, String, i64) {
        (
            format_time(&self.received_at.unwrap_or(now)),
            hex::encode(Sha256::digest(self.raw)),
            i64::try_from(self.raw.len()).unwrap_or(i64::MAX),
        )
    }
}

/// Stores evidence inside a transaction, sealed by the next link of the chain.
pub(crate) async fn insert_evidence(
    tx: &mut Transaction<'static, Any>,
    evidence: &NewEvidence<'_>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    if tx.backend_name() == "PostgreSQL" {
        // Instances sharing one database take turns: the chain has one order, the ids' order.
        sqlx::query(CHAIN_LOCK).execute(&mut **tx).await?;
    }
    let (received_at, sha256, size) = evidence.computed(now);
    let row = sqlx::query(INSERT_EVIDENCE)
        .bind(&received_at)
        .bind(&sha256)
        .bind(size)
        .bind(evidence.raw.to_vec())
        .bind(evidence.mail_from)
        .bind(evidence.rcpt_to)
        .bind(evidence.helo)
        .bind(evidence.peer_ip)
        .fetch_one(&mut **tx)
        .await?;
    let id = rows::int(&row, "id")?;
    let previous = last_link(tx).await?;
    Seal::new(id, received_at, sha256, evidence.envelope_sha256())
        .append(tx, previous.as_deref())
        .await?;
    Ok(id)
}

/// The newest link of the chain, if any.
pub(super) async fn last_link(
    tx: &mut Transaction<'static, Any>,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(LAST_LINK).fetch_optional(&mut **tx).await?;
    row.map(|row| rows::text(&row, "link")).transpose()
}

/// Held by a PostgreSQL transaction that adds to the chain, until it ends.
const CHAIN_LOCK: &str = "SELECT pg_advisory_xact_lock(7248137265511)";
/// The newest link.
pub(super) const LAST_LINK: &str =
    "SELECT link FROM evidence_chain ORDER BY evidence_id DESC LIMIT 1";
/// Seals a row: `$1`…`$5` as bound by both write paths.
pub(super) const INSERT_LINK: &str = "INSERT INTO evidence_chain (evidence_id, received_at, sha256, envelope_sha256, link) \
     VALUES ($1, $2, $3, $4, $5)";

/// What a chain link seals of one evidence row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seal {
    pub id: i64,
    pub received_at: String,
    pub sha256: String,
    pub envelope_sha256: String,
}

impl Seal {
    pub(super) fn new(
        id: i64,
        received_at: String,
        sha256: String,
        envelope_sha256: String,
    ) -> Self {
        Self {
            id,
            received_at,
            sha256,
            envelope_sha256,
        }
    }

    /// Writes this seal's link after `previous` (sqlx path); returns the link.
    pub(super) async fn append(
        &self,
        tx: &mut Transaction<'static, Any>,
        previous: Option<&str>,
    ) -> Result<String, StoreError> {
        let link = self.link(previous);
        sqlx::query(INSERT_LINK)
            .bind(self.id)
            .bind(&self.received_at)
            .bind(&self.sha256)
            .bind(&self.envelope_sha256)
            .bind(&link)
            .execute(&mut **tx)
            .await?;
        Ok(link)
    }

    /// The link after `previous` (none for the first row): hex SHA-256 over the previous link
    /// and this row's sealed fields, each on a line of its own.
    pub(super) fn link(&self, previous: Option<&str>) -> String {
        let mut hasher = Sha256::new();
        for part in [
            previous.unwrap_or(""),
            &self.id.to_string(),
            &self.received_at,
            &self.sha256,
            &self.envelope_sha256,
        ] {
            hasher.update(part.as_bytes());
            hasher.update(b"\n");
        }
        hex::encode(hasher.finalize())
    }
}

/// Hex SHA-256 over an envelope's fields, one per line (an absent field is an empty line).
pub(super) fn envelope_sha256(fields: [Option<&str>; 4]) -> String {
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update(field.unwrap_or("").as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}
