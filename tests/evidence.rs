//! The evidence log is tamper-evident: the database refuses deletes and replaced rows outside the
//! purge, and what a database superuser does anyway shows in `evidence show` and
//! `evidence verify`; on SQLite and PostgreSQL.

mod common;

use bouncegate::store::{ChainFault, NewEvidence, Store};
use common::{bouncegate, databases, expect_exit, json, stdout, write_config};
use sqlx::{AnyConnection, Connection};

async fn raw_sql(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.unwrap()
}

/// Runs `sql`; whether the database took it.
async fn try_sql(conn: &mut AnyConnection, sql: &str) -> bool {
    sqlx::raw_sql(sql).execute(&mut *conn).await.is_ok()
}

#[tokio::test]
async fn evidence_cannot_be_swapped_unnoticed() {
    for db in databases().await {
        let config = write_config(&db, "");
        let store = Store::open(&db.url, 2).await.unwrap();
        let mut ids = Vec::new();
        for n in 1..=4 {
            let raw = format!("Subject: unsubscribe {n}\r\n\r\nPlease stop.\r\n");
            let evidence = NewEvidence {
                raw: raw.as_bytes(),
                mail_from: Some("reader@example.net"),
                rcpt_to: Some("unsubscribe-acme@bounces.example.org"),
                helo: Some("mx.example.net"),
                peer_ip: Some("192.0.2.7"),
                received_at: None,
            };
            ids.push(
                store
                    .store_evidence(&evidence, chrono::Utc::now())
                    .await
                    .unwrap(),
            );
        }
        let verify = bouncegate(&config, &["evidence", "verify", "--json"]);
        expect_exit(&verify, 0, "a fresh log verifies");
        let report = json(&verify);
        assert_eq!(report["checked"], 4, "{}: {report}", db.backend);
        assert_eq!(report["head"]["evidence_id"], ids[3]);

        // The database itself refuses the swaps an ordinary user could try.
        let mut conn = raw_sql(&db.url).await;
        let (a, b) = (ids[1], ids[2]);
        assert!(!try_sql(&mut conn, &format!("DELETE FROM evidence WHERE id = {a}")).await);
        assert!(
            !try_sql(
                &mut conn,
                &format!("UPDATE evidence SET raw = raw WHERE id = {a}")
            )
            .await
        );
        assert!(!try_sql(&mut conn, "DELETE FROM evidence_chain").await);
        assert!(!try_sql(&mut conn, "UPDATE evidence_chain SET link = 'x'").await);
        if db.backend == "sqlite" {
            let replace = format!(
                "INSERT OR REPLACE INTO evidence (id, received_at, sha256, size, raw) \
                 SELECT id, received_at, sha256, size, X'00' FROM evidence WHERE id = {a}"
            );
            assert!(
                !try_sql(&mut conn, &replace).await,
                "INSERT OR REPLACE is refused"
            );
        } else {
            assert!(!try_sql(&mut conn, "TRUNCATE evidence CASCADE").await);
            assert!(!try_sql(&mut conn, "TRUNCATE evidence_chain CASCADE").await);
        }
        let shown = bouncegate(&config, &["evidence", "show", &a.to_string()]);
        expect_exit(&shown, 0, "untouched");

        // A superuser can drop the triggers; then the log says what happened.
        let drop_triggers = if db.backend == "sqlite" {
            "DROP TRIGGER evidence_is_append_only; DROP TRIGGER evidence_delete_only_when_purged;"
        } else {
            "DROP TRIGGER evidence_is_append_only ON evidence; \
             DROP TRIGGER evidence_delete_only_when_purged ON evidence;"
        };
        sqlx::raw_sql(drop_triggers)
            .execute(&mut conn)
            .await
            .unwrap();
        let swap = format!(
            "UPDATE evidence SET raw = {} WHERE id = {a}",
            if db.backend == "sqlite" {
                "X'666f72676564'"
            } else {
                "'\\x666f72676564'::bytea"
            }
        );
        sqlx::raw_sql(&swap).execute(&mut conn).await.unwrap();
        sqlx::raw_sql(&format!("DELETE FROM evidence WHERE id = {b}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        let shown = bouncegate(&config, &["evidence", "show", &a.to_string()]);
        expect_exit(&shown, 2, "swapped bytes are refused");
        assert!(
            shown.stdout.is_empty(),
            "nothing of the swapped bytes is printed"
        );
        let stderr = String::from_utf8_lossy(&shown.stderr);
        assert!(stderr.contains("does not match the SHA-256"), "{stderr}");

        let verify = bouncegate(&config, &["evidence", "verify"]);
        expect_exit(&verify, 1, "a broken chain");
        let text = stdout(&verify);
        assert!(
            text.contains(&format!(
                "first at evidence {a}: its stored bytes are not the ones sealed"
            )),
            "{}: {text}",
            db.backend
        );
        let report = json(&bouncegate(&config, &["evidence", "verify", "--json"]));
        let faults: Vec<(i64, String)> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["evidence_id"].as_i64().unwrap(),
                    f["fault"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            faults,
            vec![
                (a, "bytes_changed".to_string()),
                (b, "deleted_without_tombstone".to_string())
            ],
            "{}",
            db.backend
        );
        assert_eq!(report["intact"], false);
        store.close().await;
    }
}

#[tokio::test]
async fn the_purge_leaves_a_tombstone_and_the_chain_verifies() {
    for db in databases().await {
        let store = Store::open(&db.url, 2).await.unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            let raw = format!("bounce {n}\r\n");
            let evidence = NewEvidence {
                raw: raw.as_bytes(),
                ..Default::default()
            };
            ids.push(
                store
                    .store_evidence(&evidence, chrono::Utc::now())
                    .await
                    .unwrap(),
            );
        }
        let outcome = store
            .purge_evidence(
                &[ids[0], ids[2]],
                "bounce mail older than 90 days",
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(outcome.purged, 2, "{}", db.backend);
        assert!(store.evidence(ids[0]).await.unwrap().is_none());
        let report = store.verify_evidence().await.unwrap();
        assert!(report.is_intact(), "{}: {report:?}", db.backend);
        assert_eq!((report.checked, report.purged), (3, 2));
        // A row written past the gateway (no seal) is a finding.
        let mut conn = raw_sql(&db.url).await;
        let blob = if db.backend == "sqlite" {
            "X'00'"
        } else {
            "'\\x00'::bytea"
        };
        sqlx::raw_sql(&format!(
            "INSERT INTO evidence (received_at, sha256, size, raw) VALUES ('2026-01-01T00:00:00.000000Z', 'x', 1, {blob})"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let report = store.verify_evidence().await.unwrap();
        assert_eq!(report.findings.len(), 1, "{}: {report:?}", db.backend);
        assert_eq!(report.findings[0].fault, ChainFault::NotSealed);
        store.close().await;
    }
}
