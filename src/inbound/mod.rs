//! The MX listener's sink: a received mail → analysis → trust → one store transaction.
//!
//! Trust: a bounce or complaint suppresses an address only when a signed token names the send it
//! is about, or the report quotes the Message-ID of a message the relay sent to that recipient.
//! Otherwise the event is kept as unverified and suppresses nothing, unless the operator sets
//! `inbound.trust_unsigned_bounces` (for senders that do not relay through bouncegate). Forged
//! bounces are no way to unsubscribe other people.

mod auth;
pub mod providers;

use providers::{Item, Notification, Provider};

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Duration;

pub use crate::verp::{Route, route};
pub use auth::{Authentication, Envelope, SenderAuthenticator, aligned};

use crate::address::EmailAddress;
use crate::analysis::{
    Analyzer, BounceClass, OriginalMessage, RecipientReport, Report, ReportKind,
};
use crate::config::Config;
use crate::log_limit::LogLimit;
use crate::model::{Channel, Reason, Scope, Source, Timestamp};
use crate::smtp::{MailFrom, MessageSink, RcptTo, ReceivedMessage, SessionInfo, SinkError};
use crate::store::{Committer, PendingMail};
use crate::store::{Escalation, InboundEvent, NewEvent, NewSuppression, SendRecord, Store};
use crate::token::{TokenKeys, TokenKind};
use crate::verp;

/// Longest diagnostic kept in a suppression note.
const NOTE_DIAGNOSTIC: usize = 300;

/// Receives bounces, complaints and unsubscribe mails.
pub struct InboundSink {
    store: Store,
    config: Arc<Config>,
    analyzer: Analyzer,
    keys: TokenKeys,
    committer: Arc<Committer>,
    /// Checks who sent a plain unsubscribe mail; `None` when DNS could not be set up (every
    /// such mail is then unauthenticated).
    authenticator: Option<SenderAuthenticator>,
    /// Plain unsubscribe mails per client IP in the last hour.
    unsubscribe_rate: UnsubscribeRate,
    /// A failing store would log every 451; identical ones are counted instead.
    failure_log: LogLimit,
}

/// How often one identical store failure is logged.
const FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How far an unsubscribe request is to be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    /// The owner made it: a valid token, or a mail whose From is authenticated.
    Proven(Authentication),
    /// A mail whose From could not be authenticated: honoured, liftable by staff.
    Unverified,
    /// Unauthenticated and past the per-IP limit: kept for staff review, suppresses nothing.
    Held(String),
    /// A token that does not verify: nothing comes of it.
    Refused,
}

/// How a report reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A mail to the MX (or the relay's own record of an upstream refusal).
    Mail,
    /// A provider's notification whose signature was checked.
    Provider(Provider),
}

impl Origin {
    fn is_provider(self) -> bool {
        matches!(self, Origin::Provider(_))
    }

    /// The event's source: `mail` as given, `webhook:<provider>` for notifications.
    fn source(self, mail: &str) -> String {
        match self {
            Origin::Mail => mail.to_string(),
            Origin::Provider(provider) => format!("webhook:{}", provider.as_str()),
        }
    }

    /// The company a provider's notifications belong to when nothing else names one.
    fn company(self, config: &Config) -> Option<String> {
        match self {
            Origin::Mail => None,
            Origin::Provider(provider) => provider.company(&config.hooks),
        }
    }
}

/// One reported recipient, attributed.
struct Attributed<'r> {
    recipient: &'r RecipientReport,
    /// The address to act on.
    target: Option<EmailAddress>,
    attribution: Attribution,
}

/// The send a report is about, and whether that was proven.
#[derive(Debug, Clone)]
struct Attribution {
    send: Option<SendRecord>,
    verified: bool,
}

impl InboundSink {
    /// A sink writing to `store`, checking tokens with `keys` (the relay mints with the same).
    pub fn new(store: Store, config: Arc<Config>, analyzer: Analyzer, keys: TokenKeys) -> Self {
        let authenticator = match SenderAuthenticator::new(config.inbound.dns_resolver) {
            Ok(authenticator) => Some(authenticator),
            Err(error) => {
                tracing::error!(%error, "plain unsubscribe mails will all count as unauthenticated");
                None
            }
        };
        Self {
            keys,
            committer: Arc::new(Committer::start(store.clone())),
            store,
            config,
            analyzer,
            authenticator,
            unsubscribe_rate: UnsubscribeRate::default(),
            failure_log: LogLimit::new(FAILURE_LOG_EVERY),
        }
    }

    /// Analyses one received mail and writes what it changes; `Ok` once it is durable.
    ///
    /// # Errors
    /// The store failed (the client gets a 451 and retries).
    pub async fn process(&self, message: ReceivedMessage) -> Result<(), SinkError> {
        let now = chrono::Utc::now();
        // The analyser must never panic (fuzzed for it); should a bug slip through, this mail is
        // one it could not read, not a session that dies and a sender that retries forever.
        // A mail may forward several reports (a digest of complaint reports): each is
        // attributed on its own, by its own returned original.
        let reports = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.analyzer.analyze_all(&message.data)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(
                bytes = message.data.len(),
                "the bounce analyser panicked on a mail"
            );
            vec![Report::other("the analyser failed on this mail")]
        });
        let report = &reports[0];
        let mut events = Vec::new();
        let mut routes: Vec<Route> = message
            .recipients()
            .filter_map(|r| route(r, &self.config))
            .collect();
        routes.dedup();
        for route in &routes {
            match route {
                // An unsubscribe mail is one request, whatever it carries.
                Route::Unsubscribe { token } => {
                    events.extend(self.unsubscribe_by_token(report, token, now).await?);
                    continue;
                }
                Route::UnsubscribeCompany { company } => {
                    events.extend(
                        self.unsubscribe_by_mail(report, &message, company, now)
                            .await?,
                    );
                    continue;
                }
                Route::Bounce { .. } | Route::Feedback => {}
            }
            for report in &reports {
                let found = match route {
                    Route::Bounce { token } if report.kind == ReportKind::Complaint => {
                        self.complaint(report, token.as_deref(), Origin::Mail, now)
                            .await?
                    }
                    Route::Feedback if report.kind == ReportKind::Complaint => {
                        self.complaint(report, None, Origin::Mail, now).await?
                    }
                    Route::Bounce { token } => {
                        self.bounce(report, token.as_deref(), Origin::Mail, now)
                            .await?
                    }
                    Route::Feedback => self.bounce(report, None, Origin::Mail, now).await?,
                    Route::Unsubscribe { .. } | Route::UnsubscribeCompany { .. } => Vec::new(),
                };
                events.extend(found);
            }
        }
        if events.is_empty() {
            // Kept all the same: what arrived, and that nothing came of it.
            events.push(InboundEvent {
                event: NewEvent {
                    kind: report.kind.as_str().into(),
                    note: report.error.clone(),
                    source: Some("inbound".into()),
                    message_id: report.original.message_id.clone(),
                    ..NewEvent::default()
                },
                suppression: None,
            });
        }
        let bounces: Vec<(String, String)> = events
            .iter()
            .filter(|e| e.event.kind == "bounce")
            .filter_map(|e| Some((e.event.class.clone()?, e.event.reason.clone()?)))
            .collect();
        let pending = PendingMail {
            rcpt_to: message.recipients().collect::<Vec<_>>().join(", "),
            peer_ip: message.session.peer.to_string(),
            mail_from: message.mail_from.address,
            helo: message.session.helo,
            raw: message.data,
            received_at: now,
            events,
        };
        self.committer.commit(pending).await.map_err(|error| {
            if let Some(held_back) = self.failure_log.admit(&error, Instant::now()) {
                tracing::warn!(
                    %error,
                    repeats_held_back = held_back,
                    "could not store a received mail; answering 451 (repeats are logged once per {}s)",
                    FAILURE_LOG_EVERY.as_secs()
                );
            }
            SinkError::Temporary(error)
        })?;
        crate::metrics::mail_received(report.kind.as_str());
        for (class, reason) in &bounces {
            crate::metrics::bounce(class, reason);
        }
        Ok(())
    }

    /// The group-commit writer (shared with the one-click path, so both batch together).
    pub fn committer(&self) -> Arc<Committer> {
        self.committer.clone()
    }

    /// A provider's notification (its authenticity already checked): its bounces, complaints
    /// and unsubscribes have the same consequences, by the same rules and thresholds, as a mail
    /// received on the MX would; the request body is kept as evidence. `Ok` once durable.
    ///
    /// # Errors
    /// The store failed (the provider gets a 5xx and retries).
    pub async fn process_notification(
        &self,
        provider: Provider,
        notification: &Notification,
        raw: &[u8],
        peer: std::net::IpAddr,
    ) -> Result<(), SinkError> {
        let now = chrono::Utc::now();
        let origin = Origin::Provider(provider);
        let mut events = Vec::new();
        for item in &notification.items {
            match item {
                Item::Bounce {
                    address,
                    status,
                    diagnostic,
                    permanent,
                    message_id,
                } => {
                    let dsn = provider_dsn(
                        provider,
                        address,
                        status.as_deref(),
                        diagnostic,
                        *permanent,
                        message_id.as_deref(),
                    );
                    let report = self.analyzer.analyze(&dsn);
                    events.extend(self.bounce(&report, None, origin, now).await?);
                }
                Item::Complaint {
                    address,
                    feedback_type,
                    message_id,
                } => {
                    let report = Report {
                        kind: ReportKind::Complaint,
                        recipients: vec![RecipientReport::feedback(
                            address.clone(),
                            feedback_type.clone(),
                        )],
                        original: OriginalMessage {
                            message_id: message_id.clone(),
                            ..OriginalMessage::default()
                        },
                        error: None,
                    };
                    events.extend(self.complaint(&report, None, origin, now).await?);
                }
                Item::Unsubscribe {
                    address,
                    message_id,
                } => events.push(
                    self.provider_unsubscribe(provider, address, message_id.as_deref())
                        .await?,
                ),
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let pending = PendingMail {
            rcpt_to: format!("hooks/{}", provider.as_str()),
            peer_ip: peer.to_string(),
            mail_from: String::new(),
            helo: String::new(),
            raw: raw.to_vec(),
            received_at: now,
            events,
        };
        self.committer
            .commit(pending)
            .await
            .map_err(SinkError::Temporary)?;
        crate::metrics::mail_received(&format!("webhook_{}", provider.as_str()));
        Ok(())
    }

    /// The recipient used the provider's unsubscribe link: an opt-out from the company of the
    /// send (found by Message-ID), else the provider's configured company.
    async fn provider_unsubscribe(
        &self,
        provider: Provider,
        address: &str,
        message_id: Option<&str>,
    ) -> Result<InboundEvent, SinkError> {
        let target = EmailAddress::parse(address).ok();
        let report = Report {
            kind: ReportKind::Other,
            recipients: Vec::new(),
            original: OriginalMessage {
                message_id: message_id.map(str::to_string),
                ..OriginalMessage::default()
            },
            error: None,
        };
        let send = self
            .attribute_by_message_id(&report, target.as_ref())
            .await?
            .send;
        let company = send
            .as_ref()
            .map(|s| s.company.clone())
            .or_else(|| provider.company(&self.config.hooks));
        let note = format!(
            "unsubscribed through {}'s link (signed notification); the notification is kept as evidence",
            provider.as_str()
        );
        let event = NewEvent {
            kind: "unsubscribe".into(),
            address: target.as_ref().map(|a| a.as_given().to_string()),
            address_hash: target.as_ref().map(|a| self.store.hash(a)),
            company: company.clone().unwrap_or_default(),
            message_id: message_id.map(str::to_string),
            verified: true,
            source: Some(Origin::Provider(provider).source("")),
            note: Some(note.clone()),
            ..NewEvent::default()
        };
        let suppression = match (target, company) {
            (Some(address), Some(company)) => Some((
                NewSuppression {
                    address,
                    channel: Channel::Email,
                    scope: Scope::Company(company),
                    reason: Reason::Unsubscribe,
                    source: Source::OneClick,
                    note: Some(note),
                    created_at: chrono::Utc::now(),
                    created_by: None,
                    expires_at: None,
                    evidence_id: None,
                    event_id: None,
                },
                Escalation::Immediate,
            )),
            _ => None,
        };
        Ok(InboundEvent { event, suppression })
    }

    /// Each reported recipient with the send it is about (by token, else by the quoted
    /// Message-ID) and the address to act on: a token names the recipient it was minted for, the
    /// report may name an alias of it.
    async fn attribute<'r>(
        &self,
        report: &'r Report,
        token: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Attributed<'r>>, SinkError> {
        let by_token = match token {
            Some(token) => self.verified_send(token, &[TokenKind::Bounce], now).await?,
            None => self.send_from_return_paths(report, now).await?,
        };
        // A returned original's token names one send, one recipient: in a report of several
        // recipients (several feedback parts beside one original) it speaks only for that one;
        // the others are attributed by their own address and Message-ID. A token in the address
        // the report came to speaks for the whole report (an alias's expansions bounce for it).
        let several = report.recipients.iter().any(|r| {
            !r.address
                .eq_ignore_ascii_case(&report.recipients[0].address)
        });
        let mut attributed = Vec::with_capacity(report.recipients.len());
        for recipient in &report.recipients {
            let address = EmailAddress::parse(&recipient.address).ok();
            let by_token = by_token.as_ref().filter(|send| {
                token.is_some()
                    || !several
                    || send
                        .address
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&recipient.address))
            });
            let (attribution, target) = match by_token {
                Some(send) => (
                    Attribution {
                        send: Some(send.clone()),
                        verified: true,
                    },
                    send.address
                        .as_deref()
                        .and_then(|a| EmailAddress::parse(a).ok())
                        .or(address),
                ),
                None => (
                    self.attribute_by_message_id(report, address.as_ref())
                        .await?,
                    address,
                ),
            };
            attributed.push(Attributed {
                recipient,
                target,
                attribution,
            });
        }
        Ok(attributed)
    }

    /// Bounces, delays, delivery reports and auto-replies at a return path.
    async fn bounce(
        &self,
        report: &Report,
        token: Option<&str>,
        origin: Origin,
        now: Timestamp,
    ) -> Result<Vec<InboundEvent>, SinkError> {
        let mut events = Vec::new();
        for Attributed {
            recipient,
            target,
            mut attribution,
        } in self.attribute(report, token, now).await?
        {
            // A provider's signed notification is as good as our own token.
            attribution.verified |= origin.is_provider();
            let trusted = attribution.verified || self.config.inbound.trust_unsigned_bounces;
            let suppression = match (&target, trusted, report.kind) {
                (Some(target), true, ReportKind::Bounce) => {
                    self.bounce_suppression(target, recipient, now)
                }
                _ => None,
            };
            events.push(InboundEvent {
                event: self.event(
                    report.kind.as_str(),
                    target.as_ref(),
                    recipient,
                    &attribution,
                    report,
                    &origin.source("dsn"),
                ),
                suppression,
            });
        }
        Ok(events)
    }

    fn bounce_suppression(
        &self,
        target: &EmailAddress,
        recipient: &RecipientReport,
        now: Timestamp,
    ) -> Option<(NewSuppression, Escalation)> {
        let inbound = &self.config.inbound;
        let (reason, escalation, expires_at) = match recipient.class {
            BounceClass::Hard => (
                Reason::HardBounce,
                Escalation::Count {
                    class: "hard",
                    threshold: inbound.hard_bounce_threshold.max(1),
                    since: now
                        - Duration::days(i64::from(inbound.soft_bounce_window_days.max(365))),
                    include_unverified: inbound.trust_unsigned_bounces,
                },
                None,
            ),
            BounceClass::Soft => (
                Reason::SoftBounce,
                Escalation::Count {
                    class: "soft",
                    threshold: inbound.soft_bounce_threshold.max(1),
                    since: now - Duration::days(i64::from(inbound.soft_bounce_window_days)),
                    include_unverified: inbound.trust_unsigned_bounces,
                },
                inbound
                    .soft_bounce_expiry_days
                    .map(|d| now + Duration::days(i64::from(d))),
            ),
            BounceClass::None => return None,
        };
        let mut diagnostic: String = recipient.diagnostic.chars().take(NOTE_DIAGNOSTIC).collect();
        if diagnostic.is_empty() {
            diagnostic = "no diagnostic".into();
        }
        let suppression = NewSuppression {
            address: target.clone(),
            channel: Channel::Email,
            scope: Scope::Global,
            reason,
            source: Source::Dsn,
            note: Some(format!(
                "{} {} ({}): {diagnostic}",
                recipient.status, recipient.reason, recipient.class
            )),
            created_at: now,
            created_by: None,
            expires_at,
            evidence_id: None,
            event_id: None,
        };
        Some((suppression, escalation))
    }

    /// An ARF complaint: company-wide suppression for the company that sent the original.
    async fn complaint(
        &self,
        report: &Report,
        token: Option<&str>,
        origin: Origin,
        now: Timestamp,
    ) -> Result<Vec<InboundEvent>, SinkError> {
        let mut events = Vec::new();
        for Attributed {
            recipient,
            target,
            mut attribution,
        } in self.attribute(report, token, now).await?
        {
            attribution.verified |= origin.is_provider();
            let company = attribution
                .send
                .as_ref()
                .map(|s| s.company.clone())
                .or_else(|| {
                    let from = report.original.from.as_deref()?;
                    let domain = from.rsplit_once('@')?.1;
                    self.config
                        .company_for_domain(domain)
                        .map(|c| c.id().to_string())
                })
                .or_else(|| origin.company(&self.config));
            let trusted = attribution.verified || self.config.inbound.trust_unsigned_bounces;
            let suppression = match (&target, &company, trusted) {
                (Some(target), Some(company), true) => Some((
                    NewSuppression {
                        address: target.clone(),
                        channel: Channel::Email,
                        scope: Scope::Company(company.clone()),
                        reason: Reason::Complaint,
                        source: Source::Arf,
                        note: Some(format!(
                            "feedback report ({})",
                            recipient.feedback_type.as_deref().unwrap_or("abuse")
                        )),
                        created_at: now,
                        created_by: None,
                        expires_at: None,
                        evidence_id: None,
                        event_id: None,
                    },
                    Escalation::Immediate,
                )),
                _ => None,
            };
            let mut event = self.event(
                "complaint",
                target.as_ref(),
                recipient,
                &attribution,
                report,
                &origin.source("arf"),
            );
            if let Some(company) = company {
                event.company = company;
            }
            events.push(InboundEvent { event, suppression });
        }
        Ok(events)
    }

    /// A mail to `unsubscribe+TOKEN@`: the token names recipient and scope.
    async fn unsubscribe_by_token(
        &self,
        report: &Report,
        token: &str,
        now: Timestamp,
    ) -> Result<Vec<InboundEvent>, SinkError> {
        let verified = self
            .verified_token(token, verp::UNSUBSCRIBE_KINDS, now)
            .await?;
        let target = verified
            .as_ref()
            .and_then(|(s, _)| s.address.as_deref())
            .and_then(|a| EmailAddress::parse(a).ok());
        let scope = verified
            .as_ref()
            .map(|(s, kind)| verp::unsubscribe_scope(*kind, &s.company, &s.brand));
        let standing = if verified.is_some() {
            Standing::Proven(Authentication::None)
        } else {
            Standing::Refused
        };
        Ok(vec![self.unsubscribe_event(
            report,
            target,
            scope,
            standing,
            Source::UnsubscribeMail,
            now,
        )])
    }

    /// A mail to `unsubscribe-<company>@`: its sender is unsubscribed from the company, or from
    /// the brand of the message it answers. The From must be authenticated (aligned DKIM or SPF)
    /// to count as the owner's opt-out; otherwise it is honoured as unverified, or, past the
    /// per-IP limit, kept for staff review.
    async fn unsubscribe_by_mail(
        &self,
        report: &Report,
        message: &ReceivedMessage,
        company: &str,
        now: Timestamp,
    ) -> Result<Vec<InboundEvent>, SinkError> {
        let parsed = crate::analysis::parse_mail(&message.data);
        let from = parsed
            .as_ref()
            .and_then(|m| m.from())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string)
            .unwrap_or_else(|| message.mail_from.address.clone());
        let target = EmailAddress::parse(&from).ok();
        let mut scope = Scope::Company(company.to_string());
        if let (Some(parsed), Some(target)) = (&parsed, &target) {
            let hash = self.store.hash(target);
            let mut answered: Vec<String> = Vec::new();
            for value in [parsed.in_reply_to(), parsed.references()] {
                if let Some(ids) = value.as_text_list() {
                    answered.extend(ids.iter().map(|s| s.to_string()));
                } else if let Some(id) = value.as_text() {
                    answered.push(id.to_string());
                }
            }
            for id in answered {
                let sends = match self.store.sends_of_message(&id).await {
                    Ok(sends) => sends,
                    Err(error) => return Err(self.store_failed(error).await),
                };
                if let Some(send) = sends.iter().find(|s| {
                    s.company == company && s.address_hash == hash.as_str() && !s.brand.is_empty()
                }) {
                    scope = Scope::Brand {
                        company: company.to_string(),
                        brand: send.brand.clone(),
                    };
                    break;
                }
            }
        }
        let standing = match &target {
            Some(target) if !is_automatic(report.kind) => {
                self.standing_of_mail(message, target).await
            }
            _ => Standing::Unverified,
        };
        Ok(vec![self.unsubscribe_event(
            report,
            target,
            Some(scope),
            standing,
            Source::UnsubscribeMail,
            now,
        )])
    }

    /// Authenticates the author of a plain unsubscribe mail, and holds unauthenticated ones past
    /// the per-IP limit.
    async fn standing_of_mail(&self, message: &ReceivedMessage, target: &EmailAddress) -> Standing {
        let authentication = match &self.authenticator {
            Some(authenticator) => {
                let envelope = Envelope {
                    peer: message.session.peer,
                    helo: &message.session.helo,
                    mail_from: &message.mail_from.address,
                };
                authenticator
                    .authenticate(&message.data, target.domain(), &envelope)
                    .await
            }
            None => Authentication::None,
        };
        let limit = self.config.inbound.max_unsubscribes_per_sender_ip_per_hour;
        let count = self
            .unsubscribe_rate
            .count(message.session.peer, Instant::now());
        if authentication.is_authenticated() {
            Standing::Proven(authentication)
        } else if count > limit {
            Standing::Held(format!(
                "held for staff review: {count} plain unsubscribe mails from {} within an hour (limit {limit}), sender not authenticated",
                message.session.peer
            ))
        } else {
            Standing::Unverified
        }
    }

    fn unsubscribe_event(
        &self,
        report: &Report,
        target: Option<EmailAddress>,
        scope: Option<Scope>,
        standing: Standing,
        source: Source,
        now: Timestamp,
    ) -> InboundEvent {
        // An out-of-office answer to an unsubscribe address unsubscribes nobody.
        let automatic = is_automatic(report.kind);
        let (company, brand) = scope.as_ref().map(|s| s.columns()).unwrap_or(("", ""));
        let (verified, suppression_source, note) = match &standing {
            Standing::Proven(Authentication::Dkim) => (
                true,
                Some(source),
                "unsubscribe mail, sender authenticated by DKIM; the original is kept as evidence",
            ),
            Standing::Proven(Authentication::Spf) => (
                true,
                Some(source),
                "unsubscribe mail, sender authenticated by SPF; the original is kept as evidence",
            ),
            Standing::Proven(Authentication::None) => (
                true,
                Some(source),
                "unsubscribe mail with a valid token; the original is kept as evidence",
            ),
            Standing::Unverified => (
                false,
                Some(Source::UnverifiedMail),
                "unsubscribe mail, sender not authenticated (no aligned DKIM or SPF pass): staff may lift it with a note; the original is kept as evidence",
            ),
            Standing::Held(note) => (false, None, note.as_str()),
            Standing::Refused => (false, None, "unsubscribe token did not verify"),
        };
        let event = NewEvent {
            kind: if automatic {
                report.kind.as_str().into()
            } else if matches!(standing, Standing::Held(_)) {
                crate::store::HELD_UNSUBSCRIBE.into()
            } else {
                "unsubscribe".into()
            },
            note: Some(note.to_string()),
            address: target.as_ref().map(|a| a.as_given().to_string()),
            address_hash: target.as_ref().map(|a| self.store.hash(a)),
            company: company.to_string(),
            brand: brand.to_string(),
            message_id: report.original.message_id.clone(),
            verified,
            source: Some("unsubscribe_mail".into()),
            ..NewEvent::default()
        };
        let suppression = match (target, scope, suppression_source.filter(|_| !automatic)) {
            (Some(target), Some(scope), Some(source)) => Some((
                NewSuppression {
                    address: target,
                    channel: Channel::Email,
                    scope,
                    reason: Reason::Unsubscribe,
                    source,
                    note: Some(note.to_string()),
                    created_at: now,
                    created_by: None,
                    expires_at: None,
                    evidence_id: None,
                    event_id: None,
                },
                Escalation::Immediate,
            )),
            _ => None,
        };
        InboundEvent { event, suppression }
    }

    fn event(
        &self,
        kind: &str,
        target: Option<&EmailAddress>,
        recipient: &RecipientReport,
        attribution: &Attribution,
        report: &Report,
        source: &str,
    ) -> NewEvent {
        NewEvent {
            kind: kind.to_string(),
            address: target
                .map(|a| a.as_given().to_string())
                .or_else(|| Some(recipient.address.clone())),
            address_hash: target.map(|a| self.store.hash(a)),
            company: attribution
                .send
                .as_ref()
                .map(|s| s.company.clone())
                .unwrap_or_default(),
            brand: attribution
                .send
                .as_ref()
                .map(|s| s.brand.clone())
                .unwrap_or_default(),
            reason: Some(recipient.reason.as_str().into()),
            class: Some(recipient.class.as_str().into()),
            status: Some(recipient.status.clone()).filter(|s| !s.is_empty()),
            reply_code: Some(recipient.reply_code.clone()).filter(|s| !s.is_empty()),
            diagnostic: Some(recipient.diagnostic.clone()).filter(|s| !s.is_empty()),
            rule: Some(recipient.rule.clone()).filter(|s| !s.is_empty()),
            message_id: attribution
                .send
                .as_ref()
                .map(|s| s.message_id.clone())
                .filter(|m| !m.is_empty())
                .or_else(|| report.original.message_id.clone()),
            verified: attribution.verified,
            source: Some(source.into()),
            ..NewEvent::default()
        }
    }

    /// The send record a token names, if the token verifies against it.
    async fn verified_send(
        &self,
        token: &str,
        kinds: &[TokenKind],
        now: Timestamp,
    ) -> Result<Option<SendRecord>, SinkError> {
        Ok(self
            .verified_token(token, kinds, now)
            .await?
            .map(|(send, _)| send))
    }

    /// The send record a token names and the token's kind, if the token verifies.
    async fn verified_token(
        &self,
        token: &str,
        kinds: &[TokenKind],
        now: Timestamp,
    ) -> Result<Option<(SendRecord, TokenKind)>, SinkError> {
        let max_age = Duration::days(i64::from(self.config.inbound.token_max_age_days));
        match crate::service::verified_send(&self.store, &self.keys, token, kinds, max_age, now)
            .await
        {
            Ok(found) => Ok(found),
            Err(error) => Err(self.store_failed(error).await),
        }
    }

    /// A VERP token in the returned original's return path (bounces forwarded to the plain address).
    async fn send_from_return_paths(
        &self,
        report: &Report,
        now: Timestamp,
    ) -> Result<Option<SendRecord>, SinkError> {
        let candidates = report
            .original
            .return_paths
            .iter()
            .chain(&report.original.list_unsubscribe);
        for candidate in candidates {
            let Some(route) = verp::route_of_target(candidate, &self.config) else {
                continue;
            };
            let Some((token, kinds)) = route.token() else {
                continue;
            };
            if let Some(send) = self.verified_send(token, kinds, now).await? {
                return Ok(Some(send));
            }
        }
        Ok(None)
    }

    /// The send of the quoted original message to this recipient, if the relay sent it.
    async fn attribute_by_message_id(
        &self,
        report: &Report,
        address: Option<&EmailAddress>,
    ) -> Result<Attribution, SinkError> {
        let (Some(message_id), Some(address)) = (report.original.message_id.as_deref(), address)
        else {
            return Ok(Attribution {
                send: None,
                verified: false,
            });
        };
        let hash = self.store.hash(address);
        let sends = match self.store.sends_of_message(message_id).await {
            Ok(sends) => sends,
            Err(error) => return Err(self.store_failed(error).await),
        };
        let send = sends.into_iter().find(|s| s.address_hash == hash.as_str());
        Ok(Attribution {
            verified: send.is_some(),
            send,
        })
    }
}

/// Mails no person wrote: they unsubscribe nobody.
fn is_automatic(kind: ReportKind) -> bool {
    matches!(
        kind,
        ReportKind::AutoReply | ReportKind::Bounce | ReportKind::Delay
    )
}

/// Plain unsubscribe mails per client IP within the last hour.
#[derive(Default)]
struct UnsubscribeRate(Mutex<HashMap<IpAddr, VecDeque<Instant>>>);

impl UnsubscribeRate {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

    /// Counts one more from `peer` at `now`; how many there were in the window, this one too.
    fn count(&self, peer: IpAddr, now: Instant) -> u32 {
        let mut peers = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = |t: &Instant| now.duration_since(*t) < Self::WINDOW;
        if peers.len() > 10_000 {
            // Many senders: forget those with nothing in the window.
            peers.retain(|_, times| times.back().is_some_and(fresh));
        }
        let times = peers.entry(peer).or_default();
        while times.front().is_some_and(|t| !fresh(t)) {
            times.pop_front();
        }
        times.push_back(now);
        u32::try_from(times.len()).unwrap_or(u32::MAX)
    }
}

impl InboundSink {
    /// A store failure before the commit: this mail gets a 451; if the schema is gone, it is
    /// re-created for the mails after it.
    async fn store_failed(&self, error: crate::store::StoreError) -> SinkError {
        self.store.repair_missing_schema(&error).await;
        SinkError::Temporary(error.to_string())
    }
}

impl MessageSink for InboundSink {
    async fn rcpt(&self, _: &SessionInfo, _: &MailFrom, to: &RcptTo) -> Result<(), SinkError> {
        route(&to.address, &self.config)
            .map(|_| ())
            .ok_or(SinkError::UnknownRecipient)
    }

    async fn data(&self, message: ReceivedMessage) -> Result<(), SinkError> {
        self.process(message).await
    }
}

/// A provider's bounce as the delivery status notification an MTA would have sent, so that it
/// is read by the same analysis (a provider's "permanent" is not taken for hard on its own).
fn provider_dsn(
    provider: Provider,
    address: &str,
    status: Option<&str>,
    diagnostic: &str,
    permanent: bool,
    message_id: Option<&str>,
) -> Vec<u8> {
    let clean = |text: &str| text.replace(['\r', '\n'], " ");
    let status = status
        .map(clean)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| if permanent { "5.0.0" } else { "4.0.0" }.to_string());
    let diagnostic = clean(diagnostic);
    let address = clean(address);
    let headers = match message_id {
        Some(id) => format!("Message-ID: {}\r\n", clean(id)),
        None => String::new(),
    };
    let action = if permanent { "failed" } else { "delayed" };
    format!(
        "From: {name} <notifications@{name}.invalid>\r\n\
         Subject: Delivery Status Notification\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"bg\"\r\n\r\n\
         --bg\r\nContent-Type: text/plain\r\n\r\n{diagnostic}\r\n\
         --bg\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; {name}.invalid\r\n\r\n\
         Final-Recipient: rfc822; {address}\r\nAction: {action}\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\r\n\
         --bg\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n\
         --bg--\r\n",
        name = provider.as_str(),
    )
    .into_bytes()
}
