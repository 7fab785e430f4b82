//! Group commit: one writer task takes every received mail that is waiting, writes them in one
//! transaction (one sync to disk), then answers each session. Under load the batches grow by
//! themselves; alone, a mail is written at once. A failed batch is retried one mail at a time,
//! so one bad mail cannot fail the others.

use tokio::sync::{mpsc, oneshot};

use crate::model::Timestamp;
use crate::store::{InboundEvent, InboundRecord, NewEvidence, Store};

/// Most mails in one transaction.
const MAX_BATCH: usize = 256;

/// A received mail with what it changes, owned so it can wait for the writer.
pub(crate) struct PendingMail {
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
pub(crate) struct Committer {
    queue: mpsc::Sender<(PendingMail, Reply)>,
}

impl Committer {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(store: Store) -> Self {
        let (queue, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_loop(store, receiver));
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

async fn write_loop(store: Store, mut receiver: mpsc::Receiver<(PendingMail, Reply)>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let now = chrono::Utc::now();
        let result = {
            let records: Vec<InboundRecord<'_>> =
                batch.iter().map(|(mail, _)| mail.record()).collect();
            store.record_inbound_many(&records, now).await.map(|_| ())
        };
        match result {
            Ok(()) => {
                for (_, reply) in batch {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(error) if batch.len() == 1 => {
                let (_, reply) = batch.pop().expect("one");
                let _ = reply.send(Err(error.to_string()));
            }
            Err(error) => {
                tracing::warn!(%error, mails = batch.len(), "group commit failed; writing one at a time");
                for (mail, reply) in batch {
                    let result = store.record_inbound(&mail.record(), now).await;
                    let _ = reply.send(result.map(|_| ()).map_err(|e| e.to_string()));
                }
            }
        }
    }
}
