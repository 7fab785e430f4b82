//! The store and service on real SQLite and real PostgreSQL: the same body for both backends.

mod common;

use std::sync::Arc;

use bouncegate::config::Config;
use bouncegate::model::{Channel, ContactStatus, MailClass, Reason, Source};
use bouncegate::service::bulk::{self, Format};
use bouncegate::service::{CheckRequest, LiftRequest, SuppressRequest, SuppressionService};
use bouncegate::store::{NewEvidence, Store};
use common::{ORGANISATION, TestDb, databases};

async fn service(db: &TestDb) -> SuppressionService {
    let config = Config::parse(ORGANISATION, std::path::Path::new("test.toml")).expect("config");
    let store = Store::open(&db.url, 4)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.backend));
    SuppressionService::new(store, Arc::new(config))
}

fn promotional<'a>(company: &'a str, brand: Option<&'a str>) -> CheckRequest<'a> {
    CheckRequest {
        company,
        brand,
        class: MailClass::Promotional,
        channel: Channel::Email,
    }
}

fn request(
    address: &str,
    reason: Reason,
    company: Option<&str>,
    brand: Option<&str>,
) -> SuppressRequest {
    SuppressRequest {
        address: address.into(),
        reason,
        company: company.map(Into::into),
        brand: brand.map(Into::into),
        channel: Channel::Email,
        note: Some("test".into()),
        source: Source::Api,
        created_at: None,
        created_by: None,
        expires_at: None,
    }
}

#[tokio::test]
async fn the_same_suppression_twice_is_one_row() {
    for db in databases().await {
        let service = service(&db).await;
        let first = service
            .suppress(&request(
                "Jane@Example.org",
                Reason::Unsubscribe,
                Some("acme"),
                None,
            ))
            .await
            .unwrap();
        let second = service
            .suppress(&request(
                "jane@EXAMPLE.org",
                Reason::Unsubscribe,
                Some("acme"),
                None,
            ))
            .await
            .unwrap();
        assert!(first.added, "{}", db.backend);
        assert!(!second.added, "{}", db.backend);
        assert_eq!(second.id, first.id, "{}", db.backend);
        let status = service.status("jane@example.org").await.unwrap();
        assert_eq!(status.suppressions.len(), 1, "{}", db.backend);
        assert_eq!(
            status.suppressions[0].address.as_deref(),
            Some("Jane@Example.org")
        );
    }
}

#[tokio::test]
async fn decisions_follow_scope_reason_and_class() {
    for db in databases().await {
        let service = service(&db).await;
        service
            .suppress(&request(
                "brand@example.org",
                Reason::Unsubscribe,
                Some("acme"),
                Some("news"),
            ))
            .await
            .unwrap();
        service
            .suppress(&request(
                "complained@example.org",
                Reason::Complaint,
                Some("acme"),
                None,
            ))
            .await
            .unwrap();
        service
            .suppress(&request("dead@example.org", Reason::HardBounce, None, None))
            .await
            .unwrap();
        for (address, company, brand, allowed) in [
            ("brand@example.org", "acme", Some("news"), false),
            ("brand@example.org", "acme", Some("shop"), true),
            ("complained@example.org", "acme", Some("shop"), false),
            ("complained@example.org", "globex", Some("weekly"), true),
            ("dead@example.org", "globex", None, false),
            ("fresh@example.org", "acme", Some("news"), true),
        ] {
            let verdict = service
                .check(address, promotional(company, brand))
                .await
                .unwrap();
            assert_eq!(
                verdict.allowed, allowed,
                "{}: {address} {company}/{brand:?}",
                db.backend
            );
            let service_mail = CheckRequest {
                class: MailClass::Service,
                ..promotional(company, brand)
            };
            assert!(
                service.check(address, service_mail).await.unwrap().allowed,
                "service mail passes"
            );
        }
        assert!(
            service
                .check("x@example.org", promotional("nope", None))
                .await
                .is_err()
        );
        assert!(
            service
                .check("x@example.org", promotional("acme", Some("weekly")))
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn staff_lift_bounces_but_only_the_owner_lifts_an_opt_out() {
    for db in databases().await {
        let service = service(&db).await;
        service
            .suppress(&request("jane@example.org", Reason::HardBounce, None, None))
            .await
            .unwrap();
        service
            .suppress(&request(
                "jane@example.org",
                Reason::Unsubscribe,
                Some("acme"),
                None,
            ))
            .await
            .unwrap();
        let lift = LiftRequest {
            lifted_by: "test".into(),
            ..Default::default()
        };
        let report = service.lift("jane@example.org", &lift).await.unwrap();
        assert_eq!(report.lifted.len(), 1, "{}", db.backend);
        assert_eq!(report.lifted[0].reason, Reason::HardBounce);
        assert_eq!(report.refused.len(), 1);
        let verdict = service
            .check("jane@example.org", promotional("acme", None))
            .await
            .unwrap();
        assert!(!verdict.allowed, "the unsubscribe still stands");
        assert_eq!(verdict.status, ContactStatus::Unsubscribed);

        let outcome = service
            .consent(&common::consent("jane@example.org", "acme", b"confirmed"))
            .await
            .unwrap();
        assert_eq!(outcome.lifted.len(), 1, "{}", db.backend);
        let verdict = service
            .check("jane@example.org", promotional("acme", Some("news")))
            .await
            .unwrap();
        assert!(verdict.allowed, "{}: {verdict:?}", db.backend);
        assert_eq!(verdict.status, ContactStatus::Active);
    }
}

#[tokio::test]
async fn erasure_removes_the_plain_text_and_keeps_the_block() {
    for db in databases().await {
        let service = service(&db).await;
        service
            .suppress(&request(
                "erase.me@example.org",
                Reason::Unsubscribe,
                Some("acme"),
                None,
            ))
            .await
            .unwrap();
        service
            .consent(&common::consent("erase.me@example.org", "globex", b"proof"))
            .await
            .unwrap();
        let address = bouncegate::address::EmailAddress::parse("erase.me@example.org").unwrap();
        assert!(service.store().plain_text_rows(&address).await.unwrap() > 0);
        service
            .erase(&common::erasure("Erase.Me@example.org"), "test")
            .await
            .unwrap();
        assert_eq!(
            service.store().plain_text_rows(&address).await.unwrap(),
            0,
            "{}",
            db.backend
        );

        let verdict = service
            .check("erase.me@example.org", promotional("acme", None))
            .await
            .unwrap();
        assert!(!verdict.allowed);
        assert_eq!(verdict.status, ContactStatus::Deleted);

        // A re-import of an old list neither revives the address nor brings its plain text back.
        let csv = "email,reason,company\nerase.me@example.org,unsubscribe,acme\nerase.me@example.org,manual,globex\n";
        let report = bulk::import(&service, csv.as_bytes(), Format::Csv, &())
            .await
            .unwrap();
        assert_eq!(
            report.rejected, 1,
            "manual without note: {:?}",
            report.errors
        );
        assert_eq!(report.unchanged, 1);
        assert_eq!(
            service.store().plain_text_rows(&address).await.unwrap(),
            0,
            "{}",
            db.backend
        );
        let status = service.status("erase.me@example.org").await.unwrap();
        assert!(
            status
                .companies
                .iter()
                .all(|c| c.status == ContactStatus::Deleted),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn import_keeps_good_rows_reports_bad_ones_and_is_idempotent() {
    for db in databases().await {
        let service = service(&db).await;
        let csv = "email;reason;company;brand;channel;note;created_at\n\
                   a@example.org;unsubscribe;acme;news;;;2025-03-01\n\
                   broken;unsubscribe;acme;;;;\n\
                   b@example.org;hard_bounce;;;;;2025-03-02T10:00:00Z\n\
                   c@example.org;bogus;;;;;\n\
                   d@example.org;manual;globex;;postal;letter shop list 2025;\n\
                   e@example.org;hard_bounce;acme;;;;\n";
        let first = bulk::import(&service, csv.as_bytes(), Format::Csv, &())
            .await
            .unwrap();
        assert_eq!(
            (first.rows, first.added, first.rejected),
            (6, 3, 3),
            "{}: {first:?}",
            db.backend
        );
        let lines: Vec<u64> = first.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 5, 7], "{:?}", first.errors);
        assert!(
            first.errors[2].message.contains("global"),
            "{:?}",
            first.errors[2]
        );

        let again = bulk::import(&service, csv.as_bytes(), Format::Csv, &())
            .await
            .unwrap();
        assert_eq!((again.added, again.unchanged), (0, 3), "{}", db.backend);

        let status = service.status("b@example.org").await.unwrap();
        assert_eq!(status.suppressions.len(), 1);
        assert_eq!(
            bouncegate::model::format_time(&status.suppressions[0].created_at),
            "2025-03-02T10:00:00.000000Z"
        );
        let by_post = CheckRequest {
            channel: Channel::Postal,
            ..promotional("globex", None)
        };
        assert!(
            !service
                .check("d@example.org", by_post)
                .await
                .unwrap()
                .allowed
        );
        assert!(
            service
                .check("d@example.org", promotional("globex", None))
                .await
                .unwrap()
                .allowed
        );

        // The export imports again and changes nothing.
        let mut exported = Vec::new();
        bulk::export(&service, &mut exported, Format::Jsonl, false)
            .await
            .unwrap();
        let report = bulk::import(&service, exported.as_slice(), Format::Jsonl, &())
            .await
            .unwrap();
        assert_eq!(
            (report.rows, report.added, report.unchanged),
            (3, 0, 3),
            "{report:?}"
        );
    }
}

#[tokio::test]
async fn filter_keeps_the_sendable_entries_of_a_csv_list() {
    for db in databases().await {
        let service = service(&db).await;
        service
            .suppress(&request(
                "gone@example.org",
                Reason::Unsubscribe,
                Some("acme"),
                None,
            ))
            .await
            .unwrap();
        let list = "name,Email,city\nAnna,anna@example.org,Berlin\nGone,GONE@example.org,Wien\nBad,not-an-address,Bern\n";
        let (mut sendable, mut rejected) = (Vec::new(), Vec::new());
        let report = bulk::filter(
            &service,
            list.as_bytes(),
            promotional("acme", Some("news")),
            &mut sendable,
            Some(&mut rejected),
            &(),
        )
        .await
        .unwrap();
        assert_eq!(
            (report.read, report.sendable, report.rejected),
            (3, 1, 2),
            "{}",
            db.backend
        );
        assert_eq!(
            String::from_utf8(sendable).unwrap(),
            "name,Email,city\nAnna,anna@example.org,Berlin\n"
        );
        let rejected = String::from_utf8(rejected).unwrap();
        assert!(
            rejected.starts_with("name,Email,city,reason\n"),
            "{rejected}"
        );
        assert!(
            rejected.contains("Gone,GONE@example.org,Wien,unsubscribe (company:acme)"),
            "{rejected}"
        );
        assert!(
            rejected.contains("Bad,not-an-address,Bern,invalid address"),
            "{rejected}"
        );
    }
}

#[tokio::test]
async fn evidence_comes_back_byte_for_byte_and_the_secret_survives_a_restart() {
    for db in databases().await {
        let raw: Vec<u8> = b"From: a@example.org\r\nSubject: =?utf-8?q?Abmelden?=\r\n\r\nbitte \xff\x00 abmelden\r\n.\r\n".to_vec();
        let id = {
            let service = service(&db).await;
            service
                .suppress(&request("kept@example.org", Reason::HardBounce, None, None))
                .await
                .unwrap();
            let evidence = NewEvidence {
                raw: &raw,
                mail_from: Some("a@example.org"),
                rcpt_to: Some("unsubscribe-acme@bounces.example.org"),
                helo: Some("mx.example.org"),
                peer_ip: Some("192.0.2.1"),
                received_at: None,
            };
            let id = service
                .store()
                .store_evidence(&evidence, chrono::Utc::now())
                .await
                .unwrap();
            service.store().close().await;
            id
        };
        let service = service(&db).await;
        let evidence = service.evidence(id).await.unwrap().expect("stored");
        assert_eq!(evidence.raw, raw, "{}", db.backend);
        assert_eq!(evidence.sha256, sha256_hex(&raw));
        assert_eq!(evidence.peer_ip.as_deref(), Some("192.0.2.1"));
        assert!(service.evidence(id + 1000).await.unwrap().is_none());
        // Same installation secret after reopening: the keyed hash still finds the block.
        let verdict = service
            .check("kept@example.org", promotional("acme", None))
            .await
            .unwrap();
        assert!(!verdict.allowed, "{}", db.backend);
    }
}

#[tokio::test]
async fn an_expired_suppression_stops_blocking_and_can_be_renewed() {
    for db in databases().await {
        let service = service(&db).await;
        let past = chrono::Utc::now() - chrono::Duration::days(1);
        let mut expired = request("soft@example.org", Reason::SoftBounce, None, None);
        expired.created_at = Some(past - chrono::Duration::days(30));
        expired.expires_at = Some(past);
        let first = service.suppress(&expired).await.unwrap();
        assert!(
            service
                .check("soft@example.org", promotional("acme", None))
                .await
                .unwrap()
                .allowed
        );
        let renewed = service
            .suppress(&request("soft@example.org", Reason::SoftBounce, None, None))
            .await
            .unwrap();
        assert!(
            renewed.added && renewed.id != first.id,
            "{}: {renewed:?}",
            db.backend
        );
        assert!(
            !service
                .check("soft@example.org", promotional("acme", None))
                .await
                .unwrap()
                .allowed
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A bracketed Message-ID and a bare one are one message: a bounce quoting either finds the send.
#[tokio::test]
async fn send_records_match_message_ids_with_or_without_brackets() {
    use bouncegate::address::EmailAddress;
    use bouncegate::store::NewSend;
    for db in databases().await {
        let service = service(&db).await;
        let store = service.store();
        for (recorded, asked) in [
            ("<n1@acme.example>", "n1@acme.example"),
            ("n2@acme.example", "<n2@acme.example>"),
            (" <n3@acme.example> ", "n3@acme.example"),
        ] {
            store
                .record_send(&NewSend {
                    address: EmailAddress::parse("reader@example.net").unwrap(),
                    company: "acme".into(),
                    brand: None,
                    class: MailClass::Promotional,
                    message_id: recorded.into(),
                    sent_at: chrono::Utc::now(),
                })
                .await
                .unwrap();
            let sends = store.sends_of_message(asked).await.unwrap();
            assert_eq!(sends.len(), 1, "{}: {recorded} / {asked}", db.backend);
            assert_eq!(sends[0].message_id, asked.trim().trim_matches(['<', '>']));
        }
    }
}

/// A lease that ran out puts the item back for another worker, and the first worker can no
/// longer settle it: nothing is lost, nothing is settled twice.
#[tokio::test]
async fn an_expired_lease_puts_the_item_back_and_only_its_holder_settles() {
    use bouncegate::address::EmailAddress;
    use bouncegate::store::{AttemptOutcome, Minted, NewQueueItem, NewQueuedMessage};
    for db in databases().await {
        let service = service(&db).await;
        let store = service.store();
        let now = chrono::Utc::now();
        let message = NewQueuedMessage {
            raw: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
            client: "test".into(),
            message_id: "<lease@acme.example>".into(),
            received_at: now,
            items: vec![NewQueueItem {
                recipient: EmailAddress::parse("lease@example.net").unwrap(),
                company: "acme".into(),
                brand: Some("news".into()),
                class: MailClass::Promotional,
            }],
            blocked: Vec::new(),
        };
        let mint = |_: i64, _: &NewQueueItem, _: &str, _: &str, _| Minted {
            return_path: "b+x@bounces.example.org".into(),
            unsubscribe_token: None,
        };
        store
            .enqueue(std::slice::from_ref(&message), &mint)
            .await
            .unwrap();
        let short = now + chrono::Duration::milliseconds(1);
        let first = store.claim_due("one", 10, now, short).await.unwrap();
        assert_eq!(first.len(), 1, "{}", db.backend);
        assert_eq!(first[0].raw, message.raw);
        let during = store
            .claim_due("two", 10, now, now + chrono::Duration::minutes(5))
            .await
            .unwrap();
        assert!(during.is_empty(), "{}: leased, not claimable", db.backend);
        let later = now + chrono::Duration::seconds(1);
        let second = store
            .claim_due("two", 10, later, later + chrono::Duration::minutes(5))
            .await
            .unwrap();
        assert_eq!(second.len(), 1, "{}: the lease ran out", db.backend);
        let late = store
            .settle(&[(&first[0], AttemptOutcome::Delivered)], "one", later)
            .await
            .unwrap();
        assert_eq!(late, 0, "{}: the old holder settles nothing", db.backend);
        let settled = store
            .settle(&[(&second[0], AttemptOutcome::Delivered)], "two", later)
            .await
            .unwrap();
        assert_eq!(settled, 1);
        let summary = store.queue_summary().await.unwrap();
        assert_eq!(
            (summary.delivered, summary.queued),
            (1, 0),
            "{}",
            db.backend
        );
    }
}
