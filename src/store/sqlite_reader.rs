//! The SQLite read path for decisions and for the send records a received bounce is checked
//! against: read-only rusqlite connections, queried in place.
//!
//! sqlx runs every SQLite statement on a worker thread; on this class of machine that hop alone
//! costs ~100 µs at the median and ~250 µs at p99, more than a whole `check` may take. An indexed
//! lookup in SQLite itself takes a few µs, and WAL readers never wait for the writer, so decisions
//! read here directly. Writes, transactions and migrations stay with sqlx.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::sends::{self, SendRecord};
use super::suppressions::{add_record_row, records_query};
use crate::model::AddressRecords;
use crate::secret::AddressHash;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;

pub(super) struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let connection = Connection::open_with_flags(&self.path, flags)?;
                connection.busy_timeout(std::time::Duration::from_secs(10))?;
                connection.set_prepared_statement_cache_capacity(16);
                connection
                    .execute_batch("PRAGMA cache_size = -16384; PRAGMA mmap_size = 1073741824;")?;
                connection
            }
        };
        let result = f(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        result
    }

    pub(super) fn records(&self, hash: &AddressHash) -> Result<AddressRecords, StoreError> {
        self.with_connection(|connection| {
            let mut statement = connection.prepare_cached(&records_query("= $1"))?;
            let mut rows = statement.query([hash.as_str()])?;
            let mut records = AddressRecords::default();
            while let Some(row) = rows.next()? {
                add_record_row(&mut records, row)?;
            }
            Ok(records)
        })
    }

    pub(super) fn send(&self, id: i64) -> Result<Option<SendRecord>, StoreError> {
        self.with_connection(|connection| {
            let mut statement = connection.prepare_cached(sends::BY_ID)?;
            let mut rows = statement.query([id])?;
            rows.next()?.map(sends::record).transpose()
        })
    }

    pub(super) fn sends_of_message(&self, message_id: &str) -> Result<Vec<SendRecord>, StoreError> {
        self.with_connection(|connection| {
            let mut statement = connection.prepare_cached(sends::BY_MESSAGE)?;
            let mut rows = statement.query([message_id])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                found.push(sends::record(row)?);
            }
            Ok(found)
        })
    }

    pub(super) fn records_many(
        &self,
        hashes: &[AddressHash],
        map: &mut HashMap<AddressHash, AddressRecords>,
    ) -> Result<(), StoreError> {
        self.with_connection(|connection| {
            let matcher = format!("IN ({})", super::rows::placeholders(1, hashes.len()));
            let mut statement = connection.prepare_cached(&records_query(&matcher))?;
            let mut rows = statement.query(rusqlite::params_from_iter(
                hashes.iter().map(AddressHash::as_str),
            ))?;
            while let Some(row) = rows.next()? {
                let hash = AddressHash::from_stored(super::rows::text(row, "address_hash")?);
                add_record_row(map.entry(hash).or_default(), row)?;
            }
            Ok(())
        })
    }
}
