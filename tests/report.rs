//! The access report (GDPR Art. 15) of an address used through the real gateway: it names every
//! item the database holds about the address, the HTML page loads nothing and runs nothing, the
//! API and the CLI give the same report, and an erased address's report says only that and when.
//! Postal blocks appear, export and block like e-mail ones, each on its own channel.

mod common;

use std::collections::BTreeSet;

use bouncegate::address::EmailAddress;
use bouncegate::model::{Channel, MailClass, Reason};
use bouncegate::service::CheckRequest;
use bouncegate::store::LiftPath;
use common::databases;
use common::gateway::{READ_TOKEN, Running};
use sqlx::{AnyConnection, Connection, Row};

/// The ids of `table`'s rows under the address's hash.
async fn ids(url: &str, table: &str, column: &str, hash: &str) -> BTreeSet<i64> {
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let ids = sqlx::query(&format!("SELECT id FROM {table} WHERE {column} = $1"))
        .bind(hash)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<i64, _>("id"))
        .collect();
    conn.close().await.unwrap();
    ids
}

/// The tags of a page (what lies between each '<' and the next '>').
fn tags(html: &str) -> Vec<&str> {
    html.split('<')
        .skip(1)
        .map(|rest| rest.split('>').next().unwrap_or(rest))
        .collect()
}

/// A heavy footprint: five more newsletters, the common footprint, the five bounced, and a second
/// unsubscribe mail whose headers try to load and run things.
async fn heavy_footprint(running: &Running, address: &str) {
    let mut return_paths = Vec::new();
    for n in 1..=5 {
        return_paths.push(running.relay_newsletter(address, n).await);
    }
    running.footprint(address).await;
    for return_path in &return_paths {
        running.bounce(address, return_path).await;
    }
    running
        .unsubscribe_mail(
            address,
            "X-Evil: <script>alert(1)</script><img src=\"https://tracker.example/p.png\">\r\n\
             List-Unsubscribe: <https://evil.example/u>\r\n",
        )
        .await;
}

#[tokio::test]
async fn the_report_of_a_heavily_used_address_names_every_item_and_loads_nothing() {
    sqlx::any::install_default_drivers();
    for db in databases().await {
        let running = common::gateway::start(&db, "").await;
        let address = "anna.report@example.org";
        heavy_footprint(&running, address).await;
        let report = running.service.access_report(address).await.unwrap();
        let hash = running
            .gateway
            .store
            .hash(&EmailAddress::parse(address).unwrap());
        let hash = hash.as_str();

        // Every row under the address's hash is in the report, and nothing else.
        let named = |items: Vec<i64>| items.into_iter().collect::<BTreeSet<_>>();
        for (table, column, reported) in [
            (
                "events",
                "address_hash",
                named(report.events.iter().map(|e| e.id).collect()),
            ),
            (
                "suppressions",
                "address_hash",
                named(report.suppressions.iter().map(|s| s.id).collect()),
            ),
            (
                "consents",
                "address_hash",
                named(report.consents.iter().map(|c| c.id).collect()),
            ),
            (
                "sends",
                "address_hash",
                named(report.sends.iter().map(|s| s.id).collect()),
            ),
        ] {
            let held = ids(&db.url, table, column, hash).await;
            assert!(
                !held.is_empty(),
                "{}: the footprint has {table}",
                db.backend
            );
            assert_eq!(reported, held, "{}: {table}", db.backend);
        }
        let linked: BTreeSet<i64> = report
            .events
            .iter()
            .filter_map(|e| e.evidence_id)
            .chain(report.suppressions.iter().filter_map(|s| s.evidence_id))
            .collect();
        assert_eq!(
            named(report.evidence.iter().map(|e| e.id).collect()),
            linked,
            "{}: every stored mail the address's events and blocks name",
            db.backend
        );
        assert!(
            report.sends.len() >= 6 && report.evidence.len() >= 8,
            "{}: {} sends, {} mails",
            db.backend,
            report.sends.len(),
            report.evidence.len()
        );
        // How each block lifts, and the proof of the opt-out with its header.
        let unsubscribe = report
            .suppressions
            .iter()
            .find(|s| s.reason == Reason::Unsubscribe)
            .unwrap();
        assert_eq!(
            unsubscribe.lift,
            LiftPath::Staff,
            "an unauthenticated unsubscribe mail: staff may lift it"
        );
        let postal = report
            .suppressions
            .iter()
            .find(|s| s.channel == Channel::Postal)
            .unwrap();
        assert_eq!(
            (postal.reason, postal.lift, postal.company.as_str()),
            (Reason::Manual, LiftPath::Staff, "globex")
        );
        assert!(postal.note.as_deref().unwrap().contains("phoned"));
        let proof = report
            .evidence
            .iter()
            .find(|e| e.id == unsubscribe.evidence_id.unwrap())
            .unwrap();
        assert!(
            proof.headers.as_deref().unwrap().contains("Subject: stop"),
            "{proof:?}"
        );
        assert!(
            proof.kept.until.is_none(),
            "the proof of a standing opt-out stays while it stands"
        );
        let bounce_mail = report.evidence.iter().find(|e| e.kind == "bounce").unwrap();
        assert!(bounce_mail.headers.is_none(), "bounce mails: metadata only");
        assert!(bounce_mail.kept.until.is_some());

        // The page: one file, nothing loaded, nothing run, the hostile header shown as text.
        for lang in [bouncegate::render::Lang::De, bouncegate::render::Lang::En] {
            let html = bouncegate::render::report::html(&report, lang);
            // Text is escaped, so every '<' left opens a real tag: none may load or run anything.
            for tag in tags(&html) {
                let lower = tag.to_lowercase();
                for forbidden in [
                    "script", "img", "link", "iframe", "object", "embed", "src=", "href=", "url(",
                    "@import", "http",
                ] {
                    assert!(
                        !lower.contains(forbidden),
                        "{}: the page has the tag <{tag}>",
                        db.backend
                    );
                }
            }
            let style = &html[html.find("<style>").unwrap()..html.find("</style>").unwrap()];
            assert!(!style.contains("url(") && !style.contains("@import"));
            assert!(
                html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "the header is shown as text"
            );
            assert!(
                html.contains(address)
                    && html.contains("Grund") == (lang == bouncegate::render::Lang::De)
            );
        }

        // The API gives the CLI's report; the HTML form is the page.
        let http = reqwest::Client::new();
        let url = format!("{}/v1/report/{address}", running.base);
        let response = http.get(&url).bearer_auth(READ_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let mut api: serde_json::Value = response.json().await.unwrap();
        let cli = common::bouncegate(
            &running.config_path,
            &["report", address, "--format", "json"],
        );
        common::expect_exit(&cli, 0, "report --format json");
        let mut cli = common::json(&cli);
        api["generated_at"] = serde_json::Value::Null;
        cli["generated_at"] = serde_json::Value::Null;
        assert_eq!(api, cli, "{}: the API and the CLI disagree", db.backend);
        let response = http
            .get(format!("{url}?format=html"))
            .bearer_auth(READ_TOKEN)
            .header("Accept-Language", "de-DE,de;q=0.9")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8"
        );
        assert!(
            response.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains("Auskunft nach Art. 15 DSGVO"),
            "German after Accept-Language"
        );
        let response = http
            .get(format!("{url}?format=pdf"))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "an unknown format is refused");
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 401);

        // Postal blocks: in the export, and each channel blocks only itself.
        let export = common::bouncegate(&running.config_path, &["export", "--format", "jsonl"]);
        common::expect_exit(&export, 0, "export");
        let postal_rows: Vec<serde_json::Value> = common::stdout(&export)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|row| row["channel"] == "postal")
            .collect();
        assert_eq!(
            postal_rows.len(),
            1,
            "{}: the postal block is exported",
            db.backend
        );
        assert_eq!(postal_rows[0]["company"], "globex");
        let ask = |company, channel| CheckRequest {
            company,
            brand: None,
            class: MailClass::Promotional,
            channel,
        };
        // Each channel blocks only itself (another address: the one above bounced everywhere).
        let service = &running.service;
        let address = "carl.channels@example.org";
        for (company, channel, reason) in [
            ("globex", Channel::Postal, Reason::Manual),
            ("acme", Channel::Email, Reason::Unsubscribe),
        ] {
            service
                .suppress(&bouncegate::service::SuppressRequest {
                    address: address.into(),
                    reason,
                    company: Some(company.into()),
                    brand: None,
                    channel,
                    note: Some("Grund Post Sperre: per Telefon".into()),
                    source: bouncegate::model::Source::Cli,
                    created_at: None,
                    created_by: None,
                    expires_at: None,
                })
                .await
                .unwrap();
        }
        assert!(
            !service
                .check(address, ask("globex", Channel::Postal))
                .await
                .unwrap()
                .allowed
        );
        assert!(
            service
                .check(address, ask("globex", Channel::Email))
                .await
                .unwrap()
                .allowed,
            "a postal block never blocks e-mail"
        );
        assert!(
            !service
                .check(address, ask("acme", Channel::Email))
                .await
                .unwrap()
                .allowed
        );
        assert!(
            service
                .check(address, ask("acme", Channel::Postal))
                .await
                .unwrap()
                .allowed,
            "an e-mail opt-out never blocks letters"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn an_erased_addresss_report_says_when_and_nothing_more() {
    sqlx::any::install_default_drivers();
    for db in databases().await {
        let running = common::gateway::start(&db, "").await;
        let address = "ben.report@example.org";
        heavy_footprint(&running, address).await;
        running
            .service
            .erase(&common::erasure(address), "dpo@acme.example")
            .await
            .unwrap();
        let report = running.service.access_report(address).await.unwrap();
        let erased = report.erased.as_ref().expect("the erasure is recorded");
        assert_eq!(erased.erased_by.as_deref(), Some("dpo@acme.example"));
        assert!(
            report.companies.is_empty()
                && report.suppressions.is_empty()
                && report.events.is_empty()
        );
        assert!(
            report.consents.is_empty() && report.evidence.is_empty() && report.sends.is_empty()
        );
        // No personal data beyond the address asked about (and the erasing officer's name).
        let json = serde_json::to_string(&report)
            .unwrap()
            .replace(address, "")
            .replace("dpo@acme.example", "");
        assert!(!json.contains('@'), "{}: {json}", db.backend);
        for lang in [bouncegate::render::Lang::De, bouncegate::render::Lang::En] {
            let html = bouncegate::render::report::html(&report, lang);
            let html = html[html.find("<body>").unwrap()..]
                .replace(address, "")
                .replace("dpo@acme.example", "");
            assert!(!html.contains('@'), "{}: {html}", db.backend);
            let text = bouncegate::render::report::text(&report, lang)
                .replace(address, "")
                .replace("dpo@acme.example", "");
            assert!(!text.contains('@'), "{}: {text}", db.backend);
        }
        // Asked in another spelling, the same answer.
        let again = running
            .service
            .access_report("Ben.Report@Example.ORG")
            .await
            .unwrap();
        assert_eq!(again.erased, report.erased);
        running.stop().await;
    }
}
