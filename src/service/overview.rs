//! What the staff overview shows: recent bounces, complaints, unsubscribes and blocked sends, the
//! relay's queue, and counts per day.

use super::{ServiceError, SuppressionService};
use crate::store::{BlockedRecord, EventRecord, QueueSummary};

/// Counts of one day.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayCounts {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub bounces: i64,
    pub complaints: i64,
    pub unsubscribes: i64,
    pub blocked: i64,
}

/// The overview.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Overview {
    /// The last `days` days, oldest first, every day present (zero when nothing happened).
    pub days: Vec<DayCounts>,
    /// The latest bounces, complaints and unsubscribes, newest first.
    pub recent: Vec<EventRecord>,
    /// The latest blocked sends, newest first.
    pub blocked: Vec<BlockedRecord>,
    pub queue: QueueSummary,
}

impl SuppressionService {
    /// The overview of the last `days` days, with `recent` latest items of each list.
    ///
    /// # Errors
    /// Store failure.
    pub async fn overview(&self, days: u32, recent: i64) -> Result<Overview, ServiceError> {
        let today = chrono::Utc::now().date_naive();
        let first = today - chrono::Duration::days(i64::from(days.max(1)) - 1);
        let since = first
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or_else(chrono::Utc::now);
        let mut counts: Vec<DayCounts> = first
            .iter_days()
            .take_while(|d| *d <= today)
            .map(|d| DayCounts {
                day: d.format("%Y-%m-%d").to_string(),
                ..DayCounts::default()
            })
            .collect();
        for (day, kind, n) in self.store.daily_counts(since).await? {
            if let Some(entry) = counts.iter_mut().find(|c| c.day == day) {
                match kind.as_str() {
                    "bounce" => entry.bounces += n,
                    "complaint" => entry.complaints += n,
                    "unsubscribe" => entry.unsubscribes += n,
                    _ => entry.blocked += n,
                }
            }
        }
        let mut latest = Vec::new();
        for kind in ["bounce", "complaint", "unsubscribe"] {
            latest.extend(self.store.events_of_kind(kind, recent).await?);
        }
        latest.sort_by_key(|e| std::cmp::Reverse(e.id));
        latest.truncate(usize::try_from(recent).unwrap_or(0));
        Ok(Overview {
            days: counts,
            recent: latest,
            blocked: self.recent_blocked(None, recent).await?,
            queue: self.store.queue_summary().await?,
        })
    }
}
