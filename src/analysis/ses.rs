//! JSON delivery notifications (Amazon SES, delivered by mail through SNS): bounces, complaints
//! and deliveries with their recipients.

use serde_json::Value;

use super::report::ReportKind;

/// A recipient named by a notification.
#[derive(Debug, Clone, Default)]
pub struct NotifiedRecipient {
    pub address: String,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: String,
    pub feedback_type: Option<String>,
}

/// A parsed notification.
#[derive(Debug, Clone)]
pub struct Notification {
    pub kind: ReportKind,
    pub recipients: Vec<NotifiedRecipient>,
}

/// The notification in a mail's text, if it carries one.
pub fn notification(text: &str) -> Option<Notification> {
    let start = text.find('{')?;
    let head = &text[start..];
    if !head.contains("notificationType") && !head.contains("eventType") {
        return None;
    }
    // Mail transport folds long lines, even inside JSON strings: unfold before parsing.
    let unfolded = head
        .replace("\r\n", "\n")
        .replace("\n ", "")
        .replace('\n', "");
    let value: Value = serde_json::Deserializer::from_str(&unfolded)
        .into_iter::<Value>()
        .next()?
        .ok()?;
    // SNS may wrap the SES message as a JSON string in "Message".
    let value = match value.get("Message").and_then(Value::as_str) {
        Some(inner) => serde_json::from_str(inner).ok()?,
        None => value,
    };
    let kind = value
        .get("notificationType")
        .or_else(|| value.get("eventType"))?
        .as_str()?;
    let text_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    match kind {
        "Bounce" => {
            let bounce = value.get("bounce")?;
            let recipients = bounce
                .get("bouncedRecipients")?
                .as_array()?
                .iter()
                .filter_map(|r| {
                    Some(NotifiedRecipient {
                        address: text_of(r, "emailAddress")?,
                        action: text_of(r, "action"),
                        status: text_of(r, "status"),
                        diagnostic: text_of(r, "diagnosticCode").unwrap_or_default(),
                        feedback_type: None,
                    })
                })
                .collect();
            Some(Notification {
                kind: ReportKind::Bounce,
                recipients,
            })
        }
        "Complaint" => {
            let complaint = value.get("complaint")?;
            let feedback_type = text_of(complaint, "complaintFeedbackType");
            let recipients = complaint
                .get("complainedRecipients")?
                .as_array()?
                .iter()
                .filter_map(|r| {
                    Some(NotifiedRecipient {
                        address: text_of(r, "emailAddress")?,
                        feedback_type: feedback_type.clone(),
                        ..NotifiedRecipient::default()
                    })
                })
                .collect();
            Some(Notification {
                kind: ReportKind::Complaint,
                recipients,
            })
        }
        "Delivery" => {
            let delivery = value.get("delivery")?;
            let response = text_of(delivery, "smtpResponse").unwrap_or_default();
            let recipients = delivery
                .get("recipients")?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .map(|address| NotifiedRecipient {
                    address: address.to_string(),
                    action: Some("delivered".into()),
                    status: None,
                    diagnostic: response.clone(),
                    feedback_type: None,
                })
                .collect();
            Some(Notification {
                kind: ReportKind::Delivered,
                recipients,
            })
        }
        _ => None,
    }
}
