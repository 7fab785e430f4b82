//! What the analyser says about a mail: its kind and, per recipient, what happened.

use serde::Serialize;

use crate::model::vocabulary;

vocabulary! {
    /// What a received mail is.
    ReportKind, "report kind" {
        Bounce => "bounce",
        Delay => "delay",
        Delivered => "delivered",
        Complaint => "complaint",
        AutoReply => "auto_reply",
        Other => "other",
    }
}

vocabulary! {
    /// Whether the address is dead (`hard`), may recover (`soft`), or it was no failure (`none`).
    BounceClass, "bounce class" {
        Hard => "hard",
        Soft => "soft",
        None => "none",
    }
}

vocabulary! {
    /// Why a delivery failed, in Sisimai's v5 vocabulary, so results compare with the reference.
    BounceReason, "bounce reason" {
        UserUnknown => "userunknown",
        HostUnknown => "hostunknown",
        HasMoved => "hasmoved",
        NotAccept => "notaccept",
        MailboxFull => "mailboxfull",
        Expired => "expired",
        Filtered => "filtered",
        Blocked => "blocked",
        Rejected => "rejected",
        AuthFailure => "authfailure",
        PolicyViolation => "policyviolation",
        NetworkError => "networkerror",
        RequirePtr => "requireptr",
        SpamDetected => "spamdetected",
        SystemError => "systemerror",
        Suspend => "suspend",
        MailerError => "mailererror",
        OnHold => "onhold",
        SecurityError => "securityerror",
        NoRelaying => "norelaying",
        NotCompliantRfc => "notcompliantrfc",
        TooManyConn => "toomanyconn",
        BadReputation => "badreputation",
        ContentError => "contenterror",
        ExceedLimit => "exceedlimit",
        SyntaxError => "syntaxerror",
        Undefined => "undefined",
        VirusDetected => "virusdetected",
        FailedStartTls => "failedstarttls",
        MesgTooBig => "mesgtoobig",
        Speeding => "speeding",
        SystemFull => "systemfull",
        Suppressed => "suppressed",
        RateLimited => "ratelimited",
        Feedback => "feedback",
        Vacation => "vacation",
        Delivered => "delivered",
    }
}

impl BounceReason {
    /// Hard: the address itself is bad, and the failure was permanent (a 5xx reply or X.x.x
    /// status, or a failure the report gives no code for). A remote that answered 4xx only said
    /// "not now", whatever its words: when the queue then gives up, that is no proof.
    pub fn class(self, permanent: bool) -> BounceClass {
        match self {
            BounceReason::Feedback | BounceReason::Vacation | BounceReason::Delivered => {
                BounceClass::None
            }
            BounceReason::UserUnknown
            | BounceReason::HostUnknown
            | BounceReason::HasMoved
            | BounceReason::NotAccept
                if permanent =>
            {
                BounceClass::Hard
            }
            _ => BounceClass::Soft,
        }
    }
}

/// One recipient of the analysed mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientReport {
    pub address: String,
    /// `failed`, `delayed`, `delivered`, `relayed`, `expanded`, or what the report said.
    pub action: String,
    /// Enhanced status code (`5.1.1`), or a pseudo-code `X.0.9NN` when the bounce carried none;
    /// empty for complaints and auto-replies.
    pub status: String,
    /// SMTP reply code (`550`), empty when the bounce carries none.
    pub reply_code: String,
    pub reason: BounceReason,
    pub class: BounceClass,
    pub diagnostic: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_mta: String,
    /// ARF `Feedback-Type`, for complaints only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_type: Option<String>,
    /// The rule that decided the reason (`builtin:rule.17`, `builtin:status.decisive.X.1.2`,
    /// `analyser:no_cause`), then any that changed it, joined by `+`
    /// (`builtin:rule.9+builtin:command_override.2`). README "Bounce rules" lists the forms.
    pub rule: String,
    /// With `classify --explain` only: each deciding step in words, with what it matched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
}

impl RecipientReport {
    /// The complained-about recipient of a feedback report.
    pub fn feedback(address: String, feedback_type: Option<String>) -> Self {
        RecipientReport {
            address,
            action: String::new(),
            status: String::new(),
            reply_code: String::new(),
            reason: BounceReason::Feedback,
            class: BounceClass::None,
            diagnostic: String::new(),
            remote_mta: String::new(),
            feedback_type: Some(feedback_type.unwrap_or_else(|| "abuse".into())),
            rule: "analyser:feedback_report".into(),
            explanation: Vec::new(),
        }
    }
}

/// What the returned original message says, for attributing the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OriginalMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// VERP / return-path addresses found (`b+TOKEN@…`), as given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub return_paths: Vec<String>,
    /// `List-Unsubscribe` targets (URLs and mailto addresses) of the original.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub list_unsubscribe: Vec<String>,
}

/// The analysis of one mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub kind: ReportKind,
    pub recipients: Vec<RecipientReport>,
    #[serde(skip_serializing_if = "is_default")]
    pub original: OriginalMessage,
    /// Why the analyser gave up (kind `other` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_default(original: &OriginalMessage) -> bool {
    *original == OriginalMessage::default()
}

impl Report {
    /// A mail the analyser could not make sense of, with the reason it gave up.
    pub fn other(error: impl Into<String>) -> Self {
        Report {
            kind: ReportKind::Other,
            recipients: Vec::new(),
            original: OriginalMessage::default(),
            error: Some(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A remote that answered 4xx said "not now": whatever its words, the address is not proven
    /// dead, even when the queue then gave up.
    #[test]
    fn hard_needs_a_permanent_failure() {
        for reason in [
            BounceReason::UserUnknown,
            BounceReason::HostUnknown,
            BounceReason::HasMoved,
            BounceReason::NotAccept,
        ] {
            assert_eq!(reason.class(true), BounceClass::Hard, "{reason}");
            assert_eq!(reason.class(false), BounceClass::Soft, "{reason}");
        }
        assert_eq!(BounceReason::MailboxFull.class(true), BounceClass::Soft);
        assert_eq!(BounceReason::Vacation.class(true), BounceClass::None);
    }
}
