//! The SMTP server over real loopback TCP, with a sink that keeps messages in memory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bouncegate::smtp::{
    AuthOutcome, Authenticator, ListenerConfig, MailFrom, MessageSink, RcptTo, ReceivedMessage,
    ServerHandle, SessionInfo, SinkError, SmtpLimits, SmtpServer,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Default)]
struct MemorySink {
    messages: Mutex<Vec<ReceivedMessage>>,
    fail_next: Mutex<bool>,
    /// Senders are refused unless the session authenticated.
    require_identity: bool,
    /// What MAIL saw of each session.
    seen_at_mail: Mutex<Vec<(SessionInfo, MailFrom)>>,
}

impl MessageSink for MemorySink {
    async fn mail(&self, session: &SessionInfo, from: &MailFrom) -> Result<(), SinkError> {
        self.seen_at_mail
            .lock()
            .unwrap()
            .push((session.clone(), from.clone()));
        if self.require_identity && session.identity.is_none() {
            return Err(SinkError::Reply(
                bouncegate::smtp::Reply::AUTH_REQUIRED.clone(),
            ));
        }
        Ok(())
    }

    async fn rcpt(&self, _: &SessionInfo, _: &MailFrom, to: &RcptTo) -> Result<(), SinkError> {
        if to.address.ends_with("@bounces.example.org") {
            Ok(())
        } else {
            Err(SinkError::UnknownRecipient)
        }
    }

    async fn data(&self, message: ReceivedMessage) -> Result<(), SinkError> {
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            return Err(SinkError::Temporary("store down".into()));
        }
        self.messages.lock().unwrap().push(message);
        Ok(())
    }
}

fn listener(limits: SmtpLimits) -> ListenerConfig {
    ListenerConfig {
        limits,
        ..ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "mx.test")
    }
}

async fn start(limits: SmtpLimits) -> (ServerHandle, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let server = SmtpServer::bind(listener(limits), sink.clone())
        .await
        .unwrap();
    (server.spawn(), sink)
}

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(handle: &ServerHandle) -> Client {
        let stream = TcpStream::connect(handle.local_addr()).await.unwrap();
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        let banner = client.reply().await;
        assert!(banner.starts_with("220 mx.test"), "{banner}");
        client
    }

    /// One whole reply (all lines of a multi-line one).
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            all.push_str(&line);
            if n == 0 || line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    async fn command(&mut self, text: &str) -> String {
        self.send(&format!("{text}\r\n")).await;
        self.reply().await
    }
}

#[tokio::test]
async fn a_full_transaction_keeps_the_bytes_exactly() {
    let (handle, sink) = start(SmtpLimits::default()).await;
    let mut c = Client::connect(&handle).await;
    let ehlo = c.command("EHLO client.test").await;
    for extension in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(extension), "{ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    assert!(c.command("MAIL FROM:<>").await.starts_with("250 2.1.0"));
    assert!(
        c.command("RCPT TO:<b+abc@bounces.example.org>")
            .await
            .starts_with("250 2.1.5")
    );
    assert!(
        c.command("RCPT TO:<someone@elsewhere.example>")
            .await
            .starts_with("550 5.1.1"),
        "never relays"
    );
    assert!(c.command("DATA").await.starts_with("354"));
    c.send("Subject: test\r\n\r\n..leading dot\r\nbody \u{e4}\r\n.\r\n")
        .await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert!(c.command("VRFY root").await.starts_with("502 5.5.1"));
    assert!(c.command("QUIT").await.starts_with("221"));
    let messages = sink.messages.lock().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].data,
        "Subject: test\r\n\r\n.leading dot\r\nbody \u{e4}\r\n".as_bytes()
    );
    assert_eq!(messages[0].mail_from.address, "");
    assert_eq!(
        messages[0].recipients().collect::<Vec<_>>(),
        vec!["b+abc@bounces.example.org"]
    );
    assert_eq!(messages[0].session.helo, "client.test");
}

#[tokio::test]
async fn pipelined_commands_split_at_every_byte_are_answered_in_order() {
    let (handle, sink) = start(SmtpLimits::default()).await;
    let script =
        "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<fbl@bounces.example.org>\r\nDATA\r\n";
    for split in [1usize, 2, 3, 7, 13, script.len()] {
        let mut c = Client::connect(&handle).await;
        for chunk in script.as_bytes().chunks(split) {
            c.writer.write_all(chunk).await.unwrap();
            c.writer.flush().await.unwrap();
        }
        assert!(c.reply().await.starts_with("250-"), "EHLO");
        assert!(c.reply().await.starts_with("250 2.1.0"));
        assert!(c.reply().await.starts_with("250 2.1.5"));
        assert!(c.reply().await.starts_with("354"));
        for chunk in b"x\r\n.\r\n".chunks(split) {
            c.writer.write_all(chunk).await.unwrap();
        }
        assert!(c.reply().await.starts_with("250 2.0.0"));
    }
    assert_eq!(sink.messages.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn limits_answer_with_the_right_codes() {
    let limits = SmtpLimits {
        max_message_size: 1_000,
        max_recipients: 2,
        max_bad_commands: 3,
        ..SmtpLimits::default()
    };
    let (handle, sink) = start(limits).await;
    let mut c = Client::connect(&handle).await;
    assert!(
        c.command("MAIL FROM:<>").await.starts_with("503"),
        "EHLO first"
    );
    c.command("EHLO c").await;
    assert!(
        c.command("MAIL FROM:<> SIZE=5000")
            .await
            .starts_with("552 5.3.4")
    );
    c.command("MAIL FROM:<>").await;
    for _ in 0..2 {
        assert!(
            c.command("RCPT TO:<b@bounces.example.org>")
                .await
                .starts_with("250")
        );
    }
    assert!(
        c.command("RCPT TO:<b@bounces.example.org>")
            .await
            .starts_with("452 4.5.3")
    );
    c.command("DATA").await;
    c.send(&format!("{}\r\n.\r\n", "x".repeat(5_000))).await;
    assert!(c.reply().await.starts_with("552 5.3.4"), "oversize");
    assert!(sink.messages.lock().unwrap().is_empty());
    assert!(
        c.command(&format!("NOOP {}", "y".repeat(5_000)))
            .await
            .starts_with("500 5.5.2"),
        "line too long"
    );
    assert!(c.command("BOGUS").await.starts_with("500 5.5.1"));
    assert!(
        c.command("BOGUS").await.starts_with("421 4.7.0"),
        "too many bad commands"
    );
}

#[tokio::test]
async fn a_store_failure_is_a_temporary_error() {
    let (handle, sink) = start(SmtpLimits::default()).await;
    *sink.fail_next.lock().unwrap() = true;
    let mut c = Client::connect(&handle).await;
    c.command("HELO c").await;
    c.command("MAIL FROM:<>").await;
    c.command("RCPT TO:<bounces@bounces.example.org>").await;
    c.command("DATA").await;
    c.send("x\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("451 4.3.0"));
}

#[tokio::test]
async fn a_stalling_client_is_cut_off_and_shutdown_is_clean() {
    let limits = SmtpLimits {
        command_timeout_secs: 1,
        ..SmtpLimits::default()
    };
    let (handle, _sink) = start(limits).await;
    let mut c = Client::connect(&handle).await;
    c.send("EHLO c").await; // no line end, then silence
    assert!(c.reply().await.starts_with("421 4.4.2"), "timeout");

    let mut idle = Client::connect(&handle).await;
    idle.command("EHLO c").await;
    let stopping = tokio::spawn(handle.shutdown());
    assert!(
        idle.reply().await.starts_with("421 4.3.2"),
        "idle sessions are told to come back"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connections_per_peer_are_limited() {
    let limits = SmtpLimits {
        max_connections_per_ip: 2,
        ..SmtpLimits::default()
    };
    let (handle, _sink) = start(limits).await;
    let _a = Client::connect(&handle).await;
    let _b = Client::connect(&handle).await;
    let stream = TcpStream::connect(handle.local_addr()).await.unwrap();
    let mut third = BufReader::new(stream);
    let mut line = String::new();
    third.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("421 4.7.0"), "{line}");
}

#[tokio::test]
async fn starttls_upgrades_and_the_session_starts_over() {
    use std::sync::Arc as StdArc;
    use tokio_rustls::rustls::{self, pki_types::ServerName};

    let certified = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let acceptor = bouncegate::smtp::load_tls(&cert_path, &key_path).unwrap();
    assert!(
        bouncegate::smtp::load_tls(&key_path, &key_path).is_err(),
        "a key is no certificate"
    );

    let sink = Arc::new(MemorySink::default());
    let config = ListenerConfig {
        tls: Some(acceptor),
        ..listener(SmtpLimits::default())
    };
    let server = SmtpServer::bind(config, sink.clone()).await.unwrap();
    let handle = server.spawn();
    let mut c = Client::connect(&handle).await;
    assert!(c.command("EHLO c").await.contains("STARTTLS"));
    assert!(c.command("STARTTLS").await.starts_with("220 2.0.0"));

    let stream = c.reader.into_inner().reunite(c.writer).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(StdArc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(StdArc::new(config))
        .connect(ServerName::try_from("mx.test").unwrap(), stream)
        .await
        .expect("TLS handshake");
    let (read, mut write) = tokio::io::split(tls);
    let mut read = BufReader::new(read);
    let mut say = async |text: &str| {
        write.write_all(text.as_bytes()).await.unwrap();
        let mut all = String::new();
        loop {
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    let ehlo = say("EHLO c\r\n").await;
    assert!(
        ehlo.starts_with("250-mx.test") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    assert!(say("MAIL FROM:<>\r\n").await.starts_with("250"));
    assert!(
        say("RCPT TO:<fbl@bounces.example.org>\r\n")
            .await
            .starts_with("250")
    );
    assert!(say("DATA\r\n").await.starts_with("354"));
    assert!(say("secret\r\n.\r\n").await.starts_with("250"));
    assert_eq!(sink.messages.lock().unwrap()[0].data, b"secret\r\n");
}

/// Sends `text` one byte at a time, `pause` apart, until the server closes or answers (the reply),
/// or for ten seconds at most (an empty reply).
async fn trickle(c: &mut Client, text: &str, pause: Duration) -> String {
    let mut reply = Box::pin(c.reader.read_line_owned());
    let give_up = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(give_up);
    for byte in text.as_bytes().iter().cycle() {
        tokio::select! {
            line = &mut reply => return line,
            _ = &mut give_up => return String::new(),
            _ = tokio::time::sleep(pause) => {
                if c.writer.write_all(&[*byte]).await.is_err() {
                    return reply.await;
                }
            }
        }
    }
    unreachable!("cycle never ends")
}

trait ReadLineOwned {
    async fn read_line_owned(&mut self) -> String;
}

impl ReadLineOwned for BufReader<tokio::net::tcp::OwnedReadHalf> {
    async fn read_line_owned(&mut self) -> String {
        let mut line = String::new();
        let _ = self.read_line(&mut line).await;
        line
    }
}

#[tokio::test]
async fn a_command_trickled_a_byte_at_a_time_is_cut_off_at_the_command_timeout() {
    let limits = SmtpLimits {
        command_timeout_secs: 1,
        ..SmtpLimits::default()
    };
    let (handle, _sink) = start(limits).await;
    let mut c = Client::connect(&handle).await;
    let started = std::time::Instant::now();
    // Each byte comes well within the timeout, the line never within it.
    let reply = trickle(&mut c, "NOOP keep me open\r\n", Duration::from_millis(200)).await;
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn message_data_below_the_minimum_rate_is_cut_off() {
    let limits = SmtpLimits {
        data_timeout_secs: 1,
        min_data_rate: 100,
        ..SmtpLimits::default()
    };
    let (handle, sink) = start(limits).await;
    let mut c = Client::connect(&handle).await;
    c.command("HELO c").await;
    c.command("MAIL FROM:<>").await;
    c.command("RCPT TO:<bounces@bounces.example.org>").await;
    assert!(c.command("DATA").await.starts_with("354"));
    let started = std::time::Instant::now();
    let reply = trickle(&mut c, "x", Duration::from_millis(100)).await;
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(sink.messages.lock().unwrap().is_empty());
}

#[tokio::test]
async fn idle_commands_are_capped_and_a_delivered_message_resets_the_count() {
    let limits = SmtpLimits {
        max_junk_commands: 3,
        ..SmtpLimits::default()
    };
    let (handle, sink) = start(limits).await;
    let mut c = Client::connect(&handle).await;
    c.command("HELO c").await;
    for command in ["NOOP", "RSET", "HELP"] {
        assert!(c.command(command).await.starts_with("2"), "{command}");
    }
    // A session that delivers is no idler.
    c.command("MAIL FROM:<>").await;
    c.command("RCPT TO:<bounces@bounces.example.org>").await;
    c.command("DATA").await;
    assert!(c.command("x\r\n.").await.starts_with("250 2.0.0"));
    for command in ["RSET", "NOOP", "VRFY x"] {
        assert!(!c.command(command).await.starts_with("421"), "{command}");
    }
    assert!(c.command("NOOP").await.starts_with("421 4.7.0"));
    assert_eq!(sink.messages.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_session_has_a_deadline_of_its_own() {
    let limits = SmtpLimits {
        session_timeout_secs: 1,
        ..SmtpLimits::default()
    };
    let (handle, _sink) = start(limits).await;
    let mut c = Client::connect(&handle).await;
    let started = std::time::Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(5) {
        // Busy but never delivering, and never idle long enough for the command timeout.
        last = c.command("HELO c").await;
        if !last.starts_with("250") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.starts_with("421 4.4.2"), "{last:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_trickling_clients_keep_others_out_no_longer_than_the_command_timeout() {
    const TRICKLERS: usize = 2_000;
    let limits = SmtpLimits {
        max_connections: TRICKLERS,
        max_connections_per_ip: TRICKLERS,
        command_timeout_secs: 2,
        ..SmtpLimits::default()
    };
    let (handle, sink) = start(limits).await;
    let addr = handle.local_addr();
    let mut tricklers = Vec::with_capacity(TRICKLERS);
    for _ in 0..TRICKLERS {
        let stream = TcpStream::connect(addr).await.unwrap();
        tricklers.push(tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut banner = String::new();
            read.read_line(&mut banner).await.unwrap();
            // One byte every half second: about 4,000 bytes/s from all of them together.
            for byte in b"EHLO trickle.example\r\n".iter().cycle() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if write.write_all(&[*byte]).await.is_err() {
                    break;
                }
            }
        }));
    }
    let full_since = std::time::Instant::now();
    // Every slot is taken: a normal client is turned away until the tricklers are cut off.
    loop {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let _ = reader.read_line(&mut line).await;
        if line.starts_with("220") {
            break;
        }
        assert!(line.starts_with("421 4.7.0"), "{line:?}");
        assert!(
            full_since.elapsed() < Duration::from_secs(8),
            "still kept out after {:?}",
            full_since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = full_since.elapsed();
    assert!(waited < Duration::from_secs(5), "kept out for {waited:?}");
    let mut normal = Client::connect(&handle).await;
    normal.command("HELO normal.example").await;
    normal.command("MAIL FROM:<>").await;
    normal
        .command("RCPT TO:<bounces@bounces.example.org>")
        .await;
    normal.command("DATA").await;
    assert!(normal.command("x\r\n.").await.starts_with("250 2.0.0"));
    assert_eq!(sink.messages.lock().unwrap().len(), 1);
    for trickler in tricklers {
        trickler.abort();
    }
}

/// Knows one client, `news` with password `pw`; locks a peer out after three failures.
#[derive(Default)]
struct OneClient {
    failures: Mutex<u32>,
}

impl Authenticator for OneClient {
    async fn authenticate(&self, _: std::net::IpAddr, user: &str, password: &str) -> AuthOutcome {
        if user == "news" && password == "pw" {
            return AuthOutcome::Accepted("news".into());
        }
        let mut failures = self.failures.lock().unwrap();
        *failures += 1;
        if *failures >= 3 {
            AuthOutcome::LockedOut
        } else {
            AuthOutcome::Rejected
        }
    }
}

async fn start_with_auth(address: &str) -> (ServerHandle, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink {
        require_identity: true,
        ..MemorySink::default()
    });
    let config = ListenerConfig {
        address: address.parse().unwrap(),
        ..listener(SmtpLimits::default())
    };
    let server =
        SmtpServer::bind_with_auth(config, sink.clone(), Some(Arc::new(OneClient::default())))
            .await
            .unwrap();
    (server.spawn(), sink)
}

fn b64(text: &str) -> String {
    data_encoding::BASE64.encode(text.as_bytes())
}

#[tokio::test]
async fn auth_plain_and_login_identify_the_session_to_the_sink() {
    let (handle, sink) = start_with_auth("127.0.0.1:0").await;
    let mut c = Client::connect(&handle).await;
    let ehlo = c.command("EHLO client.test").await;
    assert!(
        ehlo.contains("AUTH PLAIN LOGIN"),
        "loopback: offered\n{ehlo}"
    );
    assert!(
        c.command("MAIL FROM:<news@acme.example>")
            .await
            .starts_with("530 5.7.0")
    );
    assert!(
        c.command(&format!("AUTH PLAIN {}", b64("\0news\0wrong")))
            .await
            .starts_with("535 5.7.8")
    );
    assert!(c.command("AUTH CRAM-MD5").await.starts_with("504"));
    assert!(c.command("AUTH PLAIN not-base64!").await.starts_with("501"));
    assert!(
        c.command(&format!("AUTH PLAIN {}", b64("\0news\0pw")))
            .await
            .starts_with("235 2.7.0")
    );
    assert!(
        c.command(&format!("AUTH PLAIN {}", b64("\0news\0pw")))
            .await
            .starts_with("503")
    );
    assert!(
        c.command("MAIL FROM:<news@acme.example> SIZE=100 BODY=8BITMIME")
            .await
            .starts_with("250")
    );
    let seen = sink.seen_at_mail.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.0.identity.as_deref(), Some("news"));
    assert_eq!(seen.0.helo, "client.test");
    assert_eq!(seen.1.size, Some(100));
    assert_eq!(seen.1.body, Some(bouncegate::smtp::BodyType::EightBitMime));
    assert!(c.command("RCPT TO:<x@bounces.example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@bounces.example.org").await.starts_with("250"));
    assert!(c.command("DATA").await.starts_with("354"));
    assert!(c.command("hello\r\n.").await.starts_with("250"));
    let message = sink.messages.lock().unwrap()[0].clone();
    assert_eq!(message.session.identity.as_deref(), Some("news"));
    assert!(message.rcpt_to[0].notify.failure && message.rcpt_to[0].notify.delay);
    assert_eq!(
        message.rcpt_to[0].orcpt.as_deref(),
        Some("x@bounces.example.org")
    );

    // LOGIN, step by step, and a cancelled exchange.
    let mut l = Client::connect(&handle).await;
    l.command("EHLO c").await;
    assert!(
        l.command("AUTH LOGIN")
            .await
            .starts_with("334 VXNlcm5hbWU6")
    );
    assert!(l.command("*").await.starts_with("501"));
    assert!(
        l.command("AUTH LOGIN")
            .await
            .starts_with("334 VXNlcm5hbWU6")
    );
    assert!(
        l.command(&b64("news"))
            .await
            .starts_with("334 UGFzc3dvcmQ6")
    );
    assert!(l.command(&b64("pw")).await.starts_with("235"));
    let mut p = Client::connect(&handle).await;
    p.command("EHLO c").await;
    assert!(p.command("AUTH PLAIN").await.starts_with("334"));
    assert!(p.command(&b64("\0news\0pw")).await.starts_with("235"));
}

#[tokio::test]
async fn auth_failures_lock_out_and_plain_text_from_afar_is_not_offered() {
    let (handle, _sink) = start_with_auth("127.0.0.1:0").await;
    let mut c = Client::connect(&handle).await;
    c.command("EHLO c").await;
    for _ in 0..2 {
        assert!(
            c.command(&format!("AUTH PLAIN {}", b64("\0news\0nope")))
                .await
                .starts_with("535")
        );
    }
    assert!(
        c.command(&format!("AUTH PLAIN {}", b64("\0news\0nope")))
            .await
            .starts_with("421 4.7.0")
    );

    // From a non-loopback address without TLS a password would cross the network in clear.
    let Some(own) = own_address() else {
        eprintln!("skipping the non-loopback part: this machine has no non-loopback IPv4 address");
        return;
    };
    let (handle, _sink) = start_with_auth("0.0.0.0:0").await;
    let port = handle.local_addr().port();
    let stream = TcpStream::connect((own, port)).await.unwrap();
    let (read, writer) = stream.into_split();
    let mut far = Client {
        reader: BufReader::new(read),
        writer,
    };
    assert!(far.reply().await.starts_with("220"));
    let ehlo = far.command("EHLO c").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(
        far.command(&format!("AUTH PLAIN {}", b64("\0news\0pw")))
            .await
            .starts_with("538 5.7.11")
    );
    assert!(
        far.command("MAIL FROM:<a@acme.example>")
            .await
            .starts_with("530")
    );
}

/// This machine's address on its outgoing interface, if it is not loopback.
fn own_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
