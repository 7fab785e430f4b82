//! The retention purge as the edges ask for it: the cutoffs from `[retention]`, a dry run that
//! only counts, a real run, and the daily run inside `serve`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::{ServiceError, SuppressionService};
use crate::model::Timestamp;
use crate::store::{PurgeCount, PurgePace, PurgeRule, RetentionCutoffs, RetentionDays};

/// What a purge removed, or would remove (`dry_run`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurgeReport {
    pub dry_run: bool,
    #[serde(serialize_with = "crate::model::serialize_time")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Per rule, in the order a run applies them.
    pub rules: Vec<PurgeCount>,
    pub total: u64,
}

impl PurgeReport {
    fn new(dry_run: bool, at: Timestamp, rules: Vec<PurgeCount>) -> Self {
        let total = rules.iter().map(|r| r.rows).sum();
        Self {
            dry_run,
            at,
            rules,
            total,
        }
    }
}

/// One purge at a time: held while it runs.
struct PurgeGuard<'a>(&'a AtomicBool);

impl<'a> PurgeGuard<'a> {
    fn take(flag: &'a AtomicBool) -> Result<Self, ServiceError> {
        flag.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .map_err(|_| ServiceError::PurgeRunning)?;
        Ok(Self(flag))
    }
}

impl Drop for PurgeGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The first daily purge waits this long after start, so a restart loop does not purge in a loop
/// and start-up traffic comes first.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(3_600);
const EVERY: Duration = Duration::from_secs(86_400);

impl SuppressionService {
    /// The retention periods in force.
    pub fn retention_days(&self) -> RetentionDays {
        let retention = &self.config.retention;
        RetentionDays {
            events: retention.events_days,
            bounce_mail: retention.bounce_mail_days,
            sends: retention.sends_days,
            lifted_proof: retention.lifted_proof_days,
            expired_suppression: retention.expired_suppression_days,
        }
    }

    /// What a purge now would remove, per rule; changes nothing.
    ///
    /// # Errors
    /// Store failure.
    pub async fn purge_preview(&self) -> Result<PurgeReport, ServiceError> {
        let now = chrono::Utc::now();
        let cutoffs = RetentionCutoffs::at(now, self.retention_days());
        let rules = self.store.purge_counts(&cutoffs).await?;
        Ok(PurgeReport::new(true, now, rules))
    }

    /// Removes what the retention periods say, in batches (`[retention] batch_size`,
    /// `batch_pause_ms`), and records one `purge` event naming `actor`.
    ///
    /// # Errors
    /// Store failure: the batches done stay done; the next run goes on.
    pub async fn purge(
        &self,
        actor: &str,
        progress: &mut (dyn FnMut(PurgeRule, u64) + Send),
    ) -> Result<PurgeReport, ServiceError> {
        let _running = PurgeGuard::take(&self.purging)?;
        let now = chrono::Utc::now();
        let cutoffs = RetentionCutoffs::at(now, self.retention_days());
        let retention = &self.config.retention;
        let pace = PurgePace {
            batch_size: retention.batch_size,
            pause: Duration::from_millis(retention.batch_pause_ms),
        };
        let rules = self.store.purge(&cutoffs, pace, actor, progress).await?;
        Ok(PurgeReport::new(false, now, rules))
    }

    /// Purges once a day (the first an hour after start) until `stopping` turns true; a purge in
    /// progress stops between two batches.
    pub fn spawn_daily_purge(
        self,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut wait = FIRST_RUN_AFTER;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopping.changed() => return,
                }
                wait = EVERY;
                let mut quiet = |_: PurgeRule, _: u64| {};
                let run = self.purge("serve (daily)", &mut quiet);
                tokio::select! {
                    report = run => match report {
                        Ok(report) => tracing::info!(rows = report.total, "retention purge done"),
                        Err(error) => tracing::warn!(%error, "retention purge failed; the next run goes on"),
                    },
                    _ = stopping.changed() => return,
                }
            }
        })
    }
}
