//! The SQLite write path for received mail: one read-write rusqlite connection, used from one
//! thread (the inbound writer), that writes a whole batch of mails in one transaction.
//!
//! Through sqlx, every SQLite statement is a round trip to a worker thread: a batch of mails costs
//! a dozen thread wake-ups per mail, which under load cost more than the writing itself. Here the
//! batch runs where it was handed over, and only the batch crosses threads. The statements and
//! the per-mail logic are the sqlx path's own (`inbound::write_inbound`), so both backends write
//! the same rows. Durability is the same too: WAL with `synchronous = FULL`, one sync per batch.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::StoreError;
use super::events::{INSERT_EVENT, NewEvent};
use super::evidence::{INSERT_EVIDENCE, INSERT_LINK, LAST_LINK, NewEvidence, Seal};
use super::inbound::{COUNT_BOUNCES, InboundOutcome, InboundRecord, InboundWrites, write_inbound};
use super::retention::PurgeWrites;
use super::suppressions::{
    AddOutcome, IN_FORCE, NewSuppression, erased_among_sql, expire_due_sql, insert_one_sql,
};
use crate::model::{Timestamp, format_time};
use crate::secret::{AddressHash, AddressHasher};

/// Parameter names as the shared statements write them (`$1` may occur twice in one statement).
const NAMES: [&str; 24] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
    "$16", "$17", "$18", "$19", "$20", "$21", "$22", "$23", "$24",
];

pub(super) struct SqliteWriter {
    path: PathBuf,
    connection: Mutex<Option<Connection>>,
    closed: AtomicBool,
}

impl SqliteWriter {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            connection: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// No more writes (the store was closed).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.set_prepared_statement_cache_capacity(32);
        // As the pool's connections (see `Store::open`), but without mmap: the file grows with
        // every batch, and a mapped writer would remap it each time.
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON; \
             PRAGMA journal_size_limit = 67108864;",
        )?;
        // Checkpoints leave the commit path: a received mail's commit never waits for the WAL to
        // be copied into the main file (the store's checkpointer does that beside it).
        connection.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        Ok(connection)
    }

    /// Writes the mails in one transaction: all or none.
    ///
    /// # Errors
    /// The database failed or the store is closed; nothing was written.
    pub(super) fn record_inbound_many(
        &self,
        hasher: &AddressHasher,
        records: &[InboundRecord<'_>],
        now: Timestamp,
    ) -> Result<Vec<InboundOutcome>, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let connection = match slot.take() {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = write_batch(&connection, hasher, records, now);
        // A connection that failed mid-way is not trusted again; the next batch opens a new one.
        if result.is_ok() {
            *slot = Some(connection);
        }
        result
    }
}

impl SqliteWriter {
    /// Runs `work` in one write transaction on the writer's connection, taking turns with the
    /// received-mail batches instead of meeting them in SQLite's busy handler (the retention
    /// purge's batches use it). All or nothing.
    ///
    /// # Errors
    /// The database failed or the store is closed; nothing was written.
    pub(super) fn with_transaction<T>(
        &self,
        work: impl FnOnce(&mut RusqlitePurge<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let connection = match slot.take() {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = (|| {
            let tx =
                rusqlite::Transaction::new_unchecked(&connection, TransactionBehavior::Immediate)?;
            let output = work(&mut RusqlitePurge { tx: &tx })?;
            tx.commit()?;
            Ok(output)
        })();
        // A connection that failed mid-way is not trusted again.
        if result.is_ok() {
            *slot = Some(connection);
        }
        result
    }
}

/// The purge's statements on the writer's connection.
pub(super) struct RusqlitePurge<'t> {
    tx: &'t rusqlite::Transaction<'t>,
}

impl PurgeWrites for RusqlitePurge<'_> {
    async fn ids(&mut self, sql: &str, texts: &[&str]) -> Result<Vec<i64>, StoreError> {
        let values: Vec<&dyn ToSql> = texts.iter().map(|t| t as &dyn ToSql).collect();
        let mut statement = self.tx.prepare(sql)?;
        let ids = statement
            .query_map(named(&values).as_slice(), |row| row.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    async fn execute(&mut self, sql: &str, texts: &[&str]) -> Result<u64, StoreError> {
        let values: Vec<&dyn ToSql> = texts.iter().map(|t| t as &dyn ToSql).collect();
        let changed = self.tx.execute(sql, named(&values).as_slice())?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }
}

fn write_batch(
    connection: &Connection,
    hasher: &AddressHasher,
    records: &[InboundRecord<'_>],
    now: Timestamp,
) -> Result<Vec<InboundOutcome>, StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(connection, TransactionBehavior::Immediate)?;
    let mut writes = RusqliteWrites { tx: &tx, hasher };
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        outcomes.push(ready(write_inbound(&mut writes, hasher, record, now))?);
    }
    tx.commit()?;
    Ok(outcomes)
}

/// Runs a future that never waits (every statement here completes in place) to its end.
pub(super) fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the SQLite writer's statements complete in place"),
    }
}

struct RusqliteWrites<'t> {
    tx: &'t rusqlite::Transaction<'t>,
    hasher: &'t AddressHasher,
}

/// Binds values to the shared statements' `$1`, `$2`, … in order.
fn named<'v>(values: &'v [&'v dyn ToSql]) -> Vec<(&'static str, &'v dyn ToSql)> {
    // A value past the names would be left unbound (NULL) without a word: never.
    assert!(
        values.len() <= NAMES.len(),
        "{} values, {} names",
        values.len(),
        NAMES.len()
    );
    NAMES.iter().copied().zip(values.iter().copied()).collect()
}

impl RusqliteWrites<'_> {
    fn optional_id(&self, sql: &str, values: &[&dyn ToSql]) -> Result<Option<i64>, StoreError> {
        let mut statement = self.tx.prepare_cached(sql)?;
        Ok(statement
            .query_row(named(values).as_slice(), |row| row.get::<_, i64>(0))
            .optional()?)
    }

    fn id(&self, sql: &str, values: &[&dyn ToSql]) -> Result<i64, StoreError> {
        self.optional_id(sql, values)?
            .ok_or_else(|| StoreError::Corrupt("an INSERT … RETURNING returned no row".into()))
    }
}

impl InboundWrites for RusqliteWrites<'_> {
    async fn insert_evidence(
        &mut self,
        evidence: &NewEvidence<'_>,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let (received_at, sha256, size) = evidence.computed(now);
        let id = self.id(
            INSERT_EVIDENCE,
            &[
                &received_at,
                &sha256,
                &size,
                &evidence.raw,
                &evidence.mail_from,
                &evidence.rcpt_to,
                &evidence.helo,
                &evidence.peer_ip,
            ],
        )?;
        let previous: Option<String> = self
            .tx
            .prepare_cached(LAST_LINK)?
            .query_row([], |row| row.get(0))
            .optional()?;
        let seal = Seal::new(id, received_at, sha256, evidence.envelope_sha256());
        let link = seal.link(previous.as_deref());
        self.tx.prepare_cached(INSERT_LINK)?.execute(
            named(&[
                &seal.id,
                &seal.received_at,
                &seal.sha256,
                &seal.envelope_sha256,
                &link,
            ])
            .as_slice(),
        )?;
        Ok(id)
    }

    async fn insert_event(&mut self, event: &NewEvent, now: Timestamp) -> Result<i64, StoreError> {
        self.id(
            INSERT_EVENT,
            &[
                &format_time(&event.occurred_at.unwrap_or(now)),
                &event.kind,
                &event.address,
                &event.address_hash.as_ref().map(AddressHash::as_str),
                &event.company,
                &event.brand,
                &event.reason,
                &event.class,
                &event.status,
                &event.reply_code,
                &event.diagnostic,
                &event.message_id,
                &i64::from(event.verified),
                &event.evidence_id,
                &event.source,
                &event.note,
                &event.rule,
            ],
        )
    }

    async fn in_force(
        &mut self,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        let hash = self.hasher.hash(&new.address);
        let (company, brand) = new.scope.columns();
        self.optional_id(
            IN_FORCE,
            &[
                &hash.as_str(),
                &new.channel.as_str(),
                &company,
                &brand,
                &new.reason.as_str(),
                &format_time(&now),
            ],
        )
    }

    async fn count_bounces(
        &mut self,
        hash: &AddressHash,
        class: &str,
        since: Timestamp,
        include_unverified: bool,
    ) -> Result<i64, StoreError> {
        self.id(
            COUNT_BOUNCES,
            &[
                &hash.as_str(),
                &class,
                &format_time(&since),
                &i64::from(include_unverified),
            ],
        )
    }

    async fn add(
        &mut self,
        new: &NewSuppression,
        now: Timestamp,
    ) -> Result<AddOutcome, StoreError> {
        let hash = self.hasher.hash(&new.address);
        let erased = self
            .tx
            .prepare_cached(&erased_among_sql(1))?
            .exists(named(&[&hash.as_str()]).as_slice())?;
        self.tx
            .prepare_cached(&expire_due_sql(1))?
            .execute(named(&[&format_time(&now), &hash.as_str()]).as_slice())?;
        let (company, brand) = new.scope.columns();
        let inserted = self.optional_id(
            &insert_one_sql(),
            &[
                &(!erased).then(|| new.address.as_given()),
                &hash.as_str(),
                &new.channel.as_str(),
                &company,
                &brand,
                &new.reason.as_str(),
                &new.source.as_str(),
                &new.note,
                &format_time(&new.created_at),
                &new.expires_at.as_ref().map(format_time),
                &new.evidence_id,
                &new.event_id,
                &new.created_by,
            ],
        )?;
        if let Some(id) = inserted {
            return Ok(AddOutcome::Added(id));
        }
        let id = self.in_force(new, now).await?.ok_or_else(|| {
            StoreError::Corrupt("a conflicting suppression vanished within its transaction".into())
        })?;
        Ok(AddOutcome::AlreadyActive(id))
    }
}
