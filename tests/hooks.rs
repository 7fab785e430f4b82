//! Webhooks in: each provider's notification, shaped like its documented examples and signed with
//! test keys (by the openssl command line and the hmac crate, not by the code under test), sent
//! over real HTTP to the running gateway, on SQLite and PostgreSQL. A forged one changes nothing.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bouncegate::config::Config;
use bouncegate::model::{Channel, ContactStatus, MailClass};
use bouncegate::serve::Gateway;
use bouncegate::service::{CheckRequest, SuppressionService};
use common::databases;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

const MAILGUN_KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
const POSTMARK_PASSWORD: &str = "correct horse battery";

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Test keys: an RSA key with a self-signed certificate (SNS) and a P-256 key (SendGrid).
struct Keys {
    dir: tempfile::TempDir,
    sendgrid_public: String,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "sns.key",
                "-out",
                "sns.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sns.test",
            ],
            d,
        );
        openssl(
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "sg.key",
            ],
            d,
        );
        let der = openssl(&["ec", "-in", "sg.key", "-pubout", "-outform", "DER"], d);
        Keys {
            sendgrid_public: data_encoding::BASE64.encode(&der),
            dir,
        }
    }

    fn sign(&self, key: &str, digest: &str, data: &[u8]) -> String {
        let input = self.dir.path().join("input");
        std::fs::write(&input, data).unwrap();
        let signature = openssl(&["dgst", digest, "-sign", key, "input"], self.dir.path());
        data_encoding::BASE64.encode(&signature)
    }
}

/// An SNS envelope around `message`, signed (SignatureVersion 2, SHA256withRSA).
fn sns(keys: &Keys, kind: &str, message: &str, topic: &str) -> Value {
    let mut envelope = json!({
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic,
        "Message": message,
        "Timestamp": "2026-11-30T10:00:00.000Z",
        "SignatureVersion": "2",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem",
    });
    let mut names = vec!["Message", "MessageId"];
    if kind == "Notification" {
        envelope["Subject"] = json!("Amazon SES Email Event Notification");
        names.push("Subject");
    } else {
        envelope["SubscribeURL"] = json!(
            "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc"
        );
        envelope["Token"] = json!("abc");
        names.push("SubscribeURL");
    }
    names.push("Timestamp");
    if kind != "Notification" {
        names.push("Token");
    }
    names.extend(["TopicArn", "Type"]);
    let mut signed = String::new();
    for name in names {
        signed.push_str(&format!("{name}\n{}\n", envelope[name].as_str().unwrap()));
    }
    envelope["Signature"] = json!(keys.sign("sns.key", "-sha256", signed.as_bytes()));
    envelope
}

struct Running {
    gateway: Gateway,
    service: SuppressionService,
    base: String,
    http: reqwest::Client,
}

async fn start(db: &common::TestDb, keys: &Keys) -> Running {
    let extra = format!(
        "[inbound]\nlisten = \"127.0.0.1:0\"\ndomain = \"bounces.example.net\"\ndns_resolver = \"127.0.0.1:9\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[relay]\nlisten = \"127.0.0.1:0\"\n\
         [hooks.ses]\ncertificate_file = {:?}\ntopic_arns = [\"arn:aws:sns:eu-west-1:123456789012:ses-events\"]\ncompany = \"acme\"\n\
         [hooks.sendgrid]\npublic_key = \"{}\"\ncompany = \"acme\"\n\
         [hooks.mailgun]\nsigning_key = \"{MAILGUN_KEY}\"\ncompany = \"globex\"\n\
         [hooks.postmark]\nuser = \"postmark\"\npassword = \"{POSTMARK_PASSWORD}\"\ncompany = \"acme\"\n",
        keys.dir.path().join("sns.pem"),
        keys.sendgrid_public
    );
    let path = common::write_config(db, &extra);
    let config = Arc::new(Config::load(Some(&path)).unwrap());
    let gateway = Gateway::start(config.clone()).await.unwrap();
    let base = format!("http://{}", gateway.http.local_addr());
    Running {
        service: SuppressionService::new(gateway.store.clone(), config),
        gateway,
        base,
        http: reqwest::Client::new(),
    }
}

impl Running {
    async fn status(&self, address: &str, company: &str) -> ContactStatus {
        self.service
            .check(
                address,
                CheckRequest {
                    company,
                    brand: None,
                    class: MailClass::Promotional,
                    channel: Channel::Email,
                },
            )
            .await
            .unwrap()
            .status
    }

    async fn post(
        &self,
        provider: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/hooks/{provider}", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The raw evidence of the latest event about `address`.
    async fn evidence_of(&self, address: &str) -> Vec<u8> {
        let hash = self
            .gateway
            .store
            .hash(&bouncegate::address::EmailAddress::parse(address).unwrap());
        let events = self.gateway.store.events_of(&hash).await.unwrap();
        let id = events.last().unwrap().evidence_id.unwrap();
        self.service.evidence(id).await.unwrap().unwrap().raw
    }
}

#[tokio::test]
async fn amazon_ses_through_sns() {
    let keys = Keys::new();
    for db in databases().await {
        let running = start(&db, &keys).await;
        let topic = "arn:aws:sns:eu-west-1:123456789012:ses-events";
        let bounce = json!({
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent", "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": "gone@example.org", "action": "failed", "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"}],
                "timestamp": "2026-11-30T10:00:00.000Z", "feedbackId": "0100017-abc"
            },
            "mail": {"timestamp": "2026-11-30T09:59:58.000Z", "source": "news@acme.example", "messageId": "0100017-def",
                "destination": ["gone@example.org"], "commonHeaders": {"messageId": "<offer-1@acme.example>"}}
        });
        let envelope = sns(&keys, "Notification", &bounce.to_string(), topic);
        let body = serde_json::to_vec(&envelope).unwrap();

        // Forged: the message changed after signing.
        let mut forged = envelope.clone();
        forged["Message"] = json!(bounce.to_string().replace("gone@", "victim@"));
        let (status, answer) = running
            .post("ses", &serde_json::to_vec(&forged).unwrap(), &[])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {answer}", db.backend);
        assert_eq!(
            running.status("victim@example.org", "acme").await,
            ContactStatus::Active
        );

        let (status, answer) = running.post("ses", &body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{}: {answer}", db.backend);
        assert_eq!(
            running.status("gone@example.org", "acme").await,
            ContactStatus::Bounced
        );
        assert_eq!(
            running.evidence_of("gone@example.org").await,
            body,
            "{}",
            db.backend
        );

        let complaint = json!({
            "notificationType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": "angry@example.org"}],
                "complaintFeedbackType": "abuse", "timestamp": "2026-11-30T10:00:00.000Z", "feedbackId": "x"},
            "mail": {"messageId": "0100017-ghi", "source": "news@acme.example", "destination": ["angry@example.org"]}
        });
        let body =
            serde_json::to_vec(&sns(&keys, "Notification", &complaint.to_string(), topic)).unwrap();
        let (status, _) = running.post("ses", &body, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            running.status("angry@example.org", "acme").await,
            ContactStatus::Unsubscribed,
            "{}: a complaint opts out of the configured company",
            db.backend
        );
        assert_eq!(
            running.status("angry@example.org", "globex").await,
            ContactStatus::Active
        );

        // A subscription confirmation is taken (logged), not followed; another topic is refused.
        let body =
            serde_json::to_vec(&sns(&keys, "SubscriptionConfirmation", "confirm", topic)).unwrap();
        let (status, answer) = running.post("ses", &body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"], 0);
        let other = sns(
            &keys,
            "Notification",
            &bounce.to_string(),
            "arn:aws:sns:eu-west-1:1:other",
        );
        let (status, _) = running
            .post("ses", &serde_json::to_vec(&other).unwrap(), &[])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        running.gateway.stop().await;
    }
}

#[tokio::test]
async fn sendgrid_event_webhook() {
    let keys = Keys::new();
    for db in databases().await {
        let running = start(&db, &keys).await;
        let events = json!([
            {"email": "nobody@example.org", "timestamp": 1764496800, "smtp-id": "<offer-2@acme.example>",
             "event": "bounce", "type": "bounce", "status": "5.1.1",
             "reason": "550 5.1.1 The email account that you tried to reach does not exist.", "sg_event_id": "a"},
            {"email": "spam@example.org", "timestamp": 1764496800, "event": "spamreport", "sg_event_id": "b"},
            {"email": "leave@example.org", "timestamp": 1764496800, "event": "unsubscribe", "sg_event_id": "c"},
            {"email": "fine@example.org", "timestamp": 1764496800, "event": "delivered", "sg_event_id": "d"},
            {"email": "later@example.org", "timestamp": 1764496800, "event": "deferred",
             "response": "421 try again later", "sg_event_id": "e"}
        ]);
        let body = serde_json::to_vec(&events).unwrap();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut signed = timestamp.clone().into_bytes();
        signed.extend_from_slice(&body);
        let signature = keys.sign("sg.key", "-sha256", &signed);
        let headers = [
            ("X-Twilio-Email-Event-Webhook-Signature", signature.clone()),
            ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp.clone()),
        ];
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("leave@", "other@");
        let (status, _) = running
            .post("sendgrid", tampered.as_bytes(), &headers)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", db.backend);
        let (status, _) = running.post("sendgrid", &body, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: unsigned", db.backend);
        assert_eq!(
            running.status("other@example.org", "acme").await,
            ContactStatus::Active
        );

        let (status, answer) = running.post("sendgrid", &body, &headers).await;
        assert_eq!(status, StatusCode::OK, "{}: {answer}", db.backend);
        assert_eq!(answer["accepted"], 3);
        assert_eq!(
            running.status("nobody@example.org", "acme").await,
            ContactStatus::Bounced
        );
        assert_eq!(
            running.status("spam@example.org", "acme").await,
            ContactStatus::Unsubscribed
        );
        assert_eq!(
            running.status("leave@example.org", "acme").await,
            ContactStatus::Unsubscribed
        );
        assert_eq!(
            running.status("later@example.org", "acme").await,
            ContactStatus::Active
        );
        assert_eq!(
            running.status("fine@example.org", "acme").await,
            ContactStatus::Active
        );
        running.gateway.stop().await;
    }
}

fn mailgun_body(event: Value, timestamp: i64, key: &str) -> Vec<u8> {
    let token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{timestamp}{token}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
        "event-data": event
    }))
    .unwrap()
}

#[tokio::test]
async fn mailgun_webhooks() {
    let keys = Keys::new();
    for db in databases().await {
        let running = start(&db, &keys).await;
        let now = chrono::Utc::now().timestamp();
        let failed = |recipient: &str, severity: &str| {
            json!({
                "event": "failed", "severity": severity, "recipient": recipient, "reason": "bounce",
                "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist",
                    "description": "", "enhanced-code": "5.1.1"},
                "message": {"headers": {"message-id": "20261130.1@globex.example"}},
                "timestamp": 1764496800.5, "id": "x"
            })
        };
        let (status, _) = running
            .post(
                "mailgun",
                &mailgun_body(failed("forged@example.org", "permanent"), now, "wrong-key"),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", db.backend);
        let (status, _) = running
            .post(
                "mailgun",
                &mailgun_body(
                    failed("old@example.org", "permanent"),
                    now - 90_000,
                    MAILGUN_KEY,
                ),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: too old", db.backend);

        let (status, answer) = running
            .post(
                "mailgun",
                &mailgun_body(failed("dead@example.org", "permanent"), now, MAILGUN_KEY),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {answer}", db.backend);
        assert_eq!(
            running.status("dead@example.org", "globex").await,
            ContactStatus::Bounced
        );
        let (status, _) = running
            .post(
                "mailgun",
                &mailgun_body(failed("slow@example.org", "temporary"), now, MAILGUN_KEY),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            running.status("slow@example.org", "globex").await,
            ContactStatus::Active,
            "{}: a delay never counts",
            db.backend
        );
        let complained = json!({"event": "complained", "recipient": "annoyed@example.org", "timestamp": 1764496800.5});
        let (status, _) = running
            .post("mailgun", &mailgun_body(complained, now, MAILGUN_KEY), &[])
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            running.status("annoyed@example.org", "globex").await,
            ContactStatus::Unsubscribed
        );
        assert_eq!(
            running.status("annoyed@example.org", "acme").await,
            ContactStatus::Active
        );
        running.gateway.stop().await;
    }
}

#[tokio::test]
async fn postmark_webhooks() {
    let keys = Keys::new();
    for db in databases().await {
        let running = start(&db, &keys).await;
        let auth = |password: &str| {
            vec![(
                "Authorization",
                format!(
                    "Basic {}",
                    data_encoding::BASE64.encode(format!("postmark:{password}").as_bytes())
                ),
            )]
        };
        let bounce = json!({
            "RecordType": "Bounce", "ID": 4323372036854775807_i64, "Type": "HardBounce", "TypeCode": 1,
            "Name": "Hard bounce", "Tag": "Newsletter", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "ServerID": 23, "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": "missing@example.org", "From": "news@acme.example",
            "BouncedAt": "2026-11-30T10:00:00Z", "Inactive": true, "CanActivate": true, "Subject": "Offers"
        });
        let body = serde_json::to_vec(&bounce).unwrap();
        let (status, _) = running
            .post("postmark", &body, &auth("wrong password!"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", db.backend);
        let (status, _) = running.post("postmark", &body, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            running.status("missing@example.org", "acme").await,
            ContactStatus::Active
        );
        let (status, answer) = running
            .post("postmark", &body, &auth(POSTMARK_PASSWORD))
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {answer}", db.backend);
        assert_eq!(
            running.status("missing@example.org", "acme").await,
            ContactStatus::Bounced
        );

        let change = json!({
            "RecordType": "SubscriptionChange", "MessageID": "x", "ServerID": 23, "MessageStream": "broadcast",
            "ChangedAt": "2026-11-30T10:00:00Z", "Recipient": "bye@example.org", "Origin": "Recipient",
            "SuppressSending": true, "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {}
        });
        let (status, _) = running
            .post(
                "postmark",
                &serde_json::to_vec(&change).unwrap(),
                &auth(POSTMARK_PASSWORD),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            running.status("bye@example.org", "acme").await,
            ContactStatus::Unsubscribed
        );
        let (status, _) = running.post("unknown", b"{}", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        running.gateway.stop().await;
    }
}
