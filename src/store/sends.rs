//! Send records: who got which message from which company and brand. Tokens name them; bounces
//! that quote the original Message-ID find them.

use super::rows::RecordRow;
use super::{Store, StoreError, rows};
use crate::address::EmailAddress;
use crate::model::{MailClass, Timestamp, format_time, normalize_message_id};

/// A message sent to one recipient.
#[derive(Debug, Clone)]
pub struct NewSend {
    pub address: EmailAddress,
    pub company: String,
    pub brand: Option<String>,
    pub class: MailClass,
    pub message_id: String,
    pub sent_at: Timestamp,
}

/// A stored send record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    pub id: i64,
    /// The address as given; `None` once erased.
    pub address: Option<String>,
    pub address_hash: String,
    pub company: String,
    /// `""` when the send had no brand.
    pub brand: String,
    pub message_id: String,
    pub sent_at: Timestamp,
}

/// Records a send: `$1`…`$7` are address, hash, company, brand, class, Message-ID, time.
pub(super) const INSERT_SEND: &str = "INSERT INTO sends (address, address_hash, company, brand, class, message_id, sent_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

/// The send with id `$1`.
pub(super) const BY_ID: &str = "SELECT id, address, address_hash, company, brand, message_id, sent_at FROM sends WHERE id = $1";
/// The sends of message `$1`, in the order they were made.
pub(super) const BY_MESSAGE: &str = "SELECT id, address, address_hash, company, brand, message_id, sent_at \
     FROM sends WHERE message_id = $1 ORDER BY id";

/// A send's row, read by either driver.
pub(super) fn record(row: &impl RecordRow) -> Result<SendRecord, StoreError> {
    Ok(SendRecord {
        id: rows::int(row, "id")?,
        address: rows::opt_text(row, "address")?,
        address_hash: rows::text(row, "address_hash")?,
        company: rows::text(row, "company")?,
        brand: rows::text(row, "brand")?,
        message_id: rows::text(row, "message_id")?,
        sent_at: rows::time(row, "sent_at")?,
    })
}

impl Store {
    /// Records a send and returns its id (what tokens carry). The Message-ID is kept in its
    /// normalised form (see [`normalize_message_id`]); tokens bind that form.
    ///
    /// # Errors
    /// The database failed.
    pub async fn record_send(&self, send: &NewSend) -> Result<i64, StoreError> {
        let hash = self.hash(&send.address);
        let row = sqlx::query(INSERT_SEND)
            .bind(send.address.as_given())
            .bind(hash.as_str())
            .bind(&send.company)
            .bind(send.brand.as_deref().unwrap_or(""))
            .bind(send.class.as_str())
            .bind(normalize_message_id(&send.message_id))
            .bind(format_time(&send.sent_at))
            .fetch_one(&self.pool)
            .await?;
        rows::int(&row, "id")
    }

    /// The send record with this id.
    ///
    /// # Errors
    /// The database failed.
    pub async fn send(&self, id: i64) -> Result<Option<SendRecord>, StoreError> {
        if let Some(reader) = &self.sqlite_reader {
            return reader.send(id);
        }
        let row = sqlx::query(BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// Send records of a message (one per recipient it went to).
    ///
    /// # Errors
    /// The database failed.
    pub async fn sends_of_message(&self, message_id: &str) -> Result<Vec<SendRecord>, StoreError> {
        let message_id = normalize_message_id(message_id);
        if message_id.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(reader) = &self.sqlite_reader {
            return reader.sends_of_message(message_id);
        }
        let rows = sqlx::query(BY_MESSAGE)
            .bind(message_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }
}
