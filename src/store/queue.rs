//! The relay's durable queue: a message's bytes once, an item per recipient with its send record
//! and signed return path, leases for the workers that deliver, and the record of every mail a
//! suppression stopped (`blocked`).
//!
//! A claim is a lease: the item stays `queued`, a worker holds it until `lease_until`; a worker
//! that dies lets the lease run out and the item is claimed again, never lost. On PostgreSQL the
//! claim skips rows another instance is claiming (`FOR UPDATE SKIP LOCKED`), so two instances
//! never hold one item at the same time.

use serde::Serialize;
use sqlx::Row;

use super::sends::INSERT_SEND;
use super::{Store, StoreError, rows};
use crate::address::EmailAddress;
use crate::model::{MailClass, Timestamp, format_time, normalize_message_id};

/// A relayed message to queue, with its recipients and the recipients it dropped.
#[derive(Debug, Clone)]
pub struct NewQueuedMessage {
    pub raw: Vec<u8>,
    pub client: String,
    pub message_id: String,
    pub received_at: Timestamp,
    pub items: Vec<NewQueueItem>,
    pub blocked: Vec<NewBlocked>,
}

/// Makes a recipient's return path and unsubscribe token from its send id, recipient hash,
/// Message-ID and time, once its send record exists.
pub type Minter = dyn Fn(i64, &NewQueueItem, &str, &str, Timestamp) -> Minted + Send + Sync;

/// One recipient of it.
#[derive(Debug, Clone)]
pub struct NewQueueItem {
    pub recipient: EmailAddress,
    pub company: String,
    /// `None` when the company has no brands.
    pub brand: Option<String>,
    pub class: MailClass,
}

/// What the caller mints for a recipient once its send record exists: the signed return path,
/// and the unsubscribe token for promotional mail.
#[derive(Debug, Clone)]
pub struct Minted {
    pub return_path: String,
    pub unsubscribe_token: Option<String>,
}

/// A recipient a suppression stopped.
#[derive(Debug, Clone)]
pub struct NewBlocked {
    pub recipient: EmailAddress,
    pub company: String,
    pub brand: Option<String>,
    pub class: MailClass,
    /// The blocking reasons with their scopes, as people read them.
    pub reason: String,
    pub message_id: Option<String>,
    pub client: String,
    pub stage: BlockStage,
}

/// Where the relay stopped a mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockStage {
    /// Refused at RCPT.
    Rcpt,
    /// Dropped at the end of DATA.
    Data,
    /// Dropped from the queue before an attempt (an opt-out recorded meanwhile).
    Queue,
}

impl BlockStage {
    fn as_str(self) -> &'static str {
        match self {
            BlockStage::Rcpt => "rcpt",
            BlockStage::Data => "data",
            BlockStage::Queue => "queue",
        }
    }
}

/// A recorded block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BlockedRecord {
    pub id: i64,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub blocked_at: Timestamp,
    pub recipient_hash: String,
    pub company: String,
    pub brand: String,
    pub class: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub client: String,
    pub stage: String,
}

pub(super) fn blocked_record(row: &sqlx::any::AnyRow) -> Result<BlockedRecord, StoreError> {
    Ok(BlockedRecord {
        id: rows::int(row, "id")?,
        blocked_at: rows::time(row, "blocked_at")?,
        recipient_hash: rows::text(row, "recipient_hash")?,
        company: rows::text(row, "company")?,
        brand: rows::text(row, "brand")?,
        class: rows::text(row, "class")?,
        reason: rows::text(row, "reason")?,
        message_id: rows::opt_text(row, "message_id")?,
        client: rows::text(row, "client")?,
        stage: rows::text(row, "stage")?,
    })
}

/// A claimed item, with what delivering it needs.
#[derive(Debug, Clone)]
pub struct QueueItem {
    pub id: i64,
    pub message: i64,
    pub recipient: String,
    pub recipient_hash: String,
    pub company: String,
    /// `""` when none.
    pub brand: String,
    pub class: MailClass,
    pub send_id: i64,
    pub message_id: String,
    pub return_path: String,
    pub unsubscribe_token: Option<String>,
    pub attempts: i64,
    pub created_at: Timestamp,
    pub raw: Vec<u8>,
}

/// A queue item as `queue show` prints it (no bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueEntry {
    pub id: i64,
    pub message: i64,
    pub recipient: String,
    pub company: String,
    pub brand: String,
    pub class: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub message_id: String,
    pub return_path: String,
}

/// Queue depth by state, the oldest waiting item, and recent failures.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct QueueSummary {
    pub queued: i64,
    pub held: i64,
    pub delivered: i64,
    pub failed: i64,
    pub dropped: i64,
    /// When the oldest item still waiting was queued.
    pub oldest_waiting: Option<String>,
    pub recent_failures: Vec<QueueEntry>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The upstream took it.
    Delivered,
    /// Try again at this time.
    Retry { at: Timestamp, error: String },
    /// Given up (a permanent refusal, or too old).
    Failed { error: String },
    /// Not sent: a suppression stops it now.
    Dropped { reason: String },
}

/// What a queue command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueTarget {
    One(i64),
    All,
}

/// A queue command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// Keep waiting items from being delivered.
    Hold,
    /// Let held items go again.
    Release,
    /// Deliver waiting items now.
    Retry,
    /// Give waiting items up.
    Fail,
}

const ITEM_COLUMNS: &str = "q.id, q.message, q.recipient, q.recipient_hash, q.company, q.brand, \
     q.class, q.send_id, q.return_path, q.unsubscribe_token, q.attempts, q.created_at, \
     m.message_id, m.raw";

const ENTRY_COLUMNS: &str = "q.id, q.message, q.recipient, q.company, q.brand, q.class, q.state, \
     q.attempts, q.next_attempt_at, q.last_error, q.created_at, m.message_id, q.return_path";

impl Store {
    /// Queues relayed messages, all in one transaction (one sync for a batch): each one's bytes,
    /// a send record and an item per recipient (`mint` makes each one's return path and
    /// unsubscribe token from its send id), and the blocks recorded at DATA. Returns the item ids
    /// of each message.
    ///
    /// # Errors
    /// The database failed; nothing of the batch was queued.
    pub async fn enqueue(
        &self,
        messages: &[NewQueuedMessage],
        mint: &Minter,
    ) -> Result<Vec<Vec<i64>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut all = Vec::with_capacity(messages.len());
        for message in messages {
            all.push(self.enqueue_in(&mut tx, message, mint).await?);
        }
        tx.commit().await?;
        Ok(all)
    }

    async fn enqueue_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        message: &NewQueuedMessage,
        mint: &Minter,
    ) -> Result<Vec<i64>, StoreError> {
        let now = format_time(&message.received_at);
        let message_id = normalize_message_id(&message.message_id);
        let row = sqlx::query(
            "INSERT INTO queue_messages (received_at, client, message_id, size, raw) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&now)
        .bind(&message.client)
        .bind(message_id)
        .bind(i64::try_from(message.raw.len()).unwrap_or(i64::MAX))
        .bind(message.raw.clone())
        .fetch_one(&mut **tx)
        .await?;
        let stored = rows::int(&row, "id")?;
        let mut ids = Vec::with_capacity(message.items.len());
        for item in &message.items {
            let hash = self.hash(&item.recipient);
            let brand = item.brand.as_deref().unwrap_or("");
            let row = sqlx::query(INSERT_SEND)
                .bind(item.recipient.as_given())
                .bind(hash.as_str())
                .bind(&item.company)
                .bind(brand)
                .bind(item.class.as_str())
                .bind(message_id)
                .bind(&now)
                .fetch_one(&mut **tx)
                .await?;
            let send_id = rows::int(&row, "id")?;
            let minted = mint(
                send_id,
                item,
                hash.as_str(),
                message_id,
                message.received_at,
            );
            let row = sqlx::query(
                "INSERT INTO queue (message, recipient, recipient_hash, company, brand, class, send_id, \
                 return_path, unsubscribe_token, state, attempts, next_attempt_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $10, $10) RETURNING id",
            )
            .bind(stored)
            .bind(item.recipient.as_given())
            .bind(hash.as_str())
            .bind(&item.company)
            .bind(brand)
            .bind(item.class.as_str())
            .bind(send_id)
            .bind(&minted.return_path)
            .bind(minted.unsubscribe_token.as_deref())
            .bind(&now)
            .fetch_one(&mut **tx)
            .await?;
            ids.push(rows::int(&row, "id")?);
        }
        for block in &message.blocked {
            insert_blocked(tx, self, block, &now).await?;
        }
        Ok(ids)
    }

    /// Records blocks on their own (refusals at RCPT).
    ///
    /// # Errors
    /// The database failed.
    pub async fn record_blocked(
        &self,
        blocked: &[NewBlocked],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now = format_time(&now);
        let mut tx = self.begin_write().await?;
        for block in blocked {
            insert_blocked(&mut tx, self, block, &now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Blocks recorded since `since` (all when `None`), newest first, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn blocked(
        &self,
        since: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<BlockedRecord>, StoreError> {
        let since = since.map(|t| format_time(&t)).unwrap_or_default();
        let rows = sqlx::query(
            "SELECT id, blocked_at, recipient_hash, company, brand, class, reason, message_id, client, stage \
             FROM blocked WHERE blocked_at >= $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(blocked_record).collect()
    }

    /// Leases up to `limit` due items to `worker` until `lease_until`.
    ///
    /// # Errors
    /// The database failed; nothing was claimed.
    pub async fn claim_due(
        &self,
        worker: &str,
        limit: i64,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let due = "SELECT id FROM queue WHERE state = 'queued' AND next_attempt_at <= $1 \
                   AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_attempt_at, id LIMIT $2";
        let due = super::due_sql(self.backend, due);
        let mut tx = self.begin_write().await?;
        let query = sqlx::query(&due).bind(format_time(&now)).bind(limit);
        let Some(list) = super::due_ids(&mut tx, query).await? else {
            return Ok(Vec::new());
        };
        sqlx::query(&format!(
            "UPDATE queue SET lease_until = $1, leased_by = $2 WHERE id IN ({list})"
        ))
        .bind(format_time(&lease_until))
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM queue q JOIN queue_messages m ON m.id = q.message \
             WHERE q.id IN ({list}) ORDER BY q.next_attempt_at, q.id"
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(queue_item).collect()
    }

    /// Records how attempts ended, in one transaction (one sync for a whole batch); a message's
    /// bytes go once no recipient waits for them. Only the worker holding an item's lease settles
    /// it. Returns how many were settled.
    ///
    /// # Errors
    /// The database failed; the leases run out and the items are tried again.
    pub async fn settle(
        &self,
        attempts: &[(&QueueItem, AttemptOutcome)],
        worker: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let at = format_time(&now);
        let mut tx = self.begin_write().await?;
        let mut settled = 0;
        let mut messages = Vec::new();
        for (item, outcome) in attempts {
            let (state, next, error) = match outcome {
                AttemptOutcome::Delivered => ("delivered", at.clone(), None),
                AttemptOutcome::Retry { at: retry, error } => {
                    ("queued", format_time(retry), Some(error.as_str()))
                }
                AttemptOutcome::Failed { error } => ("failed", at.clone(), Some(error.as_str())),
                AttemptOutcome::Dropped { reason } => {
                    ("dropped", at.clone(), Some(reason.as_str()))
                }
            };
            let counted = i64::from(!matches!(outcome, AttemptOutcome::Dropped { .. }));
            let changed = sqlx::query(
                "UPDATE queue SET state = $1, next_attempt_at = $2, last_error = $3, attempts = attempts + $4, \
                 lease_until = NULL, leased_by = NULL, updated_at = $5 \
                 WHERE id = $6 AND leased_by = $7 AND state = 'queued'",
            )
            .bind(state)
            .bind(&next)
            .bind(error)
            .bind(counted)
            .bind(&at)
            .bind(item.id)
            .bind(worker)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                settled += 1;
                if !messages.contains(&item.message) {
                    messages.push(item.message);
                }
            }
        }
        for message in messages {
            release_bytes(&mut tx, message).await?;
        }
        tx.commit().await?;
        Ok(settled)
    }

    /// Depth by state, the oldest waiting item and the ten latest failures.
    ///
    /// # Errors
    /// The database failed.
    pub async fn queue_summary(&self) -> Result<QueueSummary, StoreError> {
        let mut summary = QueueSummary::default();
        for row in sqlx::query("SELECT state, COUNT(*) AS n FROM queue GROUP BY state")
            .fetch_all(&self.pool)
            .await?
        {
            let n = rows::int(&row, "n")?;
            match rows::text(&row, "state")?.as_str() {
                "queued" => summary.queued = n,
                "held" => summary.held = n,
                "delivered" => summary.delivered = n,
                "failed" => summary.failed = n,
                "dropped" => summary.dropped = n,
                _ => {}
            }
        }
        summary.oldest_waiting = sqlx::query(
            "SELECT MIN(created_at) AS oldest FROM queue WHERE state IN ('queued', 'held')",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get::<Option<String>, _>("oldest")?;
        summary.recent_failures = self
            .queue_entries("q.state = 'failed' ORDER BY q.updated_at DESC, q.id DESC LIMIT 10")
            .await?;
        Ok(summary)
    }

    /// One queue item, without its bytes.
    ///
    /// # Errors
    /// The database failed.
    pub async fn queue_entry(&self, id: i64) -> Result<Option<QueueEntry>, StoreError> {
        Ok(self
            .queue_entries(&format!("q.id = {id}"))
            .await?
            .into_iter()
            .next())
    }

    async fn queue_entries(&self, condition: &str) -> Result<Vec<QueueEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM queue q JOIN queue_messages m ON m.id = q.message WHERE {condition}"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(QueueEntry {
                    id: rows::int(row, "id")?,
                    message: rows::int(row, "message")?,
                    recipient: rows::text(row, "recipient")?,
                    company: rows::text(row, "company")?,
                    brand: rows::text(row, "brand")?,
                    class: rows::text(row, "class")?,
                    state: rows::text(row, "state")?,
                    attempts: rows::int(row, "attempts")?,
                    next_attempt_at: rows::text(row, "next_attempt_at")?,
                    last_error: rows::opt_text(row, "last_error")?,
                    created_at: rows::text(row, "created_at")?,
                    message_id: rows::text(row, "message_id")?,
                    return_path: rows::text(row, "return_path")?,
                })
            })
            .collect()
    }

    /// Holds, releases, retries now or fails waiting items; how many changed.
    ///
    /// # Errors
    /// The database failed; nothing changed.
    pub async fn queue_act(
        &self,
        action: QueueAction,
        target: QueueTarget,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let at = format_time(&now);
        let (set, from) = match action {
            QueueAction::Hold => ("state = 'held'", "'queued'"),
            QueueAction::Release => ("state = 'queued', next_attempt_at = $1", "'held'"),
            QueueAction::Retry => ("state = 'queued', next_attempt_at = $1", "'queued', 'held'"),
            QueueAction::Fail => (
                "state = 'failed', last_error = 'failed by an operator'",
                "'queued', 'held'",
            ),
        };
        let which = match target {
            QueueTarget::One(id) => format!(" AND id = {id}"),
            QueueTarget::All => String::new(),
        };
        let mut tx = self.begin_write().await?;
        let messages: Vec<i64> = sqlx::query(&format!(
            "SELECT DISTINCT message FROM queue WHERE state IN ({from}){which}"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| rows::int(row, "message"))
        .collect::<Result<_, _>>()?;
        // A leased item is the worker's until its attempt ends: hold and fail leave it alone.
        let unleased = match action {
            QueueAction::Hold | QueueAction::Fail => {
                " AND (lease_until IS NULL OR lease_until < $1)"
            }
            _ => "",
        };
        let changed = sqlx::query(&format!(
            "UPDATE queue SET {set}, updated_at = $1 WHERE state IN ({from}){which}{unleased}"
        ))
        .bind(&at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if action == QueueAction::Fail {
            for message in messages {
                release_bytes(&mut tx, message).await?;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }
}

/// The message's bytes, once no recipient waits for them any more.
pub(super) async fn release_bytes(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    message: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE queue_messages SET raw = NULL WHERE id = $1 AND NOT EXISTS \
         (SELECT 1 FROM queue WHERE message = $1 AND state IN ('queued', 'held'))",
    )
    .bind(message)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_blocked(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    store: &Store,
    block: &NewBlocked,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO blocked (blocked_at, recipient_hash, company, brand, class, reason, message_id, client, stage) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now)
    .bind(store.hash(&block.recipient).as_str())
    .bind(&block.company)
    .bind(block.brand.as_deref().unwrap_or(""))
    .bind(block.class.as_str())
    .bind(&block.reason)
    .bind(block.message_id.as_deref().map(normalize_message_id))
    .bind(&block.client)
    .bind(block.stage.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn queue_item(row: &sqlx::any::AnyRow) -> Result<QueueItem, StoreError> {
    Ok(QueueItem {
        id: rows::int(row, "id")?,
        message: rows::int(row, "message")?,
        recipient: rows::text(row, "recipient")?,
        recipient_hash: rows::text(row, "recipient_hash")?,
        company: rows::text(row, "company")?,
        brand: rows::text(row, "brand")?,
        class: rows::word(row, "class")?,
        send_id: rows::int(row, "send_id")?,
        message_id: rows::text(row, "message_id")?,
        return_path: rows::text(row, "return_path")?,
        unsubscribe_token: rows::opt_text(row, "unsubscribe_token")?,
        attempts: rows::int(row, "attempts")?,
        created_at: rows::time(row, "created_at")?,
        raw: row
            .try_get::<Option<Vec<u8>>, _>("raw")?
            .unwrap_or_default(),
    })
}
