//! Webhooks out end to end: a real HTTP receiver on loopback, the running gateway, on SQLite and
//! PostgreSQL. Events arrive signed (checked here with an independent HMAC), arrive after the
//! receiver was down, and name no erased address.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bouncegate::config::Config;
use bouncegate::model::{Channel, Reason, Source};
use bouncegate::serve::Gateway;
use bouncegate::service::{SuppressRequest, SuppressionService};
use common::databases;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const KEY: &[u8] = b"a test signing key, 32 bytes....";

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Ids answered 500 once already (the first attempt of each fails).
    refused_once: Arc<Mutex<BTreeSet<String>>>,
}

async fn hook(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers["webhook-id"].to_str().unwrap().to_string();
    receiver.got.lock().unwrap().push((headers, body));
    if receiver.refused_once.lock().unwrap().insert(id) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn receive_on(address: SocketAddr) -> (Receiver, tokio::task::JoinHandle<()>) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (receiver, task)
}

/// Checks the Standard Webhooks signature and returns the payload.
fn verified(headers: &HeaderMap, body: &[u8]) -> Value {
    let id = headers["webhook-id"].to_str().unwrap();
    let timestamp = headers["webhook-timestamp"].to_str().unwrap();
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!(age.abs() < 300, "fresh timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        data_encoding::BASE64.encode(&mac.finalize().into_bytes())
    );
    let signatures = headers["webhook-signature"].to_str().unwrap();
    assert!(
        signatures.split(' ').any(|s| s == expected),
        "signature {signatures} is not {expected}"
    );
    serde_json::from_slice(body).unwrap()
}

fn request(address: &str, reason: Reason, company: Option<&str>) -> SuppressRequest {
    SuppressRequest {
        address: address.into(),
        reason,
        company: company.map(Into::into),
        brand: None,
        channel: Channel::Email,
        note: Some("from the test".into()),
        source: Source::Api,
        created_at: None,
        created_by: None,
        expires_at: None,
    }
}

#[tokio::test]
async fn events_arrive_signed_after_the_receiver_was_down_and_name_no_erased_address() {
    for db in databases().await {
        // A port nothing listens on yet: the receiver is down.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let secret = format!("whsec_{}", data_encoding::BASE64.encode(KEY));
        let extra = format!(
            "[inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"bounces.example.net\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[relay]\nlisten = \"127.0.0.1:0\"\n\
             [webhook_delivery]\nretry_schedule = [\"1s\"]\n\
             [[webhooks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{secret}\"\n\
             events = [\"suppression.created\", \"suppression.lifted\", \"consent.recorded\", \"erasure.done\"]\n"
        );
        let path = common::write_config(&db, &extra);
        let config = Arc::new(Config::load(Some(&path)).unwrap());
        let gateway = Gateway::start(config.clone()).await.unwrap();
        let service = SuppressionService::new(gateway.store.clone(), config);

        service
            .suppress(&request(
                "kept@example.org",
                Reason::Unsubscribe,
                Some("acme"),
            ))
            .await
            .unwrap();
        service
            .consent(&common::consent("kept@example.org", "acme", b"confirmed"))
            .await
            .unwrap();
        service
            .suppress(&request("gone@example.org", Reason::HardBounce, None))
            .await
            .unwrap();
        service
            .erase(&common::erasure("gone@example.org"), "test")
            .await
            .unwrap();
        // Attempts fail while it is down.
        tokio::time::sleep(Duration::from_millis(1500)).await;

        let (receiver, task) = receive_on(SocketAddr::from(([127, 0, 0, 1], port))).await;
        let mut delivered = Vec::new();
        for _ in 0..200 {
            let got = receiver.got.lock().unwrap().clone();
            let ids: BTreeSet<String> = got
                .iter()
                .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_string())
                .collect();
            // Each id is refused once, then taken: every one seen twice means all delivered.
            let twice = ids
                .iter()
                .filter(|id| {
                    got.iter()
                        .filter(|(h, _)| h["webhook-id"].to_str().unwrap() == id.as_str())
                        .count()
                        >= 2
                })
                .count();
            if ids.len() >= 5 && twice == ids.len() {
                delivered = got;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!delivered.is_empty(), "{}: not all delivered", db.backend);
        let payloads: Vec<Value> = delivered
            .iter()
            .map(|(headers, body)| verified(headers, body))
            .collect();
        let mut types: Vec<&str> = payloads
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        types.sort();
        types.dedup();
        assert_eq!(
            types,
            [
                "consent.recorded",
                "erasure.done",
                "suppression.created",
                "suppression.lifted"
            ],
            "{}",
            db.backend
        );
        let created: Vec<&Value> = payloads
            .iter()
            .filter(|p| p["type"] == "suppression.created")
            .collect();
        assert!(
            created
                .iter()
                .any(|p| p["data"]["address"] == "kept@example.org"),
            "{}: {created:?}",
            db.backend
        );
        let everything = payloads.iter().map(Value::to_string).collect::<String>();
        assert!(
            !everything.contains("gone@example.org"),
            "{}: an erased address is never sent: {everything}",
            db.backend
        );
        assert!(
            created
                .iter()
                .any(|p| p["data"]["reason"] == "hard_bounce" && p["data"]["address"].is_null()),
            "{}",
            db.backend
        );
        // Same id on the retry: the receiver can tell a repeat.
        let first = &delivered[0].0["webhook-id"];
        assert_eq!(
            delivered
                .iter()
                .filter(|(h, _)| h["webhook-id"] == first)
                .count(),
            2
        );
        // The receiver records a request before its answer reaches the gateway, which then marks
        // the row delivered: the last one may still be in flight for a moment.
        let mut outbox = gateway.store.outbox_summary().await.unwrap();
        for _ in 0..50 {
            if outbox.pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            outbox = gateway.store.outbox_summary().await.unwrap();
        }
        assert_eq!(outbox.pending, 0, "{}: {outbox:?}", db.backend);
        assert_eq!(outbox.failed, 0, "{}", db.backend);
        gateway.stop().await;
        task.abort();
    }
}
