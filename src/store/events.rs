//! The event log: every bounce, delay, complaint, unsubscribe and auto-reply seen, and every lift,
//! consent and erasure done.

use sqlx::{Any, Transaction};

use super::{Store, StoreError, rows};
use crate::model::{Timestamp, format_time};
use crate::secret::AddressHash;

/// An event to log. Text fields are stored as given; `address` is dropped for erased addresses.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub occurred_at: Option<Timestamp>,
    pub kind: String,
    pub address: Option<String>,
    pub address_hash: Option<AddressHash>,
    pub company: String,
    pub brand: String,
    pub reason: Option<String>,
    pub class: Option<String>,
    pub status: Option<String>,
    pub reply_code: Option<String>,
    pub diagnostic: Option<String>,
    pub message_id: Option<String>,
    pub verified: bool,
    pub evidence_id: Option<i64>,
    pub source: Option<String>,
    pub note: Option<String>,
    /// The bounce rule that decided the reason (bounces and delays).
    pub rule: Option<String>,
}

/// Logs an event; `$1`…`$17` as bound by both write paths. An erased address keeps only its hash.
pub(super) const INSERT_EVENT: &str = "INSERT INTO events (occurred_at, kind, address, address_hash, company, brand, reason, class, status, \
       reply_code, diagnostic, message_id, verified, evidence_id, source, note, rule) \
     VALUES ($1, $2, \
       CASE WHEN EXISTS (SELECT 1 FROM erasures WHERE address_hash = $4) THEN NULL ELSE $3 END, \
       $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id";

/// Logs an event inside a transaction.
pub(crate) async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    event: &NewEvent,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let row = sqlx::query(INSERT_EVENT)
        .bind(format_time(&event.occurred_at.unwrap_or(now)))
        .bind(&event.kind)
        .bind(event.address.as_deref())
        .bind(event.address_hash.as_ref().map(AddressHash::as_str))
        .bind(&event.company)
        .bind(&event.brand)
        .bind(event.reason.as_deref())
        .bind(event.class.as_deref())
        .bind(event.status.as_deref())
        .bind(event.reply_code.as_deref())
        .bind(event.diagnostic.as_deref())
        .bind(event.message_id.as_deref())
        .bind(i64::from(event.verified))
        .bind(event.evidence_id)
        .bind(event.source.as_deref())
        .bind(event.note.as_deref())
        .bind(event.rule.as_deref())
        .fetch_one(&mut **tx)
        .await?;
    rows::int(&row, "id")
}

/// A stored event, as the people who review and report read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub id: i64,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    pub kind: String,
    /// `None` once erased.
    pub address: Option<String>,
    pub company: String,
    pub brand: String,
    pub verified: bool,
    pub evidence_id: Option<i64>,
    pub source: Option<String>,
    pub note: Option<String>,
    /// Bounces and delays: the analysed reason, status code, and the rule that decided the
    /// reason (see README, "Bounce rules").
    pub reason: Option<String>,
    pub status: Option<String>,
    pub rule: Option<String>,
}

pub(super) const EVENT_COLUMNS: &str = "id, occurred_at, kind, address, company, brand, verified, evidence_id, source, note, \
     reason, status, rule";

pub(super) fn event_record(row: &sqlx::any::AnyRow) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        id: rows::int(row, "id")?,
        occurred_at: rows::time(row, "occurred_at")?,
        kind: rows::text(row, "kind")?,
        address: rows::opt_text(row, "address")?,
        company: rows::text(row, "company")?,
        brand: rows::text(row, "brand")?,
        verified: rows::int(row, "verified")? != 0,
        evidence_id: rows::opt_int(row, "evidence_id")?,
        source: rows::opt_text(row, "source")?,
        note: rows::opt_text(row, "note")?,
        reason: rows::opt_text(row, "reason")?,
        status: rows::opt_text(row, "status")?,
        rule: rows::opt_text(row, "rule")?,
    })
}

impl Store {
    /// The events of one address, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn events_of(&self, hash: &AddressHash) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE address_hash = $1 ORDER BY id"
        ))
        .bind(hash.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_record).collect()
    }

    /// The events of one kind, newest first, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn events_of_kind(
        &self,
        kind: &str,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE kind = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(kind)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_record).collect()
    }
}
