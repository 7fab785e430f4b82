//! The relay end to end: real SMTP on both sides (a client into the gateway, the gateway into a
//! recording upstream server in this test), the whole gateway running in-process on SQLite and
//! PostgreSQL with the same bodies.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bouncegate::config::Config;
use bouncegate::model::{Channel, MailClass, Reason, Source};
use bouncegate::serve::Gateway;
use bouncegate::service::{CheckRequest, SuppressRequest, SuppressionService};
use bouncegate::smtp::{
    ListenerConfig, MailFrom, MessageSink, RcptTo, ReceivedMessage, ServerHandle, SessionInfo,
    SinkError, SmtpServer,
};
use common::{ORGANISATION, TestDb, databases};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DOMAIN: &str = "bounces.example.org";

/// The upstream: takes every recipient and keeps what it got.
#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<ReceivedMessage>>,
}

impl MessageSink for Recorder {
    async fn rcpt(&self, _: &SessionInfo, _: &MailFrom, to: &RcptTo) -> Result<(), SinkError> {
        // The upstream's own verdicts, as a real one gives them.
        if to.address.starts_with("nosuchuser@") {
            return Err(SinkError::Reply(bouncegate::smtp::Reply::UNKNOWN_RECIPIENT.with_text(
                "<nosuchuser@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
            )));
        }
        if to.address.starts_with("relaydenied@") {
            return Err(SinkError::Reply(
                bouncegate::smtp::Reply::REFUSED
                    .with_text("<relaydenied@example.net>: Relay access denied"),
            ));
        }
        if to.address.starts_with("greylisted@") {
            return Err(SinkError::Reply(
                bouncegate::smtp::Reply::STORE_FAILED.with_text("Greylisted, try again later"),
            ));
        }
        Ok(())
    }

    async fn data(&self, message: ReceivedMessage) -> Result<(), SinkError> {
        self.messages.lock().unwrap().push(message);
        Ok(())
    }
}

impl Recorder {
    fn received(&self) -> Vec<ReceivedMessage> {
        self.messages.lock().unwrap().clone()
    }
}

async fn upstream_on(address: SocketAddr) -> (ServerHandle, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let server = SmtpServer::bind(
        ListenerConfig::new(address, "upstream.test"),
        recorder.clone(),
    )
    .await
    .unwrap();
    (server.spawn(), recorder)
}

/// A port nothing listens on yet.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const CLIENTS: &str = r#"
[[relay.clients]]
user = "news"
password = "s3cret"
company = "acme"
brands = ["news", "shop"]

[[relay.clients]]
user = "orders"
password = "0rders"
company = "acme"
brands = ["shop"]
class = "service"

[[relay.clients]]
user = "weekly"
password = "w33kly"
company = "globex"
class = "promotional"
"#;

fn config(db: &TestDb, upstream_port: u16, extra: &str) -> Arc<Config> {
    let text = format!(
        "[database]\nurl = {:?}\nmax_connections = 4\n\
         [inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\ndns_resolver = \"127.0.0.1:9\"\n\
         [http]\npublic_url = \"https://unsub.example.org\"\nlisten = \"127.0.0.1:0\"\n\
         [relay]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:{upstream_port}\"\nretry_schedule = [\"1s\"]\n{extra}\n\
         {CLIENTS}\n{ORGANISATION}",
        db.url
    );
    Arc::new(Config::parse(&text, std::path::Path::new("relay-test.toml")).unwrap())
}

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).await.unwrap();
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        let banner = client.reply().await;
        assert!(banner.starts_with("220"), "{banner}");
        client
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                .await
                .expect("a reply in time")
                .unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    async fn command(&mut self, text: &str) -> String {
        self.writer
            .write_all(format!("{text}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// EHLO and AUTH PLAIN.
    async fn login(address: SocketAddr, user: &str, password: &str) -> Client {
        let mut client = Client::connect(address).await;
        let ehlo = client.command("EHLO sender.test").await;
        assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
        let token = data_encoding::BASE64.encode(format!("\0{user}\0{password}").as_bytes());
        let reply = client.command(&format!("AUTH PLAIN {token}")).await;
        assert!(reply.starts_with("235"), "{reply}");
        client
    }

    /// One mail; the reply to the end of DATA, or the first refusal.
    async fn send(&mut self, from: &str, to: &[&str], message: &str) -> String {
        let reply = self.command(&format!("MAIL FROM:<{from}>")).await;
        if !reply.starts_with("250") {
            return reply;
        }
        let mut accepted = 0;
        let mut last = String::new();
        for rcpt in to {
            last = self.command(&format!("RCPT TO:<{rcpt}>")).await;
            if last.starts_with("250") {
                accepted += 1;
            }
        }
        if accepted == 0 {
            self.command("RSET").await;
            return last;
        }
        let reply = self.command("DATA").await;
        assert!(reply.starts_with("354"), "{reply}");
        self.writer.write_all(message.as_bytes()).await.unwrap();
        self.command(".").await
    }
}

fn newsletter(brand: Option<&str>, class: Option<&str>, to: &str) -> String {
    let mut headers = format!(
        "From: Acme News <news@acme.example>\r\nTo: {to}\r\nSubject: November news\r\nMessage-ID: <nl-{}@acme.example>\r\n",
        rand::random::<u32>()
    );
    if let Some(brand) = brand {
        headers.push_str(&format!("X-Bouncegate-Brand: {brand}\r\n"));
    }
    if let Some(class) = class {
        headers.push_str(&format!("X-Bouncegate-Class: {class}\r\n"));
    }
    headers.push_str("List-Unsubscribe: <mailto:sender-own@acme.example>\r\n\r\nHello.\r\n");
    headers
}

async fn suppress(
    service: &SuppressionService,
    address: &str,
    reason: Reason,
    company: Option<&str>,
    brand: Option<&str>,
) {
    service
        .suppress(&SuppressRequest {
            address: address.into(),
            reason,
            company: company.map(Into::into),
            brand: brand.map(Into::into),
            channel: Channel::Email,
            note: Some("test".into()),
            source: Source::Cli,
            created_at: None,
            created_by: None,
            expires_at: None,
        })
        .await
        .unwrap();
}

/// The verdict on promotional mail from `company` (and `brand`) to `address`.
async fn promotional(
    service: &SuppressionService,
    address: &str,
    company: &str,
    brand: Option<&str>,
) -> bouncegate::policy::Verdict {
    let request = CheckRequest {
        company,
        brand,
        class: MailClass::Promotional,
        channel: Channel::Email,
    };
    service.check(address, request).await.unwrap()
}

/// Waits until the upstream has `n` messages.
async fn wait_for(recorder: &Recorder, n: usize) -> Vec<ReceivedMessage> {
    for _ in 0..200 {
        let received = recorder.received();
        if received.len() >= n {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the upstream got {} of {n} messages",
        recorder.received().len()
    );
}

fn text(message: &ReceivedMessage) -> String {
    String::from_utf8_lossy(&message.data).into_owned()
}

#[tokio::test]
async fn promotional_mail_to_the_unsubscribed_stops_and_service_mail_goes_through() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let service = SuppressionService::new(gateway.store.clone(), config.clone());
        suppress(
            &service,
            "gone@example.net",
            Reason::Unsubscribe,
            Some("acme"),
            None,
        )
        .await;
        suppress(
            &service,
            "bounced@example.net",
            Reason::HardBounce,
            None,
            None,
        )
        .await;
        suppress(
            &service,
            "newsonly@example.net",
            Reason::Unsubscribe,
            Some("acme"),
            Some("news"),
        )
        .await;
        let relay = gateway.relay.local_addr();
        let mut c = Client::login(relay, "news", "s3cret").await;

        // Company-wide opt-out: the promotional mail stops, for every brand.
        for brand in ["news", "shop"] {
            let reply = c
                .send(
                    "news@acme.example",
                    &["gone@example.net"],
                    &newsletter(Some(brand), None, "gone@example.net"),
                )
                .await;
            assert!(
                reply.starts_with("550 5.7.1")
                    && reply.contains("recipient unsubscribed (company:acme); not sent"),
                "{}: {brand}: {reply}",
                db.backend
            );
        }
        // Bounced addresses: blocked for promotional mail.
        let reply = c
            .send(
                "news@acme.example",
                &["bounced@example.net"],
                &newsletter(Some("news"), None, "x"),
            )
            .await;
        assert!(reply.contains("recipient bounced (global)"), "{reply}");
        // A brand opt-out blocks that brand only.
        let reply = c
            .send(
                "news@acme.example",
                &["newsonly@example.net"],
                &newsletter(Some("news"), None, "x"),
            )
            .await;
        assert!(reply.starts_with("550 5.7.1"), "{reply}");
        let reply = c
            .send(
                "news@acme.example",
                &["newsonly@example.net"],
                &newsletter(Some("shop"), None, "x"),
            )
            .await;
        assert!(reply.starts_with("250"), "the other brand goes: {reply}");
        // Service mail to the unsubscribed goes through.
        let reply = c
            .send(
                "news@acme.example",
                &["gone@example.net"],
                &newsletter(Some("shop"), Some("service"), "gone@example.net"),
            )
            .await;
        assert!(reply.starts_with("250"), "{reply}");
        // A mixed list: the suppressed one is dropped, the rest queued.
        let reply = c
            .send(
                "news@acme.example",
                &["fresh@example.net", "gone@example.net"],
                &newsletter(Some("news"), None, "list"),
            )
            .await;
        assert!(reply.starts_with("250"), "{reply}");

        let received = wait_for(&recorder, 3).await;
        assert_eq!(received.len(), 3, "{}", db.backend);
        let to: Vec<String> = received
            .iter()
            .map(|m| m.rcpt_to[0].address.clone())
            .collect();
        assert!(to.contains(&"newsonly@example.net".to_string()));
        assert!(to.contains(&"gone@example.net".to_string()));
        assert!(to.contains(&"fresh@example.net".to_string()));
        for message in &received {
            let body = text(message);
            assert!(
                message.mail_from.address.starts_with("b+")
                    && message.mail_from.address.ends_with(&format!("@{DOMAIN}")),
                "VERP sender: {}",
                message.mail_from.address
            );
            assert_eq!(message.rcpt_to.len(), 1, "one transaction per recipient");
            assert!(
                body.starts_with("Received: from sender.test ([127.0.0.1])\r\n\tby bounces.example.org (bouncegate) with ESMTPA;"),
                "a trace line: {body}"
            );
            assert!(
                !body.contains("X-Bouncegate"),
                "control headers removed: {body}"
            );
            assert!(
                !body.contains("sender-own@acme.example"),
                "the sender's List-Unsubscribe is replaced"
            );
            let promotional = message.rcpt_to[0].address != "gone@example.net";
            assert_eq!(
                body.contains("List-Unsubscribe: <https://unsub.example.org/u/"),
                promotional,
                "{body}"
            );
            assert_eq!(
                body.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
                promotional
            );
            if promotional {
                assert!(body.contains("mailto:unsubscribe+"), "{body}");
            }
        }
        let blocked = gateway.store.blocked(None, 100).await.unwrap();
        assert_eq!(blocked.len(), 5, "{}: {blocked:?}", db.backend);
        assert!(
            blocked
                .iter()
                .all(|b| b.client == "news" && b.stage == "data")
        );
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

#[tokio::test]
async fn no_open_relay_wrong_passwords_and_fixed_class_refusals_at_rcpt() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "max_auth_failures = 3");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let service = SuppressionService::new(gateway.store.clone(), config.clone());
        let relay = gateway.relay.local_addr();

        // Unauthenticated: nothing, whatever the tricks.
        let mut c = Client::connect(relay).await;
        c.command("EHLO spammer.test").await;
        for from in ["news@acme.example", "", "postmaster@bounces.example.org"] {
            let reply = c.command(&format!("MAIL FROM:<{from}>")).await;
            assert!(reply.starts_with("530 5.7.0"), "{from}: {reply}");
        }
        let reply = c.command("RCPT TO:<victim@example.com>").await;
        assert!(reply.starts_with("503"), "{reply}");
        let reply = c
            .command("RCPT TO:<@relay.example:victim@example.com>")
            .await;
        assert!(reply.starts_with("5"), "source route: {reply}");
        // A credential that fixes the class and has one brand: refused at RCPT.
        suppress(
            &service,
            "nomore@example.net",
            Reason::Unsubscribe,
            Some("globex"),
            None,
        )
        .await;
        let mut weekly = Client::login(relay, "weekly", "w33kly").await;
        weekly.command("MAIL FROM:<weekly@globex.example>").await;
        let reply = weekly.command("RCPT TO:<nomore@example.net>").await;
        assert!(
            reply.starts_with("550 5.7.1") && reply.contains("unsubscribed (company:globex)"),
            "{}: {reply}",
            db.backend
        );
        let blocked = gateway.store.blocked(None, 10).await.unwrap();
        assert_eq!(blocked[0].stage, "rcpt");
        assert!(
            weekly
                .command("RCPT TO:<someone@example.net>")
                .await
                .starts_with("250")
        );
        weekly.command("QUIT").await;

        // Wrong passwords, then the lock-out.
        let bad = data_encoding::BASE64.encode(b"\0news\0guess");
        for _ in 0..2 {
            assert!(
                c.command(&format!("AUTH PLAIN {bad}"))
                    .await
                    .starts_with("535 5.7.8")
            );
        }
        let reply = c.command(&format!("AUTH PLAIN {bad}")).await;
        assert!(reply.starts_with("421"), "{reply}");
        let mut again = Client::connect(relay).await;
        again.command("EHLO c").await;
        let good = data_encoding::BASE64.encode(b"\0news\0s3cret");
        let reply = again.command(&format!("AUTH PLAIN {good}")).await;
        assert!(
            reply.starts_with("421"),
            "locked out even with the right password: {reply}"
        );
        assert!(recorder.received().is_empty());
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_queued() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let relay = gateway.relay.local_addr();
        let mut c = Client::login(relay, "news", "s3cret").await;
        let to = ["reader@example.net"];
        let cases = [
            (
                "not a header at all\r\n\r\nbody\r\n".to_string(),
                "554 5.6.0",
            ),
            (newsletter(Some("weekly"), None, "x"), "550 5.7.1"),
            (newsletter(Some("nonsense"), None, "x"), "550 5.7.1"),
            (newsletter(None, None, "x"), "550 5.7.1"),
            (
                newsletter(Some("news"), None, "x")
                    .replace("news@acme.example", "ceo@globex.example"),
                "550 5.7.1",
            ),
        ];
        for (message, expected) in cases {
            let reply = c.send("news@acme.example", &to, &message).await;
            assert!(
                reply.starts_with(expected),
                "{}: {reply}\n{message}",
                db.backend
            );
        }
        // Unknown class header: promotional, so a brand is needed.
        let reply = c
            .send(
                "news@acme.example",
                &to,
                &newsletter(None, Some("urgent"), "x"),
            )
            .await;
        assert!(reply.starts_with("550 5.7.1"), "{reply}");
        let summary = gateway.store.queue_summary().await.unwrap();
        assert_eq!(summary.queued + summary.delivered, 0, "{}", db.backend);
        assert!(recorder.received().is_empty());
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

/// SMTP smuggling: a bare LF before a dot does not end the data; what reaches the upstream is one
/// message with CRLF line ends only.
#[tokio::test]
async fn a_bare_lf_smuggling_attempt_reaches_the_upstream_as_one_mail() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let mut c = Client::login(gateway.relay.local_addr(), "news", "s3cret").await;
        let smuggled = newsletter(Some("news"), None, "a@example.net").replace(
            "Hello.\r\n",
            "Hello.\n.\nMAIL FROM:<ceo@acme.example>\nRCPT TO:<victim@example.net>\nDATA\nSmuggled\r\n",
        );
        let reply = c
            .send("news@acme.example", &["a@example.net"], &smuggled)
            .await;
        assert!(reply.starts_with("250"), "{reply}");
        let received = wait_for(&recorder, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(recorder.received().len(), 1, "{}", db.backend);
        let body = &received[0].data;
        let bare_lf =
            body.first() == Some(&b'\n') || body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r');
        assert!(!bare_lf, "no bare LF reaches the upstream");
        assert!(String::from_utf8_lossy(body).contains("Smuggled"));
        assert_eq!(received[0].rcpt_to[0].address, "a@example.net");
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

/// The upstream is down: the mail waits; an opt-out recorded meanwhile stops it; the rest is
/// delivered once the upstream is back, also across a restart.
#[tokio::test]
async fn queued_mail_waits_for_the_upstream_honours_late_opt_outs_and_survives_a_restart() {
    for db in databases().await {
        let port = free_port();
        let config = config(&db, port, "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let service = SuppressionService::new(gateway.store.clone(), config.clone());
        let mut c = Client::login(gateway.relay.local_addr(), "news", "s3cret").await;
        for to in ["late@example.net", "waits@example.net"] {
            let reply = c
                .send(
                    "news@acme.example",
                    &[to],
                    &newsletter(Some("news"), None, to),
                )
                .await;
            assert!(reply.starts_with("250"), "{reply}");
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let summary = gateway.store.queue_summary().await.unwrap();
        assert_eq!(
            summary.queued, 2,
            "{}: waiting for the upstream",
            db.backend
        );
        suppress(
            &service,
            "late@example.net",
            Reason::Unsubscribe,
            Some("acme"),
            Some("news"),
        )
        .await;
        // The operator's view and controls, from the command line on the same store.
        let cli = common::write_config(&db, "");
        let queue = common::json(&common::bouncegate(&cli, &["queue", "--json"]));
        assert_eq!(queue["queued"], 2, "{}: {queue}", db.backend);
        // An item under an attempt is the worker's until it ends: hold takes it at the next try.
        let mut held = serde_json::Value::Null;
        for _ in 0..50 {
            common::bouncegate(&cli, &["queue", "hold", "--all"]);
            held = common::json(&common::bouncegate(&cli, &["queue", "--json"]));
            if held["held"] == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            (held["queued"].as_i64(), held["held"].as_i64()),
            (Some(0), Some(2)),
            "{held}"
        );
        common::expect_exit(
            &common::bouncegate(&cli, &["queue", "release", "--all"]),
            0,
            "release",
        );
        let show = common::bouncegate(&cli, &["queue", "show", "1", "--json"]);
        common::expect_exit(&show, 0, "show");
        assert!(
            common::json(&show)["last_error"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        );
        gateway.stop().await;

        // A restart with the upstream back: what waited is delivered, the late opt-out is not.
        let (upstream, recorder) = upstream_on(format!("127.0.0.1:{port}").parse().unwrap()).await;
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let service = SuppressionService::new(gateway.store.clone(), config.clone());
        let received = wait_for(&recorder, 1).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let received_now = recorder.received();
        assert_eq!(
            received_now.len(),
            1,
            "{}: {:?}",
            db.backend,
            received.iter().map(|m| &m.rcpt_to).collect::<Vec<_>>()
        );
        assert_eq!(received_now[0].rcpt_to[0].address, "waits@example.net");
        let summary = gateway.store.queue_summary().await.unwrap();
        assert_eq!(
            (summary.delivered, summary.dropped, summary.queued),
            (1, 1, 0),
            "{}",
            db.backend
        );
        let blocked = gateway.store.blocked(None, 10).await.unwrap();
        assert_eq!(blocked[0].stage, "queue");
        let cli = common::write_config(&db, "");
        let listed = common::bouncegate(&cli, &["blocked", "--json"]);
        common::expect_exit(&listed, 0, "blocked");
        let first: serde_json::Value =
            serde_json::from_str(common::stdout(&listed).lines().next().unwrap()).unwrap();
        assert_eq!(first["stage"], "queue");
        assert!(
            first["reason"]
                .as_str()
                .unwrap()
                .contains("unsubscribed (brand:acme/news)")
        );
        let check = promotional(&service, "waits@example.net", "acme", Some("news")).await;
        assert!(check.allowed);
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

/// A hard bounce to the return path the relay set suppresses that recipient; a forged one to a
/// made-up token suppresses nobody.
#[tokio::test]
async fn a_bounce_to_the_verp_address_suppresses_its_recipient() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let service = SuppressionService::new(gateway.store.clone(), config.clone());
        let mut c = Client::login(gateway.relay.local_addr(), "news", "s3cret").await;
        let reply = c
            .send(
                "news@acme.example",
                &["dead@example.net"],
                &newsletter(Some("news"), None, "dead@example.net"),
            )
            .await;
        assert!(reply.starts_with("250"), "{reply}");
        let received = wait_for(&recorder, 1).await;
        let return_path = received[0].mail_from.address.clone();
        let dsn = "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
             --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
             Final-Recipient: rfc822; dead@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B--\r\n";
        let mut mx = Client::connect(gateway.inbound.local_addr()).await;
        mx.command("EHLO mx.example.net").await;
        let forged = format!("b+{}@{DOMAIN}", "a".repeat(34));
        for rcpt in [forged.as_str(), return_path.as_str()] {
            let reply = mx
                .send(
                    "",
                    &[rcpt],
                    &dsn.replace("dead@", if rcpt == forged { "victim@" } else { "dead@" }),
                )
                .await;
            assert!(reply.starts_with("250"), "{rcpt}: {reply}");
        }
        let allowed = async |address: &str| {
            promotional(&service, address, "acme", Some("news"))
                .await
                .allowed
        };
        assert!(
            !allowed("dead@example.net").await,
            "{}: the VERP bounce suppresses",
            db.backend
        );
        assert!(
            allowed("victim@example.net").await,
            "{}: the forged one does not",
            db.backend
        );
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

/// Runs `openssl` with `args`; its standard output.
fn openssl(args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The DKIM key record of a PEM private key (RSA: the SubjectPublicKeyInfo; Ed25519: the raw key).
fn key_record(pem: &std::path::Path, ed25519: bool) -> String {
    let der = openssl(&[
        "pkey",
        "-in",
        pem.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let (algorithm, key) = if ed25519 {
        ("ed25519", &der[der.len() - 32..])
    } else {
        ("rsa", &der[..])
    };
    format!(
        "v=DKIM1; k={algorithm}; p={}",
        data_encoding::BASE64.encode(key)
    )
}

/// Relayed mail is signed with the From domain's key (Ed25519, RSA PKCS#8, RSA PKCS#1), and an
/// independent verifier (dkimpy) agrees, List-Unsubscribe included.
#[tokio::test]
async fn dkim_signatures_verify_with_an_independent_verifier() {
    let python_has_dkimpy = std::process::Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .status()
        .is_ok_and(|s| s.success());
    if !python_has_dkimpy {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install dkimpy and pynacl (pip install dkimpy pynacl)"
        );
        eprintln!("skipping: python3 with dkimpy is not installed (pip install dkimpy pynacl)");
        return;
    }
    for db in databases().await {
        let keys = tempfile::tempdir().unwrap();
        let path = |name: &str| keys.path().join(name);
        std::fs::write(
            path("ed.pem"),
            openssl(&["genpkey", "-algorithm", "ed25519"]),
        )
        .unwrap();
        std::fs::write(
            path("rsa8.pem"),
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ]),
        )
        .unwrap();
        std::fs::write(
            path("rsa1.pem"),
            openssl(&["genrsa", "-traditional", "2048"]),
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(path("rsa1.pem"))
                .unwrap()
                .contains("BEGIN RSA PRIVATE KEY")
        );
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let organisation = format!(
            "[[companies]]\nid = \"acme\"\ndomains = [\"acme.example\"]\nbrands = [\"news\", \"shop\"]\n\
             dkim = [{{ domain = \"acme.example\", selector = \"ed\", key_file = {:?} }},\n\
                     {{ domain = \"rsa.acme.example\", selector = \"r8\", key_file = {:?} }},\n\
                     {{ domain = \"pkcs1.acme.example\", selector = \"r1\", key_file = {:?} }}]\n\
             [[companies]]\nid = \"globex\"\ndomains = [\"globex.example\"]\n",
            path("ed.pem"),
            path("rsa8.pem"),
            path("rsa1.pem")
        );
        let text = format!(
            "[database]\nurl = {:?}\n[inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[relay]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:{}\"\n\
             [[relay.clients]]\nuser = \"news\"\npassword = \"s3cret\"\ncompany = \"acme\"\nbrands = [\"news\"]\n{organisation}",
            db.url,
            upstream.local_addr().port()
        );
        let config = Arc::new(Config::parse(&text, std::path::Path::new("dkim.toml")).unwrap());
        let gateway = Gateway::start(config).await.unwrap();
        let mut c = Client::login(gateway.relay.local_addr(), "news", "s3cret").await;
        for (domain, to) in [
            ("acme.example", "ed@example.net"),
            ("rsa.acme.example", "r8@example.net"),
            ("pkcs1.acme.example", "r1@example.net"),
        ] {
            let mail = newsletter(Some("news"), None, to)
                .replace("news@acme.example", &format!("news@{domain}"))
                .replace("Subject: November news\r\n", "Subject: November news\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n");
            let reply = c.send(&format!("news@{domain}"), &[to], &mail).await;
            assert!(reply.starts_with("250"), "{reply}");
        }
        let received = wait_for(&recorder, 3).await;
        let records = serde_json::json!({
            "ed._domainkey.acme.example.": key_record(&path("ed.pem"), true),
            "r8._domainkey.rsa.acme.example.": key_record(&path("rsa8.pem"), false),
            "r1._domainkey.pkcs1.acme.example.": key_record(&path("rsa1.pem"), false),
        });
        std::fs::write(path("records.json"), records.to_string()).unwrap();
        for message in &received {
            let text = String::from_utf8_lossy(&message.data).to_string();
            assert!(text.starts_with("DKIM-Signature:"), "{text}");
            let header = text
                .split("\r\n\r\n")
                .next()
                .unwrap()
                .replace("\r\n\t", " ")
                .replace("\r\n ", " ");
            let h = header
                .split(';')
                .find(|t| t.trim().starts_with("h="))
                .unwrap()
                .to_ascii_lowercase();
            let signed: Vec<String> = h
                .trim()
                .trim_start_matches("h=")
                .split(':')
                .map(|name| name.split_whitespace().collect::<String>())
                .collect();
            for name in ["list-unsubscribe", "list-unsubscribe-post"] {
                assert_eq!(
                    signed.iter().filter(|n| *n == name).count(),
                    2,
                    "{name} oversigned: {signed:?}"
                );
            }
            let file = path("message.eml");
            std::fs::write(&file, &message.data).unwrap();
            let dkimpy = |file: &std::path::Path| {
                std::process::Command::new("python3")
                    .args([
                        "-c",
                        "import dkim, json, sys\n\
                         records = json.load(open(sys.argv[2]))\n\
                         def dns(name, timeout=5):\n    return records.get(name.decode(), '').encode()\n\
                         ok = dkim.verify(open(sys.argv[1], 'rb').read(), dnsfunc=dns)\n\
                         sys.exit(0 if ok else 1)",
                        file.to_str().unwrap(),
                        path("records.json").to_str().unwrap(),
                    ])
                    .output()
                    .unwrap()
            };
            let verify = dkimpy(&file);
            assert!(
                verify.status.success(),
                "{}: dkimpy says the signature of the copy to {} does not verify: {}\n{text}",
                db.backend,
                message.rcpt_to[0].address,
                String::from_utf8_lossy(&verify.stderr)
            );
            // The verifier does check: a changed body fails.
            let tampered = path("tampered.eml");
            std::fs::write(&tampered, text.replace("Hello.", "Hello!")).unwrap();
            assert!(!dkimpy(&tampered).status.success(), "a changed body fails");
        }
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

/// A 5xx from the upstream is a bounce with the MX's consequences (a hard bounce suppresses); a
/// 4xx is retried.
#[tokio::test]
async fn the_upstreams_refusal_is_recorded_as_a_bounce_and_a_deferral_is_retried() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let service = SuppressionService::new(gateway.store.clone(), config.clone());
        let mut c = Client::login(gateway.relay.local_addr(), "news", "s3cret").await;
        for to in [
            "nosuchuser@example.net",
            "greylisted@example.net",
            "fine@example.net",
            "relaydenied@example.net",
        ] {
            let reply = c
                .send(
                    "news@acme.example",
                    &[to],
                    &newsletter(Some("news"), None, to),
                )
                .await;
            assert!(reply.starts_with("250"), "{reply}");
        }
        wait_for(&recorder, 1).await;
        let mut summary = gateway.store.queue_summary().await.unwrap();
        for _ in 0..100 {
            if summary.failed == 2 && summary.delivered == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            summary = gateway.store.queue_summary().await.unwrap();
        }
        assert_eq!(
            (summary.delivered, summary.failed, summary.queued),
            (1, 2, 1),
            "{}: {summary:?}",
            db.backend
        );
        assert!(
            summary.recent_failures.iter().all(|f| f
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("550")),
            "{:?}",
            summary.recent_failures
        );
        // The refusal is a hard bounce of that recipient, verified by its own return path.
        let mut blocked = false;
        for _ in 0..100 {
            let verdict = promotional(&service, "nosuchuser@example.net", "globex", None).await;
            if !verdict.allowed {
                assert_eq!(
                    verdict.blocking[0].reason.as_str(),
                    "hard_bounce",
                    "{verdict:?}"
                );
                blocked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(blocked, "{}: the 550 suppressed the address", db.backend);
        let status = service.status("nosuchuser@example.net").await.unwrap();
        let evidence = service
            .evidence(status.suppressions[0].evidence_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&evidence.raw)
                .contains("User unknown in virtual mailbox table")
        );
        // A refusal about this side (relaying denied) fails the mail but bounces nobody.
        let relay_denied = promotional(&service, "relaydenied@example.net", "globex", None).await;
        assert!(relay_denied.allowed, "{}: {relay_denied:?}", db.backend);
        let store = gateway.store.clone();
        let denied = bouncegate::address::EmailAddress::parse("relaydenied@example.net").unwrap();
        let events = store.events_of(&store.hash(&denied)).await.unwrap();
        assert!(
            events.is_empty(),
            "{}: no bounce event: {events:?}",
            db.backend
        );
        let dead = bouncegate::address::EmailAddress::parse("nosuchuser@example.net").unwrap();
        assert!(
            !store
                .events_of(&store.hash(&dead))
                .await
                .unwrap()
                .is_empty()
        );
        // The 4xx waits for its retry.
        let waiting = gateway.store.queue_entry(2).await.unwrap().unwrap();
        assert_eq!(waiting.state, "queued");
        assert!(waiting.last_error.unwrap().starts_with("451"));
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

/// Two gateways on one store (as two instances share one PostgreSQL) deliver each mail once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_on_one_store_deliver_each_mail_exactly_once() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(
            &db,
            upstream.local_addr().port(),
            "upstream_connections = 4",
        );
        let first = Gateway::start(config.clone()).await.unwrap();
        let second = Gateway::start(config.clone()).await.unwrap();
        const MAILS: usize = 60;
        let mut senders = Vec::new();
        for (n, gateway) in [&first, &second].into_iter().enumerate() {
            let relay = gateway.relay.local_addr();
            senders.push(tokio::spawn(async move {
                let mut c = Client::login(relay, "news", "s3cret").await;
                for i in 0..MAILS / 2 {
                    let to = format!("r{n}-{i}@example.net");
                    let reply = c
                        .send(
                            "news@acme.example",
                            &[&to],
                            &newsletter(Some("news"), None, &to),
                        )
                        .await;
                    assert!(reply.starts_with("250"), "{reply}");
                }
            }));
        }
        for sender in senders {
            sender.await.unwrap();
        }
        let received = wait_for(&recorder, MAILS).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let received_now = recorder.received();
        let mut recipients: Vec<String> = received_now
            .iter()
            .map(|m| m.rcpt_to[0].address.clone())
            .collect();
        recipients.sort();
        let before = recipients.len();
        recipients.dedup();
        assert_eq!(
            (before, recipients.len()),
            (MAILS, MAILS),
            "{}: every mail once (first count {})",
            db.backend,
            received.len()
        );
        first.stop().await;
        second.stop().await;
        upstream.shutdown().await;
    }
}

/// Real clients: lettre and swaks authenticate and relay.
#[tokio::test]
async fn lettre_and_swaks_relay_with_auth() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let relay = gateway.relay.local_addr();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(relay.port())
            .credentials(Credentials::new("news".into(), "s3cret".into()))
            .authentication(vec![Mechanism::Login])
            .build();
        let envelope = lettre::address::Envelope::new(
            Some("news@acme.example".parse().unwrap()),
            vec!["lettre@example.net".parse().unwrap()],
        )
        .unwrap();
        transport
            .send_raw(
                &envelope,
                newsletter(Some("news"), None, "lettre@example.net").as_bytes(),
            )
            .await
            .unwrap();
        let wrong = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(relay.port())
            .credentials(Credentials::new("news".into(), "nope".into()))
            .build();
        assert!(
            wrong
                .send_raw(&envelope, b"Subject: x\r\n\r\nx\r\n")
                .await
                .is_err()
        );

        let swaks = ["/usr/bin/swaks", "/usr/local/bin/swaks"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let expected = match swaks {
            Some(swaks) => {
                let mail = newsletter(Some("news"), None, "swaks@example.net");
                let file = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(file.path(), &mail).unwrap();
                let port = relay.port().to_string();
                let output = tokio::task::spawn_blocking({
                    let swaks = swaks.to_string();
                    let path = file.path().to_path_buf();
                    move || {
                        std::process::Command::new(swaks)
                            .args(["--server", "127.0.0.1", "--port", &port, "--auth", "PLAIN"])
                            .args(["--auth-user", "news", "--auth-password", "s3cret"])
                            .args(["--from", "news@acme.example", "--to", "swaks@example.net"])
                            .arg("--data")
                            .arg(&path)
                            .output()
                            .unwrap()
                    }
                })
                .await
                .unwrap();
                assert!(
                    output.status.success(),
                    "swaks: {}",
                    String::from_utf8_lossy(&output.stdout)
                );
                2
            }
            None => {
                assert!(std::env::var_os("CI").is_none(), "CI installs swaks");
                eprintln!("skipping the swaks part: swaks is not installed");
                1
            }
        };
        let received = wait_for(&recorder, expected).await;
        let mut to: Vec<&str> = received
            .iter()
            .map(|m| m.rcpt_to[0].address.as_str())
            .collect();
        to.sort();
        assert!(to.contains(&"lettre@example.net"), "{to:?}");
        gateway.stop().await;
        upstream.shutdown().await;
    }
}

/// A store that fails answers 451 and queues nothing half.
#[tokio::test]
async fn a_store_failure_is_a_451_and_nothing_is_half_queued() {
    for db in databases().await {
        let (upstream, recorder) = upstream_on("127.0.0.1:0".parse().unwrap()).await;
        let config = config(&db, upstream.local_addr().port(), "");
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let mut c = Client::login(gateway.relay.local_addr(), "news", "s3cret").await;
        gateway.store.close().await;
        let reply = c
            .send(
                "news@acme.example",
                &["late@example.net"],
                &newsletter(Some("news"), None, "x"),
            )
            .await;
        assert!(reply.starts_with("451 4.3.0"), "{}: {reply}", db.backend);
        gateway.stop().await;
        let store = bouncegate::store::Store::open(&db.url, 2).await.unwrap();
        let summary = store.queue_summary().await.unwrap();
        assert_eq!(summary.queued + summary.delivered, 0, "{}", db.backend);
        let sends = store.sends_of_message("x").await.unwrap();
        assert!(sends.is_empty());
        store.close().await;
        assert!(recorder.received().is_empty());
        upstream.shutdown().await;
    }
}

/// An upstream that wants AUTH: `relay` / `upw`.
struct UpstreamLogin;

impl bouncegate::smtp::Authenticator for UpstreamLogin {
    async fn authenticate(
        &self,
        _: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> bouncegate::smtp::AuthOutcome {
        if (user, password) == ("relay", "upw") {
            bouncegate::smtp::AuthOutcome::Accepted(user.into())
        } else {
            bouncegate::smtp::AuthOutcome::Rejected
        }
    }
}

/// Takes mail only from an authenticated client.
#[derive(Default)]
struct AuthenticatedRecorder(Recorder);

impl MessageSink for AuthenticatedRecorder {
    async fn mail(&self, session: &SessionInfo, _: &MailFrom) -> Result<(), SinkError> {
        match session.identity {
            Some(_) => Ok(()),
            None => Err(SinkError::Reply(bouncegate::smtp::Reply::AUTH_REQUIRED)),
        }
    }

    async fn rcpt(&self, s: &SessionInfo, f: &MailFrom, t: &RcptTo) -> Result<(), SinkError> {
        self.0.rcpt(s, f, t).await
    }

    async fn data(&self, message: ReceivedMessage) -> Result<(), SinkError> {
        self.0.data(message).await
    }
}

/// The relay logs in to an upstream that wants AUTH; wrong credentials of its own make mail
/// wait, never bounce.
#[tokio::test]
async fn the_relay_authenticates_to_its_upstream_and_a_refused_login_bounces_nobody() {
    for db in databases().await {
        let recorder = Arc::new(AuthenticatedRecorder::default());
        let server = SmtpServer::bind_with_auth(
            ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "upstream.test"),
            recorder.clone(),
            Some(Arc::new(UpstreamLogin)),
        )
        .await
        .unwrap();
        let upstream = server.spawn();
        let port = upstream.local_addr().port();
        for (password, delivered) in [("upw", true), ("wrong", false)] {
            let config = config(
                &db,
                port,
                &format!("upstream_user = \"relay\"\nupstream_password = \"{password}\""),
            );
            let gateway = Gateway::start(config.clone()).await.unwrap();
            let service = SuppressionService::new(gateway.store.clone(), config.clone());
            let to = format!("{password}@example.net");
            let mut c = Client::login(gateway.relay.local_addr(), "news", "s3cret").await;
            let reply = c
                .send(
                    "news@acme.example",
                    &[&to],
                    &newsletter(Some("news"), None, &to),
                )
                .await;
            assert!(reply.starts_with("250"), "{reply}");
            if delivered {
                wait_for(&recorder.0, 1).await;
            } else {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                let summary = gateway.store.queue_summary().await.unwrap();
                assert_eq!(
                    (summary.queued, summary.failed),
                    (1, 0),
                    "{}: waits",
                    db.backend
                );
                let verdict = promotional(&service, &to, "acme", Some("news")).await;
                assert!(verdict.allowed, "{}: nobody bounced", db.backend);
                assert_eq!(recorder.0.received().len(), 1);
            }
            gateway.stop().await;
        }
        upstream.shutdown().await;
    }
}
