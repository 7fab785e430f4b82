//! Erasure that really erases: after `erase`, no table names the address, and on SQLite neither
//! the database file nor its WAL holds its bytes; the proof of a standing opt-out stays when the
//! operator keeps it. The address's footprint is made through the real gateway: a relayed mail,
//! its bounce to the VERP return path, an unsubscribe mail, a staff note and a consent.

mod common;

use bouncegate::model::{Channel, Reason};
use common::{TestDb, databases};
use sqlx::{AnyConnection, Column, Connection, Row};

use common::gateway::Running;

async fn start(db: &TestDb, keep_opt_out_evidence: bool) -> Running {
    common::gateway::start(
        db,
        &format!("[erasure]\nkeep_opt_out_evidence = {keep_opt_out_evidence}\n"),
    )
    .await
}

/// Rows of every table that hold `needle` in any text or binary column.
async fn rows_naming(url: &str, needle: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let mut found = Vec::new();
    for table in [
        "suppressions",
        "events",
        "consents",
        "sends",
        "evidence",
        "evidence_chain",
        "evidence_tombstones",
        "erasures",
        "queue",
        "queue_messages",
        "blocked",
        "reviews",
    ] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for row in rows {
            for column in row.columns() {
                let i = column.ordinal();
                let text = row
                    .try_get::<Option<String>, _>(i)
                    .ok()
                    .flatten()
                    .or_else(|| {
                        row.try_get::<Option<Vec<u8>>, _>(i)
                            .ok()
                            .flatten()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    })
                    .unwrap_or_default();
                if text.to_lowercase().contains(needle) {
                    found.push(format!("{table}.{}", column.name()));
                }
            }
        }
    }
    conn.close().await.unwrap();
    found
}

#[tokio::test]
async fn an_erased_address_is_gone_from_every_table_and_file_and_stays_blocked() {
    for db in databases().await {
        let running = start(&db, false).await;
        let (gateway, service) = (&running.gateway, &running.service);
        let address = "anna.erase@example.org";
        running.footprint(address).await;
        assert!(
            !rows_naming(&db.url, address).await.is_empty(),
            "the footprint is there"
        );

        let outcome = service
            .erase(&common::erasure("Anna.Erase@Example.org"), "test")
            .await
            .unwrap()
            .outcome;
        assert!(outcome.evidence_purged >= 2, "{}: {outcome:?}", db.backend);
        let left = rows_naming(&db.url, address).await;
        assert!(left.is_empty(), "{}: still named in {left:?}", db.backend);
        let verdict = service
            .check(
                address,
                bouncegate::service::CheckRequest {
                    company: "acme",
                    brand: Some("news"),
                    class: bouncegate::model::MailClass::Promotional,
                    channel: Channel::Email,
                },
            )
            .await
            .unwrap();
        assert!(!verdict.allowed, "still blocked");
        assert!(gateway.store.verify_evidence().await.unwrap().is_intact());
        if db.backend == "sqlite" {
            let file = db.path("bouncegate.db");
            for path in [
                file.clone(),
                file.with_extension("db-wal"),
                file.with_extension("db-journal"),
            ] {
                let bytes = std::fs::read(&path).unwrap_or_default();
                let lower = String::from_utf8_lossy(&bytes).to_lowercase();
                assert!(
                    !lower.contains(address),
                    "{} still holds the address",
                    path.display()
                );
            }
        }
        running.stop().await;
    }
}

#[tokio::test]
async fn the_proof_of_a_standing_opt_out_is_kept_when_the_operator_keeps_it() {
    for db in databases().await {
        let running = start(&db, true).await;
        let (gateway, service) = (&running.gateway, &running.service);
        let address = "ben.keep@example.org";
        running.footprint(address).await;
        let outcome = service
            .erase(&common::erasure(address), "test")
            .await
            .unwrap()
            .outcome;
        assert_eq!(
            outcome.evidence_purged, 1,
            "{}: the bounce mail only",
            db.backend
        );
        let left = rows_naming(&db.url, address).await;
        assert!(
            !left.is_empty() && left.iter().all(|place| place.starts_with("evidence.")),
            "{}: only the kept proof names it: {left:?}",
            db.backend
        );
        let status = service.status(address).await.unwrap();
        let proof = status
            .suppressions
            .iter()
            .find(|s| s.reason == Reason::Unsubscribe)
            .and_then(|s| s.evidence_id)
            .expect("the opt-out keeps its proof");
        assert!(service.evidence(proof).await.unwrap().is_some());
        assert!(gateway.store.verify_evidence().await.unwrap().is_intact());
        running.stop().await;
    }
}
