//! Plain unsubscribe mails held for staff review, and staff's decisions on them.

use super::events::{EVENT_COLUMNS, EventRecord, event_record};
use super::suppressions::{AddOutcome, NewSuppression};
use super::{Store, StoreError};
use crate::model::{Timestamp, format_time};

/// The event kind of a held unsubscribe mail.
pub const HELD_UNSUBSCRIBE: &str = "unsubscribe_held";

/// What staff decided on a held unsubscribe mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    /// Honour it (as an unverified unsubscribe).
    Accepted,
    /// Do not honour it.
    Dismissed,
}

impl ReviewDecision {
    fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Accepted => "accepted",
            ReviewDecision::Dismissed => "dismissed",
        }
    }
}

/// Why a decision was not recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum ReviewOutcome {
    /// Recorded; with the suppression it made, if accepted.
    Decided(Option<AddOutcome>),
    /// Already decided before.
    AlreadyDecided,
}

impl Store {
    /// Held unsubscribe mails no one has decided on yet, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn held_unsubscribes(&self) -> Result<Vec<EventRecord>, StoreError> {
        let columns = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM events e LEFT JOIN reviews r ON r.event_id = e.id \
             WHERE e.kind = $1 AND r.event_id IS NULL ORDER BY e.id"
        ))
        .bind(HELD_UNSUBSCRIBE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_record).collect()
    }

    /// One event by id.
    ///
    /// # Errors
    /// The database failed.
    pub async fn event(&self, id: i64) -> Result<Option<EventRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_record).transpose()
    }

    /// Records staff's decision on a held event, and the suppression an acceptance makes, in one
    /// transaction.
    ///
    /// # Errors
    /// The database failed; nothing was written.
    pub async fn decide_held(
        &self,
        event_id: i64,
        decision: ReviewDecision,
        suppression: Option<&NewSuppression>,
        decided_by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<ReviewOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let decided = sqlx::query("SELECT event_id FROM reviews WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?;
        if decided.is_some() {
            return Ok(ReviewOutcome::AlreadyDecided);
        }
        let added = match suppression {
            Some(new) => Some(self.add_in(&mut tx, new, now).await?),
            None => None,
        };
        let suppression_id = added.as_ref().map(|outcome| match outcome {
            AddOutcome::Added(id) | AddOutcome::AlreadyActive(id) => *id,
        });
        sqlx::query(
            "INSERT INTO reviews (event_id, decided_at, decided_by, decision, note, suppression_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(event_id)
        .bind(format_time(&now))
        .bind(decided_by)
        .bind(decision.as_str())
        .bind(note)
        .bind(suppression_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReviewOutcome::Decided(added))
    }
}
