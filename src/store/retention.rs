//! Retention: what the purge removes, rule by rule, and how it removes it without stopping the
//! gateway.
//!
//! Each [`PurgeRule`] names one table, the setting that dates it and an SQL condition; the dry run
//! counts what the conditions select, the real run deletes the same rows in small batches. A
//! batch's candidates are read outside any write transaction (WAL readers do not block the
//! writer); the write transaction only confirms them against the condition again and deletes, so
//! it holds the write lock for a few milliseconds. On a SQLite file the batches go through the
//! inbound writer's own connection and take turns with received mail on its lock, instead of
//! meeting it in SQLite's busy handler.
//!
//! Never selected, whatever the settings: a standing suppression, the evidence of a standing
//! opt-out or complaint (of any of the addresses it names), the event a suppression follows from,
//! a consent, and the record of an erasure (its keyed hash and its event).

use std::time::Duration;

use sqlx::Row;

use super::events::{NewEvent, insert_event};
use super::{Store, StoreError, rows};
use crate::model::{Timestamp, format_time};

/// One kind of thing the purge removes, in the order a run applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurgeRule {
    /// Raw bounce, delay, delivery-report and auto-reply mails.
    BounceMail,
    /// The original mail (or one-click request) of an opt-out or complaint that no longer stands.
    LiftedProof,
    /// Events, except those a suppression follows from and erasures.
    Events,
    /// Suppressions lifted (by the owner's consent, or by staff for bounces and manual blocks).
    LiftedSuppressions,
    /// Suppressions that expired (soft bounces with an expiry).
    ExpiredSuppressions,
    /// Records of sends the relay blocked.
    BlockedSends,
    /// Webhook calls delivered or given up.
    WebhookCalls,
    /// Send records (who was sent what, by which company and brand).
    Sends,
    /// Finished queue items (delivered, failed, dropped) and their message's metadata.
    QueueItems,
}

impl PurgeRule {
    /// Every rule, in the order a run applies them. Evidence first, while the events and
    /// suppressions that say what it proves are still there; a row one rule frees (an event whose
    /// suppression another rule removes) goes in the next run, so a dry run counts what a real
    /// run removes.
    pub const ALL: [PurgeRule; 9] = [
        PurgeRule::BounceMail,
        PurgeRule::LiftedProof,
        PurgeRule::Events,
        PurgeRule::LiftedSuppressions,
        PurgeRule::ExpiredSuppressions,
        PurgeRule::BlockedSends,
        PurgeRule::WebhookCalls,
        PurgeRule::Sends,
        PurgeRule::QueueItems,
    ];

    /// The table the rule removes rows from.
    pub fn table(self) -> &'static str {
        match self {
            PurgeRule::BounceMail | PurgeRule::LiftedProof => "evidence",
            PurgeRule::Events => "events",
            PurgeRule::LiftedSuppressions | PurgeRule::ExpiredSuppressions => "suppressions",
            PurgeRule::BlockedSends => "blocked",
            PurgeRule::WebhookCalls => "webhook_outbox",
            PurgeRule::Sends => "sends",
            PurgeRule::QueueItems => "queue",
        }
    }

    /// The `[retention]` setting that dates it.
    pub fn setting(self) -> &'static str {
        match self {
            PurgeRule::BounceMail => "bounce_mail_days",
            PurgeRule::LiftedProof | PurgeRule::LiftedSuppressions => "lifted_proof_days",
            PurgeRule::ExpiredSuppressions => "expired_suppression_days",
            PurgeRule::Events | PurgeRule::BlockedSends | PurgeRule::WebhookCalls => "events_days",
            PurgeRule::Sends | PurgeRule::QueueItems => "sends_days",
        }
    }

    /// The rule's name as the JSON output and the purge event write it.
    pub fn as_str(self) -> &'static str {
        match self {
            PurgeRule::BounceMail => "bounce_mail",
            PurgeRule::LiftedProof => "lifted_proof",
            PurgeRule::Events => "events",
            PurgeRule::LiftedSuppressions => "lifted_suppressions",
            PurgeRule::ExpiredSuppressions => "expired_suppressions",
            PurgeRule::BlockedSends => "blocked_sends",
            PurgeRule::WebhookCalls => "webhook_calls",
            PurgeRule::Sends => "sends",
            PurgeRule::QueueItems => "queue_items",
        }
    }

    /// What goes, for people.
    pub fn describe(self) -> &'static str {
        match self {
            PurgeRule::BounceMail => "raw bounce, delay and auto-reply mails received before",
            PurgeRule::LiftedProof => {
                "evidence of opt-outs no longer standing, lifted (or received, if never in force) before"
            }
            PurgeRule::Events => {
                "events (not those a suppression follows from, not erasures) that occurred before"
            }
            PurgeRule::LiftedSuppressions => "suppressions lifted before",
            PurgeRule::ExpiredSuppressions => "suppressions expired before",
            PurgeRule::BlockedSends => "records of blocked sends made before",
            PurgeRule::WebhookCalls => "finished webhook calls queued before",
            PurgeRule::Sends => "send records (no queue item left) made before",
            PurgeRule::QueueItems => "finished queue items last changed before",
        }
    }

    /// Rows of `table` (alias `t`) the rule removes; `$1` is the cutoff.
    fn condition(self) -> &'static str {
        match self {
            PurgeRule::BounceMail => {
                "t.received_at < $1 AND NOT (\
                   EXISTS (SELECT 1 FROM suppressions s WHERE s.evidence_id = t.id \
                           AND s.reason IN ('unsubscribe', 'complaint')) \
                   OR EXISTS (SELECT 1 FROM events e WHERE e.evidence_id = t.id \
                           AND e.kind IN ('unsubscribe', 'complaint', 'unsubscribe_held')))"
            }
            PurgeRule::LiftedProof => {
                "t.received_at < $1 AND (\
                   EXISTS (SELECT 1 FROM suppressions s WHERE s.evidence_id = t.id \
                           AND s.reason IN ('unsubscribe', 'complaint')) \
                   OR EXISTS (SELECT 1 FROM events e WHERE e.evidence_id = t.id \
                           AND e.kind IN ('unsubscribe', 'complaint', 'unsubscribe_held'))) \
                 AND NOT EXISTS (SELECT 1 FROM suppressions s \
                   WHERE (s.evidence_id = t.id \
                          OR s.event_id IN (SELECT e.id FROM events e WHERE e.evidence_id = t.id)) \
                     AND ((s.lifted_at IS NULL AND (s.expires_at IS NULL OR s.expires_at >= $1)) \
                          OR s.lifted_at >= $1))"
            }
            PurgeRule::Events => {
                "t.occurred_at < $1 AND t.kind <> 'erase' \
                 AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.event_id = t.id) \
                 AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.event_id = t.id \
                                 AND r.suppression_id IS NOT NULL)"
            }
            PurgeRule::LiftedSuppressions => {
                "t.lifted_at IS NOT NULL AND t.lifted_at < $1 AND t.lifted_by <> 'expiry'"
            }
            PurgeRule::ExpiredSuppressions => {
                "t.expires_at IS NOT NULL AND t.expires_at < $1 \
                 AND (t.lifted_at IS NULL OR t.lifted_by = 'expiry')"
            }
            PurgeRule::BlockedSends => "t.blocked_at < $1",
            PurgeRule::WebhookCalls => "t.state IN ('delivered', 'failed') AND t.created_at < $1",
            PurgeRule::Sends => {
                "t.sent_at < $1 AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.send_id = t.id)"
            }
            PurgeRule::QueueItems => {
                "t.state IN ('delivered', 'failed', 'dropped') AND t.updated_at < $1"
            }
        }
    }

    /// The indexed time column candidates are read in the order of (with the id), so a batch
    /// reads only old rows; `None`: by id alone (tables that stay small).
    fn time_column(self) -> Option<&'static str> {
        match self {
            PurgeRule::BounceMail | PurgeRule::LiftedProof => Some("received_at"),
            PurgeRule::Events => Some("occurred_at"),
            PurgeRule::BlockedSends => Some("blocked_at"),
            PurgeRule::Sends => Some("sent_at"),
            PurgeRule::LiftedSuppressions
            | PurgeRule::ExpiredSuppressions
            | PurgeRule::WebhookCalls
            | PurgeRule::QueueItems => None,
        }
    }

    fn cutoff(self, cutoffs: &RetentionCutoffs) -> Timestamp {
        match self {
            PurgeRule::BounceMail => cutoffs.bounce_mail,
            PurgeRule::LiftedProof | PurgeRule::LiftedSuppressions => cutoffs.lifted_proof,
            PurgeRule::ExpiredSuppressions => cutoffs.expired_suppression,
            PurgeRule::Events | PurgeRule::BlockedSends | PurgeRule::WebhookCalls => cutoffs.events,
            PurgeRule::Sends | PurgeRule::QueueItems => cutoffs.sends,
        }
    }
}

/// The retention periods, in days (the `[retention]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDays {
    pub events: u32,
    pub bounce_mail: u32,
    pub sends: u32,
    pub lifted_proof: u32,
    pub expired_suppression: u32,
}

/// The moments before which each kind of row goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCutoffs {
    pub now: Timestamp,
    pub events: Timestamp,
    pub bounce_mail: Timestamp,
    pub sends: Timestamp,
    pub lifted_proof: Timestamp,
    pub expired_suppression: Timestamp,
}

impl RetentionCutoffs {
    /// The cutoffs `days` set at `now`.
    pub fn at(now: Timestamp, days: RetentionDays) -> Self {
        let before = |days: u32| now - chrono::Duration::days(i64::from(days));
        Self {
            now,
            events: before(days.events),
            bounce_mail: before(days.bounce_mail),
            sends: before(days.sends),
            lifted_proof: before(days.lifted_proof),
            expired_suppression: before(days.expired_suppression),
        }
    }
}

/// What one rule selects (dry run) or removed (real run).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PurgeCount {
    pub rule: PurgeRule,
    pub table: &'static str,
    pub setting: &'static str,
    /// Rows older than this go.
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub before: Timestamp,
    pub rows: u64,
}

/// How a real run goes about it.
#[derive(Debug, Clone, Copy)]
pub struct PurgePace {
    /// Candidates per write transaction.
    pub batch_size: u32,
    /// Pause after each batch, so writers and readers get the database in between.
    pub pause: Duration,
}

impl Store {
    /// Counts what a purge at `cutoffs` would remove, per rule; changes nothing.
    ///
    /// # Errors
    /// The database failed.
    pub async fn purge_counts(
        &self,
        cutoffs: &RetentionCutoffs,
    ) -> Result<Vec<PurgeCount>, StoreError> {
        let mut counts = Vec::new();
        for rule in PurgeRule::ALL {
            let before = rule.cutoff(cutoffs);
            let row = sqlx::query(&format!(
                "SELECT COUNT(*) AS n FROM {} t WHERE {}",
                rule.table(),
                rule.condition()
            ))
            .bind(format_time(&before))
            .fetch_one(&self.pool)
            .await?;
            counts.push(PurgeCount {
                rule,
                table: rule.table(),
                setting: rule.setting(),
                before,
                rows: u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0),
            });
        }
        Ok(counts)
    }

    /// Removes what the retention periods say, rule by rule in batches, then records one `purge`
    /// event naming the counts and `actor`. `progress` hears each rule's running count.
    ///
    /// # Errors
    /// The database failed: the batches done so far stay done (each is whole), the rest waits for
    /// the next run.
    pub async fn purge(
        &self,
        cutoffs: &RetentionCutoffs,
        pace: PurgePace,
        actor: &str,
        progress: &mut (dyn FnMut(PurgeRule, u64) + Send),
    ) -> Result<Vec<PurgeCount>, StoreError> {
        let mut counts = Vec::new();
        for rule in PurgeRule::ALL {
            let before = rule.cutoff(cutoffs);
            let rows = self
                .purge_rule(rule, before, cutoffs.now, pace, progress)
                .await?;
            counts.push(PurgeCount {
                rule,
                table: rule.table(),
                setting: rule.setting(),
                before,
                rows,
            });
        }
        let total: u64 = counts.iter().map(|c| c.rows).sum();
        let summary = counts
            .iter()
            .filter(|c| c.rows > 0)
            .map(|c| format!("{} {}", c.rule.as_str(), c.rows))
            .collect::<Vec<_>>()
            .join(", ");
        let event = NewEvent {
            kind: "purge".into(),
            source: Some("retention".into()),
            note: Some(format!(
                "retention purge by {actor}: {total} rows{}",
                if summary.is_empty() {
                    String::new()
                } else {
                    format!(" ({summary})")
                }
            )),
            ..NewEvent::default()
        };
        let mut tx = self.begin_write().await?;
        insert_event(&mut tx, &event, cutoffs.now).await?;
        tx.commit().await?;
        if total > 0 {
            self.scrub_files().await;
        }
        Ok(counts)
    }

    async fn purge_rule(
        &self,
        rule: PurgeRule,
        before: Timestamp,
        now: Timestamp,
        pace: PurgePace,
        progress: &mut (dyn FnMut(PurgeRule, u64) + Send),
    ) -> Result<u64, StoreError> {
        let cutoff = format_time(&before);
        let now = format_time(&now);
        let mut cursor: (Option<String>, i64) = (None, 0);
        let mut removed = 0;
        progress(rule, 0);
        loop {
            let candidates = self.purge_candidates(rule, &cutoff, &cursor, pace).await?;
            let Some(last) = candidates.last() else { break };
            cursor = last.clone();
            let ids: Vec<i64> = candidates.iter().map(|(_, id)| *id).collect();
            removed += self.purge_batch(rule, ids, &cutoff, &now).await?;
            progress(rule, removed);
            if !pace.pause.is_zero() {
                tokio::time::sleep(pace.pause).await;
            }
        }
        Ok(removed)
    }

    /// The next batch of candidates after `cursor`, read outside any write transaction.
    async fn purge_candidates(
        &self,
        rule: PurgeRule,
        cutoff: &str,
        cursor: &(Option<String>, i64),
        pace: PurgePace,
    ) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        let (table, condition, limit) = (rule.table(), rule.condition(), pace.batch_size.max(1));
        let rows = match (rule.time_column(), &cursor.0) {
            (Some(time), after) => {
                let sql = format!(
                    "SELECT t.id, t.{time} AS at FROM {table} t WHERE {condition} \
                     AND (t.{time} > $2 OR (t.{time} = $2 AND t.id > $3)) \
                     ORDER BY t.{time}, t.id LIMIT {limit}"
                );
                sqlx::query(&sql)
                    .bind(cutoff)
                    .bind(after.as_deref().unwrap_or(""))
                    .bind(cursor.1)
                    .fetch_all(&self.pool)
                    .await?
            }
            (None, _) => {
                let sql = format!(
                    "SELECT t.id FROM {table} t WHERE {condition} AND t.id > $2 \
                     ORDER BY t.id LIMIT {limit}"
                );
                sqlx::query(&sql)
                    .bind(cutoff)
                    .bind(cursor.1)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let at = match rule.time_column() {
                    Some(_) => Some(rows::text(row, "at")?),
                    None => None,
                };
                Ok((at, rows::int(row, "id")?))
            })
            .collect()
    }

    /// Confirms `ids` against the rule once more and removes them, in one write transaction.
    async fn purge_batch(
        &self,
        rule: PurgeRule,
        ids: Vec<i64>,
        cutoff: &str,
        now: &str,
    ) -> Result<u64, StoreError> {
        if let Some(writer) = &self.sqlite_writer {
            let writer = writer.clone();
            let (cutoff, now) = (cutoff.to_string(), now.to_string());
            return tokio::task::spawn_blocking(move || {
                writer.with_transaction(|writes| {
                    super::sqlite_writer::ready(remove(writes, rule, &ids, &cutoff, &now))
                })
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        }
        let mut tx = self.begin_write().await?;
        let removed = remove(&mut SqlxPurge { tx: &mut tx }, rule, &ids, cutoff, now).await?;
        tx.commit().await?;
        Ok(removed)
    }
}

/// The statements a purge batch needs, on either driver (as `inbound::InboundWrites`).
pub(super) trait PurgeWrites {
    async fn ids(&mut self, sql: &str, texts: &[&str]) -> Result<Vec<i64>, StoreError>;
    async fn execute(&mut self, sql: &str, texts: &[&str]) -> Result<u64, StoreError>;
}

struct SqlxPurge<'t> {
    tx: &'t mut sqlx::Transaction<'static, sqlx::Any>,
}

impl PurgeWrites for SqlxPurge<'_> {
    async fn ids(&mut self, sql: &str, texts: &[&str]) -> Result<Vec<i64>, StoreError> {
        let mut query = sqlx::query(sql);
        for text in texts {
            query = query.bind(*text);
        }
        query
            .fetch_all(&mut **self.tx)
            .await?
            .iter()
            .map(|row| rows::int(row, "id"))
            .collect()
    }

    async fn execute(&mut self, sql: &str, texts: &[&str]) -> Result<u64, StoreError> {
        let mut query = sqlx::query(sql);
        for text in texts {
            query = query.bind(*text);
        }
        Ok(query.execute(&mut **self.tx).await?.rows_affected())
    }
}

fn id_list(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes the candidates that still meet the rule; the number removed.
async fn remove<W: PurgeWrites>(
    writes: &mut W,
    rule: PurgeRule,
    candidates: &[i64],
    cutoff: &str,
    now: &str,
) -> Result<u64, StoreError> {
    if candidates.is_empty() {
        return Ok(0);
    }
    let (table, condition) = (rule.table(), rule.condition());
    let mut confirm = format!(
        "SELECT t.id FROM {table} t WHERE t.id IN ({}) AND {condition}",
        id_list(candidates)
    );
    if table == "evidence" {
        // Only sealed rows leave, through a tombstone (the chain must still verify).
        confirm.push_str(" AND EXISTS (SELECT 1 FROM evidence_chain c WHERE c.evidence_id = t.id)");
    }
    let ids = writes.ids(&confirm, &[cutoff]).await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let list = id_list(&ids);
    let removed = match rule {
        PurgeRule::BounceMail | PurgeRule::LiftedProof => {
            let reason = format!(
                "retention: {} ({})",
                rule.setting(),
                match rule {
                    PurgeRule::BounceMail => "bounce or auto-reply mail",
                    _ => "proof of an opt-out that no longer stands",
                }
            );
            writes
                .execute(
                    &format!(
                        "INSERT INTO evidence_tombstones (evidence_id, purged_at, reason) \
                         SELECT evidence_id, $1, $2 FROM evidence_chain WHERE evidence_id IN ({list})"
                    ),
                    &[now, &reason],
                )
                .await?;
            for unlink in [
                "UPDATE events SET evidence_id = NULL WHERE evidence_id IN",
                "UPDATE suppressions SET evidence_id = NULL WHERE evidence_id IN",
            ] {
                writes.execute(&format!("{unlink} ({list})"), &[]).await?;
            }
            writes
                .execute(&format!("DELETE FROM evidence WHERE id IN ({list})"), &[])
                .await?
        }
        PurgeRule::Events => {
            writes
                .execute(
                    &format!("DELETE FROM reviews WHERE event_id IN ({list})"),
                    &[],
                )
                .await?;
            writes
                .execute(&format!("DELETE FROM events WHERE id IN ({list})"), &[])
                .await?
        }
        PurgeRule::LiftedSuppressions | PurgeRule::ExpiredSuppressions => {
            writes
                .execute(
                    &format!(
                        "UPDATE reviews SET suppression_id = NULL WHERE suppression_id IN ({list})"
                    ),
                    &[],
                )
                .await?;
            writes
                .execute(
                    &format!("DELETE FROM suppressions WHERE id IN ({list})"),
                    &[],
                )
                .await?
        }
        PurgeRule::QueueItems => {
            let messages = writes
                .ids(
                    &format!("SELECT DISTINCT message AS id FROM queue WHERE id IN ({list})"),
                    &[],
                )
                .await?;
            let removed = writes
                .execute(&format!("DELETE FROM queue WHERE id IN ({list})"), &[])
                .await?;
            if !messages.is_empty() {
                writes
                    .execute(
                        &format!(
                            "DELETE FROM queue_messages WHERE id IN ({}) \
                             AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.message = queue_messages.id)",
                            id_list(&messages)
                        ),
                        &[],
                    )
                    .await?;
            }
            removed
        }
        PurgeRule::BlockedSends | PurgeRule::WebhookCalls | PurgeRule::Sends => {
            writes
                .execute(&format!("DELETE FROM {table} WHERE id IN ({list})"), &[])
                .await?
        }
    };
    Ok(removed)
}
