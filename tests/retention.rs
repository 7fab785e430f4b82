//! The retention purge removes what `[retention]` says and nothing else: a table of reasons ×
//! ages × states, written through the store as the gateway writes them (back-dated), purged at
//! today's date on SQLite and PostgreSQL. The proof of every standing opt-out and complaint stays,
//! whatever its age; a dry run changes nothing and counts what the real run removes.

mod common;

use std::sync::Arc;

use bouncegate::address::EmailAddress;
use bouncegate::config::Config;
use bouncegate::model::{Channel, MailClass, Reason, Scope, Source, Timestamp};
use bouncegate::service::{SuppressRequest, SuppressionService};
use bouncegate::store::{
    Escalation, InboundEvent, InboundRecord, NewEvent, NewEvidence, NewSend, NewSuppression,
    PurgeRule, Store,
};
use chrono::{Duration, Utc};
use common::{ORGANISATION, TestDb, databases};
use sqlx::{AnyConnection, Connection, Row};

/// What one row of the table writes and what must be left of it after one purge.
struct Case {
    name: &'static str,
    /// The mail's event kind: bounce, auto_reply, unsubscribe, complaint, unsubscribe_held.
    kind: &'static str,
    reason: Option<Reason>,
    channel: Channel,
    received_days_ago: i64,
    lifted_days_ago: Option<i64>,
    expired_days_ago: Option<i64>,
    keeps_evidence: bool,
    keeps_event: bool,
    keeps_suppression: bool,
}

const fn case(
    name: &'static str,
    kind: &'static str,
    reason: Option<Reason>,
    received_days_ago: i64,
) -> Case {
    Case {
        name,
        kind,
        reason,
        channel: Channel::Email,
        received_days_ago,
        lifted_days_ago: None,
        expired_days_ago: None,
        keeps_evidence: true,
        keeps_event: true,
        keeps_suppression: true,
    }
}

impl Case {
    const fn lifted(mut self, days_ago: i64) -> Self {
        self.lifted_days_ago = Some(days_ago);
        self
    }
    const fn expired(mut self, days_ago: i64) -> Self {
        self.expired_days_ago = Some(days_ago);
        self
    }
    const fn postal(mut self) -> Self {
        self.channel = Channel::Postal;
        self
    }
    /// What is left: evidence, event, suppression.
    const fn leaves(mut self, evidence: bool, event: bool, suppression: bool) -> Self {
        self.keeps_evidence = evidence;
        self.keeps_event = event;
        self.keeps_suppression = suppression;
        self
    }
}

/// Defaults: bounce mails 90 days, events 1095, lifted proof 1095, expired suppressions 365.
fn cases() -> Vec<Case> {
    use Reason::*;
    vec![
        case("recent hard bounce", "bounce", Some(HardBounce), 30),
        // The raw mail goes after 90 days; the standing suppression and its event stay.
        case(
            "standing hard bounce, old mail",
            "bounce",
            Some(HardBounce),
            100,
        )
        .leaves(false, true, true),
        case(
            "standing hard bounce, very old",
            "bounce",
            Some(HardBounce),
            2000,
        )
        .leaves(false, true, true),
        case("bounce below the threshold", "bounce", None, 100).leaves(false, true, false),
        case("bounce below the threshold, very old", "bounce", None, 1200)
            .leaves(false, false, false),
        case("auto-reply", "auto_reply", None, 100).leaves(false, true, false),
        case("auto-reply, very old", "auto_reply", None, 1200).leaves(false, false, false),
        // Standing opt-outs and complaints keep their proof whatever its age.
        case(
            "standing unsubscribe, very old",
            "unsubscribe",
            Some(Unsubscribe),
            2000,
        ),
        case(
            "standing complaint, very old",
            "complaint",
            Some(Complaint),
            2000,
        ),
        case(
            "standing unsubscribe, recent",
            "unsubscribe",
            Some(Unsubscribe),
            10,
        ),
        // Lifted by the owner's consent: the proof goes 1095 days after the lift; the lifted
        // suppression goes with it, and its event in the next run.
        case(
            "unsubscribe lifted long ago",
            "unsubscribe",
            Some(Unsubscribe),
            1500,
        )
        .lifted(1200)
        .leaves(false, true, false),
        case(
            "unsubscribe lifted lately",
            "unsubscribe",
            Some(Unsubscribe),
            1500,
        )
        .lifted(100),
        case(
            "complaint lifted long ago",
            "complaint",
            Some(Complaint),
            1300,
        )
        .lifted(1100)
        .leaves(false, true, false),
        // A held unsubscribe mail that never took effect: dated from its receipt.
        case("held unsubscribe, very old", "unsubscribe_held", None, 1200)
            .leaves(false, false, false),
        case("held unsubscribe, recent", "unsubscribe_held", None, 200).leaves(true, true, false),
        // Soft bounces with an expiry: details kept 365 days past it.
        case(
            "soft bounce expired long ago",
            "bounce",
            Some(SoftBounce),
            500,
        )
        .expired(400)
        .leaves(false, true, false),
        case(
            "soft bounce expired lately",
            "bounce",
            Some(SoftBounce),
            200,
        )
        .expired(100)
        .leaves(false, true, true),
        case("soft bounce still in force", "bounce", Some(SoftBounce), 20).expired(-10),
        // Staff blocks, e-mail and postal alike.
        case(
            "standing manual block, very old",
            "manual",
            Some(Manual),
            2000,
        )
        .leaves(true, true, true),
        case(
            "standing postal block, very old",
            "manual",
            Some(Manual),
            2000,
        )
        .postal(),
        case("postal block lifted long ago", "manual", Some(Manual), 1500)
            .postal()
            .lifted(1200)
            .leaves(true, true, false),
        case("postal block lifted lately", "manual", Some(Manual), 1500)
            .postal()
            .lifted(30),
        case(
            "bounce block lifted by staff long ago",
            "bounce",
            Some(HardBounce),
            1500,
        )
        .lifted(1100)
        .leaves(false, true, false),
    ]
}

/// Ids written for one case.
struct Written {
    evidence: Option<i64>,
    event: Option<i64>,
    suppression: Option<i64>,
}

fn days_ago(now: Timestamp, days: i64) -> Timestamp {
    now - Duration::days(days)
}

async fn write_case(
    store: &Store,
    service: &SuppressionService,
    i: usize,
    case: &Case,
    now: Timestamp,
) -> Written {
    let address = EmailAddress::parse(&format!("case{i}@example.org")).unwrap();
    let received = days_ago(now, case.received_days_ago);
    if case.kind == "manual" {
        // Staff set it through the service (no mail, no evidence).
        let added = service
            .suppress(&SuppressRequest {
                address: address.as_given().into(),
                reason: Reason::Manual,
                company: Some("acme".into()),
                brand: Some("news".into()),
                channel: case.channel,
                note: Some("Grund Post Sperre: asked by phone".into()),
                source: Source::Cli,
                created_at: Some(received),
                created_by: None,
                expires_at: None,
            })
            .await
            .unwrap();
        if let Some(days) = case.lifted_days_ago {
            store
                .lift(
                    &[added.id],
                    "staff",
                    Some("asked again"),
                    days_ago(now, days),
                )
                .await
                .unwrap();
        }
        return Written {
            evidence: None,
            event: None,
            suppression: Some(added.id),
        };
    }
    let raw = format!(
        "From: someone\r\nSubject: {}\r\n\r\nabout {}\r\n",
        case.name,
        address.as_given()
    );
    let suppression = case.reason.map(|reason| {
        (
            NewSuppression {
                address: address.clone(),
                channel: case.channel,
                scope: Scope::from_parts(Some("acme"), None).unwrap(),
                reason,
                source: match reason {
                    Reason::Complaint => Source::Arf,
                    Reason::Unsubscribe => Source::UnsubscribeMail,
                    _ => Source::Dsn,
                },
                note: None,
                created_at: received,
                created_by: None,
                expires_at: case.expired_days_ago.map(|days| days_ago(now, days)),
                evidence_id: None,
                event_id: None,
            },
            Escalation::Immediate,
        )
    });
    let record = InboundRecord {
        evidence: NewEvidence {
            raw: raw.as_bytes(),
            mail_from: Some(""),
            ..Default::default()
        },
        events: vec![InboundEvent {
            event: NewEvent {
                kind: case.kind.into(),
                address: Some(address.as_given().into()),
                address_hash: Some(store.hash(&address)),
                company: "acme".into(),
                verified: true,
                source: Some("test".into()),
                ..Default::default()
            },
            suppression,
        }],
    };
    let outcome = store.record_inbound(&record, received).await.unwrap();
    let suppression = outcome.suppressions[0].map(|added| added.id());
    if let (Some(days), Some(id)) = (case.lifted_days_ago, suppression) {
        let by = if matches!(case.reason, Some(Reason::Unsubscribe | Reason::Complaint)) {
            "consent"
        } else {
            "staff"
        };
        store
            .lift(&[id], by, Some("lifted"), days_ago(now, days))
            .await
            .unwrap();
    }
    Written {
        evidence: Some(outcome.evidence_id),
        event: Some(outcome.event_ids[0]),
        suppression,
    }
}

async fn exists(conn: &mut AnyConnection, table: &str, id: Option<i64>) -> bool {
    let Some(id) = id else { return false };
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .get::<i64, _>("n")
        == 1
}

const TABLES: [&str; 10] = [
    "evidence",
    "evidence_tombstones",
    "events",
    "suppressions",
    "sends",
    "consents",
    "erasures",
    "queue",
    "blocked",
    "webhook_outbox",
];

async fn count(conn: &mut AnyConnection, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(conn)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

async fn table_counts(url: &str) -> Vec<(String, i64)> {
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let mut counts = Vec::new();
    for table in TABLES {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get("n");
        counts.push((table.to_string(), n));
    }
    conn.close().await.unwrap();
    counts
}

fn config(db: &TestDb) -> Arc<Config> {
    let text = format!("[database]\nurl = {:?}\n{ORGANISATION}", db.url);
    Arc::new(Config::parse(&text, std::path::Path::new("retention.toml")).unwrap())
}

#[tokio::test]
async fn purge_removes_what_the_settings_say_and_keeps_every_standing_opt_outs_proof() {
    sqlx::any::install_default_drivers();
    for db in databases().await {
        let config = config(&db);
        let store = Store::open(&db.url, 4).await.unwrap();
        let service = SuppressionService::new(store.clone(), config);
        let now = Utc::now();
        let cases = cases();
        let mut written = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            written.push(write_case(&store, &service, i, case, now).await);
        }
        // An erasure long ago: its record stays whatever its age.
        let erased = EmailAddress::parse("gone@example.org").unwrap();
        store
            .erase(&erased, true, "test", days_ago(now, 2000))
            .await
            .unwrap();
        // Send records: one past sends_days (400), one within.
        for (days, id) in [(500, "old"), (100, "new")] {
            store
                .record_send(&NewSend {
                    address: EmailAddress::parse(&format!("{id}.send@example.org")).unwrap(),
                    company: "acme".into(),
                    brand: None,
                    class: MailClass::Promotional,
                    message_id: format!("<{id}@acme.example>"),
                    sent_at: days_ago(now, days),
                })
                .await
                .unwrap();
        }

        // A dry run changes nothing and counts what the real run removes.
        let before = table_counts(&db.url).await;
        let preview = service.purge_preview().await.unwrap();
        assert_eq!(
            table_counts(&db.url).await,
            before,
            "{}: the dry run changed something",
            db.backend
        );
        let mut heard = Vec::new();
        let report = service
            .purge("test", &mut |rule, rows| heard.push((rule, rows)))
            .await
            .unwrap();
        let rows = |report: &bouncegate::service::PurgeReport| {
            report
                .rules
                .iter()
                .map(|r| (r.rule, r.rows))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows(&preview),
            rows(&report),
            "{}: dry run and real run disagree",
            db.backend
        );
        assert!(
            heard
                .iter()
                .any(|(rule, rows)| *rule == PurgeRule::BounceMail && *rows > 0),
            "progress is reported"
        );

        let mut conn = AnyConnection::connect(&db.url).await.unwrap();
        let mut wrong = Vec::new();
        for (case, ids) in cases.iter().zip(&written) {
            for (table, id, expected) in [
                (
                    "evidence",
                    ids.evidence,
                    case.keeps_evidence && ids.evidence.is_some(),
                ),
                ("events", ids.event, case.keeps_event && ids.event.is_some()),
                (
                    "suppressions",
                    ids.suppression,
                    case.keeps_suppression && ids.suppression.is_some(),
                ),
            ] {
                let found = exists(&mut conn, table, id).await;
                if found != expected {
                    wrong.push(format!(
                        "{}: {table} {}",
                        case.name,
                        if found { "kept" } else { "removed" }
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}: {wrong:#?}", db.backend);

        assert_eq!(
            count(&mut conn, "SELECT COUNT(*) AS n FROM erasures").await,
            1
        );
        assert_eq!(
            count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM events WHERE kind = 'erase'"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM sends WHERE message_id LIKE '%old@acme.example%'"
            )
            .await,
            0
        );
        assert_eq!(
            count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM sends WHERE message_id LIKE '%new@acme.example%'"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &mut conn,
                "SELECT COUNT(*) AS n FROM events WHERE kind = 'purge'"
            )
            .await,
            1,
            "one purge event"
        );
        conn.close().await.unwrap();
        // The chain still verifies: every purged mail left a tombstone.
        let chain = store.verify_evidence().await.unwrap();
        assert!(chain.is_intact(), "{}: {chain:?}", db.backend);
        assert!(chain.purged > 0);

        // What the first run freed (events of suppressions it removed) goes in the next.
        let again = service.purge("test", &mut |_, _| {}).await.unwrap();
        let events = again
            .rules
            .iter()
            .find(|r| r.rule == PurgeRule::Events)
            .unwrap()
            .rows;
        assert_eq!(
            events, 3,
            "{}: the lift-era events of removed suppressions and their lift events",
            db.backend
        );
        // Standing blocks still block, postal and e-mail each on its own channel.
        for (i, case) in cases.iter().enumerate() {
            if case.name == "standing postal block, very old" {
                let postal = bouncegate::service::CheckRequest {
                    company: "acme",
                    brand: Some("news"),
                    class: MailClass::Promotional,
                    channel: Channel::Postal,
                };
                let email = bouncegate::service::CheckRequest {
                    channel: Channel::Email,
                    ..postal
                };
                let address = format!("case{i}@example.org");
                assert!(!service.check(&address, postal).await.unwrap().allowed);
                assert!(
                    service.check(&address, email).await.unwrap().allowed,
                    "a postal block never blocks e-mail"
                );
            }
        }
        store.close().await;
    }
}

#[tokio::test]
async fn the_purge_command_says_what_would_go_then_removes_exactly_that() {
    sqlx::any::install_default_drivers();
    for db in databases().await {
        let config = config(&db);
        let store = Store::open(&db.url, 4).await.unwrap();
        let service = SuppressionService::new(store.clone(), config);
        let now = Utc::now();
        let cases = cases();
        for (i, case) in cases.iter().enumerate() {
            write_case(&store, &service, i, case, now).await;
        }
        store.close().await;
        let path = common::write_config(&db, "");

        let before = table_counts(&db.url).await;
        let dry = common::bouncegate(&path, &["purge", "--dry-run"]);
        common::expect_exit(&dry, 0, "purge --dry-run");
        let text = common::stdout(&dry);
        assert!(text.contains("dry run: nothing changed"), "{text}");
        assert!(text.contains("bounce_mail_days = 90 days"), "{text}");
        assert_eq!(
            table_counts(&db.url).await,
            before,
            "{}: --dry-run changed something",
            db.backend
        );
        let dry = common::json(&common::bouncegate(
            &path,
            &["purge", "--dry-run", "--json"],
        ));
        assert_eq!(dry["dry_run"], true);
        assert!(dry["total"].as_u64().unwrap() > 0);

        let real = common::bouncegate(&path, &["purge", "--json"]);
        common::expect_exit(&real, 0, "purge");
        let real = common::json(&real);
        assert_eq!(real["dry_run"], false);
        let rows = |report: &serde_json::Value| {
            report["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["table"].as_str().unwrap().to_string(),
                        r["rule"].as_str().unwrap().to_string(),
                        r["rows"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rows(&dry),
            rows(&real),
            "{}: the run removed other than the dry run said",
            db.backend
        );
        assert_eq!(real["total"], dry["total"]);

        let events = common::bouncegate(&path, &["events", "--kind", "purge", "--json"]);
        common::expect_exit(&events, 0, "events --kind purge");
        let lines: Vec<serde_json::Value> = common::stdout(&events)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "one purge event: {lines:?}");
        let note = lines[0]["note"].as_str().unwrap();
        assert!(
            note.contains(&format!("{} rows", real["total"])) && note.contains("bounce_mail"),
            "{note}"
        );
    }
}

#[tokio::test]
async fn admins_purge_over_http_and_others_may_not() {
    for db in databases().await {
        let running = common::gateway::start(&db, "").await;
        let now = Utc::now();
        for (i, case) in cases().iter().enumerate() {
            write_case(&running.gateway.store, &running.service, i, case, now).await;
        }
        let http = reqwest::Client::new();
        let url = format!("{}/v1/purge", running.base);
        let forbidden = http
            .post(&url)
            .bearer_auth(common::gateway::READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(forbidden.status(), 403);
        let before = table_counts(&db.url).await;
        let dry: serde_json::Value = http
            .post(format!("{url}?dry_run=true"))
            .bearer_auth(common::gateway::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(dry["dry_run"], true);
        assert_eq!(table_counts(&db.url).await, before);
        let response = http
            .post(&url)
            .bearer_auth(common::gateway::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let real: serde_json::Value = response.json().await.unwrap();
        assert_eq!(real["total"], dry["total"], "{}", db.backend);
        assert!(real["total"].as_u64().unwrap() > 0);
        let events = running
            .service
            .store()
            .events_of_kind("purge", 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert!(
            events[0].note.as_deref().unwrap().contains("api:ops"),
            "{events:?}"
        );
        running.stop().await;
    }
}
