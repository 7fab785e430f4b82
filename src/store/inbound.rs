//! What a received mail changes, written in one transaction: its evidence, one event per reported
//! recipient, and the suppressions they cause. Nothing is half-written: the SMTP 250 follows the
//! commit, a failure becomes a 451 and the sender retries.

use sqlx::{Any, Transaction};

use super::events::{NewEvent, insert_event};
use super::evidence::{NewEvidence, insert_evidence};
use super::suppressions::{AddOutcome, NewSuppression};
use super::{Store, StoreError, rows};
use crate::model::{Timestamp, format_time};
use crate::secret::AddressHash;

/// When a suppression follows from an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// At once (complaints, unsubscribes).
    Immediate,
    /// When at least `threshold` bounces of this class (`"hard"` or `"soft"`), counting one per
    /// original message, arrived since `since` and since the last delivery report; only verified
    /// ones unless the operator trusts unsigned bounces.
    Count {
        class: &'static str,
        threshold: u32,
        since: Timestamp,
        include_unverified: bool,
    },
}

/// One event of the mail, and the suppression it may cause.
#[derive(Debug, Clone)]
pub struct InboundEvent {
    pub event: NewEvent,
    pub suppression: Option<(NewSuppression, Escalation)>,
}

/// Everything a received mail writes.
#[derive(Debug, Clone)]
pub struct InboundRecord<'a> {
    pub evidence: NewEvidence<'a>,
    pub events: Vec<InboundEvent>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundOutcome {
    pub evidence_id: i64,
    pub event_ids: Vec<i64>,
    /// Per event: the suppression added or found in force, `None` when none followed.
    pub suppressions: Vec<Option<AddOutcome>>,
}

impl Store {
    /// Writes a received mail's evidence, events and suppressions in one transaction.
    ///
    /// # Errors
    /// The database failed; nothing was written.
    pub async fn record_inbound(
        &self,
        record: &InboundRecord<'_>,
        now: Timestamp,
    ) -> Result<InboundOutcome, StoreError> {
        let mut outcomes = self
            .record_inbound_many(std::slice::from_ref(record), now)
            .await?;
        Ok(outcomes.remove(0))
    }

    /// Writes several received mails in one transaction (group commit: one sync for all).
    ///
    /// # Errors
    /// The database failed; none of them was written.
    pub async fn record_inbound_many(
        &self,
        records: &[InboundRecord<'_>],
        now: Timestamp,
    ) -> Result<Vec<InboundOutcome>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            outcomes.push(self.write_inbound(&mut tx, record, now).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn write_inbound(
        &self,
        tx: &mut Transaction<'static, Any>,
        record: &InboundRecord<'_>,
        now: Timestamp,
    ) -> Result<InboundOutcome, StoreError> {
        let evidence_id = insert_evidence(tx, &record.evidence, now).await?;
        let mut outcome = InboundOutcome {
            evidence_id,
            event_ids: Vec::new(),
            suppressions: Vec::new(),
        };
        for item in &record.events {
            let event = NewEvent {
                evidence_id: Some(evidence_id),
                ..item.event.clone()
            };
            let event_id = insert_event(tx, &event, now).await?;
            outcome.event_ids.push(event_id);
            let mut added = None;
            if let Some((suppression, escalation)) = &item.suppression {
                // Repeated bounces of a dead address: already suppressed, nothing to count.
                if let Some(id) = self.in_force_in(tx, suppression, now).await? {
                    outcome
                        .suppressions
                        .push(Some(AddOutcome::AlreadyActive(id)));
                    continue;
                }
                let due = match *escalation {
                    Escalation::Immediate => true,
                    Escalation::Count {
                        class,
                        threshold,
                        since,
                        include_unverified,
                    } => {
                        let hash = self.hash(&suppression.address);
                        count_bounces(tx, &hash, class, since, include_unverified).await?
                            >= i64::from(threshold)
                    }
                };
                if due {
                    let suppression = NewSuppression {
                        evidence_id: Some(evidence_id),
                        event_id: Some(event_id),
                        ..suppression.clone()
                    };
                    added = Some(self.add_in(tx, &suppression, now).await?);
                }
            }
            outcome.suppressions.push(added);
        }
        Ok(outcome)
    }
}

/// Bounces of one class since `since` and since the last delivery report, one per original
/// message (events without a message id count one each).
async fn count_bounces(
    tx: &mut Transaction<'static, Any>,
    hash: &AddressHash,
    class: &str,
    since: Timestamp,
    include_unverified: bool,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(DISTINCT CASE WHEN message_id IS NULL OR message_id = '' \
                 THEN 'event:' || CAST(id AS TEXT) ELSE message_id END) AS n \
         FROM events \
         WHERE address_hash = $1 AND kind = 'bounce' AND class = $2 AND (verified = 1 OR $4 = 1) \
           AND occurred_at >= $3 \
           AND occurred_at > COALESCE((SELECT MAX(occurred_at) FROM events \
                 WHERE address_hash = $1 AND kind = 'delivered' AND (verified = 1 OR $4 = 1)), '')",
    )
    .bind(hash.as_str())
    .bind(class)
    .bind(format_time(&since))
    .bind(i64::from(include_unverified))
    .fetch_one(&mut **tx)
    .await?;
    rows::int(&row, "n")
}
