//! Reading typed values out of rows, the same way for both backends.

use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::StoreError;
use crate::model::{Scope, SuppressionRecord, Timestamp, parse_time};

pub(super) fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    Ok(row.try_get::<String, _>(column)?)
}

pub(super) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

pub(super) fn int(row: &AnyRow, column: &str) -> Result<i64, StoreError> {
    Ok(row.try_get::<i64, _>(column)?)
}

pub(super) fn opt_int(row: &AnyRow, column: &str) -> Result<Option<i64>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(column)?)
}

pub(super) fn time(row: &AnyRow, column: &str) -> Result<Timestamp, StoreError> {
    let value = text(row, column)?;
    parse_time(&value).ok_or_else(|| StoreError::Corrupt(format!("{column} = {value:?} is not a time")))
}

pub(super) fn opt_time(row: &AnyRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    match opt_text(row, column)? {
        None => Ok(None),
        Some(value) => parse_time(&value)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("{column} = {value:?} is not a time"))),
    }
}

pub(super) fn word<T: FromStr>(row: &AnyRow, column: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let value = text(row, column)?;
    value.parse().map_err(|e: T::Err| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(super) fn scope(row: &AnyRow) -> Result<Scope, StoreError> {
    let company = text(row, "company")?;
    let brand = text(row, "brand")?;
    Scope::from_parts(Some(&company), Some(&brand))
        .ok_or_else(|| StoreError::Corrupt(format!("brand {brand:?} without a company")))
}

/// The suppression columns every reader selects, in this order.
pub(super) const SUPPRESSION_COLUMNS: &str =
    "id, address, channel, company, brand, reason, source, note, created_at, expires_at, evidence_id";

pub(super) fn suppression(row: &AnyRow) -> Result<SuppressionRecord, StoreError> {
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
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}
