//! Golden files: `tests/fixtures/analysis/**/NAME.eml` beside `NAME.json`. A mismatch writes
//! `NAME.json.failed` with what the analyser said; set `BOUNCEGATE_BLESS=1` to write new goldens.

use std::path::{Path, PathBuf};

use super::*;

fn fixtures() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "eml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis"),
        &mut out,
    );
    out.sort();
    out
}

#[test]
fn golden_files() {
    let analyzer = Analyzer::default();
    let bless = std::env::var_os("BOUNCEGATE_BLESS").is_some();
    let mut failures = Vec::new();
    let cases = fixtures();
    assert!(cases.len() >= 20, "the fixtures are there: {}", cases.len());
    for eml in &cases {
        let raw = std::fs::read(eml).unwrap();
        // A mailbox file's golden is the list of its reports.
        let reports = analyzer.analyze_each(&raw);
        let actual = match reports.as_slice() {
            [report] => serde_json::to_string_pretty(report),
            _ => serde_json::to_string_pretty(&reports),
        }
        .unwrap()
            + "\n";
        let golden = eml.with_extension("json");
        if bless {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        let failed = eml.with_extension("json.failed");
        if expected == actual {
            let _ = std::fs::remove_file(failed);
        } else {
            std::fs::write(&failed, &actual).unwrap();
            failures.push(eml.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "analysis differs from the golden file (see NAME.json.failed):\n{}",
        failures.join("\n")
    );
}

/// A DSN followed by a huge attachment, and one with 10,000 MIME parts: analysed, not refused,
/// and the bounce at the start still found (only the first `MAX_ANALYZED` bytes are read).
#[test]
fn huge_mails_are_analysed_within_bounds() {
    let analyzer = Analyzer::default();
    let dsn = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/analysis/postfix/user-unknown.eml"),
    )
    .unwrap();
    let cut = dsn.windows(7).rposition(|w| w == b"--BOUND").unwrap();
    let mut big = dsn[..cut].to_vec();
    big.extend_from_slice(b"--BOUND\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    while big.len() < 50 << 20 {
        big.extend_from_slice(line);
    }
    let report = analyzer.analyze(&big);
    assert_eq!(report.kind, ReportKind::Bounce);
    assert_eq!(report.recipients[0].address, "jane@example.net");

    let mut many = b"From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail\r\nContent-Type: multipart/mixed; boundary=P\r\n\r\n".to_vec();
    for i in 0..10_000 {
        many.extend_from_slice(
            format!("--P\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes(),
        );
    }
    many.extend_from_slice(b"--P--\r\n");
    let report = analyzer.analyze(&many);
    assert!(
        matches!(report.kind, ReportKind::Other | ReportKind::Bounce),
        "{:?}",
        report.kind
    );
}

#[test]
fn never_panics_on_broken_input() {
    let analyzer = Analyzer::default();
    let samples: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;".to_vec(),
        vec![0xff; 10_000],
        b"Subject: =?utf-8?b?////?=\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n\xff\xfe<a@b.example>: 550".to_vec(),
        [b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec(), b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n".repeat(2_000)].concat(),
    ];
    for sample in samples {
        let report = analyzer.analyze(&sample);
        assert!(report.kind != ReportKind::Bounce || !report.recipients.is_empty());
    }
    // Cut a real-looking DSN at every byte.
    let dsn = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/analysis/postfix/user-unknown.eml"),
    )
    .unwrap();
    for end in (0..dsn.len()).step_by(7) {
        let _ = analyzer.analyze(&dsn[..end]);
    }
}

#[test]
fn an_explaining_analyser_names_the_rules_and_the_words_they_matched() {
    let raw = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/analysis/postfix/stage-wrapped-data.eml"),
    )
    .unwrap();
    let plain = Analyzer::default().analyze(&raw);
    let explained = Analyzer::default().explaining().analyze(&raw);
    let (plain, explained) = (&plain.recipients[0], &explained.recipients[0]);
    // The same verdict and rule id; only the words are added.
    assert_eq!(plain.reason, BounceReason::Filtered);
    assert_eq!(
        plain.rule,
        "builtin:user-unknown+builtin:command_override.1"
    );
    assert_eq!(explained.rule, plain.rule);
    assert!(plain.explanation.is_empty());
    assert_eq!(
        explained.explanation.len(),
        2,
        "{:#?}",
        explained.explanation
    );
    assert!(
        explained.explanation[0].contains("\"user-unknown\"")
            && explained.explanation[0].contains("[user unknown] in virtual mailbox table"),
        "{}",
        explained.explanation[0]
    );
    assert!(
        explained.explanation[1].contains("answered data")
            && explained.explanation[1].contains("becomes filtered"),
        "{}",
        explained.explanation[1]
    );

    // A decisive status code names its table entry.
    let raw = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\
        Content-Type: text/plain\r\n\r\nfailed\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n\
        Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; a@nowhere.example\r\n\
        Action: failed\r\nStatus: 5.1.2\r\n\r\n--b--\r\n";
    let report = Analyzer::default().explaining().analyze(raw);
    assert_eq!(report.recipients[0].reason, BounceReason::HostUnknown);
    assert_eq!(report.recipients[0].rule, "builtin:status.decisive.X.1.2");
    assert!(report.recipients[0].explanation[0].contains("status 5.1.2 settles the reason"));
}

#[test]
fn own_domain_is_the_reporting_hosts_name_or_a_domain_it_lies_in() {
    assert!(is_own_domain("a@example.org", "example.org"));
    assert!(is_own_domain("a@Example.ORG", "mx1.example.org."));
    // A longer name that only ends in the same letters is another domain.
    assert!(!is_own_domain("a@example.org", "badexample.org"));
    assert!(!is_own_domain("a@example.org", "mx.example.net"));
    // One label says nothing of whose it is; no host, no address: nothing.
    assert!(!is_own_domain("a@localhost", "localhost"));
    assert!(!is_own_domain("a@example.org", ""));
    assert!(!is_own_domain("not-an-address", "example.org"));
    // A host name in another script is compared, never cut inside a character.
    assert!(!is_own_domain("a@example.org", "пример.example.orgx"));
    assert!(is_own_domain("a@example.org", "почта.example.org"));
}

#[test]
fn a_transcript_refused_before_any_command_is_the_greeting() {
    let greeting = "... while talking to mx.example.net.:\n<<< 554 mx.example.net no SMTP service here\n554 5.0.0 Service unavailable\n";
    assert_eq!(
        transcript_command(greeting, "a@example.net"),
        Some(SmtpCommand::Connect)
    );
    let at_rcpt = "... while talking to mx.example.net.:\n>>> RCPT To:<a@example.net>\n<<< 550 5.1.1 <a@example.net>... User unknown\n";
    assert_eq!(
        transcript_command(at_rcpt, "a@example.net"),
        Some(SmtpCommand::Rcpt)
    );
    // A command was sent, but the refusal does not name the recipient: the stage is not known.
    let elsewhere = "... while talking to mx.example.net.:\n>>> MAIL From:<n@acme.example>\n<<< 250 ok\n>>> QUIT\n<<< 421 closing\n";
    assert_eq!(transcript_command(elsewhere, "a@example.net"), None);
}

/// One remote reply of `tests/fixtures/analysis/replies/published.toml`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedReply {
    reply: String,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    status: Option<String>,
    reason: String,
}

/// `reply` as a Postfix bounce of our own: the reply in the prose part ("in reply to" the stage)
/// and as the DSN's Diagnostic-Code, the Status its enhanced code (or 5.0.0 / 4.0.0).
fn postfix_bounce_of(reply: &PublishedReply, recipient: &str) -> String {
    let stage = reply.stage.as_deref().unwrap_or("rcpt");
    let local = stage == "local";
    let status = reply.status.clone().unwrap_or_else(|| {
        let words: Vec<&str> = reply.reply.splitn(3, [' ', '-']).collect();
        match words.as_slice() {
            [_, code, ..] if StatusCode::parse(code).is_some() => (*code).to_string(),
            _ if reply.reply.starts_with('4') => "4.0.0".into(),
            _ => "5.0.0".into(),
        }
    });
    let action = if status.starts_with('4') {
        "delayed"
    } else {
        "failed"
    };
    let command = match stage {
        "rcpt" => Some("RCPT TO"),
        "mail" => Some("MAIL FROM"),
        "data" => Some("end of DATA"),
        // Before MAIL FROM: Postfix names the EHLO it answered (a refusal in the greeting
        // itself reads "refused to talk to me", whose words alone would decide).
        "connect" => Some("EHLO"),
        "local" => None,
        other => panic!("unknown stage {other:?} for {:?}", reply.reply),
    };
    let said = if local {
        reply.reply.clone()
    } else {
        format!(
            "host mx.example.net[192.0.2.1] said: {}{}",
            reply.reply,
            command
                .map(|c| format!(" (in reply to {c} command)"))
                .unwrap_or_default()
        )
    };
    let (remote, diagnostic_type) = if local {
        (String::new(), "X-Postfix")
    } else {
        ("Remote-MTA: dns; mx.example.net\n".to_string(), "smtp")
    };
    format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@mail.acme.example (Mail Delivery System)\n\
         To: news@acme.example\nSubject: Undelivered Mail Returned to Sender\n\
         Auto-Submitted: auto-replied\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUND\"\n\n\
         --BOUND\nContent-Type: text/plain; charset=us-ascii\n\n\
         This is the mail system at host mail.acme.example.\n\n<{recipient}>: {said}\n\n\
         --BOUND\nContent-Type: message/delivery-status\n\n\
         Reporting-MTA: dns; mail.acme.example\n\nFinal-Recipient: rfc822; {recipient}\n\
         Action: {action}\nStatus: {status}\n{remote}Diagnostic-Code: {diagnostic_type}; {}\n\n\
         --BOUND--\n",
        reply.reply
    )
}

/// Replies as providers and MTAs publish them (not from any corpus), each read as its sender
/// means it: the rules hold beyond the mails they were written from.
#[test]
fn published_replies_are_read_as_their_senders_mean_them() {
    #[derive(serde::Deserialize)]
    struct Table {
        reply: Vec<PublishedReply>,
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/analysis/replies/published.toml");
    let table: Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(table.reply.len() >= 50, "{} replies", table.reply.len());
    let analyzer = Analyzer::default();
    let mut wrong = Vec::new();
    for (n, reply) in table.reply.iter().enumerate() {
        let recipient = format!("u{n}@example.net");
        let report = analyzer.analyze(postfix_bounce_of(reply, &recipient).as_bytes());
        let found = report
            .recipients
            .iter()
            .find(|r| r.address == recipient)
            .map(|r| (r.reason.to_string(), r.rule.clone()));
        match found {
            Some((reason, _)) if reason == reply.reason => {}
            other => wrong.push(format!(
                "{:?}: expected {}, read {other:?}",
                reply.reply, reply.reason
            )),
        }
    }
    assert!(wrong.is_empty(), "misread:\n{}", wrong.join("\n"));
}
