//! Delivery from the durable queue: workers lease due items, honour opt-outs recorded since the
//! mail was queued, put each recipient's List-Unsubscribe on its copy, send it to the upstream
//! with its signed return path, and settle the item: delivered, retried on the schedule, failed
//! (a permanent refusal, or past the queue's age limit) or dropped.
//!
//! Its SQL is in `store::queue`; the upstream is behind [`Upstream`]. A worker that dies leaves
//! its leases to run out: nothing is lost, and the upstream's 250 before the settle is the only
//! window for a second delivery.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::address::EmailAddress;
use crate::analysis::{Analyzer, BounceClass};
use crate::config::Config;
use crate::model::{Channel, MailClass, Timestamp};
use crate::secret::redact_addresses;
use crate::service::{CheckRequest, SuppressionService};
use crate::smtp::MessageSink;
use crate::store::{AttemptOutcome, BlockStage, NewBlocked, QueueItem, StoreError};
use crate::upstream::{Upstream, UpstreamError};
use crate::verp;
use dkim::DkimSigners;

/// How long a worker holds what it claimed before another may take it.
const LEASE: Duration = Duration::from_secs(300);
/// How an attempt ended and the upstream's permanent refusal (code, words) if that is how;
/// `None` when the store failed before it.
type Attempt = Option<(AttemptOutcome, Option<(u16, String)>)>;

/// Soft reasons that still speak of the recipient's mailbox, not of the sending side: an
/// upstream's refusal for one of them counts as a (soft) bounce.
const MAILBOX_REASONS: [&str; 3] = ["mailboxfull", "suspend", "exceedlimit"];

/// How often an idle worker looks for due items without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How soon a claimer whose senders are all busy looks for room again.
const FULL_POLL: Duration = Duration::from_millis(5);
/// Most outcomes settled in one transaction.
const SETTLE_BATCH: usize = 256;

mod bounce;
mod copy;
pub mod dkim;
mod enqueue;

pub use enqueue::Enqueuer;

/// The delivery side of the relay.
pub struct Delivery<U, B> {
    service: SuppressionService,
    upstream: Arc<U>,
    /// Where a permanent refusal goes as a bounce (the inbound sink).
    bounces: Arc<B>,
    /// Reads a refusal before it goes there: only a verdict on the recipient is a bounce.
    analyzer: Arc<Analyzer>,
    config: Arc<Config>,
    queued: Arc<Notify>,
    dkim: Arc<DkimSigners>,
    worker: String,
}

impl<U: Upstream, B: MessageSink> Delivery<U, B> {
    /// Delivers with `upstream`, signing with `dkim`; a permanent refusal that `analyzer` reads
    /// as a verdict on the recipient is handed to `bounces` as a DSN; `queued` wakes it when the
    /// relay queued something.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: SuppressionService,
        upstream: Arc<U>,
        bounces: Arc<B>,
        analyzer: Arc<Analyzer>,
        config: Arc<Config>,
        queued: Arc<Notify>,
        dkim: Arc<DkimSigners>,
    ) -> Self {
        Self {
            service,
            upstream,
            bounces,
            analyzer,
            config,
            queued,
            dkim,
            // Leases name their holder; another instance on the same database has another name.
            worker: format!(
                "{}-{}",
                std::process::id(),
                hex::encode(rand::random::<[u8; 4]>())
            ),
        }
    }

    /// Runs until `shutdown` turns true; the attempts under way finish and are settled first.
    ///
    /// A pipeline keeps every upstream connection busy: a claimer leases due items into a short
    /// channel whenever it has room, `upstream_connections` senders each take the next item and
    /// attempt it, and a settler writes the outcomes that are waiting in one transaction.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let delivery = Arc::new(self);
            let parallel = delivery.config.relay.upstream_connections.max(1);
            let (to_send, items) = mpsc::channel::<QueueItem>(4 * parallel);
            let items = Arc::new(tokio::sync::Mutex::new(items));
            let (to_settle, mut outcomes) = mpsc::channel::<(QueueItem, Attempt)>(4 * parallel);
            let mut senders = Vec::with_capacity(parallel);
            for _ in 0..parallel {
                let (delivery, items, to_settle) =
                    (delivery.clone(), items.clone(), to_settle.clone());
                senders.push(tokio::spawn(async move {
                    loop {
                        let next = items.lock().await.recv().await;
                        let Some(item) = next else { break };
                        let attempt = delivery.attempt(&item).await;
                        if to_settle.send((item, attempt)).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            drop(to_settle);
            let settler = {
                let delivery = delivery.clone();
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(SETTLE_BATCH);
                    while outcomes.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
                        delivery.settle(std::mem::take(&mut batch)).await;
                    }
                })
            };
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let woken = delivery.queued.notified();
                // Claims are write transactions: take a good handful at a time, not one by one.
                let room = to_send.capacity();
                if room < parallel {
                    tokio::select! {
                        _ = tokio::time::sleep(FULL_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                let claimed = delivery.claim(room).await;
                if claimed.is_empty() {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                for item in claimed {
                    if to_send.send(item).await.is_err() {
                        break;
                    }
                }
            }
            drop(to_send);
            for sender in senders {
                let _ = sender.await;
            }
            let _ = settler.await;
        })
    }

    async fn claim(&self, limit: usize) -> Vec<QueueItem> {
        let now = chrono::Utc::now();
        let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match self
            .service
            .store()
            .claim_due(&self.worker, limit, now, lease_until)
            .await
        {
            Ok(items) => items,
            Err(error) => {
                tracing::warn!(%error, "cannot claim queued mail; trying again shortly");
                tokio::time::sleep(IDLE_POLL).await;
                Vec::new()
            }
        }
    }

    /// One attempt for one item; `None` when the store failed before it (the lease runs out and
    /// the item is tried again).
    async fn attempt(&self, item: &QueueItem) -> Attempt {
        match self.attempt_outcome(item).await {
            Ok(outcome) => Some(outcome),
            Err(error) => {
                tracing::warn!(%error, item = item.id, "store failure before an attempt; the lease runs out and it is tried again");
                None
            }
        }
    }

    /// Settles a batch of attempts in one transaction, then records what they cause: drops in
    /// `blocked`, the upstream's refusals as bounces.
    async fn settle(&self, attempts: Vec<(QueueItem, Attempt)>) {
        let settled: Vec<(&QueueItem, AttemptOutcome)> = attempts
            .iter()
            .filter_map(|(item, attempt)| attempt.as_ref().map(|(o, _)| (item, o.clone())))
            .collect();
        if settled.is_empty() {
            return;
        }
        let result = self
            .service
            .store()
            .settle(&settled, &self.worker, chrono::Utc::now())
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, items = settled.len(), "cannot settle attempts; their leases run out and they are tried again");
            return;
        }
        for (item, attempt) in &attempts {
            let Some((outcome, refusal)) = attempt else {
                continue;
            };
            crate::metrics::delivery(match outcome {
                AttemptOutcome::Delivered => "delivered",
                AttemptOutcome::Retry { .. } => "retry",
                AttemptOutcome::Failed { .. } => "failed",
                AttemptOutcome::Dropped { .. } => "dropped",
            });
            match outcome {
                AttemptOutcome::Failed { error } => {
                    let error = redact_addresses(error, self.service.store().hasher());
                    tracing::warn!(item = item.id, %error, "relayed mail failed for good");
                }
                AttemptOutcome::Retry { error, .. } => {
                    let error = redact_addresses(error, self.service.store().hasher());
                    tracing::info!(item = item.id, %error, "relayed mail deferred");
                }
                AttemptOutcome::Dropped { reason } => {
                    if let Err(error) = self.record_drop(item, reason).await {
                        tracing::warn!(%error, item = item.id, "cannot record a dropped mail");
                    }
                }
                AttemptOutcome::Delivered => {}
            }
            if let Some((code, text)) = refusal {
                // As if the upstream had sent its bounce to the return path: same analysis,
                // attribution and thresholds as one received on the MX.
                let dsn = bounce::refusal_dsn(
                    item,
                    *code,
                    text,
                    &self.config.relay_hostname(),
                    &self.config.relay.upstream,
                );
                // The upstream is the gateway's own next hop: a refusal that is not about the
                // mailbox (relaying denied, our sender or IP blocked, policy) is about this side,
                // and would otherwise count against every recipient of a misconfigured setup.
                let report = self.analyzer.analyze(&dsn.data);
                let about_the_mailbox = report.recipients.iter().any(|r| {
                    r.class == BounceClass::Hard || MAILBOX_REASONS.contains(&r.reason.as_str())
                });
                if !about_the_mailbox {
                    tracing::warn!(item = item.id, code, %text, "the upstream refused a mail for a reason not about the mailbox; recorded as failed, not as a bounce: check the upstream");
                    continue;
                }
                if let Err(error) = self.bounces.data(dsn).await {
                    tracing::warn!(%error, item = item.id, "cannot record the upstream's refusal as a bounce");
                }
            }
        }
    }

    /// How an attempt ends, and the upstream's permanent refusal (code and words) if that is how.
    async fn attempt_outcome(
        &self,
        item: &QueueItem,
    ) -> Result<(AttemptOutcome, Option<(u16, String)>), StoreError> {
        // An opt-out recorded while the mail waited stops it now.
        let request = CheckRequest {
            company: &item.company,
            brand: Some(item.brand.as_str()).filter(|b| !b.is_empty()),
            class: item.class,
            channel: Channel::Email,
        };
        let verdict = match self.service.check(&item.recipient, request).await {
            Ok(verdict) => verdict,
            Err(crate::service::ServiceError::Store(error)) => return Err(error),
            Err(error) => {
                let failed = AttemptOutcome::Failed {
                    error: error.to_string(),
                };
                return Ok((failed, None));
            }
        };
        if !verdict.allowed {
            let dropped = AttemptOutcome::Dropped {
                reason: verdict.describe(),
            };
            return Ok((dropped, None));
        }
        let message = self.copy_for(item);
        let now = chrono::Utc::now();
        let sent = self
            .upstream
            .send(&item.return_path, &item.recipient, &message)
            .await;
        Ok(match sent {
            Ok(()) => (AttemptOutcome::Delivered, None),
            Err(error) if error.is_transient() => (self.retry_or_fail(item, &error, now), None),
            Err(error) => {
                let refusal = match &error {
                    UpstreamError::Refused { code, text } => Some((*code, text.clone())),
                    _ => None,
                };
                let failed = AttemptOutcome::Failed {
                    error: error.to_string(),
                };
                (failed, refusal)
            }
        })
    }

    /// The recipient's copy: its List-Unsubscribe for promotional mail, then the queued bytes;
    /// signed when the From domain has a DKIM key.
    fn copy_for(&self, item: &QueueItem) -> Vec<u8> {
        let list_unsubscribe = match (&item.unsubscribe_token, item.class) {
            (Some(token), MailClass::Promotional) => {
                let mailto = verp::unsubscribe_address(token, &self.config.inbound);
                Some(copy::list_unsubscribe(
                    &self.config.http.public_url,
                    token,
                    &mailto,
                ))
            }
            _ => None,
        };
        copy::copy(list_unsubscribe, &item.raw, &self.dkim)
    }

    /// The next attempt on the schedule, or failure once the mail is older than the limit.
    fn retry_or_fail(
        &self,
        item: &QueueItem,
        error: &UpstreamError,
        now: Timestamp,
    ) -> AttemptOutcome {
        let relay = &self.config.relay;
        let age = (now - item.created_at).to_std().unwrap_or_default();
        if age >= relay.max_queue_age() {
            return AttemptOutcome::Failed {
                error: format!("queued longer than {}: {error}", relay.max_queue_age),
            };
        }
        let delays = relay.retry_delays();
        let index = usize::try_from(item.attempts).unwrap_or(usize::MAX);
        let delay = delays
            .get(index)
            .or(delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(60));
        AttemptOutcome::Retry {
            at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
            error: error.to_string(),
        }
    }

    async fn record_drop(&self, item: &QueueItem, reason: &str) -> Result<(), StoreError> {
        let Ok(recipient) = EmailAddress::parse(&item.recipient) else {
            return Ok(());
        };
        let block = NewBlocked {
            recipient,
            company: item.company.clone(),
            brand: Some(item.brand.clone()).filter(|b| !b.is_empty()),
            class: item.class,
            reason: reason.to_string(),
            message_id: Some(item.message_id.clone()),
            client: "queue".into(),
            stage: BlockStage::Queue,
        };
        self.service
            .store()
            .record_blocked(&[block], chrono::Utc::now())
            .await?;
        crate::metrics::send_blocked(reason);
        Ok(())
    }
}
