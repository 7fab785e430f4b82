//! Real SMTP peers against the real binary: swaks and Postfix's smtp-source deliver bounces to
//! `bouncegate serve`; a SIGKILL in the middle of a load loses nothing that got a 250.
//!
//! swaks and smtp-source come from Debian's `swaks` and `postfix` packages (`.ci/run` installs
//! them); without them those checks are skipped with a message.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ORGANISATION;

const DOMAIN: &str = "bounces.example.org";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(name: &str) -> Option<String> {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|path| Path::new(path).exists())
}

/// Starts `bouncegate serve` on a fresh SQLite file and waits until it listens.
fn serve(dir: &Path, port: u16, trust_unsigned: bool) -> Child {
    let config = dir.join("bouncegate.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[inbound]\nlisten = \"127.0.0.1:{port}\"\ndomain = \"{DOMAIN}\"\n\
             trust_unsigned_bounces = {trust_unsigned}\n[http]\nlisten = \"127.0.0.1:0\"\n[relay]\nlisten = \"127.0.0.1:0\"\n{ORGANISATION}",
            dir.join("bouncegate.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bouncegate"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("inbound SMTP listening") {
            break;
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn dsn(recipient: &str, marker: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nTo: news@acme.example\r\nSubject: Undelivered Mail {marker}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B--\r\n"
    )
}

fn check(dir: &Path, address: &str) -> i32 {
    let output = Command::new(env!("CARGO_BIN_EXE_bouncegate"))
        .arg("--config")
        .arg(dir.join("bouncegate.toml"))
        .args(["check", address, "--company", "acme"])
        .output()
        .unwrap();
    output.status.code().unwrap_or(-1)
}

#[test]
fn swaks_and_smtp_source_deliver_to_the_binary() {
    let (Some(swaks), Some(smtp_source)) = (tool("swaks"), tool("smtp-source")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "under CI, .ci/run installs swaks and postfix"
        );
        eprintln!("skipping: swaks or smtp-source not installed (apt-get install swaks postfix)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = serve(dir.path(), port, true);

    let mail = dir.path().join("dsn.eml");
    std::fs::write(&mail, dsn("swaks@example.net", "swaks")).unwrap();
    let status = Command::new(&swaks)
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            "",
            "--to",
            &format!("bounces@{DOMAIN}"),
        ])
        .args(["--data", mail.to_str().unwrap(), "--silent", "2"])
        .status()
        .unwrap();
    assert!(status.success(), "swaks delivered");
    assert_eq!(
        check(dir.path(), "swaks@example.net"),
        1,
        "the trusted DSN suppressed the address"
    );

    // smtp-source speaks HELO, pipelines nothing, and sends the same DSN from 5 sessions.
    std::fs::write(&mail, dsn("source@example.net", "source")).unwrap();
    let status = Command::new(&smtp_source)
        .args([
            "-s",
            "5",
            "-m",
            "50",
            "-F",
            mail.to_str().unwrap(),
            "-f",
            "",
            "-t",
            &format!("bounces@{DOMAIN}"),
        ])
        .arg(format!("127.0.0.1:{port}"))
        .status()
        .unwrap();
    assert!(status.success(), "smtp-source delivered");
    assert_eq!(check(dir.path(), "source@example.net"), 1);
    let relay = Command::new(&swaks)
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--to",
            "someone@gmail.example",
            "--silent",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!relay.status.success(), "relaying refused");
    assert!(
        String::from_utf8_lossy(&relay.stdout).contains("550 5.1.1"),
        "{}",
        String::from_utf8_lossy(&relay.stdout)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().unwrap().success());
}

/// Sends one message on its own connection; `true` when it got a 250 for the data.
fn deliver(addr: SocketAddr, data: &str) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    let mut expect = |reader: &mut BufReader<TcpStream>, code: &str| -> bool {
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.starts_with(code);
            }
        }
    };
    if !expect(&mut reader, "220") {
        return false;
    }
    for (command, code) in [
        ("HELO load.test\r\n".to_string(), "250"),
        ("MAIL FROM:<>\r\n".to_string(), "250"),
        (format!("RCPT TO:<bounces@{DOMAIN}>\r\n"), "250"),
        ("DATA\r\n".to_string(), "354"),
    ] {
        if writer.write_all(command.as_bytes()).is_err() || !expect(&mut reader, code) {
            return false;
        }
    }
    if writer
        .write_all(data.as_bytes())
        .and_then(|()| writer.write_all(b".\r\n"))
        .is_err()
    {
        return false;
    }
    expect(&mut reader, "250")
}

#[test]
fn sigkill_during_a_load_loses_nothing_that_got_a_250() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = serve(dir.path(), port, true);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let delivered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let stop = stop.clone();
            let delivered = delivered.clone();
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2_000 {
                    let marker = format!("fault-{sender}-{n}");
                    if deliver(addr, &dsn(&format!("{marker}@example.net"), &marker)) {
                        accepted.push(marker);
                        delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    n += 1;
                }
                accepted
            })
        })
        .collect();
    // Kill mid-load: once a few dozen mails have their 250 (however slow the machine),
    // while the senders are still sending.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while delivered.load(std::sync::atomic::Ordering::Relaxed) < 40
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill().unwrap(); // SIGKILL: no shutdown path runs
    server.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let accepted: Vec<String> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    assert!(
        accepted.len() > 10,
        "the load ran before the kill: {}",
        accepted.len()
    );

    // Restart on the same store: every accepted message is there, exactly once.
    let mut server = serve(dir.path(), port, true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored: Vec<String> = runtime.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.path().join("bouncegate.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT raw FROM evidence")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.into_iter()
            .filter_map(|(raw,)| {
                let text = String::from_utf8_lossy(&raw).into_owned();
                let start = text.find("Undelivered Mail fault-")? + "Undelivered Mail ".len();
                Some(text[start..].split_whitespace().next()?.to_string())
            })
            .collect()
    });
    for marker in &accepted {
        let copies = stored.iter().filter(|s| *s == marker).count();
        assert_eq!(copies, 1, "{marker} got a 250 and is stored {copies} times");
    }
    for marker in accepted.iter().take(20) {
        assert_eq!(
            check(dir.path(), &format!("{marker}@example.net")),
            1,
            "{marker} is suppressed"
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    assert!(server.wait().unwrap().success());
}
