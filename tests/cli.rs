//! The real binary: the CLI contract (forms, JSON fields, exit codes) on SQLite and PostgreSQL.

mod common;

use common::{
    bouncegate, bouncegate_with_input, databases, expect_exit, json, stdout, write_config,
};

#[tokio::test]
async fn check_answers_with_exit_code_and_the_json_contract() {
    for db in databases().await {
        let config = write_config(&db, "");
        let allowed = bouncegate(
            &config,
            &["check", "jane@example.org", "--company", "acme", "--json"],
        );
        expect_exit(&allowed, 0, db.backend);
        assert_eq!(
            json(&allowed),
            serde_json::json!({"allowed": true, "status": "A", "blocking": []})
        );

        let suppress = bouncegate(
            &config,
            &[
                "suppress",
                "jane@example.org",
                "--reason",
                "unsubscribe",
                "--company",
                "acme",
                "--note",
                "asked by phone",
            ],
        );
        expect_exit(&suppress, 0, "suppress");

        let blocked = bouncegate(
            &config,
            &[
                "check",
                "JANE@example.org",
                "--company",
                "acme",
                "--brand",
                "news",
                "--json",
            ],
        );
        expect_exit(&blocked, 1, db.backend);
        let answer = json(&blocked);
        assert_eq!(answer["allowed"], false);
        assert_eq!(answer["status"], "U");
        let blocking = &answer["blocking"][0];
        assert_eq!(blocking["reason"], "unsubscribe");
        assert_eq!(blocking["scope"], "company:acme");
        assert_eq!(blocking["note"], "asked by phone");
        assert!(blocking["evidence_id"].is_null());
        assert!(blocking["created_at"].as_str().unwrap().ends_with('Z'));

        let service = bouncegate(
            &config,
            &[
                "check",
                "jane@example.org",
                "--company",
                "acme",
                "--class",
                "service",
            ],
        );
        expect_exit(&service, 0, "service mail passes opt-outs");
        let other = bouncegate(
            &config,
            &["check", "jane@example.org", "--company", "globex"],
        );
        expect_exit(&other, 0, "another company is not bound by acme's opt-out");

        let unknown = bouncegate(
            &config,
            &["check", "jane@example.org", "--company", "initech"],
        );
        expect_exit(&unknown, 2, "unknown company");
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("initech"));
        let invalid = bouncegate(&config, &["check", "jane@@example", "--company", "acme"]);
        expect_exit(&invalid, 2, "invalid address");
        let bad_class = bouncegate(
            &config,
            &[
                "check",
                "jane@example.org",
                "--company",
                "acme",
                "--class",
                "newsletter",
            ],
        );
        expect_exit(&bad_class, 2, "bad class");
    }
}

#[tokio::test]
async fn status_lift_consent_and_erase_work_end_to_end() {
    for db in databases().await {
        let config = write_config(&db, "");
        for args in [
            vec![
                "suppress",
                "max@example.org",
                "--reason",
                "hard_bounce",
                "--note",
                "5.1.1 user unknown",
            ],
            vec![
                "suppress",
                "max@example.org",
                "--reason",
                "unsubscribe",
                "--company",
                "acme",
                "--brand",
                "news",
                "--note",
                "link",
            ],
        ] {
            expect_exit(&bouncegate(&config, &args), 0, "suppress");
        }
        let status = bouncegate(&config, &["status", "max@example.org", "--json"]);
        expect_exit(&status, 0, "status");
        let status = json(&status);
        assert_eq!(status["companies"][0]["company"], "acme");
        assert_eq!(status["companies"][0]["status"], "B");

        let refused = bouncegate(
            &config,
            &["lift", "max@example.org", "--reason", "unsubscribe"],
        );
        expect_exit(&refused, 1, "opt-outs are refused");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("confirmed opt-in"));
        let lifted = bouncegate(
            &config,
            &["lift", "max@example.org", "--note", "mailbox is back"],
        );
        expect_exit(&lifted, 0, "bounce lifted");
        assert!(stdout(&lifted).contains("hard_bounce"));

        let news = [
            "check",
            "max@example.org",
            "--company",
            "acme",
            "--brand",
            "news",
        ];
        expect_exit(
            &bouncegate(&config, &news),
            1,
            "still unsubscribed from news",
        );
        let shop = [
            "check",
            "max@example.org",
            "--company",
            "acme",
            "--brand",
            "shop",
        ];
        expect_exit(
            &bouncegate(&config, &shop),
            0,
            "shop was never unsubscribed",
        );

        let proof = db.path("double-opt-in.eml");
        std::fs::write(&proof, b"Subject: please confirm\r\n\r\nconfirmed\r\n").unwrap();
        let consent = bouncegate(
            &config,
            &[
                "consent",
                "max@example.org",
                "--company",
                "acme",
                "--brand",
                "news",
                "--proof",
                proof.to_str().unwrap(),
                "--json",
            ],
        );
        expect_exit(&consent, 0, "consent");
        assert_eq!(json(&consent)["lifted"].as_array().unwrap().len(), 1);
        expect_exit(
            &bouncegate(&config, &news),
            0,
            "the owner's opt-in lifted it",
        );

        expect_exit(
            &bouncegate(&config, &["erase", "max@example.org"]),
            0,
            "erase",
        );
        let status = json(&bouncegate(
            &config,
            &["status", "max@example.org", "--json"],
        ));
        assert_eq!(status["companies"][0]["status"], "D", "{status}");
        assert!(
            status["suppressions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["address"].is_null())
        );
        let check = bouncegate(
            &config,
            &["check", "max@example.org", "--company", "globex", "--json"],
        );
        expect_exit(&check, 1, "erased stays blocked");
        assert_eq!(json(&check)["status"], "D");
    }
}

#[tokio::test]
async fn import_export_and_filter_over_files() {
    for db in databases().await {
        let config = write_config(&db, "");
        let csv = db.path("list.csv");
        std::fs::write(
            &csv,
            "email,reason,company,brand,note\nu1@example.org,unsubscribe,acme,news,\nnot-an-address,unsubscribe,acme,,\nb1@example.org,hard_bounce,,,\n",
        )
        .unwrap();
        let import = bouncegate(&config, &["import", csv.to_str().unwrap(), "--json"]);
        expect_exit(&import, 1, "a bad row makes exit 1, good rows are kept");
        let report = json(&import);
        assert_eq!(report["added"], 2);
        assert_eq!(report["errors"][0]["line"], 3);
        let again = json(&bouncegate(
            &config,
            &["import", csv.to_str().unwrap(), "--json"],
        ));
        assert_eq!(
            (again["added"].as_u64(), again["unchanged"].as_u64()),
            (Some(0), Some(2))
        );

        let export = bouncegate(&config, &["export", "--format", "csv"]);
        expect_exit(&export, 0, "export");
        let text = stdout(&export);
        assert!(
            text.starts_with("email,reason,company,brand,channel,note,created_at\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
        let jsonl = stdout(&bouncegate(&config, &["export", "--format", "jsonl"]));
        let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
        assert_eq!(first["email"], "u1@example.org");
        assert_eq!(first["brand"], "news");

        let rejected = db.path("rejected.csv");
        let list = b"u1@example.org\nok@example.org\n\nb1@example.org\nbroken\n";
        let filter = bouncegate_with_input(
            &config,
            &[
                "filter",
                "--company",
                "acme",
                "--brand",
                "news",
                "-",
                "--rejected",
                rejected.to_str().unwrap(),
            ],
            Some(list),
        );
        expect_exit(&filter, 0, "filter");
        assert_eq!(stdout(&filter), "ok@example.org\n");
        let rejected = std::fs::read_to_string(&rejected).unwrap();
        assert_eq!(rejected.lines().count(), 4, "{rejected}");
        assert!(
            rejected.contains("b1@example.org,hard_bounce (global)"),
            "{rejected}"
        );
        let shop = bouncegate_with_input(
            &config,
            &["filter", "--company", "acme", "--brand", "shop", "-"],
            Some(list),
        );
        assert_eq!(stdout(&shop), "u1@example.org\nok@example.org\n");
    }
}

#[tokio::test]
async fn evidence_show_writes_the_stored_bytes() {
    for db in databases().await {
        let config = write_config(&db, "");
        let raw =
            b"Received: from mx\r\nSubject: unsubscribe\r\n\r\n\xc3\xa4\xff binary \x00 body\r\n"
                .to_vec();
        let id = {
            let store = bouncegate::store::Store::open(&db.url, 1).await.unwrap();
            let evidence = bouncegate::store::NewEvidence {
                raw: &raw,
                ..Default::default()
            };
            let id = store
                .store_evidence(&evidence, chrono::Utc::now())
                .await
                .unwrap();
            store.close().await;
            id
        };
        let shown = bouncegate(&config, &["evidence", "show", &id.to_string()]);
        expect_exit(&shown, 0, "evidence show");
        assert_eq!(shown.stdout, raw, "{}", db.backend);
        expect_exit(
            &bouncegate(&config, &["evidence", "show", "99999"]),
            1,
            "missing evidence",
        );
    }
}

#[test]
fn a_bad_config_is_refused_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[[companies]]\nid = \"acme\"\nbrands = [\"news\"]\n\n[[companies]]\nid = \"b\"\nbrands = [\"news\"]\n").unwrap();
    let output = bouncegate(&config, &["db", "migrate"]);
    expect_exit(&output, 2, "bad config");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 7") && stderr.contains("companies[1].brands[0]"),
        "{stderr}"
    );
}

#[test]
fn serve_runs_on_the_embedded_default_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bouncegate"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("BOUNCEGATE_CONFIG")
        .env_remove("BOUNCEGATE_DATABASE_URL")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it says so; then the signal handler is installed.
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    for line in std::io::BufRead::lines(stderr) {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("inbound SMTP listening") {
            break;
        }
    }
    assert!(
        log.contains("127.0.0.1:2525"),
        "listens on the default port: {log}"
    );
    assert!(
        dir.path().join("data/bouncegate.db").exists(),
        "serve created the default SQLite store"
    );
    // SIGTERM, as a service manager stops it.
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// `RUST_LOG` sets the log filter; a value that is no filter is named on standard error and the
/// command still runs on the default level.
#[test]
fn an_unreadable_rust_log_is_reported_and_the_command_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("a.eml");
    std::fs::write(&mail, "From: a@example.org\nSubject: hi\n\nhello\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bouncegate"))
        .args(["classify", "--json"])
        .arg(&mail)
        .env_remove("BOUNCEGATE_CONFIG")
        .env("RUST_LOG", "bouncegate=[")
        .output()
        .unwrap();
    expect_exit(&output, 0, "classify with a bad RUST_LOG");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RUST_LOG=\"bouncegate=[\" is not a log filter"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("\"kind\":\"other\""));
}

/// `classify --json`: one line per mail with the contract's fields, folders read recursively,
/// a mailbox file read mail by mail; exit 0 when some mails are `other`, 2 when a path is
/// unreadable.
#[test]
fn classify_reads_files_folders_and_mailboxes_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bouncegate.toml");
    std::fs::write(&config, "").unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis");
    let mails = dir.path().join("mails/nested");
    std::fs::create_dir_all(&mails).unwrap();
    std::fs::copy(
        fixtures.join("postfix/user-unknown.eml"),
        mails.join("a.eml"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("other/ordinary-mail.eml"),
        mails.join("b.eml"),
    )
    .unwrap();
    std::fs::copy(fixtures.join("mbox/two-reports.eml"), mails.join("c.mbox")).unwrap();

    let folder = dir.path().join("mails");
    let output = bouncegate(&config, &["classify", "--json", folder.to_str().unwrap()]);
    expect_exit(&output, 0, "classify over a folder");
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let files: Vec<&str> = lines.iter().map(|l| l["file"].as_str().unwrap()).collect();
    let name = |f: &str| folder.join("nested").join(f).display().to_string();
    assert_eq!(
        files,
        [name("a.eml"), name("b.eml"), name("c.mbox"), name("c.mbox")]
    );

    let bounce = &lines[0];
    assert_eq!(bounce["kind"], "bounce");
    assert!(
        bounce.get("error").is_none(),
        "no error field on success: {bounce}"
    );
    let recipient = &bounce["recipients"][0];
    for field in [
        "address",
        "action",
        "status",
        "reply_code",
        "reason",
        "class",
        "diagnostic",
    ] {
        assert!(recipient[field].is_string(), "{field} in {recipient}");
    }
    assert_eq!(recipient["class"], "hard");
    assert!(
        recipient["rule"].as_str().unwrap().starts_with("builtin:"),
        "the deciding rule is named: {recipient}"
    );
    assert!(
        recipient.get("explanation").is_none(),
        "words only when asked"
    );
    assert_eq!(lines[1]["kind"], "other");
    assert!(
        lines[1]["error"].is_string(),
        "an `other` mail says why: {}",
        lines[1]
    );
    let mailbox: Vec<(&str, &str)> = lines[2..]
        .iter()
        .map(|l| {
            let r = &l["recipients"][0];
            (
                r["address"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mailbox,
        [
            ("first@example.net", "userunknown"),
            ("second@example.org", "mailboxfull")
        ]
    );

    let missing = dir.path().join("no-such-file.eml");
    let output = bouncegate(
        &config,
        &[
            "classify",
            "--json",
            mails.join("a.eml").to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
    );
    expect_exit(&output, 2, "classify with an unreadable path");
    assert_eq!(
        stdout(&output).lines().count(),
        1,
        "the readable file is still classified"
    );
}

/// `classify --explain`: per recipient the rule that decided, its file and name, and the words of
/// the bounce it matched; an operator's rules file is named by its path.
#[test]
fn classify_explains_which_rule_decided_and_what_it_matched() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("local-rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nreason = \"blocked\"\npatterns = [\"virtual mailbox table\"]\n",
    )
    .unwrap();
    let config = dir.path().join("bouncegate.toml");
    std::fs::write(&config, "").unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis");
    let mail = fixtures.join("postfix/stage-wrapped-data.eml");

    let output = bouncegate(&config, &["classify", "--explain", mail.to_str().unwrap()]);
    expect_exit(&output, 0, "classify --explain");
    let text = stdout(&output);
    assert!(
        text.contains("anna@example.org soft filtered 5.7.1 550"),
        "{text}"
    );
    assert!(
        text.contains("rule: builtin:user-unknown+builtin:command_override.1"),
        "{text}"
    );
    assert!(
        text.contains("config/bounce-rules.toml (built in) [[rule]] ")
            && text.contains(" \"user-unknown\" (userunknown)")
            && text.contains("[user unknown] in virtual mailbox table"),
        "{text}"
    );
    assert!(text.contains("the failure answered data"), "{text}");

    // The operator's rule comes first and is named by its file.
    std::fs::write(
        &config,
        format!("[analysis]\nrules = {:?}\n", rules.display().to_string()),
    )
    .unwrap();
    let output = bouncegate(
        &config,
        &["classify", "--explain", "--json", mail.to_str().unwrap()],
    );
    expect_exit(&output, 0, "classify --explain --json with local rules");
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let recipient = &line["recipients"][0];
    assert_eq!(recipient["reason"], "blocked");
    assert_eq!(
        recipient["rule"],
        format!("{}:rule.1", rules.display()),
        "{recipient}"
    );
    assert!(
        recipient["explanation"][0]
            .as_str()
            .unwrap()
            .contains("[virtual mailbox table]"),
        "{recipient}"
    );
}

/// One mailbox in many spellings is one suppression everywhere; a different mailbox is not.
#[tokio::test]
async fn address_forms_match_across_check_filter_and_import() {
    let equivalent = [
        "jane@example.com",
        "\"jane\"@example.com",
        "\"Jane\"@EXAMPLE.com",
        "\"j\\ane\"@example.com",
        "JANE@example.com.",
        "<\"jane\"@example.com>",
    ];
    let different = [
        "\"jane \"@example.com",
        "jane@example.co",
        "\"jane.\"@example.com",
    ];
    for db in databases().await {
        let config = write_config(&db, "");
        let jsonl = db.path("one.jsonl");
        std::fs::write(
            &jsonl,
            "{\"email\": \"\\\"jane\\\"@Example.com\", \"reason\": \"unsubscribe\", \"company\": \"acme\"}\n\
             {\"email\": \"m\u{fc}ller@b\u{fc}cher.example\", \"reason\": \"unsubscribe\", \"company\": \"acme\"}\n",
        )
        .unwrap();
        let import = json(&bouncegate(
            &config,
            &["import", jsonl.to_str().unwrap(), "--json"],
        ));
        assert_eq!(import["added"], 2, "{}: {import}", db.backend);
        // Every equivalent spelling re-imported changes nothing.
        let again = db.path("again.jsonl");
        let lines: String = equivalent
            .iter()
            .chain(["M\u{fc}ller@xn--bcher-kva.example"].iter())
            .filter(|a| !a.starts_with('<'))
            .map(|a| {
                format!(
                    "{}\n",
                    serde_json::json!({"email": a, "reason": "unsubscribe", "company": "acme"})
                )
            })
            .collect();
        std::fs::write(&again, lines).unwrap();
        let again = json(&bouncegate(
            &config,
            &["import", again.to_str().unwrap(), "--json"],
        ));
        assert_eq!(
            (again["added"].as_u64(), again["unchanged"].as_u64()),
            (Some(0), Some(6)),
            "{}: {again}",
            db.backend
        );

        for form in equivalent {
            let check = bouncegate(&config, &["check", form, "--company", "acme"]);
            expect_exit(
                &check,
                1,
                &format!("{}: {form} is the suppressed mailbox", db.backend),
            );
        }
        for form in different {
            let check = bouncegate(&config, &["check", form, "--company", "acme"]);
            expect_exit(
                &check,
                0,
                &format!("{}: {form} is another mailbox", db.backend),
            );
        }
        let list: String = equivalent
            .iter()
            .chain(different.iter())
            .map(|a| format!("{a}\n"))
            .collect();
        let filter = bouncegate_with_input(
            &config,
            &["filter", "--company", "acme", "-"],
            Some(list.as_bytes()),
        );
        expect_exit(&filter, 0, "filter");
        let sendable: Vec<String> = stdout(&filter).lines().map(str::to_string).collect();
        assert_eq!(sendable, different, "{}", db.backend);
    }
}

/// Import refuses what would outlast an opt-in or swallow a file, says where, and keeps the rest.
#[tokio::test]
async fn import_refuses_future_dates_huge_lines_unclosed_quotes_and_extra_fields() {
    for db in databases().await {
        let config = write_config(&db, "");
        let import = |name: &str, text: &[u8]| {
            let path = db.path(name);
            std::fs::write(&path, text).unwrap();
            bouncegate(&config, &["import", path.to_str().unwrap(), "--json"])
        };
        let future = import(
            "future.csv",
            b"email,reason,company,created_at\nf1@example.org,unsubscribe,acme,2999-01-01\nf2@example.org,unsubscribe,acme,2026-01-01\n",
        );
        expect_exit(&future, 1, "a future date is a bad row");
        let report = json(&future);
        assert_eq!(report["added"], 1, "{}: {report}", db.backend);
        assert_eq!(report["errors"][0]["line"], 2);
        assert!(
            report["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("in the future")
        );

        let extra = import(
            "extra.csv",
            b"email,reason\ne1@example.org,hard_bounce,surprise\ne2@example.org,hard_bounce\n",
        );
        let report = json(&extra);
        assert_eq!(
            (
                report["added"].as_u64(),
                report["errors"][0]["line"].as_u64()
            ),
            (Some(1), Some(2)),
            "{report}"
        );
        assert!(
            report["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("3 fields")
        );

        let unclosed = import(
            "unclosed.csv",
            b"email,reason,note\nu1@example.org,hard_bounce,\"oops\nu2@example.org,hard_bounce,\nu3@example.org,hard_bounce,\n",
        );
        expect_exit(&unclosed, 1, "an unclosed quote is reported");
        let report = json(&unclosed);
        assert_eq!(report["added"], 0, "{report}");
        assert!(
            report["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("not closed"),
            "{report}"
        );

        let mut huge =
            b"email,reason\nh1@example.org,hard_bounce\nh2@example.org,hard_bounce,\"".to_vec();
        huge.extend(std::iter::repeat_n(b'x', 2 << 20));
        huge.extend_from_slice(b"\"\nh3@example.org,hard_bounce\n");
        let output = import("huge.csv", &huge);
        expect_exit(&output, 2, "a line past the limit stops the import");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("line 3 is longer than 65536 bytes"),
            "{stderr}"
        );
        assert!(
            stderr.len() < 1_000,
            "nothing is echoed: {} bytes",
            stderr.len()
        );
        let check = bouncegate(&config, &["check", "h1@example.org", "--company", "acme"]);
        expect_exit(&check, 1, "rows before the long line are kept");
        let mut jsonl =
            b"{\"email\": \"j1@example.org\", \"reason\": \"hard_bounce\", \"note\": \"".to_vec();
        jsonl.extend(std::iter::repeat_n(b'y', 1 << 20));
        jsonl.extend_from_slice(b"\"}\n");
        let output = import("huge.jsonl", &jsonl);
        expect_exit(&output, 2, "JSONL too");
        assert!(String::from_utf8_lossy(&output.stderr).contains("line 1 is longer"));
    }
}

#[tokio::test]
async fn a_spreadsheet_safe_export_runs_no_formula() {
    for db in databases().await {
        let config = write_config(&db, "");
        let suppress = bouncegate(
            &config,
            &[
                "suppress",
                "--reason",
                "manual",
                "--company",
                "acme",
                "--note",
                "=HYPERLINK(\"http://evil.example\")",
                "--",
                "-sum@example.org",
            ],
        );
        expect_exit(&suppress, 0, "suppress");
        let plain = stdout(&bouncegate(&config, &["export"]));
        assert!(
            plain.contains("-sum@example.org,manual,acme,,email,\"=HYPERLINK"),
            "{plain}"
        );
        let safe = bouncegate(&config, &["export", "--spreadsheet-safe"]);
        expect_exit(&safe, 0, "export");
        let safe = stdout(&safe);
        assert!(
            safe.contains("'-sum@example.org,manual,acme,,email,\"'=HYPERLINK"),
            "{safe}"
        );
        for line in safe.lines().skip(1) {
            for cell in line.split(',') {
                assert!(
                    !cell.trim_matches('"').starts_with(['=', '+', '-', '@']),
                    "{cell}"
                );
            }
        }
    }
}

#[test]
fn relay_hash_password_prints_a_hash_the_config_takes() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let hashed = bouncegate_with_input(&empty, &["relay", "hash-password"], Some(b"s3cret\n"));
    expect_exit(&hashed, 0, "hash-password");
    let hash = stdout(&hashed).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("s3cret"));
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/relay.db\"\n[[companies]]\nid = \"acme\"\n[[relay.clients]]\nuser = \"news\"\npassword_hash = \"{hash}\"\ncompany = \"acme\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let check = bouncegate(&config, &["db", "migrate"]);
    expect_exit(&check, 0, "the config takes the hash");
    let nothing = bouncegate_with_input(&empty, &["relay", "hash-password"], Some(b""));
    expect_exit(&nothing, 2, "no password");
}

#[tokio::test]
async fn events_show_what_was_done_oldest_first() {
    for db in databases().await {
        let config = write_config(&db, "");
        let none = bouncegate(&config, &["events"]);
        expect_exit(&none, 0, db.backend);
        assert_eq!(stdout(&none).trim(), "no events");
        for address in ["first@example.org", "second@example.org"] {
            let suppress = bouncegate(
                &config,
                &[
                    "suppress",
                    address,
                    "--reason",
                    "manual",
                    "--company",
                    "acme",
                    "--note",
                    "asked by phone",
                ],
            );
            expect_exit(&suppress, 0, "suppress");
            let lift = bouncegate(&config, &["lift", address, "--note", "changed their mind"]);
            expect_exit(&lift, 0, "lift");
        }
        let all = bouncegate(&config, &["events", "--json"]);
        expect_exit(&all, 0, db.backend);
        let lines: Vec<serde_json::Value> = stdout(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{}: {lines:?}", db.backend);
        assert!(lines.iter().all(|e| e["kind"] == "lift"));
        assert_eq!(lines[0]["address"], "first@example.org", "oldest first");
        let one = bouncegate(
            &config,
            &["events", "--address", "SECOND@example.org", "--json"],
        );
        let text = stdout(&one);
        assert_eq!(text.lines().count(), 1, "{}: {text}", db.backend);
        assert!(text.contains("second@example.org"));
        let human = stdout(&bouncegate(&config, &["events", "--limit", "1"]));
        assert!(
            human.contains(" lift first@example.org acme via "),
            "{}: {human}",
            db.backend
        );
        let bad = bouncegate(&config, &["events", "--address", "not-an-address"]);
        expect_exit(&bad, 2, "an invalid address is an error");
    }
}
