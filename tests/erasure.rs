//! Erasure that really erases: after `erase`, no table names the address, and on SQLite neither
//! the database file nor its WAL holds its bytes; the proof of a standing opt-out stays when the
//! operator keeps it. The address's footprint is made through the real gateway: a relayed mail,
//! its bounce to the VERP return path, an unsubscribe mail, a staff note and a consent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bouncegate::config::Config;
use bouncegate::model::{Channel, Reason, Source};
use bouncegate::serve::Gateway;
use bouncegate::service::{SuppressRequest, SuppressionService};
use bouncegate::smtp::{ListenerConfig, ServerHandle, SmtpServer};
use common::{ORGANISATION, TestDb, databases};
use sqlx::{AnyConnection, Column, Connection, Row};

const DOMAIN: &str = "bounces.example.org";

use common::Recorder;

fn config(db: &TestDb, upstream: u16, keep: bool) -> Arc<Config> {
    let text = format!(
        "[database]\nurl = {:?}\n[erasure]\nkeep_opt_out_evidence = {keep}\n\
         [inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\ndns_resolver = \"127.0.0.1:9\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[relay]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:{upstream}\"\n\
         [[relay.clients]]\nuser = \"news\"\npassword = \"s3cret\"\ncompany = \"acme\"\nbrands = [\"news\"]\n\
         {ORGANISATION}",
        db.url
    );
    Arc::new(Config::parse(&text, std::path::Path::new("erasure.toml")).unwrap())
}

/// A recording upstream and a gateway relaying to it.
async fn start(
    db: &TestDb,
    keep_opt_out_evidence: bool,
) -> (ServerHandle, Arc<Recorder>, Gateway, SuppressionService) {
    let recorder = Arc::new(Recorder::default());
    let upstream = SmtpServer::bind(
        ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "upstream.test"),
        recorder.clone(),
    )
    .await
    .unwrap()
    .spawn();
    let config = config(db, upstream.local_addr().port(), keep_opt_out_evidence);
    let gateway = Gateway::start(config.clone()).await.unwrap();
    let service = SuppressionService::new(gateway.store.clone(), config);
    (upstream, recorder, gateway, service)
}

/// Gives `address` a footprint everywhere; returns how many evidence rows name it.
async fn footprint(
    gateway: &Gateway,
    service: &SuppressionService,
    recorder: &Recorder,
    address: &str,
) {
    let relay = gateway.relay.local_addr();
    let mail = format!(
        "From: news@acme.example\r\nTo: {address}\r\nSubject: News\r\nMessage-ID: <n-{address}>\r\n\
         X-Bouncegate-Brand: news\r\n\r\nHello {address}.\r\n"
    );
    let reply = common::smtp::transaction(
        relay,
        Some(("news", "s3cret")),
        "news@acme.example",
        address,
        &mail,
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let return_path = loop {
        let found = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|m| m.rcpt_to[0].address == address)
            .map(|m| m.mail_from.address.clone());
        if let Some(path) = found {
            break path;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Its mailbox was full once: a soft bounce to the VERP return path, kept as evidence.
    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: Delivery failure\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n<{address}>: mailbox full\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 4.2.2\r\n\
         Diagnostic-Code: smtp; 452 4.2.2 <{address}> mailbox full\r\n\r\n--B--\r\n"
    );
    let reply =
        common::smtp::transaction(gateway.inbound.local_addr(), None, "", &return_path, &dsn).await;
    assert!(reply.starts_with("250"), "{reply}");
    // It asked to be unsubscribed, by mail.
    let unsubscribe = format!(
        "From: {address}\r\nTo: unsubscribe-acme@{DOMAIN}\r\nSubject: stop\r\n\r\nPlease remove {address}.\r\n"
    );
    let reply = common::smtp::transaction(
        gateway.inbound.local_addr(),
        None,
        address,
        &format!("unsubscribe-acme@{DOMAIN}"),
        &unsubscribe,
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    // Staff wrote about it; it opted in again for another company, with a proof naming it.
    let note = format!("phoned: {address} wants no letters");
    service
        .suppress(&SuppressRequest {
            address: address.into(),
            reason: Reason::Manual,
            company: Some("globex".into()),
            brand: None,
            channel: Channel::Postal,
            note: Some(note),
            source: Source::Cli,
            created_at: None,
            expires_at: None,
        })
        .await
        .unwrap();
    service
        .consent(&common::consent(
            address,
            "globex",
            format!("double opt-in confirmed by {address}").as_bytes(),
        ))
        .await
        .unwrap();
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
        let (upstream, recorder, gateway, service) = start(&db, false).await;
        let address = "anna.erase@example.org";
        footprint(&gateway, &service, &recorder, address).await;
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
            for path in [file.clone(), file.with_extension("db-wal")] {
                let bytes = std::fs::read(&path).unwrap_or_default();
                let lower = String::from_utf8_lossy(&bytes).to_lowercase();
                assert!(
                    !lower.contains(address),
                    "{} still holds the address",
                    path.display()
                );
            }
        }
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

#[tokio::test]
async fn the_proof_of_a_standing_opt_out_is_kept_when_the_operator_keeps_it() {
    for db in databases().await {
        let (upstream, recorder, gateway, service) = start(&db, true).await;
        let address = "ben.keep@example.org";
        footprint(&gateway, &service, &recorder, address).await;
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
        gateway.stop().await;
        upstream.shutdown().await;
    }
}
