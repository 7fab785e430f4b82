//! Pages of the event log, the suppressions and the blocked sends, for the edges that list them
//! (`bouncegate events`, the API). Pages are ordered by id and continue after a cursor (the last
//! id seen), so rows written meanwhile are neither skipped nor repeated.

use super::events::{EVENT_COLUMNS, EventRecord, event_record};
use super::queue::BlockedRecord;
use super::rows::{self, SUPPRESSION_COLUMNS};
use super::{Store, StoreError};
use crate::model::{Channel, Reason, Source, SuppressionRecord, Timestamp, format_time};
use crate::secret::AddressHash;

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since: Option<Timestamp>,
    pub address_hash: Option<AddressHash>,
    pub kind: Option<String>,
}

/// Which suppressions in force to list.
#[derive(Debug, Clone, Default)]
pub struct SuppressionFilter {
    pub address_hash: Option<AddressHash>,
    pub company: Option<String>,
    pub brand: Option<String>,
    pub reason: Option<Reason>,
    pub source: Option<Source>,
    pub channel: Option<Channel>,
    pub since: Option<Timestamp>,
}

/// A WHERE clause with its values, bound in order.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    values: Vec<Value>,
}

enum Value {
    Text(String),
    Int(i64),
}

impl Conditions {
    fn text(&mut self, column: &str, op: &str, value: impl Into<String>) {
        self.values.push(Value::Text(value.into()));
        self.clauses
            .push(format!("{column} {op} ${}", self.values.len()));
    }

    fn after(&mut self, cursor: Option<i64>) {
        if let Some(cursor) = cursor {
            self.values.push(Value::Int(cursor));
            self.clauses.push(format!("id > ${}", self.values.len()));
        }
    }

    fn sql(&self, select: &str, limit: i64) -> String {
        let mut sql = select.to_string();
        for (i, clause) in self.clauses.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            sql.push_str(clause);
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {}", limit.clamp(1, 10_000)));
        sql
    }

    async fn fetch(&self, store: &Store, sql: &str) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let mut query = sqlx::query(sql);
        for value in &self.values {
            query = match value {
                Value::Text(text) => query.bind(text.as_str()),
                Value::Int(int) => query.bind(*int),
            };
        }
        Ok(query.fetch_all(&store.pool).await?)
    }
}

impl Store {
    /// Events after `cursor` (oldest first), at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut conditions = Conditions::default();
        if let Some(since) = &filter.since {
            conditions.text("occurred_at", ">=", format_time(since));
        }
        if let Some(hash) = &filter.address_hash {
            conditions.text("address_hash", "=", hash.as_str());
        }
        if let Some(kind) = &filter.kind {
            conditions.text("kind", "=", kind.as_str());
        }
        conditions.after(cursor);
        let sql = conditions.sql(&format!("SELECT {EVENT_COLUMNS} FROM events"), limit);
        conditions
            .fetch(self, &sql)
            .await?
            .iter()
            .map(event_record)
            .collect()
    }

    /// Suppressions in force after `cursor` (oldest first), at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_suppressions(
        &self,
        filter: &SuppressionFilter,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SuppressionRecord>, StoreError> {
        let mut conditions = Conditions::default();
        conditions.clauses.push("lifted_at IS NULL".into());
        if let Some(hash) = &filter.address_hash {
            conditions.text("address_hash", "=", hash.as_str());
        }
        if let Some(company) = &filter.company {
            conditions.text("company", "=", company.as_str());
        }
        if let Some(brand) = &filter.brand {
            conditions.text("brand", "=", brand.as_str());
        }
        if let Some(reason) = filter.reason {
            conditions.text("reason", "=", reason.as_str());
        }
        if let Some(source) = filter.source {
            conditions.text("source", "=", source.as_str());
        }
        if let Some(channel) = filter.channel {
            conditions.text("channel", "=", channel.as_str());
        }
        if let Some(since) = &filter.since {
            conditions.text("created_at", ">=", format_time(since));
        }
        conditions.after(cursor);
        let sql = conditions.sql(
            &format!("SELECT {SUPPRESSION_COLUMNS} FROM suppressions"),
            limit,
        );
        conditions
            .fetch(self, &sql)
            .await?
            .iter()
            .map(rows::suppression)
            .collect()
    }

    /// Blocked sends after `cursor` (oldest first), since a time, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn list_blocked(
        &self,
        since: Option<Timestamp>,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<Vec<BlockedRecord>, StoreError> {
        let mut conditions = Conditions::default();
        if let Some(since) = &since {
            conditions.text("blocked_at", ">=", format_time(since));
        }
        conditions.after(cursor);
        let sql = conditions.sql(
            "SELECT id, blocked_at, recipient_hash, company, brand, class, reason, message_id, \
             client, stage FROM blocked",
            limit,
        );
        conditions
            .fetch(self, &sql)
            .await?
            .iter()
            .map(super::queue::blocked_record)
            .collect()
    }
}

impl Store {
    /// Per day since `since` (UTC dates, `YYYY-MM-DD`): bounces, complaints and unsubscribes
    /// received and sends blocked, as `(day, kind, count)` with kind `bounce`, `complaint`,
    /// `unsubscribe` or `blocked`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn daily_counts(
        &self,
        since: Timestamp,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT substr(occurred_at, 1, 10) AS day, kind, COUNT(*) AS n FROM events \
             WHERE occurred_at >= $1 AND kind IN ('bounce', 'complaint', 'unsubscribe') \
             GROUP BY substr(occurred_at, 1, 10), kind \
             UNION ALL \
             SELECT substr(blocked_at, 1, 10) AS day, 'blocked' AS kind, COUNT(*) AS n FROM blocked \
             WHERE blocked_at >= $1 GROUP BY substr(blocked_at, 1, 10)",
        )
        .bind(format_time(&since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    rows::text(row, "day")?,
                    rows::text(row, "kind")?,
                    rows::int(row, "n")?,
                ))
            })
            .collect()
    }
}
