//! Lists for the edges: the event log, suppressions in force, blocked sends, the relay's queue.
//! Pages continue after a cursor (the last id of the page before).

use serde::{Deserialize, Serialize};

use super::{ServiceError, SuppressionService};
use crate::model::{Channel, Reason, Source, SuppressionRecord, Timestamp};
use crate::store::{
    BlockedRecord, EventFilter, EventRecord, QueueAction, QueueEntry, QueueSummary, QueueTarget,
    SuppressionFilter,
};

/// Rows per page unless the caller asks for fewer.
pub const DEFAULT_PAGE: i64 = 100;
/// The most rows one page holds.
pub const MAX_PAGE: i64 = 1_000;

/// Which events to list (`bouncegate events`, `GET /v1/events`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events at or after this time.
    #[serde(default, deserialize_with = "crate::model::deserialize_opt_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Only events of this address (also after its erasure: matched by its keyed hash).
    #[serde(default)]
    pub address: Option<String>,
    /// Only events of this kind (`bounce`, `complaint`, `unsubscribe`, …).
    #[serde(default)]
    pub kind: Option<String>,
    /// Continue after this id (the `next_cursor` of the page before).
    #[serde(default)]
    #[param(minimum = 0)]
    pub cursor: Option<i64>,
    /// Rows per page (1–1000, default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Which suppressions in force to list (`GET /v1/suppressions`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuppressionsQuery {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    #[param(value_type = Option<Reason>)]
    pub reason: Option<Reason>,
    #[serde(default)]
    #[param(value_type = Option<Source>)]
    pub source: Option<Source>,
    #[serde(default)]
    #[param(value_type = Option<Channel>)]
    pub channel: Option<Channel>,
    /// Only suppressions created at or after this time.
    #[serde(default, deserialize_with = "crate::model::deserialize_opt_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Continue after this id (the `next_cursor` of the page before).
    #[serde(default)]
    #[param(minimum = 0)]
    pub cursor: Option<i64>,
    /// Rows per page (1–1000, default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Which blocked sends to list (`bouncegate blocked`, `GET /v1/blocked`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BlockedQuery {
    #[serde(default, deserialize_with = "crate::model::deserialize_opt_time")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    /// Continue after this id (the `next_cursor` of the page before).
    #[serde(default)]
    #[param(minimum = 0)]
    pub cursor: Option<i64>,
    /// Rows per page (1–1000, default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// A page of rows and the cursor of the next page (`null`: this was the last).
macro_rules! page_type {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, " and the cursor of the next page (`null`: this was the last).")]
        #[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            pub next_cursor: Option<i64>,
        }

        impl From<Page<$item>> for $name {
            fn from(page: Page<$item>) -> Self {
                Self {
                    items: page.items,
                    next_cursor: page.next_cursor,
                }
            }
        }
    };
}

/// Rows and the next cursor, before they get their named page type.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<i64>,
}

page_type!(EventPage, EventRecord, "events");
page_type!(SuppressionPage, SuppressionRecord, "suppressions in force");
page_type!(BlockedPage, BlockedRecord, "blocked sends");

fn page<T>(items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Page<T> {
    let next_cursor = if items.len() as i64 >= limit {
        items.last().map(id)
    } else {
        None
    };
    Page { items, next_cursor }
}

fn cursor(asked: Option<i64>) -> Result<Option<i64>, ServiceError> {
    match asked {
        Some(n) if n < 0 => Err(ServiceError::Invalid(format!(
            "cursor {n} is not one (use the next_cursor of the page before)"
        ))),
        other => Ok(other),
    }
}

fn limit(asked: Option<i64>) -> Result<i64, ServiceError> {
    match asked {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ServiceError::Invalid(format!(
            "limit {n} is out of range (1 to {MAX_PAGE})"
        ))),
    }
}

/// A queue command's answer: how many items changed.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct QueueActReport {
    pub changed: u64,
}

impl SuppressionService {
    /// A page of the event log.
    ///
    /// # Errors
    /// Invalid address or limit, store failure.
    pub async fn events(&self, query: &EventsQuery) -> Result<EventPage, ServiceError> {
        let limit = limit(query.limit)?;
        let address_hash = match &query.address {
            Some(address) => Some(self.store.hash(&Self::parse_address(address)?)),
            None => None,
        };
        let filter = EventFilter {
            since: query.since,
            address_hash,
            kind: query.kind.clone(),
        };
        let items = self
            .store
            .list_events(&filter, cursor(query.cursor)?, limit)
            .await?;
        Ok(page(items, limit, |e| e.id).into())
    }

    /// A page of the suppressions in force.
    ///
    /// # Errors
    /// Invalid address, scope or limit, store failure.
    pub async fn suppressions(
        &self,
        query: &SuppressionsQuery,
    ) -> Result<SuppressionPage, ServiceError> {
        let limit = limit(query.limit)?;
        let address_hash = match &query.address {
            Some(address) => Some(self.store.hash(&Self::parse_address(address)?)),
            None => None,
        };
        if let Some(company) = &query.company {
            self.scope(Some(company), query.brand.as_deref())?;
        } else if query.brand.is_some() {
            return Err(ServiceError::BrandWithoutCompany);
        }
        let filter = SuppressionFilter {
            address_hash,
            company: query.company.clone(),
            brand: query.brand.clone(),
            reason: query.reason,
            source: query.source,
            channel: query.channel,
            since: query.since,
        };
        let items = self
            .store
            .list_suppressions(&filter, cursor(query.cursor)?, limit)
            .await?;
        Ok(page(items, limit, |s| s.id).into())
    }

    /// A page of the sends a suppression stopped.
    ///
    /// # Errors
    /// Invalid limit, store failure.
    pub async fn blocked(&self, query: &BlockedQuery) -> Result<BlockedPage, ServiceError> {
        let limit = limit(query.limit)?;
        let items = self
            .store
            .list_blocked(query.since, cursor(query.cursor)?, limit)
            .await?;
        Ok(page(items, limit, |b| b.id).into())
    }

    /// The latest sends a suppression stopped, newest first (`bouncegate blocked`).
    ///
    /// # Errors
    /// Store failure.
    pub async fn recent_blocked(
        &self,
        since: Option<Timestamp>,
        limit: i64,
    ) -> Result<Vec<BlockedRecord>, ServiceError> {
        Ok(self.store.blocked(since, limit).await?)
    }

    /// The relay's queue: depth by state, the oldest waiting item, recent failures.
    ///
    /// # Errors
    /// Store failure.
    pub async fn queue_summary(&self) -> Result<QueueSummary, ServiceError> {
        Ok(self.store.queue_summary().await?)
    }

    /// One queue item.
    ///
    /// # Errors
    /// No such item, store failure.
    pub async fn queue_entry(&self, id: i64) -> Result<QueueEntry, ServiceError> {
        self.store
            .queue_entry(id)
            .await?
            .ok_or(ServiceError::NotFound {
                what: "queue item",
                id,
            })
    }

    /// Holds, releases, retries or fails waiting queue items.
    ///
    /// # Errors
    /// Store failure.
    pub async fn queue_act(
        &self,
        action: QueueAction,
        target: QueueTarget,
    ) -> Result<QueueActReport, ServiceError> {
        let changed = self
            .store
            .queue_act(action, target, chrono::Utc::now())
            .await?;
        Ok(QueueActReport { changed })
    }
}
