//! Reading typed values out of rows, the same way for both backends.

use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::StoreError;
use crate::model::{Scope, SuppressionRecord, Timestamp, parse_time};

/// A result row of either driver: sqlx (both backends) or rusqlite (the SQLite read path).
pub(super) trait RecordRow {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
}

impl RecordRow for AnyRow {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get::<Option<String>, _>(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get::<Option<i64>, _>(column)?)
    }
}

impl RecordRow for rusqlite::Row<'_> {
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get::<_, Option<String>>(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get::<_, Option<i64>>(column)?)
    }
}

fn missing(column: &str) -> StoreError {
    StoreError::Corrupt(format!("{column} is NULL"))
}

pub(super) fn text(row: &impl RecordRow, column: &str) -> Result<String, StoreError> {
    row.opt_text(column)?.ok_or_else(|| missing(column))
}

pub(super) fn opt_text(row: &impl RecordRow, column: &str) -> Result<Option<String>, StoreError> {
    row.opt_text(column)
}

pub(super) fn int(row: &impl RecordRow, column: &str) -> Result<i64, StoreError> {
    row.opt_int(column)?.ok_or_else(|| missing(column))
}

pub(super) fn opt_int(row: &impl RecordRow, column: &str) -> Result<Option<i64>, StoreError> {
    row.opt_int(column)
}

pub(super) fn time(row: &impl RecordRow, column: &str) -> Result<Timestamp, StoreError> {
    let value = text(row, column)?;
    parse_time(&value)
        .ok_or_else(|| StoreError::Corrupt(format!("{column} = {value:?} is not a time")))
}

pub(super) fn opt_time(
    row: &impl RecordRow,
    column: &str,
) -> Result<Option<Timestamp>, StoreError> {
    match opt_text(row, column)? {
        None => Ok(None),
        Some(value) => parse_time(&value)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("{column} = {value:?} is not a time"))),
    }
}

pub(super) fn word<T: FromStr>(row: &impl RecordRow, column: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let value = text(row, column)?;
    value
        .parse()
        .map_err(|e: T::Err| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(super) fn scope(row: &impl RecordRow) -> Result<Scope, StoreError> {
    let company = text(row, "company")?;
    let brand = text(row, "brand")?;
    Scope::from_parts(Some(&company), Some(&brand))
        .ok_or_else(|| StoreError::Corrupt(format!("brand {brand:?} without a company")))
}

/// The suppression columns every reader selects, in this order.
pub(super) const SUPPRESSION_COLUMNS: &str = "id, address, channel, company, brand, reason, source, note, created_at, expires_at, evidence_id";

pub(super) fn suppression(row: &impl RecordRow) -> Result<SuppressionRecord, StoreError> {
    Ok(SuppressionRecord {
        id: int(row, "id")?,
        address: opt_text(row, "address")?,
        channel: word(row, "channel")?,
        scope: scope(row)?,
        reason: word(row, "reason")?,
        source: word(row, "source")?,
        note: opt_text(row, "note")?,
        created_at: time(row, "created_at")?,
        expires_at: opt_time(row, "expires_at")?,
        evidence_id: opt_int(row, "evidence_id")?,
    })
}

/// `$first, $first+1, …` for an `IN (…)` list of `count` values.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
