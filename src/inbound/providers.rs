//! Webhooks in: the upstream ESP's own bounce, complaint and unsubscribe notifications (Amazon SES
//! through SNS, SendGrid, Mailgun, Postmark). Each request's authenticity is checked by the
//! provider's own mechanism before anything is read from it; what it reports becomes the same
//! items a received mail would (see [`super::InboundSink::process_notification`]).

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{HooksConfig, MailgunHook, PostmarkHook, SendgridHook, SesHook};

/// The providers we take notifications from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Ses,
    Sendgrid,
    Mailgun,
    Postmark,
}

impl Provider {
    /// From the URL's `/hooks/{provider}`.
    pub fn from_path(name: &str) -> Option<Self> {
        match name {
            "ses" => Some(Provider::Ses),
            "sendgrid" => Some(Provider::Sendgrid),
            "mailgun" => Some(Provider::Mailgun),
            "postmark" => Some(Provider::Postmark),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Ses => "ses",
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
            Provider::Postmark => "postmark",
        }
    }

    /// The company an unsubscribe or complaint belongs to when no send record names it.
    pub fn company(self, hooks: &HooksConfig) -> Option<String> {
        match self {
            Provider::Ses => hooks.ses.as_ref()?.company.clone(),
            Provider::Sendgrid => hooks.sendgrid.as_ref()?.company.clone(),
            Provider::Mailgun => hooks.mailgun.as_ref()?.company.clone(),
            Provider::Postmark => hooks.postmark.as_ref()?.company.clone(),
        }
    }
}

/// Why a notification was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("this provider is not configured ([hooks.{0}])")]
    NotConfigured(&'static str),
    #[error("not authentic: {0}")]
    Unauthenticated(String),
    #[error("not a notification we read: {0}")]
    Malformed(String),
    #[error("cannot check the signature now: {0}")]
    Unavailable(String),
}

/// One thing a notification reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A failed delivery; `permanent` as the provider says (the analysis decides hard or soft).
    Bounce {
        address: String,
        status: Option<String>,
        diagnostic: String,
        permanent: bool,
        message_id: Option<String>,
    },
    Complaint {
        address: String,
        feedback_type: Option<String>,
        message_id: Option<String>,
    },
    /// The recipient used the provider's unsubscribe link.
    Unsubscribe {
        address: String,
        message_id: Option<String>,
    },
}

/// What a request brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    pub items: Vec<Item>,
    /// An SNS subscription confirmation's URL: logged for the operator, never followed.
    pub confirmation: Option<String>,
}

/// Reads a request header (case-insensitive name).
pub type Headers<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// Checks and reads provider notifications; keeps fetched SNS certificates.
#[derive(Default)]
pub struct Providers {
    sns_keys: Mutex<HashMap<String, Vec<u8>>>,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers(..)")
    }
}

impl Providers {
    /// With a client for fetching SNS signing certificates.
    pub fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            sns_keys: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .ok(),
        }
    }

    /// Checks a request's authenticity and reads what it reports.
    ///
    /// # Errors
    /// Not configured, not authentic, unreadable, or (SES) its certificate cannot be had now.
    pub async fn read(
        &self,
        provider: Provider,
        hooks: &HooksConfig,
        headers: Headers<'_>,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Notification, HookError> {
        let missing = || HookError::NotConfigured(provider.as_str());
        match provider {
            Provider::Ses => {
                self.ses(hooks.ses.as_ref().ok_or_else(missing)?, body)
                    .await
            }
            Provider::Sendgrid => sendgrid(
                hooks.sendgrid.as_ref().ok_or_else(missing)?,
                headers,
                body,
                now,
            ),
            Provider::Mailgun => mailgun(hooks.mailgun.as_ref().ok_or_else(missing)?, body, now),
            Provider::Postmark => {
                postmark(hooks.postmark.as_ref().ok_or_else(missing)?, headers, body)
            }
        }
    }

    async fn ses(&self, hook: &SesHook, body: &[u8]) -> Result<Notification, HookError> {
        let message: Value = serde_json::from_slice(body)
            .map_err(|e| HookError::Malformed(format!("not JSON: {e}")))?;
        let field = |name: &str| message.get(name).and_then(Value::as_str);
        let kind = field("Type").ok_or_else(|| HookError::Malformed("no Type".into()))?;
        let names: &[&str] = match kind {
            "Notification" => &[
                "Message",
                "MessageId",
                "Subject",
                "Timestamp",
                "TopicArn",
                "Type",
            ],
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            ],
            other => return Err(HookError::Malformed(format!("SNS Type {other:?}"))),
        };
        let mut signed = String::new();
        for name in names {
            if let Some(value) = field(name) {
                signed.push_str(name);
                signed.push('\n');
                signed.push_str(value);
                signed.push('\n');
            }
        }
        let signature = data_encoding::BASE64
            .decode(field("Signature").unwrap_or("").as_bytes())
            .map_err(|_| HookError::Unauthenticated("no SNS signature".into()))?;
        let algorithm: &dyn ring::signature::VerificationAlgorithm = match field("SignatureVersion")
        {
            Some("1") => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Some("2") => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(HookError::Unauthenticated(format!(
                    "SNS SignatureVersion {other:?}"
                )));
            }
        };
        let key = self
            .sns_key(hook, field("SigningCertURL").unwrap_or(""))
            .await?;
        ring::signature::UnparsedPublicKey::new(algorithm, &key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| HookError::Unauthenticated("the SNS signature does not match".into()))?;
        let topic = field("TopicArn").unwrap_or("");
        if !hook.topic_arns.is_empty() && !hook.topic_arns.iter().any(|t| t == topic) {
            return Err(HookError::Unauthenticated(format!(
                "topic {topic:?} is not in hooks.ses.topic_arns"
            )));
        }
        if kind != "Notification" {
            return Ok(Notification {
                items: Vec::new(),
                confirmation: field("SubscribeURL").map(str::to_string),
            });
        }
        let inner: Value = serde_json::from_str(field("Message").unwrap_or(""))
            .map_err(|e| HookError::Malformed(format!("SES message is not JSON: {e}")))?;
        Ok(Notification {
            items: ses_items(&inner),
            confirmation: None,
        })
    }

    /// The RSA public key that signs SNS messages: from the configured certificate, or fetched
    /// from an SNS host over https.
    async fn sns_key(&self, hook: &SesHook, url: &str) -> Result<Vec<u8>, HookError> {
        if let Some(path) = &hook.certificate_file {
            let pem = std::fs::read(path).map_err(|e| {
                HookError::Unavailable(format!("cannot read {}: {e}", path.display()))
            })?;
            return public_key_of_pem(&pem);
        }
        if !is_sns_certificate_url(url) {
            return Err(HookError::Unauthenticated(format!(
                "SigningCertURL {url:?} is not an https URL of an SNS host"
            )));
        }
        if let Some(key) = self.sns_keys.lock().expect("not poisoned").get(url) {
            return Ok(key.clone());
        }
        let client = self
            .http
            .as_ref()
            .ok_or_else(|| HookError::Unavailable("no HTTP client".into()))?;
        let pem = client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| HookError::Unavailable(format!("cannot fetch {url}: {e}")))?
            .bytes()
            .await
            .map_err(|e| HookError::Unavailable(format!("cannot fetch {url}: {e}")))?;
        let key = public_key_of_pem(&pem)?;
        self.sns_keys
            .lock()
            .expect("not poisoned")
            .insert(url.to_string(), key.clone());
        Ok(key)
    }
}

/// `https://sns.<region>.amazonaws.com[.cn]/….pem`.
fn is_sns_certificate_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.to_ascii_lowercase();
    let region_host = host
        .strip_prefix("sns.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .is_some_and(|region| {
            !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    region_host && path.ends_with(".pem") && !path.contains("..") && !url.contains('@')
}

/// The subject public key of a PEM certificate (for RSA: the PKCS#1 key ring verifies with).
fn public_key_of_pem(pem: &[u8]) -> Result<Vec<u8>, HookError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| HookError::Unavailable(format!("not a PEM certificate: {e}")))?;
    let certificate = pem
        .parse_x509()
        .map_err(|e| HookError::Unavailable(format!("not a certificate: {e}")))?;
    Ok(certificate.public_key().subject_public_key.data.to_vec())
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    let mut value = value;
    for key in path {
        value = value.get(key)?;
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn ses_items(message: &Value) -> Vec<Item> {
    let kind = text(message, &["notificationType"])
        .or_else(|| text(message, &["eventType"]))
        .unwrap_or_default();
    let message_id = text(message, &["mail", "commonHeaders", "messageId"]).or_else(|| {
        message["mail"]["headers"]
            .as_array()?
            .iter()
            .find(|h| {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("message-id"))
            })
            .and_then(|h| h["value"].as_str().map(str::to_string))
    });
    match kind.as_str() {
        "Bounce" => {
            let bounce = &message["bounce"];
            // Undetermined: SES could not tell; doubtful is soft.
            let permanent = bounce["bounceType"].as_str() == Some("Permanent");
            bounce["bouncedRecipients"]
                .as_array()
                .map(|recipients| {
                    recipients
                        .iter()
                        .filter_map(|r| {
                            Some(Item::Bounce {
                                address: text(r, &["emailAddress"])?,
                                status: text(r, &["status"]),
                                diagnostic: text(r, &["diagnosticCode"]).unwrap_or_else(|| {
                                    format!(
                                        "{} {}",
                                        bounce["bounceType"].as_str().unwrap_or(""),
                                        bounce["bounceSubType"].as_str().unwrap_or("")
                                    )
                                }),
                                permanent,
                                message_id: message_id.clone(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        "Complaint" => {
            let complaint = &message["complaint"];
            complaint["complainedRecipients"]
                .as_array()
                .map(|recipients| {
                    recipients
                        .iter()
                        .filter_map(|r| {
                            Some(Item::Complaint {
                                address: text(r, &["emailAddress"])?,
                                feedback_type: text(complaint, &["complaintFeedbackType"]),
                                message_id: message_id.clone(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn sendgrid(
    hook: &SendgridHook,
    headers: Headers<'_>,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Notification, HookError> {
    let signature = headers("x-twilio-email-event-webhook-signature")
        .ok_or_else(|| HookError::Unauthenticated("no SendGrid signature header".into()))?;
    let timestamp = headers("x-twilio-email-event-webhook-timestamp")
        .ok_or_else(|| HookError::Unauthenticated("no SendGrid timestamp header".into()))?;
    fresh(&timestamp, hook.max_age_secs, now)?;
    let der = data_encoding::BASE64
        .decode(hook.public_key.trim().as_bytes())
        .map_err(|_| HookError::Unavailable("hooks.sendgrid.public_key is not base64".into()))?;
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
        .map_err(|e| HookError::Unavailable(format!("hooks.sendgrid.public_key: {e}")))?;
    let signature = data_encoding::BASE64
        .decode(signature.trim().as_bytes())
        .map_err(|_| HookError::Unauthenticated("the signature is not base64".into()))?;
    let mut signed = timestamp.into_bytes();
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        &spki.subject_public_key.data,
    )
    .verify(&signed, &signature)
    .map_err(|_| HookError::Unauthenticated("the SendGrid signature does not match".into()))?;
    let events: Value =
        serde_json::from_slice(body).map_err(|e| HookError::Malformed(format!("not JSON: {e}")))?;
    let events = events
        .as_array()
        .ok_or_else(|| HookError::Malformed("not a JSON array of events".into()))?;
    let mut items = Vec::new();
    for event in events {
        let Some(address) = text(event, &["email"]) else {
            continue;
        };
        let message_id = text(event, &["smtp-id"]);
        match event["event"].as_str().unwrap_or("") {
            "bounce" => items.push(Item::Bounce {
                address,
                status: text(event, &["status"]),
                diagnostic: text(event, &["reason"]).unwrap_or_default(),
                // `blocked` is a refusal SendGrid expects to pass later.
                permanent: event["type"].as_str() != Some("blocked"),
                message_id,
            }),
            "spamreport" => items.push(Item::Complaint {
                address,
                feedback_type: Some("abuse".into()),
                message_id,
            }),
            "unsubscribe" | "group_unsubscribe" => {
                items.push(Item::Unsubscribe {
                    address,
                    message_id,
                });
            }
            // Deliveries, opens, delays, and drops of addresses SendGrid already suppresses.
            _ => {}
        }
    }
    Ok(Notification {
        items,
        confirmation: None,
    })
}

/// A signature timestamp (Unix seconds) no older than `max_age` seconds and not from the future.
fn fresh(
    timestamp: &str,
    max_age: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), HookError> {
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| HookError::Unauthenticated(format!("timestamp {timestamp:?}")))?;
    let age = now.timestamp() - seconds;
    if age > max_age || age < -300 {
        return Err(HookError::Unauthenticated(format!(
            "the signature's timestamp is {age} s old (at most {max_age})"
        )));
    }
    Ok(())
}

fn mailgun(
    hook: &MailgunHook,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Notification, HookError> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| HookError::Malformed(format!("not JSON: {e}")))?;
    let signature = &payload["signature"];
    let (Some(timestamp), Some(token), Some(given)) = (
        text(signature, &["timestamp"]),
        text(signature, &["token"]),
        text(signature, &["signature"]),
    ) else {
        return Err(HookError::Unauthenticated("no Mailgun signature".into()));
    };
    fresh(&timestamp, hook.max_age_secs, now)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(hook.signing_key.trim().as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let given = hex::decode(given.trim())
        .map_err(|_| HookError::Unauthenticated("the signature is not hex".into()))?;
    mac.verify_slice(&given)
        .map_err(|_| HookError::Unauthenticated("the Mailgun signature does not match".into()))?;
    let event = &payload["event-data"];
    let Some(address) = text(event, &["recipient"]) else {
        return Ok(Notification::default());
    };
    let message_id = text(event, &["message", "headers", "message-id"]).map(|id| {
        if id.starts_with('<') {
            id
        } else {
            format!("<{id}>")
        }
    });
    let status = &event["delivery-status"];
    let item = match event["event"].as_str().unwrap_or("") {
        // A temporary failure is a delay Mailgun retries: it never counts.
        "failed" if event["severity"].as_str() == Some("permanent") => Some(Item::Bounce {
            address,
            status: text(status, &["enhanced-code"]).filter(|s| !s.is_empty()),
            diagnostic: [
                text(status, &["code"]),
                text(status, &["message"]),
                text(status, &["description"]),
            ]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
            permanent: true,
            message_id,
        }),
        "complained" => Some(Item::Complaint {
            address,
            feedback_type: Some("abuse".into()),
            message_id,
        }),
        "unsubscribed" => Some(Item::Unsubscribe {
            address,
            message_id,
        }),
        _ => None,
    };
    Ok(Notification {
        items: item.into_iter().collect(),
        confirmation: None,
    })
}

fn postmark(
    hook: &PostmarkHook,
    headers: Headers<'_>,
    body: &[u8],
) -> Result<Notification, HookError> {
    let credentials = headers("authorization")
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .map(|b| data_encoding::BASE64.decode(b.trim().as_bytes()))
        })
        .and_then(Result::ok)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| HookError::Unauthenticated("no basic auth".into()))?;
    let (user, password) = credentials
        .split_once(':')
        .ok_or_else(|| HookError::Unauthenticated("no basic auth".into()))?;
    let expected: [u8; 32] = match (&hook.password, &hook.password_hash) {
        (Some(password), _) => Sha256::digest(password.as_bytes()).into(),
        (None, Some(hash)) => hex::decode(hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| HookError::Unavailable("hooks.postmark.password_hash".into()))?,
        (None, None) => return Err(HookError::Unavailable("hooks.postmark.password".into())),
    };
    let given: [u8; 32] = Sha256::digest(password.as_bytes()).into();
    let user_ok = Sha256::digest(user.as_bytes()).ct_eq(&Sha256::digest(hook.user.as_bytes()));
    if !bool::from(user_ok & given.ct_eq(&expected)) {
        return Err(HookError::Unauthenticated("wrong user or password".into()));
    }
    let record: Value =
        serde_json::from_slice(body).map_err(|e| HookError::Malformed(format!("not JSON: {e}")))?;
    let address = text(&record, &["Email"]).or_else(|| text(&record, &["Recipient"]));
    let Some(address) = address else {
        return Ok(Notification::default());
    };
    let item = match record["RecordType"].as_str().unwrap_or("") {
        "Bounce" => {
            let kind = record["Type"].as_str().unwrap_or("");
            let permanent = matches!(
                kind,
                "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated"
            );
            let transient = matches!(
                kind,
                "SoftBounce"
                    | "Transient"
                    | "DnsError"
                    | "Blocked"
                    | "SMTPApiError"
                    | "Unknown"
                    | "InboxFull"
                    | "DMARCPolicy"
                    | "TemplateRenderingFailed"
            );
            (permanent || transient).then(|| Item::Bounce {
                address,
                status: None,
                diagnostic: [text(&record, &["Details"]), text(&record, &["Description"])]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
                permanent,
                message_id: None,
            })
        }
        "SpamComplaint" => Some(Item::Complaint {
            address,
            feedback_type: Some("abuse".into()),
            message_id: None,
        }),
        "SubscriptionChange"
            if record["SuppressSending"].as_bool() == Some(true)
                && record["SuppressionReason"].as_str() == Some("ManualSuppression") =>
        {
            Some(Item::Unsubscribe {
                address,
                message_id: None,
            })
        }
        _ => None,
    };
    Ok(Notification {
        items: item.into_iter().collect(),
        confirmation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_serve_certificates() {
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        ] {
            assert!(is_sns_certificate_url(good), "{good}");
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
        ] {
            assert!(!is_sns_certificate_url(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps_must_be_fresh() {
        let now = chrono::Utc::now();
        assert!(fresh(&now.timestamp().to_string(), 600, now).is_ok());
        assert!(fresh(&(now.timestamp() - 601).to_string(), 600, now).is_err());
        assert!(fresh(&(now.timestamp() + 3600).to_string(), 600, now).is_err());
        assert!(fresh("soon", 600, now).is_err());
    }
}
