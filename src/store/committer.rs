//! Group commit: one writer takes every received mail (or one-click request) that is waiting, writes them in one
//! transaction (one sync to disk), then answers each session. Under load the batches grow by
//! themselves; alone, a mail is written at once. A failed batch is retried one mail at a time,
//! so one bad mail cannot fail the others.

use tokio::sync::{mpsc, oneshot};

use super::{
    AddOutcome, InboundEvent, InboundOutcome, InboundRecord, NewEvidence, Store, StoreError,
};
use crate::model::Timestamp;

/// Most mails in one transaction.
const MAX_BATCH: usize = 256;

/// A received mail with what it changes, owned so it can wait for the writer.
pub struct PendingMail {
    pub raw: Vec<u8>,
    pub mail_from: String,
    pub rcpt_to: String,
    pub helo: String,
    pub peer_ip: String,
    pub received_at: Timestamp,
    pub events: Vec<InboundEvent>,
}

impl PendingMail {
    fn record(&self) -> InboundRecord<'_> {
        InboundRecord {
            evidence: NewEvidence {
                raw: &self.raw,
                mail_from: Some(&self.mail_from),
                rcpt_to: Some(&self.rcpt_to),
                helo: Some(&self.helo),
                peer_ip: Some(&self.peer_ip),
                received_at: Some(self.received_at),
            },
            events: self.events.clone(),
        }
    }
}

type Reply = oneshot::Sender<Result<(), String>>;

/// The handle sessions use to have their mail written.
pub struct Committer {
    queue: mpsc::Sender<(PendingMail, Reply)>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer(..)")
    }
}

impl Committer {
    /// Starts the writer: on a SQLite file a thread of its own that writes in place (no thread
    /// hop per statement), elsewhere a task (needs a Tokio runtime either way for the queue).
    pub fn start(store: Store) -> Self {
        let (queue, receiver) = mpsc::channel(4 * MAX_BATCH);
        if store.writes_inbound_in_place() {
            let spawned = std::thread::Builder::new()
                .name("inbound-writer".into())
                .spawn(move || write_loop_in_place(&store, receiver));
            if let Err(error) = spawned {
                // Without its writer the queue closes and every mail gets a 451.
                tracing::error!(%error, "cannot start the inbound writer thread");
            }
        } else {
            tokio::spawn(write_loop(store, receiver));
        }
        Self { queue }
    }

    /// Writes the mail; returns once it is committed.
    ///
    /// # Errors
    /// The store failed, or the writer is gone.
    pub async fn commit(&self, mail: PendingMail) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((mail, reply))
            .await
            .map_err(|_| "the store writer stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the store writer stopped".to_string())?
    }
}

type Batch = Vec<(PendingMail, Reply)>;

/// The first mail and every other one already waiting, up to [`MAX_BATCH`].
fn fill(first: (PendingMail, Reply), receiver: &mut mpsc::Receiver<(PendingMail, Reply)>) -> Batch {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

/// What each session of a batch is told, given how writing the batch went: every one the same,
/// or, when a batch of several failed, `None`: its mails are then written again one at a time, so
/// one bad mail cannot fail the others.
fn settled(batch: &Batch, result: Result<(), StoreError>) -> Option<Vec<Result<(), String>>> {
    match result {
        Ok(()) => Some(vec![Ok(()); batch.len()]),
        Err(error) if batch.len() == 1 => Some(vec![Err(error.to_string())]),
        Err(error) => {
            tracing::debug!(%error, mails = batch.len(), "group commit failed; writing one at a time");
            None
        }
    }
}

/// Sends each session its answer, in batch order.
fn answer(batch: Batch, replies: Vec<Result<(), String>>) {
    for ((_, reply), result) in batch.into_iter().zip(replies) {
        let _ = reply.send(result);
    }
}

/// Counts what committed mails did, for `/metrics`.
fn observe(mail: &PendingMail, outcome: &InboundOutcome) {
    for (item, added) in mail.events.iter().zip(&outcome.suppressions) {
        if let (Some((suppression, _)), Some(AddOutcome::Added(_))) = (&item.suppression, added) {
            crate::metrics::suppression_added(
                suppression.reason.as_str(),
                suppression.source.as_str(),
            );
        }
    }
}

fn observe_batch(batch: &Batch, result: &Result<Vec<InboundOutcome>, StoreError>) {
    if let Ok(outcomes) = result {
        for ((mail, _), outcome) in batch.iter().zip(outcomes) {
            observe(mail, outcome);
        }
    }
}

fn records(batch: &Batch) -> Vec<InboundRecord<'_>> {
    batch.iter().map(|(mail, _)| mail.record()).collect()
}

async fn write_loop(store: Store, mut receiver: mpsc::Receiver<(PendingMail, Reply)>) {
    while let Some(first) = receiver.recv().await {
        let batch = fill(first, &mut receiver);
        let now = chrono::Utc::now();
        let started = std::time::Instant::now();
        let mut result = store.record_inbound_many(&records(&batch), now).await;
        crate::metrics::store_latency("inbound_commit", started.elapsed());
        if let Err(error) = &result
            && store.repair_missing_schema(error).await
        {
            // The database came back empty (dropped and re-created): its schema is back, try again.
            result = store.record_inbound_many(&records(&batch), now).await;
        }
        observe_batch(&batch, &result);
        let replies = match settled(&batch, result.map(|_| ())) {
            Some(replies) => replies,
            None => {
                let mut replies = Vec::with_capacity(batch.len());
                for (mail, _) in &batch {
                    let result = store.record_inbound(&mail.record(), now).await;
                    if let Ok(outcome) = &result {
                        observe(mail, outcome);
                    }
                    replies.push(result.map(|_| ()).map_err(|e| e.to_string()));
                }
                replies
            }
        };
        answer(batch, replies);
    }
}

fn write_loop_in_place(store: &Store, mut receiver: mpsc::Receiver<(PendingMail, Reply)>) {
    while let Some(first) = receiver.blocking_recv() {
        let batch = fill(first, &mut receiver);
        let now = chrono::Utc::now();
        let started = std::time::Instant::now();
        let result = store.record_inbound_many_blocking(&records(&batch), now);
        crate::metrics::store_latency("inbound_commit", started.elapsed());
        observe_batch(&batch, &result);
        let replies = settled(&batch, result.map(|_| ())).unwrap_or_else(|| {
            batch
                .iter()
                .map(|(mail, _)| {
                    let result = store
                        .record_inbound_many_blocking(std::slice::from_ref(&mail.record()), now);
                    if let Ok(outcomes) = &result
                        && let Some(outcome) = outcomes.first()
                    {
                        observe(mail, outcome);
                    }
                    result.map(|_| ()).map_err(|e| e.to_string())
                })
                .collect()
        });
        answer(batch, replies);
    }
}
