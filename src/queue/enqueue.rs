//! Group commit for the relay's queue: one writer task takes every relayed message that is
//! waiting into one transaction (one sync), then answers each session. Under load the batches
//! grow by themselves; alone, a message is written at once. A failed batch is written again one
//! message at a time, so one bad message cannot fail the others.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Minter, NewQueuedMessage, Store};

/// Most messages in one transaction.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<Vec<i64>, String>>;

/// The handle relay sessions queue through.
pub struct Enqueuer {
    queue: mpsc::Sender<(NewQueuedMessage, Reply)>,
}

impl Enqueuer {
    /// Starts the writer; `mint` makes each recipient's return path and unsubscribe token.
    pub fn start(store: Store, mint: Arc<Minter>) -> Self {
        let (queue, receiver) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_loop(store, mint, receiver));
        Self { queue }
    }

    /// Queues one message; returns its item ids once they are committed.
    ///
    /// # Errors
    /// The store failed, or the writer is gone.
    pub async fn enqueue(&self, message: NewQueuedMessage) -> Result<Vec<i64>, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((message, reply))
            .await
            .map_err(|_| "the queue writer stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the queue writer stopped".to_string())?
    }
}

async fn write_loop(
    store: Store,
    mint: Arc<Minter>,
    mut receiver: mpsc::Receiver<(NewQueuedMessage, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Waits for one, then takes every other one already waiting.
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (messages, replies): (Vec<NewQueuedMessage>, Vec<Reply>) = batch.drain(..).unzip();
        match store.enqueue(&messages, mint.as_ref()).await {
            Ok(ids) => {
                for (reply, ids) in replies.into_iter().zip(ids) {
                    let _ = reply.send(Ok(ids));
                }
            }
            Err(error) if messages.len() == 1 => {
                for reply in replies {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            Err(_) => {
                for (message, reply) in messages.into_iter().zip(replies) {
                    let result = store
                        .enqueue(std::slice::from_ref(&message), mint.as_ref())
                        .await
                        .map(|mut ids| ids.pop().unwrap_or_default())
                        .map_err(|e| e.to_string());
                    let _ = reply.send(result);
                }
            }
        }
    }
}
