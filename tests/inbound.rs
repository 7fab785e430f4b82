//! The inbound listener end to end: real SMTP over loopback to the server task, on SQLite and
//! PostgreSQL; tokens minted through the library as the relay will mint them.

mod common;

use std::sync::Arc;

use bouncegate::address::EmailAddress;
use bouncegate::analysis::Analyzer;
use bouncegate::config::Config;
use bouncegate::inbound::InboundSink;
use bouncegate::model::{Channel, ContactStatus, MailClass};
use bouncegate::service::{CheckRequest, SuppressionService};
use bouncegate::smtp::{ListenerConfig, ServerHandle, SmtpServer};
use bouncegate::store::{NewSend, Store};
use bouncegate::token::{TokenBinding, TokenKeys, TokenKind};
use common::{ORGANISATION, TestDb, databases};
use sqlx::Connection;

const DOMAIN: &str = "bounces.example.org";

struct Gateway {
    handle: ServerHandle,
    service: SuppressionService,
    keys: TokenKeys,
}

async fn start(db: &TestDb, inbound: &str) -> Gateway {
    let text = format!("[inbound]\ndomain = \"{DOMAIN}\"\n{inbound}\n{ORGANISATION}");
    let config = Arc::new(Config::parse(&text, std::path::Path::new("test.toml")).unwrap());
    let store = Store::open(&db.url, 4).await.unwrap();
    let keys = TokenKeys::new(store.secret());
    let sink = Arc::new(InboundSink::new(
        store.clone(),
        config.clone(),
        Analyzer::default(),
        keys.clone(),
    ));
    let server = SmtpServer::bind(
        ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "mx.test"),
        sink,
    )
    .await
    .unwrap();
    Gateway {
        handle: server.spawn(),
        service: SuppressionService::new(store, config),
        keys,
    }
}

impl Gateway {
    /// Records a send and mints its token, as the relay does.
    async fn send(
        &self,
        recipient: &str,
        brand: Option<&str>,
        message_id: &str,
        kind: TokenKind,
    ) -> String {
        let address = EmailAddress::parse(recipient).unwrap();
        let store = self.service.store();
        let id = store
            .record_send(&NewSend {
                address: address.clone(),
                company: "acme".into(),
                brand: brand.map(str::to_string),
                class: MailClass::Promotional,
                message_id: message_id.into(),
                sent_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let hash = store.hash(&address);
        let binding = TokenBinding {
            recipient: hash.as_str(),
            company: "acme",
            brand: brand.unwrap_or(""),
            message_id,
        };
        self.keys.mint(kind, id, chrono::Utc::now(), binding)
    }

    async fn allowed(&self, address: &str, brand: Option<&str>) -> (bool, ContactStatus) {
        let request = CheckRequest {
            company: "acme",
            brand,
            class: MailClass::Promotional,
            channel: Channel::Email,
        };
        let verdict = self.service.check(address, request).await.unwrap();
        (verdict.allowed, verdict.status)
    }
}

/// Sends one mail over SMTP and returns the reply to its end of data (or the first refusal).
async fn smtp(gateway: &Gateway, mail_from: &str, rcpt: &str, data: &str) -> String {
    common::smtp::transaction(gateway.handle.local_addr(), None, mail_from, rcpt, data).await
}

/// A DSN as Postfix writes it, CRLF line ends.
/// The events of one kind logged for `address`, oldest first.
async fn events_of(g: &Gateway, address: &str, kind: &str) -> Vec<bouncegate::store::EventRecord> {
    g.service
        .events(&bouncegate::service::EventsQuery {
            address: Some(address.into()),
            kind: Some(kind.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
}

fn dsn(recipient: &str, action: &str, status: &str, diagnostic: &str, original_id: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net\nTo: news@acme.example\nSubject: Undelivered Mail Returned to Sender\n\
         MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n\
         --B\nContent-Type: text/plain\n\n<{recipient}>: {diagnostic}\n\n\
         --B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n\
         Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n\
         Diagnostic-Code: smtp; {diagnostic}\n\n\
         --B\nContent-Type: text/rfc822-headers\n\nFrom: news@acme.example\nTo: {recipient}\n\
         Message-ID: <{original_id}>\nSubject: News\n\n--B--\n"
    )
    .replace('\n', "\r\n")
}

#[tokio::test]
async fn a_signed_hard_bounce_suppresses_and_keeps_the_evidence() {
    for db in databases().await {
        let g = start(&db, "").await;
        let token = g
            .send(
                "jane@example.net",
                Some("news"),
                "m1@acme.example",
                TokenKind::Bounce,
            )
            .await;
        let mail = dsn(
            "jane@example.net",
            "failed",
            "5.1.1",
            "550 5.1.1 user unknown",
            "m1@acme.example",
        );
        let reply = smtp(&g, "", &format!("b+{token}@{DOMAIN}"), &mail).await;
        assert!(reply.starts_with("250"), "{}: {reply}", db.backend);
        assert_eq!(
            g.allowed("jane@example.net", Some("shop")).await,
            (false, ContactStatus::Bounced)
        );
        let verdict = g
            .service
            .check(
                "jane@example.net",
                CheckRequest {
                    company: "globex",
                    brand: None,
                    class: MailClass::Promotional,
                    channel: Channel::Email,
                },
            )
            .await
            .unwrap();
        let evidence_id = verdict.blocking[0]
            .evidence_id
            .expect("linked to its evidence");
        let evidence = g.service.evidence(evidence_id).await.unwrap().unwrap();
        assert_eq!(evidence.raw, mail.as_bytes(), "byte for byte");
        assert_eq!(evidence.mail_from.as_deref(), Some(""));
        // The bounce event names the rule that decided, for an operator who disagrees.
        let events = events_of(&g, "jane@example.net", "bounce").await;
        let event = &events[0];
        assert_eq!(event.reason.as_deref(), Some("userunknown"));
        assert_eq!(event.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            event.rule.as_deref(),
            Some("builtin:user-unknown"),
            "{}",
            db.backend
        );
        g.handle.shutdown().await;
    }
}

#[tokio::test]
async fn soft_bounces_escalate_once_per_message_and_delays_never_count() {
    for db in databases().await {
        let g = start(&db, "").await;
        let full = "552 5.2.2 mailbox full";
        for (n, message) in ["s1", "s2"].into_iter().enumerate() {
            let token = g
                .send("soft@example.net", None, message, TokenKind::Bounce)
                .await;
            for _ in 0..2 {
                // The same message bouncing twice counts once.
                let mail = dsn("soft@example.net", "failed", "5.2.2", full, message);
                assert!(
                    smtp(&g, "", &format!("b+{token}@{DOMAIN}"), &mail)
                        .await
                        .starts_with("250")
                );
            }
            assert!(
                g.allowed("soft@example.net", None).await.0,
                "{}: {} soft bounces",
                db.backend,
                n + 1
            );
        }
        for message in ["d1", "d2", "d3"] {
            let token = g
                .send("soft@example.net", None, message, TokenKind::Bounce)
                .await;
            let mail = dsn(
                "soft@example.net",
                "delayed",
                "4.4.1",
                "connect timed out",
                message,
            );
            assert!(
                smtp(&g, "", &format!("b+{token}@{DOMAIN}"), &mail)
                    .await
                    .starts_with("250")
            );
        }
        assert!(
            g.allowed("soft@example.net", None).await.0,
            "{}: delays do not count",
            db.backend
        );
        let token = g
            .send("soft@example.net", None, "s3", TokenKind::Bounce)
            .await;
        let mail = dsn("soft@example.net", "failed", "5.2.2", full, "s3");
        assert!(
            smtp(&g, "", &format!("b+{token}@{DOMAIN}"), &mail)
                .await
                .starts_with("250")
        );
        assert_eq!(
            g.allowed("soft@example.net", None).await,
            (false, ContactStatus::Bounced),
            "{}",
            db.backend
        );
        g.handle.shutdown().await;
    }
}

#[tokio::test]
async fn forged_bounces_suppress_nothing_unless_the_operator_trusts_them() {
    for db in databases().await {
        let g = start(&db, "").await;
        let mail = dsn(
            "victim@example.net",
            "failed",
            "5.1.1",
            "550 5.1.1 user unknown",
            "unknown@elsewhere",
        );
        assert!(
            smtp(&g, "", &format!("bounces@{DOMAIN}"), &mail)
                .await
                .starts_with("250")
        );
        let forged = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(
            smtp(&g, "", &format!("b+{forged}@{DOMAIN}"), &mail)
                .await
                .starts_with("250")
        );
        // A real token for someone else does not reach the victim either.
        let other = g
            .send("other@example.net", None, "m2", TokenKind::Bounce)
            .await;
        assert!(
            smtp(
                &g,
                "",
                &format!("b+{other}@{DOMAIN}"),
                &mail.replace("unknown@elsewhere", "m9")
            )
            .await
            .starts_with("250")
        );
        assert!(
            g.allowed("victim@example.net", None).await.0,
            "{}",
            db.backend
        );
        g.handle.shutdown().await;

        let trusting = start(&db, "trust_unsigned_bounces = true").await;
        let mail = dsn(
            "plain@example.net",
            "failed",
            "5.1.1",
            "550 5.1.1 user unknown",
            "x@y",
        );
        assert!(
            smtp(&trusting, "", &format!("bounces@{DOMAIN}"), &mail)
                .await
                .starts_with("250")
        );
        assert_eq!(
            trusting.allowed("plain@example.net", None).await,
            (false, ContactStatus::Bounced)
        );
        trusting.handle.shutdown().await;
    }
}

#[tokio::test]
async fn unsubscribe_mails_suppress_with_their_scope_and_auto_replies_do_not() {
    for db in databases().await {
        let g = start(&db, "").await;
        let token = g
            .send(
                "reader@example.net",
                Some("news"),
                "n1",
                TokenKind::UnsubscribeBrand,
            )
            .await;
        let mail = "From: reader@example.net\r\nTo: unsubscribe@acme.example\r\nSubject: unsubscribe\r\n\r\nPlease stop.\r\n";
        assert!(
            smtp(
                &g,
                "reader@example.net",
                &format!("unsubscribe+{token}@{DOMAIN}"),
                mail
            )
            .await
            .starts_with("250")
        );
        assert_eq!(
            g.allowed("reader@example.net", Some("news")).await,
            (false, ContactStatus::Unsubscribed)
        );
        assert!(
            g.allowed("reader@example.net", Some("shop")).await.0,
            "{}: only the brand",
            db.backend
        );

        let plain = "From: Max <max@example.net>\r\nTo: unsubscribe-acme@bounces.example.org\r\nSubject: abmelden\r\n\r\nBitte austragen.\r\n";
        assert!(
            smtp(
                &g,
                "max@example.net",
                &format!("unsubscribe-acme@{DOMAIN}"),
                plain
            )
            .await
            .starts_with("250")
        );
        assert!(
            !g.allowed("max@example.net", Some("shop")).await.0,
            "{}: company-wide",
            db.backend
        );
        let status = g.service.status("max@example.net").await.unwrap();
        let evidence = g
            .service
            .evidence(status.suppressions[0].evidence_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            evidence.raw,
            plain.as_bytes(),
            "the unsubscribe mail is kept byte for byte"
        );

        let away = "From: away@example.net\r\nSubject: Out of Office: abmelden\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n";
        assert!(
            smtp(
                &g,
                "away@example.net",
                &format!("unsubscribe-acme@{DOMAIN}"),
                away
            )
            .await
            .starts_with("250")
        );
        assert!(
            g.allowed("away@example.net", None).await.0,
            "{}: auto-replies unsubscribe nobody",
            db.backend
        );
        g.handle.shutdown().await;
    }
}

#[tokio::test]
async fn a_complaint_about_a_signed_send_is_company_wide() {
    for db in databases().await {
        let g = start(&db, "").await;
        let token = g
            .send(
                "angry@example.net",
                Some("news"),
                "c1@acme.example",
                TokenKind::Bounce,
            )
            .await;
        let arf = format!(
            "From: fbl@isp.example\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n\
             --A\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
             --A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n\
             --A\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <b+{token}@{DOMAIN}>\r\nFrom: news@acme.example\r\n\
             To: angry@example.net\r\nMessage-ID: <c1@acme.example>\r\nSubject: News\r\n\r\nHello\r\n--A--\r\n"
        );
        assert!(
            smtp(&g, "fbl@isp.example", &format!("fbl@{DOMAIN}"), &arf)
                .await
                .starts_with("250")
        );
        assert_eq!(
            g.allowed("angry@example.net", Some("shop")).await,
            (false, ContactStatus::Unsubscribed),
            "{}",
            db.backend
        );
        g.handle.shutdown().await;
    }
}

/// A feedback loop that sends its complaints as a digest (one mail, each report forwarded as an
/// attachment): every report counts, each for its own send, none for another's recipient.
#[tokio::test]
async fn a_digest_of_complaint_reports_suppresses_each_recipient_by_its_own_send() {
    for db in databases().await {
        let g = start(&db, "").await;
        let mut reports = String::new();
        for (recipient, message_id) in [
            ("first.angry@example.net", "d1@acme.example"),
            ("second.angry@example.net", "d2@acme.example"),
        ] {
            let token = g
                .send(recipient, Some("news"), message_id, TokenKind::Bounce)
                .await;
            reports.push_str(&format!(
                "--D\r\nContent-Type: message/rfc822\r\n\r\n\
                 From: fbl@isp.example\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n\
                 --A\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
                 --A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n\
                 --A\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <b+{token}@{DOMAIN}>\r\n\
                 From: news@acme.example\r\nTo: {recipient}\r\nMessage-ID: <{message_id}>\r\n\
                 Subject: News\r\n\r\nHello\r\n--A--\r\n\r\n"
            ));
        }
        let digest = format!(
            "From: fbl@isp.example\r\nSubject: 2 complaints\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"D\"\r\n\r\n\
             --D\r\nContent-Type: text/plain\r\n\r\nTwo reports follow.\r\n{reports}--D--\r\n"
        );
        assert!(
            smtp(&g, "fbl@isp.example", &format!("fbl@{DOMAIN}"), &digest)
                .await
                .starts_with("250")
        );
        for recipient in ["first.angry@example.net", "second.angry@example.net"] {
            assert_eq!(
                g.allowed(recipient, Some("shop")).await,
                (false, ContactStatus::Unsubscribed),
                "{recipient} on {}",
                db.backend
            );
            let events = events_of(&g, recipient, "complaint").await;
            assert_eq!(events.len(), 1, "{recipient}: {events:?}");
            assert!(events[0].verified, "attributed by its own signed token");
        }
        g.handle.shutdown().await;
    }
}

/// One report with several feedback parts beside one returned original: the original's token
/// speaks for its own recipient only; another is suppressed only when a send of that Message-ID
/// to it exists; a stranger named in a feedback part is suppressed by nobody's token.
#[tokio::test]
async fn several_feedback_parts_are_each_attributed_to_their_own_recipient() {
    for db in databases().await {
        let g = start(&db, "").await;
        let token = g
            .send(
                "ann.fb@example.net",
                Some("news"),
                "multi@acme.example",
                TokenKind::Bounce,
            )
            .await;
        g.send(
            "bob.fb@example.net",
            Some("news"),
            "multi@acme.example",
            TokenKind::Bounce,
        )
        .await;
        let part = |rcpt: &str| {
            format!(
                "--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\
                 Version: 1\r\nOriginal-Rcpt-To: <{rcpt}>\r\n\r\n"
            )
        };
        let arf = format!(
            "From: fbl@isp.example\r\nSubject: complaints\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n\
             --A\r\nContent-Type: text/plain\r\n\r\nThree complaints.\r\n{}{}{}\
             --A\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <b+{token}@{DOMAIN}>\r\n\
             From: news@acme.example\r\nTo: ann.fb@example.net\r\nMessage-ID: <multi@acme.example>\r\n\
             Subject: News\r\n\r\nHello\r\n--A--\r\n",
            part("ann.fb@example.net"),
            part("bob.fb@example.net"),
            part("stranger.fb@example.net"),
        );
        assert!(
            smtp(&g, "fbl@isp.example", &format!("fbl@{DOMAIN}"), &arf)
                .await
                .starts_with("250")
        );
        for (address, suppressed) in [
            ("ann.fb@example.net", true),
            ("bob.fb@example.net", true),
            ("stranger.fb@example.net", false),
        ] {
            let (allowed, _) = g.allowed(address, Some("shop")).await;
            assert_eq!(!allowed, suppressed, "{address} on {}", db.backend);
        }
        g.handle.shutdown().await;
    }
}

#[tokio::test]
async fn it_never_relays_and_a_store_failure_is_retried_later() {
    for db in databases().await {
        let g = start(&db, "").await;
        let reply = smtp(
            &g,
            "spammer@example.com",
            "victim@gmail.example",
            "Subject: hi\r\n\r\nx\r\n",
        )
        .await;
        assert!(reply.starts_with("550 5.1.1"), "{reply}");
        let reply = smtp(&g, "", &format!("postmaster@{DOMAIN}"), "x\r\n").await;
        assert!(reply.starts_with("550 5.1.1"), "{reply}");
        g.service.store().close().await;
        let mail = dsn(
            "jane@example.net",
            "failed",
            "5.1.1",
            "550 user unknown",
            "m",
        );
        let reply = smtp(&g, "", &format!("bounces@{DOMAIN}"), &mail).await;
        assert!(reply.starts_with("451 4.3.0"), "{}: {reply}", db.backend);
        g.handle.shutdown().await;
    }
}

#[tokio::test]
async fn a_real_client_delivers_a_bounce() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    for db in databases().await {
        let g = start(&db, "").await;
        let token = g
            .send("lettre@example.net", None, "l1", TokenKind::Bounce)
            .await;
        let mail = dsn(
            "lettre@example.net",
            "failed",
            "5.1.1",
            "550 5.1.1 no such user",
            "l1",
        );
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(g.handle.local_addr().port())
            .build();
        let envelope = lettre::address::Envelope::new(
            None,
            vec![format!("b+{token}@{DOMAIN}").parse().unwrap()],
        )
        .unwrap();
        transport
            .send_raw(&envelope, mail.as_bytes())
            .await
            .unwrap();
        assert!(
            !g.allowed("lettre@example.net", None).await.0,
            "{}",
            db.backend
        );
        g.handle.shutdown().await;
    }
}

/// RCPT takes the listener's addresses in any spelling of the same mailbox, and nothing that
/// smuggles a second address or a space into the local part.
#[tokio::test]
async fn quoted_and_smuggled_recipients_are_matched_or_refused() {
    for db in databases().await {
        let g = start(&db, "trust_unsigned_bounces = true").await;
        let mail = dsn(
            "victim@gmail.example",
            "failed",
            "5.1.1",
            "550 5.1.1 user unknown",
            "q1",
        );
        for (rcpt, expected) in [
            (format!("\"bounces\"@{DOMAIN}"), "250"),
            (format!("Bounces@{}", DOMAIN.to_uppercase()), "250"),
            (
                format!("\"b+x, victim@gmail.example\"@{DOMAIN}"),
                "550 5.1.1",
            ),
            (format!("\"b+x victim\"@{DOMAIN}"), "550 5.1.1"),
            (format!("\"unsubscribe-acme \"@{DOMAIN}"), "550 5.1.1"),
            (format!("\"bounces\\\"\"@{DOMAIN}"), "5"),
            (format!("b+abc,def@{DOMAIN}"), "5"),
        ] {
            let reply = smtp(&g, "", &rcpt, &mail).await;
            assert!(
                reply.starts_with(expected),
                "{}: {rcpt}: {reply}",
                db.backend
            );
        }
        // The one accepted bounce suppresses the reported address; nothing was smuggled past.
        let status = g.service.status("victim@gmail.example").await.unwrap();
        assert_eq!(status.suppressions.len(), 1, "{}", db.backend);
        g.handle.shutdown().await;
    }
}

/// A DKIM-signed mail (Ed25519, `d=domain`, selector `s1`), and the key record to publish.
fn dkim_signed(domain: &str, mail: &str) -> (String, String) {
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter as _;
    use mail_auth::dkim::DkimSigner;
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let record = format!(
        "v=DKIM1; k=ed25519; p={}",
        data_encoding::BASE64.encode(&key.public_key())
    );
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector("s1")
        .headers(["From", "To", "Subject"])
        .sign(mail.as_bytes())
        .unwrap();
    (format!("{}{mail}", signature.to_header()), record)
}

/// `unsubscribe-<company>@` believes a From only when DKIM or SPF proves it: a forged one is still
/// honoured, as `unverified_mail` that staff may lift; past the per-IP limit it waits for review.
#[tokio::test]
async fn plain_unsubscribes_are_the_owners_only_when_the_sender_is_authenticated() {
    let dns = common::dns::DnsStub::start().await;
    dns.txt("spf.example", "v=spf1 ip4:127.0.0.1 -all");
    dns.txt("forged.example", "v=spf1 ip4:192.0.2.1 -all");
    let body =
        "To: unsubscribe-acme@bounces.example.org\r\nSubject: unsubscribe\r\n\r\nPlease stop.\r\n";
    let (signed, key) = dkim_signed("dkim.example", &format!("From: ben@dkim.example\r\n{body}"));
    dns.txt("s1._domainkey.dkim.example", &key);
    // Signed with a key of its own, then altered: the published key does not verify it.
    let (forged_signature, _unpublished) = dkim_signed(
        "dkim.example",
        &format!("From: carl@dkim.example\r\n{body}"),
    );
    let tampered = forged_signature.replace("Please stop.", "Please stop!");
    for db in databases().await {
        let g = start(
            &db,
            &format!(
                "dns_resolver = \"{}\"\nmax_unsubscribes_per_sender_ip_per_hour = 4",
                dns.addr
            ),
        )
        .await;
        let rcpt = format!("unsubscribe-acme@{DOMAIN}");
        let source = async |address: &str| {
            let status = g.service.status(address).await.unwrap();
            status.suppressions.first().map(|s| s.source.as_str())
        };
        // 1: SPF passes for the envelope domain, aligned with From.
        let spf = format!("From: anna@spf.example\r\n{body}");
        assert!(
            smtp(&g, "anna@spf.example", &rcpt, &spf)
                .await
                .starts_with("250")
        );
        assert_eq!(
            source("anna@spf.example").await,
            Some("unsubscribe_mail"),
            "{}",
            db.backend
        );
        // 2: DKIM passes for the From domain; the envelope proves nothing.
        assert!(smtp(&g, "", &rcpt, &signed).await.starts_with("250"));
        assert_eq!(
            source("ben@dkim.example").await,
            Some("unsubscribe_mail"),
            "{}",
            db.backend
        );
        // 3: a forged From (SPF fails), honoured but unverified.
        let forged = format!("From: victim@forged.example\r\n{body}");
        assert!(
            smtp(&g, "victim@forged.example", &rcpt, &forged)
                .await
                .starts_with("250")
        );
        assert_eq!(
            source("victim@forged.example").await,
            Some("unverified_mail"),
            "{}",
            db.backend
        );
        assert!(
            !g.allowed("victim@forged.example", None).await.0,
            "{}: honoured",
            db.backend
        );
        // 4: a DKIM signature that does not verify proves nothing.
        assert!(smtp(&g, "", &rcpt, &tampered).await.starts_with("250"));
        assert_eq!(
            source("carl@dkim.example").await,
            Some("unverified_mail"),
            "{}",
            db.backend
        );
        // 5: past the limit from this IP, an unauthenticated one waits for review.
        let fifth = format!("From: dora@forged.example\r\n{body}");
        assert!(
            smtp(&g, "dora@forged.example", &rcpt, &fifth)
                .await
                .starts_with("250")
        );
        assert!(
            g.allowed("dora@forged.example", None).await.0,
            "{}: held",
            db.backend
        );
        let held = g
            .service
            .store()
            .events_of_kind("unsubscribe_held", 10)
            .await
            .unwrap();
        assert_eq!(held.len(), 1, "{}", db.backend);
        assert_eq!(held[0].address.as_deref(), Some("dora@forged.example"));
        assert!(held[0].evidence_id.is_some(), "the mail is kept");
        // Staff decide on the held one: accepted, it is an unverified unsubscribe with its mail.
        use bouncegate::store::{ReviewDecision, ReviewOutcome};
        let held_id = held[0].id;
        assert!(
            g.service
                .review_held(held_id, ReviewDecision::Accepted, "test", " ")
                .await
                .is_err()
        );
        let decided = g
            .service
            .review_held(
                held_id,
                ReviewDecision::Accepted,
                "test",
                "called the customer",
            )
            .await
            .unwrap();
        assert!(
            matches!(decided, ReviewOutcome::Decided(Some(_))),
            "{decided:?}"
        );
        assert_eq!(
            source("dora@forged.example").await,
            Some("unverified_mail"),
            "{}",
            db.backend
        );
        let status = g.service.status("dora@forged.example").await.unwrap();
        assert_eq!(status.suppressions[0].evidence_id, held[0].evidence_id);
        assert_eq!(
            g.service
                .review_held(held_id, ReviewDecision::Dismissed, "test", "again")
                .await
                .unwrap(),
            ReviewOutcome::AlreadyDecided
        );
        assert!(g.service.held_unsubscribes().await.unwrap().is_empty());
        // 6: an authenticated one still counts past the limit.
        let late = format!("From: emil@spf.example\r\n{body}");
        assert!(
            smtp(&g, "emil@spf.example", &rcpt, &late)
                .await
                .starts_with("250")
        );
        assert_eq!(
            source("emil@spf.example").await,
            Some("unsubscribe_mail"),
            "{}",
            db.backend
        );

        // Staff may lift the unverified one, with a note; the owner's stay.
        let lift = |note: Option<&'static str>| bouncegate::service::LiftRequest {
            reason: None,
            company: None,
            brand: None,
            channel: None,
            lifted_by: "test".into(),
            note: note.map(Into::into),
            id: None,
        };
        assert!(
            g.service
                .lift("victim@forged.example", &lift(None))
                .await
                .is_err()
        );
        let lifted = g
            .service
            .lift(
                "victim@forged.example",
                &lift(Some("the customer says it was not them")),
            )
            .await
            .unwrap();
        assert_eq!(lifted.lifted.len(), 1, "{}", db.backend);
        assert!(g.allowed("victim@forged.example", None).await.0);
        let owners = g
            .service
            .lift("anna@spf.example", &lift(Some("staff try")))
            .await
            .unwrap();
        assert_eq!(
            (owners.lifted.len(), owners.refused.len()),
            (0, 1),
            "{}",
            db.backend
        );
        g.handle.shutdown().await;
    }
}

/// PostgreSQL dropped and re-created under a running gateway: the schema comes back by itself
/// (with the installation secret), and mails are stored again without a restart.
#[tokio::test]
async fn a_recreated_postgres_database_is_migrated_again_without_a_restart() {
    for db in databases().await {
        let Some((base, schema)) = db.postgres_schema() else {
            continue;
        };
        let g = start(&db, "").await;
        let token = g
            .send("again@example.net", None, "r1", TokenKind::Bounce)
            .await;
        let secret = g.service.store().secret().to_hex();
        let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
        sqlx::raw_sql(&format!(
            "DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let mail = dsn(
            "again@example.net",
            "failed",
            "5.1.1",
            "550 5.1.1 user unknown",
            "r1",
        );
        let mut replies = Vec::new();
        for _ in 0..3 {
            let reply = smtp(&g, "", &format!("b+{token}@{DOMAIN}"), &mail).await;
            let stored = reply.starts_with("250");
            replies.push(reply);
            if stored {
                break;
            }
        }
        assert!(
            replies.last().unwrap().starts_with("250") && replies.len() <= 2,
            "at most one 451, then stored: {replies:?}"
        );
        let row: (String,) = sqlx::query_as(&format!(
            "SELECT value FROM {schema}.settings WHERE key = 'installation_secret'"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(row.0, secret, "the instance's secret is put back");
        let (count,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {schema}.evidence"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(count, 1);
        g.handle.shutdown().await;
    }
}
