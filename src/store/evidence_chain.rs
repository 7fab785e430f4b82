//! The evidence chain beyond writing it: sealing rows stored before the chain existed (once),
//! verifying the whole log, and the purge, the only way a row leaves (it records a tombstone, so
//! the chain still verifies).

use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::evidence::{Seal, envelope_sha256, last_link};
use super::{Store, StoreError, rows};
use crate::model::{Timestamp, format_time};

/// Set once the rows that predate the chain are sealed; later unsealed rows are findings.
const CHAIN_STARTED: &str = "evidence_chain_started";
/// Findings listed one by one; the rest are counted.
const MAX_LISTED: usize = 100;

/// What is wrong with one evidence row or its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainFault {
    /// The link does not follow from the one before: a link was changed, removed or inserted.
    LinkBroken,
    /// The stored bytes are not the ones sealed.
    BytesChanged,
    /// Receipt time, envelope or recorded hash differ from what was sealed.
    RecordChanged,
    /// The row is gone, and no purge recorded it.
    DeletedWithoutTombstone,
    /// The row was never sealed: written past the gateway.
    NotSealed,
}

impl ChainFault {
    /// What it means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            ChainFault::LinkBroken => {
                "its chain link does not follow from the one before (a link was changed, removed or inserted)"
            }
            ChainFault::BytesChanged => "its stored bytes are not the ones sealed when it arrived",
            ChainFault::RecordChanged => {
                "its receipt time, envelope or recorded SHA-256 differ from what was sealed"
            }
            ChainFault::DeletedWithoutTombstone => {
                "it was deleted, and no purge recorded it (no tombstone)"
            }
            ChainFault::NotSealed => "it is not in the chain: it was written past the gateway",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainFinding {
    pub evidence_id: i64,
    pub fault: ChainFault,
    pub message: &'static str,
}

/// The chain's newest link: write it down somewhere else, and a later verify can tell whether
/// the log was cut back past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub evidence_id: i64,
    pub link: String,
}

/// What `evidence verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainReport {
    /// Links walked.
    pub checked: u64,
    /// Rows removed by the purge (tombstones), which verify.
    pub purged: u64,
    /// Findings, first broken link first (at most 100 listed).
    pub findings: Vec<ChainFinding>,
    /// How many findings in all.
    pub finding_count: u64,
    pub head: Option<ChainHead>,
}

impl ChainReport {
    /// Whether every link holds.
    pub fn is_intact(&self) -> bool {
        self.finding_count == 0
    }

    fn find(&mut self, evidence_id: i64, fault: ChainFault) {
        self.finding_count += 1;
        if self.findings.len() < MAX_LISTED {
            self.findings.push(ChainFinding {
                evidence_id,
                fault,
                message: fault.describe(),
            });
        }
    }
}

/// What a purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeOutcome {
    pub purged: u64,
    /// Rows kept because they prove a standing suppression.
    pub kept_as_proof: u64,
}

impl Store {
    /// Seals, in id order, the rows stored before the chain existed; runs once per database.
    ///
    /// # Errors
    /// The database failed; nothing was sealed.
    pub(super) async fn seal_rows_before_the_chain(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let started = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(CHAIN_STARTED)
            .fetch_optional(&mut *tx)
            .await?;
        if started.is_some() {
            return Ok(());
        }
        let unsealed = sqlx::query(
            "SELECT e.id, e.received_at, e.sha256, e.mail_from, e.rcpt_to, e.helo, e.peer_ip \
             FROM evidence e LEFT JOIN evidence_chain c ON c.evidence_id = e.id \
             WHERE c.evidence_id IS NULL ORDER BY e.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut previous = last_link(&mut tx).await?;
        for row in &unsealed {
            let seal = Seal::new(
                rows::int(row, "id")?,
                rows::text(row, "received_at")?,
                rows::text(row, "sha256")?,
                envelope_of(row)?,
            );
            previous = Some(seal.append(&mut tx, previous.as_deref()).await?);
        }
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
            .bind(CHAIN_STARTED)
            .bind(format_time(&chrono::Utc::now()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if !unsealed.is_empty() {
            tracing::info!(
                rows = unsealed.len(),
                "evidence stored before the chain existed is now sealed"
            );
        }
        Ok(())
    }

    /// Walks the whole chain: every link against the one before, every row against its seal
    /// (its bytes hashed again), every gap against a tombstone, and every row against the chain.
    ///
    /// # Errors
    /// The database failed.
    pub async fn verify_evidence(&self) -> Result<ChainReport, StoreError> {
        let mut report = ChainReport::default();
        let mut links = sqlx::query(
            "SELECT c.evidence_id, c.received_at, c.sha256, c.envelope_sha256, c.link, \
             e.id AS row_id, e.received_at AS row_received_at, e.sha256 AS row_sha256, e.raw, \
             e.mail_from, e.rcpt_to, e.helo, e.peer_ip, t.evidence_id AS tombstone \
             FROM evidence_chain c LEFT JOIN evidence e ON e.id = c.evidence_id \
             LEFT JOIN evidence_tombstones t ON t.evidence_id = c.evidence_id \
             ORDER BY c.evidence_id",
        )
        .fetch(&self.pool);
        let mut previous: Option<String> = None;
        while let Some(row) = links.try_next().await? {
            report.checked += 1;
            let seal = Seal::new(
                rows::int(&row, "evidence_id")?,
                rows::text(&row, "received_at")?,
                rows::text(&row, "sha256")?,
                rows::text(&row, "envelope_sha256")?,
            );
            let link = rows::text(&row, "link")?;
            if seal.link(previous.as_deref()) != link {
                report.find(seal.id, ChainFault::LinkBroken);
            }
            if rows::opt_int(&row, "row_id")?.is_some() {
                let raw: Vec<u8> = row.try_get("raw")?;
                if hex::encode(Sha256::digest(&raw)) != seal.sha256 {
                    report.find(seal.id, ChainFault::BytesChanged);
                } else if rows::text(&row, "row_received_at")? != seal.received_at
                    || rows::text(&row, "row_sha256")? != seal.sha256
                    || envelope_of(&row)? != seal.envelope_sha256
                {
                    report.find(seal.id, ChainFault::RecordChanged);
                }
            } else if rows::opt_int(&row, "tombstone")?.is_some() {
                report.purged += 1;
            } else {
                report.find(seal.id, ChainFault::DeletedWithoutTombstone);
            }
            report.head = Some(ChainHead {
                evidence_id: seal.id,
                link: link.clone(),
            });
            previous = Some(link);
        }
        drop(links);
        let unsealed = sqlx::query(
            "SELECT e.id FROM evidence e LEFT JOIN evidence_chain c ON c.evidence_id = e.id \
             WHERE c.evidence_id IS NULL ORDER BY e.id",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in &unsealed {
            report.find(rows::int(row, "id")?, ChainFault::NotSealed);
        }
        report.findings.sort_by_key(|f| f.evidence_id);
        Ok(report)
    }

    /// Removes evidence rows the way the chain allows: a tombstone first (the link stays), then
    /// the row, with the events and lifted suppressions that named it pointing nowhere. Rows that
    /// prove a standing suppression are kept.
    ///
    /// # Errors
    /// The database failed; nothing was removed.
    pub async fn purge_evidence(
        &self,
        ids: &[i64],
        reason: &str,
        now: Timestamp,
    ) -> Result<PurgeOutcome, StoreError> {
        let mut outcome = PurgeOutcome::default();
        let mut tx = self.begin_write().await?;
        for &id in ids {
            let proof = sqlx::query(
                "SELECT id FROM suppressions WHERE evidence_id = $1 AND lifted_at IS NULL LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if proof.is_some() {
                outcome.kept_as_proof += 1;
                continue;
            }
            if purge_one(&mut tx, id, reason, now).await? {
                outcome.purged += 1;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Removes one evidence row the way the chain allows, inside a caller's transaction: a tombstone
/// first (the link stays), then the row, with the events and suppressions that named it
/// pointing nowhere. `false` when there is no sealed row with that id.
pub(super) async fn purge_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: i64,
    reason: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let tombstoned = sqlx::query(
        "INSERT INTO evidence_tombstones (evidence_id, purged_at, reason) \
         SELECT c.evidence_id, $2, $3 FROM evidence_chain c JOIN evidence e ON e.id = c.evidence_id \
         WHERE c.evidence_id = $1",
    )
    .bind(id)
    .bind(format_time(&now))
    .bind(reason)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if tombstoned == 0 {
        return Ok(false);
    }
    for unlink in [
        "UPDATE events SET evidence_id = NULL WHERE evidence_id = $1",
        "UPDATE suppressions SET evidence_id = NULL WHERE evidence_id = $1",
    ] {
        sqlx::query(unlink).bind(id).execute(&mut **tx).await?;
    }
    sqlx::query("DELETE FROM evidence WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

fn envelope_of(row: &sqlx::any::AnyRow) -> Result<String, StoreError> {
    Ok(envelope_sha256([
        rows::opt_text(row, "mail_from")?.as_deref(),
        rows::opt_text(row, "rcpt_to")?.as_deref(),
        rows::opt_text(row, "helo")?.as_deref(),
        rows::opt_text(row, "peer_ip")?.as_deref(),
    ]))
}
