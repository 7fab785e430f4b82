//! A database written by an earlier release migrates without losing or renumbering a row: the
//! SQLite migration that rebuilds `suppressions` (to allow source `staff`) keeps every
//! suppression, the staff reviews that point at them, and the id sequence past purged rows.

use bouncegate::store::Store;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Executor, Row};

/// id, address, source, note, created_by.
type SuppressionRow = (i64, String, String, Option<String>, Option<String>);

/// The first migration this test's database must not have when it is written.
const REBUILD: i64 = 20261202000001;

#[tokio::test]
async fn the_suppressions_rebuild_keeps_rows_reviews_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");

    // The schema as the release before the rebuild left it.
    let mut migrator = Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/sqlite"
    )))
    .await
    .unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version < REBUILD)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true),
        )
        .await
        .unwrap();
    migrator.run(&pool).await.unwrap();
    pool.execute(
        "INSERT INTO events (id, occurred_at, kind, address_hash) VALUES (7, '2026-11-01T00:00:00.000000Z', 'unsubscribe_held', 'h1');
         INSERT INTO suppressions (id, address, address_hash, reason, source, note, created_at, created_by)
             VALUES (1, 'a@example.org', 'h1', 'unsubscribe', 'unsubscribe_mail', NULL, '2026-11-01T00:00:00.000000Z', NULL),
                    (2, 'b@example.org', 'h2', 'manual', 'api', 'letter of 2 Nov', '2026-11-02T00:00:00.000000Z', 'token:crm'),
                    (3, 'c@example.org', 'h3', 'hard_bounce', 'dsn', NULL, '2026-11-03T00:00:00.000000Z', NULL);
         INSERT INTO reviews (event_id, decided_at, decided_by, decision, note, suppression_id)
             VALUES (7, '2026-11-02T00:00:00.000000Z', 'cli:ops', 'accepted', 'checked by phone', 1);
         DELETE FROM suppressions WHERE id = 3;",
    )
    .await
    .unwrap();
    // The old CHECK refuses the new source.
    assert!(
        pool.execute(
            "INSERT INTO suppressions (address_hash, reason, source, note, created_at)
             VALUES ('h4', 'manual', 'staff', 'x', '2026-11-04T00:00:00.000000Z')"
        )
        .await
        .is_err()
    );
    pool.close().await;

    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url, 2).await.unwrap();
    drop(store);

    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .foreign_keys(true),
        )
        .await
        .unwrap();
    let rows =
        sqlx::query("SELECT id, address, source, note, created_by FROM suppressions ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let rows: Vec<SuppressionRow> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                1,
                "a@example.org".into(),
                "unsubscribe_mail".into(),
                None,
                None
            ),
            (
                2,
                "b@example.org".into(),
                "api".into(),
                Some("letter of 2 Nov".into()),
                Some("token:crm".into())
            ),
        ]
    );
    let review: (i64, i64) = sqlx::query_as("SELECT event_id, suppression_id FROM reviews")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(review, (7, 1));
    // The new source is accepted, and the purged id 3 is not handed out again.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO suppressions (address_hash, reason, source, note, created_at, created_by)
         VALUES ('h4', 'manual', 'staff', 'letter', '2026-11-04T00:00:00.000000Z', 'staff:emil') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(id, 4);
    // Foreign keys still hold and the unique index is back.
    let violations: Vec<sqlx::sqlite::SqliteRow> = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(violations.is_empty());
    assert!(
        pool.execute(
            "INSERT INTO suppressions (address, address_hash, reason, source, created_at)
             VALUES ('a@example.org', 'h1', 'unsubscribe', 'one_click', '2026-11-05T00:00:00.000000Z')"
        )
        .await
        .is_err(),
        "a second standing unsubscribe for the same address and scope is refused"
    );
}
