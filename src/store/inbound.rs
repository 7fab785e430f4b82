//! What a received mail changes, written in one transaction: its evidence, one event per reported
//! recipient, and the suppressions they cause. Nothing is half-written: the SMTP 250 follows the
//! commit, a failure becomes a 451 and the sender retries.

use sqlx::{Any, Transaction};

use super::events::{NewEvent, insert_event};
use super::evidence::{NewEvidence, insert_evidence};
use super::suppressions::{AddOutcome, NewSuppression};
use super::{Store, StoreError, rows};
use crate::model::{Timestamp, format_time};
use crate::secret::{AddressHash, AddressHasher};

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

    /// Whether [`Store::record_inbound_many_blocking`] is available (a SQLite file).
    pub fn writes_inbound_in_place(&self) -> bool {
        self.sqlite_writer.is_some()
    }

    /// [`Store::record_inbound_many`] on the calling thread, for a writer thread of its own: the
    /// whole batch without a thread hop per statement. Only on a SQLite file; elsewhere it
    /// answers [`StoreError::Closed`] (ask [`Store::writes_inbound_in_place`] first).
    ///
    /// # Errors
    /// The database failed or the store is closed; none of them was written.
    pub fn record_inbound_many_blocking(
        &self,
        records: &[InboundRecord<'_>],
        now: Timestamp,
    ) -> Result<Vec<InboundOutcome>, StoreError> {
        match &self.sqlite_writer {
            Some(writer) => writer.record_inbound_many(&self.hasher, records, now),
            None => Err(StoreError::Closed),
        }
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
            let mut writes = SqlxWrites {
                store: self,
                tx: &mut tx,
            };
            outcomes.push(write_inbound(&mut writes, &self.hasher, record, now).await?);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// The statements a received mail needs, on either driver: sqlx inside a transaction (both
/// backends), or rusqlite on the SQLite writer thread (`sqlite_writer`).
pub(super) trait InboundWrites {
    async fn insert_evidence(
        &mut self,
        evidence: &NewEvidence<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError>;
    async fn insert_event(&mut self, event: &NewEvent, now: Timestamp) -> Result<i64, StoreError>;
    async fn in_force(
        &mut self,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<Option<i64>, StoreError>;
    async fn count_bounces(
        &mut self,
        hash: &AddressHash,
        class: &str,
        since: Timestamp,
        include_unverified: bool,
    ) -> Result<i64, StoreError>;
    async fn add(&mut self, new: &NewSuppression, now: Timestamp)
    -> Result<AddOutcome, StoreError>;
}

/// One received mail: its evidence, its events, and the suppressions they cause.
pub(super) async fn write_inbound<W: InboundWrites>(
    writes: &mut W,
    hasher: &AddressHasher,
    record: &InboundRecord<'_>,
    now: Timestamp,
) -> Result<InboundOutcome, StoreError> {
    let evidence_id = writes.insert_evidence(&record.evidence, now).await?;
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
        let event_id = writes.insert_event(&event, now).await?;
        outcome.event_ids.push(event_id);
        let mut added = None;
        if let Some((suppression, escalation)) = &item.suppression {
            // Repeated bounces of a dead address: already suppressed, nothing to count.
            if let Some(id) = writes.in_force(suppression, now).await? {
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
                    let hash = hasher.hash(&suppression.address);
                    writes
                        .count_bounces(&hash, class, since, include_unverified)
                        .await?
                        >= i64::from(threshold)
                }
            };
            if due {
                let suppression = NewSuppression {
                    evidence_id: Some(evidence_id),
                    event_id: Some(event_id),
                    ..suppression.clone()
                };
                added = Some(writes.add(&suppression, now).await?);
            }
        }
        outcome.suppressions.push(added);
    }
    Ok(outcome)
}

/// The sqlx side: statements inside one of the store's transactions.
struct SqlxWrites<'t> {
    store: &'t Store,
    tx: &'t mut Transaction<'static, Any>,
}

impl InboundWrites for SqlxWrites<'_> {
    async fn insert_evidence(
        &mut self,
        evidence: &NewEvidence<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        insert_evidence(self.tx, evidence, now).await
    }

    async fn insert_event(&mut self, event: &NewEvent, now: Timestamp) -> Result<i64, StoreError> {
        insert_event(self.tx, event, now).await
    }

    async fn in_force(
        &mut self,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        self.store.in_force_in(self.tx, new, now).await
    }

    async fn count_bounces(
        &mut self,
        hash: &AddressHash,
        class: &str,
        since: Timestamp,
        include_unverified: bool,
    ) -> Result<i64, StoreError> {
        count_bounces(self.tx, hash, class, since, include_unverified).await
    }

    async fn add(
        &mut self,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<AddOutcome, StoreError> {
        self.store.add_in(self.tx, new, now).await
    }
}

/// Bounces of one class since `since` and since the last delivery report, one per original
/// message (events without a message id count one each): `$1` hash, `$2` class, `$3` since,
/// `$4` whether unverified ones count.
pub(super) const COUNT_BOUNCES: &str = "SELECT COUNT(DISTINCT CASE WHEN message_id IS NULL OR message_id = '' \
         THEN 'event:' || CAST(id AS TEXT) ELSE message_id END) AS n \
     FROM events \
     WHERE address_hash = $1 AND kind = 'bounce' AND class = $2 AND (verified = 1 OR $4 = 1) \
       AND occurred_at >= $3 \
       AND occurred_at > COALESCE((SELECT MAX(occurred_at) FROM events \
             WHERE address_hash = $1 AND kind = 'delivered' AND (verified = 1 OR $4 = 1)), '')";

/// See [`COUNT_BOUNCES`].
async fn count_bounces(
    tx: &mut Transaction<'static, Any>,
    hash: &AddressHash,
    class: &str,
    since: Timestamp,
    include_unverified: bool,
) -> Result<i64, StoreError> {
    let row = sqlx::query(COUNT_BOUNCES)
        .bind(hash.as_str())
        .bind(class)
        .bind(format_time(&since))
        .bind(i64::from(include_unverified))
        .fetch_one(&mut **tx)
        .await?;
    rows::int(&row, "n")
}
