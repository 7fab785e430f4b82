//! The webhook outbox: filled from the event log, the suppressions and the blocked sends after
//! each webhook's cursors; items are leased to a sender like the relay's queue, and settled.

use serde_json::{Value, json};

use super::queue::blocked_record;
use super::{Store, StoreError, rows};
use crate::model::{Timestamp, format_time};

/// Rows read from one source per fill.
const FILL_BATCH: i64 = 1_000;

/// Where an outbox item's payload comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookSource {
    Events,
    Suppressions,
    Blocked,
}

impl WebhookSource {
    const ALL: [WebhookSource; 3] = [
        WebhookSource::Events,
        WebhookSource::Suppressions,
        WebhookSource::Blocked,
    ];

    fn table(self) -> &'static str {
        match self {
            WebhookSource::Events => "events",
            WebhookSource::Suppressions => "suppressions",
            WebhookSource::Blocked => "blocked",
        }
    }

    fn from_table(table: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.table() == table)
    }
}

/// The webhook event an event log row is, if any.
fn event_type_of_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "bounce" => Some("bounce.received"),
        "complaint" => Some("complaint.received"),
        "unsubscribe" => Some("unsubscribe.received"),
        "lift" => Some("suppression.lifted"),
        "consent" => Some("consent.recorded"),
        "erase" => Some("erasure.done"),
        _ => None,
    }
}

/// An outbox item leased for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub webhook: String,
    pub event_type: String,
    pub source: WebhookSource,
    pub source_id: i64,
    pub attempts: i64,
    pub created_at: Timestamp,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    Delivered,
    Retry { at: Timestamp, error: String },
    Failed { error: String },
}

/// Outbox counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxSummary {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

impl Store {
    /// Adds to `webhook`'s outbox what arrived after its cursors and what it `wants`; returns how
    /// many items were added. A webhook seen for the first time starts at the current end (it is
    /// not sent the past). Safe to run on several instances at once (items are unique).
    ///
    /// # Errors
    /// The database failed; nothing was added and the cursors stay.
    pub async fn fill_outbox(
        &self,
        webhook: &str,
        wants: &(dyn Fn(&str) -> bool + Sync),
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut added = 0;
        let at = format_time(&now);
        let mut tx = self.begin_write().await?;
        for source in WebhookSource::ALL {
            let table = source.table();
            let cursor = sqlx::query(
                "SELECT last_id FROM webhook_cursors WHERE webhook = $1 AND source = $2",
            )
            .bind(webhook)
            .bind(table)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(cursor) = cursor else {
                sqlx::query(&format!(
                    "INSERT INTO webhook_cursors (webhook, source, last_id) \
                     SELECT $1, $2, COALESCE(MAX(id), 0) FROM {table} WHERE true \
                     ON CONFLICT (webhook, source) DO NOTHING"
                ))
                .bind(webhook)
                .bind(table)
                .execute(&mut *tx)
                .await?;
                continue;
            };
            let cursor = rows::int(&cursor, "last_id")?;
            let kind = match source {
                WebhookSource::Events => "kind",
                WebhookSource::Suppressions | WebhookSource::Blocked => "''",
            };
            let found = sqlx::query(&format!(
                "SELECT id, {kind} AS kind FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(cursor)
            .bind(FILL_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = found.last() else {
                continue;
            };
            let last = rows::int(last, "id")?;
            for row in &found {
                let event_type = match source {
                    WebhookSource::Events => match event_type_of_kind(&rows::text(row, "kind")?) {
                        Some(event_type) => event_type,
                        None => continue,
                    },
                    WebhookSource::Suppressions => "suppression.created",
                    WebhookSource::Blocked => "send.blocked",
                };
                if !wants(event_type) {
                    continue;
                }
                added += sqlx::query(
                    "INSERT INTO webhook_outbox (webhook, event_type, source, source_id, created_at, \
                       state, next_attempt_at) VALUES ($1, $2, $3, $4, $5, 'pending', $5) \
                     ON CONFLICT (webhook, source, source_id) DO NOTHING",
                )
                .bind(webhook)
                .bind(event_type)
                .bind(table)
                .bind(rows::int(row, "id")?)
                .bind(&at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            sqlx::query(
                "UPDATE webhook_cursors SET last_id = $1 WHERE webhook = $2 AND source = $3 \
                 AND last_id < $1",
            )
            .bind(last)
            .bind(webhook)
            .bind(table)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Leases up to `limit` due items of the given webhooks until `lease_until`.
    ///
    /// # Errors
    /// The database failed; nothing was leased.
    pub async fn claim_webhooks(
        &self,
        webhooks: &[&str],
        limit: i64,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        if webhooks.is_empty() {
            return Ok(Vec::new());
        }
        let names = super::rows::placeholders(3, webhooks.len());
        let due = format!(
            "SELECT id FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) AND webhook IN ({names}) \
             ORDER BY id LIMIT $2"
        );
        let due = super::due_sql(self.backend, &due);
        let mut tx = self.begin_write().await?;
        let mut query = sqlx::query(&due).bind(format_time(&now)).bind(limit);
        for webhook in webhooks {
            query = query.bind(*webhook);
        }
        let Some(list) = super::due_ids(&mut tx, query).await? else {
            return Ok(Vec::new());
        };
        sqlx::query(&format!(
            "UPDATE webhook_outbox SET lease_until = $1 WHERE id IN ({list})"
        ))
        .bind(format_time(&lease_until))
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(&format!(
            "SELECT id, webhook, event_type, source, source_id, attempts, created_at \
             FROM webhook_outbox WHERE id IN ({list}) ORDER BY id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxItem {
                    id: rows::int(row, "id")?,
                    webhook: rows::text(row, "webhook")?,
                    event_type: rows::text(row, "event_type")?,
                    source: WebhookSource::from_table(&rows::text(row, "source")?)
                        .ok_or_else(|| StoreError::Corrupt("unknown webhook source".into()))?,
                    source_id: rows::int(row, "source_id")?,
                    attempts: rows::int(row, "attempts")?,
                    created_at: rows::time(row, "created_at")?,
                })
            })
            .collect()
    }

    /// Records how an attempt ended.
    ///
    /// # Errors
    /// The database failed (the lease runs out and the item is tried again).
    pub async fn settle_webhook(
        &self,
        id: i64,
        outcome: &WebhookOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let at = format_time(&now);
        let (state, next, error, delivered) = match outcome {
            WebhookOutcome::Delivered => ("delivered", at.clone(), None, Some(at.clone())),
            WebhookOutcome::Retry { at: retry, error } => {
                ("pending", format_time(retry), Some(error.as_str()), None)
            }
            WebhookOutcome::Failed { error } => ("failed", at.clone(), Some(error.as_str()), None),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_outbox SET state = $1, next_attempt_at = $2, last_error = $3, \
             delivered_at = $4, attempts = attempts + 1, lease_until = NULL \
             WHERE id = $5 AND state = 'pending'",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(delivered)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The outbox's items by state.
    ///
    /// # Errors
    /// The database failed.
    pub async fn outbox_summary(&self) -> Result<OutboxSummary, StoreError> {
        let mut summary = OutboxSummary::default();
        for row in sqlx::query("SELECT state, COUNT(*) AS n FROM webhook_outbox GROUP BY state")
            .fetch_all(&self.pool)
            .await?
        {
            let n = rows::int(&row, "n")?;
            match rows::text(&row, "state")?.as_str() {
                "pending" => summary.pending = n,
                "delivered" => summary.delivered = n,
                _ => summary.failed = n,
            }
        }
        Ok(summary)
    }

    /// The `data` of an item's payload, read from its source row now (so an erasure since it was
    /// queued is respected); `None` when the row is gone.
    ///
    /// # Errors
    /// The database failed.
    pub async fn webhook_data(&self, item: &OutboxItem) -> Result<Option<Value>, StoreError> {
        match item.source {
            WebhookSource::Events => {
                let row = sqlx::query(
                    "SELECT id, occurred_at, kind, address, company, brand, reason, class, status, \
                     reply_code, message_id, verified, evidence_id, source, note FROM events WHERE id = $1",
                )
                .bind(item.source_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(json!({
                    "event_id": rows::int(&row, "id")?,
                    "occurred_at": format_time(&rows::time(&row, "occurred_at")?),
                    "kind": rows::text(&row, "kind")?,
                    "address": rows::opt_text(&row, "address")?,
                    "company": rows::text(&row, "company")?,
                    "brand": rows::text(&row, "brand")?,
                    "reason": rows::opt_text(&row, "reason")?,
                    "class": rows::opt_text(&row, "class")?,
                    "status": rows::opt_text(&row, "status")?,
                    "reply_code": rows::opt_text(&row, "reply_code")?,
                    "message_id": rows::opt_text(&row, "message_id")?,
                    "verified": rows::int(&row, "verified")? != 0,
                    "evidence_id": rows::opt_int(&row, "evidence_id")?,
                    "source": rows::opt_text(&row, "source")?,
                    "note": rows::opt_text(&row, "note")?,
                })))
            }
            WebhookSource::Suppressions => {
                let row = sqlx::query(&format!(
                    "SELECT {} FROM suppressions WHERE id = $1",
                    rows::SUPPRESSION_COLUMNS
                ))
                .bind(item.source_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(to_value(&rows::suppression(&row)?)?))
            }
            WebhookSource::Blocked => {
                let row = sqlx::query(
                    "SELECT id, blocked_at, recipient_hash, company, brand, class, reason, \
                     message_id, client, stage FROM blocked WHERE id = $1",
                )
                .bind(item.source_id)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(to_value(&blocked_record(&row)?)?))
            }
        }
    }
}

fn to_value(value: &impl serde::Serialize) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
