//! One-click unsubscribe (RFC 8058): the token of a List-Unsubscribe link names the send (who got
//! which message from which company and brand); a POST to it opts the recipient out of the
//! token's scope at once, with the HTTP request kept as evidence.

use serde::Serialize;

use super::{ServiceError, SuppressionService};
use crate::address::EmailAddress;
use crate::model::{Channel, Reason, Scope, Source, Timestamp, format_time};
use crate::store::{
    AddOutcome, Escalation, InboundEvent, InboundRecord, NewEvent, NewEvidence, NewSuppression,
    PendingMail, SendRecord, Store, StoreError,
};
use crate::token::{TokenBinding, TokenKeys, TokenKind};
use crate::verp;

/// The send record a token names and the token's kind, if the token is one of `kinds`, its
/// signature matches the record and it is younger than `max_age`.
///
/// # Errors
/// The store failed.
pub async fn verified_send(
    store: &Store,
    keys: &TokenKeys,
    token: &str,
    kinds: &[TokenKind],
    max_age: chrono::Duration,
    now: Timestamp,
) -> Result<Option<(SendRecord, TokenKind)>, StoreError> {
    let Ok(parsed) = keys.parse(token) else {
        return Ok(None);
    };
    if !kinds.contains(&parsed.kind) {
        return Ok(None);
    }
    let Some(send) = store.send(parsed.send_id).await? else {
        return Ok(None);
    };
    let binding = TokenBinding {
        recipient: &send.address_hash,
        company: &send.company,
        brand: &send.brand,
        message_id: &send.message_id,
    };
    Ok(keys
        .verify(&parsed, binding, now, max_age)
        .ok()
        .map(|()| (send, parsed.kind)))
}

/// Whom an unsubscribe token opts out, and from what.
#[derive(Debug, Clone, Serialize)]
pub struct UnsubscribeTarget {
    /// The company's display name (its id when it has none).
    pub company_name: String,
    pub company: String,
    /// The brand, when the token's scope is one brand.
    pub brand: Option<String>,
    pub scope: Scope,
    #[serde(skip)]
    pub send: SendRecord,
}

/// The HTTP request of a one-click unsubscribe, kept as its evidence.
#[derive(Debug, Clone, Default)]
pub struct OneClickRequest {
    /// The peer's IP address and port.
    pub peer: String,
    pub user_agent: Option<String>,
    pub content_type: Option<String>,
    /// The request line's target (`/u/TOKEN`).
    pub path: String,
    pub body: Vec<u8>,
}

/// What a one-click POST did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneClickOutcome {
    /// Opted out now.
    Unsubscribed,
    /// The same opt-out was in force already (or the address was erased): nothing changed
    /// but the evidence of the repeated click.
    AlreadyUnsubscribed,
}

impl SuppressionService {
    /// The target of a valid unsubscribe token; `None` for a bad, tampered or expired one.
    ///
    /// # Errors
    /// Store failure.
    pub async fn unsubscribe_target(
        &self,
        token: &str,
    ) -> Result<Option<UnsubscribeTarget>, ServiceError> {
        let keys = TokenKeys::new(self.store.secret());
        let max_age = chrono::Duration::days(i64::from(self.config.inbound.token_max_age_days));
        let found = verified_send(
            &self.store,
            &keys,
            token,
            verp::UNSUBSCRIBE_KINDS,
            max_age,
            chrono::Utc::now(),
        )
        .await?;
        Ok(found.map(|(send, kind)| {
            let scope = verp::unsubscribe_scope(kind, &send.company, &send.brand);
            let company_name = self
                .config
                .company(&send.company)
                .and_then(|c| c.name.clone())
                .unwrap_or_else(|| send.company.clone());
            let brand = match &scope {
                Scope::Brand { brand, .. } => Some(brand.clone()),
                _ => None,
            };
            UnsubscribeTarget {
                company_name,
                company: send.company.clone(),
                brand,
                scope,
                send,
            }
        }))
    }

    /// Opts the token's recipient out of its scope, keeping the request as evidence; `None` for
    /// a bad, tampered or expired token (nothing is written then).
    ///
    /// # Errors
    /// Store failure (nothing was written).
    pub async fn one_click(
        &self,
        token: &str,
        request: &OneClickRequest,
    ) -> Result<Option<(UnsubscribeTarget, OneClickOutcome)>, ServiceError> {
        let Some(target) = self.unsubscribe_target(token).await? else {
            return Ok(None);
        };
        let now = chrono::Utc::now();
        let raw = evidence_text(request, now);
        let address = target
            .send
            .address
            .as_deref()
            .and_then(|a| EmailAddress::parse(a).ok());
        let (company, brand) = target.scope.columns();
        let note =
            "one-click unsubscribe (RFC 8058) with a valid token; the request is kept as evidence";
        let event = NewEvent {
            kind: "unsubscribe".into(),
            address: address.as_ref().map(|a| a.as_given().to_string()),
            address_hash: Some(crate::secret::AddressHash::from_stored(
                target.send.address_hash.clone(),
            )),
            company: company.to_string(),
            brand: brand.to_string(),
            message_id: Some(target.send.message_id.clone()).filter(|m| !m.is_empty()),
            verified: true,
            source: Some(Source::OneClick.as_str().into()),
            note: Some(note.into()),
            ..NewEvent::default()
        };
        let suppression = address.map(|address| {
            (
                NewSuppression {
                    address,
                    channel: Channel::Email,
                    scope: target.scope.clone(),
                    reason: Reason::Unsubscribe,
                    source: Source::OneClick,
                    note: Some(note.into()),
                    created_at: now,
                    created_by: None,
                    expires_at: None,
                    evidence_id: None,
                    event_id: None,
                },
                Escalation::Immediate,
            )
        });
        let Some(committer) = &self.committer else {
            let record = InboundRecord {
                evidence: NewEvidence {
                    raw: &raw,
                    peer_ip: Some(&request.peer),
                    received_at: Some(now),
                    ..NewEvidence::default()
                },
                events: vec![InboundEvent { event, suppression }],
            };
            let outcome = self.store.record_inbound(&record, now).await?;
            let done = match outcome.suppressions.first() {
                Some(Some(AddOutcome::Added(_))) => OneClickOutcome::Unsubscribed,
                _ => OneClickOutcome::AlreadyUnsubscribed,
            };
            return Ok(Some((target, done)));
        };
        // Said before the write (two clicks at once may both hear "unsubscribed"): the group
        // commit answers when durable, not what each row did.
        let in_force = match &suppression {
            Some((new, _)) => {
                let records = self.store.records(&self.store.hash(&new.address)).await?;
                records.erased_at.is_some()
                    || records.suppressions.iter().any(|s| {
                        s.reason == Reason::Unsubscribe
                            && s.channel == Channel::Email
                            && s.scope == new.scope
                            && s.is_in_force(now)
                    })
            }
            None => true,
        };
        let pending = PendingMail {
            raw,
            mail_from: String::new(),
            rcpt_to: request.path.clone(),
            helo: String::new(),
            peer_ip: request.peer.clone(),
            received_at: now,
            events: vec![InboundEvent { event, suppression }],
        };
        committer
            .commit(pending)
            .await
            .map_err(ServiceError::NotStored)?;
        let done = if in_force {
            OneClickOutcome::AlreadyUnsubscribed
        } else {
            OneClickOutcome::Unsubscribed
        };
        Ok(Some((target, done)))
    }
}

/// The request as text: what arrived, from whom, when.
fn evidence_text(request: &OneClickRequest, now: Timestamp) -> Vec<u8> {
    let mut text = format!(
        "POST {} HTTP/1.1\r\nX-Bouncegate-Received: {}\r\nX-Bouncegate-Peer: {}\r\n",
        request.path,
        format_time(&now),
        request.peer
    );
    if let Some(agent) = &request.user_agent {
        text.push_str(&format!("User-Agent: {}\r\n", one_line(agent)));
    }
    if let Some(content_type) = &request.content_type {
        text.push_str(&format!("Content-Type: {}\r\n", one_line(content_type)));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", request.body.len()));
    let mut raw = text.into_bytes();
    raw.extend_from_slice(&request.body);
    raw
}

fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}
