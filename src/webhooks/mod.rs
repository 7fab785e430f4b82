//! Webhooks out: every configured `[[webhooks]]` receiver gets the events it asked for, POSTed as
//! JSON and signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
//!
//! Nothing is lost: the outbox is filled from rows that are already durable (the event log, the
//! suppressions, the blocked sends), each item is retried on the `[webhook_delivery]` schedule
//! until the receiver answers 2xx or the item is older than `max_age`, and a restart carries on
//! from the outbox. A receiver may see an item twice (after a crash between its 2xx and our
//! record of it); `webhook-id` stays the same, so it can tell.

use std::sync::Arc;
use std::time::Duration;

use base64_sign::sign;
use serde_json::json;

use crate::config::{Config, WebhookConfig};
use crate::model::format_time;
use crate::store::{OutboxItem, Store, WebhookOutcome};

/// Items leased per round.
const CLAIM: i64 = 64;
/// How long a leased item is ours.
const LEASE: Duration = Duration::from_secs(120);
/// How often the outbox is looked at when nothing wakes the dispatcher.
const POLL: Duration = Duration::from_millis(500);

mod base64_sign {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// The Standard Webhooks signature of a message.
    pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!(
            "v1,{}",
            data_encoding::BASE64.encode(&mac.finalize().into_bytes())
        )
    }
}

/// The Standard Webhooks signature header value for a message (for receivers' tests).
pub fn signature(secret: &WebhookConfig, id: &str, timestamp: i64, body: &[u8]) -> String {
    sign(&secret.key_bytes(), id, timestamp, body)
}

/// Sends the outbox.
pub struct Dispatcher {
    store: Store,
    config: Arc<Config>,
    client: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher for the configured webhooks.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots).
    pub fn new(store: Store, config: Arc<Config>) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.webhook_delivery.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bouncegate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            store,
            config,
            client,
        })
    }

    /// Fills every webhook's outbox from what arrived after its cursors. Called once at start
    /// before anything else can happen, it sets the cursors of webhooks seen for the first time
    /// (they start at the current end).
    ///
    /// # Errors
    /// The store failed.
    pub async fn prime(&self) -> Result<(), crate::store::StoreError> {
        self.fill(chrono::Utc::now()).await
    }

    async fn fill(&self, now: crate::model::Timestamp) -> Result<(), crate::store::StoreError> {
        for webhook in &self.config.webhooks {
            self.store
                .fill_outbox(webhook.key(), &|event| webhook.wants(event), now)
                .await?;
        }
        Ok(())
    }

    /// Runs until `stopping` turns true.
    pub fn spawn(
        self,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while !*stopping.borrow() {
                let busy = match self.round().await {
                    Ok(sent) => sent > 0,
                    Err(error) => {
                        tracing::warn!(%error, "webhooks: store failed; trying again");
                        false
                    }
                };
                if !busy {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = stopping.changed() => {}
                    }
                }
            }
        })
    }

    /// Fills the outbox and sends what is due; returns how many attempts were made.
    async fn round(&self) -> Result<usize, crate::store::StoreError> {
        let now = chrono::Utc::now();
        self.fill(now).await?;
        let keys: Vec<&str> = self.config.webhooks.iter().map(|w| w.key()).collect();
        let lease_until = now + chrono::Duration::from_std(LEASE).expect("small");
        let items = self
            .store
            .claim_webhooks(&keys, CLAIM, now, lease_until)
            .await?;
        let attempts = items.len();
        let sends = items.into_iter().map(|item| self.attempt(item));
        for (id, outcome) in futures_util::future::join_all(sends).await {
            crate::metrics::webhook(match &outcome {
                WebhookOutcome::Delivered => "delivered",
                WebhookOutcome::Retry { .. } => "retry",
                WebhookOutcome::Failed { .. } => "failed",
            });
            if let Err(error) = self
                .store
                .settle_webhook(id, &outcome, chrono::Utc::now())
                .await
            {
                tracing::warn!(%error, item = id, "webhooks: cannot record an attempt; it is tried again");
            }
        }
        Ok(attempts)
    }

    async fn attempt(&self, item: OutboxItem) -> (i64, WebhookOutcome) {
        let id = item.id;
        let Some(webhook) = self
            .config
            .webhooks
            .iter()
            .find(|w| w.key() == item.webhook)
        else {
            return (
                id,
                WebhookOutcome::Failed {
                    error: "the webhook is no longer configured".into(),
                },
            );
        };
        let outcome = match self.post(webhook, &item).await {
            Ok(()) => WebhookOutcome::Delivered,
            Err(error) => self.after_failure(&item, error),
        };
        (id, outcome)
    }

    fn after_failure(&self, item: &OutboxItem, error: String) -> WebhookOutcome {
        let now = chrono::Utc::now();
        let delivery = &self.config.webhook_delivery;
        let age = (now - item.created_at).to_std().unwrap_or_default();
        if age >= delivery.max_age() {
            tracing::warn!(item = item.id, webhook = %item.webhook, %error, "webhook given up after its max_age");
            return WebhookOutcome::Failed { error };
        }
        let delays = delivery.delays();
        let index = usize::try_from(item.attempts)
            .unwrap_or(0)
            .min(delays.len().saturating_sub(1));
        let wait = delays
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(60));
        tracing::info!(item = item.id, webhook = %item.webhook, %error, "webhook deferred");
        WebhookOutcome::Retry {
            at: now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(1)),
            error,
        }
    }

    async fn post(&self, webhook: &WebhookConfig, item: &OutboxItem) -> Result<(), String> {
        let data = self
            .store
            .webhook_data(item)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "its record is gone".to_string())?;
        let body = serde_json::to_vec(&json!({
            "type": item.event_type,
            "timestamp": format_time(&chrono::Utc::now()),
            "data": data,
        }))
        .map_err(|e| e.to_string())?;
        let message_id = format!("msg_{}", item.id);
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(&webhook.key_bytes(), &message_id, timestamp, &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST failed: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", response.status()))
        }
    }
}
