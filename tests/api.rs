//! The HTTP API end to end: real HTTP requests to the running gateway (`Gateway::start`), on
//! SQLite and PostgreSQL; answers compared with the CLI's.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bouncegate::config::Config;
use bouncegate::serve::Gateway;
use bouncegate::smtp::{ListenerConfig, ServerHandle, SmtpServer};
use common::{TestDb, databases};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;

const DOMAIN: &str = "bounces.example.net";
const READ: &str = "read-token-0123456789";
const WRITE: &str = "write-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

use common::Recorder;

struct Running {
    gateway: Gateway,
    upstream: ServerHandle,
    recorder: Arc<Recorder>,
    config_path: std::path::PathBuf,
    base: String,
    http: reqwest::Client,
}

impl Running {
    async fn stop(self) {
        self.gateway.stop().await;
        self.upstream.shutdown().await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `bouncegate ARGS` against the same database and config.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        common::bouncegate(&self.config_path, args)
    }
}

async fn start(db: &TestDb) -> Running {
    let recorder = Arc::new(Recorder::default());
    let upstream = SmtpServer::bind(
        ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "upstream.test"),
        recorder.clone(),
    )
    .await
    .unwrap()
    .spawn();
    let write_hash = hex::encode(sha2::Sha256::digest(WRITE.as_bytes()));
    let extra = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\ndns_resolver = \"127.0.0.1:9\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://unsub.example.org\"\n\
         tokens = [{{ name = \"crm\", token = \"{READ}\", role = \"read\" }}, \
                   {{ name = \"tool\", token_hash = \"{write_hash}\", role = \"write\" }}, \
                   {{ name = \"ops\", token = \"{ADMIN}\", role = \"admin\" }}]\n\
         [relay]\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:{}\"\n\
         [[relay.clients]]\nuser = \"news\"\npassword = \"s3cret\"\ncompany = \"acme\"\nbrands = [\"news\"]\n",
        upstream.local_addr().port()
    );
    let config_path = common::write_config(db, &extra);
    let config = Arc::new(Config::load(Some(&config_path)).unwrap());
    let gateway = Gateway::start(config).await.unwrap();
    let base = format!("http://{}", gateway.http.local_addr());
    Running {
        gateway,
        upstream,
        recorder,
        config_path,
        base,
        http: reqwest::Client::new(),
    }
}

#[tokio::test]
async fn tokens_and_roles_guard_every_endpoint() {
    for db in databases().await {
        let api = start(&db).await;
        let check = "/v1/check?address=jane@example.org&company=acme";
        let response = api.http.get(api.url(check)).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{}",
            db.backend
        );
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{}",
            db.backend
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
        assert!(body["message"].as_str().unwrap().contains("Bearer"));

        let (status, body) = api.get(check, "wrong-token-0123456789").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "unauthorized");

        let (status, _) = api.get(check, READ).await;
        assert_eq!(status, StatusCode::OK, "{}", db.backend);
        // The write token is configured only by its SHA-256.
        let (status, _) = api.get(check, WRITE).await;
        assert_eq!(status, StatusCode::OK, "{}", db.backend);

        let block = json!({"address": "jane@example.org", "reason": "manual", "company": "acme", "note": "asked by phone"});
        let (status, body) = api.post("/v1/suppressions", READ, block.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}: {body}", db.backend);
        assert_eq!(body["code"], "forbidden");
        let (status, _) = api.get("/v1/queue", WRITE).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}", db.backend);
        let (status, body) = api.get("/v1/queue", ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{}", db.backend);
        assert_eq!(body["queued"], 0);
        let (status, _) = api.post("/v1/suppressions", WRITE, block).await;
        assert_eq!(status, StatusCode::CREATED, "{}", db.backend);

        // Unknown parameters and fields are refused, not ignored.
        let (status, body) = api.get(&format!("{check}&clas=service"), READ).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", db.backend);
        assert_eq!(body["code"], "invalid_request");
        let (status, body) = api
            .post(
                "/v1/suppressions",
                WRITE,
                json!({"address": "x@example.org", "reason": "manual", "note": "n", "scope": "global"}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}: {body}",
            db.backend
        );
        assert_eq!(body["code"], "invalid_body");
        api.stop().await;
    }
}

#[tokio::test]
async fn check_status_suppress_lift_consent_erase_agree_with_the_cli() {
    for db in databases().await {
        let api = start(&db).await;
        let address = "Max.Muster@Example.org";
        let (status, body) = api
            .post(
                "/v1/suppressions",
                WRITE,
                json!({"address": address, "reason": "manual", "company": "acme"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", db.backend);
        assert_eq!(body["code"], "note_required", "{body}");
        let (status, body) = api
            .post(
                "/v1/suppressions",
                WRITE,
                json!({"address": address, "reason": "unsubscribe", "company": "acme", "brand": "news", "note": "said so on the phone"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", db.backend);
        let unsubscribe_id = body["id"].as_i64().unwrap();
        let (status, body) = api
            .post(
                "/v1/suppressions",
                WRITE,
                json!({"address": address, "reason": "hard_bounce", "note": "mailbox gone"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", db.backend);
        let bounce_id = body["id"].as_i64().unwrap();

        for (query, args) in [
            (
                "company=acme&brand=news",
                vec!["--company", "acme", "--brand", "news"],
            ),
            (
                "company=acme&brand=shop&class=service",
                vec!["--company", "acme", "--brand", "shop", "--class", "service"],
            ),
            (
                "company=globex&channel=postal",
                vec!["--company", "globex", "--channel", "postal"],
            ),
        ] {
            let (status, from_api) = api
                .get(
                    &format!("/v1/check?address=max.muster%40example.org&{query}"),
                    READ,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{}", db.backend);
            let mut cli_args = vec!["check", "max.muster@example.org", "--json"];
            cli_args.extend(args);
            let from_cli = common::json(&api.cli(&cli_args));
            assert_eq!(from_api, from_cli, "{}: {query}", db.backend);
        }

        let (status, from_api) = api.get("/v1/status/max.muster@example.org", READ).await;
        assert_eq!(status, StatusCode::OK);
        let from_cli = common::json(&api.cli(&["status", "max.muster@example.org", "--json"]));
        assert_eq!(from_api, from_cli, "{}", db.backend);
        assert_eq!(from_api["companies"][0]["status"], "B");

        // Staff lift the bounce; the owner's opt-out refuses with its own code.
        let (status, body) = api
            .post(
                &format!("/v1/suppressions/{unsubscribe_id}/lift"),
                WRITE,
                json!({"note": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{}: {body}", db.backend);
        assert_eq!(body["code"], "owner_opt_out");
        let response = api
            .http
            .post(api.url(&format!("/v1/suppressions/{bounce_id}/lift")))
            .bearer_auth(WRITE)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{}: a lift needs no body",
            db.backend
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["lifted"][0]["id"], bounce_id);
        let (status, body) = api
            .post(
                &format!("/v1/suppressions/{bounce_id}/lift"),
                WRITE,
                json!({}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{}: lifted already: {body}",
            db.backend
        );

        let (status, verdict) = api
            .get(
                "/v1/check?address=max.muster@example.org&company=acme&brand=news",
                READ,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(verdict["allowed"], false);
        assert_eq!(verdict["status"], "U");

        // The owner's confirmed opt-in lifts it.
        let (status, body) = api
            .post(
                "/v1/consents",
                WRITE,
                json!({"address": address, "company": "acme", "brand": "news", "proof": "double opt-in confirmed 2026-11-30 10:00 from 203.0.113.7"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", db.backend);
        assert_eq!(body["lifted"], json!([unsubscribe_id]));
        let (_, verdict) = api
            .get(
                "/v1/check?address=max.muster@example.org&company=acme&brand=news",
                READ,
            )
            .await;
        assert_eq!(verdict["allowed"], true, "{}: {verdict}", db.backend);

        // Erasure: status D, still blocked, and the event log keeps only the hash.
        let (status, body) = api
            .post("/v1/erasure", WRITE, json!({"address": address}))
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", db.backend);
        assert_eq!(body["erased"], true);
        let (_, verdict) = api
            .get(
                "/v1/check?address=max.muster@example.org&company=acme",
                READ,
            )
            .await;
        assert_eq!(verdict["allowed"], false);
        assert_eq!(verdict["status"], "D");
        let (_, events) = api
            .get("/v1/events?address=max.muster@example.org", READ)
            .await;
        let kinds: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"erase"), "{}: {kinds:?}", db.backend);
        assert!(
            events["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["address"].is_null()),
            "{}: {events}",
            db.backend
        );
        // Errors name the problem in JSON.
        let (status, body) = api
            .get("/v1/check?address=a..b@example.org&company=acme", READ)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "invalid_address");
        let (status, body) = api
            .get("/v1/check?address=a@example.org&company=initech", READ)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "unknown_company");
        api.stop().await;
    }
}

#[tokio::test]
async fn lists_page_with_cursors_and_bulk_streams() {
    for db in databases().await {
        let api = start(&db).await;
        let mut csv = String::from("email,reason,company,note\n");
        for i in 0..25 {
            csv.push_str(&format!("user{i}@example.org,unsubscribe,acme,imported\n"));
        }
        csv.push_str("not an address,unsubscribe,acme,bad row\n");
        let response = api
            .http
            .post(api.url("/v1/import?format=csv"))
            .bearer_auth(WRITE)
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", db.backend);
        let report: Value = response.json().await.unwrap();
        assert_eq!(report["added"], 25, "{}: {report}", db.backend);
        assert_eq!(report["rejected"], 1);
        assert_eq!(report["errors"][0]["line"], 27);

        let mut seen = Vec::new();
        let mut cursor: Option<i64> = None;
        let mut pages = 0;
        loop {
            let path = match cursor {
                Some(c) => format!("/v1/suppressions?company=acme&limit=10&cursor={c}"),
                None => "/v1/suppressions?company=acme&limit=10".to_string(),
            };
            let (status, page) = api.get(&path, READ).await;
            assert_eq!(status, StatusCode::OK, "{}: {page}", db.backend);
            pages += 1;
            for item in page["items"].as_array().unwrap() {
                seen.push(item["address"].as_str().unwrap().to_string());
            }
            match page["next_cursor"].as_i64() {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{}", db.backend);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 25, "{}: each once", db.backend);
        let (status, body) = api.get("/v1/suppressions?limit=0", READ).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        // Filter: decisions stream back in input order, then the totals.
        let response = api
            .http
            .post(api.url("/v1/filter?company=acme&brand=news"))
            .bearer_auth(READ)
            .body("user3@example.org\nfresh@example.org\nbroken@@example.org\n")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", db.backend);
        let text = response.text().await.unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{}: {text}", db.backend);
        assert_eq!(lines[0]["email"], "user3@example.org");
        assert_eq!(lines[0]["sendable"], false);
        assert!(lines[0]["reason"].as_str().unwrap().contains("unsubscribe"));
        assert_eq!(lines[1]["sendable"], true);
        assert_eq!(lines[2]["sendable"], false);
        assert_eq!(
            lines[3]["done"],
            json!({"read": 3, "sendable": 1, "rejected": 2})
        );
        let (status, body) = api
            .get(
                "/v1/check?address=a@example.org&company=acme&brand=weekly",
                READ,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "unknown_brand");

        // Export streams the import format.
        let response = api
            .http
            .get(api.url("/v1/export?format=jsonl"))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert_eq!(text.lines().count(), 25, "{}: {text}", db.backend);

        // Events page too.
        let (status, page) = api.get("/v1/events?kind=import&limit=1", READ).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        api.stop().await;
    }
}

/// Relays a promotional mail to `to` and returns the one-click URL path of its copy.
async fn relayed_unsubscribe_path(api: &Running, relay: SocketAddr, to: &str) -> String {
    let data = format!(
        "From: News <news@acme.example>\r\nTo: {to}\r\nSubject: Offers\r\nMessage-ID: <offer-{to}>\r\n\r\nBuy now.\r\n"
    );
    let reply = common::smtp::transaction(
        relay,
        Some(("news", "s3cret")),
        "news@acme.example",
        to,
        &data,
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    for _ in 0..200 {
        let received = api.recorder.0.lock().unwrap().clone();
        if let Some(message) = received
            .iter()
            .find(|m| m.rcpt_to.iter().any(|r| r.address.eq_ignore_ascii_case(to)))
        {
            let text = String::from_utf8_lossy(&message.data).into_owned();
            let start = text
                .find("https://unsub.example.org/u/")
                .expect("one-click link");
            let link = &text[start + "https://unsub.example.org".len()..];
            return link[..link.find('>').unwrap()].to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the upstream got no copy for {to}");
}

#[tokio::test]
async fn one_click_unsubscribe_from_a_relayed_newsletter() {
    for db in databases().await {
        let api = start(&db).await;
        let relay = api.gateway.relay.local_addr();
        let path = relayed_unsubscribe_path(&api, relay, "reader@example.org").await;
        let check = "/v1/check?address=reader@example.org&company=acme&brand=news";

        // A link scanner's GET changes nothing; the page names the sender and has the button.
        let response = api
            .http
            .get(api.url(&path))
            .header("Accept-Language", "de-DE,de;q=0.9")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", db.backend);
        let page = response.text().await.unwrap();
        assert!(page.contains("lang=\"de\""), "{page}");
        assert!(page.contains("<form method=\"post\""), "{page}");
        assert!(page.contains("news"), "{page}");
        let (_, verdict) = api.get(check, READ).await;
        assert_eq!(
            verdict["allowed"], true,
            "{}: a GET never unsubscribes",
            db.backend
        );

        // A tampered token: 400, nothing changes.
        let mut tampered = path.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'a' { 'b' } else { 'a' });
        let response = api.http.post(api.url(&tampered)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{}", db.backend);
        let (_, verdict) = api.get(check, READ).await;
        assert_eq!(verdict["allowed"], true);

        // The RFC 8058 POST, as Gmail sends it.
        let response = api
            .http
            .post(api.url(&path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", "Mozilla/5.0 (compatible; Google-One-Click)")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", db.backend);
        assert!(response.headers().get("set-cookie").is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("Unsubscribed"), "{page}");
        let (_, verdict) = api.get(check, READ).await;
        assert_eq!(verdict["allowed"], false, "{}: {verdict}", db.backend);
        assert_eq!(verdict["blocking"][0]["reason"], "unsubscribe");
        assert_eq!(verdict["blocking"][0]["scope"], "brand:acme/news");
        assert_eq!(verdict["blocking"][0]["source"], "one_click");
        let (_, other_brand) = api
            .get(
                "/v1/check?address=reader@example.org&company=acme&brand=shop",
                READ,
            )
            .await;
        assert_eq!(
            other_brand["allowed"], true,
            "the token's scope is the brand"
        );

        // The request is the evidence, byte for byte through the API.
        let evidence_id = verdict["blocking"][0]["evidence_id"].as_i64().unwrap();
        let response = api
            .http
            .get(api.url(&format!("/v1/evidence/{evidence_id}")))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "message/rfc822");
        let raw = response.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Google-One-Click"), "{text}");
        assert!(text.ends_with("List-Unsubscribe=One-Click"), "{text}");
        let shown = api.cli(&["evidence", "show", &evidence_id.to_string()]);
        assert_eq!(
            shown.stdout,
            raw.to_vec(),
            "{}: API and CLI give the same bytes",
            db.backend
        );
        let (_, meta) = api
            .get(&format!("/v1/evidence/{evidence_id}?meta=1"), READ)
            .await;
        assert_eq!(
            meta["sha256"],
            hex::encode(sha2::Sha256::digest(&raw)),
            "{}",
            db.backend
        );

        // Repeating it is harmless and says so; a POST without a body counts too.
        let response = api.http.post(api.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Already unsubscribed")
        );
        let (_, page) = api
            .get("/v1/suppressions?address=reader@example.org", READ)
            .await;
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            1,
            "{}: no duplicate",
            db.backend
        );

        let path = relayed_unsubscribe_path(&api, relay, "second@example.org").await;
        let response = api.http.post(api.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", db.backend);
        let (_, verdict) = api
            .get(
                "/v1/check?address=second@example.org&company=acme&brand=news",
                READ,
            )
            .await;
        assert_eq!(
            verdict["allowed"], false,
            "{}: body-less POST counts",
            db.backend
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn metrics_and_the_openapi_document_describe_the_server() {
    let db = databases().await.remove(0);
    let api = start(&db).await;
    let (status, _) = api
        .get("/v1/check?address=a@example.org&company=acme", READ)
        .await;
    assert_eq!(status, StatusCode::OK);
    let relay = api.gateway.relay.local_addr();
    relayed_unsubscribe_path(&api, relay, "metered@example.org").await;
    let metrics = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut names = std::collections::BTreeSet::new();
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series value");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("bouncegate_"), "{line}");
        names.insert(name.to_string());
    }
    for expected in [
        "bouncegate_http_requests_total",
        "bouncegate_http_request_duration_seconds_bucket",
        "bouncegate_queue_items",
        "bouncegate_queue_oldest_age_seconds",
        "bouncegate_smtp_sessions_total",
        "bouncegate_deliveries_total",
        "bouncegate_store_duration_seconds_bucket",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }
    assert!(
        metrics.contains("route=\"/v1/check\""),
        "requests counted by route: {metrics}"
    );
    assert!(
        metrics.contains("bouncegate_smtp_sessions_total{listener=\"relay\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("metered@example.org"),
        "no address in the metrics"
    );

    let document: Value = api
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/v1/check",
        "/v1/status/{address}",
        "/v1/suppressions",
        "/v1/suppressions/{id}/lift",
        "/v1/consents",
        "/v1/erasure",
        "/v1/events",
        "/v1/blocked",
        "/v1/evidence/{id}",
        "/v1/filter",
        "/v1/import",
        "/v1/export",
        "/v1/queue",
        "/v1/queue/{id}",
        "/v1/queue/{id}/{action}",
    ] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    api.stop().await;
}

/// Reads until the server closes the connection or `wait` passes; whether it closed.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_and_surplus_connections_hold_nothing() {
    use tokio::io::AsyncWriteExt;
    let db = databases().await.remove(0);
    let extra = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"{DOMAIN}\"\ndns_resolver = \"127.0.0.1:9\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\nmax_connections = 2\nheader_read_timeout_secs = 1\n\
         tokens = [{{ token = \"{READ}\", role = \"read\" }}]\n\
         [relay]\nlisten = \"127.0.0.1:0\"\n"
    );
    let path = common::write_config(&db, &extra);
    let config = Arc::new(Config::load(Some(&path)).unwrap());
    let gateway = Gateway::start(config).await.unwrap();
    let address = gateway.http.local_addr();
    // Two clients that trickle a request line and never finish their headers.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /v1/check?addr").await.unwrap();
        slow.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is over the cap: closed at once.
    let mut surplus = tokio::net::TcpStream::connect(address).await.unwrap();
    assert!(
        closed_within(&mut surplus, Duration::from_millis(500)).await,
        "a connection past http.max_connections is closed"
    );
    // The slow ones are dropped after the header timeout...
    for stream in &mut slow {
        assert!(
            closed_within(stream, Duration::from_secs(3)).await,
            "a client that does not finish its headers is dropped"
        );
    }
    // ...and their slots serve the next client.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = reqwest::Client::new()
        .get(format!(
            "http://{address}/v1/check?address=a@example.org&company=acme"
        ))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    gateway.stop().await;
}
