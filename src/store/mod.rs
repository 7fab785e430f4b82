//! The suppression database: the only module with SQL.
//!
//! One code path for SQLite (embedded default) and PostgreSQL (shared by several instances), through
//! sqlx's `Any` driver; only the migrations differ per backend. Owns durability and the invariants
//! that must hold whoever writes: no duplicate active suppression, no plain address stored for an
//! erased hash, evidence append-only. Knows nothing of the decision rules (`policy`).

mod committer;
mod events;
mod evidence;
mod evidence_chain;
mod inbound;
mod listing;
mod people;
mod queue;
mod report;
mod retention;
mod reviews;
mod rows;
mod sends;
mod sqlite_reader;
mod sqlite_writer;
mod suppressions;
mod webhooks;

use std::path::Path;
use std::sync::Once;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyPool, Executor, Row, Transaction};

pub use committer::{Committer, PendingMail};
pub use events::{EventRecord, NewEvent};
pub use evidence::{EvidenceRecord, NewEvidence};
pub use evidence_chain::{ChainFault, ChainFinding, ChainHead, ChainReport, PurgeOutcome};
pub use inbound::{Escalation, InboundEvent, InboundOutcome, InboundRecord};
pub use listing::{EventFilter, SuppressionFilter};
pub use people::{ConsentOutcome, EraseOutcome, NewConsent};
pub use queue::{
    AttemptOutcome, BlockStage, BlockedRecord, Minted, Minter, NewBlocked, NewQueueItem,
    NewQueuedMessage, QueueAction, QueueEntry, QueueItem, QueueSummary, QueueTarget,
};
pub use report::{
    AddressHistory, ErasureRecord, HeldConsent, HeldEvent, HeldEvidence, HeldSend, HeldSuppression,
    Keep, KeepRule, LiftPath,
};
pub use retention::{PurgeCount, PurgePace, PurgeRule, RetentionCutoffs, RetentionDays};
pub use reviews::{HELD_UNSUBSCRIBE, ReviewDecision, ReviewOutcome};
pub use sends::{NewSend, SendRecord};
pub use suppressions::{AddOutcome, BatchOutcome, NewSuppression};
pub use webhooks::{OutboxItem, OutboxSummary, WebhookOutcome, WebhookSource};

use crate::address::EmailAddress;
use crate::secret::{AddressHash, AddressHasher, InstallationSecret, SecretFormatError};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

const SECRET_KEY: &str = "installation_secret";

/// The store failed; callers retry (`Database`) or report (the others).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the folder for the SQLite database {path}: {source}")]
    CreateFolder {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] MigrateError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is closed")]
    Closed,
    #[error("the database holds a value this version does not understand: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Secret(#[from] SecretFormatError),
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The suppression database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The one connection writes go through on a SQLite file (see `open`).
    write_pool: Option<AnyPool>,
    backend: Backend,
    secret: InstallationSecret,
    hasher: AddressHasher,
    /// Direct reads for decisions on a SQLite file (see `sqlite_reader`).
    sqlite_reader: Option<std::sync::Arc<sqlite_reader::SqliteReader>>,
    /// The received-mail writer on a SQLite file (see `sqlite_writer`).
    sqlite_writer: Option<std::sync::Arc<sqlite_writer::SqliteWriter>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects, applies pending migrations and loads (or creates) the installation secret.
    ///
    /// # Errors
    /// The URL is not SQLite or PostgreSQL, the database cannot be reached or migrated.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let (backend, url, sqlite_file) = prepare_url(url)?;
        let options = AnyPoolOptions::new().after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the writer; FULL syncs every commit, so what
                    // got a 250 survives a power cut, not only a crash. Keyed hashes land all
                    // over the indexes: a larger page cache and mmap keep the hot pages in
                    // memory instead of re-reading them through syscalls.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                             PRAGMA secure_delete = ON; PRAGMA journal_size_limit = 67108864; \
                             PRAGMA cache_size = -65536; PRAGMA mmap_size = 1073741824; \
                             PRAGMA temp_store = MEMORY;",
                    )
                    .await?;
                }
                Ok(())
            })
        });
        let pool = options
            .clone()
            .max_connections(max_connections.max(1))
            .connect(&url)
            .await
            .map_err(StoreError::Connect)?;
        // On a SQLite file the writers of this process queue for one connection, first come
        // first served, instead of in SQLite's busy handler, which sleeps in growing steps
        // (1, 2, 5, 10 … 100 ms) whenever another writer holds the lock.
        let write_pool = match &sqlite_file {
            Some(_) => Some(
                options
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .map_err(StoreError::Connect)?,
            ),
            None => None,
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await?;
        let secret = load_or_create_secret(&pool).await?;
        let store = Store {
            sqlite_reader: sqlite_file
                .as_ref()
                .map(|path| std::sync::Arc::new(sqlite_reader::SqliteReader::new(path))),
            sqlite_writer: sqlite_file
                .map(|path| std::sync::Arc::new(sqlite_writer::SqliteWriter::new(&path))),
            hasher: secret.address_hasher(),
            pool,
            write_pool,
            backend,
            secret,
        };
        store.seal_rows_before_the_chain().await?;
        if store.sqlite_writer.is_some() {
            spawn_checkpointer(store.pool.clone());
        }
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The installation secret (for tokens minted elsewhere).
    pub fn secret(&self) -> &InstallationSecret {
        &self.secret
    }

    /// The keyed hash under which `address` is stored.
    pub fn hash(&self, address: &EmailAddress) -> AddressHash {
        self.hasher.hash(address)
    }

    /// A hasher for bulk work.
    pub fn hasher(&self) -> &AddressHasher {
        &self.hasher
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        if let Some(writer) = &self.sqlite_writer {
            writer.close();
        }
        self.pool.close().await;
        if let Some(pool) = &self.write_pool {
            pool.close().await;
        }
    }

    /// The pool writes go through: the one write connection on a SQLite file, else the pool.
    fn writer(&self) -> &AnyPool {
        self.write_pool.as_ref().unwrap_or(&self.pool)
    }

    /// A write transaction. SQLite takes the write lock at once, so two writers queue on the busy
    /// timeout instead of failing on a lock upgrade.
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

/// How often the WAL is copied into the main file beside the writers. Each checkpoint syncs the
/// main file, and a received mail's commit that meets that sync waits: fewer, larger checkpoints
/// cost received mail less than many small ones (`benches/purge.sh`: 2 s beats 100 and 500 ms).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// WAL frames (4 KiB pages) past which the checkpointer starts the WAL over (1 GiB). A restart
/// holds writers back for tens of milliseconds: rare enough, it costs no percentile of received
/// mail (`benches/purge.sh`: at 64 MiB, every two seconds of a purge, p99 rose to 69 ms).
const RESTART_FRAMES: i64 = 262_144;

/// Copies the WAL into the main file on a reader connection, beside the writers, until the pool
/// closes. The received-mail writer does not checkpoint on commit (`sqlite_writer`), so neither a
/// received mail nor a purge batch waits for a checkpoint inside its commit; a passive checkpoint
/// waits for no one.
///
/// A passive checkpoint alone never lets the WAL start over while readers keep coming (`check`
/// under load holds some read snapshot at every moment): the file would grow without end (a
/// purge writes tens of MB a second). So when the WAL is past [`RESTART_FRAMES`] and the passive
/// checkpoint copied all of it, a `RESTART` checkpoint follows at once: it has only the frames of
/// the last moments to copy, waits for the readers of older snapshots (milliseconds), and the
/// next write starts the WAL from its beginning (`journal_size_limit` then cuts the file back).
fn spawn_checkpointer(pool: AnyPool) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if pool.is_closed() {
                return;
            }
            if let Err(error) = checkpoint(&pool).await {
                if pool.is_closed() {
                    return;
                }
                tracing::debug!(%error, "WAL checkpoint failed; trying again");
            }
        }
    });
}

async fn checkpoint(pool: &AnyPool) -> Result<(), StoreError> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    let (busy, log, copied): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if busy == 0 && log > RESTART_FRAMES && copied == log {
        sqlx::raw_sql("PRAGMA wal_checkpoint(RESTART)")
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Splits the backend off the URL; for SQLite, creates the folder, asks for the file to be created
/// and names the file (none for an in-memory database).
fn prepare_url(url: &str) -> Result<(Backend, String, Option<std::path::PathBuf>), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string(), None));
    }
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    };
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    }
    if path != ":memory:"
        && let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateFolder {
            path: parent.display().to_string(),
            source,
        })?;
    }
    let params = if params.split('&').any(|p| p.starts_with("mode=")) {
        params.to_string()
    } else if params.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{params}&mode=rwc")
    };
    let in_memory = path == ":memory:" || params.split('&').any(|p| p == "mode=memory");
    let file = (!in_memory).then(|| std::path::PathBuf::from(path));
    Ok((Backend::Sqlite, format!("sqlite://{path}?{params}"), file))
}

/// Several instances may start at once on one PostgreSQL: the first insert wins, all read it back.
impl StoreError {
    /// Whether the database answered that a table does not exist: its schema is gone (a dropped
    /// and re-created database), not a passing fault.
    pub fn is_missing_schema(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => {
                error.code().as_deref() == Some("42P01")
                    || error.message().contains("no such table")
            }
            StoreError::Sqlite(error) => error.to_string().contains("no such table"),
            _ => false,
        }
    }
}

impl Store {
    /// After `error`, if it says the schema is gone (the database was dropped and re-created
    /// under a running gateway): applies the migrations again and puts this instance's
    /// installation secret back, so tokens and hashes keep meaning what they meant. `true` when
    /// the schema is back and the write may be tried again.
    pub async fn repair_missing_schema(&self, error: &StoreError) -> bool {
        if !error.is_missing_schema() {
            return false;
        }
        tracing::error!(%error, "the database schema is gone (was the database dropped and re-created?); applying the migrations again");
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let repaired = async {
            migrator.run(&self.pool).await?;
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(SECRET_KEY)
            .bind(self.secret.to_hex())
            .execute(&self.pool)
            .await?;
            let stored = load_or_create_secret(&self.pool).await?;
            Ok::<bool, StoreError>(stored.to_hex() == self.secret.to_hex())
        }
        .await;
        match repaired {
            Ok(true) => {
                tracing::warn!(
                    "schema re-created and the installation secret restored; the store is writable again"
                );
                true
            }
            Ok(false) => {
                tracing::error!(
                    "schema re-created, but the database holds another installation secret (another instance set it): restart this instance to use it"
                );
                false
            }
            Err(error) => {
                tracing::error!(%error, "could not re-create the schema: restart the gateway once the database is back");
                false
            }
        }
    }
}

async fn load_or_create_secret(pool: &AnyPool) -> Result<InstallationSecret, StoreError> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(SECRET_KEY)
        .bind(InstallationSecret::generate().to_hex())
        .execute(pool)
        .await?;
    let row: AnyRow = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(SECRET_KEY)
        .fetch_one(pool)
        .await?;
    let value: String = row.try_get("value")?;
    Ok(InstallationSecret::from_hex(&value)?)
}

/// A query for the ids of due items, locked for this transaction where the backend can
/// (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so instances sharing a store claim different items;
/// SQLite has one writer at a time anyway).
pub(super) fn due_sql(backend: Backend, select: &str) -> String {
    match backend {
        Backend::Sqlite => select.to_string(),
        Backend::Postgres => format!("{select} FOR UPDATE SKIP LOCKED"),
    }
}

/// The ids a due query found, as an SQL list (`1, 2, 3`); `None` when it found none.
pub(super) async fn due_ids<'q>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
) -> Result<Option<String>, StoreError> {
    let ids: Vec<String> = query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| rows::int(row, "id").map(|id| id.to_string()))
        .collect::<Result<_, _>>()?;
    Ok((!ids.is_empty()).then(|| ids.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_their_folder_and_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/db.sqlite");
        let (backend, url, file) = prepare_url(&format!("sqlite://{}", path.display())).unwrap();
        assert_eq!(backend, Backend::Sqlite);
        assert_eq!(file.as_deref(), Some(path.as_path()));
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(path.parent().unwrap().is_dir());
        let (_, url, _) = prepare_url("sqlite://x.db?mode=ro").unwrap();
        assert_eq!(url, "sqlite://x.db?mode=ro");
        assert_eq!(
            prepare_url("postgres://u@h/db").unwrap().0,
            Backend::Postgres
        );
        assert!(matches!(
            prepare_url("mysql://x"),
            Err(StoreError::UnsupportedUrl(_))
        ));
    }
}
