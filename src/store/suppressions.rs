//! Suppressions: adding (one or a batch), reading what bears on a decision, lifting, exporting.

use std::collections::{HashMap, HashSet};

use futures_util::{Stream, StreamExt};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::events::{NewEvent, insert_event};
use super::rows::{self, RecordRow, SUPPRESSION_COLUMNS, placeholders};
use super::{Backend, Store, StoreError};
use crate::address::EmailAddress;
use crate::model::{
    AddressRecords, Channel, ConsentRecord, Reason, Scope, Source, SuppressionRecord, Timestamp,
    format_time,
};
use crate::secret::AddressHash;

/// A suppression to record.
#[derive(Debug, Clone)]
pub struct NewSuppression {
    pub address: EmailAddress,
    pub channel: Channel,
    pub scope: Scope,
    pub reason: Reason,
    pub source: Source,
    pub note: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub evidence_id: Option<i64>,
    pub event_id: Option<i64>,
    /// Who recorded it by hand (`cli:USER`, `api:TOKEN`, `staff:USER`); `None` for mail and clicks.
    pub created_by: Option<String>,
}

/// What adding one suppression did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// A new suppression with this id.
    Added(i64),
    /// The same suppression (address, channel, scope, reason) was already in force.
    AlreadyActive(i64),
}

impl AddOutcome {
    /// The suppression's id, new or existing.
    pub fn id(self) -> i64 {
        match self {
            AddOutcome::Added(id) | AddOutcome::AlreadyActive(id) => id,
        }
    }
}

/// What adding a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub added: usize,
    pub unchanged: usize,
}

/// Keeps `IN (…)` lists well under SQLite's and PostgreSQL's bind limits.
pub(crate) const LOOKUP_CHUNK: usize = 500;

impl Store {
    /// Records one suppression, unless the same one is already in force.
    ///
    /// # Errors
    /// The database failed; nothing was written.
    pub async fn add_suppression(
        &self,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<AddOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let outcome = self.add_in(&mut tx, new, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records one suppression inside a caller's transaction (the inbound path writes event,
    /// evidence and suppression together).
    ///
    /// # Errors
    /// The database failed.
    pub(crate) async fn add_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<AddOutcome, StoreError> {
        let hash = self.hash(&new.address);
        let erased = erased_among(tx, std::slice::from_ref(&hash)).await?;
        expire_due(tx, std::slice::from_ref(&hash), now).await?;
        if let Some(id) = insert(tx, new, &hash, erased.contains(&hash)).await? {
            return Ok(AddOutcome::Added(id));
        }
        let id = self.in_force_in(tx, new, now).await?.ok_or_else(|| {
            StoreError::Corrupt("a conflicting suppression vanished within its transaction".into())
        })?;
        Ok(AddOutcome::AlreadyActive(id))
    }

    /// The id of the same suppression (address, channel, scope, reason) in force at `now`, if any.
    ///
    /// # Errors
    /// The database failed.
    pub(crate) async fn in_force_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        let hash = self.hash(&new.address);
        let (company, brand) = new.scope.columns();
        let row = sqlx::query(IN_FORCE)
            .bind(hash.as_str())
            .bind(new.channel.as_str())
            .bind(company)
            .bind(brand)
            .bind(new.reason.as_str())
            .bind(format_time(&now))
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| rows::int(&r, "id")).transpose()
    }

    /// Records a batch in one transaction; suppressions already in force are left as they are.
    ///
    /// # Errors
    /// The database failed; nothing of the batch was written.
    pub async fn add_suppressions(
        &self,
        batch: &[NewSuppression],
        now: Timestamp,
    ) -> Result<BatchOutcome, StoreError> {
        let hashes: Vec<AddressHash> = batch.iter().map(|s| self.hash(&s.address)).collect();
        let mut tx = self.begin_write().await?;
        let mut erased = HashSet::new();
        for chunk in hashes.chunks(LOOKUP_CHUNK) {
            erased.extend(erased_among(&mut tx, chunk).await?);
            expire_due(&mut tx, chunk, now).await?;
        }
        let mut added = 0;
        let rows: Vec<_> = batch.iter().zip(&hashes).collect();
        for chunk in rows.chunks(INSERT_ROWS) {
            added += insert_many(&mut tx, self.backend, chunk, &erased).await?;
        }
        let outcome = BatchOutcome {
            added,
            unchanged: batch.len() - added,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Everything that bears on a decision about one address, in one round trip.
    ///
    /// # Errors
    /// The database failed.
    pub async fn records(&self, hash: &AddressHash) -> Result<AddressRecords, StoreError> {
        if let Some(reader) = &self.sqlite_reader {
            return reader.records(hash);
        }
        let rows = sqlx::query(&records_query("= $1"))
            .bind(hash.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut records = AddressRecords::default();
        for row in &rows {
            add_record_row(&mut records, row)?;
        }
        Ok(records)
    }

    /// [`Store::records`] for many addresses (a campaign list), a few round trips in all.
    /// Addresses without any record are absent from the map.
    ///
    /// # Errors
    /// The database failed.
    pub async fn records_many(
        &self,
        hashes: &[AddressHash],
    ) -> Result<HashMap<AddressHash, AddressRecords>, StoreError> {
        let mut map: HashMap<AddressHash, AddressRecords> = HashMap::new();
        if let Some(reader) = &self.sqlite_reader {
            // Bulk lookups take milliseconds: off the async workers.
            let reader = reader.clone();
            let hashes = hashes.to_vec();
            return tokio::task::spawn_blocking(move || {
                for chunk in hashes.chunks(LOOKUP_CHUNK) {
                    reader.records_many(chunk, &mut map)?;
                }
                Ok(map)
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("lookup task failed: {e}")))?;
        }
        for chunk in hashes.chunks(LOOKUP_CHUNK) {
            let sql = records_query(&format!("IN ({})", placeholders(1, chunk.len())));
            let mut query = sqlx::query(&sql);
            for hash in chunk {
                query = query.bind(hash.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let hash = AddressHash::from_stored(rows::text(&row, "address_hash")?);
                add_record_row(map.entry(hash).or_default(), &row)?;
            }
        }
        Ok(map)
    }

    /// The address hash of a suppression that is not lifted.
    ///
    /// # Errors
    /// The database failed.
    pub async fn suppression_hash(&self, id: i64) -> Result<Option<AddressHash>, StoreError> {
        let row = sqlx::query(
            "SELECT address_hash FROM suppressions WHERE id = $1 AND lifted_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok(AddressHash::from_stored(rows::text(&row, "address_hash")?)))
            .transpose()
    }

    /// Lifts the given suppressions (a recorded event, never a deletion).
    /// Returns the ids that were in force and are now lifted.
    ///
    /// # Errors
    /// The database failed; nothing was lifted.
    pub async fn lift(
        &self,
        ids: &[i64],
        lifted_by: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut lifted = Vec::new();
        for &id in ids {
            let row = sqlx::query(
                "UPDATE suppressions SET lifted_at = $1, lifted_by = $2, lift_note = $3 \
                 WHERE id = $4 AND lifted_at IS NULL \
                 RETURNING id, address, address_hash, company, brand, reason, source",
            )
            .bind(format_time(&now))
            .bind(lifted_by)
            .bind(note)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                record_lift_event(&mut tx, &row, now, lifted_by, note).await?;
                lifted.push(id);
            }
        }
        tx.commit().await?;
        Ok(lifted)
    }

    /// Every suppression in force (not lifted; expired ones included until swept), oldest first.
    pub fn active_suppressions(
        &self,
    ) -> impl Stream<Item = Result<SuppressionRecord, StoreError>> + '_ {
        sqlx::query(
            "SELECT id, address, channel, company, brand, reason, source, note, created_at, expires_at, \
             evidence_id FROM suppressions WHERE lifted_at IS NULL ORDER BY id",
        )
        .fetch(&self.pool)
        .map(|row| rows::suppression(&row?))
    }
}

/// One query for suppressions in force, consents and the erasure of the hashes matched by `matcher`.
pub(super) fn records_query(matcher: &str) -> String {
    format!(
        "SELECT 's' AS kind, address_hash, {SUPPRESSION_COLUMNS} FROM suppressions \
           WHERE address_hash {matcher} AND lifted_at IS NULL \
         UNION ALL SELECT 'c', address_hash, id, NULL, channel, company, brand, NULL, NULL, NULL, \
           confirmed_at, NULL, NULL FROM consents WHERE address_hash {matcher} \
         UNION ALL SELECT 'e', address_hash, 0, NULL, NULL, '', '', NULL, NULL, NULL, \
           erased_at, NULL, NULL FROM erasures WHERE address_hash {matcher}"
    )
}

pub(super) fn add_record_row(
    records: &mut AddressRecords,
    row: &impl RecordRow,
) -> Result<(), StoreError> {
    match rows::text(row, "kind")?.as_str() {
        "s" => records.suppressions.push(rows::suppression(row)?),
        "c" => records.consents.push(ConsentRecord {
            id: rows::int(row, "id")?,
            channel: rows::word(row, "channel")?,
            scope: rows::scope(row)?,
            confirmed_at: rows::time(row, "created_at")?,
        }),
        _ => records.erased_at = Some(rows::time(row, "created_at")?),
    }
    Ok(())
}

/// Columns written for a new suppression, in the order `bind_suppression` binds them.
/// The same suppression in force: `$1` hash, `$2` channel, `$3` company, `$4` brand, `$5` reason,
/// `$6` now.
pub(super) const IN_FORCE: &str = "SELECT id FROM suppressions WHERE address_hash = $1 AND channel = $2 \
     AND company = $3 AND brand = $4 AND reason = $5 AND lifted_at IS NULL \
     AND (expires_at IS NULL OR expires_at > $6)";

/// One suppression unless the same is in force (then no row): `$1`…`$13` in [`INSERT_COLUMNS`] order.
pub(super) fn insert_one_sql() -> String {
    format!(
        "INSERT INTO suppressions ({INSERT_COLUMNS}) VALUES ({}) {ON_CONFLICT} RETURNING id",
        placeholders(1, INSERT_WIDTH)
    )
}

/// Lifts expired suppressions of `n` addresses: `$1` now, `$2`… the hashes.
pub(super) fn expire_due_sql(n: usize) -> String {
    format!(
        "UPDATE suppressions SET lifted_at = $1, lifted_by = 'expiry', lift_note = 'expired' \
         WHERE lifted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $1 AND address_hash IN ({})",
        placeholders(2, n)
    )
}

/// Which of `n` hashes (`$1`…) belong to erased addresses.
pub(super) fn erased_among_sql(n: usize) -> String {
    format!(
        "SELECT address_hash FROM erasures WHERE address_hash IN ({})",
        placeholders(1, n)
    )
}

const INSERT_COLUMNS: &str = "address, address_hash, channel, company, brand, reason, source, note, \
     created_at, expires_at, evidence_id, event_id, created_by";
const INSERT_WIDTH: usize = 13;
/// Rows per multi-row INSERT in a batch (13 binds each).
const INSERT_ROWS: usize = 200;
const ON_CONFLICT: &str = "ON CONFLICT (address_hash, channel, company, brand, reason) WHERE lifted_at IS NULL DO NOTHING";

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>;

fn bind_suppression<'q>(
    query: AnyQuery<'q>,
    new: &'q NewSuppression,
    hash: &'q AddressHash,
    erased: bool,
) -> AnyQuery<'q> {
    let (company, brand) = new.scope.columns();
    query
        .bind((!erased).then(|| new.address.as_given().to_string()))
        .bind(hash.as_str())
        .bind(new.channel.as_str())
        .bind(company)
        .bind(brand)
        .bind(new.reason.as_str())
        .bind(new.source.as_str())
        .bind(new.note.as_deref())
        .bind(format_time(&new.created_at))
        .bind(new.expires_at.as_ref().map(format_time))
        .bind(new.evidence_id)
        .bind(new.event_id)
        .bind(new.created_by.as_deref())
}

/// Inserts many rows in one statement; returns how many were new (the rest were in force already).
async fn insert_many(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    rows: &[(&NewSuppression, &AddressHash)],
    erased: &HashSet<AddressHash>,
) -> Result<usize, StoreError> {
    // SQLite resolves each named parameter with a linear scan (quadratic for thousands of
    // binds); anonymous `?` are bound in order, which is what this statement needs.
    let values: Vec<String> = (0..rows.len())
        .map(|i| match backend {
            Backend::Sqlite => format!("({})", ["?"; INSERT_WIDTH].join(", ")),
            Backend::Postgres => format!("({})", placeholders(1 + i * INSERT_WIDTH, INSERT_WIDTH)),
        })
        .collect();
    let sql = format!(
        "INSERT INTO suppressions ({INSERT_COLUMNS}) VALUES {} {ON_CONFLICT} RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (new, hash) in rows {
        query = bind_suppression(query, new, hash, erased.contains(*hash));
    }
    Ok(query.fetch_all(&mut **tx).await?.len())
}

/// Inserts unless the same suppression is in force; `None` then. An erased address keeps only its hash.
async fn insert(
    tx: &mut Transaction<'static, Any>,
    new: &NewSuppression,
    hash: &AddressHash,
    erased: bool,
) -> Result<Option<i64>, StoreError> {
    let sql = insert_one_sql();
    let row = bind_suppression(sqlx::query(&sql), new, hash, erased)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| rows::int(&r, "id")).transpose()
}

/// Marks expired suppressions of these addresses as lifted by expiry, so a new one can take their place.
async fn expire_due(
    tx: &mut Transaction<'static, Any>,
    hashes: &[AddressHash],
    now: Timestamp,
) -> Result<(), StoreError> {
    let sql = expire_due_sql(hashes.len());
    let mut query = sqlx::query(&sql).bind(format_time(&now));
    for hash in hashes {
        query = query.bind(hash.as_str());
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn erased_among(
    tx: &mut Transaction<'static, Any>,
    hashes: &[AddressHash],
) -> Result<HashSet<AddressHash>, StoreError> {
    let sql = erased_among_sql(hashes.len());
    let mut query = sqlx::query(&sql);
    for hash in hashes {
        query = query.bind(hash.as_str());
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| Ok(AddressHash::from_stored(rows::text(r, "address_hash")?)))
        .collect()
}

/// Logs the lifting of a suppression, from the row the lift returned (`address`,
/// `address_hash`, `company`, `brand`, `reason`); staff lifts and consent lifts alike.
pub(super) async fn record_lift_event(
    tx: &mut Transaction<'static, Any>,
    lifted: &AnyRow,
    now: Timestamp,
    source: &str,
    note: Option<&str>,
) -> Result<(), StoreError> {
    let event = NewEvent {
        kind: "lift".into(),
        address: rows::opt_text(lifted, "address")?,
        address_hash: Some(AddressHash::from_stored(rows::text(
            lifted,
            "address_hash",
        )?)),
        company: rows::text(lifted, "company")?,
        brand: rows::text(lifted, "brand")?,
        reason: Some(rows::text(lifted, "reason")?),
        source: Some(source.to_string()),
        note: note.map(str::to_string),
        ..NewEvent::default()
    };
    insert_event(tx, &event, now).await?;
    Ok(())
}
